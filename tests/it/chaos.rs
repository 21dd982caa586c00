//! `firedrill chaos` and `firedrill replay` from the outside: the same seeds print the same
//! table whatever the thread count; planted bugs are found, shrunk to at most three faults and
//! replayed bit for bit; the correct core survives a swarm.

use crate::scenarios::{firedrill, fresh_out_dir, run_to};
use std::path::PathBuf;
use std::process::Output;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh folder under the target directory for one test's output.
fn scratch(name: &str) -> PathBuf {
    let d = fresh_out_dir("chaos", name);
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

/// The swarm scenario, shortened so a test runs in seconds.
const SHORT: [&str; 4] = ["--set", "duration=6m", "--set", "chaos.quiet=4m"];

#[test]
fn the_same_seeds_print_the_same_table_whatever_the_jobs() {
    let out = scratch("chaos-same-table");
    let o = out.display().to_string();
    let run = |jobs: &str| {
        let mut args = vec![
            "chaos",
            "scenarios/chaos.toml",
            "--seeds",
            "1..6",
            "--no-shrink",
            "--jobs",
            jobs,
            "--list",
            "--out",
            &o,
        ];
        args.extend(SHORT);
        firedrill(&args)
    };
    let a = run("1");
    let b = run("2");
    assert_eq!(a.status.code(), b.status.code(), "{}", text(&a.stderr));
    assert!(
        matches!(a.status.code(), Some(0 | 3)),
        "{}",
        text(&a.stderr)
    );
    assert_eq!(text(&a.stdout), text(&b.stdout));
    let stdout = text(&a.stdout);
    assert!(stdout.contains("6 seeds run"), "{stdout}");
    // One digest of the whole swarm, and with `--list` one row per seed, each with its trace.
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix("swarm trace "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("a swarm trace line: {stdout}"));
    assert_eq!(digest.len(), 16, "{digest}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 6 && w[0].parse::<u64>().is_ok())
        .collect();
    assert_eq!(
        rows.iter().map(|w| w[0]).collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5", "6"],
        "{stdout}"
    );
    assert!(rows.iter().all(|w| w[5].len() == 16), "{stdout}");
    // Another set of seeds is another swarm.
    let mut args = vec![
        "chaos",
        "scenarios/chaos.toml",
        "--seeds",
        "2..7",
        "--no-shrink",
    ];
    args.extend(["--out", &o]);
    args.extend(SHORT);
    let c = text(&firedrill(&args).stdout);
    assert!(c.contains("swarm trace "), "{c}");
    assert!(!c.contains(digest), "{c}");
}

#[test]
fn bad_seed_ranges_are_refused_with_exit_2() {
    for r in ["5..1", "x..3", "7"] {
        let o = firedrill(&["chaos", "scenarios/chaos.toml", "--seeds", r]);
        assert_eq!(o.status.code(), Some(2), "{r}");
        assert!(
            text(&o.stderr).contains("expected A..B"),
            "{}",
            text(&o.stderr)
        );
    }
}

/// The failing rows of a chaos table: (seed, broken invariant, faults, shrunk faults, replay).
fn failures(stdout: &str) -> Vec<(u64, String, usize, Option<usize>, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let seed = f.first()?.parse().ok()?;
            Some((
                seed,
                f.get(1)?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok(),
                f[4..].join(" "),
            ))
        })
        .collect()
}

fn chaos(extra: &[&str]) -> Output {
    let mut args = vec!["chaos", "scenarios/chaos.toml"];
    args.extend(SHORT);
    args.extend(extra);
    firedrill(&args)
}

/// One planted bug: the swarm over seeds 1..60 finds it as `invariant`; the first failing seed
/// shrinks to at most three faults; its reproduction replays bit for bit.
fn planted(bug: &str, invariant: &str) {
    let set = format!("bugs.{bug}=true");
    let o = chaos(&["--seeds", "1..60", "--no-shrink", "--set", &set]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let found = failures(&text(&o.stdout));
    let first = found
        .iter()
        .find(|f| f.1 == invariant)
        .unwrap_or_else(|| panic!("{bug}: no {invariant} in {}", text(&o.stdout)));
    let out = scratch(&format!("chaos-{bug}"));
    let seeds = format!("{}..{}", first.0, first.0);
    let o = chaos(&[
        "--seeds",
        &seeds,
        "--set",
        &set,
        "--shrink-budget",
        "60",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let shrunk = failures(&text(&o.stdout));
    assert_eq!(shrunk.len(), 1, "{}", text(&o.stdout));
    let (_, broken, _, min, replay) = &shrunk[0];
    assert_eq!(broken, invariant);
    assert!(
        min.is_some_and(|m| m <= 3),
        "{bug}: shrunk to {min:?} faults"
    );
    let file = replay
        .strip_prefix("firedrill replay ")
        .unwrap_or_else(|| panic!("a replay command: {replay}"));
    let text_file = std::fs::read_to_string(file).expect("the reproduction");
    assert!(text_file.contains(&format!("invariant = \"{invariant}\"")));
    assert!(text_file.contains(&format!("{bug} = true")), "{text_file}");
    let r = firedrill(&["replay", file]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}{}",
        text(&r.stdout),
        text(&r.stderr)
    );
    assert!(
        text(&r.stdout).contains("reproduced: trace"),
        "{}",
        text(&r.stdout)
    );
}

#[test]
fn a_non_atomic_token_record_is_found_as_a_second_instance_set() {
    planted("non_atomic_idempotency", "token_one_instance_set");
}

#[test]
fn a_skipped_delete_invalidation_is_found_as_stale_cache_reads() {
    planted("skip_delete_invalidation", "cache_staleness");
}

#[test]
fn retrying_a_row_state_mismatch_is_found_as_an_illegal_lifecycle_move() {
    planted("retry_non_retryable", "lifecycle");
}

#[test]
fn a_step_without_its_downstream_token_is_found_as_a_second_resource_set() {
    planted("step_without_token", "one_resource_set_per_step");
}

#[test]
fn the_correct_core_survives_a_200_seed_swarm() {
    let o = chaos(&["--seeds", "1..200", "--no-shrink"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("200 seeds run"), "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
}

#[test]
fn a_game_day_reports_its_1_5_10_timeline() {
    let (code, stdout, v) = run_to("gameday", &["scenarios/gameday-cache-loss.toml", "--quiet"]);
    assert!(matches!(code, Some(0 | 1)), "{stdout}");
    let g = &v["gameday"];
    let t = &g["timeline"][0];
    // The L2 is lost at 6 min: its error alert fires 10 s later (its `for`), naming the L2.
    assert_eq!(t["component"], "l2");
    assert_eq!(t["start_s"], 360.0);
    assert_eq!(t["detected_s"], 370.0);
    assert_eq!(t["located_s"], 370.0);
    assert_eq!(t["detected_within_1min"], true);
    assert_eq!(t["located_within_5min"], true);
    assert!(t["recovered_s"].as_f64().is_some(), "{t}");
    // The runbook flushed, then warmed the cache, after the alert plus its delays.
    let actions: Vec<&str> = g["runbook"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["flush_cache", "warm_cache"]);
    assert_eq!(g["runbook"][0]["at_s"], 580.0);
}

/// Runs `tests/repros/<name>.toml`: it exits 0 with every invariant holding, `cache_staleness`
/// among those checked. Returns its summary.
fn repro_holds_staleness(name: &str) -> serde_json::Value {
    let file = format!("tests/repros/{name}.toml");
    let (code, stdout, summary) = run_to(&format!("repro-{name}"), &[&file, "--quiet"]);
    assert_eq!(code, Some(0), "{stdout}");
    let inv = &summary["invariants"];
    assert_eq!(inv["ok"], serde_json::Value::Bool(true), "{inv}");
    assert!(
        inv["checked"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x == "cache_staleness")),
        "{inv}"
    );
    summary
}

/// A chaos finding (tests/repros/db-failover-lost-state-reply.toml): a state write applied
/// just before a database failover lost its reply; the engine's retry found the row already
/// in the target state. Its cached copies must still be invalidated, or the L2 serves the old
/// version for its whole TTL (cache_staleness, exit 3, before the fix).
#[test]
fn a_state_write_whose_reply_a_failover_lost_still_invalidates_the_cache() {
    let summary = repro_holds_staleness("db-failover-lost-state-reply");
    // The failover is the one fault, and it hit while the write's reply was on its way.
    assert_eq!(summary["faults"][0]["kind"], "db_failover");
}

/// A chaos finding about writer-driven invalidation (tests/repros/l2-partition-lost-delete.toml,
/// API nodes writing their rows themselves): a 2.5 s partition between node.0 and the L2 drops
/// the detached L2 delete after node.0's own write, and the other nodes serve the old value
/// from the L2 for minutes (cache_staleness, exit 3). With the database's change feed
/// invalidating (`invalidation = "binlog"`) every delete is acknowledged and the same faults
/// break nothing.
#[test]
fn a_lost_l2_delete_leaves_the_l2_stale_unless_the_binlog_invalidates() {
    let repro = "tests/repros/l2-partition-lost-delete.toml";
    let (code, stdout, summary) = run_to("repro-l2-lost-delete-writer", &[repro, "--quiet"]);
    assert_eq!(code, Some(3), "{stdout}");
    let inv = &summary["invariants"];
    assert_eq!(inv["ok"], serde_json::Value::Bool(false), "{inv}");
    assert!(inv.to_string().contains("cache_staleness"), "{inv}");
    assert_eq!(summary["cache"]["invalidation"]["mode"], "writer");
    assert_eq!(summary["faults"][0]["kind"], "partition");

    let binlog = ["--set", "topology.cache.invalidation=binlog"];
    let mut args = vec![repro, "--quiet"];
    args.extend(binlog);
    let (code, stdout, summary) = run_to("repro-l2-lost-delete-binlog", &args);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(summary["invariants"]["ok"], serde_json::Value::Bool(true));
    let feed = &summary["cache"]["invalidation"];
    assert_eq!(feed["mode"], "binlog", "{feed}");
    let n = |k: &str| feed[k].as_u64().unwrap_or_else(|| panic!("{k} in {feed}"));
    // Every state change the nodes made reached the feed and the L2 acknowledged its delete.
    assert!(n("changes") > 100, "{feed}");
    assert_eq!(n("acked"), n("changes"), "{feed}");
    assert_eq!((n("expired"), n("dropped")), (0, 0), "{feed}");
    // The same run twice: the same trace.
    let (_, _, again) = run_to("repro-l2-lost-delete-binlog-2", &args);
    assert_eq!(again["trace_hash"], summary["trace_hash"]);
    assert!(summary["trace_hash"].is_string());
}

/// A chaos finding (tests/repros/db-failover-lost-node-write.toml, API nodes writing their rows
/// themselves): a delete applied just before a database failover, whose reply the failover
/// replaced with `Unavailable`. The node must invalidate as for a write that may have been
/// applied, or the L2 serves the old version for its TTL (cache_staleness, exit 3, before the
/// fix).
#[test]
fn a_node_write_whose_reply_a_failover_lost_still_invalidates_the_cache() {
    let summary = repro_holds_staleness("db-failover-lost-node-write");
    assert_eq!(summary["faults"][0]["kind"], "db_failover");
    let inv = &summary["cache"]["invalidation"];
    assert_eq!(inv["mode"], "writer");
    // The failover lost the replies of writes in flight: the nodes counted each one they
    // invalidated without knowing it had been applied (the delete above among them).
    let uncertain = inv["uncertain_writes"].as_u64().unwrap();
    assert!((1..=50).contains(&uncertain), "{inv}");
}

/// A chaos finding (tests/repros/replica-scan-past-grace.toml): reconciliation scanning a read
/// replica that lags 15.5 s, with a 10 s grace, judges the records of instances the replica
/// does not show yet as orphans and releases them under running instances
/// (`repairs_spare_live`, exit 3). A grace that covers the lag, scans on the primary, or orphan
/// confirmation break nothing.
#[test]
fn reconciliation_reading_a_replica_past_its_grace_releases_live_resources() {
    let repro = "tests/repros/replica-scan-past-grace.toml";
    let (code, stdout, summary) = run_to("repro-replica-scan", &[repro, "--quiet"]);
    assert_eq!(code, Some(3), "{stdout}");
    let v = &summary["invariants"]["violations"];
    assert_eq!(v[0]["invariant"], "repairs_spare_live", "{v}");
    assert!(
        v[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("references it on the primary")),
        "{v}"
    );
    assert_eq!(summary["faults"][0]["kind"], "replica_lag");
    for (name, set) in [
        (
            "repro-replica-scan-grace",
            "topology.reconciliation.grace=30s",
        ),
        (
            "repro-replica-scan-primary",
            "topology.reconciliation.read=primary",
        ),
        (
            "repro-replica-scan-confirm",
            "topology.reconciliation.confirm_orphans=true",
        ),
    ] {
        let (code, stdout, summary) = run_to(name, &[repro, "--quiet", "--set", set]);
        assert_eq!(code, Some(0), "{set}: {stdout}");
        assert_eq!(summary["invariants"]["ok"], serde_json::Value::Bool(true));
    }
}

/// A chaos finding about two faults together (tests/repros/invalidator-cut-with-clock-skew.toml,
/// binlog invalidation): the invalidator cut off from the L2 for 22.6 s leaves the L2 with an
/// old value the nodes fill their L1s from, and every node's clock then steps back 110.7 s, so
/// the L1s (which time TTLs on the node's clock) serve it past its TTL, later after the row
/// changed than the 65 s bound (`cache_staleness`, exit 3). Each fault alone breaks nothing:
/// the staleness bound holds for either, not for both (a limit of TTLs on a wall clock, kept
/// as it is: see ARCHITECTURE's known gaps).
#[test]
fn an_invalidator_cut_and_a_clock_stepping_back_together_outlast_the_staleness_bound() {
    let repro = "tests/repros/invalidator-cut-with-clock-skew.toml";
    let (code, stdout, summary) = run_to("repro-cut-skew", &[repro, "--quiet"]);
    assert_eq!(code, Some(3), "{stdout}");
    let v = summary["invariants"]["violations"].as_array().unwrap();
    assert!(!v.is_empty());
    for x in v {
        assert_eq!(x["invariant"], "cache_staleness", "{x}");
        assert!(x["detail"].as_str().unwrap().contains("bound 65s"), "{x}");
    }
    // Each fault alone: the file without the other `[[fault]]` table.
    let text = std::fs::read_to_string(repro).unwrap();
    let mut blocks = text.split("\n[[fault]]\n");
    let head = blocks
        .next()
        .unwrap()
        .replace("[expect]\ninvariant = \"cache_staleness\"\n", "[expect]\n");
    let faults: Vec<&str> = blocks.collect();
    assert_eq!(faults.len(), 2);
    let dir = fresh_out_dir("chaos", "cut-skew-alone");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, kind) in [(0, "partition"), (1, "clock_skew")] {
        // The fault's own lines, then (for the first) the tables after the faults.
        let (own, rest) = faults[i].split_once("\n\n").unwrap_or((faults[i], ""));
        let tail = faults[1].split_once("\n\n").map_or("", |(_, r)| r);
        let alone = format!(
            "{}\n[[fault]]\n{own}\n\n{}",
            head.split("[expect]").next().unwrap(),
            if i == 1 { rest } else { tail }
        );
        assert!(own.contains(kind), "{own}");
        let file = dir.join(format!("{kind}.toml"));
        std::fs::write(&file, alone).unwrap();
        let (code, stdout, summary) = run_to(
            &format!("repro-cut-skew-{kind}"),
            &[file.to_str().unwrap(), "--quiet"],
        );
        assert_eq!(code, Some(0), "{kind} alone: {stdout}");
        assert_eq!(summary["invariants"]["ok"], serde_json::Value::Bool(true));
    }
}
