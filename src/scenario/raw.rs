//! The raw scenario layer: what a scenario file says, parsed but not checked. Every key is
//! optional here, so a missing key is reported by the validator together with every other
//! problem, not as serde's first error.

use crate::deps::parse::{Shape, Sub, fields_of};
use crate::kernel::{Dist, SimDuration};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub(super) type Sp<T> = Option<Spanned<T>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: Sp<String>,
    pub description: Sp<String>,
    pub seed: Sp<i64>,
    pub duration: Sp<SimDuration>,
    pub warmup: Sp<SimDuration>,
    pub scale: Sp<f64>,
    /// The most events one run may process: a safety bound, reported (exit 3) when hit.
    pub max_events: Sp<i64>,
    pub topology: Sp<RawTopology>,
    pub workload: Sp<RawWorkload>,
    pub fault: Sp<Vec<Spanned<RawFault>>>,
    pub slo: Sp<RawSlo>,
    pub chaos: Sp<RawChaos>,
    pub expect: Sp<RawExpect>,
    pub alert: Sp<Vec<Spanned<RawAlert>>>,
    /// Planted bugs by name = true (to prove the invariant checkers).
    pub bugs: Option<BTreeMap<Spanned<String>, Spanned<bool>>>,
    pub runbook: Sp<Vec<Spanned<RawRunbook>>>,
}

/// `[[alert]]`: a game day's alert rule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    pub name: Sp<String>,
    pub metric: Sp<String>,
    pub above: Sp<f64>,
    pub below: Sp<f64>,
    #[serde(rename = "for")]
    pub hold: Sp<SimDuration>,
    pub component: Sp<String>,
}

/// `[[runbook]]`: an operator's action at a time or after an alert.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRunbook {
    pub action: Sp<String>,
    pub at: Sp<SimDuration>,
    pub on_alert: Sp<String>,
    pub delay: Sp<SimDuration>,
    pub nodes: Sp<i64>,
    pub factor: Sp<f64>,
}

/// `[chaos]`: what `firedrill chaos` may draw for this scenario.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChaos {
    /// Fault kinds allowed (default: every kind the topology can take).
    pub kinds: Sp<Vec<Spanned<String>>>,
    /// Faults per plan at most (default 3).
    pub max_faults: Sp<i64>,
    /// Fault-free traffic at the end of every run (default 120 s).
    pub quiet: Sp<SimDuration>,
    /// Longest fault window (default 300 s).
    pub max_window: Sp<SimDuration>,
    /// The liveness bound of the invariant checks (default 660 s).
    pub liveness_bound: Sp<SimDuration>,
}

/// `[expect]`: what a reproduction file must reproduce (written by shrinking; `firedrill
/// replay` checks it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub trace_hash: Sp<String>,
    pub invariant: Sp<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopology {
    pub api: Sp<RawApi>,
    pub db: Sp<RawDb>,
    pub cache: Sp<RawCache>,
    pub workflows: Sp<RawWorkflows>,
    pub idempotency: Sp<RawIdempotency>,
    pub throttle: Sp<RawThrottle>,
    pub cleanup: Sp<RawCleanup>,
    pub reconciliation: Sp<RawReconciliation>,
    /// Dependency mocks by name (files of `mocks/`); default: every shipped mock.
    pub dependencies: Sp<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub nodes: Sp<i64>,
    pub workers: Sp<i64>,
    pub cores: Sp<i64>,
    pub accept_queue: Sp<i64>,
    pub lb: Sp<String>,
    pub gc: Sp<String>,
    pub heap_gib: Sp<f64>,
    pub live_set_gib: Sp<f64>,
    pub pool: Sp<i64>,
    pub pool_wait_limit: Sp<i64>,
    pub pool_acquire_timeout: Sp<SimDuration>,
    /// How long a database query may go unanswered before the node gives up on it.
    pub db_query_timeout: Sp<SimDuration>,
    /// How long an L2 call may go unanswered before the node gives up on it.
    pub l2_timeout: Sp<SimDuration>,
    /// CPU time of every API call (seconds).
    pub cpu: Sp<Dist>,
    /// Drop queued requests whose deadline has passed instead of working on them.
    pub shed_expired: Sp<bool>,
    /// One-way network delay of every hop (gateway ↔ node, node → database and dependencies).
    pub hop: Sp<SimDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDb {
    pub max_concurrent: Sp<i64>,
    pub queue_limit: Sp<i64>,
    pub shards: Sp<i64>,
    pub replicas: Sp<i64>,
    pub replication_lag: Sp<Dist>,
    pub slow_query_threshold: Sp<SimDuration>,
    /// Service latency of every query class (seconds).
    pub latency: Sp<Dist>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub l1_capacity: Sp<i64>,
    pub l1_soft_ttl: Sp<SimDuration>,
    pub l1_hard_ttl: Sp<SimDuration>,
    pub l2_capacity: Sp<i64>,
    pub l2_ttl: Sp<SimDuration>,
    pub l2_negative_ttl: Sp<SimDuration>,
    pub invalidation_delay: Sp<Dist>,
    /// `writer` (default) or `binlog`.
    pub invalidation: Sp<String>,
    /// The change feed's lag (binlog invalidation only).
    pub binlog_lag: Sp<Dist>,
    /// The invalidator's L2 delete timeout, backoff cap and pending bound, and the heartbeat
    /// interval (binlog invalidation only).
    pub binlog_retry_timeout: Sp<SimDuration>,
    pub binlog_backoff_max: Sp<SimDuration>,
    pub binlog_max_pending: Sp<i64>,
    pub binlog_heartbeat: Sp<SimDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkflows {
    pub batch: Sp<bool>,
    pub workers: Sp<i64>,
    /// Every step's policy (all given keys replace the shipped defaults of every step).
    pub step_timeout: Sp<SimDuration>,
    pub max_attempts: Sp<i64>,
    pub initial_interval: Sp<SimDuration>,
    pub backoff_coefficient: Sp<f64>,
    pub max_interval: Sp<SimDuration>,
    /// Every workflow's deadline.
    pub deadline: Sp<SimDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdempotency {
    pub atomic: Sp<bool>,
    pub store: Sp<String>,
    pub ttl: Sp<SimDuration>,
    pub capacity: Sp<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThrottle {
    pub preset: Sp<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCleanup {
    pub period: Sp<SimDuration>,
    pub retention: Sp<SimDuration>,
    pub batch_rows: Sp<i64>,
    pub max_batches_per_run: Sp<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReconciliation {
    /// `hourly` (near-real-time) or `daily` (T+1).
    pub mode: Sp<String>,
    /// Overrides of the mode's audit period and grace.
    pub period: Sp<SimDuration>,
    pub grace: Sp<SimDuration>,
    /// `primary` (default) or `replica`: where scan pages read.
    pub read: Sp<String>,
    /// Release an orphan only when two passes in a row find it.
    pub confirm_orphans: Sp<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    /// Requests per second at full scale (before `scale`).
    pub rate: Sp<f64>,
    /// API name → weight (default: the Describe-heavy mix).
    pub mix: Option<BTreeMap<Spanned<String>, Spanned<f64>>>,
    pub accounts: Sp<i64>,
    /// Zipf exponent of the accounts' request rates (0: uniform).
    pub account_skew: Sp<f64>,
    pub amount: Sp<Dist>,
    pub min_amount_fraction: Sp<f64>,
    pub instance_types: Sp<i64>,
    /// Demand per instance type (weights; their count is the number of types).
    pub instance_type_weights: Sp<Vec<Spanned<f64>>>,
    pub timeout: Sp<SimDuration>,
    pub describe_list_share: Sp<f64>,
    pub tokens: Sp<RawTokens>,
    pub profile: Sp<RawProfile>,
    pub retry: Sp<RawRetry>,
    pub polling: Sp<RawPolling>,
    pub closed_loop: Sp<RawClosedLoop>,
    pub replay: Sp<RawReplay>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub max_attempts: Sp<i64>,
    pub backoff: Sp<String>,
    pub base: Sp<SimDuration>,
    pub cap: Sp<SimDuration>,
    pub jitter: Sp<String>,
    pub on: Sp<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolling {
    pub interval: Sp<Dist>,
    pub max_polls: Sp<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClosedLoop {
    pub clients: Sp<i64>,
    pub think: Sp<Dist>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplay {
    /// CSV or JSON Lines, relative to the scenario file.
    pub trace: Sp<String>,
    pub speed: Sp<f64>,
    pub scale: Sp<f64>,
}

/// A rate profile: `kind` says which of the other keys apply.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub kind: Sp<String>,
    // ramp
    pub from: Sp<f64>,
    pub to: Sp<f64>,
    pub start: Sp<SimDuration>,
    pub duration: Sp<SimDuration>,
    // steps
    pub steps: Sp<Vec<Spanned<RawStep>>>,
    // diurnal (hourly points)
    pub hourly: Sp<Vec<Spanned<f64>>>,
    pub day_offset: Sp<SimDuration>,
    // sine
    pub mean: Sp<f64>,
    pub amplitude: Sp<f64>,
    pub peak_at: Sp<SimDuration>,
    pub period: Sp<SimDuration>,
    // double11
    pub midnight: Sp<SimDuration>,
    pub pre_scale: Sp<SimDuration>,
    pub peak: Sp<f64>,
    pub tail: Sp<SimDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub at: Sp<SimDuration>,
    pub multiplier: Sp<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    pub share: Sp<f64>,
    pub duplicate_fraction: Sp<f64>,
    pub duplicate_delay: Sp<SimDuration>,
}

/// A `[[fault]]` table: kind, target, window and the kind's parameters (read by
/// `scenario::faults`, which says which keys each kind takes).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub kind: Sp<String>,
    pub target: Sp<String>,
    pub peer: Sp<String>,
    pub start: Sp<SimDuration>,
    pub duration: Sp<SimDuration>,
    pub ramp: Sp<SimDuration>,
    pub add: Sp<Dist>,
    pub multiply: Sp<f64>,
    pub code: Sp<String>,
    pub probability: Sp<f64>,
    pub fraction: Sp<f64>,
    pub pause: Sp<Dist>,
    pub every: Sp<SimDuration>,
    pub gib_per_min: Sp<f64>,
    pub class: Sp<String>,
    pub connections: Sp<i64>,
    pub lag: Sp<SimDuration>,
    pub skew_ms: Sp<i64>,
    pub workers: Sp<i64>,
    pub account: Sp<i64>,
    pub share: Sp<f64>,
    pub factor: Sp<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlo {
    /// The p99 latency target of every API, ms (measured from the intended start).
    pub p99_ms: Sp<f64>,
    /// Per-API p99 targets, ms, overriding `p99_ms`.
    pub api_p99_ms: Option<BTreeMap<Spanned<String>, Spanned<f64>>>,
    /// The most 5XX responses allowed, as a fraction of all requests.
    pub rate_5xx_max: Sp<f64>,
    /// Game days: the SLO must hold this long for a fault to count as recovered.
    pub recovery_hold: Sp<SimDuration>,
}

static API_SHAPE: Shape = Shape {
    fields: fields_of::<RawApi>,
    subs: &[],
};
static DB_SHAPE: Shape = Shape {
    fields: fields_of::<RawDb>,
    subs: &[],
};
static CACHE_SHAPE: Shape = Shape {
    fields: fields_of::<RawCache>,
    subs: &[],
};
static WORKFLOWS_SHAPE: Shape = Shape {
    fields: fields_of::<RawWorkflows>,
    subs: &[],
};
static IDEM_SHAPE: Shape = Shape {
    fields: fields_of::<RawIdempotency>,
    subs: &[],
};
static THROTTLE_SHAPE: Shape = Shape {
    fields: fields_of::<RawThrottle>,
    subs: &[],
};
static CLEANUP_SHAPE: Shape = Shape {
    fields: fields_of::<RawCleanup>,
    subs: &[],
};
static RECON_SHAPE: Shape = Shape {
    fields: fields_of::<RawReconciliation>,
    subs: &[],
};
static TOPOLOGY_SHAPE: Shape = Shape {
    fields: fields_of::<RawTopology>,
    subs: &[
        ("api", Sub::Table(&API_SHAPE)),
        ("db", Sub::Table(&DB_SHAPE)),
        ("cache", Sub::Table(&CACHE_SHAPE)),
        ("workflows", Sub::Table(&WORKFLOWS_SHAPE)),
        ("idempotency", Sub::Table(&IDEM_SHAPE)),
        ("throttle", Sub::Table(&THROTTLE_SHAPE)),
        ("cleanup", Sub::Table(&CLEANUP_SHAPE)),
        ("reconciliation", Sub::Table(&RECON_SHAPE)),
    ],
};
static TOKENS_SHAPE: Shape = Shape {
    fields: fields_of::<RawTokens>,
    subs: &[],
};
static STEP_SHAPE: Shape = Shape {
    fields: fields_of::<RawStep>,
    subs: &[],
};
static PROFILE_SHAPE: Shape = Shape {
    fields: fields_of::<RawProfile>,
    subs: &[("steps", Sub::Tables(&STEP_SHAPE))],
};
static RETRY_SHAPE: Shape = Shape {
    fields: fields_of::<RawRetry>,
    subs: &[],
};
static POLLING_SHAPE: Shape = Shape {
    fields: fields_of::<RawPolling>,
    subs: &[],
};
static CLOSED_SHAPE: Shape = Shape {
    fields: fields_of::<RawClosedLoop>,
    subs: &[],
};
static REPLAY_SHAPE: Shape = Shape {
    fields: fields_of::<RawReplay>,
    subs: &[],
};
static WORKLOAD_SHAPE: Shape = Shape {
    fields: fields_of::<RawWorkload>,
    subs: &[
        ("mix", Sub::Map),
        ("tokens", Sub::Table(&TOKENS_SHAPE)),
        ("profile", Sub::Table(&PROFILE_SHAPE)),
        ("retry", Sub::Table(&RETRY_SHAPE)),
        ("polling", Sub::Table(&POLLING_SHAPE)),
        ("closed_loop", Sub::Table(&CLOSED_SHAPE)),
        ("replay", Sub::Table(&REPLAY_SHAPE)),
    ],
};
static FAULT_SHAPE: Shape = Shape {
    fields: fields_of::<RawFault>,
    subs: &[],
};
static SLO_SHAPE: Shape = Shape {
    fields: fields_of::<RawSlo>,
    subs: &[("api_p99_ms", Sub::Map)],
};
static CHAOS_SHAPE: Shape = Shape {
    fields: fields_of::<RawChaos>,
    subs: &[],
};
static EXPECT_SHAPE: Shape = Shape {
    fields: fields_of::<RawExpect>,
    subs: &[],
};
static ALERT_SHAPE: Shape = Shape {
    fields: fields_of::<RawAlert>,
    subs: &[],
};
static RUNBOOK_SHAPE: Shape = Shape {
    fields: fields_of::<RawRunbook>,
    subs: &[],
};
pub(super) static ROOT_SHAPE: Shape = Shape {
    fields: fields_of::<RawScenario>,
    subs: &[
        ("topology", Sub::Table(&TOPOLOGY_SHAPE)),
        ("workload", Sub::Table(&WORKLOAD_SHAPE)),
        ("fault", Sub::Tables(&FAULT_SHAPE)),
        ("slo", Sub::Table(&SLO_SHAPE)),
        ("chaos", Sub::Table(&CHAOS_SHAPE)),
        ("expect", Sub::Table(&EXPECT_SHAPE)),
        ("alert", Sub::Tables(&ALERT_SHAPE)),
        ("bugs", Sub::Map),
        ("runbook", Sub::Tables(&RUNBOOK_SHAPE)),
    ],
};
