use super::*;
use crate::faults::plan::PlanWalk;

fn secs(s: u64) -> SimDuration {
    SimDuration::from_secs(s)
}
fn at(s: u64) -> SimTime {
    SimTime::ZERO.saturating_add(secs(s))
}
fn dep(name: &str) -> Target {
    Target::Dependency {
        name: name.to_string(),
        endpoint: None,
    }
}

#[test]
fn targets_parse_and_print_back() {
    for s in [
        "nodes",
        "node.3",
        "db",
        "l2",
        "workflow",
        "gateway",
        "traffic",
        "dep.vpc",
        "dep.vpc.create_eni",
    ] {
        assert_eq!(Target::parse(s).unwrap().to_string(), s);
    }
    for s in ["node.x", "dep.", "dep.vpc.", "nodes2", ""] {
        assert!(Target::parse(s).is_err(), "{s}");
    }
}

#[test]
fn kinds_refuse_targets_they_cannot_act_on() {
    let e = Fault::new(FaultKind::DbFailover, Target::Nodes, at(1), secs(5)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a db_failover fault cannot target `nodes`; it targets db"
    );
    let peer = FaultKind::Partition {
        peer: Target::Nodes,
    };
    assert!(Fault::new(peer, Target::Node(0), at(1), secs(5)).is_err());
    let ok = FaultKind::Partition { peer: Target::Db };
    assert!(Fault::new(ok, Target::Node(0), at(1), secs(5)).is_ok());
}

#[test]
fn parameters_out_of_range_are_refused_with_a_hint() {
    let e = Fault::new(
        FaultKind::DepErrors {
            code: FaultCode::InternalError,
            probability: 1.5,
        },
        dep("vpc"),
        at(0),
        secs(1),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "dep_errors: bad probability; a probability in [0, 1]"
    );
    assert!(matches!(
        Fault::new(FaultKind::DbFailover, Target::Db, at(0), SimDuration::ZERO),
        Err(FaultError::EmptyWindow { .. })
    ));
    // Instant kinds may have an empty window.
    assert!(Fault::new(FaultKind::L2Flush, Target::L2, at(0), SimDuration::ZERO).is_ok());
}

#[test]
fn ramps_only_for_kinds_with_an_intensity_and_within_the_window() {
    let f = Fault::new(FaultKind::DbFailover, Target::Db, at(0), secs(10)).unwrap();
    assert!(matches!(
        f.with_ramp(secs(1)),
        Err(FaultError::NotRampable { .. })
    ));
    let f = Fault::new(
        FaultKind::TrafficSurge { multiply: 3.0 },
        Target::Traffic,
        at(0),
        secs(10),
    )
    .unwrap();
    assert!(matches!(
        f.clone().with_ramp(secs(11)),
        Err(FaultError::RampTooLong { .. })
    ));
    assert!(f.with_ramp(secs(10)).is_ok());
}

/// A 3× traffic surge from 10 s for 100 s, ramped up over its first 20 s.
fn ramped_surge() -> Fault {
    Fault::new(
        FaultKind::TrafficSurge { multiply: 3.0 },
        Target::Traffic,
        at(10),
        secs(100),
    )
    .unwrap()
    .with_ramp(secs(20))
    .unwrap()
}

#[test]
fn intensity_steps_up_over_the_ramp_and_is_zero_outside_the_window() {
    let f = ramped_surge();
    assert_eq!(f.intensity(at(9)), 0.0);
    assert_eq!(f.intensity(at(10)), 0.1);
    assert_eq!(f.intensity(at(11)), 0.1);
    assert_eq!(f.intensity(at(12)), 0.2);
    assert_eq!(f.intensity(at(29)), 1.0);
    assert_eq!(f.intensity(at(30)), 1.0);
    assert_eq!(f.intensity(at(109)), 1.0);
    assert_eq!(f.intensity(at(110)), 0.0);
}

#[test]
fn transitions_are_starts_ramp_steps_ticks_and_ends() {
    let ramped = ramped_surge();
    let leak = Fault::new(
        FaultKind::HeapLeak {
            bytes_per_sec: 1 << 20,
        },
        Target::Node(0),
        at(200),
        secs(3),
    )
    .unwrap();
    let plan = FaultPlan::new(vec![ramped, leak]);
    let mut t = SimTime::ZERO;
    let mut seen = Vec::new();
    let mut inclusive = true;
    while let Some(next) = plan.next_transition(t, inclusive) {
        seen.push(next.since_start().as_ns() / 1_000_000_000);
        t = next;
        inclusive = false;
    }
    assert_eq!(
        seen,
        vec![
            10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 110, 200, 201, 202, 203
        ]
    );
}

#[test]
fn a_walk_reports_edges_once_and_an_empty_window_starts_and_ends_together() {
    let plan = FaultPlan::new(vec![
        Fault::new(FaultKind::L2Flush, Target::L2, at(5), SimDuration::ZERO).unwrap(),
        Fault::new(FaultKind::DbFailover, Target::Db, at(5), secs(10)).unwrap(),
    ]);
    let mut w = PlanWalk::new(&plan);
    assert!(w.step(&plan, at(1)).is_empty());
    let s = w.step(&plan, at(5));
    let edges: Vec<(usize, Option<Edge>)> = s.iter().map(|s| (s.index, s.edge)).collect();
    assert_eq!(
        edges,
        vec![
            (0, Some(Edge::Start)),
            (0, Some(Edge::End)),
            (1, Some(Edge::Start))
        ]
    );
    let s = w.step(&plan, at(6));
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].index, s[0].edge), (1, None));
    let s = w.step(&plan, at(15));
    assert_eq!((s[0].index, s[0].edge), (1, Some(Edge::End)));
    assert!(w.step(&plan, at(16)).is_empty());
}

#[test]
fn an_account_scope_only_for_the_kinds_that_take_one() {
    let a = AccountId(7);
    let errors = Fault::new(
        FaultKind::DepErrors {
            code: FaultCode::InternalError,
            probability: 0.5,
        },
        dep("vpc"),
        at(1),
        secs(5),
    )
    .unwrap();
    let scoped = errors.clone().for_account(a).unwrap();
    assert_eq!(scoped.account(), Some(a));
    assert_eq!(errors.account(), None);
    assert!(scoped.applies_to(Some(a)));
    assert!(!scoped.applies_to(Some(AccountId(8))));
    assert!(
        !scoped.applies_to(None),
        "reconciliation's calls are no account's"
    );
    assert!(errors.applies_to(None) && errors.applies_to(Some(AccountId(8))));
    assert_eq!(
        scoped.to_string(),
        "dep_errors on dep.vpc from 1s for 5s for account 7"
    );
    // Shrinking keeps the scope.
    assert_eq!(
        scoped.with_window(at(2), secs(2)).unwrap().account(),
        Some(a)
    );
    let weaker = scoped.kind().weaker().unwrap();
    assert_eq!(scoped.with_kind(weaker).unwrap().account(), Some(a));

    let crash = Fault::new(FaultKind::NodeCrash, Target::Node(0), at(1), secs(5)).unwrap();
    let e = crash.for_account(a).unwrap_err();
    assert_eq!(e, FaultError::NotAccountScoped { kind: "node_crash" });
    assert_eq!(
        e.to_string(),
        "a node_crash fault cannot be scoped to an account; remove `account` (kinds with an \
         account scope: dep_latency, dep_errors, dep_blackhole, dep_partial_outage, \
         client_no_backoff, quota_too_low)"
    );
    let hot = Fault::new(
        FaultKind::HotTenant {
            account: 1,
            share: 0.5,
        },
        Target::Traffic,
        at(1),
        secs(5),
    )
    .unwrap();
    assert!(
        hot.for_account(a)
            .unwrap_err()
            .to_string()
            .ends_with("; a hot_tenant fault names its account in its own `account` parameter")
    );
    // Exactly the listed kinds accept a scope.
    let skew = FaultKind::ClockSkew { skew_ns: 1 };
    assert!(!skew.account_scopable());
    for (kind, target) in [
        (FaultKind::DepBlackhole, dep("vpc")),
        (FaultKind::ClientNoBackoff, Target::Traffic),
        (FaultKind::QuotaTooLow { factor: 0.5 }, Target::Gateway),
    ] {
        assert!(ACCOUNT_KINDS.contains(&kind.name()));
        let f = Fault::new(kind, target, at(0), secs(1)).unwrap();
        assert!(f.for_account(a).is_ok());
    }
    let scopable = KIND_NAMES
        .iter()
        .filter(|k| ACCOUNT_KINDS.contains(k))
        .count();
    assert_eq!(scopable, ACCOUNT_KINDS.len());
}
