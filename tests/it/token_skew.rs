//! Clock skew reaching ClientToken expiry: a node supplies its own time to the token store
//! (records it writes expire `ttl` after its clock, and it judges a record expired by its
//! clock), while the invariant checkers judge on true time.

use crate::core::{plain_node, quiet_deps, topology, traffic, unlimited};
use firedrill::api::types::{AccountId, Api, InstanceType, Params, Request, RequestId, Status};
use firedrill::db::{DbConfig, Table};
use firedrill::faults::{Fault, FaultKind, FaultPlan, Target};
use firedrill::idempotency::{IdemConfig, IdemKey, StoreKind};
use firedrill::invariants::Invariant;
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::traffic::ApiMix;
use firedrill::world::{Msg, Part, RunResult, Topology, World};

const TOKEN: u64 = 0xC0FFEE;
const ACCOUNT: AccountId = AccountId(1);

fn min(m: u64) -> SimTime {
    SimTime::ZERO + SimDuration::from_secs(60 * m)
}

/// One node, ClientToken records with a 1 h TTL where `store` says, no traffic of its own
/// during the run, and a clock skew of `skew_min` minutes on the node from `skew_from` to the
/// end (none if 0).
fn topo(store: StoreKind, skew_min: i64, skew_from: SimTime) -> Topology {
    let node = plain_node();
    let mut t = traffic(
        1.0,
        ApiMix::only(Api::DescribeInstances),
        1,
        SimDuration::from_secs(30),
    );
    t.inter_arrival = Dist::constant(1e6).unwrap();
    let ttl = SimDuration::from_secs(3600);
    let topo = topology(1, node, DbConfig::assumed_defaults(), t, unlimited(2), 7200)
        .with_idempotency(IdemConfig::builder().ttl(ttl).store(store).build().unwrap());
    if skew_min == 0 {
        return topo;
    }
    let skew = Fault::new(
        FaultKind::ClockSkew {
            skew_ns: skew_min * 60 * 1_000_000_000,
        },
        Target::Node(0),
        skew_from,
        SimDuration::from_secs(4 * 3600),
    )
    .unwrap();
    topo.with_faults(FaultPlan::new(vec![skew])).unwrap()
}

/// Sends RunInstances calls (Amount 3) of one ClientToken at `at`, each with a 2 h deadline (a
/// node 50 min ahead must not take them for expired), runs to the end, twice (the same trace
/// hash), and returns the result, the world and the record's expiry after the first call's
/// completion, read a minute after it (true time).
fn calls(topo: &Topology, at: &[SimTime]) -> (RunResult, World, Option<SimTime>) {
    let mut runs = (0..2).map(|_| {
        let mut world = topo.build(RootSeed::new(5));
        quiet_deps(&mut world, None);
        for (i, &t) in at.iter().enumerate() {
            let mut params = Params::single(InstanceType(0));
            params.amount = 3;
            let req = Request {
                id: RequestId(i as u64 + 1),
                api: Api::RunInstances,
                account: ACCOUNT,
                intended: t,
                deadline: t.saturating_add(SimDuration::from_secs(7200)),
                client_token: TOKEN,
                params,
            };
            world
                .sim
                .schedule(t, world.gateway, Msg::Request(req))
                .unwrap();
        }
        let after_first = at[0].saturating_add(SimDuration::from_secs(60));
        assert!(world.run_until(after_first).is_none());
        let expires = record(&world, after_first);
        let report = world.run();
        (world.result(report, topo.duration()), world, expires)
    });
    let (a, world, expires) = runs.next().unwrap();
    let (b, _, _) = runs.next().unwrap();
    assert_eq!(a.trace_hash(), b.trace_hash(), "deterministic");
    (a, world, expires)
}

/// The token's record as the store holds it at true time `now` (its expiry).
fn record(world: &World, now: SimTime) -> Option<SimTime> {
    let key = IdemKey {
        account: ACCOUNT,
        api: Api::RunInstances,
        token: TOKEN,
    };
    let store = match world.l2.map(|id| world.sim.component(id)) {
        Some(Part::L2(l2)) if l2.idempotency().is_some() => l2.idempotency().unwrap(),
        _ => match world.sim.component(world.db) {
            Part::Db(db) => db.idempotency(),
            _ => unreachable!(),
        },
    };
    store.lookup(now, key).map(|r| r.expires_at)
}

fn rows(world: &World) -> u64 {
    match world.sim.component(world.db) {
        Part::Db(db) => db.table_rows(Table::Instances),
        _ => unreachable!(),
    }
}

fn token_violations(r: &RunResult) -> Vec<Invariant> {
    r.violations.iter().map(|v| v.invariant).collect()
}

/// TTL 1 h; the original call at 0 on an unskewed node, the node's clock jumps 50 min ahead at
/// 5 min, the client's retry with the same ClientToken comes at 15 min. The record (true
/// expiry ≈ 60 min) looks expired to the node (it reads 65 min): the retry proceeds as new, a
/// second set of 3 instances is created, and `token_one_instance_set` (judged on true time)
/// reports it. Without the skew the same retry is a replay of the original InstanceIds. The
/// same whether the records live in the database or in the L2.
#[test]
fn a_node_ahead_takes_a_live_token_record_for_expired() {
    for store in [StoreKind::Db, StoreKind::L2Cache] {
        let at = [min(0), min(15)];
        let (r, w, expires) = calls(&topo(store, 0, min(5)), &at);
        let ok = r.api(Api::RunInstances).count(Status::Ok);
        assert_eq!(ok, 2, "{store:?}");
        assert_eq!(rows(&w), 3, "{store:?}: a replay, one set");
        assert!(token_violations(&r).is_empty(), "{:?}", r.violations);
        let e = expires.unwrap();
        assert!(e > min(60) && e < min(61), "{store:?}: record until {e}");

        let (r, w, expires_skewed) = calls(&topo(store, 50, min(5)), &at);
        assert_eq!(expires_skewed, expires, "written before the skew");
        assert_eq!(r.api(Api::RunInstances).count(Status::Ok), 2);
        assert_eq!(rows(&w), 6, "{store:?}: the retry created a second set");
        assert_eq!(
            token_violations(&r),
            [Invariant::TokenOneInstanceSet],
            "{store:?}: {:?}",
            r.violations
        );
        // The retry's record is dated by the node's clock: 15 min + 50 min + 1 h.
        let retried = record(&w, min(20)).unwrap();
        assert!(
            retried > min(125) && retried < min(126),
            "{store:?}: {retried}"
        );
    }
}

/// A node 30 min behind from the start writes records that expire 30 min early in true time:
/// the original call at 40 min (the node reads 10 min) gets a record whose expiry is exactly
/// 30 min before the unskewed run's. A retry at 75 min through the same node (it reads 45 min)
/// still finds it live and replays it, though on true time it expired at ≈70 min.
#[test]
fn a_node_behind_writes_token_records_that_expire_early() {
    let at = [min(40), min(75)];
    let (r0, w0, plain) = calls(&topo(StoreKind::Db, 0, SimTime::ZERO), &at);
    let (r, w, behind) = calls(&topo(StoreKind::Db, -30, SimTime::ZERO), &at);
    let (plain, behind) = (plain.unwrap(), behind.unwrap());
    assert_eq!(
        plain.saturating_since(behind),
        SimDuration::from_secs(30 * 60),
        "exactly 30 min earlier"
    );
    assert!(plain > min(100) && plain < min(101), "{plain}");
    for (r, w) in [(&r0, &w0), (&r, &w)] {
        assert_eq!(r.api(Api::RunInstances).count(Status::Ok), 2);
        assert_eq!(rows(w), 3, "a replay");
        assert!(r.violations.is_empty(), "{:?}", r.violations);
    }
    assert_eq!(record(&w, min(75)), None, "expired on true time");
    assert!(record(&w0, min(75)).is_some());
    let Part::Db(db) = w.sim.component(w.db) else {
        unreachable!()
    };
    assert_eq!(db.idempotency().stats().replays, 1);
    assert_eq!(db.idempotency().stats().expired_early, 0);
}
