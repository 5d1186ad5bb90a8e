//! What this node does when a peer asks: read or merge its copy of a key,
//! coordinate a write forwarded to it, scan or count what it holds. The
//! key-value subsystem's side of the peer protocol.

use std::sync::Arc;

use bytes::Bytes;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::metrics;
use crate::mutation::{Mutation, Outcome};
use crate::rpc::{KvRequest, KvResponse, PartitionCount, Response};
use crate::version::{Context, Encoded, NodeId, Object};

use super::Coordinator;
use super::replicas::{self, Placement};

/// Why anti-entropy requests are refused across a FLUSHALL.
const NOT_A_REPLICA: &str = "this node is not a replica of the partition (as it sees the ring)";
const FLUSHED: &str = "the replicas have not seen the same FLUSHALLs; no repair across a flush";
/// Why anti-entropy requests are refused for a partition whose tree is
/// still being rebuilt after a crash: a partial tree would look like
/// missing keys. The asker counts the partition as not compared.
const REBUILDING: &str = "this partition's hash tree is still being rebuilt; compare it later";

/// The most keys, and about the most bytes, a page of a transfer holds.
const TRANSFER_PAGE_KEYS: usize = 1000;
const TRANSFER_PAGE_BYTES: usize = 1 << 20;

/// A page of a transfer: keys, positions, objects; where the next starts.
type TransferPage = (Vec<(Bytes, u64, Encoded)>, Option<u64>);

/// Refuses a peer's request with TRYAGAIN.
fn refused(why: &str) -> Response {
    Response::Error(Error::TryAgain(why.into()).resp_message())
}

/// A peer's list of branch or leaf numbers, each below `below`, without
/// repeats, in order (so a request costs at most one pass over each).
fn distinct(list: Vec<u32>, below: usize) -> Vec<usize> {
    let mut list: Vec<usize> = list.into_iter().map(|n| n as usize).filter(|&n| n < below).collect();
    list.sort_unstable();
    list.dedup();
    list
}

/// A peer's answer: the response, or the error as a RESP error line.
fn answer<T>(result: Result<T>, ok: impl FnOnce(T) -> KvResponse) -> Response {
    match result {
        Ok(v) => Response::Kv(ok(v)),
        Err(e) => Response::Error(e.resp_message()),
    }
}

impl Coordinator {
    /// Answers a peer's key-value request.
    pub async fn serve_peer(&self, request: KvRequest) -> Response {
        match request {
            KvRequest::Read { key } => answer(self.replica_read(&key).await, KvResponse::Object),
            KvRequest::Digest { key } => {
                answer(self.replica_read(&key).await, |o| KvResponse::Digest(o.map(|o| o.digest())))
            }
            KvRequest::Merge { key, object } => {
                answer(self.replica_merge(&key, Arc::clone(object.object())).await, |()| KvResponse::Done)
            }
            KvRequest::Hint { key, target, object } => {
                answer(self.fallback_keep(&key, target, Arc::clone(object.object())).await, |()| KvResponse::Done)
            }
            KvRequest::HintRead { key, target } => answer(self.fallback_read(&key, target).await, KvResponse::Object),
            KvRequest::Hinted { key } => answer(self.hinted(&key).await, KvResponse::Hinted),
            // Anti-entropy: this node's hash trees and what their leaves hold.
            KvRequest::TreeBranches { partition, .. }
            | KvRequest::TreeLeaves { partition, .. }
            | KvRequest::LeafKeys { partition, .. }
                if !self.store.tree_ready(partition) =>
            {
                refused(REBUILDING)
            }
            KvRequest::TreeBranches { partition, flushes } => {
                if flushes != self.store.flushes() {
                    return refused(FLUSHED);
                }
                // Only a replica compares: what another node holds of the
                // partition (a leftover, a fallback's own copy) is not a
                // replica's copy to repair, nor to vouch for tombstones.
                if !self.view().is_replica(partition, self.store.node_id()) {
                    return refused(NOT_A_REPLICA);
                }
                let (root, branches) = self.store.tree_branches(partition);
                Response::Kv(KvResponse::Branches { root, branches: branches.to_vec() })
            }
            KvRequest::TreeLeaves { partition, branches } => {
                let branches = distinct(branches, crate::antientropy::tree::BRANCHES);
                Response::Kv(KvResponse::Leaves(self.store.tree_leaves(partition, &branches)))
            }
            KvRequest::LeafKeys { partition, leaves } => answer(
                self.store.leaf_digests(partition, distinct(leaves, crate::antientropy::tree::LEAVES)).await,
                KvResponse::KeyDigests,
            ),
            KvRequest::Repair { key, object, flushes } => {
                let repaired = match super::locate(&key) {
                    Ok(hash) => self.store.merge_unless_flushed(flushes, hash, &key, Arc::clone(object.object())).await,
                    Err(e) => Err(e),
                };
                match repaired {
                    Ok(_) if flushes != self.store.flushes() => refused(FLUSHED),
                    other => answer(other, |_| KvResponse::Done),
                }
            }
            KvRequest::Write { key, mutation } => {
                answer(self.forwarded_write(&key, mutation).await, KvResponse::Outcome)
            }
            KvRequest::WriteVersions { key, context, value, ttl_ms, w, pw } => answer(
                self.forwarded_write_versions(
                    &key,
                    context,
                    value,
                    ttl_ms,
                    w.map(|w| w as usize),
                    pw.map(|w| w as usize),
                )
                .await,
                |(context, superseded)| KvResponse::Written { context, superseded: superseded as u64 },
            ),
            KvRequest::Scan { from, to, count, pattern } => {
                answer(self.scan_local(from, to, count as usize, pattern.as_ref()).await, |(keys, examined, next)| {
                    KvResponse::Keys { keys, examined: u32::try_from(examined).unwrap_or(u32::MAX), next }
                })
            }
            KvRequest::Tallies => Response::Kv(KvResponse::Tallies(self.local_tallies())),
            KvRequest::FlushAll => answer(self.store.flush_all().await, |()| KvResponse::Done),
            KvRequest::TransferPage { partition, from, max_keys } => {
                // Only a current replica's copy is whole enough to hand over.
                if !self.view().is_replica(partition, self.store.node_id()) {
                    return refused(NOT_A_REPLICA);
                }
                answer(self.transfer_page(partition, from, max_keys).await, |(entries, next)| KvResponse::Page {
                    entries,
                    next,
                })
            }
        }
    }

    /// A page of partition `p`'s objects from position `from` on, in key
    /// order: at most `max_keys` keys (and [`TRANSFER_PAGE_KEYS`]), and no
    /// more than [`TRANSFER_PAGE_BYTES`] of objects past the first
    /// position; and the position the next page starts at.
    async fn transfer_page(&self, p: u32, from: u64, max_keys: u32) -> Result<TransferPage> {
        let partitioner = self.view().partitioner();
        if p >= partitioner.count() {
            return Err(Error::Command("ERR no such partition".into()));
        }
        let (start, end) = (from.max(partitioner.start(p)), partitioner.end(p));
        if from > end {
            return Ok((Vec::new(), None));
        }
        let limit = (max_keys as usize).clamp(1, TRANSFER_PAGE_KEYS);
        let (entries, mut next) = self.store.scan(start, end, limit).await?;
        let mut page = Vec::with_capacity(entries.len());
        let mut bytes = 0;
        for e in entries {
            let last = page.last().map(|(_, hash, _): &(Bytes, u64, Encoded)| *hash);
            if bytes >= TRANSFER_PAGE_BYTES && last != Some(e.hash) {
                next = Some(e.hash);
                break;
            }
            let object = Encoded::new(e.object);
            bytes += e.key.len() + object.bytes().len();
            page.push((e.key, e.hash, object));
        }
        Ok((page, next))
    }

    /// This node's copy of `key`.
    ///
    /// # Errors
    /// Too long a key, or a storage failure.
    pub async fn replica_read(&self, key: &Bytes) -> Result<Option<Arc<Object>>> {
        let hash = super::locate(key)?;
        self.store.get(hash, key).await
    }

    /// Merges a coordinator's object into this node's copy of `key`.
    ///
    /// # Errors
    /// Too long a key, or a storage failure.
    pub async fn replica_merge(&self, key: &Bytes, object: Arc<Object>) -> Result<()> {
        let hash = super::locate(key)?;
        self.store.merge(hash, key, object).await.map(|_| ())
    }

    /// Keeps a coordinator's object on behalf of `target`, a replica of the
    /// key that is down, which this node stands in for.
    ///
    /// # Errors
    /// Too long a key, the bounds on hints for `target` reached, or a
    /// storage failure.
    pub async fn fallback_keep(&self, key: &Bytes, target: NodeId, object: Arc<Object>) -> Result<()> {
        let hash = super::locate(key)?;
        match replicas::keep_for(&self.store, target, hash, key, object).await? {
            Ok(()) => {
                metrics::add(&self.metrics.hints_stored, 1);
                Ok(())
            }
            Err(overflow) => {
                self.hint_refused(target, hash, overflow).await;
                Err(replicas::overflowed(target, overflow))
            }
        }
    }

    /// What this node holds of `key` standing in for `target`.
    ///
    /// # Errors
    /// Too long a key, or a storage failure.
    pub async fn fallback_read(&self, key: &Bytes, target: NodeId) -> Result<Option<Arc<Object>>> {
        let hash = super::locate(key)?;
        replicas::read_standing_in(&self.store, &self.membership.view(), target, hash, key).await
    }

    /// The members this node keeps a hint about `key` for.
    ///
    /// # Errors
    /// Too long a key, or a storage failure.
    pub async fn hinted(&self, key: &Bytes) -> Result<Vec<NodeId>> {
        let hash = super::locate(key)?;
        let members = self.membership.view().members.iter().map(|m| m.id).collect();
        self.store.hinted_for(hash, key, members).await
    }

    /// Coordinates a plain write another node forwarded here. A node that
    /// does not see itself as a replica refuses with TRYAGAIN (the two
    /// nodes' views of the cluster differ for a moment) rather than forward
    /// it on.
    ///
    /// # Errors
    /// As [`write`](Self::write), or TRYAGAIN.
    pub async fn forwarded_write(&self, key: &Bytes, mutation: Mutation) -> Result<Outcome> {
        let place = self.place_here(key)?;
        self.coordinate_write(key, &place, mutation).await
    }

    /// Coordinates a context write another node forwarded here.
    ///
    /// # Errors
    /// As [`write_versions`](Self::write_versions), or TRYAGAIN.
    pub async fn forwarded_write_versions(
        &self,
        key: &Bytes,
        context: Context,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        w: Option<usize>,
        pw: Option<usize>,
    ) -> Result<(Context, usize)> {
        let place = self.place_here(key)?;
        let need = place.need(super::quorum_of(w, self.settings.w, &place, "W")?, super::primaries_of(pw, &place)?);
        self.coordinate_versions(key, &place, context, value, ttl_ms, need).await
    }

    /// The key's placement, which must include this node: a peer forwarded
    /// the write here because its view said so, and a view that disagrees
    /// is changing.
    fn place_here(&self, key: &Bytes) -> Result<Placement> {
        let place = self.place(key)?;
        if place.me.is_none() {
            return Err(Error::TryAgain(super::VIEW_CHANGING.into()));
        }
        Ok(place)
    }

    /// Live keys this node holds with positions in `from..=to`, examining
    /// about `count`: `(keys, examined, next position)`.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn scan_local(
        &self,
        from: u64,
        to: u64,
        count: usize,
        pattern: Option<&Bytes>,
    ) -> Result<(Vec<Bytes>, usize, Option<u64>)> {
        let (entries, next) = self.store.scan(from, to, count).await?;
        let now = now_ms();
        let examined = entries.len();
        let keys = entries
            .into_iter()
            .filter(|e| e.object.live(now).is_some())
            .filter(|e| pattern.is_none_or(|pat| crate::glob::matches(pat, &e.key, false)))
            .map(|e| e.key)
            .collect();
        Ok((keys, examined, next))
    }

    /// Key counts of every partition this node holds keys of.
    #[must_use]
    pub fn local_tallies(&self) -> Vec<PartitionCount> {
        let q = self.membership.view().partitioner().count();
        (0..q)
            .filter_map(|p| {
                let t = self.store.partition_tally(p);
                (t.keys > 0).then_some(PartitionCount { partition: p, keys: t.keys as u64 })
            })
            .collect()
    }
}
