use super::*;
use crate::kernel::SimTime;
use crate::reconcile::ReconConfig;
use crate::world::shipped_mocks;

const GOOD: &str = r#"name = "t"
description = "a test"
duration = "10s"
scale = 10

[topology.api]
nodes = 40

[workload]
rate = 5000
"#;

fn parse(text: &str, set: &[&str]) -> Result<Scenario, ScenarioError> {
    let o: Vec<Override> = set.iter().map(|s| Override::parse(s).unwrap()).collect();
    parse_scenario("s.toml", text, &o, &shipped_mocks())
}

fn lines(e: &ScenarioError) -> Vec<String> {
    e.to_string().lines().map(str::to_string).collect()
}

#[test]
fn a_good_scenario_reads_with_defaults_and_scale() {
    let s = parse(GOOD, &[]).unwrap();
    assert_eq!(s.name(), "t");
    assert_eq!(s.seed(), 1);
    assert_eq!(s.duration(), SimDuration::from_secs(10));
    assert_eq!(s.warmup(), SimDuration::ZERO);
    assert_eq!(s.scale(), 10.0);
    // 40 nodes at 1:10.
    assert_eq!(s.topology().nodes(), 4);
    // 5,000/s at 1:10: a mean gap of 2 ms.
    assert_eq!(
        s.topology().traffic().inter_arrival.mean(),
        Some(1.0 / 500.0)
    );
}

#[test]
fn reconciliation_period_and_grace_override_the_mode() {
    let chaos = include_str!("../../scenarios/chaos.toml");
    let s = parse_scenario("chaos.toml", chaos, &[], &shipped_mocks()).unwrap();
    let r = s.topology().reconciliation().unwrap();
    assert_eq!(
        (r.period(), r.grace()),
        (SimDuration::from_secs(300), SimDuration::from_secs(120))
    );
    let o = [Override::parse("topology.reconciliation.mode=daily").unwrap()];
    let s = parse_scenario("chaos.toml", chaos, &o, &shipped_mocks()).unwrap();
    let r = s.topology().reconciliation().unwrap();
    // The overrides stay; the rest is the daily mode's.
    assert_eq!(r.period(), SimDuration::from_secs(300));
    assert_eq!(r.page_size(), ReconConfig::daily().page_size());
    let without = chaos.replace("period = \"5m\"\ngrace = \"2m\"\n", "");
    let s = parse_scenario("chaos.toml", &without, &o, &shipped_mocks()).unwrap();
    assert_eq!(s.topology().reconciliation(), Some(&ReconConfig::daily()));
    let o = [Override::parse("topology.reconciliation.period=0s").unwrap()];
    let e = parse_scenario("chaos.toml", chaos, &o, &shipped_mocks()).unwrap_err();
    assert!(
        e.to_string()
            .contains("topology.reconciliation.period: 0s is out of range"),
        "{e}"
    );
    // Scans read the primary unless told to read a replica; anything else is refused.
    assert!(!r.replica_reads());
    let o = [Override::parse("topology.reconciliation.read=replica").unwrap()];
    let s = parse_scenario("chaos.toml", chaos, &o, &shipped_mocks()).unwrap();
    assert!(s.topology().reconciliation().unwrap().replica_reads());
    assert!(!s.topology().reconciliation().unwrap().confirms_orphans());
    let o = [Override::parse("topology.reconciliation.confirm_orphans=true").unwrap()];
    let s = parse_scenario("chaos.toml", chaos, &o, &shipped_mocks()).unwrap();
    assert!(s.topology().reconciliation().unwrap().confirms_orphans());
    let o = [Override::parse("topology.reconciliation.read=replicas").unwrap()];
    let e = parse_scenario("chaos.toml", chaos, &o, &shipped_mocks()).unwrap_err();
    assert!(
        e.to_string().contains(
            "topology.reconciliation.read: unknown value `replicas`; did you mean `replica`?"
        ),
        "{e}"
    );
}

#[test]
fn the_l2_timeout_defaults_to_200ms_and_is_read_in_range() {
    let s = parse(GOOD, &[]).unwrap();
    assert_eq!(
        s.topology().node_config().l2_timeout(),
        SimDuration::from_ms(200)
    );
    let s = parse(GOOD, &["topology.api.l2_timeout=1s"]).unwrap();
    assert_eq!(
        s.topology().node_config().l2_timeout(),
        SimDuration::from_secs(1)
    );
    let e = parse(GOOD, &["topology.api.l2_timeout=0s"]).unwrap_err();
    assert!(
        e.to_string()
            .contains("topology.api.l2_timeout: 0s is out of range"),
        "{e}"
    );
}

#[test]
fn the_db_query_timeout_defaults_to_5s_and_is_read_in_range() {
    let s = parse(GOOD, &[]).unwrap();
    assert_eq!(
        s.topology().node_config().db_query_timeout(),
        SimDuration::from_secs(5)
    );
    let s = parse(GOOD, &["topology.api.db_query_timeout=750ms"]).unwrap();
    assert_eq!(
        s.topology().node_config().db_query_timeout(),
        SimDuration::from_ms(750)
    );
    let e = parse(GOOD, &["topology.api.db_query_timeout=0s"]).unwrap_err();
    assert!(
        e.to_string()
            .contains("topology.api.db_query_timeout: 0s is out of range"),
        "{e}"
    );
}

#[test]
fn every_problem_is_reported_at_once_with_place_path_and_hint() {
    let text = r#"name = "Bad Name"
duration = "10s"
scael = 2

[topology.api]
nodes = 0
gc = "g2"
dependencies = ["inventory"]

[topology]
dependencies = ["inventry"]

[workload]
mix = { DescribeInstance = 1.0 }
"#;
    let e = parse(text, &[]).unwrap_err();
    let l = lines(&e);
    let expect = [
        "s.toml:1:8: name: `Bad Name` is not a plain name; use lowercase letters, digits, `_` and `-` (it names the results folder)",
        "s.toml:3:1: scael: unknown key `scael`; did you mean `scale`?",
        "s.toml:6:9: topology.api.nodes: 0 is out of range; allowed range: 1 to 1000000",
        "s.toml:7:6: topology.api.gc: unknown value `g2`; did you mean `g1`?",
        "s.toml:8:1: topology.api.dependencies: unknown key `dependencies`",
    ];
    for x in expect {
        assert!(
            l.iter().any(|y| y.starts_with(x)),
            "missing {x:?} in\n{}",
            l.join("\n")
        );
    }
    assert!(
        l.iter().any(|y| y.contains("topology.dependencies[0]: no dependency mock named `inventry`; did you mean `inventory`?")),
        "{}",
        l.join("\n")
    );
    assert!(
        l.iter().any(|y| y.contains("workload.mix.DescribeInstance: unknown API `DescribeInstance`; did you mean `DescribeInstances`?")),
        "{}",
        l.join("\n")
    );
    assert!(
        l.iter()
            .any(|y| y
                .starts_with("s.toml:13:1: workload.rate: missing key `rate`; add rate = 2000")),
        "{}",
        l.join("\n")
    );
    // Sorted by place.
    let mut sorted = e.problems().to_vec();
    sorted.sort();
    assert_eq!(sorted, e.problems());
}

#[test]
fn type_errors_name_the_key() {
    let e = parse(&GOOD.replace("nodes = 40", "nodes = \"forty\""), &[]).unwrap_err();
    let l = lines(&e);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        l[0],
        "s.toml:7:9: topology.api.nodes: invalid type: string \"forty\", expected an integer"
    );
}

#[test]
fn set_overrides_any_key_and_bare_words_are_strings() {
    let s = parse(
        GOOD,
        &[
            "duration=300s",
            "topology.api.nodes=120",
            "topology.api.lb=round_robin",
            "seed=7",
        ],
    )
    .unwrap();
    assert_eq!(s.duration(), SimDuration::from_secs(300));
    assert_eq!(s.topology().nodes(), 12);
    assert_eq!(s.seed(), 7);
    // A new table by override.
    let s = parse(GOOD, &["topology.db.shards=4"]).unwrap();
    assert_eq!(s.topology().db().shards(), 4);
    // Overrides change the hash; the same overrides give the same hash.
    let a = parse(GOOD, &["duration=20s"]).unwrap().hash();
    assert_eq!(a, parse(GOOD, &["duration=20s"]).unwrap().hash());
    assert_ne!(a, parse(GOOD, &[]).unwrap().hash());
}

#[test]
fn a_bad_override_is_reported_against_the_argument() {
    let e = parse(GOOD, &["topology.api.nodes=0", "workload.rat=3"]).unwrap_err();
    let l = lines(&e);
    assert!(
        l.iter().any(|y| y.starts_with(
            "--set topology.api.nodes=0: topology.api.nodes: 0 is out of range; allowed range: 1 to 1000000"
        )),
        "{l:?}"
    );
    assert!(
        l.iter().any(|y| y.starts_with(
            "--set workload.rat=3: workload.rat: unknown key `rat`; did you mean `rate`?"
        )),
        "{l:?}"
    );
    assert!(Override::parse("no-equals").is_err());
    assert!(Override::parse("a..b=1").is_err());
}

#[test]
fn a_scale_that_leaves_no_node_is_an_error() {
    let e = parse(GOOD, &["scale=100"]).unwrap_err();
    assert!(
        e.to_string()
            .contains("topology.api.nodes: 40 at scale 1:100 is less than 1"),
        "{e}"
    );
}

#[test]
fn faults_read_into_the_plan_with_their_parameters() {
    let text = format!(
        "{GOOD}\n[[fault]]\nkind = \"dep_latency\"\ntarget = \"dep.block_storage.create_disk\"\nstart = \"2s\"\nduration = \"20s\"\nramp = \"10s\"\nmultiply = 5\n\n[topology.cache]\n\n[[fault]]\nkind = \"l2_flush\"\ntarget = \"l2\"\nstart = \"5s\"\n"
    );
    let s = parse(&text, &[]).unwrap();
    let plan = s.topology().faults();
    assert_eq!(plan.len(), 2);
    let f = &plan.faults()[0];
    assert_eq!(
        f.to_string(),
        "dep_latency on dep.block_storage.create_disk from 2s for 20s (ramp 10s)"
    );
    assert_eq!(
        *f.kind(),
        crate::faults::FaultKind::DepLatency {
            add: None,
            multiply: 5.0
        }
    );
    assert_eq!(plan.faults()[1].duration(), SimDuration::ZERO);
}

#[test]
fn fault_problems_name_the_key_and_say_what_the_kind_takes() {
    let bad = |body: &str| {
        parse(&format!("{GOOD}\n[[fault]]\n{body}\n"), &[])
            .unwrap_err()
            .to_string()
    };
    let e = bad("kind = \"db_failovr\"\ntarget = \"db\"\nstart = \"1s\"\nduration = \"1s\"");
    assert!(
        e.contains("fault[0].kind: fault kind `db_failovr` is not in the catalog"),
        "{e}"
    );
    assert!(e.contains("db_failover"), "did you mean: {e}");
    let e = bad(
        "kind = \"db_failover\"\ntarget = \"db\"\nstart = \"1s\"\nduration = \"1s\"\nprobability = 0.5",
    );
    assert!(
        e.contains("fault[0].probability: a db_failover fault takes no `probability`"),
        "{e}"
    );
    let e = bad(
        "kind = \"dep_errors\"\ntarget = \"dep.vpc\"\nstart = \"1s\"\nduration = \"1s\"\ncode = \"InternalError\"",
    );
    assert!(
        e.contains("fault[0].probability: missing key `probability`"),
        "{e}"
    );
    let e = bad("kind = \"db_failover\"\ntarget = \"nodes\"\nstart = \"1s\"\nduration = \"1s\"");
    assert!(e.contains("cannot target `nodes`; it targets db"), "{e}");
    let e = bad("kind = \"node_crash\"\ntarget = \"node.99\"\nstart = \"1s\"\nduration = \"1s\"");
    assert!(
        e.contains("fault[0]: node_crash targets node.99 but there are"),
        "{e}"
    );
    let e =
        bad("kind = \"dep_blackhole\"\ntarget = \"dep.nosuch\"\nstart = \"1s\"\nduration = \"1s\"");
    assert!(e.contains("no dependency `nosuch`"), "{e}");
    let e = bad(
        "kind = \"db_failover\"\ntarget = \"db\"\nstart = \"1s\"\nduration = \"1s\"\nramp = \"1s\"",
    );
    assert!(e.contains("has no intensity to ramp"), "{e}");
    // Every problem carries file:line:column.
    assert!(e.contains(":"), "{e}");
}

#[test]
fn rate_profiles_read_with_their_own_keys() {
    let with = |profile: &str| format!("{GOOD}\n[workload.profile]\n{profile}\n");
    let s = parse(
        &with(
            "kind = \"double11\"\nmidnight = \"5s\"\npeak = 8\ntail = \"2s\"\npre_scale = \"1s\"",
        ),
        &[],
    )
    .unwrap();
    let p = &s.topology().traffic().profile;
    assert_eq!(p.multiplier_at(SimTime::from_ns(4_999_999_999)), 1.0);
    assert_eq!(p.multiplier_at(SimTime::from_ns(5_000_000_000)), 8.0);
    assert_eq!(p.scale_out_at(), Some(SimTime::from_ns(4_000_000_000)));
    let s = parse(
        &with("kind = \"steps\"\nsteps = [{ at = \"0s\", multiplier = 1 }, { at = \"3s\", multiplier = 2.5 }]"),
        &[],
    )
    .unwrap();
    assert_eq!(
        s.topology()
            .traffic()
            .profile
            .multiplier_at(SimTime::from_ns(3_000_000_000)),
        2.5
    );
    // A key of another kind, a missing key, a bad count of hourly points.
    let e = parse(&with("kind = \"ramp\"\nfrom = 1\npeak = 3"), &[]).unwrap_err();
    let l = lines(&e);
    assert!(l.iter().any(|x| x.contains("workload.profile.peak: `peak` does not apply to a `ramp` profile; a `ramp` profile reads from, to, start, duration")), "{l:?}");
    assert!(
        l.iter()
            .any(|x| x.contains("workload.profile.to: missing key `to`")),
        "{l:?}"
    );
    let e = parse(&with("kind = \"diurnal\"\nhourly = [1, 2, 3]"), &[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("workload.profile.hourly: 3 points given; give 24 hourly multipliers"),
        "{e}"
    );
    let e = parse(
        &with("kind = \"steps\"\nsteps = [{ at = \"1s\", multiplier = 1 }]"),
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("workload.profile: "), "{e}");
    let e = parse(&with("kind = \"doubel11\""), &[]).unwrap_err();
    assert!(e.to_string().contains("did you mean `double11`?"), "{e}");
}

/// Every key of the raw layer is described in the schema, at the same place.
fn schema_covers(shape: &crate::deps::parse::Shape, schema: &crate::report::Json, path: &str) {
    use crate::deps::parse::Sub;
    let props = schema
        .get("properties")
        .unwrap_or_else(|| panic!("{path}: no properties"));
    for f in (shape.fields)() {
        let p = props
            .get(f)
            .unwrap_or_else(|| panic!("schema lacks `{path}{f}`"));
        match shape.subs.iter().find(|(n, _)| n == f).map(|(_, s)| *s) {
            Some(Sub::Table(s)) => schema_covers(s, p, &format!("{path}{f}.")),
            Some(Sub::Tables(s)) => {
                schema_covers(s, p.get("items").unwrap(), &format!("{path}{f}[]."))
            }
            Some(Sub::Map) | None => {}
        }
    }
    let n = match props {
        crate::report::Json::Obj(m) => m.len(),
        _ => 0,
    };
    assert_eq!(
        n,
        (shape.fields)().len(),
        "{path}: the schema describes keys the file cannot have"
    );
}

#[test]
fn the_schema_describes_every_key_and_is_committed() {
    let schema = scenario_schema();
    schema_covers(&raw::ROOT_SHAPE, &schema, "");
    let committed = include_str!("../../scenarios/scenario.schema.json");
    assert_eq!(
        committed,
        format!("{}\n", schema.to_pretty()),
        "scenarios/scenario.schema.json is stale: regenerate with `firedrill schema > scenarios/scenario.schema.json`"
    );
}

#[test]
fn client_behaviour_and_replay_read_and_bad_values_are_located() {
    let with = |extra: &str| format!("{GOOD}\n{extra}\n");
    let s = parse(
        &with(
            "[workload.retry]\nmax_attempts = 4\nbackoff = \"none\"\non = [\"Throttling\"]\n[workload.polling]\nmax_polls = 5\n[workload.closed_loop]\nclients = 20\nthink = \"const:1s\"",
        ),
        &[],
    );
    assert!(s.is_ok(), "{:?}", s.err());
    let e = parse(
        &with("[workload.retry]\nmax_attempts = 40\njitter = \"ful\"\non = [\"Throttled\"]\n[workload.closed_loop]\nthink = \"const:1s\""),
        &[],
    )
    .unwrap_err();
    let l = lines(&e);
    for x in [
        "workload.retry.max_attempts: 40 is out of range; allowed range: 1 to 10",
        "workload.retry.jitter: unknown value `ful`; did you mean `full`?",
        "workload.retry.on[0]: unknown error code `Throttled`; did you mean `Throttling`?",
        "workload.closed_loop.clients: missing key `clients`",
    ] {
        assert!(l.iter().any(|y| y.contains(x)), "missing {x:?} in {l:?}");
    }
    let e = parse(
        &with("[workload.replay]\ntrace = \"no/such/trace.csv\""),
        &[],
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("s.toml:") && e.to_string().contains("workload.replay.trace: "),
        "{e}"
    );
}

#[test]
fn workflow_step_policies_read_and_are_checked() {
    let with = |extra: &str| format!("{GOOD}\n[topology.workflows]\n{extra}\n");
    let s = parse(
        &with("max_attempts = 5\ninitial_interval = \"200ms\"\ndeadline = \"2m\""),
        &[],
    );
    assert!(s.is_ok(), "{:?}", s.err());
    let e = parse(
        &with("max_attempts = 0\nbackoff_coefficient = 0.5\ninitial_interval = \"10s\"\nmax_interval = \"1s\""),
        &[],
    )
    .unwrap_err();
    let t = e.to_string();
    assert!(
        t.contains("topology.workflows.max_attempts: 0 is out of range; allowed range: 1 to 100"),
        "{t}"
    );
    assert!(
        t.contains("topology.workflows.backoff_coefficient: 0.5 is out of range"),
        "{t}"
    );
    let e = parse(
        &with("initial_interval = \"10s\"\nmax_interval = \"1s\""),
        &[],
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("max_interval (1s) must be at least initial_interval (10s)"),
        "{e}"
    );
}

#[test]
fn an_account_key_scopes_the_kinds_that_take_one() {
    let text = format!(
        "{GOOD}\n[[fault]]\nkind = \"dep_errors\"\ntarget = \"dep.image\"\nstart = \"2s\"\nduration = \"20s\"\ncode = \"InternalError\"\nprobability = 0.5\naccount = 3\n\n[[fault]]\nkind = \"quota_too_low\"\ntarget = \"gateway\"\nstart = \"1s\"\nduration = \"5s\"\nfactor = 0.1\naccount = 4\n\n[[fault]]\nkind = \"hot_tenant\"\ntarget = \"traffic\"\nstart = \"1s\"\nduration = \"5s\"\naccount = 5\nshare = 0.5\n"
    );
    let s = parse(&text, &[]).unwrap();
    let plan = s.topology().faults();
    let scopes: Vec<Option<crate::api::types::AccountId>> =
        plan.faults().iter().map(|f| f.account()).collect();
    use crate::api::types::AccountId;
    assert_eq!(scopes, [Some(AccountId(3)), Some(AccountId(4)), None]);
    assert_eq!(
        plan.faults()[0].to_string(),
        "dep_errors on dep.image from 2s for 20s for account 3"
    );
    // hot_tenant's `account` stays its own parameter.
    assert_eq!(
        *plan.faults()[2].kind(),
        crate::faults::FaultKind::HotTenant {
            account: 5,
            share: 0.5
        }
    );
}

#[test]
fn an_account_key_on_a_kind_without_a_scope_is_refused_at_its_key() {
    let text = format!(
        "{GOOD}\n[[fault]]\nkind = \"node_crash\"\ntarget = \"nodes\"\nstart = \"1s\"\nduration = \"1s\"\naccount = 2\n"
    );
    let e = parse(&text, &[]).unwrap_err();
    let line = GOOD.lines().count() + 7;
    assert_eq!(
        lines(&e),
        [format!(
            "s.toml:{line}:11: fault[0].account: a node_crash fault cannot be scoped to an account; remove `account` (kinds with an account scope: dep_latency, dep_errors, dep_blackhole, dep_partial_outage, client_no_backoff, quota_too_low)"
        )]
    );
    // An account the traffic does not have, and one out of range.
    let text = format!(
        "{GOOD}\n[[fault]]\nkind = \"dep_blackhole\"\ntarget = \"dep.image\"\nstart = \"1s\"\nduration = \"1s\"\naccount = 100000\n\n[[fault]]\nkind = \"client_no_backoff\"\ntarget = \"traffic\"\nstart = \"1s\"\nduration = \"1s\"\naccount = -1\n"
    );
    let e = parse(&text, &[]).unwrap_err().to_string();
    assert!(e.contains("fault[1].account"), "{e}");
    let text = format!(
        "{GOOD}\n[[fault]]\nkind = \"dep_blackhole\"\ntarget = \"dep.image\"\nstart = \"1s\"\nduration = \"1s\"\naccount = 100000\n"
    );
    let e = parse(&text, &[]).unwrap_err().to_string();
    assert!(
        e.contains("fault[0]: dep_blackhole is scoped to account 100000 which does not exist: accounts are 0 to "),
        "{e}"
    );
}

#[test]
fn amount_defaults_to_small_batches_and_can_be_set() {
    let s = parse(GOOD, &[]).unwrap();
    assert_eq!(s.topology().traffic().amount.to_string(), "zipf:100:2");
    let s = parse(GOOD, &["workload.amount=uniform:1:10"]).unwrap();
    assert_eq!(s.topology().traffic().amount.to_string(), "uniform:1:10");
}

#[test]
fn instance_type_weights_set_the_types_and_their_demand() {
    // Default: four types, uniform.
    let s = parse(GOOD, &[]).unwrap();
    let mix = &s.topology().traffic().instance_types;
    assert_eq!(mix.count(), 4);
    assert_eq!(mix.share(3), 0.25);
    let with = format!("{GOOD}instance_type_weights = [60, 30, 9, 1]\n");
    let s = parse(&with, &[]).unwrap();
    let mix = &s.topology().traffic().instance_types;
    assert_eq!(mix.count(), 4);
    assert!((mix.share(0) - 0.6).abs() < 1e-12 && (mix.share(3) - 0.01).abs() < 1e-12);
    assert_eq!(mix.share(4), 0.0);
    // Agreeing counts are fine; disagreeing ones are reported at instance_types.
    let agree = format!("{with}instance_types = 4\n");
    assert!(parse(&agree, &[]).is_ok());
    let e = parse(&format!("{with}instance_types = 3\n"), &[]).unwrap_err();
    let l = lines(&e);
    assert!(
        l.iter().any(|l| l.contains("workload.instance_types")
            && l.contains("instance_types = 3 but instance_type_weights names 4 types")),
        "{e}"
    );
    // A bad weight is reported at its own index; all-zero and empty lists at the key.
    let e = parse(&format!("{GOOD}instance_type_weights = [1, -2]\n"), &[]).unwrap_err();
    assert!(
        e.to_string().contains(
            "workload.instance_type_weights[1]: a weight must be a finite number >= 0, got -2"
        ),
        "{e}"
    );
    for (list, what) in [
        ("[0, 0]", "at least one weight must be > 0"),
        ("[1e308, 1e308]", "their sum finite"),
        ("[]", "give 1 to 1000 weights"),
    ] {
        let e = parse(&format!("{GOOD}instance_type_weights = {list}\n"), &[]).unwrap_err();
        assert!(
            e.to_string().contains("workload.instance_type_weights")
                && e.to_string().contains(what),
            "{list}: {e}"
        );
    }
    // And by --set, as a TOML array.
    let s = parse(GOOD, &["workload.instance_type_weights=[3, 1]"]).unwrap();
    assert_eq!(s.topology().traffic().instance_types.count(), 2);
}

#[test]
fn cache_invalidation_is_the_writers_unless_the_binlog_is_chosen() {
    use crate::cache::{FeedConfig, Invalidation};
    let with = |extra: &str| format!("{GOOD}\n[topology.cache]\n{extra}\n");
    let mode = |s: &Scenario| s.topology().cache().unwrap().invalidation.clone();
    assert_eq!(mode(&parse(&with(""), &[]).unwrap()), Invalidation::Writer);
    assert_eq!(
        mode(&parse(&with("invalidation = \"binlog\""), &[]).unwrap()),
        Invalidation::Binlog(FeedConfig::default())
    );
    let s = parse(
        &with("invalidation = \"binlog\"\nbinlog_lag = \"const:0.5\""),
        &[],
    )
    .unwrap();
    let Invalidation::Binlog(f) = mode(&s) else {
        panic!("binlog");
    };
    assert_eq!(f.lag().mean(), Some(0.5));
    // The same by override.
    let s = parse(&with(""), &["topology.cache.invalidation=binlog"]).unwrap();
    assert!(mode(&s).is_binlog());

    let e = parse(&with("invalidation = \"binlg\""), &[]).unwrap_err();
    assert_eq!(
        lines(&e)[0],
        "s.toml:13:16: topology.cache.invalidation: unknown value `binlg`; did you mean `binlog`?"
    );
    let e = parse(&with("binlog_lag = \"const:0.5\""), &[]).unwrap_err();
    let l = lines(&e);
    assert_eq!(
        l,
        [
            "s.toml:13:14: topology.cache.binlog_lag: binlog_lag sets the change feed, and the \
             writers invalidate; set `invalidation = \"binlog\"`, or remove `binlog_lag`"
        ],
    );
}

/// The invalidator's retries, pending bound and heartbeat are scenario keys; without binlog
/// invalidation each is refused where it stands, and a backoff cap below the timeout is refused
/// with the timeout it must reach.
#[test]
fn the_change_feed_settings_are_read_and_refused_outside_binlog_mode() {
    use crate::cache::{FeedConfig, Invalidation};
    let with = |extra: &str| format!("{GOOD}\n[topology.cache]\n{extra}\n");
    let feed = |extra: &str| -> FeedConfig {
        let s = parse(&with(&format!("invalidation = \"binlog\"\n{extra}")), &[]).unwrap();
        match s.topology().cache().unwrap().invalidation.clone() {
            Invalidation::Binlog(f) => f,
            Invalidation::Writer => panic!("binlog"),
        }
    };
    let d = feed("");
    assert_eq!(d.ack_timeout(), SimDuration::from_ms(200));
    assert_eq!(d.backoff_max(), SimDuration::from_secs(5));
    assert_eq!(d.max_pending(), 100_000);
    assert_eq!(d.heartbeat(), Some(SimDuration::from_secs(1)));
    let f = feed(
        "binlog_retry_timeout = \"50ms\"\nbinlog_backoff_max = \"2s\"\nbinlog_max_pending = 500\nbinlog_heartbeat = \"250ms\"",
    );
    assert_eq!(f.ack_timeout(), SimDuration::from_ms(50));
    assert_eq!(f.backoff_max(), SimDuration::from_secs(2));
    assert_eq!(f.max_pending(), 500);
    assert_eq!(f.heartbeat(), Some(SimDuration::from_ms(250)));
    assert_eq!(feed("binlog_heartbeat = \"0s\"").heartbeat(), None);

    let e = parse(
        &with("invalidation = \"binlog\"\nbinlog_retry_timeout = \"1s\"\nbinlog_backoff_max = \"500ms\""),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        lines(&e),
        [
            "s.toml:15:22: topology.cache.binlog_backoff_max: the backoff cap 500ms is below the \
             delete timeout 1s: raise it; binlog_backoff_max must be at least \
             binlog_retry_timeout (1s)"
        ]
    );
    // A timeout alone above the default 5 s cap: the problem is at the timeout.
    let e = parse(
        &with("invalidation = \"binlog\"\nbinlog_retry_timeout = \"10s\""),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        lines(&e),
        [
            "s.toml:14:24: topology.cache.binlog_retry_timeout: the backoff cap 5s is below the \
             delete timeout 10s: raise it; binlog_backoff_max must be at least \
             binlog_retry_timeout (10s)"
        ]
    );
    let e = parse(
        &with("invalidation = \"binlog\"\nbinlog_max_pending = 0"),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        lines(&e),
        [
            "s.toml:14:22: topology.cache.binlog_max_pending: 0 is out of range; allowed range: 1 \
             to 10000000"
        ]
    );
    // Writer invalidation: each change-feed key is refused where it stands.
    let e = parse(
        &with("binlog_heartbeat = \"1s\"\nbinlog_max_pending = 10"),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        lines(&e),
        [
            "s.toml:13:20: topology.cache.binlog_heartbeat: binlog_heartbeat sets the change \
             feed, and the writers invalidate; set `invalidation = \"binlog\"`, or remove \
             `binlog_heartbeat`",
            "s.toml:14:22: topology.cache.binlog_max_pending: binlog_max_pending sets the change \
             feed, and the writers invalidate; set `invalidation = \"binlog\"`, or remove \
             `binlog_max_pending`",
        ]
    );
}
