//! Discovery's membership in virtual time (the discovery issue's simulator
//! tests): nodes join from one seed and converge; a crashed node is declared
//! down by all within the SWIM bound; after a partition heals, membership and
//! the capability table re-converge; with loss and a stalling node, false
//! "down" declarations stay rare.

use std::time::Duration;

use exchange_sim::swim::{SwimOptions, SwimSim};

const PERIOD: Duration = Duration::from_millis(500);

fn converge(sim: &mut SwimSim, max: Duration) -> Duration {
    sim.run_until_converged(max, Duration::from_millis(50))
        .unwrap_or_else(|| panic!("{} nodes did not converge within {max:?}", sim.len()))
}

#[test]
fn nodes_join_from_one_seed_and_converge() {
    for (nodes, seed) in [(3, 1), (8, 2), (16, 3), (64, 4)] {
        let mut sim = SwimSim::new(SwimOptions::new(seed, nodes));
        let took = converge(&mut sim, Duration::from_secs(30));
        println!("{nodes} nodes converged in {took:?}");
        assert!(sim.counts().downs == 0, "{nodes} nodes: nobody went down");
    }
}

/// SWIM's bound on detection: a probe of the dead node within a probe period
/// (every node probes one member per period) or two, its failure (direct and
/// indirect probes) within one more, then the suspicion timeout, then
/// dissemination of the verdict (a few gossip rounds).
fn detection_bound(nodes: usize) -> Duration {
    let suspicion = exchange_discovery::Settings::new(
        exchange_runtime::NodeId(1),
        1,
        exchange_sim::swim::addr(0),
        exchange_discovery::ClusterKey::new(b"sixteen byte key").unwrap(),
    )
    .suspicion(nodes);
    PERIOD * 3 + suspicion + PERIOD * 2
}

#[test]
fn a_crashed_node_is_declared_down_by_all_within_the_swim_bound() {
    for (nodes, seed) in [(8, 11), (32, 12)] {
        let mut sim = SwimSim::new(SwimOptions::new(seed, nodes));
        converge(&mut sim, Duration::from_secs(30));
        sim.crash(nodes / 2);
        let bound = detection_bound(nodes);
        sim.run_for(bound);
        let seen = sim.detection(nodes / 2);
        let slowest = seen
            .iter()
            .map(|t| t.expect("every node saw it down"))
            .max();
        println!("{nodes} nodes: slowest detection {slowest:?} (bound {bound:?})");
        assert!(seen.iter().all(Option::is_some), "{nodes} nodes: {seen:?}");
        assert_eq!(sim.counts().false_downs, 0);
    }
}

#[test]
fn after_a_partition_heals_membership_and_names_reconverge_within_30_s() {
    let nodes = 24;
    let mut sim = SwimSim::new(SwimOptions::new(21, nodes));
    converge(&mut sim, Duration::from_secs(30));
    let side: Vec<usize> = (0..nodes / 3).collect();
    sim.partition(&side);
    sim.run_for(Duration::from_secs(20));
    // Each side has given up on the other.
    assert!(sim.view(0).len() < nodes / 3, "{:?}", sim.view(0));
    // A name changes on one side meanwhile: after the heal it must be known on
    // the other too (the capability table re-converges, not just liveness).
    sim.update_meta(nodes - 1, |meta| {
        meta.handles
            .push(exchange_sim::swim::wire_handled("svc.new"));
    });
    sim.run_for(Duration::from_secs(2));
    sim.heal();
    let took = converge(&mut sim, Duration::from_secs(30));
    println!("re-converged {took:?} after the heal");
    let on_other_side = sim.membership(0).unwrap();
    let member = on_other_side
        .member(exchange_runtime::NodeId(nodes as u64))
        .expect("the far node is known again");
    assert!(member.meta.handles.iter().any(|h| h.name == "svc.new"));
}

#[test]
fn with_loss_and_a_stalling_node_false_downs_stay_below_one_in_ten_thousand_probes() {
    let nodes = 16;
    let mut options = SwimOptions::new(31, nodes);
    options.loss = 0.05;
    let mut sim = SwimSim::new(options);
    converge(&mut sim, Duration::from_secs(60));
    let hour = Duration::from_secs(3600);
    // One node stalls for 2 s once a minute, through the hour.
    let mut elapsed = Duration::ZERO;
    while elapsed < hour {
        sim.stall(5, Duration::from_secs(2));
        sim.run_for(Duration::from_secs(60));
        elapsed += Duration::from_secs(60);
    }
    let probe_periods = nodes as f64 * hour.as_secs_f64() / PERIOD.as_secs_f64();
    let false_downs = sim.counts().false_downs;
    let rate = false_downs as f64 / probe_periods;
    println!("{false_downs} false downs in {probe_periods} probe periods ({rate:e})");
    assert!(
        rate < 1e-4,
        "{false_downs} false downs in {probe_periods} probe periods"
    );
    assert!(sim.converged(), "still one cluster at the end");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed| {
        let mut options = SwimOptions::new(seed, 12);
        options.loss = 0.02;
        let mut sim = SwimSim::new(options);
        sim.run_for(Duration::from_secs(5));
        sim.crash(3);
        sim.run_for(Duration::from_secs(10));
        (
            sim.counts().clone(),
            (0..12).map(|i| sim.view(i)).collect::<Vec<_>>(),
        )
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}
