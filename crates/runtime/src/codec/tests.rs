//! The codec against prost, byte for byte, and its refusals.

use super::*;
use proptest::prelude::*;
use prost::Message as _;
use prost::encoding::encode_varint;
use smallvec::smallvec;

/// The reference: the prost-generated type, field by field.
fn to_proto(header: &Header) -> pb::Envelope {
    let address = |a: Address| pb::Address {
        node: a.node.0,
        component: a.component.0,
    };
    pb::Envelope {
        id: header.id,
        name: header.name.to_string(),
        kind: header.kind as i32,
        source: Some(address(header.source)),
        target: header.target.map(address),
        correlation_id: header.correlation.0,
        flow: header
            .flow
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_default(),
        horizon: header.horizon as i32,
        deadline_us: header.deadline.map_or(0, Time::as_micros),
        trace_id: header.trace.trace_id,
        span_id: header.trace.span_id,
        parent_span_id: header.trace.parent_span_id,
        trace_flags: u32::from(header.trace.sampled),
        hops: header
            .hops
            .iter()
            .map(|h| pb::Hop {
                node: h.node.0,
                component: h.component.0,
                at_us: h.at.as_micros(),
            })
            .collect(),
        content_type: header.content_type as i32,
        bounce_reason: header.bounce.as_ref().map_or(0, |b| b.reason as i32),
        bounce_detail: header
            .bounce
            .as_ref()
            .map(|b| b.detail.to_string())
            .unwrap_or_default(),
        retry_after_us: header
            .bounce
            .as_ref()
            .and_then(|b| b.retry_after)
            .map_or(0, |d| d.as_micros() as u64),
    }
}

fn header() -> Header {
    Header {
        id: 7,
        name: Name::new("feed.post"),
        kind: Kind::Bounce,
        source: Address {
            node: NodeId(1),
            component: ComponentId(2),
        },
        target: Some(Address {
            node: NodeId(3),
            component: ComponentId(0),
        }),
        correlation: CorrelationId(99),
        flow: Some(Name::new("orders")),
        horizon: Horizon::Host,
        deadline: Some(Time::from_micros(1_000)),
        trace: TraceContext {
            trace_id: 5,
            span_id: 6,
            parent_span_id: 4,
            sampled: true,
        },
        hops: smallvec![Hop {
            node: NodeId(1),
            component: ComponentId(2),
            at: Time::from_micros(10)
        }],
        content_type: ContentType::Json,
        bounce: Some(Box::new(Bounce {
            reason: pb::BounceReason::Overloaded,
            detail: "full".into(),
            retry_after: Some(std::time::Duration::from_millis(250)),
        })),
    }
}

fn decode_proto(envelope: &pb::Envelope) -> Result<Header, DecodeError> {
    decode_header(&envelope.encode_to_vec(), &Router::default())
}

#[test]
fn round_trips_every_field_and_agrees_with_prost() {
    let original = header();
    let bytes = encode_header(&original);
    assert_eq!(decode_header(&bytes, &Router::default()).unwrap(), original);
    assert_eq!(
        pb::Envelope::decode(&bytes[..]).unwrap(),
        to_proto(&original)
    );
    assert_eq!(
        bytes,
        to_proto(&original).encode_to_vec(),
        "same bytes as prost, field order included"
    );
    assert_eq!(decode_proto(&to_proto(&original)).unwrap(), original);
}

#[test]
fn refuses_what_does_not_fit() {
    let router = Router::default();
    assert!(matches!(
        decode_header(b"\xff\xff\xff", &router),
        Err(DecodeError::Protobuf(_))
    ));
    let mut envelope = to_proto(&header());
    envelope.kind = 0;
    assert_eq!(decode_proto(&envelope), Err(DecodeError::Kind(0)));
    let mut envelope = to_proto(&header());
    envelope.name = "no spaces".into();
    assert!(matches!(decode_proto(&envelope), Err(DecodeError::Name(_))));
    let mut envelope = to_proto(&header());
    envelope.source = None;
    assert_eq!(decode_proto(&envelope), Err(DecodeError::Source));
    let mut envelope = to_proto(&header());
    envelope.bounce_reason = 0;
    assert_eq!(decode_proto(&envelope), Err(DecodeError::Bounce(0)));
    let mut envelope = to_proto(&header());
    envelope.kind = Kind::Send as i32;
    assert_eq!(decode_proto(&envelope), Err(DecodeError::Bounce(4)));
    let mut envelope = to_proto(&header());
    envelope.hops = vec![pb::Hop::default(); HOPS_MAX + 1];
    assert_eq!(
        decode_proto(&envelope),
        Err(DecodeError::Hops(HOPS_MAX + 1))
    );
    // A known field with the wrong wire type: name (2) as a varint.
    assert!(matches!(
        decode_header(&[0x10, 0x01], &router),
        Err(DecodeError::Protobuf(_))
    ));
    // Truncated inside a length-delimited field.
    let bytes = encode_header(&header());
    assert!(decode_header(&bytes[..bytes.len() - 2], &router).is_err());
    // A name that is not UTF-8 (looked up by its bytes first, then checked),
    // and a known name, whose route comes back.
    let mut bytes = encode_header(&header()).to_vec();
    let at = bytes
        .windows(9)
        .position(|w| w == b"feed.post")
        .expect("the name is in the header");
    bytes[at + 8] = 0xff;
    assert_eq!(
        decode_header(&bytes, &router),
        Err(DecodeError::Protobuf("string is not UTF-8".into()))
    );
    let mut router = Router::default();
    router.add_local_handler("feed.post", ComponentId(0));
    let mut decoded = Header::blank();
    let route = decode_header_into(&encode_header(&header()), &router, &mut decoded);
    assert_eq!(route, Ok(router.lookup("feed.post")));
    assert!(std::ptr::eq(
        decoded.name.as_str(),
        router.name(route.unwrap().unwrap()).as_str()
    ));
}

#[test]
fn unknown_fields_from_newer_peers_are_skipped() {
    let mut bytes = encode_header(&header()).to_vec();
    prost::encoding::encode_key(99, WireType::LengthDelimited, &mut bytes);
    encode_varint(3, &mut bytes);
    bytes.extend_from_slice(b"new");
    prost::encoding::encode_key(98, WireType::Varint, &mut bytes);
    encode_varint(5, &mut bytes);
    assert_eq!(decode_header(&bytes, &Router::default()).unwrap(), header());
}

#[test]
fn widest_values_fit_the_bound() {
    let widest = |header: &mut Header| {
        header.id = u64::MAX;
        header.source.node = NodeId(u64::MAX);
        header.source.component = ComponentId(u32::MAX);
        header.target = Some(header.source);
        header.correlation = CorrelationId(u64::MAX);
        header.deadline = Some(Time::from_micros(u64::MAX));
        header.trace.trace_id = u64::MAX;
        header.hops = (0..HOPS_MAX)
            .map(|_| Hop {
                node: NodeId(u64::MAX),
                component: ComponentId(u32::MAX),
                at: Time::from_micros(u64::MAX),
            })
            .collect();
    };
    for hops in [0, 1, HOPS_MAX] {
        let mut header = header();
        widest(&mut header);
        header.hops.truncate(hops);
        let bytes = encode_header(&header);
        assert!(bytes.len() <= encoded_len_bound(&header));
        assert_eq!(bytes, to_proto(&header).encode_to_vec());
    }
}

fn arbitrary_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Send),
        Just(Kind::Request),
        Just(Kind::Reply),
        Just(Kind::Publish),
        Just(Kind::Bounce)
    ]
}

fn arbitrary_address() -> impl Strategy<Value = Address> {
    (any::<u64>(), any::<u32>()).prop_map(|(n, c)| Address {
        node: NodeId(n),
        component: ComponentId(c),
    })
}

fn arbitrary_hop() -> impl Strategy<Value = Hop> {
    (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(n, c, t)| Hop {
        node: NodeId(n),
        component: ComponentId(c),
        at: Time::from_micros(t),
    })
}

fn arbitrary_header() -> impl Strategy<Value = Header> {
    let (kinds, hop) = (arbitrary_kind(), arbitrary_hop());
    (
        (
            any::<u64>(),
            "[a-z]{1,8}(\\.[a-z0-9_-]{1,8}){0,3}",
            kinds,
            arbitrary_address(),
            proptest::option::of(arbitrary_address()),
        ),
        (
            any::<u64>(),
            proptest::option::of("[a-z]{1,6}"),
            0..5i32,
            proptest::option::of(1..u64::MAX),
        ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(hop, 0..HOPS_MAX),
        ),
        (0..4i32, 1..11i32, ".{0,12}"),
    )
        .prop_map(
            |(
                (id, name, kind, source, target),
                (correlation, flow, horizon, deadline),
                trace,
                bounce,
            )| {
                let (trace_id, span_id, parent_span_id, sampled, hops) = trace;
                let (content_type, reason, detail) = bounce;
                Header {
                    id,
                    name: Name::new(&name),
                    kind,
                    source,
                    target,
                    correlation: CorrelationId(correlation),
                    flow: flow.map(|f| Name::new(&f)),
                    horizon: Horizon::try_from(horizon).unwrap(),
                    deadline: deadline.map(Time::from_micros),
                    trace: TraceContext {
                        trace_id,
                        span_id,
                        parent_span_id,
                        sampled,
                    },
                    hops: hops.into_iter().collect(),
                    content_type: ContentType::try_from(content_type).unwrap(),
                    bounce: (kind == Kind::Bounce).then(|| {
                        Box::new(Bounce {
                            reason: pb::BounceReason::try_from(reason).unwrap(),
                            detail: detail.into(),
                            retry_after: None,
                        })
                    }),
                }
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_header(&bytes, &Router::default());
    }

    #[test]
    fn arbitrary_headers_agree_with_prost_both_ways(header in arbitrary_header()) {
        let bytes = encode_header(&header);
        prop_assert_eq!(&bytes, &to_proto(&header).encode_to_vec());
        prop_assert_eq!(&decode_header(&bytes, &Router::default()).unwrap(), &header);
    }
}
