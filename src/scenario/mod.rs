//! Scenario files: the declarative TOML format a capacity planner writes, read in two layers — a
//! raw serde layer (`deny_unknown_fields`, spanned) and a validator that turns it into a typed
//! [`Scenario`] (private fields: raw input cannot reach a run) — reporting **every** problem at
//! once as `file:line:column: toml.path: message; hint`, and `--set path=value` overrides.
//!
//! # Format (see `scenarios/README.md` for the full key list)
//!
//! ```toml
//! name = "steady-day"                  # required: lowercase, digits, `-`, `_`
//! description = "what question this answers"
//! seed = 1                             # overridden by --seed
//! duration = "10m"                     # simulated traffic time
//! warmup = "1m"                        # API metrics start after it
//! scale = 100                          # run at 1:100 (rates and capacities together)
//! [topology.api]                       # nodes, workers, cores, lb, gc, heap_gib, pool…
//! [topology.db]                        # max_concurrent, shards, replicas…
//! [topology.cache]                     # optional: the multi-level cache
//! [topology.workflows]                 # optional: lifecycles as workflows
//! [topology.idempotency]               # atomic, store = "db" | "l2", ttl
//! [topology.cleanup]                   # optional: the data-cleanup job
//! [workload]                           # rate, mix, accounts, account_skew, amount, timeout, tokens
//! [[fault]]                            # the slot of the fault catalog (issue #6)
//! [slo]                                # p99_ms, api_p99_ms, rate_5xx_max
//! ```
//!
//! # Scale
//!
//! `scale = N` runs the scenario at 1:N: the arrival rate and the capacities that count servers
//! (API nodes, database concurrency, workflow workers) are divided by N, so utilisation — and so
//! the answer to a capacity question — is kept, while the run costs N times less. Per-node sizes
//! (workers, cores, pool), latencies and per-account limits are not scaled. A scale that leaves a
//! count below 1 is an error.
//!
//! # Overrides
//!
//! `--set path=value` replaces (or adds) the key at the dotted TOML path before validation;
//! `value` is read as TOML (`12`, `true`, `"p2c"`), or as a string when it is not valid TOML
//! (`300s`). A problem in an overridden value is reported against the `--set` argument.

mod faults;
mod raw;
mod schema;
mod validate;

pub use schema::scenario_schema;

use crate::deps::diag::{Diag, MockError, Problem};
use crate::deps::parse::read_raw_as;
use crate::deps::spec::DependencySpec;
use crate::kernel::SimDuration;
use crate::world::Topology;
use std::collections::BTreeSet;
use std::path::Path;
use toml::de::DeValue;

/// The largest scenario file read *(a limit: scenario files are hand-written)*.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a scenario could not be read: every problem found, sorted by place, one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ScenarioError(MockError);

impl ScenarioError {
    pub fn problems(&self) -> &[Problem] {
        self.0.problems()
    }
    fn new(problems: Vec<Problem>) -> ScenarioError {
        ScenarioError(MockError::new(problems))
    }
}

/// One `--set path=value` override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    path: Vec<String>,
    /// The value as TOML text (a bare word is quoted into a string).
    value: String,
    /// The argument as given, for problems.
    arg: String,
}

impl Override {
    /// Reads `path=value`.
    pub fn parse(arg: &str) -> Result<Override, String> {
        let Some((path, value)) = arg.split_once('=') else {
            return Err(format!(
                "`--set {arg}`: expected path=value, e.g. --set duration=300s"
            ));
        };
        let path: Vec<String> = path
            .trim()
            .split('.')
            .map(|s| s.trim().to_string())
            .collect();
        if path.iter().any(|s| {
            s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }) {
            return Err(format!(
                "`--set {arg}`: the path must be dotted keys, e.g. topology.api.nodes"
            ));
        }
        let value = value.trim();
        let value = if DeValue::parse(value).is_ok() {
            value.to_string()
        } else {
            // Not TOML: a bare word such as 300s or p2c, read as a string.
            let mut quoted = String::from("\"");
            for c in value.chars() {
                match c {
                    '"' => quoted.push_str("\\\""),
                    '\\' => quoted.push_str("\\\\"),
                    c if c.is_control() => quoted.push(' '),
                    c => quoted.push(c),
                }
            }
            quoted.push('"');
            quoted
        };
        Ok(Override {
            path,
            value,
            arg: arg.to_string(),
        })
    }

    /// The dotted path.
    pub fn path(&self) -> String {
        self.path.join(".")
    }

    /// The path's keys.
    pub fn path_keys(&self) -> &[String] {
        &self.path
    }

    /// The value as TOML text.
    pub fn value_text(&self) -> &str {
        &self.value
    }
}

/// The service-level objectives a run is judged by.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    p99_ms: Option<f64>,
    api_p99_ms: Vec<(crate::api::types::Api, f64)>,
    rate_5xx_max: Option<f64>,
}

impl Slo {
    /// The p99 target of `api`, ms, if any.
    pub fn p99_ms(&self, api: crate::api::types::Api) -> Option<f64> {
        self.api_p99_ms
            .iter()
            .find(|(a, _)| *a == api)
            .map(|(_, v)| *v)
            .or(self.p99_ms)
    }
    /// The p99 target of every API (`p99_ms`), ms, if any.
    pub fn p99_all(&self) -> Option<f64> {
        self.p99_ms
    }
    pub fn rate_5xx_max(&self) -> Option<f64> {
        self.rate_5xx_max
    }
}

/// A validated scenario: everything a run needs, nothing unchecked.
#[derive(Clone, Debug)]
pub struct Scenario {
    file: String,
    name: String,
    description: String,
    seed: u64,
    duration: SimDuration,
    warmup: SimDuration,
    scale: f64,
    topology: Topology,
    slo: Slo,
    hash: u64,
    chaos: crate::chaos::ChaosConfig,
    expect: Option<crate::chaos::Expect>,
}

impl Scenario {
    pub fn file(&self) -> &str {
        &self.file
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The file's seed (the command line's `--seed` replaces it).
    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn duration(&self) -> SimDuration {
        self.duration
    }
    pub fn warmup(&self) -> SimDuration {
        self.warmup
    }
    pub fn scale(&self) -> f64 {
        self.scale
    }
    pub fn topology(&self) -> &Topology {
        &self.topology
    }
    /// What `firedrill chaos` may draw (`[chaos]`).
    pub fn chaos(&self) -> &crate::chaos::ChaosConfig {
        &self.chaos
    }
    /// What a reproduction file expects (`[expect]`), if it is one.
    pub fn expect(&self) -> Option<&crate::chaos::Expect> {
        self.expect.as_ref()
    }
    pub fn slo(&self) -> &Slo {
        &self.slo
    }
    /// FNV-1a of the scenario text and its overrides: two runs with equal hashes ran the same
    /// description.
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Reads a scenario's text. `file` names it in problems; `mocks` are the dependency definitions
/// its `topology.dependencies` may name.
pub fn parse_scenario(
    file: &str,
    text: &str,
    overrides: &[Override],
    mocks: &[DependencySpec],
) -> Result<Scenario, ScenarioError> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ScenarioError::new(vec![Problem {
            file: file.to_string(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("the file is {} bytes long", text.len()),
            hint: Some(format!("at most {MAX_FILE_BYTES} bytes")),
        }]));
    }
    // The overrides ride at the end of the text as tables of their own, so that their values
    // are parsed, spanned and reported like the file's; `prepare` then moves them into place.
    let mut full = text.to_string();
    let mut foreign = Vec::new();
    for (i, o) in overrides.iter().enumerate() {
        let start = full.len();
        full.push_str(&format!("\n[__set_{i}]\nv = {}\n", o.value));
        foreign.push((start..full.len(), format!("--set {}", o.arg)));
    }
    let mut diag = Diag::new(file, &full);
    for (range, label) in &foreign {
        diag.add_foreign(range.clone(), label.clone());
    }
    let mut broken = BTreeSet::new();
    let raw = read_raw_as::<raw::RawScenario>(
        &full,
        &raw::ROOT_SHAPE,
        &mut diag,
        &mut broken,
        |table, diag| {
            for (i, o) in overrides.iter().enumerate() {
                let Some(holder) = table.remove(format!("__set_{i}").as_str()) else {
                    continue;
                };
                let span = holder.span();
                let DeValue::Table(mut t) = holder.into_inner() else {
                    continue;
                };
                let Some(value) = t.remove("v") else {
                    continue;
                };
                if let Err(m) = validate::insert_at(table, &o.path, value, span.clone()) {
                    diag.at(Some(span), &o.path(), m, None);
                }
            }
        },
    );
    let scenario = raw.and_then(|raw| {
        let mut check = crate::deps::parse::Check {
            diag: &mut diag,
            broken: &broken,
            example: validate::example,
        };
        let dir = Path::new(file).parent().unwrap_or(Path::new(""));
        validate::validate(file, dir, &raw, mocks, &mut check)
    });
    match scenario {
        Some(mut s) if diag.is_clean() => {
            s.hash = fnv1a(full.as_bytes());
            Ok(s)
        }
        _ => {
            if diag.is_clean() {
                diag.at(None, "", "the scenario could not be read", None);
            }
            Err(ScenarioError::new(diag.problems))
        }
    }
}

/// Reads a scenario file.
pub fn load_scenario(
    path: &Path,
    overrides: &[Override],
    mocks: &[DependencySpec],
) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let io = |message: String, hint: Option<String>| {
        ScenarioError::new(vec![Problem {
            file: file.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message,
            hint,
        }])
    };
    let meta = std::fs::metadata(path).map_err(|e| io(format!("cannot read: {e}"), None))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(io(
            format!("the file is {} bytes long", meta.len()),
            Some(format!("at most {MAX_FILE_BYTES} bytes")),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| io(format!("cannot read: {e}"), None))?;
    parse_scenario(&file, &text, overrides, mocks)
}

#[cfg(test)]
mod tests;
