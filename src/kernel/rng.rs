//! Seeded randomness: one root seed, named substreams forked by label.
//!
//! Every random consumer draws from its own [`SimRng`], forked from the run's [`RootSeed`] by a
//! label such as `"station.service"`. The substream's key is a hash of (root seed, label), so adding
//! a consumer, or drawing more from one, never shifts the numbers any other consumer sees.
//!
//! The generator is ChaCha8 (`rand_chacha::ChaCha8Rng`), whose output for a given key is specified by
//! the ChaCha algorithm and documented by its crate as reproducible across versions and platforms,
//! unlike `StdRng`/`SmallRng`. The label hash is FNV-1a followed by SplitMix64 finalisers, both
//! written out here, so the mapping from (seed, label) to stream can never change under us.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The root of all randomness in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootSeed(u64);

impl RootSeed {
    pub const fn new(seed: u64) -> RootSeed {
        RootSeed(seed)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The substream for `label`. Labels are dotted paths naming the consumer
    /// (`"traffic.arrivals"`, `"node.3.gc"`); the same label always gives the same stream.
    pub fn fork(self, label: &str) -> SimRng {
        SimRng::from_key(stream_key(self.0, label))
    }
}

/// A deterministic random stream (implements `rand::Rng`).
#[derive(Clone, Debug)]
pub struct SimRng {
    inner: ChaCha8Rng,
}

impl SimRng {
    fn from_key(key: [u8; 32]) -> SimRng {
        SimRng {
            inner: ChaCha8Rng::from_seed(key),
        }
    }

    /// A child stream of this one, by label, without consuming from this stream.
    pub fn fork(&self, label: &str) -> SimRng {
        let seed = self.inner.get_seed();
        let mut parent = 0u64;
        for chunk in seed.chunks_exact(8) {
            parent = splitmix64(parent ^ u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        SimRng::from_key(stream_key(parent, label))
    }

    /// Uniform in the open interval (0, 1): never 0, so `ln` is always finite.
    #[inline]
    pub fn open01(&mut self) -> f64 {
        use rand::Rng;
        ((self.inner.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// 64 random bits.
    #[inline]
    pub fn next_bits(&mut self) -> u64 {
        use rand::Rng;
        self.inner.next_u64()
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        use rand::Rng;
        (self.inner.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire's method). `n` must be > 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        use rand::Rng;
        assert!(n > 0, "below(0) has no value");
        loop {
            let m = u128::from(self.inner.next_u64()) * u128::from(n);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }
}

impl rand::TryRng for SimRng {
    type Error = core::convert::Infallible;
    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.inner.try_next_u32()
    }
    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.inner.try_next_u64()
    }
    #[inline]
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.try_fill_bytes(dst)
    }
}

/// A stable 64-bit hash of (value, label): for deriving identifiers (tokens, keys) that must be
/// the same on every machine and version.
pub fn mix_label(value: u64, label: &str) -> u64 {
    splitmix64(splitmix64(value) ^ fnv1a64(label.as_bytes()))
}

#[inline]
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The 32-byte ChaCha key of the stream (seed, label).
fn stream_key(seed: u64, label: &str) -> [u8; 32] {
    let mut state = splitmix64(seed) ^ fnv1a64(label.as_bytes()).rotate_left(17);
    state = splitmix64(state ^ label.len() as u64);
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        state = splitmix64(state);
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Golden values: the first draws of a named stream for seed 0. If this test fails, every
    /// recorded result and baseline of the project has silently changed meaning: do not update the
    /// numbers without a schema bump and a note in the changelog.
    #[test]
    fn golden_first_draws_of_seed_zero() {
        let mut r = RootSeed::new(0).fork("station.arrivals");
        let draws: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(draws, GOLDEN_ARRIVALS_SEED0);
        let mut s = RootSeed::new(0).fork("station.service");
        assert_eq!(s.next_u64(), GOLDEN_SERVICE_SEED0);
    }
    const GOLDEN_ARRIVALS_SEED0: [u64; 4] = [
        4850567321526837555,
        2743658153766420344,
        10983881864762911228,
        11321175786046164633,
    ];
    const GOLDEN_SERVICE_SEED0: u64 = 6574038704372035849;

    #[test]
    fn labels_and_seeds_give_independent_streams() {
        let a = RootSeed::new(7).fork("a").next_u64();
        let b = RootSeed::new(7).fork("b").next_u64();
        let a8 = RootSeed::new(8).fork("a").next_u64();
        assert_ne!(a, b);
        assert_ne!(a, a8);
        assert_eq!(a, RootSeed::new(7).fork("a").next_u64());
        // Forking a child does not consume from the parent.
        let parent = RootSeed::new(7).fork("a");
        let _child = parent.fork("x");
        let mut p2 = parent.clone();
        assert_eq!(p2.next_u64(), a);
    }

    #[test]
    fn open01_never_hits_the_ends_and_below_is_in_range() {
        let mut r = RootSeed::new(1).fork("t");
        for _ in 0..100_000 {
            let u = r.open01();
            assert!(u > 0.0 && u < 1.0 + f64::EPSILON);
            assert!(r.below(7) < 7);
            let v = r.unit();
            assert!((0.0..1.0).contains(&v));
        }
    }

    #[test]
    fn below_is_uniform() {
        let mut r = RootSeed::new(3).fork("below");
        let mut counts = [0u32; 6];
        let n = 600_000;
        for _ in 0..n {
            counts[r.below(6) as usize] += 1;
        }
        // Each bucket ~ Binomial(n, 1/6): sd ≈ 289; allow 5 sd.
        for c in counts {
            assert!((i64::from(c) - 100_000).abs() < 1_450, "{counts:?}");
        }
    }
}
