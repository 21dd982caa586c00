//! Client behaviour (issue #5): retries with backoff and token reuse, polling until Running, the
//! closed loop against the open one (coordinated omission), client-side statistics, and trace
//! replay — each checked against exact counts or theory.

use crate::core::{quiet_deps, run_checked, traffic, unlimited};
use firedrill::api::node::{NodeConfig, NodeConfigBuilder};
use firedrill::api::throttle::Throttle;
use firedrill::api::types::{Api, ErrorCode, Status};
use firedrill::db::{DbConfig, Table};
use firedrill::deps::{DependencyKind, FaultCode, Jitter, RetryPolicy};
use firedrill::gc::{GcProfile, HeapConfig, PauseKind};
use firedrill::kernel::{Dist, RootSeed, SimDuration};
use firedrill::traffic::{
    ApiMix, Backoff, ClientConfig, ClientRetry, ClientStats, ClosedLoop, OpenLoopConfig, Polling,
    ReplayConfig, TokenPolicy, Trace, TraceError,
};
use firedrill::world::{Part, RunResult, Topology};

fn plain_node() -> NodeConfigBuilder {
    NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::Off))
}

fn topology(
    nodes: u32,
    node: NodeConfig,
    t: OpenLoopConfig,
    throttle: Throttle,
    secs: u64,
) -> Topology {
    crate::core::topology(nodes, node, DbConfig::assumed_defaults(), t, throttle, secs)
}

fn client(r: &RunResult) -> &ClientStats {
    r.client.as_ref().expect("client behaviour was on")
}

fn retry(max_attempts: u32, backoff: Backoff, codes: &[ErrorCode]) -> ClientConfig {
    ClientConfig {
        retry: Some(ClientRetry::new(max_attempts, backoff, codes).unwrap()),
        ..ClientConfig::default()
    }
}

/// E[attempts] of a call whose attempts fail independently with probability p, m at most.
fn expected_attempts(p: f64, m: u32) -> f64 {
    (1.0 - p.powi(m as i32)) / (1.0 - p)
}

/// A fixed window of 200 StopInstance calls a minute under 10 calls/s: two thirds of the first
/// attempts are throttled. Immediate retries (no backoff) land in the same full window, so every
/// throttled call makes exactly max_attempts = 4 attempts and gives up — a retry storm that buys
/// nothing: the window still admits exactly 200 a minute. With capped exponential backoff and
/// full jitter, no call makes more than 4 attempts, every wait lies in [0, min(cap, base·2^k)],
/// and the amplification is at least the analytic (1 − p⁴)/(1 − p) for the first-attempt
/// rejection rate p (retries meet a window at least as full as first attempts do).
#[test]
fn retries_follow_the_policy_under_throttling() {
    let throttle = crate::core::fixed_window_200_a_minute();
    let t = traffic(
        10.0,
        ApiMix::only(Api::StopInstance),
        1,
        SimDuration::from_secs(30),
    );
    let base = topology(2, plain_node().build().unwrap(), t, throttle, 300);
    let codes = ClientRetry::DEFAULT_CODES;

    // Immediate retries: exact counts.
    let topo = base
        .clone()
        .with_client(retry(4, Backoff::None, &codes))
        .unwrap();
    let (r, _) = run_checked(&topo, 2, |_| {});
    let c = client(&r);
    let a = r.api(Api::StopInstance);
    let admitted = a.requests - a.count(Status::Err(ErrorCode::Throttling));
    assert_eq!(admitted, 5 * 200, "retries buy no capacity: {:?}", a.status);
    let throttled_first = c.first_attempts - c.calls_by_attempts[1];
    assert_eq!(c.calls_by_attempts[1], 1_000, "{:?}", c.calls_by_attempts);
    assert_eq!(
        c.calls_by_attempts[4], throttled_first,
        "every throttled call retried 3 times: {:?}",
        c.calls_by_attempts
    );
    assert_eq!(c.calls_by_attempts.iter().sum::<u64>(), c.first_attempts);
    assert_eq!(c.give_ups, throttled_first);
    assert_eq!(c.retries_for(ErrorCode::Throttling), 3 * throttled_first);
    assert_eq!(c.total_retries(), 3 * throttled_first);
    assert_eq!(c.attempts, c.first_attempts + 3 * throttled_first);
    assert_eq!(a.requests, c.attempts, "every attempt reached the gateway");
    assert_eq!(c.backoff.max_ns(), Some(0), "no backoff");
    assert_eq!(c.retry_limit_hits, 0);
    let p = throttled_first as f64 / c.first_attempts as f64;
    assert!(p > 0.6, "most first attempts throttled: {p}");
    assert!(
        (c.retry_amplification() - 4.0 * p - (1.0 - p)).abs() < 1e-9,
        "1 attempt for the admitted, 4 for the throttled"
    );

    // Exponential backoff, base 100 ms, cap 300 ms, full jitter.
    let backoff = Backoff::Exponential {
        base: SimDuration::from_ms(100),
        cap: SimDuration::from_ms(300),
        jitter: Jitter::Full,
    };
    let topo = base.clone().with_client(retry(4, backoff, &codes)).unwrap();
    let (r, _) = run_checked(&topo, 2, |_| {});
    let c = client(&r);
    assert_eq!(c.calls_by_attempts.iter().sum::<u64>(), c.first_attempts);
    assert!(c.calls_by_attempts[5..].iter().all(|&n| n == 0));
    assert_eq!(c.backoff.count(), c.total_retries());
    // Waits: U[0, 100 ms], U[0, 200 ms], U[0, 300 ms] (capped): max below the cap, mean near
    // the mean ceiling / 2 weighted by how many retries of each rank were made.
    assert!(c.backoff.max_ns().unwrap() <= 300_000_000);
    let ranks = [
        c.calls_by_attempts[2..].iter().sum::<u64>(),
        c.calls_by_attempts[3..].iter().sum::<u64>(),
        c.calls_by_attempts[4],
    ];
    let mean_expected = (ranks[0] as f64 * 0.05 + ranks[1] as f64 * 0.10 + ranks[2] as f64 * 0.15)
        / ranks.iter().sum::<u64>() as f64;
    let mean = c.backoff.mean_ns().unwrap() * 1e-9;
    assert!(
        (mean / mean_expected - 1.0).abs() < 0.05,
        "mean wait {mean} vs {mean_expected}"
    );
    let p = 1.0 - c.calls_by_attempts[1] as f64 / c.first_attempts as f64;
    let analytic = expected_attempts(p, 4);
    let bounded_topo = base
        .clone()
        .with_client(ClientConfig {
            retry: Some(
                ClientRetry::new(4, backoff, &codes)
                    .unwrap()
                    .with_max_pending_retries(2)
                    .unwrap(),
            ),
            ..ClientConfig::default()
        })
        .unwrap();
    let (bounded, _) = run_checked(&bounded_topo, 2, |_| {});
    let b = client(&bounded);
    assert!(
        b.retry_limit_hits > 0,
        "the bound of 2 pending retries was hit"
    );
    assert!(b.total_retries() < c.total_retries());
    assert_eq!(
        b.calls_by_attempts.iter().sum::<u64>(),
        b.first_attempts,
        "a call that hits the bound ends with its last error"
    );
    assert!(
        c.retry_amplification() >= analytic * 0.99,
        "amplification {} vs analytic {analytic} at p = {p}",
        c.retry_amplification()
    );
}

/// The inventory fails every call independently with probability p = 0.5 (InternalError, no
/// node-side retries): the client's amplification is E[attempts] = (1 − p^m)/(1 − p) = 1.875
/// for m = 4, and p^m of the calls give up.
#[test]
fn retry_amplification_matches_the_analytic_value() {
    let node = plain_node()
        .dependency_calls(
            SimDuration::from_secs(2),
            RetryPolicy::new(1, SimDuration::ZERO, SimDuration::ZERO, Jitter::Full, &[]).unwrap(),
        )
        .build()
        .unwrap();
    let t = traffic(
        200.0,
        ApiMix::only(Api::CreateInstance),
        10,
        SimDuration::from_secs(60),
    );
    let backoff = Backoff::Exponential {
        base: SimDuration::from_ms(10),
        cap: SimDuration::from_ms(100),
        jitter: Jitter::None,
    };
    let topo = topology(2, node, t, unlimited(10), 60)
        .with_client(retry(4, backoff, &ClientRetry::DEFAULT_CODES))
        .unwrap();
    let (r, _) = run_checked(&topo, 11, |world| {
        quiet_deps(
            world,
            Some((DependencyKind::Inventory, FaultCode::InternalError, 0.5)),
        );
    });
    let c = client(&r);
    assert!(c.first_attempts > 10_000);
    let expected = expected_attempts(0.5, 4);
    assert!(
        (c.retry_amplification() / expected - 1.0).abs() < 0.02,
        "amplification {} vs {expected}",
        c.retry_amplification()
    );
    let give_up = c.give_ups as f64 / c.first_attempts as f64;
    assert!((give_up - 0.0625).abs() < 0.01, "give-ups {give_up}");
    assert_eq!(c.retries_for(ErrorCode::InternalError), c.total_retries());
    // No jitter: every wait is exactly a ceiling, 10, 20 or 40 ms.
    assert_eq!(c.backoff.min_ns(), Some(10_000_000));
    assert_eq!(c.backoff.max_ns(), Some(40_000_000));
    // End to end: from the first attempt's intended start; a call that needed 4 attempts waited
    // 70 ms of backoff at least.
    assert!(c.end_to_end.max_ns().unwrap() >= 70_000_000);
    assert_eq!(c.end_to_end.count(), c.first_attempts);
}

/// RunInstances whose answer often comes after the client's 100 ms timeout: the client retries
/// on DeadlineExceeded (and LastTokenProcessing while the original is still running) with the
/// same ClientToken, the database's idempotency store answers the replays, and each token's
/// instance set exists once. The same retries without tokens create duplicates.
#[test]
fn retries_reuse_the_client_token_so_instance_sets_are_created_once() {
    let node = plain_node()
        .cpu_all(Dist::exponential(0.03).unwrap())
        .build()
        .unwrap();
    let mut t = traffic(
        20.0,
        ApiMix::only(Api::RunInstances),
        5,
        SimDuration::from_ms(100),
    );
    let backoff = Backoff::Exponential {
        base: SimDuration::from_ms(200),
        cap: SimDuration::from_secs(2),
        jitter: Jitter::Full,
    };
    let cfg = retry(
        5,
        backoff,
        &[
            ErrorCode::DeadlineExceeded,
            ErrorCode::LastTokenProcessing,
            ErrorCode::ServiceUnavailable,
            ErrorCode::InternalError,
        ],
    );
    let mut run_with = |share: f64| {
        t.tokens = TokenPolicy {
            share,
            duplicate_fraction: 0.0,
            duplicate_delay: SimDuration::ZERO,
        };
        let topo = topology(2, node.clone(), t.clone(), unlimited(5), 120)
            .with_client(cfg.clone())
            .unwrap();
        let (r, world) = run_checked(&topo, 12, |world| quiet_deps(world, None));
        let Part::Db(db) = world.sim.component(world.db) else {
            unreachable!()
        };
        let Part::Traffic(tr) = world.sim.component(world.traffic) else {
            unreachable!()
        };
        let rows = db.table_rows(Table::Instances);
        let stats = db.idempotency().stats();
        (
            r,
            rows,
            stats.replays,
            stats.duplicates_detected,
            tr.tokens_sent(),
        )
    };
    let (r, rows, replays, dups, tokens) = run_with(1.0);
    let c = client(&r);
    let timeouts = c.retries_for(ErrorCode::DeadlineExceeded);
    assert!(
        timeouts > 100,
        "enough calls time out to matter: {timeouts}"
    );
    assert_eq!(
        tokens, c.first_attempts,
        "one token per call, reused by its retries"
    );
    assert!(replays > 0, "the idempotency store answered retries");
    // At most one instance per token (Amount = 1): every call that ended OK has its instance
    // (replays return the original), and a token without an instance belongs to a call that
    // ended failed (all attempts expired before the node got to it).
    assert!(rows <= tokens, "{rows} rows for {tokens} tokens");
    assert!(rows >= c.calls_ok, "{rows} rows, {} calls OK", c.calls_ok);
    assert!(tokens - rows <= c.calls_failed);
    assert_eq!(dups, 0, "no token created a second instance set");

    let (r, rows, _, _, tokens) = run_with(0.0);
    let c = client(&r);
    assert_eq!(tokens, 0);
    assert!(
        rows > c.first_attempts,
        "without tokens retries duplicate: {rows} rows for {} calls",
        c.first_attempts
    );
}

/// With workflows, every successful RunInstances is polled (DescribeInstanceStatus every 1–2 s)
/// until its instances are Running; the time to Running, measured from the call's intended
/// start, is at least the workflow's own end-to-end time, and every poll is a real request.
#[test]
fn polling_follows_every_creation_to_running() {
    use firedrill::workflow::{EngineConfig, WorkflowKind};
    use firedrill::world::WorkflowSetup;
    let mut t = traffic(
        5.0,
        ApiMix::only(Api::RunInstances),
        3,
        SimDuration::from_secs(30),
    );
    t.amount = Dist::uniform(1.0, 20.0).unwrap();
    let topo = topology(2, plain_node().build().unwrap(), t, unlimited(3), 60)
        .with_workflows(WorkflowSetup {
            engine: EngineConfig::builder().build().unwrap(),
            batch: true,
        })
        .unwrap()
        .with_client(ClientConfig {
            polling: Some(Polling::default()),
            ..ClientConfig::default()
        })
        .unwrap();
    let (r, _) = run_checked(&topo, 14, |world| quiet_deps(world, None));
    let c = client(&r);
    let ok = r.api(Api::RunInstances).count(Status::Ok);
    assert!(ok > 200, "{:?}", r.api(Api::RunInstances).status);
    assert_eq!(c.polled_creations, ok, "every successful call is polled");
    assert_eq!(c.reached, ok, "every creation reached Running");
    assert_eq!(c.poll_give_ups + c.poll_limit_hits, 0);
    assert_eq!(c.time_to_running.count(), ok);
    assert_eq!(
        r.api(Api::DescribeInstanceStatus).requests,
        c.polls,
        "polls are real requests"
    );
    assert!(c.polls >= ok);
    assert!(
        c.time_to_running.min_ns().unwrap() >= 1_000_000_000,
        "the first poll comes at least 1 s after the call"
    );
    let wf = &r.workflows.as_ref().unwrap().e2e[WorkflowKind::CreateInstances.index()];
    for q in [0.5, 0.9, 0.99] {
        let ttr = c.time_to_running.quantile_ns(q).unwrap();
        let e2e = wf.quantile_ns(q).unwrap();
        assert!(ttr >= e2e, "q{q}: time to Running {ttr} vs workflow {e2e}");
    }
    // Polls of an instance stop at Running: at most the polls needed by the slowest workflow
    // (its e2e over the 1 s minimum interval, plus one) per creation.
    let bound = wf.max_ns().unwrap() / 1_000_000_000 + 2;
    assert!(
        c.polls <= ok * bound,
        "{} polls for {ok} creations",
        c.polls
    );
}

/// Without workflows, RunInstances leaves its instances Pending: polls never see Running, so
/// each creation is polled exactly `max_polls` times and given up, counted.
#[test]
fn polls_stop_at_their_limit() {
    let t = traffic(
        5.0,
        ApiMix::only(Api::RunInstances),
        3,
        SimDuration::from_secs(30),
    );
    let topo = topology(2, plain_node().build().unwrap(), t, unlimited(3), 20)
        .with_client(ClientConfig {
            polling: Some(Polling {
                max_polls: 5,
                ..Polling::default()
            }),
            ..ClientConfig::default()
        })
        .unwrap();
    let (r, _) = run_checked(&topo, 15, |world| quiet_deps(world, None));
    let c = client(&r);
    let ok = r.api(Api::RunInstances).count(Status::Ok);
    assert!(ok > 50);
    assert_eq!((c.polled_creations, c.reached), (ok, 0));
    assert_eq!(c.poll_give_ups, ok);
    assert_eq!(c.polls, 5 * ok);
    assert_eq!(r.api(Api::DescribeInstanceStatus).requests, 5 * ok);
    assert_eq!(c.time_to_running.count(), 0);
}

/// Coordinated omission. One node whose heap forces full GCs (stop-the-world pauses of ≈0.3 s
/// every few seconds). A closed loop of 10 clients (think 20 ms) measures latency from each actual
/// send: during a pause only its 10 outstanding calls wait, so its p99 stays at the service
/// time. An open loop at the same throughput measures from intended starts: every call meant
/// to start during the pause waits, so its p99 rises by most of the pause.
#[test]
fn closed_loop_hides_the_stall_the_open_loop_shows() {
    let node = bad_gc_node();
    let t = traffic(
        400.0,
        ApiMix::only(Api::DescribeInstanceStatus),
        10,
        SimDuration::from_secs(30),
    );
    let base = topology(1, node, t.clone(), unlimited(10), 120);
    let closed = base
        .clone()
        .with_client(ClientConfig {
            closed_loop: Some(ClosedLoop {
                clients: 10,
                think: Dist::exponential(0.02).unwrap(),
            }),
            ..ClientConfig::default()
        })
        .unwrap();
    let (c, _) = run_checked(&closed, 3, |_| {});
    let n_closed = c.api(Api::DescribeInstanceStatus).requests;
    let rate = n_closed as f64 / 120.0;
    let mut t_open = t;
    t_open.inter_arrival = Dist::exponential(1.0 / rate).unwrap();
    let open = topology(1, bad_gc_node(), t_open, unlimited(10), 120);
    let (o, _) = run_checked(&open, 3, |_| {});
    let n_open = o.api(Api::DescribeInstanceStatus).requests;
    assert!(
        (n_open as f64 / n_closed as f64 - 1.0).abs() < 0.05,
        "same throughput: open {n_open}, closed {n_closed}"
    );
    let fulls = |r: &RunResult| r.nodes[0].gc.count(PauseKind::Full);
    assert!(
        fulls(&c) >= 5 && fulls(&o) >= 5,
        "{} / {}",
        fulls(&c),
        fulls(&o)
    );
    let pause = o.nodes[0].gc.histogram(PauseKind::Full).max_ns().unwrap() as f64 * 1e-9;
    let p99 = |r: &RunResult| {
        r.api(Api::DescribeInstanceStatus)
            .latency
            .quantile_ns(0.99)
            .unwrap() as f64
            * 1e-9
    };
    let max =
        |r: &RunResult| r.api(Api::DescribeInstanceStatus).latency.max_ns().unwrap() as f64 * 1e-9;
    let (p_open, p_closed) = (p99(&o), p99(&c));
    eprintln!(
        "closed loop: {n_closed} calls, p99 {p_closed:.4}s, max {:.3}s; open loop: {n_open} \
         calls, p99 {p_open:.4}s, max {:.3}s; longest full GC {pause:.3}s",
        max(&c),
        max(&o)
    );
    assert!(
        p_open > 10.0 * p_closed,
        "open-loop p99 {p_open:.4}s vs closed-loop p99 {p_closed:.4}s (pause {pause:.3}s)"
    );
    assert!(p_open > 0.3 * pause, "open p99 {p_open} vs pause {pause}");
    // Both saw the stall: its worst latency is about a pause either way.
    assert!(max(&c) > 0.5 * pause && max(&o) > 0.5 * pause);
    // The client's own end-to-end view agrees with the gateway's in the closed loop.
    let cs = client(&c);
    assert_eq!(cs.end_to_end.count(), n_closed);
}

/// 200 workers, 8 cores, and a heap whose old generation fills every few seconds at 400 calls/s
/// (256 KiB each, half surviving): full GCs of ≈0.3 s.
fn bad_gc_node() -> NodeConfig {
    NodeConfigBuilder::new(crate::core::full_gc_heap())
        .workers(200)
        .cores(8)
        .alloc_bytes(
            Api::DescribeInstanceStatus,
            Dist::constant(256.0 * 1024.0).unwrap(),
        )
        .build()
        .unwrap()
}

/// A client configuration that needs no responses changes nothing: same events, same hash.
#[test]
fn client_features_off_leave_the_run_unchanged() {
    let mut t = traffic(
        2_000.0,
        ApiMix::describe_heavy(),
        20,
        SimDuration::from_secs(5),
    );
    t.amount = Dist::uniform(1.0, 20.0).unwrap();
    let topo = topology(
        2,
        NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::G1))
            .build()
            .unwrap(),
        t,
        Throttle::ecs_defaults(20),
        10,
    );
    let plain = topo.run(RootSeed::new(4));
    let off = topo
        .clone()
        .with_client(ClientConfig::default())
        .unwrap()
        .run(RootSeed::new(4));
    assert_eq!(plain.trace_hash(), off.trace_hash());
    assert!(plain.client.is_none() && off.client.is_none());
    // With retries on, the run differs and the client's statistics appear.
    let on = topo
        .clone()
        .with_client(retry(3, Backoff::None, &ClientRetry::DEFAULT_CODES))
        .unwrap()
        .run(RootSeed::new(4));
    assert_ne!(plain.trace_hash(), on.trace_hash());
    assert_eq!(client(&on).first_attempts, plain.requests());
}

fn sample() -> Trace {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/traces/sample.csv");
    Trace::from_path(&path).unwrap()
}

fn replay_topology(cfg: ReplayConfig) -> Topology {
    let t = traffic(
        1.0,
        ApiMix::describe_heavy(),
        20,
        SimDuration::from_secs(30),
    );
    topology(2, plain_node().build().unwrap(), t, unlimited(20), 620)
        .with_trace(sample(), cfg)
        .unwrap()
}

/// The shipped sample (≈2,000 records over 10 minutes) replays every record, deterministically.
#[test]
fn the_sample_trace_replays_deterministically() {
    let trace = sample();
    assert!((1_900..=2_200).contains(&trace.len()), "{}", trace.len());
    assert!(trace.span() <= SimDuration::from_secs(600));
    let topo = replay_topology(ReplayConfig::default());
    let (a, _) = run_checked(&topo, 5, |_| {});
    let b = topo.run(RootSeed::new(5));
    assert_eq!(a.trace_hash(), b.trace_hash());
    let s = a.replay.as_ref().unwrap();
    assert_eq!(s.records, trace.len() as u64);
    assert_eq!(
        (s.scheduled, s.sent, s.after_end),
        (s.records, s.records, 0)
    );
    assert_eq!(a.requests(), s.sent, "every record reached the gateway");
    // The trace's own API counts come through.
    let runs = trace
        .records()
        .iter()
        .filter(|r| r.api == Api::RunInstances)
        .count() as u64;
    assert_eq!(a.api(Api::RunInstances).requests, runs);
    assert!(
        a.api(Api::RunInstances).count(Status::Ok) > 0,
        "{:?}",
        a.api(Api::RunInstances).status
    );
}

/// Speed 2 replays the same records in half the simulated time.
#[test]
fn replay_at_speed_two_takes_half_the_time() {
    let one = replay_topology(ReplayConfig::default()).run(RootSeed::new(6));
    let two = replay_topology(ReplayConfig {
        speed: 2.0,
        ..ReplayConfig::default()
    })
    .run(RootSeed::new(6));
    let (a, b) = (one.replay.unwrap(), two.replay.unwrap());
    assert_eq!(a.sent, b.sent);
    let (la, lb) = (a.last_at.unwrap().as_ns(), b.last_at.unwrap().as_ns());
    assert!(la > 590_000_000_000);
    assert!(la.abs_diff(2 * lb) <= 2, "last request at {la} vs {lb} ns");
    let (fa, fb) = (a.first_at.unwrap().as_ns(), b.first_at.unwrap().as_ns());
    assert!(fa.abs_diff(2 * fb) <= 2);
}

/// Scale 0.5 keeps each record with probability 1/2 (within 3 sd of n/2); scale 2 sends each
/// record twice, the copies with fresh tokens and jittered times.
#[test]
fn replay_scale_thins_and_multiplies() {
    let n = sample().len() as f64;
    let half = replay_topology(ReplayConfig {
        scale: 0.5,
        ..ReplayConfig::default()
    })
    .run(RootSeed::new(7));
    let h = half.replay.as_ref().unwrap();
    let sd = (n * 0.25).sqrt();
    assert!(
        (h.scheduled as f64 - n / 2.0).abs() < 3.0 * sd,
        "{} of {n}",
        h.scheduled
    );
    assert_eq!(half.requests(), h.sent);
    assert_eq!(h.sent, h.scheduled);
    let double = replay_topology(ReplayConfig {
        scale: 2.0,
        ..ReplayConfig::default()
    })
    .run(RootSeed::new(7));
    let d = double.replay.as_ref().unwrap();
    assert_eq!(d.scheduled, 2 * n as u64);
    assert_eq!(double.requests(), 2 * n as u64);
    // Another seed thins differently; the same seed the same way.
    let again = replay_topology(ReplayConfig {
        scale: 0.5,
        ..ReplayConfig::default()
    })
    .run(RootSeed::new(7));
    assert_eq!(again.trace_hash(), half.trace_hash());
}

/// A malformed line is reported as `file:line: message`.
#[test]
fn a_malformed_trace_line_is_located() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("bad-trace.csv");
    std::fs::write(
        &path,
        "# a comment\ntimestamp,account,api,params,client_token\n\
         1.0,0,DescribeInstances,,\n2.0,0,RunInstances,amount=ten,tok\n",
    )
    .unwrap();
    let err = Trace::from_path(&path).unwrap_err();
    assert!(matches!(err, TraceError::Line { line: 4, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:4: param `amount` = `ten`", path.display())),
        "{msg}"
    );
    let json = dir.join("bad-trace.jsonl");
    std::fs::write(
        &json,
        "{\"timestamp\":1.0,\"account\":0,\"api\":\"DescribeInstances\"}\n\
         {\"timestamp\":-2.0,\"account\":0,\"api\":\"DescribeInstances\"}\n",
    )
    .unwrap();
    let msg = Trace::from_path(&json).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:2: timestamp -2", json.display())),
        "{msg}"
    );
}
