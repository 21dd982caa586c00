//! Data-tier faults: DB slow SQL, primary failover and replica lag; L2 cache loss and flush;
//! workflow worker crashes.
//!
//! Models:
//! - `db_slow_sql`: the service time of the targeted class (every class without one) is
//!   multiplied by `1 + (multiply − 1)·i`; overlapping faults multiply.
//! - `db_failover`: at the start every shard's primary goes down and the database is told to
//!   fail what the primaries held (in service and queued transactions answer `Unavailable` at
//!   once, [`DbTimer::failover`]); for the window primary queries are refused at once (replica
//!   reads go on); at the end a replica is promoted and the shard serves again.
//! - `replica_lag`: replicas are at least `lag·i` behind (the largest of the active faults).
//! - `binlog_lag`: the change feed's messages take `lag·i` longer (the largest of the active
//!   faults), on top of the feed's own lag.
//! - `l2_loss`: the L2 is down for the window (lookups miss, writes are lost) and comes back
//!   empty; `l2_flush`: the L2 is emptied at the start.
//! - `worker_crash`: workers `0..n` lose their task at the start; it is redelivered when its
//!   lease runs out.

use super::Transition;
use crate::db::{DbTimer, QueryClass};
use crate::faults::{Edge, FaultKind};
use crate::kernel::SimDuration;
use crate::world::{Msg, World};

pub(super) fn apply(world: &mut World, t: &mut Transition<'_, '_>) {
    if t.of(|k| matches!(k, FaultKind::DbSlowSql { .. }))
        .next()
        .is_some()
    {
        let mut factors = [1.0; QueryClass::COUNT];
        for s in t.of(|k| matches!(k, FaultKind::DbSlowSql { .. })) {
            let FaultKind::DbSlowSql { class, multiply } = s.fault.kind() else {
                continue;
            };
            let f = 1.0 + (multiply - 1.0) * s.intensity;
            match class {
                Some(c) => factors[c.index()] *= f,
                None => factors.iter_mut().for_each(|x| *x *= f),
            }
        }
        world.db_mut().set_slow_factors(factors);
    }
    let replica = |k: &FaultKind| match k {
        FaultKind::ReplicaLag { lag } => Some(*lag),
        _ => None,
    };
    if let Some(lag) = largest_lag(t, replica) {
        world.db_mut().set_fault_lag(lag);
    }
    let binlog = |k: &FaultKind| match k {
        FaultKind::BinlogLag { lag } => Some(*lag),
        _ => None,
    };
    if let Some(lag) = largest_lag(t, binlog) {
        world.db_mut().set_feed_fault_lag(lag);
    }
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
                let shards = world.db_mut().config().shards();
                for shard in 0..shards {
                    world.db_mut().set_available(shard, edge == Edge::End);
                    if edge == Edge::Start {
                        let db = world.db;
                        world
                            .sim
                            .schedule(t.now, db, Msg::DbTimer(DbTimer::failover(shard)))
                            .expect("the failover notice is due now, not in the past");
                    }
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

/// The largest lag (× its intensity) of the faults `lag_of` takes in the transition, zero if
/// none is active; `None` when the transition has no such fault (nothing to update).
fn largest_lag(
    t: &Transition<'_, '_>,
    lag_of: impl Fn(&FaultKind) -> Option<SimDuration>,
) -> Option<SimDuration> {
    let mut steps = t.of(|k| lag_of(k).is_some()).peekable();
    steps.peek()?;
    Some(
        steps
            .filter_map(|s| {
                lag_of(s.fault.kind())
                    .map(|lag| SimDuration::from_secs_f64(lag.as_secs_f64() * s.intensity))
            })
            .max()
            .unwrap_or(SimDuration::ZERO),
    )
}
