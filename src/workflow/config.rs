//! Workflow definitions (ordered steps, each with an action, a timeout, a retry policy and a
//! compensation), the step retry policy, and the engine's validated configuration.

use super::WorkflowKind;
use crate::api::types::{ErrorCode, InstanceState};
use crate::deps::retry::RETRYABLE_CODES;
use crate::deps::{DepOp, DependencyKind, Effect, Jitter, ResourceKind};
use crate::kernel::{SimDuration, SimRng};

/// Most attempts a step retry policy may make.
pub const MAX_STEP_ATTEMPTS: u32 = 100;
/// Longest backoff interval.
pub const MAX_INTERVAL: SimDuration = SimDuration::HOUR;
/// Largest backoff coefficient.
pub const MAX_COEFFICIENT: f64 = 100.0;
/// Most steps in one workflow definition (step ids are one byte; completion is a 64-bit mask).
pub const MAX_STEPS: usize = 64;

/// A step's retry policy (Temporal's shape): `max_attempts` (1 = never retry), capped
/// exponential backoff `min(max_interval, initial · coefficient^k)` after attempt `k` (0-based)
/// fails, with or without full jitter, and a list of codes never retried.
///
/// Which failures are retried at all follows domain §4: only the codes in
/// [`RETRYABLE_CODES`] (500, 503, throttling, a timeout —
/// which a step sees as `DeadlineExceeded` — and the create-flow conflicts), minus the policy's
/// `non_retryable` list. Other 4xx are never retried whatever the list says.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRetry {
    max_attempts: u32,
    initial: SimDuration,
    coefficient: f64,
    max_interval: SimDuration,
    jitter: Jitter,
    non_retryable: Vec<ErrorCode>,
}

/// Why a step retry policy is not valid; each variant says what to change.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StepRetryError {
    #[error("max_attempts must be 1 to {MAX_STEP_ATTEMPTS} (1 = never retry), got {0}")]
    Attempts(u32),
    #[error("initial_interval must be greater than 0 when retries are allowed (e.g. \"1s\")")]
    ZeroInitial,
    #[error("backoff_coefficient must be a finite number from 1 to {MAX_COEFFICIENT}, got {0}")]
    Coefficient(f64),
    #[error("max_interval ({max}) must be at least initial_interval ({initial})")]
    MaxBelowInitial {
        initial: SimDuration,
        max: SimDuration,
    },
    #[error("max_interval must be at most {MAX_INTERVAL}, got {0}")]
    MaxTooLong(SimDuration),
    #[error("`{0}` is listed twice in non_retryable")]
    Duplicate(&'static str),
}

impl Default for StepRetry {
    /// Domain §7: 3 attempts (Step Functions), initial interval 1 s, coefficient 2, capped at
    /// 100× the initial interval (Temporal), full jitter. `IncorrectInstanceStatus` is not
    /// retried: from a dependency or a compare-and-set it means the record is in another state,
    /// which waiting does not change.
    fn default() -> Self {
        StepRetry {
            max_attempts: 3,
            initial: SimDuration::SECOND,
            coefficient: 2.0,
            max_interval: SimDuration::from_secs(100),
            jitter: Jitter::Full,
            non_retryable: vec![ErrorCode::IncorrectInstanceStatus],
        }
    }
}

impl StepRetry {
    pub fn new(
        max_attempts: u32,
        initial: SimDuration,
        coefficient: f64,
        max_interval: SimDuration,
        jitter: Jitter,
        non_retryable: &[ErrorCode],
    ) -> Result<StepRetry, StepRetryError> {
        if !(1..=MAX_STEP_ATTEMPTS).contains(&max_attempts) {
            return Err(StepRetryError::Attempts(max_attempts));
        }
        if initial.is_zero() && max_attempts > 1 {
            return Err(StepRetryError::ZeroInitial);
        }
        if !(coefficient.is_finite() && (1.0..=MAX_COEFFICIENT).contains(&coefficient)) {
            return Err(StepRetryError::Coefficient(coefficient));
        }
        if max_interval < initial {
            return Err(StepRetryError::MaxBelowInitial {
                initial,
                max: max_interval,
            });
        }
        if max_interval > MAX_INTERVAL {
            return Err(StepRetryError::MaxTooLong(max_interval));
        }
        for (i, c) in non_retryable.iter().enumerate() {
            if non_retryable[..i].contains(c) {
                return Err(StepRetryError::Duplicate(c.name()));
            }
        }
        Ok(StepRetry {
            max_attempts,
            initial,
            coefficient,
            max_interval,
            jitter,
            non_retryable: non_retryable.to_vec(),
        })
    }

    /// One attempt, no retries.
    pub fn never() -> StepRetry {
        StepRetry {
            max_attempts: 1,
            ..StepRetry::default()
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    pub fn initial(&self) -> SimDuration {
        self.initial
    }
    pub fn coefficient(&self) -> f64 {
        self.coefficient
    }
    pub fn max_interval(&self) -> SimDuration {
        self.max_interval
    }
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }
    pub fn non_retryable(&self) -> &[ErrorCode] {
        &self.non_retryable
    }

    /// Whether the policy retries `code` at all (ignoring the attempt budget).
    pub fn retries(&self, code: ErrorCode) -> bool {
        RETRYABLE_CODES.contains(&code) && !self.non_retryable.contains(&code)
    }

    /// After attempt `attempt` (0-based) failed with `code`: whether to make another.
    pub fn should_retry(&self, attempt: u32, code: ErrorCode) -> bool {
        self.retries(code) && attempt.saturating_add(1) < self.max_attempts
    }

    /// The backoff ceiling after attempt `attempt`: `min(max_interval, initial · coefficient^k)`,
    /// by repeated IEEE multiplication (exact for a coefficient of 2), rounded to the nanosecond.
    pub fn ceiling(&self, attempt: u32) -> SimDuration {
        let cap = self.max_interval.as_ns() as f64;
        let mut x = self.initial.as_ns() as f64;
        for _ in 0..attempt {
            if x >= cap {
                break;
            }
            x *= self.coefficient;
        }
        if x >= cap {
            return self.max_interval;
        }
        // x < MAX_INTERVAL < 2^53 ns: the fraction is exact; round half up without a libm call.
        let t = x as u64;
        SimDuration::from_ns(if x - t as f64 >= 0.5 { t + 1 } else { t })
    }

    /// The wait after attempt `attempt` fails: uniform over [0, ceiling] ns with full jitter (one
    /// draw), exactly the ceiling without (no draw).
    pub fn backoff(&self, attempt: u32, rng: &mut SimRng) -> SimDuration {
        let ceiling = self.ceiling(attempt);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => SimDuration::from_ns(rng.below(ceiling.as_ns() + 1)),
        }
    }
}

/// What a step does (or undoes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A dependency call that creates one record per instance (`count` = the workflow's
    /// instances in one call when batched; `allocate_host` also carries `min_count`).
    Create(DepOp),
    /// A dependency call acting on the instances' records of the op's resource kind: delete,
    /// attach or detach. Only records in the right state are named (attach: detached disks;
    /// detach: attached disks; delete: existing records); with none, the step is skipped.
    Act(DepOp),
    /// Every instance of the workflow to `to`, expecting the state the engine last made durable
    /// for it (`UpdateInstanceStates`: one multi-row query per run of instances expected in the
    /// same state, at most 64 rows each).
    SetState(InstanceState),
}

/// When a step of a definition applies to a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// Only when the command asks for a public IP (`WfOptions::public_ip`).
    PublicIp,
    /// Unless the command keeps the disks (`WfOptions::keep_disks`).
    ReleaseDisks,
    /// Unless the command keeps the elastic IPs (`WfOptions::keep_eips`).
    ReleaseEips,
    /// Unless the command creates the instances stopped (`WfOptions::stopped`).
    Boot,
    /// Only when the command creates the instances stopped (CreateInstance).
    CreateStopped,
}

/// One step of a workflow definition.
#[derive(Clone, Debug, PartialEq)]
pub struct StepDef {
    pub name: &'static str,
    pub action: Action,
    /// What undoes the step when a later step fails (saga); `None`: nothing to undo.
    pub compensation: Option<Action>,
    /// How long one attempt may take before it counts as a timeout (`DeadlineExceeded`).
    pub timeout: SimDuration,
    pub retry: StepRetry,
    pub when: When,
}

impl StepDef {
    /// A step with the default timeout (10 s, *assumed*) and retry policy, always applied.
    pub fn new(name: &'static str, action: Action, compensation: Option<Action>) -> StepDef {
        StepDef {
            name,
            action,
            compensation,
            timeout: SimDuration::from_secs(10),
            retry: StepRetry::default(),
            when: When::Always,
        }
    }
    pub fn when(mut self, when: When) -> StepDef {
        self.when = when;
        self
    }
}

/// A workflow definition: ordered steps, the instances' state when the workflow starts, the
/// state a failed workflow leaves them in, and the per-workflow deadline.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowDef {
    pub kind: WorkflowKind,
    /// The state the instances are expected in at the start (`None`: not checked, e.g. a forced
    /// delete); the first `SetState` expects it.
    pub initial: Option<InstanceState>,
    pub steps: Vec<StepDef>,
    /// After a failure and its compensations, instances are moved here from the state the engine
    /// last made durable (when that move is legal); `None`: left where they are.
    pub failed_state: Option<InstanceState>,
    /// From admission to the end of the forward steps; past it the workflow fails and compensates.
    pub deadline: SimDuration,
}

impl WorkflowDef {
    /// The shipped definition of `kind` (see the module documentation for the steps).
    pub fn standard(kind: WorkflowKind) -> WorkflowDef {
        use Action::*;
        use InstanceState::*;
        let s = StepDef::new;
        let (initial, steps, failed_state, deadline_s) = match kind {
            WorkflowKind::CreateInstances => (
                Some(Pending),
                vec![
                    s(
                        "allocate_host",
                        Create(DepOp::AllocateHost),
                        Some(Act(DepOp::ReleaseHost)),
                    ),
                    s(
                        "create_disk",
                        Create(DepOp::CreateDisk),
                        Some(Act(DepOp::DeleteDisk)),
                    ),
                    s(
                        "create_eni",
                        Create(DepOp::CreateEni),
                        Some(Act(DepOp::DeleteEni)),
                    ),
                    s(
                        "allocate_eip",
                        Create(DepOp::AllocateEip),
                        Some(Act(DepOp::ReleaseEip)),
                    )
                    .when(When::PublicIp),
                    s("mark_starting", SetState(Starting), None).when(When::Boot),
                    s(
                        "start_vm",
                        Act(DepOp::AttachDisk),
                        Some(Act(DepOp::DetachDisk)),
                    )
                    .when(When::Boot),
                    s(
                        "start_billing",
                        Create(DepOp::StartBilling),
                        Some(Act(DepOp::StopBilling)),
                    )
                    .when(When::Boot),
                    s("mark_running", SetState(Running), None).when(When::Boot),
                    s("mark_stopped", SetState(Stopped), None).when(When::CreateStopped),
                ],
                Some(Deleted),
                600,
            ),
            WorkflowKind::Start => (
                Some(Stopped),
                vec![
                    s("mark_starting", SetState(Starting), None),
                    s(
                        "start_vm",
                        Act(DepOp::AttachDisk),
                        Some(Act(DepOp::DetachDisk)),
                    ),
                    s(
                        "start_billing",
                        Create(DepOp::StartBilling),
                        Some(Act(DepOp::StopBilling)),
                    ),
                    s("mark_running", SetState(Running), None),
                ],
                Some(Stopped),
                300,
            ),
            WorkflowKind::Stop => (
                Some(Running),
                vec![
                    s("mark_stopping", SetState(Stopping), None),
                    s("stop_billing", Act(DepOp::StopBilling), None),
                    s("stop_vm", Act(DepOp::DetachDisk), None),
                    s("mark_stopped", SetState(Stopped), None),
                ],
                // A stop that cannot finish leaves the instance running (not stuck in Stopping).
                Some(Running),
                300,
            ),
            WorkflowKind::Reboot => (
                Some(Running),
                vec![
                    s("mark_starting", SetState(Starting), None),
                    s(
                        "stop_vm",
                        Act(DepOp::DetachDisk),
                        Some(Act(DepOp::AttachDisk)),
                    ),
                    s(
                        "start_vm",
                        Act(DepOp::AttachDisk),
                        Some(Act(DepOp::DetachDisk)),
                    ),
                    s("mark_running", SetState(Running), None),
                ],
                Some(Running),
                300,
            ),
            WorkflowKind::Delete => (
                Some(Stopped),
                vec![
                    s("mark_deleted", SetState(Deleted), None),
                    s("stop_billing", Act(DepOp::StopBilling), None),
                    s("detach_disk", Act(DepOp::DetachDisk), None),
                    s("delete_disk", Act(DepOp::DeleteDisk), None).when(When::ReleaseDisks),
                    s("delete_eni", Act(DepOp::DeleteEni), None),
                    s("release_eip", Act(DepOp::ReleaseEip), None).when(When::ReleaseEips),
                    s("release_host", Act(DepOp::ReleaseHost), None),
                ],
                None,
                300,
            ),
        };
        WorkflowDef {
            kind,
            initial,
            steps,
            failed_state,
            deadline: SimDuration::from_secs(deadline_s),
        }
    }

    /// Bit `k` set when step `k` has a compensation.
    pub(super) fn compensable_mask(&self) -> u64 {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.compensation.is_some())
            .fold(0, |m, (k, _)| m | 1 << k)
    }

    fn validate(&self) -> Result<(), EngineConfigError> {
        let kind = self.kind.name();
        if self.steps.len() > MAX_STEPS {
            return Err(EngineConfigError::TooManySteps {
                kind,
                got: self.steps.len(),
            });
        }
        if self.deadline.is_zero() {
            return Err(EngineConfigError::ZeroDuration { field: "deadline" });
        }
        let bad = |step: &'static str, problem: &'static str| EngineConfigError::Step {
            kind,
            step,
            problem,
        };
        for s in &self.steps {
            if s.timeout.is_zero() {
                return Err(bad(s.name, "timeout must be longer than 0 (e.g. \"10s\")"));
            }
            for a in [Some(s.action), s.compensation].into_iter().flatten() {
                check_action(a).map_err(|p| bad(s.name, p))?;
            }
            if let (Action::Create(op), Some(Action::Act(undo))) = (s.action, s.compensation) {
                if undo.resource() != op.resource() || undo.effect() != Effect::Delete {
                    return Err(bad(
                        s.name,
                        "the compensation of a create must delete the same kind of record",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_action(a: Action) -> Result<(), &'static str> {
    match a {
        Action::Create(op) | Action::Act(op) => {
            if op.kind() == DependencyKind::Image || op.resource() == ResourceKind::Bandwidth {
                return Err(
                    "only host, disk, ENI, EIP and billing operations can be workflow actions",
                );
            }
            let create = op.effect() == Effect::Create;
            if matches!(a, Action::Create(_)) != create {
                return Err(if create {
                    "a creating operation must be an `Action::Create`"
                } else {
                    "a delete, attach or detach operation must be an `Action::Act`"
                });
            }
            Ok(())
        }
        Action::SetState(InstanceState::Pending) => {
            Err("no instance moves back to Pending: use another target state")
        }
        Action::SetState(_) => Ok(()),
    }
}

/// Why an engine configuration is not valid; each variant says what to change.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EngineConfigError {
    #[error("`{field}` must be at least 1")]
    Zero { field: &'static str },
    #[error("`{field}` must be longer than 0 (e.g. \"30s\")")]
    ZeroDuration { field: &'static str },
    #[error(
        "history_cap must be at least 3 (a start, a failure and a close event always fit), got {0}"
    )]
    HistoryCap(u32),
    #[error("max_batch must be 1 to 10000 items per dependency call, got {0}")]
    MaxBatch(u32),
    #[error("workflow `{kind}` has {got} steps; at most {MAX_STEPS} are allowed")]
    TooManySteps { kind: &'static str, got: usize },
    #[error("workflow `{kind}`, step `{step}`: {problem}")]
    Step {
        kind: &'static str,
        step: &'static str,
        problem: &'static str,
    },
}

/// The validated configuration of a [`WorkflowEngine`](super::WorkflowEngine); build it with
/// [`EngineConfig::builder`]. Every default is *(assumed)* unless noted.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    pub(super) workers: u32,
    pub(super) queue_limit: u32,
    pub(super) lease: SimDuration,
    pub(super) history_cap: u32,
    pub(super) db_hop: SimDuration,
    pub(super) dep_hop: SimDuration,
    pub(super) db_timeout: SimDuration,
    pub(super) db_retry: StepRetry,
    pub(super) window: u32,
    pub(super) max_batch: u32,
    pub(super) stuck_threshold: SimDuration,
    pub(super) defs: [WorkflowDef; WorkflowKind::COUNT],
}

impl EngineConfig {
    /// The defaults:
    /// - 64 workers; admission bounded at 10,000 live workflows (so at most that many tasks
    ///   queue); leases of 30 s;
    /// - history capped at 25,000 events per workflow (SWF / Step Functions, domain §7);
    /// - 0.25 ms one-way hops to the database and the dependencies;
    /// - durable writes and end-of-workflow state writes: 5 s timeout, 5 attempts, 50 ms ×2
    ///   capped at 1 s, full jitter;
    /// - at most 16 queries or calls of one step in flight at once; 100 items per dependency
    ///   call (RunInstances' `Amount` limit);
    /// - instances count as stuck after 5 minutes in a transitional state;
    /// - the standard definitions ([`WorkflowDef::standard`]): step timeout 10 s, retries as
    ///   [`StepRetry::default`], deadlines 10 min (create) and 5 min (the others).
    pub fn assumed_defaults() -> EngineConfig {
        EngineConfig {
            workers: 64,
            queue_limit: 10_000,
            lease: SimDuration::from_secs(30),
            history_cap: 25_000,
            db_hop: SimDuration::from_us(250),
            dep_hop: SimDuration::from_us(250),
            db_timeout: SimDuration::from_secs(5),
            db_retry: StepRetry {
                max_attempts: 5,
                initial: SimDuration::from_ms(50),
                coefficient: 2.0,
                max_interval: SimDuration::SECOND,
                jitter: Jitter::Full,
                non_retryable: Vec::new(),
            },
            window: 16,
            max_batch: 100,
            stuck_threshold: SimDuration::from_secs(300),
            defs: WorkflowKind::ALL.map(WorkflowDef::standard),
        }
    }

    pub fn builder() -> EngineConfigBuilder {
        EngineConfigBuilder(EngineConfig::assumed_defaults())
    }
    pub fn to_builder(&self) -> EngineConfigBuilder {
        EngineConfigBuilder(self.clone())
    }

    pub fn workers(&self) -> u32 {
        self.workers
    }
    pub fn queue_limit(&self) -> u32 {
        self.queue_limit
    }
    pub fn lease(&self) -> SimDuration {
        self.lease
    }
    pub fn history_cap(&self) -> u32 {
        self.history_cap
    }
    pub fn stuck_threshold(&self) -> SimDuration {
        self.stuck_threshold
    }
    pub fn definition(&self, kind: WorkflowKind) -> &WorkflowDef {
        &self.defs[kind.index()]
    }
}

/// Builds an [`EngineConfig`] from [`EngineConfig::assumed_defaults`].
#[derive(Clone, Debug)]
pub struct EngineConfigBuilder(EngineConfig);

impl EngineConfigBuilder {
    pub fn workers(mut self, n: u32) -> Self {
        self.0.workers = n;
        self
    }
    /// Live workflows at most (sub-workflows included); a command that would pass it is
    /// rejected. Each live workflow has at most one task queued or running, so this bounds the
    /// task queue.
    pub fn queue_limit(mut self, n: u32) -> Self {
        self.0.queue_limit = n;
        self
    }
    pub fn lease(mut self, d: SimDuration) -> Self {
        self.0.lease = d;
        self
    }
    pub fn history_cap(mut self, n: u32) -> Self {
        self.0.history_cap = n;
        self
    }
    /// One-way delays of a query to the database (and of an admission acknowledgement to the
    /// command's caller) and of a call to a dependency.
    pub fn hops(mut self, db: SimDuration, dep: SimDuration) -> Self {
        self.0.db_hop = db;
        self.0.dep_hop = dep;
        self
    }
    /// Timeout and retry policy of durable writes and end-of-workflow state writes.
    pub fn db_calls(mut self, timeout: SimDuration, retry: StepRetry) -> Self {
        self.0.db_timeout = timeout;
        self.0.db_retry = retry;
        self
    }
    /// Queries or calls of one step in flight at once.
    pub fn window(mut self, n: u32) -> Self {
        self.0.window = n;
        self
    }
    /// Items per dependency call; a step over more instances makes several calls.
    pub fn max_batch(mut self, n: u32) -> Self {
        self.0.max_batch = n;
        self
    }
    pub fn stuck_threshold(mut self, d: SimDuration) -> Self {
        self.0.stuck_threshold = d;
        self
    }
    /// Replaces the definition of `def.kind`.
    pub fn definition(mut self, def: WorkflowDef) -> Self {
        let k = def.kind.index();
        self.0.defs[k] = def;
        self
    }
    /// Edits the definition of `kind` in place.
    pub fn edit(mut self, kind: WorkflowKind, f: impl FnOnce(&mut WorkflowDef)) -> Self {
        f(&mut self.0.defs[kind.index()]);
        self
    }
    /// Edits step `name` of `kind` (no-op if there is none).
    pub fn edit_step(self, kind: WorkflowKind, name: &str, f: impl FnOnce(&mut StepDef)) -> Self {
        self.edit(kind, |d| {
            if let Some(s) = d.steps.iter_mut().find(|s| s.name == name) {
                f(s);
            }
        })
    }
    /// Sets every step's retry policy and timeout, in every definition.
    pub fn all_steps(mut self, timeout: SimDuration, retry: &StepRetry) -> Self {
        for d in &mut self.0.defs {
            for s in &mut d.steps {
                s.timeout = timeout;
                s.retry = retry.clone();
            }
        }
        self
    }
    /// Sets the deadline of every definition.
    pub fn deadlines(mut self, d: SimDuration) -> Self {
        for def in &mut self.0.defs {
            def.deadline = d;
        }
        self
    }

    pub fn build(self) -> Result<EngineConfig, EngineConfigError> {
        let c = self.0;
        for (field, v) in [
            ("workers", c.workers),
            ("queue_limit", c.queue_limit),
            ("window", c.window),
        ] {
            if v == 0 {
                return Err(EngineConfigError::Zero { field });
            }
        }
        for (field, d) in [
            ("lease", c.lease),
            ("db_timeout", c.db_timeout),
            ("stuck_threshold", c.stuck_threshold),
        ] {
            if d.is_zero() {
                return Err(EngineConfigError::ZeroDuration { field });
            }
        }
        if c.history_cap < 3 {
            return Err(EngineConfigError::HistoryCap(c.history_cap));
        }
        if !(1..=10_000).contains(&c.max_batch) {
            return Err(EngineConfigError::MaxBatch(c.max_batch));
        }
        for (i, d) in c.defs.iter().enumerate() {
            debug_assert_eq!(d.kind.index(), i, "definitions are stored by kind");
            d.validate()?;
        }
        Ok(c)
    }
}
