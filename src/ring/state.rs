//! The ring as cluster state: who owns each partition, stored, versioned
//! by an epoch and spread by gossip. Pure: no I/O, no clock.
//!
//! Ownership changes only by an explicit decision (a join, a leave, a
//! removal), never because a member is down. Decisions are made by one
//! member at a time, the *claimant* (the lowest-id owner believed up, as
//! Riak's), which writes each new state with the next epoch and its own id.
//! Every node keeps the state with the highest [`stamp`](RingState::stamp):
//! more changes ended wins (so the end of a change is never undone by a
//! state still in the middle of it, however many epochs that one counted
//! on the other side of a network partition), then a higher epoch, and of
//! two states with the same epoch (two nodes that both believed themselves
//! claimant) the one written by the lower id, so two claimants never both
//! win and every node converges on the same ring. A claimant decides only
//! while it sees a majority of the members up ([`RingState::majority_up`]),
//! so the two sides of a network partition do not both change the ring.
//!
//! A change goes through three steps:
//! 1. **Staged**: a join, leave or removal is recorded and shown by the
//!    plan; nothing moves.
//! 2. **Committed**: the claimant works out the owners the change leads
//!    to (`next`, by [`claim::rebalance`]); every partition whose replica
//!    set gains a node is transferred to it from a current replica (the
//!    [`Move`]s). Reads still use `owners`; writes go to the current
//!    replicas and to the gaining ones, and count only the current ones.
//! 3. **Done**: once every move is reported done, the claimant makes
//!    `next` the owners in a new epoch. Former replicas drop their copies
//!    later.
//!
//! One change is in progress at a time; changes committed meanwhile wait
//! for it to end.

use super::transfer::{self, Move};
use super::{Ring, claim};
use crate::version::NodeId;

/// What orders rings: (changes ended, epoch, how low the claimant's id is).
pub type Stamp = (u64, u64, u64);

/// What a staged change does to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    /// A new node takes its share of partitions.
    Join,
    /// A member hands everything over, then stops being a member.
    Leave,
    /// A member gone for good: its partitions are rebuilt on their new
    /// owners from the surviving replicas.
    Remove,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Remove => "remove",
        })
    }
}

/// A change waiting to be committed (or, once `commit`, to start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staged {
    pub node: NodeId,
    pub change: Change,
    /// Committed: it starts as soon as no other change is in progress.
    pub commit: bool,
}

/// The ring as every member keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingState {
    /// Changes ended so far.
    pub generation: u64,
    /// Raised by every decision.
    pub epoch: u64,
    /// The member that wrote this epoch.
    pub claimant: NodeId,
    /// Each partition's owner: reads and write quorums use these.
    /// Empty while this node has not learned the ring yet.
    pub owners: Vec<NodeId>,
    /// While a change is in progress, the owners it leads to; else empty.
    pub next: Vec<NodeId>,
    /// The epoch that committed the change in progress (0 if none).
    pub change: u64,
    /// The epoch that last wrote `next` (the commit, or a plan made again
    /// after a removal): a node copies what it gains only once every
    /// member up holds this epoch, so every write reaches it meanwhile.
    pub planned: u64,
    /// The moves of the change in progress reported done, as
    /// (partition, node), sorted.
    pub done: Vec<(u32, NodeId)>,
    /// Changes staged, in the order they were staged.
    pub staged: Vec<Staged>,
    /// Members the change in progress removes (gone for good: they are out
    /// of the member table from the commit on, so nothing waits for them).
    pub removing: Vec<NodeId>,
}

/// What a change does, for operators and for the transfers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The owners before and after.
    pub before: Ring,
    pub after: Ring,
    /// Every partition a node gains, with where it comes from.
    pub moves: Vec<Move>,
    /// The most replicas any key's replica set loses at once.
    pub max_lost: usize,
    /// Partitions whose owner changes.
    pub owners_changed: usize,
}

impl Plan {
    /// Partitions (as replica sets) `node` gains and loses.
    #[must_use]
    pub fn gains_and_losses(&self, node: NodeId, n: usize) -> (usize, usize) {
        let q = self.before.partition_count();
        let gains = self.moves.iter().filter(|m| m.to == node).count();
        let losses = (0..q)
            .filter(|&p| self.before.replicas(p, n).contains(&node) && !self.after.replicas(p, n).contains(&node))
            .count();
        (gains, losses)
    }
}

impl RingState {
    /// The state of a node that has not learned its cluster's ring yet:
    /// older than any other.
    #[must_use]
    pub fn unknown() -> Self {
        Self {
            generation: 0,
            epoch: 0,
            claimant: NodeId(u64::MAX),
            owners: Vec::new(),
            next: Vec::new(),
            change: 0,
            planned: 0,
            done: Vec::new(),
            staged: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// The ring of a new cluster of one.
    #[must_use]
    pub fn first(me: NodeId, q: u32) -> Self {
        Self { epoch: 1, claimant: me, owners: claim::initial(&[me], q), ..Self::unknown() }
    }

    /// The ring a cluster made by a build that did not keep one had: the
    /// round robin of its members. Epoch 0, so any decision replaces it.
    #[must_use]
    pub fn legacy(members: &[NodeId], q: u32) -> Self {
        let lowest = members.iter().copied().min().unwrap_or(NodeId(u64::MAX));
        Self { epoch: 0, claimant: lowest, owners: claim::initial(members, q), ..Self::unknown() }
    }

    /// What orders two states: the higher wins.
    #[must_use]
    pub fn stamp(&self) -> Stamp {
        (self.generation, self.epoch, u64::MAX - self.claimant.0)
    }

    /// True once this node knows its cluster's ring.
    #[must_use]
    pub fn is_known(&self) -> bool {
        !self.owners.is_empty()
    }

    /// True while a change is in progress.
    #[must_use]
    pub fn in_progress(&self) -> bool {
        !self.next.is_empty()
    }

    /// The current ring. Only for a known state.
    #[must_use]
    pub fn ring(&self) -> Ring {
        Ring::from_owners(self.owners.clone())
    }

    /// The ring the change in progress leads to.
    #[must_use]
    pub fn next_ring(&self) -> Option<Ring> {
        self.in_progress().then(|| Ring::from_owners(self.next.clone()))
    }

    /// Every node that owns a partition now or after the change in
    /// progress, sorted.
    #[must_use]
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.owners.iter().chain(&self.next).copied().collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// How many nodes own partitions now.
    #[must_use]
    pub fn ring_members(&self) -> usize {
        let mut owners = self.owners.clone();
        owners.sort_unstable();
        owners.dedup();
        owners.len()
    }

    /// True if `node` owns a partition now.
    #[must_use]
    pub fn owns(&self, node: NodeId) -> bool {
        self.owners.contains(&node)
    }

    /// The staged change of `node`, if any.
    #[must_use]
    pub fn staged_for(&self, node: NodeId) -> Option<Staged> {
        self.staged.iter().copied().find(|s| s.node == node)
    }

    /// The claimant: the lowest-id owner that `up` says is up and is not
    /// staged to leave or be removed (a leaving claimant could hand the
    /// role to nobody). `None` if no owner qualifies.
    #[must_use]
    pub fn claimant_among(&self, up: impl Fn(NodeId) -> bool) -> Option<NodeId> {
        let mut owners = self.owners.clone();
        owners.sort_unstable();
        owners.dedup();
        let staying = |id: NodeId| self.staged_for(id).is_none_or(|s| s.change == Change::Join);
        let leaving_in_change = |id: NodeId| self.in_progress() && !self.next.contains(&id);
        owners.iter().copied().find(|&id| up(id) && staying(id) && !leaving_in_change(id)).or_else(|| {
            // Everyone is leaving: the lowest that is up still decides.
            owners.into_iter().find(|&id| up(id))
        })
    }

    /// The members a decision needs a majority of: every owner but those
    /// staged for removal or being removed (gone for good, as an operator
    /// said: otherwise a cluster of two could never remove a dead member).
    #[must_use]
    pub fn voters(&self) -> Vec<NodeId> {
        let removed = |id: &NodeId| {
            self.removing.contains(id) || self.staged_for(*id).is_some_and(|s| s.change == Change::Remove)
        };
        let mut owners: Vec<NodeId> = self.owners.iter().copied().filter(|id| !removed(id)).collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// True if more than half of the [`voters`](Self::voters) are up, as
    /// `up` says: only then may a claimant decide. Two sides of a network
    /// partition cannot both have a majority, so they cannot both change
    /// the ring (unless an operator removes, on each side, members that
    /// are only cut off: a removal is the operator's word that a member is
    /// gone for good).
    #[must_use]
    pub fn majority_up(&self, up: impl Fn(NodeId) -> bool) -> bool {
        let voters = self.voters();
        voters.iter().filter(|&&id| up(id)).count() * 2 > voters.len()
    }

    /// The moves of the change in progress, for a cluster of replication
    /// factor `n`.
    #[must_use]
    pub fn moves(&self, n: usize) -> Vec<Move> {
        match self.next_ring() {
            Some(next) => transfer::moves(&self.ring(), &next, n),
            None => Vec::new(),
        }
    }

    /// True if the move of partition `p` to `node` is reported done.
    #[must_use]
    pub fn is_done(&self, p: u32, node: NodeId) -> bool {
        self.done.binary_search(&(p, node)).is_ok()
    }

    /// A new epoch written by `me`.
    fn decided(&self, me: NodeId) -> Self {
        Self { epoch: self.epoch + 1, claimant: me, ..self.clone() }
    }

    /// Stages `change` for `node`, decided by `me`. `commit`: apply it
    /// without waiting for a commit.
    ///
    /// # Errors
    /// A change that cannot be made, in words for the operator.
    pub fn stage(&self, me: NodeId, node: NodeId, change: Change, commit: bool) -> Result<Self, String> {
        if !self.is_known() {
            return Err("this node does not know the cluster's ring yet".into());
        }
        let member = self.members().contains(&node);
        match change {
            Change::Join if member => return Err(format!("{node} is already a member")),
            Change::Leave | Change::Remove if !member => return Err(format!("{node} is not a member")),
            _ => {}
        }
        if let Some(s) = self.staged_for(node) {
            if s.change == change {
                if commit && !s.commit {
                    let mut next = self.decided(me);
                    next.staged.iter_mut().filter(|s| s.node == node).for_each(|s| s.commit = true);
                    return Ok(next);
                }
                return Ok(self.clone());
            }
            return Err(format!("{node} already has a {} staged; SHOAL.PLAN CLEAR takes it back", s.change));
        }
        if change != Change::Join {
            let staying = self
                .members()
                .into_iter()
                .filter(|&id| id != node && self.staged_for(id).is_none_or(|s| s.change == Change::Join));
            if staying.count() == 0 {
                return Err("the last member cannot leave or be removed".into());
            }
        }
        let mut next = self.decided(me);
        next.staged.push(Staged { node, change, commit });
        Ok(next)
    }

    /// Commits every staged change.
    ///
    /// # Errors
    /// Nothing is staged.
    pub fn commit(&self, me: NodeId) -> Result<Self, String> {
        if self.staged.iter().all(|s| s.commit) {
            return Err("nothing is staged to commit".into());
        }
        let mut next = self.decided(me);
        next.staged.iter_mut().for_each(|s| s.commit = true);
        Ok(next)
    }

    /// Takes back the staged changes not committed yet.
    ///
    /// # Errors
    /// Nothing uncommitted is staged.
    pub fn clear(&self, me: NodeId) -> Result<Self, String> {
        if self.staged.iter().all(|s| s.commit) {
            return Err("nothing uncommitted is staged".into());
        }
        let mut next = self.decided(me);
        next.staged.retain(|s| s.commit);
        Ok(next)
    }

    /// Records that `node` holds partition `p` for the change that began at
    /// epoch `change`; `None` if that is not news (or not a move of the
    /// change in progress).
    #[must_use]
    pub fn mark_done(&self, me: NodeId, change: u64, p: u32, node: NodeId, n: usize) -> Option<Self> {
        if change != self.change || !self.in_progress() || self.is_done(p, node) {
            return None;
        }
        let is_move = self.moves(n).iter().any(|m| m.partition == p && m.to == node);
        if !is_move {
            return None;
        }
        let mut next = self.decided(me);
        if let Err(at) = next.done.binary_search(&(p, node)) {
            next.done.insert(at, (p, node));
        }
        Some(next)
    }

    /// The owners the changes in `staged` lead to.
    fn rebalanced(&self, staged: &[Staged], n: usize) -> Vec<NodeId> {
        let joining: Vec<NodeId> = staged.iter().filter(|s| s.change == Change::Join).map(|s| s.node).collect();
        let leaving: Vec<NodeId> = staged.iter().filter(|s| s.change != Change::Join).map(|s| s.node).collect();
        claim::rebalance(&self.owners, &joining, &leaving, n)
    }

    /// What the claimant does next on its own, if anything: end the change
    /// in progress once every move is done, or start the committed
    /// changes when none is in progress. A change with nothing to move
    /// ends at once.
    #[must_use]
    pub fn step(&self, me: NodeId, n: usize) -> Option<Self> {
        if self.in_progress() {
            // A committed removal of a node the change counts on (one that
            // gains partitions, or keeps them) cannot wait for the change
            // to end: a dead node never reports its copies done. The
            // change goes on without it: its target is planned again and
            // the copies already done that still count stay done.
            let removals: Vec<Staged> = self
                .staged
                .iter()
                .copied()
                .filter(|s| s.commit && s.change == Change::Remove && self.next.contains(&s.node))
                .collect();
            if !removals.is_empty() {
                let gone: Vec<NodeId> = removals.iter().map(|s| s.node).collect();
                let mut next = self.decided(me);
                next.staged.retain(|s| !removals.contains(s));
                next.next = claim::rebalance(&self.next, &[], &gone, n);
                next.planned = next.epoch;
                next.removing.extend(gone);
                let moves = next.moves(n);
                next.done.retain(|&(p, node)| moves.iter().any(|m| m.partition == p && m.to == node));
                return Some(next);
            }
            let moves = self.moves(n);
            if moves.iter().all(|m| self.is_done(m.partition, m.to)) {
                let mut next = self.decided(me);
                next.owners = std::mem::take(&mut next.next);
                next.generation += 1;
                next.change = 0;
                next.planned = 0;
                next.done.clear();
                next.removing.clear();
                return Some(next);
            }
            return None;
        }
        let committed: Vec<Staged> = self.staged.iter().copied().filter(|s| s.commit).collect();
        if committed.is_empty() || !self.is_known() {
            return None;
        }
        let mut next = self.decided(me);
        next.staged.retain(|s| !s.commit);
        next.next = self.rebalanced(&committed, n);
        next.change = next.epoch;
        next.planned = next.epoch;
        next.done.clear();
        next.removing = committed.iter().filter(|s| s.change == Change::Remove).map(|s| s.node).collect();
        if next.moves(n).is_empty() {
            // Nothing to transfer: the change ends in the same decision.
            next.owners = std::mem::take(&mut next.next);
            next.generation += 1;
            next.change = 0;
            next.planned = 0;
            next.removing.clear();
        }
        Some(next)
    }

    /// What the change in progress does, or else what committing the
    /// staged changes would do; `None` if there is neither.
    #[must_use]
    pub fn plan(&self, n: usize) -> Option<Plan> {
        if !self.is_known() {
            return None;
        }
        let after = match self.next_ring() {
            Some(next) => next,
            None if self.staged.is_empty() => return None,
            None => Ring::from_owners(self.rebalanced(&self.staged, n)),
        };
        let before = self.ring();
        let moves = transfer::moves(&before, &after, n);
        let max_lost = transfer::max_lost(&before, &after, n);
        let owners_changed = before.owners().iter().zip(after.owners()).filter(|(a, b)| a != b).count();
        Some(Plan { before, after, moves, max_lost, owners_changed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: u32 = 64;
    const N: usize = 3;

    fn id(i: u64) -> NodeId {
        NodeId(i)
    }

    /// Runs the claimant until the change ends, marking every move done.
    fn settle(mut s: RingState, me: NodeId) -> RingState {
        while let Some(next) = s.step(me, N) {
            s = next;
            for m in s.moves(N) {
                s = s.mark_done(me, s.change, m.partition, m.to, N).unwrap_or(s);
            }
        }
        s
    }

    #[test]
    fn a_newer_epoch_wins_and_of_equal_epochs_the_lower_claimant() {
        let a = RingState::first(id(1), Q);
        let b = a.stage(id(1), id(2), Change::Join, false).expect("stage");
        assert!(b.stamp() > a.stamp());
        // Two claimants decide epoch 2 each: the lower id's wins, everywhere.
        let c = a.stage(id(5), id(3), Change::Join, false).expect("stage");
        assert_eq!(b.epoch, c.epoch);
        assert!(b.stamp() > c.stamp(), "claimant 1 beats claimant 5 at the same epoch");
        assert!(RingState::unknown().stamp() < RingState::legacy(&[id(9)], Q).stamp());
        assert!(RingState::legacy(&[id(9)], Q).stamp() < a.stamp());
        // A ring that ended a change beats one still in it, whatever its
        // epoch: the other side of a partition may have counted more.
        let mut ended = settle(b.commit(id(1)).expect("commit"), id(1));
        ended.epoch = 3;
        let mut busy = b.commit(id(5)).expect("commit").step(id(5), N).expect("starts");
        busy.epoch = 1000;
        assert!(ended.stamp() > busy.stamp());
    }

    #[test]
    fn a_join_moves_only_after_every_transfer_is_done() {
        let mut s = RingState::first(id(1), Q);
        s = s.stage(id(1), id(2), Change::Join, false).expect("stage");
        assert_eq!(s.step(id(1), N), None, "staged, not committed: nothing happens");
        let plan = s.plan(N).expect("a plan");
        assert_eq!(plan.after.owned_by(id(2)), (Q / 2) as usize);
        s = s.commit(id(1)).expect("commit");
        s = s.step(id(1), N).expect("the change starts");
        assert!(s.in_progress());
        assert_eq!(s.owners, vec![id(1); Q as usize], "reads stay on the old owners");
        let moves = s.moves(N);
        assert_eq!(moves.len(), Q as usize, "N=3 over two nodes: node 2 gains every partition");
        for m in &moves[..moves.len() - 1] {
            s = s.mark_done(id(1), s.change, m.partition, m.to, N).expect("news");
        }
        assert_eq!(s.step(id(1), N), None, "one move left");
        let last = moves.last().expect("a move");
        assert_eq!(s.mark_done(id(1), s.change + 1, last.partition, last.to, N), None, "another change's report");
        s = s.mark_done(id(1), s.change, last.partition, last.to, N).expect("news");
        assert_eq!(s.mark_done(id(1), s.change, last.partition, last.to, N), None, "reported twice");
        s = s.step(id(1), N).expect("the change ends");
        assert!(!s.in_progress());
        assert_eq!(s.ring().owned_by(id(2)), (Q / 2) as usize);
        assert!(s.staged.is_empty() && s.done.is_empty());
    }

    #[test]
    fn refusals_say_why() {
        let s = RingState::first(id(1), Q);
        assert!(RingState::unknown().stage(id(1), id(2), Change::Join, true).is_err());
        assert_eq!(s.stage(id(1), id(1), Change::Join, true), Err(format!("{} is already a member", id(1))));
        assert_eq!(s.stage(id(1), id(7), Change::Leave, true), Err(format!("{} is not a member", id(7))));
        assert_eq!(
            s.stage(id(1), id(1), Change::Leave, true),
            Err("the last member cannot leave or be removed".into())
        );
        assert!(s.commit(id(1)).is_err());
        let staged = s.stage(id(1), id(2), Change::Join, false).expect("stage");
        assert_eq!(staged.stage(id(1), id(2), Change::Join, false), Ok(staged.clone()), "staging again is no change");
        let cleared = staged.clear(id(1)).expect("clear");
        assert!(cleared.staged.is_empty());
    }

    #[test]
    fn grow_then_shrink_and_remove() {
        let mut s = RingState::first(id(1), Q);
        for joiner in [2, 3, 4] {
            s = settle(s.stage(id(1), id(joiner), Change::Join, true).expect("stage"), id(1));
        }
        assert_eq!(s.members(), vec![id(1), id(2), id(3), id(4)]);
        s = settle(s.stage(id(1), id(2), Change::Leave, true).expect("stage"), id(1));
        assert_eq!(s.members(), vec![id(1), id(3), id(4)]);
        s = settle(s.stage(id(1), id(4), Change::Remove, true).expect("stage"), id(1));
        assert_eq!(s.members(), vec![id(1), id(3)]);
        for m in s.members() {
            let owned = s.ring().owned_by(m);
            assert_eq!(owned, (Q / 2) as usize, "{m} owns {owned}");
        }
    }

    #[test]
    fn removing_a_node_the_change_counts_on_plans_the_change_again() {
        let mut s = RingState::first(id(1), Q);
        s = settle(s.stage(id(1), id(2), Change::Join, true).expect("stage"), id(1));
        s = s.stage(id(1), id(3), Change::Join, true).expect("stage");
        s = s.step(id(1), N).expect("the join starts");
        let change = s.change;
        // Node 3 dies before it copied anything; node 1 did its part.
        let mine: Vec<Move> = s.moves(N).into_iter().filter(|m| m.to != id(3)).collect();
        for m in &mine {
            s = s.mark_done(id(1), change, m.partition, m.to, N).unwrap_or(s);
        }
        s = s.stage(id(1), id(3), Change::Remove, true).expect("stage");
        s = s.step(id(1), N).expect("planned again without node 3");
        assert_eq!(s.change, change, "the same change goes on");
        assert_eq!(s.planned, s.epoch, "planned again now");
        assert!(!s.next.contains(&id(3)) && s.removing == vec![id(3)]);
        assert!(s.moves(N).iter().all(|m| m.to != id(3)));
        let s = settle(s, id(1));
        assert_eq!(s.members(), vec![id(1), id(2)]);
        assert!(s.staged.is_empty() && s.removing.is_empty());
    }

    #[test]
    fn the_claimant_is_the_lowest_owner_up_and_staying() {
        let mut s = RingState::first(id(3), Q);
        s = settle(s.stage(id(3), id(5), Change::Join, true).expect("stage"), id(3));
        s = settle(s.stage(id(3), id(1), Change::Join, true).expect("stage"), id(3));
        assert_eq!(s.claimant_among(|_| true), Some(id(1)));
        assert_eq!(s.claimant_among(|n| n != id(1)), Some(id(3)));
        let leaving = s.stage(id(1), id(1), Change::Leave, false).expect("stage");
        assert_eq!(leaving.claimant_among(|_| true), Some(id(3)));
    }

    /// Decisions need more than half of the owners up, those being removed
    /// aside: of two sides of a partition at most one has that.
    #[test]
    fn a_majority_of_the_owners_staying_must_be_up() {
        let mut s = RingState::first(id(1), Q);
        assert!(s.majority_up(|_| true), "a node alone decides");
        for joiner in [2, 3, 4] {
            s = settle(s.stage(id(1), id(joiner), Change::Join, true).expect("stage"), id(1));
        }
        assert_eq!(s.voters(), vec![id(1), id(2), id(3), id(4)]);
        let side = |ids: &'static [u64]| move |n: NodeId| ids.contains(&n.0);
        assert!(s.majority_up(side(&[1, 2, 3])));
        assert!(!s.majority_up(side(&[1, 2])) && !s.majority_up(side(&[3, 4])), "2 of 4 is not a majority");
        // Removing the dead is the operator's word that they are gone: they
        // no longer count, whether staged or in the change.
        let removing = s.stage(id(3), id(1), Change::Remove, false).expect("stage");
        assert_eq!(removing.voters(), vec![id(2), id(3), id(4)]);
        assert!(removing.majority_up(side(&[3, 4])));
        let s = settle(removing.commit(id(3)).expect("commit"), id(3));
        assert_eq!(s.voters(), vec![id(2), id(3), id(4)]);
        // A cluster of two with one dead can remove it.
        let mut two = RingState::first(id(1), Q);
        two = settle(two.stage(id(1), id(2), Change::Join, true).expect("stage"), id(1));
        assert!(!two.majority_up(side(&[1])));
        assert!(two.stage(id(1), id(2), Change::Remove, true).expect("stage").majority_up(side(&[1])));
    }
}
