//! The scenario validator: ranges, names, references and cross-field rules on the raw layer,
//! building the typed [`Scenario`] only when nothing was wrong.

use super::raw::{RawCache, RawProfile, RawScenario, RawWorkload, Sp};
use super::{Scenario, Slo};
use crate::api::lb::LbPolicy;
use crate::api::node::NodeConfigBuilder;
use crate::api::throttle::{Limit, Throttle};
use crate::api::types::Api;
use crate::api::types::ErrorCode;
use crate::cache::{FeedConfig, Invalidation, L1Config, L2Config};
use crate::cleanup::CleanupConfig;
use crate::db::{DbConfig, Table};
use crate::deps::Jitter;
use crate::deps::diag::name_hint;
use crate::deps::parse::{Check, join};
use crate::deps::spec::DependencySpec;
use crate::gc::{GcProfile, HeapSpec};
use crate::idempotency::{IdemConfig, Mode as IdemMode, StoreKind};
use crate::kernel::{Dist, SimDuration, SimTime};
use crate::reconcile::ReconConfig;
use crate::traffic::client::{
    MAX_BACKOFF_CAP, MAX_CLIENT_ATTEMPTS, MAX_CLOSED_LOOP_CLIENTS, MAX_POLLS,
};
use crate::traffic::{
    ApiMix, Backoff, ClientConfig, ClientRetry, ClosedLoop, OpenLoopConfig, Polling, RateProfile,
    ReplayConfig, TokenPolicy, Trace, TypeMix,
};
use crate::workflow::{EngineConfig, MAX_COEFFICIENT, MAX_INTERVAL, MAX_STEP_ATTEMPTS, StepRetry};
use crate::world::{CacheSetup, Topology, WorkflowSetup};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Bounds *(limits of the tool, not of the modelled system)*.
/// API nodes at full scale; the scaled count must also fit a topology (≤ 1,024).
const MAX_NODES: i64 = 1_000_000;
const MAX_SCALED_NODES: u32 = 1_024;
const MAX_SCALE: f64 = 1e6;
const MAX_RATE: f64 = 1e9;
const MAX_DURATION: SimDuration = SimDuration::from_secs(30 * 86_400);

/// An example line for a missing key.
pub(super) fn example(key: &str) -> &'static str {
    match key {
        "name" => "name = \"steady-day\"",
        "description" => "description = \"the question this scenario answers\"",
        "duration" => "duration = \"10m\"",
        "workload" => "a [workload] table with rate = 2000",
        "rate" => "rate = 2000 (requests per second at full scale)",
        "period" => "period = \"60s\"",
        "retention" => "retention = \"1h\"",
        _ => "see scenarios/README.md",
    }
}

/// Puts `value` at the dotted `path` of `table`, creating tables on the way.
pub(super) fn insert_at<'a>(
    table: &mut DeTable<'a>,
    path: &[String],
    value: Spanned<DeValue<'a>>,
    span: Range<usize>,
) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("a path has a key");
    let mut t = table;
    let mut walked = String::new();
    for p in parents {
        walked = join(&walked, p);
        if !t.contains_key(p.as_str()) {
            t.insert(
                Spanned::new(span.clone(), p.clone().into()),
                Spanned::new(span.clone(), DeValue::Table(DeTable::default())),
            );
        }
        match t.get_mut(p.as_str()).map(|v| v.get_mut()) {
            Some(DeValue::Table(inner)) => t = inner,
            _ => {
                return Err(format!(
                    "`{walked}` is not a table, so it has no keys to set"
                ));
            }
        }
    }
    t.remove(last.as_str());
    t.insert(Spanned::new(span, last.clone().into()), value);
    Ok(())
}

/// `count / scale`, rounded, or a problem when it drops below 1.
fn scaled(
    c: &mut Check<'_, '_>,
    count: u32,
    scale: f64,
    span: &Range<usize>,
    path: &str,
) -> Option<u32> {
    let n = (f64::from(count) / scale).round();
    if n < 1.0 {
        c.problem(
            span.clone(),
            path,
            format!("{count} at scale 1:{scale} is less than 1"),
            Some(format!(
                "raise it to at least {} or lower `scale`",
                scale.ceil()
            )),
        );
        return None;
    }
    Some(n as u32)
}

/// A cache TTL: 1 ms to a day.
fn ttl(
    c: &mut Check<'_, '_>,
    v: &Sp<SimDuration>,
    path: &str,
    default: SimDuration,
) -> Option<SimDuration> {
    c.opt_duration(v, path, SimDuration::from_ms(1), SimDuration::DAY, default)
}

/// The change feed of `[topology.cache]` with `invalidation = "binlog"`: its lag, the
/// invalidator's retries and bound, the heartbeat (`"0s"`: none).
fn feed_config(c: &mut Check<'_, '_>, r: &RawCache) -> Option<FeedConfig> {
    let d = FeedConfig::default();
    let lag = r
        .binlog_lag
        .as_ref()
        .map_or_else(|| d.lag().clone(), |v| v.get_ref().clone());
    let timeout = c.opt_duration(
        &r.binlog_retry_timeout,
        "topology.cache.binlog_retry_timeout",
        SimDuration::from_ms(1),
        SimDuration::from_secs(600),
        d.ack_timeout(),
    );
    let cap = c.opt_duration(
        &r.binlog_backoff_max,
        "topology.cache.binlog_backoff_max",
        SimDuration::from_ms(1),
        SimDuration::from_secs(3_600),
        d.backoff_max(),
    );
    let pending = c.opt_int(
        &r.binlog_max_pending,
        "topology.cache.binlog_max_pending",
        1,
        10_000_000,
        i64::from(d.max_pending()),
    );
    let heartbeat = c.opt_duration(
        &r.binlog_heartbeat,
        "topology.cache.binlog_heartbeat",
        SimDuration::ZERO,
        crate::cache::HEARTBEAT_MAX,
        d.heartbeat().unwrap_or(SimDuration::ZERO),
    );
    let (timeout, cap, pending, heartbeat) = (timeout?, cap?, pending?, heartbeat?);
    let cfg = match FeedConfig::with_lag(lag).with_retry(timeout, cap) {
        Ok(cfg) => cfg,
        Err(e) => {
            // At the cap if it was given, else at the timeout that outgrew the default cap.
            let (key, span) = match (&r.binlog_backoff_max, &r.binlog_retry_timeout) {
                (Some(v), _) => ("binlog_backoff_max", v.span()),
                (None, Some(v)) => ("binlog_retry_timeout", v.span()),
                (None, None) => ("binlog_backoff_max", Default::default()),
            };
            c.problem(
                span,
                &format!("topology.cache.{key}"),
                e.to_string(),
                Some(format!(
                    "binlog_backoff_max must be at least binlog_retry_timeout ({timeout})"
                )),
            );
            return None;
        }
    };
    let cfg = cfg
        .with_max_pending(pending as u32)
        .expect("the range check keeps it at least 1");
    Some(cfg.with_heartbeat(Some(heartbeat)))
}

fn name_of<'s>(
    c: &mut Check<'_, '_>,
    v: &'s Sp<String>,
    path: &str,
    known: &[&'static str],
    default: &'static str,
) -> Option<&'s str> {
    let Some(v) = v else {
        return (!c.broken.contains(path)).then_some(default);
    };
    let s = v.get_ref().as_str();
    if known.contains(&s) {
        Some(s)
    } else {
        c.problem(
            v.span(),
            path,
            format!("unknown value `{s}`"),
            Some(name_hint(s, "values", known.iter().copied())),
        );
        None
    }
}

/// The API a table key names (as in `[workload.mix]`), or `None` and an "unknown API" problem
/// at the key.
fn api_named(c: &mut Check<'_, '_>, k: &Spanned<String>, path: &str) -> Option<Api> {
    let api = Api::ALL.iter().find(|a| a.name() == k.get_ref()).copied();
    if api.is_none() {
        c.problem(
            k.span(),
            path,
            format!("unknown API `{}`", k.get_ref()),
            Some(name_hint(
                k.get_ref(),
                "APIs",
                Api::ALL.iter().map(|a| a.name()),
            )),
        );
    }
    api
}

/// Reports a builder's error (which says how to fix it) at `span`.
fn built<T, E: std::fmt::Display>(
    c: &mut Check<'_, '_>,
    r: Result<T, E>,
    span: &Range<usize>,
    path: &str,
) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            c.problem(span.clone(), path, e.to_string(), None);
            None
        }
    }
}

const PROFILE_KINDS: [&str; 6] = ["constant", "ramp", "steps", "diurnal", "sine", "double11"];

/// The keys of `[workload.profile]` each kind reads.
fn profile_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "ramp" => &["from", "to", "start", "duration"],
        "steps" => &["steps"],
        "diurnal" => &["hourly", "day_offset"],
        "sine" => &["mean", "amplitude", "peak_at", "period"],
        "double11" => &["midnight", "pre_scale", "peak", "tail"],
        _ => &[],
    }
}

/// `[workload.profile]`: a rate multiplier over time (see `traffic::RateProfile`).
fn profile(c: &mut Check<'_, '_>, p: &Spanned<RawProfile>) -> Option<RateProfile> {
    const P: &str = "workload.profile";
    let span = p.span();
    let r = p.get_ref();
    let kind = name_of(
        c,
        &r.kind,
        "workload.profile.kind",
        &PROFILE_KINDS,
        "constant",
    )?;
    let present: [(&str, Option<Range<usize>>); 16] = [
        ("from", r.from.as_ref().map(|v| v.span())),
        ("to", r.to.as_ref().map(|v| v.span())),
        ("start", r.start.as_ref().map(|v| v.span())),
        ("duration", r.duration.as_ref().map(|v| v.span())),
        ("steps", r.steps.as_ref().map(|v| v.span())),
        ("hourly", r.hourly.as_ref().map(|v| v.span())),
        ("day_offset", r.day_offset.as_ref().map(|v| v.span())),
        ("mean", r.mean.as_ref().map(|v| v.span())),
        ("amplitude", r.amplitude.as_ref().map(|v| v.span())),
        ("peak_at", r.peak_at.as_ref().map(|v| v.span())),
        ("period", r.period.as_ref().map(|v| v.span())),
        ("midnight", r.midnight.as_ref().map(|v| v.span())),
        ("pre_scale", r.pre_scale.as_ref().map(|v| v.span())),
        ("peak", r.peak.as_ref().map(|v| v.span())),
        ("tail", r.tail.as_ref().map(|v| v.span())),
        ("kind", None),
    ];
    let keys = profile_keys(kind);
    let mut ok = true;
    for (name, at) in &present {
        if let Some(at) = at {
            if !keys.contains(name) {
                ok = false;
                c.problem(
                    at.clone(),
                    &format!("{P}.{name}"),
                    format!("`{name}` does not apply to a `{kind}` profile"),
                    Some(if keys.is_empty() {
                        format!("a `{kind}` profile takes no other key")
                    } else {
                        format!("a `{kind}` profile reads {}", keys.join(", "))
                    }),
                );
            }
        }
    }
    let req_dur = |c: &mut Check<'_, '_>, v: &Sp<SimDuration>, key: &str| {
        c.required(v, &span, P, key).map(|d| *d.get_ref())
    };
    let mult =
        |c: &mut Check<'_, '_>, v: &Sp<f64>, key: &str, default: Option<f64>| match (v, default) {
            (None, Some(d)) => Some(d),
            _ => c
                .required(v, &span, P, key)
                .and_then(|x| c.float(x, &format!("{P}.{key}"), 0.0, 1e6)),
        };
    let built_profile = match kind {
        "constant" => Some(Ok(RateProfile::constant())),
        "ramp" => {
            let from = mult(c, &r.from, "from", None);
            let to = mult(c, &r.to, "to", None);
            let start = c.opt_duration(
                &r.start,
                "workload.profile.start",
                SimDuration::ZERO,
                MAX_DURATION,
                SimDuration::ZERO,
            );
            let d = req_dur(c, &r.duration, "duration");
            match (from, to, start, d) {
                (Some(f), Some(t), Some(s), Some(d)) => Some(RateProfile::ramp(f, t, s, d)),
                _ => None,
            }
        }
        "steps" => {
            let list = c.required(&r.steps, &span, P, "steps")?;
            let mut steps = Vec::new();
            for (i, st) in list.get_ref().iter().enumerate() {
                let path = format!("{P}.steps[{i}]");
                let at = c
                    .required(&st.get_ref().at, &st.span(), &path, "at")
                    .map(|v| *v.get_ref());
                let m = c
                    .required(&st.get_ref().multiplier, &st.span(), &path, "multiplier")
                    .and_then(|v| c.float(v, &format!("{path}.multiplier"), 0.0, 1e6));
                if let (Some(at), Some(m)) = (at, m) {
                    steps.push((at, m));
                } else {
                    ok = false;
                }
            }
            Some(RateProfile::steps(steps))
        }
        "diurnal" => {
            let list = c.required(&r.hourly, &span, P, "hourly")?;
            let values: Vec<f64> = list.get_ref().iter().map(|v| *v.get_ref()).collect();
            let offset = c.opt_duration(
                &r.day_offset,
                "workload.profile.day_offset",
                SimDuration::ZERO,
                SimDuration::DAY,
                SimDuration::ZERO,
            );
            match <[f64; 24]>::try_from(values.as_slice()) {
                Ok(points) => offset.map(|o| RateProfile::diurnal_hourly(points, o)),
                Err(_) => {
                    c.problem(
                        list.span(),
                        "workload.profile.hourly",
                        format!("{} points given", values.len()),
                        Some("give 24 hourly multipliers, 00:00 to 23:00".into()),
                    );
                    None
                }
            }
        }
        "sine" => {
            let mean = mult(c, &r.mean, "mean", Some(1.0));
            let amp = mult(c, &r.amplitude, "amplitude", None);
            let peak_at = req_dur(c, &r.peak_at, "peak_at");
            let period = c.opt_duration(
                &r.period,
                "workload.profile.period",
                SimDuration::from_secs(1),
                MAX_DURATION,
                SimDuration::DAY,
            );
            match (mean, amp, peak_at, period) {
                (Some(m), Some(a), Some(pk), Some(pd)) => {
                    Some(RateProfile::diurnal_sine(m, a, pk, pd))
                }
                _ => None,
            }
        }
        _ => {
            let midnight = req_dur(c, &r.midnight, "midnight");
            let pre = c.opt_duration(
                &r.pre_scale,
                "workload.profile.pre_scale",
                SimDuration::ZERO,
                MAX_DURATION,
                SimDuration::from_secs(1_800),
            );
            let peak = mult(c, &r.peak, "peak", Some(10.0));
            let tail = c.opt_duration(
                &r.tail,
                "workload.profile.tail",
                SimDuration::from_secs(1),
                MAX_DURATION,
                SimDuration::HOUR,
            );
            match (midnight, pre, peak, tail) {
                (Some(m), Some(p), Some(k), Some(t)) => Some(RateProfile::double11(m, p, k, t)),
                _ => None,
            }
        }
    };
    if !ok {
        return None;
    }
    built(c, built_profile?, &span, P)
}

/// `[workload.retry]`, `[workload.polling]`, `[workload.closed_loop]`: client behaviour.
fn client(c: &mut Check<'_, '_>, w: &RawWorkload) -> Option<ClientConfig> {
    let mut cfg = ClientConfig::default();
    // Every part is checked, so one part's problems do not hide another's.
    let retry = w.retry.as_ref().map(|r| -> Option<ClientRetry> {
        const P: &str = "workload.retry";
        let span = r.span();
        let r = r.get_ref();
        let attempts = c.opt_int(
            &r.max_attempts,
            "workload.retry.max_attempts",
            1,
            i64::from(MAX_CLIENT_ATTEMPTS),
            3,
        );
        let kind = name_of(
            c,
            &r.backoff,
            "workload.retry.backoff",
            &["exponential", "none"],
            "exponential",
        );
        let jitter = name_of(
            c,
            &r.jitter,
            "workload.retry.jitter",
            &["full", "none"],
            "full",
        );
        let base = c.opt_duration(
            &r.base,
            "workload.retry.base",
            SimDuration::from_us(1),
            SimDuration::HOUR,
            SimDuration::from_ms(100),
        );
        let cap = c.opt_duration(
            &r.cap,
            "workload.retry.cap",
            SimDuration::from_us(1),
            MAX_BACKOFF_CAP,
            SimDuration::from_secs(10),
        );
        let mut codes = Vec::new();
        let mut ok = true;
        match &r.on {
            None => codes.extend(ClientRetry::DEFAULT_CODES),
            Some(list) => {
                for (i, code) in list.get_ref().iter().enumerate() {
                    match ErrorCode::from_name(code.get_ref()) {
                        Some(e) => codes.push(e),
                        None => {
                            ok = false;
                            c.problem(
                                code.span(),
                                &format!("{P}.on[{i}]"),
                                format!("unknown error code `{}`", code.get_ref()),
                                Some(name_hint(
                                    code.get_ref(),
                                    "codes",
                                    ErrorCode::ALL.iter().map(|e| e.name()),
                                )),
                            );
                        }
                    }
                }
            }
        }
        let backoff = match (kind?, base?, cap?, jitter?) {
            ("none", ..) => Backoff::None,
            (_, base, cap, j) => Backoff::Exponential {
                base,
                cap,
                jitter: if j == "full" {
                    Jitter::Full
                } else {
                    Jitter::None
                },
            },
        };
        if !ok {
            return None;
        }
        built(
            c,
            ClientRetry::new(attempts? as u32, backoff, &codes),
            &span,
            P,
        )
    });
    let polling = w.polling.as_ref().map(|p| -> Option<Polling> {
        let r = p.get_ref();
        let mut polling = Polling::default();
        if let Some(d) = &r.interval {
            polling.interval = d.get_ref().clone();
        }
        polling.max_polls = c.opt_int(
            &r.max_polls,
            "workload.polling.max_polls",
            1,
            i64::from(MAX_POLLS),
            60,
        )? as u32;
        Some(polling)
    });
    let closed = w.closed_loop.as_ref().map(|cl| -> Option<ClosedLoop> {
        let span = cl.span();
        let r = cl.get_ref();
        let clients = c
            .required(&r.clients, &span, "workload.closed_loop", "clients")
            .and_then(|v| {
                c.int(
                    v,
                    "workload.closed_loop.clients",
                    1,
                    i64::from(MAX_CLOSED_LOOP_CLIENTS),
                )
            });
        let think = r.think.as_ref().map_or_else(
            || Dist::exponential(1.0).ok(),
            |d| Some(d.get_ref().clone()),
        );
        Some(ClosedLoop {
            clients: clients? as u32,
            think: think?,
        })
    });
    cfg.retry = retry.map(|r| r.ok_or(())).transpose().ok()?;
    cfg.polling = polling.map(|p| p.ok_or(())).transpose().ok()?;
    cfg.closed_loop = closed.map(|x| x.ok_or(())).transpose().ok()?;
    built(c, cfg.validate().map(|()| cfg.clone()), &(0..0), "workload")
}

/// `[workload.replay]`: a trace instead of generated arrivals (read relative to `dir`).
fn replay(
    c: &mut Check<'_, '_>,
    w: &RawWorkload,
    dir: &Path,
) -> Option<Option<(Trace, ReplayConfig)>> {
    let Some(r) = &w.replay else {
        return Some(None);
    };
    let span = r.span();
    let r = r.get_ref();
    let file = c.required(&r.trace, &span, "workload.replay", "trace")?;
    let speed = c.opt_float(&r.speed, "workload.replay.speed", 1e-6, 1e6, 1.0);
    let scale = c.opt_float(&r.scale, "workload.replay.scale", 1e-6, 100.0, 1.0);
    let path = dir.join(file.get_ref());
    let trace = match Trace::from_path(&path) {
        Ok(t) => Some(t),
        Err(e) => {
            c.problem(
                file.span(),
                "workload.replay.trace",
                e.to_string(),
                Some("a path relative to the scenario file, to a .csv or JSON Lines trace".into()),
            );
            None
        }
    };
    let cfg = ReplayConfig {
        speed: speed?,
        scale: scale?,
        ..ReplayConfig::default()
    };
    Some(Some((trace?, cfg)))
}

pub(super) fn validate(
    file: &str,
    dir: &Path,
    raw: &RawScenario,
    mocks: &[DependencySpec],
    c: &mut Check<'_, '_>,
) -> Option<Scenario> {
    let root = 0..0;
    // `text` has already refused an empty name.
    let name = c
        .required(&raw.name, &root, "", "name")
        .and_then(|n| c.plain_name(n, 64, "it names the results folder"));
    let description = match &raw.description {
        Some(d) => c.text(d, "description", 4096),
        None => Some(String::new()),
    };
    let seed = c.opt_int(&raw.seed, "seed", 0, i64::MAX, 1);
    let duration = c
        .required(&raw.duration, &root, "", "duration")
        .and_then(|d| {
            let v = *d.get_ref();
            if v.is_zero() || v > MAX_DURATION {
                c.problem(
                    d.span(),
                    "duration",
                    format!("{v} is out of range"),
                    Some(format!("allowed range: 1ns to {MAX_DURATION}")),
                );
                None
            } else {
                Some(v)
            }
        });
    let warmup = c.opt_duration(
        &raw.warmup,
        "warmup",
        SimDuration::ZERO,
        MAX_DURATION,
        SimDuration::ZERO,
    );
    if let (Some(w), Some(d), Some(ws)) = (warmup, duration, &raw.warmup) {
        if w >= d {
            c.problem(
                ws.span(),
                "warmup",
                format!("warmup {w} is not shorter than duration {d}"),
                Some("the warmup is the start of the run whose API metrics are dropped".into()),
            );
        }
    }
    let scale = c.opt_float(&raw.scale, "scale", 1.0, MAX_SCALE, 1.0);
    let max_events = c.opt_int(&raw.max_events, "max_events", 1, i64::MAX, 1 << 36);
    let scale_v = scale.unwrap_or(1.0);

    let faults = super::faults::read_faults(c, &raw.fault);
    let chaos = super::faults::read_chaos(c, &raw.chaos);
    let expect = super::faults::read_expect(c, &raw.expect);
    let gameday = super::faults::read_gameday(c, &raw.alert, &raw.runbook);
    let bugs = super::faults::read_bugs(c, &raw.bugs);
    let recovery_hold = c.opt_duration(
        &raw.slo
            .as_ref()
            .and_then(|s| s.get_ref().recovery_hold.clone()),
        "slo.recovery_hold",
        SimDuration::ZERO,
        SimDuration::DAY,
        SimDuration::from_secs(60),
    );

    // ------------------------------------------------------------------------- topology
    let topo = raw.topology.as_ref();
    let topo_span = topo.map_or(root.clone(), |t| t.span());
    let api = topo.and_then(|t| t.get_ref().api.as_ref());
    let api_span = api.map_or(topo_span.clone(), |a| a.span());
    let a = api.map(|a| a.get_ref());
    let nodes = c.opt_int(
        &a.and_then(|a| a.nodes.clone()),
        "topology.api.nodes",
        1,
        MAX_NODES,
        4,
    );
    let nodes = nodes
        .and_then(|n| scaled(c, n as u32, scale_v, &api_span, "topology.api.nodes"))
        .and_then(|n| {
            if n > MAX_SCALED_NODES {
                c.problem(
                    api_span.clone(),
                    "topology.api.nodes",
                    format!("{n} nodes after scale 1:{scale_v}, more than a run holds ({MAX_SCALED_NODES})"),
                    Some("raise `scale` (e.g. scale = 100 runs 1,200 nodes as 12)".into()),
                );
                return None;
            }
            Some(n)
        });
    let gc = name_of(
        c,
        &a.and_then(|a| a.gc.clone()),
        "topology.api.gc",
        &["g1", "parallel", "zgc", "off"],
        "g1",
    )
    .and_then(|g| g.parse::<GcProfile>().ok());
    let heap_gib = c.opt_float(
        &a.and_then(|a| a.heap_gib.clone()),
        "topology.api.heap_gib",
        0.25,
        1024.0,
        4.0,
    );
    let live_gib = match (a.and_then(|a| a.live_set_gib.clone()), heap_gib) {
        (Some(v), _) => c.float(&v, "topology.api.live_set_gib", 0.0, 4096.0),
        (None, h) => h.map(|h| h / 4.0),
    };
    let heap = match (gc, heap_gib, live_gib) {
        (Some(gc), Some(h), Some(l)) => {
            let gib = (1u64 << 30) as f64;
            let total = (h * gib) as u64;
            let mut spec = HeapSpec::defaults_for(gc);
            spec.eden_bytes = total / 4;
            spec.survivor_bytes = total / 32;
            spec.old_bytes = total - spec.eden_bytes - spec.survivor_bytes;
            spec.live_set_bytes = (l * gib) as u64;
            built(c, spec.build(), &api_span, "topology.api.heap_gib")
        }
        _ => None,
    };
    let lb = name_of(
        c,
        &a.and_then(|a| a.lb.clone()),
        "topology.api.lb",
        &["least_outstanding", "round_robin", "power_of_two"],
        "least_outstanding",
    )
    .and_then(|l| l.parse::<LbPolicy>().ok());
    let node = heap.and_then(|heap| {
        let mut b = NodeConfigBuilder::new(heap);
        let a = a?;
        if let Some(v) = &a.workers {
            b = b.workers(c.int(v, "topology.api.workers", 1, 100_000)? as u32);
        }
        if let Some(v) = &a.cores {
            b = b.cores(c.int(v, "topology.api.cores", 1, 1_024)? as u32);
        }
        if let Some(v) = &a.accept_queue {
            b = b.accept_queue(c.int(v, "topology.api.accept_queue", 0, 10_000_000)? as u32);
        }
        if let Some(v) = &a.cpu {
            b = b.cpu_all(v.get_ref().clone());
        }
        if let Some(v) = &a.shed_expired {
            b = b.shed_expired(*v.get_ref());
        }
        // A call timeout set in the file, 1 ms to 1 h (unset: the builder's default).
        let timeout = |c: &mut Check<'_, '_>, v: &Sp<SimDuration>, path: &str| {
            let (lo, hi) = (SimDuration::from_ms(1), SimDuration::HOUR);
            v.as_ref().and(c.opt_duration(v, path, lo, hi, lo))
        };
        if let Some(d) = timeout(c, &a.db_query_timeout, "topology.api.db_query_timeout") {
            b = b.db_query_timeout(d);
        }
        if let Some(d) = timeout(c, &a.l2_timeout, "topology.api.l2_timeout") {
            b = b.l2_timeout(d);
        }
        if let Some(v) = &a.hop {
            let h = *v.get_ref();
            b = b.hops(h, h, h);
        }
        if a.pool.is_some() || a.pool_wait_limit.is_some() || a.pool_acquire_timeout.is_some() {
            let size = c.opt_int(&a.pool, "topology.api.pool", 1, 100_000, 32)? as u32;
            let wait = c.opt_int(
                &a.pool_wait_limit,
                "topology.api.pool_wait_limit",
                0,
                10_000_000,
                1_000,
            )? as u32;
            let t = c.opt_duration(
                &a.pool_acquire_timeout,
                "topology.api.pool_acquire_timeout",
                SimDuration::from_us(1),
                SimDuration::HOUR,
                SimDuration::from_secs(1),
            )?;
            b = b.pool(size, wait, t);
        }
        built(c, b.build(), &api_span, "topology.api")
    });
    let node = match (heap, a) {
        // No [topology.api] table: the defaults.
        (Some(heap), None) => built(
            c,
            NodeConfigBuilder::new(heap).build(),
            &api_span,
            "topology.api",
        ),
        _ => node,
    };

    let db_raw = topo.and_then(|t| t.get_ref().db.as_ref());
    let db = match db_raw {
        None => Some(DbConfig::assumed_defaults()),
        Some(d) => {
            let span = d.span();
            let d = d.get_ref();
            let mut b = DbConfig::builder();
            let mut ok = true;
            if let Some(v) = &d.max_concurrent {
                match c.int(v, "topology.db.max_concurrent", 1, 1_000_000) {
                    Some(n) => match scaled(
                        c,
                        n as u32,
                        scale_v,
                        &v.span(),
                        "topology.db.max_concurrent",
                    ) {
                        Some(n) => b = b.max_concurrent(n),
                        None => ok = false,
                    },
                    None => ok = false,
                }
            }
            if let Some(v) = &d.queue_limit {
                match c.int(v, "topology.db.queue_limit", 0, 10_000_000) {
                    Some(n) => b = b.queue_limit(n as u32),
                    None => ok = false,
                }
            }
            if let Some(v) = &d.shards {
                match c.int(v, "topology.db.shards", 1, 1_024) {
                    Some(n) => b = b.shards(n as u16),
                    None => ok = false,
                }
            }
            if let Some(v) = &d.replicas {
                match c.int(v, "topology.db.replicas", 0, 16) {
                    Some(n) => b = b.replicas(n as u16),
                    None => ok = false,
                }
            }
            if let Some(v) = &d.replication_lag {
                b = b.replication_lag(v.get_ref().clone());
            }
            if let Some(v) = &d.latency {
                b = b.latency_all(v.get_ref().clone());
            }
            if let Some(v) = &d.slow_query_threshold {
                b = b.slow_query_threshold(*v.get_ref());
            }
            if ok {
                built(c, b.build(), &span, "topology.db")
            } else {
                None
            }
        }
    };
    let shards = db.as_ref().map_or(1, |d| d.shards());

    let throttle_raw = topo.and_then(|t| t.get_ref().throttle.as_ref());
    let preset_raw = throttle_raw.and_then(|t| t.get_ref().preset.clone());
    let preset = name_of(
        c,
        &preset_raw,
        "topology.throttle.preset",
        &["ecs", "ec2", "none"],
        "ecs",
    );

    let deps: Option<Vec<DependencySpec>> =
        match topo.and_then(|t| t.get_ref().dependencies.as_ref()) {
            None => Some(mocks.to_vec()),
            Some(list) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, n) in list.get_ref().iter().enumerate() {
                    match mocks.iter().find(|m| m.name() == n.get_ref()) {
                        Some(m) => out.push(m.clone()),
                        None => {
                            ok = false;
                            c.problem(
                                n.span(),
                                &format!("topology.dependencies[{i}]"),
                                format!("no dependency mock named `{}`", n.get_ref()),
                                Some(name_hint(
                                    n.get_ref(),
                                    "mocks",
                                    mocks.iter().map(|m| m.name()),
                                )),
                            );
                        }
                    }
                }
                ok.then_some(out)
            }
        };

    let cache = topo
        .and_then(|t| t.get_ref().cache.as_ref())
        .and_then(|cs| {
            let span = cs.span();
            let r = cs.get_ref();
            let l1_cap = c.opt_int(
                &r.l1_capacity,
                "topology.cache.l1_capacity",
                1,
                100_000_000,
                50_000,
            )?;
            let soft = ttl(
                c,
                &r.l1_soft_ttl,
                "topology.cache.l1_soft_ttl",
                SimDuration::from_secs(5),
            )?;
            let hard = ttl(
                c,
                &r.l1_hard_ttl,
                "topology.cache.l1_hard_ttl",
                SimDuration::from_secs(60),
            )?;
            let l2_cap = c.opt_int(
                &r.l2_capacity,
                "topology.cache.l2_capacity",
                1,
                1_000_000_000,
                1_000_000,
            )?;
            let l2_ttl = ttl(
                c,
                &r.l2_ttl,
                "topology.cache.l2_ttl",
                SimDuration::from_secs(300),
            )?;
            let neg = ttl(
                c,
                &r.l2_negative_ttl,
                "topology.cache.l2_negative_ttl",
                SimDuration::from_secs(2),
            )?;
            let l1 = built(
                c,
                L1Config::builder()
                    .capacity(l1_cap as u32)
                    .ttl(soft, hard)
                    .build(),
                &span,
                "topology.cache",
            )?;
            let l2 = built(
                c,
                L2Config::builder().capacity(l2_cap as u32).build(),
                &span,
                "topology.cache",
            )?;
            let mode = name_of(
                c,
                &r.invalidation,
                "topology.cache.invalidation",
                &["writer", "binlog"],
                "writer",
            )?;
            let invalidation = if mode == "binlog" {
                Invalidation::Binlog(feed_config(c, r)?)
            } else {
                let binlog_only = [
                    ("binlog_lag", r.binlog_lag.as_ref().map(|v| v.span())),
                    (
                        "binlog_retry_timeout",
                        r.binlog_retry_timeout.as_ref().map(|v| v.span()),
                    ),
                    (
                        "binlog_backoff_max",
                        r.binlog_backoff_max.as_ref().map(|v| v.span()),
                    ),
                    (
                        "binlog_max_pending",
                        r.binlog_max_pending.as_ref().map(|v| v.span()),
                    ),
                    (
                        "binlog_heartbeat",
                        r.binlog_heartbeat.as_ref().map(|v| v.span()),
                    ),
                ];
                let mut misplaced = false;
                for (key, span) in binlog_only {
                    if let Some(span) = span {
                        c.problem(
                            span,
                            &format!("topology.cache.{key}"),
                            format!("{key} sets the change feed, and the writers invalidate"),
                            Some(format!(
                                "set `invalidation = \"binlog\"`, or remove `{key}`"
                            )),
                        );
                        misplaced = true;
                    }
                }
                if misplaced {
                    return None;
                }
                Invalidation::Writer
            };
            Some(CacheSetup {
                invalidation,
                l1,
                l2,
                l2_ttl,
                l2_negative_ttl: neg,
                invalidation_delay: r.invalidation_delay.as_ref().map_or_else(
                    || Dist::uniform(0.01, 0.1).expect("valid"),
                    |d| d.get_ref().clone(),
                ),
            })
        });
    let cache_declared = topo.is_some_and(|t| t.get_ref().cache.is_some());

    let workflows = topo
        .and_then(|t| t.get_ref().workflows.as_ref())
        .and_then(|w| {
            let span = w.span();
            let r = w.get_ref();
            let mut b = EngineConfig::builder();
            if let Some(v) = &r.workers {
                let n = c.int(v, "topology.workflows.workers", 1, 1_000_000)?;
                b = b.workers(scaled(
                    c,
                    n as u32,
                    scale_v,
                    &v.span(),
                    "topology.workflows.workers",
                )?);
            }
            if r.step_timeout.is_some()
                || r.max_attempts.is_some()
                || r.initial_interval.is_some()
                || r.backoff_coefficient.is_some()
                || r.max_interval.is_some()
            {
                const P: &str = "topology.workflows";
                let timeout = c.opt_duration(
                    &r.step_timeout,
                    "topology.workflows.step_timeout",
                    SimDuration::from_ms(1),
                    SimDuration::HOUR,
                    SimDuration::from_secs(10),
                );
                let attempts = c.opt_int(
                    &r.max_attempts,
                    "topology.workflows.max_attempts",
                    1,
                    i64::from(MAX_STEP_ATTEMPTS),
                    3,
                );
                let initial = c.opt_duration(
                    &r.initial_interval,
                    "topology.workflows.initial_interval",
                    SimDuration::from_ms(1),
                    SimDuration::HOUR,
                    SimDuration::SECOND,
                );
                let coefficient = c.opt_float(
                    &r.backoff_coefficient,
                    "topology.workflows.backoff_coefficient",
                    1.0,
                    MAX_COEFFICIENT,
                    2.0,
                );
                let max_interval = c.opt_duration(
                    &r.max_interval,
                    "topology.workflows.max_interval",
                    SimDuration::from_ms(1),
                    MAX_INTERVAL,
                    SimDuration::from_secs(100),
                );
                let retry = StepRetry::new(
                    attempts? as u32,
                    initial?,
                    coefficient?,
                    max_interval?,
                    Jitter::Full,
                    &[ErrorCode::IncorrectInstanceStatus],
                );
                b = b.all_steps(timeout?, &built(c, retry, &span, P)?);
            }
            if let Some(d) = &r.deadline {
                b = b.deadlines(*d.get_ref());
            }
            let engine = built(c, b.build(), &span, "topology.workflows")?;
            Some(WorkflowSetup {
                engine,
                batch: r.batch.as_ref().is_none_or(|b| *b.get_ref()),
            })
        });
    let workflows_declared = topo.is_some_and(|t| t.get_ref().workflows.is_some());

    let idem = match topo.and_then(|t| t.get_ref().idempotency.as_ref()) {
        None => Some(IdemConfig::default()),
        Some(i) => {
            let span = i.span();
            let r = i.get_ref();
            let store = name_of(
                c,
                &r.store,
                "topology.idempotency.store",
                &["db", "l2"],
                "db",
            );
            let ttl = c.opt_duration(
                &r.ttl,
                "topology.idempotency.ttl",
                SimDuration::from_secs(1),
                SimDuration::from_secs(30 * 86_400),
                IdemConfig::DEFAULT_TTL,
            );
            let cap = c.opt_int(
                &r.capacity,
                "topology.idempotency.capacity",
                1,
                100_000_000,
                i64::from(IdemConfig::DEFAULT_CAPACITY),
            );
            match (store, ttl, cap) {
                (Some(store), Some(ttl), Some(cap)) => built(
                    c,
                    IdemConfig::builder()
                        .mode(if r.atomic.as_ref().is_none_or(|a| *a.get_ref()) {
                            IdemMode::Atomic
                        } else {
                            IdemMode::NonAtomic
                        })
                        .store(if store == "l2" {
                            StoreKind::L2Cache
                        } else {
                            StoreKind::Db
                        })
                        .ttl(ttl)
                        .capacity(cap as u32)
                        .build(),
                    &span,
                    "topology.idempotency",
                ),
                _ => None,
            }
        }
    };

    let cleanup = topo
        .and_then(|t| t.get_ref().cleanup.as_ref())
        .and_then(|cl| {
            let span = cl.span();
            let r = cl.get_ref();
            let period = c
                .required(&r.period, &span, "topology.cleanup", "period")
                .map(|v| *v.get_ref());
            let retention = c
                .required(&r.retention, &span, "topology.cleanup", "retention")
                .map(|v| *v.get_ref());
            let rows = c.opt_int(
                &r.batch_rows,
                "topology.cleanup.batch_rows",
                1,
                10_000,
                1_000,
            );
            let batches = c.opt_int(
                &r.max_batches_per_run,
                "topology.cleanup.max_batches_per_run",
                1,
                1_000_000,
                100,
            );
            let cfg = CleanupConfig::new(
                period?,
                retention?,
                rows? as u32,
                batches? as u32,
                &[Table::Workflows, Table::History, Table::Idempotency],
                shards,
            );
            built(c, cfg, &span, "topology.cleanup")
        });
    let cleanup_declared = topo.is_some_and(|t| t.get_ref().cleanup.is_some());
    let recon = topo
        .and_then(|t| t.get_ref().reconciliation.as_ref())
        .map(|r| {
            let mode = name_of(
                c,
                &r.get_ref().mode,
                "topology.reconciliation.mode",
                &["hourly", "daily"],
                "hourly",
            );
            if !workflows_declared {
                c.problem(
                    r.span(),
                    "topology.reconciliation",
                    "reconciliation compares the resources workflows create".into(),
                    Some("add a [topology.workflows] table".into()),
                );
                return None;
            }
            let base = mode.map(|m| {
                if m == "daily" {
                    ReconConfig::daily()
                } else {
                    ReconConfig::hourly()
                }
            })?;
            let r = r.get_ref();
            let period = c.opt_duration(
                &r.period,
                "topology.reconciliation.period",
                SimDuration::from_secs(1),
                SimDuration::from_secs(366 * 86_400),
                base.period(),
            );
            let grace = c.opt_duration(
                &r.grace,
                "topology.reconciliation.grace",
                SimDuration::ZERO,
                SimDuration::from_secs(366 * 86_400),
                base.grace(),
            );
            let read = name_of(
                c,
                &r.read,
                "topology.reconciliation.read",
                &["primary", "replica"],
                "primary",
            );
            // The period's range starts above zero: the schedule is valid.
            let cfg = base.with_timing(period?, grace?).ok()?;
            let confirm = r.confirm_orphans.as_ref().is_some_and(|v| *v.get_ref());
            Some(
                cfg.with_replica_reads(read? == "replica")
                    .with_orphan_confirmation(confirm),
            )
        });

    // ------------------------------------------------------------------------- workload
    let wl = c.required(&raw.workload, &root, "", "workload");
    let wl_span = wl.map_or(root.clone(), |w| w.span());
    let w = wl.map(|w| w.get_ref());
    let rate = w.and_then(|w| {
        c.required(&w.rate, &wl_span, "workload", "rate")
            .and_then(|r| c.float(r, "workload.rate", 1e-6, MAX_RATE))
    });
    let rate = rate.map(|r| r / scale_v);
    let mix = match w.and_then(|w| w.mix.as_ref()) {
        None if c.broken.contains("workload.mix") => None,
        None => Some(ApiMix::describe_heavy()),
        Some(ws) => {
            let mut weights = [0.0; Api::COUNT];
            let mut ok = true;
            for (k, v) in ws {
                let path = format!("workload.mix.{}", k.get_ref());
                match api_named(c, k, &path) {
                    Some(api) => match c.float(v, &path, 0.0, 1e9) {
                        Some(x) => weights[api.index()] = x,
                        None => ok = false,
                    },
                    None => ok = false,
                }
            }
            let span = wl_span.clone();
            if ok {
                built(c, ApiMix::new(weights), &span, "workload.mix")
            } else {
                None
            }
        }
    };
    let accounts = c.opt_int(
        &w.and_then(|w| w.accounts.clone()),
        "workload.accounts",
        1,
        10_000_000,
        10_000,
    );
    let skew = c.opt_float(
        &w.and_then(|w| w.account_skew.clone()),
        "workload.account_skew",
        0.0,
        10.0,
        1.1,
    );
    let amount = w.and_then(|w| w.amount.as_ref()).map_or_else(
        || Some(crate::traffic::default_amount()),
        |d| Some(d.get_ref().clone()),
    );
    let min_frac = c.opt_float(
        &w.and_then(|w| w.min_amount_fraction.clone()),
        "workload.min_amount_fraction",
        0.0,
        1.0,
        0.0,
    );
    let types_given = w.and_then(|w| w.instance_types.clone());
    let types = c.opt_int(&types_given, "workload.instance_types", 1, 1_000, 4);
    let type_mix = match (w.and_then(|w| w.instance_type_weights.as_ref()), types) {
        (None, types) => types.and_then(|n| TypeMix::uniform(n as u16).ok()),
        (Some(list), types) => {
            const P: &str = "workload.instance_type_weights";
            let hint = || Some("e.g. instance_type_weights = [60, 30, 9, 1]".to_string());
            let weights: Vec<f64> = list.get_ref().iter().map(|w| *w.get_ref()).collect();
            let mut ok = true;
            for (i, w) in list.get_ref().iter().enumerate() {
                if !w.get_ref().is_finite() || *w.get_ref() < 0.0 {
                    ok = false;
                    c.problem(
                        w.span(),
                        &format!("{P}[{i}]"),
                        format!("a weight must be a finite number >= 0, got {}", w.get_ref()),
                        hint(),
                    );
                }
            }
            if ok && (weights.is_empty() || weights.len() > TypeMix::MAX_TYPES) {
                ok = false;
                c.problem(
                    list.span(),
                    P,
                    format!(
                        "give 1 to {} weights (one per instance type), got {}",
                        TypeMix::MAX_TYPES,
                        weights.len()
                    ),
                    hint(),
                );
            }
            if let (Some(given), Some(n)) = (&types_given, types)
                && ok
                && n as usize != weights.len()
            {
                ok = false;
                c.problem(
                    given.span(),
                    "workload.instance_types",
                    format!(
                        "instance_types = {n} but instance_type_weights names {} types",
                        weights.len()
                    ),
                    Some(
                        "drop instance_types: the weights' count is the number of types"
                            .to_string(),
                    ),
                );
            }
            // Each weight and their count are fine: what TypeMix may still refuse is their sum.
            match ok.then(|| TypeMix::weighted(&weights)) {
                Some(Ok(mix)) => Some(mix),
                Some(Err(_)) => {
                    c.problem(
                        list.span(),
                        P,
                        "at least one weight must be > 0, and their sum finite".to_string(),
                        hint(),
                    );
                    None
                }
                None => None,
            }
        }
    };
    let timeout = c.opt_duration(
        &w.and_then(|w| w.timeout.clone()),
        "workload.timeout",
        SimDuration::from_ms(1),
        SimDuration::HOUR,
        SimDuration::from_secs(5),
    );
    let list_share = c.opt_float(
        &w.and_then(|w| w.describe_list_share.clone()),
        "workload.describe_list_share",
        0.0,
        1.0,
        0.2,
    );
    let tokens = match w.and_then(|w| w.tokens.as_ref()) {
        None => Some(TokenPolicy::NONE),
        Some(t) => {
            let r = t.get_ref();
            let share = c.opt_float(&r.share, "workload.tokens.share", 0.0, 1.0, 1.0);
            let dup = c.opt_float(
                &r.duplicate_fraction,
                "workload.tokens.duplicate_fraction",
                0.0,
                1.0,
                0.0,
            );
            let delay = c.opt_duration(
                &r.duplicate_delay,
                "workload.tokens.duplicate_delay",
                SimDuration::ZERO,
                SimDuration::HOUR,
                SimDuration::from_ms(500),
            );
            match (share, dup, delay) {
                (Some(share), Some(duplicate_fraction), Some(duplicate_delay)) => {
                    Some(TokenPolicy {
                        share,
                        duplicate_fraction,
                        duplicate_delay,
                    })
                }
                _ => None,
            }
        }
    };

    let client_cfg = match w {
        Some(w) => client(c, w),
        None => Some(ClientConfig::default()),
    };
    let replay_cfg = match w {
        Some(w) => replay(c, w, dir),
        None => Some(None),
    };
    let rate_profile = match w.and_then(|w| w.profile.as_ref()) {
        None if c.broken.contains("workload.profile") => None,
        None => Some(RateProfile::constant()),
        Some(p) => profile(c, p),
    };

    // ------------------------------------------------------------------------- SLOs
    let slo = match &raw.slo {
        None => Some(Slo {
            p99_ms: None,
            api_p99_ms: Vec::new(),
            rate_5xx_max: None,
        }),
        Some(s) => {
            let r = s.get_ref();
            let p99 = r
                .p99_ms
                .as_ref()
                .map(|v| c.float(v, "slo.p99_ms", 1e-6, 1e9));
            let rate = r
                .rate_5xx_max
                .as_ref()
                .map(|v| c.float(v, "slo.rate_5xx_max", 0.0, 1.0));
            let mut per_api = Vec::new();
            let mut ok = true;
            for (k, v) in r.api_p99_ms.iter().flatten() {
                let path = format!("slo.api_p99_ms.{}", k.get_ref());
                match api_named(c, k, &path) {
                    Some(api) => match c.float(v, &path, 1e-6, 1e9) {
                        Some(x) => per_api.push((api, x)),
                        None => ok = false,
                    },
                    None => ok = false,
                }
            }
            match (p99, rate, ok) {
                (Some(None), _, _) | (_, Some(None), _) | (_, _, false) => None,
                (p99, rate, true) => Some(Slo {
                    p99_ms: p99.flatten(),
                    api_p99_ms: per_api,
                    rate_5xx_max: rate.flatten(),
                }),
            }
        }
    };

    if !c.diag.is_clean() {
        return None;
    }
    // Everything read; the rest cannot fail on bad input except the cross-checks below.
    let accounts = accounts? as u32;
    let traffic = OpenLoopConfig {
        inter_arrival: Dist::exponential(1.0 / rate?).ok()?,
        mix: mix?,
        accounts,
        account_skew: match skew? {
            s if s > 0.0 => Some(Dist::zipf(u64::from(accounts), s).ok()?),
            _ => None,
        },
        amount: amount?,
        min_amount_fraction: min_frac?,
        instance_types: type_mix?,
        timeout: timeout?,
        until: SimTime::ZERO,
        describe_list_share: list_share?,
        tokens: tokens?,
        profile: rate_profile?,
    };
    let throttle = match preset? {
        "ec2" => Throttle::ec2_defaults(accounts),
        "none" => Throttle::new([Limit::Unlimited; Api::COUNT], Limit::Unlimited, accounts).ok()?,
        _ => Throttle::ecs_defaults(accounts),
    };
    let mut topology = built(
        c,
        Topology::new(nodes?, node?, lb?, throttle, db?, deps?, traffic, duration?),
        &topo_span,
        "topology",
    )?;
    if let Some(h) = a.and_then(|a| a.hop.as_ref()) {
        topology = topology.with_gateway_hop(*h.get_ref());
    }
    topology = topology
        .with_max_events(max_events? as u64)
        .with_idempotency(idem?);
    topology = built(c, topology.with_client(client_cfg?), &wl_span, "workload")?;
    if let Some((trace, cfg)) = replay_cfg? {
        topology = built(
            c,
            topology.with_trace(trace, cfg),
            &wl_span,
            "workload.replay",
        )?;
    }
    if cache_declared {
        topology = topology.with_cache(cache?);
    }
    if workflows_declared {
        topology = built(
            c,
            topology.with_workflows(workflows?),
            &topo_span,
            "topology.workflows",
        )?;
    }
    if cleanup_declared {
        topology = topology.with_cleanup(cleanup?);
    }
    if let Some(r) = recon {
        topology = built(
            c,
            topology.with_reconciliation(r?),
            &topo_span,
            "topology.reconciliation",
        )?;
    }
    let faults = faults?;
    let (chaos, liveness) = chaos?;
    if let Some(bound) = liveness {
        let cfg = crate::invariants::InvariantConfig {
            liveness_bound: bound,
            ..topology.invariants()
        };
        topology = topology.with_invariants(cfg);
    }
    topology = topology.with_bugs(bugs?);
    let gameday = gameday?;
    if !gameday.is_empty() {
        let slo_ref = slo.as_ref()?;
        let recovery = crate::world::RecoverySlo {
            p99_ms: slo_ref.p99_all(),
            rate_5xx_max: slo_ref.rate_5xx_max(),
            hold: recovery_hold?,
        };
        topology = built(
            c,
            topology.with_gameday(gameday, recovery),
            &root,
            "runbook",
        )?;
    }
    let plan = crate::faults::FaultPlan::new(faults.iter().map(|(f, _)| f.clone()).collect());
    topology = match topology.with_faults(plan) {
        Ok(t) => t,
        Err(crate::world::TopologyError::FaultTarget { index, reason }) => {
            c.problem(
                faults[index].1.clone(),
                &format!("fault[{index}]"),
                reason,
                None,
            );
            return None;
        }
        Err(e) => {
            c.problem(root.clone(), "fault", e.to_string(), None);
            return None;
        }
    };
    Some(Scenario {
        file: file.to_string(),
        name: name?,
        description: description?,
        seed: seed? as u64,
        duration: duration?,
        warmup: warmup?,
        scale: scale?,
        topology,
        slo: slo?,
        hash: 0,
        chaos,
        expect: expect?,
    })
}
