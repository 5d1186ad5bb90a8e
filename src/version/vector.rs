//! Node ids, dots and version vectors: the vocabulary of causality.
//!
//! A [`Dot`] names one write: the node that coordinated it and that node's
//! counter. Counters come from the node's persistent dot counter, so a node
//! never issues the same dot twice, whatever happens to the key.
//! A [`VersionVector`] summarises a set of dots: for every node, the largest
//! counter seen. It is kept sorted by node and holds no zero entries.

use std::fmt;

/// A node's identity, created with its data directory and never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// One write: `(node, counter)`. Dots order by node, then counter; that order
/// only breaks ties deterministically, it says nothing about causality.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Dot {
    pub node: NodeId,
    pub counter: u64,
}

impl Dot {
    #[must_use]
    pub fn new(node: NodeId, counter: u64) -> Self {
        Self { node, counter }
    }
}

/// For every node, the largest counter seen; sorted by node, no zeros.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct VersionVector {
    entries: Vec<(NodeId, u64)>,
}

impl VersionVector {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a vector from entries in any order; duplicates keep the largest
    /// counter and zero counters are dropped.
    #[must_use]
    pub fn from_entries(entries: impl IntoIterator<Item = (NodeId, u64)>) -> Self {
        let mut vv = Self::new();
        for (node, counter) in entries {
            vv.raise(node, counter);
        }
        vv
    }

    /// The largest counter seen from `node` (0 when none).
    #[must_use]
    pub fn get(&self, node: NodeId) -> u64 {
        self.position(node).map_or(0, |i| self.entries[i].1)
    }

    /// True if the write named by `dot` is part of this history.
    #[must_use]
    pub fn covers(&self, dot: Dot) -> bool {
        dot.counter <= self.get(dot.node)
    }

    /// Raises `node`'s entry to at least `counter`.
    pub fn raise(&mut self, node: NodeId, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.entries.binary_search_by_key(&node, |e| e.0) {
            Ok(i) => self.entries[i].1 = self.entries[i].1.max(counter),
            Err(i) => self.entries.insert(i, (node, counter)),
        }
    }

    /// Adds one dot to the history.
    pub fn add(&mut self, dot: Dot) {
        self.raise(dot.node, dot.counter);
    }

    /// Pointwise maximum: the union of two histories.
    pub fn merge(&mut self, other: &Self) {
        for &(node, counter) in &other.entries {
            self.raise(node, counter);
        }
    }

    /// True if every dot `other` covers is covered here.
    #[must_use]
    pub fn dominates(&self, other: &Self) -> bool {
        other.entries.iter().all(|&(n, c)| self.get(n) >= c)
    }

    /// The entries, sorted by node.
    #[must_use]
    pub fn entries(&self) -> &[(NodeId, u64)] {
        &self.entries
    }

    /// Index of `node` in [`entries`](Self::entries).
    #[must_use]
    pub fn position(&self, node: NodeId) -> Option<usize> {
        self.entries.binary_search_by_key(&node, |e| e.0).ok()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);

    #[test]
    fn raise_keeps_sorted_maximum_and_skips_zero() {
        let mut vv = VersionVector::new();
        vv.raise(B, 3);
        vv.raise(A, 5);
        vv.raise(B, 1);
        vv.raise(NodeId(9), 0);
        assert_eq!(vv.entries(), &[(A, 5), (B, 3)]);
        assert!(vv.covers(Dot::new(A, 5)));
        assert!(!vv.covers(Dot::new(A, 6)));
        assert!(!vv.covers(Dot::new(NodeId(9), 1)));
    }

    #[test]
    fn merge_is_pointwise_max() {
        let mut a = VersionVector::from_entries([(A, 2), (B, 7)]);
        let b = VersionVector::from_entries([(A, 4), (NodeId(3), 1)]);
        a.merge(&b);
        assert_eq!(a.entries(), &[(A, 4), (B, 7), (NodeId(3), 1)]);
        assert!(a.dominates(&b));
        assert!(!b.dominates(&a));
    }
}
