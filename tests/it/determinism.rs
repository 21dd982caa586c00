//! A run is a pure function of (arguments, seed): same seed → same trace hash and byte-identical
//! results, in one process and across processes; another seed → another run.

use firedrill::kernel::{Dist, Outcome, RootSeed, check_determinism};
use firedrill::station::{StationConfig, run_station};
use std::process::Command;

fn mmc_config(customers: u64) -> StationConfig {
    StationConfig::new(
        Dist::exponential(1.0 / 7.2).unwrap(),
        Dist::exponential(1.0).unwrap(),
        8,
        Some(40),
        customers,
        0.01,
    )
    .unwrap()
}

#[test]
fn same_seed_same_trace_and_results_in_process() {
    let cfg = mmc_config(200_000);
    let a = run_station(&cfg, RootSeed::new(42));
    let b = run_station(&cfg, RootSeed::new(42));
    assert_eq!(a.report, b.report);
    assert_eq!(a.counts, b.counts);
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        assert_eq!(a.response.quantile_ns(q), b.response.quantile_ns(q));
    }
    assert_eq!(a.response.mean_ns(), b.response.mean_ns());
}

#[test]
fn different_seeds_give_different_runs() {
    let cfg = mmc_config(50_000);
    let hashes: Vec<_> = (0..8)
        .map(|s| run_station(&cfg, RootSeed::new(s)).report.trace_hash)
        .collect();
    for i in 0..hashes.len() {
        for j in i + 1..hashes.len() {
            assert_ne!(hashes[i], hashes[j], "seeds {i} and {j}");
        }
    }
}

#[test]
fn lockstep_check_passes_for_the_station() {
    let cfg = mmc_config(50_000);
    let (outcome, hash) =
        check_determinism(cfg.build(RootSeed::new(5)).0, cfg.build(RootSeed::new(5)).0).unwrap();
    assert_eq!(outcome, Outcome::Drained);
    assert_eq!(hash, run_station(&cfg, RootSeed::new(5)).report.trace_hash);
}

/// Wall-clock fields: the only ones allowed to differ between two runs.
const WALL_FIELDS: [&str; 3] = ["wall_s", "customers_per_s", "events_per_s"];

fn queue_json(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .arg("queue")
        .args(args)
        .arg("--json")
        .output()
        .expect("run firedrill");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Drop the wall-clock lines; every other byte must match.
    text.lines()
        .filter(|l| {
            !WALL_FIELDS
                .iter()
                .any(|f| l.trim_start().starts_with(&format!("\"{f}\"")))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const ARGS: [&str; 10] = [
    "--arrival-rate",
    "7.2",
    "--service",
    "exp:1",
    "--servers",
    "8",
    "--customers",
    "100000",
    "--seed",
    "3",
];

#[test]
fn same_seed_identical_json_across_processes() {
    let a = queue_json(&ARGS);
    let b = queue_json(&ARGS);
    assert_eq!(a, b);
    let mut other = ARGS;
    other[9] = "4";
    assert_ne!(queue_json(&other), a);
}

/// Golden: pins the whole pipeline (seed → substreams → ChaCha8 → libm samplers → event
/// order → histogram) for one small run. It must hold on every machine and platform; if it
/// changes, every recorded baseline has changed meaning.
#[test]
fn golden_trace_hash_and_results_for_seed_zero() {
    let text = queue_json(&[
        "--arrival-rate",
        "7.2",
        "--service",
        "exp:1",
        "--servers",
        "8",
        "--customers",
        "10000",
        "--seed",
        "0",
    ]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["trace_hash"], GOLDEN_TRACE_HASH, "{text}");
    assert_eq!(v["mean_response_s"].to_string(), GOLDEN_MEAN_RESPONSE_S);
    assert_eq!(v["events"], 20_000, "two events per customer");
}
const GOLDEN_TRACE_HASH: &str = "683628c78574802c";
const GOLDEN_MEAN_RESPONSE_S: &str = "1.795774218";

/// Golden: the trace hash of a small control-plane run (gateway, 2 G1 nodes, database,
/// shipped mocks, Describe-heavy traffic with tokens). Pins every component's behaviour and every
/// sampler: if it changes, recorded results of the core changed meaning.
#[test]
fn golden_trace_hash_of_a_small_control_plane() {
    use firedrill::api::lb::LbPolicy;
    use firedrill::api::node::NodeConfigBuilder;
    use firedrill::api::throttle::Throttle;
    use firedrill::db::DbConfig;
    use firedrill::gc::{GcProfile, HeapConfig};
    use firedrill::kernel::{SimDuration, SimTime};
    use firedrill::traffic::{ApiMix, OpenLoopConfig, RateProfile, TokenPolicy, TypeMix};
    use firedrill::world::{Topology, shipped_mocks};
    let traffic = OpenLoopConfig {
        inter_arrival: Dist::exponential(1.0 / 200.0).unwrap(),
        profile: RateProfile::constant(),
        mix: ApiMix::describe_heavy(),
        accounts: 50,
        account_skew: Some(Dist::zipf(50, 1.1).unwrap()),
        amount: Dist::uniform(1.0, 10.0).unwrap(),
        instance_types: TypeMix::uniform(2).expect("valid"),
        timeout: SimDuration::from_secs(5),
        until: SimTime::ZERO,
        describe_list_share: 0.2,
        min_amount_fraction: 0.5,
        tokens: TokenPolicy {
            share: 0.5,
            duplicate_fraction: 0.1,
            duplicate_delay: SimDuration::from_ms(30),
        },
    };
    let topo = Topology::new(
        2,
        NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::G1))
            .build()
            .unwrap(),
        LbPolicy::PowerOfTwoChoices,
        Throttle::ecs_defaults(50),
        DbConfig::assumed_defaults(),
        shipped_mocks(),
        traffic,
        SimDuration::from_secs(10),
    )
    .unwrap();
    let r = topo.run(RootSeed::new(0));
    assert_eq!(
        r.trace_hash().to_string(),
        GOLDEN_CORE_TRACE_HASH,
        "events {}",
        r.report.events
    );
}
const GOLDEN_CORE_TRACE_HASH: &str = "0fc73fa83aa8507a";
