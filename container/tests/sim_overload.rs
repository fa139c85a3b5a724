//! Overload the simulator can see: each simulated node is one core and its
//! handlers cost virtual time. When the feed's handler cost triples mid-run
//! its mailbox fills to its bound and no further (the node's audit, every
//! step), senders get `Overloaded` (with a retry-after), congestion is
//! published; a live capacity change (an input, as the control plane makes
//! it) settles it, and every message is accounted for. Over a sweep of seeds.

use std::time::Duration;

use exchange_container::config::{self, AppConfig};
use exchange_container::for_tests::run_seed;
use exchange_container::registry::{Registry, example_registry};
use exchange_runtime::{CapacityChange, ComponentId, Limit, NodeId};
use exchange_sim::{Faults, HandlerCost, SimEvent, SimOptions, SimReport};

/// The example app with a feed that a load generator with many requests in
/// flight can overrun: n1 store, n2 feed, n3 loadgen.
const APP: &str = r#"
seed = 1
[node]
trace_sample_one_in = 0
[[component]]
name = "store"
[[component]]
name = "feed"
[component.limits]
mailbox_len_max = 200
[component.settings]
timeline_len_max = 20
store_timeout = "1s"
[[component]]
name = "loadgen"
[component.settings]
users = 100
tick = "1ms"
ops_per_tick = 4
in_flight_max = 1000
request_timeout = "1s"
"#;

fn app(registry: &Registry) -> AppConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overload.toml");
    std::fs::write(&path, APP).unwrap();
    config::load(Some(&path), registry).unwrap()
}

/// The feed at 100 µs a handler (about 80% busy at this load) until 1 s,
/// then 300 µs (overrun); at 2 s the operator caps its admission rate at
/// 1,200 a second, under what it can now handle.
fn overload(seed: u64) -> SimOptions {
    let mut options = SimOptions::new(seed, Duration::from_secs(4), Faults::NONE);
    options.cost = HandlerCost::uniform(Duration::from_micros(2));
    let feed = |cost| SimEvent::Cost {
        component: "feed".into(),
        cost: Duration::from_micros(cost),
    };
    options.events = vec![
        (Duration::ZERO, feed(100)),
        (Duration::from_secs(1), feed(300)),
        (
            Duration::from_secs(2),
            SimEvent::Capacity {
                node: NodeId(2),
                change: CapacityChange {
                    component: Some(ComponentId(0)),
                    by: "sim".into(),
                    ..CapacityChange::default()
                }
                .set(Limit::RatePerSec, 1200),
            },
        ),
    ];
    options
}

fn check(report: &SimReport) -> Result<(), String> {
    if !report.passed() {
        return Err(format!("{:?}", report.violations[0]));
    }
    let overloaded = report.bounced_by.get("overloaded").copied().unwrap_or(0);
    let throttled = report.bounced_by.get("throttled").copied().unwrap_or(0);
    if overloaded == 0 || throttled == 0 {
        return Err(format!("bounces: {:?}", report.bounced_by));
    }
    if report.congested == 0 || report.decongested < report.congested {
        return Err(format!(
            "congested {} times, decongested {}",
            report.congested, report.decongested
        ));
    }
    Ok(())
}

#[test]
fn a_feed_that_slows_down_fills_to_its_bound_and_a_live_rate_settles_it() {
    let registry = example_registry();
    let app = app(&registry);
    let failures: Vec<String> = (1..=20)
        .map(|seed| (seed, run_seed(&app, &registry, 3, &overload(seed))))
        .filter_map(|(seed, report)| check(&report).err().map(|e| format!("seed {seed}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn without_the_cost_model_the_same_load_never_congests() {
    let registry = example_registry();
    let app = app(&registry);
    let mut options = overload(1);
    options.cost = HandlerCost::default();
    options.events.clear();
    let report = run_seed(&app, &registry, 3, &options);
    assert!(report.passed(), "{:?}", report.violations);
    assert_eq!(report.congested, 0);
}
