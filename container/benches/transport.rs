//! Container-to-container messaging against raw ZeroMQ, measured in the same run.
//!
//! `cargo bench -p exchange-container --bench transport [-- --quick]`
//! (`--pairs N` pairs per configuration, `--only request/1/tcp` the
//! configurations whose `kind/in_flight/transport/placement` starts so)
//!
//! Subjects, over `tcp` and `ipc`:
//! - request/reply with 1 and 100 in flight: raw DEALER→ROUTER echo (this binary
//!   run as `--raw-server`/`--raw-client`) against `pinger` → `echo` components in
//!   two `exchange run` processes;
//! - one-way 64-byte events: raw PUSH→PULL against `pinger` (one-way) → `echo`.
//!
//! Each pair runs the raw baseline and the container back to back with the same
//! placement: both processes pinned to one CPU (`same`) or one per CPU (`split`),
//! with `taskset`. The rate is messages per second at the receiving side over a
//! fixed window after a warm-up; CPU time per message comes from
//! `/proc/<pid>/stat` over the same window. Each configuration prints one JSON
//! line: the median of the per-pair ratios (container / raw) and their range.
//!
//! The raw side runs under the container's allocator (mimalloc, overriding
//! `malloc`, which libzmq allocates message buffers with), so the ratio measures
//! the container's own work and not the choice of allocator.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WARMUP: Duration = Duration::from_millis(700);
const WINDOW: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(listen) = value("--pair-server") {
        return pair_server(&listen, value("--pair-peer").as_deref());
    }
    if let Some(peer) = value("--pair-client") {
        let in_flight = value("--in-flight")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        return pair_client(value("--pair-listen").as_deref(), &peer, in_flight);
    }
    if let Some(endpoint) = value("--raw-server") {
        return raw_server(&endpoint, value("--mode").as_deref() == Some("push"));
    }
    if let Some(endpoint) = value("--raw-client") {
        let in_flight = value("--in-flight")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        return raw_client(
            &endpoint,
            in_flight,
            value("--mode").as_deref() == Some("push"),
        );
    }
    let quick = args.iter().any(|a| a == "--quick" || a == "--test");
    let pairs = value("--pairs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    // `--only request/1/tcp/split`: configurations whose name starts so.
    let only = value("--only").unwrap_or_default();
    // `--attribution`: request/reply also runs the container's socket layout
    // with raw ZeroMQ, and the same frames over one connection (see `Layout`),
    // to tell the layout's cost from the container's own.
    let attribution = args.iter().any(|a| a == "--attribution");
    if Command::new("taskset").arg("--version").output().is_err() {
        eprintln!("transport bench: `taskset` (util-linux) is needed to pin processes");
        std::process::exit(2);
    }
    for (kind, in_flight) in [("request", 1), ("request", 100), ("one_way", 0)] {
        for transport in ["tcp", "ipc"] {
            for placement in ["same", "split"] {
                if format!("{kind}/{in_flight}/{transport}/{placement}").starts_with(&only) {
                    measure(kind, in_flight, transport, placement, pairs, attribution);
                }
            }
        }
    }
}

struct Sample {
    rate: f64,
    server_cpu_ns_per_msg: f64,
    client_cpu_ns_per_msg: f64,
    /// Median request round trip in µs (request/reply only).
    p50_us: Option<f64>,
}

fn measure(
    kind: &str,
    in_flight: u32,
    transport: &str,
    placement: &str,
    pairs: usize,
    attribution: bool,
) {
    let mut raw_samples = Vec::new();
    let mut container_samples = Vec::new();
    let mut layout_samples = Vec::new();
    let mut single_samples = Vec::new();
    for _ in 0..pairs {
        raw_samples.push(run_raw(kind, in_flight, transport, placement));
        if attribution && kind == "request" {
            layout_samples.push(run_pair(
                in_flight,
                transport,
                placement,
                Layout::TwoSockets,
            ));
            single_samples.push(run_pair(in_flight, transport, placement, Layout::OneSocket));
        }
        container_samples.push(run_container(kind, in_flight, transport, placement));
    }
    // Each sample against the raw one of its pair, sorted.
    let ratios_to_raw = |samples: &[Sample]| {
        let mut ratios: Vec<f64> = samples
            .iter()
            .zip(&raw_samples)
            .map(|(sample, raw)| sample.rate / raw.rate)
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios
    };
    let ratios = ratios_to_raw(&container_samples);
    let median = |samples: &[Sample], f: fn(&Sample) -> f64| {
        let mut values: Vec<f64> = samples.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let p50 = |samples: &[Sample]| {
        samples[0]
            .p50_us
            .map(|_| median(samples, |s| s.p50_us.unwrap_or(0.0)))
    };
    let mut line = serde_json::json!({
        "bench": "transport", "kind": kind, "in_flight": in_flight, "transport": transport,
        "placement": placement, "payload_bytes": 64, "pairs": pairs,
        "raw_p50_us": p50(&raw_samples), "container_p50_us": p50(&container_samples),
        "raw_msgs_per_s": median(&raw_samples, |s| s.rate).round(),
        "container_msgs_per_s": median(&container_samples, |s| s.rate).round(),
        "ratio": round(ratios[ratios.len() / 2]),
        "ratio_min": round(ratios[0]),
        "ratio_max": round(ratios[ratios.len() - 1]),
        "raw_cpu_ns_per_msg": { "server": median(&raw_samples, |s| s.server_cpu_ns_per_msg).round(), "client": median(&raw_samples, |s| s.client_cpu_ns_per_msg).round() },
        "container_cpu_ns_per_msg": { "server": median(&container_samples, |s| s.server_cpu_ns_per_msg).round(), "client": median(&container_samples, |s| s.client_cpu_ns_per_msg).round() },
    });
    for (key, samples) in [("layout", &layout_samples), ("single", &single_samples)] {
        if samples.is_empty() {
            continue;
        }
        let ratios = ratios_to_raw(samples);
        line[format!("{key}_msgs_per_s")] = median(samples, |s| s.rate).round().into();
        line[format!("{key}_ratio")] = round(ratios[ratios.len() / 2]).into();
        line[format!("{key}_p50_us")] = p50(samples).into();
        line[format!("{key}_cpu_ns_per_msg")] = serde_json::json!({
            "server": median(samples, |s| s.server_cpu_ns_per_msg).round(),
            "client": median(samples, |s| s.client_cpu_ns_per_msg).round(),
        });
    }
    println!("{line}");
}

fn cpus(placement: &str) -> (&'static str, &'static str) {
    if placement == "same" {
        ("0", "0")
    } else {
        ("0", "1")
    }
}

fn endpoint(transport: &str, dir: &std::path::Path, name: &str) -> String {
    match transport {
        "ipc" => format!("ipc://{}/{name}", dir.display()),
        _ => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            format!(
                "tcp://127.0.0.1:{}",
                listener.local_addr().expect("bound").port()
            )
        }
    }
}

fn pinned(cpu: &str, program: &str) -> Command {
    let mut command = Command::new("taskset");
    command
        .args(["-c", cpu, program])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let clock_ticks = 100; // USER_HZ on Linux
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clock_ticks)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run_raw(kind: &str, in_flight: u32, transport: &str, placement: &str) -> Sample {
    let dir = tempfile::tempdir().expect("a temp dir");
    let endpoint = endpoint(transport, dir.path(), "raw");
    let mode = if kind == "one_way" { "push" } else { "request" };
    let in_flight = in_flight.max(1).to_string();
    let sample = run_raw_processes(
        placement,
        &["--raw-server", &endpoint, "--mode", mode],
        &[
            "--raw-client",
            &endpoint,
            "--in-flight",
            &in_flight,
            "--mode",
            mode,
        ],
    );
    Sample {
        p50_us: sample.p50_us.filter(|_| kind == "request"),
        ..sample
    }
}

/// ROUTER-to-ROUTER request/reply with raw ZeroMQ, frames `[identity][envelope]`
/// with a frame the size of the container's packed envelope; nothing decoded,
/// one message per frame set.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// The container's: each side receives on a bound ROUTER and sends on a
    /// ROUTER connected to the other's (two connections).
    TwoSockets,
    /// One ROUTER a side, the client's dialling the server's (one connection).
    OneSocket,
}

fn run_pair(in_flight: u32, transport: &str, placement: &str, layout: Layout) -> Sample {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (server_in, client_in) = (
        endpoint(transport, dir.path(), "pair.s"),
        endpoint(transport, dir.path(), "pair.c"),
    );
    let in_flight = in_flight.max(1).to_string();
    let mut server = vec!["--pair-server", &server_in];
    let mut client = vec!["--pair-client", &server_in, "--in-flight", &in_flight];
    if layout == Layout::TwoSockets {
        server.extend(["--pair-peer", &client_in]);
        client.extend(["--pair-listen", &client_in]);
    }
    run_raw_processes(placement, &server, &client)
}

/// Runs this binary as a server and a client with the arguments given and
/// measures them: the server prints its running count every 100 ms, the
/// client its median round trip (if any) on SIGTERM.
fn run_raw_processes(placement: &str, server_args: &[&str], client_args: &[&str]) -> Sample {
    let me = std::env::current_exe().expect("own path");
    let me = me.to_str().expect("utf-8 path");
    let (server_cpu, client_cpu) = cpus(placement);
    let server = pinned(server_cpu, me)
        .args(server_args)
        .spawn()
        .expect("raw server");
    std::thread::sleep(Duration::from_millis(200));
    let client = pinned(client_cpu, me)
        .args(client_args)
        .spawn()
        .expect("raw client");
    std::thread::sleep(WARMUP);
    let (server_cpu0, client_cpu0) = (cpu_time(server.id()), cpu_time(client.id()));
    std::thread::sleep(WINDOW);
    let (server_cpu1, client_cpu1) = (cpu_time(server.id()), cpu_time(client.id()));
    let client_out = stop_reading(client);
    let p50_us = client_out
        .lines()
        .find_map(|line| line.strip_prefix("p50_us "))
        .and_then(|v| v.trim().parse().ok());
    // The server printed its running count every 100 ms; it exits on SIGTERM.
    let counts: Vec<(f64, u64)> = stop_reading(server)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter_map(|(t, n)| Some((t.parse().ok()?, n.parse().ok()?)))
        .collect();
    let rate = window_rate(&counts);
    let messages = rate * WINDOW.as_secs_f64();
    Sample {
        rate,
        server_cpu_ns_per_msg: (server_cpu1 - server_cpu0).as_nanos() as f64 / messages,
        client_cpu_ns_per_msg: (client_cpu1 - client_cpu0).as_nanos() as f64 / messages,
        p50_us,
    }
}

/// Stops a process and returns what it printed.
fn stop_reading(mut child: Child) -> String {
    let stdout = child.stdout.take();
    stop(child);
    let mut out = String::new();
    if let Some(mut stdout) = stdout {
        let _ = stdout.read_to_string(&mut out);
    }
    out
}

/// The receive rate over the measurement window, from `(seconds since start,
/// total count)` samples the raw server printed every 100 ms.
fn window_rate(counts: &[(f64, u64)]) -> f64 {
    let start = WARMUP.as_secs_f64() + 0.2;
    let end = start + WINDOW.as_secs_f64();
    let at = |t: f64| {
        counts
            .iter()
            .rev()
            .find(|(time, _)| *time <= t)
            .copied()
            .unwrap_or((0.0, 0))
    };
    let (t0, n0) = at(start);
    let (t1, n1) = at(end);
    if t1 > t0 {
        (n1 - n0) as f64 / (t1 - t0)
    } else {
        0.0
    }
}

/// A flag SIGTERM or SIGINT sets (the raw processes finish and print on it).
fn stop_on_signal() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed))
        .expect("handler");
    stop
}

fn raw_server(endpoint: &str, pull: bool) {
    let context = zmq::Context::new();
    let socket = context
        .socket(if pull { zmq::PULL } else { zmq::ROUTER })
        .expect("socket");
    socket.set_linger(0).expect("linger");
    socket.bind(endpoint).expect("bind");
    socket.set_rcvtimeo(100).expect("rcvtimeo");
    serve(|| {
        let Ok(frames) = socket.recv_multipart(0) else {
            return false;
        };
        if !pull {
            let _ = socket.send_multipart(frames, 0);
        }
        true
    });
}

/// Runs `handle_one` (true: it handled a message; it waits at most 100 ms)
/// until SIGTERM, printing `seconds count` every 100 ms and at the end.
fn serve(mut handle_one: impl FnMut() -> bool) {
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut count: u64 = 0;
    let stop = stop_on_signal();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if handle_one() {
            count += 1;
        }
        if last_print.elapsed() >= Duration::from_millis(100) {
            println!("{:.3} {count}", started.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
    }
    println!("{:.3} {count}", started.elapsed().as_secs_f64());
}

/// Keeps `in_flight` requests out (`send`: false ends the run) and times each
/// until its reply (`recv`: false when none came within its timeout); one
/// connection keeps order, so replies match sends first in, first out. On
/// SIGTERM prints the median round trip in µs.
fn round_trips(in_flight: u32, mut send: impl FnMut() -> bool, mut recv: impl FnMut() -> bool) {
    let stop = stop_on_signal();
    let mut round_trips =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("bounds");
    let mut sent = std::collections::VecDeque::new();
    for _ in 0..in_flight {
        sent.push_back(Instant::now());
        if !send() {
            return;
        }
    }
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if !recv() {
            continue;
        }
        let at = Instant::now();
        if let Some(since) = sent.pop_front() {
            round_trips.saturating_record((at - since).as_micros().max(1) as u64);
        }
        sent.push_back(at);
        if !send() {
            break;
        }
    }
    println!("p50_us {}", round_trips.value_at_quantile(0.5));
}

/// The size of a container's packed envelope for a bench request: the packed
/// mark, a one-byte header length, the header (90 bytes, measured) and the
/// 64-byte payload.
const PAIR_ENVELOPE_BYTES: usize = 2 + 90 + 64;

/// A ROUTER with routing id `name` and `ROUTER_MANDATORY`, as the container's,
/// bound at `bind` or connected to `connect` (a connected one names its pipe by
/// the routing id the peer announces).
fn router(
    context: &zmq::Context,
    name: &[u8],
    bind: Option<&str>,
    connect: Option<&str>,
) -> zmq::Socket {
    let socket = context.socket(zmq::ROUTER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_identity(name).expect("identity");
    socket.set_rcvtimeo(100).expect("rcvtimeo");
    socket.set_router_mandatory(true).expect("mandatory");
    if let Some(endpoint) = bind {
        socket.bind(endpoint).expect("bind");
    }
    if let Some(endpoint) = connect {
        socket.connect(endpoint).expect("connect");
    }
    socket
}

/// Sends `[peer][envelope]`, waiting (bounded) for the connection.
fn pair_send(sender: &zmq::Socket, peer: &[u8], envelope: &[u8]) -> bool {
    for _ in 0..1000 {
        match sender.send_multipart([peer, envelope], 0) {
            Ok(()) => return true,
            Err(zmq::Error::EHOSTUNREACH) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return false,
        }
    }
    false
}

/// Receives on a ROUTER bound at `listen`; answers on one connected to `peer`
/// if given, else on the same.
fn pair_server(listen: &str, peer: Option<&str>) {
    let context = zmq::Context::new();
    let receiver = router(&context, b"server", Some(listen), None);
    let sender = peer.map(|peer| router(&context, b"server", None, Some(peer)));
    let sender = sender.as_ref().unwrap_or(&receiver);
    serve(|| match receiver.recv_multipart(0).as_deref() {
        Ok([_, envelope]) => {
            pair_send(sender, b"client", envelope);
            true
        }
        _ => false,
    });
}

/// Sends on a ROUTER connected to `peer`; receives on one bound at `listen` if
/// given, else on the same.
fn pair_client(listen: Option<&str>, peer: &str, in_flight: u32) {
    let context = zmq::Context::new();
    let sender = router(&context, b"client", None, Some(peer));
    let receiver = listen.map(|listen| router(&context, b"client", Some(listen), None));
    let receiver = receiver.as_ref().unwrap_or(&sender);
    let envelope = [0u8; PAIR_ENVELOPE_BYTES];
    round_trips(
        in_flight,
        || pair_send(&sender, b"server", &envelope),
        || receiver.recv_multipart(0).is_ok(),
    );
}

fn raw_client(endpoint: &str, in_flight: u32, push: bool) {
    let context = zmq::Context::new();
    let socket = context
        .socket(if push { zmq::PUSH } else { zmq::DEALER })
        .expect("socket");
    socket.set_linger(0).expect("linger");
    socket.connect(endpoint).expect("connect");
    let payload = [0u8; 64];
    if push {
        loop {
            if socket.send(&payload[..], 0).is_err() {
                return;
            }
        }
    }
    socket.set_rcvtimeo(100).expect("rcvtimeo");
    round_trips(
        in_flight,
        || socket.send(&payload[..], 0).is_ok(),
        || socket.recv_bytes(0).is_ok(),
    );
}

/// The two containers' configs (an echo server, a pinger client), written to
/// `dir`; returns their paths and control endpoints.
fn pair_configs(
    dir: &std::path::Path,
    kind: &str,
    in_flight: u32,
    transport: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String, String) {
    let (server_app, client_app) = (
        endpoint(transport, dir, "s.app"),
        endpoint(transport, dir, "c.app"),
    );
    let (server_ctl, client_ctl) = (
        endpoint(transport, dir, "s.ctl"),
        endpoint(transport, dir, "c.ctl"),
    );
    let settings = if kind == "one_way" {
        "one_way = true\nburst = 64\npayload_bytes = 64\n".to_owned()
    } else {
        format!("in_flight = {in_flight}\npayload_bytes = 64\n")
    };
    let config = |id: u64,
                  listen: &str,
                  control: &str,
                  name: &str,
                  extra: &str,
                  peer: (u64, &str, &str)| {
        format!(
            "seed = 1\n[node]\ntrace_sample_one_in = 0\n[run]\nnode_id = {id}\nlisten = {listen:?}\ncontrol = {control:?}\ndrain = \"200ms\"\nlinger = \"0ms\"\n\n[[component]]\nname = {name:?}\n[component.settings]\n{extra}\n[[peer]]\nnode_id = {}\nendpoint = {:?}\nhandles = [{}]\n",
            peer.0, peer.1, peer.2
        )
    };
    let server_config = dir.join("server.toml");
    let client_config = dir.join("client.toml");
    std::fs::write(
        &server_config,
        config(
            1,
            &server_app,
            &server_ctl,
            "echo",
            "",
            (2, &client_app, ""),
        ),
    )
    .expect("write");
    std::fs::write(
        &client_config,
        config(
            2,
            &client_app,
            &client_ctl,
            "pinger",
            &settings,
            (1, &server_app, "\"bench.echo\", \"bench.event\""),
        ),
    )
    .expect("write");
    (server_config, client_config, server_ctl, client_ctl)
}

fn run_container(kind: &str, in_flight: u32, transport: &str, placement: &str) -> Sample {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (server_config, client_config, server_ctl, client_ctl) =
        pair_configs(dir.path(), kind, in_flight, transport);
    let exchange = env!("CARGO_BIN_EXE_exchange");
    let (server_cpu, client_cpu) = cpus(placement);
    let server = pinned(server_cpu, exchange)
        .args(["run", "--config", server_config.to_str().expect("utf-8")])
        .spawn()
        .expect("server");
    std::thread::sleep(Duration::from_millis(200));
    let client = pinned(client_cpu, exchange)
        .args(["run", "--config", client_config.to_str().expect("utf-8")])
        .spawn()
        .expect("client");
    std::thread::sleep(WARMUP);
    // A fetch that fails counts as nothing handled; say so, so that a pair
    // that measures 0 tells a failed fetch from a stalled container.
    let component =
        |control: &str| match exchange_container::status::fetch(control, Duration::from_secs(2)) {
            Ok(status) => status.components.into_iter().next().unwrap_or_default(),
            Err(error) => {
                eprintln!("transport bench: status from {control} failed: {error}");
                Default::default()
            }
        };
    let handled = || component(&server_ctl).handled;
    let (n0, t0) = (handled(), Instant::now());
    let (server_cpu0, client_cpu0) = (cpu_time(server.id()), cpu_time(client.id()));
    std::thread::sleep(WINDOW);
    let (n1, t1) = (handled(), Instant::now());
    let (server_cpu1, client_cpu1) = (cpu_time(server.id()), cpu_time(client.id()));
    // The pinger's requests, from sending to the reply, by its node's clock.
    let p50_us = component(&client_ctl).response_p50_us as f64;
    stop(client);
    stop(server);
    let messages = (n1 - n0) as f64;
    Sample {
        rate: messages / (t1 - t0).as_secs_f64(),
        server_cpu_ns_per_msg: (server_cpu1 - server_cpu0).as_nanos() as f64 / messages,
        client_cpu_ns_per_msg: (client_cpu1 - client_cpu0).as_nanos() as f64 / messages,
        p50_us: (kind == "request").then_some(p50_us),
    }
}
