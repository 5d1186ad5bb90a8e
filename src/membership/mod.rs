//! Membership: which nodes form the cluster, and which of them are alive,
//! as this node sees it.
//!
//! **The cluster.** A cluster has a record (a random id, its partition
//! count Q and its replication factor N), created once and kept in every
//! member's `meta`. A node started without seeds creates a cluster of one.
//! A node with seeds and no cluster yet asks its seeds until one answers
//! with a record and adopts it; if none has one, the first seed creates it
//! (the node that finds itself at the first seed's address), so nodes
//! started together from one seed list end in one cluster. The handshake
//! carries the cluster id and Q, so a node of another cluster is refused
//! (`rpc`), and nothing of it is merged.
//!
//! **Members** are kept in a [`Table`]: each says of itself
//! its addresses, status and a version that only it raises (at every start
//! to at least the clock's milliseconds, persisted first, so it never goes
//! back; a node that finds its own entry newer elsewhere, restored from a
//! backup or copied, moves past it).
//! The table spreads by gossip: every round (`gossip-interval`, 1 s) the
//! node exchanges digests with one random live member, and now and then
//! with a seed and with a member it believes down, so partitions heal;
//! only deltas travel besides the digest. The table is saved in `meta`, so
//! a restarted node with no seeds rejoins from it. Members are never
//! dropped for being unreachable; a node back at a known address under a
//! new id (its data directory lost) replaces the old id.
//!
//! **Liveness** is local to each node and separate from the ring. Every
//! member's heartbeat rises each round and spreads with gossip; a
//! phi-accrual [`Detector`] per member turns the arrival intervals into up
//! or down (`phi-threshold`, 8). The coordinator reads it from the
//! [`View`]: a replica believed down is not waited for.
//!
//! **The ring** is cluster state of its own, kept, spread and decided in
//! `ring.rs`: a member being down never changes it, only a join, leave or
//! removal the claimant decides. The view's ring is the current one, and
//! during a change also the ring it leads to.
//!
//! **Actors.** When a node starts, the other members decide whether it may
//! resume the actor its last run stopped cleanly with ([`claim`]).

pub mod claim;
pub mod detector;
mod ring;
pub mod table;
mod view;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::ring::Ring;
use crate::ring::state::RingState;
use crate::rpc::{
    CallError, ClusterRecord, Entry, GossipRequest, GossipResponse, Hello, Member, Peers, Response, Status,
    decode_entries, decode_record, encode_entries, encode_record,
};
use crate::shutdown::Stop;
use crate::storage::Store;
use crate::version::NodeId;

use claim::{Claim, Claims};
use detector::Detector;
use table::{Applied, Table};
pub use view::View;

/// Names in `meta`.
const CLUSTER: &str = "cluster";
const MEMBERS: &str = "members";
const VERSION: &str = "member-version";
const CLAIMS: &str = "claims";
/// How often a claim is sent again to members that could not be reached.
const CLAIM_RETRY: Duration = Duration::from_millis(100);
/// How long a claim waits for members at least (members starting together
/// take a moment to listen; a loaded member a moment to answer).
const CLAIM_WAIT: Duration = Duration::from_secs(3);
/// How often a node that has no cluster yet asks its seeds again.
const JOIN_RETRY: Duration = Duration::from_millis(250);
/// Rounds between refreshes of this node's disk usage in its beat.
const LOAD_EVERY: u64 = 10;
/// Rounds between gossip with a seed, at least.
const SEED_EVERY: u64 = 5;

/// How membership runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Peers to ask for the cluster, as `host:peer-port`.
    pub seeds: Vec<String>,
    /// Q of a cluster this node creates (and must match to join one).
    pub partitions: u32,
    /// N of a cluster this node creates.
    pub n: usize,
    /// True if the operator set `n` (a cluster with another N is then
    /// worth a warning).
    pub n_configured: bool,
    pub gossip_interval: Duration,
    /// Suspicion above which a member is down.
    pub phi_threshold: f64,
}

/// One member as operators see it.
#[derive(Clone, Debug)]
pub struct MemberStatus {
    pub entry: Entry,
    pub me: bool,
    pub up: bool,
    pub phi: f64,
    /// Milliseconds since its heartbeat last rose, if it ever did.
    pub last_heard_ms: Option<u64>,
    pub keys: u64,
    pub bytes: u64,
}

/// Gossip's counters, for INFO.
#[derive(Clone, Copy, Debug, Default)]
pub struct GossipStats {
    pub rounds: u64,
    /// The longest any member believed up has been silent, in ms.
    pub slowest_heartbeat_ms: u64,
}

struct State {
    cluster: Option<ClusterRecord>,
    table: Table,
    detectors: HashMap<NodeId, Detector>,
    down: HashSet<NodeId>,
    /// Members a heartbeat was heard from since this node started (the
    /// detectors start as if each had just been heard: a node restarted
    /// while cut off would otherwise count them up).
    heard: HashSet<NodeId>,
    /// The table changed since it was saved.
    unsaved: bool,
    /// A newer version of this node's entry was seen elsewhere.
    own_version_seen: Option<u64>,
    /// Addresses whose refusal has been logged.
    refused: HashSet<String>,
    /// Addresses whose last gossip exchange got no answer (a cut link, a
    /// paused peer): chosen as partners only now and then, so that one bad
    /// link does not cost this node the heartbeats of the peers it reaches.
    unanswered: HashSet<String>,
    /// The claims to resume an actor this node has granted.
    claims: Claims,
    /// This node's disk usage, refreshed every few rounds.
    bytes: u64,
    rng: u64,
    /// The ring as this node holds it (see `ring.rs`).
    ring: RingState,
}

pub struct Membership {
    me: Member,
    settings: Settings,
    peers: Peers,
    store: Arc<Store>,
    state: Mutex<State>,
    view: RwLock<Arc<View>>,
    rounds: AtomicU64,
    /// Held while this node's own version changes.
    raising: tokio::sync::Mutex<()>,
    /// Held while a claim is decided and its grant saved, so grants reach
    /// the disk in the order they were given.
    granting: tokio::sync::Mutex<()>,
    /// Held while a ring is saved and adopted, so rings reach the disk in
    /// the order they are adopted.
    ring_saving: tokio::sync::Mutex<()>,
    /// Whether this node is the claimant and has caught up with its
    /// peers' ring since it became one: only then does it decide.
    deciding: AtomicBool,
    /// Whether the claimant saw a majority up last round.
    majority: AtomicBool,
    /// `Some(commit)` while this node has to stage its join (see `ring.rs`).
    joining: Mutex<Option<bool>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn storage_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{what}: {e}"))
}

impl Membership {
    /// Loads this node's cluster and members from `store` (creating a
    /// cluster of one when it has none and no seeds), raises its own
    /// version, and publishes the first view. Joining through seeds
    /// happens in [`run`](Self::run).
    ///
    /// # Errors
    /// Storage failures, or a corrupt record.
    pub async fn start(me: Member, settings: Settings, peers: Peers, store: Arc<Store>) -> Result<Arc<Self>> {
        let cluster = match store.meta_get(CLUSTER).await? {
            Some(b) => Some(decode_record(&b).map_err(|e| storage_error("the cluster record", e))?),
            None => None,
        };
        let saved = match store.meta_get(MEMBERS).await? {
            Some(b) => decode_entries(&b).map_err(|e| storage_error("the member table", e))?,
            None => Vec::new(),
        };
        let claims = match store.meta_get(CLAIMS).await? {
            Some(b) => Claims::decode(b).ok_or_else(|| storage_error("the granted claims", "corrupt"))?,
            None => Claims::default(),
        };
        let saved_ring = ring::decode(store.meta_get(ring::RING).await?)?;
        let joining = ring::read_joining(store.meta_get(ring::JOINING).await?);
        // The version of the last run, until `begin` raises it.
        let version = read_u64(store.meta_get(VERSION).await?);
        let entry = Entry {
            id: me.id,
            client_addr: me.client_addr.clone(),
            peer_addr: me.peer_addr.clone(),
            status: Status::Valid,
            version,
            replaces: None,
        };
        let mut table = Table::new(entry);
        table.learn(saved.into_iter().filter(|e| e.id != me.id).collect());
        let now = now_ms();
        let detectors = table
            .all()
            .filter(|k| k.entry.id != me.id)
            .map(|k| {
                let mut d = Detector::new(millis(settings.gossip_interval));
                d.heartbeat(now);
                (k.entry.id, d)
            })
            .collect();
        let rng = crate::random::random_u64() | 1;
        let ring = saved_ring.unwrap_or_else(|| {
            let mut members: Vec<NodeId> =
                table.all().filter(|k| k.entry.status != Status::Removed).map(|k| k.entry.id).collect();
            members.sort_unstable();
            ring::initial(cluster.is_some(), &members, settings.partitions)
        });
        let state = State {
            ring,
            cluster,
            table,
            detectors,
            down: HashSet::new(),
            heard: HashSet::new(),
            unsaved: true,
            own_version_seen: None,
            refused: HashSet::new(),
            unanswered: HashSet::new(),
            claims,
            bytes: 0,
            rng,
        };
        let placeholder = Arc::new(View::new(
            None,
            1,
            vec![me.clone()],
            vec![true],
            Arc::new(Ring::single(me.id, settings.partitions)),
            None,
        ));
        let membership = Arc::new(Self {
            me,
            settings,
            peers,
            store,
            state: Mutex::new(state),
            view: RwLock::new(placeholder),
            rounds: AtomicU64::new(0),
            raising: tokio::sync::Mutex::new(()),
            granting: tokio::sync::Mutex::new(()),
            ring_saving: tokio::sync::Mutex::new(()),
            deciding: AtomicBool::new(false),
            majority: AtomicBool::new(false),
            joining: Mutex::new(joining),
        });
        match cluster {
            Some(record) => membership.enter(record),
            None if membership.settings.seeds.is_empty() => membership.create().await?,
            None => membership.publish(&lock(&membership.state)),
        }
        membership.save().await;
        Ok(membership)
    }

    /// Announces this run: if the last run stopped cleanly, resumes its
    /// actor when more than half of the other members grant the claim (see
    /// [`claim`]), and raises this node's version past the claim's either
    /// way.
    /// Call once, after [`start`](Self::start), with the peer server
    /// running (members starting together answer each other's claims), and
    /// before [`run`](Self::run).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn begin(&self) -> Result<()> {
        let before = lock(&self.state).table.me().entry.version;
        let after = next_version(before);
        if let Some((actor, last)) = self.store.take_resumable() {
            let claim = Claim { before, after, token: crate::random::random_u64() };
            match self.claim(claim).await {
                Ok(()) => {
                    self.store.resume_actor(actor, last);
                    tracing::info!(%actor, last_counter = last, "resuming the actor of the last run (it stopped cleanly, and the other members vouch that no run wrote since)");
                }
                Err(why) => {
                    tracing::info!(actor = %self.store.actor(), "writing as a new actor: the last run's cannot be resumed ({why})");
                }
            }
        }
        self.raise(after, |e| e).await?;
        {
            // Until now this node's entry had the last run's version, and
            // peers rightly knew that run's entry and heartbeat: not
            // another self.
            let mut st = lock(&self.state);
            st.own_version_seen = st.own_version_seen.filter(|&v| v > before);
        }
        // The ring may have changed while this node was away: learn it from
        // the others before serving, so this node does not coordinate a
        // write with owners the cluster has moved past. Bounded: members
        // that do not answer are left to gossip.
        if lock(&self.state).cluster.is_some() {
            self.sync_ring_with(self.other_members(), self.peers.timeout()).await;
        }
        Ok(())
    }

    /// Asks every other member to grant `claim`, again while some cannot
    /// be reached, until more than half grant, that can no longer happen,
    /// or [`CLAIM_WAIT`] (or the request timeout, if longer) passes.
    async fn claim(&self, claim: Claim) -> std::result::Result<(), String> {
        self.refresh_members().await;
        let others = self.other_members();
        if others.is_empty() {
            return Err("no other member to vouch for it".into());
        }
        let deadline = tokio::time::Instant::now() + self.peers.timeout().max(CLAIM_WAIT);
        let mut answers: HashMap<String, bool> = HashMap::new();
        loop {
            let asked: Vec<&String> = others.iter().filter(|a| !answers.contains_key(*a)).collect();
            let calls = asked
                .iter()
                .map(|addr| {
                    let request = GossipRequest::Claim { before: claim.before, after: claim.after, token: claim.token };
                    tokio::time::timeout_at(deadline, self.peers.gossip(addr, request))
                })
                .collect();
            for (addr, answer) in asked.into_iter().zip(crate::join::join_all(calls).await) {
                match answer {
                    Ok(Ok(GossipResponse::Claimed(granted))) => {
                        answers.insert(addr.clone(), granted);
                    }
                    Ok(Ok(other)) => tracing::debug!(peer = %addr, "unexpected answer to a claim: {other:?}"),
                    Ok(Err(e)) => tracing::debug!(peer = %addr, "claim: {e}"),
                    Err(_) => {}
                }
            }
            let grants = answers.values().filter(|&&g| g).count();
            let refusals = answers.len() - grants;
            match claim::tally(others.len(), grants, refusals) {
                Some(true) => return Ok(()),
                Some(false) => return Err(format!("{refusals} of {} other members refused", others.len())),
                None if tokio::time::Instant::now() + CLAIM_RETRY >= deadline => {
                    return Err(format!("{} of {} other members answered in time", answers.len(), others.len()));
                }
                None => tokio::time::sleep(CLAIM_RETRY).await,
            }
        }
    }

    /// The peer addresses of every other member not removed.
    fn other_members(&self) -> Vec<String> {
        lock(&self.state)
            .table
            .all()
            .filter(|k| k.entry.id != self.me.id && k.entry.status != Status::Removed)
            .map(|k| k.entry.peer_addr.clone())
            .collect()
    }

    /// Learns the members the others know, so that a claim asks every
    /// member of the cluster as it is now, not only those this disk knew
    /// (a restored backup may predate members that joined since).
    async fn refresh_members(&self) {
        let known = self.other_members();
        let calls = known.iter().map(|addr| self.peers.gossip(addr, GossipRequest::Join)).collect();
        for answer in crate::join::join_all(calls).await {
            if let Ok(GossipResponse::Cluster(Some(record), entries)) = answer
                && lock(&self.state).cluster.is_some_and(|c| c.id == record.id)
            {
                let mut st = lock(&self.state);
                let applied = st.table.learn(entries.into_iter().filter(|e| e.id != self.me.id).collect());
                self.absorb(&mut st, applied);
            }
        }
    }

    /// The current view.
    #[must_use]
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// This node's cluster, once it has one.
    #[must_use]
    pub fn cluster(&self) -> Option<ClusterRecord> {
        lock(&self.state).cluster
    }

    /// Joins the cluster if need be, then gossips every round until
    /// stopped.
    pub async fn run(self: Arc<Self>, mut stop: Stop) {
        if self.cluster().is_none() && !self.join(&mut stop).await {
            return;
        }
        // Ring decisions on a task of their own: a round's heartbeats never
        // wait for a claimant catching up or working out a change.
        let rings = Arc::clone(&self);
        let mut ring_stop = stop.clone();
        let rings = tokio::spawn(async move { rings.every_interval(&mut ring_stop, || rings.ring_round()).await });
        self.every_interval(&mut stop, || self.round()).await;
        let _ = rings.await;
    }

    /// Runs `step` once every gossip interval (later if a step takes
    /// longer) until `stop` fires.
    async fn every_interval<F: Future<Output = ()>>(&self, stop: &mut Stop, mut step: impl FnMut() -> F) {
        let mut tick = tokio::time::interval(self.settings.gossip_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.stopped() => return,
            }
            step().await;
        }
    }

    /// Asks the seeds for the cluster until one answers with it (or this
    /// node turns out to be the first seed, with no cluster anywhere: it
    /// creates it). False if stopped first.
    async fn join(&self, stop: &mut Stop) -> bool {
        let mut told = false;
        loop {
            for seed in &self.settings.seeds {
                match self.peers.gossip(seed, GossipRequest::Join).await {
                    Ok(GossipResponse::Cluster(Some(record), entries)) => {
                        if let Err(e) = self.adopt(record, entries, seed, true).await {
                            tracing::error!("cannot join cluster {:016x}: {e}", record.id);
                        } else {
                            return true;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => self.note_failure(&e),
                }
            }
            let first = &self.settings.seeds[0];
            if self.peers.identify(first).await.is_ok_and(|hello| hello.member.id == self.me.id) {
                match self.create().await {
                    Ok(()) => return true,
                    Err(e) => tracing::error!("cannot create the cluster: {e}"),
                }
            }
            if !told {
                tracing::info!(seeds = ?self.settings.seeds, "waiting for a seed to answer with its cluster (the first seed, {first}, creates one if none exists)");
                told = true;
            }
            tokio::select! {
                () = tokio::time::sleep(JOIN_RETRY) => {}
                () = stop.stopped() => return false,
            }
        }
    }

    /// Creates a cluster of this node.
    async fn create(&self) -> Result<()> {
        let record = ClusterRecord {
            id: crate::random::random_u64() | 1,
            partitions: self.settings.partitions,
            n: u32::try_from(self.settings.n).unwrap_or(u32::MAX),
        };
        let first = RingState::first(self.me.id, record.partitions);
        self.store.meta_put(ring::RING, crate::rpc::encode_ring(&first)).await?;
        self.store.meta_put(CLUSTER, encode_record(&record)).await?;
        tracing::info!(cluster = %format!("{:016x}", record.id), q = record.partitions, n = record.n, "created a cluster");
        lock(&self.state).ring = first;
        self.enter(record);
        Ok(())
    }

    /// Adopts the cluster a seed answered with, and its members.
    /// `commit`: the join is committed at once (a node started with seeds)
    /// rather than staged for an operator's commit (`SHOAL.JOIN`).
    async fn adopt(&self, record: ClusterRecord, entries: Vec<Entry>, seed: &str, commit: bool) -> Result<()> {
        if record.partitions != self.settings.partitions {
            return Err(Error::Config(format!(
                "the cluster has {} partitions and this node {}; set partitions = {}",
                record.partitions, self.settings.partitions, record.partitions
            )));
        }
        // Saved before the record, so a restart never takes this node's
        // ring for one a build without rings made (see `ring::initial`).
        self.store.meta_put(ring::RING, crate::rpc::encode_ring(&RingState::unknown())).await?;
        self.will_join(commit).await?;
        self.store.meta_put(CLUSTER, encode_record(&record)).await?;
        let replaced = entries
            .iter()
            .find(|e| e.id != self.me.id && e.peer_addr == self.me.peer_addr && e.status != Status::Removed)
            .map(|e| e.id);
        {
            let mut st = lock(&self.state);
            let applied = st.table.learn(entries.into_iter().filter(|e| e.id != self.me.id).collect());
            self.absorb(&mut st, applied);
        }
        if let Some(old) = replaced {
            tracing::warn!(old = %old, new = %self.me.id, addr = %self.me.peer_addr, "this node replaces the member that was at its address (a lost data directory)");
            self.raise(0, |e| Entry { replaces: Some(old), ..e }).await?;
        }
        tracing::info!(cluster = %format!("{:016x}", record.id), seed, n = record.n, "joined the cluster");
        self.enter(record);
        Ok(())
    }

    /// Starts living in cluster `record`: handshakes say so, the view
    /// shows it.
    fn enter(&self, record: ClusterRecord) {
        if self.settings.n_configured && record.n as usize != self.settings.n {
            tracing::warn!(
                "n = {} is configured, but this cluster's N is {} (set when the cluster was created)",
                self.settings.n,
                record.n
            );
        }
        self.peers.set_cluster(record.id, record.partitions);
        let mut st = lock(&self.state);
        st.cluster = Some(record);
        self.publish(&st);
    }

    /// Makes this node's entry `update(current)` with a new version, at
    /// least `at_least`: persisted first, then announced. One change at a
    /// time, so the version on disk never goes back.
    async fn raise(&self, at_least: u64, update: impl FnOnce(Entry) -> Entry) -> Result<u64> {
        let _one = self.raising.lock().await;
        let current = lock(&self.state).table.me().entry.clone();
        let version = next_version(current.version).max(at_least);
        self.store.meta_put(VERSION, Bytes::copy_from_slice(&version.to_le_bytes())).await?;
        let mut st = lock(&self.state);
        st.table.set_me(Entry { version, ..update(current) });
        st.unsaved = true;
        self.publish(&st);
        Ok(version)
    }

    /// One gossip round: raise the heartbeat, exchange with the round's
    /// targets, judge liveness, save what changed.
    async fn round(&self) {
        let round = self.rounds.fetch_add(1, Ordering::Relaxed) + 1;
        if round % LOAD_EVERY == 1 {
            let bytes = self.store.disk_space().await;
            lock(&self.state).bytes = bytes;
        }
        let keys = u64::try_from(self.store.tally().keys).unwrap_or(0);
        let (targets, digest) = {
            let mut st = lock(&self.state);
            let bytes = st.bytes;
            let epoch = st.ring.epoch;
            st.table.beat(keys, bytes, epoch);
            (self.targets(&mut st, round), st.table.digest())
        };
        // Concurrently, and each bounded by the interval: a partner that
        // does not answer (paused, cut off) must not delay this node's
        // next heartbeat, or its peers would suspect it instead.
        let exchanges = targets
            .iter()
            .map(|addr| {
                tokio::time::timeout(self.settings.gossip_interval, async {
                    let answered = self.exchange(addr, digest.clone()).await;
                    if answered {
                        self.sync_ring(addr).await;
                    }
                    answered
                })
            })
            .collect();
        for (addr, done) in targets.iter().zip(crate::join::join_all(exchanges).await) {
            let answered = done.unwrap_or(false);
            if !answered {
                tracing::debug!(peer = %addr, "gossip: no answer within the round");
            }
            let mut st = lock(&self.state);
            if answered {
                st.unanswered.remove(addr)
            } else {
                st.unanswered.insert(addr.clone())
            };
        }
        let seen = lock(&self.state).own_version_seen.take();
        if let Some(seen) = seen {
            tracing::warn!(id = %self.me.id, seen, "another process announced this node with a newer version (a restored backup or a copy of its data directory); moving past it");
            if let Err(e) = self.raise(next_version(seen), |e| e).await {
                tracing::error!("cannot raise this node's version: {e}");
            }
        }
        self.judge();
        self.save().await;
    }

    /// This round's partners: a random live member that answered last time;
    /// with a chance growing with their number, a member believed down or
    /// one that did not answer; every few rounds (or
    /// with nobody live) a seed.
    fn targets(&self, st: &mut State, round: u64) -> Vec<String> {
        let mut live = Vec::new();
        let mut down = Vec::new();
        let mut unanswered = Vec::new();
        for k in st.table.all().filter(|k| k.entry.id != self.me.id && k.entry.status != Status::Removed) {
            let addr = k.entry.peer_addr.clone();
            if st.down.contains(&k.entry.id) {
                down.push(addr);
            } else if st.unanswered.contains(&addr) {
                unanswered.push(addr);
            } else {
                live.push(addr);
            }
        }
        // Live members that did not answer last time are visited like the
        // down ones, unless no other live member is left.
        if live.is_empty() {
            live = std::mem::take(&mut unanswered);
        }
        down.extend(unanswered);
        let pick = |from: &[String], st: &mut State| -> Option<String> {
            st.rng ^= st.rng << 13;
            st.rng ^= st.rng >> 7;
            st.rng ^= st.rng << 17;
            (!from.is_empty()).then(|| from[(st.rng % from.len() as u64) as usize].clone())
        };
        let mut targets: Vec<String> = pick(&live, st).into_iter().collect();
        if !down.is_empty() && (st.rng % (live.len() as u64 + 1)) < down.len() as u64 {
            targets.extend(pick(&down, st));
        }
        if live.is_empty() || round % SEED_EVERY == 0 {
            let seeds: Vec<String> = self
                .settings
                .seeds
                .iter()
                .filter(|s| **s != self.me.peer_addr && !targets.contains(s))
                .cloned()
                .collect();
            targets.extend(pick(&seeds, st));
        }
        targets
    }

    /// A push-pull exchange with the peer at `addr`.
    /// One exchange with the peer at `addr`; true if it answered.
    async fn exchange(&self, addr: &str, digest: Vec<crate::rpc::DigestItem>) -> bool {
        match self.peers.gossip(addr, GossipRequest::Syn(digest)).await {
            Ok(GossipResponse::Ack { deltas, wants }) => {
                let pushed = {
                    let mut st = lock(&self.state);
                    let applied = st.table.apply(deltas);
                    self.absorb(&mut st, applied);
                    st.table.deltas(&wants)
                };
                if !pushed.is_empty()
                    && let Err(e) = self.peers.gossip(addr, GossipRequest::Push(pushed)).await
                {
                    self.note_failure(&e);
                }
                true
            }
            Ok(other) => {
                tracing::debug!(peer = addr, "unexpected answer to gossip: {other:?}");
                true
            }
            Err(e) => {
                self.note_failure(&e);
                false
            }
        }
    }

    /// Logs a refusal once per address; other failures are for the failure
    /// detector to judge.
    fn note_failure(&self, e: &CallError) {
        match e {
            CallError::Refused(addr, why) => {
                if lock(&self.state).refused.insert(addr.clone()) {
                    tracing::warn!(peer = %addr, "refused: {why}");
                }
            }
            other => tracing::debug!("gossip: {other}"),
        }
    }

    /// Takes in what applying deltas changed.
    fn absorb(&self, st: &mut State, applied: Applied) {
        let now = now_ms();
        let expected = millis(self.settings.gossip_interval);
        for id in applied.heard {
            st.detectors.entry(id).or_insert_with(|| Detector::new(expected)).heartbeat(now);
            st.heard.insert(id);
        }
        if let Some(seen) = applied.own_version_seen {
            st.own_version_seen = Some(st.own_version_seen.unwrap_or(0).max(seen));
        }
        for e in &applied.changed {
            tracing::info!(member = %e.id, addr = %e.peer_addr, status = %e.status, version = e.version, "member learned");
            // A new version is a new run (a restart): calls need not wait
            // out the backoff its absence left.
            self.peers.retry_now(&e.peer_addr);
        }
        if applied.entries_changed {
            st.unsaved = true;
            self.publish(st);
        }
    }

    /// Judges every member up or down by its suspicion, logs the changes
    /// and publishes them.
    fn judge(&self) {
        let now = now_ms();
        let mut st = lock(&self.state);
        let mut changes = Vec::new();
        let members: Vec<(NodeId, String)> = st
            .table
            .all()
            .filter(|k| k.entry.id != self.me.id && k.entry.status != Status::Removed)
            .map(|k| (k.entry.id, k.entry.peer_addr.clone()))
            .collect();
        for (id, addr) in members {
            let phi = st
                .detectors
                .entry(id)
                .or_insert_with(|| {
                    let mut d = Detector::new(millis(self.settings.gossip_interval));
                    d.heartbeat(now);
                    d
                })
                .phi(now);
            let down = phi > self.settings.phi_threshold;
            if down != st.down.contains(&id) {
                if down {
                    st.down.insert(id);
                } else {
                    st.down.remove(&id);
                }
                changes.push((id, addr, phi, down));
            }
        }
        if changes.is_empty() {
            return;
        }
        for (id, addr, phi, down) in changes {
            if down {
                tracing::warn!(peer = %id, addr = %addr, phi = format!("{phi:.1}"), "peer down");
            } else {
                tracing::info!(peer = %id, addr = %addr, phi = format!("{phi:.1}"), "peer up");
                self.peers.retry_now(&addr);
            }
        }
        self.publish(&st);
    }

    /// Publishes a new view from the state.
    fn publish(&self, st: &State) {
        let members: Vec<Member> = st
            .table
            .all()
            .filter(|k| k.entry.status != Status::Removed)
            .map(|k| Member {
                id: k.entry.id,
                client_addr: k.entry.client_addr.clone(),
                peer_addr: k.entry.peer_addr.clone(),
            })
            .collect();
        let old = self.view();
        // The rings are shared with the last view while they are the same.
        let same = st.ring.is_known() && old.cluster.is_some() && old.ring.owners() == st.ring.owners.as_slice() && {
            match (&old.next, st.ring.in_progress()) {
                (Some(next), true) => next.owners() == st.ring.next.as_slice(),
                (None, false) => true,
                _ => false,
            }
        };
        let (ring, next, cluster) = if same {
            (Arc::clone(&old.ring), old.next.clone(), st.cluster)
        } else {
            match ring::rings(&st.ring) {
                (Some(ring), next) => (ring, next, st.cluster),
                // No ring known yet: no data served.
                (None, _) => (Arc::new(Ring::single(self.me.id, self.settings.partitions)), None, None),
            }
        };
        let up = members.iter().map(|m| m.id == self.me.id || !st.down.contains(&m.id)).collect();
        let view = View::new(cluster, self.settings.n, members, up, ring, next);
        self.store.set_sole_replica(st.cluster.is_some() && view.n == 1);
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(view);
    }

    /// Saves the member table if it changed.
    async fn save(&self) {
        let entries: Option<Vec<Entry>> = {
            let mut st = lock(&self.state);
            std::mem::take(&mut st.unsaved).then(|| st.table.all().map(|k| k.entry.clone()).collect())
        };
        if let Some(entries) = entries
            && let Err(e) = self.store.meta_put(MEMBERS, encode_entries(&entries)).await
        {
            tracing::warn!("cannot save the member table: {e}");
            lock(&self.state).unsaved = true;
        }
    }

    /// Answers a peer's gossip.
    pub async fn handle(&self, from: &Hello, request: GossipRequest) -> Response {
        // A claim granted is kept on disk before it is given, in order.
        let _granting = match request {
            GossipRequest::Claim { .. } => Some(self.granting.lock().await),
            _ => None,
        };
        if lock(&self.state).cluster.is_some_and(|c| c.id == from.cluster) {
            match request {
                GossipRequest::Decide(decision) => return self.decide(decision).await,
                GossipRequest::Ring(ring) => {
                    self.offer_ring(*ring).await;
                    return Response::Gossip(GossipResponse::Done);
                }
                _ => {}
            }
        }
        let mut grant = None;
        let answer = {
            let mut st = lock(&self.state);
            match request {
                GossipRequest::Ping => GossipResponse::Pong,
                GossipRequest::Join => {
                    GossipResponse::Cluster(st.cluster, st.table.all().map(|k| k.entry.clone()).collect())
                }
                _ if st.cluster.is_none_or(|c| c.id != from.cluster) => {
                    return Response::Error("TRYAGAIN not a member of this node's cluster".into());
                }
                GossipRequest::Syn(digest) => {
                    if let Some(seen) = st.table.another_self_in(&digest) {
                        st.own_version_seen = Some(st.own_version_seen.unwrap_or(0).max(seen));
                    }
                    let (deltas, wants) = st.table.compare(&digest);
                    GossipResponse::Ack { deltas, wants }
                }
                GossipRequest::Push(deltas) => {
                    let applied = st.table.apply(deltas);
                    self.absorb(&mut st, applied);
                    GossipResponse::Done
                }
                GossipRequest::RingStamp(generation, epoch, claimant) => {
                    self.answer_stamp(&st, generation, epoch, claimant)
                }
                GossipRequest::Ring(_) | GossipRequest::Decide(_) => {
                    return Response::Error("TRYAGAIN not a member of this node's cluster".into());
                }
                GossipRequest::Claim { before, after, token } => {
                    let member = from.member.id;
                    let seen = st.table.get(member).map_or(0, |k| k.entry.version);
                    let granted = st.claims.decide(member, seen, Claim { before, after, token });
                    grant = granted.then(|| st.claims.encode());
                    GossipResponse::Claimed(granted)
                }
            }
        };
        if let Some(record) = grant
            && let Err(e) = self.store.meta_put(CLAIMS, record).await
        {
            tracing::warn!("cannot keep a granted claim, refusing it: {e}");
            return Response::Gossip(GossipResponse::Claimed(false));
        }
        Response::Gossip(answer)
    }

    /// Every member as operators see it, and the cluster's record. This
    /// node's own key count is read now; the others' are what their last
    /// heartbeat said.
    #[must_use]
    pub fn status(&self) -> (Option<ClusterRecord>, Vec<MemberStatus>) {
        let now = now_ms();
        let my_keys = u64::try_from(self.store.tally().keys).unwrap_or(0);
        let st = lock(&self.state);
        let members = st
            .table
            .all()
            .map(|k| {
                let me = k.entry.id == self.me.id;
                let detector = st.detectors.get(&k.entry.id);
                MemberStatus {
                    entry: k.entry.clone(),
                    me,
                    up: me || (k.entry.status != Status::Removed && !st.down.contains(&k.entry.id)),
                    phi: if me { 0.0 } else { detector.map_or(0.0, |d| d.phi(now)) },
                    last_heard_ms: if me {
                        Some(0)
                    } else {
                        detector.and_then(Detector::last_heard).map(|t| now.saturating_sub(t))
                    },
                    keys: if me { my_keys } else { k.beat.keys },
                    bytes: k.beat.bytes,
                }
            })
            .collect();
        (st.cluster, members)
    }

    /// Gossip's counters.
    #[must_use]
    pub fn stats(&self) -> GossipStats {
        let now = now_ms();
        let st = lock(&self.state);
        let slowest = st
            .detectors
            .iter()
            .filter(|(id, _)| {
                !st.down.contains(id) && st.table.get(**id).is_some_and(|k| k.entry.status != Status::Removed)
            })
            .filter_map(|(_, d)| d.last_heard())
            .map(|t| now.saturating_sub(t))
            .max()
            .unwrap_or(0);
        GossipStats { rounds: self.rounds.load(Ordering::Relaxed), slowest_heartbeat_ms: slowest }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn read_u64(bytes: Option<Bytes>) -> u64 {
    bytes.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok()).map_or(0, u64::from_le_bytes)
}

/// The version to announce after `after`: above it, and at least the
/// wall clock in milliseconds, as Cassandra's generation is the start
/// time. The clock is what moves a node restored from a backup (whose
/// saved version went back) past the entries its later runs announced;
/// the saved version keeps it rising should the clock go back.
fn next_version(after: u64) -> u64 {
    after.saturating_add(1).max(now_ms())
}
