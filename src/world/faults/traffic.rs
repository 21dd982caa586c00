//! Traffic and gateway faults: surges, hot tenants, clients retrying without backoff, and
//! throttling quotas set too low.
//!
//! Models:
//! - `quota_too_low`: every API's throttling limit is scaled by `1 − (1 − factor)·i` (the
//!   product over overlapping faults) and restored at the end. A fault scoped to an account
//!   scales that account's limits only (times the unscoped faults' factor):
//!   [`crate::api::throttle::Throttle::set_account_quota_factors`].
//! - `traffic_surge`, `hot_tenant`, `client_no_backoff`: the traffic generates its arrivals a
//!   batch ahead and schedules retries at their intended instants, so it cannot be handed its
//!   state at transitions; it holds these faults from the start (`OpenLoop::with_faults`) and
//!   reads their intensity at each arrival or retry instant. This applier has nothing to do
//!   for them. A `client_no_backoff` fault scoped to an account makes only that account's
//!   retries go at once.

use super::Transition;
use crate::api::types::AccountId;
use crate::faults::{FaultKind, FaultStep};
use crate::world::World;
use std::collections::BTreeSet;

pub(super) fn apply(world: &mut World, t: &mut Transition<'_, '_>) {
    // Quota and traffic faults draw nothing from `t.rngs`: their effects are deterministic in
    // the intensity (hot tenants draw from the traffic's own stream).
    let is_quota = |k: &FaultKind| matches!(k, FaultKind::QuotaTooLow { .. });
    if t.of(is_quota).next().is_none() {
        return;
    }
    let factor_of = |s: &FaultStep<'_>| match s.fault.kind() {
        FaultKind::QuotaTooLow { factor } => 1.0 - (1.0 - factor) * s.intensity,
        _ => 1.0,
    };
    let factor: f64 = t
        .of(is_quota)
        .filter(|s| s.fault.account().is_none())
        .map(factor_of)
        .product();
    // Each account with an active scoped quota fault: the unscoped factor × its own.
    let accounts: BTreeSet<AccountId> = t
        .of(is_quota)
        .filter(|s| s.intensity > 0.0)
        .filter_map(|s| s.fault.account())
        .collect();
    let by_account: Vec<(AccountId, f64)> = accounts
        .into_iter()
        .map(|a| {
            let own: f64 = t
                .of(is_quota)
                .filter(|s| s.fault.account() == Some(a))
                .map(factor_of)
                .product();
            (a, factor * own)
        })
        .collect();
    let throttle = world.gateway_mut().throttle_mut();
    throttle.set_quota_factor(factor);
    throttle.set_account_quota_factors(&by_account);
}
