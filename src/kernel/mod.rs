//! The deterministic discrete-event kernel: virtual time, the event queue, seeded randomness,
//! distributions, the sans-IO component model, the simulator driver and the trace.

pub mod component;
pub mod dist;
pub mod fixmap;
pub mod queue;
pub mod rng;
pub mod sample;
pub mod sim;
pub mod slab;
pub mod time;
pub mod timers;
pub mod trace;

pub use component::{Component, ComponentId, Envelope, Message, Outbox};
pub use dist::Dist;
pub use fixmap::{FixMap, IndexKey, mix64};
pub use queue::{EventQueue, TimerId};
pub use rng::{RootSeed, SimRng};
pub use sim::{Limits, Outcome, RunReport, Sim, Step};
pub use slab::{Handle, Slab};
pub use time::{SimDuration, SimTime};
pub use timers::{LocalTimers, Ticket};
pub use trace::{EventRecord, TraceHash, check_determinism};
