//! Resuming an actor: may this process write as the actor its predecessor
//! stopped cleanly with?
//!
//! Every process draws a fresh actor, so a key written after each restart
//! gains one version-vector entry per restart, and in a cluster nothing
//! takes those entries away again. Resuming the previous actor avoids that,
//! but a version vector entry "actor X up to n" claims every write of X up
//! to n: a process may go on as X only if its disk holds every write X ever
//! made, and nobody else goes on as X. Hence:
//!
//! - **Only after a clean stop.** The stop flushes everything and records
//!   X's last counter (`storage/meta.rs`); the next start takes the record
//!   away before anything else. After a crash, a power loss (writes only
//!   handed to the OS may be gone) or a snapshot taken while running, there
//!   is no record, and the process keeps its fresh actor.
//! - **Only the run after the last one.** A backup taken while stopped, or
//!   a copy of the directory, carries a record too, and the disk it holds
//!   may predate writes X made in later runs, or be started twice. The
//!   other members can tell: each start raises the node's member version
//!   (`after`) from the one its disk saved (`before`), and gossip carries
//!   it. The process asks every other member (after fetching the member
//!   list they know): "I am the run after version `before`; may I be?" A
//!   member that knows the node grants unless it knows a newer version of
//!   it (announced, or claimed of it: a member that lags has no evidence
//!   against), records the grant durably before answering, and from then
//!   on refuses every other claim from `before`. More than half of the
//!   others must grant; otherwise (refusals, members unreachable, a cluster
//!   of one) the process keeps its fresh actor, which is always safe.
//!
//! Why that suffices: the runs that wrote as X are exactly the runs that
//! resumed it, each granted by more than half of the members it asked. Two
//! copies of one directory ask the same members, so at most one wins. A
//! backup restored after a later run asks the members of the cluster as it
//! is now, which include every member the later run asked (members are
//! never dropped, only replaced at their address), so some of the later
//! run's granters are asked, provided the later run asked at least half of
//! today's members; they refuse. Were the cluster to have more than doubled
//! since, the members added meanwhile must have heard of the later run by
//! gossip for the restore to be refused.
//!
//! This module holds the rules: [`Claims`], what a member has granted, and
//! [`tally`], the claimant's verdict. `Membership` sends and answers the
//! messages.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::version::NodeId;

/// A request to resume: the run after version `before`, announcing itself
/// as version `after`, told apart from other claimants by `token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub before: u64,
    pub after: u64,
    pub token: u64,
}

/// The claims a member has granted, by claimant: the last one each.
#[derive(Debug, Default)]
pub struct Claims {
    granted: HashMap<NodeId, Claim>,
}

impl Claims {
    /// Decides `claim` from `member`, whose newest announced version this
    /// member knows is `seen` (0: not a member it knows, refused). Grants
    /// the same claim again, and a claim from a version at least as new as
    /// any it knows of the member, announced or claimed; records a grant.
    pub fn decide(&mut self, member: NodeId, seen: u64, claim: Claim) -> bool {
        let granted = self.granted.get(&member);
        if granted == Some(&claim) {
            return true;
        }
        let newest = seen.max(granted.map_or(0, |g| g.after));
        if seen == 0 || claim.before == 0 || claim.after <= claim.before || newest > claim.before {
            return false;
        }
        self.granted.insert(member, claim);
        true
    }

    /// The grants, encoded for keeping in `meta`.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.granted.len() * 32);
        for (id, c) in &self.granted {
            out.put_u64_le(id.0);
            out.put_u64_le(c.before);
            out.put_u64_le(c.after);
            out.put_u64_le(c.token);
        }
        out.freeze()
    }

    /// Reads what [`encode`](Self::encode) wrote; `None` if it is not that.
    #[must_use]
    pub fn decode(mut bytes: Bytes) -> Option<Self> {
        if bytes.len() % 32 != 0 {
            return None;
        }
        let mut granted = HashMap::new();
        while bytes.has_remaining() {
            let id = NodeId(bytes.get_u64_le());
            let claim = Claim { before: bytes.get_u64_le(), after: bytes.get_u64_le(), token: bytes.get_u64_le() };
            granted.insert(id, claim);
        }
        Some(Self { granted })
    }
}

/// The claimant's verdict with `others` other members of which `grants`
/// granted and `refusals` refused: `Some(true)` once more than half
/// granted, `Some(false)` once that can no longer happen, else `None`.
#[must_use]
pub fn tally(others: usize, grants: usize, refusals: usize) -> Option<bool> {
    if 2 * grants > others {
        Some(true)
    } else if 2 * (others - refusals.min(others)) <= others {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: NodeId = NodeId(7);

    fn claim(before: u64, after: u64, token: u64) -> Claim {
        Claim { before, after, token }
    }

    #[test]
    fn only_the_run_after_the_newest_known_version_is_granted() {
        let mut claims = Claims::default();
        assert!(!claims.decide(N, 5, claim(4, 9, 1)), "a backup from before version 5");
        assert!(!claims.decide(N, 5, claim(5, 5, 1)), "after must rise");
        assert!(claims.decide(N, 5, claim(5, 9, 1)));
        assert!(claims.decide(N, 5, claim(5, 9, 1)), "the same claim again (a retry)");
        assert!(!claims.decide(N, 5, claim(5, 9, 2)), "a copy started from the same disk");
        assert!(!claims.decide(N, 5, claim(5, 11, 3)), "a copy started from the same disk");
        // The granted run stops cleanly as version 9 and starts again.
        assert!(claims.decide(N, 9, claim(9, 12, 4)));
        // A backup taken at version 5 restored now.
        assert!(!claims.decide(N, 9, claim(5, 13, 5)));
        // Gossip already brought the newer version: it counts as much.
        assert!(!claims.decide(N, 14, claim(12, 15, 6)));
        assert!(claims.decide(N, 14, claim(14, 15, 6)));
        // A member that lags (it missed versions 15 to 20) has no evidence
        // against the run after 20, and grants it once.
        assert!(claims.decide(N, 14, claim(20, 22, 7)));
        assert!(!claims.decide(N, 14, claim(20, 23, 8)), "a copy of that run");
        assert!(!Claims::default().decide(N, 0, claim(4, 9, 1)), "not a member this one knows");
    }

    #[test]
    fn grants_survive_a_restart_of_the_member() {
        let mut claims = Claims::default();
        assert!(claims.decide(N, 5, claim(5, 9, 1)));
        assert!(claims.decide(NodeId(8), 3, claim(3, 4, 2)));
        let mut again = Claims::decode(claims.encode()).expect("decodes");
        assert!(!again.decide(N, 5, claim(5, 10, 3)), "still refuses a second claimant");
        assert!(again.decide(N, 5, claim(5, 9, 1)));
        assert!(Claims::decode(Bytes::from_static(b"short")).is_none());
    }

    #[test]
    fn more_than_half_of_the_others_must_grant() {
        assert_eq!(tally(0, 0, 0), Some(false), "a cluster of one has nobody to ask");
        assert_eq!(tally(1, 1, 0), Some(true));
        assert_eq!(tally(1, 0, 1), Some(false));
        assert_eq!(tally(2, 1, 0), None);
        assert_eq!(tally(2, 1, 1), Some(false));
        assert_eq!(tally(2, 2, 0), Some(true));
        assert_eq!(tally(4, 2, 0), None);
        assert_eq!(tally(4, 3, 0), Some(true));
        assert_eq!(tally(4, 2, 2), Some(false));
        // Two claimants can never both win: each member grants one.
        for others in 1..10 {
            for a in 0..=others {
                let b = others - a;
                assert!(!(tally(others, a, b) == Some(true) && tally(others, b, a) == Some(true)));
            }
        }
    }
}
