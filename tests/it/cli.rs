//! `firedrill queue` from the outside: its JSON contract, its table, and exit code 2 with a clear
//! message for bad arguments.

use crate::scenarios::firedrill;
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const BASE: [&str; 9] = [
    "queue",
    "--arrival-rate",
    "7.2",
    "--servers",
    "8",
    "--customers",
    "20000",
    "--seed",
    "1",
];

fn with(extra: &[&str]) -> Vec<String> {
    BASE.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn run(extra: &[&str]) -> Output {
    let args = with(extra);
    firedrill(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn json_has_the_contract_fields() {
    let o = run(&["--service", "exp:1", "--capacity", "16", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "customers",
        "rejected",
        "blocking_probability",
        "mean_response_s",
        "p50_response_s",
        "p90_response_s",
        "p99_response_s",
        "max_response_s",
        "utilization",
        "trace_hash",
        "wall_s",
        "customers_per_s",
        "analytic",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["customers"], 20_000);
    assert_eq!(v["model"], "M/M/8/16");
    let a = &v["analytic"];
    for key in [
        "mean_response_s",
        "p50_response_s",
        "p90_response_s",
        "p99_response_s",
        "blocking_probability",
    ] {
        assert!(a[key].is_f64(), "analytic.{key}: {a}");
    }
    // M/M/8/16 at λ = 7.2: blocking = 0.041469662 exactly (queueing_reference.py mmck_c8_K16_rho090).
    assert!(
        (a["blocking_probability"].as_f64().unwrap() - 0.041_469_662).abs() < 1e-9,
        "{a}"
    );
    assert_eq!(v["trace_hash"].as_str().unwrap().len(), 16);
    assert!(v["p50_response_s"].as_f64().unwrap() <= v["p99_response_s"].as_f64().unwrap());
}

#[test]
fn analytic_is_null_with_a_reason_where_no_formula_exists() {
    let o = run(&["--service", "lognormal:1:4", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["analytic"].is_null());
    assert!(
        v["analytic_note"].as_str().unwrap().contains("M/G/8"),
        "{v}"
    );
    // M/G/1 gets the Pollaczek–Khinchine mean, and no percentiles.
    let args = [
        "queue",
        "--arrival-rate",
        "0.5",
        "--servers",
        "1",
        "--customers",
        "1000",
        "--seed",
        "1",
        "--service",
        "lognormal:1:4",
        "--json",
    ];
    let v: serde_json::Value = serde_json::from_slice(&firedrill(&args).stdout).unwrap();
    assert_eq!(v["analytic"]["model"], "M/G/1");
    // P-K: W = 1 + 0.5·(1+4)/(2·0.5) = 3.5.
    assert_eq!(v["analytic"]["mean_response_s"].as_f64(), Some(3.5));
    assert!(v["analytic"]["p99_response_s"].is_null());
}

#[test]
fn table_prints_the_seed_first_and_both_columns() {
    let o = run(&["--service", "det:1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.lines().next(), Some("seed 1"));
    assert!(
        text.contains("simulated") && text.contains("analytic") && text.contains("trace "),
        "{text}"
    );
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let cases: [(&[&str], &str); 6] = [
        (&["--service", "exp:0"], "greater than 0"),
        (&["--service", "gamma:1"], "unknown distribution `gamma`"),
        (
            &["--service", "exp:1", "--capacity", "4"],
            "capacity 4 is below the 8 servers",
        ),
        (
            &["--service", "exp:1", "--warmup-fraction", "1.5"],
            "warmup fraction",
        ),
        (&["--service", "lognormal:1"], "expected 2 value(s)"),
        (
            &["--service", "exp:1", "--arrival-rate", "-3"],
            "--arrival-rate",
        ),
    ];
    for (extra, needle) in cases {
        let o = run(extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{extra:?}: {}", stderr(&o));
    }
    let o = firedrill(&[
        "queue",
        "--arrival-rate",
        "1",
        "--service",
        "exp:1",
        "--servers",
        "1",
        "--customers",
        "10",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--seed"), "{}", stderr(&o));
}
