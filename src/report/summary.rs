//! `summary.json`: the stable, versioned results format of a run (sorted keys, fixed float
//! precision), and writing files atomically (a temporary file, then a rename).
//!
//! Everything but the `wall` section is a pure function of (scenario, seed): two runs of the
//! same scenario and seed give byte-identical summaries once `wall` is removed.

use super::Json;
use crate::api::types::{Api, ErrorCode};
use crate::db::Table;
use crate::metrics::LatencyHistogram;
use crate::scenario::Scenario;
use crate::workflow::{StepStats, WorkflowKind};
use crate::world::RunResult;
use std::io::Write as _;
use std::path::Path;

/// The summary format's version: bump on any change a reader could notice.
pub const SCHEMA: &str = "firedrill.summary/2";

/// Wall-clock figures of one run: the only part of a summary allowed to differ between runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wall {
    pub seconds: f64,
}

const NS_PER_MS: f64 = 1e6;

/// p50/p90/p99/p999/max/mean of `h` in ms (3 decimals), nulls when empty.
pub fn latency_ms(h: &LatencyHistogram) -> Json {
    let q = |p: f64| Json::opt_num(h.quantile_ns(p).map(|v| v as f64 / NS_PER_MS), 3);
    Json::obj([
        ("count", Json::int(h.count())),
        ("p50", q(0.5)),
        ("p90", q(0.9)),
        ("p99", q(0.99)),
        ("p999", q(0.999)),
        (
            "max",
            Json::opt_num(h.max_ns().map(|v| v as f64 / NS_PER_MS), 3),
        ),
        ("mean", Json::opt_num(h.mean_ns().map(|v| v / NS_PER_MS), 3)),
    ])
}

/// One count per table, by table name.
fn per_table(rows: &[u64; Table::COUNT]) -> Json {
    Json::obj(
        Table::ALL
            .iter()
            .map(|t| (t.name(), Json::int(rows[t.index()]))),
    )
}

/// Counts by error code, by the code's name.
fn by_code(counts: &std::collections::BTreeMap<ErrorCode, u64>) -> Json {
    Json::obj(counts.iter().map(|(e, n)| (e.name(), Json::int(*n))))
}

/// One step of a workflow definition: its name and what its attempts did.
fn step_json(st: &StepStats) -> Json {
    Json::obj([
        ("name", Json::str(st.name)),
        ("attempts", Json::int(st.attempts)),
        ("retries", Json::int(st.retries)),
        ("timeouts", Json::int(st.timeouts)),
        ("failures", Json::int(st.failures)),
        ("failure_codes", by_code(&st.failure_codes)),
        ("compensations", Json::int(st.compensations)),
        ("compensation_failures", Json::int(st.compensation_failures)),
    ])
}

fn ratio(a: u64, b: u64) -> Json {
    if b == 0 {
        Json::Null
    } else {
        Json::num(a as f64 / b as f64, 6)
    }
}

/// One SLO check: what was measured against its target.
#[derive(Clone, Debug, PartialEq)]
pub struct SloCheck {
    pub name: String,
    pub target: f64,
    pub measured: Option<f64>,
    pub met: bool,
}

/// Judges `r` by the scenario's SLOs: per API p99 (ms) and the overall 5XX rate. An API with no
/// requests has nothing to judge and is skipped.
pub fn slo_checks(s: &Scenario, r: &RunResult) -> Vec<SloCheck> {
    let mut out = Vec::new();
    for api in Api::ALL {
        let a = r.api(api);
        let Some(target) = s.slo().p99_ms(api) else {
            continue;
        };
        if a.requests == 0 {
            continue;
        }
        let measured = a.latency.quantile_ns(0.99).map(|v| v as f64 / NS_PER_MS);
        out.push(SloCheck {
            name: format!("{}.p99_ms", api.name()),
            target,
            measured,
            met: measured.is_some_and(|m| m <= target),
        });
    }
    if let Some(target) = s.slo().rate_5xx_max() {
        let measured = r.rate_5xx();
        out.push(SloCheck {
            name: "rate_5xx".into(),
            target,
            measured: Some(measured),
            met: measured <= target,
        });
    }
    out
}

/// The summary of a run of `s` with `seed`. `partial`: the run was interrupted (Ctrl-C).
pub fn summary(s: &Scenario, seed: u64, r: &RunResult, partial: bool, wall: Option<Wall>) -> Json {
    let apis = Api::ALL
        .iter()
        .map(|&api| r.api(api))
        .filter(|a| a.requests > 0)
        .map(|a| {
            (
                a.api.name(),
                Json::obj([
                    ("requests", Json::int(a.requests)),
                    (
                        "status",
                        Json::obj(a.status.iter().map(|(st, n)| (st.name(), Json::int(*n)))),
                    ),
                    ("latency_ms", latency_ms(&a.latency)),
                    ("rate_5xx", ratio(a.count_5xx(), a.requests)),
                ]),
            )
        });
    let simulated_s = r.report.end_time.as_secs_f64();
    let mut all_pauses = LatencyHistogram::new();
    let mut paused_ns = 0u64;
    let nodes: Vec<Json> = r
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            all_pauses.merge(n.gc.all_pauses());
            paused_ns += n.gc.total_paused_ns();
            Json::obj([
                ("node", Json::int(i as u64)),
                ("pauses", Json::int(n.gc.all_pauses().count())),
                ("pause_ms", latency_ms(n.gc.all_pauses())),
                ("time_fraction", Json::num(n.gc_time_fraction, 6)),
            ])
        })
        .collect();
    let node_time_ns = r.report.end_time.as_ns() as f64 * r.nodes.len() as f64;
    let gc = Json::obj([
        ("pauses", Json::int(all_pauses.count())),
        ("pause_ms", latency_ms(&all_pauses)),
        (
            "time_fraction",
            if node_time_ns > 0.0 {
                Json::num(paused_ns as f64 / node_time_ns, 6)
            } else {
                Json::Null
            },
        ),
        ("nodes", Json::Arr(nodes)),
    ]);
    let db = Json::obj([
        (
            "classes",
            Json::obj(crate::db::QueryClass::ALL.iter().map(|&c| {
                let st = r.db.class(c);
                (
                    c.name(),
                    Json::obj([
                        ("received", Json::int(st.received)),
                        ("served", Json::int(st.served)),
                        ("refused", Json::int(st.refused)),
                        ("slow", Json::int(st.slow)),
                        ("latency_ms", latency_ms(&st.latency)),
                    ]),
                )
            })),
        ),
        ("slow_queries", Json::int(r.db.slow_queries())),
        ("replica_reads", Json::int(r.db.replica_reads)),
        ("stale_reads", Json::int(r.db.stale_reads)),
        ("rejected_overloaded", Json::int(r.db.rejected_overloaded)),
        ("rejected_unavailable", Json::int(r.db.rejected_unavailable)),
        ("max_queued", Json::int(r.db.max_queued)),
        ("table_rows_end", per_table(&r.table_rows_end)),
        (
            "table_rows",
            Json::Arr(
                r.db.table_rows_series
                    .iter()
                    .map(|(at, rows)| {
                        let mut row = per_table(rows);
                        row.insert("t_s", Json::num(at.as_secs_f64(), 3));
                        row
                    })
                    .collect(),
            ),
        ),
    ]);
    let uncertain_writes: u64 = r
        .nodes
        .iter()
        .map(|n| n.faults.uncertain_write_invalidations)
        .sum();
    let cache = match (&r.l1, &r.l2) {
        (Some(l1), l2) => Json::obj([
            (
                "l1",
                Json::obj([
                    ("lookups", Json::int(l1.lookups())),
                    ("hits", Json::int(l1.hits())),
                    ("hit_ratio", Json::opt_num(l1.hit_ratio(), 6)),
                    ("coalesced", Json::int(l1.coalesced)),
                    ("stale_served", Json::int(l1.stale_served)),
                    ("evictions", Json::int(l1.evictions)),
                    ("invalidations", Json::int(l1.invalidations)),
                    ("db_reads_saved", Json::int(l1.db_reads_saved())),
                ]),
            ),
            (
                "l2",
                l2.as_ref().map_or(Json::Null, |l2| {
                    Json::obj([
                        ("gets", Json::int(l2.gets)),
                        ("hit_ratio", Json::opt_num(l2.cache.hit_ratio(), 6)),
                        ("errors", Json::int(l2.errors())),
                        ("latency_ms", latency_ms(&l2.latency)),
                        ("db_reads_saved", Json::int(l2.cache.db_reads_saved())),
                    ])
                }),
            ),
            (
                "db_reads_saved",
                Json::int(
                    l1.db_reads_saved() + l2.as_ref().map_or(0, |l2| l2.cache.db_reads_saved()),
                ),
            ),
            // Who invalidated after writes: the writers, or the binlog invalidator (with what
            // its retried L2 deletes did). Either way, the nodes' state writes that failed
            // `Unavailable` and were invalidated all the same (they may have been applied).
            (
                "invalidation",
                r.feed.as_ref().map_or_else(
                    || {
                        Json::obj([
                            ("mode", Json::str("writer")),
                            ("uncertain_writes", Json::int(uncertain_writes)),
                        ])
                    },
                    |f| {
                        Json::obj([
                            ("mode", Json::str("binlog")),
                            ("uncertain_writes", Json::int(uncertain_writes)),
                            ("changes", Json::int(f.changes)),
                            ("heartbeats", Json::int(f.heartbeats)),
                            ("rows", Json::int(f.rows)),
                            ("l2_deletes_sent", Json::int(f.deletes_sent)),
                            ("retries", Json::int(f.retries)),
                            ("acked", Json::int(f.acked)),
                            ("refused", Json::int(f.refused)),
                            ("timeouts", Json::int(f.timeouts)),
                            ("expired", Json::int(f.expired)),
                            ("dropped", Json::int(f.dropped)),
                            ("max_pending", Json::int(f.max_pending)),
                            ("delivery_ms", latency_ms(&f.delivery)),
                        ])
                    },
                ),
            ),
        ]),
        _ => Json::Null,
    };
    let workflows = r.workflows.as_ref().map_or(Json::Null, |w| {
        Json::obj(
            WorkflowKind::ALL
                .iter()
                .filter(|k| w.admitted[k.index()] > 0)
                .map(|k| {
                    let i = k.index();
                    (
                        k.name(),
                        Json::obj([
                            ("admitted", Json::int(w.admitted[i])),
                            ("completed", Json::int(w.completed[i])),
                            ("failed", Json::int(w.failed[i])),
                            ("e2e_ms", latency_ms(&w.e2e[i])),
                            (
                                "steps",
                                Json::Arr(w.steps[i].iter().map(step_json).collect()),
                            ),
                        ]),
                    )
                }),
        )
    });
    let workflow_engine = r.workflows.as_ref().map_or(Json::Null, |w| {
        Json::obj([
            ("rejected", Json::int(w.rejected)),
            (
                "rejected_by_kind",
                Json::obj(
                    WorkflowKind::ALL
                        .iter()
                        .filter(|k| w.rejected_by_kind[k.index()] > 0)
                        .map(|k| (k.name(), Json::int(w.rejected_by_kind[k.index()]))),
                ),
            ),
            // The nodes' side of admission: requests answered the engine's refusal, requests
            // whose command got no acknowledgement in time, and acknowledgements that found
            // their request gone.
            ("refusals_answered", Json::int(r.node_counter("wf_refused"))),
            ("ack_timeouts", Json::int(r.node_counter("wf_ack_timeouts"))),
            (
                "stale_acks",
                Json::int(r.nodes.iter().map(|n| n.faults.stale_wf_acks).sum::<u64>()),
            ),
            ("refused_rows_failed", Json::int(w.refused_rows_failed)),
            ("refused_rows_left", Json::int(w.refused_rows_left)),
            ("children", Json::int(w.children)),
            (
                "failures",
                Json::obj(w.failures.iter().map(|(k, v)| (*k, Json::int(*v)))),
            ),
            ("step_retries", Json::int(w.retries())),
            ("compensations", Json::int(w.compensations)),
            ("compensation_failures", Json::int(w.compensation_failures)),
            ("tasks", Json::int(w.tasks)),
            ("queue_wait_ms", latency_ms(&w.queue_wait)),
            ("max_queue", Json::int(w.max_queue as u64)),
            ("crashes", Json::int(w.crashes)),
            ("tasks_lost", Json::int(w.tasks_lost)),
            ("redeliveries", Json::int(w.redeliveries)),
            ("lease_renewals", Json::int(w.lease_renewals)),
            ("dep_calls", Json::int(w.dep_calls)),
            ("db_updates", Json::int(w.db_updates)),
            ("db_appends", Json::int(w.db_appends)),
            ("history_events", Json::int(w.history_events)),
            ("persist_failures", Json::int(w.persist_failures)),
            ("deadline_exceeded", Json::int(w.deadline_exceeded)),
            ("history_limited", Json::int(w.history_limited)),
            ("kept_resources", Json::int(w.kept_resources)),
            ("orphaned_resources", Json::int(w.orphaned_resources)),
            ("stuck_instances", Json::int(r.stuck_instances.unwrap_or(0))),
        ])
    });
    let cleanup = r.cleanup.as_ref().map_or(Json::Null, |c| {
        Json::obj([
            ("runs", Json::int(c.runs)),
            ("batches", Json::int(c.batches)),
            ("rows_archived", per_table(&c.rows_archived)),
            ("refused", Json::int(c.refused)),
            ("runs_cut_short", Json::int(c.runs_cut_short)),
        ])
    });
    let dependencies = Json::obj(r.deps.iter().map(|(name, d)| {
        (
            name.clone(),
            Json::obj([
                ("calls", Json::int(d.calls)),
                ("ok", Json::int(d.ok)),
                ("errors", by_code(&d.errors)),
                ("rejected", Json::int(d.rejected)),
                ("timeouts", Json::int(d.timeouts)),
                ("replays", Json::int(d.replays)),
                ("max_concurrency", Json::int(u64::from(d.max_concurrency))),
                ("latency_ms", latency_ms(&d.latency)),
            ]),
        )
    }));
    let reconciliation = r.reconciliation.as_ref().map_or(Json::Null, |rc| {
        Json::obj([
            ("audits", Json::int(rc.audits)),
            ("orphan_candidates", Json::int(rc.orphan_candidates)),
            (
                "orphans_found",
                Json::obj(rc.orphans_found.iter().map(|(k, v)| (*k, Json::int(*v)))),
            ),
            (
                "found",
                Json::obj(
                    rc.found
                        .iter()
                        .map(|((w, k), v)| (format!("{w}.{k}"), Json::int(*v))),
                ),
            ),
            ("scan_pages", Json::int(rc.pages)),
            ("scan_rows", Json::int(rc.rows_read)),
            ("repaired", Json::int(rc.repaired)),
            ("repair_failed", Json::int(rc.repair_failed)),
            ("time_to_repair_ms", latency_ms(&rc.time_to_repair)),
        ])
    });
    let client = r.client.as_ref().map_or(Json::Null, |c| {
        Json::obj([
            ("first_attempts", Json::int(c.first_attempts)),
            ("attempts", Json::int(c.attempts)),
            ("retry_amplification", Json::num(c.retry_amplification(), 6)),
            (
                "retries",
                Json::obj(
                    crate::api::types::ErrorCode::ALL
                        .iter()
                        .filter(|e| c.retries_for(**e) > 0)
                        .map(|e| (e.name(), Json::int(c.retries_for(*e)))),
                ),
            ),
            ("give_ups", Json::int(c.give_ups)),
            ("retry_limit_hits", Json::int(c.retry_limit_hits)),
            ("calls_ok", Json::int(c.calls_ok)),
            ("calls_failed", Json::int(c.calls_failed)),
            ("end_to_end_ms", latency_ms(&c.end_to_end)),
            ("polls", Json::int(c.polls)),
            ("polled_creations", Json::int(c.polled_creations)),
            ("poll_give_ups", Json::int(c.poll_give_ups)),
            ("time_to_running_ms", latency_ms(&c.time_to_running)),
            ("untracked", Json::int(c.untracked)),
        ])
    });
    let replay = r.replay.as_ref().map_or(Json::Null, |p| {
        Json::obj([
            ("records", Json::int(p.records)),
            ("scheduled", Json::int(p.scheduled)),
            ("sent", Json::int(p.sent)),
            ("after_end", Json::int(p.after_end)),
        ])
    });
    let checks = slo_checks(s, r);
    let slo = Json::obj([
        ("met", Json::Bool(checks.iter().all(|c| c.met))),
        (
            "checks",
            Json::Arr(
                checks
                    .iter()
                    .map(|c| {
                        Json::obj([
                            ("name", Json::str(c.name.clone())),
                            ("target", Json::num(c.target, 6)),
                            ("measured", Json::opt_num(c.measured, 6)),
                            ("met", Json::Bool(c.met)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ]);
    let invariants = Json::obj([
        ("ok", Json::Bool(r.violations.is_empty())),
        ("phantom_rows", Json::int(r.phantom_rows)),
        ("violations_total", Json::int(r.violations_total)),
        (
            "checked",
            Json::Arr(
                crate::invariants::Invariant::ALL
                    .iter()
                    .map(|i| Json::str(i.name()))
                    .collect(),
            ),
        ),
        (
            "violations",
            Json::Arr(
                r.violations
                    .iter()
                    .map(|v| {
                        Json::obj([
                            ("invariant", Json::str(v.invariant.name())),
                            ("at_s", Json::num(v.at.as_secs_f64(), 6)),
                            ("detail", Json::str(v.detail.clone())),
                        ])
                    })
                    .collect(),
            ),
        ),
    ]);
    let faults = Json::Arr(
        s.topology()
            .faults()
            .faults()
            .iter()
            .map(|f| {
                Json::obj([
                    ("kind", Json::str(f.kind().name())),
                    ("target", Json::str(f.target().to_string())),
                    ("start_s", Json::num(f.start().as_secs_f64(), 3)),
                    ("duration_s", Json::num(f.duration().as_secs_f64(), 3)),
                    ("ramp_s", Json::num(f.ramp().as_secs_f64(), 3)),
                    (
                        "account",
                        f.account()
                            .map_or(Json::Null, |a| Json::int(u64::from(a.0))),
                    ),
                ])
            })
            .collect(),
    );
    // What the accounts faults are scoped to got, beside every other account together.
    let outcomes = |o: &crate::api::gateway::AccountOutcomes| {
        let mean_ms = if o.answered == 0 {
            Json::Null
        } else {
            Json::num(o.mean_latency_ns() / 1e6, 3)
        };
        vec![
            ("answered", Json::int(o.answered)),
            ("ok", Json::int(o.ok)),
            ("status_4xx", Json::int(o.status_4xx)),
            ("status_5xx", Json::int(o.status_5xx)),
            ("throttled", Json::int(o.throttled)),
            ("rate_5xx", Json::num(o.rate_5xx(), 6)),
            ("latency_ms_mean", mean_ms),
        ]
    };
    let accounts = r.other_accounts.as_ref().map_or(Json::Null, |others| {
        Json::obj([
            (
                "scoped",
                Json::Arr(
                    r.scoped_accounts
                        .iter()
                        .map(|(a, o)| {
                            let mut fields = vec![("account", Json::int(u64::from(a.0)))];
                            fields.extend(outcomes(o));
                            Json::obj(fields)
                        })
                        .collect(),
                ),
            ),
            ("others", Json::obj(outcomes(others))),
        ])
    });
    let gameday = r.gameday.as_ref().map_or(Json::Null, |g| {
        let secs = |t: Option<crate::kernel::SimTime>| {
            t.map_or(Json::Null, |t| Json::num(t.as_secs_f64(), 3))
        };
        Json::obj([
            (
                "alerts",
                Json::Arr(
                    g.firings
                        .iter()
                        .map(|f| {
                            let rule = &g.config.alerts[f.alert];
                            Json::obj([
                                ("name", Json::str(rule.name.clone())),
                                ("component", Json::str(rule.component.clone())),
                                ("fired_s", Json::num(f.fired_at.as_secs_f64(), 3)),
                                ("resolved_s", secs(f.resolved_at)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "runbook",
                Json::Arr(
                    g.actions
                        .iter()
                        .map(|a| {
                            Json::obj([
                                ("action", Json::str(g.config.runbook[a.step].action.name())),
                                ("at_s", Json::num(a.at.as_secs_f64(), 3)),
                                ("note", Json::str(a.note.clone())),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "timeline",
                Json::Arr(
                    g.timelines
                        .iter()
                        .map(|t| {
                            Json::obj([
                                ("fault", Json::int(t.fault as u64)),
                                ("component", Json::str(t.component.clone())),
                                ("start_s", Json::num(t.start.as_secs_f64(), 3)),
                                ("detected_s", secs(t.detected)),
                                ("located_s", secs(t.located)),
                                ("recovered_s", secs(t.recovered)),
                                ("detected_within_1min", Json::Bool(t.detected_in_1())),
                                ("located_within_5min", Json::Bool(t.located_in_5())),
                                ("recovered_within_10min", Json::Bool(t.recovered_in_10())),
                            ])
                        })
                        .collect(),
                ),
            ),
        ])
    });
    let requests = r.requests();
    let mut top = vec![
        ("schema", Json::str(SCHEMA)),
        (
            "scenario",
            Json::obj([
                ("name", Json::str(s.name())),
                ("hash", Json::str(format!("{:016x}", s.hash()))),
                ("scale", Json::num(s.scale(), 3)),
                ("duration_s", Json::num(s.duration().as_secs_f64(), 3)),
                ("warmup_s", Json::num(s.warmup().as_secs_f64(), 3)),
            ]),
        ),
        ("seed", Json::int(seed)),
        ("trace_hash", Json::str(r.trace_hash().to_string())),
        ("outcome", Json::str(r.report.outcome.label())),
        ("partial", Json::Bool(partial)),
        ("simulated_s", Json::num(simulated_s, 6)),
        ("events", Json::int(r.report.events)),
        ("requests", Json::obj([("total", Json::int(requests))])),
        ("rate_5xx", Json::num(r.rate_5xx(), 6)),
        ("apis", Json::obj(apis)),
        ("gc", gc),
        ("db", db),
        ("cache", cache),
        ("workflows", workflows),
        ("workflow_engine", workflow_engine),
        ("cleanup", cleanup),
        ("dependencies", dependencies),
        ("reconciliation", reconciliation),
        ("client", client),
        ("replay", replay),
        ("slo", slo),
        ("faults", faults),
        ("accounts", accounts),
        ("invariants", invariants),
        ("gameday", gameday),
    ];
    if let Some(w) = wall {
        let per_s = |n: u64| {
            if w.seconds > 0.0 {
                Json::num(n as f64 / w.seconds, 1)
            } else {
                Json::Null
            }
        };
        top.push((
            "wall",
            Json::obj([
                ("seconds", Json::num(w.seconds, 3)),
                ("events_per_s", per_s(r.report.events)),
                ("requests_per_s", per_s(requests)),
            ]),
        ));
    }
    Json::obj(top)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed and synced,
/// then renamed over `path` — a reader sees the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
