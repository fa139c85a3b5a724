//! The in-memory network: many nodes in one process, frames carried between them
//! with modelled latency, jitter and loss, all seeded, and links that can be cut
//! (partitions). Discovery's datagrams cross the same links, for the driver's
//! memberships; routes come from them or, statically, from every node's names.
//! Sans-IO like the node: it takes `now` and never reads a clock, so `exchange
//! dev` drives it with the real clock and `exchange sim --replay` with recorded
//! time.
//!
//! Messages between nodes take the production path: the sending node encodes the
//! header, the network carries the frames, the receiving node decodes and admits.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Duration;

use exchange_idl::exchange::v1::record::{self as rec, record::Kind as Input};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ids::NodeId;
use crate::node::{Event, Node, Output};
use crate::record::{self, Recorder};
use crate::router::RouteChange;
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
    /// Every input each node takes, while recording (see
    /// [`MemNetwork::record`]).
    recording: Option<Recorder>,
    /// While replaying: whether the routes were set up yet.
    routed: bool,
    /// Routes come from the driver ([`MemNetwork::change_route`]), as
    /// discovery learns them; else every node knows every other's names.
    discovery: bool,
    datagrams: BinaryHeap<Reverse<Datagram>>,
    /// Cut links, each as (lower id, higher id), with how many cuts hold it.
    cuts: BTreeMap<(NodeId, NodeId), u32>,
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
        self.cuts.contains_key(&(a.min(b), a.max(b)))
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
        self.recording = Some(Recorder::new(rec::Begin {
            version: 1,
            seed,
            nodes,
            discovery: self.discovery,
            ..rec::Begin::default()
        }));
    }

    /// The recording so far (length-delimited `exchange.v1.record.Record`s),
    /// leaving the buffer empty: a driver appends it to its file now and then.
    pub fn take_recording(&mut self) -> Vec<u8> {
        self.recording
            .as_mut()
            .map(Recorder::take)
            .unwrap_or_default()
    }

    fn note(&mut self, node: NodeId, at: Time, input: impl FnOnce() -> Input) {
        if let Some(recording) = self.recording.as_mut() {
            recording.input(node, at, input());
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

    /// Feeds one recorded input to its node, as [`MemNetwork::record`] wrote it
    /// (see [`crate::record::feed`]); before the first `start`, the routes to
    /// every node's names are set up, unless they came from discovery (then
    /// they are in the recording). Nothing is carried between nodes: every
    /// frame a node took is itself an input in the recording. Fails on a
    /// record that does not fit these nodes, or when a node emitted something
    /// else than when recorded.
    pub fn replay(&mut self, record: rec::Record) -> Result<(), String> {
        let node = NodeId(record.node);
        let index = *self
            .index
            .get(&node)
            .ok_or_else(|| format!("a record for {node}, which is not one of the nodes"))?;
        if let Some(Input::Start(_)) = record.kind
            && !self.routed
            && !self.discovery
        {
            self.routed = true;
            self.route_all();
        }
        record::feed(&mut self.nodes[index], record)
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
                record::frame(frame.from, &frame.header, &frame.payload)
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
        while let Some(output) = self.nodes[index].poll_output() {
            if let Some(recording) = self.recording.as_mut() {
                recording.output(&output);
            }
            match output {
                Output::Transmit(transmit) => {
                    if let Err((transmit, error)) = self.carry(now, from, transmit) {
                        self.stats.refused += 1;
                        self.note(from, now, || record::transmit_failed(&transmit, error));
                        self.nodes[index].handle_transmit_error(now, transmit, error);
                    }
                }
                Output::Event(Event::Interest { name, subscribed }) if !self.discovery => {
                    let change = RouteChange::Subscriber {
                        name: name.to_string(),
                        node: from,
                        subscribed,
                    };
                    for other in 0..self.nodes.len() {
                        let to = self.nodes[other].id();
                        if to != from {
                            self.note(to, now, || record::route(&change));
                            self.nodes[other].change_route(now, &change);
                        }
                    }
                }
                Output::Event(event) => self.events.push_back((from, event)),
            }
        }
        if let Some(recording) = self.recording.as_mut() {
            recording.drained(from, now);
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
        self.note(node, now, || record::route(change));
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
