//! Determinism tooling: the rolling trace hash over every processed event, and a checker that
//! runs a model twice in lockstep and names the first event where the runs differ.

use super::component::{Component, ComponentId, Message};
use super::sim::{Outcome, Sim, Step};
use super::time::SimTime;
use std::fmt;

/// A rolling hash over the processed events' (time, component, kind), in processing order.
/// Two runs with the same hash processed the same events at the same instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(u64);

impl TraceHash {
    pub const fn new() -> TraceHash {
        TraceHash(0x6a09_e667_f3bc_c908)
    }

    /// Folds one event in: one SplitMix64 finaliser over the running hash combined with the
    /// event's time and its (component, kind) word, spread by an odd constant so a change in
    /// either cannot cancel the other.
    #[inline(always)]
    pub fn mix(&mut self, time: SimTime, component: ComponentId, kind_code: u32) {
        let who = ((component.index() as u64) << 32 | u64::from(kind_code))
            .wrapping_mul(0xD6E8_FEB8_6659_FD93);
        self.0 = mix64(self.0.rotate_left(29) ^ time.as_ns() ^ who);
    }

    pub fn value(self) -> u64 {
        self.0
    }
}

impl Default for TraceHash {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TraceHash {
    /// 16 lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[inline]
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One processed event, as the trace sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// 0-based position in the run.
    pub index: u64,
    pub time: SimTime,
    pub component: ComponentId,
    pub kind_code: u32,
    pub kind_name: &'static str,
}

/// Where two runs of the same model parted ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Index of the first differing event.
    pub index: u64,
    /// That event in each run, rendered with component names; `None` where that run had ended.
    pub first: Option<String>,
    pub second: Option<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |e: &Option<String>| e.clone().unwrap_or_else(|| "(run ended)".to_string());
        write!(
            f,
            "runs diverge at event #{}: first run had {}, second run had {}",
            self.index,
            show(&self.first),
            show(&self.second)
        )
    }
}

/// Runs two independently built copies of a model in lockstep, event by event. Returns the
/// common outcome and trace hash, or the first event where they differ. Memory is O(1) in the
/// length of the run.
pub fn check_determinism<M: Message, C: Component<M>>(
    mut first: Sim<M, C>,
    mut second: Sim<M, C>,
) -> Result<(Outcome, TraceHash), Box<Divergence>> {
    loop {
        let (a, b) = (first.step(), second.step());
        match (&a, &b) {
            (Step::Event(x), Step::Event(y)) if x == y => continue,
            (Step::Finished(x), Step::Finished(y))
                if x == y && first.trace_hash() == second.trace_hash() =>
            {
                return Ok((x.clone(), first.trace_hash()));
            }
            _ => {
                let render = |s: &Step, sim: &Sim<M, C>| match s {
                    Step::Event(e) => Some(sim.describe(e)),
                    Step::Finished(_) => None,
                };
                let index = match (&a, &b) {
                    (Step::Event(e), _) | (_, Step::Event(e)) => e.index,
                    _ => first.events_processed(),
                };
                return Err(Box::new(Divergence {
                    index,
                    first: render(&a, &first),
                    second: render(&b, &second),
                }));
            }
        }
    }
}
