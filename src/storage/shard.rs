//! Shards: the store's data split over several fjall databases, so that
//! writes to different partitions proceed in parallel.
//!
//! fjall takes one writer per database at a time (its journal lock covers
//! the memtable insert), so one database would serialize every write of the
//! node whatever the number of threads. Each shard is a database of its own,
//! under `shards/<i>` in the data directory, with its own journal and the
//! `data` and `reap` keyspaces of the partitions `p % shards == i`; one
//! storage worker owns it (see `run_worker`). The root database beside them
//! keeps only `meta`.
//!
//! The shard count is recorded in `meta`. A start with another count moves
//! every key to its new shard first ([`reshard`]); so does the first start
//! of a data directory written before shards existed (its `data` and `reap`
//! lived in the root database).

use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::meta::{self, storage};
use super::split_data_key;
use crate::error::Result;
use crate::ring::Partitioner;

/// The in-memory write buffer of each shard's `data` keyspace (fjall's
/// default). An 8 MiB one makes each insert cheaper (a smaller skiplist) and
/// gave about 10% more SETs at `-P 16`, but flushes eight times as often,
/// and the stalls doubled the 99th percentile (26–51 ms against 17–20 ms,
/// two alternating runs of 1M SETs on 2 cores).
const MEMTABLE_BYTES: u64 = 64 << 20;

/// One fjall database and its keyspaces.
pub(super) struct Shard {
    pub db: Database,
    pub data: Keyspace,
    pub reap: Keyspace,
    /// Writes this node holds for replicas that missed them: the target
    /// node's id, then the data key (`hint_key`); the value is when the
    /// hint was taken (milliseconds, big-endian).
    pub hints: Keyspace,
}

fn create_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default().manual_journal_persist(true)
}

fn shard_path(root: &Path, i: usize) -> PathBuf {
    root.join("shards").join(i.to_string())
}

impl Shard {
    fn open(path: &Path, cache_bytes: u64, flush_threads: usize) -> Result<Self> {
        let db = Database::builder(path)
            .manual_journal_persist(true)
            .cache_size(cache_bytes)
            .worker_threads(flush_threads)
            .open()
            .map_err(storage)?;
        let data = db.keyspace("data", || create_options().max_memtable_size(MEMTABLE_BYTES)).map_err(storage)?;
        let reap = db.keyspace("reap", create_options).map_err(storage)?;
        let hints = db.keyspace("hints", create_options).map_err(storage)?;
        Ok(Self { db, data, reap, hints })
    }

    /// Opens an existing shard as it is (tests).
    #[cfg(test)]
    pub(super) fn open_existing(path: &Path) -> Self {
        Self::open(path, 1 << 20, 1).expect("open shard")
    }

    fn persist(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(storage)
    }
}

/// Opens the `wanted` shards under `path`, first moving every key to the
/// shard that owns it if the directory was written with another count (or
/// before shards): the shards, and whether keys moved. `root` is the
/// database holding `meta`.
pub(super) fn open_all(
    path: &Path,
    root: &Database,
    meta: &Keyspace,
    partitioner: Partitioner,
    wanted: usize,
    cache_bytes: u64,
) -> Result<(Vec<Shard>, bool)> {
    let cache = (cache_bytes / wanted as u64).max(1 << 20);
    // fjall flushes and compacts on threads of each database: the cores
    // shared out, at least one each.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let flush_threads = (cores / wanted).clamp(1, 4);
    // A move that was under way finishes first, to the count it was for.
    let target = meta::resharding(meta)?;
    let stored = meta::shard_count(meta)?;
    let mut current = stored.unwrap_or(0);
    let mut moved = false;
    for to in target.into_iter().chain([wanted]) {
        let unsharded = root.keyspace_exists("data") || root.keyspace_exists("reap");
        if to == current && !unsharded {
            continue;
        }
        let found = current.max(to);
        let shards =
            (0..found).map(|i| Shard::open(&shard_path(path, i), cache, flush_threads)).collect::<Result<Vec<_>>>()?;
        meta::set_resharding(root, meta, Some(to))?;
        reshard(root, &shards, partitioner, to)?;
        drop(shards);
        for i in to..found {
            std::fs::remove_dir_all(shard_path(path, i))?;
        }
        meta::set_shard_count(root, meta, to)?;
        meta::set_resharding(root, meta, None)?;
        if current > 0 || unsharded {
            tracing::info!(from = current, to, "moved the stored keys to their shards");
            moved = true;
        }
        current = to;
    }
    let shards = (0..wanted).map(|i| Shard::open(&shard_path(path, i), cache, flush_threads)).collect::<Result<_>>()?;
    Ok((shards, moved))
}

/// Entries moved between two persists while resharding.
const MOVE_CHUNK: usize = 10_000;

/// Makes the copies of `moved` durable in their new shards, then removes
/// the originals from `source`.
fn settle(targets: &[Shard], source: &Keyspace, moved: &mut Vec<fjall::Slice>) -> Result<()> {
    if moved.is_empty() {
        return Ok(());
    }
    for shard in targets {
        shard.persist()?;
    }
    for k in moved.drain(..) {
        source.remove(k).map_err(storage)?;
    }
    Ok(())
}

/// Moves every entry of `shards` (and of the root database's own `data` and
/// `reap`, if it has them) that the first `to` shards should hold by
/// `partition % to`, makes the moves durable, then removes the originals.
/// Idempotent: interrupted, it is run again to the same `to`.
fn reshard(root: &Database, shards: &[Shard], partitioner: Partitioner, to: usize) -> Result<()> {
    let owner = |hash: u64| partitioner.of(hash) as usize % to;
    // Which keyspace: data keys are keys; schedule entries and hints put
    // eight bytes (a time, a node) before the data key.
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Data,
        Reap,
        Hints,
    }
    let mut sources: Vec<(Option<usize>, Keyspace, Kind)> = Vec::new();
    for (name, kind) in [("data", Kind::Data), ("reap", Kind::Reap)] {
        if root.keyspace_exists(name) {
            sources.push((None, root.keyspace(name, create_options).map_err(storage)?, kind));
        }
    }
    for (i, shard) in shards.iter().enumerate() {
        sources.push((Some(i), shard.data.clone(), Kind::Data));
        sources.push((Some(i), shard.reap.clone(), Kind::Reap));
        sources.push((Some(i), shard.hints.clone(), Kind::Hints));
    }
    let mut moved: Vec<fjall::Slice> = Vec::new();
    for (from, keyspace, kind) in &sources {
        for kv in keyspace.iter() {
            let (k, v) = kv.into_inner().map_err(storage)?;
            let data_key = if *kind == Kind::Data { Some(&k[..]) } else { k.get(8..) };
            let Some((hash, _)) = data_key.and_then(split_data_key) else { continue };
            let home = owner(hash);
            if *from == Some(home) {
                continue;
            }
            let target = match kind {
                Kind::Data => &shards[home].data,
                Kind::Reap => &shards[home].reap,
                Kind::Hints => &shards[home].hints,
            };
            target.insert(k.clone(), v).map_err(storage)?;
            moved.push(k);
            if moved.len() == MOVE_CHUNK {
                settle(&shards[..to], keyspace, &mut moved)?;
            }
        }
        settle(&shards[..to], keyspace, &mut moved)?;
    }
    for shard in shards {
        shard.persist()?;
    }
    for (from, keyspace, _) in sources {
        if from.is_none() {
            root.delete_keyspace(keyspace).map_err(storage)?;
        }
    }
    root.persist(PersistMode::SyncAll).map_err(storage)
}
