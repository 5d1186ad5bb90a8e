//! Per-partition counts of what the data keyspace holds, kept in memory
//! and adjusted by every write from the object before and after it. They
//! answer DBSIZE and INFO without a scan.
//!
//! A clean stop saves them and the next start loads them (`saved.rs`);
//! after a crash each partition is counted again in the background, with
//! its hash tree (see `Store::open`). Until a partition is, its counts are
//! zero and writes to it leave them alone (the scan will count what they
//! wrote), so DBSIZE and INFO keyspace are partial for that while.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use crate::version::Object;

/// What one object contributes to the counts.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Objects whose winner holds a value: keys, as DBSIZE counts them
    /// (like Redis, a key that expired but is not yet reclaimed counts).
    pub keys: i64,
    /// Keys whose winner has an expiry.
    pub expires: i64,
    /// Objects whose winner is a tombstone: deleted keys awaiting reaping.
    pub tombstones: i64,
    /// Objects holding more than one sibling.
    pub with_siblings: i64,
    /// Bytes of the values held (every sibling's), without keys and
    /// versions: what a transfer of the partition roughly moves.
    pub value_bytes: i64,
}

impl Tally {
    #[must_use]
    pub fn of(object: Option<&Object>) -> Self {
        let Some(o) = object else { return Self::default() };
        let Some(w) = o.winner() else { return Self::default() };
        let live = w.value.is_some();
        Self {
            keys: i64::from(live),
            expires: i64::from(live && w.expires_at.is_some()),
            tombstones: i64::from(!live),
            with_siblings: i64::from(o.siblings().len() > 1),
            value_bytes: o.siblings().iter().map(|s| s.value.as_ref().map_or(0, |v| v.len() as i64)).sum(),
        }
    }

    pub(super) fn add(&mut self, other: Self) {
        self.keys += other.keys;
        self.expires += other.expires;
        self.tombstones += other.tombstones;
        self.with_siblings += other.with_siblings;
        self.value_bytes += other.value_bytes;
    }
}

#[derive(Default)]
struct Cell {
    keys: AtomicI64,
    expires: AtomicI64,
    tombstones: AtomicI64,
    with_siblings: AtomicI64,
    value_bytes: AtomicI64,
}

pub(super) struct Stats {
    partitions: Vec<Cell>,
    max_siblings: AtomicUsize,
}

impl Stats {
    pub(super) fn new(partitions: u32) -> Self {
        Self { partitions: (0..partitions).map(|_| Cell::default()).collect(), max_siblings: AtomicUsize::new(0) }
    }

    /// Records the change of one object in partition `p`.
    pub(super) fn record(&self, p: u32, before: Option<&Object>, after: Option<&Object>) {
        let (b, a) = (Tally::of(before), Tally::of(after));
        let cell = &self.partitions[p as usize];
        for (counter, delta) in [
            (&cell.keys, a.keys - b.keys),
            (&cell.expires, a.expires - b.expires),
            (&cell.tombstones, a.tombstones - b.tombstones),
            (&cell.with_siblings, a.with_siblings - b.with_siblings),
            (&cell.value_bytes, a.value_bytes - b.value_bytes),
        ] {
            if delta != 0 {
                counter.fetch_add(delta, Ordering::Relaxed);
            }
        }
        if let Some(o) = after {
            self.saw_siblings(o.siblings().len());
        }
    }

    /// Sets partition `p`'s counts: what a scan of it found, or what a
    /// clean stop saved.
    pub(super) fn set(&self, p: u32, tally: Tally) {
        let cell = &self.partitions[p as usize];
        cell.keys.store(tally.keys, Ordering::Relaxed);
        cell.expires.store(tally.expires, Ordering::Relaxed);
        cell.tombstones.store(tally.tombstones, Ordering::Relaxed);
        cell.with_siblings.store(tally.with_siblings, Ordering::Relaxed);
        cell.value_bytes.store(tally.value_bytes, Ordering::Relaxed);
    }

    /// Some object held `siblings` siblings.
    pub(super) fn saw_siblings(&self, siblings: usize) {
        self.max_siblings.fetch_max(siblings, Ordering::Relaxed);
    }

    pub(super) fn reset(&self) {
        for cell in &self.partitions {
            for counter in [&cell.keys, &cell.expires, &cell.tombstones, &cell.with_siblings, &cell.value_bytes] {
                counter.store(0, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn partition(&self, p: u32) -> Tally {
        let cell = &self.partitions[p as usize];
        Tally {
            keys: cell.keys.load(Ordering::Relaxed),
            expires: cell.expires.load(Ordering::Relaxed),
            tombstones: cell.tombstones.load(Ordering::Relaxed),
            with_siblings: cell.with_siblings.load(Ordering::Relaxed),
            value_bytes: cell.value_bytes.load(Ordering::Relaxed),
        }
    }

    pub(super) fn total(&self) -> Tally {
        let mut t = Tally::default();
        for p in 0..self.partitions.len() {
            t.add(self.partition(p as u32));
        }
        t
    }

    pub(super) fn max_siblings(&self) -> usize {
        self.max_siblings.load(Ordering::Relaxed)
    }
}
