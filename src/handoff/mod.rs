//! Hinted handoff: writes that a node missed, handed to it once it is
//! back.
//!
//! Hints are kept in two ways (see `storage::hints`). A coordinator whose
//! write does not reach one of the key's replicas (down, cut off, too
//! slow) notes which replica missed which key; it holds the write in its
//! own data. A fallback standing in for a replica that is down (sloppy
//! quorum) keeps the object written on the replica's behalf in the hint
//! itself.
//!
//! This task looks, twice a second, for the nodes hints are held for that
//! are up again, and sends each the current object of every hinted key
//! (what the hint keeps merged with this node's own copy; a merge, so a
//! write delivered twice changes nothing), in batches read in key order
//! past a cursor, 30 keys in flight, at most `hint-delivery-rate` bytes per
//! second. A hint goes only once the node has stored the object (its merge
//! is acknowledged after its journal persist), and only if no newer write
//! renewed it meanwhile. Hints live in storage, so delivery resumes after a
//! restart of either side. When the ring has changed so that the target no
//! longer holds the key (or is no longer a member), the object goes to the
//! key's current replicas instead, and the hint once all of them hold it;
//! the hints for a target that is away are looked through for such keys
//! each time the view changes.
//! A key the target refuses (an error of its own) keeps its hint and is
//! passed over until the next round.

pub mod transfer;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use std::time::{Duration, Instant};

use crate::join::join_all;
use crate::membership::{Membership, View};
use crate::metrics::{self, Delivery, Metrics};
use crate::rpc::{CallError, KvRequest, KvResponse, Member, Peers};
use crate::shutdown::Stop;
use crate::storage::{Hint, Store};
use crate::version::{Encoded, NodeId, Object};

/// How often the task looks for hints to deliver.
const EVERY: Duration = Duration::from_millis(500);
/// Hints read from storage at a time.
const BATCH: usize = 256;
/// Hints handed over at once; the rate is kept between such chunks.
const IN_FLIGHT: usize = 30;

/// What delivery needs.
pub struct Handoff {
    pub store: Arc<Store>,
    pub membership: Arc<Membership>,
    pub peers: Peers,
    pub metrics: Arc<Metrics>,
    /// Bytes per second, at most.
    pub rate: u64,
}

impl Handoff {
    /// Delivers hints until `stop` fires.
    pub async fn run(self, mut stop: Stop) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The view in which each target that is away was last looked at.
        let mut scanned: HashMap<NodeId, Arc<View>> = HashMap::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.stopped() => return,
            }
            if self.store.hints_held() == 0 {
                continue;
            }
            let view = self.membership.view();
            if view.cluster.is_none() {
                continue;
            }
            let targets = self.store.hint_tallies();
            scanned.retain(|t, _| targets.iter().any(|(held, _)| held == t));
            for (target, _) in targets {
                // For a member that is down, or no longer a member, only
                // hints whose keys moved can go (to the keys' current
                // replicas): looked for again only once the view changed.
                let member = match view.index_of(target) {
                    Some(i) if view.up[i] => Some(&view.members[i]),
                    _ if scanned.get(&target).is_some_and(|seen| Arc::ptr_eq(seen, &view)) => continue,
                    _ => None,
                };
                match self.deliver(&view, target, member, &stop).await {
                    Ok(()) if member.is_none() => {
                        scanned.insert(target, Arc::clone(&view));
                    }
                    Ok(()) => {}
                    Err(e) => tracing::debug!(node = %target, "hint delivery paused: {e}"),
                }
                if stop.is_stopped() {
                    return;
                }
            }
        }
    }

    /// Hands every hint held for `target` (`member`, if it is one) over,
    /// a batch at a time, [`IN_FLIGHT`] hints at once; an error reaching a
    /// node stops this round.
    async fn deliver(&self, view: &View, target: NodeId, member: Option<&Member>, stop: &Stop) -> Result<(), String> {
        let started = Instant::now();
        let shown = member.map_or_else(|| target.to_string(), |m| m.peer_addr.clone());
        let (mut sent, mut redirected, mut dropped, mut bytes) = (0u64, 0u64, 0u64, 0u64);
        let mut after: Option<Hint> = None;
        let total = self.store.hints_held_for(target);
        let outcome = 'batches: loop {
            if stop.is_stopped() {
                break Ok(());
            }
            let hints = self.store.hints_for(target, after.as_ref(), BATCH).await.map_err(|e| e.to_string())?;
            let Some(last) = hints.last().cloned() else { break Ok(()) };
            after = Some(last);
            for chunk in hints.chunks(IN_FLIGHT) {
                let handed =
                    join_all(chunk.iter().map(|hint| self.hand_over(view, target, member, hint)).collect()).await;
                let mut failed = None;
                for result in handed {
                    let size = match result {
                        Ok(Handed::Sent(size)) => {
                            sent += 1;
                            size
                        }
                        Ok(Handed::Redirected(size)) => {
                            redirected += 1;
                            size
                        }
                        Ok(Handed::Dropped) => {
                            dropped += 1;
                            0
                        }
                        Ok(Handed::Kept) => continue,
                        Err(e) => {
                            failed = Some(e);
                            continue;
                        }
                    };
                    if bytes == 0 && size > 0 {
                        tracing::info!(node = %shown, "handing over hints");
                    }
                    bytes += size;
                }
                let done = sent + redirected + dropped;
                if done > 0 {
                    self.metrics.delivering(target, Some(Delivery { started, total: total.max(done), done }));
                }
                if let Some(e) = failed {
                    break 'batches Err(e);
                }
                // At most `rate` bytes a second, on average since the start.
                let due = Duration::from_secs_f64(bytes as f64 / self.rate.max(1) as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                if stop.is_stopped() {
                    break 'batches Ok(());
                }
            }
        };
        self.metrics.delivering(target, None);
        if sent + redirected + dropped > 0 {
            tracing::info!(
                node = %shown,
                sent,
                redirected,
                dropped,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "hints handed over"
            );
        }
        outcome
    }

    /// Sends one hinted key's current object to `target` (or, if it no
    /// longer holds the key, to the key's current replicas) and forgets
    /// the hint once they hold it. An error means a node could not be
    /// reached (or the store failed).
    async fn hand_over(
        &self,
        view: &View,
        target: NodeId,
        member: Option<&Member>,
        hint: &Hint,
    ) -> Result<Handed, String> {
        let holds = holds(view, target, hint.hash);
        if holds && member.is_none() {
            // The target still holds the key, and is down: it waits.
            return Ok(Handed::Kept);
        }
        let me = self.store.node_id();
        let p = view.partitioner().of(hint.hash);
        if hint.object.is_some() && crate::clock::now_ms().saturating_sub(hint.since) > self.store.grace_ms() {
            // Kept longer than deletes are remembered: it could bring back
            // a value deleted since, whose tombstones are gone. The write
            // is also in the data of the replica that coordinated it; the
            // partition is compared first instead (as Cassandra drops hints
            // older than gc_grace_seconds).
            self.store.mark_for_repair(p).await.map_err(|e| e.to_string())?;
            self.store.remove_hint(target, hint).await.map_err(|e| e.to_string())?;
            return Ok(Handed::Dropped);
        }
        // A coordinator's hint is about the write in this node's data. A
        // fallback's own copy counts only if it replicates the key: else it
        // is left over from an earlier ring (see `read_standing_in`).
        let mut object = match hint.object.is_none() || view.is_replica(p, me) {
            true => self.store.get(hint.hash, &hint.key).await.map_err(|e| e.to_string())?,
            false => None,
        };
        if let Some(kept) = &hint.object {
            match &mut object {
                Some(own) if own.changed_by(kept) => Arc::make_mut(own).merge(kept),
                Some(_) => {}
                None => object = Some(Arc::clone(kept)),
            }
        }
        let handed = match (object, member) {
            (None, _) => Handed::Dropped,
            (Some(object), Some(member)) if holds => {
                let object = Encoded::new(Arc::unwrap_or_clone(object));
                let size = object.bytes().len() as u64;
                match self.merge_into(&member.peer_addr, &hint.key, object).await? {
                    true => Handed::Sent(size),
                    false => return Ok(Handed::Kept),
                }
            }
            (Some(object), _) => match self.redirect(view, hint, object).await? {
                Some(size) => Handed::Redirected(size),
                None => return Ok(Handed::Kept),
            },
        };
        if self.store.remove_hint(target, hint).await.map_err(|e| e.to_string())? {
            metrics::add(&self.metrics.hints_delivered, 1);
        }
        Ok(handed)
    }

    /// Merges `object` into the copy of the node at `addr`: false if that
    /// node refused this key (a storage error there), an error if it could
    /// not be reached.
    async fn merge_into(&self, addr: &str, key: &Bytes, object: Encoded) -> Result<bool, String> {
        match self.peers.kv(addr, KvRequest::Merge { key: key.clone(), object }).await {
            Ok(KvResponse::Done) => Ok(true),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(CallError::Remote(e)) => {
                tracing::debug!(peer = %addr, "a hint was refused: {e}");
                Ok(false)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends `object` to every current replica of the hinted key (this
    /// node's own copy included, if it is one): the bytes sent once all of
    /// them hold it, `None` if one is down or refused.
    async fn redirect(&self, view: &View, hint: &Hint, object: Arc<Object>) -> Result<Option<u64>, String> {
        let me = self.store.node_id();
        let object = Encoded::new(Arc::unwrap_or_clone(object));
        let size = object.bytes().len() as u64;
        let p = view.partitioner().of(hint.hash);
        for &i in view.replica_indices(p) {
            let replica = &view.members[i];
            let held = if replica.id == me {
                let merged = self.store.merge(hint.hash, &hint.key, Arc::clone(object.object())).await;
                merged.map_err(|e| e.to_string())?;
                true
            } else if view.up[i] {
                self.merge_into(&replica.peer_addr, &hint.key, object.clone()).await?
            } else {
                false
            };
            if !held {
                return Ok(None);
            }
        }
        Ok(Some(size))
    }
}

/// What became of one hint.
enum Handed {
    /// The target holds the key's object now (this many bytes).
    Sent(u64),
    /// The key's current replicas hold it now (the target no longer is
    /// one).
    Redirected(u64),
    /// Nothing is left to send.
    Dropped,
    /// A node refused the key, or a current replica is down: the hint
    /// stays.
    Kept,
}

/// Whether `node` is one of the replicas of the key at `hash` in `view`,
/// or gains its partition in the ring change in progress (a write it
/// missed during its transfer is handed to it, not to the others).
fn holds(view: &View, node: NodeId, hash: u64) -> bool {
    let p = view.partitioner().of(hash);
    view.replica_indices(p).iter().any(|&i| view.members[i].id == node) || view.is_gaining(p, node)
}
