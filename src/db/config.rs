//! [`DbConfig`]: the validated shape of the database model (sharding, concurrency, queue bounds,
//! replicas and their lag, per-class latency distributions, size-scaling coefficients, limits).

use super::QueryClass;
use crate::kernel::{Dist, SimDuration};

/// The validated configuration of a [`Db`](super::Db). Build one with
/// [`DbConfig::assumed_defaults`] or [`DbConfig::builder`]; fields are private so a `DbConfig`
/// is valid by construction.
///
/// # Latency model
///
/// Every query that gets a concurrency slot draws a base latency `s` (seconds) from its class's
/// [`Dist`] and multiplies it by a size factor; the product is rounded to whole nanoseconds.
/// `rows` is the size *on the query's shard*, taken when the query starts service (before its
/// own effect):
///
/// | class | factor |
/// |---|---|
/// | `PointRead`, `Update` | `1 + index_log_coeff · log2(1 + instance_rows / index_rows_unit)` |
/// | `Insert` | the same, × `(1 + batch_row_coeff · (count − 1))` |
/// | `WorkflowStepWrite` | the same on the target table's rows, × `(1 + batch_row_coeff · (rows − 1))` |
/// | `FilteredList` | `1 + instance_rows / list_rows_per_unit` (the unindexed scan: linear) |
/// | `ArchiveBatch` | `1 + removed_rows / archive_rows_unit` (proportional to the batch) |
/// | `Scan` | the indexed factor × `(1 + batch_row_coeff · (returned − 1))` (a keyset page) |
///
/// Service latency as reported to the caller is the time spent waiting for a slot plus the
/// service time above. A query whose reported latency is at least `slow_query_threshold` counts
/// as a slow query of its class.
#[derive(Clone, Debug, PartialEq)]
pub struct DbConfig {
    pub(super) shards: u16,
    pub(super) max_concurrent: u32,
    pub(super) queue_limit: u32,
    pub(super) replicas: u16,
    pub(super) replication_lag: Dist,
    pub(super) max_replication_lag: SimDuration,
    pub(super) latency: [Dist; QueryClass::COUNT],
    pub(super) index_log_coeff: f64,
    pub(super) index_rows_unit: f64,
    pub(super) batch_row_coeff: f64,
    pub(super) list_rows_per_unit: f64,
    pub(super) archive_rows_unit: f64,
    pub(super) slow_query_threshold: SimDuration,
    pub(super) max_page_size: u16,
    pub(super) max_batch_rows: u32,
}

/// Why a database configuration is not valid; each variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DbConfigError {
    #[error("shards must be at least 1 (accounts are spread over shards by `account % shards`)")]
    NoShards,
    #[error("max_concurrent must be at least 1: a shard needs at least one query slot")]
    NoConcurrency,
    #[error("max_concurrent must be at most {max}, got {got}: use fewer slots or more shards")]
    TooMuchConcurrency { got: u32, max: u32 },
    #[error("queue_limit must be at most {max}, got {got}: bound the wait queue lower")]
    QueueTooLong { got: u32, max: u32 },
    #[error("replicas must be at most {max} per shard, got {got}")]
    TooManyReplicas { got: u16, max: u16 },
    #[error(
        "max_replication_lag must be greater than 0 when replicas are used: it bounds how far behind a replica can be"
    )]
    NoReplicationLagBound,
    #[error("`{param}` must be a finite number >= 0, got {value}")]
    BadCoefficient { param: &'static str, value: f64 },
    #[error("`{param}` must be a finite number > 0 (a row count per unit of cost), got {value}")]
    BadUnit { param: &'static str, value: f64 },
    #[error("slow_query_threshold must be greater than 0, e.g. 1s")]
    ZeroSlowQueryThreshold,
    #[error("max_page_size must be at least 1 (ECS DescribeInstances allows up to 100)")]
    ZeroPageSize,
    #[error("max_batch_rows must be at least 1 and at most {max}, got {got}")]
    BadBatchLimit { got: u32, max: u32 },
}

impl DbConfig {
    /// Most concurrency slots one server (primary or replica) may have.
    pub const MAX_CONCURRENT: u32 = 1 << 20;
    /// Longest wait queue one server may have.
    pub const MAX_QUEUE_LIMIT: u32 = 1 << 24;
    /// Most read replicas per shard.
    pub const MAX_REPLICAS: u16 = 64;
    /// Largest `max_batch_rows`.
    pub const MAX_BATCH_ROWS: u32 = 1 << 24;

    /// The defaults, all *(assumed)* unless noted:
    /// - `shards` 4; `max_concurrent` 64 per server; `queue_limit` 1,024 per server;
    /// - `replicas` 1 per shard; `replication_lag` lognormal p50 20 ms / p99 500 ms, capped at
    ///   `max_replication_lag` 60 s;
    /// - latency (lognormal, p50 / p99): PointRead 0.5 / 5 ms, FilteredList 2 / 20 ms (before
    ///   the scan factor), Insert 2 / 20 ms, Update 1 / 10 ms, WorkflowStepWrite 1 / 10 ms,
    ///   ArchiveBatch 20 / 200 ms, Scan 2 / 20 ms (before the batch factor: a 500-row page
    ///   costs ≈11×);
    /// - `index_log_coeff` 0.1, `index_rows_unit` 1,000 (a 10⁶-row table doubles the cost of an
    ///   indexed query, 10⁹ rows triples it); `batch_row_coeff` 0.02 (a 100-row insert costs
    ///   ≈3× a single row); `list_rows_per_unit` 10,000 (the unindexed list costs one base
    ///   latency per 10⁴ rows: with a 2 ms median it passes 1 s at ≈5·10⁶ rows);
    ///   `archive_rows_unit` 1,000;
    /// - `slow_query_threshold` 1 s (the usual slow-SQL log threshold);
    /// - `max_page_size` 100 (ECS DescribeInstances `MaxResults` ≤ 100: documented);
    ///   `max_batch_rows` 10,000 rows per insert, append or archive.
    pub fn assumed_defaults() -> DbConfig {
        let ln = |p50_ms: f64, p99_ms: f64| {
            Dist::lognormal_p50_p99(p50_ms * 1e-3, p99_ms * 1e-3)
                .expect("constant default quantiles are valid")
        };
        DbConfig {
            shards: 4,
            max_concurrent: 64,
            queue_limit: 1_024,
            replicas: 1,
            replication_lag: ln(20.0, 500.0),
            max_replication_lag: SimDuration::from_secs(60),
            latency: [
                ln(0.5, 5.0),    // PointRead
                ln(2.0, 20.0),   // FilteredList
                ln(2.0, 20.0),   // Insert
                ln(1.0, 10.0),   // Update
                ln(1.0, 10.0),   // WorkflowStepWrite
                ln(20.0, 200.0), // ArchiveBatch
                ln(2.0, 20.0),   // Scan (before the batch factor)
            ],
            index_log_coeff: 0.1,
            index_rows_unit: 1_000.0,
            batch_row_coeff: 0.02,
            list_rows_per_unit: 10_000.0,
            archive_rows_unit: 1_000.0,
            slow_query_threshold: SimDuration::SECOND,
            max_page_size: 100,
            max_batch_rows: 10_000,
        }
    }

    /// A builder starting from [`DbConfig::assumed_defaults`].
    pub fn builder() -> DbConfigBuilder {
        DbConfigBuilder(DbConfig::assumed_defaults())
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> DbConfigBuilder {
        DbConfigBuilder(self.clone())
    }

    pub fn shards(&self) -> u16 {
        self.shards
    }
    /// Concurrency slots per server (the primary and each replica have their own).
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent
    }
    /// Queries that may wait for a slot, per server; one more is rejected as `Overloaded`.
    pub fn queue_limit(&self) -> u32 {
        self.queue_limit
    }
    /// Read replicas per shard.
    pub fn replicas(&self) -> u16 {
        self.replicas
    }
    /// How far behind the primary a replica read is (seconds), sampled per read.
    pub fn replication_lag(&self) -> &Dist {
        &self.replication_lag
    }
    /// Samples of `replication_lag` are capped at this.
    pub fn max_replication_lag(&self) -> SimDuration {
        self.max_replication_lag
    }
    /// The base latency distribution (seconds) of a query class.
    pub fn latency(&self, class: QueryClass) -> &Dist {
        &self.latency[class.index()]
    }
    pub fn index_log_coeff(&self) -> f64 {
        self.index_log_coeff
    }
    pub fn index_rows_unit(&self) -> f64 {
        self.index_rows_unit
    }
    pub fn batch_row_coeff(&self) -> f64 {
        self.batch_row_coeff
    }
    pub fn list_rows_per_unit(&self) -> f64 {
        self.list_rows_per_unit
    }
    pub fn archive_rows_unit(&self) -> f64 {
        self.archive_rows_unit
    }
    pub fn slow_query_threshold(&self) -> SimDuration {
        self.slow_query_threshold
    }
    /// Largest page a list returns; bigger requests are clamped (and counted).
    pub fn max_page_size(&self) -> u16 {
        self.max_page_size
    }
    /// Most rows one insert, append or archive query may name; more is `BatchTooLarge`.
    pub fn max_batch_rows(&self) -> u32 {
        self.max_batch_rows
    }

    /// The size factor of indexed classes: `1 + index_log_coeff · log2(1 + rows / index_rows_unit)`.
    #[inline]
    pub fn index_factor(&self, rows: u64) -> f64 {
        1.0 + self.index_log_coeff * libm::log2(1.0 + rows as f64 / self.index_rows_unit)
    }

    /// The batch factor of inserts and appends: `1 + batch_row_coeff · (rows − 1)` (1 for 0 or 1 row).
    #[inline]
    pub fn batch_factor(&self, rows: u64) -> f64 {
        1.0 + self.batch_row_coeff * rows.saturating_sub(1) as f64
    }

    /// The scan factor of the unindexed list: `1 + rows / list_rows_per_unit`.
    #[inline]
    pub fn list_factor(&self, rows: u64) -> f64 {
        1.0 + rows as f64 / self.list_rows_per_unit
    }

    /// The factor of an archive batch: `1 + removed / archive_rows_unit`.
    #[inline]
    pub fn archive_factor(&self, removed: u64) -> f64 {
        1.0 + removed as f64 / self.archive_rows_unit
    }

    fn validate(self) -> Result<DbConfig, DbConfigError> {
        if self.shards == 0 {
            return Err(DbConfigError::NoShards);
        }
        if self.max_concurrent == 0 {
            return Err(DbConfigError::NoConcurrency);
        }
        if self.max_concurrent > Self::MAX_CONCURRENT {
            return Err(DbConfigError::TooMuchConcurrency {
                got: self.max_concurrent,
                max: Self::MAX_CONCURRENT,
            });
        }
        if self.queue_limit > Self::MAX_QUEUE_LIMIT {
            return Err(DbConfigError::QueueTooLong {
                got: self.queue_limit,
                max: Self::MAX_QUEUE_LIMIT,
            });
        }
        if self.replicas > Self::MAX_REPLICAS {
            return Err(DbConfigError::TooManyReplicas {
                got: self.replicas,
                max: Self::MAX_REPLICAS,
            });
        }
        if self.replicas > 0 && self.max_replication_lag.is_zero() {
            return Err(DbConfigError::NoReplicationLagBound);
        }
        for (param, value) in [
            ("index_log_coeff", self.index_log_coeff),
            ("batch_row_coeff", self.batch_row_coeff),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(DbConfigError::BadCoefficient { param, value });
            }
        }
        for (param, value) in [
            ("index_rows_unit", self.index_rows_unit),
            ("list_rows_per_unit", self.list_rows_per_unit),
            ("archive_rows_unit", self.archive_rows_unit),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(DbConfigError::BadUnit { param, value });
            }
        }
        if self.slow_query_threshold.is_zero() {
            return Err(DbConfigError::ZeroSlowQueryThreshold);
        }
        if self.max_page_size == 0 {
            return Err(DbConfigError::ZeroPageSize);
        }
        if self.max_batch_rows == 0 || self.max_batch_rows > Self::MAX_BATCH_ROWS {
            return Err(DbConfigError::BadBatchLimit {
                got: self.max_batch_rows,
                max: Self::MAX_BATCH_ROWS,
            });
        }
        Ok(self)
    }
}

/// Sets [`DbConfig`] fields one by one; [`DbConfigBuilder::build`] validates them all.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct DbConfigBuilder(DbConfig);

impl DbConfigBuilder {
    pub fn shards(mut self, n: u16) -> Self {
        self.0.shards = n;
        self
    }
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.0.max_concurrent = n;
        self
    }
    pub fn queue_limit(mut self, n: u32) -> Self {
        self.0.queue_limit = n;
        self
    }
    pub fn replicas(mut self, n: u16) -> Self {
        self.0.replicas = n;
        self
    }
    pub fn replication_lag(mut self, lag: Dist) -> Self {
        self.0.replication_lag = lag;
        self
    }
    pub fn max_replication_lag(mut self, cap: SimDuration) -> Self {
        self.0.max_replication_lag = cap;
        self
    }
    /// The base latency distribution (seconds) of one query class.
    pub fn latency(mut self, class: QueryClass, dist: Dist) -> Self {
        self.0.latency[class.index()] = dist;
        self
    }
    /// The same base latency distribution for every class.
    pub fn latency_all(mut self, dist: Dist) -> Self {
        for d in &mut self.0.latency {
            *d = dist.clone();
        }
        self
    }
    pub fn index_log_coeff(mut self, a: f64) -> Self {
        self.0.index_log_coeff = a;
        self
    }
    pub fn index_rows_unit(mut self, rows: f64) -> Self {
        self.0.index_rows_unit = rows;
        self
    }
    pub fn batch_row_coeff(mut self, b: f64) -> Self {
        self.0.batch_row_coeff = b;
        self
    }
    pub fn list_rows_per_unit(mut self, rows: f64) -> Self {
        self.0.list_rows_per_unit = rows;
        self
    }
    pub fn archive_rows_unit(mut self, rows: f64) -> Self {
        self.0.archive_rows_unit = rows;
        self
    }
    pub fn slow_query_threshold(mut self, t: SimDuration) -> Self {
        self.0.slow_query_threshold = t;
        self
    }
    pub fn max_page_size(mut self, n: u16) -> Self {
        self.0.max_page_size = n;
        self
    }
    pub fn max_batch_rows(mut self, n: u32) -> Self {
        self.0.max_batch_rows = n;
        self
    }
    pub fn build(self) -> Result<DbConfig, DbConfigError> {
        self.0.validate()
    }
}
