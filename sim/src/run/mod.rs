//! One simulated run: hosts on the network emulator, the fault schedule,
//! virtual time, and the two phases. The scheduler is in `step.rs`, the
//! faults' injection in `inject.rs`, the checkers in `checks.rs`.

mod checks;
mod inject;
mod step;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::Hasher;
use std::time::Duration;

use exchange_host::Host;
use exchange_runtime::netem::{DatagramCounts, FrameCounts, LinkParams, Netem};
use exchange_runtime::{Input, Node, NodeId, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHasher;

use crate::faults::{Fault, Faults};
use checks::Delivered;
use inject::Action;

/// Virtual time starts here, so that clocks skewed backwards stay positive.
const EPOCH: Time = Time::from_micros(1_000_000_000);

/// How often the components' own invariants are checked, in virtual time
/// (they may walk a component's whole state; the node's audit runs every step).
const INVARIANTS_EVERY: Duration = Duration::from_millis(100);

/// Most steps at one instant before time moves on by a microsecond (a node
/// that keeps itself busy, such as a zero-delay timer loop, must not stop time).
const STEPS_PER_INSTANT_MAX: u32 = 64;

/// Which life of a node to build, and the seed it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Life {
    /// 0 for the first start, then one more per restart.
    pub incarnation: u64,
    /// Seeds the node's RNGs (derived from the run's seed).
    pub seed: u64,
}

/// Builds a node: the same id, a fresh node (state lost) for each life.
pub type Builder<'a> = dyn FnMut(NodeId, Life) -> Result<Node, String> + 'a;

/// How to run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The master seed: every other seed derives from it.
    pub seed: u64,
    /// Virtual time with faults on (the safety phase).
    pub safety: Duration,
    /// After healing, how long the app runs normally before it is asked to
    /// settle; requests must succeed again within it.
    pub recovery: Duration,
    /// How long, after new work stops, queues may take to drain and requests to
    /// end (the liveness bound).
    pub converge_max: Duration,
    /// The faults to inject.
    pub faults: Faults,
    /// Routes from discovery (each node runs the membership over simulated
    /// datagrams, as `exchange run` does over UDP), or `None`: static routes
    /// (every node knows every other's names from the start).
    pub discovery: Option<SimDiscovery>,
    /// What handlers cost in virtual time (each node is one core).
    pub cost: HandlerCost,
    /// Changes made during the run, at a time after the start: a handler
    /// cost, a live capacity change (as the control plane makes it).
    pub events: Vec<(Duration, SimEvent)>,
}

/// What one handler invocation (a message, a timer, a start) costs a node in
/// virtual time. Each simulated node is one core: after a turn of handlers it
/// is busy for the sum of their costs, and runs no handler until that has
/// passed. Frames still arrive meanwhile (their admission is counted free):
/// mailboxes fill, congestion is published and limits bite as in production.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandlerCost {
    /// Every component's, unless it has its own.
    pub default: Duration,
    /// By component name.
    pub components: BTreeMap<String, Duration>,
}

impl HandlerCost {
    /// The default handler cost: 2 µs an invocation, about what the dispatch
    /// benchmark's handler with the codec costs on a slow core (0.19 µs there),
    /// plus the example app's own work.
    pub const DEFAULT: Duration = Duration::from_micros(2);

    /// `default` for every component.
    pub fn uniform(default: Duration) -> HandlerCost {
        HandlerCost {
            default,
            components: BTreeMap::new(),
        }
    }

    pub(super) fn of(&self, component: &str) -> Duration {
        self.components
            .get(component)
            .copied()
            .unwrap_or(self.default)
    }
}

/// A change made during a simulated run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimEvent {
    /// A component's handler cost changes (on every node).
    Cost {
        /// The component.
        component: String,
        /// Its new cost.
        cost: Duration,
    },
    /// A live capacity change, handed to one node as `Input::Capacity`
    /// (recorded like any input).
    Capacity {
        /// The node.
        node: NodeId,
        /// The change.
        change: exchange_runtime::CapacityChange,
    },
}

/// Discovery in a simulated run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimDiscovery {
    /// SWIM's probe period.
    pub probe_period: Duration,
}

impl SimOptions {
    /// A run of `safety` virtual time with `faults`, from `seed`, on static routes.
    pub fn new(seed: u64, safety: Duration, faults: Faults) -> SimOptions {
        SimOptions {
            seed,
            safety,
            recovery: Duration::from_secs(3),
            converge_max: Duration::from_secs(30),
            faults,
            discovery: None,
            cost: HandlerCost::uniform(HandlerCost::DEFAULT),
            events: Vec::new(),
        }
    }

    /// The same run with routes from discovery. Recovery after healing gets
    /// longer: nodes declared down on the other side of a partition must find
    /// each other again (they announce to down members every ten probe
    /// periods) before requests between them succeed.
    pub fn with_discovery(mut self, probe_period: Duration) -> SimOptions {
        self.discovery = Some(SimDiscovery { probe_period });
        self.recovery = self.recovery.max(probe_period * 12);
        self
    }
}

/// A broken promise, when and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time since the start.
    pub at: Duration,
    /// Which checker.
    pub check: &'static str,
    /// What it saw.
    pub detail: String,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The master seed.
    pub seed: u64,
    /// The faults injected.
    pub faults: Faults,
    /// Nodes simulated.
    pub nodes: usize,
    /// Virtual time covered.
    pub virtual_time: Duration,
    /// A hash of every event in order (deliveries, faults, node events): equal
    /// for equal runs.
    pub trace_hash: u64,
    /// Messages handled by components, over all lives of all nodes.
    pub handled: u64,
    /// Messages bounced by components and nodes.
    pub bounced: u64,
    /// Messages dropped and counted by components and nodes.
    pub dropped: u64,
    /// Messages still queued at a node when it crashed (lost with it, counted here).
    pub lost_in_crash: u64,
    /// Where frames went.
    pub net: FrameCounts,
    /// Where discovery datagrams went (with discovery on).
    pub datagrams: DatagramCounts,
    /// Crashes injected.
    pub crashes: u64,
    /// Partitions injected (isolations, splits and swizzles).
    pub partitions: u64,
    /// Times a component became congested (its mailbox reached the
    /// congestion mark), and stopped being.
    pub congested: u64,
    /// See `congested`.
    pub decongested: u64,
    /// Bounces by reason (`overloaded`, `throttled`, …), by components and
    /// nodes, over all lives.
    pub bounced_by: BTreeMap<String, u64>,
    /// Scheduler steps taken.
    pub steps: u64,
    /// What broke; empty when every check passed. The run stops at the first.
    pub violations: Vec<Violation>,
}

impl SimReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Totals of a node's past lives.
#[derive(Clone, Debug, Default)]
struct Retired {
    frames_in: u64,
    handled: u64,
    bounced: u64,
    dropped: u64,
    bounced_by: BTreeMap<String, u64>,
}

impl Retired {
    /// Adds what `node` counted in its life.
    fn add_life(&mut self, node: &Node) {
        self.frames_in += node.stats().frames_in;
        let outcomes = node
            .components()
            .map(|(_, _, stats)| {
                self.handled += stats.handled;
                &stats.outcomes
            })
            .chain([&node.stats().outcomes]);
        for outcomes in outcomes {
            self.bounced += outcomes.bounced_total();
            self.dropped += outcomes.dropped_total();
            for (reason, count) in outcomes.bounced() {
                *self.bounced_by.entry(reason).or_default() += count;
            }
        }
    }
}

/// One simulated node, through its lives.
struct Member {
    id: NodeId,
    /// The running host (its node and, with discovery, its membership);
    /// `None` while crashed.
    host: Option<Host>,
    life: u64,
    /// Local clock minus virtual time, in µs.
    skew: i64,
    delivered: u64,
    /// A frame was delivered to it in the current step.
    touched: bool,
    /// When it next needs a turn (virtual time), as last scheduled.
    wake: Option<Time>,
    retired: Retired,
    /// The names its components handle, as its first life advertised them
    /// (routes to it do not depend on whether it is up, as with static peers).
    names: Vec<exchange_runtime::Name>,
    /// Its one core runs no handler before this (virtual time).
    busy_until: Time,
    /// Handler invocations per component so far in this life (to cost a turn).
    invocations: Vec<u64>,
}

impl Member {
    fn local(&self, at: Time) -> Time {
        Time::from_micros(at.as_micros().saturating_add_signed(self.skew))
    }

    fn global(&self, local: Time) -> Time {
        Time::from_micros(local.as_micros().saturating_add_signed(-self.skew))
    }

    fn node(&self) -> Option<&Node> {
        self.host.as_ref().map(Host::node)
    }
}

struct Sim<'b, 'a> {
    build: &'b mut Builder<'a>,
    options: SimOptions,
    members: Vec<Member>,
    by_id: rustc_hash::FxHashMap<u64, usize>,
    /// Nodes' wake-up times, earliest first; an entry is current only while it
    /// equals its member's `wake` (stale ones are skipped).
    wakes: BinaryHeap<Reverse<(Time, usize)>>,
    /// Members a frame was delivered to in the current step.
    touched: Vec<usize>,
    net: Netem,
    rng: ChaCha8Rng,
    seeds: ChaCha8Rng,
    now: Time,
    schedule: BTreeMap<(Time, u64), Action>,
    schedule_seq: u64,
    hash: FxHasher,
    delivered: Delivered,
    same_instant: u32,
    invariants_due: Time,
    report: SimReport,
}

/// Runs the nodes `ids` (built by `build`) under `options` and checks them.
pub fn run(build: &mut Builder<'_>, ids: &[NodeId], options: &SimOptions) -> SimReport {
    let mut master = ChaCha8Rng::seed_from_u64(options.seed);
    let net_seed = master.random();
    let rng = ChaCha8Rng::seed_from_u64(master.random());
    let seeds = ChaCha8Rng::seed_from_u64(master.random());
    let mut sim = Sim {
        build,
        options: options.clone(),
        members: Vec::new(),
        by_id: ids.iter().enumerate().map(|(i, id)| (id.0, i)).collect(),
        wakes: BinaryHeap::new(),
        touched: Vec::new(),
        net: Netem::new(net_seed, LinkParams::calm()),
        rng,
        seeds,
        now: EPOCH,
        schedule: BTreeMap::new(),
        schedule_seq: 0,
        hash: FxHasher::default(),
        delivered: Delivered::new(EPOCH),
        same_instant: 0,
        invariants_due: EPOCH,
        report: SimReport {
            seed: options.seed,
            faults: options.faults,
            nodes: ids.len(),
            virtual_time: Duration::ZERO,
            trace_hash: 0,
            handled: 0,
            bounced: 0,
            dropped: 0,
            lost_in_crash: 0,
            net: FrameCounts::default(),
            datagrams: DatagramCounts::default(),
            crashes: 0,
            partitions: 0,
            congested: 0,
            decongested: 0,
            bounced_by: BTreeMap::new(),
            steps: 0,
            violations: Vec::new(),
        },
    };
    sim.hash.write_u64(options.seed);
    for (after, event) in &options.events {
        sim.schedule(EPOCH + *after, Action::Event(event.clone()));
    }
    if let Err(detail) = sim.start(ids) {
        sim.violate("build", detail);
        return sim.finish();
    }
    sim.safety();
    if !sim.failed() {
        sim.check_invariants();
    }
    if !sim.failed() {
        sim.liveness();
    }
    if !sim.failed() {
        sim.check_invariants();
    }
    if !sim.failed() {
        sim.final_checks();
    }
    sim.finish()
}

impl Sim<'_, '_> {
    fn elapsed(&self) -> Duration {
        self.now - EPOCH
    }

    fn violate(&mut self, check: &'static str, detail: String) {
        if self.report.violations.is_empty() {
            self.report.violations.push(Violation {
                at: self.elapsed(),
                check,
                detail,
            });
        }
    }

    fn failed(&self) -> bool {
        !self.report.violations.is_empty()
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.by_id.get(&id.0).copied()
    }

    fn start(&mut self, ids: &[NodeId]) -> Result<(), String> {
        let skews = self.options.faults.has(Fault::Skew);
        for &id in ids {
            let skew = if skews {
                self.rng.random_range(-250_000..=250_000)
            } else {
                0
            };
            let life = self.life(0);
            let node = (self.build)(id, life)?;
            let names = node.router().local_names();
            self.members.push(Member {
                names,
                id,
                host: Some(Host::new(node)),
                life: 0,
                skew,
                delivered: 0,
                touched: false,
                wake: None,
                retired: Retired::default(),
                busy_until: EPOCH,
                invocations: Vec::new(),
            });
        }
        for index in 0..self.members.len() {
            self.boot(index);
        }
        Ok(())
    }

    fn life(&mut self, incarnation: u64) -> Life {
        Life {
            incarnation,
            seed: self.seeds.random(),
        }
    }

    // ---- phases ----

    fn safety(&mut self) {
        let faults = self.options.faults;
        let params = inject::faulty_params(faults, &mut self.rng);
        self.net.set_params(params);
        let end = self.now + self.options.safety;
        let structural = faults.has(Fault::Crash) || faults.has(Fault::Partition);
        let mut next_fault = self.now + self.gap();
        while self.now < end && !self.failed() {
            if structural && self.now >= next_fault {
                self.inject();
                next_fault = self.now + self.gap();
            }
            let wake = if structural { Some(next_fault) } else { None };
            self.step(Some(end), wake);
        }
    }

    /// Time to the next crash or partition.
    fn gap(&mut self) -> Duration {
        Duration::from_millis(self.rng.random_range(200..1_500))
    }

    /// Everything heals; the app must make progress again, then settle.
    fn liveness(&mut self) {
        // Heal everything: links, the network's fault rates, and crashed nodes
        // come back (clocks stay skewed: that is not a fault that heals).
        self.net.heal_all();
        self.net.set_params(LinkParams::calm());
        let pending: Vec<Action> = std::mem::take(&mut self.schedule).into_values().collect();
        for action in pending {
            match action {
                Action::Restart(id) => self.apply(Action::Restart(id)),
                // Changes the scenario asked for happen anyway, now.
                Action::Event(event) => self.apply(Action::Event(event)),
                _ => {}
            }
        }
        self.hash.write_u8(0xee);
        // Recovery: the app runs normally; every component that keeps sending
        // requests must get replies again.
        let marks = self.marks();
        let end = self.now + self.options.recovery;
        while self.now < end && !self.failed() {
            self.step(Some(end), None);
        }
        if self.failed() {
            return;
        }
        self.check_progress(&marks);
        if !self.failed() {
            self.settle();
        }
    }

    /// No new work: queues must drain and every request end within the bound.
    fn settle(&mut self) {
        let now = self.now;
        for member in &mut self.members {
            let local = member.local(now);
            if let Some(host) = member.host.as_mut() {
                host.handle(local, Input::Quiesce);
            }
        }
        for index in 0..self.members.len() {
            self.reschedule(index);
        }
        let end = self.now + self.options.converge_max;
        while !self.failed() {
            self.work();
            if self.settled() || self.now >= end {
                break;
            }
            self.advance(Some(end), None);
        }
        if !self.settled() && !self.failed() {
            self.report_unsettled();
        }
    }

    fn finish(mut self) -> SimReport {
        for member in &self.members {
            let mut totals = member.retired.clone();
            if let Some(node) = member.node() {
                totals.add_life(node);
            }
            self.report.handled += totals.handled;
            self.report.bounced += totals.bounced;
            self.report.dropped += totals.dropped;
            for (reason, count) in totals.bounced_by {
                *self.report.bounced_by.entry(reason).or_default() += count;
            }
        }
        self.report.virtual_time = self.elapsed();
        self.report.net = self.net.frame_counts().clone();
        self.report.datagrams = self.net.datagram_counts().clone();
        if let Some(violation) = self.report.violations.first() {
            self.hash.write(violation.check.as_bytes());
        }
        self.report.trace_hash = self.hash.finish();
        self.report
    }
}
