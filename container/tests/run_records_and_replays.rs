//! `exchange run --record FILE`: a production container records every input
//! its node takes (frames from other processes, timer turns, refusals, the
//! route changes discovery makes, a live capacity change, the drain);
//! `exchange sim --replay FILE
//! --config` (the same config) builds a fresh node and feeds it the same
//! inputs, and it emits exactly what the live one did.

mod cluster;

use std::process::Command;
use std::time::Duration;

use clap::Parser as _;
use cluster::*;
use exchange_container::ctl::Cli;

fn replay(recording: &str, config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["sim", "--replay", recording, "--config"])
        .arg(config)
        .output()
        .expect("exchange sim runs")
}

#[test]
fn a_recorded_container_replays_exactly_from_its_config() {
    let mut cluster = Cluster::discovering(&APP, &[STORE]);
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("feed.xrec");
    let recording = recording.to_str().unwrap();
    cluster.start(STORE, "");
    cluster.start_with(FEED, "", &[], &["--record", recording]);
    cluster.start(LOADGEN, "");
    let live = cluster.wait_for(FEED, Duration::from_secs(10), |s| {
        s.components[0].handled > 500
    });
    assert!(live.components[0].handled > 500);
    // A live change through the control plane is an input like any other.
    let endpoint = cluster.control_endpoint(FEED);
    let set = [
        "exchangectl",
        "--control",
        &endpoint,
        "capacity",
        "set",
        "feed",
    ];
    let argv = set.iter().copied().chain(["--rate", "400"]);
    exchange_container::ctl::run(&Cli::parse_from(argv)).unwrap();
    cluster.wait_for(FEED, Duration::from_secs(5), |s| {
        s.components[0].bounced.contains_key("throttled")
    });
    for member in [LOADGEN, FEED, STORE] {
        let (status, stdout, _) = cluster.terminate(member, Duration::from_secs(3));
        assert!(status.success(), "{}: {stdout}", member.name);
    }

    let config = cluster.config(FEED, "");
    let out = replay(recording, &config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("to the container's node n2")
            && stdout.contains("every node emitted what it emitted when recorded"),
        "{stdout}"
    );
    assert!(stdout.contains("node n2 (feed)"), "its status: {stdout}");

    // Another container's config: refused before anything is fed.
    let out = replay(recording, &cluster.config(STORE, ""));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"recorded with the components ["feed"]"#),
        "{stderr}"
    );
    // The same components as another node: refused too.
    let moved = dir.path().join("moved.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&moved, toml.replace("node_id = 2", "node_id = 9")).unwrap();
    let out = replay(recording, &moved);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("was recorded by node 2; this config's [run] node_id is 9"),
        "{stderr}"
    );
}
