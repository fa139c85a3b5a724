//! Recording a node's inputs, and feeding them back: every [`Input`] a node
//! takes, with its time, in its serialized form (`exchange.v1.record`, see
//! [`Input`]'s conversions), and after each batch of outputs an
//! order-independent digest of them, as length-delimited
//! `exchange.v1.record.Record`s. [`feed`] gives a fresh node the same inputs and
//! checks that it emits the same. Sans-IO like the node: the host
//! (`exchange_host::Host`) records beside every input it hands its node, and
//! drivers write the bytes out.

use std::hash::Hasher;

use exchange_idl::exchange::v1::record::{self as rec, record::Kind};
use prost::Message as _;
use rustc_hash::FxHasher;

use crate::ids::NodeId;
use crate::node::{Event, Input, InvalidRecord, Node, Output};
use crate::time::Time;

/// Encodes one node's records as they happen; [`Recorder::take`] hands out the
/// bytes. A recording file is [`begin`]'s bytes, then every node's records
/// (in each node's own order; nodes may interleave).
#[derive(Debug)]
pub struct Recorder {
    node: NodeId,
    buf: Vec<u8>,
    /// When the last input was taken.
    at: Time,
    /// What was emitted since the last [`Output::Timeout`].
    digest: Digest,
}

/// The first record of a recording, encoded.
pub fn begin(begin: rec::Begin) -> Vec<u8> {
    let mut buf = Vec::new();
    write(&mut buf, NodeId(0), Time::ZERO, Kind::Begin(begin));
    buf
}

fn write(buf: &mut Vec<u8>, node: NodeId, at: Time, kind: Kind) {
    let record = rec::Record {
        node: node.0,
        at_us: at.as_micros(),
        kind: Some(kind),
    };
    record
        .encode_length_delimited(buf)
        .expect("a Vec grows as needed");
}

impl Recorder {
    /// Records for `node`.
    pub fn new(node: NodeId) -> Recorder {
        Recorder {
            node,
            buf: Vec::new(),
            at: Time::ZERO,
            digest: Digest::default(),
        }
    }

    /// The node takes `input` at `at`.
    pub fn input(&mut self, at: Time, input: &Input<'_>) {
        self.at = at;
        write(&mut self.buf, self.node, at, Kind::from(input));
    }

    /// The node handed out `output`. At [`Output::Timeout`] (its outputs were
    /// polled until none was left) what it emitted since the last time is
    /// recorded, if anything.
    pub fn output(&mut self, output: &Output) {
        if !matches!(output, Output::Timeout(_)) {
            return self.digest.add(output);
        }
        let digest = std::mem::take(&mut self.digest);
        if digest.outputs > 0 {
            let drained = Kind::Drained(rec::Drained {
                outputs: digest.outputs,
                digest: digest.sum,
            });
            write(&mut self.buf, self.node, self.at, drained);
        }
    }

    /// The records so far, leaving the buffer empty: a driver appends them to
    /// its file now and then.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// What a node emitted in one drain: how many outputs, and a hash of them that
/// does not depend on their order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Digest {
    outputs: u32,
    sum: u64,
}

impl Digest {
    fn add(&mut self, output: &Output) {
        let mut hasher = FxHasher::default();
        match output {
            Output::Transmit(transmit) => {
                hasher.write_u64(transmit.to.0);
                hasher.write(&transmit.header);
                hasher.write(&transmit.payload);
            }
            Output::Event(Event::Interest { name, subscribed }) => {
                hasher.write(name.as_bytes());
                hasher.write_u8(u8::from(*subscribed));
            }
            Output::Event(Event::Restarted { component, .. } | Event::Failed { component }) => {
                hasher.write_u32(component.0);
            }
            Output::Event(Event::CapacityChanged {
                component,
                limit,
                new,
                ..
            }) => {
                hasher.write_u32(component.map_or(u32::MAX, |id| id.0));
                hasher.write(limit.name().as_bytes());
                hasher.write_u64(new.value);
            }
            Output::Event(Event::CapacityRefused { error, .. }) => {
                hasher.write(error.to_string().as_bytes());
            }
            Output::Event(Event::Congestion {
                component,
                congested,
                queue_len,
                ..
            }) => {
                hasher.write_u32(component.0);
                hasher.write_u8(u8::from(*congested));
                hasher.write_usize(*queue_len);
            }
            Output::Event(Event::Traced(_)) | Output::Timeout(_) => {}
        }
        self.outputs += 1;
        self.sum = self.sum.wrapping_add(hasher.finish());
    }
}

/// A recording read back by [`parse_recording`].
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// The first record's.
    pub begin: rec::Begin,
    /// The rest, in order.
    pub records: Vec<rec::Record>,
    /// Bytes at the end that are the start of a record cut short (the
    /// recording process was killed while writing): left out.
    pub cut_short: usize,
}

/// A recording that cannot be read; nothing was fed anywhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// A record does not decode.
    #[error("record {index} at byte {at} is not an exchange.v1.record.Record: {error}")]
    Record {
        /// Which record, from 1.
        index: usize,
        /// Where it starts.
        at: usize,
        /// What prost said.
        error: prost::DecodeError,
    },
    /// Written by a later format.
    #[error("recording format version {0}; this exchange reads version 1")]
    Version(u32),
    /// The first record is not `begin`.
    #[error("not a recording: it does not start with a `begin` record")]
    NoBegin,
}

/// Splits a recording (see [`Recorder`]) into its `begin` and its records;
/// says which record, at which byte, is broken. A last record cut short is
/// left out (and counted in [`Recording::cut_short`]).
pub fn parse_recording(mut bytes: &[u8]) -> Result<Recording, RecordingError> {
    let total = bytes.len();
    let mut records = Vec::new();
    let mut cut_short = 0;
    while !bytes.is_empty() {
        let at = total - bytes.len();
        let mut rest = bytes;
        match prost::decode_length_delimiter(&mut rest) {
            Ok(length) if length > rest.len() => {
                cut_short = bytes.len();
                break;
            }
            // A length itself cut short (a varint is at most 10 bytes).
            Err(_) if bytes.len() < 10 => {
                cut_short = bytes.len();
                break;
            }
            _ => {}
        }
        let record = rec::Record::decode_length_delimited(&mut bytes).map_err(|error| {
            RecordingError::Record {
                index: records.len() + 1,
                at,
                error,
            }
        })?;
        records.push(record);
    }
    let mut records = records.into_iter();
    match records.next().and_then(|first| first.kind) {
        Some(Kind::Begin(begin)) if begin.version == 1 => Ok(Recording {
            begin,
            records: records.collect(),
            cut_short,
        }),
        Some(Kind::Begin(begin)) => Err(RecordingError::Version(begin.version)),
        _ => Err(RecordingError::NoBegin),
    }
}

/// Why a recording could not be replayed; the node took every record before
/// the one named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The record is not an input, or not a sensible one.
    #[error(transparent)]
    Record(#[from] InvalidRecord),
    /// A record for a node the replay does not have.
    #[error("a record for {0}, which is not one of the nodes")]
    NoSuchNode(NodeId),
    /// The node emitted something else than when recorded.
    #[error(
        "{node} emitted {outputs} outputs (digest {digest:016x}) at {at}; when recorded, {recorded_outputs} (digest {recorded_digest:016x})"
    )]
    Diverged {
        /// The node.
        node: NodeId,
        /// The time of the `drained` record.
        at: Time,
        /// What it emitted now.
        outputs: u32,
        /// Their digest.
        digest: u64,
        /// What it emitted when recorded.
        recorded_outputs: u32,
        /// Their digest.
        recorded_digest: u64,
    },
}

/// Feeds one recorded input to `node`; a `drained` record is checked against
/// what the node emitted since the last one. Fails on a record that is not an
/// input or makes no sense (a bad name, an unknown locality), or when the node
/// emitted something else than when recorded.
pub fn feed(node: &mut Node, record: &rec::Record) -> Result<(), ReplayError> {
    let at = Time::from_micros(record.at_us);
    let kind = record.kind.as_ref().ok_or(InvalidRecord::Empty)?;
    let Kind::Drained(recorded) = kind else {
        node.handle(at, Input::try_from(kind)?);
        return Ok(());
    };
    let mut digest = Digest::default();
    loop {
        match node.poll_output() {
            Output::Timeout(_) => break,
            output => digest.add(&output),
        }
    }
    if (digest.outputs, digest.sum) != (recorded.outputs, recorded.digest) {
        return Err(ReplayError::Diverged {
            node: node.id(),
            at,
            outputs: digest.outputs,
            digest: digest.sum,
            recorded_outputs: recorded.outputs,
            recorded_digest: recorded.digest,
        });
    }
    Ok(())
}
