//! Timers kept by their owner instead of the event queue, served by one kernel wake-up: for a
//! component that schedules many timeouts of a few fixed durations and cancels nearly all of
//! them (a call's timeout, once answered).
//!
//! [`LocalTimers`] holds one FIFO per distinct duration: timers of one duration scheduled at
//! non-decreasing instants come due in insertion order, so scheduling, cancelling (marking the
//! entry, dropped lazily when it reaches the front) and popping are O(1) each, plus a scan of
//! the few FIFOs' fronts. Entries due at the same instant fire in insertion order, across FIFOs
//! too. The owner's part, per event it handles:
//! - when its wake-up message arrives, [`LocalTimers::take_wake`] says whether it is the one
//!   armed (a stale one, e.g. of a crashed process, is ignored), then
//!   [`LocalTimers::pop_due`] hands out what is due, in order, until it returns `None`;
//! - after it changed its timers (or at the end of every event), [`LocalTimers::arm`] keeps
//!   one kernel timer at or before the earliest pending entry (a few instructions when nothing
//!   changed; nothing while the due timers are being handed out, whose handlers may schedule
//!   and arm: the owner arms once after its `pop_due` loop), and none at all when
//!   nothing is pending: an idle owner leaves no event behind, so its timers never move the
//!   end of a run. An owner that goes idle for short spells hundreds of times a second (a
//!   node's L2 calls) would pay a push and a cancel per spell for that:
//!   [`LocalTimers::keeping_the_wake_up`] lets the wake-up come instead (it finds nothing due
//!   and arms no other), at the price of one event up to a duration after the last timer.

use super::component::Outbox;
use super::queue::TimerId;
use super::time::{SimDuration, SimTime};
use std::collections::VecDeque;

/// Names one entry of [`LocalTimers`], to cancel it: its FIFO (top 16 bits) and its position
/// there (entries ever pushed to that FIFO before it). A ticket of an entry that fired, was
/// cancelled or was cleared names nothing: cancelling it is a no-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// Bits of a ticket that hold the position.
const POS_BITS: u32 = 48;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
/// Distinct durations at most (the FIFO index fits in a ticket's top 16 bits).
const MAX_FIFOS: usize = 1 << (64 - POS_BITS);

impl Ticket {
    /// A ticket that names no entry: a placeholder.
    pub const NONE: Ticket = Ticket(u64::MAX);

    fn new(fifo: usize, pos: u64) -> Ticket {
        Ticket(((fifo as u64) << POS_BITS) | (pos & POS_MASK))
    }
    fn fifo(self) -> usize {
        (self.0 >> POS_BITS) as usize
    }
    fn pos(self) -> u64 {
        self.0 & POS_MASK
    }
}

/// One pending local timer.
#[derive(Debug)]
struct Entry<T> {
    due: SimTime,
    /// Insertion order over all FIFOs: orders entries due at the same instant.
    seq: u64,
    /// `None` once cancelled (dropped when it reaches the front).
    payload: Option<T>,
}

/// The entries of one duration, due in insertion order.
#[derive(Debug)]
struct Fifo<T> {
    duration: SimDuration,
    /// Entries popped from the front so far: the position of the front entry.
    popped: u64,
    entries: VecDeque<Entry<T>>,
}

impl<T> Fifo<T> {
    /// Pops cancelled entries off the front.
    fn drop_cancelled(&mut self) {
        while self.entries.front().is_some_and(|e| e.payload.is_none()) {
            self.entries.pop_front();
            self.popped += 1;
        }
    }
}

/// Timers kept by their owner, served by one kernel wake-up (see the module's documentation).
#[derive(Debug)]
pub struct LocalTimers<T> {
    fifos: Vec<Fifo<T>>,
    next_seq: u64,
    /// Pending (not cancelled, not popped) timers.
    pending: usize,
    /// The kernel wake-up armed for the earliest pending timer, and when it comes: at or before
    /// every pending timer's due instant unless `stale` says otherwise.
    wake: Option<(SimTime, TimerId)>,
    /// The wake-up may need arming, moving or cancelling: a timer was scheduled before it
    /// (or with none armed), the last pending one was cancelled, or the wake-up came.
    /// [`LocalTimers::arm`] does nothing (a load and a branch) while this is down.
    stale: bool,
    /// Cancel the wake-up when no timer is pending (see [`LocalTimers::keeping_the_wake_up`]).
    cancel_when_idle: bool,
    /// Between a [`LocalTimers::take_wake`] and the `pop_due` that finds nothing more due:
    /// [`LocalTimers::arm`] waits for the end of it.
    sweeping: bool,
}

impl<T> Default for LocalTimers<T> {
    fn default() -> Self {
        LocalTimers {
            fifos: Vec::new(),
            next_seq: 0,
            pending: 0,
            wake: None,
            stale: false,
            cancel_when_idle: true,
            sweeping: false,
        }
    }
}

impl<T> LocalTimers<T> {
    /// Timers whose wake-up is cancelled as soon as none is pending.
    pub fn new() -> LocalTimers<T> {
        LocalTimers::default()
    }

    /// Timers whose wake-up, once armed, is left to come when the last pending one is
    /// cancelled: it finds nothing due and arms no other.
    pub fn keeping_the_wake_up() -> LocalTimers<T> {
        LocalTimers {
            cancel_when_idle: false,
            ..LocalTimers::default()
        }
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Timers pending (scheduled, neither cancelled nor popped).
    pub fn len(&self) -> usize {
        self.pending
    }

    /// A timer due `duration` (longer than zero) after `now`, which must not be before the
    /// `now` of any earlier call. At most 65,536 distinct durations (an owner has a few: one per configured timeout).
    pub fn schedule(&mut self, now: SimTime, duration: SimDuration, payload: T) -> Ticket {
        debug_assert!(!duration.is_zero(), "a local timer must be due after now");
        let i = match self.fifos.iter().position(|f| f.duration == duration) {
            Some(i) => i,
            None => {
                assert!(
                    self.fifos.len() < MAX_FIFOS,
                    "LocalTimers holds at most {MAX_FIFOS} distinct durations"
                );
                self.fifos.push(Fifo {
                    duration,
                    popped: 0,
                    entries: VecDeque::new(),
                });
                self.fifos.len() - 1
            }
        };
        let fifo = &mut self.fifos[i];
        let due = now.saturating_add(duration);
        debug_assert!(fifo.entries.back().is_none_or(|e| e.due <= due));
        let pos = fifo.popped + fifo.entries.len() as u64;
        fifo.entries.push_back(Entry {
            due,
            seq: self.next_seq,
            payload: Some(payload),
        });
        self.next_seq += 1;
        self.pending += 1;
        if self.wake.is_none_or(|(at, _)| due < at) {
            self.stale = true;
        }
        Ticket::new(i, pos)
    }

    /// Cancels the timer `t` names; returns whether it was still pending.
    pub fn cancel(&mut self, t: Ticket) -> bool {
        let Some(fifo) = self.fifos.get_mut(t.fifo()) else {
            return false;
        };
        // Positions count modulo 2^48: a stale ticket's offset wraps far past the entries.
        let i = t.pos().wrapping_sub(fifo.popped) & POS_MASK;
        let was_pending = fifo
            .entries
            .get_mut(i as usize)
            .and_then(|e| e.payload.take())
            .is_some();
        self.pending -= usize::from(was_pending);
        // Only the last one's cancelling matters: a wake-up armed earlier than needed is
        // left to come and re-arm.
        self.stale |= was_pending && self.pending == 0 && self.cancel_when_idle;
        was_pending
    }

    /// The FIFO whose front is the earliest pending timer, by (due, insertion), after dropping
    /// cancelled fronts.
    fn earliest(&mut self) -> Option<usize> {
        let mut best: Option<(SimTime, u64, usize)> = None;
        for (i, fifo) in self.fifos.iter_mut().enumerate() {
            fifo.drop_cancelled();
            if let Some(e) = fifo.entries.front()
                && best.is_none_or(|(due, seq, _)| (e.due, e.seq) < (due, seq))
            {
                best = Some((e.due, e.seq, i));
            }
        }
        best.map(|(.., i)| i)
    }

    /// The FIFO whose front is the earliest pending timer, if it is due at `now` or before.
    fn earliest_due(&mut self, now: SimTime) -> Option<usize> {
        if self.pending == 0 {
            return None;
        }
        let i = self.earliest()?;
        (self.fifos[i].entries.front()?.due <= now).then_some(i)
    }

    /// When the earliest pending timer is due.
    pub fn next_due_at(&mut self) -> Option<SimTime> {
        if self.pending == 0 {
            return None;
        }
        let i = self.earliest()?;
        self.fifos[i].entries.front().map(|e| e.due)
    }

    /// Removes and returns the earliest pending timer if it is due at `now` or before; `None`
    /// ends the hand-out a [`LocalTimers::take_wake`] began.
    pub fn pop_due(&mut self, now: SimTime) -> Option<T> {
        let Some(i) = self.earliest_due(now) else {
            self.sweeping = false;
            return None;
        };
        let fifo = &mut self.fifos[i];
        fifo.popped += 1;
        self.pending -= 1;
        fifo.entries.pop_front()?.payload
    }

    /// The owner's wake-up message arrived at `now`: whether it is the armed one (then it is
    /// spent, and [`LocalTimers::pop_due`] hands out what is due). A wake-up not armed, or
    /// armed for later, is stale (one of a crashed process, say): the owner ignores it.
    pub fn take_wake(&mut self, now: SimTime) -> bool {
        match self.wake {
            Some((at, _)) if at <= now => {
                self.wake = None;
                self.stale = true;
                self.sweeping = true;
                true
            }
            _ => false,
        }
    }

    /// Keeps the wake-up at or before the earliest pending timer; call it at the end of every
    /// event that may have scheduled, cancelled or popped timers. It arms one if there is none
    /// or a timer scheduled since is due before it, and cancels it when no timer is pending.
    /// One armed earlier than needed (its timers were cancelled) is left to come and re-arm.
    /// `wake` makes the owner's wake-up message.
    #[inline(always)]
    pub fn arm<M>(&mut self, out: &mut Outbox<'_, M>, wake: impl FnOnce() -> M) {
        if self.stale && !self.sweeping {
            self.rearm(out, wake);
        }
    }

    /// [`LocalTimers::arm`] when the wake-up may be out of place.
    #[inline(never)]
    fn rearm<M>(&mut self, out: &mut Outbox<'_, M>, wake: impl FnOnce() -> M) {
        self.stale = false;
        let Some(at) = self.next_due_at() else {
            if self.cancel_when_idle
                && let Some((_, id)) = self.wake.take()
            {
                out.cancel(id);
            }
            return;
        };
        if self.wake.is_some_and(|(armed_at, _)| armed_at <= at) {
            return;
        }
        if let Some((_, id)) = self.wake.take() {
            out.cancel(id);
        }
        let id = out.schedule(at.saturating_since(out.now()), wake());
        self.wake = Some((at, id));
    }

    /// Drops every timer and the wake-up (the owner's process crashed): tickets issued so far
    /// name nothing from now on.
    pub fn clear<M>(&mut self, out: &mut Outbox<'_, M>) {
        for fifo in &mut self.fifos {
            fifo.popped += fifo.entries.len() as u64;
            fifo.entries.clear();
        }
        self.pending = 0;
        self.stale = false;
        self.sweeping = false;
        if let Some((_, id)) = self.wake.take() {
            out.cancel(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LocalTimers, Ticket};
    use crate::kernel::component::{ComponentId, Control, Envelope, Outbox};
    use crate::kernel::queue::EventQueue;
    use crate::kernel::{SimDuration, SimTime};
    use crate::metrics::Registry;

    fn at(ms: u64) -> SimTime {
        SimTime::ZERO.saturating_add(SimDuration::from_ms(ms))
    }

    /// What an `Outbox` needs: an event queue, metrics, the control flags, and an addressee.
    fn driver() -> (EventQueue<Envelope<u8>>, Registry, Control, ComponentId) {
        (
            EventQueue::new(),
            Registry::new(),
            Control::default(),
            ComponentId::new(0),
        )
    }

    /// Pops everything due at `now`, in order.
    fn due(t: &mut LocalTimers<&'static str>, now: SimTime) -> Vec<&'static str> {
        std::iter::from_fn(|| t.pop_due(now)).collect()
    }

    #[test]
    fn fire_in_due_then_insertion_order_across_durations() {
        let mut t = LocalTimers::new();
        let (ms, s) = (SimDuration::from_ms(1), SimDuration::from_ms(10));
        t.schedule(at(0), s, "a10");
        t.schedule(at(0), ms, "b1");
        // Due at 10 ms too, scheduled later: after "a10".
        t.schedule(at(9), ms, "c10");
        t.schedule(at(5), s, "d15");
        assert_eq!(t.len(), 4);
        assert_eq!(t.next_due_at(), Some(at(1)));
        assert_eq!(due(&mut t, at(0)), Vec::<&str>::new());
        assert_eq!(due(&mut t, at(1)), ["b1"]);
        assert_eq!(t.next_due_at(), Some(at(10)));
        assert_eq!(due(&mut t, at(10)), ["a10", "c10"]);
        assert_eq!(due(&mut t, at(100)), ["d15"]);
        assert!(t.is_empty());
        assert_eq!(t.next_due_at(), None);
    }

    #[test]
    fn cancelled_never_fire() {
        let mut t = LocalTimers::new();
        let d = SimDuration::from_ms(5);
        let a = t.schedule(at(0), d, "a");
        let b = t.schedule(at(1), d, "b");
        let c = t.schedule(at(2), d, "c");
        assert!(t.cancel(a));
        assert!(!t.cancel(a), "a second cancel finds nothing");
        assert!(t.cancel(c));
        assert_eq!(t.len(), 1);
        // The cancelled front is dropped: the earliest pending is "b".
        assert_eq!(t.next_due_at(), Some(at(6)));
        assert_eq!(due(&mut t, at(100)), ["b"]);
        assert!(!t.cancel(b), "fired: nothing to cancel");
        assert!(t.is_empty());
        // Tickets stay valid across pops: a later entry is cancelled by its own ticket.
        let e = t.schedule(at(100), d, "e");
        let f = t.schedule(at(100), d, "f");
        assert!(t.cancel(e));
        assert_eq!(due(&mut t, at(105)), ["f"]);
        assert!(!t.cancel(f));
        assert!(!t.cancel(Ticket::NONE), "the placeholder names nothing");
    }

    #[test]
    fn tickets_pack_fifo_and_position() {
        let t = Ticket::new(3, 12_345);
        assert_eq!((t.fifo(), t.pos()), (3, 12_345));
        let t = Ticket::new(65_535, super::POS_MASK);
        assert_eq!((t.fifo(), t.pos()), (65_535, super::POS_MASK));
    }

    /// One event at the earliest due instant, moved earlier by a shorter timer, dropped when
    /// nothing is pending; a stale wake-up is told apart; `clear` voids every ticket.
    #[test]
    fn one_wake_up_at_the_earliest_and_none_when_idle() {
        let (mut q, mut reg, mut ctl, me) = driver();
        let mut t: LocalTimers<&'static str> = LocalTimers::new();
        let (long, short) = (SimDuration::from_ms(10), SimDuration::from_ms(3));
        let mut out = Outbox::new(at(0), me, &mut q, &mut reg, &mut ctl);
        let a = t.schedule(at(0), long, "a");
        t.arm(&mut out, || 7);
        t.schedule(at(0), long, "b");
        t.arm(&mut out, || 7);
        assert_eq!(
            (q.len(), q.peek_time()),
            (1, Some(at(10))),
            "one wake-up, at a's due"
        );
        let mut out = Outbox::new(at(0), me, &mut q, &mut reg, &mut ctl);
        t.schedule(at(0), short, "c");
        t.arm(&mut out, || 7);
        assert_eq!((q.len(), q.peek_time()), (1, Some(at(3))), "re-armed for c");
        assert!(!t.take_wake(at(2)), "armed for 3 ms: not this one");
        assert!(t.take_wake(at(3)));
        assert!(!t.take_wake(at(3)), "spent");
        assert_eq!(t.pop_due(at(3)), Some("c"));
        // A handler of a due timer schedules and arms: that waits for the hand-out's end.
        let mut out = Outbox::new(at(0), me, &mut q, &mut reg, &mut ctl);
        let e = t.schedule(at(0), long, "e");
        t.arm(&mut out, || 7);
        assert_eq!(q.len(), 1, "only the spent wake-up, not popped yet");
        assert!(t.cancel(e));
        assert_eq!(t.pop_due(at(3)), None, "the hand-out ends");
        let popped = q.pop().expect("the wake-up");
        assert_eq!(popped.time, at(3));
        let mut out = Outbox::new(at(3), me, &mut q, &mut reg, &mut ctl);
        t.arm(&mut out, || 7);
        assert_eq!(
            (q.len(), q.peek_time()),
            (1, Some(at(10))),
            "re-armed for a and b"
        );
        let mut out = Outbox::new(at(3), me, &mut q, &mut reg, &mut ctl);
        assert!(t.cancel(a));
        t.arm(&mut out, || 7);
        assert_eq!(t.len(), 1);
        t.clear(&mut out);
        assert!(t.is_empty());
        assert_eq!(q.len(), 0, "clear cancels the wake-up");
        assert!(!t.cancel(a), "cleared tickets name nothing");
        let d = t.schedule(at(3), long, "d");
        let mut out = Outbox::new(at(3), me, &mut q, &mut reg, &mut ctl);
        t.arm(&mut out, || 7);
        assert!(t.cancel(d));
        t.arm(&mut out, || 7);
        assert_eq!(q.len(), 0, "idle: no wake-up left to move the run's end");
    }

    /// A wake-up kept through an idle spell comes, finds nothing due and arms no other.
    #[test]
    fn a_kept_wake_up_comes_once_and_arms_nothing_when_idle() {
        let (mut q, mut reg, mut ctl, me) = driver();
        let mut t: LocalTimers<&'static str> = LocalTimers::keeping_the_wake_up();
        let d = SimDuration::from_ms(5);
        let mut out = Outbox::new(at(0), me, &mut q, &mut reg, &mut ctl);
        let a = t.schedule(at(0), d, "a");
        t.arm(&mut out, || 7);
        assert!(t.cancel(a));
        t.arm(&mut out, || 7);
        assert_eq!(
            (q.len(), q.peek_time()),
            (1, Some(at(5))),
            "kept through the idle spell"
        );
        let popped = q.pop().expect("the wake-up");
        assert!(t.take_wake(popped.time));
        assert_eq!(due(&mut t, popped.time), Vec::<&str>::new());
        let mut out = Outbox::new(at(5), me, &mut q, &mut reg, &mut ctl);
        t.arm(&mut out, || 7);
        assert_eq!(q.len(), 0, "nothing pending: no other wake-up");
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A timer of one of three durations.
        Schedule(usize),
        /// Cancels the i-th timer scheduled (if any).
        Cancel(usize),
        /// Lets this many ms pass, handling the wake-ups that come.
        Advance(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0usize..3).prop_map(Op::Schedule),
            2 => (0usize..64).prop_map(Op::Cancel),
            3 => (0u64..30).prop_map(Op::Advance),
        ]
    }

    proptest::proptest! {
        /// Against a model: driven through a real event queue, every timer not cancelled fires
        /// once, exactly at its due instant, in (due, insertion) order; a cancelled one never
        /// fires; at most one wake-up is pending, and none while no timer is (unless kept).
        #[test]
        fn every_timer_fires_once_at_its_due_instant_in_order(
            ops in proptest::collection::vec(op(), 1..300),
            keep in proptest::bool::ANY,
        ) {
            const WAKE: u8 = 7;
            const TICK: u8 = 0;
            let durations = [3, 10, 25].map(SimDuration::from_ms);
            let (mut q, mut reg, mut ctl, me) = driver();
            let mut t: LocalTimers<usize> =
                if keep { LocalTimers::keeping_the_wake_up() } else { LocalTimers::new() };
            // Per timer: due, ticket, pending.
            let mut model: Vec<(SimTime, Ticket, bool)> = Vec::new();
            let mut fired: Vec<(SimTime, usize)> = Vec::new();
            let end = [Op::Advance(1_000)];
            for o in ops.iter().chain(&end) {
                let now = q.now();
                match *o {
                    Op::Schedule(d) => {
                        let tk = t.schedule(now, durations[d], model.len());
                        model.push((now.saturating_add(durations[d]), tk, true));
                        t.arm(&mut Outbox::new(now, me, &mut q, &mut reg, &mut ctl), || WAKE);
                    }
                    Op::Cancel(i) => {
                        if let Some(m) = model.get_mut(i) {
                            proptest::prop_assert_eq!(t.cancel(m.1), m.2);
                            m.2 = false;
                            t.arm(&mut Outbox::new(now, me, &mut q, &mut reg, &mut ctl), || WAKE);
                        }
                    }
                    Op::Advance(ms) => {
                        let until = now.saturating_add(SimDuration::from_ms(ms));
                        q.push(until, Envelope { to: me, msg: TICK }).unwrap();
                        while let Some(p) = q.pop() {
                            if p.payload.msg == TICK {
                                break;
                            }
                            if t.take_wake(p.time) {
                                while let Some(i) = t.pop_due(p.time) {
                                    proptest::prop_assert!(model[i].2, "timer {} fired twice or after its cancel", i);
                                    model[i].2 = false;
                                    fired.push((p.time, i));
                                }
                            }
                            t.arm(&mut Outbox::new(p.time, me, &mut q, &mut reg, &mut ctl), || WAKE);
                        }
                    }
                }
                proptest::prop_assert!(q.len() <= 1, "{} wake-ups pending", q.len());
                if t.is_empty() && !keep {
                    proptest::prop_assert_eq!(q.len(), 0);
                }
                proptest::prop_assert_eq!(t.len(), model.iter().filter(|m| m.2).count());
            }
            // Everything was due before the last advance ended: all fired or were cancelled.
            proptest::prop_assert!(t.is_empty());
            for &(at, i) in &fired {
                proptest::prop_assert_eq!(at, model[i].0, "timer {} fired off its due instant", i);
            }
            let mut sorted = fired.clone();
            sorted.sort_by_key(|&(at, i)| (at, i));
            proptest::prop_assert_eq!(fired, sorted);
        }
    }
}
