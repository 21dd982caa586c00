//! Reconciliation against the control database: crafted inconsistencies of every kind are
//! found once, repaired through the dependencies and the database, and not found again; the
//! daily (T+1) mode scans in bigger pages.

use crate::core::{plain_node, topology, traffic, unlimited};
use firedrill::api::types::{Api, InstanceState};
use firedrill::cache::{CacheKey, Cached, CachedInstance, L1Config, L2Config};
use firedrill::db::{DbConfig, DbOp, DbQuery, InstanceRow, QueryClass};
use firedrill::deps::{DependencyKind, FaultCode, RecordState, ResourceKind};
use firedrill::kernel::Dist;
use firedrill::kernel::{RootSeed, SimDuration, SimTime};
use firedrill::reconcile::{Inconsistency, ReconConfig};
use firedrill::traffic::ApiMix;
use firedrill::workflow::EngineConfig;
use firedrill::world::{CacheSetup, Msg, Part, RunResult, Topology, WorkflowSetup, World};

const S: u64 = 1_000_000_000;

fn world_topology(rate: f64, secs: u64, recon: ReconConfig) -> Topology {
    let node = plain_node();
    let t = traffic(
        rate,
        ApiMix::only(Api::RunInstances),
        3,
        SimDuration::from_secs(120),
    );
    topology(1, node, DbConfig::assumed_defaults(), t, unlimited(3), secs)
        .with_workflows(WorkflowSetup {
            engine: EngineConfig::builder().build().unwrap(),
            batch: true,
        })
        .unwrap()
        .with_reconciliation(recon)
        .unwrap()
}

/// Audits every minute (30 s grace), 20-row pages at 50 a second.
fn every_minute() -> ReconConfig {
    ReconConfig::new(
        SimDuration::from_secs(60),
        SimDuration::from_secs(30),
        1_000,
    )
    .unwrap()
    .with_scan(20, 50)
    .unwrap()
}

fn dep_of(world: &mut World, kind: DependencyKind) -> &mut firedrill::deps::Dependency {
    let id = world
        .deps
        .iter()
        .copied()
        .find(|&id| matches!(world.sim.component(id), Part::Dep(d) if d.spec().kind() == kind))
        .unwrap();
    match world.sim.component_mut(id) {
        Part::Dep(d) => d,
        _ => unreachable!(),
    }
}

fn running(world: &World) -> Vec<InstanceRow> {
    let Part::Db(db) = world.sim.component(world.db) else {
        unreachable!()
    };
    db.instance_rows()
        .filter(|r| r.state == InstanceState::Running && r.resources.disk_attached)
        .collect()
}

fn row(world: &World, r: &InstanceRow) -> InstanceRow {
    let Part::Db(db) = world.sim.component(world.db) else {
        unreachable!()
    };
    db.inspect_instance(r.account, r.id).unwrap()
}

/// The run's violation of the `reconciled` invariant (panics, listing them all, if there is none).
fn reconciled_violation(r: &RunResult) -> &firedrill::invariants::Violation {
    r.violations
        .iter()
        .find(|v| v.invariant.name() == "reconciled")
        .unwrap_or_else(|| panic!("{:?}", r.violations))
}

fn stats(world: &World) -> firedrill::reconcile::ReconStats {
    match world.sim.component(world.reconciler.unwrap()) {
        Part::Reconciler(c) => c.stats().clone(),
        _ => unreachable!(),
    }
}

/// Runs to 100 s, crafts inconsistencies on seven running instances, runs on.
/// Returns the stats after the 60 s audit, after 200 s (two audits past the crafting) and at
/// the end (one more audit), the rows of the five instances at the end, and the run's result.
/// Also returns, for each of the seven, its row before the crafting and whether the billing
/// system holds the subscription its row references at the end.
#[allow(clippy::type_complexity)] // a test fixture's several outputs
fn crafted() -> (
    [firedrill::reconcile::ReconStats; 3],
    Vec<InstanceRow>,
    RunResult,
    Vec<(InstanceRow, bool)>,
) {
    let recon = every_minute();
    let topo = world_topology(1.0, 300, recon);
    let mut world = topo.build(RootSeed::new(5));
    assert!(world.run_until(SimTime::from_ns(100 * S)).is_none());
    let clean = stats(&world);
    let victims: Vec<InstanceRow> = running(&world).into_iter().take(7).collect();
    assert_eq!(victims.len(), 7, "enough running instances");
    let now = world.sim.now();
    let [a, b, c, d, e, f, g] = [0, 1, 2, 3, 4, 5, 6].map(|i| victims[i]);
    // f: its billing subscription lost by the billing system → a dangling reference, and a
    // running instance nobody bills: it is subscribed again.
    assert!(
        dep_of(&mut world, DependencyKind::Billing)
            .remove_record(f.resources.billing().unwrap())
            .is_some()
    );
    // a: its ENI deleted out of band → a dangling reference.
    assert!(
        dep_of(&mut world, DependencyKind::Vpc)
            .remove_record(a.resources.eni().unwrap())
            .is_some()
    );
    // b: its disk detached by the storage layer while the instance runs → a state mismatch.
    assert!(
        dep_of(&mut world, DependencyKind::BlockStorage).set_record_state(
            b.resources.disk().unwrap(),
            RecordState::Active,
            now
        )
    );
    // c: marked Stopped by a write that skipped the workflow → billing still active and the
    // disk still attached: two state mismatches.
    let q = DbQuery {
        tag: 0,
        reply_to: world.reconciler.unwrap(),
        account: c.account,
        read_replica: false,
        op: DbOp::UpdateInstanceState {
            id: c.id,
            expect: Some(InstanceState::Running),
            to: InstanceState::Stopped,
            resources: None,
        },
    };
    world.sim.schedule(now, world.db, Msg::DbQuery(q)).unwrap();
    // d: its host lost → a dangling reference to an essential resource: the instance stops.
    assert!(
        dep_of(&mut world, DependencyKind::Inventory)
            .remove_record(d.resources.host().unwrap())
            .is_some()
    );
    // e: its row loses the ENI reference (a lost write) → the ENI is an orphan.
    let mut res = e.resources;
    res.set(2, None);
    let Part::Db(db) = world.sim.component_mut(world.db) else {
        unreachable!()
    };
    assert!(db.tamper_resources(e.account, e.id, res));
    // g: its row loses the billing reference (a lost write) → the subscription is an orphan
    // (released) and the instance runs unbilled (a state mismatch): subscribed again.
    let mut res = g.resources;
    res.set(4, None);
    assert!(db.tamper_resources(g.account, g.id, res));
    assert!(world.run_until(SimTime::from_ns(200 * S)).is_none());
    let after = stats(&world);
    let report = world.run();
    let end = stats(&world);
    let rows: Vec<InstanceRow> = victims.iter().map(|v| row(&world, v)).collect();
    let billed = rows
        .iter()
        .zip(&victims)
        .map(|(now, before)| {
            let held = now.resources.billing().is_some_and(|id| {
                dep_of(&mut world, DependencyKind::Billing)
                    .record(id)
                    .is_some()
            });
            (*before, held)
        })
        .collect();
    let r = world.result(report, topo.duration());
    ([clean, after, end], rows, r, billed)
}

#[test]
fn crafted_inconsistencies_are_found_once_and_repaired() {
    let ([clean, after, end], rows, r, billed) = crafted();
    assert_eq!(clean.audits, 1);
    assert_eq!(clean.found_total(), 0, "nothing wrong before the crafting");
    use Inconsistency::*;
    use ResourceKind::*;
    let expect = [
        (Dangling, Eni, 1),
        (Dangling, Host, 1),
        (StateMismatch, Disk, 2),
        // c's subscription still active, and g running with none.
        (StateMismatch, BillingSubscription, 2),
        (Orphan, Eni, 1),
        // f's subscription lost, g's no longer referenced.
        (Dangling, BillingSubscription, 1),
        (Orphan, BillingSubscription, 1),
    ];
    for (what, kind, n) in expect {
        assert_eq!(
            after.found_of(what, kind),
            n,
            "{what:?} {kind:?}: {:?}",
            after.found
        );
        assert_eq!(
            after.repaired_of(what, kind),
            n,
            "{what:?} {kind:?} repaired"
        );
    }
    assert_eq!(after.found_total(), 9, "{:?}", after.found);
    // Reconciliation converged: the `reconciled` invariant (judged after the last scan) holds.
    // The one violation is the crafting's own write that skipped the lifecycle (c: Running ->
    // Stopped, no Stopping), which the lifecycle checker rightly reports.
    let names: Vec<&str> = r.violations.iter().map(|v| v.invariant.name()).collect();
    assert_eq!(names, ["lifecycle"], "{:?}", r.violations);
    assert!(r.violations[0].detail.contains("Running -> Stopped"));
    assert_eq!(after.repaired, 9);
    assert_eq!(after.repair_failed, 0);
    // Later audits find nothing new.
    assert!(end.audits > after.audits);
    assert_eq!(end.found, after.found, "found again");
    assert_eq!(end.repaired, 9);
    // The rows now match the dependencies.
    let [a, b, c, d, e, f, g] = [0, 1, 2, 3, 4, 5, 6].map(|i| rows[i]);
    // f and g run, billed again by a new subscription the billing system holds.
    for (now, (before, held)) in [(f, billed[5]), (g, billed[6])] {
        assert_eq!(now.state, InstanceState::Running);
        let sub = now.resources.billing().expect("subscribed again");
        assert_ne!(Some(sub), before.resources.billing());
        assert!(held, "{sub:?}");
    }
    assert_eq!((a.state, a.resources.eni()), (InstanceState::Running, None));
    assert!(b.state == InstanceState::Running && b.resources.disk_attached);
    assert_eq!(c.state, InstanceState::Stopped);
    assert_eq!(
        (c.resources.billing(), c.resources.disk_attached),
        (None, false)
    );
    assert_eq!(d.state, InstanceState::Stopped);
    assert_eq!((d.resources.host(), d.resources.billing()), (None, None));
    assert!(!d.resources.disk_attached && d.resources.disk().is_some());
    assert_eq!(e.resources.eni(), None);
    let vpc = r.deps.iter().find(|(n, _)| n == "vpc").unwrap();
    assert!(vpc.1.records_deleted >= 1, "the orphan ENI released");
    // Time to repair: crafted at 100 s; the audit at 120 s judges rows written before 90 s
    // (all but c, written at 100 s), the one at 180 s judges c. Each repair ends within the
    // scan and its calls (well under 2 s) after its audit.
    let ttr = |k: Inconsistency| after.time_to_repair_by[k.name()].clone();
    let mismatch = ttr(StateMismatch);
    assert_eq!(mismatch.count(), 4);
    // b: from its detach at 100 s to the 120 s audit; c: from 100 s to the 180 s audit; g:
    // from its row's last write (the lost write leaves it as it was, before 90 s) to the
    // 120 s audit, so under 122 s.
    assert!(mismatch.min_ns().unwrap() >= 20 * S && mismatch.min_ns().unwrap() < 22 * S);
    assert!(
        mismatch.max_ns().unwrap() >= 80 * S && mismatch.max_ns().unwrap() < 122 * S,
        "{:?}",
        mismatch.max_ns()
    );
    // Dangling and orphans date from the row's last write or the record's creation (before
    // 100 s): repaired by 122 s.
    for k in [Dangling, Orphan] {
        let h = ttr(k);
        assert!(h.count() >= 1 && h.max_ns().unwrap() < 122 * S, "{k:?}");
        assert!(
            h.min_ns().unwrap() >= 30 * S,
            "{k:?}: never before the grace"
        );
    }
    // The scans were real database load.
    let scans = r.db.class(QueryClass::Scan);
    assert!(scans.served >= end.pages && end.pages >= 4 * end.scans_completed);
    assert!(end.rows_read > 100);
}

#[test]
fn an_orphan_reconciliation_cannot_release_breaks_the_reconciled_invariant() {
    let recon = every_minute();
    let topo = world_topology(1.0, 300, recon);
    let mut world = topo.build(RootSeed::new(5));
    assert!(world.run_until(SimTime::from_ns(100 * S)).is_none());
    let e = running(&world)[0];
    let orphan = e.resources.eni().unwrap();
    // The row loses its ENI reference (a lost write), and the ENI can no longer be deleted: the
    // VPC answers every DeleteEni with an error from now on.
    let mut res = e.resources;
    res.set(2, None);
    let Part::Db(db) = world.sim.component_mut(world.db) else {
        unreachable!()
    };
    assert!(db.tamper_resources(e.account, e.id, res));
    dep_of(&mut world, DependencyKind::Vpc)
        .set_error_override(FaultCode::InvalidParameter, Some(1.0));
    let report = world.run();
    let r = world.result(report, topo.duration());
    let v = reconciled_violation(&r);
    assert!(
        v.detail.contains(&format!("#{} ", orphan.0)) && v.detail.contains("orphan"),
        "{v}"
    );
    assert!(r.reconciliation.unwrap().repair_failed >= 1);
}

#[test]
fn crafted_reconciliation_is_deterministic() {
    let (_, _, a, _) = crafted();
    let (_, _, b, _) = crafted();
    assert_eq!(a.trace_hash(), b.trace_hash());
    assert_eq!(
        a.reconciliation.unwrap().found,
        b.reconciliation.unwrap().found
    );
}

/// T+1: one audit after a day scans the whole table in 5,000-row pages (one per shard here)
/// and releases what lost replies orphaned during the first hour.
#[test]
fn daily_audit_scans_in_big_pages_and_repairs() {
    let topo = world_topology(0.02, 25 * 3600, ReconConfig::daily());
    let mut world = topo.build(RootSeed::new(9));
    let set = |world: &mut World, p: f64| {
        for id in world.deps.clone() {
            if let Part::Dep(d) = world.sim.component_mut(id) {
                d.set_error_override(FaultCode::Timeout, Some(p));
            }
        }
    };
    set(&mut world, 0.2);
    assert!(world.run_until(SimTime::from_ns(3600 * S)).is_none());
    set(&mut world, 0.0);
    let report = world.run();
    let r = world.result(report, topo.duration());
    let rec = r.reconciliation.unwrap();
    assert_eq!((rec.audits, rec.scans_completed), (1, 1));
    // 4 shards of well under 5,000 rows: one page each.
    assert_eq!(rec.pages, 4);
    let Part::Db(db) = world.sim.component(world.db) else {
        unreachable!()
    };
    assert!(rec.rows_read > 1_000 && rec.rows_read <= db.instance_rows().count() as u64);
    let found: u64 = rec.found_total();
    assert!(found > 0, "lost replies orphan records: {:?}", rec.found);
    assert_eq!(rec.repaired, found);
    assert_eq!(rec.repair_failed, 0);
    assert_eq!(r.db.class(QueryClass::Scan).served, 4);
    // Everything found was older than the hour's grace; repaired within the scan after the
    // audit at 24 h.
    assert!(rec.time_to_repair.min_ns().unwrap() >= 3600 * S);
    assert!(rec.time_to_repair.max_ns().unwrap() < 24 * 3600 * S + 10 * S);
}

/// Crafts, at 100 s: three phantom instances (rows inserted `Pending` for an account the
/// traffic never uses, with no workflow behind them: an insert whose node crashed before it
/// started the workflow), one running instance left `Stopping` and one left `Starting` (their
/// workflows lost). Returns the world, run to 100 s plus the crafting, and the two victims.
fn stuck_world(billing_fails: bool, cache: bool) -> (World, Topology, [InstanceRow; 2]) {
    let recon = every_minute();
    let topo = world_topology(1.0, 300, recon);
    let topo = if cache {
        topo.with_cache(CacheSetup {
            l1: L1Config::builder()
                .capacity(1_000)
                .ttl(SimDuration::from_secs(5), SimDuration::from_secs(60))
                .build()
                .unwrap(),
            l2: L2Config::builder().capacity(10_000).build().unwrap(),
            l2_ttl: SimDuration::from_secs(600),
            l2_negative_ttl: SimDuration::from_secs(2),
            invalidation_delay: Dist::uniform(0.01, 0.1).unwrap(),
            invalidation: firedrill::cache::Invalidation::Writer,
        })
    } else {
        topo
    };
    let mut world = topo.build(RootSeed::new(11));
    assert!(world.run_until(SimTime::from_ns(100 * S)).is_none());
    let victims: Vec<InstanceRow> = running(&world).into_iter().take(2).collect();
    let [x, y] = [victims[0], victims[1]];
    assert!(x.resources.billing().is_some() && y.resources.billing().is_some());
    let now = world.sim.now();
    let send = |world: &mut World, account, op| {
        let q = DbQuery {
            tag: 0,
            reply_to: world.reconciler.unwrap(),
            account,
            read_replica: false,
            op,
        };
        world.sim.schedule(now, world.db, Msg::DbQuery(q)).unwrap();
    };
    send(
        &mut world,
        PHANTOM_ACCOUNT,
        DbOp::InsertInstances {
            account: PHANTOM_ACCOUNT,
            count: 3,
            instance_type: firedrill::api::types::InstanceType(0),
            state: InstanceState::Pending,
        },
    );
    for (v, to) in [(x, InstanceState::Stopping), (y, InstanceState::Starting)] {
        let op = DbOp::UpdateInstanceState {
            id: v.id,
            expect: Some(InstanceState::Running),
            to,
            resources: None,
        };
        send(&mut world, v.account, op);
    }
    if billing_fails {
        dep_of(&mut world, DependencyKind::Billing)
            .set_error_override(FaultCode::InvalidParameter, Some(1.0));
    }
    (world, topo, [x, y])
}

const PHANTOM_ACCOUNT: firedrill::api::types::AccountId = firedrill::api::types::AccountId(7);

fn phantoms(world: &World) -> Vec<InstanceRow> {
    let Part::Db(db) = world.sim.component(world.db) else {
        unreachable!()
    };
    db.instance_rows()
        .filter(|r| r.account == PHANTOM_ACCOUNT)
        .collect()
}

#[test]
fn stuck_rows_are_failed_or_stopped_and_phantoms_cleaned() {
    let (mut world, topo, [x, y]) = stuck_world(false, false);
    assert!(world.run_until(SimTime::from_ns(101 * S)).is_none());
    let p = phantoms(&world);
    assert_eq!(p.len(), 3);
    assert!(p.iter().all(|r| r.state == InstanceState::Pending));
    assert_eq!(
        world.phantom_rows(),
        5,
        "3 phantoms + 2 rows no workflow holds"
    );
    // The 120 s audit judges rows written before 90 s: none of the crafted ones.
    assert!(world.run_until(SimTime::from_ns(170 * S)).is_none());
    assert_eq!(stats(&world).stuck_found(), 0, "not before the grace");
    assert_eq!(world.phantom_rows(), 5);
    // The 180 s audit judges rows written before 150 s: all five, repaired within seconds.
    assert!(world.run_until(SimTime::from_ns(200 * S)).is_none());
    let after = stats(&world);
    assert_eq!((after.stuck_found(), after.stuck_repaired()), (5, 5));
    assert_eq!(world.phantom_rows(), 0);
    let h = &after.time_to_repair_by[Inconsistency::Stuck.name()];
    assert_eq!(h.count(), 5);
    // Stuck since the crafting at 100 s, repaired after the 180 s audit's scan.
    assert!(h.min_ns().unwrap() >= 80 * S && h.max_ns().unwrap() < 90 * S);
    // Phantoms failed as their creation would have failed: Deleted, nothing referenced.
    for r in phantoms(&world) {
        assert_eq!(r.state, InstanceState::Deleted);
        assert_eq!(r.resources.iter().count(), 0);
    }
    // The half-done stop and boot finished as stops: billing stopped, disk detached, the
    // host, disk and ENI kept.
    for v in [x, y] {
        let now = row(&world, &v);
        assert_eq!(now.state, InstanceState::Stopped, "{v:?}");
        assert_eq!(now.resources.billing(), None);
        assert!(!now.resources.disk_attached);
        assert_eq!(now.resources.host(), v.resources.host());
        assert_eq!(now.resources.disk(), v.resources.disk());
        assert_eq!(now.resources.eni(), v.resources.eni());
    }
    let report = world.run();
    let end = stats(&world);
    assert_eq!(end.stuck_found(), 5, "found once");
    let r = world.result(report, topo.duration());
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.phantom_rows, 0);
    let billing = r.deps.iter().find(|(n, _)| n == "billing").unwrap();
    assert!(
        billing.1.records_deleted >= 2,
        "x's and y's subscriptions stopped"
    );
}

#[test]
fn a_stuck_row_reconciliation_cannot_repair_breaks_the_reconciled_invariant() {
    // Billing refuses every call from 100 s: the stops of x and y cannot finish.
    let (mut world, topo, [x, y]) = stuck_world(true, false);
    let report = world.run();
    let r = world.result(report, topo.duration());
    let v = reconciled_violation(&r);
    let named = |r: &InstanceRow, state: &str| {
        v.detail.starts_with(&format!(
            "instance #{} of account {} is still {state}",
            r.id.0, r.account.0
        ))
    };
    assert!(named(&x, "Stopping") || named(&y, "Starting"), "{v}");
    let rec = r.reconciliation.unwrap();
    assert!(rec.repair_failed >= 2);
    assert_eq!(rec.stuck_repaired(), 3, "the phantoms need no billing call");
    assert_eq!(r.phantom_rows, 2);
}

#[test]
fn repairs_invalidate_the_cached_copies() {
    let (mut world, topo, [x, y]) = stuck_world(false, true);
    assert!(world.run_until(SimTime::from_ns(101 * S)).is_none());
    // The L2 holds x and y as the crafting left them (an operator's warm-up, say).
    let now = world.sim.now();
    let key = |r: &InstanceRow| CacheKey {
        account: r.account,
        instance: r.id,
    };
    for v in [x, y] {
        let r = row(&world, &v);
        assert!(r.state.is_transitional());
        let value = Cached::Value(CachedInstance {
            state: r.state,
            instance_type: r.instance_type,
            updated_at: r.updated_at,
        });
        world.l2_mut().warm(
            now,
            key(&r),
            value,
            SimDuration::from_secs(600),
            r.updated_at,
        );
        assert!(world.l2_mut().peek(now, key(&r)).is_some());
    }
    let deletes_before = world.l2_mut().stats().deletes;
    assert!(world.run_until(SimTime::from_ns(200 * S)).is_none());
    let after = stats(&world);
    assert_eq!(after.stuck_repaired(), 5);
    // One invalidation per repair write (five rows, one write each), and no stale copy left.
    assert_eq!(after.invalidations, 5);
    let now = world.sim.now();
    for v in [x, y] {
        assert_eq!(row(&world, &v).state, InstanceState::Stopped);
        assert_eq!(world.l2_mut().peek(now, key(&v)), None, "{v:?}");
    }
    assert!(world.l2_mut().stats().deletes >= deletes_before + 5);
    let report = world.run();
    let r = world.result(report, topo.duration());
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

/// A RunInstances whose create_disk call takes 100 s (started in 100..102 s; steps may take
/// 150 s) stays Pending long past the 30 s grace, but an open workflow holds it: the audits
/// judge it and leave it alone (it is in progress, not stuck), and leave the host its workflow
/// allocated alone too (not yet on the row, but on the workflow's: not an orphan), and it ends
/// Running. (Before the workflow table was read, the host was released as an orphan, then found
/// dangling on the Running row, which was stopped.)
#[test]
fn a_row_an_open_workflow_holds_is_not_stuck() {
    use firedrill::faults::{Fault, FaultKind, FaultPlan, Target};
    use firedrill::workflow::StepRetry;
    let recon = every_minute();
    let node = plain_node();
    let t = traffic(
        1.0,
        ApiMix::only(Api::RunInstances),
        3,
        SimDuration::from_secs(120),
    );
    let slow = Fault::new(
        FaultKind::DepLatency {
            add: Some(Dist::constant(100.0).unwrap()),
            multiply: 1.0,
        },
        Target::Dependency {
            name: "block_storage".into(),
            endpoint: None,
        },
        SimTime::from_ns(100 * S),
        SimDuration::from_secs(2),
    )
    .unwrap();
    let engine = EngineConfig::builder()
        .all_steps(SimDuration::from_secs(150), &StepRetry::default())
        .build()
        .unwrap();
    let topo = topology(1, node, DbConfig::assumed_defaults(), t, unlimited(3), 400)
        .with_workflows(WorkflowSetup {
            engine,
            batch: true,
        })
        .unwrap()
        .with_reconciliation(recon)
        .unwrap()
        .with_faults(FaultPlan::new(vec![slow]))
        .unwrap();
    let mut world = topo.build(RootSeed::new(3));
    // After the 180 s audit (its judgement: rows written before 150 s) has compared its pages.
    assert!(world.run_until(SimTime::from_ns(185 * S)).is_none());
    let Part::Db(db) = world.sim.component(world.db) else {
        unreachable!()
    };
    let slow_rows: Vec<InstanceRow> = db
        .instance_rows()
        .filter(|r| r.state == InstanceState::Pending && r.last_write() < SimTime::from_ns(150 * S))
        .collect();
    assert!(!slow_rows.is_empty(), "a creation is held up");
    let Some(Part::Workflow(e)) = world.workflow.map(|id| world.sim.component(id)) else {
        unreachable!()
    };
    assert!(slow_rows.iter().all(|r| e.holds(r.id)));
    assert!(stats(&world).scans_completed >= 3);
    assert_eq!(stats(&world).stuck_found(), 0);
    let report = world.run();
    for r in &slow_rows {
        assert_eq!(row(&world, r).state, InstanceState::Running, "{r:?}");
    }
    let r = world.result(report, topo.duration());
    let rec = r.reconciliation.as_ref().unwrap();
    assert_eq!(rec.stuck_found(), 0);
    assert_eq!(rec.found_total(), 0, "{:?}", rec.found);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

/// A world of `every_minute` audits with `grace_s`, scans on a replica or not, orphan
/// confirmation or not, and a 45 s replica-lag fault for its 400 s; `lossy`: at 100 s five
/// running instances' rows lose their ENI reference (a lost write: five real orphans). Returns the
/// reconciliation's statistics, the database's, and the violations.
fn lagging_replica_run(
    replica: bool,
    grace_s: u64,
    confirm: bool,
    lossy: bool,
) -> (
    firedrill::reconcile::ReconStats,
    firedrill::db::DbStats,
    Vec<firedrill::invariants::Violation>,
) {
    use firedrill::faults::{Fault, FaultKind, FaultPlan, Target};
    let recon = every_minute()
        .with_timing(SimDuration::from_secs(60), SimDuration::from_secs(grace_s))
        .unwrap()
        .with_replica_reads(replica)
        .with_orphan_confirmation(confirm);
    let lag = Fault::new(
        FaultKind::ReplicaLag {
            lag: SimDuration::from_secs(45),
        },
        Target::Db,
        SimTime::ZERO,
        SimDuration::from_secs(400),
    )
    .unwrap();
    let topo = world_topology(1.0, 400, recon)
        .with_faults(FaultPlan::new(vec![lag]))
        .unwrap();
    let mut world = topo.build(RootSeed::new(5));
    if lossy {
        assert!(world.run_until(SimTime::from_ns(100 * S)).is_none());
        for victim in running(&world).into_iter().take(5) {
            let mut res = victim.resources;
            res.set(2, None);
            let Part::Db(db) = world.sim.component_mut(world.db) else {
                unreachable!()
            };
            assert!(db.tamper_resources(victim.account, victim.id, res));
        }
    }
    let report = world.run();
    let r = world.result(report, topo.duration());
    (r.reconciliation.unwrap(), r.db, r.violations)
}

/// Scans that read a replica lagging 45 s behind (a replica-lag fault for the whole run), with a
/// 30 s grace: rows created within the lag are missing from their pages while the records
/// their workflows made are older than the grace, so those records look orphaned and are
/// released under live instances (the runs then find the instances' host or disk gone). The
/// same lag with the scans on the primary, or a 60 s grace, finds nothing: a clean run has no
/// inconsistency, and a grace must cover the lag of what the scans read.
#[test]
fn replica_scans_lagging_past_the_grace_release_live_instances_resources() {
    let (primary, _, v) = lagging_replica_run(false, 30, false, false);
    assert!(primary.pages > 20, "{}", primary.pages);
    assert_eq!(primary.found_total(), 0, "{:?}", primary.found);
    assert!(v.is_empty(), "{v:?}");
    let (covered, db, v) = lagging_replica_run(true, 60, false, false);
    assert_eq!(covered.found_total(), 0, "{:?}", covered.found);
    assert!(v.is_empty(), "{v:?}");
    // The pages did read the lagging replica: rows were missing from them.
    assert!(db.stale_reads > 0 && db.replica_reads >= covered.pages);
    let (short, _, v) = lagging_replica_run(true, 30, false, false);
    // `repairs_spare_live` catches each release of a live instance's record when it is
    // judged, from the first audit's scan (at 60 s the replica shows the rows of 15 s ago,
    // and records up to 30 s old are judged).
    assert!(
        !v.is_empty() && v.iter().all(|x| x.invariant.name() == "repairs_spare_live"),
        "{v:?}"
    );
    assert!((60 * S..61 * S).contains(&v[0].at.as_ns()), "{}", v[0]);
    assert!(
        v[0].detail.contains("references it on the primary"),
        "{}",
        v[0]
    );
    // About a hundred instances lose every record (host, disk, ENI, subscription) as
    // orphans, and later audits find their rows dangling: reconciliation stops them.
    let orphans: u64 = short.orphans_found.values().sum();
    assert!(orphans > 100, "{:?}", short.found);
    let dangling_hosts = short.found.get(&("dangling", "host")).copied();
    assert!(dangling_hosts.is_some_and(|n| n > 10), "{:?}", short.found);
    assert!(short.repaired >= orphans, "{:?}", short.repaired_by);
}

/// Orphan confirmation (mark, then sweep) against the same lagging replica and short grace:
/// the records a page missed are only candidates, referenced again at the next audit (the
/// period, 60 s, is longer than the lag), so nothing live is released and nothing is found.
/// Real orphans (five ENIs whose rows lost their reference at 100 s, scans on the primary) are
/// still released, one audit after they are first seen.
#[test]
fn confirmed_orphans_spare_what_a_lagging_page_missed_and_still_release_real_ones() {
    let (marked, _, v) = lagging_replica_run(true, 30, true, false);
    assert!(v.is_empty(), "{v:?}");
    assert!(
        marked.orphan_candidates > 100,
        "{}",
        marked.orphan_candidates
    );
    assert_eq!(marked.found_total(), 0, "{:?}", marked.found);

    let (at_once, _, v) = lagging_replica_run(false, 30, false, true);
    assert!(v.is_empty(), "{v:?}");
    let (confirmed, _, v) = lagging_replica_run(false, 30, true, true);
    assert!(v.is_empty(), "{v:?}");
    let sum = |s: &firedrill::reconcile::ReconStats| s.orphans_found.values().sum::<u64>();
    assert_eq!(
        at_once.orphans_found.get("eni"),
        Some(&5),
        "{:?}",
        at_once.found
    );
    // The same orphans, each released one audit (60 s) later.
    assert_eq!(sum(&confirmed), sum(&at_once), "{:?}", confirmed.found);
    assert!(confirmed.orphan_candidates >= sum(&at_once));
    let first = |s: &firedrill::reconcile::ReconStats| s.time_to_repair.min_ns().unwrap();
    assert!(first(&confirmed) >= first(&at_once) + 59 * S);
}
