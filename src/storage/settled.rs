//! What anti-entropy has shown every replica holds: the evidence that
//! lets a node remove a tombstone (or a fully expired object) without a
//! replica that missed the delete bringing the value back.
//!
//! Per partition, the last *settled round*: the moment `start` a round of
//! exchanges began in which this node compared the partition with every
//! other replica, and the leaves in which no key had to be repaired on
//! either side. For such a leaf, every replica held what this node held at
//! `start` (or had removed it, or never held anything of the key: see
//! `antientropy::exchange`), and versions only grow, so an object this node
//! already held dead at `start` is dead on every replica and no replica
//! holds an older value it superseded.
//!
//! "Already held at `start`" is where care is needed: a dead object that
//! arrives late (a repair or a hint, past its own removal time) may not
//! have been in the leaf that was compared. Such an arrival clears the
//! leaf's bit ([`Settled::arrived_late`]), in the current round too, so
//! only a later round can settle it. A fresh delete is never late (it is
//! removable only a grace period after it was written), so client traffic
//! does not clear anything.
//!
//! Nothing here is saved: after a restart every tombstone waits for the
//! next settled round, which only delays removal.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::antientropy::tree::LEAVES;

const WORDS: usize = LEAVES / 64;

/// One partition's evidence.
#[derive(Clone, Copy, Default)]
struct Round {
    /// When the last settled round began (ms); 0: never.
    start: u64,
    /// The leaves that round settled, less those a late arrival cleared.
    leaves: [u64; WORDS],
    /// Leaves a late arrival touched since the current round began.
    late: [u64; WORDS],
}

/// A set of leaves of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leaves([u64; WORDS]);

impl Leaves {
    /// Every leaf.
    #[must_use]
    pub fn all() -> Self {
        Self([u64::MAX; WORDS])
    }

    pub fn remove(&mut self, leaf: usize) {
        self.0[leaf / 64] &= !(1 << (leaf % 64));
    }

    #[must_use]
    pub fn contains(&self, leaf: usize) -> bool {
        self.0[leaf / 64] & (1 << (leaf % 64)) != 0
    }
}

pub(super) struct Settled {
    rounds: Vec<Mutex<Round>>,
}

impl Settled {
    pub fn new(partitions: u32) -> Self {
        Self { rounds: (0..partitions).map(|_| Mutex::new(Round::default())).collect() }
    }

    fn round(&self, p: u32) -> Option<MutexGuard<'_, Round>> {
        Some(self.rounds.get(p as usize)?.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A round of exchanges of partition `p` begins.
    pub fn begin(&self, p: u32) {
        if let Some(mut r) = self.round(p) {
            r.late = [0; WORDS];
        }
    }

    /// The round of partition `p` that began at `start` compared it with
    /// every other replica, and `leaves` needed no repair.
    pub fn settle(&self, p: u32, start: u64, leaves: Leaves) {
        if let Some(mut r) = self.round(p) {
            r.start = start;
            let late = r.late;
            for (w, (l, late)) in r.leaves.iter_mut().zip(leaves.0.iter().zip(late)) {
                *w = l & !late;
            }
        }
    }

    /// A dead object past its removal time arrived in `leaf` of `p`.
    pub fn arrived_late(&self, p: u32, leaf: usize) {
        if let Some(mut r) = self.round(p) {
            r.leaves[leaf / 64] &= !(1 << (leaf % 64));
            r.late[leaf / 64] |= 1 << (leaf % 64);
        }
    }

    /// Whether an object of `leaf` of `p`, dead and removable at
    /// `removable_at` by its own clock, is held by every replica: a round
    /// that began no earlier settled its leaf.
    pub fn allows(&self, p: u32, leaf: usize, removable_at: u64) -> bool {
        self.round(p).is_some_and(|r| r.start != 0 && r.start >= removable_at && Leaves(r.leaves).contains(leaf))
    }

    /// Forgets everything (FLUSHALL).
    pub fn clear(&self) {
        for r in &self.rounds {
            *r.lock().unwrap_or_else(PoisonError::into_inner) = Round::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_leaf_allows_what_was_removable_when_its_round_began() {
        let s = Settled::new(4);
        assert!(!s.allows(1, 7, 100), "never settled");
        s.begin(1);
        let mut leaves = Leaves::all();
        leaves.remove(8);
        s.settle(1, 1_000, leaves);
        assert!(s.allows(1, 7, 1_000));
        assert!(!s.allows(1, 7, 1_001), "removable only after the round began");
        assert!(!s.allows(1, 8, 100), "a leaf repaired in the round");
        assert!(!s.allows(2, 7, 100), "another partition");
        assert!(!s.allows(99, 7, 100), "not a partition");
    }

    #[test]
    fn a_late_arrival_unsettles_its_leaf_until_a_later_round() {
        let s = Settled::new(2);
        s.begin(0);
        s.settle(0, 1_000, Leaves::all());
        s.arrived_late(0, 3);
        assert!(!s.allows(0, 3, 10));
        assert!(s.allows(0, 4, 10));
        // Late during a round: that round does not settle it either.
        s.begin(0);
        s.arrived_late(0, 5);
        s.settle(0, 2_000, Leaves::all());
        assert!(!s.allows(0, 5, 10));
        assert!(s.allows(0, 3, 10), "the new round settled it");
        s.begin(0);
        s.settle(0, 3_000, Leaves::all());
        assert!(s.allows(0, 5, 10));
        s.clear();
        assert!(!s.allows(0, 5, 10));
    }
}
