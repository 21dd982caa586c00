//! One swarm seed: a random fault plan drawn from the scenario's allowed set (kinds, targets,
//! windows, intensities), run with a quiet period at the end, and judged by the invariants.

use super::ChaosConfig;
use crate::api::types::AccountId;
use crate::deps::FaultCode;
use crate::faults::{Fault, FaultKind, FaultPlan, Target};
use crate::invariants::Violation;
use crate::kernel::{Dist, RootSeed, SimDuration, SimRng, SimTime};
use crate::world::{RunResult, Topology};

/// What one seed found.
#[derive(Clone, Debug)]
pub struct SeedRun {
    pub seed: u64,
    pub plan: FaultPlan,
    /// The run's outcome label (`drained`, `time_limit`, `event_limit`...).
    pub outcome: &'static str,
    pub trace_hash: String,
    pub violations: Vec<Violation>,
    pub requests: u64,
    pub rate_5xx: f64,
}

impl SeedRun {
    /// The failure this seed shows, if any: its first violation's invariant, or a safety bound.
    pub fn failure(&self) -> Option<String> {
        if let Some(v) = self.violations.first() {
            return Some(v.invariant.name().to_string());
        }
        match self.outcome {
            "event_limit" | "pending_limit" | "invariant_violated" => {
                Some(self.outcome.to_string())
            }
            _ => None,
        }
    }
}

/// Whether a topology can take a fault kind at all (what it needs exists).
fn applicable(topo: &Topology, kind: &str) -> bool {
    match kind {
        "l2_loss" | "l2_flush" => topo.has_l2(),
        "worker_crash" => topo.has_workflows(),
        "binlog_lag" => topo.cache().is_some_and(|c| c.invalidation.is_binlog()),
        _ => true,
    }
}

/// The kinds a swarm over `topo` draws from.
pub fn allowed_kinds(topo: &Topology, cfg: &ChaosConfig) -> Vec<&'static str> {
    let all: &[&'static str] = if cfg.kinds().is_empty() {
        &crate::faults::KIND_NAMES
    } else {
        cfg.kinds()
    };
    all.iter()
        .copied()
        .filter(|k| applicable(topo, k))
        .collect()
}

/// Uniform in [lo, hi).
fn uniform(rng: &mut SimRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.unit()
}

/// Log-uniform in [lo, hi).
fn log_uniform(rng: &mut SimRng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + (hi.ln() - lo.ln()) * rng.unit()).exp()
}

fn pick<'a, T>(rng: &mut SimRng, xs: &'a [T]) -> &'a T {
    &xs[rng.below(xs.len() as u64) as usize]
}

/// The longest partition of the binlog invalidator a swarm draws.
const INVALIDATOR_CUT_MAX: SimDuration = SimDuration::from_secs(30);

/// Draws the plan of `seed`: 1 to `max_faults` faults, each in the traffic's duration minus
/// the quiet period. Deterministic in (topology, config, seed).
pub fn draw_plan(topo: &Topology, cfg: &ChaosConfig, seed: u64) -> FaultPlan {
    let mut rng = RootSeed::new(seed).fork("chaos.plan");
    let kinds = allowed_kinds(topo, cfg);
    let mut plan = FaultPlan::default();
    if kinds.is_empty() {
        return plan;
    }
    let latest_end = topo.duration().as_ns().saturating_sub(cfg.quiet().as_ns());
    if latest_end < SimDuration::from_secs(2).as_ns() {
        return plan;
    }
    let n = 1 + rng.below(u64::from(cfg.max_faults()));
    // Account scopes come from a stream of their own, so the rest of the plan is drawn as it
    // would be without them.
    let mut scope_rng = RootSeed::new(seed).fork("chaos.scope");
    let accounts = u64::from(topo.traffic().accounts);
    let mut tries = 0;
    while (plan.len() as u64) < n && tries < 100 {
        tries += 1;
        let kind = *pick(&mut rng, &kinds);
        let start_ns = rng.below(latest_end - SimDuration::from_secs(1).as_ns());
        let room = latest_end - start_ns;
        let max_window = cfg.max_window().as_ns().min(room) as f64;
        let window = if max_window <= 1e9 {
            max_window
        } else {
            log_uniform(&mut rng, 1e9, max_window)
        };
        let duration = SimDuration::from_ns(window as u64);
        let Some((kind, target)) = draw_kind(topo, kind, &mut rng) else {
            continue;
        };
        // The invalidator cut off from the L2 leaves the L2 stale for as long as the cut
        // lasts: at most 30 s, as a binlog lag is (the staleness bound, the L1's hard TTL plus
        // slack, judges the design, not an outage longer than itself).
        let duration = if target == Target::Invalidator {
            duration.min(INVALIDATOR_CUT_MAX)
        } else {
            duration
        };
        let start = SimTime::from_ns(start_ns);
        let Ok(mut fault) = Fault::new(kind, target, start, duration) else {
            continue;
        };
        if fault.kind().rampable() && rng.unit() < 0.3 {
            let ramp = SimDuration::from_ns(
                (duration.as_ns() as f64 * uniform(&mut rng, 0.1, 0.5)) as u64,
            );
            fault = fault.clone().with_ramp(ramp).unwrap_or(fault);
        }
        // A third of the faults that can be scoped hit one of the busiest accounts only
        // (accounts are numbered by popularity under a skew: the first ten).
        if fault.kind().account_scopable() && accounts > 1 && scope_rng.unit() < 1.0 / 3.0 {
            let account = AccountId(scope_rng.below(accounts.min(10)) as u32);
            fault = fault.clone().for_account(account).unwrap_or(fault);
        }
        plan.push(fault);
    }
    plan
}

/// A kind's parameters and a target for it.
fn draw_kind(topo: &Topology, kind: &str, rng: &mut SimRng) -> Option<(FaultKind, Target)> {
    let deps: Vec<String> = topo
        .dependencies()
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let dep = |rng: &mut SimRng| Target::Dependency {
        name: pick(rng, &deps).clone(),
        endpoint: None,
    };
    let node = |rng: &mut SimRng| {
        if rng.unit() < 0.2 {
            Target::Nodes
        } else {
            Target::Node(rng.below(u64::from(topo.nodes())) as u32)
        }
    };
    Some(match kind {
        "dep_latency" => (
            FaultKind::DepLatency {
                add: None,
                multiply: log_uniform(rng, 2.0, 20.0),
            },
            dep(rng),
        ),
        "dep_errors" => (
            FaultKind::DepErrors {
                code: *pick(
                    rng,
                    &[
                        FaultCode::InternalError,
                        FaultCode::ServiceUnavailable,
                        FaultCode::Throttling,
                        FaultCode::Timeout,
                    ],
                ),
                probability: uniform(rng, 0.05, 1.0),
            },
            dep(rng),
        ),
        "dep_blackhole" => (FaultKind::DepBlackhole, dep(rng)),
        "dep_partial_outage" => (
            FaultKind::DepPartialOutage {
                fraction: uniform(rng, 0.1, 0.9),
            },
            dep(rng),
        ),
        "node_crash" => (FaultKind::NodeCrash, node(rng)),
        "node_pause" => (
            FaultKind::NodePause {
                pause: Dist::constant(uniform(rng, 0.2, 5.0)).ok()?,
                every: (rng.unit() < 0.5).then(|| SimDuration::from_secs(10 + rng.below(50))),
            },
            node(rng),
        ),
        "heap_leak" => (
            FaultKind::HeapLeak {
                bytes_per_sec: (log_uniform(rng, 0.1, 2.0) * f64::from(1u32 << 30) / 60.0) as u64,
            },
            node(rng),
        ),
        "db_slow_sql" => (
            FaultKind::DbSlowSql {
                class: (rng.unit() < 0.5).then(|| *pick(rng, &crate::db::QueryClass::ALL)),
                multiply: log_uniform(rng, 2.0, 50.0),
            },
            Target::Db,
        ),
        "db_failover" => (FaultKind::DbFailover, Target::Db),
        "db_connection_leak" => (
            FaultKind::DbConnectionLeak {
                connections: 1 + rng.below(32) as u32,
            },
            node(rng),
        ),
        "replica_lag" => (
            FaultKind::ReplicaLag {
                lag: SimDuration::from_ms(500 + rng.below(30_000)),
            },
            Target::Db,
        ),
        "binlog_lag" => (
            FaultKind::BinlogLag {
                lag: SimDuration::from_ms(500 + rng.below(30_000)),
            },
            Target::Db,
        ),
        "l2_loss" => (FaultKind::L2Loss, Target::L2),
        "l2_flush" => (FaultKind::L2Flush, Target::L2),
        // With binlog invalidation, one partition in four cuts the invalidator off from the L2
        // (its deletes time out and are sent again until it heals; see `draw_plan` for its
        // window). Other topologies draw as before.
        "partition"
            if topo.cache().is_some_and(|c| c.invalidation.is_binlog())
                && topo.has_l2()
                && rng.unit() < 0.25 =>
        {
            (
                FaultKind::Partition { peer: Target::L2 },
                Target::Invalidator,
            )
        }
        "partition" => {
            let mut peers = vec![Target::Db];
            peers.extend(deps.iter().map(|d| Target::Dependency {
                name: d.clone(),
                endpoint: None,
            }));
            if topo.has_l2() {
                peers.push(Target::L2);
            }
            (
                FaultKind::Partition {
                    peer: pick(rng, &peers).clone(),
                },
                Target::Node(rng.below(u64::from(topo.nodes())) as u32),
            )
        }
        "clock_skew" => {
            let ms = 1_000 + rng.below(119_000) as i64;
            (
                FaultKind::ClockSkew {
                    skew_ns: if rng.unit() < 0.5 { ms } else { -ms } * 1_000_000,
                },
                node(rng),
            )
        }
        "worker_crash" => (
            FaultKind::WorkerCrash {
                workers: 1 + rng.below(8) as u32,
            },
            Target::Workflow,
        ),
        "traffic_surge" => (
            FaultKind::TrafficSurge {
                multiply: uniform(rng, 1.5, 5.0),
            },
            Target::Traffic,
        ),
        "hot_tenant" => (
            FaultKind::HotTenant {
                account: rng.below(u64::from(topo.traffic().accounts)) as u32,
                share: uniform(rng, 0.1, 0.8),
            },
            Target::Traffic,
        ),
        "client_no_backoff" => (FaultKind::ClientNoBackoff, Target::Traffic),
        "quota_too_low" => (
            FaultKind::QuotaTooLow {
                factor: uniform(rng, 0.05, 0.5),
            },
            Target::Gateway,
        ),
        _ => return None,
    })
}

/// Runs `topo` with `plan` under `seed` and collects what the swarm reports.
pub fn run_plan(topo: &Topology, plan: &FaultPlan, seed: u64) -> SeedRun {
    let t = topo
        .clone()
        .with_faults(plan.clone())
        .expect("drawn and shrunk plans target what the topology has");
    let r: RunResult = t.run(RootSeed::new(seed));
    SeedRun {
        seed,
        plan: plan.clone(),
        outcome: r.report.outcome.label(),
        trace_hash: r.trace_hash().to_string(),
        violations: r.violations.clone(),
        requests: r.requests(),
        rate_5xx: r.rate_5xx(),
    }
}

/// Draws and runs seed `seed`.
pub fn run_seed(topo: &Topology, cfg: &ChaosConfig, seed: u64) -> SeedRun {
    let plan = draw_plan(topo, cfg, seed);
    run_plan(topo, &plan, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped chaos scenario's plans: about a third of the scopable faults are scoped to
    /// one of the ten busiest accounts, never another kind; and a plan is a pure function of
    /// its seed.
    #[test]
    fn a_third_of_scopable_faults_hit_one_busy_account() {
        let text = include_str!("../../scenarios/chaos.toml");
        let s = crate::scenario::parse_scenario(
            "chaos.toml",
            text,
            &[],
            &crate::world::shipped_mocks(),
        )
        .unwrap();
        let cfg = s.chaos();
        let (mut scopable, mut scoped) = (0u32, 0u32);
        for seed in 1..=400 {
            let plan = draw_plan(s.topology(), cfg, seed);
            assert_eq!(plan, draw_plan(s.topology(), cfg, seed));
            for f in plan.faults() {
                if f.kind().account_scopable() {
                    scopable += 1;
                }
                if let Some(a) = f.account() {
                    assert!(f.kind().account_scopable(), "{f:?}");
                    assert!(a.0 < 10, "{a:?}");
                    scoped += 1;
                }
            }
        }
        // Binomial(scopable, 1/3): within 4 standard deviations.
        let n = f64::from(scopable);
        let sd = (n * (1.0 / 3.0) * (2.0 / 3.0)).sqrt();
        assert!(scopable > 100, "{scopable}");
        assert!(
            (f64::from(scoped) - n / 3.0).abs() < 4.0 * sd,
            "{scoped} of {scopable}"
        );
    }

    /// scenarios/chaos.toml with `set` overrides.
    fn parse(set: &[&str]) -> crate::scenario::Scenario {
        let text = include_str!("../../scenarios/chaos.toml");
        let o: Vec<_> = set
            .iter()
            .map(|x| crate::scenario::Override::parse(x).unwrap())
            .collect();
        crate::scenario::parse_scenario("chaos.toml", text, &o, &crate::world::shipped_mocks())
            .unwrap()
    }

    /// `binlog_lag` is drawn only where there is a change feed to delay (binlog invalidation),
    /// on the database, with a lag of 0.5 to 30.5 s; the other kinds are the same either way.
    #[test]
    fn binlog_lag_is_drawn_only_with_binlog_invalidation() {
        let writer = parse(&[]);
        let binlog = parse(&["topology.cache.invalidation=binlog"]);
        let kw = allowed_kinds(writer.topology(), writer.chaos());
        let kb = allowed_kinds(binlog.topology(), binlog.chaos());
        assert!(!kw.contains(&"binlog_lag"));
        assert_eq!(kb.len(), kw.len() + 1);
        assert_eq!(kb.last(), Some(&"binlog_lag"));
        let mut lags = 0;
        for seed in 1..=400 {
            for f in draw_plan(binlog.topology(), binlog.chaos(), seed).faults() {
                if let FaultKind::BinlogLag { lag } = f.kind() {
                    assert_eq!(f.target(), &Target::Db);
                    assert!(
                        (SimDuration::from_ms(500)..SimDuration::from_ms(30_500)).contains(lag),
                        "{lag}"
                    );
                    lags += 1;
                }
            }
        }
        // About one fault in 21 of ≈800.
        assert!((15..80).contains(&lags), "{lags}");
    }

    /// With binlog invalidation about one partition in four cuts the invalidator off from the
    /// L2, for at most 30 s; the other partitions cut a node off; without binlog invalidation
    /// no partition names the invalidator.
    #[test]
    fn invalidator_partitions_are_drawn_only_with_binlog_invalidation() {
        let writer = parse(&[]);
        let binlog = parse(&["topology.cache.invalidation=binlog"]);
        let (mut cuts, mut partitions) = (0u32, 0u32);
        for seed in 1..=1_000 {
            for f in draw_plan(writer.topology(), writer.chaos(), seed).faults() {
                assert_ne!(f.target(), &Target::Invalidator);
            }
            for f in draw_plan(binlog.topology(), binlog.chaos(), seed).faults() {
                let FaultKind::Partition { peer } = f.kind() else {
                    continue;
                };
                partitions += 1;
                if f.target() == &Target::Invalidator {
                    assert_eq!(peer, &Target::L2);
                    assert!(f.duration() <= SimDuration::from_secs(30), "{f:?}");
                    cuts += 1;
                } else {
                    assert!(matches!(f.target(), Target::Node(_)), "{f:?}");
                }
            }
        }
        // Binomial(partitions, 1/4): within 4 standard deviations.
        let n = f64::from(partitions);
        let sd = (n * 0.25 * 0.75).sqrt();
        assert!(partitions > 50, "{partitions}");
        assert!(
            (f64::from(cuts) - n / 4.0).abs() < 4.0 * sd,
            "{cuts} of {partitions}"
        );
    }
}
