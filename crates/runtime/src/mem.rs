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

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ids::NodeId;
use crate::node::{Event, Node, Output};
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
        }
    }

    /// Adds a node (before [`MemNetwork::start`]).
    pub fn add_node(&mut self, node: Node) {
        self.index.insert(node.id(), self.nodes.len());
        self.nodes.push(node);
    }

    /// Tells every node which names the others handle, then starts them all.
    /// (Discovery will do the telling in production; here the network knows all.)
    pub fn start(&mut self, now: Time) {
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
        for index in 0..self.nodes.len() {
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
            self.nodes[index].handle_frame(now, frame.from, &frame.header, frame.payload);
            self.stats.delivered += 1;
            work += 1;
        }
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
            work += node.run(now, stopwatch);
            self.drain_outputs(now, index);
        }
        work
    }

    fn drain_outputs(&mut self, now: Time, index: usize) {
        let from = self.nodes[index].id();
        while let Some(output) = self.nodes[index].poll_output() {
            match output {
                Output::Transmit(transmit) => {
                    if let Err((transmit, error)) = self.carry(now, from, transmit) {
                        self.stats.refused += 1;
                        self.nodes[index].handle_transmit_error(now, transmit, error);
                    }
                }
                Output::Event(Event::Interest { name, subscribed }) => {
                    for node in self.nodes.iter_mut().filter(|node| node.id() != from) {
                        node.router_mut()
                            .set_remote_subscriber(&name, from, subscribed);
                    }
                }
                Output::Event(event) => self.events.push_back((from, event)),
            }
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
        if self.link.loss > 0.0 && self.rng.random_bool(self.link.loss.clamp(0.0, 1.0)) {
            self.stats.lost += 1;
            return Ok(());
        }
        let jitter_us = u64::try_from(self.link.jitter.as_micros()).unwrap_or(u64::MAX);
        let jitter = if jitter_us == 0 {
            0
        } else {
            self.rng.random_range(0..=jitter_us)
        };
        let at = now + self.link.latency + Duration::from_micros(jitter);
        self.seq += 1;
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

    /// Events the nodes reported (traces, restarts), with the node they came from.
    pub fn poll_event(&mut self) -> Option<(NodeId, Event)> {
        self.events.pop_front()
    }

    /// The earliest time any node or frame needs attention.
    pub fn poll_timeout(&self) -> Option<Time> {
        let nodes = self.nodes.iter().filter_map(Node::poll_timeout);
        let frames = self.in_flight.peek().map(|Reverse(frame)| frame.at);
        nodes.chain(frames).min()
    }

    /// Whether every node is idle and no frame is in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.nodes.iter().all(Node::is_idle)
    }

    /// Cancels every timer on every node (see [`Node::quiesce`]).
    pub fn quiesce(&mut self, now: Time) {
        for node in &mut self.nodes {
            node.quiesce(now);
        }
    }

    /// Shuts every node down (see [`Node::shutdown`]). Returns how many frames
    /// were never accepted anywhere: those still in flight, and the bounces the
    /// nodes sent each other while all of them were stopping.
    pub fn shutdown(&mut self, now: Time) -> usize {
        let mut undelivered = self.in_flight.len();
        self.in_flight.clear();
        for index in 0..self.nodes.len() {
            self.nodes[index].shutdown(now);
            while let Some(output) = self.nodes[index].poll_output() {
                undelivered += usize::from(matches!(output, Output::Transmit(_)));
            }
        }
        undelivered
    }
}
