//! Game-day runbook actions end to end: `raise_quota` ends a quota fault's throttling,
//! `enable_shedding` turns an overloaded node's stale queue into 503s so it recovers when the
//! overload ends, `scale_out` adds nodes that take their share at once and drain a queue two
//! nodes cannot; every game day is deterministic.

use crate::core::{
    heap, instant_db, plain_node, quiet_deps, run_checked, state_write_mix, topology, traffic,
    unlimited,
};
use firedrill::api::node::{NodeConfig, NodeConfigBuilder};
use firedrill::api::throttle::{Limit, Throttle};
use firedrill::api::types::{Api, ErrorCode, Status};
use firedrill::db::DbConfig;
use firedrill::faults::{Fault, FaultKind, FaultPlan, Target};
use firedrill::gameday::{Action, GameDayConfig, RunbookStep, Trigger};
use firedrill::gc::GcProfile;
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::metrics::series::SeriesRow;
use firedrill::traffic::ApiMix;
use firedrill::world::{Part, RecoverySlo, RunResult, Topology, TopologyError, World};

fn secs(n: u64) -> SimDuration {
    SimDuration::from_secs(n)
}
fn at(n: u64) -> SimTime {
    SimTime::ZERO + secs(n)
}

/// A runbook of `steps`, each at its instant; no alerts.
fn runbook(topo: Topology, steps: &[(Action, u64)]) -> Topology {
    let cfg = GameDayConfig {
        alerts: Vec::new(),
        runbook: steps
            .iter()
            .map(|(action, s)| RunbookStep {
                action: action.clone(),
                trigger: Trigger::At(at(*s)),
            })
            .collect(),
    };
    let slo = RecoverySlo {
        p99_ms: Some(1_000.0),
        rate_5xx_max: Some(0.01),
        hold: secs(10),
    };
    topo.with_gameday(cfg, slo).unwrap()
}

fn faults(topo: Topology, faults: Vec<Fault>) -> Topology {
    topo.with_faults(FaultPlan::new(faults)).unwrap()
}

/// DescribeInstances listing pages (one database read each, answered Ok) at `rate` per second.
fn listing(rate: f64, accounts: u32, timeout: SimDuration) -> firedrill::traffic::OpenLoopConfig {
    let mut t = traffic(
        rate,
        ApiMix::only(Api::DescribeInstances),
        accounts,
        timeout,
    );
    t.describe_list_share = 1.0;
    t
}

/// One worker on one core per node, 10 ms of CPU per call, a deep accept queue: with the
/// database at once and 0.25 ms hops each way, a node serves one call per 10.5 ms.
fn serial_node(shed: bool) -> NodeConfig {
    NodeConfigBuilder::new(heap(GcProfile::Off))
        .workers(1)
        .cores(1)
        .accept_queue(100_000)
        .cpu_all(Dist::constant(0.010).unwrap())
        .shed_expired(shed)
        .build()
        .unwrap()
}
/// A serial node's service time (CPU + the database's round trip), seconds.
const SERVICE_S: f64 = 0.0105;

fn rows_between(r: &RunResult, from: u64, to: u64) -> Vec<&SeriesRow> {
    r.series
        .as_ref()
        .unwrap()
        .rows()
        .iter()
        .filter(|b| b.start >= at(from) && b.end <= at(to))
        .collect()
}

fn throttled(w: &mut World) -> u64 {
    w.gateway_mut().throttle().throttled(Api::DescribeInstances)
}

fn received(w: &mut World) -> u64 {
    match w.sim.component(w.gateway) {
        Part::Gateway(g) => g.request_counts().0,
        _ => unreachable!(),
    }
}

/// DescribeInstances at 50/s from one account under a 50-token bucket refilled at 100/s: never
/// throttled. A `quota_too_low` fault (×0.1: 5 tokens, 10/s) from 10 s to 50 s throttles all
/// but the bucket's refill: from 10 s to 20 s exactly the arrivals less 100 to 106 admitted
/// (100 refilled, at most 5 left over, the last fraction of a token). `raise_quota` ×20 at
/// 20 s composes with the fault (×2 of configured: 100 tokens, 200/s) and ends the throttling
/// at once; it outlives the fault (×20 after 50 s). Without the runbook ~40/s stay throttled
/// until 50 s.
#[test]
fn raise_quota_ends_a_quota_faults_throttling() {
    let limits = [Limit::TokenBucket {
        capacity: 50,
        refill_per_s: 100,
    }; Api::COUNT];
    let throttle = Throttle::new(limits, Limit::Unlimited, 1).unwrap();
    let node = plain_node();
    let t = listing(50.0, 1, secs(5));
    let base = faults(
        topology(2, node, DbConfig::assumed_defaults(), t, throttle, 60),
        vec![
            Fault::new(
                FaultKind::QuotaTooLow { factor: 0.1 },
                Target::Gateway,
                at(10),
                secs(40),
            )
            .unwrap(),
        ],
    );
    let raised = runbook(base.clone(), &[(Action::RaiseQuota { factor: 20.0 }, 20)]);
    let mut w = raised.build(RootSeed::new(3));
    assert!(w.run_until(at(10)).is_none());
    assert_eq!(throttled(&mut w), 0, "no throttling before the fault");
    let n10 = received(&mut w);
    assert!(w.run_until(at(20)).is_none());
    let (before, n20) = (throttled(&mut w), received(&mut w));
    let arrivals = n20 - n10;
    assert!(
        (arrivals - 106..=arrivals - 100).contains(&before),
        "{before} throttled of {arrivals}"
    );
    assert_eq!(
        w.gateway_mut().throttle().limit(Api::DescribeInstances),
        Limit::TokenBucket {
            capacity: 100,
            refill_per_s: 200
        },
        "configured x 0.1 x 20"
    );
    assert!(w.run_until(at(50)).is_none());
    assert_eq!(throttled(&mut w), before, "none after the raise");
    assert!(w.run_until(at(51)).is_none());
    assert_eq!(
        w.gateway_mut().throttle().limit(Api::DescribeInstances),
        Limit::TokenBucket {
            capacity: 1_000,
            refill_per_s: 2_000
        },
        "the raise outlives the fault"
    );
    let report = w.run();
    let r = w.result(report, raised.duration());
    assert_eq!(
        r.api(Api::DescribeInstances)
            .count(Status::Err(ErrorCode::Throttling)),
        before
    );
    let g = r.gameday.as_ref().unwrap();
    assert_eq!(g.actions.len(), 1);
    assert_eq!(g.actions[0].at, at(20));
    assert_eq!(
        g.actions[0].note,
        "raised every throttling quota x20: limits now x2 of configured (runbook x20, quota fault x0.1)"
    );
    // Without the runbook: ~40/s throttled from 20 s to 50 s.
    let mut b = base.build(RootSeed::new(3));
    assert!(b.run_until(at(20)).is_none());
    let b20 = throttled(&mut b);
    assert_eq!(b20, before, "the same run until the action");
    assert!(b.run_until(at(50)).is_none());
    let later = throttled(&mut b) - b20;
    assert!((1_000..=1_400).contains(&later), "{later} throttled");
}

/// One serial node (≈95 calls/s) without shedding, DescribeInstances at 50/s with a 1 s
/// timeout, surged ×4 from 10 s to 20 s: ~1,050 requests pile up. Without shedding the node
/// works through the stale backlog (each aborted after its CPU, at 100/s), so it drains at
/// 50/s and until ~40 s every request waits more than its timeout: every answer is a 504.
/// `enable_shedding` at 15 s: the worker drops every queued request past its deadline (a 503
/// to the gateway, which already answered 504) instead of working on it, so the backlog is
/// gone within a second of the surge's end and every answer after 23 s is a success.
#[test]
fn enable_shedding_turns_a_stale_queue_into_503s_and_recovers() {
    let t = listing(50.0, 3, secs(1));
    let base = faults(
        topology(1, serial_node(false), instant_db(), t, unlimited(3), 60),
        vec![
            Fault::new(
                FaultKind::TrafficSurge { multiply: 4.0 },
                Target::Traffic,
                at(10),
                secs(10),
            )
            .unwrap(),
        ],
    );
    let shed = runbook(base.clone(), &[(Action::EnableShedding, 15)]);
    let (b, _) = run_checked(&base, 4, |_| {});
    let mut w = shed.build(RootSeed::new(4));
    assert!(w.run_until(at(15)).is_none());
    assert!(w.node_mut(0).config().sheds_expired(), "the action ran");
    let report = w.run();
    let r = w.result(report, shed.duration());
    assert_eq!(b.counter("node.0.shed_expired"), 0);
    let dropped = r.counter("node.0.shed_expired");
    // The surge's excess over the node's capacity, less what it served before its deadline.
    assert!(dropped > 600, "{dropped} shed");
    // Late work: requests the node took up after their deadline (aborted after the CPU).
    let (late_b, late_r) = (
        b.counter("node.0.deadline_aborts"),
        r.counter("node.0.deadline_aborts"),
    );
    assert!(late_b > 2_000, "{late_b} aborted without shedding");
    assert!(late_r * 3 < late_b, "{late_r} vs {late_b}");
    for row in rows_between(&b, 25, 38) {
        assert_eq!(row.responses_5xx, row.requests, "{row:?}");
    }
    let after = rows_between(&r, 23, 60);
    assert!(after.iter().map(|b| b.requests).sum::<u64>() > 1_500);
    assert!(after.iter().all(|b| b.responses_5xx == 0), "{after:?}");
    let g = r.gameday.as_ref().unwrap();
    assert_eq!(
        g.actions[0].note,
        "1 nodes now drop queued requests past their deadline (503); 0 already did"
    );
}

/// Two serial nodes (≈95 calls/s each, so 190/s) under 280/s with round robin: the queue
/// grows at 280 − 2/0.0105 ≈ 89.5/s, ≈895 by 10 s. `scale_out` of 2 at 10 s: 381/s of
/// capacity; each node now gets 70/s, so each old node's ≈447 drain at 95.2 − 70 ≈ 25/s, in
/// ≈18 s: by 35 s the queue is empty and the p99 is a few service times, where without the
/// scale-out the queue is ≈3,100 and the p99 tens of seconds. The new nodes serve a quarter of
/// every request after 10 s each (round robin: exactly, ±1).
#[test]
fn scale_out_drains_a_queue_two_nodes_cannot() {
    let rate = 280.0;
    let t = listing(rate, 3, secs(120));
    let base = topology(2, serial_node(true), instant_db(), t, unlimited(3), 60);
    let scaled = runbook(base.clone(), &[(Action::ScaleOut { nodes: 2 }, 10)]);
    let (b, _) = run_checked(&base, 5, |_| {});
    let mut w = scaled.build(RootSeed::new(5));
    assert!(w.run_until(at(10)).is_none());
    assert_eq!(w.nodes.len(), 4, "added at 10 s");
    let n10 = received(&mut w);
    let report = w.run();
    let r = w.result(report, scaled.duration());
    let growth = rate - 2.0 / SERVICE_S;
    let depth_at = |r: &RunResult, s: u64| {
        r.series
            .as_ref()
            .unwrap()
            .rows()
            .iter()
            .find(|b| b.end == at(s))
            .unwrap()
            .queue_depth as f64
    };
    // Both runs are the same until the action: ≈ growth × 10 s (±4 sd of the arrivals).
    let d10 = depth_at(&r, 10);
    assert_eq!(d10, depth_at(&b, 10));
    assert!(
        (d10 - growth * 10.0).abs() < 4.0 * (rate * 10.0).sqrt(),
        "{d10}"
    );
    let b35 = depth_at(&b, 35);
    assert!(
        (b35 - growth * 35.0).abs() < 4.0 * (rate * 35.0).sqrt(),
        "{b35}"
    );
    for row in rows_between(&r, 35, 60) {
        assert!(row.queue_depth < 20, "{row:?}");
        assert!(row.latency_p99_ns.unwrap() < 100_000_000, "{row:?}");
    }
    for row in rows_between(&b, 35, 60) {
        assert!(row.latency_p99_ns.unwrap() > 10_000_000_000, "{row:?}");
    }
    // Every request answered; the new nodes took a quarter of those after 10 s each.
    let api = r.api(Api::DescribeInstances);
    assert_eq!(api.count(Status::Ok), api.requests, "{:?}", api.status);
    assert_eq!(r.nodes.len(), 4);
    let after = api.requests - n10;
    for n in &r.nodes[2..] {
        let served = n.latency.count();
        assert!(served.abs_diff(after / 4) <= 1, "{served} of {after}");
    }
    let g = r.gameday.as_ref().unwrap();
    assert_eq!(
        g.actions[0].note,
        "added 2 nodes (node.2 to node.3) configured like node.0, cold L1s and fresh heaps: 2 -> 4 nodes"
    );
}

/// State writes (and reads) at 500/s on 2 nodes with the cache `setup` for 40 s; a runbook adds
/// 2 nodes at 20 s.
fn scale_out_writes(setup: firedrill::world::CacheSetup) -> Topology {
    let t = traffic(500.0, state_write_mix(), 20, secs(30));
    runbook(
        topology(
            2,
            plain_node(),
            DbConfig::assumed_defaults(),
            t,
            unlimited(20),
            40,
        )
        .with_cache(setup),
        &[(Action::ScaleOut { nodes: 2 }, 20)],
    )
}

/// With the cache on, nodes added at 20 s get every other node's L1 invalidations from then on
/// and send theirs to all: over the run, each write is announced to every other node there was
/// at the time (1 before 20 s, 3 after), within the few writes in flight at 20 s.
#[test]
fn scaled_out_nodes_join_the_l1_invalidation_broadcast() {
    let topo = scale_out_writes(crate::core::default_cache());
    // State writes answered Ok so far (each planned its broadcast 0.25 ms before).
    let writes = |w: &World| -> u64 {
        [Api::StartInstance, Api::DeleteInstance]
            .iter()
            .map(|a| crate::core::counter_now(w, &format!("api.{a}.status.{}", Status::Ok.name())))
            .sum()
    };
    let mut w = topo.build(RootSeed::new(23));
    quiet_deps(&mut w, None);
    assert!(w.run_until(at(20)).is_none());
    let before = writes(&w);
    let report = w.run();
    assert!(w.result(report, topo.duration()).ended_normally());
    let after = writes(&w) - before;
    assert!(before > 300 && after > 300, "{before} then {after} writes");
    let lags: Vec<u64> = (0..4)
        .map(|i| w.node_mut(i).l1_invalidation_lag().unwrap().count())
        .collect();
    assert!(lags[2] > 0 && lags[3] > 0, "{lags:?}");
    let received: u64 = lags.iter().sum();
    let expected = before + 3 * after;
    assert!(
        received.abs_diff(expected) <= 4,
        "{received} invalidations received, {expected} expected"
    );
}

/// With binlog invalidation the invalidator announces every row change to every node, the
/// writer included, and nodes added at 20 s join its broadcast: the L1 invalidations received
/// are exactly 2 per row changed before 20 s and 4 per row after.
#[test]
fn scaled_out_nodes_join_the_binlog_invalidators_broadcast() {
    use firedrill::cache::{FeedConfig, Invalidation};
    let mut setup = crate::core::default_cache();
    setup.invalidation = Invalidation::Binlog(FeedConfig::default());
    let topo = scale_out_writes(setup);
    let rows = |w: &World| match w.sim.component(w.invalidator.unwrap()) {
        Part::Invalidator(i) => i.stats().rows,
        _ => unreachable!(),
    };
    let mut w = topo.build(RootSeed::new(23));
    quiet_deps(&mut w, None);
    assert!(w.run_until(at(20)).is_none());
    let before = rows(&w);
    let report = w.run();
    assert!(w.result(report, topo.duration()).ended_normally());
    let after = rows(&w) - before;
    assert!(before > 300 && after > 300, "{before} then {after} rows");
    let lags: Vec<u64> = (0..4)
        .map(|i| w.node_mut(i).l1_invalidation_lag().unwrap().count())
        .collect();
    assert_eq!(lags.iter().sum::<u64>(), 2 * before + 4 * after, "{lags:?}");
    assert_eq!(lags[2], after);
    assert_eq!(lags[3], after);
}

/// A binlog consumer falling 5 s behind from 20 s to 40 s. The `feed_lag_ms` series holds the
/// feed's own lag (under 100 ms: heartbeats and changes arrive in every bucket) before; then,
/// while nothing arrives, how overdue the next heartbeat is (the one written at 21 s: 1, 2, 3,
/// 4 s at the ends of the buckets from 21 s to 25 s); then the fault's 5 s while changes made
/// during it arrive (from 25 s to 45 s). An alert on it above 1 s detects and locates the fault at the
/// database at 23 s, when the heartbeat is 2 s overdue, not when the first late change arrives
/// (26 s without heartbeats).
#[test]
fn a_feed_lag_alert_detects_a_lagging_binlog_consumer() {
    use firedrill::cache::{FeedConfig, Invalidation};
    use firedrill::gameday::{AlertRule, Metric};
    let t = traffic(500.0, state_write_mix(), 20, secs(30));
    let mut setup = crate::core::default_cache();
    setup.invalidation = Invalidation::Binlog(FeedConfig::default());
    let topo = faults(
        topology(
            2,
            plain_node(),
            DbConfig::assumed_defaults(),
            t,
            unlimited(20),
            60,
        )
        .with_cache(setup),
        vec![
            Fault::new(
                FaultKind::BinlogLag { lag: secs(5) },
                Target::Db,
                at(20),
                secs(20),
            )
            .unwrap(),
        ],
    );
    let cfg = GameDayConfig {
        alerts: vec![AlertRule {
            name: "binlog-lag".into(),
            metric: Metric::FeedLagMs,
            above: true,
            threshold: 1_000.0,
            hold: SimDuration::ZERO,
            component: "db".into(),
        }],
        runbook: Vec::new(),
    };
    let slo = RecoverySlo {
        p99_ms: Some(1_000.0),
        rate_5xx_max: Some(0.01),
        hold: secs(10),
    };
    let day = topo.with_gameday(cfg, slo).unwrap();
    let (r, _) = run_checked(&day, 3, |_| {});
    let lag_ms = |from: u64, to: u64| -> Vec<f64> {
        rows_between(&r, from, to)
            .iter()
            .map(|b| b.feed_lag_max_ns.expect("a lag in every bucket") as f64 / 1e6)
            .collect()
    };
    assert!(
        lag_ms(1, 21).iter().all(|&l| l < 100.0),
        "{:?}",
        lag_ms(1, 21)
    );
    // The heartbeat written at 20 s (before the fault) arrives; the one at 21 s, 5 s late.
    assert_eq!(lag_ms(21, 25), [1_000.0, 2_000.0, 3_000.0, 4_000.0]);
    assert!(
        lag_ms(25, 45)
            .iter()
            .all(|&l| (5_000.0..5_100.0).contains(&l)),
        "{:?}",
        lag_ms(25, 45)
    );
    assert!(
        lag_ms(46, 60).iter().all(|&l| l < 100.0),
        "{:?}",
        lag_ms(46, 60)
    );
    let g = r.gameday.as_ref().unwrap();
    assert_eq!(g.firings.len(), 1, "{:?}", g.firings);
    assert_eq!(g.firings[0].fired_at, at(23));
    // Changes made up to 40 s arrive up to 45.1 s: the bucket from 46 s is the first good one.
    assert_eq!(g.firings[0].resolved_at, Some(at(47)));
    assert_eq!(g.timelines[0].detected, Some(at(23)));
    assert_eq!(g.timelines[0].located, Some(at(23)));
    let feed = r.feed.as_ref().unwrap();
    // One heartbeat a second from 1 s to the run's end, all in but the last few on their way.
    assert_eq!(r.db.heartbeats, r.report.end_time.as_ns() / 1_000_000_000);
    assert!(
        (r.db.heartbeats - 1..=r.db.heartbeats).contains(&feed.heartbeats),
        "{} of {}",
        feed.heartbeats,
        r.db.heartbeats
    );
    assert!(feed.changes > 1_000, "{}", feed.changes);
}

/// The same game day twice (all three actions, a fault, the cache): the same trace, the same
/// notes; it differs from the run without its runbook.
#[test]
fn a_game_day_with_every_new_action_is_deterministic() {
    let t = traffic(200.0, ApiMix::describe_heavy(), 5, secs(2));
    let throttle = Throttle::ecs_defaults(5);
    let base = faults(
        topology(2, serial_node(false), instant_db(), t, throttle, 30),
        vec![
            Fault::new(
                FaultKind::QuotaTooLow { factor: 0.2 },
                Target::Gateway,
                at(5),
                secs(10),
            )
            .unwrap(),
        ],
    );
    let day = runbook(
        base.clone(),
        &[
            (Action::RaiseQuota { factor: 10.0 }, 8),
            (Action::EnableShedding, 9),
            (Action::ScaleOut { nodes: 3 }, 10),
        ],
    );
    let (a, _) = run_checked(&day, 11, |_| {});
    let (b, _) = run_checked(&day, 11, |_| {});
    let (plain, _) = run_checked(&base, 11, |_| {});
    assert_eq!(a.trace_hash(), b.trace_hash());
    assert_eq!(a.gameday, b.gameday);
    assert_ne!(a.trace_hash(), plain.trace_hash());
    assert_eq!(a.nodes.len(), 5);
    assert!(a.violations.is_empty(), "{:?}", a.violations);
}

/// Runbooks the world cannot carry out are refused when the game day is set up, saying what to
/// change.
#[test]
fn impossible_runbook_steps_are_refused() {
    let t = traffic(10.0, ApiMix::describe_heavy(), 1, secs(2));
    let base = topology(1_000, serial_node(true), instant_db(), t, unlimited(1), 10);
    let cfg = |action: Action| GameDayConfig {
        alerts: Vec::new(),
        runbook: vec![RunbookStep {
            action,
            trigger: Trigger::At(at(1)),
        }],
    };
    let slo = RecoverySlo {
        p99_ms: None,
        rate_5xx_max: None,
        hold: secs(1),
    };
    let err = |action| {
        base.clone()
            .with_gameday(cfg(action), slo)
            .expect_err("refused")
    };
    assert_eq!(
        err(Action::ScaleOut { nodes: 25 }),
        TopologyError::GameDay(
            "runbook scale_out of 25 nodes would make 1025 (at most 1024, at least 1 added): lower `nodes`"
                .into()
        )
    );
    let TopologyError::GameDay(m) = err(Action::RaiseQuota { factor: 0.5 }) else {
        panic!("a game-day error")
    };
    assert!(m.contains("factor > 1"), "{m}");
    assert!(
        base.with_gameday(cfg(Action::ScaleOut { nodes: 24 }), slo)
            .is_ok()
    );
}

/// A clock skew and a partition of every node (from the image mock) from 5 s to 25 s; a
/// runbook adds 2 nodes at 10 s. The new nodes get the skew and the partition at once (not at
/// the faults' next transition), and every node loses both at 25 s.
#[test]
fn nodes_added_mid_fault_get_the_skews_and_partitions_in_force() {
    let t = listing(50.0, 3, secs(120));
    let base = topology(2, serial_node(true), instant_db(), t, unlimited(3), 40);
    let skew_ns = 30_000_000_000;
    let image = Target::Dependency {
        name: "image".into(),
        endpoint: None,
    };
    let plan = vec![
        Fault::new(
            FaultKind::ClockSkew { skew_ns },
            Target::Nodes,
            at(5),
            secs(20),
        )
        .unwrap(),
        Fault::new(
            FaultKind::Partition {
                peer: image.clone(),
            },
            Target::Nodes,
            at(5),
            secs(20),
        )
        .unwrap(),
    ];
    let scaled = runbook(faults(base, plan), &[(Action::ScaleOut { nodes: 2 }, 10)]);
    let mut w = scaled.build(RootSeed::new(5));
    assert!(w.run_until(at(10)).is_none());
    assert_eq!(w.nodes.len(), 4, "added at 10 s");
    let image_id = w
        .deps
        .iter()
        .copied()
        .find(|&id| matches!(w.sim.component(id), Part::Dep(d) if d.name() == "image"))
        .unwrap();
    let nodes = w.nodes.clone();
    for (i, &id) in nodes.iter().enumerate() {
        assert_eq!(
            w.node_mut(i).fault_stats().clock_skew_ns,
            skew_ns,
            "node {i}"
        );
        assert!(
            w.sim
                .partitions()
                .iter()
                .any(|&(a, b, _)| a == id && b == image_id),
            "node {i} cut from image"
        );
    }
    assert_eq!(w.sim.partitions().len(), 4);
    assert!(w.run_until(at(26)).is_none());
    for i in 0..4 {
        assert_eq!(w.node_mut(i).fault_stats().clock_skew_ns, 0, "node {i}");
    }
    assert!(w.sim.partitions().is_empty(), "healed at 25 s");
}
