//! [`Cluster`]: hosts on one emulated network ([`Netem`]), stepped together.
//! This is `exchange dev`'s world, and the harness of scenario tests; the
//! simulator drives hosts on a [`Netem`] itself (it crashes and restarts them
//! and skews their clocks).
//!
//! Messages between nodes take the production path: the sending node encodes
//! the header, the emulator carries the frames, the receiving node decodes and
//! admits. Discovery's datagrams cross the same links, between the hosts'
//! memberships (addressed by [`in_memory_addr`]).

use std::collections::{BTreeMap, VecDeque};

use exchange_discovery::{Event as MemberEvent, in_memory_addr, in_memory_node};
use exchange_idl::exchange::v1::record as rec;
use exchange_runtime::netem::Netem;
use exchange_runtime::record::{self, ReplayError};
use exchange_runtime::{Event, Input, Node, NodeId, RouteChange, Time};

use crate::host::{Host, Output};
use crate::routes;

/// What a host of the cluster reported, with its node's id.
#[derive(Debug)]
pub enum News {
    /// A node's event (traces, restarts; with static routes, interest is
    /// carried to the other nodes and not reported).
    Event(NodeId, Event),
    /// A host's membership saw a member come, change or go.
    Member(NodeId, MemberEvent),
}

/// Hosts on one emulated network. See the [module docs](self).
#[derive(Debug)]
pub struct Cluster {
    hosts: Vec<Host>,
    index: BTreeMap<NodeId, usize>,
    net: Netem,
    news: VecDeque<News>,
}

impl Cluster {
    /// No hosts yet, on `net`.
    pub fn new(net: Netem) -> Cluster {
        Cluster {
            hosts: Vec::new(),
            index: BTreeMap::new(),
            net,
            news: VecDeque::new(),
        }
    }

    /// Adds a host (before [`Cluster::start`]).
    pub fn add(&mut self, host: Host) {
        self.index.insert(host.node().id(), self.hosts.len());
        self.hosts.push(host);
    }

    /// Tells every node which names the others handle, as static `[[peer]]`
    /// configuration does, instead of a membership. Call it before
    /// [`Cluster::record`]: it is not recorded, and a replay does the same
    /// before it feeds the first record.
    pub fn route_statically(&mut self, now: Time) {
        let advertised: Vec<(NodeId, Vec<exchange_runtime::Name>)> = self
            .hosts
            .iter()
            .map(|host| (host.node().id(), host.node().router().local_names()))
            .collect();
        for host in &mut self.hosts {
            let id = host.node().id();
            for (peer, names) in advertised.iter().filter(|(peer, _)| *peer != id) {
                let names = names.iter().map(exchange_runtime::Name::as_str);
                for change in routes::static_peer(*peer, names, []) {
                    host.handle(now, Input::Route(change));
                }
            }
        }
    }

    /// Records every input each node takes from now on; returns the
    /// recording's first record (its `begin`), for the file.
    pub fn record(&mut self, seed: u64, discovery: bool) -> Vec<u8> {
        for host in &mut self.hosts {
            host.record();
        }
        record::begin(rec::Begin {
            version: 1,
            seed,
            nodes: self
                .hosts
                .iter()
                .map(|h| h.node().name().to_owned())
                .collect(),
            discovery,
            ..rec::Begin::default()
        })
    }

    /// The records so far, every node's in its own order, leaving the buffers
    /// empty: a driver appends them to its file now and then.
    pub fn take_recording(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for host in &mut self.hosts {
            bytes.extend(host.take_recording());
        }
        bytes
    }

    /// Feeds one recorded input to its node (see [`record::feed`]). Nothing is
    /// carried between nodes: every frame a node took is itself a record.
    pub fn replay(&mut self, record: &rec::Record) -> Result<(), ReplayError> {
        let node = NodeId(record.node);
        let index = self.index.get(&node).copied();
        let index = index.ok_or(ReplayError::NoSuchNode(node))?;
        self.hosts[index].replay(record)
    }

    /// Starts every node, then what was emitted is carried.
    pub fn start(&mut self, now: Time) {
        for index in 0..self.hosts.len() {
            self.hosts[index].handle(now, Input::Start);
            self.flush(now, index);
        }
    }

    /// Every host.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Every host, to set up before [`Cluster::start`] (joining a cluster).
    pub fn hosts_mut(&mut self) -> &mut [Host] {
        &mut self.hosts
    }

    /// The nodes, in the order added.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.hosts.iter().map(Host::node)
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.index.get(&id).map(|i| self.hosts[*i].node())
    }

    /// The network.
    pub fn net(&self) -> &Netem {
        &self.net
    }

    /// The network, to cut and heal links.
    pub fn net_mut(&mut self) -> &mut Netem {
        &mut self.net
    }

    /// Hands `input` to node `id` (a route change, say) and carries what that
    /// sends. Unknown ids are ignored.
    pub fn handle(&mut self, now: Time, id: NodeId, input: Input<'_>) {
        if let Some(&index) = self.index.get(&id) {
            self.hosts[index].handle(now, input);
            self.flush(now, index);
        }
    }

    /// Delivers the frames and datagrams due by `now`, lets every host do
    /// what is due, and carries what they send.
    pub fn step(&mut self, now: Time) {
        while let Some(frame) = self.net.pop_frame(now) {
            let index = self.index.get(&frame.to).copied();
            self.net.arrived(index.is_some());
            if let Some(index) = index {
                let input = Input::Frame {
                    from: frame.from,
                    header: &frame.header,
                    payload: frame.payload.clone(),
                };
                self.hosts[index].handle(now, input);
            }
        }
        while let Some(datagram) = self.net.pop_datagram(now) {
            let index = self.index.get(&datagram.to).copied();
            let joined = index.is_some_and(|i| self.hosts[i].membership().is_some());
            self.net.datagram_arrived(joined);
            if let Some(index) = index {
                let from = in_memory_addr(datagram.from);
                self.hosts[index].handle_datagram(now, from, &datagram.bytes);
            }
        }
        for index in 0..self.hosts.len() {
            self.hosts[index].handle_timeout(now);
            self.flush(now, index);
        }
    }

    /// Carries what host `index` emitted: frames over the network (a refusal
    /// goes back to it as an input), datagrams, and with static routes its
    /// interest to every other node.
    fn flush(&mut self, now: Time, index: usize) {
        let from = self.hosts[index].node().id();
        loop {
            match self.hosts[index].poll_output() {
                Output::Transmit(transmit) => {
                    let to_up = self.index.contains_key(&transmit.to);
                    if let Err((transmit, error)) = self.net.send(now, from, 0, transmit, to_up) {
                        let failed = Input::TransmitFailed { transmit, error };
                        self.hosts[index].handle(now, failed);
                    }
                }
                Output::Datagram(datagram) => {
                    // An address that is no node's arrives nowhere, counted.
                    let to = in_memory_node(datagram.to).unwrap_or(NodeId(0));
                    self.net.send_datagram(now, from, to, datagram.bytes);
                }
                Output::Event(Event::Interest { name, subscribed }) => {
                    let change = RouteChange::Subscriber {
                        name: name.to_string(),
                        node: from,
                        subscribed,
                    };
                    for other in (0..self.hosts.len()).filter(|other| *other != index) {
                        self.hosts[other].handle(now, Input::Route(change.clone()));
                        self.flush(now, other);
                    }
                }
                Output::Event(event) => self.news.push_back(News::Event(from, event)),
                Output::Member(event) => self.news.push_back(News::Member(from, event)),
                Output::Timeout(_) => break,
            }
        }
    }

    /// What the hosts reported, in order.
    pub fn poll_news(&mut self) -> Option<News> {
        self.news.pop_front()
    }

    /// The earliest time any host or the network needs attention.
    pub fn poll_timeout(&self) -> Option<Time> {
        let hosts = self.hosts.iter().filter_map(Host::poll_timeout);
        hosts.chain(self.net.next_at()).min()
    }

    /// Whether every node is idle and no frame is in flight.
    pub fn is_idle(&self) -> bool {
        self.net.in_flight() == 0 && self.hosts.iter().all(|host| host.node().is_idle())
    }

    /// Cancels every timer on every node ([`Input::Quiesce`]).
    pub fn quiesce(&mut self, now: Time) {
        for index in 0..self.hosts.len() {
            self.hosts[index].handle(now, Input::Quiesce);
            self.flush(now, index);
        }
    }

    /// Shuts every node down ([`Input::Shutdown`]). Returns how many frames
    /// were never accepted anywhere: those still in flight, and the bounces the
    /// nodes sent each other while all of them were stopping.
    pub fn shutdown(&mut self, now: Time) -> usize {
        let mut undelivered = self.net.clear();
        for host in &mut self.hosts {
            host.handle(now, Input::Shutdown);
            loop {
                match host.poll_output() {
                    Output::Transmit(_) => undelivered += 1,
                    Output::Timeout(_) => break,
                    _ => {}
                }
            }
        }
        undelivered
    }
}
