//! `firedrill run`, `validate` and `list`: scenario files in, a summary table, `summary.json`,
//! `timeseries.csv` and `histograms/*.hdr` out; exit codes 0 ok, 1 SLOs failed, 2 bad input, 3 a
//! broken invariant or a safety bound.

use super::{CliError, EXIT_BAD_INPUT, EXIT_INVARIANT, EXIT_OK};
use crate::db::Table;
use crate::deps::parse::{load_mock_file, load_mocks_dir};
use crate::deps::spec::DependencySpec;
use crate::kernel::{Outcome, RootSeed, SimTime};
use crate::report::hdr::{DIR as HDR_DIR, histogram_files};
use crate::report::summary::{Wall, slo_checks, summary, write_atomic};
use crate::scenario::{Override, Scenario, load_scenario};
use crate::workflow::WorkflowKind;
use crate::world::{RunResult, shipped_mocks};
use clap::Args;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit code for a run whose SLOs or thresholds failed.
pub const EXIT_SLO_FAILED: u8 = 1;
/// Exit code for a run stopped by Ctrl-C (128 + SIGINT, the shell convention); its results are
/// written, marked partial.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Set by the Ctrl-C handler, read by the run loop between steps. The handler (a thread the
/// `ctrlc` crate owns) is installed once per process, at the CLI edge only.
fn interrupt_flag() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // If no handler can be installed, Ctrl-C keeps its default (immediate exit).
        let _ = ctrlc::set_handler(|| FLAG.store(true, Ordering::Relaxed));
    });
    &FLAG
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (see scenarios/README.md).
    pub scenario: PathBuf,
    /// The root seed (default: the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where results go (default: results/SCENARIO/seed-SEED/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overrides a scenario key, e.g. --set duration=300s --set topology.api.nodes=12.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// The folder of dependency mocks (default: ./mocks if present, else the shipped ones).
    #[arg(long)]
    pub mocks: Option<PathBuf>,
    /// No progress bar and no table: only the seed and where the results went.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Scenario or mock files (a file under a `mocks` folder, or with endpoint tables, is
    /// read as a mock).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Overrides a scenario key, as for `run`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// The seed a run would use (shown; default: each scenario's own).
    #[arg(long)]
    pub seed: Option<u64>,
    /// A results folder a run would write: checked to be creatable and writable.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub mocks: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The scenarios folder.
    #[arg(long, default_value = "scenarios")]
    pub scenarios: PathBuf,
    #[arg(long)]
    pub mocks: Option<PathBuf>,
}

pub(super) fn load_mocks(dir: Option<&Path>) -> Result<Vec<DependencySpec>, CliError> {
    match dir {
        Some(d) => load_mocks_dir(d).map_err(|e| CliError::BadInput(e.to_string())),
        None if Path::new("mocks").is_dir() => {
            load_mocks_dir("mocks").map_err(|e| CliError::BadInput(e.to_string()))
        }
        None => Ok(shipped_mocks()),
    }
}

pub(super) fn overrides(set: &[String]) -> Result<Vec<Override>, CliError> {
    set.iter()
        .map(|s| Override::parse(s).map_err(CliError::BadInput))
        .collect()
}

fn load(path: &Path, set: &[String], mocks_dir: Option<&Path>) -> Result<Scenario, CliError> {
    let mocks = load_mocks(mocks_dir)?;
    let o = overrides(set)?;
    load_scenario(path, &o, &mocks).map_err(|e| CliError::BadInput(e.to_string()))
}

fn fmt_ms(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".into(), |v| format!("{:.1}", v as f64 / 1e6))
}

/// Events shown before a broken invariant.
pub(super) const TRAIL: usize = 20;

/// Runs a scenario: see the module documentation.
pub fn run(args: &RunArgs) -> Result<u8, CliError> {
    let scenario = load(&args.scenario, &args.set, args.mocks.as_deref())?;
    let seed = args.seed.unwrap_or(scenario.seed());
    // The handler is in place before the seed is printed: a Ctrl-C from then on is clean.
    let interrupted = interrupt_flag();
    println!("seed: {seed}");
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results")
            .join(scenario.name())
            .join(format!("seed-{seed}"))
    });
    let topo = scenario.topology();
    let mut world = topo.build(RootSeed::new(seed));
    let progress = !args.quiet && std::io::stderr().is_terminal();
    // The wall clock measures the tool, never the simulation: it only feeds the progress line
    // and the summary's `wall` section.
    #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
    let started = std::time::Instant::now();
    let end = SimTime::ZERO.saturating_add(scenario.duration());
    let warmup_end = SimTime::ZERO.saturating_add(scenario.warmup());
    let mut warmed = scenario.warmup().is_zero();
    let step = scenario.duration().as_ns() / 100;
    let mut report = None;
    let mut k = 1u64;
    while report.is_none() {
        if interrupted.load(Ordering::Relaxed) {
            // Ctrl-C: stop between events and report what was measured, marked partial.
            report = Some(world.sim.interrupted_report());
            break;
        }
        // Steps of 1% of the traffic's duration, on through the drain, so Ctrl-C is seen often.
        let next = if k <= 100 {
            SimTime::from_ns(step.max(1).saturating_mul(k)).min(end)
        } else {
            SimTime::from_ns(step.max(1).saturating_mul(k))
        };
        let stop = if !warmed { next.min(warmup_end) } else { next };
        report = world.run_until(stop);
        if !warmed && world.sim.now() <= warmup_end && report.is_none() && stop == warmup_end {
            world.sim.metrics_mut().reset_values();
            warmed = true;
            continue;
        }
        if progress && k <= 100 {
            let wall = started.elapsed().as_secs_f64().max(1e-9);
            let sim_s = world.sim.now().as_secs_f64();
            eprint!(
                "\r[{:<25}] {:>3}%  sim {:.0}s/{:.0}s  {:.2}M events/s  {:.0}x real time ",
                "#".repeat((k / 4) as usize),
                k,
                sim_s,
                scenario.duration().as_secs_f64(),
                world.sim.events_processed() as f64 / wall / 1e6,
                sim_s / wall
            );
        }
        k += 1;
    }
    let report = report.expect("the loop ends with a report");
    if progress {
        eprintln!();
    }
    let wall = started.elapsed().as_secs_f64();
    let result = world.result(report, topo.duration());
    let partial = matches!(result.report.outcome, Outcome::Interrupted { .. });
    let json = summary(
        &scenario,
        seed,
        &result,
        partial,
        Some(Wall { seconds: wall }),
    );
    let write = |path: &Path, bytes: &[u8]| {
        write_atomic(path, bytes)
            .map_err(|e| CliError::BadInput(format!("cannot write {}: {e}", path.display())))
    };
    let path = out.join("summary.json");
    write(&path, json.to_pretty().as_bytes())?;
    let series_path = out.join("timeseries.csv");
    if let Some(series) = &result.series {
        write(&series_path, series.to_csv().as_bytes())?;
    }
    let hdr_dir = out.join(HDR_DIR);
    let hdr_files = histogram_files(&result);
    for (name, bytes) in &hdr_files {
        write(&hdr_dir.join(name), bytes)?;
    }
    let checks = slo_checks(&scenario, &result);
    if !args.quiet {
        println!(
            "{} · {} simulated · {} events · {:.2}s wall · trace {}",
            scenario.name(),
            result.report.end_time,
            result.report.events,
            wall,
            result.trace_hash()
        );
        // Latency counts every answer, 4XX included: a throttled call answered at once is a
        // 0 ms sample, so the 4xx% column says how much of a distribution that is.
        println!(
            "{:<24} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "api", "requests", "4xx%", "5xx%", "p50 ms", "p99 ms", "p999 ms", "max ms"
        );
        for a in result.apis.iter().filter(|a| a.requests > 0) {
            let h = &a.latency;
            println!(
                "{:<24} {:>10} {:>8.3} {:>8.3} {:>9} {:>9} {:>9} {:>9}",
                a.api.name(),
                a.requests,
                100.0 * a.count_4xx() as f64 / a.requests as f64,
                100.0 * a.count_5xx() as f64 / a.requests as f64,
                fmt_ms(h.quantile_ns(0.5)),
                fmt_ms(h.quantile_ns(0.99)),
                fmt_ms(h.quantile_ns(0.999)),
                fmt_ms(h.max_ns()),
            );
        }
        let all_4xx: u64 = result.apis.iter().map(|a| a.count_4xx()).sum();
        println!(
            "{:<24} {:>10} {:>8.3} {:>8.3}",
            "all",
            result.requests(),
            100.0 * all_4xx as f64 / result.requests().max(1) as f64,
            100.0 * result.rate_5xx()
        );
        print_workflows_and_cleanup(&result);
        for c in &checks {
            println!(
                "slo {:<28} target {:>10.3}  measured {:>10}  {}",
                c.name,
                c.target,
                c.measured.map_or("-".into(), |m| format!("{m:.3}")),
                if c.met { "ok" } else { "FAILED" }
            );
        }
    }
    for (a, o) in &result.scoped_accounts {
        println!(
            "account {:<6} (faults scoped to it) answered {:>9}  5xx {:>7.3}%  mean {:>9.1} ms",
            a.0,
            o.answered,
            100.0 * o.rate_5xx(),
            o.mean_latency_ns() / 1e6
        );
    }
    if let Some(o) = &result.other_accounts {
        println!(
            "accounts, all others              answered {:>9}  5xx {:>7.3}%  mean {:>9.1} ms",
            o.answered,
            100.0 * o.rate_5xx(),
            o.mean_latency_ns() / 1e6
        );
    }
    if let Some(g) = &result.gameday {
        for f in &g.firings {
            let rule = &g.config.alerts[f.alert];
            println!(
                "alert {:<20} names {:<12} fired {}  resolved {}",
                rule.name,
                rule.component,
                f.fired_at,
                f.resolved_at.map_or("-".into(), |t| t.to_string())
            );
        }
        for a in &g.actions {
            println!(
                "runbook {} at {}: {}",
                g.config.runbook[a.step].action.name(),
                a.at,
                a.note
            );
        }
        for t in &g.timelines {
            println!("1-5-10 {t}");
        }
    }
    println!("results: {}", path.display());
    if result.series.is_some() {
        println!("timeseries: {}", series_path.display());
    }
    println!(
        "histograms: {} ({})",
        hdr_dir.display(),
        hdr_files
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let replay = format!(
        "firedrill run {} --seed {seed}{}",
        args.scenario.display(),
        args.set
            .iter()
            .map(|s| format!(" --set {s}"))
            .collect::<String>()
    );
    match &result.report.outcome {
        Outcome::Interrupted { at } => {
            eprintln!(
                "interrupted at {at}: the results are partial (summary.json: \"partial\": true)"
            );
            return Ok(EXIT_INTERRUPTED);
        }
        Outcome::InvariantViolated { at, message, .. } => {
            eprintln!("invariant violated at {at} (seed {seed}): {message}");
            eprintln!("replay: {replay}");
            return Ok(EXIT_INVARIANT);
        }
        Outcome::EventLimit { .. } | Outcome::PendingLimit { .. } => {
            eprintln!(
                "the run hit a safety bound ({}); replay: {replay}",
                result.report.outcome.label()
            );
            return Ok(EXIT_INVARIANT);
        }
        _ => {}
    }
    if !result.violations.is_empty() {
        for v in &result.violations {
            eprintln!("{v} (seed {seed})");
        }
        let first = &result.violations[0];
        eprintln!(
            "the events that led to it (the last {TRAIL} up to {}):",
            first.at
        );
        for e in topo.trail(RootSeed::new(seed), first.at, TRAIL) {
            eprintln!("  {e}");
        }
        eprintln!("replay: {replay}");
        return Ok(EXIT_INVARIANT);
    }
    if checks.iter().any(|c| !c.met) {
        return Ok(EXIT_SLO_FAILED);
    }
    Ok(EXIT_OK)
}

fn is_mock(path: &Path, text: &str) -> bool {
    path.components().any(|c| c.as_os_str() == "mocks") || text.contains("[[endpoint]]")
}

/// Checks files without running them: every problem of every file, exit 0 or 2.
pub fn validate(args: &ValidateArgs) -> Result<u8, CliError> {
    let mocks = load_mocks(args.mocks.as_deref())?;
    let o = overrides(&args.set)?;
    let mut bad = 0;
    if let Some(out) = &args.out {
        let probe = out.join(".firedrill-validate");
        let writable = std::fs::create_dir_all(out)
            .and_then(|()| std::fs::write(&probe, b""))
            .and_then(|()| std::fs::remove_file(&probe));
        if let Err(e) = writable {
            bad += 1;
            eprintln!("--out {}: cannot write results there: {e}", out.display());
        }
    }
    for f in &args.files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let outcome = if is_mock(f, &text) {
            load_mock_file(f)
                .map(|m| format!("mock {}", m.name()))
                .map_err(|e| e.to_string())
        } else {
            load_scenario(f, &o, &mocks)
                .map(|s| {
                    format!(
                        "scenario {}, seed {}",
                        s.name(),
                        args.seed.unwrap_or(s.seed())
                    )
                })
                .map_err(|e| e.to_string())
        };
        match outcome {
            Ok(what) => println!("ok: {} ({what})", f.display()),
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    Ok(if bad == 0 { EXIT_OK } else { EXIT_BAD_INPUT })
}

/// The distributions `list` shows, each as a short form that parses (tested).
const DIST_EXAMPLES: [(&str, &str); 7] = [
    ("const:5ms", "always 5 ms"),
    ("uniform:1ms:10ms", "uniform between 1 and 10 ms"),
    ("exp:20ms", "exponential, mean 20 ms (Poisson arrivals)"),
    (
        "normal:10ms:2ms",
        "normal, mean 10 ms, sd 2 ms (clamped at 0)",
    ),
    ("lognormal_p:8ms:60ms", "lognormal by its p50 and p99"),
    (
        "pareto:1ms:2.5",
        "Pareto, scale 1 ms, shape 2.5 (heavy tail)",
    ),
    (
        "zipf:10000:1.1",
        "Zipf over 1..10000, exponent 1.1 (skewed tenants)",
    ),
];

/// Shows the shipped scenarios, distributions and dependency mocks.
pub fn list(args: &ListArgs) -> Result<u8, CliError> {
    let mocks_list = load_mocks(args.mocks.as_deref())?;
    println!("scenarios ({}):", args.scenarios.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.scenarios)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for f in &files {
        match load_scenario(f, &[], &mocks_list) {
            Ok(s) => println!(
                "  {:<28} {}",
                s.name(),
                s.description().lines().next().unwrap_or("")
            ),
            Err(_) => println!(
                "  {:<28} (does not validate: run `firedrill validate {}`)",
                f.display(),
                f.display()
            ),
        }
    }
    println!("distributions (short form, seconds unless a unit is given):");
    for (d, what) in DIST_EXAMPLES {
        println!("  {d:<24} {what}");
    }
    println!("dependency mocks:");
    for m in &mocks_list {
        println!(
            "  {:<16} {:<14} {}",
            m.name(),
            m.kind().name(),
            m.description().lines().next().unwrap_or("")
        );
    }
    Ok(EXIT_OK)
}

/// The run table's lines for the workflow engine (per kind: counts, p99 end to end, and the
/// step and error code most of its failures had) and the cleanup job (rows archived, rows left).
fn print_workflows_and_cleanup(result: &RunResult) {
    if let Some(w) = &result.workflows {
        for k in WorkflowKind::ALL
            .iter()
            .filter(|k| w.admitted[k.index()] > 0)
        {
            let i = k.index();
            let top = w.steps[i]
                .iter()
                .flat_map(|st| st.failure_codes.iter().map(move |(c, n)| (*n, st.name, *c)))
                .max_by_key(|(n, _, _)| *n);
            println!(
                "workflow {:<16} admitted {:>8}  completed {:>8}  failed {:>8}  p99 {:>9} ms{}",
                k.name(),
                w.admitted[i],
                w.completed[i],
                w.failed[i],
                fmt_ms(w.e2e[i].quantile_ns(0.99)),
                top.map_or(String::new(), |(n, step, code)| format!(
                    "  most failed at {step}: {} ×{n}",
                    code.name()
                ))
            );
        }
        if w.children > 0 || w.rejected > 0 {
            // `admitted` counts commands; `completed` and `failed` count sub-workflows too.
            println!(
                "workflow engine: {} sub-workflows (in completed and failed above), {} commands rejected at admission, {} answered with the refusal ({} of their instances failed, {} left Pending)",
                w.children,
                w.rejected,
                result.node_counter("wf_refused"),
                w.refused_rows_failed,
                w.refused_rows_left
            );
        }
    }
    if let Some(c) = &result.cleanup {
        let tables = |v: &[u64]| {
            Table::ALL
                .iter()
                .filter(|t| **t != Table::Instances)
                .map(|t| format!("{} {}", t.name(), v[t.index()]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "cleanup {} runs, archived: {}; rows at the end: {}",
            c.runs,
            tables(&c.rows_archived),
            tables(&result.table_rows_end)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::DIST_EXAMPLES;
    use crate::kernel::Dist;

    #[test]
    fn every_listed_distribution_parses() {
        for (d, _) in DIST_EXAMPLES {
            assert!(d.parse::<Dist>().is_ok(), "`{d}` does not parse");
        }
    }
}
