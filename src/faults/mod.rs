//! The fault catalog: faults as data (kind with its parameters, target, window, optional ramp),
//! the plan a run follows, and when each fault's effect changes.
//!
//! A [`Fault`] is validated when it is built: its kind must suit its target, its parameters must
//! be in range, a ramp is only allowed for kinds with an intensity, and an account scope
//! ([`Fault::for_account`]: the fault acts on that account's work only) only for the kinds in
//! [`ACCOUNT_KINDS`]. A [`FaultPlan`] is an
//! ordered list of faults; the world (`world::faults`) walks its transitions between events and
//! pushes each component's combined fault state to it, so a run with faults is still a pure
//! function of (scenario, seed).

pub mod bugs;
pub mod plan;

pub use bugs::{BUG_NAMES, PlantedBugs};
pub use plan::{Edge, FaultPlan, FaultStep, RAMP_STEPS};

use crate::api::types::AccountId;
use crate::db::QueryClass;
use crate::deps::FaultCode;
use crate::kernel::{Dist, SimDuration, SimTime};
use std::fmt;
use thiserror::Error;

/// What a fault does, with its parameters at full intensity.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// A dependency's latency becomes `latency × multiply + add` (add sampled per call, seconds).
    DepLatency { add: Option<Dist>, multiply: f64 },
    /// A dependency's calls fail with `code` with this probability (replacing the mock's).
    DepErrors { code: FaultCode, probability: f64 },
    /// A dependency takes calls and never answers (callers time out).
    DepBlackhole,
    /// A fraction of a dependency's hosts/zones is down: calls whose key falls there time out.
    DepPartialOutage { fraction: f64 },
    /// API nodes crash at the start (in-flight work and L1 cache lost) and restart at the end.
    NodeCrash,
    /// Stop-the-world pauses on API nodes: one at the start, then one every `every` if given.
    NodePause {
        pause: Dist,
        every: Option<SimDuration>,
    },
    /// A memory leak: the live set grows by `bytes_per_sec` while the fault lasts (old gen
    /// fills, full GCs follow); the leaked memory stays until the node restarts.
    HeapLeak { bytes_per_sec: u64 },
    /// Queries of `class` (every class if none) take `multiply` times longer.
    DbSlowSql {
        class: Option<QueryClass>,
        multiply: f64,
    },
    /// The primary goes down (in-flight transactions fail) for the window; then a replica is
    /// promoted.
    DbFailover,
    /// Each targeted node leaks `connections` of its DB pool for the window.
    DbConnectionLeak { connections: u32 },
    /// Replicas lag the primary by `lag` (reads served by them are stale).
    ReplicaLag { lag: SimDuration },
    /// The L2 cache node is lost for the window and comes back empty.
    L2Loss,
    /// The L2 cache is flushed at the start (a stampede on the DB follows).
    L2Flush,
    /// Messages between the target and `peer` are dropped, both ways, for the window.
    Partition { peer: Target },
    /// The targeted nodes' clocks run `skew_ns` ahead (negative: behind).
    ClockSkew { skew_ns: i64 },
    /// `workers` workflow workers crash at the start (their tasks are redelivered after the lease).
    WorkerCrash { workers: u32 },
    /// The arrival rate is multiplied by `multiply`.
    TrafficSurge { multiply: f64 },
    /// A share of all requests comes from one account.
    HotTenant { account: u32, share: f64 },
    /// Clients retry at once, without backoff or jitter.
    ClientNoBackoff,
    /// Throttling quotas are multiplied by `factor` (< 1).
    QuotaTooLow { factor: f64 },
    /// The database's change feed reaches its consumer `lag` late (the binlog consumer falls
    /// behind): binlog-driven cache invalidations arrive that much later. Needs
    /// `[topology.cache] invalidation = "binlog"`.
    BinlogLag { lag: SimDuration },
}

/// Every kind's name as written in scenario files, in catalog order.
pub const KIND_NAMES: [&str; 21] = [
    "dep_latency",
    "dep_errors",
    "dep_blackhole",
    "dep_partial_outage",
    "node_crash",
    "node_pause",
    "heap_leak",
    "db_slow_sql",
    "db_failover",
    "db_connection_leak",
    "replica_lag",
    "l2_loss",
    "l2_flush",
    "partition",
    "clock_skew",
    "worker_crash",
    "traffic_surge",
    "hot_tenant",
    "client_no_backoff",
    "quota_too_low",
    "binlog_lag",
];

/// The kinds that can be scoped to one account ([`Fault::for_account`]), in catalog order:
/// dependency faults act on the calls made for that account's requests and workflows, a quota
/// fault on that account's throttling limits, clients without backoff on that account's clients.
pub const ACCOUNT_KINDS: [&str; 6] = [
    "dep_latency",
    "dep_errors",
    "dep_blackhole",
    "dep_partial_outage",
    "client_no_backoff",
    "quota_too_low",
];

impl FaultKind {
    /// The kind's name as written in scenario files.
    pub fn name(&self) -> &'static str {
        KIND_NAMES[self.index()]
    }

    /// The kind's position in [`KIND_NAMES`].
    pub fn index(&self) -> usize {
        match self {
            FaultKind::DepLatency { .. } => 0,
            FaultKind::DepErrors { .. } => 1,
            FaultKind::DepBlackhole => 2,
            FaultKind::DepPartialOutage { .. } => 3,
            FaultKind::NodeCrash => 4,
            FaultKind::NodePause { .. } => 5,
            FaultKind::HeapLeak { .. } => 6,
            FaultKind::DbSlowSql { .. } => 7,
            FaultKind::DbFailover => 8,
            FaultKind::DbConnectionLeak { .. } => 9,
            FaultKind::ReplicaLag { .. } => 10,
            FaultKind::L2Loss => 11,
            FaultKind::L2Flush => 12,
            FaultKind::Partition { .. } => 13,
            FaultKind::ClockSkew { .. } => 14,
            FaultKind::WorkerCrash { .. } => 15,
            FaultKind::TrafficSurge { .. } => 16,
            FaultKind::HotTenant { .. } => 17,
            FaultKind::ClientNoBackoff => 18,
            FaultKind::QuotaTooLow { .. } => 19,
            FaultKind::BinlogLag { .. } => 20,
        }
    }

    /// The same kind at about half its intensity, for shrinking; `None` when there is no
    /// intensity to lower or it is already at its floor.
    pub fn weaker(&self) -> Option<FaultKind> {
        let half = |m: f64| 1.0 + (m - 1.0) / 2.0;
        Some(match self {
            FaultKind::DepLatency { add, multiply } if *multiply > 1.1 || add.is_some() => {
                FaultKind::DepLatency {
                    add: None,
                    multiply: if add.is_some() {
                        *multiply
                    } else {
                        half(*multiply)
                    },
                }
            }
            FaultKind::DepErrors { code, probability } if *probability > 0.01 => {
                FaultKind::DepErrors {
                    code: *code,
                    probability: probability / 2.0,
                }
            }
            FaultKind::DepPartialOutage { fraction } if *fraction > 0.02 => {
                FaultKind::DepPartialOutage {
                    fraction: fraction / 2.0,
                }
            }
            FaultKind::HeapLeak { bytes_per_sec } if *bytes_per_sec > (1 << 20) => {
                FaultKind::HeapLeak {
                    bytes_per_sec: bytes_per_sec / 2,
                }
            }
            FaultKind::DbSlowSql { class, multiply } if *multiply > 1.1 => FaultKind::DbSlowSql {
                class: *class,
                multiply: half(*multiply),
            },
            FaultKind::DbConnectionLeak { connections } if *connections > 1 => {
                FaultKind::DbConnectionLeak {
                    connections: connections / 2,
                }
            }
            FaultKind::ReplicaLag { lag } if *lag > SimDuration::from_ms(20) => {
                FaultKind::ReplicaLag {
                    lag: SimDuration::from_ns(lag.as_ns() / 2),
                }
            }
            FaultKind::BinlogLag { lag } if *lag > SimDuration::from_ms(20) => {
                FaultKind::BinlogLag {
                    lag: SimDuration::from_ns(lag.as_ns() / 2),
                }
            }
            FaultKind::ClockSkew { skew_ns } if skew_ns.unsigned_abs() > 20_000_000 => {
                FaultKind::ClockSkew {
                    skew_ns: skew_ns / 2,
                }
            }
            FaultKind::WorkerCrash { workers } if *workers > 1 => FaultKind::WorkerCrash {
                workers: workers / 2,
            },
            FaultKind::TrafficSurge { multiply } if *multiply > 1.1 => FaultKind::TrafficSurge {
                multiply: half(*multiply),
            },
            FaultKind::HotTenant { account, share } if *share > 0.02 => FaultKind::HotTenant {
                account: *account,
                share: share / 2.0,
            },
            FaultKind::QuotaTooLow { factor } if *factor < 0.9 => FaultKind::QuotaTooLow {
                factor: 1.0 - (1.0 - factor) / 2.0,
            },
            _ => return None,
        })
    }

    /// Whether the kind has an intensity a ramp can scale (latency, rates, fractions...).
    pub fn rampable(&self) -> bool {
        matches!(
            self,
            FaultKind::DepLatency { .. }
                | FaultKind::DepErrors { .. }
                | FaultKind::DepPartialOutage { .. }
                | FaultKind::HeapLeak { .. }
                | FaultKind::DbSlowSql { .. }
                | FaultKind::ReplicaLag { .. }
                | FaultKind::BinlogLag { .. }
                | FaultKind::ClockSkew { .. }
                | FaultKind::TrafficSurge { .. }
                | FaultKind::HotTenant { .. }
                | FaultKind::QuotaTooLow { .. }
        )
    }

    /// Whether a fault of this kind can be scoped to one account (see [`ACCOUNT_KINDS`]).
    pub fn account_scopable(&self) -> bool {
        matches!(
            self,
            FaultKind::DepLatency { .. }
                | FaultKind::DepErrors { .. }
                | FaultKind::DepBlackhole
                | FaultKind::DepPartialOutage { .. }
                | FaultKind::ClientNoBackoff
                | FaultKind::QuotaTooLow { .. }
        )
    }

    /// Whether the kind acts once at its start (its window may be empty).
    pub fn instant(&self) -> bool {
        matches!(self, FaultKind::L2Flush | FaultKind::WorkerCrash { .. })
    }

    /// The targets this kind can act on, for errors and docs.
    pub fn targets(&self) -> &'static str {
        match self {
            FaultKind::DepLatency { .. }
            | FaultKind::DepErrors { .. }
            | FaultKind::DepBlackhole
            | FaultKind::DepPartialOutage { .. } => "dep.<name> or dep.<name>.<endpoint>",
            FaultKind::NodeCrash
            | FaultKind::NodePause { .. }
            | FaultKind::HeapLeak { .. }
            | FaultKind::DbConnectionLeak { .. }
            | FaultKind::ClockSkew { .. } => "nodes or node.<i>",
            FaultKind::DbSlowSql { .. }
            | FaultKind::DbFailover
            | FaultKind::ReplicaLag { .. }
            | FaultKind::BinlogLag { .. } => "db",
            FaultKind::L2Loss | FaultKind::L2Flush => "l2",
            FaultKind::Partition { .. } => {
                "nodes, node.<i> or gateway (peer: db, l2, workflow, dep.<name>, gateway or node.<i>), or invalidator (peer: l2 or node.<i>)"
            }
            FaultKind::WorkerCrash { .. } => "workflow",
            FaultKind::TrafficSurge { .. }
            | FaultKind::HotTenant { .. }
            | FaultKind::ClientNoBackoff => "traffic",
            FaultKind::QuotaTooLow { .. } => "gateway",
        }
    }

    fn suits(&self, target: &Target) -> bool {
        match self {
            FaultKind::DepLatency { .. }
            | FaultKind::DepErrors { .. }
            | FaultKind::DepBlackhole
            | FaultKind::DepPartialOutage { .. } => matches!(target, Target::Dependency { .. }),
            FaultKind::NodeCrash
            | FaultKind::NodePause { .. }
            | FaultKind::HeapLeak { .. }
            | FaultKind::DbConnectionLeak { .. }
            | FaultKind::ClockSkew { .. } => matches!(target, Target::Nodes | Target::Node(_)),
            FaultKind::DbSlowSql { .. }
            | FaultKind::DbFailover
            | FaultKind::ReplicaLag { .. }
            | FaultKind::BinlogLag { .. } => *target == Target::Db,
            FaultKind::L2Loss | FaultKind::L2Flush => *target == Target::L2,
            FaultKind::Partition { peer } => {
                let serving = matches!(target, Target::Nodes | Target::Node(_) | Target::Gateway)
                    && matches!(
                        peer,
                        Target::Db
                            | Target::L2
                            | Target::Workflow
                            | Target::Dependency { endpoint: None, .. }
                            | Target::Gateway
                            | Target::Node(_)
                    )
                    && peer != target;
                // The binlog invalidator from the L2 (its deletes) or a node (its L1
                // broadcasts). Not from the database: a binlog consumer cut off resumes from
                // its position, which is a lag (`binlog_lag`), not lost changes.
                let invalidator =
                    *target == Target::Invalidator && matches!(peer, Target::L2 | Target::Node(_));
                serving || invalidator
            }
            FaultKind::WorkerCrash { .. } => *target == Target::Workflow,
            FaultKind::TrafficSurge { .. }
            | FaultKind::HotTenant { .. }
            | FaultKind::ClientNoBackoff => *target == Target::Traffic,
            FaultKind::QuotaTooLow { .. } => *target == Target::Gateway,
        }
    }

    /// Checks the parameters' ranges.
    fn check(&self) -> Result<(), FaultError> {
        let bad = |what: &str, hint: &str| {
            Err(FaultError::Parameter {
                kind: self.name(),
                what: what.to_string(),
                hint: hint.to_string(),
            })
        };
        match self {
            FaultKind::DepLatency { add, multiply } => {
                if !(multiply.is_finite() && (0.0..=1000.0).contains(multiply)) {
                    return bad("multiply", "a factor in [0, 1000], e.g. multiply = 5");
                }
                if add.is_none() && *multiply == 1.0 {
                    return bad(
                        "add or multiply",
                        "give add (a distribution, seconds) or multiply != 1",
                    );
                }
            }
            FaultKind::DepErrors { probability, .. } => {
                if !(0.0..=1.0).contains(probability) {
                    return bad("probability", "a probability in [0, 1]");
                }
            }
            FaultKind::DepPartialOutage { fraction } => {
                if !(*fraction > 0.0 && *fraction <= 1.0) {
                    return bad("fraction", "a fraction of hosts in (0, 1]");
                }
            }
            FaultKind::NodePause { every, .. } => {
                if every.is_some_and(|e| e < SimDuration::from_ms(10)) {
                    return bad("every", "at least 10ms between injected pauses");
                }
            }
            FaultKind::HeapLeak { bytes_per_sec } => {
                if *bytes_per_sec == 0 || *bytes_per_sec > (64 << 30) {
                    return bad("rate", "a leak rate in (0, 64] GiB per second, e.g. 0.05");
                }
            }
            FaultKind::DbSlowSql { multiply, .. } => {
                if !(multiply.is_finite() && *multiply >= 1.0 && *multiply <= 1000.0) {
                    return bad("multiply", "a slow-down factor in [1, 1000]");
                }
            }
            FaultKind::DbConnectionLeak { connections } => {
                if *connections == 0 || *connections > 100_000 {
                    return bad("connections", "leaked connections per node in [1, 100000]");
                }
            }
            FaultKind::ReplicaLag { lag } => {
                if lag.is_zero() || *lag > SimDuration::DAY {
                    return bad("lag", "a replication lag in (0, 1d], e.g. \"5s\"");
                }
            }
            FaultKind::BinlogLag { lag } => {
                if lag.is_zero() || *lag > SimDuration::DAY {
                    return bad("lag", "a change feed lag in (0, 1d], e.g. \"30s\"");
                }
            }
            FaultKind::ClockSkew { skew_ns } => {
                if *skew_ns == 0 || skew_ns.unsigned_abs() > SimDuration::DAY.as_ns() {
                    return bad("skew", "a clock skew in [-1d, 1d], not zero, e.g. \"30s\"");
                }
            }
            FaultKind::WorkerCrash { workers } => {
                if *workers == 0 || *workers > 100_000 {
                    return bad("workers", "workers to crash in [1, 100000]");
                }
            }
            FaultKind::TrafficSurge { multiply } => {
                if !(multiply.is_finite() && *multiply > 0.0 && *multiply <= 1000.0) {
                    return bad("multiply", "a rate factor in (0, 1000], e.g. 3");
                }
            }
            FaultKind::HotTenant { share, .. } => {
                if !(*share > 0.0 && *share <= 1.0) {
                    return bad("share", "the hot account's share of requests in (0, 1]");
                }
            }
            FaultKind::QuotaTooLow { factor } => {
                if !(*factor > 0.0 && *factor < 1.0) {
                    return bad("factor", "a quota factor in (0, 1), e.g. 0.1");
                }
            }
            FaultKind::DepBlackhole
            | FaultKind::NodeCrash
            | FaultKind::DbFailover
            | FaultKind::L2Loss
            | FaultKind::L2Flush
            | FaultKind::Partition { .. }
            | FaultKind::ClientNoBackoff => {}
        }
        Ok(())
    }
}

/// What a fault acts on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// Every API node.
    Nodes,
    /// One API node, by index.
    Node(u32),
    /// The database.
    Db,
    /// The shared L2 cache.
    L2,
    /// The workflow engine.
    Workflow,
    /// The binlog invalidator (binlog cache invalidation only): a partition's side.
    Invalidator,
    /// The API gateway (load balancer and throttling).
    Gateway,
    /// The traffic (clients).
    Traffic,
    /// A dependency by its mock name, optionally one endpoint of it.
    Dependency {
        name: String,
        endpoint: Option<String>,
    },
}

impl Target {
    /// Reads `nodes`, `node.3`, `db`, `l2`, `workflow`, `gateway`, `traffic`, `invalidator`,
    /// `dep.vpc` or `dep.vpc.create_eni`. Names of dependencies and endpoints are checked by the world.
    pub fn parse(s: &str) -> Result<Target, FaultError> {
        let unknown = || FaultError::Target {
            target: s.to_string(),
        };
        Ok(match s {
            "nodes" => Target::Nodes,
            "db" => Target::Db,
            "l2" => Target::L2,
            "workflow" => Target::Workflow,
            "gateway" => Target::Gateway,
            "traffic" => Target::Traffic,
            "invalidator" => Target::Invalidator,
            _ => {
                if let Some(i) = s.strip_prefix("node.") {
                    Target::Node(i.parse().map_err(|_| unknown())?)
                } else if let Some(rest) = s.strip_prefix("dep.") {
                    let mut parts = rest.splitn(2, '.');
                    let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(unknown)?;
                    let endpoint = parts.next().map(str::to_string);
                    if endpoint.as_deref() == Some("") {
                        return Err(unknown());
                    }
                    Target::Dependency {
                        name: name.to_string(),
                        endpoint,
                    }
                } else {
                    return Err(unknown());
                }
            }
        })
    }

    /// Whether node `i` is among the targeted nodes.
    pub fn covers_node(&self, i: u32) -> bool {
        match self {
            Target::Nodes => true,
            Target::Node(k) => *k == i,
            _ => false,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Nodes => f.write_str("nodes"),
            Target::Node(i) => write!(f, "node.{i}"),
            Target::Db => f.write_str("db"),
            Target::L2 => f.write_str("l2"),
            Target::Workflow => f.write_str("workflow"),
            Target::Gateway => f.write_str("gateway"),
            Target::Traffic => f.write_str("traffic"),
            Target::Invalidator => f.write_str("invalidator"),
            Target::Dependency { name, endpoint } => match endpoint {
                Some(e) => write!(f, "dep.{name}.{e}"),
                None => write!(f, "dep.{name}"),
            },
        }
    }
}

/// Why a fault cannot be built; each variant says how to fix it.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum FaultError {
    #[error("unknown fault kind `{kind}`; known kinds: {}", KIND_NAMES.join(", "))]
    Kind { kind: String },
    #[error(
        "unknown target `{target}`; use nodes, node.<i>, db, l2, workflow, gateway, traffic, dep.<name> or dep.<name>.<endpoint>"
    )]
    Target { target: String },
    #[error("a {kind} fault cannot target `{target}`; it targets {allowed}")]
    Mismatch {
        kind: &'static str,
        target: String,
        allowed: &'static str,
    },
    #[error("{kind}: bad {what}; {hint}")]
    Parameter {
        kind: &'static str,
        what: String,
        hint: String,
    },
    #[error("a {kind} fault needs a duration > 0 (its window), e.g. duration = \"60s\"")]
    EmptyWindow { kind: &'static str },
    #[error(
        "a {kind} fault has no intensity to ramp; remove `ramp` (kinds with a ramp: dep_latency, dep_errors, dep_partial_outage, heap_leak, db_slow_sql, replica_lag, binlog_lag, clock_skew, traffic_surge, hot_tenant, quota_too_low)"
    )]
    NotRampable { kind: &'static str },
    #[error("the ramp ({ramp}) is longer than the fault's duration ({duration})")]
    RampTooLong {
        ramp: SimDuration,
        duration: SimDuration,
    },
    #[error("a fault cannot start later than 30 days into the run")]
    TooLate,
    #[error(
        "a {kind} fault cannot be scoped to an account; remove `account` (kinds with an account scope: {}){}",
        ACCOUNT_KINDS.join(", "),
        hot_tenant_note(.kind)
    )]
    NotAccountScoped { kind: &'static str },
}

/// The account-scope error's note for `hot_tenant`, whose own parameter names its account.
fn hot_tenant_note(kind: &str) -> &'static str {
    if kind == "hot_tenant" {
        "; a hot_tenant fault names its account in its own `account` parameter"
    } else {
        ""
    }
}

/// One fault: what, where, when. Fields are private so only validated faults exist.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    kind: FaultKind,
    target: Target,
    start: SimTime,
    duration: SimDuration,
    ramp: SimDuration,
    /// Only this account's work is affected (`None`: everyone's).
    account: Option<AccountId>,
}

impl Fault {
    /// A fault of `kind` on `target`, from `start` for `duration` (instant kinds may have an
    /// empty window).
    pub fn new(
        kind: FaultKind,
        target: Target,
        start: SimTime,
        duration: SimDuration,
    ) -> Result<Fault, FaultError> {
        if !kind.suits(&target) {
            return Err(FaultError::Mismatch {
                kind: kind.name(),
                target: target.to_string(),
                allowed: kind.targets(),
            });
        }
        kind.check()?;
        if duration.is_zero() && !kind.instant() {
            return Err(FaultError::EmptyWindow { kind: kind.name() });
        }
        if start.since_start() > SimDuration::from_secs(30 * 86_400)
            || duration > SimDuration::from_secs(30 * 86_400)
        {
            return Err(FaultError::TooLate);
        }
        Ok(Fault {
            kind,
            target,
            start,
            duration,
            ramp: SimDuration::ZERO,
            account: None,
        })
    }

    /// The same fault acting only on `account`'s work: the dependency calls made for its
    /// requests and workflows, its throttling limits, its clients' retries. Refused for kinds
    /// outside [`ACCOUNT_KINDS`]. Whether the account exists is checked by the topology.
    pub fn for_account(mut self, account: AccountId) -> Result<Fault, FaultError> {
        if !self.kind.account_scopable() {
            return Err(FaultError::NotAccountScoped {
                kind: self.kind.name(),
            });
        }
        self.account = Some(account);
        Ok(self)
    }

    /// The account this fault is scoped to (`None`: every account).
    pub fn account(&self) -> Option<AccountId> {
        self.account
    }

    /// Whether this fault acts on work of `account` (`None`: work of no account, such as
    /// reconciliation's calls, which only unscoped faults reach).
    pub fn applies_to(&self, account: Option<AccountId>) -> bool {
        self.account.is_none() || self.account == account
    }

    /// The intensity grows linearly over `ramp` from the start, in [`RAMP_STEPS`] steps.
    pub fn with_ramp(mut self, ramp: SimDuration) -> Result<Fault, FaultError> {
        if ramp.is_zero() {
            return Ok(self);
        }
        if !self.kind.rampable() {
            return Err(FaultError::NotRampable {
                kind: self.kind.name(),
            });
        }
        if ramp > self.duration {
            return Err(FaultError::RampTooLong {
                ramp,
                duration: self.duration,
            });
        }
        self.ramp = ramp;
        Ok(self)
    }

    pub fn kind(&self) -> &FaultKind {
        &self.kind
    }
    pub fn target(&self) -> &Target {
        &self.target
    }
    pub fn start(&self) -> SimTime {
        self.start
    }
    pub fn duration(&self) -> SimDuration {
        self.duration
    }
    pub fn end(&self) -> SimTime {
        self.start.saturating_add(self.duration)
    }
    pub fn ramp(&self) -> SimDuration {
        self.ramp
    }

    /// The same fault, moved or resized (for shrinking); `None` if the result is invalid.
    pub fn with_window(&self, start: SimTime, duration: SimDuration) -> Option<Fault> {
        let f = Fault::new(self.kind.clone(), self.target.clone(), start, duration).ok()?;
        let f = f.with_ramp(self.ramp.min(duration)).ok()?;
        Some(Fault {
            account: self.account,
            ..f
        })
    }

    /// The same fault with another kind (parameters), for shrinking; `None` if invalid.
    pub fn with_kind(&self, kind: FaultKind) -> Option<Fault> {
        let f = Fault::new(kind, self.target.clone(), self.start, self.duration).ok()?;
        let f = f.with_ramp(self.ramp).ok()?;
        Some(Fault {
            account: self.account,
            ..f
        })
    }

    /// The fault's intensity at `t` in [0, 1]: 0 outside its window; during a ramp,
    /// `k / RAMP_STEPS` from the k-th step on; 1 after it.
    pub fn intensity(&self, t: SimTime) -> f64 {
        if t < self.start || t >= self.end() {
            return 0.0;
        }
        if self.ramp.is_zero() {
            return 1.0;
        }
        let into = t.saturating_since(self.start).as_ns();
        let ramp = self.ramp.as_ns();
        if into >= ramp {
            return 1.0;
        }
        // Step k (1-based) starts at (k - 1) * ramp / RAMP_STEPS.
        let k = into as u128 * u128::from(RAMP_STEPS) / u128::from(ramp) + 1;
        k as f64 / f64::from(RAMP_STEPS)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} from {} for {}",
            self.kind.name(),
            self.target,
            self.start.since_start(),
            self.duration
        )?;
        if !self.ramp.is_zero() {
            write!(f, " (ramp {})", self.ramp)?;
        }
        if let Some(a) = self.account {
            write!(f, " for account {}", a.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
