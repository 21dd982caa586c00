//! Mocked third-party dependencies of the control plane (inventory/scheduler, block storage, VPC,
//! image service, billing): their definitions in `mocks/*.toml`, the sans-IO component that plays
//! one in a simulated world, and the caller-side retry policy.
//!
//! - [`vocab`]: dependency kinds, their operations and what each does to resource records, the
//!   injectable error codes, resource ids;
//! - [`parse`] and [`diag`]: mock files read into a validated [`DependencySpec`], with every
//!   problem reported at once as `file:line:column: toml.path: message; hint`;
//! - [`component`]: [`Dependency`], a concurrency limit, a bounded FIFO queue, latency, injected
//!   errors and blackholes, and real side effects (records, stock, idempotency tokens, orphans);
//! - [`retry`]: [`RetryPolicy`], which outcomes to retry and capped exponential backoff with full
//!   jitter.
//!
//! The simulator ignores the HTTP side of a mock file (method, path, status, body); live mode will
//! serve it.

pub mod component;
pub mod diag;
pub mod parse;
pub mod retry;
pub mod spec;
pub mod vocab;

pub use component::{
    DepCall, DepError, DepOk, DepReply, DepTimer, Dependency, DependencyStats, EndpointFaults,
    EndpointStats, Faults, RecordState, ResourceRecord, ScopedAccountStats, outage_key,
};
pub use diag::{MockError, Problem};
pub use parse::{load_mock_file, load_mocks_dir, parse_mock};
pub use retry::{CallOutcome, Jitter, RetryOn, RetryPolicy, RetryPolicyError};
pub use spec::{DependencySpec, EndpointSpec, ErrorSpec, StockSpec};
pub use vocab::{
    DepOp, DependencyKind, Effect, FaultCode, ResourceId, ResourceKind, ResourceRange,
};
