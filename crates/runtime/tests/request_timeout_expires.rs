//! A request nobody answers in time comes back as an `Expired` bounce; a reply that
//! arrives after that is dropped and counted as `late_reply`, never handled twice.

mod support;

use std::time::Duration;

use exchange_idl::kv::v1::GetReply;
use exchange_runtime::stats::DropReason;
use exchange_runtime::{
    BounceReason, Component, ComponentLimits, Ctx, HandlerResult, Kind, Message, ReplyTo,
};
use support::*;

/// Answers each request only when its timer fires, 200 ms later.
struct SlowServer {
    waiting: Vec<ReplyTo>,
}

impl Component for SlowServer {
    fn handles(&self) -> &[&str] {
        &["slow.get"]
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        self.waiting.extend(message.reply_to());
        ctx.set_timer(Duration::from_millis(200), 1);
        Ok(())
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, _token: u64) -> HandlerResult {
        for reply_to in self.waiting.drain(..) {
            ctx.respond(&reply_to, &GetReply::default());
        }
        Ok(())
    }
}

#[test]
fn an_unanswered_request_expires_and_the_late_reply_is_counted() {
    let client_log = log();
    let mut node = node(1);
    node.add_component(
        "server",
        ComponentLimits::default(),
        Box::new(|| Box::new(SlowServer { waiting: vec![] })),
    )
    .unwrap();
    let shared = client_log.clone();
    node.add_component(
        "client",
        ComponentLimits::default(),
        Box::new(move || {
            Box::new(Starter {
                actions: vec![Action::Request("slow.get", Duration::from_millis(100))],
                log: shared.clone(),
            })
        }),
    )
    .unwrap();

    node.start(T0);
    settle(&mut node, T0);
    assert!(client_log.borrow().is_empty());
    assert_eq!(
        node.poll_timeout(),
        Some(T0 + Duration::from_millis(100)),
        "the request deadline is the next timeout"
    );

    let expiry = T0 + Duration::from_millis(100);
    settle(&mut node, expiry);
    let seen = client_log.borrow().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].kind, seen[0].bounce, seen[0].at),
        (Kind::Bounce, Some(BounceReason::Expired), expiry)
    );

    settle(&mut node, T0 + Duration::from_millis(200));
    assert_eq!(
        client_log.borrow().len(),
        1,
        "the late reply is not handled"
    );
    let client = node
        .components()
        .find(|(_, n, _)| *n == "client")
        .unwrap()
        .2
        .clone();
    assert_eq!(client.outcomes.dropped_for(DropReason::LateReply), 1);
    assert_eq!(client.handled, 1);
    assert_accounted(&node);
}

#[test]
fn a_request_over_the_pending_limit_bounces_overloaded_and_is_still_answered_once() {
    let client_log = log();
    let config = exchange_runtime::NodeConfig {
        pending_requests_max: 2,
        seed: 7,
        ..Default::default()
    };
    let mut node = exchange_runtime::Node::new(exchange_runtime::NodeId(1), "n1", config);
    node.add_component(
        "server",
        ComponentLimits::default(),
        Box::new(|| Box::new(SlowServer { waiting: vec![] })),
    )
    .unwrap();
    let shared = client_log.clone();
    node.add_component(
        "client",
        ComponentLimits::default(),
        Box::new(move || {
            let request = Action::Request("slow.get", Duration::from_millis(100));
            Box::new(Starter {
                actions: vec![request.clone(), request.clone(), request],
                log: shared.clone(),
            })
        }),
    )
    .unwrap();
    node.start(T0);
    settle(&mut node, T0);
    let seen = client_log.borrow().clone();
    assert_eq!(
        seen.len(),
        1,
        "the third request is answered at once: {seen:?}"
    );
    assert_eq!(seen[0].bounce, Some(BounceReason::Overloaded));

    settle(&mut node, T0 + Duration::from_millis(100));
    settle(&mut node, T0 + Duration::from_millis(200));
    let client = node
        .components()
        .find(|(_, n, _)| *n == "client")
        .unwrap()
        .2
        .clone();
    assert_eq!((client.requests_sent, client.responses_received), (3, 3));
    assert_eq!(
        client.outcomes.dropped_for(DropReason::LateReply),
        2,
        "the slow replies came after expiry"
    );
    assert!(node.is_idle());
    assert_accounted(&node);
}
