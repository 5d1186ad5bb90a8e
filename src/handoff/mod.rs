//! Hinted handoff: writes that a replica missed, handed to it once it is
//! back.
//!
//! When a coordinator's write does not reach one of the key's replicas
//! (the replica is down, cut off or too slow), the coordinator, itself a
//! replica holding the write, keeps a hint in storage: which replica missed
//! which key (`Store::add_hint`). This task looks, twice a second, for
//! replicas that are up again and hold hints, and sends each of them the
//! current object of every hinted key (a merge, so a write delivered twice
//! changes nothing), in batches read in key order past a cursor, 30 keys in
//! flight, at most `hint-delivery-rate` bytes per second. A hint goes only once the replica has stored the object (its
//! merge is acknowledged after its journal persist), and only if no newer
//! write renewed it meanwhile. Hints live in storage, so delivery resumes
//! after a restart of either side. A hint whose key the replica no longer
//! holds (the ring changed) is dropped; one the replica refuses (an error
//! of its own for that key) is kept and passed over until the next round.
//!
//! Still to come (issue 11): fallback nodes taking writes on behalf of down
//! replicas (sloppy quorum), and bounds on hints per replica.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::join::join_all;
use crate::membership::{Membership, View};
use crate::metrics::{self, Metrics};
use crate::rpc::{CallError, KvRequest, KvResponse, Member, Peers};
use crate::shutdown::Stop;
use crate::storage::{Hint, Store};
use crate::version::{Encoded, NodeId};

/// How often the task looks for hints to deliver.
const EVERY: Duration = Duration::from_millis(500);
/// Hints read from storage at a time.
const BATCH: usize = 256;

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
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.stopped() => return,
            }
            if self.store.hints_held() == 0 {
                continue;
            }
            let view = self.membership.view();
            let me = self.store.node_id();
            for (i, member) in view.members.iter().enumerate() {
                if member.id == me || !view.up[i] {
                    continue;
                }
                if let Err(e) = self.deliver(&view, member, &stop).await {
                    tracing::debug!(peer = %member.peer_addr, "hint delivery paused: {e}");
                }
                if stop.is_stopped() {
                    return;
                }
            }
        }
    }

    /// Hands `member` every hint held for it, a batch at a time, the hints
    /// of a batch concurrently (30 in flight); an error reaching the
    /// member stops this round.
    async fn deliver(&self, view: &View, member: &Member, stop: &Stop) -> Result<(), String> {
        let started = Instant::now();
        let (mut sent, mut dropped, mut bytes) = (0u64, 0u64, 0u64);
        let mut after: Option<Hint> = None;
        let outcome = loop {
            if stop.is_stopped() {
                break Ok(());
            }
            let hints = self.store.hints_for(member.id, after.as_ref(), BATCH).await.map_err(|e| e.to_string())?;
            let Some(last) = hints.last().cloned() else { break Ok(()) };
            after = Some(last);
            let handed = join_all(hints.iter().map(|hint| self.hand_over(view, member, hint)).collect()).await;
            let mut progress = false;
            let mut failed = None;
            for result in handed {
                match result {
                    Ok(Handed::Sent(size)) => {
                        if sent == 0 {
                            tracing::info!(peer = %member.peer_addr, "handing hints to a replica that is back");
                        }
                        sent += 1;
                        bytes += size;
                        progress = true;
                    }
                    Ok(Handed::Dropped) => {
                        dropped += 1;
                        progress = true;
                    }
                    Ok(Handed::Refused) => {}
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
            if !progress {
                break Ok(());
            }
            // At most `rate` bytes a second, on average since the start.
            let due = Duration::from_secs_f64(bytes as f64 / self.rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        };
        if sent + dropped > 0 {
            tracing::info!(
                peer = %member.peer_addr,
                sent,
                dropped,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "hints handed over"
            );
        }
        outcome
    }

    /// Sends `member` the current object of one hinted key and forgets the
    /// hint once it holds it. An error means the member could not be
    /// reached (or the store failed).
    async fn hand_over(&self, view: &View, member: &Member, hint: &Hint) -> Result<Handed, String> {
        let object = self.store.get(hint.hash, &hint.key).await.map_err(|e| e.to_string())?;
        let handed = match object.filter(|_| holds(view, member.id, hint.hash)) {
            Some(object) => {
                let object = Encoded::new(Arc::unwrap_or_clone(object));
                let size = object.bytes().len() as u64;
                let request = KvRequest::Merge { key: hint.key.clone(), object };
                match self.peers.kv(&member.peer_addr, request).await {
                    Ok(KvResponse::Done) => Handed::Sent(size),
                    Ok(other) => return Err(format!("unexpected answer {other:?}")),
                    // The replica refused this key (a storage error
                    // there): keep the hint, go on with the others.
                    Err(CallError::Remote(e)) => {
                        tracing::debug!(peer = %member.peer_addr, "a hint was refused: {e}");
                        return Ok(Handed::Refused);
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            None => Handed::Dropped,
        };
        if self.store.remove_hint(member.id, hint).await.map_err(|e| e.to_string())? {
            metrics::add(&self.metrics.hints_delivered, 1);
        }
        Ok(handed)
    }
}

/// What became of one hint.
enum Handed {
    /// The member holds the key's object now (this many bytes).
    Sent(u64),
    /// The member no longer holds the key, or nothing is left to send.
    Dropped,
    /// The member refused the key; the hint stays.
    Refused,
}

/// Whether `node` is one of the replicas of the key at `hash` in `view`.
fn holds(view: &View, node: NodeId, hash: u64) -> bool {
    let p = view.partitioner().of(hash);
    view.replica_indices(p).iter().any(|&i| view.members[i].id == node)
}
