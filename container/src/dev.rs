//! `exchange dev`: every component of an app in one process, each in its own node
//! on the in-memory network, driven by the real clock.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exchange_discovery::{ClusterKey, Event as MemberEvent, Settings, in_memory_addr};
use exchange_host::{Cluster, Host, Labels, News};
use exchange_idl::exchange::v1::control;
use exchange_runtime::netem::{LinkParams, Netem};
use exchange_runtime::trace::{TraceLog, render_chain};
use exchange_runtime::{Address, Event, Input, Node, NodeId, Time, TraceRecord};
use prost::Message as _;

use crate::clock::{Clock, RealStopwatch};
use crate::config::{AppConfig, Routes};
use crate::control::{After, ControlSocket, Policy, answer, is_local, unknown_node};
use crate::record_file::RecordFile;
use crate::registry::Registry;
use crate::report::Report;

/// How to run.
#[derive(Clone, Debug)]
pub(crate) struct DevOptions {
    /// Stop after this long (`None`: until Ctrl-C).
    pub(crate) run_for: Option<Duration>,
    /// How long to let in-flight work finish after stopping, before shutting down.
    pub(crate) drain_max: Duration,
    /// The network model.
    pub(crate) link: LinkParams,
    /// Print the live status line.
    pub(crate) status: bool,
    /// Record every input each node takes to this file (`exchange sim --replay`).
    pub(crate) record: Option<std::path::PathBuf>,
    /// Where routes come from.
    pub(crate) routes: Routes,
    /// Links to cut, and when.
    pub(crate) cuts: CutSchedule,
    /// Serve the control plane for every node at this endpoint.
    pub(crate) control: Option<String>,
}

/// `--cut A[:B]@START..END`: the links between component `a`'s node and
/// `b`'s (or every other node) are cut from `start` to `end` after the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    a: String,
    b: Option<String>,
    start: Duration,
    end: Duration,
}

impl Cut {
    /// Parses `feed:store@2s..5s` or `store@2s..5s`.
    pub(crate) fn parse(text: &str) -> Result<Cut, String> {
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
pub(crate) struct CutSchedule {
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
    pub(crate) fn resolve(cuts: &[Cut], app: &AppConfig) -> Result<CutSchedule, String> {
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
    fn apply(&mut self, started: Time, now: Time, net: &mut Netem) -> Vec<String> {
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

/// Builds one node per component, in config order (`n1`, `n2`, …), each in
/// its own host, on a network emulator with `link`; with `timed`, each node
/// times its handlers with a real stopwatch.
pub(crate) fn build_network(
    app: &AppConfig,
    registry: &Registry,
    link: LinkParams,
    timed: bool,
) -> Result<Cluster, String> {
    let mut cluster = Cluster::new(Netem::new(app.seed, link));
    for (i, component) in app.components.iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let mut node = Node::new(id, &component.name, app.node.node_config(app.seed));
        crate::config::add_components(&mut node, app, std::slice::from_ref(component), registry)?;
        if timed {
            node.set_stopwatch(Box::new(RealStopwatch::new()));
        }
        cluster.add(Host::new(node));
    }
    Ok(cluster)
}

/// Gives every host a membership over the emulated network (the code
/// `exchange run` runs over UDP), every node seeded from `n1`.
fn join_all(
    cluster: &mut Cluster,
    app: &AppConfig,
    now: Time,
    control: Option<&str>,
) -> Result<(), String> {
    let probe_period = app
        .discovery
        .as_ref()
        .map_or(exchange_discovery::PROBE_PERIOD, |d| d.probe_period);
    let key = ClusterKey::new(b"exchange dev: the in-memory cluster").expect("long enough");
    let seed = cluster.nodes().next().map(|node| in_memory_addr(node.id()));
    for host in cluster.hosts_mut() {
        let id = host.node().id();
        let mut settings = Settings::new(id, 1, in_memory_addr(id), key.clone());
        settings.seeds = seed.into_iter().collect();
        settings.set_probe_period(probe_period);
        settings.rng_seed ^= app.seed.rotate_left(17);
        let endpoint = format!("mem://{id}");
        let labels = Labels {
            version: "dev",
            app_endpoint: &endpoint,
            // With `--control`, one socket serves every node (the request
            // names the node).
            control_endpoint: control.unwrap_or(""),
            network: "dev",
            host: "dev",
        };
        host.join(now, settings, &labels)
            .map_err(|error| format!("discovery for {id} ({}): {error}", host.node().name()))?;
    }
    Ok(())
}

/// Routes from discovery (every node joins, advertising `control` as its
/// control endpoint) or static; returns whether from discovery.
fn find_routes(
    cluster: &mut Cluster,
    app: &AppConfig,
    routes: Routes,
    now: Time,
    control: Option<&str>,
) -> Result<bool, String> {
    match routes {
        Routes::Discovery => join_all(cluster, app, now, control)?,
        Routes::Static => cluster.route_statically(now),
    }
    Ok(routes == Routes::Discovery)
}

/// `--control`: the socket, what it may do, and the endpoint as bound.
fn bind_control(endpoint: &str) -> Result<(ControlSocket, Policy, String), String> {
    let socket = ControlSocket::bind(endpoint)?;
    let bound = socket.endpoint().unwrap_or_else(|| endpoint.to_owned());
    let policy = Policy {
        writable: is_local(&bound),
        overlay: None,
    };
    eprintln!("control plane for every node at {bound}");
    Ok((socket, policy, bound))
}

/// Answers a control request for the node it names (0: the first). A drain
/// makes that node leave the cluster and refuse new work; `exchange dev`
/// itself runs on.
fn answer_for(
    cluster: &mut Cluster,
    now: Time,
    request: control::Request,
    policy: &Policy,
) -> control::response::Kind {
    let ids: Vec<u64> = cluster.nodes().map(|node| node.id().0).collect();
    let wanted = match request.node {
        0 => ids.first().copied().unwrap_or(0),
        node => node,
    };
    let Some(host) = cluster
        .hosts_mut()
        .iter_mut()
        .find(|host| host.node().id().0 == wanted)
    else {
        return unknown_node(request.node, &ids);
    };
    let (answer, after) = answer(host, now, request, policy, |host| host.status(now));
    if after == After::Drain {
        host.leave(now);
        host.handle(now, Input::Drain);
    }
    answer
}

/// Runs the app until `run_for` passes or `stop` is set, drains, shuts down and
/// reports.
pub(crate) fn run(
    app: &AppConfig,
    registry: &Registry,
    options: &DevOptions,
    stop: &Arc<AtomicBool>,
) -> Result<Report, String> {
    let mut cluster = build_network(app, registry, options.link.clone(), true)?;
    let control = options.control.as_deref().map(bind_control).transpose()?;
    let clock = Clock::new();
    let started = clock.now();
    let endpoint = control.as_ref().map(|(_, _, bound)| bound.as_str());
    let discovery = find_routes(&mut cluster, app, options.routes, started, endpoint)?;
    let mut status = StatusLine::new(options.status, started);
    let mut record = match &options.record {
        Some(path) => {
            let mut file = RecordFile::create(path)?;
            file.append(&cluster.record(app.seed, discovery))?;
            Some(file)
        }
        None => None,
    };
    let end = options.run_for.map(|d| started + d);
    let mut world = World {
        cluster,
        cuts: options.cuts.clone(),
        started,
        traces: TraceLog::new(256, 256),
        down: BTreeSet::new(),
        control: control.map(|(socket, policy, _)| (socket, policy)),
    };
    world.cluster.start(started);
    loop {
        let now = clock.now();
        if stop.load(Ordering::Relaxed) || end.is_some_and(|end| now >= end) {
            break;
        }
        world.turn(now, &status);
        if let Some(record) = record.as_mut() {
            record.append(&world.cluster.take_recording())?;
        }
        status.maybe_print(now, &world.cluster);
        let wake = [world.wake(), end, Some(status.next)]
            .into_iter()
            .flatten()
            .min();
        world.wait(&clock, wake);
    }
    let ran = clock.now() - started;

    // Drain: no timer fires any more, so no new work starts; what is in flight
    // finishes (or expires) within `drain_max`; the rest is dropped as `shutdown`.
    let drain_end = clock.now() + options.drain_max;
    world.cluster.quiesce(clock.now());
    while !world.cluster.is_idle() && clock.now() < drain_end {
        world.turn(clock.now(), &status);
        sleep_until(&clock, world.wake().map(|t| t.min(drain_end)));
    }
    let World {
        mut cluster,
        traces,
        ..
    } = world;
    let in_flight_at_stop = cluster.shutdown(clock.now());
    if let Some(record) = record {
        record.finish(&cluster.take_recording())?;
    }
    status.finish();

    let trace = render_trace(&cluster, &traces, registry);
    Ok(Report::collect(
        &cluster,
        ran.as_secs_f64(),
        app.seed,
        in_flight_at_stop,
        trace,
    ))
}

/// Everything a turn of the dev loop drives: the hosts on their network, the
/// cuts, what was traced and who sees whom down.
struct World {
    cluster: Cluster,
    cuts: CutSchedule,
    started: Time,
    traces: TraceLog,
    /// (observer, member) pairs seen going down and not back up yet.
    down: BTreeSet<(NodeId, NodeId)>,
    /// `--control`: the socket and what it may do.
    control: Option<(ControlSocket, Policy)>,
}

impl World {
    /// Waits until `wake` (at most 10 ms), answering control requests as
    /// they come.
    fn wait(&mut self, clock: &Clock, wake: Option<Time>) {
        let Some((socket, _)) = &self.control else {
            return sleep_until(clock, wake);
        };
        let now = clock.now();
        let wait = wake.map_or(Duration::from_millis(10), |wake| wake - now);
        socket.wait(wait.min(Duration::from_millis(10)));
        self.serve_control(clock.now());
    }

    /// Answers waiting control requests (up to 64), each for the node it
    /// names (0: n1).
    fn serve_control(&mut self, now: Time) {
        let Some((socket, policy)) = &self.control else {
            return;
        };
        for _ in 0..64 {
            let Some(mut frames) = socket.recv() else {
                return;
            };
            let body = frames.pop().unwrap_or_default();
            let answer = match control::Request::decode(body.as_slice()) {
                Ok(request) => answer_for(&mut self.cluster, now, request, policy),
                Err(error) => control::response::Kind::Error(format!(
                    "not an exchange.v1.control.Request: {error}"
                )),
            };
            frames.push(control::Response { kind: Some(answer) }.encode_to_vec());
            socket.send(frames);
        }
    }

    /// One turn at `now`: the cuts and heals due, the hosts, what they
    /// reported; what happened to the network is printed.
    fn turn(&mut self, now: Time, status: &StatusLine) {
        for change in self.cuts.apply(self.started, now, self.cluster.net_mut()) {
            status.note(now, &change);
        }
        self.cluster.step(now);
        while let Some(news) = self.cluster.poll_news() {
            match news {
                News::Event(_, Event::Traced(record)) => self.traces.record(*record),
                News::Event(node, event) => {
                    if let Some(node) = self.cluster.node(node) {
                        crate::report::log_event(node, &event);
                    }
                }
                News::Member(observer, event) => {
                    if let Some(line) = self.follow(observer, &event) {
                        status.note(now, &line);
                    }
                }
            }
        }
    }

    /// What `observer` seeing `event` is worth printing: a member going down,
    /// or coming back.
    fn follow(&mut self, observer: NodeId, event: &MemberEvent) -> Option<String> {
        let (subject, up) = match event {
            MemberEvent::Up(member) => (member.node(), true),
            MemberEvent::Changed { after, .. } => (after.node(), true),
            MemberEvent::Down(member) => (member.node(), false),
        };
        tracing::info!(observer = %observer, member = %subject, up, "membership");
        let news = if up {
            self.down.remove(&(observer, subject))
        } else {
            self.down.insert((observer, subject))
        };
        let name = |node: NodeId| {
            let component = self.cluster.node(node).map_or("?", Node::name);
            format!("{component} ({node})")
        };
        let what = if up { "back up" } else { "down" };
        news.then(|| format!("{} sees {} {what}", name(observer), name(subject)))
    }

    /// When something in the world is next due.
    fn wake(&self) -> Option<Time> {
        [
            self.cluster.poll_timeout(),
            self.cuts.next_change(self.started),
        ]
        .into_iter()
        .flatten()
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
fn render_trace(net: &Cluster, traces: &TraceLog, registry: &Registry) -> String {
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

    fn maybe_print(&mut self, now: Time, net: &Cluster) {
        if now < self.next {
            return;
        }
        self.next = self.next + Duration::from_secs(1);
        let handled: u64 = net
            .nodes()
            .flat_map(|n| n.components().map(|(_, _, s)| s.handled))
            .sum();
        let rate = handled - self.last_handled;
        self.last_handled = handled;
        if !self.enabled {
            return;
        }
        let queues: Vec<String> = net
            .nodes()
            .flat_map(|n| {
                n.components()
                    .map(move |(id, name, _)| format!("{name}={}", n.queue_len(id)))
            })
            .collect();
        let line = format!(
            "[{:>5.1}s] {rate:>8} msg/s  queues {}  in flight {}",
            (now - self.started).as_secs_f64(),
            queues.join(" "),
            net.net().in_flight()
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
