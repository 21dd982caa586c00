//! Traffic and gateway faults: surges, hot tenants, clients retrying without backoff, and
//! throttling quotas set too low.
//!
//! Models:
//! - `quota_too_low`: every API's throttling limit is scaled by `1 − (1 − factor)·i` (the
//!   product over overlapping faults) and restored at the end.
//! - `traffic_surge`, `hot_tenant`, `client_no_backoff`: the traffic generates its arrivals a
//!   batch ahead and schedules retries at their intended instants, so it cannot be handed its
//!   state at transitions; it holds these faults from the start (`OpenLoop::with_faults`) and
//!   reads their intensity at each arrival or retry instant. This applier has nothing to do
//!   for them.

use super::Transition;
use crate::faults::FaultKind;
use crate::world::World;

pub(super) fn apply(world: &mut World, t: &mut Transition<'_, '_>) {
    // Quota and traffic faults draw nothing from `t.rngs`: their effects are deterministic in
    // the intensity (hot tenants draw from the traffic's own stream).
    let is_quota = |k: &FaultKind| matches!(k, FaultKind::QuotaTooLow { .. });
    if t.of(is_quota).next().is_none() {
        return;
    }
    let factor: f64 = t
        .of(is_quota)
        .map(|s| match s.fault.kind() {
            FaultKind::QuotaTooLow { factor } => 1.0 - (1.0 - factor) * s.intensity,
            _ => 1.0,
        })
        .product();
    world.gateway_mut().throttle_mut().set_quota_factor(factor);
}
