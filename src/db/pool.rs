//! [`ConnectionPool`]: an API node's pool of database connections, as a pure data structure (no
//! events): the node owns it, asks for a connection per query, and arms its own acquire-timeout
//! timer for a queued waiter, cancelling the waiter when the timer fires.
//!
//! Waiters are served FIFO. Cancellation is lazy and O(log n): a waiter is named by the
//! [`WaiterTicket`] it was queued under (tickets increase, so the queue is sorted by ticket and a
//! binary search finds it); its entry becomes a tombstone that is dropped when it reaches the
//! front, and the queue is compacted when tombstones dominate, so memory follows live waiters.
//!
//! # Leaked connections (fault injection)
//!
//! [`ConnectionPool::set_leaked`] models connections held by leaked handles (a
//! `db_connection_leak` fault): the pool can lend at most `size − leaked` connections. A leak
//! larger than the connections free takes the busy ones as they come back (a released
//! connection goes to the leak, not to a waiter, while more are lent than the capacity allows);
//! giving leaked connections back hands them to waiters at once. [`ConnectionPool::reset`] is a
//! process restart: every connection closes and every waiter is gone; cumulative counts stay.

use std::collections::VecDeque;

/// Names one queued waiter; returned by [`ConnectionPool::try_acquire`] when the caller has to
/// wait, accepted by [`ConnectionPool::cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterTicket(u64);

impl WaiterTicket {
    /// The ticket's number (tickets of one pool are issued 0, 1, 2, … in queueing order).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The answer to [`ConnectionPool::try_acquire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquire<W> {
    /// A connection was free and is now the caller's; the waiter comes back unchanged.
    Granted(W),
    /// All connections are in use: the waiter is queued under this ticket and will come out of a
    /// later [`ConnectionPool::release`] (or [`ConnectionPool::cancel`]).
    Queued(WaiterTicket),
    /// All connections are in use and the wait queue is full: the waiter comes back.
    Rejected(W),
}

/// Counts a pool keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Connections in use now.
    pub in_use: u32,
    /// Live waiters now.
    pub waiting: u32,
    /// Most live waiters ever at once.
    pub max_waiting: u32,
    /// Connections handed out (at once or to a waiter on release).
    pub granted: u64,
    /// Of `granted`, those handed to a waiter on release.
    pub granted_after_wait: u64,
    /// Waiters queued.
    pub queued: u64,
    /// Waiters cancelled (acquire timeouts).
    pub timed_out: u64,
    /// Acquisitions refused because the wait queue was full.
    pub rejected: u64,
}

/// A fixed-size pool of connections with a bounded FIFO wait queue. `W` is whatever the owner
/// needs to resume a waiter (e.g. a request slot and a timer id).
#[derive(Clone, Debug)]
pub struct ConnectionPool<W> {
    size: u32,
    wait_queue_limit: u32,
    /// Waiters by ticket, increasing; `None` marks a cancelled waiter (a tombstone).
    queue: VecDeque<(u64, Option<W>)>,
    next_ticket: u64,
    counts: PoolCounts,
    /// Connections held by leaked handles (a fault): not lendable.
    leaked: u32,
}

impl<W> ConnectionPool<W> {
    /// A pool of `size` connections and room for `wait_queue_limit` waiters. A pool of size 0
    /// never grants (every caller waits or is rejected); it is legal but useless.
    pub fn new(size: u32, wait_queue_limit: u32) -> ConnectionPool<W> {
        ConnectionPool {
            size,
            wait_queue_limit,
            queue: VecDeque::with_capacity((wait_queue_limit as usize).min(1024)),
            next_ticket: 0,
            counts: PoolCounts::default(),
            leaked: 0,
        }
    }

    /// Connections the pool may lend now: its size less the leaked ones.
    pub fn capacity(&self) -> u32 {
        self.size.saturating_sub(self.leaked)
    }
    /// Connections held by leaked handles now.
    pub fn leaked(&self) -> u32 {
        self.leaked
    }

    /// Sets how many connections leaked handles hold (see the module documentation). When the
    /// capacity grows, queued waiters get the freed connections at once: they are returned,
    /// oldest first, for the owner to resume (and cancel their timeouts).
    pub fn set_leaked(&mut self, leaked: u32) -> Vec<(WaiterTicket, W)> {
        self.leaked = leaked;
        let mut granted = Vec::new();
        while self.counts.in_use < self.capacity() && self.counts.waiting > 0 {
            let Some((ticket, slot)) = self.queue.pop_front() else {
                break;
            };
            if let Some(w) = slot {
                self.counts.waiting -= 1;
                self.counts.in_use += 1;
                self.counts.granted += 1;
                self.counts.granted_after_wait += 1;
                granted.push((WaiterTicket(ticket), w));
            }
        }
        granted
    }

    /// A restart of the owning process: every connection is closed (none in use) and every
    /// waiter dropped; the leak setting and the cumulative counts stay.
    pub fn reset(&mut self) {
        self.queue.clear();
        self.counts.in_use = 0;
        self.counts.waiting = 0;
    }

    pub fn size(&self) -> u32 {
        self.size
    }
    pub fn wait_queue_limit(&self) -> u32 {
        self.wait_queue_limit
    }
    pub fn in_use(&self) -> u32 {
        self.counts.in_use
    }
    pub fn waiting(&self) -> u32 {
        self.counts.waiting
    }
    pub fn counts(&self) -> &PoolCounts {
        &self.counts
    }

    /// Takes a free connection, or queues `waiter` (FIFO), or refuses when the queue is full.
    pub fn try_acquire(&mut self, waiter: W) -> Acquire<W> {
        if self.counts.in_use < self.capacity() {
            debug_assert_eq!(self.counts.waiting, 0, "a free connection with waiters");
            self.counts.in_use += 1;
            self.counts.granted += 1;
            return Acquire::Granted(waiter);
        }
        if self.counts.waiting >= self.wait_queue_limit {
            self.counts.rejected += 1;
            return Acquire::Rejected(waiter);
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.queue.push_back((ticket, Some(waiter)));
        self.counts.waiting += 1;
        self.counts.queued += 1;
        self.counts.max_waiting = self.counts.max_waiting.max(self.counts.waiting);
        Acquire::Queued(WaiterTicket(ticket))
    }

    /// Gives a connection back. If a waiter is queued, the connection passes straight to the
    /// oldest one, which is returned with its ticket (the owner resumes it and cancels its
    /// timeout); otherwise the connection becomes free.
    ///
    /// # Panics
    /// If no connection is in use: releasing twice is a bug in the owner.
    pub fn release(&mut self) -> Option<(WaiterTicket, W)> {
        assert!(
            self.counts.in_use > 0,
            "released a connection that was not in use"
        );
        if self.counts.in_use > self.capacity() {
            // More lent than the leak leaves: this connection goes to the leak.
            self.counts.in_use -= 1;
            return None;
        }
        while let Some((ticket, slot)) = self.queue.pop_front() {
            if let Some(w) = slot {
                self.counts.waiting -= 1;
                self.counts.granted += 1;
                self.counts.granted_after_wait += 1;
                return Some((WaiterTicket(ticket), w));
            }
        }
        self.counts.in_use -= 1;
        None
    }

    /// Removes a queued waiter (its acquire timed out) and returns it; `None` if it was already
    /// granted or cancelled.
    pub fn cancel(&mut self, ticket: WaiterTicket) -> Option<W> {
        let i = self.queue.binary_search_by_key(&ticket.0, |e| e.0).ok()?;
        let w = self.queue[i].1.take()?;
        self.counts.waiting -= 1;
        self.counts.timed_out += 1;
        // Drop tombstones at the front at once; compact when they dominate the queue.
        while matches!(self.queue.front(), Some((_, None))) {
            self.queue.pop_front();
        }
        if self.queue.len() > 64 && self.queue.len() > 2 * self.counts.waiting as usize {
            self.queue.retain(|e| e.1.is_some());
        }
        Some(w)
    }

    /// Whether the waiter under `ticket` is still queued.
    pub fn is_waiting(&self, ticket: WaiterTicket) -> bool {
        self.queue
            .binary_search_by_key(&ticket.0, |e| e.0)
            .is_ok_and(|i| self.queue[i].1.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_up_to_size_then_queues_fifo_then_rejects() {
        let mut p = ConnectionPool::new(2, 2);
        assert_eq!(p.try_acquire("a"), Acquire::Granted("a"));
        assert_eq!(p.try_acquire("b"), Acquire::Granted("b"));
        assert_eq!(p.try_acquire("c"), Acquire::Queued(WaiterTicket(0)));
        assert_eq!(p.try_acquire("d"), Acquire::Queued(WaiterTicket(1)));
        assert_eq!(p.try_acquire("e"), Acquire::Rejected("e"));
        assert_eq!((p.in_use(), p.waiting()), (2, 2));
        // Hand-off is FIFO and keeps the connection in use.
        assert_eq!(p.release(), Some((WaiterTicket(0), "c")));
        assert_eq!((p.in_use(), p.waiting()), (2, 1));
        assert_eq!(p.release(), Some((WaiterTicket(1), "d")));
        assert_eq!(p.release(), None);
        assert_eq!((p.in_use(), p.waiting()), (1, 0));
        assert_eq!(p.release(), None);
        assert_eq!(p.in_use(), 0);
        let c = *p.counts();
        assert_eq!(
            c,
            PoolCounts {
                in_use: 0,
                waiting: 0,
                max_waiting: 2,
                granted: 4,
                granted_after_wait: 2,
                queued: 2,
                timed_out: 0,
                rejected: 1,
            }
        );
    }

    #[test]
    fn cancelled_waiters_are_skipped_and_free_their_queue_place() {
        let mut p = ConnectionPool::new(1, 3);
        assert_eq!(p.try_acquire(10), Acquire::Granted(10));
        let t: Vec<_> = (11..14)
            .map(|w| match p.try_acquire(w) {
                Acquire::Queued(t) => t,
                other => panic!("expected queued, got {other:?}"),
            })
            .collect();
        assert_eq!(p.try_acquire(99), Acquire::Rejected(99));
        // Cancel the middle one, then the first: the queue has room again.
        assert_eq!(p.cancel(t[1]), Some(12));
        assert_eq!(p.cancel(t[1]), None, "double cancel is a no-op");
        assert!(!p.is_waiting(t[1]) && p.is_waiting(t[0]));
        assert_eq!(p.cancel(t[0]), Some(11));
        assert_eq!(p.waiting(), 1);
        assert_eq!(p.try_acquire(15), Acquire::Queued(WaiterTicket(3)));
        // Release skips the tombstones: 13 is next, then 15.
        assert_eq!(p.release(), Some((t[2], 13)));
        assert_eq!(p.cancel(t[2]), None, "a granted waiter cannot be cancelled");
        assert_eq!(p.release(), Some((WaiterTicket(3), 15)));
        assert_eq!(p.release(), None);
        assert_eq!(p.counts().timed_out, 2);
        assert_eq!(p.counts().granted, 3);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn tombstones_do_not_accumulate() {
        let mut p = ConnectionPool::new(1, 1_000);
        assert!(matches!(p.try_acquire(0u32), Acquire::Granted(0)));
        let Acquire::Queued(head) = p.try_acquire(1) else {
            panic!("queued")
        };
        // A long-lived head waiter and 100k waiters behind it that all time out.
        for w in 2..100_000u32 {
            let Acquire::Queued(t) = p.try_acquire(w) else {
                panic!("queued")
            };
            assert_eq!(p.cancel(t), Some(w));
        }
        assert!(
            p.queue.len() <= 130,
            "queue holds {} entries",
            p.queue.len()
        );
        assert_eq!(p.waiting(), 1);
        assert_eq!(p.release(), Some((head, 1)));
    }

    #[test]
    fn a_leak_shrinks_capacity_takes_busy_connections_as_they_return_and_gives_them_back() {
        let mut p = ConnectionPool::new(3, 10);
        for w in 0..3 {
            assert_eq!(p.try_acquire(w), Acquire::Granted(w));
        }
        // Leak 2 while all 3 are busy: the next two releases go to the leak.
        assert!(p.set_leaked(2).is_empty());
        assert_eq!(p.capacity(), 1);
        assert_eq!(p.try_acquire(10), Acquire::Queued(WaiterTicket(0)));
        assert_eq!(p.release(), None);
        assert_eq!(p.release(), None);
        assert_eq!(p.in_use(), 1);
        // The third release goes to the waiter: one connection is lendable.
        assert_eq!(p.release(), Some((WaiterTicket(0), 10)));
        assert_eq!(p.try_acquire(11), Acquire::Queued(WaiterTicket(1)));
        assert_eq!(p.try_acquire(12), Acquire::Queued(WaiterTicket(2)));
        // The leak ends: both waiters get the returned connections at once, in order.
        assert_eq!(
            p.set_leaked(0),
            vec![(WaiterTicket(1), 11), (WaiterTicket(2), 12)]
        );
        assert_eq!((p.in_use(), p.waiting(), p.capacity()), (3, 0, 3));
        // A leak of the whole pool (or more) lends nothing.
        p.set_leaked(7);
        assert_eq!(p.capacity(), 0);
        p.reset();
        assert_eq!((p.in_use(), p.waiting(), p.leaked()), (0, 0, 7));
        assert_eq!(p.try_acquire(13), Acquire::Queued(WaiterTicket(3)));
        assert_eq!(p.counts().granted, 6);
    }

    #[test]
    #[should_panic(expected = "not in use")]
    fn releasing_an_idle_pool_is_a_bug() {
        let mut p: ConnectionPool<()> = ConnectionPool::new(1, 1);
        p.release();
    }
}
