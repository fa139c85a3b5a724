//! A message over `message_bytes_max` is refused at the sender with a `TooLarge`
//! bounce; the receiver never sees it.

mod support;

use bytes::Bytes;
use exchange_runtime::{
    BounceReason, ComponentLimits, Kind, Node, NodeConfig, NodeId, Payload, SendOptions,
};
use support::*;

#[test]
fn oversize_is_refused_at_the_sender() {
    let sink_log = log();
    let sender_log = log();
    let config = NodeConfig {
        message_bytes_max: 1024,
        seed: 3,
        ..NodeConfig::default()
    };
    let mut node = Node::new(NodeId(1), "n1", config);
    node.add_component(
        "sink",
        ComponentLimits::default(),
        recorder(&["sink.in"], &sink_log, false),
    )
    .unwrap();
    let send = |len: usize| {
        Action::SendWith(
            "sink.in",
            Payload::raw(Bytes::from(vec![7; len])),
            SendOptions::default(),
        )
    };
    node.add_component(
        "sender",
        ComponentLimits::default(),
        starter(vec![send(2048), send(16)], &sender_log),
    )
    .unwrap();
    node.handle(T0, Input::Start);
    settle(&mut node, T0);

    assert_eq!(sink_log.borrow().len(), 1, "only the small message arrived");
    let seen = sender_log.borrow().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].kind, seen[0].bounce),
        (Kind::Bounce, Some(BounceReason::TooLarge))
    );
    assert_eq!(
        seen[0].payload_len, 2048,
        "the sender gets its payload back"
    );
    assert_eq!(node.stats().outcomes.bounced_for(BounceReason::TooLarge), 1);
    assert_accounted(&node);
}
