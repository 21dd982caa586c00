//! Resource-consistency reconciliation: compares the control database's instance rows — their
//! state and the records they reference (host, disk, ENI, EIP, billing subscription, whether
//! the disk is attached) — with each dependency's own records, and repairs what differs:
//!
//! - **orphans**: records no row references (e.g. created by a call whose reply was lost) →
//!   released through the dependency's API (an attached disk is detached, then deleted);
//! - **dangling references**: a row references a record the dependency does not hold → the
//!   reference is cleared in the row (a database write); a `Running` instance whose host or disk
//!   is gone is moved to `Stopped` through `Stopping` (the lifecycle allows no direct move), its
//!   billing stopped and its disk detached on the way;
//! - **state mismatches** (stable states only): `Stopped`/`Deleted` with a billing subscription
//!   still active → `StopBilling`; `Stopped`/`Deleted` with the disk attached → `DetachDisk`;
//!   `Running` with the disk not attached → `AttachDisk` (the instance is kept running: the
//!   control plane's intent wins); `Running` (with a host) referencing no billing subscription,
//!   never subscribed or its reference dangling or lost → `StartBilling`, and the row made to
//!   reference the new subscription; `Deleted` still holding a host or ENI → released (a disk or
//!   EIP a `Deleted` row references was kept on purpose and is left alone); a row whose
//!   disk-attached flag disagrees with the disk → the row is corrected;
//! - **stuck rows**: a row still `Pending`, `Starting` or `Stopping` past the grace that no
//!   open workflow holds (the driver reads the workflow table, as it reads the dependencies'
//!   records; e.g. an insert whose node crashed before it started the workflow: a phantom
//!   instance) → a `Pending` row is
//!   failed as its creation workflow would fail it (every record it references released, the
//!   row `Deleted`); a `Starting` or `Stopping` row is finished as a stop (billing stopped, the
//!   disk detached, the row `Stopped`).
//!
//! # The scan
//!
//! At each audit instant (hourly or daily, driven by `World::run_until`) the [`Reconciler`]
//! component starts a scan: keyset-paged [`DbOp::ScanInstances`] queries, shard by shard, at
//! most `pages_per_sec` pages a second, one page in flight. The database executes a page when
//! it starts service and keeps its rows for the caller; when the reply arrives the reconciler
//! asks the driver to pause ([`Outbox::pause`]) and the driver compares the page's rows with the
//! dependencies' records *at that instant* ([`Reconciler::compare_page`]). A row is judged only
//! if it is unchanged since the page read it and its last write is older than the scan's start
//! minus `grace` (a workflow may be between its dependency calls and its row write; workflow
//! deadlines are shorter than the grace). Orphans are judged after the last page: a record
//! older than start − grace that no row scanned referenced. Every finding is counted once (by
//! kind, resource, instance and record) while it lasts; repairs are plans of dependency calls
//! and database writes run in order by the component, their load real. With the cache on, every
//! repair write invalidates the row's cached copies as the workflow engine's writes do (an L2
//! delete and a delayed L1 broadcast to every node).

use crate::api::types::{AccountId, ErrorCode, InstanceId, InstanceState};
use crate::cache::{L1Invalidation, L2Request};
use crate::db::{DbOp, DbQuery, DbReply, DbResult, InstanceResources, InstanceRow, UpdateOutcome};
use crate::deps::{
    DepCall, DepOp, DepReply, Effect, RecordState, ResourceId, ResourceKind, ResourceRange,
    ResourceRecord,
};
use crate::kernel::{ComponentId, Outbox, SimDuration, SimTime};
use crate::metrics::LatencyHistogram;
use crate::workflow::EngineCache;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A validated reconciliation schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconConfig {
    period: SimDuration,
    grace: SimDuration,
    max_repairs_per_audit: u32,
    page_size: u16,
    pages_per_sec: u32,
    /// Whether scan pages read a replica (`true`) or the primary.
    replica_reads: bool,
    /// Whether an orphan is released only when a second orphan pass in a row finds it.
    confirm_orphans: bool,
}

/// Why a reconciliation schedule is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconConfigError {
    #[error("`period` must be longer than 0 (e.g. \"1h\" near-real-time, \"1d\" for T+1)")]
    ZeroPeriod,
    #[error("`max_repairs_per_audit` must be at least 1")]
    NoRepairs,
    #[error("`page_size` must be at least 1 row")]
    ZeroPageSize,
    #[error("`pages_per_sec` must be 1..=1000000")]
    BadRate,
}

impl ReconConfig {
    /// Audits every `period`; rows and records younger than `grace` at the scan's start are left
    /// alone (a workflow may still be working on them); at most `max_repairs_per_audit` repair
    /// plans per audit. Scans 500-row pages at 20 pages a second (see [`ReconConfig::with_scan`]).
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
            page_size: 500,
            pages_per_sec: 20,
            replica_reads: false,
            confirm_orphans: false,
        })
    }
    /// The same schedule with another audit `period` and `grace`.
    pub fn with_timing(
        mut self,
        period: SimDuration,
        grace: SimDuration,
    ) -> Result<ReconConfig, ReconConfigError> {
        if period.is_zero() {
            return Err(ReconConfigError::ZeroPeriod);
        }
        self.period = period;
        self.grace = grace;
        Ok(self)
    }
    /// The scan's page size (rows per `ScanInstances`, at most the database's `max_batch_rows`)
    /// and rate bound (pages started per second).
    pub fn with_scan(
        mut self,
        page_size: u16,
        pages_per_sec: u32,
    ) -> Result<ReconConfig, ReconConfigError> {
        if page_size == 0 {
            return Err(ReconConfigError::ZeroPageSize);
        }
        if !(1..=1_000_000).contains(&pages_per_sec) {
            return Err(ReconConfigError::BadRate);
        }
        self.page_size = page_size;
        self.pages_per_sec = pages_per_sec;
        Ok(self)
    }
    /// Near-real-time: hourly, 10 minutes' grace, 10,000 repairs an audit, 500-row pages at 20
    /// a second (10,000 rows/s) *(assumed)*.
    pub fn hourly() -> ReconConfig {
        ReconConfig {
            period: SimDuration::HOUR,
            grace: SimDuration::from_secs(600),
            max_repairs_per_audit: 10_000,
            page_size: 500,
            pages_per_sec: 20,
            replica_reads: false,
            confirm_orphans: false,
        }
    }
    /// T+1: daily, one hour's grace, 100,000 repairs, bigger batches: 5,000-row pages at 4 a
    /// second (20,000 rows/s, off-peak) *(assumed)*.
    pub fn daily() -> ReconConfig {
        ReconConfig {
            period: SimDuration::DAY,
            grace: SimDuration::HOUR,
            max_repairs_per_audit: 100_000,
            page_size: 5_000,
            pages_per_sec: 4,
            replica_reads: false,
            confirm_orphans: false,
        }
    }
    /// Scan pages read a read replica (`true`: the primary is spared the scans' load, and the
    /// pages see the replica's lag) or the primary (`false`, the default). Rows a lagging
    /// replica does not have yet are missing from their page, so the records they reference
    /// look orphaned unless they are younger than the grace: the grace must cover the lag.
    pub fn with_replica_reads(mut self, on: bool) -> ReconConfig {
        self.replica_reads = on;
        self
    }
    pub fn replica_reads(&self) -> bool {
        self.replica_reads
    }
    /// Releases an orphan only when the next audit's orphan pass finds it again (`true`: mark,
    /// then sweep), instead of at once (`false`, the default). A record that looked orphaned
    /// only because its row was missing from a lagging page (see
    /// [`ReconConfig::with_replica_reads`]) is referenced again one period later, as long as
    /// the period is longer than the lag; real orphans wait one period more.
    pub fn with_orphan_confirmation(mut self, on: bool) -> ReconConfig {
        self.confirm_orphans = on;
        self
    }
    pub fn confirms_orphans(&self) -> bool {
        self.confirm_orphans
    }
    pub fn period(&self) -> SimDuration {
        self.period
    }
    pub fn grace(&self) -> SimDuration {
        self.grace
    }
    pub fn page_size(&self) -> u16 {
        self.page_size
    }
    pub fn pages_per_sec(&self) -> u32 {
        self.pages_per_sec
    }
    /// The least time between two pages' starts.
    pub fn page_interval(&self) -> SimDuration {
        SimDuration::from_ns(1_000_000_000 / u64::from(self.pages_per_sec))
    }
}

/// What kind of inconsistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Inconsistency {
    /// A record no row references.
    Orphan,
    /// A row references a record that does not exist.
    Dangling,
    /// A row's state and a record's state disagree.
    StateMismatch,
    /// A row left in a transitional state (Pending, Starting, Stopping) past the grace that no
    /// open workflow holds (e.g. an insert whose caller crashed before it started the
    /// workflow: a phantom instance).
    Stuck,
}

impl Inconsistency {
    pub const ALL: [Inconsistency; 4] = [
        Inconsistency::Orphan,
        Inconsistency::Dangling,
        Inconsistency::StateMismatch,
        Inconsistency::Stuck,
    ];
    pub const fn name(self) -> &'static str {
        match self {
            Inconsistency::Orphan => "orphan",
            Inconsistency::Dangling => "dangling",
            Inconsistency::StateMismatch => "state_mismatch",
            Inconsistency::Stuck => "stuck",
        }
    }
}

/// What an inconsistency is about: a dependency's record, or an instance row itself (stuck).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Subject {
    Record(ResourceKind),
    Instance,
}

impl Subject {
    /// The label in the statistics: the resource kind's name, or `instance`.
    const fn name(self) -> &'static str {
        match self {
            Subject::Record(k) => k.name(),
            Subject::Instance => "instance",
        }
    }
}

/// The reconciler's own wake-ups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconTimer {
    /// An audit instant: start a scan (the driver schedules it).
    Audit,
    /// Send the scan's next page (the rate bound).
    NextPage,
    /// Start the repairs the last comparison planned.
    Kick,
}

/// What reconciliation found and did.
#[derive(Clone, Debug, Default)]
pub struct ReconStats {
    pub audits: u64,
    pub scans_started: u64,
    pub scans_completed: u64,
    /// Audits that found the previous scan still running (and so started none).
    pub scans_overrun: u64,
    /// Scan pages answered, and rows they returned.
    pub pages: u64,
    pub rows_read: u64,
    /// Pages the database refused (retried at the next page slot).
    pub page_failures: u64,
    /// From an audit's instant to its scan's last page, ns.
    pub scan_time: LatencyHistogram,
    /// Rows not judged: changed since their page read them, or written within the grace.
    pub rows_skipped: u64,
    /// Inconsistencies found, by (inconsistency, resource kind), each counted once (stuck rows
    /// under the kind `instance`).
    pub found: BTreeMap<(&'static str, &'static str), u64>,
    /// Inconsistencies repaired (their plan completed), by (inconsistency, resource kind).
    pub repaired_by: BTreeMap<(&'static str, &'static str), u64>,
    /// Orphan records found, by resource kind (the `orphan` part of `found`).
    pub orphans_found: BTreeMap<&'static str, u64>,
    /// With orphan confirmation: orphans seen by one pass and left for the next to confirm
    /// (each time; those the next pass finds referenced were never orphans).
    pub orphan_candidates: u64,
    /// Cache invalidations sent after repair writes (one L2 delete and one L1 broadcast each),
    /// when the cache is on.
    pub invalidations: u64,
    /// Repair plans started, and the calls and writes they sent.
    pub repairs_sent: u64,
    pub repair_actions: u64,
    /// Inconsistencies repaired, in all.
    pub repaired: u64,
    /// Repaired, by resource kind.
    pub repaired_by_kind: BTreeMap<&'static str, u64>,
    /// Plans that failed (an error, a conflicting write) or were lost (unanswered by the next
    /// audit); the next scan finds their inconsistencies again.
    pub repair_failed: u64,
    /// Plans not started: past `max_repairs_per_audit`.
    pub repairs_deferred: u64,
    /// From an inconsistency's creation (the record's or the row's timestamp) to the reply that
    /// completes its repair, ns.
    pub time_to_repair: LatencyHistogram,
    /// The same, by inconsistency kind.
    pub time_to_repair_by: BTreeMap<&'static str, LatencyHistogram>,
}

impl ReconStats {
    /// Found of one (inconsistency, resource kind).
    pub fn found_of(&self, what: Inconsistency, kind: ResourceKind) -> u64 {
        self.found
            .get(&(what.name(), kind.name()))
            .copied()
            .unwrap_or(0)
    }
    /// Repaired of one (inconsistency, resource kind).
    pub fn repaired_of(&self, what: Inconsistency, kind: ResourceKind) -> u64 {
        self.repaired_by
            .get(&(what.name(), kind.name()))
            .copied()
            .unwrap_or(0)
    }
    pub fn found_total(&self) -> u64 {
        self.found.values().sum()
    }
    /// Stuck rows found (each counted once).
    pub fn stuck_found(&self) -> u64 {
        let key = (Inconsistency::Stuck.name(), Subject::Instance.name());
        self.found.get(&key).copied().unwrap_or(0)
    }
    /// Stuck rows repaired (moved to a stable state).
    pub fn stuck_repaired(&self) -> u64 {
        let key = (Inconsistency::Stuck.name(), Subject::Instance.name());
        self.repaired_by.get(&key).copied().unwrap_or(0)
    }
}

/// Where the reconciler sends: the database (and its shard count) and the dependency holding
/// each kind of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconTargets {
    pub db: ComponentId,
    pub shards: u16,
    pub inventory: ComponentId,
    pub block_storage: ComponentId,
    pub vpc: ComponentId,
    pub billing: ComponentId,
}

impl ReconTargets {
    /// The dependency holding records of `kind` (`None`: rows never reference that kind).
    pub fn dep_of(&self, kind: ResourceKind) -> Option<ComponentId> {
        match kind {
            ResourceKind::Host => Some(self.inventory),
            ResourceKind::Disk => Some(self.block_storage),
            ResourceKind::Eni | ResourceKind::Eip => Some(self.vpc),
            ResourceKind::BillingSubscription => Some(self.billing),
            ResourceKind::Bandwidth | ResourceKind::Image => None,
        }
    }
}

/// One row of a page as the driver hands it over: the row as read, the row now, and the
/// records its references name, now (by slot, `None` when the dependency does not hold it).
#[derive(Clone, Copy, Debug)]
pub struct RowView {
    pub row: InstanceRow,
    pub current: Option<InstanceRow>,
    pub records: [Option<ResourceRecord>; InstanceResources::SLOTS],
    /// An open workflow drives the instance (the workflow table has one): a transitional row
    /// is then in progress, not stuck.
    pub held: bool,
}

/// One step of a repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Dep {
        to: ComponentId,
        op: DepOp,
        target: ResourceId,
    },
    /// A call that creates one record (a billing subscription); the plan's next database
    /// write references what it created.
    Create {
        to: ComponentId,
        op: DepOp,
    },
    Db {
        account: AccountId,
        op: DbOp,
    },
}

#[derive(Clone, Copy, Debug)]
struct Finding {
    what: Inconsistency,
    kind: Subject,
    since: SimTime,
}

/// A repair: actions run in order; its findings are repaired when the last succeeds.
#[derive(Clone, Debug)]
struct Plan {
    actions: Vec<Action>,
    next: usize,
    findings: Vec<Finding>,
}

/// (inconsistency, subject, instance id or 0, record id or 0): what makes a finding the same one.
type Key = (Inconsistency, Subject, u64, u64);

#[derive(Clone, Debug)]
struct Scan {
    started: SimTime,
    shard: u16,
    after: InstanceId,
    /// The page in flight, and when it was sent.
    tag: Option<u64>,
    sent: SimTime,
    /// Every (kind, record) a scanned row references.
    referenced: BTreeSet<(ResourceKind, ResourceId)>,
    /// Findings seen in this scan (what `known` keeps after it).
    seen: BTreeSet<Key>,
    /// The last page has been answered.
    done: bool,
}

/// The reconciler component: scans, plans repairs from the driver's comparisons, runs them,
/// counts their outcomes.
#[derive(Clone, Debug)]
pub struct Reconciler {
    cfg: ReconConfig,
    targets: ReconTargets,
    stats: ReconStats,
    scan: Option<Scan>,
    /// The records the last orphan pass planned to release (for the driver's check that none
    /// is referenced by a live row: [`Reconciler::take_orphan_releases`]).
    orphan_releases: Vec<(ResourceKind, ResourceId)>,
    /// With orphan confirmation: the orphans the last pass found, released if the next one
    /// finds them again.
    orphan_candidates: BTreeSet<(ResourceKind, ResourceId)>,
    /// A page answered and not yet compared: its tag.
    ready: Option<u64>,
    pending: VecDeque<Plan>,
    in_flight: BTreeMap<u64, Plan>,
    /// Findings already counted (so each is counted once while it lasts).
    known: BTreeSet<Key>,
    started_this_audit: u32,
    next_tag: u64,
    /// When the last completed scan started.
    last_scan: Option<SimTime>,
    /// Where repaired rows' cached copies are invalidated, when the cache is on (the same
    /// wiring as the workflow engine's: an L2 delete and a delayed L1 broadcast).
    cache: Option<EngineCache>,
}

/// Messages the reconciler sends.
pub trait ReconMsg:
    From<DbQuery> + From<DepCall> + From<ReconTimer> + From<L2Request> + From<L1Invalidation>
{
}

impl<M> ReconMsg for M where
    M: From<DbQuery> + From<DepCall> + From<ReconTimer> + From<L2Request> + From<L1Invalidation>
{
}

/// Whether reconciliation releases unreferenced records of `kind` (orphans).
pub fn releasable(kind: ResourceKind) -> bool {
    release_op(kind).is_some()
}

fn release_op(kind: ResourceKind) -> Option<DepOp> {
    Some(match kind {
        ResourceKind::Host => DepOp::ReleaseHost,
        ResourceKind::Disk => DepOp::DeleteDisk,
        ResourceKind::Eni => DepOp::DeleteEni,
        ResourceKind::Eip => DepOp::ReleaseEip,
        ResourceKind::BillingSubscription => DepOp::StopBilling,
        ResourceKind::Bandwidth | ResourceKind::Image => return None,
    })
}

const HOST: usize = 0;
const DISK: usize = 1;
const ENI: usize = 2;
const EIP: usize = 3;
const BILLING: usize = 4;

impl Reconciler {
    pub fn new(cfg: ReconConfig, targets: ReconTargets) -> Reconciler {
        Reconciler {
            cfg,
            targets,
            stats: ReconStats::default(),
            scan: None,
            orphan_releases: Vec::new(),
            orphan_candidates: BTreeSet::new(),
            ready: None,
            pending: VecDeque::new(),
            in_flight: BTreeMap::new(),
            known: BTreeSet::new(),
            started_this_audit: 0,
            next_tag: 1,
            last_scan: None,
            cache: None,
        }
    }

    /// Invalidates the cached copy of every row a repair writes (see [`EngineCache`]).
    pub fn with_cache(mut self, cache: EngineCache) -> Reconciler {
        self.cache = Some(cache);
        self
    }

    /// The invalidation wiring, when the cache is on (a node added mid-run joins its
    /// broadcast).
    pub fn cache_mut(&mut self) -> Option<&mut EngineCache> {
        self.cache.as_mut()
    }

    /// After a repair's write of instance `id` applied at `version` (its arrival at the
    /// database): one L2 delete and one L1 message per node, as the workflow engine sends.
    fn invalidate<M: ReconMsg>(
        &mut self,
        account: AccountId,
        id: InstanceId,
        version: SimTime,
        out: &mut Outbox<'_, M>,
    ) {
        let Some(c) = &mut self.cache else { return };
        c.invalidate_run(account, id, 1, version, out);
        self.stats.invalidations += 1;
    }

    /// When the last completed scan started (its judgement covers what is older than that
    /// minus the grace).
    pub fn last_scan_started(&self) -> Option<SimTime> {
        self.last_scan
    }

    pub fn config(&self) -> &ReconConfig {
        &self.cfg
    }
    pub fn targets(&self) -> &ReconTargets {
        &self.targets
    }
    pub fn stats(&self) -> &ReconStats {
        &self.stats
    }
    /// Whether a scan is running.
    pub fn scanning(&self) -> bool {
        self.scan.is_some()
    }
    /// Repair plans waiting to start or in flight.
    pub fn repairs_outstanding(&self) -> usize {
        self.pending.len() + self.in_flight.len()
    }

    /// The page answered and not yet compared (its tag), taken; and whether it was the scan's
    /// last.
    pub fn take_ready(&mut self) -> Option<(u64, bool)> {
        let tag = self.ready.take()?;
        Some((tag, self.scan.as_ref().is_some_and(|s| s.done)))
    }

    fn tag(&mut self) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    /// Handles a timer.
    pub fn on_timer<M: From<DbQuery> + From<DepCall> + From<ReconTimer>>(
        &mut self,
        t: ReconTimer,
        out: &mut Outbox<'_, M>,
    ) {
        match t {
            ReconTimer::Audit => self.on_audit(out),
            ReconTimer::NextPage => self.send_page(out),
            ReconTimer::Kick => self.start_pending(out),
        }
    }

    fn on_audit<M: From<DbQuery> + From<DepCall> + From<ReconTimer>>(
        &mut self,
        out: &mut Outbox<'_, M>,
    ) {
        self.stats.audits += 1;
        if self.scan.is_some() {
            self.stats.scans_overrun += 1;
            return;
        }
        // A repair still unanswered from an earlier audit is lost (a blackholed call): count it
        // failed; this scan finds its inconsistency again.
        self.stats.repair_failed += self.in_flight.len() as u64;
        self.in_flight.clear();
        self.stats.repairs_deferred += self.pending.len() as u64;
        self.pending.clear();
        self.started_this_audit = 0;
        self.stats.scans_started += 1;
        self.scan = Some(Scan {
            started: out.now(),
            shard: 0,
            after: InstanceId(0),
            tag: None,
            sent: out.now(),
            referenced: BTreeSet::new(),
            seen: BTreeSet::new(),
            done: false,
        });
        self.send_page(out);
    }

    fn send_page<M: From<DbQuery>>(&mut self, out: &mut Outbox<'_, M>) {
        let tag = self.tag();
        let limit = self.cfg.page_size;
        let Some(scan) = self.scan.as_mut().filter(|s| !s.done && s.tag.is_none()) else {
            return;
        };
        scan.tag = Some(tag);
        scan.sent = out.now();
        let q = DbQuery {
            tag,
            reply_to: out.me(),
            account: AccountId(u32::from(scan.shard)),
            read_replica: self.cfg.replica_reads,
            op: DbOp::ScanInstances {
                after: scan.after,
                limit,
            },
        };
        out.send(self.targets.db, SimDuration::ZERO, M::from(q));
    }

    /// A database reply: a scan page, or a repair's write.
    pub fn on_db_reply<M: ReconMsg>(&mut self, r: DbReply, out: &mut Outbox<'_, M>) {
        let page = self.scan.as_ref().is_some_and(|s| s.tag == Some(r.tag));
        if page {
            let now = out.now();
            let interval = self.cfg.page_interval();
            let limit = self.cfg.page_size;
            let shards = self.targets.shards;
            let scan = self.scan.as_mut().expect("checked");
            scan.tag = None;
            let next_at = scan.sent.saturating_add(interval).max(now);
            match r.result {
                Ok(DbResult::Scanned { returned, last }) => {
                    self.stats.pages += 1;
                    self.stats.rows_read += u64::from(returned);
                    match last {
                        Some(l) if returned >= limit => scan.after = l,
                        _ => {
                            scan.shard += 1;
                            scan.after = InstanceId(0);
                            scan.done = scan.shard >= shards;
                        }
                    }
                    self.ready = Some(r.tag);
                    // The driver compares the page before any later event.
                    out.pause();
                    out.send(out.me(), SimDuration::ZERO, M::from(ReconTimer::Kick));
                }
                _ => self.stats.page_failures += 1,
            }
            if !self.scan.as_ref().is_some_and(|s| s.done) {
                out.send_at(out.me(), next_at, M::from(ReconTimer::NextPage));
            }
            return;
        }
        let ok = matches!(r.result, Ok(DbResult::Updated(UpdateOutcome::Done { .. })));
        if ok {
            let written =
                self.in_flight
                    .get(&r.tag)
                    .and_then(|p| match p.actions[p.next] {
                        Action::Db {
                            account,
                            op:
                                DbOp::UpdateInstanceState { id, .. }
                                | DbOp::SetInstanceResources { id, .. },
                        } => Some((account, id)),
                        _ => None,
                    });
            if let Some((account, id)) = written {
                let version = out.now().saturating_sub(r.latency);
                self.invalidate(account, id, version, out);
            }
        }
        self.step_done(r.tag, ok, out);
    }

    /// A dependency reply to a repair's call. A release of a record already gone, or an
    /// attach/detach already done, counts as done.
    pub fn on_dep_reply<M: From<DbQuery> + From<DepCall> + From<ReconTimer>>(
        &mut self,
        r: DepReply,
        out: &mut Outbox<'_, M>,
    ) {
        let op = self
            .in_flight
            .get(&r.tag)
            .and_then(|p| match p.actions[p.next] {
                Action::Dep { op, .. } | Action::Create { op, .. } => Some(op),
                Action::Db { .. } => None,
            });
        let Some(op) = op else {
            return;
        };
        if let (Ok(created), Effect::Create) = (r.result, op.effect()) {
            self.reference_created(r.tag, created.resources.first);
        }
        let ok = match r.result {
            Ok(_) => true,
            Err(e) => match op.effect() {
                Effect::Delete => e.code == ErrorCode::InstanceNotFound,
                Effect::Attach | Effect::Detach => e.code == ErrorCode::IncorrectInstanceStatus,
                _ => false,
            },
        };
        self.step_done(r.tag, ok, out);
    }

    /// A repair's create call made record `id`: the plan's next database write references it
    /// (today only a billing subscription is created).
    fn reference_created(&mut self, tag: u64, id: ResourceId) {
        let Some(plan) = self.in_flight.get_mut(&tag) else {
            return;
        };
        let next = plan.next + 1;
        if let Some(Action::Db {
            op:
                DbOp::SetInstanceResources { resources, .. }
                | DbOp::UpdateInstanceState {
                    resources: Some(resources),
                    ..
                },
            ..
        }) = plan.actions.get_mut(next)
        {
            resources.set(BILLING, Some(id));
        }
    }

    fn step_done<M: From<DbQuery> + From<DepCall>>(
        &mut self,
        tag: u64,
        ok: bool,
        out: &mut Outbox<'_, M>,
    ) {
        let Some(mut plan) = self.in_flight.remove(&tag) else {
            return;
        };
        if !ok {
            self.stats.repair_failed += 1;
            return;
        }
        plan.next += 1;
        if plan.next < plan.actions.len() {
            self.send_action(plan, out);
            return;
        }
        let now = out.now();
        for f in &plan.findings {
            let ttr = now.saturating_since(f.since).as_ns();
            self.stats.repaired += 1;
            *self
                .stats
                .repaired_by
                .entry((f.what.name(), f.kind.name()))
                .or_default() += 1;
            *self
                .stats
                .repaired_by_kind
                .entry(f.kind.name())
                .or_default() += 1;
            self.stats.time_to_repair.record(ttr);
            self.stats
                .time_to_repair_by
                .entry(f.what.name())
                .or_default()
                .record(ttr);
        }
    }

    fn send_action<M: From<DbQuery> + From<DepCall>>(
        &mut self,
        plan: Plan,
        out: &mut Outbox<'_, M>,
    ) {
        let tag = self.tag();
        self.stats.repair_actions += 1;
        match plan.actions[plan.next] {
            Action::Dep { to, op, target } => {
                let call = DepCall::new(tag, out.me(), op).with_target(ResourceRange {
                    first: target,
                    count: 1,
                });
                out.send(to, SimDuration::ZERO, M::from(call));
            }
            Action::Create { to, op } => {
                out.send(
                    to,
                    SimDuration::ZERO,
                    M::from(DepCall::new(tag, out.me(), op)),
                );
            }
            Action::Db { account, op } => {
                let q = DbQuery {
                    tag,
                    reply_to: out.me(),
                    account,
                    read_replica: false,
                    op,
                };
                out.send(self.targets.db, SimDuration::ZERO, M::from(q));
            }
        }
        self.in_flight.insert(tag, plan);
    }

    fn start_pending<M: From<DbQuery> + From<DepCall>>(&mut self, out: &mut Outbox<'_, M>) {
        while let Some(plan) = self.pending.pop_front() {
            if self.started_this_audit >= self.cfg.max_repairs_per_audit {
                self.stats.repairs_deferred += 1 + self.pending.len() as u64;
                self.pending.clear();
                return;
            }
            self.started_this_audit += 1;
            self.stats.repairs_sent += 1;
            self.send_action(plan, out);
        }
    }

    fn note(&mut self, key: Key, f: Finding, findings: &mut Vec<Finding>) {
        if let Some(scan) = self.scan.as_mut() {
            scan.seen.insert(key);
        }
        if self.known.insert(key) {
            *self
                .stats
                .found
                .entry((f.what.name(), f.kind.name()))
                .or_default() += 1;
            if f.what == Inconsistency::Orphan {
                *self.stats.orphans_found.entry(f.kind.name()).or_default() += 1;
            }
        }
        findings.push(f);
    }

    /// Records the workflow table lists for open workflows (read by the driver before the
    /// scan's last comparison): referenced, so never judged orphans.
    pub fn note_held(&mut self, held: impl IntoIterator<Item = (ResourceKind, ResourceId)>) {
        if let Some(scan) = self.scan.as_mut() {
            scan.referenced.extend(held);
        }
    }

    /// The records the orphan passes since the last call planned to release, in judgement
    /// order; the list starts again.
    pub fn take_orphan_releases(&mut self) -> Vec<(ResourceKind, ResourceId)> {
        std::mem::take(&mut self.orphan_releases)
    }

    /// Compares one page's rows with the dependencies' records at `now` (the driver calls it
    /// when the page's reply arrives) and plans the repairs. With `all_records` (after the
    /// scan's last page: every record of every dependency, `(dependency, id, record)`), also
    /// finds the orphans and ends the scan.
    pub fn compare_page(
        &mut self,
        now: SimTime,
        rows: &[RowView],
        all_records: Option<&[(ComponentId, ResourceId, ResourceRecord)]>,
    ) {
        let Some(started) = self.scan.as_ref().map(|s| s.started) else {
            return;
        };
        let cutoff = started.saturating_sub(self.cfg.grace);
        for v in rows {
            if let Some(scan) = self.scan.as_mut() {
                for r in [Some(v.row), v.current].into_iter().flatten() {
                    scan.referenced.extend(r.resources.iter());
                }
            }
            if v.current != Some(v.row) || v.row.last_write() > cutoff {
                self.stats.rows_skipped += 1;
                continue;
            }
            self.plan_row(v);
        }
        if let Some(records) = all_records {
            let mut candidates = BTreeSet::new();
            for &(dep, id, rec) in records {
                let Some(op) = release_op(rec.kind) else {
                    continue;
                };
                let referenced = self
                    .scan
                    .as_ref()
                    .is_some_and(|s| s.referenced.contains(&(rec.kind, id)));
                if rec.created > cutoff || referenced {
                    continue;
                }
                if self.cfg.confirm_orphans && !self.orphan_candidates.contains(&(rec.kind, id)) {
                    // Seen once: judged again at the next audit.
                    candidates.insert((rec.kind, id));
                    self.stats.orphan_candidates += 1;
                    continue;
                }
                let mut findings = Vec::new();
                let f = Finding {
                    what: Inconsistency::Orphan,
                    kind: Subject::Record(rec.kind),
                    since: rec.created,
                };
                self.note((f.what, f.kind, 0, id.0), f, &mut findings);
                self.orphan_releases.push((rec.kind, id));
                let mut actions = Vec::with_capacity(2);
                if rec.kind == ResourceKind::Disk && rec.state == RecordState::Attached {
                    actions.push(Action::Dep {
                        to: dep,
                        op: DepOp::DetachDisk,
                        target: id,
                    });
                }
                actions.push(Action::Dep {
                    to: dep,
                    op,
                    target: id,
                });
                self.pending.push_back(Plan {
                    actions,
                    next: 0,
                    findings,
                });
            }
            self.orphan_candidates = candidates;
            if let Some(scan) = self.scan.take() {
                self.last_scan = Some(scan.started);
                self.stats.scans_completed += 1;
                self.stats
                    .scan_time
                    .record(now.saturating_since(scan.started).as_ns());
                // Keep only what this scan saw: a finding gone (repaired) is forgotten.
                self.known = scan.seen;
            }
        }
    }

    /// Plans the repair of one row older than the grace period (see the module documentation).
    fn plan_row(&mut self, v: &RowView) {
        use InstanceState::*;
        let row = v.row;
        let inst = row.id.0;
        let mut new = row.resources;
        let mut findings = Vec::new();
        let mut actions = Vec::new();
        let mut lost_essential = false;
        let mut rebill = false;
        for (slot, kind) in InstanceResources::KINDS.into_iter().enumerate() {
            let Some(id) = row.resources.at(slot) else {
                continue;
            };
            if v.records[slot].is_some_and(|r| r.kind == kind) {
                continue;
            }
            let f = Finding {
                what: Inconsistency::Dangling,
                kind: Subject::Record(kind),
                since: row.last_write(),
            };
            self.note((f.what, f.kind, inst, id.0), f, &mut findings);
            new.set(slot, None);
            lost_essential |= row.state == Running && (slot == HOST || slot == DISK);
        }
        let stable = !row.state.is_transitional();
        if !stable && !v.held {
            self.plan_stuck(v, new, findings);
            return;
        }
        // From here on: a stable row, or a transitional one a workflow drives (only its
        // dangling references are cleared).
        let target = if lost_essential { Stopped } else { row.state };
        let rec = |new: &InstanceResources, slot: usize| -> Option<(ResourceId, ResourceRecord)> {
            let id = new.at(slot)?;
            Some((id, v.records[slot]?))
        };
        let targets = self.targets;
        let dep = |kind: ResourceKind| targets.dep_of(kind).expect("rows reference it");
        let mismatch = |me: &mut Self,
                        slot: usize,
                        id: ResourceId,
                        since: SimTime,
                        findings: &mut Vec<Finding>| {
            if lost_essential {
                return; // part of the dangling host or disk's repair
            }
            let kind = InstanceResources::KINDS[slot];
            let f = Finding {
                what: Inconsistency::StateMismatch,
                kind: Subject::Record(kind),
                since: since.max(row.updated_at),
            };
            me.note((f.what, f.kind, inst, id.0), f, findings);
        };
        if stable {
            let down = matches!(target, Stopped | Deleted);
            if let (true, Some((id, r))) = (down, rec(&new, BILLING)) {
                mismatch(self, BILLING, id, r.created, &mut findings);
                actions.push(Action::Dep {
                    to: dep(r.kind),
                    op: DepOp::StopBilling,
                    target: id,
                });
                new.set(BILLING, None);
            }
            let mut disk_fixed = false;
            if let Some((id, r)) = rec(&new, DISK) {
                let attached = r.state == RecordState::Attached;
                let want = if down {
                    Some(false)
                } else if target == Running {
                    Some(true)
                } else {
                    None
                };
                if let Some(w) = want.filter(|&w| w != attached) {
                    mismatch(self, DISK, id, r.changed, &mut findings);
                    actions.push(Action::Dep {
                        to: dep(r.kind),
                        op: if w {
                            DepOp::AttachDisk
                        } else {
                            DepOp::DetachDisk
                        },
                        target: id,
                    });
                    new.disk_attached = w;
                    disk_fixed = true;
                }
                if !disk_fixed && new.disk_attached != attached {
                    // The row's flag is stale: correct the row.
                    mismatch(self, DISK, id, r.changed, &mut findings);
                    new.disk_attached = attached;
                }
            }
            // A running instance that references no billing subscription (its reference
            // dangled and was cleared above, or the row never got one) runs unbilled: it is
            // subscribed again and the row made to reference the new subscription. (Only an
            // instance a workflow provisioned, with a host: without workflows rows reference
            // nothing.)
            if target == Running && new.at(HOST).is_some() && new.at(BILLING).is_none() {
                if row.resources.at(BILLING).is_none() {
                    // Not dangling (counted above): never subscribed, or its reference lost.
                    let f = Finding {
                        what: Inconsistency::StateMismatch,
                        kind: Subject::Record(ResourceKind::BillingSubscription),
                        since: row.last_write(),
                    };
                    self.note((f.what, f.kind, inst, 0), f, &mut findings);
                }
                actions.push(Action::Create {
                    to: dep(ResourceKind::BillingSubscription),
                    op: DepOp::StartBilling,
                });
                rebill = true;
            }
            if target == Deleted {
                for slot in [HOST, ENI] {
                    if let Some((id, r)) = rec(&new, slot) {
                        mismatch(self, slot, id, r.created, &mut findings);
                        actions.push(Action::Dep {
                            to: dep(r.kind),
                            op: release_op(r.kind).expect("host or ENI"),
                            target: id,
                        });
                        new.set(slot, None);
                    }
                }
            }
        }
        if findings.is_empty() {
            return;
        }
        let account = row.account;
        if lost_essential {
            for (from, to) in [(Running, Stopping), (Stopping, Stopped)] {
                actions.push(Action::Db {
                    account,
                    op: DbOp::UpdateInstanceState {
                        id: row.id,
                        expect: Some(from),
                        to,
                        resources: Some(new),
                    },
                });
            }
        } else if new != row.resources || rebill {
            actions.push(Action::Db {
                account,
                op: DbOp::SetInstanceResources {
                    id: row.id,
                    expect: Some(row.state),
                    resources: new,
                },
            });
        }
        self.pending.push_back(Plan {
            actions,
            next: 0,
            findings,
        });
    }

    /// Plans the repair of a row left in a transitional state past the grace
    /// ([`Inconsistency::Stuck`]); `new` is its references with the dangling ones cleared and
    /// `findings` what was found on it so far. A creation that never booted (`Pending`) is
    /// failed the way its workflow fails it: every record it references released (billing
    /// stopped, the disk detached and deleted, the ENI, EIP and host released), the row
    /// `Deleted`. A boot or a stop left half done (`Starting`, `Stopping`) is finished as a stop:
    /// billing stopped, the disk detached, the row `Stopped` (host, disk, ENI and EIP kept for
    /// its owner). Every move is a legal lifecycle move, compared and set against the state the
    /// scan read.
    fn plan_stuck(&mut self, v: &RowView, mut new: InstanceResources, mut findings: Vec<Finding>) {
        use InstanceState::*;
        let row = v.row;
        let f = Finding {
            what: Inconsistency::Stuck,
            kind: Subject::Instance,
            since: row.last_write(),
        };
        self.note((f.what, f.kind, row.id.0, 0), f, &mut findings);
        let to = if row.state == Pending {
            Deleted
        } else {
            Stopped
        };
        let slots: &[usize] = if to == Deleted {
            &[BILLING, DISK, ENI, EIP, HOST]
        } else {
            &[BILLING, DISK]
        };
        let mut actions = Vec::with_capacity(slots.len() + 2);
        for &slot in slots {
            // Dangling references were cleared from `new`: what is left exists.
            let (Some(id), Some(r)) = (new.at(slot), v.records[slot]) else {
                continue;
            };
            let to_dep = self.targets.dep_of(r.kind).expect("rows reference it");
            let dep = |op| Action::Dep {
                to: to_dep,
                op,
                target: id,
            };
            match slot {
                DISK => {
                    if r.state == RecordState::Attached {
                        actions.push(dep(DepOp::DetachDisk));
                    }
                    new.disk_attached = false;
                    if to == Deleted {
                        actions.push(dep(DepOp::DeleteDisk));
                        new.set(DISK, None);
                    }
                }
                _ => {
                    actions.push(dep(release_op(r.kind).expect("a releasable kind")));
                    new.set(slot, None);
                }
            }
        }
        actions.push(Action::Db {
            account: row.account,
            op: DbOp::UpdateInstanceState {
                id: row.id,
                expect: Some(row.state),
                to,
                resources: Some(new),
            },
        });
        self.pending.push_back(Plan {
            actions,
            next: 0,
            findings,
        });
    }
}
