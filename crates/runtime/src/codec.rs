//! The envelope codec: [`Header`] to `exchange.v1.Envelope` bytes and back.
//!
//! Used only at the edge of a node; messages between components of the same node
//! are never encoded.

use exchange_idl::exchange::v1 as pb;
use prost::Message as _;

use crate::ids::{Address, ComponentId, CorrelationId, Name, NodeId};
use crate::message::{Bounce, ContentType, HOPS_MAX, Header, Hop, Horizon, Kind, TraceContext};
use crate::router::Router;
use crate::time::Time;

const SAMPLED: u32 = 1;

/// Why a header frame was refused. The node counts each as a `malformed` drop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a protobuf `exchange.v1.Envelope`.
    #[error("header is not an exchange.v1.Envelope: {0}")]
    Protobuf(String),
    /// The kind is missing or unknown.
    #[error("header kind {0} is missing or unknown")]
    Kind(i32),
    /// The name is empty or not a valid name.
    #[error("header name {0:?} is not a valid message name")]
    Name(String),
    /// The source address is missing.
    #[error("header has no source address")]
    Source,
    /// More hops than any envelope may carry.
    #[error("header carries {0} hops; at most {HOPS_MAX} are allowed")]
    Hops(usize),
    /// A bounce without a reason, or a reason on something that is not a bounce.
    #[error("header bounce reason {0} does not fit its kind")]
    Bounce(i32),
}

/// Encodes a header as `exchange.v1.Envelope` bytes.
pub fn encode_header(header: &Header) -> Vec<u8> {
    let envelope = to_proto(header);
    envelope.encode_to_vec()
}

/// Decodes and checks a header frame. Known names are taken from `router`, so
/// decoding a name the node handles does not allocate.
pub fn decode_header(bytes: &[u8], router: &Router) -> Result<Header, DecodeError> {
    let envelope =
        pb::Envelope::decode(bytes).map_err(|error| DecodeError::Protobuf(error.to_string()))?;
    from_proto(envelope, router)
}

fn address_to_proto(address: Address) -> pb::Address {
    pb::Address {
        node: address.node.0,
        component: address.component.0,
    }
}

fn address_from_proto(address: pb::Address) -> Address {
    Address {
        node: NodeId(address.node),
        component: ComponentId(address.component),
    }
}

fn to_proto(header: &Header) -> pb::Envelope {
    pb::Envelope {
        id: header.id,
        name: header.name.as_str().to_owned(),
        kind: header.kind as i32,
        source: Some(address_to_proto(header.source)),
        target: header.target.map(address_to_proto),
        correlation_id: header.correlation.0,
        flow: header
            .flow
            .as_ref()
            .map(|f| f.as_str().to_owned())
            .unwrap_or_default(),
        horizon: header.horizon as i32,
        deadline_us: header.deadline.map_or(0, Time::as_micros),
        trace_id: header.trace.trace_id,
        span_id: header.trace.span_id,
        parent_span_id: header.trace.parent_span_id,
        trace_flags: if header.trace.sampled { SAMPLED } else { 0 },
        hops: header
            .hops
            .iter()
            .map(|hop| pb::Hop {
                node: hop.node.0,
                component: hop.component.0,
                at_us: hop.at.as_micros(),
            })
            .collect(),
        content_type: header.content_type as i32,
        bounce_reason: header.bounce.as_ref().map_or(0, |b| b.reason as i32),
        bounce_detail: header
            .bounce
            .as_ref()
            .map(|b| b.detail.to_string())
            .unwrap_or_default(),
    }
}

fn from_proto(envelope: pb::Envelope, router: &Router) -> Result<Header, DecodeError> {
    let kind = match Kind::try_from(envelope.kind) {
        Ok(Kind::Unspecified) | Err(_) => return Err(DecodeError::Kind(envelope.kind)),
        Ok(kind) => kind,
    };
    if crate::ids::validate_name(&envelope.name).is_err() {
        return Err(DecodeError::Name(envelope.name));
    }
    let source = envelope
        .source
        .map(address_from_proto)
        .ok_or(DecodeError::Source)?;
    if envelope.hops.len() > HOPS_MAX {
        return Err(DecodeError::Hops(envelope.hops.len()));
    }
    let bounce = match (kind, envelope.bounce_reason) {
        (Kind::Bounce, 0) => return Err(DecodeError::Bounce(0)),
        (Kind::Bounce, reason) => Some(Bounce {
            reason: pb::BounceReason::try_from(reason).map_err(|_| DecodeError::Bounce(reason))?,
            detail: envelope.bounce_detail.into_boxed_str(),
        }),
        (_, 0) => None,
        (_, reason) => return Err(DecodeError::Bounce(reason)),
    };
    Ok(Header {
        id: envelope.id,
        name: router.intern(&envelope.name),
        kind,
        source,
        target: envelope.target.map(address_from_proto),
        correlation: CorrelationId(envelope.correlation_id),
        flow: (!envelope.flow.is_empty()).then(|| Name::new(&envelope.flow)),
        // Unknown enum values from a newer peer fall back to the defaults the
        // proto documents rather than refusing the message.
        horizon: Horizon::try_from(envelope.horizon).unwrap_or(Horizon::Unspecified),
        deadline: (envelope.deadline_us != 0).then(|| Time::from_micros(envelope.deadline_us)),
        trace: TraceContext {
            trace_id: envelope.trace_id,
            span_id: envelope.span_id,
            parent_span_id: envelope.parent_span_id,
            sampled: envelope.trace_flags & SAMPLED != 0,
        },
        hops: envelope
            .hops
            .iter()
            .map(|hop| Hop {
                node: NodeId(hop.node),
                component: ComponentId(hop.component),
                at: Time::from_micros(hop.at_us),
            })
            .collect(),
        content_type: ContentType::try_from(envelope.content_type)
            .unwrap_or(ContentType::Unspecified),
        bounce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::smallvec;

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
            bounce: Some(Bounce {
                reason: pb::BounceReason::Overloaded,
                detail: "full".into(),
            }),
        }
    }

    #[test]
    fn round_trips_every_field() {
        let original = header();
        let decoded = decode_header(&encode_header(&original), &Router::default()).unwrap();
        assert_eq!(decoded, original);
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
        assert_eq!(from_proto(envelope, &router), Err(DecodeError::Kind(0)));
        let mut envelope = to_proto(&header());
        envelope.name = "no spaces".into();
        assert!(matches!(
            from_proto(envelope, &router),
            Err(DecodeError::Name(_))
        ));
        let mut envelope = to_proto(&header());
        envelope.source = None;
        assert_eq!(from_proto(envelope, &router), Err(DecodeError::Source));
        let mut envelope = to_proto(&header());
        envelope.bounce_reason = 0;
        assert_eq!(from_proto(envelope, &router), Err(DecodeError::Bounce(0)));
        let mut envelope = to_proto(&header());
        envelope.kind = Kind::Send as i32;
        assert_eq!(from_proto(envelope, &router), Err(DecodeError::Bounce(4)));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_header(&bytes, &Router::default());
        }
    }
}
