//! A name nobody handles comes back to its sender as a `NoHandler` bounce, for
//! sends and for requests (with the request's correlation id).

mod support;

use std::time::Duration;

use exchange_runtime::{BounceReason, ComponentLimits, Kind};
use support::*;

#[test]
fn send_and_request_to_an_unknown_name_bounce_no_handler() {
    let sender_log = log();
    let mut node = node(1);
    let shared = sender_log.clone();
    node.add_component(
        "sender",
        ComponentLimits::default(),
        Box::new(move || {
            Box::new(Starter {
                actions: vec![
                    Action::Send("nobody.home"),
                    Action::Request("nobody.home", Duration::from_secs(1)),
                ],
                log: shared.clone(),
            })
        }),
    )
    .unwrap();
    node.start(T0);
    settle(&mut node, T0);

    let seen = sender_log.borrow().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.kind == Kind::Bounce && s.bounce == Some(BounceReason::NoHandler))
    );
    assert!(seen.iter().all(|s| s.name == "nobody.home"));
    assert_eq!(seen[0].correlation, None, "a send has no correlation");
    assert!(
        seen[1].correlation.is_some(),
        "the request's bounce carries its correlation"
    );
    assert_eq!(
        node.stats().outcomes.bounced_for(BounceReason::NoHandler),
        2
    );
    assert!(node.is_idle(), "the bounced request is no longer pending");
    assert_accounted(&node);
}

/// Sends with an invalid flow name and gets it back.
struct BadFlow {
    log: Log,
}

impl exchange_runtime::Component for BadFlow {
    fn start(&mut self, ctx: &mut exchange_runtime::Ctx<'_>) -> exchange_runtime::HandlerResult {
        let options = exchange_runtime::SendOptions {
            flow: Some("not a name".into()),
            ..Default::default()
        };
        ctx.send_with(
            "sink.in",
            exchange_runtime::Payload::raw(&b"x"[..]),
            options,
        );
        Ok(())
    }
    fn handle(
        &mut self,
        _ctx: &mut exchange_runtime::Ctx<'_>,
        message: &exchange_runtime::Message,
    ) -> exchange_runtime::HandlerResult {
        self.log.borrow_mut().push(Seen {
            name: message.bounce_detail().unwrap_or_default().to_owned(),
            kind: message.kind(),
            bounce: message.bounce_reason(),
            correlation: None,
            at: T0,
        });
        Ok(())
    }
}

#[test]
fn an_invalid_flow_name_bounces_at_the_sender() {
    let sender_log = log();
    let mut node = node(1);
    node.add_component(
        "sink",
        ComponentLimits::default(),
        Box::new(|| {
            Box::new(Recorder {
                names: &["sink.in"],
                log: log(),
                reply: false,
            })
        }),
    )
    .unwrap();
    let shared = sender_log.clone();
    node.add_component(
        "sender",
        ComponentLimits::default(),
        Box::new(move || {
            Box::new(BadFlow {
                log: shared.clone(),
            })
        }),
    )
    .unwrap();
    node.start(T0);
    settle(&mut node, T0);
    let seen = sender_log.borrow().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].kind, seen[0].bounce),
        (Kind::Bounce, Some(BounceReason::NoHandler))
    );
    assert!(seen[0].name.contains("flow name"), "{}", seen[0].name);
    assert_eq!(
        node.components().next().unwrap().2.accepted,
        0,
        "the sink never saw it"
    );
}

#[test]
fn a_bounce_that_arrives_after_shutdown_is_counted_not_queued() {
    // The sender's transmit failed only after the node stopped (the container
    // gives up on messages held for a peer that never came up).
    let mut node = node(1);
    node.router_mut()
        .add_remote_handler("far.away", exchange_runtime::NodeId(2));
    node.add_component(
        "sender",
        ComponentLimits::default(),
        Box::new(|| {
            Box::new(Starter {
                actions: vec![Action::Send("far.away")],
                log: log(),
            })
        }),
    )
    .unwrap();
    node.start(T0);
    let Some(exchange_runtime::Output::Transmit(transmit)) = node.poll_output() else {
        panic!("the send goes out");
    };
    node.shutdown(T0);
    node.handle_transmit_error(T0, transmit, exchange_runtime::TransmitError::Unreachable);
    let sender = node.components().next().unwrap().2.clone();
    assert_eq!(sender.accepted, 1, "the bounce reached the sender");
    assert_eq!(
        sender
            .outcomes
            .dropped_for(exchange_runtime::stats::DropReason::Shutdown),
        1
    );
    assert_accounted(&node);
    assert!(node.is_idle());
}
