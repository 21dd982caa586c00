//! Fault injection in a built world: the plan's transitions are due-points of
//! [`World::run_until`], and at each one every affected component gets its combined fault state
//! (or a one-off action: a crash, a flush, a failover) between events, so a run with faults is
//! still a pure function of (scenario, seed).
//!
//! Each area has its own applier: `deps` (dependency latency, errors, blackholes, partial
//! outages), `nodes` (crashes, pauses, leaks, pool leaks, clock skew, partitions), `data` (DB
//! slow SQL, failover, replica lag, L2 loss and flush, workflow workers) and `traffic` (surges,
//! hot tenants, client retries, quotas). An applier sees every fault step of the transition and
//! acts on its own kinds only.

mod data;
mod deps;
mod nodes;
mod traffic;

use super::{Topology, TopologyError, World};
use crate::faults::plan::PlanWalk;
use crate::faults::{Edge, Fault, FaultKind, FaultPlan, FaultStep, PlantedBugs, Target};
use crate::kernel::{RootSeed, SimRng, SimTime};

/// A fault's start or end as it happened in a run, for reports and game days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultEvent {
    pub index: usize,
    pub edge: Edge,
    pub at: SimTime,
}

/// The plan a world follows, where it is in it, and each fault's random substream.
#[derive(Clone, Debug)]
pub(crate) struct FaultRuntime {
    plan: FaultPlan,
    walk: PlanWalk,
    next: Option<SimTime>,
    rngs: Vec<SimRng>,
    log: Vec<FaultEvent>,
}

impl FaultRuntime {
    pub(crate) fn new(plan: FaultPlan, seed: RootSeed) -> FaultRuntime {
        let rngs = (0..plan.len())
            .map(|i| seed.fork(&format!("fault.{i}")))
            .collect();
        FaultRuntime {
            walk: PlanWalk::new(&plan),
            next: plan.next_transition(SimTime::ZERO, true),
            plan,
            rngs,
            log: Vec::new(),
        }
    }
}

/// What an applier is handed for one transition.
pub(crate) struct Transition<'a, 'r> {
    pub steps: &'a [FaultStep<'a>],
    /// Per fault index: its random substream.
    pub rngs: &'r mut [SimRng],
    /// The previous transition's instant (continuous effects accrue from there).
    pub since: SimTime,
    pub now: SimTime,
}

impl Transition<'_, '_> {
    /// The steps of faults whose kind `pick` accepts.
    pub fn of(&self, pick: impl Fn(&FaultKind) -> bool) -> impl Iterator<Item = &FaultStep<'_>> {
        self.steps.iter().filter(move |s| pick(s.fault.kind()))
    }
}

impl World {
    /// When the fault plan next changes something, if it does.
    pub(super) fn next_fault_at(&self) -> Option<SimTime> {
        self.faults.as_ref().and_then(|f| f.next)
    }

    /// Applies the plan's transition at `now` (between events).
    pub(super) fn apply_faults(&mut self, now: SimTime) {
        let Some(mut rt) = self.faults.take() else {
            return;
        };
        let since = rt.walk.last();
        let steps = rt.walk.step(&rt.plan, now);
        for s in &steps {
            if let Some(edge) = s.edge {
                rt.log.push(FaultEvent {
                    index: s.index,
                    edge,
                    at: now,
                });
            }
        }
        let mut t = Transition {
            steps: &steps,
            rngs: &mut rt.rngs,
            since,
            now,
        };
        deps::apply(self, &mut t);
        nodes::apply(self, &mut t);
        data::apply(self, &mut t);
        traffic::apply(self, &mut t);
        drop(steps);
        rt.next = rt.plan.next_transition(now, false);
        self.faults = Some(rt);
    }

    /// Puts the faults in force now on nodes added mid-run (a runbook's scale-out), as if they
    /// had been there at the last transition: the partitions of every active partition fault
    /// (re-put in force with the new nodes on their sides) and the clock skews of the nodes.
    /// Other kinds reach them at their next transition (pauses, leaks accrued since the node started) or not at
    /// all (a crash or a connection leak happened to the processes that were there).
    pub(super) fn faults_reach_new_nodes(&mut self, now: SimTime) {
        let Some(mut rt) = self.faults.take() else {
            return;
        };
        let steps: Vec<FaultStep<'_>> = rt
            .plan
            .faults()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.start() <= now && now < f.end())
            .map(|(index, fault)| FaultStep {
                index,
                fault,
                edge: None,
                intensity: fault.intensity(now),
            })
            .collect();
        let t = Transition {
            steps: &steps,
            rngs: &mut rt.rngs,
            since: rt.walk.last(),
            now,
        };
        deps::put_partitions(self, &t);
        nodes::clock_skews(self, &t);
        drop(steps);
        self.faults = Some(rt);
    }

    /// Every fault start and end so far, in order.
    pub fn fault_log(&self) -> &[FaultEvent] {
        self.faults.as_ref().map_or(&[], |f| &f.log)
    }

    /// The fault plan this world follows (empty without faults).
    pub fn fault_plan(&self) -> Option<&FaultPlan> {
        self.faults.as_ref().map(|f| &f.plan)
    }
}

impl Topology {
    /// Injects `plan`'s faults. Every target must exist in this topology: node indices below
    /// the node count, dependencies and endpoints among the mocks, an L2 for L2 faults, the
    /// workflow engine for worker crashes, and the accounts faults are scoped to (or a hot
    /// tenant names) among the traffic's.
    pub fn with_faults(mut self, plan: FaultPlan) -> Result<Topology, TopologyError> {
        for (i, f) in plan.faults().iter().enumerate() {
            self.check_target(f.target(), f)
                .map_err(|reason| TopologyError::FaultTarget { index: i, reason })?;
            if let FaultKind::HotTenant { account, .. } = f.kind() {
                if *account >= self.traffic.accounts {
                    return Err(TopologyError::FaultTarget {
                        index: i,
                        reason: format!(
                            "hot_tenant account {account} does not exist: accounts are 0 to {}",
                            self.traffic.accounts.saturating_sub(1)
                        ),
                    });
                }
            }
            if let Some(account) = f.account() {
                if account.0 >= self.traffic.accounts {
                    return Err(TopologyError::FaultTarget {
                        index: i,
                        reason: format!(
                            "{} is scoped to account {} which does not exist: accounts are 0 to {}",
                            f.kind().name(),
                            account.0,
                            self.traffic.accounts.saturating_sub(1)
                        ),
                    });
                }
            }
            if let FaultKind::Partition { peer } = f.kind() {
                self.check_target(peer, f)
                    .map_err(|reason| TopologyError::FaultTarget { index: i, reason })?;
            }
            if let FaultKind::BinlogLag { .. } = f.kind()
                && !self.cache().is_some_and(|c| c.invalidation.is_binlog())
            {
                return Err(TopologyError::FaultTarget {
                    index: i,
                    reason: "binlog_lag delays the database's change feed, which only binlog \
                             invalidation has: set `[topology.cache] invalidation = \"binlog\"`"
                        .to_string(),
                });
            }
        }
        self.faults = plan;
        Ok(self)
    }

    /// Plants bugs (see [`PlantedBugs`]); a non-atomic idempotency bug switches the ClientToken
    /// store to check-then-write.
    pub fn with_bugs(mut self, bugs: PlantedBugs) -> Topology {
        if bugs.non_atomic_idempotency {
            self.idempotency = self
                .idempotency
                .with_mode(crate::idempotency::Mode::NonAtomic);
        }
        self.bugs = bugs;
        self
    }

    /// The planted bugs (none by default).
    pub fn bugs(&self) -> PlantedBugs {
        self.bugs
    }

    /// Whether this topology has an L2 cache (a cache, or ClientToken records kept in it).
    pub fn has_l2(&self) -> bool {
        self.cache.is_some() || self.idempotency_in_l2()
    }

    /// Whether this topology runs the workflow engine.
    pub fn has_workflows(&self) -> bool {
        self.workflows.is_some()
    }

    /// The faults this topology injects.
    pub fn faults(&self) -> &FaultPlan {
        &self.faults
    }

    fn check_target(&self, target: &Target, f: &Fault) -> Result<(), String> {
        match target {
            Target::Node(i) if *i >= self.nodes => Err(format!(
                "{} targets node.{i} but there are {} nodes (node.0 to node.{})",
                f.kind().name(),
                self.nodes,
                self.nodes - 1
            )),
            Target::L2 if self.cache.is_none() && !self.idempotency_in_l2() => Err(format!(
                "{} targets the L2 cache but this topology has none (add [topology.cache])",
                f.kind().name()
            )),
            Target::Invalidator if !self.cache().is_some_and(|c| c.invalidation.is_binlog()) => {
                Err(format!(
                    "{} targets the binlog invalidator, which only binlog invalidation has: set \
                     `[topology.cache] invalidation = \"binlog\"`",
                    f.kind().name()
                ))
            }
            Target::Workflow if self.workflows.is_none() => Err(format!(
                "{} targets the workflow engine but this topology has none (add [topology.workflows])",
                f.kind().name()
            )),
            Target::Dependency { name, endpoint } => {
                let Some(spec) = self.deps.iter().find(|d| d.name() == name) else {
                    let known: Vec<&str> = self.deps.iter().map(|d| d.name()).collect();
                    return Err(format!(
                        "no dependency `{name}`; known: {}",
                        known.join(", ")
                    ));
                };
                if let Some(e) = endpoint {
                    if !spec.endpoints().iter().any(|x| x.op.name() == e) {
                        let known: Vec<&str> =
                            spec.endpoints().iter().map(|x| x.op.name()).collect();
                        return Err(format!(
                            "dependency `{name}` has no endpoint `{e}`; known: {}",
                            known.join(", ")
                        ));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Whether `target` names node `i` (for appliers).
pub(crate) fn targets_node(target: &Target, i: usize) -> bool {
    u32::try_from(i).is_ok_and(|i| target.covers_node(i))
}
