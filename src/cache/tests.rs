//! Tests of the cache framework in tiny worlds.
//!
//! 1. The L2 alone with a caller that keeps every reply: latency, the concurrency limit and its
//!    queue, overflow, down, injected errors, flush, TTL, LRU capacity, determinism.
//! 2. A whole read path as the module documentation wires it: API-like nodes each with an L1,
//!    the shared L2, and a stub database (fixed latency, versioned rows, reads counted per 10 ms,
//!    can be taken down); reads L1 → L2 → DB with single-flight, writes with an L2 delete and a
//!    delayed L1 broadcast. It shows the stampede of a cold or flushed cache, stale values served
//!    while the database fails, negative caching, and the staleness window of invalidation.

use super::*;
use crate::kernel::{
    Component, ComponentId, Dist, Handle, Limits, Message, Outbox, Outcome, RootSeed, RunReport,
    Sim, SimDuration, SimRng, SimTime, Slab, check_determinism,
};

type Req = L2Request<u64, u64>;

#[derive(Clone, Copy, Debug)]
enum M {
    L2Req(Req),
    L2Rep(L2Reply<u64>),
    L2Tick(L2Timer),
    L2Down(bool),
    L2ErrorRate(f64),
    L2FlushNow,
    /// A read of a key, arriving at a node.
    Read(u64),
    /// A write of a key, arriving at a node.
    Write(u64),
    FlushL1,
    DbRead {
        tag: u64,
        key: u64,
        from: ComponentId,
    },
    DbRep {
        tag: u64,
        result: Result<Option<u64>, ()>,
    },
    DbWrite {
        key: u64,
        from: ComponentId,
    },
    DbWrote {
        key: u64,
    },
    DbDown(bool),
    Inv(L1Invalidation<u64>),
}

impl From<L2Reply<u64>> for M {
    fn from(r: L2Reply<u64>) -> M {
        M::L2Rep(r)
    }
}
impl From<L2Timer> for M {
    fn from(t: L2Timer) -> M {
        M::L2Tick(t)
    }
}

impl Message for M {
    fn kind_code(&self) -> u32 {
        match self {
            M::L2Req(_) => 0,
            M::L2Rep(_) => 1,
            M::L2Tick(_) => 2,
            M::L2Down(_) => 3,
            M::L2ErrorRate(_) => 4,
            M::L2FlushNow => 5,
            M::Read(_) => 6,
            M::Write(_) => 7,
            M::FlushL1 => 8,
            M::DbRead { .. } => 9,
            M::DbRep { .. } => 10,
            M::DbWrite { .. } => 11,
            M::DbWrote { .. } => 12,
            M::DbDown(_) => 13,
            M::Inv(_) => 14,
        }
    }
    fn kind_name(&self) -> &'static str {
        match self {
            M::L2Req(_) => "L2Req",
            M::L2Rep(_) => "L2Rep",
            M::L2Tick(_) => "L2Tick",
            M::L2Down(_) => "L2Down",
            M::L2ErrorRate(_) => "L2ErrorRate",
            M::L2FlushNow => "L2FlushNow",
            M::Read(_) => "Read",
            M::Write(_) => "Write",
            M::FlushL1 => "FlushL1",
            M::DbRead { .. } => "DbRead",
            M::DbRep { .. } => "DbRep",
            M::DbWrite { .. } => "DbWrite",
            M::DbWrote { .. } => "DbWrote",
            M::DbDown(_) => "DbDown",
            M::Inv(_) => "Inv",
        }
    }
}

enum C {
    L2(Box<L2Cache<u64, u64>>),
    Caller(Vec<(SimTime, L2Reply<u64>)>),
    Db(StubDb),
    Node(Box<Node>),
}

impl Component<M> for C {
    fn on_event(&mut self, msg: M, out: &mut Outbox<'_, M>) {
        match (self, msg) {
            (C::L2(c), M::L2Req(r)) => c.on_request(r, out),
            (C::L2(c), M::L2Tick(t)) => c.on_timer(t, out),
            (C::L2(c), M::L2Down(d)) => c.set_down(d),
            (C::L2(c), M::L2ErrorRate(p)) => c.set_error_rate(p).unwrap(),
            (C::L2(c), M::L2FlushNow) => {
                c.flush();
            }
            (C::Caller(v), M::L2Rep(r)) => v.push((out.now(), r)),
            (C::Db(db), msg) => db.on_event(msg, out),
            (C::Node(n), msg) => n.on_event(msg, out),
            _ => out.violation("miswired test world"),
        }
    }
}

fn ms(n: u64) -> SimTime {
    SimTime::ZERO + SimDuration::from_ms(n)
}

fn det(secs: f64) -> Dist {
    Dist::constant(secs).unwrap()
}

fn run(sim: &mut Sim<M, C>) -> RunReport {
    let report = sim.run();
    assert_eq!(report.outcome, Outcome::Drained, "{report:?}");
    report
}

// ---------------------------------------------------------------------------------------------
// 1. The L2 alone.

struct L2World {
    sim: Sim<M, C>,
    l2: ComponentId,
    caller: ComponentId,
    next_tag: u64,
}

impl L2World {
    fn new(cfg: L2ConfigBuilder, seed: u64) -> L2World {
        let seed = RootSeed::new(seed);
        let mut sim = Sim::new(seed, Limits::GENEROUS);
        let l2 = sim.add(
            "l2",
            C::L2(Box::new(L2Cache::new(
                cfg.build().unwrap(),
                seed.fork("l2"),
            ))),
        );
        let caller = sim.add("caller", C::Caller(Vec::new()));
        L2World {
            sim,
            l2,
            caller,
            next_tag: 0,
        }
    }

    /// Schedules a request at `at`; returns its tag.
    fn op(&mut self, at: SimTime, op: L2Op<u64, u64>) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        let r = L2Request {
            tag,
            reply_to: self.caller,
            op,
        };
        self.sim.schedule(at, self.l2, M::L2Req(r)).unwrap();
        tag
    }

    fn get(&mut self, at: SimTime, key: u64) -> u64 {
        self.op(at, L2Op::Get { key })
    }

    fn set(&mut self, at: SimTime, key: u64, value: u64, ttl: SimDuration) -> u64 {
        self.op(
            at,
            L2Op::Set {
                key,
                value: Cached::Value(value),
                ttl,
                version: SimTime::ZERO,
            },
        )
    }

    fn control(&mut self, at: SimTime, msg: M) {
        self.sim.schedule(at, self.l2, msg).unwrap();
    }

    fn cache(&self) -> &L2Cache<u64, u64> {
        match self.sim.component(self.l2) {
            C::L2(c) => c,
            _ => unreachable!(),
        }
    }

    fn replies(&self) -> &[(SimTime, L2Reply<u64>)] {
        match self.sim.component(self.caller) {
            C::Caller(v) => v,
            _ => unreachable!(),
        }
    }

    /// When the reply to `tag` arrived, and the reply.
    fn reply(&self, tag: u64) -> (SimTime, L2Reply<u64>) {
        let all: Vec<_> = self
            .replies()
            .iter()
            .filter(|(_, r)| r.tag == tag)
            .collect();
        assert_eq!(all.len(), 1, "exactly one reply to tag {tag}");
        *all[0]
    }

    fn result(&self, tag: u64) -> Result<L2Result<u64>, L2Error> {
        self.reply(tag).1.result
    }
}

/// Constant 1 ms latency, plenty of slots.
fn l2_flat() -> L2ConfigBuilder {
    L2Config::builder()
        .latency(det(0.001))
        .max_concurrent(100)
        .queue_limit(100)
        .capacity(1_000)
}

#[test]
fn detached_requests_take_effect_without_a_reply() {
    let mut w = L2World::new(l2_flat(), 1);
    let ttl = SimDuration::from_secs(300);
    let detached = |op| L2Request {
        tag: L2Request::<u64, u64>::DETACHED,
        reply_to: w.caller,
        op,
    };
    let set = detached(L2Op::Set {
        key: 1,
        value: Cached::Value(5),
        ttl,
        version: SimTime::ZERO,
    });
    let delete = detached(L2Op::Delete {
        key: 2,
        version: ms(20),
    });
    w.sim.schedule(ms(10), w.l2, M::L2Req(set)).unwrap();
    w.set(ms(15), 2, 6, ttl);
    w.sim.schedule(ms(20), w.l2, M::L2Req(delete)).unwrap();
    let hit = w.get(ms(30), 1);
    let gone = w.get(ms(30), 2);
    run(&mut w.sim);
    assert_eq!(w.result(hit), Ok(L2Result::Hit(Cached::Value(5))));
    assert_eq!(w.result(gone), Ok(L2Result::Miss));
    // The set at 15 ms and the two gets were answered; the detached set and delete were not.
    assert_eq!(w.replies().len(), 3);
    assert_eq!(w.cache().stats().served, 5);
}

#[test]
fn a_delete_refuses_older_values_that_arrive_after_it_until_its_tombstone_expires() {
    let mut w = L2World::new(l2_flat(), 1);
    let ttl = SimDuration::from_secs(300);
    let set = |key, v, version| L2Op::Set {
        key,
        value: Cached::Value(v),
        ttl,
        version: ms(version),
    };
    // The write of version 100 deletes key 1; a fill that read version 50 before the write
    // arrives after the delete (the classic race): refused. A fill of version 100: kept.
    w.op(
        ms(100),
        L2Op::Delete {
            key: 1,
            version: ms(100),
        },
    );
    w.op(ms(110), set(1, 50, 50));
    let raced = w.get(ms(120), 1);
    w.op(ms(130), set(1, 100, 100));
    let fresh = w.get(ms(140), 1);
    // Past the tombstone's life an old value is taken again (nothing remembers the delete).
    w.op(
        ms(200),
        L2Op::Delete {
            key: 2,
            version: ms(200),
        },
    );
    let late = ms(200).saturating_add(crate::cache::l2::TOMBSTONE_TTL);
    w.op(late, set(2, 7, 150));
    let after = w.get(late.saturating_add(SimDuration::from_ms(10)), 2);
    // A run delete covers every key of its run, tombstones included.
    for k in 10..13 {
        w.set(ms(300), k, k, ttl);
    }
    w.op(
        ms(310),
        L2Op::DeleteRun {
            first: 10,
            count: 3,
            version: ms(305),
        },
    );
    w.op(ms(320), set(11, 1, 300));
    let run_gets: Vec<u64> = (10..14).map(|k| w.get(ms(330), k)).collect();
    run(&mut w.sim);
    for (k, tag) in (10..14).zip(&run_gets) {
        assert_eq!(w.result(*tag), Ok(L2Result::Miss), "key {k}");
    }
    assert_eq!(w.result(raced), Ok(L2Result::Miss));
    assert_eq!(w.result(fresh), Ok(L2Result::Hit(Cached::Value(100))));
    assert_eq!(w.result(after), Ok(L2Result::Hit(Cached::Value(7))));
    assert_eq!(w.cache().stats().outdated_sets_refused, 2);
}

#[test]
fn a_tombstone_keeps_the_newest_delete_version() {
    let mut w = L2World::new(l2_flat(), 1);
    let ttl = SimDuration::from_secs(300);
    let set = |v, version| L2Op::Set {
        key: 1,
        value: Cached::Value(v),
        ttl,
        version: ms(version),
    };
    let delete = |version| L2Op::Delete {
        key: 1,
        version: ms(version),
    };
    // A delete of version 400, then a late one of version 350: the tombstone still refuses
    // values older than 400 (and is renewed). Then an older delete first, a newer one after.
    w.op(ms(400), delete(400));
    w.op(ms(410), delete(350));
    w.op(ms(420), set(1, 380));
    let refused = w.get(ms(425), 1);
    w.op(ms(430), set(2, 400));
    let kept = w.get(ms(435), 1);
    w.op(ms(500), delete(450));
    w.op(ms(510), delete(480));
    w.op(ms(520), set(3, 470));
    let refused_again = w.get(ms(525), 1);
    w.op(ms(530), set(4, 480));
    let kept_again = w.get(ms(535), 1);
    run(&mut w.sim);
    assert_eq!(w.result(refused), Ok(L2Result::Miss));
    assert_eq!(w.result(kept), Ok(L2Result::Hit(Cached::Value(2))));
    assert_eq!(w.result(refused_again), Ok(L2Result::Miss));
    assert_eq!(w.result(kept_again), Ok(L2Result::Hit(Cached::Value(4))));
    assert_eq!(w.cache().stats().outdated_sets_refused, 2);
}

#[test]
fn l2_replies_after_its_latency_and_ops_take_effect_when_they_start() {
    let mut w = L2World::new(l2_flat(), 1);
    let ttl = SimDuration::from_ms(100);
    let set = w.set(ms(0), 1, 10, ttl);
    let same_instant = w.get(ms(0), 1);
    let before_ttl = w.get(SimTime::from_ns(99_999_999), 1);
    let at_ttl = w.get(ms(100), 1);
    let absent = w.get(ms(1), 2);
    let neg_set = w.op(
        ms(200),
        L2Op::Set {
            key: 3,
            value: Cached::Negative,
            ttl,
            version: SimTime::ZERO,
        },
    );
    let neg_get = w.get(ms(201), 3);
    let del = w.op(
        ms(202),
        L2Op::Delete {
            key: 3,
            version: SimTime::ZERO,
        },
    );
    let del_again = w.op(
        ms(203),
        L2Op::Delete {
            key: 3,
            version: SimTime::ZERO,
        },
    );
    let after_del = w.get(ms(204), 3);
    run(&mut w.sim);

    assert_eq!(w.reply(set).0, ms(1));
    assert_eq!(w.result(set), Ok(L2Result::Stored));
    let (t, r) = w.reply(same_instant);
    assert_eq!((t, r.latency), (ms(1), SimDuration::from_ms(1)));
    assert_eq!(r.result, Ok(L2Result::Hit(Cached::Value(10))));
    assert_eq!(
        w.result(before_ttl),
        Ok(L2Result::Hit(Cached::Value(10))),
        "a hit up to the last nanosecond of the TTL"
    );
    assert_eq!(w.result(at_ttl), Ok(L2Result::Miss), "expired at set + ttl");
    assert_eq!(w.result(absent), Ok(L2Result::Miss));
    assert_eq!(w.result(neg_set), Ok(L2Result::Stored));
    assert_eq!(w.result(neg_get), Ok(L2Result::Hit(Cached::Negative)));
    assert_eq!(w.result(del), Ok(L2Result::Deleted(true)));
    assert_eq!(w.result(del_again), Ok(L2Result::Deleted(false)));
    assert_eq!(w.result(after_del), Ok(L2Result::Miss));

    let s = w.cache().stats();
    assert_eq!((s.gets, s.sets, s.deletes, s.served), (6, 2, 2, 10));
    let c = s.cache;
    assert_eq!(
        (c.hits_fresh, c.negative_hits, c.misses, c.expirations),
        (2, 1, 3, 1)
    );
    assert_eq!((c.invalidations, c.db_reads_saved()), (1, 3));
    assert_eq!(c.hit_ratio(), Some(0.5));
    assert_eq!(s.latency.max_ns(), Some(1_000_000));
    assert_eq!(s.wakeups, 0, "no request waited");
}

/// A delete that finds the queue full is applied at once (never shed): a detached one without a
/// reply, one that wants an answer (the binlog invalidator's) answered at once.
#[test]
fn an_overloaded_l2_applies_deletes_at_once_and_answers_those_that_want_it() {
    let cfg = l2_flat()
        .latency(det(0.010))
        .max_concurrent(1)
        .queue_limit(1);
    let mut w = L2World::new(cfg, 2);
    w.set(ms(0), 7, 70, SimDuration::from_secs(60));
    w.set(ms(0), 8, 80, SimDuration::from_secs(60));
    // At 20 ms both sets are in; two gets fill the slot and the queue.
    w.get(ms(20), 1);
    w.get(ms(20), 2);
    let answered = w.op(
        ms(21),
        L2Op::Delete {
            key: 7,
            version: ms(21),
        },
    );
    let detached = L2Request {
        tag: L2Request::<u64, u64>::DETACHED,
        reply_to: w.caller,
        op: L2Op::Delete {
            key: 8,
            version: ms(21),
        },
    };
    w.control(ms(21), M::L2Req(detached));
    run(&mut w.sim);
    assert_eq!(
        w.reply(answered),
        (
            ms(21),
            L2Reply {
                tag: answered,
                latency: SimDuration::ZERO,
                result: Ok(L2Result::Deleted(true)),
            }
        )
    );
    assert!(
        w.replies()
            .iter()
            .all(|(_, r)| r.tag != L2Request::<u64, u64>::DETACHED)
    );
    assert_eq!(w.cache().peek(ms(22), 7), None);
    assert_eq!(w.cache().peek(ms(22), 8), None);
    assert_eq!(w.cache().stats().deletes_applied_overloaded, 2);
}

#[test]
fn l2_concurrency_limit_queues_fifo_and_refuses_overflow() {
    let cfg = l2_flat()
        .latency(det(0.010))
        .max_concurrent(2)
        .queue_limit(3);
    let mut w = L2World::new(cfg, 2);
    let tags: Vec<u64> = (0..7).map(|k| w.get(ms(0), k)).collect();
    let late = w.get(ms(15), 9);
    run(&mut w.sim);

    let at = |tag: u64| {
        let (t, r) = w.reply(tag);
        (t, r.latency, r.result)
    };
    let miss = Ok(L2Result::Miss);
    let d = SimDuration::from_ms;
    assert_eq!(at(tags[0]), (ms(10), d(10), miss));
    assert_eq!(at(tags[1]), (ms(10), d(10), miss));
    assert_eq!(at(tags[2]), (ms(20), d(20), miss));
    assert_eq!(at(tags[3]), (ms(20), d(20), miss));
    assert_eq!(at(tags[4]), (ms(30), d(30), miss));
    assert_eq!(at(tags[5]), (ms(0), d(0), Err(L2Error::Overloaded)));
    assert_eq!(at(tags[6]), (ms(0), d(0), Err(L2Error::Overloaded)));
    // Arrived at 15 ms behind tag 4; both start when tags 2 and 3 end at 20 ms.
    assert_eq!(at(late), (ms(30), d(15), miss));

    let s = w.cache().stats();
    assert_eq!((s.max_in_service, s.max_queued), (2, 3));
    assert_eq!((s.refused_overloaded, s.served, s.errors()), (2, 6, 2));
    assert_eq!(s.wakeups, 2, "one at 10 ms, one at 20 ms");
    assert_eq!(s.latency.count(), 6);
}

#[test]
fn a_down_l2_answers_errors_at_once_and_keeps_its_data() {
    let cfg = l2_flat().latency(det(0.010)).max_concurrent(1);
    let mut w = L2World::new(cfg, 3);
    w.set(ms(0), 1, 11, SimDuration::MAX);
    w.control(ms(15), M::L2Down(true));
    let while_down = w.get(ms(16), 1);
    w.control(ms(20), M::L2Down(false));
    let back_up = w.get(ms(21), 1);
    // In service when it goes down: completes. Queued: refused when its turn comes.
    let in_service = w.get(ms(40), 1);
    let queued = w.get(ms(40), 1);
    w.control(ms(45), M::L2Down(true));
    w.control(ms(60), M::L2Down(false));
    run(&mut w.sim);

    assert_eq!(w.reply(while_down).0, ms(16));
    assert_eq!(w.result(while_down), Err(L2Error::Down));
    assert_eq!(w.reply(while_down).1.latency, SimDuration::ZERO);
    assert_eq!(w.result(back_up), Ok(L2Result::Hit(Cached::Value(11))));
    assert_eq!(w.reply(in_service).0, ms(50));
    assert_eq!(w.result(in_service), Ok(L2Result::Hit(Cached::Value(11))));
    let (t, r) = w.reply(queued);
    assert_eq!(
        (t, r.latency, r.result),
        (ms(50), SimDuration::from_ms(10), Err(L2Error::Down))
    );
    assert_eq!(w.cache().stats().refused_down, 2);
    assert!(!w.cache().is_down());
}

#[test]
fn injected_errors_fail_requests_without_effect() {
    let mut w = L2World::new(l2_flat(), 4);
    w.control(ms(0), M::L2ErrorRate(1.0));
    let set = w.set(ms(1), 1, 11, SimDuration::MAX);
    w.control(ms(5), M::L2ErrorRate(0.0));
    let get = w.get(ms(6), 1);
    w.control(ms(10), M::L2ErrorRate(0.25));
    let n = 4_000u64;
    let many: Vec<u64> = (0..n)
        .map(|i| w.get(ms(20) + SimDuration::from_us(100 * i), 1))
        .collect();
    run(&mut w.sim);

    let (t, r) = w.reply(set);
    assert_eq!(
        (t, r.result),
        (ms(2), Err(L2Error::Failed)),
        "after its latency"
    );
    assert_eq!(
        w.result(get),
        Ok(L2Result::Miss),
        "the failed set stored nothing"
    );
    let failed = many
        .iter()
        .filter(|&&t| w.result(t) == Err(L2Error::Failed))
        .count() as f64;
    // Binomial(4000, 0.25): mean 1000, sd ≈ 27.4; allow 5 sd.
    assert!((failed - 1_000.0).abs() < 137.0, "{failed} failed");
    assert_eq!(w.cache().stats().failed, 1 + failed as u64);
    let mut lone: L2Cache<u64, u64> =
        L2Cache::new(l2_flat().build().unwrap(), RootSeed::new(0).fork("l2"));
    let bad = |value| CacheConfigError::Probability {
        field: "error_rate",
        value,
    };
    assert_eq!(lone.set_error_rate(1.5), Err(bad(1.5)));
    assert!(lone.set_error_rate(f64::NAN).is_err());
    assert_eq!(lone.error_rate(), 0.0);
}

#[test]
fn flush_empties_the_l2() {
    let mut w = L2World::new(l2_flat(), 5);
    for k in 0..10 {
        w.set(ms(0), k, k, SimDuration::MAX);
    }
    let flush = w.op(ms(5), L2Op::Flush);
    let gets: Vec<u64> = (0..10).map(|k| w.get(ms(10), k)).collect();
    for k in 0..5 {
        w.set(ms(20), k, k, SimDuration::MAX);
    }
    w.control(ms(30), M::L2FlushNow);
    let after_hook: Vec<u64> = (0..5).map(|k| w.get(ms(31), k)).collect();
    run(&mut w.sim);

    assert_eq!(w.result(flush), Ok(L2Result::Flushed(10)));
    for t in gets.into_iter().chain(after_hook) {
        assert_eq!(w.result(t), Ok(L2Result::Miss));
    }
    assert!(w.cache().is_empty());
    let s = w.cache().stats();
    assert_eq!((s.flushes, s.cache.flushed, s.cache.misses), (1, 15, 15));
}

#[test]
fn l2_capacity_evicts_the_least_recently_used() {
    let mut w = L2World::new(l2_flat().capacity(3), 6);
    for k in 1..=3 {
        w.set(ms(k), k, k * 10, SimDuration::MAX);
    }
    w.get(ms(10), 1);
    w.set(ms(20), 4, 40, SimDuration::MAX);
    let after: Vec<u64> = (1..=4).map(|k| w.get(ms(30), k)).collect();
    run(&mut w.sim);

    let hit = |v| Ok(L2Result::Hit(Cached::Value(v)));
    assert_eq!(w.result(after[0]), hit(10), "touched by the get at 10 ms");
    assert_eq!(
        w.result(after[1]),
        Ok(L2Result::Miss),
        "the least recently used"
    );
    assert_eq!(w.result(after[2]), hit(30));
    assert_eq!(w.result(after[3]), hit(40));
    assert_eq!(w.cache().stats().cache.evictions, 1);
    assert_eq!(w.cache().len(), 3);
}

#[test]
fn config_is_validated() {
    let e = |b: L2ConfigBuilder| b.build().unwrap_err();
    assert_eq!(
        e(L2Config::builder().max_concurrent(0)),
        CacheConfigError::Zero {
            field: "max_concurrent"
        }
    );
    assert_eq!(
        e(L2Config::builder().capacity(0)),
        CacheConfigError::Zero { field: "capacity" }
    );
    assert!(L2Config::builder().queue_limit(0).build().is_ok());
}

/// A random mix of operations and faults against an L2 with random latency and failures.
fn random_l2_world(seed: u64) -> L2World {
    let cfg = L2Config::builder()
        .latency(Dist::exponential(0.001).unwrap())
        .max_concurrent(4)
        .queue_limit(8)
        .capacity(20);
    let mut w = L2World::new(cfg, seed);
    w.control(ms(0), M::L2ErrorRate(0.05));
    let mut rng = RootSeed::new(seed).fork("ops");
    let gap = Dist::exponential(0.0005).unwrap();
    let mut t = SimTime::ZERO;
    for _ in 0..3_000 {
        t += gap.sample_duration(&mut rng);
        let key = rng.below(80);
        let op = match rng.below(10) {
            0..=5 => L2Op::Get { key },
            6..=7 => L2Op::Set {
                key,
                value: Cached::Value(rng.below(1_000)),
                ttl: SimDuration::from_ms(1 + rng.below(200)),
                version: SimTime::ZERO,
            },
            8 => L2Op::Delete {
                key,
                version: SimTime::ZERO,
            },
            _ if rng.below(20) == 0 => L2Op::Flush,
            _ => L2Op::Get { key },
        };
        w.op(t, op);
    }
    w.control(ms(500), M::L2Down(true));
    w.control(ms(600), M::L2Down(false));
    w
}

#[test]
fn the_l2_is_deterministic() {
    let (mut a, mut b) = (random_l2_world(7), random_l2_world(7));
    let (ra, rb) = (run(&mut a.sim), run(&mut b.sim));
    assert_eq!(ra.trace_hash, rb.trace_hash);
    assert_eq!(a.replies(), b.replies());
    assert_eq!(a.cache().stats().cache, b.cache().stats().cache);
    let s = a.cache().stats();
    assert!(s.failed > 0 && s.refused_down > 0 && s.refused_overloaded > 0 && s.wakeups > 0);
    assert!(s.cache.hits_fresh > 0 && s.cache.evictions > 0 && s.cache.expirations > 0);
    let mut c = random_l2_world(8);
    assert_ne!(run(&mut c.sim).trace_hash, ra.trace_hash, "another seed");
    let checked = check_determinism(random_l2_world(7).sim, random_l2_world(7).sim);
    assert_eq!(checked, Ok((Outcome::Drained, ra.trace_hash)));
}

// ---------------------------------------------------------------------------------------------
// 2. The invalidation plan.

#[test]
fn an_invalidation_plan_skips_the_origin_and_samples_a_delay_per_node() {
    let nodes: Vec<ComponentId> = (0..5).map(ComponentId::new).collect();
    let delay = Dist::uniform(0.010, 0.050).unwrap();
    let rng = RootSeed::new(9).fork("bc");
    let mut bc = Broadcaster::new(nodes.clone(), delay.clone(), rng.clone());
    let plan = bc.plan(42u64, ms(7), Some(nodes[2]));
    assert_eq!(plan.key, 42);
    assert_eq!(plan.written_at, ms(7));
    let to: Vec<ComponentId> = plan.deliveries.iter().map(|d| d.0).collect();
    assert_eq!(to, [nodes[0], nodes[1], nodes[3], nodes[4]]);
    for &(_, d) in &plan.deliveries {
        assert!((10_000_000..=50_000_000).contains(&d.as_ns()), "{d}");
    }
    assert!(plan.lost.is_empty());
    assert_eq!(
        plan.message(),
        L1Invalidation {
            key: 42,
            written_at: ms(7),
            count: 1,
        }
    );
    assert_eq!(
        plan.l2_delete::<u64>(SimTime::ZERO),
        L2Op::Delete {
            key: 42,
            version: SimTime::ZERO
        }
    );
    assert_eq!(plan.max_delay(), plan.deliveries.iter().map(|d| d.1).max());
    // The same stream gives the same plan.
    let mut again = Broadcaster::new(nodes.clone(), delay.clone(), rng.clone());
    assert_eq!(again.plan(42u64, ms(7), Some(nodes[2])), plan);

    // Loss drops deliveries without shifting the delays of the others.
    let mut lossless = Broadcaster::new(nodes.clone(), delay.clone(), rng.clone());
    let mut lossy = Broadcaster::new(nodes.clone(), delay, rng)
        .with_loss(0.3)
        .unwrap();
    let (mut lost, mut total) = (0usize, 0usize);
    for i in 0..2_000u64 {
        let a = lossless.plan(i, ms(i), None);
        let b = lossy.plan(i, ms(i), None);
        for d in &b.deliveries {
            assert!(a.deliveries.contains(d));
        }
        assert_eq!(b.deliveries.len() + b.lost.len(), nodes.len());
        lost += b.lost.len();
        total += nodes.len();
    }
    // Binomial(10000, 0.3): sd ≈ 45.8; allow 5 sd.
    assert!(
        (lost as f64 - 0.3 * total as f64).abs() < 230.0,
        "{lost} of {total}"
    );
    assert!(
        Broadcaster::new(nodes, det(0.0), RootSeed::new(1).fork("x"))
            .with_loss(-0.1)
            .is_err()
    );
}

#[test]
fn broadcast_hands_out_the_deliveries_of_the_plan_from_the_same_draws() {
    let nodes: Vec<ComponentId> = (0..6).map(ComponentId::new).collect();
    let delay = Dist::uniform(0.010, 0.050).unwrap();
    let rng = RootSeed::new(11).fork("bc");
    let mut planned = Broadcaster::new(nodes.clone(), delay.clone(), rng.clone())
        .with_loss(0.25)
        .unwrap();
    let mut broadcast = Broadcaster::new(nodes.clone(), delay, rng)
        .with_loss(0.25)
        .unwrap();
    for i in 0..500u64 {
        let origin = (i % 3 == 0).then(|| nodes[(i % 6) as usize]);
        let plan = planned.plan(i, ms(i), origin);
        let mut got = Vec::new();
        broadcast.broadcast(origin, |node, d| got.push((node, d)));
        assert_eq!(got, plan.deliveries, "write {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A whole read path.

/// Tag of fire-and-forget L2 requests (sets, deletes): their replies are ignored.
const NO_TAG: u64 = u64::MAX;

/// How a node answered one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The value (a version number).
    Found(u64),
    NotFound,
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    key: u64,
    /// Whether this request leads its key's flight (it must end it).
    leader: bool,
}

/// An API-node stand-in wired as the module documentation says.
struct Node {
    l1: L1Cache<u64, u64, Handle>,
    reqs: Slab<Pending>,
    l2: ComponentId,
    db: ComponentId,
    l2_ttl: SimDuration,
    coalesce: bool,
    broadcaster: Option<Broadcaster>,
    answers: Vec<(SimTime, u64, Answer)>,
}

impl Node {
    fn on_event(&mut self, msg: M, out: &mut Outbox<'_, M>) {
        match msg {
            M::Read(key) => self.read(key, out),
            M::L2Rep(r) if r.tag == NO_TAG => {}
            M::L2Rep(r) => {
                let h = Handle::from_u64(r.tag);
                match r.result {
                    Ok(L2Result::Hit(c)) => self.filled(h, c, out),
                    _ => {
                        let key = self.reqs.get(h).expect("pending").key;
                        let from = out.me();
                        let q = M::DbRead {
                            tag: r.tag,
                            key,
                            from,
                        };
                        out.send(self.db, SimDuration::ZERO, q);
                    }
                }
            }
            M::DbRep { tag, result } => {
                let h = Handle::from_u64(tag);
                match result {
                    Ok(found) => {
                        let c = found.map_or(Cached::Negative, Cached::Value);
                        let key = self.reqs.get(h).expect("pending").key;
                        let op = L2Op::Set {
                            key,
                            value: c,
                            ttl: self.l2_ttl,
                            version: SimTime::ZERO,
                        };
                        self.to_l2(op, NO_TAG, out);
                        self.filled(h, c, out);
                    }
                    Err(()) => self.failed(h, out),
                }
            }
            M::Write(key) => {
                let from = out.me();
                out.send(self.db, SimDuration::ZERO, M::DbWrite { key, from });
            }
            M::DbWrote { key } => {
                let now = out.now();
                let plan = self
                    .broadcaster
                    .as_mut()
                    .expect("wired")
                    .plan(key, now, Some(out.me()));
                self.to_l2(plan.l2_delete(now), NO_TAG, out);
                self.l1.on_invalidation(now, plan.message());
                for &(node, delay) in &plan.deliveries {
                    out.send(node, delay, M::Inv(plan.message()));
                }
            }
            M::Inv(inv) => {
                self.l1.on_invalidation(out.now(), inv);
            }
            M::FlushL1 => {
                self.l1.flush();
            }
            _ => out.violation("a node got a message it does not handle"),
        }
    }

    fn to_l2(&self, op: L2Op<u64, u64>, tag: u64, out: &mut Outbox<'_, M>) {
        let reply_to = out.me();
        let r = L2Request { tag, reply_to, op };
        out.send(self.l2, SimDuration::ZERO, M::L2Req(r));
    }

    fn read(&mut self, key: u64, out: &mut Outbox<'_, M>) {
        let now = out.now();
        match self.l1.get(now, key) {
            Lookup::Fresh(v) => return self.answers.push((now, key, Answer::Found(v))),
            Lookup::NegativeHit => return self.answers.push((now, key, Answer::NotFound)),
            Lookup::Stale(_) | Lookup::Miss => {}
        }
        let h = self.reqs.insert(Pending { key, leader: false });
        if self.coalesce {
            match self.l1.begin_fill(key, h) {
                Fill::Follower => return,
                Fill::Leader => self.reqs.get_mut(h).expect("just inserted").leader = true,
                Fill::Overflow => {}
            }
        }
        self.to_l2(L2Op::Get { key }, h.to_u64(), out);
    }

    /// The fetch of `h` returned `c`: cache it and answer `h` and its followers.
    fn filled(&mut self, h: Handle, c: Cached<u64>, out: &mut Outbox<'_, M>) {
        let now = out.now();
        let p = self.reqs.remove(h).expect("pending");
        let followers = if p.leader {
            self.l1.complete_fill(now, p.key, c)
        } else {
            self.l1.insert(now, p.key, c);
            Vec::new()
        };
        let a = c.value().map_or(Answer::NotFound, Answer::Found);
        self.answers.push((now, p.key, a));
        for f in followers {
            self.reqs.remove(f).expect("a parked follower");
            self.answers.push((now, p.key, a));
        }
    }

    /// The fetch of `h` failed: serve stale values where there are some.
    fn failed(&mut self, h: Handle, out: &mut Outbox<'_, M>) {
        let now = out.now();
        let p = self.reqs.remove(h).expect("pending");
        let followers = if p.leader {
            self.l1.end_fill(p.key)
        } else {
            Vec::new()
        };
        for f in std::iter::once(h).chain(followers) {
            if f != h {
                self.reqs.remove(f).expect("a parked follower");
            }
            let a = self
                .l1
                .serve_stale(now, p.key)
                .map_or(Answer::Failed, Answer::Found);
            self.answers.push((now, p.key, a));
        }
    }
}

/// A database stand-in: rows are version numbers (keys `1..=rows` exist, at version 1 until
/// written), reads and writes take `latency`, reads are counted per `bucket`.
struct StubDb {
    versions: Vec<u64>,
    latency: SimDuration,
    down: bool,
    bucket: SimDuration,
    reads: Vec<u64>,
    /// (time, key) of every read.
    read_log: Vec<(SimTime, u64)>,
    /// (time, key, new version) of every write.
    writes: Vec<(SimTime, u64, u64)>,
}

impl StubDb {
    fn on_event(&mut self, msg: M, out: &mut Outbox<'_, M>) {
        let now = out.now();
        match msg {
            M::DbRead { tag, key, from } => {
                let b = (now.as_ns() / self.bucket.as_ns()) as usize;
                if self.reads.len() <= b {
                    self.reads.resize(b + 1, 0);
                }
                self.reads[b] += 1;
                self.read_log.push((now, key));
                if self.down {
                    out.send(
                        from,
                        SimDuration::ZERO,
                        M::DbRep {
                            tag,
                            result: Err(()),
                        },
                    );
                } else {
                    let v = self.versions.get(key as usize).copied().filter(|&v| v > 0);
                    out.send(from, self.latency, M::DbRep { tag, result: Ok(v) });
                }
            }
            M::DbWrite { key, from } => {
                let v = &mut self.versions[key as usize];
                *v += 1;
                self.writes.push((now, key, *v));
                out.send(from, self.latency, M::DbWrote { key });
            }
            M::DbDown(d) => self.down = d,
            _ => out.violation("the database got a message it does not handle"),
        }
    }

    fn reads_of_key(&self, key: u64, from: SimTime, to: SimTime) -> usize {
        let within = |t: &SimTime| *t >= from && *t < to;
        self.read_log
            .iter()
            .filter(|r| r.1 == key && within(&r.0))
            .count()
    }

    fn reads_between(&self, from: SimTime, to: SimTime) -> u64 {
        let b = self.bucket.as_ns();
        let (i, j) = ((from.as_ns() / b) as usize, (to.as_ns() / b) as usize);
        self.reads.iter().take(j).skip(i).sum()
    }
}

struct Setup {
    nodes: usize,
    rows: u64,
    l1: L1ConfigBuilder,
    l2: L2ConfigBuilder,
    l2_ttl: SimDuration,
    db_latency: SimDuration,
    invalidation_delay: Dist,
    coalesce: bool,
    seed: u64,
}

impl Setup {
    fn new(seed: u64) -> Setup {
        Setup {
            nodes: 2,
            rows: 1_000,
            l1: L1Config::builder()
                .capacity(10_000)
                .ttl(SimDuration::from_secs(60), SimDuration::from_secs(120))
                .ttl_jitter(0.1),
            l2: L2Config::builder()
                .capacity(100_000)
                .latency(det(0.0005))
                .max_concurrent(10_000)
                .queue_limit(10_000),
            l2_ttl: SimDuration::from_secs(60),
            db_latency: SimDuration::from_ms(5),
            invalidation_delay: det(0.0),
            coalesce: true,
            seed,
        }
    }
}

struct ReadWorld {
    sim: Sim<M, C>,
    l2: ComponentId,
    db: ComponentId,
    nodes: Vec<ComponentId>,
    reads: u64,
    rng: SimRng,
}

impl ReadWorld {
    fn new(s: Setup) -> ReadWorld {
        let seed = RootSeed::new(s.seed);
        let mut sim = Sim::new(seed, Limits::GENEROUS);
        let l2 = sim.add(
            "l2",
            C::L2(Box::new(L2Cache::new(
                s.l2.build().unwrap(),
                seed.fork("l2"),
            ))),
        );
        let db = sim.add(
            "db",
            C::Db(StubDb {
                versions: (0..=s.rows).map(|k| u64::from(k > 0)).collect(),
                latency: s.db_latency,
                down: false,
                bucket: SimDuration::from_ms(10),
                reads: Vec::new(),
                read_log: Vec::new(),
                writes: Vec::new(),
            }),
        );
        let l1 = s.l1.build().unwrap();
        let nodes: Vec<ComponentId> = (0..s.nodes)
            .map(|i| {
                let node = Node {
                    l1: L1Cache::new(l1.clone(), seed.fork(&format!("node.{i}.l1"))),
                    reqs: Slab::new(),
                    l2,
                    db,
                    l2_ttl: s.l2_ttl,
                    coalesce: s.coalesce,
                    broadcaster: None,
                    answers: Vec::new(),
                };
                sim.add(&format!("node.{i}"), C::Node(Box::new(node)))
            })
            .collect();
        for (i, &id) in nodes.iter().enumerate() {
            let bc = Broadcaster::new(
                nodes.clone(),
                s.invalidation_delay.clone(),
                seed.fork(&format!("node.{i}.invalidation")),
            );
            match sim.component_mut(id) {
                C::Node(n) => n.broadcaster = Some(bc),
                _ => unreachable!(),
            }
        }
        ReadWorld {
            sim,
            l2,
            db,
            nodes,
            reads: 0,
            rng: seed.fork("traffic"),
        }
    }

    /// Poisson reads at `rate` per second to every node in `[from, to)`, keys from `keys`.
    fn reads(&mut self, from: SimTime, to: SimTime, rate: f64, keys: &Dist) {
        let gap = Dist::exponential(1.0 / rate).unwrap();
        for n in self.nodes.clone() {
            let mut t = from + gap.sample_duration(&mut self.rng);
            while t < to {
                let key = keys.sample(&mut self.rng) as u64;
                self.sim.schedule(t, n, M::Read(key)).unwrap();
                self.reads += 1;
                t += gap.sample_duration(&mut self.rng);
            }
        }
    }

    /// Reads of `key` every `every` on every node in `[from, to)`.
    fn periodic_reads(&mut self, from: SimTime, to: SimTime, every: SimDuration, key: u64) {
        for n in self.nodes.clone() {
            let mut t = from;
            while t < to {
                self.sim.schedule(t, n, M::Read(key)).unwrap();
                self.reads += 1;
                t += every;
            }
        }
    }

    fn flush_all(&mut self, at: SimTime) {
        for n in self.nodes.clone() {
            self.sim.schedule(at, n, M::FlushL1).unwrap();
        }
        self.sim.schedule(at, self.l2, M::L2FlushNow).unwrap();
    }

    fn node(&self, i: usize) -> &Node {
        match self.sim.component(self.nodes[i]) {
            C::Node(n) => n,
            _ => unreachable!(),
        }
    }

    fn l1_stats(&self) -> CacheStats {
        let mut s = CacheStats::default();
        for i in 0..self.nodes.len() {
            s.merge(self.node(i).l1.stats());
        }
        s
    }

    fn l2(&self) -> &L2Cache<u64, u64> {
        match self.sim.component(self.l2) {
            C::L2(c) => c,
            _ => unreachable!(),
        }
    }

    fn db(&self) -> &StubDb {
        match self.sim.component(self.db) {
            C::Db(d) => d,
            _ => unreachable!(),
        }
    }

    fn answers(&self) -> impl Iterator<Item = &(SimTime, u64, Answer)> + '_ {
        (0..self.nodes.len()).flat_map(|i| self.node(i).answers.iter())
    }

    /// Runs to the end and checks what holds in every run: every read answered, no request
    /// or flight left, and the levels' saved reads adding up with the database's reads.
    fn run(&mut self) -> RunReport {
        let report = run(&mut self.sim);
        assert_eq!(
            self.answers().count() as u64,
            self.reads,
            "every read answered"
        );
        for i in 0..self.nodes.len() {
            assert!(self.node(i).reqs.is_empty());
            assert_eq!(self.node(i).l1.fills_in_flight(), 0);
        }
        let db_reads: u64 = self.db().reads.iter().sum();
        assert_eq!(
            self.l1_stats().db_reads_saved() + self.l2().stats().cache.db_reads_saved() + db_reads,
            self.reads,
            "L1 saved + L2 saved + database reads = reads"
        );
        report
    }
}

/// Zipf(1) keys over the 1,000 rows, 20,000 reads per second per node for 2 s; every cache
/// flushed at 1 s.
fn stampede(coalesce: bool) -> ReadWorld {
    let mut s = Setup::new(21);
    s.coalesce = coalesce;
    let mut w = ReadWorld::new(s);
    let keys = Dist::zipf(1_000, 1.0).unwrap();
    w.reads(ms(0), ms(2_000), 20_000.0, &keys);
    w.flush_all(ms(1_000));
    w
}

#[test]
fn a_cold_or_flushed_cache_stampedes_the_database() {
    let mut w = stampede(true);
    w.run();
    let db = w.db();
    let window = |a: u64| db.reads_between(ms(a), ms(a + 100));
    let (cold, steady, flushed, recovered) = (window(0), window(900), window(1_000), window(1_900));
    let peak_after_flush = db.reads[100..110].iter().copied().max().unwrap();
    // Warm, only keys never seen before reach the database; cold or flushed, the working set
    // does, in the first few buckets.
    assert!(steady <= 20, "steady {steady} per 100 ms");
    assert!(recovered <= 20, "recovered {recovered} per 100 ms");
    assert!(cold >= 20 * steady.max(1), "cold {cold} vs steady {steady}");
    assert!(
        flushed >= 20 * steady.max(1),
        "flushed {flushed} vs steady {steady}"
    );
    assert!(
        db.reads[100] >= 100 && peak_after_flush == db.reads[100],
        "the spike is in the first 10 ms after the flush: {:?}",
        &db.reads[98..110]
    );
    // Single-flight: at most one fetch per key per node at a time; the 5.5 ms fetch means at
    // most one per key per node in the first 5 ms.
    let distinct = |from: SimTime, to: SimTime| {
        let mut keys: Vec<u64> = w
            .answers()
            .filter(|a| a.0 >= from && a.0 < to)
            .map(|a| a.1)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len() as u64
    };
    let l1 = w.l1_stats();
    assert!(l1.coalesced > 0, "{l1:?}");
    assert!(
        l1.flushed > 1_000,
        "most of the keys were cached on both nodes: {l1:?}"
    );
    assert!(flushed <= 2 * distinct(ms(1_000), ms(1_100)));
    let l2 = w.l2().stats();
    assert!(
        l2.cache.hits_fresh > 0,
        "one node fills the L2 for the other"
    );
    // Cold start and flush cost one miss per key per node each, and followers count as misses.
    assert!(l1.hit_ratio().unwrap() > 0.9, "{:?}", l1.hit_ratio());

    // The hottest key (13% of reads, ~15 reads per node per 5.5 ms fetch) costs the database
    // one read per node after the flush.
    let hot = db.reads_of_key(1, ms(1_000), ms(1_100));
    assert_eq!(hot, 2, "one fetch per node");

    // The same traffic without single-flight: every concurrent miss of a hot key goes through.
    let mut u = stampede(false);
    u.run();
    let udb = u.db();
    let uncoalesced = udb.reads_between(ms(1_000), ms(1_100));
    assert!(
        uncoalesced > flushed + flushed / 10,
        "without coalescing {uncoalesced}, with {flushed}"
    );
    let uhot = udb.reads_of_key(1, ms(1_000), ms(1_100));
    assert!(uhot >= 10 * hot, "hottest key without coalescing: {uhot}");
    assert!(udb.reads[100] > db.reads[100], "a higher first spike");
    assert_eq!(u.l1_stats().coalesced, 0);
}

#[test]
fn the_read_path_is_deterministic() {
    let (mut a, mut b) = (stampede(true), stampede(true));
    let (ra, rb) = (a.run(), b.run());
    assert_eq!(ra.trace_hash, rb.trace_hash);
    assert_eq!(a.db().reads, b.db().reads);
    assert_eq!(a.l1_stats(), b.l1_stats());
}

#[test]
fn stale_values_are_served_while_the_database_fails_until_the_hard_ttl() {
    // Soft TTL 50 ms, no L2 (down): every 50 ms a read of each key goes to the database. The
    // database is down from 500 ms to 1 s; the hard TTL decides whether stale values cover it.
    let outage = |hard_ms: u64| {
        let mut s = Setup::new(31);
        s.nodes = 1;
        s.l1 =
            s.l1.ttl(SimDuration::from_ms(50), SimDuration::from_ms(hard_ms))
                .ttl_jitter(0.0);
        let mut w = ReadWorld::new(s);
        w.sim.schedule(ms(0), w.l2, M::L2Down(true)).unwrap();
        for key in 1..=10 {
            w.periodic_reads(ms(key), ms(1_500), SimDuration::from_ms(10), key);
        }
        w.sim.schedule(ms(500), w.db, M::DbDown(true)).unwrap();
        w.sim.schedule(ms(1_000), w.db, M::DbDown(false)).unwrap();
        w.run();
        w
    };
    let long = outage(10_000);
    let answers: Vec<_> = long.answers().copied().collect();
    assert!(
        answers.iter().all(|a| a.2 == Answer::Found(1)),
        "no failures"
    );
    let s = long.l1_stats();
    // Before the outage each key is refreshed every 6th read (soft TTL 50 ms, a read every
    // 10 ms). In the outage the first read past the soft TTL fails its refresh and is served the
    // stale value, and so is every later read (nothing refreshes it): 50 reads per key, less
    // the ≤ 5 still fresh when the outage begins.
    assert!((450..=500).contains(&s.stale_served), "{s:?}");
    assert!(
        s.hits_stale > s.stale_served,
        "outside the outage refreshes succeed"
    );

    let short = outage(200);
    let failed = short.answers().filter(|a| a.2 == Answer::Failed).count() as u64;
    let in_outage = short
        .answers()
        .filter(|a| a.0 >= ms(500) && a.0 < ms(1_000))
        .count() as u64;
    // Past the hard TTL (200 ms after the last fill, before the outage) reads fail.
    assert!(failed > 0 && failed < in_outage, "{failed} of {in_outage}");
    assert!(short.l1_stats().stale_served > 0);
    assert!(
        short
            .answers()
            .filter(|a| a.2 == Answer::Failed)
            .all(|a| a.0 >= ms(650) && a.0 < ms(1_000)),
        "failures only once the hard TTL has passed"
    );
}

#[test]
fn negative_caching_shields_the_database_from_reads_of_missing_rows() {
    let run_with = |l1_negative_ttl: SimDuration, l2_ttl: SimDuration| {
        let mut s = Setup::new(41);
        s.l1 = s.l1.negative_ttl(l1_negative_ttl).ttl_jitter(0.0);
        s.l2_ttl = l2_ttl;
        let mut w = ReadWorld::new(s);
        // Row 5,000 does not exist; each node polls it every millisecond for a second.
        w.periodic_reads(ms(0), ms(1_000), SimDuration::from_ms(1), 5_000);
        w.run();
        assert!(w.answers().all(|a| a.2 == Answer::NotFound));
        let db_reads: u64 = w.db().reads.iter().sum();
        (
            db_reads,
            w.l1_stats().negative_hits,
            w.l2().stats().cache.negative_hits,
        )
    };
    // L1 negative entries live 100 ms, the L2's 1 s: the database sees the two first reads
    // (one per node, at the same instant); each node's later refreshes, every 100 ms, are
    // negative hits in the L2.
    let (db_reads, l1_neg, l2_neg) = run_with(SimDuration::from_ms(100), SimDuration::SECOND);
    assert_eq!(db_reads, 2);
    assert_eq!(l2_neg, 2 * 9, "{l2_neg}");
    assert!(l1_neg > 1_850, "{l1_neg}");
    // Both levels' TTLs 100 ms: they expire together, and both nodes go to the database once
    // per period.
    let (synced, _, _) = run_with(SimDuration::from_ms(100), SimDuration::from_ms(100));
    assert_eq!(synced, 2 * 10);
    // No negative caching: every fetch reaches the database (coalesced per node, one fetch
    // per 5.5 ms round trip).
    let (uncached, l1_neg0, l2_neg0) = run_with(SimDuration::ZERO, SimDuration::ZERO);
    assert_eq!((l1_neg0, l2_neg0), (0, 0));
    assert!(uncached > 300, "{uncached}");
}

#[test]
fn delayed_invalidation_makes_staleness_real_and_measured() {
    let staleness = |delay_ms: u64| {
        let mut s = Setup::new(51);
        s.invalidation_delay = det(delay_ms as f64 * 1e-3);
        let mut w = ReadWorld::new(s);
        // Both nodes read key 7 every millisecond; node 0 writes it at 1 s.
        w.periodic_reads(ms(0), ms(2_000), SimDuration::from_ms(1), 7);
        w.sim.schedule(ms(1_000), w.nodes[0], M::Write(7)).unwrap();
        w.run();
        let written = w.db().writes.clone();
        assert_eq!(written, [(ms(1_000), 7, 2)]);
        // The oracle: an answer is outdated if the row had a newer version when it was given.
        let outdated = |node: usize| {
            w.node(node)
                .answers
                .iter()
                .filter(|a| matches!(a.2, Answer::Found(v) if v < 2) && a.0 > ms(1_000))
                .count() as u64
        };
        let lag = |node: usize| w.node(node).l1.invalidation_lag().max_ns();
        (outdated(0), outdated(1), lag(0), lag(1))
    };
    let (writer, other, writer_lag, other_lag) = staleness(50);
    // The writer invalidates itself when the write is acknowledged (5 ms); the other node
    // 50 ms later: it answers the old version for 55 ms.
    assert_eq!(writer_lag, Some(0));
    assert_eq!(other_lag, Some(50_000_000));
    assert!((4..=6).contains(&writer), "writer {writer}");
    assert!((54..=56).contains(&other), "other {other}");
    let (_, other0, _, _) = staleness(0);
    assert!((4..=6).contains(&other0), "other, no delay: {other0}");
}
