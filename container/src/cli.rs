//! The `exchange` command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use exchange_runtime::netem::LinkParams;

use crate::config;
use crate::dev::{self, DevOptions};
use crate::registry::Registry;

/// A single-threaded actor component container in the ZeroMQ style.
#[derive(Debug, Parser)]
#[command(name = "exchange", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every component of an app in one process, each in its own node on an
    /// in-memory network: the same envelope, routing, limits and traces as production.
    Dev(DevArgs),
    /// Run one container on real sockets: the components in its config, its
    /// `[run]` endpoints, and its `[[peer]]`s. SIGTERM or SIGINT drains and exits.
    Run(RunArgs),
    /// Ask a running container for its status over its control socket.
    Status(StatusArgs),
    /// Run an app on simulated nodes with seeded faults, in virtual time, and
    /// check it: accounting, deadlines, mailbox bounds, convergence.
    Sim(SimArgs),
}

#[derive(Debug, Args)]
struct SimArgs {
    /// App config (TOML). Without it, the bundled example app runs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The run's seed; every random choice derives from it. Default: the config's `seed`.
    #[arg(long, value_name = "N", conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run every seed in a range (`1..1000`, inclusive) and report the failures.
    #[arg(long, value_name = "A..B", value_parser = crate::sim::parse_seeds)]
    seeds: Option<(u64, u64)>,
    /// Nodes to simulate (default: one per component of the app).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    nodes: Option<u64>,
    /// Virtual time with faults on, before healing and the liveness checks.
    #[arg(long = "for", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    run_for: Duration,
    /// Faults to inject: `all`, `none`, or a list of loss, duplicate, reorder,
    /// partition, crash, skew, overflow.
    #[arg(long, value_name = "LIST", default_value = "all", value_parser = exchange_sim::Faults::parse)]
    faults: exchange_sim::Faults,
    /// Also write every run as JSON (with its trace hash) to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Where routes come from: `discovery` (the membership over simulated
    /// datagrams, as in production) or `static` (everyone knows everyone's
    /// names from the start).
    #[arg(long, value_enum, default_value = "discovery")]
    routes: crate::config::Routes,
    /// Instead of simulating, feed a recording (`exchange dev --record`, or
    /// `exchange run --record` with that container's `--config`) to fresh
    /// nodes of the same app, input by input, and check that every node emits
    /// what it emitted when recorded.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["seed", "seeds", "nodes", "faults"])]
    replay: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The container's config (TOML) with `[run]`, `[[component]]` and `[[peer]]`.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Record every input the container's node takes to this file, for
    /// `exchange sim --replay FILE --config` (the same config).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The container's control endpoint (its `run.control`).
    #[arg(long, value_name = "ENDPOINT")]
    control: String,
    /// How long to wait for an answer.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DevArgs {
    /// App config (TOML). Without it, the bundled example app runs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Stop after this long (`5s`, `2m`); without it, run until Ctrl-C.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
    /// One-way latency between nodes (`2ms`); overrides `[dev] latency`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// Extra latency, uniform in 0..=jitter; overrides `[dev] jitter`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    jitter: Option<Duration>,
    /// Probability that a frame between nodes is lost (0 to 1); overrides `[dev] loss`.
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    loss: Option<f64>,
    /// Seeds every RNG of the run; overrides `seed` in the config.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Also write the end-of-run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// After stopping, how long in-flight work may take before shutdown.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Do not print the live status line.
    #[arg(long)]
    no_status: bool,
    /// Record every input each node takes to this file, for `exchange sim --replay`.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Serve the control plane for every in-process node at this endpoint
    /// (`tcp://127.0.0.1:7200`, `ipc://…`): `exchangectl --control ENDPOINT
    /// [--node ID]` works as against `exchange run`.
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_endpoint)]
    control: Option<String>,
    /// Where routes come from: `discovery` (every node runs the membership
    /// over the in-memory network, seeded from the first, as `exchange run`
    /// does over UDP) or `static` (everyone knows everyone's names from the
    /// start).
    #[arg(long, value_enum, default_value = "discovery")]
    routes: crate::config::Routes,
    /// Cut the links between two components' nodes (`feed:store@2s..5s`), or
    /// between one and all others (`store@2s..5s`), for that window after
    /// the start: what is sent over them is lost, as in a partition. Repeatable.
    #[arg(long = "cut", value_name = "A[:B]@START..END", value_parser = dev::Cut::parse)]
    cuts: Vec<dev::Cut>,
}

fn parse_probability(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability between 0 and 1"))
    }
}

/// Runs the command line with the given component kinds; returns the exit code
/// (0 success, 1 failure while running, 2 bad usage or config).
pub fn main(registry: Registry) -> i32 {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EXCHANGE_LOG")
                // Warnings, and what an operator changed or must see:
                // capacity changes and congestion (report.rs).
                .unwrap_or_else(|_| "warn,exchange_container::report=info".into()),
        )
        .init();
    match cli.command {
        Command::Dev(args) => run_dev(args, &registry),
        Command::Run(args) => run_container(args, &registry),
        Command::Status(args) => crate::status::print(&args.control, args.timeout, args.json),
        Command::Sim(args) => run_sim(args, &registry),
    }
}

fn run_sim(args: SimArgs, registry: &Registry) -> i32 {
    let app = match load(args.config.as_deref(), registry) {
        Ok(app) => app,
        Err(code) => return code,
    };
    if let Some(path) = &args.replay {
        let origin = args
            .config
            .clone()
            .map_or(config::Origin::Builtin, config::Origin::File);
        return crate::sim::replay(&app, &origin, registry, path);
    }
    let seeds = args.seeds.unwrap_or_else(|| {
        let seed = args.seed.unwrap_or(app.seed);
        (seed, seed)
    });
    let plan = crate::sim::SimPlan {
        seeds,
        nodes: args.nodes.map_or(app.components.len(), |n| n as usize),
        run_for: args.run_for,
        faults: args.faults,
        config: args.config.clone(),
        routes: args.routes,
    };
    let (records, passed) = crate::sim::run_plan(&app, registry, &plan);
    if let Some(path) = &args.report
        && let Err(code) = write_report(path, &serde_json::json!({ "runs": records }))
    {
        return code;
    }
    if passed { 0 } else { 1 }
}

/// The app config at `path` (the bundled example app without one); a bad one
/// is reported and becomes exit code 2.
fn load(path: Option<&std::path::Path>, registry: &Registry) -> Result<config::AppConfig, i32> {
    config::load(path, registry).map_err(|error| {
        eprintln!("exchange: {error}");
        2
    })
}

/// Writes a report as pretty JSON; a failure is reported and becomes exit code 1.
fn write_report(path: &std::path::Path, report: &impl serde::Serialize) -> Result<(), i32> {
    let json = serde_json::to_string_pretty(report).expect("reports serialize");
    std::fs::write(path, json + "\n").map_err(|error| {
        eprintln!(
            "exchange: cannot write the report to {}: {error}",
            path.display()
        );
        1
    })
}

/// A flag the first SIGINT/SIGTERM sets; a second one exits at once.
fn stop_flag() -> Result<Arc<AtomicBool>, i32> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handler = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
    });
    match handler {
        Ok(()) => Ok(stop),
        Err(error) => {
            eprintln!("exchange: cannot install the signal handler: {error}");
            Err(1)
        }
    }
}

fn run_container(args: RunArgs, registry: &Registry) -> i32 {
    let app = match load(Some(&args.config), registry) {
        Ok(app) => app,
        Err(code) => return code,
    };
    let origin = config::Origin::File(args.config.clone());
    if let Err(error) = app.check_run(&origin) {
        eprintln!("exchange: {error}");
        return 2;
    }
    let stop = match stop_flag() {
        Ok(stop) => stop,
        Err(code) => return code,
    };
    match crate::run::run(&app, &origin, registry, args.record.as_deref(), &stop) {
        Ok(summary) => {
            print!("{}", crate::status::render(&summary.status));
            0
        }
        Err(error) => {
            eprintln!("exchange: {error}");
            1
        }
    }
}

fn run_dev(args: DevArgs, registry: &Registry) -> i32 {
    let mut app = match load(args.config.as_deref(), registry) {
        Ok(app) => app,
        Err(code) => return code,
    };
    if let Some(seed) = args.seed {
        app.seed = seed;
    }
    let link = LinkParams::uniform(
        args.latency.unwrap_or(app.dev.latency),
        args.jitter.unwrap_or(app.dev.jitter),
        args.loss.unwrap_or(app.dev.loss),
    );
    let cuts = match dev::CutSchedule::resolve(&args.cuts, &app) {
        Ok(cuts) => cuts,
        Err(error) => {
            eprintln!("exchange: {error}");
            return 2;
        }
    };
    let options = DevOptions {
        cuts,
        run_for: args.run_for,
        drain_max: args.drain,
        link,
        status: !args.no_status,
        record: args.record.clone(),
        routes: args.routes,
        control: args.control.clone(),
    };
    // The first Ctrl-C stops cleanly (drain, report); a second one exits now.
    let stop = match stop_flag() {
        Ok(stop) => stop,
        Err(code) => return code,
    };
    let report = match dev::run(&app, registry, &options, &stop) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("exchange: {error}");
            return 1;
        }
    };
    print!("{}", report.render());
    if let Some(path) = &args.report
        && let Err(code) = write_report(path, &report)
    {
        return code;
    }
    if report.unbalanced().is_empty() { 0 } else { 1 }
}

/// A control endpoint: `tcp://HOST:PORT` or `ipc://PATH`.
fn parse_endpoint(text: &str) -> Result<String, String> {
    config::check_endpoint(text)?;
    Ok(text.to_owned())
}
