//! [`L1Cache`]: the in-process cache of one API node. A pure struct (no events, no messages):
//! the node calls it while handling its own events.
//!
//! # Entries
//!
//! At most `capacity` entries, kept in an [`LruMap`] (fixed-hash index + intrusive recency list:
//! O(1) lookup, reordering and eviction; the index is never iterated). [`Eviction::Lru`] moves an entry
//! to the front on every hit (fresh, stale or negative); [`Eviction::Fifo`] only on insert, so
//! the oldest insertion is evicted. Entries past their hard TTL are dropped when looked up; a
//! full cache evicts by its policy without looking for expired entries first.
//!
//! # TTLs and jitter
//!
//! A value inserted at `t` is `Fresh` in `[t, t + soft)`, `Stale` in `[t + soft, t + hard)` and
//! gone from `t + hard` on; a negative entry is a `NegativeHit` in `[t, t + negative)`. With
//! `ttl_jitter = j > 0`, each insert draws one factor `f = 1 + j·(2u − 1)`, `u` uniform in
//! `[0, 1)` from the cache's own [`SimRng`], so `f ∈ [1 − j, 1 + j)`, and scales the soft and
//! hard TTLs (or the negative TTL) by it, rounding to the nearest nanosecond. One factor for both
//! keeps `soft ≤ hard`. Jitter spreads the expiries of entries filled together (after a cold start
//! or a flush), so they do not all expire, and go to the database, at once. With `j = 0` no
//! number is drawn and the TTLs are exact. `SimDuration::MAX` means "never", and is not
//! jittered.
//!
//! # Single-flight
//!
//! [`L1Cache::begin_fill`] makes the first request that misses on a key the `Leader` of a flight
//! and parks later ones as `Follower`s, in arrival order, up to `max_waiters` per key; one more
//! gets `Overflow` and fetches on its own (so a hot key degrades to uncoalesced reads rather than
//! to an unbounded list; the default bound, 1,000, is above any node's worker count, so it is a
//! safety bound that a correctly sized node never reaches). `max_waiters = 0` turns coalescing
//! off. The leader itself is not stored: [`L1Cache::end_fill`] returns the followers only. The
//! number of flights is bounded by the node's in-flight requests (one flight needs a leader).
//!
//! An invalidation or flush that arrives while a key's flight is out marks the flight; then
//! [`L1Cache::complete_fill`] answers its followers but does not cache the value, which may have
//! been read before the write that caused the invalidation.

use super::{CacheConfigError, CacheStats, Cached, Fill, IndexKey, L1Invalidation, Lookup, LruMap};
use crate::kernel::{FixMap, Handle, SimDuration, SimRng, SimTime};
use crate::metrics::LatencyHistogram;

/// Which entry a full cache evicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// The least recently used (inserted or hit).
    Lru,
    /// The least recently inserted.
    Fifo,
}

/// A validated L1 configuration (see [`L1ConfigBuilder`]).
#[derive(Clone, Debug, PartialEq)]
pub struct L1Config {
    capacity: u32,
    soft_ttl: SimDuration,
    hard_ttl: SimDuration,
    negative_ttl: SimDuration,
    ttl_jitter: f64,
    eviction: Eviction,
    max_waiters: u32,
}

impl L1Config {
    pub fn builder() -> L1ConfigBuilder {
        L1ConfigBuilder::new()
    }
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    pub fn soft_ttl(&self) -> SimDuration {
        self.soft_ttl
    }
    pub fn hard_ttl(&self) -> SimDuration {
        self.hard_ttl
    }
    pub fn negative_ttl(&self) -> SimDuration {
        self.negative_ttl
    }
    pub fn ttl_jitter(&self) -> f64 {
        self.ttl_jitter
    }
    pub fn eviction(&self) -> Eviction {
        self.eviction
    }
    /// Followers parked per key at most (see the module documentation).
    pub fn max_waiters(&self) -> u32 {
        self.max_waiters
    }
}

/// Builds an [`L1Config`]; every field starts at a documented *(assumed)* default.
#[derive(Clone, Debug)]
pub struct L1ConfigBuilder(L1Config);

impl Default for L1ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl L1ConfigBuilder {
    /// Defaults *(assumed)*: 10,000 entries, LRU, soft TTL 1 s, hard TTL 30 s, negative TTL
    /// 500 ms, ±10% TTL jitter, at most 1,000 followers per key.
    pub fn new() -> L1ConfigBuilder {
        L1ConfigBuilder(L1Config {
            capacity: 10_000,
            soft_ttl: SimDuration::SECOND,
            hard_ttl: SimDuration::from_secs(30),
            negative_ttl: SimDuration::from_ms(500),
            ttl_jitter: 0.1,
            eviction: Eviction::Lru,
            max_waiters: 1_000,
        })
    }
    pub fn capacity(mut self, entries: u32) -> Self {
        self.0.capacity = entries;
        self
    }
    /// Soft and hard TTL of values (`SimDuration::MAX`: never).
    pub fn ttl(mut self, soft: SimDuration, hard: SimDuration) -> Self {
        self.0.soft_ttl = soft;
        self.0.hard_ttl = hard;
        self
    }
    /// TTL of remembered "not found" answers.
    pub fn negative_ttl(mut self, ttl: SimDuration) -> Self {
        self.0.negative_ttl = ttl;
        self
    }
    /// The jitter fraction `j` in [0, 1): TTLs are scaled by a factor in `[1 − j, 1 + j)`.
    pub fn ttl_jitter(mut self, j: f64) -> Self {
        self.0.ttl_jitter = j;
        self
    }
    pub fn eviction(mut self, e: Eviction) -> Self {
        self.0.eviction = e;
        self
    }
    /// Followers parked per key at most; 0 turns coalescing off.
    pub fn max_waiters(mut self, n: u32) -> Self {
        self.0.max_waiters = n;
        self
    }
    pub fn build(self) -> Result<L1Config, CacheConfigError> {
        let c = self.0;
        if c.capacity == 0 {
            return Err(CacheConfigError::Zero { field: "capacity" });
        }
        if c.capacity == u32::MAX {
            return Err(CacheConfigError::Capacity(u64::from(c.capacity)));
        }
        if c.soft_ttl > c.hard_ttl {
            return Err(CacheConfigError::SoftAfterHard {
                soft: c.soft_ttl.to_string(),
                hard: c.hard_ttl.to_string(),
            });
        }
        if !(0.0..1.0).contains(&c.ttl_jitter) {
            return Err(CacheConfigError::Jitter(c.ttl_jitter));
        }
        Ok(c)
    }
}

/// One cached entry with its expiry instants.
#[derive(Clone, Copy, Debug)]
struct Entry<V> {
    value: Cached<V>,
    soft_at: SimTime,
    hard_at: SimTime,
}

/// A fetch in flight: the parked followers, and whether the key was invalidated meanwhile.
#[derive(Clone, Debug)]
struct Flight<W> {
    waiters: Vec<W>,
    invalidated: bool,
}

/// The L1 cache of one node, keyed by `K`, caching `V`, parking waiters of type `W` (the node's
/// request handle by default). See the module documentation.
#[derive(Clone, Debug)]
pub struct L1Cache<K, V, W = Handle> {
    cfg: L1Config,
    rng: SimRng,
    map: LruMap<K, Entry<V>>,
    /// Never iterated in order (a flush marks every flight): a fixed-hash map.
    flights: FixMap<K, Flight<W>>,
    stats: CacheStats,
    lag: LatencyHistogram,
}

impl<K: Ord + IndexKey, V: Copy, W> L1Cache<K, V, W> {
    /// An empty cache; `rng` is used for TTL jitter only.
    pub fn new(cfg: L1Config, rng: SimRng) -> L1Cache<K, V, W> {
        L1Cache {
            map: LruMap::new(cfg.capacity as usize),
            cfg,
            rng,
            flights: FixMap::new(),
            stats: CacheStats::default(),
            lag: LatencyHistogram::new(),
        }
    }

    pub fn config(&self) -> &L1Config {
        &self.cfg
    }
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }
    /// Entries held (some may be past their hard TTL, not yet looked up).
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Keys from the most to the least recently used (the last is the next victim).
    pub fn keys_by_recency(&self) -> impl Iterator<Item = K> + '_ {
        self.map.iter().map(|(k, _)| k)
    }
    /// The soft and hard expiry instants of `key`'s entry (equal for a negative entry).
    pub fn expiry(&self, key: K) -> Option<(SimTime, SimTime)> {
        self.map.peek(&key).map(|e| (e.soft_at, e.hard_at))
    }
    /// Keys with a fetch in flight.
    pub fn fills_in_flight(&self) -> usize {
        self.flights.len()
    }
    /// Followers parked on `key`'s flight (`None`: no flight).
    pub fn waiters(&self, key: K) -> Option<usize> {
        self.flights.get(&key).map(|f| f.waiters.len())
    }
    /// Delay from each write to the arrival of its invalidation here (what
    /// [`L1Cache::on_invalidation`] saw): the window in which this node could serve the
    /// pre-write value.
    pub fn invalidation_lag(&self) -> &LatencyHistogram {
        &self.lag
    }

    /// Looks `key` up at `now`, counts the outcome, drops the entry if past its hard TTL, and
    /// (LRU) moves a found entry to the front.
    pub fn get(&mut self, now: SimTime, key: K) -> Lookup<V> {
        let Some(slot) = self.map.find(&key) else {
            self.stats.misses += 1;
            return Lookup::Miss;
        };
        let e = *self.map.entry(slot).1;
        if now >= e.hard_at {
            self.map.remove_slot(slot);
            self.stats.expirations += 1;
            self.stats.misses += 1;
            return Lookup::Miss;
        }
        if self.cfg.eviction == Eviction::Lru {
            self.map.touch_slot(slot);
        }
        match e.value {
            Cached::Negative => {
                self.stats.negative_hits += 1;
                Lookup::NegativeHit
            }
            Cached::Value(v) if now < e.soft_at => {
                self.stats.hits_fresh += 1;
                Lookup::Fresh(v)
            }
            Cached::Value(v) => {
                self.stats.hits_stale += 1;
                Lookup::Stale(v)
            }
        }
    }

    /// What [`L1Cache::get`] would answer, without counting, reordering or dropping anything.
    pub fn peek(&self, now: SimTime, key: K) -> Lookup<V> {
        match self.map.peek(&key) {
            None => Lookup::Miss,
            Some(e) if now >= e.hard_at => Lookup::Miss,
            Some(e) => match e.value {
                Cached::Negative => Lookup::NegativeHit,
                Cached::Value(v) if now < e.soft_at => Lookup::Fresh(v),
                Cached::Value(v) => Lookup::Stale(v),
            },
        }
    }

    /// The fallback when a refresh failed: `key`'s value if one is held before its hard TTL,
    /// counted in `stale_served`. Call once per request answered with it (leader and followers).
    pub fn serve_stale(&mut self, now: SimTime, key: K) -> Option<V> {
        let v = self
            .map
            .peek(&key)
            .filter(|e| now < e.hard_at)
            .and_then(|e| e.value.value())?;
        self.stats.stale_served += 1;
        Some(v)
    }

    /// Caches `value` for `key` from `now` (replacing any entry; TTLs as in the module
    /// documentation). Returns the key evicted to make room, if any.
    pub fn insert(&mut self, now: SimTime, key: K, value: Cached<V>) -> Option<K> {
        let j = self.cfg.ttl_jitter;
        let factor = if j > 0.0 {
            1.0 + j * (2.0 * self.rng.unit() - 1.0)
        } else {
            1.0
        };
        let (soft, hard) = match value {
            Cached::Value(_) => (
                scale(self.cfg.soft_ttl, factor),
                scale(self.cfg.hard_ttl, factor),
            ),
            Cached::Negative => {
                let t = scale(self.cfg.negative_ttl, factor);
                (t, t)
            }
        };
        let entry = Entry {
            value,
            soft_at: now.saturating_add(soft),
            hard_at: now.saturating_add(hard),
        };
        self.stats.inserts += 1;
        let evicted = self.map.insert(key, entry).map(|(k, _)| k);
        if evicted.is_some() {
            self.stats.evictions += 1;
        }
        evicted
    }

    /// Drops `key`'s entry (counted in `invalidations` if there was one) and marks a flight of
    /// `key` so its fill is not cached. Returns whether an entry was dropped. Always inlined: a
    /// run's invalidation calls it once per key, mostly for keys the cache does not hold, and
    /// the call's own cost (saving and restoring registers) was a fifth of such a call.
    #[inline(always)]
    pub fn invalidate(&mut self, key: K) -> bool {
        if let Some(f) = self.flights.get_mut(&key) {
            f.invalidated = true;
        }
        let removed = self.map.discard(&key);
        if removed {
            self.stats.invalidations += 1;
        }
        removed
    }

    /// Applies an invalidation broadcast arriving at `now`: records its lag since the write
    /// and invalidates its key.
    pub fn on_invalidation(&mut self, now: SimTime, inv: L1Invalidation<K>) -> bool {
        self.lag
            .record(now.saturating_since(inv.written_at).as_ns());
        self.invalidate(inv.key)
    }

    /// Drops every entry (a cold cache, counted in `flushed`) and marks every flight in progress.
    /// Returns how many entries were dropped.
    pub fn flush(&mut self) -> usize {
        self.flights.for_each_value_mut(|f| f.invalidated = true);
        let n = self.map.clear();
        self.stats.flushed += n as u64;
        n
    }

    /// A restart of the owning process (a node crash): every entry is dropped (counted in
    /// `flushed`) and every flight forgotten with its followers, whose requests died with the
    /// process. The statistics are kept.
    pub fn restart(&mut self) {
        self.flights.clear();
        let n = self.map.clear();
        self.stats.flushed += n as u64;
    }

    /// Counts one answer that the owner found outdated against the source of truth.
    pub fn record_outdated_read(&mut self) {
        self.stats.outdated_served += 1;
    }

    /// Joins or starts the flight of `key` (see [`Fill`] and the module documentation).
    /// `waiter` is parked for a `Follower` and dropped otherwise.
    pub fn begin_fill(&mut self, key: K, waiter: W) -> Fill {
        match self.flights.get_mut(&key) {
            None => {
                self.flights.insert(
                    key,
                    Flight {
                        waiters: Vec::new(),
                        invalidated: false,
                    },
                );
                Fill::Leader
            }
            Some(f) => {
                if f.waiters.len() >= self.cfg.max_waiters as usize {
                    self.stats.coalesce_overflows += 1;
                    Fill::Overflow
                } else {
                    f.waiters.push(waiter);
                    self.stats.coalesced += 1;
                    Fill::Follower
                }
            }
        }
    }

    /// Ends `key`'s flight without caching anything (the fetch failed) and returns its
    /// followers in arrival order (empty if there was no flight).
    pub fn end_fill(&mut self, key: K) -> Vec<W> {
        self.flights
            .remove(&key)
            .map_or_else(Vec::new, |f| f.waiters)
    }

    /// Ends `key`'s flight with the fetched `value`: caches it unless the key was invalidated or
    /// flushed during the flight (then counted in `fills_discarded`), and returns the followers
    /// in arrival order.
    pub fn complete_fill(&mut self, now: SimTime, key: K, value: Cached<V>) -> Vec<W> {
        let flight = self.flights.remove(&key);
        if flight.as_ref().is_some_and(|f| f.invalidated) {
            self.stats.fills_discarded += 1;
        } else {
            self.insert(now, key, value);
        }
        flight.map_or_else(Vec::new, |f| f.waiters)
    }
}

/// `ttl × factor`, rounded to the nearest nanosecond; `MAX` (never) stays `MAX`.
fn scale(ttl: SimDuration, factor: f64) -> SimDuration {
    if ttl == SimDuration::MAX || factor == 1.0 {
        return ttl;
    }
    // Below 2^63 the signed conversions give exactly the values of the unsigned ones, and cost
    // one instruction each where the unsigned ones take a branchy sequence: every TTL under
    // 292 years takes this path.
    if let Ok(ns) = i64::try_from(ttl.as_ns()) {
        let x = ns as f64 * factor;
        // 2^63 exactly; the largest double below it is 2^63 − 1024, so `t + 1` cannot overflow.
        if x < i64::MAX as f64 {
            // x ≥ 0 (factor > 0): truncate, then round half up.
            let t = x as i64;
            let rounded = if x - t as f64 >= 0.5 { t + 1 } else { t };
            return SimDuration::from_ns(rounded as u64);
        }
    }
    let x = ttl.as_ns() as f64 * factor;
    if x >= u64::MAX as f64 {
        return SimDuration::MAX;
    }
    // x ≥ 0 (factor > 0): truncate, then round half up.
    let t = x as u64;
    SimDuration::from_ns(if x - t as f64 >= 0.5 { t + 1 } else { t })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Dist, RootSeed};

    fn ms(n: u64) -> SimTime {
        SimTime::ZERO + SimDuration::from_ms(n)
    }

    fn cache(cfg: L1ConfigBuilder) -> L1Cache<u64, u64, u32> {
        L1Cache::new(cfg.build().unwrap(), RootSeed::new(1).fork("l1"))
    }

    fn never() -> L1ConfigBuilder {
        L1Config::builder()
            .ttl(SimDuration::MAX, SimDuration::MAX)
            .ttl_jitter(0.0)
    }

    #[test]
    fn lru_evicts_exactly_the_least_recently_used() {
        let mut c = cache(never().capacity(3));
        let t = SimTime::ZERO;
        for k in [1, 2, 3] {
            assert_eq!(c.insert(t, k, Cached::Value(k * 10)), None);
        }
        assert_eq!(c.get(t, 1), Lookup::Fresh(10));
        assert_eq!(c.insert(t, 4, Cached::Value(40)), Some(2));
        assert_eq!(c.get(t, 3), Lookup::Fresh(30));
        assert_eq!(c.insert(t, 5, Cached::Value(50)), Some(1));
        assert_eq!(c.keys_by_recency().collect::<Vec<_>>(), [5, 3, 4]);
        assert_eq!(c.get(t, 2), Lookup::Miss);
        assert_eq!(c.get(t, 1), Lookup::Miss);
        assert_eq!(c.get(t, 4), Lookup::Fresh(40)); // [4, 5, 3]
        assert_eq!(c.insert(t, 6, Cached::Negative), Some(3)); // [6, 4, 5]
        assert_eq!(c.get(t, 5), Lookup::Fresh(50)); // [5, 6, 4]
        // A negative hit is a use too.
        assert_eq!(c.get(t, 6), Lookup::NegativeHit); // [6, 5, 4]
        assert_eq!(c.insert(t, 7, Cached::Value(70)), Some(4));
        assert_eq!(c.keys_by_recency().collect::<Vec<_>>(), [7, 6, 5]);
        let s = c.stats();
        assert_eq!(
            (
                s.evictions,
                s.inserts,
                s.hits_fresh,
                s.negative_hits,
                s.misses
            ),
            (4, 7, 4, 1, 2)
        );
    }

    #[test]
    fn fifo_ignores_hits() {
        let mut c = cache(never().capacity(3).eviction(Eviction::Fifo));
        let t = SimTime::ZERO;
        for k in [1, 2, 3] {
            c.insert(t, k, Cached::Value(k));
        }
        assert_eq!(c.get(t, 1), Lookup::Fresh(1));
        assert_eq!(c.insert(t, 4, Cached::Value(4)), Some(1));
        assert_eq!(c.insert(t, 5, Cached::Value(5)), Some(2));
    }

    #[test]
    fn soft_and_hard_ttl_boundaries_are_exact_without_jitter() {
        let mut c = cache(
            L1Config::builder()
                .ttl(SimDuration::from_ms(100), SimDuration::SECOND)
                .ttl_jitter(0.0),
        );
        let t0 = ms(10);
        c.insert(t0, 7, Cached::Value(70));
        assert_eq!(c.expiry(7), Some((ms(110), ms(1_010))));
        let ns = |t: SimTime, d: i64| SimTime::from_ns(t.as_ns().saturating_add_signed(d));
        assert_eq!(c.get(t0, 7), Lookup::Fresh(70));
        assert_eq!(c.get(ns(ms(110), -1), 7), Lookup::Fresh(70));
        assert_eq!(c.get(ms(110), 7), Lookup::Stale(70));
        assert_eq!(c.get(ns(ms(1_010), -1), 7), Lookup::Stale(70));
        assert_eq!(c.peek(ms(1_010), 7), Lookup::Miss);
        assert_eq!(c.len(), 1, "peek drops nothing");
        assert_eq!(c.get(ms(1_010), 7), Lookup::Miss);
        assert_eq!(c.len(), 0, "the expired entry was dropped");
        let s = *c.stats();
        assert_eq!(
            (s.hits_fresh, s.hits_stale, s.misses, s.expirations),
            (2, 2, 1, 1)
        );
        assert_eq!(s.hit_ratio(), Some(0.4));
        assert_eq!(s.db_reads_saved(), 2);
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_spreads_expiries() {
        let j = 0.2;
        let mut c = cache(
            L1Config::builder()
                .capacity(20_000)
                .ttl(SimDuration::from_ms(100), SimDuration::SECOND)
                .negative_ttl(SimDuration::from_ms(50))
                .ttl_jitter(j),
        );
        let n = 10_000u64;
        let (mut lo, mut hi, mut sum) = (u64::MAX, 0u64, 0u128);
        for k in 0..n {
            c.insert(SimTime::ZERO, k, Cached::Value(k));
            let (soft, hard) = c.expiry(k).unwrap();
            let (s, h) = (soft.as_ns(), hard.as_ns());
            assert!((80_000_000..120_000_000).contains(&s), "soft {s}");
            assert!((800_000_000..1_200_000_000).contains(&h), "hard {h}");
            // One factor for both: hard = 10 × soft within rounding.
            assert!((h as i64 - 10 * s as i64).abs() <= 10, "{s} {h}");
            lo = lo.min(s);
            hi = hi.max(s);
            sum += u128::from(s);
        }
        assert!(lo < 80_100_000 && hi > 119_900_000, "spread {lo}..{hi}");
        let mean = sum as f64 / n as f64;
        // Uniform factor: sd of the mean = 40ms / sqrt(12 n) ≈ 0.115 ms; allow 5 sd.
        assert!((mean - 100e6).abs() < 0.6e6, "mean {mean}");
        for k in n..n + 1_000 {
            c.insert(SimTime::ZERO, k, Cached::Negative);
            let (soft, hard) = c.expiry(k).unwrap();
            assert_eq!(soft, hard);
            assert!((40_000_000..60_000_000).contains(&soft.as_ns()));
        }
        // Never stays never.
        let mut inf = cache(never().ttl_jitter(0.5));
        inf.insert(SimTime::ZERO, 1, Cached::Value(1));
        assert_eq!(inf.expiry(1), Some((SimTime::MAX, SimTime::MAX)));
    }

    #[test]
    fn negative_entries_have_their_own_ttl() {
        let mut c = cache(
            L1Config::builder()
                .ttl(SimDuration::SECOND, SimDuration::from_secs(10))
                .negative_ttl(SimDuration::from_ms(50))
                .ttl_jitter(0.0),
        );
        c.insert(SimTime::ZERO, 9, Cached::Negative);
        assert_eq!(c.get(ms(0), 9), Lookup::NegativeHit);
        assert_eq!(c.get(SimTime::from_ns(49_999_999), 9), Lookup::NegativeHit);
        assert_eq!(c.serve_stale(ms(1), 9), None, "no value to fall back on");
        assert_eq!(c.get(ms(50), 9), Lookup::Miss);
        let s = *c.stats();
        assert_eq!((s.negative_hits, s.misses, s.expirations), (2, 1, 1));
        assert_eq!(s.db_reads_saved(), 2);
        assert_eq!(s.hit_ratio(), Some(2.0 / 3.0));
    }

    #[test]
    fn stale_values_are_served_only_before_the_hard_ttl() {
        let mut c = cache(
            L1Config::builder()
                .ttl(SimDuration::from_ms(10), SimDuration::from_ms(100))
                .ttl_jitter(0.0),
        );
        c.insert(SimTime::ZERO, 1, Cached::Value(11));
        assert_eq!(c.serve_stale(ms(50), 1), Some(11));
        assert_eq!(c.serve_stale(ms(99), 1), Some(11));
        assert_eq!(c.serve_stale(ms(100), 1), None);
        assert_eq!(c.serve_stale(ms(1), 2), None);
        assert_eq!(c.stats().stale_served, 2);
    }

    #[test]
    fn single_flight_has_one_leader_and_returns_the_followers_in_order() {
        let mut c = cache(never().max_waiters(100));
        let n = 10u32;
        let fills: Vec<Fill> = (0..n).map(|w| c.begin_fill(5, w)).collect();
        assert_eq!(fills[0], Fill::Leader);
        assert!(fills[1..].iter().all(|f| *f == Fill::Follower));
        assert_eq!(c.waiters(5), Some(9));
        assert_eq!(c.begin_fill(6, 99), Fill::Leader, "flights are per key");
        assert_eq!(c.fills_in_flight(), 2);
        let followers = c.complete_fill(ms(1), 5, Cached::Value(55));
        assert_eq!(followers, (1..n).collect::<Vec<_>>());
        assert_eq!(c.get(ms(1), 5), Lookup::Fresh(55));
        assert_eq!(c.end_fill(6), Vec::<u32>::new());
        assert_eq!(c.end_fill(6), Vec::<u32>::new(), "no flight left");
        assert_eq!(c.begin_fill(5, 0), Fill::Leader, "a new flight");
        let s = *c.stats();
        assert_eq!(s.coalesced, 9);
        assert_eq!(s.db_reads_saved(), 9 + 1);
    }

    #[test]
    fn the_waiter_list_is_bounded() {
        let mut c = cache(never().max_waiters(2));
        assert_eq!(c.begin_fill(1, 0), Fill::Leader);
        assert_eq!(c.begin_fill(1, 1), Fill::Follower);
        assert_eq!(c.begin_fill(1, 2), Fill::Follower);
        assert_eq!(c.begin_fill(1, 3), Fill::Overflow);
        assert_eq!(c.end_fill(1), vec![1, 2]);
        assert_eq!(c.stats().coalesce_overflows, 1);
        let mut off = cache(never().max_waiters(0));
        assert_eq!(off.begin_fill(1, 0), Fill::Leader);
        assert_eq!(off.begin_fill(1, 1), Fill::Overflow);
    }

    #[test]
    fn an_invalidation_during_a_flight_discards_its_fill() {
        let mut c = cache(never());
        c.insert(ms(0), 1, Cached::Value(1));
        assert_eq!(c.begin_fill(1, 0), Fill::Leader);
        assert_eq!(c.begin_fill(1, 1), Fill::Follower);
        let inv = L1Invalidation {
            key: 1,
            written_at: ms(3),
            count: 1,
        };
        assert!(c.on_invalidation(ms(8), inv));
        assert_eq!(c.invalidation_lag().max_ns(), Some(5_000_000));
        assert_eq!(c.complete_fill(ms(9), 1, Cached::Value(0)), vec![1]);
        assert_eq!(
            c.get(ms(9), 1),
            Lookup::Miss,
            "the old value was not cached"
        );
        assert!(!c.invalidate(1));
        // The same after a flush.
        assert_eq!(c.begin_fill(2, 0), Fill::Leader);
        c.insert(ms(9), 3, Cached::Value(3));
        assert_eq!(c.flush(), 1);
        c.complete_fill(ms(10), 2, Cached::Value(2));
        assert!(c.is_empty());
        let s = *c.stats();
        assert_eq!((s.invalidations, s.fills_discarded, s.flushed), (1, 2, 1));
    }

    #[test]
    fn a_restart_drops_entries_and_flights() {
        let mut c = cache(never());
        c.insert(ms(0), 1, Cached::Value(10));
        assert_eq!(c.begin_fill(2, 7), Fill::Leader);
        assert_eq!(c.begin_fill(2, 8), Fill::Follower);
        c.restart();
        assert!(c.is_empty());
        assert_eq!(c.fills_in_flight(), 0);
        assert_eq!(c.stats().flushed, 1);
        // A new request on the key leads a new flight instead of waiting for a dead leader.
        assert_eq!(c.begin_fill(2, 9), Fill::Leader);
        assert!(c.complete_fill(ms(1), 2, Cached::Value(20)).is_empty());
    }

    #[test]
    fn config_is_validated() {
        let e = |b: L1ConfigBuilder| b.build().unwrap_err();
        assert_eq!(
            e(L1Config::builder().capacity(0)),
            CacheConfigError::Zero { field: "capacity" }
        );
        assert!(matches!(
            e(L1Config::builder().ttl(SimDuration::SECOND, SimDuration::from_ms(1))),
            CacheConfigError::SoftAfterHard { .. }
        ));
        assert!(matches!(
            e(L1Config::builder().ttl_jitter(1.0)),
            CacheConfigError::Jitter(_)
        ));
        assert!(matches!(
            e(L1Config::builder().ttl_jitter(f64::NAN)),
            CacheConfigError::Jitter(_)
        ));
        assert!(L1Config::builder().build().is_ok());
    }

    /// Zipf(s) probabilities of ranks 1..=n.
    fn zipf_probabilities(n: usize, s: f64) -> Vec<f64> {
        let w: Vec<f64> = (1..=n).map(|k| libm::pow(k as f64, -s)).collect();
        let total: f64 = w.iter().sum();
        w.into_iter().map(|x| x / total).collect()
    }

    /// Solves `occupancy(T) = c` for the characteristic time T by bisection (occupancy is
    /// increasing in T) and returns the hit ratio `Σ p_i · h_i(T)`.
    fn characteristic_time_hit_ratio(p: &[f64], c: f64, h: impl Fn(f64, f64) -> f64) -> f64 {
        let occupancy = |t: f64| p.iter().map(|&pi| h(pi, t)).sum::<f64>();
        let (mut lo, mut hi) = (0.0, 1.0);
        while occupancy(hi) < c {
            hi *= 2.0;
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if occupancy(mid) < c {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let t = 0.5 * (lo + hi);
        p.iter().map(|&pi| pi * h(pi, t)).sum()
    }

    /// Hit ratio of an independent-reference Zipf stream through a cache of `capacity` with
    /// infinite TTL, measured after a warm-up.
    fn simulated_hit_ratio(eviction: Eviction, capacity: u32, n: u64, seed: u64) -> f64 {
        let mut c: L1Cache<u64, u64, ()> = L1Cache::new(
            never()
                .capacity(capacity)
                .eviction(eviction)
                .build()
                .unwrap(),
            RootSeed::new(seed).fork("l1"),
        );
        let zipf = Dist::zipf(n, 1.0).unwrap();
        let mut rng = RootSeed::new(seed).fork("keys");
        let t = SimTime::ZERO;
        let (warmup, measured) = (100_000, 1_000_000);
        let mut hits = 0u64;
        for i in 0..warmup + measured {
            let k = zipf.sample(&mut rng) as u64;
            match c.get(t, k) {
                Lookup::Fresh(_) => hits += u64::from(i >= warmup),
                _ => {
                    c.insert(t, k, Cached::Value(k));
                }
            }
        }
        hits as f64 / measured as f64
    }

    /// LRU under the independent reference model: Che's approximation, `h_i = 1 − e^{−p_i T}`.
    #[test]
    fn lru_hit_ratio_of_a_zipf_stream_matches_the_che_approximation() {
        let n = 1_000;
        let p = zipf_probabilities(n, 1.0);
        for capacity in [10u32, 100, 300] {
            let che = characteristic_time_hit_ratio(&p, f64::from(capacity), |pi, t| {
                1.0 - libm::exp(-pi * t)
            });
            let top_c: f64 = p[..capacity as usize].iter().sum();
            let sim = simulated_hit_ratio(Eviction::Lru, capacity, n as u64, 11);
            assert!(
                (sim - che).abs() < 0.01,
                "C={capacity}: simulated {sim:.4}, Che {che:.4}"
            );
            assert!(sim < top_c, "LRU stays below the top-C bound {top_c:.4}");
        }
    }

    /// FIFO under the independent reference model: `h_i = p_i T / (1 + p_i T)` (the same hit
    /// ratio as random replacement), below LRU's.
    #[test]
    fn fifo_hit_ratio_of_a_zipf_stream_matches_its_approximation() {
        let n = 1_000;
        let p = zipf_probabilities(n, 1.0);
        for capacity in [10u32, 100, 300] {
            let approx = characteristic_time_hit_ratio(&p, f64::from(capacity), |pi, t| {
                pi * t / (1.0 + pi * t)
            });
            let sim = simulated_hit_ratio(Eviction::Fifo, capacity, n as u64, 12);
            assert!(
                (sim - approx).abs() < 0.01,
                "C={capacity}: simulated {sim:.4}, approximation {approx:.4}"
            );
            let lru = simulated_hit_ratio(Eviction::Lru, capacity, n as u64, 12);
            assert!(sim < lru, "FIFO {sim:.4} below LRU {lru:.4}");
        }
    }
}
