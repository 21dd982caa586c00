//! What a swarm may draw for one scenario (`[chaos]`), and what a reproduction file expects
//! (`[expect]`).

use crate::faults::KIND_NAMES;
use crate::invariants::Invariant;
use crate::kernel::SimDuration;

/// Bounds of the random fault plans `firedrill chaos` draws.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChaosConfig {
    kinds: Vec<&'static str>,
    max_faults: u32,
    quiet: SimDuration,
    max_window: SimDuration,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            kinds: Vec::new(),
            max_faults: 3,
            quiet: SimDuration::from_secs(120),
            max_window: SimDuration::from_secs(300),
        }
    }
}

impl ChaosConfig {
    /// `kinds` empty: every kind the topology can take. Panics on an unknown kind name or a
    /// zero bound (the scenario reader checks both first).
    pub fn new(
        kinds: &[&str],
        max_faults: u32,
        quiet: SimDuration,
        max_window: SimDuration,
    ) -> ChaosConfig {
        assert!(max_faults > 0 && !max_window.is_zero());
        ChaosConfig {
            kinds: kinds
                .iter()
                .map(|k| {
                    *KIND_NAMES
                        .iter()
                        .find(|n| *n == k)
                        .unwrap_or_else(|| panic!("unknown fault kind {k}"))
                })
                .collect(),
            max_faults,
            quiet,
            max_window,
        }
    }
    /// The allowed kinds (empty: all the topology can take).
    pub fn kinds(&self) -> &[&'static str] {
        &self.kinds
    }
    pub fn max_faults(&self) -> u32 {
        self.max_faults
    }
    /// Fault-free traffic at the end of every run: the liveness period.
    pub fn quiet(&self) -> SimDuration {
        self.quiet
    }
    pub fn max_window(&self) -> SimDuration {
        self.max_window
    }
}

/// What a reproduction must reproduce: the run's trace hash and the invariant it breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub trace_hash: String,
    pub invariant: Option<Invariant>,
}
