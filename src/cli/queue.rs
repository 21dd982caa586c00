//! `firedrill queue`: simulate a station and print the analytic answer beside it.

use super::{CliError, EXIT_INVARIANT, EXIT_OK};
use crate::analytic::{Mg1, Mmc, Mmck};
use crate::kernel::{Dist, Outcome, RootSeed};
use crate::report::Json;
use crate::station::{StationConfig, StationResult, run_station};

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// Poisson arrival rate λ, customers per second.
    #[arg(long, value_parser = positive_f64)]
    arrival_rate: f64,
    /// Service time distribution, in seconds: `exp:MEAN`, `det:VALUE`, `lognormal:MEAN:CS2`
    /// (or any firedrill distribution, e.g. `h2:MEAN:CS2`, `uniform:LO:HI`).
    #[arg(long, value_parser = parse_dist)]
    service: Dist,
    /// Number of servers c.
    #[arg(long)]
    servers: u32,
    /// Most customers in the system K (in service + waiting); arrivals beyond it are rejected.
    /// Unbounded when absent.
    #[arg(long)]
    capacity: Option<u64>,
    /// Number of arriving customers N.
    #[arg(long)]
    customers: u64,
    /// Root seed of the run.
    #[arg(long)]
    seed: u64,
    /// Fraction of the first completions (and arrivals, for blocking) not recorded.
    #[arg(long, default_value_t = 0.01)]
    warmup_fraction: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be a finite number > 0, got {s}"))
    }
}

fn parse_dist(s: &str) -> Result<Dist, String> {
    s.parse::<Dist>().map_err(|e| e.to_string())
}

/// Kendall notation of the experiment: M/M/8, M/M/8/16, M/D/1, M/G/1.
fn kendall(service: &Dist, servers: u32, capacity: Option<u64>) -> String {
    let s = if service.is_exponential() {
        "M"
    } else if service.is_constant() {
        "D"
    } else {
        "G"
    };
    match capacity {
        Some(k) => format!("M/{s}/{servers}/{k}"),
        None => format!("M/{s}/{servers}"),
    }
}

/// The exact answer where a formula exists, or why there is none.
fn analytic(args: &QueueArgs) -> Result<Json, String> {
    let mean_s = args
        .service
        .mean()
        .ok_or("the service distribution has no finite mean")?;
    let mu = 1.0 / mean_s;
    let lam = args.arrival_rate;
    let model = kendall(&args.service, args.servers, args.capacity);
    let t = |x: f64| Json::num(x, 9);
    if args.service.is_exponential() {
        match args.capacity {
            None => {
                let m = Mmc::new(args.servers, lam, mu).ok_or(
                    "unstable (ρ ≥ 1) with an unbounded queue: the queue grows without limit",
                )?;
                Ok(Json::obj([
                    ("model", Json::str(model)),
                    ("mean_response_s", t(m.mean_response)),
                    ("p50_response_s", t(m.response_quantile(0.50))),
                    ("p90_response_s", t(m.response_quantile(0.90))),
                    ("p99_response_s", t(m.response_quantile(0.99))),
                    ("p999_response_s", t(m.response_quantile(0.999))),
                    ("blocking_probability", t(0.0)),
                    ("utilization", t(m.utilization)),
                ]))
            }
            Some(k) => {
                let k =
                    u32::try_from(k).map_err(|_| "capacity too large for the M/M/c/K formula")?;
                let m = Mmck::new(args.servers, k, lam, mu)
                    .ok_or("no M/M/c/K solution for these parameters")?;
                Ok(Json::obj([
                    ("model", Json::str(model)),
                    ("mean_response_s", t(m.mean_response)),
                    ("p50_response_s", t(m.response_quantile(0.50))),
                    ("p90_response_s", t(m.response_quantile(0.90))),
                    ("p99_response_s", t(m.response_quantile(0.99))),
                    ("p999_response_s", t(m.response_quantile(0.999))),
                    ("blocking_probability", t(m.p_block)),
                    ("utilization", t(m.utilization)),
                ]))
            }
        }
    } else if args.servers == 1 && args.capacity.is_none() {
        let cs2 = args
            .service
            .cs2()
            .ok_or("the service distribution has no finite variance")?;
        let m = Mg1::new(lam, mean_s, cs2).ok_or("unstable (ρ ≥ 1) with an unbounded queue")?;
        Ok(Json::obj([
            ("model", Json::str(model)),
            ("mean_response_s", t(m.mean_response)),
            ("p50_response_s", Json::Null),
            ("p90_response_s", Json::Null),
            ("p99_response_s", Json::Null),
            ("p999_response_s", Json::Null),
            ("blocking_probability", t(0.0)),
            ("utilization", t(m.utilization)),
        ]))
    } else {
        Err(format!(
            "no exact formula for {model}: only M/M/c, M/M/c/K and M/G/1 have one here"
        ))
    }
}

/// The result document of `firedrill queue --json`: sorted keys, fixed precision. Wall-clock
/// figures (`wall_s`, `customers_per_s`, `events_per_s`) are the only fields that differ between
/// two runs of the same arguments.
pub fn result_json(args: &QueueArgs, r: &StationResult, wall_s: f64) -> Json {
    let h = &r.response;
    let q = |p: f64| Json::opt_num(h.quantile_ns(p).map(|v| v as f64 * 1e-9), 9);
    let (analytic, note) = match analytic(args) {
        Ok(j) => (j, Json::Null),
        Err(why) => (Json::Null, Json::str(why)),
    };
    let mean_s = args.service.mean();
    Json::obj([
        ("arrival_rate", Json::num(args.arrival_rate, 6)),
        ("service", Json::str(args.service.to_string())),
        ("servers", Json::int(args.servers)),
        ("capacity", args.capacity.map_or(Json::Null, Json::int)),
        ("seed", Json::int(args.seed)),
        ("warmup_fraction", Json::num(args.warmup_fraction, 6)),
        (
            "model",
            Json::str(kendall(&args.service, args.servers, args.capacity)),
        ),
        (
            "offered_utilization",
            Json::opt_num(
                mean_s.map(|m| args.arrival_rate * m / f64::from(args.servers)),
                9,
            ),
        ),
        ("customers", Json::int(args.customers)),
        ("arrivals", Json::int(r.counts.arrivals)),
        ("completions", Json::int(r.counts.completions)),
        ("recorded", Json::int(h.count())),
        ("rejected", Json::int(r.counts.rejected)),
        (
            "blocking_probability",
            Json::num(r.blocking_probability(), 9),
        ),
        (
            "mean_response_s",
            Json::opt_num(h.mean_ns().map(|v| v * 1e-9), 9),
        ),
        ("p50_response_s", q(0.50)),
        ("p90_response_s", q(0.90)),
        ("p99_response_s", q(0.99)),
        ("p999_response_s", q(0.999)),
        (
            "max_response_s",
            Json::opt_num(h.max_ns().map(|v| v as f64 * 1e-9), 9),
        ),
        ("utilization", Json::num(r.utilization(), 9)),
        ("events", Json::int(r.report.events)),
        ("simulated_s", Json::num(r.report.end_time.as_secs_f64(), 9)),
        ("outcome", Json::str(r.report.outcome.label())),
        ("trace_hash", Json::str(r.report.trace_hash.to_string())),
        ("analytic", analytic),
        ("analytic_note", note),
        ("wall_s", Json::num(wall_s, 6)),
        (
            "customers_per_s",
            Json::num(args.customers as f64 / wall_s.max(1e-9), 0),
        ),
        (
            "events_per_s",
            Json::num(r.report.events as f64 / wall_s.max(1e-9), 0),
        ),
    ])
}

fn table(doc: &Json) -> String {
    let field = |j: Option<&Json>| match j {
        None | Some(Json::Null) => "—".to_string(),
        Some(Json::Num { value, .. }) => format!("{value:.6}"),
        Some(other) => other.to_compact().trim_matches('"').to_string(),
    };
    let g = |k: &str| field(doc.get(k));
    let a = |k: &str| field(doc.get("analytic").and_then(|a| a.get(k)));
    let mut s = String::new();
    s.push_str(&format!(
        "firedrill queue  {}  λ={}/s  service={}  offered ρ={}  seed={}\n",
        g("model"),
        g("arrival_rate"),
        g("service"),
        g("offered_utilization"),
        g("seed")
    ));
    s.push_str(&format!(
        "{:<22}{:>16}{:>16}\n",
        "", "simulated", "analytic"
    ));
    for (label, key) in [
        ("mean response (s)", "mean_response_s"),
        ("p50 response (s)", "p50_response_s"),
        ("p90 response (s)", "p90_response_s"),
        ("p99 response (s)", "p99_response_s"),
        ("p99.9 response (s)", "p999_response_s"),
        ("blocking probability", "blocking_probability"),
        ("utilization", "utilization"),
    ] {
        s.push_str(&format!("{label:<22}{:>16}{:>16}\n", g(key), a(key)));
    }
    s.push_str(&format!(
        "{:<22}{:>16}\n",
        "max response (s)",
        g("max_response_s")
    ));
    if let Some(Json::Str(note)) = doc.get("analytic_note") {
        s.push_str(&format!("analytic: {note}\n"));
    }
    s.push_str(&format!(
        "customers {}  rejected {}  recorded {}  events {}  simulated {} s  outcome {}\n",
        g("customers"),
        g("rejected"),
        g("recorded"),
        g("events"),
        g("simulated_s"),
        g("outcome")
    ));
    s.push_str(&format!("trace {}\n", g("trace_hash")));
    s.push_str(&format!(
        "wall {} s  ({} customers/s, {} events/s)\n",
        g("wall_s"),
        g("customers_per_s"),
        g("events_per_s")
    ));
    s
}

pub fn run(args: &QueueArgs) -> Result<u8, CliError> {
    let inter_arrival = Dist::exponential(1.0 / args.arrival_rate)
        .map_err(|e| CliError::BadInput(format!("--arrival-rate: {e}")))?;
    let cfg = StationConfig::new(
        inter_arrival,
        args.service.clone(),
        args.servers,
        args.capacity,
        args.customers,
        args.warmup_fraction,
    )
    .map_err(|e| CliError::BadInput(e.to_string()))?;
    if !args.json {
        println!("seed {}", args.seed);
    }
    // Wall-clock time is measured here, at the edge, only to report speed; it never enters the
    // simulation and is kept apart from the deterministic fields.
    #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
    let started = std::time::Instant::now();
    let result = run_station(&cfg, RootSeed::new(args.seed));
    let wall_s = started.elapsed().as_secs_f64();
    let doc = result_json(args, &result, wall_s);
    if args.json {
        println!("{}", doc.to_pretty());
    } else {
        print!("{}", table(&doc));
    }
    match &result.report.outcome {
        Outcome::Drained => Ok(EXIT_OK),
        other => {
            eprintln!(
                "error: the run ended early: {other}. This is a bug; reproduce with: firedrill queue {}",
                reproduce_args(args)
            );
            Ok(EXIT_INVARIANT)
        }
    }
}

fn reproduce_args(a: &QueueArgs) -> String {
    let mut s = format!(
        "--arrival-rate {} --service {} --servers {} --customers {} --seed {} --warmup-fraction {}",
        a.arrival_rate, a.service, a.servers, a.customers, a.seed, a.warmup_fraction
    );
    if let Some(k) = a.capacity {
        s.push_str(&format!(" --capacity {k}"));
    }
    s
}
