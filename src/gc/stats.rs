//! What a heap measured: pauses per kind (HdrHistograms in ns), byte flows and occupancy.

use super::PauseKind;
use crate::metrics::LatencyHistogram;

/// Used bytes per generation. For ZGC (one non-generational heap) everything is in `old_used` /
/// `old_live`; for `Off` everything is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapOccupancy {
    pub eden_used: u64,
    pub survivor_used: u64,
    pub old_used: u64,
    /// The part of `old_used` that is live data (the rest is garbage awaiting collection).
    pub old_live: u64,
}

impl HeapOccupancy {
    /// eden + survivor + old.
    pub fn total_used(&self) -> u64 {
        self.eden_used + self.survivor_used + self.old_used
    }
}

/// Everything a [`super::Heap`] has counted since it was built.
///
/// Byte flows balance: `bytes_allocated = occupancy().total_used() + bytes_reclaimed() +
/// bytes_out_of_memory + bytes_lost_on_restart` (except for profile `Off`, which only counts
/// allocation).
#[derive(Clone, Debug)]
pub struct GcStats {
    pub(crate) per_kind: [LatencyHistogram; PauseKind::ALL.len()],
    pub(crate) all: LatencyHistogram,
    pub(crate) total_paused_ns: u64,
    pub(crate) bytes_allocated: u64,
    pub(crate) bytes_allocated_background: u64,
    pub(crate) bytes_promoted: u64,
    pub(crate) bytes_reclaimed_young: u64,
    pub(crate) bytes_reclaimed_old: u64,
    pub(crate) bytes_out_of_memory: u64,
    pub(crate) concurrent_cycles: u64,
    pub(crate) occupancy: HeapOccupancy,
    /// Stop-the-world pauses injected by faults (`node_pause`), not collections.
    pub(crate) injected: LatencyHistogram,
    /// Heap restarts (a node crash's restart): the heap state was lost, these counts kept.
    pub(crate) restarts: u64,
    /// Bytes the heap held when it restarted (gone with the process).
    pub(crate) bytes_lost_on_restart: u64,
}

impl GcStats {
    pub(crate) fn new() -> GcStats {
        GcStats {
            per_kind: std::array::from_fn(|_| LatencyHistogram::new()),
            all: LatencyHistogram::new(),
            total_paused_ns: 0,
            bytes_allocated: 0,
            bytes_allocated_background: 0,
            bytes_promoted: 0,
            bytes_reclaimed_young: 0,
            bytes_reclaimed_old: 0,
            bytes_out_of_memory: 0,
            concurrent_cycles: 0,
            occupancy: HeapOccupancy::default(),
            injected: LatencyHistogram::new(),
            restarts: 0,
            bytes_lost_on_restart: 0,
        }
    }

    pub(crate) fn record(&mut self, kind: PauseKind, ns: u64) {
        self.per_kind[kind.index()].record(ns);
        self.all.record(ns);
        self.total_paused_ns = self.total_paused_ns.saturating_add(ns);
    }

    /// An injected stop-the-world pause (a fault): counted in [`GcStats::all_pauses`] and
    /// [`GcStats::total_paused_ns`] like a collection's, and in [`GcStats::injected`], under no
    /// collection kind.
    pub(crate) fn record_injected(&mut self, ns: u64) {
        self.injected.record(ns);
        self.all.record(ns);
        self.total_paused_ns = self.total_paused_ns.saturating_add(ns);
    }

    /// The injected pauses (`node_pause` faults), ns; part of [`GcStats::all_pauses`].
    pub fn injected(&self) -> &LatencyHistogram {
        &self.injected
    }
    /// How many times the heap restarted empty (node crashes).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Bytes in use when the heap restarted (node crashes), summed over restarts.
    pub fn bytes_lost_on_restart(&self) -> u64 {
        self.bytes_lost_on_restart
    }

    /// How many pauses of `kind` there were.
    pub fn count(&self, kind: PauseKind) -> u64 {
        self.per_kind[kind.index()].count()
    }
    /// The durations (ns) of the pauses of `kind`, each collection recorded on its own.
    pub fn histogram(&self, kind: PauseKind) -> &LatencyHistogram {
        &self.per_kind[kind.index()]
    }
    /// The durations (ns) of every pause, whatever its kind.
    pub fn all_pauses(&self) -> &LatencyHistogram {
        &self.all
    }
    /// Sum of every pause's duration (a ZGC allocation stall counts only the time not already
    /// covered by the cycle's own pauses).
    pub fn total_paused_ns(&self) -> u64 {
        self.total_paused_ns
    }
    /// Every byte allocated, by requests and in the background.
    pub fn bytes_allocated(&self) -> u64 {
        self.bytes_allocated
    }
    /// The part of [`GcStats::bytes_allocated`] that was background allocation.
    pub fn bytes_allocated_background(&self) -> u64 {
        self.bytes_allocated_background
    }
    /// Bytes moved from the young generation to old (including premature promotion on survivor
    /// overflow, and promotions a full GC then found dead or could not place).
    pub fn bytes_promoted(&self) -> u64 {
        self.bytes_promoted
    }
    /// Bytes freed by young collections (dead eden and survivor objects).
    pub fn bytes_reclaimed_young(&self) -> u64 {
        self.bytes_reclaimed_young
    }
    /// Bytes freed in old (mixed, full and ZGC collections).
    pub fn bytes_reclaimed_old(&self) -> u64 {
        self.bytes_reclaimed_old
    }
    /// All bytes freed.
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_reclaimed_young + self.bytes_reclaimed_old
    }
    /// Live bytes that did not fit in the heap even after a full collection (a real JVM would
    /// throw `OutOfMemoryError`); the model drops them and carries on.
    pub fn bytes_out_of_memory(&self) -> u64 {
        self.bytes_out_of_memory
    }
    /// Concurrent cycles started (G1 marking cycles, ZGC cycles).
    pub fn concurrent_cycles(&self) -> u64 {
        self.concurrent_cycles
    }
    /// Occupancy after the last call.
    pub fn occupancy(&self) -> HeapOccupancy {
        self.occupancy
    }
}
