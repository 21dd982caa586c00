//! The service station: an open-loop source (any inter-arrival [`Dist`]) → `c` servers → a queue
//! bounded at `K` customers in the system (arrivals beyond it are rejected: the future 503s) →
//! departures. Response times are measured from each customer's *intended* arrival instant and
//! recorded in an HdrHistogram.
//!
//! This is the seed of the API front end: a node's worker pool and accept queue are a station.

use crate::kernel::{
    Component, ComponentId, Dist, Limits, Message, Outbox, RootSeed, RunReport, Sim, SimDuration,
    SimRng, SimTime,
};
use crate::metrics::{HistogramId, LatencyHistogram};
use std::collections::VecDeque;

/// The events of a station world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StationMsg {
    /// The station's own open-loop arrival: schedules the next one, then arrives.
    OpenArrival { intended: SimTime },
    /// A customer sent by another component reaches the station; `intended` is when it was
    /// meant to start.
    Arrival { intended: SimTime },
    /// A server finishes the customer that arrived at `intended`.
    Departure { intended: SimTime },
}

impl Message for StationMsg {
    #[inline]
    fn kind_code(&self) -> u32 {
        match self {
            StationMsg::OpenArrival { .. } => 0,
            StationMsg::Arrival { .. } => 1,
            StationMsg::Departure { .. } => 2,
        }
    }
    fn kind_name(&self) -> &'static str {
        match self {
            StationMsg::OpenArrival { .. } => "OpenArrival",
            StationMsg::Arrival { .. } => "Arrival",
            StationMsg::Departure { .. } => "Departure",
        }
    }
}

/// An open-loop arrival process owned by the station: each arrival schedules the next one at an
/// instant drawn from the inter-arrival distribution, whatever the station's state (no
/// coordinated omission). Owning it saves one event per customer against a separate source
/// component; arrivals from elsewhere (another component's `Arrival` messages) work the same.
#[derive(Clone, Debug)]
pub struct OpenArrivals {
    inter_arrival: Dist,
    rng: SimRng,
    remaining: u64,
}

impl OpenArrivals {
    /// `customers` arrivals in all.
    pub fn new(inter_arrival: Dist, rng: SimRng, customers: u64) -> OpenArrivals {
        OpenArrivals {
            inter_arrival,
            rng,
            remaining: customers,
        }
    }

    /// Draws the next gap and counts one arrival; `None` when all have been emitted.
    #[inline]
    fn next_gap(&mut self) -> Option<SimDuration> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.inter_arrival.sample_duration(&mut self.rng))
    }
}

/// `c` identical FCFS servers with room for at most `capacity` customers in the system.
#[derive(Clone, Debug)]
pub struct Station {
    arrivals: Option<OpenArrivals>,
    service: Dist,
    rng: SimRng,
    servers: u32,
    capacity: u64,
    busy: u32,
    waiting: VecDeque<SimTime>,
    response: HistogramId,
    /// Warm-up: the first this many completions are not recorded, and the first this many
    /// arrivals do not count towards blocking.
    warmup_customers: u64,
    arrivals_seen: u64,
    rejected: u64,
    rejected_measured: u64,
    completions: u64,
    /// Measurement window for utilisation: from the warm-up's end to the last state change.
    window_start: Option<SimTime>,
    last_change: SimTime,
    busy_ns: u128,
}

/// Counts a station keeps, read after a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StationCounts {
    pub arrivals: u64,
    pub rejected: u64,
    /// Rejections among arrivals after the warm-up.
    pub rejected_measured: u64,
    /// Arrivals after the warm-up.
    pub arrivals_measured: u64,
    pub completions: u64,
    /// Completions whose response time was recorded (after the warm-up).
    pub recorded: u64,
    /// Server-busy time integrated over the measurement window, in server-nanoseconds.
    pub busy_server_ns: u128,
    /// Length of the measurement window in ns.
    pub window_ns: u64,
}

impl Station {
    /// `capacity` = most customers in the system (in service + waiting); `None` = unbounded.
    pub fn new(
        arrivals: Option<OpenArrivals>,
        service: Dist,
        rng: SimRng,
        servers: u32,
        capacity: Option<u64>,
        response: HistogramId,
        warmup_customers: u64,
    ) -> Station {
        assert!(servers > 0, "a station needs at least one server");
        let capacity = capacity.unwrap_or(u64::MAX);
        assert!(
            capacity >= u64::from(servers),
            "capacity below the number of servers"
        );
        Station {
            arrivals,
            service,
            rng,
            servers,
            capacity,
            busy: 0,
            waiting: VecDeque::with_capacity(1024),
            response,
            warmup_customers,
            arrivals_seen: 0,
            rejected: 0,
            rejected_measured: 0,
            completions: 0,
            window_start: (warmup_customers == 0).then_some(SimTime::ZERO),
            last_change: SimTime::ZERO,
            busy_ns: 0,
        }
    }

    /// Customers in the system now.
    pub fn in_system(&self) -> u64 {
        u64::from(self.busy) + self.waiting.len() as u64
    }

    pub fn counts(&self) -> StationCounts {
        StationCounts {
            arrivals: self.arrivals_seen,
            rejected: self.rejected,
            rejected_measured: self.rejected_measured,
            arrivals_measured: self.arrivals_seen.saturating_sub(self.warmup_customers),
            completions: self.completions,
            recorded: self.completions.saturating_sub(self.warmup_customers),
            busy_server_ns: self.busy_ns,
            window_ns: self
                .window_start
                .map_or(0, |s| self.last_change.saturating_since(s).as_ns()),
        }
    }

    #[inline]
    fn account_busy(&mut self, now: SimTime) {
        if self.window_start.is_some() {
            self.busy_ns +=
                u128::from(self.busy) * u128::from(now.saturating_since(self.last_change).as_ns());
        }
        self.last_change = now;
    }

    #[inline]
    fn start_service(&mut self, intended: SimTime, out: &mut Outbox<'_, StationMsg>) {
        let service = self.service.sample_duration(&mut self.rng);
        out.schedule(service, StationMsg::Departure { intended });
    }

    #[inline]
    fn on_event(&mut self, msg: StationMsg, out: &mut Outbox<'_, StationMsg>) {
        let now = out.now();
        match msg {
            StationMsg::OpenArrival { intended } | StationMsg::Arrival { intended } => {
                if let StationMsg::OpenArrival { .. } = msg {
                    if let Some(gap) = self.arrivals.as_mut().and_then(OpenArrivals::next_gap) {
                        out.schedule(
                            gap,
                            StationMsg::OpenArrival {
                                intended: now.saturating_add(gap),
                            },
                        );
                    }
                }
                self.arrivals_seen += 1;
                if self.in_system() >= self.capacity {
                    self.rejected += 1;
                    if self.arrivals_seen > self.warmup_customers {
                        self.rejected_measured += 1;
                    }
                    return;
                }
                if self.busy < self.servers {
                    self.account_busy(now);
                    self.busy += 1;
                    self.start_service(intended, out);
                } else {
                    self.waiting.push_back(intended);
                }
            }
            StationMsg::Departure { intended } => {
                self.account_busy(now);
                self.completions += 1;
                if self.completions > self.warmup_customers {
                    out.record(self.response, now.saturating_since(intended).as_ns());
                } else if self.completions == self.warmup_customers {
                    self.window_start = Some(now);
                }
                if let Some(next) = self.waiting.pop_front() {
                    self.start_service(next, out);
                } else {
                    self.busy -= 1;
                }
            }
        }
        debug_assert!(self.busy <= self.servers);
        debug_assert!(self.in_system() <= self.capacity);
    }
}

impl Component<StationMsg> for Station {
    #[inline]
    fn on_event(&mut self, msg: StationMsg, out: &mut Outbox<'_, StationMsg>) {
        Station::on_event(self, msg, out)
    }
}

/// A validated station experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct StationConfig {
    inter_arrival: Dist,
    service: Dist,
    servers: u32,
    capacity: Option<u64>,
    customers: u64,
    warmup_fraction: f64,
}

/// Why a station experiment is not valid; each variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StationConfigError {
    #[error("servers must be at least 1")]
    NoServers,
    #[error(
        "capacity {capacity} is below the {servers} servers: it counts customers in service too, so use at least {servers}"
    )]
    CapacityBelowServers { capacity: u64, servers: u32 },
    #[error("customers must be at least 1")]
    NoCustomers,
    #[error("customers must be at most {max} (a bound on the run), got {got}")]
    TooManyCustomers { got: u64, max: u64 },
    #[error("warmup fraction must be in [0, 1), got {0}")]
    WarmupFraction(f64),
}

impl StationConfig {
    /// Most customers one station run may simulate.
    pub const MAX_CUSTOMERS: u64 = 1 << 36;

    pub fn new(
        inter_arrival: Dist,
        service: Dist,
        servers: u32,
        capacity: Option<u64>,
        customers: u64,
        warmup_fraction: f64,
    ) -> Result<StationConfig, StationConfigError> {
        if servers == 0 {
            return Err(StationConfigError::NoServers);
        }
        if let Some(k) = capacity {
            if k < u64::from(servers) {
                return Err(StationConfigError::CapacityBelowServers {
                    capacity: k,
                    servers,
                });
            }
        }
        if customers == 0 {
            return Err(StationConfigError::NoCustomers);
        }
        if customers > Self::MAX_CUSTOMERS {
            return Err(StationConfigError::TooManyCustomers {
                got: customers,
                max: Self::MAX_CUSTOMERS,
            });
        }
        if !(0.0..1.0).contains(&warmup_fraction) {
            return Err(StationConfigError::WarmupFraction(warmup_fraction));
        }
        Ok(StationConfig {
            inter_arrival,
            service,
            servers,
            capacity,
            customers,
            warmup_fraction,
        })
    }

    pub fn inter_arrival(&self) -> &Dist {
        &self.inter_arrival
    }
    pub fn service(&self) -> &Dist {
        &self.service
    }
    pub fn servers(&self) -> u32 {
        self.servers
    }
    pub fn capacity(&self) -> Option<u64> {
        self.capacity
    }
    pub fn customers(&self) -> u64 {
        self.customers
    }
    pub fn warmup_fraction(&self) -> f64 {
        self.warmup_fraction
    }
    /// Customers at the start not counted: floor(customers × warmup fraction).
    pub fn warmup_customers(&self) -> u64 {
        (self.customers as f64 * self.warmup_fraction) as u64
    }

    /// The world of this experiment, ready to run: one station owning its open-loop arrivals.
    pub fn build(&self, seed: RootSeed) -> (Sim<StationMsg, Station>, ComponentId) {
        let n = self.customers;
        let limits = Limits {
            // Two events per customer (arrival, departure) plus slack: hitting this bound means a
            // bug, and it is reported as the run's outcome.
            max_events: 2 * n + 16,
            max_time: Limits::GENEROUS.max_time,
            max_pending: usize::try_from(n.saturating_add(u64::from(self.servers)) + 16)
                .unwrap_or(usize::MAX),
        };
        let mut sim = Sim::new(seed, limits);
        let response = sim.metrics_mut().histogram("station.response_ns");
        let warm = self.warmup_customers();
        let mut arrivals =
            OpenArrivals::new(self.inter_arrival.clone(), seed.fork("station.arrivals"), n);
        let first = arrivals.next_gap().expect("at least one customer");
        let station = Station::new(
            Some(arrivals),
            self.service.clone(),
            seed.fork("station.service"),
            self.servers,
            self.capacity,
            response,
            warm,
        );
        let id = sim.add("station", station);
        let at = SimTime::ZERO + first;
        sim.schedule(at, id, StationMsg::OpenArrival { intended: at })
            .expect("the first event is at or after time zero");
        (sim, id)
    }
}

/// What a station run measured.
#[derive(Clone, Debug)]
pub struct StationResult {
    pub report: RunReport,
    pub counts: StationCounts,
    pub servers: u32,
    /// Response times (intended arrival → departure) of the recorded completions, in ns.
    pub response: LatencyHistogram,
}

impl StationResult {
    /// Fraction of measured arrivals that were rejected.
    pub fn blocking_probability(&self) -> f64 {
        let c = &self.counts;
        if c.arrivals_measured == 0 {
            0.0
        } else {
            c.rejected_measured as f64 / c.arrivals_measured as f64
        }
    }
    /// Busy servers / servers, averaged over the measurement window.
    pub fn utilization(&self) -> f64 {
        let c = &self.counts;
        if c.window_ns == 0 {
            return 0.0;
        }
        c.busy_server_ns as f64 / (f64::from(self.servers) * c.window_ns as f64)
    }
}

/// Builds and runs one station experiment.
pub fn run_station(cfg: &StationConfig, seed: RootSeed) -> StationResult {
    let (mut sim, station_id) = cfg.build(seed);
    let report = sim.run();
    let station = sim.component(station_id);
    let counts = station.counts();
    let response = sim.metrics().get_histogram(station.response).clone();
    StationResult {
        report,
        counts,
        servers: cfg.servers,
        response,
    }
}
