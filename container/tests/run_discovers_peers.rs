//! `exchange run` with discovery instead of static peers: five containers
//! started in random order, each configured with one seed, find each other
//! and serve the example app; killing the seed leaves the rest working, and a
//! new node joins through another member.

mod cluster;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster::*;
use exchange_idl::exchange::v1::control::NodeStatus;

const ALL: [Member; 6] = [STORE, FEED, LOADGEN, WATCHER_A, WATCHER_B, WATCHER_C];
const FIRST_FIVE: [Member; 5] = [STORE, FEED, LOADGEN, WATCHER_A, WATCHER_B];

fn members(status: &NodeStatus) -> Vec<u64> {
    let mut members = status
        .discovery
        .as_ref()
        .map(|d| d.members.clone())
        .unwrap_or_default();
    members.sort_unstable();
    members
}

fn others(all: &[Member], this: Member) -> Vec<u64> {
    all.iter()
        .map(|m| m.id)
        .filter(|id| *id != this.id)
        .collect()
}

fn replies(cluster: &Cluster) -> u64 {
    cluster.status(LOADGEN).components[0].responses_received
}

/// A random permutation (the order is printed, for a failing run).
fn shuffled(mut members: Vec<Member>) -> Vec<Member> {
    let mut state = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    for i in (1..members.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        members.swap(i, (state % (i as u64 + 1)) as usize);
    }
    members
}

#[test]
fn containers_find_each_other_from_one_seed_and_outlive_it() {
    let mut cluster = Cluster::discovering(&ALL, &[WATCHER_A]);
    let order = shuffled(FIRST_FIVE.to_vec());
    println!(
        "start order: {:?}",
        order.iter().map(|m| m.name).collect::<Vec<_>>()
    );
    for member in &order {
        cluster.start(*member, "");
        std::thread::sleep(Duration::from_millis(100));
    }
    for member in FIRST_FIVE {
        let expected = others(&FIRST_FIVE, member);
        cluster.wait_for(member, Duration::from_secs(20), |s| members(s) == expected);
    }
    // The app runs across them: the load generator's requests are answered,
    // and posts reach the watchers by publish.
    let before = replies(&cluster);
    cluster.wait_for(LOADGEN, Duration::from_secs(10), |s| {
        s.components[0].responses_received > before + 100
    });
    cluster.wait_for(WATCHER_B, Duration::from_secs(10), |s| {
        s.components[0].handled > 0
    });

    // The seed dies: the others declare it down and keep serving.
    cluster.kill(WATCHER_A);
    let rest = [STORE, FEED, LOADGEN, WATCHER_B];
    for member in rest {
        let expected = others(&rest, member);
        cluster.wait_for(member, Duration::from_secs(20), |s| members(s) == expected);
    }
    let before = replies(&cluster);
    cluster.wait_for(LOADGEN, Duration::from_secs(10), |s| {
        s.components[0].responses_received > before + 100
    });

    // A new node joins through another member (the seed is gone) and is
    // known to all; posts reach it too.
    cluster.set_seeds(&[FEED]);
    cluster.start(WATCHER_C, "");
    let now = [STORE, FEED, LOADGEN, WATCHER_B, WATCHER_C];
    for member in now {
        let expected = others(&now, member);
        cluster.wait_for(member, Duration::from_secs(20), |s| members(s) == expected);
    }
    cluster.wait_for(WATCHER_C, Duration::from_secs(10), |s| {
        s.components[0].handled > 0
    });
    for member in now {
        let (exit, _, _) = cluster.terminate(member, Duration::from_secs(3));
        assert!(exit.success(), "{} exits cleanly", member.name);
    }
}
