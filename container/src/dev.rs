//! `exchange dev`: every component of an app in one process, each in its own node
//! on the in-memory network, driven by the real clock.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exchange_discovery::{
    ClusterKey, Event as MemberEvent, Membership, Settings, in_memory_addr, in_memory_node, routes,
};
use exchange_runtime::mem::{LinkModel, MemNetwork};
use exchange_runtime::trace::{TraceLog, render_chain};
use exchange_runtime::{Address, Event, Node, NodeId, Time, TraceRecord};

use crate::clock::{Clock, RealStopwatch};
use crate::config::{AppConfig, Routes};
use crate::record_file::RecordFile;
use crate::registry::Registry;
use crate::report::Report;

/// How to run.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// Stop after this long (`None`: until Ctrl-C).
    pub run_for: Option<Duration>,
    /// How long to let in-flight work finish after stopping, before shutting down.
    pub drain_max: Duration,
    /// The network model.
    pub link: LinkModel,
    /// Print the live status line.
    pub status: bool,
    /// Record every input each node takes to this file (`exchange sim --replay`).
    pub record: Option<std::path::PathBuf>,
    /// Where routes come from.
    pub routes: Routes,
    /// Links to cut, and when.
    pub cuts: CutSchedule,
}

/// `--cut A[:B]@START..END`: the links between component `a`'s node and
/// `b`'s (or every other node) are cut from `start` to `end` after the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    a: String,
    b: Option<String>,
    start: Duration,
    end: Duration,
}

impl Cut {
    /// Parses `feed:store@2s..5s` or `store@2s..5s`.
    pub fn parse(text: &str) -> Result<Cut, String> {
        let form = "expected A[:B]@START..END, e.g. feed:store@2s..5s";
        let (names, window) = text
            .split_once('@')
            .ok_or_else(|| format!("{text:?}: no window; {form}"))?;
        let (start, end) = window
            .split_once("..")
            .ok_or_else(|| format!("{text:?}: the window has no `..`; {form}"))?;
        let time = |part: &str| {
            humantime::parse_duration(part)
                .map_err(|error| format!("{text:?}: {part:?} is not a duration ({error}); {form}"))
        };
        let (start, end) = (time(start)?, time(end)?);
        if end <= start {
            return Err(format!("{text:?}: the window ends before it starts"));
        }
        let (a, b) = match names.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (names, None),
        };
        if a.is_empty() || b.is_some_and(str::is_empty) {
            return Err(format!("{text:?}: a component name is missing; {form}"));
        }
        if b == Some(a) {
            return Err(format!("{text:?}: a component is not cut from itself"));
        }
        Ok(Cut {
            a: a.to_owned(),
            b: b.map(str::to_owned),
            start,
            end,
        })
    }
}

/// The cuts of a run, resolved to nodes: each link cut at its start and
/// healed at its end.
#[derive(Clone, Debug, Default)]
pub struct CutSchedule {
    changes: Vec<LinkChange>,
    next: usize,
}

#[derive(Clone, Debug)]
struct LinkChange {
    /// After the start.
    at: Duration,
    /// Cut, else heal.
    cut: bool,
    links: Vec<(NodeId, NodeId)>,
    /// What to print.
    label: String,
}

impl CutSchedule {
    /// Resolves component names to the nodes `exchange dev` gives them
    /// (`n1`, `n2`, … in config order); an unknown name is an error.
    pub fn resolve(cuts: &[Cut], app: &AppConfig) -> Result<CutSchedule, String> {
        let names: Vec<&str> = app.components.iter().map(|c| c.name.as_str()).collect();
        let node = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .map(|i| NodeId(i as u64 + 1))
                .ok_or_else(|| format!("--cut: no component {name:?}; the app has {names:?}"))
        };
        let mut changes = Vec::new();
        for cut in cuts {
            let a = node(&cut.a)?;
            let (links, label) = match &cut.b {
                Some(b) => (vec![(a, node(b)?)], format!("{} | {b}", cut.a)),
                None => {
                    let others = (1..=names.len() as u64).map(NodeId).filter(|n| *n != a);
                    (
                        others.map(|n| (a, n)).collect(),
                        format!("{} | the rest", cut.a),
                    )
                }
            };
            changes.push(LinkChange {
                at: cut.start,
                cut: true,
                links: links.clone(),
                label: label.clone(),
            });
            changes.push(LinkChange {
                at: cut.end,
                cut: false,
                links,
                label,
            });
        }
        // At the same instant, heal before cutting.
        changes.sort_by_key(|change| (change.at, change.cut));
        Ok(CutSchedule { changes, next: 0 })
    }

    /// Makes the changes due by `now` (`started` is offset zero); returns
    /// what they were, for the status output.
    fn apply(&mut self, started: Time, now: Time, net: &mut MemNetwork) -> Vec<String> {
        let mut done = Vec::new();
        while let Some(change) = self.changes.get(self.next) {
            if started + change.at > now {
                break;
            }
            for &(a, b) in &change.links {
                if change.cut {
                    net.cut(a, b);
                } else {
                    net.heal(a, b);
                }
            }
            let what = if change.cut { "cut" } else { "healed" };
            done.push(format!("{what} {}", change.label));
            self.next += 1;
        }
        done
    }

    fn next_change(&self, started: Time) -> Option<Time> {
        self.changes
            .get(self.next)
            .map(|change| started + change.at)
    }
}

/// Builds one node per component, in config order (`n1`, `n2`, …).
pub fn build_network(
    app: &AppConfig,
    registry: &Registry,
    link: LinkModel,
) -> Result<MemNetwork, String> {
    let mut net = MemNetwork::new(link, app.seed);
    for (i, component) in app.components.iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let mut node = Node::new(id, &component.name, app.node.node_config(app.seed));
        crate::config::add_components(&mut node, app, std::slice::from_ref(component), registry)?;
        net.add_node(node);
    }
    Ok(net)
}

/// Runs the app until `run_for` passes or `stop` is set, drains, shuts down and
/// reports.
pub fn run(
    app: &AppConfig,
    registry: &Registry,
    options: &DevOptions,
    stop: &Arc<AtomicBool>,
) -> Result<Report, String> {
    let mut net = build_network(app, registry, options.link.clone())?;
    let members = match options.routes {
        Routes::Discovery => {
            net.route_by_discovery();
            Some(Members::new(app, &net)?)
        }
        Routes::Static => None,
    };
    let clock = Clock::new();
    let mut status = StatusLine::new(options.status, clock.now());
    let mut record = match &options.record {
        Some(path) => {
            net.record(app.seed);
            Some(RecordFile::create(path)?)
        }
        None => None,
    };
    let started = clock.now();
    let end = options.run_for.map(|d| started + d);
    let mut world = World {
        net,
        members,
        cuts: options.cuts.clone(),
        started,
        stopwatch: RealStopwatch::new(),
        traces: TraceLog::new(256, 256),
    };
    world.start();
    loop {
        let now = clock.now();
        if stop.load(Ordering::Relaxed) || end.is_some_and(|end| now >= end) {
            break;
        }
        world.turn(now, &status);
        if let Some(record) = record.as_mut() {
            record.append(&world.net.take_recording())?;
        }
        status.maybe_print(now, &world.net);
        let wake = [world.wake(), end, Some(status.next)]
            .into_iter()
            .flatten()
            .min();
        sleep_until(&clock, wake);
    }
    let ran = clock.now() - started;

    // Drain: no timer fires any more, so no new work starts; what is in flight
    // finishes (or expires) within `drain_max`; the rest is dropped as `shutdown`.
    let drain_end = clock.now() + options.drain_max;
    world.net.quiesce(clock.now());
    while !world.net.is_idle() && clock.now() < drain_end {
        world.turn(clock.now(), &status);
        sleep_until(&clock, world.wake().map(|t| t.min(drain_end)));
    }
    let World {
        mut net, traces, ..
    } = world;
    let in_flight_at_stop = net.shutdown(clock.now());
    if let Some(record) = record {
        record.finish(&net.take_recording())?;
    }
    status.finish();

    let trace = render_trace(&net, &traces, registry);
    Ok(Report::collect(
        &net,
        ran.as_secs_f64(),
        app.seed,
        in_flight_at_stop,
        trace,
    ))
}

/// Everything a turn of the dev loop drives: the nodes on their network, their
/// memberships, the cuts.
struct World {
    net: MemNetwork,
    members: Option<Members>,
    cuts: CutSchedule,
    started: Time,
    stopwatch: RealStopwatch,
    traces: TraceLog,
}

impl World {
    fn start(&mut self) {
        self.net.start(self.started);
        if let Some(members) = self.members.as_mut() {
            members.start(self.started, &mut self.net);
        }
    }

    /// One turn at `now`: the cuts and heals due, the nodes, their events,
    /// discovery; what happened to the network is printed.
    fn turn(&mut self, now: Time, status: &StatusLine) {
        for change in self.cuts.apply(self.started, now, &mut self.net) {
            status.note(now, &change);
        }
        self.net.step(now, &mut self.stopwatch);
        while let Some((node, event)) = self.net.poll_event() {
            match event {
                Event::Traced(record) => self.traces.record(*record),
                // Only with discovery does the network hand these out.
                Event::Interest { name, subscribed } => {
                    if let Some(members) = self.members.as_mut() {
                        members.note_interest(now, node, name.as_str(), subscribed);
                    }
                }
                event => crate::report::log_event(node, &event),
            }
        }
        if let Some(members) = self.members.as_mut() {
            members.step(now, &mut self.net);
            for news in members.news.drain(..) {
                status.note(now, &news);
            }
        }
    }

    /// When something in the world is next due.
    fn wake(&self) -> Option<Time> {
        let members = self.members.as_ref().and_then(Members::poll_timeout);
        [
            self.net.poll_timeout(),
            members,
            self.cuts.next_change(self.started),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Discovery in `exchange dev`: a membership per node (the code `exchange run`
/// runs over UDP), its datagrams carried by the in-memory network with the
/// same latency and loss as frames, every node seeded from `n1`. What the
/// memberships learn becomes route changes, which the network records as
/// node inputs.
struct Members {
    memberships: Vec<(NodeId, Membership)>,
    /// (observer, member) pairs seen going down and not back up yet.
    down: BTreeSet<(NodeId, NodeId)>,
    /// What to print: members going down and coming back.
    news: Vec<String>,
}

impl Members {
    fn new(app: &AppConfig, net: &MemNetwork) -> Result<Members, String> {
        let probe_period = app
            .discovery
            .as_ref()
            .map_or(exchange_discovery::PROBE_PERIOD, |d| d.probe_period);
        let key = ClusterKey::new(b"exchange dev: the in-memory cluster").expect("long enough");
        let seed = net.nodes().first().map(|node| in_memory_addr(node.id()));
        let mut memberships = Vec::new();
        for node in net.nodes() {
            let id = node.id();
            let mut settings = Settings::new(id, 1, in_memory_addr(id), key.clone());
            settings.seeds = seed.into_iter().collect();
            settings.set_probe_period(probe_period);
            settings.rng_seed ^= app.seed.rotate_left(17);
            let endpoint = format!("mem://{id}");
            let meta = routes::local_meta(node, "dev", &endpoint, "", "dev", "dev");
            let membership = Membership::new(settings, meta)
                .map_err(|error| format!("discovery for {id} ({}): {error}", node.name()))?;
            memberships.push((id, membership));
        }
        Ok(Members {
            memberships,
            down: BTreeSet::new(),
            news: Vec::new(),
        })
    }

    fn start(&mut self, now: Time, net: &mut MemNetwork) {
        for (_, membership) in &mut self.memberships {
            membership.start(now);
        }
        self.flush(now, net);
    }

    /// Delivers the datagrams due, fires due timers, advertises each node's
    /// load and applies what was learnt.
    fn step(&mut self, now: Time, net: &mut MemNetwork) {
        while let Some(datagram) = net.poll_datagram(now) {
            if let Some((_, membership)) = self.get(datagram.to) {
                membership.handle_datagram(now, in_memory_addr(datagram.from), &datagram.bytes);
            }
        }
        for (id, membership) in &mut self.memberships {
            if membership.poll_timeout().is_some_and(|at| at <= now) {
                membership.handle_timeout(now);
            }
            if let Some(node) = net.node(*id) {
                membership.set_load(now, node.queued());
            }
        }
        self.flush(now, net);
    }

    fn get(&mut self, id: NodeId) -> Option<&mut (NodeId, Membership)> {
        self.memberships.iter_mut().find(|(node, _)| *node == id)
    }

    fn note_interest(&mut self, now: Time, node: NodeId, name: &str, subscribed: bool) {
        if let Some((_, membership)) = self.get(node) {
            let _ = membership.update_meta(now, |meta| {
                routes::note_interest(meta, name, subscribed);
            });
        }
    }

    fn flush(&mut self, now: Time, net: &mut MemNetwork) {
        for (id, membership) in &mut self.memberships {
            while let Some(event) = membership.poll_event() {
                let (subject, up) = match &event {
                    MemberEvent::Up(member) => (member.node(), true),
                    MemberEvent::Changed { after, .. } => (after.node(), true),
                    MemberEvent::Down(member) => (member.node(), false),
                };
                let name = |node: NodeId| {
                    let component = net.node(node).map_or("?", Node::name);
                    format!("{component} ({node})")
                };
                tracing::info!(observer = %id, member = %subject, up, "membership");
                let news = if up {
                    self.down.remove(&(*id, subject))
                } else {
                    self.down.insert((*id, subject))
                };
                if news {
                    let what = if up { "back up" } else { "down" };
                    self.news
                        .push(format!("{} sees {} {what}", name(*id), name(subject)));
                }
                routes::changes(membership.local(), &event, |change| {
                    net.change_route(now, *id, &change);
                });
            }
            while let Some(datagram) = membership.poll_transmit() {
                if let Some(to) = in_memory_node(datagram.to) {
                    net.send_datagram(now, *id, to, datagram.bytes);
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.memberships
            .iter()
            .filter_map(|(_, membership)| membership.poll_timeout())
            .min()
    }
}

fn sleep_until(clock: &Clock, wake: Option<Time>) {
    let now = clock.now();
    let wait = wake.map_or(Duration::from_millis(10), |wake| wake - now);
    // Sleeping is coarse (tens of µs); below that, spinning once more is cheaper.
    if wait > Duration::from_micros(50) {
        std::thread::sleep(wait.min(Duration::from_millis(10)));
    }
}

/// The first sampled chain the app's trace focus picks (for the example app: a
/// timeline change, walked back to the post that caused it); or, if none, the
/// first sampled chain.
fn render_trace(net: &MemNetwork, traces: &TraceLog, registry: &Registry) -> String {
    let focus = |record: &TraceRecord| {
        registry.focus(&record.header.name, record.header.kind, &record.payload)
    };
    let Some(chain) = traces
        .chain_to(|r| focus(r).is_some())
        .or_else(|| traces.chain_to(|_| true))
    else {
        return String::new();
    };
    let label = |address: Address| {
        let node = net.node(address.node);
        let component = node
            .and_then(|n| n.component_name(address.component))
            .unwrap_or("node");
        format!("{component}@{}", address.node)
    };
    let describe = |record: &TraceRecord| {
        let text = registry.describe(&record.header.name, record.header.kind, &record.payload);
        match &record.header.bounce {
            Some(bounce) => format!("{text} (bounce: {})", bounce.detail),
            None => text,
        }
    };
    let question = chain
        .last()
        .and_then(|last| focus(last))
        .unwrap_or_else(|| "A sampled chain of messages:".to_owned());
    format!("{question}\n{}", render_chain(&chain, label, describe))
}

/// The one-line live status: messages handled per second and queue depths.
struct StatusLine {
    enabled: bool,
    tty: bool,
    next: Time,
    last_handled: u64,
    started: Time,
}

impl StatusLine {
    fn new(enabled: bool, now: Time) -> StatusLine {
        StatusLine {
            enabled,
            tty: std::io::stderr().is_terminal(),
            next: now + Duration::from_secs(1),
            last_handled: 0,
            started: now,
        }
    }

    fn maybe_print(&mut self, now: Time, net: &MemNetwork) {
        if now < self.next {
            return;
        }
        self.next = self.next + Duration::from_secs(1);
        let handled: u64 = net
            .nodes()
            .iter()
            .flat_map(|n| n.components().map(|(_, _, s)| s.handled))
            .sum();
        let rate = handled - self.last_handled;
        self.last_handled = handled;
        if !self.enabled {
            return;
        }
        let queues: Vec<String> = net
            .nodes()
            .iter()
            .flat_map(|n| {
                n.components()
                    .map(move |(id, name, _)| format!("{name}={}", n.queue_len(id)))
            })
            .collect();
        let line = format!(
            "[{:>5.1}s] {rate:>8} msg/s  queues {}  in flight {}",
            (now - self.started).as_secs_f64(),
            queues.join(" "),
            net.in_flight()
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    /// Prints a one-off line (a cut, a heal, a member down), above the live
    /// line if there is one.
    fn note(&self, now: Time, text: &str) {
        let at = (now - self.started).as_secs_f64();
        let clear = if self.enabled && self.tty {
            "\r\x1b[K"
        } else {
            ""
        };
        eprintln!("{clear}[{at:>5.1}s] {text}");
    }

    fn finish(&self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}
