//! Game days: alert rules evaluated on the time series as the run goes, runbook actions fired
//! at given times or when an alert fires, and the 1-5-10 timeline of every fault (detected
//! within 1 minute, located within 5, recovered within 10).
//!
//! Alerts are judged on closed time-series buckets only (between events), so a game day is
//! still a pure function of (scenario, seed), and replaying it shows the same alerts at the
//! same instants.

use crate::faults::{Edge, Fault, Target};
use crate::kernel::{SimDuration, SimTime};
use crate::metrics::series::SeriesRow;
use std::fmt;

/// What an alert watches, per time-series bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// 5XX responses / responses.
    Rate5xx,
    /// p99 latency of responses, ms.
    P99Ms,
    /// Stop-the-world time of all nodes in the bucket, ms.
    GcPauseMs,
    /// Requests waiting for a worker or a core, all nodes.
    QueueDepth,
    /// p99 wait for a DB connection, ms.
    PoolWaitP99Ms,
    /// L1 hits / lookups.
    L1HitRatio,
    /// Queries the database took into service, per second.
    DbQueriesPerS,
    /// Responses per second.
    ThroughputPerS,
    /// L2 requests answered with an error, per second.
    L2ErrorsPerS,
    /// The binlog consumer's lag: the largest lag of the row changes the invalidator received
    /// in the bucket, ms (no value without binlog invalidation or changes).
    FeedLagMs,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::Rate5xx,
        Metric::P99Ms,
        Metric::GcPauseMs,
        Metric::QueueDepth,
        Metric::PoolWaitP99Ms,
        Metric::L1HitRatio,
        Metric::DbQueriesPerS,
        Metric::ThroughputPerS,
        Metric::L2ErrorsPerS,
        Metric::FeedLagMs,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Metric::Rate5xx => "rate_5xx",
            Metric::P99Ms => "p99_ms",
            Metric::GcPauseMs => "gc_pause_ms",
            Metric::QueueDepth => "queue_depth",
            Metric::PoolWaitP99Ms => "pool_wait_p99_ms",
            Metric::L1HitRatio => "l1_hit_ratio",
            Metric::DbQueriesPerS => "db_queries_per_s",
            Metric::ThroughputPerS => "throughput_per_s",
            Metric::L2ErrorsPerS => "l2_errors_per_s",
            Metric::FeedLagMs => "feed_lag_ms",
        }
    }

    pub fn from_name(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The metric's value in one bucket (`None` when the bucket has nothing to measure).
    pub fn value(self, r: &SeriesRow) -> Option<f64> {
        let ms = |ns: u64| ns as f64 / 1e6;
        let per_s = |n: u64| {
            let s = r.seconds();
            (s > 0.0).then(|| n as f64 / s)
        };
        match self {
            Metric::Rate5xx => r.rate_5xx(),
            Metric::P99Ms => r.latency_p99_ns.map(ms),
            Metric::GcPauseMs => Some(ms(r.gc_pause_ns)),
            Metric::QueueDepth => Some(r.queue_depth as f64),
            Metric::PoolWaitP99Ms => r.pool_wait_p99_ns.map(ms),
            Metric::L1HitRatio => r.l1_hit_ratio(),
            Metric::DbQueriesPerS => per_s(r.db_queries),
            Metric::ThroughputPerS => per_s(r.requests),
            Metric::L2ErrorsPerS => per_s(r.l2_errors),
            Metric::FeedLagMs => r.feed_lag_max_ns.map(ms),
        }
    }
}

/// An alert: fires when `metric` is past `threshold` in every bucket for `hold`, resolves at
/// the first bucket where it is not. `component` is what the alert names (for "located").
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub metric: Metric,
    /// `true`: fires above the threshold; `false`: below.
    pub above: bool,
    pub threshold: f64,
    pub hold: SimDuration,
    pub component: String,
}

impl AlertRule {
    fn breached(&self, r: &SeriesRow) -> bool {
        match self.metric.value(r) {
            Some(v) if self.above => v > self.threshold,
            Some(v) => v < self.threshold,
            None => false,
        }
    }
}

/// What an operator does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Promote a replica: every shard's primary is available again.
    FailOverDb,
    /// Add API nodes (same configuration as node 0, cold L1s, fresh heaps), routed to at once
    /// (`World::add_nodes`).
    ScaleOut { nodes: u32 },
    /// Flush the L2 and every node's L1.
    FlushCache,
    /// Load every instance row into the L2.
    WarmCache,
    /// Multiply every API's throttling limit by `factor` (> 1): configured × quota fault ×
    /// runbook, so the raise composes with a `quota_too_low` fault and outlives it.
    RaiseQuota { factor: f64 },
    /// Nodes drop queued requests whose deadline has passed (503) instead of working on them.
    EnableShedding,
}

impl Action {
    pub const NAMES: [&'static str; 6] = [
        "fail_over_db",
        "scale_out",
        "flush_cache",
        "warm_cache",
        "raise_quota",
        "enable_shedding",
    ];
    pub fn name(&self) -> &'static str {
        match self {
            Action::FailOverDb => "fail_over_db",
            Action::ScaleOut { .. } => "scale_out",
            Action::FlushCache => "flush_cache",
            Action::WarmCache => "warm_cache",
            Action::RaiseQuota { .. } => "raise_quota",
            Action::EnableShedding => "enable_shedding",
        }
    }
}

/// When a runbook step runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    At(SimTime),
    /// `delay` after alert `alert` fires (the operator's reaction time); once.
    OnAlert {
        alert: usize,
        delay: SimDuration,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunbookStep {
    pub action: Action,
    pub trigger: Trigger,
}

/// A game day's alert rules and runbook.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GameDayConfig {
    pub alerts: Vec<AlertRule>,
    pub runbook: Vec<RunbookStep>,
}

impl GameDayConfig {
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.runbook.is_empty()
    }
}

/// One firing of an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firing {
    pub alert: usize,
    pub fired_at: SimTime,
    pub resolved_at: Option<SimTime>,
}

/// One runbook step as it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRun {
    pub step: usize,
    pub at: SimTime,
    /// What it did, or why it could not.
    pub note: String,
}

/// The game day's state during a run.
#[derive(Clone, Debug)]
pub struct GameDay {
    cfg: GameDayConfig,
    /// Per alert: since when its condition has held (unbroken), and whether it is firing.
    breached_since: Vec<Option<SimTime>>,
    firing: Vec<Option<usize>>,
    firings: Vec<Firing>,
    /// Runbook steps due: (at, step), kept sorted; steps already scheduled are marked.
    due: Vec<(SimTime, usize)>,
    scheduled: Vec<bool>,
    pub(crate) actions: Vec<ActionRun>,
}

/// Firings kept per run at most (an alert that flaps is still reported, up to this).
const MAX_FIRINGS: usize = 10_000;

impl GameDay {
    pub fn new(cfg: GameDayConfig) -> GameDay {
        let n = cfg.alerts.len();
        let mut g = GameDay {
            breached_since: vec![None; n],
            firing: vec![None; n],
            firings: Vec::new(),
            due: Vec::new(),
            scheduled: vec![false; cfg.runbook.len()],
            actions: Vec::new(),
            cfg,
        };
        for (i, s) in g.cfg.runbook.iter().enumerate() {
            if let Trigger::At(t) = s.trigger {
                g.due.push((t, i));
                g.scheduled[i] = true;
            }
        }
        g.due.sort();
        g
    }

    pub fn config(&self) -> &GameDayConfig {
        &self.cfg
    }
    pub fn firings(&self) -> &[Firing] {
        &self.firings
    }
    pub fn actions(&self) -> &[ActionRun] {
        &self.actions
    }

    /// Judges one closed bucket: alerts fire (at the bucket's end) or resolve; runbook steps
    /// waiting on a firing alert are scheduled.
    pub fn on_row(&mut self, r: &SeriesRow) {
        for (i, rule) in self.cfg.alerts.iter().enumerate() {
            if rule.breached(r) {
                let since = *self.breached_since[i].get_or_insert(r.start);
                if self.firing[i].is_none() && r.end.saturating_since(since) >= rule.hold {
                    if self.firings.len() < MAX_FIRINGS {
                        self.firing[i] = Some(self.firings.len());
                        self.firings.push(Firing {
                            alert: i,
                            fired_at: r.end,
                            resolved_at: None,
                        });
                    }
                    for (k, s) in self.cfg.runbook.iter().enumerate() {
                        if let Trigger::OnAlert { alert, delay } = s.trigger {
                            if alert == i && !self.scheduled[k] {
                                self.scheduled[k] = true;
                                self.due.push((r.end.saturating_add(delay), k));
                            }
                        }
                    }
                }
            } else {
                self.breached_since[i] = None;
                if let Some(f) = self.firing[i].take() {
                    self.firings[f].resolved_at = Some(r.end);
                }
            }
        }
        self.due.sort();
    }

    /// When the next runbook step is due.
    pub fn next_due(&self) -> Option<SimTime> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Takes the steps due at or before `now`, in order.
    pub fn take_due(&mut self, now: SimTime) -> Vec<usize> {
        let n = self.due.iter().take_while(|(t, _)| *t <= now).count();
        self.due.drain(..n).map(|(_, k)| k).collect()
    }
}

/// Which component a fault hits, as alerts name it.
pub fn fault_component(f: &Fault) -> String {
    match f.target() {
        Target::Nodes | Target::Node(_) => "nodes".into(),
        Target::Dependency { name, .. } => format!("dep.{name}"),
        other => other.to_string(),
    }
}

/// One fault's 1-5-10 timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultTimeline {
    pub fault: usize,
    pub start: SimTime,
    pub component: String,
    /// First alert firing at or after the start.
    pub detected: Option<SimTime>,
    /// First firing of an alert naming the fault's component.
    pub located: Option<SimTime>,
    /// When the SLO was back within target (held for the recovery hold).
    pub recovered: Option<SimTime>,
}

impl FaultTimeline {
    fn within(&self, t: Option<SimTime>, minutes: u64) -> bool {
        t.is_some_and(|t| t.saturating_since(self.start) <= SimDuration::from_secs(60 * minutes))
    }
    pub fn detected_in_1(&self) -> bool {
        self.within(self.detected, 1)
    }
    pub fn located_in_5(&self) -> bool {
        self.within(self.located, 5)
    }
    pub fn recovered_in_10(&self) -> bool {
        self.within(self.recovered, 10)
    }
}

impl fmt::Display for FaultTimeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rel = |t: Option<SimTime>| {
            t.map_or("never".to_string(), |t| {
                format!("+{:.0}s", t.saturating_since(self.start).as_secs_f64())
            })
        };
        let ok = |b: bool| if b { "met" } else { "MISSED" };
        write!(
            f,
            "fault {} ({}) at {}: detected {} (1 min {}), located {} (5 min {}), recovered {} (10 min {})",
            self.fault,
            self.component,
            self.start,
            rel(self.detected),
            ok(self.detected_in_1()),
            rel(self.located),
            ok(self.located_in_5()),
            rel(self.recovered),
            ok(self.recovered_in_10())
        )
    }
}

/// Whether a bucket meets the SLO: p99 and 5XX rate within target (an unset target is met).
pub type SloCheck<'a> = &'a dyn Fn(&SeriesRow) -> bool;

/// The 1-5-10 timeline of every fault that started: detection and location from the alert
/// firings; recovery is the end of the first run of `hold` worth of buckets meeting the SLO
/// after the fault's impact (the first bucket missing the SLO between its start and `hold`
/// after its end); a fault that never made the SLO miss recovered at its start. Buckets after
/// `traffic_end` (the drain) are not judged.
#[allow(clippy::too_many_arguments)]
pub fn timelines(
    faults: &[Fault],
    starts: &[(usize, Edge, SimTime)],
    alerts: &[AlertRule],
    firings: &[Firing],
    rows: &[SeriesRow],
    slo_met: SloCheck<'_>,
    hold: SimDuration,
    traffic_end: SimTime,
) -> Vec<FaultTimeline> {
    starts
        .iter()
        .filter(|(_, e, _)| *e == Edge::Start)
        .map(|&(i, _, start)| {
            let component = fault_component(&faults[i]);
            let after: Vec<&Firing> = firings.iter().filter(|f| f.fired_at >= start).collect();
            let detected = after.iter().map(|f| f.fired_at).min();
            let located = after
                .iter()
                .filter(|f| {
                    let c = &alerts[f.alert].component;
                    *c == component || (component.starts_with("dep.") && c == "deps")
                })
                .map(|f| f.fired_at)
                .min();
            let later: Vec<&SeriesRow> = rows
                .iter()
                .filter(|r| r.end > start && r.end <= traffic_end)
                .collect();
            let impact_end = faults[i].end().saturating_add(hold);
            let first_miss = later
                .iter()
                .position(|r| !slo_met(r) && r.start < impact_end);
            let recovered = match first_miss {
                None => Some(start),
                Some(m) => {
                    let mut run_start: Option<SimTime> = None;
                    let mut found = None;
                    for r in &later[m..] {
                        if slo_met(r) {
                            let s = *run_start.get_or_insert(r.start);
                            if r.end.saturating_since(s) >= hold {
                                found = Some(r.end);
                                break;
                            }
                        } else {
                            run_start = None;
                        }
                    }
                    found
                }
            };
            FaultTimeline {
                fault: i,
                start,
                component,
                detected,
                located,
                recovered,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
