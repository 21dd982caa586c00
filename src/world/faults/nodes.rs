//! API node faults: crashes and restarts, stop-the-world pauses, memory leaks, DB connection
//! leaks and clock skew. (Partitions are not applied here yet.)
//!
//! What each kind does (the node side is documented in `api::node`):
//!
//! - `node_crash`: at the start every targeted node that is up gets [`NodeTimer::Crash`] at this
//!   instant (its held requests are answered 502, its state dropped) and the gateway learns of
//!   the crash (it marks the node down after its health-check detection delay); at the end,
//!   when no other crash fault still covers it, the node gets [`NodeTimer::Restart`] and the
//!   gateway routes to it again.
//! - `node_pause`: at the start, and at every `every` while active, each targeted node that is
//!   up gets [`NodeTimer::InjectPause`] with a length drawn from `pause` (seconds) on the
//!   fault's own random substream, one draw per node in node order.
//! - `heap_leak`: at every transition while active, each targeted node's live set grows by
//!   `bytes_per_sec × intensity × seconds since the previous transition` (the intensity the
//!   leak had over that span), or since the node started if a runbook added it in that span.
//! - `db_connection_leak`: whenever such a fault starts or ends, each node it targets gets
//!   [`NodeTimer::LeakConnections`] with the sum of `connections` over the leaks active on it.
//! - `clock_skew`: at every transition, each node a skew fault targets gets the sum over the
//!   active skews on it of `skew_ns × intensity` (rounded to the nanosecond).
//!
//! Commands are events scheduled at the transition's instant (`Sim::schedule`), so the node
//! handles them with an outbox like any message; untargeted nodes get nothing.

use super::{Transition, targets_node};
use crate::api::node::NodeTimer;
use crate::faults::{Edge, FaultKind, FaultStep};
use crate::kernel::{SimDuration, SimTime};
use crate::world::{Msg, World};

pub(super) fn apply(world: &mut World, t: &mut Transition<'_, '_>) {
    heap_leaks(world, t);
    crashes(world, t);
    pauses(world, t);
    pool_leaks(world, t);
    clock_skews(world, t);
}

/// Sends a fault command to node `i` at `now` (between events: `now` is never in the past).
fn command(world: &mut World, i: usize, now: SimTime, timer: NodeTimer) {
    let id = world.nodes[i];
    // `now` is the transition's instant, at or after the kernel's clock, so this cannot fail;
    // a failure would only drop the command.
    let _ = world.sim.schedule(now, id, Msg::Node(timer));
}

fn nodes_of<'a>(world: &World, s: &FaultStep<'a>) -> Vec<usize> {
    (0..world.nodes.len())
        .filter(|&i| targets_node(s.fault.target(), i))
        .collect()
}

fn heap_leaks(world: &mut World, t: &Transition<'_, '_>) {
    for s in t.steps {
        let FaultKind::HeapLeak { bytes_per_sec } = s.fault.kind() else {
            continue;
        };
        // The leak accrued since the previous transition at the intensity it had then; a
        // start step only opens the window.
        if s.edge == Some(Edge::Start) {
            continue;
        }
        let rate = *bytes_per_sec as f64 * s.fault.intensity(t.since);
        for i in nodes_of(world, s) {
            let node = world.node_mut(i);
            // A node a runbook added in the span leaked only since it started.
            let from = t.since.max(node.started_at());
            let bytes = (rate * t.now.saturating_since(from).as_secs_f64()) as u64;
            node.heap_mut().add_live_bytes(bytes);
        }
    }
}

/// Whether some crash fault active now covers node `i`.
fn crash_covers(t: &Transition<'_, '_>, i: usize) -> bool {
    t.steps.iter().any(|s| {
        matches!(s.fault.kind(), FaultKind::NodeCrash)
            && s.intensity > 0.0
            && targets_node(s.fault.target(), i)
    })
}

/// The nodes targeted by a fault of a kind `pick` accepts that starts or ends now, in order.
fn touched_at_edges(
    world: &World,
    t: &Transition<'_, '_>,
    pick: impl Fn(&FaultKind) -> bool,
) -> Vec<usize> {
    let mut touched: Vec<usize> = Vec::new();
    for s in t.of(pick) {
        if s.edge.is_some() {
            for i in nodes_of(world, s) {
                if !touched.contains(&i) {
                    touched.push(i);
                }
            }
        }
    }
    touched.sort_unstable();
    touched
}

fn crashes(world: &mut World, t: &Transition<'_, '_>) {
    for i in touched_at_edges(world, t, |k| matches!(k, FaultKind::NodeCrash)) {
        let want_down = crash_covers(t, i);
        let down = world.node_mut(i).is_down();
        if want_down && !down {
            command(world, i, t.now, NodeTimer::Crash);
            world.gateway_mut().node_crashed(i, t.now);
        } else if !want_down && down {
            command(world, i, t.now, NodeTimer::Restart);
            world.gateway_mut().node_restarted(i);
        }
    }
}

fn pauses(world: &mut World, t: &mut Transition<'_, '_>) {
    for s in t.steps {
        let FaultKind::NodePause { pause, every } = s.fault.kind() else {
            continue;
        };
        let due = match s.edge {
            Some(Edge::Start) => true,
            Some(Edge::End) => false,
            // A periodic tick of this fault (other faults' transitions do not inject).
            None => every.is_some_and(|e| {
                let into = t.now.saturating_since(s.fault.start()).as_ns();
                !e.is_zero() && into > 0 && into % e.as_ns() == 0
            }),
        };
        if !due {
            continue;
        }
        for i in nodes_of(world, s) {
            if world.node_mut(i).is_down() {
                continue;
            }
            let d = SimDuration::from_secs_f64(pause.sample(&mut t.rngs[s.index]));
            if !d.is_zero() {
                command(world, i, t.now, NodeTimer::InjectPause(d));
            }
        }
    }
}

fn pool_leaks(world: &mut World, t: &Transition<'_, '_>) {
    let leak = |k: &FaultKind| matches!(k, FaultKind::DbConnectionLeak { .. });
    for i in touched_at_edges(world, t, leak) {
        let total = t
            .of(leak)
            .filter(|s| s.intensity > 0.0 && targets_node(s.fault.target(), i))
            .map(|s| match s.fault.kind() {
                FaultKind::DbConnectionLeak { connections } => *connections,
                _ => 0,
            })
            .fold(0u32, u32::saturating_add);
        command(world, i, t.now, NodeTimer::LeakConnections(total));
    }
}

pub(super) fn clock_skews(world: &mut World, t: &Transition<'_, '_>) {
    let skew = |k: &FaultKind| matches!(k, FaultKind::ClockSkew { .. });
    for i in 0..world.nodes.len() {
        let mut touched = false;
        let mut total: i64 = 0;
        for s in t.of(skew) {
            if !targets_node(s.fault.target(), i) {
                continue;
            }
            touched = true;
            if let FaultKind::ClockSkew { skew_ns } = s.fault.kind() {
                total = total.saturating_add((*skew_ns as f64 * s.intensity).round() as i64);
            }
        }
        if touched {
            world.node_mut(i).set_clock_skew(total);
        }
    }
}
