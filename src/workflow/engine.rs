//! [`WorkflowEngine`]: admission, the task queue and the leased workers, the stages of a task
//! (an action, then the commit that makes its outcome durable), attempts with timeouts and
//! retries, compensation, and the end of a workflow. See the module documentation of
//! [`crate::workflow`] for the model.

use super::config::{Action, EngineConfig, StepRetry, When};
use super::stats::WfStats;
use super::{
    FailReason, TimerKind, WfAck, WfCommand, WfDeps, WfDone, WfMsg, WfOptions, WfOutcome, WfTimer,
    WorkflowId, WorkflowKind,
};
use crate::api::types::{
    AccountId, ErrorCode, InstanceId, InstanceIdRange, InstanceState, InstanceType,
};
use crate::db::{DbError, DbOp, DbQuery, DbReply, DbResult, MAX_UPDATE_ROWS, UpdateOutcome};
use crate::deps::{
    DepCall, DepOp, DepReply, DependencyKind, Effect, ResourceId, ResourceKind, ResourceRange,
};
use crate::kernel::{
    ComponentId, FixMap, Handle, LocalTimers, Outbox, SimDuration, SimRng, SimTime, Slab, Ticket,
    TimerId,
};
use std::collections::{BTreeMap, VecDeque};

fn slot_of(kind: ResourceKind) -> usize {
    InstanceResources::slot(kind).expect("definitions are validated: no bandwidth or image actions")
}

/// The dependency records the engine knows an instance holds (its in-memory cache of the
/// database rows' references, which it writes with its state updates): filled by
/// CreateInstances and changed by Start, Stop, Reboot and Delete.
pub use crate::db::InstanceResources;

/// An instance in a transitional state for longer than the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StuckInstance {
    pub id: InstanceId,
    pub account: AccountId,
    pub state: InstanceState,
    /// Since when (the engine's write, or the admission of the workflow that found it there).
    pub since: SimTime,
}

/// Where a workflow is, durably: what its next task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cursor {
    /// Write `Started`.
    Start,
    /// Run forward step `k` (skipped if it does not apply or has nothing to do).
    Step(u8),
    /// Consider compensating step `j`, then `j − 1`, … down to 0.
    Compensate(u8),
    /// Move failed instances to the failure state, write `Completed` or `Closed`.
    Finish,
    /// A parent waiting for its sub-workflows (no task).
    Waiting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Task {
    /// Between tasks (a parent waiting).
    Idle,
    Queued,
    Running,
    /// Its worker crashed: redelivered when the lease runs out.
    Lost,
}

/// The transitions (history events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Started,
    StepCompleted(u8),
    Failing(u8, FailReason),
    Compensated(u8),
    Completed,
    Closed,
}

/// What an action stage does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Step(u8),
    Compensate(u8),
    /// Failure-state writes before `Closed`.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Action(What),
    Commit(Event),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    /// A dependency call covering the instances `first..=last` (by index in the workflow).
    Dep {
        op: DepOp,
        count: u32,
        target: Option<ResourceRange>,
        min_count: u32,
        token: u64,
        /// The logical operation (a trace id, the same on every attempt, whatever the token).
        origin: u64,
        first: u32,
        last: u32,
    },
    /// One `UpdateInstanceStates` of the `count` instances from `first` (index in the workflow),
    /// all expected in the same state. With `refs`, it also writes their resource references
    /// (instance `first + j` holds instance `first`'s, each id `j` higher).
    States {
        first: u32,
        count: u8,
        expect: Option<InstanceState>,
        to: InstanceState,
        refs: bool,
    },
    /// A transition's durable write: the workflow row and its history event, one transaction.
    Commit,
    /// `SetInstanceResources` of instance `inst`: its row gets the references the workflow
    /// left it holding (at the close, when no state write carried them).
    Resources { inst: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Not sent yet.
    Waiting,
    /// An attempt in flight or a backoff (`Op::call` names its record).
    Out,
    Ok(ResourceRange),
    Failed(ErrorCode),
    /// Abandoned during a backoff (the stage failed or the deadline passed).
    Dropped,
}

#[derive(Clone, Copy, Debug)]
struct Op {
    kind: OpKind,
    /// Attempts made before the current one.
    attempt: u32,
    status: Status,
    call: Option<Handle>,
    /// `States`: rows of the operation whose state is `to` in the database (bit `j`: instance
    /// `first + j`), whatever the operation's status.
    applied: u64,
}

impl Op {
    fn new(kind: OpKind) -> Op {
        Op {
            kind,
            attempt: 0,
            status: Status::Waiting,
            call: None,
            applied: 0,
        }
    }
    fn is_ok(&self) -> bool {
        matches!(self.status, Status::Ok(_))
    }
    /// Whether the operation changed anything (a state batch may fail with rows applied).
    fn had_effect(&self) -> bool {
        self.is_ok() || self.applied != 0
    }
}

/// The free workers as a bit set: the lowest free index in a few word scans, no allocation.
#[derive(Debug)]
struct FreeWorkers(Vec<u64>);

impl FreeWorkers {
    fn all(n: u32) -> FreeWorkers {
        let mut words = vec![0u64; n.div_ceil(64) as usize];
        for w in 0..n {
            words[(w / 64) as usize] |= 1 << (w % 64);
        }
        FreeWorkers(words)
    }
    fn insert(&mut self, w: u32) {
        self.0[(w / 64) as usize] |= 1 << (w % 64);
    }
    fn remove(&mut self, w: u32) {
        self.0[(w / 64) as usize] &= !(1 << (w % 64));
    }
    /// The lowest free worker.
    fn first(&self) -> Option<u32> {
        self.0
            .iter()
            .position(|&x| x != 0)
            .map(|i| i as u32 * 64 + self.0[i].trailing_zeros())
    }
}

/// What a local timer of the engine does when due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// An attempt got no reply in time (the attempt's record).
    Timeout(Handle),
    /// A task's lease runs out.
    Lease { wf: Handle, epoch: u32 },
    /// A workflow's deadline.
    Deadline(Handle),
}

/// State-update operations moving instances `(index, expected state)` to `to`: one `States` op
/// per run of contiguous instances expected in the same state, at most `MAX_UPDATE_ROWS` rows
/// each. Reconciliation reads each instance's resource references from its row, so a run with an
/// instance whose references changed since its row last got them (`res != written`) carries
/// references: those of its first instance, each id one higher per row — which holds for records
/// allocated in one batch. An instance that fits no such run gets a run of its own.
fn state_ops(
    wf: &Wf,
    rows: impl IntoIterator<Item = (u32, Option<InstanceState>)>,
    to: InstanceState,
    mut ops: Vec<Op>,
) -> Vec<Op> {
    debug_assert!(ops.is_empty());
    for (i, expect) in rows {
        let res = &wf.inst[i as usize].res;
        let changed = *res != wf.inst[i as usize].written;
        if let Some(Op {
            kind:
                OpKind::States {
                    first,
                    count,
                    expect: e,
                    refs,
                    ..
                },
            ..
        }) = ops.last_mut()
            && *e == expect
            && *first + u32::from(*count) == i
            && *count < MAX_UPDATE_ROWS
        {
            let fits = wf.inst[*first as usize].res.shifted(u64::from(*count)) == *res;
            // A run without references may take on references if all its rows fit.
            let all_fit = || {
                (0..*count).all(|j| {
                    wf.inst[*first as usize].res.shifted(u64::from(j))
                        == wf.inst[(*first + u32::from(j)) as usize].res
                })
            };
            let joins = if *refs {
                fits
            } else {
                !changed || (fits && all_fit())
            };
            if joins {
                *refs |= changed;
                *count += 1;
                continue;
            }
        }
        ops.push(Op::new(OpKind::States {
            first: i,
            count: 1,
            expect,
            to,
            refs: changed,
        }));
    }
    ops
}

/// One delivery of a task to a worker, and the stage it is in.
#[derive(Debug)]
struct Run {
    worker: u32,
    /// The lease's local timer (cancelled when the task ends; left to run out when the worker
    /// crashes, which redelivers the task).
    lease: Ticket,
    stage: Stage,
    ops: Vec<Op>,
    next: usize,
    outstanding: u32,
    failure: Option<ErrorCode>,
    aborted: bool,
    /// The action whose outcome the commit stage makes durable.
    held: Vec<Op>,
}

/// A tag's record: one attempt in flight, or one backoff.
#[derive(Clone, Copy, Debug)]
struct Call {
    wf: Handle,
    /// The workflow's stage number when the attempt started (a later stage or a lost run makes
    /// it stale).
    seq: u32,
    op: u32,
    /// An attempt's timeout (a local timer), cancelled when the reply comes.
    timeout: Option<Ticket>,
    /// A backoff's end (a kernel timer), cancelled when the backoff is abandoned.
    retry: Option<TimerId>,
    backoff: bool,
}

#[derive(Clone, Copy, Debug)]
struct Children {
    pending: u32,
    ok: u32,
    failed: u32,
}

#[derive(Debug)]
struct Wf {
    id: WorkflowId,
    kind: WorkflowKind,
    account: AccountId,
    range: InstanceIdRange,
    instance_type: InstanceType,
    opts: WfOptions,
    min_count: u32,
    reply: Option<(ComponentId, u64)>,
    parent: Option<Handle>,
    children: Option<Children>,
    admitted: SimTime,
    /// The deadline's local timer, until it fires (a parent has none).
    deadline_timer: Option<Ticket>,
    deadline_hit: bool,
    // Durable state (as of the last committed transition).
    cursor: Cursor,
    history: u32,
    /// Steps whose effects may need undoing: completed, or failed with partial results.
    done_mask: u64,
    failure: Option<FailReason>,
    /// Instances the workflow still works on (the first `active`; fewer after a partial grant).
    active: u32,
    /// One per instance of `range` (none for a parent). One list, not one per field, and its
    /// allocation recycled (`spare_insts`): no allocation per workflow.
    inst: Vec<Inst>,
    // Execution.
    epoch: u32,
    seq: u32,
    task: Task,
    lost_at: SimTime,
    run: Option<Run>,
}

/// What a workflow knows of one of its instances.
#[derive(Clone, Copy, Debug)]
struct Inst {
    /// The records the instance holds.
    res: InstanceResources,
    /// What the instance's row references, as far as the workflow knows (written with its
    /// state updates; the rest at the close).
    written: InstanceResources,
    /// The state the workflow expects the row in (its last write, or the definition's initial
    /// state; `None`: unknown).
    state: Option<InstanceState>,
}

/// What a new workflow is.
struct Spec {
    kind: WorkflowKind,
    account: AccountId,
    range: InstanceIdRange,
    instance_type: InstanceType,
    opts: WfOptions,
    min_count: u32,
    reply: Option<(ComponentId, u64)>,
    parent: Option<Handle>,
    is_parent: bool,
}

/// How an attempt ended, before interpretation.
enum Raw {
    Dep(Result<ResourceRange, ErrorCode>),
    Db(Result<DbResult, DbError>),
    Timeout,
}

/// Attempts of the engine's own database writes while the database is unavailable (with the
/// backoff of the fourth retry, ≈8–16 s each by default: about an hour).
const DB_WAIT_ATTEMPTS: u32 = 300;
/// Spare operation lists the engine keeps at most.
const SPARE_OPS: usize = 64;
/// Spare instance lists the engine keeps at most.
const SPARE_INSTS: usize = 256;

/// The workflow engine. See the module documentation of [`crate::workflow`].
pub struct WorkflowEngine {
    cfg: EngineConfig,
    deps: WfDeps,
    rng: SimRng,
    wfs: Slab<Wf>,
    next_id: u64,
    /// Live workflows (sub-workflows included, reserved at admission).
    live: u32,
    /// (workflow, epoch, enqueued at).
    queue: VecDeque<(Handle, u32, SimTime)>,
    /// The task each worker runs.
    workers: Vec<Option<Handle>>,
    free: FreeWorkers,
    calls: Slab<Call>,
    fleet: BTreeMap<InstanceId, InstanceResources>,
    /// Instances in a transitional state: (account, state, since). Written for every row of
    /// every state write, looked up by id (reconciliation's `holds`), and read in id order only
    /// at a run's end ([`FixMap::sorted`]): so a hash map (as a `BTreeMap`, its searches and
    /// rebalancing cost 1.5% of `full_mix 20`'s instructions).
    transitional: FixMap<InstanceId, (AccountId, InstanceState, SimTime)>,
    comp_mask: [u64; WorkflowKind::COUNT],
    /// Mixed into every downstream token, so two engines' tokens never meet.
    salt: u64,
    stats: WfStats,
    /// The multi-level cache the engine's state writes invalidate, when there is one.
    cache: Option<EngineCache>,
    /// When the database reply being handled reached the database (its write was applied
    /// then or later): the version its cache invalidations carry.
    last_db_arrival: SimTime,
    /// Planted bugs (all off: the correct engine).
    bugs: crate::faults::PlantedBugs,
    /// Emptied operation lists kept for the next stages (saves an allocation per stage).
    spare_ops: Vec<Vec<Op>>,
    /// Emptied instance lists of finished workflows, kept for new ones.
    spare_insts: Vec<Vec<Inst>>,
    /// Attempt timeouts, task leases and workflow deadlines, served by one kernel wake-up
    /// ([`TimerKind::Wake`]; see [`LocalTimers`]).
    timers: LocalTimers<Due>,
    /// Creations refused at admission whose rows are being moved to their failed state, by the
    /// write's tag (`REFUSAL_TAG` set): (account, first instance, count).
    refusals: BTreeMap<u64, (AccountId, InstanceId, u32)>,
    next_refusal: u64,
}

/// The bit that marks the tag of a refused creation's state write (never a call's handle).
const REFUSAL_TAG: u64 = 1 << 63;
/// State writes for refused creations that may be out at once; past it a refused creation's rows
/// are left Pending (phantom rows, for reconciliation) and counted.
const MAX_REFUSALS_OUT: usize = 4_096;

/// What the engine needs to invalidate cached instances after its state writes: the L2 (one
/// delete per instance) and the nodes' L1s (the same delayed broadcast as a node's own writes).
#[derive(Clone, Debug)]
pub struct EngineCache {
    pub l2: ComponentId,
    pub broadcaster: crate::cache::Broadcaster,
    pub hop: SimDuration,
}

impl EngineCache {
    /// After a write of `count` consecutive instances from `first` applied at `version` (its
    /// arrival at the database): one L2 delete of the run and one L1 message per node (the
    /// broadcaster's delay drawn once per node for the run). Replies to the delete come back
    /// to the sender with tag `u64::MAX`, to be ignored.
    pub fn invalidate_run<M: From<crate::cache::L2Request> + From<crate::cache::L1Invalidation>>(
        &mut self,
        account: AccountId,
        first: InstanceId,
        count: u32,
        version: SimTime,
        out: &mut Outbox<'_, M>,
    ) {
        let key = crate::cache::CacheKey {
            account,
            instance: first,
        };
        let req = crate::cache::L2Request {
            tag: crate::cache::L2Request::<crate::cache::CacheKey>::DETACHED,
            reply_to: out.me(),
            op: crate::cache::L2Op::DeleteRun {
                first: key,
                count,
                version,
            },
        };
        out.send(self.l2, self.hop, M::from(req));
        let msg = crate::cache::L1Invalidation {
            key,
            written_at: out.now(),
            count,
        };
        self.broadcaster.broadcast(None, |node, delay| {
            out.send(node, delay, M::from(msg));
        });
    }
}

impl WorkflowEngine {
    /// An engine with no workflows; backoff jitter draws from `rng` (fork one, e.g.
    /// `"workflow"`).
    pub fn new(cfg: EngineConfig, deps: WfDeps, rng: SimRng) -> WorkflowEngine {
        let steps =
            WorkflowKind::ALL.map(|k| cfg.definition(k).steps.iter().map(|s| s.name).collect());
        let comp_mask = WorkflowKind::ALL.map(|k| cfg.definition(k).compensable_mask());
        let salt = rng.fork("tokens").next_bits();
        WorkflowEngine {
            workers: vec![None; cfg.workers as usize],
            free: FreeWorkers::all(cfg.workers),
            cfg,
            deps,
            rng,
            wfs: Slab::new(),
            next_id: 0,
            live: 0,
            queue: VecDeque::new(),
            calls: Slab::new(),
            fleet: BTreeMap::new(),
            transitional: FixMap::new(),
            comp_mask,
            salt,
            stats: WfStats::new(steps),
            cache: None,
            last_db_arrival: SimTime::ZERO,
            bugs: crate::faults::PlantedBugs::default(),
            spare_ops: Vec::new(),
            spare_insts: Vec::new(),
            timers: LocalTimers::new(),
            refusals: BTreeMap::new(),
            next_refusal: 0,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    pub fn stats(&self) -> &WfStats {
        &self.stats
    }
    /// Live workflows, sub-workflows included.
    pub fn live(&self) -> u32 {
        self.live
    }
    /// Tasks waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    /// Workers running a task now, with the workflow of the task, in worker order.
    pub fn busy_workers(&self) -> Vec<(u32, WorkflowId)> {
        self.workers
            .iter()
            .enumerate()
            .filter_map(|(w, h)| {
                let wf = self.wfs.get((*h)?)?;
                Some((w as u32, wf.id))
            })
            .collect()
    }
    /// The records the engine knows `id` holds (instances a CreateInstances completed).
    pub fn resources(&self, id: InstanceId) -> Option<&InstanceResources> {
        self.fleet.get(&id)
    }
    /// Every instance's resources, in id order (what reconciliation compares).
    pub fn fleet(&self) -> impl Iterator<Item = (InstanceId, &InstanceResources)> {
        self.fleet.iter().map(|(id, r)| (*id, r))
    }
    /// Instances in a transitional state for at least the configured threshold at `now`.
    /// Instances the engine holds in a transitional state (accepted creations included), with
    /// their account, state and since when.
    pub fn transitional(
        &self,
    ) -> impl Iterator<Item = (InstanceId, AccountId, InstanceState, SimTime)> + '_ {
        self.transitional
            .sorted()
            .into_iter()
            .map(|(id, &(a, st, since))| (id, a, st, since))
    }

    /// The records open workflows hold so far (what their workflow rows list: created, not yet
    /// written to an instance row, or still to be compensated).
    pub fn held_resources(&self) -> impl Iterator<Item = (ResourceKind, ResourceId)> + '_ {
        self.wfs
            .iter()
            .flat_map(|(_, wf)| wf.inst.iter().flat_map(|x| x.res.iter()))
    }

    /// Whether an open workflow holds instance `id` (on its way through a transitional state).
    pub fn holds(&self, id: InstanceId) -> bool {
        self.transitional.contains_key(&id)
    }

    pub fn stuck(&self, now: SimTime) -> Vec<StuckInstance> {
        let threshold = self.cfg.stuck_threshold;
        self.transitional
            .sorted()
            .into_iter()
            .filter(|(_, (_, _, since))| since.saturating_add(threshold) <= now)
            .map(|(id, &(account, state, since))| StuckInstance {
                id,
                account,
                state,
                since,
            })
            .collect()
    }
    /// How many instances [`WorkflowEngine::stuck`] lists.
    pub fn stuck_count(&self, now: SimTime) -> usize {
        let threshold = self.cfg.stuck_threshold;
        self.transitional
            .count_values(|(_, _, since)| since.saturating_add(threshold) <= now)
    }

    /// Fault hook: worker `worker` crashes. Its task (if any) is lost: nothing more of it runs,
    /// replies to what it sent are ignored, and the task is redelivered when its lease runs
    /// out. The worker restarts at once, empty, and takes work again at the engine's next event.
    /// Returns whether a task was lost.
    pub fn crash_worker(&mut self, worker: u32, now: SimTime) -> bool {
        let Some(slot) = self.workers.get_mut(worker as usize) else {
            return false;
        };
        self.stats.crashes += 1;
        let Some(h) = slot.take() else {
            return false;
        };
        self.free.insert(worker);
        if let Some(wf) = self.wfs.get_mut(h) {
            wf.run = None;
            wf.task = Task::Lost;
            wf.seq = wf.seq.wrapping_add(1);
            wf.lost_at = now;
        }
        self.stats.tasks_lost += 1;
        true
    }

    /// Admits a command (or rejects it at once: no instances, or the live-workflow bound).
    pub fn on_command<M: WfMsg>(&mut self, cmd: WfCommand, out: &mut Outbox<'_, M>) {
        let now = out.now();
        let n = cmd.instances.count;
        let is_parent = !cmd.batch && n > 1;
        let need = if is_parent { n.saturating_add(1) } else { 1 };
        let refusal = if n == 0 {
            Some(ErrorCode::InvalidParameter)
        } else if self.live.saturating_add(need) > self.cfg.queue_limit {
            Some(ErrorCode::ServiceUnavailable)
        } else {
            None
        };
        if let Some(code) = refusal {
            self.stats.rejected += 1;
            self.stats.rejected_by_kind[cmd.kind.index()] += 1;
            if cmd.kind == WorkflowKind::CreateInstances && n > 0 {
                self.fail_refused_creation(&cmd, out);
            }
            self.acknowledge(&cmd, Err(code), out);
            if let Some(to) = cmd.reply_to {
                let done = WfDone {
                    tag: cmd.tag,
                    workflow: WorkflowId(0),
                    kind: cmd.kind,
                    outcome: WfOutcome::Rejected(code),
                    instances: cmd.instances,
                    succeeded: 0,
                    admitted: now,
                    history_events: 0,
                };
                out.send(to, SimDuration::ZERO, M::from(done));
            }
            return;
        }
        self.live += need;
        self.stats.admitted[cmd.kind.index()] += 1;
        if cmd.kind == WorkflowKind::CreateInstances {
            // Accepted creations are Pending from now on, in the engine's own books: an
            // instance that never leaves a transitional state is stuck (and breaks liveness).
            for j in 0..u64::from(n) {
                let id = InstanceId(cmd.instances.first.0 + j);
                if !self.transitional.contains_key(&id) {
                    self.transitional
                        .insert(id, (cmd.account, InstanceState::Pending, now));
                }
            }
        }
        if let Some(s) = self.cfg.definition(cmd.kind).initial {
            if s.is_transitional() && !cmd.options.force {
                for id in cmd.instances.iter() {
                    self.transitional.insert(id, (cmd.account, s, now));
                }
            }
        }
        let spec = Spec {
            kind: cmd.kind,
            account: cmd.account,
            range: cmd.instances,
            instance_type: cmd.instance_type,
            opts: cmd.options,
            min_count: cmd.min_count,
            reply: cmd.reply_to.map(|to| (to, cmd.tag)),
            parent: None,
            is_parent,
        };
        let h = self.new_workflow(spec, out);
        // Admitted: the workflow is the engine's from now on (its start task is queued and a
        // worker crash only redelivers it), so the caller may answer.
        let id = self.wf(h).id;
        self.acknowledge(&cmd, Ok(id), out);
        self.enqueue(h, now);
        self.dispatch(out);
        self.arm_wake(out);
    }

    /// Handles a database reply to one of the engine's queries.
    pub fn on_db_reply<M: WfMsg>(&mut self, r: DbReply, out: &mut Outbox<'_, M>) {
        self.last_db_arrival = out.now().saturating_sub(r.latency);
        if r.tag & REFUSAL_TAG != 0 {
            return self.refused_creation_written(r, out);
        }
        match self.take_attempt(r.tag) {
            Some(call) => {
                if let Some(t) = call.timeout {
                    self.timers.cancel(t);
                }
                self.attempt_ended(call, Raw::Db(r.result), out);
            }
            None => self.stats.stale += 1,
        }
        self.dispatch(out);
        self.arm_wake(out);
    }

    /// Sends the command's caller its admission's [`WfAck`], if it asked for one (one hop).
    fn acknowledge<M: WfMsg>(
        &self,
        cmd: &WfCommand,
        result: Result<WorkflowId, ErrorCode>,
        out: &mut Outbox<'_, M>,
    ) {
        if let Some(to) = cmd.ack_to {
            let ack = WfAck {
                tag: cmd.tag,
                result,
            };
            out.send(to, self.cfg.db_hop, M::from(ack));
        }
    }

    /// A creation refused at admission: its instance rows, inserted Pending by the API node
    /// before it sent the command (it answers the refusal, told by the [`WfAck`]), would stay
    /// Pending with no workflow to move them. State writes of
    /// at most `MAX_UPDATE_ROWS` rows move them to the definition's failed state instead, as a
    /// failed creation ends (rows no longer Pending are left as they are).
    fn fail_refused_creation<M: WfMsg>(&mut self, cmd: &WfCommand, out: &mut Outbox<'_, M>) {
        let Some(to) = self
            .cfg
            .definition(WorkflowKind::CreateInstances)
            .failed_state
        else {
            return;
        };
        if self.refusals.len() >= MAX_REFUSALS_OUT {
            self.stats.refused_rows_left += u64::from(cmd.instances.count);
            return;
        }
        // At most MAX_UPDATE_ROWS rows a write, as the engine's own state writes.
        let (first, n) = (cmd.instances.first, cmd.instances.count);
        let mut done = 0u32;
        while done < n {
            let count = (n - done).min(u32::from(MAX_UPDATE_ROWS));
            let at = InstanceId(first.0 + u64::from(done));
            let tag = REFUSAL_TAG | self.next_refusal;
            self.next_refusal += 1;
            self.refusals.insert(tag, (cmd.account, at, count));
            let q = DbQuery {
                tag,
                reply_to: out.me(),
                account: cmd.account,
                read_replica: false,
                op: DbOp::UpdateInstanceStates {
                    first: at,
                    count: count as u8,
                    expect: Some(InstanceState::Pending),
                    to,
                    resources: None,
                },
            };
            out.send(self.deps.db, self.cfg.db_hop, M::from(q));
            done += count;
        }
    }

    /// The reply to [`WorkflowEngine::fail_refused_creation`]'s write: the cached copies of the
    /// rows it moved are invalidated, as after any state write.
    fn refused_creation_written<M: WfMsg>(&mut self, r: DbReply, out: &mut Outbox<'_, M>) {
        let Some((account, first, n)) = self.refusals.remove(&r.tag) else {
            self.stats.stale += 1;
            return;
        };
        match r.result {
            Ok(DbResult::UpdatedRows(u)) => {
                // Bit sets of the write's rows.
                let (done, at_target) = (u.done.count_ones(), u.at_target.count_ones());
                self.stats.refused_rows_failed += u64::from(done);
                self.stats.refused_rows_left += u64::from(n.saturating_sub(done + at_target));
                if done > 0 {
                    self.invalidate(account, first, n, out);
                }
            }
            _ => self.stats.refused_rows_left += u64::from(n),
        }
    }

    /// Handles a dependency reply to one of the engine's calls.
    pub fn on_dep_reply<M: WfMsg>(&mut self, r: DepReply, out: &mut Outbox<'_, M>) {
        match self.take_attempt(r.tag) {
            Some(call) => {
                if let Some(t) = call.timeout {
                    self.timers.cancel(t);
                }
                let result = match r.result {
                    Ok(ok) => {
                        if ok.replayed {
                            self.stats.replays_seen += 1;
                        }
                        Ok(ok.resources)
                    }
                    Err(e) => Err(e.code),
                };
                self.attempt_ended(call, Raw::Dep(result), out);
            }
            None => self.stats.stale += 1,
        }
        self.dispatch(out);
        self.arm_wake(out);
    }

    /// Handles one of the engine's own timers.
    pub fn on_timer<M: WfMsg>(&mut self, t: WfTimer, out: &mut Outbox<'_, M>) {
        match t.0 {
            TimerKind::Retry(ch) => {
                self.on_retry(ch, out);
                self.dispatch(out);
            }
            TimerKind::Wake => self.on_wake(out),
        }
        self.arm_wake(out);
    }

    // ----- local timers -----

    /// A local timer doing `due` after `after`.
    fn schedule_local(&mut self, now: SimTime, after: SimDuration, due: Due) -> Ticket {
        self.timers.schedule(now, after, due)
    }

    /// The wake-up: every local timer due now fires, in (due, insertion) order, each as its own
    /// kernel timer did (its handler, then a dispatch). A wake-up that finds nothing due (its
    /// timers were cancelled) changes nothing, as their kernel timers, cancelled, never came.
    fn on_wake<M: WfMsg>(&mut self, out: &mut Outbox<'_, M>) {
        if !self.timers.take_wake(out.now()) {
            return;
        }
        while let Some(due) = self.timers.pop_due(out.now()) {
            match due {
                Due::Timeout(ch) => match self.take_attempt(ch.to_u64()) {
                    Some(call) => self.attempt_ended(call, Raw::Timeout, out),
                    None => self.stats.stale += 1,
                },
                Due::Lease { wf, epoch } => self.on_lease(wf, epoch, out),
                Due::Deadline(h) => self.on_deadline(h, out),
            }
            self.dispatch(out);
        }
    }

    /// Keeps the wake-up at or before the earliest pending local timer (called at the end of
    /// every event; see [`LocalTimers::arm`]).
    fn arm_wake<M: WfMsg>(&mut self, out: &mut Outbox<'_, M>) {
        self.timers.arm(out, || M::from(WfTimer(TimerKind::Wake)));
    }

    // ----- admission and the queue -----

    fn new_workflow<M: WfMsg>(&mut self, s: Spec, out: &mut Outbox<'_, M>) -> Handle {
        let def = self.cfg.definition(s.kind);
        let n = if s.is_parent { 0 } else { s.range.count };
        let initial = if s.opts.force { None } else { def.initial };
        let mut inst = self.spare_insts.pop().unwrap_or_default();
        inst.extend(s.range.iter().take(n as usize).map(|id| {
            let res = match s.kind {
                WorkflowKind::CreateInstances => InstanceResources::default(),
                _ => self.fleet.get(&id).copied().unwrap_or_default(),
            };
            Inst {
                res,
                written: res,
                state: initial,
            }
        }));
        let deadline = def.deadline;
        self.next_id += 1;
        let wf = Wf {
            id: WorkflowId(self.next_id),
            kind: s.kind,
            account: s.account,
            range: s.range,
            instance_type: s.instance_type,
            opts: s.opts,
            min_count: s.min_count,
            reply: s.reply,
            parent: s.parent,
            children: s.is_parent.then_some(Children {
                pending: 0,
                ok: 0,
                failed: 0,
            }),
            admitted: out.now(),
            deadline_timer: None,
            deadline_hit: false,
            cursor: Cursor::Start,
            history: 0,
            done_mask: 0,
            failure: None,
            active: n,
            inst,
            epoch: 0,
            seq: 0,
            task: Task::Idle,
            lost_at: SimTime::ZERO,
            run: None,
        };
        let h = self.wfs.insert(wf);
        if !s.is_parent {
            // A parent has no deadline of its own: each sub-workflow has one.
            let t = self.schedule_local(out.now(), deadline, Due::Deadline(h));
            self.wf_mut(h).deadline_timer = Some(t);
        }
        h
    }

    fn enqueue(&mut self, h: Handle, now: SimTime) {
        let wf = self.wf_mut(h);
        wf.epoch = wf.epoch.wrapping_add(1);
        wf.task = Task::Queued;
        let epoch = wf.epoch;
        self.queue.push_back((h, epoch, now));
        self.stats.max_queue = self.stats.max_queue.max(self.queue.len());
    }

    /// Hands queued tasks to free workers (lowest index first).
    fn dispatch<M: WfMsg>(&mut self, out: &mut Outbox<'_, M>) {
        while !self.queue.is_empty() {
            let Some(w) = self.free.first() else {
                break;
            };
            let Some((h, epoch, since)) = self.queue.pop_front() else {
                break;
            };
            let valid = self
                .wfs
                .get(h)
                .is_some_and(|wf| wf.epoch == epoch && wf.task == Task::Queued);
            if !valid {
                continue;
            }
            self.free.remove(w);
            self.workers[w as usize] = Some(h);
            let now = out.now();
            let lease = self.schedule_local(now, self.cfg.lease, Due::Lease { wf: h, epoch });
            self.stats.tasks += 1;
            self.stats
                .queue_wait
                .record(now.saturating_since(since).as_ns());
            let wf = self.wf_mut(h);
            wf.task = Task::Running;
            wf.run = Some(Run {
                worker: w,
                lease,
                stage: Stage::Commit(Event::Started),
                ops: Vec::new(),
                next: 0,
                outstanding: 0,
                failure: None,
                aborted: false,
                held: Vec::new(),
            });
            self.begin(h, out);
        }
    }

    /// Frees the task's worker and cancels its lease; the workflow is between tasks.
    fn end_task(&mut self, h: Handle) {
        let wf = self.wf_mut(h);
        wf.task = Task::Idle;
        if let Some(run) = wf.run.take() {
            self.timers.cancel(run.lease);
            self.workers[run.worker as usize] = None;
            self.free.insert(run.worker);
            self.recycle(run.ops);
            self.recycle(run.held);
        }
    }

    /// An empty operation list, reusing a spare one's allocation when there is one.
    fn take_ops(&mut self) -> Vec<Op> {
        self.spare_ops.pop().unwrap_or_default()
    }

    /// Keeps `ops`'s allocation for a later stage.
    fn recycle(&mut self, mut ops: Vec<Op>) {
        if ops.capacity() != 0 && self.spare_ops.len() < SPARE_OPS {
            ops.clear();
            self.spare_ops.push(ops);
        }
    }

    // ----- a task's stages -----

    /// Starts the task at the workflow's cursor.
    fn begin<M: WfMsg>(&mut self, h: Handle, out: &mut Outbox<'_, M>) {
        loop {
            // A field borrow (not `self.wf`), so a spare list can be taken while it lives.
            let wf = self.wfs.get(h).expect("live workflow");
            let def = self.cfg.definition(wf.kind);
            match wf.cursor {
                Cursor::Start => return self.start_commit(h, Event::Started, Vec::new(), out),
                Cursor::Waiting => {
                    return out.violation(format!(
                        "workflow {} was dispatched while waiting for its sub-workflows",
                        wf.id.0
                    ));
                }
                Cursor::Step(k) => {
                    let Some(step) = def.steps.get(usize::from(k)) else {
                        self.wf_mut(h).cursor = Cursor::Finish;
                        continue;
                    };
                    let next = Cursor::Step(k + 1);
                    if !applies(step.when, wf.opts) {
                        self.wf_mut(h).cursor = next;
                        continue;
                    }
                    if wf.deadline_hit {
                        let ev = Event::Failing(k, FailReason::Deadline);
                        return self.start_commit(h, ev, Vec::new(), out);
                    }
                    if !self.history_room(wf, k) {
                        self.stats.history_limited += 1;
                        let ev = Event::Failing(k, FailReason::HistoryLimit);
                        return self.start_commit(h, ev, Vec::new(), out);
                    }
                    let buf = self.spare_ops.pop().unwrap_or_default();
                    let ops = self.build(wf, step.action, k, false, buf);
                    if ops.is_empty() {
                        self.recycle(ops);
                        self.wf_mut(h).cursor = next;
                        continue;
                    }
                    return self.start_stage(h, Stage::Action(What::Step(k)), ops, Vec::new(), out);
                }
                Cursor::Compensate(j) => {
                    let undo = def.steps[usize::from(j)].compensation;
                    let next = if j == 0 {
                        Cursor::Finish
                    } else {
                        Cursor::Compensate(j - 1)
                    };
                    if let Some(undo) = undo.filter(|_| wf.done_mask & (1 << j) != 0) {
                        let buf = self.spare_ops.pop().unwrap_or_default();
                        let ops = self.build(wf, undo, j, true, buf);
                        if ops.is_empty() {
                            self.recycle(ops);
                        } else {
                            let kind = wf.kind;
                            self.stats.compensations += 1;
                            self.stats.step_mut(kind, j).compensations += 1;
                            let stage = Stage::Action(What::Compensate(j));
                            return self.start_stage(h, stage, ops, Vec::new(), out);
                        }
                    }
                    self.wf_mut(h).cursor = next;
                }
                Cursor::Finish => {
                    let ops = self.close_ops(wf);
                    if ops.is_empty() {
                        let ev = final_event(wf);
                        return self.start_commit(h, ev, Vec::new(), out);
                    }
                    return self.start_stage(h, Stage::Action(What::Close), ops, Vec::new(), out);
                }
            }
        }
    }

    /// Whether forward step `k` may run without the history passing its cap on any path: its
    /// own event, a later failure event (unless it is the last step), one compensation event per
    /// step that may need undoing, and the close.
    fn history_room(&self, wf: &Wf, k: u8) -> bool {
        let def = self.cfg.definition(wf.kind);
        let comps = ((wf.done_mask | 1 << k) & self.comp_mask[wf.kind.index()]).count_ones();
        let last = !def.steps[usize::from(k) + 1..]
            .iter()
            .any(|s| applies(s.when, wf.opts));
        let need = u64::from(wf.history) + 1 + u64::from(!last) + u64::from(comps) + 1;
        need <= u64::from(self.cfg.history_cap)
    }

    /// The operations of `action` for the workflow's instances (`comp`: as a compensation of
    /// step `k`). Empty when there is nothing to do.
    /// `ops` is an empty list to fill (a spare one, for its allocation).
    fn build(&self, wf: &Wf, action: Action, k: u8, comp: bool, mut ops: Vec<Op>) -> Vec<Op> {
        debug_assert!(ops.is_empty());
        let mb = self.cfg.max_batch;
        match action {
            Action::Create(op) => {
                let n = wf.active;
                let (mut first, mut part) = (0u32, 0u32);
                while first < n {
                    let count = (n - first).min(mb);
                    let min_count = if op == DepOp::AllocateHost && n <= mb {
                        wf.min_count.min(n)
                    } else {
                        0
                    };
                    ops.push(Op::new(OpKind::Dep {
                        op,
                        count,
                        target: None,
                        min_count,
                        token: if self.bugs.step_without_token {
                            0
                        } else {
                            token(self.salt, wf.id, k, part, comp)
                        },
                        origin: token(self.salt, wf.id, k, part, comp),
                        first,
                        last: first + count - 1,
                    }));
                    first += count;
                    part += 1;
                }
            }
            Action::Act(op) => {
                let slot = slot_of(op.resource());
                let wanted = |r: &InstanceResources| match op.effect() {
                    Effect::Attach => !r.disk_attached,
                    Effect::Detach => r.disk_attached,
                    _ => true,
                };
                // Contiguous runs of record ids, in instance order: one call each.
                let mut part = 0u32;
                let mut push =
                    |ops: &mut Vec<Op>, (fi, li, fid, c): (u32, u32, ResourceId, u32)| {
                        ops.push(Op::new(OpKind::Dep {
                            op,
                            count: c,
                            target: Some(ResourceRange {
                                first: fid,
                                count: c,
                            }),
                            min_count: 0,
                            token: if self.bugs.step_without_token {
                                0
                            } else {
                                token(self.salt, wf.id, k, part, comp)
                            },
                            origin: token(self.salt, wf.id, k, part, comp),
                            first: fi,
                            last: li,
                        }));
                        part += 1;
                    };
                let mut cur: Option<(u32, u32, ResourceId, u32)> = None;
                for i in 0..wf.active {
                    let r = &wf.inst[i as usize].res;
                    let Some(id) = r.at(slot).filter(|_| wanted(r)) else {
                        continue;
                    };
                    cur = match cur {
                        Some((fi, _, fid, c)) if id.0 == fid.0 + u64::from(c) && c < mb => {
                            Some((fi, i, fid, c + 1))
                        }
                        other => {
                            if let Some(p) = other {
                                push(&mut ops, p);
                            }
                            Some((i, i, id, 1))
                        }
                    };
                }
                if let Some(p) = cur {
                    push(&mut ops, p);
                }
            }
            Action::SetState(to) => {
                let rows = (0..wf.active).map(|i| (i, wf.inst[i as usize].state));
                ops = state_ops(wf, rows, to, ops);
            }
        }
        ops
    }

    /// The close: after a failure, move the instances to the definition's failure state, where
    /// legal (the write carries their references); then write the references of every instance
    /// whose row does not yet have what the workflow left it holding.
    fn close_ops(&self, wf: &Wf) -> Vec<Op> {
        let mut ops: Vec<Op> = match self.cfg.definition(wf.kind).failed_state {
            Some(fs) if wf.failure.is_some() => {
                let rows = (0..wf.active).filter_map(|i| {
                    let s = wf.inst[i as usize].state?;
                    (s != fs && s.can_move_to(fs)).then_some((i, Some(s)))
                });
                state_ops(wf, rows, fs, Vec::new())
            }
            _ => Vec::new(),
        };
        // Instances whose failure-state write carries their references need no other write.
        let n = wf.inst.len() as u32;
        let stated = |i: u32| {
            ops.iter().any(|o| {
                matches!(o.kind, OpKind::States { first, count, refs: true, .. }
                    if first <= i && i < first + u32::from(count))
            })
        };
        let writes: Vec<Op> = (0..n)
            .filter(|&i| wf.inst[i as usize].res != wf.inst[i as usize].written && !stated(i))
            .map(|i| Op::new(OpKind::Resources { inst: i }))
            .collect();
        ops.extend(writes);
        ops
    }

    fn start_commit<M: WfMsg>(
        &mut self,
        h: Handle,
        ev: Event,
        held: Vec<Op>,
        out: &mut Outbox<'_, M>,
    ) {
        let mut ops = self.take_ops();
        ops.push(Op::new(OpKind::Commit));
        self.start_stage(h, Stage::Commit(ev), ops, held, out);
    }

    fn start_stage<M: WfMsg>(
        &mut self,
        h: Handle,
        stage: Stage,
        ops: Vec<Op>,
        held: Vec<Op>,
        out: &mut Outbox<'_, M>,
    ) {
        let wf = self.wf_mut(h);
        wf.seq = wf.seq.wrapping_add(1);
        let run = wf.run.as_mut().expect("a stage runs in a task");
        run.stage = stage;
        run.ops = ops;
        run.next = 0;
        run.outstanding = 0;
        run.failure = None;
        run.aborted = false;
        run.held = held;
        self.pump(h, out);
    }

    /// Sends what the window allows; concludes the stage when nothing is out and nothing more
    /// will be sent.
    fn pump<M: WfMsg>(&mut self, h: Handle, out: &mut Outbox<'_, M>) {
        let window = self.cfg.window;
        loop {
            let Some(run) = self.wfs.get_mut(h).and_then(|w| w.run.as_mut()) else {
                return;
            };
            let halted = run.failure.is_some() || run.aborted;
            if !halted && run.outstanding < window && run.next < run.ops.len() {
                let idx = run.next;
                run.next += 1;
                run.outstanding += 1;
                self.send_attempt(h, idx, out);
                continue;
            }
            if run.outstanding == 0 && (halted || run.next >= run.ops.len()) {
                self.conclude(h, out);
            }
            return;
        }
    }

    fn dep_of(&self, op: DepOp) -> ComponentId {
        match op.kind() {
            DependencyKind::Inventory => self.deps.inventory,
            DependencyKind::BlockStorage => self.deps.block_storage,
            DependencyKind::Vpc => self.deps.vpc,
            DependencyKind::Billing => self.deps.billing,
            DependencyKind::Image => unreachable!("definitions are validated: no image actions"),
        }
    }

    /// Sends an attempt of operation `idx` of the running stage, with its timeout.
    fn send_attempt<M: WfMsg>(&mut self, h: Handle, idx: usize, out: &mut Outbox<'_, M>) {
        let wf = self.wfs.get(h).expect("live workflow");
        let run = wf.run.as_ref().expect("a stage runs in a task");
        let (kind, seq, stage, op) = (wf.kind, wf.seq, run.stage, run.ops[idx].kind);
        let (account, first, itype) = (wf.account, wf.range.first, wf.instance_type);
        let timeout = policy(&self.cfg, kind, stage).1;
        let ch = self.calls.insert(Call {
            wf: h,
            seq,
            op: idx as u32,
            timeout: None,
            retry: None,
            backoff: false,
        });
        let tag = ch.to_u64();
        let me = out.me();
        match op {
            OpKind::Dep {
                op,
                count,
                target,
                min_count,
                token,
                origin,
                ..
            } => {
                let call = DepCall {
                    tag,
                    reply_to: me,
                    op,
                    token,
                    count,
                    instance_type: itype,
                    target,
                    min_count,
                    origin,
                    account: Some(account),
                };
                self.stats.dep_calls += 1;
                out.send(self.dep_of(op), self.cfg.dep_hop, M::from(call));
            }
            OpKind::States {
                first: i,
                count,
                expect,
                to,
                refs,
            } => {
                let q = DbQuery {
                    tag,
                    reply_to: me,
                    account,
                    read_replica: false,
                    op: DbOp::UpdateInstanceStates {
                        first: InstanceId(first.0 + u64::from(i)),
                        count,
                        expect,
                        to,
                        resources: refs.then(|| wf.inst[i as usize].res),
                    },
                };
                self.stats.db_updates += 1;
                out.send(self.deps.db, self.cfg.db_hop, M::from(q));
            }
            OpKind::Resources { inst } => {
                let q = DbQuery {
                    tag,
                    reply_to: me,
                    account,
                    read_replica: false,
                    op: DbOp::SetInstanceResources {
                        id: InstanceId(first.0 + u64::from(inst)),
                        expect: None,
                        resources: wf.inst[inst as usize].res,
                    },
                };
                self.stats.db_updates += 1;
                out.send(self.deps.db, self.cfg.db_hop, M::from(q));
            }
            OpKind::Commit => {
                let q = DbQuery {
                    tag,
                    reply_to: me,
                    account,
                    read_replica: false,
                    op: DbOp::AppendTransition,
                };
                self.stats.db_appends += 1;
                out.send(self.deps.db, self.cfg.db_hop, M::from(q));
            }
        }
        if let Stage::Action(What::Step(k)) = stage {
            self.stats.step_mut(kind, k).attempts += 1;
        }
        let timer = self.schedule_local(out.now(), timeout, Due::Timeout(ch));
        self.calls.get_mut(ch).expect("just inserted").timeout = Some(timer);
        let op = &mut self.wf_mut(h).run.as_mut().expect("running").ops[idx];
        op.status = Status::Out;
        op.call = Some(ch);
    }

    /// The record of the attempt `tag` names, removed, if it is an attempt still out.
    fn take_attempt(&mut self, tag: u64) -> Option<Call> {
        let ch = Handle::from_u64(tag);
        match self.calls.get(ch) {
            Some(c) if !c.backoff => self.calls.remove(ch),
            _ => None,
        }
    }

    /// Plants bugs (see [`crate::faults::PlantedBugs`]): steps without downstream tokens, state
    /// writes forced after a row-state mismatch, deletes without cache invalidation.
    pub fn with_bugs(mut self, bugs: crate::faults::PlantedBugs) -> WorkflowEngine {
        self.bugs = bugs;
        self
    }

    /// Invalidates the cached copies of the instances whose state changed (planted bug
    /// `skip_delete_invalidation` aside, every state write is followed by one).
    /// Sends its L1 invalidations to `node` too from now on (a node added mid-run).
    pub fn add_cache_node(&mut self, node: ComponentId) {
        if let Some(c) = &mut self.cache {
            c.broadcaster.add_node(node);
        }
    }

    pub fn with_cache(mut self, cache: EngineCache) -> WorkflowEngine {
        self.cache = Some(cache);
        self
    }

    /// Invalidates the cached copies of `count` consecutive instances from `first` after a
    /// state write (see [`EngineCache::invalidate_run`]).
    fn invalidate<M: WfMsg>(
        &mut self,
        account: AccountId,
        first: InstanceId,
        count: u32,
        out: &mut Outbox<'_, M>,
    ) {
        if let Some(c) = &mut self.cache {
            c.invalidate_run(account, first, count, self.last_db_arrival, out);
        }
    }

    /// Interprets how an attempt ended; retries it, or settles its operation.
    fn attempt_ended<M: WfMsg>(&mut self, call: Call, raw: Raw, out: &mut Outbox<'_, M>) {
        let now = out.now();
        let h = call.wf;
        let idx = call.op as usize;
        let Some((wf_kind, account, first_id, op)) = self.wfs.get(h).and_then(|wf| {
            let run = wf.run.as_ref().filter(|_| wf.seq == call.seq)?;
            Some((wf.kind, wf.account, wf.range.first, run.ops[idx]))
        }) else {
            // An attempt of a stage that has ended, or of a run that was lost.
            self.stats.stale += 1;
            return;
        };
        let stage = self.wf(h).run.as_ref().expect("checked").stage;
        // `States`: rows now in the target state (newly or already).
        let mut note_rows = 0u64;
        // Rows whose cached copies are now outdated: those this attempt changed, and those it
        // found already in the target state. The latter are a replay's rows, moved by an
        // earlier attempt whose reply was lost or late (a timeout, a failover), which
        // therefore invalidated nothing; or rows that were there already, for which an
        // invalidation costs a delete and changes nothing.
        let rows_changed = match &raw {
            Raw::Db(Ok(DbResult::UpdatedRows(u))) => u.done | u.at_target,
            _ => 0,
        };
        let result: Result<ResourceRange, (ErrorCode, bool)> = match (raw, op.kind) {
            (Raw::Timeout, _) => {
                if let Stage::Action(What::Step(k)) = stage {
                    self.stats.step_mut(wf_kind, k).timeouts += 1;
                }
                Err((ErrorCode::DeadlineExceeded, true))
            }
            (Raw::Dep(Ok(r)), OpKind::Dep { .. }) => Ok(r),
            (Raw::Dep(Err(code)), OpKind::Dep { op, target, .. }) => {
                let done = match op.effect() {
                    Effect::Delete => code == ErrorCode::InstanceNotFound,
                    Effect::Attach | Effect::Detach => code == ErrorCode::IncorrectInstanceStatus,
                    _ => false,
                };
                if done {
                    self.stats.already_done += 1;
                    Ok(target.unwrap_or(ResourceRange::EMPTY))
                } else {
                    Err((code, true))
                }
            }
            (Raw::Db(Ok(DbResult::Appended)), OpKind::Commit) => Ok(ResourceRange::EMPTY),
            (Raw::Db(Ok(DbResult::UpdatedRows(u))), OpKind::States { .. }) => {
                self.stats.cas_replays += u64::from(u.at_target.count_ones());
                note_rows = u.done | u.at_target;
                match u.first_other {
                    None => Ok(ResourceRange::EMPTY),
                    Some((_, UpdateOutcome::NotFound)) => Err((ErrorCode::InstanceNotFound, false)),
                    Some(_) => Err((ErrorCode::IncorrectInstanceStatus, false)),
                }
            }
            (Raw::Db(Ok(DbResult::Updated(u))), OpKind::Resources { .. }) => match u {
                UpdateOutcome::Done { .. } => Ok(ResourceRange::EMPTY),
                UpdateOutcome::Mismatch { .. } => Err((ErrorCode::IncorrectInstanceStatus, false)),
                UpdateOutcome::NotFound => Err((ErrorCode::InstanceNotFound, false)),
            },
            (Raw::Db(Err(DbError::Overloaded | DbError::Unavailable)), _) => {
                Err((ErrorCode::ServiceUnavailable, true))
            }
            // An invalid query or an answer of the wrong shape: a bug, not worth retrying.
            _ => Err((ErrorCode::InternalError, false)),
        };
        if let OpKind::States { first, to, .. } = op.kind
            && note_rows != 0
        {
            let mut bits = note_rows;
            let mut changed = if self.bugs.skip_delete_invalidation && to == InstanceState::Deleted
            {
                0
            } else {
                rows_changed
            };
            // Runs of consecutive changed rows: one invalidation each.
            while changed != 0 {
                let j = changed.trailing_zeros();
                let run = (changed >> j).trailing_ones();
                changed &= !(((1u128 << run) - 1) as u64).wrapping_shl(j);
                let id = InstanceId(first_id.0 + u64::from(first + j));
                self.invalidate(account, id, run, out);
            }
            while bits != 0 {
                let j = bits.trailing_zeros();
                bits &= bits - 1;
                let id = InstanceId(first_id.0 + u64::from(first + j));
                if to.is_transitional() {
                    self.transitional.insert(id, (account, to, now));
                } else {
                    self.transitional.remove(&id);
                }
            }
            let run = self.wf_mut(h).run.as_mut().expect("checked");
            run.ops[idx].applied |= note_rows;
        }
        match result {
            Ok(r) => {
                let trims = self.partial_grant(h, op.kind, r);
                let run = self.wf_mut(h).run.as_mut().expect("checked");
                run.ops[idx].status = Status::Ok(r);
                run.ops[idx].call = None;
                run.outstanding -= 1;
                run.ops.extend(trims);
            }
            Err((code, may_retry)) => {
                // Planted bug: a row-state mismatch (not retryable: someone else moved the
                // instance) is "retried" as an unconditional write.
                let forced = self.bugs.retry_non_retryable
                    && code == ErrorCode::IncorrectInstanceStatus
                    && op.attempt < 3;
                if forced {
                    if let OpKind::States { expect, .. } =
                        &mut self.wf_mut(h).run.as_mut().expect("checked").ops[idx].kind
                    {
                        *expect = None;
                    }
                }
                let (retry, _) = policy(&self.cfg, wf_kind, stage);
                let halted = {
                    let run = self.wf(h).run.as_ref().expect("checked");
                    run.failure.is_some() || run.aborted
                };
                // The engine's own writes (states, references, the durable transition) wait
                // for the database to come back: it is the engine's persistence, and giving up
                // would strand instances mid-lifecycle. Bounded: DB_WAIT_ATTEMPTS (≈1 h).
                let own_write = forced
                    || matches!(
                        op.kind,
                        OpKind::States { .. } | OpKind::Resources { .. } | OpKind::Commit
                    ) && code == ErrorCode::ServiceUnavailable
                        && op.attempt < DB_WAIT_ATTEMPTS;
                if own_write || (may_retry && !halted && retry.should_retry(op.attempt, code)) {
                    let wait = if own_write {
                        retry.backoff(op.attempt.min(4), &mut self.rng)
                    } else {
                        retry.backoff(op.attempt, &mut self.rng)
                    };
                    if own_write && !forced {
                        self.stats.db_waits += 1;
                    }
                    if let Stage::Action(What::Step(k)) = stage {
                        self.stats.step_mut(wf_kind, k).retries += 1;
                    }
                    let bh = self.calls.insert(Call {
                        backoff: true,
                        timeout: None,
                        retry: None,
                        ..call
                    });
                    let t = out.schedule(wait, M::from(WfTimer(TimerKind::Retry(bh))));
                    self.calls.get_mut(bh).expect("just inserted").retry = Some(t);
                    self.wf_mut(h).run.as_mut().expect("checked").ops[idx].call = Some(bh);
                } else {
                    let run = self.wf_mut(h).run.as_mut().expect("checked");
                    run.ops[idx].status = Status::Failed(code);
                    run.ops[idx].call = None;
                    run.outstanding -= 1;
                    if run.failure.is_none() {
                        run.failure = Some(code);
                        self.drop_backoffs(h, out);
                    }
                }
            }
        }
        self.pump(h, out);
    }

    /// A host allocation granted fewer than asked (MinAmount): the instances left without a
    /// host are moved to the failure state, as part of the same step.
    fn partial_grant(&self, h: Handle, kind: OpKind, r: ResourceRange) -> Vec<Op> {
        let OpKind::Dep {
            op: DepOp::AllocateHost,
            count,
            first,
            ..
        } = kind
        else {
            return Vec::new();
        };
        if r.count >= count {
            return Vec::new();
        }
        let wf = self.wf(h);
        let Some(fs) = self.cfg.definition(wf.kind).failed_state else {
            return Vec::new();
        };
        let rows = (first + r.count..first + count).filter_map(|i| {
            let s = wf.inst[i as usize].state;
            s.is_none_or(|s| s.can_move_to(fs)).then_some((i, s))
        });
        state_ops(wf, rows, fs, Vec::new())
    }

    /// Abandons the running stage's backoffs (it failed, or the deadline passed).
    fn drop_backoffs<M: WfMsg>(&mut self, h: Handle, out: &mut Outbox<'_, M>) {
        let WorkflowEngine { wfs, calls, .. } = self;
        let Some(run) = wfs.get_mut(h).and_then(|w| w.run.as_mut()) else {
            return;
        };
        for op in run.ops.iter_mut().filter(|o| o.status == Status::Out) {
            let Some(ch) = op.call else { continue };
            if calls.get(ch).is_some_and(|c| c.backoff) {
                if let Some(t) = calls.remove(ch).and_then(|c| c.retry) {
                    out.cancel(t);
                }
                op.status = Status::Dropped;
                op.call = None;
                run.outstanding -= 1;
            }
        }
    }

    fn on_retry<M: WfMsg>(&mut self, ch: Handle, out: &mut Outbox<'_, M>) {
        let call = match self.calls.get(ch) {
            Some(c) if c.backoff => *c,
            _ => {
                self.stats.stale += 1;
                return;
            }
        };
        self.calls.remove(ch);
        let live = self.wfs.get_mut(call.wf).and_then(|wf| {
            let seq = wf.seq;
            wf.run.as_mut().filter(|_| seq == call.seq)
        });
        let Some(run) = live else {
            self.stats.stale += 1;
            return;
        };
        let op = &mut run.ops[call.op as usize];
        op.attempt += 1;
        op.call = None;
        self.send_attempt(call.wf, call.op as usize, out);
    }

    fn on_lease<M: WfMsg>(&mut self, h: Handle, epoch: u32, out: &mut Outbox<'_, M>) {
        let lease = self.cfg.lease;
        let now = out.now();
        let task = match self.wfs.get(h) {
            Some(wf) if wf.epoch == epoch => wf.task,
            _ => {
                self.stats.stale += 1;
                return;
            }
        };
        match task {
            Task::Running => {
                // The worker is alive: it renews its lease (a heartbeat).
                let t = self.schedule_local(now, lease, Due::Lease { wf: h, epoch });
                self.wf_mut(h).run.as_mut().expect("running").lease = t;
                self.stats.lease_renewals += 1;
            }
            Task::Lost => {
                let lost_at = self.wf(h).lost_at;
                self.stats.redeliveries += 1;
                self.stats
                    .redelivery_delay
                    .record(now.saturating_since(lost_at).as_ns());
                self.enqueue(h, now);
            }
            Task::Idle | Task::Queued => self.stats.stale += 1,
        }
    }

    fn on_deadline<M: WfMsg>(&mut self, h: Handle, out: &mut Outbox<'_, M>) {
        let Some(wf) = self.wfs.get_mut(h) else {
            self.stats.stale += 1;
            return;
        };
        wf.deadline_timer = None;
        let forward = matches!(wf.cursor, Cursor::Start | Cursor::Step(_)) && wf.failure.is_none();
        if !forward {
            return;
        }
        wf.deadline_hit = true;
        self.stats.deadline_exceeded += 1;
        if let Some(run) = wf.run.as_mut() {
            if let Stage::Action(What::Step(_)) = run.stage {
                // No new attempt starts; one in flight is waited for, so what it made is known.
                run.aborted = true;
                self.drop_backoffs(h, out);
                self.pump(h, out);
            }
        }
    }

    /// The running stage has nothing out and will send nothing more.
    fn conclude<M: WfMsg>(&mut self, h: Handle, out: &mut Outbox<'_, M>) {
        let wf = self.wf_mut(h);
        let kind = wf.kind;
        let failed_wf = wf.failure.is_some();
        let run = wf.run.as_mut().expect("a stage runs in a task");
        let stage = run.stage;
        let ops = std::mem::take(&mut run.ops);
        let held = std::mem::take(&mut run.held);
        let failure = run.failure;
        match stage {
            Stage::Action(What::Step(k)) => {
                if ops.iter().all(Op::is_ok) {
                    self.start_commit(h, Event::StepCompleted(k), ops, out);
                } else {
                    let st = self.stats.step_mut(kind, k);
                    st.failures += 1;
                    if let Some(code) = failure {
                        *st.failure_codes.entry(code).or_insert(0) += 1;
                    }
                    let reason = match failure {
                        Some(code) => FailReason::Step { step: k, code },
                        None => FailReason::Deadline,
                    };
                    self.start_commit(h, Event::Failing(k, reason), ops, out);
                }
            }
            Stage::Action(What::Compensate(j)) => {
                if !ops.iter().all(Op::is_ok) {
                    self.stats.compensation_failures += 1;
                    self.stats.step_mut(kind, j).compensation_failures += 1;
                }
                self.start_commit(h, Event::Compensated(j), ops, out);
            }
            Stage::Action(What::Close) => {
                let ev = if failed_wf {
                    Event::Closed
                } else {
                    Event::Completed
                };
                self.start_commit(h, ev, ops, out);
            }
            Stage::Commit(ev) => {
                self.recycle(ops);
                self.committed(h, ev, failure.is_none(), held, out);
            }
        }
    }

    /// A transition's durable write ended (`ok`: written).
    fn committed<M: WfMsg>(
        &mut self,
        h: Handle,
        ev: Event,
        ok: bool,
        held: Vec<Op>,
        out: &mut Outbox<'_, M>,
    ) {
        let now = out.now();
        if ok {
            self.wf_mut(h).history += 1;
            self.stats.history_events += 1;
        } else {
            self.stats.persist_failures += 1;
        }
        match ev {
            Event::Started => {
                let is_parent = self.wf(h).children.is_some();
                self.wf_mut(h).cursor = if is_parent {
                    Cursor::Waiting
                } else {
                    Cursor::Step(0)
                };
                self.end_task(h);
                if is_parent {
                    self.spawn_children(h, out);
                } else {
                    self.enqueue(h, now);
                }
            }
            Event::StepCompleted(k) => {
                if !ok {
                    // Not durable: the step fails, and what it made is undone.
                    let kind = self.wf(h).kind;
                    self.stats.step_mut(kind, k).failures += 1;
                    let ev = Event::Failing(k, FailReason::Persistence);
                    return self.start_commit(h, ev, held, out);
                }
                self.apply(h, &held);
                let wf = self.wf_mut(h);
                wf.done_mask |= 1 << k;
                wf.cursor = Cursor::Step(k + 1);
                self.end_task(h);
                self.enqueue(h, now);
            }
            Event::Failing(k, reason) => {
                self.apply(h, &held);
                let wf = self.wf_mut(h);
                if held.iter().any(Op::had_effect) {
                    wf.done_mask |= 1 << k;
                }
                wf.failure = Some(reason);
                wf.cursor = Cursor::Compensate(k);
                self.end_task(h);
                self.enqueue(h, now);
            }
            Event::Compensated(j) => {
                self.apply(h, &held);
                self.wf_mut(h).cursor = if j == 0 {
                    Cursor::Finish
                } else {
                    Cursor::Compensate(j - 1)
                };
                self.end_task(h);
                self.enqueue(h, now);
            }
            Event::Completed | Event::Closed => {
                self.apply(h, &held);
                self.finish(h, out);
            }
        }
        self.recycle(held);
    }

    /// Writes the outcome of an action into the workflow's resource table and states.
    fn apply(&mut self, h: Handle, ops: &[Op]) {
        let wf = self.wf_mut(h);
        for op in ops {
            if let OpKind::States {
                first, to, refs, ..
            } = op.kind
            {
                let mut bits = op.applied;
                while bits != 0 {
                    let j = bits.trailing_zeros();
                    bits &= bits - 1;
                    let i = (first + j) as usize;
                    let x = &mut wf.inst[i];
                    x.state = Some(to);
                    if refs {
                        x.written = x.res;
                    }
                }
                continue;
            }
            let Status::Ok(r) = op.status else { continue };
            match op.kind {
                OpKind::Dep {
                    op: dop,
                    count,
                    first,
                    last,
                    ..
                } => {
                    let slot = slot_of(dop.resource());
                    let inside = |id: Option<ResourceId>| {
                        id.is_some_and(|id| {
                            r.first.0 <= id.0 && id.0 < r.first.0 + u64::from(r.count)
                        })
                    };
                    match dop.effect() {
                        Effect::Create => {
                            for (j, id) in r.iter().enumerate() {
                                wf.inst[first as usize + j].res.set(slot, Some(id));
                            }
                            if r.count < count {
                                wf.active = wf.active.min(first + r.count);
                            }
                        }
                        Effect::Delete => {
                            for x in &mut wf.inst[first as usize..=last as usize] {
                                if inside(x.res.at(slot)) {
                                    x.res.set(slot, None);
                                }
                            }
                        }
                        Effect::Attach | Effect::Detach => {
                            let attached = dop.effect() == Effect::Attach;
                            for x in &mut wf.inst[first as usize..=last as usize] {
                                if inside(x.res.at(slot)) {
                                    x.res.disk_attached = attached;
                                }
                            }
                        }
                        Effect::None => {}
                    }
                }
                OpKind::Resources { inst } => {
                    let x = &mut wf.inst[inst as usize];
                    x.written = x.res;
                }
                OpKind::States { .. } | OpKind::Commit => {}
            }
        }
    }

    fn spawn_children<M: WfMsg>(&mut self, h: Handle, out: &mut Outbox<'_, M>) {
        let now = out.now();
        let p = self.wf(h);
        let (kind, account, range, itype, opts) =
            (p.kind, p.account, p.range, p.instance_type, p.opts);
        for id in range.iter() {
            let spec = Spec {
                kind,
                account,
                range: InstanceIdRange {
                    first: id,
                    count: 1,
                },
                instance_type: itype,
                opts,
                min_count: 0,
                reply: None,
                parent: Some(h),
                is_parent: false,
            };
            let c = self.new_workflow(spec, out);
            self.enqueue(c, now);
            self.stats.children += 1;
        }
        self.wf_mut(h).children = Some(Children {
            pending: range.count,
            ok: 0,
            failed: 0,
        });
    }

    /// The workflow's close is durable (or could not be made so): it ends.
    fn finish<M: WfMsg>(&mut self, h: Handle, out: &mut Outbox<'_, M>) {
        let now = out.now();
        self.end_task(h);
        let mut wf = self.wfs.remove(h).expect("live workflow");
        if let Some(t) = wf.deadline_timer {
            self.timers.cancel(t);
        }
        self.live -= 1;
        self.settle_fleet(&wf);
        let k = wf.kind.index();
        match wf.failure {
            None => self.stats.completed[k] += 1,
            Some(r) => {
                self.stats.failed[k] += 1;
                *self.stats.failures.entry(r.label()).or_insert(0) += 1;
            }
        }
        let e2e = now.saturating_since(wf.admitted).as_ns();
        if wf.parent.is_some() {
            self.stats.child_e2e[k].record(e2e);
        } else {
            self.stats.e2e[k].record(e2e);
        }
        let succeeded = match (wf.children, wf.failure) {
            (Some(c), _) => c.ok,
            (None, None) => wf.active,
            (None, Some(_)) => 0,
        };
        if let Some(p) = wf.parent {
            self.child_done(p, wf.failure.is_none(), now);
        }
        if let Some((to, tag)) = wf.reply {
            let done = WfDone {
                tag,
                workflow: wf.id,
                kind: wf.kind,
                outcome: match wf.failure {
                    None => WfOutcome::Completed,
                    Some(r) => WfOutcome::Failed(r),
                },
                instances: wf.range,
                succeeded,
                admitted: wf.admitted,
                history_events: wf.history,
            };
            out.send(to, SimDuration::ZERO, M::from(done));
        }
        let mut inst = std::mem::take(&mut wf.inst);
        if inst.capacity() != 0 && self.spare_insts.len() < SPARE_INSTS {
            inst.clear();
            self.spare_insts.push(inst);
        }
    }

    fn child_done(&mut self, p: Handle, ok: bool, now: SimTime) {
        let Some(parent) = self.wfs.get_mut(p) else {
            return;
        };
        let Some(c) = parent.children.as_mut() else {
            return;
        };
        c.pending -= 1;
        if ok {
            c.ok += 1;
        } else {
            c.failed += 1;
        }
        if c.pending == 0 {
            if c.failed > 0 {
                parent.failure = Some(FailReason::Children { failed: c.failed });
            }
            parent.cursor = Cursor::Finish;
            self.enqueue(p, now);
        }
    }

    /// Writes what a finished workflow leaves its instances holding into the resource table.
    fn settle_fleet(&mut self, wf: &Wf) {
        if wf.children.is_some() {
            return;
        }
        for (i, id) in wf.range.iter().enumerate() {
            let r = wf.inst[i].res;
            match wf.kind {
                WorkflowKind::CreateInstances => {
                    if wf.failure.is_none() && (i as u32) < wf.active {
                        self.fleet.insert(id, r);
                    } else {
                        self.stats.orphaned_resources += r.count();
                    }
                }
                WorkflowKind::Delete if wf.inst[i].state == Some(InstanceState::Deleted) => {
                    self.fleet.remove(&id);
                    let kept = u64::from(wf.opts.keep_disks && r.disk().is_some())
                        + u64::from(wf.opts.keep_eips && r.eip().is_some());
                    self.stats.kept_resources += kept;
                    self.stats.orphaned_resources += r.count() - kept;
                }
                _ => {
                    if r != InstanceResources::default() || self.fleet.contains_key(&id) {
                        self.fleet.insert(id, r);
                    }
                }
            }
        }
    }

    fn wf(&self, h: Handle) -> &Wf {
        self.wfs.get(h).expect("live workflow")
    }
    fn wf_mut(&mut self, h: Handle) -> &mut Wf {
        self.wfs.get_mut(h).expect("live workflow")
    }
}

fn applies(when: When, o: WfOptions) -> bool {
    match when {
        When::Always => true,
        When::PublicIp => o.public_ip,
        When::ReleaseDisks => !o.keep_disks,
        When::ReleaseEips => !o.keep_eips,
        When::Boot => !o.stopped,
        When::CreateStopped => o.stopped,
    }
}

/// The retry policy and attempt timeout of a stage of a workflow of `kind`: the step's own for
/// its action and compensation, the database policy for durable writes and the close.
fn policy(cfg: &EngineConfig, kind: WorkflowKind, stage: Stage) -> (&StepRetry, SimDuration) {
    match stage {
        Stage::Action(What::Step(k) | What::Compensate(k)) => {
            let s = &cfg.definition(kind).steps[usize::from(k)];
            (&s.retry, s.timeout)
        }
        _ => (&cfg.db_retry, cfg.db_timeout),
    }
}

fn final_event(wf: &Wf) -> Event {
    if wf.failure.is_some() {
        Event::Closed
    } else {
        Event::Completed
    }
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The downstream idempotency token of part `part` of step `step` (or of its compensation) of
/// workflow `wf` of the engine with `salt`: the same for every attempt and every delivery,
/// never 0.
pub(super) fn token(salt: u64, wf: WorkflowId, step: u8, part: u32, comp: bool) -> u64 {
    let key = u64::from(step) << 40 | u64::from(part) << 1 | u64::from(comp);
    match mix(mix(salt ^ wf.0) ^ key) {
        0 => 1,
        t => t,
    }
}
