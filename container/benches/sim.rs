//! The simulator's speed: simulated messages per wall second, and virtual
//! seconds per wall second, for 3, 10 and 100 nodes of the example app at its
//! seed-sweep load (`ops/sim/social.toml`: extra nodes are more load
//! generators), with no faults and with all of them.
//!
//! `cargo bench -p exchange-container --bench sim [-- --quick]` prints JSON lines.

use std::time::{Duration, Instant};

use exchange_container::config;
use exchange_container::for_tests::run_seed;
use exchange_container::registry::example_registry;
use exchange_sim::{Faults, SimOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let registry = example_registry();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/sim/social.toml");
    let app = config::load(Some(&path), &registry).expect("ops/sim/social.toml");
    let seeds: u64 = if quick { 1 } else { 3 };
    for nodes in [3, 10, 100] {
        for (faults, name) in [(Faults::NONE, "none"), (Faults::all(), "all")] {
            let safety = Duration::from_secs(if nodes >= 100 { 2 } else { 5 });
            let (mut handled, mut steps, mut virtual_s, mut wall_s) = (0, 0, 0.0, 0.0);
            for seed in 1..=seeds {
                let started = Instant::now();
                let report = run_seed(
                    &app,
                    &registry,
                    nodes,
                    &SimOptions::new(seed, safety, faults),
                );
                wall_s += started.elapsed().as_secs_f64();
                assert!(report.passed(), "seed {seed}: {:?}", report.violations);
                handled += report.handled;
                steps += report.steps;
                virtual_s += report.virtual_time.as_secs_f64();
            }
            let line = serde_json::json!({
                "bench": "sim", "nodes": nodes, "faults": name, "seeds": seeds,
                "messages_handled": handled, "steps": steps,
                "virtual_s": (virtual_s * 10.0).round() / 10.0,
                "wall_s": (wall_s * 1000.0).round() / 1000.0,
                "messages_per_wall_s": (handled as f64 / wall_s).round(),
                "virtual_s_per_wall_s": ((virtual_s / wall_s) * 100.0).round() / 100.0,
            });
            println!("{line}");
        }
    }
}
