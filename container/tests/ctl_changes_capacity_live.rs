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
    // Every member knows the other two (membership spreads in a few probe
    // periods), and the app works.
    for member in APP {
        cluster.wait_for(member, Duration::from_secs(20), |s| members_of(s) == 2);
    }
    cluster.wait_for(LOADGEN, Duration::from_secs(20), |s| {
        s.components[0].responses_received > 0
    });
    let members = ctl(&cluster, FEED, &["members"]).unwrap();
    assert_eq!(members.lines().count(), 5, "{members}");
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

/// More instances of the feed: the same component, on other nodes.
const fn feed(id: u64) -> Member {
    Member { id, ..FEED }
}
const FEED_7: Member = feed(7);
const FEED_8: Member = feed(8);
const FEED_9: Member = feed(9);

/// Requests handled per second by `feeds` together, over `window`.
fn aggregate_rate(cluster: &Cluster, feeds: &[Member], window: Duration) -> f64 {
    let count = |cluster: &Cluster| -> u64 {
        feeds
            .iter()
            .map(|f| requests_handled(&cluster.status(*f)))
            .sum()
    };
    let before = count(cluster);
    let started = Instant::now();
    std::thread::sleep(window);
    (count(cluster) - before) as f64 / started.elapsed().as_secs_f64()
}

fn members_of(status: &NodeStatus) -> usize {
    status.discovery.as_ref().map_or(0, |d| d.members.len())
}

/// The feed's rate as a member reports it: value, source, total, instances.
fn feed_rate(status: &NodeStatus) -> (u64, String, u64, u32) {
    let limit = status.components[0]
        .capacity
        .as_ref()
        .and_then(|c| c.rate.clone())
        .unwrap_or_default();
    (
        limit.value,
        limit.source,
        limit.network_total,
        limit.instances,
    )
}

#[test]
fn a_network_rate_holds_while_an_instance_dies_and_another_joins() {
    const ALL: [Member; 6] = [STORE, LOADGEN, FEED, FEED_7, FEED_8, FEED_9];
    let mut cluster = Cluster::discovering(&ALL, &[STORE]);
    for member in [STORE, LOADGEN, FEED, FEED_7, FEED_8] {
        cluster.start(member, "");
    }
    for member in [STORE, LOADGEN, FEED, FEED_7, FEED_8] {
        cluster.wait_for(member, Duration::from_secs(20), |s| members_of(s) == 4);
    }
    cluster.wait_for(LOADGEN, Duration::from_secs(10), |s| {
        s.components[0].responses_received > 1000
    });
    let out = ctl(
        &cluster,
        FEED,
        &["capacity", "set", "feed", "--network", "--rate", "900"],
    )
    .unwrap();
    assert_eq!(out.matches("300 (network 900/3)").count(), 3, "{out}");
    let three = aggregate_rate(&cluster, &[FEED, FEED_7, FEED_8], Duration::from_secs(2));
    println!("three instances: {three:.0}/s");

    // One instance dies; once the others see it gone, two share the total.
    cluster.kill(FEED_8);
    for member in [FEED, FEED_7] {
        cluster.wait_for(member, Duration::from_secs(20), |s| {
            feed_rate(s) == (450, "network".into(), 900, 2)
        });
    }
    let two = aggregate_rate(&cluster, &[FEED, FEED_7], Duration::from_secs(2));
    println!("two instances: {two:.0}/s");

    // A new instance joins: it learns the total from the others' metadata.
    cluster.start(FEED_9, "");
    for member in [FEED, FEED_7, FEED_9] {
        cluster.wait_for(member, Duration::from_secs(20), |s| {
            feed_rate(s) == (300, "network".into(), 900, 3)
        });
    }
    let joined = aggregate_rate(&cluster, &[FEED, FEED_7, FEED_9], Duration::from_secs(2));
    println!("after a join: {joined:.0}/s");
    for rate in [three, two, joined] {
        assert!(
            (810.0..=990.0).contains(&rate),
            "{three:.0}/s, {two:.0}/s, {joined:.0}/s against a network rate of 900/s"
        );
    }
}

#[test]
fn a_persisted_change_survives_a_restart_and_a_public_control_socket_is_read_only() {
    let mut cluster = Cluster::of(&[STORE]);
    let overlay = cluster.dir.path().join("store.overlay.toml");
    let overlay_env = overlay.to_str().unwrap().to_owned();
    let env = [("EXCHANGE__RUN__OVERLAY", overlay_env.as_str())];
    cluster.start_with_env(STORE, "", &env);
    cluster.status(STORE);
    let set = ["capacity", "set", "store", "--rate", "700", "--persist"];
    ctl(&cluster, STORE, &set).unwrap();
    ctl(
        &cluster,
        STORE,
        &[
            "capacity",
            "set",
            "--dispatch-per-turn-max",
            "64",
            "--persist",
        ],
    )
    .unwrap();
    let written = std::fs::read_to_string(&overlay).unwrap();
    assert!(
        written.contains("[[capacity]]") && written.contains("rate = 700"),
        "{written}"
    );

    cluster.terminate(STORE, Duration::from_secs(5));
    cluster.start_with_env(STORE, "", &env);
    cluster.status(STORE);
    let after = ctl(&cluster, STORE, &["capacity", "get"]).unwrap();
    assert!(after.contains("dispatch_per_turn_max 64 (live)"), "{after}");
    assert!(after.contains("700 (live)"), "{after}");
    cluster.terminate(STORE, Duration::from_secs(5));

    // Bound on every interface, the control socket serves reads only.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("tcp://0.0.0.0:{port}");
    cluster.start_with_env(STORE, "", &[("EXCHANGE__RUN__CONTROL", public.as_str())]);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let ask = |args: &[&str]| {
        let mut argv = vec!["exchangectl", "--control", &endpoint];
        argv.extend_from_slice(args);
        run(&Cli::parse_from(argv))
    };
    let started = Instant::now();
    while ask(&["names"]).is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "no answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        ask(&["capacity", "set", "store", "--rate", "5"]).unwrap_err(),
        "refused (read_only): this control socket is not bound to loopback or ipc://, so it takes no changes"
    );
    assert!(ask(&["drain", "1"]).unwrap_err().contains("read_only"));
}
