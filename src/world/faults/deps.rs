//! Dependency faults (latency, error rates, blackholes, partial outages, per dependency or one
//! endpoint of it) and network partitions.
//!
//! Dependency faults are continuous: at every transition that involves one, each touched
//! dependency gets the combination of all its active faults, per endpoint
//! ([`EndpointFaults`] says how overlapping faults combine), through
//! [`Dependency::set_plan_faults`](crate::deps::Dependency::set_plan_faults); the chaos hooks (`set_error_override`, ...) are left alone.
//! At intensity `i` (a ramp): latency `× (1 + (m − 1)·i) + i·sample(add)`, error probability
//! `p·i`, outage fraction `f·i` (the dead hosts at a lower intensity stay dead at a higher one).
//!
//! A fault scoped to an account ([`crate::faults::Fault::for_account`]) acts on the calls
//! made for that account's work only (each [`crate::deps::DepCall`] carries its account: the
//! node's request's, the workflow's): the dependency gets, per such account, the combination
//! of its scoped faults with the unscoped ones
//! ([`crate::deps::Dependency::set_account_plan_faults`]); every other call, and calls of no
//! account (reconciliation's repairs), get the unscoped combination. A call draws the same
//! numbers whatever its plan (but for added latency, sampled from the dependency's fault
//! stream by the calls that have some), so a scoped fault shifts no other account's draws.
//!
//! Partitions are put in force in the kernel ([`crate::kernel::Sim::set_partitions`]): every
//! message between a side's components and the peer's is dropped at its send, both ways, for
//! the window, and counted per fault in the run's counter `faults.<index>.partition_dropped`.
//! Only the named components are cut: a node↔dependency partition leaves the workflow
//! engine's calls to that dependency alone. Messages in flight when it starts are delivered.
//! The sender's own timeouts decide what a drop costs: dependency calls time out at the node
//! (`dep_timeout`), database queries at the node (its `db_query_timeout`, 5 s by default: the
//! request fails with 503 and the connection is released, so a node↔db partition holds
//! connections only while it lasts plus one timeout; see
//! `partition_node_from_db_times_out_that_nodes_queries_and_recovers`), workflow commands at
//! the node (a node↔workflow partition loses commands or their admission acknowledgements:
//! the request waits for the acknowledgement at most `db_query_timeout`, then fails with 503,
//! counted in `wf_ack_timeouts`; see
//! `a_lost_workflow_acknowledgement_ends_the_request_at_its_timeout`), and requests at the
//! gateway (their deadline). L2 calls have no timeout of their own.

use super::Transition;
use crate::api::types::AccountId;
use crate::deps::EndpointFaults;
use crate::faults::{FaultKind, Target};
use crate::kernel::ComponentId;
use crate::world::World;
use std::collections::BTreeSet;

fn is_dep_kind(k: &FaultKind) -> bool {
    matches!(
        k,
        FaultKind::DepLatency { .. }
            | FaultKind::DepErrors { .. }
            | FaultKind::DepBlackhole
            | FaultKind::DepPartialOutage { .. }
    )
}

pub(super) fn apply(world: &mut World, t: &mut Transition<'_, '_>) {
    apply_dependency_faults(world, t);
    apply_partitions(world, t);
}

/// Recomputes, for every dependency a step touches, its combined fault settings from the steps
/// of the faults still active (an ended fault's step has intensity 0 and drops out).
fn apply_dependency_faults(world: &mut World, t: &mut Transition<'_, '_>) {
    let touched: Vec<String> = t
        .of(is_dep_kind)
        .filter_map(|s| match s.fault.target() {
            Target::Dependency { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    if touched.is_empty() {
        return;
    }
    for d in 0..world.deps.len() {
        let dep = world.dep_mut(d);
        if !touched.iter().any(|n| n == dep.name()) {
            continue;
        }
        let endpoints: Vec<&str> = dep
            .spec()
            .endpoints()
            .iter()
            .map(|e| e.op().name())
            .collect();
        // The accounts with a scoped fault active on this dependency, each getting its own
        // settings (its faults with the unscoped ones); everyone else gets the unscoped ones.
        let accounts: BTreeSet<AccountId> = t
            .steps
            .iter()
            .filter(|s| is_dep_kind(s.fault.kind()) && s.intensity > 0.0)
            .filter(|s| matches!(s.fault.target(), Target::Dependency { name, .. } if name == dep.name()))
            .filter_map(|s| s.fault.account())
            .collect();
        let plan = combine(t, dep.name(), &endpoints, None);
        let by_account = accounts
            .into_iter()
            .map(|a| (a, combine(t, dep.name(), &endpoints, Some(a))))
            .collect();
        dep.set_plan_faults(plan);
        dep.set_account_plan_faults(by_account);
    }
}

/// The combined settings, per endpoint, of the active faults on dependency `name` that act on
/// calls of `account` (unscoped faults, plus that account's scoped ones).
fn combine(
    t: &Transition<'_, '_>,
    name: &str,
    endpoints: &[&str],
    account: Option<AccountId>,
) -> Vec<EndpointFaults> {
    let mut plan = vec![EndpointFaults::default(); endpoints.len()];
    for s in t.steps.iter().filter(|s| is_dep_kind(s.fault.kind())) {
        if s.intensity == 0.0 || !s.fault.applies_to(account) {
            continue;
        }
        let Target::Dependency { name: n, endpoint } = s.fault.target() else {
            continue;
        };
        if n != name {
            continue;
        }
        let i = s.intensity;
        // A per-fault salt for outages: the first draw of the fault's own stream, read from
        // a copy so it is the same at every re-application.
        let salt = t.rngs[s.index].clone().next_bits();
        for (k, ep) in plan.iter_mut().enumerate() {
            if endpoint.as_deref().is_some_and(|e| e != endpoints[k]) {
                continue;
            }
            match s.fault.kind() {
                FaultKind::DepLatency { add, multiply } => {
                    ep.latency_mult *= 1.0 + (multiply - 1.0) * i;
                    if let Some(add) = add {
                        ep.latency_add.push((add.clone(), i));
                    }
                }
                FaultKind::DepErrors { code, probability } => {
                    ep.add_error(*code, probability * i);
                }
                FaultKind::DepBlackhole => ep.blackhole = true,
                FaultKind::DepPartialOutage { fraction } => {
                    ep.outages.push((salt, fraction * i));
                }
                _ => {}
            }
        }
    }
    plan
}

/// The components on one side of a partition.
fn side(world: &World, target: &Target) -> Vec<ComponentId> {
    match target {
        Target::Nodes => world.nodes.clone(),
        Target::Node(i) => world.nodes.get(*i as usize).copied().into_iter().collect(),
        Target::Gateway => vec![world.gateway],
        Target::Db => vec![world.db],
        Target::L2 => world.l2.into_iter().collect(),
        Target::Workflow => world.workflow.into_iter().collect(),
        Target::Traffic => vec![world.traffic],
        Target::Invalidator => world.invalidator.into_iter().collect(),
        Target::Dependency { name, .. } => world
            .deps
            .iter()
            .copied()
            .filter(|&id| match world.sim.component(id) {
                crate::world::Part::Dep(d) => d.name() == name,
                _ => false,
            })
            .collect(),
    }
}

/// When a partition starts or ends, puts the cuts of every active partition in force.
fn apply_partitions(world: &mut World, t: &mut Transition<'_, '_>) {
    let is_partition = |k: &FaultKind| matches!(k, FaultKind::Partition { .. });
    if t.of(is_partition).all(|s| s.edge.is_none()) {
        return;
    }
    put_partitions(world, t);
}

/// Puts the cuts of every partition active in `t` in force (replacing those in force).
pub(super) fn put_partitions(world: &mut World, t: &Transition<'_, '_>) {
    let is_partition = |k: &FaultKind| matches!(k, FaultKind::Partition { .. });
    let mut cuts = Vec::new();
    for s in t.of(is_partition) {
        let FaultKind::Partition { peer } = s.fault.kind() else {
            continue;
        };
        if s.intensity == 0.0 {
            continue;
        }
        let counter = world
            .sim
            .metrics_mut()
            .counter(&format!("faults.{}.partition_dropped", s.index));
        for a in side(world, s.fault.target()) {
            for b in side(world, peer) {
                if a != b {
                    cuts.push((a, b, counter));
                }
            }
        }
    }
    world.sim.set_partitions(cuts);
}
