//! The binlog invalidator: cache invalidation driven by the database's change feed instead of
//! by the writers ([`Invalidation::Binlog`]).
//!
//! With writer-driven invalidation ([`Invalidation::Writer`], the default) the component that
//! wrote a row deletes its L2 entry and broadcasts the L1 invalidation when the database's
//! reply comes back, with a detached delete. Two things then leave the old value in the L2 until
//! its TTL: a delete lost on the way (a partition between the writer and the L2, the L2 down
//! or failing), and a write applied whose reply never came (a failover, a query timeout): the
//! writer does not know it has something to invalidate.
//!
//! With the change feed the database itself reports every instance row it changed
//! ([`RowChange`], after a sampled binlog lag), whether or not the writer hears back, to one
//! [`Invalidator`] (a binlog consumer, as Canal is for MySQL). For each change it broadcasts
//! the L1 invalidation to every node and deletes the rows in the L2 with an acknowledged
//! request: one unanswered within its timeout is sent again at once, one refused after a
//! backoff doubling from the timeout up to a cap, until the L2 acknowledges it or the L2's TTL
//! has passed since the change (an entry cached before it has expired by then: the delete is moot
//! and counted as expired). Pending deletes are bounded ([`FeedConfig::max_pending`]): a change
//! past the bound gets its L1 broadcast only, and is counted as dropped. The writing node
//! still invalidates its own L1 at once (read-your-writes on that node).
//!
//! The binlog consumer's lag is measured as real consumers measure it (pt-heartbeat, Debezium's
//! heartbeats): the database writes a heartbeat row every [`FeedConfig::heartbeat`] (1 s by
//! default) into the same feed, and the lag is the largest of the arrival lags seen and, while
//! the next heartbeat is overdue, how overdue it is: a lower bound of the lag that keeps growing
//! while nothing arrives ([`Invalidator::take_lag_window`]).
//!
//! The invalidator is sans-IO like the L2: [`RowChange`] and [`L2Reply`] in, [`L2Request`] and
//! [`L1Invalidation`] out, [`FeedTimer`] for its own wake-ups.

use super::{Broadcaster, CacheKey, L1Invalidation, L2Op, L2Reply, L2Request, L2Result};
use crate::api::types::{AccountId, InstanceId};
use crate::kernel::{ComponentId, Dist, LocalTimers, Outbox, SimDuration, SimTime, Ticket};
use crate::metrics::LatencyHistogram;
use std::collections::BTreeMap;

/// Who invalidates cached instances after a write.
#[derive(Clone, Debug, PartialEq)]
pub enum Invalidation {
    /// The writer (an API node, the workflow engine, reconciliation), on the database's reply:
    /// a detached L2 delete and the L1 broadcast.
    Writer,
    /// The database's change feed, through one [`Invalidator`].
    Binlog(FeedConfig),
}

impl Invalidation {
    pub fn is_binlog(&self) -> bool {
        matches!(self, Invalidation::Binlog(_))
    }
    /// `"writer"` or `"binlog"`.
    pub fn name(&self) -> &'static str {
        match self {
            Invalidation::Writer => "writer",
            Invalidation::Binlog(_) => "binlog",
        }
    }
}

/// The change feed's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedConfig {
    lag: Dist,
    ack_timeout: SimDuration,
    backoff_max: SimDuration,
    max_pending: u32,
    heartbeat: Option<SimDuration>,
}

impl Default for FeedConfig {
    /// Binlog lag uniform 10–100 ms, an L2 delete unanswered after 200 ms sent again, backoff
    /// doubling from 200 ms to at most 5 s, 100,000 deletes pending at most, a heartbeat row
    /// every second. Assumed figures (a binlog consumer's typical lag; pt-heartbeat's default
    /// interval), not measured ones.
    fn default() -> FeedConfig {
        FeedConfig {
            lag: Dist::uniform(0.01, 0.1).expect("valid"),
            ack_timeout: SimDuration::from_ms(200),
            backoff_max: SimDuration::from_secs(5),
            max_pending: 100_000,
            heartbeat: Some(SimDuration::from_secs(1)),
        }
    }
}

/// Why a [`FeedConfig`] is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedConfigError {
    #[error("the L2 delete timeout must be positive (try 200ms)")]
    ZeroAckTimeout,
    #[error("the backoff cap {cap} is below the delete timeout {timeout}: raise it")]
    BackoffBelowTimeout {
        cap: SimDuration,
        timeout: SimDuration,
    },
    #[error("max_pending must be at least 1")]
    ZeroPending,
}

/// The longest heartbeat interval [`FeedConfig::with_heartbeat`] takes: the lag is measured no
/// more finely than the interval, so an hour is already past any use.
pub const HEARTBEAT_MAX: SimDuration = SimDuration::from_secs(3_600);

impl FeedConfig {
    /// The default settings with `lag` (seconds; a negative sample is no lag) as the binlog
    /// lag.
    pub fn with_lag(lag: Dist) -> FeedConfig {
        FeedConfig {
            lag,
            ..FeedConfig::default()
        }
    }
    /// An unanswered L2 delete is sent again after `ack_timeout`; a refused one after a
    /// backoff doubling from `ack_timeout` up to `backoff_max`.
    pub fn with_retry(
        mut self,
        ack_timeout: SimDuration,
        backoff_max: SimDuration,
    ) -> Result<FeedConfig, FeedConfigError> {
        if ack_timeout.is_zero() {
            return Err(FeedConfigError::ZeroAckTimeout);
        }
        if backoff_max < ack_timeout {
            return Err(FeedConfigError::BackoffBelowTimeout {
                cap: backoff_max,
                timeout: ack_timeout,
            });
        }
        self.ack_timeout = ack_timeout;
        self.backoff_max = backoff_max;
        Ok(self)
    }
    pub fn with_max_pending(mut self, n: u32) -> Result<FeedConfig, FeedConfigError> {
        if n == 0 {
            return Err(FeedConfigError::ZeroPending);
        }
        self.max_pending = n;
        Ok(self)
    }
    /// A heartbeat row every `every` (`None`: no heartbeats; the lag is then seen only in the
    /// changes that arrive). Intervals are capped at [`HEARTBEAT_MAX`].
    pub fn with_heartbeat(mut self, every: Option<SimDuration>) -> FeedConfig {
        self.heartbeat = every.filter(|d| !d.is_zero()).map(|d| d.min(HEARTBEAT_MAX));
        self
    }
    /// The heartbeat interval (see [`FeedConfig::with_heartbeat`]).
    pub fn heartbeat(&self) -> Option<SimDuration> {
        self.heartbeat
    }
    /// The binlog lag, seconds: from a row's change in the database to its [`RowChange`]
    /// reaching the invalidator.
    pub fn lag(&self) -> &Dist {
        &self.lag
    }
    pub fn ack_timeout(&self) -> SimDuration {
        self.ack_timeout
    }
    pub fn backoff_max(&self) -> SimDuration {
        self.backoff_max
    }
    pub fn max_pending(&self) -> u32 {
        self.max_pending
    }
}

/// The database changed `count` instance rows with consecutive ids from `first` (some of them
/// possibly unchanged: a multi-row update's span) of `account` at `version`. A change of no
/// rows is a heartbeat ([`RowChange::heartbeat`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowChange {
    pub account: AccountId,
    pub first: InstanceId,
    pub count: u32,
    pub version: SimTime,
}

impl RowChange {
    /// The heartbeat row written at `at`: it changes no instance, and tells the consumer how
    /// far behind it is.
    pub fn heartbeat(at: SimTime) -> RowChange {
        RowChange {
            account: AccountId(0),
            first: InstanceId(0),
            count: 0,
            version: at,
        }
    }
    pub fn is_heartbeat(&self) -> bool {
        self.count == 0
    }
}

/// The invalidator's one wake-up: deletes due to be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedTimer;

/// What the invalidator did.
#[derive(Clone, Debug, Default)]
pub struct FeedStats {
    /// [`RowChange`]s received (heartbeats not counted).
    pub changes: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Rows they covered.
    pub rows: u64,
    /// L2 deletes sent, first attempts and retries.
    pub deletes_sent: u64,
    /// Of them, sent again (after a timeout or a refusal).
    pub retries: u64,
    /// Deletes the L2 acknowledged.
    pub acked: u64,
    /// Attempts the L2 refused (down, failed).
    pub refused: u64,
    /// Attempts unanswered within [`FeedConfig::ack_timeout`] (lost on the way, or queued).
    pub timeouts: u64,
    /// Deletes given up when the L2's TTL had passed since the change (moot by then).
    pub expired: u64,
    /// Changes that found [`FeedConfig::max_pending`] deletes pending: L1 broadcast only.
    pub dropped: u64,
    /// Most deletes pending at once.
    pub max_pending: u64,
    /// From a row's change in the database to the L2's acknowledgement of its delete (binlog
    /// lag, hops, retries).
    pub delivery: LatencyHistogram,
}

/// The low bits of a delete's tag number its attempt (mod 256), so a late refusal of an earlier
/// attempt is told from the answer of the one out.
const ATTEMPT_BITS: u32 = 8;
const ATTEMPT_MASK: u64 = (1 << ATTEMPT_BITS) - 1;

#[derive(Clone, Copy, Debug)]
struct Pending {
    change: RowChange,
    /// Sends so far.
    attempts: u32,
    /// Waiting for the L2's answer (its timeout armed), or for the next attempt.
    awaiting: bool,
    ticket: Ticket,
}

/// The binlog consumer: see the module documentation.
#[derive(Debug)]
pub struct Invalidator {
    cfg: FeedConfig,
    l2: ComponentId,
    hop: SimDuration,
    /// The L2's TTL of values: a delete still pending that long after its change is moot.
    l2_ttl: SimDuration,
    broadcaster: Broadcaster,
    pending: BTreeMap<u64, Pending>,
    next_tag: u64,
    timers: LocalTimers<u64>,
    stats: FeedStats,
    /// The largest lag of the changes received since the last [`Invalidator::take_lag_window`].
    lag_window_max_ns: Option<u64>,
    /// The newest heartbeat received (its time of writing).
    newest_heartbeat: Option<SimTime>,
}

impl Invalidator {
    /// Deletes go to `l2` one `hop` away; `broadcaster` reaches every node.
    pub fn new(
        cfg: FeedConfig,
        l2: ComponentId,
        hop: SimDuration,
        l2_ttl: SimDuration,
        broadcaster: Broadcaster,
    ) -> Invalidator {
        Invalidator {
            cfg,
            l2,
            hop,
            l2_ttl,
            broadcaster,
            pending: BTreeMap::new(),
            next_tag: 0,
            timers: LocalTimers::new(),
            stats: FeedStats::default(),
            lag_window_max_ns: None,
            newest_heartbeat: None,
        }
    }

    pub fn stats(&self) -> &FeedStats {
        &self.stats
    }
    /// Deletes not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
    /// The binlog consumer's lag over the window since the last call, at `now` (ns; `None` if
    /// nothing came and no heartbeat is overdue); the window starts again. The largest of the
    /// arrival lags (the database's change, or heartbeat, to its arrival here) of the window,
    /// and of how overdue the next heartbeat is at `now`: the one written an interval after the
    /// newest received has not arrived, so the lag is at least that. For the time series
    /// (`feed_lag_ms_max`) and the `feed_lag_ms` alerts.
    pub fn take_lag_window(&mut self, now: SimTime) -> Option<u64> {
        let overdue = match (self.cfg.heartbeat, self.newest_heartbeat) {
            (Some(every), Some(newest)) => {
                let due = newest.saturating_add(every);
                (now > due).then(|| now.saturating_since(due).as_ns())
            }
            _ => None,
        };
        match (self.lag_window_max_ns.take(), overdue) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
    /// Delivers L1 invalidations to `node` too from now on (a node added mid-run).
    pub fn add_node(&mut self, node: ComponentId) {
        self.broadcaster.add_node(node);
    }

    /// A change from the database: the L1 broadcast, and the L2 delete.
    pub fn on_change<M: From<L2Request> + From<L1Invalidation> + From<FeedTimer>>(
        &mut self,
        c: RowChange,
        out: &mut Outbox<'_, M>,
    ) {
        let lag = out.now().saturating_since(c.version).as_ns();
        self.lag_window_max_ns = Some(self.lag_window_max_ns.map_or(lag, |m| m.max(lag)));
        if c.is_heartbeat() {
            self.stats.heartbeats += 1;
            self.newest_heartbeat = Some(
                self.newest_heartbeat
                    .map_or(c.version, |v| v.max(c.version)),
            );
            return;
        }
        self.stats.changes += 1;
        self.stats.rows += u64::from(c.count);
        let key = CacheKey {
            account: c.account,
            instance: c.first,
        };
        let msg = L1Invalidation {
            key,
            written_at: c.version,
            count: c.count,
        };
        self.broadcaster.broadcast(None, |node, delay| {
            out.send(node, delay, M::from(msg));
        });
        if self.pending.len() >= self.cfg.max_pending as usize {
            self.stats.dropped += 1;
            return;
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        self.pending.insert(
            tag,
            Pending {
                change: c,
                attempts: 0,
                awaiting: false,
                ticket: Ticket::NONE,
            },
        );
        self.stats.max_pending = self.stats.max_pending.max(self.pending.len() as u64);
        self.send(tag, out);
        self.arm(out);
    }

    /// The L2's answer to delete `r.tag`: done, or to be sent again after a backoff.
    pub fn on_reply<M: From<L2Request> + From<L1Invalidation> + From<FeedTimer>>(
        &mut self,
        r: L2Reply,
        out: &mut Outbox<'_, M>,
    ) {
        let (id, attempt) = (r.tag >> ATTEMPT_BITS, (r.tag & ATTEMPT_MASK) as u32);
        let Some(p) = self.pending.get_mut(&id) else {
            // An answer to a delete already acknowledged or given up.
            return;
        };
        match r.result {
            // Any attempt's success is the delete's (they all carry the same version).
            Ok(L2Result::Deleted(_)) => {
                self.timers.cancel(p.ticket);
                let at = out.now();
                self.stats.acked += 1;
                self.stats
                    .delivery
                    .record(at.saturating_since(p.change.version).as_ns());
                self.pending.remove(&id);
            }
            // A refusal of the attempt out: the next one after a backoff. (A refusal of an
            // earlier attempt, whose timeout sent this one, is not this one's answer.)
            _ if p.awaiting && attempt == p.attempts & ATTEMPT_MASK as u32 => {
                self.stats.refused += 1;
                self.timers.cancel(p.ticket);
                p.awaiting = false;
                let backoff = backoff(&self.cfg, p.attempts);
                p.ticket = self.timers.schedule(out.now(), backoff, id);
            }
            _ => {}
        }
        self.arm(out);
    }

    /// The wake-up: deletes whose answer did not come in time, or whose backoff ended, go out
    /// again (or expire).
    pub fn on_timer<M: From<L2Request> + From<L1Invalidation> + From<FeedTimer>>(
        &mut self,
        _t: FeedTimer,
        out: &mut Outbox<'_, M>,
    ) {
        let now = out.now();
        if !self.timers.take_wake(now) {
            return;
        }
        while let Some(tag) = self.timers.pop_due(now) {
            let Some(p) = self.pending.get(&tag) else {
                continue;
            };
            if p.awaiting {
                self.stats.timeouts += 1;
            }
            self.send(tag, out);
        }
        self.arm(out);
    }

    /// Sends (again) the delete of `tag`, unless the L2's TTL has passed since its change.
    fn send<M: From<L2Request>>(&mut self, tag: u64, out: &mut Outbox<'_, M>) {
        let now = out.now();
        let Some(p) = self.pending.get_mut(&tag) else {
            return;
        };
        if now.saturating_since(p.change.version) >= self.l2_ttl {
            self.stats.expired += 1;
            self.pending.remove(&tag);
            return;
        }
        if p.attempts > 0 {
            self.stats.retries += 1;
        }
        p.attempts += 1;
        p.awaiting = true;
        p.ticket = self.timers.schedule(now, self.cfg.ack_timeout, tag);
        self.stats.deletes_sent += 1;
        let c = p.change;
        let req = L2Request {
            tag: (tag << ATTEMPT_BITS) | (u64::from(p.attempts) & ATTEMPT_MASK),
            reply_to: out.me(),
            op: L2Op::DeleteRun {
                first: CacheKey {
                    account: c.account,
                    instance: c.first,
                },
                count: c.count,
                version: c.version,
            },
        };
        out.send(self.l2, self.hop, M::from(req));
    }

    fn arm<M: From<FeedTimer>>(&mut self, out: &mut Outbox<'_, M>) {
        self.timers.arm(out, || M::from(FeedTimer));
    }
}

/// The wait before attempt `attempts + 1` after a refusal: the timeout doubled per attempt made
/// after the first, at most `backoff_max`.
fn backoff(cfg: &FeedConfig, attempts: u32) -> SimDuration {
    let shift = attempts.saturating_sub(1).min(30);
    let ns = cfg.ack_timeout.as_ns().saturating_mul(1 << shift);
    SimDuration::from_ns(ns.min(cfg.backoff_max.as_ns()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::InstanceState;
    use crate::cache::{Cached, CachedInstance, L2Cache, L2Config, L2Timer};
    use crate::kernel::{Component, Limits, Message, Outcome, RootSeed, Sim};

    #[derive(Clone, Copy, Debug)]
    enum M {
        Change(RowChange),
        Req(L2Request),
        Rep(L2Reply),
        L2Tick,
        Feed,
        L1(L1Invalidation),
        /// To the L2: down or up.
        Down(bool),
        /// To the blackhole gate: drop L2 requests (true) or pass them (false).
        Drop(bool),
    }
    impl From<L2Request> for M {
        fn from(r: L2Request) -> M {
            M::Req(r)
        }
    }
    impl From<L2Reply> for M {
        fn from(r: L2Reply) -> M {
            M::Rep(r)
        }
    }
    impl From<L2Timer> for M {
        fn from(_: L2Timer) -> M {
            M::L2Tick
        }
    }
    impl From<FeedTimer> for M {
        fn from(_: FeedTimer) -> M {
            M::Feed
        }
    }
    impl From<L1Invalidation> for M {
        fn from(i: L1Invalidation) -> M {
            M::L1(i)
        }
    }
    impl Message for M {
        fn kind_code(&self) -> u32 {
            match self {
                M::Change(_) => 0,
                M::Req(_) => 1,
                M::Rep(_) => 2,
                M::L2Tick => 3,
                M::Feed => 4,
                M::L1(_) => 5,
                M::Down(_) => 6,
                M::Drop(_) => 7,
            }
        }
        fn kind_name(&self) -> &'static str {
            [
                "Change", "Req", "Rep", "L2Tick", "Feed", "L1", "Down", "Drop",
            ][self.kind_code() as usize]
        }
    }

    enum C {
        Inv(Box<Invalidator>),
        L2(Box<L2Cache>),
        /// Between the invalidator and the L2: passes or drops requests (a partition).
        Gate {
            l2: ComponentId,
            dropping: bool,
            dropped: u32,
        },
        Node(Vec<(SimTime, L1Invalidation)>),
    }

    impl Component<M> for C {
        fn on_event(&mut self, msg: M, out: &mut Outbox<'_, M>) {
            match (self, msg) {
                (C::Inv(i), M::Change(c)) => i.on_change(c, out),
                (C::Inv(i), M::Rep(r)) => i.on_reply(r, out),
                (C::Inv(i), M::Feed) => i.on_timer(FeedTimer, out),
                (C::L2(c), M::Req(r)) => c.on_request(r, out),
                (C::L2(c), M::L2Tick) => c.on_timer(L2Timer, out),
                (C::L2(c), M::Down(d)) => c.set_down(d),
                (
                    C::Gate {
                        l2,
                        dropping,
                        dropped,
                    },
                    M::Req(r),
                ) => {
                    if *dropping {
                        *dropped += 1;
                    } else {
                        out.send(*l2, SimDuration::ZERO, M::Req(r));
                    }
                }
                (C::Gate { dropping, .. }, M::Drop(d)) => *dropping = d,
                (C::Node(v), M::L1(i)) => v.push((out.now(), i)),
                _ => out.violation("miswired test world"),
            }
        }
    }

    const HOP: SimDuration = SimDuration::from_ms(1);
    const KEY: CacheKey = CacheKey {
        account: AccountId(7),
        instance: InstanceId(40),
    };

    fn at(ms: u64) -> SimTime {
        SimTime::ZERO + SimDuration::from_ms(ms)
    }

    struct FeedWorld {
        sim: Sim<M, C>,
        inv: ComponentId,
        l2: ComponentId,
        gate: ComponentId,
        nodes: [ComponentId; 2],
    }

    impl FeedWorld {
        /// An invalidator (`cfg`, L2 TTL `l2_ttl_s`) behind a gate to an L2 with a 1 ms
        /// service time, two nodes; `KEY` cached in the L2 (version 0) for an hour.
        fn new(cfg: FeedConfig, l2_ttl_s: u64) -> FeedWorld {
            let seed = RootSeed::new(9);
            let mut sim = Sim::new(seed, Limits::GENEROUS);
            let l2cfg = L2Config::builder()
                .latency(Dist::constant(0.001).unwrap())
                .build()
                .unwrap();
            let mut l2c = L2Cache::new(l2cfg, seed.fork("l2"));
            let v = CachedInstance {
                state: InstanceState::Running,
                instance_type: crate::api::types::InstanceType(0),
                updated_at: SimTime::ZERO,
            };
            l2c.warm(
                SimTime::ZERO,
                KEY,
                Cached::Value(v),
                SimDuration::from_secs(3_600),
                SimTime::ZERO,
            );
            let l2 = sim.add("l2", C::L2(Box::new(l2c)));
            let gate = sim.add(
                "gate",
                C::Gate {
                    l2,
                    dropping: false,
                    dropped: 0,
                },
            );
            let n0 = sim.add("node.0", C::Node(Vec::new()));
            let n1 = sim.add("node.1", C::Node(Vec::new()));
            let b = Broadcaster::new(vec![n0, n1], Dist::constant(0.05).unwrap(), seed.fork("b"));
            let inv = Invalidator::new(cfg, gate, HOP, SimDuration::from_secs(l2_ttl_s), b);
            let inv = sim.add("invalidator", C::Inv(Box::new(inv)));
            FeedWorld {
                sim,
                inv,
                l2,
                gate,
                nodes: [n0, n1],
            }
        }
        fn change(&mut self, ms: u64, first: u64, count: u32) {
            let c = RowChange {
                account: KEY.account,
                first: InstanceId(first),
                count,
                version: at(ms),
            };
            self.sim.schedule(at(ms), self.inv, M::Change(c)).unwrap();
        }
        fn at(&mut self, ms: u64, to: ComponentId, m: M) {
            self.sim.schedule(at(ms), to, m).unwrap();
        }
        fn run(&mut self) {
            let r = self.sim.run();
            assert_eq!(r.outcome, Outcome::Drained, "{r:?}");
        }
        fn stats(&self) -> &FeedStats {
            match self.sim.component(self.inv) {
                C::Inv(i) => i.stats(),
                _ => unreachable!(),
            }
        }
        fn pending(&self) -> usize {
            match self.sim.component(self.inv) {
                C::Inv(i) => i.pending(),
                _ => unreachable!(),
            }
        }
        fn cached(&self, now: SimTime) -> bool {
            match self.sim.component(self.l2) {
                C::L2(c) => c.peek(now, KEY).is_some(),
                _ => unreachable!(),
            }
        }
        fn l1(&self, i: usize) -> &[(SimTime, L1Invalidation)] {
            match self.sim.component(self.nodes[i]) {
                C::Node(v) => v,
                _ => unreachable!(),
            }
        }
        fn dropped_at_gate(&self) -> u32 {
            match self.sim.component(self.gate) {
                C::Gate { dropped, .. } => *dropped,
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn a_change_is_broadcast_to_every_node_and_deleted_in_the_l2_once_acknowledged() {
        let mut w = FeedWorld::new(FeedConfig::default(), 300);
        w.change(1_000, 40, 3);
        w.run();
        let s = w.stats();
        assert_eq!((s.changes, s.rows), (1, 3));
        assert_eq!((s.deletes_sent, s.acked, s.retries), (1, 1, 0));
        assert_eq!((s.refused, s.timeouts, s.expired, s.dropped), (0, 0, 0, 0));
        // Delivered one hop, the L2's 1 ms and the reply's way back after the change.
        assert_eq!(s.delivery.count(), 1);
        assert_eq!(s.delivery.max_ns(), Some(2_000_000));
        assert!(!w.cached(at(2_000)));
        assert_eq!(w.pending(), 0);
        for i in 0..2 {
            let l1 = w.l1(i);
            assert_eq!(l1.len(), 1, "node {i}");
            assert_eq!(l1[0].0, at(1_050));
            assert_eq!(l1[0].1.key, KEY);
            assert_eq!((l1[0].1.count, l1[0].1.written_at), (3, at(1_000)));
        }
    }

    /// The L2 down from 0.5 s to 3 s: each refusal waits 200, 400, 800, 1600 ms (doubling from
    /// the timeout) before the next attempt, and the attempt after the L2 is back deletes.
    #[test]
    fn refused_deletes_back_off_exponentially_until_the_l2_takes_them() {
        let mut w = FeedWorld::new(FeedConfig::default(), 300);
        let l2 = w.l2;
        w.at(500, l2, M::Down(true));
        w.at(3_000, l2, M::Down(false));
        w.change(1_000, 40, 1);
        w.run();
        let s = w.stats();
        // Sent at 1.000; refused answers come back a hop later each (1 ms there, 0 back):
        // 1.001 + 200 → 1.201; 1.202 + 400 → 1.602; 1.603 + 800 → 2.403; 2.404 + 1600 → 4.004
        // (the L2 is up again): acknowledged at 4.004 + 1 ms service.
        assert_eq!(
            (s.deletes_sent, s.refused, s.retries, s.acked),
            (5, 4, 4, 1)
        );
        assert_eq!(s.timeouts, 0);
        assert_eq!(s.delivery.max_ns(), Some(3_006_000_000));
        assert!(!w.cached(at(5_000)));
    }

    /// A partition that drops the deletes: each attempt times out after 200 ms and goes out
    /// again at once; the first after the partition lands.
    #[test]
    fn unanswered_deletes_are_sent_again_after_the_timeout() {
        let mut w = FeedWorld::new(FeedConfig::default(), 300);
        let gate = w.gate;
        w.at(0, gate, M::Drop(true));
        w.at(1_500, gate, M::Drop(false));
        w.change(1_000, 40, 1);
        w.run();
        let s = w.stats();
        // Attempts at 1.0, 1.2, 1.4 dropped; 1.6 lands.
        assert_eq!(w.dropped_at_gate(), 3);
        assert_eq!(
            (s.deletes_sent, s.timeouts, s.retries, s.acked),
            (4, 3, 3, 1)
        );
        assert_eq!(s.delivery.max_ns(), Some(602_000_000));
        assert!(!w.cached(at(2_000)));
    }

    /// An L2 that never answers: the delete is given up once the L2's TTL has passed since the
    /// change (an entry cached before it has expired by then), and nothing stays pending.
    #[test]
    fn a_delete_the_l2_never_takes_expires_with_the_l2_ttl() {
        let mut w = FeedWorld::new(FeedConfig::default(), 10);
        let l2 = w.l2;
        w.at(0, l2, M::Down(true));
        w.change(1_000, 40, 1);
        w.run();
        let s = w.stats();
        assert_eq!((s.acked, s.expired), (0, 1));
        assert_eq!(w.pending(), 0);
        // Backoffs 0.2, 0.4, 0.8, 1.6, 3.2 then 5 s (the cap): sends at about 1.0, 1.2, 1.6,
        // 2.4, 4.0, 7.2 and 12.2 s; the one due at 12.2 s finds the 10 s TTL passed.
        assert_eq!(s.deletes_sent, 6);
        assert_eq!(s.refused, 6);
    }

    #[test]
    fn changes_past_the_pending_bound_get_their_l1_broadcast_only() {
        let cfg = FeedConfig::default().with_max_pending(2).unwrap();
        let mut w = FeedWorld::new(cfg, 300);
        let l2 = w.l2;
        w.at(0, l2, M::Down(true));
        w.at(2_000, l2, M::Down(false));
        for j in 0..5 {
            w.change(1_000 + j, 40 + j, 1);
        }
        w.run();
        let s = w.stats();
        assert_eq!((s.changes, s.dropped, s.acked, s.max_pending), (5, 3, 2, 2));
        assert_eq!(w.l1(0).len(), 5);
        assert_eq!(w.l1(1).len(), 5);
    }

    /// Heartbeats (one a second, 50 ms of lag, then none from 4 s to 9 s) are counted apart,
    /// broadcast and delete nothing, and carry the lag: at 3.5 s the window holds their arrival
    /// lag; then, with none arriving, the lag is how overdue the next one is (due at 4 s), so it
    /// grows with the silence; the one written at 9 s arrives 2.5 s late, and its arrival lag
    /// is larger than what is overdue then (the next is due at 10 s: 2 s at 12 s).
    #[test]
    fn heartbeats_measure_the_lag_and_an_overdue_one_raises_it() {
        let mut w = FeedWorld::new(FeedConfig::default(), 300);
        let inv = w.inv;
        for s in 1..=3 {
            w.at(
                s * 1_000 + 50,
                inv,
                M::Change(RowChange::heartbeat(at(s * 1_000))),
            );
        }
        w.at(
            9_000 + 2_500,
            inv,
            M::Change(RowChange::heartbeat(at(9_000))),
        );
        let window = |w: &mut FeedWorld, until_ms: u64| {
            // (The run ends once the last heartbeat is in: later calls find it over.)
            let _ = w.sim.run_until(at(until_ms));
            let id = w.inv;
            match w.sim.component_mut(id) {
                C::Inv(i) => i.take_lag_window(at(until_ms)),
                _ => unreachable!(),
            }
        };
        let ms = |x: u64| Some(x * 1_000_000);
        assert_eq!(window(&mut w, 500), None, "nothing yet");
        assert_eq!(window(&mut w, 3_500), ms(50));
        assert_eq!(window(&mut w, 4_000), None, "the next one is due at 4 s");
        assert_eq!(window(&mut w, 5_000), ms(1_000));
        assert_eq!(window(&mut w, 8_250), ms(4_250));
        assert_eq!(window(&mut w, 12_000), ms(2_500));
        assert_eq!(window(&mut w, 13_000), ms(3_000), "due at 10 s");
        let s = w.stats();
        assert_eq!(
            (s.heartbeats, s.changes, s.rows, s.deletes_sent),
            (4, 0, 0, 0)
        );
        assert!(w.l1(0).is_empty() && w.l1(1).is_empty());
        assert_eq!(w.pending(), 0);
        // Without heartbeats configured, silence is no lag.
        let mut quiet = FeedWorld::new(FeedConfig::default().with_heartbeat(None), 300);
        let inv = quiet.inv;
        quiet.at(1_050, inv, M::Change(RowChange::heartbeat(at(1_000))));
        assert_eq!(window(&mut quiet, 9_000), ms(50));
        assert_eq!(window(&mut quiet, 20_000), None);
    }

    #[test]
    fn retry_settings_are_validated() {
        let d = FeedConfig::default();
        assert_eq!(
            d.clone()
                .with_retry(SimDuration::ZERO, SimDuration::from_secs(1)),
            Err(FeedConfigError::ZeroAckTimeout)
        );
        assert!(matches!(
            d.clone()
                .with_retry(SimDuration::from_secs(2), SimDuration::from_secs(1)),
            Err(FeedConfigError::BackoffBelowTimeout { .. })
        ));
        assert_eq!(d.with_max_pending(0), Err(FeedConfigError::ZeroPending));
    }
}
