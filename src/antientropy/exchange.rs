//! The exchange: in the background, each node compares its hash tree of
//! every partition it replicates with each other replica's that is up, and
//! repairs the keys they differ on, both ways.
//!
//! One partition at a time, paced so that every partition is compared at
//! least once per `anti-entropy-interval`; partitions recorded as needing
//! repair (a hint refused) go first in each pass, and the record goes once
//! the partition was compared with every other replica. A comparison asks for
//! the other replica's root and branches; if the roots are equal it is
//! done (one message each way). Otherwise it asks for the leaves of the
//! branches that differ, then for the keys (with their digests) of the
//! leaves that differ, and for each key whose digests differ reads the
//! other's copy, merges it into its own, and sends the merge back when the
//! other lacked some of it. Merging follows the version rules, so what two
//! replicas end with is the same whoever repairs, and deletes and expiries
//! take part like any version. A FLUSHALL is not a version: replicas that
//! have not seen the same number of flushes do not compare, and a merge of
//! an exchange is dropped if a flush came since the exchange began, on
//! either side (`Store::merge_unless_flushed`, `KvRequest::Repair`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use crate::join::join_all;
use crate::membership::{Membership, View};
use crate::metrics::{self, Metrics};
use crate::rpc::{KvRequest, KvResponse, Member, Peers};
use crate::shutdown::Stop;
use crate::storage::{MAX_KEY_LEN, Store};
use crate::version::{Encoded, Object};

use super::tree::BRANCHES;

/// Keys repaired at once.
const IN_FLIGHT: usize = 30;
/// The shortest pause between two partitions.
const MIN_PAUSE: Duration = Duration::from_millis(10);

/// What the exchange needs.
pub struct AntiEntropy {
    pub store: Arc<Store>,
    pub membership: Arc<Membership>,
    pub peers: Peers,
    pub metrics: Arc<Metrics>,
    /// Every partition this node replicates is compared at least once per
    /// this.
    pub interval: Duration,
}

impl AntiEntropy {
    /// Compares partitions until `stop` fires.
    pub async fn run(self, mut stop: Stop) {
        // When each partition was last compared with every replica (ms).
        let mut compared: Vec<u64> = Vec::new();
        loop {
            let view = self.membership.view();
            let mine = self.replicated(&view);
            if mine.is_empty() || view.members.len() < 2 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = stop.stopped() => return,
                }
            }
            let pause = (self.interval / u32::try_from(mine.len()).unwrap_or(u32::MAX)).max(MIN_PAUSE);
            let marked = self.store.partitions_needing_repair();
            // A mark for a partition this node does not replicate (a
            // fallback refused a hint) is for the replicas to repair.
            for &p in marked.iter().filter(|p| !mine.contains(p)) {
                let _ = self.store.unmark_repaired(p).await;
            }
            compared.resize(view.partitioner().count() as usize, 0);
            let (first, rest): (Vec<u32>, Vec<u32>) = mine.iter().partition(|p| marked.contains(p));
            for p in first.into_iter().chain(rest) {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stop.stopped() => return,
                }
                if self.compare(p).await {
                    compared[p as usize] = crate::clock::now_ms();
                    if marked.contains(&p) && self.store.unmark_repaired(p).await.unwrap_or(false) {
                        tracing::info!(partition = p, "partition compared with every replica; no longer marked");
                    }
                }
                let oldest = mine.iter().map(|&q| compared.get(q as usize).copied().unwrap_or(0)).min();
                self.metrics.ae_oldest_comparison_ms.store(oldest.unwrap_or(0), Ordering::Relaxed);
            }
        }
    }

    /// Compares partition `p` with each other replica that is up and
    /// repairs what differs: true if every other replica was up and
    /// compared.
    async fn compare(&self, p: u32) -> bool {
        if !self.store.tree_ready(p) {
            return false; // still being rebuilt after a crash
        }
        let view = self.membership.view();
        let me = self.store.node_id();
        let mut everyone = true;
        for &i in view.replica_indices(p) {
            let replica = &view.members[i];
            if replica.id == me {
                continue;
            }
            if !view.up[i] {
                everyone = false;
                continue;
            }
            match self.exchange(p, replica).await {
                Ok(repaired) => {
                    metrics::add(&self.metrics.ae_exchanges, 1);
                    metrics::add(&self.metrics.ae_keys_repaired, repaired);
                    if repaired > 0 {
                        tracing::info!(partition = p, peer = %replica.peer_addr, repaired, "anti-entropy repaired keys");
                    }
                }
                Err(e) => {
                    everyone = false;
                    tracing::debug!(partition = p, peer = %replica.peer_addr, "anti-entropy exchange failed: {e}");
                }
            }
        }
        everyone
    }

    /// The partitions this node is a replica of.
    fn replicated(&self, view: &View) -> Vec<u32> {
        let me = self.store.node_id();
        (0..view.partitioner().count())
            .filter(|&p| view.replica_indices(p).iter().any(|&i| view.members[i].id == me))
            .collect()
    }

    /// Compares partition `p` with `replica`'s and repairs what differs:
    /// the number of keys repaired (on either side).
    async fn exchange(&self, p: u32, replica: &Member) -> Result<u64, String> {
        // Both must have seen the same FLUSHALLs, now and at every merge,
        // or a repair could bring back what a flush removed.
        let flushes = self.store.flushes();
        let (root, branches) = self.store.tree_branches(p);
        let request = KvRequest::TreeBranches { partition: p, flushes };
        let (their_root, their_branches) = match self.ask(replica, request).await? {
            KvResponse::Branches { root, branches } if branches.len() == BRANCHES => (root, branches),
            other => return Err(format!("unexpected answer {other:?}")),
        };
        if root == their_root {
            return Ok(0);
        }
        let differing: Vec<usize> = (0..BRANCHES).filter(|&b| branches[b] != their_branches[b]).collect();
        if differing.is_empty() {
            return Ok(0);
        }
        let request = KvRequest::TreeLeaves { partition: p, branches: differing.iter().map(|&b| b as u32).collect() };
        let their_leaves = match self.ask(replica, request).await? {
            KvResponse::Leaves(leaves) => leaves,
            other => return Err(format!("unexpected answer {other:?}")),
        };
        let mine = self.store.tree_leaves(p, &differing);
        let per = super::tree::LEAVES_PER_BRANCH;
        let leaves: Vec<usize> = differing
            .iter()
            .enumerate()
            .flat_map(|(n, &b)| (0..per).map(move |i| (n * per + i, b * per + i)))
            .filter(|&(at, _)| mine.get(at) != their_leaves.get(at))
            .map(|(_, leaf)| leaf)
            .collect();
        if leaves.is_empty() {
            return Ok(0);
        }
        let request = KvRequest::LeafKeys { partition: p, leaves: leaves.iter().map(|&l| l as u32).collect() };
        let theirs = match self.ask(replica, request).await? {
            KvResponse::KeyDigests(keys) => keys,
            other => return Err(format!("unexpected answer {other:?}")),
        };
        let mine = self.store.leaf_digests(p, leaves).await.map_err(|e| e.to_string())?;
        // The keys whose digests differ, or that one side lacks.
        let digests = |list: &[(Bytes, u64, u64)]| -> HashMap<Bytes, u64> {
            list.iter().map(|(k, _, d)| (k.clone(), *d)).collect()
        };
        let (mine, theirs) = (digests(&mine), digests(&theirs));
        let mut keys: Vec<Bytes> =
            mine.iter().filter(|(k, d)| theirs.get(*k) != Some(*d)).map(|(k, _)| k.clone()).collect();
        keys.extend(theirs.keys().filter(|k| !mine.contains_key(*k)).cloned());
        let mut repaired = 0;
        for chunk in keys.chunks(IN_FLIGHT) {
            let results = join_all(chunk.iter().map(|key| self.repair(replica, key, flushes)).collect()).await;
            for r in results {
                repaired += r?;
            }
        }
        Ok(repaired)
    }

    /// Makes this node's copy of `key` and `replica`'s the merge of both:
    /// how many of the two changed.
    async fn repair(&self, replica: &Member, key: &Bytes, flushes: u64) -> Result<u64, String> {
        // The position is this node's own reckoning, not the peer's.
        if key.len() > MAX_KEY_LEN {
            return Ok(0);
        }
        let hash = crate::ring::key_hash(key);
        let theirs = match self.ask(replica, KvRequest::Read { key: key.clone() }).await? {
            KvResponse::Object(o) => o,
            other => return Err(format!("unexpected answer {other:?}")),
        };
        let mut changed = 0;
        if let Some(t) = &theirs {
            let merged = self.store.merge_unless_flushed(flushes, hash, key, Arc::clone(t)).await;
            if merged.map_err(|e| e.to_string())? {
                changed += 1;
            }
        }
        if self.store.flushes() != flushes {
            return Err("a FLUSHALL came during the exchange".into());
        }
        let merged: Option<Arc<Object>> = self.store.get(hash, key).await.map_err(|e| e.to_string())?;
        if let Some(m) = merged
            && theirs.as_ref().is_none_or(|t| t.changed_by(&m))
        {
            let object = Encoded::new(Arc::unwrap_or_clone(m));
            match self.ask(replica, KvRequest::Repair { key: key.clone(), object, flushes }).await? {
                KvResponse::Done => changed += 1,
                other => return Err(format!("unexpected answer {other:?}")),
            }
        }
        Ok(changed)
    }

    async fn ask(&self, replica: &Member, request: KvRequest) -> Result<KvResponse, String> {
        self.peers.kv(&replica.peer_addr, request).await.map_err(|e| e.to_string())
    }
}
