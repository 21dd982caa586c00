//! Data-tier, workflow and traffic faults end to end: each fault moves the metric its model
//! says by the amount its parameters give, leaves the run identical before its start, and its
//! effect ends with its window.

use crate::core::{plain_node, quiet_deps, topology, traffic, unlimited};
use firedrill::api::throttle::{Limit, Throttle};
use firedrill::api::types::{Api, ErrorCode, Status};
use firedrill::db::{DbConfig, QueryClass};
use firedrill::faults::{Fault, FaultKind, FaultPlan, Target};
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::traffic::{ApiMix, Backoff, ClientConfig, ClientRetry};
use firedrill::world::{Part, Topology, World};

fn secs(s: u64) -> SimTime {
    SimTime::ZERO.saturating_add(SimDuration::from_secs(s))
}

/// One millisecond before `s` seconds.
fn before(s: u64) -> SimTime {
    SimTime::from_ns(s * 1_000_000_000 - 1_000_000)
}

fn plan(kind: FaultKind, target: Target, start: u64, duration: u64) -> FaultPlan {
    FaultPlan::new(vec![
        Fault::new(kind, target, secs(start), SimDuration::from_secs(duration)).unwrap(),
    ])
}

fn mix(weights: &[(Api, f64)]) -> ApiMix {
    let mut w = [0.0; Api::COUNT];
    for (a, x) in weights {
        w[a.index()] = *x;
    }
    ApiMix::new(w).unwrap()
}

fn base(rate: f64, m: ApiMix, accounts: u32, db: DbConfig, throttle: Throttle, s: u64) -> Topology {
    let node = plain_node();
    topology(
        2,
        node,
        db,
        traffic(rate, m, accounts, SimDuration::from_secs(30)),
        throttle,
        s,
    )
}

fn db(world: &World) -> &firedrill::db::Db {
    match world.sim.component(world.db) {
        Part::Db(d) => d,
        _ => unreachable!(),
    }
}

/// Builds both worlds, runs them to `t` and checks they processed the same events.
fn identical_until(a: &Topology, b: &Topology, seed: u64, t: SimTime) {
    let mut wa = a.build(RootSeed::new(seed));
    let mut wb = b.build(RootSeed::new(seed));
    quiet_deps(&mut wa, None);
    quiet_deps(&mut wb, None);
    wa.run_until(t);
    wb.run_until(t);
    assert_eq!(
        wa.sim.trace_hash(),
        wb.sim.trace_hash(),
        "identical before {t}"
    );
    assert!(wa.sim.events_processed() > 100);
}

/// Runs `topo` to `t` after quieting the dependencies.
fn world_at(topo: &Topology, seed: u64, t: SimTime) -> World {
    let mut w = topo.build(RootSeed::new(seed));
    quiet_deps(&mut w, None);
    w.run_until(t);
    w
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b as f64
}

/// Slow SQL on the point-read class multiplies its DB latency by the factor; inserts stay as
/// they were; the factor is gone after the window.
#[test]
fn db_slow_sql_multiplies_one_classes_latency() {
    let cfg = DbConfig::builder()
        .latency_all(Dist::constant(0.002).unwrap())
        .max_concurrent(100_000)
        .index_log_coeff(0.0)
        .build()
        .unwrap();
    let m = mix(&[
        (Api::RunInstances, 20.0),
        (Api::DescribeInstanceStatus, 80.0),
    ]);
    let plain = base(200.0, m, 5, cfg, unlimited(5), 20);
    let kind = FaultKind::DbSlowSql {
        class: Some(QueryClass::PointRead),
        multiply: 5.0,
    };
    let faulty = plain
        .clone()
        .with_faults(plan(kind, Target::Db, 0, 20))
        .unwrap();
    let p50 = |w: &World, c: QueryClass| db(w).stats().class(c).latency.quantile_ns(0.5).unwrap();
    let a = world_at(&plain, 3, secs(25));
    let b = world_at(&faulty, 3, secs(25));
    let r = ratio(
        p50(&b, QueryClass::PointRead),
        p50(&a, QueryClass::PointRead),
    );
    assert!((r - 5.0).abs() < 0.05, "point-read p50 ratio {r}");
    let ins = QueryClass::Insert;
    assert_eq!(p50(&a, ins), p50(&b, ins), "inserts untouched");
    let slowed = db(&b).stats().slowed_queries;
    assert_eq!(slowed, db(&b).stats().class(QueryClass::PointRead).served);
    assert_eq!(db(&b).slow_factors(), [1.0; QueryClass::COUNT], "ended");

    // A ramped window: identical before it, factors back to 1 after, and the slowed queries
    // are the point reads served inside it.
    let ramped = plain
        .clone()
        .with_faults(FaultPlan::new(vec![
            Fault::new(
                FaultKind::DbSlowSql {
                    class: None,
                    multiply: 3.0,
                },
                Target::Db,
                secs(5),
                SimDuration::from_secs(5),
            )
            .unwrap()
            .with_ramp(SimDuration::from_secs(2))
            .unwrap(),
        ]))
        .unwrap();
    identical_until(&plain, &ramped, 3, before(5));
    let mut w = world_at(&ramped, 3, secs(6));
    let f = db(&w).slow_factors()[QueryClass::PointRead.index()];
    // 1 s into a 2 s ramp: step 6 of 10, intensity 0.6, factor 1 + 2 × 0.6.
    assert!((f - 2.2).abs() < 1e-9, "at 6s: factor {f}");
    w.run_until(secs(10));
    let inside = db(&w).stats().slowed_queries;
    assert!(inside > 0);
    w.run_until(secs(25));
    assert_eq!(
        db(&w).stats().slowed_queries,
        inside,
        "nothing slowed after the end"
    );
}

/// A failover fails the primaries' in-flight and queued transactions at once, refuses writes
/// for the window (5XX on RunInstances, not on replica reads), and service resumes after.
#[test]
fn db_failover_fails_writes_for_the_window_then_recovers() {
    let cfg = DbConfig::builder()
        .shards(2)
        .replicas(1)
        .latency_all(Dist::constant(0.02).unwrap())
        .max_concurrent(4)
        .build()
        .unwrap();
    let m = mix(&[
        (Api::RunInstances, 50.0),
        (Api::DescribeInstanceStatus, 50.0),
    ]);
    let plain = base(300.0, m, 8, cfg, unlimited(8), 30).with_series(true);
    let faulty = plain
        .clone()
        .with_faults(plan(FaultKind::DbFailover, Target::Db, 10, 5))
        .unwrap();
    identical_until(&plain, &faulty, 5, before(10));
    let mut a = world_at(&plain, 5, secs(40));
    let mut b = world_at(&faulty, 5, secs(40));
    let rep = a.run();
    let ra = a.result(rep, plain.duration());
    let rep = b.run();
    let rb = b.result(rep, faulty.duration());
    let s = db(&b).stats();
    assert_eq!(s.failovers, 2, "one per shard");
    assert!(s.failover_inflight_failed > 0, "{s:?}");
    assert!(s.failover_queued_failed > 0, "{s:?}");
    // Every query is answered once: served (in-flight failures among them) or refused.
    assert_eq!(s.received(), s.served() + s.refused());
    assert!(s.rejected_unavailable >= s.failover_queued_failed);
    assert_eq!(db(&a).stats().failovers, 0);
    assert_eq!(ra.responses_5xx(), 0);
    // Writes fail during the window; Describe reads by id go to the replicas and pass.
    let run_5xx = rb.api(Api::RunInstances).count_5xx();
    assert!(run_5xx > 0);
    assert_eq!(rb.api(Api::DescribeInstanceStatus).count_5xx(), 0);
    let rows = rb.series.as_ref().unwrap().rows();
    for row in rows {
        let start = row.start.since_start().as_secs_f64();
        if (11.0..15.0).contains(&start) {
            // Every RunInstances of the bucket failed: about half the requests.
            let r = row.responses_5xx as f64 / row.requests as f64;
            assert!(
                (0.35..0.65).contains(&r),
                "bucket at {start}s: 5xx share {r}"
            );
        } else if !(10.0..17.0).contains(&start) {
            assert_eq!(row.responses_5xx, 0, "bucket at {start}s");
        }
    }
    assert!(
        (0..2).all(|sh| db(&b).is_available(sh)),
        "promoted at the end"
    );
}

/// `plain` with `kind` on the database from 10 s to 20 s, ramped over 4 s, run (seed 7) to
/// 12.5 s: step 7 of the ramp's 10, an intensity of 0.7.
fn ramped_db_fault_at_2_5_s(plain: &Topology, kind: FaultKind) -> World {
    let ramped = plain
        .clone()
        .with_faults(FaultPlan::new(vec![
            Fault::new(kind, Target::Db, secs(10), SimDuration::from_secs(10))
                .unwrap()
                .with_ramp(SimDuration::from_secs(4))
                .unwrap(),
        ]))
        .unwrap();
    world_at(&ramped, 7, SimTime::from_ns(12_500_000_000))
}

/// Replica lag makes replica reads stale (none without it, none after it); every stale read
/// in the window comes from the fault's lag.
#[test]
fn replica_lag_makes_replica_reads_stale_only_during_the_window() {
    let cfg = DbConfig::builder()
        .replicas(1)
        .replication_lag(Dist::constant(0.0).unwrap())
        .latency_all(Dist::constant(0.001).unwrap())
        .build()
        .unwrap();
    let m = mix(&[
        (Api::RunInstances, 20.0),
        (Api::DescribeInstanceStatus, 80.0),
    ]);
    let plain = base(200.0, m, 4, cfg, unlimited(4), 30);
    let kind = FaultKind::ReplicaLag {
        lag: SimDuration::from_secs(2),
    };
    let faulty = plain
        .clone()
        .with_faults(plan(kind.clone(), Target::Db, 10, 10))
        .unwrap();
    identical_until(&plain, &faulty, 7, before(10));
    let a = world_at(&plain, 7, secs(40));
    let mut b = world_at(&faulty, 7, before(20));
    assert_eq!(db(&a).stats().stale_reads, 0);
    assert!(db(&a).stats().replica_reads > 1_000);
    let s = db(&b).stats().clone();
    assert!(s.stale_reads > 50, "{s:?}");
    assert_eq!(s.fault_stale_reads, s.stale_reads);
    assert!(s.fault_lagged_reads > 1_000);
    assert_eq!(db(&b).fault_lag(), SimDuration::from_secs(2));
    b.run_until(secs(40));
    assert_eq!(
        db(&b).stats().stale_reads,
        s.stale_reads,
        "none after the end"
    );
    assert_eq!(db(&b).fault_lag(), SimDuration::ZERO);

    // Ramped over 4 s: 2.5 s in is step 7 of 10, a lag of 0.7 × 2 s.
    let w = ramped_db_fault_at_2_5_s(&plain, kind);
    assert_eq!(db(&w).fault_lag(), SimDuration::from_ms(1_400));
}

fn cached(plain: Topology) -> Topology {
    use firedrill::cache::L1Config;

    plain.with_cache(crate::core::fast_l2_cache(
        L1Config::builder()
            .capacity(10_000)
            .ttl(SimDuration::from_ms(500), SimDuration::from_secs(1))
            .build()
            .unwrap(),
        SimDuration::from_secs(120),
    ))
}

fn point_reads(w: &World) -> u64 {
    db(w).stats().class(QueryClass::PointRead).received
}

/// An L2 flush sends the by-id reads to the database until the L2 is warm again (a read
/// stampede); an L2 loss sends them there for the whole window, and the L2 comes back empty.
#[test]
fn l2_flush_and_loss_send_reads_to_the_database() {
    let m = mix(&[
        (Api::RunInstances, 5.0),
        (Api::DescribeInstanceStatus, 95.0),
    ]);
    let cfg = DbConfig::assumed_defaults();
    let plain = cached(base(500.0, m, 10, cfg, unlimited(10), 40));
    let flush = plain
        .clone()
        .with_faults(plan(FaultKind::L2Flush, Target::L2, 20, 0))
        .unwrap();
    identical_until(&plain, &flush, 9, before(20));
    let reads_between = |topo: &Topology, from: u64, to: u64| {
        let mut w = world_at(topo, 9, secs(from));
        let r0 = point_reads(&w);
        w.run_until(secs(to));
        point_reads(&w) - r0
    };
    let before = reads_between(&flush, 18, 20);
    let after_plain = reads_between(&plain, 20, 22);
    let after = reads_between(&flush, 20, 22);
    assert!(
        after > 3 * after_plain,
        "flush: {after} vs {after_plain} point reads in 2s"
    );
    assert!(
        after > 3 * before,
        "flush: {after} after vs {before} before"
    );
    let w = world_at(&flush, 9, secs(40));
    let Some(Part::L2(l2)) = w.l2.map(|id| w.sim.component(id)) else {
        unreachable!()
    };
    assert!(l2.stats().cache.flushed > 0);

    let loss = plain
        .clone()
        .with_faults(plan(FaultKind::L2Loss, Target::L2, 20, 5))
        .unwrap();
    let during = reads_between(&loss, 21, 25);
    let plain_during = reads_between(&plain, 21, 25);
    assert!(
        during > 5 * plain_during,
        "loss: {during} vs {plain_during}"
    );
    let mut w = world_at(&loss, 9, secs(25));
    let Some(Part::L2(l2)) = w.l2.map(|id| w.sim.component(id)) else {
        unreachable!()
    };
    assert!(l2.is_empty(), "comes back empty");
    assert!(!l2.is_down());
    assert!(l2.stats().refused_down > 0);
    w.run_until(secs(30));
    let r0 = point_reads(&w);
    w.run_until(secs(32));
    let late = point_reads(&w) - r0;
    let plain_late = reads_between(&plain, 30, 32);
    assert!(
        late < 2 * plain_late,
        "warm again after the loss: {late} vs {plain_late}"
    );
}

/// Crashed workers' tasks are redelivered after the lease, every instance still reaches
/// Running, and no dependency record is created twice.
#[test]
fn worker_crash_redelivers_without_duplicates() {
    use firedrill::workflow::EngineConfig;
    use firedrill::world::WorkflowSetup;
    let mut t = traffic(
        20.0,
        ApiMix::only(Api::RunInstances),
        3,
        SimDuration::from_secs(30),
    );
    t.amount = Dist::constant(2.0).unwrap();
    let node = plain_node();
    let plain = topology(2, node, DbConfig::assumed_defaults(), t, unlimited(3), 20)
        .with_workflows(WorkflowSetup {
            engine: EngineConfig::builder().build().unwrap(),
            batch: true,
        })
        .unwrap();
    let faulty = plain
        .clone()
        .with_faults(plan(
            FaultKind::WorkerCrash { workers: 8 },
            Target::Workflow,
            10,
            0,
        ))
        .unwrap();
    let run = |topo: &Topology| {
        let mut w = topo.build(RootSeed::new(4));
        quiet_deps(&mut w, None);
        let rep = w.run();
        (w.result(rep, topo.duration()), w)
    };
    let (ra, _) = run(&plain);
    let (rb, wb) = run(&faulty);
    let wa = ra.workflows.as_ref().unwrap();
    let wf = rb.workflows.as_ref().unwrap();
    assert_eq!(wf.crashes, 8);
    assert!(wf.tasks_lost > 0 && wf.tasks_lost <= 8, "{}", wf.tasks_lost);
    assert_eq!(wf.redeliveries, wf.tasks_lost);
    // Redelivered when the lost task's lease (30 s, renewed while it ran) runs out.
    let delay = &wf.redelivery_delay;
    assert!(delay.min_ns().unwrap() > 0);
    assert!(
        delay.max_ns().unwrap() <= 30_000_000_000,
        "{:?}",
        delay.max_ns()
    );
    assert_eq!(wa.crashes, 0);
    let ok = rb.api(Api::RunInstances).count(Status::Ok);
    let rows = db(&wb).table_rows(firedrill::db::Table::Instances);
    assert_eq!(rows, ok * 2);
    let running = db(&wb)
        .instance_rows()
        .filter(|r| r.state == firedrill::api::types::InstanceState::Running)
        .count() as u64;
    assert_eq!(running, rows, "every instance Running");
    // One host record per instance at the inventory: none created twice.
    let inv = rb.deps.iter().find(|(n, _)| n == "inventory").unwrap();
    assert_eq!(inv.1.records_created, rows, "{:?}", inv.1);
}

/// A surge multiplies the arrival rate inside its window: the requests of the window are
/// rate · duration · m within Poisson tolerance; before and after it, as without it.
#[test]
fn traffic_surge_multiplies_arrivals_in_the_window() {
    let m = ApiMix::only(Api::DescribeInstanceStatus);
    let plain = base(200.0, m, 4, DbConfig::assumed_defaults(), unlimited(4), 30).with_series(true);
    let faulty = plain
        .clone()
        .with_faults(plan(
            FaultKind::TrafficSurge { multiply: 3.0 },
            Target::Traffic,
            10,
            10,
        ))
        .unwrap();
    identical_until(&plain, &faulty, 11, before(10));
    let count = |topo: &Topology, from: f64, to: f64| {
        let mut w = world_at(topo, 11, secs(40));
        let r = w.run();
        let res = w.result(r, topo.duration());
        res.series
            .unwrap()
            .rows()
            .iter()
            .filter(|r| (from..to).contains(&r.start.since_start().as_secs_f64()))
            .map(|r| r.requests)
            .sum::<u64>()
    };
    let inside = count(&faulty, 10.0, 20.0) as f64;
    let expected = 200.0 * 10.0 * 3.0;
    assert!(
        (inside - expected).abs() < 4.0 * expected.sqrt() + 30.0,
        "{inside} requests in the window, expected {expected}"
    );
    let plain_inside = count(&plain, 10.0, 20.0) as f64;
    assert!((plain_inside - 2_000.0).abs() < 4.0 * 2_000f64.sqrt() + 30.0);
    let after = count(&faulty, 21.0, 30.0) as f64;
    assert!(
        (after - 1_800.0).abs() < 4.0 * 1_800f64.sqrt() + 30.0,
        "after: {after}"
    );
    let w = world_at(&faulty, 11, secs(40));
    let Part::Traffic(t) = w.sim.component(w.traffic) else {
        unreachable!()
    };
    assert!(t.faults().surged_requests as f64 > expected * 0.9);
}

/// A ramped surge under a time-varying rate profile (thinning): the window's requests follow
/// the product of the profile and the ramp's steps, and the run is identical before it.
#[test]
fn ramped_traffic_surge_composes_with_a_rate_profile() {
    use firedrill::traffic::RateProfile;
    let m = ApiMix::only(Api::DescribeInstanceStatus);
    let mut plain = base(200.0, m, 4, DbConfig::assumed_defaults(), unlimited(4), 30);
    let mut t = plain.traffic().clone();
    t.profile = RateProfile::steps(vec![
        (SimDuration::ZERO, 1.0),
        (SimDuration::from_secs(15), 2.0),
    ])
    .unwrap();
    let node = plain_node();
    plain = topology(2, node, DbConfig::assumed_defaults(), t, unlimited(4), 30).with_series(true);
    let faulty = plain
        .clone()
        .with_faults(FaultPlan::new(vec![
            Fault::new(
                FaultKind::TrafficSurge { multiply: 3.0 },
                Target::Traffic,
                secs(10),
                SimDuration::from_secs(10),
            )
            .unwrap()
            .with_ramp(SimDuration::from_secs(5))
            .unwrap(),
        ]))
        .unwrap();
    identical_until(&plain, &faulty, 15, before(10));
    let mut w = world_at(&faulty, 15, secs(40));
    let rep = w.run();
    let res = w.result(rep, faulty.duration());
    let inside: u64 = res
        .series
        .unwrap()
        .rows()
        .iter()
        .filter(|r| (10.0..20.0).contains(&r.start.since_start().as_secs_f64()))
        .map(|r| r.requests)
        .sum();
    // [10 s, 15 s): profile 1, ramp steps of 0.5 s at 1 + 2·k/10 (k = 1..10): 200 × 10.5;
    // [15 s, 20 s): profile 2 × surge 3: 200 × 30.
    let expected = 200.0 * 10.5 + 200.0 * 30.0;
    assert!(
        (inside as f64 - expected).abs() < 4.0 * expected.sqrt() + 30.0,
        "{inside} requests in the window, expected {expected}"
    );
}

/// A hot tenant issues its share of the requests; per-account quotas then throttle it (and
/// only in its window).
#[test]
fn hot_tenant_takes_its_share_and_gets_throttled() {
    let limits = Api::ALL.map(|_| Limit::FixedWindow {
        max: 1_200,
        window: SimDuration::MINUTE,
    });
    let throttle = Throttle::new(limits, Limit::Unlimited, 20).unwrap();
    let m = ApiMix::only(Api::DescribeInstanceStatus);
    let plain = base(200.0, m, 20, DbConfig::assumed_defaults(), throttle, 60);
    let kind = FaultKind::HotTenant {
        account: 7,
        share: 0.5,
    };
    let faulty = plain
        .clone()
        .with_faults(plan(kind, Target::Traffic, 10, 30))
        .unwrap();
    identical_until(&plain, &faulty, 12, before(10));
    let nobody = FaultKind::HotTenant {
        account: 20,
        share: 0.5,
    };
    let err = plain
        .clone()
        .with_faults(plan(nobody, Target::Traffic, 10, 30))
        .unwrap_err();
    assert!(
        err.to_string().contains("account 20 does not exist"),
        "{err}"
    );
    let a = world_at(&plain, 12, secs(70));
    let mut b = world_at(&faulty, 12, secs(10));
    let sent0 = match b.sim.component(b.traffic) {
        Part::Traffic(t) => t.sent(),
        _ => unreachable!(),
    };
    b.run_until(secs(70));
    let Part::Traffic(t) = b.sim.component(b.traffic) else {
        unreachable!()
    };
    let hot = t.faults().hot_requests as f64;
    // The requests generated from 10 s on (the window and 20 s after it, at 200/s): the hot
    // tenant's are half of the window's 30 s.
    let window = (t.sent() - sent0) as f64 * 30.0 / 50.0;
    let share = hot / window;
    assert!((share - 0.5).abs() < 0.03, "hot share {share}");
    let throttled = |w: &mut World| {
        w.gateway_mut()
            .throttle()
            .throttled(Api::DescribeInstanceStatus)
    };
    let mut a = a;
    assert_eq!(
        throttled(&mut a),
        0,
        "no account reaches 1,200/min without the fault"
    );
    // The hot account sends ≈ 100/s + 5/s in the window: 3,150 in 30 s over at most two
    // fixed minutes, so at least 3,150 − 2 × 1,200 are throttled.
    let th = throttled(&mut b);
    assert!(th > 500 && th < 3_200, "throttled {th}");
}

/// Clients without backoff retry at once: during a failover every failed write is retried
/// four times on the spot (a retry storm, every attempt failing), where backoff of 1, 2, 4 and
/// 8 s sends far fewer retries into the window and lets most calls succeed after it.
#[test]
fn client_no_backoff_turns_retries_into_a_storm() {
    let m = ApiMix::only(Api::RunInstances);
    let backoff = Backoff::Exponential {
        base: SimDuration::from_secs(1),
        cap: SimDuration::from_secs(8),
        jitter: firedrill::deps::Jitter::None,
    };
    let failover = Fault::new(
        FaultKind::DbFailover,
        Target::Db,
        secs(10),
        SimDuration::from_secs(2),
    )
    .unwrap();
    let plain = base(100.0, m, 4, DbConfig::assumed_defaults(), unlimited(4), 30)
        .with_client(ClientConfig {
            retry: Some(ClientRetry::new(5, backoff, &[ErrorCode::ServiceUnavailable]).unwrap()),
            ..ClientConfig::default()
        })
        .unwrap();
    let with_backoff = plain
        .clone()
        .with_faults(FaultPlan::new(vec![failover.clone()]))
        .unwrap();
    let storm = plain
        .clone()
        .with_faults(FaultPlan::new(vec![
            failover,
            Fault::new(
                FaultKind::ClientNoBackoff,
                Target::Traffic,
                secs(5),
                SimDuration::from_secs(25),
            )
            .unwrap(),
        ]))
        .unwrap();
    identical_until(&with_backoff, &storm, 13, before(10));
    let client = |w: &World| match w.sim.component(w.traffic) {
        Part::Traffic(t) => (
            t.client_stats().unwrap().clone(),
            t.faults().immediate_retries,
        ),
        _ => unreachable!(),
    };
    let retries = |c: &firedrill::traffic::ClientStats| c.retries.iter().sum::<u64>();
    let window = |topo: &Topology| {
        let mut w = world_at(topo, 13, secs(10));
        let (c0, _) = client(&w);
        w.run_until(before(12));
        let (c1, _) = client(&w);
        w.run_until(secs(60));
        let (c2, immediate) = client(&w);
        (
            retries(&c1) - retries(&c0),
            c1.first_attempts - c0.first_attempts,
            c2,
            immediate,
        )
    };
    let (r_backoff, firsts, c_backoff, i_backoff) = window(&with_backoff);
    let (r_storm, firsts_storm, c_storm, i_storm) = window(&storm);
    assert_eq!(firsts, firsts_storm, "the same calls");
    assert_eq!(i_backoff, 0);
    assert_eq!(i_storm, retries(&c_storm), "every retry went out at once");
    // Every call of the 2 s window (100/s) fails its 5 attempts at once: 4 retries each,
    // about 800 (4 × Poisson(200): 4σ ≈ 230).
    assert!(
        (r_storm as f64 - 800.0).abs() < 230.0,
        "{r_storm} retries in the window"
    );
    // With backoff (retries counted when scheduled): each failed call of the window schedules
    // its first retry, and only those of the first second fail once more inside it (≈ 300).
    assert!(
        r_storm > 2 * r_backoff,
        "retries in the window: {r_storm} without backoff vs {r_backoff} with"
    );
    assert!(
        (c_storm.give_ups as f64 - 200.0).abs() < 60.0,
        "{} give-ups",
        c_storm.give_ups
    );
    assert!(
        c_backoff.give_ups < c_storm.give_ups / 4,
        "{}",
        c_backoff.give_ups
    );
    assert_eq!(c_storm.backoff.min_ns(), Some(0));
}

/// Quotas set too low throttle calls during the window only; the throttled amount is what the
/// scaled limit leaves over.
#[test]
fn quota_too_low_throttles_only_in_its_window() {
    let limits = Api::ALL.map(|_| Limit::FixedWindow {
        max: 6_000,
        window: SimDuration::MINUTE,
    });
    let throttle = Throttle::new(limits, Limit::Unlimited, 2).unwrap();
    let m = ApiMix::only(Api::DescribeInstanceStatus);
    let plain = base(100.0, m, 2, DbConfig::assumed_defaults(), throttle, 180);
    let faulty = plain
        .clone()
        .with_faults(plan(
            FaultKind::QuotaTooLow { factor: 0.1 },
            Target::Gateway,
            60,
            60,
        ))
        .unwrap();
    identical_until(&plain, &faulty, 14, before(60));
    let mut a = world_at(&plain, 14, secs(200));
    let mut b = world_at(&faulty, 14, secs(200));
    let api = Api::DescribeInstanceStatus;
    assert_eq!(a.gateway_mut().throttle().throttled(api), 0);
    let th = b.gateway_mut().throttle().throttled(api);
    assert_eq!(b.gateway_mut().throttle().throttled_under_fault(), th);
    // One fixed minute [60 s, 120 s) at 600 calls per account: about 6,000 − 2 × 600.
    let expected = 6_000.0 - 1_200.0;
    assert!(
        (th as f64 - expected).abs() < 4.0 * 6_000f64.sqrt() + 20.0,
        "throttled {th}, expected about {expected}"
    );
    assert_eq!(b.gateway_mut().throttle().quota_factor(), 1.0);

    // Ramped over 10 s: 3 s in is step 4 of 10, a factor of 1 − 0.9 × 0.4.
    let ramped = plain
        .clone()
        .with_faults(FaultPlan::new(vec![
            Fault::new(
                FaultKind::QuotaTooLow { factor: 0.1 },
                Target::Gateway,
                secs(60),
                SimDuration::from_secs(60),
            )
            .unwrap()
            .with_ramp(SimDuration::from_secs(10))
            .unwrap(),
        ]))
        .unwrap();
    let mut w = world_at(&ramped, 14, secs(63));
    let f = w.gateway_mut().throttle().quota_factor();
    assert!((f - 0.64).abs() < 1e-12, "factor {f}");
    assert_eq!(
        w.gateway_mut().throttle().limit(api),
        Limit::FixedWindow {
            max: 3_840,
            window: SimDuration::MINUTE
        }
    );
}

/// node.0 cut from the L2 from 20 s for 5 s (500 requests/s, 95% by-id reads through the
/// cache): node.0's L2 calls (and their replies) are lost. Each cache read whose call is lost
/// gives up after the node's 200 ms `l2_timeout` and reads the database instead, so no request
/// fails or hangs, no worker stays held, and node.1 never times out. Before the window the run
/// is the run without the fault.
#[test]
fn partition_node_from_l2_times_out_its_cache_calls_and_reads_the_database() {
    let m = mix(&[
        (Api::RunInstances, 5.0),
        (Api::DescribeInstanceStatus, 95.0),
    ]);
    let plain = cached(base(
        500.0,
        m,
        10,
        DbConfig::assumed_defaults(),
        unlimited(10),
        40,
    ));
    let cut = plain
        .clone()
        .with_faults(FaultPlan::new(vec![
            Fault::new(
                FaultKind::Partition { peer: Target::L2 },
                Target::Node(0),
                secs(20),
                SimDuration::from_secs(5),
            )
            .unwrap(),
        ]))
        .unwrap();
    identical_until(&plain, &cut, 4, before(20));
    let reads = |topo: &Topology, from: u64, to: u64| {
        let mut w = world_at(topo, 4, secs(from));
        let r0 = point_reads(&w);
        w.run_until(secs(to));
        point_reads(&w) - r0
    };
    let during = reads(&cut, 21, 25);
    let plain_during = reads(&plain, 21, 25);
    assert!(
        during > 2 * plain_during,
        "node.0's reads go to the database: {during} vs {plain_during}"
    );
    let mut w = world_at(&cut, 4, secs(20));
    let busy_before = w.node_mut(0).in_flight();
    w.run_until(before(25));
    let timeouts_in_window = w
        .sim
        .metrics()
        .counters()
        .into_iter()
        .find(|(n, _)| *n == "node.0.l2_timeouts")
        .map_or(0, |(_, v)| v);
    assert!(timeouts_in_window > 100, "{timeouts_in_window} timeouts");
    // Nothing is held past the window and its last timeouts.
    w.run_until(secs(26));
    assert!(
        w.node_mut(0).in_flight() <= busy_before + 20,
        "{} in flight at 26 s, {busy_before} at 20 s",
        w.node_mut(0).in_flight()
    );
    let report = w.run();
    let r = w.result(report, cut.duration());
    let dropped = r.counter("faults.0.partition_dropped");
    let timeouts = r.counter("node.0.l2_timeouts");
    // A lost get or lost reply is one timeout; lost fills and deletes (no reply awaited) none.
    assert!(timeouts <= dropped && timeouts >= timeouts_in_window);
    assert_eq!(r.counter("node.1.l2_timeouts"), 0);
    for a in [Api::DescribeInstanceStatus, Api::RunInstances] {
        let api = r.api(a);
        assert!(api.count(Status::Ok) > 0);
        for e in ErrorCode::ALL {
            if e.http_status() >= 500 || e == ErrorCode::DeadlineExceeded {
                assert_eq!(api.count(Status::Err(e)), 0, "{a:?} {e:?}");
            }
        }
    }
    assert_eq!(r.counter("node.0.deadline_aborts"), 0);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

/// The binlog invalidator's statistics of a world.
fn feed(w: &World) -> firedrill::cache::FeedStats {
    let id = w.invalidator.expect("binlog invalidation");
    match w.sim.component(id) {
        Part::Invalidator(i) => i.stats().clone(),
        _ => unreachable!(),
    }
}

/// Four nodes writing their rows (30% RunInstances, 20% DeleteInstance, 50% status reads at
/// 200 a second for 40 s) with the cache: with writer invalidation, and with binlog
/// invalidation (a constant 20 ms feed lag).
fn writer_and_binlog_topologies() -> (Topology, Topology) {
    use firedrill::cache::{FeedConfig, Invalidation};
    let m = mix(&[
        (Api::RunInstances, 30.0),
        (Api::DeleteInstance, 20.0),
        (Api::DescribeInstanceStatus, 50.0),
    ]);
    let writers = cached(base(
        200.0,
        m,
        4,
        DbConfig::assumed_defaults(),
        unlimited(4),
        40,
    ));
    let mut setup = writers.cache().unwrap().clone();
    setup.invalidation = Invalidation::Binlog(FeedConfig::with_lag(Dist::constant(0.02).unwrap()));
    let binlog = writers.clone().with_cache(setup);
    (writers, binlog)
}

/// A binlog lag delays the change feed by `lag` during its window only: no change reaches the
/// invalidator late before it or after it, and every change made in it comes `lag` (plus the
/// feed's own 20 ms and the L2's answer) late; a ramp scales it; without binlog
/// invalidation there is no feed to delay and the fault is refused.
#[test]
fn binlog_lag_delays_the_change_feed_only_during_the_window() {
    let (writers, plain) = writer_and_binlog_topologies();
    let kind = FaultKind::BinlogLag {
        lag: SimDuration::from_secs(3),
    };
    let err = writers
        .with_faults(plan(kind.clone(), Target::Db, 10, 10))
        .unwrap_err();
    assert!(
        err.to_string().contains("invalidation = \"binlog\""),
        "{err}"
    );

    let faulty = plain
        .clone()
        .with_faults(plan(kind.clone(), Target::Db, 10, 10))
        .unwrap();
    identical_until(&plain, &faulty, 7, before(10));
    let ms = |ns: u64| ns / 1_000_000;
    let a = feed(&world_at(&plain, 7, secs(80)));
    assert!(a.acked > 500, "{}", a.acked);
    assert_eq!(a.acked, a.changes);
    // The feed's 20 ms, a hop each way and the L2's service: well under 100 ms.
    assert!(ms(a.delivery.max_ns().unwrap()) < 100);

    let before_start = feed(&world_at(&faulty, 7, before(10)));
    assert!(ms(before_start.delivery.max_ns().unwrap()) < 100);
    let mut w = world_at(&faulty, 7, secs(15));
    assert_eq!(db(&w).feed_fault_lag(), SimDuration::from_secs(3));
    w.run_until(secs(80));
    assert_eq!(db(&w).feed_fault_lag(), SimDuration::ZERO);
    let b = feed(&w);
    assert_eq!(b.acked, b.changes);
    let late = b.delivery.max_ns().unwrap();
    assert!((3_020..3_100).contains(&ms(late)), "{}", ms(late));
    // A quarter of the changes came in the window (10 s of 40), each 3 s late.
    let p60 = b.delivery.quantile_ns(0.6).unwrap();
    assert!(ms(p60) < 100, "{}", ms(p60));
    let p80 = b.delivery.quantile_ns(0.8).unwrap();
    assert!((3_020..3_100).contains(&ms(p80)), "{}", ms(p80));

    // Ramped over 4 s: 2.5 s in is step 7 of 10, a lag of 0.7 × 3 s.
    let w = ramped_db_fault_at_2_5_s(&plain, kind);
    assert_eq!(db(&w).feed_fault_lag(), SimDuration::from_ms(2_100));
}

/// The binlog invalidator cut off from the L2 for 5 s from 10 s: its deletes and their answers
/// are dropped, each attempt times out after 200 ms and goes out again, and the first after the
/// cut lands, so every change is acknowledged and none is dropped or expires; a delete's
/// delivery then takes up to the cut's length. The run is the same as without the fault up to
/// 10 s, the nodes' own L2 traffic is untouched, and no invariant breaks (cache staleness
/// among them). Without binlog invalidation there is no invalidator to cut off.
#[test]
fn an_invalidator_cut_off_from_the_l2_retries_its_deletes_until_the_cut_heals() {
    let (writers, plain) = writer_and_binlog_topologies();
    let kind = FaultKind::Partition { peer: Target::L2 };
    let err = writers
        .with_faults(plan(kind.clone(), Target::Invalidator, 10, 5))
        .unwrap_err();
    assert!(
        err.to_string().contains("invalidation = \"binlog\""),
        "{err}"
    );
    // Not from the database: a binlog consumer resumes where it was (that is `binlog_lag`).
    let from_db = Fault::new(
        FaultKind::Partition { peer: Target::Db },
        Target::Invalidator,
        secs(10),
        SimDuration::from_secs(5),
    )
    .unwrap_err();
    assert!(
        from_db
            .to_string()
            .contains("invalidator (peer: l2 or node.<i>)"),
        "{from_db}"
    );

    let cut = plain
        .clone()
        .with_faults(plan(kind, Target::Invalidator, 10, 5))
        .unwrap();
    identical_until(&plain, &cut, 7, before(10));
    let ms = |ns: u64| ns / 1_000_000;
    let a = feed(&world_at(&plain, 7, secs(80)));
    assert_eq!(a.timeouts, 0);
    assert!(ms(a.delivery.max_ns().unwrap()) < 100);

    let mut w = world_at(&cut, 7, secs(15));
    let during = feed(&w);
    w.run_until(secs(80));
    let b = feed(&w);
    // Each change of the cut (the deletes: a few dozen a second) is sent again every 200 ms
    // while it lasts, up to 25 times.
    assert!(during.timeouts > 1_000, "{}", during.timeouts);
    assert!(b.retries >= b.timeouts && b.timeouts >= during.timeouts);
    assert_eq!(b.acked, b.changes, "every delete lands after the cut");
    assert_eq!((b.expired, b.dropped), (0, 0));
    let late = ms(b.delivery.max_ns().unwrap());
    // A change at 10 s + 20 ms lands with the first attempt after 15 s.
    assert!((4_900..5_300).contains(&late), "{late}");
    let report = w.run();
    let r = w.result(report, cut.duration());
    assert!(r.counter("faults.0.partition_dropped") >= during.timeouts);
    for i in 0..4 {
        assert_eq!(r.counter(&format!("node.{i}.l2_timeouts")), 0, "node.{i}");
    }
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}
