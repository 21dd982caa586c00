//! The asynchronous data-cleanup framework: a periodic job that archives rows older than a
//! retention (deleted instances, closed workflows and their history, expired idempotency
//! records) in rate-limited batches that cost database capacity like any other query, so hot
//! tables, and the unindexed scans over them, stay bounded.
//!
//! Each run walks every (table, shard) pair; per pair it sends one `ArchiveRows` batch at a time
//! and sends the next only when the previous one came back full, at most `max_batches_per_run`
//! batches per run. One query is in flight at a time: the job's load on the database is bounded
//! by construction.

use crate::api::types::AccountId;
use crate::db::{DbOp, DbQuery, DbReply, DbResult, Table};
use crate::kernel::{ComponentId, Outbox, SimDuration};

/// A validated cleanup configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanupConfig {
    period: SimDuration,
    retention: SimDuration,
    batch_rows: u32,
    max_batches_per_run: u32,
    tables: Vec<Table>,
    shards: u16,
}

/// Why a cleanup configuration is not valid; each variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CleanupConfigError {
    #[error("`period` must be longer than 0 (e.g. \"10m\")")]
    ZeroPeriod,
    #[error("`batch_rows` must be 1..=10000 (the database's batch limit), got {0}")]
    BatchRows(u32),
    #[error("`max_batches_per_run` must be at least 1")]
    NoBatches,
    #[error("`tables` must name at least one table")]
    NoTables,
    #[error("`shards` must match the database's shard count (at least 1)")]
    NoShards,
}

impl CleanupConfig {
    /// `shards` must be the database's shard count: the job sends one batch stream per shard
    /// (routing by account = shard index).
    pub fn new(
        period: SimDuration,
        retention: SimDuration,
        batch_rows: u32,
        max_batches_per_run: u32,
        tables: &[Table],
        shards: u16,
    ) -> Result<CleanupConfig, CleanupConfigError> {
        if period.is_zero() {
            return Err(CleanupConfigError::ZeroPeriod);
        }
        if !(1..=10_000).contains(&batch_rows) {
            return Err(CleanupConfigError::BatchRows(batch_rows));
        }
        if max_batches_per_run == 0 {
            return Err(CleanupConfigError::NoBatches);
        }
        if tables.is_empty() {
            return Err(CleanupConfigError::NoTables);
        }
        if shards == 0 {
            return Err(CleanupConfigError::NoShards);
        }
        Ok(CleanupConfig {
            period,
            retention,
            batch_rows,
            max_batches_per_run,
            tables: tables.to_vec(),
            shards,
        })
    }

    /// Every 10 minutes, archive what is older than 1 hour in batches of 1,000 rows, at most 200
    /// batches a run, from every table *(assumed figures)*.
    pub fn hourly_retention(shards: u16) -> CleanupConfig {
        CleanupConfig::new(
            SimDuration::from_secs(600),
            SimDuration::HOUR,
            1_000,
            200,
            &Table::ALL,
            shards,
        )
        .expect("valid defaults")
    }

    pub fn period(&self) -> SimDuration {
        self.period
    }
}

/// The job's own wake-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupTick;

/// What the job did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupStats {
    pub runs: u64,
    pub batches: u64,
    /// Rows archived per table, in `Table::ALL` order.
    pub rows_archived: [u64; Table::COUNT],
    /// Batches the database refused (overloaded, down).
    pub refused: u64,
    /// Runs that stopped at `max_batches_per_run` with work left.
    pub runs_cut_short: u64,
}

/// The cleanup job component.
#[derive(Clone, Debug)]
pub struct Cleanup {
    cfg: CleanupConfig,
    db: ComponentId,
    /// Position in the current run: index into tables × shards, batches sent this run.
    cursor: usize,
    batches_this_run: u32,
    running: bool,
    stats: CleanupStats,
}

impl Cleanup {
    pub fn new(cfg: CleanupConfig, db: ComponentId) -> Cleanup {
        Cleanup {
            cfg,
            db,
            cursor: 0,
            batches_this_run: 0,
            running: false,
            stats: CleanupStats::default(),
        }
    }

    pub fn stats(&self) -> &CleanupStats {
        &self.stats
    }

    /// The first run happens one period after the start.
    pub fn first_delay(&self) -> SimDuration {
        self.cfg.period
    }

    fn pairs(&self) -> usize {
        self.cfg.tables.len() * usize::from(self.cfg.shards)
    }

    fn send_batch<M: From<DbQuery> + From<CleanupTick>>(&mut self, out: &mut Outbox<'_, M>) {
        let n_shards = usize::from(self.cfg.shards);
        let table = self.cfg.tables[self.cursor / n_shards];
        let shard = (self.cursor % n_shards) as u32;
        let older_than = out.now().saturating_sub(self.cfg.retention);
        let q = DbQuery {
            tag: self.stats.batches,
            reply_to: out.me(),
            account: AccountId(shard),
            read_replica: false,
            op: DbOp::ArchiveRows {
                table,
                max_rows: self.cfg.batch_rows,
                older_than,
            },
        };
        self.batches_this_run += 1;
        self.stats.batches += 1;
        out.send(self.db, SimDuration::ZERO, M::from(q));
    }

    pub fn on_tick<M: From<DbQuery> + From<CleanupTick>>(&mut self, out: &mut Outbox<'_, M>) {
        out.schedule(self.cfg.period, M::from(CleanupTick));
        if self.running {
            // The previous run is still going (a slow database): skip this one.
            return;
        }
        self.running = true;
        self.stats.runs += 1;
        self.cursor = 0;
        self.batches_this_run = 0;
        self.send_batch(out);
    }

    pub fn on_db_reply<M: From<DbQuery> + From<CleanupTick>>(
        &mut self,
        r: DbReply,
        out: &mut Outbox<'_, M>,
    ) {
        let n_shards = usize::from(self.cfg.shards);
        let full = match r.result {
            Ok(DbResult::Archived(n)) => {
                let table = self.cfg.tables[self.cursor / n_shards];
                self.stats.rows_archived[table.index()] += u64::from(n);
                n == self.cfg.batch_rows
            }
            Ok(_) => false,
            Err(_) => {
                self.stats.refused += 1;
                false
            }
        };
        if !full {
            self.cursor += 1;
        }
        if self.cursor >= self.pairs() {
            self.running = false;
            return;
        }
        if self.batches_this_run >= self.cfg.max_batches_per_run {
            self.stats.runs_cut_short += 1;
            self.running = false;
            return;
        }
        self.send_batch(out);
    }
}
