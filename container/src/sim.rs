//! `exchange sim`: an app's components on simulated nodes, driven by the
//! deterministic simulator (`exchange-sim`) with seeded faults.
//!
//! Placement: node `n1` runs the app's first component, `n2` the second, and so
//! on; with `--nodes` larger than the app, the extra nodes run more instances of
//! its last component (for the example app: more load generators).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use exchange_runtime::record::Recording;
use exchange_runtime::{Node, NodeId, Time};
use exchange_sim::{Faults, Life, SimOptions, SimReport};

use crate::config::{AppConfig, ComponentConfig, Routes};
use crate::registry::Registry;

/// The component each node runs.
pub(crate) fn placement(app: &AppConfig, nodes: usize) -> Vec<(NodeId, &ComponentConfig)> {
    (0..nodes.max(1))
        .map(|i| {
            let component = app
                .components
                .get(i)
                .or(app.components.last())
                .expect("a loaded app has components");
            (NodeId(i as u64 + 1), component)
        })
        .collect()
}

/// Runs one seed.
pub fn run_seed(
    app: &AppConfig,
    registry: &Registry,
    nodes: usize,
    options: &SimOptions,
) -> SimReport {
    run_seed_with(app, registry, nodes, options, |_| {})
}

/// Runs one seed with every node's config passed through `tweak` first (tests
/// use it to switch on a deliberate defect and see a checker catch it).
pub fn run_seed_with(
    app: &AppConfig,
    registry: &Registry,
    nodes: usize,
    options: &SimOptions,
    tweak: impl Fn(&mut exchange_runtime::NodeConfig),
) -> SimReport {
    let placed = placement(app, nodes);
    let ids: Vec<NodeId> = placed.iter().map(|(id, _)| *id).collect();
    let mut build = |id: NodeId, life: Life| -> Result<Node, String> {
        let component = placed
            .iter()
            .find(|(node, _)| *node == id)
            .map(|(_, component)| *component)
            .ok_or_else(|| format!("no component placed on n{}", id.0))?;
        let mut config = app.node.node_config(life.seed);
        config.incarnation = life.incarnation;
        tweak(&mut config);
        let mut node = Node::new(id, &component.name, config);
        crate::config::add_components(&mut node, app, std::slice::from_ref(component), registry)?;
        Ok(node)
    };
    exchange_sim::run(&mut build, &ids, options)
}

/// What to run, from the command line.
#[derive(Clone, Debug)]
pub(crate) struct SimPlan {
    /// Seeds, first to last inclusive.
    pub(crate) seeds: (u64, u64),
    /// Nodes.
    pub(crate) nodes: usize,
    /// Virtual time with faults on.
    pub(crate) run_for: Duration,
    /// Faults.
    pub(crate) faults: Faults,
    /// The config file, if not the example app (for the replay command).
    pub(crate) config: Option<std::path::PathBuf>,
    /// Where routes come from.
    pub(crate) routes: Routes,
}

/// The simulator's options for one seed of `plan` (the probe period from the
/// app's `[discovery]`, else the default).
pub(crate) fn options(app: &AppConfig, plan: &SimPlan, seed: u64) -> SimOptions {
    let mut options = SimOptions::new(seed, plan.run_for, plan.faults);
    options.cost = app.sim.cost();
    match plan.routes {
        Routes::Static => options,
        Routes::Discovery => {
            let probe = app
                .discovery
                .as_ref()
                .map_or(exchange_discovery::PROBE_PERIOD, |d| d.probe_period);
            options.with_discovery(probe)
        }
    }
}

impl SimPlan {
    /// The command that runs `seed` again, exactly.
    pub(crate) fn replay_command(&self, seed: u64) -> String {
        let mut command = format!(
            "exchange sim --seed {seed} --nodes {} --for {} --faults {} --routes {}",
            self.nodes,
            humantime::format_duration(self.run_for),
            self.faults,
            clap::ValueEnum::to_possible_value(&self.routes)
                .expect("no variant is skipped")
                .get_name(),
        );
        if let Some(config) = &self.config {
            let _ = write!(command, " --config {}", config.display());
        }
        command
    }
}

/// One run's line for the report file.
#[derive(Debug, serde::Serialize)]
pub(crate) struct RunRecord {
    /// The seed.
    pub(crate) seed: u64,
    /// Whether every check passed.
    pub(crate) passed: bool,
    /// The first broken check: which, when (virtual seconds), what.
    pub(crate) violation: Option<(String, f64, String)>,
    /// The hash of the full event trace, hex.
    pub(crate) trace_hash: String,
    /// Virtual seconds covered.
    pub(crate) virtual_s: f64,
    /// Wall seconds taken.
    pub(crate) wall_s: f64,
    /// Scheduler steps.
    pub(crate) steps: u64,
    /// Messages handled, bounced, dropped (all lives of all nodes), and lost
    /// with crashed nodes.
    pub(crate) handled: u64,
    /// See `handled`.
    pub(crate) bounced: u64,
    /// See `handled`.
    pub(crate) dropped: u64,
    /// See `handled`.
    pub(crate) lost_in_crash: u64,
    /// Crashes and partitions injected.
    pub(crate) crashes: u64,
    /// See `crashes`.
    pub(crate) partitions: u64,
    /// Frames: sent, duplicated, delivered, lost, cut, to a down node, refused.
    pub(crate) frames: serde_json::Value,
    /// Discovery datagrams: sent, bytes, delivered, lost, cut, to a down node.
    pub(crate) datagrams: serde_json::Value,
    /// The command that replays this run.
    pub(crate) replay: String,
}

impl RunRecord {
    /// The record of `report`, which took `wall` to run.
    pub(crate) fn new(plan: &SimPlan, report: &SimReport, wall: Duration) -> RunRecord {
        let net = &report.net;
        RunRecord {
            seed: report.seed,
            passed: report.passed(),
            violation: report
                .violations
                .first()
                .map(|v| (v.check.to_owned(), v.at.as_secs_f64(), v.detail.clone())),
            trace_hash: format!("{:016x}", report.trace_hash),
            virtual_s: report.virtual_time.as_secs_f64(),
            wall_s: wall.as_secs_f64(),
            steps: report.steps,
            handled: report.handled,
            bounced: report.bounced,
            dropped: report.dropped,
            lost_in_crash: report.lost_in_crash,
            crashes: report.crashes,
            partitions: report.partitions,
            frames: serde_json::json!({
                "sent": net.sent, "duplicated": net.duplicated, "delivered": net.delivered,
                "lost": net.lost, "cut": net.cut, "to_down": net.to_down,
                "refused_full": net.refused_full, "refused_down": net.refused_down,
            }),
            datagrams: {
                let d = &report.datagrams;
                serde_json::json!({
                    "sent": d.sent, "bytes": d.bytes, "delivered": d.delivered,
                    "lost": d.lost, "cut": d.cut, "to_down": d.to_down,
                })
            },
            replay: plan.replay_command(report.seed),
        }
    }
}

/// One line about a run.
pub(crate) fn summary(report: &SimReport, wall: Duration) -> String {
    let net = &report.net;
    let verdict = match report.violations.first() {
        None => "passed".to_owned(),
        Some(v) => format!(
            "FAILED at {:.3} s virtual, {}: {}",
            v.at.as_secs_f64(),
            v.check,
            v.detail
        ),
    };
    format!(
        "seed {}: {verdict}\n  {:.1} s virtual in {:.2} s wall, {} nodes, faults {}; {} handled, {} bounced, {} dropped, {} lost with crashed nodes; frames {} sent, {} delivered, {} lost, {} cut, {} duplicated, {} to a down node, {} refused; discovery datagrams {} sent, {} delivered; {} crashes, {} partitions; trace {:016x}",
        report.seed,
        report.virtual_time.as_secs_f64(),
        wall.as_secs_f64(),
        report.nodes,
        report.faults,
        report.handled,
        report.bounced,
        report.dropped,
        report.lost_in_crash,
        net.sent,
        net.delivered,
        net.lost,
        net.cut,
        net.duplicated,
        net.to_down,
        net.refused_full + net.refused_down,
        report.datagrams.sent,
        report.datagrams.delivered,
        report.crashes,
        report.partitions,
        report.trace_hash,
    ) + &overload_line(report)
}

/// What overload the run saw, if any: bounces by reason and congestion.
fn overload_line(report: &SimReport) -> String {
    if report.bounced_by.is_empty() && report.congested == 0 {
        return String::new();
    }
    let bounced: Vec<String> = report
        .bounced_by
        .iter()
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect();
    format!(
        "\n  bounced by reason: {}; congested {} times, decongested {}",
        bounced.join(" "),
        report.congested,
        report.decongested
    )
}

/// Runs every seed of `plan`; prints a summary per seed (one seed) or the
/// failures and a total (a range); returns the records and whether all passed.
pub(crate) fn run_plan(
    app: &AppConfig,
    registry: &Registry,
    plan: &SimPlan,
) -> (Vec<RunRecord>, bool) {
    let (first, last) = plan.seeds;
    let mut records = Vec::new();
    let mut failed = Vec::new();
    for seed in first..=last {
        let options = options(app, plan, seed);
        let started = Instant::now();
        let report = run_seed(app, registry, plan.nodes, &options);
        let wall = started.elapsed();
        if first == last || !report.passed() {
            println!("{}", summary(&report, wall));
        }
        if !report.passed() {
            println!("  replay: {}", plan.replay_command(seed));
            failed.push(seed);
        }
        records.push(RunRecord::new(plan, &report, wall));
    }
    if first != last {
        let failed_list: Vec<String> = failed.iter().map(u64::to_string).collect();
        println!(
            "{} seeds ({first}..{last}): {} passed, {} failed{}",
            last - first + 1,
            records.len() - failed.len(),
            failed.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(": {}", failed_list.join(", "))
            }
        );
    }
    (records, failed.is_empty())
}

/// Parses `A..B` (inclusive) or a single seed.
pub(crate) fn parse_seeds(text: &str) -> Result<(u64, u64), String> {
    let parse = |part: &str| {
        part.trim()
            .parse::<u64>()
            .map_err(|_| format!("{part:?} is not a seed (a whole number)"))
    };
    match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b.trim_start_matches('='))?);
            if a > b {
                return Err(format!(
                    "the range {a}..{b} is empty: the first seed is after the last"
                ));
            }
            Ok((a, b))
        }
        None => parse(text).map(|seed| (seed, seed)),
    }
}

/// Why a replay stopped.
#[derive(Debug)]
enum ReplayFailure {
    /// The recording or the config cannot be used (exit 2).
    Unusable(String),
    /// A node emitted something else than when recorded, at record `at` (exit 1).
    Diverged { at: usize, error: String },
}

/// `exchange sim --replay FILE`: feeds a recording to fresh nodes of `app`
/// (`origin`'s): one node per component for `exchange dev`'s, the container's
/// node for `exchange run`'s. Returns the exit code (0 the same run again, 1
/// diverged, 2 unusable input).
pub(crate) fn replay(
    app: &AppConfig,
    origin: &crate::config::Origin,
    registry: &Registry,
    path: &std::path::Path,
) -> i32 {
    let started = Instant::now();
    let recording = match read_recording(app, path) {
        Ok(recording) => recording,
        Err(error) => {
            eprintln!("exchange: {error}");
            return 2;
        }
    };
    let records = &recording.records;
    let (first, last) = (
        records.first().map_or(0, |r| r.at_us),
        records.last().map_or(0, |r| r.at_us),
    );
    let recorded = Duration::from_micros(last.saturating_sub(first));
    let mut app = app.clone();
    app.seed = recording.begin.seed;
    let replayed = if recording.begin.container {
        replay_container(&app, origin, registry, &recording, path)
    } else {
        replay_dev(&app, registry, &recording, recorded)
    };
    match replayed {
        Ok(what) => {
            println!(
                "replayed {} inputs to {what} ({:.1} s of recorded time) in {:.2} s: every node emitted what it emitted when recorded",
                records.len(),
                recorded.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
            0
        }
        Err(ReplayFailure::Unusable(error)) => {
            eprintln!("exchange: {error}");
            2
        }
        Err(ReplayFailure::Diverged { at, error }) => {
            let count = records.len();
            println!("replay diverged at record {} of {count}: {error}", at + 2);
            1
        }
    }
}

/// Reads and checks a recording: whole records, made with `app`'s components.
fn read_recording(app: &AppConfig, path: &std::path::Path) -> Result<Recording, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read the recording {}: {error}", path.display()))?;
    let recording = exchange_runtime::record::parse_recording(&bytes)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    if recording.cut_short > 0 {
        eprintln!(
            "exchange: {} ends with a record cut short ({} bytes; was its process killed?): replaying the whole ones",
            path.display(),
            recording.cut_short
        );
    }
    let names: Vec<&str> = app.components.iter().map(|c| c.name.as_str()).collect();
    if recording.begin.nodes != names {
        return Err(format!(
            "{} was recorded with the components {:?}; this app has {names:?} (pass the --config it was recorded with)",
            path.display(),
            recording.begin.nodes
        ));
    }
    Ok(recording)
}

/// Replays an `exchange run` container's recording to its node, built from
/// the same config; prints the status it ends with.
fn replay_container(
    app: &AppConfig,
    origin: &crate::config::Origin,
    registry: &Registry,
    recording: &Recording,
    path: &std::path::Path,
) -> Result<String, ReplayFailure> {
    let run = app.check_run(origin).map_err(|error| {
        ReplayFailure::Unusable(format!(
            "{} was recorded by an `exchange run` container: {error}",
            path.display()
        ))
    })?;
    let mut node = crate::run::build_node(app, run, registry, recording.begin.life)
        .map_err(ReplayFailure::Unusable)?;
    for (at, record) in recording.records.iter().enumerate() {
        if record.node != run.node_id {
            return Err(ReplayFailure::Unusable(format!(
                "{} was recorded by node {}; this config's [run] node_id is {}",
                path.display(),
                record.node,
                run.node_id
            )));
        }
        exchange_runtime::record::feed(&mut node, record).map_err(|error| {
            ReplayFailure::Diverged {
                at,
                error: error.to_string(),
            }
        })?;
    }
    let last = recording.records.last().map_or(0, |r| r.at_us);
    print!(
        "{}",
        crate::status::render(&node.status(Time::from_micros(last)))
    );
    Ok(format!("the container's node n{}", run.node_id))
}

/// Replays an `exchange dev` recording to fresh nodes, one per component;
/// prints their report.
fn replay_dev(
    app: &AppConfig,
    registry: &Registry,
    recording: &Recording,
    recorded: Duration,
) -> Result<String, ReplayFailure> {
    let link = exchange_runtime::netem::LinkParams::calm();
    let mut net =
        crate::dev::build_network(app, registry, link, false).map_err(ReplayFailure::Unusable)?;
    // Static routes were set before the recording began; discovery's are in it.
    if !recording.begin.discovery {
        net.route_statically(Time::ZERO);
    }
    for (at, record) in recording.records.iter().enumerate() {
        net.replay(record)
            .map_err(|error| ReplayFailure::Diverged {
                at,
                error: error.to_string(),
            })?;
    }
    let seed = recording.begin.seed;
    let report =
        crate::report::Report::collect(&net, recorded.as_secs_f64(), seed, 0, String::new());
    print!("{}", report.render());
    Ok(format!("{} nodes", app.components.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse_and_refuse_nonsense() {
        assert_eq!(parse_seeds("3..7"), Ok((3, 7)));
        assert_eq!(parse_seeds("3..=7"), Ok((3, 7)));
        assert_eq!(parse_seeds("5"), Ok((5, 5)));
        assert!(parse_seeds("7..3").unwrap_err().contains("empty"));
        assert!(parse_seeds("x..3").unwrap_err().contains("\"x\""));
    }
}
