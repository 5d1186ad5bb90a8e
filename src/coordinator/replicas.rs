//! Talking to a key's replicas: quorum reads with read repair, replicated
//! writes, and forwarding to a coordinator in the preference list.
//!
//! A request goes to one target per replica of the key ([`Placement`]):
//! the replica itself, or, with sloppy quorum, the fallback standing in
//! for it while it is believed down. A fallback keeps what it is sent as a
//! hint for the replica and answers reads from its hints. The coordinator
//! answers as soon as enough targets have replied (R or W, PR or PW,
//! counted by [`Quorum`]) or as soon as too many have failed; the calls
//! still in flight then finish in a background task, so a slow target
//! neither delays the reply nor misses the write.
//!
//! A read asks R targets for their copies (this node first, then the
//! fastest, and every fallback) and the other replicas only for a digest
//! of their version summary ([`Object::digest`]); if a target asked for
//! its copy fails, the others are asked for theirs instead. A fallback
//! that holds nothing of the key vouches for nothing: it counts towards R
//! only once every target has answered. Once every target has answered,
//! copies whose digest differs from the merge are fetched, and the merged
//! object is sent to each replica that lacked some of it (read repair;
//! fallbacks are not repaired). A read whose replicas all answered alike
//! spawns nothing.
//!
//! A replica the failure detector believes down with no fallback to stand
//! in counts as failed at once: reads do not ask it, and writes still send
//! it the object in the background (the detector may be wrong) but do not
//! wait for it. So when the live targets cannot make R or W, the answer is
//! NOQUORUM at once. A replica that fails a write before the detector
//! believes it down is stood in for by a backup fallback (one that stands
//! in for no other), unless the write asks for PW.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result, Unmet};
use crate::membership::View;
use crate::metrics;
use crate::rpc::{CallError, KvRequest, KvResponse, Member, Peers};
use crate::shutdown::Tracker;
use crate::storage::{Overflow, Store};
use crate::version::{Encoded, NodeId, Object};

use super::Coordinator;
use super::quorum::{Need, Quorum, Slot, Status, Tally};

/// What a read that cannot reach R still waits for.
#[derive(Clone, Copy)]
enum Short {
    /// This node's own copy, to count it (the read fails anyway).
    WaitForOwn,
    /// Every replica still answering: the read settles for their merge.
    WaitForAll,
}

/// One replica's answer, in flight.
type Call<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// What a read got from the replicas when it answered, and what is still
/// on its way: the copies read, the calls for copies still in flight and
/// the digests asked of the other replicas.
struct Gathered {
    answers: Vec<(usize, Result<Option<Arc<Object>>>)>,
    pending: Vec<(usize, Call<Option<Arc<Object>>>)>,
    digests: Vec<(usize, Call<Option<u64>>)>,
}

/// Where a key lives, as this node sees the cluster now: the key's
/// replicas (its primaries), and with sloppy quorum the fallbacks standing
/// in for those believed down. Requests go to one *target* per replica
/// slot: the replica itself, or the fallback standing in for it.
pub(super) struct Placement {
    pub hash: u64,
    view: Arc<View>,
    /// The key's partition, whose replicas (the first N distinct owners
    /// from it) the view lists.
    partition: u32,
    /// This node's slot among the replicas, if it is one.
    pub me: Option<usize>,
    /// The slot whose target is this node: its own, or one it stands in
    /// for.
    local: Option<usize>,
    /// For each replica believed down that a fallback stands in for: (its
    /// slot, the fallback's index among the view's members). Fallbacks are
    /// the next nodes of the preference list believed up, in order; so the
    /// targets are the first N nodes of the list believed up. Empty while
    /// every replica is up, and always without sloppy quorum.
    stand_ins: Vec<(usize, usize)>,
    sloppy: bool,
}

impl Placement {
    /// A copy for a background task.
    fn clone_for_repair(&self) -> Self {
        Self {
            hash: self.hash,
            view: Arc::clone(&self.view),
            partition: self.partition,
            me: self.me,
            local: self.local,
            stand_ins: self.stand_ins.clone(),
            sloppy: self.sloppy,
        }
    }

    /// `sloppy`: whether fallbacks stand in for replicas believed down.
    pub fn new(view: Arc<View>, me: NodeId, hash: u64, sloppy: bool) -> Self {
        let partition = view.partitioner().of(hash);
        let replicas = view.target_indices(partition);
        let mine = replicas.iter().position(|&i| view.members[i].id == me);
        let mut stand_ins = Vec::new();
        if sloppy && replicas.iter().any(|&i| !view.up[i]) {
            let mut fallbacks = view
                .ring
                .preference_list(partition)
                .iter()
                .skip(view.replica_indices(partition).len())
                .filter_map(|&id| view.index_of(id))
                .filter(|&i| view.up[i] && !replicas.contains(&i));
            for (slot, &i) in replicas.iter().enumerate() {
                if !view.up[i] {
                    let Some(fallback) = fallbacks.next() else { break };
                    stand_ins.push((slot, fallback));
                }
            }
        }
        let local = mine.or_else(|| stand_ins.iter().find(|&&(_, f)| view.members[f].id == me).map(|&(s, _)| s));
        Self { hash, view, partition, me: mine, local, stand_ins, sloppy }
    }

    /// Where slot `i`'s write goes if its replica fails it before the
    /// failure detector believes it down (it has just died, or been cut
    /// off): with sloppy quorum, the `rank`-th fallback believed up that
    /// stands in for no replica, `rank` being the slot's place among the
    /// slots whose target is the replica itself. So every coordinator
    /// picks the same backup for a replica while they see the cluster
    /// alike, and no two slots share one.
    fn backup_rank(&self, i: usize) -> Option<usize> {
        (self.sloppy && self.primary(i) && self.me != Some(i)).then(|| (0..i).filter(|&s| self.primary(s)).count())
    }

    /// The key's replicas, and during a ring change the nodes gaining its
    /// partition after them, as indices into the view's members: one slot
    /// each.
    fn replicas(&self) -> &[usize] {
        self.view.target_indices(self.partition)
    }

    /// How many of the slots are the key's current replicas (the first
    /// ones; the others are nodes gaining its partition).
    fn current(&self) -> usize {
        self.view.replica_indices(self.partition).len()
    }

    /// Where slot `i`'s answers count (see `View::target_indices`): in the
    /// current replica set, in the one after the change in progress, and
    /// towards PW or PR (a current replica itself, not a fallback).
    pub fn slot(&self, i: usize) -> Slot {
        self.sets().slot(i)
    }

    /// Where each slot's answers count.
    fn sets(&self) -> Sets {
        let fallbacks = self.stand_ins.iter().filter(|&&(s, _)| s < 64).fold(0, |set, &(s, _)| set | 1 << s);
        Sets { current: self.current(), next: self.view.next_set(self.partition), fallbacks }
    }

    /// What a request asking for `q` answers (R or W) and `primaries` of
    /// the replicas themselves (PR or PW) needs: `q` of each replica set,
    /// at most its size (the second set only during a change).
    pub fn need(&self, q: usize, primaries: usize) -> Need {
        let next = self.view.next_set(self.partition).count_ones() as usize;
        Need { current: q.min(self.current()), next: q.min(next), primaries }
    }

    /// The view this placement was made in.
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// Replica slots, each with one target.
    pub fn slots(&self) -> usize {
        self.replicas().len()
    }

    /// Replicas per key: the effective N.
    pub fn n(&self) -> usize {
        self.view.n
    }

    /// True if this node holds the key's only copy (N is 1) and no node is
    /// gaining its partition: no peer is involved.
    pub fn local_only(&self) -> bool {
        self.view.n == 1 && self.me == Some(0) && self.view.gaining_indices(self.partition).is_empty()
    }

    /// True if no other copy of the key can exist anywhere: this node is
    /// the cluster's only member. (N = 1 among several members is not
    /// enough: a key's owner changes as members come and go, and a copy
    /// may be on its way.) Only then may a write forget the actors it
    /// supersedes.
    pub fn only_copy(&self) -> bool {
        self.local_only() && self.view.members.len() == 1
    }

    /// The target of slot `i`, as an index into the view's members.
    fn target(&self, i: usize) -> usize {
        self.stand_ins.iter().find(|&&(s, _)| s == i).map_or(self.replicas()[i], |&(_, f)| f)
    }

    /// The replica of slot `i` that a fallback stands in for, if one does.
    fn standing_in_for(&self, i: usize) -> Option<NodeId> {
        self.stand_ins.iter().any(|&(s, _)| s == i).then(|| self.replica(i).id)
    }

    /// True if slot `i`'s target is the replica itself (not a fallback
    /// standing in for it, nor a node gaining the partition).
    fn primary(&self, i: usize) -> bool {
        self.slot(i).primary
    }

    /// True if slot `i`'s target is this node.
    fn is_local(&self, i: usize) -> bool {
        self.local == Some(i)
    }

    /// True if this node believes slot `i`'s target up (a fallback stands
    /// in only while up).
    pub fn up(&self, i: usize) -> bool {
        self.view.up[self.target(i)]
    }

    /// True if this node believes replica `i` itself up.
    fn replica_up(&self, i: usize) -> bool {
        self.view.up[self.replicas()[i]]
    }

    /// How many of the key's current replicas this node believes up.
    pub fn replicas_up(&self) -> usize {
        (0..self.current()).filter(|&i| self.replica_up(i)).count()
    }

    /// The first replica believed up, in preference order: the one that
    /// coordinates writes that depend on the current value.
    pub fn first_up(&self) -> Option<usize> {
        (0..self.slots()).find(|&i| self.replica_up(i))
    }

    /// Replica `i` itself.
    fn replica(&self, i: usize) -> &Member {
        &self.view.members[self.replicas()[i]]
    }

    /// Slot `i`'s target.
    fn member(&self, i: usize) -> &Member {
        &self.view.members[self.target(i)]
    }

    /// The peer address of slot `i`'s target, owned by the returned
    /// value: the view stays alive, nothing is copied.
    fn addr_of(&self, i: usize) -> PeerAddr {
        PeerAddr { view: Arc::clone(&self.view), member: self.target(i) }
    }
}

/// The `rank`-th fallback of `partition` believed up that stands in for
/// no replica (see [`Placement::backup_rank`]), as an index into the
/// view's members.
fn backup_of(view: &View, partition: u32, stand_ins: &[(usize, usize)], rank: usize) -> Option<usize> {
    let replicas = view.target_indices(partition);
    view.ring
        .preference_list(partition)
        .iter()
        .skip(view.replica_indices(partition).len())
        .filter_map(|&id| view.index_of(id))
        .filter(|&f| view.up[f] && !replicas.contains(&f) && !stand_ins.iter().any(|&(_, t)| t == f))
        .nth(rank)
}

/// A replica's peer address that a spawned call can own cheaply.
struct PeerAddr {
    view: Arc<View>,
    member: usize,
}

impl PeerAddr {
    fn as_str(&self) -> &str {
        &self.view.members[self.member].peer_addr
    }
}

/// A peer call's failure as the coordinator's error: the peer's own error
/// passed on, anything else retryable.
pub(super) fn from_call(e: CallError) -> Error {
    match e {
        CallError::Remote(text) => Error::Command(text),
        other => Error::TryAgain(other.to_string()),
    }
}

/// The failure of a call not made: the peer at `addr` is believed down.
pub(super) fn down(addr: &str) -> Error {
    Error::TryAgain(format!("{addr} is down"))
}

/// Polls each of `calls` once, takes out those that are done and hands
/// each, with its result, to `done` (no collection in between: this runs
/// on every poll of every replicated request).
fn take_ready<T>(calls: &mut Vec<(usize, Call<T>)>, cx: &mut Context<'_>, mut done: impl FnMut(usize, Result<T>)) {
    let mut i = 0;
    while i < calls.len() {
        if let Poll::Ready(result) = calls[i].1.as_mut().poll(cx) {
            done(calls.swap_remove(i).0, result);
        } else {
            i += 1;
        }
    }
}

/// Polls `pending` (calls by slot) until `quorum` is reached or that can
/// no longer happen (`slot` tells where each slot's answer counts).
/// Returns the answers so far (by slot) and the calls still pending.
async fn until_quorum<T>(
    mut pending: Vec<(usize, Call<T>)>,
    mut quorum: Quorum,
    slot: impl Fn(usize) -> Slot,
) -> (Quorum, Vec<(usize, Result<T>)>, Vec<(usize, Call<T>)>) {
    let mut answers = Vec::new();
    if quorum.status() == Status::Reached {
        return (quorum, answers, pending);
    }
    std::future::poll_fn(|cx| {
        take_ready(&mut pending, cx, |i, result| {
            quorum.record(result.is_ok(), slot(i));
            answers.push((i, result));
        });
        match quorum.status() {
            Status::Pending if !pending.is_empty() => Poll::Pending,
            _ => Poll::Ready(()),
        }
    })
    .await;
    (quorum, answers, pending)
}

/// A digest that came back.
struct Heard {
    replica: usize,
    digest: Result<Option<u64>>,
    /// It matched the merge of the copies at some point: that replica's
    /// copy is part of the merge, so it counts towards R.
    vouched: bool,
}

/// A read in flight: the copies and digests asked for, what came back,
/// and how many targets vouch for the merge of the copies so far, per
/// replica set. A target vouches by sending its copy, or a digest equal
/// to the merge's (then it holds exactly the merge). Counting digests lets
/// a read answer with the first R targets to reply, whichever were asked
/// for copies. Only replicas themselves are asked for digests; a fallback
/// standing in for one, or a node gaining the partition, is asked for its
/// copy.
struct Read {
    copies: Vec<(usize, Call<Option<Arc<Object>>>)>,
    digests: Vec<(usize, Call<Option<u64>>)>,
    answers: Vec<(usize, Result<Option<Arc<Object>>>)>,
    heard: Vec<Heard>,
    merged: Option<Arc<Object>>,
    vouched: Tally,
    /// Where each slot's answer counts.
    sets: Sets,
    /// Fallbacks that answered holding nothing of the key: they vouch for
    /// nothing, and count towards R only once every target has answered
    /// (then no acknowledged write can be missing from what was read).
    empty: Tally,
}

/// Where each slot of a key's placement counts (see [`Placement::slot`]),
/// without borrowing the placement.
#[derive(Clone, Copy, Default)]
struct Sets {
    /// Slots in the current replica set: the first ones.
    current: usize,
    /// Slots in the replica set after the change in progress, a bitmask.
    next: u64,
    /// Slots whose target is a fallback, a bitmask.
    fallbacks: u64,
}

impl Sets {
    fn slot(&self, i: usize) -> Slot {
        let has = |set: u64| i < 64 && set & 1 << i != 0;
        let current = i < self.current;
        Slot { current, next: has(self.next), primary: current && !has(self.fallbacks) }
    }

    fn fallback(&self, i: usize) -> bool {
        i < 64 && self.fallbacks & 1 << i != 0
    }
}

impl Read {
    /// Polls every call; ready once targets vouch as `need` asks, in each
    /// replica set and among replicas themselves (`Reached`), or that can
    /// no longer happen (`Impossible`). When the copies asked for cannot make
    /// it any more (a target failed, or its digest differs), the replicas
    /// asked for digests that have not vouched are asked for their copies
    /// instead (`copy` makes the call).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        need: Need,
        copy: &impl Fn(usize) -> Call<Option<Arc<Object>>>,
    ) -> Poll<Status> {
        loop {
            let mut changed = false;
            let (answers, merged, vouched) = (&mut self.answers, &mut self.merged, &mut self.vouched);
            let (sets, empty) = (self.sets, &mut self.empty);
            take_ready(&mut self.copies, cx, |replica, result| {
                if let Ok(answer) = &result {
                    if sets.fallback(replica) && answer.is_none() {
                        empty.count(sets.slot(replica));
                    } else {
                        vouched.count(sets.slot(replica));
                    }
                    if let Some(o) = answer {
                        merge_into(merged, o);
                    }
                    changed = true;
                }
                answers.push((replica, result));
            });
            let heard = &mut self.heard;
            take_ready(&mut self.digests, cx, |replica, digest| {
                heard.push(Heard { replica, digest, vouched: false });
                changed = true;
            });
            // A digest vouches only against copies that arrived: with none,
            // "no copy" would match "no copy read".
            if changed && self.answers.iter().any(|(_, a)| a.is_ok()) {
                let merged = self.merged.as_deref().map(Object::digest);
                for h in self.heard.iter_mut().filter(|h| !h.vouched) {
                    // (Only replicas themselves are asked for digests.)
                    if matches!(h.digest, Ok(d) if d == merged) {
                        h.vouched = true;
                        self.vouched.count(self.sets.slot(h.replica));
                    }
                }
            }
            if self.vouched.meets(need) {
                return Poll::Ready(Status::Reached);
            }
            let mut asked = Tally::default();
            for (i, _) in &self.copies {
                asked.count(self.sets.slot(*i));
            }
            if (self.vouched + asked).meets(need) {
                return Poll::Pending;
            }
            let unvouched = |h: &Heard| !h.vouched && h.digest.is_ok();
            if self.digests.is_empty() && !self.heard.iter().any(unvouched) {
                // Nothing more to ask. Fallbacks that hold nothing make up
                // R once every target has answered, if some target vouched.
                if !self.copies.is_empty() {
                    return if (self.vouched + self.empty + asked).meets(need) {
                        Poll::Pending
                    } else {
                        Poll::Ready(Status::Impossible)
                    };
                }
                // (Fallbacks are never primaries: `empty` adds none.)
                let settled = !self.vouched.is_empty() && (self.vouched + self.empty).meets(need);
                return Poll::Ready(if settled { Status::Reached } else { Status::Impossible });
            }
            let ask: Vec<usize> = self
                .digests
                .drain(..)
                .map(|(i, _)| i)
                .chain(self.heard.iter().filter(|h| unvouched(h)).map(|h| h.replica))
                .collect();
            self.heard.retain(|h| !unvouched(h));
            self.copies.extend(ask.into_iter().map(|i| (i, copy(i))));
        }
    }
}

/// Finishes calls in the background (a tracked task), then hands all
/// answers to `then`.
fn finish_later<T: Send + 'static>(
    tasks: &Tracker,
    mut answers: Vec<(usize, Result<T>)>,
    pending: Vec<(usize, Call<T>)>,
    then: impl FnOnce(Vec<(usize, Result<T>)>) -> Call<()> + Send + 'static,
) {
    tasks.spawn(async move {
        let rest = crate::join::join_all(pending.into_iter().map(|(i, call)| async move { (i, call.await) }).collect());
        answers.extend(rest.await);
        let _ = then(answers).await;
    });
}

/// Reads slot `i`'s object: the replica's copy, or what the fallback
/// standing in for it holds. (A replica that fails a read is not stood in
/// for by a backup as a write is: a backup holds only the writes that
/// failed over to it, and would vouch for a merge missing the others; the
/// replicas asked for digests are asked for copies instead.)
fn read_call(store: &Arc<Store>, peers: &Peers, place: &Placement, i: usize, key: &Bytes) -> Call<Option<Arc<Object>>> {
    let (key, hash) = (key.clone(), place.hash);
    let standing_in = place.standing_in_for(i);
    if place.is_local(i) {
        let store = Arc::clone(store);
        return match standing_in {
            None => Box::pin(async move { store.get(hash, &key).await }),
            Some(target) => {
                let view = Arc::clone(&place.view);
                Box::pin(async move { read_standing_in(&store, &view, target, hash, &key).await })
            }
        };
    }
    if !place.up(i) {
        let e = down(&place.member(i).peer_addr);
        return Box::pin(async move { Err(e) });
    }
    let (peers, addr) = (peers.clone(), place.addr_of(i));
    let request = match standing_in {
        None => KvRequest::Read { key },
        Some(target) => KvRequest::HintRead { key, target },
    };
    Box::pin(async move {
        match peers.kv(addr.as_str(), request).await.map_err(from_call)? {
            KvResponse::Object(o) => Ok(o),
            other => Err(super::unexpected(&other)),
        }
    })
}

/// What this node holds of `key` standing in for `target`: its own copy
/// merged with what it keeps on behalf of `target` or of any other replica
/// of the key (as `view` sees them: the coordinator that sent a write here
/// may have seen the replicas down in another order).
pub(super) async fn read_standing_in(
    store: &Store,
    view: &View,
    target: NodeId,
    hash: u64,
    key: &[u8],
) -> Result<Option<Arc<Object>>> {
    let p = view.partitioner().of(hash);
    let mut targets: Vec<NodeId> = view.replica_indices(p).iter().map(|&i| view.members[i].id).collect();
    if !targets.contains(&target) {
        targets.push(target);
    }
    // What this node holds of a partition it does not replicate is left
    // over from an earlier ring: not a copy to answer with (a delete its
    // replicas have since forgotten would come back through it).
    let mut own = if view.is_replica(p, store.node_id()) { store.get(hash, key).await? } else { None };
    if let Some(kept) = store.kept_for_any(targets, hash, key).await? {
        merge_into(&mut own, &kept);
    }
    Ok(own)
}

/// Asks replica `i` for the digest of its copy of `key`.
fn digest_call(store: &Arc<Store>, peers: &Peers, place: &Placement, i: usize, key: &Bytes) -> Call<Option<u64>> {
    if place.is_local(i) || !place.up(i) || !place.primary(i) {
        let read = read_call(store, peers, place, i, key);
        return Box::pin(async move { read.await.map(|o| o.map(|o| o.digest())) });
    }
    let (peers, addr, key) = (peers.clone(), place.addr_of(i), key.clone());
    Box::pin(async move {
        match peers.kv(addr.as_str(), KvRequest::Digest { key }).await.map_err(from_call)? {
            KvResponse::Digest(d) => Ok(d),
            other => Err(super::unexpected(&other)),
        }
    })
}

/// Whether a replica's answer lacks something of `merged` (the merge of all
/// answers), so read repair should send it: a copy missing writes, or no
/// copy where there is one. A failed answer is not repaired.
fn stale(answer: &Result<Option<Arc<Object>>>, merged: Option<&Object>) -> bool {
    match (answer, merged) {
        (Ok(Some(o)), Some(m)) => o.changed_by(m),
        (Ok(None), Some(_)) => true,
        _ => false,
    }
}

/// The merge of the copies that answered: the first one itself when the
/// others add nothing to it (the usual case), without a clone.
fn merge_answers(answers: &[(usize, Result<Option<Arc<Object>>>)]) -> Option<Arc<Object>> {
    let mut merged: Option<Arc<Object>> = None;
    for o in answers.iter().filter_map(|(_, a)| a.as_ref().ok().and_then(Option::as_ref)) {
        merge_into(&mut merged, o);
    }
    merged
}

/// Merges one copy into a merge of copies, cloning only when it adds
/// something.
fn merge_into(merged: &mut Option<Arc<Object>>, o: &Arc<Object>) {
    match merged {
        None => *merged = Some(Arc::clone(o)),
        Some(m) if m.changed_by(o) => Arc::make_mut(m).merge(o),
        Some(_) => {}
    }
}

/// Merges `object` into slot `i`: into the replica's copy, or into what
/// the fallback standing in for it keeps on its behalf. With `backup`, a
/// replica that fails the merge is stood in for by its backup fallback
/// (see [`Placement::backup_rank`]).
fn merge_call(
    store: &Arc<Store>,
    peers: &Peers,
    place: &Placement,
    i: usize,
    key: &Bytes,
    object: Encoded,
    backup: bool,
) -> Call<()> {
    let (key, hash) = (key.clone(), place.hash);
    let standing_in = place.standing_in_for(i);
    if place.is_local(i) {
        let store = Arc::clone(store);
        return Box::pin(async move {
            let object = Arc::clone(object.object());
            match standing_in {
                None => store.merge(hash, &key, object).await.map(|_| ()),
                Some(target) => keep_for(&store, target, hash, &key, object).await?.map_err(|o| overflowed(target, o)),
            }
        });
    }
    let (peers, addr) = (peers.clone(), place.addr_of(i));
    let retry = place.backup_rank(i).filter(|_| backup).map(|rank| {
        let again = (key.clone(), object.clone());
        (rank, place.partition, place.replica(i).id, place.stand_ins.clone(), again)
    });
    let request = match standing_in {
        None => KvRequest::Merge { key, object },
        Some(target) => KvRequest::Hint { key, target, object },
    };
    Box::pin(async move {
        let failed = match peers.kv(addr.as_str(), request).await {
            Ok(KvResponse::Done) => return Ok(()),
            Ok(other) => return Err(super::unexpected(&other)),
            Err(e) => from_call(e),
        };
        let Some((rank, partition, target, stand_ins, (key, object))) = retry else { return Err(failed) };
        let Some(b) = backup_of(&addr.view, partition, &stand_ins, rank) else { return Err(failed) };
        let request = KvRequest::Hint { key, target, object };
        match peers.kv(&addr.view.members[b].peer_addr, request).await {
            Ok(KvResponse::Done) => Ok(()),
            _ => Err(failed),
        }
    })
}

/// Keeps `object` on behalf of `target` (this node stands in for it).
/// Past the bounds on hints for `target`, `Ok(Err)`: the write does not
/// count.
pub(super) async fn keep_for(
    store: &Store,
    target: NodeId,
    hash: u64,
    key: &[u8],
    object: Arc<Object>,
) -> Result<std::result::Result<(), Overflow>> {
    store.keep_for(target, hash, key, object).await
}

/// The error of a hint refused.
pub(super) fn overflowed(target: NodeId, overflow: Overflow) -> Error {
    Error::TryAgain(format!("no hint kept for {target}: {overflow}"))
}

/// A hint for `target` about a key of `partition` was refused, past the
/// bounds on hints: counted, logged (once per partition), and the
/// partition recorded as needing repair, so that anti-entropy brings
/// `target` what it missed.
async fn refused(store: &Store, metrics: &crate::metrics::Metrics, target: NodeId, partition: u32, overflow: Overflow) {
    match store.mark_for_repair(partition).await {
        Ok(true) => tracing::warn!(
            node = %target,
            partition,
            "hints for a node refused ({overflow}); partition marked as needing repair"
        ),
        Ok(false) => {}
        Err(e) => tracing::error!(partition, "could not record a partition as needing repair: {e}"),
    }
    // Counted once recorded, so a count seen includes its mark.
    metrics::add(&metrics.hints_refused, 1);
}

/// What failed, for the NOQUORUM log line: `address: why` per failure.
fn failures<T>(answers: &[(usize, Result<T>)]) -> Vec<String> {
    answers.iter().filter_map(|(_, a)| a.as_ref().err()).map(ToString::to_string).collect()
}

impl Coordinator {
    /// Reads `key` from its targets and returns the merge of the answers
    /// once `need` is met; repairs stale targets afterwards.
    pub(super) async fn read_replicas(
        &self,
        key: &Bytes,
        place: &Placement,
        need: Need,
    ) -> Result<Option<Arc<Object>>> {
        let (reached, merged, (needed, got)) = self.gather(key, place, need, Short::WaitForOwn).await;
        if reached { Ok(merged) } else { Err(Error::NoQuorum { needed, got, outcome: Unmet::Read }) }
    }

    /// Counts and logs (at most once a second) a quorum missed, naming the
    /// replicas that failed and how.
    pub(super) fn report_noquorum(&self, what: &str, needed: usize, got: usize, failed: Vec<String>) {
        let summary = format!("{what}: {needed} replicas needed, {got} answered; {}", failed.join("; "));
        if self.metrics.noquorum(summary.clone()) {
            tracing::warn!("NOQUORUM {summary}");
        }
    }

    /// Reads `key` from its replicas as [`read_replicas`](Self::read_replicas)
    /// does, but settles for what the replicas that answer hold when fewer
    /// than `need` asks can: once enough answered, their merge; else the
    /// merge of every replica that answers within the request timeout.
    pub(super) async fn read_available(&self, key: &Bytes, place: &Placement, need: Need) -> Option<Arc<Object>> {
        self.gather(key, place, need, Short::WaitForAll).await.1
    }

    /// The order in which a read asks replicas for their copies: this node,
    /// then the replicas believed up, the fastest first (by the smoothed
    /// round trip of their calls; in preference order while unknown), then
    /// those believed down.
    fn read_order(&self, place: &Placement) -> Vec<usize> {
        let mut order: Vec<usize> = (0..place.slots()).collect();
        order.sort_by_cached_key(|&i| {
            if place.is_local(i) {
                (0, Duration::ZERO)
            } else if place.up(i) {
                (1, self.peers.latency(&place.member(i).peer_addr).unwrap_or_default())
            } else {
                (2, Duration::ZERO)
            }
        });
        order
    }

    /// Asks R targets for their copy of `key` and the others for a
    /// digest, and waits until `need` targets vouch for the merge of the
    /// copies or that can no longer happen (then, as `short` says, for this
    /// node's copy or for every target still answering): (quorum reached,
    /// the merge of the copies, (needed, answered) of what fell short).
    /// Read repair follows.
    async fn gather(
        &self,
        key: &Bytes,
        place: &Placement,
        need: Need,
        short: Short,
    ) -> (bool, Option<Arc<Object>>, (usize, usize)) {
        let order = self.read_order(place);
        let (copies, others) = order.split_at(need.current.max(need.next).min(order.len()));
        let copy = |i: usize| read_call(&self.store, &self.peers, place, i, key);
        let mut read = Read {
            // Fallbacks are asked for copies, never for digests: what one
            // holds may be nothing at all, which a digest cannot tell apart.
            copies: copies.iter().chain(others.iter().filter(|&&i| !place.primary(i))).map(|&i| (i, copy(i))).collect(),
            digests: others
                .iter()
                .filter(|&&i| place.up(i) && place.primary(i))
                .map(|&i| (i, digest_call(&self.store, &self.peers, place, i, key)))
                .collect(),
            answers: Vec::new(),
            heard: Vec::new(),
            merged: None,
            vouched: Tally::default(),
            sets: place.sets(),
            empty: Tally::default(),
        };
        let status = std::future::poll_fn(|cx| read.poll(cx, need, &copy)).await;
        let sets = read.sets;
        let Read { copies: mut pending, digests, mut answers, heard, mut merged, .. } = read;
        if status != Status::Reached {
            let waited: Vec<(usize, Call<Option<Arc<Object>>>)> = match short {
                // The peers failed before this node's own copy was read:
                // count that answer too, so NOQUORUM tells how many
                // replicas answered.
                Short::WaitForOwn => match pending.iter().position(|(i, _)| place.is_local(*i)) {
                    Some(at) => vec![pending.swap_remove(at)],
                    None => Vec::new(),
                },
                // Quorum was out of reach as soon as the replicas believed
                // down failed; the live ones may still answer.
                Short::WaitForAll => std::mem::take(&mut pending),
            };
            let (ids, calls): (Vec<usize>, Vec<_>) = waited.into_iter().unzip();
            answers.extend(ids.into_iter().zip(crate::join::join_all(calls).await));
            merged = merge_answers(&answers);
        }
        let (mut needed, mut got) = (0, 0);
        if status != Status::Reached {
            // What fell short: R in a replica set, or else PR, counting
            // those that answered while the read waited too.
            let mut answered = Tally::default();
            let ok = answers.iter().filter(|(_, a)| a.is_ok()).map(|(i, _)| *i);
            for i in ok.chain(heard.iter().filter(|h| h.vouched).map(|h| h.replica)) {
                answered.count(sets.slot(i));
            }
            (needed, got) = answered.short_of(need).unwrap_or((need.current, answered.current));
            self.report_noquorum("read", needed, got, failures(&answers));
        }
        // Digests heard that differ from the merge: those copies are
        // fetched by the repair. While copies are still on their way the
        // merge may grow, so every digest heard is kept, to be compared with
        // the final merge (a replica that vouched for an early merge may
        // lack a write a later copy brings).
        let digest = merged.as_deref().map(Object::digest);
        let merge_final = pending.is_empty();
        let mut digests = digests;
        digests.extend(heard.into_iter().filter_map(|h| match h.digest {
            Ok(d) if d != digest || !merge_final => {
                Some((h.replica, Box::pin(std::future::ready(Ok(d))) as Call<Option<u64>>))
            }
            _ => None,
        }));
        self.repair_later(key, place, merged.as_deref(), Gathered { answers, pending, digests });
        (status == Status::Reached, merged, (needed, got))
    }

    /// Once every replica has answered (or failed), fetches the copies whose
    /// digest differs from the merge of the copies read, and sends the
    /// merged object to each replica that lacked some of it. `merged` is
    /// the merge of `gathered.answers`: when every replica has answered and
    /// none of them differs, there is nothing to repair and nothing is
    /// spawned.
    fn repair_later(&self, key: &Bytes, place: &Placement, merged: Option<&Object>, mut gathered: Gathered) {
        let agrees = |d: &Option<u64>| *d == merged.map(Object::digest);
        let merge_final = gathered.pending.is_empty();
        gathered.digests.retain_mut(|(_, call)| match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(d)) if merge_final && agrees(&d) => false,
            Poll::Ready(Ok(d)) => {
                *call = Box::pin(std::future::ready(Ok(d)));
                true
            }
            Poll::Ready(Err(_)) => false,
            Poll::Pending => true,
        });
        let Gathered { answers, pending, digests } = gathered;
        // Only replicas are repaired: a fallback keeps what it was sent on a
        // replica's behalf, not what that replica already holds.
        if pending.is_empty()
            && digests.is_empty()
            && !answers.iter().any(|(i, a)| place.primary(*i) && stale(a, merged))
        {
            return;
        }
        let (store, peers, metrics) = (Arc::clone(&self.store), self.peers.clone(), Arc::clone(&self.metrics));
        let (key, place) = (key.clone(), place.clone_for_repair());
        finish_later(&self.tasks, answers, pending, move |mut answers| {
            Box::pin(async move {
                // Where a digest differs from the copies read, fetch the
                // copy itself.
                let (ids, calls): (Vec<usize>, Vec<_>) = digests.into_iter().unzip();
                let digests = crate::join::join_all(calls).await;
                let read = merge_answers(&answers).map(|m| m.digest());
                let (ids, fetches): (Vec<usize>, Vec<_>) = ids
                    .into_iter()
                    .zip(digests)
                    .filter(|(_, d)| matches!(d, Ok(d) if *d != read))
                    .map(|(i, _)| (i, read_call(&store, &peers, &place, i, &key)))
                    .unzip();
                answers.extend(ids.into_iter().zip(crate::join::join_all(fetches).await));
                let Some(merged) = merge_answers(&answers) else { return Ok(()) };
                let merged = Encoded::new(Arc::unwrap_or_clone(merged));
                let stale: Vec<usize> = answers
                    .iter()
                    .filter(|(i, a)| place.primary(*i) && stale(a, Some(merged.object())))
                    .map(|(i, _)| *i)
                    .collect();
                let repairs =
                    stale.iter().map(|&i| merge_call(&store, &peers, &place, i, &key, merged.clone(), false)).collect();
                metrics::add(&metrics.read_repairs, stale.len() as u64);
                for result in crate::join::join_all(repairs).await {
                    if let Err(e) = result {
                        tracing::debug!("read repair failed: {e}");
                    }
                }
                Ok(())
            })
        });
    }

    /// Sends the object this node just wrote to the other targets and waits
    /// until `need` is met: W targets of each replica set (this node
    /// counting for the sets its slot is in) hold it, PW of them the key's
    /// replicas themselves. Replicas
    /// believed down without a fallback standing in are not waited for, but
    /// still sent the object in the background, in case the detector is
    /// wrong.
    pub(super) async fn replicate(&self, key: &Bytes, place: &Placement, object: Encoded, need: Need) -> Result<()> {
        let mut best_effort = Vec::new();
        let calls: Vec<(usize, Call<()>)> = (0..place.slots())
            .filter(|&i| place.me != Some(i))
            .map(|i| {
                let call = self.hint_on_failure(
                    place,
                    i,
                    key,
                    // A backup stands in for a replica that fails, unless PW
                    // asks for the replicas themselves.
                    merge_call(&self.store, &self.peers, place, i, key, object.clone(), need.primaries == 0),
                );
                if place.up(i) {
                    (i, call)
                } else {
                    best_effort.push(call);
                    let e = down(&place.member(i).peer_addr);
                    (i, Box::pin(async move { Err(e) }) as Call<()>)
                }
            })
            .collect();
        for call in best_effort {
            self.tasks.spawn(async move {
                let _ = call.await;
            });
        }
        let mut quorum = Quorum::new(need, (0..place.slots()).map(|i| place.slot(i)));
        // This node counts: it holds the write.
        if let Some(me) = place.me {
            quorum.record(true, place.slot(me));
        }
        let (quorum, answers, pending) = until_quorum(calls, quorum, |i| place.slot(i)).await;
        let (needed, got) = quorum.short();
        let reached = quorum.status() == Status::Reached;
        if !reached {
            self.report_noquorum("write", needed, got, failures(&answers));
        }
        if !pending.is_empty() {
            finish_later(&self.tasks, answers, pending, |_| Box::pin(async { Ok(()) }));
        }
        if reached { Ok(()) } else { Err(Error::NoQuorum { needed, got, outcome: Unmet::MaybeWritten }) }
    }

    /// `call`, the write of `key` to replica `i`, and if it fails, a hint
    /// for that replica: this node (a replica, holding the write) hands
    /// the key to it once it is back (see [`crate::handoff`]). The hint
    /// does not count towards W, so it is kept by a background task and
    /// the failure counts at once. A call that timed out may have been
    /// applied: delivering it again changes nothing.
    fn hint_on_failure(&self, place: &Placement, i: usize, key: &Bytes, call: Call<()>) -> Call<()> {
        if !self.settings.hinted_handoff || place.me.is_none() {
            return call;
        }
        let (store, metrics, tasks) = (Arc::clone(&self.store), Arc::clone(&self.metrics), self.tasks.clone());
        let (target, hash, key) = (place.replica(i).id, place.hash, key.clone());
        let partition = place.partition;
        Box::pin(async move {
            let result = call.await;
            if result.is_err() {
                tasks.spawn(async move {
                    match store.add_hint(target, hash, &key).await {
                        Ok(Ok(())) => metrics::add(&metrics.hints_stored, 1),
                        Ok(Err(overflow)) => refused(&store, &metrics, target, partition, overflow).await,
                        Err(e) => tracing::warn!("could not keep a hint for {target}: {e}"),
                    }
                });
            }
            result
        })
    }

    /// Records a hint for `target` refused at position `hash`.
    pub(super) async fn hint_refused(&self, target: NodeId, hash: u64, overflow: Overflow) {
        let partition = self.membership.view().partitioner().of(hash);
        refused(&self.store, &self.metrics, target, partition, overflow).await;
    }

    /// Sends `request` to the first replica that can be reached, in
    /// preference-list order, and returns its answer; a replica's error
    /// (NOQUORUM, a type error) is passed on. `None`: this node comes first
    /// among the replicas that can be reached, so it should coordinate.
    ///
    /// Only a replica that could not be reached at all is skipped for the
    /// next one. Once a request may have been delivered (it timed out, or
    /// the connection broke after sending), the replica may still apply it,
    /// so trying another would apply the write twice (an INCR counted twice,
    /// a stale SET over a newer one): the answer is then NOQUORUM, whose
    /// meaning is exactly "not acknowledged; may or may not have happened".
    /// When no replica could be reached at all, nothing was written. A
    /// replica believed down is passed over without being asked.
    pub(super) async fn forward(&self, place: &Placement, request: KvRequest, w: usize) -> Result<Option<KvResponse>> {
        let mut outcome = Unmet::NotWritten;
        let mut failed = Vec::new();
        for i in 0..place.slots() {
            if place.me == Some(i) {
                return Ok(None);
            }
            if !place.replica_up(i) {
                failed.push(down(&place.replica(i).peer_addr).to_string());
                continue;
            }
            metrics::add(&self.metrics.writes_forwarded, 1);
            match self.peers.kv(&place.replica(i).peer_addr, request.clone()).await {
                Ok(answer) => return Ok(Some(answer)),
                Err(CallError::Remote(e)) => return Err(Error::Command(e)),
                Err(e) if e.not_delivered() => {
                    tracing::debug!("forwarding past: {e}");
                    failed.push(e.to_string());
                }
                Err(e) => {
                    tracing::debug!("forwarded write's outcome unknown: {e}");
                    failed.push(e.to_string());
                    outcome = Unmet::MaybeWritten;
                    break;
                }
            }
        }
        self.report_noquorum("forwarded write", w, 0, failed);
        Err(Error::NoQuorum { needed: w, got: 0, outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Actor, Context as Ctx, Dot, Sibling};

    fn object(counter: u64) -> Arc<Object> {
        let mut o = Object::new();
        let value = Some(Bytes::from(format!("v{counter}")));
        o.update(
            &Ctx::default(),
            Sibling { dot: Dot::new(Actor(1), counter), timestamp: counter, expires_at: None, value },
        );
        Arc::new(o)
    }

    /// R of one replica set, whichever targets (outside a change).
    fn any(r: usize) -> Need {
        Need { current: r, next: 0, primaries: 0 }
    }

    fn ready<T: Send + 'static>(v: Result<T>) -> Call<T> {
        Box::pin(std::future::ready(v))
    }

    fn never<T: Send + 'static>() -> Call<T> {
        Box::pin(std::future::pending())
    }

    fn failed<T: Send + 'static>() -> Call<T> {
        ready(Err(Error::TryAgain("down".into())))
    }

    fn read(copies: Vec<Call<Option<Arc<Object>>>>, digests: Vec<Call<Option<u64>>>) -> Read {
        let n = copies.len();
        let sets = Sets { current: n + digests.len(), ..Sets::default() };
        Read {
            copies: copies.into_iter().enumerate().collect(),
            digests: digests.into_iter().enumerate().map(|(i, d)| (n + i, d)).collect(),
            answers: Vec::new(),
            heard: Vec::new(),
            merged: None,
            vouched: Tally::default(),
            sets,
            empty: Tally::default(),
        }
    }

    /// Polls once for R = `r`; `copy(i)` answers with `asked(i)` and
    /// records the ask.
    fn poll(
        read: &mut Read,
        r: usize,
        asked: &dyn Fn(usize) -> Call<Option<Arc<Object>>>,
    ) -> (Poll<Status>, Vec<usize>) {
        poll_with(read, any(r), asked)
    }

    /// As `poll`, for `need`.
    fn poll_with(
        read: &mut Read,
        need: Need,
        asked: &dyn Fn(usize) -> Call<Option<Arc<Object>>>,
    ) -> (Poll<Status>, Vec<usize>) {
        let log = std::sync::Mutex::new(Vec::new());
        let copy = |i: usize| {
            log.lock().expect("log").push(i);
            asked(i)
        };
        let status = read.poll(&mut Context::from_waker(Waker::noop()), need, &copy);
        (status, log.into_inner().expect("log"))
    }

    #[test]
    fn a_matching_digest_counts_towards_r_without_waiting_for_a_slow_copy() {
        let o = object(1);
        let mut r = read(vec![ready(Ok(Some(Arc::clone(&o)))), never()], vec![ready(Ok(Some(o.digest())))]);
        let (status, asked) = poll(&mut r, 2, &|_| never());
        assert_eq!(status, Poll::Ready(Status::Reached));
        assert!(asked.is_empty());
        assert_eq!(r.merged.as_deref(), Some(&*o));
    }

    #[test]
    fn a_differing_digest_does_not_count() {
        let (old, new) = (object(1), object(2));
        let mut r = read(vec![ready(Ok(Some(old))), never()], vec![ready(Ok(Some(new.digest())))]);
        let (status, asked) = poll(&mut r, 2, &|_| never());
        assert_eq!(status, Poll::Pending, "waits for the second copy");
        assert!(asked.is_empty());
    }

    #[test]
    fn a_digest_matches_once_the_copy_it_agrees_with_arrives() {
        let (old, new) = (object(1), object(2));
        let (tx, rx) = tokio::sync::oneshot::channel::<Option<Arc<Object>>>();
        let late: Call<Option<Arc<Object>>> = Box::pin(async move { Ok(rx.await.expect("sent")) });
        let mut r = read(vec![ready(Ok(Some(old))), late], vec![ready(Ok(Some(new.digest())))]);
        assert_eq!(poll(&mut r, 2, &|_| never()).0, Poll::Pending);
        tx.send(Some(Arc::clone(&new))).expect("read alive");
        assert_eq!(poll(&mut r, 2, &|_| never()).0, Poll::Ready(Status::Reached));
        assert_eq!(r.merged.as_deref(), Some(&*new));
        assert!(r.heard[0].vouched, "the digest equals the merge of the two copies");
        assert_eq!(r.vouched.current, 3);
    }

    #[test]
    fn no_copy_is_vouched_for_only_after_a_copy_arrives() {
        let mut r = read(vec![never()], vec![ready(Ok(None))]);
        assert_eq!(poll(&mut r, 1, &|_| never()).0, Poll::Pending, "a digest alone answers nothing");
    }

    #[test]
    fn a_failed_copy_turns_the_digests_into_copies() {
        let o = object(1);
        let mut r = read(vec![ready(Ok(Some(Arc::clone(&o)))), failed()], vec![never()]);
        let copy_of = Arc::clone(&o);
        let (status, asked) = poll(&mut r, 2, &move |_| ready(Ok(Some(Arc::clone(&copy_of)))));
        assert_eq!(status, Poll::Ready(Status::Reached));
        assert_eq!(asked, [2], "the replica asked for a digest is asked for its copy");
        assert!(r.digests.is_empty());
    }

    #[test]
    fn a_differing_digest_is_fetched_when_the_copies_cannot_make_r() {
        let (old, new) = (object(1), object(2));
        let mut r = read(vec![ready(Ok(Some(old))), failed()], vec![ready(Ok(Some(new.digest())))]);
        let fetched = Arc::clone(&new);
        let (status, asked) = poll(&mut r, 2, &move |_| ready(Ok(Some(Arc::clone(&fetched)))));
        assert_eq!(status, Poll::Ready(Status::Reached));
        assert_eq!(asked, [2]);
        assert_eq!(r.merged.as_deref(), Some(&*new));
    }

    #[test]
    fn a_fallback_counts_towards_r_but_not_towards_pr() {
        let o = object(1);
        // Slot 1 is a fallback standing in for a replica that is down.
        let mut r = read(vec![ready(Ok(Some(Arc::clone(&o)))), ready(Ok(Some(Arc::clone(&o))))], vec![never()]);
        r.sets.fallbacks = 0b10;
        let copy_of = Arc::clone(&o);
        let status = r.poll(&mut Context::from_waker(Waker::noop()), any(2), &|_| never());
        assert_eq!(status, Poll::Ready(Status::Reached), "R = 2: the fallback counts");
        let mut r = read(vec![ready(Ok(Some(Arc::clone(&o)))), ready(Ok(Some(Arc::clone(&o))))], vec![never()]);
        r.sets.fallbacks = 0b10;
        let log = std::sync::Mutex::new(Vec::new());
        let copy = |i: usize| {
            log.lock().expect("log").push(i);
            ready(Ok(Some(Arc::clone(&copy_of))))
        };
        let status = r.poll(&mut Context::from_waker(Waker::noop()), Need { current: 2, next: 0, primaries: 2 }, &copy);
        assert_eq!(status, Poll::Ready(Status::Reached));
        assert_eq!(*log.lock().expect("log"), [2], "PR = 2: the other replica is asked for its copy");
        assert_eq!((r.vouched.current, r.vouched.primaries), (3, 2));
        let mut r = read(vec![ready(Ok(Some(Arc::clone(&o)))), ready(Ok(Some(o)))], vec![]);
        r.sets.fallbacks = 0b10;
        let status =
            r.poll(&mut Context::from_waker(Waker::noop()), Need { current: 2, next: 0, primaries: 2 }, &|_| never());
        assert_eq!(status, Poll::Ready(Status::Impossible), "no other replica to ask");
    }

    #[test]
    fn fallbacks_that_hold_nothing_count_only_once_every_target_answered() {
        let o = object(1);
        let (tx, rx) = tokio::sync::oneshot::channel::<Option<Arc<Object>>>();
        let late: Call<Option<Arc<Object>>> = Box::pin(async move { Ok(rx.await.expect("sent")) });
        // Two fallbacks (slots 1 and 2) that hold nothing answer first.
        let mut r = read(vec![late, ready(Ok(None)), ready(Ok(None))], vec![]);
        r.sets.fallbacks = 0b110;
        assert_eq!(poll(&mut r, 2, &|_| never()).0, Poll::Pending, "the replica's copy is awaited");
        tx.send(Some(Arc::clone(&o))).expect("read alive");
        assert_eq!(poll(&mut r, 2, &|_| never()).0, Poll::Ready(Status::Reached));
        assert_eq!(r.merged.as_deref(), Some(&*o), "the replica's value, not nothing");
        assert_eq!((r.vouched.current, r.empty.current), (1, 2));
        // With the replica failed, empty fallbacks alone answer nothing.
        let mut r = read(vec![failed(), ready(Ok(None)), ready(Ok(None))], vec![]);
        r.sets.fallbacks = 0b110;
        assert_eq!(poll(&mut r, 2, &|_| never()).0, Poll::Ready(Status::Impossible));
    }

    #[test]
    fn during_a_change_each_replica_set_needs_r_that_vouch() {
        // Slots 0 and 1 are replicas before and after the change, slot 2
        // a node gaining the partition: R = 2 of each set.
        let o = object(1);
        let need = Need { current: 2, next: 2, primaries: 0 };
        let during = |digest: Call<Option<u64>>| {
            let mut r = read(vec![], vec![]);
            r.sets = Sets { current: 2, next: 0b111, fallbacks: 0 };
            r.copies = vec![(0, ready(Ok(Some(Arc::clone(&o))))), (2, ready(Ok(Some(Arc::clone(&o)))))];
            r.digests = vec![(1, digest)];
            r
        };
        let mut r = during(never());
        let (status, asked) = poll_with(&mut r, need, &|_| never());
        assert_eq!(status, Poll::Pending, "the gaining node vouches for the next set only");
        assert_eq!(asked, [1], "the other replica is asked for its copy");
        assert_eq!((r.vouched.current, r.vouched.next), (1, 2));
        let mut r = during(ready(Ok(Some(o.digest()))));
        assert_eq!(
            poll_with(&mut r, need, &|_| never()).0,
            Poll::Ready(Status::Reached),
            "a digest vouches for both sets"
        );
        assert_eq!((r.vouched.current, r.vouched.next), (2, 3));
    }

    #[test]
    fn impossible_once_copies_and_digests_are_exhausted() {
        let mut r = read(vec![failed(), failed()], vec![failed()]);
        assert_eq!(poll(&mut r, 1, &|_| never()).0, Poll::Ready(Status::Impossible));
    }
}
