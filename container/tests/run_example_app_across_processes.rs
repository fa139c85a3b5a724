//! The example app, one container per component over ZeroMQ (ipc): requests
//! and replies cross processes, peers started in reverse order still connect,
//! every component's counters balance, and SIGTERM drains and exits quickly.

mod cluster;

use std::time::Duration;

use cluster::*;

fn run_app(mut cluster: Cluster, order: [Member; 3], pause: Duration) {
    for member in order {
        cluster.start(member, "");
        std::thread::sleep(pause);
    }
    // Work flows once all three are up: the load generator's requests get replies.
    let feed = cluster.wait_for(FEED, Duration::from_secs(10), |s| {
        s.components[0].handled > 500
    });
    let store = cluster.wait_for(STORE, Duration::from_secs(10), |s| {
        s.components[0].handled > 1_000
    });
    assert!(feed.components[0].handled > 0 && store.components[0].handled > 0);

    for member in order.into_iter().rev() {
        let (status, stdout, took) = cluster.terminate(member, Duration::from_secs(2));
        assert!(
            status.success(),
            "{} exited with {status}: {stdout}",
            member.name
        );
        assert!(
            took < Duration::from_secs(2),
            "{} took {took:?} to stop",
            member.name
        );
        assert!(
            stdout.contains(member.name),
            "the final status is printed: {stdout}"
        );
    }
}

#[test]
fn request_reply_across_processes_over_ipc() {
    run_app(
        Cluster::new(),
        [STORE, FEED, LOADGEN],
        Duration::from_millis(100),
    );
}

#[test]
fn request_reply_across_processes_over_tcp() {
    run_app(
        Cluster::of_tcp(&APP),
        [STORE, FEED, LOADGEN],
        Duration::from_millis(100),
    );
}

#[test]
fn peers_started_in_reverse_order_still_connect() {
    // The load generator starts first and the store last, a second later: its
    // first requests wait in ZeroMQ's queues until the peers are up.
    run_app(
        Cluster::new(),
        [LOADGEN, FEED, STORE],
        Duration::from_millis(500),
    );
}

#[test]
fn counters_balance_in_every_live_process() {
    let mut cluster = Cluster::new();
    for member in APP {
        cluster.start(member, "");
    }
    cluster.wait_for(LOADGEN, Duration::from_secs(10), |s| {
        s.components[0].handled > 2_000
    });
    // A status is taken between turns of the container's loop, so it is a
    // consistent snapshot: what was accepted is handled, refused, or still queued.
    for member in APP {
        let status = cluster.status(member);
        let c = &status.components[0];
        assert!(c.accepted > 0, "{}: {c:?}", member.name);
        assert_eq!(
            c.accepted,
            c.handled + total(&c.bounced) + total(&c.dropped) + u64::from(c.queue_len),
            "{}: {c:?}",
            member.name
        );
        // Replies to a peer whose connection back is not up yet (at startup) are
        // dropped and counted; nothing arrives malformed.
        assert_eq!(
            status.node_dropped.get("malformed"),
            None,
            "{}: {status:?}",
            member.name
        );
    }
    for member in APP {
        let (status, _, _) = cluster.terminate(member, Duration::from_secs(2));
        assert!(status.success());
    }
}

#[test]
fn sigterm_drains_and_exits_within_2s_even_when_peers_are_gone() {
    let mut cluster = Cluster::new();
    for member in APP {
        cluster.start(member, "");
    }
    cluster.wait_for(LOADGEN, Duration::from_secs(10), |s| {
        s.components[0].handled > 1_000
    });
    // The peers vanish mid-flight; the load generator's requests now sit in
    // ZeroMQ's queues toward them, and its pending requests will never be answered.
    cluster.kill(STORE);
    cluster.kill(FEED);
    std::thread::sleep(Duration::from_millis(200));
    let (status, stdout, took) = cluster.terminate(LOADGEN, Duration::from_secs(2));
    assert!(status.success(), "exit status {status}: {stdout}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn kill_9_under_load_then_restart_loses_nothing_silently() {
    let mut cluster = Cluster::new();
    for member in APP {
        cluster.start(member, "");
    }
    cluster.wait_for(LOADGEN, Duration::from_secs(10), |s| {
        s.components[0].handled > 1_000
    });
    // The feed dies holding requests; a new one takes its place.
    cluster.kill(FEED);
    std::thread::sleep(Duration::from_millis(300));
    cluster.start(FEED, "");
    cluster.wait_for(FEED, Duration::from_secs(10), |s| {
        s.components[0].handled > 500
    });
    // Requests the dead feed held reach their deadline (2 s) and come back Expired.
    let loadgen = cluster.wait_for(LOADGEN, Duration::from_secs(10), |s| {
        s.components[0]
            .returned
            .get("expired")
            .copied()
            .unwrap_or(0)
            > 0
    });
    let c = &loadgen.components[0];
    // Every request the load generator ever sent has exactly one outcome: a reply
    // or a bounce (of any reason), or it is still pending.
    assert_eq!(
        c.requests_sent,
        c.responses_received + u64::from(loadgen.pending_requests),
        "{loadgen:?}"
    );
    assert_eq!(
        c.accepted,
        c.handled + total(&c.bounced) + total(&c.dropped) + u64::from(c.queue_len)
    );
    let store = cluster.status(STORE);
    let s = &store.components[0];
    assert_eq!(
        s.accepted,
        s.handled + total(&s.bounced) + total(&s.dropped) + u64::from(s.queue_len)
    );
    for member in APP {
        let (status, _, _) = cluster.terminate(member, Duration::from_secs(2));
        assert!(status.success());
    }
}

#[test]
fn a_publish_reaches_every_subscriber_process_once() {
    let members = [STORE, FEED, LOADGEN, WATCHER_A, WATCHER_B];
    let mut cluster = Cluster::of(&members);
    // Subscribers first: a publish to a subscriber that is not connected yet is
    // refused and counted by the publisher, not delivered late.
    for member in [WATCHER_A, WATCHER_B, STORE, FEED] {
        cluster.start(member, "");
        cluster.status(member);
    }
    cluster.wait_for(FEED, Duration::from_secs(5), |s| {
        s.frames_in > 0 || s.components[0].accepted == 0
    });
    std::thread::sleep(Duration::from_millis(300));
    cluster.start(LOADGEN, "");
    cluster.wait_for(WATCHER_B, Duration::from_secs(10), |s| {
        s.components[0].handled > 200
    });
    // Stop the load, let the feed finish, then both watchers have seen every post.
    let (status, _, _) = cluster.terminate(LOADGEN, Duration::from_secs(2));
    assert!(status.success());
    let feed = cluster.wait_for(FEED, Duration::from_secs(5), |s| {
        s.pending_requests == 0 && s.components[0].queue_len == 0
    });
    // Publishes to the load generator after it left are refused and counted
    // (`no_handler`); nothing is malformed.
    assert_eq!(feed.node_dropped.get("malformed"), None, "{feed:?}");
    // A watcher starved of CPU lags behind the other; wait (bounded) for both to
    // have taken in everything on the wire before comparing.
    let started = std::time::Instant::now();
    let (a, b) = loop {
        let a = cluster.status(WATCHER_A).components[0].clone();
        let b = cluster.status(WATCHER_B).components[0].clone();
        if a.handled == b.handled || started.elapsed() > Duration::from_secs(5) {
            break (a, b);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(a.handled > 200, "{a:?}");
    assert_eq!(
        (a.accepted, a.handled),
        (b.accepted, b.handled),
        "each watcher got every feed.posted once (waited {:?})",
        started.elapsed()
    );
}
