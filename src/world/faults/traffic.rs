//! Traffic and gateway faults: surges, hot tenants, clients retrying without backoff, and
//! throttling quotas set too low.

use super::Transition;
use crate::world::World;

pub(super) fn apply(world: &mut World, t: &mut Transition<'_, '_>) {
    let _ = (world, &t.rngs);
}
