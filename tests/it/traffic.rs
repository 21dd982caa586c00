//! Time-varying arrival rates: the open-loop traffic under a `RateProfile`, driven alone (no
//! gateway: a sink records each request's intended start), checked against the integral of the
//! rate, m(t) × base rate, bucket by bucket.

use crate::core::{topology, unlimited};
use firedrill::api::lb::LbPolicy;
use firedrill::api::node::{NodeConfig, NodeConfigBuilder};
use firedrill::api::types::Api;
use firedrill::db::DbConfig;
use firedrill::gc::{GcProfile, HeapConfig};
use firedrill::kernel::{Component, Dist, Limits, Outbox, RootSeed, Sim, SimDuration, SimTime};
use firedrill::traffic::{
    ApiMix, BATCH, OpenLoop, OpenLoopConfig, ProfileError, RateProfile, TokenPolicy, TypeMix,
};
use firedrill::world::{Msg, Topology, TopologyError, shipped_mocks};

const S: u64 = 1_000_000_000;

fn node() -> NodeConfig {
    NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::Off))
        .build()
        .unwrap()
}

fn secs(s: u64) -> SimDuration {
    SimDuration::from_secs(s)
}

fn config(rate_per_s: f64, profile: RateProfile, until_s: u64) -> OpenLoopConfig {
    OpenLoopConfig {
        inter_arrival: Dist::exponential(1.0 / rate_per_s).unwrap(),
        profile,
        mix: ApiMix::only(Api::DescribeInstanceStatus),
        accounts: 1,
        account_skew: None,
        amount: Dist::constant(1.0).unwrap(),
        min_amount_fraction: 0.0,
        instance_types: TypeMix::uniform(1).expect("valid"),
        timeout: secs(1),
        until: SimTime::ZERO + secs(until_s),
        describe_list_share: 0.0,
        tokens: TokenPolicy::NONE,
    }
}

/// The traffic and a sink standing in for the gateway.
enum Bench {
    Traffic {
        source: Box<OpenLoop>,
        ticks: u64,
    },
    /// (intended start in ns, request id) of every request, in arrival order.
    Sink(Vec<(u64, u64)>),
}

impl Component<Msg> for Bench {
    fn on_event(&mut self, msg: Msg, out: &mut Outbox<'_, Msg>) {
        match (self, msg) {
            (Bench::Traffic { source, ticks }, Msg::TrafficTick) => {
                *ticks += 1;
                source.on_tick(out);
            }
            (Bench::Sink(seen), Msg::Request(r)) => {
                assert_eq!(
                    r.intended,
                    out.now(),
                    "requests arrive at their intended start"
                );
                seen.push((r.intended.as_ns(), r.id.0));
            }
            (_, m) => panic!("unexpected {m:?}"),
        }
    }
}

struct Generated {
    /// Intended starts in ns, in arrival order.
    starts: Vec<(u64, u64)>,
    ticks: u64,
    events: u64,
    /// Candidate arrivals the thinning drew (kept or not).
    candidates: u64,
}

fn generate(cfg: OpenLoopConfig, seed: u64) -> Generated {
    let seed = RootSeed::new(seed);
    let mut sim: Sim<Msg, Bench> = Sim::new(seed, Limits::GENEROUS);
    let sink = sim.add("sink", Bench::Sink(Vec::new()));
    let mut source = OpenLoop::new(cfg, seed.fork("traffic"), sink);
    let first = source.first_arrival();
    let traffic = sim.add(
        "traffic",
        Bench::Traffic {
            source: Box::new(source),
            ticks: 0,
        },
    );
    sim.schedule(SimTime::ZERO + first, traffic, Msg::TrafficTick)
        .unwrap();
    let report = sim.run();
    assert!(report.outcome.is_natural(), "{}", report.outcome);
    let Bench::Traffic { ticks, source } = sim.component(traffic) else {
        unreachable!()
    };
    let (ticks, candidates) = (*ticks, source.candidates());
    let Bench::Sink(seen) = sim.component(sink) else {
        unreachable!()
    };
    Generated {
        starts: seen.clone(),
        ticks,
        events: sim.events_processed(),
        candidates,
    }
}

/// Requests intended in [from, to).
fn count_in(g: &Generated, from_ns: u64, to_ns: u64) -> u64 {
    g.starts
        .iter()
        .filter(|(t, _)| (from_ns..to_ns).contains(t))
        .count() as u64
}

/// The expected count in [from, to) at `rate` × m(t): the profile's mean over [0, to) and
/// [0, from) give the integral exactly.
fn expected(p: &RateProfile, rate: f64, from_ns: u64, to_ns: u64) -> f64 {
    let integral = |t: u64| {
        if t == 0 {
            0.0
        } else {
            p.mean_multiplier(SimDuration::from_ns(t)) * t as f64 / 1e9
        }
    };
    rate * (integral(to_ns) - integral(from_ns))
}

/// `got` is within `k` Poisson standard deviations (sqrt(mean)) of `mean`.
fn assert_poisson(got: u64, mean: f64, k: f64, what: &str) {
    let sd = mean.sqrt();
    assert!(
        (got as f64 - mean).abs() <= k * sd,
        "{what}: got {got}, expected {mean:.1} ± {k}·{sd:.1}"
    );
}

#[test]
fn ramp_counts_follow_the_integral_of_the_rate() {
    // 1,000/s ramped 1 → 3 over 100 s: 200,000 requests expected.
    let p = RateProfile::ramp(1.0, 3.0, SimDuration::ZERO, secs(100)).unwrap();
    for seed in [1, 2, 3] {
        let g = generate(config(1_000.0, p.clone(), 100), seed);
        for b in 0..10 {
            let (from, to) = (b * 10 * S, (b + 1) * 10 * S);
            let want = expected(&p, 1_000.0, from, to);
            // Bucket b: 10 s at 1 + 2·(10b + 5)/100 on average.
            assert!((want - 10_000.0 * (1.0 + 0.2 * b as f64 + 0.1)).abs() < 1e-6);
            assert_poisson(
                count_in(&g, from, to),
                want,
                4.0,
                &format!("seed {seed}, bucket {b}"),
            );
        }
        let total = g.starts.len() as u64;
        assert!((expected(&p, 1_000.0, 0, 100 * S) - 200_000.0).abs() < 1e-6);
        assert_poisson(total, 200_000.0, 3.0, &format!("seed {seed}, total"));
        // Nothing after `until`; intended starts never go backwards; ids are dense.
        assert!(g.starts.iter().all(|(t, _)| *t <= 100 * S));
        assert!(g.starts.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(
            g.starts
                .iter()
                .enumerate()
                .all(|(i, (_, id))| *id == i as u64)
        );
        // Batched as before: at most BATCH requests per wake-up, and about requests / BATCH
        // wake-ups (the candidate cap is never reached where m ≥ 1/3 of the max).
        let batches = total.div_ceil(BATCH as u64);
        assert!(
            g.ticks >= batches && g.ticks <= batches + 2,
            "{} ticks for {total} requests",
            g.ticks
        );
        assert_eq!(
            g.events,
            total + g.ticks,
            "one event per request, one per tick"
        );
    }
}

#[test]
fn double11_burst_counts_follow_the_integral_of_the_rate() {
    // Midnight at 60 s, 10× burst decaying with τ = tail/3 = 30 s; 1,000/s baseline.
    let p = RateProfile::double11(secs(60), secs(30), 10.0, secs(90)).unwrap();
    assert_eq!(p.scale_out_at(), Some(SimTime::ZERO + secs(30)));
    let g = generate(config(1_000.0, p.clone(), 240), 11);
    // Before midnight: the base rate.
    assert_poisson(count_in(&g, 0, 60 * S), 60_000.0, 3.0, "the minute before");
    // The first minute after midnight: 1000·(60 + 9·30·(1 − e^-2)) ≈ 293,466.
    let first_minute = expected(&p, 1_000.0, 60 * S, 120 * S);
    assert!((first_minute - 1_000.0 * (60.0 + 270.0 * (1.0 - libm::exp(-2.0)))).abs() < 1e-3);
    assert_poisson(
        count_in(&g, 60 * S, 120 * S),
        first_minute,
        3.0,
        "first minute after midnight",
    );
    // The first second after midnight is close to 10× the base.
    let first_second = expected(&p, 1_000.0, 60 * S, 61 * S);
    assert!(first_second > 9_700.0);
    assert_poisson(
        count_in(&g, 60 * S, 61 * S),
        first_second,
        4.0,
        "first second",
    );
    // Second by second through the burst and the tail.
    for s in (60..240).step_by(15) {
        let (from, to) = (s * S, (s + 15) * S);
        assert_poisson(
            count_in(&g, from, to),
            expected(&p, 1_000.0, from, to),
            4.0,
            &format!("[{s}s, {}s)", s + 15),
        );
    }
    assert_poisson(
        g.starts.len() as u64,
        expected(&p, 1_000.0, 0, 240 * S),
        3.0,
        "total",
    );
}

/// Thinning draws about one candidate per arrival wherever the profile is below its peak:
/// before a 10× midnight the candidates are not drawn at ten times the base rate (the bound is
/// the profile's over one thinning window, not over the run).
#[test]
fn thinning_draws_candidates_in_proportion_to_arrivals() {
    let p = RateProfile::double11(secs(600), secs(30), 10.0, secs(90)).unwrap();
    let before = generate(config(1_000.0, p.clone(), 590), 4);
    assert_poisson(
        before.starts.len() as u64,
        590_000.0,
        4.0,
        "before midnight",
    );
    let per_arrival = before.candidates as f64 / before.starts.len() as f64;
    assert!(
        per_arrival < 1.0 + 1e-5,
        "{per_arrival} candidates per arrival before midnight"
    );
    // Through the burst and its decay (m from 10 down to ~1 within a second's window): at most
    // the bound's drop over one window in extra candidates, here under 4%.
    let all = generate(config(1_000.0, p, 900), 4);
    let per_arrival = all.candidates as f64 / all.starts.len() as f64;
    assert!(
        per_arrival < 1.04,
        "{per_arrival} candidates per arrival over the burst"
    );
}

#[test]
fn diurnal_sine_counts_follow_the_integral_of_the_rate() {
    // A compressed "day" of 200 s, peak at 50 s, clamped to 0 in the trough.
    let p = RateProfile::diurnal_sine(1.0, 1.5, secs(50), secs(200)).unwrap();
    let g = generate(config(500.0, p.clone(), 400), 5);
    for b in 0..20 {
        let (from, to) = (b * 20 * S, (b + 1) * 20 * S);
        assert_poisson(
            count_in(&g, from, to),
            expected(&p, 500.0, from, to),
            4.0,
            &format!("bucket {b}"),
        );
    }
    // The trough, where m = 0: [140 s, 160 s] lies within cos < -2/3 (no arrivals).
    assert_eq!(count_in(&g, 140 * S, 160 * S), 0);
}

#[test]
fn a_zero_multiplier_advances_time_in_bounded_steps() {
    // 10 s of traffic, 1,000 s of nothing, 10 s of traffic: the thinning windows of the
    // silence have a bound of 0 and draw nothing, so it costs a few wake-ups (each examines
    // up to MAX_CANDIDATES candidates and window ends), not a million rejected candidates.
    let p = RateProfile::steps(vec![
        (SimDuration::ZERO, 1.0),
        (secs(10), 0.0),
        (secs(1_010), 1.0),
    ])
    .unwrap();
    let g = generate(config(1_000.0, p, 1_020), 3);
    assert_eq!(count_in(&g, 10 * S, 1_010 * S), 0, "nothing while m = 0");
    assert_poisson(count_in(&g, 0, 10 * S), 10_000.0, 4.0, "before");
    assert_poisson(count_in(&g, 1_010 * S, 1_021 * S), 10_000.0, 4.0, "after");
    // 1,000 empty windows, up to 1,024 window ends per wake-up.
    let silent = g.ticks - (g.starts.len() as u64).div_ceil(BATCH as u64);
    assert!(silent <= 3, "{silent} empty wake-ups");
    // Only the windows at the two step changes draw candidates that may be rejected.
    assert!(
        g.candidates <= g.starts.len() as u64 + 2_000,
        "{} candidates for {} requests",
        g.candidates,
        g.starts.len()
    );
}

#[test]
fn same_seed_same_requests() {
    let p = RateProfile::diurnal_hourly(
        core::array::from_fn(|h| 0.5 + h as f64 / 10.0),
        SimDuration::from_secs(3_600 * 7 + 1_799),
    )
    .unwrap();
    let a = generate(config(2_000.0, p.clone(), 30), 42);
    let b = generate(config(2_000.0, p.clone(), 30), 42);
    let c = generate(config(2_000.0, p, 30), 43);
    assert!(a.starts.len() > 30_000);
    assert_eq!(a.starts, b.starts, "same seed, same intended starts");
    assert_eq!(a.ticks, b.ticks);
    assert_ne!(a.starts, c.starts, "another seed, other arrivals");
}

#[test]
fn the_constant_profile_generates_the_stationary_sequence() {
    // The constant profile takes the stationary path: no acceptance draws, candidate = arrival.
    // A step profile that is 1 everywhere thins with probability 1 (its draws shift the
    // numbers, not the rate).
    let c = generate(config(1_000.0, RateProfile::constant(), 60), 9);
    let one = RateProfile::steps(vec![(SimDuration::ZERO, 1.0)]).unwrap();
    let s = generate(config(1_000.0, one, 60), 9);
    assert_poisson(c.starts.len() as u64, 60_000.0, 3.0, "constant");
    assert_poisson(s.starts.len() as u64, 60_000.0, 3.0, "steps of 1");
    assert_eq!(c.ticks, (c.starts.len() as u64).div_ceil(BATCH as u64));
}

#[test]
fn a_time_varying_profile_needs_exponential_arrivals() {
    let ramp = RateProfile::ramp(1.0, 2.0, SimDuration::ZERO, secs(10)).unwrap();
    let mut cfg = config(1_000.0, ramp, 10);
    cfg.inter_arrival = Dist::constant(0.001).unwrap();
    let err = cfg.validate().unwrap_err();
    assert!(matches!(err, ProfileError::NonExponentialBase(_)));
    assert!(err.to_string().contains("exponential"), "{err}");
    let topo = Topology::new(
        1,
        node(),
        LbPolicy::RoundRobin,
        unlimited(1),
        DbConfig::assumed_defaults(),
        shipped_mocks(),
        cfg.clone(),
        secs(10),
    );
    assert!(matches!(
        topo,
        Err(TopologyError::Traffic(ProfileError::NonExponentialBase(_)))
    ));
    // Constant arrivals are fine at the constant rate.
    cfg.profile = RateProfile::constant();
    assert_eq!(cfg.validate(), Ok(()));
}

#[test]
fn a_profile_runs_through_the_whole_world() {
    // 200/s doubling to 400/s over 10 s, through gateway, nodes and database.
    let ramp = RateProfile::ramp(1.0, 2.0, SimDuration::ZERO, secs(10)).unwrap();
    let topo = topology(
        2,
        node(),
        DbConfig::assumed_defaults(),
        config(200.0, ramp, 0),
        unlimited(1),
        10,
    );
    let a = topo.run(RootSeed::new(4));
    let b = topo.run(RootSeed::new(4));
    assert_eq!(a.trace_hash(), b.trace_hash());
    assert!(a.ended_normally(), "{}", a.report.outcome);
    assert_poisson(
        a.requests(),
        3_000.0,
        3.0,
        "requests in 10 s at 1.5× 200/s on average",
    );
}
