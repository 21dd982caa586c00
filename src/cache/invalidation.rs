//! The write side: what one write invalidates, and when each node hears of it.
//!
//! A write of key `k` at `t` (after the database write succeeded) produces an
//! [`InvalidationPlan`]: delete `k` in the L2 now ([`InvalidationPlan::l2_delete`]), invalidate
//! the writing node's own L1 at once, and deliver an [`L1Invalidation`] to every other node after
//! a delay drawn from a [`Dist`] (a pub/sub fan-out), or never, with probability `loss` (a lost
//! message: that node serves the old value until its TTL). The plan is pure data; the node turns
//! it into messages (see the wiring in the module documentation of [`crate::cache`]).

use super::{CacheConfigError, CacheKey, L2Op};
use crate::kernel::{ComponentId, Dist, SimDuration, SimRng, SimTime};

/// The invalidation message a node's L1 receives: `key` changed at `written_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1Invalidation<K = CacheKey> {
    pub key: K,
    pub written_at: SimTime,
    /// Keys covered: `count` keys from `key` (see [`super::RunKey`]); 1 for one write.
    pub count: u32,
}

/// What one write invalidates, and when. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidationPlan<K = CacheKey> {
    pub key: K,
    pub written_at: SimTime,
    /// The writing node, if any: it applies [`InvalidationPlan::message`] to its own L1 at once
    /// (no message), and gets no delivery.
    pub origin: Option<ComponentId>,
    /// Every other node whose invalidation is not lost, with the delay after which it arrives,
    /// in the order of the broadcaster's node list.
    pub deliveries: Vec<(ComponentId, SimDuration)>,
    /// Nodes whose invalidation is lost.
    pub lost: Vec<ComponentId>,
}

impl<K: Copy> InvalidationPlan<K> {
    /// The L2 request of the plan: delete the key now, refusing values older than `version`
    /// (the write's time in the database) that arrive later.
    pub fn l2_delete<V>(&self, version: SimTime) -> L2Op<K, V> {
        L2Op::Delete {
            key: self.key,
            version,
        }
    }

    /// The message every node's L1 gets (and the origin applies to itself).
    pub fn message(&self) -> L1Invalidation<K> {
        L1Invalidation {
            key: self.key,
            written_at: self.written_at,
            count: 1,
        }
    }

    /// The latest delivery: after it every surviving node has dropped the old value.
    pub fn max_delay(&self) -> Option<SimDuration> {
        self.deliveries.iter().map(|d| d.1).max()
    }
}

/// Makes [`InvalidationPlan`]s for a fixed set of nodes: one per write. Each writer owns one
/// (forked from its own stream) so a write on one node never shifts another node's numbers.
#[derive(Clone, Debug)]
pub struct Broadcaster {
    nodes: Vec<ComponentId>,
    delay: Dist,
    loss: f64,
    delay_rng: SimRng,
    loss_rng: SimRng,
}

impl Broadcaster {
    /// Delivers to `nodes` after `delay` (seconds, per node and per write); draws from streams
    /// `delay` and `loss` forked from `rng`. No loss until [`Broadcaster::with_loss`].
    pub fn new(nodes: Vec<ComponentId>, delay: Dist, rng: SimRng) -> Broadcaster {
        Broadcaster {
            nodes,
            delay,
            loss: 0.0,
            delay_rng: rng.fork("delay"),
            loss_rng: rng.fork("loss"),
        }
    }

    /// Loses each delivery with probability `p` in [0, 1].
    pub fn with_loss(mut self, p: f64) -> Result<Broadcaster, CacheConfigError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(CacheConfigError::Probability {
                field: "loss",
                value: p,
            });
        }
        self.loss = p;
        Ok(self)
    }

    pub fn nodes(&self) -> &[ComponentId] {
        &self.nodes
    }
    /// Delivers to `node` too from now on (a node added mid-run: a runbook's scale-out). Plans
    /// draw one more delay per write from then on.
    pub fn add_node(&mut self, node: ComponentId) {
        if !self.nodes.contains(&node) {
            self.nodes.push(node);
        }
    }
    pub fn delay(&self) -> &Dist {
        &self.delay
    }

    /// One delivery delay.
    pub fn sample_delay(&mut self) -> SimDuration {
        self.delay.sample_duration(&mut self.delay_rng)
    }

    /// The plan for a write of `key` at `now` by `origin`. One delay is drawn per node other
    /// than the origin, in node order, whether or not its delivery is lost (so the loss rate
    /// does not shift the delays).
    pub fn plan<K: Copy>(
        &mut self,
        key: K,
        now: SimTime,
        origin: Option<ComponentId>,
    ) -> InvalidationPlan<K> {
        let mut deliveries = Vec::with_capacity(self.nodes.len());
        let mut lost = Vec::new();
        self.each(origin, |node, delay| match delay {
            Some(d) => deliveries.push((node, d)),
            None => lost.push(node),
        });
        InvalidationPlan {
            key,
            written_at: now,
            origin,
            deliveries,
            lost,
        }
    }

    /// The deliveries of [`Broadcaster::plan`] without the plan: `deliver(node, delay)` for
    /// each, in node order, from the same draws (a write may use either). No allocation: the
    /// writers' path (a node's write, each of the workflow engine's state writes).
    pub fn broadcast(
        &mut self,
        origin: Option<ComponentId>,
        mut deliver: impl FnMut(ComponentId, SimDuration),
    ) {
        self.each(origin, |node, delay| {
            if let Some(d) = delay {
                deliver(node, d);
            }
        });
    }

    /// Every node but `origin`, in node order, with its delivery's delay (`None`: lost).
    fn each(
        &mut self,
        origin: Option<ComponentId>,
        mut f: impl FnMut(ComponentId, Option<SimDuration>),
    ) {
        for &node in &self.nodes {
            if Some(node) == origin {
                continue;
            }
            let delay = self.delay.sample_duration(&mut self.delay_rng);
            let lost = self.loss > 0.0 && self.loss_rng.unit() < self.loss;
            f(node, (!lost).then_some(delay));
        }
    }
}
