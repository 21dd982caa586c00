//! Invariant checkers: what the control plane must never do, whatever the faults. Each check
//! runs during the run (between events, from what the components observed) or at its end, and a
//! failure is a [`Violation`]: the invariant, the virtual time and what was seen.
//!
//! The checks are observers: they read components' own records and the database's rows
//! directly (no queries, no latency), so turning them on changes no event of the run.

use crate::api::types::{InstanceIdRange, InstanceState};
use crate::idempotency::IdemKey;
use crate::kernel::{FixMap, SimDuration, SimTime};
use std::collections::VecDeque;
use std::fmt;

/// The invariants checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// At most one set of instances per (account, API, ClientToken).
    TokenOneInstanceSet,
    /// An idempotent replay answers with the InstanceIds of the original call.
    TokenSameIds,
    /// Every request gets exactly one response.
    OneResponse,
    /// Instance states move only along the legal lifecycle.
    Lifecycle,
    /// Every accepted creation reaches a terminal state within the liveness bound after the
    /// faults stop.
    Liveness,
    /// After reconciliation converges, no orphan or dangling resource is left.
    Reconciled,
    /// Reconciliation releases no record that a live instance (a row not `Deleted`, on the
    /// primary) references: what it judges an orphan is one.
    RepairsSpareLive,
    /// No cache read is older than its hard TTL plus the invalidation delay.
    CacheStaleness,
    /// A workflow step creates at most one set of resources, whatever its retries and
    /// redeliveries (records of one logical operation come from one execution).
    OneResourceSetPerStep,
}

impl Invariant {
    pub const ALL: [Invariant; 9] = [
        Invariant::TokenOneInstanceSet,
        Invariant::TokenSameIds,
        Invariant::OneResponse,
        Invariant::Lifecycle,
        Invariant::Liveness,
        Invariant::Reconciled,
        Invariant::CacheStaleness,
        Invariant::OneResourceSetPerStep,
        Invariant::RepairsSpareLive,
    ];

    /// A stable name for reports and reproduction files.
    pub const fn name(self) -> &'static str {
        match self {
            Invariant::TokenOneInstanceSet => "token_one_instance_set",
            Invariant::TokenSameIds => "token_same_ids",
            Invariant::OneResponse => "one_response",
            Invariant::Lifecycle => "lifecycle",
            Invariant::Liveness => "liveness",
            Invariant::Reconciled => "reconciled",
            Invariant::CacheStaleness => "cache_staleness",
            Invariant::OneResourceSetPerStep => "one_resource_set_per_step",
            Invariant::RepairsSpareLive => "repairs_spare_live",
        }
    }

    pub fn from_name(s: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.name() == s)
    }

    /// What it promises, in a sentence.
    pub const fn promise(self) -> &'static str {
        match self {
            Invariant::TokenOneInstanceSet => {
                "at most one set of instances per (account, ClientToken)"
            }
            Invariant::TokenSameIds => "idempotent replays return the same InstanceIds",
            Invariant::OneResponse => "every request gets exactly one response",
            Invariant::Lifecycle => "instance states move only along the legal lifecycle",
            Invariant::Liveness => {
                "every accepted creation reaches a terminal state within the liveness bound"
            }
            Invariant::Reconciled => "reconciliation leaves no orphan or dangling resource",
            Invariant::CacheStaleness => {
                "no cache read older than its hard TTL plus the invalidation delay"
            }
            Invariant::OneResourceSetPerStep => {
                "a workflow step creates at most one resource set, whatever its retries"
            }
            Invariant::RepairsSpareLive => {
                "reconciliation releases no record a live instance references"
            }
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant: a found bug (or a planted one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub at: SimTime,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at {}: {}",
            self.invariant, self.at, self.detail
        )
    }
}

/// Bounds the checks use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantConfig {
    /// A creation still in a transitional state this long after its last update, at the end
    /// of a drained run, breaks liveness. Default 660 s: the longest shipped workflow deadline
    /// (CreateInstances, 600 s) plus a minute for its compensations.
    pub liveness_bound: SimDuration,
    /// Violations kept per run (the first ones; the rest are counted).
    pub max_kept: usize,
    /// Whether nodes record what the token and cache checks judge (on by default; off only
    /// to measure the core without its observers).
    pub observe: bool,
    /// Added to the L1's hard TTL to bound how outdated a cached read may be: the invalidation
    /// delay and delivery (default 5 s, far above the default 10–100 ms broadcast, so only a
    /// lost or skipped invalidation breaks it).
    pub staleness_slack: SimDuration,
}

impl Default for InvariantConfig {
    fn default() -> Self {
        InvariantConfig {
            liveness_bound: SimDuration::from_secs(660),
            max_kept: 16,
            observe: true,
            staleness_slack: SimDuration::from_secs(5),
        }
    }
}

/// What a node saw when it answered a creation carrying a ClientToken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenAnswer {
    pub at: SimTime,
    pub key: IdemKey,
    pub instances: InstanceIdRange,
    /// The rows were inserted by this request (not a replay of the token's record).
    pub fresh: bool,
}

/// The first instance set of every token seen (the oracle of the two token invariants).
/// An entry older than the token TTL no longer counts (past it, a token may legitimately
/// create anew) and is dropped once [`LEDGER_SLACK`] more has passed, so the ledger holds the
/// tokens of one TTL (and the slack), not every token of the run.
#[derive(Clone, Debug, Default)]
pub struct TokenLedger {
    /// Looked up by key, never iterated: a fixed-hash map.
    first: FixMap<IdemKey, (InstanceIdRange, SimTime)>,
    /// Every entry's key and instant, in insertion order, to drop them past the TTL.
    order: VecDeque<(SimTime, IdemKey)>,
}

/// How long past the TTL an entry is kept before it is dropped: answers are checked in batches
/// (per node, once a simulated second), so one checked later may be a little older than one
/// checked before it; an hour covers any such disorder, and no answer older than the TTL finds
/// its entry counted either way.
pub const LEDGER_SLACK: SimDuration = SimDuration::from_secs(3_600);

impl TokenLedger {
    /// Checks one answer against the token's first instance set.
    pub fn observe(&mut self, a: TokenAnswer, ttl: SimDuration) -> Option<Violation> {
        self.drop_before(a.at, ttl);
        let k = a.key;
        match self.first.get(&k) {
            Some(&(first, since)) if a.at.saturating_since(since) < ttl => {
                if first == a.instances {
                    return None;
                }
                let (invariant, what) = if a.fresh {
                    (
                        Invariant::TokenOneInstanceSet,
                        "created a second instance set",
                    )
                } else {
                    (Invariant::TokenSameIds, "a replay answered other ids")
                };
                Some(Violation {
                    invariant,
                    at: a.at,
                    detail: format!(
                        "account {} token {:#x} ({:?}): {what}: {} instances from #{} (first: {} from #{} at {})",
                        a.key.account.0,
                        a.key.token,
                        a.key.api,
                        a.instances.count,
                        a.instances.first.0,
                        first.count,
                        first.first.0,
                        since
                    ),
                })
            }
            _ => {
                self.first.insert(k, (a.instances, a.at));
                self.order.push_back((a.at, k));
                None
            }
        }
    }

    /// Drops the entries inserted more than `ttl` + [`LEDGER_SLACK`] before `now` (an entry
    /// replaced since keeps its newer instant and stays).
    fn drop_before(&mut self, now: SimTime, ttl: SimDuration) {
        while let Some(&(since, k)) = self.order.front() {
            let expires = since.saturating_add(ttl).saturating_add(LEDGER_SLACK);
            if expires > now {
                break;
            }
            self.order.pop_front();
            if self.first.get(&k).is_some_and(|&(_, s)| s == since) {
                self.first.remove(&k);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.first.len()
    }
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }
}

/// Whether an instance may move `from → to` (a write of the same state is a no-op, legal).
pub fn legal_move(from: InstanceState, to: InstanceState) -> bool {
    from == to || from.can_move_to(to)
}

#[cfg(test)]
mod tests;
