//! `firedrill chaos`: swarm runs over a range of seeds, each with a random fault plan, judged by
//! the invariants; failures are shrunk to minimal standalone reproductions. `firedrill replay`:
//! runs such a reproduction and checks it reproduces bit for bit.
//!
//! Seeds run in parallel on `--jobs` threads (each run stays single-threaded and
//! deterministic); the table is printed in seed order once all are done, so the same seeds
//! print the same table whatever the thread count. Wall-clock figures go to stderr only.

use super::run::{load_mocks, overrides};
use super::{CliError, EXIT_INVARIANT, EXIT_OK};
use crate::chaos::repro::repro_text;
use crate::chaos::shrink::{Shrunk, shrink};
use crate::chaos::swarm::{SeedRun, allowed_kinds, run_seed};
use crate::kernel::RootSeed;
use crate::scenario::{Override, Scenario, load_scenario, parse_scenario};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Exit code of `replay` when the run diverged from the file's `[expect]`.
pub const EXIT_DIVERGED: u8 = 1;

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// The scenario file; its `[chaos]` table bounds the faults drawn.
    pub scenario: PathBuf,
    /// Seeds to run, both ends included: `1..200` is 200 seeds.
    #[arg(long, value_name = "A..B")]
    pub seeds: String,
    /// Seeds run at once (default: the machine's cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Overrides a scenario key, as for `run`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// The folder of dependency mocks (default: ./mocks if present, else the shipped ones).
    #[arg(long)]
    pub mocks: Option<PathBuf>,
    /// Where reproductions go (default: results/chaos/SCENARIO/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Report failures without shrinking them.
    #[arg(long)]
    pub no_shrink: bool,
    /// Runs spent shrinking each failure at most.
    #[arg(long, default_value_t = 150)]
    pub shrink_budget: u32,
    /// Also print one line per seed: its faults, requests, 5XX share, outcome and trace hash.
    #[arg(long)]
    pub list: bool,
}

/// A digest of the seeds' trace hashes in seed order: one line that tells whether two swarms
/// ran the very same simulations (whatever `--jobs`).
pub fn swarm_trace(runs: &[SeedRun]) -> String {
    let d = runs.iter().fold(0u64, |d, r| {
        crate::kernel::rng::mix_label(d ^ r.seed, &r.trace_hash)
    });
    format!("{d:016x}")
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A reproduction file written by `firedrill chaos` (any scenario file runs; its
    /// `[expect]` table, when present, is checked).
    pub file: PathBuf,
    /// The folder of dependency mocks (default: ./mocks if present, else the shipped ones).
    #[arg(long)]
    pub mocks: Option<PathBuf>,
}

/// Reads `A..B` (both included).
fn seed_range(s: &str) -> Result<(u64, u64), CliError> {
    let bad = || {
        CliError::BadInput(format!(
            "--seeds {s}: expected A..B with A <= B, e.g. --seeds 1..200"
        ))
    };
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let b = b.strip_prefix('=').unwrap_or(b);
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a > b || b - a >= 1_000_000 {
        return Err(bad());
    }
    Ok((a, b))
}

/// Runs `f` over `items` on `jobs` threads; results in the items' order.
fn parallel<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    // Threads at the CLI edge only: each run is one thread and a pure function of its seed;
    // results are put back in item order below, so the output does not depend on scheduling.
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    out.lock()
                        .expect("no worker panics holding it")
                        .push((i, r));
                }
            });
        }
    });
    let mut v = out.into_inner().expect("no worker panicked");
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}

fn kinds_of(run: &SeedRun) -> String {
    let v: Vec<String> = run
        .plan
        .faults()
        .iter()
        .map(|f| format!("{}@{}", f.kind().name(), f.target()))
        .collect();
    v.join(",")
}

/// Writes the reproduction of `shrunk` and checks that the file itself reproduces the failure;
/// returns its path and trace hash.
fn write_repro(
    args: &ChaosArgs,
    o: &[Override],
    mocks: &[crate::deps::DependencySpec],
    dir: &Path,
    shrunk: &Shrunk,
    original_rate: f64,
) -> Result<PathBuf, CliError> {
    let text = repro_text(&args.scenario, o, shrunk, original_rate)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    let path = dir.join(format!("seed-{}.toml", shrunk.run.seed));
    // The file is the reproduction: run it as `replay` will, and record what it does.
    let file_name = path.display().to_string();
    let s = parse_scenario(&file_name, &text, &[], mocks)
        .map_err(|e| CliError::BadInput(format!("the reproduction does not read back: {e}")))?;
    let r = s.topology().run(RootSeed::new(s.seed()));
    let hash = r.trace_hash().to_string();
    let failure = r.violations.first().map(|v| v.invariant.name().to_string());
    if hash != shrunk.run.trace_hash || failure != shrunk.run.failure() {
        return Err(CliError::BadInput(format!(
            "the reproduction of seed {} does not reproduce through its file (trace {hash} and {:?}, expected {} and {:?}): a bug of the shrinker, please report it",
            shrunk.run.seed,
            failure,
            shrunk.run.trace_hash,
            shrunk.run.failure()
        )));
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::report::summary::write_atomic(&path, text.as_bytes()))
        .map_err(|e| CliError::BadInput(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// `firedrill chaos`: see the module documentation. Exit 0 when no seed failed, 3 otherwise.
pub fn chaos(args: &ChaosArgs) -> Result<u8, CliError> {
    let mocks = load_mocks(args.mocks.as_deref())?;
    let o = overrides(&args.set)?;
    let scenario: Scenario =
        load_scenario(&args.scenario, &o, &mocks).map_err(|e| CliError::BadInput(e.to_string()))?;
    let (a, b) = seed_range(&args.seeds)?;
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(std::num::NonZeroUsize::get)
            .unwrap_or(1)
    });
    // The scenario's own faults are replaced by each seed's drawn plan.
    let topo = scenario
        .topology()
        .clone()
        .with_faults(crate::faults::FaultPlan::default())
        .expect("an empty plan");
    let cfg = scenario.chaos();
    let kinds = allowed_kinds(&topo, cfg);
    println!(
        "chaos: {} · seeds {a}..{b} · up to {} faults from {} kinds · quiet {}",
        scenario.name(),
        cfg.max_faults(),
        kinds.len(),
        cfg.quiet()
    );
    #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
    let started = std::time::Instant::now();
    let seeds: Vec<u64> = (a..=b).collect();
    let runs = parallel(&seeds, jobs, |&s| run_seed(&topo, cfg, s));
    let failing: Vec<&SeedRun> = runs.iter().filter(|r| r.failure().is_some()).collect();
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results/chaos").join(scenario.name()));
    let shrunk: Vec<Option<Shrunk>> = if args.no_shrink {
        failing.iter().map(|_| None).collect()
    } else {
        parallel(&failing, jobs, |r| {
            Some(shrink(&topo, r, cfg.quiet(), args.shrink_budget))
        })
    };
    let faults_total: usize = runs.iter().map(|r| r.plan.len()).sum();
    println!(
        "{} seeds run, {} faults injected, {} failed",
        runs.len(),
        faults_total,
        failing.len()
    );
    println!(
        "swarm trace {} (the seeds' trace hashes, in seed order)",
        swarm_trace(&runs)
    );
    if args.list {
        println!(
            "{:<8} {:>6} {:>10} {:>7}  {:<14} trace",
            "seed", "faults", "requests", "5xx%", "outcome"
        );
        for r in &runs {
            println!(
                "{:<8} {:>6} {:>10} {:>7.3}  {:<14} {}",
                r.seed,
                r.plan.len(),
                r.requests,
                r.rate_5xx * 100.0,
                r.failure().unwrap_or_else(|| r.outcome.to_string()),
                r.trace_hash
            );
        }
    }
    if !failing.is_empty() {
        println!(
            "{:<8} {:<24} {:>6} {:>6}  replay",
            "seed", "broken", "faults", "min"
        );
    }
    for (r, s) in failing.iter().zip(&shrunk) {
        let failure = r.failure().unwrap_or_default();
        let (min, replay) = match s {
            Some(s) => {
                let path = write_repro(args, &o, &mocks, &dir, s, topo.rate())?;
                (
                    s.plan.len().to_string(),
                    format!("firedrill replay {}", path.display()),
                )
            }
            None => (
                "-".into(),
                format!(
                    "firedrill chaos {} --seeds {}..{}{}",
                    args.scenario.display(),
                    r.seed,
                    r.seed,
                    args.set
                        .iter()
                        .map(|x| format!(" --set {x}"))
                        .collect::<String>()
                ),
            ),
        };
        println!(
            "{:<8} {:<24} {:>6} {:>6}  {}",
            r.seed,
            failure,
            r.plan.len(),
            min,
            replay
        );
        if let Some(v) = r.violations.first() {
            println!("         {v}");
        }
        println!("         faults: {}", kinds_of(r));
    }
    eprintln!(
        "wall: {:.1}s on {jobs} jobs",
        started.elapsed().as_secs_f64()
    );
    Ok(if failing.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVARIANT
    })
}

/// `firedrill replay`: runs a (reproduction) scenario under its own seed; exit 0 when it
/// reproduces its `[expect]` exactly (same trace hash and invariant), 1 when it diverged; a
/// file without `[expect]` exits as `run` would on its invariants (0 or 3).
pub fn replay(args: &ReplayArgs) -> Result<u8, CliError> {
    let mocks = load_mocks(args.mocks.as_deref())?;
    let s =
        load_scenario(&args.file, &[], &mocks).map_err(|e| CliError::BadInput(e.to_string()))?;
    println!("seed: {}", s.seed());
    let r = s.topology().run(RootSeed::new(s.seed()));
    let hash = r.trace_hash().to_string();
    println!(
        "{} · {} simulated · {} events · outcome {} · trace {hash}",
        s.name(),
        r.report.end_time,
        r.report.events,
        r.report.outcome.label()
    );
    for v in &r.violations {
        println!("{v}");
    }
    if let Some(v) = r.violations.first() {
        println!(
            "the events that led to it (the last {} up to {}):",
            super::run::TRAIL,
            v.at
        );
        for e in s
            .topology()
            .trail(RootSeed::new(s.seed()), v.at, super::run::TRAIL)
        {
            println!("  {e}");
        }
    }
    let Some(e) = s.expect() else {
        return Ok(if r.violations.is_empty() {
            EXIT_OK
        } else {
            EXIT_INVARIANT
        });
    };
    let invariant = r.violations.first().map(|v| v.invariant);
    let same_hash = e.trace_hash == hash;
    let same_invariant = e.invariant == invariant;
    if same_hash && same_invariant {
        println!(
            "reproduced: trace {hash} and {} as expected",
            invariant.map_or("no violation".to_string(), |i| format!("{i} violated"))
        );
        Ok(EXIT_OK)
    } else {
        println!(
            "diverged: expected trace {} and {}, got trace {hash} and {}",
            e.trace_hash,
            e.invariant.map_or("no violation".into(), |i| i.to_string()),
            invariant.map_or("no violation".into(), |i| i.to_string())
        );
        Ok(EXIT_DIVERGED)
    }
}
