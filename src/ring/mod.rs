//! The ring: MD5 partitioning, partition ownership and preference lists.
//! Pure: no I/O, no tokio.
//!
//! A key's position is the first 64 bits of its MD5 digest; the 64-bit space
//! is cut into `Q` equal partitions (Q a power of two, fixed when a cluster
//! is created), so a partition is a contiguous range of positions and its
//! boundaries never move. Each partition has one owner. The preference list
//! of a partition walks the ring clockwise from it and collects distinct
//! owners: the first N are the replicas, the rest fallbacks.
//!
//! A [`Ring`] is built from its owner vector ([`Ring::from_owners`]); which
//! node owns which partition is decided by [`claim`]: [`claim::initial`]
//! for a cluster started from scratch (round robin in id order, which is
//! what [`Ring::new`] builds), [`claim::rebalance`] when nodes join or
//! leave (moving as few partitions as balance requires). [`transfer`] lists
//! what a change of ring moves. Every member owns Q/S partitions ±1, and a
//! run of up to N consecutive partitions is on distinct members wherever
//! claim could arrange it (see [`claim`] for when it cannot: with N = S, no
//! cyclic sequence of length Q over S members has every S consecutive
//! entries distinct unless S divides Q); the preference list skips repeats,
//! so every key still has N distinct replicas whenever S >= N.

use md5::{Digest, Md5};

use crate::version::NodeId;

pub mod claim;
pub mod state;
pub mod transfer;

/// The most partitions a ring may have (positions keep 16 bits of
/// partition).
pub const MAX_PARTITIONS: u32 = 1 << 16;

/// A key's position on the ring: the first 64 bits of MD5(key).
#[must_use]
pub fn key_hash(key: &[u8]) -> u64 {
    let digest = Md5::digest(key);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// True if `q` is a valid partition count.
#[must_use]
pub fn valid_partition_count(q: u32) -> bool {
    q.is_power_of_two() && q <= MAX_PARTITIONS
}

/// Partition arithmetic for a ring of `q` partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitioner {
    bits: u32,
}

impl Partitioner {
    /// # Panics
    /// If `q` is not a power of two up to [`MAX_PARTITIONS`]; configuration
    /// validation rejects such values first.
    #[must_use]
    pub fn new(q: u32) -> Self {
        assert!(valid_partition_count(q), "partition count must be a power of two up to {MAX_PARTITIONS}");
        Self { bits: q.trailing_zeros() }
    }

    #[must_use]
    pub fn count(self) -> u32 {
        1 << self.bits
    }

    /// The partition holding position `hash`.
    #[must_use]
    pub fn of(self, hash: u64) -> u32 {
        if self.bits == 0 { 0 } else { (hash >> (64 - self.bits)) as u32 }
    }

    /// The first position of partition `p`.
    #[must_use]
    pub fn start(self, p: u32) -> u64 {
        if self.bits == 0 { 0 } else { u64::from(p) << (64 - self.bits) }
    }

    /// The last position of partition `p`.
    #[must_use]
    pub fn end(self, p: u32) -> u64 {
        if p + 1 == self.count() { u64::MAX } else { self.start(p + 1) - 1 }
    }
}

/// Who owns each partition, and each partition's preference list
/// (computed once, since every request asks for one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    partitioner: Partitioner,
    owners: Vec<NodeId>,
    lists: Vec<Vec<NodeId>>,
}

impl Ring {
    /// A ring of `q` partitions all owned by `node`: a cluster of one.
    #[must_use]
    pub fn single(node: NodeId, q: u32) -> Self {
        Self::new(&[node], q)
    }

    /// The ring of `members` (in any order; at least one) for a cluster
    /// started from scratch: [`claim::initial`]'s round robin in id order.
    ///
    /// # Panics
    /// If `members` is empty or `q` is not a valid partition count.
    #[must_use]
    pub fn new(members: &[NodeId], q: u32) -> Self {
        assert!(!members.is_empty(), "a ring needs a member");
        assert!(valid_partition_count(q), "partition count must be a power of two up to {MAX_PARTITIONS}");
        Self::from_owners(claim::initial(members, q))
    }

    /// The ring whose partition `p` is owned by `owners[p]`: the form a
    /// stored ring takes, since ownership changes only by explicit
    /// decisions ([`claim::rebalance`]), not as a function of the members.
    ///
    /// # Panics
    /// If `owners.len()` is not a valid partition count (a power of two up
    /// to [`MAX_PARTITIONS`]; at least one).
    #[must_use]
    pub fn from_owners(owners: Vec<NodeId>) -> Self {
        let q = u32::try_from(owners.len()).unwrap_or(u32::MAX);
        let partitioner = Partitioner::new(q);
        let distinct = distinct(&owners).len();
        let lists = (0..owners.len())
            .map(|p| {
                let mut list: Vec<NodeId> = Vec::with_capacity(distinct);
                for i in 0..owners.len() {
                    if list.len() == distinct {
                        break;
                    }
                    let owner = owners[(p + i) % owners.len()];
                    if !list.contains(&owner) {
                        list.push(owner);
                    }
                }
                list
            })
            .collect();
        Self { partitioner, owners, lists }
    }

    #[must_use]
    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    #[must_use]
    pub fn partition_count(&self) -> u32 {
        self.partitioner.count()
    }

    #[must_use]
    pub fn owner(&self, p: u32) -> NodeId {
        self.owners[p as usize]
    }

    /// Distinct owners walking clockwise from partition `p`: the first `n`
    /// are the replicas of keys in `p`, any after them are fallbacks.
    #[must_use]
    pub fn preference_list(&self, p: u32) -> &[NodeId] {
        &self.lists[p as usize]
    }

    /// The first `n` distinct owners from partition `p`: its replicas.
    #[must_use]
    pub fn replicas(&self, p: u32, n: usize) -> &[NodeId] {
        let list = self.preference_list(p);
        &list[..n.min(list.len())]
    }

    /// The owner of every partition, in partition order.
    #[must_use]
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// The distinct owners, sorted.
    #[must_use]
    pub fn members(&self) -> Vec<NodeId> {
        distinct(&self.owners)
    }

    /// How many partitions `node` owns.
    #[must_use]
    pub fn owned_by(&self, node: NodeId) -> usize {
        self.owners.iter().filter(|&&o| o == node).count()
    }
}

/// The distinct nodes of `owners`, sorted.
fn distinct(owners: &[NodeId]) -> Vec<NodeId> {
    let mut d = owners.to_vec();
    d.sort_unstable();
    d.dedup();
    d
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn md5_positions_match_known_digests() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(key_hash(b""), 0xd41d_8cd9_8f00_b204);
        // MD5("foo") = acbd18db4cc2f85cedef654fccc4a4d8
        assert_eq!(key_hash(b"foo"), 0xacbd_18db_4cc2_f85c);
        assert_eq!(Partitioner::new(256).of(key_hash(b"foo")), 0xac);
    }

    #[test]
    fn one_partition_covers_everything() {
        let p = Partitioner::new(1);
        assert_eq!((p.of(0), p.of(u64::MAX)), (0, 0));
        assert_eq!((p.start(0), p.end(0)), (0, u64::MAX));
    }

    #[test]
    fn single_node_ring_lists_only_itself() {
        let ring = Ring::single(NodeId(7), 256);
        assert_eq!(ring.preference_list(200), &[NodeId(7)]);
        assert_eq!(ring.owned_by(NodeId(7)), 256);
    }

    #[test]
    fn keys_spread_evenly() {
        // 64k distinct keys over 256 partitions: each within ±40% of the mean.
        let p = Partitioner::new(256);
        let mut counts = [0u32; 256];
        for i in 0..65_536u64 {
            counts[p.of(key_hash(format!("key:{i}").as_bytes())) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (154..=358).contains(&c)), "{counts:?}");
    }

    fn ids(s: u64) -> Vec<NodeId> {
        (0..s).map(|i| NodeId(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)).collect()
    }

    #[test]
    fn claim_ignores_member_order() {
        let mut members = ids(5);
        let ring = Ring::new(&members, 64);
        members.reverse();
        assert_eq!(Ring::new(&members, 64), ring);
    }

    proptest! {
        #[test]
        fn claim_balances_and_spreads_replicas(s in 1u64..=12, bits in 0u32..=10, n in 1usize..=5) {
            let q = 1u32 << bits;
            let members = ids(s);
            let ring = Ring::new(&members, q);
            let s = s as usize;
            // Every member owns Q/S partitions, ±1.
            for m in &members {
                let owned = ring.owned_by(*m);
                prop_assert!(owned == q as usize / s || owned == (q as usize).div_ceil(s), "{owned}");
            }
            // Any n consecutive partitions not crossing the end are on n distinct members.
            if n <= s {
                for start in 0..(q as usize).saturating_sub(n - 1) {
                    let window: std::collections::BTreeSet<_> = (start..start + n).map(|p| ring.owner(p as u32)).collect();
                    prop_assert_eq!(window.len(), n);
                }
            }
            // Every key has min(n, S) distinct replicas (fewer only if Q < S); the first is the owner.
            for p in 0..q {
                let replicas = ring.replicas(p, n);
                prop_assert_eq!(replicas.len(), n.min(s).min(q as usize));
                prop_assert_eq!(replicas[0], ring.owner(p));
                let distinct: std::collections::BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), replicas.len());
            }
        }

        #[test]
        fn partitions_tile_the_space(bits in 0u32..=16, hash in any::<u64>()) {
            let p = Partitioner::new(1 << bits);
            let part = p.of(hash);
            prop_assert!(part < p.count());
            prop_assert!(p.start(part) <= hash && hash <= p.end(part));
            if part + 1 < p.count() {
                prop_assert_eq!(p.end(part) + 1, p.start(part + 1));
            }
        }

    }
}
