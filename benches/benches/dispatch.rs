//! In-process dispatch through the real `Node`, against a bare baseline measured
//! in the same run.
//!
//! Every subject runs the same workload: `IN_FLIGHT` messages circulate between
//! two handlers, each handled message causing exactly one new one, so the rate
//! is messages handled per second of wall time. Subjects:
//!
//! - `baseline`: a `VecDeque` of messages and a `dyn` handler that pushes the
//!   next message (what any actor loop must at least do);
//! - `node_local`: two components on one node (routing, admission, mailbox,
//!   dispatch, effects; no encoding);
//! - `node_local_timed`: the same with the container's real stopwatch timing
//!   every handler;
//! - `node_codec`: one component on each of two nodes, each message's header
//!   encoded by the sender and decoded by the receiver.
//!
//! Subjects alternate in rounds; each round's rate is divided by the
//! baseline's of the same round, and the median ratio and its range are
//! reported, with ns/msg, as JSON lines on stdout.
//!
//! `cargo bench -p exchange-benches --bench dispatch [-- --quick]`

// A benchmark reads the wall clock: the workspace's sans-IO refusals do not
// apply to it.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use exchange_container::for_tests::RealStopwatch;
use exchange_runtime::{
    Component, ComponentLimits, Ctx, HandlerResult, Input, Message, NoStopwatch, Node, NodeConfig,
    NodeId, Output, Payload, RouteChange, SendOptions, Stopwatch, Time,
};

// The allocator the `exchange` binary uses; the baseline runs under it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: usize = 16;
const PAYLOAD: &[u8] = b"0123456789abcdef0123456789abcdef";

// ---- baseline ----

struct BareMessage {
    to: u32,
    payload: Bytes,
}

trait BareHandler {
    fn handle(&mut self, message: &BareMessage, out: &mut VecDeque<BareMessage>);
}

struct BareForward {
    handled: u64,
}

impl BareHandler for BareForward {
    fn handle(&mut self, message: &BareMessage, out: &mut VecDeque<BareMessage>) {
        self.handled += 1;
        out.push_back(BareMessage {
            to: message.to ^ 1,
            payload: message.payload.clone(),
        });
    }
}

fn baseline(messages: u64) -> Duration {
    let mut handlers: Vec<Box<dyn BareHandler>> = vec![
        Box::new(BareForward { handled: 0 }),
        Box::new(BareForward { handled: 0 }),
    ];
    let mut queue = VecDeque::new();
    for i in 0..IN_FLIGHT {
        queue.push_back(BareMessage {
            to: (i % 2) as u32,
            payload: Bytes::from_static(PAYLOAD),
        });
    }
    let started = Instant::now();
    for _ in 0..messages {
        let message = queue.pop_front().expect("the population is constant");
        handlers[message.to as usize].handle(black_box(&message), &mut queue);
    }
    started.elapsed()
}

// ---- the real node ----

/// Forwards every message it gets to `to`; starts `IN_FLIGHT / 2` messages.
struct Forward {
    handles: &'static [&'static str],
    to: &'static str,
}

impl Component for Forward {
    fn handles(&self) -> &[&str] {
        self.handles
    }
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        for _ in 0..IN_FLIGHT / 2 {
            ctx.send_with(
                self.to,
                Payload::raw(Bytes::from_static(PAYLOAD)),
                SendOptions::default(),
            );
        }
        Ok(())
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        ctx.send_with(
            self.to,
            Payload::raw(message.payload().clone()),
            SendOptions::default(),
        );
        Ok(())
    }
}

fn config() -> NodeConfig {
    NodeConfig {
        dispatch_per_turn_max: 1 << 20,
        ..NodeConfig::default()
    }
}

fn add(node: &mut Node, name: &str, handles: &'static [&'static str], to: &'static str) {
    add_with(node, name, handles, to, ComponentLimits::default());
}

fn add_with(
    node: &mut Node,
    name: &str,
    handles: &'static [&'static str],
    to: &'static str,
    limits: ComponentLimits,
) {
    node.add_component(
        name,
        limits,
        Box::new(move || Box::new(Forward { handles, to })),
    )
    .expect("valid component");
}

/// An admission rate on both components that never limits: the cost of
/// the token bucket itself.
fn rate_on() -> ComponentLimits {
    ComponentLimits {
        rate_per_sec: 10_000_000,
        burst: 10_000_000,
        ..ComponentLimits::default()
    }
}

fn limits() -> ComponentLimits {
    ComponentLimits::default()
}

fn handled(node: &Node) -> u64 {
    node.components().map(|(_, _, stats)| stats.handled).sum()
}

fn node_local(messages: u64, stopwatch: Box<dyn Stopwatch>, limits: ComponentLimits) -> Duration {
    let mut node = Node::new(
        NodeId(1),
        "bench",
        NodeConfig {
            dispatch_per_turn_max: messages as usize,
            ..config()
        },
    );
    add_with(&mut node, "a", &["bench.a"], "bench.b", limits.clone());
    add_with(&mut node, "b", &["bench.b"], "bench.a", limits);
    node.set_stopwatch(stopwatch);
    let now = Time::from_micros(1);
    node.handle(now, Input::Start);
    let started = Instant::now();
    node.handle(now, Input::Run);
    let elapsed = started.elapsed();
    assert_eq!(handled(&node), messages);
    elapsed
}

fn node_codec(messages: u64) -> Duration {
    let mut a = Node::new(NodeId(1), "a", config());
    let mut b = Node::new(NodeId(2), "b", config());
    add(&mut a, "a", &["bench.a"], "bench.b");
    add(&mut b, "b", &["bench.b"], "bench.a");
    let now = Time::from_micros(1);
    let route = |name: &str, node| {
        Input::Route(RouteChange::Handler {
            name: name.into(),
            node: NodeId(node),
            handles: true,
        })
    };
    a.handle(now, route("bench.b", 2));
    b.handle(now, route("bench.a", 1));
    a.handle(now, Input::Start);
    b.handle(now, Input::Start);
    let mut nodes = [a, b];
    let started = Instant::now();
    while handled(&nodes[0]) + handled(&nodes[1]) < messages {
        for i in 0..2 {
            nodes[i].handle(now, Input::Run);
            loop {
                match nodes[i].poll_output() {
                    Output::Transmit(transmit) => {
                        let frame = Input::Frame {
                            from: nodes[i].id(),
                            header: &transmit.header,
                            payload: transmit.payload,
                        };
                        nodes[1 - i].handle(now, frame);
                    }
                    Output::Timeout(_) => break,
                    Output::Event(_) => {}
                }
            }
        }
    }
    let elapsed = started.elapsed();
    black_box(&nodes);
    elapsed
}

// ---- harness ----

fn subjects_by_name(name: &str) -> Box<dyn Fn(u64) -> Duration> {
    match name {
        "baseline" => Box::new(baseline),
        "node_local" => Box::new(|n| node_local(n, Box::new(NoStopwatch), limits())),
        "node_local_rate" => Box::new(|n| node_local(n, Box::new(NoStopwatch), rate_on())),
        "node_local_timed" => Box::new(|n| node_local(n, Box::new(RealStopwatch::new()), limits())),
        "node_codec" => Box::new(node_codec),
        other => panic!("unknown subject {other:?}"),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick" || a == "--test");
    // `--only NAME [--messages N]` runs one subject once, for profilers
    // (callgrind counts are repeatable where wall time on this machine is not).
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(only) = value("--only") {
        let messages = value("--messages")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        let elapsed = subjects_by_name(&only)(messages);
        println!(
            "{only}: {:.1} ns/msg",
            elapsed.as_nanos() as f64 / messages as f64
        );
        return;
    }
    let (rounds, messages) = if quick { (3, 20_000) } else { (15, 2_000_000) };
    let subjects: [(&str, &dyn Fn(u64) -> Duration); 5] = [
        ("baseline", &baseline),
        ("node_local", &|n| {
            node_local(n, Box::new(NoStopwatch), limits())
        }),
        ("node_local_rate", &|n| {
            node_local(n, Box::new(NoStopwatch), rate_on())
        }),
        ("node_local_timed", &|n| {
            node_local(n, Box::new(RealStopwatch::new()), limits())
        }),
        ("node_codec", &node_codec),
    ];
    // Warm up every subject once.
    for (_, run) in &subjects {
        run(messages / 10);
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    for _ in 0..rounds {
        let per_msg: Vec<f64> = subjects
            .iter()
            .map(|(_, run)| run(messages).as_nanos() as f64 / messages as f64)
            .collect();
        for (i, value) in per_msg.iter().enumerate() {
            ns[i].push(*value);
            // Rate ratio subject / baseline = baseline ns / subject ns.
            ratios[i].push(per_msg[0] / value);
        }
    }
    for (i, (name, _)) in subjects.iter().enumerate() {
        let ns_median = median(&mut ns[i]);
        let ratio_median = median(&mut ratios[i]);
        let line = serde_json::json!({
            "bench": "dispatch",
            "subject": name,
            "in_flight": IN_FLIGHT,
            "payload_bytes": PAYLOAD.len(),
            "messages_per_round": messages,
            "rounds": rounds,
            "ns_per_msg": (ns_median * 10.0).round() / 10.0,
            "msgs_per_s": (1e9 / ns_median).round(),
            "rate_vs_baseline": (ratio_median * 1000.0).round() / 1000.0,
            "rate_vs_baseline_min": (ratios[i][0] * 1000.0).round() / 1000.0,
            "rate_vs_baseline_max": (ratios[i][ratios[i].len() - 1] * 1000.0).round() / 1000.0,
        });
        println!("{line}");
    }
}
