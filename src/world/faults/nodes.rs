//! API node faults: crashes and restarts, stop-the-world pauses, memory leaks, DB connection
//! leaks, clock skew and network partitions.

use super::{Transition, targets_node};
use crate::faults::FaultKind;
use crate::world::World;

pub(super) fn apply(world: &mut World, t: &mut Transition<'_, '_>) {
    let elapsed = t.now.saturating_since(t.since).as_secs_f64();
    for s in t.steps {
        if let FaultKind::HeapLeak { bytes_per_sec } = s.fault.kind() {
            // The leak accrued since the previous transition at the intensity it had then; a
            // start step only opens the window.
            if s.edge == Some(crate::faults::Edge::Start) {
                continue;
            }
            let bytes = (*bytes_per_sec as f64 * elapsed) as u64;
            for i in 0..world.nodes.len() {
                if targets_node(s.fault.target(), i) {
                    world.node_mut(i).heap_mut().add_live_bytes(bytes);
                }
            }
        }
    }
}
