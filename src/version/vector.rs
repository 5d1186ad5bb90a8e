//! Node ids, actors, dots and version vectors: the vocabulary of causality.
//!
//! A [`Dot`] names one write: the [`Actor`] that coordinated it and that
//! actor's counter. An actor is one run of a node process: a node takes a
//! new random actor id every time it starts, and counts its writes in
//! memory from there. So no dot is ever issued twice, whatever the node's
//! disk holds: a restart from a backup, a rolled-back snapshot or two
//! processes started from copies of one data directory all write under
//! actors of their own (Riak met the alternative as its "kv679" bug).
//! A [`VersionVector`] summarises a set of dots: for every actor, the
//! largest counter seen. It is kept sorted by actor and holds no zero
//! entries.

use std::fmt;

/// A node's identity in the cluster, created with its data directory and
/// never reused.
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

/// Who issues dots: one run of a node process, under a random id drawn when
/// the process starts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Actor(pub u64);

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// One write: `(actor, counter)`. Dots order by actor, then counter; that
/// order only breaks ties deterministically, it says nothing about
/// causality.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Dot {
    pub actor: Actor,
    pub counter: u64,
}

impl Dot {
    #[must_use]
    pub fn new(actor: Actor, counter: u64) -> Self {
        Self { actor, counter }
    }
}

/// For every actor, the largest counter seen; sorted by actor, no zeros.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct VersionVector {
    entries: Entries,
}

/// A vector's entries: one kept in place (a key written by one actor, as on
/// a single node, needs no allocation), more in a `Vec`.
#[derive(Debug)]
enum Entries {
    One(Option<(Actor, u64)>),
    Many(Vec<(Actor, u64)>),
}

impl Default for Entries {
    fn default() -> Self {
        Self::One(None)
    }
}

/// A copy keeps a single entry in place, however the original held it.
impl Clone for Entries {
    fn clone(&self) -> Self {
        match self.as_slice() {
            [] => Self::One(None),
            [one] => Self::One(Some(*one)),
            many => Self::Many(many.to_vec()),
        }
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Entries {}

impl Entries {
    fn with_capacity(n: usize) -> Self {
        if n <= 1 { Self::One(None) } else { Self::Many(Vec::with_capacity(n)) }
    }

    fn as_slice(&self) -> &[(Actor, u64)] {
        match self {
            Self::One(e) => e.as_slice(),
            Self::Many(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(Actor, u64)] {
        match self {
            Self::One(e) => e.as_mut_slice(),
            Self::Many(v) => v,
        }
    }

    fn insert(&mut self, at: usize, entry: (Actor, u64)) {
        match self {
            Self::One(None) => *self = Self::One(Some(entry)),
            Self::One(Some(e)) => {
                let mut v = Vec::with_capacity(4);
                v.push(*e);
                v.insert(at, entry);
                *self = Self::Many(v);
            }
            Self::Many(v) => v.insert(at, entry),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&(Actor, u64)) -> bool) {
        match self {
            Self::One(e) => {
                if e.as_ref().is_some_and(|e| !keep(e)) {
                    *e = None;
                }
            }
            Self::Many(v) => v.retain(keep),
        }
    }
}

impl VersionVector {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a vector from entries in any order; duplicates keep the largest
    /// counter and zero counters are dropped.
    #[must_use]
    pub fn from_entries(entries: impl IntoIterator<Item = (Actor, u64)>) -> Self {
        let mut vv = Self::new();
        for (actor, counter) in entries {
            vv.raise(actor, counter);
        }
        vv
    }

    /// The largest counter seen from `actor` (0 when none).
    #[must_use]
    pub fn get(&self, actor: Actor) -> u64 {
        self.position(actor).map_or(0, |i| self.entries()[i].1)
    }

    /// True if the write named by `dot` is part of this history.
    #[must_use]
    pub fn covers(&self, dot: Dot) -> bool {
        dot.counter <= self.get(dot.actor)
    }

    /// Raises `actor`'s entry to at least `counter`.
    pub fn raise(&mut self, actor: Actor, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.entries.as_slice().binary_search_by_key(&actor, |e| e.0) {
            Ok(i) => {
                let e = &mut self.entries.as_mut_slice()[i];
                e.1 = e.1.max(counter);
            }
            Err(i) => self.entries.insert(i, (actor, counter)),
        }
    }

    /// Adds one dot to the history.
    pub fn add(&mut self, dot: Dot) {
        self.raise(dot.actor, dot.counter);
    }

    /// This history plus one dot, made in one allocation.
    #[must_use]
    pub fn plus(&self, dot: Dot) -> Self {
        let mut vv = if self.position(dot.actor).is_some() {
            self.clone()
        } else {
            let mut entries = Entries::with_capacity(self.len() + 1);
            for (i, &e) in self.entries().iter().enumerate() {
                entries.insert(i, e);
            }
            Self { entries }
        };
        vv.add(dot);
        vv
    }

    /// Pointwise maximum: the union of two histories.
    pub fn merge(&mut self, other: &Self) {
        for &(actor, counter) in other.entries() {
            self.raise(actor, counter);
        }
    }

    /// Keeps only the entries of the actors `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(Actor) -> bool) {
        self.entries.retain(|&(actor, _)| keep(actor));
    }

    /// True if every dot `other` covers is covered here.
    #[must_use]
    pub fn dominates(&self, other: &Self) -> bool {
        other.entries().iter().all(|&(n, c)| self.get(n) >= c)
    }

    /// The entries, sorted by actor.
    #[must_use]
    pub fn entries(&self) -> &[(Actor, u64)] {
        self.entries.as_slice()
    }

    /// Index of `actor` in [`entries`](Self::entries).
    #[must_use]
    pub fn position(&self, actor: Actor) -> Option<usize> {
        self.entries().binary_search_by_key(&actor, |e| e.0).ok()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Actor = Actor(1);
    const B: Actor = Actor(2);

    #[test]
    fn one_entry_or_many_the_vector_behaves_the_same() {
        let one = VersionVector::from_entries([(A, 1)]);
        assert_eq!(one.plus(Dot::new(A, 2)).entries(), &[(A, 2)]);
        let two = one.plus(Dot::new(B, 1));
        assert_eq!(two.entries(), &[(A, 1), (B, 1)]);
        let mut back = two.clone();
        back.retain(|a| a == B);
        assert_eq!(back, VersionVector::from_entries([(B, 1)]), "a vector of one equals another of one");
        assert_eq!(back.clone().entries(), &[(B, 1)]);
        back.retain(|_| false);
        assert!(back.is_empty());
        assert_eq!(back, VersionVector::new());
        assert_eq!(VersionVector::new().plus(Dot::new(A, 3)).entries(), &[(A, 3)]);
        let mut three = two.plus(Dot::new(Actor(0), 9));
        assert_eq!(three.entries(), &[(Actor(0), 9), (A, 1), (B, 1)]);
        three.raise(B, 4);
        assert_eq!(three.get(B), 4);
    }

    #[test]
    fn raise_keeps_sorted_maximum_and_skips_zero() {
        let mut vv = VersionVector::new();
        vv.raise(B, 3);
        vv.raise(A, 5);
        vv.raise(B, 1);
        vv.raise(Actor(9), 0);
        assert_eq!(vv.entries(), &[(A, 5), (B, 3)]);
        assert!(vv.covers(Dot::new(A, 5)));
        assert!(!vv.covers(Dot::new(A, 6)));
        assert!(!vv.covers(Dot::new(Actor(9), 1)));
    }

    #[test]
    fn merge_is_pointwise_max() {
        let mut a = VersionVector::from_entries([(A, 2), (B, 7)]);
        let b = VersionVector::from_entries([(A, 4), (Actor(3), 1)]);
        a.merge(&b);
        assert_eq!(a.entries(), &[(A, 4), (B, 7), (Actor(3), 1)]);
        assert!(a.dominates(&b));
        assert!(!b.dominates(&a));
    }
}
