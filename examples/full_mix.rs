//! The full Describe-heavy mix with every control-plane feature on, once, for profilers:
//! `cargo build --release --example full_mix && valgrind --tool=callgrind target/release/examples/full_mix 2`
//! (flags after the seconds: `quiet`, `nocache`, `nowf`, `notokens`, `noseries`, `binlog`).
use firedrill::api::lb::LbPolicy;
use firedrill::api::node::NodeConfigBuilder;
use firedrill::api::throttle::Throttle;
use firedrill::api::types::Api;
use firedrill::cache::{FeedConfig, Invalidation, L1Config, L2Config};
use firedrill::db::DbConfig;
use firedrill::gc::{GcProfile, HeapConfig};
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::traffic::{ApiMix, OpenLoopConfig, RateProfile, TokenPolicy, TypeMix};
use firedrill::workflow::EngineConfig;
use firedrill::world::{CacheSetup, Topology, WorkflowSetup, shipped_mocks};

fn traffic(rate: f64, mix: ApiMix, secs_timeout: u64, tokens: TokenPolicy) -> OpenLoopConfig {
    OpenLoopConfig {
        inter_arrival: Dist::exponential(1.0 / rate).expect("valid"),
        profile: RateProfile::constant(),
        mix,
        accounts: 10_000,
        account_skew: Some(Dist::zipf(10_000, 1.1).expect("valid")),
        amount: firedrill::traffic::default_amount(),
        instance_types: TypeMix::uniform(4).expect("valid"),
        timeout: SimDuration::from_secs(secs_timeout),
        until: SimTime::ZERO,
        describe_list_share: 0.2,
        min_amount_fraction: 0.0,
        tokens,
    }
}

fn full(
    nodes: u32,
    t: OpenLoopConfig,
    secs: u64,
    cache: bool,
    wf: bool,
    invalidation: Invalidation,
) -> Topology {
    let node = NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::G1))
        .build()
        .expect("valid node");
    let topo = Topology::new(
        nodes,
        node,
        LbPolicy::LeastOutstanding,
        Throttle::ecs_defaults(10_000),
        DbConfig::assumed_defaults(),
        shipped_mocks(),
        t,
        SimDuration::from_secs(secs),
    )
    .expect("valid topology");
    let topo = if !cache {
        topo
    } else {
        topo.with_cache(CacheSetup {
            l1: L1Config::builder()
                .capacity(50_000)
                .ttl(SimDuration::from_secs(5), SimDuration::from_secs(60))
                .build()
                .expect("valid"),
            l2: L2Config::builder()
                .capacity(1_000_000)
                .build()
                .expect("valid"),
            l2_ttl: SimDuration::from_secs(300),
            l2_negative_ttl: SimDuration::from_secs(2),
            invalidation_delay: Dist::uniform(0.01, 0.1).expect("valid"),
            invalidation,
        })
    };
    if !wf {
        return topo;
    }
    topo.with_workflows(WorkflowSetup {
        engine: EngineConfig::builder().build().expect("valid"),
        batch: true,
    })
    .expect("the shipped mocks cover every dependency")
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let flags: Vec<String> = std::env::args().skip(2).collect();
    let has = |f: &str| flags.iter().any(|x| x == f);
    let tokens = if has("notokens") {
        TokenPolicy::NONE
    } else {
        TokenPolicy {
            share: 1.0,
            duplicate_fraction: 0.05,
            duplicate_delay: SimDuration::from_ms(500),
        }
    };
    let topo = full(
        8,
        traffic(20_000.0, ApiMix::describe_heavy(), 5, tokens),
        secs,
        !has("nocache"),
        !has("nowf"),
        if has("binlog") {
            Invalidation::Binlog(FeedConfig::default())
        } else {
            Invalidation::Writer
        },
    )
    .with_series(!has("noseries"));
    // The wall-clock figure of a profiling example, not simulation code.
    #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
    let t0 = std::time::Instant::now();
    let r = topo.run(RootSeed::new(1));
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "wall {wall:.3} s, {:.3} M req/s",
        r.requests() as f64 / wall / 1e6
    );
    if has("quiet") {
        return;
    }
    println!(
        "requests {} events {} ({:.1}/request)",
        r.requests(),
        r.report.events,
        r.report.events as f64 / r.requests() as f64
    );
    for a in [
        Api::DescribeInstances,
        Api::DescribeInstanceStatus,
        Api::RunInstances,
    ] {
        println!("{a:?}: {}", r.api(a).requests);
    }
    for (n, v) in &r.counters {
        println!("{n} {v}");
    }
}
