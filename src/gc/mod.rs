//! The JVM-like heap of an API server node: generations, collections and the stop-the-world
//! pauses they cost, as a sans-IO state machine (G1, Parallel, ZGC, or no GC at all).
//!
//! A node owns one [`Heap`] and tells it about allocation as requests run
//! ([`Heap::allocate`]) and about the passing of time ([`Heap::advance`], driven by a timer at
//! [`Heap::next_background_trigger`]). When a call returns a [`Pause`], the node freezes all its
//! workers for [`Pause::duration`] from the instant it passed in (stop-the-world). The heap has no
//! events of its own, reads no clock and draws no randomness: the same calls give the same pauses.
//!
//! # The model (domain.md §6)
//!
//! State is integer bytes; durations are integer nanoseconds; configured ratios are converted once
//! to parts per billion when the [`HeapConfig`] is validated, and applied with floor division.
//!
//! - **Allocation** fills eden. Allocation is divisible (a request's bytes are many small
//!   objects), so eden fills to exactly its capacity and a **young GC** runs at that moment: the
//!   young-GC interval is `eden / allocation rate`. Background allocation (not tied to requests)
//!   accrues at a constant rate between calls, except while the heap is paused.
//! - **Young GC**: `survival_ratio` of eden is still live and is copied to the survivor space (what
//!   does not fit there overflows straight into old); of what the survivor space held before,
//!   `tenuring_ratio` is promoted to old and the rest has died. The pause is
//!   `young_pause_base + young_pause_per_mib_surviving × (copied MiB)`, where the copied bytes are
//!   the eden survivors plus the promoted survivors.
//! - **Old generation**: promoted bytes become live data until the old generation holds the
//!   application's live set (`live_set_bytes`); promoted bytes beyond it are garbage (objects
//!   that die old). When a promotion does not fit, a **full GC** collects the whole old generation:
//!   its pause is `full_pause_base + full_pause_per_mib_live × (live MiB in old)`, and afterwards
//!   old holds only live data. Live data beyond old's capacity cannot be placed: the model counts
//!   it as out-of-memory bytes ([`GcStats::bytes_out_of_memory`]) and keeps running, thrashing
//!   with a full GC per young GC as a real JVM would before it throws.
//! - **G1** adds a concurrent cycle when old occupancy reaches the initiating heap occupancy
//!   (IHOP, a fraction of the whole heap) after a young GC: concurrent marking takes
//!   `mark_base + mark_per_mib_live × live MiB`, then come two small pauses (remark, then cleanup
//!   right after it); the garbage present when marking started is then reclaimed by the next young
//!   GCs, which become **mixed** GCs: each reclaims `1 / mixed_gc_count_target` of it, at most what
//!   fits in the pause target, with pause `young pause + mixed_pause_per_mib_reclaimed × reclaimed
//!   MiB`. A promotion that still does not fit is a full GC, which cancels the cycle.
//! - **Parallel** has no concurrent cycle: young GCs, and a full GC whenever old fills.
//! - **ZGC** is not generational here: eden + survivor + old is one heap, reported as `old` in
//!   [`HeapOccupancy`]. When used bytes reach `trigger_fraction` of it a concurrent cycle starts,
//!   lasting `cycle_base + cycle_per_mib_live × live MiB`; it has three tiny pauses (mark start at
//!   the beginning, mark end and relocate start back to back at half-time) and, at its end,
//!   reclaims the garbage present when it started. Allocation during the cycle must fit in the
//!   headroom left when it started; when it does not, the allocator stalls until the cycle ends
//!   ([`PauseKind::AllocationStall`]). ZGC's concurrent threads cost a constant throughput tax,
//!   [`Heap::cpu_multiplier`].
//! - **Off** never pauses and costs nothing: the heap only counts allocated bytes.
//!
//! Scheduled phases (G1 remark and cleanup, ZGC's later pauses and cycle end) happen at the first
//! call at or after their instant; [`Heap::next_background_trigger`] includes them, so a node that
//! keeps a timer at that instant sees them on time.
//!
//! Deliberate simplifications: no adaptive sizing of eden (G1 and Parallel both resize young
//! generations to meet pause goals), no humongous objects, remembered-set and reference
//! processing costs folded into the configured per-MiB costs, and ZGC's allocation-rate trigger
//! replaced by a fixed occupancy fraction.

mod config;
mod heap;
mod stats;
#[cfg(test)]
mod tests;

pub use config::{G1Params, HeapConfig, HeapConfigError, HeapSpec, ZgcParams};
pub use heap::Heap;
pub use stats::{GcStats, HeapOccupancy};

use crate::kernel::SimDuration;
use std::fmt;
use std::str::FromStr;

/// One mebibyte: the unit of every per-MiB cost.
pub const MIB: u64 = 1 << 20;
/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// Which collector a heap runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GcProfile {
    /// Garbage-First: young GCs, concurrent cycles started at IHOP, mixed GCs, full GC as a last
    /// resort.
    G1,
    /// The throughput collector: young GCs and stop-the-world full GCs, nothing concurrent.
    Parallel,
    /// Concurrent, not generational here: sub-millisecond pauses, allocation stalls when the
    /// headroom runs out, and a CPU tax.
    Zgc,
    /// No collection costs at all (the baseline without GC).
    Off,
}

impl GcProfile {
    /// Every profile, in declaration order.
    pub const ALL: [GcProfile; 4] = [
        GcProfile::G1,
        GcProfile::Parallel,
        GcProfile::Zgc,
        GcProfile::Off,
    ];

    /// The name read and printed: `g1`, `parallel`, `zgc`, `off`.
    pub const fn name(self) -> &'static str {
        match self {
            GcProfile::G1 => "g1",
            GcProfile::Parallel => "parallel",
            GcProfile::Zgc => "zgc",
            GcProfile::Off => "off",
        }
    }
}

impl fmt::Display for GcProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A GC profile name that is not one of `g1`, `parallel`, `zgc`, `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown GC profile `{0}`: use one of g1, parallel, zgc, off")]
pub struct ParseGcProfileError(pub String);

impl FromStr for GcProfile {
    type Err = ParseGcProfileError;

    /// Reads `g1`, `parallel`, `zgc` or `off` (ASCII case-insensitive, surrounding spaces allowed).
    fn from_str(s: &str) -> Result<GcProfile, ParseGcProfileError> {
        let t = s.trim();
        GcProfile::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseGcProfileError(t.to_string()))
    }
}

/// What stopped the world. Declared from the least to the most severe: when one call returns
/// several collections merged into one [`Pause`], the pause carries the most severe kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PauseKind {
    /// One of ZGC's three sub-millisecond pauses per cycle.
    ZgcPause,
    /// G1's cleanup pause at the end of a concurrent cycle.
    Cleanup,
    /// G1's remark pause at the end of concurrent marking.
    Remark,
    /// A young collection (eden and survivors).
    Young,
    /// A G1 young collection that also reclaims part of the old generation's garbage.
    Mixed,
    /// ZGC could not satisfy an allocation: the allocator waits for the running cycle to end.
    AllocationStall,
    /// A stop-the-world collection of the whole old generation.
    Full,
}

impl PauseKind {
    /// Every kind, least severe first; `ALL[k.index()] == k`.
    pub const ALL: [PauseKind; 7] = [
        PauseKind::ZgcPause,
        PauseKind::Cleanup,
        PauseKind::Remark,
        PauseKind::Young,
        PauseKind::Mixed,
        PauseKind::AllocationStall,
        PauseKind::Full,
    ];

    /// Position in [`PauseKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A snake-case name for reports: `young`, `mixed`, `remark`, `cleanup`, `full`,
    /// `zgc_pause`, `allocation_stall`.
    pub const fn name(self) -> &'static str {
        match self {
            PauseKind::ZgcPause => "zgc_pause",
            PauseKind::Cleanup => "cleanup",
            PauseKind::Remark => "remark",
            PauseKind::Young => "young",
            PauseKind::Mixed => "mixed",
            PauseKind::AllocationStall => "allocation_stall",
            PauseKind::Full => "full",
        }
    }
}

impl fmt::Display for PauseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stop-the-world pause returned to the node: freeze every worker from the instant passed to
/// the call for `duration`.
///
/// When one call runs several collections (a young GC whose promotion fails and turns into a full
/// GC; G1's remark and cleanup; a ZGC stall spanning the cycle's last pauses) they are merged:
/// `duration` is their sum and `kind` the most severe of them ([`PauseKind`] is ordered by
/// severity). [`GcStats`] records each collection separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    pub kind: PauseKind,
    pub duration: SimDuration,
}
