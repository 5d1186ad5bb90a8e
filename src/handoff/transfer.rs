//! Ownership transfer: when the ring changes, each node pulls the
//! partitions it gains from a current replica, and drops the copies of
//! partitions it no longer replicates.
//!
//! A change in progress lists its moves (`ring::transfer::moves`): for
//! each partition whose replica set gains a node, the gaining node and the
//! current replicas to copy from (first the one that leaves the set: the
//! gaining node copies from it, or, when it is down, from every current
//! replica up). The gaining node starts once every member it believes up
//! holds the ring that planned the change, as their heartbeats say: from
//! then on every coordinator sends it each new write of the partition and
//! counts it (see `View::target_indices`), so what it copies and what it is
//! sent together hold every write. It then asks the
//! source for the partition a page at a time, in key order from a cursor
//! (ring positions), merging each page's objects into its own (merges, so
//! a write sent meanwhile is never undone), saving the cursor in `meta`
//! after each page (not synced: a cursor that goes back with a power loss
//! only copies some keys again): a restart of either side resumes where it
//! stopped. Then
//! it tells the claimant, which gives the partition to it in the epoch
//! that ends the change once every move is done.
//!
//! At most `transfers` partitions at once and `transfer-rate` bytes a
//! second, on the peer layer's bulk lane (its own connection and timeout),
//! so client requests do not wait behind it.
//!
//! A node's copy of a partition it neither replicates nor gains (it left
//! the replica set, or holds a leftover of an older ring) is dropped
//! `transfer-drop-delay` after the owners last changed (and after its
//! start), once every member up holds the same ring and no change is in
//! progress: a copy that may still be read or handed over is not dropped
//! under it, nor writes sent to a node that does not know yet it gains
//! their partition. Nor a copy this node still holds hints about for
//! another node (a write it coordinated that a replica missed): the hint
//! hands over the key from this copy, so the copy waits for its delivery.
//! (A leftover still here when this node gains its
//! partition again, with no settled ring in between, stays and is merged
//! with what is copied: it brings back a deleted value only if its
//! tombstone was removed meanwhile, which takes `tombstone-grace`.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::join::join_all;
use crate::membership::Membership;
use crate::metrics::{self, Metrics};
use crate::pace::Pace;
use crate::ring::state::RingState;
use crate::ring::transfer::Move;
use crate::rpc::{Decision, KvRequest, KvResponse, Peers};
use crate::shutdown::Stop;
use crate::storage::Store;
use crate::version::NodeId;

/// How often the task looks at the ring.
const EVERY: Duration = Duration::from_millis(250);
/// Keys asked for per page (the source also stops at about 1 MB).
const PAGE_KEYS: u32 = 500;
/// Hints read at a time when looking for the partitions they are about.
const HINT_PAGE: usize = 1000;
/// How long leftovers kept for hints wait before the next look.
const HINTED_LOOK: Duration = Duration::from_secs(10);
/// The name of the saved cursors in `meta`.
const CURSORS: &str = "transfer-cursors";
/// Keys removed at once when a copy is dropped.
const DROP_BATCH: usize = 500;

/// What the transfers need.
pub struct Transfers {
    pub store: Arc<Store>,
    pub membership: Arc<Membership>,
    pub peers: Peers,
    pub metrics: Arc<Metrics>,
    /// Bytes per second, at most.
    pub rate: u64,
    /// Partitions at once, at most.
    pub at_once: usize,
    /// How long one page may take.
    pub timeout: Duration,
    /// How long a copy no longer replicated is kept.
    pub drop_delay: Duration,
    /// What operators see.
    pub progress: Arc<Progress>,
}

/// One transfer running now.
#[derive(Clone, Debug)]
pub struct Running {
    pub partition: u32,
    pub from: NodeId,
    pub keys: u64,
    pub bytes: u64,
    pub started: Instant,
}

/// How far this node's part of the change in progress is, for SHOAL.STATUS.
#[derive(Debug, Default)]
pub struct Progress {
    inner: Mutex<ProgressState>,
}

/// A snapshot of [`Progress`].
#[derive(Clone, Debug, Default)]
pub struct ProgressState {
    /// The epoch that began the change this node works on (0: none).
    pub change: u64,
    /// Partitions this node gains in it, and how many are done.
    pub total: usize,
    pub done: usize,
    /// Bytes and keys received for it so far, and since when.
    pub bytes: u64,
    pub keys: u64,
    pub since: Option<Instant>,
    pub running: Vec<Running>,
    /// Waiting for every member to hold the ring of the change.
    pub waiting: bool,
}

impl ProgressState {
    /// Bytes a second since the change began here.
    #[must_use]
    pub fn rate(&self) -> f64 {
        let secs = self.since.map_or(0.0, |t| t.elapsed().as_secs_f64());
        if secs > 0.0 { self.bytes as f64 / secs } else { 0.0 }
    }

    /// Seconds left, at the rate so far, guessing the partitions left hold
    /// as much as the ones done.
    #[must_use]
    pub fn eta_seconds(&self) -> Option<f64> {
        let rate = self.rate();
        if self.done == 0 || rate <= 0.0 {
            return None;
        }
        let per_partition = self.bytes as f64 / self.done as f64;
        Some(per_partition * (self.total - self.done) as f64 / rate)
    }
}

impl Progress {
    fn with<R>(&self, f: impl FnOnce(&mut ProgressState) -> R) -> R {
        f(&mut lock(&self.inner))
    }

    /// A snapshot.
    #[must_use]
    pub fn state(&self) -> ProgressState {
        self.with(|p| p.clone())
    }
}

/// Cursors of the transfers of one change: partition → the position the
/// next page starts at (`u64::MAX` with `done`: finished).
#[derive(Debug, Default, PartialEq, Eq)]
struct Cursors {
    change: u64,
    /// (partition, source) → (next position, done).
    at: BTreeMap<(u32, NodeId), (u64, bool)>,
}

impl Cursors {
    fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(16 + self.at.len() * 21);
        out.put_u64_le(self.change);
        for (&(p, source), &(pos, done)) in &self.at {
            out.put_u32_le(p);
            out.put_u64_le(source.0);
            out.put_u64_le(pos);
            out.put_u8(u8::from(done));
        }
        out.freeze()
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let (change, mut rest) = b.split_first_chunk::<8>()?;
        let mut at = BTreeMap::new();
        while !rest.is_empty() {
            let (p, r) = rest.split_first_chunk::<4>()?;
            let (source, r) = r.split_first_chunk::<8>()?;
            let (pos, r) = r.split_first_chunk::<8>()?;
            let (done, r) = r.split_first()?;
            let key = (u32::from_le_bytes(*p), NodeId(u64::from_le_bytes(*source)));
            at.insert(key, (u64::from_le_bytes(*pos), *done == 1));
            rest = r;
        }
        Some(Self { change: u64::from_le_bytes(*change), at })
    }
}

impl Transfers {
    /// Transfers and drops until `stop` fires.
    pub async fn run(self, mut stop: Stop) {
        let me = self.store.node_id();
        let cursors = match self.store.meta_get(CURSORS).await {
            Ok(b) => b.and_then(|b| Cursors::decode(&b)).unwrap_or_default(),
            Err(e) => {
                tracing::warn!("cannot read the transfer cursors: {e}");
                Cursors::default()
            }
        };
        let cursors = Mutex::new(cursors);
        let pace = tokio::sync::Mutex::new(Pace::new(self.rate, u64::MAX, stop.clone()));
        // When the owners last changed (or this node started): drops wait
        // `drop_delay` after it.
        let mut last_change = Instant::now();
        let mut owners: Vec<NodeId> = Vec::new();
        // Failed transfers wait a moment before the next try.
        let mut backoff: HashMap<u32, Instant> = HashMap::new();
        // Leftovers kept for hints not delivered yet are looked at again
        // only after a while (finding them reads every hint).
        let mut next_drop = Instant::now();
        // Whether the last look found work (the next looks at once).
        let mut busy = false;
        loop {
            if !std::mem::take(&mut busy) {
                tokio::select! {
                    () = tokio::time::sleep(EVERY) => {}
                    () = stop.stopped() => return,
                }
            } else if stop.is_stopped() {
                return;
            }
            let ring = self.membership.ring_state();
            if !ring.is_known() {
                continue;
            }
            if ring.owners != owners {
                owners.clone_from(&ring.owners);
                last_change = Instant::now();
            }
            if ring.in_progress() {
                let n = self.membership.cluster_n();
                let mine: Vec<Move> = ring.moves(n).into_iter().filter(|m| m.to == me).collect();
                self.note_change(&ring, &mine);
                let todo: Vec<Move> = mine
                    .into_iter()
                    .filter(|m| !ring.is_done(m.partition, me))
                    .filter(|m| backoff.get(&m.partition).is_none_or(|t| t.elapsed() > Duration::from_secs(1)))
                    .collect();
                if todo.is_empty() {
                    continue;
                }
                if !self.membership.all_up_hold(ring.planned) {
                    self.progress.with(|p| p.waiting = true);
                    continue;
                }
                self.progress.with(|p| p.waiting = false);
                if lock(&cursors).change != ring.change {
                    *lock(&cursors) = Cursors { change: ring.change, at: BTreeMap::new() };
                }
                busy = true;
                let runs =
                    todo.iter().take(self.at_once.max(1)).map(|m| self.transfer(m, &ring, &cursors, &pace, &stop));
                let results = join_all(runs.collect()).await;
                for (m, result) in todo.iter().zip(results) {
                    let reported = match result {
                        Ok(()) => self.report(&ring, m).await,
                        Err(e) => {
                            tracing::warn!(partition = m.partition, "transfer stopped, will resume: {e}");
                            false
                        }
                    };
                    // A copy done but not reported (no claimant with a
                    // majority now) waits like one that failed: the look
                    // after next takes the other partitions first, and the
                    // loop does not spin on it.
                    if !reported {
                        backoff.insert(m.partition, Instant::now());
                        busy = false;
                    }
                }
            } else {
                self.progress.with(|p| {
                    if p.change != 0 {
                        *p = ProgressState::default();
                    }
                });
                // Only on a ring every member up holds: a node that does not
                // know yet of a change in which it gains a partition must
                // not drop the writes already sent to it for it.
                if ring.epoch > 0
                    && last_change.elapsed() >= self.drop_delay
                    && Instant::now() >= next_drop
                    && self.membership.all_up_hold(ring.epoch)
                    && self.drop_leftovers(&ring, &stop).await
                {
                    next_drop = Instant::now() + HINTED_LOOK;
                }
            }
        }
    }

    /// Keeps what operators see in step with the change.
    fn note_change(&self, ring: &RingState, mine: &[Move]) {
        let me = self.store.node_id();
        let done = mine.iter().filter(|m| ring.is_done(m.partition, me)).count();
        self.progress.with(|p| {
            if p.change != ring.change {
                *p = ProgressState { change: ring.change, since: Some(Instant::now()), ..ProgressState::default() };
                if !mine.is_empty() {
                    tracing::info!(epoch = ring.change, partitions = mine.len(), "transfers to this node begin");
                }
            }
            p.total = mine.len();
            p.done = done;
        });
    }

    /// Copies partition `m.partition` here: from the replica that leaves
    /// its replica set when that one is up (so what this node holds then
    /// includes all it held), else from every replica of it that is up (a
    /// removed node's writes may be on any one of the others). Returns once
    /// all of it is here, or with an error (it resumes from the cursors
    /// next time). What this node holds of the partition stays: the writes
    /// sent to it since the change began are in it (a leftover of an older
    /// ring was dropped once that ring had settled, see `drop_leftovers`).
    async fn transfer(
        &self,
        m: &Move,
        ring: &RingState,
        cursors: &Mutex<Cursors>,
        pace: &tokio::sync::Mutex<Pace>,
        stop: &Stop,
    ) -> Result<()> {
        let view = self.membership.view();
        let live = |id: &&NodeId| view.is_up(**id) && view.member(**id).is_some();
        let sources: Vec<NodeId> = match m.sources.first().filter(live) {
            Some(&loser) => vec![loser],
            None => m.sources.iter().filter(live).copied().collect(),
        };
        if sources.is_empty() {
            return Err(Error::TryAgain(format!("no replica of partition {} to copy from is up", m.partition)));
        }
        for source in sources {
            self.stream(m.partition, source, ring, cursors, pace, stop).await?;
        }
        Ok(())
    }

    /// Copies partition `p` from `source`, a page at a time from where
    /// `cursors` left it, saving the cursor after each page.
    async fn stream(
        &self,
        p: u32,
        source: NodeId,
        ring: &RingState,
        cursors: &Mutex<Cursors>,
        pace: &tokio::sync::Mutex<Pace>,
        stop: &Stop,
    ) -> Result<()> {
        let view = self.membership.view();
        let saved = lock(cursors).at.get(&(p, source)).copied();
        let mut from = match saved {
            Some((_, true)) => return Ok(()),
            Some((at, false)) => at,
            None => view.partitioner().start(p),
        };
        let Some(addr) = view.member(source).map(|m| m.peer_addr.clone()) else {
            return Err(Error::TryAgain(format!("{source} is no longer a member")));
        };
        tracing::info!(partition = p, from = %source, epoch = ring.change, resumed = saved.is_some(), "transfer begins");
        let started = Instant::now();
        self.progress.with(|pr| {
            pr.running.retain(|r| r.partition != p);
            pr.running.push(Running { partition: p, from: source, keys: 0, bytes: 0, started });
        });
        let result = async {
            loop {
                if stop.is_stopped() || self.membership.ring_state().change != ring.change {
                    return Err(Error::TryAgain("stopped, or the change ended".into()));
                }
                let request = KvRequest::TransferPage { partition: p, from, max_keys: PAGE_KEYS };
                let (entries, next, received) = match self.peers.bulk_kv(&addr, request, self.timeout).await {
                    Ok((KvResponse::Page { entries, next }, traffic)) => (entries, next, traffic.received as u64),
                    Ok((other, _)) => return Err(Error::TryAgain(format!("unexpected answer: {other:?}"))),
                    Err(e) => return Err(Error::TryAgain(e.to_string())),
                };
                // A page must move on, and hold only keys of the partition
                // (their positions worked out here, not taken from the peer).
                if next.is_some_and(|n| n <= from) {
                    return Err(Error::TryAgain(format!("the source's page of partition {p} does not move on")));
                }
                let keys = entries.len() as u64;
                let merges = entries
                    .into_iter()
                    .filter_map(|(key, _, object)| {
                        let hash = crate::ring::key_hash(&key);
                        (view.partitioner().of(hash) == p && key.len() <= crate::storage::MAX_KEY_LEN)
                            .then_some((key, hash, object))
                    })
                    .map(|(key, hash, object)| {
                        let store = Arc::clone(&self.store);
                        async move { store.merge(hash, &key, Arc::clone(object.object())).await }
                    })
                    .collect();
                for merged in join_all(merges).await {
                    merged?;
                }
                metrics::add(&self.metrics.transfer_keys, keys);
                metrics::add(&self.metrics.transfer_bytes, received);
                self.progress.with(|pr| {
                    pr.bytes += received;
                    pr.keys += keys;
                    if let Some(r) = pr.running.iter_mut().find(|r| r.partition == p) {
                        r.keys += keys;
                        r.bytes += received;
                    }
                });
                let encoded = {
                    let mut c = lock(cursors);
                    c.at.insert((p, source), (next.unwrap_or(u64::MAX), next.is_none()));
                    c.encode()
                };
                self.store.meta_put_unsynced(CURSORS, encoded).await?;
                pace.lock().await.spend(keys, received).await;
                match next {
                    Some(n) => from = n,
                    None => return Ok(()),
                }
            }
        }
        .await;
        self.progress.with(|pr| pr.running.retain(|r| r.partition != p));
        if result.is_ok() {
            tracing::info!(partition = p, from = %source, ms = started.elapsed().as_millis() as u64, "transfer complete");
        }
        result
    }

    /// Tells the claimant that this node holds partition `m.partition`.
    /// True if the claimant took it.
    async fn report(&self, ring: &RingState, m: &Move) -> bool {
        let decision = Decision::Done { change: ring.change, partition: m.partition, node: m.to };
        match self.membership.ask_claimant(decision).await {
            Ok(_) => {
                self.progress.with(|p| p.done = (p.done + 1).min(p.total));
                true
            }
            // Reported again at a later look: the ring still shows it not
            // done.
            Err(e) => {
                tracing::debug!(partition = m.partition, "cannot report a transfer done yet: {e}");
                false
            }
        }
    }

    /// Drops this node's copies of the partitions it no longer replicates;
    /// true if some are kept for the hints about them.
    async fn drop_leftovers(&self, ring: &RingState, stop: &Stop) -> bool {
        let me = self.store.node_id();
        let view = self.membership.view();
        if view.cluster.is_none() || ring.in_progress() {
            return false;
        }
        let leftovers: Vec<u32> = (0..view.partitioner().count())
            .filter(|&p| !view.is_replica(p, me))
            .filter(|&p| {
                let tally = self.store.partition_tally(p);
                tally.keys + tally.tombstones > 0
            })
            .collect();
        if leftovers.is_empty() {
            return false;
        }
        let hinted = match self.hinted_partitions().await {
            Ok(hinted) => hinted,
            Err(e) => {
                tracing::warn!("cannot list the partitions hints are kept about: {e}");
                return true;
            }
        };
        let kept = leftovers.iter().any(|p| hinted.contains(p));
        for p in leftovers {
            if hinted.contains(&p) {
                tracing::debug!(partition = p, "not dropping a partition hints here still hand over");
                continue;
            }
            match self.drop_partition(p, stop).await {
                Ok(n) if n > 0 => tracing::info!(
                    partition = p,
                    keys = n,
                    "dropped the copy of a partition this node no longer replicates"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(partition = p, "cannot drop a partition: {e}"),
            }
            if stop.is_stopped() {
                break;
            }
        }
        kept
    }

    /// The partitions of the keys this node keeps coordinator hints about
    /// (writes it holds that a replica missed): delivering one reads the
    /// key from this node's copy.
    async fn hinted_partitions(&self) -> Result<BTreeSet<u32>> {
        let partitioner = self.membership.view().partitioner();
        let mut hinted = BTreeSet::new();
        for (target, tally) in self.store.hint_tallies() {
            if tally.count == 0 {
                continue;
            }
            let mut after = None;
            loop {
                let page = self.store.hints_for(target, after.as_ref(), HINT_PAGE).await?;
                hinted.extend(page.iter().filter(|h| h.object.is_none()).map(|h| partitioner.of(h.hash)));
                if page.len() < HINT_PAGE {
                    break;
                }
                after = page.into_iter().last();
            }
        }
        Ok(hinted)
    }

    /// Removes every key of partition `p` here; how many.
    async fn drop_partition(&self, p: u32, stop: &Stop) -> Result<u64> {
        let partitioner = self.membership.view().partitioner();
        let (mut from, end) = (partitioner.start(p), partitioner.end(p));
        let mut dropped = 0;
        loop {
            let (entries, next) = self.store.scan(from, end, DROP_BATCH).await?;
            let removals = entries
                .iter()
                .map(|e| self.store.apply(e.hash, &e.key, |_| (crate::storage::Change::Remove, ())))
                .collect();
            for removed in join_all(removals).await {
                removed?;
            }
            dropped += entries.len() as u64;
            match next {
                Some(n) if !stop.is_stopped() => from = n,
                _ => return Ok(dropped),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_keep_on_disk() {
        let mut c = Cursors { change: 7, at: BTreeMap::new() };
        c.at.insert((3, NodeId(5)), (1 << 60, false));
        c.at.insert((9, NodeId(u64::MAX)), (u64::MAX, true));
        assert_eq!(Cursors::decode(&c.encode()), Some(c));
        assert_eq!(Cursors::decode(&[1, 2, 3]), None);
    }
}
