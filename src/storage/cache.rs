//! A bounded cache of decoded objects, in shards: each shard holds keys of
//! one storage worker's partitions (the store keeps 16 shards per worker,
//! so client threads rarely wait on each other's lock).
//!
//! The owning worker is a shard's only writer and updates it after each
//! batch is durable, so every cached object (or cached absence) is the key's current,
//! durable state. Client threads read it under a short lock: a hit answers a
//! read without waking the worker or touching the LSM tree.
//!
//! Eviction is CLOCK: every hit sets a reference bit; when the cache is over
//! its byte budget a hand sweeps the entries, clearing set bits and evicting
//! the first entry whose bit is clear.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use crate::version::Object;

/// Bookkeeping bytes charged per entry on top of key and values.
const ENTRY_OVERHEAD: usize = 128;

/// Data keys start with the key's 64-bit MD5 position, already uniformly
/// distributed: hashing them again would be wasted work.
#[derive(Default)]
pub(super) struct PositionHasher(u64);

impl Hasher for PositionHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(head) => self.0 ^= u64::from_be_bytes(*head),
            // Short writes (lengths, short keys) still mix in.
            None => {
                for &b in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(b);
                }
            }
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(5) ^ n as u64;
    }
}

pub(super) type PositionMap<V> = HashMap<Bytes, V, BuildHasherDefault<PositionHasher>>;

struct Entry {
    key: Bytes,
    object: Option<Arc<Object>>,
    size: usize,
    referenced: bool,
}

/// What a lookup found.
pub(super) enum Cached {
    /// The key is known to hold this object (or nothing).
    Hit(Option<Arc<Object>>),
    Miss,
}

pub(super) struct Cache {
    index: PositionMap<usize>,
    entries: Vec<Entry>,
    hand: usize,
    bytes: usize,
    budget: usize,
}

fn size_of(key: &[u8], object: Option<&Object>) -> usize {
    let object = object.map_or(0, |o| {
        o.vv().len() * 16 + o.siblings().iter().map(|s| 48 + s.value.as_ref().map_or(0, Bytes::len)).sum::<usize>()
    });
    ENTRY_OVERHEAD + key.len() + object
}

impl Cache {
    pub(super) fn new(budget: usize) -> Self {
        Self { index: PositionMap::default(), entries: Vec::new(), hand: 0, bytes: 0, budget }
    }

    pub(super) fn get(&mut self, key: &[u8]) -> Cached {
        match self.index.get(key) {
            Some(&i) => {
                let e = &mut self.entries[i];
                e.referenced = true;
                Cached::Hit(e.object.clone())
            }
            None => Cached::Miss,
        }
    }

    /// Records `object` (or its absence) as the key's durable state.
    pub(super) fn put(&mut self, key: Bytes, object: Option<Arc<Object>>) {
        let size = size_of(&key, object.as_deref());
        if size > self.budget {
            self.remove(&key);
            return;
        }
        match self.index.get(&key) {
            Some(&i) => {
                let e = &mut self.entries[i];
                self.bytes = self.bytes - e.size + size;
                e.object = object;
                e.size = size;
                e.referenced = true;
            }
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push(Entry { key, object, size, referenced: false });
                self.bytes += size;
            }
        }
        while self.bytes > self.budget {
            self.evict_one();
        }
    }

    pub(super) fn remove(&mut self, key: &[u8]) {
        if let Some(i) = self.index.remove(key) {
            self.remove_at(i);
        }
    }

    pub(super) fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.hand = 0;
        self.bytes = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn evict_one(&mut self) {
        loop {
            if self.hand >= self.entries.len() {
                self.hand = 0;
            }
            let e = &mut self.entries[self.hand];
            if e.referenced {
                e.referenced = false;
                self.hand += 1;
            } else {
                let key = e.key.clone();
                self.index.remove(&key);
                self.remove_at(self.hand);
                return;
            }
        }
    }

    /// Removes entry `i` (already gone from the index) by moving the last
    /// entry into its place.
    fn remove_at(&mut self, i: usize) {
        let gone = self.entries.swap_remove(i);
        self.bytes -= gone.size;
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.key.clone(), i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Bytes {
        let mut k = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes().to_vec();
        k.extend_from_slice(format!("key{i}").as_bytes());
        Bytes::from(k)
    }

    #[test]
    fn hits_misses_and_absence() {
        let mut c = Cache::new(1 << 20);
        assert!(matches!(c.get(&key(1)), Cached::Miss));
        c.put(key(1), None);
        assert!(matches!(c.get(&key(1)), Cached::Hit(None)));
        c.put(key(1), Some(Arc::new(Object::new())));
        assert!(matches!(c.get(&key(1)), Cached::Hit(Some(_))));
        c.remove(&key(1));
        assert!(matches!(c.get(&key(1)), Cached::Miss));
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn stays_within_budget_and_keeps_what_is_used() {
        let mut c = Cache::new(100 * (ENTRY_OVERHEAD + 12));
        for i in 0..1000 {
            c.put(key(i), None);
            // Key 0 is read constantly: CLOCK keeps it.
            assert!(matches!(c.get(&key(0)), Cached::Hit(None)), "{i}");
        }
        assert!(c.bytes <= c.budget);
        assert!(c.len() <= 100 && c.len() > 50, "{}", c.len());
        for (i, e) in c.entries.iter().enumerate() {
            assert_eq!(c.index.get(&e.key), Some(&i), "index agrees with entries");
        }
    }
}
