//! The control-plane core end to end (traffic → gateway → API nodes → database and
//! dependencies): behaviour a capacity planner relies on, checked against theory or exact counts.

use firedrill::analytic::Mmck;
use firedrill::api::lb::LbPolicy;
use firedrill::api::node::{NodeConfig, NodeConfigBuilder};
use firedrill::api::throttle::{Limit, Throttle};
use firedrill::api::types::{
    AccountId, Api, ErrorCode, InstanceType, Params, Request, RequestId, Status,
};
use firedrill::db::DbConfig;
use firedrill::deps::{DependencyKind, FaultCode, Jitter, RetryOn, RetryPolicy};
use firedrill::gc::{GcProfile, HeapConfig, HeapSpec, MIB, PauseKind};
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime, check_determinism};
use firedrill::traffic::{ApiMix, OpenLoopConfig, RateProfile, TypeMix};
use firedrill::world::{Part, RunResult, Topology, World, shipped_mocks};

pub(crate) fn traffic(
    rate_per_s: f64,
    mix: ApiMix,
    accounts: u32,
    timeout: SimDuration,
) -> OpenLoopConfig {
    OpenLoopConfig {
        inter_arrival: Dist::exponential(1.0 / rate_per_s).unwrap(),
        profile: RateProfile::constant(),
        mix,
        accounts,
        account_skew: None,
        amount: Dist::constant(1.0).unwrap(),
        instance_types: TypeMix::uniform(1).expect("valid"),
        timeout,
        until: SimTime::ZERO,
        describe_list_share: 0.0,
        min_amount_fraction: 0.0,
        tokens: firedrill::traffic::TokenPolicy::NONE,
    }
}

pub(crate) fn unlimited(accounts: u32) -> Throttle {
    Throttle::new([Limit::Unlimited; Api::COUNT], Limit::Unlimited, accounts).unwrap()
}

/// State writes among by-id reads: CreateInstance 10, StartInstance 10, DeleteInstance 5,
/// DescribeInstanceStatus 75. Without workflows CreateInstance inserts Stopped rows; Start and
/// (forced) Delete write their state at once.
pub(crate) fn state_write_mix() -> ApiMix {
    let mut mix = [0.0; Api::COUNT];
    mix[Api::CreateInstance.index()] = 10.0;
    mix[Api::StartInstance.index()] = 10.0;
    mix[Api::DeleteInstance.index()] = 5.0;
    mix[Api::DescribeInstanceStatus.index()] = 75.0;
    ApiMix::new(mix).unwrap()
}

/// 1,000 calls/s from 20 accounts (30 s timeout): RunInstances 5, DescribeInstanceStatus 95 —
/// by-id reads of the instances the runs create (the traffic a cache serves).
pub(crate) fn cached_reads_traffic() -> OpenLoopConfig {
    let mut mix = [0.0; Api::COUNT];
    mix[Api::RunInstances.index()] = 5.0;
    mix[Api::DescribeInstanceStatus.index()] = 95.0;
    traffic(
        1_000.0,
        ApiMix::new(mix).unwrap(),
        20,
        SimDuration::from_secs(30),
    )
}

/// A database that answers at once and never queues: isolates the nodes' own queueing.
pub(crate) fn instant_db() -> DbConfig {
    DbConfig::builder()
        .latency_all(Dist::constant(0.0).unwrap())
        .max_concurrent(100_000)
        .build()
        .unwrap()
}

/// The shipped mocks with `stock` hosts of instance type 0 at the inventory.
fn mocks_with_stock(stock: u64) -> Vec<firedrill::deps::DependencySpec> {
    shipped_mocks()
        .into_iter()
        .map(|m| {
            if m.kind() != DependencyKind::Inventory {
                return m;
            }
            let text = include_str!("../../mocks/inventory.toml")
                .replace("0 = 5000000", &format!("0 = {stock}"));
            firedrill::deps::parse_mock("inventory.toml", &text).unwrap()
        })
        .collect()
}

/// Switches off every injected dependency error, except `keep` = (kind, code, probability).
pub(crate) fn quiet_deps(world: &mut World, keep: Option<(DependencyKind, FaultCode, f64)>) {
    for &id in &world.deps.clone() {
        if let Part::Dep(d) = world.sim.component_mut(id) {
            let kind = d.spec().kind();
            for code in FaultCode::ALL {
                let p = match keep {
                    Some((k, c, p)) if k == kind && c == code => p,
                    _ => 0.0,
                };
                d.set_error_override(code, Some(p));
            }
        }
    }
}

/// A counter of `world`'s registry now (mid-run; 0 before its first count).
pub(crate) fn counter_now(world: &World, name: &str) -> u64 {
    world
        .sim
        .metrics()
        .counters()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| v)
}

pub(crate) fn heap(profile: GcProfile) -> HeapConfig {
    HeapConfig::defaults_for(profile)
}

/// A Parallel heap whose old generation fills every few seconds at 400 calls/s allocating
/// 256 KiB each (half surviving): full GCs of ≈0.3 s.
pub(crate) fn full_gc_heap() -> HeapConfig {
    HeapSpec {
        eden_bytes: 256 * MIB,
        survivor_bytes: 0,
        old_bytes: 512 * MIB,
        survival_ratio: 0.5,
        young_pause_base: SimDuration::from_us(200),
        young_pause_per_mib_surviving: SimDuration::from_us(1),
        live_set_bytes: 256 * MIB,
        ..HeapSpec::defaults_for(GcProfile::Parallel)
    }
    .build()
    .unwrap()
}

/// A node with a pool of one connection (50 ms acquire timeout, no CPU time) and a database
/// answering every query in 100 ms: at most 10 requests/s get a connection.
pub(crate) fn one_connection_and_a_100ms_db() -> (NodeConfig, DbConfig) {
    let node = NodeConfigBuilder::new(heap(GcProfile::Off))
        .pool(1, 1_000, SimDuration::from_ms(50))
        .cpu_all(Dist::constant(0.0).unwrap())
        .build()
        .unwrap();
    let db = DbConfig::builder()
        .latency_all(Dist::constant(0.1).unwrap())
        .build()
        .unwrap();
    (node, db)
}

/// One account throttled by a fixed one-minute window of 200 calls on every API.
pub(crate) fn fixed_window_200_a_minute() -> Throttle {
    let limits = [Limit::FixedWindow {
        max: 200,
        window: SimDuration::MINUTE,
    }; Api::COUNT];
    Throttle::new(limits, Limit::Unlimited, 1).unwrap()
}

/// An L2 of 100,000 entries answering in 0.3 ms, "not found" kept 1 s, L1 invalidations
/// 50 ms after a write, in front of `l1`, with `l2_ttl`.
pub(crate) fn fast_l2_cache(
    l1: firedrill::cache::L1Config,
    l2_ttl: SimDuration,
) -> firedrill::world::CacheSetup {
    firedrill::world::CacheSetup {
        l1,
        l2: firedrill::cache::L2Config::builder()
            .capacity(100_000)
            .latency(Dist::constant(0.000_3).unwrap())
            .build()
            .unwrap(),
        l2_ttl,
        l2_negative_ttl: SimDuration::from_secs(1),
        invalidation_delay: Dist::constant(0.05).unwrap(),
        invalidation: firedrill::cache::Invalidation::Writer,
    }
}

/// A 10,000-entry L1 (soft TTL 30 s, hard 60 s) over the default 100,000-entry L2 (TTL 60 s),
/// invalidations 10 to 100 ms after a write.
pub(crate) fn default_cache() -> firedrill::world::CacheSetup {
    use firedrill::cache::{L1Config, L2Config};
    firedrill::world::CacheSetup {
        l1: L1Config::builder()
            .capacity(10_000)
            .ttl(SimDuration::from_secs(30), SimDuration::from_secs(60))
            .build()
            .unwrap(),
        l2: L2Config::builder().capacity(100_000).build().unwrap(),
        l2_ttl: SimDuration::from_secs(60),
        l2_negative_ttl: SimDuration::from_secs(1),
        invalidation_delay: Dist::uniform(0.01, 0.1).unwrap(),
        invalidation: firedrill::cache::Invalidation::Writer,
    }
}

/// `topo` with the workflow engine at its defaults and RunInstances run as per-instance
/// sub-workflows, when `on`; unchanged otherwise.
pub(crate) fn maybe_sequential_workflows(
    topo: firedrill::world::Topology,
    on: bool,
) -> firedrill::world::Topology {
    if !on {
        return topo;
    }
    topo.with_workflows(firedrill::world::WorkflowSetup {
        engine: firedrill::workflow::EngineConfig::builder()
            .build()
            .unwrap(),
        batch: false,
    })
    .unwrap()
}

/// A node with every default and no GC (the node most tests want).
pub(crate) fn plain_node() -> NodeConfig {
    NodeConfigBuilder::new(heap(GcProfile::Off))
        .build()
        .unwrap()
}

pub(crate) fn topology(
    nodes: u32,
    node: NodeConfig,
    db: DbConfig,
    t: OpenLoopConfig,
    throttle: Throttle,
    secs: u64,
) -> Topology {
    Topology::new(
        nodes,
        node,
        LbPolicy::RoundRobin,
        throttle,
        db,
        shipped_mocks(),
        t,
        SimDuration::from_secs(secs),
    )
    .unwrap()
}

/// Builds the world twice, applies `setup` (fault hooks) to each, runs both and checks they
/// processed the same events (same trace hash): every topology of this file is deterministic.
pub(crate) fn run_checked(
    topo: &Topology,
    seed: u64,
    setup: impl Fn(&mut World),
) -> (RunResult, World) {
    let mut runs = (0..2).map(|_| {
        let mut world = topo.build(RootSeed::new(seed));
        setup(&mut world);
        let report = world.run();
        (world.result(report, topo.duration()), world)
    });
    let (a, world) = runs.next().unwrap();
    let (b, _) = runs.next().unwrap();
    assert_eq!(
        a.trace_hash(),
        b.trace_hash(),
        "same topology, same seed, same trace"
    );
    assert!(a.ended_normally(), "{}", a.report.outcome);
    (a, world)
}

fn run(topo: &Topology, seed: u64) -> RunResult {
    run_checked(topo, seed, |_| {}).0
}

/// One node with c workers and K − c accept-queue slots, exponential CPU and nothing else: an
/// M/M/c/K station. Its 503s must come at the Erlang blocking rate, its admitted latency at the
/// M/M/c/K mean.
#[test]
fn accept_queue_and_workers_reject_at_the_mmck_rate() {
    let (c, k, lam, mu) = (8u32, 16u32, 7.2, 1.0);
    let node = NodeConfigBuilder::new(heap(GcProfile::Off))
        .workers(c)
        .cores(c)
        .accept_queue(k - c)
        .cpu_all(Dist::exponential(1.0 / mu).unwrap())
        .hops(SimDuration::ZERO, SimDuration::ZERO, SimDuration::ZERO)
        .pool(c, c, SimDuration::from_secs(1))
        .shed_expired(false)
        .build()
        .unwrap();
    let t = traffic(
        lam,
        ApiMix::only(Api::DescribeInstanceStatus),
        10,
        SimDuration::from_secs(86_400),
    );
    let topo = topology(1, node, instant_db(), t, unlimited(10), 60_000);
    let exact = Mmck::new(c, k, lam, mu).unwrap();
    let (mut blocked, mut total, mut mean_sum, mut n) = (0u64, 0u64, 0.0, 0.0);
    for seed in 1..=4 {
        let r = run(&topo, seed);
        assert!(r.ended_normally(), "{}", r.report.outcome);
        let a = r.api(Api::DescribeInstanceStatus);
        blocked += a.count(Status::Err(ErrorCode::ServiceUnavailable));
        total += a.requests;
        // Admitted requests answer NotFound (no instance exists): their latency is the station's.
        assert_eq!(
            a.requests,
            a.count(Status::Err(ErrorCode::ServiceUnavailable))
                + a.count(Status::Err(ErrorCode::InstanceNotFound))
        );
        mean_sum += r.nodes[0].latency.mean_ns().unwrap() * 1e-9;
        n += 1.0;
    }
    let p_block = blocked as f64 / total as f64;
    let se = (exact.p_block * (1.0 - exact.p_block) / total as f64).sqrt();
    // Blocking events are correlated (busy periods): allow 4 se of a sample 5× smaller.
    assert!(
        (p_block - exact.p_block).abs() < 4.0 * se * 5f64.sqrt(),
        "p_block {p_block} vs {} (se {se}, n {total})",
        exact.p_block
    );
    // The node records the latency of the requests its workers served (the 503s are not).
    let admitted_mean = mean_sum / n;
    assert!(
        (admitted_mean / exact.mean_response - 1.0).abs() < 0.02,
        "W {admitted_mean} vs {}",
        exact.mean_response
    );
}

/// A node with a heap that needs full GCs shows them in its p99 (by about the pause length) while
/// the other nodes, without GC, stay flat.
#[test]
fn a_full_gc_on_one_node_raises_only_that_nodes_p99() {
    let flat = NodeConfigBuilder::new(heap(GcProfile::Off))
        .workers(200)
        .cores(8);
    let bad = flat.clone().heap(full_gc_heap()).alloc_bytes(
        Api::DescribeInstanceStatus,
        Dist::constant(256.0 * 1024.0).unwrap(),
    );
    let t = traffic(
        4_000.0,
        ApiMix::only(Api::DescribeInstanceStatus),
        100,
        SimDuration::from_secs(30),
    );
    let topo = topology(
        4,
        flat.build().unwrap(),
        DbConfig::assumed_defaults(),
        t,
        unlimited(100),
        60,
    )
    .with_node_config(0, bad.build().unwrap())
    .unwrap();
    let r = run(&topo, 7);
    assert!(r.ended_normally(), "{}", r.report.outcome);
    let gc = &r.nodes[0].gc;
    let fulls = gc.count(PauseKind::Full);
    assert!(fulls >= 5, "the bad heap had {fulls} full GCs");
    let pause_s = gc.histogram(PauseKind::Full).max_ns().unwrap() as f64 * 1e-9;
    let p99 = |i: usize| r.nodes[i].latency.quantile_ns(0.99).unwrap() as f64 * 1e-9;
    let others: Vec<f64> = (1..4).map(p99).collect();
    let other_max = others.iter().cloned().fold(0.0, f64::max);
    let other_min = others.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        other_max / other_min < 1.2,
        "GC-free nodes stay alike: {others:?}"
    );
    assert_eq!(r.nodes[1].gc.all_pauses().count(), 0);
    let rise = p99(0) - other_max;
    // Requests arriving during a pause of P wait uniformly in [0, P]: with pauses covering ~9% of
    // the time, p99 lands at ≈ 0.9 P above the base.
    assert!(
        rise > 0.5 * pause_s && rise < 1.5 * pause_s,
        "p99 rise {rise:.3}s vs full-GC pause {pause_s:.3}s"
    );
}

fn gc_load(profile: GcProfile, spec: Option<HeapSpec>) -> RunResult {
    let h = match spec {
        Some(s) => s.build().unwrap(),
        None => heap(profile),
    };
    let node = NodeConfigBuilder::new(h)
        .alloc_bytes(
            Api::DescribeInstanceStatus,
            Dist::constant(1024.0 * 1024.0).unwrap(),
        )
        .build()
        .unwrap();
    let t = traffic(
        2_000.0,
        ApiMix::only(Api::DescribeInstanceStatus),
        100,
        SimDuration::from_secs(30),
    );
    run(
        &topology(
            2,
            node,
            DbConfig::assumed_defaults(),
            t,
            unlimited(100),
            120,
        ),
        3,
    )
}

/// ZGC keeps every pause under a millisecond at a load where G1's young pauses are tens of ms.
#[test]
fn zgc_cuts_max_pause_below_a_millisecond_at_the_same_load() {
    let g1 = gc_load(GcProfile::G1, None);
    let zgc = gc_load(GcProfile::Zgc, None);
    for n in &zgc.nodes {
        assert!(n.gc.all_pauses().count() > 0, "ZGC ran cycles");
        assert!(
            n.gc.all_pauses().max_ns().unwrap() < 1_000_000,
            "ZGC max pause {}",
            n.gc.all_pauses().max_ns().unwrap()
        );
    }
    for n in &g1.nodes {
        assert!(
            n.gc.all_pauses().max_ns().unwrap() > 5_000_000,
            "G1 young pauses are longer"
        );
    }
}

/// Young-GC frequency follows eden / allocation rate: count = allocated / eden, and doubling
/// eden halves it.
#[test]
fn young_gc_frequency_follows_eden_over_allocation_rate() {
    let spec = |eden_mib: u64| HeapSpec {
        eden_bytes: eden_mib * MIB,
        ..HeapSpec::defaults_for(GcProfile::Parallel)
    };
    let small = gc_load(GcProfile::Parallel, Some(spec(256)));
    let large = gc_load(GcProfile::Parallel, Some(spec(512)));
    for (r, eden) in [(&small, 256 * MIB), (&large, 512 * MIB)] {
        for n in &r.nodes {
            let young = n.gc.count(PauseKind::Young) + n.gc.count(PauseKind::Full);
            let predicted = n.gc.bytes_allocated() / eden;
            assert!(
                young.abs_diff(predicted) <= 1,
                "young GCs {young} vs allocated/eden {predicted}"
            );
        }
    }
    let count = |r: &RunResult| {
        r.nodes
            .iter()
            .map(|n| n.gc.count(PauseKind::Young))
            .sum::<u64>() as f64
    };
    let ratio = count(&small) / count(&large);
    assert!(
        (ratio - 2.0).abs() < 0.1,
        "doubling eden halves young GCs: ratio {ratio}"
    );
}

/// The unindexed list gets slower as the instances table grows, and slow queries appear once
/// it is large; indexed point reads barely move.
#[test]
fn list_latency_grows_with_the_instances_table() {
    let node = plain_node();
    let mut mix = [0.0; Api::COUNT];
    mix[Api::RunInstances.index()] = 1.0;
    mix[Api::DescribeInstances.index()] = 1.0;
    let mut t = traffic(
        200.0,
        ApiMix::new(mix).unwrap(),
        2,
        SimDuration::from_secs(60),
    );
    t.amount = Dist::constant(100.0).unwrap();
    t.describe_list_share = 1.0;
    // An inventory with stock for every instance this test creates.
    let mocks = mocks_with_stock(50_000_000);
    let run = |secs: u64| {
        let topo = Topology::new(
            4,
            node.clone(),
            LbPolicy::RoundRobin,
            unlimited(2),
            DbConfig::assumed_defaults(),
            mocks.clone(),
            t.clone(),
            SimDuration::from_secs(secs),
        )
        .unwrap();
        let r = run(&topo, 5);
        assert!(r.ended_normally(), "{}", r.report.outcome);
        r
    };
    let short = run(10);
    let long = run(100);
    assert!(
        long.api(Api::RunInstances)
            .count(Status::Err(ErrorCode::NoStock))
            == 0
    );
    let list = |r: &RunResult| {
        r.db.class(firedrill::db::QueryClass::FilteredList)
            .latency
            .mean_ns()
            .unwrap()
    };
    let point = |r: &RunResult| {
        r.db.class(firedrill::db::QueryClass::Insert)
            .latency
            .mean_ns()
            .unwrap()
    };
    assert!(
        list(&long) > 4.0 * list(&short),
        "list mean {} → {}",
        list(&short),
        list(&long)
    );
    assert!(
        point(&long) < 1.5 * point(&short),
        "indexed insert mean {} → {}",
        point(&short),
        point(&long)
    );
    let slow = |r: &RunResult| r.db.class(firedrill::db::QueryClass::FilteredList).slow;
    assert!(
        slow(&long) > slow(&short),
        "slow lists {} → {}",
        slow(&short),
        slow(&long)
    );
}

/// A dependency failing half its calls: 3 attempts per call amplify its load by 1 + p + p² =
/// 1.75, with or without jitter; no retries, no amplification.
#[test]
fn retries_amplify_load_on_a_failing_dependency() {
    let amplification = |policy: RetryPolicy| {
        let node = NodeConfigBuilder::new(heap(GcProfile::Off))
            .dependency_calls(SimDuration::from_secs(2), policy)
            .build()
            .unwrap();
        let t = traffic(
            200.0,
            ApiMix::only(Api::CreateInstance),
            10,
            SimDuration::from_secs(60),
        );
        let topo = topology(2, node, DbConfig::assumed_defaults(), t, unlimited(10), 120);
        // Exactly one failure mode: the inventory fails half its calls with InternalError; every
        // other injected error of the mocks is switched off.
        let (r, _) = run_checked(&topo, 11, |world| {
            quiet_deps(
                world,
                Some((DependencyKind::Inventory, FaultCode::InternalError, 0.5)),
            );
        });
        let inv = &r.deps.iter().find(|(n, _)| n == "inventory").unwrap().1;
        let requests = r.api(Api::CreateInstance).requests as f64;
        inv.calls as f64 / requests
    };
    let attempts = |jitter| {
        RetryPolicy::new(
            3,
            SimDuration::from_ms(50),
            SimDuration::from_secs(1),
            jitter,
            &[RetryOn::Code(ErrorCode::InternalError), RetryOn::Timeout],
        )
        .unwrap()
    };
    let full = amplification(attempts(Jitter::Full));
    let none = amplification(attempts(Jitter::None));
    let single = amplification(
        RetryPolicy::new(1, SimDuration::ZERO, SimDuration::ZERO, Jitter::Full, &[]).unwrap(),
    );
    for (name, got) in [("full jitter", full), ("no jitter", none)] {
        assert!(
            (got - 1.75).abs() < 0.04,
            "{name}: {got} calls per request, 1.75 expected"
        );
    }
    assert!((single - 1.0).abs() < 1e-9, "no retries: {single}");
}

/// A fixed one-minute window of 200 calls per account admits exactly 200 per minute.
#[test]
fn throttling_admits_exactly_the_configured_rate() {
    let node = plain_node();
    let throttle = fixed_window_200_a_minute();
    let t = traffic(
        10.0,
        ApiMix::only(Api::StopInstance),
        1,
        SimDuration::from_secs(30),
    );
    let r = run(
        &topology(2, node, DbConfig::assumed_defaults(), t, throttle, 300),
        2,
    );
    let a = r.api(Api::StopInstance);
    let throttled = a.count(Status::Err(ErrorCode::Throttling));
    // Five full minutes of ~600 calls each: exactly 200 admitted per minute.
    assert_eq!(a.requests - throttled, 5 * 200, "{:?}", a.status);
}

/// Every topology of this file is deterministic: two builds run in lockstep agree event by event.
#[test]
fn core_worlds_are_deterministic() {
    let node = NodeConfigBuilder::new(heap(GcProfile::G1)).build().unwrap();
    let mut t = traffic(
        3_000.0,
        ApiMix::describe_heavy(),
        50,
        SimDuration::from_secs(5),
    );
    t.amount = Dist::uniform(1.0, 20.0).unwrap();
    t.describe_list_share = 0.2;
    let topo = topology(
        4,
        node,
        DbConfig::assumed_defaults(),
        t,
        Throttle::ecs_defaults(50),
        20,
    );
    let (outcome, hash) = check_determinism(
        topo.build(RootSeed::new(9)).sim,
        topo.build(RootSeed::new(9)).sim,
    )
    .unwrap();
    assert_eq!(hash, run(&topo, 9).trace_hash());
    assert!(matches!(
        outcome,
        firedrill::kernel::Outcome::Drained | firedrill::kernel::Outcome::TimeLimit { .. }
    ));
    assert_ne!(run(&topo, 10).trace_hash(), hash);
}

/// Inventories with stock for 55 hosts and RunInstances of Amount 10: with MinAmount 1 the
/// calls take 10, 10, 10, 10, 10, then the last 5, then NoStock; with MinAmount = Amount the
/// sixth call already gets NoStock and 5 hosts stay unsold.
#[test]
fn min_amount_takes_what_stock_allows_or_nothing() {
    let mocks = mocks_with_stock;
    let created = |min_fraction: f64| {
        let node = plain_node();
        let mut t = traffic(
            2.0,
            ApiMix::only(Api::RunInstances),
            1,
            SimDuration::from_secs(60),
        );
        t.amount = Dist::constant(10.0).unwrap();
        t.min_amount_fraction = min_fraction;
        let topo = Topology::new(
            1,
            node,
            LbPolicy::RoundRobin,
            unlimited(1),
            DbConfig::assumed_defaults(),
            mocks(55),
            t,
            SimDuration::from_secs(20),
        )
        .unwrap();
        // No injected errors: only stock decides.
        let (r, world) = run_checked(&topo, 4, |world| {
            quiet_deps(world, None);
        });
        let Part::Db(db) = world.sim.component(world.db) else {
            unreachable!()
        };
        let rows = db.table_rows(firedrill::db::Table::Instances);
        let a = r.api(Api::RunInstances);
        (
            rows,
            a.count(Status::Ok),
            a.count(Status::Err(ErrorCode::NoStock)),
            a.requests,
        )
    };
    let (rows, ok, no_stock, total) = created(0.0);
    assert!(total > 20, "{total} calls");
    assert_eq!(
        (rows, ok, no_stock),
        (55, 6, total - 6),
        "five full batches and one of the last 5"
    );
    let (rows, ok, no_stock, total) = created(1.0);
    assert_eq!((rows, ok, no_stock), (50, 5, total - 5), "all or nothing");
}

/// An EC2-style token bucket (capacity 50, 5 per second) under 100 calls/s for 60 s admits the
/// burst plus the refill: 50 + 5 × 60 = 350, less the fraction of a token the first and last
/// arrivals leave unused.
#[test]
fn token_buckets_admit_burst_plus_refill() {
    let node = plain_node();
    let t = traffic(
        100.0,
        ApiMix::only(Api::StopInstance),
        1,
        SimDuration::from_secs(30),
    );
    let r = run(
        &topology(
            2,
            node,
            DbConfig::assumed_defaults(),
            t,
            Throttle::ec2_defaults(1),
            60,
        ),
        8,
    );
    let a = r.api(Api::StopInstance);
    let admitted = a.requests - a.count(Status::Err(ErrorCode::Throttling));
    assert!(
        (348..=350).contains(&admitted),
        "admitted {admitted}: {:?}",
        a.status
    );
    assert!(a.count(Status::Err(ErrorCode::Throttling)) > 5_000);
    assert_eq!(a.count_5xx(), 0, "throttled calls are 4XX, apart from 5XX");
}

/// Overload on one worker: requests that wait past the client's deadline get 504 exactly at the
/// deadline (latency = timeout), the node drops the ones that expired in its queue, and answers
/// that come too late are counted as wasted work.
#[test]
fn deadlines_expire_exactly_and_expired_work_is_shed() {
    let node = NodeConfigBuilder::new(heap(GcProfile::Off))
        .workers(1)
        .cores(1)
        .accept_queue(1_000)
        .cpu_all(Dist::constant(1.0).unwrap())
        .build()
        .unwrap();
    let mut t = traffic(
        1.0,
        ApiMix::only(Api::DescribeInstanceStatus),
        1,
        SimDuration::from_ms(2_500),
    );
    t.inter_arrival = Dist::constant(0.5).unwrap();
    let r = run(&topology(1, node, instant_db(), t, unlimited(1), 60), 1);
    let a = r.api(Api::DescribeInstanceStatus);
    let expired = a.count(Status::Err(ErrorCode::DeadlineExceeded));
    assert!(
        expired > a.requests / 2,
        "twice the capacity is offered: {:?}",
        a.status
    );
    assert!(a.count_5xx() >= expired, "504 counts as 5XX");
    // Served requests took < 2.5 s; every expired one was answered at exactly 2.5 s.
    assert_eq!(a.latency.max_ns(), Some(2_500_000_000));
    assert!(
        r.counter("node.0.shed_expired") > 0,
        "the worker skipped requests already expired"
    );
    // Every expired request still reached the node, which either dropped it from its queue
    // (answering at once) or served it: either way its answer came too late to count.
    assert_eq!(r.counter("gateway.late_responses"), expired);
}

/// A pool of one connection in front of a 100 ms database: requests that wait longer than the
/// 50 ms acquire timeout fail with 500 InternalError, and the node counts each timeout.
#[test]
fn connection_pool_acquire_timeouts_are_5xx() {
    let (node, db) = one_connection_and_a_100ms_db();
    let t = traffic(
        50.0,
        ApiMix::only(Api::DescribeInstanceStatus),
        1,
        SimDuration::from_secs(30),
    );
    let r = run(&topology(1, node, db, t, unlimited(1), 60), 6);
    let a = r.api(Api::DescribeInstanceStatus);
    let internal = a.count(Status::Err(ErrorCode::InternalError));
    // Offered 50/s against a capacity of 10/s: most requests time out waiting.
    assert!(internal > a.requests / 2, "{:?}", a.status);
    assert_eq!(r.counter("node.0.pool_timeouts"), internal);
    assert!(a.count_5xx() >= internal);
}

/// Create/delete churn: without cleanup every deleted row stays in the instances table and the
/// unindexed list keeps slowing down; with an hourly-style job (here: every 30 s, retention 60 s)
/// the table holds the live instances plus about a retention's worth of deleted ones.
#[test]
fn cleanup_keeps_the_instances_table_and_list_latency_bounded() {
    let node = plain_node();
    let mut mix = [0.0; Api::COUNT];
    mix[Api::RunInstances.index()] = 1.0;
    mix[Api::DeleteInstance.index()] = 3.0;
    mix[Api::DescribeInstances.index()] = 1.0;
    let mut t = traffic(
        200.0,
        ApiMix::new(mix).unwrap(),
        1,
        SimDuration::from_secs(30),
    );
    t.describe_list_share = 1.0;
    let mocks = mocks_with_stock(50_000_000);
    let secs = 600;
    let base = Topology::new(
        2,
        node,
        LbPolicy::RoundRobin,
        unlimited(1),
        DbConfig::assumed_defaults(),
        mocks,
        t,
        SimDuration::from_secs(secs),
    )
    .unwrap();
    let job = firedrill::cleanup::CleanupConfig::new(
        SimDuration::from_secs(30),
        SimDuration::from_secs(60),
        1_000,
        100,
        &[firedrill::db::Table::Instances],
        DbConfig::assumed_defaults().shards(),
    )
    .unwrap();
    let final_rows = |topo: &Topology| {
        let (r, world) = run_checked(topo, 3, |_| {});
        let Part::Db(db) = world.sim.component(world.db) else {
            unreachable!()
        };
        (db.table_rows(firedrill::db::Table::Instances), r)
    };
    let (rows_without, without) = final_rows(&base);
    let (rows_with, with) = final_rows(&base.clone().with_cleanup(job));
    let rows = |r: &RunResult| {
        if std::ptr::eq(r, &with) {
            rows_with
        } else {
            rows_without
        }
    };
    let created = |r: &RunResult| r.api(Api::RunInstances).count(Status::Ok);
    // Without cleanup nothing leaves the table; with it, deleted rows older than the retention go.
    assert!(
        rows(&without) as f64 > 0.95 * created(&without) as f64,
        "{} rows of {}",
        rows(&without),
        created(&without)
    );
    assert!(
        (rows(&with) as f64) < 0.6 * rows(&without) as f64,
        "{} vs {}",
        rows(&with),
        rows(&without)
    );
    let archived =
        with.cleanup.as_ref().unwrap().rows_archived[firedrill::db::Table::Instances.index()];
    assert!(archived > 0);
    // The table series over time: monotone growth without cleanup, bounded growth with it.
    let last_minutes = |r: &RunResult| {
        let s = &r.db.table_rows_series;
        let n = s.len();
        s[n - 1].1[0] as f64 - s[n / 2].1[0] as f64
    };
    assert!(
        last_minutes(&with) < 0.5 * last_minutes(&without),
        "second-half growth {} vs {}",
        last_minutes(&with),
        last_minutes(&without)
    );
    let list = |r: &RunResult| {
        r.db.class(firedrill::db::QueryClass::FilteredList)
            .latency
            .mean_ns()
            .unwrap()
    };
    assert!(
        list(&with) < list(&without),
        "list mean {} vs {}",
        list(&with),
        list(&without)
    );
}

/// Every RunInstances carries a ClientToken and half of them are submitted twice, 20 ms apart
/// (while the first is still running: image and host calls take tens of ms). Atomic records:
/// each token creates its instances exactly once, the early duplicates get 403
/// LastTokenProcessing and the late ones replay the original InstanceIds. Non-atomic records
/// (check, then write after the dependency calls): the same traffic really creates duplicates.
#[test]
fn client_tokens_create_each_instance_set_once_unless_records_are_non_atomic() {
    use firedrill::idempotency::{IdemConfig, Mode};
    let node = plain_node();
    let mut t = traffic(
        20.0,
        ApiMix::only(Api::RunInstances),
        5,
        SimDuration::from_secs(30),
    );
    t.tokens = firedrill::traffic::TokenPolicy {
        share: 1.0,
        duplicate_fraction: 0.5,
        duplicate_delay: SimDuration::from_ms(20),
    };
    let run_mode = |mode: Mode| {
        let topo = topology(
            2,
            node.clone(),
            DbConfig::assumed_defaults(),
            t.clone(),
            unlimited(5),
            120,
        )
        .with_idempotency(IdemConfig::builder().mode(mode).build().unwrap());
        let (r, world) = run_checked(&topo, 12, |world| {
            quiet_deps(world, None);
        });
        let Part::Db(db) = world.sim.component(world.db) else {
            unreachable!()
        };
        let Part::Traffic(tr) = world.sim.component(world.traffic) else {
            unreachable!()
        };
        (
            r,
            db.table_rows(firedrill::db::Table::Instances),
            db.idempotency().stats().clone(),
            tr.tokens_sent(),
            tr.duplicates_sent(),
        )
    };
    let (atomic, rows, stats, tokens, dups) = run_mode(Mode::Atomic);
    let a = atomic.api(Api::RunInstances);
    assert!(
        dups > 500 && tokens > 2_000,
        "{tokens} tokens, {dups} duplicates"
    );
    assert_eq!(rows, tokens, "exactly one instance per token (Amount = 1)");
    assert_eq!(stats.duplicates_detected, 0);
    assert!(
        a.count(Status::Err(ErrorCode::LastTokenProcessing)) > 0,
        "{:?}",
        a.status
    );
    assert_eq!(
        a.count(Status::Err(ErrorCode::LastTokenProcessing)) + stats.replays,
        dups
    );
    let (_, rows, stats, tokens, _) = run_mode(Mode::NonAtomic);
    assert!(
        rows > tokens,
        "non-atomic records let duplicates through: {rows} rows for {tokens} tokens"
    );
    assert_eq!(
        rows - tokens,
        stats.duplicates_detected,
        "every duplicate proceed created a second instance"
    );
}

/// Staleness at topology level: every state write reaches the other nodes' L1 within the
/// invalidation delay (uniform 10–100 ms here), so no node serves a value older than the write
/// by more than that delay (or, for a key it never hears about, than the TTL); one
/// invalidation per write and other node.
#[test]
fn cache_staleness_is_bounded_by_the_invalidation_delay() {
    let node = plain_node();
    let t = traffic(1_000.0, state_write_mix(), 20, SimDuration::from_secs(30));
    let nodes = 4;
    let setup = default_cache();
    let topo = topology(
        nodes,
        node,
        DbConfig::assumed_defaults(),
        t,
        unlimited(20),
        60,
    )
    .with_cache(setup);
    let (r, world) = run_checked(&topo, 23, |_| {});
    let writes: u64 = [Api::StartInstance, Api::DeleteInstance]
        .iter()
        .map(|&a| r.api(a).count(Status::Ok))
        .sum();
    assert!(writes > 100, "{writes} state writes");
    let mut received = 0;
    for &id in &world.nodes {
        let Part::Node(n) = world.sim.component(id) else {
            unreachable!()
        };
        let lag = n.l1_invalidation_lag().unwrap();
        received += lag.count();
        assert!(lag.count() > 0);
        assert!(lag.min_ns().unwrap() >= 10_000_000, "{:?}", lag.min_ns());
        assert!(lag.max_ns().unwrap() <= 100_000_000, "{:?}", lag.max_ns());
    }
    // Every write is announced to every other node (messages in flight at the end included
    // would arrive later; the run drains, so all arrived).
    assert_eq!(received, writes * u64::from(nodes - 1));
}

/// The multi-level cache in front of by-id reads: most DescribeInstanceStatus calls are answered
/// by a node's L1 or the shared L2, the database's point reads fall accordingly, the reads get
/// faster, and every read is accounted for (L1 hit, coalesced, L2 hit or database read).
#[test]
fn the_cache_saves_database_reads_and_latency() {
    use firedrill::cache::L1Config;

    let node = plain_node();
    let t = cached_reads_traffic();
    let base = topology(4, node, DbConfig::assumed_defaults(), t, unlimited(20), 60);
    let setup = fast_l2_cache(
        L1Config::builder()
            .capacity(10_000)
            .ttl(SimDuration::from_secs(30), SimDuration::from_secs(60))
            .build()
            .unwrap(),
        SimDuration::from_secs(60),
    );
    let plain = run(&base, 21);
    let cached = run(&base.clone().with_cache(setup), 21);
    let reads = |r: &RunResult| r.db.class(firedrill::db::QueryClass::PointRead).received;
    assert!(
        reads(&cached) * 4 < reads(&plain),
        "point reads {} with the cache vs {} without",
        reads(&cached),
        reads(&plain)
    );
    let l1 = cached.l1.as_ref().unwrap();
    let l2 = cached.l2.as_ref().unwrap();
    assert!(l1.hit_ratio().unwrap() > 0.5, "{l1:?}");
    // Every by-id read that reached a worker: answered by L1 (fresh or negative), parked behind a
    // leader, or fetched by a leader from the L2 (hit) or the database.
    assert_eq!(l1.lookups(), l1.hits() + l1.coalesced + l2.gets);
    let p50 = |r: &RunResult| {
        r.api(Api::DescribeInstanceStatus)
            .latency
            .quantile_ns(0.5)
            .unwrap()
    };
    assert!(
        p50(&cached) < p50(&plain),
        "p50 {} vs {}",
        p50(&cached),
        p50(&plain)
    );
}

/// RunInstances with the workflow engine: the API answers at once with Pending instances, the
/// CreateInstances workflows then allocate hosts, disks, ENIs and billing and bring every
/// instance to Running; the durable writes grow the workflow and history tables. Batched and
/// one-by-one workflows reach the same end, the batched ones with N times fewer calls.
#[test]
fn run_instances_reach_running_through_workflows() {
    use firedrill::workflow::{EngineConfig, WorkflowKind};
    use firedrill::world::WorkflowSetup;
    let node = plain_node();
    let mut t = traffic(
        5.0,
        ApiMix::only(Api::RunInstances),
        3,
        SimDuration::from_secs(30),
    );
    t.amount = Dist::constant(10.0).unwrap();
    let base = topology(2, node, DbConfig::assumed_defaults(), t, unlimited(3), 60);
    let quiet = |world: &mut World| {
        quiet_deps(world, None);
    };
    let mut calls = Vec::new();
    for batch in [true, false] {
        let setup = WorkflowSetup {
            engine: EngineConfig::builder().build().unwrap(),
            batch,
        };
        let topo = base.clone().with_workflows(setup).unwrap();
        let (r, world) = run_checked(&topo, 14, quiet);
        let ok = r.api(Api::RunInstances).count(Status::Ok);
        assert!(ok > 200, "{:?}", r.api(Api::RunInstances).status);
        let wf = r.workflows.as_ref().unwrap();
        let create = WorkflowKind::CreateInstances.index();
        assert_eq!(
            wf.admitted[create], ok,
            "one CreateInstances per accepted call"
        );
        assert_eq!(wf.failed[create], 0, "failures: {:?}", wf.failures);
        assert_eq!(wf.rejected, 0);
        let Part::Db(db) = world.sim.component(world.db) else {
            unreachable!()
        };
        // Every instance of every call is Running now.
        let rows = db.table_rows(firedrill::db::Table::Instances);
        assert_eq!(rows, ok * 10);
        assert!(db.table_rows(firedrill::db::Table::History) > 0);
        let running = (1..=rows)
            .filter(|&id| {
                (0..3).any(|a| {
                    db.inspect_instance(AccountId(a), firedrill::api::types::InstanceId(id))
                        .is_some_and(|row| {
                            row.state == firedrill::api::types::InstanceState::Running
                        })
                })
            })
            .count() as u64;
        assert_eq!(running, rows, "all instances Running");
        calls.push(wf.dep_calls);
    }
    // Batched: one call per step for 10 instances; one-by-one: ten.
    assert!(
        calls[1] >= 9 * calls[0],
        "dependency calls batched {} vs one-by-one {}",
        calls[0],
        calls[1]
    );
}

/// CreateInstance with the workflow engine: the API answers with a Pending instance, whose
/// CreateInstances workflow allocates a host, a disk and an ENI and leaves it Stopped — no boot,
/// so no billing record.
#[test]
fn create_instance_runs_a_workflow_and_leaves_the_instance_stopped() {
    use firedrill::api::types::{InstanceId, InstanceState};
    use firedrill::workflow::{EngineConfig, WorkflowKind};
    use firedrill::world::WorkflowSetup;
    let node = plain_node();
    let t = traffic(
        5.0,
        ApiMix::only(Api::CreateInstance),
        3,
        SimDuration::from_secs(30),
    );
    let setup = WorkflowSetup {
        engine: EngineConfig::builder().build().unwrap(),
        batch: true,
    };
    let topo = topology(2, node, DbConfig::assumed_defaults(), t, unlimited(3), 60)
        .with_workflows(setup)
        .unwrap();
    let (r, world) = run_checked(&topo, 15, |world: &mut World| quiet_deps(world, None));
    let ok = r.api(Api::CreateInstance).count(Status::Ok);
    assert!(ok > 100, "{:?}", r.api(Api::CreateInstance).status);
    let wf = r.workflows.as_ref().unwrap();
    let create = WorkflowKind::CreateInstances.index();
    assert_eq!(wf.admitted[create], ok, "one workflow per accepted call");
    assert_eq!(wf.failed[create], 0, "failures: {:?}", wf.failures);
    let Part::Db(db) = world.sim.component(world.db) else {
        unreachable!()
    };
    let rows = db.table_rows(firedrill::db::Table::Instances);
    assert_eq!(rows, ok);
    let stopped = (1..=rows)
        .filter(|&id| {
            (0..3).any(|a| {
                db.inspect_instance(AccountId(a), InstanceId(id))
                    .is_some_and(|row| row.state == InstanceState::Stopped)
            })
        })
        .count() as u64;
    assert_eq!(stopped, rows, "every created instance Stopped");
    let created = |name: &str| {
        r.deps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.records_created)
            .unwrap()
    };
    assert_eq!(created("block_storage"), ok, "one disk each");
    assert_eq!(created("vpc"), ok, "one ENI each");
    assert_eq!(created("billing"), 0, "never booted, never billed");
}

/// Workflows write a workflow row and a history event per transition: without cleanup those
/// tables only grow; with the cleanup job (retention 60 s) they hold about a retention's worth.
#[test]
fn cleanup_bounds_the_workflow_and_history_tables() {
    use firedrill::db::Table;
    use firedrill::workflow::EngineConfig;
    use firedrill::world::WorkflowSetup;
    let node = plain_node();
    let t = traffic(
        20.0,
        ApiMix::only(Api::RunInstances),
        3,
        SimDuration::from_secs(30),
    );
    let base = topology(2, node, DbConfig::assumed_defaults(), t, unlimited(3), 300)
        .with_workflows(WorkflowSetup {
            engine: EngineConfig::builder().build().unwrap(),
            batch: true,
        })
        .unwrap();
    let job = firedrill::cleanup::CleanupConfig::new(
        SimDuration::from_secs(20),
        SimDuration::from_secs(60),
        1_000,
        100,
        &[Table::Workflows, Table::History],
        DbConfig::assumed_defaults().shards(),
    )
    .unwrap();
    let rows = |topo: &Topology| {
        let (r, world) = run_checked(topo, 5, |_| {});
        let Part::Db(db) = world.sim.component(world.db) else {
            unreachable!()
        };
        (
            db.table_rows(Table::History),
            db.table_rows(Table::Workflows),
            r,
        )
    };
    let (history_without, workflows_without, r) = rows(&base);
    let (history_with, workflows_with, r_with) = rows(&base.with_cleanup(job));
    let wf = r.workflows.as_ref().unwrap();
    assert_eq!(
        history_without, wf.history_events,
        "every event stays without cleanup"
    );
    // 300 s of workflows; the job keeps the last ~60–80 s (retention plus one period).
    assert!(
        history_with * 3 < history_without,
        "history {history_with} vs {history_without}"
    );
    assert!(
        workflows_with * 3 < workflows_without,
        "workflows {workflows_with} vs {workflows_without}"
    );
    let archived = r_with.cleanup.as_ref().unwrap().rows_archived;
    assert_eq!(
        archived[Table::History.index()],
        history_without - history_with,
        "archived = the difference"
    );
}

/// Lost replies after side effects (executing timeouts at every dependency, 20% of calls while
/// traffic runs) leave resources nobody references. Audits every 20 s find them and release
/// them; once the faults stop, every orphan is repaired: none older than the grace period is
/// left, and each repair's delay from the orphan's creation is measured.
#[test]
fn reconciliation_finds_and_repairs_every_orphan_of_lost_replies() {
    use firedrill::reconcile::ReconConfig;
    use firedrill::workflow::EngineConfig;
    use firedrill::world::WorkflowSetup;
    let node = plain_node();
    let mut t = traffic(
        5.0,
        ApiMix::only(Api::RunInstances),
        3,
        SimDuration::from_secs(120),
    );
    t.amount = Dist::constant(2.0).unwrap();
    let topo = topology(2, node, DbConfig::assumed_defaults(), t, unlimited(3), 200)
        .with_workflows(WorkflowSetup {
            engine: EngineConfig::builder().build().unwrap(),
            batch: true,
        })
        .unwrap()
        .with_reconciliation(
            ReconConfig::new(
                SimDuration::from_secs(20),
                SimDuration::from_secs(30),
                10_000,
            )
            .unwrap(),
        )
        .unwrap();
    let set_faults = |world: &mut World, p: f64| {
        for &id in &world.deps.clone() {
            if let Part::Dep(d) = world.sim.component_mut(id) {
                for code in FaultCode::ALL {
                    d.set_error_override(
                        code,
                        Some(if code == FaultCode::Timeout { p } else { 0.0 }),
                    );
                }
            }
        }
    };
    let run_once = || {
        let mut world = topo.build(RootSeed::new(17));
        set_faults(&mut world, 0.2);
        // The faults end with the traffic; the audits go on during the drain.
        let end = SimTime::ZERO.saturating_add(topo.duration());
        let report = match world.run_until(end) {
            Some(report) => report,
            None => {
                set_faults(&mut world, 0.0);
                world.run()
            }
        };
        let r = world.result(report, topo.duration());
        (r, world)
    };
    let (r, world) = run_once();
    assert_eq!(r.trace_hash(), run_once().0.trace_hash(), "deterministic");
    let rec = r.reconciliation.as_ref().unwrap();
    let found: u64 = rec.orphans_found.values().sum();
    assert!(
        found > 20,
        "executing timeouts create orphans: {:?}",
        rec.orphans_found
    );
    assert!(rec.repaired > 0 && rec.time_to_repair.count() == rec.repaired);
    assert_eq!(rec.repaired_by_kind.values().sum::<u64>(), rec.repaired);
    // The audit reads the control database: paged scans at the database's `scan` class.
    let scans = r.db.class(firedrill::db::QueryClass::Scan);
    assert!(
        rec.pages > 0 && scans.served >= rec.pages && scans.served <= rec.pages + 1,
        "pages {} served {}",
        rec.pages,
        scans.served
    );
    assert!(rec.rows_read > 0 && rec.scans_completed > 0);
    // Repairs wait for the next audit after the grace period: at most grace + period (+ the
    // scan and the call) after the orphan appeared, once faults have stopped.
    assert!(
        rec.time_to_repair.min_ns().unwrap() >= 30_000_000_000,
        "never before the grace period"
    );
    // The oracle: records older than the grace that no instance row references.
    let left = orphans_left(&world, SimDuration::from_secs(30));
    assert_eq!(
        left, 0,
        "orphans left: found {found}, repaired {}, failed {}",
        rec.repaired, rec.repair_failed
    );
}

/// Records of the row-referenced kinds older than `grace` that no instance row references (read
/// directly, not through queries): what an audit at this instant would call orphans.
fn orphans_left(world: &World, grace: SimDuration) -> u64 {
    use firedrill::db::InstanceResources;
    use std::collections::BTreeSet;
    let Part::Db(db) = world.sim.component(world.db) else {
        unreachable!()
    };
    let referenced: BTreeSet<_> = db
        .instance_rows()
        .flat_map(|r| r.resources.iter().collect::<Vec<_>>())
        .collect();
    let now = world.sim.now();
    world
        .deps
        .iter()
        .map(|&id| match world.sim.component(id) {
            Part::Dep(d) => d
                .records()
                .filter(|(rid, r)| {
                    InstanceResources::slot(r.kind).is_some()
                        && now.saturating_since(r.created) >= grace
                        && !referenced.contains(&(r.kind, *rid))
                })
                .count() as u64,
            _ => 0,
        })
        .sum()
}

/// Sends crafted RunInstances calls of one ClientToken, `(id, at_ms, amount)`, through a
/// one-node topology holding the token records where `store` says; flushes the L2 at
/// `flush_at_ms` if given. Returns the result and the world.
fn crafted_token_calls(
    store: firedrill::idempotency::StoreKind,
    calls: &[(u64, u64, u16)],
    flush_at_ms: Option<u64>,
) -> (RunResult, World) {
    use firedrill::idempotency::IdemConfig;
    use firedrill::world::Msg;
    let node = plain_node();
    // Traffic that sends nothing of its own during the run (its first arrival is after the end).
    let mut t = traffic(
        1.0,
        ApiMix::only(Api::DescribeInstances),
        1,
        SimDuration::from_secs(30),
    );
    t.inter_arrival = Dist::constant(1_000.0).unwrap();
    let topo = topology(1, node, DbConfig::assumed_defaults(), t, unlimited(2), 60)
        .with_idempotency(IdemConfig::builder().store(store).build().unwrap());
    let mut world = topo.build(RootSeed::new(3));
    quiet_deps(&mut world, None);
    let at = |ms: u64| SimTime::from_ns(ms * 1_000_000);
    for &(id, at_ms, amount) in calls {
        let req = run_instances_at(id, at_ms, amount, 0xC0FFEE);
        world
            .sim
            .schedule(req.intended, world.gateway, Msg::Request(req))
            .unwrap();
    }
    if let Some(ms) = flush_at_ms {
        assert!(world.sim.run_until(at(ms)).is_none());
        if let Some(Part::L2(l2)) = world.l2.map(|id| world.sim.component_mut(id)) {
            l2.flush();
        }
    }
    let report = world.run();
    let r = world.result(report, topo.duration());
    (r, world)
}

/// Crafted calls through the whole path: the same ClientToken with the same parameters replays
/// the original InstanceIds; with other parameters it gets 400 IdempotentParameterMismatch; sent
/// while the first is still running it gets 403 LastTokenProcessing. The same answers whether
/// the records live in the database or in the L2.
#[test]
fn client_token_answers_replay_mismatch_and_in_progress() {
    use firedrill::idempotency::StoreKind;
    // 0 ms: the original (Amount 3); 5 ms: a duplicate while it runs; 10 s: a retry with the same
    // parameters; 11 s: the same token with Amount 4.
    let calls = [(1, 0, 3), (2, 5, 3), (3, 10_000, 3), (4, 11_000, 4)];
    for store in [StoreKind::Db, StoreKind::L2Cache] {
        let (r, world) = crafted_token_calls(store, &calls, None);
        let a = r.api(Api::RunInstances);
        assert_eq!(
            a.count(Status::Ok),
            2,
            "{store:?}: the original and the replay: {:?}",
            a.status
        );
        assert_eq!(a.count(Status::Err(ErrorCode::LastTokenProcessing)), 1);
        assert_eq!(
            a.count(Status::Err(ErrorCode::IdempotentParameterMismatch)),
            1
        );
        let Part::Db(db) = world.sim.component(world.db) else {
            unreachable!()
        };
        assert_eq!(
            db.table_rows(firedrill::db::Table::Instances),
            3,
            "{store:?}: one set of 3 instances"
        );
        let (db_checks, l2_replays) = match world.l2.map(|id| world.sim.component(id)) {
            Some(Part::L2(l2)) => (
                db.idempotency().stats().checks,
                l2.idempotency().map_or(0, |s| s.stats().replays),
            ),
            _ => (db.idempotency().stats().checks, 0),
        };
        match store {
            StoreKind::Db => assert_eq!(db.idempotency().stats().replays, 1),
            StoreKind::L2Cache => {
                assert_eq!(db_checks, 0, "the database sees no token check");
                assert_eq!(l2_replays, 1);
                assert_eq!(
                    r.l2.as_ref().unwrap().idem_ops,
                    4 + 1,
                    "4 checks, 1 completion"
                );
            }
        }
    }
}

/// A ClientToken RunInstances the workflow engine refuses at admission (its bound on live
/// workflows is full) is answered 503 `ServiceUnavailable` — the node waits for the engine's
/// acknowledgement before it answers — and its token's reservation is released, not memoised:
/// `ServiceUnavailable` is an infrastructure failure ([`memoise_failure`]), and the refused
/// rows are the engine's to fail (Deleted), not the token's. So a retry with the same token
/// runs afresh (a new instance set, admitted this time, OK), and a later retry replays that.
/// The same whether the records live in the database or in the L2.
///
/// [`memoise_failure`]: firedrill::idempotency::memoise_failure
#[test]
fn a_refused_creation_with_a_token_answers_503_and_its_retry_runs_afresh() {
    use firedrill::api::types::{InstanceId, InstanceState};
    use firedrill::idempotency::{IdemConfig, StoreKind};
    use firedrill::workflow::{EngineConfig, WorkflowKind};
    use firedrill::world::{Msg, WorkflowSetup};
    const TOKEN: u64 = 0xC0FFEE;
    // (request, at ms, token): a call without a token takes the engine's only slot; a token
    // call 100 ms later is refused; its retries at 20 s and 30 s, once the slot is free.
    let calls = [
        (1, 0, 0),
        (2, 100, TOKEN),
        (3, 20_000, TOKEN),
        (4, 30_000, TOKEN),
    ];
    for store in [StoreKind::Db, StoreKind::L2Cache] {
        let mut t = traffic(
            1.0,
            ApiMix::only(Api::DescribeInstances),
            1,
            SimDuration::from_secs(30),
        );
        t.inter_arrival = Dist::constant(1_000.0).unwrap();
        let topo = topology(
            1,
            plain_node(),
            DbConfig::assumed_defaults(),
            t,
            unlimited(2),
            60,
        )
        .with_idempotency(IdemConfig::builder().store(store).build().unwrap())
        .with_workflows(WorkflowSetup {
            engine: EngineConfig::builder().queue_limit(1).build().unwrap(),
            batch: true,
        })
        .unwrap();
        let mut world = topo.build(RootSeed::new(3));
        quiet_deps(&mut world, None);
        for (id, at_ms, token) in calls {
            let req = run_instances_at(id, at_ms, 2, token);
            world
                .sim
                .schedule(req.intended, world.gateway, Msg::Request(req))
                .unwrap();
        }
        let report = world.run();
        let r = world.result(report, topo.duration());
        assert!(r.violations.is_empty(), "{store:?}: {:?}", r.violations);
        let a = r.api(Api::RunInstances);
        assert_eq!(a.count(Status::Ok), 3, "{store:?}: {:?}", a.status);
        assert_eq!(
            a.count(Status::Err(ErrorCode::ServiceUnavailable)),
            1,
            "{store:?}: the refused call"
        );
        let wf = r.workflows.as_ref().unwrap();
        let create = WorkflowKind::CreateInstances.index();
        assert_eq!(wf.rejected_by_kind[create], 1, "{store:?}");
        assert_eq!(
            wf.admitted[create], 2,
            "{store:?}: the first call and the retry"
        );
        assert_eq!(r.node_counter("wf_refused"), 1, "{store:?}");
        assert_eq!(wf.refused_rows_failed, 2, "{store:?}");
        let Part::Db(db) = world.sim.component(world.db) else {
            unreachable!()
        };
        // Three instance sets were inserted (the retry's is new, the last call's a replay):
        // the refused one (ids 3, 4) failed by the engine, the others Running.
        assert_eq!(
            db.table_rows(firedrill::db::Table::Instances),
            6,
            "{store:?}"
        );
        let states: Vec<_> = (1..=6)
            .map(|id| {
                db.inspect_instance(AccountId(1), InstanceId(id))
                    .map(|r| r.state)
            })
            .collect();
        let (run, del) = (Some(InstanceState::Running), Some(InstanceState::Deleted));
        assert_eq!(states, vec![run, run, del, del, run, run], "{store:?}");
        let idem = match world.l2.map(|id| world.sim.component(id)) {
            Some(Part::L2(l2)) if store == StoreKind::L2Cache => {
                l2.idempotency().unwrap().stats().clone()
            }
            _ => db.idempotency().stats().clone(),
        };
        // The refusal's reservation abandoned, not memoised; the retry proceeded and completed;
        // the last call replayed it.
        assert_eq!(idem.proceeds, 2, "{store:?}: {idem:?}");
        assert_eq!(idem.abandoned, 1, "{store:?}: {idem:?}");
        assert_eq!(idem.failures_memoised, 0, "{store:?}: {idem:?}");
        assert_eq!(idem.completions, 1, "{store:?}: {idem:?}");
        assert_eq!(idem.replays, 1, "{store:?}: {idem:?}");
    }
}

/// Token records in the L2 share its fate: a flush between the original call and the client's
/// retry loses the record, and the retry creates a second set of instances. In the database the
/// retry is a replay.
#[test]
fn a_flushed_l2_token_store_lets_a_retry_duplicate() {
    use firedrill::idempotency::StoreKind;
    let calls = [(1, 0, 3), (2, 10_000, 3)];
    let rows = |store| {
        let (r, world) = crafted_token_calls(store, &calls, Some(5_000));
        assert_eq!(r.api(Api::RunInstances).count(Status::Ok), 2);
        let Part::Db(db) = world.sim.component(world.db) else {
            unreachable!()
        };
        db.table_rows(firedrill::db::Table::Instances)
    };
    assert_eq!(rows(StoreKind::Db), 3, "a replay: one set");
    assert_eq!(
        rows(StoreKind::L2Cache),
        6,
        "the record was flushed: two sets"
    );
}

/// The stampede: flushing every L1 and the L2 mid-run sends the next second's reads to the
/// database (point reads jump several-fold against the same second of an unflushed run), and
/// single-flight keeps the jump below one read per request.
#[test]
fn a_cache_flush_shows_the_stampede_on_the_database() {
    use firedrill::cache::{L1Config, L2Config};
    use firedrill::world::CacheSetup;
    let node = plain_node();
    let mut mix = [0.0; Api::COUNT];
    mix[Api::RunInstances.index()] = 2.0;
    mix[Api::DescribeInstanceStatus.index()] = 98.0;
    let t = traffic(
        2_000.0,
        ApiMix::new(mix).unwrap(),
        20,
        SimDuration::from_secs(30),
    );
    let setup = CacheSetup {
        l1: L1Config::builder()
            .capacity(100_000)
            .ttl(SimDuration::from_secs(600), SimDuration::from_secs(900))
            .build()
            .unwrap(),
        l2: L2Config::builder().capacity(1_000_000).build().unwrap(),
        l2_ttl: SimDuration::from_secs(900),
        l2_negative_ttl: SimDuration::from_secs(1),
        invalidation_delay: Dist::constant(0.05).unwrap(),
        invalidation: firedrill::cache::Invalidation::Writer,
    };
    let topo =
        topology(4, node, DbConfig::assumed_defaults(), t, unlimited(20), 60).with_cache(setup);
    let reads_in_second_after_40s = |flush: bool| {
        let mut world = topo.build(RootSeed::new(8));
        let at = |s: u64| SimTime::from_ns(s * 1_000_000_000);
        assert!(world.sim.run_until(at(40)).is_none());
        if flush {
            for &id in &world.nodes.clone() {
                if let Part::Node(n) = world.sim.component_mut(id) {
                    n.flush_cache();
                }
            }
            if let Part::L2(l2) = world.sim.component_mut(world.l2.unwrap()) {
                l2.flush();
            }
        }
        let reads = |w: &World| match w.sim.component(w.db) {
            Part::Db(db) => {
                db.stats()
                    .class(firedrill::db::QueryClass::PointRead)
                    .received
            }
            _ => unreachable!(),
        };
        let before = reads(&world);
        assert!(world.sim.run_until(at(41)).is_none());
        reads(&world) - before
    };
    let warm = reads_in_second_after_40s(false);
    let flushed = reads_in_second_after_40s(true);
    assert!(
        flushed > 5 * warm.max(1),
        "database point reads in the second after the flush: {flushed} vs {warm} warm"
    );
    assert!(
        flushed < 2_000,
        "at most one read per request (≈2,000/s), single-flight coalesces the rest: {flushed}"
    );
}

/// A RunInstances of `amount` instances of type 0 by account 1, intended at `at_ms`, with a
/// 30 s deadline and ClientToken `token`.
fn run_instances_at(id: u64, at_ms: u64, amount: u16, token: u64) -> Request {
    let at = SimTime::from_ns(at_ms * 1_000_000);
    let mut params = Params::single(InstanceType(0));
    params.amount = amount;
    Request {
        id: RequestId(id),
        api: Api::RunInstances,
        account: AccountId(1),
        intended: at,
        deadline: at.saturating_add(SimDuration::from_secs(30)),
        client_token: token,
        params,
    }
}
