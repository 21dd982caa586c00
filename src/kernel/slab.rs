//! `Slab`: a table of in-flight records (requests, calls) addressed by generational handles, so a
//! reply or timer for a record that has since ended can never touch the record that reused its
//! slot. O(1) insert, lookup and remove; no hashing, deterministic slot reuse (LIFO free list).

/// Names one record of a [`Slab`]; fits in a `u64` to travel as a correlation tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle {
    slot: u32,
    generation: u32,
}

impl Handle {
    pub const fn to_u64(self) -> u64 {
        (self.generation as u64) << 32 | self.slot as u64
    }
    pub const fn from_u64(v: u64) -> Handle {
        Handle {
            slot: v as u32,
            generation: (v >> 32) as u32,
        }
    }
    pub const fn slot(self) -> usize {
        self.slot as usize
    }
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Records addressed by [`Handle`].
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, value: T) -> Handle {
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                let e = &mut self.entries[slot as usize];
                debug_assert!(e.value.is_none());
                e.value = Some(value);
                Handle {
                    slot,
                    generation: e.generation,
                }
            }
            None => {
                let slot = u32::try_from(self.entries.len()).expect("more than 2^32 live records");
                self.entries.push(Entry {
                    generation: 0,
                    value: Some(value),
                });
                Handle {
                    slot,
                    generation: 0,
                }
            }
        }
    }

    #[inline]
    pub fn get(&self, h: Handle) -> Option<&T> {
        self.entries
            .get(h.slot())
            .filter(|e| e.generation == h.generation)
            .and_then(|e| e.value.as_ref())
    }

    #[inline]
    pub fn get_mut(&mut self, h: Handle) -> Option<&mut T> {
        self.entries
            .get_mut(h.slot())
            .filter(|e| e.generation == h.generation)
            .and_then(|e| e.value.as_mut())
    }

    /// Removes the record; `None` if the handle is stale.
    pub fn remove(&mut self, h: Handle) -> Option<T> {
        let e = self.entries.get_mut(h.slot())?;
        if e.generation != h.generation {
            return None;
        }
        let v = e.value.take()?;
        e.generation = e.generation.wrapping_add(1);
        self.free.push(h.slot);
        self.len -= 1;
        Some(v)
    }

    /// Live records in slot order (deterministic).
    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            e.value.as_ref().map(|v| {
                (
                    Handle {
                        slot: i as u32,
                        generation: e.generation,
                    },
                    v,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_handles_miss_reused_slots() {
        let mut s = Slab::new();
        let a = s.insert("a");
        assert_eq!(s.get(a), Some(&"a"));
        assert_eq!(s.remove(a), Some("a"));
        let b = s.insert("b");
        assert_eq!(a.slot(), b.slot());
        assert_eq!(s.get(a), None);
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(Handle::from_u64(b.to_u64()), b);
        assert_eq!(s.len(), 1);
        let c = s.insert("c");
        assert_eq!(
            s.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            vec!["b", "c"]
        );
        *s.get_mut(c).unwrap() = "C";
        assert_eq!(s.get(c), Some(&"C"));
    }
}
