//! One simulated run: the nodes, the network, the fault schedule, virtual time
//! and the checkers.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::Hasher;
use std::time::Duration;

use exchange_discovery::{
    ClusterKey, Membership, Settings, in_memory_addr, in_memory_node, routes,
};
use exchange_runtime::{Event, NoStopwatch, Node, NodeId, Output, Time};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::{FxHashSet, FxHasher};

use crate::faults::{Fault, Faults};
use crate::net::{DatagramCounts, NetCounts, NetParams, Network};

/// Virtual time starts here, so that clocks skewed backwards stay positive.
const EPOCH: Time = Time::from_micros(1_000_000_000);

/// How long delivered message ids are remembered at least, to catch one
/// delivered twice. Frames are in flight for at most a link's latency, jitter
/// and reordering delay (a few hundred ms at most, see `NetParams`).
const DELIVERED_WINDOW: Duration = Duration::from_secs(2);

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
    pub net: NetCounts,
    /// Where discovery datagrams went (with discovery on).
    pub datagrams: DatagramCounts,
    /// Crashes injected.
    pub crashes: u64,
    /// Partitions injected (isolations, splits and swizzles).
    pub partitions: u64,
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
}

struct Member {
    id: NodeId,
    node: Option<Node>,
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
    /// Its membership, with discovery on (lost with the node in a crash).
    membership: Option<Membership>,
}

impl Member {
    fn local(&self, at: Time) -> Time {
        Time::from_micros(at.as_micros().saturating_add_signed(self.skew))
    }

    fn global(&self, local: Time) -> Time {
        Time::from_micros(local.as_micros().saturating_add_signed(-self.skew))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Crash(NodeId),
    Restart(NodeId),
    Cut(NodeId, NodeId),
    Heal(NodeId, NodeId),
}

/// Progress marks taken at healing time: per (node, component), requests sent,
/// replies received and bounces received by reason.
type Marks = BTreeMap<(u64, String), (u64, u64, BTreeMap<String, u64>)>;

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
    net: Network,
    rng: ChaCha8Rng,
    seeds: ChaCha8Rng,
    now: Time,
    schedule: BTreeMap<(Time, u64), Action>,
    schedule_seq: u64,
    hash: FxHasher,
    /// Messages delivered recently, by (sender, its life, message id,
    /// receiver), in two generations (see [`DELIVERED_WINDOW`]).
    delivered: [FxHashSet<(u64, u64, u64, u64)>; 2],
    delivered_since: Time,
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
        net: Network::new(net_seed, NetParams::calm()),
        rng,
        seeds,
        now: EPOCH,
        schedule: BTreeMap::new(),
        schedule_seq: 0,
        hash: FxHasher::default(),
        delivered: [FxHashSet::default(), FxHashSet::default()],
        delivered_since: EPOCH,
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
            net: NetCounts::default(),
            datagrams: DatagramCounts::default(),
            crashes: 0,
            partitions: 0,
            steps: 0,
            violations: Vec::new(),
        },
    };
    sim.hash.write_u64(options.seed);
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
                node: Some(node),
                life: 0,
                skew,
                delivered: 0,
                touched: false,
                wake: None,
                retired: Retired::default(),
                membership: None,
            });
        }
        for index in 0..self.members.len() {
            self.boot(index);
        }
        Ok(())
    }

    /// Starts member `index`'s freshly built node: routes (static ones, or a
    /// membership that finds them), `start`, and what that emitted.
    fn boot(&mut self, index: usize) {
        if self.options.discovery.is_none() {
            self.route_to_others(index);
        }
        let local = self.members[index].local(self.now);
        if let Some(node) = self.members[index].node.as_mut() {
            node.start(local);
        }
        self.join(index);
        self.drain(index);
        self.reschedule(index);
    }

    /// With discovery on, gives member `index`'s running node a membership
    /// (a new life) and announces it to the first member, every node's seed.
    fn join(&mut self, index: usize) {
        let Some(discovery) = self.options.discovery.clone() else {
            return;
        };
        let seed_addr = in_memory_addr(self.members[0].id);
        let member = &mut self.members[index];
        let Some(node) = member.node.as_ref() else {
            return;
        };
        let id = member.id;
        let mut settings = Settings::new(
            id,
            member.life + 1,
            in_memory_addr(id),
            ClusterKey::new(b"simulated cluster key").expect("long enough"),
        );
        settings.seeds = vec![seed_addr];
        settings.set_probe_period(discovery.probe_period);
        settings.rng_seed = crate::mix(self.options.seed ^ crate::mix(id.0) ^ member.life);
        let meta = routes::local_meta(
            node,
            "sim",
            &format!("sim://n{}", id.0),
            "",
            "sim",
            &format!("h{}", id.0),
        );
        let local = member.local(self.now);
        match Membership::new(settings, meta) {
            Ok(mut membership) => {
                membership.start(local);
                member.membership = Some(membership);
                self.flush_membership(index);
            }
            Err(error) => self.violate("build", format!("n{}: {error}", id.0)),
        }
    }

    /// Applies member `index`'s membership events to its node's routes and
    /// sends its datagrams.
    fn flush_membership(&mut self, index: usize) {
        let from = self.members[index].id;
        let local = self.members[index].local(self.now);
        let member = &mut self.members[index];
        let (Some(membership), Some(node)) = (member.membership.as_mut(), member.node.as_mut())
        else {
            return;
        };
        while let Some(event) = membership.poll_event() {
            let (what, subject) = match &event {
                exchange_discovery::Event::Up(m) => (1, m.meta.node),
                exchange_discovery::Event::Changed { after, .. } => (2, after.meta.node),
                exchange_discovery::Event::Down(m) => (3, m.meta.node),
            };
            self.hash
                .write_u64(what ^ subject.rotate_left(8) ^ from.0.rotate_left(40));
            routes::apply(node, local, membership.local(), &event);
        }
        while let Some(datagram) = membership.poll_transmit() {
            match in_memory_node(datagram.to) {
                Some(to) => {
                    self.net
                        .send_datagram(&mut self.rng, self.now, from, to, datagram.bytes)
                }
                None => self.net.datagram_counts.lost += 1,
            }
        }
    }

    fn life(&mut self, incarnation: u64) -> Life {
        Life {
            incarnation,
            seed: self.seeds.random(),
        }
    }

    /// Tells member `index` which names the others handle (discovery's job in
    /// production; static here).
    fn route_to_others(&mut self, index: usize) {
        let (before, rest) = self.members.split_at_mut(index);
        let (me, after) = rest.split_first_mut().expect("index is a member");
        let Some(node) = me.node.as_mut() else {
            return;
        };
        for peer in before.iter().chain(after.iter()) {
            for name in &peer.names {
                node.router_mut().add_remote_handler(name, peer.id);
            }
        }
    }

    // ---- phases ----

    fn safety(&mut self) {
        let faults = self.options.faults;
        self.net.params = NetParams::faulty(faults, &mut self.rng);
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

    fn liveness(&mut self) {
        // Heal everything: links, the network's fault rates, and crashed nodes
        // come back (clocks stay skewed: that is not a fault that heals).
        self.net.heal_all();
        self.net.params = NetParams::calm();
        let pending: Vec<Action> = std::mem::take(&mut self.schedule).into_values().collect();
        for action in pending {
            if let Action::Restart(id) = action {
                self.apply(Action::Restart(id));
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
        for ((node, component), (sent, replies, returned)) in self.marks() {
            let Some((sent0, replies0, returned0)) = marks.get(&(node, component.clone())) else {
                continue;
            };
            if sent > *sent0 && replies == *replies0 {
                let bounces: Vec<String> = returned
                    .iter()
                    .map(|(reason, n)| (reason, n - returned0.get(reason).copied().unwrap_or(0)))
                    .filter(|(_, n)| *n > 0)
                    .map(|(reason, n)| format!("{reason}={n}"))
                    .collect();
                let detail = format!(
                    "{component}@n{node} sent {} requests in the {:?} after healing and got no reply (bounces back: {}){}",
                    sent - sent0,
                    self.options.recovery,
                    bounces.join(" "),
                    self.memberships(),
                );
                self.violate("liveness", detail);
                return;
            }
        }
        // Then no new work: queues must drain and every request end within the bound.
        let now = self.now;
        for member in &mut self.members {
            let local = member.local(now);
            if let Some(node) = member.node.as_mut() {
                node.quiesce(local);
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
            let busy: Vec<String> = self
                .members
                .iter()
                .filter_map(|m| {
                    let node = m.node.as_ref()?;
                    (!node.is_idle()).then(|| {
                        format!("n{} ({} pending requests)", m.id.0, node.pending_requests())
                    })
                })
                .collect();
            self.violate(
                "liveness",
                format!(
                    "did not settle within {:?} of new work stopping: {} frames in flight, busy: {}",
                    self.options.converge_max,
                    self.net.in_flight(),
                    busy.join(", ")
                ),
            );
        }
    }

    /// What each node's membership holds (with discovery on), for a report.
    fn memberships(&self) -> String {
        let views: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| {
                let membership = m.membership.as_ref()?;
                let known: Vec<String> = membership
                    .members()
                    .map(|member| format!("n{}/{}", member.meta.node, member.meta.life))
                    .collect();
                Some(format!(
                    "n{}/{} knows [{}] (SWIM: {})",
                    m.id.0,
                    membership.local().life,
                    known.join(" "),
                    membership.swim_view()
                ))
            })
            .collect();
        if views.is_empty() {
            String::new()
        } else {
            format!("; membership: {}", views.join("; "))
        }
    }

    fn marks(&self) -> Marks {
        let mut marks = Marks::new();
        for member in &self.members {
            let Some(node) = member.node.as_ref() else {
                continue;
            };
            for (_, name, stats) in node.components() {
                marks.insert(
                    (member.id.0, name.to_owned()),
                    (
                        stats.requests_sent,
                        stats.replies_received,
                        stats.returned.bounced(),
                    ),
                );
            }
        }
        marks
    }

    fn settled(&self) -> bool {
        self.net.in_flight() == 0
            && self
                .members
                .iter()
                .all(|m| m.node.as_ref().is_none_or(Node::is_idle))
    }

    fn final_checks(&mut self) {
        let net = self.net.counts.clone();
        let in_flight = self.net.in_flight() as i128;
        if net.unaccounted() != in_flight {
            self.violate(
                "network accounting",
                format!(
                    "{net:?} leaves {} frames unaccounted, {in_flight} in flight",
                    net.unaccounted()
                ),
            );
            return;
        }
        for index in 0..self.members.len() {
            let member = &self.members[index];
            let frames_in = member.retired.frames_in
                + member
                    .node
                    .as_ref()
                    .map_or(0, |node| node.stats().frames_in);
            if frames_in != member.delivered {
                let detail = format!(
                    "n{}: the network delivered {} frames, its lives took in {frames_in}",
                    member.id.0, member.delivered
                );
                self.violate("network accounting", detail);
                return;
            }
        }
    }

    fn finish(mut self) -> SimReport {
        for member in &self.members {
            let mut totals = member.retired.clone();
            if let Some(node) = member.node.as_ref() {
                add_life(&mut totals, node);
            }
            self.report.handled += totals.handled;
            self.report.bounced += totals.bounced;
            self.report.dropped += totals.dropped;
        }
        self.report.virtual_time = self.elapsed();
        self.report.net = self.net.counts.clone();
        self.report.datagrams = self.net.datagram_counts.clone();
        if let Some(violation) = self.report.violations.first() {
            self.hash.write(violation.check.as_bytes());
        }
        self.report.trace_hash = self.hash.finish();
        self.report
    }

    // ---- faults ----

    fn schedule(&mut self, at: Time, action: Action) {
        self.schedule_seq += 1;
        self.schedule.insert((at, self.schedule_seq), action);
    }

    /// Injects one crash or partition, and schedules its end.
    fn inject(&mut self) {
        let faults = self.options.faults;
        let mut choices = Vec::new();
        if faults.has(Fault::Crash) {
            choices.push(Fault::Crash);
        }
        if faults.has(Fault::Partition) {
            choices.push(Fault::Partition);
        }
        let Some(&fault) = choices.get(self.rng.random_range(0..choices.len())) else {
            return;
        };
        let ids: Vec<NodeId> = self.members.iter().map(|m| m.id).collect();
        let up: Vec<NodeId> = self
            .members
            .iter()
            .filter(|m| m.node.is_some())
            .map(|m| m.id)
            .collect();
        match fault {
            Fault::Crash if up.len() > 1 => {
                let victim = up[self.rng.random_range(0..up.len())];
                self.apply(Action::Crash(victim));
                let down_for = Duration::from_millis(self.rng.random_range(100..3_000));
                self.schedule(self.now + down_for, Action::Restart(victim));
            }
            Fault::Partition if ids.len() > 1 => {
                self.report.partitions += 1;
                let heal_in = Duration::from_millis(self.rng.random_range(300..3_000));
                match self.rng.random_range(0..3) {
                    0 => {
                        // One node isolated.
                        let lonely = ids[self.rng.random_range(0..ids.len())];
                        for &other in &ids {
                            self.apply(Action::Cut(lonely, other));
                            self.schedule(self.now + heal_in, Action::Heal(lonely, other));
                        }
                    }
                    1 => {
                        // A split in two.
                        let mut shuffled = ids.clone();
                        shuffled.shuffle(&mut self.rng);
                        let cut_at = self.rng.random_range(1..shuffled.len());
                        let (left, right) = shuffled.split_at(cut_at);
                        for &a in left {
                            for &b in right {
                                self.apply(Action::Cut(a, b));
                                self.schedule(self.now + heal_in, Action::Heal(a, b));
                            }
                        }
                    }
                    _ => {
                        // Swizzle: links cut one by one, restored in random order.
                        let mut links = Vec::new();
                        for (i, &a) in ids.iter().enumerate() {
                            for &b in &ids[i + 1..] {
                                links.push((a, b));
                            }
                        }
                        links.shuffle(&mut self.rng);
                        links.truncate(self.rng.random_range(1..=links.len()));
                        let mut at = self.now;
                        for &(a, b) in &links {
                            at = at + Duration::from_millis(self.rng.random_range(10..200));
                            self.schedule(at, Action::Cut(a, b));
                        }
                        links.shuffle(&mut self.rng);
                        for &(a, b) in &links {
                            at = at + Duration::from_millis(self.rng.random_range(10..200));
                            self.schedule(at, Action::Heal(a, b));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn apply(&mut self, action: Action) {
        self.hash.write_u64(self.now.as_micros());
        match action {
            Action::Crash(id) => {
                self.hash.write_u64(0xc0 ^ id.0);
                let Some(index) = self.index(id) else { return };
                let member = &mut self.members[index];
                let Some(node) = member.node.take() else {
                    return;
                };
                member.wake = None;
                member.membership = None;
                self.report.crashes += 1;
                // What was queued is lost with the node; counted here.
                for (component, _, _) in node.components() {
                    self.report.lost_in_crash += node.queue_len(component) as u64;
                }
                member.retired.frames_in += node.stats().frames_in;
                add_life(&mut member.retired, &node);
            }
            Action::Restart(id) => {
                self.hash.write_u64(0x5e ^ id.0);
                let Some(index) = self.index(id) else { return };
                if self.members[index].node.is_some() {
                    return;
                }
                let incarnation = self.members[index].life + 1;
                let life = self.life(incarnation);
                match (self.build)(id, life) {
                    Ok(node) => {
                        let member = &mut self.members[index];
                        member.life = incarnation;
                        member.node = Some(node);
                        self.boot(index);
                    }
                    Err(error) => self.violate("build", format!("restarting n{}: {error}", id.0)),
                }
            }
            Action::Cut(a, b) => {
                self.hash.write_u64(0xcc ^ a.0 ^ b.0.rotate_left(32));
                self.net.cut_link(a, b);
            }
            Action::Heal(a, b) => {
                self.hash.write_u64(0x4e ^ a.0 ^ b.0.rotate_left(32));
                self.net.heal_link(a, b);
            }
        }
    }

    /// The components' own invariants, on every live node.
    fn check_invariants(&mut self) {
        for index in 0..self.members.len() {
            if let Some(node) = self.members[index].node.as_ref()
                && let Err(detail) = node.check_invariants()
            {
                let detail = format!("n{}: {detail}", self.members[index].id.0);
                self.violate("component invariant", detail);
                return;
            }
        }
    }

    /// Files member `index`'s next wake-up (its node's next deadline, in
    /// virtual time) after anything that may have changed it.
    fn reschedule(&mut self, index: usize) {
        let member = &mut self.members[index];
        let node = member.node.as_ref().and_then(Node::poll_timeout);
        let membership = member
            .membership
            .as_ref()
            .and_then(Membership::poll_timeout);
        let wake = [node, membership]
            .into_iter()
            .flatten()
            .min()
            .map(|deadline| member.global(deadline));
        if wake != member.wake {
            member.wake = wake;
            if let Some(at) = wake {
                self.wakes.push(Reverse((at, index)));
            }
        }
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.by_id.get(&id.0).copied()
    }

    // ---- the scheduler ----

    /// One step at the current instant, then time moves to the earliest thing
    /// due (never past `until`, nor past `wake`).
    fn step(&mut self, until: Option<Time>, wake: Option<Time>) {
        self.work();
        if !self.failed() {
            self.advance(until, wake);
        }
    }

    /// Everything due at the current instant: faults, frames, timers, handlers.
    fn work(&mut self) {
        self.report.steps += 1;
        let now = self.now;
        if now >= self.invariants_due {
            self.invariants_due = now + INVARIANTS_EVERY;
            self.check_invariants();
            if self.failed() {
                return;
            }
        }
        // Faults due now.
        while let Some((&(at, seq), _)) = self.schedule.first_key_value() {
            if at > now {
                break;
            }
            let action = self.schedule.remove(&(at, seq)).expect("peeked");
            self.apply(action);
        }
        // Frames due now, in arrival order.
        while let Some(frame) = self.net.pop_due(now) {
            self.deliver(frame);
            if self.failed() {
                return;
            }
        }
        while let Some(datagram) = self.net.pop_due_datagram(now) {
            self.deliver_datagram(datagram);
        }
        // Every live node with something due (a frame just delivered, work
        // queued, a timer or deadline): timers and deadlines, then one turn of
        // handlers. The others have nothing to do and did not change.
        let mut visit = std::mem::take(&mut self.touched);
        while let Some(&Reverse((at, index))) = self.wakes.peek() {
            if at > now {
                break;
            }
            self.wakes.pop();
            if self.members[index].wake == Some(at) {
                self.members[index].wake = None;
                visit.push(index);
            }
        }
        visit.sort_unstable();
        visit.dedup();
        for index in visit {
            let local = self.members[index].local(now);
            self.members[index].touched = false;
            if let Some(membership) = self.members[index].membership.as_mut()
                && membership.poll_timeout().is_some_and(|t| t <= local)
            {
                membership.handle_timeout(local);
            }
            self.flush_membership(index);
            let Some(node) = self.members[index].node.as_mut() else {
                continue;
            };
            if node.poll_timeout().is_some_and(|t| t <= local) {
                node.handle_timeout(local);
            }
            node.run(local, &mut NoStopwatch);
            self.drain(index);
            self.reschedule(index);
            if let Some(node) = self.members[index].node.as_ref()
                && let Err(detail) = node.audit()
            {
                let detail = format!("n{}: {detail}", self.members[index].id.0);
                self.violate("node audit", detail);
                return;
            }
        }
    }

    /// Moves time to the earliest thing due (never past `until`, nor `wake`).
    fn advance(&mut self, until: Option<Time>, wake: Option<Time>) {
        let now = self.now;
        let mut next = [
            self.net.next_at(),
            self.schedule.first_key_value().map(|(&(at, _), _)| at),
            until,
            wake,
        ]
        .into_iter()
        .flatten()
        .min();
        while let Some(&Reverse((at, index))) = self.wakes.peek() {
            if self.members[index].wake == Some(at) {
                next = Some(next.map_or(at, |n| n.min(at)));
                break;
            }
            self.wakes.pop();
        }
        let next = next.unwrap_or(now + Duration::from_millis(1));
        self.now = if next > now {
            next
        } else {
            self.same_instant += 1;
            if self.same_instant >= STEPS_PER_INSTANT_MAX {
                self.same_instant = 0;
                now + Duration::from_micros(1)
            } else {
                now
            }
        };
        if self.now != now {
            self.same_instant = 0;
        }
    }

    fn deliver_datagram(&mut self, datagram: crate::net::Datagram) {
        let (at, _, from, to, bytes) = datagram;
        self.hash.write_u64(at.as_micros() ^ 0xd6);
        self.hash.write_u64(from.0 ^ to.0.rotate_left(32));
        self.hash.write_usize(bytes.len());
        let Some(index) = self.index(to) else {
            self.net.datagram_counts.to_down += 1;
            return;
        };
        let local = self.members[index].local(at.max(self.now));
        let member = &mut self.members[index];
        let Some(membership) = member.membership.as_mut() else {
            self.net.datagram_counts.to_down += 1;
            return;
        };
        self.net.datagram_counts.delivered += 1;
        membership.handle_datagram(local, in_memory_addr(from), &bytes);
        if !member.touched {
            member.touched = true;
            self.touched.push(index);
        }
    }

    fn deliver(&mut self, frame: crate::net::Frame) {
        self.hash.write_u64(frame.at.as_micros());
        self.hash
            .write_u64(frame.from.0 ^ frame.to.0.rotate_left(32));
        self.hash.write(&frame.header);
        self.hash.write(&frame.payload);
        let Some(index) = self.index(frame.to) else {
            self.net.counts.to_down += 1;
            return;
        };
        let local = self.members[index].local(frame.at.max(self.now));
        if self.members[index].node.is_none() {
            self.net.counts.to_down += 1;
            return;
        }
        // A frame is delivered once, unless the network copied it (and counted
        // that). Two copies arrive within one frame's longest time in flight
        // of each other, far less than the window remembered.
        if self.now >= self.delivered_since + DELIVERED_WINDOW {
            self.delivered.swap(0, 1);
            self.delivered[0].clear();
            self.delivered_since = self.now;
        }
        // (A publish is one message, with one id, to each subscriber's node.)
        let id = message_id(&frame.header);
        let key = id.map(|id| (frame.from.0, frame.from_life, id, frame.to.0));
        if let (Some(id), Some(key)) = (id, key)
            && (self.delivered[1].contains(&key) || !self.delivered[0].insert(key))
            && !frame.copy
        {
            let detail = format!(
                "message {id} from n{} (life {}) delivered to n{} twice, and not by the duplication fault",
                frame.from.0, frame.from_life, frame.to.0
            );
            self.violate("delivered twice", detail);
            return;
        }
        self.net.counts.delivered += 1;
        let member = &mut self.members[index];
        member.delivered += 1;
        if !member.touched {
            member.touched = true;
            self.touched.push(index);
        }
        if let Some(node) = member.node.as_mut() {
            node.handle_frame(local, frame.from, &frame.header, frame.payload);
        }
    }

    /// Carries what member `index` emitted: frames to the network (refusals go
    /// back as transmit errors), interest to every other node (or to its
    /// membership, which advertises it), then the membership's own output.
    fn drain(&mut self, index: usize) {
        let from = self.members[index].id;
        let life = self.members[index].life;
        let local = self.members[index].local(self.now);
        loop {
            let Some(output) = self.members[index]
                .node
                .as_mut()
                .and_then(Node::poll_output)
            else {
                break;
            };
            match output {
                Output::Transmit(transmit) => {
                    let to_up = self
                        .index(transmit.to)
                        .is_some_and(|i| self.members[i].node.is_some());
                    let sent =
                        self.net
                            .send(&mut self.rng, self.now, (from, life), transmit, to_up);
                    if let Err((transmit, error)) = sent
                        && let Some(node) = self.members[index].node.as_mut()
                    {
                        node.handle_transmit_error(local, transmit, error);
                    }
                }
                Output::Event(Event::Interest { name, subscribed }) => {
                    self.hash.write(name.as_bytes());
                    if let Some(membership) = self.members[index].membership.as_mut() {
                        // Discovery advertises it.
                        let _ = membership.update_meta(local, |meta| {
                            routes::note_interest(meta, name.as_str(), subscribed);
                        });
                        continue;
                    }
                    for member in self.members.iter_mut().filter(|m| m.id != from) {
                        if let Some(node) = member.node.as_mut() {
                            node.router_mut()
                                .set_remote_subscriber(&name, from, subscribed);
                        }
                    }
                }
                Output::Event(Event::Restarted { component, .. }) => {
                    self.hash.write_u64(0xa0 ^ u64::from(component.0));
                }
                Output::Event(Event::Failed { component }) => {
                    self.hash.write_u64(0xfa ^ u64::from(component.0));
                }
                Output::Event(_) => {}
            }
        }
        self.flush_membership(index);
    }
}

fn add_life(totals: &mut Retired, node: &Node) {
    for (_, _, stats) in node.components() {
        totals.handled += stats.handled;
        totals.bounced += stats.outcomes.bounced_total();
        totals.dropped += stats.outcomes.dropped_total();
    }
    totals.bounced += node.stats().outcomes.bounced_total();
    totals.dropped += node.stats().outcomes.dropped_total();
}

/// The message id of an encoded header (field 1, written first), if present.
fn message_id(header: &[u8]) -> Option<u64> {
    let (&key, mut rest) = header.split_first()?;
    if key != 0x08 {
        return None;
    }
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_read_from_the_first_field() {
        assert_eq!(message_id(&[0x08, 0x96, 0x01, 0x12]), Some(150));
        assert_eq!(message_id(&[0x08, 0x05]), Some(5));
        assert_eq!(message_id(&[0x12, 0x05]), None);
        assert_eq!(message_id(&[0x08, 0x80]), None);
        assert_eq!(message_id(&[]), None);
    }
}
