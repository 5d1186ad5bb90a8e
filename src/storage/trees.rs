//! The hash tree of every partition this node holds keys of (see
//! `antientropy::tree`), kept in memory beside the data and updated by
//! every change a storage worker makes, in the same place, so a ready tree
//! is never behind its data.
//!
//! A partition's tree is *ready* once it covers what the partition holds.
//! After a clean stop every tree is loaded ready (`saved.rs`). Otherwise
//! every partition starts not ready, and a rebuild job on the partition's
//! worker scans it, installs its tree and marks it ready (`Store::open`):
//! until then writes leave the tree alone, since the scan will see them,
//! and anti-entropy does not compare it (a partial tree would look like
//! missing keys). A partition never goes back to not ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::antientropy::tree::{BRANCHES, LEAVES, Tree, key_hash, leaf_of};
use crate::ring::Partitioner;
use crate::version::Object;

pub(super) struct Trees {
    partitioner: Partitioner,
    /// By partition; none until the partition holds a key.
    trees: Vec<Mutex<Option<Box<Tree>>>>,
    /// By partition: whether its tree (and its counts) cover what it holds.
    /// Set on the partition's worker, or while every worker is paused.
    ready: Vec<AtomicBool>,
}

impl Trees {
    /// Every partition empty and not ready.
    pub fn new(partitioner: Partitioner) -> Self {
        let q = partitioner.count() as usize;
        Self {
            partitioner,
            trees: (0..q).map(|_| Mutex::new(None)).collect(),
            ready: (0..q).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Partition `p`'s tree; `p` must be a partition (callers check what
    /// peers send).
    fn tree(&self, p: u32) -> MutexGuard<'_, Option<Box<Tree>>> {
        self.trees[p as usize].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn valid(&self, p: u32) -> bool {
        (p as usize) < self.trees.len()
    }

    /// Whether partition `p`'s tree covers what it holds (a number that is
    /// no partition holds nothing: ready).
    pub fn ready(&self, p: u32) -> bool {
        self.ready.get(p as usize).is_none_or(|r| r.load(Ordering::Acquire))
    }

    /// How many partitions are not ready.
    pub fn not_ready(&self) -> usize {
        self.ready.iter().filter(|r| !r.load(Ordering::Acquire)).count()
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

    /// Adds the key at `position`, holding `object`, to `tree`: one being
    /// built by a scan, not yet installed.
    pub fn add(&self, tree: &mut Tree, position: u64, object: &Object) {
        tree.toggle(leaf_of(self.partitioner, position), key_hash(position, object.digest()));
    }

    /// Makes `tree` partition `p`'s, and the partition ready.
    pub fn install(&self, p: u32, tree: Tree) {
        *self.tree(p) = (!tree.is_empty()).then(|| Box::new(tree));
        self.ready[p as usize].store(true, Ordering::Release);
    }

    /// Partition `p`'s tree, if it holds anything.
    pub fn get(&self, p: u32) -> Option<Tree> {
        self.tree(p).as_deref().cloned()
    }

    /// Forgets every tree: every partition holds nothing, and is ready
    /// (FLUSHALL, or before loading what a clean stop saved).
    pub fn clear(&self) {
        for (t, ready) in self.trees.iter().zip(&self.ready) {
            *t.lock().unwrap_or_else(PoisonError::into_inner) = None;
            ready.store(true, Ordering::Release);
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
