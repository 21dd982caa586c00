//! Embedding firedrill: assemble a control-plane topology in code, run it under a seed, and read
//! typed results. `cargo run --release --example capacity`.

use firedrill::api::lb::LbPolicy;
use firedrill::api::node::NodeConfigBuilder;
use firedrill::api::throttle::Throttle;
use firedrill::api::types::Api;
use firedrill::db::DbConfig;
use firedrill::gc::{GcProfile, HeapConfig};
use firedrill::kernel::{Dist, RootSeed, SimDuration, SimTime};
use firedrill::traffic::{ApiMix, OpenLoopConfig, RateProfile, TypeMix};
use firedrill::world::{Topology, shipped_mocks};

fn main() {
    // 4 API nodes with 100 workers each, G1 heaps, behind a least-outstanding balancer, serving a
    // Describe-heavy mix at 4,000 requests/s for one simulated minute.
    let node = NodeConfigBuilder::new(HeapConfig::defaults_for(GcProfile::G1))
        .workers(100)
        .build()
        .expect("valid node");
    let traffic = OpenLoopConfig {
        inter_arrival: Dist::exponential(1.0 / 4_000.0).expect("valid"),
        profile: RateProfile::constant(),
        mix: ApiMix::describe_heavy(),
        accounts: 1_000,
        account_skew: Some(Dist::zipf(1_000, 1.1).expect("valid")),
        amount: firedrill::traffic::default_amount(),
        instance_types: TypeMix::uniform(4).expect("valid"),
        timeout: SimDuration::from_secs(5),
        until: SimTime::ZERO,
        describe_list_share: 0.2,
        min_amount_fraction: 0.0,
        tokens: firedrill::traffic::TokenPolicy::NONE,
    };
    let topology = Topology::new(
        4,
        node,
        LbPolicy::LeastOutstanding,
        Throttle::ecs_defaults(1_000),
        DbConfig::assumed_defaults(),
        shipped_mocks(),
        traffic,
        SimDuration::from_secs(60),
    )
    .expect("valid topology");
    let result = topology.run(RootSeed::new(1));
    println!(
        "outcome {}  events {}  trace {}",
        result.report.outcome,
        result.report.events,
        result.trace_hash()
    );
    println!(
        "{:<24}{:>10}{:>12}{:>12}{:>12}{:>8}",
        "api", "requests", "p50 ms", "p99 ms", "max ms", "5xx"
    );
    for api in Api::ALL {
        let a = result.api(api);
        let ms = |q: f64| a.latency.quantile_ns(q).map_or(0.0, |v| v as f64 / 1e6);
        println!(
            "{:<24}{:>10}{:>12.2}{:>12.2}{:>12.2}{:>8}",
            api.name(),
            a.requests,
            ms(0.5),
            ms(0.99),
            a.latency.max_ns().unwrap_or(0) as f64 / 1e6,
            a.count_5xx()
        );
    }
    for (i, n) in result.nodes.iter().enumerate() {
        println!(
            "node.{i}: p99 {:.2} ms, GC pauses {}, max pause {:.2} ms, GC time {:.3}%",
            n.latency.quantile_ns(0.99).unwrap_or(0) as f64 / 1e6,
            n.gc.all_pauses().count(),
            n.gc.all_pauses().max_ns().unwrap_or(0) as f64 / 1e6,
            100.0 * n.gc_time_fraction
        );
    }
    println!("5XX rate {:.5}", result.rate_5xx());
}
