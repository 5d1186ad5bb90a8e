//! The coordinator: turns a client's reads and writes of keys into reads
//! and writes of the key's replicas, and decides what the client sees.
//!
//! A key's replicas are the first N distinct nodes of its preference list
//! on the ring, N being the cluster's effective replication factor (see
//! [`crate::membership::View`]); R and W are this node's defaults (or a
//! request's own), never more than N. With sloppy quorum (the default),
//! a replica believed down is stood in for by the next node of the list
//! believed up (a fallback): it takes the writes on the replica's behalf,
//! keeps them as hints, answers reads from them, and counts towards R and
//! W, but not towards a request's PR or PW (`replicas.rs`, `quorum.rs`).
//!
//! - **Reads** go to every replica; the reply is the merge of the first R
//!   answers, and read repair brings stale replicas up to date afterwards
//!   (`replicas.rs`).
//! - **Writes** are coordinated by a replica: a node outside the preference
//!   list forwards the write to one. The coordinator applies the write to
//!   its own copy inside the store's per-key serialization (so the dot, the
//!   superseded siblings and the new value are decided atomically), sends
//!   the new object to the other replicas, which merge it, and replies once
//!   W replicas hold it. A write whose result depends on the current value
//!   (INCR, SET NX, DEL…) is coordinated by the key's first reachable
//!   replica, so concurrent ones are serialized in one place, and it first
//!   reads the key at quorum and merges that into the local copy, so it
//!   applies to the latest acknowledged value. A context write also merges
//!   a quorum read first, so the context it carries is covered in full.
//! - Too few answers within the request timeout, or too few replicas
//!   believed up to give them: `NOQUORUM`, at once in the second case. A
//!   write that missed its quorum may still have reached some replicas; it
//!   is never reported as done.
//!
//! With N = 1 (a cluster of one) the key's one replica serves it alone,
//! minus the peers. A node that has not joined its cluster yet serves no
//! keys (TRYAGAIN). `peer.rs` holds what this node does when a peer asks.

mod peer;
mod quorum;
mod replicas;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::clock::now_ms;
use crate::error::{Error, Result, Unmet};
use crate::join::join_all;
use crate::membership::{Membership, View};
use crate::metrics::{self, Metrics};
use crate::mutation::{Current, Effect, Mutation, Outcome};
use crate::ring::key_hash;
use crate::rpc::{KvRequest, KvResponse, Member, Peers};
use crate::shutdown::Tracker;
use crate::storage::{Change, MAX_KEY_LEN, Store, Tally};
use crate::version::{Context, Encoded, NodeId, Object, Sibling};

use quorum::Need;
use replicas::{Placement, from_call};

/// Siblings beyond which a write is logged and counted as a warning.
pub const SIBLING_WARNING: usize = 25;
/// Why a replica refuses a forwarded write its view does not place on it.
const VIEW_CHANGING: &str = "the cluster view is changing; retry";
/// How many such refusals a forwarded write goes through, and how long
/// it waits each time for this node's view to change.
const VIEW_RETRIES: usize = 3;
const VIEW_CHANGE_WAIT: Duration = Duration::from_secs(2);

/// True if `e` is a replica's refusal of a forwarded write because its
/// view differs (it applied nothing): the write may go again.
fn view_changing(e: &Error) -> bool {
    matches!(e, Error::Command(text) if text.starts_with("TRYAGAIN") && text.ends_with(VIEW_CHANGING))
}

/// Quorums and limits.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Answers a read waits for, by default (at most N).
    pub r: usize,
    /// Acknowledgements a write waits for, by default (at most N).
    pub w: usize,
    /// Writes that would leave a key with more siblings are refused.
    pub max_siblings: usize,
    /// The longest value a write may leave (`proto-max-bulk-len`); a
    /// context write may not leave more than twice this in live values.
    pub max_value_len: usize,
    /// Whether a replica that misses a write gets it later from a hint.
    pub hinted_handoff: bool,
    /// Whether fallbacks stand in for replicas believed down.
    pub sloppy_quorum: bool,
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

/// One node of a key's preference list, as SHOAL.WHERE shows it.
#[derive(Clone, Debug)]
pub struct Holder {
    pub member: Member,
    /// A replica (else a fallback).
    pub primary: bool,
    /// Whether this node believes it up.
    pub up: bool,
    /// Its copy of the key, or why it could not be asked.
    pub object: Result<Option<Object>, String>,
    /// The nodes it keeps a hint about the key for (empty if it could not
    /// be asked).
    pub hints: Vec<NodeId>,
}

pub struct Coordinator {
    store: Arc<Store>,
    membership: Arc<Membership>,
    peers: Peers,
    metrics: Arc<Metrics>,
    settings: Settings,
    /// Work that outlives a reply: read repair, replication stragglers.
    tasks: Tracker,
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

fn unexpected(answer: &KvResponse) -> Error {
    Error::TryAgain(format!("unexpected answer from a peer: {answer:?}"))
}

/// A request's PW or PR: how many of the targets must be the key's
/// replicas themselves (0 unless given), checked against N.
fn primaries_of(given: Option<usize>, place: &Placement) -> Result<usize> {
    match given {
        None | Some(0) => Ok(0),
        Some(q) if (1..=place.n()).contains(&q) => Ok(q),
        Some(_) => Err(Error::err(format!("PW/PR must be between 1 and N ({})", place.n()))),
    }
}

/// A request's quorum: its own, checked against N, or the node's default.
/// [`Placement::need`] asks for it in each replica set, never more than
/// the set holds (see `View::target_indices`).
fn quorum_of(given: Option<usize>, default: usize, place: &Placement, name: &str) -> Result<usize> {
    let n = place.n();
    match given {
        None => Ok(default),
        Some(q) if (1..=n).contains(&q) => Ok(q),
        Some(_) => Err(Error::err(format!("{name} must be between 1 and N ({n})"))),
    }
}

impl Coordinator {
    #[must_use]
    pub fn new(
        store: Arc<Store>,
        membership: Arc<Membership>,
        peers: Peers,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Self { store, membership, peers, metrics, settings, tasks: Tracker::default() }
    }

    /// Background work still running (read repairs, replication).
    #[must_use]
    pub fn background(&self) -> &Tracker {
        &self.tasks
    }

    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.store.node_id()
    }

    #[must_use]
    pub fn view(&self) -> Arc<View> {
        self.membership.view()
    }

    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    #[must_use]
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn place(&self, key: &[u8]) -> Result<Placement> {
        let hash = locate(key)?;
        let view = self.membership.view();
        if view.cluster.is_none() {
            return Err(Error::TryAgain("this node has not joined its cluster yet; waiting for a seed".into()));
        }
        Ok(Placement::new(view, self.node_id(), hash, self.settings.sloppy_quorum))
    }

    /// The default read quorum for `place`.
    fn r(&self, place: &Placement) -> Need {
        place.need(self.settings.r, 0)
    }

    /// The default write quorum for `place`.
    fn w(&self, place: &Placement) -> Need {
        place.need(self.settings.w, 0)
    }

    /// The key's object, merged from the targets `need` asks for.
    async fn read_object(&self, key: &Bytes, place: &Placement, need: Need) -> Result<Option<Arc<Object>>> {
        metrics::add(&self.metrics.reads_coordinated, 1);
        if place.local_only() {
            return self.store.get(place.hash, key).await;
        }
        self.read_replicas(key, place, need).await
    }

    /// The live value of `key`, if any.
    ///
    /// # Errors
    /// Too long a key, too few replicas answering, or a storage failure.
    pub async fn get(&self, key: &Bytes) -> Result<Option<Value>> {
        let place = self.place(key)?;
        let object = self.read_object(key, &place, self.r(&place)).await?;
        let value = value_of(object.as_deref(), now_ms());
        let counter = if value.is_some() { &self.metrics.keyspace_hits } else { &self.metrics.keyspace_misses };
        metrics::add(counter, 1);
        Ok(value)
    }

    /// Every live sibling of `key` and the context covering them all (and
    /// any tombstones), read from `r` targets (default R), `pr` of them
    /// the key's replicas themselves (default none).
    ///
    /// # Errors
    /// Too long a key, a bad `r` or `pr`, too few replicas answering, or a
    /// storage failure.
    pub async fn get_versions(&self, key: &Bytes, r: Option<usize>, pr: Option<usize>) -> Result<Versions> {
        let place = self.place(key)?;
        let need = place.need(quorum_of(r, self.settings.r, &place, "R")?, primaries_of(pr, &place)?);
        let object = self.read_object(key, &place, need).await?.unwrap_or_default();
        let now = now_ms();
        let mut live: Vec<&Sibling> = object.siblings().iter().filter(|s| s.is_live(now)).collect();
        live.sort_by_key(|s| (s.timestamp, s.dot));
        let values = live.into_iter().filter_map(|s| s.value.clone()).collect();
        Ok(Versions { context: object.context(), values })
    }

    /// Applies a plain Redis write to `key`: the new version supersedes every
    /// sibling the coordinator knows.
    ///
    /// # Errors
    /// Too long a key, a type error of the value, too few replicas
    /// acknowledging (`NOQUORUM`), or a storage failure.
    pub async fn write(&self, key: &Bytes, mutation: Mutation) -> Result<Outcome> {
        // A plain SET may be coordinated by any replica. A write whose
        // result depends on the current value goes to the key's first
        // replica that is up, so concurrent INCRs or SET NXs through
        // different nodes are serialized in one place.
        let here = |place: &Placement| match place.me {
            Some(i) if place.first_up() == Some(i) => true,
            Some(_) => !mutation.reads_current(),
            None => false,
        };
        let ask = |place: &Placement| {
            Ok((KvRequest::Write { key: key.clone(), mutation: mutation.clone() }, self.w(place).current))
        };
        match self.forward_unless_here(key, here, ask).await? {
            Ok(KvResponse::Outcome(o)) => Ok(o),
            Ok(other) => Err(unexpected(&other)),
            Err(place) => self.coordinate_write(key, &place, mutation).await,
        }
    }

    /// Sends the request `ask` makes (with the W it reports) to the key's
    /// first reachable replica, unless `here` says this node coordinates:
    /// `Ok(Err(place))` then, or when this node comes first among the
    /// replicas that can be reached (see [`forward`](Self::forward)). A
    /// replica that refuses because its view of the ring differs (for a
    /// moment as a ring change ends) applied nothing: the request goes
    /// again, placed anew, once this node's view has changed, up to
    /// [`VIEW_RETRIES`] times.
    async fn forward_unless_here(
        &self,
        key: &Bytes,
        here: impl Fn(&Placement) -> bool,
        ask: impl Fn(&Placement) -> Result<(KvRequest, usize)>,
    ) -> Result<std::result::Result<KvResponse, Placement>> {
        let mut place = self.place(key)?;
        let mut refusals = 0;
        loop {
            if here(&place) {
                return Ok(Err(place));
            }
            let (request, w) = ask(&place)?;
            match self.forward(&place, request, w).await {
                Ok(Some(answer)) => return Ok(Ok(answer)),
                Ok(None) => return Ok(Err(place)),
                Err(e) if view_changing(&e) && refusals < VIEW_RETRIES => {
                    refusals += 1;
                    place = self.after_view_change(key, &place).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The key's placement once this node's view has changed from the one
    /// `place` was made with (or, if it does not within
    /// [`VIEW_CHANGE_WAIT`], as it is then): a replica refused a forwarded
    /// write because its view of the ring differs, which happens for a
    /// moment as a ring change ends and the new ring spreads.
    async fn after_view_change(&self, key: &Bytes, place: &Placement) -> Result<Placement> {
        let deadline = tokio::time::Instant::now() + VIEW_CHANGE_WAIT;
        while Arc::ptr_eq(&self.membership.view(), place.view()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.place(key)
    }

    async fn coordinate_write(&self, key: &Bytes, place: &Placement, mutation: Mutation) -> Result<Outcome> {
        metrics::add(&self.metrics.writes_coordinated, 1);
        let replicate = !place.local_only();
        let only_copy = place.only_copy();
        if replicate && mutation.reads_current() {
            let current = self.read_replicas(key, place, self.r(place)).await.map_err(|e| match e {
                Error::NoQuorum { needed, got, .. } => Error::NoQuorum { needed, got, outcome: Unmet::NotWritten },
                other => other,
            })?;
            if let Some(current) = current {
                self.store.merge(place.hash, key, current).await?;
            }
        }
        let max_len = self.settings.max_value_len;
        let (outcome, written) = self
            .store
            .update(place.hash, key, move |object, dot| {
                let now = now_ms();
                let current = value_of(object, now).map(|v| Current { value: v.data, expires_at: v.expires_at });
                let (effect, outcome) = match mutation.apply(current.as_ref(), now) {
                    Ok(applied) => applied,
                    Err(e) => return (Change::Keep, Err(e)),
                };
                let (value, expires_at) = match effect {
                    Effect::None => return (Change::Keep, Ok((outcome, None))),
                    Effect::Put { value, .. } if value.len() > max_len => {
                        return (
                            Change::Keep,
                            Err(Error::err("string exceeds maximum allowed size (proto-max-bulk-len)")),
                        );
                    }
                    Effect::Put { value, expires_at } => (Some(value), expires_at),
                    // Nothing to delete: no need for a tombstone.
                    Effect::Delete if object.is_none() => return (Change::Keep, Ok((outcome, None))),
                    Effect::Delete => (None, None),
                };
                let new = Sibling { dot, timestamp: now, expires_at, value };
                let mut object = match object {
                    Some(o) => o.overwritten(new),
                    None => Object::new().overwritten(new),
                };
                if only_copy {
                    object.forget_superseded();
                }
                let encoded = Encoded::new(object);
                let copy = replicate.then(|| encoded.clone());
                (Change::Put(encoded), Ok((outcome, copy)))
            })
            .await??;
        if let Some(object) = written {
            self.replicate(key, place, object, self.w(place)).await?;
        }
        Ok(outcome)
    }

    /// A causal write: supersedes exactly the siblings `context` covers and
    /// adds `value` (a tombstone when `None`) as a new sibling, expiring
    /// `ttl_ms` after now if given, acknowledged by `w` targets (default
    /// W), `pw` of them the key's replicas themselves (default none).
    /// Returns the context to write with next (`context` plus the new dot)
    /// and how many live values were superseded.
    ///
    /// # Errors
    /// Too long a key, a bad `w` or `pw`, [`Error::TooManySiblings`] when
    /// the key would exceed `max-siblings` (nothing is written then), too
    /// few replicas acknowledging, or a storage failure.
    pub async fn write_versions(
        &self,
        key: &Bytes,
        context: Context,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        w: Option<usize>,
        pw: Option<usize>,
    ) -> Result<(Context, usize)> {
        let need = |place: &Placement| -> Result<Need> {
            Ok(place.need(quorum_of(w, self.settings.w, place, "W")?, primaries_of(pw, place)?))
        };
        // The coordinator it goes to is sent the client's W and PW (checked
        // here first), not this node's quorum: it counts them in the
        // replica sets its own view holds.
        let ask = |place: &Placement| {
            let need = need(place)?;
            let request = KvRequest::WriteVersions {
                key: key.clone(),
                context: context.clone(),
                value: value.clone(),
                ttl_ms,
                w: w.and_then(|w| u32::try_from(w).ok()),
                pw: pw.and_then(|pw| u32::try_from(pw).ok()),
            };
            Ok((request, need.current))
        };
        match self.forward_unless_here(key, |place| place.me.is_some(), ask).await? {
            Ok(KvResponse::Written { context, superseded }) => Ok((context, superseded as usize)),
            Ok(other) => Err(unexpected(&other)),
            Err(place) => {
                let need = need(&place)?;
                self.coordinate_versions(key, &place, context, value, ttl_ms, need).await
            }
        }
    }

    async fn coordinate_versions(
        &self,
        key: &Bytes,
        place: &Placement,
        context: Context,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        need: Need,
    ) -> Result<(Context, usize)> {
        metrics::add(&self.metrics.writes_coordinated, 1);
        // PW more than the replicas up cannot be met: refused before
        // anything is written.
        let up = place.replicas_up();
        if need.primaries > up {
            self.report_noquorum("write (PW)", need.primaries, up, Vec::new());
            return Err(Error::NoQuorum { needed: need.primaries, got: up, outcome: Unmet::NotWritten });
        }
        let replicate = !place.local_only();
        let only_copy = place.only_copy();
        // The context speaks of what the client read: merge what the other
        // replicas hold first, so that this copy has seen as much of it as
        // can be seen. The write needs W replicas, not R: when fewer answer,
        // the context is capped at what this copy has seen (see
        // `Object::update`), so it supersedes nothing it did not see. A
        // blind write (empty context) supersedes nothing and reads nothing.
        if replicate
            && !context.is_empty()
            && let Some(current) = self.read_available(key, place, self.r(place)).await
        {
            self.store.merge(place.hash, key, current).await?;
        }
        let max = self.settings.max_siblings;
        let max_total = self.settings.max_value_len.saturating_mul(2);
        let warnings = Arc::clone(&self.metrics);
        let shown = String::from_utf8_lossy(key).into_owned();
        let (next, superseded, written) = self
            .store
            .update(place.hash, key, move |object, dot| {
                let now = now_ms();
                let mut object = object.cloned().unwrap_or_default();
                let superseded = object.siblings().iter().filter(|s| context.covers(s.dot) && s.is_live(now)).count();
                let expires_at = ttl_ms.map(|t| now.saturating_add(t));
                let next = object.update(&context, Sibling { dot, timestamp: now, expires_at, value });
                let count = object.siblings().len();
                if count > max {
                    return (Change::Keep, Err(Error::TooManySiblings));
                }
                let total: usize = object.siblings().iter().filter_map(|s| s.value.as_ref()).map(Bytes::len).sum();
                if total > max_total {
                    return (
                        Change::Keep,
                        Err(Error::err(
                            "the key's values would exceed twice proto-max-bulk-len; resolve them with SETCTX",
                        )),
                    );
                }
                if count > SIBLING_WARNING {
                    metrics::add(&warnings.sibling_warnings, 1);
                    tracing::warn!(key = %shown, siblings = count, "key holds many siblings; resolve them with SETCTX");
                }
                if only_copy {
                    object.forget_superseded();
                }
                let encoded = Encoded::new(object);
                let copy = replicate.then(|| encoded.clone());
                (Change::Put(encoded), Ok((next, superseded, copy)))
            })
            .await??;
        if let Some(object) = written {
            self.replicate(key, place, object, need).await?;
        }
        Ok((next, superseded))
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
    /// the walk goes partition by partition in ring order, each partition
    /// from one replica (this node if it is one), examining about `count`
    /// keys, and returns the next cursor (0 when done) and the live keys
    /// matching `pattern`.
    ///
    /// # Errors
    /// No replica of a partition could be asked.
    pub async fn scan(&self, cursor: u64, count: usize, pattern: Option<&Bytes>) -> Result<(u64, Vec<Bytes>)> {
        let view = self.membership.view();
        let partitions = view.partitioner();
        let mut position = cursor;
        let mut keys = Vec::new();
        let mut examined = 0;
        loop {
            let p = partitions.of(position);
            let want = count.saturating_sub(examined).max(1);
            let (found, seen, next) = self.scan_partition(&view, position, partitions.end(p), want, pattern).await?;
            examined += seen;
            keys.extend(found);
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

    /// Scans `from..=to` (inside one partition) on one of its replicas,
    /// those believed up first.
    async fn scan_partition(
        &self,
        view: &View,
        from: u64,
        to: u64,
        count: usize,
        pattern: Option<&Bytes>,
    ) -> Result<(Vec<Bytes>, usize, Option<u64>)> {
        let (_, mut replicas) = view.replicas_at(from);
        let me = self.node_id();
        if view.members.len() == 1 || replicas.iter().any(|m| m.id == me) {
            return self.scan_local(from, to, count, pattern).await;
        }
        replicas.sort_by_key(|m| !view.is_up(m.id));
        let request =
            KvRequest::Scan { from, to, count: u32::try_from(count).unwrap_or(u32::MAX), pattern: pattern.cloned() };
        let mut last = String::new();
        for replica in replicas {
            match self.peers.kv(&replica.peer_addr, request.clone()).await {
                Ok(KvResponse::Keys { keys, examined, next }) => return Ok((keys, examined as usize, next)),
                Ok(other) => last = format!("{other:?}"),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Error::TryAgain(format!("no replica of a partition answered the scan: {last}")))
    }

    /// Every live key matching `pattern`.
    ///
    /// # Errors
    /// As [`scan`](Self::scan).
    pub async fn keys(&self, pattern: &Bytes) -> Result<Vec<Bytes>> {
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

    /// Keys in the cluster (as Redis counts them: expired keys not yet
    /// reclaimed included): for each partition, the count of the replica
    /// that holds the most.
    ///
    /// # Errors
    /// No member could be asked.
    pub async fn dbsize(&self) -> Result<u64> {
        let view = self.membership.view();
        if view.members.len() == 1 {
            return Ok(self.tally().keys.max(0) as u64);
        }
        let mut best = vec![0u64; view.partitioner().count() as usize];
        let answers = self
            .ask_every_member(&view, &KvRequest::Tallies, || async { Ok(KvResponse::Tallies(self.local_tallies())) });
        let mut answered = 0;
        for answer in answers.await {
            let Ok(KvResponse::Tallies(tallies)) = answer else { continue };
            answered += 1;
            for t in tallies {
                if let Some(b) = best.get_mut(t.partition as usize) {
                    *b = (*b).max(t.keys);
                }
            }
        }
        if answered == 0 {
            return Err(Error::NoQuorum { needed: 1, got: 0, outcome: Unmet::Read });
        }
        Ok(best.iter().sum())
    }

    /// This node's counts.
    #[must_use]
    pub fn tally(&self) -> Tally {
        self.store.tally()
    }

    /// Removes every key on every member. A flush is not a versioned
    /// delete: a member that missed it would bring its keys back through
    /// read repair. So it first checks that every member answers and
    /// flushes nothing if one does not.
    ///
    /// # Errors
    /// A member did not answer the check (nothing was flushed), or could not
    /// be flushed (the others were).
    pub async fn flush_all(&self) -> Result<()> {
        let view = self.membership.view();
        if view.members.len() > 1 {
            let silent: Vec<String> = self
                .ask_every_member(&view, &KvRequest::Tallies, || async { Ok(KvResponse::Tallies(Vec::new())) })
                .await
                .into_iter()
                .zip(&view.members)
                .filter_map(|(answer, m)| match answer {
                    Ok(KvResponse::Tallies(_)) => None,
                    _ => Some(m.client_addr.clone()),
                })
                .collect();
            if !silent.is_empty() {
                return Err(Error::err(format!(
                    "FLUSHALL needs every node and {} did not answer; nothing was flushed",
                    silent.join(", ")
                )));
            }
        }
        // A flush of a large store takes longer than a request: on the
        // bulk lane, with its timeout, so a busy member is not reported
        // failed while it flushes.
        let slow = self.peers.timeout().saturating_mul(5).max(Duration::from_secs(10));
        let answers = self.ask_every_member_within(&view, &KvRequest::FlushAll, Some(slow), || async {
            self.store.flush_all().await?;
            Ok(KvResponse::Done)
        });
        let failures: Vec<String> = answers
            .await
            .into_iter()
            .filter_map(|answer| match answer {
                Ok(KvResponse::Done) => None,
                Ok(other) => Some(format!("{other:?}")),
                Err(e) => Some(e.to_string()),
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::err(format!(
                "FLUSHALL reached {} of {} nodes: {}",
                view.members.len() - failures.len(),
                view.members.len(),
                failures.join("; ")
            )))
        }
    }

    /// Sends `request` to every member of `view` at once, answering it
    /// with `local` for this node: one answer per member. A member believed
    /// down is not asked (its answer is an error).
    async fn ask_every_member<F, Fut>(&self, view: &View, request: &KvRequest, local: F) -> Vec<Result<KvResponse>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<KvResponse>>,
    {
        self.ask_every_member_within(view, request, None, local).await
    }

    /// As [`ask_every_member`](Self::ask_every_member), on the bulk lane
    /// with timeout `slow` if given.
    async fn ask_every_member_within<F, Fut>(
        &self,
        view: &View,
        request: &KvRequest,
        slow: Option<Duration>,
        local: F,
    ) -> Vec<Result<KvResponse>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<KvResponse>>,
    {
        let me = self.node_id();
        let local = &local;
        let calls = view
            .members
            .iter()
            .zip(&view.up)
            .map(|(m, &up)| async move {
                if m.id == me {
                    return local().await;
                }
                if !up {
                    return Err(replicas::down(&m.peer_addr));
                }
                match slow {
                    Some(t) => self.peers.bulk_kv(&m.peer_addr, request.clone(), t).await.map(|(r, _)| r),
                    None => self.peers.kv(&m.peer_addr, request.clone()).await,
                }
                .map_err(from_call)
            })
            .collect();
        join_all(calls).await
    }

    /// The key's partition and every node of its preference list (replicas
    /// first, then fallbacks) with its copy of the key.
    ///
    /// # Errors
    /// Too long a key.
    pub async fn placement(&self, key: &Bytes) -> Result<(u32, Vec<Holder>)> {
        let hash = locate(key)?;
        let view = self.membership.view();
        let p = view.partitioner().of(hash);
        let me = self.node_id();
        let list = view.ring.preference_list(p);
        let calls = list
            .iter()
            .enumerate()
            .filter_map(|(i, id)| view.member(*id).map(|m| (i, m.clone())))
            .map(|(i, member)| (view.is_up(member.id), i < view.n, member))
            .map(|(up, primary, member)| async move {
                let (object, hints) = if member.id == me {
                    let object = self.store.get(hash, key).await;
                    (object.map(|o| o.map(Arc::unwrap_or_clone)).map_err(|e| e.to_string()), self.hinted(key).await)
                } else {
                    let object = match self.peers.kv(&member.peer_addr, KvRequest::Read { key: key.clone() }).await {
                        Ok(KvResponse::Object(o)) => Ok(o.map(Arc::unwrap_or_clone)),
                        Ok(other) => Err(format!("{other:?}")),
                        Err(e) => Err(e.to_string()),
                    };
                    let hints = match self.peers.kv(&member.peer_addr, KvRequest::Hinted { key: key.clone() }).await {
                        Ok(KvResponse::Hinted(targets)) => Ok(targets),
                        Ok(other) => Err(unexpected(&other)),
                        Err(e) => Err(from_call(e)),
                    };
                    (object, hints)
                };
                Holder { member, primary, up, object, hints: hints.unwrap_or_default() }
            })
            .collect();
        Ok((p, join_all(calls).await))
    }
}
