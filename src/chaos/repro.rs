//! A standalone reproduction file: the original scenario with the command line's overrides
//! applied, the shrunk workload, the minimal fault plan as `[[fault]]` tables, the seed, and an
//! `[expect]` table (trace hash and invariant) that `firedrill replay` checks.

use super::shrink::Shrunk;
use crate::faults::{Fault, FaultKind};
use crate::kernel::SimDuration;
use crate::scenario::Override;
use std::path::Path;
use toml::{Table, Value};

/// A duration as the scenario reader takes it, exactly (whole seconds, ms, or ns).
pub fn duration_text(d: SimDuration) -> String {
    let ns = d.as_ns();
    if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{ns}ns")
    }
}

/// One fault as a `[[fault]]` table (the inverse of the scenario reader).
pub fn fault_table(f: &Fault) -> Table {
    let mut t = Table::new();
    let s = |x: &str| Value::String(x.to_string());
    t.insert("kind".into(), s(f.kind().name()));
    t.insert("target".into(), s(&f.target().to_string()));
    t.insert("start".into(), s(&duration_text(f.start().since_start())));
    t.insert("duration".into(), s(&duration_text(f.duration())));
    if !f.ramp().is_zero() {
        t.insert("ramp".into(), s(&duration_text(f.ramp())));
    }
    let mut put = |k: &str, v: Value| {
        t.insert(k.to_string(), v);
    };
    match f.kind() {
        FaultKind::DepLatency { add, multiply } => {
            if let Some(a) = add {
                put("add", s(&a.to_string()));
            }
            put("multiply", Value::Float(*multiply));
        }
        FaultKind::DepErrors { code, probability } => {
            put("code", s(code.name()));
            put("probability", Value::Float(*probability));
        }
        FaultKind::DepPartialOutage { fraction } => put("fraction", Value::Float(*fraction)),
        FaultKind::NodePause { pause, every } => {
            put("pause", s(&pause.to_string()));
            if let Some(e) = every {
                put("every", s(&duration_text(*e)));
            }
        }
        FaultKind::HeapLeak { bytes_per_sec } => put(
            "gib_per_min",
            Value::Float(*bytes_per_sec as f64 * 60.0 / f64::from(1u32 << 30)),
        ),
        FaultKind::DbSlowSql { class, multiply } => {
            if let Some(c) = class {
                put("class", s(c.name()));
            }
            put("multiply", Value::Float(*multiply));
        }
        FaultKind::DbConnectionLeak { connections } => {
            put("connections", Value::Integer(i64::from(*connections)));
        }
        FaultKind::ReplicaLag { lag } | FaultKind::BinlogLag { lag } => {
            put("lag", s(&duration_text(*lag)))
        }
        FaultKind::Partition { peer } => put("peer", s(&peer.to_string())),
        FaultKind::ClockSkew { skew_ns } => put("skew_ms", Value::Integer(skew_ns / 1_000_000)),
        FaultKind::WorkerCrash { workers } => {
            put("workers", Value::Integer(i64::from(*workers)));
        }
        FaultKind::TrafficSurge { multiply } => put("multiply", Value::Float(*multiply)),
        FaultKind::HotTenant { account, share } => {
            put("account", Value::Integer(i64::from(*account)));
            put("share", Value::Float(*share));
        }
        FaultKind::QuotaTooLow { factor } => put("factor", Value::Float(*factor)),
        FaultKind::DepBlackhole
        | FaultKind::NodeCrash
        | FaultKind::DbFailover
        | FaultKind::L2Loss
        | FaultKind::L2Flush
        | FaultKind::ClientNoBackoff => {}
    }
    if let Some(a) = f.account() {
        t.insert("account".into(), Value::Integer(i64::from(a.0)));
    }
    t
}

/// Puts `value` at the dotted `path` of `t`, creating tables on the way.
fn set_path(t: &mut Table, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("a path has a key");
    let mut cur = t;
    for p in parents {
        let next = cur
            .entry(p.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        if !next.is_table() {
            *next = Value::Table(Table::new());
        }
        cur = next.as_table_mut().expect("made a table above");
    }
    cur.insert(last.clone(), value);
}

/// Why a reproduction file could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not TOML: {message}")]
    Parse { path: String, message: String },
}

/// The reproduction file's text for `shrunk`, from the scenario at `scenario` run with
/// `overrides`. `original_rate` is the topology's rate before shrinking (the file's rate is
/// scaled by the same factor).
pub fn repro_text(
    scenario: &Path,
    overrides: &[Override],
    shrunk: &Shrunk,
    original_rate: f64,
) -> Result<String, ReproError> {
    let path = scenario.display().to_string();
    let text = std::fs::read_to_string(scenario).map_err(|source| ReproError::Read {
        path: path.clone(),
        source,
    })?;
    let mut t: Table = toml::from_str(&text).map_err(|e| ReproError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    for o in overrides {
        let v: Table =
            toml::from_str(&format!("v = {}", o.value_text())).map_err(|e| ReproError::Parse {
                path: format!("--set {}", o.path()),
                message: e.to_string(),
            })?;
        if let Some(v) = v.get("v") {
            set_path(&mut t, o.path_keys(), v.clone());
        }
    }
    // A trace to replay is found from the scenario's folder: name it absolutely.
    if let Some(Value::String(trace)) = t
        .get("workload")
        .and_then(|w| w.get("replay"))
        .and_then(|r| r.get("trace"))
    {
        let abs = scenario
            .parent()
            .unwrap_or(Path::new("."))
            .join(trace)
            .canonicalize()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| trace.clone());
        set_path(
            &mut t,
            &["workload".into(), "replay".into(), "trace".into()],
            Value::String(abs),
        );
    }
    let seed = shrunk.run.seed;
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("scenario")
        .to_string();
    let mut name = format!("{name}-seed{seed}-min");
    name.truncate(64);
    t.insert("name".into(), Value::String(name));
    t.insert("seed".into(), Value::Integer(seed as i64));
    t.insert(
        "duration".into(),
        Value::String(duration_text(shrunk.duration)),
    );
    if original_rate > 0.0 && (shrunk.rate - original_rate).abs() > 1e-12 {
        let factor = shrunk.rate / original_rate;
        if let Some(r) = t
            .get("workload")
            .and_then(|w| w.get("rate"))
            .and_then(|r| r.as_float().or_else(|| r.as_integer().map(|i| i as f64)))
        {
            set_path(
                &mut t,
                &["workload".into(), "rate".into()],
                Value::Float(r * factor),
            );
        }
    }
    t.remove("chaos");
    t.remove("expect");
    t.insert(
        "fault".into(),
        Value::Array(
            shrunk
                .plan
                .faults()
                .iter()
                .map(|f| Value::Table(fault_table(f)))
                .collect(),
        ),
    );
    let mut expect = Table::new();
    expect.insert(
        "trace_hash".into(),
        Value::String(shrunk.run.trace_hash.clone()),
    );
    if let Some(v) = shrunk.run.violations.first() {
        expect.insert(
            "invariant".into(),
            Value::String(v.invariant.name().to_string()),
        );
    }
    t.insert("expect".into(), Value::Table(expect));
    let header = format!(
        "# A minimal reproduction shrunk by `firedrill chaos` from {path} (seed {seed}).\n# Replay it bit for bit: firedrill replay <this file>\n# Broken: {}\n\n",
        shrunk
            .run
            .violations
            .first()
            .map_or_else(|| shrunk.run.outcome.to_string(), |v| v.to_string())
            .replace('\n', " ")
    );
    Ok(header + &toml::to_string(&t).expect("a TOML table serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::AccountId;
    use crate::deps::FaultCode;
    use crate::faults::Target;
    use crate::kernel::SimTime;

    /// A fault scoped to an account keeps its scope through a reproduction file: its table
    /// reads back as the same fault.
    #[test]
    fn an_account_scope_is_written_and_reads_back() {
        let fault = Fault::new(
            FaultKind::DepErrors {
                code: FaultCode::InternalError,
                probability: 0.25,
            },
            Target::Dependency {
                name: "image".into(),
                endpoint: None,
            },
            SimTime::ZERO.saturating_add(SimDuration::from_secs(2)),
            SimDuration::from_ms(1_500),
        )
        .unwrap()
        .for_account(AccountId(4))
        .unwrap();
        let table = fault_table(&fault);
        assert_eq!(table.get("account"), Some(&Value::Integer(4)));
        let mut doc = Table::new();
        doc.insert("fault".into(), Value::Array(vec![Value::Table(table)]));
        let text = format!(
            "name = \"r\"\ndescription = \"repro\"\nduration = \"10s\"\n\n[workload]\nrate = 10\naccounts = 5\n\n{}",
            toml::to_string(&doc).unwrap()
        );
        let s =
            crate::scenario::parse_scenario("r.toml", &text, &[], &crate::world::shipped_mocks())
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.topology().faults().faults(), [fault]);
    }
}
