//! [`IdempotencyStore`]: the records, their expiry index, and the check / reserve / complete
//! state machine. See the module docs of [`super`] for the semantics and the integration.

use super::IdemKey;
use crate::api::types::{ErrorCode, InstanceIdRange, Status};
use crate::kernel::FixMap;
use crate::kernel::{SimDuration, SimTime};
use std::collections::BTreeMap;

/// How many expired records a [`IdempotencyStore::check`] removes from the front of the expiry
/// index besides its own key: more than the one record a check can add, so under steady load the
/// store sheds expired records without anyone calling [`IdempotencyStore::expire`].
const SWEEP_PER_CHECK: usize = 2;

/// The memoised result of a request made with a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded; `instances` is what RunInstances/CreateInstance created (`None` for
    /// Start/Stop/Reboot/Delete).
    Ok { instances: Option<InstanceIdRange> },
    /// The call failed with this code, and the failure stands for the token.
    Failed(ErrorCode),
}

impl Outcome {
    /// The status a replay answers with.
    pub const fn status(self) -> Status {
        match self {
            Outcome::Ok { .. } => Status::Ok,
            Outcome::Failed(code) => Status::Err(code),
        }
    }
    /// The instances a replay answers with.
    pub const fn instances(self) -> Option<InstanceIdRange> {
        match self {
            Outcome::Ok { instances } => instances,
            Outcome::Failed(_) => None,
        }
    }
    /// The outcome of a finished call, from its status and created instances.
    pub const fn from_status(status: Status, instances: Option<InstanceIdRange>) -> Outcome {
        match status {
            Status::Ok => Outcome::Ok { instances },
            Status::Err(code) => Outcome::Failed(code),
        }
    }
}

/// Proof that a [`Check`] let the caller run the mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    key: IdemKey,
    fp: u64,
    at: SimTime,
    duplicate: bool,
}

impl Reservation {
    pub const fn key(&self) -> IdemKey {
        self.key
    }
    /// The fingerprint the caller checked with (pass it to
    /// [`IdempotencyStore::record_in_progress`]).
    pub const fn fingerprint(&self) -> u64 {
        self.fp
    }
    /// When the check ran.
    pub const fn at(&self) -> SimTime {
        self.at
    }
    /// Whether another Proceed for the same key was still live when this one was given: the
    /// mutation this reservation runs is a duplicate side effect (only in [`Mode::NonAtomic`];
    /// counted in [`IdemStats::duplicates_detected`]). The wiring can count the duplicate
    /// instances it creates.
    pub const fn is_duplicate(&self) -> bool {
        self.duplicate
    }
}

/// What a request with a token must do, decided by [`IdempotencyStore::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// A new key: run the mutation, then [`IdempotencyStore::complete`] (or
    /// [`IdempotencyStore::abandon`]).
    Proceed(Reservation),
    /// Same token and parameters as a finished call: answer its outcome, change nothing.
    Replay(Outcome),
    /// Same token, different parameters: 400 `IdempotentParameterMismatch`.
    Mismatch,
    /// Same token and parameters as a call still running: 403 `LastTokenProcessing`.
    InProgress,
}

impl Check {
    /// The error a request answers with at once, if the check refuses it.
    pub const fn error_code(self) -> Option<ErrorCode> {
        match self {
            Check::Mismatch => Some(ErrorCode::IdempotentParameterMismatch),
            Check::InProgress => Some(ErrorCode::LastTokenProcessing),
            Check::Proceed(_) | Check::Replay(_) => None,
        }
    }
}

/// Whether checking and reserving a key is one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Check and reserve in one step (what a unique key in the mutation's DB transaction gives):
    /// a second request with the same key sees `InProgress`.
    Atomic,
    /// The classic bug: [`IdempotencyStore::check`] only reads, and the reservation is written
    /// later by [`IdempotencyStore::record_in_progress`]. In between, another request with the
    /// same key also sees "absent" and proceeds: a duplicate side effect.
    NonAtomic,
}

impl Mode {
    /// The `atomic = true|false` switch of a scenario.
    pub const fn from_atomic(atomic: bool) -> Mode {
        if atomic {
            Mode::Atomic
        } else {
            Mode::NonAtomic
        }
    }
}

/// Where the records live. The store behaves the same either way; the wiring uses it to decide
/// which component a check and a record write cost (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreKind {
    /// The database's idempotency table (the default): the record write can ride in the
    /// mutation's transaction.
    Db,
    /// The L2 cache: cheaper reads, but the record write is never in the mutation's transaction.
    L2Cache,
}

/// A validated store configuration (see [`IdemConfigBuilder`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdemConfig {
    ttl: SimDuration,
    capacity: u32,
    mode: Mode,
    store: StoreKind,
}

impl IdemConfig {
    /// The default TTL: 24 hours (ECS documents none; other clouds use 8–36 h).
    pub const DEFAULT_TTL: SimDuration = SimDuration::DAY;
    /// The default capacity *(assumed)*: 100,000 records, about 10 MB of simulator memory.
    pub const DEFAULT_CAPACITY: u32 = 100_000;

    pub fn builder() -> IdemConfigBuilder {
        IdemConfigBuilder(IdemConfig::default())
    }
    /// How long a record lives after its last write.
    pub const fn ttl(&self) -> SimDuration {
        self.ttl
    }
    /// The most records held at once (reserved, in progress and completed together).
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }
    pub const fn mode(&self) -> Mode {
        self.mode
    }
    pub const fn store(&self) -> StoreKind {
        self.store
    }
    /// The same configuration in another mode (planting the check-then-write bug).
    pub const fn with_mode(mut self, mode: Mode) -> IdemConfig {
        self.mode = mode;
        self
    }
}

impl Default for IdemConfig {
    /// 24 h TTL, 100,000 records, atomic, in the database.
    fn default() -> IdemConfig {
        IdemConfig {
            ttl: IdemConfig::DEFAULT_TTL,
            capacity: IdemConfig::DEFAULT_CAPACITY,
            mode: Mode::Atomic,
            store: StoreKind::Db,
        }
    }
}

/// Why a store configuration is not valid; each variant says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdemConfigError {
    #[error("`ttl` must be longer than 0 (e.g. \"24h\")")]
    ZeroTtl,
    #[error("`capacity` must be at least 1 record")]
    ZeroCapacity,
}

/// Builds an [`IdemConfig`] from the defaults.
#[derive(Clone, Copy, Debug)]
pub struct IdemConfigBuilder(IdemConfig);

impl IdemConfigBuilder {
    pub fn ttl(mut self, ttl: SimDuration) -> Self {
        self.0.ttl = ttl;
        self
    }
    pub fn capacity(mut self, records: u32) -> Self {
        self.0.capacity = records;
        self
    }
    pub fn mode(mut self, mode: Mode) -> Self {
        self.0.mode = mode;
        self
    }
    pub fn store(mut self, store: StoreKind) -> Self {
        self.0.store = store;
        self
    }
    pub fn build(self) -> Result<IdemConfig, IdemConfigError> {
        if self.0.ttl.is_zero() {
            return Err(IdemConfigError::ZeroTtl);
        }
        if self.0.capacity == 0 {
            return Err(IdemConfigError::ZeroCapacity);
        }
        Ok(self.0)
    }
}

/// Counters of a store. All are totals since creation except `live` and `peak_live`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdemStats {
    /// Calls of [`IdempotencyStore::check`].
    pub checks: u64,
    /// Checks answered [`Check::Proceed`] (duplicates included).
    pub proceeds: u64,
    /// Checks answered [`Check::Replay`].
    pub replays: u64,
    /// Checks answered [`Check::Mismatch`].
    pub mismatches: u64,
    /// Checks answered [`Check::InProgress`].
    pub in_progress_hits: u64,
    /// Records dropped because their TTL ran out.
    pub expirations: u64,
    /// Records dropped to make room at capacity (oldest-expiring first).
    pub evictions: u64,
    /// Of `evictions`, records not yet completed: a retry of such a key proceeds again, so each
    /// one is a lost guarantee (raise the capacity if this is not 0).
    pub evicted_in_progress: u64,
    /// Records held now (reserved, in progress and completed).
    pub live: u64,
    /// The most records held at once.
    pub peak_live: u64,
    /// Proceeds given while another Proceed for the same key was still live (reserved, not yet
    /// written): each is a duplicate side effect. Only possible in [`Mode::NonAtomic`].
    pub duplicates_detected: u64,
    /// Calls of [`IdempotencyStore::record_in_progress`].
    pub late_writes: u64,
    /// Records moved to completed by [`IdempotencyStore::complete`].
    pub completions: u64,
    /// Of `completions`, failures memoised.
    pub failures_memoised: u64,
    /// Completions for a key with no record (expired, evicted or abandoned meanwhile): ignored.
    pub stale_completions: u64,
    /// Unfinished records removed by [`IdempotencyStore::abandon`].
    pub abandoned: u64,
    /// Records lost all at once by [`IdempotencyStore::clear`] (a flushed or restarted cache
    /// holding the store): a retry of any of them proceeds again.
    pub lost: u64,
    /// Of `expirations`: records judged expired by a caller whose clock runs ahead
    /// ([`IdempotencyStore::check_by`]) while the store's true clock still had them live.
    pub expired_early: u64,
}

/// The state of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordState {
    /// Proceeded but not yet written ([`Mode::NonAtomic`] only): invisible to checks, kept so the
    /// store can tell a duplicate Proceed.
    Reserved,
    /// Written, the call still running.
    InProgress,
    /// The call finished with this outcome.
    Completed(Outcome),
}

/// A record as [`IdempotencyStore::lookup`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView {
    pub fingerprint: u64,
    pub state: RecordState,
    /// The first instant the record is gone (it lives while `now < expires_at`).
    pub expires_at: SimTime,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    fp: u64,
    state: RecordState,
    /// This record's key in the expiry index: (expires_at, write sequence).
    expiry: (SimTime, u64),
}

/// The idempotency records of one store (one per control plane, or per shard: the wiring
/// decides). Pure and sans-IO: time comes in as arguments, nothing is scheduled.
#[derive(Clone, Debug)]
pub struct IdempotencyStore {
    cfg: IdemConfig,
    /// Never iterated (expiry order is `expiry`'s): a fixed-hash map.
    records: FixMap<IdemKey, Record>,
    /// (expires_at, write sequence) → key: the front is the next record to expire or evict.
    expiry: BTreeMap<(SimTime, u64), IdemKey>,
    seq: u64,
    stats: IdemStats,
}

impl IdempotencyStore {
    pub fn new(cfg: IdemConfig) -> IdempotencyStore {
        IdempotencyStore {
            cfg,
            records: FixMap::new(),
            expiry: BTreeMap::new(),
            seq: 0,
            stats: IdemStats::default(),
        }
    }

    pub fn config(&self) -> &IdemConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &IdemStats {
        &self.stats
    }

    /// Records held now (the same as `stats().live`).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record of `key` as of `now` (`None` if absent or expired at `now`).
    pub fn lookup(&self, now: SimTime, key: IdemKey) -> Option<RecordView> {
        self.records
            .get(&key)
            .filter(|r| now < r.expiry.0)
            .map(|r| RecordView {
                fingerprint: r.fp,
                state: r.state,
                expires_at: r.expiry.0,
            })
    }

    /// Decides what a request with `key` and parameter fingerprint `fp` does (see [`Check`]).
    ///
    /// A record whose parameters differ answers `Mismatch` whatever its state (a 400 is a client
    /// error that no wait would fix). In [`Mode::Atomic`] a `Proceed` also writes the reservation
    /// (state in progress) in the same step; in [`Mode::NonAtomic`] it only notes it, invisibly,
    /// until [`IdempotencyStore::record_in_progress`].
    pub fn check(&mut self, now: SimTime, key: IdemKey, fp: u64) -> Check {
        self.check_by(now, now, key, fp)
    }

    /// [`IdempotencyStore::check`] for a caller whose clock reads `local` at true time `now`
    /// (an API node with a clock skew, which supplies its own time in the statement, as
    /// `WHERE expires_at > ?` and `expires_at = ? + ttl`): whether the key's record has
    /// expired is judged by `local`, and a record this check writes expires at `local + ttl`.
    /// A caller ahead finds records expired early (a retry proceeds anew: counted in
    /// [`IdemStats::expired_early`]); a caller behind still sees records past their TTL and
    /// writes records that expire early in true time. The store's own housekeeping (the sweep
    /// of expired records, eviction at capacity) stays on `now`, but never removes the key
    /// being checked, whose expiry is the caller's to judge.
    pub fn check_by(&mut self, now: SimTime, local: SimTime, key: IdemKey, fp: u64) -> Check {
        debug_assert_ne!(key.token, 0, "token 0 means no token: do not check it");
        self.stats.checks += 1;
        self.expire_key(now, local, key);
        self.sweep(now, SWEEP_PER_CHECK, Some(key));
        let reservation = |duplicate| Reservation {
            key,
            fp,
            at: now,
            duplicate,
        };
        let Some(r) = self.records.get(&key) else {
            let state = match self.cfg.mode {
                Mode::Atomic => RecordState::InProgress,
                Mode::NonAtomic => RecordState::Reserved,
            };
            self.insert(now, local, key, fp, state);
            self.stats.proceeds += 1;
            return Check::Proceed(reservation(false));
        };
        match r.state {
            // Not written yet, so a non-atomic reader sees nothing; the store knows better.
            RecordState::Reserved => {
                self.stats.proceeds += 1;
                self.stats.duplicates_detected += 1;
                Check::Proceed(reservation(true))
            }
            _ if r.fp != fp => {
                self.stats.mismatches += 1;
                Check::Mismatch
            }
            RecordState::InProgress => {
                self.stats.in_progress_hits += 1;
                Check::InProgress
            }
            RecordState::Completed(outcome) => {
                self.stats.replays += 1;
                Check::Replay(outcome)
            }
        }
    }

    /// The late write of the reservation ([`Mode::NonAtomic`]): the record becomes visible, in
    /// progress, with fingerprint `fp`, its TTL counted from `now`.
    ///
    /// In `NonAtomic` mode this is a blind write, like the `SET` / upsert of the classic bug: it
    /// overwrites whatever record the key has, even one a duplicate already completed. In
    /// `Atomic` mode the check already wrote the reservation, so this only writes a record that
    /// is missing (e.g. evicted meanwhile) and leaves an existing one alone.
    pub fn record_in_progress(&mut self, now: SimTime, key: IdemKey, fp: u64) {
        self.record_in_progress_by(now, now, key, fp);
    }

    /// [`IdempotencyStore::record_in_progress`] for a caller whose clock reads `local` at true
    /// time `now` (see [`IdempotencyStore::check_by`]): the TTL counts from `local`.
    pub fn record_in_progress_by(&mut self, now: SimTime, local: SimTime, key: IdemKey, fp: u64) {
        self.stats.late_writes += 1;
        self.expire_key(now, local, key);
        match (self.records.get(&key).map(|r| r.state), self.cfg.mode) {
            (None, _) => self.insert(now, local, key, fp, RecordState::InProgress),
            (Some(_), Mode::Atomic) => {}
            (Some(_), Mode::NonAtomic) => self.rewrite(local, key, fp, RecordState::InProgress),
        }
    }

    /// The call of `key` finished with `outcome`: the record becomes completed (failures too),
    /// its TTL counted again from `now`. A completed record is overwritten (last writer wins:
    /// only a duplicate in `NonAtomic` mode completes a key twice). A key with no record
    /// (expired, evicted or abandoned meanwhile) is left absent and counted in
    /// `stale_completions`.
    pub fn complete(&mut self, now: SimTime, key: IdemKey, outcome: Outcome) {
        self.complete_by(now, now, key, outcome);
    }

    /// [`IdempotencyStore::complete`] for a caller whose clock reads `local` at true time `now`
    /// (see [`IdempotencyStore::check_by`]): expiry is judged by `local` and the TTL counts
    /// from it.
    pub fn complete_by(&mut self, now: SimTime, local: SimTime, key: IdemKey, outcome: Outcome) {
        self.expire_key(now, local, key);
        let Some(fp) = self.records.get(&key).map(|r| r.fp) else {
            self.stats.stale_completions += 1;
            return;
        };
        self.rewrite(local, key, fp, RecordState::Completed(outcome));
        self.stats.completions += 1;
        if matches!(outcome, Outcome::Failed(_)) {
            self.stats.failures_memoised += 1;
        }
    }

    /// The call of `key` will not finish (its node crashed, or it failed in a way that rolled
    /// its transaction back): an unfinished record (reserved or in progress) is removed so a
    /// retry can proceed. A completed record is kept: its outcome already happened, and retries
    /// must replay it.
    pub fn abandon(&mut self, key: IdemKey) {
        let unfinished = self
            .records
            .get(&key)
            .is_some_and(|r| !matches!(r.state, RecordState::Completed(_)));
        if unfinished {
            self.remove(key);
            self.stats.abandoned += 1;
        }
    }

    /// Drops every record whose TTL has run out at `now` (a record written at `t` lives while
    /// `now < t + ttl`: at `t + ttl - 1ns` it is there, at `t + ttl` it is gone). Returns how
    /// many were dropped. Cost: O(dropped · log n).
    pub fn expire(&mut self, now: SimTime) -> u64 {
        self.sweep(now, usize::MAX, None)
    }

    /// Drops every record (the store's memory is lost: a flushed or restarted L2). Returns how
    /// many were dropped.
    pub fn clear(&mut self) -> u64 {
        let n = self.records.len() as u64;
        self.records.clear();
        self.expiry.clear();
        self.stats.lost += n;
        self.stats.live = 0;
        n
    }

    /// Drops up to `max` expired records from the front of the expiry index, stopping early at
    /// `keep` (a key whose expiry a caller is judging by its own clock).
    fn sweep(&mut self, now: SimTime, max: usize, keep: Option<IdemKey>) -> u64 {
        let mut n = 0u64;
        while (n as usize) < max {
            let Some(entry) = self.expiry.first_entry() else {
                break;
            };
            if entry.key().0 > now || keep == Some(*entry.get()) {
                break;
            }
            let key = entry.remove();
            self.records.remove(&key);
            n += 1;
        }
        self.stats.expirations += n;
        self.stats.live = self.records.len() as u64;
        n
    }

    /// Lazy expiry of one key, judged by the caller's clock `local` (`now` is the true time).
    fn expire_key(&mut self, now: SimTime, local: SimTime, key: IdemKey) {
        let Some(expires_at) = self.records.get(&key).map(|r| r.expiry.0) else {
            return;
        };
        if expires_at <= local {
            self.remove(key);
            self.stats.expirations += 1;
            if expires_at > now {
                self.stats.expired_early += 1;
            }
        }
    }

    /// A record written at `local` (the writer's clock) expires at `local + ttl`.
    fn next_expiry(&mut self, local: SimTime) -> (SimTime, u64) {
        self.seq += 1;
        (local.saturating_add(self.cfg.ttl), self.seq)
    }

    /// Adds a record for an absent key, making room first: expired records go (by the true
    /// clock `now`), then, while the store is still full, the oldest-expiring ones (counted as
    /// evictions). The record expires `ttl` after the writer's clock `local`.
    fn insert(&mut self, now: SimTime, local: SimTime, key: IdemKey, fp: u64, state: RecordState) {
        debug_assert!(!self.records.contains_key(&key));
        if self.records.len() >= self.cfg.capacity as usize {
            self.expire(now);
        }
        while self.records.len() >= self.cfg.capacity as usize {
            let Some((_, victim)) = self.expiry.pop_first() else {
                break;
            };
            if let Some(r) = self.records.remove(&victim) {
                self.stats.evictions += 1;
                if !matches!(r.state, RecordState::Completed(_)) {
                    self.stats.evicted_in_progress += 1;
                }
            }
        }
        let expiry = self.next_expiry(local);
        self.expiry.insert(expiry, key);
        self.records.insert(key, Record { fp, state, expiry });
        self.stats.live = self.records.len() as u64;
        self.stats.peak_live = self.stats.peak_live.max(self.stats.live);
    }

    /// Overwrites the record of a present key, re-indexing its expiry from the writer's clock
    /// `local`.
    fn rewrite(&mut self, local: SimTime, key: IdemKey, fp: u64, state: RecordState) {
        let expiry = self.next_expiry(local);
        let Some(r) = self.records.get_mut(&key) else {
            return;
        };
        self.expiry.remove(&r.expiry);
        *r = Record { fp, state, expiry };
        self.expiry.insert(expiry, key);
    }

    fn remove(&mut self, key: IdemKey) {
        if let Some(r) = self.records.remove(&key) {
            self.expiry.remove(&r.expiry);
        }
        self.stats.live = self.records.len() as u64;
    }
}
