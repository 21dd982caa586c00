//! Swarm testing: random fault plans per seed, run against the invariants, and the shrinking of a
//! failing plan to a minimal standalone reproduction.

pub mod config;

pub use config::{ChaosConfig, Expect};
pub mod repro;
pub mod shrink;
pub mod swarm;
