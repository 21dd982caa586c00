//! The serving path end to end: a Describe-heavy mix against 8 API nodes with G1 heaps, the
//! database and the shipped dependency mocks. Throughput is simulated API requests per
//! wall-second (criterion's elements/s), the figure the README records.
//!
//! `cargo bench --bench serving`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use firedrill::api::lb::LbPolicy;
use firedrill::api::node::NodeConfigBuilder;
use firedrill::api::throttle::Throttle;
use firedrill::db::DbConfig;
use firedrill::gc::{GcProfile, HeapConfig};
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::traffic::{ApiMix, OpenLoopConfig, RateProfile, TypeMix};
use firedrill::world::{Topology, shipped_mocks};
use std::time::Duration;

/// 8 nodes, G1, Describe-heavy at 20,000 requests/s for 10 simulated seconds.
fn topology() -> Topology {
    let node = NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::G1))
        .build()
        .expect("valid node");
    let traffic = OpenLoopConfig {
        inter_arrival: Dist::exponential(1.0 / 20_000.0).expect("valid"),
        profile: RateProfile::constant(),
        mix: ApiMix::describe_heavy(),
        accounts: 10_000,
        account_skew: Some(Dist::zipf(10_000, 1.1).expect("valid")),
        amount: firedrill::traffic::default_amount(),
        instance_types: TypeMix::uniform(4).expect("valid"),
        timeout: SimDuration::from_secs(5),
        until: SimTime::ZERO,
        describe_list_share: 0.2,
        min_amount_fraction: 0.0,
        tokens: firedrill::traffic::TokenPolicy::NONE,
    };
    Topology::new(
        8,
        node,
        LbPolicy::LeastOutstanding,
        Throttle::ecs_defaults(10_000),
        DbConfig::assumed_defaults(),
        shipped_mocks(),
        traffic,
        SimDuration::from_secs(10),
    )
    .expect("valid topology")
}

fn serving(c: &mut Criterion) {
    let topo = topology();
    let requests = topo.run(RootSeed::new(1)).requests();
    let mut g = c.benchmark_group("serving");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(requests));
    g.bench_function("describe_heavy_8_nodes_g1", |b| {
        b.iter(|| topo.run(RootSeed::new(1)).requests())
    });
    g.finish();
}

criterion_group!(benches, serving);
criterion_main!(benches);
