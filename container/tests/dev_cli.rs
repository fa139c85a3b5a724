//! `exchange dev` as a user runs it: the example app end to end, the JSON
//! report's accounting, the modelled network, Ctrl-C, and clear errors for bad
//! config and flags.

mod cli;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli::{exchange, run, text};
use serde_json::Value;

/// Every component handled something and its counters balance.
fn assert_report_balances(path: &Path) -> Value {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let components = report["components"].as_object().unwrap();
    assert_eq!(
        components.keys().collect::<Vec<_>>(),
        ["feed", "loadgen", "store"]
    );
    for (name, c) in components {
        let sum = |key: &str| {
            c[key]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>()
        };
        let accepted = c["accepted"].as_u64().unwrap();
        let handled = c["handled"].as_u64().unwrap();
        assert!(handled > 0, "{name} handled nothing");
        assert_eq!(
            accepted,
            handled + sum("bounced") + sum("dropped"),
            "{name} does not balance: {c}"
        );
    }
    report
}

/// Runs `exchange dev --no-status --report FILE` plus `args` with `env`, expects
/// success, and returns stdout and the checked report.
fn dev_with_report(args: &[&str], env: &[(&str, &str)]) -> (String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = exchange()
        .args([
            "dev",
            "--no-status",
            "--report",
            report_path.to_str().unwrap(),
        ])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("exchange runs");
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    (stdout, assert_report_balances(&report_path))
}

#[test]
fn dev_runs_the_example_app_prints_the_table_and_a_trace_and_balances() {
    let (stdout, report) = dev_with_report(&["--for", "1s"], &[]);
    assert!(stdout.contains("component   node   accepted"), "{stdout}");
    assert!(
        stdout.contains("accounting: every component's accepted = handled + bounced + dropped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("timeline change?"),
        "a timeline change is explained:\n{stdout}"
    );
    assert!(
        stdout.contains("feed.post request loadgen@n3 -> feed@n2"),
        "the chain starts at the post:\n{stdout}"
    );
    assert_eq!(report["seed"], 1);
}

#[test]
fn dev_routes_through_discovery_as_production_does_or_statically_when_asked() {
    // By default every node runs discovery's membership over the in-memory
    // network: the app only works if handlers and subscriptions are found.
    let (stdout, report) = dev_with_report(&["--for", "1s"], &[]);
    let datagrams = report["network"]["datagrams_sent"].as_u64().unwrap();
    assert!(datagrams > 0, "no discovery traffic: {}", report["network"]);
    assert!(stdout.contains("discovery: "), "{stdout}");
    assert!(
        stdout.contains("timeline change?"),
        "kv.changed reached loadgen through its advertised subscription:\n{stdout}"
    );

    let (stdout, report) = dev_with_report(&["--for", "1s", "--routes", "static"], &[]);
    assert_eq!(report["network"]["datagrams_sent"], 0);
    assert!(!stdout.contains("discovery: "), "{stdout}");
    assert!(stdout.contains("timeline change?"), "{stdout}");
}

#[test]
fn a_cut_partitions_components_discovery_sees_it_and_everything_is_accounted_for() {
    // The store alone on one side for 1.2 s: every node's membership declares
    // it down (a fast probe period keeps the test short), the feed's requests
    // to it expire, and once healed all see it back.
    let env = [
        ("EXCHANGE__DISCOVERY__LISTEN", "127.0.0.1:0"),
        ("EXCHANGE__DISCOVERY__PROBE_PERIOD", "100ms"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = exchange()
        .args(["dev", "--no-status", "--for", "3s", "--cut"])
        .args(["store@300ms..1500ms", "--report"])
        .arg(&report_path)
        .envs(env)
        .output()
        .expect("exchange runs");
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report = assert_report_balances(&report_path);
    for line in [
        "] cut store | the rest",
        "] feed (n2) sees store (n1) down",
        "] loadgen (n3) sees store (n1) down",
        "] healed store | the rest",
        "] feed (n2) sees store (n1) back up",
    ] {
        assert!(stderr.contains(line), "no {line:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("feed (n2) sees loadgen (n3) down")
            && !stderr.contains("loadgen (n3) sees feed (n2) down"),
        "the store's verdicts on the others, spread after the heal, are not acted on:\n{stderr}"
    );
    assert!(
        report["network"]["cut"].as_u64().unwrap() > 0,
        "{}",
        report["network"]
    );
    assert!(
        report["components"]["feed"]["returned"]["expired"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "the feed's requests to the store expired: {}",
        report["components"]["feed"]
    );
}

#[test]
fn dev_models_latency_and_loss_and_still_accounts_for_everything() {
    let args = [
        "--for",
        "1s",
        "--latency",
        "1ms",
        "--jitter",
        "1ms",
        "--loss",
        "0.05",
        "--seed",
        "3",
    ];
    let (_, report) = dev_with_report(&args, &[]);
    assert_eq!(report["seed"], 3);
    assert!(
        report["network"]["lost"].as_u64().unwrap() > 0,
        "5% loss lost nothing: {}",
        report["network"]
    );
    let expired = report["components"]["loadgen"]["returned"]["expired"]
        .as_u64()
        .unwrap_or(0)
        + report["components"]["loadgen"]["returned"]["handler_failed"]
            .as_u64()
            .unwrap_or(0);
    assert!(
        expired > 0,
        "lost requests come back to the load generator as bounces"
    );
}

#[test]
fn ctrl_c_stops_cleanly_with_the_report() {
    let mut child = exchange()
        .args(["dev", "--no-status"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("exchange dev did not stop within 10 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        text(&output.stdout).contains("accounting: every component"),
        "{}",
        text(&output.stdout)
    );
}

fn config_error(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    std::fs::write(&path, toml).unwrap();
    let output = run(&["dev", "--for", "1s", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "bad config exits 2");
    assert!(output.stdout.is_empty(), "nothing ran");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(path.to_str().unwrap()),
        "the error names the file: {stderr}"
    );
    stderr
        .replace(path.to_str().unwrap(), "[FILE]")
        .replace(dir.path().to_str().unwrap(), "[DIR]")
}

#[test]
fn bad_config_names_the_file_the_key_and_what_was_expected() {
    let wrong_type =
        config_error("[limits]\nmailbox_len_max = \"lots\"\n[[component]]\nname = \"store\"\n");
    assert!(
        wrong_type.contains("limits.mailbox_len_max") && wrong_type.contains("expected an integer"),
        "{wrong_type}"
    );
    let unknown_kind = config_error("[[component]]\nname = \"cache\"\n");
    let typo = config_error("[[component]]\nname = \"loadgen\"\n[component.settings]\ntick = 5\n");
    let unknown_key = config_error("sede = 1\n[[component]]\nname = \"store\"\n");
    let empty = config_error("seed = 1\n");
    insta::assert_snapshot!([unknown_kind, typo, unknown_key, empty].join(""));
}

#[test]
fn bad_flags_and_environment_are_clear_errors() {
    let output = run(&["dev", "--loss", "2"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("2 is not a probability between 0 and 1"));
    let output = run(&["dev", "--routes", "everywhere"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("'everywhere'") && stderr.contains("discovery, static"),
        "{stderr}"
    );
    for (cut, says) in [
        (
            "feed:cache@1s..2s",
            r#"no component "cache"; the app has ["store", "feed", "loadgen"]"#,
        ),
        ("feed:store@2s..1s", "the window ends before it starts"),
        ("feed:store", "no window"),
        ("feed:store@1s", "the window has no `..`"),
        ("feed:store@1s..soon", r#""soon" is not a duration"#),
        ("feed:feed@1s..2s", "a component is not cut from itself"),
        (":store@1s..2s", "a component name is missing"),
    ] {
        let output = run(&["dev", "--cut", cut]);
        assert_eq!(output.status.code(), Some(2), "--cut {cut}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(says), "--cut {cut}: {stderr}");
    }
    let output = run(&["dev", "--for", "soon"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("invalid value 'soon' for '--for <DURATION>'"));
    let output = exchange()
        .args(["dev", "--for", "1s"])
        .env("EXCHANGE__SEED", "abc")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("expected an integer for key `seed` in the environment"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn environment_overrides_config() {
    let (_, report) = dev_with_report(&["--for", "300ms"], &[("EXCHANGE__SEED", "77")]);
    assert_eq!(report["seed"], 77);
}

#[test]
fn dev_serves_the_control_plane_for_every_node() {
    use clap::Parser as _;
    use exchange_container::ctl::{Cli, run as ctl};

    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}/control.sock", dir.path().display());
    let report_path = dir.path().join("report.json");
    let child = exchange()
        .args(["dev", "--no-status", "--for", "4s", "--control", &endpoint])
        .args(["--report", report_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exchange dev starts");
    let ask = |args: &[&str]| {
        let mut argv = vec!["exchangectl", "--control", &endpoint, "--timeout", "500ms"];
        argv.extend_from_slice(args);
        ctl(&Cli::parse_from(argv))
    };
    // The nodes find each other first; n1 answers for the cluster.
    let started = Instant::now();
    let members = loop {
        match ask(&["members"]) {
            Ok(members) if members.lines().count() == 5 => break members,
            _ if started.elapsed() > Duration::from_secs(3) => panic!("no members"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(members.contains(&endpoint), "{members}");
    let set = ask(&["capacity", "set", "feed", "--node", "2", "--rate", "100"]).unwrap();
    assert!(set.starts_with("capacity of n2 (feed)"), "{set}");
    assert!(set.contains("100 (live)"), "{set}");
    let status = ask(&["status", "--node", "3"]).unwrap();
    assert!(status.starts_with("node n3 (loadgen)"), "{status}");
    // A store mailbox of 5 fills at once: its congestion is published and logged.
    ask(&["capacity", "set", "store", "--mailbox-len-max", "5"]).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let log = text(&output.stderr);
    assert!(log.contains("capacity changed"), "{log}");
    assert!(log.contains("congested"), "{log}");
    let report = assert_report_balances(&report_path);
    assert!(
        report["components"]["feed"]["bounced"]["throttled"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{}",
        report["components"]["feed"]
    );
}

/// The example app with a store of `keys_max` keys that does `when_full`.
fn small_store(when_full: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    let toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../components/social.toml"),
    )
    .unwrap()
    .replace(
        "when_full = \"evict_oldest\"",
        &format!("keys_max = 300\nwhen_full = {when_full:?}"),
    );
    std::fs::write(&path, toml).unwrap();
    dev_with_report(&["--for", "2s", "--config", path.to_str().unwrap()], &[]).1
}

#[test]
fn a_full_store_refuses_with_a_reason_the_poster_gets_or_evicts_and_runs_on() {
    // Refusing: the store bounces a new key `quota_exceeded`; the feed relays
    // that reason to the load generator, which gets it back.
    let refusing = small_store("refuse");
    let store = &refusing["components"]["store"];
    assert!(
        store["bounced"]["quota_exceeded"].as_u64().unwrap() > 0,
        "{store}"
    );
    let loadgen = &refusing["components"]["loadgen"];
    assert!(
        loadgen["returned"]["quota_exceeded"].as_u64().unwrap() > 0,
        "{loadgen}"
    );
    // Evicting: posts keep being stored; nothing is refused for room.
    let evicting = small_store("evict_oldest");
    let store = &evicting["components"]["store"];
    assert!(store["bounced"].get("quota_exceeded").is_none(), "{store}");
    assert!(store["bounced"].get("handler_failed").is_none(), "{store}");
}
