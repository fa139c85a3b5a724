//! `exchange sim` as a user runs it: one seed with its summary and the command
//! that replays it, a range, the JSON report, bad flags; and `exchange dev
//! --record` then `exchange sim --replay`: the same run again, input by input,
//! and a clear verdict when it does not match.

mod cli;

use cli::run;
use cli::text;

fn light_config() -> String {
    format!("{}/../ops/sim/social.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn one_seed_prints_a_summary_and_a_range_reports_every_run() {
    let config = light_config();
    let out = run(&["sim", "--config", &config, "--seed", "4", "--for", "2s"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("seed 4: passed"), "{stdout}");
    assert!(
        stdout.contains("4 nodes, faults all") && stdout.contains("trace "),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("runs.json");
    let out = run(&[
        "sim",
        "--config",
        &config,
        "--seeds",
        "1..3",
        "--for",
        "1s",
        "--nodes",
        "4",
        "--faults",
        "crash,partition",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("3 seeds (1..3): 3 passed, 0 failed"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for (seed, run) in (1..=3).zip(runs) {
        assert_eq!(run["seed"], seed);
        assert_eq!(run["passed"], true);
        assert_eq!(run["trace_hash"].as_str().unwrap().len(), 16);
        assert!(run["handled"].as_u64().unwrap() > 0);
        assert!(
            run["replay"].as_str().unwrap().starts_with(&format!(
                "exchange sim --seed {seed} --nodes 4 --for 1s --faults partition,crash"
            )),
            "{run}"
        );
    }
}

#[test]
fn bad_flags_say_what_is_wrong() {
    let out = run(&["sim", "--faults", "loss,meteor"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown fault \"meteor\""), "{stderr}");
    let out = run(&["sim", "--seeds", "9..2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is empty"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["sim", "--seed", "1", "--seeds", "1..2"]);
    assert_eq!(out.status.code(), Some(2), "--seed and --seeds conflict");
}

#[test]
fn a_recorded_dev_run_replays_exactly_and_a_different_app_is_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("run.xrec");
    let recording = recording.to_str().unwrap();
    let out = run(&[
        "dev",
        "--for",
        "1s",
        "--no-status",
        "--loss",
        "0.02",
        "--jitter",
        "1ms",
        "--record",
        recording,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = run(&["sim", "--replay", recording]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("every node emitted what it emitted when recorded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("loadgen") && stdout.contains("store"),
        "{stdout}"
    );

    // With static routes (every node told every other's names at start) too.
    let fixed = dir.path().join("static.xrec");
    let fixed = fixed.to_str().unwrap();
    let out = run(&[
        "dev",
        "--for",
        "300ms",
        "--no-status",
        "--routes",
        "static",
        "--record",
        fixed,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["sim", "--replay", fixed]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("every node emitted what it emitted when recorded"),
        "{stdout}{}",
        text(&out.stderr)
    );

    let whole = std::fs::read(recording).unwrap();
    replays_refuse_what_does_not_fit(dir.path(), recording);
    recordings_that_are_not_whole_are_told_apart(dir.path(), &whole);
}

/// A recording replayed with another app: other settings diverge (exit 1),
/// other components are refused before anything is fed (exit 2).
fn replays_refuse_what_does_not_fit(dir: &std::path::Path, recording: &str) {
    let other = dir.join("other.toml");
    let example = std::fs::read_to_string(format!(
        "{}/../components/social.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    std::fs::write(
        &other,
        example.replace("timeline_len_max = 50", "timeline_len_max = 1"),
    )
    .unwrap();
    let out = run(&[
        "sim",
        "--replay",
        recording,
        "--config",
        other.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("replay diverged at record"),
        "{}",
        text(&out.stdout)
    );

    // Other components: refused before replaying anything.
    let echo = dir.join("echo.toml");
    std::fs::write(&echo, "[[component]]\nname = \"echo\"\n").unwrap();
    let out = run(&[
        "sim",
        "--replay",
        recording,
        "--config",
        echo.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("recorded with the components [\"store\", \"feed\", \"loadgen\"]"),
        "{stderr}"
    );
}

/// Not a recording at all (exit 2), or one whose last record was cut short
/// (the whole ones replay).
fn recordings_that_are_not_whole_are_told_apart(dir: &std::path::Path, whole: &[u8]) {
    let junk = dir.join("junk");
    std::fs::write(&junk, b"\x03\xff\xff\xff").unwrap();
    let out = run(&["sim", "--replay", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("record 1 at byte 0 is not an exchange.v1.record.Record"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&junk, b"\xff\xff\xff\xff\xff").unwrap();
    let out = run(&["sim", "--replay", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not start with a `begin` record"),
        "{}",
        text(&out.stderr)
    );

    // A recording cut short (its process killed mid-write) replays what is whole.
    std::fs::write(&junk, &whole[..whole.len() - 3]).unwrap();
    let out = run(&["sim", "--replay", junk.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ends with a record cut short"),
        "{}",
        text(&out.stderr)
    );
}
