//! The control-plane parts on their own and together:
//! - an idempotency check (a fresh token, then a replay) on a store holding 10⁵ records;
//! - an L1 cache lookup, hit and miss, on a 10⁴-entry LRU;
//! - one RunInstances → CreateInstances workflow of 10 instances, end to end in a topology;
//! - the full Describe-heavy mix with RunInstances, ClientTokens, the cache and the workflow
//!   engine on (simulated requests per wall-second).
//!
//! `cargo bench --bench core_parts`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use firedrill::api::lb::LbPolicy;
use firedrill::api::node::NodeConfigBuilder;
use firedrill::api::throttle::Throttle;
use firedrill::api::types::{AccountId, Api, InstanceId, InstanceState, InstanceType, Params};
use firedrill::cache::{CacheKey, Cached, CachedInstance, L1Cache, L1Config, L2Config};
use firedrill::db::DbConfig;
use firedrill::gc::{GcProfile, HeapConfig};
use firedrill::idempotency::{IdemConfig, IdemKey, IdempotencyStore, Outcome, fingerprint};
use firedrill::kernel::{Dist, Handle, RootSeed, SimDuration, SimTime};
use firedrill::traffic::{ApiMix, OpenLoopConfig, RateProfile, TokenPolicy, TypeMix};
use firedrill::workflow::EngineConfig;
use firedrill::world::{CacheSetup, Topology, WorkflowSetup, shipped_mocks};
use std::time::Duration;

fn idempotency(c: &mut Criterion) {
    let mut store = IdempotencyStore::new(
        IdemConfig::builder()
            .capacity(200_000)
            .build()
            .expect("valid"),
    );
    let params = Params::single(InstanceType(0));
    let fp = fingerprint(Api::RunInstances, &params);
    let key = |i: u64| IdemKey {
        account: AccountId((i % 100) as u32),
        api: Api::RunInstances,
        token: i | 1,
    };
    let now = SimTime::from_ns(1);
    for i in 0..100_000u64 {
        store.check(now, key(i << 1), fp);
        store.complete(now, key(i << 1), Outcome::Ok { instances: None });
    }
    let mut g = c.benchmark_group("idempotency");
    g.throughput(Throughput::Elements(1));
    let mut next = 1u64 << 40;
    g.bench_function("check_new_token", |b| {
        b.iter(|| {
            next += 2;
            store.check(now, key(next), fp)
        })
    });
    let mut i = 0u64;
    g.bench_function("check_replay", |b| {
        b.iter(|| {
            i = (i + 7_919) % 100_000;
            store.check(now, key(i << 1), fp)
        })
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let cfg = L1Config::builder()
        .capacity(10_000)
        .ttl(SimDuration::from_secs(3_600), SimDuration::from_secs(7_200))
        .build()
        .expect("valid");
    let mut l1: L1Cache<CacheKey, CachedInstance, Handle> =
        L1Cache::new(cfg, RootSeed::new(1).fork("l1"));
    let key = |i: u64| CacheKey {
        account: AccountId(1),
        instance: InstanceId(i),
    };
    let value = CachedInstance {
        state: InstanceState::Running,
        instance_type: InstanceType(0),
        updated_at: SimTime::ZERO,
    };
    let now = SimTime::from_ns(1);
    for i in 0..10_000 {
        l1.insert(now, key(i), Cached::Value(value));
    }
    let mut g = c.benchmark_group("cache_l1");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("lookup_hit", |b| {
        b.iter(|| {
            i = (i + 7_919) % 10_000;
            l1.get(now, key(i))
        })
    });
    let mut m = 1u64 << 40;
    g.bench_function("lookup_miss", |b| {
        b.iter(|| {
            m += 1;
            l1.get(now, key(m))
        })
    });
    g.finish();
}

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

fn full(nodes: u32, t: OpenLoopConfig, secs: u64) -> Topology {
    let node = NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::G1))
        .build()
        .expect("valid node");
    Topology::new(
        nodes,
        node,
        LbPolicy::LeastOutstanding,
        Throttle::ecs_defaults(10_000),
        DbConfig::assumed_defaults(),
        shipped_mocks(),
        t,
        SimDuration::from_secs(secs),
    )
    .expect("valid topology")
    .with_cache(CacheSetup {
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
        invalidation: firedrill::cache::Invalidation::Writer,
    })
    .with_workflows(WorkflowSetup {
        engine: EngineConfig::builder().build().expect("valid"),
        batch: true,
    })
    .expect("the shipped mocks cover every dependency")
}

fn workflow(c: &mut Criterion) {
    // One RunInstances of 10 instances: the API call, then its CreateInstances workflow to the end.
    let mut t = traffic(1.0, ApiMix::only(Api::RunInstances), 30, TokenPolicy::NONE);
    t.amount = Dist::constant(10.0).expect("valid");
    t.inter_arrival = Dist::constant(0.5).expect("valid");
    let topo = full(1, t, 1);
    let mut g = c.benchmark_group("workflow");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("run_instances_10_create_workflow", |b| {
        b.iter_batched(
            || topo.build(RootSeed::new(1)),
            |mut w| w.sim.run(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn full_mix(c: &mut Criterion) {
    let tokens = TokenPolicy {
        share: 1.0,
        duplicate_fraction: 0.05,
        duplicate_delay: SimDuration::from_ms(500),
    };
    let topo = full(
        8,
        traffic(20_000.0, ApiMix::describe_heavy(), 5, tokens),
        10,
    );
    let requests = topo.run(RootSeed::new(1)).requests();
    let mut g = c.benchmark_group("serving_full");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(requests));
    g.bench_function("describe_heavy_8_nodes_g1_cache_tokens_workflows", |b| {
        b.iter(|| topo.run(RootSeed::new(1)).requests())
    });
    g.finish();
}

criterion_group!(benches, idempotency, cache, workflow, full_mix);
criterion_main!(benches);
