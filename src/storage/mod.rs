//! Storage: the only module that touches fjall.
//!
//! Keyspaces: `data` holds each key's [`Object`] under `position ++ key`
//! (the key's 64-bit ring position, big-endian, so a partition is one
//! contiguous range and keys inside it are in ring order); `reap` is the
//! schedule of background work (`due_ms ++ data key`: expiries to reclaim,
//! tombstones to remove); `meta` holds the node id, the partition count and
//! what other modules keep there by name (the cluster's record and members).
//!
//! The data is split into shards (see `shard.rs`): each a fjall database of
//! its own, holding the partitions `p % shards == i`, so writes to different
//! shards never wait for each other. fjall is synchronous, so every access
//! to a key runs on the storage worker that owns the key's shard: one OS
//! thread per shard, fed through a bounded queue. A worker takes everything
//! queued as one batch, runs it in order, makes the batch's writes durable
//! with one persist of its shard's journal (`write(2)` for `os` durability,
//! `fdatasync` for `fsync`) and only then answers the batch. So concurrent clients share one persist (group commit),
//! no reply ever reflects a write that is not yet durable, and the
//! read-modify-write of one key is serialized, which keeps dots unique.
//! Long scans run on tokio's blocking pool instead, off the workers (all
//! but the rebuild below, which must be serialized with writes and so
//! scans one partition per job).
//!
//! Each worker keeps a cache of decoded objects for its partitions (see
//! `cache.rs`), updated once a batch is durable. Reads that hit it are
//! answered on the caller's thread, without a hop to the worker.
//!
//! Beside the data, in memory, every partition has its key counts
//! (`stats.rs`, for DBSIZE and INFO) and its anti-entropy hash tree
//! (`trees.rs`), both updated by each write on the worker that makes it.
//! A clean stop saves them and the next start loads them (`saved.rs`), so
//! a start does not read every key. After a crash (or with no usable save)
//! the store opens at once with every partition *not ready*, and rebuilds
//! them in the background: one partition per job, queued on the worker
//! that owns the partition, so the scan is serialized with the writes to
//! it. A write to a partition not yet ready leaves its counts and tree
//! alone, since the scan will see what it wrote; after the scan it updates
//! them as usual. So every write is counted exactly once, while DBSIZE and
//! INFO keyspace are partial until the rebuild ends and anti-entropy skips
//! the partitions not ready ([`Store::tree_ready`]).

mod cache;
mod hints;
mod meta;
mod saved;
mod settled;
mod shard;
mod stats;
mod trees;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;

use bytes::{BufMut, Bytes, BytesMut};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use shard::Shard;
use tokio::sync::mpsc;

use crate::antientropy::tree::{Tree, leaf_of};
use crate::error::{Error, Result};
use crate::ring::Partitioner;
use crate::version::{Actor, Dot, Encoded, NodeId, Object};
use cache::{Cache, Cached, PositionMap};
use hints::Hints;
pub use hints::{Hint, HintBounds, HintTally, Overflow};
use meta::{Dots, storage};
pub use settled::Leaves;
pub use stats::Tally;

/// The longest key shoal stores (fjall keys are at most 64 KiB, and the
/// schedule prefixes 16 bytes).
pub const MAX_KEY_LEN: usize = 65_000;
/// Jobs queued per worker before submitters wait.
const QUEUE_DEPTH: usize = 4096;
/// Jobs per batch (and so per journal persist) at most.
const MAX_BATCH: usize = 1024;
/// Times an idle worker yields its core before it parks.
const SPIN_YIELDS: usize = 16;
/// Object cache shards per worker, so client threads rarely wait on a lock.
const CACHE_SHARDS: usize = 16;

/// How the store is opened.
#[derive(Clone, Debug)]
pub struct Options {
    pub path: PathBuf,
    pub partitions: u32,
    /// fdatasync every batch before answering it (else write to the OS).
    pub fsync: bool,
    pub workers: usize,
    pub tombstone_grace_ms: u64,
    /// This node holds the only copy of its keys (N = 1): a dead object is
    /// removed once the grace period has passed. Otherwise it is removed
    /// only once anti-entropy has shown every replica holds it too (see
    /// `settled.rs`). The cluster decides ([`Store::set_sole_replica`]).
    pub sole_replica: bool,
    /// How long a dead object past its grace waits before it is looked at
    /// again, while no settled round allows its removal (about the
    /// anti-entropy interval).
    pub settle_retry_ms: u64,
    /// The storage engine's block cache.
    pub cache_bytes: u64,
    /// The object cache, shared out among the workers.
    pub object_cache_bytes: u64,
    pub hint_bounds: HintBounds,
}

/// What an update does with the object it read.
#[derive(Debug)]
pub enum Change {
    Keep,
    /// Store this object (encoded once; the caller may keep a clone of it
    /// to send to replicas).
    Put(Encoded),
    Remove,
}

/// One key found by a scan.
#[derive(Debug)]
pub struct Entry {
    pub hash: u64,
    pub key: Bytes,
    pub object: Object,
}

/// Work queued on a worker: run in a batch, then told whether the batch
/// became durable, to answer its caller.
trait Job: Send + Sync {
    fn run(&self, w: &mut Worker<'_>);
    /// Answers the caller: the job's result if `persisted` is `Ok`, a
    /// storage error if not, shutdown if the job never ran. Only the first
    /// call counts.
    fn complete(&self, persisted: Result<(), &Error>);
}

/// A job on its way through a worker. Dropped uncompleted (a worker that
/// stopped with jobs queued), it answers its caller that the store is
/// shutting down, so no caller waits forever.
struct Queued(Arc<dyn Job>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.complete(Err(&Error::ShuttingDown));
    }
}

/// A job and its outcome in one allocation, shared by the caller (who
/// waits on it) and the worker (who runs it): the job until it runs, its
/// result until the batch's persist, then the answer and the caller's
/// waker.
struct Slot<F, R> {
    state: Mutex<SlotState<F, R>>,
}

struct SlotState<F, R> {
    job: Option<F>,
    result: Option<Result<R>>,
    done: bool,
    waker: Option<Waker>,
}

impl<F, R> Slot<F, R> {
    fn new(job: F) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(SlotState { job: Some(job), result: None, done: false, waker: None }) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SlotState<F, R>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer, once the worker completed the job: its result if the
    /// batch became durable. A job dropped unrun (the worker stopped)
    /// answers that the store is shutting down.
    async fn answer(self: Arc<Self>) -> Result<R> {
        let answer = std::future::poll_fn(|cx| {
            let mut state = self.state();
            if state.done {
                return Poll::Ready(state.result.take());
            }
            if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        });
        answer.await.unwrap_or(Err(Error::ShuttingDown))
    }
}

impl<F, R> Job for Slot<F, R>
where
    R: Send,
    F: FnOnce(&mut Worker<'_>) -> Result<R> + Send,
{
    fn run(&self, w: &mut Worker<'_>) {
        let job = self.state().job.take();
        if let Some(job) = job {
            let result = job(w);
            self.state().result = Some(result);
        }
    }

    fn complete(&self, persisted: Result<(), &Error>) {
        let waker = {
            let mut state = self.state();
            if state.done {
                return;
            }
            match persisted {
                Ok(()) => {}
                Err(Error::ShuttingDown) => state.result = None,
                Err(e) => state.result = Some(Err(Error::Storage(e.to_string()))),
            }
            state.done = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

enum Msg {
    Run(Queued),
    /// Hold still while the caller works on the whole store.
    Pause(Pause),
    Stop,
}

/// A worker's part in a pause: wait at the barrier, let the caller work,
/// wait again. A pause that is dropped unheld (its worker already gone)
/// stands in for the worker, so the caller and the other workers are never
/// left waiting. Dropping one blocks: only on a blocking thread.
struct Pause {
    barrier: Arc<Barrier>,
    held: bool,
}

impl Pause {
    fn hold(mut self, meanwhile: impl FnOnce()) {
        self.barrier.wait();
        meanwhile();
        self.barrier.wait();
        self.held = true;
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        if !self.held {
            self.barrier.wait();
            self.barrier.wait();
        }
    }
}

struct Shared {
    /// The data directory.
    path: PathBuf,
    /// The root database: `meta` only.
    root: Database,
    meta: Keyspace,
    shards: Vec<Shard>,
    partitioner: Partitioner,
    persist_mode: PersistMode,
    grace_ms: u64,
    sole_replica: AtomicBool,
    settle_retry_ms: u64,
    /// What anti-entropy has shown every replica holds.
    settled: settled::Settled,
    /// Dead objects removed since the store opened.
    removed: std::sync::atomic::AtomicU64,
    stats: stats::Stats,
    /// Every partition's hash tree (anti-entropy), and which partitions'
    /// trees and counts are ready.
    trees: trees::Trees,
    /// FLUSHALLs this node has seen (kept in `meta`); changed only while
    /// every worker is paused.
    flushes: std::sync::atomic::AtomicU64,
    /// Hints held, by the node they are for, over every shard.
    hints: Mutex<Hints>,
    /// Partitions recorded as needing repair (see `hints.rs`).
    repair: Mutex<std::collections::BTreeSet<u32>>,
    /// Marks made since the store opened.
    repair_marks: std::sync::atomic::AtomicU64,
    dots: Dots,
    /// What a clean stop of the previous process left: its actor and last
    /// counter, until membership takes it.
    resumable: Mutex<Option<(Actor, u64)>>,
    node: NodeId,
    /// The object cache: `CACHE_SHARDS` shards per worker, each holding
    /// keys of that worker's partitions only.
    caches: Vec<Mutex<Cache>>,
}

impl Shared {
    /// When background work is next due on `object`: an expiry to reclaim
    /// or the object's removal.
    fn due(&self, object: &Object) -> Option<u64> {
        object.next_due(self.grace_ms)
    }

    /// Whether the dead object at `hash`, removable at `at` by its own
    /// clock, may be removed: this node holds the only copy, or a settled
    /// round shows every replica holds it.
    fn may_remove(&self, hash: u64, at: u64) -> bool {
        self.sole_replica.load(Ordering::Relaxed)
            || self.settled.allows(self.partitioner.of(hash), leaf_of(self.partitioner, hash), at)
    }

    /// The shard (and so the worker) holding the key at `hash`.
    fn worker_of(&self, hash: u64) -> usize {
        self.partitioner.of(hash) as usize % self.shards.len()
    }

    /// The cache shard of data key `k` (which starts with its position).
    fn cache(&self, k: &[u8]) -> std::sync::MutexGuard<'_, Cache> {
        let hash = split_data_key(k).map_or(0, |(h, _)| h);
        let shard = self.worker_of(hash) * CACHE_SHARDS + (hash as usize % CACHE_SHARDS);
        self.caches[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Saves every partition's tree and counts for the next start, with the
    /// clean-stop record `stop` about to be written, if all are ready (a
    /// rebuild cut short saves nothing: the next start rebuilds). Only once
    /// the workers have stopped, so nothing changes after the save.
    fn save_trees(&self, stop: (Actor, u64)) {
        let not_ready = self.trees.not_ready();
        if not_ready > 0 {
            tracing::info!(not_ready, "not saving the hash trees, still being rebuilt; the next start rebuilds them");
            return;
        }
        let q = self.partitioner.count();
        if let Err(e) = saved::save(&self.path, &saved::Saved::of(&self.stats, &self.trees, q, stop), q) {
            tracing::warn!("could not save the hash trees; the next start rebuilds them: {e}");
        }
    }

    /// Empties the cache shards of `worker`.
    fn clear_cache(&self, worker: usize) {
        for shard in &self.caches[worker * CACHE_SHARDS..(worker + 1) * CACHE_SHARDS] {
            shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        }
    }
}

/// The node's store. Cheap to share behind an `Arc`.
pub struct Store {
    shared: Arc<Shared>,
    queues: Vec<mpsc::Sender<Msg>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The thread queuing the background rebuild, while there is one.
    rebuild: Mutex<Option<JoinHandle<()>>>,
    flushing: tokio::sync::Mutex<()>,
}

fn data_key(hash: u64, key: &[u8]) -> Bytes {
    let mut k = BytesMut::with_capacity(8 + key.len());
    k.put_u64(hash);
    k.put_slice(key);
    k.freeze()
}

/// What merging `object` into `before` stores, and whether it changes
/// anything (judged by dots first, so a copy that already holds
/// everything is neither cloned nor written).
fn merged(before: Option<&Object>, object: Arc<Object>) -> (Change, bool) {
    match before {
        Some(b) if !b.changed_by(&object) => (Change::Keep, false),
        Some(b) => {
            let mut merged = b.clone();
            merged.merge(&object);
            (Change::Put(Encoded::new(merged)), true)
        }
        None => (Change::Put(Encoded::new(Arc::unwrap_or_clone(object))), true),
    }
}

fn split_data_key(k: &[u8]) -> Option<(u64, &[u8])> {
    let (head, key) = k.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), key))
}

fn decode(bytes: fjall::Slice) -> Result<Object> {
    Object::decode(&Bytes::from(bytes)).map_err(|e| Error::Storage(format!("corrupt object: {e}")))
}

/// Decodes an object to keep: its values must not slice a whole disk block.
fn decode_owned(bytes: &fjall::Slice) -> Result<Object> {
    Object::decode(&Bytes::copy_from_slice(bytes)).map_err(|e| Error::Storage(format!("corrupt object: {e}")))
}

/// The data keys with positions in `from..=to` (of one shard).
fn positions(data: &Keyspace, from: u64, to: u64) -> fjall::Iter {
    let start = from.to_be_bytes();
    match to.checked_add(1) {
        Some(end) => data.range(start.as_slice()..end.to_be_bytes().as_slice()),
        None => data.range(start.as_slice()..),
    }
}

/// Rebuilds the trees and counts of every partition not ready, in rounds:
/// a job on each worker, scanning the next partition it owns, queued
/// together and awaited together. So each worker scans one partition at a
/// time, between its clients' batches. Ends early if the store stops.
fn rebuild_all(queues: &[mpsc::WeakSender<Msg>], partitioner: Partitioner, not_ready: usize) {
    let started = std::time::Instant::now();
    tracing::info!(partitions = not_ready, "rebuilding the hash trees and key counts in the background");
    let (mut scanned, mut keys) = (0, 0);
    let q = partitioner.count();
    let workers = u32::try_from(queues.len()).unwrap_or(u32::MAX);
    for first in (0..q).step_by(queues.len()) {
        let round = first..first.saturating_add(workers).min(q);
        let (done, results) = std::sync::mpsc::channel();
        for p in round.clone() {
            let done = done.clone();
            let job = Slot::new(move |w: &mut Worker<'_>| {
                let _ = done.send((p, w.rebuild(p)));
                Ok::<_, Error>(())
            });
            let sent = match queues[p as usize % queues.len()].upgrade() {
                Some(queue) => queue.blocking_send(Msg::Run(Queued(job))).is_ok(),
                None => false, // the store was dropped
            };
            if !sent {
                tracing::info!("the store stopped before the hash trees were rebuilt");
                return;
            }
        }
        drop(done);
        // A job that never ran (its worker stopped) answers nothing.
        let mut answered = 0;
        for (p, result) in results {
            answered += 1;
            match result {
                Ok(Some(n)) => (scanned, keys) = (scanned + 1, keys + n),
                Ok(None) => {}
                Err(e) => tracing::error!(
                    partition = p,
                    "could not rebuild the partition's hash tree and counts; anti-entropy skips it until the next start: {e}"
                ),
            }
        }
        if answered < round.len() {
            tracing::info!("the store stopped before the hash trees were rebuilt");
            return;
        }
    }
    let ms = started.elapsed().as_millis();
    tracing::info!(partitions = scanned, keys, ms, "rebuilt the hash trees and key counts");
}

impl Store {
    /// Opens (or creates) the store and starts its workers. Blocking: call it
    /// before serving or from a blocking thread.
    ///
    /// Loads the hash trees and counts the last clean stop saved; without
    /// them (after a crash), returns without reading the keys and rebuilds
    /// them in the background (see the module's docs).
    ///
    /// # Errors
    /// I/O errors, a corrupt meta keyspace, or a data directory created with
    /// another partition count.
    pub fn open(opts: &Options) -> Result<Self> {
        let store = Self::open_unbuilt(opts)?;
        store.rebuild_in_background()?;
        Ok(store)
    }

    /// [`open`](Self::open), but leaves the partitions that are not ready
    /// as they are.
    fn open_unbuilt(opts: &Options) -> Result<Self> {
        std::fs::create_dir_all(&opts.path)?;
        let root = Database::builder(&opts.path)
            .manual_journal_persist(true)
            .cache_size(1 << 20)
            .worker_threads(1)
            .open()
            .map_err(storage)?;
        let meta =
            root.keyspace("meta", || KeyspaceCreateOptions::default().manual_journal_persist(true)).map_err(storage)?;
        let new = meta::check_partitions(&root, &meta, opts.partitions)?;
        let node = meta::node_id(&root, &meta)?;
        let resumable = meta::take_clean_stop(&root, &meta)?;
        // Taken (and so deleted) before any write, whether used or not.
        let saved = saved::take(&opts.path, opts.partitions)?;
        let partitioner = Partitioner::new(opts.partitions);
        let workers = opts.workers.max(1);
        let (shards, resharded) = shard::open_all(&opts.path, &root, &meta, partitioner, workers, opts.cache_bytes)?;
        let stats = stats::Stats::new(opts.partitions);
        let trees = trees::Trees::new(partitioner);
        match saved {
            // Moving keys between shards rewrote them all: count again.
            Some(_) if resharded => {}
            Some(saved) if Some(saved.stop) != resumable => {
                tracing::warn!("ignoring saved trees left by another run than the last clean stop; rebuilding them");
            }
            Some(saved) => {
                tracing::info!(partitions = saved.partitions.len(), "loaded the hash trees and key counts saved");
                saved.install(&stats, &trees);
            }
            // Nothing to count.
            None if new => trees.clear(),
            None => {}
        }
        let hints = Hints::open(&shards, opts.hint_bounds);
        let mut repair = hints::needing_repair(&meta)?;
        if resumable.is_none() && !new {
            // No clean stop: the last writes before the crash may be lost
            // (durability = os), so anti-entropy compares every partition
            // first, promptly (`antientropy::exchange`).
            repair.extend(0..opts.partitions);
            hints::save_repair_record(&meta, &(0..opts.partitions).collect::<Vec<_>>(), &[])?;
            root.persist(PersistMode::SyncAll).map_err(storage)?;
            tracing::info!("started after a crash: every partition is marked for repair");
        }
        let flushes = meta::flushes(&meta)?;
        let persist_mode = if opts.fsync { PersistMode::SyncData } else { PersistMode::Buffer };
        let per_shard = usize::try_from(opts.object_cache_bytes).unwrap_or(usize::MAX) / workers / CACHE_SHARDS;
        let shared = Arc::new(Shared {
            path: opts.path.clone(),
            root,
            meta,
            shards,
            partitioner,
            persist_mode,
            grace_ms: opts.tombstone_grace_ms,
            sole_replica: AtomicBool::new(opts.sole_replica),
            settle_retry_ms: opts.settle_retry_ms.max(1),
            settled: settled::Settled::new(opts.partitions),
            removed: std::sync::atomic::AtomicU64::new(0),
            stats,
            trees,
            flushes: std::sync::atomic::AtomicU64::new(flushes),
            hints: Mutex::new(hints),
            repair: Mutex::new(repair),
            repair_marks: std::sync::atomic::AtomicU64::new(0),
            dots: Dots::new(),
            resumable: Mutex::new(resumable),
            node,
            caches: (0..workers * CACHE_SHARDS).map(|_| Mutex::new(Cache::new(per_shard))).collect(),
        });
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for i in 0..workers {
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            let shared = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name(format!("shoal-storage-{i}"))
                .spawn(move || run_worker(&shared, i, rx))?;
            queues.push(tx);
            threads.push(thread);
        }
        Ok(Self {
            shared,
            queues,
            threads: Mutex::new(threads),
            rebuild: Mutex::new(None),
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    /// Starts rebuilding the partitions not ready, on a thread of its own
    /// that queues the jobs (holding the queues weakly, so that a store
    /// dropped without [`close`](Self::close) still stops its workers).
    fn rebuild_in_background(&self) -> Result<()> {
        let not_ready = self.shared.trees.not_ready();
        if not_ready == 0 {
            return Ok(());
        }
        let queues: Vec<_> = self.queues.iter().map(mpsc::Sender::downgrade).collect();
        let partitioner = self.shared.partitioner;
        let thread = std::thread::Builder::new()
            .name("shoal-rebuild".into())
            .spawn(move || rebuild_all(&queues, partitioner, not_ready))?;
        *self.rebuild.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(thread);
        Ok(())
    }

    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.shared.node
    }

    /// The actor this process writes as.
    #[must_use]
    pub fn actor(&self) -> Actor {
        self.shared.dots.actor()
    }

    /// The actor the previous process stopped cleanly with, and its last
    /// counter, if it did: once only, for membership to decide whether this
    /// process may resume it.
    pub fn take_resumable(&self) -> Option<(Actor, u64)> {
        self.shared.resumable.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// Writes as `actor` from now on, after its counter `last` (an actor
    /// [`take_resumable`](Self::take_resumable) gave, once membership has
    /// established that no other process has written as it since).
    pub fn resume_actor(&self, actor: Actor, last: u64) {
        self.shared.dots.resume(actor, last);
    }

    /// Whether this node holds the only copy of its keys (N = 1), so dead
    /// objects go once their grace period has passed, with no evidence
    /// from other replicas.
    pub fn set_sole_replica(&self, sole: bool) {
        self.shared.sole_replica.store(sole, Ordering::Relaxed);
    }

    /// A round of anti-entropy exchanges of partition `p` begins (see
    /// `settled.rs`).
    pub fn begin_round(&self, p: u32) {
        self.shared.settled.begin(p);
    }

    /// The round of `p` that began at `start` compared it with every other
    /// replica, and `leaves` needed no repair: every replica holds what
    /// this node held of them at `start`.
    pub fn settle_round(&self, p: u32, start: u64, leaves: Leaves) {
        self.shared.settled.settle(p, start, leaves);
    }

    /// Whether `object` is dead and past its grace period at `now`: gone
    /// once the replicas are known to hold it, and not to be copied to a
    /// replica that holds nothing of its key.
    #[must_use]
    pub fn removable(&self, object: &Object, now: u64) -> bool {
        object.reap_at(self.shared.grace_ms).is_some_and(|at| at <= now)
    }

    /// How long a dead object is remembered at least (`tombstone-grace`).
    #[must_use]
    pub fn grace_ms(&self) -> u64 {
        self.shared.grace_ms
    }

    /// Dead objects removed since the store opened.
    #[must_use]
    pub fn removed(&self) -> u64 {
        self.shared.removed.load(Ordering::Relaxed)
    }

    /// A value other modules keep in `meta` (the cluster's record, its
    /// members), by name.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn meta_get(&self, name: &'static str) -> Result<Option<Bytes>> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            Ok(shared.meta.get(format!("x:{name}")).map_err(storage)?.map(|v| Bytes::copy_from_slice(&v)))
        })
        .await
        .map_err(|_| Error::ShuttingDown)?
    }

    /// Stores `value` under `name` in `meta`, durably (fsynced) before it
    /// returns.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn meta_put(&self, name: &'static str, value: Bytes) -> Result<()> {
        self.put_meta(name, value, PersistMode::SyncAll).await
    }

    /// Stores `value` under `name` in `meta`, handed to the OS but not
    /// synced: for records that may go back a little after a power loss (a
    /// transfer's cursor: one that went back only copies some keys again).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn meta_put_unsynced(&self, name: &'static str, value: Bytes) -> Result<()> {
        self.put_meta(name, value, PersistMode::Buffer).await
    }

    async fn put_meta(&self, name: &'static str, value: Bytes, mode: PersistMode) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            shared.meta.insert(format!("x:{name}"), value.as_ref()).map_err(storage)?;
            shared.root.persist(mode).map_err(storage)
        })
        .await
        .map_err(|_| Error::ShuttingDown)?
    }

    fn queue(&self, hash: u64) -> &mpsc::Sender<Msg> {
        &self.queues[self.shared.worker_of(hash)]
    }

    /// Queues `job` on the worker owning `hash`; the receiver yields its
    /// result once the batch it ran in is durable.
    async fn enqueue<R, F>(&self, hash: u64, job: F) -> Result<Arc<Slot<F, R>>>
    where
        R: Send + 'static,
        F: FnOnce(&mut Worker<'_>) -> Result<R> + Send + 'static,
    {
        let slot = Slot::new(job);
        self.queue(hash).send(Msg::Run(Queued(slot.clone()))).await.map_err(|_| Error::ShuttingDown)?;
        Ok(slot)
    }

    async fn run<R, F>(&self, hash: u64, job: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Worker<'_>) -> Result<R> + Send + 'static,
    {
        self.enqueue(hash, job).await?.answer().await
    }

    /// The object stored for `key` at ring position `hash`. Answered from
    /// the object cache when it can be, else by the key's worker.
    ///
    /// # Errors
    /// Storage failures, a corrupt object, or shutdown.
    pub async fn get(&self, hash: u64, key: &[u8]) -> Result<Option<Arc<Object>>> {
        let k = data_key(hash, key);
        if let Cached::Hit(object) = self.shared.cache(&k).get(&k) {
            return Ok(object);
        }
        self.run(hash, move |w| w.read(&k)).await
    }

    /// Atomically reads `key`'s object, lets `f` decide what to do with it
    /// and applies that. `f` also receives a fresh dot of this process, in
    /// order: no later update of any key gets a smaller one.
    ///
    /// # Errors
    /// Storage failures, a corrupt object, or shutdown. If the journal could
    /// not be written (the store then refuses all further work), the write's
    /// outcome is unknown.
    pub async fn update<R, F>(&self, hash: u64, key: &[u8], f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Option<&Object>, Dot) -> (Change, R) + Send + 'static,
    {
        let k = data_key(hash, key);
        self.run(hash, move |w| {
            let before = w.read(&k)?;
            let dot = w.shared.dots.next();
            let (change, result) = f(before.as_deref(), dot);
            w.write(hash, k, before.as_deref(), change)?;
            Ok(result)
        })
        .await
    }

    /// Like [`update`](Self::update), for changes that are not new writes
    /// of this node (a replica merging what a coordinator sent): no dot.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn apply<R, F>(&self, hash: u64, key: &[u8], f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Option<&Object>) -> (Change, R) + Send + 'static,
    {
        let k = data_key(hash, key);
        self.run(hash, move |w| {
            let before = w.read(&k)?;
            let (change, result) = f(before.as_deref());
            w.write(hash, k, before.as_deref(), change)?;
            Ok(result)
        })
        .await
    }

    /// Merges `object` into this node's copy of `key` (a copy sent by a
    /// coordinator, a repair, a hint); true if it changed. Whether it
    /// changes is judged by dots first, so a copy that already holds
    /// everything is neither cloned nor written.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn merge(&self, hash: u64, key: &[u8], object: Arc<Object>) -> Result<bool> {
        self.apply(hash, key, move |before| merged(before, object)).await
    }

    /// Up to `limit` keys with ring positions in `from..=to`, in ring order,
    /// and the position to continue from (`None` when the range is done).
    /// Keys sharing a position are never split across two calls.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn scan(&self, from: u64, to: u64, limit: usize) -> Result<(Vec<Entry>, Option<u64>)> {
        let shared = Arc::clone(&self.shared);
        let scan = move || -> Result<(Vec<Entry>, Option<u64>)> {
            let mut out: Vec<Entry> = Vec::new();
            let partitioner = shared.partitioner;
            // Partition by partition, each a range of its shard.
            for p in partitioner.of(from)..=partitioner.of(to) {
                let data = &shared.shards[p as usize % shared.shards.len()].data;
                for kv in positions(data, from.max(partitioner.start(p)), to.min(partitioner.end(p))) {
                    let (k, v) = kv.into_inner().map_err(storage)?;
                    let Some((hash, key)) = split_data_key(&k) else { continue };
                    if out.len() >= limit.max(1) && out.last().is_some_and(|e| e.hash != hash) {
                        return Ok((out, Some(hash)));
                    }
                    let key = Bytes::from(k.clone()).slice(8..8 + key.len());
                    out.push(Entry { hash, key, object: decode(v)? });
                }
            }
            Ok((out, None))
        };
        tokio::task::spawn_blocking(scan).await.map_err(|_| Error::ShuttingDown)?
    }

    /// Removes every key. Waits for every worker to pause, so no write
    /// interleaves with the clearing. Every partition is then empty and
    /// ready: a rebuild job still to come finds its partition ready and
    /// leaves it alone.
    ///
    /// # Errors
    /// Storage failures, or shutdown.
    pub async fn flush_all(&self) -> Result<()> {
        let _one_at_a_time = self.flushing.lock().await;
        let barrier = Arc::new(Barrier::new(self.queues.len() + 1));
        let mut stopped = false;
        for q in &self.queues {
            let pause = Msg::Pause(Pause { barrier: Arc::clone(&barrier), held: false });
            if let Err(unsent) = q.send(pause).await {
                // That worker has stopped: its pause stands in for it.
                tokio::task::spawn_blocking(move || drop(unsent));
                stopped = true;
            }
        }
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            barrier.wait();
            let result = shared.shards.iter().try_for_each(|shard| {
                shard
                    .data
                    .clear()
                    .and_then(|()| shard.reap.clear())
                    .and_then(|()| shard.hints.clear())
                    .and_then(|()| shard.db.persist(shared.persist_mode))
                    .map_err(storage)
            });
            shared.stats.reset();
            shared.trees.clear();
            shared.settled.clear();
            let flushes = shared.flushes.load(Ordering::Relaxed) + 1;
            shared.flushes.store(flushes, Ordering::Relaxed);
            let recorded = meta::set_flushes(&shared.root, &shared.meta, flushes);
            // Recounted: a shard whose clearing failed keeps its hints.
            shared.hints().recount(&shared.shards);
            barrier.wait();
            result.and(recorded)
        })
        .await
        .map_err(|_| Error::ShuttingDown)??;
        if stopped { Err(Error::ShuttingDown) } else { Ok(()) }
    }

    /// Does the background work due by `now` (reclaiming expired values,
    /// removing tombstones past their grace), at most `limit` keys of it.
    /// Returns how many keys it looked at.
    ///
    /// # Errors
    /// Storage failures, or shutdown.
    pub async fn reap_due(&self, now: u64, limit: usize) -> Result<usize> {
        let shared = Arc::clone(&self.shared);
        let due = tokio::task::spawn_blocking(move || -> Result<Vec<fjall::Slice>> {
            let end = now.saturating_add(1).to_be_bytes();
            let mut due = Vec::new();
            for shard in &shared.shards {
                for kv in shard.reap.range(..end.as_slice()).take(limit - due.len()) {
                    due.push(kv.key().map_err(storage)?);
                }
            }
            Ok(due)
        })
        .await
        .map_err(|_| Error::ShuttingDown)??;
        let mut pending = Vec::with_capacity(due.len());
        for entry in due {
            let Some((hash, _)) = entry.get(8..).and_then(split_data_key) else { continue };
            pending.push(self.enqueue(hash, move |w| w.reap(&entry, now)).await?);
        }
        let count = pending.len();
        for slot in pending {
            slot.answer().await?;
        }
        Ok(count)
    }

    /// Counts over the whole store.
    #[must_use]
    pub fn tally(&self) -> Tally {
        self.shared.stats.total()
    }

    /// How many times FLUSHALL emptied this node.
    #[must_use]
    pub fn flushes(&self) -> u64 {
        self.shared.flushes.load(Ordering::Relaxed)
    }

    /// [`merge`](Self::merge), unless this node has seen a FLUSHALL since
    /// it had seen `flushes` (then it is false, and nothing is written): a
    /// repair that read its object before a flush must not bring it back.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn merge_unless_flushed(&self, flushes: u64, hash: u64, key: &[u8], object: Arc<Object>) -> Result<bool> {
        let k = data_key(hash, key);
        self.run(hash, move |w| {
            if w.shared.flushes.load(Ordering::Relaxed) != flushes {
                return Ok(false);
            }
            let before = w.read(&k)?;
            let (change, changed) = merged(before.as_deref(), object);
            w.write(hash, k, before.as_deref(), change)?;
            Ok(changed)
        })
        .await
    }

    /// Whether partition `p`'s hash tree (and its counts) cover what it
    /// holds: false while it is rebuilt after a crash. A partition's tree
    /// never goes back to not ready, so one found ready stays ready.
    #[must_use]
    pub fn tree_ready(&self, p: u32) -> bool {
        self.shared.trees.ready(p)
    }

    /// How many partitions' trees and counts are still being rebuilt.
    #[must_use]
    pub fn trees_not_ready(&self) -> usize {
        self.shared.trees.not_ready()
    }

    /// Partition `p`'s hash tree root and branches.
    #[must_use]
    pub fn tree_branches(&self, p: u32) -> (u64, [u64; crate::antientropy::tree::BRANCHES]) {
        self.shared.trees.branches(p)
    }

    /// The leaves of `branches` of partition `p`'s hash tree, in order.
    #[must_use]
    pub fn tree_leaves(&self, p: u32, branches: &[usize]) -> Vec<u64> {
        self.shared.trees.leaves(p, branches)
    }

    /// Every key this node holds in `leaves` of partition `p`, with its
    /// position and its object's digest, in ring order.
    ///
    /// # Errors
    /// Storage failures, or shutdown.
    pub async fn leaf_digests(&self, p: u32, leaves: Vec<usize>) -> Result<Vec<(Bytes, u64, u64)>> {
        use crate::antientropy::tree::LEAVES;
        let shared = Arc::clone(&self.shared);
        if p >= shared.partitioner.count() {
            return Ok(Vec::new());
        }
        tokio::task::spawn_blocking(move || {
            let partitioner = shared.partitioner;
            let shard = &shared.shards[shared.worker_of(partitioner.start(p))];
            let span_bits = 64 - partitioner.count().trailing_zeros() - LEAVES.trailing_zeros();
            let mut out = Vec::new();
            for leaf in leaves.into_iter().filter(|&l| l < LEAVES) {
                let from = partitioner.start(p) + ((leaf as u64) << span_bits);
                let to = from + ((1u64 << span_bits) - 1);
                let lower = std::ops::Bound::Included(from.to_be_bytes().to_vec());
                let upper = match to.checked_add(1) {
                    Some(next) => std::ops::Bound::Excluded(next.to_be_bytes().to_vec()),
                    None => std::ops::Bound::Unbounded,
                };
                for kv in shard.data.range::<Vec<u8>, _>((lower, upper)) {
                    let (k, v) = kv.into_inner().map_err(storage)?;
                    let Some((hash, key)) = split_data_key(&k) else { continue };
                    match decode(v) {
                        Ok(object) => out.push((Bytes::copy_from_slice(key), hash, object.digest())),
                        Err(e) => {
                            tracing::error!(key = %String::from_utf8_lossy(key), "skipping unreadable object: {e}");
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|_| Error::ShuttingDown)?
    }

    /// Counts for one partition.
    #[must_use]
    pub fn partition_tally(&self, p: u32) -> Tally {
        self.shared.stats.partition(p)
    }

    /// The most siblings any object has held since the data was counted
    /// (at a start after a crash, or the first start ever; a clean stop
    /// passes it on).
    #[must_use]
    pub fn max_siblings(&self) -> usize {
        self.shared.stats.max_siblings()
    }

    /// Bytes on disk, journal included (a directory walk: on the blocking
    /// pool).
    pub async fn disk_space(&self) -> u64 {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            shared.shards.iter().map(|s| s.db.disk_space().unwrap_or(0)).sum::<u64>()
                + shared.root.disk_space().unwrap_or(0)
        })
        .await
        .unwrap_or(0)
    }

    /// Stops the workers after what is queued, fsyncs everything and saves
    /// the hash trees and counts for the next start.
    ///
    /// # Errors
    /// The final fsync failed.
    pub async fn close(&self) -> Result<()> {
        for q in &self.queues {
            // Jobs queued before Stop still run; a closed queue is done.
            let _ = q.send(Msg::Stop).await;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let rebuild = self.rebuild.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut clean = true;
            for t in threads {
                clean &= t.join().is_ok();
            }
            // With the workers gone, a rebuild still running ends at once.
            if let Some(rebuild) = rebuild {
                let _ = rebuild.join();
            }
            // Every shard durable before the records that say so.
            for shard in &shared.shards {
                shard.db.persist(PersistMode::SyncAll).map_err(storage)?;
            }
            if clean {
                let (actor, last) = shared.dots.last();
                shared.save_trees((actor, last));
                meta::put_clean_stop(&shared.meta, actor, last)?;
            }
            shared.root.persist(PersistMode::SyncAll).map_err(storage)
        })
        .await
        .map_err(|_| Error::ShuttingDown)?
    }
}

fn run_worker(shared: &Shared, index: usize, mut rx: mpsc::Receiver<Msg>) {
    let shard = &shared.shards[index];
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut done: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    let mut written = PositionMap::default();
    // Under steady load the next job is usually moments away: yield a few
    // times before parking, sparing a futex sleep and wake per batch. Spin
    // only while spinning pays off, so an idle worker (a read-mostly load
    // served from the cache) costs nothing.
    let mut spin = SPIN_YIELDS;
    loop {
        let mut next = None;
        for _ in 0..spin {
            if let Ok(msg) = rx.try_recv() {
                next = Some(msg);
                break;
            }
            std::thread::yield_now();
        }
        spin = if next.is_some() { SPIN_YIELDS } else { (spin / 2).max(1) };
        let Some(first) = next.or_else(|| rx.blocking_recv()) else { return };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        let mut worker = Worker { shared, shard, dirty: false, written };
        let mut stop = false;
        for msg in batch.drain(..) {
            match msg {
                Msg::Run(job) => {
                    job.0.run(&mut worker);
                    done.push(job);
                }
                Msg::Pause(pause) => pause.hold(|| {
                    worker.written.clear();
                    shared.clear_cache(index);
                }),
                Msg::Stop => stop = true,
            }
        }
        let persisted = if worker.dirty { shard.db.persist(shared.persist_mode).map_err(storage) } else { Ok(()) };
        written = worker.written;
        // Only now is the batch durable: publish its writes to the cache.
        for (k, object) in written.drain() {
            let mut cache = shared.cache(&k);
            match &persisted {
                Ok(()) => cache.put(k, object),
                Err(_) => cache.remove(&k),
            }
        }
        if let Err(e) = &persisted {
            tracing::error!("journal persist failed; failing the batch: {e}");
        }
        for job in done.drain(..) {
            job.0.complete(persisted.as_ref().map(|_| ()));
        }
        if stop {
            return;
        }
    }
}

/// What a job may do on its worker thread.
struct Worker<'a> {
    shared: &'a Shared,
    /// The shard this worker owns.
    shard: &'a Shard,
    dirty: bool,
    /// Objects written in this batch, not yet durable (nor in the cache).
    written: PositionMap<Option<Arc<Object>>>,
}

impl Worker<'_> {
    /// The key's current object: written earlier in this batch, cached, or
    /// read from the LSM tree (and then cached).
    fn read(&self, k: &Bytes) -> Result<Option<Arc<Object>>> {
        if let Some(object) = self.written.get(k) {
            return Ok(object.clone());
        }
        if let Cached::Hit(object) = self.shared.cache(k).get(k) {
            return Ok(object);
        }
        let object = self.shard.data.get(k).map_err(storage)?.map(|v| decode_owned(&v)).transpose()?.map(Arc::new);
        self.shared.cache(k).put(k.clone(), object.clone());
        Ok(object)
    }

    fn write(&mut self, hash: u64, k: Bytes, before: Option<&Object>, change: Change) -> Result<()> {
        let shared = self.shared;
        let partition = shared.partitioner.of(hash);
        // A partition not yet ready is counted by its rebuild's scan, which
        // runs on this thread after this write and sees it.
        let count = shared.trees.ready(partition);
        match change {
            Change::Keep => return Ok(()),
            Change::Put(encoded) => {
                let object = encoded.object();
                let due = shared.due(object);
                if let Some(due) = due.filter(|&d| before.and_then(|b| shared.due(b)) != Some(d)) {
                    self.shard.reap.insert(reap_key(due, &k), []).map_err(storage)?;
                }
                if object.reap_at(shared.grace_ms).is_some_and(|at| at <= crate::clock::now_ms()) {
                    // Dead past its grace already: not in the leaves
                    // compared so far (see `settled.rs`).
                    shared.settled.arrived_late(partition, leaf_of(shared.partitioner, hash));
                }
                // One buffer, exactly sized, shared by the memtable, the
                // cache and any replica message.
                self.shard.data.insert(k.clone(), encoded.bytes().clone()).map_err(storage)?;
                if count {
                    shared.stats.record(partition, before, Some(object));
                    shared.trees.change(hash, before, Some(object));
                }
                self.written.insert(k, Some(Arc::clone(object)));
            }
            Change::Remove => {
                if before.is_none() {
                    return Ok(());
                }
                self.shard.data.remove(k.clone()).map_err(storage)?;
                if count {
                    shared.stats.record(partition, before, None);
                    shared.trees.change(hash, before, None);
                }
                self.written.insert(k, None);
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Scans partition `p` (one this worker owns), installs its tree and
    /// counts and makes it ready: the number of objects it holds, or `None`
    /// if it was ready already (a FLUSHALL came first). Every write to `p`
    /// runs on this thread too: before the scan, which sees what it wrote,
    /// or after, which updates what the scan installed.
    fn rebuild(&mut self, p: u32) -> Result<Option<u64>> {
        let shared = self.shared;
        if shared.trees.ready(p) {
            return Ok(None);
        }
        let partitioner = shared.partitioner;
        let (mut tree, mut tally, mut objects) = (Tree::new(), Tally::default(), 0);
        for kv in positions(&self.shard.data, partitioner.start(p), partitioner.end(p)) {
            let (k, v) = kv.into_inner().map_err(storage)?;
            let Some((hash, key)) = split_data_key(&k) else { continue };
            match decode(v) {
                Ok(o) => {
                    // A dead object gets its removal scheduled: builds
                    // before removal in clusters scheduled none.
                    if o.reap_at(shared.grace_ms).is_some()
                        && let Some(due) = shared.due(&o)
                    {
                        self.shard.reap.insert(reap_key(due, &k), []).map_err(storage)?;
                        self.dirty = true;
                    }
                    tally.add(Tally::of(Some(&o)));
                    shared.trees.add(&mut tree, hash, &o);
                    shared.stats.saw_siblings(o.siblings().len());
                    objects += 1;
                }
                Err(e) => tracing::error!(key = %String::from_utf8_lossy(key), "skipping unreadable object: {e}"),
            }
        }
        shared.stats.set(p, tally);
        shared.trees.install(p, tree);
        Ok(Some(objects))
    }

    /// Handles one schedule entry: reclaims expired values and removes the
    /// object once everything in it has been dead for the grace period.
    fn reap(&mut self, entry: &[u8], now: u64) -> Result<()> {
        let shared = self.shared;
        self.shard.reap.remove(entry).map_err(storage)?;
        self.dirty = true;
        let k = Bytes::copy_from_slice(&entry[8..]);
        let Some((hash, _)) = split_data_key(&k) else { return Ok(()) };
        let Some(before) = self.read(&k)? else { return Ok(()) };
        let mut after = (*before).clone();
        let stripped = after.strip_expired(now);
        if after.reap_at(shared.grace_ms).is_some_and(|at| at <= now && shared.may_remove(hash, at)) {
            shared.removed.fetch_add(1, Ordering::Relaxed);
            return self.write(hash, k, Some(&before), Change::Remove);
        }
        // This entry is used up: the object's next due moment needs one of
        // its own (a removal not yet allowed is looked at again later).
        if let Some(due) = shared.due(&after) {
            // Spread by key, so what was looked at together does not come
            // due again all at once.
            let retry = shared.settle_retry_ms + hash % (shared.settle_retry_ms / 4 + 1);
            let due = if due <= now { now.saturating_add(retry) } else { due };
            self.shard.reap.insert(reap_key(due, &k), []).map_err(storage)?;
        }
        if stripped {
            return self.write(hash, k, Some(&before), Change::Put(Encoded::new(after)));
        }
        Ok(())
    }
}

fn reap_key(due: u64, data_key: &[u8]) -> Bytes {
    let mut k = BytesMut::with_capacity(8 + data_key.len());
    k.put_u64(due);
    k.put_slice(data_key);
    k.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Sibling;
    use std::path::Path;

    fn open(dir: &std::path::Path, workers: usize) -> Store {
        Store::open(&options(dir, workers)).expect("open")
    }

    fn options(dir: &std::path::Path, workers: usize) -> Options {
        Options {
            path: dir.to_path_buf(),
            partitions: 16,
            fsync: false,
            workers,
            tombstone_grace_ms: 1_000,
            sole_replica: true,
            settle_retry_ms: 1_000,
            cache_bytes: 8 << 20,
            object_cache_bytes: 1 << 20,
            hint_bounds: HintBounds::default(),
        }
    }

    fn put(
        value: Option<&'static str>,
        ts: u64,
        expires_at: Option<u64>,
    ) -> impl FnOnce(Option<&Object>, Dot) -> (Change, ()) {
        move |before, dot| {
            let mut o = before.cloned().unwrap_or_default();
            let ctx = o.context();
            o.update(
                &ctx,
                Sibling { dot, timestamp: ts, expires_at, value: value.map(|v| Bytes::from_static(v.as_bytes())) },
            );
            (Change::Put(Encoded::new(o)), ())
        }
    }

    #[tokio::test]
    async fn updates_count_keys_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 2);
        let node = store.node_id();
        for i in 0..50u64 {
            let key = format!("k{i}");
            store
                .update(crate::ring::key_hash(key.as_bytes()), key.as_bytes(), put(Some("v"), 1, None))
                .await
                .expect("put");
        }
        assert_eq!(store.tally().keys, 50);
        store.close().await.expect("close");
        drop(store);
        let store = open(dir.path(), 1);
        assert_eq!(store.node_id(), node, "the node id is kept with the data");
        // Moved to one shard: counted again, in the background.
        until_ready(&store).await;
        assert_eq!(store.tally().keys, 50);
        let o = store.get(crate::ring::key_hash(b"k7"), b"k7").await.expect("get").expect("present");
        assert_eq!(o.live(2).and_then(|s| s.value.clone()), Some(Bytes::from_static(b"v")));
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn hints_are_read_in_key_order_across_shards_past_a_cursor_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 3);
        let (a, b) = (NodeId(7), NodeId(9));
        let keys: Vec<String> = (0..100).map(|i| format!("h{i}")).collect();
        for k in &keys {
            let hash = crate::ring::key_hash(k.as_bytes());
            store.add_hint(a, hash, k.as_bytes()).await.expect("hint").expect("within bounds");
            store.add_hint(a, hash, k.as_bytes()).await.expect("taken again: still one").expect("within bounds");
        }
        store.add_hint(b, 1, b"other").await.expect("hint").expect("within bounds");
        assert_eq!((store.hints_held(), store.hints_held_for(a), store.hints_held_for(b)), (101, 100, 1));
        // Read in batches of 7: every hint for `a` once, in key order.
        let (mut seen, mut after) = (Vec::new(), None);
        loop {
            let batch = store.hints_for(a, after.as_ref(), 7).await.expect("hints");
            let Some(last) = batch.last().cloned() else { break };
            seen.extend(batch);
            after = Some(last);
        }
        assert_eq!(seen.len(), 100);
        assert!(seen.windows(2).all(|w| (w[0].hash, &w[0].key) < (w[1].hash, &w[1].key)));
        // A hint taken again after it was read is not removed by that read.
        let renewed = &seen[0];
        store.add_hint(a, renewed.hash, &renewed.key).await.expect("hint").expect("within bounds");
        assert!(!store.remove_hint(a, renewed).await.expect("remove"));
        for h in &seen[1..] {
            assert!(store.remove_hint(a, h).await.expect("remove"));
        }
        assert_eq!((store.hints_held_for(a), store.hints_held_for(b)), (1, 1));
        store.close().await.expect("close");
        drop(store);
        let store = open(dir.path(), 2);
        assert_eq!((store.hints_held_for(a), store.hints_held_for(b)), (1, 1), "counted again at open, resharded");
        let left = store.hints_for(a, None, 10).await.expect("hints");
        assert_eq!(left.iter().map(|h| &h.key).collect::<Vec<_>>(), [&renewed.key]);
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_fallback_keeps_merged_objects_within_bounds_and_records_what_it_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&Options {
            hint_bounds: HintBounds { window_ms: 60_000, max_bytes: 600 },
            ..options(dir.path(), 2)
        })
        .expect("open");
        let (target, hash) = (NodeId(5), crate::ring::key_hash(b"k"));
        let version = |counter: u64, value: &str| {
            let mut o = Object::new();
            let dot = Dot::new(Actor(counter), 1);
            o.update(
                &crate::version::Context::default(),
                Sibling { dot, timestamp: counter, expires_at: None, value: Some(Bytes::from(value.to_owned())) },
            );
            Arc::new(o)
        };
        // Two concurrent writes kept for the same target: both siblings.
        store.keep_for(target, hash, b"k", version(1, "a")).await.expect("keep").expect("within bounds");
        store.keep_for(target, hash, b"k", version(2, "b")).await.expect("keep").expect("within bounds");
        let kept = store.kept_for_any(vec![NodeId(4), target], hash, b"k").await.expect("read").expect("kept");
        assert_eq!(kept.siblings().len(), 2);
        assert_eq!(store.hinted_for(hash, b"k", vec![NodeId(4), target]).await.expect("which"), [target]);
        assert_eq!(store.get(hash, b"k").await.expect("get"), None, "not among this node's data");
        let tally = store.hint_tally(target);
        assert_eq!(tally.count, 1);
        assert!(tally.bytes > 16, "{tally:?}");
        // Past the bytes allowed: refused, nothing stored.
        let big = version(3, &"x".repeat(600));
        assert_eq!(store.keep_for(target, 9, b"big", big).await.expect("keep"), Err(Overflow::Bytes));
        assert_eq!(store.hint_tally(target), tally);
        assert_eq!(store.add_hint(NodeId(6), 9, b"big").await.expect("hint"), Ok(()), "other targets are not bound");
        assert!(store.mark_for_repair(3).await.expect("mark"));
        assert!(!store.mark_for_repair(3).await.expect("mark"), "recorded once");
        // The hint goes when delivered; the record and the hints stay across a reopen.
        store.close().await.expect("close");
        drop(store);
        let store = open(dir.path(), 3);
        assert_eq!(store.hint_tally(target), tally, "counted again at open, resharded");
        assert_eq!(store.partitions_needing_repair(), [3]);
        let hints = store.hints_for(target, None, 10).await.expect("hints");
        assert_eq!(hints.len(), 1);
        assert_eq!(hints[0].object.as_ref().map(|o| o.siblings().len()), Some(2));
        assert!(store.remove_hint(target, &hints[0]).await.expect("remove"));
        assert_eq!(store.hint_tally(target), HintTally::default());
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn the_age_bound_follows_the_oldest_hint_held_and_never_refuses_a_renewal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&Options {
            hint_bounds: HintBounds { window_ms: 6000, max_bytes: 1 << 20 },
            ..options(dir.path(), 1)
        })
        .expect("open");
        let t = NodeId(5);
        // (Times are kept to the second, rounded down: an age may seem up
        // to a second older than it is. The margins leave a loaded machine
        // another second or more.)
        store.add_hint(t, 1, b"first").await.expect("hint").expect("within bounds");
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        store.add_hint(t, 2, b"second").await.expect("hint").expect("within bounds");
        tokio::time::sleep(std::time::Duration::from_millis(4000)).await;
        assert_eq!(store.add_hint(t, 3, b"third").await.expect("hint"), Err(Overflow::Age));
        assert_eq!(store.add_hint(t, 1, b"first").await.expect("hint"), Ok(()), "a renewal is never refused");
        // Once the oldest is delivered, the next oldest decides.
        let held = store.hints_for(t, None, 10).await.expect("hints");
        let first = held.iter().find(|h| &h.key[..] == b"first").expect("first");
        let oldest = store.hint_tally(t).oldest;
        assert!(store.remove_hint(t, first).await.expect("remove"));
        assert!(store.hint_tally(t).oldest > oldest, "the oldest follows what is held");
        assert_eq!(store.add_hint(t, 3, b"third").await.expect("hint"), Ok(()));
        store.close().await.expect("close");
    }

    /// Copies a directory tree (a closed store's files).
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).expect("copy");
            }
        }
    }

    #[tokio::test]
    async fn every_opening_writes_as_a_new_actor_whatever_the_disk_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (original, copy) = (dir.path().join("a"), dir.path().join("b"));
        let store = open(&original, 1);
        let first = store.update(1, b"k", |_, dot| (Change::Keep, dot)).await.expect("update");
        let second = store.update(2, b"j", |_, dot| (Change::Keep, dot)).await.expect("update");
        assert_eq!(first.actor, store.actor());
        assert_eq!(second.actor, first.actor);
        assert!(second.counter > first.counter, "dots of one process rise");
        store.close().await.expect("close");
        drop(store);
        // The same directory twice over, as a restored backup or a copy
        // started beside the original would be.
        copy_dir(&original, &copy);
        let (a, b) = (open(&original, 1), open(&copy, 1));
        assert_eq!(a.node_id(), b.node_id(), "a copy keeps the node id");
        let actors = [first.actor, a.actor(), b.actor()];
        assert!(actors[0] != actors[1] && actors[1] != actors[2] && actors[0] != actors[2], "{actors:?}");
        let dot = a.update(1, b"k", |_, dot| (Change::Keep, dot)).await.expect("update");
        assert_eq!(dot.actor, a.actor());
        a.close().await.expect("close");
        b.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_clean_stop_leaves_its_actor_for_the_next_start_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 1);
        assert_eq!(store.take_resumable(), None, "a new directory");
        let last = store.update(1, b"k", |_, dot| (Change::Keep, dot)).await.expect("update");
        store.close().await.expect("close");
        drop(store);

        let store = open(dir.path(), 1);
        assert_ne!(store.actor(), last.actor, "a fresh actor until told otherwise");
        assert_eq!(store.take_resumable(), Some((last.actor, last.counter)));
        assert_eq!(store.take_resumable(), None, "given once");
        store.resume_actor(last.actor, last.counter);
        let next = store.update(1, b"k", |_, dot| (Change::Keep, dot)).await.expect("update");
        assert_eq!((next.actor, next.counter), (last.actor, last.counter + 1));
        // A crash (no close): the record was taken at the start, none is left.
        drop(store);
        let store = open(dir.path(), 1);
        assert_eq!(store.take_resumable(), None, "no clean stop, nothing to resume");
        store.close().await.expect("close");
    }

    /// Rewrites a closed one-shard store as the layout before shards: its
    /// `data` and `reap` in the root database, no shard count.
    fn unshard(dir: &Path) {
        let shard = Shard::open_existing(&dir.join("shards").join("0"));
        let root = Database::builder(dir).open().expect("root");
        for (name, from) in [("data", &shard.data), ("reap", &shard.reap)] {
            let to = root.keyspace(name, KeyspaceCreateOptions::default).expect("keyspace");
            for kv in from.iter() {
                let (k, v) = kv.into_inner().expect("entry");
                to.insert(k, v).expect("insert");
            }
        }
        let meta = root.keyspace("meta", KeyspaceCreateOptions::default).expect("meta");
        meta.remove("shards").expect("remove");
        root.persist(PersistMode::SyncAll).expect("persist");
        drop((shard, meta, root));
        std::fs::remove_dir_all(dir.join("shards")).expect("rm");
    }

    fn shard_dirs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("shards"))
            .expect("shards")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    async fn assert_holds(store: &Store, keys: u64) {
        // Keys moved between shards are counted again in the background.
        until_ready(store).await;
        assert_eq!(store.tally().keys, i64::try_from(keys).expect("count"));
        for i in 0..keys {
            let key = format!("k{i}");
            let o = store.get(crate::ring::key_hash(key.as_bytes()), key.as_bytes()).await.expect("get");
            assert!(o.is_some_and(|o| o.live(1).is_some()), "{key} kept");
        }
    }

    #[tokio::test]
    async fn keys_move_with_the_shard_count_and_an_unsharded_directory_is_adopted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 1);
        for i in 0..200u64 {
            let key = format!("k{i}");
            let h = crate::ring::key_hash(key.as_bytes());
            store.update(h, key.as_bytes(), put(Some("v"), 1, Some(5_000 + i))).await.expect("put");
        }
        store.close().await.expect("close");
        drop(store);
        unshard(dir.path());

        let store = open(dir.path(), 3);
        assert_eq!(shard_dirs(dir.path()), ["0", "1", "2"]);
        assert_holds(&store, 200).await;
        store.close().await.expect("close");
        drop(store);

        // A move to 2 shards interrupted; the next start finishes it, then
        // moves to what it was asked for.
        {
            let root = Database::builder(dir.path()).open().expect("root");
            let meta = root.keyspace("meta", KeyspaceCreateOptions::default).expect("meta");
            meta::set_resharding(&root, &meta, Some(2)).expect("intent");
        }
        let store = open(dir.path(), 1);
        assert_eq!(shard_dirs(dir.path()), ["0"]);
        assert_holds(&store, 200).await;
        // The expiry schedule moved with the keys.
        assert_eq!(store.reap_due(5_000 + 200, 1_000).await.expect("reap"), 200);
        assert_eq!(store.tally().keys, 0);
        store.close().await.expect("close");
    }

    /// A shard whose worker is stuck (a long fjall stall, a slow disk)
    /// holds up its own keys only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_shard_holds_up_only_its_own_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 2);
        let key_of = |shard: usize| {
            (0..10_000)
                .map(|i| format!("k{i}"))
                .find(|k| store.shared.worker_of(crate::ring::key_hash(k.as_bytes())) == shard)
                .expect("a key")
        };
        let (stuck, free) = (key_of(0), key_of(1));
        // Worker 0 waits at the barrier until the test lets it go.
        let barrier = Arc::new(Barrier::new(2));
        let pause = Pause { barrier: Arc::clone(&barrier), held: false };
        store.queues[0].send(Msg::Pause(pause)).await.expect("queue");
        let entered = Arc::clone(&barrier);
        tokio::task::spawn_blocking(move || entered.wait()).await.expect("held");

        let wait = std::time::Duration::from_secs(5);
        let h = crate::ring::key_hash(free.as_bytes());
        tokio::time::timeout(wait, store.update(h, free.as_bytes(), put(Some("v"), 1, None)))
            .await
            .expect("the other shard serves while one is stalled")
            .expect("put");
        let h = crate::ring::key_hash(stuck.as_bytes());
        let stalled = store.update(h, stuck.as_bytes(), put(Some("v"), 1, None));
        tokio::pin!(stalled);
        let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut stalled).await;
        assert!(early.is_err(), "a write to the stalled shard waits for it");
        tokio::task::spawn_blocking(move || barrier.wait()).await.expect("released");
        tokio::time::timeout(wait, stalled).await.expect("served once the shard moves again").expect("put");
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn expired_values_are_reclaimed_and_tombstones_reaped_after_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 1);
        let h = crate::ring::key_hash(b"x");
        store.update(h, b"x", put(Some("v"), 100, Some(5_000))).await.expect("put");
        assert_eq!(store.reap_due(5_000, 10).await.expect("reap"), 0, "alive through its last millisecond");
        assert_eq!(store.reap_due(5_001, 10).await.expect("reap"), 1);
        let o = store.get(h, b"x").await.expect("get").expect("kept until grace");
        assert!(o.siblings()[0].value.is_none(), "value reclaimed");
        assert_eq!(store.tally().keys, 0);
        assert_eq!(store.tally().tombstones, 1);
        store.reap_due(6_000, 10).await.expect("reap");
        assert!(store.get(h, b"x").await.expect("get").is_some());
        store.reap_due(6_001, 10).await.expect("reap");
        assert!(store.get(h, b"x").await.expect("get").is_none());
        assert_eq!(store.tally(), Tally::default());
        store.close().await.expect("close");
    }

    /// Opens without the background rebuild: the test runs the rebuild's
    /// jobs itself, or starts it when it wants.
    fn open_unbuilt(dir: &Path, workers: usize) -> Store {
        Store::open_unbuilt(&options(dir, workers)).expect("open")
    }

    /// Stops `store` as a crash would (nothing saved, no clean-stop
    /// record), once its threads are done, so the next open has the
    /// directory to itself.
    fn crash(store: Store) {
        let threads = std::mem::take(&mut *store.threads.lock().expect("threads"));
        let rebuild = store.rebuild.lock().expect("rebuild").take();
        drop(store);
        for t in threads.into_iter().chain(rebuild) {
            t.join().expect("thread");
        }
    }

    /// Rebuilds partition `p` now, on its worker, as the background rebuild
    /// would.
    async fn rebuild(store: &Store, p: u32) -> Option<u64> {
        store.run(store.shared.partitioner.start(p), move |w| w.rebuild(p)).await.expect("rebuild")
    }

    async fn until_ready(store: &Store) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while store.trees_not_ready() > 0 {
            assert!(std::time::Instant::now() < deadline, "{} partitions still not ready", store.trees_not_ready());
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    type PartitionState = ((u64, [u64; crate::antientropy::tree::BRANCHES]), Vec<u64>, Tally);

    /// Every partition's root, branches, leaves and counts.
    fn state(store: &Store) -> Vec<PartitionState> {
        let every: Vec<usize> = (0..crate::antientropy::tree::BRANCHES).collect();
        (0..16).map(|p| (store.tree_branches(p), store.tree_leaves(p, &every), store.partition_tally(p))).collect()
    }

    /// What the test wrote: the keys left live.
    type Live = std::collections::BTreeSet<String>;

    /// Writes keys `n` of `range` ("k{n}"): live values, some with an
    /// expiry, every fifth a delete (a tombstone), every seventh also
    /// given a concurrent sibling from another actor.
    async fn write(store: &Store, range: std::ops::Range<u64>, value: &'static str, live: &mut Live) {
        for n in range {
            let key = format!("k{n}");
            let h = crate::ring::key_hash(key.as_bytes());
            let expires = (n % 3 == 0).then_some(u64::MAX / 2);
            let value = (n % 5 != 0).then_some(value);
            store.update(h, key.as_bytes(), put(value, n, expires)).await.expect("put");
            if n % 7 == 0 {
                let mut other = Object::new();
                let sibling = Sibling { dot: Dot::new(Actor(77), n + 1), timestamp: 0, expires_at: None, value: None };
                other.update(&crate::version::Context::default(), sibling);
                store.merge(h, key.as_bytes(), Arc::new(other)).await.expect("merge");
            }
            if value.is_some() {
                live.insert(key);
            } else {
                live.remove(&key);
            }
        }
    }

    #[tokio::test]
    async fn a_clean_stop_saves_the_trees_and_counts_for_the_next_start_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 2);
        let mut live = Live::new();
        write(&store, 0..500, "v", &mut live).await;
        let before = state(&store);
        assert_eq!(store.tally().keys, live.len() as i64);
        assert!(store.tally().with_siblings > 0 && store.tally().tombstones > 0, "{:?}", store.tally());
        store.close().await.expect("close");
        drop(store);
        assert!(dir.path().join(saved::FILE).exists());

        let store = open_unbuilt(dir.path(), 2);
        assert_eq!(store.trees_not_ready(), 0, "loaded, nothing to rebuild");
        assert!(!dir.path().join(saved::FILE).exists(), "the save is taken as it is loaded");
        assert_eq!(state(&store), before);
        assert_eq!(store.max_siblings(), 2);
        // A crash: the next start finds no save, and rebuilds the same.
        crash(store);
        let store = open_unbuilt(dir.path(), 2);
        assert_eq!(store.trees_not_ready(), 16, "nothing saved to load");
        assert!((0..16).all(|p| !store.tree_ready(p)));
        assert_eq!(store.tally(), Tally::default(), "nothing counted before the rebuild");
        store.rebuild_in_background().expect("rebuild");
        until_ready(&store).await;
        assert_eq!(state(&store), before);
        assert_eq!(store.max_siblings(), 2);
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_rebuild_schedules_the_removal_of_dead_objects_left_unscheduled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 1);
        let h = crate::ring::key_hash(b"gone");
        store.update(h, b"gone", put(None, 100, None)).await.expect("delete");
        // As a build that kept tombstones in clusters left them: no
        // removal scheduled.
        store.shared.shards[0].reap.clear().expect("clear");
        assert_eq!(store.reap_due(10_000, 10).await.expect("reap"), 0);
        crash(store);
        let store = open(dir.path(), 1);
        until_ready(&store).await;
        assert_eq!(store.reap_due(10_000, 10).await.expect("reap"), 1);
        assert!(store.get(h, b"gone").await.expect("get").is_none(), "removed (a single node: no evidence needed)");
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_start_after_a_crash_marks_every_partition_for_repair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 2);
        assert!(store.partitions_needing_repair().is_empty(), "a new directory lost nothing");
        write(&store, 0..50, "v", &mut Live::new()).await;
        assert!(store.mark_for_repair(3).await.expect("mark"));
        store.close().await.expect("close");
        drop(store);
        let store = open(dir.path(), 2);
        assert_eq!(store.partitions_needing_repair(), [3], "a clean stop keeps only the marks made");
        assert!(store.unmark_repaired(3).await.expect("unmark"));
        crash(store);
        let store = open(dir.path(), 2);
        assert_eq!(store.partitions_needing_repair(), (0..16).collect::<Vec<_>>(), "every partition after a crash");
        assert!(store.unmark_repaired(5).await.expect("unmark"));
        store.close().await.expect("close");
        drop(store);
        let store = open(dir.path(), 2);
        assert_eq!(store.partitions_needing_repair().len(), 15, "a mark forgotten stays forgotten after a clean stop");
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn after_a_crash_the_trees_and_counts_are_rebuilt_in_the_background_as_they_were() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 3);
        let mut live = Live::new();
        write(&store, 0..1000, "v", &mut live).await;
        write(&store, 0..300, "again", &mut live).await;
        let before = state(&store);
        crash(store);
        let store = open(dir.path(), 3);
        until_ready(&store).await;
        assert_eq!(state(&store), before);
        assert_eq!(store.tally().keys, live.len() as i64);
        store.close().await.expect("close");
    }

    /// A store in `dir` (two shards) that held `keys` keys when it crashed,
    /// opened again with its first `rebuilt` partitions rebuilt by hand.
    async fn crashed(dir: &Path, keys: u64, rebuilt: u32) -> (Store, Live) {
        let store = open(dir, 2);
        let mut live = Live::new();
        write(&store, 0..keys, "v", &mut live).await;
        crash(store);
        let store = open_unbuilt(dir, 2);
        for p in 0..rebuilt {
            assert!(rebuild(&store, p).await.is_some_and(|n| n > 0));
        }
        (store, live)
    }

    #[tokio::test]
    async fn writes_during_a_rebuild_are_counted_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Half the partitions rebuilt, so the writes below go to both kinds.
        let (store, mut live) = crashed(dir.path(), 1000, 8).await;
        assert!((0..8).all(|p| store.tree_ready(p)) && (8..16).all(|p| !store.tree_ready(p)));
        write(&store, 0..200, "overwritten", &mut live).await;
        write(&store, 1000..1200, "new", &mut live).await;
        // Left for the rebuild: the partitions not ready count nothing yet.
        let empty = (0, [0; crate::antientropy::tree::BRANCHES]);
        assert!((8..16).all(|p| store.partition_tally(p) == Tally::default() && store.tree_branches(p) == empty));
        // More while the background rebuild runs.
        store.rebuild_in_background().expect("rebuild");
        write(&store, 500..700, "during", &mut live).await;
        until_ready(&store).await;
        write(&store, 700..800, "after", &mut live).await;
        assert_counted_as_a_full_scan(store, dir.path(), &live).await;
    }

    /// `store` counts `live`'s keys, and its trees and counts are what a
    /// full scan of its data finds.
    async fn assert_counted_as_a_full_scan(store: Store, dir: &Path, live: &Live) {
        assert_eq!(store.tally().keys, live.len() as i64);
        let counted = state(&store);
        crash(store);
        let store = open(dir, 2);
        until_ready(&store).await;
        assert_eq!(state(&store), counted);
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_flushall_during_a_rebuild_leaves_every_partition_ready_and_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = crashed(dir.path(), 300, 4).await;
        store.flush_all().await.expect("flush");
        assert_eq!((store.trees_not_ready(), store.tally()), (0, Tally::default()));
        // Rebuild jobs that come after the flush leave the partitions alone.
        let mut live = Live::new();
        write(&store, 1000..1050, "new", &mut live).await;
        for p in 0..16 {
            assert_eq!(rebuild(&store, p).await, None);
        }
        assert_counted_as_a_full_scan(store, dir.path(), &live).await;
    }

    #[tokio::test]
    async fn a_save_that_does_not_fit_is_ignored_and_the_trees_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(saved::FILE);
        let store = open(dir.path(), 2);
        write(&store, 0..300, "v", &mut Live::new()).await;
        let mut expected = state(&store);
        store.close().await.expect("close");
        drop(store);
        let reopen = async |workers, expected: &Vec<PartitionState>| {
            let store = open_unbuilt(dir.path(), workers);
            assert_eq!(store.trees_not_ready(), 16, "the save is not used");
            assert!(!file.exists(), "but it is taken away");
            store.rebuild_in_background().expect("rebuild");
            until_ready(&store).await;
            assert_eq!(&state(&store), expected);
            store.close().await.expect("close");
        };
        // Corrupt: one byte changed (other misfits: see saved.rs).
        let mut bytes = std::fs::read(&file).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&file, bytes).expect("write");
        reopen(2, &expected).await;
        // Stale: a run that did not know of the file (an older build)
        // wrote keys and stopped cleanly, leaving a save of before.
        let stale = std::fs::read(&file).expect("read");
        let store = open(dir.path(), 2);
        write(&store, 300..400, "v", &mut Live::new()).await;
        expected = state(&store);
        store.close().await.expect("close");
        drop(store);
        std::fs::write(&file, stale).expect("write");
        reopen(2, &expected).await;
        // A good save, but the keys moved to another number of shards.
        assert!(file.exists());
        reopen(3, &expected).await;
    }

    #[tokio::test]
    async fn scan_walks_ring_order_and_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 2);
        for i in 0..100u64 {
            let key = format!("key:{i}");
            store
                .update(crate::ring::key_hash(key.as_bytes()), key.as_bytes(), put(Some("v"), 1, None))
                .await
                .expect("put");
        }
        let mut seen = Vec::new();
        let mut from = 0;
        loop {
            let (entries, next) = store.scan(from, u64::MAX, 7).await.expect("scan");
            assert!(entries.windows(2).all(|w| w[0].hash <= w[1].hash));
            seen.extend(entries.into_iter().map(|e| e.key));
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 100);
        store.flush_all().await.expect("flush");
        assert_eq!(store.scan(0, u64::MAX, 10).await.expect("scan").0.len(), 0);
        assert_eq!(store.tally().keys, 0);
        store.close().await.expect("close");
    }
}
