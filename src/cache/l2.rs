//! [`L2Cache`]: the shared remote cache, a dependency of every API node with its own latency,
//! concurrency, capacity and failures. A sans-IO component generic over the world's message type
//! `M`, like the database: [`L2Request`] in, [`L2Reply`] out (to `request.reply_to`), [`L2Timer`]
//! for its own wake-ups.
//!
//! # Timing
//!
//! `max_concurrent` requests are in service at once; one more waits in a FIFO queue of at most
//! `queue_limit`, and one more than that is answered [`L2Error::Overloaded`] at once. A request
//! that starts service takes effect at that instant (its linearization point: a `Get` reads, a
//! `Set`/`Delete`/`Flush` writes) and is answered `latency` later, `latency` drawn from the
//! configured [`Dist`] per request. As in the database, slot ends are kept in a min-heap and
//! freed lazily; one [`L2Timer`] is armed only while requests wait. The reply's `latency` is the
//! queueing wait plus service; network hops are the caller's to add.
//!
//! # Storage
//!
//! At most `capacity` entries in an [`LruMap`] (least recently used evicted; a `Get` hit and a
//! `Set` are uses). Each `Set` carries its TTL: the entry is a hit in `[start, start + ttl)`
//! (`SimDuration::MAX`: never expires) and is dropped when found expired. Values are
//! [`Cached<V>`], so "not found" can be cached here too (negative caching). There is one TTL
//! per entry, no soft TTL: serving stale is the L1's job.
//!
//! # Failures (fault-injection hooks)
//!
//! - [`L2Cache::set_down`]`(true)`: the cache is unreachable; every request is answered
//!   [`L2Error::Down`] at once, and queued requests when their turn comes; requests already in
//!   service complete. Data is kept (a network partition); to model a restart that loses it,
//!   also call [`L2Cache::flush`].
//! - [`L2Cache::set_error_rate`]`(p)`: each request that starts service fails with probability
//!   `p` ([`L2Error::Failed`], after its service latency, without effect).
//! - [`L2Cache::flush`]: drops every entry at once (as an operator's flush), outside the request
//!   path; [`L2Op::Flush`] does the same as a request.
//!
//! The caller treats every error as a miss and falls through to the database.
//!
//! Randomness: latencies draw from the stream `latency`, failures from `errors`, both forked
//! from the cache's stream, so turning failures on does not shift latencies.

use super::{
    CacheConfigError, CacheKey, CacheStats, Cached, CachedInstance, IndexKey, LruMap, RunKey,
};
use crate::idempotency::{
    Check as IdemCheck, IdemConfig, IdemKey, IdempotencyStore, Outcome as IdemOutcome, caller_clock,
};
use crate::kernel::{ComponentId, Dist, FixMap, Outbox, SimDuration, SimRng, SimTime, TimerId};
use crate::metrics::LatencyHistogram;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// One request to the L2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Request<K = CacheKey, V = CachedInstance> {
    /// The caller's correlation id, echoed in the reply; [`L2Request::DETACHED`] when no reply
    /// is wanted.
    pub tag: u64,
    /// Where the [`L2Reply`] goes.
    pub reply_to: ComponentId,
    pub op: L2Op<K, V>,
}

impl<K, V> L2Request<K, V> {
    /// The tag of a request nobody waits for (a write path's delete, a fill's set): the L2
    /// applies it and sends no reply, since the reply would be an event its caller ignores.
    pub const DETACHED: u64 = u64::MAX;

    #[inline]
    fn wants_reply(&self) -> bool {
        self.tag != Self::DETACHED
    }
}

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Op<K = CacheKey, V = CachedInstance> {
    Get {
        key: K,
    },
    /// Stores `value` for `ttl` (`SimDuration::MAX`: no expiry), replacing any entry, unless a
    /// delete of the key newer than `version` (the value's version: the row's last write; zero
    /// for "not found") came first: then the value is outdated and refused.
    Set {
        key: K,
        value: Cached<V>,
        ttl: SimDuration,
        version: SimTime,
    },
    /// Deletes the key and leaves a tombstone for `TOMBSTONE_TTL` (60 s): a set of a value older
    /// than `version` (the write's time) arriving later (a read that raced the write) is refused.
    Delete {
        key: K,
        version: SimTime,
    },
    /// [`L2Op::Delete`] of `count` keys from `first` (one write of a run of instances).
    DeleteRun {
        first: K,
        count: u32,
        version: SimTime,
    },
    /// Drops every entry.
    Flush,
    /// A ClientToken record operation, when the idempotency store lives here
    /// ([`StoreKind::L2Cache`](crate::idempotency::StoreKind)): the check is a GET (plus SETNX
    /// in atomic mode), the record writes are SETs — never in the database's transaction.
    Idem(IdemOp),
}

/// A ClientToken record operation on an L2-held idempotency store (same meaning as the
/// database's `DbOp::Idem*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdemOp {
    /// `skew_ns`: the calling node's clock skew (see `DbOp::IdemCheck`).
    Check {
        key: IdemKey,
        fingerprint: u64,
        skew_ns: i64,
    },
    Record {
        key: IdemKey,
        fingerprint: u64,
        skew_ns: i64,
    },
    Complete {
        key: IdemKey,
        outcome: IdemOutcome,
        skew_ns: i64,
    },
    Abandon {
        key: IdemKey,
    },
}

impl<K, V> L2Op<K, V> {
    /// A short stable name, for traces and reports.
    pub const fn name(&self) -> &'static str {
        match self {
            L2Op::Get { .. } => "get",
            L2Op::Set { .. } => "set",
            L2Op::Delete { .. } | L2Op::DeleteRun { .. } => "delete",
            L2Op::Flush => "flush",
            L2Op::Idem(IdemOp::Check { .. }) => "idem_check",
            L2Op::Idem(_) => "idem_write",
        }
    }
}

/// The answer to an [`L2Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Reply<V = CachedInstance> {
    /// The request's `tag`.
    pub tag: u64,
    /// From the request's arrival to this reply: wait plus service (zero when refused at once).
    pub latency: SimDuration,
    pub result: Result<L2Result<V>, L2Error>,
}

/// What a successful request returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Result<V = CachedInstance> {
    /// `Get`: the entry (possibly a cached "not found").
    Hit(Cached<V>),
    /// `Get`: absent or expired.
    Miss,
    /// `Set` done.
    Stored,
    /// `Delete` done; whether an entry was removed.
    Deleted(bool),
    /// `Flush` done; how many entries were dropped.
    Flushed(u64),
    /// `Idem(Check)`: the store's answer.
    IdemChecked(IdemCheck),
    /// `Idem(Record | Complete | Abandon)` done.
    IdemWritten,
}

/// Why a request failed. Every error means "go to the database".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L2Error {
    #[error("the cache is down")]
    Down,
    #[error("the cache's queue is full")]
    Overloaded,
    #[error("the cache failed the request (injected)")]
    Failed,
    /// Never sent by the cache: the caller's own timeout, as the caller reports it.
    #[error("no answer within the caller's timeout")]
    TimedOut,
}

/// The L2's one wake-up: slots have ended and queued requests may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Timer;

/// A validated L2 configuration (see [`L2ConfigBuilder`]).
#[derive(Clone, Debug, PartialEq)]
pub struct L2Config {
    capacity: u32,
    latency: Dist,
    max_concurrent: u32,
    queue_limit: u32,
}

impl L2Config {
    pub fn builder() -> L2ConfigBuilder {
        L2ConfigBuilder::new()
    }
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    pub fn latency(&self) -> &Dist {
        &self.latency
    }
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent
    }
    pub fn queue_limit(&self) -> u32 {
        self.queue_limit
    }
}

/// Builds an [`L2Config`]; every field starts at a documented *(assumed)* default.
#[derive(Clone, Debug)]
pub struct L2ConfigBuilder(L2Config);

impl Default for L2ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl L2ConfigBuilder {
    /// Defaults *(assumed, a Redis/Memcached-like remote cache)*: 1,000,000 entries, service
    /// latency lognormal with p50 0.3 ms and p99 2 ms, 64 requests in service at once, 1,024
    /// queued.
    pub fn new() -> L2ConfigBuilder {
        L2ConfigBuilder(L2Config {
            capacity: 1_000_000,
            latency: Dist::lognormal_p50_p99(0.3e-3, 2e-3).expect("valid"),
            max_concurrent: 64,
            queue_limit: 1_024,
        })
    }
    pub fn capacity(mut self, entries: u32) -> Self {
        self.0.capacity = entries;
        self
    }
    /// Service latency of one request (seconds).
    pub fn latency(mut self, d: Dist) -> Self {
        self.0.latency = d;
        self
    }
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.0.max_concurrent = n;
        self
    }
    /// Requests waiting at most (0: none wait; a request finding every slot busy is refused).
    pub fn queue_limit(mut self, n: u32) -> Self {
        self.0.queue_limit = n;
        self
    }
    pub fn build(self) -> Result<L2Config, CacheConfigError> {
        let c = self.0;
        for (field, v) in [
            ("capacity", c.capacity),
            ("max_concurrent", c.max_concurrent),
        ] {
            if v == 0 {
                return Err(CacheConfigError::Zero { field });
            }
        }
        if c.capacity == u32::MAX {
            return Err(CacheConfigError::Capacity(u64::from(c.capacity)));
        }
        Ok(c)
    }
}

/// What the L2 counts, besides the cache counters of [`CacheStats`] (whose `hits_fresh`,
/// `negative_hits`, `misses`, `inserts`, `evictions`, `expirations`, `invalidations` (deletes
/// that removed an entry) and `flushed` it fills).
#[derive(Clone, Debug, Default)]
pub struct L2Stats {
    pub cache: CacheStats,
    /// Requests received, by op.
    pub gets: u64,
    pub sets: u64,
    pub deletes: u64,
    pub flushes: u64,
    /// ClientToken record operations received (checks and writes).
    pub idem_ops: u64,
    /// Requests that completed service successfully.
    pub served: u64,
    /// Requests answered [`L2Error::Down`].
    pub refused_down: u64,
    /// Requests answered [`L2Error::Overloaded`].
    pub refused_overloaded: u64,
    /// Requests answered [`L2Error::Failed`].
    pub failed: u64,
    /// Most requests in service at once (≤ `max_concurrent`).
    pub max_in_service: u32,
    /// Most requests waiting at once (≤ `queue_limit`).
    pub max_queued: u32,
    /// [`L2Timer`] wake-ups scheduled.
    pub wakeups: u64,
    /// Wait plus service of every request that started service (successful or failed).
    pub latency: LatencyHistogram,
    /// Sets refused because a newer delete of their key came first (raced reads).
    pub outdated_sets_refused: u64,
    /// Deletes applied at once, without a reply, because the queue was full.
    pub deletes_applied_overloaded: u64,
}

impl L2Stats {
    /// Requests answered with an error, of any kind.
    pub fn errors(&self) -> u64 {
        self.refused_down + self.refused_overloaded + self.failed
    }
}

#[derive(Clone, Copy, Debug)]
struct Stored<V> {
    value: Cached<V>,
    expires_at: SimTime,
}

/// The shared remote cache. See the module documentation.
#[derive(Clone, Debug)]
pub struct L2Cache<K = CacheKey, V = CachedInstance> {
    cfg: L2Config,
    latency_rng: SimRng,
    error_rng: SimRng,
    map: LruMap<K, Stored<V>>,
    /// End times of the requests in service (some may have ended: freed lazily).
    busy: BinaryHeap<Reverse<SimTime>>,
    /// Requests waiting for a slot, with their arrival.
    waiting: VecDeque<(L2Request<K, V>, SimTime)>,
    wakeup: Option<(SimTime, TimerId)>,
    down: bool,
    error_rate: f64,
    stats: L2Stats,
    /// The ClientToken records, when they live here; a flush drops them too.
    idem: Option<IdempotencyStore>,
    /// Recent deletes: key → (the write's version, until when the tombstone holds), and the
    /// tombstones in expiry order (they all live [`TOMBSTONE_TTL`], so the queue is sorted).
    /// The map is only looked up, never iterated, so a fixed-hash [`FixMap`] serves.
    tombstones: FixMap<K, (SimTime, SimTime)>,
    tombstone_order: VecDeque<(SimTime, K)>,
}

/// How long a delete keeps refusing older values: far longer than a read can race a write
/// (a fetch's database read plus its way back to the L2).
pub const TOMBSTONE_TTL: SimDuration = SimDuration::from_secs(60);

impl<K: Ord + IndexKey + RunKey, V: Copy> L2Cache<K, V> {
    /// An empty, healthy cache; draws from streams `latency` and `errors` forked from `rng`.
    pub fn new(cfg: L2Config, rng: SimRng) -> L2Cache<K, V> {
        L2Cache {
            map: LruMap::new(cfg.capacity as usize),
            latency_rng: rng.fork("latency"),
            error_rng: rng.fork("errors"),
            cfg,
            busy: BinaryHeap::new(),
            waiting: VecDeque::new(),
            wakeup: None,
            down: false,
            error_rate: 0.0,
            stats: L2Stats::default(),
            idem: None,
            tombstones: FixMap::new(),
            tombstone_order: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &L2Config {
        &self.cfg
    }
    pub fn stats(&self) -> &L2Stats {
        &self.stats
    }

    /// Holds the ClientToken records ([`L2Op::Idem`]) in a store of `cfg`; they share the cache's
    /// fate (lost on a flush).
    pub fn with_idempotency(mut self, cfg: IdemConfig) -> L2Cache<K, V> {
        self.idem = Some(IdempotencyStore::new(cfg));
        self
    }

    /// The ClientToken store, when it lives here.
    pub fn idempotency(&self) -> Option<&IdempotencyStore> {
        self.idem.as_ref()
    }
    /// Entries held (some may be expired, not yet looked up).
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.waiting.len()
    }
    /// The entry of `key` at `now`, read directly (no request, no latency, nothing counted):
    /// for oracles and tests.
    pub fn peek(&self, now: SimTime, key: K) -> Option<Cached<V>> {
        self.map
            .peek(&key)
            .filter(|s| now < s.expires_at)
            .map(|s| s.value)
    }

    /// Fault hook: the cache becomes unreachable (`true`) or reachable again (`false`).
    pub fn set_down(&mut self, down: bool) {
        self.down = down;
    }
    pub fn is_down(&self) -> bool {
        self.down
    }
    /// Fault hook: each request that starts service fails with probability `p` in [0, 1].
    pub fn set_error_rate(&mut self, p: f64) -> Result<(), CacheConfigError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(CacheConfigError::Probability {
                field: "error_rate",
                value: p,
            });
        }
        self.error_rate = p;
        Ok(())
    }
    pub fn error_rate(&self) -> f64 {
        self.error_rate
    }
    /// Fault hook: drops every entry now (an operator's flush, or with `set_down` a restart).
    /// Returns how many there were.
    pub fn flush(&mut self) -> usize {
        if let Some(idem) = &mut self.idem {
            idem.clear();
        }
        let n = self.map.clear();
        self.stats.cache.flushed += n as u64;
        n
    }

    /// Runbook hook (warm the cache): stores `value` under `key` at `now` for `ttl`, out of
    /// band (no request, no service time: the warming's own load is not modelled).
    pub fn warm(
        &mut self,
        now: SimTime,
        key: K,
        value: Cached<V>,
        ttl: SimDuration,
        version: SimTime,
    ) {
        self.apply(
            &L2Op::Set {
                key,
                value,
                ttl,
                version,
            },
            now,
        );
    }

    /// Handles a request: refuses it at once, starts it, or queues it.
    pub fn on_request<M: From<L2Reply<V>> + From<L2Timer>>(
        &mut self,
        req: L2Request<K, V>,
        out: &mut Outbox<'_, M>,
    ) {
        match req.op {
            L2Op::Get { .. } => self.stats.gets += 1,
            L2Op::Set { .. } => self.stats.sets += 1,
            L2Op::Delete { .. } | L2Op::DeleteRun { .. } => self.stats.deletes += 1,
            L2Op::Flush => self.stats.flushes += 1,
            L2Op::Idem(_) => self.stats.idem_ops += 1,
        }
        if self.down {
            self.stats.refused_down += 1;
            refuse(&req, SimDuration::ZERO, L2Error::Down, out);
            return;
        }
        // Free ended slots and start earlier waiters first, so this request queues behind them.
        let now = out.now();
        self.drain(out);
        if self.busy.len() < self.cfg.max_concurrent as usize {
            debug_assert!(self.waiting.is_empty(), "a free slot with waiters");
            self.start(req, now, out);
        } else if self.waiting.len() >= self.cfg.queue_limit as usize {
            if let L2Op::Delete { .. } | L2Op::DeleteRun { .. } = req.op {
                // Invalidations are never shed (a lost one serves outdated values until the
                // TTL): an overloaded cache applies them at once (and answers one that wants
                // an answer at once).
                self.stats.deletes_applied_overloaded += 1;
                let result = self.apply(&req.op, out.now());
                if req.wants_reply() {
                    let reply = L2Reply {
                        tag: req.tag,
                        latency: SimDuration::ZERO,
                        result: Ok(result),
                    };
                    out.send(req.reply_to, SimDuration::ZERO, M::from(reply));
                }
                return;
            }
            self.stats.refused_overloaded += 1;
            refuse(&req, SimDuration::ZERO, L2Error::Overloaded, out);
        } else {
            self.waiting.push_back((req, out.now()));
            self.stats.max_queued = self.stats.max_queued.max(self.waiting.len() as u32);
            self.arm_wakeup(out);
        }
    }

    /// Handles the cache's own wake-up: frees ended slots and starts waiters.
    pub fn on_timer<M: From<L2Reply<V>> + From<L2Timer>>(
        &mut self,
        _t: L2Timer,
        out: &mut Outbox<'_, M>,
    ) {
        self.wakeup = None;
        self.drain(out);
    }

    /// Frees the slots that ended by now and starts waiters FIFO while slots are free (or
    /// refuses them while the cache is down); then arms a wake-up if requests still wait. With
    /// nothing waiting (the common case) only the ended slots are freed, inline.
    #[inline]
    fn drain<M: From<L2Reply<V>> + From<L2Timer>>(&mut self, out: &mut Outbox<'_, M>) {
        let now = out.now();
        while let Some(&Reverse(end)) = self.busy.peek() {
            if end > now {
                break;
            }
            self.busy.pop();
        }
        if !self.waiting.is_empty() {
            self.start_waiters(out);
        }
    }

    /// [`L2Cache::drain`] when requests wait.
    #[inline(never)]
    fn start_waiters<M: From<L2Reply<V>> + From<L2Timer>>(&mut self, out: &mut Outbox<'_, M>) {
        let now = out.now();
        while !self.waiting.is_empty() && self.busy.len() < self.cfg.max_concurrent as usize {
            let Some((req, arrived)) = self.waiting.pop_front() else {
                break;
            };
            if self.down {
                self.stats.refused_down += 1;
                refuse(&req, now.saturating_since(arrived), L2Error::Down, out);
                continue;
            }
            self.start(req, arrived, out);
        }
        self.arm_wakeup(out);
    }

    /// Arms (or moves) the one wake-up to the earliest slot end while requests wait.
    fn arm_wakeup<M: From<L2Timer>>(&mut self, out: &mut Outbox<'_, M>) {
        if self.waiting.is_empty() {
            return;
        }
        let Some(&Reverse(first_end)) = self.busy.peek() else {
            unreachable!("requests wait only while every slot is busy");
        };
        match self.wakeup {
            Some((at, _)) if at <= first_end => {}
            armed => {
                if let Some((_, id)) = armed {
                    out.cancel(id);
                }
                let id = out.send_at(out.me(), first_end, M::from(L2Timer));
                self.wakeup = Some((first_end, id));
                self.stats.wakeups += 1;
            }
        }
    }

    /// Starts `req` now: takes a slot until its service ends, applies it (unless it fails) and
    /// sends the reply for that instant.
    fn start<M: From<L2Reply<V>>>(
        &mut self,
        req: L2Request<K, V>,
        arrived: SimTime,
        out: &mut Outbox<'_, M>,
    ) {
        let now = out.now();
        let service = self.cfg.latency.sample_duration(&mut self.latency_rng);
        let end = now.saturating_add(service);
        self.busy.push(Reverse(end));
        let in_service = self.busy.len();
        assert!(
            in_service <= self.cfg.max_concurrent as usize,
            "{in_service} requests in service, above max_concurrent {}",
            self.cfg.max_concurrent
        );
        self.stats.max_in_service = self.stats.max_in_service.max(in_service as u32);
        let latency = end.saturating_since(arrived);
        self.stats.latency.record(latency.as_ns());
        let failed = self.error_rate > 0.0 && self.error_rng.unit() < self.error_rate;
        let result = if failed {
            self.stats.failed += 1;
            Err(L2Error::Failed)
        } else {
            self.stats.served += 1;
            Ok(self.apply(&req.op, now))
        };
        if req.wants_reply() {
            let reply = L2Reply {
                tag: req.tag,
                latency,
                result,
            };
            out.send(req.reply_to, service, M::from(reply));
        }
    }

    /// Applies `op` to the storage at `now`. By reference: the op enum is large (its
    /// ClientToken variants), and most arms read one key of it.
    fn apply(&mut self, op: &L2Op<K, V>, now: SimTime) -> L2Result<V> {
        let st = &mut self.stats.cache;
        match *op {
            L2Op::Get { key } => {
                let Some(slot) = self.map.find(&key) else {
                    st.misses += 1;
                    return L2Result::Miss;
                };
                let s = *self.map.entry(slot).1;
                if now >= s.expires_at {
                    self.map.remove_slot(slot);
                    st.expirations += 1;
                    st.misses += 1;
                    return L2Result::Miss;
                }
                self.map.touch_slot(slot);
                match s.value {
                    Cached::Value(_) => st.hits_fresh += 1,
                    Cached::Negative => st.negative_hits += 1,
                }
                L2Result::Hit(s.value)
            }
            L2Op::Set {
                key,
                value,
                ttl,
                version,
            } => {
                while let Some(&(until, k)) = self.tombstone_order.front() {
                    if until > now {
                        break;
                    }
                    self.tombstone_order.pop_front();
                    if self.tombstones.get(&k).is_some_and(|t| t.1 <= now) {
                        self.tombstones.remove(&k);
                    }
                }
                if self
                    .tombstones
                    .get(&key)
                    .is_some_and(|&(v, until)| until > now && version < v)
                {
                    self.stats.outdated_sets_refused += 1;
                    return L2Result::Stored;
                }
                let st = &mut self.stats.cache;
                st.inserts += 1;
                let stored = Stored {
                    value,
                    expires_at: now.saturating_add(ttl),
                };
                if self.map.insert(key, stored).is_some() {
                    st.evictions += 1;
                }
                L2Result::Stored
            }
            L2Op::Delete { key, version } => L2Result::Deleted(self.delete(key, version, now)),
            L2Op::DeleteRun {
                first,
                count,
                version,
            } => {
                let mut removed = false;
                for j in 0..count {
                    removed |= self.delete(first.nth(j), version, now);
                }
                L2Result::Deleted(removed)
            }
            L2Op::Flush => {
                if let Some(idem) = &mut self.idem {
                    idem.clear();
                }
                let n = self.map.clear() as u64;
                st.flushed += n;
                L2Result::Flushed(n)
            }
            L2Op::Idem(op) => {
                let Some(idem) = &mut self.idem else {
                    // Misrouted: the wiring sends these only to an L2 that holds the store.
                    return L2Result::IdemWritten;
                };
                match op {
                    IdemOp::Check {
                        key,
                        fingerprint,
                        skew_ns,
                    } => {
                        // Atomic mode: the check also reserves (SETNX); otherwise it only reads.
                        let local = caller_clock(now, skew_ns);
                        L2Result::IdemChecked(idem.check_by(now, local, key, fingerprint))
                    }
                    IdemOp::Record {
                        key,
                        fingerprint,
                        skew_ns,
                    } => {
                        idem.record_in_progress_by(
                            now,
                            caller_clock(now, skew_ns),
                            key,
                            fingerprint,
                        );
                        L2Result::IdemWritten
                    }
                    IdemOp::Complete {
                        key,
                        outcome,
                        skew_ns,
                    } => {
                        idem.complete_by(now, caller_clock(now, skew_ns), key, outcome);
                        L2Result::IdemWritten
                    }
                    IdemOp::Abandon { key } => {
                        idem.abandon(key);
                        L2Result::IdemWritten
                    }
                }
            }
        }
    }
    /// Deletes `key` at `now` and leaves (or renews) its tombstone, which keeps the newest of
    /// the delete versions; returns whether an entry was removed. A run's keys come here one by
    /// one, without going through [`L2Cache::apply`] again.
    fn delete(&mut self, key: K, version: SimTime, now: SimTime) -> bool {
        let until = now.saturating_add(TOMBSTONE_TTL);
        // One probe in the common case (no tombstone, or an older one); a second only when an
        // earlier delete carried a newer version, which the tombstone keeps.
        if let Some((older, _)) = self.tombstones.insert(key, (version, until))
            && older > version
            && let Some(t) = self.tombstones.get_mut(&key)
        {
            t.0 = older;
        }
        self.tombstone_order.push_back((until, key));
        let removed = self.map.discard(&key);
        if removed {
            self.stats.cache.invalidations += 1;
        }
        removed
    }
}

fn refuse<K, V, M: From<L2Reply<V>>>(
    req: &L2Request<K, V>,
    latency: SimDuration,
    e: L2Error,
    out: &mut Outbox<'_, M>,
) {
    if !req.wants_reply() {
        return;
    }
    let reply = L2Reply {
        tag: req.tag,
        latency,
        result: Err(e),
    };
    out.send(req.reply_to, SimDuration::ZERO, M::from(reply));
}
