//! Game days in a built world: alerts judged on each closed time-series bucket, runbook steps
//! run between events when due, and the 1-5-10 timeline of every fault at the end.

use super::{Part, Topology, TopologyError, World};
use crate::cache::{CacheKey, Cached, CachedInstance};
use crate::gameday::{Action, ActionRun, FaultTimeline, Firing, GameDay, GameDayConfig, timelines};
use crate::kernel::{SimDuration, SimTime};
use crate::metrics::series::SeriesRow;

/// What a game day reports.
#[derive(Clone, Debug, PartialEq)]
pub struct GameDayResult {
    pub config: GameDayConfig,
    pub firings: Vec<Firing>,
    pub actions: Vec<ActionRun>,
    pub timelines: Vec<FaultTimeline>,
}

/// The SLO a game day judges recovery by: p99 (ms) and 5XX-rate targets, held this long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecoverySlo {
    pub p99_ms: Option<f64>,
    pub rate_5xx_max: Option<f64>,
    pub hold: SimDuration,
}

impl RecoverySlo {
    fn met(&self, r: &SeriesRow) -> bool {
        let p99 = self
            .p99_ms
            .is_none_or(|t| r.latency_p99_ns.is_none_or(|ns| ns as f64 / 1e6 <= t));
        let e = self
            .rate_5xx_max
            .is_none_or(|t| r.rate_5xx().is_none_or(|x| x <= t));
        p99 && e
    }
}

impl Topology {
    /// Runs a game day: alert rules and runbook steps, recovery judged by `slo`. Turns the
    /// time series on (alerts read it).
    pub fn with_gameday(
        mut self,
        cfg: GameDayConfig,
        slo: RecoverySlo,
    ) -> Result<Topology, TopologyError> {
        for s in &cfg.runbook {
            match s.action {
                Action::WarmCache | Action::FlushCache if !self.has_l2() => {
                    return Err(TopologyError::GameDay(format!(
                        "runbook action {} needs a cache (add [topology.cache])",
                        s.action.name()
                    )));
                }
                _ => {}
            }
        }
        self.series = true;
        self.gameday = Some((cfg, slo));
        Ok(self)
    }
}

impl World {
    /// Judges the bucket just closed.
    pub(super) fn gameday_on_row(&mut self) {
        let (Some(g), Some(s)) = (&mut self.gameday, &self.series) else {
            return;
        };
        if let Some(r) = s.rows().last() {
            g.on_row(r);
        }
    }

    pub(super) fn next_runbook_at(&self) -> Option<SimTime> {
        self.gameday.as_ref().and_then(GameDay::next_due)
    }

    /// Runs the runbook steps due at `now`.
    pub(super) fn run_runbook(&mut self, now: SimTime) {
        let Some(g) = &mut self.gameday else { return };
        let steps = g.take_due(now);
        for k in steps {
            let action = self
                .gameday
                .as_ref()
                .map(|g| g.config().runbook[k].action.clone())
                .expect("a game day");
            let note = self.act(&action, now);
            if let Some(g) = &mut self.gameday {
                g.actions.push(ActionRun {
                    step: k,
                    at: now,
                    note,
                });
            }
        }
    }

    /// Does what an operator would; returns what happened.
    fn act(&mut self, action: &Action, now: SimTime) -> String {
        match action {
            Action::FailOverDb => {
                let db = self.db_mut();
                let shards = db.config().shards();
                let down = (0..shards).filter(|&s| !db.is_available(s)).count();
                for s in 0..shards {
                    db.set_available(s, true);
                }
                format!("promoted a replica on {down} of {shards} shards")
            }
            Action::FlushCache => {
                let mut n = 0;
                if self.l2.is_some() {
                    n += self.l2_mut().flush();
                }
                for i in 0..self.nodes.len() {
                    self.node_mut(i).flush_cache();
                }
                format!("flushed {n} L2 entries and every node's L1")
            }
            Action::WarmCache => {
                let ttl = self.l2_ttl;
                let Part::Db(db) = self.sim.component(self.db) else {
                    unreachable!("the db id names the db")
                };
                let rows: Vec<_> = db
                    .instance_rows()
                    .filter(|r| r.state != crate::api::types::InstanceState::Deleted)
                    .collect();
                let l2 = self.l2_mut();
                for r in &rows {
                    l2.warm(
                        now,
                        CacheKey {
                            account: r.account,
                            instance: r.id,
                        },
                        Cached::Value(CachedInstance {
                            state: r.state,
                            instance_type: r.instance_type,
                            updated_at: r.updated_at,
                        }),
                        ttl,
                        r.updated_at,
                    );
                }
                format!("loaded {} instance rows into the L2", rows.len())
            }
            other => format!("{} is not available in this build", other.name()),
        }
    }

    /// The game day's report (firings, runbook, 1-5-10 timelines), when there is one.
    pub(super) fn gameday_result(&self) -> Option<GameDayResult> {
        let g = self.gameday.as_ref()?;
        let slo = self.recovery_slo?;
        let starts: Vec<_> = self
            .fault_log()
            .iter()
            .map(|e| (e.index, e.edge, e.at))
            .collect();
        let faults = self
            .fault_plan()
            .map(|p| p.faults().to_vec())
            .unwrap_or_default();
        let rows = self.series.as_ref().map_or(&[][..], |s| s.rows());
        let met = |r: &SeriesRow| slo.met(r);
        Some(GameDayResult {
            config: g.config().clone(),
            firings: g.firings().to_vec(),
            actions: g.actions().to_vec(),
            timelines: timelines(
                &faults,
                &starts,
                &g.config().alerts,
                g.firings(),
                rows,
                &met,
                slo.hold,
                self.traffic_end,
            ),
        })
    }
}
