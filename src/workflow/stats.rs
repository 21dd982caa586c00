//! What the workflow engine counts.

use super::{FailReason, WorkflowKind};
use crate::api::types::ErrorCode;
use crate::metrics::LatencyHistogram;
use std::collections::BTreeMap;

/// Counts of one step of one workflow definition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepStats {
    /// The step's name in its definition (`allocate_host`, …).
    pub name: &'static str,
    /// Calls or queries sent for the step's action (every attempt of every part).
    pub attempts: u64,
    /// Attempts followed by a backoff and another attempt.
    pub retries: u64,
    /// Attempts that got no reply within the step's timeout.
    pub timeouts: u64,
    /// Times the step failed (after its retries, or stopped by the deadline).
    pub failures: u64,
    /// Of `failures`: by the error code the last attempt ended with (a failure the deadline
    /// stopped, or a durable write that failed, is not here).
    pub failure_codes: BTreeMap<ErrorCode, u64>,
    /// Times its compensation ran.
    pub compensations: u64,
    /// Compensations that did not fully succeed (what they left behind is orphaned).
    pub compensation_failures: u64,
}

/// What the engine counted. Workflow counts include sub-workflows; end-to-end durations are
/// kept apart for top-level workflows (what a caller waits for) and sub-workflows.
#[derive(Clone, Debug, Default)]
pub struct WfStats {
    /// Top-level commands admitted, by [`WorkflowKind::index`].
    pub admitted: [u64; WorkflowKind::COUNT],
    /// Commands rejected (admission bound reached, or no instances).
    pub rejected: u64,
    /// Of `rejected`: by [`WorkflowKind::index`].
    pub rejected_by_kind: [u64; WorkflowKind::COUNT],
    /// Rows of refused creations moved to the failed state (their API call answers the
    /// refusal when it asked for an acknowledgement), and rows left Pending (the write failed,
    /// or too many were out): phantom rows.
    pub refused_rows_failed: u64,
    pub refused_rows_left: u64,
    /// Sub-workflows started.
    pub children: u64,
    /// Workflows that completed / failed, by kind.
    pub completed: [u64; WorkflowKind::COUNT],
    pub failed: [u64; WorkflowKind::COUNT],
    /// Failures by [`FailReason::label`].
    pub failures: BTreeMap<&'static str, u64>,
    /// Admission to end of top-level workflows, ns, by kind.
    pub e2e: [LatencyHistogram; WorkflowKind::COUNT],
    /// Admission to end of sub-workflows, ns, by kind.
    pub child_e2e: [LatencyHistogram; WorkflowKind::COUNT],
    /// Per kind, per step of the definition.
    pub steps: [Vec<StepStats>; WorkflowKind::COUNT],
    /// Compensations run / not fully successful (all kinds and steps).
    pub compensations: u64,
    pub compensation_failures: u64,
    /// Tasks handed to a worker (redeliveries included).
    pub tasks: u64,
    /// Time tasks waited in the queue, ns.
    pub queue_wait: LatencyHistogram,
    /// Most tasks queued at once.
    pub max_queue: usize,
    /// Worker crashes, tasks they lost, and lost tasks redelivered after their lease.
    pub crashes: u64,
    pub tasks_lost: u64,
    pub redeliveries: u64,
    /// From a crash to the redelivery of the task it lost, ns.
    pub redelivery_delay: LatencyHistogram,
    /// Leases renewed by live workers (tasks running longer than a lease).
    pub lease_renewals: u64,
    /// Dependency calls, state writes (one multi-row update each) and transition writes (one
    /// transaction each: the workflow row and its history event) sent (every attempt).
    pub dep_calls: u64,
    pub db_updates: u64,
    pub db_appends: u64,
    /// Dependency replies that were replays of an earlier call's token.
    pub replays_seen: u64,
    /// State writes found already done (compare-and-set mismatch on the target state).
    pub cas_replays: u64,
    /// Retries of the engine's own database writes while the database was unavailable.
    pub db_waits: u64,
    /// Deletes that found the record gone, attaches/detaches that found it already so.
    pub already_done: u64,
    /// Replies and timers for attempts that had already ended (late, or their run lost).
    pub stale: u64,
    /// History events written, and durable writes that failed after their retries.
    pub history_events: u64,
    pub persist_failures: u64,
    /// Workflows that hit their deadline / their history cap.
    pub deadline_exceeded: u64,
    pub history_limited: u64,
    /// Records kept on delete at the caller's request (disks, EIPs), and records left behind by
    /// failed compensations or deletes.
    pub kept_resources: u64,
    pub orphaned_resources: u64,
}

impl WfStats {
    /// Counts of zero for definitions whose steps are named `steps` (by kind).
    pub(super) fn new(steps: [Vec<&'static str>; WorkflowKind::COUNT]) -> WfStats {
        WfStats {
            steps: steps.map(|names| {
                names
                    .into_iter()
                    .map(|name| StepStats {
                        name,
                        ..StepStats::default()
                    })
                    .collect()
            }),
            ..WfStats::default()
        }
    }

    /// Counts of step `step` (index in the definition) of `kind`.
    pub fn step(&self, kind: WorkflowKind, step: usize) -> &StepStats {
        &self.steps[kind.index()][step]
    }

    pub(super) fn step_mut(&mut self, kind: WorkflowKind, step: u8) -> &mut StepStats {
        &mut self.steps[kind.index()][usize::from(step)]
    }

    /// End-to-end durations of top-level workflows of `kind`.
    pub fn e2e(&self, kind: WorkflowKind) -> &LatencyHistogram {
        &self.e2e[kind.index()]
    }

    /// Workflows (sub-workflows included) that failed with a reason of this label.
    pub fn failures_of(&self, reason: FailReason) -> u64 {
        self.failures.get(reason.label()).copied().unwrap_or(0)
    }

    /// Step retries summed over every kind and step.
    pub fn retries(&self) -> u64 {
        self.steps.iter().flatten().map(|s| s.retries).sum()
    }
}
