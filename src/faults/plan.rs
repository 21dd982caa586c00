//! A fault plan and its walk through time: at which instants something changes (starts, ramp
//! steps, ends, periodic ticks), and what changed at each (edges and intensities).

use super::{Fault, FaultKind};
use crate::kernel::{SimDuration, SimTime};

/// A ramp reaches full intensity in this many equal steps.
pub const RAMP_STEPS: u32 = 10;

/// Kinds that act continuously while active are re-applied this often (a leak grows per tick).
pub const TICK: SimDuration = SimDuration::from_secs(1);

/// Faults in the order given (their index names them in reports and random substreams).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    faults: Vec<Fault>,
}

/// A fault's window opened or closed at this instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Start,
    End,
}

/// One fault's part in one transition: its index, an edge if one happened now, and its
/// intensity now (0 when inactive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultStep<'a> {
    pub index: usize,
    pub fault: &'a Fault,
    pub edge: Option<Edge>,
    pub intensity: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pending,
    Active,
    Done,
}

impl FaultPlan {
    pub fn new(faults: Vec<Fault>) -> FaultPlan {
        FaultPlan { faults }
    }
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }
    pub fn len(&self) -> usize {
        self.faults.len()
    }
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }
    pub fn push(&mut self, f: Fault) {
        self.faults.push(f);
    }

    /// The plan without fault `i` (for shrinking).
    pub fn without(&self, i: usize) -> FaultPlan {
        let mut faults = self.faults.clone();
        faults.remove(i);
        FaultPlan { faults }
    }

    /// The plan with fault `i` replaced (for shrinking).
    pub fn with(&self, i: usize, f: Fault) -> FaultPlan {
        let mut faults = self.faults.clone();
        faults[i] = f;
        FaultPlan { faults }
    }

    /// When the last fault's window closes (time zero for an empty plan).
    pub fn last_end(&self) -> SimTime {
        self.faults
            .iter()
            .map(Fault::end)
            .max()
            .unwrap_or(SimTime::ZERO)
    }

    /// The first instant strictly after `t` (or at `t` when `inclusive`) at which some fault's
    /// state changes: a start, a ramp step, an end, or a periodic tick of an active fault.
    pub fn next_transition(&self, t: SimTime, inclusive: bool) -> Option<SimTime> {
        let after = |x: SimTime| if inclusive { x >= t } else { x > t };
        self.faults
            .iter()
            .filter_map(|f| fault_next(f, t, &after))
            .min()
    }
}

/// Fault `f`'s first transition satisfying `after` (all its transitions are ≥ its start).
fn fault_next(f: &Fault, t: SimTime, after: &dyn Fn(SimTime) -> bool) -> Option<SimTime> {
    let start = f.start();
    let end = f.end();
    if after(start) {
        return Some(start);
    }
    if t >= end {
        return None;
    }
    // t is inside [start, end): the next ramp step, periodic tick or the end.
    let mut best = end;
    let into = t.saturating_since(start).as_ns();
    let ramp = f.ramp().as_ns();
    if into < ramp {
        // Next step boundary: the smallest k with k * ramp / STEPS > into (or ≥ when inclusive).
        for k in 1..u64::from(RAMP_STEPS) {
            let at = start.saturating_add(SimDuration::from_ns(
                (u128::from(k) * u128::from(ramp) / u128::from(RAMP_STEPS)) as u64,
            ));
            if after(at) {
                best = best.min(at);
                break;
            }
        }
    }
    if let Some(period) = tick_period(f) {
        let p = period.as_ns();
        let k = into / p;
        for k in [k, k + 1] {
            let at = start.saturating_add(SimDuration::from_ns(k.saturating_mul(p)));
            if after(at) && at < end {
                best = best.min(at);
                break;
            }
        }
    }
    Some(best)
}

/// How often an active fault of this kind needs re-applying, if at all.
pub fn tick_period(f: &Fault) -> Option<SimDuration> {
    match f.kind() {
        FaultKind::HeapLeak { .. } => Some(TICK),
        FaultKind::NodePause { every, .. } => *every,
        _ => None,
    }
}

/// Walks a plan's phases: `step(now)` says which faults started, ended or are active at `now`.
#[derive(Clone, Debug)]
pub struct PlanWalk {
    phases: Vec<Phase>,
    /// The instant of the previous step (ticks measure what accrued since).
    last: SimTime,
}

impl PlanWalk {
    pub fn new(plan: &FaultPlan) -> PlanWalk {
        PlanWalk {
            phases: vec![Phase::Pending; plan.len()],
            last: SimTime::ZERO,
        }
    }

    /// The previous step's instant.
    pub fn last(&self) -> SimTime {
        self.last
    }

    /// Advances to `now` and lists every fault that has an edge now or is active now, in plan
    /// order; a fault whose start and end both passed gets its start step, then its end step.
    pub fn step<'a>(&mut self, plan: &'a FaultPlan, now: SimTime) -> Vec<FaultStep<'a>> {
        let mut steps = Vec::new();
        for (i, f) in plan.faults().iter().enumerate() {
            if self.phases[i] == Phase::Pending && f.start() <= now {
                self.phases[i] = Phase::Active;
                steps.push(FaultStep {
                    index: i,
                    fault: f,
                    edge: Some(Edge::Start),
                    intensity: f.intensity(now),
                });
                if f.end() > now {
                    continue;
                }
            }
            if self.phases[i] == Phase::Active {
                if f.end() <= now {
                    self.phases[i] = Phase::Done;
                    steps.push(FaultStep {
                        index: i,
                        fault: f,
                        edge: Some(Edge::End),
                        intensity: 0.0,
                    });
                } else {
                    steps.push(FaultStep {
                        index: i,
                        fault: f,
                        edge: None,
                        intensity: f.intensity(now),
                    });
                }
            }
        }
        self.last = now;
        steps
    }
}
