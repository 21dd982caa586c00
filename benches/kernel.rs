//! Kernel speed benchmarks (criterion): `cargo bench --bench kernel`.
//!
//! - `queue_hold/{1000,100000}`: the classic *hold* model on `EventQueue<u64>`: the queue is filled
//!   with N pending timers, then each step pops the earliest and pushes one at `now + delay`, so
//!   the queue stays at N. Throughput: one element = one step (one pop + one push).
//! - `queue_hold_cancel/100000`: the same hold population of 10⁵ timers, plus a request timeout per
//!   step: each step pops the earliest event; if it is a hold timer it is rescheduled and a timeout
//!   is scheduled `TIMEOUT_NS` later, and the timeout scheduled `RESPONSE_LAG` steps earlier is
//!   cancelled with probability 0.9 (its response arrived); the 10% not cancelled fire later and
//!   are popped as ordinary events. This exercises tombstones and heap compaction.
//!   Throughput: one element = one step (one pop, and for a hold pop: two pushes and ~0.9 cancels).
//!   In steady state ~1.2·10⁵ events are live (10⁵ hold timers + ~2·10⁴ timeouts awaiting their
//!   response or firing), ~8% of pops are fired timeouts, and 90% of timeouts are cancelled.
//! - `queue_hold_std_heap/{1000,100000}`: the hold model on a bare `BinaryHeap<Reverse<(time,
//!   seq)>>` with the same delays: no payloads, no cancellation. A floor for reading the above.
//! - `station_mmc/c8_rho0.9`: a whole `run_station` at c = 8, λ = 7.2, μ = 1 with 10⁵ customers
//!   per iteration. Throughput: one element = one customer (three events each).
//!
//! All randomness comes from `RootSeed::fork`. Delays for the queue benchmarks are drawn before
//! timing into a fixed table and replayed cyclically, so the figures measure the queue, not the
//! random generator.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use firedrill::kernel::{Dist, EventQueue, RootSeed, SimTime, TimerId};
use firedrill::station::{StationConfig, run_station};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::Duration;

/// Steps per criterion iteration for the queue benchmarks.
const STEPS: u64 = 10_000;
/// Size of the replayed table of random delays (a power of two).
const TABLE: usize = 1 << 16;
/// Mean hold delay: 1 ms of virtual time; delays are uniform in [1, 2 ms].
const MEAN_DELAY_NS: u64 = 1_000_000;
/// Request timeout in the cancellation benchmark: twice the mean hold delay.
const TIMEOUT_NS: u64 = 2 * MEAN_DELAY_NS;
/// Steps between scheduling a timeout and deciding whether its response cancels it.
const RESPONSE_LAG: usize = 64;
/// Probability that a timeout is cancelled (its response arrived in time).
const CANCEL_P: f64 = 0.9;

/// Payload tags: hold timers and request timeouts.
const HOLD: u64 = 0;
const TIMEOUT: u64 = 1;

fn delay_table(label: &str) -> Vec<u64> {
    let mut rng = RootSeed::new(42).fork("bench").fork(label);
    (0..TABLE)
        .map(|_| 1 + rng.below(2 * MEAN_DELAY_NS))
        .collect()
}

fn cancel_table() -> Vec<bool> {
    let mut rng = RootSeed::new(43).fork("bench").fork("cancel");
    (0..TABLE).map(|_| rng.unit() < CANCEL_P).collect()
}

/// A queue holding `n` hold timers at uniformly random instants in [1, 2 ms].
fn filled_queue(n: usize, delays: &[u64]) -> EventQueue<u64> {
    let mut q = EventQueue::with_capacity(n);
    for i in 0..n {
        q.push(SimTime::from_ns(delays[i % TABLE]), HOLD)
            .expect("in the future");
    }
    q
}

fn queue_hold(c: &mut Criterion) {
    let delays = delay_table("hold");
    let mut g = c.benchmark_group("queue_hold");
    g.throughput(Throughput::Elements(STEPS));
    for &n in &[1_000usize, 100_000] {
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut q = filled_queue(n, &delays);
            let mut i = n;
            b.iter(|| {
                for _ in 0..STEPS {
                    let ev = q.pop().expect("the hold model never drains");
                    let at = SimTime::from_ns(ev.time.as_ns() + delays[i % TABLE]);
                    i = i.wrapping_add(1);
                    q.push(at, black_box(ev.payload)).expect("in the future");
                }
            });
            assert_eq!(q.len(), n, "the hold model keeps the queue size");
        });
    }
    g.finish();
}

fn queue_hold_std_heap(c: &mut Criterion) {
    let delays = delay_table("hold");
    let mut g = c.benchmark_group("queue_hold_std_heap");
    g.throughput(Throughput::Elements(STEPS));
    for &n in &[1_000usize, 100_000] {
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut h: BinaryHeap<Reverse<(u64, u64)>> = (0..n)
                .map(|i| Reverse((delays[i % TABLE], i as u64)))
                .collect();
            let mut i = n;
            b.iter(|| {
                for _ in 0..STEPS {
                    let Reverse((t, _)) = h.pop().expect("the hold model never drains");
                    h.push(Reverse((t + delays[i % TABLE], black_box(i as u64))));
                    i = i.wrapping_add(1);
                }
            });
            assert_eq!(h.len(), n, "the hold model keeps the heap size");
        });
    }
    g.finish();
}

fn queue_hold_cancel(c: &mut Criterion) {
    let delays = delay_table("hold_cancel");
    let cancels = cancel_table();
    let mut g = c.benchmark_group("queue_hold_cancel");
    g.throughput(Throughput::Elements(STEPS));
    let n = 100_000usize;
    g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
        let mut q = filled_queue(n, &delays);
        // Outstanding timeouts, by the step that scheduled them (a ring of RESPONSE_LAG).
        let mut ring: Vec<Option<TimerId>> = vec![None; RESPONSE_LAG];
        let mut i = n;
        let mut step = 0usize;
        let mut fired = 0u64;
        b.iter(|| {
            for _ in 0..STEPS {
                let ev = q.pop().expect("the hold model never drains");
                if ev.payload == TIMEOUT {
                    fired += 1;
                    continue;
                }
                let now = ev.time.as_ns();
                q.push(SimTime::from_ns(now + delays[i % TABLE]), HOLD)
                    .expect("in the future");
                let slot = step % RESPONSE_LAG;
                if let Some(old) = ring[slot].take() {
                    if cancels[step % TABLE] {
                        black_box(q.cancel(old));
                    }
                }
                ring[slot] = Some(
                    q.push(SimTime::from_ns(now + TIMEOUT_NS), TIMEOUT)
                        .expect("in the future"),
                );
                i = i.wrapping_add(1);
                step = step.wrapping_add(1);
            }
        });
        black_box(fired);
        assert!(q.len() >= n, "the hold population is kept");
    });
    g.finish();
}

fn station(c: &mut Criterion) {
    const N: u64 = 100_000;
    let cfg = StationConfig::new(
        Dist::exponential(1.0 / 7.2).expect("valid mean"),
        Dist::exponential(1.0).expect("valid mean"),
        8,
        None,
        N,
        0.01,
    )
    .expect("valid station");
    let mut g = c.benchmark_group("station_mmc");
    g.throughput(Throughput::Elements(N));
    g.bench_function("c8_rho0.9", |b| {
        b.iter(|| {
            let r = run_station(black_box(&cfg), RootSeed::new(1));
            assert_eq!(r.counts.completions, N);
            black_box(r)
        });
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = kernel;
    config = config();
    targets = queue_hold, queue_hold_std_heap, queue_hold_cancel, station
}
criterion_main!(kernel);
