//! The multi-level read cache of the control plane: an in-process L1 per API node
//! ([`L1Cache`]), a shared remote L2 ([`L2Cache`], a dependency with its own latency, capacity
//! and failures), and the write-side invalidation ([`InvalidationPlan`], [`Broadcaster`]).
//!
//! Caches make behaviour modal (domain notes §4): with a warm cache the database sees a trickle,
//! with a cold or flushed one it sees every read at once. This module provides the pieces that
//! make both modes, and the transitions between them, visible: single-flight coalescing,
//! negative caching, soft and hard TTLs with jitter, and per-level [`CacheStats`].
//!
//! # Pieces
//!
//! | type | what it is |
//! |---|---|
//! | [`L1Cache<K, V, W>`] | a pure struct owned by an API node (no events): bounded entries, LRU or FIFO eviction, soft/hard TTL with jitter, negative entries, single-flight with bounded waiter lists |
//! | [`L2Cache<K, V>`] | a sans-IO component generic over the world's message type, like the database: [`L2Request`] in, [`L2Reply`] out, [`L2Timer`] for its own wake-ups; latency [`Dist`](crate::kernel::Dist), concurrency slots and a bounded FIFO queue, LRU capacity, TTL, fault hooks |
//! | [`InvalidationPlan`], [`Broadcaster`] | what one write invalidates: the L2 delete now, and one [`L1Invalidation`] per other node after a sampled delay (or lost) |
//! | [`Invalidator`], [`RowChange`] | binlog-driven invalidation: the database's change feed in, the L1 broadcast and acknowledged, retried L2 deletes out ([`Invalidation::Binlog`]) |
//! | [`LruMap`] | the ordered bounded map under both levels (fixed-hash index + intrusive list) |
//! | [`CacheStats`] | the counters of one level: hit ratio, coalesced, stale served, DB reads saved, … |
//!
//! Keys and values are generic (`K: Ord + Copy`, `V: Copy`) so tests can use integers; the
//! control plane uses [`CacheKey`] (account, instance) and [`CachedInstance`] (state, type,
//! version), which are the default type parameters of every type here. A value is stored as a
//! [`Cached<V>`]: either `Value(v)` or `Negative` (the source said "not found").
//!
//! # Intended wiring in the API node (read-through, cache-aside on write)
//!
//! **Read** of key `k` by request `h` (e.g. DescribeInstances by id, DescribeInstanceStatus):
//!
//! 1. `l1.get(now, k)`:
//!    - `Fresh(v)` → answer `v`. `NegativeHit` → answer `InvalidInstance.NotFound`. Done: no L2,
//!      no DB (counted as a DB read saved).
//!    - `Stale(v)` (past the soft TTL, before the hard one) → remember `v` in the request record
//!      as the fallback and go on as for a miss. (A node that prefers *stale-while-revalidate*
//!      answers `v` at once and lets the leader refresh in the background; the framework supports
//!      both, the default wiring refreshes first.)
//!    - `Miss` → go on.
//! 2. `l1.begin_fill(k, h)`:
//!    - `Leader` → this request fetches for every request of this node that misses on `k`
//!      meanwhile (single-flight per key per node).
//!    - `Follower` → park `h`; it is answered when the leader's fetch ends.
//!    - `Overflow` → the key already has [`L1Config::max_waiters`] followers: fetch on its own,
//!      uncoalesced (it neither waits on nor ends the flight).
//! 3. Leader: send `L2Op::Get { key: k }` to the L2 (with the node's network hop and a timeout).
//!    - `Ok(L2Result::Hit(c))` → `l1.complete_fill(now, k, c)` returns the followers; answer the
//!      leader and every follower with `c`.
//!    - `Ok(L2Result::Miss)`, any `Err(_)` (down, overloaded, injected error) or the node's own
//!      timeout → fall through to the database.
//! 4. Database read (`DbOp::GetInstance`):
//!    - found `v` → `L2Op::Set { key: k, value: Value(v), ttl }` (fire and forget: its reply is
//!      ignored), `l1.complete_fill(now, k, Value(v))`, answer all.
//!    - not found → the same with `Cached::Negative` and a short TTL (negative caching: a client
//!      polling for an instance that does not exist costs the database once per TTL).
//!    - failed (unavailable, overloaded, pool timeout) → `l1.serve_stale(now, k)` for the leader
//!      and once per follower (`l1.end_fill(k)` gives them): a value before its hard TTL is
//!      served (counted in `stale_served`), else the request fails with the database's error.
//!
//! The leader's fetch must always end the flight, even if the leader's own request has timed
//! out meanwhile: otherwise its followers wait forever. The node should end a flight whose fetch
//! it gives up on (its timeout) with `end_fill` and fail or re-fetch the followers.
//!
//! **Write** of key `k` (Start/Stop/Reboot/Delete, a state change of an instance):
//!
//! 1. The database write. Only when it succeeds:
//! 2. `L2Op::Delete { key: k }` to the L2 (cache-aside: update the source, then delete, never
//!    update, the cached copy).
//! 3. `broadcaster.plan(k, now, Some(me))`: apply `l1.on_invalidation(now, plan.message())` to
//!    this node's own L1 at once (read-your-writes on the writing node), and send
//!    `plan.message()` to every `(node, delay)` of `plan.deliveries` after `delay`
//!    ([`Broadcaster::broadcast`] hands out the same deliveries without building a plan: what
//!    the node and the workflow engine use). The other
//!    nodes keep serving the old value until their invalidation arrives: staleness is real, its
//!    window is measured per node ([`L1Cache::invalidation_lag`]), and a node with an oracle
//!    (the database's `inspect_instance`) can count each outdated answer with
//!    [`L1Cache::record_outdated_read`].
//!
//! That is writer-driven invalidation ([`Invalidation::Writer`]): a delete lost on the way, or a
//! write whose reply never came back, leaves the old value in the L2 until its TTL. With
//! [`Invalidation::Binlog`] the writer does step 3's own-L1 part only; the database reports each
//! state update applied as a [`RowChange`] and one [`Invalidator`] does the rest, with L2 deletes
//! acknowledged and retried (see `feed.rs`).
//!
//! Known races, left visible on purpose because production caches have them:
//! - A fetch that read the database before the write and fills after the invalidation reached
//!   the node would cache the old value; [`L1Cache::complete_fill`] discards a fill when an
//!   invalidation (or a flush) of its key arrived during the flight (`fills_discarded`).
//! - The same race at the L2 (a `Set` of a value read before the write, arriving after the
//!   `Delete`) is refused while the delete's tombstone lasts (`TOMBSTONE_TTL`, 60 s): a
//!   set of a version older than the delete's is dropped (`outdated_sets_refused`); one
//!   arriving later than that stays until the L2's TTL.
//!
//! # The stampede
//!
//! A cold start or a flush (`L1Cache::flush`, `L2Cache::flush`, `L2Op::Flush`) sends every read
//! to the database until the working set is back: the tests in `tests.rs` show the spike in
//! database reads per interval, and how single-flight caps it at (distinct keys × nodes) rather
//! than (concurrent reads).
//!
//! # DB reads saved, per level
//!
//! Every read that a level answers without passing it further saves one database read: for L1
//! the fresh and negative hits and the coalesced followers, for L2 its hits (fresh and negative).
//! A read reaches L2 only after missing L1, so the levels' `db_reads_saved()` add up to the
//! database reads the whole cache saved. A stale value served because the database failed saved
//! nothing (the read was tried) and is counted in `stale_served` instead.

mod feed;
mod invalidation;
mod l1;
mod l2;
mod lru;
#[cfg(test)]
mod tests;

pub use feed::{
    FeedConfig, FeedConfigError, FeedStats, FeedTimer, HEARTBEAT_MAX, Invalidation, Invalidator,
    RowChange,
};
pub use invalidation::{Broadcaster, InvalidationPlan, L1Invalidation};
pub use l1::{Eviction, L1Cache, L1Config, L1ConfigBuilder};
pub use l2::{
    IdemOp as L2IdemOp, L2Cache, L2Config, L2ConfigBuilder, L2Error, L2Op, L2Reply, L2Request,
    L2Result, L2Stats, L2Timer,
};
pub use lru::{IndexKey, LruMap, Slot, mix64};

use crate::api::types::{AccountId, InstanceId, InstanceState, InstanceType};
use crate::kernel::SimTime;
use crate::metrics::Registry;

/// Keys that come in runs: the instances one workflow writes have consecutive ids, so one
/// invalidation can cover `count` keys from a first one.
pub trait RunKey: Copy {
    /// The key `j` places after this one in its run.
    fn nth(&self, j: u32) -> Self;
}

impl RunKey for u64 {
    fn nth(&self, j: u32) -> u64 {
        self + u64::from(j)
    }
}

impl RunKey for CacheKey {
    fn nth(&self, j: u32) -> CacheKey {
        CacheKey {
            account: self.account,
            instance: InstanceId(self.instance.0 + u64::from(j)),
        }
    }
}

/// The control plane's cache key: one instance of one account (by-id lookups are scoped to the
/// account, as the database's are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheKey {
    pub account: AccountId,
    pub instance: InstanceId,
}

impl IndexKey for CacheKey {
    #[inline]
    fn hash64(&self) -> u64 {
        mix64(self.instance.0 ^ u64::from(self.account.0).rotate_left(40))
    }
}

/// What the control plane caches of an instance: enough to answer DescribeInstanceStatus and a
/// DescribeInstances by id. `updated_at` is the row's version (the database's last update time),
/// which an oracle compares to tell an outdated answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedInstance {
    pub state: InstanceState,
    pub instance_type: InstanceType,
    pub updated_at: SimTime,
}

/// A cached answer of the source: a value, or a remembered "not found" (negative caching).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cached<V> {
    Value(V),
    Negative,
}

impl<V> Cached<V> {
    pub fn is_negative(&self) -> bool {
        matches!(self, Cached::Negative)
    }
    /// The value, `None` for a negative entry.
    pub fn value(self) -> Option<V> {
        match self {
            Cached::Value(v) => Some(v),
            Cached::Negative => None,
        }
    }
}

/// The answer of an [`L1Cache::get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<V> {
    /// Before the soft TTL: serve it.
    Fresh(V),
    /// Past the soft TTL, before the hard one: refresh it, and serve it if the refresh fails.
    Stale(V),
    /// A remembered "not found", before its TTL.
    NegativeHit,
    /// Absent or past its hard TTL.
    Miss,
}

/// The answer of an [`L1Cache::begin_fill`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// No fetch of the key is in flight on this node: the caller fetches it and must end the
    /// flight ([`L1Cache::complete_fill`] or [`L1Cache::end_fill`]).
    Leader,
    /// A fetch is in flight: the waiter was parked and is returned when the flight ends.
    Follower,
    /// A fetch is in flight but its waiter list is full: the caller fetches on its own,
    /// uncoalesced, and must not end the flight.
    Overflow,
}

/// Why a cache configuration is not valid; each variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CacheConfigError {
    #[error("`{field}` must be at least 1")]
    Zero { field: &'static str },
    #[error("`capacity` must be below 2^32 - 1 entries, got {0}")]
    Capacity(u64),
    #[error("`soft_ttl` ({soft}) must not exceed `hard_ttl` ({hard})")]
    SoftAfterHard { soft: String, hard: String },
    #[error("`ttl_jitter` must be a fraction in [0, 1) (e.g. 0.1 for ±10%), got {0}")]
    Jitter(f64),
    #[error("`{field}` must be a probability in [0, 1], got {value}")]
    Probability { field: &'static str, value: f64 },
}

/// The counters of one cache level (an L1 of one node, or the L2). Fields a level does not
/// use stay zero (the L2 neither coalesces nor serves stale).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered with a value before its soft TTL (L2: every value hit).
    pub hits_fresh: u64,
    /// Lookups that found a value past its soft TTL, before its hard TTL.
    pub hits_stale: u64,
    /// Lookups answered by a remembered "not found".
    pub negative_hits: u64,
    /// Lookups that found nothing usable (absent or past its hard TTL).
    pub misses: u64,
    /// Requests parked behind another request's fetch of the same key (single-flight).
    pub coalesced: u64,
    /// Requests that found a fetch in flight whose waiter list was full, and fetched alone.
    pub coalesce_overflows: u64,
    /// Entries inserted or replaced.
    pub inserts: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries found past their hard TTL and dropped.
    pub expirations: u64,
    /// Entries removed by an invalidation (L1) or a delete (L2).
    pub invalidations: u64,
    /// Entries dropped by flushes.
    pub flushed: u64,
    /// Fills discarded because an invalidation or flush of their key arrived during the fetch.
    pub fills_discarded: u64,
    /// Values past their soft TTL served because the refresh failed.
    pub stale_served: u64,
    /// Answers the owner found outdated against the source of truth (reported by the owner).
    pub outdated_served: u64,
}

impl CacheStats {
    /// Lookups of the level: fresh, stale and negative hits plus misses.
    pub fn lookups(&self) -> u64 {
        self.hits_fresh + self.hits_stale + self.negative_hits + self.misses
    }

    /// Lookups answered by the level alone: fresh and negative hits.
    pub fn hits(&self) -> u64 {
        self.hits_fresh + self.negative_hits
    }

    /// `hits() / lookups()`, `None` before the first lookup. Stale hits do not count: they go on
    /// to the next level.
    pub fn hit_ratio(&self) -> Option<f64> {
        let n = self.lookups();
        (n > 0).then(|| self.hits() as f64 / n as f64)
    }

    /// Database reads this level saved: its fresh and negative hits and its coalesced requests
    /// (see the module documentation: the levels' values add up).
    pub fn db_reads_saved(&self) -> u64 {
        self.hits_fresh + self.negative_hits + self.coalesced
    }

    /// Adds `other` field by field (e.g. to sum the L1s of every node).
    pub fn merge(&mut self, other: &CacheStats) {
        let CacheStats {
            hits_fresh,
            hits_stale,
            negative_hits,
            misses,
            coalesced,
            coalesce_overflows,
            inserts,
            evictions,
            expirations,
            invalidations,
            flushed,
            fills_discarded,
            stale_served,
            outdated_served,
        } = *other;
        self.hits_fresh += hits_fresh;
        self.hits_stale += hits_stale;
        self.negative_hits += negative_hits;
        self.misses += misses;
        self.coalesced += coalesced;
        self.coalesce_overflows += coalesce_overflows;
        self.inserts += inserts;
        self.evictions += evictions;
        self.expirations += expirations;
        self.invalidations += invalidations;
        self.flushed += flushed;
        self.fills_discarded += fills_discarded;
        self.stale_served += stale_served;
        self.outdated_served += outdated_served;
    }

    /// The counters as (name, value), names stable, in a fixed order; `db_reads_saved` included.
    pub fn fields(&self) -> [(&'static str, u64); 15] {
        [
            ("hits_fresh", self.hits_fresh),
            ("hits_stale", self.hits_stale),
            ("negative_hits", self.negative_hits),
            ("misses", self.misses),
            ("coalesced", self.coalesced),
            ("coalesce_overflows", self.coalesce_overflows),
            ("inserts", self.inserts),
            ("evictions", self.evictions),
            ("expirations", self.expirations),
            ("invalidations", self.invalidations),
            ("flushed", self.flushed),
            ("fills_discarded", self.fills_discarded),
            ("stale_served", self.stale_served),
            ("outdated_served", self.outdated_served),
            ("db_reads_saved", self.db_reads_saved()),
        ]
    }

    /// Adds every counter to the registry as `<prefix>.<name>` (call once, at the end of a run).
    pub fn publish(&self, registry: &mut Registry, prefix: &str) {
        for (name, v) in self.fields() {
            let id = registry.counter(&format!("{prefix}.{name}"));
            registry.add(id, v);
        }
    }
}
