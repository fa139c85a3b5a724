//! Flow control across processes: a receiver reads from the network only what it
//! can run in the same turn, so a sender that outpaces it is pushed back through
//! ZeroMQ's queues (its own sends bounce `Overloaded` at its own node) instead of
//! filling the receiver's mailbox and drawing `Overloaded` bounces back across
//! the network. And request round trips are timed in the requester's status.

mod cluster;

use std::time::Duration;

use cluster::*;

const ECHO: Member = Member {
    name: "echo",
    kind: "echo",
    id: 10,
    handles: &["bench.echo", "bench.event"],
    subscribes: &[],
    settings: "",
};
/// Sends one-way events as fast as its loop turns: 1,024 a turn, four times what
/// a receiver runs in one.
const FLOOD: Member = Member {
    name: "flood",
    kind: "pinger",
    id: 11,
    handles: &[],
    subscribes: &[],
    settings: "one_way = true\nburst = 1024\n",
};
const PINGER: Member = Member {
    name: "pinger",
    kind: "pinger",
    id: 12,
    handles: &[],
    subscribes: &[],
    settings: "in_flight = 4\n",
};

#[test]
fn a_flooded_receiver_pushes_back_instead_of_bouncing_across_the_network() {
    let mut cluster = Cluster::of(&[ECHO, FLOOD]);
    cluster.start(ECHO, "");
    cluster.start(FLOOD, "");
    let echo = cluster.wait_for(ECHO, Duration::from_secs(10), |s| {
        s.components[0].handled > 200_000
    });
    let echo = &echo.components[0];
    assert!(
        echo.bounced.is_empty() && echo.dropped.is_empty(),
        "the receiver refused nothing: {echo:?}"
    );
    assert!(
        echo.queue_len_peak <= 256,
        "never more queued than one turn runs: {echo:?}"
    );
    let flood = cluster.status(FLOOD);
    assert_eq!(
        flood.components[0].accepted,
        total(&flood.components[0].returned),
        "all the sender got back are its own node's bounces: {flood:?}"
    );
    for member in [FLOOD, ECHO] {
        let (status, stdout, _) = cluster.terminate(member, Duration::from_secs(2));
        assert!(status.success(), "{}: {stdout}", member.name);
    }
}

#[test]
fn request_round_trips_are_timed_in_the_requesters_status() {
    let mut cluster = Cluster::of(&[ECHO, PINGER]);
    cluster.start(ECHO, "");
    cluster.start(PINGER, "");
    let pinger = cluster.wait_for(PINGER, Duration::from_secs(10), |s| {
        s.components[0].responses_received > 1_000
    });
    let pinger = &pinger.components[0];
    assert!(
        pinger.response_p50_us > 0 && pinger.response_p50_us <= pinger.response_p99_us,
        "{pinger:?}"
    );
    assert!(
        pinger.response_p50_us < 1_000_000,
        "a loopback round trip takes well under a second: {pinger:?}"
    );
}
