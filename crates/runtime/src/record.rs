//! Recording a node's inputs, and feeding them back: every input a node takes
//! (frames, timer turns, refusals, route changes, …) with its time, and after
//! each batch of outputs an order-independent digest of them, as
//! length-delimited `exchange.v1.record.Record`s. [`feed`] gives a fresh node
//! the same inputs and checks that it emits the same. Sans-IO like the node:
//! drivers (`exchange dev` through [`crate::mem::MemNetwork`], `exchange run`)
//! call it and write the bytes out.

use std::hash::Hasher;

use exchange_idl::exchange::v1::record::{self as rec, record::Kind as Input};
use prost::Message as _;
use rustc_hash::FxHasher;

use crate::ids::NodeId;
use crate::node::{Event, Node, Output};
use crate::router::{Locality, NodeInfo, RouteChange};
use crate::time::Time;
use crate::transport::{Transmit, TransmitError};

/// Encodes records as they happen; [`Recorder::take`] hands out the bytes.
#[derive(Debug)]
pub struct Recorder {
    buf: Vec<u8>,
    /// What was emitted since the last [`Recorder::drained`].
    digest: Digest,
}

impl Recorder {
    /// A recording that starts with `begin`.
    pub fn new(begin: rec::Begin) -> Recorder {
        let mut recorder = Recorder {
            buf: Vec::new(),
            digest: Digest::default(),
        };
        recorder.input(NodeId(0), Time::ZERO, Input::Begin(begin));
        recorder
    }

    /// `node` takes `input` at `at`.
    pub fn input(&mut self, node: NodeId, at: Time, input: Input) {
        let record = rec::Record {
            node: node.0,
            at_us: at.as_micros(),
            kind: Some(input),
        };
        record
            .encode_length_delimited(&mut self.buf)
            .expect("a Vec grows as needed");
    }

    /// The node polled `output`.
    pub fn output(&mut self, output: &Output) {
        self.digest.add(output);
    }

    /// The node's outputs were polled until none was left: records what it
    /// emitted since the last time, if anything.
    pub fn drained(&mut self, node: NodeId, at: Time) {
        let digest = std::mem::take(&mut self.digest);
        if digest.outputs > 0 {
            self.input(
                node,
                at,
                Input::Drained(rec::Drained {
                    outputs: digest.outputs,
                    digest: digest.sum,
                }),
            );
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
            Output::Event(Event::Traced(_)) => {}
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

/// Splits a recording (see [`Recorder`]) into its `begin` and its records;
/// says which record, at which byte, is broken. A last record cut short is
/// left out (and counted in [`Recording::cut_short`]).
pub fn parse_recording(mut bytes: &[u8]) -> Result<Recording, String> {
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
            format!(
                "record {} at byte {at} is not an exchange.v1.record.Record: {error}",
                records.len() + 1
            )
        })?;
        records.push(record);
    }
    let mut records = records.into_iter();
    match records.next().and_then(|first| first.kind) {
        Some(Input::Begin(begin)) if begin.version == 1 => Ok(Recording {
            begin,
            records: records.collect(),
            cut_short,
        }),
        Some(Input::Begin(begin)) => Err(format!(
            "recording format version {}; this exchange reads version 1",
            begin.version
        )),
        _ => Err("not a recording: it does not start with a `begin` record".into()),
    }
}

/// Feeds one recorded input to `node`; a `drained` record is checked against
/// what the node emitted since the last one. Fails on a record that makes no
/// sense (a second `begin`, a bad name, an unknown locality), or when the node
/// emitted something else than when recorded.
pub fn feed(node: &mut Node, record: rec::Record) -> Result<(), String> {
    let at = Time::from_micros(record.at_us);
    let input = record.kind.ok_or("a record with no input")?;
    match input {
        Input::Begin(_) => return Err("a second `begin` record".into()),
        Input::Start(_) => node.start(at),
        Input::Frame(frame) => {
            node.handle_frame(at, NodeId(frame.from), &frame.header, frame.payload.into());
        }
        Input::Undecodable(_) => node.handle_undecodable(at),
        Input::Timeout(_) => node.handle_timeout(at),
        Input::Run(_) => {
            node.run(at, &mut crate::NoStopwatch);
        }
        Input::TransmitFailed(failed) => {
            let transmit = Transmit {
                to: NodeId(failed.to),
                header: failed.header.into(),
                payload: failed.payload.into(),
            };
            let error = if failed.would_block {
                TransmitError::WouldBlock
            } else {
                TransmitError::Unreachable
            };
            node.handle_transmit_error(at, transmit, error);
        }
        Input::Interest(interest) => {
            crate::ids::validate_name(&interest.name)
                .map_err(|error| format!("interest in {:?}: {error}", interest.name))?;
            node.router_mut().set_remote_subscriber(
                &interest.name,
                NodeId(interest.from),
                interest.subscribed,
            );
        }
        Input::Route(route) => node.change_route(at, &route_change(route)?),
        Input::Quiesce(_) => node.quiesce(at),
        Input::Drain(_) => node.drain(at),
        Input::Shutdown(_) => {
            node.shutdown(at);
            while node.poll_output().is_some() {}
        }
        Input::Drained(recorded) => {
            let mut digest = Digest::default();
            while let Some(output) = node.poll_output() {
                digest.add(&output);
            }
            if (digest.outputs, digest.sum) != (recorded.outputs, recorded.digest) {
                return Err(format!(
                    "{} emitted {} outputs (digest {:016x}) at {at}; when recorded, {} (digest {:016x})",
                    node.id(),
                    digest.outputs,
                    digest.sum,
                    recorded.outputs,
                    recorded.digest
                ));
            }
        }
    }
    Ok(())
}

/// The input of a frame a node takes from `from` (see [`feed`]).
pub fn frame(from: NodeId, header: &[u8], payload: &[u8]) -> Input {
    Input::Frame(rec::Frame {
        from: from.0,
        header: header.to_vec(),
        payload: payload.to_vec(),
    })
}

/// The input of a transmit the network refused with `error` (see [`feed`]).
pub fn transmit_failed(transmit: &Transmit, error: TransmitError) -> Input {
    Input::TransmitFailed(rec::TransmitFailed {
        to: transmit.to.0,
        header: transmit.header.to_vec(),
        payload: transmit.payload.to_vec(),
        would_block: error == TransmitError::WouldBlock,
    })
}

/// The input of a change to a node's routes (see [`feed`]).
pub fn route(change: &RouteChange) -> Input {
    Input::Route(route_record(change))
}

fn route_record(change: &RouteChange) -> rec::Route {
    use rec::route::Change;
    let named = |name: &str, on: bool| rec::Named {
        name: name.to_owned(),
        on,
    };
    let (about, change) = match change {
        RouteChange::Handler {
            name,
            node,
            handles,
        } => (node, Change::Handler(named(name, *handles))),
        RouteChange::Subscriber {
            name,
            node,
            subscribed,
        } => (node, Change::Subscriber(named(name, *subscribed))),
        RouteChange::Info { node, info } => (
            node,
            Change::Info(rec::NodeInfo {
                locality: match info.locality {
                    Locality::Host => 0,
                    Locality::Network => 1,
                    Locality::Remote => 2,
                },
                load: info.load,
            }),
        ),
        RouteChange::Gone { node } => (node, Change::Gone(rec::Empty {})),
    };
    rec::Route {
        about: about.0,
        change: Some(change),
    }
}

/// A recorded route change, checked: names must be valid, localities known.
fn route_change(route: rec::Route) -> Result<RouteChange, String> {
    use rec::route::Change;
    let node = NodeId(route.about);
    let name = |named: &rec::Named| {
        crate::ids::validate_name(&named.name)
            .map_err(|error| format!("a route for {:?}: {error}", named.name))
    };
    Ok(match route.change.ok_or("a route record with no change")? {
        Change::Handler(named) => {
            name(&named)?;
            RouteChange::Handler {
                name: named.name,
                node,
                handles: named.on,
            }
        }
        Change::Subscriber(named) => {
            name(&named)?;
            RouteChange::Subscriber {
                name: named.name,
                node,
                subscribed: named.on,
            }
        }
        Change::Info(info) => RouteChange::Info {
            node,
            info: NodeInfo {
                locality: match info.locality {
                    0 => Locality::Host,
                    1 => Locality::Network,
                    2 => Locality::Remote,
                    other => return Err(format!("a route with locality {other} (0 to 2)")),
                },
                load: info.load,
            },
        },
        Change::Gone(_) => RouteChange::Gone { node },
    })
}
