//! The `meta` keyspace: the node's identity, the partition count the data
//! directory was created with and the shard count it is stored in; and the
//! dots this process issues.
//!
//! Dots are not counted on disk: a disk can be restored from a backup,
//! rolled back with a snapshot or copied, and a counter read back from it
//! would issue dots that writes since then already carry. Each process
//! instead writes as an actor of its own (see `version::Actor`), drawn at
//! random, unless it may resume its predecessor's: a clean stop records
//! the actor and its last counter (`clean-stop`), the next start takes the
//! record away at once (so a crash leaves none), and membership decides
//! whether the record is the last word on that actor (see
//! `membership::claim`).

use std::sync::{Mutex, PoisonError};

use fjall::{Database, Keyspace, PersistMode};

use crate::error::{Error, Result};
use crate::random::random_u64;
use crate::version::{Actor, Dot, NodeId};

const NODE_ID: &str = "node-id";
const PARTITIONS: &str = "partitions";
const CLEAN_STOP: &str = "clean-stop";
const SHARDS: &str = "shards";
const RESHARDING: &str = "resharding";
const FLUSHES: &str = "flushes";

fn read_u64(meta: &Keyspace, key: &str) -> Result<Option<u64>> {
    let Some(v) = meta.get(key).map_err(storage)? else { return Ok(None) };
    let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| Error::Storage(format!("corrupt meta entry {key}")))?;
    Ok(Some(u64::from_le_bytes(bytes)))
}

fn write_u64(db: &Database, meta: &Keyspace, key: &str, value: u64) -> Result<()> {
    meta.insert(key, value.to_le_bytes()).map_err(storage)?;
    db.persist(PersistMode::SyncAll).map_err(storage)
}

/// How many times FLUSHALL emptied this node (anti-entropy compares only
/// replicas that have seen the same flushes).
pub(super) fn flushes(meta: &Keyspace) -> Result<u64> {
    Ok(read_u64(meta, FLUSHES)?.unwrap_or(0))
}

pub(super) fn set_flushes(db: &Database, meta: &Keyspace, n: u64) -> Result<()> {
    write_u64(db, meta, FLUSHES, n)
}

pub(super) fn storage(e: fjall::Error) -> Error {
    Error::Storage(e.to_string())
}

/// Reads the node id, creating one for a new data directory.
pub(super) fn node_id(db: &Database, meta: &Keyspace) -> Result<NodeId> {
    if let Some(id) = read_u64(meta, NODE_ID)? {
        return Ok(NodeId(id));
    }
    let id = loop {
        let id = random_u64();
        if id != 0 {
            break id;
        }
    };
    write_u64(db, meta, NODE_ID, id)?;
    Ok(NodeId(id))
}

/// Checks (or, for a new directory, records) the partition count: true for
/// a new directory (recorded before any key is written, so it holds none).
pub(super) fn check_partitions(db: &Database, meta: &Keyspace, q: u32) -> Result<bool> {
    match read_u64(meta, PARTITIONS)? {
        Some(stored) if stored == u64::from(q) => Ok(false),
        Some(stored) => Err(Error::Config(format!(
            "the data directory was created with {stored} partitions, not {q}; the partition count is fixed when a cluster is created"
        ))),
        None => write_u64(db, meta, PARTITIONS, u64::from(q)).map(|()| true),
    }
}

/// The number of shards the data is stored in (none for a new directory,
/// or one written before shards).
pub(super) fn shard_count(meta: &Keyspace) -> Result<Option<usize>> {
    Ok(read_u64(meta, SHARDS)?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
}

pub(super) fn set_shard_count(db: &Database, meta: &Keyspace, n: usize) -> Result<()> {
    write_u64(db, meta, SHARDS, n as u64)
}

/// The shard count a move of the keys was under way to, if one was.
pub(super) fn resharding(meta: &Keyspace) -> Result<Option<usize>> {
    Ok(read_u64(meta, RESHARDING)?.filter(|&n| n > 0).map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
}

pub(super) fn set_resharding(db: &Database, meta: &Keyspace, to: Option<usize>) -> Result<()> {
    match to {
        Some(n) => write_u64(db, meta, RESHARDING, n as u64),
        None => {
            meta.remove(RESHARDING).map_err(storage)?;
            db.persist(PersistMode::SyncAll).map_err(storage)
        }
    }
}

/// Takes the record a clean stop left (the actor and its last counter), and
/// removes it durably before anything else is written.
pub(super) fn take_clean_stop(db: &Database, meta: &Keyspace) -> Result<Option<(Actor, u64)>> {
    let Some(v) = meta.get(CLEAN_STOP).map_err(storage)? else { return Ok(None) };
    meta.remove(CLEAN_STOP).map_err(storage)?;
    db.persist(PersistMode::SyncAll).map_err(storage)?;
    let record = <[u8; 16]>::try_from(v.as_ref()).ok().and_then(|b| {
        let actor = u64::from_le_bytes(b[..8].try_into().ok()?);
        let last = u64::from_le_bytes(b[8..].try_into().ok()?);
        (actor != 0).then_some((Actor(actor), last))
    });
    if record.is_none() {
        tracing::warn!("ignoring a corrupt clean-stop record");
    }
    Ok(record)
}

/// Records a clean stop: `actor` issued no dot past `last`. Written after
/// the last write, before the final flush.
pub(super) fn put_clean_stop(meta: &Keyspace, actor: Actor, last: u64) -> Result<()> {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&actor.0.to_le_bytes());
    v[8..].copy_from_slice(&last.to_le_bytes());
    meta.insert(CLEAN_STOP, v).map_err(storage)
}

/// The dots this process issues: an actor and the next counter, kept in
/// memory. The actor is drawn at random when the store opens, so nothing on
/// disk (a backup, a copy) can make a process issue a dot again; it changes
/// at most once, early, when membership lets the process resume its
/// predecessor's actor.
pub(super) struct Dots {
    state: Mutex<(Actor, u64)>,
}

impl Dots {
    pub(super) fn new() -> Self {
        let actor = loop {
            let id = random_u64();
            if id != 0 {
                break Actor(id);
            }
        };
        Self { state: Mutex::new((actor, 1)) }
    }

    pub(super) fn actor(&self) -> Actor {
        self.lock().0
    }

    /// The actor and the last counter it issued.
    pub(super) fn last(&self) -> (Actor, u64) {
        let (actor, next) = *self.lock();
        (actor, next - 1)
    }

    /// Writes as `actor` from now on, after its counter `last`.
    pub(super) fn resume(&self, actor: Actor, last: u64) {
        *self.lock() = (actor, last.saturating_add(1));
    }

    /// A dot no write has had before.
    pub(super) fn next(&self) -> Dot {
        let mut state = self.lock();
        let dot = Dot::new(state.0, state.1);
        state.1 += 1;
        dot
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Actor, u64)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
