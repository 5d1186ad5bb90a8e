//! Counting replies towards a quorum. Pure.
//!
//! A request goes to `total` targets and needs `needed` successes, of which
//! at least `needed_primary` from a key's own replicas (not fallbacks
//! standing in for them: Riak's PW and PR). The tracker says as soon as
//! the quorum is reached, or as soon as it no longer can be (too many
//! failures), so the coordinator answers then and lets stragglers finish in
//! the background.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Reached,
    Impossible,
}

/// What a request needs: answers from `all` targets, of them at least
/// `primaries` from the key's replicas themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub all: usize,
    pub primaries: usize,
}

impl Need {
    /// `all` targets, whichever they are.
    #[must_use]
    pub fn any(all: usize) -> Self {
        Self { all, primaries: 0 }
    }
}

/// Successes needed and possible, and those so far.
#[derive(Clone, Copy, Debug, Default)]
struct Count {
    needed: usize,
    total: usize,
    ok: usize,
    failed: usize,
}

impl Count {
    fn reached(&self) -> bool {
        self.ok >= self.needed
    }

    fn impossible(&self) -> bool {
        self.total - self.failed.min(self.total) < self.needed
    }
}

#[derive(Clone, Debug)]
pub struct Quorum {
    all: Count,
    primaries: Count,
}

impl Quorum {
    /// `needed` of `total` targets, `needed_primary` of the `primaries`
    /// among them replicas themselves.
    #[must_use]
    pub fn new(needed: usize, total: usize, needed_primary: usize, primaries: usize) -> Self {
        Self {
            all: Count { needed, total, ..Count::default() },
            primaries: Count { needed: needed_primary, total: primaries, ..Count::default() },
        }
    }

    /// Counts one reply: a success or a failure, from a replica itself
    /// (`primary`) or a fallback.
    pub fn record(&mut self, ok: bool, primary: bool) -> Status {
        let counts: &mut [&mut Count] =
            if primary { &mut [&mut self.all, &mut self.primaries] } else { &mut [&mut self.all] };
        for c in counts {
            if ok {
                c.ok += 1;
            } else {
                c.failed += 1;
            }
        }
        self.status()
    }

    /// What fell short, for NOQUORUM: (needed, got) of all targets, or of
    /// replicas themselves when only those fell short.
    #[must_use]
    pub fn short(&self) -> (usize, usize) {
        let primaries = self.primaries.impossible() || (self.all.reached() && !self.primaries.reached());
        let c = if primaries { &self.primaries } else { &self.all };
        (c.needed, c.ok)
    }

    #[must_use]
    pub fn status(&self) -> Status {
        if self.all.reached() && self.primaries.reached() {
            Status::Reached
        } else if self.all.impossible() || self.primaries.impossible() {
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

    #[test]
    fn reached_and_impossible_as_soon_as_known() {
        let mut q = Quorum::new(2, 3, 0, 3);
        assert_eq!(q.status(), Status::Pending);
        assert_eq!(q.record(false, true), Status::Pending);
        assert_eq!(q.record(true, true), Status::Pending);
        assert_eq!(q.record(true, true), Status::Reached);
        let mut q = Quorum::new(2, 3, 0, 3);
        assert_eq!(q.record(false, true), Status::Pending);
        assert_eq!(q.record(false, true), Status::Impossible);
        assert_eq!(Quorum::new(2, 1, 0, 1).status(), Status::Impossible, "fewer replicas than needed");
    }

    #[test]
    fn fallbacks_count_towards_the_quorum_but_not_towards_primaries() {
        // Two targets, one a fallback; both must answer, one a replica.
        let mut q = Quorum::new(2, 2, 1, 1);
        assert_eq!(q.record(true, false), Status::Pending);
        assert_eq!(q.record(true, true), Status::Reached);
        // Two fallbacks answering cannot make a primary quorum.
        let mut q = Quorum::new(1, 3, 1, 1);
        assert_eq!(q.record(true, false), Status::Pending, "a fallback alone is not enough");
        assert_eq!(q.record(false, true), Status::Impossible, "the only replica failed");
        assert_eq!(q.short(), (1, 0), "what fell short is the replicas");
        let mut q = Quorum::new(1, 2, 0, 2);
        assert_eq!(q.record(false, true), Status::Pending);
        assert_eq!(q.record(false, false), Status::Impossible);
        assert_eq!(q.short(), (1, 0));
    }

    proptest! {
        #[test]
        fn verdict_matches_counting(
            needed in 1usize..6,
            needed_primary in 0usize..4,
            replies in prop::collection::vec((any::<bool>(), any::<bool>()), 0..8),
        ) {
            let total = replies.len();
            let primaries = replies.iter().filter(|(_, p)| *p).count();
            let mut q = Quorum::new(needed, total, needed_primary, primaries);
            let (mut ok, mut failed, mut pok, mut pfailed) = (0, 0, 0, 0);
            for (r, primary) in replies {
                let status = q.record(r, primary);
                if r { ok += 1 } else { failed += 1 }
                if primary { if r { pok += 1 } else { pfailed += 1 } }
                let expect = if ok >= needed && pok >= needed_primary {
                    Status::Reached
                } else if total - failed < needed || primaries - pfailed < needed_primary {
                    Status::Impossible
                } else {
                    Status::Pending
                };
                prop_assert_eq!(status, expect);
            }
        }
    }
}
