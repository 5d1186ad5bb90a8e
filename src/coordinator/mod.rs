//! The coordinator: turns a client's reads and writes of keys into reads
//! and writes of the key's replicas, and decides what the client sees.
//!
//! A key's replicas are the first N nodes of its preference list on the
//! ring. Today the ring has one member (N = R = W = 1), so the only replica
//! is the local store; the request path already has the cluster's shape:
//! locate the key on the ring, read objects and pick what the client sees,
//! or apply a [`Mutation`] to the current winner and store the new version
//! under a fresh dot of this node.
//!
//! Writes are read-modify-writes of the whole object inside the store's
//! per-key serialization, so the dot, the superseded siblings and the new
//! value are decided atomically.

use std::sync::Arc;

use bytes::Bytes;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::join::join_all;
use crate::metrics::{self, Metrics};
use crate::mutation::{Current, Effect, Mutation, Outcome};
use crate::ring::{Ring, key_hash};
use crate::storage::{Change, MAX_KEY_LEN, Store, Tally};
use crate::version::{Context, NodeId, Object, Sibling};

/// Siblings beyond which a write is logged and counted as a warning.
pub const SIBLING_WARNING: usize = 25;

/// Limits the coordinator enforces.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Writes that would leave a key with more siblings are refused.
    pub max_siblings: usize,
}

/// A key's versions as the context commands see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    /// The key's whole causal history.
    pub context: Context,
    /// Every live sibling value, oldest first.
    pub values: Vec<Bytes>,
}

/// A key's value as plain commands see it: the live winner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub data: Bytes,
    pub expires_at: Option<u64>,
}

pub struct Coordinator {
    ring: Ring,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    settings: Settings,
}

/// Where a key lives: its ring position, checked for length.
fn locate(key: &[u8]) -> Result<u64> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLong(key.len()));
    }
    Ok(key_hash(key))
}

fn value_of(object: Option<&Object>, now: u64) -> Option<Value> {
    let s = object?.live(now)?;
    Some(Value { data: s.value.clone()?, expires_at: s.expires_at })
}

impl Coordinator {
    #[must_use]
    pub fn new(ring: Ring, store: Arc<Store>, metrics: Arc<Metrics>, settings: Settings) -> Self {
        Self { ring, store, metrics, settings }
    }

    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.store.node_id()
    }

    #[must_use]
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The live value of `key`, if any.
    ///
    /// # Errors
    /// Too long a key, or a storage failure.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        let hash = locate(key)?;
        metrics::add(&self.metrics.reads_coordinated, 1);
        let object = self.store.get(hash, key).await?;
        let value = value_of(object.as_deref(), now_ms());
        let counter = if value.is_some() { &self.metrics.keyspace_hits } else { &self.metrics.keyspace_misses };
        metrics::add(counter, 1);
        Ok(value)
    }

    /// Applies a plain Redis write to `key`: the new version supersedes every
    /// sibling this node knows.
    ///
    /// # Errors
    /// Too long a key, a type error of the value, or a storage failure (then
    /// nothing was written).
    pub async fn write(&self, key: &[u8], mutation: Mutation) -> Result<Outcome> {
        let hash = locate(key)?;
        metrics::add(&self.metrics.writes_coordinated, 1);
        self.store
            .update(hash, key, move |object, dot| {
                let now = now_ms();
                let current = value_of(object, now).map(|v| Current { value: v.data, expires_at: v.expires_at });
                let (effect, outcome) = match mutation.apply(current.as_ref(), now) {
                    Ok(applied) => applied,
                    Err(e) => return (Change::Keep, Err(e)),
                };
                let (value, expires_at) = match effect {
                    Effect::None => return (Change::Keep, Ok(outcome)),
                    Effect::Put { value, expires_at } => (Some(value), expires_at),
                    // Nothing to delete: no need for a tombstone.
                    Effect::Delete if object.is_none() => return (Change::Keep, Ok(outcome)),
                    Effect::Delete => (None, None),
                };
                let new = Sibling { dot, timestamp: now, expires_at, value };
                let object = match object {
                    Some(o) => o.overwritten(new),
                    None => Object::new().overwritten(new),
                };
                (Change::Put(object), Ok(outcome))
            })
            .await?
    }

    /// Every live sibling of `key` and the context that covers them all
    /// (and any tombstones), for a later [`write_versions`](Self::write_versions).
    ///
    /// # Errors
    /// Too long a key, or a storage failure.
    pub async fn get_versions(&self, key: &[u8]) -> Result<Versions> {
        let hash = locate(key)?;
        metrics::add(&self.metrics.reads_coordinated, 1);
        let object = self.store.get(hash, key).await?.unwrap_or_default();
        let now = now_ms();
        let object = &*object;
        let mut live: Vec<&Sibling> = object.siblings().iter().filter(|s| s.is_live(now)).collect();
        live.sort_by_key(|s| (s.timestamp, s.dot));
        let values = live.into_iter().filter_map(|s| s.value.clone()).collect();
        Ok(Versions { context: object.context(), values })
    }

    /// A causal write: supersedes exactly the siblings `context` covers and
    /// adds `value` (a tombstone when `None`) as a new sibling, expiring
    /// `ttl_ms` after now if given. Returns the context to write with next
    /// (`context` plus the new dot) and how many live values were superseded.
    ///
    /// # Errors
    /// Too long a key, [`Error::TooManySiblings`] when the key would exceed
    /// `max-siblings` (nothing is written then), or a storage failure.
    pub async fn write_versions(
        &self,
        key: &[u8],
        context: Context,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
    ) -> Result<(Context, usize)> {
        let hash = locate(key)?;
        metrics::add(&self.metrics.writes_coordinated, 1);
        let max = self.settings.max_siblings;
        let warnings = Arc::clone(&self.metrics);
        let shown = String::from_utf8_lossy(key).into_owned();
        self.store
            .update(hash, key, move |object, dot| {
                let now = now_ms();
                let mut object = object.cloned().unwrap_or_default();
                let superseded = object.siblings().iter().filter(|s| context.covers(s.dot) && s.is_live(now)).count();
                let expires_at = ttl_ms.map(|t| now.saturating_add(t));
                let next = object.update(&context, Sibling { dot, timestamp: now, expires_at, value });
                let count = object.siblings().len();
                if count > max {
                    return (Change::Keep, Err(Error::TooManySiblings));
                }
                if count > SIBLING_WARNING {
                    metrics::add(&warnings.sibling_warnings, 1);
                    tracing::warn!(key = %shown, siblings = count, "key holds many siblings; resolve them with SETCTX");
                }
                (Change::Put(object), Ok((next, superseded)))
            })
            .await?
    }

    /// [`get`](Self::get) of many keys at once, in order.
    pub async fn get_many(&self, keys: &[Bytes]) -> Vec<Result<Option<Value>>> {
        join_all(keys.iter().map(|k| self.get(k)).collect()).await
    }

    /// [`write`](Self::write) of many keys at once, in order.
    pub async fn write_many(&self, writes: Vec<(Bytes, Mutation)>) -> Vec<Result<Outcome>> {
        join_all(writes.into_iter().map(|(k, m)| async move { self.write(&k, m).await }).collect()).await
    }

    /// One step of a cluster-wide key walk. The cursor is a ring position:
    /// the walk goes partition by partition in ring order, examining about
    /// `count` keys, and returns the next cursor (0 when done) and the live
    /// keys matching `pattern`.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn scan(&self, cursor: u64, count: usize, pattern: Option<&[u8]>) -> Result<(u64, Vec<Bytes>)> {
        let partitions = self.ring.partitioner();
        let now = now_ms();
        let mut position = cursor;
        let mut keys = Vec::new();
        let mut examined = 0;
        loop {
            let p = partitions.of(position);
            let (entries, next) = self.store.scan(position, partitions.end(p), count.saturating_sub(examined)).await?;
            examined += entries.len();
            keys.extend(
                entries
                    .into_iter()
                    .filter(|e| e.object.live(now).is_some())
                    .filter(|e| pattern.is_none_or(|pat| crate::glob::matches(pat, &e.key, false)))
                    .map(|e| e.key),
            );
            position = match next {
                Some(n) => n,
                None if p + 1 == partitions.count() => return Ok((0, keys)),
                None => partitions.start(p + 1),
            };
            if examined >= count {
                return Ok((position, keys));
            }
        }
    }

    /// Every live key matching `pattern`.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn keys(&self, pattern: &[u8]) -> Result<Vec<Bytes>> {
        let mut cursor = 0;
        let mut all = Vec::new();
        loop {
            let (next, keys) = self.scan(cursor, 1000, Some(pattern)).await?;
            all.extend(keys);
            if next == 0 {
                return Ok(all);
            }
            cursor = next;
        }
    }

    /// Keys in the store (as Redis counts them: expired keys not yet
    /// reclaimed included).
    #[must_use]
    pub fn dbsize(&self) -> u64 {
        self.tally().keys.max(0) as u64
    }

    #[must_use]
    pub fn tally(&self) -> Tally {
        self.store.tally()
    }

    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Removes every key.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn flush_all(&self) -> Result<()> {
        self.store.flush_all().await
    }
}
