//! Dependency faults and network partitions end to end: each fault moves the metric it targets
//! by the amount its parameters say, only on its target, only inside its window.

use crate::core::{
    counter_now, heap, plain_node, quiet_deps, run_checked, topology, traffic, unlimited,
};
use firedrill::api::node::NodeConfigBuilder;
use firedrill::api::types::{Api, ErrorCode, Status};
use firedrill::db::DbConfig;
use firedrill::deps::{DependencyStats, FaultCode};
use firedrill::faults::{Fault, FaultKind, FaultPlan, Target};
use firedrill::gc::GcProfile;
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::traffic::ApiMix;
use firedrill::world::{RunResult, Topology, World};

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
    topo_with_timeout(nodes, rate, workflows, secs(120))
}

/// As [`topo`], with the clients' (and the gateway's) request timeout.
fn topo_with_timeout(nodes: u32, rate: f64, workflows: bool, timeout: SimDuration) -> Topology {
    let node = plain_node();
    let t = traffic(rate, ApiMix::only(Api::RunInstances), 3, timeout);
    let topo = topology(
        nodes,
        node,
        DbConfig::assumed_defaults(),
        t,
        unlimited(3),
        SECS,
    );
    crate::core::maybe_sequential_workflows(topo, workflows)
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
    let slow =
        |s: &DependencyStats| s.latency.count() - s.latency.hdr().count_between(0, 200_000_000);
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
    let inv = w
        .deps
        .iter()
        .position(|&id| w.sim.name(id) == "dep.inventory")
        .unwrap();
    assert!(w.run_until(at(20)).is_none());
    assert_eq!(w.dep_mut(inv).stats().fault_blackholed, 0);
    assert!(w.run_until(at(30)).is_none());
    let held = w.dep_mut(inv).stats().fault_blackholed;
    let started_in = w.dep_mut(inv).stats().started;
    let report = w.run();
    let r = w.result(report, f.duration());
    let s = dep(&r, "inventory");
    assert_eq!(s.fault_blackholed, held, "nothing held after the window");
    assert!(
        held >= 150,
        "{held} held: the window's first attempts and their retries"
    );
    assert_eq!((s.timeouts, s.endpoints[0].injected), (held, held));
    assert!(s.started > started_in);
    let timeouts = r.counter("node.0.dep_timeouts") + r.counter("node.1.dep_timeouts");
    assert_eq!(timeouts, held, "every held call timed out at its node");
    let (b, _) = run(&base, 4);
    assert_eq!(
        dep(&r, "image").latency.hdr(),
        dep(&b, "image").latency.hdr()
    );
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

fn partition(target: Target, peer: Target, start: u64, dur: u64) -> Fault {
    Fault::new(FaultKind::Partition { peer }, target, at(start), secs(dur)).unwrap()
}

/// node.0 cut from image from 20 s for 10 s: every message between them is dropped (calls
/// and replies), each drop is one dependency timeout at node.0, node.1 sees none, and node.0
/// has none once the window and its last timeouts (2 s) are over.
#[test]
fn partition_node_from_dependency_times_out_that_nodes_calls_and_heals() {
    let base = topo(2, 20.0, false);
    let f = with(
        &base,
        vec![partition(
            Target::Node(0),
            dep_target("image", None),
            20,
            10,
        )],
    );
    let mut w = f.build(RootSeed::new(6));
    quiet_deps(&mut w, None);
    assert!(w.run_until(at(20)).is_none());
    assert_eq!(counter_now(&w, "node.0.dep_timeouts"), 0);
    assert!(w.run_until(at(40)).is_none());
    let dropped = counter_now(&w, "faults.0.partition_dropped");
    let timeouts = counter_now(&w, "node.0.dep_timeouts");
    assert!(w.sim.partitions().is_empty(), "healed at the window's end");
    let report = w.run();
    let r = w.result(report, f.duration());
    // ~10 calls a second from node.0 for 10 s, and their retries inside the window.
    assert!(dropped >= 100, "{dropped} dropped");
    assert_eq!(r.counter("faults.0.partition_dropped"), dropped);
    assert_eq!(timeouts, dropped, "one timeout per lost call or reply");
    assert_eq!(
        r.counter("node.0.dep_timeouts"),
        timeouts,
        "none after the window"
    );
    assert_eq!(r.counter("node.1.dep_timeouts"), 0);
    let inv = dep(&r, "inventory");
    assert_eq!(inv.started, r.api(Api::RunInstances).count(Status::Ok));
}

/// The gateway cut from node.1 from 20 s for 10 s (5 s request timeout): each request whose
/// dispatch to node.1 or whose response from it was dropped ends DeadlineExceeded at the
/// gateway, one per dropped message, and no other request fails.
#[test]
fn partition_gateway_from_node_loses_exactly_the_cut_requests() {
    let base = topo_with_timeout(2, 20.0, false, secs(5));
    let f = with(
        &base,
        vec![partition(Target::Gateway, Target::Node(1), 20, 10)],
    );
    let (r, _) = run(&f, 7);
    let (b, _) = run(&base, 7);
    let dropped = r.counter("faults.0.partition_dropped");
    // Round robin: half of ~200 requests in the window go to node.1.
    assert!((70..=130).contains(&dropped), "{dropped} dropped");
    let api = r.api(Api::RunInstances);
    assert_eq!(api.count(Status::Err(ErrorCode::DeadlineExceeded)), dropped);
    assert_eq!(api.count(Status::Ok) + dropped, api.requests);
    assert_eq!(
        b.api(Api::RunInstances).count(Status::Ok),
        b.api(Api::RunInstances).requests
    );
}

/// Two nodes, RunInstances at 20/s (one insert per request), 100-connection pools so the
/// connections lost queries hold never exhaust one.
fn db_partition_base() -> Topology {
    let node = NodeConfigBuilder::new(heap(GcProfile::Off))
        .pool(100, 200, SimDuration::from_ms(200))
        .build()
        .unwrap();
    topology(
        2,
        node,
        DbConfig::assumed_defaults(),
        traffic(20.0, ApiMix::only(Api::RunInstances), 3, secs(120)),
        unlimited(3),
        SECS,
    )
}

/// node.0 cut from the database from 20 s for 10 s (RunInstances at 20/s, one insert per
/// request, 100-connection pools so the held connections never exhaust one): node.0's
/// queries (and replies to it) are dropped, node.1 is untouched. Each query whose query or
/// reply was lost holds its connection for the node's 5 s query timeout, then fails with 503
/// and releases it: one timeout and one 503 per dropped message, no pool timeout. Recovery:
/// none is held once the window and its last timeouts are over (35 s), and every request
/// answered after that succeeds.
#[test]
fn partition_node_from_db_times_out_that_nodes_queries_and_recovers() {
    let base = db_partition_base();
    let f = with(&base, vec![partition(Target::Node(0), Target::Db, 20, 10)]);
    let mut w = f.build(RootSeed::new(6));
    quiet_deps(&mut w, None);
    assert!(w.run_until(at(20)).is_none());
    assert_eq!(counter_now(&w, "node.0.db_timeouts"), 0);
    assert!(w.run_until(at(30)).is_none());
    // The lost queries are held until they time out, 5 s after they were sent.
    let held = u64::from(w.node_mut(0).pool().in_use());
    assert!(held >= 30, "{held} held at the window's end");
    assert!(w.run_until(at(36)).is_none());
    let dropped = counter_now(&w, "faults.0.partition_dropped");
    assert_eq!(counter_now(&w, "node.0.db_timeouts"), dropped, "by 35 s");
    let report = w.run();
    let r = w.result(report, f.duration());
    // ~10 queries a second from node.0 for 10 s.
    assert!((60..=140).contains(&dropped), "{dropped} dropped");
    assert_eq!(r.counter("faults.0.partition_dropped"), dropped);
    assert_eq!(r.counter("node.0.db_timeouts"), dropped, "none after");
    assert_eq!(r.counter("node.0.pool_timeouts"), 0);
    assert_each_lost_query_failed_once(&r, &mut w, dropped);
    let api = r.api(Api::RunInstances);
    assert_eq!(api.count(Status::Ok) + dropped, api.requests);
    // After the last timeout (35 s) every answer is a success.
    let series = r.series.as_ref().unwrap();
    let after: Vec<_> = series.rows().iter().filter(|b| b.start >= at(36)).collect();
    assert!(after.iter().map(|b| b.requests).sum::<u64>() > 400);
    assert!(after.iter().all(|b| b.responses_5xx == 0));
    for c in [
        "db_errors",
        "db_timeouts",
        "pool_timeouts",
        "deadline_aborts",
        "dep_timeouts",
    ] {
        assert_eq!(r.counter(&format!("node.1.{c}")), 0, "node.1 {c}");
    }
    assert_eq!(w.node_mut(1).pool().in_use(), 0);
}

/// InternalError at 0.8 on image from 10 s for 20 s, ramped over its first 10 s: in ramp step
/// k (k = 1..10, one second each) calls fail with 0.08·k, then with 0.8 until 30 s, then never.
/// Per second, the failures are within 4 sd of Σ pₖ·nₖ over the started calls nₖ.
/// As above, with node.0 also stopped the world from 27 s to 31 s: the queries lost from 22 s
/// on reach their 5 s timeout during the pause, which defers them (nothing runs): none is
/// counted while the node is stopped, all are at the resume, and in the end it is still one
/// timeout and one 503 per lost query, with every connection back.
#[test]
fn query_timeouts_due_in_a_pause_are_taken_at_its_end() {
    let base = db_partition_base();
    let pause = FaultKind::NodePause {
        pause: Dist::constant(4.0).unwrap(),
        every: None,
    };
    let f = with(
        &base,
        vec![
            partition(Target::Node(0), Target::Db, 20, 10),
            Fault::new(pause, Target::Node(0), at(27), secs(4)).unwrap(),
        ],
    );
    let mut w = f.build(RootSeed::new(6));
    quiet_deps(&mut w, None);
    assert!(w.run_until(at(27)).is_none());
    let before = counter_now(&w, "node.0.db_timeouts");
    assert!(
        before > 0,
        "the queries lost from 20 s to 22 s timed out before the pause"
    );
    assert!(w.run_until(at(30)).is_none());
    assert_eq!(
        counter_now(&w, "node.0.db_timeouts"),
        before,
        "none while stopped"
    );
    assert!(w.run_until(SimTime::from_ns(31_001_000_000)).is_none());
    let after = counter_now(&w, "node.0.db_timeouts");
    assert!(
        after >= before + 20,
        "the ~4 s of lost queries due in the pause, at its end: {before} -> {after}"
    );
    let report = w.run();
    let r = w.result(report, f.duration());
    let dropped = r.counter("faults.0.partition_dropped");
    assert!((60..=140).contains(&dropped), "{dropped} dropped");
    assert_eq!(r.counter("node.0.db_timeouts"), dropped);
    assert_eq!(r.nodes[0].faults.injected_pauses, 1);
    assert_each_lost_query_failed_once(&r, &mut w, dropped);
}

/// node.0 got back every connection its lost queries held, and answered one 503 per lost query.
fn assert_each_lost_query_failed_once(r: &RunResult, w: &mut World, dropped: u64) {
    assert_eq!(w.node_mut(0).pool().in_use(), 0, "every connection back");
    assert_eq!(
        r.api(Api::RunInstances)
            .count(Status::Err(ErrorCode::ServiceUnavailable)),
        dropped,
        "one 503 per lost query"
    );
}

#[test]
fn ramped_error_fault_steps_up_and_ends_with_its_window() {
    let base = topo(2, 20.0, false);
    let fault = Fault::new(
        FaultKind::DepErrors {
            code: FaultCode::InternalError,
            probability: 0.8,
        },
        dep_target("image", None),
        at(10),
        secs(20),
    )
    .unwrap()
    .with_ramp(secs(10))
    .unwrap();
    let f = with(&base, vec![fault]);
    let mut w = f.build(RootSeed::new(8));
    quiet_deps(&mut w, None);
    let image = w
        .deps
        .iter()
        .position(|&id| w.sim.name(id) == "dep.image")
        .unwrap();
    let (mut started, mut failed) = (0u64, 0u64);
    let (mut expected, mut var, mut observed) = (0.0, 0.0, 0u64);
    for s in 0..SECS {
        assert!(w.run_until(at(s + 1)).is_none());
        let st = w.dep_mut(image).stats();
        let (n, k) = (st.started - started, st.fault_errors - failed);
        (started, failed) = (st.started, st.fault_errors);
        let p = match s {
            10..20 => 0.08 * (s - 9) as f64,
            20..30 => 0.8,
            _ => 0.0,
        };
        if p == 0.0 {
            assert_eq!(k, 0, "no failures at {s} s");
        }
        expected += p * n as f64;
        var += p * (1.0 - p) * n as f64;
        observed += k;
    }
    assert!(
        (observed as f64 - expected).abs() <= 4.0 * var.sqrt(),
        "{observed} failures, expected {expected:.1}"
    );
    assert!(observed > 200);
}

/// node.0 cut from the workflow engine from 20 s for 10 s, clients giving up after 2 s: every
/// command node.0 hands the engine then (or acknowledgement the engine sends back) is lost.
/// The request waiting for it does not hang: the gateway answers 504 `DeadlineExceeded` at
/// its deadline, and the node ends the request at its query timeout (5 s, the bound of every
/// wait on the control plane's stores), freeing its worker — one `wf_ack_timeouts` per lost
/// message, none on node.1, none once the window and its last timeouts are over.
#[test]
fn a_lost_workflow_acknowledgement_ends_the_request_at_its_timeout() {
    let base = topo_with_timeout(2, 20.0, true, secs(2));
    let f = with(
        &base,
        vec![partition(Target::Node(0), Target::Workflow, 20, 10)],
    );
    let mut w = f.build(RootSeed::new(6));
    quiet_deps(&mut w, None);
    assert!(w.run_until(at(20)).is_none());
    assert_eq!(counter_now(&w, "node.0.wf_ack_timeouts"), 0);
    assert!(w.run_until(at(30)).is_none());
    // The requests whose command was lost are held on node.0's workers, waiting...
    let held = w.node_mut(0).in_flight();
    assert!(held >= 30, "{held} in flight at the window's end");
    assert!(w.run_until(at(36)).is_none());
    // ... until their timeout, 5 s after the command went out: every one has ended by 35 s.
    let dropped = counter_now(&w, "faults.0.partition_dropped");
    assert_eq!(
        counter_now(&w, "node.0.wf_ack_timeouts"),
        dropped,
        "by 35 s"
    );
    assert!(w.node_mut(0).in_flight() < 10, "node.0 serves again");
    let report = w.run();
    let r = w.result(report, f.duration());
    // ~10 RunInstances a second reach node.0's workflow step for 10 s.
    assert!((60..=140).contains(&dropped), "{dropped} dropped");
    assert_eq!(r.counter("node.0.wf_ack_timeouts"), dropped, "none after");
    assert_eq!(r.counter("node.1.wf_ack_timeouts"), 0);
    assert_eq!(
        r.node_counter("wf_refused"),
        0,
        "the engine refused nothing"
    );
    // No acknowledgement came late (a partition drops, it does not delay).
    assert_eq!(r.nodes[0].faults.stale_wf_acks, 0);
    // The client had given up at 2 s: each lost one is a 504 at the gateway, and the node's
    // later answer (503) was dropped there.
    let api = r.api(Api::RunInstances);
    assert_eq!(api.count(Status::Err(ErrorCode::DeadlineExceeded)), dropped);
    assert_eq!(api.count(Status::Ok) + dropped, api.requests);
    assert_eq!(w.node_mut(0).in_flight(), 0);
    assert_eq!(w.node_mut(0).pool().in_use(), 0);
}
