//! Tests of the database model in a tiny world: the database, a caller that keeps every reply,
//! and queries scheduled straight at the database.

use super::*;
use crate::analytic::Mmc;
use crate::kernel::{Component, Dist, Limits, Message, RootSeed, RunReport, Sim};

#[derive(Clone, Debug)]
enum M {
    Query(DbQuery),
    Reply(DbReply),
    Timer(DbTimer),
    /// Fault injection: take a shard's primary down or up.
    SetAvailable(u16, bool),
    /// The change feed, to the caller.
    Change(RowChange),
}

impl From<RowChange> for M {
    fn from(c: RowChange) -> M {
        M::Change(c)
    }
}

impl From<DbReply> for M {
    fn from(r: DbReply) -> M {
        M::Reply(r)
    }
}
impl From<DbTimer> for M {
    fn from(t: DbTimer) -> M {
        M::Timer(t)
    }
}

impl Message for M {
    fn kind_code(&self) -> u32 {
        match self {
            M::Query(_) => 0,
            M::Reply(_) => 1,
            M::Timer(_) => 2,
            M::SetAvailable(..) => 3,
            M::Change(_) => 4,
        }
    }
    fn kind_name(&self) -> &'static str {
        match self {
            M::Query(_) => "Query",
            M::Reply(_) => "Reply",
            M::Timer(_) => "Timer",
            M::SetAvailable(..) => "SetAvailable",
            M::Change(_) => "Change",
        }
    }
}

#[derive(Default)]
struct Caller {
    replies: Vec<(SimTime, DbReply)>,
    changes: Vec<(SimTime, RowChange)>,
}

enum Node {
    Db(Box<Db>),
    Caller(Caller),
}

impl Component<M> for Node {
    fn on_event(&mut self, msg: M, out: &mut Outbox<'_, M>) {
        match (self, msg) {
            (Node::Db(db), M::Query(q)) => db.on_query(q, out),
            (Node::Db(db), M::Timer(t)) => db.on_timer(t, out),
            (Node::Db(db), M::SetAvailable(s, up)) => db.set_available(s, up),
            (Node::Caller(c), M::Reply(r)) => c.replies.push((out.now(), r)),
            (Node::Caller(c), M::Change(ch)) => c.changes.push((out.now(), ch)),
            _ => out.violation("miswired test world"),
        }
    }
}

struct World {
    sim: Sim<M, Node>,
    db: ComponentId,
    caller: ComponentId,
    next_tag: u64,
}

impl World {
    fn new(cfg: DbConfig, seed: u64) -> World {
        let seed = RootSeed::new(seed);
        let mut sim = Sim::new(seed, Limits::GENEROUS);
        let db = sim.add("db", Node::Db(Box::new(Db::new(cfg, seed.fork("db")))));
        let caller = sim.add("caller", Node::Caller(Caller::default()));
        World {
            sim,
            db,
            caller,
            next_tag: 0,
        }
    }

    /// Schedules a query at `at`; returns its tag.
    fn query(&mut self, at: SimTime, account: u32, read_replica: bool, op: DbOp) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        let q = DbQuery {
            tag,
            reply_to: self.caller,
            account: AccountId(account),
            read_replica,
            op,
        };
        self.sim.schedule(at, self.db, M::Query(q)).unwrap();
        tag
    }

    fn set_available(&mut self, at: SimTime, shard: u16, up: bool) {
        self.sim
            .schedule(at, self.db, M::SetAvailable(shard, up))
            .unwrap();
    }

    fn run(&mut self) -> RunReport {
        let report = self.sim.run();
        assert_eq!(
            report.outcome,
            crate::kernel::Outcome::Drained,
            "{report:?}"
        );
        report
    }

    fn db(&self) -> &Db {
        match self.sim.component(self.db) {
            Node::Db(db) => db,
            Node::Caller(_) => unreachable!(),
        }
    }

    fn replies(&self) -> &[(SimTime, DbReply)] {
        match self.sim.component(self.caller) {
            Node::Caller(c) => &c.replies,
            Node::Db(_) => unreachable!(),
        }
    }

    /// The reply to `tag` and when it arrived.
    fn reply(&self, tag: u64) -> (SimTime, DbReply) {
        let all: Vec<_> = self
            .replies()
            .iter()
            .filter(|(_, r)| r.tag == tag)
            .collect();
        assert_eq!(all.len(), 1, "exactly one reply to tag {tag}");
        *all[0]
    }

    fn result(&self, tag: u64) -> Result<DbResult, DbError> {
        self.reply(tag).1.result
    }
}

fn ms(n: u64) -> SimTime {
    SimTime::ZERO + SimDuration::from_ms(n)
}

fn det(secs: f64) -> Dist {
    Dist::constant(secs).unwrap()
}

/// One shard, no replicas, every class a constant `secs`, no size or batch scaling.
fn flat(secs: f64) -> DbConfigBuilder {
    DbConfig::builder()
        .shards(1)
        .replicas(0)
        .latency_all(det(secs))
        .index_log_coeff(0.0)
        .batch_row_coeff(0.0)
}

fn get(id: u64) -> DbOp {
    DbOp::GetInstance(InstanceId(id))
}

fn insert(account: u32, count: u16, state: InstanceState) -> DbOp {
    DbOp::InsertInstances {
        account: AccountId(account),
        count,
        instance_type: InstanceType(3),
        state,
    }
}

fn list(account: u32) -> DbOp {
    DbOp::ListInstances {
        account: AccountId(account),
        page: 0,
        page_size: 100,
    }
}

fn set_state(id: u64, expect: Option<InstanceState>, to: InstanceState) -> DbOp {
    DbOp::UpdateInstanceState {
        id: InstanceId(id),
        expect,
        to,
        resources: None,
    }
}

/// Rows `first..first + count` from Pending to Starting, in one multi-row update.
fn many(first: u64, count: u8) -> DbOp {
    DbOp::UpdateInstanceStates {
        first: InstanceId(first),
        count,
        expect: Some(InstanceState::Pending),
        to: InstanceState::Starting,
        resources: None,
    }
}

fn found_state(r: Result<DbResult, DbError>) -> Option<InstanceState> {
    match r {
        Ok(DbResult::Instance(row)) => row.map(|r| r.state),
        other => panic!("expected an instance read, got {other:?}"),
    }
}

fn listed_total(r: Result<DbResult, DbError>) -> u64 {
    match r {
        Ok(DbResult::Listed {
            total_for_account, ..
        }) => total_for_account,
        other => panic!("expected a list, got {other:?}"),
    }
}

#[test]
fn inserted_rows_are_read_at_once_from_the_primary_and_after_the_lag_from_a_replica() {
    use InstanceState::*;
    let lag = SimDuration::from_ms(100);
    let cfg = flat(0.001)
        .replicas(1)
        .replication_lag(det(0.1))
        .build()
        .unwrap();
    let mut w = World::new(cfg, 1);
    let ins = w.query(ms(5), 7, false, insert(7, 3, Pending));
    let same_instant = w.query(ms(5), 7, false, get(1));
    let primary = w.query(ms(6), 7, false, get(3));
    let other_account = w.query(ms(6), 8, false, get(3));
    let created_plus_lag = ms(5) + lag;
    let early = w.query(
        SimTime::from_ns(created_plus_lag.as_ns() - 1),
        7,
        true,
        get(1),
    );
    let on_time = w.query(created_plus_lag, 7, true, get(1));
    let list_early = w.query(ms(55), 7, true, list(7));
    let list_on_time = w.query(ms(105), 7, true, list(7));
    // An update at 1 s: within the lag a replica shows the previous state.
    let upd = w.query(ms(1_000), 7, false, set_state(1, Some(Pending), Starting));
    let stale = w.query(ms(1_050), 7, true, get(1));
    let fresh_primary = w.query(ms(1_050), 7, false, get(1));
    let caught_up = w.query(ms(1_100), 7, true, get(1));
    w.run();

    let (at, r) = w.reply(ins);
    assert_eq!(at, ms(6));
    assert_eq!(
        r.result,
        Ok(DbResult::Inserted(InstanceIdRange {
            first: InstanceId(1),
            count: 3
        }))
    );
    assert_eq!(found_state(w.result(same_instant)), Some(Pending));
    let Ok(DbResult::Instance(Some(row))) = w.result(primary) else {
        panic!("row 3 is on the primary")
    };
    assert_eq!(
        row,
        InstanceRead {
            id: InstanceId(3),
            account: AccountId(7),
            instance_type: InstanceType(3),
            state: Pending,
            created_at: ms(5),
            updated_at: ms(5),
        }
    );
    assert_eq!(
        found_state(w.result(other_account)),
        None,
        "tenant isolation"
    );
    assert_eq!(
        found_state(w.result(early)),
        None,
        "created after now - lag"
    );
    assert_eq!(found_state(w.result(on_time)), Some(Pending));
    assert_eq!(listed_total(w.result(list_early)), 0);
    assert_eq!(listed_total(w.result(list_on_time)), 3);
    assert_eq!(
        w.result(upd),
        Ok(DbResult::Updated(UpdateOutcome::Done { from: Pending }))
    );
    let Ok(DbResult::Instance(Some(old))) = w.result(stale) else {
        panic!("the replica has the row")
    };
    assert_eq!((old.state, old.updated_at), (Pending, ms(5)));
    assert_eq!(found_state(w.result(fresh_primary)), Some(Starting));
    assert_eq!(found_state(w.result(caught_up)), Some(Starting));
    let st = w.db().stats();
    assert_eq!(st.replica_reads, 6);
    assert_eq!(
        st.stale_reads, 3,
        "early get, early list, get within the update's lag"
    );
    assert_eq!(
        w.db()
            .inspect_instance(AccountId(7), InstanceId(1))
            .unwrap()
            .state,
        Starting
    );
}

#[test]
fn concurrency_limit_serves_queries_in_waves() {
    let (c, n, d) = (4u32, 103u64, 10u64);
    let cfg = flat(d as f64 * 1e-3)
        .max_concurrent(c)
        .queue_limit(1_000)
        .build()
        .unwrap();
    let mut w = World::new(cfg, 2);
    let tags: Vec<_> = (0..n).map(|_| w.query(ms(0), 1, false, get(1))).collect();
    w.run();
    for (i, &tag) in tags.iter().enumerate() {
        let wave = i as u64 / u64::from(c) + 1;
        let (at, r) = w.reply(tag);
        assert_eq!(at, ms(wave * d), "query {i} completes in wave {wave}");
        assert_eq!(r.latency, SimDuration::from_ms(wave * d));
    }
    let waves = n.div_ceil(u64::from(c));
    assert_eq!(waves, 26);
    let last = w.replies().iter().map(|(t, _)| *t).max().unwrap();
    assert_eq!(last, ms(waves * d));
    let st = w.db().stats();
    assert_eq!(st.max_in_service, c);
    assert_eq!(st.max_queued, (n - u64::from(c)) as u32);
    assert_eq!(
        st.wakeups,
        waves - 1,
        "one wake-up per wave after the first"
    );
    assert_eq!(st.class(QueryClass::PointRead).served, n);
    let h = &st.class(QueryClass::PointRead).latency;
    assert_eq!(h.max_ns(), Some(waves * d * 1_000_000));
}

#[test]
fn a_full_wait_queue_refuses_exactly_the_overflow() {
    let cfg = flat(0.01)
        .max_concurrent(4)
        .queue_limit(10)
        .build()
        .unwrap();
    let mut w = World::new(cfg, 3);
    let tags: Vec<_> = (0..30).map(|_| w.query(ms(0), 1, false, get(1))).collect();
    w.run();
    let mut ok = 0;
    for (i, &tag) in tags.iter().enumerate() {
        let (at, r) = w.reply(tag);
        if i < 14 {
            assert!(r.result.is_ok());
            ok += 1;
        } else {
            assert_eq!(r.result, Err(DbError::Overloaded));
            assert_eq!((at, r.latency), (ms(0), SimDuration::ZERO));
        }
    }
    assert_eq!(ok, 14);
    let st = w.db().stats();
    assert_eq!(st.rejected_overloaded, 16);
    assert_eq!(st.class(QueryClass::PointRead).refused, 16);
    assert_eq!(st.class(QueryClass::PointRead).received, 30);
    assert_eq!(st.max_queued, 10);
    // After the burst drains, the queue takes queries again.
    assert_eq!(w.db().queued(0), 0);
}

#[test]
fn zero_latency_queries_free_their_slot_at_the_same_instant() {
    let cfg = flat(0.0).max_concurrent(1).queue_limit(0).build().unwrap();
    let mut w = World::new(cfg, 4);
    let tags: Vec<_> = (0..5).map(|_| w.query(ms(3), 1, false, get(1))).collect();
    w.run();
    for tag in tags {
        assert_eq!(w.reply(tag).0, ms(3));
        assert!(w.result(tag).is_ok(), "a slot freed at `now` is free");
    }
    assert_eq!(w.db().stats().wakeups, 0);
}

#[test]
fn no_wakeups_are_scheduled_while_nothing_waits() {
    let cfg = flat(0.001).max_concurrent(2).build().unwrap();
    let mut w = World::new(cfg, 5);
    // Two queries every 2 ms, each 1 ms long: never more than 2 in service, nobody waits.
    for i in 0..1_000 {
        w.query(ms(2 * i), 1, false, get(1));
        w.query(ms(2 * i), 1, false, get(1));
    }
    let report = w.run();
    assert_eq!(
        report.events, 4_000,
        "a query and its reply each, nothing else"
    );
    let st = w.db().stats();
    assert_eq!((st.wakeups, st.max_queued, st.max_in_service), (0, 0, 2));
}

#[test]
fn poisson_queries_at_c_slots_match_erlang_c() {
    let (c, lam, mu) = (4u32, 2_800.0, 1_000.0);
    let cfg = DbConfig::builder()
        .shards(1)
        .replicas(0)
        .max_concurrent(c)
        .queue_limit(1 << 20)
        .latency(QueryClass::PointRead, Dist::exponential(1.0 / mu).unwrap())
        .build()
        .unwrap();
    let theory = Mmc::new(c, lam, mu).unwrap().mean_response;
    for seed in [11, 12, 13] {
        let mut w = World::new(cfg.clone(), seed);
        let gaps = Dist::exponential(1.0 / lam).unwrap();
        let mut rng = RootSeed::new(seed).fork("test.arrivals");
        let mut t = SimTime::ZERO;
        let n = 300_000;
        for _ in 0..n {
            t += gaps.sample_duration(&mut rng);
            // An empty table: the index factor is exactly 1, latency is the exponential alone.
            w.query(t, 1, false, get(1));
        }
        w.run();
        let h = &w.db().stats().class(QueryClass::PointRead).latency;
        assert_eq!(h.count(), n);
        let mean = h.mean_ns().unwrap() * 1e-9;
        let err = (mean / theory - 1.0).abs();
        assert!(
            err < 0.03,
            "seed {seed}: mean {mean:.6}s vs Erlang C W {theory:.6}s ({:.2}% off)",
            err * 100.0
        );
        assert!(w.db().stats().max_in_service <= c);
    }
}

/// Latency of the query with `tag`, in seconds.
fn latency_s(w: &World, tag: u64) -> f64 {
    w.reply(tag).1.latency.as_secs_f64()
}

#[test]
fn unindexed_list_grows_linearly_and_turns_slow_while_point_reads_grow_logarithmically() {
    // List: 10 ms × (1 + rows / 1000): passes 1 s at 99,000 rows. Point reads: 1 ms ×
    // (1 + 0.1 · log2(1 + rows / 1000)).
    let cfg = DbConfig::builder()
        .shards(1)
        .replicas(0)
        .latency_all(det(0.001))
        .latency(QueryClass::FilteredList, det(0.01))
        .list_rows_per_unit(1_000.0)
        .index_log_coeff(0.1)
        .index_rows_unit(1_000.0)
        .batch_row_coeff(0.0)
        .build()
        .unwrap();
    let mut w = World::new(cfg.clone(), 6);
    let mut probes = Vec::new();
    for k in 0..=20u64 {
        // Every 10 s: a list and a point read, then 10,000 more rows.
        let t = ms(k * 10_000);
        let l = w.query(t, 1, false, list(1));
        let p = w.query(t, 1, false, get(1));
        probes.push((k * 10_000, l, p));
        w.query(
            t + SimDuration::from_secs(5),
            1,
            false,
            insert(1, 10_000, InstanceState::Running),
        );
    }
    w.run();
    for &(rows, l, p) in &probes {
        let want_list = 0.01 * (1.0 + rows as f64 / 1_000.0);
        assert!(
            (latency_s(&w, l) - want_list).abs() < 1e-9,
            "list at {rows} rows"
        );
        let want_point = 0.001 * (1.0 + 0.1 * libm::log2(1.0 + rows as f64 / 1_000.0));
        assert!(
            (latency_s(&w, p) - want_point).abs() < 1e-9,
            "point read at {rows} rows"
        );
    }
    // Linear: from 0 to 200k rows the list grows 201×; the point read less than 1.8×.
    let (first, last) = (probes[0], probes[20]);
    let list_growth = latency_s(&w, last.1) / latency_s(&w, first.1);
    let point_growth = latency_s(&w, last.2) / latency_s(&w, first.2);
    assert!((list_growth - 201.0).abs() < 1e-6, "{list_growth}");
    assert!(point_growth < 1.8, "{point_growth}");
    // Slow lists: those at 100k rows and more (1.01 s, …, 2.01 s): 11 of 21.
    let st = w.db().stats();
    assert_eq!(st.class(QueryClass::FilteredList).slow, 11);
    assert_eq!(st.class(QueryClass::PointRead).slow, 0);
    assert_eq!(st.slow_queries(), 11);
    assert_eq!(w.db().table_rows(Table::Instances), 210_000);
    assert_eq!(listed_total(w.result(last.1)), 200_000);
}

#[test]
fn archiving_shrinks_tables_and_list_latency_falls_back() {
    use InstanceState::*;
    let cfg = DbConfig::builder()
        .shards(1)
        .replicas(0)
        .latency_all(det(0.001))
        .latency(QueryClass::ArchiveBatch, det(0.02))
        .latency(QueryClass::FilteredList, det(0.01))
        .list_rows_per_unit(1_000.0)
        .archive_rows_unit(1_000.0)
        .queue_limit(1 << 20)
        .index_log_coeff(0.0)
        .batch_row_coeff(0.0)
        .build()
        .unwrap();
    let mut w = World::new(cfg, 7);
    // 20,000 instances, 12,000 of them then deleted; 50,000 history events.
    w.query(ms(0), 1, false, insert(1, 10_000, Running));
    w.query(ms(1), 1, false, insert(1, 10_000, Running));
    for id in 1..=12_000 {
        w.query(ms(10), 1, false, set_state(id, Some(Running), Deleted));
    }
    let hist = DbOp::AppendRows {
        table: Table::History,
        rows: 10_000,
    };
    for i in 0..5 {
        w.query(ms(20 + i), 1, false, hist);
    }
    let before = w.query(ms(1_000), 1, false, list(1));
    let arch_inst = w.query(
        ms(2_000),
        1,
        false,
        DbOp::ArchiveRows {
            table: Table::Instances,
            max_rows: 10_000,
            older_than: SimTime::MAX,
        },
    );
    let arch_hist = w.query(
        ms(2_000),
        1,
        false,
        DbOp::ArchiveRows {
            table: Table::History,
            max_rows: 8_000,
            older_than: SimTime::MAX,
        },
    );
    let after = w.query(ms(3_000), 1, false, list(1));
    let rest = w.query(
        ms(4_000),
        1,
        false,
        DbOp::ArchiveRows {
            table: Table::Instances,
            max_rows: 10_000,
            older_than: SimTime::MAX,
        },
    );
    w.run();
    assert!((latency_s(&w, before) - 0.01 * 21.0).abs() < 1e-9);
    assert_eq!(listed_total(w.result(before)), 8_000);
    assert_eq!(w.result(arch_inst), Ok(DbResult::Archived(10_000)));
    assert!(
        (latency_s(&w, arch_inst) - 0.02 * 11.0).abs() < 1e-9,
        "proportional"
    );
    assert_eq!(w.result(arch_hist), Ok(DbResult::Archived(8_000)));
    assert!((latency_s(&w, arch_hist) - 0.02 * 9.0).abs() < 1e-9);
    assert!(
        (latency_s(&w, after) - 0.01 * 11.0).abs() < 1e-9,
        "the scan is 10k rows shorter"
    );
    assert_eq!(
        listed_total(w.result(after)),
        8_000,
        "only deleted rows went"
    );
    // Only 2,000 deleted rows were left to archive; live rows stay.
    assert_eq!(w.result(rest), Ok(DbResult::Archived(2_000)));
    assert_eq!(w.db().table_rows(Table::Instances), 8_000);
    assert_eq!(w.db().table_rows(Table::History), 42_000);
    assert_eq!(w.db().table_rows(Table::Workflows), 0);
    assert!(
        w.db()
            .inspect_instance(AccountId(1), InstanceId(1))
            .is_none()
    );
    assert!(
        w.db()
            .inspect_instance(AccountId(1), InstanceId(12_001))
            .is_some()
    );
}

#[test]
fn compare_and_set_updates() {
    use InstanceState::*;
    let cfg = flat(0.001).build().unwrap();
    let mut w = World::new(cfg, 8);
    w.query(ms(0), 5, false, insert(5, 1, Pending));
    let ok = w.query(ms(10), 5, false, set_state(1, Some(Pending), Starting));
    let stale_expect = w.query(ms(20), 5, false, set_state(1, Some(Pending), Stopped));
    let blind = w.query(ms(30), 5, false, set_state(1, None, Running));
    let missing = w.query(ms(40), 5, false, set_state(99, None, Running));
    let foreign = w.query(ms(50), 6, false, set_state(1, None, Stopped));
    let del = w.query(ms(60), 5, false, set_state(1, Some(Running), Deleted));
    let count = w.query(ms(70), 5, false, list(5));
    w.run();
    let upd = |t| match w.result(t) {
        Ok(DbResult::Updated(o)) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(upd(ok), UpdateOutcome::Done { from: Pending });
    assert_eq!(
        upd(stale_expect),
        UpdateOutcome::Mismatch { actual: Starting }
    );
    assert_eq!(upd(blind), UpdateOutcome::Done { from: Starting });
    assert_eq!(upd(missing), UpdateOutcome::NotFound);
    assert_eq!(upd(foreign), UpdateOutcome::NotFound);
    assert_eq!(upd(del), UpdateOutcome::Done { from: Running });
    assert_eq!(
        listed_total(w.result(count)),
        0,
        "deleted rows are not listed"
    );
    let row = w
        .db()
        .inspect_instance(AccountId(5), InstanceId(1))
        .unwrap();
    assert_eq!((row.state, row.updated_at), (Deleted, ms(60)));
    assert_eq!(w.db().stats().class(QueryClass::Update).served, 6);
}

/// A multi-row update applies every matching row, leaves the others, and says which is which.
#[test]
fn multi_row_updates_report_each_row() {
    use InstanceState::*;
    let cfg = flat(0.001).build().unwrap();
    let mut w = World::new(cfg, 8);
    w.query(ms(0), 5, false, insert(5, 4, Pending));
    w.query(ms(10), 5, false, set_state(2, Some(Pending), Starting));
    w.query(ms(10), 5, false, set_state(3, Some(Pending), Stopped));
    // Rows 1..=5: 1 and 4 applied, 2 already Starting, 3 Stopped, 5 missing.
    let batch = w.query(ms(20), 5, false, many(1, 5));
    let too_many = w.query(ms(30), 5, false, many(1, MAX_UPDATE_ROWS + 1));
    w.run();
    assert_eq!(
        w.result(batch),
        Ok(DbResult::UpdatedRows(RowsUpdated {
            done: 0b1001,
            at_target: 0b0010,
            first_other: Some((2, UpdateOutcome::Mismatch { actual: Stopped })),
        }))
    );
    assert_eq!(
        w.result(too_many),
        Err(DbError::BatchTooLarge {
            rows: u32::from(MAX_UPDATE_ROWS) + 1,
            max: u32::from(MAX_UPDATE_ROWS)
        })
    );
    let state = |id| {
        w.db()
            .inspect_instance(AccountId(5), InstanceId(id))
            .unwrap()
            .state
    };
    assert_eq!(
        [state(1), state(2), state(3), state(4)],
        [Starting, Starting, Stopped, Starting]
    );
    assert_eq!(w.db().stats().class(QueryClass::Update).served, 3);
}

/// A multi-row update with references gives row `first + j` the first row's, each id `j` higher;
/// rows not applied keep theirs.
#[test]
fn multi_row_updates_write_shifted_references() {
    use InstanceState::*;
    let cfg = flat(0.001).build().unwrap();
    let mut w = World::new(cfg, 8);
    w.query(ms(0), 5, false, insert(5, 3, Pending));
    w.query(ms(10), 5, false, set_state(3, Some(Pending), Stopped));
    let mut base = InstanceResources::default();
    base.set(0, Some(ResourceId(100)));
    base.set(1, Some(ResourceId(200)));
    base.disk_attached = true;
    w.query(
        ms(20),
        5,
        false,
        DbOp::UpdateInstanceStates {
            first: InstanceId(1),
            count: 3,
            expect: Some(Pending),
            to: Starting,
            resources: Some(base),
        },
    );
    w.run();
    let row = |id| {
        w.db()
            .inspect_instance(AccountId(5), InstanceId(id))
            .unwrap()
    };
    assert_eq!(row(1).resources, base);
    assert_eq!(row(2).resources, base.shifted(1));
    assert_eq!(
        (
            row(2).resources.host(),
            row(2).resources.disk(),
            row(2).resources.eni()
        ),
        (Some(ResourceId(101)), Some(ResourceId(201)), None)
    );
    assert_eq!(row(3).resources, InstanceResources::default());
}

#[test]
fn pages_batches_and_tables_have_limits() {
    use InstanceState::*;
    let cfg = flat(0.001)
        .max_page_size(50)
        .max_batch_rows(1_000)
        .build()
        .unwrap();
    let mut w = World::new(cfg, 9);
    w.query(ms(0), 2, false, insert(2, 120, Running));
    let big = w.query(ms(0), 2, false, insert(2, 1_001, Running));
    let append = w.query(
        ms(0),
        2,
        false,
        DbOp::AppendRows {
            table: Table::Instances,
            rows: 1,
        },
    );
    let page = |p, size| DbOp::ListInstances {
        account: AccountId(2),
        page: p,
        page_size: size,
    };
    let clamped = w.query(ms(10), 2, false, page(0, 500));
    let second = w.query(ms(10), 2, false, page(2, 50));
    let beyond = w.query(ms(10), 2, false, page(3, 50));
    w.run();
    assert_eq!(
        w.result(big),
        Err(DbError::BatchTooLarge {
            rows: 1_001,
            max: 1_000
        })
    );
    assert_eq!(
        w.result(append),
        Err(DbError::NotAppendable(Table::Instances))
    );
    let listed = |t| match w.result(t) {
        Ok(DbResult::Listed {
            returned,
            total_for_account,
        }) => (returned, total_for_account),
        other => panic!("{other:?}"),
    };
    assert_eq!(listed(clamped), (50, 120));
    assert_eq!(listed(second), (20, 120));
    assert_eq!(listed(beyond), (0, 120));
    let st = w.db().stats();
    assert_eq!((st.page_size_clamped, st.rejected_invalid), (1, 2));
    assert_eq!(w.db().table_rows(Table::Instances), 120);
}

#[test]
fn a_down_primary_refuses_writes_and_queued_queries_but_replicas_keep_reading() {
    use InstanceState::*;
    let cfg = flat(0.01)
        .replicas(1)
        .replication_lag(det(0.0))
        .max_concurrent(1)
        .build()
        .unwrap();
    let mut w = World::new(cfg, 10);
    let first = w.query(ms(0), 1, false, insert(1, 1, Running));
    let queued: Vec<_> = (0..2)
        .map(|_| w.query(ms(0), 1, false, insert(1, 1, Running)))
        .collect();
    w.set_available(ms(1), 0, false);
    let refused = w.query(ms(2), 1, false, get(1));
    let replica = w.query(ms(2), 1, true, get(1));
    w.set_available(ms(20), 0, true);
    let back = w.query(ms(21), 1, false, get(1));
    w.run();
    assert!(
        w.result(first).is_ok(),
        "in service when the primary went down"
    );
    assert_eq!(w.reply(first).0, ms(10));
    for &t in &queued {
        let (at, r) = w.reply(t);
        assert_eq!((at, r.result), (ms(10), Err(DbError::Unavailable)));
        assert_eq!(r.latency, SimDuration::from_ms(10), "time spent queued");
    }
    assert_eq!(w.result(refused), Err(DbError::Unavailable));
    assert_eq!(w.reply(refused).0, ms(2));
    assert_eq!(found_state(w.result(replica)), Some(Running));
    assert_eq!(found_state(w.result(back)), Some(Running));
    assert_eq!(w.db().stats().rejected_unavailable, 3);
    assert_eq!(w.db().instances_created(), 1);
}

#[test]
fn shards_split_accounts_and_replicas_share_reads() {
    let cfg = flat(0.01)
        .shards(3)
        .replicas(2)
        .replication_lag(det(0.0))
        .max_concurrent(1)
        .queue_limit(100)
        .build()
        .unwrap();
    let mut w = World::new(cfg, 14);
    for account in 0..6 {
        w.query(
            ms(0),
            account,
            false,
            insert(account, 10, InstanceState::Running),
        );
    }
    // Four replica reads at once on shard 1 take turns between its two replicas: two waves.
    let reads: Vec<_> = (0..4).map(|_| w.query(ms(100), 1, true, get(1))).collect();
    w.run();
    let db = w.db();
    assert_eq!(db.shard_of(AccountId(4)), 1);
    for s in 0..3 {
        assert_eq!(db.shard_table_rows(s, Table::Instances), 20);
    }
    let done: Vec<_> = reads.iter().map(|&t| w.reply(t).0).collect();
    assert_eq!(done, vec![ms(110), ms(110), ms(120), ms(120)]);
    assert_eq!(db.stats().replica_reads, 4);
    // Shard 0 inserts (accounts 0 and 3) queue behind each other on its primary.
    assert_eq!(db.stats().max_queued, 1);
}

/// A mixed workload with random latencies, lags, shards and replicas.
fn mixed_world(seed: u64) -> World {
    use InstanceState::*;
    let cfg = DbConfig::builder()
        .shards(3)
        .replicas(2)
        .max_concurrent(3)
        .queue_limit(20)
        .build()
        .unwrap();
    let mut w = World::new(cfg, seed);
    let mut rng = RootSeed::new(seed).fork("test.workload");
    let gaps = Dist::exponential(0.000_5).unwrap();
    let mut t = SimTime::ZERO;
    for _ in 0..20_000 {
        t += gaps.sample_duration(&mut rng);
        let account = rng.below(7) as u32;
        let id = 1 + rng.below(2_000);
        let op = match rng.below(10) {
            0..=3 => get(id),
            4 => list(account),
            5 => insert(account, 1 + rng.below(5) as u16, Pending),
            6 => set_state(id, Some(Pending), Starting),
            7 => DbOp::AppendRows {
                table: Table::History,
                rows: 3,
            },
            8 => DbOp::ArchiveRows {
                table: Table::History,
                max_rows: 10,
                older_than: SimTime::MAX,
            },
            _ => set_state(id, None, Deleted),
        };
        w.query(t, account, rng.below(2) == 0, op);
    }
    w
}

#[test]
fn the_same_queries_give_the_same_trace() {
    let mut a = mixed_world(21);
    let mut b = mixed_world(21);
    let (ra, rb) = (a.run(), b.run());
    assert_eq!(ra.trace_hash, rb.trace_hash);
    assert_eq!(ra.events, rb.events);
    assert_eq!(a.replies(), b.replies());
    let st = a.db().stats();
    assert!(st.stale_reads > 0 && st.rejected_overloaded > 0 && st.wakeups > 0);
    assert!(st.max_in_service <= 3 && st.max_queued <= 20);
    let mut c = mixed_world(22);
    assert_ne!(
        c.run().trace_hash,
        ra.trace_hash,
        "another seed, another run"
    );
}

#[test]
fn config_errors_say_what_to_fix() {
    use DbConfigError::*;
    let b = DbConfig::builder;
    assert_eq!(b().shards(0).build(), Err(NoShards));
    assert_eq!(b().max_concurrent(0).build(), Err(NoConcurrency));
    assert!(matches!(
        b().max_concurrent(u32::MAX).build(),
        Err(TooMuchConcurrency { .. })
    ));
    assert!(matches!(
        b().queue_limit(u32::MAX).build(),
        Err(QueueTooLong { .. })
    ));
    assert!(matches!(
        b().replicas(1_000).build(),
        Err(TooManyReplicas { .. })
    ));
    assert_eq!(
        b().max_replication_lag(SimDuration::ZERO).build(),
        Err(NoReplicationLagBound)
    );
    assert!(
        b().replicas(0)
            .max_replication_lag(SimDuration::ZERO)
            .build()
            .is_ok()
    );
    assert!(matches!(
        b().index_log_coeff(-1.0).build(),
        Err(BadCoefficient {
            param: "index_log_coeff",
            ..
        })
    ));
    assert!(matches!(
        b().batch_row_coeff(f64::NAN).build(),
        Err(BadCoefficient { .. })
    ));
    assert!(matches!(
        b().list_rows_per_unit(0.0).build(),
        Err(BadUnit {
            param: "list_rows_per_unit",
            ..
        })
    ));
    assert_eq!(
        b().slow_query_threshold(SimDuration::ZERO).build(),
        Err(ZeroSlowQueryThreshold)
    );
    assert_eq!(b().max_page_size(0).build(), Err(ZeroPageSize));
    assert!(matches!(
        b().max_batch_rows(0).build(),
        Err(BadBatchLimit { .. })
    ));
    assert!(NoShards.to_string().contains("at least 1"));
    let d = DbConfig::assumed_defaults();
    assert_eq!(b().build().as_ref(), Ok(&d));
    assert_eq!(d.to_builder().build(), Ok(d.clone()));
    assert_eq!(
        (
            d.shards(),
            d.max_concurrent(),
            d.queue_limit(),
            d.replicas()
        ),
        (4, 64, 1_024, 1)
    );
    assert_eq!(d.slow_query_threshold(), SimDuration::SECOND);
    assert_eq!((d.max_page_size(), d.max_batch_rows()), (100, 10_000));
}

#[test]
fn size_factors_follow_the_documented_formulas() {
    let d = DbConfig::assumed_defaults();
    assert_eq!(d.index_factor(0), 1.0);
    assert!(
        (d.index_factor(1_023_000) - 2.0).abs() < 1e-12,
        "1 + 0.1·log2(1024)"
    );
    assert_eq!(d.list_factor(50_000), 6.0);
    assert_eq!(d.batch_factor(1), 1.0);
    assert!((d.batch_factor(101) - 3.0).abs() < 1e-12);
    assert_eq!(d.archive_factor(2_000), 3.0);
    for c in QueryClass::ALL {
        assert_eq!(QueryClass::ALL[c.index()], c);
        assert!(d.latency(c).mean().unwrap() > 0.0);
    }
    assert_eq!(QueryClass::FilteredList.name(), "filtered_list");
    assert_eq!(
        Table::ALL.map(Table::name),
        ["instances", "workflows", "history", "idempotency"]
    );
}

#[test]
fn membership_history_answers_as_of_and_forgets_past_the_horizon() {
    let mut m = Membership::default();
    m.set(ms(10), 5, ms(0));
    m.set(ms(20), 7, ms(0));
    m.set(ms(20), 8, ms(0));
    assert_eq!(
        (m.as_of(ms(9)), m.as_of(ms(10)), m.as_of(ms(25))),
        (0, 5, 8)
    );
    assert_eq!(m.log.len(), 2, "same-instant changes merge");
    m.set(ms(100), 9, ms(50));
    assert_eq!(m.log.len(), 1);
    assert_eq!((m.base, m.as_of(ms(60)), m.current()), (8, 8, 9));
    for i in 0..(MAX_MEMBERSHIP_LOG as u64 + 10) {
        m.set(ms(200 + i), i, ms(0));
    }
    assert_eq!(m.log.len(), MAX_MEMBERSHIP_LOG, "bounded");
}

/// Retention: only rows older than the cut-off are archived — deleted instances by their
/// deletion time, size-only rows by the second they were appended in.
#[test]
fn archive_respects_retention() {
    use InstanceState::{Deleted, Running};
    let mut w = World::new(DbConfig::assumed_defaults(), 1);
    w.query(ms(0), 1, false, insert(1, 10, Running));
    for id in 1..=4 {
        w.query(ms(100), 1, false, set_state(id, Some(Running), Deleted));
    }
    for id in 5..=6 {
        w.query(ms(9_000), 1, false, set_state(id, Some(Running), Deleted));
    }
    let hist = |rows| DbOp::AppendRows {
        table: Table::History,
        rows,
    };
    w.query(ms(500), 1, false, hist(100));
    w.query(ms(7_200), 1, false, hist(50));
    let cut = SimTime::from_ns(5_000_000_000);
    let inst = w.query(
        ms(10_000),
        1,
        false,
        DbOp::ArchiveRows {
            table: Table::Instances,
            max_rows: 100,
            older_than: cut,
        },
    );
    let h = w.query(
        ms(10_000),
        1,
        false,
        DbOp::ArchiveRows {
            table: Table::History,
            max_rows: 1_000,
            older_than: cut,
        },
    );
    let again = w.query(
        ms(20_000),
        1,
        false,
        DbOp::ArchiveRows {
            table: Table::History,
            max_rows: 30,
            older_than: SimTime::from_ns(8_000_000_000),
        },
    );
    w.run();
    assert_eq!(
        w.result(inst),
        Ok(DbResult::Archived(4)),
        "only the instances deleted before 5 s"
    );
    assert_eq!(
        w.result(h),
        Ok(DbResult::Archived(100)),
        "only the rows of second 0"
    );
    assert_eq!(
        w.result(again),
        Ok(DbResult::Archived(30)),
        "a batch limit takes part of a second's rows"
    );
    assert_eq!(w.db().table_rows(Table::History), 20);
    assert_eq!(w.db().table_rows(Table::Instances), 6);
}

/// A row as `Rows` stores it, only its account differing (for the structure tests below).
fn stored(account: u32) -> StoredRow {
    let t0 = SimTime::ZERO;
    StoredRow {
        account: AccountId(account),
        instance_type: InstanceType(1),
        state: InstanceState::Pending,
        updated_at: t0,
        prev_state: InstanceState::Pending,
        prev_updated_at: t0,
        created_at: t0,
        resources: InstanceResources::default(),
        resources_at: t0,
    }
}

/// `Rows` against a `BTreeMap`: inserts (fresh ids pushed, old ones placed, removed ones
/// revived), removals (through several compactions) and ordered walks from any id.
#[test]
fn rows_keep_id_order_through_removals() {
    let mut rng = RootSeed::new(5).fork("db.rows.model");
    let mut rows = Rows::default();
    let mut model = BTreeMap::new();
    let mut next = 1u64;
    for step in 0..20_000u32 {
        match rng.below(8) {
            0..=3 => {
                rows.insert(InstanceId(next), stored(step));
                model.insert(next, step);
                next += 1 + rng.below(3);
            }
            4 => {
                // An id at or below the last: present, removed earlier, or never used.
                let id = rng.below(next);
                rows.insert(InstanceId(id), stored(step));
                model.insert(id, step);
            }
            _ => {
                let id = rng.below(next);
                let got = rows.remove(&InstanceId(id)).map(|r| r.account.0);
                assert_eq!(got, model.remove(&id), "remove {id}");
            }
        }
        assert_eq!(rows.len(), model.len());
        if step % 997 == 0 {
            let from = rng.below(next + 1);
            let walked: Vec<(u64, u32)> = rows
                .from(InstanceId(from))
                .map(|(id, r)| (id.0, r.account.0))
                .collect();
            let expected: Vec<(u64, u32)> = model.range(from..).map(|(&k, &v)| (k, v)).collect();
            assert_eq!(walked, expected, "rows from {from}");
            assert_eq!(rows.iter().count(), model.len());
        }
    }
    assert!(
        rows.order.len() <= 2 * rows.len() + Rows::MIN_COMPACT + 1,
        "removed ids are compacted away"
    );
}

/// `DeletedRows` against a `BTreeSet`: mostly increasing entries, some out of order and
/// repeated, removals from anywhere, and archiving from the front.
#[test]
fn deleted_rows_are_a_sorted_set() {
    let mut rng = RootSeed::new(6).fork("db.deleted.model");
    let mut set = DeletedRows::default();
    let mut model = std::collections::BTreeSet::new();
    let mut now = 0u64;
    for _ in 0..20_000 {
        let at = |t: u64| SimTime::from_ns(t);
        match rng.below(10) {
            0..=5 => {
                now += rng.below(3);
                let e = (at(now), InstanceId(rng.below(50)));
                set.insert(e);
                model.insert(e);
            }
            6 | 7 => {
                let e = (at(rng.below(now + 1)), InstanceId(rng.below(50)));
                set.remove(&e);
                model.remove(&e);
            }
            _ => {
                assert_eq!(set.first(), model.first());
                assert_eq!(set.pop_first(), model.pop_first());
            }
        }
    }
    assert!(set.0.iter().eq(model.iter()));
}

impl World {
    /// Sends the change feed to the caller, `lag_s` seconds after each change.
    fn with_feed(mut self, lag_s: f64) -> World {
        let caller = self.caller;
        match self.sim.component_mut(self.db) {
            Node::Db(db) => db.set_change_feed(caller, det(lag_s), RootSeed::new(1).fork("feed")),
            Node::Caller(_) => unreachable!(),
        }
        self
    }
    fn changes(&self) -> &[(SimTime, RowChange)] {
        match self.sim.component(self.caller) {
            Node::Caller(c) => &c.changes,
            Node::Db(_) => unreachable!(),
        }
    }
}

/// The change feed reports each state update applied, when it was applied, after the lag: one
/// row of a single update, the span of the rows applied of a multi-row one; nothing for
/// inserts, reads, mismatches or multi-row updates that applied no row.
#[test]
fn the_change_feed_reports_every_state_update_applied() {
    use InstanceState::*;
    let cfg = flat(0.001).build().unwrap();
    let mut w = World::new(cfg, 8).with_feed(0.02);
    w.query(ms(0), 5, false, insert(5, 6, Pending));
    w.query(ms(10), 5, false, set_state(2, Some(Pending), Starting));
    w.query(ms(10), 5, false, set_state(3, Some(Pending), Stopped));
    // A mismatch and a read: no change.
    w.query(ms(15), 5, false, set_state(3, Some(Pending), Starting));
    w.query(ms(15), 5, false, DbOp::GetInstance(InstanceId(3)));
    // Rows 1..=5: 1, 4 and 5 applied (2 at the target, 3 Stopped): the span 1..=5.
    w.query(ms(20), 5, false, many(1, 5));
    // Rows 2 and 3 again: none applied.
    w.query(ms(30), 5, false, many(2, 2));
    // Row 6 alone in a multi-row update whose rows from 2 are not applied: the span is row 6.
    w.query(ms(40), 5, false, many(2, 5));
    w.run();
    let change = |first: u64, count: u32, v: u64| {
        (
            ms(v + 20),
            RowChange {
                account: AccountId(5),
                first: InstanceId(first),
                count,
                version: ms(v),
            },
        )
    };
    assert_eq!(
        w.changes(),
        &[
            change(2, 1, 10),
            change(3, 1, 10),
            change(1, 5, 20),
            change(6, 1, 40)
        ]
    );
}

/// A write applied whose reply a failover lost is in the feed all the same (the binlog has it):
/// the writer hears `Unavailable`, the invalidator hears of the change.
#[test]
fn the_change_feed_has_writes_whose_reply_a_failover_lost() {
    use InstanceState::*;
    let cfg = flat(0.05).build().unwrap();
    let mut w = World::new(cfg, 8).with_feed(0.01);
    w.query(ms(0), 5, false, insert(5, 1, Pending));
    let upd = w.query(ms(100), 5, false, set_state(1, Some(Pending), Starting));
    w.set_available(ms(120), 0, false);
    w.sim
        .schedule(ms(120), w.db, M::Timer(DbTimer::failover(0)))
        .unwrap();
    w.run();
    assert_eq!(w.result(upd), Err(DbError::Unavailable));
    assert_eq!(w.db().stats().failover_inflight_failed, 1);
    let row = w
        .db()
        .inspect_instance(AccountId(5), InstanceId(1))
        .unwrap();
    assert_eq!((row.state, row.updated_at), (Starting, ms(100)));
    assert_eq!(
        w.changes(),
        &[(
            ms(110),
            RowChange {
                account: AccountId(5),
                first: InstanceId(1),
                count: 1,
                version: ms(100),
            }
        )]
    );
}

/// The change feed's heartbeat: a heartbeat row every interval, stamped with its instant and
/// delivered after the feed's lag, none while shard 0's primary is down (the consumer sees that
/// as lag, as pt-heartbeat's would), and nothing else in the feed.
#[test]
fn the_change_feed_writes_a_heartbeat_every_interval_while_shard_0_is_up() {
    let cfg = flat(0.001).build().unwrap();
    let mut w = World::new(cfg, 8).with_feed(0.02);
    match w.sim.component_mut(w.db) {
        Node::Db(db) => {
            db.set_feed_heartbeat(SimDuration::from_ms(100), RootSeed::new(2).fork("hb"))
        }
        Node::Caller(_) => unreachable!(),
    }
    w.sim
        .schedule(ms(100), w.db, M::Timer(DbTimer::heartbeat()))
        .unwrap();
    w.set_available(ms(350), 0, false);
    w.set_available(ms(550), 0, true);
    assert!(
        w.sim.run_until(ms(1_000)).is_none(),
        "the heartbeat goes on"
    );
    let expected: Vec<(SimTime, RowChange)> = [100, 200, 300, 600, 700, 800, 900]
        .into_iter()
        .map(|t| (ms(t + 20), RowChange::heartbeat(ms(t))))
        .collect();
    assert_eq!(w.changes(), expected.as_slice());
    assert!(w.changes().iter().all(|(_, c)| c.is_heartbeat()));
    // The one written at 1 s is on its way.
    assert_eq!(w.db().stats().heartbeats, 8);
}
