//! The envelope codec: [`Header`] to `exchange.v1.Envelope` bytes and back.
//!
//! Used only at the edge of a node; messages between components of the same node
//! are never encoded.

use bytes::{Bytes, BytesMut};
use exchange_idl::exchange::v1 as pb;
use prost::encoding::{WireType, encoded_len_varint, key_len};

use crate::ids::{Address, ComponentId, CorrelationId, Name, NodeId};
use crate::message::{Bounce, ContentType, HOPS_MAX, Header, Hop, Horizon, Kind, TraceContext};
use crate::router::{RouteId, Router};
use crate::time::Time;

const SAMPLED: u32 = 1;

/// Largest header frame a node decodes; a longer one is dropped as `too_large`
/// before any parsing. A real header is under 300 bytes (16 hops, short names).
pub const HEADER_BYTES_MAX: usize = 4 * 1024;

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

/// Encodes a header as `exchange.v1.Envelope` bytes, straight from the
/// [`Header`] (no intermediate protobuf struct).
pub fn encode_header(header: &Header) -> Bytes {
    let mut buf = BytesMut::with_capacity(encoded_len_bound(header));
    encode_header_into(header, &mut buf)
}

/// Encodes a header into the spare room of `buf` and splits it off: a caller
/// that keeps `buf` between messages allocates once per block of headers
/// instead of once per header. (Headers live only until the transport has
/// copied them out, so a block is not held for long.)
pub fn encode_header_into(header: &Header, buf: &mut BytesMut) -> Bytes {
    /// The least a block holds, so that most headers do not allocate.
    const BLOCK_BYTES: usize = 16 * 1024;
    let bound = encoded_len_bound(header);
    if buf.capacity() - buf.len() < bound {
        buf.reserve(bound.max(BLOCK_BYTES));
    }
    // Written field by field into plain bytes, then cut to length: `BufMut`
    // checks capacity on every byte.
    let start = buf.len();
    buf.resize(start + bound, 0);
    let len = encode_fields(header, &mut buf[start..]);
    buf.truncate(start + len);
    buf.split().freeze()
}

/// The most bytes `header` can encode to: every scalar field at its widest
/// varint (10 bytes) with its key (up to 2 bytes), plus the strings.
fn encoded_len_bound(header: &Header) -> usize {
    const SCALAR: usize = 2 + 10;
    const ADDRESS: usize = 2 + 1 + 2 * SCALAR;
    const HOP: usize = 2 + 1 + 3 * SCALAR;
    let strings = header.name.len()
        + header.flow.as_ref().map_or(0, |flow| flow.len())
        + header
            .bounce
            .as_ref()
            .map_or(0, |bounce| bounce.detail.len());
    // id, kind, correlation, horizon, deadline, trace flags, content type,
    // bounce reason, retry-after; three fixed64s; three strings' keys and lengths.
    9 * SCALAR + 3 * (2 + 8) + 3 * SCALAR + 2 * ADDRESS + header.hops.len() * HOP + strings
}

/// Writes `header` into `out`, which holds at least [`encoded_len_bound`]
/// bytes, and returns the length written.
fn encode_fields(header: &Header, out: &mut [u8]) -> usize {
    let mut w = Writer { out, len: 0 };
    w.uint(1, header.id);
    w.str(2, &header.name);
    w.uint(3, header.kind as i32 as u64);
    w.address(4, header.source);
    if let Some(target) = header.target {
        w.address(5, target);
    }
    w.uint(6, header.correlation.0);
    if let Some(flow) = &header.flow {
        w.str(7, flow);
    }
    w.uint(8, header.horizon as i32 as u64);
    w.uint(9, header.deadline.map_or(0, Time::as_micros));
    w.fixed64(10, header.trace.trace_id);
    w.fixed64(11, header.trace.span_id);
    w.fixed64(12, header.trace.parent_span_id);
    w.uint(
        13,
        if header.trace.sampled {
            u64::from(SAMPLED)
        } else {
            0
        },
    );
    for hop in &header.hops {
        w.nested_uints(
            14,
            &[hop.node.0, u64::from(hop.component.0), hop.at.as_micros()],
        );
    }
    w.uint(15, header.content_type as i32 as u64);
    if let Some(bounce) = &header.bounce {
        w.uint(16, bounce.reason as i32 as u64);
        w.str(17, &bounce.detail);
        if let Some(retry_after) = bounce.retry_after {
            // At least 1: zero on the wire means no hint.
            w.uint(18, (retry_after.as_micros() as u64).max(1));
        }
    }
    w.len
}

/// Protobuf's wire format into a byte slice known to be long enough.
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    #[inline]
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out[self.len] = value as u8 | 0x80;
            self.len += 1;
            value >>= 7;
        }
        self.out[self.len] = value as u8;
        self.len += 1;
    }

    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        self.out[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    #[inline]
    fn key(&mut self, tag: u32, wire_type: WireType) {
        self.varint((u64::from(tag) << 3) | wire_type as u64);
    }

    #[inline]
    fn uint(&mut self, tag: u32, value: u64) {
        // proto3: a field at its default value is not written.
        if value != 0 {
            self.key(tag, WireType::Varint);
            self.varint(value);
        }
    }

    #[inline]
    fn fixed64(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.key(tag, WireType::SixtyFourBit);
            self.bytes(&value.to_le_bytes());
        }
    }

    #[inline]
    fn str(&mut self, tag: u32, value: &str) {
        if !value.is_empty() {
            self.key(tag, WireType::LengthDelimited);
            self.varint(value.len() as u64);
            self.bytes(value.as_bytes());
        }
    }

    fn address(&mut self, tag: u32, address: Address) {
        self.nested_uints(tag, &[address.node.0, u64::from(address.component.0)]);
    }

    /// A nested message whose fields 1, 2, … are `values` (the decoder's
    /// [`nested_uints`]).
    fn nested_uints(&mut self, tag: u32, values: &[u64]) {
        let len: usize = (1..)
            .zip(values)
            .map(|(field, &v)| uint_len(field, v))
            .sum();
        self.key(tag, WireType::LengthDelimited);
        self.varint(len as u64);
        for (field, &value) in (1..).zip(values) {
            self.uint(field, value);
        }
    }
}

#[inline]
fn uint_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

/// Decodes and checks a header frame without allocating for names the node
/// knows: strings are borrowed from the frame and interned through `router`.
/// Unknown fields (from a newer peer) are skipped.
pub fn decode_header(bytes: &[u8], router: &Router) -> Result<Header, DecodeError> {
    let mut header = Header::blank();
    decode_header_into(bytes, router, &mut header)?;
    Ok(header)
}

/// [`decode_header`] into an existing header (every field is overwritten, so a
/// recycled box can be reused), returning the name's route if the router knows it.
pub(crate) fn decode_header_into(
    bytes: &[u8],
    router: &Router,
    header: &mut Header,
) -> Result<Option<RouteId>, DecodeError> {
    match parse(bytes, header) {
        Ok(raw) => raw.check(router, header),
        Err(Malformed::Hops(n)) => Err(DecodeError::Hops(n)),
        Err(Malformed::Wire(why)) => Err(DecodeError::Protobuf(why.to_owned())),
    }
}

/// Why the wire format was refused, kept small so the parser's hot path stays
/// cheap; turned into a [`DecodeError`] once, at the end.
#[derive(Clone, Copy, Debug)]
enum Malformed {
    Wire(&'static str),
    Hops(usize),
}

type Parsed<T> = Result<T, Malformed>;

const TRUNCATED: Malformed = Malformed::Wire("truncated field");
const NOT_UTF8: &str = "string is not UTF-8";

/// Parses the wire format: plain fields straight into `header`, the fields that
/// still need checking or interning into the returned [`RawFields`].
fn parse<'a>(bytes: &'a [u8], header: &mut Header) -> Parsed<RawFields<'a>> {
    let mut raw = RawFields::default();
    header.id = 0;
    header.target = None;
    header.correlation = CorrelationId(0);
    header.deadline = None;
    header.trace = TraceContext::default();
    header.hops.clear();
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match (tag, wire_type) {
            (1, VARINT) => header.id = varint(&mut buf)?,
            // Checked to be UTF-8 only if the router does not know it.
            (2, LEN) => raw.name = sub_message(&mut buf)?,
            (3, VARINT) => raw.kind = varint(&mut buf)? as i32,
            (4, LEN) => raw.source = Some(address(sub_message(&mut buf)?)?),
            (5, LEN) => header.target = Some(address(sub_message(&mut buf)?)?),
            (6, VARINT) => header.correlation = CorrelationId(varint(&mut buf)?),
            (7, LEN) => raw.flow = string(&mut buf)?,
            (8, VARINT) => raw.horizon = varint(&mut buf)? as i32,
            (9, VARINT) => {
                let deadline_us = varint(&mut buf)?;
                header.deadline = (deadline_us != 0).then(|| Time::from_micros(deadline_us));
            }
            (10, FIXED64) => header.trace.trace_id = fixed64(&mut buf)?,
            (11, FIXED64) => header.trace.span_id = fixed64(&mut buf)?,
            (12, FIXED64) => header.trace.parent_span_id = fixed64(&mut buf)?,
            (13, VARINT) => header.trace.sampled = varint(&mut buf)? as u32 & SAMPLED != 0,
            (14, LEN) => {
                if header.hops.len() >= HOPS_MAX {
                    return Err(Malformed::Hops(header.hops.len() + 1));
                }
                header.hops.push(hop(sub_message(&mut buf)?)?);
            }
            (15, VARINT) => raw.content_type = varint(&mut buf)? as i32,
            (16, VARINT) => raw.bounce_reason = varint(&mut buf)? as i32,
            (17, LEN) => raw.bounce_detail = string(&mut buf)?,
            (18, VARINT) => raw.retry_after_us = varint(&mut buf)?,
            (1..=18, _) => return Err(Malformed::Wire("a known field has the wrong wire type")),
            _ => skip(wire_type, &mut buf)?,
        }
    }
    Ok(raw)
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Skips a field of a number this version does not know (from a newer peer).
fn skip(wire_type: u8, buf: &mut &[u8]) -> Parsed<()> {
    match wire_type {
        VARINT => varint(buf).map(drop),
        FIXED64 => take(buf, 8).map(drop),
        LEN => sub_message(buf).map(drop),
        FIXED32 => take(buf, 4).map(drop),
        _ => Err(Malformed::Wire(
            "groups and unknown wire types are not supported",
        )),
    }
}

#[inline]
fn take<'a>(buf: &mut &'a [u8], len: usize) -> Parsed<&'a [u8]> {
    if len > buf.len() {
        return Err(TRUNCATED);
    }
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Ok(field)
}

/// A base-128 varint of at most 10 bytes, with the one-byte case first (most
/// header keys and values).
#[inline]
fn varint(buf: &mut &[u8]) -> Parsed<u64> {
    if let Some((&byte, rest)) = buf.split_first()
        && byte < 0x80
    {
        *buf = rest;
        return Ok(u64::from(byte));
    }
    let mut value = 0u64;
    for (i, byte) in buf.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(Malformed::Wire("truncated or overlong varint"))
}

#[inline]
fn key(buf: &mut &[u8]) -> Parsed<(u32, u8)> {
    let key = varint(buf)?;
    let tag = u32::try_from(key >> 3).map_err(|_| Malformed::Wire("field number overflows"))?;
    if tag == 0 {
        return Err(Malformed::Wire("field number 0"));
    }
    Ok((tag, (key & 0x07) as u8))
}

#[inline]
fn fixed64(buf: &mut &[u8]) -> Parsed<u64> {
    let bytes: [u8; 8] = take(buf, 8)?.try_into().map_err(|_| TRUNCATED)?;
    Ok(u64::from_le_bytes(bytes))
}

#[inline]
fn sub_message<'a>(buf: &mut &'a [u8]) -> Parsed<&'a [u8]> {
    let len = usize::try_from(varint(buf)?).map_err(|_| TRUNCATED)?;
    take(buf, len)
}

#[inline]
fn string<'a>(buf: &mut &'a [u8]) -> Parsed<&'a str> {
    std::str::from_utf8(sub_message(buf)?).map_err(|_| Malformed::Wire(NOT_UTF8))
}

/// Reads the varint fields 1..=3 of a nested message; others are skipped.
fn nested_uints(mut buf: &[u8]) -> Parsed<[u64; 3]> {
    let mut fields = [0; 3];
    while !buf.is_empty() {
        match key(&mut buf)? {
            (tag @ 1..=3, VARINT) => fields[tag as usize - 1] = varint(&mut buf)?,
            (1..=3, _) => return Err(Malformed::Wire("a nested field has the wrong wire type")),
            (_, wire_type) => skip(wire_type, &mut buf)?,
        }
    }
    Ok(fields)
}

fn component(value: u64) -> Parsed<ComponentId> {
    u32::try_from(value)
        .map(ComponentId)
        .map_err(|_| Malformed::Wire("component index overflows u32"))
}

fn address(buf: &[u8]) -> Parsed<Address> {
    let [node, component_index, _] = nested_uints(buf)?;
    Ok(Address {
        node: NodeId(node),
        component: component(component_index)?,
    })
}

fn hop(buf: &[u8]) -> Parsed<Hop> {
    let [node, component_index, at_us] = nested_uints(buf)?;
    Ok(Hop {
        node: NodeId(node),
        component: component(component_index)?,
        at: Time::from_micros(at_us),
    })
}

/// The fields that need checking or interning, strings still borrowed from the frame.
#[derive(Default)]
struct RawFields<'a> {
    name: &'a [u8],
    kind: i32,
    source: Option<Address>,
    flow: &'a str,
    horizon: i32,
    content_type: i32,
    bounce_reason: i32,
    bounce_detail: &'a str,
    retry_after_us: u64,
}

impl RawFields<'_> {
    fn check(self, router: &Router, header: &mut Header) -> Result<Option<RouteId>, DecodeError> {
        header.kind = match Kind::try_from(self.kind) {
            Ok(Kind::Unspecified) | Err(_) => return Err(DecodeError::Kind(self.kind)),
            Ok(kind) => kind,
        };
        // Names the router knows were validated when they were registered.
        let route = router.lookup_bytes(self.name);
        header.name = match route {
            Some(route) => router.name(route).clone(),
            None => {
                let name = std::str::from_utf8(self.name)
                    .map_err(|_| DecodeError::Protobuf(NOT_UTF8.to_owned()))?;
                crate::ids::validate_name(name).map_err(|_| DecodeError::Name(name.to_owned()))?;
                Name::new(name)
            }
        };
        header.source = self.source.ok_or(DecodeError::Source)?;
        header.bounce = match (header.kind, self.bounce_reason) {
            (Kind::Bounce, 0) => return Err(DecodeError::Bounce(0)),
            (Kind::Bounce, reason) => Some(Box::new(Bounce {
                reason: pb::BounceReason::try_from(reason)
                    .map_err(|_| DecodeError::Bounce(reason))?,
                detail: self.bounce_detail.into(),
                retry_after: (self.retry_after_us > 0)
                    .then(|| std::time::Duration::from_micros(self.retry_after_us)),
            })),
            (_, 0) => None,
            (_, reason) => return Err(DecodeError::Bounce(reason)),
        };
        header.flow = (!self.flow.is_empty()).then(|| router.intern(self.flow));
        // Unknown enum values from a newer peer fall back to the defaults the
        // proto documents rather than refusing the message.
        header.horizon = Horizon::try_from(self.horizon).unwrap_or(Horizon::Unspecified);
        header.content_type =
            ContentType::try_from(self.content_type).unwrap_or(ContentType::Unspecified);
        Ok(route)
    }
}

#[cfg(test)]
mod tests;
