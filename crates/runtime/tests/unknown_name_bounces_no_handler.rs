//! A name nobody handles comes back to its sender as a `NoHandler` bounce, for
//! sends and for requests (with the request's correlation id); so does a message
//! with an invalid flow name. A bounce that arrives after shutdown is counted.
//! With `handler_wait`, a message first waits for a handler to appear.

mod support;

use std::time::Duration;

use exchange_runtime::stats::DropReason;
use exchange_runtime::{
    BounceReason, ComponentLimits, Kind, NodeId, Output, Payload, SendOptions, TransmitError,
};
use support::*;

#[test]
fn send_and_request_to_an_unknown_name_bounce_no_handler() {
    let sender_log = log();
    let mut node = node(1);
    let actions = vec![
        Action::Send("nobody.home"),
        Action::Request("nobody.home", Duration::from_secs(1)),
    ];
    node.add_component(
        "sender",
        ComponentLimits::default(),
        starter(actions, &sender_log),
    )
    .unwrap();
    node.handle(T0, Input::Start);
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

fn waiting_node(wait: Duration, actions: Vec<Action>, seen: &Log) -> exchange_runtime::Node {
    let mut node = exchange_runtime::Node::new(
        NodeId(1),
        "node1",
        exchange_runtime::NodeConfig {
            seed: 7,
            handler_wait: wait,
            ..Default::default()
        },
    );
    node.add_component("sender", ComponentLimits::default(), starter(actions, seen))
        .unwrap();
    node.handle(T0, Input::Start);
    settle(&mut node, T0);
    node
}

#[test]
fn a_message_waits_for_a_handler_to_appear() {
    let seen = log();
    let actions = vec![
        Action::Send("late.comer"),
        Action::Request("late.comer", Duration::from_secs(10)),
    ];
    let mut node = waiting_node(Duration::from_secs(5), actions, &seen);
    assert!(seen.borrow().is_empty(), "nothing bounced yet");
    assert_eq!(node.awaiting_handler(), 2);
    assert_eq!(node.status(T0).awaiting_handler, 2);
    assert!(!node.is_idle());
    let later = T0 + Duration::from_secs(2);
    let handler = RouteChange::Handler {
        name: "late.comer".into(),
        node: NodeId(2),
        handles: true,
    };
    node.handle(later, Input::Route(handler));
    let sent: Vec<_> = outputs(&mut node)
        .into_iter()
        .filter_map(|output| match output {
            Output::Transmit(transmit) => Some(transmit.to),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        [NodeId(2), NodeId(2)],
        "both went out once a handler came"
    );
    assert_eq!(node.awaiting_handler(), 0);
    node.handle(T0 + Duration::from_secs(6), Input::Timeout);
    assert!(seen.borrow().is_empty(), "no bounce after all");
}

#[test]
fn a_message_bounces_no_handler_when_its_wait_or_deadline_ends() {
    let seen = log();
    let actions = vec![
        Action::Send("never.there"),
        Action::Request("never.there", Duration::from_secs(1)),
    ];
    let mut node = waiting_node(Duration::from_secs(5), actions, &seen);
    // The request waits no longer than its deadline; the send the full wait.
    assert_eq!(node.poll_timeout(), Some(T0 + Duration::from_secs(1)));
    node.handle(T0 + Duration::from_secs(1), Input::Timeout);
    settle(&mut node, T0 + Duration::from_secs(1));
    assert_eq!(seen.borrow().len(), 1);
    assert!(
        seen.borrow()[0].correlation.is_some(),
        "the request came back first"
    );
    node.handle(T0 + Duration::from_secs(5), Input::Timeout);
    settle(&mut node, T0 + Duration::from_secs(5));
    let seen = seen.borrow().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.bounce == Some(BounceReason::NoHandler))
    );
    let detail = seen[1].detail.clone().unwrap_or_default();
    assert!(detail.contains("handler_wait"), "{detail}");
    assert!(node.is_idle());
    assert_accounted(&node);
}

#[test]
fn draining_bounces_what_waits_for_a_handler() {
    let seen = log();
    let mut node = waiting_node(
        Duration::from_secs(5),
        vec![Action::Send("never.there")],
        &seen,
    );
    node.handle(T0, Input::Drain);
    settle(&mut node, T0);
    assert_eq!(seen.borrow().len(), 1);
    assert_eq!(node.awaiting_handler(), 0);
    assert_accounted(&node);
}

#[test]
fn an_invalid_flow_name_bounces_at_the_sender() {
    let sender_log = log();
    let mut node = node(1);
    node.add_component(
        "sink",
        ComponentLimits::default(),
        recorder(&["sink.in"], &log(), false),
    )
    .unwrap();
    let options = SendOptions {
        flow: Some("not a name".into()),
        ..Default::default()
    };
    let send = Action::SendWith("sink.in", Payload::raw(&b"x"[..]), options);
    node.add_component(
        "sender",
        ComponentLimits::default(),
        starter(vec![send], &sender_log),
    )
    .unwrap();
    node.handle(T0, Input::Start);
    settle(&mut node, T0);
    let seen = sender_log.borrow().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].kind, seen[0].bounce),
        (Kind::Bounce, Some(BounceReason::NoHandler))
    );
    let detail = seen[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("flow name"), "{detail}");
    assert_eq!(stats(&node, "sink").accepted, 0, "the sink never saw it");
}

#[test]
fn a_bounce_that_arrives_after_shutdown_is_counted_not_queued() {
    // The sender's transmit failed only after the node stopped (the container
    // gives up on messages held for a peer that never came up).
    let mut node = node(1);
    let handler = RouteChange::Handler {
        name: "far.away".into(),
        node: NodeId(2),
        handles: true,
    };
    node.handle(T0, Input::Route(handler));
    node.add_component(
        "sender",
        ComponentLimits::default(),
        starter(vec![Action::Send("far.away")], &log()),
    )
    .unwrap();
    node.handle(T0, Input::Start);
    let Output::Transmit(transmit) = node.poll_output() else {
        panic!("the send goes out");
    };
    node.handle(T0, Input::Shutdown);
    let error = TransmitError::Unreachable;
    node.handle(T0, Input::TransmitFailed { transmit, error });
    let sender = stats(&node, "sender");
    assert_eq!(sender.accepted, 1, "the bounce reached the sender");
    assert_eq!(sender.outcomes.dropped_for(DropReason::Shutdown), 1);
    assert_accounted(&node);
    assert!(node.is_idle());
}
