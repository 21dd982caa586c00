//! Game days in a built world: alerts judged on each closed time-series bucket, runbook steps
//! run between events when due, and the 1-5-10 timeline of every fault at the end.

use super::{Msg, Part, Topology, TopologyError, World};
use crate::api::node::{ApiNode, NodeCache, NodeTimer};
use crate::cache::{Broadcaster, CacheKey, Cached, CachedInstance, L1Cache};
use crate::gameday::{Action, ActionRun, FaultTimeline, Firing, GameDay, GameDayConfig, timelines};
use crate::kernel::{SimDuration, SimTime};
use crate::metrics::series::SeriesRow;

/// `f` with at most 4 decimals, trailing zeros dropped (`2`, `0.25`): products of factors
/// carry float noise that a note should not show.
fn short(f: f64) -> String {
    let s = format!("{f:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The most API nodes a world may have (built or added by a scale-out).
pub const MAX_NODES: u32 = 1024;

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
        let mut nodes = self.nodes;
        for s in &cfg.runbook {
            match s.action {
                Action::WarmCache | Action::FlushCache if !self.has_l2() => {
                    return Err(TopologyError::GameDay(format!(
                        "runbook action {} needs a cache (add [topology.cache])",
                        s.action.name()
                    )));
                }
                Action::ScaleOut { nodes: n } => {
                    nodes = nodes.saturating_add(n);
                    if n == 0 || nodes > MAX_NODES {
                        return Err(TopologyError::GameDay(format!(
                            "runbook scale_out of {n} nodes would make {nodes} (at most {MAX_NODES}, at least 1 added): lower `nodes`"
                        )));
                    }
                }
                Action::RaiseQuota { factor }
                    if !(factor.is_finite() && factor > 1.0 && factor <= 1e6) =>
                {
                    return Err(TopologyError::GameDay(format!(
                        "runbook raise_quota factor {factor} is out of range: give a factor > 1 and <= 1e6, e.g. factor = 10"
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
            Action::RaiseQuota { factor } => {
                let t = self.gateway_mut().throttle_mut();
                t.raise_quota(*factor);
                format!(
                    "raised every throttling quota x{}: limits now x{} of configured (runbook x{}, quota fault x{})",
                    short(*factor),
                    short(t.factor()),
                    short(t.runbook_factor()),
                    short(t.quota_factor())
                )
            }
            Action::EnableShedding => {
                let n = self.nodes.len();
                let already = (0..n)
                    .filter(|&i| self.node_mut(i).config().sheds_expired())
                    .count();
                for i in 0..n {
                    self.node_mut(i).set_shed_expired(true);
                }
                format!(
                    "{n} nodes now drop queued requests past their deadline (503); {already} already did"
                )
            }
            Action::ScaleOut { nodes } => {
                let before = self.nodes.len();
                let added = self.add_nodes(*nodes, now);
                if added.is_empty() {
                    format!("added no node: already at the maximum of {MAX_NODES}")
                } else {
                    format!(
                        "added {} nodes (node.{} to node.{}) configured like node.0, cold L1s and fresh heaps: {} -> {} nodes",
                        added.len(),
                        added.start,
                        added.end - 1,
                        before,
                        self.nodes.len()
                    )
                }
            }
        }
    }

    /// Adds up to `n` API nodes at `now` (at most [`MAX_NODES`] in all), between events: each
    /// configured like node 0 as it is now (shedding included), with a fresh heap whose
    /// background allocation starts at `now`, a cold L1, its own metrics (`node.<i>.*`) and
    /// random streams (`node.<i>`, as a topology built with more nodes would fork), its GC
    /// check scheduled at `now`, planted bugs and observation as the others. The gateway routes
    /// to them from the next request; every node's and the workflow engine's L1 invalidations
    /// reach them from the next write. Returns the indices of the nodes added.
    ///
    /// Faults already in force do not reach the new nodes until their next transition (a
    /// partition of `nodes`, a clock skew of every node).
    pub fn add_nodes(&mut self, n: u32, now: SimTime) -> std::ops::Range<usize> {
        let before = self.nodes.len();
        let n = (n as usize).min((MAX_NODES as usize).saturating_sub(before));
        let at = now.max(self.sim.now());
        let seed = self.sim.seed();
        let cfg = self.node_mut(0).config().clone();
        let observe = self.invariants.observe;
        let series = self.series.is_some();
        let template = self.template.clone();
        for k in before..before + n {
            let name = format!("node.{k}");
            let mut node = ApiNode::new(
                cfg.clone(),
                seed.fork(&name),
                self.gateway,
                self.db,
                template.deps,
                &name,
                self.sim.metrics_mut(),
            );
            if let (Some(c), Some(l2)) = (&template.cache, self.l2) {
                node = node.with_cache(NodeCache {
                    l1: L1Cache::new(c.l1.clone(), seed.fork(&format!("{name}.l1"))),
                    l2,
                    l2_ttl: c.l2_ttl,
                    l2_negative_ttl: c.l2_negative_ttl,
                    // The nodes so far; itself and the nodes added after it are added below.
                    broadcaster: Broadcaster::new(
                        self.nodes.clone(),
                        c.invalidation_delay.clone(),
                        seed.fork(&format!("{name}.invalidation")),
                    ),
                    writer_invalidates: !c.invalidation.is_binlog(),
                });
            }
            node.start_heap_at(at);
            node.plant_bugs(template.bugs);
            if observe {
                node.observe();
            }
            if series {
                node.enable_pool_window();
            }
            let id = self.sim.add(&name, Part::Node(Box::new(node)));
            self.sim
                .schedule(at, id, Msg::Node(NodeTimer::GcCheck))
                .expect("not before the last event");
            let index = self.gateway_mut().add_node(id);
            debug_assert_eq!(index, k, "gateway and world number nodes alike");
            self.nodes.push(id);
        }
        let added: Vec<_> = self.nodes[before..].to_vec();
        if template.cache.is_some() {
            for i in 0..self.nodes.len() {
                let node = self.node_mut(i);
                for &id in &added {
                    node.add_cache_peer(id);
                }
            }
            if self.workflow.is_some() {
                let engine = self.workflow_mut();
                for &id in &added {
                    engine.add_cache_node(id);
                }
            }
            if let Some(rid) = self.reconciler
                && let Part::Reconciler(r) = self.sim.component_mut(rid)
                && let Some(c) = r.cache_mut()
            {
                for &id in &added {
                    c.broadcaster.add_node(id);
                }
            }
            if let Some(iid) = self.invalidator
                && let Part::Invalidator(inv) = self.sim.component_mut(iid)
            {
                for &id in &added {
                    inv.add_node(id);
                }
            }
        }
        self.faults_reach_new_nodes(at);
        before..before + n
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
