//! Resource-consistency reconciliation: compares what the control plane believes each instance
//! holds (the workflow engine's resource table: host, disk, ENI, EIP, billing) with each
//! dependency's own records, finds orphans (records nobody references — e.g. created by a call
//! whose reply was lost) and dangling references (references to records that do not exist),
//! and repairs orphans by releasing them through the dependency's own API, with the load that
//! costs.
//!
//! The audit reads several components' state at one instant, so it runs in the driver between
//! events (`Sim::run_until`), at fixed instants: hourly (near-real-time) or daily (T+1). Its
//! repairs are ordinary `DepCall`s; their replies come back to the `Reconciler` component, which
//! measures the time from an inconsistency's creation to its repair.

use crate::api::types::InstanceId;
use crate::deps::{
    DepCall, DepOp, DepReply, Dependency, RecordState, ResourceId, ResourceKind, ResourceRange,
};
use crate::kernel::{ComponentId, SimDuration, SimTime};
use crate::metrics::LatencyHistogram;
use crate::workflow::InstanceResources;
use std::collections::{BTreeMap, BTreeSet};

/// A validated reconciliation schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconConfig {
    period: SimDuration,
    grace: SimDuration,
    max_repairs_per_audit: u32,
}

/// Why a reconciliation schedule is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconConfigError {
    #[error("`period` must be longer than 0 (e.g. \"1h\" near-real-time, \"1d\" for T+1)")]
    ZeroPeriod,
    #[error("`max_repairs_per_audit` must be at least 1")]
    NoRepairs,
}

impl ReconConfig {
    /// Audits every `period`; records younger than `grace` are left alone (their creating call
    /// may still be in flight); at most `max_repairs_per_audit` repairs per audit.
    pub fn new(
        period: SimDuration,
        grace: SimDuration,
        max_repairs_per_audit: u32,
    ) -> Result<ReconConfig, ReconConfigError> {
        if period.is_zero() {
            return Err(ReconConfigError::ZeroPeriod);
        }
        if max_repairs_per_audit == 0 {
            return Err(ReconConfigError::NoRepairs);
        }
        Ok(ReconConfig {
            period,
            grace,
            max_repairs_per_audit,
        })
    }
    /// Near-real-time: hourly, 10 minutes' grace, 10,000 repairs an audit *(assumed)*.
    pub fn hourly() -> ReconConfig {
        ReconConfig {
            period: SimDuration::HOUR,
            grace: SimDuration::from_secs(600),
            max_repairs_per_audit: 10_000,
        }
    }
    /// T+1: daily, one hour's grace *(assumed)*.
    pub fn daily() -> ReconConfig {
        ReconConfig {
            period: SimDuration::DAY,
            grace: SimDuration::HOUR,
            max_repairs_per_audit: 100_000,
        }
    }
    pub fn period(&self) -> SimDuration {
        self.period
    }
    pub fn grace(&self) -> SimDuration {
        self.grace
    }
}

/// What reconciliation found and did.
#[derive(Clone, Debug, Default)]
pub struct ReconStats {
    pub audits: u64,
    /// Orphan records found, by resource kind (`ResourceKind` order), counted once per record.
    pub orphans_found: BTreeMap<&'static str, u64>,
    /// References to records that do not exist, by kind, counted at each audit that sees them.
    pub dangling_seen: BTreeMap<&'static str, u64>,
    pub repairs_sent: u64,
    pub repaired: u64,
    /// Confirmed releases by resource kind.
    pub repaired_by_kind: BTreeMap<&'static str, u64>,
    pub repair_failed: u64,
    /// From an orphan's creation to the reply confirming its release, ns.
    pub time_to_repair: LatencyHistogram,
}

/// One release to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repair {
    pub to: ComponentId,
    pub call: DepCall,
}

/// The reconciler component: plans repairs at each audit, counts their outcomes.
#[derive(Clone, Debug)]
pub struct Reconciler {
    cfg: ReconConfig,
    stats: ReconStats,
    /// Repairs in flight: tag → (dependency, record, record creation time).
    in_flight: BTreeMap<u64, (ComponentId, ResourceId, SimTime, &'static str)>,
    /// Records already counted as orphans (so an orphan is counted once).
    known: BTreeSet<(ComponentId, ResourceId)>,
    next_tag: u64,
}

fn release_op(kind: ResourceKind, state: RecordState) -> Option<DepOp> {
    Some(match (kind, state) {
        (ResourceKind::Host, _) => DepOp::ReleaseHost,
        (ResourceKind::Disk, RecordState::Attached) => DepOp::DetachDisk,
        (ResourceKind::Disk, _) => DepOp::DeleteDisk,
        (ResourceKind::Eni, _) => DepOp::DeleteEni,
        (ResourceKind::Eip, _) => DepOp::ReleaseEip,
        (ResourceKind::BillingSubscription, _) => DepOp::StopBilling,
        (ResourceKind::Bandwidth | ResourceKind::Image, _) => return None,
    })
}

impl Reconciler {
    pub fn new(cfg: ReconConfig) -> Reconciler {
        Reconciler {
            cfg,
            stats: ReconStats::default(),
            in_flight: BTreeMap::new(),
            known: BTreeSet::new(),
            next_tag: 1,
        }
    }

    pub fn config(&self) -> &ReconConfig {
        &self.cfg
    }
    pub fn stats(&self) -> &ReconStats {
        &self.stats
    }

    /// Compares the fleet with every dependency's records at `now` and returns the repairs to
    /// send (replies to `me`). Deterministic: fleet in instance order, records in id order.
    pub fn audit<'a>(
        &mut self,
        now: SimTime,
        me: ComponentId,
        fleet: impl Iterator<Item = (InstanceId, &'a InstanceResources)>,
        deps: &[(ComponentId, &Dependency)],
    ) -> Vec<Repair> {
        self.stats.audits += 1;
        // A repair still unanswered from an earlier audit is lost (a blackholed call): count it
        // failed and plan it again.
        self.stats.repair_failed += self.in_flight.len() as u64;
        self.in_flight.clear();
        let mut referenced: BTreeMap<ResourceKind, BTreeSet<ResourceId>> = BTreeMap::new();
        for (_, r) in fleet {
            for (kind, id) in [
                (ResourceKind::Host, r.host()),
                (ResourceKind::Disk, r.disk()),
                (ResourceKind::Eni, r.eni()),
                (ResourceKind::Eip, r.eip()),
                (ResourceKind::BillingSubscription, r.billing()),
            ] {
                if let Some(id) = id {
                    referenced.entry(kind).or_default().insert(id);
                }
            }
        }
        let mut repairs = Vec::new();
        let mut held: BTreeMap<ResourceKind, BTreeSet<ResourceId>> = BTreeMap::new();
        for &(dep_id, dep) in deps {
            for (id, rec) in dep.records() {
                held.entry(rec.kind).or_default().insert(id);
                let Some(op) = release_op(rec.kind, rec.state) else {
                    continue;
                };
                if now.saturating_since(rec.created) < self.cfg.grace
                    || referenced.get(&rec.kind).is_some_and(|s| s.contains(&id))
                {
                    continue;
                }
                if self.known.insert((dep_id, id)) {
                    *self.stats.orphans_found.entry(rec.kind.name()).or_default() += 1;
                }
                if repairs.len() < self.cfg.max_repairs_per_audit as usize {
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    self.in_flight
                        .insert(tag, (dep_id, id, rec.created, rec.kind.name()));
                    let call = DepCall::new(tag, me, op).with_target(ResourceRange {
                        first: id,
                        count: 1,
                    });
                    repairs.push(Repair { to: dep_id, call });
                }
            }
        }
        for (kind, ids) in &referenced {
            let missing = ids
                .iter()
                .filter(|id| !held.get(kind).is_some_and(|h| h.contains(id)))
                .count() as u64;
            if missing > 0 {
                *self.stats.dangling_seen.entry(kind.name()).or_default() += missing;
            }
        }
        self.stats.repairs_sent += repairs.len() as u64;
        repairs
    }

    /// A repair's reply. A detach is the first half of a disk's release: the next audit deletes it.
    pub fn on_dep_reply(&mut self, r: DepReply, now: SimTime) {
        let Some((_, _, created, kind)) = self.in_flight.remove(&r.tag) else {
            return;
        };
        match r.result {
            Ok(_) => {
                self.stats.repaired += 1;
                *self.stats.repaired_by_kind.entry(kind).or_default() += 1;
                self.stats
                    .time_to_repair
                    .record(now.saturating_since(created).as_ns());
            }
            Err(_) => self.stats.repair_failed += 1,
        }
    }

    /// Orphans older than the grace period at `now` (for checks): what an audit would repair.
    pub fn count_orphans<'a>(
        &self,
        now: SimTime,
        fleet: impl Iterator<Item = (InstanceId, &'a InstanceResources)>,
        deps: &[(ComponentId, &Dependency)],
    ) -> u64 {
        let mut probe = self.clone();
        probe.audit(now, ComponentId::new(0), fleet, deps).len() as u64
    }
}
