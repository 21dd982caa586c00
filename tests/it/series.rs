//! The time series beside `summary.json`: its rows add up to the run's own totals (responses, GC
//! pause time, pool acquisitions), follow a constant arrival rate, and sampling changes nothing
//! in the run; `firedrill run` writes `timeseries.csv` and `histograms/*.hdr`, byte-identical
//! across two runs, and the histograms read back to the summary's counts and p99s.

use crate::scenarios::{firedrill, fresh_out_dir};
use firedrill::api::node::NodeConfigBuilder;
use firedrill::api::throttle::Throttle;
use firedrill::api::types::{Api, ErrorCode, Status};
use firedrill::db::DbConfig;
use firedrill::gc::{GcProfile, HeapConfig};
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::metrics::series::{CSV_HEADER, TimeSeries};
use firedrill::report::hdr::{from_v2, histogram_files};
use firedrill::traffic::{ApiMix, OpenLoopConfig};
use firedrill::world::{Part, RunResult, Topology};
use serde_json::Value;
use std::path::Path;

/// DescribeInstanceStatus alone from 10 accounts at `rate_per_s`.
fn traffic(rate_per_s: f64, timeout: SimDuration) -> OpenLoopConfig {
    crate::core::traffic(
        rate_per_s,
        ApiMix::only(Api::DescribeInstanceStatus),
        10,
        timeout,
    )
}

fn unlimited() -> Throttle {
    crate::core::unlimited(10)
}

/// Two G1 nodes allocating 1 MiB per request at `RATE`/s for `SECS` s: young GCs every few
/// hundred milliseconds.
const RATE: f64 = 1_000.0;
const SECS: u64 = 20;

fn gc_topology() -> Topology {
    let node = NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::G1))
        .alloc_bytes(
            Api::DescribeInstanceStatus,
            Dist::constant(1024.0 * 1024.0).unwrap(),
        )
        .build()
        .unwrap();
    crate::core::topology(
        2,
        node,
        DbConfig::assumed_defaults(),
        traffic(RATE, SimDuration::from_secs(30)),
        unlimited(),
        SECS,
    )
}

fn series(r: &RunResult) -> &TimeSeries {
    r.series.as_ref().expect("sampling is on by default")
}

#[test]
fn rows_add_up_to_the_run_and_follow_the_arrival_rate() {
    let topo = gc_topology();
    let r = topo.run(RootSeed::new(7));
    assert!(r.ended_normally(), "{}", r.report.outcome);
    let s = series(&r);
    let rows = s.rows();
    assert_eq!(s.width(), SimDuration::from_secs(1));
    // Buckets tile [0, end]: 1 s each, the last one up to the run's end.
    let end = r.report.end_time;
    assert_eq!(rows.len() as u64, end.as_ns().div_ceil(1_000_000_000));
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.start, SimTime::from_ns(i as u64 * 1_000_000_000));
        let full = SimTime::from_ns((i as u64 + 1) * 1_000_000_000);
        assert_eq!(row.end, if i + 1 == rows.len() { end } else { full });
    }
    // Every response of the run is in exactly one bucket.
    assert_eq!(rows.iter().map(|x| x.requests).sum::<u64>(), r.requests());
    assert_eq!(
        rows.iter().map(|x| x.responses_5xx).sum::<u64>(),
        r.responses_5xx()
    );
    // Each full traffic bucket gets about RATE responses: Poisson, sd = sqrt(RATE).
    let sd = RATE.sqrt();
    for row in &rows[..SECS as usize] {
        assert!(
            (row.throughput_per_s() - RATE).abs() < 5.0 * sd,
            "{row:?} against {RATE}/s"
        );
        let p99 = row.latency_p99_ns.unwrap();
        assert!(row.latency_p50_ns.unwrap() <= p99);
    }
    // GC: the buckets' stop-the-world time adds up to the nodes' pause time, exactly.
    let paused: u64 = r.nodes.iter().map(|n| n.gc.total_paused_ns()).sum();
    assert!(paused > 0, "young GCs ran");
    assert_eq!(rows.iter().map(|x| x.gc_pause_ns).sum::<u64>(), paused);
    // About one young GC per node every 2 s: the pause time is spread over the run.
    let with_gc = rows.iter().filter(|x| x.gc_pause_ns > 0).count();
    assert!(with_gc >= 5, "{with_gc} buckets with GC");
    // No bucket can hold more pause time than its length on every node.
    for row in rows {
        assert!(row.gc_pause_ns <= 2 * row.end.saturating_since(row.start).as_ns());
    }
    // The database took every query the nodes sent in some bucket; no cache: no L1 column.
    assert_eq!(
        rows.iter().map(|x| x.db_queries).sum::<u64>(),
        r.db.served()
    );
    assert!(rows.iter().all(|x| x.l1_lookups.is_none()));
    // The CSV: the header, then one line per row, every line with 14 fields (feed_lag_ms_max
    // last, empty here: no binlog invalidation).
    let csv = s.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(CSV_HEADER.split(',').count(), 14);
    assert_eq!(lines.len(), rows.len() + 1);
    assert!(lines.iter().all(|l| l.split(',').count() == 14));
    assert!(lines[1..].iter().all(|l| l.ends_with(',')));
    assert!(lines[1].starts_with("0.000,"));
}

#[test]
fn sampling_changes_nothing_in_the_run() {
    let on = gc_topology().run(RootSeed::new(11));
    let off = gc_topology().with_series(false).run(RootSeed::new(11));
    assert!(off.series.is_none());
    assert_eq!(on.trace_hash(), off.trace_hash());
    assert_eq!(on.report.events, off.report.events);
    assert_eq!(on.report.end_time, off.report.end_time);
    assert_eq!(on.requests(), off.requests());
    // Driven in uneven steps (as the CLI's progress does), the series is the same too.
    let topo = gc_topology();
    let mut world = topo.build(RootSeed::new(11));
    let mut at = 0u64;
    let report = loop {
        at += 333_333_333;
        if let Some(r) = world.run_until(SimTime::from_ns(at)) {
            break r;
        }
    };
    let stepped = world.result(report, topo.duration());
    assert_eq!(stepped.trace_hash(), on.trace_hash());
    assert_eq!(series(&stepped).to_csv(), series(&on).to_csv());
}

/// One connection, 100 ms queries, 50 requests/s against a capacity of 10/s: most waits end at
/// the 50 ms acquire timeout. Every acquisition's wait lands in one bucket.
#[test]
fn pool_waits_count_every_acquisition() {
    let (node, db) = crate::core::one_connection_and_a_100ms_db();
    let topo = crate::core::topology(
        1,
        node,
        db,
        traffic(50.0, SimDuration::from_secs(30)),
        unlimited(),
        30,
    );
    let mut world = topo.build(RootSeed::new(6));
    let report = world.run();
    let Part::Node(n) = world.sim.component(world.nodes[0]) else {
        unreachable!()
    };
    let counts = *n.pool().counts();
    let r = world.result(report, topo.duration());
    let rows = series(&r).rows();
    let acquisitions: u64 = rows.iter().map(|x| x.pool_acquisitions).sum();
    assert_eq!(acquisitions, counts.granted + counts.timed_out);
    assert!(counts.timed_out > 0);
    assert_eq!(
        r.api(Api::DescribeInstanceStatus)
            .count(Status::Err(ErrorCode::InternalError)),
        counts.timed_out + counts.rejected
    );
    for row in &rows[1..25] {
        let p99 = row.pool_wait_p99_ns.unwrap();
        // Waits end at the timeout (50 ms, HDR precision 0.1 %) or earlier.
        assert!((49_900_000..=50_050_000).contains(&p99), "{row:?}");
        let mean = row.pool_wait_mean_ns.unwrap();
        assert!(mean > 10e6 && mean <= 50e6, "{row:?}");
    }
}

/// One worker, 10 ms of CPU per request, 200 requests/s: the accept queue (50) stays full, so
/// the depth sampled at every bucket end is 49 or 50.
#[test]
fn queue_depth_is_sampled_at_bucket_ends() {
    let node = NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::Off))
        .workers(1)
        .cores(1)
        .accept_queue(50)
        .cpu_all(Dist::constant(0.01).unwrap())
        .shed_expired(false)
        .build()
        .unwrap();
    let topo = crate::core::topology(
        1,
        node,
        DbConfig::assumed_defaults(),
        traffic(200.0, SimDuration::from_secs(60)),
        unlimited(),
        10,
    );
    let r = topo.run(RootSeed::new(2));
    let rows = series(&r).rows();
    for row in &rows[1..10] {
        assert!((49..=50).contains(&row.queue_depth), "{row:?}");
    }
    assert_eq!(rows.last().unwrap().queue_depth, 0, "drained at the end");
}

#[test]
fn histogram_files_read_back_to_the_runs_histograms() {
    let r = gc_topology().run(RootSeed::new(3));
    let files = histogram_files(&r);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["DescribeInstanceStatus.hdr", "all.hdr"]);
    let a = r.api(Api::DescribeInstanceStatus);
    for (_, bytes) in &files {
        let h = from_v2(bytes).unwrap();
        assert_eq!(h.len(), a.latency.count());
        assert_eq!(
            h.value_at_quantile(0.99),
            a.latency.hdr().value_at_quantile(0.99)
        );
        assert_eq!(
            h.value_at_quantile(0.99).min(a.latency.max_ns().unwrap()),
            a.latency.quantile_ns(0.99).unwrap()
        );
    }
}

fn ms(v: &Value) -> String {
    format!("{:.3}", v.as_f64().unwrap())
}

#[test]
fn run_writes_the_same_series_and_histograms_twice() {
    let mut outs = Vec::new();
    for k in 0..2 {
        let out = fresh_out_dir("series", &format!("gc-tuning-{k}"));
        let o = firedrill(&[
            "run",
            "scenarios/gc-tuning.toml",
            "--set",
            "duration=5s",
            "--set",
            "warmup=0s",
            "--quiet",
            "--out",
            &out.display().to_string(),
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{stdout}");
        assert!(stdout.contains(&format!(
            "timeseries: {}",
            out.join("timeseries.csv").display()
        )));
        assert!(stdout.contains(&format!("histograms: {}", out.join("histograms").display())));
        outs.push(out);
    }
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    let csv = String::from_utf8(read(&outs[0], "timeseries.csv")).unwrap();
    assert_eq!(
        csv,
        String::from_utf8(read(&outs[1], "timeseries.csv")).unwrap()
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], CSV_HEADER);
    // 5 s of traffic, then the run drains: one row per started second of simulated time.
    let summary: Value =
        serde_json::from_slice(&read(&outs[0], "summary.json")).expect("summary.json is JSON");
    let simulated = summary["simulated_s"].as_f64().unwrap();
    assert_eq!(lines.len() - 1, simulated.ceil() as usize, "{csv}");
    assert!(lines.len() > 5, "at least the 5 s of traffic");
    for (i, line) in lines[1..6].iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[0], format!("{i}.000"));
        assert!(fields[1].parse::<u64>().unwrap() > 1_000, "{line}");
    }
    let total: u64 = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(Value::from(total), summary["requests"]["total"]);
    // Histograms: byte-identical across runs; each reads back to the summary's count and p99.
    let mut names: Vec<String> = std::fs::read_dir(outs[0].join("histograms"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let apis = summary["apis"].as_object().unwrap();
    assert_eq!(names.len(), apis.len() + 1, "{names:?}");
    let mut all_count = 0;
    for name in &names {
        let bytes = read(&outs[0], &format!("histograms/{name}"));
        assert_eq!(
            bytes,
            read(&outs[1], &format!("histograms/{name}")),
            "{name}"
        );
        let h = from_v2(&bytes).unwrap();
        let Some(api) = name.strip_suffix(".hdr").and_then(|n| apis.get(n)) else {
            assert_eq!(name, "all.hdr");
            all_count = h.len();
            continue;
        };
        let lat = &api["latency_ms"];
        assert_eq!(Value::from(h.len()), lat["count"], "{name}");
        // The summary's p99 is the histogram's, capped at the exact max (not in V2).
        let q = h.value_at_quantile(0.99) as f64 / 1e6;
        let (p99, max) = (ms(&lat["p99"]), ms(&lat["max"]));
        assert!(
            p99 == format!("{q:.3}") || (p99 == max && q >= lat["max"].as_f64().unwrap() - 0.001),
            "{name}: p99 {p99}, file {q}, max {max}"
        );
    }
    assert_eq!(Value::from(all_count), summary["requests"]["total"]);
}
