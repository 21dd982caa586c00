//! The sans-IO component model: a component handles one event at a time and emits effects
//! (schedule a timer, send to another component, cancel, record a metric, stop, report a broken
//! invariant) through an [`Outbox`]. It never does I/O, reads a clock, spawns or awaits.
//!
//! The same component runs under the simulator ([`crate::kernel::Sim`]) and, later, under a tokio
//! driver in live mode: both own an [`EventQueue`] and hand the component an `Outbox` over it; only
//! how `now` is obtained and how long the driver waits for the next event differ.

use super::queue::{EventQueue, TimerId};
use super::time::{SimDuration, SimTime};
use crate::metrics::{CounterId, HistogramId, Registry};

/// A cut link of a network partition: messages sent between the two components, either way,
/// are dropped and counted in the counter.
pub(crate) type Cut = (ComponentId, ComponentId, CounterId);

/// Addresses one component of a world. Issued by the world when a component is added, so an id
/// always names a component of that world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId(u32);

impl ComponentId {
    pub(crate) fn new(index: usize) -> ComponentId {
        ComponentId(u32::try_from(index).expect("more than 2^32 components"))
    }
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What every event type of a world tells the kernel about itself: a kind, hashed into the trace
/// and named in divergence reports.
pub trait Message {
    /// A small code, stable across runs and versions, for the kind of event (e.g. the enum
    /// variant's index).
    fn kind_code(&self) -> u32;
    /// A readable name for the kind of event.
    fn kind_name(&self) -> &'static str;
}

/// A state machine of the system under test or of its environment.
pub trait Component<M> {
    /// Handles one event delivered at `out.now()`. All effects go through `out`.
    fn on_event(&mut self, event: M, out: &mut Outbox<'_, M>);
}

impl<M, C: Component<M> + ?Sized> Component<M> for Box<C> {
    #[inline]
    fn on_event(&mut self, event: M, out: &mut Outbox<'_, M>) {
        (**self).on_event(event, out)
    }
}

/// An event addressed to a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<M> {
    pub to: ComponentId,
    pub msg: M,
}

/// Requests a component made of the driver beyond scheduling: stop the run, or report a bug.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Control {
    pub(crate) stop: bool,
    pub(crate) violation: Option<String>,
    /// A component asked the driver to pause after this event (see [`Outbox::pause`]).
    pub(crate) pause: bool,
    /// Set with any of `stop`, `violation` and `pause`: the driver tests this one flag after
    /// each event, and looks at the three only when it is up (rarely).
    pub(crate) raised: bool,
    /// Network partitions in force (see [`Sim::set_partitions`](crate::kernel::Sim::set_partitions));
    /// empty by default, which costs a send one branch.
    pub(crate) cuts: Vec<Cut>,
}

/// The only window a component has onto the world while it handles an event.
pub struct Outbox<'a, M> {
    now: SimTime,
    me: ComponentId,
    queue: &'a mut EventQueue<Envelope<M>>,
    metrics: &'a mut Registry,
    control: &'a mut Control,
}

impl<'a, M> Outbox<'a, M> {
    pub(crate) fn new(
        now: SimTime,
        me: ComponentId,
        queue: &'a mut EventQueue<Envelope<M>>,
        metrics: &'a mut Registry,
        control: &'a mut Control,
    ) -> Self {
        debug_assert_eq!(now, queue.now(), "an outbox acts at the queue's now");
        Outbox {
            now,
            me,
            queue,
            metrics,
            control,
        }
    }

    /// The virtual time of the event being handled.
    #[inline]
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The component handling the event.
    #[inline]
    pub fn me(&self) -> ComponentId {
        self.me
    }

    /// Delivers `msg` to `to` after `delay` (zero: after every event already due now).
    /// A time past the end of representable time is clamped to [`SimTime::MAX`], which no
    /// run reaches before its time limit. A message across a network partition in force now is
    /// dropped (counted; the id returned names nothing).
    #[inline(always)]
    pub fn send(&mut self, to: ComponentId, delay: SimDuration, msg: M) -> TimerId {
        if !self.control.cuts.is_empty() && self.dropped(to) {
            return TimerId::DANGLING;
        }
        let at = self.now.saturating_add(delay);
        self.queue.push_in_order(at, Envelope { to, msg })
    }

    /// Delivers `msg` to `to` at the absolute time `at`, clamped to be no earlier than now.
    #[inline(always)]
    pub fn send_at(&mut self, to: ComponentId, at: SimTime, msg: M) -> TimerId {
        if !self.control.cuts.is_empty() && self.dropped(to) {
            return TimerId::DANGLING;
        }
        let at = at.max(self.now);
        self.queue.push_in_order(at, Envelope { to, msg })
    }

    /// Whether a message from this component to `to` crosses a partition; counts it if so.
    #[cold]
    #[inline(never)]
    fn dropped(&mut self, to: ComponentId) -> bool {
        let me = self.me;
        let cut = self
            .control
            .cuts
            .iter()
            .find(|&&(a, b, _)| (a == me && b == to) || (a == to && b == me));
        match cut {
            Some(&(_, _, counter)) => {
                self.metrics.add(counter, 1);
                true
            }
            None => false,
        }
    }

    /// A timer to self: `msg` comes back to this component after `delay`.
    #[inline]
    pub fn schedule(&mut self, delay: SimDuration, msg: M) -> TimerId {
        let me = self.me;
        self.send(me, delay, msg)
    }

    /// Cancels a pending timer or message; returns whether it was still pending.
    #[inline]
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.queue.discard(id)
    }

    /// Records a latency (or any nanosecond value) into a registered histogram.
    #[inline]
    pub fn record(&mut self, h: HistogramId, value_ns: u64) {
        self.metrics.record(h, value_ns);
    }

    /// Adds to a registered counter.
    #[inline]
    pub fn count(&mut self, c: CounterId, n: u64) {
        self.metrics.add(c, n);
    }

    /// Asks the driver to end the run after this event (outcome `Stopped`).
    pub fn stop(&mut self) {
        self.control.stop = true;
        self.control.raised = true;
    }

    /// Asks the driver to pause after this event: [`Sim::run_until`](crate::kernel::Sim::run_until)
    /// returns early (then [`Sim::take_pause`](crate::kernel::Sim::take_pause) is `true`), so
    /// the driver can act between events — e.g. read several components' state. Changes no event.
    pub fn pause(&mut self) {
        self.control.pause = true;
        self.control.raised = true;
    }

    /// Reports a broken invariant of the system under test: a found bug. The driver ends the run
    /// and reports it with the seed and virtual time.
    pub fn violation(&mut self, message: impl Into<String>) {
        if self.control.violation.is_none() {
            self.control.violation = Some(message.into());
        }
        self.control.raised = true;
    }
}
