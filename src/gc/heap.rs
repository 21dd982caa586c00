//! [`Heap`]: the state machine. See the module documentation of [`super`] for the model.

use super::config::{HeapConfig, PPB};
use super::stats::{GcStats, HeapOccupancy};
use super::{GcProfile, MIB, Pause, PauseKind};
use crate::kernel::{SimDuration, SimTime};

/// Where the heap is in its collection cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Only young GCs (and full GCs) can happen.
    Idle,
    /// G1 concurrent marking; remark and cleanup are due at `remark_at`. `garbage_at_start` is
    /// what the marking will find dead (objects promoted later count as live for this cycle).
    G1Marking {
        remark_at: SimTime,
        garbage_at_start: u64,
    },
    /// G1 after cleanup: the next young GCs are mixed until `remaining` candidate garbage is
    /// reclaimed, `share` at a time (less under the pause target).
    G1Mixed { remaining: u64, share: u64 },
    /// A ZGC cycle: mark end and relocate start are due at `mark_end_at`, the cycle ends and
    /// reclaims `reclaimable` (the garbage when it started) at `end_at`.
    ZgcCycle {
        mark_end_at: SimTime,
        end_at: SimTime,
        mark_end_done: bool,
        reclaimable: u64,
    },
}

/// The pauses of one call, back to back from the call's instant.
struct Pauses {
    /// The instant the world runs again after every pause so far.
    cursor: SimTime,
    /// The most severe kind so far, `None` if nothing paused.
    worst: Option<PauseKind>,
}

/// A JVM-like heap, sans-IO: fed allocation and time, it answers with stop-the-world pauses.
///
/// Contract with the owning node:
/// - call [`Heap::allocate`] as requests allocate and [`Heap::advance`] when a timer set at
///   [`Heap::next_background_trigger`] fires, with non-decreasing instants;
/// - when a call returns `Some(pause)`, freeze every worker from the instant passed in until
///   `now + pause.duration`;
/// - calls made while a pause is still running (`now` before its end) are accounted at the
///   pause's end, and a pause they return is measured from `now`, so it includes the rest of the
///   running pause.
#[derive(Clone, Debug)]
pub struct Heap {
    cfg: HeapConfig,
    /// Background allocation is accounted up to here; also the end of the latest pause.
    clock: SimTime,
    /// Background allocation not yet counted, in units of 1e-9 byte (always < 1e9).
    bg_carry: u64,
    eden_used: u64,
    survivor_used: u64,
    /// For ZGC: the one heap.
    old_used: u64,
    /// Live part of `old_used`, at most `live_set`.
    old_live: u64,
    /// The application's long-lived data (grows with [`Heap::add_live_bytes`]).
    live_set: u64,
    phase: Phase,
    stats: GcStats,
}

/// `per_mib × bytes / MiB`, rounded down, saturating.
fn per_mib(per: SimDuration, bytes: u64) -> SimDuration {
    let ns = u128::from(per.as_ns()) * u128::from(bytes) / u128::from(MIB);
    SimDuration::from_ns(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// `base + per × MiB(bytes)`.
fn linear(base: SimDuration, per: SimDuration, bytes: u64) -> SimDuration {
    base.saturating_add(per_mib(per, bytes))
}

/// The most bytes whose per-MiB cost fits in `budget`.
fn bytes_within(budget: SimDuration, per: SimDuration) -> u64 {
    if per.is_zero() {
        return u64::MAX;
    }
    let b = u128::from(budget.as_ns()) * u128::from(MIB) / u128::from(per.as_ns());
    u64::try_from(b).unwrap_or(u64::MAX)
}

impl Heap {
    /// An empty heap at time zero (a freshly started JVM): the live set is built up by promotion.
    pub fn new(cfg: HeapConfig) -> Heap {
        Heap {
            live_set: cfg.spec().live_set_bytes,
            cfg,
            clock: SimTime::ZERO,
            bg_carry: 0,
            eden_used: 0,
            survivor_used: 0,
            old_used: 0,
            old_live: 0,
            phase: Phase::Idle,
            stats: GcStats::new(),
        }
    }

    /// A heap at time zero whose old generation (ZGC: whole heap) already holds the live set, as
    /// after a warm-up; the prefilled bytes count as allocated.
    pub fn new_warm(cfg: HeapConfig) -> Heap {
        let mut heap = Heap::new(cfg);
        let cap = heap.old_capacity();
        if heap.cfg.profile() != GcProfile::Off {
            let live = heap.live_set.min(cap);
            heap.old_used = live;
            heap.old_live = live;
            heap.stats.bytes_allocated = live;
        }
        heap.stats.occupancy = heap.occupancy();
        heap
    }

    pub fn config(&self) -> &HeapConfig {
        &self.cfg
    }

    /// `bytes` allocated by a request at `now`. First accounts background allocation since the
    /// last call and any concurrent phase due by `now`. Returns the pause this triggers, with
    /// several collections merged as described on [`Pause`] (e.g. a young GC whose promotion
    /// fails returns kind `Full` and the sum of both durations); `None` if nothing paused.
    pub fn allocate(&mut self, now: SimTime, bytes: u64) -> Option<Pause> {
        self.step(now, bytes)
    }

    /// Accounts background allocation and concurrent phases up to `now`; may pause.
    pub fn advance(&mut self, now: SimTime) -> Option<Pause> {
        self.step(now, 0)
    }

    /// The instant at which the heap next needs an [`Heap::advance`] with no request allocation:
    /// background allocation alone fills eden (ZGC: reaches the cycle trigger, or overflows the
    /// headroom during a cycle), or a concurrent phase's pause or end is due, whichever is first;
    /// never before `now` or before the end of the running pause. `None` if nothing would ever
    /// happen (no background allocation and no cycle running, or profile `Off`).
    pub fn next_background_trigger(&self, now: SimTime) -> Option<SimTime> {
        if self.cfg.profile() == GcProfile::Off {
            return None;
        }
        let phase_due = match self.phase {
            Phase::G1Marking { remark_at, .. } => Some(remark_at),
            Phase::ZgcCycle {
                mark_end_at,
                mark_end_done: false,
                ..
            } => Some(mark_end_at),
            Phase::ZgcCycle { end_at, .. } => Some(end_at),
            Phase::Idle | Phase::G1Mixed { .. } => None,
        };
        let earliest = match (phase_due, self.background_fill_instant()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        earliest.map(|t| t.max(now).max(self.clock))
    }

    /// CPU-time multiplier for the application's work: ZGC's configured tax, 1.0 otherwise.
    pub fn cpu_multiplier(&self) -> f64 {
        match self.cfg.profile() {
            GcProfile::Zgc => self.cfg.spec().zgc.cpu_multiplier,
            _ => 1.0,
        }
    }

    /// Fault hook (memory leak, heap pressure): the live set grows by `bytes`. Garbage already in
    /// old becomes live at once (up to `bytes`: the leaked objects are retained instead of
    /// dying); the rest of the growth arrives with later promotions. May push the live set past
    /// old's capacity, which makes every promotion a full GC.
    pub fn add_live_bytes(&mut self, bytes: u64) {
        self.live_set = self.live_set.saturating_add(bytes);
        let retained = bytes.min(self.old_garbage());
        self.old_live += retained;
        self.stats.occupancy = self.occupancy();
    }

    /// Fault hook (`node_pause`): records a stop-the-world pause of `duration` that no
    /// collection caused (a VM freeze, a safepoint storm), in the pause statistics. The heap's
    /// own state does not change: background allocation is still accounted through it.
    pub fn record_injected_pause(&mut self, duration: SimDuration) {
        self.stats.record_injected(duration.as_ns());
    }

    /// A fresh heap whose clock starts at `now` (a process started mid-run: background
    /// allocation counts from `now`, not from time zero).
    pub fn started_at(cfg: HeapConfig, now: SimTime) -> Heap {
        let mut h = Heap::new(cfg);
        h.clock = now;
        h
    }

    /// Fault hook (a node crash's restart at `now`): the heap is empty again, as a freshly
    /// started JVM's ([`Heap::new`]): the configured live set, nothing allocated, no cycle
    /// running, and leaked bytes gone. The statistics are kept (they describe the node's whole
    /// run) and count the restart.
    pub fn restart(&mut self, now: SimTime) {
        let mut fresh = Heap::new(self.cfg);
        fresh.clock = now;
        let used = self.occupancy().total_used();
        fresh.stats = std::mem::replace(&mut self.stats, GcStats::new());
        fresh.stats.restarts += 1;
        fresh.stats.bytes_lost_on_restart += used;
        *self = fresh;
        self.stats.occupancy = self.occupancy();
    }

    /// The application's live set now (configured plus [`Heap::add_live_bytes`]).
    pub fn live_set_bytes(&self) -> u64 {
        self.live_set
    }

    /// Whether a G1 marking cycle (until cleanup) or a ZGC cycle is running.
    pub fn concurrent_cycle_running(&self) -> bool {
        matches!(self.phase, Phase::G1Marking { .. } | Phase::ZgcCycle { .. })
    }

    pub fn stats(&self) -> &GcStats {
        &self.stats
    }

    /// Used bytes per generation now (ZGC: all in `old_used`; `Off`: all zero).
    pub fn occupancy(&self) -> HeapOccupancy {
        HeapOccupancy {
            eden_used: self.eden_used,
            survivor_used: self.survivor_used,
            old_used: self.old_used,
            old_live: self.old_live,
        }
    }

    // ---- the state machine ----

    fn step(&mut self, now: SimTime, bytes: u64) -> Option<Pause> {
        let at = now.max(self.clock);
        let mut p = Pauses {
            cursor: at,
            worst: None,
        };
        self.run_due_phases(at, &mut p);
        let background = self.accrue_background(at);
        self.stats.bytes_allocated_background += background;
        let total = bytes.saturating_add(background);
        self.stats.bytes_allocated += total;
        match self.cfg.profile() {
            GcProfile::Zgc => self.zgc_allocate(total, &mut p),
            GcProfile::G1 | GcProfile::Parallel => self.generational_allocate(total, &mut p),
            // Memory is free: the bytes are only counted.
            GcProfile::Off => return None,
        }
        // Nothing allocates while the world is stopped: background allocation resumes after.
        self.clock = p.cursor;
        self.check_invariants();
        self.stats.occupancy = self.occupancy();
        p.worst.map(|kind| Pause {
            kind,
            duration: p.cursor - now,
        })
    }

    /// Background bytes allocated from `clock` to `at` (exact: the fraction of a byte is carried).
    fn accrue_background(&mut self, at: SimTime) -> u64 {
        let rate = self.cfg.spec().background_alloc_bytes_per_s;
        let dt = at.saturating_since(self.clock).as_ns();
        self.clock = at;
        if rate == 0 {
            return 0;
        }
        // The common case (a few microseconds between allocations) fits in 64 bits, where the
        // division by the constant is a multiplication; the same result either way.
        if let Some(num) = rate
            .checked_mul(dt)
            .and_then(|x| x.checked_add(self.bg_carry))
        {
            self.bg_carry = num % PPB;
            return num / PPB;
        }
        let num = u128::from(self.bg_carry) + u128::from(rate) * u128::from(dt);
        self.bg_carry = (num % u128::from(PPB)) as u64;
        u64::try_from(num / u128::from(PPB)).unwrap_or(u64::MAX)
    }

    /// When background allocation alone reaches the next threshold, from the state at `clock`.
    fn background_fill_instant(&self) -> Option<SimTime> {
        let rate = self.cfg.spec().background_alloc_bytes_per_s;
        if rate == 0 {
            return None;
        }
        let need = match (self.cfg.profile(), self.phase) {
            // The first byte past the headroom stalls.
            (GcProfile::Zgc, Phase::ZgcCycle { .. }) => self.cfg.total_bytes - self.old_used + 1,
            (GcProfile::Zgc, _) => self.cfg.zgc_trigger_bytes.saturating_sub(self.old_used),
            // Eden filled to the last byte collects.
            _ => self.cfg.spec().eden_bytes - self.eden_used,
        };
        let num = (u128::from(need) * u128::from(PPB)).saturating_sub(u128::from(self.bg_carry));
        let dt = num.div_ceil(u128::from(rate));
        u64::try_from(dt)
            .ok()
            .and_then(|dt| self.clock.checked_add(SimDuration::from_ns(dt)))
    }

    /// Records a pause of `kind` and moves the cursor past it.
    fn pause(&mut self, p: &mut Pauses, kind: PauseKind, d: SimDuration) {
        self.note(p, kind, d);
        p.cursor = p.cursor.saturating_add(d);
    }

    /// Records a pause whose time the cursor has already covered.
    fn note(&mut self, p: &mut Pauses, kind: PauseKind, d: SimDuration) {
        self.stats.record(kind, d.as_ns());
        p.worst = Some(p.worst.map_or(kind, |w| w.max(kind)));
    }

    /// Capacity of the old generation (ZGC: of the one heap).
    fn old_capacity(&self) -> u64 {
        match self.cfg.profile() {
            GcProfile::Zgc => self.cfg.total_bytes,
            _ => self.cfg.spec().old_bytes,
        }
    }

    fn old_garbage(&self) -> u64 {
        self.old_used - self.old_live
    }

    /// Puts `bytes` into old: live data first, until old holds the live set; the rest is garbage.
    /// The caller has checked that they fit.
    fn place_in_old(&mut self, bytes: u64) {
        let live = bytes.min(self.live_set.saturating_sub(self.old_live));
        self.old_used += bytes;
        self.old_live += live;
    }

    /// Runs the concurrent-phase steps due by `at` (the call's instant), in order.
    fn run_due_phases(&mut self, at: SimTime, p: &mut Pauses) {
        loop {
            match self.phase {
                Phase::G1Marking {
                    remark_at,
                    garbage_at_start,
                } if remark_at <= at => {
                    let g1 = self.cfg.spec().g1;
                    self.pause(p, PauseKind::Remark, g1.remark_pause);
                    self.pause(p, PauseKind::Cleanup, g1.cleanup_pause);
                    let candidates = garbage_at_start.min(self.old_garbage());
                    self.phase = if candidates == 0 {
                        Phase::Idle
                    } else {
                        Phase::G1Mixed {
                            remaining: candidates,
                            share: candidates.div_ceil(u64::from(g1.mixed_gc_count_target)),
                        }
                    };
                }
                Phase::ZgcCycle {
                    mark_end_at,
                    mark_end_done: false,
                    ..
                } if mark_end_at <= at => self.zgc_mark_end(p),
                // A new cycle started here ends at least `cycle_base` > 0 after `at`: the loop ends.
                Phase::ZgcCycle {
                    end_at,
                    mark_end_done: true,
                    ..
                } if end_at <= at => self.zgc_finish_cycle(p),
                _ => break,
            }
        }
    }

    // ---- generational (G1, Parallel) ----

    fn generational_allocate(&mut self, bytes: u64, p: &mut Pauses) {
        let eden_cap = self.cfg.spec().eden_bytes;
        let mut left = bytes;
        loop {
            let take = left.min(eden_cap - self.eden_used);
            self.eden_used += take;
            left -= take;
            if self.eden_used == eden_cap {
                self.young_gc(p);
            }
            if left == 0 {
                break;
            }
        }
    }

    fn young_gc(&mut self, p: &mut Pauses) {
        let spec = *self.cfg.spec();
        let eden = self.eden_used;
        let previous = self.survivor_used;
        let from_eden = self.cfg.survival.of(eden);
        let tenured = self.cfg.tenuring.of(previous);
        let kept = from_eden.min(spec.survivor_bytes);
        let promote = tenured + (from_eden - kept);
        self.stats.bytes_reclaimed_young += (eden - from_eden) + (previous - tenured);
        self.eden_used = 0;
        self.survivor_used = kept;

        let young = linear(
            spec.young_pause_base,
            spec.young_pause_per_mib_surviving,
            from_eden + tenured,
        );
        let (kind, duration) = self.mixed_part(young);
        self.pause(p, kind, duration);

        self.stats.bytes_promoted += promote;
        if promote <= spec.old_bytes - self.old_used {
            self.place_in_old(promote);
        } else {
            self.full_gc(promote, p);
        }

        if spec.profile == GcProfile::G1
            && self.phase == Phase::Idle
            && self.old_used >= self.cfg.ihop_bytes
        {
            let mark = linear(spec.g1.mark_base, spec.g1.mark_per_mib_live, self.old_live);
            self.phase = Phase::G1Marking {
                remark_at: p.cursor.saturating_add(mark),
                garbage_at_start: self.old_garbage(),
            };
            self.stats.concurrent_cycles += 1;
        }
    }

    /// In G1's mixed phase, reclaims a share of the marked garbage within the pause target
    /// (before this GC promotes). Returns the GC's kind and total pause.
    fn mixed_part(&mut self, young: SimDuration) -> (PauseKind, SimDuration) {
        let Phase::G1Mixed { remaining, share } = self.phase else {
            return (PauseKind::Young, young);
        };
        let g1 = self.cfg.spec().g1;
        let remaining = remaining.min(self.old_garbage());
        let budget = SimDuration::from_ns(g1.pause_target.as_ns().saturating_sub(young.as_ns()));
        let reclaim = share
            .min(remaining)
            .min(bytes_within(budget, g1.mixed_pause_per_mib_reclaimed));
        if reclaim == 0 {
            // Nothing left, or nothing fits in the target: the mixed phase ends.
            self.phase = Phase::Idle;
            return (PauseKind::Young, young);
        }
        self.old_used -= reclaim;
        self.stats.bytes_reclaimed_old += reclaim;
        self.phase = if remaining == reclaim {
            Phase::Idle
        } else {
            Phase::G1Mixed {
                remaining: remaining - reclaim,
                share,
            }
        };
        let extra = per_mib(g1.mixed_pause_per_mib_reclaimed, reclaim);
        (PauseKind::Mixed, young.saturating_add(extra))
    }

    /// A promotion of `pending` bytes did not fit: collect all of old, then place the live part
    /// of `pending` (what still does not fit is out of memory).
    fn full_gc(&mut self, pending: u64, p: &mut Pauses) {
        let spec = *self.cfg.spec();
        self.stats.bytes_reclaimed_old += self.old_garbage();
        self.old_used = self.old_live;
        let live = pending.min(self.live_set.saturating_sub(self.old_live));
        self.stats.bytes_reclaimed_old += pending - live;
        let fit = live.min(spec.old_bytes - self.old_used);
        self.old_used += fit;
        self.old_live += fit;
        self.stats.bytes_out_of_memory += live - fit;
        // A full GC cancels G1's concurrent cycle and mixed phase.
        self.phase = Phase::Idle;
        let d = linear(
            spec.full_pause_base,
            spec.full_pause_per_mib_live,
            self.old_live,
        );
        self.pause(p, PauseKind::Full, d);
    }

    // ---- ZGC ----

    fn zgc_allocate(&mut self, bytes: u64, p: &mut Pauses) {
        let cap = self.cfg.total_bytes;
        let mut left = bytes;
        loop {
            let take = left.min(cap - self.old_used);
            self.place_in_old(take);
            left -= take;
            self.zgc_maybe_start(p);
            if left == 0 {
                break;
            }
            // The heap is full (so a cycle is running): wait for it to end.
            self.zgc_stall(p);
            if self.old_used == cap && self.old_garbage() == 0 {
                // All live: no cycle can make room.
                self.stats.bytes_out_of_memory += left;
                break;
            }
        }
    }

    fn zgc_maybe_start(&mut self, p: &mut Pauses) {
        if self.phase != Phase::Idle || self.old_used < self.cfg.zgc_trigger_bytes {
            return;
        }
        let z = self.cfg.spec().zgc;
        let start = p.cursor;
        let d = linear(z.cycle_base, z.cycle_per_mib_live, self.old_live);
        self.phase = Phase::ZgcCycle {
            mark_end_at: start.saturating_add(SimDuration::from_ns(d.as_ns() / 2)),
            end_at: start.saturating_add(d),
            mark_end_done: false,
            reclaimable: self.old_garbage(),
        };
        self.stats.concurrent_cycles += 1;
        self.pause(p, PauseKind::ZgcPause, z.pause); // pause mark start
    }

    /// Pause mark end and pause relocate start, back to back.
    fn zgc_mark_end(&mut self, p: &mut Pauses) {
        if let Phase::ZgcCycle { mark_end_done, .. } = &mut self.phase {
            *mark_end_done = true;
        }
        let pause = self.cfg.spec().zgc.pause;
        self.pause(p, PauseKind::ZgcPause, pause);
        self.pause(p, PauseKind::ZgcPause, pause);
    }

    /// Reclaims what the cycle found dead; starts the next cycle at once if still above trigger.
    fn zgc_finish_cycle(&mut self, p: &mut Pauses) {
        if let Phase::ZgcCycle { reclaimable, .. } = self.phase {
            let freed = reclaimable.min(self.old_garbage());
            self.old_used -= freed;
            self.stats.bytes_reclaimed_old += freed;
        }
        self.phase = Phase::Idle;
        self.zgc_maybe_start(p);
    }

    /// The allocator waits for the running cycle to end; the cycle's remaining pauses happen
    /// during the wait, and the stall records only the time they do not cover.
    fn zgc_stall(&mut self, p: &mut Pauses) {
        self.zgc_maybe_start(p);
        let Phase::ZgcCycle {
            mark_end_at,
            end_at,
            mark_end_done,
            ..
        } = self.phase
        else {
            unreachable!("a full heap is above any trigger, so a cycle is running");
        };
        let mut waited = 0u64;
        if !mark_end_done {
            waited += mark_end_at.saturating_since(p.cursor).as_ns();
            p.cursor = p.cursor.max(mark_end_at);
            self.zgc_mark_end(p);
        }
        waited += end_at.saturating_since(p.cursor).as_ns();
        p.cursor = p.cursor.max(end_at);
        if waited > 0 {
            self.note(p, PauseKind::AllocationStall, SimDuration::from_ns(waited));
        }
        self.zgc_finish_cycle(p);
    }

    fn check_invariants(&self) {
        let spec = self.cfg.spec();
        match self.cfg.profile() {
            GcProfile::Zgc => {
                assert!(self.eden_used == 0 && self.survivor_used == 0);
                assert!(self.old_used <= self.cfg.total_bytes, "heap over capacity");
            }
            _ => {
                assert!(self.eden_used < spec.eden_bytes, "a full eden is collected");
                assert!(self.survivor_used <= spec.survivor_bytes);
                assert!(self.old_used <= spec.old_bytes, "old over capacity");
            }
        }
        assert!(self.old_live <= self.old_used && self.old_live <= self.live_set);
        let s = &self.stats;
        // Byte conservation: a handful of additions, cheap enough to check in release builds too.
        assert_eq!(
            u128::from(s.bytes_allocated),
            u128::from(self.eden_used)
                + u128::from(self.survivor_used)
                + u128::from(self.old_used)
                + u128::from(s.bytes_reclaimed_young)
                + u128::from(s.bytes_reclaimed_old)
                + u128::from(s.bytes_out_of_memory)
                + u128::from(s.bytes_lost_on_restart),
            "allocated bytes are used, reclaimed, out of memory or lost on a restart"
        );
    }
}
