//! Data-tier faults: DB slow SQL, primary failover and replica lag; L2 cache loss and flush;
//! workflow worker crashes.

use super::Transition;
use crate::faults::{Edge, FaultKind};
use crate::world::World;

pub(super) fn apply(world: &mut World, t: &mut Transition<'_, '_>) {
    for s in t.steps {
        match (s.fault.kind(), s.edge) {
            (FaultKind::L2Flush, Some(Edge::Start)) => {
                world.l2_mut().flush();
            }
            (FaultKind::L2Loss, Some(Edge::Start)) => {
                let l2 = world.l2_mut();
                l2.set_down(true);
                l2.flush();
            }
            (FaultKind::L2Loss, Some(Edge::End)) => world.l2_mut().set_down(false),
            (FaultKind::DbFailover, Some(edge)) => {
                let db = world.db_mut();
                for shard in 0..db.config().shards() {
                    db.set_available(shard, edge == Edge::End);
                }
            }
            (FaultKind::WorkerCrash { workers }, Some(Edge::Start)) => {
                let now = t.now;
                let wf = world.workflow_mut();
                for w in 0..*workers {
                    wf.crash_worker(w, now);
                }
            }
            _ => {}
        }
    }
}
