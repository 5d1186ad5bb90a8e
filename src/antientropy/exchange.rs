//! The exchange: in the background, each node compares its hash tree of
//! every partition it replicates with each other replica's that is up, and
//! repairs the keys they differ on, both ways.
//!
//! One partition at a time, paced so that every partition is compared at
//! least once per `anti-entropy-interval`; partitions an operator asked for
//! (`SHOAL.REPAIR`, see `repairs.rs`) go before everything, then partitions
//! recorded as needing repair (a hint refused, a start after a crash),
//! one after another, paced only by the rates; their record goes once the
//! partition was compared with every other replica.
//!
//! A comparison asks for the other replica's root and branches; if the
//! roots are equal it is done (one message each way). Otherwise it asks for
//! the leaves of the branches that differ (in a background pass, when few
//! differ, twice, 100 ms apart: a write on its way to the other replica
//! makes a leaf differ for a moment; only leaves that differ both times
//! count), then for the keys (with their
//! digests) of the leaves that differ, a page of leaves at a time, and for
//! each key whose digests differ reads the other's copy, merges it into its
//! own, and sends the merge back when the other lacked some of it. Merging
//! follows the version rules, so what two replicas end with is the same
//! whoever repairs, and deletes and expiries take part like any version.
//! All of it travels on the bulk lane (its own connection per peer, its
//! own timeout), within `anti-entropy-rate` bytes and
//! `anti-entropy-keys-rate` keys a second.
//!
//! A FLUSHALL is not a version: replicas that have not seen the same number
//! of flushes do not compare, and a merge of an exchange is dropped if a
//! flush came since the exchange began, on either side
//! (`Store::merge_unless_flushed`, `KvRequest::Repair`).
//!
//! Tombstones: a round that compared a partition with every other replica
//! tells the store which leaves needed no repair (`Store::settle_round`),
//! the evidence it needs to remove dead objects (`storage/settled.rs`). A
//! dead object past its grace period is not copied to a replica that holds
//! nothing of its key: that replica removed it already, or never held
//! anything a delete must stop, and the holder removes its own copy once
//! its rounds allow.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::repairs::{Repairs, Round};
use super::tree::{BRANCHES, LEAVES_PER_BRANCH, leaf_of};
use crate::join::join_all;
use crate::membership::{Membership, View};
use crate::metrics::{self, Metrics};
use crate::pace::Pace;
use crate::rpc::{KvRequest, KvResponse, Member, Peers, Traffic};
use crate::shutdown::Stop;
use crate::storage::{Leaves, MAX_KEY_LEN, Store};
use crate::version::{Encoded, Object};

/// Keys repaired at once.
const IN_FLIGHT: usize = 30;
/// Leaves whose keys one request lists (a branch's worth).
const LEAF_PAGE: usize = LEAVES_PER_BRANCH;
/// How long an exchange waits before it looks again at leaves that
/// differ (see `exchange`).
const IN_FLIGHT_WAIT: Duration = Duration::from_millis(100);
/// The shortest pause between two partitions of a background pass.
const MIN_PAUSE: Duration = Duration::from_millis(10);

/// What the exchange needs.
pub struct AntiEntropy {
    pub store: Arc<Store>,
    pub membership: Arc<Membership>,
    pub peers: Peers,
    pub metrics: Arc<Metrics>,
    /// Every partition this node replicates is compared at least once per
    /// this; zero: only when an operator asks.
    pub interval: Duration,
    /// At most this many bytes a second, on the wire both ways.
    pub bytes_per_second: u64,
    /// At most this many keys a second read or sent.
    pub keys_per_second: u64,
    /// How long one request of an exchange may take.
    pub timeout: Duration,
    /// What operators asked for, and the progress shown to them.
    pub repairs: Arc<Repairs>,
}

/// What one exchange with one replica did.
#[derive(Default)]
struct Exchanged {
    compared: u64,
    repaired: u64,
    bytes: u64,
    /// Of those bytes, the ones the pace has been told of.
    paced: u64,
    /// Leaves in which some key was repaired.
    unsettled: Vec<usize>,
}

impl Exchanged {
    /// Keeps to the pace: `keys` more keys, and the bytes since last time.
    async fn pace(&mut self, pace: &mut Pace, keys: u64) {
        pace.spend(keys, self.bytes - self.paced).await;
        self.paced = self.bytes;
    }
}

impl AntiEntropy {
    /// Compares partitions until `stop` fires.
    pub async fn run(self, mut stop: Stop) {
        // When each partition was last compared with every replica (ms).
        let mut compared: Vec<u64> = Vec::new();
        let mut pass: VecDeque<u32> = VecDeque::new();
        let mut pace = Pace::new(self.bytes_per_second, self.keys_per_second, stop.clone());
        // The partitions this node replicates (in order), as of `seen`.
        let (mut seen, mut mine): (Option<Arc<View>>, Vec<u32>) = (None, Vec::new());
        loop {
            let view = self.membership.view();
            if !seen.as_ref().is_some_and(|v| Arc::ptr_eq(v, &view)) {
                mine = view.replicated_by(self.store.node_id());
                compared.resize(view.partitioner().count() as usize, 0);
                seen = Some(Arc::clone(&view));
            }
            let (p, asked) = if let Some(p) = self.repairs.next() {
                (p, true)
            } else {
                if pass.is_empty() && !self.interval.is_zero() && view.members.len() > 1 {
                    pass = self.pass(&mine).into();
                }
                // A marked partition is not paced by the interval, only by
                // the rates: it may hold writes that were lost or refused.
                let marked = pass.front().is_some_and(|p| self.store.needs_repair(*p));
                let pause = if marked {
                    MIN_PAUSE
                } else {
                    (self.interval / u32::try_from(mine.len().max(1)).unwrap_or(u32::MAX)).max(MIN_PAUSE)
                };
                let idle = pass.is_empty() || self.repairs.paused();
                tokio::select! {
                    () = tokio::time::sleep(if idle { Duration::from_secs(1) } else { pause }) => {}
                    () = self.repairs.asked() => continue,
                    () = stop.stopped() => return,
                }
                if self.repairs.paused() {
                    continue;
                }
                match pass.pop_front() {
                    Some(p) => (p, false),
                    None => continue,
                }
            };
            // A mark made while the round runs (a hint refused meanwhile)
            // must outlive it.
            let marks = self.store.repair_marks();
            let round = if mine.binary_search(&p).is_ok() {
                self.round(p, &view, &mut pace, &mut stop, !asked).await
            } else {
                Round::default()
            };
            if round.everyone {
                compared[p as usize] = crate::clock::now_ms();
                if self.store.needs_repair(p)
                    && self.store.repair_marks() == marks
                    && self.store.unmark_repaired(p).await.unwrap_or(false)
                {
                    tracing::info!(partition = p, "partition compared with every replica; no longer marked");
                }
            }
            if asked {
                self.repairs.finished(&round);
            }
            if pass.is_empty() {
                let oldest = mine.iter().map(|&q| compared.get(q as usize).copied().unwrap_or(0)).min();
                self.metrics.ae_oldest_comparison_ms.store(oldest.unwrap_or(0), Ordering::Relaxed);
            }
        }
    }

    /// The order of a background pass: partitions marked as needing repair
    /// first. A mark for a partition this node does not replicate (a
    /// fallback refused a hint) is for the replicas to act on; it goes.
    fn pass(&self, mine: &[u32]) -> Vec<u32> {
        // Both in order.
        let marked = self.store.partitions_needing_repair();
        for &p in marked.iter().filter(|p| mine.binary_search(p).is_err()) {
            let store = Arc::clone(&self.store);
            tokio::spawn(async move { store.unmark_repaired(p).await });
        }
        let (mut first, rest): (Vec<u32>, Vec<u32>) = mine.iter().partition(|p| marked.binary_search(p).is_ok());
        first.extend(rest);
        first
    }

    /// One round: compares partition `p` with each other replica that is
    /// up and repairs what differs. If every other replica was compared,
    /// the store learns which leaves needed no repair.
    async fn round(&self, p: u32, view: &View, pace: &mut Pace, stop: &mut Stop, background: bool) -> Round {
        if !self.store.tree_ready(p) {
            // Still being rebuilt after a crash: a partial tree would look
            // like missing keys. Not compared (and its mark stays).
            return Round::default();
        }
        let me = self.store.node_id();
        let start = crate::clock::now_ms();
        self.store.begin_round(p);
        let mut round = Round { everyone: true, ..Round::default() };
        let mut settled = Leaves::all();
        for &i in view.replica_indices(p) {
            let replica = &view.members[i];
            if replica.id == me {
                continue;
            }
            if !view.up[i] || stop.is_stopped() {
                round.everyone = false;
                continue;
            }
            match self.exchange(p, replica, pace, background).await {
                Ok(done) => {
                    metrics::add(&self.metrics.ae_exchanges, 1);
                    metrics::add(&self.metrics.ae_keys_compared, done.compared);
                    metrics::add(&self.metrics.ae_keys_repaired, done.repaired);
                    if done.repaired > 0 {
                        tracing::info!(partition = p, peer = %replica.peer_addr, repaired = done.repaired, "anti-entropy repaired keys");
                    }
                    for &leaf in &done.unsettled {
                        settled.remove(leaf);
                    }
                    round.compared += done.compared;
                    round.repaired += done.repaired;
                    round.bytes += done.bytes;
                }
                Err(e) => {
                    round.everyone = false;
                    tracing::debug!(partition = p, peer = %replica.peer_addr, "anti-entropy exchange failed: {e}");
                }
            }
        }
        if round.everyone {
            self.store.settle_round(p, start, settled);
        }
        round
    }

    /// Compares partition `p` with `replica`'s and repairs what differs.
    /// In the `background`, a small difference is looked at twice (see
    /// below); an operator's repair goes straight on.
    async fn exchange(&self, p: u32, replica: &Member, pace: &mut Pace, background: bool) -> Result<Exchanged, String> {
        let mut done = Exchanged::default();
        // Both must have seen the same FLUSHALLs, now and at every merge,
        // or a repair could bring back what a flush removed.
        let flushes = self.store.flushes();
        let (root, branches) = self.store.tree_branches(p);
        let request = KvRequest::TreeBranches { partition: p, flushes };
        let (their_root, their_branches) = match self.ask(replica, request, &mut done).await? {
            KvResponse::Branches { root, branches } if branches.len() == BRANCHES => (root, branches),
            other => return Err(format!("unexpected answer {other:?}")),
        };
        if root == their_root {
            return Ok(done);
        }
        let differing: Vec<usize> = (0..BRANCHES).filter(|&b| branches[b] != their_branches[b]).collect();
        if differing.is_empty() {
            return Ok(done);
        }
        let mut leaves = self.differing_leaves(p, replica, &differing, &mut done).await?;
        if background && (1..=LEAF_PAGE).contains(&leaves.len()) {
            // Writes still on their way to the third replica make a few
            // leaves differ for a moment: look again shortly, and list only
            // the leaves that still differ, rather than repair what
            // replication is about to bring anyway.
            tokio::time::sleep(IN_FLIGHT_WAIT).await;
            let again = self.differing_leaves(p, replica, &differing, &mut done).await?;
            leaves.retain(|l| again.binary_search(l).is_ok());
        }
        let partitioner = self.membership.view().partitioner();
        for page in leaves.chunks(LEAF_PAGE) {
            let request = KvRequest::LeafKeys { partition: p, leaves: page.iter().map(|&l| l as u32).collect() };
            let theirs = match self.ask(replica, request, &mut done).await? {
                KvResponse::KeyDigests(keys) => keys,
                other => return Err(format!("unexpected answer {other:?}")),
            };
            done.pace(pace, 0).await;
            let mine = self.store.leaf_digests(p, page.to_vec()).await.map_err(|e| e.to_string())?;
            // The keys whose digests differ, or that one side lacks.
            let digests = |list: &[(Bytes, u64, u64)]| -> HashMap<Bytes, u64> {
                list.iter().map(|(k, _, d)| (k.clone(), *d)).collect()
            };
            done.compared += (mine.len() + theirs.len()) as u64;
            let (mine, theirs) = (digests(&mine), digests(&theirs));
            let mut keys: Vec<Bytes> =
                mine.iter().filter(|(k, d)| theirs.get(*k) != Some(*d)).map(|(k, _)| k.clone()).collect();
            keys.extend(theirs.keys().filter(|k| !mine.contains_key(*k)).cloned());
            for chunk in keys.chunks(IN_FLIGHT) {
                let results = join_all(chunk.iter().map(|key| self.repair(replica, key, flushes)).collect()).await;
                for (key, r) in chunk.iter().zip(results) {
                    let (changed, bytes) = r?;
                    done.bytes += bytes;
                    if changed > 0 {
                        done.repaired += changed;
                        done.unsettled.push(leaf_of(partitioner, crate::ring::key_hash(key)));
                    }
                }
                done.pace(pace, chunk.len() as u64).await;
            }
        }
        done.pace(pace, 0).await;
        Ok(done)
    }

    /// The leaves of `branches` of partition `p` in which this node's tree
    /// and `replica`'s differ, in order.
    async fn differing_leaves(
        &self,
        p: u32,
        replica: &Member,
        branches: &[usize],
        done: &mut Exchanged,
    ) -> Result<Vec<usize>, String> {
        let request = KvRequest::TreeLeaves { partition: p, branches: branches.iter().map(|&b| b as u32).collect() };
        let theirs = match self.ask(replica, request, done).await? {
            KvResponse::Leaves(leaves) => leaves,
            other => return Err(format!("unexpected answer {other:?}")),
        };
        let mine = self.store.tree_leaves(p, branches);
        Ok(branches
            .iter()
            .enumerate()
            .flat_map(|(n, &b)| {
                (0..LEAVES_PER_BRANCH).map(move |i| (n * LEAVES_PER_BRANCH + i, b * LEAVES_PER_BRANCH + i))
            })
            .filter(|&(at, _)| mine.get(at) != theirs.get(at))
            .map(|(_, leaf)| leaf)
            .collect())
    }

    /// Makes this node's copy of `key` and `replica`'s the merge of both:
    /// how many of the two changed, and the bytes it took.
    async fn repair(&self, replica: &Member, key: &Bytes, flushes: u64) -> Result<(u64, u64), String> {
        // The position is this node's own reckoning, not the peer's.
        if key.len() > MAX_KEY_LEN {
            return Ok((0, 0));
        }
        let hash = crate::ring::key_hash(key);
        let mut spent = Exchanged::default();
        let mine = self.store.get(hash, key).await.map_err(|e| e.to_string())?;
        let theirs = match self.ask(replica, KvRequest::Read { key: key.clone() }, &mut spent).await? {
            KvResponse::Object(o) => o,
            other => return Err(format!("unexpected answer {other:?}")),
        };
        metrics::add(&self.metrics.ae_keys_fetched, 1);
        // A dead object past its grace is not copied to a side that holds
        // nothing of the key (see the module docs).
        let now = crate::clock::now_ms();
        match (&mine, &theirs) {
            (None, Some(t)) | (Some(t), None) if self.store.removable(t, now) => return Ok((0, spent.bytes)),
            _ => {}
        }
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
            match self.ask(replica, KvRequest::Repair { key: key.clone(), object, flushes }, &mut spent).await? {
                KvResponse::Done => changed += 1,
                other => return Err(format!("unexpected answer {other:?}")),
            }
            metrics::add(&self.metrics.ae_keys_sent, 1);
        }
        Ok((changed, spent.bytes))
    }

    /// One request on the bulk lane, counted.
    async fn ask(&self, replica: &Member, request: KvRequest, spent: &mut Exchanged) -> Result<KvResponse, String> {
        let answer = self.peers.bulk_kv(&replica.peer_addr, request, self.timeout).await;
        metrics::add(&self.metrics.ae_messages, 1);
        let (response, Traffic { sent, received }) = answer.map_err(|e| e.to_string())?;
        metrics::add(&self.metrics.ae_bytes_sent, sent as u64);
        metrics::add(&self.metrics.ae_bytes_received, received as u64);
        spent.bytes += (sent + received) as u64;
        Ok(response)
    }
}
