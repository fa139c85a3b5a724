//! Fuzzing the header decoder and admission with mutated valid headers: no
//! input panics, a header that decodes re-encodes to one that decodes the
//! same, and every frame a node takes ends (delivered to a component, or
//! dropped or bounced by the node; what a delivered one causes ends too) with
//! the node's audit holding after each (a debug build checks it after every
//! input).
//!
//! `EXCHANGE_FUZZ_ITERATIONS=10000000 cargo test --release -p
//! exchange-runtime --test fuzz_header_decoder` runs it longer.

mod support;

use bytes::Bytes;
use exchange_runtime::codec::{decode_header, encode_header};
use exchange_runtime::fuzz::{Mutator, iterations};
use exchange_runtime::{
    Address, Bounce, BounceReason, ComponentId, ComponentLimits, ContentType, CorrelationId,
    Header, Hop, Horizon, Input, Kind, Name, NodeId, Router, Time, TraceContext,
};
use rand::Rng;
use support::*;

/// Valid headers of every shape: each kind, with and without target, flow,
/// deadline, hops and bounce.
fn corpus(mutator: &mut Mutator) -> Vec<Vec<u8>> {
    let kinds = [
        Kind::Send,
        Kind::Request,
        Kind::Reply,
        Kind::Publish,
        Kind::Bounce,
    ];
    let names = ["work.do", "kv.get", "feed.timeline.read", "a"];
    (0..64)
        .map(|i| {
            let rng = mutator.rng();
            let kind = kinds[i % kinds.len()];
            let address = |node: u64, component: u32| Address {
                node: NodeId(node),
                component: ComponentId(component),
            };
            let hops = (0..rng.random_range(0..=16))
                .map(|h| Hop {
                    node: NodeId(h),
                    component: ComponentId(0),
                    at: Time::from_micros(1_000 + h),
                })
                .collect();
            let header = Header {
                id: rng.random(),
                name: Name::new(names[i % names.len()]),
                kind,
                source: address(rng.random_range(0..4), rng.random_range(0..3)),
                target: (i % 3 == 0).then(|| address(1, 0)),
                correlation: CorrelationId(rng.random_range(0..3)),
                flow: (i % 4 == 0).then(|| Name::new("orders")),
                horizon: Horizon::Unspecified,
                deadline: (i % 2 == 0).then(|| Time::from_micros(rng.random())),
                trace: TraceContext {
                    trace_id: rng.random(),
                    span_id: rng.random(),
                    parent_span_id: rng.random(),
                    sampled: i % 5 == 0,
                },
                hops,
                content_type: ContentType::Protobuf,
                bounce: (kind == Kind::Bounce)
                    .then(|| Bounce::new(BounceReason::Overloaded, "mailbox full")),
            };
            encode_header(&header).to_vec()
        })
        .collect()
}

/// Outcomes so far: what the node refused and what the sink accepted.
fn ended(node: &exchange_runtime::Node) -> u64 {
    node.stats().outcomes.dropped_total()
        + node.stats().outcomes.bounced_total()
        + stats(node, "sink").accepted
}

#[test]
fn mutated_headers_never_panic_round_trip_and_end_counted() {
    let mut mutator = Mutator::new(0x6865_6164);
    let corpus = corpus(&mut mutator);
    let router = Router::default();
    let mut node = node(1);
    node.add_component(
        "sink",
        ComponentLimits::default(),
        recorder(&["work.do", "kv.get"], &log(), true),
    )
    .unwrap();
    node.handle(T0, Input::Start);
    let (mut decoded, runs) = (0, iterations(100_000));
    for run in 0..runs {
        let input = mutator.mutate(&corpus);
        if let Ok(header) = decode_header(&input, &router) {
            decoded += 1;
            let again = decode_header(&encode_header(&header), &router);
            assert_eq!(again.as_ref(), Ok(&header), "run {run}: {input:02x?}");
        }
        let frame = Input::Frame {
            from: NodeId(9),
            header: &input,
            payload: Bytes::from_static(b"payload"),
        };
        let before = ended(&node);
        node.handle(T0, frame);
        settle(&mut node, T0);
        support::outputs(&mut node);
        assert!(
            ended(&node) > before,
            "run {run}: {input:02x?} ended nowhere"
        );
        assert_eq!(node.audit(), Ok(()), "run {run}: {input:02x?}");
    }
    assert_eq!(node.stats().frames_in, runs as u64);
    assert!(
        decoded * 20 > runs,
        "the corpus gets past the decoder often enough to fuzz what follows: {decoded} of {runs}"
    );
}
