//! `exchangectl` against three `exchange run` containers of the example app
//! under their load generator's sustained load: the feed's admission rate
//! set from high to low and back is followed within a second each time, the
//! containers never restart, and every message is accounted for. Members,
//! names and the refusals are checked on the same cluster.

mod cluster;

use std::time::{Duration, Instant};

use clap::Parser as _;
use cluster::*;
use exchange_container::ctl::{Cli, run};
use exchange_idl::exchange::v1::control::NodeStatus;

fn ctl(cluster: &Cluster, member: Member, args: &[&str]) -> Result<String, String> {
    let endpoint = cluster.control_endpoint(member);
    let mut argv = vec!["exchangectl", "--control", &endpoint];
    argv.extend_from_slice(args);
    run(&Cli::parse_from(argv))
}

/// Requests the feed handled (replies from the store, which it also
/// handles, left out).
fn requests_handled(status: &NodeStatus) -> u64 {
    let feed = &status.components[0];
    feed.handled - feed.responses_received.min(feed.handled)
}

/// The feed's handled requests per second over the next `window`.
fn handled_rate(cluster: &Cluster, window: Duration) -> f64 {
    let before = requests_handled(&cluster.status(FEED));
    let started = Instant::now();
    std::thread::sleep(window);
    let after = requests_handled(&cluster.status(FEED));
    (after - before) as f64 / started.elapsed().as_secs_f64()
}

fn life(status: &NodeStatus) -> u64 {
    status.discovery.as_ref().map_or(0, |d| d.life)
}

fn assert_accounted(status: &NodeStatus) {
    for c in &status.components {
        let ended = c.handled + total(&c.bounced) + total(&c.dropped);
        assert_eq!(
            c.accepted,
            ended + u64::from(c.queue_len),
            "{}: accepted {} handled {} bounced {:?} dropped {:?} queued {}",
            c.name,
            c.accepted,
            c.handled,
            c.bounced,
            c.dropped,
            c.queue_len
        );
    }
}

#[test]
fn the_feed_follows_its_rate_down_and_up_within_a_second() {
    let mut cluster = Cluster::discovering(&APP, &[STORE]);
    for member in APP {
        cluster.start(member, "");
    }
    cluster.wait_for(LOADGEN, Duration::from_secs(20), |s| {
        s.components[0].responses_received > 1000
    });
    let lives: Vec<u64> = APP.iter().map(|m| life(&cluster.status(*m))).collect();

    ctl(
        &cluster,
        FEED,
        &["capacity", "set", "feed", "--rate", "1000000"],
    )
    .unwrap();
    let high = handled_rate(&cluster, Duration::from_secs(1));
    assert!(
        high > 2000.0,
        "the load generator drives the feed: {high:.0}/s"
    );

    for (rate, round) in [(300, 1), (1_000_000, 2), (300, 3), (1_000_000, 4)] {
        let out = ctl(
            &cluster,
            FEED,
            &["capacity", "set", "feed", "--rate", &rate.to_string()],
        )
        .unwrap();
        assert!(out.contains(&format!("{rate} (live)")), "{out}");
        let measured = handled_rate(&cluster, Duration::from_secs(1));
        println!("round {round}: rate {rate}/s, measured {measured:.0}/s");
        if rate == 300 {
            // The burst (a tenth of the rate) may pass on top in the first second.
            assert!(
                (240.0..=360.0).contains(&measured),
                "round {round}: {measured:.0}/s at a rate of 300/s"
            );
        } else {
            assert!(
                measured > high * 0.5,
                "round {round}: {measured:.0}/s after raising, {high:.0}/s before"
            );
        }
    }
    let feed = cluster.status(FEED);
    let throttled = feed.components[0].bounced.get("throttled").copied();
    assert!(
        throttled.unwrap_or(0) > 0,
        "the feed throttled: {:?}",
        feed.components[0].bounced
    );
    let now: Vec<u64> = APP.iter().map(|m| life(&cluster.status(*m))).collect();
    assert_eq!(lives, now, "no container restarted");

    // Quiet the load and check the books of every container.
    cluster.terminate(LOADGEN, Duration::from_secs(5));
    for member in [STORE, FEED] {
        let status = cluster.wait_for(member, Duration::from_secs(5), |s| {
            s.components.iter().all(|c| c.queue_len == 0) && s.pending_requests == 0
        });
        assert_accounted(&status);
    }
}

#[test]
fn members_names_and_refusals_read_as_documented() {
    let mut cluster = Cluster::discovering(&APP, &[STORE]);
    for member in APP {
        cluster.start(member, "");
    }
    cluster.wait_for(LOADGEN, Duration::from_secs(20), |s| {
        s.discovery.as_ref().is_some_and(|d| d.members.len() == 2)
            && s.components[0].responses_received > 0
    });
    let members = ctl(&cluster, FEED, &["members"]).unwrap();
    for (line, member) in members.lines().skip(1).zip([FEED, STORE, LOADGEN]) {
        assert!(line.starts_with(&format!("n{}", member.id)), "{members}");
        assert!(
            line.contains(&cluster.control_endpoint(member)),
            "{members}"
        );
    }
    let names = ctl(&cluster, LOADGEN, &["names"]).unwrap();
    assert!(names.contains("kv.get                   n1"), "{names}");
    assert!(names.contains("feed.post                n2"), "{names}");

    // Another member, reached through the control endpoint membership carries.
    let store = ctl(&cluster, FEED, &["capacity", "get", "--node", "1"]).unwrap();
    assert!(store.starts_with("capacity of n1 (store)"), "{store}");
    let status = ctl(&cluster, FEED, &["--json", "status", "--node", "1"]).unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["node"], 1);

    let refused = |args: &[&str]| ctl(&cluster, FEED, args).unwrap_err();
    insta::assert_snapshot!(
        "refusals",
        [
            refused(&["capacity", "set", "feed", "--rate", "20000000"]),
            refused(&["capacity", "set", "nosuch", "--rate", "5"]),
            refused(&["capacity", "set", "feed", "--dispatch-per-turn-max", "5"]),
            refused(&["capacity", "set", "feed"]),
            refused(&["capacity", "set", "feed", "--rate", "5", "--persist"]),
            refused(&["status", "--node", "9"])
                .replace(&cluster.control_endpoint(FEED), "ENDPOINT"),
        ]
        .join("\n")
    );
    let unreachable = run(&Cli::parse_from([
        "exchangectl",
        "--control",
        "tcp://127.0.0.1:1",
        "--timeout",
        "300ms",
        "names",
    ]))
    .unwrap_err();
    assert_eq!(
        unreachable,
        "no answer from tcp://127.0.0.1:1 within 300ms (is the node up, and is this its control endpoint?)"
    );
}
