//! One partition's hash tree (a Tictac tree, after Riak's): a summary of
//! what a replica holds of the partition, which two replicas compare to
//! find the keys they differ on without listing them. Pure: no I/O, no
//! tokio.
//!
//! Each key contributes one 64-bit hash of its ring position and its
//! object's version summary ([`key_hash`]; an absent key contributes
//! nothing). Leaves are fixed segments of the partition's position range:
//! a leaf is the XOR of the hashes of its keys, a branch the XOR of its
//! leaves, the root the XOR of everything. XOR is its own inverse and does
//! not care about order, so a write updates the tree in O(1) (XOR the old
//! hash out and the new one in, [`Tree::replace`]), and two replicas
//! holding the same objects have the same tree whatever the order their
//! writes came in.
//!
//! Comparing two trees: roots first; if they differ, the branches
//! ([`Tree::differing_branches`]); then the leaves of the branches that
//! differ ([`Tree::differing_leaves`]); only the keys of the leaves that
//! differ are then listed and exchanged.

use crate::ring::Partitioner;

/// Leaves per partition (a power of two).
pub const LEAVES: usize = 1024;
/// Leaves per branch.
pub const LEAVES_PER_BRANCH: usize = 32;
/// Branches per partition.
pub const BRANCHES: usize = LEAVES / LEAVES_PER_BRANCH;

/// What one key contributes: a hash of its ring position and of its
/// object's version summary (`Object::digest`), so a key changes its
/// contribution exactly when its versions change. Never 0 in practice (0
/// would be a key that contributes nothing).
#[must_use]
pub fn key_hash(position: u64, digest: u64) -> u64 {
    let mut z = (position ^ digest.rotate_left(32)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The leaf of the key at `position` within its partition: the position's
/// bits just below the partition's.
#[must_use]
pub fn leaf_of(partitioner: Partitioner, position: u64) -> usize {
    // The partition's bits (at most 16) shifted out.
    let within = position << partitioner.count().trailing_zeros();
    (within >> (64 - LEAVES.trailing_zeros())) as usize
}

/// One partition's tree.
#[derive(Clone, PartialEq, Eq)]
pub struct Tree {
    leaves: Box<[u64; LEAVES]>,
    branches: [u64; BRANCHES],
    root: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Self { leaves: Box::new([0; LEAVES]), branches: [0; BRANCHES], root: 0 }
    }
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tree({:016x})", self.root)
    }
}

impl Tree {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Toggles `hash` in `leaf`: adds a key's contribution, or removes it
    /// if it was there.
    pub fn toggle(&mut self, leaf: usize, hash: u64) {
        self.leaves[leaf] ^= hash;
        self.branches[leaf / LEAVES_PER_BRANCH] ^= hash;
        self.root ^= hash;
    }

    /// A key of `leaf` changed from contributing `old` to `new` (`None`:
    /// absent).
    pub fn replace(&mut self, leaf: usize, old: Option<u64>, new: Option<u64>) {
        let delta = old.unwrap_or(0) ^ new.unwrap_or(0);
        if delta != 0 {
            self.toggle(leaf, delta);
        }
    }

    #[must_use]
    pub fn root(&self) -> u64 {
        self.root
    }

    #[must_use]
    pub fn branches(&self) -> &[u64; BRANCHES] {
        &self.branches
    }

    /// Every leaf, in order (what is saved of a tree; the rest follows
    /// from them).
    #[must_use]
    pub fn leaves(&self) -> &[u64; LEAVES] {
        &self.leaves
    }

    /// The tree whose leaves are `leaves`.
    #[must_use]
    pub fn from_leaves(leaves: Box<[u64; LEAVES]>) -> Self {
        let mut tree = Self { leaves, branches: [0; BRANCHES], root: 0 };
        for (leaf, &hash) in tree.leaves.iter().enumerate() {
            tree.branches[leaf / LEAVES_PER_BRANCH] ^= hash;
            tree.root ^= hash;
        }
        tree
    }

    /// The leaves of `branch`.
    #[must_use]
    pub fn leaves_of(&self, branch: usize) -> &[u64] {
        &self.leaves[branch * LEAVES_PER_BRANCH..(branch + 1) * LEAVES_PER_BRANCH]
    }

    /// The branches where `other` (another replica's branches) differs.
    #[must_use]
    pub fn differing_branches(&self, other: &[u64; BRANCHES]) -> Vec<usize> {
        (0..BRANCHES).filter(|&b| self.branches[b] != other[b]).collect()
    }

    /// The leaves of `branch` where `other` (another replica's leaves of
    /// that branch) differs, as leaf numbers.
    #[must_use]
    pub fn differing_leaves(&self, branch: usize, other: &[u64]) -> Vec<usize> {
        let mine = self.leaves_of(branch);
        (0..LEAVES_PER_BRANCH)
            .filter(|&i| other.get(i) != Some(&mine[i]))
            .map(|i| branch * LEAVES_PER_BRANCH + i)
            .collect()
    }

    /// True if no key contributes anything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.root == 0 && self.branches.iter().all(|&b| b == 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    const Q: u32 = 64;

    /// A replica's tree over `keys`: position → version digest.
    fn tree_of(keys: &BTreeMap<u64, u64>) -> Tree {
        let p = Partitioner::new(Q);
        let mut t = Tree::new();
        for (&position, &digest) in keys {
            t.toggle(leaf_of(p, position), key_hash(position, digest));
        }
        t
    }

    #[test]
    fn leaves_cut_the_partition_in_order() {
        for q in [1, 2, 64, 1 << 16] {
            let p = Partitioner::new(q);
            for part in [0, q / 2, q - 1] {
                assert_eq!(leaf_of(p, p.start(part)), 0, "q {q}");
                assert_eq!(leaf_of(p, p.end(part)), LEAVES - 1, "q {q}");
                let middle = p.start(part) + (p.end(part) - p.start(part)) / 2;
                assert_eq!(leaf_of(p, middle), LEAVES / 2 - 1, "q {q}");
            }
        }
    }

    proptest! {
        /// Two replicas holding the same objects have the same tree,
        /// whatever order their writes came in (and whatever they held and
        /// overwrote on the way).
        #[test]
        fn the_same_objects_make_the_same_tree_in_any_order(
            writes in prop::collection::vec((any::<u64>(), any::<u64>()), 1..200),
            seed in any::<u64>(),
        ) {
            let p = Partitioner::new(Q);
            // Replica one applies the writes in order; replica two in
            // another order. Both end with the last write of each position
            // in the first order, as the merge rules would.
            let mut last: BTreeMap<u64, u64> = BTreeMap::new();
            let mut one = Tree::new();
            for &(position, digest) in &writes {
                let leaf = leaf_of(p, position);
                let old = last.insert(position, digest).map(|d| key_hash(position, d));
                one.replace(leaf, old, Some(key_hash(position, digest)));
            }
            let mut order: Vec<(u64, u64)> = last.iter().map(|(&k, &v)| (k, v)).collect();
            order.sort_by_key(|&(k, _)| k.wrapping_mul(seed | 1));
            let two = tree_of(&order.into_iter().collect());
            prop_assert_eq!(&one, &two);
            prop_assert_eq!(one, tree_of(&last));
        }

        /// Any difference shows in the root, and in exactly the leaves
        /// (and branches) of the keys that differ.
        #[test]
        fn differences_show_in_the_root_and_exactly_the_leaves_that_differ(
            keys in prop::collection::btree_map(any::<u64>(), any::<u64>(), 1..300),
            changed in prop::collection::vec(any::<prop::sample::Index>(), 1..5),
            added in prop::collection::btree_map(any::<u64>(), any::<u64>(), 0..3),
        ) {
            let p = Partitioner::new(Q);
            let a = tree_of(&keys);
            let mut other = keys.clone();
            let positions: Vec<u64> = keys.keys().copied().collect();
            let mut differ: BTreeSet<usize> = BTreeSet::new();
            let changed: BTreeSet<u64> = changed.iter().map(|i| *i.get(&positions)).collect();
            for position in changed {
                *other.get_mut(&position).expect("present") ^= 1;
            }
            other.extend(added);
            // The leaves whose keys differ: each leaf's set of (position,
            // digest) compared.
            let mut by_leaf_a: BTreeMap<usize, BTreeSet<(u64, u64)>> = BTreeMap::new();
            let mut by_leaf_b: BTreeMap<usize, BTreeSet<(u64, u64)>> = BTreeMap::new();
            for (&k, &v) in &keys {
                by_leaf_a.entry(leaf_of(p, k)).or_default().insert((k, v));
            }
            for (&k, &v) in &other {
                by_leaf_b.entry(leaf_of(p, k)).or_default().insert((k, v));
            }
            for leaf in 0..LEAVES {
                if by_leaf_a.get(&leaf) != by_leaf_b.get(&leaf) {
                    differ.insert(leaf);
                }
            }
            let b = tree_of(&other);
            prop_assert!(!differ.is_empty());
            prop_assert_ne!(a.root(), b.root());
            let branches: BTreeSet<usize> = a.differing_branches(b.branches()).into_iter().collect();
            prop_assert_eq!(&branches, &differ.iter().map(|l| l / LEAVES_PER_BRANCH).collect());
            let leaves: BTreeSet<usize> =
                branches.iter().flat_map(|&br| a.differing_leaves(br, b.leaves_of(br))).collect();
            prop_assert_eq!(leaves, differ);
        }

        /// A tree rebuilt from its leaves is the same tree.
        #[test]
        fn a_tree_is_rebuilt_from_its_leaves(keys in prop::collection::btree_map(any::<u64>(), any::<u64>(), 0..100)) {
            let t = tree_of(&keys);
            prop_assert_eq!(Tree::from_leaves(Box::new(*t.leaves())), t);
        }

        /// Removing every key leaves an empty tree.
        #[test]
        fn removing_every_key_empties_the_tree(keys in prop::collection::btree_map(any::<u64>(), any::<u64>(), 0..100)) {
            let p = Partitioner::new(Q);
            let mut t = tree_of(&keys);
            for (&position, &digest) in &keys {
                t.replace(leaf_of(p, position), Some(key_hash(position, digest)), None);
            }
            prop_assert!(t.is_empty());
            prop_assert_eq!(t, Tree::new());
        }
    }
}
