//! Discovery's membership at scale, in the simulator (virtual time, so the
//! figures do not depend on this machine): for each cluster size, how long
//! until every node knows every other (and its metadata) when all join from
//! one seed within 1 s and when they trickle in over 10 s; how long until all
//! know a name a node starts handling; how long until all see a crashed node
//! down; and membership traffic per node per second, while joining and once
//! settled.
//!
//! `cargo bench -p exchange-container --bench membership [-- --quick]` prints
//! JSON lines.

use std::time::{Duration, Instant};

use exchange_sim::swim::{SwimOptions, SwimSim};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let sizes: &[usize] = if quick {
        &[10, 50]
    } else {
        &[10, 50, 100, 250, 500, 1000]
    };
    for &nodes in sizes {
        for spread_s in [1, 10] {
            let started = Instant::now();
            let mut options = SwimOptions::new(1, nodes);
            options.join_spread = Duration::from_secs(spread_s);
            let mut sim = SwimSim::new(options);
            let converge = sim
                .run_until_converged(Duration::from_secs(180), Duration::from_millis(100))
                .map(|d| d.as_secs_f64());
            let joined_bytes = sim.counts().bytes;
            let joined_at = sim.elapsed().as_secs_f64();
            // Settled traffic: 20 s with nothing happening.
            let before = sim.counts().clone();
            sim.run_for(Duration::from_secs(20));
            let settled = sim.counts();
            let per_node_s = |v: u64| v as f64 / nodes as f64 / 20.0;
            let settled_bytes = per_node_s(settled.bytes - before.bytes);
            let settled_datagrams = per_node_s(settled.datagrams - before.datagrams);
            // A node starts handling a new name: how long until all know it.
            sim.update_meta(0, |meta| {
                meta.handles
                    .push(exchange_sim::swim::wire_handled("svc.new"));
            });
            let name_spread = sim
                .run_until_converged(Duration::from_secs(60), Duration::from_millis(10))
                .map(|d| d.as_secs_f64());
            // Failure detection: crash one node, wait for all to see it.
            let victim = nodes / 2;
            sim.crash(victim);
            sim.run_for(Duration::from_secs(30));
            let detection = sim.detection(victim);
            let detected_all = detection
                .iter()
                .map(|d| d.map(|d| d.as_secs_f64()))
                .collect::<Option<Vec<f64>>>()
                .map(|all| all.into_iter().fold(0.0, f64::max));
            println!(
                "{}",
                serde_json::json!({
                    "bench": "membership", "nodes": nodes, "join_spread_s": spread_s,
                    "converged_s": converge,
                    "join_bytes_per_node_s": joined_bytes as f64 / nodes as f64 / joined_at,
                    "settled_bytes_per_node_s": settled_bytes,
                    "settled_datagrams_per_node_s": settled_datagrams,
                    "crash_seen_by_all_s": detected_all,
                    "new_name_known_by_all_s": name_spread,
                    "false_downs": sim.counts().false_downs,
                    "wall_s": started.elapsed().as_secs_f64(),
                })
            );
        }
    }
}
