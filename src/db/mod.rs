//! The control plane's database: owns the instance table and the size-only workflow, history and
//! idempotency tables, sharded by account, with per-shard primaries and read replicas that admit
//! queries through bounded concurrency slots and bounded FIFO wait queues, and the per-class
//! latency model (slow SQL grows with table size). Also the API node's [`ConnectionPool`].
//!
//! # Shape
//!
//! The database is one sans-IO component, generic over the world's message type `M`, which wraps
//! [`DbQuery`] (in), [`DbReply`] (out, sent to `query.reply_to`) and [`DbTimer`] (its own
//! wake-ups). Accounts map to shards by `account % shards`; each shard has a primary and
//! `replicas` read replicas ("servers"), each with `max_concurrent` slots and a wait queue of at
//! most `queue_limit` queries (one more is answered [`DbError::Overloaded`] at once).
//!
//! # Timing, and why it is cheap
//!
//! A query that finds a free slot is executed at once: its effect is applied and its reply is
//! sent straight to the caller at `now + service latency`; the slot's end time goes into a small
//! min-heap per server and is freed lazily by the next query that looks. No event of the
//! database's own is needed on this path. Only when queries wait does the server arm a single
//! [`DbTimer`] for the earliest slot end; at that instant it frees every ended slot and starts
//! waiters FIFO. Slot accounting is exact (`in service ≤ max_concurrent` is asserted), so the
//! queueing is the same as a `c`-server FCFS station's.
//!
//! # Consistency
//!
//! A query takes effect when it *starts* service (its linearization point); its reply arrives
//! when service ends. The primary is read-your-writes from then on. A read with
//! `read_replica = true` goes to the shard's replicas round-robin (or to the primary when there
//! are none) and sees the primary's data as of `start − lag`, `lag` drawn per read from
//! `replication_lag` (capped at `max_replication_lag`): a row created later is not found, a row
//! updated later shows its previous state (one version back is kept per row; when two updates
//! fall inside the lag, the older kept version is shown), and list counts are those of that
//! instant. This is ECS's documented read-after-write inconsistency; every replica answer that
//! differs from what the primary would have answered counts as a stale read.
//!
//! # Tables
//!
//! Instances live on the shard that owns the account, in a fixed-hash map by id (point reads and
//! writes) beside a sorted list of their ids (scans, ordered iteration). Ids come from
//! one global counter (inserts take contiguous blocks), so they do not encode the shard; no owner
//! map is needed because every query is routed by account: by-id queries ([`DbOp::GetInstance`],
//! [`DbOp::UpdateInstanceState`]) go to `query.account`'s shard and only match rows of that
//! account (tenant isolation: an id of another account is not found). Ops that name an account
//! ([`DbOp::ListInstances`], [`DbOp::InsertInstances`]) are routed by that account instead.
//! Workflows, history and idempotency records are size-only counters per shard. Archiving the
//! instance table removes the oldest rows in state `Deleted` (live instances are never archived).
//!
//! # Unavailability
//!
//! [`Db::set_available`] takes a shard's primary down or up (fault injection): while it is down,
//! queries for the primary are answered [`DbError::Unavailable`] at once, and queued ones when
//! their turn comes; queries already in service complete; replica reads go on. A failover
//! ([`DbTimer::failover`], sent by the fault injector right after taking the primary down) also
//! fails what the lost primary held at once: every transaction in service loses its reply and is
//! answered `Unavailable` now (its effect was applied when it started, so like a commit whose
//! acknowledgement was lost, the write may stand), and every queued one is refused. Bringing
//! the shard back is the promoted replica taking over with the primary's data.
//!
//! # Fault overrides
//!
//! Two more hooks serve fault injection: [`Db::set_slow_factors`] multiplies the service time
//! of each query class (slow SQL), and [`Db::set_fault_lag`] puts replicas at least that far
//! behind (each replica read sees the data as of `start − max(drawn lag, fault lag)`).

mod config;
mod pool;
#[cfg(test)]
mod tests;

pub use config::{DbConfig, DbConfigBuilder, DbConfigError};
pub use pool::{Acquire, ConnectionPool, PoolCounts, WaiterTicket};

use crate::api::types::{AccountId, InstanceId, InstanceIdRange, InstanceState, InstanceType};
use crate::cache::RowChange;
use crate::deps::{ResourceId, ResourceKind};
use crate::idempotency::{
    Check as IdemCheckResult, IdemConfig, IdemKey, IdempotencyStore, Mode as IdemMode,
    Outcome as IdemOutcome, caller_clock,
};
use crate::kernel::{ComponentId, Dist, FixMap, Outbox, SimDuration, SimRng, SimTime, TimerId};
use crate::metrics::LatencyHistogram;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;

/// The kinds of query, each with its own latency distribution, size scaling and statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueryClass {
    /// A read by primary key (indexed).
    PointRead,
    /// The unindexed list of an account's instances: cost linear in table size.
    FilteredList,
    /// A batch of new instance rows (indexed).
    Insert,
    /// A compare-and-set of one instance's state (indexed).
    Update,
    /// Rows appended to a size-only table: workflow steps, history events, idempotency records.
    WorkflowStepWrite,
    /// A batch of old rows removed (the asynchronous data-cleanup job).
    ArchiveBatch,
    /// A page of a shard's instance rows in id order after a key (the reconciler's keyset-paged
    /// scan: an indexed range read, cost growing with the rows returned).
    Scan,
}

impl QueryClass {
    pub const ALL: [QueryClass; 7] = [
        QueryClass::PointRead,
        QueryClass::FilteredList,
        QueryClass::Insert,
        QueryClass::Update,
        QueryClass::WorkflowStepWrite,
        QueryClass::ArchiveBatch,
        QueryClass::Scan,
    ];
    pub const COUNT: usize = QueryClass::ALL.len();

    /// Dense index in `ALL` (for per-class arrays).
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            QueryClass::PointRead => "point_read",
            QueryClass::FilteredList => "filtered_list",
            QueryClass::Insert => "insert",
            QueryClass::Update => "update",
            QueryClass::WorkflowStepWrite => "workflow_step_write",
            QueryClass::ArchiveBatch => "archive_batch",
            QueryClass::Scan => "scan",
        }
    }

    /// Whether the class only reads (and so may be served by a replica).
    pub const fn is_read(self) -> bool {
        matches!(
            self,
            QueryClass::PointRead | QueryClass::FilteredList | QueryClass::Scan
        )
    }
}

impl fmt::Display for QueryClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The database's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Instance rows (id, account, type, state, timestamps).
    Instances,
    /// Workflow executions and their steps (size only).
    Workflows,
    /// Workflow history events (size only).
    History,
    /// Idempotency records (size only).
    Idempotency,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Instances,
        Table::Workflows,
        Table::History,
        Table::Idempotency,
    ];
    pub const COUNT: usize = Table::ALL.len();

    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            Table::Instances => "instances",
            Table::Workflows => "workflows",
            Table::History => "history",
            Table::Idempotency => "idempotency",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One query to the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbQuery {
    /// The caller's correlation id, echoed in the reply.
    pub tag: u64,
    /// Where the [`DbReply`] goes.
    pub reply_to: ComponentId,
    /// The caller's account: picks the shard and scopes by-id lookups (see the module docs).
    pub account: AccountId,
    /// Whether a read may be served by a replica (ignored for writes).
    pub read_replica: bool,
    pub op: DbOp,
}

impl DbQuery {
    /// The account whose shard serves this query: the op's own account for a list or an insert,
    /// `self.account` otherwise.
    pub fn routing_account(&self) -> AccountId {
        match self.op {
            DbOp::ListInstances { account, .. } | DbOp::InsertInstances { account, .. } => account,
            _ => self.account,
        }
    }
}

/// What a query does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbOp {
    /// One instance by id (PointRead, indexed). Not found if it belongs to another account.
    GetInstance(InstanceId),
    /// One page of an account's instances that are not `Deleted` (FilteredList: the unindexed
    /// list, latency linear in the shard's instance rows). Pages count from 0; `page_size` is
    /// clamped to `max_page_size`.
    ListInstances {
        account: AccountId,
        page: u32,
        page_size: u16,
    },
    /// `count` new rows with contiguous ids from the global counter (Insert).
    InsertInstances {
        account: AccountId,
        count: u16,
        instance_type: InstanceType,
        state: InstanceState,
    },
    /// Compare-and-set of an instance's state (Update): applied only if `expect` is `None` or
    /// equals the current state. The database does not check lifecycle legality (callers do).
    /// With `resources`, the row's resource references are written in the same update (the
    /// workflow engine's durable state writes carry what the instance holds).
    UpdateInstanceState {
        id: InstanceId,
        expect: Option<InstanceState>,
        to: InstanceState,
        resources: Option<InstanceResources>,
    },
    /// Writes an instance's resource references (Update, indexed), applied only if `expect` is
    /// `None` or equals the current state; the state is left as it is.
    SetInstanceResources {
        id: InstanceId,
        expect: Option<InstanceState>,
        resources: InstanceResources,
    },
    /// Up to `limit` rows of the shard of `query.account` with ids above `after`, in id order
    /// (Scan). The rows are kept by the database for the caller to take
    /// ([`Db::take_scan_page`]): a message carries only their count and the last id.
    ScanInstances { after: InstanceId, limit: u16 },
    /// The multi-row form of [`DbOp::UpdateInstanceState`] (one Update, × the batch factor of
    /// `count` rows): the `count` (at most [`MAX_UPDATE_ROWS`]) instances from `first`, each
    /// updated to `to` where `expect` matches, as one `UPDATE … WHERE id IN (…) AND state = …`.
    /// Rows that do not match are left as they are; [`RowsUpdated`] says which were applied.
    /// With `resources`, row `first + j` also gets `resources.shifted(j)` (records allocated in
    /// one batch have consecutive ids), written with its state.
    UpdateInstanceStates {
        first: InstanceId,
        count: u8,
        expect: Option<InstanceState>,
        to: InstanceState,
        resources: Option<InstanceResources>,
    },
    /// `rows` rows appended to a size-only table (WorkflowStepWrite). Not for `Instances`.
    AppendRows { table: Table, rows: u32 },
    /// A workflow transition made durable in one transaction: one row appended to `Workflows`
    /// and one to `History` (WorkflowStepWrite, × the batch factor of 2 rows, indexed by the
    /// larger of the two tables).
    AppendTransition,
    /// ClientToken check (PointRead): in `Atomic` mode it also reserves the key in the same step —
    /// the record written with the mutation's transaction; in `NonAtomic` mode it only reads.
    /// `skew_ns` is the calling node's clock skew: the node's clock judges the record's expiry
    /// and dates what it writes (see the `idempotency` module's "Whose clock").
    IdemCheck {
        key: IdemKey,
        fingerprint: u64,
        skew_ns: i64,
    },
    /// `NonAtomic` mode's separate, late write of the in-progress record (Insert).
    IdemRecord {
        key: IdemKey,
        fingerprint: u64,
        skew_ns: i64,
    },
    /// The mutation's result, memoised under the token (Update).
    IdemComplete {
        key: IdemKey,
        outcome: IdemOutcome,
        skew_ns: i64,
    },
    /// The request died before its mutation: drop the reservation so a retry proceeds (Update).
    IdemAbandon { key: IdemKey },
    /// Removes up to `max_rows` of the oldest rows older than `older_than` (ArchiveBatch): for
    /// `Instances`, rows deleted before it; for the size-only tables, rows appended in a whole
    /// second before it (ages are kept per second).
    ArchiveRows {
        table: Table,
        max_rows: u32,
        older_than: SimTime,
    },
}

impl DbOp {
    pub fn class(&self) -> QueryClass {
        match self {
            DbOp::GetInstance(_) => QueryClass::PointRead,
            DbOp::ListInstances { .. } => QueryClass::FilteredList,
            DbOp::InsertInstances { .. } => QueryClass::Insert,
            DbOp::UpdateInstanceState { .. }
            | DbOp::UpdateInstanceStates { .. }
            | DbOp::SetInstanceResources { .. } => QueryClass::Update,
            DbOp::ScanInstances { .. } => QueryClass::Scan,
            DbOp::AppendRows { .. } | DbOp::AppendTransition => QueryClass::WorkflowStepWrite,
            DbOp::ArchiveRows { .. } => QueryClass::ArchiveBatch,
            DbOp::IdemCheck { .. } => QueryClass::PointRead,
            DbOp::IdemRecord { .. } => QueryClass::Insert,
            DbOp::IdemComplete { .. } | DbOp::IdemAbandon { .. } => QueryClass::Update,
        }
    }
}

/// The answer to a [`DbQuery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbReply {
    /// The query's `tag`.
    pub tag: u64,
    /// Time from the query's arrival at the database to this reply: wait for a slot plus service.
    /// Zero for queries refused at once.
    pub latency: SimDuration,
    pub result: Result<DbResult, DbError>,
}

/// What a successful query returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbResult {
    /// A point read: the row's state without its resource references (small messages; scans
    /// and `Db::inspect_instance` give the whole row).
    Instance(Option<InstanceRead>),
    Listed {
        /// Rows on the requested page.
        returned: u16,
        /// The account's instances that are not `Deleted` (as of the snapshot read).
        total_for_account: u64,
    },
    Inserted(InstanceIdRange),
    Updated(UpdateOutcome),
    /// The answer of an `UpdateInstanceStates`.
    UpdatedRows(RowsUpdated),
    Appended,
    /// Rows removed.
    Archived(u32),
    /// The answer of an `IdemCheck`.
    Idem(IdemCheckResult),
    /// A scan page: rows returned and the last id among them (`None`: the shard has no more).
    Scanned {
        returned: u16,
        last: Option<InstanceId>,
    },
}

/// An instance as a point read returns it (`DbResult::Instance`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceRead {
    pub id: InstanceId,
    pub account: AccountId,
    pub instance_type: InstanceType,
    pub state: InstanceState,
    pub created_at: SimTime,
    pub updated_at: SimTime,
}

/// An instance row as a scan or an inspection returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceRow {
    pub id: InstanceId,
    pub account: AccountId,
    pub instance_type: InstanceType,
    pub state: InstanceState,
    pub created_at: SimTime,
    pub updated_at: SimTime,
    /// The dependency records the row references (current even in a replica's view).
    pub resources: InstanceResources,
    /// When the references were last written (`created_at` if never).
    pub resources_at: SimTime,
}

impl InstanceRow {
    /// The part of the row a point read returns.
    pub fn read(&self) -> InstanceRead {
        InstanceRead {
            id: self.id,
            account: self.account,
            instance_type: self.instance_type,
            state: self.state,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The row's last write: its state's or its references'.
    pub fn last_write(&self) -> SimTime {
        self.updated_at.max(self.resources_at)
    }
}

/// The dependency records an instance row references — host, disk, ENI, EIP, billing
/// subscription — and whether the disk is attached. Written by the workflow engine with its
/// state updates; what reconciliation compares with the dependencies' own records. Ids are
/// stored as `u64` with 0 for none (dependencies never issue id 0), to keep messages small.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InstanceResources {
    ids: [u64; InstanceResources::SLOTS],
    /// Whether the disk is attached (the VM runs).
    pub disk_attached: bool,
}

impl InstanceResources {
    pub const SLOTS: usize = 5;
    /// The kinds of record a row references, in slot order.
    pub const KINDS: [ResourceKind; InstanceResources::SLOTS] = [
        ResourceKind::Host,
        ResourceKind::Disk,
        ResourceKind::Eni,
        ResourceKind::Eip,
        ResourceKind::BillingSubscription,
    ];

    /// The slot of a kind of record (`None`: rows do not reference that kind).
    pub const fn slot(kind: ResourceKind) -> Option<usize> {
        match kind {
            ResourceKind::Host => Some(0),
            ResourceKind::Disk => Some(1),
            ResourceKind::Eni => Some(2),
            ResourceKind::Eip => Some(3),
            ResourceKind::BillingSubscription => Some(4),
            ResourceKind::Bandwidth | ResourceKind::Image => None,
        }
    }
    /// The record in slot `slot` (`Self::KINDS` order).
    pub fn at(&self, slot: usize) -> Option<ResourceId> {
        match self.ids[slot] {
            0 => None,
            id => Some(ResourceId(id)),
        }
    }
    /// Sets slot `slot`; clearing the disk detaches it.
    pub fn set(&mut self, slot: usize, id: Option<ResourceId>) {
        self.ids[slot] = id.map_or(0, |r| r.0);
        if slot == 1 && id.is_none() {
            self.disk_attached = false;
        }
    }
    pub fn get(&self, kind: ResourceKind) -> Option<ResourceId> {
        Self::slot(kind).and_then(|s| self.at(s))
    }
    /// The same references with every record id `j` higher (none stays none): what the `j`-th
    /// next instance of a batch holds when each of its records was allocated in one range.
    pub fn shifted(&self, j: u64) -> InstanceResources {
        let mut r = *self;
        for id in &mut r.ids {
            // `j` where a record is, 0 where none: without a branch per slot.
            *id += j & 0u64.wrapping_sub(u64::from(*id != 0));
        }
        r
    }
    pub fn host(&self) -> Option<ResourceId> {
        self.at(0)
    }
    pub fn disk(&self) -> Option<ResourceId> {
        self.at(1)
    }
    pub fn eni(&self) -> Option<ResourceId> {
        self.at(2)
    }
    pub fn eip(&self) -> Option<ResourceId> {
        self.at(3)
    }
    pub fn billing(&self) -> Option<ResourceId> {
        self.at(4)
    }
    /// Records referenced.
    pub fn count(&self) -> u64 {
        self.ids.iter().filter(|&&i| i != 0).count() as u64
    }
    /// (kind, record) of every reference, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (ResourceKind, ResourceId)> + '_ {
        (0..Self::SLOTS).filter_map(|s| self.at(s).map(|id| (Self::KINDS[s], id)))
    }
}

/// The outcome of a compare-and-set update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Applied; the state before.
    Done {
        from: InstanceState,
    },
    /// Not applied: the current state is not the expected one.
    Mismatch {
        actual: InstanceState,
    },
    NotFound,
}

/// Most rows of one [`DbOp::UpdateInstanceStates`] (its per-row outcomes fit in a `u64` mask).
pub const MAX_UPDATE_ROWS: u8 = 64;

/// The per-row outcomes of an [`DbOp::UpdateInstanceStates`], compactly: bit `j` stands for row
/// `first + j`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowsUpdated {
    /// Rows applied (`UpdateOutcome::Done`), as a bit set of their indices in the write.
    pub done: u64,
    /// Rows not applied because they already were in the target state (a `Mismatch` whose
    /// `actual` is `to`: a replay of an earlier attempt), as a bit set.
    pub at_target: u64,
    /// The first row that is neither (its index and outcome: `Mismatch` or `NotFound`).
    pub first_other: Option<(u8, UpdateOutcome)>,
}

/// Why a query was refused (always at once, with zero latency).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    #[error("the server's wait queue is full")]
    Overloaded,
    #[error("the shard's primary is down")]
    Unavailable,
    #[error("{rows} rows in one query; at most {max} are allowed")]
    BatchTooLarge { rows: u32, max: u32 },
    #[error("table `{0}` has no appendable rows: instances are inserted")]
    NotAppendable(Table),
}

/// The database's own wake-up: the earliest slot of a server with waiting queries ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbTimer {
    shard: u16,
    /// 0 = the primary, 1.. = replicas; [`DbTimer::FAILOVER`]: the shard's primary was lost.
    server: u16,
}

impl DbTimer {
    /// The `server` value of a failover notice.
    const FAILOVER: u16 = u16::MAX;
    /// The `server` value of the change feed's heartbeat.
    const HEARTBEAT: u16 = u16::MAX - 1;

    /// The change feed's heartbeat: the database writes the heartbeat row (see
    /// [`Db::set_feed_heartbeat`]) and schedules the next one. Whoever sets up the feed sends the
    /// first, one interval after the start.
    pub fn heartbeat() -> DbTimer {
        DbTimer {
            shard: 0,
            server: DbTimer::HEARTBEAT,
        }
    }

    /// A notice that `shard`'s primary was lost: the database fails the transactions it held
    /// (in service and queued) at once. The fault injector sends it right after
    /// [`Db::set_available`]`(shard, false)`.
    pub fn failover(shard: u16) -> DbTimer {
        DbTimer {
            shard,
            server: DbTimer::FAILOVER,
        }
    }
}

/// Statistics of one query class.
#[derive(Clone, Debug, Default)]
pub struct ClassStats {
    /// Queries received.
    pub received: u64,
    /// Queries that got a slot and were executed.
    pub served: u64,
    /// Queries refused (overloaded, unavailable, invalid).
    pub refused: u64,
    /// Served queries whose latency (wait + service) reached `slow_query_threshold`.
    pub slow: u64,
    /// Latency (wait + service, ns) of served queries, recorded when service starts.
    pub latency: LatencyHistogram,
}

/// What the database counts.
#[derive(Clone, Debug, Default)]
pub struct DbStats {
    /// Rows per table (in `Table::ALL` order) sampled about once a simulated minute as queries
    /// arrive: the hot tables over time. Bounded: past [`DbStats::SERIES_MAX`] samples every other
    /// one is dropped and the interval doubles.
    pub table_rows_series: Vec<(SimTime, [u64; Table::COUNT])>,
    series_interval_ns: u64,
    series_next_ns: u64,
    classes: [ClassStats; QueryClass::COUNT],
    /// Reads served by a replica.
    pub replica_reads: u64,
    /// Replica reads whose answer differed from the primary's at that instant.
    pub stale_reads: u64,
    /// Queries refused because a wait queue was full.
    pub rejected_overloaded: u64,
    /// Queries refused because the primary was down.
    pub rejected_unavailable: u64,
    /// Queries refused as invalid (batch too large, not appendable).
    pub rejected_invalid: u64,
    /// Lists whose page size was clamped to `max_page_size`.
    pub page_size_clamped: u64,
    /// Most queries in service at once on one server (≤ `max_concurrent`).
    pub max_in_service: u32,
    /// Most queries waiting at once on one server (≤ `queue_limit`).
    pub max_queued: u32,
    /// [`DbTimer`] wake-ups scheduled (only while queries wait).
    pub wakeups: u64,
    /// Failovers handled (one per shard and failover).
    pub failovers: u64,
    /// Heartbeat rows written into the change feed.
    pub heartbeats: u64,
    /// Transactions in service on a primary when it was lost, answered `Unavailable` at once
    /// (they stay counted as served: their effect was applied).
    pub failover_inflight_failed: u64,
    /// Rows of in-flight inserts rolled back by a failover.
    pub failover_rolled_back: u64,
    /// Transactions queued on a primary when it was lost, refused at once (also counted in
    /// `rejected_unavailable`).
    pub failover_queued_failed: u64,
    /// Queries served while a slow-SQL factor above 1 applied to their class.
    pub slowed_queries: u64,
    /// Replica reads whose snapshot was set by the fault lag (it exceeded the drawn lag).
    pub fault_lagged_reads: u64,
    /// Stale reads among those (answers that differed from the primary's).
    pub fault_stale_reads: u64,
}

impl DbStats {
    /// Most samples kept in `table_rows_series`.
    pub const SERIES_MAX: usize = 4_096;

    pub fn class(&self, c: QueryClass) -> &ClassStats {
        &self.classes[c.index()]
    }
    pub fn received(&self) -> u64 {
        self.classes.iter().map(|c| c.received).sum()
    }
    pub fn served(&self) -> u64 {
        self.classes.iter().map(|c| c.served).sum()
    }
    pub fn slow_queries(&self) -> u64 {
        self.classes.iter().map(|c| c.slow).sum()
    }
    pub fn refused(&self) -> u64 {
        self.classes.iter().map(|c| c.refused).sum()
    }
}

/// Size-only tables, in `Table::ALL` order after `Instances`.
const COUNTER_TABLES: usize = Table::COUNT - 1;

/// Bound on one account's membership history (entries within the replication-lag horizon).
const MAX_MEMBERSHIP_LOG: usize = 4_096;

#[derive(Clone, Debug)]
struct StoredRow {
    account: AccountId,
    instance_type: InstanceType,
    state: InstanceState,
    updated_at: SimTime,
    prev_state: InstanceState,
    prev_updated_at: SimTime,
    created_at: SimTime,
    resources: InstanceResources,
    resources_at: SimTime,
}

impl StoredRow {
    fn view(&self, id: InstanceId) -> InstanceRow {
        InstanceRow {
            id,
            account: self.account,
            instance_type: self.instance_type,
            state: self.state,
            created_at: self.created_at,
            updated_at: self.updated_at,
            resources: self.resources,
            resources_at: self.resources_at,
        }
    }

    /// The row as a snapshot at `v` sees it, `None` if created later.
    fn view_as_of(&self, id: InstanceId, v: SimTime) -> Option<InstanceRow> {
        if self.created_at > v {
            return None;
        }
        let mut row = self.view(id);
        if self.updated_at > v {
            row.state = self.prev_state;
            row.updated_at = self.prev_updated_at;
        }
        Some(row)
    }
}

/// The number of an account's listed (not `Deleted`) rows over time: the current value and its
/// recent history, enough to answer "as of `now − lag`" for any lag up to the cap.
#[derive(Clone, Debug, Default)]
struct Membership {
    /// The value before the first logged change.
    base: u64,
    /// (time of a change, value after it), times increasing.
    log: VecDeque<(SimTime, u64)>,
}

impl Membership {
    fn current(&self) -> u64 {
        self.log.back().map_or(self.base, |e| e.1)
    }

    fn as_of(&self, v: SimTime) -> u64 {
        match self.log.partition_point(|e| e.0 <= v) {
            0 => self.base,
            i => self.log[i - 1].1,
        }
    }

    /// Records the value `value` from `now` on; forgets changes older than `horizon`.
    fn set(&mut self, now: SimTime, value: u64, horizon: SimTime) {
        while let Some(&(t, v)) = self.log.front() {
            if t >= horizon && self.log.len() < MAX_MEMBERSHIP_LOG {
                break;
            }
            self.base = v;
            self.log.pop_front();
        }
        match self.log.back_mut() {
            Some(last) if last.0 == now => last.1 = value,
            _ => self.log.push_back((now, value)),
        }
    }
}

/// A shard's instance rows: a fixed-hash map by id for the point reads and writes (never
/// iterated), and the ids in order for scans and ordered iteration.
///
/// Ids come from one global counter and are never reused, so a new row's id is above every id
/// present and the ordered ids are a sorted `Vec` that an insert pushes onto (a `BTreeSet`
/// insert cost a tree descent and, now and then, a node allocation, on every inserted row). A
/// removed row (archived, or rolled back by a failover: both rare) leaves its id behind, and
/// iteration skips ids without a row; once such ids outnumber the live ones they are dropped in
/// one pass, so a walk over the ids visits at most about twice the live rows.
#[derive(Clone, Debug, Default)]
struct Rows {
    by_id: FixMap<u64, StoredRow>,
    /// Ids in increasing order: every live row's, and `removed` ids of removed rows.
    order: Vec<InstanceId>,
    removed: usize,
}

impl Rows {
    /// Removed ids kept at least up to this many before a compaction (no pass for a few).
    const MIN_COMPACT: usize = 64;

    fn len(&self) -> usize {
        self.by_id.len()
    }

    #[inline]
    fn get(&self, id: &InstanceId) -> Option<&StoredRow> {
        self.by_id.get(&id.0)
    }

    #[inline]
    fn get_mut(&mut self, id: &InstanceId) -> Option<&mut StoredRow> {
        self.by_id.get_mut(&id.0)
    }

    /// Inserts or replaces the row of `id`.
    fn insert(&mut self, id: InstanceId, row: StoredRow) {
        if self.by_id.insert(id.0, row).is_some() {
            return;
        }
        match self.order.last() {
            // The common case: a fresh id, above all others.
            None => self.order.push(id),
            Some(&last) if last < id => self.order.push(id),
            // Not fresh: the database never does this (ids are not reused), but the list stays
            // right: the id of a removed row is still in place, any other goes in order.
            Some(_) => {
                let i = self.order.partition_point(|&x| x < id);
                if self.order.get(i) == Some(&id) {
                    self.removed -= 1;
                } else {
                    self.order.insert(i, id);
                }
            }
        }
    }

    fn remove(&mut self, id: &InstanceId) -> Option<StoredRow> {
        let row = self.by_id.remove(&id.0)?;
        self.removed += 1;
        if self.removed > self.by_id.len().max(Self::MIN_COMPACT) {
            let by_id = &self.by_id;
            self.order.retain(|id| by_id.contains_key(&id.0));
            self.removed = 0;
        }
        Some(row)
    }

    /// The rows with ids from `from` on, in id order.
    fn from(&self, from: InstanceId) -> impl Iterator<Item = (InstanceId, &StoredRow)> + '_ {
        let i = self.order.partition_point(|&x| x < from);
        self.order[i..]
            .iter()
            .filter_map(|&id| self.by_id.get(&id.0).map(|r| (id, r)))
    }

    /// Every row, in id order.
    fn iter(&self) -> impl Iterator<Item = (InstanceId, &StoredRow)> + '_ {
        self.from(InstanceId(0))
    }
}

/// The data of one shard (shared by its primary and replicas).
#[derive(Clone, Debug, Default)]
struct ShardData {
    rows: Rows,
    /// Rows in state `Deleted` by (deletion time, id): the archivable ones, oldest first.
    deleted: DeletedRows,
    /// Each account's listed rows over time, by account number (looked up, never iterated).
    accounts: FixMap<u32, Membership>,
    /// Size-only tables: workflows, history, idempotency.
    counters: [u64; COUNTER_TABLES],
    /// Their rows by age: (second of the append, rows), oldest first — what retention reads.
    ages: [VecDeque<(u64, u64)>; COUNTER_TABLES],
    /// State writes that broke the lifecycle since the invariant checker last looked (the
    /// first few; `illegal_total` counts them all).
    illegal: Vec<IllegalMove>,
    illegal_total: u64,
}

/// A state write outside the legal lifecycle (see [`crate::invariants::legal_move`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IllegalMove {
    pub at: SimTime,
    pub account: AccountId,
    pub id: InstanceId,
    pub from: InstanceState,
    pub to: InstanceState,
}

impl ShardData {
    fn rows(&self, t: Table) -> u64 {
        match t {
            Table::Instances => self.rows.len() as u64,
            other => self.counters[other.index() - 1],
        }
    }

    /// Adds `rows` rows to a size-only table, remembering the second they were appended in.
    fn append(&mut self, table: Table, rows: u32, now: SimTime) {
        let slot = &mut self.counters[table.index() - 1];
        *slot = slot.saturating_add(u64::from(rows));
        let second = now.as_ns() / 1_000_000_000;
        let ages = &mut self.ages[table.index() - 1];
        match ages.back_mut() {
            Some((s, n)) if *s == second => *n += u64::from(rows),
            _ => ages.push_back((second, u64::from(rows))),
        }
    }

    fn add_listed(&mut self, account: AccountId, delta: i64, now: SimTime, horizon: SimTime) {
        let add = |m: &mut Membership| {
            let value = m.current().saturating_add_signed(delta);
            m.set(now, value, horizon);
        };
        // One lookup when the account is known (nearly always); its first change inserts.
        if let Some(m) = self.accounts.get_mut(&account.0) {
            add(m);
        } else {
            let mut m = Membership::default();
            add(&mut m);
            self.accounts.insert(account.0, m);
        }
    }
}

/// The (deletion time, id) of a shard's rows in state `Deleted`, in increasing order: what
/// archiving takes from the front. A row is deleted at the current simulated time, which never
/// goes back, so an entry nearly always goes at the back: a sorted deque makes that a push (a
/// `BTreeSet` cost a tree descent and node splits on every deletion). The rare entry that does
/// not (an id below the last one deleted at the same instant) and the rare removal from the
/// middle (a row leaving `Deleted`, a rolled-back insert) shift the shorter side.
#[derive(Clone, Debug, Default)]
struct DeletedRows(VecDeque<(SimTime, InstanceId)>);

impl DeletedRows {
    /// Adds `entry` (nothing if present, like a set).
    fn insert(&mut self, entry: (SimTime, InstanceId)) {
        match self.0.back() {
            Some(&last) if last >= entry => {
                let i = self.0.partition_point(|&e| e < entry);
                if self.0.get(i) != Some(&entry) {
                    self.0.insert(i, entry);
                }
            }
            _ => self.0.push_back(entry),
        }
    }

    /// Removes `entry` if present.
    fn remove(&mut self, entry: &(SimTime, InstanceId)) {
        let i = self.0.partition_point(|e| e < entry);
        if self.0.get(i) == Some(entry) {
            self.0.remove(i);
        }
    }

    /// The oldest entry.
    fn first(&self) -> Option<&(SimTime, InstanceId)> {
        self.0.front()
    }

    fn pop_first(&mut self) -> Option<(SimTime, InstanceId)> {
        self.0.pop_front()
    }
}

/// A query waiting for a slot.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    query: DbQuery,
    arrived: SimTime,
}

/// A transaction in service on a primary (kept so that a failover can fail it): only what the
/// failure needs, not the whole query (every primary query pushes one, so its size is copied
/// on the hot path).
#[derive(Clone, Copy, Debug)]
struct InFlight {
    end: SimTime,
    reply: TimerId,
    /// The query's `tag` and `reply_to`: where the failure goes.
    tag: u64,
    reply_to: ComponentId,
    arrived: SimTime,
    /// The rows an insert created and their account (rolled back if the primary fails before
    /// the commit).
    inserted: Option<(AccountId, InstanceIdRange)>,
}

/// A primary or a replica: slots, wait queue, random stream.
#[derive(Clone, Debug)]
struct Server {
    rng: SimRng,
    /// End times of the queries in service (some may have ended: freed lazily).
    busy: BinaryHeap<Reverse<SimTime>>,
    /// Primaries only: the transactions in service (some may have ended: pruned when the list
    /// outgrows twice the slots).
    inflight: Vec<InFlight>,
    waiting: VecDeque<Waiting>,
    /// The armed wake-up, if any.
    wakeup: Option<(SimTime, TimerId)>,
}

impl Server {
    fn new(rng: SimRng) -> Server {
        Server {
            rng,
            busy: BinaryHeap::new(),
            inflight: Vec::new(),
            waiting: VecDeque::new(),
            wakeup: None,
        }
    }

    #[inline]
    fn free_ended(&mut self, now: SimTime) {
        while let Some(&Reverse(end)) = self.busy.peek() {
            if end > now {
                break;
            }
            self.busy.pop();
        }
    }
}

#[derive(Clone, Debug)]
struct Shard {
    data: ShardData,
    /// `[0]` is the primary, `[1..]` the replicas.
    servers: Vec<Server>,
    available: bool,
    next_replica: u16,
}

/// The database component. See the module documentation.
#[derive(Clone, Debug)]
pub struct Db {
    cfg: DbConfig,
    shards: Vec<Shard>,
    next_instance: u64,
    stats: DbStats,
    /// ClientToken records (the idempotency table's contents; its size lives in the shards'
    /// `Idempotency` counters like the other size-only tables).
    idem: IdempotencyStore,
    /// Scan pages read and not yet taken: (caller, tag) → rows. Bounded by
    /// [`Db::MAX_SCAN_PAGES`] (the oldest is dropped).
    scan_pages: BTreeMap<(ComponentId, u64), Vec<InstanceRow>>,
    scan_order: VecDeque<(ComponentId, u64)>,
    /// Service-time multiplier per query class (slow-SQL faults; 1 = none).
    slow: [f64; QueryClass::COUNT],
    /// Replicas are at least this far behind (replica-lag faults; zero = none).
    fault_lag: SimDuration,
    /// The change feed's subscriber, when cache invalidation follows the binlog.
    feed: Option<ChangeFeed>,
}

/// Where the database reports the instance rows it changed (see [`Db::set_change_feed`]).
#[derive(Clone, Debug)]
struct ChangeFeed {
    to: ComponentId,
    lag: Dist,
    rng: SimRng,
    /// Added to every change's lag (binlog-lag faults; zero = none).
    fault_lag: SimDuration,
    /// A heartbeat row every this long (see [`DbTimer::heartbeat`]), with its lag drawn from
    /// its own stream so heartbeats never shift the changes' lags.
    heartbeat: Option<(SimDuration, SimRng)>,
}

/// The messages the database sends: replies, its own wake-ups, and row changes for the change
/// feed.
pub trait DbMsg: From<DbReply> + From<DbTimer> + From<RowChange> {}
impl<M: From<DbReply> + From<DbTimer> + From<RowChange>> DbMsg for M {}

impl Db {
    /// A database with empty tables. Each server draws from its own stream forked from `rng`:
    /// `shard.<s>.primary` and `shard.<s>.replica.<r>` (r from 1).
    pub fn new(cfg: DbConfig, rng: SimRng) -> Db {
        let shards = (0..cfg.shards)
            .map(|s| {
                let mut servers = Vec::with_capacity(usize::from(cfg.replicas) + 1);
                servers.push(Server::new(rng.fork(&format!("shard.{s}.primary"))));
                for r in 1..=cfg.replicas {
                    servers.push(Server::new(rng.fork(&format!("shard.{s}.replica.{r}"))));
                }
                Shard {
                    data: ShardData::default(),
                    servers,
                    available: true,
                    next_replica: 0,
                }
            })
            .collect();
        Db {
            cfg,
            shards,
            next_instance: 1,
            stats: DbStats::default(),
            idem: IdempotencyStore::new(
                IdemConfig::builder()
                    .build()
                    .expect("the defaults are valid"),
            ),
            scan_pages: BTreeMap::new(),
            scan_order: VecDeque::new(),
            slow: [1.0; QueryClass::COUNT],
            fault_lag: SimDuration::ZERO,
            feed: None,
        }
    }

    /// Reports every instance row a primary changes (a state update applied) to `to` as a
    /// [`RowChange`], after a binlog lag drawn from `lag` (seconds) on stream `rng`: the change
    /// feed a binlog-driven cache invalidator consumes ([`crate::cache::Invalidator`]). Sent
    /// when the change is applied, whether or not its reply reaches the writer.
    pub fn set_change_feed(&mut self, to: ComponentId, lag: Dist, rng: SimRng) {
        self.feed = Some(ChangeFeed {
            to,
            lag,
            rng,
            fault_lag: SimDuration::ZERO,
            heartbeat: None,
        });
    }

    /// Writes a heartbeat row into the change feed every `every` (as pt-heartbeat does), on
    /// shard 0's primary: none while that primary is down, which the consumer sees as lag, as a
    /// real one would. Its lag is drawn from `rng`. Send the first [`DbTimer::heartbeat`] to the
    /// database `every` after the start. Nothing without a change feed.
    pub fn set_feed_heartbeat(&mut self, every: SimDuration, rng: SimRng) {
        if let Some(f) = &mut self.feed {
            f.heartbeat = Some((every, rng));
        }
    }

    /// The binlog-lag override now (zero without a change feed).
    pub fn feed_fault_lag(&self) -> SimDuration {
        self.feed
            .as_ref()
            .map_or(SimDuration::ZERO, |f| f.fault_lag)
    }

    /// Delays every change of the feed by `lag` more from now on (fault injection: the binlog
    /// consumer falls behind); zero removes it. Nothing without a change feed.
    pub fn set_feed_fault_lag(&mut self, lag: SimDuration) {
        if let Some(f) = &mut self.feed {
            f.fault_lag = lag;
        }
    }

    /// Sets the service-time multiplier of every query class (fault injection: slow SQL). A
    /// factor applies to queries that start service from now on; non-finite or below-1 factors
    /// count as 1.
    pub fn set_slow_factors(&mut self, factors: [f64; QueryClass::COUNT]) {
        self.slow = factors.map(|f| if f.is_finite() && f > 1.0 { f } else { 1.0 });
    }

    /// The current service-time multipliers, by [`QueryClass::index`].
    pub fn slow_factors(&self) -> [f64; QueryClass::COUNT] {
        self.slow
    }

    /// Puts every replica at least `lag` behind its primary (fault injection: replica lag);
    /// zero removes the override.
    pub fn set_fault_lag(&mut self, lag: SimDuration) {
        self.fault_lag = lag;
    }

    /// The replica-lag override now.
    pub fn fault_lag(&self) -> SimDuration {
        self.fault_lag
    }

    /// Replaces the ClientToken store's configuration (TTL, capacity, atomic or not). Call before
    /// the run starts.
    pub fn with_idempotency(mut self, cfg: IdemConfig) -> Db {
        self.idem = IdempotencyStore::new(cfg);
        self
    }

    /// The ClientToken store.
    pub fn idempotency(&self) -> &IdempotencyStore {
        &self.idem
    }

    pub fn config(&self) -> &DbConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &DbStats {
        &self.stats
    }

    /// The shard that owns `account`: `account % shards`. (To address shard `s` directly, e.g.
    /// for an archive job, use `AccountId(s)`.)
    #[inline]
    pub fn shard_of(&self, account: AccountId) -> u16 {
        (account.0 % u32::from(self.cfg.shards)) as u16
    }

    /// Samples the rows of every table, summed over shards, when the next sample is due. The
    /// check runs on every query, so it is inline and the sampling is not.
    #[inline]
    fn sample_tables(&mut self, now: SimTime) {
        if now.as_ns() >= self.stats.series_next_ns {
            self.sample_tables_now(now);
        }
    }

    /// Appends a sample of every table's rows, summed over shards (see [`Db::sample_tables`]).
    #[inline(never)]
    fn sample_tables_now(&mut self, now: SimTime) {
        if self.stats.series_interval_ns == 0 {
            self.stats.series_interval_ns = 60_000_000_000;
        }
        let rows = Table::ALL.map(|t| self.table_rows(t));
        let st = &mut self.stats;
        st.table_rows_series.push((now, rows));
        if st.table_rows_series.len() >= DbStats::SERIES_MAX {
            let kept: Vec<_> = st.table_rows_series.iter().copied().step_by(2).collect();
            st.table_rows_series = kept;
            st.series_interval_ns *= 2;
        }
        st.series_next_ns = now.as_ns().saturating_add(st.series_interval_ns);
    }

    pub fn table_rows(&self, t: Table) -> u64 {
        self.shards.iter().map(|s| s.data.rows(t)).sum()
    }

    /// Rows of a table on one shard, now.
    pub fn shard_table_rows(&self, shard: u16, t: Table) -> u64 {
        self.shards[usize::from(shard)].data.rows(t)
    }

    /// Instance ids handed out so far.
    pub fn instances_created(&self) -> u64 {
        self.next_instance - 1
    }

    /// Queries waiting for a slot on a shard's servers (primary and replicas) now.
    pub fn queued(&self, shard: u16) -> usize {
        self.shards[usize::from(shard)]
            .servers
            .iter()
            .map(|s| s.waiting.len())
            .sum()
    }

    /// Takes a shard's primary down (`false`) or brings it back (`true`): the fault-injection
    /// hook. See the module documentation for what a down primary does.
    pub fn set_available(&mut self, shard: u16, available: bool) {
        self.shards[usize::from(shard)].available = available;
    }

    pub fn is_available(&self, shard: u16) -> bool {
        self.shards[usize::from(shard)].available
    }

    /// The primary's current row, read directly (no query, no latency): for invariant checks,
    /// reconciliation oracles and tests, not for the system under test's request path.
    pub fn inspect_instance(&self, account: AccountId, id: InstanceId) -> Option<InstanceRow> {
        self.shards[usize::from(self.shard_of(account))]
            .data
            .rows
            .get(&id)
            .filter(|r| r.account == account)
            .map(|r| r.view(id))
    }

    /// Most scan pages kept for their callers at once.
    pub const MAX_SCAN_PAGES: usize = 64;

    /// The rows of the [`DbOp::ScanInstances`] that `caller` sent with `tag`, as read when the
    /// query started service (its linearization point); `None` if already taken or dropped.
    pub fn take_scan_page(&mut self, caller: ComponentId, tag: u64) -> Option<Vec<InstanceRow>> {
        self.scan_pages.remove(&(caller, tag))
    }

    /// Test and fault hook: overwrites a row's resource references directly (no query), as an
    /// operator's manual edit or a lost write would. Returns whether the row exists.
    pub fn tamper_resources(
        &mut self,
        account: AccountId,
        id: InstanceId,
        resources: InstanceResources,
    ) -> bool {
        let s = usize::from(self.shard_of(account));
        match self.shards[s].data.rows.get_mut(&id) {
            Some(r) if r.account == account => {
                r.resources = resources;
                true
            }
            _ => false,
        }
    }

    /// The lifecycle-breaking state writes since the last call (invariant checker).
    pub fn take_illegal_moves(&mut self) -> Vec<IllegalMove> {
        self.shards
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.data.illegal))
            .collect()
    }

    /// Every instance row of every shard, current, by shard then id (no query, no latency): for
    /// oracles and tests.
    pub fn instance_rows(&self) -> impl Iterator<Item = InstanceRow> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.data.rows.iter().map(|(id, r)| r.view(id)))
    }

    /// Handles a query: refuses it at once, starts it, or queues it.
    pub fn on_query<M: DbMsg>(&mut self, q: DbQuery, out: &mut Outbox<'_, M>) {
        let class = q.op.class();
        self.stats.classes[class.index()].received += 1;
        self.sample_tables(out.now());
        if let Err(e) = self.check_op(&q.op) {
            self.stats.rejected_invalid += 1;
            self.refuse(&q, SimDuration::ZERO, e, out);
            return;
        }
        let s = usize::from(self.shard_of(q.routing_account()));
        let shard = &mut self.shards[s];
        let k = if q.read_replica && class.is_read() && shard.servers.len() > 1 {
            let r = usize::from(shard.next_replica);
            shard.next_replica = ((r + 1) % (shard.servers.len() - 1)) as u16;
            r + 1
        } else {
            0
        };
        if k == 0 && !shard.available {
            self.refuse_unavailable(&q, SimDuration::ZERO, out);
            return;
        }
        // Bring the server up to date: free ended slots and start waiters due by now, so the
        // new query queues behind them.
        let now = out.now();
        self.drain(s, k, out);
        let server = &mut self.shards[s].servers[k];
        if server.busy.len() < self.cfg.max_concurrent as usize {
            debug_assert!(server.waiting.is_empty(), "a free slot with waiters");
            self.start(s, k, &q, now, out);
        } else if server.waiting.len() >= self.cfg.queue_limit as usize {
            self.stats.rejected_overloaded += 1;
            self.refuse(&q, SimDuration::ZERO, DbError::Overloaded, out);
        } else {
            server.waiting.push_back(Waiting {
                query: q,
                arrived: out.now(),
            });
            self.stats.max_queued = self.stats.max_queued.max(server.waiting.len() as u32);
            self.arm_wakeup(s, k, out);
        }
    }

    /// Handles the database's own wake-up: frees ended slots and starts waiters.
    pub fn on_timer<M: DbMsg>(&mut self, t: DbTimer, out: &mut Outbox<'_, M>) {
        if t.server == DbTimer::FAILOVER {
            return self.fail_primary(usize::from(t.shard), out);
        }
        if t.server == DbTimer::HEARTBEAT {
            return self.heartbeat(out);
        }
        let (s, k) = (usize::from(t.shard), usize::from(t.server));
        self.shards[s].servers[k].wakeup = None;
        self.drain(s, k, out);
    }

    /// The change feed's heartbeat (see [`Db::set_feed_heartbeat`]): the row, unless shard 0's
    /// primary is down, and the next heartbeat's wake-up.
    fn heartbeat<M: DbMsg>(&mut self, out: &mut Outbox<'_, M>) {
        let up = self.shards.first().is_some_and(|s| s.available);
        let Some(f) = &mut self.feed else {
            return;
        };
        let Some((every, rng)) = &mut f.heartbeat else {
            return;
        };
        out.schedule(*every, M::from(DbTimer::heartbeat()));
        if up {
            let lag = f.lag.sample_duration(rng);
            let row = RowChange::heartbeat(out.now());
            out.send(f.to, lag.saturating_add(f.fault_lag), M::from(row));
            self.stats.heartbeats += 1;
        }
    }

    /// The primary of shard `s` is lost: its transactions in service lose their replies and are
    /// answered `Unavailable` now, its queued ones are refused, its slots are empty. Does
    /// nothing if the primary is up again (the notice came after a recovery).
    fn fail_primary<M: DbMsg>(&mut self, s: usize, out: &mut Outbox<'_, M>) {
        if s >= self.shards.len() || self.shards[s].available {
            return;
        }
        let now = out.now();
        self.stats.failovers += 1;
        let server = &mut self.shards[s].servers[0];
        let inflight = std::mem::take(&mut server.inflight);
        let waiting = std::mem::take(&mut server.waiting);
        server.busy.clear();
        if let Some((_, id)) = server.wakeup.take() {
            out.cancel(id);
        }
        for f in inflight {
            // Served (counted as such, its effect applied) but never acknowledged: the reply
            // that was on its way is replaced by the failure, now. Not a refusal.
            if f.end > now && out.cancel(f.reply) {
                self.stats.failover_inflight_failed += 1;
                // An insert not yet committed is rolled back: its rows would otherwise be
                // phantom Pending instances that no workflow ever picks up (the caller only
                // learns the insert failed). Updates stay applied: their callers compare and
                // set, and find them done on a retry.
                if let Some((account, r)) = f.inserted {
                    let data = &mut self.shards[s].data;
                    let mut removed = 0i64;
                    for j in 0..u64::from(r.count) {
                        let id = InstanceId(r.first.0 + j);
                        if let Some(row) = data.rows.remove(&id) {
                            removed += 1;
                            if row.state == InstanceState::Deleted {
                                data.deleted.remove(&(row.updated_at, id));
                                removed -= 1;
                            }
                        }
                    }
                    data.add_listed(account, -removed, now, now);
                    self.stats.failover_rolled_back += u64::from(r.count);
                }
                let reply = DbReply {
                    tag: f.tag,
                    latency: now.saturating_since(f.arrived),
                    result: Err(DbError::Unavailable),
                };
                out.send(f.reply_to, SimDuration::ZERO, M::from(reply));
            }
        }
        for w in waiting {
            self.stats.failover_queued_failed += 1;
            self.refuse_unavailable(&w.query, now.saturating_since(w.arrived), out);
        }
    }

    fn check_op(&self, op: &DbOp) -> Result<(), DbError> {
        let max = self.cfg.max_batch_rows;
        let rows = match *op {
            DbOp::InsertInstances { count, .. } => u32::from(count),
            DbOp::AppendRows {
                table: Table::Instances,
                ..
            } => return Err(DbError::NotAppendable(Table::Instances)),
            DbOp::AppendRows { rows, .. } => rows,
            DbOp::ArchiveRows { max_rows, .. } => max_rows,
            DbOp::ScanInstances { limit, .. } => u32::from(limit),
            DbOp::UpdateInstanceStates { count, .. } => {
                let max = max.min(u32::from(MAX_UPDATE_ROWS));
                if u32::from(count) > max {
                    return Err(DbError::BatchTooLarge {
                        rows: u32::from(count),
                        max,
                    });
                }
                0
            }
            _ => 0,
        };
        if rows > max {
            return Err(DbError::BatchTooLarge { rows, max });
        }
        Ok(())
    }

    fn refuse<M: From<DbReply>>(
        &mut self,
        q: &DbQuery,
        latency: SimDuration,
        e: DbError,
        out: &mut Outbox<'_, M>,
    ) {
        self.stats.classes[q.op.class().index()].refused += 1;
        let reply = DbReply {
            tag: q.tag,
            latency,
            result: Err(e),
        };
        out.send(q.reply_to, SimDuration::ZERO, M::from(reply));
    }

    /// Refuses `q` with `Unavailable` (its shard's primary is down) after `waited`, counting it
    /// among the queries rejected as unavailable.
    fn refuse_unavailable<M: From<DbReply>>(
        &mut self,
        q: &DbQuery,
        waited: SimDuration,
        out: &mut Outbox<'_, M>,
    ) {
        self.stats.rejected_unavailable += 1;
        self.refuse(q, waited, DbError::Unavailable, out);
    }

    /// Frees the slots of server `k` of shard `s` that ended by now and starts waiters FIFO while
    /// slots are free; then makes sure a wake-up is armed if queries still wait. With nothing
    /// waiting (the common case) only the ended slots are freed, inline.
    #[inline]
    fn drain<M: DbMsg>(&mut self, s: usize, k: usize, out: &mut Outbox<'_, M>) {
        let server = &mut self.shards[s].servers[k];
        server.free_ended(out.now());
        if !server.waiting.is_empty() {
            self.start_waiters(s, k, out);
        }
    }

    /// [`Db::drain`] when queries wait.
    #[inline(never)]
    fn start_waiters<M: DbMsg>(&mut self, s: usize, k: usize, out: &mut Outbox<'_, M>) {
        let now = out.now();
        let c = self.cfg.max_concurrent as usize;
        loop {
            let server = &mut self.shards[s].servers[k];
            server.free_ended(now);
            if server.busy.len() >= c {
                break;
            }
            let Some(w) = server.waiting.pop_front() else {
                break;
            };
            if k == 0 && !self.shards[s].available {
                self.refuse_unavailable(&w.query, now.saturating_since(w.arrived), out);
                continue;
            }
            self.start(s, k, &w.query, w.arrived, out);
        }
        self.arm_wakeup(s, k, out);
    }

    /// Arms (or moves) the server's one wake-up to its earliest slot end while queries wait.
    fn arm_wakeup<M: From<DbTimer>>(&mut self, s: usize, k: usize, out: &mut Outbox<'_, M>) {
        let server = &mut self.shards[s].servers[k];
        if server.waiting.is_empty() {
            return;
        }
        let Some(&Reverse(first_end)) = server.busy.peek() else {
            unreachable!("queries wait only while every slot is busy");
        };
        match server.wakeup {
            Some((at, _)) if at <= first_end => {}
            armed => {
                if let Some((_, id)) = armed {
                    out.cancel(id);
                }
                let timer = DbTimer {
                    shard: s as u16,
                    server: k as u16,
                };
                let id = out.send_at(out.me(), first_end, M::from(timer));
                server.wakeup = Some((first_end, id));
                self.stats.wakeups += 1;
            }
        }
    }

    /// Executes `q` on server `k` of shard `s` now, takes a slot until it ends, records its
    /// statistics and sends the reply for the instant it ends.
    fn start<M: DbMsg>(
        &mut self,
        s: usize,
        k: usize,
        q: &DbQuery,
        arrived: SimTime,
        out: &mut Outbox<'_, M>,
    ) {
        let now = out.now();
        let Db {
            cfg,
            shards,
            next_instance,
            stats,
            idem,
            scan_pages,
            scan_order,
            slow,
            fault_lag,
            feed,
        } = self;
        let shard = &mut shards[s];
        let server = &mut shard.servers[k];
        let mut page = Vec::new();
        let class = q.op.class();
        let ctx = Exec {
            cfg,
            next_instance,
            stats,
            idem,
            page: &mut page,
            class,
            slow: slow[class.index()],
            fault_lag: *fault_lag,
        };
        let (service, result) = execute(ctx, &mut shard.data, &mut server.rng, q, now, k > 0);
        if let Some(f) = feed
            && let Some(change) = row_change(q, &result, now)
        {
            let lag = f.lag.sample_duration(&mut f.rng);
            out.send(f.to, lag.saturating_add(f.fault_lag), M::from(change));
        }
        if let DbResult::Scanned { .. } = result {
            if scan_order.len() >= Db::MAX_SCAN_PAGES {
                if let Some(old) = scan_order.pop_front() {
                    scan_pages.remove(&old);
                }
            }
            scan_order.push_back((q.reply_to, q.tag));
            scan_pages.insert((q.reply_to, q.tag), page);
        }
        let end = now.saturating_add(service);
        server.busy.push(Reverse(end));
        let in_service = server.busy.len();
        assert!(
            in_service <= cfg.max_concurrent as usize,
            "{in_service} queries in service on shard {s} server {k}, above max_concurrent {}",
            cfg.max_concurrent
        );
        stats.max_in_service = stats.max_in_service.max(in_service as u32);
        let latency = end.saturating_since(arrived);
        let cs = &mut stats.classes[class.index()];
        cs.served += 1;
        cs.latency.record(latency.as_ns());
        if latency >= cfg.slow_query_threshold {
            cs.slow += 1;
        }
        let reply = DbReply {
            tag: q.tag,
            latency,
            result: Ok(result),
        };
        let id = out.send(q.reply_to, service, M::from(reply));
        if k == 0 {
            let c = cfg.max_concurrent as usize;
            if server.inflight.len() >= 2 * c.min(1 << 12) + 16 {
                server.inflight.retain(|f| f.end > now);
            }
            server.inflight.push(InFlight {
                end,
                reply: id,
                tag: q.tag,
                reply_to: q.reply_to,
                arrived,
                inserted: match (result, q.op) {
                    (DbResult::Inserted(r), DbOp::InsertInstances { account, .. }) => {
                        Some((account, r))
                    }
                    _ => None,
                },
            });
        }
    }
}

/// The instance rows `q` changed, as `result` says, when it changed any: one row of an
/// `UpdateInstanceState`, the span from the first to the last row applied of an
/// `UpdateInstanceStates`.
fn row_change(q: &DbQuery, result: &DbResult, now: SimTime) -> Option<RowChange> {
    let (first, count) = match (q.op, result) {
        (DbOp::UpdateInstanceState { id, .. }, DbResult::Updated(UpdateOutcome::Done { .. })) => {
            (id, 1)
        }
        (DbOp::UpdateInstanceStates { first, .. }, DbResult::UpdatedRows(r)) if r.done != 0 => {
            let lo = r.done.trailing_zeros();
            let hi = 63 - r.done.leading_zeros();
            (InstanceId(first.0 + u64::from(lo)), hi - lo + 1)
        }
        _ => return None,
    };
    Some(RowChange {
        account: q.account,
        first,
        count,
        version: now,
    })
}

/// The parts of a [`Db`] besides the shard that one execution needs.
struct Exec<'a> {
    cfg: &'a DbConfig,
    next_instance: &'a mut u64,
    stats: &'a mut DbStats,
    idem: &'a mut IdempotencyStore,
    /// Where a scan puts the rows it read.
    page: &'a mut Vec<InstanceRow>,
    /// The query's class (`q.op.class()`, which the caller has at hand).
    class: QueryClass,
    /// The query class's slow-SQL factor (1 = none).
    slow: f64,
    /// Replicas lag at least this much (zero = no fault).
    fault_lag: SimDuration,
}

/// Applies `q` to `data` at `now` (or reads it, from a replica's snapshot when `replica`), and
/// returns its service time and result.
///
/// Always inlined into its one caller, [`Db::start`]: the context and the result then stay in
/// registers instead of going through memory (0.4% of full_mix's instructions).
#[inline(always)]
fn execute(
    ctx: Exec<'_>,
    data: &mut ShardData,
    rng: &mut SimRng,
    q: &DbQuery,
    now: SimTime,
    replica: bool,
) -> (SimDuration, DbResult) {
    let Exec {
        cfg,
        next_instance,
        stats,
        idem,
        page,
        class,
        slow,
        fault_lag,
    } = ctx;
    let mut base = cfg.latency[class.index()].sample(rng);
    if slow > 1.0 {
        base *= slow;
        stats.slowed_queries += 1;
    }
    let instance_rows = data.rows.len() as u64;
    // Changes older than this are never asked about: forget them.
    let horizon = if cfg.replicas == 0 {
        now
    } else {
        let keep = cfg.max_replication_lag.max(fault_lag);
        now.saturating_sub(keep)
    };
    let mut by_fault = false;
    let snapshot = if replica {
        stats.replica_reads += 1;
        let drawn = cfg
            .replication_lag
            .sample_duration(rng)
            .min(cfg.max_replication_lag);
        by_fault = fault_lag > drawn;
        if by_fault {
            stats.fault_lagged_reads += 1;
        }
        let lag = drawn.max(fault_lag);
        Some(now.saturating_sub(lag))
    } else {
        None
    };
    let stale_before = stats.stale_reads;
    let (factor, result) = match q.op {
        DbOp::GetInstance(id) => {
            let row = data.rows.get(&id).filter(|r| r.account == q.account);
            let found = match snapshot {
                None => row.map(|r| r.view(id)),
                Some(v) => {
                    let seen = row.and_then(|r| r.view_as_of(id, v));
                    if seen.map(|r| r.state) != row.map(|r| r.state) {
                        stats.stale_reads += 1;
                    }
                    seen
                }
            };
            (
                cfg.index_factor(instance_rows),
                DbResult::Instance(found.map(|r| r.read())),
            )
        }
        DbOp::ListInstances {
            account,
            page,
            page_size,
        } => {
            let size = if page_size > cfg.max_page_size {
                stats.page_size_clamped += 1;
                cfg.max_page_size
            } else {
                page_size
            };
            let m = data.accounts.get(&account.0);
            let current = m.map_or(0, Membership::current);
            let total = match snapshot {
                None => current,
                Some(v) => {
                    let seen = m.map_or(0, |m| m.as_of(v));
                    if seen != current {
                        stats.stale_reads += 1;
                    }
                    seen
                }
            };
            let skip = u64::from(page).saturating_mul(u64::from(size));
            let returned = total.saturating_sub(skip).min(u64::from(size)) as u16;
            (
                cfg.list_factor(instance_rows),
                DbResult::Listed {
                    returned,
                    total_for_account: total,
                },
            )
        }
        DbOp::InsertInstances {
            account,
            count,
            instance_type,
            state,
        } => {
            let first = *next_instance;
            *next_instance += u64::from(count);
            for id in (first..first + u64::from(count)).map(InstanceId) {
                data.rows.insert(
                    id,
                    StoredRow {
                        account,
                        instance_type,
                        state,
                        updated_at: now,
                        prev_state: state,
                        prev_updated_at: now,
                        created_at: now,
                        resources: InstanceResources::default(),
                        resources_at: now,
                    },
                );
                if state == InstanceState::Deleted {
                    data.deleted.insert((now, id));
                }
            }
            if state != InstanceState::Deleted && count > 0 {
                data.add_listed(account, i64::from(count), now, horizon);
            }
            let factor = cfg.index_factor(instance_rows) * cfg.batch_factor(u64::from(count));
            let range = InstanceIdRange {
                first: InstanceId(first),
                count: u32::from(count),
            };
            (factor, DbResult::Inserted(range))
        }
        DbOp::UpdateInstanceState {
            id,
            expect,
            to,
            resources,
        } => {
            let outcome = update_row(data, q.account, id, expect, to, resources, now, horizon);
            (cfg.index_factor(instance_rows), DbResult::Updated(outcome))
        }
        DbOp::UpdateInstanceStates {
            first,
            count,
            expect,
            to,
            resources,
        } => {
            let mut r = RowsUpdated {
                done: 0,
                at_target: 0,
                first_other: None,
            };
            for j in 0..count {
                let id = InstanceId(first.0 + u64::from(j));
                let res = resources.map(|b| b.shifted(u64::from(j)));
                match update_row(data, q.account, id, expect, to, res, now, horizon) {
                    UpdateOutcome::Done { .. } => r.done |= 1 << j,
                    UpdateOutcome::Mismatch { actual } if actual == to => r.at_target |= 1 << j,
                    other => {
                        if r.first_other.is_none() {
                            r.first_other = Some((j, other));
                        }
                    }
                }
            }
            let factor = cfg.index_factor(instance_rows) * cfg.batch_factor(u64::from(count));
            (factor, DbResult::UpdatedRows(r))
        }
        DbOp::SetInstanceResources {
            id,
            expect,
            resources,
        } => {
            let outcome = match data.rows.get_mut(&id).filter(|r| r.account == q.account) {
                None => UpdateOutcome::NotFound,
                Some(r) if expect.is_some_and(|e| e != r.state) => {
                    UpdateOutcome::Mismatch { actual: r.state }
                }
                Some(r) => {
                    r.resources = resources;
                    r.resources_at = now;
                    UpdateOutcome::Done { from: r.state }
                }
            };
            (cfg.index_factor(instance_rows), DbResult::Updated(outcome))
        }
        DbOp::ScanInstances { after, limit } => {
            let limit = usize::from(limit);
            let rows = data.rows.from(InstanceId(after.0.saturating_add(1)));
            match snapshot {
                None => page.extend(rows.take(limit).map(|(id, r)| r.view(id))),
                // A replica's page: the rows it has, as of its snapshot. The page is a stale
                // read if a row in its range is missing or older than on the primary.
                Some(v) => {
                    let mut stale = false;
                    for (id, r) in rows {
                        if page.len() >= limit {
                            break;
                        }
                        match r.view_as_of(id, v) {
                            Some(seen) => {
                                stale |= seen.state != r.state;
                                page.push(seen);
                            }
                            None => stale = true,
                        }
                    }
                    if stale {
                        stats.stale_reads += 1;
                    }
                }
            }
            let returned = page.len();
            let factor = cfg.index_factor(instance_rows) * cfg.batch_factor(returned as u64);
            (
                factor,
                DbResult::Scanned {
                    returned: returned as u16,
                    last: page.last().map(|r| r.id),
                },
            )
        }
        DbOp::IdemCheck {
            key,
            fingerprint,
            skew_ns,
        } => {
            let before = data.rows(Table::Idempotency);
            let check = idem.check_by(now, caller_clock(now, skew_ns), key, fingerprint);
            if matches!(check, IdemCheckResult::Proceed(_))
                && idem.config().mode() == IdemMode::Atomic
            {
                data.append(Table::Idempotency, 1, now);
            }
            (cfg.index_factor(before), DbResult::Idem(check))
        }
        DbOp::IdemRecord {
            key,
            fingerprint,
            skew_ns,
        } => {
            let before = data.rows(Table::Idempotency);
            idem.record_in_progress_by(now, caller_clock(now, skew_ns), key, fingerprint);
            data.append(Table::Idempotency, 1, now);
            (cfg.index_factor(before), DbResult::Appended)
        }
        DbOp::IdemComplete {
            key,
            outcome,
            skew_ns,
        } => {
            idem.complete_by(now, caller_clock(now, skew_ns), key, outcome);
            (
                cfg.index_factor(data.rows(Table::Idempotency)),
                DbResult::Appended,
            )
        }
        DbOp::IdemAbandon { key } => {
            idem.abandon(key);
            (
                cfg.index_factor(data.rows(Table::Idempotency)),
                DbResult::Appended,
            )
        }
        DbOp::AppendTransition => {
            let before = data.rows(Table::Workflows).max(data.rows(Table::History));
            data.append(Table::Workflows, 1, now);
            data.append(Table::History, 1, now);
            let factor = cfg.index_factor(before) * cfg.batch_factor(2);
            (factor, DbResult::Appended)
        }
        DbOp::AppendRows { table, rows } => {
            let before = data.rows(table);
            data.append(table, rows, now);
            let factor = cfg.index_factor(before) * cfg.batch_factor(u64::from(rows));
            (factor, DbResult::Appended)
        }
        DbOp::ArchiveRows {
            table,
            max_rows,
            older_than,
        } => {
            let removed = match table {
                Table::Instances => {
                    let mut n = 0u32;
                    while n < max_rows {
                        match data.deleted.first() {
                            Some(&(at, id)) if at < older_than => {
                                data.deleted.pop_first();
                                data.rows.remove(&id);
                                n += 1;
                            }
                            _ => break,
                        }
                    }
                    n
                }
                other => {
                    // Whole seconds older than the cut-off (a row appended at second s is older
                    // than `older_than` when s + 1 <= its second).
                    let cutoff = older_than.as_ns() / 1_000_000_000;
                    let ages = &mut data.ages[other.index() - 1];
                    let mut n = 0u64;
                    while n < u64::from(max_rows) {
                        let Some((second, rows)) = ages.front_mut() else {
                            break;
                        };
                        if *second >= cutoff {
                            break;
                        }
                        let take = (*rows).min(u64::from(max_rows) - n);
                        *rows -= take;
                        n += take;
                        if *rows == 0 {
                            ages.pop_front();
                        }
                    }
                    let slot = &mut data.counters[other.index() - 1];
                    *slot -= n;
                    n as u32
                }
            };
            (
                cfg.archive_factor(u64::from(removed)),
                DbResult::Archived(removed),
            )
        }
    };
    if by_fault && stats.stale_reads > stale_before {
        stats.fault_stale_reads += 1;
    }
    (SimDuration::from_secs_f64(base * factor), result)
}

/// Compare-and-set of one instance row's state, with its resource references when given (see
/// [`DbOp::UpdateInstanceState`]).
#[allow(clippy::too_many_arguments)]
fn update_row(
    data: &mut ShardData,
    account: AccountId,
    id: InstanceId,
    expect: Option<InstanceState>,
    to: InstanceState,
    resources: Option<InstanceResources>,
    now: SimTime,
    horizon: SimTime,
) -> UpdateOutcome {
    match data.rows.get_mut(&id).filter(|r| r.account == account) {
        None => UpdateOutcome::NotFound,
        Some(r) if expect.is_some_and(|e| e != r.state) => {
            UpdateOutcome::Mismatch { actual: r.state }
        }
        Some(r) => {
            let from = r.state;
            if !crate::invariants::legal_move(from, to) {
                data.illegal_total += 1;
                if data.illegal.len() < 16 {
                    data.illegal.push(IllegalMove {
                        at: now,
                        account,
                        id,
                        from,
                        to,
                    });
                }
            }
            let deleted_since = r.updated_at;
            r.prev_state = from;
            r.prev_updated_at = r.updated_at;
            r.state = to;
            r.updated_at = now;
            if let Some(res) = resources {
                r.resources = res;
                r.resources_at = now;
            }
            let account = r.account;
            let deleted = InstanceState::Deleted;
            if from != deleted && to == deleted {
                data.deleted.insert((now, id));
                data.add_listed(account, -1, now, horizon);
            } else if from == deleted && to != deleted {
                data.deleted.remove(&(deleted_since, id));
                data.add_listed(account, 1, now, horizon);
            }
            UpdateOutcome::Done { from }
        }
    }
}
