//! Every shipped scenario and mock validates; every scenario smoke-runs twice (short, by
//! `--set`) to byte-identical `summary.json` except its `wall` section; `run` exits 2 with
//! located problems for a bad scenario and 1 when an SLO fails.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `firedrill` binary with `args` in the crate's root (where `scenarios/` is).
pub(crate) fn firedrill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run firedrill")
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

/// `<CARGO_TARGET_TMPDIR>/<group>/<name>`, removed if an earlier run left it: a fresh folder
/// for a test's `--out`.
pub(crate) fn fresh_out_dir(group: &str, name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(group)
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn out_dir(name: &str) -> PathBuf {
    fresh_out_dir("scenarios", name)
}

/// `firedrill run <args> --out <a fresh folder named name>`: the exit code, the printed table
/// and the `summary.json` it wrote.
pub(crate) fn run_to(name: &str, args: &[&str]) -> (Option<i32>, String, Value) {
    let out = out_dir(name);
    let out_s = out.display().to_string();
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", &out_s]);
    let o = firedrill(&all);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap_or_else(|e| {
        panic!(
            "no summary.json ({e}): {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (
        o.status.code(),
        stdout,
        serde_json::from_str(&text).expect("summary.json is JSON"),
    )
}

#[test]
fn every_shipped_scenario_and_mock_validates() {
    let scenarios = files("scenarios");
    assert!(scenarios.len() >= 5, "{scenarios:?}");
    let mocks = files("mocks");
    let mut args = vec!["validate".to_string()];
    args.extend(
        scenarios
            .iter()
            .chain(&mocks)
            .map(|p| p.display().to_string()),
    );
    let o = firedrill(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        scenarios.len() + mocks.len()
    );
}

fn summary_without_wall(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut j: Value = serde_json::from_str(&text).expect("summary.json is JSON");
    assert!(
        j.as_object_mut().unwrap().remove("wall").is_some(),
        "a wall section"
    );
    serde_json::to_string_pretty(&j).unwrap()
}

#[test]
fn every_shipped_scenario_runs_twice_to_the_same_summary() {
    for s in files("scenarios") {
        let name = s.file_stem().unwrap().to_string_lossy().into_owned();
        // A game day's fault starts minutes in (the validator refuses a fault after the
        // traffic's end): run it just past its start.
        let duration = if name.starts_with("gameday") {
            "duration=7m"
        } else {
            "duration=4s"
        };
        let mut runs = Vec::new();
        for k in 0..2 {
            let out = out_dir(&format!("{name}-{k}"));
            let o = firedrill(&[
                "run",
                &s.display().to_string(),
                "--set",
                duration,
                "--set",
                "warmup=0s",
                "--quiet",
                "--out",
                &out.display().to_string(),
            ]);
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert!(
                matches!(o.status.code(), Some(0 | 1)),
                "{name}: exit {:?}\n{stdout}{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                stdout.starts_with("seed: "),
                "{name}: the seed comes first: {stdout}"
            );
            let summary = out.join("summary.json");
            let j: Value =
                serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
            assert_eq!(j["schema"], "firedrill.summary/2");
            let requests = j["requests"]["total"].as_u64().unwrap();
            assert!(requests > 0, "{name}: no requests");
            runs.push(summary_without_wall(&summary));
        }
        assert_eq!(runs[0], runs[1], "{name}: two runs differ outside `wall`");
    }
}

#[test]
fn a_bad_scenario_exits_2_with_every_problem_located() {
    let dir = out_dir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    std::fs::write(
        &f,
        "name = \"bad\"\nduration = \"10s\"\n[topology.api]\nnodez = 3\n[workload]\nrate = -1\n",
    )
    .unwrap();
    let o = firedrill(&["run", &f.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let file = f.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:4:1: topology.api.nodez: unknown key `nodez`; did you mean `nodes`?"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:6:8: workload.rate: -1 is out of range")),
        "{err}"
    );
    let o = firedrill(&["validate", &file]);
    assert_eq!(o.status.code(), Some(2));
    // validate takes the run's --seed and --out too: the seed is shown, the folder checked.
    let good = firedrill(&[
        "validate",
        "scenarios/gc-tuning.toml",
        "--seed",
        "42",
        "--out",
        &dir.join("out").display().to_string(),
    ]);
    assert_eq!(good.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&good.stdout).contains("scenario gc-tuning, seed 42"));
    let blocked = firedrill(&["validate", "scenarios/gc-tuning.toml", "--out", &file]);
    assert_eq!(blocked.status.code(), Some(2), "a file is not a folder");
    let o = firedrill(&["run", "scenarios/steady-day.toml", "--set", "nodes"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_failed_slo_exits_1() {
    let out = out_dir("slo");
    let o = firedrill(&[
        "run",
        "scenarios/gc-tuning.toml",
        "--set",
        "duration=3s",
        "--set",
        "slo.api_p99_ms.DescribeInstances=0.001",
        "--out",
        &out.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("slo DescribeInstances.p99_ms"), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
}

/// The run's table shows each API's share of 4XX answers beside its 5XX share: a throttled
/// call is answered at once, so without it a p50 of 0 ms would go unexplained. One account
/// over the ECS preset's 200 calls a minute per API: most RunInstances are throttled.
#[test]
fn the_table_shows_the_4xx_share_that_throttling_adds() {
    let (code, stdout, v) = run_to(
        "4xx",
        &[
            "scenarios/gc-tuning.toml",
            "--set",
            "duration=30s",
            "--set",
            "topology.throttle.preset=ecs",
            "--set",
            "workload.accounts=1",
        ],
    );
    assert!(matches!(code, Some(0 | 1)), "{stdout}");
    let header: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("api "))
        .expect("the table's header")
        .split_whitespace()
        .collect();
    assert_eq!(header[..4], ["api", "requests", "4xx%", "5xx%"], "{stdout}");
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("RunInstances "))
        .expect("a RunInstances row")
        .split_whitespace()
        .collect();
    let run = &v["apis"]["RunInstances"];
    let requests = run["requests"].as_f64().unwrap();
    let throttled = run["status"]["Throttling"].as_f64().unwrap();
    assert!(throttled > 0.5 * requests, "{run}");
    let share = 100.0 * throttled / requests;
    assert_eq!(row[2], format!("{share:.3}"), "{stdout}");
}

/// The shipped M/M/c scenario through the whole core matches Erlang C, as `firedrill queue`
/// does: mean and p50/p90/p99 of the response time, pooled over three seeds (~3.2·10^6
/// requests), within 2%.
#[test]
fn the_mmc_scenario_matches_erlang_c() {
    use firedrill::analytic::Mmc;
    use firedrill::api::types::Api;
    use firedrill::kernel::RootSeed;
    use firedrill::metrics::LatencyHistogram;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/mmc-validation.toml");
    let s =
        firedrill::scenario::load_scenario(&path, &[], &firedrill::world::shipped_mocks()).unwrap();
    let theory = Mmc::new(8, 7_200.0, 1_000.0).unwrap();
    let mut h = LatencyHistogram::new();
    for seed in 1..=3 {
        let r = s.topology().run(RootSeed::new(seed));
        h.merge(&r.api(Api::DescribeInstanceStatus).latency);
    }
    assert!(h.count() > 3_000_000, "{}", h.count());
    let close = |what: &str, measured: f64, expected: f64| {
        let err = (measured - expected).abs() / expected;
        assert!(
            err < 0.02,
            "{what}: measured {measured:.6} s, Erlang C {expected:.6} s ({:.2}% off)",
            err * 100.0
        );
    };
    close("mean", h.mean_ns().unwrap() / 1e9, theory.mean_response);
    for p in [0.5, 0.9, 0.99] {
        close(
            &format!("p{}", p * 100.0),
            h.quantile_ns(p).unwrap() as f64 / 1e9,
            theory.response_quantile(p),
        );
    }
}

/// A run that hits its safety bound exits 3 with the replay command; its results are written.
#[test]
fn a_safety_bound_exits_3_with_the_replay_command() {
    let out = out_dir("bound");
    let o = firedrill(&[
        "run",
        "scenarios/gc-tuning.toml",
        "--set",
        "max_events=10000",
        "--quiet",
        "--out",
        &out.display().to_string(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains(
            "replay: firedrill run scenarios/gc-tuning.toml --seed 1 --set max_events=10000"
        ),
        "{err}"
    );
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(j["outcome"], "event_limit");
    assert_eq!(j["events"], 10_000);
}

/// Ctrl-C (SIGINT) stops a run cleanly: exit 130 and every result file written, the summary
/// marked partial.
#[test]
fn ctrl_c_writes_partial_results() {
    let out = out_dir("interrupt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "scenarios/double11.toml",
            "--quiet",
            "--out",
            &out.display().to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run is under way (it prints the seed first), then interrupt it.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"seed: ");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(j["partial"], true);
    assert_eq!(j["outcome"], "interrupted");
    assert!(j["simulated_s"].as_f64().unwrap() < 20.0 * 60.0);
    assert!(out.join("timeseries.csv").exists());
    assert!(out.join("histograms/all.hdr").exists());
}

/// `summary.json` answers `db-growth.toml`'s question on its own — with the cleanup job the
/// hot tables stay bounded, without it they only grow — and its workflow, step and dependency
/// counts agree with one another.
#[test]
fn the_summary_reports_table_rows_cleanup_workflow_steps_and_dependencies() {
    let run = |name: &str, extra: &[&str]| -> (Value, String) {
        let mut args = vec!["scenarios/db-growth.toml"];
        args.extend_from_slice(extra);
        let (code, stdout, v) = run_to(name, &args);
        assert_eq!(code, Some(0), "{stdout}");
        (v, stdout)
    };
    let (on, table) = run("summary-cleanup-on", &[]);
    // A period longer than the run: the job never runs.
    let (off, _) = run(
        "summary-cleanup-off",
        &["--set", "topology.cleanup.period=1d"],
    );
    let int = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    let history = |v: &Value| -> Vec<u64> {
        v["db"]["table_rows"]
            .as_array()
            .expect("table_rows is a list")
            .iter()
            .map(|r| int(&r["history"]))
            .collect()
    };
    let (h_on, h_off) = (history(&on), history(&off));
    // Sampled about once a simulated minute over ten minutes, from the first query on.
    assert!((10..=13).contains(&h_on.len()), "{h_on:?}");
    assert!((10..=13).contains(&h_off.len()), "{h_off:?}");
    // Without the job the history table only grows; with it, it ends at under a fifth of that
    // and never reaches half of it.
    assert!(h_off.windows(2).all(|w| w[0] <= w[1]), "{h_off:?}");
    assert_eq!(int(&off["cleanup"]["runs"]), 0, "{}", off["cleanup"]);
    assert_eq!(int(&off["cleanup"]["rows_archived"]["history"]), 0);
    let (last_on, last_off) = (*h_on.last().unwrap(), *h_off.last().unwrap());
    assert!(last_on * 5 < last_off, "{h_on:?} vs {h_off:?}");
    assert!(
        h_on.iter().max().unwrap() * 2 < last_off,
        "{h_on:?} vs {h_off:?}"
    );
    let archived = int(&on["cleanup"]["rows_archived"]["history"]);
    assert!(archived > last_on, "{}", on["cleanup"]);
    // Every transition wrote one workflow row and one history event (the engine counts those
    // the database acknowledged, and every one was): each is still in its table at the end or
    // was archived.
    for v in [&on, &off] {
        let written = int(&v["workflow_engine"]["history_events"]);
        assert_eq!(
            int(&v["db"]["classes"]["workflow_step_write"]["served"]),
            written
        );
        for t in ["history", "workflows"] {
            let end = int(&v["db"]["table_rows_end"][t]);
            assert_eq!(end + int(&v["cleanup"]["rows_archived"][t]), written, "{t}");
        }
    }
    // The run's table says the same in short.
    let line = |prefix: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let create = &on["workflows"]["create_instances"];
    let w = line("workflow create_instances ");
    assert_eq!(w[3], create["admitted"].to_string(), "{w:?}");
    assert_eq!(w[5], create["completed"].to_string(), "{w:?}");
    assert_eq!(w[7], create["failed"].to_string(), "{w:?}");
    // `most failed at <step>: <code> ×n` names the step and code with the most failures.
    let (mut most, mut most_n) = (String::new(), 0);
    for st in create["steps"].as_array().unwrap() {
        for (code, n) in st["failure_codes"].as_object().unwrap() {
            if int(n) > most_n {
                (most, most_n) = (format!("{}: {code}", st["name"].as_str().unwrap()), int(n));
            }
        }
    }
    assert!(most_n > 0, "{create}");
    assert_eq!(w[14..].join(" "), format!("{most} ×{most_n}"), "{w:?}");
    let c = line("cleanup ").join(" ");
    let want = format!(
        "cleanup {} runs, archived: workflows {}, history {}, idempotency 0; rows at the end: workflows {}, history {}, idempotency 0",
        on["cleanup"]["runs"],
        on["cleanup"]["rows_archived"]["workflows"],
        on["cleanup"]["rows_archived"]["history"],
        on["db"]["table_rows_end"]["workflows"],
        on["db"]["table_rows_end"]["history"],
    );
    assert_eq!(c, want);
    // With demand uniform over the four instance types the inventory's 2,000 GPU hosts sell
    // out within the first simulated minute.
    let (uniform, _) = run(
        "summary-uniform-types",
        &[
            "--set",
            "duration=2m",
            "--set",
            "workload.instance_type_weights=[1,1,1,1]",
        ],
    );
    for v in [&on, &off, &uniform] {
        // The steps' failures by error code add up to the workflows that failed at a step.
        let kinds = v["workflows"].as_object().expect("workflows by kind");
        let coded: u64 = kinds
            .values()
            .flat_map(|k| k["steps"].as_array().unwrap())
            .flat_map(|st| st["failure_codes"].as_object().unwrap().values())
            .map(int)
            .sum();
        assert_eq!(coded, int(&v["workflow_engine"]["failures"]["step"]));
    }
    // allocate_host fails on NoStock (not retried): once per NoStock answer of the inventory,
    // but for answers that came after their attempt had timed out.
    let alloc = &uniform["workflows"]["create_instances"]["steps"][0];
    assert_eq!(alloc["name"], "allocate_host");
    let no_stock = int(&alloc["failure_codes"]["OperationDenied.NoStock"]);
    let answered = int(&uniform["dependencies"]["inventory"]["errors"]["OperationDenied.NoStock"]);
    assert!(
        no_stock > 1000 && no_stock <= answered,
        "{no_stock} vs {answered}"
    );
    assert!(no_stock * 100 >= answered * 99, "{no_stock} vs {answered}");
}

/// With `batch = false` a RunInstances of 100 runs 100 sub-workflows: the run table says so
/// beside the per-kind counts (which include them), as `summary.json` does; and the engine's
/// bound on live workflows then refuses commands. The node waits for the engine's admission
/// before it answers, so a refused RunInstances is answered 503 `ServiceUnavailable` (not OK
/// with ids of instances that will never run), and the engine still fails the refused rows
/// rather than leave them Pending.
#[test]
fn the_run_table_counts_sub_workflows_apart() {
    let (code, stdout, v) = run_to(
        "sub-workflows",
        &[
            "scenarios/batch-burst.toml",
            "--set",
            "topology.workflows.batch=false",
        ],
    );
    // The refusals are 5xx answers now: the scenario's 1% 5xx SLO fails (exit 1).
    assert_eq!(code, Some(1), "{stdout}");
    let create = &v["workflows"]["create_instances"];
    let admitted = create["admitted"].as_u64().unwrap();
    let children = v["workflow_engine"]["children"].as_u64().unwrap();
    // Amount = 100: a hundred sub-workflows per command admitted.
    assert_eq!(children, 100 * admitted, "{create}");
    let e = &v["workflow_engine"];
    let rejected = e["rejected"].as_u64().unwrap();
    assert!(rejected > 0, "{e}");
    assert_eq!(
        e["rejected_by_kind"]["create_instances"].as_u64(),
        Some(rejected),
        "{e}"
    );
    // Every refusal reached its request, which answered it (no acknowledgement was lost or
    // late: no faults here).
    assert_eq!(e["refusals_answered"].as_u64(), Some(rejected), "{e}");
    assert_eq!(e["ack_timeouts"].as_u64(), Some(0), "{e}");
    assert_eq!(e["stale_acks"].as_u64(), Some(0), "{e}");
    // The client side: each RunInstances sent exactly one command (admitted or refused), so
    // requests = admitted + rejected; the refused ones were answered ServiceUnavailable and
    // only the admitted ones OK — no instance the client was told OK about is a refused one
    // (before the acknowledgement all 224 were answered OK).
    let run = &v["apis"]["RunInstances"];
    let requests = run["requests"].as_u64().unwrap();
    assert_eq!(requests, admitted + rejected, "{run}");
    assert_eq!(
        run["status"]["ServiceUnavailable"].as_u64(),
        Some(rejected),
        "{run}"
    );
    assert_eq!(run["status"]["OK"].as_u64(), Some(admitted), "{run}");
    assert_eq!(run["status"].as_object().unwrap().len(), 2, "{run}");
    // The refused creations' rows (inserted Pending before the command went out) are moved to
    // their failed state (Deleted), not left Pending with no workflow to move them.
    assert_eq!(
        e["refused_rows_failed"].as_u64(),
        Some(100 * rejected),
        "{e}"
    );
    assert_eq!(e["refused_rows_left"].as_u64(), Some(0), "{e}");
    assert_eq!(
        v["invariants"]["phantom_rows"].as_u64(),
        Some(0),
        "{}",
        v["invariants"]
    );
    assert_eq!(v["invariants"]["ok"], true, "{}", v["invariants"]);
    let want = format!(
        "workflow engine: {children} sub-workflows (in completed and failed above), {rejected} commands rejected at admission, {rejected} answered with the refusal ({} of their instances failed, 0 left Pending)",
        100 * rejected
    );
    assert!(stdout.lines().any(|l| l == want), "{want}\n{stdout}");
    // Without sub-workflows or rejections there is no such line.
    let (_, stdout, _) = run_to(
        "no-sub-workflows",
        &["scenarios/batch-burst.toml", "--set", "duration=30s"],
    );
    assert!(stdout.contains("workflow create_instances"), "{stdout}");
    assert!(!stdout.contains("workflow engine:"), "{stdout}");
}
