//! Messages as handlers see them: a header (the envelope) and payload bytes.

use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;

pub use exchange_idl::exchange::v1::{BounceReason, ContentType, Horizon, Kind};

use crate::ids::{Address, ComponentId, CorrelationId, Name, NodeId};
use crate::time::Time;

/// At most this many hops are kept on one envelope; past it the oldest hops after
/// the first are forgotten, so a message cycling between components cannot grow
/// without bound.
pub const HOPS_MAX: usize = 16;

/// One step of an envelope's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The node that touched the message.
    pub node: NodeId,
    /// The component that sent or received it there.
    pub component: ComponentId,
    /// When, by that node's clock.
    pub at: Time,
}

/// The trace context every envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TraceContext {
    /// Shared by every message caused, directly or not, by one root message.
    pub trace_id: u64,
    /// This message.
    pub span_id: u64,
    /// The message whose handler sent this one; 0 for a root.
    pub parent_span_id: u64,
    /// Sampled messages are recorded at every hop for debug tracing.
    pub sampled: bool,
}

/// A bounce's reason and a note for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounce {
    /// Why the message came back.
    pub reason: BounceReason,
    /// Free text; never parsed.
    pub detail: Box<str>,
    /// When the refuser expects a retry could succeed (from the time the
    /// bounce was made), if it can tell: set on `Overloaded` refusals of a
    /// full mailbox and on `Throttled` ones (the admission rate); on the wire
    /// `retry_after_us` (0: no hint).
    pub retry_after: Option<Duration>,
}

/// Bounce details are cut to this many bytes, so that a long panic message
/// cannot push a header past what peers decode.
pub const BOUNCE_DETAIL_BYTES_MAX: usize = 256;

impl Bounce {
    /// A bounce with `detail` cut to [`BOUNCE_DETAIL_BYTES_MAX`] (at a character
    /// boundary).
    pub fn new(reason: BounceReason, detail: &str) -> Box<Bounce> {
        let mut end = detail.len().min(BOUNCE_DETAIL_BYTES_MAX);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        Box::new(Bounce {
            reason,
            detail: detail[..end].into(),
            retry_after: None,
        })
    }

    /// The same, with a retry-after hint.
    pub fn with_retry_after(mut self: Box<Bounce>, retry_after: Option<Duration>) -> Box<Bounce> {
        self.retry_after = retry_after;
        self
    }
}

/// The envelope: everything about a message except its payload.
///
/// This is the in-memory form of `exchange.v1.Envelope`; the codec converts
/// between the two at the edge of a node, and messages between components of the
/// same node are never encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// Unique per source node.
    pub id: u64,
    /// What the message is.
    pub name: Name,
    /// Send, request, reply, publish or bounce.
    pub kind: Kind,
    /// Who sent it (for a bounce: who refused it).
    pub source: Address,
    /// Set for replies, bounces and messages sent to one address.
    pub target: Option<Address>,
    /// Ties replies and bounces to a request; 0 when none.
    pub correlation: CorrelationId,
    /// The named stream the message belongs to, if any.
    pub flow: Option<Name>,
    /// The widest scope the message may reach.
    pub horizon: Horizon,
    /// After this the message is no longer worth handling.
    pub deadline: Option<Time>,
    /// Trace and span ids.
    pub trace: TraceContext,
    /// The path so far (two inline: the sender's and the receiver's).
    pub hops: SmallVec<[Hop; 2]>,
    /// How the payload is encoded.
    pub content_type: ContentType,
    /// Set on bounces (boxed: rare, and it keeps the header small to move).
    pub bounce: Option<Box<Bounce>>,
}

impl Header {
    /// A header with every field at its default, to be filled in.
    pub(crate) fn blank() -> Header {
        Header {
            id: 0,
            name: Name::new(""),
            kind: Kind::Unspecified,
            source: Address {
                node: NodeId(0),
                component: ComponentId(0),
            },
            target: None,
            correlation: CorrelationId(0),
            flow: None,
            horizon: Horizon::Unspecified,
            deadline: None,
            trace: TraceContext::default(),
            hops: SmallVec::new(),
            content_type: ContentType::Unspecified,
            bounce: None,
        }
    }

    /// Appends a hop, keeping at most [`HOPS_MAX`].
    pub(crate) fn push_hop(&mut self, hop: Hop) {
        if self.hops.len() >= HOPS_MAX {
            self.hops.remove(1);
        }
        self.hops.push(hop);
    }

    /// Whether the sender may get this message back: sends and requests can be
    /// bounced; replies, publishes and bounces are dropped and counted instead, so
    /// that a refusal can never start a loop of refusals.
    pub fn is_bounceable(&self) -> bool {
        matches!(self.kind, Kind::Send | Kind::Request)
    }

    /// Whether this answers a request (a reply, or a bounce of a request).
    pub fn is_response(&self) -> bool {
        matches!(self.kind, Kind::Reply | Kind::Bounce) && self.correlation.0 != 0
    }
}

/// A message: header plus payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    // Boxed so that a message moves as 40 bytes through queues and effects.
    pub(crate) header: Box<Header>,
    pub(crate) payload: Bytes,
}

impl Message {
    /// A message from its parts (drivers and tests; components get theirs from the node).
    pub fn from_parts(header: Header, payload: Bytes) -> Message {
        Message {
            header: Box::new(header),
            payload,
        }
    }

    /// The message name.
    pub fn name(&self) -> &str {
        &self.header.name
    }

    /// Send, request, reply, publish or bounce.
    pub fn kind(&self) -> Kind {
        self.header.kind
    }

    /// Who sent it (for a bounce: who refused it).
    pub fn source(&self) -> Address {
        self.header.source
    }

    /// For replies and bounces of requests: the id [`crate::Ctx::request`] returned.
    pub fn correlation(&self) -> Option<CorrelationId> {
        (self.header.correlation.0 != 0).then_some(self.header.correlation)
    }

    /// For a bounce: why it came back.
    pub fn bounce_reason(&self) -> Option<BounceReason> {
        self.header.bounce.as_ref().map(|b| b.reason)
    }

    /// For a bounce: the note the refusing side left.
    pub fn bounce_detail(&self) -> Option<&str> {
        self.header.bounce.as_ref().map(|b| &*b.detail)
    }

    /// A bounce's retry-after hint, if the refuser gave one (see [`Bounce::retry_after`]).
    pub fn retry_after(&self) -> Option<Duration> {
        self.header.bounce.as_ref()?.retry_after
    }

    /// The whole header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Decodes a protobuf payload. (For a bounce this is the payload that was sent.)
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.payload.as_ref())
    }

    /// Where a reply to this message goes, if it is a request. Keep it to reply
    /// later, from another handler invocation, with [`crate::Ctx::respond`].
    pub fn reply_to(&self) -> Option<ReplyTo> {
        (self.header.kind == Kind::Request).then(|| ReplyTo {
            address: self.header.source,
            correlation: self.header.correlation,
            name: self.header.name.clone(),
            deadline: self.header.deadline,
        })
    }

    /// Size counted against mailbox and message limits: the payload plus an
    /// estimate of the header.
    pub fn size_bytes(&self) -> usize {
        self.payload.len() + self.header.name.len() + 64 + self.header.hops.len() * 16
    }
}

/// Everything needed to answer a request later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub(crate) address: Address,
    pub(crate) correlation: CorrelationId,
    pub(crate) name: Name,
    pub(crate) deadline: Option<Time>,
}

impl ReplyTo {
    /// The requester.
    pub fn address(&self) -> Address {
        self.address
    }
}

/// The short snake-case name of a bounce reason, as used in counters and reports.
pub fn bounce_reason_str(reason: BounceReason) -> &'static str {
    match reason {
        BounceReason::Unspecified => "unspecified",
        BounceReason::NoHandler => "no_handler",
        BounceReason::NoAccess => "no_access",
        BounceReason::QuotaExceeded => "quota_exceeded",
        BounceReason::Overloaded => "overloaded",
        BounceReason::HorizonExceeded => "horizon_exceeded",
        BounceReason::CircuitOpen => "circuit_open",
        BounceReason::Throttled => "throttled",
        BounceReason::TooLarge => "too_large",
        BounceReason::Expired => "expired",
        BounceReason::HandlerFailed => "handler_failed",
    }
}

/// The short lower-case name of a kind.
pub fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::Unspecified => "unspecified",
        Kind::Send => "send",
        Kind::Request => "request",
        Kind::Reply => "reply",
        Kind::Publish => "publish",
        Kind::Bounce => "bounce",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_details_are_cut_at_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes, two per character
        let bounce = Bounce::new(BounceReason::HandlerFailed, &long);
        assert_eq!(bounce.detail.len(), BOUNCE_DETAIL_BYTES_MAX);
        let odd = format!("x{long}");
        assert_eq!(
            Bounce::new(BounceReason::HandlerFailed, &odd).detail.len(),
            BOUNCE_DETAIL_BYTES_MAX - 1
        );
        assert_eq!(
            &*Bounce::new(BounceReason::Expired, "short").detail,
            "short"
        );
    }
}
