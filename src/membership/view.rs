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
        for p in 0..ring.partitioner().count() {
            let now = ring.replicas(p, n);
            replicas.extend(now.iter().filter_map(|&id| index_of(id)));
            starts.push(replicas.len());
            if let Some(next) = &next {
                let gainers = next.replicas(p, cluster_n).iter().filter(|id| !now.contains(id));
                gaining.extend(gainers.filter_map(|&id| index_of(id)));
                targets.extend_from_slice(&replicas[starts[p as usize]..]);
                targets.extend_from_slice(&gaining[gaining_starts[p as usize]..]);
                target_starts.push(targets.len());
            }
            gaining_starts.push(gaining.len());
        }
        Self { cluster, members, up, ring, n, next, replicas, starts, gaining, gaining_starts, targets, target_starts }
    }

    /// The nodes a request of partition `p` goes to, as indices into
    /// [`members`](Self::members): its replicas, then, during a ring
    /// change, the g nodes gaining it. A request counts the gaining ones
    /// too and asks for g more answers (Cassandra's pending replicas): W + g
    /// acknowledgements (or R + g answers) among these N + g nodes include W
    /// (or R) of the replicas before the change and W (or R) of those after
    /// it, so a write and a read through nodes on either side of the
    /// change's end (one holding the old owners, one the new) overlap.
    #[must_use]
    pub fn target_indices(&self, p: u32) -> &[usize] {
        if self.next.is_none() {
            return self.replica_indices(p);
        }
        let p = p as usize;
        &self.targets[self.target_starts[p]..self.target_starts[p + 1]]
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

    /// During a change, any W + g of a partition's targets hold W of its
    /// replicas before the change and W of those after it (and likewise R),
    /// whichever they are: so a request through a node on either side of
    /// the change's end overlaps with one counted this way.
    #[test]
    fn pending_quorums_overlap_both_replica_sets() {
        for (before, after) in [(3u64, 4u64), (4, 3), (2, 3), (5, 6), (6, 5), (3, 5)] {
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
                let g = v.gaining_indices(p).len();
                assert_eq!(targets.len(), was.len() + g, "partition {p}: replicas then gaining nodes");
                assert!(will.iter().all(|id| targets.contains(id)), "partition {p}: every new replica is a target");
                for q in 1..=was.len().min(will.len()) {
                    // Every subset of q + g targets.
                    for mask in 0u32..(1 << targets.len()) {
                        if mask.count_ones() as usize != q + g {
                            continue;
                        }
                        let chosen: Vec<NodeId> =
                            (0..targets.len()).filter(|&i| mask & (1 << i) != 0).map(|i| targets[i]).collect();
                        let in_was = chosen.iter().filter(|id| was.contains(id)).count();
                        let in_will = chosen.iter().filter(|id| will.contains(id)).count();
                        assert!(in_was >= q && in_will >= q, "partition {p}, {before}->{after}, q {q}: {chosen:?}");
                    }
                }
            }
        }
    }
}
