//! Tests of the workflow engine in a tiny world: the real database, the real dependencies (the
//! shipped mocks, with every injected error set to 0 unless a test turns one on), the engine,
//! and a client that inserts the instances and then runs a script of commands on them.

use super::*;
use crate::api::types::{InstanceId, InstanceState};
use crate::db::{Db, DbConfig, DbOp, DbQuery, DbReply, DbResult, DbTimer, QueryClass, Table};
use crate::deps::{
    DepCall, DepOp, DepReply, DepTimer, Dependency, FaultCode, Jitter, RecordState, ResourceKind,
    parse_mock,
};
use crate::kernel::{
    Component, Limits, Message, Outbox, Outcome, RootSeed, Sim, SimDuration, TraceHash,
};
use std::collections::VecDeque;

const INVENTORY: &str = include_str!("../../mocks/inventory.toml");
const BLOCK_STORAGE: &str = include_str!("../../mocks/block_storage.toml");
const VPC: &str = include_str!("../../mocks/vpc.toml");
const BILLING: &str = include_str!("../../mocks/billing.toml");

const CREATE: WorkflowKind = WorkflowKind::CreateInstances;
const ACCOUNT: AccountId = AccountId(7);
const HOP: SimDuration = SimDuration::from_us(250);

#[derive(Clone, Debug)]
enum M {
    Query(DbQuery),
    DbReply(DbReply),
    DbTimer(DbTimer),
    Call(DepCall),
    DepReply(DepReply),
    DepTimer(DepTimer),
    Cmd(WfCommand),
    Wf(WfTimer),
    Done(WfDone),
    Ack(WfAck),
    /// To the client: insert the instances, then run the script.
    Go,
    /// To the client: send the next command of the script.
    Next,
    /// To the engine: crash every busy worker.
    Crash,
    /// To the database: take shard 0's primary down or up.
    DbAvailable(bool),
    /// To a dependency: a chaos action.
    Hook(fn(&mut Dependency)),
    /// A cache invalidation (only from an engine given a cache: [`World::with_cache_sink`]).
    Cache(CacheMsg),
    /// A row change of the database's change feed (never sent here: no feed is set).
    Change,
}

/// What an engine with a cache sends after its state writes.
#[derive(Clone, Copy, Debug)]
enum CacheMsg {
    L2(crate::cache::L2Request),
    L1(crate::cache::L1Invalidation),
}

impl From<crate::cache::L2Request> for M {
    fn from(r: crate::cache::L2Request) -> M {
        M::Cache(CacheMsg::L2(r))
    }
}
impl From<crate::cache::L1Invalidation> for M {
    fn from(i: crate::cache::L1Invalidation) -> M {
        M::Cache(CacheMsg::L1(i))
    }
}

macro_rules! from {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for M {
            fn from(x: $t) -> M {
                M::$v(x)
            }
        }
    )*};
}
from!(DbQuery => Query, DbReply => DbReply, DbTimer => DbTimer, DepCall => Call,
    DepReply => DepReply, DepTimer => DepTimer, WfTimer => Wf, WfDone => Done, WfAck => Ack);
impl From<crate::cache::RowChange> for M {
    fn from(_: crate::cache::RowChange) -> M {
        M::Change
    }
}

impl Message for M {
    fn kind_code(&self) -> u32 {
        match self {
            M::Query(_) => 0,
            M::DbReply(_) => 1,
            M::DbTimer(_) => 2,
            M::Call(_) => 3,
            M::DepReply(_) => 4,
            M::DepTimer(_) => 5,
            M::Cmd(_) => 6,
            M::Wf(_) => 7,
            M::Done(_) => 8,
            M::Go => 9,
            M::Next => 10,
            M::Crash => 11,
            M::DbAvailable(_) => 12,
            M::Hook(_) => 13,
            M::Cache(_) => 14,
            M::Ack(_) => 15,
            M::Change => 16,
        }
    }
    fn kind_name(&self) -> &'static str {
        [
            "Query",
            "DbReply",
            "DbTimer",
            "Call",
            "DepReply",
            "DepTimer",
            "Cmd",
            "Wf",
            "Done",
            "Go",
            "Next",
            "Crash",
            "DbAvailable",
            "Hook",
            "Cache",
            "Ack",
            "Change",
        ][self.kind_code() as usize]
    }
}

/// One command of a client's script: kind, batch, options, min_count.
#[derive(Clone, Copy, Debug)]
struct Cmd(WorkflowKind, bool, WfOptions, u32);

fn cmd(kind: WorkflowKind, batch: bool) -> Cmd {
    Cmd(kind, batch, WfOptions::default(), 0)
}

/// Inserts `count` Pending instances, then sends its script's commands one after the other,
/// each `gap` after the previous one ended; keeps every completion notice.
struct Client {
    db: ComponentId,
    engine: ComponentId,
    count: u16,
    instance_type: InstanceType,
    script: VecDeque<Cmd>,
    gap: SimDuration,
    range: Option<InstanceIdRange>,
    done: Vec<(SimTime, WfDone)>,
    acks: Vec<(SimTime, WfAck)>,
}

enum Node {
    Db(Box<Db>),
    Dep {
        dep: Box<Dependency>,
        log: Vec<(SimTime, DepCall)>,
        /// On the first call of this op, send this message to this component.
        trigger: Option<(DepOp, ComponentId, M)>,
    },
    Engine {
        wf: Box<WorkflowEngine>,
        replies: Vec<(SimTime, DepReply)>,
    },
    Client(Client),
    /// Stands for the L2 and the API nodes of an engine with a cache: keeps what it receives.
    Sink(Vec<(SimTime, CacheMsg)>),
}

impl Component<M> for Node {
    fn on_event(&mut self, msg: M, out: &mut Outbox<'_, M>) {
        let now = out.now();
        match (self, msg) {
            (Node::Db(db), M::Query(q)) => db.on_query(q, out),
            (Node::Db(db), M::DbTimer(t)) => db.on_timer(t, out),
            (Node::Db(db), M::DbAvailable(up)) => db.set_available(0, up),
            (Node::Dep { dep, log, trigger }, M::Call(c)) => {
                log.push((now, c));
                if trigger.as_ref().is_some_and(|(op, _, _)| *op == c.op) {
                    let (_, to, m) = trigger.take().expect("checked");
                    out.send(to, SimDuration::ZERO, m);
                }
                dep.on_call(c, out);
            }
            (Node::Dep { dep, .. }, M::DepTimer(t)) => dep.on_timer(t, out),
            (Node::Dep { dep, .. }, M::Hook(f)) => f(dep),
            (Node::Engine { wf, .. }, M::Cmd(c)) => wf.on_command(c, out),
            (Node::Engine { wf, replies }, M::DepReply(r)) => {
                replies.push((now, r));
                wf.on_dep_reply(r, out);
            }
            (Node::Engine { wf, .. }, M::DbReply(r)) => wf.on_db_reply(r, out),
            (Node::Engine { wf, .. }, M::Wf(t)) => wf.on_timer(t, out),
            (Node::Engine { wf, .. }, M::Crash) => {
                for (w, _) in wf.busy_workers() {
                    wf.crash_worker(w, now);
                }
            }
            (Node::Client(c), M::Go) => {
                let q = DbQuery {
                    tag: 0,
                    reply_to: out.me(),
                    account: ACCOUNT,
                    read_replica: false,
                    op: DbOp::InsertInstances {
                        account: ACCOUNT,
                        count: c.count,
                        instance_type: c.instance_type,
                        state: InstanceState::Pending,
                    },
                };
                out.send(c.db, SimDuration::ZERO, M::Query(q));
            }
            (Node::Client(c), M::DbReply(r)) => match r.result {
                Ok(DbResult::Inserted(range)) => {
                    c.range = Some(range);
                    out.schedule(SimDuration::ZERO, M::Next);
                }
                other => out.violation(format!("insert failed: {other:?}")),
            },
            (Node::Client(c), M::Next) => {
                let (Some(Cmd(kind, batch, options, min)), Some(range)) =
                    (c.script.pop_front(), c.range)
                else {
                    return;
                };
                let command = WfCommand::new(kind, ACCOUNT, range, c.instance_type)
                    .with_batch(batch)
                    .with_options(options)
                    .with_min_count(min)
                    .with_reply(out.me(), c.done.len() as u64);
                out.send(c.engine, SimDuration::ZERO, M::Cmd(command));
            }
            (Node::Client(c), M::Done(d)) => {
                c.done.push((now, d));
                if !c.script.is_empty() {
                    out.schedule(c.gap, M::Next);
                }
            }
            (Node::Client(c), M::Ack(a)) => c.acks.push((now, a)),
            (Node::Sink(log), M::Cache(c)) => log.push((now, c)),
            (_, m) => out.violation(format!("misrouted {m:?}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum D {
    Inventory = 0,
    Block = 1,
    Vpc = 2,
    Billing = 3,
}

struct World {
    sim: Sim<M, Node>,
    db: ComponentId,
    deps: [ComponentId; 4],
    engine: ComponentId,
    client: ComponentId,
    /// The cache's stand-in, if the engine has a cache.
    sink: Option<ComponentId>,
}

fn ms(n: u64) -> SimDuration {
    SimDuration::from_ms(n)
}
fn secs(n: u64) -> SimDuration {
    SimDuration::from_secs(n)
}

fn db_config() -> DbConfig {
    DbConfig::builder().shards(1).replicas(0).build().unwrap()
}

impl World {
    fn new(cfg: EngineConfig, seed: u64, count: u16, script: &[Cmd]) -> World {
        World::with_inventory(cfg, seed, count, InstanceType(0), script, INVENTORY)
    }

    fn with_inventory(
        cfg: EngineConfig,
        seed: u64,
        count: u16,
        instance_type: InstanceType,
        script: &[Cmd],
        inventory: &str,
    ) -> World {
        World::build(cfg, seed, count, instance_type, script, inventory, false)
    }

    /// A world whose engine has a cache: its L2 and its one API node are a [`Node::Sink`]
    /// (component `sink`, added before the engine), which keeps every invalidation it gets.
    fn with_cache_sink(cfg: EngineConfig, seed: u64, count: u16, script: &[Cmd]) -> World {
        World::build(cfg, seed, count, InstanceType(0), script, INVENTORY, true)
    }

    fn build(
        cfg: EngineConfig,
        seed: u64,
        count: u16,
        instance_type: InstanceType,
        script: &[Cmd],
        inventory: &str,
        cache: bool,
    ) -> World {
        let seed = RootSeed::new(seed);
        let mut sim = Sim::new(seed, Limits::GENEROUS);
        let db = sim.add(
            "db",
            Node::Db(Box::new(Db::new(db_config(), seed.fork("db")))),
        );
        let mut deps = [db; 4];
        for (i, (name, text)) in [
            ("inventory", inventory),
            ("block_storage", BLOCK_STORAGE),
            ("vpc", VPC),
            ("billing", BILLING),
        ]
        .into_iter()
        .enumerate()
        {
            let spec = parse_mock(name, text).unwrap_or_else(|e| panic!("{e}"));
            let mut dep = Dependency::new(spec, seed.fork(&format!("deps.{name}")));
            for code in FaultCode::ALL {
                dep.set_error_override(code, Some(0.0));
            }
            deps[i] = sim.add(
                name,
                Node::Dep {
                    dep: Box::new(dep),
                    log: Vec::new(),
                    trigger: None,
                },
            );
        }
        let wf_deps = WfDeps {
            db,
            inventory: deps[0],
            block_storage: deps[1],
            vpc: deps[2],
            billing: deps[3],
        };
        let mut engine = WorkflowEngine::new(cfg, wf_deps, seed.fork("workflow"));
        let sink = cache.then(|| sim.add("sink", Node::Sink(Vec::new())));
        if let Some(sink) = sink {
            let broadcaster = crate::cache::Broadcaster::new(
                vec![sink],
                crate::kernel::Dist::constant(0.01).unwrap(),
                seed.fork("broadcast"),
            );
            engine = engine.with_cache(EngineCache {
                l2: sink,
                broadcaster,
                hop: HOP,
            });
        }
        let engine = sim.add(
            "engine",
            Node::Engine {
                wf: Box::new(engine),
                replies: Vec::new(),
            },
        );
        let client = sim.add(
            "client",
            Node::Client(Client {
                db,
                engine,
                count,
                instance_type,
                script: script.iter().copied().collect(),
                gap: secs(1),
                range: None,
                done: Vec::new(),
                acks: Vec::new(),
            }),
        );
        sim.schedule(SimTime::ZERO, client, M::Go).unwrap();
        World {
            sim,
            db,
            deps,
            engine,
            client,
            sink,
        }
    }

    fn run(&mut self) -> TraceHash {
        let report = self.sim.run();
        assert_eq!(report.outcome, Outcome::Drained, "{report:?}");
        report.trace_hash
    }

    fn set_gap(&mut self, gap: SimDuration) {
        match self.sim.component_mut(self.client) {
            Node::Client(c) => c.gap = gap,
            _ => unreachable!(),
        }
    }

    /// On the first call of `op` to dependency `d`, `msg` goes to `to` (at that instant).
    fn trigger(&mut self, d: D, op: DepOp, to: ComponentId, msg: M) {
        match self.sim.component_mut(self.deps[d as usize]) {
            Node::Dep { trigger, .. } => *trigger = Some((op, to, msg)),
            _ => unreachable!(),
        }
    }

    fn hook(&mut self, at: SimTime, d: D, f: fn(&mut Dependency)) {
        self.sim
            .schedule(at, self.deps[d as usize], M::Hook(f))
            .unwrap();
    }

    fn dep(&self, d: D) -> &Dependency {
        match self.sim.component(self.deps[d as usize]) {
            Node::Dep { dep, .. } => dep,
            _ => unreachable!(),
        }
    }
    fn dep_mut(&mut self, d: D) -> &mut Dependency {
        match self.sim.component_mut(self.deps[d as usize]) {
            Node::Dep { dep, .. } => dep,
            _ => unreachable!(),
        }
    }
    fn calls(&self, d: D) -> &[(SimTime, DepCall)] {
        match self.sim.component(self.deps[d as usize]) {
            Node::Dep { log, .. } => log,
            _ => unreachable!(),
        }
    }
    /// Calls of `op` (to whichever dependency serves it), in arrival order.
    fn calls_of(&self, op: DepOp) -> Vec<(SimTime, DepCall)> {
        let d = match op.kind() {
            crate::deps::DependencyKind::Inventory => D::Inventory,
            crate::deps::DependencyKind::BlockStorage => D::Block,
            crate::deps::DependencyKind::Vpc => D::Vpc,
            _ => D::Billing,
        };
        self.calls(d)
            .iter()
            .filter(|(_, c)| c.op == op)
            .copied()
            .collect()
    }
    /// Every dependency call, in time order.
    fn all_calls(&self) -> Vec<(SimTime, DepCall)> {
        let mut all: Vec<_> = [D::Inventory, D::Block, D::Vpc, D::Billing]
            .iter()
            .flat_map(|&d| self.calls(d).iter().copied())
            .collect();
        all.sort_by_key(|(t, _)| *t);
        all
    }
    fn db(&self) -> &Db {
        match self.sim.component(self.db) {
            Node::Db(db) => db,
            _ => unreachable!(),
        }
    }
    fn engine(&self) -> &WorkflowEngine {
        match self.sim.component(self.engine) {
            Node::Engine { wf, .. } => wf,
            _ => unreachable!(),
        }
    }
    fn replies(&self) -> &[(SimTime, DepReply)] {
        match self.sim.component(self.engine) {
            Node::Engine { replies, .. } => replies,
            _ => unreachable!(),
        }
    }
    fn client(&self) -> &Client {
        match self.sim.component(self.client) {
            Node::Client(c) => c,
            _ => unreachable!(),
        }
    }
    /// What the engine's cache stand-in received.
    fn invalidations(&self) -> &[(SimTime, CacheMsg)] {
        match self.sink.map(|id| self.sim.component(id)) {
            Some(Node::Sink(log)) => log,
            _ => &[],
        }
    }
    fn done(&self) -> Vec<WfDone> {
        self.client().done.iter().map(|(_, d)| *d).collect()
    }
    fn range(&self) -> InstanceIdRange {
        self.client().range.expect("instances inserted")
    }
    fn states(&self) -> Vec<InstanceState> {
        self.range()
            .iter()
            .map(|id| self.db().inspect_instance(ACCOUNT, id).expect("row").state)
            .collect()
    }
    fn received(&self, c: QueryClass) -> u64 {
        self.db().stats().class(c).received
    }
    fn appends(&self) -> u64 {
        self.received(QueryClass::WorkflowStepWrite)
    }
    fn records_live(&self) -> [usize; 4] {
        [D::Inventory, D::Block, D::Vpc, D::Billing].map(|d| self.dep(d).records_live())
    }
}

fn config() -> EngineConfigBuilder {
    EngineConfig::builder()
}

#[test]
fn create_ten_instances_ends_with_all_running_and_exact_records_and_writes() {
    let mut w = World::new(config().build().unwrap(), 1, 10, &[cmd(CREATE, true)]);
    w.run();
    let done = w.done();
    assert_eq!(done.len(), 1);
    let d = done[0];
    assert_eq!(d.outcome, WfOutcome::Completed);
    assert_eq!((d.succeeded, d.history_events), (10, 9));
    assert_eq!(w.states(), vec![InstanceState::Running; 10]);

    // One host, disk, ENI and billing subscription per instance; disks attached.
    assert_eq!(w.records_live(), [10, 10, 10, 10]);
    let kinds = |d: D| -> Vec<(ResourceKind, RecordState)> {
        w.dep(d).records().map(|(_, r)| (r.kind, r.state)).collect()
    };
    assert_eq!(
        kinds(D::Inventory),
        [(ResourceKind::Host, RecordState::Active); 10]
    );
    assert_eq!(
        kinds(D::Block),
        [(ResourceKind::Disk, RecordState::Attached); 10]
    );
    assert_eq!(
        kinds(D::Vpc),
        [(ResourceKind::Eni, RecordState::Active); 10]
    );
    assert_eq!(
        kinds(D::Billing),
        [(ResourceKind::BillingSubscription, RecordState::Active); 10]
    );
    // Batched: one call per dependency step.
    let ops = |d: D| -> Vec<DepOp> { w.calls(d).iter().map(|(_, c)| c.op).collect() };
    assert_eq!(ops(D::Inventory), [DepOp::AllocateHost]);
    assert_eq!(ops(D::Block), [DepOp::CreateDisk, DepOp::AttachDisk]);
    assert_eq!(ops(D::Vpc), [DepOp::CreateEni]);
    assert_eq!(ops(D::Billing), [DepOp::StartBilling]);
    assert!(w.calls(D::Inventory)[0].1.count == 10 && w.calls(D::Block)[1].1.count == 10);

    // 9 transitions (Started, 7 steps, Completed), each one transaction writing one workflow row
    // and one history event; 2 state steps, each one multi-row compare-and-set of the 10
    // instances.
    assert_eq!(w.appends(), 9);
    assert_eq!(w.db().table_rows(Table::Workflows), 9);
    assert_eq!(w.db().table_rows(Table::History), 9);
    assert_eq!(w.received(QueryClass::Update), 2);
    assert_eq!(w.received(QueryClass::Insert), 1);

    let e = w.engine();
    let s = e.stats();
    assert_eq!(
        (s.completed[CREATE.index()], s.failed[CREATE.index()]),
        (1, 0)
    );
    assert_eq!(
        (s.history_events, s.db_appends, s.db_updates, s.dep_calls),
        (9, 9, 2, 5)
    );
    assert_eq!((s.retries(), s.compensations, s.stale), (0, 0, 0));
    assert_eq!(s.e2e(CREATE).count(), 1);
    assert_eq!(s.tasks, 9, "one task per transition");
    assert_eq!(e.live(), 0);
    // The resource table knows what each instance holds.
    for id in w.range().iter() {
        let r = e.resources(id).expect("known");
        assert!(r.host().is_some() && r.disk().is_some() && r.eni().is_some());
        assert!(r.billing().is_some() && r.eip().is_none() && r.disk_attached);
    }
    assert!(
        e.stuck(SimTime::MAX).is_empty(),
        "nothing left transitional"
    );
}

#[test]
fn retries_follow_the_schedule_exactly_without_jitter() {
    let retry = StepRetry::new(5, ms(100), 2.0, ms(300), Jitter::None, &[]).unwrap();
    let cfg = config()
        .edit_step(CREATE, "create_disk", |s| s.retry = retry)
        .build()
        .unwrap();
    let mut w = World::new(cfg, 2, 10, &[cmd(CREATE, true)]);
    w.dep_mut(D::Block)
        .set_error_override(FaultCode::InternalError, Some(1.0));
    w.run();
    let d = w.done()[0];
    let code = ErrorCode::InternalError;
    assert_eq!(
        d.outcome,
        WfOutcome::Failed(FailReason::Step { step: 1, code })
    );
    // The step's counts name it and say what its last attempt failed with.
    let st = w.engine().stats().step(WorkflowKind::CreateInstances, 1);
    assert_eq!(st.name, "create_disk");
    assert_eq!((st.attempts, st.retries, st.failures), (5, 4, 1));
    assert_eq!(st.failure_codes.iter().collect::<Vec<_>>(), [(&code, &1)]);

    let calls = w.calls_of(DepOp::CreateDisk);
    assert_eq!(calls.len(), 5, "max_attempts");
    assert!(
        calls.iter().all(|(_, c)| c.token == calls[0].1.token),
        "every attempt carries the step's token"
    );
    // Each attempt leaves `backoff + hop` after the previous attempt's error reached the engine.
    let gaps: Vec<SimDuration> = calls
        .windows(2)
        .map(|pair| {
            let (_, prev) = pair[0];
            let (next_at, _) = pair[1];
            let (replied, _) = w
                .replies()
                .iter()
                .find(|(_, r)| r.tag == prev.tag)
                .copied()
                .expect("a reply");
            next_at.saturating_since(replied)
        })
        .collect();
    let want: Vec<SimDuration> = [100, 200, 300, 300]
        .iter()
        .map(|&b| ms(b).saturating_add(HOP))
        .collect();
    assert_eq!(gaps, want);

    let s = w.engine().stats();
    let st = s.step(CREATE, 1);
    assert_eq!((st.attempts, st.retries, st.failures), (5, 4, 1));
    assert_eq!(s.step(CREATE, 0).compensations, 1);
    // The host was released; the instances were moved to Deleted.
    assert_eq!(w.records_live(), [0, 0, 0, 0]);
    assert_eq!(w.states(), vec![InstanceState::Deleted; 10]);
    // Started, StepCompleted, Failing, Compensated, Closed.
    assert_eq!(d.history_events, 5);
    assert_eq!(w.appends(), 5);
    assert_eq!(s.failures_of(FailReason::Deadline), 0);
    assert_eq!(s.failures.get("step"), Some(&1));
}

#[test]
fn a_failure_at_create_eni_compensates_disk_then_host_and_leaves_nothing() {
    let mut w = World::new(config().build().unwrap(), 3, 10, &[cmd(CREATE, true)]);
    w.dep_mut(D::Vpc)
        .set_error_override(FaultCode::InternalError, Some(1.0));
    w.run();
    let d = w.done()[0];
    let code = ErrorCode::InternalError;
    assert_eq!(
        d.outcome,
        WfOutcome::Failed(FailReason::Step { step: 2, code })
    );
    let all = w.all_calls();
    let last_eni = all
        .iter()
        .rposition(|(_, c)| c.op == DepOp::CreateEni)
        .unwrap();
    let after: Vec<DepOp> = all[last_eni + 1..].iter().map(|(_, c)| c.op).collect();
    assert_eq!(after, [DepOp::DeleteDisk, DepOp::ReleaseHost], "in reverse");
    // The compensations name exactly what was created.
    let created = |op| w.calls_of(op).len();
    assert_eq!(
        (created(DepOp::AllocateHost), created(DepOp::CreateDisk)),
        (1, 1)
    );
    assert_eq!(created(DepOp::CreateEni), 3, "default policy: 3 attempts");
    assert_eq!(w.all_calls()[last_eni + 1].1.target.unwrap().count, 10);
    assert_eq!(w.records_live(), [0, 0, 0, 0]);
    assert_eq!(
        w.dep(D::Inventory).stock_remaining(InstanceType(0)),
        Some(5_000_000)
    );
    assert_eq!(w.states(), vec![InstanceState::Deleted; 10]);
    let s = w.engine().stats();
    assert_eq!((s.compensations, s.compensation_failures), (2, 0));
    assert_eq!(s.step(CREATE, 2).retries, 2);
    // Started, 2 steps, Failing, 2 compensations, Closed.
    assert_eq!(d.history_events, 7);
    assert_eq!(w.appends(), 7);
    assert_eq!(s.orphaned_resources, 0);
    assert!(w.engine().resources(w.range().first).is_none());
}

#[test]
fn a_crashed_workers_task_is_redelivered_after_its_lease_without_duplicates() {
    let lease = secs(5);
    let cfg = config().workers(2).lease(lease).build().unwrap();
    let mut w = World::new(cfg, 4, 10, &[cmd(CREATE, true)]);
    let engine = w.engine;
    w.trigger(D::Block, DepOp::CreateDisk, engine, M::Crash);
    w.run();
    assert_eq!(w.done()[0].outcome, WfOutcome::Completed);
    assert_eq!(w.states(), vec![InstanceState::Running; 10]);

    let disks = w.calls_of(DepOp::CreateDisk);
    assert_eq!(disks.len(), 2, "the lost call, then the redelivered one");
    assert_eq!(disks[0].1.token, disks[1].1.token);
    // Dispatched at d, the call arrives at d + hop and the crash happens then; the lease runs
    // out at d + lease and the redelivered task sends at once.
    assert_eq!(disks[1].0.saturating_since(disks[0].0), lease);

    // No duplicate resources: the dependency replayed the token.
    let block = w.dep(D::Block).stats();
    assert_eq!((block.replays, block.records_created), (1, 10));
    assert_eq!(w.records_live(), [10, 10, 10, 10]);
    let s = w.engine().stats();
    assert_eq!((s.crashes, s.tasks_lost, s.redeliveries), (1, 1, 1));
    assert_eq!(s.replays_seen, 1);
    assert_eq!(s.stale, 1, "the lost call's reply");
    assert_eq!(
        s.redelivery_delay.max_ns(),
        Some(lease.as_ns() - HOP.as_ns())
    );
    // The lost run never committed: still 9 transitions.
    assert_eq!(w.appends(), 9);
}

fn batch_run(batch: bool) -> World {
    let cfg = config().workers(8).build().unwrap();
    let mut w = World::new(cfg, 5, 100, &[cmd(CREATE, batch)]);
    w.run();
    w
}

/// With a pool of 8 workers, the one-by-one mode's 900 tasks queue for workers and the batch
/// finishes sooner (≈1.0 s vs ≈2.9 s for seed 5). With 64 or more workers they do not, and the
/// 100 sub-workflows run in parallel (≈0.5 s) while each batched call pays the mocks'
/// `batch_factor` (a 100-disk create costs ≈11 single ones): the batch gain in time is a gain
/// only where workers, dependency slots or the database are the bottleneck; the gain in calls
/// (1 vs 100 per step) and durable writes (9 vs 902 transactions) is unconditional.
#[test]
fn batch_calls_dependencies_once_per_step_and_finishes_sooner() {
    let batched = batch_run(true);
    let single = batch_run(false);
    for w in [&batched, &single] {
        let d = w.done()[0];
        assert_eq!((d.outcome, d.succeeded), (WfOutcome::Completed, 100));
        assert_eq!(w.states(), vec![InstanceState::Running; 100]);
        assert_eq!(w.records_live(), [100; 4]);
    }
    // State steps: one multi-row update per 64 instances (2 steps × 2 batches) vs one per child
    // and step.
    assert_eq!(batched.received(QueryClass::Update), 4);
    assert_eq!(single.received(QueryClass::Update), 200);
    for op in [
        DepOp::AllocateHost,
        DepOp::CreateDisk,
        DepOp::CreateEni,
        DepOp::AttachDisk,
        DepOp::StartBilling,
    ] {
        assert_eq!(batched.calls_of(op).len(), 1, "{op}");
        assert_eq!(single.calls_of(op).len(), 100, "{op}");
    }
    // 9 transitions vs a parent's 2 and 100 children's 9.
    assert_eq!(batched.appends(), 9);
    assert_eq!(single.appends(), 2 + 100 * 9);
    assert_eq!(single.engine().stats().children, 100);
    assert_eq!(
        single.engine().stats().child_e2e[CREATE.index()].count(),
        100
    );
    let e2e = |w: &World| w.engine().stats().e2e(CREATE).max_ns().unwrap();
    assert!(
        e2e(&batched) < e2e(&single),
        "batch {} ns vs one by one {} ns",
        e2e(&batched),
        e2e(&single)
    );
}

#[test]
fn the_history_cap_fails_the_workflow_before_it_could_be_passed() {
    let cfg = config().history_cap(8).build().unwrap();
    let mut w = World::new(cfg, 6, 10, &[cmd(CREATE, true)]);
    w.run();
    let d = w.done()[0];
    assert_eq!(d.outcome, WfOutcome::Failed(FailReason::HistoryLimit));
    // Started, 2 steps; the third would leave no room for its undo: Failing, 2 undos, Closed.
    assert_eq!(d.history_events, 7);
    let ops: Vec<DepOp> = w.all_calls().iter().map(|(_, c)| c.op).collect();
    assert_eq!(
        ops,
        [
            DepOp::AllocateHost,
            DepOp::CreateDisk,
            DepOp::DeleteDisk,
            DepOp::ReleaseHost
        ]
    );
    assert_eq!(w.records_live(), [0, 0, 0, 0]);
    assert_eq!(w.engine().stats().history_limited, 1);
    assert_eq!(w.states(), vec![InstanceState::Deleted; 10]);
}

#[test]
fn no_history_ever_passes_its_cap() {
    for cap in 3..=16 {
        let cfg = config().history_cap(cap).build().unwrap();
        let mut w = World::new(cfg, 6, 3, &[cmd(CREATE, true)]);
        w.run();
        let d = w.done()[0];
        assert!(d.history_events <= cap, "cap {cap}: {d:?}");
        // The standard create needs room for 14 on its worst path.
        assert_eq!(d.outcome == WfOutcome::Completed, cap >= 14, "cap {cap}");
        assert_eq!(w.records_live(), if cap >= 14 { [3; 4] } else { [0; 4] });
    }
}

fn chaos_run(seed: u64) -> (TraceHash, String, Vec<WfDone>, WfStats) {
    let cfg = config().workers(4).lease(secs(2)).build().unwrap();
    let script = [
        cmd(CREATE, false),
        cmd(WorkflowKind::Stop, true),
        cmd(WorkflowKind::Start, false),
        cmd(WorkflowKind::Reboot, true),
        Cmd(
            WorkflowKind::Delete,
            true,
            WfOptions {
                force: true,
                ..WfOptions::default()
            },
            0,
        ),
    ];
    let mut w = World::new(cfg, seed, 12, &script);
    for d in [D::Inventory, D::Block, D::Vpc, D::Billing] {
        w.dep_mut(d)
            .set_error_override(FaultCode::InternalError, Some(0.3));
        w.dep_mut(d)
            .set_error_override(FaultCode::Timeout, Some(0.05));
    }
    let engine = w.engine;
    w.trigger(D::Vpc, DepOp::CreateEni, engine, M::Crash);
    let hash = w.run();
    let s = w.engine().stats();
    let summary = format!(
        "{:?} {:?} {} {} {} {} {:?} {:?}",
        s.completed,
        s.failed,
        s.retries(),
        s.redeliveries,
        s.compensations,
        s.history_events,
        w.records_live(),
        w.states()
    );
    (hash, summary, w.done(), s.clone())
}

#[test]
fn same_inputs_give_the_same_trace() {
    let a = chaos_run(11);
    let b = chaos_run(11);
    assert_eq!((a.0, &a.1, &a.2), (b.0, &b.1, &b.2));
    assert_eq!(a.2.len(), 5, "every command ended");
    // The run exercised what it is meant to: retries, lost tasks, failures and compensations.
    let s = &a.3;
    assert!(s.retries() > 0 && s.redeliveries > 0, "{}", a.1);
    assert!(
        s.compensations > 0 && s.failed.iter().sum::<u64>() > 0,
        "{}",
        a.1
    );
    let c = chaos_run(12);
    assert_ne!(a.0, c.0, "another seed, another run");
}

#[test]
fn lifecycle_stop_start_reboot_delete_releases_everything() {
    let script = [
        cmd(CREATE, true),
        cmd(WorkflowKind::Stop, true),
        cmd(WorkflowKind::Start, false),
        cmd(WorkflowKind::Reboot, true),
        cmd(WorkflowKind::Stop, false),
        cmd(WorkflowKind::Delete, true),
    ];
    let mut w = World::new(config().build().unwrap(), 8, 3, &script);
    w.run();
    let done = w.done();
    assert_eq!(done.len(), 6);
    assert!(
        done.iter().all(|d| d.outcome == WfOutcome::Completed),
        "{done:?}"
    );
    assert_eq!(w.states(), vec![InstanceState::Deleted; 3]);
    assert_eq!(w.records_live(), [0, 0, 0, 0]);
    let n = |op| w.calls_of(op).iter().map(|(_, c)| c.count).sum::<u32>();
    // Billing starts with the create and the start, stops with each stop.
    assert_eq!((n(DepOp::StartBilling), n(DepOp::StopBilling)), (6, 6));
    // Attached at create, start and reboot; detached at stop, reboot and stop.
    assert_eq!((n(DepOp::AttachDisk), n(DepOp::DetachDisk)), (9, 9));
    assert_eq!(
        n(DepOp::DeleteDisk) + n(DepOp::DeleteEni) + n(DepOp::ReleaseHost),
        9
    );
    let s = w.engine().stats();
    assert_eq!(s.orphaned_resources, 0);
    assert!(w.engine().resources(w.range().first).is_none());
    assert_eq!(s.children, 6, "two commands one by one");
}

#[test]
fn delete_keeps_disks_and_eips_when_asked() {
    let public = WfOptions {
        public_ip: true,
        ..WfOptions::default()
    };
    let keep = WfOptions {
        keep_disks: true,
        keep_eips: true,
        ..WfOptions::default()
    };
    let script = [
        Cmd(CREATE, true, public, 0),
        cmd(WorkflowKind::Stop, true),
        Cmd(WorkflowKind::Delete, true, keep, 0),
    ];
    let mut w = World::new(config().build().unwrap(), 9, 4, &script);
    w.run();
    assert!(w.done().iter().all(|d| d.outcome == WfOutcome::Completed));
    assert_eq!(w.states(), vec![InstanceState::Deleted; 4]);
    // Hosts, ENIs and billing gone; 4 detached disks and 4 EIPs kept.
    assert_eq!(w.records_live(), [0, 4, 4, 0]);
    assert!(
        w.dep(D::Block)
            .records()
            .all(|(_, r)| r.state == RecordState::Active)
    );
    assert_eq!(w.calls_of(DepOp::AllocateEip).len(), 1);
    assert!(w.calls_of(DepOp::ReleaseEip).is_empty());
    assert_eq!(w.engine().stats().kept_resources, 8);
    assert_eq!(w.engine().stats().orphaned_resources, 0);
}

#[test]
fn the_deadline_waits_for_the_attempt_in_flight_then_compensates_it() {
    let cfg = config()
        .deadlines(secs(20))
        .edit_step(CREATE, "create_eni", |s| s.timeout = secs(60))
        .build()
        .unwrap();
    let mut w = World::new(cfg, 10, 5, &[cmd(CREATE, true)]);
    w.dep_mut(D::Vpc).set_extra_latency(1.0, secs(30));
    w.run();
    let d = w.done()[0];
    assert_eq!(d.outcome, WfOutcome::Failed(FailReason::Deadline));
    let (end, _) = w.client().done[0];
    assert!(end >= SimTime::ZERO + secs(30), "the ENIs were waited for");
    // The ENIs the slow call made are deleted with the rest.
    assert_eq!(w.calls_of(DepOp::CreateEni).len(), 1);
    assert_eq!(w.calls_of(DepOp::DeleteEni).len(), 1);
    assert_eq!(w.records_live(), [0, 0, 0, 0]);
    let s = w.engine().stats();
    assert_eq!((s.deadline_exceeded, s.compensations), (1, 3));
    assert_eq!(s.failures_of(FailReason::Deadline), 1);
    assert_eq!(w.states(), vec![InstanceState::Deleted; 5]);
}

#[test]
fn a_partial_host_grant_goes_on_with_what_was_granted() {
    let inventory = INVENTORY.replace("3 = 2000", "3 = 7");
    let mut w = World::with_inventory(
        config().build().unwrap(),
        11,
        10,
        InstanceType(3),
        &[Cmd(CREATE, true, WfOptions::default(), 5)],
        &inventory,
    );
    w.run();
    let d = w.done()[0];
    assert_eq!((d.outcome, d.succeeded), (WfOutcome::Completed, 7));
    let mut want = vec![InstanceState::Running; 7];
    want.extend([InstanceState::Deleted; 3]);
    assert_eq!(w.states(), want);
    assert_eq!(w.records_live(), [7, 7, 7, 7]);
    assert_eq!(w.calls_of(DepOp::AllocateHost)[0].1.min_count, 5);
}

#[test]
fn a_failed_stop_rolls_its_instances_back_to_running() {
    // Found by the chaos swarm: a Stop whose step keeps failing used to leave its instances in
    // Stopping forever (no failed state). They now go back to Running, and nothing is stuck.
    let script = [cmd(CREATE, true), cmd(WorkflowKind::Stop, true)];
    let mut w = World::new(config().build().unwrap(), 12, 2, &script);
    w.set_gap(secs(30));
    w.hook(SimTime::ZERO + secs(10), D::Block, |d| {
        d.set_error_override(FaultCode::InternalError, Some(1.0))
    });
    w.run();
    let done = w.done();
    assert_eq!(done[0].outcome, WfOutcome::Completed);
    let code = ErrorCode::InternalError;
    assert_eq!(
        done[1].outcome,
        WfOutcome::Failed(FailReason::Step { step: 2, code })
    );
    assert_eq!(w.states(), vec![InstanceState::Running; 2]);
    let e = w.engine();
    let later = w.sim.now() + e.config().stuck_threshold();
    assert!(e.stuck(later).is_empty());
    assert_eq!(e.stuck_count(later), 0);
    // Billing was stopped before the failure (no compensation for it: the reconciler's
    // "running without billing" repairs it); the disks stay attached.
    assert_eq!(w.records_live(), [2, 2, 2, 0]);
    assert!(e.resources(w.range().first).unwrap().disk_attached);
}

#[test]
fn a_database_outage_fails_the_step_and_still_releases_resources() {
    let mut w = World::new(config().build().unwrap(), 13, 4, &[cmd(CREATE, true)]);
    let db = w.db;
    w.trigger(D::Vpc, DepOp::CreateEni, db, M::DbAvailable(false));
    w.run();
    let d = w.done()[0];
    assert_eq!(d.outcome, WfOutcome::Failed(FailReason::Persistence));
    assert_eq!(w.records_live(), [0, 0, 0, 0], "compensated all the same");
    let s = w.engine().stats();
    // StepCompleted, Failing, 3 compensations, Closed: none could be written.
    assert_eq!(s.persist_failures, 6);
    assert_eq!(d.history_events, 3);
    // The state writes failed too: the instances stay Pending, and will show up as stuck.
    assert_eq!(w.states(), vec![InstanceState::Pending; 4]);
    assert_eq!(w.engine().stuck_count(SimTime::MAX), 4);
}

#[test]
fn admission_is_bounded() {
    let cfg = config().queue_limit(5).build().unwrap();
    let mut w = World::new(cfg, 14, 3, &[]);
    let (engine, client) = (w.engine, w.client);
    let range = |first| InstanceIdRange {
        first: InstanceId(first),
        count: 3,
    };
    for (i, n) in [(0u64, 3u32), (1, 3), (2, 0)] {
        let c = WfCommand::new(
            CREATE,
            ACCOUNT,
            InstanceIdRange {
                count: n,
                ..range(1 + 3 * i)
            },
            InstanceType(0),
        )
        .with_batch(false)
        .with_reply(client, i)
        .with_ack(client, i);
        w.sim.schedule(SimTime::ZERO, engine, M::Cmd(c)).unwrap();
    }
    w.run();
    // Each command is acknowledged at admission, one hop later, admitted or refused with its
    // code (before any workflow has ended).
    let Node::Client(c) = w.sim.component(client) else {
        unreachable!()
    };
    let acks: Vec<(SimTime, u64, Result<WorkflowId, ErrorCode>)> =
        c.acks.iter().map(|(t, a)| (*t, a.tag, a.result)).collect();
    let hop = SimTime::ZERO.saturating_add(HOP);
    assert_eq!(
        acks,
        vec![
            (hop, 0, Ok(WorkflowId(1))),
            (hop, 1, Err(ErrorCode::ServiceUnavailable)),
            (hop, 2, Err(ErrorCode::InvalidParameter)),
        ]
    );
    let done = w.done();
    let outcome = |tag| done.iter().find(|d| d.tag == tag).unwrap().outcome;
    // The first needs 4 live slots of 5; the second 4 more; the third has no instances.
    assert_eq!(
        outcome(1),
        WfOutcome::Rejected(ErrorCode::ServiceUnavailable)
    );
    assert_eq!(outcome(2), WfOutcome::Rejected(ErrorCode::InvalidParameter));
    assert_eq!(outcome(0), WfOutcome::Completed);
    assert_eq!(w.engine().stats().rejected, 2);
    assert_eq!(w.engine().stats().rejected_by_kind[CREATE.index()], 2);
    assert!(w.engine().stats().max_queue <= 5);
}

#[test]
fn tokens_name_the_step_not_the_attempt() {
    use super::engine::token;
    let (salt, id) = (99, WorkflowId(42));
    let t = token(salt, id, 3, 0, false);
    assert_eq!(t, token(salt, id, 3, 0, false));
    let others = [
        token(salt, WorkflowId(43), 3, 0, false),
        token(salt, id, 4, 0, false),
        token(salt, id, 3, 1, false),
        token(salt, id, 3, 0, true),
        token(salt + 1, id, 3, 0, false),
    ];
    assert!(others.iter().all(|&o| o != t && o != 0));
}

#[test]
fn retry_policy_validates_and_backs_off() {
    use StepRetryError::*;
    let p = |a, i, c, m| StepRetry::new(a, ms(i), c, ms(m), Jitter::None, &[]);
    assert_eq!(p(0, 1, 2.0, 2), Err(Attempts(0)));
    assert_eq!(p(101, 1, 2.0, 2), Err(Attempts(101)));
    assert_eq!(p(3, 0, 2.0, 2), Err(ZeroInitial));
    assert!(p(1, 0, 2.0, 2).is_ok(), "no retries: no interval needed");
    assert_eq!(p(3, 1, 0.5, 2), Err(Coefficient(0.5)));
    assert!(matches!(p(3, 1, f64::NAN, 2), Err(Coefficient(_))));
    assert!(matches!(p(3, 5, 2.0, 2), Err(MaxBelowInitial { .. })));
    assert!(matches!(p(3, 5, 2.0, 7_200_000), Err(MaxTooLong(_))));
    let dup = [ErrorCode::Throttling, ErrorCode::Throttling];
    assert_eq!(
        StepRetry::new(3, ms(1), 2.0, ms(2), Jitter::Full, &dup),
        Err(Duplicate("Throttling"))
    );

    let q = p(10, 100, 1.5, 1000).unwrap();
    let got: Vec<u64> = (0..8).map(|k| q.ceiling(k).as_ns() / 1_000_000).collect();
    assert_eq!(got, [100, 150, 225, 337, 506, 759, 1000, 1000]);
    assert_eq!(q.ceiling(u32::MAX), ms(1000));

    let d = StepRetry::default();
    assert!(d.should_retry(0, ErrorCode::InternalError));
    assert!(d.should_retry(1, ErrorCode::DeadlineExceeded), "timeouts");
    assert!(!d.should_retry(2, ErrorCode::InternalError), "3 attempts");
    for c in [
        ErrorCode::InvalidParameter,
        ErrorCode::NoStock,
        ErrorCode::QuotaExceed,
        ErrorCode::IncorrectInstanceStatus,
    ] {
        assert!(!d.should_retry(0, c), "{c:?}");
    }
    let no_timeouts = StepRetry::new(
        3,
        ms(1),
        2.0,
        ms(2),
        Jitter::Full,
        &[ErrorCode::DeadlineExceeded],
    )
    .unwrap();
    assert!(!no_timeouts.should_retry(0, ErrorCode::DeadlineExceeded));
    let mut rng = RootSeed::new(1).fork("jitter");
    let full = StepRetry::default();
    for k in 0..10 {
        assert!(full.backoff(k, &mut rng) <= full.ceiling(k));
    }
}

#[test]
fn config_validation_says_what_to_change() {
    use EngineConfigError::*;
    assert_eq!(config().workers(0).build(), Err(Zero { field: "workers" }));
    assert_eq!(
        config().lease(SimDuration::ZERO).build(),
        Err(ZeroDuration { field: "lease" })
    );
    assert_eq!(config().history_cap(2).build(), Err(HistoryCap(2)));
    assert_eq!(config().max_batch(0).build(), Err(MaxBatch(0)));
    let e = config()
        .edit_step(CREATE, "create_disk", |s| {
            s.action = Action::Create(DepOp::DeleteDisk)
        })
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "step `create_disk`: a delete, attach or detach operation must be an `Action::Act`"
        ),
        "{e}"
    );
    let e = config()
        .edit_step(CREATE, "create_disk", |s| {
            s.compensation = Some(Action::Act(DepOp::ReleaseHost))
        })
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("same kind of record"), "{e}");
    let e = config()
        .edit_step(CREATE, "mark_running", |s| {
            s.action = Action::SetState(InstanceState::Pending)
        })
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("Pending"), "{e}");
    let e = config()
        .edit(CREATE, |d| {
            d.steps
                .push(StepDef::new("image", Action::Act(DepOp::GetImage), None))
        })
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains("host, disk, ENI, EIP and billing"),
        "{e}"
    );
    assert!(config().build().is_ok());
}

#[test]
fn a_live_worker_renews_its_lease_and_is_not_redelivered() {
    let cfg = config()
        .lease(secs(5))
        .edit_step(CREATE, "create_eni", |s| s.timeout = secs(60))
        .build()
        .unwrap();
    let mut w = World::new(cfg, 15, 3, &[cmd(CREATE, true)]);
    w.dep_mut(D::Vpc).set_extra_latency(1.0, secs(12));
    w.run();
    assert_eq!(w.done()[0].outcome, WfOutcome::Completed);
    let s = w.engine().stats();
    // The create_eni task ran 12 s and more: renewed at 5 s and 10 s.
    assert_eq!((s.lease_renewals, s.redeliveries, s.tasks_lost), (2, 0, 0));
    assert_eq!(w.calls_of(DepOp::CreateEni).len(), 1);
}

#[test]
fn steps_over_more_instances_than_a_call_takes_are_split() {
    let cfg = config().max_batch(4).build().unwrap();
    let mut w = World::new(cfg, 16, 10, &[cmd(CREATE, true)]);
    w.run();
    assert_eq!(w.done()[0].outcome, WfOutcome::Completed);
    assert_eq!(w.states(), vec![InstanceState::Running; 10]);
    for op in [DepOp::AllocateHost, DepOp::CreateDisk, DepOp::AttachDisk] {
        let counts: Vec<u32> = w.calls_of(op).iter().map(|(_, c)| c.count).collect();
        assert_eq!(counts, [4, 4, 2], "{op}");
    }
    // Parts of one step carry distinct tokens.
    let tokens: Vec<u64> = w
        .calls_of(DepOp::CreateDisk)
        .iter()
        .map(|(_, c)| c.token)
        .collect();
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2]);
    assert_eq!(w.records_live(), [10; 4]);
}

/// A creation refused at admission: its rows are moved from Pending to Deleted, and their
/// cached copies are invalidated as after any of the engine's state writes (one L2 delete of
/// the run, one broadcast to the nodes), so no cache keeps serving them as Pending.
#[test]
fn a_refused_creation_invalidates_the_cached_copies_of_its_rows() {
    let cfg = config().queue_limit(4).build().unwrap();
    let mut w = World::with_cache_sink(cfg, 15, 6, &[]);
    let (engine, client) = (w.engine, w.client);
    // Instances 1..=3 are admitted (4 live slots: a parent and 3 children), 4..=6 refused.
    for (i, first) in [(0u64, 1u64), (1, 4)] {
        let range = InstanceIdRange {
            first: InstanceId(first),
            count: 3,
        };
        let c = WfCommand::new(CREATE, ACCOUNT, range, InstanceType(0))
            .with_batch(false)
            .with_ack(client, i);
        // After the client's insert of the six rows.
        w.sim
            .schedule(SimTime::ZERO.saturating_add(ms(100)), engine, M::Cmd(c))
            .unwrap();
    }
    w.run();
    assert_eq!(w.engine().stats().rejected, 1);
    assert_eq!(w.engine().stats().refused_rows_failed, 3);
    let refused: Vec<InstanceState> = (4..=6)
        .map(|id| {
            w.db()
                .inspect_instance(ACCOUNT, InstanceId(id))
                .unwrap()
                .state
        })
        .collect();
    assert_eq!(refused, vec![InstanceState::Deleted; 3]);
    // The refused rows' invalidations: exactly one L2 delete of the run 4..=6 and one L1
    // broadcast of it (the engine's own workflows invalidate 1..=3 one instance at a time).
    let names_refused = |first: &crate::cache::CacheKey, count: u32| {
        first.account == ACCOUNT && first.instance == InstanceId(4) && count == 3
    };
    let l2 = w
        .invalidations()
        .iter()
        .filter(|(_, m)| match m {
            CacheMsg::L2(r) => match r.op {
                crate::cache::L2Op::DeleteRun { first, count, .. } => names_refused(&first, count),
                _ => false,
            },
            CacheMsg::L1(_) => false,
        })
        .count();
    let l1 = w
        .invalidations()
        .iter()
        .filter(|(_, m)| matches!(m, CacheMsg::L1(i) if names_refused(&i.key, i.count)))
        .count();
    assert_eq!((l2, l1), (1, 1), "{:?}", w.invalidations());
    // Nothing else names the refused instances.
    let touches_refused = |key: &crate::cache::CacheKey, count: u32| {
        let (a, b) = (key.instance.0, key.instance.0 + u64::from(count));
        a < 7 && b > 4
    };
    let all = w
        .invalidations()
        .iter()
        .filter(|(_, m)| match m {
            CacheMsg::L2(r) => match r.op {
                crate::cache::L2Op::DeleteRun { first, count, .. } => {
                    touches_refused(&first, count)
                }
                crate::cache::L2Op::Delete { key, .. } => touches_refused(&key, 1),
                _ => false,
            },
            CacheMsg::L1(i) => touches_refused(&i.key, i.count),
        })
        .count();
    assert_eq!(all, 2);
}
