//! Counting replies towards a quorum. Pure.
//!
//! A request goes to one target per slot of a key's placement and needs
//! successes from enough of them in each of the key's replica sets: the
//! current one and, during a ring change, the one after it (a slot may be
//! in both; see `View::target_indices` for why this is enough), and at
//! least `primaries` from the key's current replicas themselves (not
//! fallbacks standing in for them, nor nodes gaining the partition:
//! Riak's PW and PR). The tracker says as soon as the quorum is reached,
//! or as soon as it no longer can be (too many failures), so the
//! coordinator answers then and lets stragglers finish in the background.

use std::ops::Add;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Reached,
    Impossible,
}

/// What a request needs: answers from `current` targets of the key's
/// current replica set, from `next` of the set after the ring change in
/// progress (0 when none is), and from `primaries` current replicas
/// themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub current: usize,
    pub next: usize,
    pub primaries: usize,
}

impl Need {
    fn counts(self) -> [usize; 3] {
        [self.current, self.next, self.primaries]
    }
}

/// Where a target's answer counts, by its slot: in the current replica
/// set, in the next one, and whether the target is a current replica
/// itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub current: bool,
    pub next: bool,
    pub primary: bool,
}

/// Answers counted per set, in the shape of a [`Need`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub current: usize,
    pub next: usize,
    pub primaries: usize,
}

impl Tally {
    /// Counts one answer from `slot`.
    pub fn count(&mut self, slot: Slot) {
        self.current += usize::from(slot.current);
        self.next += usize::from(slot.next);
        self.primaries += usize::from(slot.primary);
    }

    /// True if these answers meet `need`.
    #[must_use]
    pub fn meets(&self, need: Need) -> bool {
        self.current >= need.current && self.next >= need.next && self.primaries >= need.primaries
    }

    /// True if no target is counted (every slot is in one set at least).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.current == 0 && self.next == 0
    }

    /// The first set of `need` these answers fall short of (the current
    /// set, the next, the primaries), as (needed, got); `None` if they
    /// meet it.
    #[must_use]
    pub fn short_of(&self, need: Need) -> Option<(usize, usize)> {
        self.short_set(need).map(|set| (need.counts()[set], self.counts()[set]))
    }

    /// Which set [`short_of`](Self::short_of) reports, as an index into
    /// [`counts`](Self::counts).
    fn short_set(&self, need: Need) -> Option<usize> {
        let (got, needed) = (self.counts(), need.counts());
        (0..3).find(|&set| got[set] < needed[set])
    }

    fn counts(&self) -> [usize; 3] {
        [self.current, self.next, self.primaries]
    }
}

impl Add for Tally {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            current: self.current + other.current,
            next: self.next + other.next,
            primaries: self.primaries + other.primaries,
        }
    }
}

/// A request's replies: the successes, the failures, and the targets in
/// all, per set.
#[derive(Clone, Debug)]
pub struct Quorum {
    need: Need,
    total: Tally,
    ok: Tally,
    failed: Tally,
}

impl Quorum {
    /// `need` of the targets whose slots are `slots`.
    #[must_use]
    pub fn new(need: Need, slots: impl IntoIterator<Item = Slot>) -> Self {
        let mut total = Tally::default();
        for slot in slots {
            total.count(slot);
        }
        Self { need, total, ok: Tally::default(), failed: Tally::default() }
    }

    /// Counts one reply, a success or a failure, from the target of `slot`.
    pub fn record(&mut self, ok: bool, slot: Slot) -> Status {
        let counts = if ok { &mut self.ok } else { &mut self.failed };
        counts.count(slot);
        self.status()
    }

    /// The successes still possible: every target that has not failed.
    fn possible(&self) -> Tally {
        let left = |total: usize, failed: usize| total - failed.min(total);
        Tally {
            current: left(self.total.current, self.failed.current),
            next: left(self.total.next, self.failed.next),
            primaries: left(self.total.primaries, self.failed.primaries),
        }
    }

    /// What fell short, for NOQUORUM: (needed, got) of the first set that
    /// can no longer make it, or else of the first one not reached.
    #[must_use]
    pub fn short(&self) -> (usize, usize) {
        let set = self.possible().short_set(self.need).or_else(|| self.ok.short_set(self.need)).unwrap_or(0);
        (self.need.counts()[set], self.ok.counts()[set])
    }

    #[must_use]
    pub fn status(&self) -> Status {
        if self.ok.meets(self.need) {
            Status::Reached
        } else if !self.possible().meets(self.need) {
            Status::Impossible
        } else {
            Status::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A replica of the current set only (outside a change, every slot).
    const REPLICA: Slot = Slot { current: true, next: false, primary: true };
    const FALLBACK: Slot = Slot { current: true, next: false, primary: false };

    fn need(current: usize, primaries: usize) -> Need {
        Need { current, next: 0, primaries }
    }

    #[test]
    fn reached_and_impossible_as_soon_as_known() {
        let mut q = Quorum::new(need(2, 0), [REPLICA; 3]);
        assert_eq!(q.status(), Status::Pending);
        assert_eq!(q.record(false, REPLICA), Status::Pending);
        assert_eq!(q.record(true, REPLICA), Status::Pending);
        assert_eq!(q.record(true, REPLICA), Status::Reached);
        let mut q = Quorum::new(need(2, 0), [REPLICA; 3]);
        assert_eq!(q.record(false, REPLICA), Status::Pending);
        assert_eq!(q.record(false, REPLICA), Status::Impossible);
        assert_eq!(Quorum::new(need(2, 0), [REPLICA]).status(), Status::Impossible, "fewer replicas than needed");
    }

    #[test]
    fn fallbacks_count_towards_the_quorum_but_not_towards_primaries() {
        // Two targets, one a fallback; both must answer, one a replica.
        let mut q = Quorum::new(need(2, 1), [REPLICA, FALLBACK]);
        assert_eq!(q.record(true, FALLBACK), Status::Pending);
        assert_eq!(q.record(true, REPLICA), Status::Reached);
        // Two fallbacks answering cannot make a primary quorum.
        let mut q = Quorum::new(need(1, 1), [REPLICA, FALLBACK, FALLBACK]);
        assert_eq!(q.record(true, FALLBACK), Status::Pending, "a fallback alone is not enough");
        assert_eq!(q.record(false, REPLICA), Status::Impossible, "the only replica failed");
        assert_eq!(q.short(), (1, 0), "what fell short is the replicas");
        let mut q = Quorum::new(need(1, 0), [REPLICA, FALLBACK]);
        assert_eq!(q.record(false, REPLICA), Status::Pending);
        assert_eq!(q.record(false, FALLBACK), Status::Impossible);
        assert_eq!(q.short(), (1, 0));
    }

    #[test]
    fn during_a_change_each_set_needs_its_own_quorum() {
        // A cluster of two growing to three: replicas A and B stay, C
        // gains the partition. W = 2 of {A, B} and 2 of {A, B, C}.
        let both = Slot { current: true, next: true, primary: true };
        let gaining = Slot { current: false, next: true, primary: false };
        let two = Need { current: 2, next: 2, primaries: 0 };
        let mut q = Quorum::new(two, [both, both, gaining]);
        assert_eq!(q.record(false, gaining), Status::Pending, "the gaining node is not needed");
        assert_eq!(q.record(true, both), Status::Pending);
        assert_eq!(q.record(true, both), Status::Reached);
        // Shrinking three to two: C leaves. 2 of {A, B, C}, 2 of {A, B}.
        let leaving = Slot { current: true, next: false, primary: true };
        let mut q = Quorum::new(two, [both, both, leaving]);
        assert_eq!(q.record(true, leaving), Status::Pending);
        assert_eq!(q.record(true, both), Status::Pending, "2 of the current set, 1 of the next");
        assert_eq!(q.record(false, both), Status::Impossible);
        assert_eq!(q.short(), (2, 1), "what fell short is the next set");
    }

    proptest! {
        #[test]
        fn verdict_matches_counting(
            needed in 0usize..6,
            needed_next in 0usize..4,
            needed_primary in 0usize..4,
            replies in prop::collection::vec((any::<bool>(), any::<(bool, bool, bool)>()), 0..8),
        ) {
            // Every slot is in one set at least; a primary is a current one.
            let slot = |(current, next, primary): (bool, bool, bool)| {
                Slot { current: current || !next, next, primary: primary && (current || !next) }
            };
            let slots: Vec<Slot> = replies.iter().map(|&(_, s)| slot(s)).collect();
            let need = Need { current: needed, next: needed_next, primaries: needed_primary };
            let mut q = Quorum::new(need, slots.iter().copied());
            let total = |f: fn(&Slot) -> bool| slots.iter().filter(|s| f(s)).count();
            let totals = [total(|s| s.current), total(|s| s.next), total(|s| s.primary)];
            let (mut ok, mut failed) = ([0; 3], [0; 3]);
            for (r, s) in replies {
                let s = slot(s);
                let status = q.record(r, s);
                let counts = if r { &mut ok } else { &mut failed };
                for (set, member) in [s.current, s.next, s.primary].into_iter().enumerate() {
                    counts[set] += usize::from(member);
                }
                let needs = [needed, needed_next, needed_primary];
                let expect = if (0..3).all(|i| ok[i] >= needs[i]) {
                    Status::Reached
                } else if (0..3).any(|i| totals[i] - failed[i] < needs[i]) {
                    Status::Impossible
                } else {
                    Status::Pending
                };
                prop_assert_eq!(status, expect);
                if expect != Status::Reached {
                    let (n, got) = q.short();
                    let set = (0..3).find(|&i| needs[i] == n && ok[i] == got && ok[i] < needs[i]);
                    prop_assert!(set.is_some(), "short {:?} names a set not reached", (n, got));
                }
            }
        }
    }
}
