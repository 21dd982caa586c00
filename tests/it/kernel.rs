//! The simulator driver through its public API: ordering, bounds, stop, violations, cancellation
//! and the determinism checker.

use firedrill::kernel::{
    Component, ComponentId, Limits, Message, Outbox, Outcome, RootSeed, Sim, SimDuration, SimRng,
    SimTime, Step, TimerId, check_determinism,
};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Tick,
    Request(u64, ComponentId),
    Response(u64),
    Timeout(u64),
}

impl Message for Ev {
    fn kind_code(&self) -> u32 {
        match self {
            Ev::Tick => 0,
            Ev::Request(..) => 1,
            Ev::Response(_) => 2,
            Ev::Timeout(_) => 3,
        }
    }
    fn kind_name(&self) -> &'static str {
        match self {
            Ev::Tick => "Tick",
            Ev::Request(..) => "Request",
            Ev::Response(_) => "Response",
            Ev::Timeout(_) => "Timeout",
        }
    }
}

const BIG: Limits = Limits {
    max_events: 1_000_000,
    max_time: SimDuration::from_secs(1_000_000),
    max_pending: 1_000_000,
};

/// Re-arms itself every `period`; behaviour switches let one type cover many cases.
struct Ticker {
    period: SimDuration,
    fan_out: u32,
    stop_after: Option<u64>,
    violate_after: Option<u64>,
    seen: Vec<SimTime>,
}

impl Ticker {
    fn new(period_ms: u64) -> Ticker {
        Ticker {
            period: SimDuration::from_ms(period_ms),
            fan_out: 1,
            stop_after: None,
            violate_after: None,
            seen: vec![],
        }
    }
}

impl Component<Ev> for Ticker {
    fn on_event(&mut self, _ev: Ev, out: &mut Outbox<'_, Ev>) {
        self.seen.push(out.now());
        let n = self.seen.len() as u64;
        if self.stop_after == Some(n) {
            out.stop();
        }
        if self.violate_after == Some(n) {
            out.violation(format!("tick {n} broke the rule"));
        }
        for _ in 0..self.fan_out {
            out.schedule(self.period, Ev::Tick);
        }
    }
}

fn ticker_sim(t: Ticker, limits: Limits) -> (Sim<Ev, Ticker>, ComponentId) {
    let mut sim = Sim::new(RootSeed::new(1), limits);
    let id = sim.add("ticker", t);
    sim.schedule(SimTime::ZERO, id, Ev::Tick).unwrap();
    (sim, id)
}

#[test]
fn time_limit_processes_events_up_to_and_including_the_bound() {
    let limits = Limits {
        max_time: SimDuration::from_secs(10),
        ..BIG
    };
    let (mut sim, id) = ticker_sim(Ticker::new(1_000), limits);
    let report = sim.run();
    assert_eq!(
        report.outcome,
        Outcome::TimeLimit {
            at: SimTime::from_ns(10_000_000_000)
        }
    );
    assert_eq!(report.events, 11, "ticks at 0s, 1s, …, 10s");
    assert_eq!(
        sim.component(id).seen.last(),
        Some(&SimTime::from_ns(10_000_000_000))
    );
    // Jumps straight to the next event: no ticks in between.
    assert!(
        sim.component(id)
            .seen
            .windows(2)
            .all(|w| w[1] - w[0] == SimDuration::SECOND)
    );
}

#[test]
fn event_limit_is_an_outcome_not_a_hang() {
    let limits = Limits {
        max_events: 1_234,
        ..BIG
    };
    let (mut sim, _) = ticker_sim(Ticker::new(0), limits); // zero-period: would loop forever at t=0
    let report = sim.run();
    assert_eq!(
        report.outcome,
        Outcome::EventLimit {
            events: 1_234,
            at: SimTime::ZERO
        }
    );
    assert_eq!(report.events, 1_234);
    assert_eq!(
        sim.step(),
        Step::Finished(report.outcome.clone()),
        "a finished run stays finished"
    );
}

#[test]
fn pending_limit_stops_a_runaway_schedule() {
    let limits = Limits {
        max_pending: 1_000,
        ..BIG
    };
    let mut t = Ticker::new(1);
    t.fan_out = 2; // doubles the pending events each generation
    let (mut sim, _) = ticker_sim(t, limits);
    let report = sim.run();
    match report.outcome {
        Outcome::PendingLimit { pending, .. } => {
            assert!((1_001..=1_002).contains(&pending), "{pending}")
        }
        other => panic!("expected a pending limit, got {other}"),
    }
}

#[test]
fn a_component_can_stop_the_run() {
    let mut t = Ticker::new(5);
    t.stop_after = Some(4);
    let (mut sim, id) = ticker_sim(t, BIG);
    let report = sim.run();
    assert_eq!(
        report.outcome,
        Outcome::Stopped {
            by: id,
            at: SimTime::from_ns(15_000_000)
        }
    );
    assert_eq!(report.events, 4);
}

#[test]
fn a_broken_invariant_ends_the_run_with_time_and_message() {
    let mut t = Ticker::new(5);
    t.violate_after = Some(3);
    let (mut sim, id) = ticker_sim(t, BIG);
    let report = sim.run();
    assert_eq!(
        report.outcome,
        Outcome::InvariantViolated {
            by: id,
            at: SimTime::from_ns(10_000_000),
            message: "tick 3 broke the rule".into()
        }
    );
    assert!(!report.outcome.is_natural());
    assert!(report.outcome.to_string().contains("t=10ms"));
}

/// A client sends requests with a timeout; a server answers after a random delay. Most timeouts
/// are cancelled when the response arrives; the rest fire. Counts must add up exactly.
struct Client {
    server: Option<ComponentId>,
    rng: SimRng,
    sent: u64,
    max: u64,
    timeout: SimDuration,
    pending: Vec<Option<TimerId>>,
    ok: u64,
    timed_out: u64,
    late: u64,
}

struct Server {
    rng: SimRng,
}

enum Node {
    Client(Client),
    Server(Server),
}

impl Component<Ev> for Node {
    fn on_event(&mut self, ev: Ev, out: &mut Outbox<'_, Ev>) {
        match (self, ev) {
            (Node::Client(c), Ev::Tick) => {
                let id = c.sent;
                c.sent += 1;
                let me = out.me();
                out.send(c.server.unwrap(), SimDuration::ZERO, Ev::Request(id, me));
                c.pending
                    .push(Some(out.schedule(c.timeout, Ev::Timeout(id))));
                if c.sent < c.max {
                    out.schedule(SimDuration::from_us(1 + c.rng.below(100)), Ev::Tick);
                }
            }
            (Node::Client(c), Ev::Response(id)) => match c.pending[id as usize].take() {
                Some(timer) => {
                    assert!(out.cancel(timer), "a pending timeout cancels");
                    c.ok += 1;
                }
                None => c.late += 1,
            },
            (Node::Client(c), Ev::Timeout(id)) => {
                assert!(
                    c.pending[id as usize].take().is_some(),
                    "a cancelled timeout never fires"
                );
                c.timed_out += 1;
            }
            (Node::Server(s), Ev::Request(id, from)) => {
                // 10% of responses come after the 5 ms timeout.
                let delay = if s.rng.below(10) == 0 {
                    6_000
                } else {
                    s.rng.below(4_000)
                };
                out.send(from, SimDuration::from_us(delay), Ev::Response(id));
            }
            (_, ev) => panic!("unexpected {ev:?}"),
        }
    }
}

fn timeout_world(seed: u64, n: u64) -> (Sim<Ev, Node>, ComponentId) {
    let root = RootSeed::new(seed);
    let mut sim = Sim::new(root, BIG);
    let client = sim.add(
        "client",
        Node::Client(Client {
            server: None,
            rng: root.fork("client"),
            sent: 0,
            max: n,
            timeout: SimDuration::from_ms(5),
            pending: vec![],
            ok: 0,
            timed_out: 0,
            late: 0,
        }),
    );
    let server = sim.add(
        "server",
        Node::Server(Server {
            rng: root.fork("server"),
        }),
    );
    if let Node::Client(c) = sim.component_mut(client) {
        c.server = Some(server);
    }
    sim.schedule(SimTime::ZERO, client, Ev::Tick).unwrap();
    (sim, client)
}

#[test]
fn request_timeouts_are_cancelled_exactly_once() {
    let n = 200_000;
    let (mut sim, client) = timeout_world(3, n);
    let report = sim.run();
    assert_eq!(report.outcome, Outcome::Drained);
    let Node::Client(c) = sim.component(client) else {
        unreachable!()
    };
    assert_eq!(c.ok + c.timed_out, n, "every request ends once");
    assert_eq!(
        c.late, c.timed_out,
        "every timed-out request's response arrives late"
    );
    // 10% late, binomial sd ≈ 134.
    assert!(
        (c.timed_out as f64 - 20_000.0).abs() < 700.0,
        "timed out {}",
        c.timed_out
    );
    // 4 events per request (tick, request, response, and a timeout only for 10%) → ≈ 3.1 n.
    assert_eq!(report.events, 3 * n + c.timed_out);
}

#[test]
fn identical_worlds_pass_the_determinism_check() {
    let (outcome, hash) =
        check_determinism(timeout_world(9, 20_000).0, timeout_world(9, 20_000).0).unwrap();
    assert_eq!(outcome, Outcome::Drained);
    let mut again = timeout_world(9, 20_000).0;
    assert_eq!(again.run().trace_hash, hash);
    assert_ne!(
        timeout_world(10, 20_000).0.run().trace_hash,
        hash,
        "another seed, another trace"
    );
}

/// A component with hidden global state: the second world built behaves differently from the
/// 500th event on, exactly the kind of bug the checker exists to find.
struct Leaky {
    count: u64,
}
static BUILT: AtomicU64 = AtomicU64::new(0);

impl Component<Ev> for Leaky {
    fn on_event(&mut self, _ev: Ev, out: &mut Outbox<'_, Ev>) {
        self.count += 1;
        let instance = self.count >> 32;
        let ms = if self.count & 0xffff_ffff >= 500 && instance % 2 == 1 {
            2
        } else {
            1
        };
        out.schedule(SimDuration::from_ms(ms), Ev::Tick);
    }
}

fn leaky_world() -> Sim<Ev, Box<dyn Component<Ev>>> {
    let instance = BUILT.fetch_add(1, Ordering::SeqCst);
    let mut sim: Sim<Ev, Box<dyn Component<Ev>>> = Sim::new(
        RootSeed::new(1),
        Limits {
            max_events: 2_000,
            ..BIG
        },
    );
    let id = sim.add(
        "leaky",
        Box::new(Leaky {
            count: instance << 32,
        }),
    );
    sim.schedule(SimTime::ZERO, id, Ev::Tick).unwrap();
    sim
}

#[test]
fn the_determinism_check_names_the_first_differing_event() {
    let (a, b) = (leaky_world(), leaky_world());
    let d = check_determinism(a, b).unwrap_err();
    // The 500th event (#499, at 499 ms) schedules 1 ms later in the second world, so #500 is
    // the first event that differs.
    assert_eq!(d.index, 500);
    assert_eq!(d.first.as_deref(), Some("#500 t=500ms leaky/Tick"));
    assert_eq!(d.second.as_deref(), Some("#500 t=501ms leaky/Tick"));
    assert!(d.to_string().contains("runs diverge at event #500"), "{d}");
}
