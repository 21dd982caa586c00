//! API node faults end to end: crashes and restarts, injected pauses, heap leaks, DB
//! connection leaks and clock skew. Each test runs a topology with the fault and without it
//! (same seed), checks the targeted node's metric moves by the amount the parameters give, that
//! the other nodes do not change, and that the effect ends with the window.

use crate::core::{counter_now, heap, run_checked, topology, traffic, unlimited};
use firedrill::api::node::{NodeConfig, NodeConfigBuilder};
use firedrill::api::types::{Api, ErrorCode, Status};
use firedrill::cache::L1Config;
use firedrill::db::DbConfig;
use firedrill::faults::{Fault, FaultKind, FaultPlan, Target};
use firedrill::gc::{GcProfile, HeapConfig, HeapSpec, MIB, PauseKind};
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::traffic::ApiMix;
use firedrill::world::{RunResult, Topology, World};

fn secs(s: u64) -> SimTime {
    SimTime::ZERO.saturating_add(SimDuration::from_secs(s))
}

/// A database answering every query in `latency_s`, with no queueing: node effects stay on
/// their node (another node's timing cannot change this node's latencies).
fn flat_db(latency_s: f64) -> DbConfig {
    DbConfig::builder()
        .latency_all(Dist::constant(latency_s).unwrap())
        .max_concurrent(100_000)
        .build()
        .unwrap()
}

fn node_cfg(profile: GcProfile) -> NodeConfig {
    NodeConfigBuilder::new(heap(profile)).build().unwrap()
}

/// `nodes` round-robin nodes serving DescribeInstanceStatus at `rate` per second for `secs`.
fn describe_topology(nodes: u32, node: NodeConfig, db: DbConfig, rate: f64, secs: u64) -> Topology {
    let t = traffic(
        rate,
        ApiMix::only(Api::DescribeInstanceStatus),
        20,
        SimDuration::from_secs(30),
    );
    topology(nodes, node, db, t, unlimited(20), secs)
}

fn with(topo: &Topology, faults: Vec<Fault>) -> Topology {
    topo.clone().with_faults(FaultPlan::new(faults)).unwrap()
}

fn fault(kind: FaultKind, target: Target, start: u64, duration: u64) -> Fault {
    Fault::new(kind, target, secs(start), SimDuration::from_secs(duration)).unwrap()
}

/// node.0 crashes at 5 s and restarts 0.5 s later.
fn short_crash_of_node0() -> Fault {
    Fault::new(
        FaultKind::NodeCrash,
        Target::Node(0),
        secs(5),
        SimDuration::from_ms(500),
    )
    .unwrap()
}

/// Runs `topo` under `seed` until `at` (every event at or before it), then returns the world.
fn run_to(topo: &Topology, seed: u64, at: SimTime) -> World {
    let mut w = topo.build(RootSeed::new(seed));
    assert!(w.run_until(at).is_none(), "the run ended before {at}");
    w
}

fn within(x: f64, expected: f64, tol: f64) -> bool {
    (x - expected).abs() <= tol * expected
}

fn latency_sum_ns(r: &RunResult, node: usize) -> f64 {
    let h = &r.nodes[node].latency;
    h.mean_ns().unwrap_or(0.0) * h.count() as f64
}

/// A crash of node 1 from 5 s to 10 s: every request it held is answered 502 at once, requests
/// routed to it until the health check notices (1 s) are refused with 502, its state is
/// dropped (pool, L1), stale replies are ignored, and after the restart it serves again.
#[test]
fn node_crash_answers_its_requests_502_and_the_node_restarts_cold() {
    let base = describe_topology(
        2,
        node_cfg(GcProfile::G1),
        DbConfig::assumed_defaults(),
        2_000.0,
        20,
    );
    let crash = with(
        &base,
        vec![fault(FaultKind::NodeCrash, Target::Node(1), 5, 5)],
    );
    let seed = 7;

    // Identical up to the crash instant; what node 1 held then is what the crash loses.
    let just_before = SimTime::from_ns(secs(5).as_ns() - 1);
    let plain_before = run_to(&base, seed, just_before);
    let faulted_before = run_to(&crash, seed, just_before);
    assert_eq!(
        plain_before.sim.trace_hash(),
        faulted_before.sim.trace_hash()
    );
    let mut before = run_to(&base, seed, secs(5));
    let held = before.node_mut(1).in_flight() as u64;
    let queued = before.node_mut(1).queued() as u64;
    assert!(held > 0, "node 1 holds requests at the crash");

    let (plain, _) = run_checked(&base, seed, |_| {});
    let (r, mut world) = run_checked(&crash, seed, |_| {});
    let f = r.nodes[1].faults;
    assert_eq!((f.crashes, f.restarts), (1, 1));
    assert_eq!(f.lost_in_flight, held);
    assert_eq!(f.lost_queued, queued);
    // Routed to node 1 during the 1 s detection delay: about half of 2,000/s for 1 s.
    assert!(
        within(f.refused_while_down as f64, 1_000.0, 0.1),
        "refused {}",
        f.refused_while_down
    );
    // Every 502 is one of these, and nothing else answers 502.
    let bad_gateway: u64 = r
        .apis
        .iter()
        .map(|a| a.count(Status::Err(ErrorCode::BadGateway)))
        .sum();
    assert_eq!(
        bad_gateway,
        f.lost_in_flight + f.lost_queued + f.refused_while_down
    );
    assert_eq!(plain.nodes[1].faults, Default::default());
    // The old process's database replies came back while it was down and were dropped, and
    // none reached the restarted process's pool; the pool's accounting is exact at the end.
    assert!(f.dropped_while_down > 0, "{f:?}");
    let n1 = world.node_mut(1);
    assert_eq!((n1.pool().in_use(), n1.pool().waiting()), (0, 0));
    assert!(!n1.is_down());
    assert_eq!(n1.heap().stats().restarts(), 1);
    assert!(world.gateway_mut().node_up(1));
    // Node 1 served again after the restart: it finished nothing for the 5 s window (its
    // half of the load: 1,000/s), and everything else.
    let served = |r: &RunResult| r.nodes[1].latency.count() as f64;
    let missing = served(&plain) - served(&r);
    assert!(
        within(missing, 1_000.0 * 5.0, 0.1),
        "node 1 served {} vs {} without the crash",
        served(&r),
        served(&plain)
    );
    // Node 0 took the whole load while node 1 was out: about 1,000/s more for 4 s.
    let extra0 = r.nodes[0].latency.count() as f64 - plain.nodes[0].latency.count() as f64;
    assert!(within(extra0, 4_000.0, 0.1), "node 0 served {extra0} more");
    // Every request got exactly one answer.
    assert_eq!(r.requests(), plain.requests());
}

/// With detection at once, nothing is refused: only what the node held is lost, and a
/// restarted node's L1 is cold (entries dropped, then refilled).
#[test]
fn an_instant_detection_refuses_nothing_and_the_restart_empties_the_l1() {
    let base = cached_topology(20).with_faults(FaultPlan::new(vec![fault(
        FaultKind::NodeCrash,
        Target::Node(0),
        6,
        2,
    )]));
    let topo = base.unwrap();
    let (r, world) = run_checked(&topo, 3, |w| {
        w.gateway_mut()
            .set_health_check_detection(SimDuration::ZERO)
    });
    let f = r.nodes[0].faults;
    // Only requests already on the wire (one 0.25 ms hop) can reach the dead node.
    assert!(f.refused_while_down <= 2, "{f:?}");
    assert!(f.lost_in_flight + f.lost_queued > 0);
    let mut world = world;
    let l1 = *world.node_mut(0).l1_stats().unwrap();
    assert!(
        l1.flushed > 0,
        "the crash dropped the node's L1 entries: {l1:?}"
    );
    let l1_other = *world.node_mut(1).l1_stats().unwrap();
    assert_eq!(l1_other.flushed, 0);
}

/// Pauses of 200 ms every second from 5 s to 10 s on node 0: five pauses, exactly 1 s of
/// stop-the-world in the pause statistics (GC off: nothing else pauses); the node's latency
/// grows by the waiting they cause; node 1 is untouched, to the histogram.
#[test]
fn node_pause_adds_exactly_the_injected_pauses_and_their_wait() {
    let base = describe_topology(2, node_cfg(GcProfile::Off), flat_db(0.001), 1_000.0, 15);
    let pause = FaultKind::NodePause {
        pause: Dist::constant(0.2).unwrap(),
        every: Some(SimDuration::SECOND),
    };
    let topo = with(&base, vec![fault(pause, Target::Node(0), 5, 5)]);
    let (plain, _) = run_checked(&base, 11, |_| {});
    let (r, _) = run_checked(&topo, 11, |_| {});
    let f = r.nodes[0].faults;
    assert_eq!(
        f.injected_pauses, 5,
        "at 5, 6, 7, 8 and 9 s; none at the end"
    );
    assert_eq!(f.injected_pause_ns, 1_000_000_000);
    let gc = &r.nodes[0].gc;
    assert_eq!(gc.injected().count(), 5);
    assert_eq!(gc.all_pauses().count(), 5);
    assert_eq!(gc.total_paused_ns(), 1_000_000_000);
    assert_eq!(plain.nodes[0].gc.total_paused_ns(), 0);
    // Arrivals during a pause (500/s × 0.2 s) wait 0.1 s on average: 10 s of latency per
    // pause, 50 s in all, plus the drain of the 100 requests queued behind each pause on 8
    // cores (2 ms each: 25 ms, 12.5 ms on average, 1.25 s per pause); the longest wait is
    // about a whole pause.
    let extra_s = (latency_sum_ns(&r, 0) - latency_sum_ns(&plain, 0)) / 1e9;
    assert!(within(extra_s, 56.25, 0.15), "extra latency {extra_s} s");
    let max = r.nodes[0].latency.max_ns().unwrap();
    assert!(
        (200_000_000..260_000_000).contains(&max),
        "longest latency {max} ns"
    );
    // Node 1: the same requests, the same samples, the same latencies.
    assert_eq!(r.nodes[1].latency.hdr(), plain.nodes[1].latency.hdr());
    assert_eq!(r.nodes[1].gc.total_paused_ns(), 0);
}

/// A small G1 heap whose old generation a leak can fill in seconds.
fn small_heap() -> HeapConfig {
    HeapSpec {
        eden_bytes: 64 * MIB,
        survivor_bytes: 8 * MIB,
        old_bytes: 256 * MIB,
        live_set_bytes: 64 * MIB,
        survival_ratio: 0.2,
        tenuring_ratio: 1.0,
        ..HeapSpec::defaults_for(GcProfile::Parallel)
    }
    .build()
    .unwrap()
}

/// A leak of 20 MiB/s on node 0 for 10 s: its live set grows by exactly 200 MiB, past old's
/// capacity, so full GCs follow and pause time grows; node 1's heap is untouched. A crash
/// after the leak restarts the heap and the leaked bytes are gone.
#[test]
fn heap_leak_fills_old_until_full_gcs_and_a_restart_frees_it() {
    let node = NodeConfigBuilder::new(small_heap()).build().unwrap();
    let base = describe_topology(2, node, flat_db(0.001), 1_000.0, 30);
    let leak = FaultKind::HeapLeak {
        bytes_per_sec: 20 * MIB,
    };
    let topo = with(&base, vec![fault(leak.clone(), Target::Node(0), 5, 10)]);
    let (plain, _) = run_checked(&base, 5, |_| {});
    let (r, mut world) = run_checked(&topo, 5, |_| {});
    assert_eq!(
        world.node_mut(0).heap().live_set_bytes(),
        64 * MIB + 200 * MIB
    );
    assert_eq!(world.node_mut(1).heap().live_set_bytes(), 64 * MIB);
    let full = |r: &RunResult, i: usize| r.nodes[i].gc.count(PauseKind::Full);
    let longest_full = |r: &RunResult| r.nodes[0].gc.histogram(PauseKind::Full).max_ns();
    // A full pause is 20 ms + 1 ms per MiB live in old: 64 MiB without the leak; with it the
    // live set (264 MiB) exceeds old (256 MiB), which ends full of live data.
    assert_eq!(longest_full(&plain), Some(84_000_000));
    assert_eq!(longest_full(&r), Some(276_000_000));
    assert!(r.nodes[0].gc.bytes_out_of_memory() > 0);
    assert!(
        full(&plain, 0) >= 1 && full(&r, 0) >= 5 * full(&plain, 0),
        "{} full GCs with the leak, {} without",
        full(&r, 0),
        full(&plain, 0)
    );
    assert!(r.nodes[0].gc.total_paused_ns() > 5 * plain.nodes[0].gc.total_paused_ns());
    // Node 1's heap saw the same allocations at the same instants.
    assert_eq!(
        r.nodes[1].gc.all_pauses().hdr(),
        plain.nodes[1].gc.all_pauses().hdr()
    );

    // The same leak, then a crash from 20 s to 21 s: the restarted heap holds the configured
    // live set only, and the full GCs stop.
    let topo = with(
        &base,
        vec![
            fault(leak, Target::Node(0), 5, 10),
            fault(FaultKind::NodeCrash, Target::Node(0), 20, 1),
        ],
    );
    let mut w = run_to(&topo, 5, secs(21));
    let full_before_restart = w.node_mut(0).heap().stats().count(PauseKind::Full);
    let (r2, mut world) = run_checked(&topo, 5, |_| {});
    assert_eq!(world.node_mut(0).heap().live_set_bytes(), 64 * MIB);
    assert_eq!(r2.nodes[0].gc.restarts(), 1);
    assert_eq!(
        r2.nodes[0].gc.count(PauseKind::Full),
        full_before_restart,
        "no full GC after the restart"
    );
}

/// A node a runbook adds in the middle of a leak of every node leaks only from when it
/// started: added at 8.5 s, between two of the leak's 1 s ticks, into a 20 MiB/s leak from
/// 5 s to 15 s, it gains 6.5 s worth (130 MiB), the nodes that were there 10 s worth (200 MiB).
#[test]
fn a_node_added_during_a_heap_leak_leaks_only_since_it_started() {
    let node = NodeConfigBuilder::new(small_heap()).build().unwrap();
    let base = describe_topology(2, node, flat_db(0.001), 1_000.0, 20);
    let leak = FaultKind::HeapLeak {
        bytes_per_sec: 20 * MIB,
    };
    let topo = with(&base, vec![fault(leak, Target::Nodes, 5, 10)]);
    let added_at = secs(8).saturating_add(SimDuration::from_ms(500));
    let mut w = run_to(&topo, 5, added_at);
    assert_eq!(w.add_nodes(1, added_at), 2..3);
    assert_eq!(w.node_mut(2).started_at(), added_at);
    assert!(w.run_until(secs(16)).is_none(), "the run ended before 16 s");
    for i in 0..2 {
        assert_eq!(w.node_mut(i).heap().live_set_bytes(), 64 * MIB + 200 * MIB);
    }
    assert_eq!(w.node_mut(2).heap().live_set_bytes(), 64 * MIB + 130 * MIB);
}

/// Node 1 leaks 45 of its 50 connections from 5 s to 10 s while each query holds one for
/// 20.5 ms (two 0.25 ms hops): 500 queries/s need 10 busy connections, 5 serve at most 244/s,
/// so about 256/s wait out the 200 ms acquire timeout. Node 0 never waits; nothing times out after the window.
#[test]
fn db_connection_leak_starves_the_pool_of_its_node_only_for_the_window() {
    let base = describe_topology(2, node_cfg(GcProfile::Off), flat_db(0.02), 1_000.0, 15);
    let leak = FaultKind::DbConnectionLeak { connections: 45 };
    let topo = with(&base, vec![fault(leak, Target::Node(1), 5, 5)]);
    let (plain, _) = run_checked(&base, 9, |_| {});
    let (r, mut world) = run_checked(&topo, 9, |_| {});
    let timeouts = |r: &RunResult, i: usize| r.counter(&format!("node.{i}.pool_timeouts"));
    assert_eq!(timeouts(&plain, 0) + timeouts(&plain, 1), 0);
    assert_eq!(timeouts(&r, 0), 0);
    assert!(
        within(timeouts(&r, 1) as f64, (500.0 - 5.0 / 0.0205) * 5.0, 0.1),
        "{} pool timeouts",
        timeouts(&r, 1)
    );
    // Node 0 sees the same requests and the same database: identical latencies.
    assert_eq!(r.nodes[0].latency.hdr(), plain.nodes[0].latency.hdr());
    // Given back at the end: no timeout after the last waiter of the window (200 ms later).
    let w = run_to(&topo, 9, secs(11));
    assert_eq!(counter_now(&w, "node.1.pool_timeouts"), timeouts(&r, 1));
    let n1 = world.node_mut(1);
    assert_eq!((n1.pool().leaked(), n1.pool().capacity()), (0, 50));
    assert_eq!(r.nodes[1].faults.leaked_connections, 0);

    // Leaking the whole pool (or more): every query of the window times out.
    let all = FaultKind::DbConnectionLeak { connections: 60 };
    let topo = with(&base, vec![fault(all, Target::Node(1), 5, 5)]);
    let (r, _) = run_checked(&topo, 9, |_| {});
    assert!(
        within(timeouts(&r, 1) as f64, 500.0 * 5.0, 0.1),
        "{} pool timeouts",
        timeouts(&r, 1)
    );
}

/// Two nodes with an L1 (soft TTL 2 s, hard 4 s, no jitter) in front of the L2 and the database,
/// DescribeInstanceStatus on the instances RunInstances creates.
fn cached_topology(secs: u64) -> Topology {
    let t = crate::core::cached_reads_traffic();
    let setup = crate::core::fast_l2_cache(
        L1Config::builder()
            .capacity(10_000)
            .ttl(SimDuration::from_secs(2), SimDuration::from_secs(4))
            .ttl_jitter(0.0)
            .build()
            .unwrap(),
        SimDuration::from_secs(60),
    );
    topology(
        2,
        node_cfg(GcProfile::Off),
        flat_db(0.001),
        t,
        unlimited(20),
        secs,
    )
    .with_cache(setup)
}

/// Node 1's clock 1 s ahead from 10 s to 40 s: its L1 entries look 1 s older, so half of each
/// 2 s fresh window is lost (fewer fresh hits, lookups the true clock would have answered
/// fresh); 1 s behind, entries stay fresh 1 s longer (values served past their soft TTL).
/// Node 0's L1 does not move beyond noise; the skew is gone after the window.
#[test]
fn clock_skew_moves_l1_expiry_on_the_skewed_node_only() {
    let base = cached_topology(50);
    let (plain, mut pw) = run_checked(&base, 17, |_| {});
    let plain_l1 = |w: &mut World, i: usize| *w.node_mut(i).l1_stats().unwrap();
    let p0 = plain_l1(&mut pw, 0);
    let p1 = plain_l1(&mut pw, 1);
    assert_eq!(plain.nodes[1].faults, Default::default());
    for (skew_ns, ahead) in [(1_000_000_000i64, true), (-1_000_000_000, false)] {
        let skew = FaultKind::ClockSkew { skew_ns };
        let topo = with(&base, vec![fault(skew, Target::Node(1), 10, 30)]);
        let (r, mut w) = run_checked(&topo, 17, |_| {});
        let f = r.nodes[1].faults;
        let s0 = plain_l1(&mut w, 0);
        let s1 = plain_l1(&mut w, 1);
        assert_eq!(f.clock_skew_ns, 0, "the skew ends with the window");
        let fresh1 = s1.hits_fresh as f64;
        let plain1 = p1.hits_fresh as f64;
        if ahead {
            assert_eq!(f.l1_served_past_ttl, 0);
            assert!(f.l1_expired_early > 1_000, "{f:?}");
            // Each lookup judged expired early is a fresh hit lost, but the refill it starts
            // opens a new fresh window, which wins some back: between half and all of them.
            let lost = plain1 - fresh1;
            let early = f.l1_expired_early as f64;
            assert!(
                lost <= early && lost >= 0.5 * early,
                "fresh hits {fresh1} vs {plain1}; expired early {early}"
            );
        } else {
            assert_eq!(f.l1_expired_early, 0);
            assert!(f.l1_served_past_ttl > 1_000, "{f:?}");
            // Each lookup served past its TTL is a fresh hit gained, but it also postpones the
            // refill, so the next window starts later: between half and all of them.
            let gained = fresh1 - plain1;
            let past = f.l1_served_past_ttl as f64;
            assert!(
                gained <= past && gained >= 0.5 * past,
                "fresh hits {fresh1} vs {plain1}; served past TTL {past}"
            );
        }
        // Node 0's clock is right: it gets the same lookups, and its hits stay within 1% of
        // the unskewed run's (only the shared L2's contents, hence fill instants, differ).
        assert_eq!(s0.lookups(), p0.lookups());
        assert!(
            within(s0.hits() as f64, p0.hits() as f64, 0.01),
            "node 0 hits {} vs {}",
            s0.hits(),
            p0.hits()
        );
        assert_eq!(r.nodes[0].faults, Default::default());
        // After the window the skewed node judges like the others: nothing more is counted.
        let mut at_end = run_to(&topo, 17, secs(40));
        assert_eq!(*at_end.node_mut(1).fault_stats(), f);
    }
}

/// Replies to the crashed process that arrive after the restart are ignored: queries take 2 s,
/// the node is down for 0.5 s, so queries out at the crash come back to the new process, which
/// must not answer them, release connections for them, or break its pool accounting.
#[test]
fn replies_to_the_old_process_are_ignored_after_the_restart() {
    let base = describe_topology(2, node_cfg(GcProfile::Off), flat_db(2.0), 500.0, 12);
    let topo = with(&base, vec![short_crash_of_node0()]);
    let (plain, _) = run_checked(&base, 4, |_| {});
    let (r, mut world) = run_checked(&topo, 4, |_| {});
    let f = r.nodes[0].faults;
    // 250 requests/s on node 0 need 500 connections for 2 s queries; its 50 are all busy
    // (the others wait for one until their 200 ms acquire timeout): at the crash exactly 50
    // queries are out, and each reply comes back once, to the dead process (dropped) or to the
    // new one (ignored: its handle names no work).
    assert!(f.lost_in_flight >= 50, "{f:?}");
    assert_eq!(f.stale_db_replies + f.dropped_while_down, 50, "{f:?}");
    assert!(f.stale_db_replies > 0, "{f:?}");
    let n0 = world.node_mut(0);
    assert_eq!((n0.pool().in_use(), n0.pool().waiting()), (0, 0));
    assert_eq!(n0.in_flight(), 0);
    // One answer per request, and no 502 beyond the crash's.
    assert_eq!(r.requests(), plain.requests());
    let bad: u64 = r
        .apis
        .iter()
        .map(|a| a.count(Status::Err(ErrorCode::BadGateway)))
        .sum();
    assert_eq!(bad, f.lost_in_flight + f.lost_queued + f.refused_while_down);
}

/// A node whose clock runs 60 s ahead judges every request's 30 s deadline passed: from 5 s to
/// 10 s node 1 sheds all it takes (about 500/s × 5 s) with 503, node 0 sheds none; a ramped
/// skew steps up by tenths of the skew.
#[test]
fn clock_skew_ahead_of_the_deadline_sheds_the_skewed_nodes_requests() {
    let base = describe_topology(2, node_cfg(GcProfile::Off), flat_db(0.001), 1_000.0, 15);
    let skew = FaultKind::ClockSkew {
        skew_ns: 60_000_000_000,
    };
    let topo = with(&base, vec![fault(skew.clone(), Target::Node(1), 5, 5)]);
    let (plain, _) = run_checked(&base, 8, |_| {});
    let (r, _) = run_checked(&topo, 8, |_| {});
    let shed = |r: &RunResult, i: usize| r.counter(&format!("node.{i}.shed_expired"));
    assert_eq!(shed(&plain, 0) + shed(&plain, 1) + shed(&r, 0), 0);
    assert!(
        within(shed(&r, 1) as f64, 500.0 * 5.0, 0.1),
        "node 1 shed {}",
        shed(&r, 1)
    );
    let unavailable = r
        .api(Api::DescribeInstanceStatus)
        .count(Status::Err(ErrorCode::ServiceUnavailable));
    assert_eq!(unavailable, shed(&r, 1));
    assert_eq!(r.nodes[0].latency.hdr(), plain.nodes[0].latency.hdr());

    // Ramped over 4 s: at 7 s (half-way) the skew is 6/10 of it, from 9 s on all of it.
    let ramped = fault(skew, Target::Node(1), 5, 5)
        .with_ramp(SimDuration::from_secs(4))
        .unwrap();
    let topo = with(&base, vec![ramped]);
    let mut w = run_to(&topo, 8, secs(7));
    assert_eq!(w.node_mut(1).fault_stats().clock_skew_ns, 36_000_000_000);
    assert_eq!(w.node_mut(0).fault_stats().clock_skew_ns, 0);
    let mut w = run_to(&topo, 8, secs(9));
    assert_eq!(w.node_mut(1).fault_stats().clock_skew_ns, 60_000_000_000);
}

/// Every node crashes for 3 s: requests fail fast with 502 until the health check notices
/// (1 s), then the gateway has no node and answers 503 itself (about 1,000/s × 2 s); after the
/// restart every node serves again.
#[test]
fn a_crash_of_every_node_is_502_then_503_at_the_gateway() {
    let base = describe_topology(2, node_cfg(GcProfile::Off), flat_db(0.001), 1_000.0, 10);
    let topo = with(
        &base,
        vec![fault(FaultKind::NodeCrash, Target::Nodes, 4, 3)],
    );
    let (r, mut world) = run_checked(&topo, 12, |_| {});
    let api = r.api(Api::DescribeInstanceStatus);
    let refused: u64 = r.nodes.iter().map(|n| n.faults.refused_while_down).sum();
    let lost: u64 = r
        .nodes
        .iter()
        .map(|n| n.faults.lost_in_flight + n.faults.lost_queued)
        .sum();
    assert_eq!(
        api.count(Status::Err(ErrorCode::BadGateway)),
        refused + lost
    );
    assert!(within(refused as f64, 1_000.0, 0.1), "refused {refused}");
    let unavailable = api.count(Status::Err(ErrorCode::ServiceUnavailable));
    assert!(
        within(unavailable as f64, 2_000.0, 0.1),
        "503 {unavailable}"
    );
    for i in 0..2 {
        assert_eq!(r.nodes[i].faults.crashes, 1);
        assert!(world.gateway_mut().node_up(i));
    }
}

/// Workflow admission acknowledgements to the crashed process are ignored: the engine's
/// acknowledgements take 2 s to come back (its hop), node.0 is down from 5 s for 0.5 s, so the
/// acknowledgements of the commands node.0 sent in the 2 s before the crash come to the dead
/// process (dropped) or to the new one (stale: their requests died with the old process,
/// which answered them 502). None is answered twice, no worker is held, and node.1 sees none.
#[test]
fn workflow_acknowledgements_to_the_old_process_are_ignored() {
    let base = run_instances_with_workflows(SimDuration::from_secs(2));
    let topo = with(&base, vec![short_crash_of_node0()]);
    let (r, mut world) = run_checked(&topo, 4, |_| {});
    let f = r.nodes[0].faults;
    // ~10 commands a second from node.0, each waiting 2 s for its acknowledgement: about 20
    // requests wait at the crash; those sent from 3.5 s on are acknowledged after the restart.
    assert!(f.lost_in_flight >= 10, "{f:?}");
    assert!((5..=25).contains(&f.stale_wf_acks), "{f:?}");
    assert!(f.dropped_while_down > 0, "{f:?}");
    assert_eq!(r.nodes[1].faults.stale_wf_acks, 0);
    assert_eq!(r.node_counter("wf_ack_timeouts"), 0);
    assert_eq!(world.node_mut(0).in_flight(), 0);
    // Every command was admitted; every request not lost to the crash was answered OK once,
    // after its acknowledgement (2 s of the engine's hop).
    let api = r.api(Api::RunInstances);
    let bad = api.count(Status::Err(ErrorCode::BadGateway));
    assert_eq!(bad, f.lost_in_flight + f.lost_queued + f.refused_while_down);
    assert_eq!(
        api.count(Status::Ok) + bad,
        api.requests,
        "{:?}",
        api.status
    );
    assert!(api.latency.quantile_ns(0.5).unwrap() > 2_000_000_000);
}

/// Workflow admission acknowledgements that reach a paused node wait out the pause, as the
/// database's replies do: the engine's acknowledgements take 1 s to come back (its hop),
/// node.0 stops the world from 5 s to 7 s, so the acknowledgements of the commands it sent
/// from 4 s to 5 s arrive during the pause and are applied at its end. None is lost or
/// applied twice, no request waits past its 5 s query timeout (the longest wait is 3 s), and
/// every RunInstances is answered OK.
#[test]
fn workflow_acknowledgements_wait_out_a_pause() {
    let base = run_instances_with_workflows(SimDuration::SECOND);
    let pause = FaultKind::NodePause {
        pause: Dist::constant(2.0).unwrap(),
        every: None,
    };
    let topo = with(&base, vec![fault(pause, Target::Node(0), 5, 2)]);
    let (plain, _) = run_checked(&base, 4, |_| {});
    let (r, mut world) = run_checked(&topo, 4, |_| {});
    let f = r.nodes[0].faults;
    assert_eq!((f.injected_pauses, f.injected_pause_ns), (1, 2_000_000_000));
    for i in 0..2 {
        assert_eq!(r.nodes[i].faults.stale_wf_acks, 0, "node.{i}");
    }
    assert_eq!(r.node_counter("wf_ack_timeouts"), 0);
    assert_eq!(r.node_counter("wf_refused"), 0);
    assert_eq!(world.node_mut(0).in_flight(), 0);
    let api = r.api(Api::RunInstances);
    assert_eq!(api.count(Status::Ok), api.requests, "{:?}", api.status);
    assert_eq!(api.requests, plain.api(Api::RunInstances).requests);
    // The acknowledgement's hop of 1 s: no answer comes sooner. On node.0 a request that
    // arrived at the pause's start waits 2 s for it to end, then 1 s for its acknowledgement,
    // as long as one whose acknowledgement came at the start of the pause (sent at 4 s,
    // applied at 7 s); without the pause no request takes much more than the hop.
    let lat = |r: &RunResult, i: usize| r.nodes[i].latency.max_ns().unwrap();
    assert!(r.nodes[0].latency.min_ns().unwrap() >= 1_000_000_000);
    assert!(
        (2_900_000_000..3_100_000_000).contains(&lat(&r, 0)),
        "{}",
        lat(&r, 0)
    );
    assert!(lat(&plain, 0) < 1_100_000_000, "{}", lat(&plain, 0));
    // node.1 never paused (it takes more of the load while node.0 is paused: the balancer
    // sends work where fewer requests are outstanding).
    assert_eq!(r.nodes[1].faults.injected_pauses, 0);
    assert!(lat(&r, 1) < 1_100_000_000, "{}", lat(&r, 1));
}

/// Two nodes taking 20 RunInstances a second for 3 s, through a workflow engine whose
/// acknowledgements take `ack_hop` to come back (its database hop).
fn run_instances_with_workflows(ack_hop: SimDuration) -> Topology {
    use firedrill::workflow::EngineConfig;
    use firedrill::world::WorkflowSetup;
    let t = traffic(
        20.0,
        ApiMix::only(Api::RunInstances),
        3,
        SimDuration::from_secs(30),
    );
    let engine = EngineConfig::builder()
        .hops(ack_hop, SimDuration::from_us(250))
        .build()
        .unwrap();
    topology(
        2,
        node_cfg(GcProfile::Off),
        DbConfig::assumed_defaults(),
        t,
        unlimited(3),
        12,
    )
    .with_workflows(WorkflowSetup {
        engine,
        batch: true,
    })
    .unwrap()
}
