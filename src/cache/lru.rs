//! [`LruMap`]: a bounded ordered map with recency order, the storage under both cache levels.
//!
//! # Structure and cost
//!
//! An index maps a key to a slot of a `Vec` of nodes; the nodes form an intrusive doubly linked
//! list (indices, not pointers) from the most recently used (`head`) to the least recently used
//! (`tail`), with a LIFO free list of vacated slots. The index is a hand-written open-addressing
//! table (linear probing, backward-shift deletion, at most half full) hashed with a fixed mixer
//! ([`IndexKey::hash64`], no per-process seed; the same scheme as
//! [`crate::kernel::FixMap`]); it is never iterated — iteration and eviction
//! follow the recency list — so its layout is never observable and order never depends on the
//! process; slot reuse is deterministic. Lookup is O(1) expected; moving a node to the front,
//! unlinking it and evicting the tail are O(1).
//!
//! The map itself does not decide *when* order changes: [`LruMap::touch`] moves an entry to the
//! front (an LRU cache touches on every hit; a FIFO cache never does), and [`LruMap::insert`]
//! always puts the entry at the front.

const NIL: u32 = u32::MAX;

/// Entries a new map's index is sized for at once (128 KiB of index): a map of at most this
/// many entries (an L1) never grows its index, each growth being a rehash of every entry; a
/// larger one (the L2) grows from there as entries arrive, so its memory follows its use.
const PRESIZED_ENTRIES: usize = 1 << 14;

pub use crate::kernel::fixmap::{IndexKey, mix64};

/// Names one occupied entry of an [`LruMap`] between a [`LruMap::find`] and the next change of
/// the map (any insert or removal may invalidate it). It avoids a second index lookup when a
/// caller both reads and then touches or removes an entry: it holds the entry's node and its
/// position in the index, so a removal needs no new probe either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    node: u32,
    pos: usize,
}

#[derive(Clone, Copy, Debug)]
struct Node<K, T> {
    key: K,
    value: T,
    prev: u32,
    next: u32,
}

/// A map of at most `capacity` entries that keeps them in recency order and evicts the least
/// recently used one to make room. See the module documentation.
#[derive(Clone, Debug)]
pub struct LruMap<K, T> {
    /// Open-addressing table of node indices (`NIL`: empty); its length is a power of two at
    /// least 16 and at least twice `len`.
    index: Vec<u32>,
    len: usize,
    nodes: Vec<Node<K, T>>,
    free: Vec<u32>,
    /// Most recently used, or `NIL` when empty.
    head: u32,
    /// Least recently used (the next victim), or `NIL` when empty.
    tail: u32,
    capacity: usize,
}

impl<K: IndexKey, T: Copy> LruMap<K, T> {
    /// An empty map holding at most `capacity` (≥ 1, < 2^32 − 1) entries. Nodes are stored
    /// as entries arrive, up to `capacity`; the index starts sized for
    /// 16,384 entries or `capacity`, whichever is smaller.
    pub fn new(capacity: usize) -> LruMap<K, T> {
        assert!(
            capacity >= 1 && capacity < NIL as usize,
            "an LRU map holds 1 to 2^32 - 2 entries, not {capacity}"
        );
        LruMap {
            index: vec![
                NIL;
                (capacity.min(PRESIZED_ENTRIES) * 2)
                    .next_power_of_two()
                    .max(16)
            ],
            len: 0,
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn contains(&self, key: &K) -> bool {
        self.find(key).is_some()
    }

    /// The index position where `key` is, or the empty position where it would go.
    #[inline]
    fn probe(&self, key: &K) -> (usize, bool) {
        self.probe_from(key, key.hash64() as usize & (self.index.len() - 1))
    }

    /// [`LruMap::probe`] from `key`'s home position `home`, already computed.
    #[inline]
    fn probe_from(&self, key: &K, home: usize) -> (usize, bool) {
        let mask = self.index.len() - 1;
        let mut p = home;
        loop {
            let i = self.index[p];
            if i == NIL {
                return (p, false);
            }
            if self.nodes[i as usize].key == *key {
                return (p, true);
            }
            p = (p + 1) & mask;
        }
    }

    /// The slot of `key`, if present (O(1) expected); order is unchanged.
    #[inline]
    pub fn find(&self, key: &K) -> Option<Slot> {
        if self.len == 0 {
            return None;
        }
        match self.probe(key) {
            (p, true) => Some(Slot {
                node: self.index[p],
                pos: p,
            }),
            _ => None,
        }
    }

    /// Empties index position `hole` (which holds an entry), shifting later entries of its
    /// probe run back so no tombstone is left. Returns the position left empty in the end (the
    /// only one that was not empty before).
    fn index_remove_at(&mut self, mut hole: usize) -> usize {
        let mask = self.index.len() - 1;
        let mut p = hole;
        loop {
            p = (p + 1) & mask;
            let i = self.index[p];
            if i == NIL {
                break;
            }
            let home = self.nodes[i as usize].key.hash64() as usize & mask;
            // Move `i` into the hole unless its home lies cyclically in (hole, p].
            let stays = if hole <= p {
                hole < home && home <= p
            } else {
                hole < home || home <= p
            };
            if !stays {
                self.index[hole] = i;
                hole = p;
            }
        }
        self.index[hole] = NIL;
        self.len -= 1;
        hole
    }

    /// Whether one more entry would make the index more than half full.
    #[inline]
    fn index_full(&self) -> bool {
        (self.len + 1) * 2 > self.index.len()
    }

    /// Rebuilds the index at a size that holds one more entry at most half full.
    fn grow_index(&mut self) {
        let size = ((self.len + 1) * 2).next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.index, vec![NIL; size]);
        for j in old.into_iter().filter(|&j| j != NIL) {
            let (p, _) = self.probe(&self.nodes[j as usize].key);
            self.index[p] = j;
        }
    }

    /// The key and value in `slot`.
    #[inline]
    pub fn entry(&self, slot: Slot) -> (K, &T) {
        let n = &self.nodes[slot.node as usize];
        (n.key, &n.value)
    }

    /// The value in `slot`, for update in place; order is unchanged.
    #[inline]
    pub fn value_mut(&mut self, slot: Slot) -> &mut T {
        &mut self.nodes[slot.node as usize].value
    }

    /// The value of `key` without changing the order.
    pub fn peek(&self, key: &K) -> Option<&T> {
        self.find(key).map(|s| self.entry(s).1)
    }

    /// Moves `slot` to the front (most recently used). O(1).
    #[inline]
    pub fn touch_slot(&mut self, slot: Slot) {
        if self.head != slot.node {
            self.unlink(slot.node);
            self.push_front(slot.node);
        }
    }

    /// Moves `key` to the front; returns whether it was present.
    pub fn touch(&mut self, key: &K) -> bool {
        match self.find(key) {
            Some(s) => {
                self.touch_slot(s);
                true
            }
            None => false,
        }
    }

    /// Removes the entry in `slot` and returns its key and value. O(1) expected; the slot's
    /// index position spares a second probe.
    pub fn remove_slot(&mut self, slot: Slot) -> (K, T) {
        let Node { key, value, .. } = self.nodes[slot.node as usize];
        self.drop_slot(slot);
        (key, value)
    }

    /// Removes the entry in `slot` without copying it out.
    fn drop_slot(&mut self, slot: Slot) {
        debug_assert_eq!(self.index[slot.pos], slot.node, "a stale slot");
        self.unlink(slot.node);
        self.index_remove_at(slot.pos);
        self.free.push(slot.node);
    }

    /// Removes `key` without handing its value back (an invalidation only needs to know
    /// whether there was one); returns whether it was present. Inlined, so that a caller
    /// that mostly misses pays only the lookup.
    #[inline]
    pub fn discard(&mut self, key: &K) -> bool {
        match self.find(key) {
            Some(s) => {
                self.drop_slot(s);
                true
            }
            None => false,
        }
    }

    /// Removes `key`; returns its value if it was present.
    pub fn remove(&mut self, key: &K) -> Option<T> {
        self.find(key).map(|s| self.remove_slot(s).1)
    }

    /// Puts `key` at the front with `value`, replacing the value if the key is present. When
    /// the key is new and the map is full, the least recently used entry is evicted first and
    /// returned.
    ///
    /// One probe finds the key or the position for it; only a growth of the index makes a
    /// second one.
    pub fn insert(&mut self, key: K, value: T) -> Option<(K, T)> {
        let mask = self.index.len() - 1;
        let home = key.hash64() as usize & mask;
        let (mut p, found) = self.probe_from(&key, home);
        if found {
            let i = self.index[p];
            self.nodes[i as usize].value = value;
            self.touch_slot(Slot { node: i, pos: p });
            return None;
        }
        let evicted = if self.len >= self.capacity {
            let tail = self.tail;
            let Node {
                key: victim_key,
                value: victim_value,
                ..
            } = self.nodes[tail as usize];
            let (tail_pos, _) = self.probe(&victim_key);
            self.unlink(tail);
            let emptied = self.index_remove_at(tail_pos);
            self.free.push(tail);
            // The removal emptied one position and filled none: the new key's probe now stops
            // there if it comes before `p` on the way from `home`, and at `p` otherwise.
            if emptied.wrapping_sub(home) & mask < p.wrapping_sub(home) & mask {
                p = emptied;
            }
            Some((victim_key, victim_value))
        } else {
            None
        };
        if self.index_full() {
            self.grow_index();
            (p, _) = self.probe(&key);
        }
        let node = Node {
            key,
            value,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.index[p] = i;
        self.len += 1;
        self.push_front(i);
        evicted
    }

    /// The least recently used entry: the next to be evicted.
    pub fn lru(&self) -> Option<(K, &T)> {
        (self.tail != NIL).then(|| {
            let n = &self.nodes[self.tail as usize];
            (n.key, &n.value)
        })
    }

    /// Removes every entry; keeps the storage for reuse. Returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.len;
        self.index.fill(NIL);
        self.len = 0;
        self.nodes.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        n
    }

    /// Entries from the most to the least recently used.
    pub fn iter(&self) -> impl Iterator<Item = (K, &T)> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let n = &self.nodes[at as usize];
            at = n.next;
            Some((n.key, &n.value))
        })
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        if old == NIL {
            self.tail = i;
        } else {
            self.nodes[old as usize].prev = i;
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::RootSeed;

    fn keys(m: &LruMap<u32, u32>) -> Vec<u32> {
        m.iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn keeps_recency_order_and_evicts_the_tail() {
        let mut m = LruMap::new(3);
        assert_eq!(m.insert(1, 10), None);
        assert_eq!(m.insert(2, 20), None);
        assert_eq!(m.insert(3, 30), None);
        assert_eq!(keys(&m), [3, 2, 1]);
        assert!(m.touch(&1));
        assert_eq!(keys(&m), [1, 3, 2]);
        assert_eq!(m.insert(4, 40), Some((2, 20)));
        assert_eq!(keys(&m), [4, 1, 3]);
        assert_eq!(m.insert(1, 11), None, "replacing never evicts");
        assert_eq!(m.peek(&1), Some(&11));
        assert_eq!(m.lru(), Some((3, &30)));
        assert_eq!(m.remove(&3), Some(30));
        assert_eq!(keys(&m), [1, 4]);
        assert_eq!(m.insert(5, 50), None, "a removal made room");
        assert_eq!(m.clear(), 3);
        assert!(m.is_empty() && m.lru().is_none() && keys(&m).is_empty());
        assert_eq!(m.insert(9, 90), None);
        assert_eq!(keys(&m), [9]);
    }

    /// A map larger than the index's presized length grows its index, and keeps every entry
    /// findable and in order through growths and removals (checked against a plain model).
    #[test]
    fn the_index_grows_past_its_presized_length() {
        let n = 3 * PRESIZED_ENTRIES as u32;
        let mut m = LruMap::new(n as usize);
        let initial = m.index.len();
        let mut present = vec![false; n as usize];
        for k in 0..n {
            assert_eq!(m.insert(k, k * 2), None);
            present[k as usize] = true;
            if k % 3 == 0 {
                let victim = k / 2;
                assert_eq!(m.discard(&victim), present[victim as usize]);
                present[victim as usize] = false;
            }
        }
        assert!(m.index.len() > initial, "the index grew");
        // Nothing was touched: newest insertion first.
        let expect: Vec<u32> = (0..n).rev().filter(|&k| present[k as usize]).collect();
        assert_eq!(keys(&m), expect);
        for k in 0..n {
            assert_eq!(m.peek(&k), present[k as usize].then_some(&(k * 2)));
        }
        assert_eq!(m.len(), expect.len());
    }

    /// Random operations against a naive model (a Vec in recency order); the larger case makes
    /// the index grow and its probe runs collide and shift back on removal.
    #[test]
    fn matches_a_naive_model() {
        model_check(7, 16, 50_000);
        model_check(200, 512, 50_000);
    }

    fn model_check(cap: usize, keys_below: u64, steps: u32) {
        let mut rng = RootSeed::new(5).fork("lru.model");
        let mut m = LruMap::new(cap);
        let mut model: Vec<(u32, u32)> = Vec::new(); // front = most recent
        for step in 0..steps {
            let k = rng.below(keys_below) as u32;
            match rng.below(4) {
                0 | 1 => {
                    let got = m.insert(k, step);
                    let expect = if let Some(p) = model.iter().position(|e| e.0 == k) {
                        model.remove(p);
                        None
                    } else if model.len() == cap {
                        model.pop()
                    } else {
                        None
                    };
                    model.insert(0, (k, step));
                    assert_eq!(got, expect);
                }
                2 => {
                    let hit = m.touch(&k);
                    let p = model.iter().position(|e| e.0 == k);
                    assert_eq!(hit, p.is_some());
                    if let Some(p) = p {
                        let e = model.remove(p);
                        model.insert(0, e);
                    }
                }
                3 if step % 2 == 0 => {
                    let got = m.remove(&k);
                    let p = model.iter().position(|e| e.0 == k);
                    assert_eq!(got, p.map(|p| model.remove(p).1));
                }
                _ => {
                    let got = m.discard(&k);
                    let p = model.iter().position(|e| e.0 == k);
                    assert_eq!(got, p.map(|p| model.remove(p)).is_some());
                }
            }
            let seen: Vec<(u32, u32)> = m.iter().map(|(k, v)| (k, *v)).collect();
            assert_eq!(seen, model);
            assert_eq!(m.len(), model.len());
            assert!(m.nodes.len() <= cap, "storage stays within capacity");
            // Every entry is found by a fresh probe at the index position it sits in.
            for (k, _) in m.iter() {
                let s = m.find(&k).expect("held");
                assert_eq!(m.index[s.pos], s.node);
                assert_eq!(m.nodes[s.node as usize].key, k);
            }
            assert_eq!(m.index.iter().filter(|&&i| i != NIL).count(), m.len());
        }
    }
}
