//! The workflow engine: durable, retried, compensated multi-step operations on instances
//! (CreateInstances, Start, Stop, Reboot, Delete), run by a leased worker pool (domain §7).
//!
//! # Shape
//!
//! [`WorkflowEngine`] is one sans-IO component, generic over the world's message type `M`
//! ([`WfMsg`]): it takes [`WfCommand`]s, sends [`DbQuery`]s to the database and [`DepCall`]s to the
//! dependencies (each with `reply_to = out.me()`), takes their
//! [`DbReply`](crate::db::DbReply)s and [`DepReply`](crate::deps::DepReply)s back, wakes up on
//! its own [`WfTimer`]s, sends a [`WfAck`] to the command's `ack_to` when it admits or refuses
//! the command, and a [`WfDone`] to its `reply_to` when the workflow ends.
//!
//! The API node asks for the acknowledgement only: it answers its client once the engine has
//! taken the command (OK), or with the engine's refusal (503 `ServiceUnavailable` at the bound
//! below), and never waits for the workflow itself (the API is asynchronous: clients poll).
//!
//! # Definitions
//!
//! A [`WorkflowDef`] is an ordered list of [`StepDef`]s; each has an [`Action`] (a dependency
//! call that creates records, one that deletes/attaches/detaches them, or a state write of every
//! instance), a per-attempt timeout, a [`StepRetry`] policy and an optional compensation. The
//! shipped definitions ([`WorkflowDef::standard`]):
//!
//! | kind | steps (compensation) | on failure |
//! |---|---|---|
//! | CreateInstances | allocate_host (release_host) → create_disk (delete_disk) → create_eni (delete_eni) → allocate_eip (release_eip) if a public IP → Pending→Starting → start_vm = attach_disk (detach_disk) → start_billing (stop_billing) → Starting→Running; created stopped (CreateInstance): the boot steps give way to Pending→Stopped | Deleted |
//! | Start | Stopped→Starting → attach_disk (detach_disk) → start_billing (stop_billing) → Running | Stopped |
//! | Stop | Running→Stopping → stop_billing → detach_disk → Stopped | left as is (a stuck Stopping) |
//! | Reboot | Running→Starting → detach_disk (attach_disk) → attach_disk (detach_disk) → Running | Running |
//! | Delete | →Deleted → stop_billing → detach_disk → delete_disk (unless kept) → delete_eni → release_eip (unless kept) → release_host | left as is (orphans counted) |
//!
//! On failure the completed steps' compensations run in reverse (a saga), then the instances are
//! moved to the definition's failure state. Stop and Delete have no compensations: they are
//! forward-only, and what they could not release is counted as orphaned.
//!
//! # Execution: tasks, workers, leases
//!
//! A workflow advances by *tasks*; a task does one durable transition: the start, one step (its
//! action, then its commit), one compensation, or the close. Tasks wait in one FIFO queue; `N`
//! workers take them in order. Taking a task takes a lease for `lease`; a live worker renews it
//! (a heartbeat) when it runs out. [`WorkflowEngine::crash_worker`] loses the worker's task (the
//! worker restarts at once, empty); the task's lease then runs out, and the task is redelivered
//! to the back of the queue (at-least-once). A redelivered task starts over from the last
//! durable transition; whatever the lost run had sent still happens downstream, and its replies
//! are ignored.
//!
//! Admission is bounded: a command is rejected (`ServiceUnavailable`, counted by kind) when the
//! live workflows, sub-workflows included, would pass `queue_limit`. Either way the command's
//! `ack_to`, if any, gets a [`WfAck`] at once (one `db_hop`): the workflow's id once admitted
//! (its start task is queued: the engine owns it, and a worker crash only redelivers it), or
//! the code. Every live workflow has at most
//! one task queued or running, so the task queue never holds more than `queue_limit` tasks.
//! A refused CreateInstances command's rows (inserted Pending by the caller before it sent the
//! command; the caller answers the refusal) are moved to the definition's failed state by
//! plain state writes of at most
//! `MAX_UPDATE_ROWS` rows, with their cache invalidations: no workflow would ever move them
//! (`WfStats::refused_rows_failed`, and `refused_rows_left` when such a write fails).
//!
//! # Durability and its cost model
//!
//! Every transition is made durable before the workflow moves on: one transaction
//! (`DbOp::AppendTransition`) that writes the workflow row and appends one history event (one
//! row each to `Workflows` and `History`). The transitions, hence history events, of a workflow:
//! `Started`, one `StepCompleted` per step run, and either `Completed`, or `Failing(reason)`, one
//! `Compensated` per compensation run and `Closed`. Retries are not events (Temporal's model: an
//! attempt count is not history). A CreateInstances of `N` instances in batch mode costs
//! 9 transitions = 9 transition writes (10 with a public IP), plus 2 multi-row state updates
//! (`UpdateInstanceStates`, one per state step and per 64 instances, each row
//! compare-and-set; rows of one query are expected in the same state, so instances whose
//! states diverged go in separate queries). With `batch = false` it is a parent (2 transitions)
//! and `N` children (9 each): `9 N + 2` transition writes, `2 N` updates, and `N` times the
//! dependency calls.
//!
//! History is capped (`history_cap`, default 25,000 events). Before each forward step the engine
//! checks that the step's own event, a later failure event, one event per compensation that might
//! run, and the close event all still fit; if not, the workflow fails with
//! [`FailReason::HistoryLimit`] before the step, so its compensations and close always fit and
//! a workflow's history never passes the cap.
//!
//! A durable write that fails after its retries (database overloaded or down) fails a forward
//! step ([`FailReason::Persistence`]); on the failure path it is counted
//! (`WfStats::persist_failures`) and the workflow goes on, so resources are still released.
//!
//! # Idempotency
//!
//! Every dependency call carries a token derived from (workflow id, step id, part,
//! compensation or not) and a per-engine salt (from the engine's random stream), never from the
//! attempt: a retry, a late duplicate or a redelivered task replays the same call, and the
//! dependency returns the same records. State writes are
//! compare-and-set; a mismatch whose current state is already the target is taken as done (the
//! lost run had made it). A delete that finds its record gone and an attach/detach that finds it
//! already in the target state count as done too.
//!
//! # Correlation
//!
//! A query's or call's `tag` is the [`Handle`] (as `u64`) of a record of
//! that one attempt, which names the workflow, its stage and the operation; the record goes away
//! when the attempt ends (reply, timeout, or its run lost), so any later reply or timer for it
//! finds nothing and is ignored. Replies come back to `reply_to = out.me()`: the world routes
//! them by component id.
//!
//! # Batching
//!
//! `batch = true`: one dependency call per step for all `N` instances (`count = N`, split at
//! `max_batch`). `batch = false` and `N > 1`: a parent workflow starts `N` sub-workflows of one
//! instance each and completes when all of them have ended (failed if any failed). `MinAmount`
//! (`min_count`) is honoured in batch mode by `allocate_host`: with fewer hosts granted, the
//! workflow goes on with the first ones and moves the rest to the failure state. Sub-workflows
//! each succeed or fail alone.
//!
//! # Deadline
//!
//! A workflow that passes its definition's deadline stops its forward progress: no new attempt
//! starts, an attempt in flight is waited for (so what it created is known and undone), and the
//! workflow fails with [`FailReason::Deadline`] and compensates.
//!
//! # Timers
//!
//! Each attempt has a timeout, each task a lease (renewed while its worker lives), each
//! workflow but a parent a deadline; nearly all are cancelled before they are due (the reply
//! comes, the task ends, the workflow ends). The engine keeps them itself, not in the kernel's
//! event queue, in a [`crate::kernel::LocalTimers`]: one FIFO per distinct duration (timers of
//! one duration are due in the order they were set), cancelled entries dropped when they reach
//! the front, and ONE kernel timer
//! ([`WfTimer`], a wake-up) armed at or before the earliest due one. When it comes, every local
//! timer due then fires in (due, insertion) order, each followed by a dispatch, as their own
//! kernel timers did; then it is armed again for the next one. A wake-up whose timers were all
//! cancelled does nothing (no dispatch either). Backoffs, rarely cancelled, stay kernel timers.
//! One difference remains: among events due at the same nanosecond, the kernel orders the
//! wake-up by when it was armed, not by when each timer was set, so a reply that arrives at the
//! very nanosecond an attempt times out may now be handled before the timeout instead of after
//! (`benches/golden.sh` finds the same results for every scenario).
//!
//! # Stuck instances
//!
//! The engine remembers the instances it has seen in a transitional state (Pending, Starting,
//! Stopping) and since when; [`WorkflowEngine::stuck`] lists those there for longer than
//! `stuck_threshold`.
//!
//! # Concurrency between workflows
//!
//! Workflows on the same instances are not serialised by the engine: the database's
//! compare-and-set rejects a state write from the wrong state, and the resource table the engine
//! keeps per instance (what CreateInstances made, what Start/Stop/Delete change) is read when a
//! workflow is admitted and written when it ends.

mod config;
mod engine;
mod stats;
#[cfg(test)]
mod tests;

pub use config::{
    Action, EngineConfig, EngineConfigBuilder, EngineConfigError, MAX_COEFFICIENT, MAX_INTERVAL,
    MAX_STEP_ATTEMPTS, MAX_STEPS, StepDef, StepRetry, StepRetryError, When, WorkflowDef,
};
pub use engine::{EngineCache, InstanceResources, StuckInstance, WorkflowEngine};
pub use stats::{StepStats, WfStats};

use crate::api::types::{AccountId, ErrorCode, InstanceIdRange, InstanceType};
use crate::db::DbQuery;
use crate::deps::DepCall;
use crate::kernel::{ComponentId, Handle, SimTime};
use std::fmt;

/// The workflow types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkflowKind {
    CreateInstances,
    Start,
    Stop,
    Reboot,
    Delete,
}

impl WorkflowKind {
    pub const ALL: [WorkflowKind; 5] = [
        WorkflowKind::CreateInstances,
        WorkflowKind::Start,
        WorkflowKind::Stop,
        WorkflowKind::Reboot,
        WorkflowKind::Delete,
    ];
    pub const COUNT: usize = WorkflowKind::ALL.len();

    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            WorkflowKind::CreateInstances => "create_instances",
            WorkflowKind::Start => "start",
            WorkflowKind::Stop => "stop",
            WorkflowKind::Reboot => "reboot",
            WorkflowKind::Delete => "delete",
        }
    }
}

impl fmt::Display for WorkflowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A workflow's id: unique within the engine, in admission order (sub-workflows get their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkflowId(pub u64);

/// The components the engine talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WfDeps {
    pub db: ComponentId,
    pub inventory: ComponentId,
    pub block_storage: ComponentId,
    pub vpc: ComponentId,
    pub billing: ComponentId,
}

/// Options of a command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WfOptions {
    /// CreateInstances: allocate an elastic IP per instance.
    pub public_ip: bool,
    /// Delete: keep the disks (they stay behind, detached).
    pub keep_disks: bool,
    /// Delete: keep the elastic IPs.
    pub keep_eips: bool,
    /// Delete: whatever the instances' state (the state write expects nothing).
    pub force: bool,
    /// CreateInstances: leave the instances Stopped instead of booting them (CreateInstance).
    pub stopped: bool,
}

/// Starts a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WfCommand {
    pub kind: WorkflowKind,
    pub account: AccountId,
    /// The instances, which already exist in the database (CreateInstances: inserted Pending).
    pub instances: InstanceIdRange,
    pub instance_type: InstanceType,
    /// One dependency call per step for all instances (`true`), or one sub-workflow per
    /// instance (`false`).
    pub batch: bool,
    /// CreateInstances in batch mode: accept a partial host allocation of at least this many
    /// (RunInstances `MinAmount`); 0 = all or nothing.
    pub min_count: u32,
    pub options: WfOptions,
    /// Where the [`WfDone`] goes, if anywhere.
    pub reply_to: Option<ComponentId>,
    /// Where the admission's [`WfAck`] goes, if anywhere (an API node whose request waits for
    /// the engine to take the command before it answers).
    pub ack_to: Option<ComponentId>,
    /// Echoed in the [`WfDone`] and the [`WfAck`].
    pub tag: u64,
}

impl WfCommand {
    /// A batched command with no options, no reply and no acknowledgement.
    pub fn new(
        kind: WorkflowKind,
        account: AccountId,
        instances: InstanceIdRange,
        instance_type: InstanceType,
    ) -> WfCommand {
        WfCommand {
            kind,
            account,
            instances,
            instance_type,
            batch: true,
            min_count: 0,
            options: WfOptions::default(),
            reply_to: None,
            ack_to: None,
            tag: 0,
        }
    }
    pub fn with_batch(mut self, batch: bool) -> WfCommand {
        self.batch = batch;
        self
    }
    pub fn with_min_count(mut self, n: u32) -> WfCommand {
        self.min_count = n;
        self
    }
    pub fn with_options(mut self, o: WfOptions) -> WfCommand {
        self.options = o;
        self
    }
    pub fn with_reply(mut self, to: ComponentId, tag: u64) -> WfCommand {
        self.reply_to = Some(to);
        self.tag = tag;
        self
    }
    /// Asks for a [`WfAck`] to `to` when the command is admitted or refused, echoing `tag` (the
    /// same tag as the [`WfDone`]'s, if both are asked for).
    pub fn with_ack(mut self, to: ComponentId, tag: u64) -> WfCommand {
        self.ack_to = Some(to);
        self.tag = tag;
        self
    }
}

/// The engine's answer to a command's admission, sent to its `ack_to` at once (one hop): the
/// workflow it started (its work is queued: the engine owns it from now on), or the code it
/// refused the command with (`ServiceUnavailable`: the bound on live workflows;
/// `InvalidParameter`: no instances). 24 bytes, no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WfAck {
    /// The command's `tag`.
    pub tag: u64,
    pub result: Result<WorkflowId, ErrorCode>,
}

/// Why a workflow failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailReason {
    /// Step `step` (index in the definition) failed with `code` after its retries
    /// (`DeadlineExceeded`: its attempts timed out).
    Step { step: u8, code: ErrorCode },
    /// The workflow's deadline passed.
    Deadline,
    /// The history cap would have been passed.
    HistoryLimit,
    /// A forward step's durable write failed after its retries.
    Persistence,
    /// Sub-workflows failed (a parent of `batch = false`).
    Children { failed: u32 },
}

impl FailReason {
    /// A short stable label for counters and reports.
    pub const fn label(self) -> &'static str {
        match self {
            FailReason::Step { .. } => "step",
            FailReason::Deadline => "deadline",
            FailReason::HistoryLimit => "history_limit",
            FailReason::Persistence => "persistence",
            FailReason::Children { .. } => "children",
        }
    }
}

/// How a workflow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WfOutcome {
    Completed,
    /// Failed; its compensations have run.
    Failed(FailReason),
    /// Never started: `ServiceUnavailable` (admission bound) or `InvalidParameter` (no
    /// instances).
    Rejected(ErrorCode),
}

/// A workflow's end, sent to its command's `reply_to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WfDone {
    pub tag: u64,
    /// `WorkflowId(0)` when rejected.
    pub workflow: WorkflowId,
    pub kind: WorkflowKind,
    pub outcome: WfOutcome,
    pub instances: InstanceIdRange,
    /// Instances that completed the workflow (fewer than asked after a partial host allocation
    /// or failed sub-workflows; 0 when failed).
    pub succeeded: u32,
    /// When the command was admitted.
    pub admitted: SimTime,
    /// History events written for this workflow (not its sub-workflows).
    pub history_events: u32,
}

/// The engine's own wake-ups. Opaque to the world, which hands it back to
/// [`WorkflowEngine::on_timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WfTimer(pub(crate) TimerKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// An attempt's backoff ended (the backoff's record).
    Retry(Handle),
    /// The earliest of the engine's local timers (attempt timeouts, task leases, workflow
    /// deadlines) is due: see "Timers" in the module documentation.
    Wake,
}

impl WfTimer {
    /// A readable name for traces: `retry`, `wake`.
    pub fn kind_name(&self) -> &'static str {
        match self.0 {
            TimerKind::Retry(_) => "retry",
            TimerKind::Wake => "wake",
        }
    }
}

/// What the world's message type must carry for the engine: the queries and calls it sends, its
/// timers, its admission acknowledgements and its completion notices. (Replies come in through
/// [`WorkflowEngine::on_db_reply`] and [`WorkflowEngine::on_dep_reply`], as
/// [`DbReply`](crate::db::DbReply) and [`DepReply`](crate::deps::DepReply).)
pub trait WfMsg:
    From<DbQuery>
    + From<DepCall>
    + From<WfTimer>
    + From<WfDone>
    + From<WfAck>
    + From<crate::cache::L2Request>
    + From<crate::cache::L1Invalidation>
{
}

impl<
    M: From<DbQuery>
        + From<DepCall>
        + From<WfTimer>
        + From<WfDone>
        + From<WfAck>
        + From<crate::cache::L2Request>
        + From<crate::cache::L1Invalidation>,
> WfMsg for M
{
}
