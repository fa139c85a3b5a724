//! A request nobody answers in time comes back as an `Expired` bounce; a reply that
//! arrives after that is dropped and counted as `late_reply`, never handled twice.

mod support;

use std::time::Duration;

use exchange_idl::kv::v1::GetReply;
use exchange_runtime::stats::DropReason;
use exchange_runtime::{
    BounceReason, Component, ComponentLimits, Ctx, HandlerResult, Kind, Message, Node, NodeConfig,
    NodeId, ReplyTo,
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

/// A slow server and a client that sends `requests` requests with a 100 ms
/// timeout at start, on a node with `config`.
fn setup(config: NodeConfig, requests: usize) -> (Node, Log) {
    let client_log = log();
    let mut node = Node::new(NodeId(1), "n1", config);
    let server: exchange_runtime::Factory = Box::new(|| Box::new(SlowServer { waiting: vec![] }));
    node.add_component("server", ComponentLimits::default(), server)
        .unwrap();
    let request = Action::Request("slow.get", Duration::from_millis(100));
    node.add_component(
        "client",
        ComponentLimits::default(),
        starter(vec![request; requests], &client_log),
    )
    .unwrap();
    (node, client_log)
}

#[test]
fn an_unanswered_request_expires_and_the_late_reply_is_counted() {
    let (mut node, client_log) = setup(
        NodeConfig {
            seed: 7,
            ..NodeConfig::default()
        },
        1,
    );

    node.handle(T0, Input::Start);
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
    let config = NodeConfig {
        pending_requests_max: 2,
        seed: 7,
        ..NodeConfig::default()
    };
    let (mut node, client_log) = setup(config, 3);
    node.handle(T0, Input::Start);
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
