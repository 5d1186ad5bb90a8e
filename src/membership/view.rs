//! One consistent picture of the cluster, as the coordinator reads it: the
//! cluster's record, its members, which of them this node believes up, the
//! ring they form and the effective replication factor. Immutable: a new
//! view is published when membership or liveness changes, so readers take
//! it without waiting. Pure.

use std::sync::Arc;

use crate::ring::{Partitioner, Ring, key_hash};
use crate::rpc::{ClusterRecord, Member};
use crate::version::NodeId;

#[derive(Debug)]
pub struct View {
    /// The cluster this node belongs to; `None` while it is still joining
    /// one (it then serves no data).
    pub cluster: Option<ClusterRecord>,
    /// The members in the ring (all but removed ones), sorted by id.
    pub members: Vec<Member>,
    /// Whether this node believes each member up (itself always), by index.
    pub up: Vec<bool>,
    pub ring: Arc<Ring>,
    /// Replicas per key: the cluster's N, but never more than there are
    /// members (a cluster of one keeps one copy, of two keeps two).
    pub n: usize,
    /// While a change of the ring is in progress, the ring it leads to.
    pub next: Option<Arc<Ring>>,
    /// Every partition's replicas as indices into `members`, worked out
    /// once per view so that a request finds its replicas without
    /// allocating: partition `p`'s are `replicas[starts[p]..starts[p + 1]]`.
    replicas: Vec<usize>,
    starts: Vec<usize>,
    /// Likewise, the nodes gaining each partition in the change in
    /// progress (empty when none is).
    gaining: Vec<usize>,
    gaining_starts: Vec<usize>,
    /// Likewise, the nodes a request of each partition goes to: its
    /// replicas, then the nodes gaining it (only built during a change).
    targets: Vec<usize>,
    target_starts: Vec<usize>,
    /// During a change, for each partition, which of its targets are in
    /// its replica set after the change, as a bitmask of their slots
    /// (targets past the 64th, with N over 32, are left out of it).
    next_sets: Vec<u64>,
}

impl View {
    /// A view of `members` (sorted by id, not empty) with `ring`, and
    /// `next` while a change is in progress. The effective N is the
    /// cluster's N, at most the ring's owners.
    #[must_use]
    pub fn new(
        cluster: Option<ClusterRecord>,
        configured_n: usize,
        members: Vec<Member>,
        up: Vec<bool>,
        ring: Arc<Ring>,
        next: Option<Arc<Ring>>,
    ) -> Self {
        let cluster_n = cluster.map_or(configured_n, |c| c.n as usize).max(1);
        let n = cluster_n.min(ring.members().len().max(1));
        let index_of = |id: NodeId| members.binary_search_by_key(&id, |m| m.id).ok();
        let mut replicas = Vec::new();
        let mut starts = vec![0];
        let mut gaining = Vec::new();
        let mut gaining_starts = vec![0];
        let (mut targets, mut target_starts) = (Vec::new(), vec![0]);
        let mut next_sets = Vec::new();
        for p in 0..ring.partitioner().count() {
            let now = ring.replicas(p, n);
            replicas.extend(now.iter().filter_map(|&id| index_of(id)));
            starts.push(replicas.len());
            if let Some(next) = &next {
                // The next ring's effective N, as for this one.
                let will = next.replicas(p, cluster_n.min(next.members().len().max(1)));
                let gainers = will.iter().filter(|id| !now.contains(id));
                gaining.extend(gainers.filter_map(|&id| index_of(id)));
                targets.extend_from_slice(&replicas[starts[p as usize]..]);
                targets.extend_from_slice(&gaining[gaining_starts[p as usize]..]);
                target_starts.push(targets.len());
                let slots = targets[target_starts[p as usize]..].iter().take(64).enumerate();
                let set = slots.filter(|&(_, &i)| will.contains(&members[i].id)).fold(0, |set, (s, _)| set | 1 << s);
                next_sets.push(set);
            }
            gaining_starts.push(gaining.len());
        }
        Self {
            cluster,
            members,
            up,
            ring,
            n,
            next,
            replicas,
            starts,
            gaining,
            gaining_starts,
            targets,
            target_starts,
            next_sets,
        }
    }

    /// The nodes a request of partition `p` goes to, as indices into
    /// [`members`](Self::members): its replicas, then, during a ring
    /// change, the nodes gaining it. One slot each.
    ///
    /// During a change a partition has two replica sets: the current one
    /// (the first [`n`](Self::n) slots) and the one after the change (the
    /// gaining nodes and the current replicas that stay, see
    /// [`next_set`](Self::next_set)). A write then needs W acknowledgements
    /// in each set, and a read R answers in each (each at most the set's
    /// size: a cluster of one growing to three, with W = 2, needs the one
    /// current replica and two of the three next), so a node that fails or is cut off in the middle of the
    /// change costs what it costs outside one. This is enough: a write by a
    /// node still in the change is held by W of the set after it, and a
    /// node that has adopted the new ring reads R of that set alone, so
    /// with W + R > N they overlap; likewise a write by a node on the new
    /// ring and a read by one still in the change, and two nodes in the
    /// change (or one that has not seen it start) overlap in the current
    /// set.
    #[must_use]
    pub fn target_indices(&self, p: u32) -> &[usize] {
        if self.next.is_none() {
            return self.replica_indices(p);
        }
        let p = p as usize;
        &self.targets[self.target_starts[p]..self.target_starts[p + 1]]
    }

    /// Which of partition `p`'s [targets](Self::target_indices) are in its
    /// replica set after the change in progress, as a bitmask of their
    /// slots (bit `i` for slot `i`); 0 when no change is in progress.
    #[must_use]
    pub fn next_set(&self, p: u32) -> u64 {
        self.next_sets.get(p as usize).copied().unwrap_or(0)
    }

    /// The nodes gaining partition `p` in the change in progress, as
    /// indices into [`members`](Self::members).
    #[must_use]
    pub fn gaining_indices(&self, p: u32) -> &[usize] {
        let p = p as usize;
        &self.gaining[self.gaining_starts[p]..self.gaining_starts[p + 1]]
    }

    /// Whether member `id` gains partition `p` in the change in progress.
    #[must_use]
    pub fn is_gaining(&self, p: u32, id: NodeId) -> bool {
        p < self.partitioner().count() && self.gaining_indices(p).iter().any(|&i| self.members[i].id == id)
    }

    /// The replicas of partition `p`, as indices into
    /// [`members`](Self::members), in preference order.
    #[must_use]
    pub fn replica_indices(&self, p: u32) -> &[usize] {
        let p = p as usize;
        &self.replicas[self.starts[p]..self.starts[p + 1]]
    }

    /// Whether member `id` is a replica of partition `p` (false for a
    /// partition that does not exist).
    #[must_use]
    pub fn is_replica(&self, p: u32, id: NodeId) -> bool {
        p < self.partitioner().count() && self.replica_indices(p).iter().any(|&i| self.members[i].id == id)
    }

    /// The partitions member `id` is a replica of.
    #[must_use]
    pub fn replicated_by(&self, id: NodeId) -> Vec<u32> {
        (0..self.partitioner().count()).filter(|&p| self.is_replica(p, id)).collect()
    }

    #[must_use]
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.index_of(id).map(|i| &self.members[i])
    }

    /// The index of member `id` in [`members`](Self::members).
    #[must_use]
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        self.members.binary_search_by_key(&id, |m| m.id).ok()
    }

    /// True if this node believes member `id` up.
    #[must_use]
    pub fn is_up(&self, id: NodeId) -> bool {
        self.index_of(id).is_some_and(|i| self.up[i])
    }

    #[must_use]
    pub fn partitioner(&self) -> Partitioner {
        self.ring.partitioner()
    }

    /// The partition of `key` and its replicas.
    #[must_use]
    pub fn replicas_of(&self, key: &[u8]) -> (u32, Vec<&Member>) {
        self.replicas_at(key_hash(key))
    }

    /// The partition of ring position `hash` and its replicas.
    #[must_use]
    pub fn replicas_at(&self, hash: u64) -> (u32, Vec<&Member>) {
        let p = self.ring.partitioner().of(hash);
        (p, self.replica_indices(p).iter().map(|&i| &self.members[i]).collect())
    }

    /// Members up, and in all.
    #[must_use]
    pub fn up_count(&self) -> usize {
        self.up.iter().filter(|&&u| u).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64) -> Member {
        Member { id: NodeId(id), client_addr: format!("127.0.0.1:{id}"), peer_addr: format!("127.0.0.1:1{id}") }
    }

    fn view(n: u32, count: u64) -> View {
        let members: Vec<Member> = (1..=count).map(member).collect();
        let ids: Vec<NodeId> = members.iter().map(|m| m.id).collect();
        let up = vec![true; members.len()];
        View::new(Some(ClusterRecord { id: 1, partitions: 16, n }), 3, members, up, Arc::new(Ring::new(&ids, 16)), None)
    }

    #[test]
    fn effective_n_is_n_but_never_more_than_the_members() {
        assert_eq!(view(3, 1).n, 1, "a cluster of one");
        assert_eq!(view(3, 2).n, 2);
        assert_eq!(view(3, 5).n, 3);
        assert_eq!(view(1, 5).n, 1);
        let two = view(3, 2);
        assert_eq!(two.replicas_of(b"k").1.len(), 2);
        let five = view(3, 5);
        for p in 0..16 {
            let ids: Vec<NodeId> = five.replica_indices(p).iter().map(|&i| five.members[i].id).collect();
            assert_eq!(ids, five.ring.replicas(p, 3), "partition {p}");
        }
    }

    /// During a change, a quorum counted in both replica sets (W of the
    /// current set and W of the next, each at most the set's size) overlaps
    /// every quorum it may meet, with W + R > N: another one counted so, a
    /// quorum of the current set alone (a node that has not seen the
    /// change start) and one of the next set alone (a node on the new
    /// ring). Checked for every subset of the targets of every partition.
    #[test]
    fn quorums_in_both_replica_sets_overlap_either_ring() {
        #[derive(Clone, Copy, Debug)]
        enum Side {
            Before,
            During,
            After,
        }
        let pairs = [(Side::During, Side::During), (Side::Before, Side::During), (Side::During, Side::After)];
        for (before, after) in [(1u64, 2u64), (1, 3), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3), (5, 6), (6, 5), (3, 5)] {
            let all: Vec<Member> = (1..=before.max(after)).map(member).collect();
            let ids = |k: u64| (1..=k).map(NodeId).collect::<Vec<_>>();
            let old = Ring::new(&ids(before), 16);
            let new = Ring::from_owners(crate::ring::claim::rebalance(
                old.owners(),
                &ids(after).into_iter().filter(|id| !old.members().contains(id)).collect::<Vec<_>>(),
                &ids(before).into_iter().filter(|id| !ids(after).contains(id)).collect::<Vec<_>>(),
                3,
            ));
            let up = vec![true; all.len()];
            let cluster = Some(ClusterRecord { id: 1, partitions: 16, n: 3 });
            let v = View::new(cluster, 3, all.clone(), up, Arc::new(old.clone()), Some(Arc::new(new.clone())));
            for p in 0..16 {
                let targets: Vec<NodeId> = v.target_indices(p).iter().map(|&i| v.members[i].id).collect();
                let (was, will) = (old.replicas(p, 3), new.replicas(p, 3));
                let current = (1u64 << was.len()) - 1;
                let next = v.next_set(p);
                let in_next: Vec<NodeId> =
                    (0..targets.len()).filter(|&s| next & 1 << s != 0).map(|s| targets[s]).collect();
                let mut sorted = will.to_vec();
                sorted.sort_unstable();
                let mut got = in_next;
                got.sort_unstable();
                assert_eq!(got, sorted, "partition {p}, {before}->{after}: the next set is the new replicas");
                assert_eq!(targets[..was.len()], was[..], "partition {p}: the current replicas come first");
                // Whether the targets `chosen` (a bitmask) make a quorum
                // of `q` counted from `side`.
                let meets = |chosen: u64, set: u64, q: usize| {
                    (chosen & set).count_ones() as usize >= q.min(set.count_ones() as usize)
                };
                let quorum = |side: Side, chosen: u64, q: usize| match side {
                    Side::Before => chosen & !current == 0 && meets(chosen, current, q),
                    Side::During => meets(chosen, current, q) && meets(chosen, next, q),
                    Side::After => chosen & !next == 0 && meets(chosen, next, q),
                };
                let masks = 0u64..1 << targets.len();
                for (w, r) in [(1, 3), (2, 2), (3, 1), (2, 3), (3, 2)] {
                    for (a, b) in pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]) {
                        for write in masks.clone().filter(|&m| quorum(a, m, w)) {
                            for read in masks.clone().filter(|&m| quorum(b, m, r)) {
                                assert!(
                                    write & read != 0,
                                    "partition {p}, {before}->{after}, W {w} R {r}: a write {a:?} to {write:b} \
                                     and a read {b:?} from {read:b} do not overlap (targets {targets:?})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
