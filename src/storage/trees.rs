//! The hash tree of every partition this node holds keys of (see
//! `antientropy::tree`), kept in memory beside the data: built while the
//! store opens (in the same pass that counts the keys) and updated by
//! every change a storage worker makes, in the same place, so a tree is
//! never behind its data.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::antientropy::tree::{BRANCHES, LEAVES, Tree, key_hash, leaf_of};
use crate::ring::Partitioner;
use crate::version::Object;

pub(super) struct Trees {
    partitioner: Partitioner,
    /// By partition; none until the partition holds a key.
    trees: Vec<Mutex<Option<Box<Tree>>>>,
}

impl Trees {
    pub fn new(partitioner: Partitioner) -> Self {
        Self { partitioner, trees: (0..partitioner.count()).map(|_| Mutex::new(None)).collect() }
    }

    /// Partition `p`'s tree; `p` must be a partition (callers check what
    /// peers send).
    fn tree(&self, p: u32) -> MutexGuard<'_, Option<Box<Tree>>> {
        self.trees[p as usize].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn valid(&self, p: u32) -> bool {
        (p as usize) < self.trees.len()
    }

    /// The key at `position` went from `before` to `after`.
    pub fn change(&self, position: u64, before: Option<&Object>, after: Option<&Object>) {
        let old = before.map(|o| key_hash(position, o.digest()));
        let new = after.map(|o| key_hash(position, o.digest()));
        if old == new {
            return;
        }
        let p = self.partitioner.of(position);
        self.tree(p).get_or_insert_with(Box::default).replace(leaf_of(self.partitioner, position), old, new);
    }

    /// Forgets every tree (FLUSHALL).
    pub fn clear(&self) {
        for t in &self.trees {
            *t.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Partition `p`'s root and branches (all 0 when it holds nothing).
    pub fn branches(&self, p: u32) -> (u64, [u64; BRANCHES]) {
        if !self.valid(p) {
            return (0, [0; BRANCHES]);
        }
        self.tree(p).as_ref().map_or((0, [0; BRANCHES]), |t| (t.root(), *t.branches()))
    }

    /// The leaves of `branches` of partition `p`, one run of
    /// `LEAVES_PER_BRANCH` per branch, in order.
    pub fn leaves(&self, p: u32, branches: &[usize]) -> Vec<u64> {
        if !self.valid(p) {
            return Vec::new();
        }
        let tree = self.tree(p);
        let per = LEAVES / BRANCHES;
        branches
            .iter()
            .filter(|&&b| b < BRANCHES)
            .flat_map(|&b| match tree.as_ref() {
                Some(t) => t.leaves_of(b).to_vec(),
                None => vec![0; per],
            })
            .collect()
    }
}
