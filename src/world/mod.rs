//! The control-plane world: the one message type every component speaks, the enum of its
//! components, and [`Topology`], the embeddable builder that assembles traffic → gateway →
//! API nodes → database and dependencies, runs it under a seed and returns typed results.

mod faults;
mod gameday;
use crate::api::gateway::AccountOutcomes;
use crate::api::types::AccountId;
pub use faults::FaultEvent;
pub use gameday::{GameDayResult, MAX_NODES, RecoverySlo};

use crate::api::gateway::{ApiMetrics, Gateway, STATUSES, status_at};
use crate::api::lb::LbPolicy;
use crate::api::node::{ApiNode, DepIds, NodeCache, NodeConfig, NodeTimer, Observed};
use crate::api::throttle::Throttle;
use crate::api::types::{Api, Request, Response, Status};
use crate::cache::{
    Broadcaster, CacheStats, FeedStats, FeedTimer, Invalidation, Invalidator, L1Cache, L1Config,
    L1Invalidation, L2Cache, L2Config, L2Reply, L2Request, L2Stats, L2Timer, RowChange,
};
use crate::cleanup::{Cleanup, CleanupConfig, CleanupStats, CleanupTick};
use crate::db::{Db, DbConfig, DbQuery, DbReply, DbStats, DbTimer};
use crate::deps::{
    DepCall, DepReply, DepTimer, Dependency, DependencyKind, DependencySpec, DependencyStats,
};
use crate::gc::GcStats;
use crate::idempotency::{IdemConfig, StoreKind};
use crate::invariants::{Invariant, InvariantConfig, Violation};
use crate::kernel::{
    Component, ComponentId, Dist, Handle, Limits, Message, Outbox, Outcome, RootSeed, RunReport,
    Sim, SimDuration, SimTime, TraceHash,
};
use crate::metrics::LatencyHistogram;
use crate::metrics::series::{ResponseWindow, TimeSeries, Totals, bucket_width};
use crate::reconcile::{ReconConfig, ReconStats, ReconTargets, ReconTimer, Reconciler, RowView};
use crate::traffic::{
    ClientConfig, ClientStats, OpenLoop, OpenLoopConfig, ReplayConfig, ReplayStats, Trace,
};
use crate::workflow::{
    EngineConfig, WfAck, WfCommand, WfDeps, WfDone, WfStats, WfTimer, WorkflowEngine,
};

/// Every event of the control-plane world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// The traffic's own timer: send the next request.
    TrafficTick,
    /// A successful creation, echoed to the traffic so it can target the new instances.
    Created(Response),
    /// Traffic → gateway.
    Request(Request),
    /// Gateway → node.
    Dispatch {
        handle: Handle,
        req: Request,
    },
    /// Node → gateway.
    Response {
        handle: Handle,
        resp: Response,
    },
    /// The gateway's deadline sweep: expire the requests whose deadline has come.
    DeadlineSweep,
    /// A node's own timers.
    Node(NodeTimer),
    DbQuery(DbQuery),
    DbReply(DbReply),
    DbTimer(DbTimer),
    DepCall(DepCall),
    DepReply(DepReply),
    DepTimer(DepTimer),
    /// The cleanup job's periodic run.
    CleanupTick,
    L2Request(L2Request),
    L2Reply(L2Reply),
    L2Timer,
    /// A delayed L1 invalidation from the node that wrote.
    L1Invalidation(L1Invalidation),
    WfCommand(WfCommand),
    WfTimer(WfTimer),
    WfDone(WfDone),
    /// The engine's admission of a command (or its refusal), to the node that waits for it.
    WfAck(WfAck),
    /// Every response, echoed to the traffic when client behaviour needs it (retries, polling,
    /// closed loop); successful creations then come this way instead of as `Created`.
    ClientResponse(Response),
    /// The reconciler's own wake-ups (audit, next scan page, start repairs).
    Recon(ReconTimer),
    /// Database → binlog invalidator: instance rows changed.
    RowChange(RowChange),
    /// The binlog invalidator's own wake-up.
    FeedTimer,
}

// Every event carries a `Msg`: keep it at 88 bytes (the kernel's queue slots hold one each).
// An admission acknowledgement is one of the smallest.
const _: () = assert!(std::mem::size_of::<Msg>() <= 88);
const _: () = assert!(std::mem::size_of::<WfAck>() == 24);

impl Message for Msg {
    #[inline]
    fn kind_code(&self) -> u32 {
        match self {
            Msg::TrafficTick => 0,
            Msg::Created(_) => 1,
            Msg::Request(_) => 2,
            Msg::Dispatch { .. } => 3,
            Msg::Response { .. } => 4,
            Msg::DeadlineSweep => 5,
            Msg::Node(t) => match t {
                NodeTimer::CpuDone(_) => 6,
                NodeTimer::ConnTimeout(_) => 7,
                NodeTimer::QueryTimeout { .. } => 64,
                NodeTimer::DbTimeouts => 66,
                NodeTimer::L2Timeout => 65,
                NodeTimer::DepTimeout { .. } => 8,
                NodeTimer::DepRetry(_) => 9,
                NodeTimer::Resume => 10,
                NodeTimer::GcCheck => 11,
                NodeTimer::Crash => 60,
                NodeTimer::Restart => 61,
                NodeTimer::InjectPause(_) => 62,
                NodeTimer::LeakConnections(_) => 63,
            },
            Msg::DbQuery(_) => 12,
            Msg::DbReply(_) => 13,
            Msg::DbTimer(_) => 14,
            Msg::DepCall(_) => 15,
            Msg::DepReply(_) => 16,
            Msg::DepTimer(_) => 17,
            Msg::CleanupTick => 18,
            Msg::L2Request(_) => 19,
            Msg::L2Reply(_) => 20,
            Msg::L2Timer => 21,
            Msg::L1Invalidation(_) => 22,
            Msg::WfCommand(_) => 23,
            Msg::WfTimer(_) => 24,
            Msg::WfDone(_) => 25,
            Msg::ClientResponse(_) => 26,
            Msg::Recon(_) => 27,
            Msg::WfAck(_) => 28,
            Msg::RowChange(_) => 29,
            Msg::FeedTimer => 30,
        }
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Msg::TrafficTick => "TrafficTick",
            Msg::Created(_) => "Created",
            Msg::Request(_) => "Request",
            Msg::Dispatch { .. } => "Dispatch",
            Msg::Response { .. } => "Response",
            Msg::DeadlineSweep => "DeadlineSweep",
            Msg::Node(t) => match t {
                NodeTimer::CpuDone(_) => "CpuDone",
                NodeTimer::ConnTimeout(_) => "ConnTimeout",
                NodeTimer::QueryTimeout { .. } => "QueryTimeout",
                NodeTimer::DbTimeouts => "DbTimeouts",
                NodeTimer::L2Timeout => "L2Timeout",
                NodeTimer::DepTimeout { .. } => "DepTimeout",
                NodeTimer::DepRetry(_) => "DepRetry",
                NodeTimer::Resume => "GcResume",
                NodeTimer::GcCheck => "GcCheck",
                NodeTimer::Crash => "NodeCrash",
                NodeTimer::Restart => "NodeRestart",
                NodeTimer::InjectPause(_) => "NodePause",
                NodeTimer::LeakConnections(_) => "PoolLeak",
            },
            Msg::DbQuery(_) => "DbQuery",
            Msg::DbReply(_) => "DbReply",
            Msg::DbTimer(_) => "DbTimer",
            Msg::DepCall(_) => "DepCall",
            Msg::DepReply(_) => "DepReply",
            Msg::DepTimer(_) => "DepTimer",
            Msg::CleanupTick => "CleanupTick",
            Msg::L2Request(_) => "L2Request",
            Msg::L2Reply(_) => "L2Reply",
            Msg::L2Timer => "L2Timer",
            Msg::L1Invalidation(_) => "L1Invalidation",
            Msg::WfCommand(_) => "WfCommand",
            Msg::WfTimer(_) => "WfTimer",
            Msg::WfDone(_) => "WfDone",
            Msg::ClientResponse(_) => "ClientResponse",
            Msg::Recon(_) => "ReconTimer",
            Msg::WfAck(_) => "WfAck",
            Msg::RowChange(_) => "RowChange",
            Msg::FeedTimer => "FeedTimer",
        }
    }
}

/// `From` for the messages components generic over the world's message type send: each wraps
/// into the `Msg` variant of the same name (unit variants for the payload-less timers).
macro_rules! wraps {
    ($($t:ident),*; units $($u:ident),*) => {
        $(impl From<$t> for Msg {
            fn from(m: $t) -> Msg {
                Msg::$t(m)
            }
        })*
        $(impl From<$u> for Msg {
            fn from(_: $u) -> Msg {
                Msg::$u
            }
        })*
    };
}
wraps!(DbReply, DbTimer, DepReply, L2Reply, DepCall, WfTimer, WfDone, WfAck, DbQuery, DepTimer, L2Request, L1Invalidation, RowChange; units L2Timer, CleanupTick, FeedTimer);

impl From<ReconTimer> for Msg {
    fn from(t: ReconTimer) -> Msg {
        Msg::Recon(t)
    }
}

/// The components of the world (static dispatch).
pub enum Part {
    Traffic(Box<OpenLoop>),
    Gateway(Box<Gateway>),
    Node(Box<ApiNode>),
    Db(Box<Db>),
    Dep(Box<Dependency>),
    Cleanup(Box<Cleanup>),
    L2(Box<L2Cache>),
    Workflow(Box<WorkflowEngine>),
    Reconciler(Box<Reconciler>),
    Invalidator(Box<Invalidator>),
}

impl Component<Msg> for Part {
    #[inline]
    fn on_event(&mut self, msg: Msg, out: &mut Outbox<'_, Msg>) {
        // By component first (most events go to nodes, which take every message kind they
        // get), then by message.
        let unexpected = match self {
            Part::Node(n) => return n.on_message(msg, out),
            Part::Traffic(t) => match msg {
                Msg::TrafficTick => return t.on_tick(out),
                Msg::Created(r) => return t.on_created(r),
                Msg::ClientResponse(r) => return t.on_response(r, out),
                msg => msg,
            },
            Part::Gateway(g) => match msg {
                Msg::Request(r) => return g.on_request(r, out),
                Msg::Response { handle, resp } => return g.on_response(handle, resp, out),
                Msg::DeadlineSweep => return g.on_sweep(out),
                msg => msg,
            },
            Part::Db(d) => match msg {
                Msg::DbQuery(q) => return d.on_query(q, out),
                Msg::DbTimer(t) => return d.on_timer(t, out),
                msg => msg,
            },
            Part::Dep(d) => match msg {
                Msg::DepCall(c) => return d.on_call(c, out),
                Msg::DepTimer(t) => return d.on_timer(t, out),
                msg => msg,
            },
            Part::L2(c) => match msg {
                Msg::L2Request(r) => return c.on_request(r, out),
                Msg::L2Timer => return c.on_timer(L2Timer, out),
                msg => msg,
            },
            Part::Workflow(e) => match msg {
                Msg::WfCommand(c) => return e.on_command(c, out),
                Msg::WfTimer(t) => return e.on_timer(t, out),
                Msg::DbReply(r) => return e.on_db_reply(r, out),
                Msg::DepReply(r) => return e.on_dep_reply(r, out),
                // The answers to its cache invalidations: nothing to do.
                Msg::L2Reply(_) => return,
                msg => msg,
            },
            Part::Reconciler(c) => match msg {
                Msg::DepReply(r) => return c.on_dep_reply(r, out),
                Msg::DbReply(r) => return c.on_db_reply(r, out),
                Msg::Recon(t) => return c.on_timer(t, out),
                Msg::L2Reply(_) => return,
                msg => msg,
            },
            Part::Cleanup(c) => match msg {
                Msg::CleanupTick => return c.on_tick(out),
                Msg::DbReply(r) => return c.on_db_reply(r, out),
                msg => msg,
            },
            Part::Invalidator(i) => match msg {
                Msg::RowChange(c) => return i.on_change(c, out),
                Msg::L2Reply(r) => return i.on_reply(r, out),
                Msg::FeedTimer => return i.on_timer(FeedTimer, out),
                msg => msg,
            },
        };
        out.violation(format!(
            "message {} sent to the wrong component",
            unexpected.kind_name()
        ));
    }
}

/// Why a topology is not valid; each variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TopologyError {
    #[error("`nodes` must be 1..=1024, got {0}")]
    Nodes(u32),
    #[error("no `{0}` dependency: add a mock of that kind (see mocks/)")]
    MissingDependency(&'static str),
    #[error("`duration` must be longer than 0 (e.g. \"60s\")")]
    ZeroDuration,
    #[error("reconciliation compares the workflow engine's resources: call with_workflows first")]
    ReconciliationNeedsWorkflows,
    #[error("game day: {0}")]
    GameDay(String),
    #[error("rate: {0}")]
    Rate(String),
    #[error("fault[{index}]: {reason}")]
    FaultTarget { index: usize, reason: String },
    #[error("node {index} does not exist: nodes are numbered 0..{nodes}")]
    NoSuchNode { index: u32, nodes: u32 },
    #[error("traffic: {0}")]
    Traffic(#[from] crate::traffic::ProfileError),
    #[error("client: {0}")]
    Client(#[from] crate::traffic::ClientError),
    #[error("trace: {0}")]
    Trace(#[from] crate::traffic::TraceError),
}

/// A control-plane topology: what to build and how long to drive it. Cloneable, so one
/// description runs under many seeds.
#[derive(Clone, Debug)]
pub struct Topology {
    nodes: u32,
    node: NodeConfig,
    lb: LbPolicy,
    throttle: Throttle,
    db: DbConfig,
    deps: Vec<DependencySpec>,
    traffic: OpenLoopConfig,
    duration: SimDuration,
    gateway_hop: SimDuration,
    gateway_max_in_flight: usize,
    max_events: u64,
    /// Nodes configured differently from the rest (a bad heap, a smaller pool): (index, config).
    node_overrides: Vec<(u32, NodeConfig)>,
    cleanup: Option<CleanupConfig>,
    idempotency: IdemConfig,
    cache: Option<CacheSetup>,
    workflows: Option<WorkflowSetup>,
    reconcile: Option<ReconConfig>,
    /// Whether the world samples a time series (on unless switched off).
    series: bool,
    client: Option<ClientConfig>,
    replay: Option<(std::sync::Arc<Trace>, ReplayConfig)>,
    /// Faults to inject (empty: none).
    faults: crate::faults::FaultPlan,
    /// Bounds of the invariant checks.
    invariants: InvariantConfig,
    /// A game day's alerts and runbook, and the SLO recovery is judged by.
    gameday: Option<(crate::gameday::GameDayConfig, RecoverySlo)>,
    /// Planted bugs (none: the correct core).
    bugs: crate::faults::PlantedBugs,
}

/// The workflow engine behind the mutating APIs: RunInstances inserts Pending rows and hands
/// them to a CreateInstances workflow; Start/Stop/Reboot/Delete run as workflows.
#[derive(Clone, Debug)]
pub struct WorkflowSetup {
    pub engine: EngineConfig,
    /// RunInstances `Amount = N`: one workflow calling each dependency once for N items
    /// (`true`), or N sub-workflows (`false`).
    pub batch: bool,
}

/// The multi-level cache in front of the database's by-id reads.
#[derive(Clone, Debug)]
pub struct CacheSetup {
    pub l1: L1Config,
    pub l2: L2Config,
    /// TTL of the values nodes store in the L2, and of its "not found" entries.
    pub l2_ttl: SimDuration,
    pub l2_negative_ttl: SimDuration,
    /// Delay of the L1 invalidation broadcast after a write.
    pub invalidation_delay: Dist,
    /// Who invalidates after a write: the writer, or the database's change feed.
    pub invalidation: Invalidation,
}

impl Topology {
    /// `duration` of traffic; the run then continues until every request has been answered or
    /// has hit its deadline (plus the dependency timeout), and ends there.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nodes: u32,
        node: NodeConfig,
        lb: LbPolicy,
        throttle: Throttle,
        db: DbConfig,
        deps: Vec<DependencySpec>,
        traffic: OpenLoopConfig,
        duration: SimDuration,
    ) -> Result<Topology, TopologyError> {
        if !(1..=1024).contains(&nodes) {
            return Err(TopologyError::Nodes(nodes));
        }
        if duration.is_zero() {
            return Err(TopologyError::ZeroDuration);
        }
        for kind in [DependencyKind::Inventory, DependencyKind::Image] {
            if !deps.iter().any(|d| d.kind() == kind) {
                return Err(TopologyError::MissingDependency(kind.name()));
            }
        }
        traffic.validate()?;
        let mut traffic = traffic;
        traffic.until = SimTime::ZERO.saturating_add(duration);
        Ok(Topology {
            nodes,
            node,
            lb,
            throttle,
            db,
            deps,
            traffic,
            duration,
            gateway_hop: SimDuration::from_us(250),
            gateway_max_in_flight: 1_000_000,
            max_events: 1 << 36,
            node_overrides: Vec::new(),
            cleanup: None,
            idempotency: IdemConfig::default(),
            cache: None,
            workflows: None,
            reconcile: None,
            series: true,
            client: None,
            replay: None,
            faults: crate::faults::FaultPlan::default(),
            invariants: InvariantConfig::default(),
            gameday: None,
            bugs: crate::faults::PlantedBugs::default(),
        })
    }

    /// The one-way delay from the gateway to a node (default 250 µs).
    pub fn with_gateway_hop(mut self, hop: SimDuration) -> Topology {
        self.gateway_hop = hop;
        self
    }

    /// The most events one run may process (a safety bound, reported as the outcome).
    pub fn with_max_events(mut self, n: u64) -> Topology {
        self.max_events = n;
        self
    }

    /// Gives node `index` its own configuration (e.g. one node with a heap that needs full GCs).
    pub fn with_node_config(
        mut self,
        index: u32,
        config: NodeConfig,
    ) -> Result<Topology, TopologyError> {
        if index >= self.nodes {
            return Err(TopologyError::NoSuchNode {
                index,
                nodes: self.nodes,
            });
        }
        self.node_overrides.retain(|(i, _)| *i != index);
        self.node_overrides.push((index, config));
        Ok(self)
    }

    /// The ClientToken store of the database (TTL, capacity) and whether nodes use it atomically
    /// (`Mode::Atomic`, the default) or in the classic check-then-write way (`Mode::NonAtomic`).
    pub fn with_idempotency(mut self, cfg: IdemConfig) -> Topology {
        self.idempotency = cfg;
        self
    }

    /// Runs instance lifecycles through the workflow engine (needs block_storage, vpc and billing
    /// mocks besides inventory and image).
    pub fn with_workflows(mut self, setup: WorkflowSetup) -> Result<Topology, TopologyError> {
        for kind in [
            DependencyKind::BlockStorage,
            DependencyKind::Vpc,
            DependencyKind::Billing,
        ] {
            if !self.deps.iter().any(|d| d.kind() == kind) {
                return Err(TopologyError::MissingDependency(kind.name()));
            }
        }
        self.workflows = Some(setup);
        Ok(self)
    }

    /// Audits resources against the dependencies' records and releases orphans (needs workflows:
    /// their resource table is what the control plane believes).
    /// The reconciliation schedule, when reconciliation is on.
    pub fn reconciliation(&self) -> Option<&ReconConfig> {
        self.reconcile.as_ref()
    }

    pub fn with_reconciliation(mut self, cfg: ReconConfig) -> Result<Topology, TopologyError> {
        if self.workflows.is_none() {
            return Err(TopologyError::ReconciliationNeedsWorkflows);
        }
        self.reconcile = Some(cfg);
        Ok(self)
    }

    /// Puts an L1 on every node and a shared L2 in front of the database's by-id reads.
    pub fn with_cache(mut self, setup: CacheSetup) -> Topology {
        self.cache = Some(setup);
        self
    }

    /// The cache, when it is on.
    pub fn cache(&self) -> Option<&CacheSetup> {
        self.cache.as_ref()
    }

    /// Samples a time series of the run (on by default; see [`World::sample_bucket`]): one row per
    /// bucket of simulated time, at most 10,000. Sampling reads components between events and
    /// schedules nothing, so the run (events, trace hash) is the same either way.
    pub fn with_series(mut self, on: bool) -> Topology {
        self.series = on;
        self
    }

    /// Client behaviour: retries with backoff (same ClientToken), polling of created instances
    /// until Running, a closed loop instead of the open one; client-side statistics in
    /// [`RunResult::client`]. Only a configuration that needs responses changes the run (the
    /// gateway then echoes every response to the traffic).
    pub fn with_client(mut self, cfg: ClientConfig) -> Result<Topology, TopologyError> {
        cfg.validate()?;
        self.client = cfg.needs_responses().then_some(cfg);
        Ok(self)
    }

    /// Replays `trace` instead of generating arrivals: the traffic configuration then only gives
    /// the client's timeout (and `duration` the end: later records are not sent, counted in
    /// [`ReplayStats::after_end`]). Works with [`Topology::with_client`] (retries, polling; a
    /// closed loop is ignored under a replay). Statistics in [`RunResult::replay`].
    pub fn with_trace(
        mut self,
        trace: Trace,
        cfg: ReplayConfig,
    ) -> Result<Topology, TopologyError> {
        cfg.validate()?;
        self.replay = Some((std::sync::Arc::new(trace), cfg));
        Ok(self)
    }

    /// Runs the data-cleanup job against the database.
    /// The same topology with `duration` of traffic (for shrinking a reproduction).
    pub fn with_duration(mut self, duration: SimDuration) -> Result<Topology, TopologyError> {
        if duration.is_zero() {
            return Err(TopologyError::ZeroDuration);
        }
        self.duration = duration;
        self.traffic.until = SimTime::ZERO.saturating_add(duration);
        Ok(self)
    }

    /// The mean arrival rate of the traffic, requests per second (before its profile).
    pub fn rate(&self) -> f64 {
        self.traffic.inter_arrival.mean().map_or(0.0, |m| 1.0 / m)
    }

    /// The same topology with its open-loop arrivals at `rate` per second (exponential gaps).
    pub fn with_rate(mut self, rate: f64) -> Result<Topology, TopologyError> {
        self.traffic.inter_arrival =
            Dist::exponential(1.0 / rate).map_err(|e| TopologyError::Rate(e.to_string()))?;
        Ok(self)
    }

    /// The bounds of the invariant checks.
    pub fn invariants(&self) -> InvariantConfig {
        self.invariants
    }

    /// Bounds of the invariant checks (liveness bound, violations kept).
    pub fn with_invariants(mut self, cfg: InvariantConfig) -> Topology {
        self.invariants = cfg;
        self
    }

    pub fn with_cleanup(mut self, cfg: CleanupConfig) -> Topology {
        self.cleanup = Some(cfg);
        self
    }

    /// API nodes.
    pub fn nodes(&self) -> u32 {
        self.nodes
    }
    /// The nodes' configuration (but those given their own with `with_node_config`).
    pub fn node_config(&self) -> &NodeConfig {
        &self.node
    }
    /// The open-loop traffic.
    pub fn traffic(&self) -> &OpenLoopConfig {
        &self.traffic
    }
    /// The database.
    pub fn db(&self) -> &DbConfig {
        &self.db
    }
    /// The dependency mocks.
    pub fn dependencies(&self) -> &[DependencySpec] {
        &self.deps
    }
    /// Whether the ClientToken records live in the L2 (which then exists without a cache).
    fn idempotency_in_l2(&self) -> bool {
        self.idempotency.store() == StoreKind::L2Cache
    }
    pub fn duration(&self) -> SimDuration {
        self.duration
    }

    /// How much longer than the traffic the client may keep sending (retries after the last
    /// request, polls after the last creation): the last retry chain at most `max_attempts`
    /// timeouts and caps, the last polls `max_polls` timeouts and twice the mean interval.
    fn client_drain(&self) -> SimDuration {
        let Some(c) = &self.client else {
            return SimDuration::ZERO;
        };
        let timeout = self.traffic.timeout;
        let retry = c.retry.as_ref().map_or(SimDuration::ZERO, |r| {
            let cap = match r.backoff() {
                crate::traffic::Backoff::None => SimDuration::ZERO,
                crate::traffic::Backoff::Exponential { cap, .. } => cap,
            };
            timeout
                .saturating_add(cap)
                .saturating_mul(u64::from(r.max_attempts()))
        });
        let polls = c.polling.as_ref().map_or(SimDuration::ZERO, |p| {
            let interval = SimDuration::from_secs_f64(2.0 * p.interval.mean().unwrap_or(1.0));
            timeout
                .saturating_add(interval)
                .saturating_mul(u64::from(p.max_polls))
        });
        retry.saturating_add(polls).min(SimDuration::DAY)
    }

    /// The world, ready to run, and where its parts are.
    pub fn build(&self, seed: RootSeed) -> World {
        let drain = self
            .traffic
            .timeout
            .saturating_add(SimDuration::from_secs(60))
            .saturating_add(self.client_drain());
        let limits = Limits {
            max_events: self.max_events,
            max_time: self.duration.saturating_add(drain),
            max_pending: 1 << 26,
        };
        let mut sim: Sim<Msg, Part> = Sim::new(seed, limits);
        // Ids are issued in order of `add`: traffic 0, gateway 1, database 2, dependencies
        // 3.., then nodes. Components are created knowing the ids of those they talk to.
        let n_deps = self.deps.len();
        let traffic_id = ComponentId::new(0);
        let gateway_id = ComponentId::new(1);
        let db_id = ComponentId::new(2);
        let dep_id = |i: usize| ComponentId::new(3 + i);
        let node_id = |i: u32| ComponentId::new(3 + n_deps + i as usize);
        let find = |kind: DependencyKind| {
            dep_id(
                self.deps
                    .iter()
                    .position(|d| d.kind() == kind)
                    .expect("checked in Topology::new"),
            )
        };
        // The L2, when there is one, comes right after the nodes, then the workflow engine.
        let l2_id = ComponentId::new(3 + n_deps + self.nodes as usize);
        let has_l2 = self.cache.is_some() || self.idempotency_in_l2();
        let wf_id = ComponentId::new(3 + n_deps + self.nodes as usize + usize::from(has_l2));
        let dep_ids = DepIds {
            inventory: find(DependencyKind::Inventory),
            image: find(DependencyKind::Image),
            workflow: self.workflows.as_ref().map(|w| (wf_id, w.batch)),
        };

        let mut traffic = OpenLoop::new(self.traffic.clone(), seed.fork("traffic"), gateway_id)
            .with_faults(&self.faults);
        if let Some((trace, cfg)) = &self.replay {
            traffic = traffic.with_replay(trace, cfg, seed.fork("traffic.replay"));
        }
        if let Some(cfg) = &self.client {
            let mut cfg = cfg.clone();
            if self.replay.is_some() {
                cfg.closed_loop = None;
            }
            traffic = traffic.with_client(cfg);
        }
        let first = traffic.first_arrival();
        assert_eq!(
            sim.add("traffic", Part::Traffic(Box::new(traffic))),
            traffic_id
        );
        let api_metrics = ApiMetrics::register(sim.metrics_mut());
        let mut gateway = Gateway::new(
            self.throttle.clone(),
            self.lb,
            seed.fork("gateway.lb"),
            (0..self.nodes).map(node_id).collect(),
            self.gateway_hop,
            self.gateway_max_in_flight,
            api_metrics.clone(),
        );
        gateway.set_client(traffic_id);
        if self.client.is_some() {
            gateway.echo_all_responses();
        }
        assert_eq!(
            sim.add("gateway", Part::Gateway(Box::new(gateway))),
            gateway_id
        );
        assert_eq!(
            sim.add(
                "db",
                Part::Db(Box::new(
                    Db::new(self.db.clone(), seed.fork("db")).with_idempotency(self.idempotency)
                ))
            ),
            db_id
        );
        for (i, spec) in self.deps.iter().enumerate() {
            let name = format!("dep.{}", spec.name());
            let dep = Dependency::new(spec.clone(), seed.fork(&name));
            assert_eq!(sim.add(&name, Part::Dep(Box::new(dep))), dep_id(i));
        }
        for i in 0..self.nodes {
            let name = format!("node.{i}");
            let cfg = self
                .node_overrides
                .iter()
                .find(|(k, _)| *k == i)
                .map_or(&self.node, |(_, c)| c);
            let mut node = ApiNode::new(
                cfg.clone()
                    .with_idempotency_mode(self.idempotency.mode())
                    .with_idempotency_in_l2(
                        (self.idempotency.store() == StoreKind::L2Cache).then_some(l2_id),
                    ),
                seed.fork(&name),
                gateway_id,
                db_id,
                dep_ids,
                &name,
                sim.metrics_mut(),
            );
            if let Some(c) = &self.cache {
                node = node.with_cache(NodeCache {
                    l1: L1Cache::new(c.l1.clone(), seed.fork(&format!("{name}.l1"))),
                    l2: l2_id,
                    l2_ttl: c.l2_ttl,
                    l2_negative_ttl: c.l2_negative_ttl,
                    broadcaster: Broadcaster::new(
                        (0..self.nodes).map(node_id).collect(),
                        c.invalidation_delay.clone(),
                        seed.fork(&format!("{name}.invalidation")),
                    ),
                    writer_invalidates: !c.invalidation.is_binlog(),
                });
            }
            let id = sim.add(&name, Part::Node(Box::new(node)));
            assert_eq!(id, node_id(i));
            sim.schedule(SimTime::ZERO, id, Msg::Node(NodeTimer::GcCheck))
                .expect("time zero");
        }
        sim.schedule(SimTime::ZERO + first, traffic_id, Msg::TrafficTick)
            .expect("after time zero");
        // The L2 exists when the cache is on or it holds the ClientToken records (then with the
        // default L2 configuration if there is no cache).
        let idem_in_l2 = self.idempotency.store() == StoreKind::L2Cache;
        let l2 = (self.cache.is_some() || idem_in_l2).then(|| {
            let cfg = self.cache.as_ref().map_or_else(
                || L2Config::builder().build().expect("defaults"),
                |c| c.l2.clone(),
            );
            let mut l2 = L2Cache::new(cfg, seed.fork("l2"));
            if idem_in_l2 {
                l2 = l2.with_idempotency(self.idempotency);
            }
            let id = sim.add("l2", Part::L2(Box::new(l2)));
            assert_eq!(id, l2_id);
            id
        });
        // How a component that writes instance rows outside the nodes invalidates their cached
        // copies (the workflow engine, reconciliation), on its own random substream.
        let invalidation = |label: &str| {
            let writers = self.cache.as_ref().filter(|c| !c.invalidation.is_binlog());
            writers.map(|c| crate::workflow::EngineCache {
                l2: l2_id,
                broadcaster: Broadcaster::new(
                    (0..self.nodes).map(node_id).collect(),
                    c.invalidation_delay.clone(),
                    seed.fork(label),
                ),
                hop: self.gateway_hop,
            })
        };
        let workflow = self.workflows.as_ref().map(|w| {
            let deps = WfDeps {
                db: db_id,
                inventory: find(DependencyKind::Inventory),
                block_storage: find(DependencyKind::BlockStorage),
                vpc: find(DependencyKind::Vpc),
                billing: find(DependencyKind::Billing),
            };
            let mut engine = WorkflowEngine::new(w.engine.clone(), deps, seed.fork("workflow"))
                .with_bugs(self.bugs);
            if let Some(c) = invalidation("workflow.invalidation") {
                engine = engine.with_cache(c);
            }
            let id = sim.add("workflow", Part::Workflow(Box::new(engine)));
            assert_eq!(id, wf_id);
            id
        });
        let reconciler = self.reconcile.map(|cfg| {
            let targets = ReconTargets {
                db: db_id,
                shards: self.db.shards(),
                inventory: find(DependencyKind::Inventory),
                block_storage: find(DependencyKind::BlockStorage),
                vpc: find(DependencyKind::Vpc),
                billing: find(DependencyKind::Billing),
            };
            let mut rec = Reconciler::new(cfg, targets);
            if let Some(c) = invalidation("reconciler.invalidation") {
                rec = rec.with_cache(c);
            }
            sim.add("reconciler", Part::Reconciler(Box::new(rec)))
        });
        let cleanup = self.cleanup.as_ref().map(|cfg| {
            let job = Cleanup::new(cfg.clone(), db_id);
            let first = job.first_delay();
            let id = sim.add("cleanup", Part::Cleanup(Box::new(job)));
            sim.schedule(SimTime::ZERO + first, id, Msg::CleanupTick)
                .expect("after time zero");
            id
        });
        // With binlog invalidation, the invalidator (after every other component: the ids
        // above stay as they are) consumes the database's change feed.
        let invalidator = self.cache.as_ref().and_then(|c| {
            let Invalidation::Binlog(feed) = &c.invalidation else {
                return None;
            };
            let inv = Invalidator::new(
                feed.clone(),
                l2_id,
                self.gateway_hop,
                c.l2_ttl,
                Broadcaster::new(
                    (0..self.nodes).map(node_id).collect(),
                    c.invalidation_delay.clone(),
                    seed.fork("invalidator"),
                ),
            );
            let id = sim.add("invalidator", Part::Invalidator(Box::new(inv)));
            if let Part::Db(db) = sim.component_mut(db_id) {
                db.set_change_feed(id, feed.lag().clone(), seed.fork("db.binlog"));
                if let Some(every) = feed.heartbeat() {
                    db.set_feed_heartbeat(every, seed.fork("db.binlog.heartbeat"));
                }
            }
            if let Some(every) = feed.heartbeat() {
                sim.schedule(
                    SimTime::ZERO + every,
                    db_id,
                    Msg::DbTimer(DbTimer::heartbeat()),
                )
                .expect("after time zero");
            }
            Some(id)
        });
        let series = self.series.then(|| {
            if let Part::Gateway(g) = sim.component_mut(gateway_id) {
                g.enable_window();
            }
            for i in 0..self.nodes {
                if let Part::Node(n) = sim.component_mut(node_id(i)) {
                    n.enable_pool_window();
                }
            }
            // The run cannot outlast its time limit: at most 10,000 buckets of this width.
            TimeSeries::new(bucket_width(limits.max_time), self.cache.is_some())
        });
        for i in 0..self.nodes {
            if let Part::Node(n) = sim.component_mut(node_id(i)) {
                n.plant_bugs(self.bugs);
            }
        }
        if self.invariants.observe {
            for i in 0..self.nodes {
                if let Part::Node(n) = sim.component_mut(node_id(i)) {
                    n.observe();
                }
            }
        }
        World {
            sim,
            traffic: traffic_id,
            nodes: (0..self.nodes).map(node_id).collect(),
            db: db_id,
            gateway: gateway_id,
            deps: (0..n_deps).map(dep_id).collect(),
            cleanup,
            l2,
            workflow,
            reconciler,
            invalidator,
            api_metrics,
            audits_done: 0,
            observe_drains: 0,
            observed_scratch: Observed::default(),
            series,
            sampled_responses: ResponseWindow::default(),
            sampled_pool_waits: LatencyHistogram::new(),
            faults: (!self.faults.is_empty())
                .then(|| faults::FaultRuntime::new(self.faults.clone(), seed)),
            violations: Vec::new(),
            violations_total: 0,
            invariants: self.invariants,
            gameday: self
                .gameday
                .as_ref()
                .map(|(g, _)| crate::gameday::GameDay::new(g.clone())),
            recovery_slo: self.gameday.as_ref().map(|(_, s)| *s),
            l2_ttl: self
                .cache
                .as_ref()
                .map_or(SimDuration::from_secs(300), |c| c.l2_ttl),
            traffic_end: SimTime::ZERO.saturating_add(self.duration),
            template: NodeTemplate {
                deps: dep_ids,
                cache: self.cache.clone(),
                bugs: self.bugs,
            },
            ledger: crate::invariants::TokenLedger::default(),
            token_ttl: self.idempotency.ttl(),
            staleness_bound: self.cache.as_ref().map(|c| {
                c.l1.hard_ttl()
                    .saturating_add(self.invariants.staleness_slack)
            }),
        }
    }

    /// The last `keep` events at or before `until` of the run under `seed`, rendered (`#index
    /// t=… component/Kind`): what led to a violation found at `until`. Runs the world again up
    /// to there (a run is a pure function of its seed, so these are the run's own events).
    pub fn trail(&self, seed: RootSeed, until: SimTime, keep: usize) -> Vec<String> {
        let mut world = self.build(seed);
        world.sim.record_trail(keep, until);
        let _ = world.run_until(until);
        let records = world.sim.take_trail();
        records.iter().map(|r| world.sim.describe(r)).collect()
    }

    /// Builds and runs the world under `seed`.
    pub fn run(&self, seed: RootSeed) -> RunResult {
        let mut world = self.build(seed);
        let report = world.run();
        world.result(report, self.duration)
    }
}

/// A built world: the simulator and the ids of its parts.
pub struct World {
    pub sim: Sim<Msg, Part>,
    pub traffic: ComponentId,
    pub nodes: Vec<ComponentId>,
    pub db: ComponentId,
    pub gateway: ComponentId,
    pub deps: Vec<ComponentId>,
    pub cleanup: Option<ComponentId>,
    pub l2: Option<ComponentId>,
    pub workflow: Option<ComponentId>,
    pub reconciler: Option<ComponentId>,
    /// The binlog invalidator, when cache invalidation follows the change feed.
    pub invalidator: Option<ComponentId>,
    api_metrics: ApiMetrics,
    /// Reconciliation audits done so far (the next is at `(audits_done + 1) × period`).
    audits_done: u64,
    /// Observation drains done so far (the next is at `(observe_drains + 1) × OBSERVE_DRAIN`).
    observe_drains: u64,
    /// The buffers the nodes' observations are swapped into when judged (reused, see
    /// [`ApiNode::swap_observed`]).
    observed_scratch: Observed,
    /// The time series being sampled, when it is on.
    series: Option<TimeSeries>,
    /// The last bucket's responses and pool waits, filled by `take_sample`; kept between
    /// buckets so their histograms keep their memory.
    sampled_responses: ResponseWindow,
    sampled_pool_waits: LatencyHistogram,
    /// The fault plan and where the run is in it, when there are faults.
    faults: Option<faults::FaultRuntime>,
    /// Invariant violations seen during the run (the first `max_kept`), and how many in all.
    violations: Vec<Violation>,
    violations_total: u64,
    invariants: InvariantConfig,
    gameday: Option<crate::gameday::GameDay>,
    recovery_slo: Option<RecoverySlo>,
    /// The TTL of values nodes store in the L2 (runbook warming uses it).
    l2_ttl: SimDuration,
    /// When the traffic ends (game days judge recovery up to it).
    traffic_end: SimTime,
    /// What a node added mid-run is built from (besides node 0's configuration).
    template: NodeTemplate,
    /// The first instance set of every ClientToken seen within its TTL (the token invariants'
    /// oracle; older entries are dropped).
    ledger: crate::invariants::TokenLedger,
    /// ClientToken TTL (past it a token may create anew) and the cached-read staleness bound.
    token_ttl: SimDuration,
    staleness_bound: Option<SimDuration>,
}

/// What a node added mid-run (a runbook's `scale_out`) needs that the world does not keep
/// elsewhere: the dependencies it calls, the cache setup, the planted bugs.
#[derive(Clone, Debug)]
struct NodeTemplate {
    deps: DepIds,
    cache: Option<CacheSetup>,
    bugs: crate::faults::PlantedBugs,
}

/// Per-API results, as the client saw them.
#[derive(Clone, Debug)]
pub struct ApiResult {
    pub api: Api,
    /// Responses by status (only statuses that occurred), in status order.
    pub status: Vec<(Status, u64)>,
    pub requests: u64,
    /// Latency from the intended start to the response at the gateway, ns.
    pub latency: LatencyHistogram,
}

impl ApiResult {
    pub fn count(&self, s: Status) -> u64 {
        self.status
            .iter()
            .find(|(x, _)| *x == s)
            .map_or(0, |(_, n)| *n)
    }
    pub fn count_5xx(&self) -> u64 {
        self.count_where(Status::is_5xx)
    }
    /// Client errors: throttled, refused (`IncorrectInstanceStatus`, `NoStock`, …), not found.
    pub fn count_4xx(&self) -> u64 {
        self.count_where(Status::is_4xx)
    }
    fn count_where(&self, f: impl Fn(Status) -> bool) -> u64 {
        self.status
            .iter()
            .filter(|(s, _)| f(*s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Per-node results.
#[derive(Clone, Debug)]
pub struct NodeResult {
    /// Latency from the intended start to the node's answer, ns.
    pub latency: LatencyHistogram,
    pub gc: GcStats,
    /// Paused time / simulated time.
    pub gc_time_fraction: f64,
    /// What faults did to the node (crashes, injected pauses, leaks, clock skew).
    pub faults: crate::api::node::NodeFaultStats,
}

/// How often, at most, the world judges and empties what the nodes observed for the invariant
/// checkers (their buffers hold one second of cached reads and token answers).
pub const OBSERVE_DRAIN: SimDuration = SimDuration::from_secs(1);

/// What a run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub report: RunReport,
    /// Broken invariants (empty: none seen), in time order: the first `max_kept`.
    pub violations: Vec<Violation>,
    /// Every violation seen, kept or not.
    pub violations_total: u64,
    /// The game day's alerts, runbook and 1-5-10 timelines, when there was one.
    pub gameday: Option<GameDayResult>,
    /// Rows left in a transitional state that no workflow accepted: inserts whose caller never
    /// learned they committed (a crash or a failover in between), for reconciliation to clean.
    pub phantom_rows: u64,
    /// What the accounts some fault is scoped to got at the gateway (sorted by account), and
    /// what every other account got together; empty and `None` without scoped faults.
    pub scoped_accounts: Vec<(AccountId, AccountOutcomes)>,
    pub other_accounts: Option<AccountOutcomes>,
    pub apis: Vec<ApiResult>,
    pub nodes: Vec<NodeResult>,
    pub db: DbStats,
    /// Rows of every table (in `Table::ALL` order, summed over shards) at the run's end.
    pub table_rows_end: [u64; crate::db::Table::COUNT],
    pub deps: Vec<(String, DependencyStats)>,
    /// Counters of the run by name (sorted).
    pub counters: Vec<(String, u64)>,
    /// The cleanup job's statistics, when it ran.
    pub cleanup: Option<CleanupStats>,
    /// Every node's L1 statistics merged, and the L2's, when the cache is on.
    pub l1: Option<CacheStats>,
    pub l2: Option<L2Stats>,
    /// The binlog invalidator's statistics, when cache invalidation followed the change feed.
    pub feed: Option<FeedStats>,
    /// The workflow engine's statistics, when workflows ran.
    pub workflows: Option<WfStats>,
    /// Instances in a transitional state (Pending, Starting, Stopping, …) for longer than the
    /// engine's stuck threshold at the run's end, when workflows ran.
    pub stuck_instances: Option<u64>,
    /// Reconciliation's findings and repairs, when it ran.
    pub reconciliation: Option<ReconStats>,
    /// One row per bucket of simulated time, from time zero (warmup included) to the run's end,
    /// when sampling was on ([`Topology::with_series`]).
    pub series: Option<TimeSeries>,
    /// What the client saw (attempts, retries, end-to-end latency, polls), when client
    /// behaviour was on (`Topology::with_client`).
    pub client: Option<ClientStats>,
    /// What a trace replay sent, when the traffic was a replay (`Topology::with_trace`).
    pub replay: Option<ReplayStats>,
}

impl RunResult {
    pub fn trace_hash(&self) -> TraceHash {
        self.report.trace_hash
    }
    pub fn api(&self, api: Api) -> &ApiResult {
        &self.apis[api.index()]
    }
    pub fn requests(&self) -> u64 {
        self.apis.iter().map(|a| a.requests).sum()
    }
    pub fn responses_5xx(&self) -> u64 {
        self.apis.iter().map(ApiResult::count_5xx).sum()
    }
    pub fn rate_5xx(&self) -> f64 {
        let n = self.requests();
        if n == 0 {
            0.0
        } else {
            self.responses_5xx() as f64 / n as f64
        }
    }
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }
    /// A node counter (`node.<i>.<metric>`) summed over every node of the run.
    pub fn node_counter(&self, metric: &str) -> u64 {
        (0..self.nodes.len())
            .map(|i| self.counter(&format!("node.{i}.{metric}")))
            .sum()
    }
    /// Whether the run ended as designed (traffic over, then drained or stopped at the drain
    /// bound), not on a safety bound or a broken invariant.
    pub fn ended_normally(&self) -> bool {
        matches!(
            self.report.outcome,
            Outcome::Drained | Outcome::TimeLimit { .. } | Outcome::Stopped { .. }
        )
    }
}

impl World {
    /// API node `i`.
    pub fn node_mut(&mut self, i: usize) -> &mut ApiNode {
        match self.sim.component_mut(self.nodes[i]) {
            Part::Node(n) => n,
            _ => unreachable!("node ids name nodes"),
        }
    }
    /// Dependency `i` (in the topology's order).
    pub fn dep_mut(&mut self, i: usize) -> &mut Dependency {
        match self.sim.component_mut(self.deps[i]) {
            Part::Dep(d) => d,
            _ => unreachable!("dependency ids name dependencies"),
        }
    }
    pub fn db_mut(&mut self) -> &mut Db {
        match self.sim.component_mut(self.db) {
            Part::Db(d) => d,
            _ => unreachable!("the db id names the database"),
        }
    }
    pub fn gateway_mut(&mut self) -> &mut Gateway {
        match self.sim.component_mut(self.gateway) {
            Part::Gateway(g) => g,
            _ => unreachable!("the gateway id names the gateway"),
        }
    }
    pub fn traffic_mut(&mut self) -> &mut OpenLoop {
        match self.sim.component_mut(self.traffic) {
            Part::Traffic(t) => t,
            _ => unreachable!("the traffic id names the traffic"),
        }
    }
    /// The L2 cache. Panics if the world has none (fault targets are checked when the
    /// topology is built).
    pub fn l2_mut(&mut self) -> &mut L2Cache {
        let id = self.l2.expect("this world has an L2 cache");
        match self.sim.component_mut(id) {
            Part::L2(c) => c,
            _ => unreachable!("the l2 id names the L2"),
        }
    }
    /// The workflow engine. Panics if the world has none (checked when the topology is built).
    pub fn workflow_mut(&mut self) -> &mut WorkflowEngine {
        let id = self.workflow.expect("this world has a workflow engine");
        match self.sim.component_mut(id) {
            Part::Workflow(w) => w,
            _ => unreachable!("the workflow id names the engine"),
        }
    }

    /// Runs to the end, pausing at every reconciliation audit when there is one.
    pub fn run(&mut self) -> RunReport {
        loop {
            if let Some(report) = self.run_until(SimTime::MAX) {
                return report;
            }
        }
    }

    /// Runs every event due at or before `until`, pausing at each reconciliation audit and
    /// each time-series bucket end on the way; returns the report if the run ended first (the
    /// series then gets its last, shorter bucket). Drivers use it to show progress, end a
    /// warmup, or stop early.
    pub fn run_until(&mut self, until: SimTime) -> Option<RunReport> {
        let period = self.reconciler.map(|id| match self.sim.component(id) {
            Part::Reconciler(c) => c.config().period(),
            _ => unreachable!("the reconciler id names the reconciler"),
        });
        loop {
            self.check_observed();
            let audit_at = period
                .map(|p| SimTime::ZERO.saturating_add(p.saturating_mul(self.audits_done + 1)));
            let sample_at = self.series.as_ref().and_then(TimeSeries::next_instant);
            let fault_at = self.next_fault_at();
            let runbook_at = self.next_runbook_at();
            // The nodes' observations are judged at least every simulated second, so what they
            // keep stays bounded (a pause between events changes no event).
            let observe_at = self.invariants.observe.then(|| {
                SimTime::ZERO.saturating_add(OBSERVE_DRAIN.saturating_mul(self.observe_drains + 1))
            });
            let due = [audit_at, sample_at, fault_at, runbook_at, observe_at]
                .into_iter()
                .flatten()
                .filter(|&t| t <= until)
                .min();
            if let Some(report) = self.sim.run_until(due.unwrap_or(until)) {
                self.check_observed();
                self.close_series(&report);
                return Some(report);
            }
            if self.sim.take_pause() {
                // The reconciler's scan page has come back: compare it now, between events.
                self.compare_scan_page();
                continue;
            }
            // Nothing due before `until`: paused there.
            let at = due?;
            if audit_at == Some(at) {
                self.audit(at);
                self.audits_done += 1;
            }
            if observe_at == Some(at) {
                // Judged at the top of the loop.
                self.observe_drains += 1;
            }
            if fault_at == Some(at) {
                self.apply_faults(at);
            }
            if sample_at == Some(at) {
                self.sample_bucket(at);
            }
            if runbook_at == Some(at) {
                self.run_runbook(at);
            }
        }
    }

    /// Reads the world's cumulative totals at `now` and the queue depth, and moves the windows
    /// that the gateway (responses) and nodes (pool waits) filled since the last sample into
    /// `sampled_responses` and `sampled_pool_waits`.
    fn take_sample(&mut self, now: SimTime) -> (Totals, u64, Option<u64>) {
        match self.sim.component_mut(self.gateway) {
            Part::Gateway(g) => g.swap_window(&mut self.sampled_responses),
            _ => unreachable!("the gateway id names the gateway"),
        };
        let mut totals = Totals::default();
        let mut depth = 0u64;
        let pool_waits = &mut self.sampled_pool_waits;
        pool_waits.reset();
        for &id in &self.nodes {
            let Part::Node(n) = self.sim.component_mut(id) else {
                unreachable!("node ids name nodes")
            };
            depth += n.waiting() as u64;
            totals.gc_paused_ns += n.gc_paused_ns_through(now);
            n.drain_pool_waits_into(pool_waits);
            if let Some(l1) = n.l1_stats() {
                totals.l1_lookups += l1.lookups();
                totals.l1_hits += l1.hits();
            }
        }
        if let Part::Db(db) = self.sim.component(self.db) {
            totals.db_queries = db.stats().served();
        }
        if let Some(Part::L2(l2)) = self.l2.map(|id| self.sim.component(id)) {
            totals.l2_errors = l2.stats().errors();
        }
        let feed_lag = match self.invalidator.map(|id| self.sim.component_mut(id)) {
            Some(Part::Invalidator(i)) => i.take_lag_window(now),
            _ => None,
        };
        (totals, depth, feed_lag)
    }

    /// Closes the time-series bucket ending at `now` (between events; reads state and
    /// schedules nothing, so the run is the same with sampling on or off). `run_until` calls it
    /// at every multiple of the bucket width.
    pub fn sample_bucket(&mut self, now: SimTime) {
        if self.series.is_none() {
            return;
        }
        let (totals, depth, feed_lag) = self.take_sample(now);
        if let Some(s) = &mut self.series {
            s.sample(
                now,
                totals,
                depth,
                &self.sampled_responses,
                &self.sampled_pool_waits,
                feed_lag,
            );
        }
        self.gameday_on_row();
    }

    /// The last, shorter bucket up to the run's end.
    fn close_series(&mut self, report: &RunReport) {
        if self.series.as_ref().is_none_or(TimeSeries::is_closed) {
            return;
        }
        let end = report.end_time;
        let (totals, depth, feed_lag) = self.take_sample(end);
        if let Some(s) = &mut self.series {
            s.close(
                end,
                totals,
                depth,
                &self.sampled_responses,
                &self.sampled_pool_waits,
                feed_lag,
            );
        }
        self.gameday_on_row();
    }

    /// The time series sampled so far, when sampling is on.
    pub fn series(&self) -> Option<&TimeSeries> {
        self.series.as_ref()
    }

    /// One reconciliation audit at `now` (between events): the reconciler starts a scan of the
    /// database's instance rows at `now` (`World::run_until` calls it at every multiple of the
    /// period).
    pub fn audit(&mut self, now: SimTime) {
        let Some(rid) = self.reconciler else {
            return;
        };
        self.sim
            .schedule(now.max(self.sim.now()), rid, Msg::Recon(ReconTimer::Audit))
            .expect("not in the past");
    }

    /// Compares the reconciler's answered scan page (the rows as the database read them) with
    /// the dependencies' records now; after the scan's last page, hands over every record for
    /// the orphan pass. The reconciler starts the repairs at its next event.
    fn compare_scan_page(&mut self) {
        let Some(rid) = self.reconciler else {
            return;
        };
        let now = self.sim.now();
        let Part::Reconciler(rec) = self.sim.component_mut(rid) else {
            unreachable!("the reconciler id names the reconciler")
        };
        let Some((tag, last)) = rec.take_ready() else {
            return;
        };
        let targets = *rec.targets();
        let rows = match self.sim.component_mut(self.db) {
            Part::Db(db) => db.take_scan_page(rid, tag).unwrap_or_default(),
            _ => unreachable!("the db id names the db"),
        };
        let Part::Db(db) = self.sim.component(self.db) else {
            unreachable!("the db id names the db")
        };
        let dep = |id: ComponentId| match self.sim.component(id) {
            Part::Dep(d) => &**d,
            _ => unreachable!("dependency ids name dependencies"),
        };
        // The workflow table, as the reconciler reads it: which instances an open workflow holds.
        let engine = match self.workflow.map(|id| self.sim.component(id)) {
            Some(Part::Workflow(e)) => Some(&**e),
            _ => None,
        };
        let views: Vec<RowView> = rows
            .iter()
            .map(|row| {
                let mut records = [None; crate::db::InstanceResources::SLOTS];
                for (slot, kind) in crate::db::InstanceResources::KINDS.into_iter().enumerate() {
                    let (Some(id), Some(d)) = (row.resources.at(slot), targets.dep_of(kind)) else {
                        continue;
                    };
                    records[slot] = dep(d).record(id).copied().filter(|r| r.kind == kind);
                }
                RowView {
                    row: *row,
                    current: db.inspect_instance(row.account, row.id),
                    records,
                    held: engine.is_some_and(|e| e.holds(row.id)),
                }
            })
            .collect();
        let all = last.then(|| {
            self.deps
                .iter()
                .flat_map(|&d| dep(d).records().map(move |(id, r)| (d, id, *r)))
                .collect::<Vec<_>>()
        });
        // Before the orphan judgement: the records open workflows hold (the workflow table).
        let held: Vec<_> = match (last, engine) {
            (true, Some(e)) => e.held_resources().collect(),
            _ => Vec::new(),
        };
        let orphans = match self.sim.component_mut(rid) {
            Part::Reconciler(rec) => {
                rec.note_held(held);
                rec.compare_page(now, &views, all.as_deref());
                rec.take_orphan_releases()
            }
            _ => Vec::new(),
        };
        self.check_orphans_are_orphans(now, &orphans);
    }

    /// `repairs_spare_live`: every record the orphan pass is about to release is referenced by
    /// no live row on the primary now (reads every row, only after a pass that found orphans).
    fn check_orphans_are_orphans(
        &mut self,
        now: SimTime,
        orphans: &[(crate::deps::ResourceKind, crate::deps::ResourceId)],
    ) {
        if orphans.is_empty() {
            return;
        }
        let Part::Db(db) = self.sim.component(self.db) else {
            unreachable!("the db id names the db")
        };
        let mut live = std::collections::BTreeMap::new();
        for row in db.instance_rows() {
            if row.state != crate::api::types::InstanceState::Deleted {
                for r in row.resources.iter() {
                    live.insert(r, (row.account, row.id, row.state));
                }
            }
        }
        let found: Vec<Violation> = orphans
            .iter()
            .filter_map(|&(kind, id)| {
                let &(account, instance, state) = live.get(&(kind, id))?;
                Some(Violation {
                    invariant: Invariant::RepairsSpareLive,
                    at: now,
                    detail: format!(
                        "reconciliation judged {} #{} an orphan and releases it, but instance #{} of account {} ({}) references it on the primary (its scan page missed the row: a replica lagging past the grace?)",
                        kind.name(),
                        id.0,
                        instance.0,
                        account.0,
                        state.name()
                    ),
                })
            })
            .collect();
        for v in found {
            self.violation(v);
        }
    }

    fn cache_l1_stats(&self) -> Option<CacheStats> {
        self.l2?;
        let mut all = CacheStats::default();
        for &id in &self.nodes {
            if let Part::Node(n) = self.sim.component(id) {
                if let Some(s) = n.l1_stats() {
                    all.merge(s);
                }
            }
        }
        Some(all)
    }

    /// Collects the typed results of a finished run.
    pub fn result(&self, report: RunReport, duration: SimDuration) -> RunResult {
        let reg = self.sim.metrics();
        let apis = Api::ALL
            .iter()
            .map(|&api| {
                let i = api.index();
                let status: Vec<(Status, u64)> = (0..STATUSES)
                    .map(|k| (status_at(k), reg.get_counter(self.api_metrics.status[i][k])))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                ApiResult {
                    api,
                    requests: status.iter().map(|(_, n)| n).sum(),
                    status,
                    latency: reg.get_histogram(self.api_metrics.latency[i]).clone(),
                }
            })
            .collect();
        let span_ns = report.end_time.as_ns().max(duration.as_ns()).max(1);
        let nodes = self
            .nodes
            .iter()
            .map(|&id| {
                let Part::Node(n) = self.sim.component(id) else {
                    unreachable!("node ids name nodes")
                };
                let name = self.sim.name(id).to_string();
                let latency = reg
                    .histograms()
                    .into_iter()
                    .find(|(k, _)| *k == format!("{name}.latency_ns"))
                    .map(|(_, h)| h.clone())
                    .unwrap_or_default();
                let gc = n.heap().stats().clone();
                NodeResult {
                    faults: *n.fault_stats(),
                    latency,
                    gc_time_fraction: gc.total_paused_ns() as f64 / span_ns as f64,
                    gc,
                }
            })
            .collect();
        let Part::Db(db) = self.sim.component(self.db) else {
            unreachable!("the db id names the db")
        };
        let deps = self
            .deps
            .iter()
            .map(|&id| match self.sim.component(id) {
                Part::Dep(d) => (d.name().to_string(), d.stats().clone()),
                _ => unreachable!("dependency ids name dependencies"),
            })
            .collect();
        let Part::Traffic(traffic) = self.sim.component(self.traffic) else {
            unreachable!("the traffic id names the traffic")
        };
        let (violations, violations_total) = self.end_violations(&report);
        let end = report.end_time;
        let mut scoped: Vec<AccountId> = self
            .fault_plan()
            .map(|p| p.faults().iter().filter_map(|f| f.account()).collect())
            .unwrap_or_default();
        scoped.sort();
        scoped.dedup();
        let Part::Gateway(gw) = self.sim.component(self.gateway) else {
            unreachable!("the gateway id names the gateway")
        };
        let scoped_accounts = scoped
            .iter()
            .map(|&a| (a, gw.account_outcomes(a)))
            .collect();
        let other_accounts = (!scoped.is_empty()).then(|| gw.outcomes_except(&scoped));
        RunResult {
            violations,
            violations_total,
            scoped_accounts,
            other_accounts,
            gameday: self.gameday_result(),
            phantom_rows: self.phantom_rows(),
            client: traffic.client_stats().cloned(),
            replay: traffic.replay_stats().cloned(),
            report,
            apis,
            nodes,
            db: db.stats().clone(),
            table_rows_end: crate::db::Table::ALL.map(|t| db.table_rows(t)),
            deps,
            counters: reg
                .counters()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            l1: self.cache_l1_stats(),
            reconciliation: self.reconciler.map(|id| match self.sim.component(id) {
                Part::Reconciler(c) => c.stats().clone(),
                _ => unreachable!("the reconciler id names the reconciler"),
            }),
            workflows: self.workflow.map(|id| match self.sim.component(id) {
                Part::Workflow(e) => e.stats().clone(),
                _ => unreachable!("the workflow id names the engine"),
            }),
            stuck_instances: self.workflow.map(|id| match self.sim.component(id) {
                Part::Workflow(e) => e.stuck_count(end) as u64,
                _ => unreachable!("the workflow id names the engine"),
            }),
            l2: self.l2.map(|id| match self.sim.component(id) {
                Part::L2(c) => c.stats().clone(),
                _ => unreachable!("the l2 id names the L2"),
            }),
            feed: self.invalidator.map(|id| match self.sim.component(id) {
                Part::Invalidator(i) => i.stats().clone(),
                _ => unreachable!("the invalidator id names the invalidator"),
            }),
            cleanup: self.cleanup.map(|id| match self.sim.component(id) {
                Part::Cleanup(c) => c.stats().clone(),
                _ => unreachable!("the cleanup id names the cleanup job"),
            }),
            series: self.series.clone(),
        }
    }

    /// Judges what the nodes observed since the last call (at least every [`OBSERVE_DRAIN`] of
    /// simulated time): token answers against the ledger,
    /// cached reads against the database's rows.
    fn check_observed(&mut self) {
        let illegal = self.db_mut().take_illegal_moves();
        for m in illegal {
            self.violation(Violation {
                invariant: Invariant::Lifecycle,
                at: m.at,
                detail: format!(
                    "instance #{} of account {} moved {} -> {}",
                    m.id.0,
                    m.account.0,
                    m.from.name(),
                    m.to.name()
                ),
            });
        }
        let mut o = std::mem::take(&mut self.observed_scratch);
        for i in 0..self.nodes.len() {
            o.token_answers.clear();
            o.cache_reads.clear();
            if !self.node_mut(i).swap_observed(&mut o) {
                break;
            }
            for &a in &o.token_answers {
                if let Some(v) = self.ledger.observe(a, self.token_ttl) {
                    self.violation(v);
                }
            }
            let Some(bound) = self.staleness_bound else {
                continue;
            };
            for &(at, key, version) in &o.cache_reads {
                let Part::Db(db) = self.sim.component(self.db) else {
                    unreachable!("the db id names the db")
                };
                let Some(row) = db.inspect_instance(key.account, key.instance) else {
                    continue;
                };
                // The truth changed after the cached version and before the read: the read
                // was outdated for at least `at - row.updated_at`.
                if row.updated_at > version && row.updated_at <= at {
                    let outdated = at.saturating_since(row.updated_at);
                    if outdated > bound {
                        self.violation(Violation {
                            invariant: Invariant::CacheStaleness,
                            at,
                            detail: format!(
                                "node.{i} answered instance #{} of account {} from its cache with the version of {}, outdated by {} (the row changed to {} at {}); bound {}",
                                key.instance.0,
                                key.account.0,
                                version,
                                outdated,
                                row.state.name(),
                                row.updated_at,
                                bound
                            ),
                        });
                    }
                }
            }
        }
        self.observed_scratch = o;
    }

    /// Records a violation seen during the run.
    pub(crate) fn violation(&mut self, v: Violation) {
        self.violations_total += 1;
        if self.violations.len() < self.invariants.max_kept {
            self.violations.push(v);
        }
    }

    /// The violations seen during the run plus those of the end-of-run checks, in time order
    /// (the first `max_kept`), and how many there were in all.
    fn end_violations(&self, report: &RunReport) -> (Vec<Violation>, u64) {
        let mut out = self.violations.clone();
        let kept_during = out.len() as u64;
        let checkable = matches!(
            report.outcome,
            Outcome::Drained | Outcome::Stopped { .. } | Outcome::TimeLimit { .. }
        );
        // Without the workflow engine nothing moves a created instance on: liveness is about
        // workflows.
        if checkable && self.workflow.is_some() {
            out.extend(self.liveness_violation(report.end_time));
        }
        if checkable {
            out.extend(self.duplicate_resources());
            out.extend(self.unreconciled());
        }
        // Every request got exactly one answer: at the end of a drained run nothing is in
        // flight, and the gateway answered as many requests as it received.
        if let (Outcome::Drained, Part::Gateway(g)) =
            (&report.outcome, self.sim.component(self.gateway))
        {
            let (received, answered) = g.request_counts();
            if received != answered || g.in_flight() != 0 {
                out.push(Violation {
                    invariant: Invariant::OneResponse,
                    at: report.end_time,
                    detail: format!(
                        "the gateway received {received} requests and answered {answered} ({} still in flight)",
                        g.in_flight()
                    ),
                });
            }
        }
        out.sort_by_key(|v| (v.at, v.invariant));
        let total = self.violations_total + (out.len() as u64 - kept_during);
        out.truncate(self.invariants.max_kept);
        (out, total)
    }

    /// Liveness: accepted work (instances the workflow engine holds) still in a transitional
    /// state `liveness_bound` after the row's last update, at the end of a run that ended by
    /// itself. Rows no workflow ever accepted (an insert whose caller never learned it
    /// committed: a crash or a failover in between) are not judged here; they are counted as
    /// phantom rows (reconciliation's business).
    fn liveness_violation(&self, end: SimTime) -> Option<Violation> {
        let Part::Db(db) = self.sim.component(self.db) else {
            unreachable!("the db id names the db")
        };
        let Some(Part::Workflow(e)) = self.workflow.map(|id| self.sim.component(id)) else {
            return None;
        };
        let bound = self.invariants.liveness_bound;
        let mut stuck = e.transitional().filter_map(|(id, account, _, _)| {
            let row = db.inspect_instance(account, id)?;
            (row.state.is_transitional() && end.saturating_since(row.updated_at) >= bound)
                .then_some(row)
        });
        let first = stuck.next()?;
        let more = stuck.count();
        Some(Violation {
            invariant: Invariant::Liveness,
            at: end,
            detail: format!(
                "instance #{} of account {} still {} since {} ({} more stuck)",
                first.id.0,
                first.account.0,
                first.state.name(),
                first.updated_at,
                more
            ),
        })
    }

    /// Reconciliation converged: once a scan that started after the last fault has ended and
    /// its repairs are done, no record older than its judgement (start − grace) is unreferenced
    /// (an orphan), no live row written before then references a record its dependency
    /// lost (dangling) or is still in a transitional state (stuck). Judged only when such a
    /// scan exists.
    fn unreconciled(&self) -> Option<Violation> {
        let Some(Part::Reconciler(rec)) = self.reconciler.map(|id| self.sim.component(id)) else {
            return None;
        };
        let started = rec.last_scan_started()?;
        let faults_end = self.fault_plan().map_or(SimTime::ZERO, |p| p.last_end());
        if rec.scanning() || rec.repairs_outstanding() > 0 || started < faults_end {
            return None;
        }
        let cutoff = started.saturating_sub(rec.config().grace());
        let Part::Db(db) = self.sim.component(self.db) else {
            unreachable!("the db id names the db")
        };
        let mut referenced = std::collections::BTreeSet::new();
        for row in db.instance_rows() {
            referenced.extend(row.resources.iter());
        }
        if let Some(Part::Workflow(e)) = self.workflow.map(|id| self.sim.component(id)) {
            referenced.extend(e.held_resources());
        }
        let deps: Vec<&Dependency> = self
            .deps
            .iter()
            .map(|&id| match self.sim.component(id) {
                Part::Dep(d) => &**d,
                _ => unreachable!("dependency ids name dependencies"),
            })
            .collect();
        for d in &deps {
            for (id, r) in d.records() {
                if crate::reconcile::releasable(r.kind)
                    && r.created <= cutoff
                    && !referenced.contains(&(r.kind, id))
                {
                    return Some(Violation {
                        invariant: Invariant::Reconciled,
                        at: started,
                        detail: format!(
                            "{}: {:?} #{} (created at {}) is an orphan after the scan of {} converged",
                            d.name(),
                            r.kind,
                            id.0,
                            r.created,
                            started
                        ),
                    });
                }
            }
        }
        for row in db.instance_rows() {
            if row.state == crate::api::types::InstanceState::Deleted || row.last_write() > cutoff {
                continue;
            }
            let held = |id| match self.workflow.map(|w| self.sim.component(w)) {
                Some(Part::Workflow(e)) => e.holds(id),
                _ => false,
            };
            if row.state.is_transitional() && !held(row.id) {
                return Some(Violation {
                    invariant: Invariant::Reconciled,
                    at: started,
                    detail: format!(
                        "instance #{} of account {} is still {} since {}, after the scan of {} converged",
                        row.id.0,
                        row.account.0,
                        row.state.name(),
                        row.last_write(),
                        started
                    ),
                });
            }
            for (kind, id) in row.resources.iter() {
                let Some(dep) = rec.targets().dep_of(kind) else {
                    continue;
                };
                let Part::Dep(d) = self.sim.component(dep) else {
                    unreachable!("reconciliation targets name dependencies")
                };
                if d.record(id).is_none() {
                    return Some(Violation {
                        invariant: Invariant::Reconciled,
                        at: started,
                        detail: format!(
                            "instance #{} of account {} references {:?} #{} that {} does not hold, after the scan of {} converged",
                            row.id.0,
                            row.account.0,
                            kind,
                            id.0,
                            d.name(),
                            started
                        ),
                    });
                }
            }
        }
        None
    }

    /// One resource set per workflow step: live records of one logical operation (the calls'
    /// origin, the same on every retry) must all come from one execution (one creation
    /// instant). A retry or redelivery that executes again leaves a second, orphaned set.
    fn duplicate_resources(&self) -> Option<Violation> {
        for &id in &self.deps {
            let Part::Dep(d) = self.sim.component(id) else {
                unreachable!("dependency ids name dependencies")
            };
            // Looked up and filled in record order, never iterated: a fixed-hash map.
            let mut first: crate::kernel::FixMap<(u8, u64), (SimTime, u64)> =
                crate::kernel::FixMap::new();
            for (rid, r) in d.records() {
                if r.origin == 0 {
                    continue;
                }
                let k = (r.kind as u8, r.origin);
                match first.get(&k) {
                    Some(&(at, other)) if at != r.created => {
                        return Some(Violation {
                            invariant: Invariant::OneResourceSetPerStep,
                            at: r.created.max(at),
                            detail: format!(
                                "{}: {:?} #{} (created at {}) and #{} (created at {}) come from the same workflow step",
                                d.name(),
                                r.kind,
                                other,
                                at,
                                rid.0,
                                r.created
                            ),
                        });
                    }
                    Some(_) => {}
                    None => {
                        first.insert(k, (r.created, rid.0));
                    }
                }
            }
        }
        None
    }

    /// Rows left in a transitional state that no workflow accepted (phantom instances).
    pub fn phantom_rows(&self) -> u64 {
        let Part::Db(db) = self.sim.component(self.db) else {
            unreachable!("the db id names the db")
        };
        let Some(Part::Workflow(e)) = self.workflow.map(|id| self.sim.component(id)) else {
            return 0;
        };
        let held: std::collections::BTreeSet<crate::api::types::InstanceId> =
            e.transitional().map(|(id, ..)| id).collect();
        db.instance_rows()
            .filter(|r| r.state.is_transitional() && !held.contains(&r.id))
            .count() as u64
    }
}

/// The dependency mocks shipped in `mocks/`, compiled in, so an embedding program needs no
/// files. Sorted by file name, as `load_mocks_dir` reads them.
pub fn shipped_mocks() -> Vec<DependencySpec> {
    const FILES: [(&str, &str); 5] = [
        (
            "mocks/billing.toml",
            include_str!("../../mocks/billing.toml"),
        ),
        (
            "mocks/block_storage.toml",
            include_str!("../../mocks/block_storage.toml"),
        ),
        ("mocks/image.toml", include_str!("../../mocks/image.toml")),
        (
            "mocks/inventory.toml",
            include_str!("../../mocks/inventory.toml"),
        ),
        ("mocks/vpc.toml", include_str!("../../mocks/vpc.toml")),
    ];
    FILES
        .iter()
        .map(|(name, text)| {
            crate::deps::parse_mock(name, text)
                .unwrap_or_else(|e| panic!("shipped mock {name}: {e}"))
        })
        .collect()
}
