//! Idempotency by client token (domain §3): the key, the parameter fingerprint, and a pure,
//! sans-IO store of records with TTL, capacity bound and an atomic / non-atomic switch.
//!
//! # Semantics
//!
//! A request that carries a [`ClientToken`] is identified by an [`IdemKey`] (account, API, token
//! key) and the [`fingerprint`] of its business parameters ([`Params`], never the raw request:
//! request id, timestamps and deadline change on every retry). [`IdempotencyStore::check`]
//! answers one of:
//!
//! | record of the key                     | same fingerprint               | other fingerprint |
//! |---------------------------------------|--------------------------------|-------------------|
//! | none (or expired)                     | `Proceed`: run the mutation    | `Proceed`         |
//! | in progress                           | `InProgress` → 403 `LastTokenProcessing` | `Mismatch` → 400 `IdempotentParameterMismatch` |
//! | completed with an [`Outcome`]         | `Replay(outcome)`: same status, same InstanceIds, no side effect | `Mismatch` |
//!
//! Records move `InProgress → Completed(outcome)` by [`IdempotencyStore::complete`]; failures
//! are memoised like successes (a RunInstances that failed `NoStock` answers `NoStock` to every
//! retry of its token). [`IdempotencyStore::abandon`] removes an unfinished record (the call will
//! never finish: its node crashed, or its transaction rolled back) so a retry can proceed; a
//! completed record is never abandoned.
//!
//! **TTL.** A record lives for `ttl` (default 24 h) after its last write (the reservation, then
//! the completion): written at `t`, it is there while `now < t + ttl` and gone from
//! `now = t + ttl` on (exclusive end). Expiry is lazy on every touch of the key, incremental on
//! every check (two records from the front of the expiry index), and complete on
//! [`IdempotencyStore::expire`], which returns the count for the wiring's archive job. The expiry
//! index is a `BTreeMap<(expires_at, write seq), key>`, so each expiry costs O(log n).
//!
//! **Whose clock.** The node supplies the time in its statements (`expires_at = ? + ttl`,
//! `WHERE expires_at > ?`), so a record's expiry is computed from the writing node's clock and
//! judged by the reading node's: the `DbOp::Idem*` / `L2Op::Idem` steps carry the calling
//! node's clock skew, and the store's `*_by` methods ([`IdempotencyStore::check_by`]) take
//! that clock's reading ([`caller_clock`]) beside the true time. A node ahead finds records
//! expired early (a retry within the TTL proceeds anew: a second instance set, which the
//! `token_one_instance_set` invariant, judged on true time, reports); a node behind writes
//! records that expire early in true time and still sees records past their TTL. The store's
//! own housekeeping (sweeps, eviction) runs on true time.
//!
//! **Capacity.** At most `capacity` records are held. Adding one to a full store first drops the
//! expired records, then evicts the oldest-expiring ones, counting `evictions`, and among them
//! `evicted_in_progress` (unfinished records: a retry of such a key proceeds again, so each is a
//! lost guarantee the report must show; size the capacity so it stays 0).
//!
//! **Atomic or not.** In [`Mode::Atomic`] the check and the reservation are one step: whatever
//! interleaving of requests, a key never has two live Proceeds (property-tested). In
//! [`Mode::NonAtomic`] (`atomic = false`, the classic bug) the check only reads and the
//! reservation is written later by [`IdempotencyStore::record_in_progress`]; a second request
//! checked in between also gets `Proceed` — the store keeps an invisible `Reserved` record to
//! tell, flags that [`Reservation::is_duplicate`] and counts `duplicates_detected`. The late write
//! is blind (an upsert) and completions are last-writer-wins, so after a duplicate the record
//! ends up holding whichever call wrote last.
//!
//! # Integration (guidance for the API node)
//!
//! Tokens are taken by the mutating APIs ([`supports_token`]: RunInstances, CreateInstance,
//! Start/Stop/Reboot/DeleteInstance); `Request::client_token == 0` means none, and such requests
//! skip all of this. [`IdemKey::from_request`] builds the key, `fingerprint(req.api,
//! &req.params)` the fingerprint. The store is pure: the node (or the world, if several nodes
//! share one store, which they must for the guarantee to hold across nodes) owns it and calls it
//! from its event handlers; the cost of each call is a query the plan sends.
//!
//! **Costs, in `db` terms** (with [`StoreKind::Db`], the default):
//! - the check is one primary-key read of the idempotency table: a `PointRead`-class query
//!   (today's `DbOp` has no idempotency read, so the wiring adds one, or charges
//!   `DbOp::GetInstance` as the stand-in of the same class), sent to the primary (a replica read
//!   could miss a fresh reservation);
//! - the record write is `DbOp::AppendRows { table: Table::Idempotency, rows: 1 }` (class
//!   `WorkflowStepWrite`): it grows the table whose size slows the shard's indexed queries;
//! - expiry is the cleanup job's `DbOp::ArchiveRows` batches on `Table::Idempotency` (the
//!   `cleanup` module): give that table a retention equal to the store's TTL, so the table holds
//!   what the store holds; [`IdempotencyStore::expire`]'s count is the store-side figure to
//!   compare with (or to size batches by, if the wiring drives the archive itself).
//!
//! With [`StoreKind::L2Cache`] the check is a cache GET and the record write a cache SET on the
//! cache component instead, and the database sees neither. A cache write is never in the
//! database transaction, so a crash between the mutation's commit and the SET loses the record
//! even in `Atomic` mode (the check-and-reserve is still atomic: SETNX). The topology routes
//! the node's `DbOp::Idem*` steps to the L2 as `L2Op::Idem` (no connection taken); an L2 error
//! fails the call with 503 like a database error would, and an L2 flush loses every record
//! ([`IdemStats::lost`]), so a retry after it creates a second set of instances.
//!
//! **Atomic mode** (one transaction):
//! 1. After the CPU step, the PointRead; at its reply call `check(now, key, fp)`. `Replay(o)` →
//!    finish at once with `o.status()` and `o.instances()` (the same InstanceIds); `Mismatch` /
//!    `InProgress` → finish with [`Check::error_code`]; `Proceed` → keep the [`Reservation`] in
//!    the work record and run the plan (GetImage, AllocateHost for Run/Create; GetInstance for
//!    Start/Stop/Delete).
//! 2. The mutation (`InsertInstances` / `UpdateInstanceState`) carries the record: charge the
//!    `AppendRows { Idempotency, 1 }` as part of the same transaction (send it back to back on
//!    the same connection, or add its latency to the mutation's) and call
//!    `complete(now, key, Outcome::Ok { instances: w.created })` in the same handler as the
//!    mutation's successful reply, so no other event can see the gap.
//! 3. A business failure decided by the plan (`NoStock`, `QuotaExceed`, `InstanceNotFound`,
//!    `IncorrectInstanceStatus`, `InvalidParameter`: see [`memoise_failure`]) →
//!    `complete(now, key, Outcome::Failed(code))`. An infrastructure failure before the mutation
//!    (`ServiceUnavailable`, `InternalError` from the pool, `DeadlineExceeded`) rolls the
//!    transaction back → `abandon(key)`, so the client's retry can succeed. Once the mutation
//!    committed, complete with `Ok` whatever the client is answered (the node can abort on the
//!    deadline after a successful insert: the instances exist, and a retry must get them).
//! 4. Node crash: `abandon` every reservation whose mutation was not sent. One whose mutation
//!    query is in flight may have committed with its record: leave it to answer
//!    `LastTokenProcessing` until the TTL, or complete it with what the database applied.
//!
//! **Non-atomic mode** (`atomic = false`): check (PointRead, `check` only reads) → dependency
//! calls → mutation → a separate `AppendRows { Idempotency, 1 }`, at whose reply the node calls
//! `record_in_progress(now, key, fp)` then `complete(now, key, outcome)`. Every retry that
//! arrives between the check and that write proceeds too (a duplicate the store flags), and a
//! crash between the mutation and the write leaves no record at all (a retry proceeds: another
//! duplicate). A variant writes the reservation right after the check (`record_in_progress` at
//! that write's reply), shrinking the window to one database round trip without closing it.

mod store;
#[cfg(test)]
mod tests;
mod token;

pub use store::{
    Check, IdemConfig, IdemConfigBuilder, IdemConfigError, IdemStats, IdempotencyStore, Mode,
    Outcome, RecordState, RecordView, Reservation, StoreKind,
};
pub use token::{ClientToken, MAX_TOKEN_LEN, TokenError};

use crate::api::types::{AccountId, Api, ErrorCode, Params, Request};
use crate::kernel::{SimDuration, SimTime};

/// What a clock `skew_ns` off the true one (ahead if positive) reads at true time `now`,
/// saturating at time zero and at the end of time.
pub fn caller_clock(now: SimTime, skew_ns: i64) -> SimTime {
    if skew_ns >= 0 {
        now.saturating_add(SimDuration::from_ns(skew_ns.unsigned_abs()))
    } else {
        SimTime::from_ns(now.as_ns().saturating_sub(skew_ns.unsigned_abs()))
    }
}

/// The identity of an idempotent call: the account, the API and the token's 64-bit key
/// ([`ClientToken::as_u64`], never 0). The same token on another API or account is another key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdemKey {
    pub account: AccountId,
    pub api: Api,
    pub token: u64,
}

impl crate::kernel::IndexKey for IdemKey {
    #[inline]
    fn hash64(&self) -> u64 {
        crate::kernel::mix64(
            self.token
                ^ u64::from(self.account.0).rotate_left(32)
                ^ (self.api.index() as u64) << 56,
        )
    }
}

impl IdemKey {
    /// The key of a request, or `None` if it carries no token (`client_token == 0`) or its API
    /// takes none ([`supports_token`]).
    pub fn from_request(req: &Request) -> Option<IdemKey> {
        (req.client_token != 0 && supports_token(req.api)).then_some(IdemKey {
            account: req.account,
            api: req.api,
            token: req.client_token,
        })
    }
}

/// Whether `api` takes a ClientToken: the mutating ones (reads are idempotent by nature).
pub const fn supports_token(api: Api) -> bool {
    api.is_mutating()
}

/// Whether a call that failed with `code` should memoise the failure under its token
/// ([`IdempotencyStore::complete`]) rather than [`IdempotencyStore::abandon`] its reservation.
///
/// Business failures are memoised: the plan decided them, and the same parameters would decide
/// them again (`InvalidParameter`, `IncorrectInstanceStatus`, `NoStock`, `QuotaExceed`,
/// `InstanceNotFound`). Infrastructure failures are not: the transaction rolled back and a retry
/// should be allowed to succeed (`Throttling`, `InternalError`, `ServiceUnavailable`,
/// `DeadlineExceeded`). The check's own answers (`IdempotentParameterMismatch`,
/// `LastTokenProcessing`) never reach a record.
pub const fn memoise_failure(code: ErrorCode) -> bool {
    match code {
        ErrorCode::InvalidParameter
        | ErrorCode::IncorrectInstanceStatus
        | ErrorCode::NoStock
        | ErrorCode::QuotaExceed
        | ErrorCode::InstanceNotFound => true,
        ErrorCode::Throttling
        | ErrorCode::IdempotentParameterMismatch
        | ErrorCode::LastTokenProcessing
        | ErrorCode::InternalError
        | ErrorCode::ServiceUnavailable
        | ErrorCode::DeadlineExceeded
        | ErrorCode::BadGateway => false,
    }
}

/// A stable 64-bit fingerprint of a call's business parameters: FNV-1a over a fixed little-endian
/// encoding, through a SplitMix64 finaliser (both written out here, not `std::hash`, so the value
/// is the same in every build and on every platform; a golden test pins it).
///
/// Covered: the API (by name, so reordering the `Api` enum changes nothing) and every field of
/// [`Params`] (amount, min_amount, instance_type, instance, force, page), which is by definition
/// the business parameters; the request id, times, account and token are not (the account and
/// token are in the key). Layout, version 1: `b"idem.fp.v1"`, the API name, `0xff`, amount u16,
/// min_amount u16, instance_type u16, instance (tag u8: 0 none / 1 some, then u64, 0 for none),
/// force u8, page u32.
pub fn fingerprint(api: Api, params: &Params) -> u64 {
    let mut h = fnv1a64(FNV_OFFSET, b"idem.fp.v1");
    h = fnv1a64(h, api.name().as_bytes());
    h = fnv1a64(h, &[0xff]);
    h = fnv1a64(h, &params.amount.to_le_bytes());
    h = fnv1a64(h, &params.min_amount.to_le_bytes());
    h = fnv1a64(h, &params.instance_type.0.to_le_bytes());
    let (tag, id) = match params.instance {
        Some(id) => (1u8, id.0),
        None => (0u8, 0),
    };
    h = fnv1a64(h, &[tag]);
    h = fnv1a64(h, &id.to_le_bytes());
    h = fnv1a64(h, &[u8::from(params.force)]);
    h = fnv1a64(h, &params.page.to_le_bytes());
    splitmix64(h)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a (64-bit) of `bytes`, continuing from `h` (start from the offset basis).
fn fnv1a64(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The SplitMix64 finaliser: spreads every input bit over the whole output.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
