//! The ring as cluster state, as this node keeps and spreads it (the
//! state itself and its rules are pure: [`crate::ring::state`]).
//!
//! - **Kept**: in `meta` (`ring`), saved before this node announces it.
//! - **Spread**: each gossip round, after the member digests, the two
//!   sides compare ring stamps; the side holding the newer ring sends it.
//! - **Decided**: changes go to the claimant (the lowest-id owner this
//!   node believes up and staying), which applies them ([`Decision`]) and
//!   at every round takes the next step on its own: it starts committed
//!   changes when none is in progress and ends a change once every
//!   transfer is reported done. It decides only while it sees more than
//!   half of the members up (those not being removed): at most one side
//!   of a network partition changes the ring; the other answers TRYAGAIN
//!   and waits.
//! - **Joining**: a node that joined the cluster (through seeds, or
//!   `SHOAL.JOIN`) stages its own join with the claimant until the ring
//!   shows it; a node started with seeds commits it at once.
//! - **Leaving**: once a ring without a member is adopted, the member is
//!   out of the member table too (a removal tombstone), so cluster-wide
//!   commands stop waiting for it; a removed member is out from the commit
//!   on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Membership, State, lock};
use crate::error::{Error, Result};
use crate::ring::state::{Change, RingState};
use crate::rpc::{Decision, GossipRequest, GossipResponse, Response, decode_ring, encode_ring};
use crate::version::NodeId;

/// Names in `meta`.
pub(super) const RING: &str = "ring";
/// Whether this node still has to stage its join, and whether to commit
/// it at once (1) or wait for an operator's commit (0).
pub(super) const JOINING: &str = "joining";

/// Reads the saved ring.
pub(super) fn decode(bytes: Option<Bytes>) -> Result<Option<RingState>> {
    bytes.map(|b| decode_ring(&b).map_err(|e| Error::Storage(format!("the ring: {e}")))).transpose()
}

impl Membership {
    /// The ring as this node holds it.
    #[must_use]
    pub fn ring_state(&self) -> RingState {
        lock(&self.state).ring.clone()
    }

    /// The claimant as this node sees it.
    #[must_use]
    pub fn claimant(&self) -> Option<NodeId> {
        let st = lock(&self.state);
        st.ring.claimant_among(|id| id == self.me.id || !st.down.contains(&id))
    }

    /// Why this node may not decide on `ring` (as claimant) or on `next`
    /// (the ring a decision leads to), if it may not: it must see a
    /// majority of the members that stay up (see
    /// [`RingState::majority_up`]).
    fn no_majority(&self, ring: &RingState, next: Option<&RingState>) -> Option<String> {
        let st = lock(&self.state);
        // Up: heard since this node started, and not believed down.
        let up = |id: NodeId| id == self.me.id || (st.heard.contains(&id) && !st.down.contains(&id));
        if ring.majority_up(up) || next.is_some_and(|n| n.majority_up(up)) {
            return None;
        }
        let voters = ring.voters();
        let seen = voters.iter().filter(|&&id| up(id)).count();
        Some(format!(
            "TRYAGAIN no majority: the claimant sees {seen} of the {} members up; the ring changes only while more than half of them are up",
            voters.len()
        ))
    }

    /// True if every member this node believes up (itself included) holds
    /// a ring of epoch `epoch` or later, as their heartbeats say.
    #[must_use]
    pub fn all_up_hold(&self, epoch: u64) -> bool {
        let st = lock(&self.state);
        st.table.all().filter(|k| k.entry.status != crate::rpc::Status::Removed).all(|k| {
            if k.entry.id == self.me.id {
                st.ring.epoch >= epoch
            } else {
                st.down.contains(&k.entry.id) || k.beat.ring_epoch >= epoch
            }
        })
    }

    /// Keeps `ring` if it is newer than this node's: saved, then published.
    /// True if it was kept.
    pub(super) async fn offer_ring(&self, ring: RingState) -> bool {
        let _one = self.ring_saving.lock().await;
        {
            let st = lock(&self.state);
            let q = st.cluster.map(|c| c.partitions as usize);
            if ring.stamp() <= st.ring.stamp() || !ring.is_known() || q.is_some_and(|q| ring.owners.len() != q) {
                return false;
            }
        }
        // A ring that only records more copies done need not wait for the
        // disk: lost in a crash, those copies are reported again (their
        // cursors say they are done).
        let only_done = {
            let old = &lock(&self.state).ring;
            old.generation == ring.generation
                && old.owners == ring.owners
                && old.next == ring.next
                && old.staged == ring.staged
                && old.removing == ring.removing
        };
        let saved = if only_done {
            self.store.meta_put_unsynced(RING, encode_ring(&ring)).await
        } else {
            self.store.meta_put(RING, encode_ring(&ring)).await
        };
        if let Err(e) = saved {
            tracing::warn!("cannot keep the ring of epoch {}: {e}", ring.epoch);
            return false;
        }
        let mut st = lock(&self.state);
        if ring.stamp() <= st.ring.stamp() {
            return false;
        }
        let old = std::mem::replace(&mut st.ring, ring);
        self.ring_changed(&mut st, &old);
        true
    }

    /// Takes in a ring just adopted: logs what changed, takes members that
    /// left or are removed out of the table, publishes.
    fn ring_changed(&self, st: &mut State, old: &RingState) {
        let new = &st.ring;
        if old.change != new.change && new.in_progress() {
            let n = st.cluster.map_or(self.settings.n, |c| c.n as usize).max(1);
            tracing::info!(epoch = new.epoch, moves = new.moves(n).len(), "a ring change began");
        }
        if old.in_progress() && !new.in_progress() && old.change != 0 {
            tracing::info!(epoch = new.epoch, members = new.members().len(), "the ring change is complete");
        }
        let mut gone: Vec<NodeId> = new.removing.clone();
        if old.is_known() && !new.in_progress() {
            let members = new.members();
            gone.extend(old.members().into_iter().filter(|id| !members.contains(id)));
        }
        for id in gone {
            if id == self.me.id {
                tracing::warn!(
                    "this node is no longer a member of the cluster: it owns no partition; it can be stopped"
                );
            } else if st.table.get(id).is_some_and(|k| k.entry.status != crate::rpc::Status::Removed) {
                tracing::info!(member = %id, "member left the cluster");
                st.table.remove(id);
                st.unsaved = true;
            }
        }
        self.publish(st);
    }

    /// Takes the newest ring of the members believed up, each exchange
    /// bounded by the gossip interval.
    async fn catch_up(&self) {
        let up: Vec<String> = {
            let st = lock(&self.state);
            let view = self.view();
            view.members
                .iter()
                .filter(|m| m.id != self.me.id && !st.down.contains(&m.id))
                .map(|m| m.peer_addr.clone())
                .collect()
        };
        self.sync_ring_with(up, self.settings.gossip_interval).await;
    }

    /// A ring exchange with each peer of `addrs` at once, each bounded by
    /// `within` (those that do not answer are left to gossip).
    pub(super) async fn sync_ring_with(&self, addrs: Vec<String>, within: std::time::Duration) {
        let syncs = addrs.iter().map(|addr| tokio::time::timeout(within, self.sync_ring(addr))).collect();
        let _ = crate::join::join_all(syncs).await;
    }

    /// One round's ring exchange with the peer at `addr`.
    pub(super) async fn sync_ring(&self, addr: &str) {
        let (generation, epoch, claimant) = {
            let r = &lock(&self.state).ring;
            (r.generation, r.epoch, r.claimant.0)
        };
        let answer = self.peers.gossip(addr, GossipRequest::RingStamp(generation, epoch, claimant)).await;
        if let Ok(GossipResponse::Ring { stamp, ring }) = answer {
            if let Some(ring) = ring {
                self.offer_ring(*ring).await;
            } else if stamp < lock(&self.state).ring.stamp() {
                let mine = Box::new(self.ring_state());
                let _ = self.peers.gossip(addr, GossipRequest::Ring(mine)).await;
            }
        }
    }

    /// Answers a peer's ring stamp: this node's ring if newer.
    pub(super) fn answer_stamp(&self, st: &State, generation: u64, epoch: u64, claimant: u64) -> GossipResponse {
        let theirs = RingState { generation, epoch, claimant: NodeId(claimant), ..RingState::unknown() }.stamp();
        let stamp = st.ring.stamp();
        GossipResponse::Ring { stamp, ring: (stamp > theirs).then(|| Box::new(st.ring.clone())) }
    }

    /// Makes a decision asked of this node as claimant: only if it is the
    /// claimant as it sees the cluster, has caught up with its peers' ring
    /// since it became one, and sees a majority up (of the ring before the
    /// decision or after it: a removal takes its node out of the count).
    /// Answers with the ring after it, or why not.
    pub(super) async fn decide(&self, decision: Decision) -> Response {
        self.decide_with(decision, true).await
    }

    /// Makes `decision` here, this node being the claimant, without a
    /// majority up: an operator's word that the members not seen are gone
    /// for good (`SHOAL.REMOVE … FORCE`); the ring after it.
    ///
    /// # Errors
    /// Refused (why), or the claimant has not caught up yet.
    pub async fn decide_forced(&self, decision: Decision) -> Result<RingState> {
        match self.decide_with(decision, false).await {
            Response::Gossip(GossipResponse::Ring { ring: Some(ring), .. }) => Ok(*ring),
            Response::Error(text) => Err(Error::Command(text)),
            other => Err(Error::TryAgain(format!("unexpected decision: {other:?}"))),
        }
    }

    /// `decide`, asking for a majority up if `need_majority`.
    async fn decide_with(&self, decision: Decision, need_majority: bool) -> Response {
        let me = self.me.id;
        if !self.deciding.load(Ordering::Relaxed) {
            // Asked before this node's own round found it claimant: catch
            // up now (the asker may hold a newer ring that makes it one).
            self.catch_up().await;
            if self.claimant() != Some(me) {
                return Response::Error(
                    "TRYAGAIN this node is not the claimant as it sees the cluster; try again".into(),
                );
            }
            self.deciding.store(true, Ordering::Relaxed);
        }
        let n = self.cluster_n();
        let ring = self.ring_state();
        let next = match decision {
            Decision::Stage { node, change, commit } => ring.stage(me, node, change, commit).map(Some),
            Decision::Commit => ring.commit(me).map(Some),
            Decision::Clear => ring.clear(me).map(Some),
            Decision::Done { change, partition, node } => Ok(ring.mark_done(me, change, partition, node, n)),
        };
        match next {
            Err(why) => return Response::Error(format!("ERR {why}")),
            Ok(Some(next)) if next != ring => {
                if let Some(why) = self.no_majority(&ring, Some(&next)).filter(|_| need_majority) {
                    return Response::Error(why);
                }
                if !self.offer_ring(next).await {
                    return Response::Error("TRYAGAIN the ring changed meanwhile; try again".into());
                }
            }
            Ok(_) => {}
        }
        let ring = self.ring_state();
        Response::Gossip(GossipResponse::Ring { stamp: ring.stamp(), ring: Some(Box::new(ring)) })
    }

    /// Takes the claimant's ring if it is newer than this node's (what an
    /// operator's plan should show, before gossip brings it).
    pub async fn sync_with_claimant(&self) {
        let Some(claimant) = self.claimant().filter(|&c| c != self.me.id) else { return };
        if let Some(addr) = self.view().member(claimant).map(|m| m.peer_addr.clone()) {
            self.sync_ring(&addr).await;
        }
    }

    /// Asks the claimant to make `decision`; the ring after it.
    ///
    /// # Errors
    /// No claimant, the claimant cannot be reached, or it refused (why).
    pub async fn ask_claimant(&self, decision: Decision) -> Result<RingState> {
        let Some(claimant) = self.claimant() else {
            return Err(Error::TryAgain("no claimant: no member that owns partitions is up".into()));
        };
        let answer = if claimant == self.me.id {
            self.decide(decision).await
        } else {
            let Some(addr) = self.view().member(claimant).map(|m| m.peer_addr.clone()) else {
                return Err(Error::TryAgain(format!("the claimant {claimant} is not a known member")));
            };
            match self.peers.gossip(&addr, GossipRequest::Decide(decision)).await {
                Ok(r) => Response::Gossip(r),
                Err(crate::rpc::CallError::Remote(text)) => Response::Error(text),
                Err(e) => return Err(Error::TryAgain(format!("the claimant {claimant}: {e}"))),
            }
        };
        match answer {
            Response::Gossip(GossipResponse::Ring { ring: Some(ring), .. }) => {
                let ring = *ring;
                if ring.stamp() < lock(&self.state).ring.stamp() {
                    // The claimant decided on an older ring than this
                    // node's: its decision loses to ours. Bring it ours.
                    if claimant != self.me.id
                        && let Some(addr) = self.view().member(claimant).map(|m| m.peer_addr.clone())
                    {
                        let _ = self.peers.gossip(&addr, GossipRequest::Ring(Box::new(self.ring_state()))).await;
                    }
                    return Err(Error::TryAgain("the claimant's ring was behind this node's; try again".into()));
                }
                self.offer_ring(ring.clone()).await;
                Ok(ring)
            }
            Response::Error(text) => Err(Error::Command(text)),
            other => Err(Error::TryAgain(format!("unexpected answer from the claimant: {other:?}"))),
        }
    }

    /// The claimant's part of a round: the next step of the ring, if any.
    /// And, for a node that joined and is not in the ring yet, staging its
    /// join.
    pub(super) async fn ring_round(&self) {
        let me = self.me.id;
        let claimant = self.claimant() == Some(me);
        let majority = claimant && self.no_majority(&self.ring_state(), None).is_none();
        let was_majority = self.majority.swap(majority, Ordering::Relaxed);
        if !claimant {
            self.deciding.store(false, Ordering::Relaxed);
        } else if !self.deciding.load(Ordering::Relaxed) || (majority && !was_majority) {
            // Claimant from now on (just started, the claimant before is
            // gone), or with a majority again (a partition healed): first
            // the newest ring any member up holds, so as not to decide on
            // an older one; decisions wait for it (see `decide`). Each
            // exchange bounded by the gossip interval.
            self.deciding.store(false, Ordering::Relaxed);
            self.catch_up().await;
            self.deciding.store(true, Ordering::Relaxed);
        } else if majority {
            // (Cut off from most members, the claimant takes no step: the
            // other side of a partition may be deciding.)
            let n = self.cluster_n();
            let ring = self.ring_state();
            let next = if ring.epoch == 0 && ring.is_known() {
                // A ring a build without stored rings left (every node
                // worked it out from its own member table): decided once,
                // so that every node holds this one.
                Some(RingState { epoch: 1, claimant: me, ..ring.clone() })
            } else if ring.in_progress() || ring.staged.iter().any(|s| s.commit) {
                // (Claim can take a while on large rings: not on this
                // thread.)
                tokio::task::spawn_blocking(move || ring.step(me, n)).await.ok().flatten()
            } else {
                None
            };
            if let Some(next) = next {
                self.offer_ring(next).await;
            }
        }
        let joining = *lock(&self.joining);
        if let Some(commit) = joining {
            let ring = self.ring_state();
            if !ring.is_known() {
                return;
            }
            if ring.members().contains(&me) {
                self.joined().await;
                return;
            }
            if ring.staged_for(me).is_some_and(|s| s.change == Change::Join && s.commit >= commit) {
                return;
            }
            match self.ask_claimant(Decision::Stage { node: me, change: Change::Join, commit }).await {
                Ok(_) => {
                    tracing::info!(commit, "staged this node's join with the claimant");
                    // A join staged for an operator's commit is theirs now
                    // (SHOAL.PLAN CLEAR takes it back for good); one
                    // committed at once is staged again until it starts.
                    if !commit {
                        self.joined().await;
                    }
                }
                Err(e) => tracing::debug!("cannot stage this node's join yet: {e}"),
            }
        }
    }

    /// The cluster's N (this node's setting until it has a cluster).
    #[must_use]
    pub fn cluster_n(&self) -> usize {
        lock(&self.state).cluster.map_or(self.settings.n, |c| c.n as usize).max(1)
    }

    /// Makes this node, alone in a cluster of its own and holding no data,
    /// a joining member of the cluster of the node at `seed` (a peer
    /// address); its join is staged, or committed at once if `commit`.
    ///
    /// # Errors
    /// This node is not alone or holds data, the seed cannot be reached or
    /// has no cluster, or the clusters' partition counts differ.
    pub async fn join_cluster(&self, seed: &str, commit: bool) -> Result<()> {
        {
            let st = lock(&self.state);
            let alone = st.ring.members() == [self.me.id]
                && st.table.all().all(|k| k.entry.id == self.me.id || k.entry.status == crate::rpc::Status::Removed);
            if st.cluster.is_some() && !alone {
                return Err(Error::Command(
                    "ERR this node is already a member of a cluster of several nodes; SHOAL.LEAVE it first".into(),
                ));
            }
        }
        if self.store.tally().keys > 0 {
            return Err(Error::Command(
                "ERR this node holds data; only an empty node joins another cluster (FLUSHALL it, or start it with an empty data directory)".into(),
            ));
        }
        // Asked as a node with no cluster: the seed refuses a handshake
        // from another cluster.
        let own = self.cluster();
        self.peers.set_cluster(0, self.settings.partitions);
        let restore = || {
            if let Some(c) = own {
                self.peers.set_cluster(c.id, c.partitions);
            }
        };
        let (record, entries) = match self.peers.gossip(seed, GossipRequest::Join).await {
            Ok(GossipResponse::Cluster(Some(record), entries)) => (record, entries),
            Ok(_) => {
                restore();
                return Err(Error::Command(format!("ERR {seed} has no cluster yet")));
            }
            Err(e) => {
                restore();
                return Err(Error::Command(format!("ERR cannot reach {seed}: {e}")));
            }
        };
        if own.is_some_and(|c| c.id == record.id) {
            restore();
            return Err(Error::Command("ERR this node is already a member of that cluster".into()));
        }
        let own_ring = std::mem::replace(&mut lock(&self.state).ring, RingState::unknown());
        if let Err(e) = self.adopt(record, entries, seed, commit).await {
            restore();
            let mut st = lock(&self.state);
            st.ring = own_ring;
            self.publish(&st);
            return Err(e);
        }
        // Staged now, so that SHOAL.PLAN shows it at once (else the next
        // gossip rounds stage it).
        self.sync_ring(seed).await;
        let me = self.me.id;
        if self.ask_claimant(Decision::Stage { node: me, change: Change::Join, commit }).await.is_ok() && !commit {
            self.joined().await;
        }
        Ok(())
    }

    /// Records that this node has no join of its own to stage any more.
    async fn joined(&self) {
        *lock(&self.joining) = None;
        if let Err(e) = self.store.meta_put(JOINING, Bytes::new()).await {
            tracing::warn!("cannot record that this node's join is staged: {e}");
        }
    }

    /// Records that this node is to join the ring (`commit`: at once).
    pub(super) async fn will_join(&self, commit: bool) -> Result<()> {
        self.store.meta_put(JOINING, Bytes::from_static(if commit { b"1" } else { b"0" })).await?;
        *lock(&self.joining) = Some(commit);
        Ok(())
    }
}

/// What `meta` says of a pending join.
pub(super) fn read_joining(bytes: Option<Bytes>) -> Option<bool> {
    match bytes.as_deref() {
        Some(b"1") => Some(true),
        Some(b"0") => Some(false),
        _ => None,
    }
}

/// The ring to start with when none was saved: a new node's (unknown), or
/// that of a cluster made by a build that kept none (the round robin of
/// its members, which every member of it computes alike).
pub(super) fn initial(cluster_known: bool, members: &[NodeId], q: u32) -> RingState {
    if cluster_known && !members.is_empty() { RingState::legacy(members, q) } else { RingState::unknown() }
}

/// Shares `ring` for a view.
pub(super) fn rings(ring: &RingState) -> (Option<Arc<crate::ring::Ring>>, Option<Arc<crate::ring::Ring>>) {
    if !ring.is_known() {
        return (None, None);
    }
    (Some(Arc::new(ring.ring())), ring.next_ring().map(Arc::new))
}
