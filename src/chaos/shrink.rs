//! Shrinking: from a failing (plan, seed), the smallest plan and workload that still break the
//! same invariant — faults dropped, windows shortened, intensities lowered, traffic cut —
//! greedily, one accepted step at a time, within a budget of runs.

use super::swarm::{SeedRun, run_plan};
use crate::faults::FaultPlan;
use crate::kernel::{SimDuration, SimTime};
use crate::world::Topology;

/// A shrunk reproduction: the topology (workload possibly cut) and plan, and its run.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub topology: Topology,
    pub plan: FaultPlan,
    pub run: SeedRun,
    /// Runs spent shrinking.
    pub runs: u32,
    /// Traffic duration and rate of the reproduction.
    pub duration: SimDuration,
    pub rate: f64,
}

/// Shrinks `failing` (a run of `topo` that failed) while `failure` stays the same, within
/// `budget` runs. The result always fails the same way (it is at worst the input).
pub fn shrink(topo: &Topology, failing: &SeedRun, quiet: SimDuration, budget: u32) -> Shrunk {
    let target = failing.failure();
    let seed = failing.seed;
    let mut best = Shrunk {
        topology: topo.clone(),
        plan: failing.plan.clone(),
        run: failing.clone(),
        runs: 0,
        duration: topo.duration(),
        rate: topo.rate(),
    };
    if target.is_none() {
        return best;
    }
    // Try one candidate; keep it if it fails the same way.
    let attempt = |best: &mut Shrunk, topo: Topology, plan: FaultPlan| -> bool {
        if best.runs >= budget {
            return false;
        }
        best.runs += 1;
        let run = run_plan(&topo, &plan, seed);
        if run.failure() == target {
            best.duration = topo.duration();
            best.rate = topo.rate();
            best.topology = topo;
            best.plan = plan;
            best.run = run;
            true
        } else {
            false
        }
    };
    loop {
        let mut progressed = false;
        // 1. Drop faults, one at a time.
        let mut i = 0;
        while i < best.plan.len() {
            let cand = best.plan.without(i);
            let t = best.topology.clone();
            if !attempt(&mut best, t, cand) {
                i += 1;
            } else {
                progressed = true;
            }
        }
        // 2. Shorter windows: halve each fault's duration (keeping its start).
        for i in 0..best.plan.len() {
            let f = best.plan.faults()[i].clone();
            let half = SimDuration::from_ns(f.duration().as_ns() / 2);
            if half < SimDuration::from_secs(1) {
                continue;
            }
            if let Some(g) = f.with_window(f.start(), half) {
                let cand = best.plan.with(i, g);
                let t = best.topology.clone();
                progressed |= attempt(&mut best, t, cand);
            }
        }
        // 3. Lower intensities.
        for i in 0..best.plan.len() {
            let f = best.plan.faults()[i].clone();
            if let Some(g) = f.kind().weaker().and_then(|k| f.with_kind(k)) {
                let cand = best.plan.with(i, g);
                let t = best.topology.clone();
                progressed |= attempt(&mut best, t, cand);
            }
        }
        // 4. Cut the workload: traffic only until the last fault ends plus the quiet period,
        //    then half the rate.
        let needed = best
            .plan
            .last_end()
            .saturating_add(quiet)
            .saturating_since(SimTime::ZERO);
        if needed < best.topology.duration() && !needed.is_zero() {
            if let Ok(t) = best.topology.clone().with_duration(needed) {
                let p = best.plan.clone();
                progressed |= attempt(&mut best, t, p);
            }
        }
        let rate = best.topology.rate() / 2.0;
        if rate >= 1.0 {
            if let Ok(t) = best.topology.clone().with_rate(rate) {
                let p = best.plan.clone();
                progressed |= attempt(&mut best, t, p);
            }
        }
        if !progressed || best.runs >= budget {
            return best;
        }
    }
}
