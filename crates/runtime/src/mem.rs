//! The in-memory network: many nodes in one process, frames carried between them
//! with modelled latency, jitter and loss, all seeded. Sans-IO like the node: it
//! takes `now` and never reads a clock, so `exchange dev` drives it with the real
//! clock and the simulator with virtual time.
//!
//! Messages between nodes take the production path: the sending node encodes the
//! header, the network carries the frames, the receiving node decodes and admits.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Duration;

use std::hash::Hasher;

use exchange_idl::exchange::v1::record::{self as rec, record::Kind as Input};
use prost::Message as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHasher;

use crate::ids::NodeId;
use crate::node::{Event, Node, Output};
use crate::router::{Locality, NodeInfo, RouteChange};
use crate::time::{Stopwatch, Time};
use crate::transport::{Transmit, TransmitError};

/// How every link behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkModel {
    /// Base one-way latency.
    pub latency: Duration,
    /// Extra latency, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Probability that a frame is lost (0.0–1.0).
    pub loss: f64,
    /// Frames in flight at most, network-wide; past it sends fail with
    /// [`TransmitError::WouldBlock`], as a full ZeroMQ queue does.
    pub in_flight_max: usize,
}

impl Default for LinkModel {
    fn default() -> Self {
        LinkModel {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            in_flight_max: 1 << 20,
        }
    }
}

/// What the network did with frames.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the network.
    pub sent: u64,
    /// Frames delivered to a node.
    pub delivered: u64,
    /// Frames lost by the loss model (never accepted anywhere; a lost request
    /// ends as an `Expired` bounce at its requester).
    pub lost: u64,
    /// Frames refused back to their sender (unknown node or full queue).
    pub refused: u64,
    /// Frames lost on a cut link ([`MemNetwork::cut`]).
    pub cut: u64,
    /// Discovery's datagrams handed to the network.
    pub datagrams_sent: u64,
    /// Datagrams lost by the loss model, on a cut link or for want of room.
    pub datagrams_lost: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Time,
    seq: u64,
    from: NodeId,
    to: NodeId,
    header: bytes::Bytes,
    payload: bytes::Bytes,
}

/// A datagram between two nodes' memberships (discovery's traffic, which the
/// driver carries: a membership is not a node input).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Datagram {
    /// When it arrives.
    pub at: Time,
    seq: u64,
    /// The sending node.
    pub from: NodeId,
    /// The receiving node.
    pub to: NodeId,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Splits a recording ([`MemNetwork::record`]) into its `begin` and its
/// records; says which record, at which byte, is broken.
pub fn parse_recording(mut bytes: &[u8]) -> Result<(rec::Begin, Vec<rec::Record>), String> {
    let total = bytes.len();
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let at = total - bytes.len();
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
        Some(Input::Begin(begin)) if begin.version == 1 => Ok((begin, records.collect())),
        Some(Input::Begin(begin)) => Err(format!(
            "recording format version {}; this exchange reads version 1",
            begin.version
        )),
        _ => Err("not a recording: it does not start with a `begin` record".into()),
    }
}

/// Nodes and the frames between them.
#[derive(Debug)]
pub struct MemNetwork {
    nodes: Vec<Node>,
    index: BTreeMap<NodeId, usize>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    link: LinkModel,
    rng: ChaCha8Rng,
    seq: u64,
    stats: NetStats,
    events: VecDeque<(NodeId, Event)>,
    /// Every input each node takes, encoded, while recording (see
    /// [`MemNetwork::record`]).
    recording: Option<Vec<u8>>,
    /// While replaying: whether the routes were set up yet.
    routed: bool,
    /// Routes come from the driver ([`MemNetwork::change_route`]), as
    /// discovery learns them; else every node knows every other's names.
    discovery: bool,
    datagrams: BinaryHeap<Reverse<Datagram>>,
    /// Cut links, each as (lower id, higher id), with how many cuts hold it.
    cuts: BTreeMap<(NodeId, NodeId), u32>,
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

impl MemNetwork {
    /// An empty network whose randomness comes from `seed`.
    pub fn new(link: LinkModel, seed: u64) -> MemNetwork {
        MemNetwork {
            nodes: Vec::new(),
            index: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            link,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seq: 0,
            stats: NetStats::default(),
            events: VecDeque::new(),
            recording: None,
            routed: false,
            discovery: false,
            datagrams: BinaryHeap::new(),
            cuts: BTreeMap::new(),
        }
    }

    /// Cuts the link between `a` and `b`, both ways: what is sent over it from
    /// now on is lost (frames counted as `cut`), as in a network partition;
    /// what is already in flight still arrives. Cuts nest: a link cut twice
    /// is healed by the second [`MemNetwork::heal`].
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        *self.cuts.entry((a.min(b), a.max(b))).or_default() += 1;
    }

    /// Undoes one [`MemNetwork::cut`] of the link between `a` and `b`.
    pub fn heal(&mut self, a: NodeId, b: NodeId) {
        let link = (a.min(b), a.max(b));
        if let Some(count) = self.cuts.get_mut(&link) {
            *count -= 1;
            if *count == 0 {
                self.cuts.remove(&link);
            }
        }
    }

    fn is_cut(&self, a: NodeId, b: NodeId) -> bool {
        !self.cuts.is_empty() && self.cuts.contains_key(&(a.min(b), a.max(b)))
    }

    /// Routes will come from the driver, one [`MemNetwork::change_route`] at a
    /// time (from each node's membership), instead of every node being told
    /// every other's names at start; and a node's subscriptions come out of
    /// [`MemNetwork::poll_event`] as `Event::Interest`, for the driver to
    /// advertise. Call before [`MemNetwork::record`] and [`MemNetwork::start`].
    pub fn route_by_discovery(&mut self) {
        self.discovery = true;
    }

    /// Records every input each node takes from now on (call before
    /// [`MemNetwork::start`]); [`MemNetwork::take_recording`] hands out the bytes.
    pub fn record(&mut self, seed: u64) {
        let nodes = self
            .nodes
            .iter()
            .map(|node| node.name().to_owned())
            .collect();
        let mut buf = Vec::new();
        let begin = rec::Record {
            node: 0,
            at_us: 0,
            kind: Some(Input::Begin(rec::Begin {
                version: 1,
                seed,
                nodes,
                discovery: self.discovery,
            })),
        };
        begin
            .encode_length_delimited(&mut buf)
            .expect("a Vec grows as needed");
        self.recording = Some(buf);
    }

    /// The recording so far (length-delimited `exchange.v1.record.Record`s),
    /// leaving the buffer empty: a driver appends it to its file now and then.
    pub fn take_recording(&mut self) -> Vec<u8> {
        self.recording
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn note(&mut self, node: NodeId, at: Time, input: impl FnOnce() -> Input) {
        if let Some(buf) = self.recording.as_mut() {
            let record = rec::Record {
                node: node.0,
                at_us: at.as_micros(),
                kind: Some(input()),
            };
            record
                .encode_length_delimited(buf)
                .expect("a Vec grows as needed");
        }
    }

    /// Tells every node which names the others handle (discovery will do the
    /// telling in production; here the network knows all).
    fn route_all(&mut self) {
        let advertised: Vec<(NodeId, Vec<crate::Name>)> = self
            .nodes
            .iter()
            .map(|node| (node.id(), node.router().local_names()))
            .collect();
        for node in &mut self.nodes {
            for (peer, names) in &advertised {
                if *peer != node.id() {
                    for name in names {
                        node.router_mut().add_remote_handler(name, *peer);
                    }
                }
            }
        }
    }

    /// Feeds one recorded input to its node, as [`MemNetwork::record`] wrote it;
    /// a `drained` record is checked against what the node emitted this time.
    /// Nothing is carried between nodes: every frame a node took is itself an
    /// input in the recording. Fails on a record that does not fit these nodes,
    /// or when a node emitted something else than when recorded.
    pub fn replay(&mut self, record: rec::Record) -> Result<(), String> {
        let node = NodeId(record.node);
        let at = Time::from_micros(record.at_us);
        let input = record.kind.ok_or("a record with no input")?;
        if let Input::Begin(_) = input {
            return Err("a second `begin` record".into());
        }
        let index = *self
            .index
            .get(&node)
            .ok_or_else(|| format!("a record for {node}, which is not one of the nodes"))?;
        let target = &mut self.nodes[index];
        match input {
            Input::Begin(_) => {}
            Input::Start(_) => {
                if !self.routed && !self.discovery {
                    self.routed = true;
                    self.route_all();
                }
                self.nodes[index].start(at);
            }
            Input::Frame(frame) => {
                target.handle_frame(at, NodeId(frame.from), &frame.header, frame.payload.into());
            }
            Input::Timeout(_) => target.handle_timeout(at),
            Input::Run(_) => {
                target.run(at, &mut crate::NoStopwatch);
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
                target.handle_transmit_error(at, transmit, error);
            }
            Input::Interest(interest) => {
                crate::ids::validate_name(&interest.name)
                    .map_err(|error| format!("interest in {:?}: {error}", interest.name))?;
                target.router_mut().set_remote_subscriber(
                    &interest.name,
                    NodeId(interest.from),
                    interest.subscribed,
                );
            }
            Input::Route(route) => target.change_route(at, &route_change(route)?),
            Input::Quiesce(_) => target.quiesce(at),
            Input::Shutdown(_) => {
                target.shutdown(at);
                while target.poll_output().is_some() {}
            }
            Input::Drained(recorded) => {
                let mut digest = Digest::default();
                while let Some(output) = target.poll_output() {
                    digest.add(&output);
                }
                if (digest.outputs, digest.sum) != (recorded.outputs, recorded.digest) {
                    return Err(format!(
                        "{node} emitted {} outputs (digest {:016x}) at {at}; when recorded, {} (digest {:016x})",
                        digest.outputs, digest.sum, recorded.outputs, recorded.digest
                    ));
                }
            }
        }
        Ok(())
    }

    /// Adds a node (before [`MemNetwork::start`]).
    pub fn add_node(&mut self, node: Node) {
        self.index.insert(node.id(), self.nodes.len());
        self.nodes.push(node);
    }

    /// Tells every node which names the others handle (unless routes come from
    /// discovery), then starts them all.
    pub fn start(&mut self, now: Time) {
        if !self.discovery {
            self.route_all();
        }
        for index in 0..self.nodes.len() {
            self.note(self.nodes[index].id(), now, || Input::Start(rec::Empty {}));
            self.nodes[index].start(now);
            self.drain_outputs(now, index);
        }
    }

    /// The nodes, in the order added.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.index.get(&id).map(|i| &self.nodes[*i])
    }

    /// What the network did with frames.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Frames in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Delivers frames due by `now`, fires due timers, lets each node run one turn
    /// and carries what they send. Returns how much work was done (frames
    /// delivered plus items dispatched); 0 means nothing was due.
    pub fn step(&mut self, now: Time, stopwatch: &mut impl Stopwatch) -> usize {
        let mut work = 0;
        while self.in_flight.peek().is_some_and(|Reverse(f)| f.at <= now) {
            let Reverse(frame) = self.in_flight.pop().expect("peeked");
            let index = self.index[&frame.to];
            self.note(frame.to, now, || {
                Input::Frame(rec::Frame {
                    from: frame.from.0,
                    header: frame.header.to_vec(),
                    payload: frame.payload.to_vec(),
                })
            });
            self.nodes[index].handle_frame(now, frame.from, &frame.header, frame.payload);
            self.stats.delivered += 1;
            work += 1;
        }
        for index in 0..self.nodes.len() {
            let id = self.nodes[index].id();
            if self.nodes[index].poll_timeout().is_some_and(|t| t <= now) {
                self.note(id, now, || Input::Timeout(rec::Empty {}));
                self.nodes[index].handle_timeout(now);
            }
            // A turn with nothing queued changes nothing: not worth a record.
            if !self.nodes[index].is_quiet() {
                self.note(id, now, || Input::Run(rec::Empty {}));
            }
            work += self.nodes[index].run(now, stopwatch);
            self.drain_outputs(now, index);
        }
        work
    }

    fn drain_outputs(&mut self, now: Time, index: usize) {
        let from = self.nodes[index].id();
        let mut digest = Digest::default();
        while let Some(output) = self.nodes[index].poll_output() {
            if self.recording.is_some() {
                digest.add(&output);
            }
            match output {
                Output::Transmit(transmit) => {
                    if let Err((transmit, error)) = self.carry(now, from, transmit) {
                        self.stats.refused += 1;
                        self.note(from, now, || {
                            Input::TransmitFailed(rec::TransmitFailed {
                                to: transmit.to.0,
                                header: transmit.header.to_vec(),
                                payload: transmit.payload.to_vec(),
                                would_block: error == TransmitError::WouldBlock,
                            })
                        });
                        self.nodes[index].handle_transmit_error(now, transmit, error);
                    }
                }
                Output::Event(Event::Interest { name, subscribed }) if !self.discovery => {
                    for other in 0..self.nodes.len() {
                        let to = self.nodes[other].id();
                        if to == from {
                            continue;
                        }
                        self.note(to, now, || {
                            Input::Interest(rec::Interest {
                                from: from.0,
                                name: name.to_string(),
                                subscribed,
                            })
                        });
                        self.nodes[other]
                            .router_mut()
                            .set_remote_subscriber(&name, from, subscribed);
                    }
                }
                Output::Event(event) => self.events.push_back((from, event)),
            }
        }
        if digest.outputs > 0 {
            self.note(from, now, || {
                Input::Drained(rec::Drained {
                    outputs: digest.outputs,
                    digest: digest.sum,
                })
            });
        }
    }

    fn carry(
        &mut self,
        now: Time,
        from: NodeId,
        transmit: Transmit,
    ) -> Result<(), (Transmit, TransmitError)> {
        if !self.index.contains_key(&transmit.to) {
            return Err((transmit, TransmitError::Unreachable));
        }
        if self.in_flight.len() >= self.link.in_flight_max {
            return Err((transmit, TransmitError::WouldBlock));
        }
        self.stats.sent += 1;
        if self.is_cut(from, transmit.to) {
            self.stats.cut += 1;
            return Ok(());
        }
        let Some(at) = self.arrival(now) else {
            self.stats.lost += 1;
            return Ok(());
        };
        let Transmit {
            to,
            header,
            payload,
        } = transmit;
        self.in_flight.push(Reverse(InFlight {
            at,
            seq: self.seq,
            from,
            to,
            header,
            payload,
        }));
        Ok(())
    }

    /// When something sent at `now` arrives, by the link model (and a new
    /// sequence number in `self.seq`), or `None` if it is lost.
    fn arrival(&mut self, now: Time) -> Option<Time> {
        if self.link.loss > 0.0 && self.rng.random_bool(self.link.loss.clamp(0.0, 1.0)) {
            return None;
        }
        let jitter_us = u64::try_from(self.link.jitter.as_micros()).unwrap_or(u64::MAX);
        let jitter = if jitter_us == 0 {
            0
        } else {
            self.rng.random_range(0..=jitter_us)
        };
        self.seq += 1;
        Some(now + self.link.latency + Duration::from_micros(jitter))
    }

    /// Carries a datagram from `from`'s membership to `to`'s over the same
    /// links as frames (latency, jitter, loss); one for an unknown node, or
    /// past `in_flight_max`, is lost.
    pub fn send_datagram(&mut self, now: Time, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        self.stats.datagrams_sent += 1;
        let room = self.datagrams.len() < self.link.in_flight_max && !self.is_cut(from, to);
        match self.arrival(now) {
            Some(at) if room && self.index.contains_key(&to) => {
                self.datagrams.push(Reverse(Datagram {
                    at,
                    seq: self.seq,
                    from,
                    to,
                    bytes,
                }));
            }
            _ => self.stats.datagrams_lost += 1,
        }
    }

    /// The next datagram due by `now`, if any.
    pub fn poll_datagram(&mut self, now: Time) -> Option<Datagram> {
        if self.datagrams.peek().is_some_and(|Reverse(d)| d.at <= now) {
            self.datagrams.pop().map(|Reverse(d)| d)
        } else {
            None
        }
    }

    /// Applies a change to `node`'s routes (from its membership, when routes
    /// come from discovery) and carries what that sends: messages that were
    /// waiting for a handler leave.
    pub fn change_route(&mut self, now: Time, node: NodeId, change: &RouteChange) {
        let Some(&index) = self.index.get(&node) else {
            return;
        };
        self.note(node, now, || Input::Route(route_record(change)));
        self.nodes[index].change_route(now, change);
        self.drain_outputs(now, index);
    }

    /// Events the nodes reported (traces, restarts), with the node they came from.
    pub fn poll_event(&mut self) -> Option<(NodeId, Event)> {
        self.events.pop_front()
    }

    /// The earliest time any node or frame needs attention.
    pub fn poll_timeout(&self) -> Option<Time> {
        let nodes = self.nodes.iter().filter_map(Node::poll_timeout);
        let frames = self.in_flight.peek().map(|Reverse(frame)| frame.at);
        let datagrams = self.datagrams.peek().map(|Reverse(datagram)| datagram.at);
        nodes.chain(frames).chain(datagrams).min()
    }

    /// Whether every node is idle and no frame is in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.nodes.iter().all(Node::is_idle)
    }

    /// Cancels every timer on every node (see [`Node::quiesce`]).
    pub fn quiesce(&mut self, now: Time) {
        for index in 0..self.nodes.len() {
            self.note(self.nodes[index].id(), now, || {
                Input::Quiesce(rec::Empty {})
            });
            self.nodes[index].quiesce(now);
        }
    }

    /// Shuts every node down (see [`Node::shutdown`]). Returns how many frames
    /// were never accepted anywhere: those still in flight, and the bounces the
    /// nodes sent each other while all of them were stopping.
    pub fn shutdown(&mut self, now: Time) -> usize {
        let mut undelivered = self.in_flight.len();
        self.in_flight.clear();
        self.datagrams.clear();
        for index in 0..self.nodes.len() {
            self.note(self.nodes[index].id(), now, || {
                Input::Shutdown(rec::Empty {})
            });
            self.nodes[index].shutdown(now);
            while let Some(output) = self.nodes[index].poll_output() {
                undelivered += usize::from(matches!(output, Output::Transmit(_)));
            }
        }
        undelivered
    }
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
