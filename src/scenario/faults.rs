//! The `[[fault]]` reader: each table's kind, target, window, the parameters its kind takes and
//! its optional account scope (`account`, for the kinds in [`ACCOUNT_KINDS`]; hot_tenant's own
//! parameter of that name), checked against the catalog (`crate::faults`), every problem
//! reported at its key.

use super::raw::{RawFault, Sp};
use crate::api::types::AccountId;
use crate::db::QueryClass;
use crate::deps::FaultCode;
use crate::deps::diag::name_hint;
use crate::deps::parse::Check;
use crate::faults::{ACCOUNT_KINDS, Fault, FaultError, FaultKind, KIND_NAMES, Target};
use crate::kernel::{Dist, SimDuration, SimTime};
use std::ops::Range;
use toml::Spanned;

/// The parameter keys each kind takes (besides kind, target, start, duration, ramp), with
/// whether each is required.
pub(super) fn kind_keys(kind: &str) -> &'static [(&'static str, bool)] {
    match kind {
        "dep_latency" => &[("add", false), ("multiply", false)],
        "dep_errors" => &[("code", true), ("probability", true)],
        "dep_partial_outage" => &[("fraction", true)],
        "node_pause" => &[("pause", true), ("every", false)],
        "heap_leak" => &[("gib_per_min", true)],
        "db_slow_sql" => &[("class", false), ("multiply", true)],
        "db_connection_leak" => &[("connections", true)],
        "replica_lag" | "binlog_lag" => &[("lag", true)],
        "partition" => &[("peer", true)],
        "clock_skew" => &[("skew_ms", true)],
        "worker_crash" => &[("workers", false)],
        "traffic_surge" => &[("multiply", true)],
        "hot_tenant" => &[("account", true), ("share", true)],
        "quota_too_low" => &[("factor", true)],
        _ => &[],
    }
}

/// An example of each parameter, for hints.
fn example(key: &str) -> &'static str {
    match key {
        "add" => "add = \"lognormal_p:200ms:2s\" (seconds)",
        "multiply" => "multiply = 5",
        "code" => "code = \"InternalError\"",
        "probability" => "probability = 0.3",
        "fraction" => "fraction = 0.25",
        "pause" => "pause = 2.0 (seconds, or a distribution)",
        "every" => "every = \"30s\"",
        "gib_per_min" => "gib_per_min = 0.5",
        "class" => "class = \"filtered_list\"",
        "connections" => "connections = 8",
        "lag" => "lag = \"5s\"",
        "peer" => "peer = \"db\"",
        "skew_ms" => "skew_ms = 30000",
        "workers" => "workers = 4",
        "account" => "account = 7",
        "share" => "share = 0.5",
        "factor" => "factor = 0.1",
        "target" => "target = \"dep.block_storage\"",
        "start" => "start = \"60s\"",
        "duration" => "duration = \"120s\"",
        "kind" => "kind = \"dep_latency\"",
        _ => "see scenarios/README.md",
    }
}

/// Which parameter keys a raw table sets, with their spans.
fn given(f: &RawFault) -> Vec<(&'static str, Range<usize>)> {
    fn sp<T>(v: &Sp<T>) -> Option<Range<usize>> {
        v.as_ref().map(Spanned::span)
    }
    [
        ("add", sp(&f.add)),
        ("multiply", sp(&f.multiply)),
        ("code", sp(&f.code)),
        ("probability", sp(&f.probability)),
        ("fraction", sp(&f.fraction)),
        ("pause", sp(&f.pause)),
        ("every", sp(&f.every)),
        ("gib_per_min", sp(&f.gib_per_min)),
        ("class", sp(&f.class)),
        ("connections", sp(&f.connections)),
        ("lag", sp(&f.lag)),
        ("peer", sp(&f.peer)),
        ("skew_ms", sp(&f.skew_ms)),
        ("workers", sp(&f.workers)),
        ("account", sp(&f.account)),
        ("share", sp(&f.share)),
        ("factor", sp(&f.factor)),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect()
}

/// Reads every `[[fault]]` table. Returns each fault with its table's span (for problems the
/// topology finds later), or `None` after reporting what was wrong.
pub(super) fn read_faults(
    c: &mut Check<'_, '_>,
    raw: &Sp<Vec<Spanned<RawFault>>>,
) -> Option<Vec<(Fault, Range<usize>)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, f) in raw.iter().flat_map(|v| v.get_ref()).enumerate() {
        match read_fault(c, i, f.get_ref(), f.span()) {
            Some(fault) => out.push((fault, f.span())),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_fault(c: &mut Check<'_, '_>, i: usize, f: &RawFault, span: Range<usize>) -> Option<Fault> {
    let path = format!("fault[{i}]");
    let key = |k: &str| format!("{path}.{k}");
    let kind_v = c.required(&f.kind, &span, &path, "kind")?;
    let kind = kind_v.get_ref().as_str();
    if !KIND_NAMES.contains(&kind) {
        c.problem(
            kind_v.span(),
            &key("kind"),
            format!("fault kind `{kind}` is not in the catalog"),
            Some(name_hint(kind, "kinds", KIND_NAMES.iter().copied())),
        );
        return None;
    }
    // Parameters this kind does not take, and required ones missing.
    let keys = kind_keys(kind);
    let mut ok = true;
    // `account` is hot_tenant's parameter; for the other kinds, an account scope.
    let scopable = ACCOUNT_KINDS.contains(&kind);
    for (k, s) in given(f) {
        if k == "account" && kind != "hot_tenant" {
            if !scopable {
                let kind = KIND_NAMES
                    .iter()
                    .copied()
                    .find(|x| *x == kind)
                    .expect("checked above");
                c.problem(
                    s,
                    &key(k),
                    FaultError::NotAccountScoped { kind }.to_string(),
                    None,
                );
                ok = false;
            }
            continue;
        }
        if !keys.iter().any(|(x, _)| *x == k) {
            let takes: Vec<&str> = keys.iter().map(|(x, _)| *x).collect();
            c.problem(
                s,
                &key(k),
                format!("a {kind} fault takes no `{k}`"),
                Some(if takes.is_empty() {
                    format!("{kind} has no parameters; remove `{k}`")
                } else {
                    format!("its parameters are: {}", takes.join(", "))
                }),
            );
            ok = false;
        }
    }
    for (k, required) in keys {
        if *required && !given(f).iter().any(|(x, _)| x == k) && !c.broken.contains(&key(k)) {
            c.problem(
                span.clone(),
                &key(k),
                format!("missing key `{k}`"),
                Some(format!("add {}", example(k))),
            );
            ok = false;
        }
    }
    let target_v = c.required(&f.target, &span, &path, "target");
    let target = target_v.and_then(|t| match Target::parse(t.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            c.problem(t.span(), &key("target"), e.to_string(), None);
            None
        }
    });
    let start = c
        .required(&f.start, &span, &path, "start")
        .map(|s| *s.get_ref());
    let instant = matches!(kind, "l2_flush" | "worker_crash");
    let duration = if instant {
        c.opt_duration(
            &f.duration,
            &key("duration"),
            SimDuration::ZERO,
            SimDuration::DAY,
            SimDuration::ZERO,
        )
    } else {
        c.required(&f.duration, &span, &path, "duration")
            .map(|d| *d.get_ref())
    };
    let scope = match (&f.account, scopable) {
        (Some(a), true) => Some(
            c.int(a, &key("account"), 0, i64::from(u32::MAX))
                .map(|a| AccountId(a as u32)),
        ),
        _ => None,
    };
    let kind = read_kind(c, &path, kind, f)?;
    if !ok {
        return None;
    }
    // An account out of range was reported by `c.int`.
    let scope = match scope {
        Some(a) => Some(a?),
        None => None,
    };
    let fault = Fault::new(
        kind,
        target?,
        SimTime::ZERO.saturating_add(start?),
        duration?,
    )
    .and_then(|x| x.with_ramp(f.ramp.as_ref().map_or(SimDuration::ZERO, |r| *r.get_ref())))
    .and_then(|x| match scope {
        Some(account) => x.for_account(account),
        None => Ok(x),
    });
    match fault {
        Ok(x) => Some(x),
        Err(e) => {
            c.problem(span, &path, e.to_string(), None);
            None
        }
    }
}

/// The kind with its parameters (absent ones at their defaults; ranges are checked by
/// `Fault::new`).
fn read_kind(c: &mut Check<'_, '_>, path: &str, kind: &str, f: &RawFault) -> Option<FaultKind> {
    let val = |v: &Sp<f64>, d: f64| v.as_ref().map_or(d, |x| *x.get_ref());
    let int = |v: &Sp<i64>, d: i64| v.as_ref().map_or(d, |x| *x.get_ref());
    let nonneg = |c: &mut Check<'_, '_>, v: &Sp<i64>, k: &str, hi: i64| -> Option<u32> {
        match v {
            Some(x) => c.int(x, &format!("{path}.{k}"), 0, hi).map(|x| x as u32),
            None => Some(0),
        }
    };
    Some(match kind {
        "dep_latency" => FaultKind::DepLatency {
            add: f.add.as_ref().map(|d| d.get_ref().clone()),
            multiply: val(&f.multiply, 1.0),
        },
        "dep_errors" => {
            let code = f.code.as_ref()?;
            let Some(c2) = FaultCode::from_name(code.get_ref()) else {
                c.problem(
                    code.span(),
                    &format!("{path}.code"),
                    format!("unknown error code `{}`", code.get_ref()),
                    Some(name_hint(
                        code.get_ref(),
                        "codes",
                        FaultCode::ALL.iter().map(|c| c.name()),
                    )),
                );
                return None;
            };
            FaultKind::DepErrors {
                code: c2,
                probability: val(&f.probability, 0.0),
            }
        }
        "dep_blackhole" => FaultKind::DepBlackhole,
        "dep_partial_outage" => FaultKind::DepPartialOutage {
            fraction: val(&f.fraction, 0.0),
        },
        "node_crash" => FaultKind::NodeCrash,
        "node_pause" => FaultKind::NodePause {
            pause: f
                .pause
                .as_ref()
                .map_or_else(|| Dist::constant(0.0), |d| Ok(d.get_ref().clone()))
                .ok()?,
            every: f.every.as_ref().map(|e| *e.get_ref()),
        },
        "heap_leak" => {
            let g = val(&f.gib_per_min, 0.0);
            let bytes_per_sec = (g * f64::from(1u32 << 30) / 60.0).round();
            if !(bytes_per_sec.is_finite() && bytes_per_sec >= 1.0) {
                if let Some(v) = &f.gib_per_min {
                    c.problem(
                        v.span(),
                        &format!("{path}.gib_per_min"),
                        format!("{g} is out of range"),
                        Some("a leak rate > 0, e.g. gib_per_min = 0.5".into()),
                    );
                }
                return None;
            }
            FaultKind::HeapLeak {
                bytes_per_sec: bytes_per_sec as u64,
            }
        }
        "db_slow_sql" => FaultKind::DbSlowSql {
            class: match &f.class {
                None => None,
                Some(v) => {
                    let names: Vec<&str> = QueryClass::ALL.iter().map(|q| q.name()).collect();
                    match QueryClass::ALL.iter().find(|q| q.name() == v.get_ref()) {
                        Some(q) => Some(*q),
                        None => {
                            c.problem(
                                v.span(),
                                &format!("{path}.class"),
                                format!("unknown query class `{}`", v.get_ref()),
                                Some(name_hint(v.get_ref(), "classes", names)),
                            );
                            return None;
                        }
                    }
                }
            },
            multiply: val(&f.multiply, 1.0),
        },
        "db_failover" => FaultKind::DbFailover,
        "db_connection_leak" => FaultKind::DbConnectionLeak {
            connections: nonneg(c, &f.connections, "connections", 100_000)?,
        },
        "replica_lag" => FaultKind::ReplicaLag {
            lag: f.lag.as_ref().map_or(SimDuration::ZERO, |l| *l.get_ref()),
        },
        "binlog_lag" => FaultKind::BinlogLag {
            lag: f.lag.as_ref().map_or(SimDuration::ZERO, |l| *l.get_ref()),
        },
        "l2_loss" => FaultKind::L2Loss,
        "l2_flush" => FaultKind::L2Flush,
        "partition" => {
            let peer = f.peer.as_ref()?;
            match Target::parse(peer.get_ref()) {
                Ok(t) => FaultKind::Partition { peer: t },
                Err(e) => {
                    c.problem(peer.span(), &format!("{path}.peer"), e.to_string(), None);
                    return None;
                }
            }
        }
        "clock_skew" => {
            let ms = int(&f.skew_ms, 0);
            if ms.unsigned_abs() > 86_400_000 {
                if let Some(v) = &f.skew_ms {
                    c.problem(
                        v.span(),
                        &format!("{path}.skew_ms"),
                        format!("{ms} is out of range"),
                        Some("a skew within one day: -86400000 to 86400000".into()),
                    );
                }
                return None;
            }
            FaultKind::ClockSkew {
                skew_ns: ms * 1_000_000,
            }
        }
        "worker_crash" => FaultKind::WorkerCrash {
            workers: match &f.workers {
                Some(_) => nonneg(c, &f.workers, "workers", 100_000)?,
                None => 1,
            },
        },
        "traffic_surge" => FaultKind::TrafficSurge {
            multiply: val(&f.multiply, 1.0),
        },
        "hot_tenant" => FaultKind::HotTenant {
            account: nonneg(c, &f.account, "account", i64::from(u32::MAX))?,
            share: val(&f.share, 0.0),
        },
        "client_no_backoff" => FaultKind::ClientNoBackoff,
        "quota_too_low" => FaultKind::QuotaTooLow {
            factor: val(&f.factor, 0.0),
        },
        _ => return None,
    })
}

/// Reads `[chaos]` (defaults without it).
pub(super) fn read_chaos(
    c: &mut Check<'_, '_>,
    raw: &Sp<super::raw::RawChaos>,
) -> Option<(crate::chaos::ChaosConfig, Option<SimDuration>)> {
    use crate::chaos::ChaosConfig;
    let Some(r) = raw else {
        return Some((ChaosConfig::default(), None));
    };
    let r = r.get_ref();
    let d = ChaosConfig::default();
    let mut kinds = Vec::new();
    let mut ok = true;
    for k in r.kinds.iter().flat_map(|v| v.get_ref()) {
        if KIND_NAMES.contains(&k.get_ref().as_str()) {
            kinds.push(k.get_ref().clone());
        } else {
            c.problem(
                k.span(),
                "chaos.kinds",
                format!("fault kind `{}` is not in the catalog", k.get_ref()),
                Some(name_hint(k.get_ref(), "kinds", KIND_NAMES.iter().copied())),
            );
            ok = false;
        }
    }
    let max_faults = c.opt_int(&r.max_faults, "chaos.max_faults", 1, 20, 3);
    let quiet = c.opt_duration(
        &r.quiet,
        "chaos.quiet",
        SimDuration::ZERO,
        SimDuration::DAY,
        d.quiet(),
    );
    let max_window = c.opt_duration(
        &r.max_window,
        "chaos.max_window",
        SimDuration::from_secs(1),
        SimDuration::DAY,
        d.max_window(),
    );
    let liveness = match &r.liveness_bound {
        None => Some(None),
        Some(_) => c
            .opt_duration(
                &r.liveness_bound,
                "chaos.liveness_bound",
                SimDuration::from_secs(1),
                SimDuration::DAY,
                SimDuration::ZERO,
            )
            .map(Some),
    };
    if !ok {
        return None;
    }
    let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
    Some((
        ChaosConfig::new(&kinds, max_faults? as u32, quiet?, max_window?),
        liveness?,
    ))
}

/// Reads `[expect]`, if present.
pub(super) fn read_expect(
    c: &mut Check<'_, '_>,
    raw: &Sp<super::raw::RawExpect>,
) -> Option<Option<crate::chaos::Expect>> {
    let Some(r) = raw else {
        return Some(None);
    };
    let span = r.span();
    let r = r.get_ref();
    let hash = c.required(&r.trace_hash, &span, "expect", "trace_hash")?;
    let h = hash.get_ref();
    if h.len() != 16 || !h.chars().all(|x| x.is_ascii_hexdigit()) {
        c.problem(
            hash.span(),
            "expect.trace_hash",
            format!("`{h}` is not a trace hash"),
            Some("16 hex digits, as `run` prints after `trace`".into()),
        );
        return None;
    }
    let invariant = match &r.invariant {
        None => None,
        Some(v) => match crate::invariants::Invariant::from_name(v.get_ref()) {
            Some(i) => Some(i),
            None => {
                let names = crate::invariants::Invariant::ALL.map(|i| i.name());
                c.problem(
                    v.span(),
                    "expect.invariant",
                    format!("unknown invariant `{}`", v.get_ref()),
                    Some(name_hint(v.get_ref(), "invariants", names)),
                );
                return None;
            }
        },
    };
    Some(Some(crate::chaos::Expect {
        trace_hash: h.clone(),
        invariant,
    }))
}

/// Reads `[[alert]]` and `[[runbook]]` into a game day (empty without them).
pub(super) fn read_gameday(
    c: &mut Check<'_, '_>,
    alerts: &Sp<Vec<Spanned<super::raw::RawAlert>>>,
    runbook: &Sp<Vec<Spanned<super::raw::RawRunbook>>>,
) -> Option<crate::gameday::GameDayConfig> {
    use crate::gameday::{Action, AlertRule, GameDayConfig, Metric, RunbookStep, Trigger};
    let mut cfg = GameDayConfig::default();
    let mut ok = true;
    let mut names: Vec<String> = Vec::new();
    for (i, a) in alerts.iter().flat_map(|v| v.get_ref()).enumerate() {
        let span = a.span();
        let a = a.get_ref();
        let path = format!("alert[{i}]");
        let name = c
            .required(&a.name, &span, &path, "name")
            .map(|n| n.get_ref().clone());
        if let (Some(n), Some(v)) = (&name, &a.name) {
            if names.contains(n) {
                c.problem(
                    v.span(),
                    &format!("{path}.name"),
                    format!("alert `{n}` is defined twice"),
                    Some("give every alert its own name".into()),
                );
                ok = false;
            }
        }
        let metric = c.required(&a.metric, &span, &path, "metric").and_then(|m| {
            let found = Metric::from_name(m.get_ref());
            if found.is_none() {
                c.problem(
                    m.span(),
                    &format!("{path}.metric"),
                    format!("unknown metric `{}`", m.get_ref()),
                    Some(name_hint(
                        m.get_ref(),
                        "metrics",
                        Metric::ALL.map(|m| m.name()),
                    )),
                );
            }
            found
        });
        let threshold = match (&a.above, &a.below) {
            (Some(x), None) => Some((true, *x.get_ref())),
            (None, Some(x)) => Some((false, *x.get_ref())),
            _ => {
                c.problem(
                    span.clone(),
                    &path,
                    "give exactly one of `above` and `below`".into(),
                    Some("e.g. above = 0.01".into()),
                );
                None
            }
        };
        let hold = c.opt_duration(
            &a.hold,
            &format!("{path}.for"),
            SimDuration::ZERO,
            SimDuration::DAY,
            SimDuration::ZERO,
        );
        let component = a.component.as_ref().map_or_else(
            || Some("gateway".to_string()),
            |v| Some(v.get_ref().clone()),
        );
        match (name, metric, threshold, hold, component) {
            (Some(name), Some(metric), Some((above, threshold)), Some(hold), Some(component)) => {
                names.push(name.clone());
                cfg.alerts.push(AlertRule {
                    name,
                    metric,
                    above,
                    threshold,
                    hold,
                    component,
                });
            }
            _ => ok = false,
        }
    }
    for (i, r) in runbook.iter().flat_map(|v| v.get_ref()).enumerate() {
        let span = r.span();
        let r = r.get_ref();
        let path = format!("runbook[{i}]");
        let action = c.required(&r.action, &span, &path, "action").and_then(|a| {
            let name = a.get_ref().as_str();
            let action = match name {
                "fail_over_db" => Some(Action::FailOverDb),
                "scale_out" => Some(Action::ScaleOut {
                    nodes: r
                        .nodes
                        .as_ref()
                        .map_or(1, |n| (*n.get_ref()).clamp(1, 1024) as u32),
                }),
                "flush_cache" => Some(Action::FlushCache),
                "warm_cache" => Some(Action::WarmCache),
                "raise_quota" => Some(Action::RaiseQuota {
                    factor: r.factor.as_ref().map_or(10.0, |f| *f.get_ref()),
                }),
                "enable_shedding" => Some(Action::EnableShedding),
                _ => None,
            };
            if action.is_none() {
                c.problem(
                    a.span(),
                    &format!("{path}.action"),
                    format!("unknown action `{name}`"),
                    Some(name_hint(name, "actions", Action::NAMES)),
                );
            }
            action
        });
        if let Some(Action::RaiseQuota { factor }) = &action {
            if !(factor.is_finite() && *factor > 1.0 && *factor <= 1e6) {
                c.problem(
                    span.clone(),
                    &format!("{path}.factor"),
                    format!("{factor} is out of range"),
                    Some("a quota factor > 1, e.g. factor = 10".into()),
                );
                ok = false;
            }
        }
        let trigger = match (&r.at, &r.on_alert) {
            (Some(at), None) => Some(Trigger::At(
                crate::kernel::SimTime::ZERO.saturating_add(*at.get_ref()),
            )),
            (None, Some(name)) => match names.iter().position(|n| n == name.get_ref()) {
                Some(alert) => Some(Trigger::OnAlert {
                    alert,
                    delay: r.delay.as_ref().map_or(SimDuration::ZERO, |d| *d.get_ref()),
                }),
                None => {
                    c.problem(
                        name.span(),
                        &format!("{path}.on_alert"),
                        format!("no alert named `{}`", name.get_ref()),
                        Some(name_hint(
                            name.get_ref(),
                            "alerts",
                            names.iter().map(String::as_str),
                        )),
                    );
                    None
                }
            },
            _ => {
                c.problem(
                    span.clone(),
                    &path,
                    "give exactly one of `at` and `on_alert`".into(),
                    Some("e.g. on_alert = \"l2-down\" with delay = \"2m\"".into()),
                );
                None
            }
        };
        match (action, trigger) {
            (Some(action), Some(trigger)) => cfg.runbook.push(RunbookStep { action, trigger }),
            _ => ok = false,
        }
    }
    ok.then_some(cfg)
}

/// Reads `[bugs]`: planted bug name = true.
pub(super) fn read_bugs(
    c: &mut Check<'_, '_>,
    raw: &Option<std::collections::BTreeMap<Spanned<String>, Spanned<bool>>>,
) -> Option<crate::faults::PlantedBugs> {
    let mut bugs = crate::faults::PlantedBugs::default();
    let mut ok = true;
    for (k, v) in raw.iter().flatten() {
        let mut probe = crate::faults::PlantedBugs::default();
        if !probe.plant(k.get_ref()) {
            c.problem(
                k.span(),
                &format!("bugs.{}", k.get_ref()),
                format!("no planted bug `{}`", k.get_ref()),
                Some(name_hint(k.get_ref(), "bugs", crate::faults::BUG_NAMES)),
            );
            ok = false;
        } else if *v.get_ref() {
            bugs.plant(k.get_ref());
        }
    }
    ok.then_some(bugs)
}
