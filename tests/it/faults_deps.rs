//! Dependency faults and network partitions end to end: each fault moves the metric it targets
//! by the amount its parameters say, only on its target, only inside its window.

use crate::core::{heap, quiet_deps, run_checked, topology, traffic, unlimited};
use firedrill::api::node::NodeConfigBuilder;
use firedrill::api::types::{Api, ErrorCode, Status};
use firedrill::db::DbConfig;
use firedrill::deps::{DependencyStats, FaultCode};
use firedrill::faults::{Fault, FaultKind, FaultPlan, Target};
use firedrill::gc::GcProfile;
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::traffic::ApiMix;
use firedrill::workflow::EngineConfig;
use firedrill::world::{RunResult, Topology, WorkflowSetup, World};

const SECS: u64 = 60;

fn secs(n: u64) -> SimDuration {
    SimDuration::from_secs(n)
}
fn at(n: u64) -> SimTime {
    SimTime::ZERO + secs(n)
}

/// `nodes` API nodes serving RunInstances at `rate` per second for 60 s (image, then
/// inventory), optionally through workflows (one by one: every dependency, count 1).
fn topo(nodes: u32, rate: f64, workflows: bool) -> Topology {
    let node = NodeConfigBuilder::new(heap(GcProfile::Off))
        .build()
        .unwrap();
    let t = traffic(rate, ApiMix::only(Api::RunInstances), 3, secs(120));
    let topo = topology(
        nodes,
        node,
        DbConfig::assumed_defaults(),
        t,
        unlimited(3),
        SECS,
    );
    if workflows {
        topo.with_workflows(WorkflowSetup {
            engine: EngineConfig::builder().build().unwrap(),
            batch: false,
        })
        .unwrap()
    } else {
        topo
    }
}

fn dep_target(name: &str, endpoint: Option<&str>) -> Target {
    Target::Dependency {
        name: name.to_string(),
        endpoint: endpoint.map(str::to_string),
    }
}

fn with(topo: &Topology, faults: Vec<Fault>) -> Topology {
    topo.clone().with_faults(FaultPlan::new(faults)).unwrap()
}

/// Runs quietly (no mock errors) and checked for determinism.
fn run(topo: &Topology, seed: u64) -> (RunResult, World) {
    run_checked(topo, seed, |w| quiet_deps(w, None))
}

fn dep<'a>(r: &'a RunResult, name: &str) -> &'a DependencyStats {
    &r.deps.iter().find(|(n, _)| n == name).unwrap().1
}

fn p50(h: &firedrill::metrics::LatencyHistogram) -> f64 {
    h.quantile_ns(0.5).unwrap() as f64
}

/// `count` of `n` is `p·n` within 4 standard deviations of a binomial.
fn within_4sd(count: u64, n: u64, p: f64) -> bool {
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - p * n as f64).abs() <= 4.0 * sd
}

/// The whole run (and its drain).
const ALL_RUN: SimDuration = SimDuration::from_secs(3600);

/// ×5 on block_storage's create_disk: that endpoint's p50 is ×5 (±5%); attach_disk, on the
/// same dependency, keeps its p50 (±2%: its draws interleave differently); every other
/// dependency's latency histogram is identical; nothing fails.
#[test]
fn latency_fault_on_one_endpoint_multiplies_its_p50_only() {
    let base = topo(2, 20.0, true);
    let (b, _) = run(&base, 1);
    let f = with(
        &base,
        vec![
            Fault::new(
                FaultKind::DepLatency {
                    add: None,
                    multiply: 5.0,
                },
                dep_target("block_storage", Some("create_disk")),
                SimTime::ZERO,
                ALL_RUN,
            )
            .unwrap(),
        ],
    );
    let (r, _) = run(&f, 1);
    let (bs, fs) = (dep(&b, "block_storage"), dep(&r, "block_storage"));
    let create = p50(&fs.endpoints[0].latency) / p50(&bs.endpoints[0].latency);
    assert!((4.75..=5.25).contains(&create), "create_disk p50 ×{create}");
    let attach = p50(&fs.endpoints[1].latency) / p50(&bs.endpoints[1].latency);
    assert!((0.98..=1.02).contains(&attach), "attach_disk p50 ×{attach}");
    assert_eq!(fs.fault_delayed, fs.endpoints[0].started);
    assert!(fs.endpoints[0].started > 1000);
    for name in ["billing", "image", "inventory", "vpc"] {
        let (x, y) = (dep(&r, name), dep(&b, name));
        assert_eq!(x.latency.hdr(), y.latency.hdr(), "{name}");
        assert_eq!((x.started, x.fault_delayed), (y.started, 0), "{name}");
    }
    let ok = |r: &RunResult| r.api(Api::RunInstances).count(Status::Ok);
    assert_eq!(ok(&r), r.api(Api::RunInstances).requests);
    assert_eq!(ok(&r), ok(&b));
}

/// +200 ms (constant) on image from 20 s to 40 s: exactly the calls started in the window are
/// delayed (about a third of a 60 s run), each by the 200 ms (image answers in ~3 ms, under
/// 200 ms without the fault); the run is the same as without the fault up to 20 s.
#[test]
fn added_latency_acts_inside_its_window_only() {
    let base = topo(2, 20.0, false);
    let fault = Fault::new(
        FaultKind::DepLatency {
            add: Some(Dist::constant(0.2).unwrap()),
            multiply: 1.0,
        },
        dep_target("image", None),
        at(20),
        secs(20),
    )
    .unwrap();
    let f = with(&base, vec![fault]);
    let (b, _) = run(&base, 2);
    let (r, _) = run(&f, 2);
    let (bi, fi) = (dep(&b, "image"), dep(&r, "image"));
    let slow = |s: &DependencyStats| s.latency.count() - s.latency.hdr().count_between(0, 200_000_000);
    assert_eq!(slow(bi), 0);
    assert_eq!(slow(fi), fi.fault_delayed);
    assert!(
        within_4sd(fi.fault_delayed, fi.started, 1.0 / 3.0),
        "{} of {} delayed",
        fi.fault_delayed,
        fi.started
    );
    // Same events up to the fault's start, then not.
    let mut wb = base.build(RootSeed::new(2));
    let mut wf = f.build(RootSeed::new(2));
    for w in [&mut wb, &mut wf] {
        quiet_deps(w, None);
        assert!(w.run_until(at(20)).is_none());
    }
    assert_eq!(wb.sim.trace_hash(), wf.sim.trace_hash());
    assert!(wb.run_until(at(21)).is_none() && wf.run_until(at(21)).is_none());
    assert_ne!(wb.sim.trace_hash(), wf.sim.trace_hash());
}

/// InternalError at 0.5 on attach_disk and at 0.2 on all of block_storage: attach_disk calls
/// fail with 1 − 0.5 × 0.8 = 0.6, create_disk calls with 0.2 (each within 4 sd); every such
/// failure is counted as a fault's; the other dependencies inject nothing.
#[test]
fn error_faults_fail_their_share_per_endpoint_and_combine() {
    let base = topo(2, 20.0, true);
    let f = with(
        &base,
        vec![
            Fault::new(
                FaultKind::DepErrors {
                    code: FaultCode::InternalError,
                    probability: 0.5,
                },
                dep_target("block_storage", Some("attach_disk")),
                SimTime::ZERO,
                ALL_RUN,
            )
            .unwrap(),
            Fault::new(
                FaultKind::DepErrors {
                    code: FaultCode::InternalError,
                    probability: 0.2,
                },
                dep_target("block_storage", None),
                SimTime::ZERO,
                ALL_RUN,
            )
            .unwrap(),
        ],
    );
    let (r, _) = run(&f, 3);
    let s = dep(&r, "block_storage");
    let (create, attach) = (&s.endpoints[0], &s.endpoints[1]);
    assert!(
        within_4sd(create.injected, create.started, 0.2),
        "create_disk: {} of {}",
        create.injected,
        create.started
    );
    assert!(
        within_4sd(attach.injected, attach.started, 0.6),
        "attach_disk: {} of {}",
        attach.injected,
        attach.started
    );
    assert!(attach.started > 500);
    let injected: u64 = s.endpoints.iter().map(|e| e.injected).sum();
    assert_eq!(s.fault_errors, injected);
    assert_eq!(s.errors_of(ErrorCode::InternalError), injected);
    for name in ["billing", "image", "inventory", "vpc"] {
        assert_eq!(dep(&r, name).injected.iter().sum::<u64>(), 0, "{name}");
    }
}

/// A blackhole on inventory's allocate_host from 20 s for 10 s: calls started in the window
/// are held and never answered (the nodes' timeouts fire); none before or after; image,
/// earlier in the same requests, is untouched.
#[test]
fn blackhole_on_one_endpoint_holds_calls_in_its_window() {
    let base = topo(2, 20.0, false);
    let f = with(
        &base,
        vec![
            Fault::new(
                FaultKind::DepBlackhole,
                dep_target("inventory", Some("allocate_host")),
                at(20),
                secs(10),
            )
            .unwrap(),
        ],
    );
    let mut w = f.build(RootSeed::new(4));
    quiet_deps(&mut w, None);
    let inv = w.deps.iter().position(|&id| w.sim.name(id) == "dep.inventory").unwrap();
    assert!(w.run_until(at(20)).is_none());
    assert_eq!(w.dep_mut(inv).stats().fault_blackholed, 0);
    assert!(w.run_until(at(30)).is_none());
    let held = w.dep_mut(inv).stats().fault_blackholed;
    let started_in = w.dep_mut(inv).stats().started;
    let report = w.run();
    let r = w.result(report, f.duration());
    let s = dep(&r, "inventory");
    assert_eq!(s.fault_blackholed, held, "nothing held after the window");
    assert!(held >= 150, "{held} held: the window's first attempts and their retries");
    assert_eq!((s.timeouts, s.endpoints[0].injected), (held, held));
    assert!(s.started > started_in);
    let timeouts = r.counter("node.0.dep_timeouts") + r.counter("node.1.dep_timeouts");
    assert_eq!(timeouts, held, "every held call timed out at its node");
    let (b, _) = run(&base, 4);
    assert_eq!(dep(&r, "image").latency.hdr(), dep(&b, "image").latency.hdr());
    assert_eq!(b.counter("node.0.dep_timeouts"), 0);
}

/// 30% of image's hosts down for the whole run: a call's key is its token (one per request
/// step), so every attempt of a request lands on the same host: ≈30% of requests fail after
/// their 3 attempts (within 4 sd), every call on a dead host is blackholed and counted, and
/// every call on a live one answered.
#[test]
fn partial_outage_times_out_its_fraction_of_requests() {
    let base = topo(2, 20.0, false);
    let f = with(
        &base,
        vec![
            Fault::new(
                FaultKind::DepPartialOutage { fraction: 0.3 },
                dep_target("image", None),
                SimTime::ZERO,
                ALL_RUN,
            )
            .unwrap(),
        ],
    );
    let (r, _) = run(&f, 5);
    let s = dep(&r, "image");
    let api = r.api(Api::RunInstances);
    let failed = api.requests - api.count(Status::Ok);
    assert!(
        within_4sd(failed, api.requests, 0.3),
        "{failed} of {} requests failed",
        api.requests
    );
    assert_eq!(s.timeouts, s.fault_outage);
    // The nodes' default retry policy makes 3 attempts, all on the dead host.
    assert_eq!(s.fault_outage, 3 * failed);
    assert_eq!(s.ok, api.requests - failed, "live hosts answer every call");
    assert_eq!(dep(&r, "inventory").started, api.count(Status::Ok));
}
