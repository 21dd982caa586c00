//! firedrill: a deterministic simulator and chaos testbed for cloud control planes.
//!
//! A run is a pure function of (scenario, seed): virtual time in integer nanoseconds, events in
//! (time, sequence) order, randomness from named substreams of one root seed. The system under
//! test is built from sans-IO components (state machines that take one event and emit effects), so
//! the simulator here and a live driver later run the very same code.
//!
//! A tour, smallest first:
//! - [`kernel`]: time, the event queue, seeded randomness, distributions, the component model, the
//!   simulator driver and the trace hash;
//! - [`metrics`]: streaming latency histograms and counters;
//! - [`station`]: an open-loop source feeding `c` servers with a bounded queue, the seed of the
//!   API front end;
//! - [`analytic`]: exact queueing-theory answers (Erlang B/C, M/M/c, M/M/c/K, M/G/1);
//! - [`report`]: deterministic JSON output;
//! - [`cli`]: the `firedrill` command line.
//!
//! ```
//! use firedrill::kernel::{Dist, RootSeed};
//! use firedrill::station::{StationConfig, run_station};
//!
//! // M/M/2 at rho = 0.5: 20,000 customers, seed 7.
//! let cfg = StationConfig::new(
//!     Dist::exponential(1.0).unwrap(),   // inter-arrival: rate 1
//!     Dist::exponential(1.0).unwrap(),   // service: rate 1 per server
//!     2, None, 20_000, 0.01,
//! ).unwrap();
//! let result = run_station(&cfg, RootSeed::new(7));
//! let mean = result.response.mean_ns().unwrap() * 1e-9;
//! assert!((mean - 4.0 / 3.0).abs() < 0.1); // M/M/2: W = 1/(1 - rho²) = 4/3
//! ```

pub mod analytic;
pub mod api;
pub mod cache;
pub mod chaos;
pub mod cleanup;
pub mod cli;
pub mod db;
pub mod deps;
pub mod faults;
pub mod gameday;
pub mod gc;
pub mod idempotency;
pub mod invariants;
pub mod kernel;
pub mod metrics;
pub mod reconcile;
pub mod report;
pub mod scenario;
pub mod station;
pub mod traffic;
pub mod workflow;
pub mod world;
