//! Claim: which node owns each partition, and how that changes when nodes
//! join or leave. Pure: no I/O, no tokio, no randomness.
//!
//! A ring's owner vector is stored, versioned cluster state: it changes only
//! by an explicit decision (nodes join, leave or are removed), and every
//! change moves data, so a change should move as little as it can.
//! [`initial`] claims the ring of a cluster started from scratch;
//! [`rebalance`] turns one owner vector into the next. Every node that
//! applies the same decision to the same vector computes the same result.
//!
//! What [`rebalance`] guarantees:
//! 1. Balance: with S' members, each owns ⌊Q/S'⌋ or ⌈Q/S'⌉ partitions.
//! 2. Few moves: at most ⌊1.1 × ideal⌋ partitions change owner, where the
//!    ideal is the partitions the leavers owned plus those the joiners end
//!    up owning. The assignment phase below moves only partitions of
//!    leavers and of nodes over their share, which from a balanced ring is
//!    exactly the ideal; only the repair phase spends the other 10%.
//!
//! What it tries for, best effort (never at the cost of 1 or 2):
//! 3. Spread: every w = min(n, S') consecutive partitions (cyclically: the
//!    last partition is followed by the first) on distinct owners. Then a
//!    key's n replicas are n consecutive owners and a failed node's load
//!    falls on n - 1 different neighbours. The preference list skips
//!    repeated owners, so a violation never loses a replica; it only
//!    concentrates load. It cannot always hold: a node owning c partitions
//!    needs c·w ≤ Q positions, and with w = S' the ring must repeat one
//!    order of the members, which needs S' to divide Q. Even where a spread
//!    balanced ring exists it may be out of reach within the move budget:
//!    after a leave, each of the leaver's partitions sits between w - 1
//!    neighbours on each side, and when those are every remaining member,
//!    spreading it costs a move elsewhere. Claim then leaves the fewest
//!    repeating windows it finds greedily.
//!
//!    What holds (measured, not proved; the tests assert it): a join of a
//!    spread ring stays spread whenever a spread balanced ring exists; and
//!    for rings made by this module from one node by joins and leaves (how
//!    clusters are built: [`initial`] of one node, then one decision at a
//!    time), a single join or leave of a spread ring leaves it spread
//!    whenever S' ≥ 2n + 2, Q ≥ 8·S' and a spread balanced ring exists
//!    (measured for n ≤ 5, Q from 8 to 1024, S' ≤ 32: with Q ≥ 8·S' the
//!    failures seen were all at S' ≤ 2n - 1, with Q = 64 up to S' = 2n + 1;
//!    2n + 2 leaves a margin). The leave is the hard case: it stays spread
//!    at no extra move when the leaver's partitions can be matched to
//!    receivers outside their neighbourhoods, each taking its share. A
//!    partition has 2(w - 1) neighbours, so only S' - 2(w - 1) candidates: with S' near 2n - 2 there is little room (with S' = n
//!    none, and S' must also divide Q); and with few partitions per node
//!    (Q/S' small) a node's neighbourhoods cannot be varied enough. The
//!    round robin of several members (what [`initial`] gives them) is the
//!    worst case: every partition of a node has the same neighbours, so
//!    only S' - 2(w - 1) nodes can take a leaver's partitions without a
//!    repeat, and repairing the rest costs swaps far beyond the budget
//!    (Q = 256, n = 3, 8 nodes: 19 windows repeat after a leave). Joins
//!    therefore keep neighbourhoods varied (below); a round robin ring (in
//!    practice only a legacy one, see [`initial`]) stays hard to shrink.
//! 4. Gentle moves: changed partitions at least n apart, so that no key's
//!    replica set (n consecutive positions) loses more than one replica in
//!    one change. A single leave gets this for free when the ring is spread
//!    (a node's partitions are ≥ w apart), and a single join gets it from
//!    3, since the changed partitions are the joiner's own. The repair
//!    phase never makes a key lose more replicas than the assignment did
//!    (nor more than one where the assignment lost at most one).
//!
//! The algorithm has two phases.
//!
//! Assignment, one greedy loop in the spirit of riak_core's claim v2 (a
//! joiner takes partitions from the most loaded nodes, away from its other
//! partitions): work out each member's share; every partition of a leaver,
//! and as many of an over-share node's as it must give up, is up for grabs;
//! then, one partition at a time, give the best (partition, receiver) pair
//! to the receiver, where a receiver is a node under its share and "best"
//! is the first of these that tells two pairs apart:
//! - the receiver owns nothing within w - 1 of the partition (spread);
//! - the partition is in a window that repeats its current owner (so taking
//!   it repairs a violation);
//! - no partition within n - 1 of it has changed yet (gentle moves; within
//!   Q/m - 1 if m > Q/n partitions move, so that they spread evenly);
//! - fewest receivers could take it without a violation (so a partition
//!   with few options is not left until those options are used up);
//! - its current owner has the most left to give (most loaded first);
//! - the receiver has the most left to take (least loaded first);
//! - the nodes within w - 1 of the partition are ones the receiver is
//!   least often near already, and its owner most often (so that every
//!   node keeps varied neighbours, which a later leave needs);
//! - lowest partition, then lowest receiver id (determinism).
//!
//! Before that loop, when every node that gives gives all it owns (only
//! leaves: a leave leaves no member over its share) and those partitions
//! are at least w apart (as in a spread ring), claim looks for an exact
//! assignment: each receiver takes exactly its part, none within w - 1 of
//! a partition it owns. That is a bipartite b-matching, solved by
//! augmenting paths (partitions in ring order, each trying first the
//! receivers least often near the nodes around it, so that neighbourhoods
//! stay varied; ties to the receiver with the most left to take, then the
//! lowest id, so deterministic); if none exists the greedy loop does it
//! all.
//!
//! Repair, while some window repeats an owner: of the changes that keep
//! balance, namely swapping the owners of two partitions, or handing a
//! partition from a node owning ⌈Q/S'⌉ to one owning ⌊Q/S'⌋ (when S' does
//! not divide Q), take the one that removes the most repeating windows per
//! move it adds (counting from the original ring: a change that undoes an
//! earlier move costs less, and one that only reshuffles moved partitions
//! is free), among those that fit what is left of the budget and do not
//! make any key lose more replicas (item 4). Ties go to the change that
//! keeps changed partitions n apart, then to the lowest partition, then the
//! lowest other partition or node id. Stop when no change removes a window.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet};

use crate::version::NodeId;

/// The owners of `q` partitions for a cluster started from scratch:
/// round robin over `members` (any order, repeats ignored) in id order.
///
/// Of one member, the start of every cluster built by joins. Of several,
/// it must stay this round robin, although later leaves cannot keep it
/// spread (see the module documentation): it is also the ring a cluster
/// made by a build that kept no ring had (`RingState::legacy`), which
/// every node of it must compute alike.
///
/// # Panics
/// If `members` is empty.
#[must_use]
pub fn initial(members: &[NodeId], q: u32) -> Vec<NodeId> {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert!(!sorted.is_empty(), "a ring needs a member");
    (0..q as usize).map(|p| sorted[p % sorted.len()]).collect()
}

/// The owner vector after `joining` join and `leaving` leave the ring
/// `owners`, for a cluster of replication factor `n` (see the module
/// documentation for what it guarantees and how).
///
/// The order of `joining` and `leaving` does not matter. A joiner that
/// already owns partitions and a leaver that owns none are ignored; a node
/// named in both lists does not join.
///
/// # Panics
/// If `owners` is empty, or no member would be left.
#[must_use]
pub fn rebalance(owners: &[NodeId], joining: &[NodeId], leaving: &[NodeId], n: usize) -> Vec<NodeId> {
    assert!(!owners.is_empty(), "a ring has partitions");
    let q = owners.len();
    let owned = counts(owners);
    let leaving: BTreeSet<NodeId> = leaving.iter().copied().filter(|m| owned.contains_key(m)).collect();
    let mut members: BTreeSet<NodeId> = owned.keys().copied().filter(|m| !leaving.contains(m)).collect();
    members.extend(joining.iter().copied().filter(|m| !leaving.contains(m)));
    assert!(!members.is_empty(), "a ring needs a member");

    // What each node must give up, and what each must take.
    let shares = shares(&members, &owned, q);
    let mut give: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut take: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (&node, &count) in &owned {
        let share = shares.get(&node).copied().unwrap_or(0);
        if count > share {
            give.insert(node, count - share);
        }
    }
    for (&node, &share) in &shares {
        let count = owned.get(&node).copied().unwrap_or(0);
        if share > count {
            take.insert(node, share - count);
        }
    }
    // The move budget: 1.1 × (what the leavers own + what the joiners get).
    let leavers_own: usize = leaving.iter().map(|m| owned[m]).sum();
    let joiners_get: usize = shares.iter().filter(|(m, _)| !owned.contains_key(m)).map(|(_, &s)| s).sum();
    let budget = (leavers_own + joiners_get) * 11 / 10;

    // Changed partitions cannot all be n apart if more than Q/n change
    // (growing from fewer than n members); then spread them evenly instead.
    let moving: usize = take.values().sum();
    let mut claim = Claim {
        original: owners.to_vec(),
        owners: owners.to_vec(),
        n,
        w: n.min(members.len()).clamp(1, q),
        apart: n.min(q / moving.max(1)).max(1),
        nodes: owned.keys().chain(&members).copied().collect::<BTreeSet<_>>().into_iter().collect(),
        near_count: vec![],
    };
    claim.count_neighbours();

    // Assignment: exactly, when only whole rings of nodes are handed out
    // and every receiver can be kept out of the neighbourhoods.
    if let Some(steps) = claim.spread_matching(&owned, &give, &take) {
        for (p, to) in steps {
            let from = claim.owners[p];
            decrement(&mut give, from);
            decrement(&mut take, to);
            claim.set(p, to);
        }
    }
    // Otherwise greedily. Every step moves one partition from a node that
    // gives to one that takes, and the totals are equal, so this ends with
    // every share met.
    while let Some((p, to)) = claim.best_step(&give, &take) {
        let from = claim.owners[p];
        decrement(&mut give, from);
        decrement(&mut take, to);
        claim.set(p, to);
    }

    // Repair.
    claim.repair(budget);
    claim.owners
}

/// How many partitions each node of `owners` owns.
fn counts(owners: &[NodeId]) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for &owner in owners {
        *counts.entry(owner).or_insert(0) += 1;
    }
    counts
}

/// Each member's share of `q` partitions: ⌊q/S'⌋, plus one for the
/// q mod S' members that own the most now (so that a node never has to
/// give up a partition only to take another), lowest id first among equals.
fn shares(members: &BTreeSet<NodeId>, owned: &BTreeMap<NodeId, usize>, q: usize) -> BTreeMap<NodeId, usize> {
    let (base, extra) = (q / members.len(), q % members.len());
    let mut ranked: Vec<NodeId> = members.iter().copied().collect();
    ranked.sort_by_key(|m| (Reverse(owned.get(m).copied().unwrap_or(0)), *m));
    ranked.iter().enumerate().map(|(i, &m)| (m, base + usize::from(i < extra))).collect()
}

/// Kuhn's augmenting path for b-matching: finds `i` a receiver among
/// `options[i]` with room, or one that can make room by moving one of the
/// partitions it `held` along its own augmenting path.
fn augment(
    i: usize,
    options: &[Vec<usize>],
    receivers: &[(NodeId, usize)],
    held: &mut [Vec<usize>],
    to: &mut [usize],
    seen: &mut [bool],
) -> bool {
    for &r in &options[i] {
        if held[r].len() < receivers[r].1 {
            held[r].push(i);
            to[i] = r;
            return true;
        }
    }
    for &r in &options[i] {
        if seen[r] {
            continue;
        }
        seen[r] = true;
        for k in 0..held[r].len() {
            let other = held[r][k];
            if augment(other, options, receivers, held, to, seen) {
                held[r][k] = i;
                to[i] = r;
                return true;
            }
        }
    }
    false
}

fn decrement(map: &mut BTreeMap<NodeId, usize>, node: NodeId) {
    if let Some(left) = map.get_mut(&node) {
        *left -= 1;
        if *left == 0 {
            map.remove(&node);
        }
    }
}

/// The first `n` distinct owners walking clockwise from `p`: the replicas
/// of `p` (as [`super::Ring::replicas`] lists them).
fn replicas(owners: &[NodeId], p: usize, n: usize) -> Vec<NodeId> {
    let mut list = Vec::with_capacity(n);
    for d in 0..owners.len() {
        let owner = owners[(p + d) % owners.len()];
        if list.len() == n {
            break;
        }
        if !list.contains(&owner) {
            list.push(owner);
        }
    }
    list
}

/// The owner vector being rebalanced.
struct Claim {
    /// The owners before this rebalance.
    original: Vec<NodeId>,
    owners: Vec<NodeId>,
    /// The replication factor.
    n: usize,
    /// Windows of `w` consecutive partitions should be on distinct owners.
    w: usize,
    /// Changed partitions should be at least `apart` apart.
    apart: usize,
    /// Every node of the old ring or the new, sorted.
    nodes: Vec<NodeId>,
    /// `near_count[i][j]`: how many times `nodes[i]` owns a partition
    /// within w - 1 of one that `nodes[j]` owns (either way round).
    near_count: Vec<Vec<isize>>,
}

/// A repair: a change of owners that keeps balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Repair {
    /// The partition that changes owner (the lower one of a swap).
    p: usize,
    /// What it changes with.
    with: With,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum With {
    /// Swap owners with this partition.
    Swap(usize),
    /// Go to this node, which owns one partition fewer than the current
    /// owner.
    Hand(NodeId),
}

/// A repair with what it achieves and costs.
struct Candidate {
    repair: Repair,
    /// Repeating windows removed.
    gain: usize,
    /// Partitions moved (from the original ring) added; may be negative.
    cost: isize,
    /// Every partition it changes ends at least n from other changes.
    gentle: bool,
}

impl Candidate {
    /// The partitions the repair changes.
    fn touched(&self) -> Vec<usize> {
        match self.repair.with {
            With::Swap(b) => vec![self.repair.p, b],
            With::Hand(_) => vec![self.repair.p],
        }
    }

    /// How much the repair is worth against `other` (`Less` if more):
    /// free repairs first (most windows removed, then the cheapest), then
    /// the most windows removed per move, then the most windows removed.
    fn worth(&self, other: &Self) -> Ordering {
        let free = |c: &Self| if c.cost <= 0 { (true, c.gain, -c.cost) } else { (false, 0, 0) };
        let per_move = if self.cost > 0 && other.cost > 0 {
            // gain/cost against other.gain/other.cost, cross-multiplied.
            (other.gain as isize * self.cost).cmp(&(self.gain as isize * other.cost))
        } else {
            Ordering::Equal
        };
        free(other).cmp(&free(self)).then(per_move).then(other.gain.cmp(&self.gain))
    }

    /// The order of preference of the module documentation: worth, then
    /// gentle ones, then the lowest partitions and ids.
    fn rank(&self, other: &Self) -> Ordering {
        self.worth(other).then(other.gentle.cmp(&self.gentle)).then(self.repair.cmp(&other.repair))
    }
}

impl Claim {
    fn index(&self, node: NodeId) -> usize {
        self.nodes.binary_search(&node).unwrap_or(0)
    }

    /// Fills `near_count` from the owners.
    fn count_neighbours(&mut self) {
        let k = self.nodes.len();
        self.near_count = vec![vec![0; k]; k];
        for p in 0..self.owners.len() {
            let a = self.index(self.owners[p]);
            for d in 1..self.w {
                let b = self.index(self.owners[self.at(p, d, true)]);
                self.near_count[a][b] += 1;
                self.near_count[b][a] += 1;
            }
        }
    }

    /// Gives `p` to `to`, keeping `near_count`.
    fn set(&mut self, p: usize, to: NodeId) {
        let (from, to_i) = (self.index(self.owners[p]), self.index(to));
        for d in 1..self.w {
            for after in [true, false] {
                let b = self.index(self.owners[self.at(p, d, after)]);
                self.near_count[from][b] -= 1;
                self.near_count[b][from] -= 1;
                self.near_count[to_i][b] += 1;
                self.near_count[b][to_i] += 1;
            }
        }
        self.owners[p] = to;
    }

    /// The partitions of the givers matched to receivers so that every
    /// receiver takes exactly its part and none gets a partition within
    /// w - 1 of one it owns: a bipartite b-matching, found by augmenting
    /// paths (Kuhn's algorithm), partitions in ring order and receivers in
    /// the order of the module documentation. Only when every giver gives all it
    /// owns and the partitions given are at least w apart (so that two of
    /// them never share a window), as after leaves from a spread ring;
    /// `None` otherwise or if no such matching exists.
    fn spread_matching(
        &self,
        owned: &BTreeMap<NodeId, usize>,
        give: &BTreeMap<NodeId, usize>,
        take: &BTreeMap<NodeId, usize>,
    ) -> Option<Vec<(usize, NodeId)>> {
        if give.is_empty() || give.iter().any(|(m, &g)| owned.get(m) != Some(&g)) {
            return None;
        }
        let q = self.owners.len();
        let given: Vec<usize> = (0..q).filter(|&p| give.contains_key(&self.owners[p])).collect();
        let gap_after = |i: usize| (given[(i + 1) % given.len()] + q - given[i]) % q;
        let apart = given.len() < 2 || (0..given.len()).all(|i| gap_after(i) >= self.w);
        if !apart {
            return None;
        }
        let mut receivers: Vec<(NodeId, usize)> = take.iter().map(|(&m, &t)| (m, t)).collect();
        receivers.sort_by_key(|&(m, t)| (Reverse(t), m));
        let options: Vec<Vec<usize>> = given
            .iter()
            .map(|&p| {
                let around: Vec<usize> = (1..self.w)
                    .flat_map(|d| [self.at(p, d, true), self.at(p, d, false)])
                    .map(|o| self.index(self.owners[o]))
                    .collect();
                let mut fit: Vec<usize> =
                    (0..receivers.len()).filter(|&r| !self.near(p, receivers[r].0, self.w)).collect();
                fit.sort_by_key(|&r| {
                    let r_i = self.index(receivers[r].0);
                    (around.iter().map(|&b| self.near_count[r_i][b]).sum::<isize>(), r)
                });
                fit
            })
            .collect();
        let mut held: Vec<Vec<usize>> = vec![vec![]; receivers.len()];
        let mut to: Vec<usize> = vec![usize::MAX; given.len()];
        for i in 0..given.len() {
            let mut seen = vec![false; receivers.len()];
            if !augment(i, &options, &receivers, &mut held, &mut to, &mut seen) {
                return None;
            }
        }
        Some(given.iter().zip(to).map(|(&p, r)| (p, receivers[r].0)).collect())
    }

    /// The best (partition, receiver) pair, in the order of preference of
    /// the module documentation; `None` once no node has anything to take.
    fn best_step(&self, give: &BTreeMap<NodeId, usize>, take: &BTreeMap<NodeId, usize>) -> Option<(usize, NodeId)> {
        let mut best = None;
        for (p, &from) in self.owners.iter().enumerate() {
            let Some(&left_to_give) = give.get(&from) else { continue };
            let fits = |to: NodeId| !self.near(p, to, self.w);
            let options = take.keys().filter(|&&to| to != from && fits(to)).count();
            let repairs = self.near(p, from, self.w);
            let apart =
                !(1..self.apart).any(|d| self.changed(self.at(p, d, true)) || self.changed(self.at(p, d, false)));
            let around: Vec<usize> = (1..self.w)
                .flat_map(|d| [self.at(p, d, true), self.at(p, d, false)])
                .map(|o| self.index(self.owners[o]))
                .collect();
            let from_i = self.index(from);
            for (&to, &left_to_take) in take {
                if to == from {
                    continue;
                }
                let to_i = self.index(to);
                let sameness: isize =
                    around.iter().map(|&b| self.near_count[to_i][b] - self.near_count[from_i][b]).sum();
                let score = (
                    fits(to),
                    repairs,
                    apart,
                    Reverse(options),
                    left_to_give,
                    left_to_take,
                    Reverse(sameness),
                    Reverse(p),
                    Reverse(to),
                );
                if best.as_ref().is_none_or(|(b, _)| score > *b) {
                    best = Some((score, (p, to)));
                }
            }
        }
        best.map(|(_, step)| step)
    }

    /// The repair phase: apply the best repair while one removes a
    /// repeating window within `budget` moves in all.
    fn repair(&mut self, budget: usize) {
        let q = self.owners.len();
        if !(0..q).any(|p| self.near(p, self.owners[p], self.w)) {
            return;
        }
        let before: Vec<Vec<NodeId>> = (0..q).map(|p| replicas(&self.original, p, self.n)).collect();
        let lost_limit = (0..q).map(|p| self.lost(&before, p).0).max().unwrap_or(0).max(1);
        let mut counts = counts(&self.owners);
        let members: Vec<NodeId> = counts.keys().copied().collect();
        // gain[p][i]: the repeating windows removed if p alone went to
        // members[i] (negative if added); it depends only on the owners
        // within w - 1 of p, so a repair updates only the rows near it.
        let mut gain: Vec<Vec<isize>> = (0..q).map(|p| self.gains(p, &members)).collect();
        let mut moved = (0..q).filter(|&p| self.changed(p)).count();
        loop {
            let spare = budget as isize - moved as isize;
            let mut rejected = BTreeSet::new();
            let chosen = 'search: loop {
                let mut best = self.best_candidates(spare, &members, &counts, &gain, &rejected);
                if best.is_empty() {
                    break None;
                }
                best.sort_by(Candidate::rank);
                for candidate in best {
                    let undo = self.apply(candidate.repair);
                    if candidate.touched().iter().all(|&c| self.lost_within(&before, c, lost_limit)) {
                        break 'search Some(candidate);
                    }
                    self.apply(undo);
                    rejected.insert(candidate.repair);
                }
            };
            let Some(chosen) = chosen else { break };
            moved = moved.saturating_add_signed(chosen.cost);
            if matches!(chosen.repair.with, With::Hand(_)) {
                counts = self::counts(&self.owners);
            }
            for c in chosen.touched() {
                for d in 0..self.w {
                    for p in [self.at(c, d, true), self.at(c, d, false)] {
                        gain[p] = self.gains(p, &members);
                    }
                }
            }
        }
    }

    /// `gain[p]` of [`Claim::repair`]: for each of `members`, the repeating
    /// windows removed if `p` went to it. A window through `p` repeats with
    /// `p` owned by a node if its other partitions repeat an owner among
    /// themselves or include that node.
    fn gains(&self, p: usize, members: &[NodeId]) -> Vec<isize> {
        let q = self.owners.len();
        let now = self.repeating_around(p, None) as isize;
        let mut after = vec![0isize; members.len()];
        let mut repeat_anyway = 0;
        for first in (0..self.w).map(|d| self.at(p, d, false)) {
            let mut others: Vec<NodeId> =
                (0..self.w).map(|i| (first + i) % q).filter(|&o| o != p).map(|o| self.owners[o]).collect();
            others.sort_unstable();
            let len = others.len();
            others.dedup();
            if others.len() < len {
                repeat_anyway += 1;
            } else {
                for node in others {
                    if let Ok(i) = members.binary_search(&node) {
                        after[i] += 1;
                    }
                }
            }
        }
        after.iter().map(|a| now - repeat_anyway - a).collect()
    }

    /// The repairs not `rejected` that remove a repeating window, add at
    /// most `spare` moves and are worth the most (all equally, as
    /// [`Candidate::worth`] says).
    fn best_candidates(
        &mut self,
        spare: isize,
        members: &[NodeId],
        counts: &BTreeMap<NodeId, usize>,
        gain: &[Vec<isize>],
        rejected: &BTreeSet<Repair>,
    ) -> Vec<Candidate> {
        let q = self.owners.len();
        let index = |node: NodeId| members.binary_search(&node).unwrap_or(0);
        let least = counts.values().copied().min().unwrap_or(0);
        let bad: Vec<bool> = (0..q).map(|p| self.near(p, self.owners[p], self.w)).collect();
        let owner: Vec<usize> = self.owners.iter().map(|&o| index(o)).collect();
        let mut best: Vec<Candidate> = vec![];
        let mut consider = |repair: Repair, gain: isize, cost: isize| {
            if gain <= 0 || cost > spare || rejected.contains(&repair) {
                return;
            }
            let candidate = Candidate { repair, gain: gain.unsigned_abs(), cost, gentle: false };
            match best.first().map_or(Ordering::Less, |b| candidate.worth(b)) {
                Ordering::Less => best = vec![candidate],
                Ordering::Equal => best.push(candidate),
                Ordering::Greater => {}
            }
        };
        for a in (0..q).filter(|&p| bad[p]) {
            let x = self.owners[a];
            // Hand a to a node owning one fewer.
            if counts[&x] > least {
                for &y in members.iter().filter(|&&y| counts[&y] == least) {
                    consider(Repair { p: a, with: With::Hand(y) }, gain[a][index(y)], self.cost(a, y));
                }
            }
            // Swap owners with b (a pair of two bad partitions only once).
            // Giving x to a b far from a removes no window unless b is bad.
            for b in 0..q {
                let y = self.owners[b];
                let overlapping = self.distance(a, b) < self.w;
                if y == x || (b < a && bad[b]) || (!overlapping && !bad[b] && gain[a][owner[b]] <= 0) {
                    continue;
                }
                let cost = self.cost(a, y) + self.cost(b, x);
                if cost > spare {
                    continue;
                }
                let repair = Repair { p: a.min(b), with: With::Swap(a.max(b)) };
                if overlapping {
                    // The windows overlap: count them on the swapped ring.
                    let now = self.repeating_around(a, Some(b));
                    self.apply(repair);
                    let after = self.repeating_around(a, Some(b));
                    self.apply(repair);
                    consider(repair, now as isize - after as isize, cost);
                } else {
                    consider(repair, gain[a][owner[b]] + gain[b][owner[a]], cost);
                }
            }
        }
        best.into_iter().map(|c| self.with_gentle(c)).collect()
    }

    /// `candidate`, saying whether it is gentle.
    fn with_gentle(&mut self, mut candidate: Candidate) -> Candidate {
        let undo = self.apply(candidate.repair);
        let reach = self.n.min(self.owners.len());
        candidate.gentle = candidate.touched().iter().all(|&p| {
            !self.changed(p)
                || !(1..reach).any(|d| self.changed(self.at(p, d, true)) || self.changed(self.at(p, d, false)))
        });
        self.apply(undo);
        candidate
    }

    /// Applies `repair`; returns the repair that undoes it.
    fn apply(&mut self, repair: Repair) -> Repair {
        match repair.with {
            With::Swap(b) => {
                self.owners.swap(repair.p, b);
                repair
            }
            With::Hand(to) => {
                let from = std::mem::replace(&mut self.owners[repair.p], to);
                Repair { p: repair.p, with: With::Hand(from) }
            }
        }
    }

    /// Moves added by giving `p` to `to`: 1 if `p` starts moving, -1 if it
    /// goes back to its original owner, else 0.
    fn cost(&self, p: usize, to: NodeId) -> isize {
        isize::from(to != self.original[p]) - isize::from(self.changed(p))
    }

    /// How many windows of `w` consecutive partitions that contain `a` (or
    /// `b`) repeat an owner.
    fn repeating_around(&self, a: usize, b: Option<usize>) -> usize {
        let q = self.owners.len();
        let repeats =
            |s: usize| (1..self.w).any(|j| (0..j).any(|i| self.owners[(s + i) % q] == self.owners[(s + j) % q]));
        let starts = |p: usize| (0..self.w).map(move |d| (p + q - d) % q);
        let around_a = starts(a).filter(|&s| repeats(s)).count();
        let around_b_only = b.map_or(0, |b| starts(b).filter(|&s| (a + q - s) % q >= self.w && repeats(s)).count());
        around_a + around_b_only
    }

    /// The replicas `p` loses from `before` (the replicas of each partition
    /// in the original ring) to the current owners, and how many partitions
    /// from `p` on decide its current replicas.
    fn lost(&self, before: &[Vec<NodeId>], p: usize) -> (usize, usize) {
        let q = self.owners.len();
        let mut is = Vec::with_capacity(self.n);
        let mut walked = 0;
        while is.len() < self.n && walked < q {
            let owner = self.owners[(p + walked) % q];
            if !is.contains(&owner) {
                is.push(owner);
            }
            walked += 1;
        }
        (before[p].iter().filter(|r| !is.contains(r)).count(), walked)
    }

    /// True if no partition whose replicas depend on partition `c` loses
    /// more than `limit` replicas. Those are `c` and the partitions before
    /// it down to the first whose replicas are decided before reaching `c`
    /// (a partition's replicas are decided no later than the next one's).
    fn lost_within(&self, before: &[Vec<NodeId>], c: usize, limit: usize) -> bool {
        for d in 0..self.owners.len() {
            let (lost, walked) = self.lost(before, self.at(c, d, false));
            if walked <= d {
                return true;
            }
            if lost > limit {
                return false;
            }
        }
        true
    }

    /// True if `p` has a different owner than in the original ring.
    fn changed(&self, p: usize) -> bool {
        self.owners[p] != self.original[p]
    }

    /// True if `node` owns a partition other than `p` within `reach - 1`
    /// of it, either way round the ring: one that shares a window of
    /// `reach` consecutive partitions with `p`.
    fn near(&self, p: usize, node: NodeId, reach: usize) -> bool {
        (1..reach).any(|d| self.owners[self.at(p, d, true)] == node || self.owners[self.at(p, d, false)] == node)
    }

    /// The partition `d` after (or before) `p`, cyclically; `d` < Q.
    fn at(&self, p: usize, d: usize, after: bool) -> usize {
        let q = self.owners.len();
        if after { (p + d) % q } else { (p + q - d) % q }
    }

    /// How far apart `a` and `b` are, the shorter way round.
    fn distance(&self, a: usize, b: usize) -> usize {
        let d = a.abs_diff(b);
        d.min(self.owners.len() - d)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;
    use crate::ring::Ring;
    use crate::ring::transfer::{max_lost, moves};

    fn id(i: u64) -> NodeId {
        NodeId(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn members(owners: &[NodeId]) -> Vec<NodeId> {
        counts(owners).into_keys().collect()
    }

    /// How many of the Q cyclic windows of `w` consecutive partitions repeat
    /// an owner.
    fn violations(owners: &[NodeId], w: usize) -> usize {
        let q = owners.len();
        let w = w.min(q);
        (0..q).filter(|&s| (0..w).map(|d| owners[(s + d) % q]).collect::<BTreeSet<_>>().len() < w).count()
    }

    /// True if some balanced ring of `q` partitions over `s` members has
    /// every `w` consecutive partitions (cyclically) distinct. Necessary:
    /// a member owning c partitions needs them ≥ w apart, so c·w ≤ Q for
    /// c = ⌈Q/S⌉; with w = S every member owns Q/S exactly, so S divides
    /// Q. Sufficient: with w = S repeat one order of the members; with
    /// w < S, write the members in round robin order for ⌈Q/S⌉ rounds
    /// (one short round per member short of ⌈Q/S⌉) and drop the
    /// (⌈Q/S⌉·S - Q) surplus entries spread evenly: each gap of a member
    /// then loses at most ⌈(⌈Q/S⌉·S - Q)/⌈Q/S⌉⌉ ≤ S - w entries of S,
    /// which c·w ≤ Q gives.
    fn spread_exists(q: usize, s: usize, w: usize) -> bool {
        let w = w.min(s).min(q);
        if w == s { q % s == 0 } else { q.div_ceil(s) * w <= q }
    }

    /// Every member of `owners` owns ⌊Q/S⌋ or ⌈Q/S⌉ partitions.
    fn balanced(owners: &[NodeId]) -> bool {
        let counts = counts(owners);
        let (q, s) = (owners.len(), counts.len());
        counts.values().all(|&c| c == q / s || c == q.div_ceil(s))
    }

    /// Partitions that changed owner, and the ideal: those the leavers
    /// owned plus those the joiners own now.
    fn moved_and_ideal(old: &[NodeId], new: &[NodeId]) -> (usize, usize) {
        let (before, after) = (members(old), members(new));
        let moved = old.iter().zip(new).filter(|(a, b)| a != b).count();
        let ideal = old.iter().chain(new).filter(|m| !before.contains(m) || !after.contains(m)).count();
        (moved, ideal)
    }

    #[test]
    fn initial_is_round_robin_in_id_order() {
        let owners = initial(&[id(3), id(1), id(2), id(1)], 8);
        let mut sorted = [id(1), id(2), id(3)];
        sorted.sort_unstable();
        assert_eq!(owners, (0..8).map(|p| sorted[p % 3]).collect::<Vec<_>>());
        assert_eq!(Ring::new(&[id(2), id(3), id(1)], 8).owners(), owners);
    }

    #[test]
    fn a_join_takes_only_what_it_owns_after() {
        let old = initial(&(0..8).map(id).collect::<Vec<_>>(), 256);
        let new = rebalance(&old, &[id(8)], &[], 3);
        assert!(balanced(&new));
        assert_eq!(members(&new).len(), 9);
        // Only partitions now owned by the joiner changed: 28 of 256, where
        // round robin over 9 would move about 88%.
        assert_eq!(moved_and_ideal(&old, &new), (28, 28));
        assert!(old.iter().zip(&new).all(|(a, b)| a == b || *b == id(8)));
        assert_eq!(violations(&new, 3), 0);
        assert_eq!(max_lost(&Ring::from_owners(old), &Ring::from_owners(new), 3), 1);
    }

    #[test]
    fn a_leave_hands_over_only_the_leavers_partitions() {
        let old = initial(&(0..8).map(id).collect::<Vec<_>>(), 256);
        let new = rebalance(&old, &[], &[id(3)], 3);
        assert!(balanced(&new) && !new.contains(&id(3)));
        // The 32 it owned, plus repairs of repeating windows within the
        // 10% budget: each of its partitions sits between 1, 2 and 4, 5,
        // which only 0, 6 and 7 can take without a repeat, and they take
        // at most 15; the 3 spare moves repair some of the rest (no spread
        // ring is within the budget).
        let (moved, ideal) = moved_and_ideal(&old, &new);
        assert_eq!((moved, ideal), (35, 32));
        assert!(violations(&new, 3) <= 19, "{}", violations(&new, 3));
        assert_eq!(max_lost(&Ring::from_owners(old), &Ring::from_owners(new), 3), 1);
    }

    /// Moved/ideal, max replicas lost and spread violations while a cluster
    /// grows one node at a time from 1 to 10 and shrinks back (Q = 256,
    /// n = 3). Run with --nocapture to see the table.
    #[test]
    fn grow_and_shrink_table() {
        let (q, n) = (256, 3);
        let mut owners = initial(&[id(0)], q);
        let mut steps: Vec<(Vec<NodeId>, Vec<NodeId>)> = (1..10).map(|i| (vec![id(i)], vec![])).collect();
        steps.extend((1..10).rev().map(|i| (vec![], vec![id(i)])));
        println!("step        S -> S'  moved ideal ratio  max_lost  windows_repeating");
        for (joining, leaving) in steps {
            let new = rebalance(&owners, &joining, &leaving, n);
            let (moved, ideal) = moved_and_ideal(&owners, &new);
            let (s, s2) = (members(&owners).len(), members(&new).len());
            let lost = max_lost(&Ring::from_owners(owners.clone()), &Ring::from_owners(new.clone()), n);
            let kind = if joining.is_empty() { "leave" } else { "join" };
            let ratio = moved as f64 / ideal as f64;
            let bad = violations(&new, n.min(s2));
            println!("{kind:<10} {s:>2} -> {s2:<2}  {moved:>5} {ideal:>5} {ratio:>5.2}  {lost:>8}  {bad:>17}");
            assert!(balanced(&new) && moved * 10 <= ideal * 11);
            owners = new;
        }
    }

    /// Over single joins and leaves from every initial ring and every ring
    /// grown by joins from one node (S ≤ 20, Q in 8..256, n in 1, 2, 3, 5;
    /// the property tests cover Q = 1024): asserts the move budget, that a
    /// join into a spread ring stays spread where a spread balanced ring
    /// exists, that any change of a spread grown ring stays spread under
    /// the condition of [`spread_kept`], and that a change of a spread ring
    /// with S' > n loses at most one replica of any key; counts the changes
    /// that still repeat an owner within n although some balanced ring
    /// would not (after a leave that ring may be beyond the move budget:
    /// see the module documentation), by origin, kind and input, with the
    /// windows left. Run with --nocapture to see them.
    #[test]
    fn single_change_report() {
        let mut report: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut worst: f64 = 0.0;
        for q in [8usize, 16, 64, 256] {
            for n in [1, 2, 3, 5] {
                let mut grown = initial(&[id(0)], q as u32);
                for s in 1..=20.min(q) {
                    if s > 1 {
                        grown = rebalance(&grown, &[id(s as u64 - 1)], &[], n);
                    }
                    let origins = [
                        ("initial", initial(&(0..s as u64).map(id).collect::<Vec<_>>(), q as u32)),
                        ("grown", grown.clone()),
                    ];
                    for (origin, old) in origins {
                        let mut changes = vec![];
                        if s < 20.min(q) {
                            changes.push(("join", rebalance(&old, &[id(99)], &[], n)));
                        }
                        if s > 1 {
                            changes.push(("leave", rebalance(&old, &[], &[id(s as u64 / 2)], n)));
                        }
                        for (kind, new) in changes {
                            let s2 = members(&new).len();
                            let w = n.min(s2);
                            let (moved, ideal) = moved_and_ideal(&old, &new);
                            let case = format!("{origin} {kind} Q={q} S={s} n={n}");
                            assert!(balanced(&new) && moved * 10 <= ideal * 11, "{case}");
                            worst = worst.max(moved as f64 / ideal as f64);
                            report.entry(format!("{origin} {kind}s")).or_default().0 += 1;
                            let spread = violations(&old, n.min(s)) == 0;
                            let input = if spread { "spread input" } else { "unspread input" };
                            if spread_exists(q, s2, w) && violations(&new, w) > 0 {
                                assert!(kind == "leave" || !spread, "{case}");
                                assert!(origin == "initial" || !spread || !spread_kept(q, s2, n), "{case}");
                                let entry =
                                    report.entry(format!("{origin} {kind} repeats, feasible, {input}")).or_default();
                                entry.0 += 1;
                                entry.1 += violations(&new, w);
                                println!(
                                    "{case} ({input}): {} -> {} repeating windows, moved {moved} of {ideal}",
                                    violations(&old, w),
                                    violations(&new, w)
                                );
                            }
                            let lost = max_lost(&Ring::from_owners(old.clone()), &Ring::from_owners(new.clone()), n);
                            if s2 > n && lost > 1 {
                                assert!(!spread, "{case} loses {lost}");
                                report.entry(format!("{origin} {kind} loses two replicas, {input}")).or_default().0 +=
                                    1;
                            }
                        }
                    }
                }
            }
        }
        println!("(changes, windows left): {report:?}; worst moved/ideal {worst:.3}");
    }

    /// Every single leave (of each member) and a join of rings grown by
    /// joins from one node (Q = 256, S ≤ 16): spread kept under the
    /// condition of [`spread_kept`].
    #[test]
    fn every_single_change_of_a_grown_ring_stays_spread() {
        let q = 256;
        for n in [2, 3, 5] {
            let mut owners = initial(&[id(0)], q as u32);
            for s in 2..=16u64 {
                owners = rebalance(&owners, &[id(s - 1)], &[], n);
                let s = s as usize;
                if violations(&owners, n.min(s)) > 0 {
                    continue;
                }
                let mut changes: Vec<Vec<NodeId>> =
                    (0..s as u64).map(|k| rebalance(&owners, &[], &[id(k)], n)).collect();
                changes.push(rebalance(&owners, &[id(99)], &[], n));
                for new in changes {
                    let s2 = members(&new).len();
                    if spread_kept(q, s2, n) {
                        assert_eq!(violations(&new, n.min(s2)), 0, "n={n} {s} -> {s2}");
                    }
                }
            }
        }
    }

    /// True where single joins and leaves keep a spread ring spread (the
    /// condition of the module documentation): a spread balanced ring of
    /// `s2` members exists, `s2 ≥ 2n + 2` and `q ≥ 8·s2`.
    fn spread_kept(q: usize, s2: usize, n: usize) -> bool {
        n == 1 || (spread_exists(q, s2, n.min(s2)) && s2 >= 2 * n + 2 && q >= 8 * s2)
    }

    /// A cluster grown by joins from one node to `s` and then changed by
    /// single joins and leaves (`picks`: which leaves, or a join): every
    /// change of a spread ring under the condition of [`spread_kept`]
    /// leaves it spread, and every change keeps balance, the budget and
    /// (from a spread ring with S' > n) loses at most one replica.
    fn grow_then_change(q: usize, n: usize, s: usize, picks: &[usize]) -> Result<(), TestCaseError> {
        let mut owners = initial(&[id(0)], q as u32);
        let mut fresh = 1;
        let steps = (1..s).map(|_| None).chain(picks.iter().map(|&pick| Some(pick)));
        for pick in steps {
            let before = members(&owners);
            let s = before.len();
            let new = match pick {
                Some(pick) if s > 1 && (pick % 2 == 0 || s >= 24) => {
                    rebalance(&owners, &[], &[before[pick / 2 % s]], n)
                }
                _ => {
                    fresh += 1;
                    rebalance(&owners, &[id(fresh)], &[], n)
                }
            };
            let s2 = members(&new).len();
            let (moved, ideal) = moved_and_ideal(&owners, &new);
            prop_assert!(balanced(&new) && moved * 10 <= ideal * 11, "{} moved, ideal {}", moved, ideal);
            let spread = violations(&owners, n.min(s)) == 0;
            if spread && spread_kept(q, s2, n) {
                prop_assert_eq!(violations(&new, n.min(s2)), 0, "Q={} n={} {} -> {}", q, n, s, s2);
            }
            if spread && s2 > n {
                let lost = max_lost(&Ring::from_owners(owners.clone()), &Ring::from_owners(new.clone()), n);
                prop_assert!(lost <= 1);
            }
            owners = new;
        }
        Ok(())
    }

    /// A change: how many join, how many leave, which leave.
    fn changes() -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
        prop::collection::vec((0usize..=3, 0usize..=2, any::<usize>()), 1..=5)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        #[test]
        fn joins_and_leaves_keep_a_grown_ring_spread(
            s in 1usize..=20,
            q in select(vec![16usize, 64, 256, 1024]),
            n in select(vec![1usize, 2, 3, 5]),
            picks in prop::collection::vec(any::<usize>(), 1..=12),
        ) {
            grow_then_change(q, n, s, &picks)?;
        }

        #[test]
        fn rebalance_keeps_its_promises(
            s in 1usize..=20,
            q in select(vec![8usize, 16, 64, 256, 1024]),
            n in select(vec![1usize, 2, 3, 5]),
            changes in changes(),
        ) {
            let cap = 20.min(q);
            let s = s.min(cap);
            let mut owners = initial(&(0..s as u64).map(id).collect::<Vec<_>>(), q as u32);
            let mut fresh = s as u64;
            for (joins, leaves, pick) in changes {
                let before = members(&owners);
                let s = before.len();
                let leaves = leaves.min(s - 1);
                let joins = joins.min(cap - (s - leaves));
                let (joins, leaves) = if joins + leaves > 0 { (joins, leaves) } else if s < cap { (1, 0) } else { (0, 1) };
                let leaving: Vec<NodeId> = (0..leaves).map(|i| before[(pick + i) % s]).collect();
                let joining: Vec<NodeId> = (0..joins as u64).map(|i| id(fresh + i)).collect();
                fresh += joins as u64;
                let new = rebalance(&owners, &joining, &leaving, n);

                // The members are the expected ones, balanced to ±1.
                let mut expected: Vec<NodeId> = before.iter().filter(|m| !leaving.contains(m)).chain(&joining).copied().collect();
                expected.sort_unstable();
                prop_assert_eq!(members(&new), expected);
                prop_assert!(balanced(&new));

                // Moves within 1.1 × ideal.
                let (moved, ideal) = moved_and_ideal(&owners, &new);
                prop_assert!(moved * 10 <= ideal * 11, "{} moved, ideal {}", moved, ideal);

                // Spread: a pure join into a spread ring keeps it spread
                // whenever a spread balanced ring exists. Leaves are not
                // asserted here: these rings start as round robin, which a
                // leave cannot keep spread within the move bound (see the
                // module documentation and single_change_report);
                // joins_and_leaves_keep_a_grown_ring_spread asserts them for
                // rings grown from one node.
                let s2 = members(&new).len();
                let w = n.min(s2);
                if leaves == 0 && spread_exists(q, s2, w) && violations(&owners, w) == 0 {
                    prop_assert_eq!(violations(&new, w), 0);
                }

                // A single join or leave into a spread ring with more than
                // n members loses at most one replica of any key.
                let (old_ring, new_ring) = (Ring::from_owners(owners.clone()), Ring::from_owners(new.clone()));
                if joins + leaves == 1 && s2 > n && violations(&owners, n.min(s)) == 0 {
                    prop_assert!(max_lost(&old_ring, &new_ring, n) <= 1);
                }

                // Determinism: the order (and repeats) of the lists do not matter.
                let mut shuffled_joining = joining.clone();
                shuffled_joining.reverse();
                shuffled_joining.extend(joining.first());
                let mut shuffled_leaving = leaving.clone();
                shuffled_leaving.rotate_left(leaves / 2);
                prop_assert_eq!(&rebalance(&owners, &shuffled_joining, &shuffled_leaving, n), &new);

                // Transfers: exactly the gainers, sourced from old replicas.
                let listed = moves(&old_ring, &new_ring, n);
                let mut gainers = vec![];
                for p in 0..q as u32 {
                    let (was, is) = (old_ring.replicas(p, n), new_ring.replicas(p, n));
                    gainers.extend(is.iter().filter(|r| !was.contains(r)).map(|&to| (p, to)));
                }
                gainers.sort_unstable();
                prop_assert_eq!(listed.iter().map(|m| (m.partition, m.to)).collect::<Vec<_>>(), gainers);
                for m in &listed {
                    let was = old_ring.replicas(m.partition, n);
                    let mut sources = m.sources.clone();
                    sources.sort_unstable();
                    let mut all = was.to_vec();
                    all.sort_unstable();
                    prop_assert_eq!(sources, all);
                    let is = new_ring.replicas(m.partition, n);
                    let losers = was.iter().filter(|r| !is.contains(r)).count();
                    prop_assert!(m.sources[..losers].iter().all(|r| !is.contains(r)));
                }
                owners = new;
            }
        }
    }
}
