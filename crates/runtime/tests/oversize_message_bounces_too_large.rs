//! A message over `message_bytes_max` is refused at the sender with a `TooLarge`
//! bounce; the receiver never sees it.

mod support;

use bytes::Bytes;
use exchange_runtime::{
    BounceReason, Component, ComponentLimits, Ctx, HandlerResult, Kind, Message, Node, NodeConfig,
    NodeId, Payload, SendOptions,
};
use support::*;

struct Big {
    log: Log,
}

impl Component for Big {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        ctx.send_with(
            "sink.in",
            Payload::raw(Bytes::from(vec![7; 2048])),
            SendOptions::default(),
        );
        ctx.send_with(
            "sink.in",
            Payload::raw(Bytes::from(vec![7; 16])),
            SendOptions::default(),
        );
        Ok(())
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        self.log.borrow_mut().push(Seen {
            name: message.payload().len().to_string(),
            kind: message.kind(),
            bounce: message.bounce_reason(),
            correlation: None,
            at: ctx.now(),
        });
        Ok(())
    }
}

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
    let shared = sink_log.clone();
    node.add_component(
        "sink",
        ComponentLimits::default(),
        Box::new(move || {
            Box::new(Recorder {
                names: &["sink.in"],
                log: shared.clone(),
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
            Box::new(Big {
                log: shared.clone(),
            })
        }),
    )
    .unwrap();
    node.start(T0);
    settle(&mut node, T0);

    assert_eq!(sink_log.borrow().len(), 1, "only the small message arrived");
    let seen = sender_log.borrow().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].kind, seen[0].bounce),
        (Kind::Bounce, Some(BounceReason::TooLarge))
    );
    assert_eq!(seen[0].name, "2048", "the sender gets its payload back");
    assert_eq!(node.stats().outcomes.bounced_for(BounceReason::TooLarge), 1);
    assert_accounted(&node);
}
