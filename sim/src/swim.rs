//! Membership on its own, at scale: many [`Membership`]s on one thread in
//! virtual time, over the network emulator ([`Netem`]: per-link latency,
//! jitter, loss, partitions), with crashes and stalls. Nothing else runs, so a thousand nodes
//! simulate quickly; this is what measures discovery's convergence, failure
//! detection, false suspicions and traffic (`exchange sim --membership`, the
//! membership tests and benchmark).
//!
//! Deterministic like the rest of the simulator: one seed drives every choice.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use exchange_discovery::membership::wire;
use exchange_discovery::{ClusterKey, Event, Membership, Settings};
use exchange_runtime::{NodeId, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use exchange_runtime::netem::{LinkParams, Netem};
use exchange_runtime::splitmix as mix;

/// Virtual time starts here (as µs since the Unix epoch), like the app simulator.
const EPOCH: Time = Time::from_micros(1_000_000_000);

/// How a membership simulation runs.
#[derive(Clone, Debug)]
pub struct SwimOptions {
    /// The master seed.
    pub seed: u64,
    /// How many nodes.
    pub nodes: usize,
    /// SWIM's probe period.
    pub probe_period: Duration,
    /// One-way latency per link, drawn once per link in this range.
    pub latency: (Duration, Duration),
    /// Extra latency per datagram, uniform in 0..=jitter.
    pub jitter: Duration,
    /// The probability a datagram is lost.
    pub loss: f64,
    /// Nodes start at uniform times within this span (all announce to node 0).
    pub join_spread: Duration,
}

impl SwimOptions {
    /// `nodes` nodes with the container's defaults (500 ms probe period) on a
    /// LAN-like network (50 µs–2 ms latency), no loss, joining within 1 s.
    pub fn new(seed: u64, nodes: usize) -> SwimOptions {
        SwimOptions {
            seed,
            nodes,
            probe_period: exchange_discovery::PROBE_PERIOD,
            latency: (Duration::from_micros(50), Duration::from_millis(2)),
            jitter: Duration::from_micros(200),
            loss: 0.0,
            join_spread: Duration::from_secs(1),
        }
    }
}

/// The address of node `index`.
pub fn addr(index: usize) -> SocketAddr {
    let index = u32::try_from(index).expect("fewer than 2^24 nodes");
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | index), 7946))
}

fn index_of(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) => Some((u32::from(*v4.ip()) & 0x00ff_ffff) as usize),
        SocketAddr::V6(_) => None,
    }
}

/// Node `index`'s id.
pub fn node_id(index: usize) -> u64 {
    index as u64 + 1
}

/// Node `index`'s id on the emulated network.
fn node(index: usize) -> NodeId {
    NodeId(node_id(index))
}

/// The index of the node with id `id` on the emulated network.
fn index(id: NodeId) -> usize {
    (id.0 as usize).wrapping_sub(1)
}

/// Where a node is in its life.
enum Phase {
    /// Not started yet; starts at this time.
    Starting(Time),
    Running(Box<Membership>),
    Crashed,
}

struct Slot {
    phase: Phase,
    life: u64,
    stalled_until: Option<Time>,
    wake: Option<Time>,
}

impl Slot {
    fn membership(&self) -> Option<&Membership> {
        match &self.phase {
            Phase::Running(membership) => Some(membership),
            _ => None,
        }
    }

    fn membership_mut(&mut self) -> Option<&mut Membership> {
        match &mut self.phase {
            Phase::Running(membership) => Some(membership),
            _ => None,
        }
    }
}

/// A datagram that reached a stalled node, waiting for it to resume:
/// (when, arrival order, to, from, bytes).
type Backlog = Reverse<(Time, u64, usize, usize, Vec<u8>)>;

/// Counters of a membership simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwimCounts {
    /// Datagrams sent.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Datagrams lost to loss or cut links, or sent to a crashed node.
    pub lost: u64,
    /// `Down` events about a node that was running (not crashed, not left).
    pub false_downs: u64,
    /// All `Down` events.
    pub downs: u64,
}

/// The simulation. See the module documentation.
pub struct SwimSim {
    options: SwimOptions,
    now: Time,
    seq: u64,
    slots: Vec<Slot>,
    net: Netem,
    /// Datagrams that reached a stalled node, until it resumes.
    backlog: BinaryHeap<Backlog>,
    wakes: BinaryHeap<Reverse<(Time, usize)>>,
    /// `Down` events: all, and about a node that was running.
    downs: u64,
    false_downs: u64,
    /// When each observer saw each subject go down, for the subjects watched.
    watched: Vec<(usize, Time, Vec<Option<Time>>)>,
    key: ClusterKey,
}

impl SwimSim {
    /// A cluster of `options.nodes` nodes; node 0 is every node's seed. Node
    /// `i` handles `svc.n{i}`.
    pub fn new(options: SwimOptions) -> SwimSim {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let spread = options.join_spread.as_micros() as u64;
        let slots = (0..options.nodes)
            .map(|i| Slot {
                phase: Phase::Starting(if i == 0 || spread == 0 {
                    EPOCH
                } else {
                    EPOCH + Duration::from_micros(rng.random_range(0..spread))
                }),
                life: 1,
                stalled_until: None,
                wake: None,
            })
            .collect();
        let params = LinkParams {
            latency: options.latency,
            jitter: options.jitter,
            loss: options.loss,
            ..LinkParams::calm()
        };
        let mut sim = SwimSim {
            now: EPOCH,
            seq: 0,
            slots,
            net: Netem::new(rng.random(), params),
            backlog: BinaryHeap::new(),
            wakes: BinaryHeap::new(),
            downs: 0,
            false_downs: 0,
            watched: Vec::new(),
            key: ClusterKey::new(b"simulated cluster key").expect("long enough"),
            options,
        };
        for i in 0..sim.slots.len() {
            if let Phase::Starting(at) = sim.slots[i].phase {
                sim.schedule(i, Some(at));
            }
        }
        sim
    }

    fn build(&mut self, i: usize) -> Membership {
        let mut settings = Settings::new(
            NodeId(node_id(i)),
            self.slots[i].life,
            addr(i),
            self.key.clone(),
        );
        settings.seeds = vec![addr(0)];
        settings.set_probe_period(self.options.probe_period);
        settings.rng_seed = mix(self.options.seed ^ mix(i as u64) ^ self.slots[i].life);
        let meta = wire::Member {
            app_endpoint: format!("tcp://{}:7000", addr(i).ip()),
            handles: vec![wire::Handled {
                name: format!("svc.n{i}"),
                version: "1".into(),
            }],
            network: "sim".into(),
            host: format!("h{i}"),
            ..wire::Member::default()
        };
        Membership::new(settings, meta).expect("small metadata")
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_since(EPOCH)
    }

    /// Counters so far.
    pub fn counts(&self) -> SwimCounts {
        let datagrams = self.net.datagram_counts();
        SwimCounts {
            datagrams: datagrams.sent,
            bytes: datagrams.bytes,
            lost: datagrams.lost_total(),
            false_downs: self.false_downs,
            downs: self.downs,
        }
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether node `i` runs (started, not crashed).
    pub fn is_running(&self, i: usize) -> bool {
        self.slots[i].membership().is_some()
    }

    /// Node `i`'s membership, if it runs.
    pub fn membership(&self, i: usize) -> Option<&Membership> {
        self.slots[i].membership()
    }

    /// The routable members node `i` knows, by node id.
    pub fn view(&self, i: usize) -> Vec<u64> {
        self.membership(i)
            .map(|m| m.members().map(|member| member.meta.node).collect())
            .unwrap_or_default()
    }

    /// Whether every node that has not crashed runs and knows every other
    /// such node (with its current life's metadata) and no other.
    pub fn converged(&self) -> bool {
        if self
            .slots
            .iter()
            .any(|slot| matches!(slot.phase, Phase::Starting(_)))
        {
            return false;
        }
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.is_running(*i))
            .collect();
        running.iter().all(|i| {
            let membership = self.membership(*i).expect("running");
            let members: Vec<&exchange_discovery::Member> = membership.members().collect();
            members.len() + 1 == running.len()
                && members.iter().all(|member| {
                    let j = index_of(member.addr).expect("v4");
                    self.slots
                        .get(j)
                        .and_then(Slot::membership)
                        .is_some_and(|other| {
                            other.local().life == member.meta.life
                                && other.local().version == member.meta.version
                        })
                })
        })
    }

    /// Runs until every running node knows every other, checking every
    /// `check` of virtual time; returns the time taken, or `None` after `max`.
    pub fn run_until_converged(&mut self, max: Duration, check: Duration) -> Option<Duration> {
        let start = self.now;
        let end = self.now + max;
        loop {
            if self.converged() {
                return Some(self.now.saturating_since(start));
            }
            if self.now >= end {
                return None;
            }
            let next = (self.now + check).min(end);
            self.run_until(next);
        }
    }

    /// Runs for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        self.run_until(end);
    }

    fn run_until(&mut self, end: Time) {
        loop {
            let datagram = self.net.next_at();
            let backlog = self.backlog.peek().map(|Reverse(d)| d.0);
            let wake = self.wakes.peek().map(|Reverse(w)| w.0);
            let Some(next) = [datagram, backlog, wake].into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = next;
            if datagram == Some(next) {
                let datagram = self.net.pop_datagram(next).expect("due");
                let (to, from) = (index(datagram.to), index(datagram.from));
                self.deliver(to, from, datagram.bytes);
            } else if backlog == Some(next) {
                let Reverse((_, _, to, from, bytes)) = self.backlog.pop().expect("peeked");
                self.deliver(to, from, bytes);
            } else {
                let Reverse((at, i)) = self.wakes.pop().expect("peeked");
                if self.slots[i].wake == Some(at) {
                    self.slots[i].wake = None;
                    self.wake(i);
                }
            }
        }
        self.now = self.now.max(end);
    }

    fn deliver(&mut self, to: usize, from: usize, bytes: Vec<u8>) {
        if let Some(until) = self.slots.get(to).and_then(|slot| slot.stalled_until)
            && until > self.now
        {
            // A stalled process reads its socket's backlog when it resumes.
            self.seq += 1;
            self.backlog
                .push(Reverse((until, self.seq, to, from, bytes)));
            return;
        }
        let now = self.now;
        let running = self.slots.get(to).and_then(Slot::membership).is_some();
        self.net.datagram_arrived(running);
        let Some(membership) = self.slots.get_mut(to).and_then(Slot::membership_mut) else {
            return;
        };
        membership.handle_datagram(now, addr(from), &bytes);
        self.after(to);
    }

    fn wake(&mut self, i: usize) {
        let now = self.now;
        if let Some(until) = self.slots[i].stalled_until {
            if until > now {
                return self.schedule(i, Some(until));
            }
            self.slots[i].stalled_until = None;
        }
        match &mut self.slots[i].phase {
            Phase::Crashed => return,
            Phase::Starting(at) if *at > now => {
                let at = *at;
                return self.schedule(i, Some(at));
            }
            Phase::Starting(_) => {
                let mut membership = self.build(i);
                membership.start(now);
                self.slots[i].phase = Phase::Running(Box::new(membership));
            }
            Phase::Running(membership) => membership.handle_timeout(now),
        }
        self.after(i);
    }

    /// Sends what node `i` queued, records its events, reschedules it.
    fn after(&mut self, i: usize) {
        let now = self.now;
        let mut out = Vec::new();
        let mut events = Vec::new();
        let next = {
            let membership = self.slots[i].membership_mut().expect("running");
            while let Some(datagram) = membership.poll_transmit() {
                out.push(datagram);
            }
            while let Some(event) = membership.poll_event() {
                events.push(event);
            }
            membership.poll_timeout()
        };
        for datagram in out {
            // An address that is no node's arrives nowhere, counted.
            let to = index_of(datagram.to).map_or(NodeId(0), node);
            self.net.send_datagram(now, node(i), to, datagram.bytes);
        }
        for event in events {
            if let Event::Down(member) = event {
                self.downs += 1;
                let subject = index_of(member.addr).unwrap_or(usize::MAX);
                let alive = self
                    .slots
                    .get(subject)
                    .and_then(Slot::membership)
                    .is_some_and(|m| m.local().life == member.meta.life && !m.local().leaving);
                if alive {
                    self.false_downs += 1;
                }
                for (watched, _, seen) in &mut self.watched {
                    if *watched == subject && seen[i].is_none() {
                        seen[i] = Some(now);
                    }
                }
            }
        }
        self.schedule(i, next);
    }

    fn schedule(&mut self, i: usize, at: Option<Time>) {
        let at = at.map(|at| at.max(self.now));
        self.slots[i].wake = at;
        if let Some(at) = at {
            self.wakes.push(Reverse((at, i)));
        }
    }

    /// Crashes node `i` (no goodbye) and starts timing how long each running
    /// node takes to declare it down (see [`SwimSim::detection`]).
    pub fn crash(&mut self, i: usize) {
        self.slots[i].phase = Phase::Crashed;
        self.slots[i].wake = None;
        let seen = vec![None; self.slots.len()];
        self.watched.push((i, self.now, seen));
    }

    /// Restarts a crashed node `i` as a new life.
    pub fn restart(&mut self, i: usize) {
        self.slots[i].life += 1;
        self.slots[i].phase = Phase::Starting(self.now);
        self.schedule(i, Some(self.now));
    }

    /// For the crash of node `i`: how long each node running now took to see
    /// it down (`None`: not yet).
    pub fn detection(&self, i: usize) -> Vec<Option<Duration>> {
        let Some((_, at, seen)) = self.watched.iter().rev().find(|(w, _, _)| *w == i) else {
            return Vec::new();
        };
        (0..self.slots.len())
            .filter(|j| *j != i && self.is_running(*j))
            .map(|j| seen[j].map(|t| t.saturating_since(*at)))
            .collect()
    }

    /// Stops node `i` from running anything for `span` (a long pause: GC, swap,
    /// SIGSTOP); what arrives meanwhile waits for it.
    pub fn stall(&mut self, i: usize, span: Duration) {
        self.slots[i].stalled_until = Some(self.now + span);
    }

    /// Cuts every link between `side` and the rest (healing any earlier cut).
    pub fn partition(&mut self, side: &[usize]) {
        self.net.heal_all();
        for a in side {
            for b in (0..self.slots.len()).filter(|b| !side.contains(b)) {
                self.net.cut(node(*a), node(b));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.net.heal_all();
    }

    /// Sets the loss probability from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.options.loss = loss;
        let params = LinkParams {
            loss,
            ..self.net.params().clone()
        };
        self.net.set_params(params);
    }

    /// Changes node `i`'s metadata (a name it handles, say).
    pub fn update_meta(&mut self, i: usize, change: impl FnOnce(&mut wire::Member)) {
        let now = self.now;
        if let Some(membership) = self.slots[i].membership_mut() {
            membership.update_meta(now, change).expect("small metadata");
            self.after(i);
        }
    }
}

/// A handled name, for [`SwimSim::update_meta`].
pub fn wire_handled(name: &str) -> wire::Handled {
    wire::Handled {
        name: name.into(),
        version: "1".into(),
    }
}
