//! Hints: writes this node holds for other nodes that missed them.
//!
//! Each shard's `hints` keyspace keeps one entry per (target node, key):
//! under the target's id (big-endian) followed by the data key, the time
//! the hint was first taken, a token renewed each time it is taken again,
//! and, for a hint kept by a fallback standing in for a replica (sloppy
//! quorum), the object written on the replica's behalf. A coordinator's
//! hint carries no object: the coordinator is a replica and holds the key
//! in its own data. Hints live beside the data they concern (the same
//! shard, the same journal), so they are durable with the batch that
//! writes them.
//!
//! Hints per target are bounded by age (the oldest pending hint) and by
//! bytes: past either, a new hint is refused ([`Overflow`]), and the
//! caller records the partition as needing repair
//! ([`Store::mark_for_repair`]), which is kept in `meta` for anti-entropy
//! to compare first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use fjall::Keyspace;

use super::meta::storage;
use super::shard::Shard;
use super::{Shared, Store, data_key, split_data_key};
use crate::error::{Error, Result};
use crate::version::{Encoded, NodeId, Object};

/// Where `meta` keeps the partitions needing repair.
const REPAIR: &str = "repair";

/// A write this node holds for a node that missed it.
#[derive(Clone, Debug)]
pub struct Hint {
    pub hash: u64,
    pub key: Bytes,
    /// When the hint was taken, in milliseconds since the epoch.
    pub since: u64,
    /// Renewed each time the hint is taken again.
    token: u64,
    /// What a fallback holds on the target's behalf; `None` for a
    /// coordinator's hint (the write is in this node's data).
    pub object: Option<Arc<Object>>,
}

/// A stored hint's value: since, token, then the object if any.
fn parse(v: &[u8]) -> (u64, u64) {
    let word = |at: usize| v.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
    (word(0), word(8))
}

fn parse_object(v: &[u8]) -> Result<Option<Arc<Object>>> {
    match v.get(16..) {
        None | Some([]) => Ok(None),
        Some(bytes) => Object::decode(&Bytes::copy_from_slice(bytes))
            .map(|o| Some(Arc::new(o)))
            .map_err(|e| Error::Storage(format!("corrupt hint: {e}"))),
    }
}

fn value(since: u64, object: Option<&Encoded>) -> Bytes {
    let body = object.map_or(&[][..], |o| o.bytes());
    let mut v = BytesMut::with_capacity(16 + body.len());
    v.put_u64(since);
    v.put_u64(crate::random::random_u64());
    v.put_slice(body);
    v.freeze()
}

/// Where a hint for `target` about data key `data_key` is kept.
fn hint_key(target: NodeId, data_key: &[u8]) -> Bytes {
    let mut k = BytesMut::with_capacity(8 + data_key.len());
    k.put_u64(target.0);
    k.put_slice(data_key);
    k.freeze()
}

/// What this node holds for one target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HintTally {
    pub count: u64,
    /// Keys and values, as stored.
    pub bytes: u64,
    /// When the oldest hint held was taken (ms since the epoch; 0 when
    /// none is held).
    pub oldest: u64,
}

/// How much a node keeps for one target at most.
#[derive(Clone, Copy, Debug)]
pub struct HintBounds {
    /// New hints are refused once the oldest held is this old (ms).
    pub window_ms: u64,
    /// New hints are refused once those held would take more bytes.
    pub max_bytes: u64,
}

impl Default for HintBounds {
    fn default() -> Self {
        Self { window_ms: 3 * 3600 * 1000, max_bytes: 1 << 30 }
    }
}

/// Why a hint was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The target's oldest hint is older than the window.
    Age,
    /// The target's hints would take more bytes than allowed.
    Bytes,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Age => "its oldest hint is older than the hint window",
            Self::Bytes => "its hints would exceed the bytes allowed",
        })
    }
}

/// What is held for one target, with the times hints were taken (so the
/// oldest is known exactly as hints come and go).
#[derive(Default)]
struct Held {
    count: u64,
    bytes: u64,
    /// How many hints were taken in each second (ms since the epoch /
    /// 1000): one entry per second at most, however many hints.
    taken: BTreeMap<u64, u64>,
}

impl Held {
    fn tally(&self) -> HintTally {
        let oldest = self.taken.keys().next().map_or(0, |s| s * 1000);
        HintTally { count: self.count, bytes: self.bytes, oldest }
    }

    fn add(&mut self, size: u64, since: u64) {
        self.count += 1;
        self.bytes += size;
        *self.taken.entry(since / 1000).or_default() += 1;
    }
}

/// The hints held per target, and the bounds on them.
pub(super) struct Hints {
    held: HashMap<NodeId, Held>,
    pub bounds: HintBounds,
}

/// The key in `meta` recording that partition `p` needs repair: one key
/// per partition, so marking or forgetting one writes a few bytes whatever
/// the partition count.
fn repair_key(p: u32) -> Vec<u8> {
    let mut k = REPAIR.as_bytes().to_vec();
    k.push(b':');
    k.extend_from_slice(&p.to_be_bytes());
    k
}

/// The partitions recorded in `meta` as needing repair. (An earlier build
/// kept them as one list under `repair`: it is rewritten as keys of their
/// own.)
pub(super) fn needing_repair(meta: &Keyspace) -> Result<BTreeSet<u32>> {
    if let Some(list) = meta.get(REPAIR).map_err(storage)? {
        let old: Vec<u32> =
            list.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().unwrap_or_default())).collect();
        save_repair_record(meta, &old, &[])?;
        meta.remove(REPAIR).map_err(storage)?;
    }
    let mut record = BTreeSet::new();
    for kv in meta.prefix(repair_key(0).get(..REPAIR.len() + 1).unwrap_or_default()) {
        let k = kv.key().map_err(storage)?;
        if let Some(p) = k.get(REPAIR.len() + 1..).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
            record.insert(u32::from_be_bytes(p));
        }
    }
    Ok(record)
}

/// Records `added` as needing repair and forgets `removed`, in `meta` (the
/// caller persists it).
pub(super) fn save_repair_record(meta: &Keyspace, added: &[u32], removed: &[u32]) -> Result<()> {
    for &p in added {
        meta.insert(repair_key(p), []).map_err(storage)?;
    }
    for &p in removed {
        meta.remove(repair_key(p)).map_err(storage)?;
    }
    Ok(())
}

impl Hints {
    pub fn open(shards: &[Shard], bounds: HintBounds) -> Self {
        Self { held: count(shards), bounds }
    }

    /// Why a new hint of `bytes` for `target` must be refused, if it must.
    /// (A hint taken again is never refused: it replaces one held.)
    fn check(&self, target: NodeId, bytes: u64, now: u64) -> Option<Overflow> {
        let t = self.held.get(&target).map(Held::tally).unwrap_or_default();
        if t.count > 0 && now.saturating_sub(t.oldest) > self.bounds.window_ms {
            return Some(Overflow::Age);
        }
        (t.bytes + bytes > self.bounds.max_bytes).then_some(Overflow::Bytes)
    }

    /// Counts a hint of `size` bytes taken at `since`, replacing one of
    /// `before` bytes (`None`: a new one).
    fn put(&mut self, target: NodeId, before: Option<u64>, size: u64, since: u64) {
        let held = self.held.entry(target).or_default();
        match before {
            Some(b) => held.bytes = held.bytes.saturating_sub(b) + size,
            None => held.add(size, since),
        }
    }

    /// Counts a hint of `size` bytes taken at `since` gone.
    fn remove(&mut self, target: NodeId, size: u64, since: u64) {
        let Some(held) = self.held.get_mut(&target) else { return };
        held.count = held.count.saturating_sub(1);
        held.bytes = held.bytes.saturating_sub(size);
        if let Some(n) = held.taken.get_mut(&(since / 1000)) {
            *n -= 1;
            if *n == 0 {
                held.taken.remove(&(since / 1000));
            }
        }
        if held.count == 0 {
            self.held.remove(&target);
        }
    }

    pub fn recount(&mut self, shards: &[Shard]) {
        self.held = count(shards);
    }
}

/// The hints `shards` hold, by the node they are for.
fn count(shards: &[Shard]) -> HashMap<NodeId, Held> {
    let mut held: HashMap<NodeId, Held> = HashMap::new();
    for shard in shards {
        for kv in shard.hints.iter() {
            let Ok((k, v)) = kv.into_inner() else { continue };
            let Some(target) = k.first_chunk::<8>() else { continue };
            held.entry(NodeId(u64::from_be_bytes(*target))).or_default().add((k.len() + v.len()) as u64, parse(&v).0);
        }
    }
    held
}

impl Shared {
    pub(super) fn hints(&self) -> std::sync::MutexGuard<'_, Hints> {
        self.hints.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store {
    /// Records that `target` missed the write of `key` (at ring position
    /// `hash`), which this node, one of its replicas, holds in its data:
    /// a hint, made durable with its shard's next batch, until
    /// [`remove_hint`](Self::remove_hint). Taking it again keeps the first
    /// time it was taken (and any object a fallback kept) but renews its
    /// token, so a delivery under way does not remove it.
    ///
    /// # Errors
    /// Storage failures, or shutdown. `Ok(Err(_))`: refused, past the
    /// bounds for `target`.
    pub async fn add_hint(&self, target: NodeId, hash: u64, key: &[u8]) -> Result<Result<(), Overflow>> {
        self.keep_hint(target, hash, key, None).await
    }

    /// Keeps `object`, written on behalf of `target` (a replica of the key
    /// this node stands in for), merged into what this node already keeps
    /// for it, durably before it returns.
    ///
    /// # Errors
    /// As [`add_hint`](Self::add_hint).
    pub async fn keep_for(
        &self,
        target: NodeId,
        hash: u64,
        key: &[u8],
        object: Arc<Object>,
    ) -> Result<Result<(), Overflow>> {
        self.keep_hint(target, hash, key, Some(object)).await
    }

    async fn keep_hint(
        &self,
        target: NodeId,
        hash: u64,
        key: &[u8],
        object: Option<Arc<Object>>,
    ) -> Result<Result<(), Overflow>> {
        let k = hint_key(target, &data_key(hash, key));
        self.run(hash, move |w| {
            let now = crate::clock::now_ms();
            let before = w.shard.hints.get(&k).map_err(storage)?;
            let (since, kept) = match &before {
                Some(v) => (parse(v).0, parse_object(v)?),
                None => (now, None),
            };
            let merged = match (kept, object) {
                (Some(mut kept), Some(new)) => {
                    if !kept.changed_by(&new) {
                        // Already held: renew the token only.
                        Some(kept)
                    } else {
                        Arc::make_mut(&mut kept).merge(&new);
                        Some(kept)
                    }
                }
                (kept, new) => kept.or(new),
            };
            let v = value(since, merged.map(|o| Encoded::new(Arc::unwrap_or_clone(o))).as_ref());
            let size = (k.len() + v.len()) as u64;
            let before_size = before.as_ref().map(|b| (k.len() + b.len()) as u64);
            // Checked and counted at once (workers of other shards may be
            // taking hints for the same target); undone if the write fails.
            let mut hints = w.shared.hints();
            if before_size.is_none()
                && let Some(overflow) = hints.check(target, size, now)
            {
                return Ok(Err(overflow));
            }
            hints.put(target, before_size, size, since);
            drop(hints);
            if let Err(e) = w.shard.hints.insert(k, v) {
                let mut hints = w.shared.hints();
                match before_size {
                    Some(b) => hints.put(target, Some(size), b, since),
                    None => hints.remove(target, size, since),
                }
                return Err(storage(e));
            }
            w.dirty = true;
            Ok(Ok(()))
        })
        .await
    }

    /// What this node keeps for `key` on behalf of any of `targets`,
    /// merged.
    ///
    /// # Errors
    /// Storage failures, a corrupt hint, or shutdown.
    pub async fn kept_for_any(&self, targets: Vec<NodeId>, hash: u64, key: &[u8]) -> Result<Option<Arc<Object>>> {
        let k = data_key(hash, key);
        self.run(hash, move |w| {
            let mut merged: Option<Arc<Object>> = None;
            for t in targets {
                let Some(v) = w.shard.hints.get(hint_key(t, &k)).map_err(storage)? else { continue };
                let Some(kept) = parse_object(&v)? else { continue };
                match &mut merged {
                    None => merged = Some(kept),
                    Some(m) if m.changed_by(&kept) => Arc::make_mut(m).merge(&kept),
                    Some(_) => {}
                }
            }
            Ok(merged)
        })
        .await
    }

    /// Which of `targets` this node holds a hint about `key` for.
    ///
    /// # Errors
    /// Storage failures, or shutdown.
    pub async fn hinted_for(&self, hash: u64, key: &[u8], targets: Vec<NodeId>) -> Result<Vec<NodeId>> {
        let k = data_key(hash, key);
        self.run(hash, move |w| {
            let mut held = Vec::new();
            for t in targets {
                if w.shard.hints.contains_key(hint_key(t, &k)).map_err(storage)? {
                    held.push(t);
                }
            }
            Ok(held)
        })
        .await
    }

    /// Forgets `hint`, unless it was taken again since it was read (a
    /// newer write the target also missed): the write reached its target
    /// (or no longer concerns it). True if it was removed.
    ///
    /// # Errors
    /// Storage failures, or shutdown.
    pub async fn remove_hint(&self, target: NodeId, hint: &Hint) -> Result<bool> {
        let k = hint_key(target, &data_key(hint.hash, &hint.key));
        let token = hint.token;
        self.run(hint.hash, move |w| {
            let Some(v) = w.shard.hints.get(&k).map_err(storage)? else { return Ok(false) };
            if parse(&v).1 != token {
                return Ok(false);
            }
            w.shard.hints.remove(k.clone()).map_err(storage)?;
            w.shared.hints().remove(target, (k.len() + v.len()) as u64, parse(&v).0);
            w.dirty = true;
            Ok(true)
        })
        .await
    }

    /// Up to `limit` hints for `target`, in key order (ring position,
    /// then key) over all shards, starting after the hint `after` (a
    /// cursor: the last hint of the previous call, so that a delivery
    /// walks past the hints it removed instead of reading their
    /// tombstones again).
    ///
    /// # Errors
    /// Storage failures, or shutdown.
    pub async fn hints_for(&self, target: NodeId, after: Option<&Hint>, limit: usize) -> Result<Vec<Hint>> {
        let shared = Arc::clone(&self.shared);
        let start = after.map(|h| hint_key(target, &data_key(h.hash, &h.key)));
        tokio::task::spawn_blocking(move || -> Result<Vec<Hint>> {
            let prefix = target.0.to_be_bytes();
            let mut out = Vec::new();
            for shard in &shared.shards {
                let iter = match &start {
                    Some(from) => shard
                        .hints
                        .range::<&[u8], _>((std::ops::Bound::Excluded(&from[..]), std::ops::Bound::Unbounded)),
                    None => shard.hints.prefix(prefix),
                };
                for kv in iter.take(limit) {
                    let (k, v) = kv.into_inner().map_err(storage)?;
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    let Some((hash, key)) = k.get(8..).and_then(split_data_key) else { continue };
                    let (since, token) = parse(&v);
                    let object = parse_object(&v)?;
                    out.push(Hint { hash, key: Bytes::copy_from_slice(key), since, token, object });
                }
            }
            out.sort_by(|a, b| (a.hash, &a.key).cmp(&(b.hash, &b.key)));
            out.truncate(limit);
            Ok(out)
        })
        .await
        .map_err(|_| Error::ShuttingDown)?
    }

    /// Hints held, for every target.
    #[must_use]
    pub fn hints_held(&self) -> u64 {
        self.shared.hints().held.values().map(|t| t.count).sum()
    }

    /// Hints held for `target`.
    #[must_use]
    pub fn hints_held_for(&self, target: NodeId) -> u64 {
        self.hint_tally(target).count
    }

    /// What is held for `target`.
    #[must_use]
    pub fn hint_tally(&self, target: NodeId) -> HintTally {
        self.shared.hints().held.get(&target).map(Held::tally).unwrap_or_default()
    }

    /// What is held, per target.
    #[must_use]
    pub fn hint_tallies(&self) -> Vec<(NodeId, HintTally)> {
        let mut all: Vec<_> = self.shared.hints().held.iter().map(|(t, h)| (*t, h.tally())).collect();
        all.sort_unstable_by_key(|(t, _)| *t);
        all
    }

    /// Records that partition `p` needs repair (a hint was refused), in
    /// `meta`, for anti-entropy to compare first, until it has compared
    /// the partition with every other replica. True if it was not
    /// recorded yet.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn mark_for_repair(&self, p: u32) -> Result<bool> {
        self.change_repair_record(p, true).await
    }

    /// Forgets that partition `p` needs repair (anti-entropy repaired it
    /// on every replica). True if it was recorded.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn unmark_repaired(&self, p: u32) -> Result<bool> {
        self.change_repair_record(p, false).await
    }

    /// Records (`needed`) or forgets that partition `p` needs repair, if
    /// that changes anything. A mark is made durable at once (it may stand
    /// for a refused hint); forgetting is not (a mark lost means one more
    /// comparison).
    async fn change_repair_record(&self, p: u32, needed: bool) -> Result<bool> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            // Its own lock, not the hints' (which the storage workers take).
            let mut record = shared.repair.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if needed {
                shared.repair_marks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !record.insert(p) {
                    return Ok(false);
                }
                save_repair_record(&shared.meta, &[p], &[])?;
            } else {
                if !record.remove(&p) {
                    return Ok(false);
                }
                save_repair_record(&shared.meta, &[], &[p])?;
                return Ok(true);
            }
            drop(record);
            shared.root.persist(fjall::PersistMode::SyncAll).map_err(storage)?;
            Ok(true)
        })
        .await
        .map_err(|_| Error::ShuttingDown)?
    }

    /// The partitions recorded as needing repair.
    #[must_use]
    pub fn partitions_needing_repair(&self) -> Vec<u32> {
        self.shared.repair.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().copied().collect()
    }

    /// How many times a partition was marked for repair (already marked or
    /// not) since the store opened: a comparison that saw it unchanged
    /// from its start to its end may forget its partition's mark.
    #[must_use]
    pub fn repair_marks(&self) -> u64 {
        self.shared.repair_marks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether partition `p` is recorded as needing repair.
    #[must_use]
    pub fn needs_repair(&self, p: u32) -> bool {
        self.shared.repair.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&p)
    }
}
