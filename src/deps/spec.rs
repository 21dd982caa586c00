//! Validated dependency specifications: what a mock file says once every check has passed.
//! Built only by the mock-file loader ([`crate::deps::parse_mock`]), so every value is in range.

use super::vocab::{DepOp, DependencyKind, Effect, FaultCode};
use crate::api::types::InstanceType;
use crate::kernel::{Dist, SimDuration};
use std::collections::BTreeMap;

/// Limits every mock file is checked against (and the defaults of optional keys).
pub mod limits {
    use crate::kernel::SimDuration;

    /// Largest mock file read, in bytes.
    pub const MAX_FILE_BYTES: u64 = 1 << 20;
    /// Most mock files one directory may hold.
    pub const MAX_FILES: usize = 256;
    pub const MAX_CONCURRENCY: i64 = 1_000_000;
    pub const MAX_QUEUE_LIMIT: i64 = 10_000_000;
    pub const MAX_BATCH: i64 = 10_000;
    pub const DEFAULT_MAX_BATCH: u32 = 100;
    pub const MAX_BATCH_FACTOR: f64 = 10.0;
    pub const MAX_TOKEN_CAPACITY: i64 = 10_000_000;
    pub const DEFAULT_TOKEN_CAPACITY: u32 = 1_000_000;
    /// Domain §3: no documented window for ECS, other services use 8–36 h.
    pub const DEFAULT_TOKEN_TTL: SimDuration = SimDuration::from_secs(24 * 3600);
    pub const MIN_TOKEN_TTL: SimDuration = SimDuration::SECOND;
    pub const MAX_TOKEN_TTL: SimDuration = SimDuration::from_secs(30 * 86_400);
    pub const MAX_RECORDS: i64 = 100_000_000;
    pub const DEFAULT_MAX_RECORDS: u64 = 10_000_000;
    pub const MAX_STOCK: i64 = 1_000_000_000_000;
    pub const MAX_NAME_LEN: usize = 64;
    pub const MAX_PATH_LEN: usize = 512;
    pub const MAX_BODY_LEN: usize = 64 * 1024;
}

/// One mocked dependency: its limits, its default latency and its endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct DependencySpec {
    pub(crate) file: String,
    pub(crate) name: String,
    /// Where `name` is written (line, column), for problems found across files.
    pub(crate) name_pos: (u32, u32),
    pub(crate) kind: DependencyKind,
    pub(crate) description: String,
    pub(crate) concurrency: u32,
    pub(crate) queue_limit: u32,
    pub(crate) latency: Dist,
    pub(crate) token_ttl: SimDuration,
    pub(crate) token_capacity: u32,
    pub(crate) max_records: u64,
    pub(crate) stock: Option<StockSpec>,
    /// In file order; exactly one per op of `kind`.
    pub(crate) endpoints: Vec<EndpointSpec>,
}

impl DependencySpec {
    /// The file it was read from, as named to the loader.
    pub fn file(&self) -> &str {
        &self.file
    }
    /// The name scenarios refer to it by (unique within a mocks directory).
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> DependencyKind {
        self.kind
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Calls served at once; more wait in the queue.
    pub fn concurrency(&self) -> u32 {
        self.concurrency
    }
    /// Calls waiting at most; one more is rejected with `ServiceUnavailable`.
    pub fn queue_limit(&self) -> u32 {
        self.queue_limit
    }
    /// The latency of endpoints that do not set their own.
    pub fn default_latency(&self) -> &Dist {
        &self.latency
    }
    /// How long a downstream idempotency token is remembered.
    pub fn token_ttl(&self) -> SimDuration {
        self.token_ttl
    }
    /// How many tokens are remembered at most (the oldest is forgotten first).
    pub fn token_capacity(&self) -> u32 {
        self.token_capacity
    }
    /// Live resource records at most; a create past it fails with `QuotaExceed`.
    pub fn max_records(&self) -> u64 {
        self.max_records
    }
    /// Stock per instance type (inventory only).
    pub fn stock(&self) -> Option<&StockSpec> {
        self.stock.as_ref()
    }
    pub fn endpoints(&self) -> &[EndpointSpec] {
        &self.endpoints
    }
    pub fn endpoint(&self, op: DepOp) -> Option<&EndpointSpec> {
        self.endpoints.iter().find(|e| e.op == op)
    }
}

/// One operation of a dependency.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSpec {
    pub(crate) op: DepOp,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) latency: Option<Dist>,
    pub(crate) errors: Vec<ErrorSpec>,
    pub(crate) max_batch: u32,
    pub(crate) batch_factor: f64,
}

impl EndpointSpec {
    pub fn op(&self) -> DepOp {
        self.op
    }
    /// HTTP method for live mode (`GET`, `POST`, `PUT`, `DELETE`, `PATCH`).
    pub fn method(&self) -> &str {
        &self.method
    }
    /// HTTP path for live mode.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// HTTP status of a success, for live mode (2xx).
    pub fn status(&self) -> u16 {
        self.status
    }
    /// Response body template, for live mode (the simulator ignores it).
    pub fn body(&self) -> &str {
        &self.body
    }
    /// The endpoint's own latency, if it sets one.
    pub fn own_latency(&self) -> Option<&Dist> {
        self.latency.as_ref()
    }
    /// Injected errors, in file order; probabilities sum to at most 1.
    pub fn errors(&self) -> &[ErrorSpec] {
        &self.errors
    }
    /// Whether it changes records (fixed by the op).
    pub fn mutating(&self) -> bool {
        self.op.effect().is_mutating()
    }
    pub fn effect(&self) -> Effect {
        self.op.effect()
    }
    /// Items one call may carry at most.
    pub fn max_batch(&self) -> u32 {
        self.max_batch
    }
    /// Latency of a batch of `n` = one sample × (1 + batch_factor · (n − 1)).
    pub fn batch_factor(&self) -> f64 {
        self.batch_factor
    }
}

/// One injected error of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorSpec {
    pub(crate) code: FaultCode,
    pub(crate) status: Option<u16>,
    pub(crate) probability: f64,
    pub(crate) executes: bool,
}

impl ErrorSpec {
    pub fn code(&self) -> FaultCode {
        self.code
    }
    /// HTTP status for live mode; `None` for a timeout (no reply at all).
    pub fn status(&self) -> Option<u16> {
        self.status
    }
    /// Chance per call, in [0, 1].
    pub fn probability(&self) -> f64 {
        self.probability
    }
    /// For a timeout: whether the side effect happens before the reply is lost (an orphan
    /// maker) or the request is lost on the way in.
    pub fn executes(&self) -> bool {
        self.executes
    }
}

/// Hosts available per instance type (inventory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockSpec {
    pub(crate) default: u64,
    pub(crate) per_type: BTreeMap<InstanceType, u64>,
}

impl StockSpec {
    /// Stock of every type not listed.
    pub fn default_stock(&self) -> u64 {
        self.default
    }
    /// The initial stock of `t`.
    pub fn initial(&self, t: InstanceType) -> u64 {
        self.per_type.get(&t).copied().unwrap_or(self.default)
    }
    pub fn per_type(&self) -> &BTreeMap<InstanceType, u64> {
        &self.per_type
    }
}
