//! [`FixMap`]: a map with a fixed hash (no per-process seed) for lookups whose order is never
//! observed, and the [`IndexKey`] trait its keys (and the cache's LRU index) hash with.
//!
//! Open addressing with linear probing, at most half full, backward-shift deletion (no
//! tombstones). The map has no ordered iteration on purpose (only
//! [`FixMap::for_each_value_mut`], for order-independent updates): a run's results can never
//! depend on its layout, so determinism needs only a fixed mixer ([`mix64`]).

/// A key with a fixed 64-bit hash: the same on every platform and in every process.
pub trait IndexKey: Copy + Eq {
    fn hash64(&self) -> u64;
}

/// SplitMix64's finaliser: a fixed, well-spread mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl IndexKey for u32 {
    #[inline]
    fn hash64(&self) -> u64 {
        mix64(u64::from(*self))
    }
}

impl IndexKey for u64 {
    #[inline]
    fn hash64(&self) -> u64 {
        mix64(*self)
    }
}

/// A small tag and a 64-bit key (e.g. a resource kind and an operation's origin).
impl IndexKey for (u8, u64) {
    #[inline]
    fn hash64(&self) -> u64 {
        mix64(self.1 ^ u64::from(self.0).rotate_left(56))
    }
}

/// A map from [`IndexKey`] keys to values, without iteration. See the module documentation.
#[derive(Clone, Debug)]
pub struct FixMap<K, V> {
    /// Length 0 or a power of two at least twice `len`.
    table: Vec<Option<(K, V)>>,
    len: usize,
}

impl<K: IndexKey, V> Default for FixMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: IndexKey, V> FixMap<K, V> {
    pub fn new() -> FixMap<K, V> {
        FixMap {
            table: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where `key` is, or the empty position where it would go (the table is not empty).
    #[inline]
    fn probe(&self, key: &K) -> (usize, bool) {
        let mask = self.table.len() - 1;
        let mut p = key.hash64() as usize & mask;
        loop {
            match &self.table[p] {
                None => return (p, false),
                Some((k, _)) if k == key => return (p, true),
                Some(_) => p = (p + 1) & mask,
            }
        }
    }

    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        if self.len == 0 {
            return None;
        }
        match self.probe(key) {
            (p, true) => self.table[p].as_ref().map(|(_, v)| v),
            _ => None,
        }
    }

    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if self.len == 0 {
            return None;
        }
        match self.probe(key) {
            (p, true) => self.table[p].as_mut().map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if (self.len + 1) * 2 > self.table.len() {
            self.grow();
        }
        let (p, found) = self.probe(&key);
        let old = self.table[p].replace((key, value)).map(|(_, v)| v);
        if !found {
            self.len += 1;
        }
        old
    }

    /// Removes `key`; returns its value if it was present.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        if self.len == 0 {
            return None;
        }
        let (mut hole, found) = self.probe(key);
        if !found {
            return None;
        }
        let (_, value) = self.table[hole].take().expect("found");
        self.len -= 1;
        let mask = self.table.len() - 1;
        let mut p = hole;
        loop {
            p = (p + 1) & mask;
            let Some((k, _)) = &self.table[p] else { break };
            let home = k.hash64() as usize & mask;
            // Move the entry at `p` into the hole unless its home lies cyclically in (hole, p].
            let stays = if hole <= p {
                hole < home && home <= p
            } else {
                hole < home || home <= p
            };
            if !stays {
                self.table[hole] = self.table[p].take();
                hole = p;
            }
        }
        Some(value)
    }

    /// Applies `f` to every value, in an unspecified order: only for updates whose result does
    /// not depend on the order (the same change to each value).
    pub fn for_each_value_mut(&mut self, mut f: impl FnMut(&mut V)) {
        for (_, v) in self.table.iter_mut().flatten() {
            f(v);
        }
    }

    /// How many values `pred` holds for (a count: the table's layout is never observed, and
    /// no copy is made).
    pub fn count_values(&self, pred: impl Fn(&V) -> bool) -> usize {
        self.table.iter().flatten().filter(|(_, v)| pred(v)).count()
    }

    /// Every entry, in key order: the table's layout is never observed (keys are unique, so
    /// the order is the keys' alone). A copy of the keys and a sort: for rare, whole-map reads.
    pub fn sorted(&self) -> Vec<(K, &V)>
    where
        K: Ord,
    {
        let mut all: Vec<(K, &V)> = self.table.iter().flatten().map(|(k, v)| (*k, v)).collect();
        all.sort_unstable_by_key(|&(k, _)| k);
        all
    }

    pub fn clear(&mut self) {
        self.table.iter_mut().for_each(|e| *e = None);
        self.len = 0;
    }

    fn grow(&mut self) {
        let size = ((self.len + 1) * 2).next_power_of_two().max(16);
        let mut fresh = Vec::with_capacity(size);
        fresh.resize_with(size, || None);
        let old = std::mem::replace(&mut self.table, fresh);
        for (k, v) in old.into_iter().flatten() {
            let (p, _) = self.probe(&k);
            self.table[p] = Some((k, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::RootSeed;
    use std::collections::BTreeMap;

    /// Random inserts, removals and lookups against a `BTreeMap`.
    #[test]
    fn matches_a_btreemap() {
        let mut rng = RootSeed::new(3).fork("fixmap.model");
        let mut m: FixMap<u64, u64> = FixMap::new();
        let mut model = BTreeMap::new();
        for step in 0..100_000u64 {
            let k = rng.below(700);
            match rng.below(3) {
                0 => assert_eq!(m.insert(k, step), model.insert(k, step)),
                1 => assert_eq!(m.remove(&k), model.remove(&k)),
                _ => assert_eq!(m.get(&k), model.get(&k)),
            }
            assert_eq!(m.len(), model.len());
            if step % 20_000 == 0 {
                for k in 0..700 {
                    assert_eq!(m.get(&k), model.get(&k));
                }
            }
        }
        assert_eq!(
            m.count_values(|v| v % 2 == 0),
            model.values().filter(|v| *v % 2 == 0).count()
        );
        let sorted: Vec<(u64, u64)> = m.sorted().into_iter().map(|(k, v)| (k, *v)).collect();
        let expected: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(sorted, expected);
        let mut n = 0;
        m.for_each_value_mut(|v| {
            *v = 7;
            n += 1;
        });
        assert_eq!(n, model.len());
        m.clear();
        assert!(m.is_empty() && m.get(&1).is_none());
    }
}
