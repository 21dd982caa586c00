//! The event queue: pending events in a total order by (time, insertion sequence), with O(1)
//! cancellation that stays fast with 10⁵ and more pending timers.
//!
//! Layout, chosen for the hot path of every simulation:
//! - a *64-ary radix heap on time* of small keys `(time, slot)` (16 bytes). A simulation's times
//!   are monotone: every new event is at `at >= now`, the time of the last popped event. Read a
//!   time as 11 digits of 6 bits; a key whose time differs from `now` is filed in bucket
//!   `(level, digit)`: `level` is the highest digit position where the two differ, `digit` is
//!   the key's digit there (greater than `now`'s). Every key of a bucket comes before every key
//!   of a later bucket in (level, digit) order, and the buckets of a level share one word of a
//!   bit set of non-empty buckets, so the least non-empty bucket is found with a few word tests
//!   and one trailing-zero count. Keys at `now` itself (zero-delay sends, and events that tie
//!   with the one being handled) go to the *due* list instead, popped from its front. A push is
//!   O(1): one XOR, one leading-zero count, a table lookup, shifts and one `Vec::push`;
//! - ties in time are broken by insertion order without storing the sequence number in the key:
//!   every bucket (and the due list) holds its keys in insertion order. A push appends the newest
//!   key; a bucket is only emptied into others when it is the least non-empty one and the due
//!   list is empty, so the buckets it is refiled into are empty and receive an in-order
//!   subsequence. Hence the least key of a bucket is its *first* key of least time;
//! - a pop takes the front of the due list if there is one. Otherwise it takes the least
//!   non-empty bucket. A level-0 bucket holds a single instant: it becomes the due list whole.
//!   Any other is scanned for its first key of least time, `now` advances to that time, and the
//!   whole bucket is refiled relative to it, in order: the keys of that time (the least first)
//!   go to the due list, each other key to a bucket of a strictly lower level. So a key is
//!   refiled at most 10 times, and about once per event in practice; a bucket holding a single
//!   key is just taken;
//! - a slot table holding the payloads, indexed by `slot` and stamped with the event's `seq`, so
//!   a [`TimerId`] names exactly one scheduled event and a stale id can never cancel a later one.
//!   A pop leaves the payload in its slot: the driver reads the addressee and kind there and
//!   moves the payload out once, straight to the component.
//!
//! Cancelling takes the payload out of its slot at once (or drops it there: [`EventQueue::discard`]),
//! with no search; the key stays in its bucket as a tombstone, and its slot is not reused until
//! the key is dropped, so an empty slot is what marks a key as a tombstone. A tombstone is
//! dropped when it would be next; when tombstones outnumber live keys every bucket is swept, so
//! memory stays proportional to live events and cancellation is O(1) amortised.

use super::time::SimTime;

/// Names one scheduled event; returned by `push`, accepted by `cancel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId {
    slot: u32,
    seq: u64,
}

impl TimerId {
    /// An id that names no event (cancelling it is a no-op): a placeholder before the real id exists.
    pub const DANGLING: TimerId = TimerId {
        slot: u32::MAX,
        seq: u64::MAX,
    };

    /// The event's insertion sequence number: its rank among events at the same instant.
    pub fn seq(self) -> u64 {
        self.seq
    }
}

/// A pending event in the order: its time, and the slot holding its payload (and `seq`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Key {
    time: u64,
    slot: u32,
}

/// Bits per digit of the radix heap's keys.
const DIGIT_BITS: u32 = 6;
const DIGITS: usize = 1 << DIGIT_BITS;
/// Digit positions in a 64-bit time.
const LEVELS: usize = 64usize.div_ceil(DIGIT_BITS as usize);
/// Buckets of the radix heap: (level, digit), in key order.
const BUCKETS: usize = LEVELS * DIGITS;
/// The level of each bit position: a table lookup is cheaper than the division.
const LEVEL_OF_BIT: [u8; 64] = {
    let mut t = [0; 64];
    let mut i = 0;
    while i < 64 {
        t[i] = (i / DIGIT_BITS as usize) as u8;
        i += 1;
    }
    t
};
/// Words of the non-empty-bucket bit set (one per level, with 6-bit digits).
const WORDS: usize = BUCKETS.div_ceil(64);

/// One bit per bucket: which are non-empty.
#[derive(Clone, Copy, Default)]
struct BucketSet([u64; WORDS]);

impl BucketSet {
    #[inline(always)]
    fn insert(&mut self, b: usize) {
        self.0[b / 64] |= 1 << (b % 64);
    }
    #[inline(always)]
    fn remove(&mut self, b: usize) {
        self.0[b / 64] &= !(1 << (b % 64));
    }
    #[inline(always)]
    fn first(&self) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }
}

struct Slot<P> {
    seq: u64,
    /// `None` while the slot is free, or holds a cancelled event's key (a tombstone).
    payload: Option<P>,
}

/// A popped event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popped<P> {
    pub time: SimTime,
    pub seq: u64,
    pub payload: P,
}

/// What [`EventQueue::pop_until`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop<P> {
    Event(Popped<P>),
    /// Nothing pending.
    Empty,
    /// The earliest pending event is at this time, past the limit; nothing was removed.
    Later(SimTime),
}

/// Where the least pending key is (see [`EventQueue::front`]).
#[derive(Clone, Copy)]
enum Front {
    /// At the head of the due list (its time is `now`).
    Due,
    /// The first key of least time of radix bucket `b`, of time `time`.
    Bucket { b: usize, time: u64 },
}

/// Pending events in (time, seq) order. `P` is the payload (for a simulation, the addressed message).
pub struct EventQueue<P> {
    /// Keys at time `now`, in insertion order; `due[due_head..]` are pending.
    due: Vec<Key>,
    due_head: usize,
    /// The radix heap's buckets (see the module documentation): `buckets[level * DIGITS + digit]`
    /// holds the keys whose time first differs from `now` at digit position `level`, where it
    /// has digit `digit`; each in insertion order.
    buckets: Box<[Vec<Key>; BUCKETS]>,
    /// Bit `b` set iff `buckets[b]` is non-empty.
    nonempty: BucketSet,
    slots: Vec<Slot<P>>,
    free: Vec<u32>,
    next_seq: u64,
    /// The time of the last popped event: no pending key is before it.
    now: SimTime,
    live: usize,
    tombstones: usize,
}

/// Why an event could not be scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "event scheduled at {at} is before the current time {now}: events cannot go back in time"
    )]
    InThePast { at: SimTime, now: SimTime },
}

impl<P> Default for EventQueue<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> EventQueue<P> {
    pub fn new() -> Self {
        Self::with_capacity(1024)
    }

    pub fn with_capacity(n: usize) -> Self {
        EventQueue {
            due: Vec::with_capacity(64),
            due_head: 0,
            buckets: Box::new(std::array::from_fn(|_| Vec::new())),
            nonempty: BucketSet::default(),
            slots: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            next_seq: 0,
            now: SimTime::ZERO,
            live: 0,
            tombstones: 0,
        }
    }

    /// The time of the last popped event (the queue's notion of "now").
    #[inline]
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Number of pending (scheduled and not cancelled) events.
    #[inline]
    pub fn len(&self) -> usize {
        self.live
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Sequence numbers handed out so far (= events ever scheduled).
    pub fn scheduled_total(&self) -> u64 {
        self.next_seq
    }

    /// Keys held in the buckets: pending events plus tombstones not yet dropped.
    #[cfg(test)]
    fn stored_keys(&self) -> usize {
        self.due.len() - self.due_head + self.buckets.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether `key` names a pending event rather than a cancelled one.
    #[inline(always)]
    fn is_live(slots: &[Slot<P>], key: &Key) -> bool {
        slots[key.slot as usize].payload.is_some()
    }

    /// Files `key` (not before `now`) in the due list or its radix bucket relative to `now`.
    #[inline(always)]
    fn file(
        due: &mut Vec<Key>,
        buckets: &mut [Vec<Key>],
        nonempty: &mut BucketSet,
        now: u64,
        key: Key,
    ) {
        let x = key.time ^ now;
        if x == 0 {
            due.push(key);
        } else {
            let level = u32::from(LEVEL_OF_BIT[63 - x.leading_zeros() as usize]);
            let digit = (key.time >> (level * DIGIT_BITS)) as usize % DIGITS;
            let b = level as usize * DIGITS + digit;
            buckets[b].push(key);
            nonempty.insert(b);
        }
    }

    /// Schedules `payload` at `at`, which must not be before [`now`](Self::now).
    #[inline(always)]
    pub fn push(&mut self, at: SimTime, payload: P) -> Result<TimerId, ScheduleError> {
        if at < self.now {
            return Err(ScheduleError::InThePast { at, now: self.now });
        }
        Ok(self.push_in_order(at, payload))
    }

    /// [`push`](Self::push) for a caller that has made sure `at` is not before
    /// [`now`](Self::now) (an [`Outbox`](super::Outbox): `now` plus a delay, or clamped to `now`).
    /// Checked in debug builds only: an earlier `at` would break the order.
    #[inline(always)]
    pub(crate) fn push_in_order(&mut self, at: SimTime, payload: P) -> TimerId {
        debug_assert!(at >= self.now, "{at} is before now ({})", self.now);
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                let entry = &mut self.slots[s as usize];
                debug_assert!(entry.payload.is_none());
                entry.seq = seq;
                entry.payload = Some(payload);
                s
            }
            None => {
                let s = u32::try_from(self.slots.len()).expect("more than 2^32 pending events");
                self.slots.push(Slot {
                    seq,
                    payload: Some(payload),
                });
                s
            }
        };
        // at >= now: the filing is valid, and the key is the newest of its bucket.
        Self::file(
            &mut self.due,
            &mut self.buckets[..],
            &mut self.nonempty,
            self.now.as_ns(),
            Key {
                time: at.as_ns(),
                slot,
            },
        );
        self.live += 1;
        TimerId { slot, seq }
    }

    /// Cancels a pending event and returns its payload; `None` if it already fired or was
    /// cancelled. O(1).
    #[inline]
    pub fn cancel(&mut self, id: TimerId) -> Option<P> {
        let entry = self.slots.get_mut(id.slot as usize)?;
        if entry.seq != id.seq {
            return None;
        }
        let payload = entry.payload.take()?;
        self.live -= 1;
        // The key stays in its bucket as a tombstone (its slot stays taken until the key is
        // dropped): dropped when it would be next, or by a sweep when tombstones dominate.
        self.tombstones += 1;
        self.maybe_compact();
        Some(payload)
    }

    /// Cancels a pending event, dropping its payload where it lies; returns whether it was still
    /// pending. [`cancel`](Self::cancel) without moving the payload out.
    #[inline]
    pub fn discard(&mut self, id: TimerId) -> bool {
        let Some(entry) = self.slots.get_mut(id.slot as usize) else {
            return false;
        };
        if entry.seq != id.seq || entry.payload.is_none() {
            return false;
        }
        entry.payload = None;
        self.live -= 1;
        self.tombstones += 1;
        self.maybe_compact();
        true
    }

    /// Whether `id` is still pending.
    pub fn is_pending(&self, id: TimerId) -> bool {
        self.slots
            .get(id.slot as usize)
            .is_some_and(|e| e.seq == id.seq && e.payload.is_some())
    }

    /// Drops every tombstone of `keys`, keeping the order of the rest and freeing their slots;
    /// returns how many were dropped.
    fn drop_tombstones(keys: &mut Vec<Key>, slots: &[Slot<P>], free: &mut Vec<u32>) -> usize {
        let before = keys.len();
        keys.retain(|k| {
            let live = Self::is_live(slots, k);
            if !live {
                free.push(k.slot);
            }
            live
        });
        before - keys.len()
    }

    #[inline(always)]
    fn maybe_compact(&mut self) {
        if self.tombstones > 1024 && self.tombstones > self.live {
            self.compact();
        }
    }

    /// Drops every tombstone.
    #[cold]
    #[inline(never)]
    fn compact(&mut self) {
        self.due.drain(..self.due_head);
        self.due_head = 0;
        let mut dropped = Self::drop_tombstones(&mut self.due, &self.slots, &mut self.free);
        for (b, bucket) in self.buckets.iter_mut().enumerate() {
            dropped += Self::drop_tombstones(bucket, &self.slots, &mut self.free);
            if bucket.is_empty() {
                self.nonempty.remove(b);
            }
        }
        debug_assert_eq!(dropped, self.tombstones);
        self.tombstones = 0;
    }

    /// Drops the tombstones of radix bucket `b` (its least key is one): rare.
    #[cold]
    #[inline(never)]
    fn drop_bucket_tombstones(&mut self, b: usize) {
        let bucket = &mut self.buckets[b];
        self.tombstones -= Self::drop_tombstones(bucket, &self.slots, &mut self.free);
        if bucket.is_empty() {
            self.nonempty.remove(b);
        }
    }

    /// Where the least pending key is, dropping tombstones that would come first. Changes no
    /// order and not `now`.
    #[inline(always)]
    fn front(&mut self) -> Option<Front> {
        loop {
            while let Some(k) = self.due.get(self.due_head) {
                if Self::is_live(&self.slots, k) {
                    return Some(Front::Due);
                }
                // A tombstone: its slot is free now.
                self.free.push(k.slot);
                self.tombstones -= 1;
                self.due_head += 1;
            }
            if self.due_head != 0 {
                self.due.clear();
                self.due_head = 0;
            }
            let b = self.nonempty.first()?;
            let bucket = &self.buckets[b];
            // The first key of least time: the least in (time, seq) order. (The keys of a
            // level-0 bucket all have the same time.)
            let mut i = 0;
            let mut time = bucket[0].time;
            if b >= DIGITS {
                for (j, k) in bucket.iter().enumerate().skip(1) {
                    if k.time < time {
                        (i, time) = (j, k.time);
                    }
                }
            }
            if Self::is_live(&self.slots, &bucket[i]) {
                return Some(Front::Bucket { b, time });
            }
            self.drop_bucket_tombstones(b);
        }
    }

    /// Takes the least pending key out of the order: the head of the due list.
    #[inline(always)]
    fn pop_due(&mut self) -> Key {
        let key = self.due[self.due_head];
        self.due_head += 1;
        if self.due_head == self.due.len() {
            self.due.clear();
            self.due_head = 0;
        }
        key
    }

    /// Takes the least pending key out of the order when it is in radix bucket `b` (the least
    /// non-empty one; the due list is empty) and of time `time`: advances `now` to `time` and
    /// refiles the bucket relative to it.
    #[inline(always)]
    fn pop_bucket(&mut self, b: usize, time: u64) -> Key {
        debug_assert!(self.due.is_empty());
        self.now = SimTime::from_ns(time);
        self.nonempty.remove(b);
        if b < DIGITS {
            // A level-0 bucket: every key is at `time`, so the whole bucket, in order, is due
            // now; the due list is empty, so the bucket becomes it.
            std::mem::swap(&mut self.due, &mut self.buckets[b]);
            return self.pop_due();
        }
        let (lower, upper) = self.buckets.split_at_mut(b);
        let keys = &mut upper[0];
        if let [key] = keys[..] {
            keys.clear();
            return key;
        }
        // Every key of bucket b agrees with the new `now` at b's level and above, and differs
        // from it at a lower level or not at all: it goes to a bucket of a lower level or, in
        // order, to the due list (the least key first: no key before it in the bucket ties it).
        for k in keys.iter() {
            Self::file(&mut self.due, lower, &mut self.nonempty, time, *k);
        }
        keys.clear();
        self.pop_due()
    }

    /// Time of the next pending event, skipping tombstones.
    pub fn peek_time(&mut self) -> Option<SimTime> {
        Some(match self.front()? {
            Front::Due => self.now,
            Front::Bucket { time, .. } => SimTime::from_ns(time),
        })
    }

    /// Removes and returns the earliest pending event by (time, seq), advancing `now` to its time.
    #[inline]
    pub fn pop(&mut self) -> Option<Popped<P>> {
        match self.pop_until(SimTime::MAX) {
            Pop::Event(p) => Some(p),
            Pop::Empty | Pop::Later(_) => None,
        }
    }

    /// Like [`pop`](Self::pop), but leaves the queue untouched when the earliest event is later
    /// than `limit` (then its time is returned). One pass: the driver's bound check and the pop
    /// share the work.
    #[inline(always)]
    pub fn pop_until(&mut self, limit: SimTime) -> Pop<P> {
        match self.pop_slot_until(limit) {
            Next::Event { time, slot } => Pop::Event(Popped {
                time,
                seq: self.slots[slot as usize].seq,
                payload: self
                    .take_slot_payload(slot)
                    .expect("a popped slot holds its payload"),
            }),
            Next::Empty => Pop::Empty,
            Next::Later(t) => Pop::Later(t),
        }
    }

    /// [`pop_until`](Self::pop_until) without moving the payload: the event is removed from the
    /// order and `now` advanced, and its payload waits in `slot` (readable in place with
    /// [`slot_payload`](Self::slot_payload)) for [`take_slot_payload`](Self::take_slot_payload),
    /// which must be called next. Lets the driver move a payload once, straight from its slot to
    /// the component.
    #[inline(always)]
    pub(crate) fn pop_slot_until(&mut self, limit: SimTime) -> Next {
        let slot = match self.front() {
            None => return Next::Empty,
            Some(Front::Due) => {
                if self.now > limit {
                    return Next::Later(self.now);
                }
                self.pop_due().slot
            }
            Some(Front::Bucket { b, time }) => {
                if time > limit.as_ns() {
                    return Next::Later(SimTime::from_ns(time));
                }
                debug_assert!(time > self.now.as_ns(), "time went backwards");
                self.pop_bucket(b, time).slot
            }
        };
        self.live -= 1;
        Next::Event {
            time: self.now,
            slot,
        }
    }

    /// The payload of the event [`pop_slot_until`](Self::pop_slot_until) just returned, in place.
    #[inline(always)]
    pub(crate) fn slot_payload(&self, slot: u32) -> &P {
        self.slots[slot as usize]
            .payload
            .as_ref()
            .expect("a popped slot holds its payload")
    }

    /// The payload of the event [`pop_slot_until`](Self::pop_slot_until) just returned, taken
    /// out of its slot as the slot's `Option` (always `Some`); frees the slot.
    #[inline(always)]
    pub(crate) fn take_slot_payload(&mut self, slot: u32) -> Option<P> {
        self.free.push(slot);
        self.slots[slot as usize].payload.take()
    }
}

/// What [`EventQueue::pop_slot_until`] found.
pub(crate) enum Next {
    Event { time: SimTime, slot: u32 },
    Empty,
    Later(SimTime),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(ns: u64) -> SimTime {
        SimTime::from_ns(ns)
    }

    fn drain(q: &mut EventQueue<u32>) -> Vec<(u64, u32)> {
        std::iter::from_fn(|| q.pop().map(|p| (p.time.as_ns(), p.payload))).collect()
    }

    #[test]
    fn ties_pop_in_insertion_order() {
        let mut q = EventQueue::new();
        for i in 0..5 {
            q.push(t(10), i).unwrap();
        }
        q.push(t(5), 99).unwrap();
        assert_eq!(
            drain(&mut q),
            vec![(5, 99), (10, 0), (10, 1), (10, 2), (10, 3), (10, 4)]
        );
    }

    #[test]
    fn zero_delay_events_follow_earlier_events_at_the_same_instant() {
        let mut q = EventQueue::new();
        q.push(t(10), 1).unwrap();
        q.push(t(10), 2).unwrap();
        assert_eq!(q.pop().unwrap().payload, 1);
        // Scheduled at `now` after event 2 was: must come after it.
        q.push(t(10), 3).unwrap();
        q.push(t(11), 4).unwrap();
        q.push(t(10), 5).unwrap();
        assert_eq!(drain(&mut q), vec![(10, 2), (10, 3), (10, 5), (11, 4)]);
    }

    #[test]
    fn cancel_removes_exactly_one_event() {
        let mut q = EventQueue::new();
        let a = q.push(t(1), 1).unwrap();
        let b = q.push(t(2), 2).unwrap();
        let c = q.push(t(0), 3).unwrap(); // at now: FIFO
        assert_eq!(q.len(), 3);
        assert_eq!(q.cancel(b), Some(2));
        assert_eq!(q.cancel(b), None, "double cancel is a no-op");
        assert_eq!(q.cancel(c), Some(3));
        assert!(q.is_pending(a) && !q.is_pending(b));
        assert_eq!(q.len(), 1);
        assert_eq!(drain(&mut q), vec![(1, 1)]);
        assert_eq!(q.cancel(a), None, "a fired event cannot be cancelled");
        assert!(q.is_empty());
    }

    #[test]
    fn discard_cancels_without_returning_the_payload() {
        let mut q = EventQueue::new();
        let a = q.push(t(1), 1).unwrap();
        let b = q.push(t(1), 2).unwrap();
        assert!(q.discard(a));
        assert!(!q.discard(a), "double discard is a no-op");
        assert_eq!(q.cancel(a), None);
        assert!(!q.is_pending(a) && q.is_pending(b));
        assert_eq!(q.len(), 1);
        assert_eq!(drain(&mut q), vec![(1, 2)]);
        assert!(!q.discard(b), "a fired event cannot be discarded");
    }

    #[test]
    fn stale_id_cannot_cancel_a_reused_slot() {
        let mut q = EventQueue::new();
        let a = q.push(t(1), 1).unwrap();
        assert_eq!(q.pop().unwrap().payload, 1);
        let b = q.push(t(2), 2).unwrap(); // reuses a's slot
        assert_eq!(q.cancel(a), None);
        assert!(q.is_pending(b));
    }

    #[test]
    fn scheduling_in_the_past_is_refused() {
        let mut q = EventQueue::new();
        q.push(t(10), 1).unwrap();
        q.pop();
        assert_eq!(
            q.push(t(9), 2),
            Err(ScheduleError::InThePast {
                at: t(9),
                now: t(10)
            })
        );
    }

    #[test]
    fn mass_cancellation_compacts_the_heap() {
        let mut q = EventQueue::new();
        let ids: Vec<_> = (0..100_000u32)
            .map(|i| q.push(t(1_000 + u64::from(i)), i).unwrap())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            if i % 100 != 0 {
                q.cancel(*id).unwrap();
            }
        }
        assert_eq!(q.len(), 1_000);
        assert!(
            q.stored_keys() < 3_000,
            "tombstones were compacted: the buckets hold {}",
            q.stored_keys()
        );
        let out = drain(&mut q);
        assert_eq!(out.len(), 1_000);
        assert!(out.iter().all(|&(_, p)| p % 100 == 0));
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u64),
        PushNow,
        Cancel(usize),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..50).prop_map(Op::Push),
            1 => Just(Op::PushNow),
            2 => (0usize..64).prop_map(Op::Cancel),
            3 => Just(Op::Pop),
        ]
    }

    proptest! {
        /// Against a slow, obviously correct model: a sorted Vec of (time, seq).
        #[test]
        fn random_schedules_pop_in_time_seq_order(ops in proptest::collection::vec(op(), 1..400)) {
            let mut q = EventQueue::new();
            let mut model: Vec<(u64, u64)> = Vec::new();
            let mut ids: Vec<TimerId> = Vec::new();
            let mut last = (0u64, 0u64);
            for o in ops {
                match o {
                    Op::Push(dt) => {
                        let at = q.now().as_ns() + dt;
                        let id = q.push(t(at), 0u32).unwrap();
                        model.push((at, id.seq()));
                        ids.push(id);
                    }
                    Op::PushNow => {
                        let at = q.now().as_ns();
                        let id = q.push(t(at), 0u32).unwrap();
                        model.push((at, id.seq()));
                        ids.push(id);
                    }
                    Op::Cancel(i) => {
                        if let Some(&id) = ids.get(i) {
                            let was = model.iter().position(|&(_, s)| s == id.seq());
                            // Both ways of cancelling: moving the payload out, or dropping it.
                            let got = if i % 2 == 0 { q.cancel(id).is_some() } else { q.discard(id) };
                            prop_assert_eq!(got, was.is_some());
                            if let Some(p) = was { model.remove(p); }
                        }
                    }
                    Op::Pop => {
                        model.sort();
                        let want = if model.is_empty() { None } else { Some(model.remove(0)) };
                        let got = q.pop().map(|p| (p.time.as_ns(), p.seq));
                        prop_assert_eq!(got, want);
                        if let Some(g) = got {
                            prop_assert!(g > last || last == (0, 0));
                            last = g;
                        }
                    }
                }
                prop_assert_eq!(q.len(), model.len());
            }
            model.sort();
            let rest: Vec<_> = std::iter::from_fn(|| q.pop().map(|p| (p.time.as_ns(), p.seq))).collect();
            prop_assert_eq!(rest, model);
        }

        /// The same with delays spread over the whole range of time (the radix heap files keys by
        /// their highest bit differing from the last popped one: short delays, long timers,
        /// ties, and `SimTime::MAX`), and bounded pops that must leave the queue untouched when
        /// the next event is past the bound, even if earlier events are scheduled afterwards.
        #[test]
        fn wide_delays_and_bounded_pops_keep_time_seq_order(
            ops in proptest::collection::vec(wide_op(), 1..600)
        ) {
            let mut q = EventQueue::new();
            let mut model: Vec<(u64, u64)> = Vec::new();
            let mut ids: Vec<TimerId> = Vec::new();
            for o in ops {
                match o {
                    WideOp::Push(dt) => {
                        let at = q.now().as_ns().saturating_add(dt);
                        let id = q.push(t(at), 0u32).unwrap();
                        model.push((at, id.seq()));
                        ids.push(id);
                    }
                    WideOp::Cancel(i) => {
                        if let Some(&id) = ids.get(i) {
                            let was = model.iter().position(|&(_, s)| s == id.seq());
                            prop_assert_eq!(q.cancel(id).is_some(), was.is_some());
                            if let Some(p) = was { model.remove(p); }
                        }
                    }
                    WideOp::PopUntil(dt) => {
                        model.sort();
                        let limit = q.now().as_ns().saturating_add(dt);
                        let got = q.pop_until(t(limit));
                        match model.first().copied() {
                            None => prop_assert_eq!(got, Pop::Empty),
                            Some((at, _)) if at > limit => prop_assert_eq!(got, Pop::Later(t(at))),
                            Some((at, seq)) => {
                                model.remove(0);
                                match got {
                                    Pop::Event(p) => prop_assert_eq!((p.time.as_ns(), p.seq), (at, seq)),
                                    other => prop_assert!(false, "expected an event, got {:?}", other),
                                }
                            }
                        }
                        model.sort();
                        prop_assert_eq!(q.peek_time().map(SimTime::as_ns), model.first().map(|m| m.0));
                    }
                }
                prop_assert_eq!(q.len(), model.len());
            }
            model.sort();
            let rest: Vec<_> = std::iter::from_fn(|| q.pop().map(|p| (p.time.as_ns(), p.seq))).collect();
            prop_assert_eq!(rest, model);
        }
    }

    #[derive(Debug, Clone)]
    enum WideOp {
        Push(u64),
        Cancel(usize),
        PopUntil(u64),
    }

    fn wide_delay() -> impl Strategy<Value = u64> {
        prop_oneof![
            2 => Just(0u64),
            3 => 0u64..64,
            3 => 0u64..5_000_000,
            2 => 0u64..(1 << 40),
            1 => Just(u64::MAX),
        ]
    }

    fn wide_op() -> impl Strategy<Value = WideOp> {
        prop_oneof![
            5 => wide_delay().prop_map(WideOp::Push),
            2 => (0usize..128).prop_map(WideOp::Cancel),
            4 => wide_delay().prop_map(WideOp::PopUntil),
        ]
    }
}
