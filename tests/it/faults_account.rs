//! Faults scoped to one account end to end: the scoped account's requests, workflows,
//! throttling and retries move by the amount the fault says; every other account's outcomes
//! are exactly those of the run without the fault.

use crate::core::{plain_node, quiet_deps, run_checked, topology, traffic, unlimited};
use firedrill::api::gateway::AccountOutcomes;
use firedrill::api::throttle::{Limit, Throttle};
use firedrill::api::types::{AccountId, Api, ErrorCode, InstanceState};
use firedrill::db::DbConfig;
use firedrill::deps::{DependencyStats, FaultCode};
use firedrill::faults::{Fault, FaultError, FaultKind, FaultPlan, Target};
use firedrill::kernel::{Dist, SimDuration, SimTime};
use firedrill::traffic::{ApiMix, Backoff, ClientConfig, ClientRetry};
use firedrill::workflow::WorkflowKind;
use firedrill::world::{Part, RunResult, Topology, World};

const ACCOUNTS: u32 = 3;
/// The account the faults are scoped to.
const A: AccountId = AccountId(1);
/// The others.
const OTHERS: [AccountId; 2] = [AccountId(0), AccountId(2)];
/// The whole run and its drain.
const ALL_RUN: SimDuration = SimDuration::from_secs(3600);

fn secs(n: u64) -> SimDuration {
    SimDuration::from_secs(n)
}

/// Two nodes serving RunInstances at `rate` per second for 60 s over three accounts,
/// optionally through workflows (one by one).
fn topo(rate: f64, workflows: bool) -> Topology {
    let node = plain_node();
    let t = traffic(rate, ApiMix::only(Api::RunInstances), ACCOUNTS, secs(120));
    let topo = topology(
        2,
        node,
        DbConfig::assumed_defaults(),
        t,
        unlimited(ACCOUNTS),
        60,
    );
    crate::core::maybe_sequential_workflows(topo, workflows)
}

fn dep_target(name: &str) -> Target {
    Target::Dependency {
        name: name.to_string(),
        endpoint: None,
    }
}

fn with(topo: &Topology, faults: Vec<Fault>) -> Topology {
    topo.clone().with_faults(FaultPlan::new(faults)).unwrap()
}

/// Runs twice (same trace hash), quietly (no mock errors).
fn run(topo: &Topology, seed: u64) -> (RunResult, World) {
    run_checked(topo, seed, |w| quiet_deps(w, None))
}

fn outcomes(w: &mut World, a: AccountId) -> AccountOutcomes {
    w.gateway_mut().account_outcomes(a)
}

fn dep<'a>(r: &'a RunResult, name: &str) -> &'a DependencyStats {
    &r.deps.iter().find(|(n, _)| n == name).unwrap().1
}

/// `count` of `n` is `p·n` within 4 standard deviations of a binomial.
fn within_4sd(count: u64, n: u64, p: f64) -> bool {
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - p * n as f64).abs() <= 4.0 * sd
}

/// The answers other than A's, without latency (which moves with the nodes' shared draws).
fn others(w: &mut World) -> Vec<(u64, u64, u64, u64)> {
    OTHERS
        .map(|a| {
            let o = outcomes(w, a);
            (o.answered, o.ok, o.status_4xx, o.status_5xx)
        })
        .to_vec()
}

/// InternalError at 0.5 on inventory for account 1 only: each of its requests fails when its
/// three attempts (the nodes' retry policy) all fail, 0.5³ = 12.5% (within 4 sd); every error
/// the fault drew is account 1's; accounts 0 and 2 get exactly the answers of the fault-free
/// run (all successes). The same fault unscoped fails every account's share.
#[test]
fn dep_errors_for_one_account_fail_its_requests_only() {
    let base = topo(30.0, false);
    let fault = Fault::new(
        FaultKind::DepErrors {
            code: FaultCode::InternalError,
            probability: 0.5,
        },
        dep_target("inventory"),
        SimTime::ZERO,
        ALL_RUN,
    )
    .unwrap();
    let (_, mut b) = run(&base, 21);
    let (r, mut w) = run(
        &with(&base, vec![fault.clone().for_account(A).unwrap()]),
        21,
    );
    let (a0, a) = (outcomes(&mut b, A), outcomes(&mut w, A));
    assert_eq!(a0.status_5xx, 0);
    assert_eq!(a.answered, a0.answered, "the same requests");
    assert!(a.answered > 400, "{a:?}");
    assert!(
        within_4sd(a.status_5xx, a.answered, 0.125),
        "{} of {} failed",
        a.status_5xx,
        a.answered
    );
    assert_eq!(a.ok + a.status_5xx, a.answered);
    assert_eq!(
        others(&mut w),
        others(&mut b),
        "the other accounts' answers"
    );
    assert!(others(&mut w).iter().all(|o| o.0 == o.1 && o.0 > 400));
    let inv = dep(&r, "inventory");
    let scoped = &inv.scoped_accounts[&A];
    assert_eq!(
        inv.scoped_accounts.keys().collect::<Vec<_>>(),
        [&A],
        "only the scoped account is counted apart"
    );
    assert_eq!(
        scoped.fault_failed, inv.fault_errors,
        "every drawn error is A's"
    );
    assert!(within_4sd(scoped.fault_failed, scoped.started, 0.5));
    // A request fails after exactly three failed attempts.
    assert!(scoped.fault_failed >= 3 * a.status_5xx);
    // Unscoped, every account fails its share.
    let (_, mut u) = run(&with(&base, vec![fault]), 21);
    for acc in OTHERS {
        let o = outcomes(&mut u, acc);
        assert!(
            within_4sd(o.status_5xx, o.answered, 0.125),
            "{acc:?}: {o:?}"
        );
        assert!(o.status_5xx > 0);
    }
}

/// Through workflows: every block_storage call of account 2's workflows fails
/// (InternalError at 1), so each of its CreateInstances workflows fails and none of its
/// instances runs; accounts 0 and 1 get exactly the answers and Running instances of the
/// fault-free run.
#[test]
fn dep_errors_for_one_account_fail_its_workflows_only() {
    let base = topo(10.0, true);
    let c = AccountId(2);
    let fault = Fault::new(
        FaultKind::DepErrors {
            code: FaultCode::InternalError,
            probability: 1.0,
        },
        dep_target("block_storage"),
        SimTime::ZERO,
        ALL_RUN,
    )
    .unwrap()
    .for_account(c)
    .unwrap();
    let (rb, mut b) = run(&base, 22);
    let (r, mut w) = run(&with(&base, vec![fault]), 22);
    let create = WorkflowKind::CreateInstances.index();
    let running = |w: &World, a: AccountId| {
        let Part::Db(db) = w.sim.component(w.db) else {
            unreachable!()
        };
        let rows: Vec<_> = db.instance_rows().filter(|row| row.account == a).collect();
        let running = rows
            .iter()
            .filter(|row| row.state == InstanceState::Running)
            .count() as u64;
        (rows.len() as u64, running)
    };
    let accepted = outcomes(&mut w, c).ok;
    assert!(accepted > 150, "{accepted}");
    let wf = r.workflows.as_ref().unwrap();
    assert_eq!(rb.workflows.as_ref().unwrap().failed[create], 0);
    assert_eq!(
        wf.failed[create], accepted,
        "every workflow of account 2 failed"
    );
    assert_eq!(running(&w, c), (accepted, 0));
    assert_eq!(running(&b, c), (accepted, accepted));
    for a in [AccountId(0), AccountId(1)] {
        let (rows, run) = running(&w, a);
        assert_eq!((rows, run), running(&b, a), "{a:?}");
        assert_eq!(rows, run);
        let (x, y) = (outcomes(&mut w, a), outcomes(&mut b, a));
        assert_eq!((x.answered, x.ok), (y.answered, y.answered), "{a:?}");
    }
    let bs = dep(&r, "block_storage");
    assert_eq!(bs.scoped_accounts[&c].fault_failed, bs.fault_errors);
    assert_eq!(bs.scoped_accounts[&c].started, bs.fault_errors);
}

/// +200 ms (constant) on inventory, the nodes' last call, for account 1 only: every one of
/// its inventory calls is delayed and its mean latency grows by the 200 ms (±2 ms); the other
/// accounts' calls are never delayed and their answers are those of the fault-free run.
#[test]
fn dep_latency_for_one_account_slows_its_requests_only() {
    let base = topo(30.0, false);
    let fault = Fault::new(
        FaultKind::DepLatency {
            add: Some(Dist::constant(0.2).unwrap()),
            multiply: 1.0,
        },
        dep_target("inventory"),
        SimTime::ZERO,
        ALL_RUN,
    )
    .unwrap()
    .for_account(A)
    .unwrap();
    let (_, mut b) = run(&base, 23);
    let (r, mut w) = run(&with(&base, vec![fault]), 23);
    let inv = dep(&r, "inventory");
    let scoped = &inv.scoped_accounts[&A];
    assert_eq!(inv.fault_delayed, scoped.fault_delayed, "only A's calls");
    assert_eq!(
        scoped.fault_delayed, scoped.started,
        "every one of A's calls"
    );
    let (a0, a) = (outcomes(&mut b, A), outcomes(&mut w, A));
    assert_eq!((a.answered, a.ok), (a0.answered, a0.answered));
    assert_eq!(scoped.started, a.answered, "one inventory call per request");
    let grown_ms = (a.mean_latency_ns() - a0.mean_latency_ns()) / 1e6;
    assert!(
        (198.0..=202.0).contains(&grown_ms),
        "A's mean grew {grown_ms} ms"
    );
    assert_eq!(others(&mut w), others(&mut b));
    for acc in OTHERS {
        let (x, y) = (outcomes(&mut w, acc), outcomes(&mut b, acc));
        let moved_ms = (x.mean_latency_ns() - y.mean_latency_ns()).abs() / 1e6;
        assert!(moved_ms < 2.0, "{acc:?}'s mean moved {moved_ms} ms");
    }
}

/// Two accounts calling DescribeInstanceStatus at ≈50/s each under a limit of 6,000 a
/// minute: a quota fault (×0.1) for account 1 over the minute [60 s, 120 s) throttles only
/// its calls, about 3,000 − 600 of them; account 0 gets exactly the fault-free answers.
/// Clients retry throttled calls (backoff 1 s, 2 s); without backoff for account 1 every
/// retry goes at once, and without backoff for account 0 (which nothing throttles) none does.
#[test]
fn quota_and_client_retries_for_one_account() {
    let limits = Api::ALL.map(|_| Limit::FixedWindow {
        max: 6_000,
        window: SimDuration::MINUTE,
    });
    let throttle = Throttle::new(limits, Limit::Unlimited, 2).unwrap();
    let node = plain_node();
    let t = traffic(
        100.0,
        ApiMix::only(Api::DescribeInstanceStatus),
        2,
        secs(30),
    );
    let retry = ClientRetry::new(
        3,
        Backoff::Exponential {
            base: secs(1),
            cap: secs(2),
            jitter: firedrill::deps::Jitter::None,
        },
        &[ErrorCode::Throttling],
    )
    .unwrap();
    let base = topology(2, node, DbConfig::assumed_defaults(), t, throttle, 180)
        .with_client(ClientConfig {
            retry: Some(retry),
            ..ClientConfig::default()
        })
        .unwrap();
    let quota = Fault::new(
        FaultKind::QuotaTooLow { factor: 0.1 },
        Target::Gateway,
        SimTime::ZERO + secs(60),
        secs(60),
    )
    .unwrap()
    .for_account(A)
    .unwrap();
    let no_backoff = |a: AccountId| {
        Fault::new(
            FaultKind::ClientNoBackoff,
            Target::Traffic,
            SimTime::ZERO,
            ALL_RUN,
        )
        .unwrap()
        .for_account(a)
        .unwrap()
    };
    let immediate = |w: &World| match w.sim.component(w.traffic) {
        Part::Traffic(t) => t.faults().immediate_retries,
        _ => unreachable!(),
    };
    let api = Api::DescribeInstanceStatus;
    let (rb, mut b) = run_checked(&base, 24, |_| {});
    assert_eq!(rb.client.as_ref().unwrap().retries.iter().sum::<u64>(), 0);
    let (r, mut w) = run_checked(&with(&base, vec![quota.clone()]), 24, |_| {});
    let th = w.gateway_mut().throttle().throttled(api);
    assert_eq!(w.gateway_mut().throttle().throttled_under_fault(), th);
    let a = outcomes(&mut w, A);
    assert_eq!(a.throttled, th, "every throttled call is account 1's");
    // ≈3,000 first attempts in the minute, 600 admitted, and both retries of each throttled
    // one (1 s and 3 s later: throttled again while the minute lasts): about 3 × 2,400.
    assert!(th > 6_000 && th < 8_000, "throttled {th}");
    let client = r.client.as_ref().unwrap();
    let retries = client.retries.iter().sum::<u64>();
    assert_eq!(
        th,
        retries + client.give_ups,
        "each throttle is retried or given up"
    );
    assert_eq!(
        a.answered,
        outcomes(&mut b, A).answered + retries,
        "every retry is account 1's"
    );
    assert_eq!(immediate(&w), 0, "with backoff");
    // Account 0's answers are those of the fault-free run (their latencies move with the
    // nodes' load).
    let counts = |o: AccountOutcomes| (o.answered, o.ok, o.status_4xx, o.status_5xx, o.throttled);
    assert_eq!(
        counts(outcomes(&mut w, AccountId(0))),
        counts(outcomes(&mut b, AccountId(0))),
        "account 0 is not touched"
    );
    assert_eq!(w.gateway_mut().throttle().account_quota_factor(A), 1.0);
    // Without backoff for account 1: every retry goes at once.
    let (r1, w1) = run_checked(&with(&base, vec![quota.clone(), no_backoff(A)]), 24, |_| {});
    let retries1 = r1.client.as_ref().unwrap().retries.iter().sum::<u64>();
    assert!(retries1 > 1_500);
    assert_eq!(immediate(&w1), retries1, "every retry of account 1 at once");
    assert_eq!(r1.client.as_ref().unwrap().backoff.max_ns(), Some(0));
    // Without backoff for account 0: its clients never retry, account 1 keeps its backoff,
    // and the run is the same as with the quota fault alone.
    let (r0, w0) = run_checked(
        &with(&base, vec![quota, no_backoff(AccountId(0))]),
        24,
        |_| {},
    );
    assert_eq!(immediate(&w0), 0);
    assert_eq!(r0.trace_hash(), r.trace_hash());
}

/// Kinds without an account scope refuse one, saying which kinds take it; a scoped account
/// must exist in the topology.
#[test]
fn an_account_scope_is_refused_where_it_means_nothing() {
    for (kind, target) in [
        (FaultKind::NodeCrash, Target::Nodes),
        (FaultKind::DbFailover, Target::Db),
        (FaultKind::ClockSkew { skew_ns: 1_000 }, Target::Node(0)),
        (FaultKind::WorkerCrash { workers: 1 }, Target::Workflow),
        (FaultKind::TrafficSurge { multiply: 2.0 }, Target::Traffic),
    ] {
        let name = kind.name();
        let e = Fault::new(kind, target, SimTime::ZERO, secs(1))
            .unwrap()
            .for_account(A)
            .unwrap_err();
        assert_eq!(e, FaultError::NotAccountScoped { kind: name });
        assert!(
            e.to_string().starts_with(&format!(
                "a {name} fault cannot be scoped to an account; remove `account` (kinds with an account scope: dep_latency, dep_errors,"
            )),
            "{e}"
        );
    }
    let f = Fault::new(
        FaultKind::DepBlackhole,
        dep_target("image"),
        SimTime::ZERO,
        secs(1),
    )
    .unwrap()
    .for_account(AccountId(ACCOUNTS))
    .unwrap();
    let e = topo(1.0, false)
        .with_faults(FaultPlan::new(vec![f]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "dep_blackhole is scoped to account 3 which does not exist: accounts are 0 to 2"
        ),
        "{e}"
    );
}

/// The scenario form: `account = 1` on a dep_errors table scopes it; the run fails only
/// account 1's requests, twice alike.
#[test]
fn a_scenario_scopes_a_fault_with_its_account_key() {
    let text = r#"name = "scoped"
description = "dep errors for one account"
duration = "20s"

[topology.api]
nodes = 2

[workload]
rate = 24
accounts = 3
account_skew = 0
mix = { RunInstances = 1 }

[[fault]]
kind = "dep_errors"
target = "dep.inventory"
start = "0s"
duration = "1h"
code = "InternalError"
probability = 1.0
account = 1
"#;
    let s = firedrill::scenario::parse_scenario(
        "scoped.toml",
        text,
        &[],
        &firedrill::world::shipped_mocks(),
    )
    .unwrap();
    let topo = s.topology();
    assert_eq!(topo.faults().faults()[0].account(), Some(A));
    let (r, mut w) = run_checked(topo, s.seed(), |_| {});
    let a = outcomes(&mut w, A);
    assert!(a.answered > 100, "{a:?}");
    // 8 calls a second per account stay under the default 200 a minute: nothing is
    // throttled. None of account 1's requests gets a host; the others' mostly do (the mocks'
    // own error rates stay on).
    assert_eq!(a.status_5xx, a.answered, "{a:?}");
    for acc in OTHERS {
        let o = outcomes(&mut w, acc);
        assert!(o.answered > 100);
        assert!(o.ok > o.answered * 9 / 10, "{acc:?}: {o:?}");
    }
    assert_eq!(
        dep(&r, "inventory").scoped_accounts[&A].fault_failed,
        dep(&r, "inventory").fault_errors
    );
    // The result and summary.json report the scoped account beside all the others.
    assert_eq!(r.scoped_accounts, vec![(A, a)]);
    let mut rest = AccountOutcomes::default();
    for acc in OTHERS {
        rest.merge(&outcomes(&mut w, acc));
    }
    assert_eq!(r.other_accounts, Some(rest));
    let json = firedrill::report::summary::summary(&s, s.seed(), &r, false, None).to_pretty();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["faults"][0]["account"], 1);
    let scoped = &v["accounts"]["scoped"][0];
    assert_eq!(scoped["account"], 1);
    assert_eq!(scoped["answered"], a.answered);
    assert_eq!(scoped["rate_5xx"], 1.0);
    assert_eq!(v["accounts"]["others"]["status_5xx"], rest.status_5xx);
    assert!(v["accounts"]["others"]["rate_5xx"].as_f64().unwrap() < 0.1);
}
