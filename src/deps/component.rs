//! The dependency component: one mocked third-party service as a sans-IO state machine with a
//! concurrency limit, a bounded FIFO queue, sampled latency, injected errors and blackholes, and
//! real side effects on its own resource records (stock, idempotency tokens, orphans).
//!
//! A call's life:
//! 1. `on_call`: a malformed call (op not served here, batch size out of range, missing target)
//!    is answered `InvalidParameter` at once. Otherwise it takes a free concurrency slot, or waits
//!    in the FIFO queue, or, with the queue full, is answered `ServiceUnavailable` at once.
//! 2. On taking a slot it draws, from the dependency's own `SimRng`, one uniform for the error
//!    draw and one latency sample (always both, whatever the outcome, so toggling faults never
//!    shifts later draws), and schedules its completion.
//! 3. At completion a served call performs its side effect *then* replies, whether or not the
//!    caller still waits: a reply after the caller's deadline leaves the record behind (an
//!    orphan, for reconciliation to find). An injected error replies with its code and changes
//!    nothing. A `timeout` (blackhole) replies never; it held its slot for the whole latency, and
//!    performs the side effect only if the mock file says `executes = true`.
//!
//! Faults: the chaos hooks (`set_extra_latency`, `set_error_override`, `set_blackhole`) act on
//! the whole dependency; a fault plan's combined state per endpoint ([`EndpointFaults`], set
//! by the world through [`Dependency::set_plan_faults`]) is kept apart from them and wins over
//! them where both set something. A call is planned when it takes a slot: a blackhole (hook or
//! plan) first, then a partial outage (by [`outage_key`]), then the error draw; what faults did
//! is counted in [`DependencyStats`] (`fault_*`) and per endpoint ([`EndpointStats`]).
//!
//! Batch latency: a call for `count` items takes one latency sample `L` and lasts
//! `L × (1 + batch_factor × (count − 1))` (the endpoint's `batch_factor`, default 0: a batch costs
//! what one item costs), then `× mult + add` of [`Dependency::set_extra_latency`].
//!
//! Side effects are all-or-nothing per call. Records live in a table of 64-id chunks indexed by id
//! (ids are handed out in increasing order and never reused; a chunk goes with its last record);
//! a create takes `count` contiguous ids. A call with a non-zero `token` is remembered (for `token_ttl`, at most
//! `token_capacity` tokens, the oldest forgotten first) with its parameters and result: a repeat
//! with the same parameters gets the same resources back (`replayed`), with other parameters
//! `IdempotentParameterMismatch`. Only successes are remembered, so a retry after an injected
//! error runs afresh.

use super::spec::{DependencySpec, StockSpec};
use super::vocab::{DepOp, Effect, FaultCode, ResourceId, ResourceKind, ResourceRange};
use crate::api::types::{AccountId, ErrorCode, InstanceType};
use crate::kernel::{ComponentId, Dist, FixMap, Outbox, SimDuration, SimRng, SimTime};
use crate::metrics::LatencyHistogram;
use std::collections::{BTreeMap, VecDeque};

/// A call to a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepCall {
    /// The caller's correlation id, echoed in the reply.
    pub tag: u64,
    /// Where the reply goes.
    pub reply_to: ComponentId,
    pub op: DepOp,
    /// Downstream idempotency token; 0 = none.
    pub token: u64,
    /// Batch size: one call for `count` items (for a call with a target, `target.count`).
    pub count: u32,
    /// The instance type hosts are allocated for (inventory; kept on every record).
    pub instance_type: InstanceType,
    /// The records a delete, attach or detach acts on.
    pub target: Option<ResourceRange>,
    /// For a host allocation: create as many as stock allows up to `count`, but none unless at
    /// least this many (RunInstances `MinAmount`); 0 means all `count` or none.
    pub min_count: u32,
    /// The logical operation this call is an attempt of (a trace id: the same on every retry
    /// or redelivery; 0 = none). Kept on the records it creates, for the invariant checkers.
    pub origin: u64,
    /// The account whose request or workflow this call serves (`None`: no account's, e.g.
    /// reconciliation's repairs). Account-scoped faults act on their account's calls only.
    pub account: Option<AccountId>,
}

impl DepCall {
    /// A call for one item, no token, instance type 0, no target.
    pub fn new(tag: u64, reply_to: ComponentId, op: DepOp) -> DepCall {
        DepCall {
            tag,
            reply_to,
            op,
            token: 0,
            count: 1,
            instance_type: InstanceType(0),
            target: None,
            min_count: 0,
            origin: 0,
            account: None,
        }
    }
    /// The call serves `account`'s work (see [`DepCall::account`]).
    pub fn with_account(mut self, account: AccountId) -> DepCall {
        self.account = Some(account);
        self
    }
    /// The logical operation this call is an attempt of (see [`DepCall::origin`]).
    pub fn with_origin(mut self, origin: u64) -> DepCall {
        self.origin = origin;
        self
    }
    /// Accept a partial host allocation of at least `min` (see [`DepCall::min_count`]).
    pub fn with_min_count(mut self, min: u32) -> DepCall {
        self.min_count = min;
        self
    }
    pub fn with_token(mut self, token: u64) -> DepCall {
        self.token = token;
        self
    }
    pub fn with_count(mut self, count: u32) -> DepCall {
        self.count = count;
        self
    }
    pub fn with_instance_type(mut self, t: InstanceType) -> DepCall {
        self.instance_type = t;
        self
    }
    /// Acts on `target` (and sets `count` to its size).
    pub fn with_target(mut self, target: ResourceRange) -> DepCall {
        self.target = Some(target);
        self.count = target.count;
        self
    }
}

/// A successful call's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepOk {
    /// Created records (create), the records acted on (delete, attach, detach), or empty (read).
    pub resources: ResourceRange,
    /// The token matched an earlier call: these are that call's resources, nothing new happened.
    pub replayed: bool,
}

/// A failed call's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepError {
    pub code: ErrorCode,
    /// Drawn from the mock's error probabilities (or a fault override), not caused by state.
    pub injected: bool,
}

/// The answer to a [`DepCall`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepReply {
    pub tag: u64,
    pub result: Result<DepOk, DepError>,
}

/// A dependency's own timer: a call's completion. Opaque to the world, which hands it back to
/// [`Dependency::on_timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepTimer {
    slot: u32,
}

/// The state of a resource record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordState {
    Active,
    Attached,
}

/// One resource a dependency holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceRecord {
    pub kind: ResourceKind,
    /// The token of the call that created it (0 = none): how reconciliation traces an orphan.
    pub owner_token: u64,
    /// The logical operation that created it (the call's [`DepCall::origin`]).
    pub origin: u64,
    pub state: RecordState,
    pub instance_type: InstanceType,
    pub created: SimTime,
    /// When its state last changed (its creation if never).
    pub changed: SimTime,
}

/// What a dependency counted.
#[derive(Clone, Debug, Default)]
pub struct DependencyStats {
    /// Every call received.
    pub calls: u64,
    /// Refused at once as malformed (`InvalidParameter`).
    pub invalid: u64,
    /// Refused at once because the queue was full (`ServiceUnavailable`).
    pub rejected: u64,
    /// Calls that took a concurrency slot.
    pub started: u64,
    /// Success replies.
    pub ok: u64,
    /// Error replies by code, whatever the cause (injected, state, refusal).
    pub errors: BTreeMap<ErrorCode, u64>,
    /// Injected faults by [`FaultCode::index`] (timeouts included).
    pub injected: [u64; FaultCode::COUNT],
    /// Blackholed calls: held a slot, never replied.
    pub timeouts: u64,
    /// Of `timeouts`: blackholed by a blackhole fault (plan or [`Dependency::set_blackhole`]).
    pub fault_blackholed: u64,
    /// Of `timeouts`: landed on a host that a partial-outage fault took down.
    pub fault_outage: u64,
    /// Injected errors and timeouts drawn with a fault plan's probability (not the mock
    /// file's or a hook's); also counted in `injected`.
    pub fault_errors: u64,
    /// Calls whose latency a fault plan's latency fault changed.
    pub fault_delayed: u64,
    /// Calls answered from the token memory.
    pub replays: u64,
    pub records_created: u64,
    pub records_deleted: u64,
    /// Arrival to reply, for calls that took a slot and were replied to.
    pub latency: LatencyHistogram,
    pub max_concurrency: u32,
    pub max_queue: u32,
    /// Per endpoint, in the spec's order: what its calls did (to tell one endpoint's faults
    /// from another's).
    pub endpoints: Vec<EndpointStats>,
    /// Per account named by an account-scoped fault (only those): what that account's calls
    /// did while a scoped setting for it was in force.
    pub scoped_accounts: BTreeMap<AccountId, ScopedAccountStats>,
}

/// What the calls of one account named by an account-scoped fault did (calls that took a
/// slot while a scoped setting for the account was in force).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopedAccountStats {
    /// Calls that took a slot.
    pub started: u64,
    /// Of `started`: failed or blackholed by a fault (a plan's errors, blackhole or outage, or
    /// the blackhole hook).
    pub fault_failed: u64,
    /// Of `started`: calls whose latency a fault plan's latency fault changed.
    pub fault_delayed: u64,
}

/// What one endpoint's calls did (calls that took a slot).
#[derive(Clone, Debug, Default)]
pub struct EndpointStats {
    /// Calls that took a slot.
    pub started: u64,
    /// Of `started`: failed or blackholed by an injected error, a fault or a hook.
    pub injected: u64,
    /// Arrival to reply, for calls replied to.
    pub latency: LatencyHistogram,
}

impl DependencyStats {
    /// Error replies with `code`.
    pub fn errors_of(&self, code: ErrorCode) -> u64 {
        self.errors.get(&code).copied().unwrap_or(0)
    }
}

/// Fault-injection settings; all neutral by default. The first four are the chaos hooks
/// (dependency-wide, set by tests and drivers); `plan` is what the fault plan's active faults
/// combine to, per endpoint, set by the world's fault applier alone, so the two never
/// overwrite each other.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    pub latency_mult: f64,
    pub latency_add: SimDuration,
    /// Per [`FaultCode::index`]: replaces the mock file's probability for every endpoint.
    pub overrides: [Option<f64>; FaultCode::COUNT],
    /// Every call started while set is blackholed (no side effect, no reply).
    pub blackhole: bool,
    /// The fault plan's combined settings, one per endpoint in the spec's order; empty when no
    /// planned fault is active.
    pub plan: Vec<EndpointFaults>,
    /// Per account named by an active account-scoped fault: the settings its calls get
    /// instead of `plan` (the account's faults combined with the unscoped ones), one per
    /// endpoint; sorted by account. Calls of other accounts (or of none) get `plan`.
    pub by_account: Vec<(AccountId, Vec<EndpointFaults>)>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_mult: 1.0,
            latency_add: SimDuration::ZERO,
            overrides: [None; FaultCode::COUNT],
            blackhole: false,
            plan: Vec::new(),
            by_account: Vec::new(),
        }
    }
}

/// The combined effect of a fault plan's active faults on one endpoint (a fault on the whole
/// dependency counts on each of its endpoints).
///
/// - Latency: a call's latency (after the mock's batch scaling and the hooks) becomes
///   `latency × latency_mult + Σ scale × sample(dist)`: multipliers of overlapping faults
///   multiply, each added distribution (seconds) is sampled per call from the dependency's
///   fault stream (a fork of its own, so its own draws never shift) and scaled.
/// - Errors: per code, a probability that replaces the mock file's and the hooks'; overlapping
///   faults on one code combine as independent causes, `1 − Π(1 − pᵢ)`. Codes are drawn with
///   the call's one uniform in [`FaultCode::ALL`] order, as the file's are.
/// - Blackhole: every call is held for its latency and never answered.
/// - Outages: `(salt, fraction)` per partial-outage fault; a call is down (blackholed) when
///   its key hashed with the salt falls below the fraction (see [`outage_key`]).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointFaults {
    pub latency_mult: f64,
    pub latency_add: Vec<(Dist, f64)>,
    pub errors: [Option<f64>; FaultCode::COUNT],
    pub blackhole: bool,
    pub outages: Vec<(u64, f64)>,
}

impl Default for EndpointFaults {
    fn default() -> Self {
        EndpointFaults {
            latency_mult: 1.0,
            latency_add: Vec::new(),
            errors: [None; FaultCode::COUNT],
            blackhole: false,
            outages: Vec::new(),
        }
    }
}

impl EndpointFaults {
    /// Whether these settings change nothing.
    pub fn is_neutral(&self) -> bool {
        *self == EndpointFaults::default()
    }

    /// Adds a fault's error probability for `code`, combined with any already there as
    /// independent causes: `1 − (1 − p₀)(1 − p)`.
    pub fn add_error(&mut self, code: FaultCode, probability: f64) {
        let p = probability.clamp(0.0, 1.0);
        let slot = &mut self.errors[code.index()];
        *slot = Some(1.0 - (1.0 - slot.unwrap_or(0.0)) * (1.0 - p));
    }

    /// Whether a call with `key` lands on a host one of the outages took down.
    pub fn down(&self, key: u64) -> bool {
        self.outages
            .iter()
            .any(|&(salt, fraction)| unit_hash(key ^ salt) < fraction)
    }
}

/// SplitMix64's finaliser: a fixed, well-mixed 64-bit hash.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `key` hashed to a uniform in [0, 1).
fn unit_hash(key: u64) -> f64 {
    (mix64(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// Which host or zone a call lands on, for partial outages: the call's first target record
/// when it has one (a record lives where it was made, whatever the op), else its idempotency
/// token with the instance type (a retry with the token goes where the first try went), else
/// its caller, correlation tag and instance type (each untokened call lands afresh).
pub fn outage_key(call: &DepCall) -> u64 {
    let ty = u64::from(call.instance_type.0);
    match call.target {
        Some(t) => mix64(1 ^ mix64(t.first.0)),
        None if call.token != 0 => mix64(2 ^ mix64(call.token ^ mix64(ty))),
        None => mix64(3 ^ mix64(call.tag ^ mix64(ty ^ ((call.reply_to.index() as u64) << 16)))),
    }
}

/// `d × mult`, rounded to the nanosecond, saturating.
fn scaled(d: SimDuration, mult: f64) -> SimDuration {
    if mult == 1.0 {
        return d;
    }
    let ns = (d.as_ns() as f64 * mult).round();
    if ns >= u64::MAX as f64 {
        SimDuration::MAX
    } else {
        SimDuration::from_ns(ns as u64)
    }
}

/// Why a call was planned as it was (which counter it goes to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Mock,
    Blackhole,
    Outage,
    Fault,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Serve,
    Fail(FaultCode),
    Blackhole { executes: bool },
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    call: DepCall,
    arrived: SimTime,
    plan: Plan,
}

/// What a token call's parameters were (the key's fingerprint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    op: DepOp,
    count: u32,
    instance_type: InstanceType,
    target: Option<ResourceRange>,
}

impl Fingerprint {
    fn of(c: &DepCall) -> Fingerprint {
        Fingerprint {
            op: c.op,
            count: c.count,
            instance_type: c.instance_type,
            target: c.target,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct TokenEntry {
    fingerprint: Fingerprint,
    result: ResourceRange,
    expires: SimTime,
}

#[derive(Clone, Debug)]
struct Stock {
    spec: StockSpec,
    /// Types touched so far; others still have their initial stock.
    remaining: BTreeMap<InstanceType, u64>,
    allocated: BTreeMap<InstanceType, u64>,
}

impl Stock {
    fn remaining(&self, t: InstanceType) -> u64 {
        self.remaining
            .get(&t)
            .copied()
            .unwrap_or_else(|| self.spec.initial(t))
    }
    fn take(&mut self, t: InstanceType, n: u64) {
        let left = self.remaining(t) - n;
        self.remaining.insert(t, left);
        *self.allocated.entry(t).or_insert(0) += n;
    }
    fn give_back(&mut self, t: InstanceType, n: u64) {
        let left = self.remaining(t) + n;
        self.remaining.insert(t, left);
        let a = self.allocated.entry(t).or_insert(0);
        *a = a.saturating_sub(n);
    }
}

/// Records by id, in chunks of [`RecordTable::CHUNK`] consecutive ids. Ids are handed out in
/// increasing order and never reused, so a record sits at a fixed place in its chunk (`None`:
/// gone) and a lookup is one search among the chunks (64 times fewer keys than records) and an
/// index. A chunk is freed when its last record goes, so memory follows the live records (at
/// most one chunk each), not every id ever handed out, however long the run. Iterates in id
/// order.
#[derive(Clone, Debug, Default)]
struct RecordTable {
    /// Chunk number (`id / CHUNK`) → the chunk.
    chunks: BTreeMap<u64, Box<Chunk>>,
    live: usize,
}

#[derive(Clone, Debug)]
struct Chunk {
    live: u32,
    slots: [Option<ResourceRecord>; RecordTable::CHUNK as usize],
}

impl RecordTable {
    const CHUNK: u64 = 64;

    fn len(&self) -> usize {
        self.live
    }
    #[inline]
    fn get(&self, id: ResourceId) -> Option<&ResourceRecord> {
        let c = self.chunks.get(&(id.0 / Self::CHUNK))?;
        c.slots[(id.0 % Self::CHUNK) as usize].as_ref()
    }
    #[inline]
    fn get_mut(&mut self, id: ResourceId) -> Option<&mut ResourceRecord> {
        let c = self.chunks.get_mut(&(id.0 / Self::CHUNK))?;
        c.slots[(id.0 % Self::CHUNK) as usize].as_mut()
    }
    /// Adds record `id` (an id never used before).
    fn push(&mut self, id: ResourceId, r: ResourceRecord) {
        let c = self.chunks.entry(id.0 / Self::CHUNK).or_insert_with(|| {
            Box::new(Chunk {
                live: 0,
                slots: [None; RecordTable::CHUNK as usize],
            })
        });
        let slot = &mut c.slots[(id.0 % Self::CHUNK) as usize];
        debug_assert!(slot.is_none(), "record ids are never reused");
        if slot.replace(r).is_none() {
            c.live += 1;
            self.live += 1;
        }
    }
    fn remove(&mut self, id: ResourceId) -> Option<ResourceRecord> {
        let k = id.0 / Self::CHUNK;
        let c = self.chunks.get_mut(&k)?;
        let r = c.slots[(id.0 % Self::CHUNK) as usize].take()?;
        c.live -= 1;
        self.live -= 1;
        if c.live == 0 {
            self.chunks.remove(&k);
        }
        Some(r)
    }
    fn iter(&self) -> impl Iterator<Item = (ResourceId, &ResourceRecord)> {
        self.chunks.iter().flat_map(|(&k, c)| {
            c.slots.iter().enumerate().filter_map(move |(i, r)| {
                r.as_ref()
                    .map(|r| (ResourceId(k * Self::CHUNK + i as u64), r))
            })
        })
    }
    /// Chunks held (memory is about this many times `CHUNK` records).
    #[cfg(test)]
    fn chunks(&self) -> usize {
        self.chunks.len()
    }
}

/// One mocked dependency. Route the world's `DepCall`s to [`Dependency::on_call`] and its
/// `DepTimer`s to [`Dependency::on_timer`].
#[derive(Clone, Debug)]
pub struct Dependency {
    spec: DependencySpec,
    rng: SimRng,
    /// Endpoint index by [`DepOp::index`].
    endpoint_of: [Option<u8>; DepOp::COUNT],
    /// Per endpoint: its latency (own or default), the file's error probabilities by
    /// [`FaultCode::index`], and whether its timeouts execute.
    latency: Vec<Dist>,
    probabilities: Vec<[f64; FaultCode::COUNT]>,
    timeout_executes: Vec<bool>,
    slots: Vec<Option<InFlight>>,
    free: Vec<u32>,
    busy: u32,
    queue: VecDeque<(DepCall, SimTime)>,
    records: RecordTable,
    next_id: u64,
    /// Never iterated: a fixed-hash map.
    tokens: FixMap<u64, TokenEntry>,
    /// Tokens in insertion order with their expiry (non-decreasing: the TTL is fixed).
    token_order: VecDeque<(SimTime, u64)>,
    stock: Option<Stock>,
    faults: Faults,
    /// Draws for the fault plan's added latency: a fork of `rng`, so faults never shift it.
    fault_rng: SimRng,
    stats: DependencyStats,
}

impl Dependency {
    /// A dependency as `spec` describes it, drawing from `rng` (fork one per dependency, e.g.
    /// `"deps.<name>"`).
    pub fn new(spec: DependencySpec, rng: SimRng) -> Dependency {
        let mut endpoint_of = [None; DepOp::COUNT];
        let mut latency = Vec::with_capacity(spec.endpoints().len());
        let mut probabilities = Vec::with_capacity(spec.endpoints().len());
        let mut timeout_executes = Vec::with_capacity(spec.endpoints().len());
        for (i, e) in spec.endpoints().iter().enumerate() {
            endpoint_of[e.op().index()] =
                Some(u8::try_from(i).expect("a dependency has at most 15 endpoints"));
            latency.push(e.own_latency().unwrap_or(spec.default_latency()).clone());
            let mut p = [0.0; FaultCode::COUNT];
            let mut executes = false;
            for err in e.errors() {
                p[err.code().index()] = err.probability();
                if err.code() == FaultCode::Timeout {
                    executes = err.executes();
                }
            }
            probabilities.push(p);
            timeout_executes.push(executes);
        }
        let stock = spec.stock().map(|s| Stock {
            spec: s.clone(),
            remaining: BTreeMap::new(),
            allocated: BTreeMap::new(),
        });
        let slots_hint = spec.concurrency().min(1024) as usize;
        Dependency {
            fault_rng: rng.fork("faults"),
            rng,
            endpoint_of,
            latency,
            probabilities,
            timeout_executes,
            slots: Vec::with_capacity(slots_hint),
            free: Vec::with_capacity(slots_hint),
            busy: 0,
            queue: VecDeque::new(),
            records: RecordTable::default(),
            next_id: 1,
            tokens: FixMap::new(),
            token_order: VecDeque::new(),
            stock,
            faults: Faults::default(),
            stats: DependencyStats {
                endpoints: vec![EndpointStats::default(); spec.endpoints().len()],
                ..DependencyStats::default()
            },
            spec,
        }
    }

    pub fn spec(&self) -> &DependencySpec {
        &self.spec
    }
    pub fn name(&self) -> &str {
        self.spec.name()
    }
    pub fn stats(&self) -> &DependencyStats {
        &self.stats
    }
    /// Calls holding a concurrency slot now.
    pub fn in_flight(&self) -> u32 {
        self.busy
    }
    /// Calls waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    /// Resource records that exist now.
    pub fn records_live(&self) -> usize {
        self.records.len()
    }
    pub fn record(&self, id: ResourceId) -> Option<&ResourceRecord> {
        self.records.get(id)
    }
    /// Every live record, by id.
    pub fn records(&self) -> impl Iterator<Item = (ResourceId, &ResourceRecord)> {
        self.records.iter()
    }
    /// Tokens remembered now (expired ones may linger until the next remembered call).
    pub fn tokens_remembered(&self) -> usize {
        self.tokens.len()
    }
    /// Hosts of type `t` still available (`None`: this dependency keeps no stock).
    pub fn stock_remaining(&self, t: InstanceType) -> Option<u64> {
        self.stock.as_ref().map(|s| s.remaining(t))
    }
    /// Hosts of type `t` allocated now (`None`: this dependency keeps no stock).
    pub fn hosts_allocated(&self, t: InstanceType) -> Option<u64> {
        self.stock
            .as_ref()
            .map(|s| s.allocated.get(&t).copied().unwrap_or(0))
    }
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Chaos hook: latency of calls started from now on becomes `latency × mult + add`.
    /// Panics if `mult` is negative or not finite.
    pub fn set_extra_latency(&mut self, mult: f64, add: SimDuration) {
        assert!(
            mult.is_finite() && mult >= 0.0,
            "latency multiplier must be finite and >= 0, got {mult}"
        );
        self.faults.latency_mult = mult;
        self.faults.latency_add = add;
    }

    /// Chaos hook: `Some(p)` replaces the mock file's probability of `code` on every endpoint for
    /// calls started from now on; `None` restores the file's. Codes are drawn in
    /// [`FaultCode::ALL`] order; if the probabilities sum past 1 the later codes get what is left.
    /// Panics if `p` is outside [0, 1].
    pub fn set_error_override(&mut self, code: FaultCode, probability: Option<f64>) {
        if let Some(p) = probability {
            assert!(
                (0.0..=1.0).contains(&p),
                "probability must be in [0, 1], got {p}"
            );
        }
        self.faults.overrides[code.index()] = probability;
    }

    /// Chaos hook: while on, every call that takes a slot is blackholed (held for its latency,
    /// no side effect, no reply).
    pub fn set_blackhole(&mut self, on: bool) {
        self.faults.blackhole = on;
    }

    /// Fault hook: record `id` disappears out of band (an operator's console delete, a lost
    /// volume), with no call and no reply. Returns the record removed.
    pub fn remove_record(&mut self, id: ResourceId) -> Option<ResourceRecord> {
        let r = self.records.remove(id)?;
        self.stats.records_deleted += 1;
        if r.kind == ResourceKind::Host {
            if let Some(stock) = &mut self.stock {
                stock.give_back(r.instance_type, 1);
            }
        }
        Some(r)
    }

    /// Fault hook: record `id` changes state out of band at `now` (a disk detached by the
    /// storage layer after a host fault). Returns whether the record exists.
    pub fn set_record_state(&mut self, id: ResourceId, state: RecordState, now: SimTime) -> bool {
        match self.records.get_mut(id) {
            Some(r) => {
                r.state = state;
                r.changed = now;
                true
            }
            None => false,
        }
    }

    /// Fault plan hook: the combined settings of the active planned faults, one per endpoint
    /// in the spec's order (an empty list, or all neutral, clears them), for calls started from
    /// now on. The chaos hooks above are kept. Panics if the list's length is neither 0 nor the
    /// number of endpoints, or a multiplier is negative or not finite.
    pub fn set_plan_faults(&mut self, mut plan: Vec<EndpointFaults>) {
        assert!(
            plan.is_empty() || plan.len() == self.latency.len(),
            "one fault setting per endpoint"
        );
        assert!(
            plan.iter()
                .all(|p| p.latency_mult.is_finite() && p.latency_mult >= 0.0),
            "latency multipliers must be finite and >= 0"
        );
        if plan.iter().all(EndpointFaults::is_neutral) {
            plan.clear();
        }
        self.faults.plan = plan;
    }

    /// Fault plan hook: per account named by an active account-scoped fault, the settings its
    /// calls get instead of those of [`Dependency::set_plan_faults`] (so they combine the
    /// account's faults with the unscoped ones), one per endpoint in the spec's order, for
    /// calls started from now on. An empty list clears them. Panics if an account appears
    /// twice, or a list's length is not the number of endpoints, or a multiplier is negative
    /// or not finite.
    pub fn set_account_plan_faults(
        &mut self,
        mut by_account: Vec<(AccountId, Vec<EndpointFaults>)>,
    ) {
        by_account.sort_by_key(|(a, _)| *a);
        assert!(
            by_account.windows(2).all(|w| w[0].0 != w[1].0),
            "one setting per account"
        );
        for (_, plan) in &by_account {
            assert_eq!(
                plan.len(),
                self.latency.len(),
                "one fault setting per endpoint"
            );
            assert!(
                plan.iter()
                    .all(|p| p.latency_mult.is_finite() && p.latency_mult >= 0.0),
                "latency multipliers must be finite and >= 0"
            );
        }
        self.faults.by_account = by_account;
    }

    /// The position in `faults.by_account` of the settings for a call of `account`, if the
    /// account has its own.
    fn scope_of(&self, account: Option<AccountId>) -> Option<usize> {
        if self.faults.by_account.is_empty() {
            return None;
        }
        let a = account?;
        self.faults
            .by_account
            .binary_search_by_key(&a, |(x, _)| *x)
            .ok()
    }

    /// Index of the endpoint serving `op` (in the spec's order), if any.
    pub fn endpoint_index(&self, op: DepOp) -> Option<usize> {
        self.endpoint_of[op.index()].map(usize::from)
    }

    /// Restores every fault setting to neutral.
    pub fn clear_faults(&mut self) {
        self.faults = Faults::default();
    }

    /// Handles a call (see the module documentation for its life).
    pub fn on_call<M: From<DepReply> + From<DepTimer>>(
        &mut self,
        call: DepCall,
        out: &mut Outbox<'_, M>,
    ) {
        self.stats.calls += 1;
        if !self.well_formed(&call) {
            self.stats.invalid += 1;
            self.reply(
                call.reply_to,
                call.tag,
                Err(refusal(ErrorCode::InvalidParameter)),
                out,
            );
            return;
        }
        if self.busy < self.spec.concurrency() {
            let now = out.now();
            self.start(call, now, out);
        } else if self.queue.len() < self.spec.queue_limit() as usize {
            self.queue.push_back((call, out.now()));
            self.stats.max_queue = self.stats.max_queue.max(self.queue.len() as u32);
        } else {
            self.stats.rejected += 1;
            self.reply(
                call.reply_to,
                call.tag,
                Err(refusal(ErrorCode::ServiceUnavailable)),
                out,
            );
        }
    }

    /// Handles a completion timer.
    pub fn on_timer<M: From<DepReply> + From<DepTimer>>(
        &mut self,
        t: DepTimer,
        out: &mut Outbox<'_, M>,
    ) {
        let Some(done) = self.slots.get_mut(t.slot as usize).and_then(Option::take) else {
            out.violation(format!(
                "dependency `{}`: completion of an empty slot {}",
                self.spec.name(),
                t.slot
            ));
            return;
        };
        self.free.push(t.slot);
        self.busy -= 1;
        let now = out.now();
        let InFlight {
            call,
            arrived,
            plan,
        } = done;
        match plan {
            Plan::Serve => {
                let result = self.execute(&call, now).map_err(|code| DepError {
                    code,
                    injected: false,
                });
                self.record_latency(&call, now.saturating_since(arrived));
                self.reply(call.reply_to, call.tag, result, out);
            }
            Plan::Fail(code) => {
                let code = code.error_code().expect("a timeout is a blackhole");
                self.record_latency(&call, now.saturating_since(arrived));
                self.reply(
                    call.reply_to,
                    call.tag,
                    Err(DepError {
                        code,
                        injected: true,
                    }),
                    out,
                );
            }
            Plan::Blackhole { executes } => {
                self.stats.timeouts += 1;
                if executes {
                    // The work happens; the reply is lost.
                    let _ = self.execute(&call, now);
                }
            }
        }
        if let Some((next, arrived)) = self.queue.pop_front() {
            self.start(next, arrived, out);
        }
    }

    fn record_latency(&mut self, call: &DepCall, latency: SimDuration) {
        self.stats.latency.record(latency.as_ns());
        if let Some(ep) = self.endpoint_of[call.op.index()] {
            self.stats.endpoints[ep as usize]
                .latency
                .record(latency.as_ns());
        }
    }

    fn well_formed(&self, call: &DepCall) -> bool {
        let Some(ep) = self.endpoint_of[call.op.index()] else {
            return false;
        };
        let max = self.spec.endpoints()[ep as usize].max_batch();
        let count_ok = (1..=max).contains(&call.count);
        if call.op.effect().needs_target() {
            count_ok && call.target.is_some_and(|t| t.count == call.count)
        } else {
            count_ok
        }
    }

    fn reply<M: From<DepReply>>(
        &mut self,
        to: ComponentId,
        tag: u64,
        result: Result<DepOk, DepError>,
        out: &mut Outbox<'_, M>,
    ) {
        match &result {
            Ok(_) => self.stats.ok += 1,
            Err(e) => *self.stats.errors.entry(e.code).or_insert(0) += 1,
        }
        out.send(to, SimDuration::ZERO, M::from(DepReply { tag, result }));
    }

    fn start<M: From<DepTimer>>(
        &mut self,
        call: DepCall,
        arrived: SimTime,
        out: &mut Outbox<'_, M>,
    ) {
        let ep = self.endpoint_of[call.op.index()].expect("checked in on_call") as usize;
        // Always the same draws per call, whatever the outcome.
        let u = self.rng.unit();
        let base = self.latency[ep].sample_duration(&mut self.rng);
        let scope = self.scope_of(call.account);
        let (plan, cause) = self.plan(ep, u, &call, scope);
        self.stats.endpoints[ep].started += 1;
        match plan {
            Plan::Serve => {}
            Plan::Fail(c) => self.stats.injected[c.index()] += 1,
            // The blackhole hook counts as an injected timeout too.
            Plan::Blackhole { .. } => self.stats.injected[FaultCode::Timeout.index()] += 1,
        }
        if plan != Plan::Serve {
            self.stats.endpoints[ep].injected += 1;
        }
        match cause {
            Cause::Mock => {}
            Cause::Blackhole => self.stats.fault_blackholed += 1,
            Cause::Outage => self.stats.fault_outage += 1,
            Cause::Fault => self.stats.fault_errors += 1,
        }
        let mut latency = self.scale(base, call.count, ep);
        let planned = match scope {
            Some(i) => self.faults.by_account[i].1.get(ep),
            None => self.faults.plan.get(ep),
        };
        let mut delayed = false;
        if let Some(pf) = planned {
            if pf.latency_mult != 1.0 || !pf.latency_add.is_empty() {
                delayed = true;
                self.stats.fault_delayed += 1;
                latency = scaled(latency, pf.latency_mult);
                for (dist, scale) in &pf.latency_add {
                    let add = dist.sample(&mut self.fault_rng) * scale;
                    latency = latency.saturating_add(SimDuration::from_secs_f64(add));
                }
            }
        }
        if let (Some(_), Some(account)) = (scope, call.account) {
            let a = self.stats.scoped_accounts.entry(account).or_default();
            a.started += 1;
            a.fault_failed += u64::from(cause != Cause::Mock);
            a.fault_delayed += u64::from(delayed);
        }
        self.busy += 1;
        self.stats.started += 1;
        self.stats.max_concurrency = self.stats.max_concurrency.max(self.busy);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("concurrency is at most 1e6")
            }
        };
        self.slots[slot as usize] = Some(InFlight {
            call,
            arrived,
            plan,
        });
        out.schedule(latency, M::from(DepTimer { slot }));
    }

    fn plan(&self, ep: usize, u: f64, call: &DepCall, scope: Option<usize>) -> (Plan, Cause) {
        let planned = match scope {
            Some(i) => self.faults.by_account[i].1.get(ep),
            None => self.faults.plan.get(ep),
        };
        if self.faults.blackhole || planned.is_some_and(|p| p.blackhole) {
            return (Plan::Blackhole { executes: false }, Cause::Blackhole);
        }
        if planned.is_some_and(|p| !p.outages.is_empty() && p.down(outage_key(call))) {
            return (Plan::Blackhole { executes: false }, Cause::Outage);
        }
        let mut cum = 0.0;
        for code in FaultCode::ALL {
            let by_plan = planned.and_then(|p| p.errors[code.index()]);
            let p = by_plan.unwrap_or_else(|| {
                self.faults.overrides[code.index()].unwrap_or(self.probabilities[ep][code.index()])
            });
            cum += p;
            if u < cum {
                let cause = if by_plan.is_some() {
                    Cause::Fault
                } else {
                    Cause::Mock
                };
                let plan = match code {
                    FaultCode::Timeout => Plan::Blackhole {
                        executes: self.timeout_executes[ep],
                    },
                    c => Plan::Fail(c),
                };
                return (plan, cause);
            }
        }
        (Plan::Serve, Cause::Mock)
    }

    fn scale(&self, base: SimDuration, count: u32, ep: usize) -> SimDuration {
        let factor = self.spec.endpoints()[ep].batch_factor();
        let mult = self.faults.latency_mult;
        let scaled = if (count <= 1 || factor == 0.0) && mult == 1.0 {
            base
        } else {
            let k = 1.0 + factor * f64::from(count.saturating_sub(1));
            let ns = (base.as_ns() as f64 * k * mult).round();
            if ns >= u64::MAX as f64 {
                SimDuration::MAX
            } else {
                SimDuration::from_ns(ns as u64)
            }
        };
        scaled.saturating_add(self.faults.latency_add)
    }

    /// Performs a served call's side effect (all or nothing).
    fn execute(&mut self, call: &DepCall, now: SimTime) -> Result<DepOk, ErrorCode> {
        let fingerprint = Fingerprint::of(call);
        if call.token != 0 {
            if let Some(entry) = self.tokens.get(&call.token).filter(|e| e.expires > now) {
                if entry.fingerprint != fingerprint {
                    return Err(ErrorCode::IdempotentParameterMismatch);
                }
                self.stats.replays += 1;
                return Ok(DepOk {
                    resources: entry.result,
                    replayed: true,
                });
            }
        }
        let resources = match call.op.effect() {
            Effect::None => ResourceRange::EMPTY,
            Effect::Create => self.create(call, now)?,
            Effect::Delete => self.delete(call)?,
            Effect::Attach => {
                self.move_state(call, RecordState::Active, RecordState::Attached, now)?
            }
            Effect::Detach => {
                self.move_state(call, RecordState::Attached, RecordState::Active, now)?
            }
        };
        if call.token != 0 {
            self.remember(call.token, fingerprint, resources, now);
        }
        Ok(DepOk {
            resources,
            replayed: false,
        })
    }

    fn create(&mut self, call: &DepCall, now: SimTime) -> Result<ResourceRange, ErrorCode> {
        let mut n = u64::from(call.count);
        if self.records.len() as u64 + n > self.spec.max_records() {
            return Err(ErrorCode::QuotaExceed);
        }
        let kind = call.op.resource();
        if kind == ResourceKind::Host {
            if let Some(stock) = &mut self.stock {
                let remaining = stock.remaining(call.instance_type);
                let min = if call.min_count == 0 {
                    n
                } else {
                    u64::from(call.min_count).min(n)
                };
                if remaining < min {
                    return Err(ErrorCode::NoStock);
                }
                n = n.min(remaining);
                stock.take(call.instance_type, n);
            }
        }
        let first = self.next_id;
        self.next_id += n;
        for id in first..first + n {
            self.records.push(
                ResourceId(id),
                ResourceRecord {
                    kind,
                    owner_token: call.token,
                    origin: call.origin,
                    state: RecordState::Active,
                    instance_type: call.instance_type,
                    created: now,
                    changed: now,
                },
            );
        }
        self.stats.records_created += n;
        Ok(ResourceRange {
            first: ResourceId(first),
            count: u32::try_from(n).expect("n <= call.count"),
        })
    }

    /// Checks that every target record exists, is of the op's kind and in state `from`.
    fn check_targets(&self, call: &DepCall, from: RecordState) -> Result<ResourceRange, ErrorCode> {
        let target = call.target.ok_or(ErrorCode::InvalidParameter)?;
        for id in target.iter() {
            match self.records.get(id) {
                None => return Err(ErrorCode::InstanceNotFound),
                Some(r) if r.kind != call.op.resource() => {
                    return Err(ErrorCode::InvalidParameter);
                }
                Some(r) if r.state != from => return Err(ErrorCode::IncorrectInstanceStatus),
                Some(_) => {}
            }
        }
        Ok(target)
    }

    fn delete(&mut self, call: &DepCall) -> Result<ResourceRange, ErrorCode> {
        let target = self.check_targets(call, RecordState::Active)?;
        for id in target.iter() {
            if let Some(r) = self.records.remove(id) {
                self.stats.records_deleted += 1;
                if r.kind == ResourceKind::Host {
                    if let Some(stock) = &mut self.stock {
                        stock.give_back(r.instance_type, 1);
                    }
                }
            }
        }
        Ok(target)
    }

    fn move_state(
        &mut self,
        call: &DepCall,
        from: RecordState,
        to: RecordState,
        now: SimTime,
    ) -> Result<ResourceRange, ErrorCode> {
        let target = self.check_targets(call, from)?;
        for id in target.iter() {
            if let Some(r) = self.records.get_mut(id) {
                r.state = to;
                r.changed = now;
            }
        }
        Ok(target)
    }

    fn remember(
        &mut self,
        token: u64,
        fingerprint: Fingerprint,
        result: ResourceRange,
        now: SimTime,
    ) {
        let capacity = self.spec.token_capacity() as usize;
        while let Some(&(expires, old)) = self.token_order.front() {
            if expires > now && self.tokens.len() < capacity {
                break;
            }
            self.token_order.pop_front();
            if self.tokens.get(&old).is_some_and(|e| e.expires == expires) {
                self.tokens.remove(&old);
            }
        }
        let expires = now.saturating_add(self.spec.token_ttl());
        self.tokens.insert(
            token,
            TokenEntry {
                fingerprint,
                result,
                expires,
            },
        );
        self.token_order.push_back((expires, token));
    }
}

fn refusal(code: ErrorCode) -> DepError {
    DepError {
        code,
        injected: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deps::parse_mock;
    use crate::kernel::{Component, Limits, Message, RootSeed, Sim, TraceHash};
    use std::collections::BTreeSet;

    /// The events of the test world.
    #[derive(Clone, Debug)]
    enum M {
        /// To the dependency: a chaos action at a scheduled instant.
        Hook(fn(&mut Dependency)),
        /// To the caller: send this call now and start its deadline.
        Kick(DepCall),
        Call(DepCall),
        Reply(DepReply),
        Timer(DepTimer),
        Deadline(u64),
    }
    impl From<DepReply> for M {
        fn from(r: DepReply) -> M {
            M::Reply(r)
        }
    }
    impl From<DepTimer> for M {
        fn from(t: DepTimer) -> M {
            M::Timer(t)
        }
    }
    impl Message for M {
        fn kind_code(&self) -> u32 {
            match self {
                M::Kick(_) => 0,
                M::Call(_) => 1,
                M::Reply(_) => 2,
                M::Timer(_) => 3,
                M::Deadline(_) => 4,
                M::Hook(_) => 5,
            }
        }
        fn kind_name(&self) -> &'static str {
            ["Kick", "Call", "Reply", "Timer", "Deadline", "Hook"][self.kind_code() as usize]
        }
    }

    /// Sends calls to the dependency, gives up on each after `deadline`, keeps every reply.
    struct Caller {
        dep: ComponentId,
        /// `None`: waits forever.
        deadline: Option<SimDuration>,
        replies: Vec<(SimTime, DepReply)>,
        gave_up: BTreeSet<u64>,
        late: Vec<DepReply>,
    }

    enum Node {
        Dep(Box<Dependency>),
        Caller(Caller),
    }

    impl Component<M> for Node {
        fn on_event(&mut self, msg: M, out: &mut Outbox<'_, M>) {
            match (self, msg) {
                (Node::Dep(d), M::Call(c)) => d.on_call(c, out),
                (Node::Dep(d), M::Timer(t)) => d.on_timer(t, out),
                (Node::Dep(d), M::Hook(f)) => f(d),
                (Node::Caller(c), M::Kick(call)) => {
                    out.send(c.dep, SimDuration::ZERO, M::Call(call));
                    if let Some(d) = c.deadline {
                        out.schedule(d, M::Deadline(call.tag));
                    }
                }
                (Node::Caller(c), M::Deadline(tag)) => {
                    if !c.replies.iter().any(|(_, r)| r.tag == tag) {
                        c.gave_up.insert(tag);
                    }
                }
                (Node::Caller(c), M::Reply(r)) => {
                    if c.gave_up.contains(&r.tag) {
                        c.late.push(r);
                    }
                    c.replies.push((out.now(), r));
                }
                (_, m) => out.violation(format!("misrouted {m:?}")),
            }
        }
    }

    struct World {
        sim: Sim<M, Node>,
        dep: ComponentId,
        caller: ComponentId,
    }

    impl World {
        fn new(mock: &str, seed: u64, deadline: Option<SimDuration>) -> World {
            let spec = parse_mock("test.toml", mock).unwrap_or_else(|e| panic!("{e}"));
            let mut sim = Sim::new(RootSeed::new(seed), Limits::GENEROUS);
            let rng = sim.rng("deps.test");
            let dep = sim.add("dep", Node::Dep(Box::new(Dependency::new(spec, rng))));
            let caller = sim.add(
                "caller",
                Node::Caller(Caller {
                    dep,
                    deadline,
                    replies: Vec::new(),
                    gave_up: BTreeSet::new(),
                    late: Vec::new(),
                }),
            );
            World { sim, dep, caller }
        }
        /// The caller sends `call` (its `reply_to` set to the caller) at `at`.
        fn kick(&mut self, at: SimTime, call: DepCall) {
            let call = DepCall {
                reply_to: self.caller,
                ..call
            };
            self.sim.schedule(at, self.caller, M::Kick(call)).unwrap();
        }
        /// Applies `f` to the dependency at `at`.
        fn hook(&mut self, at: SimTime, f: fn(&mut Dependency)) {
            self.sim.schedule(at, self.dep, M::Hook(f)).unwrap();
        }
        /// Runs to the end (a world runs once: schedule everything first).
        fn run(&mut self) -> TraceHash {
            let report = self.sim.run();
            assert_eq!(report.outcome, crate::kernel::Outcome::Drained);
            report.trace_hash
        }
        fn dep(&self) -> &Dependency {
            match self.sim.component(self.dep) {
                Node::Dep(d) => d,
                Node::Caller(_) => unreachable!(),
            }
        }
        fn dep_mut(&mut self) -> &mut Dependency {
            match self.sim.component_mut(self.dep) {
                Node::Dep(d) => d,
                Node::Caller(_) => unreachable!(),
            }
        }
        fn caller(&self) -> &Caller {
            match self.sim.component(self.caller) {
                Node::Caller(c) => c,
                Node::Dep(_) => unreachable!(),
            }
        }
        fn reply(&self, tag: u64) -> DepReply {
            let mut r = self.caller().replies.iter().filter(|(_, r)| r.tag == tag);
            let (_, first) = *r.next().unwrap_or_else(|| panic!("no reply to {tag}"));
            assert!(r.next().is_none(), "two replies to {tag}");
            first
        }
    }

    /// A placeholder `reply_to`: `World::kick` sets the real one.
    fn call(tag: u64, op: DepOp) -> DepCall {
        DepCall::new(tag, ComponentId::new(0), op)
    }

    const DISKS: &str = r#"name = "disks"
kind = "block_storage"
description = "test disks"
concurrency = 4
queue_limit = 10
latency = "det:10ms"
token_ttl = "1h"
token_capacity = 2

[[endpoint]]
op = "create_disk"
method = "POST"
path = "/d"
status = 200
body = "{}"
batch_factor = 0.5

[[endpoint]]
op = "attach_disk"
method = "POST"
path = "/d/a"
status = 200
body = "{}"

[[endpoint]]
op = "detach_disk"
method = "POST"
path = "/d/d"
status = 200
body = "{}"

[[endpoint]]
op = "delete_disk"
method = "DELETE"
path = "/d"
status = 200
body = "{}"
"#;

    fn ms(n: u64) -> SimDuration {
        SimDuration::from_ms(n)
    }
    fn at_ms(n: u64) -> SimTime {
        SimTime::ZERO + ms(n)
    }
    const NEVER: Option<SimDuration> = None;

    #[test]
    fn concurrency_limit_and_queue_overflow() {
        let mut w = World::new(DISKS, 1, NEVER);
        for tag in 0..100 {
            w.kick(SimTime::ZERO, call(tag, DepOp::CreateDisk));
        }
        w.run();
        let s = w.dep().stats();
        // 4 in service, 10 waiting, 86 turned away at once.
        assert_eq!(s.calls, 100);
        assert_eq!(s.rejected, 86);
        assert_eq!(s.errors_of(ErrorCode::ServiceUnavailable), 86);
        assert_eq!(s.ok, 14);
        assert_eq!(s.started, 14);
        assert_eq!(s.max_concurrency, 4);
        assert_eq!(s.max_queue, 10);
        assert_eq!(w.dep().records_live(), 14);
        let replies = &w.caller().replies;
        assert_eq!(replies.len(), 100);
        let at = |t: SimTime| {
            replies
                .iter()
                .filter(|(when, r)| *when == t && r.result.is_ok())
                .count()
        };
        // Served in FIFO rounds of 4: 10, 20, 30 ms; the last 2 at 40 ms.
        assert_eq!(
            [at(at_ms(10)), at(at_ms(20)), at(at_ms(30)), at(at_ms(40))],
            [4, 4, 4, 2]
        );
        let rejected_now = replies
            .iter()
            .filter(|(t, r)| *t == SimTime::ZERO && r.result.is_err())
            .count();
        assert_eq!(rejected_now, 86);
        // FIFO: the first 14 calls were the ones served.
        let mut served: Vec<u64> = replies
            .iter()
            .filter(|(_, r)| r.result.is_ok())
            .map(|(_, r)| r.tag)
            .collect();
        served.sort();
        assert_eq!(served, (0..14).collect::<Vec<_>>());
        assert_eq!(s.latency.count(), 14);
        assert_eq!(s.latency.max_ns(), Some(ms(40).as_ns()));
        assert_eq!((w.dep().in_flight(), w.dep().queued()), (0, 0));
    }

    #[test]
    fn error_probability_is_honoured_within_4_sd() {
        let mock = DISKS
            .replace("concurrency = 4", "concurrency = 100000")
            .replace(
                "batch_factor = 0.5",
                "errors = [{ code = \"InternalError\", probability = 0.1 }]",
            );
        let mut w = World::new(&mock, 7, NEVER);
        let n = 100_000u64;
        for tag in 0..n {
            w.kick(SimTime::from_ns(tag * 1_000), call(tag, DepOp::CreateDisk));
        }
        w.run();
        let s = w.dep().stats();
        let failed = s.errors_of(ErrorCode::InternalError);
        let sd = (n as f64 * 0.1 * 0.9).sqrt();
        assert!(
            (failed as f64 - 10_000.0).abs() <= 4.0 * sd,
            "{failed} InternalErrors of {n}"
        );
        assert_eq!(s.injected[FaultCode::InternalError.index()], failed);
        assert_eq!(s.ok + failed, n);
        // Failed calls change nothing; each success made one disk.
        assert_eq!(w.dep().records_live() as u64, s.ok);
        assert!(w.caller().replies.iter().all(|(_, r)| match r.result {
            Err(e) => e.injected && e.code == ErrorCode::InternalError,
            Ok(_) => true,
        }));
    }

    #[test]
    fn blackhole_never_replies_but_holds_the_slot() {
        let mut w = World::new(DISKS, 3, NEVER);
        w.hook(SimTime::ZERO, |d| d.set_blackhole(true));
        for tag in 0..12 {
            w.kick(SimTime::ZERO, call(tag, DepOp::CreateDisk));
        }
        // Off again at 100 ms: calls are answered.
        w.hook(at_ms(100), |d| d.set_blackhole(false));
        w.kick(at_ms(100), call(99, DepOp::CreateDisk));
        w.run();
        let s = w.dep().stats();
        let replies = &w.caller().replies;
        assert_eq!(replies.len(), 1, "no reply to a blackholed call");
        assert_eq!(replies[0].1.tag, 99);
        assert_eq!((s.timeouts, s.started, s.ok), (12, 13, 1));
        assert_eq!(s.injected[FaultCode::Timeout.index()], 12);
        assert_eq!(w.dep().records_live(), 1, "a blackholed request never ran");
        assert_eq!(s.max_concurrency, 4);
        // 12 calls through 4 slots held 10 ms each: 4 waited 10 ms, 4 waited 20 ms.
        assert_eq!(s.max_queue, 8);
    }

    #[test]
    fn an_executing_timeout_leaves_an_orphan_and_no_reply() {
        let mock = DISKS.replace(
            "batch_factor = 0.5",
            "errors = [{ code = \"timeout\", probability = 1.0, executes = true }]",
        );
        let mut w = World::new(&mock, 3, Some(ms(50)));
        for tag in 0..3 {
            w.kick(
                SimTime::ZERO,
                call(tag, DepOp::CreateDisk).with_token(100 + tag),
            );
        }
        w.run();
        assert_eq!(w.caller().replies.len(), 0);
        assert_eq!(w.caller().gave_up.len(), 3);
        assert_eq!(w.dep().stats().timeouts, 3);
        // The disks exist, owned by the tokens of calls whose callers gave up.
        let owners: Vec<u64> = w.dep().records().map(|(_, r)| r.owner_token).collect();
        assert_eq!(owners, [100, 101, 102]);
    }

    #[test]
    fn a_reply_after_the_callers_deadline_leaves_the_record() {
        // Latency 10 ms, deadline 5 ms: every reply comes after the caller gave up.
        let mut w = World::new(DISKS, 5, Some(ms(5)));
        for tag in 0..4 {
            w.kick(SimTime::ZERO, call(tag, DepOp::CreateDisk).with_count(2));
        }
        w.run();
        let c = w.caller();
        assert_eq!(c.gave_up.len(), 4);
        assert_eq!(c.late.len(), 4, "every reply arrived after the deadline");
        for r in &c.late {
            let ok = r.result.unwrap();
            assert_eq!(ok.resources.count, 2);
            for id in ok.resources.iter() {
                let rec = w.dep().record(id).expect("the orphan exists");
                assert_eq!(
                    (rec.kind, rec.state),
                    (ResourceKind::Disk, RecordState::Active)
                );
            }
        }
        assert_eq!(w.dep().records_live(), 8);
    }

    #[test]
    fn same_token_returns_the_same_resources() {
        let mut w = World::new(DISKS, 9, NEVER);
        let create = |tag| call(tag, DepOp::CreateDisk).with_count(3).with_token(42);
        // Twice at once (both in flight together) and once a second later.
        w.kick(SimTime::ZERO, create(1));
        w.kick(SimTime::ZERO, create(2));
        w.kick(at_ms(1000), create(3));
        // Same token, other parameters.
        w.kick(
            at_ms(2000),
            call(4, DepOp::CreateDisk).with_count(1).with_token(42),
        );
        // No token: a new disk each time.
        w.kick(at_ms(3000), call(5, DepOp::CreateDisk));
        w.kick(at_ms(3000), call(6, DepOp::CreateDisk));
        w.run();
        let first = w.reply(1).result.unwrap();
        assert!(!first.replayed);
        assert_eq!(first.resources.count, 3);
        for tag in [2, 3] {
            let again = w.reply(tag).result.unwrap();
            assert_eq!(again.resources, first.resources);
            assert!(again.replayed);
        }
        assert_eq!(
            w.reply(4).result.unwrap_err().code,
            ErrorCode::IdempotentParameterMismatch
        );
        assert_ne!(
            w.reply(5).result.unwrap().resources,
            w.reply(6).result.unwrap().resources
        );
        let s = w.dep().stats();
        assert_eq!((s.replays, s.records_created), (2, 5));
        assert_eq!(w.dep().records_live(), 5);
    }

    #[test]
    fn tokens_are_forgotten_after_ttl_or_past_capacity() {
        // token_capacity = 2, token_ttl = 1h.
        let mut w = World::new(DISKS, 9, NEVER);
        for (i, token) in [1u64, 2, 3].into_iter().enumerate() {
            w.kick(
                at_ms(i as u64 * 100),
                call(token, DepOp::CreateDisk).with_token(token),
            );
        }
        // Token 1 was evicted by token 3: a repeat creates anew. Token 3 is remembered.
        w.kick(at_ms(1000), call(11, DepOp::CreateDisk).with_token(1));
        w.kick(at_ms(1000), call(13, DepOp::CreateDisk).with_token(3));
        // After the TTL, token 3 is forgotten too.
        let later = SimTime::ZERO + SimDuration::from_secs(3700);
        w.kick(later, call(23, DepOp::CreateDisk).with_token(3));
        w.run();
        assert!(!w.reply(11).result.unwrap().replayed);
        assert!(w.reply(13).result.unwrap().replayed);
        assert!(!w.reply(23).result.unwrap().replayed);
        assert_eq!(w.dep().records_live(), 5);
        assert!(w.dep().tokens_remembered() <= 2);
    }

    const HOSTS: &str = r#"name = "inv"
kind = "inventory"
description = "test inventory"
concurrency = 8
queue_limit = 8
latency = "det:1ms"
[stock]
default = 100
per_type = { 1 = 10 }

[[endpoint]]
op = "allocate_host"
method = "POST"
path = "/h"
status = 200
body = "{}"

[[endpoint]]
op = "release_host"
method = "DELETE"
path = "/h"
status = 200
body = "{}"
"#;

    #[test]
    fn no_stock_when_exhausted_and_exact_stock_accounting() {
        let mut w = World::new(HOSTS, 2, NEVER);
        let t1 = InstanceType(1);
        let alloc = |tag, n| {
            call(tag, DepOp::AllocateHost)
                .with_count(n)
                .with_instance_type(t1)
        };
        for i in 0..4 {
            w.kick(at_ms(10 * i), alloc(i, 3));
        }
        w.kick(at_ms(50), alloc(4, 1)); // takes the last one
        w.kick(at_ms(60), alloc(5, 1)); // none left
        // Ids are issued in order from 1: the first allocation holds hosts 1..=3.
        let first = ResourceRange {
            first: ResourceId(1),
            count: 3,
        };
        w.kick(at_ms(100), call(6, DepOp::ReleaseHost).with_target(first));
        w.kick(at_ms(110), alloc(7, 3));
        w.kick(at_ms(120), alloc(8, 1));
        w.run();
        for tag in [0, 1, 2, 4, 7] {
            assert!(w.reply(tag).result.is_ok(), "{tag}");
        }
        for tag in [3, 5, 8] {
            let e = w.reply(tag).result.unwrap_err();
            assert_eq!((e.code, e.injected), (ErrorCode::NoStock, false));
        }
        assert_eq!(w.reply(0).result.unwrap().resources, first);
        assert_eq!(w.reply(6).result.unwrap().resources, first);
        let d = w.dep();
        assert_eq!(d.stock_remaining(t1), Some(0));
        assert_eq!(d.hosts_allocated(t1), Some(10));
        assert_eq!(
            d.stock_remaining(InstanceType(2)),
            Some(100),
            "other types untouched"
        );
        assert_eq!(d.hosts_allocated(InstanceType(2)), Some(0));
        assert_eq!(d.stats().errors_of(ErrorCode::NoStock), 3);
        assert_eq!(d.stats().injected[FaultCode::NoStock.index()], 0);
        assert_eq!(d.records_live(), 10);
        assert_eq!(
            (d.stats().records_created, d.stats().records_deleted),
            (13, 3)
        );
        assert!(d.record(ResourceId(1)).is_none(), "released");
        assert_eq!(d.record(ResourceId(4)).unwrap().instance_type, t1);
    }

    #[test]
    fn delete_attach_detach_follow_record_state() {
        let mut w = World::new(DISKS, 4, NEVER);
        let disks = ResourceRange {
            first: ResourceId(1),
            count: 2,
        };
        w.kick(SimTime::ZERO, call(1, DepOp::CreateDisk).with_count(2));
        w.kick(at_ms(100), call(2, DepOp::AttachDisk).with_target(disks));
        w.kick(at_ms(200), call(3, DepOp::DeleteDisk).with_target(disks));
        w.kick(at_ms(300), call(4, DepOp::AttachDisk).with_target(disks));
        w.kick(at_ms(400), call(5, DepOp::DetachDisk).with_target(disks));
        w.kick(at_ms(500), call(6, DepOp::DeleteDisk).with_target(disks));
        w.kick(at_ms(600), call(7, DepOp::DeleteDisk).with_target(disks));
        w.run();
        let code = |tag| w.reply(tag).result.unwrap_err().code;
        assert_eq!(w.reply(1).result.unwrap().resources, disks);
        assert!(w.reply(2).result.is_ok());
        assert_eq!(
            code(3),
            ErrorCode::IncorrectInstanceStatus,
            "attached: not deleted"
        );
        assert_eq!(
            code(4),
            ErrorCode::IncorrectInstanceStatus,
            "already attached"
        );
        assert!(w.reply(5).result.is_ok());
        assert_eq!(w.reply(6).result.unwrap().resources, disks);
        assert_eq!(code(7), ErrorCode::InstanceNotFound, "already gone");
        assert_eq!(w.dep().records_live(), 0);
    }

    #[test]
    fn malformed_calls_are_refused_at_once() {
        let mut w = World::new(DISKS, 4, NEVER);
        w.kick(SimTime::ZERO, call(1, DepOp::AllocateHost)); // not served here
        w.kick(SimTime::ZERO, call(2, DepOp::CreateDisk).with_count(0));
        w.kick(SimTime::ZERO, call(3, DepOp::CreateDisk).with_count(101)); // max_batch 100
        w.kick(SimTime::ZERO, call(4, DepOp::DeleteDisk)); // no target
        w.run();
        for tag in 1..=4 {
            assert_eq!(
                w.reply(tag).result.unwrap_err().code,
                ErrorCode::InvalidParameter
            );
        }
        let at: Vec<SimTime> = w.caller().replies.iter().map(|(t, _)| *t).collect();
        assert_eq!(at, [SimTime::ZERO; 4]);
        assert_eq!((w.dep().stats().invalid, w.dep().stats().started), (4, 0));
    }

    #[test]
    fn batch_latency_and_fault_hooks() {
        let mut w = World::new(DISKS, 4, NEVER);
        // det 10 ms × (1 + 0.5 × (3 − 1)) = 20 ms.
        w.kick(SimTime::ZERO, call(1, DepOp::CreateDisk).with_count(3));
        // × 2 + 1 ms.
        w.hook(at_ms(100), |d| {
            d.set_extra_latency(2.0, SimDuration::from_ms(1))
        });
        w.kick(at_ms(100), call(2, DepOp::CreateDisk));
        w.hook(at_ms(200), |d| {
            d.set_error_override(FaultCode::Throttling, Some(1.0))
        });
        w.kick(at_ms(200), call(3, DepOp::CreateDisk));
        w.hook(at_ms(300), Dependency::clear_faults);
        w.kick(at_ms(300), call(4, DepOp::CreateDisk));
        w.run();
        let at: Vec<SimTime> = w.caller().replies.iter().map(|(t, _)| *t).collect();
        assert_eq!(at, [at_ms(20), at_ms(121), at_ms(221), at_ms(310)]);
        let e = w.reply(3).result.unwrap_err();
        assert_eq!((e.code, e.injected), (ErrorCode::Throttling, true));
        assert!(w.reply(4).result.is_ok());
        assert_eq!(w.dep().faults(), &Faults::default());
    }

    /// The chunked record table answers as a map by id would, in id order, and holds no chunk
    /// without a live record: one record kept from the start does not make it span every id
    /// handed out since.
    #[test]
    fn record_table_matches_a_btreemap() {
        let rec = |origin: u64| ResourceRecord {
            kind: ResourceKind::Host,
            owner_token: 0,
            origin,
            state: RecordState::Active,
            instance_type: InstanceType(0),
            created: SimTime::ZERO,
            changed: SimTime::ZERO,
        };
        let mut t = RecordTable::default();
        let mut m = BTreeMap::new();
        let mut rng = RootSeed::new(7).fork("records");
        let mut next = 1;
        for step in 0..2_000u64 {
            if rng.unit() < 0.55 {
                let n = 1 + rng.below(3);
                for id in next..next + n {
                    t.push(ResourceId(id), rec(step));
                    m.insert(ResourceId(id), rec(step));
                }
                next += n + u64::from(rng.unit() < 0.1);
            } else {
                let id = ResourceId(rng.below(next + 2));
                assert_eq!(t.remove(id), m.remove(&id));
            }
            let id = ResourceId(rng.below(next + 2));
            assert_eq!(t.get(id), m.get(&id));
            assert_eq!(t.get_mut(id).copied(), m.get(&id).copied());
            assert_eq!(t.len(), m.len());
        }
        assert!(t.iter().eq(m.iter().map(|(id, r)| (*id, r))));
        assert!(t.chunks() <= t.len().max(1));
        // A record pinned at id 0, then a million created and deleted after it.
        let mut t = RecordTable::default();
        t.push(ResourceId(0), rec(0));
        for id in 1..1_000_000 {
            t.push(ResourceId(id), rec(id));
            if id > 10 {
                t.remove(ResourceId(id - 10)).expect("live");
            }
        }
        assert_eq!(t.len(), 11);
        assert!(t.chunks() <= 2, "{} chunks", t.chunks());
    }

    /// Plan settings with `f` applied to endpoint `ep` of DISKS (create, attach, detach,
    /// delete), the others neutral.
    fn plan_on(ep: usize, f: impl Fn(&mut EndpointFaults)) -> Vec<EndpointFaults> {
        let mut plan = vec![EndpointFaults::default(); 4];
        f(&mut plan[ep]);
        plan
    }

    #[test]
    fn plan_latency_acts_on_its_endpoint_only() {
        let mut w = World::new(DISKS, 4, NEVER);
        let disks = ResourceRange {
            first: ResourceId(1),
            count: 1,
        };
        // Create (endpoint 0): 10 ms × 3 + 5 ms (det) + 2 × 1 ms (det at scale 2) = 37 ms.
        w.dep_mut().set_plan_faults(plan_on(0, |e| {
            e.latency_mult = 3.0;
            e.latency_add = vec![
                (Dist::constant(0.005).unwrap(), 1.0),
                (Dist::constant(0.001).unwrap(), 2.0),
            ];
        }));
        w.kick(SimTime::ZERO, call(1, DepOp::CreateDisk));
        // Attach (endpoint 1) keeps its 10 ms.
        w.kick(at_ms(100), call(2, DepOp::AttachDisk).with_target(disks));
        w.run();
        let at: Vec<SimTime> = w.caller().replies.iter().map(|(t, _)| *t).collect();
        assert_eq!(at, [at_ms(37), at_ms(110)]);
        assert_eq!(w.dep().stats().fault_delayed, 1);
    }

    /// Account 7 has its own settings (×3 latency, then also a blackhole, on create_disk);
    /// account 8's calls and calls of no account get the unscoped plan (+5 ms on create_disk).
    #[test]
    fn account_settings_act_on_their_accounts_calls_only() {
        fn plans(hole: bool) -> (Vec<EndpointFaults>, Vec<(AccountId, Vec<EndpointFaults>)>) {
            let unscoped = plan_on(0, |e| {
                e.latency_add = vec![(Dist::constant(0.005).unwrap(), 1.0)]
            });
            let mut seven = unscoped.clone();
            seven[0].latency_mult = 3.0;
            seven[0].blackhole = hole;
            (unscoped, vec![(AccountId(7), seven)])
        }
        let mut w = World::new(DISKS, 4, NEVER);
        let (unscoped, by_account) = plans(false);
        w.dep_mut().set_plan_faults(unscoped);
        w.dep_mut().set_account_plan_faults(by_account);
        w.kick(
            SimTime::ZERO,
            call(1, DepOp::CreateDisk).with_account(AccountId(7)),
        );
        w.kick(
            at_ms(100),
            call(2, DepOp::CreateDisk).with_account(AccountId(8)),
        );
        w.kick(at_ms(200), call(3, DepOp::CreateDisk));
        w.hook(at_ms(250), |d| d.set_account_plan_faults(plans(true).1));
        w.kick(
            at_ms(300),
            call(4, DepOp::CreateDisk).with_account(AccountId(7)),
        );
        w.kick(
            at_ms(300),
            call(5, DepOp::CreateDisk).with_account(AccountId(8)),
        );
        // Cleared: account 7 gets the unscoped plan again and is no longer counted apart.
        w.hook(at_ms(350), |d| d.set_account_plan_faults(Vec::new()));
        w.kick(
            at_ms(400),
            call(6, DepOp::CreateDisk).with_account(AccountId(7)),
        );
        w.run();
        let replies: Vec<(u64, SimTime)> = w
            .caller()
            .replies
            .iter()
            .map(|(t, r)| (r.tag, *t))
            .collect();
        // 10 ms × 3 + 5 ms for account 7; 10 ms + 5 ms for the others; call 4 blackholed.
        assert_eq!(
            replies,
            [
                (1, at_ms(35)),
                (2, at_ms(115)),
                (3, at_ms(215)),
                (5, at_ms(315)),
                (6, at_ms(415))
            ]
        );
        let s = w.dep().stats();
        assert_eq!((s.fault_delayed, s.fault_blackholed, s.ok), (6, 1, 5));
        assert_eq!(
            s.scoped_accounts.iter().collect::<Vec<_>>(),
            [(
                &AccountId(7),
                &ScopedAccountStats {
                    started: 2,
                    fault_failed: 1,
                    fault_delayed: 2
                }
            )]
        );
    }

    #[test]
    fn neutral_plan_settings_clear_and_keep_the_hooks() {
        let mut w = World::new(DISKS, 4, NEVER);
        let d = w.dep_mut();
        d.set_error_override(FaultCode::Throttling, Some(0.0));
        d.set_plan_faults(plan_on(2, |e| e.blackhole = true));
        assert_eq!(d.faults().plan.len(), 4);
        d.set_plan_faults(vec![EndpointFaults::default(); 4]);
        assert!(d.faults().plan.is_empty(), "all neutral: none kept");
        assert_eq!(
            d.faults().overrides[FaultCode::Throttling.index()],
            Some(0.0)
        );
        assert_eq!(d.endpoint_index(DepOp::DetachDisk), Some(2));
        assert_eq!(d.endpoint_index(DepOp::AllocateHost), None);
    }

    #[test]
    fn overlapping_error_faults_combine_as_independent_causes() {
        let mut e = EndpointFaults::default();
        e.add_error(FaultCode::InternalError, 0.5);
        e.add_error(FaultCode::InternalError, 0.2);
        let p = e.errors[FaultCode::InternalError.index()].unwrap();
        assert!((p - 0.6).abs() < 1e-12, "1 - 0.5 × 0.8 = 0.6, got {p}");
        // A plan probability replaces the file's and the hook's for that code, on its endpoint.
        let mock = DISKS.replace("concurrency = 4", "concurrency = 100000");
        let mut w = World::new(&mock, 8, NEVER);
        w.dep_mut()
            .set_error_override(FaultCode::InternalError, Some(0.9));
        w.dep_mut().set_plan_faults(plan_on(0, |x| *x = e.clone()));
        let n = 20_000u64;
        for tag in 0..n {
            w.kick(SimTime::from_ns(tag * 1_000), call(tag, DepOp::CreateDisk));
        }
        w.run();
        let s = w.dep().stats();
        let failed = s.errors_of(ErrorCode::InternalError);
        let sd = (n as f64 * 0.6 * 0.4).sqrt();
        assert!(
            (failed as f64 - 0.6 * n as f64).abs() <= 4.0 * sd,
            "{failed} of {n}"
        );
        assert_eq!(s.fault_errors, failed);
    }

    #[test]
    fn partial_outage_downs_its_fraction_of_keys_sticky_by_target() {
        let mock = DISKS.replace("concurrency = 4", "concurrency = 100000");
        let mut w = World::new(&mock, 8, NEVER);
        let salt = 0x5eed;
        w.dep_mut().set_plan_faults(vec![
            EndpointFaults {
                outages: vec![(salt, 0.25)],
                ..EndpointFaults::default()
            };
            4
        ]);
        let n = 20_000u64;
        for tag in 0..n {
            w.kick(SimTime::from_ns(tag * 1_000), call(tag, DepOp::CreateDisk));
        }
        w.run();
        let s = w.dep().stats();
        let sd = (n as f64 * 0.25 * 0.75).sqrt();
        assert!(
            (s.fault_outage as f64 - 0.25 * n as f64).abs() <= 4.0 * sd,
            "{} of {n} down",
            s.fault_outage
        );
        assert_eq!(s.timeouts, s.fault_outage);
        assert_eq!(s.ok + s.fault_outage, n);
        // Which calls are down is a function of the key and the salt alone.
        let e = &w.dep().faults().plan[0];
        let down: Vec<bool> = (0..n)
            .map(|tag| {
                let c = DepCall {
                    reply_to: w.caller,
                    ..call(tag, DepOp::CreateDisk)
                };
                e.down(outage_key(&c))
            })
            .collect();
        let replied: BTreeSet<u64> = w.caller().replies.iter().map(|(_, r)| r.tag).collect();
        for (tag, d) in down.iter().enumerate() {
            assert_eq!(*d, !replied.contains(&(tag as u64)), "tag {tag}");
        }
        // A record's calls all land where it lives: same key whatever the op.
        let r = ResourceRange {
            first: ResourceId(7),
            count: 1,
        };
        assert_eq!(
            outage_key(&call(1, DepOp::AttachDisk).with_target(r)),
            outage_key(&call(2, DepOp::DeleteDisk).with_target(r))
        );
    }

    /// A mixed workload over the shipped inventory mock.
    fn mixed_run(seed: u64) -> (TraceHash, Vec<(SimTime, DepReply)>, u64) {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mocks/inventory.toml"),
        )
        .unwrap();
        let mut w = World::new(&text, seed, Some(ms(200)));
        w.dep_mut()
            .set_error_override(FaultCode::InternalError, Some(0.05));
        w.dep_mut()
            .set_error_override(FaultCode::Timeout, Some(0.02));
        for tag in 0..5_000u64 {
            let c = call(tag, DepOp::AllocateHost)
                .with_count(1 + (tag % 7) as u32)
                .with_instance_type(InstanceType((tag % 4) as u16))
                .with_token(if tag % 3 == 0 { 0 } else { tag / 2 + 1 });
            w.kick(SimTime::from_ns(tag * 200_000), c);
        }
        let hash = w.run();
        (
            hash,
            w.caller().replies.clone(),
            w.dep().records_live() as u64,
        )
    }

    #[test]
    fn same_inputs_give_the_same_trace() {
        let a = mixed_run(11);
        let b = mixed_run(11);
        assert_eq!(a, b);
        let c = mixed_run(12);
        assert_ne!(a.0, c.0, "another seed, another run");
        assert!(a.1.iter().any(|(_, r)| r.result.is_err()));
        assert!(a.2 > 0);
    }
}
