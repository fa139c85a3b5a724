//! Frames that are not envelopes, misaddressed frames and oversize frames are
//! dropped and counted by the node; none of them panics or reaches a component.

mod support;

use bytes::Bytes;
use exchange_runtime::stats::DropReason;
use exchange_runtime::{ComponentLimits, Input, NodeId};
use proptest::prelude::*;
use support::*;

fn serving_node() -> exchange_runtime::Node {
    let mut node = node(1);
    node.add_component(
        "sink",
        ComponentLimits::default(),
        recorder(&["work.do"], &log(), true),
    )
    .unwrap();
    node.handle(T0, Input::Start);
    node
}

#[test]
fn garbage_misaddressed_and_oversize_frames_are_counted_drops() {
    let mut node = serving_node();
    node.handle(
        T0,
        Input::Frame {
            from: NodeId(9),
            header: b"\x0a\xff\xff\xff\xff\xff",
            payload: Bytes::new(),
        },
    );
    node.handle(
        T0,
        Input::Frame {
            from: NodeId(9),
            header: b"",
            payload: Bytes::new(),
        },
    );
    // A valid envelope addressed to another node.
    let envelope = exchange_idl::exchange::v1::Envelope {
        name: "work.do".into(),
        kind: exchange_idl::exchange::v1::Kind::Send as i32,
        source: Some(Default::default()),
        target: Some(exchange_idl::exchange::v1::Address {
            node: 42,
            component: 0,
        }),
        ..Default::default()
    };
    node.handle(
        T0,
        Input::Frame {
            from: NodeId(9),
            header: &prost::Message::encode_to_vec(&envelope),
            payload: Bytes::new(),
        },
    );
    let payload = Bytes::from(vec![0; 2 << 20]);
    node.handle(
        T0,
        Input::Frame {
            from: NodeId(9),
            header: b"",
            payload,
        },
    );
    settle(&mut node, T0);

    assert_eq!(node.stats().frames_in, 4);
    assert_eq!(node.stats().outcomes.dropped_for(DropReason::Malformed), 3);
    assert_eq!(node.stats().outcomes.dropped_for(DropReason::TooLarge), 1);
    assert_eq!(node.components().next().unwrap().2.accepted, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_frames_never_panic_and_always_end_counted(
        header in proptest::collection::vec(any::<u8>(), 0..128),
        payload in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut node = serving_node();
        node.handle(T0, Input::Frame { from: NodeId(9), header: &header, payload: Bytes::from(payload) });
        settle(&mut node, T0);
        let node_ended = node.stats().outcomes.dropped_total() + node.stats().outcomes.bounced_total();
        let sink = node.components().next().unwrap().2.clone();
        prop_assert_eq!(node_ended + sink.accepted, 1, "the frame ended exactly once");
        assert_accounted(&node);
    }
}
