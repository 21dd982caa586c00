//! An API server node: thread-per-request workers behind a bounded accept queue, CPU cores,
//! a JVM-like heap whose stop-the-world pauses freeze the node, a database connection pool, and
//! calls to dependencies with the caller's timeout and retry policy. Each API runs as a short
//! plan of steps (CPU, database queries, dependency calls) on the worker that took the request.
//!
//! # Workflows
//!
//! With the workflow engine, RunInstances and CreateInstance insert their rows Pending and hand
//! a CreateInstances command to the engine; Start/Stop/Reboot/DeleteInstance check the state
//! and hand over their workflow. The request then waits for the engine's admission
//! acknowledgement ([`WfAck`], one message back): admitted, it goes on (a ClientToken's record
//! completed with the instances, then OK); refused, it answers the engine's code (503
//! `ServiceUnavailable` at the engine's bound on live workflows), the engine fails a refused
//! creation's rows itself, and the token's reservation is abandoned (`ServiceUnavailable`) or
//! memoised (`InvalidParameter`) as after any failure before a mutation, never bound to those
//! rows. Nothing waits for the workflow itself. The wait is bounded by `db_query_timeout` on
//! the queries' local timers (next section); an acknowledgement that finds its request gone is
//! ignored ([`NodeFaultStats::stale_wf_acks`]). Counters: `wf_refused`, `wf_ack_timeouts`.
//!
//! # Faults
//!
//! The world's fault applier (`world::faults::nodes`) acts on a node in two ways: settings it
//! changes between events (the clock skew, [`ApiNode::set_clock_skew`]; a leak's live bytes on
//! the heap), and commands it schedules to the node at the fault's instant
//! ([`NodeTimer::Crash`], [`NodeTimer::Restart`], [`NodeTimer::InjectPause`],
//! [`NodeTimer::LeakConnections`]), handled like any message, with an [`Outbox`]:
//!
//! - **Crash**: the process dies. Every request it holds (accept queue and workers) is answered
//!   at once with 502 `BadGateway`: the gateway sees each connection reset (one hop later). Its
//!   L1, single-flight flights, DB connections and waiters, CPU bursts, timers and any running
//!   pause are gone; ClientToken reservations it held stay in progress at the store (until
//!   their TTL), as a real crash leaves them. While down, a request that reaches it is refused
//!   with 502 at once (connection refused) and every other message is dropped. Replies and
//!   timers of the old process that arrive later are ignored safely: its work records were
//!   removed from the slab, whose generational handles are the epoch (a new request never
//!   reuses an old handle), and a reply whose handle names no work waiting for it releases no
//!   connection, and a workflow acknowledgement whose handle names no work waiting for one is
//!   counted stale. The gateway marks the node down when its health check notices the crash
//!   (`Gateway::node_crashed`, after its detection delay); requests routed to the node before
//!   that fail fast with 502.
//! - **Restart**: a fresh process: a cold L1, a heap as at time zero ([`Heap::restart`], its
//!   statistics kept), every worker and core free; the world marks it up at the gateway.
//! - **InjectPause**: a stop-the-world pause of the given length through the GC pause path
//!   (bursts shift, messages wait, the `gc_pause_ns` histogram and the heap's pause statistics
//!   count it, as [`crate::gc::GcStats::injected`]).
//! - **LeakConnections**: the pool's leaked connections (see [`ConnectionPool::set_leaked`]).
//! - **Lost database messages** (a partition): every query must be answered within the node's
//!   `db_query_timeout` (5 s by default). Every query has the same timeout, so queries time out
//!   in the order they were sent, and one `NodeTimer::DbTimeouts` serves them all (as for L2
//!   calls, below; both are [`LocalTimers`]): it is armed for the oldest query still out, and
//!   for none when no query is out. A query unanswered at its
//!   timeout fails as on a database error (503 `ServiceUnavailable`, or the stale value for a
//!   cache leader that has one), counted in `db_timeouts` and `db_errors`, and the connection
//!   is released (closed and replaced). A reply that comes after finds no work in `Phase::Db`
//!   and is ignored ([`NodeFaultStats::stale_db_replies`]). In a healthy run the timer fires
//!   about once per `db_query_timeout` per node and finds every query answered (before, each
//!   query scheduled a timer of its own and its reply cancelled it: same results, one queue
//!   push and cancel per query more). During a pause the timer still fires on time and defers
//!   a `NodeTimer::QueryTimeout` for each query due, which the resume replays in its place
//!   among the deferred replies, exactly as a timer of the query's own would have been.
//! - **Lost workflow messages** (a node↔workflow partition): a command or its acknowledgement
//!   lost leaves its request waiting; its entry on the query timers (the same
//!   `db_query_timeout`, numbered like a query) ends it with 503 `ServiceUnavailable`
//!   (`DeadlineExceeded` past its deadline), counted in `wf_ack_timeouts`. The engine may have
//!   taken the command, so a creation's rows stay the request's (its token memoises them); a
//!   lost command's rows stay Pending for reconciliation.
//! - **Lost L2 messages**: every L2 call whose answer the node awaits (a cache leader's read,
//!   a ClientToken op when the L2 holds the records) must be answered within `l2_timeout`
//!   (200 ms by default). The calls time out in the order they were sent, so one
//!   `NodeTimer::L2Timeout` serves them all: it is armed for the oldest call still out (and
//!   left to come when the last call is answered: L2 calls go idle too often to cancel it each
//!   time) and, when it fires, fails every call past its timeout as on an L2 error (the read
//!   goes on to the database; the token op fails with 503), counted in `l2_timeouts`. A reply
//!   that comes after is ignored ([`NodeFaultStats::stale_l2_replies`]). In a healthy run the
//!   timer fires about once per `l2_timeout` per node and finds every call answered.
//! - **Clock skew**: the node reads its clock as `now + skew` where it compares times made
//!   elsewhere: requests' deadlines (the gateway's clock) when shedding or aborting, and L1
//!   expiry instants, which are absolute instants on the data tier's clock (stamped when a
//!   value is filled, as an `Expires` header would be). A node ahead finds entries expired
//!   early (fewer hits) and deadlines passed early; a node behind serves entries past their
//!   TTL and works on requests whose deadline passed. Event order does not change.
//!   [`NodeFaultStats`] counts the lookups whose answer the skew changed. ClientToken records
//!   take the node's time too: each `DbOp::Idem*` (or `L2Op::Idem`) step carries the node's
//!   skew, so a record it writes expires `ttl` after its clock and its check judges a record
//!   expired by its clock (see [`crate::idempotency::IdempotencyStore::check_by`]). A node
//!   ahead takes live records for expired (a retry within the TTL creates a second instance
//!   set, which `token_one_instance_set`, judged on true time, reports; the store counts
//!   `expired_early`); a node behind writes records that expire early in true time and still
//!   replays records past their TTL.

use super::types::{Api, ErrorCode, InstanceIdRange, InstanceState, Request, Response, Status};
use crate::cache::{
    Broadcaster, CacheKey, Cached, CachedInstance, Fill, L1Cache, L2Error, L2IdemOp, L2Op, L2Reply,
    L2Request, L2Result, Lookup,
};
use crate::db::{
    Acquire, ConnectionPool, DbError, DbOp, DbQuery, DbReply, DbResult, UpdateOutcome, WaiterTicket,
};
use crate::deps::{CallOutcome, DepCall, DepOp, DepReply, RetryPolicy};
use crate::gc::{Heap, HeapConfig, Pause, PauseKind};
use crate::idempotency::{
    Check as IdemCheck, IdemKey, Mode as IdemMode, Outcome as IdemOutcome, fingerprint,
    memoise_failure,
};
use crate::kernel::{
    ComponentId, Dist, Handle, LocalTimers, Outbox, SimDuration, SimRng, SimTime, Slab, Ticket,
    TimerId,
};
use crate::metrics::{CounterId, HistogramId, LatencyHistogram, Registry};
use crate::workflow::{WfAck, WfCommand, WfOptions, WorkflowKind};
use crate::world::Msg;
use std::collections::VecDeque;

/// Tag of calls no worker waits for: database writes sent on behalf of a finished request (their
/// replies still tell when the write arrived), and L2 deletes and sets (the L2 sends no reply).
const DETACHED: u64 = L2Request::<CacheKey, CachedInstance>::DETACHED;

/// The dependencies a node calls, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepIds {
    pub inventory: ComponentId,
    pub image: ComponentId,
    /// The workflow engine and whether RunInstances batches, when lifecycles run as workflows.
    pub workflow: Option<(ComponentId, bool)>,
}

/// A validated node configuration (see [`NodeConfigBuilder`]).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    workers: u32,
    cores: u32,
    accept_queue: u32,
    cpu: [Dist; Api::COUNT],
    alloc_bytes: [Dist; Api::COUNT],
    heap: HeapConfig,
    pool_size: u32,
    pool_wait_limit: u32,
    pool_acquire_timeout: SimDuration,
    db_hop: SimDuration,
    dep_hop: SimDuration,
    gateway_hop: SimDuration,
    dep_timeout: SimDuration,
    dep_retry: RetryPolicy,
    /// How long a query may go unanswered before the node gives up on it and its connection.
    db_query_timeout: SimDuration,
    /// How long an L2 call (a cache read, a ClientToken record op) may go unanswered.
    l2_timeout: SimDuration,
    page_size: u16,
    shed_expired: bool,
    idem_mode: IdemMode,
    /// The L2 that holds the ClientToken records, when they live there instead of the database.
    idem_l2: Option<ComponentId>,
}

/// Why a node configuration is not valid; each variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeConfigError {
    #[error("`{field}` must be at least 1")]
    Zero { field: &'static str },
    #[error("`{field}` must be longer than 0 (e.g. \"50ms\")")]
    ZeroDuration { field: &'static str },
    #[error("`page_size` must be 1..=100 (ECS's DescribeInstances maximum), got {0}")]
    PageSize(u16),
}

/// Builds a [`NodeConfig`]; every field starts at a documented *(assumed)* default.
#[derive(Clone, Debug)]
pub struct NodeConfigBuilder(NodeConfig);

impl NodeConfigBuilder {
    /// Defaults *(assumed)*: 200 workers, 8 cores, accept queue 1,000, Describe* 2 ms of CPU and
    /// mutating APIs 5 ms (lognormal, p99 = 4× p50), 256 KiB allocated per Describe and 2 MiB per
    /// mutating call, the given heap, a 50-connection pool with 200 waiters and a 200 ms acquire
    /// timeout, 0.25 ms network hops, dependency timeout 2 s with the default retry policy,
    /// a 5 s database query timeout (a JDBC socket timeout's usual order), 10 instances per
    /// page, and shedding of requests whose deadline passed in the queue.
    pub fn new(heap: HeapConfig) -> NodeConfigBuilder {
        let ms = |p50: f64| Dist::lognormal_p50_p99(p50 * 1e-3, 4.0 * p50 * 1e-3).expect("valid");
        let kib = |k: f64| Dist::lognormal_mean_cs2(k * 1024.0, 1.0).expect("valid");
        NodeConfigBuilder(NodeConfig {
            workers: 200,
            cores: 8,
            accept_queue: 1_000,
            cpu: Api::ALL.map(|a| if a.is_mutating() { ms(5.0) } else { ms(2.0) }),
            alloc_bytes: Api::ALL.map(|a| {
                if a.is_mutating() {
                    kib(2048.0)
                } else {
                    kib(256.0)
                }
            }),
            heap,
            pool_size: 50,
            pool_wait_limit: 200,
            pool_acquire_timeout: SimDuration::from_ms(200),
            db_hop: SimDuration::from_us(250),
            dep_hop: SimDuration::from_us(250),
            gateway_hop: SimDuration::from_us(250),
            dep_timeout: SimDuration::from_secs(2),
            dep_retry: RetryPolicy::default(),
            db_query_timeout: SimDuration::from_secs(5),
            l2_timeout: SimDuration::from_ms(200),
            page_size: 10,
            shed_expired: true,
            idem_mode: IdemMode::Atomic,
            idem_l2: None,
        })
    }
    pub fn workers(mut self, n: u32) -> Self {
        self.0.workers = n;
        self
    }
    pub fn cores(mut self, n: u32) -> Self {
        self.0.cores = n;
        self
    }
    pub fn accept_queue(mut self, n: u32) -> Self {
        self.0.accept_queue = n;
        self
    }
    /// CPU time of one call of `api` (seconds).
    pub fn cpu(mut self, api: Api, d: Dist) -> Self {
        self.0.cpu[api.index()] = d;
        self
    }
    /// CPU time of every API (seconds).
    pub fn cpu_all(mut self, d: Dist) -> Self {
        self.0.cpu = Api::ALL.map(|_| d.clone());
        self
    }
    /// Bytes allocated by one call of `api`.
    pub fn alloc_bytes(mut self, api: Api, d: Dist) -> Self {
        self.0.alloc_bytes[api.index()] = d;
        self
    }
    pub fn heap(mut self, heap: HeapConfig) -> Self {
        self.0.heap = heap;
        self
    }
    pub fn pool(mut self, size: u32, wait_limit: u32, acquire_timeout: SimDuration) -> Self {
        self.0.pool_size = size;
        self.0.pool_wait_limit = wait_limit;
        self.0.pool_acquire_timeout = acquire_timeout;
        self
    }
    /// One-way network delays to the database, the dependencies and the gateway.
    pub fn hops(mut self, db: SimDuration, dep: SimDuration, gateway: SimDuration) -> Self {
        self.0.db_hop = db;
        self.0.dep_hop = dep;
        self.0.gateway_hop = gateway;
        self
    }
    pub fn dependency_calls(mut self, timeout: SimDuration, retry: RetryPolicy) -> Self {
        self.0.dep_timeout = timeout;
        self.0.dep_retry = retry;
        self
    }
    /// How long a database query may go unanswered (its query or reply lost, e.g. to a
    /// partition, or a stalled database) before the node fails the request with 503
    /// `ServiceUnavailable` and closes the connection, returning it to the pool. A reply that
    /// comes after is ignored.
    pub fn db_query_timeout(mut self, d: SimDuration) -> Self {
        self.0.db_query_timeout = d;
        self
    }
    /// How long an L2 call may go unanswered (lost to a partition, a stalled cache) before the
    /// node gives up on it: a cache read goes on to the database as on an L2 error, a
    /// ClientToken record op held by the L2 fails as on an L2 error (503). A reply that comes
    /// after is ignored.
    pub fn l2_timeout(mut self, d: SimDuration) -> Self {
        self.0.l2_timeout = d;
        self
    }
    pub fn page_size(mut self, n: u16) -> Self {
        self.0.page_size = n;
        self
    }
    /// Whether a worker drops a request whose deadline passed while it waited in the queue.
    pub fn shed_expired(mut self, on: bool) -> Self {
        self.0.shed_expired = on;
        self
    }
    /// How the node uses ClientToken records: `Atomic` (checked and reserved in one step, the
    /// record written with the mutation) or `NonAtomic` (checked, then written separately after
    /// the dependency calls: the classic duplicate bug). Must match the database's store.
    pub fn idempotency(mut self, mode: IdemMode) -> Self {
        self.0.idem_mode = mode;
        self
    }
    pub fn build(self) -> Result<NodeConfig, NodeConfigError> {
        let c = self.0;
        for (field, v) in [
            ("workers", c.workers),
            ("cores", c.cores),
            ("accept_queue", c.accept_queue),
            ("pool_size", c.pool_size),
        ] {
            if v == 0 {
                return Err(NodeConfigError::Zero { field });
            }
        }
        if c.pool_acquire_timeout.is_zero() {
            return Err(NodeConfigError::ZeroDuration {
                field: "pool_acquire_timeout",
            });
        }
        if c.dep_timeout.is_zero() {
            return Err(NodeConfigError::ZeroDuration {
                field: "dep_timeout",
            });
        }
        if c.db_query_timeout.is_zero() {
            return Err(NodeConfigError::ZeroDuration {
                field: "db_query_timeout",
            });
        }
        if c.l2_timeout.is_zero() {
            return Err(NodeConfigError::ZeroDuration {
                field: "l2_timeout",
            });
        }
        if !(1..=100).contains(&c.page_size) {
            return Err(NodeConfigError::PageSize(c.page_size));
        }
        Ok(c)
    }
}

impl NodeConfig {
    /// The same configuration with another ClientToken mode (see
    /// [`NodeConfigBuilder::idempotency`]).
    pub fn with_idempotency_mode(mut self, mode: IdemMode) -> NodeConfig {
        self.idem_mode = mode;
        self
    }
    /// The same configuration with the ClientToken records held by the L2 `l2` (`None`: by the
    /// database). Set by the topology from its idempotency configuration.
    pub fn with_idempotency_in_l2(mut self, l2: Option<ComponentId>) -> NodeConfig {
        self.idem_l2 = l2;
        self
    }
    pub fn workers(&self) -> u32 {
        self.workers
    }
    pub fn accept_queue(&self) -> u32 {
        self.accept_queue
    }
    pub fn heap(&self) -> &HeapConfig {
        &self.heap
    }
    pub fn db_query_timeout(&self) -> SimDuration {
        self.db_query_timeout
    }
    pub fn l2_timeout(&self) -> SimDuration {
        self.l2_timeout
    }
    /// Whether a worker drops a request whose deadline passed while it waited in the queue.
    pub fn sheds_expired(&self) -> bool {
        self.shed_expired
    }
}

/// A node's own timers and deferred work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeTimer {
    /// A request's CPU burst ends.
    CpuDone(Handle),
    /// A request waited too long for a database connection.
    ConnTimeout(Handle),
    /// The query `call` of request `req` got no reply within the query timeout (deferred by a
    /// pause: see `ApiNode::on_db_timeouts`).
    QueryTimeout { req: Handle, call: u8 },
    /// The oldest database query still out may have waited its timeout (see
    /// `ApiNode::send_query`).
    DbTimeouts,
    /// The oldest L2 call still out may have waited its timeout (see `ApiNode::await_l2`).
    L2Timeout,
    /// A dependency call's attempt got no reply in time.
    DepTimeout { req: Handle, attempt: u8 },
    /// A dependency call's backoff ended: try again.
    DepRetry(Handle),
    /// A stop-the-world pause ends.
    Resume,
    /// Background allocation may have filled the young generation.
    GcCheck,
    /// Fault: the node crashes (see the module documentation).
    Crash,
    /// Fault: the crashed node restarts.
    Restart,
    /// Fault: a stop-the-world pause of this length starts now.
    InjectPause(SimDuration),
    /// Fault: leaked handles now hold this many of the pool's connections.
    LeakConnections(u32),
}

/// What faults did to a node, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeFaultStats {
    /// Crashes (each followed by a restart when its fault ends).
    pub crashes: u64,
    /// Restarts after a crash.
    pub restarts: u64,
    /// Requests on a worker when the node crashed (answered 502).
    pub lost_in_flight: u64,
    /// Requests in the accept queue when the node crashed (answered 502).
    pub lost_queued: u64,
    /// Requests that reached the node while it was down (refused: 502).
    pub refused_while_down: u64,
    /// Other messages that reached the node while it was down (replies, timers, invalidations
    /// of the dead process), dropped.
    pub dropped_while_down: u64,
    /// Database replies for work no longer waiting for them (a process that crashed, or a
    /// query that timed out), ignored.
    pub stale_db_replies: u64,
    /// L2 replies that came after their call timed out (ignored).
    pub stale_l2_replies: u64,
    /// State writes that failed `Unavailable` (a failover lost the reply, the query timed out,
    /// or the primary was down): the write may have been applied, so its cached copies were
    /// invalidated all the same.
    pub uncertain_write_invalidations: u64,
    /// Workflow admission acknowledgements for work no longer waiting for them (a process that
    /// crashed, or a submission that timed out), ignored.
    pub stale_wf_acks: u64,
    /// Injected stop-the-world pauses, and their total length (ns).
    pub injected_pauses: u64,
    pub injected_pause_ns: u64,
    /// Connections leaked handles hold now.
    pub leaked_connections: u32,
    /// The clock skew now (ns, negative: behind).
    pub clock_skew_ns: i64,
    /// L1 lookups the skewed clock found expired (miss, or stale) where the true clock found
    /// the entry fresh.
    pub l1_expired_early: u64,
    /// L1 lookups answered fresh by the skewed clock where the true clock found the entry stale
    /// or gone: values served past their TTL.
    pub l1_served_past_ttl: u64,
}

/// Where a request is in its plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a core.
    CpuQueued,
    /// On a core until `end`.
    Cpu { end: SimTime, timer: TimerId },
    /// Waiting for a database connection.
    ConnWait {
        ticket: WaiterTicket,
        timer: TimerId,
        op: DbOp,
        replica: bool,
        /// When the wait began.
        since: SimTime,
    },
    /// A query is out on a connection (`timed`: it has the query timeout, see
    /// `ApiNode::send_query`), or a ClientToken record call on the L2 (no connection, untimed:
    /// the L2 call's own timeout applies).
    Db { timed: bool },
    /// A workflow command is out at the engine: waiting for its admission's [`WfAck`] (with
    /// the query timeout, see `ApiNode::await_ack`).
    WfAck,
    /// A dependency call's attempt `attempt` is out.
    Dep { attempt: u8, timer: TimerId },
    /// Waiting out a retry backoff.
    Backoff { attempt: u8 },
}

/// One request on a worker.
#[derive(Clone, Copy, Debug)]
struct Work {
    req: Request,
    gw: Handle,
    /// Steps of the plan done so far.
    step: u8,
    phase: Phase,
    created: Option<InstanceIdRange>,
    state: Option<InstanceState>,
    /// Instances the inventory granted (RunInstances `MinAmount` semantics).
    granted: u16,
    /// The ClientToken key of a mutating call that carries one.
    idem: Option<IdemKey>,
    /// A reservation under `idem` is held: it must end completed or abandoned.
    reserved: bool,
    /// A by-id read through the cache: its key, once the cache has been consulted.
    cache: CacheUse,
    /// The request's workflow has been handed to the engine.
    wf_sent: bool,
    /// `created` came from this request's own insert (not a token replay).
    inserted: bool,
    /// An L2 call of this request is out, unanswered (see `ApiNode::await_l2`).
    l2_waiting: bool,
    /// The timeout of its L2 call out (cancelled by the reply).
    l2_timer: Ticket,
    /// The number of this request's latest database query or workflow submission (tells a
    /// deferred timeout of an earlier one apart).
    db_call: u8,
    /// The timeout of its database query or workflow submission out (cancelled by the reply
    /// or the acknowledgement).
    db_timer: Ticket,
}

/// Where a by-id read stands with the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CacheUse {
    /// Not a cached read, or the cache is off.
    None,
    /// Not looked up yet.
    Pending(CacheKey),
    /// This request fetches the key for every coalesced waiter (L2, then the database).
    Leader {
        key: CacheKey,
        stale: Option<CachedInstance>,
    },
    /// Parked behind a leader.
    Follower(CacheKey),
    /// Fetching alone (the waiter list was full) or after the cache answered: plain database read.
    Direct,
}

/// What the next step of a plan is.
enum Next {
    Cpu,
    /// Hand a workflow to the engine and wait for its admission (the API is asynchronous: the
    /// workflow itself is not waited for).
    Workflow(WfCommand),
    /// Nothing to do at this step for this request (e.g. no ClientToken).
    Skip,
    Db(DbOp, bool),
    Dep(DepOp),
    Done(Status),
}

/// Node metric ids.
#[derive(Clone, Debug)]
struct NodeMetrics {
    latency: HistogramId,
    queue_wait: HistogramId,
    rejected_queue_full: CounterId,
    shed_expired: CounterId,
    deadline_aborts: CounterId,
    pool_timeouts: CounterId,
    pool_rejected: CounterId,
    db_timeouts: CounterId,
    l2_timeouts: CounterId,
    db_errors: CounterId,
    dep_attempts: CounterId,
    dep_retries: CounterId,
    dep_timeouts: CounterId,
    wf_refused: CounterId,
    wf_ack_timeouts: CounterId,
    gc_pause: HistogramId,
}

impl NodeMetrics {
    fn register(reg: &mut Registry, name: &str) -> NodeMetrics {
        let h = |reg: &mut Registry, m: &str| reg.histogram(&format!("{name}.{m}"));
        let c = |reg: &mut Registry, m: &str| reg.counter(&format!("{name}.{m}"));
        NodeMetrics {
            latency: h(reg, "latency_ns"),
            queue_wait: h(reg, "queue_wait_ns"),
            rejected_queue_full: c(reg, "rejected_queue_full"),
            shed_expired: c(reg, "shed_expired"),
            deadline_aborts: c(reg, "deadline_aborts"),
            pool_timeouts: c(reg, "pool_timeouts"),
            pool_rejected: c(reg, "pool_rejected"),
            db_timeouts: c(reg, "db_timeouts"),
            l2_timeouts: c(reg, "l2_timeouts"),
            db_errors: c(reg, "db_errors"),
            dep_attempts: c(reg, "dep_attempts"),
            dep_retries: c(reg, "dep_retries"),
            dep_timeouts: c(reg, "dep_timeouts"),
            wf_refused: c(reg, "wf_refused"),
            wf_ack_timeouts: c(reg, "wf_ack_timeouts"),
            gc_pause: h(reg, "gc_pause_ns"),
        }
    }
}

/// An API server node.
pub struct ApiNode {
    cfg: NodeConfig,
    rng: SimRng,
    gateway: ComponentId,
    db: ComponentId,
    deps: DepIds,
    heap: Heap,
    /// When this node's process started: time zero, or when a runbook added it.
    started_at: SimTime,
    pool: ConnectionPool<Handle>,
    /// Accepted requests waiting for a worker: (gateway handle, request, arrival at the node).
    queue: VecDeque<(Handle, Request, SimTime)>,
    free_workers: u32,
    free_cores: u32,
    cpu_queue: VecDeque<Handle>,
    work: Slab<Work>,
    /// While `Some(t)`, the node is stopped until t: events are deferred.
    paused_until: Option<SimTime>,
    deferred: Vec<Msg>,
    gc_check: Option<TimerId>,
    metrics: NodeMetrics,
    cache: Option<NodeCache>,
    /// Stop-the-world time entered so far, ns (pauses run back to back, so the node is stopped
    /// until `paused_until`, and this includes the part of the current pause still ahead).
    stw_ns: u64,
    /// Connection-pool waits of the current time-series bucket, when the world samples one.
    pool_waits: Option<LatencyHistogram>,
    /// Crashed and not restarted yet.
    down: bool,
    /// The node's clock reads `now + skew_ns` (a fault).
    skew_ns: i64,
    fault_stats: NodeFaultStats,
    /// What the invariant checkers read, when the world observes (see [`ApiNode::observe`]).
    observed: Option<Observed>,
    /// When the database reply being handled reached the database.
    last_db_arrival: SimTime,
    /// Planted bugs (all off: the correct node).
    bugs: crate::faults::PlantedBugs,
    /// The timeouts of the L2 calls out (`NodeTimer::L2Timeout` is their wake-up).
    l2_timers: LocalTimers<Handle>,
    /// The timeouts of the database queries and workflow submissions out: the work and its
    /// call number (`NodeTimer::DbTimeouts` is their wake-up).
    db_timers: LocalTimers<(Handle, u8)>,
}

/// What a node saw that the invariant checkers judge (drained by the world between events).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Creations with a ClientToken answered Ok: the token and the instances answered.
    pub token_answers: Vec<crate::invariants::TokenAnswer>,
    /// Reads answered from a cached value: when, the key, and the value's version.
    pub cache_reads: Vec<(SimTime, CacheKey, SimTime)>,
}

/// A node's part of the multi-level cache: its L1, where the shared L2 is, and how its writes
/// invalidate the other nodes' L1s.
pub struct NodeCache {
    pub l1: L1Cache<CacheKey, CachedInstance, Handle>,
    pub l2: ComponentId,
    /// TTL of the entries this node stores in the L2.
    pub l2_ttl: SimDuration,
    /// TTL of "not found" entries stored in the L2.
    pub l2_negative_ttl: SimDuration,
    pub broadcaster: Broadcaster,
    /// Whether this node invalidates after its own writes (the L2 delete and the L1
    /// broadcast); `false` when the database's change feed does it
    /// ([`crate::cache::Invalidation::Binlog`]: the node then drops only its own L1 entry).
    pub writer_invalidates: bool,
}

/// The cache side of a node's write of `key`, applied at `version` or later (the database's
/// time): this node's L1 at once (read-your-writes); with writer invalidation also the L2
/// delete now (detached: cache-aside) and the other nodes' L1 invalidations after a delay. With
/// binlog invalidation the database's change feed does those.
fn invalidate_write(
    cache: &mut Option<NodeCache>,
    hop: SimDuration,
    key: CacheKey,
    version: SimTime,
    local: SimTime,
    out: &mut Outbox<'_, Msg>,
) {
    let Some(c) = cache else {
        return;
    };
    c.l1.invalidate(key);
    if !c.writer_invalidates {
        return;
    }
    let del = L2Request {
        tag: DETACHED,
        reply_to: out.me(),
        op: L2Op::Delete { key, version },
    };
    out.send(c.l2, hop, Msg::L2Request(del));
    let msg = crate::cache::L1Invalidation {
        key,
        written_at: local,
        count: 1,
    };
    let me = out.me();
    c.broadcaster.broadcast(Some(me), |node, delay| {
        out.send(node, delay, Msg::L1Invalidation(msg));
    });
}

impl ApiNode {
    /// `name` prefixes the node's metrics (e.g. `node.3`).
    pub fn new(
        cfg: NodeConfig,
        rng: SimRng,
        gateway: ComponentId,
        db: ComponentId,
        deps: DepIds,
        name: &str,
        registry: &mut Registry,
    ) -> ApiNode {
        let heap = Heap::new(cfg.heap);
        let pool = ConnectionPool::new(cfg.pool_size, cfg.pool_wait_limit);
        ApiNode {
            free_workers: cfg.workers,
            free_cores: cfg.cores,
            rng,
            gateway,
            db,
            deps,
            heap,
            started_at: SimTime::ZERO,
            pool,
            queue: VecDeque::new(),
            cpu_queue: VecDeque::new(),
            work: Slab::new(),
            paused_until: None,
            deferred: Vec::new(),
            gc_check: None,
            cache: None,
            stw_ns: 0,
            pool_waits: None,
            down: false,
            skew_ns: 0,
            fault_stats: NodeFaultStats::default(),
            observed: None,
            last_db_arrival: SimTime::ZERO,
            bugs: crate::faults::PlantedBugs::default(),
            l2_timers: LocalTimers::keeping_the_wake_up(),
            db_timers: LocalTimers::new(),
            metrics: NodeMetrics::register(registry, name),
            cfg,
        }
    }

    /// Plants bugs (see [`crate::faults::PlantedBugs`]): here, deletes without cache
    /// invalidation.
    pub fn plant_bugs(&mut self, bugs: crate::faults::PlantedBugs) {
        self.bugs = bugs;
    }

    /// Starts recording what the invariant checkers judge (token answers, cached reads).
    pub fn observe(&mut self) {
        self.observed = Some(Observed::default());
    }

    /// Swaps what was observed since the last call into `into` (which should be empty: its
    /// buffers become the node's, so their memory is reused drain after drain). False when the
    /// node does not observe.
    pub fn swap_observed(&mut self, into: &mut Observed) -> bool {
        match &mut self.observed {
            Some(o) => {
                std::mem::swap(o, into);
                true
            }
            None => false,
        }
    }

    fn observe_cache_read(&mut self, now: SimTime, key: CacheKey, v: &CachedInstance) {
        if let Some(o) = &mut self.observed {
            o.cache_reads.push((now, key, v.updated_at));
        }
    }

    /// The node's heap, for fault injection (leaks).
    pub fn heap_mut(&mut self) -> &mut Heap {
        &mut self.heap
    }
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    /// What faults did to this node.
    pub fn fault_stats(&self) -> &NodeFaultStats {
        &self.fault_stats
    }
    /// Whether the node is crashed (not restarted yet).
    pub fn is_down(&self) -> bool {
        self.down
    }
    /// Sets the node's clock skew (ns ahead; negative: behind). See the module documentation.
    pub fn set_clock_skew(&mut self, skew_ns: i64) {
        self.skew_ns = skew_ns;
        self.fault_stats.clock_skew_ns = skew_ns;
    }
    /// The node's reading of its clock at true time `now`.
    fn local(&self, now: SimTime) -> SimTime {
        local_time(now, self.skew_ns)
    }

    /// The node's configuration (as changed at run time: shedding).
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }
    /// Turns shedding of requests whose deadline passed in the accept queue on or off (a
    /// runbook's `enable_shedding`): from the next request a worker takes.
    pub fn set_shed_expired(&mut self, on: bool) {
        self.cfg.shed_expired = on;
    }
    /// A heap as a process started at `now` has (a node added mid-run): background allocation
    /// counts from `now`.
    pub fn start_heap_at(&mut self, now: SimTime) {
        self.heap = Heap::started_at(self.cfg.heap, now);
        self.started_at = now;
    }

    /// When this node's process started: time zero, or when a runbook added it mid-run.
    pub fn started_at(&self) -> SimTime {
        self.started_at
    }

    /// Puts a cache in front of the database for by-id reads.
    pub fn with_cache(mut self, cache: NodeCache) -> ApiNode {
        self.cache = Some(cache);
        self
    }

    /// Sends this node's L1 invalidations to `node` too from now on (a node added mid-run).
    pub fn add_cache_peer(&mut self, node: ComponentId) {
        if let Some(c) = &mut self.cache {
            c.broadcaster.add_node(node);
        }
    }

    /// Empties the node's L1 (an operator's flush, or a restart's cold cache).
    pub fn flush_cache(&mut self) {
        if let Some(c) = &mut self.cache {
            c.l1.flush();
        }
    }

    /// The node's L1 statistics, when it has a cache.
    pub fn l1_stats(&self) -> Option<&crate::cache::CacheStats> {
        self.cache.as_ref().map(|c| c.l1.stats())
    }
    /// From each write elsewhere to its invalidation reaching this node's L1: how long this
    /// node could serve the old value.
    pub fn l1_invalidation_lag(&self) -> Option<&crate::metrics::LatencyHistogram> {
        self.cache.as_ref().map(|c| c.l1.invalidation_lag())
    }
    pub fn in_flight(&self) -> usize {
        self.work.len()
    }
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    pub fn pool(&self) -> &ConnectionPool<Handle> {
        &self.pool
    }
    /// Requests waiting for a worker (the accept queue) or for a core.
    pub fn waiting(&self) -> usize {
        self.queue.len() + self.cpu_queue.len()
    }
    /// Stop-the-world time up to `now`, ns: every pause entered, less the part of the current
    /// one still ahead of `now`.
    pub fn gc_paused_ns_through(&self, now: SimTime) -> u64 {
        let ahead = self
            .paused_until
            .map_or(0, |until| until.saturating_since(now).as_ns());
        self.stw_ns.saturating_sub(ahead)
    }
    /// Starts recording every connection-pool acquisition's wait (0 when a connection was free,
    /// the wait until granted, or until the acquire timeout) for the time series.
    pub fn enable_pool_window(&mut self) {
        self.pool_waits.get_or_insert_with(LatencyHistogram::new);
    }
    /// Adds the pool waits since the last drain to `into` and empties the window (keeping its
    /// memory); adds nothing when the window is off.
    pub fn drain_pool_waits_into(&mut self, into: &mut LatencyHistogram) {
        if let Some(h) = &mut self.pool_waits {
            into.merge(h);
            h.reset();
        }
    }
    fn record_pool_wait(&mut self, ns: u64) {
        if let Some(h) = &mut self.pool_waits {
            h.record(ns);
        }
    }

    /// Arms the background-allocation timer; call once when the world starts.
    pub fn start(&mut self, out: &mut Outbox<'_, Msg>) {
        self.arm_gc_check(out);
    }

    fn arm_gc_check(&mut self, out: &mut Outbox<'_, Msg>) {
        if let Some(t) = self.gc_check.take() {
            out.cancel(t);
        }
        if let Some(at) = self.heap.next_background_trigger(out.now()) {
            self.gc_check = Some(out.send_at(out.me(), at, Msg::Node(NodeTimer::GcCheck)));
        }
    }

    /// Handles every message addressed to the node.
    pub fn on_message(&mut self, msg: Msg, out: &mut Outbox<'_, Msg>) {
        // The common case (running, not paused, no fault command) goes straight to `handle`;
        // everything else takes the out-of-line path, which decides exactly as before.
        if self.down
            || self.paused_until.is_some()
            || matches!(
                msg,
                Msg::Node(
                    NodeTimer::Crash
                        | NodeTimer::Restart
                        | NodeTimer::InjectPause(_)
                        | NodeTimer::Resume
                )
            )
        {
            return self.on_message_rare(msg, out);
        }
        self.handle(msg, out);
    }

    /// Keeps the L2 calls' timeout wake-up at the earliest pending one (see
    /// [`LocalTimers::arm`]): after every change to them.
    #[inline(always)]
    fn arm_l2_timeouts(&mut self, out: &mut Outbox<'_, Msg>) {
        self.l2_timers.arm(out, || Msg::Node(NodeTimer::L2Timeout));
    }

    /// The same for the queries' timeouts.
    #[inline(always)]
    fn arm_db_timeouts(&mut self, out: &mut Outbox<'_, Msg>) {
        self.db_timers.arm(out, || Msg::Node(NodeTimer::DbTimeouts));
    }

    /// [`ApiNode::on_message`] when the node is down or paused, or for a fault command.
    #[cold]
    #[inline(never)]
    fn on_message_rare(&mut self, msg: Msg, out: &mut Outbox<'_, Msg>) {
        match msg {
            Msg::Node(NodeTimer::Crash) => return self.crash(out),
            Msg::Node(NodeTimer::Restart) => return self.restart(out),
            Msg::Node(NodeTimer::LeakConnections(n)) if self.down => {
                // Kept for the restarted process (the pool has nothing to hand out now).
                self.pool.set_leaked(n);
                self.fault_stats.leaked_connections = n;
                return;
            }
            Msg::Dispatch { handle, req } if self.down => {
                self.fault_stats.refused_while_down += 1;
                return self.respond_early(handle, &req, Status::Err(ErrorCode::BadGateway), out);
            }
            _ if self.down => {
                self.fault_stats.dropped_while_down += 1;
                return;
            }
            Msg::Node(NodeTimer::InjectPause(d)) => {
                self.heap.record_injected_pause(d);
                self.fault_stats.injected_pauses += 1;
                self.fault_stats.injected_pause_ns += d.as_ns();
                return self.enter_pause(
                    Pause {
                        kind: PauseKind::Full,
                        duration: d,
                    },
                    out,
                );
            }
            Msg::Node(NodeTimer::Resume) => return self.resume(out),
            // Fires on time during a pause: it defers the timeouts due (see `on_db_timeouts`).
            Msg::Node(NodeTimer::DbTimeouts) => return self.on_db_timeouts(out),
            _ => {}
        }
        if self.paused_until.is_some() {
            // Stop-the-world: the OS still accepts connections into the backlog, but no thread
            // runs. Everything else waits for the pause to end.
            if let Msg::Dispatch { handle, req } = msg {
                self.admit(handle, req, out);
            } else {
                self.deferred.push(msg);
            }
            return;
        }
        self.handle(msg, out);
    }

    /// Dispatches a message by kind (inlined into [`ApiNode::on_message`]: the message is not
    /// copied again on the way).
    #[inline(always)]
    fn handle(&mut self, msg: Msg, out: &mut Outbox<'_, Msg>) {
        match msg {
            Msg::Dispatch { handle, req } => {
                self.admit(handle, req, out);
                self.start_work(out);
            }
            Msg::Node(t) => self.on_timer(t, out),
            Msg::DbReply(r) => self.on_db_reply(r, out),
            Msg::DepReply(r) => self.on_dep_reply(r, out),
            Msg::L2Reply(r) => self.on_l2_reply(r, out),
            Msg::WfAck(a) => self.on_wf_ack(a, out),
            Msg::L1Invalidation(inv) => self.on_l1_invalidation(inv, out),
            other => self.unexpected(&other, out),
        }
    }

    /// An invalidation broadcast (a run of keys): each key invalidated in the L1, if any.
    #[inline(never)]
    fn on_l1_invalidation(
        &mut self,
        inv: crate::cache::L1Invalidation<CacheKey>,
        out: &mut Outbox<'_, Msg>,
    ) {
        let local = self.local(out.now());
        if let Some(c) = &mut self.cache {
            for j in 0..inv.count.max(1) {
                let one = crate::cache::L1Invalidation {
                    key: crate::cache::RunKey::nth(&inv.key, j),
                    count: 1,
                    ..inv
                };
                c.l1.on_invalidation(local, one);
            }
        }
    }

    /// A message no node should receive: an invariant violation.
    #[cold]
    #[inline(never)]
    fn unexpected(&mut self, msg: &Msg, out: &mut Outbox<'_, Msg>) {
        out.violation(format!(
            "an API node received {}",
            crate::kernel::Message::kind_name(msg)
        ));
    }

    fn admit(&mut self, handle: Handle, req: Request, out: &mut Outbox<'_, Msg>) {
        if self.queue.len() >= self.cfg.accept_queue as usize {
            out.count(self.metrics.rejected_queue_full, 1);
            self.respond_early(
                handle,
                &req,
                Status::Err(ErrorCode::ServiceUnavailable),
                out,
            );
            return;
        }
        self.queue.push_back((handle, req, out.now()));
    }

    /// Answers without a worker (queue full, shed).
    fn respond_early(
        &mut self,
        gw: Handle,
        req: &Request,
        status: Status,
        out: &mut Outbox<'_, Msg>,
    ) {
        let resp = Response {
            id: req.id,
            api: req.api,
            account: req.account,
            intended: req.intended,
            status,
            instances: None,
            state: None,
        };
        out.send(
            self.gateway,
            self.cfg.gateway_hop,
            Msg::Response { handle: gw, resp },
        );
    }

    /// Gives queued requests to free workers.
    fn start_work(&mut self, out: &mut Outbox<'_, Msg>) {
        while self.paused_until.is_none() && self.free_workers > 0 {
            let Some((gw, req, arrived)) = self.queue.pop_front() else {
                break;
            };
            let now = out.now();
            if self.cfg.shed_expired && self.local(now) >= req.deadline {
                out.count(self.metrics.shed_expired, 1);
                self.respond_early(gw, &req, Status::Err(ErrorCode::ServiceUnavailable), out);
                continue;
            }
            out.record(
                self.metrics.queue_wait,
                now.saturating_since(arrived).as_ns(),
            );
            self.free_workers -= 1;
            let idem = match req.api {
                Api::RunInstances | Api::CreateInstance => IdemKey::from_request(&req),
                _ => None,
            };
            let h = self.work.insert(Work {
                req,
                gw,
                step: 0,
                phase: Phase::CpuQueued,
                created: None,
                state: None,
                granted: 0,
                idem,
                reserved: false,
                wf_sent: false,
                inserted: false,
                l2_waiting: false,
                l2_timer: Ticket::NONE,
                db_call: 0,
                db_timer: Ticket::NONE,
                cache: match (&self.cache, req.api, req.params.instance) {
                    (
                        Some(_),
                        Api::DescribeInstances | Api::DescribeInstanceStatus,
                        Some(instance),
                    ) => CacheUse::Pending(CacheKey {
                        account: req.account,
                        instance,
                    }),
                    _ => CacheUse::None,
                },
            });
            let bytes = self.cfg.alloc_bytes[req.api.index()]
                .sample(&mut self.rng)
                .max(0.0) as u64;
            let pause = self.heap.allocate(now, bytes);
            self.advance(h, out);
            if let Some(p) = pause {
                self.enter_pause(p, out);
            }
        }
    }

    /// Runs the request's plan until it waits for something.
    fn advance(&mut self, h: Handle, out: &mut Outbox<'_, Msg>) {
        let Some(w) = self.work.get(h) else {
            return;
        };
        if let (CacheUse::Pending(key), 1) = (w.cache, w.step) {
            return self.cache_lookup(h, key, out);
        }
        let (next, deadline) = (self.plan(w), w.req.deadline);
        match next {
            Next::Cpu => {
                if self.free_cores > 0 {
                    self.free_cores -= 1;
                    self.start_cpu(h, out);
                } else {
                    self.set_phase(h, Phase::CpuQueued);
                    self.cpu_queue.push_back(h);
                }
            }
            Next::Workflow(_) | Next::Skip => self.advance_step(h, next, out),
            _ if self.local(out.now()) >= deadline => self.abort_past_deadline(h, out),
            Next::Db(op, replica) if self.cfg.idem_l2.is_none() => {
                self.db_query(h, op, replica, out)
            }
            Next::Db(op, replica) => self.db_step_with_idem_l2(h, op, replica, out),
            Next::Dep(op) => self.dep_call(h, op, 0, out),
            Next::Done(status) => self.finish(h, status, out),
        }
    }

    /// [`ApiNode::advance`]'s steps taken whatever the deadline (a workflow handed to the
    /// engine, a step skipped), out of line: a skipped step goes on with the plan, a workflow
    /// waits for the engine's acknowledgement ([`ApiNode::on_wf_ack`]). The command goes out
    /// even past the deadline: its rows are inserted, and only a workflow (or the engine's
    /// refusal) moves them out of Pending.
    #[inline(never)]
    fn advance_step(&mut self, h: Handle, next: Next, out: &mut Outbox<'_, Msg>) {
        match next {
            Next::Workflow(cmd) => {
                if let (Some((engine, _)), Some(w)) = (self.deps.workflow, self.work.get_mut(h)) {
                    w.wf_sent = true;
                    let cmd = cmd.with_ack(out.me(), h.to_u64());
                    out.send(engine, self.cfg.db_hop, Msg::WfCommand(cmd));
                    return self.await_ack(h, out);
                }
            }
            Next::Skip => {
                if let Some(w) = self.work.get_mut(h) {
                    w.step += 1;
                }
            }
            _ => {}
        }
        self.advance(h, out);
    }

    /// The request's deadline passed before a step that waits: it ends `DeadlineExceeded`.
    #[cold]
    #[inline(never)]
    fn abort_past_deadline(&mut self, h: Handle, out: &mut Outbox<'_, Msg>) {
        out.count(self.metrics.deadline_aborts, 1);
        self.finish(h, Status::Err(ErrorCode::DeadlineExceeded), out);
    }

    /// A database step when the L2 holds the ClientToken records: a record op goes to the L2
    /// (a cache call, no connection), any other query to the database.
    #[inline(never)]
    fn db_step_with_idem_l2(
        &mut self,
        h: Handle,
        op: DbOp,
        replica: bool,
        out: &mut Outbox<'_, Msg>,
    ) {
        match (self.cfg.idem_l2, l2_idem_op(op)) {
            (Some(l2), Some(op)) => {
                self.set_phase(h, Phase::Db { timed: false });
                let req = L2Request {
                    tag: h.to_u64(),
                    reply_to: out.me(),
                    op: L2Op::Idem(op),
                };
                out.send(l2, self.cfg.db_hop, Msg::L2Request(req));
                self.await_l2(h, out);
            }
            _ => self.db_query(h, op, replica, out),
        }
    }

    fn set_phase(&mut self, h: Handle, phase: Phase) {
        if let Some(w) = self.work.get_mut(h) {
            w.phase = phase;
        }
    }

    fn start_cpu(&mut self, h: Handle, out: &mut Outbox<'_, Msg>) {
        let api = self.work.get(h).expect("live work").req.api;
        let secs = self.cfg.cpu[api.index()].sample(&mut self.rng) * self.heap.cpu_multiplier();
        let d = SimDuration::from_secs_f64(secs);
        let end = out.now().saturating_add(d);
        let timer = out.schedule(d, Msg::Node(NodeTimer::CpuDone(h)));
        self.set_phase(h, Phase::Cpu { end, timer });
    }

    /// The plan of each API, as a function of the steps done and what they returned.
    fn plan(&self, w: &Work) -> Next {
        use InstanceState::*;
        let p = &w.req.params;
        let account = w.req.account;
        let get = |id| DbOp::GetInstance(id);
        match (w.req.api, w.step) {
            (_, 0) => Next::Cpu,
            (Api::DescribeInstances | Api::DescribeInstanceStatus, 1) => match p.instance {
                // A value that will be cached (the single-flight leader's fetch) is read from
                // the primary: a lagging replica's older row would poison the L2 for its TTL.
                Some(id) => Next::Db(get(id), !matches!(w.cache, CacheUse::Leader { .. })),
                None => Next::Db(
                    DbOp::ListInstances {
                        account,
                        page: p.page,
                        page_size: self.cfg.page_size,
                    },
                    true,
                ),
            },
            (Api::DescribeInstances | Api::DescribeInstanceStatus, _) => {
                Next::Done(self.found_or_not(w))
            }
            // RunInstances / CreateInstance: token check → image → host → (late token write) →
            // rows → result memoised under the token.
            (Api::RunInstances | Api::CreateInstance, 1) => match w.idem {
                Some(key) => Next::Db(
                    DbOp::IdemCheck {
                        key,
                        fingerprint: fingerprint(w.req.api, p),
                        skew_ns: self.skew_ns,
                    },
                    false,
                ),
                None => Next::Skip,
            },
            (Api::RunInstances | Api::CreateInstance, 2) => Next::Dep(DepOp::GetImage),
            // With workflows, the hosts come from the CreateInstances workflow.
            (Api::RunInstances | Api::CreateInstance, 3) if self.deps.workflow.is_some() => {
                Next::Skip
            }
            (Api::RunInstances | Api::CreateInstance, 3) => Next::Dep(DepOp::AllocateHost),
            (Api::RunInstances | Api::CreateInstance, 4) => match w.idem {
                Some(key) if self.cfg.idem_mode == IdemMode::NonAtomic => Next::Db(
                    DbOp::IdemRecord {
                        key,
                        fingerprint: fingerprint(w.req.api, p),
                        skew_ns: self.skew_ns,
                    },
                    false,
                ),
                _ => Next::Skip,
            },
            (Api::RunInstances, 5) => Next::Db(
                DbOp::InsertInstances {
                    account,
                    count: if self.deps.workflow.is_some() {
                        p.amount
                    } else {
                        w.granted.max(1)
                    },
                    instance_type: p.instance_type,
                    state: Pending,
                },
                false,
            ),
            (Api::CreateInstance, 5) => Next::Db(
                DbOp::InsertInstances {
                    account,
                    count: 1,
                    instance_type: p.instance_type,
                    // With workflows the instance is Pending until its workflow stops it.
                    state: if self.deps.workflow.is_some() {
                        Pending
                    } else {
                        Stopped
                    },
                },
                false,
            ),
            (Api::CreateInstance, 6)
                if self.deps.workflow.is_some() && !w.wf_sent && w.created.is_some() =>
            {
                let range = w.created.expect("checked");
                Next::Workflow(
                    WfCommand::new(
                        WorkflowKind::CreateInstances,
                        account,
                        range,
                        p.instance_type,
                    )
                    .with_options(WfOptions {
                        stopped: true,
                        ..WfOptions::default()
                    }),
                )
            }
            (Api::RunInstances, 6)
                if self.deps.workflow.is_some() && !w.wf_sent && w.created.is_some() =>
            {
                let (_, batch) = self.deps.workflow.expect("checked");
                let range = w.created.expect("checked");
                Next::Workflow(
                    WfCommand::new(
                        WorkflowKind::CreateInstances,
                        account,
                        range,
                        p.instance_type,
                    )
                    .with_batch(batch)
                    .with_min_count(u32::from(p.min_amount.clamp(1, p.amount))),
                )
            }
            (Api::RunInstances | Api::CreateInstance, 6) => match w.idem {
                Some(key) => Next::Db(
                    DbOp::IdemComplete {
                        key,
                        outcome: IdemOutcome::Ok {
                            instances: w.created,
                        },
                        skew_ns: self.skew_ns,
                    },
                    false,
                ),
                None => Next::Skip,
            },
            (Api::RunInstances | Api::CreateInstance, _) => Next::Done(Status::Ok),
            (
                Api::StartInstance | Api::StopInstance | Api::RebootInstance | Api::DeleteInstance,
                1,
            ) => match p.instance {
                Some(id) => Next::Db(get(id), false),
                None => Next::Done(Status::Err(ErrorCode::InvalidParameter)),
            },
            (api, 2) => {
                let Some(state) = w.state else {
                    return Next::Done(Status::Err(ErrorCode::InstanceNotFound));
                };
                let id = p.instance.expect("checked at step 1");
                let (expect, to) = match api {
                    Api::StartInstance => (Stopped, Starting),
                    Api::StopInstance => (Running, Stopping),
                    Api::RebootInstance => (Running, Starting),
                    Api::DeleteInstance if p.force && state != Deleted => (state, Deleted),
                    _ => (Stopped, Deleted),
                };
                if state != expect {
                    return Next::Done(Status::Err(ErrorCode::IncorrectInstanceStatus));
                }
                if self.deps.workflow.is_some() {
                    // The engine moves the state (and calls the dependencies) asynchronously.
                    if w.wf_sent {
                        return Next::Done(Status::Ok);
                    }
                    let kind = match api {
                        Api::StartInstance => WorkflowKind::Start,
                        Api::StopInstance => WorkflowKind::Stop,
                        Api::RebootInstance => WorkflowKind::Reboot,
                        _ => WorkflowKind::Delete,
                    };
                    let range = InstanceIdRange {
                        first: id,
                        count: 1,
                    };
                    let mut cmd = WfCommand::new(kind, account, range, p.instance_type);
                    cmd.options.force = p.force;
                    return Next::Workflow(cmd);
                }
                Next::Db(
                    DbOp::UpdateInstanceState {
                        id,
                        expect: Some(expect),
                        to,
                        resources: None,
                    },
                    false,
                )
            }
            (_, _) => Next::Done(Status::Ok),
        }
    }

    fn found_or_not(&self, w: &Work) -> Status {
        match (w.req.params.instance, w.state) {
            (Some(_), None) => Status::Err(ErrorCode::InstanceNotFound),
            _ => Status::Ok,
        }
    }

    fn db_query(&mut self, h: Handle, op: DbOp, replica: bool, out: &mut Outbox<'_, Msg>) {
        match self.pool.try_acquire(h) {
            Acquire::Granted(_) => {
                self.record_pool_wait(0);
                self.send_query(h, op, replica, out)
            }
            Acquire::Queued(ticket) => {
                let timer = out.schedule(
                    self.cfg.pool_acquire_timeout,
                    Msg::Node(NodeTimer::ConnTimeout(h)),
                );
                self.set_phase(
                    h,
                    Phase::ConnWait {
                        ticket,
                        timer,
                        op,
                        replica,
                        since: out.now(),
                    },
                );
            }
            Acquire::Rejected(_) => {
                out.count(self.metrics.pool_rejected, 1);
                self.finish(h, Status::Err(ErrorCode::InternalError), out);
            }
        }
    }

    fn send_query(&mut self, h: Handle, op: DbOp, replica: bool, out: &mut Outbox<'_, Msg>) {
        let account = self.work.get(h).expect("live work").req.account;
        self.await_db(h, out);
        let q = DbQuery {
            tag: h.to_u64(),
            reply_to: out.me(),
            account,
            read_replica: replica,
            op,
        };
        out.send(self.db, self.cfg.db_hop, Msg::DbQuery(q));
    }

    /// Returns a connection to the pool and hands it to the next waiter, if any.
    fn release_connection(&mut self, out: &mut Outbox<'_, Msg>) {
        if let Some((_, next)) = self.pool.release() {
            self.grant_waiter(next, out);
        }
    }

    /// Hands a connection the pool gave to the waiter `next` to it: its query goes out.
    fn grant_waiter(&mut self, next: Handle, out: &mut Outbox<'_, Msg>) {
        if let Some(Phase::ConnWait {
            timer,
            op,
            replica,
            since,
            ..
        }) = self.work.get(next).map(|w| w.phase)
        {
            out.cancel(timer);
            self.record_pool_wait(out.now().saturating_since(since).as_ns());
            self.send_query(next, op, replica, out);
        } else {
            // The waiter is gone (cannot happen: timeouts cancel their ticket); keep the
            // connection accounting exact anyway.
            self.release_connection(out);
        }
    }

    fn on_db_reply(&mut self, r: DbReply, out: &mut Outbox<'_, Msg>) {
        self.last_db_arrival = out.now().saturating_sub(r.latency);
        if r.tag == DETACHED {
            // A write sent without a worker or a connection (a token's failure record).
            return;
        }
        let h = Handle::from_u64(r.tag);
        let Some(Phase::Db { timed }) = self.work.get(h).map(|w| w.phase) else {
            // A reply to the process that crashed (its connection closed with it), or to a
            // query that timed out (its connection was closed then): nothing waits for it.
            self.fault_stats.stale_db_replies += 1;
            return;
        };
        if timed {
            let t = self.work.get(h).map_or(Ticket::NONE, |w| w.db_timer);
            self.db_timers.cancel(t);
            self.arm_db_timeouts(out);
        }
        self.release_connection(out);
        self.db_result(h, r.result, out);
    }

    /// What a database query (or a ClientToken record call on the L2) answered for `h`.
    fn db_result(
        &mut self,
        h: Handle,
        result: Result<DbResult, DbError>,
        out: &mut Outbox<'_, Msg>,
    ) {
        let Some(w) = self.work.get_mut(h) else {
            return;
        };
        match result {
            Ok(DbResult::Instance(row)) => {
                w.state = row
                    .map(|r| r.state)
                    .filter(|s| *s != InstanceState::Deleted);
                if let CacheUse::Leader { key, .. } = w.cache {
                    let value = match row.filter(|r| r.state != InstanceState::Deleted) {
                        Some(r) => Cached::Value(CachedInstance {
                            state: r.state,
                            instance_type: r.instance_type,
                            updated_at: r.updated_at,
                        }),
                        None => Cached::Negative,
                    };
                    return self.fill_complete(h, key, value, out);
                }
            }
            Ok(DbResult::Inserted(range)) => {
                w.created = Some(range);
                w.inserted = true;
            }
            Ok(DbResult::Updated(UpdateOutcome::Done { .. })) => {
                let local = if self.skew_ns == 0 {
                    out.now()
                } else {
                    local_time(out.now(), self.skew_ns)
                };
                if let Some(instance) = w.req.params.instance
                    && !self.bugs.skips_invalidation(w.req.api)
                {
                    let key = CacheKey {
                        account: w.req.account,
                        instance,
                    };
                    // The write reached the database at `last_db_arrival`: it was applied then
                    // or later, so every value read before it is older.
                    let hop = self.cfg.db_hop;
                    invalidate_write(&mut self.cache, hop, key, self.last_db_arrival, local, out);
                }
            }
            Ok(DbResult::Updated(UpdateOutcome::Mismatch { .. })) => {
                return self.finish(h, Status::Err(ErrorCode::IncorrectInstanceStatus), out);
            }
            Ok(DbResult::Updated(UpdateOutcome::NotFound)) => {
                return self.finish(h, Status::Err(ErrorCode::InstanceNotFound), out);
            }
            // The node sends no multi-row update (the workflow engine does).
            Ok(
                DbResult::Listed { .. }
                | DbResult::Appended
                | DbResult::Archived(_)
                | DbResult::Scanned { .. }
                | DbResult::UpdatedRows(_),
            ) => {}
            Ok(DbResult::Idem(check)) => match check {
                IdemCheck::Proceed(_) => w.reserved = true,
                IdemCheck::Replay(outcome) => {
                    // The original result, the original instances, no new side effect.
                    w.created = outcome.instances();
                    return self.finish(h, outcome.status(), out);
                }
                IdemCheck::Mismatch => {
                    return self.finish(
                        h,
                        Status::Err(ErrorCode::IdempotentParameterMismatch),
                        out,
                    );
                }
                IdemCheck::InProgress => {
                    return self.finish(h, Status::Err(ErrorCode::LastTokenProcessing), out);
                }
            },
            Err(e) => {
                out.count(self.metrics.db_errors, 1);
                // A state write (step 2 of Start/Stop/Reboot/Delete without the engine) that
                // failed `Unavailable` may have been applied: a failover lost its reply, or it
                // timed out still queued. Invalidate as for a write applied now (a value read
                // before now is older; one the database applies later refuses older sets in
                // the L2 by its tombstone and lasts an L1 soft TTL at most), as the engine does
                // for rows a retry finds already written.
                let state_write = w.step == 2
                    && self.deps.workflow.is_none()
                    && matches!(
                        w.req.api,
                        Api::StartInstance
                            | Api::StopInstance
                            | Api::RebootInstance
                            | Api::DeleteInstance
                    );
                if state_write
                    && matches!(e, DbError::Unavailable)
                    && self.cache.is_some()
                    && !self.bugs.skips_invalidation(w.req.api)
                    && let Some(instance) = w.req.params.instance
                {
                    let key = CacheKey {
                        account: w.req.account,
                        instance,
                    };
                    let now = out.now();
                    let local = local_time(now, self.skew_ns);
                    self.fault_stats.uncertain_write_invalidations += 1;
                    invalidate_write(&mut self.cache, self.cfg.db_hop, key, now, local, out);
                }
                if let CacheUse::Leader {
                    key,
                    stale: Some(v),
                } = w.cache
                {
                    // Soft TTL passed, hard TTL not: serve the stale value while the database fails.
                    w.state = Some(v.state).filter(|s| *s != InstanceState::Deleted);
                    if let Some(c) = &mut self.cache {
                        c.l1.serve_stale(local_time(out.now(), self.skew_ns), key);
                    }
                    self.observe_cache_read(out.now(), key, &v);
                    return self.release_waiters(h, key, out);
                }
                let code = match e {
                    DbError::Overloaded | DbError::Unavailable => ErrorCode::ServiceUnavailable,
                    _ => ErrorCode::InternalError,
                };
                return self.finish(h, Status::Err(code), out);
            }
        }
        w.step += 1;
        self.advance(h, out);
    }

    /// Read path, L1 first: a fresh or negative entry answers at once; otherwise one request per
    /// key and node (the leader) asks the L2 and then the database, and the others wait for it.
    fn cache_lookup(&mut self, h: Handle, key: CacheKey, out: &mut Outbox<'_, Msg>) {
        let now = out.now();
        let local = self.local(now);
        let c = self
            .cache
            .as_mut()
            .expect("cached reads exist only with a cache");
        // Under a clock skew, what the true clock would have answered (peek: nothing counted).
        let truth = (local != now).then(|| c.l1.peek(now, key));
        let lookup = c.l1.get(local, key);
        if let Some(truth) = truth {
            let fresh =
                |l: &Lookup<CachedInstance>| matches!(l, Lookup::Fresh(_) | Lookup::NegativeHit);
            match (fresh(&truth), fresh(&lookup)) {
                (true, false) => self.fault_stats.l1_expired_early += 1,
                (false, true) => self.fault_stats.l1_served_past_ttl += 1,
                _ => {}
            }
        }
        if let Lookup::Fresh(v) = &lookup {
            let v = *v;
            self.observe_cache_read(now, key, &v);
        }
        let c = self.cache.as_mut().expect("checked above");
        let (cache, answer) = match lookup {
            Lookup::Fresh(v) => (CacheUse::None, Some(Some(v.state))),
            Lookup::NegativeHit => (CacheUse::None, Some(None)),
            lookup => {
                let stale = match lookup {
                    Lookup::Stale(v) => Some(v),
                    _ => None,
                };
                match c.l1.begin_fill(key, h) {
                    Fill::Leader => {
                        let req = L2Request {
                            tag: h.to_u64(),
                            reply_to: out.me(),
                            op: L2Op::Get { key },
                        };
                        out.send(c.l2, self.cfg.db_hop, Msg::L2Request(req));
                        (CacheUse::Leader { key, stale }, None)
                    }
                    Fill::Follower => (CacheUse::Follower(key), None),
                    Fill::Overflow => (CacheUse::Direct, None),
                }
            }
        };
        let w = self.work.get_mut(h).expect("live work");
        w.cache = cache;
        match (answer, cache) {
            (Some(state), _) => {
                w.state = state.filter(|s| *s != InstanceState::Deleted);
                w.step = 2;
                self.advance(h, out);
            }
            (None, CacheUse::Direct) => self.advance(h, out),
            (None, CacheUse::Leader { .. }) => self.await_l2(h, out),
            // Waiting for the leader (follower).
            (None, _) => {}
        }
    }

    /// Notes the L2 call of `h` just sent: unanswered after `l2_timeout`, it fails as on an
    /// L2 error. Its reply cancels the timeout.
    fn await_l2(&mut self, h: Handle, out: &mut Outbox<'_, Msg>) {
        let Some(w) = self.work.get_mut(h) else {
            return;
        };
        w.l2_waiting = true;
        w.l2_timer = self.l2_timers.schedule(out.now(), self.cfg.l2_timeout, h);
        self.arm_l2_timeouts(out);
    }

    /// The `L2Timeout` wake-up (possibly late: deferred by a pause): every call out past its
    /// timeout fails as on an L2 error. A wake-up not armed (one of a crashed process) does
    /// nothing.
    fn on_l2_timeout(&mut self, out: &mut Outbox<'_, Msg>) {
        let now = out.now();
        if !self.l2_timers.take_wake(now) {
            return;
        }
        while let Some(h) = self.l2_timers.pop_due(now) {
            // Every call answered cancelled its timeout: this one is still out.
            let out_still = self.work.get(h).is_some_and(|w| w.l2_waiting);
            debug_assert!(out_still, "an L2 timeout of a call no longer out");
            if !out_still {
                continue;
            }
            out.count(self.metrics.l2_timeouts, 1);
            let r = L2Reply {
                tag: h.to_u64(),
                latency: self.cfg.l2_timeout,
                result: Err(L2Error::TimedOut),
            };
            self.on_l2_reply(r, out);
        }
        self.arm_l2_timeouts(out);
    }

    /// Notes the query of `h` just sent on a connection: unanswered after `db_query_timeout`,
    /// it fails as on a database error. Its reply cancels the timeout.
    fn await_db(&mut self, h: Handle, out: &mut Outbox<'_, Msg>) {
        let Some(w) = self.work.get_mut(h) else {
            return;
        };
        w.db_call = w.db_call.wrapping_add(1);
        w.phase = Phase::Db { timed: true };
        w.db_timer = self
            .db_timers
            .schedule(out.now(), self.cfg.db_query_timeout, (h, w.db_call));
        self.arm_db_timeouts(out);
    }

    /// Whether query (or workflow submission) `call` of `h` is still out: its work waits for
    /// its reply on a connection, or for the engine's acknowledgement.
    fn db_query_out(&self, h: Handle, call: u8) -> bool {
        self.work.get(h).is_some_and(|w| {
            matches!(w.phase, Phase::Db { timed: true } | Phase::WfAck) && w.db_call == call
        })
    }

    /// The `DbTimeouts` wake-up: every query out past its timeout fails (see
    /// [`Self::query_timed_out`]). During a pause it comes on time all the same and defers a
    /// `QueryTimeout` per query due, replayed by the resume in its place among the other
    /// deferred messages (a reply deferred before it wins, as it would have). A wake-up not
    /// armed (one of a crashed process) does nothing.
    fn on_db_timeouts(&mut self, out: &mut Outbox<'_, Msg>) {
        let now = out.now();
        if !self.db_timers.take_wake(now) {
            return;
        }
        while let Some((h, call)) = self.db_timers.pop_due(now) {
            // Every query answered cancelled its timeout: this one is still out.
            let out_still = self.db_query_out(h, call);
            debug_assert!(out_still, "a timeout of a query no longer out");
            if !out_still {
                continue;
            }
            if self.paused_until.is_some() {
                self.deferred
                    .push(Msg::Node(NodeTimer::QueryTimeout { req: h, call }));
            } else {
                self.query_timed_out(h, out);
            }
        }
        self.arm_db_timeouts(out);
    }

    /// A query got no reply within `db_query_timeout`: the socket timed out, so the connection
    /// is closed and the pool opens another (accounted as a release), and the request goes on
    /// as on a database error; a late reply finds no work waiting. (A workflow submission's
    /// timeout: [`ApiNode::ack_timed_out`].)
    fn query_timed_out(&mut self, h: Handle, out: &mut Outbox<'_, Msg>) {
        if self.work.get(h).is_some_and(|w| w.phase == Phase::WfAck) {
            return self.ack_timed_out(h, out);
        }
        out.count(self.metrics.db_timeouts, 1);
        self.release_connection(out);
        self.db_result(h, Err(DbError::Unavailable), out);
    }

    /// Notes the workflow command of `h` just sent: the request waits for the engine's
    /// [`WfAck`]. The wait is bounded like a query's, by `db_query_timeout` on the same local
    /// timers (the engine's admission is its durable acceptance, a write of the control
    /// plane's own store): an acknowledgement lost (a partition between the node and the
    /// engine) ends the request at the timeout ([`ApiNode::ack_timed_out`]).
    fn await_ack(&mut self, h: Handle, out: &mut Outbox<'_, Msg>) {
        let Some(w) = self.work.get_mut(h) else {
            return;
        };
        w.db_call = w.db_call.wrapping_add(1);
        w.phase = Phase::WfAck;
        w.db_timer = self
            .db_timers
            .schedule(out.now(), self.cfg.db_query_timeout, (h, w.db_call));
        self.arm_db_timeouts(out);
    }

    /// The engine's answer to a workflow command: admitted, the request goes on (the token's
    /// completion, then OK); refused, it answers the engine's code (`ServiceUnavailable`, a
    /// 503, at the bound on live workflows). The engine moves a refused creation's rows to
    /// their failed state (Deleted) itself, so the request's token does not own them: its
    /// reservation ends as for any failure before a mutation (memoised if the code is a
    /// business failure, `InvalidParameter`; abandoned for `ServiceUnavailable`, so a retry
    /// with the same token runs afresh). An acknowledgement for work no longer waiting (its
    /// process crashed, its wait timed out) is ignored and counted (`stale_wf_acks`).
    fn on_wf_ack(&mut self, a: WfAck, out: &mut Outbox<'_, Msg>) {
        let h = Handle::from_u64(a.tag);
        let Some(w) = self.work.get_mut(h).filter(|w| w.phase == Phase::WfAck) else {
            self.fault_stats.stale_wf_acks += 1;
            return;
        };
        self.db_timers.cancel(w.db_timer);
        if a.result.is_err() && w.inserted {
            // The engine fails these rows: the instances are not the client's.
            w.created = None;
        }
        self.arm_db_timeouts(out);
        match a.result {
            Ok(_) => self.advance(h, out),
            Err(code) => {
                out.count(self.metrics.wf_refused, 1);
                self.finish(h, Status::Err(code), out);
            }
        }
    }

    /// A workflow command got no acknowledgement within `db_query_timeout` (the command or its
    /// acknowledgement was lost): the request fails with 503 `ServiceUnavailable` (504
    /// `DeadlineExceeded` when its deadline has passed), counted in `wf_ack_timeouts`. Whether
    /// the engine took the command is unknown, so a creation's rows stay the request's: its
    /// token memoises them as after any failure once rows exist (a workflow runs them, or, if
    /// the command was lost, they stay Pending for reconciliation to fail as stuck rows).
    fn ack_timed_out(&mut self, h: Handle, out: &mut Outbox<'_, Msg>) {
        out.count(self.metrics.wf_ack_timeouts, 1);
        let deadline = self.work.get(h).map_or(SimTime::ZERO, |w| w.req.deadline);
        let code = if self.local(out.now()) >= deadline {
            ErrorCode::DeadlineExceeded
        } else {
            ErrorCode::ServiceUnavailable
        };
        self.finish(h, Status::Err(code), out);
    }

    fn on_l2_reply(&mut self, r: L2Reply, out: &mut Outbox<'_, Msg>) {
        if r.tag == DETACHED {
            return;
        }
        let h = Handle::from_u64(r.tag);
        let Some(w) = self.work.get_mut(h) else {
            return;
        };
        if !w.l2_waiting {
            // Its call timed out: the request has gone on without it.
            self.fault_stats.stale_l2_replies += 1;
            return;
        }
        w.l2_waiting = false;
        // (A timeout's own reply finds its timer popped already.)
        self.l2_timers.cancel(w.l2_timer);
        // (Not `arm_l2_timeouts`: `w` borrows the works.)
        self.l2_timers.arm(out, || Msg::Node(NodeTimer::L2Timeout));
        let CacheUse::Leader { key, .. } = w.cache else {
            if matches!(w.phase, Phase::Db { .. }) {
                // A ClientToken record call: the L2 holds the store. An L2 that fails cannot
                // vouch for the token, so the call fails as the database would (503).
                let result = match r.result {
                    Ok(L2Result::IdemChecked(check)) => Ok(DbResult::Idem(check)),
                    Ok(_) => Ok(DbResult::Appended),
                    Err(_) => Err(DbError::Unavailable),
                };
                self.db_result(h, result, out);
            }
            return;
        };
        match r.result {
            Ok(L2Result::Hit(value)) => self.fill_complete_from_l2(h, key, value, out),
            // A miss or a failed L2: the database, as the leader.
            _ => self.advance_past_cache(h, out),
        }
    }

    /// Goes on to the database read of a leader (its `cache` stays `Leader` so the reply fills).
    fn advance_past_cache(&mut self, h: Handle, out: &mut Outbox<'_, Msg>) {
        let Some(w) = self.work.get(h) else {
            return;
        };
        let next = self.plan(w);
        match next {
            Next::Db(op, replica) => self.db_query(h, op, replica, out),
            _ => out.violation("a cached read has no database step"),
        }
    }

    fn fill_complete_from_l2(
        &mut self,
        h: Handle,
        key: CacheKey,
        value: Cached<CachedInstance>,
        out: &mut Outbox<'_, Msg>,
    ) {
        if let Some(c) = &mut self.cache {
            c.l1.insert(out.now(), key, value);
        }
        if let Some(v) = value.value() {
            self.observe_cache_read(out.now(), key, &v);
        }
        if let Some(w) = self.work.get_mut(h) {
            w.state = value
                .value()
                .map(|v| v.state)
                .filter(|s| *s != InstanceState::Deleted);
        }
        self.release_waiters(h, key, out);
    }

    /// A leader's database read came back: fill L1 and L2, answer everyone.
    fn fill_complete(
        &mut self,
        h: Handle,
        key: CacheKey,
        value: Cached<CachedInstance>,
        out: &mut Outbox<'_, Msg>,
    ) {
        if let Some(c) = &mut self.cache {
            let ttl = if value.is_negative() {
                c.l2_negative_ttl
            } else {
                c.l2_ttl
            };
            let set = L2Request {
                tag: DETACHED,
                reply_to: out.me(),
                op: L2Op::Set {
                    key,
                    value,
                    ttl,
                    version: value.value().map_or(SimTime::ZERO, |v| v.updated_at),
                },
            };
            out.send(c.l2, self.cfg.db_hop, Msg::L2Request(set));
        }
        let waiters = match &mut self.cache {
            Some(c) => c.l1.complete_fill(out.now(), key, value),
            None => Vec::new(),
        };
        self.answer_all(h, waiters, out);
    }

    /// Ends the flight without (re)filling L1 and answers the leader and its waiters.
    fn release_waiters(&mut self, h: Handle, key: CacheKey, out: &mut Outbox<'_, Msg>) {
        let waiters = match &mut self.cache {
            Some(c) => c.l1.end_fill(key),
            None => Vec::new(),
        };
        self.answer_all(h, waiters, out);
    }

    fn answer_all(&mut self, leader: Handle, waiters: Vec<Handle>, out: &mut Outbox<'_, Msg>) {
        let Some(state) = self.work.get(leader).map(|w| w.state) else {
            return;
        };
        for h in std::iter::once(leader).chain(waiters) {
            if let Some(w) = self.work.get_mut(h) {
                w.state = state;
                w.cache = CacheUse::None;
                w.step = 2;
                self.advance(h, out);
            }
        }
    }

    fn dep_call(&mut self, h: Handle, op: DepOp, attempt: u8, out: &mut Outbox<'_, Msg>) {
        let w = self.work.get(h).expect("live work");
        let target = match op {
            DepOp::GetImage => self.deps.image,
            _ => self.deps.inventory,
        };
        let count = match op {
            DepOp::AllocateHost => u32::from(w.req.params.amount),
            _ => 1,
        };
        // The downstream token ties every attempt of this step to one side effect.
        let token = (w.req.id.0 << 8 | u64::from(w.step)) ^ 0x5bd1_e995_0000_0000;
        let tag = h.to_u64();
        let min = match op {
            DepOp::AllocateHost => u32::from(w.req.params.min_amount.clamp(1, w.req.params.amount)),
            _ => 0,
        };
        let call = DepCall::new(tag, out.me(), op)
            .with_token(token)
            .with_count(count)
            .with_min_count(min)
            .with_instance_type(w.req.params.instance_type)
            .with_account(w.req.account);
        out.count(self.metrics.dep_attempts, 1);
        out.send(target, self.cfg.dep_hop, Msg::DepCall(call));
        let timer = out.schedule(
            self.cfg.dep_timeout,
            Msg::Node(NodeTimer::DepTimeout { req: h, attempt }),
        );
        self.set_phase(h, Phase::Dep { attempt, timer });
    }

    fn on_dep_reply(&mut self, r: DepReply, out: &mut Outbox<'_, Msg>) {
        let h = Handle::from_u64(r.tag);
        let Some(w) = self.work.get(h).copied() else {
            return;
        };
        let Phase::Dep { attempt, timer } = w.phase else {
            // A reply to an attempt that already timed out: its side effect stays behind.
            return;
        };
        out.cancel(timer);
        match r.result {
            Ok(ok) => {
                let w = self.work.get_mut(h).expect("live work");
                if w.step == 3 && matches!(w.req.api, Api::RunInstances | Api::CreateInstance) {
                    w.granted = u16::try_from(ok.resources.count).unwrap_or(u16::MAX);
                }
                w.step += 1;
                self.advance(h, out);
            }
            Err(e) => self.dep_failed(h, attempt, CallOutcome::Error(e.code), out),
        }
    }

    fn dep_failed(
        &mut self,
        h: Handle,
        attempt: u8,
        outcome: CallOutcome,
        out: &mut Outbox<'_, Msg>,
    ) {
        if self.cfg.dep_retry.should_retry(u32::from(attempt), outcome) {
            out.count(self.metrics.dep_retries, 1);
            let wait = self
                .cfg
                .dep_retry
                .backoff(u32::from(attempt), &mut self.rng);
            out.schedule(wait, Msg::Node(NodeTimer::DepRetry(h)));
            self.set_phase(
                h,
                Phase::Backoff {
                    attempt: attempt + 1,
                },
            );
            return;
        }
        let status = match outcome {
            CallOutcome::Error(ErrorCode::NoStock) => Status::Err(ErrorCode::NoStock),
            CallOutcome::Error(ErrorCode::InvalidParameter) => {
                Status::Err(ErrorCode::InvalidParameter)
            }
            _ => Status::Err(ErrorCode::InternalError),
        };
        self.finish(h, status, out);
    }

    fn on_timer(&mut self, t: NodeTimer, out: &mut Outbox<'_, Msg>) {
        match t {
            NodeTimer::CpuDone(h) => {
                if !matches!(self.work.get(h).map(|w| w.phase), Some(Phase::Cpu { .. })) {
                    // A burst of a crashed process (its timer was cancelled; defensive).
                    return;
                }
                if let Some(next) = self.cpu_queue.pop_front() {
                    self.start_cpu(next, out);
                } else {
                    self.free_cores += 1;
                }
                if let Some(w) = self.work.get_mut(h) {
                    w.step += 1;
                    self.advance(h, out);
                }
            }
            NodeTimer::ConnTimeout(h) => {
                if let Some(Phase::ConnWait { ticket, since, .. }) =
                    self.work.get(h).map(|w| w.phase)
                {
                    self.record_pool_wait(out.now().saturating_since(since).as_ns());
                    self.pool.cancel(ticket);
                    out.count(self.metrics.pool_timeouts, 1);
                    self.finish(h, Status::Err(ErrorCode::InternalError), out);
                }
            }
            NodeTimer::L2Timeout => self.on_l2_timeout(out),
            NodeTimer::DbTimeouts => self.on_db_timeouts(out),
            NodeTimer::QueryTimeout { req, call } => {
                // Only the query still out (a reply that came first moved the work on).
                if self.db_query_out(req, call) {
                    self.query_timed_out(req, out);
                }
            }
            NodeTimer::DepTimeout { req, attempt } => {
                // Only the attempt still out counts; an older attempt's timer is stale.
                let Some(Phase::Dep {
                    attempt: current, ..
                }) = self.work.get(req).map(|w| w.phase)
                else {
                    return;
                };
                if current != attempt {
                    return;
                }
                out.count(self.metrics.dep_timeouts, 1);
                self.dep_failed(req, attempt, CallOutcome::Timeout, out);
            }
            NodeTimer::DepRetry(h) => {
                if let Some(Phase::Backoff { attempt }) = self.work.get(h).map(|w| w.phase) {
                    let w = *self.work.get(h).expect("live work");
                    if self.local(out.now()) >= w.req.deadline {
                        out.count(self.metrics.deadline_aborts, 1);
                        return self.finish(h, Status::Err(ErrorCode::DeadlineExceeded), out);
                    }
                    let op = match self.plan(&w) {
                        Next::Dep(op) => op,
                        _ => return out.violation("a retry found no dependency step to retry"),
                    };
                    self.dep_call(h, op, attempt, out);
                }
            }
            NodeTimer::GcCheck => {
                self.gc_check = None;
                if let Some(p) = self.heap.advance(out.now()) {
                    self.enter_pause(p, out);
                } else {
                    self.arm_gc_check(out);
                }
            }
            NodeTimer::LeakConnections(n) => {
                self.fault_stats.leaked_connections = n;
                for (_, waiter) in self.pool.set_leaked(n) {
                    self.grant_waiter(waiter, out);
                }
            }
            NodeTimer::Resume
            | NodeTimer::Crash
            | NodeTimer::Restart
            | NodeTimer::InjectPause(_) => unreachable!("handled in on_message"),
        }
    }

    /// Finishes a request on its worker: answers the gateway and frees the worker.
    fn finish(&mut self, h: Handle, status: Status, out: &mut Outbox<'_, Msg>) {
        let Some(w) = self.work.remove(h) else { return };
        if let CacheUse::Leader { key, .. } = w.cache {
            // The leader ended without filling (pool refused, deadline): its waiters fetch alone.
            let waiters = self
                .cache
                .as_mut()
                .map(|c| c.l1.end_fill(key))
                .unwrap_or_default();
            for waiter in waiters {
                if let Some(ww) = self.work.get_mut(waiter) {
                    ww.cache = CacheUse::Direct;
                    self.advance(waiter, out);
                }
            }
        }
        if let (Some(key), true) = (w.idem, w.reserved) {
            // The reservation must not outlive the request: memoise what happened, or let a
            // retry start afresh when nothing was decided (an infrastructure failure). Completed
            // plans (step 6 done) already memoised their result.
            let op = match (status, w.created) {
                (Status::Ok, _) => None,
                // Rows exist (e.g. the deadline hit after the insert): the token owns them.
                (_, Some(range)) => Some(DbOp::IdemComplete {
                    key,
                    outcome: IdemOutcome::Ok {
                        instances: Some(range),
                    },
                    skew_ns: self.skew_ns,
                }),
                (Status::Err(code), None) if memoise_failure(code) => Some(DbOp::IdemComplete {
                    key,
                    outcome: IdemOutcome::Failed(code),
                    skew_ns: self.skew_ns,
                }),
                (Status::Err(_), None) => Some(DbOp::IdemAbandon { key }),
            };
            match (op, self.cfg.idem_l2) {
                (Some(op), Some(l2)) => {
                    let req = L2Request {
                        tag: DETACHED,
                        reply_to: out.me(),
                        op: L2Op::Idem(l2_idem_op(op).expect("a ClientToken record write")),
                    };
                    out.send(l2, self.cfg.db_hop, Msg::L2Request(req));
                }
                (Some(op), None) => {
                    let q = DbQuery {
                        tag: DETACHED,
                        reply_to: out.me(),
                        account: w.req.account,
                        read_replica: false,
                        op,
                    };
                    out.send(self.db, self.cfg.db_hop, Msg::DbQuery(q));
                }
                (None, _) => {}
            }
        }
        if let (Some(o), Status::Ok, Some(key), Some(range)) =
            (&mut self.observed, status, w.idem, w.created)
        {
            o.token_answers.push(crate::invariants::TokenAnswer {
                at: out.now(),
                key,
                instances: range,
                fresh: w.inserted,
            });
        }
        let resp = Response {
            id: w.req.id,
            api: w.req.api,
            account: w.req.account,
            intended: w.req.intended,
            status,
            instances: if status == Status::Ok {
                w.created
            } else {
                None
            },
            state: w.state,
        };
        out.record(
            self.metrics.latency,
            out.now().saturating_since(w.req.intended).as_ns(),
        );
        out.send(
            self.gateway,
            self.cfg.gateway_hop,
            Msg::Response { handle: w.gw, resp },
        );
        self.free_workers += 1;
        self.start_work(out);
    }

    /// The process dies (see the module documentation): every request it holds is answered 502
    /// (the gateway sees the connections reset), and all of its state is dropped. A node
    /// already down stays down (overlapping crash faults).
    fn crash(&mut self, out: &mut Outbox<'_, Msg>) {
        if self.down {
            return;
        }
        self.down = true;
        self.fault_stats.crashes += 1;
        let reset = Status::Err(ErrorCode::BadGateway);
        // Requests on workers, in slot order (deterministic): their timers die with them.
        let held: Vec<Handle> = self.work.iter().map(|(h, _)| h).collect();
        for h in held {
            let Some(w) = self.work.remove(h) else {
                continue;
            };
            match w.phase {
                Phase::Cpu { timer, .. }
                | Phase::ConnWait { timer, .. }
                | Phase::Dep { timer, .. } => {
                    out.cancel(timer);
                }
                Phase::CpuQueued | Phase::Db { .. } | Phase::WfAck | Phase::Backoff { .. } => {}
            }
            self.fault_stats.lost_in_flight += 1;
            self.respond_early(w.gw, &w.req, reset, out);
        }
        for (gw, req, _) in std::mem::take(&mut self.queue) {
            self.fault_stats.lost_queued += 1;
            self.respond_early(gw, &req, reset, out);
        }
        self.cpu_queue.clear();
        self.free_workers = self.cfg.workers;
        self.free_cores = self.cfg.cores;
        self.pool.reset();
        if let Some(c) = &mut self.cache {
            c.l1.restart();
        }
        // A pause in progress ends with the process: only the part already served counts.
        if let Some(until) = self.paused_until.take() {
            self.stw_ns = self
                .stw_ns
                .saturating_sub(until.saturating_since(out.now()).as_ns());
        }
        self.deferred.clear();
        // The calls died with their work, and their timeouts with them.
        self.l2_timers.clear(out);
        self.db_timers.clear(out);
        if let Some(t) = self.gc_check.take() {
            out.cancel(t);
        }
    }

    /// A fresh process on the crashed node: cold L1 (emptied at the crash), a heap as at time
    /// zero, the background-allocation timer armed again.
    fn restart(&mut self, out: &mut Outbox<'_, Msg>) {
        if !self.down {
            return;
        }
        self.down = false;
        self.fault_stats.restarts += 1;
        self.heap.restart(out.now());
        self.arm_gc_check(out);
    }

    /// Stop-the-world: every thread freezes for the pause. CPU bursts in progress end later by
    /// the pause's length; everything else that arrives waits until it ends.
    fn enter_pause(&mut self, p: Pause, out: &mut Outbox<'_, Msg>) {
        if p.duration.is_zero() {
            return;
        }
        out.record(self.metrics.gc_pause, p.duration.as_ns());
        let now = out.now();
        let until = match self.paused_until {
            Some(t) => t.saturating_add(p.duration),
            None => now.saturating_add(p.duration),
        };
        let extra = until.saturating_since(self.paused_until.unwrap_or(now));
        self.stw_ns += extra.as_ns();
        // Shift every running CPU burst (slot order: deterministic).
        let running: Vec<(Handle, SimTime, TimerId)> = self
            .work
            .iter()
            .filter_map(|(h, w)| match w.phase {
                Phase::Cpu { end, timer } => Some((h, end, timer)),
                _ => None,
            })
            .collect();
        for (h, end, timer) in running {
            out.cancel(timer);
            let new_end = end.saturating_add(extra);
            let timer = out.send_at(out.me(), new_end, Msg::Node(NodeTimer::CpuDone(h)));
            self.set_phase(
                h,
                Phase::Cpu {
                    end: new_end,
                    timer,
                },
            );
        }
        if self.paused_until.is_none() {
            out.send_at(out.me(), until, Msg::Node(NodeTimer::Resume));
        }
        self.paused_until = Some(until);
        if let Some(t) = self.gc_check.take() {
            out.cancel(t);
        }
    }

    fn resume(&mut self, out: &mut Outbox<'_, Msg>) {
        let Some(until) = self.paused_until else {
            return;
        };
        if out.now() < until {
            // The pause was extended: wait for its new end.
            out.send_at(out.me(), until, Msg::Node(NodeTimer::Resume));
            return;
        }
        self.paused_until = None;
        let deferred = std::mem::take(&mut self.deferred);
        for msg in deferred {
            if self.paused_until.is_some() {
                self.deferred.push(msg);
            } else {
                self.handle(msg, out);
            }
        }
        self.start_work(out);
        if self.paused_until.is_none() {
            self.arm_gc_check(out);
        }
    }
}

/// A clock `skew_ns` off (ahead if positive) reads this at true time `now` (saturating).
fn local_time(now: SimTime, skew_ns: i64) -> SimTime {
    if skew_ns >= 0 {
        now.saturating_add(SimDuration::from_ns(skew_ns.unsigned_abs()))
    } else {
        SimTime::from_ns(now.as_ns().saturating_sub(skew_ns.unsigned_abs()))
    }
}

/// The L2 form of a ClientToken record operation, if `op` is one.
fn l2_idem_op(op: DbOp) -> Option<L2IdemOp> {
    match op {
        DbOp::IdemCheck {
            key,
            fingerprint,
            skew_ns,
        } => Some(L2IdemOp::Check {
            key,
            fingerprint,
            skew_ns,
        }),
        DbOp::IdemRecord {
            key,
            fingerprint,
            skew_ns,
        } => Some(L2IdemOp::Record {
            key,
            fingerprint,
            skew_ns,
        }),
        DbOp::IdemComplete {
            key,
            outcome,
            skew_ns,
        } => Some(L2IdemOp::Complete {
            key,
            outcome,
            skew_ns,
        }),
        DbOp::IdemAbandon { key } => Some(L2IdemOp::Abandon { key }),
        _ => None,
    }
}
