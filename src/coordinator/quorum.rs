//! Counting replies towards a quorum. Pure.
//!
//! A request goes to `total` replicas and needs `needed` successes. The
//! tracker says as soon as the quorum is reached, or as soon as it no
//! longer can be (too many failures), so the coordinator answers then and
//! lets stragglers finish in the background.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Reached,
    Impossible,
}

#[derive(Clone, Debug)]
pub struct Quorum {
    needed: usize,
    total: usize,
    ok: usize,
    failed: usize,
}

impl Quorum {
    #[must_use]
    pub fn new(needed: usize, total: usize) -> Self {
        Self { needed, total, ok: 0, failed: 0 }
    }

    pub fn success(&mut self) -> Status {
        self.ok += 1;
        self.status()
    }

    pub fn failure(&mut self) -> Status {
        self.failed += 1;
        self.status()
    }

    #[must_use]
    pub fn status(&self) -> Status {
        if self.ok >= self.needed {
            Status::Reached
        } else if self.total - self.failed.min(self.total) < self.needed {
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
        let mut q = Quorum::new(2, 3);
        assert_eq!(q.status(), Status::Pending);
        assert_eq!(q.failure(), Status::Pending);
        assert_eq!(q.success(), Status::Pending);
        assert_eq!(q.success(), Status::Reached);
        let mut q = Quorum::new(2, 3);
        assert_eq!(q.failure(), Status::Pending);
        assert_eq!(q.failure(), Status::Impossible);
        assert_eq!(Quorum::new(2, 1).status(), Status::Impossible, "fewer replicas than needed");
    }

    proptest! {
        #[test]
        fn verdict_matches_counting(needed in 1usize..6, replies in prop::collection::vec(any::<bool>(), 0..8)) {
            let total = replies.len();
            let mut q = Quorum::new(needed, total);
            let (mut ok, mut failed) = (0, 0);
            for r in replies {
                let status = if r { ok += 1; q.success() } else { failed += 1; q.failure() };
                let expect = if ok >= needed { Status::Reached } else if total - failed < needed { Status::Impossible } else { Status::Pending };
                prop_assert_eq!(status, expect);
            }
        }
    }
}
