//! Tests of the heap model against hand-computed values.

use super::*;
use crate::kernel::{RootSeed, SimDuration, SimTime};

fn ms(n: u64) -> SimDuration {
    SimDuration::from_ms(n)
}
fn us(n: u64) -> SimDuration {
    SimDuration::from_us(n)
}
fn at_ms(n: u64) -> SimTime {
    SimTime::ZERO + ms(n)
}
fn just_before(t: SimTime) -> SimTime {
    SimTime::from_ns(t.as_ns() - 1)
}

/// A small heap with round numbers: eden 64 MiB, survivor 8 MiB, old 256 MiB (328 MiB in all),
/// 1/16 of eden survives (4 MiB of a full eden), half the survivors are promoted, live set
/// 64 MiB; young 2 ms + 0.5 ms/MiB, full 20 ms + 1 ms/MiB.
fn small(profile: GcProfile) -> HeapSpec {
    HeapSpec {
        profile,
        eden_bytes: 64 * MIB,
        survivor_bytes: 8 * MIB,
        old_bytes: 256 * MIB,
        survival_ratio: 0.0625,
        tenuring_ratio: 0.5,
        young_pause_base: ms(2),
        young_pause_per_mib_surviving: us(500),
        full_pause_base: ms(20),
        full_pause_per_mib_live: ms(1),
        live_set_bytes: 64 * MIB,
        background_alloc_bytes_per_s: 0,
        g1: G1Params::hotspot_defaults(),
        zgc: ZgcParams::hotspot_defaults(),
    }
}

fn heap(spec: HeapSpec) -> Heap {
    Heap::new(spec.build().expect("valid test spec"))
}

/// What a node does: `requests` allocations of `chunk` bytes planned every `gap` from `gap` on;
/// a request due while the world is stopped runs when it resumes; the heap's timer is honoured.
/// `hook(i, heap)` runs before request `i`. Returns every pause with the instant it began.
fn drive(
    heap: &mut Heap,
    requests: u64,
    gap: SimDuration,
    chunk: u64,
    mut hook: impl FnMut(u64, &mut Heap),
) -> Vec<(SimTime, Pause)> {
    let mut pauses = Vec::new();
    let mut resume = SimTime::ZERO;
    let mut done = 0;
    let mut planned = SimTime::ZERO + gap;
    let mut guard = 0u64;
    while done < requests {
        guard += 1;
        assert!(
            guard < 100 * requests + 1_000,
            "the driver is not making progress"
        );
        let due = planned.max(resume);
        let timer = heap.next_background_trigger(resume);
        let (now, result) = match timer {
            Some(t) if t < due => (t, heap.advance(t)),
            _ => {
                hook(done, heap);
                done += 1;
                planned += gap;
                (due, heap.allocate(due, chunk))
            }
        };
        if let Some(p) = result {
            resume = now + p.duration;
            pauses.push((now, p));
        }
    }
    pauses
}

/// 100 MiB/s as 1 MiB every 10 ms.
fn steady_load(heap: &mut Heap, seconds: u64) -> Vec<(SimTime, Pause)> {
    drive(heap, seconds * 100, ms(10), MIB, |_, _| {})
}

fn young_and_mixed(h: &Heap) -> u64 {
    h.stats().count(PauseKind::Young) + h.stats().count(PauseKind::Mixed)
}

fn assert_balanced(h: &Heap) {
    let s = h.stats();
    assert_eq!(
        s.bytes_allocated(),
        s.occupancy().total_used()
            + s.bytes_reclaimed()
            + s.bytes_out_of_memory()
            + s.bytes_lost_on_restart()
    );
    assert_eq!(s.occupancy(), h.occupancy());
}

#[test]
fn young_gc_count_is_allocated_over_eden_and_halves_with_double_eden() {
    for profile in [GcProfile::Parallel, GcProfile::G1] {
        // 100 s at 100 MiB/s = 10,000 MiB; eden 64 MiB: floor(10000 / 64) = 156.
        let mut h = heap(small(profile));
        steady_load(&mut h, 100);
        assert_eq!(h.stats().bytes_allocated(), 10_000 * MIB);
        let n64 = young_and_mixed(&h);
        assert!((155..=157).contains(&n64), "{profile}: {n64} young GCs");

        let mut h = heap(HeapSpec {
            eden_bytes: 128 * MIB,
            ..small(profile)
        });
        steady_load(&mut h, 100);
        let n128 = young_and_mixed(&h);
        assert!((77..=79).contains(&n128), "{profile}: {n128} young GCs");
        assert!(n64.abs_diff(2 * n128) <= 1, "{n64} vs {n128}");
        assert_balanced(&h);
    }
}

#[test]
fn young_gc_interval_is_eden_over_allocation_rate() {
    // Background only, 100 MiB/s into a 64 MiB eden: the first GC at exactly 640 ms, then one
    // every 640 ms of running time (the clock stops during pauses).
    let mut h = heap(HeapSpec {
        background_alloc_bytes_per_s: 100 * MIB,
        ..small(GcProfile::Parallel)
    });
    let mut t = SimTime::ZERO;
    let mut resumed = SimTime::ZERO;
    for _ in 0..10 {
        let trigger = h.next_background_trigger(t).unwrap();
        assert_eq!(trigger.saturating_since(resumed), ms(640));
        let p = h.advance(trigger).expect("eden is full");
        assert_eq!(p.kind, PauseKind::Young);
        t = trigger + p.duration;
        resumed = t;
    }
    assert_eq!(h.stats().count(PauseKind::Young), 10);
}

#[test]
fn young_pause_is_base_plus_per_mib_surviving() {
    let mut h = heap(small(GcProfile::Parallel));
    // Eden 64 MiB full: 4 MiB survive, survivor space empty: 2 ms + 4 × 0.5 ms.
    assert_eq!(
        h.allocate(at_ms(1), 64 * MIB),
        Some(Pause {
            kind: PauseKind::Young,
            duration: ms(4)
        })
    );
    let o = h.occupancy();
    assert_eq!((o.eden_used, o.survivor_used, o.old_used), (0, 4 * MIB, 0));
    // Next: 4 MiB from eden + 2 MiB (half the survivors) promoted = 6 MiB copied: 5 ms.
    let p = h.allocate(at_ms(1_000), 64 * MIB).unwrap();
    assert_eq!(p.duration, ms(5));
    let o = h.occupancy();
    assert_eq!(
        (o.survivor_used, o.old_used, o.old_live),
        (4 * MIB, 2 * MIB, 2 * MIB)
    );
    assert_eq!(h.stats().bytes_promoted(), 2 * MIB);
    assert_eq!(
        h.stats().histogram(PauseKind::Young).min_ns(),
        Some(4_000_000)
    );
    assert_eq!(
        h.stats().histogram(PauseKind::Young).max_ns(),
        Some(5_000_000)
    );

    // A fraction that does not divide: 10% of 64 MiB = 6,710,886 bytes (rounded down), and
    // 0.5 ms × 6,710,886 / 1 MiB = 3,199,999.6 ns (rounded down).
    let mut h = heap(HeapSpec {
        survival_ratio: 0.1,
        ..small(GcProfile::G1)
    });
    let p = h.allocate(at_ms(1), 64 * MIB).unwrap();
    assert_eq!(h.occupancy().survivor_used, 6_710_886);
    assert_eq!(p.duration, SimDuration::from_ns(2_000_000 + 3_199_999));
    assert_balanced(&h);
}

#[test]
fn a_call_during_a_pause_is_accounted_at_its_end() {
    let mut h = heap(small(GcProfile::Parallel));
    assert_eq!(h.allocate(at_ms(0), 64 * MIB).unwrap().duration, ms(4));
    // 1 ms into that 4 ms pause another 64 MiB: its 5 ms young GC runs after the first pause, so
    // the world runs again 3 + 5 ms after this call.
    assert_eq!(h.allocate(at_ms(1), 64 * MIB).unwrap().duration, ms(8));
    assert_eq!(h.stats().total_paused_ns(), 9_000_000);
}

/// Survival 1/4 of eden = 16 MiB, of which 8 MiB fit the survivor space and 8 MiB overflow into
/// old; with half the 8 MiB of survivors tenured that is 12 MiB promoted per young GC, whose
/// pause is 2 ms + 0.5 ms × (16 + 4) MiB = 12 ms.
fn promoting(live: u64) -> HeapSpec {
    HeapSpec {
        survival_ratio: 0.25,
        live_set_bytes: live,
        ..small(GcProfile::Parallel)
    }
}

/// Allocates a full eden per second until a pause of `kind`; returns it.
fn until_pause(h: &mut Heap, kind: PauseKind, from_s: u64) -> (u64, Pause) {
    for s in from_s..from_s + 10_000 {
        if let Some(p) = h.allocate(SimTime::ZERO + SimDuration::from_secs(s), 64 * MIB) {
            if p.kind == kind {
                return (s, p);
            }
        }
    }
    panic!("no {kind} pause");
}

#[test]
fn full_gc_when_old_fills_pauses_for_the_live_set_and_leaves_only_live_data() {
    let mut h = heap(promoting(64 * MIB));
    let (_, p) = until_pause(&mut h, PauseKind::Full, 1);
    // Young (12 ms) then full: 20 ms + 1 ms × 64 MiB live.
    assert_eq!(h.stats().count(PauseKind::Full), 1);
    assert_eq!(
        h.stats().histogram(PauseKind::Full).max_ns(),
        Some(84_000_000)
    );
    assert_eq!(
        p,
        Pause {
            kind: PauseKind::Full,
            duration: ms(12 + 84)
        }
    );
    let o = h.occupancy();
    assert_eq!(o.old_used, 64 * MIB);
    assert_eq!(o.old_used, o.old_live);
    assert_eq!(h.stats().bytes_out_of_memory(), 0);
    assert_balanced(&h);
}

#[test]
fn a_live_set_beyond_old_capacity_thrashes_with_a_full_gc_per_young_gc() {
    let mut h = heap(promoting(300 * MIB));
    let (s, _) = until_pause(&mut h, PauseKind::Full, 1);
    // Old holds as much live data as fits: 256 MiB; the full GC costs 20 + 256 ms.
    let o = h.occupancy();
    assert_eq!((o.old_used, o.old_live), (256 * MIB, 256 * MIB));
    assert_eq!(
        h.stats().histogram(PauseKind::Full).max_ns(),
        Some(276_000_000)
    );
    let lost = h.stats().bytes_out_of_memory();
    assert!(lost > 0);
    // From now on every young GC ends in a full GC.
    for k in 1..=10 {
        let p = h
            .allocate(SimTime::ZERO + SimDuration::from_secs(s + k), 64 * MIB)
            .unwrap();
        assert_eq!(
            p,
            Pause {
                kind: PauseKind::Full,
                duration: ms(12 + 276)
            }
        );
    }
    assert_eq!(h.stats().count(PauseKind::Full), 11);
    assert!(h.stats().bytes_out_of_memory() > lost);
    assert_balanced(&h);
}

#[test]
fn g1_concurrent_cycles_avoid_the_full_gcs_parallel_needs() {
    // 10 minutes at 100 MiB/s: ≈ 937 young GCs promoting 2 MiB each into a 256 MiB old
    // generation around a 64 MiB live set.
    let mut parallel = heap(small(GcProfile::Parallel));
    let p_pauses = steady_load(&mut parallel, 600);
    // Parallel: live set full after ≈ 32 GCs, then a full GC every 192 MiB / 2 MiB = 96 GCs.
    let fulls: Vec<SimTime> = p_pauses
        .iter()
        .filter(|(_, p)| p.kind == PauseKind::Full)
        .map(|(t, _)| *t)
        .collect();
    assert!((8..=10).contains(&fulls.len()), "{} full GCs", fulls.len());
    // Periodic: every interval ≈ 96 × 0.64 s ≈ 61 s (plus pauses).
    for w in fulls.windows(2) {
        let gap = w[1].saturating_since(w[0]).as_secs_f64();
        assert!((60.0..64.0).contains(&gap), "full GCs {gap} s apart");
    }

    let mut g1 = heap(small(GcProfile::G1));
    let mut max_old = 0;
    let pauses = drive(&mut g1, 60_000, ms(10), MIB, |_, h| {
        max_old = max_old.max(h.occupancy().old_used);
    });
    let s = g1.stats();
    assert_eq!(s.count(PauseKind::Full), 0);
    assert!(
        s.concurrent_cycles() >= 8,
        "{} cycles",
        s.concurrent_cycles()
    );
    assert!(s.count(PauseKind::Remark) + 1 >= s.concurrent_cycles());
    assert_eq!(s.count(PauseKind::Remark), s.count(PauseKind::Cleanup));
    // Each cycle's garbage goes in 8 mixed GCs (the last cycle's may not be over).
    let (mixed, cleanups) = (s.count(PauseKind::Mixed), s.count(PauseKind::Cleanup));
    assert!(
        mixed <= 8 * cleanups && mixed > 8 * (cleanups - 1),
        "{mixed} mixed"
    );
    // Old stays around IHOP (45% of 328 MiB = 147.6 MiB), far below its 256 MiB.
    assert!(max_old < 160 * MIB, "old peaked at {} MiB", max_old / MIB);
    assert!(max_old > 140 * MIB);
    // The same young GCs as Parallel (some of them mixed).
    assert_eq!(young_and_mixed(&g1), young_and_mixed(&parallel));
    // Every pause well under the 200 ms target; Parallel's full GCs are not.
    assert!(pauses.iter().all(|(_, p)| p.duration < ms(200)));
    assert!(p_pauses.iter().any(|(_, p)| p.duration > ms(80)));
    assert_balanced(&g1);
    assert_balanced(&parallel);
}

#[test]
fn g1_mixed_gcs_stay_within_the_pause_target() {
    // Young pauses are ≈ 5 ms; a 6 ms target leaves 1 ms = 5 MiB of reclaim per mixed GC, so a
    // cycle takes more than 8 mixed GCs, none over the target, and still no full GC.
    let mut spec = small(GcProfile::G1);
    spec.g1.pause_target = ms(6);
    let mut h = heap(spec);
    steady_load(&mut h, 600);
    let s = h.stats();
    assert_eq!(s.count(PauseKind::Full), 0);
    assert!(s.count(PauseKind::Mixed) > 8 * s.count(PauseKind::Cleanup));
    assert!(s.histogram(PauseKind::Mixed).max_ns().unwrap() <= 6_000_000);
    // A target below the young base is refused with the fix.
    let mut bad = small(GcProfile::G1);
    bad.g1.pause_target = ms(2);
    let err = bad.build().unwrap_err();
    assert!(matches!(
        err,
        HeapConfigError::PauseTargetBelowYoungBase { .. }
    ));
    assert!(err.to_string().contains("raise the target"));
}

#[test]
fn g1_cycle_phases_follow_the_configured_durations() {
    // Warm: old holds a 32 MiB live set. IHOP at 9% of 328 MiB = 29.52 MiB: the first young GC
    // starts a cycle; marking takes 10 ms + 1 ms × 32 MiB = 42 ms after that GC's 4 ms pause.
    let mut spec = small(GcProfile::G1);
    spec.g1.ihop_fraction = 0.09;
    spec.live_set_bytes = 32 * MIB;
    let mut h = Heap::new_warm(spec.build().unwrap());
    assert_eq!(h.occupancy().old_used, 32 * MIB);
    let p = h.allocate(at_ms(0), 64 * MIB).unwrap();
    assert_eq!(p.duration, ms(4));
    assert!(h.concurrent_cycle_running());
    assert_eq!(h.stats().concurrent_cycles(), 1);
    let remark_at = at_ms(4 + 10 + 32);
    assert_eq!(h.next_background_trigger(at_ms(4)), Some(remark_at));
    assert_eq!(h.advance(just_before(remark_at)), None);
    // Remark 10 ms and cleanup 2 ms, merged; the more severe kind is reported.
    assert_eq!(
        h.advance(remark_at),
        Some(Pause {
            kind: PauseKind::Remark,
            duration: ms(12)
        })
    );
    assert!(!h.concurrent_cycle_running());
    assert_eq!(h.stats().count(PauseKind::Cleanup), 1);
}

#[test]
fn zgc_pauses_stay_under_a_millisecond_with_ample_headroom() {
    // Same load as above on one 328 MiB heap: cycles start at 70% (229.6 MiB), take
    // 10 ms + 0.5 ms × 64 MiB live = 42 ms, during which 4.2 MiB are allocated into ≈ 98 MiB of
    // headroom.
    let mut h = heap(small(GcProfile::Zgc));
    let pauses = steady_load(&mut h, 600);
    let s = h.stats();
    assert_eq!(s.count(PauseKind::AllocationStall), 0);
    assert_eq!(s.count(PauseKind::Full) + s.count(PauseKind::Young), 0);
    assert!(
        s.concurrent_cycles() > 200,
        "{} cycles",
        s.concurrent_cycles()
    );
    assert!(s.all_pauses().max_ns().unwrap() < 1_000_000);
    assert!(pauses.iter().all(|(_, p)| p.duration < ms(1)));
    // Three pauses per cycle (the last cycle may still be running).
    let deficit = 3 * s.concurrent_cycles() - s.count(PauseKind::ZgcPause);
    assert!(deficit == 0 || deficit == 2, "{deficit}");
    assert!(h.cpu_multiplier() > 1.0);
    assert_eq!(h.cpu_multiplier(), 1.10);
    assert_balanced(&h);
}

#[test]
fn zgc_stalls_allocation_when_the_cycle_outruns_the_headroom() {
    // Trigger at 99%: 3.28 MiB of headroom lasts 33 ms at 100 MiB/s, shorter than the 42 ms cycle.
    let mut spec = small(GcProfile::Zgc);
    spec.zgc.trigger_fraction = 0.99;
    let mut h = heap(spec);
    let pauses = steady_load(&mut h, 600);
    let s = h.stats();
    let stalls = s.count(PauseKind::AllocationStall);
    assert!(stalls > 100, "{stalls} stalls");
    // A stall lasts at most the rest of a cycle.
    assert!(s.histogram(PauseKind::AllocationStall).max_ns().unwrap() <= 42_000_000);
    assert!(s.histogram(PauseKind::AllocationStall).min_ns().unwrap() > 0);
    assert!(
        pauses
            .iter()
            .any(|(_, p)| p.kind == PauseKind::AllocationStall)
    );
    assert_eq!(s.histogram(PauseKind::ZgcPause).max_ns(), Some(100_000));
    assert_balanced(&h);
}

#[test]
fn zgc_cycle_timeline_and_stall_are_exact() {
    let mut spec = small(GcProfile::Zgc);
    spec.zgc.trigger_fraction = 0.5; // 164 MiB of 328
    let mut h = heap(spec);
    // 164 MiB at t=0: 64 MiB live + 100 MiB garbage; the cycle starts (pause mark start).
    assert_eq!(
        h.allocate(at_ms(0), 164 * MIB),
        Some(Pause {
            kind: PauseKind::ZgcPause,
            duration: us(100)
        })
    );
    // Cycle: 10 ms + 0.5 ms × 64 = 42 ms; mark end + relocate start at 21 ms.
    assert_eq!(h.next_background_trigger(at_ms(1)), Some(at_ms(21)));
    let mut probe = h.clone();
    assert_eq!(probe.advance(at_ms(21)).unwrap().duration, us(200));
    assert_eq!(probe.next_background_trigger(at_ms(22)), Some(at_ms(42)));
    assert_eq!(probe.advance(at_ms(42)), None);
    assert_eq!(probe.occupancy().old_used, 64 * MIB);
    assert_eq!(probe.stats().bytes_reclaimed_old(), 100 * MIB);

    // Instead: the headroom (164 MiB) fills exactly at 1 ms, and one more byte at 2 ms stalls
    // until the cycle ends at 42 ms; the two pauses at 21 ms fall inside the wait. The cycle frees
    // 100 MiB, leaving 228 MiB + 1 byte, above the trigger: the next cycle starts at once.
    assert_eq!(h.allocate(at_ms(1), 164 * MIB), None);
    let p = h.allocate(at_ms(2), 1).unwrap();
    assert_eq!(
        p,
        Pause {
            kind: PauseKind::AllocationStall,
            duration: ms(40) + us(100)
        }
    );
    let s = h.stats();
    assert_eq!(
        s.histogram(PauseKind::AllocationStall).max_ns(),
        Some(39_800_000)
    );
    assert_eq!(s.count(PauseKind::ZgcPause), 4);
    assert_eq!(s.concurrent_cycles(), 2);
    assert_eq!(h.occupancy().old_used, 228 * MIB + 1);
    assert_balanced(&h);
}

#[test]
fn off_never_pauses_and_costs_nothing() {
    let mut h = heap(HeapSpec {
        background_alloc_bytes_per_s: 500 * MIB,
        live_set_bytes: 10 * GIB,
        ..small(GcProfile::Off)
    });
    let pauses = steady_load(&mut h, 600);
    h.add_live_bytes(GIB);
    assert!(pauses.is_empty());
    assert_eq!(h.advance(at_ms(10_000_000)), None);
    let s = h.stats();
    assert_eq!(s.all_pauses().count(), 0);
    assert_eq!(s.total_paused_ns(), 0);
    // Requests and 500 MiB/s in the background, counted but never collected.
    assert_eq!(s.bytes_allocated(), 60_000 * MIB + 500 * MIB * 10_000);
    assert_eq!(h.next_background_trigger(SimTime::ZERO), None);
    assert_eq!(h.cpu_multiplier(), 1.0);
    assert_eq!(h.occupancy(), HeapOccupancy::default());
}

#[test]
fn growing_the_live_set_brings_full_gcs_sooner() {
    // Parallel, 10 minutes; at 2 minutes the live set grows by 96 MiB (a leak). Room for garbage
    // in old shrinks from 192 MiB to 96 MiB: full GCs twice as often, each 96 ms longer.
    let mut base = heap(small(GcProfile::Parallel));
    let base_pauses = steady_load(&mut base, 600);
    let mut leaky = heap(small(GcProfile::Parallel));
    let leaky_pauses = drive(&mut leaky, 60_000, ms(10), MIB, |i, h| {
        if i == 12_000 {
            h.add_live_bytes(96 * MIB);
        }
    });
    let fulls_after = |pauses: &[(SimTime, Pause)]| {
        pauses
            .iter()
            .filter(|(t, p)| p.kind == PauseKind::Full && *t > at_ms(150_000))
            .count()
    };
    let (b, l) = (fulls_after(&base_pauses), fulls_after(&leaky_pauses));
    assert!(l >= 2 * b - 1 && l >= 8, "baseline {b}, leaky {l}");
    assert_eq!(leaky.live_set_bytes(), 160 * MIB);
    let full_max = |h: &Heap| h.stats().histogram(PauseKind::Full).max_ns().unwrap();
    assert_eq!(full_max(&base), 84_000_000);
    assert_eq!(full_max(&leaky), 180_000_000);
    assert_balanced(&leaky);
}

#[test]
fn next_background_trigger_is_when_background_allocation_fills_eden() {
    // 100 MiB/s into an empty 64 MiB eden: exactly 640 ms, and not a nanosecond earlier.
    let mut h = heap(HeapSpec {
        background_alloc_bytes_per_s: 100 * MIB,
        ..small(GcProfile::G1)
    });
    assert_eq!(h.next_background_trigger(SimTime::ZERO), Some(at_ms(640)));
    assert_eq!(h.advance(just_before(at_ms(640))), None);
    assert_eq!(h.occupancy().eden_used, 64 * MIB - 1);
    assert_eq!(h.next_background_trigger(at_ms(100)), Some(at_ms(640)));
    let p = h.advance(at_ms(640)).unwrap();
    assert_eq!((p.kind, p.duration), (PauseKind::Young, ms(4)));
    // Eden empty again; the clock restarts when the pause ends.
    assert_eq!(
        h.next_background_trigger(at_ms(640)),
        Some(at_ms(644 + 640))
    );
    // With request allocation too: free eden / rate from now.
    h.allocate(at_ms(700), 16 * MIB);
    // 56 ms at 100 MiB/s = 5.6 MiB in the background, 16 MiB by the request.
    let free = 64 * MIB - h.occupancy().eden_used;
    let expect_ns = free as u128 * 1_000_000_000 / (100 * MIB) as u128;
    let trigger = h.next_background_trigger(at_ms(700)).unwrap();
    let got_ns = trigger.saturating_since(at_ms(700)).as_ns() as u128;
    // Within the fraction of a byte already accrued (1e9 / rate = 9.5 ns) plus rounding.
    assert!(expect_ns.abs_diff(got_ns) <= 10, "{expect_ns} vs {got_ns}");

    // Any profile, awkward rates and instants: the trigger is the first instant that collects
    // (ZGC: starts a cycle); at ≥ 1e9 bytes/s it is free / rate to ±1 ns.
    for profile in [GcProfile::G1, GcProfile::Parallel, GcProfile::Zgc] {
        for rate in [7_777_777, 3 * GIB, 100 * MIB + 1] {
            let mut h = heap(HeapSpec {
                background_alloc_bytes_per_s: rate,
                ..small(profile)
            });
            let now = SimTime::from_ns(1_234_567);
            h.allocate(now, 3 * MIB + 12_345);
            let o = h.occupancy();
            let free = match profile {
                GcProfile::Zgc => h.config().zgc_trigger_bytes - o.old_used,
                _ => 64 * MIB - o.eden_used,
            };
            let t = h.next_background_trigger(now).unwrap();
            let exact = free as f64 * 1e9 / rate as f64;
            let got = t.saturating_since(now).as_ns() as f64;
            // The fraction of a byte already accrued is worth up to 1e9 / rate ns.
            let tolerance = (1e9 / rate as f64).max(1.0);
            assert!(
                (got - exact).abs() <= tolerance,
                "{profile} at {rate} B/s: {got} vs {exact}"
            );
            let mut early = h.clone();
            assert_eq!(early.advance(just_before(t)), None);
            let p = h.advance(t).expect("collects at the trigger");
            let kind = if profile == GcProfile::Zgc {
                PauseKind::ZgcPause
            } else {
                PauseKind::Young
            };
            assert_eq!(p.kind, kind);
        }
    }
    // No background allocation, nothing running: no timer.
    let h = heap(small(GcProfile::Parallel));
    assert_eq!(h.next_background_trigger(SimTime::ZERO), None);
}

/// Random request sizes and gaps from a seeded stream, plus background allocation and a leak.
fn random_run(profile: GcProfile, seed: u64) -> Heap {
    let mut h = heap(HeapSpec {
        background_alloc_bytes_per_s: 7 * MIB,
        survival_ratio: 0.2,
        ..small(profile)
    });
    let mut rng = RootSeed::new(seed).fork("gc.test.load");
    let mut t = SimTime::ZERO;
    for i in 0..50_000u64 {
        t += SimDuration::from_ns(1 + rng.below(20_000_000));
        if i == 25_000 {
            h.add_live_bytes(40 * MIB);
        }
        if let Some(p) = h.allocate(t, rng.below(2 * MIB)) {
            t += p.duration;
        }
    }
    h
}

fn same_stats(a: &GcStats, b: &GcStats) -> bool {
    PauseKind::ALL.iter().all(|&k| {
        let (x, y) = (a.histogram(k), b.histogram(k));
        x.count() == y.count()
            && x.max_ns() == y.max_ns()
            && x.min_ns() == y.min_ns()
            && x.mean_ns() == y.mean_ns()
            && x.hdr() == y.hdr()
    }) && a.all_pauses().hdr() == b.all_pauses().hdr()
        && a.total_paused_ns() == b.total_paused_ns()
        && a.bytes_allocated() == b.bytes_allocated()
        && a.bytes_allocated_background() == b.bytes_allocated_background()
        && a.bytes_promoted() == b.bytes_promoted()
        && a.bytes_reclaimed_young() == b.bytes_reclaimed_young()
        && a.bytes_reclaimed_old() == b.bytes_reclaimed_old()
        && a.bytes_out_of_memory() == b.bytes_out_of_memory()
        && a.concurrent_cycles() == b.concurrent_cycles()
        && a.occupancy() == b.occupancy()
}

#[test]
fn the_same_calls_give_the_same_stats() {
    for profile in GcProfile::ALL {
        let (a, b) = (random_run(profile, 11), random_run(profile, 11));
        assert!(same_stats(a.stats(), b.stats()), "{profile}");
        if profile != GcProfile::Off {
            assert_balanced(&a);
            assert!(a.stats().all_pauses().count() > 10, "{profile}");
            let c = random_run(profile, 12);
            assert!(!same_stats(a.stats(), c.stats()), "{profile}: seed ignored");
        }
    }
}

#[test]
fn config_is_validated_with_the_fix_in_the_message() {
    use HeapConfigError as E;
    let bad = |f: fn(&mut HeapSpec)| {
        let mut s = small(GcProfile::G1);
        f(&mut s);
        s.build().unwrap_err()
    };
    assert_eq!(
        bad(|s| s.eden_bytes = 0),
        E::EmptyGeneration {
            field: "eden_bytes"
        }
    );
    assert!(matches!(
        bad(|s| s.survival_ratio = 1.5),
        E::FractionOutOfRange {
            field: "survival_ratio",
            ..
        }
    ));
    assert!(matches!(
        bad(|s| s.tenuring_ratio = f64::NAN),
        E::FractionOutOfRange { .. }
    ));
    assert_eq!(bad(|s| s.old_bytes = u64::MAX), E::HeapTooLarge);
    assert_eq!(
        bad(|s| s.g1.mixed_gc_count_target = 0),
        E::NoMixedCollections
    );
    let zgc = |f: fn(&mut HeapSpec)| {
        let mut s = small(GcProfile::Zgc);
        f(&mut s);
        s.build()
    };
    assert_eq!(
        zgc(|s| s.zgc.cpu_multiplier = 0.9).unwrap_err(),
        E::CpuMultiplierBelowOne(0.9)
    );
    assert_eq!(
        zgc(|s| s.zgc.cycle_base = SimDuration::ZERO).unwrap_err(),
        E::InstantZgcCycle
    );
    assert!(zgc(|s| s.zgc.trigger_fraction = 0.0).is_err());
    // Another profile's parameters are not checked.
    assert!(zgc(|s| s.g1.mixed_gc_count_target = 0).is_ok());
    assert!(
        bad(|s| s.survival_ratio = -0.1)
            .to_string()
            .contains("0.05 for 5%")
    );

    for p in GcProfile::ALL {
        let cfg = HeapConfig::defaults_for(p);
        assert_eq!(cfg.total_bytes(), 4 * GIB);
        assert_eq!(cfg.profile(), p);
        assert_eq!(p.to_string().parse::<GcProfile>(), Ok(p));
    }
    assert_eq!(" ZGC ".parse::<GcProfile>(), Ok(GcProfile::Zgc));
    assert!(
        "cms"
            .parse::<GcProfile>()
            .unwrap_err()
            .to_string()
            .contains("g1, parallel, zgc, off")
    );
    assert_eq!(PauseKind::AllocationStall.to_string(), "allocation_stall");
    for (i, k) in PauseKind::ALL.iter().enumerate() {
        assert_eq!(k.index(), i);
    }
    assert!(PauseKind::Full > PauseKind::Young && PauseKind::Young > PauseKind::ZgcPause);
}

#[test]
fn documented_defaults_give_documented_pauses() {
    // G1 defaults, warm: a full 1 GiB eden leaves 51.2 MiB (5%) in survivors: young pause
    // 2 ms + 0.5 ms × 51.2 = 27.6 ms (rounded down to the nanosecond).
    let mut h = Heap::new_warm(HeapConfig::defaults_for(GcProfile::G1));
    assert_eq!(h.occupancy().old_live, GIB);
    let p = h.allocate(at_ms(1), GIB).unwrap();
    assert_eq!(p.kind, PauseKind::Young);
    assert_eq!(p.duration, SimDuration::from_ns(27_599_999));
    // ZGC defaults: 1 GiB live, cycle 10 ms + 0.5 ms × 1024 = 522 ms once 70% of 4 GiB is used.
    let mut z = Heap::new_warm(HeapConfig::defaults_for(GcProfile::Zgc));
    assert_eq!(z.allocate(at_ms(1), 3 * GIB / 2), None);
    let p = z.allocate(at_ms(2), GIB / 2).unwrap();
    assert_eq!((p.kind, p.duration), (PauseKind::ZgcPause, us(100)));
    assert_eq!(z.next_background_trigger(at_ms(3)), Some(at_ms(2 + 261)));
}

#[test]
fn a_restart_empties_the_heap_keeps_the_stats_and_balances_bytes() {
    let mut h = heap(small(GcProfile::Parallel));
    let _ = drive(&mut h, 2_000, ms(10), MIB, |_, _| {});
    h.add_live_bytes(32 * MIB);
    h.record_injected_pause(ms(150));
    let young = h.stats().count(PauseKind::Young);
    let used = h.occupancy().total_used();
    assert!(young > 0 && used > 0);
    let configured = small(GcProfile::Parallel).live_set_bytes;
    assert_eq!(h.live_set_bytes(), configured + 32 * MIB);
    // 2,000 requests 10 ms apart: the restart comes after the last one (at 20 s + pauses).
    h.restart(at_ms(60_000));
    assert_eq!(h.occupancy().total_used(), 0);
    assert_eq!(h.live_set_bytes(), configured, "the leak is gone");
    assert_eq!(h.stats().count(PauseKind::Young), young);
    assert_eq!(h.stats().restarts(), 1);
    assert_eq!(h.stats().bytes_lost_on_restart(), used);
    assert_eq!(h.stats().injected().count(), 1);
    assert_eq!(h.stats().injected().max_ns(), Some(150_000_000));
    assert_balanced(&h);
}
