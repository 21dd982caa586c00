//! Dependency faults: latency, error rates, blackholes and partial outages, per dependency (or
//! one endpoint of it).

use super::Transition;
use crate::faults::{FaultKind, Target};
use crate::world::World;

fn is_dep_kind(k: &FaultKind) -> bool {
    matches!(
        k,
        FaultKind::DepLatency { .. }
            | FaultKind::DepErrors { .. }
            | FaultKind::DepBlackhole
            | FaultKind::DepPartialOutage { .. }
    )
}

/// Recomputes, for every dependency a step touches, its combined fault settings from the steps
/// of the faults still active (an ended fault's step has intensity 0 and drops out).
pub(super) fn apply(world: &mut World, t: &mut Transition<'_, '_>) {
    let touched: Vec<&str> = t
        .of(is_dep_kind)
        .filter_map(|s| match s.fault.target() {
            Target::Dependency { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    for d in 0..world.deps.len() {
        let dep = world.dep_mut(d);
        if !touched.contains(&dep.name()) {
            continue;
        }
        dep.clear_faults();
        let name = dep.name().to_string();
        for s in t.of(is_dep_kind) {
            if s.intensity == 0.0 {
                continue;
            }
            let Target::Dependency { name: n, .. } = s.fault.target() else {
                continue;
            };
            if *n != name {
                continue;
            }
            let dep = world.dep_mut(d);
            match s.fault.kind() {
                FaultKind::DepErrors { code, probability } => {
                    dep.set_error_override(*code, Some(probability * s.intensity));
                }
                FaultKind::DepBlackhole => dep.set_blackhole(true),
                _ => {}
            }
        }
    }
}
