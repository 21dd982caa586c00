//! The simulator driver: owns the components, the event queue, the metrics and the trace, and
//! processes events one at a time in (time, seq) order, jumping straight to the next event.
//!
//! A run always ends, with an [`Outcome`] that says why: the queue drained, a component asked to
//! stop, a bound was reached (events, simulated time, pending events), or an invariant broke.

use super::component::{Component, ComponentId, Control, Envelope, Message, Outbox};
use super::queue::{EventQueue, Next, ScheduleError, TimerId};
use super::rng::{RootSeed, SimRng};
use super::time::{SimDuration, SimTime};
use super::trace::{EventRecord, TraceHash};
use crate::metrics::{CounterId, Registry};
use std::fmt;
use std::marker::PhantomData;

/// Bounds on one run. Reaching one ends the run with the matching [`Outcome`]; it never hangs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Events processed at most.
    pub max_events: u64,
    /// Simulated time at most: events scheduled later than this are not processed.
    pub max_time: SimDuration,
    /// Pending events at most (a runaway schedule is a bug, not a reason to exhaust memory).
    pub max_pending: usize,
}

impl Limits {
    /// Bounds for a run the caller has already bounded by construction (a finite source): still
    /// finite, so a bug cannot hang the process.
    pub const GENEROUS: Limits = Limits {
        max_events: 1 << 40,
        max_time: SimDuration::from_secs(10 * 365 * 86_400),
        max_pending: 1 << 26,
    };
}

/// Why a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No events were left.
    Drained,
    /// A component asked to stop.
    Stopped { by: ComponentId, at: SimTime },
    /// `max_events` were processed.
    EventLimit { events: u64, at: SimTime },
    /// The next event was later than `max_time`.
    TimeLimit { at: SimTime },
    /// More than `max_pending` events were pending.
    PendingLimit { pending: usize, at: SimTime },
    /// A component reported a broken invariant: a found bug.
    InvariantViolated {
        by: ComponentId,
        at: SimTime,
        message: String,
    },
    /// The driver stopped the run early (e.g. Ctrl-C): what was measured up to `at` is partial.
    Interrupted { at: SimTime },
}

impl Outcome {
    /// A short stable label for reports: `drained`, `stopped`, `event_limit`, `time_limit`,
    /// `pending_limit`, `invariant_violated`, `interrupted`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Drained => "drained",
            Outcome::Stopped { .. } => "stopped",
            Outcome::EventLimit { .. } => "event_limit",
            Outcome::TimeLimit { .. } => "time_limit",
            Outcome::PendingLimit { .. } => "pending_limit",
            Outcome::InvariantViolated { .. } => "invariant_violated",
            Outcome::Interrupted { .. } => "interrupted",
        }
    }

    /// Whether the run ended by itself (drained or asked to stop), not by a bound or a bug.
    pub fn is_natural(&self) -> bool {
        matches!(self, Outcome::Drained | Outcome::Stopped { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Drained => write!(f, "drained: no events left"),
            Outcome::Stopped { by, at } => {
                write!(f, "stopped by component #{} at {at}", by.index())
            }
            Outcome::EventLimit { events, at } => {
                write!(f, "event limit of {events} reached at {at}")
            }
            Outcome::TimeLimit { at } => write!(f, "simulated-time limit reached at {at}"),
            Outcome::PendingLimit { pending, at } => {
                write!(f, "pending-event limit reached ({pending} pending) at {at}")
            }
            Outcome::InvariantViolated { by, at, message } => {
                write!(
                    f,
                    "invariant violated by component #{} at {at}: {message}",
                    by.index()
                )
            }
            Outcome::Interrupted { at } => write!(f, "interrupted at {at}"),
        }
    }
}

/// The last events up to an instant.
#[derive(Clone, Debug)]
struct Trail {
    keep: usize,
    until: SimTime,
    events: std::collections::VecDeque<EventRecord>,
}

impl Trail {
    #[cold]
    fn note(&mut self, r: EventRecord) {
        if r.time > self.until || self.keep == 0 {
            return;
        }
        if self.events.len() == self.keep {
            self.events.pop_front();
        }
        self.events.push_back(r);
    }
}

/// The result of one [`Sim::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Event(EventRecord),
    Finished(Outcome),
}

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    pub outcome: Outcome,
    pub events: u64,
    pub end_time: SimTime,
    pub trace_hash: TraceHash,
}

/// A deterministic world of components of type `C` exchanging messages of type `M`.
///
/// `C` is either one concrete type (an enum of the world's components: static dispatch, the
/// fastest) or `Box<dyn Component<M>>` (open-ended worlds).
pub struct Sim<M, C> {
    seed: RootSeed,
    limits: Limits,
    queue: EventQueue<Envelope<M>>,
    components: Vec<C>,
    names: Vec<String>,
    metrics: Registry,
    control: Control,
    trace: TraceHash,
    events: u64,
    finished: Option<Outcome>,
    /// `run_until` returned early on a component's pause request.
    paused: bool,
    /// The last events up to an instant, when a driver asked for them (to show what led to a
    /// broken invariant); off otherwise.
    trail: Option<Trail>,
    _m: PhantomData<fn(M)>,
}

impl<M: Message, C: Component<M>> Sim<M, C> {
    pub fn new(seed: RootSeed, limits: Limits) -> Self {
        Sim {
            seed,
            limits,
            queue: EventQueue::with_capacity(1024),
            components: Vec::new(),
            names: Vec::new(),
            metrics: Registry::new(),
            control: Control::default(),
            trace: TraceHash::new(),
            events: 0,
            finished: None,
            paused: false,
            trail: None,
            _m: PhantomData,
        }
    }

    pub fn seed(&self) -> RootSeed {
        self.seed
    }

    /// The random substream `label` of this run's seed.
    pub fn rng(&self, label: &str) -> SimRng {
        self.seed.fork(label)
    }

    /// Adds a component under a unique, readable name (used in traces and reports).
    pub fn add(&mut self, name: &str, component: C) -> ComponentId {
        assert!(
            !self.names.iter().any(|n| n == name),
            "component name `{name}` is used twice"
        );
        self.components.push(component);
        self.names.push(name.to_string());
        ComponentId::new(self.components.len() - 1)
    }

    pub fn component(&self, id: ComponentId) -> &C {
        &self.components[id.index()]
    }
    pub fn component_mut(&mut self, id: ComponentId) -> &mut C {
        &mut self.components[id.index()]
    }
    pub fn name(&self, id: ComponentId) -> &str {
        &self.names[id.index()]
    }
    pub fn metrics(&self) -> &Registry {
        &self.metrics
    }
    pub fn metrics_mut(&mut self) -> &mut Registry {
        &mut self.metrics
    }
    pub fn now(&self) -> SimTime {
        self.queue.now()
    }
    pub fn events_processed(&self) -> u64 {
        self.events
    }
    pub fn pending(&self) -> usize {
        self.queue.len()
    }
    pub fn trace_hash(&self) -> TraceHash {
        self.trace
    }

    /// Puts network partitions in force from now on, replacing any before: every message a
    /// component sends to the other of a pair (either way) is dropped at the send and counted in
    /// the pair's counter. Messages already in flight are delivered; timers to self are never
    /// cut. An empty list heals every partition.
    pub fn set_partitions(&mut self, cuts: Vec<(ComponentId, ComponentId, CounterId)>) {
        self.control.cuts = cuts;
    }

    /// The partitions in force (pairs and their drop counters).
    pub fn partitions(&self) -> &[(ComponentId, ComponentId, CounterId)] {
        &self.control.cuts
    }

    /// Schedules an initial (or external) event.
    pub fn schedule(
        &mut self,
        at: SimTime,
        to: ComponentId,
        msg: M,
    ) -> Result<TimerId, ScheduleError> {
        assert!(
            to.index() < self.components.len(),
            "no component #{}",
            to.index()
        );
        self.queue.push(at, Envelope { to, msg })
    }

    /// `record` rendered with names, e.g. `#12 t=1.5ms station/Departure`.
    pub fn describe(&self, record: &EventRecord) -> String {
        format!(
            "#{} {} {}/{}",
            record.index,
            record.time,
            self.name(record.component),
            record.kind_name
        )
    }

    /// The next event if the run may go on, or why it cannot.
    #[inline(always)]
    fn next_event(&mut self) -> Result<(SimTime, u32), Outcome> {
        let now = self.queue.now();
        if self.events >= self.limits.max_events {
            return Err(if self.queue.peek_time().is_none() {
                Outcome::Drained
            } else {
                Outcome::EventLimit {
                    events: self.events,
                    at: now,
                }
            });
        }
        if self.queue.len() > self.limits.max_pending {
            return Err(Outcome::PendingLimit {
                pending: self.queue.len(),
                at: now,
            });
        }
        let limit = SimTime::ZERO.saturating_add(self.limits.max_time);
        match self.queue.pop_slot_until(limit) {
            Next::Event { time, slot } => Ok((time, slot)),
            Next::Empty => Err(Outcome::Drained),
            Next::Later(_) => Err(Outcome::TimeLimit { at: now }),
        }
    }

    /// Processes the next event and says which it was, or why the run is over.
    pub fn step(&mut self) -> Step {
        if let Some(o) = &self.finished {
            return Step::Finished(o.clone());
        }
        match self.next_event() {
            Ok((time, slot)) => {
                let Envelope { to, msg } = self.queue.slot_payload(slot);
                let (to, kind_name, kind_code) = (*to, msg.kind_name(), msg.kind_code());
                let index = self.events;
                self.dispatch_slot::<true>(time, slot);
                // Every step is a pause: a request for one has nothing more to do.
                let dispatched = if self.control.raised {
                    self.take_requests(to, time).map(|_pause| ())
                } else {
                    Ok(())
                };
                match dispatched {
                    Ok(()) => Step::Event(EventRecord {
                        index,
                        time,
                        component: to,
                        kind_code,
                        kind_name,
                    }),
                    Err(o) => Step::Finished(o),
                }
            }
            Err(o) => {
                self.finished = Some(o.clone());
                Step::Finished(o)
            }
        }
    }

    /// Hands the event `pop_slot_until` just found to its component. What the driver needs of
    /// the message (its addressee and kind, for the trace) is read in place, and the payload is
    /// moved out of its slot last, right before the call, so it is copied as little as the
    /// compiler allows (moving it out first and reading it on the stack costs ~12 instructions
    /// more per event). `TRAIL` says whether a trail is kept: the caller tests that once per run
    /// instead of once per event (nothing changes the trail while events run). The component's
    /// requests (stop, violation, pause) are left in `control` for the caller: see
    /// [`Sim::take_requests`]. Returns the addressee.
    #[inline(always)]
    fn dispatch_slot<const TRAIL: bool>(&mut self, time: SimTime, slot: u32) -> ComponentId {
        let Envelope { to, msg } = self.queue.slot_payload(slot);
        let to = *to;
        if TRAIL {
            if let Some(t) = &mut self.trail {
                t.note(EventRecord {
                    index: self.events,
                    time,
                    component: to,
                    kind_code: msg.kind_code(),
                    kind_name: msg.kind_name(),
                });
            }
        }
        self.trace.mix(time, to, msg.kind_code());
        self.events += 1;
        let payload = self.queue.take_slot_payload(slot);
        let component = &mut self.components[to.index()];
        let mut out = Outbox::new(
            time,
            to,
            &mut self.queue,
            &mut self.metrics,
            &mut self.control,
        );
        // (Always `Some`: matching the slot's `Option` in place saves a copy of the message.)
        if let Some(Envelope { msg, .. }) = payload {
            component.on_event(msg, &mut out);
        }
        to
    }

    /// Acts on the requests the component `by` raised while handling its event at `at`
    /// (called only when `control.raised` is up, so the hot loop tests one flag): `Err` when it
    /// stopped the run or reported a broken invariant, else whether it asked for a pause. Clears
    /// the pause request and the flag.
    #[cold]
    #[inline(never)]
    fn take_requests(&mut self, by: ComponentId, at: SimTime) -> Result<bool, Outcome> {
        self.control.raised = false;
        let pause = std::mem::take(&mut self.control.pause);
        if self.control.stop || self.control.violation.is_some() {
            return Err(self.end_by(by, at));
        }
        Ok(pause)
    }

    /// The outcome of a component's stop or violation request (cold).
    #[cold]
    #[inline(never)]
    fn end_by(&mut self, by: ComponentId, at: SimTime) -> Outcome {
        let outcome = match self.control.violation.take() {
            Some(message) => Outcome::InvariantViolated { by, at, message },
            None => Outcome::Stopped { by, at },
        };
        self.control.stop = false;
        self.finished = Some(outcome.clone());
        outcome
    }

    /// Runs every event due at or before `until`, then pauses (returns `None`); returns the report
    /// if the run ended first. Lets a driver act between events at fixed instants (an audit job
    /// that reads several components' state), deterministically.
    pub fn run_until(&mut self, until: SimTime) -> Option<RunReport> {
        if self.finished.is_some() {
            return Some(self.run());
        }
        let limit = SimTime::ZERO
            .saturating_add(self.limits.max_time)
            .min(until);
        if self.trail.is_some() {
            self.run_until_limit::<true>(limit)
        } else {
            self.run_until_limit::<false>(limit)
        }
    }

    /// [`Sim::run_until`]'s loop up to `limit` (`until`, or the time limit if earlier), for a
    /// run that keeps a trail (`TRAIL`) or not.
    #[inline(always)]
    fn run_until_limit<const TRAIL: bool>(&mut self, limit: SimTime) -> Option<RunReport> {
        loop {
            if self.events >= self.limits.max_events || self.queue.len() > self.limits.max_pending {
                return Some(self.run());
            }
            match self.queue.pop_slot_until(limit) {
                Next::Event { time, slot } => {
                    let to = self.dispatch_slot::<TRAIL>(time, slot);
                    if self.control.raised {
                        match self.take_requests(to, time) {
                            Err(_) => return Some(self.run()),
                            Ok(true) => {
                                self.paused = true;
                                return None;
                            }
                            Ok(false) => {}
                        }
                    }
                }
                Next::Empty => return Some(self.run()),
                Next::Later(t) if t.since_start() > self.limits.max_time => {
                    return Some(self.run());
                }
                Next::Later(_) => return None,
            }
        }
    }

    /// The report of a run stopped now by its driver ([`Outcome::Interrupted`]); the world is
    /// left as it is.
    pub fn interrupted_report(&self) -> RunReport {
        RunReport {
            outcome: Outcome::Interrupted { at: self.now() },
            events: self.events,
            end_time: self.now(),
            trace_hash: self.trace_hash(),
        }
    }

    /// Keeps the last `keep` events at or before `until` (see [`Sim::take_trail`]).
    pub fn record_trail(&mut self, keep: usize, until: SimTime) {
        self.trail = Some(Trail {
            keep,
            until,
            events: std::collections::VecDeque::with_capacity(keep),
        });
    }

    /// The events kept by [`Sim::record_trail`], oldest first.
    pub fn take_trail(&mut self) -> Vec<EventRecord> {
        self.trail
            .take()
            .map(|t| t.events.into_iter().collect())
            .unwrap_or_default()
    }

    /// Whether the last [`Sim::run_until`] returned early because a component asked for a pause
    /// ([`Outbox::pause`](crate::kernel::Outbox::pause)); clears it.
    pub fn take_pause(&mut self) -> bool {
        std::mem::take(&mut self.paused)
    }

    /// Runs until the run ends (see [`Outcome`]); pauses asked for on the way are ignored.
    pub fn run(&mut self) -> RunReport {
        self.control.pause = false;
        if let Some(o) = &self.finished {
            let outcome = o.clone();
            return RunReport {
                outcome,
                events: self.events,
                end_time: self.queue.now(),
                trace_hash: self.trace,
            };
        }
        let outcome = if self.trail.is_some() {
            self.run_loop::<true>()
        } else {
            self.run_loop::<false>()
        };
        self.finished = Some(outcome.clone());
        RunReport {
            outcome,
            events: self.events,
            end_time: self.queue.now(),
            trace_hash: self.trace,
        }
    }

    /// [`Sim::run`]'s loop: events until the run ends, pauses ignored; `TRAIL` as in
    /// [`Sim::dispatch_slot`].
    #[inline(always)]
    fn run_loop<const TRAIL: bool>(&mut self) -> Outcome {
        loop {
            match self.next_event() {
                Ok((time, slot)) => {
                    let to = self.dispatch_slot::<TRAIL>(time, slot);
                    if self.control.raised {
                        if let Err(o) = self.take_requests(to, time) {
                            return o;
                        }
                    }
                }
                Err(o) => return o,
            }
        }
    }
}
