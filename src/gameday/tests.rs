use super::*;
use crate::faults::FaultKind;

fn t(s: u64) -> SimTime {
    SimTime::ZERO.saturating_add(SimDuration::from_secs(s))
}

/// One-second buckets with the given 5XX counts out of 100 responses.
fn rows(errors: &[u64]) -> Vec<SeriesRow> {
    errors
        .iter()
        .enumerate()
        .map(|(i, &e)| SeriesRow {
            start: t(i as u64),
            end: t(i as u64 + 1),
            requests: 100,
            responses_5xx: e,
            latency_p50_ns: Some(1_000_000),
            latency_p99_ns: Some(5_000_000),
            queue_depth: 0,
            gc_pause_ns: 0,
            pool_acquisitions: 0,
            pool_wait_mean_ns: None,
            pool_wait_p99_ns: None,
            l1_lookups: None,
            l1_hits: None,
            db_queries: 0,
            l2_errors: 0,
            feed_lag_max_ns: None,
        })
        .collect()
}

fn rule(name: &str, component: &str, hold_s: u64) -> AlertRule {
    AlertRule {
        name: name.into(),
        metric: Metric::Rate5xx,
        above: true,
        threshold: 0.05,
        hold: SimDuration::from_secs(hold_s),
        component: component.into(),
    }
}

#[test]
fn an_alert_fires_after_its_hold_and_resolves_at_the_first_good_bucket() {
    let mut g = GameDay::new(GameDayConfig {
        alerts: vec![rule("5xx", "gateway", 3)],
        runbook: vec![],
    });
    // Bad from second 2 to 7 (exclusive): held 3 s at the end of bucket 4 (2..5).
    for r in rows(&[0, 0, 10, 10, 10, 10, 10, 0, 0]) {
        g.on_row(&r);
    }
    assert_eq!(
        g.firings(),
        &[Firing {
            alert: 0,
            fired_at: t(5),
            resolved_at: Some(t(8))
        }]
    );
}

#[test]
fn a_blip_shorter_than_the_hold_never_fires() {
    let mut g = GameDay::new(GameDayConfig {
        alerts: vec![rule("5xx", "gateway", 3)],
        runbook: vec![],
    });
    for r in rows(&[0, 10, 10, 0, 10, 10, 0]) {
        g.on_row(&r);
    }
    assert!(g.firings().is_empty());
}

#[test]
fn runbook_steps_run_at_their_time_or_a_delay_after_their_alert() {
    let mut g = GameDay::new(GameDayConfig {
        alerts: vec![rule("5xx", "gateway", 1)],
        runbook: vec![
            RunbookStep {
                action: Action::FlushCache,
                trigger: Trigger::OnAlert {
                    alert: 0,
                    delay: SimDuration::from_secs(30),
                },
            },
            RunbookStep {
                action: Action::EnableShedding,
                trigger: Trigger::At(t(10)),
            },
        ],
    });
    assert_eq!(g.next_due(), Some(t(10)));
    for r in rows(&[0, 10, 0, 10]) {
        g.on_row(&r);
    }
    // Fired at 2 s (bucket 1..2), step 0 due at 32 s; it fires again at 4 s but runs once.
    assert_eq!(g.take_due(t(10)), vec![1]);
    assert_eq!(g.next_due(), Some(t(32)));
    assert_eq!(g.take_due(t(31)), Vec::<usize>::new());
    assert_eq!(g.take_due(t(32)), vec![0]);
    assert_eq!(g.next_due(), None);
}

#[test]
fn the_timeline_measures_detection_location_and_recovery_from_the_fault_start() {
    let fault = Fault::new(
        FaultKind::L2Loss,
        Target::L2,
        t(2),
        SimDuration::from_secs(5),
    )
    .unwrap();
    let alerts = vec![rule("5xx", "gateway", 1), rule("l2", "l2", 2)];
    let rs = rows(&[0, 0, 10, 10, 10, 10, 0, 0, 0, 0]);
    let mut g = GameDay::new(GameDayConfig {
        alerts: alerts.clone(),
        runbook: vec![],
    });
    for r in &rs {
        g.on_row(r);
    }
    let slo = |r: &SeriesRow| r.rate_5xx().is_none_or(|x| x <= 0.05);
    let tl = timelines(
        &[fault],
        &[(0, Edge::Start, t(2))],
        &alerts,
        g.firings(),
        &rs,
        &slo,
        SimDuration::from_secs(2),
        t(100),
    );
    assert_eq!(tl.len(), 1);
    assert_eq!(tl[0].component, "l2");
    assert_eq!(tl[0].detected, Some(t(3)));
    assert_eq!(tl[0].located, Some(t(4)));
    // Good again from bucket 6..7; two seconds of it end at 8.
    assert_eq!(tl[0].recovered, Some(t(8)));
    assert!(tl[0].detected_in_1() && tl[0].located_in_5() && tl[0].recovered_in_10());
}
