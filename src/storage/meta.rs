//! The `meta` keyspace: the node's identity and the partition count the
//! data directory was created with; and the dots this process issues.
//!
//! Dots are not trusted to a counter on disk: a disk can be restored from a
//! backup, rolled back with a snapshot or copied, and a counter read back
//! from it would issue dots that writes since then already carry. Each
//! process writes as an actor (see `version::Actor`) drawn at random,
//! unless membership lets it resume its predecessor's (see
//! `membership::claim`). What it may resume from is on disk: a *lease*
//! (`lease`: an actor and the highest counter it may issue, kept durably
//! before any dot past the previous lease is issued) and, after a clean
//! stop, the exact last counter (`clean-stop`, taken away at the next
//! start so a crash leaves none). A process that uses up its lease before
//! membership extends it draws a new actor rather than wait.

use std::sync::{Mutex, PoisonError};

use fjall::{Database, Keyspace, PersistMode};

use crate::error::{Error, Result};
use crate::random::random_u64;
use crate::version::{Actor, Dot, NodeId};

const NODE_ID: &str = "node-id";
const PARTITIONS: &str = "partitions";
const CLEAN_STOP: &str = "clean-stop";
const LEASE: &str = "lease";

fn read_u64(meta: &Keyspace, key: &str) -> Result<Option<u64>> {
    let Some(v) = meta.get(key).map_err(storage)? else { return Ok(None) };
    let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| Error::Storage(format!("corrupt meta entry {key}")))?;
    Ok(Some(u64::from_le_bytes(bytes)))
}

fn write_u64(db: &Database, meta: &Keyspace, key: &str, value: u64) -> Result<()> {
    meta.insert(key, value.to_le_bytes()).map_err(storage)?;
    db.persist(PersistMode::SyncAll).map_err(storage)
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

/// Checks (or, for a new directory, records) the partition count.
pub(super) fn check_partitions(db: &Database, meta: &Keyspace, q: u32) -> Result<()> {
    match read_u64(meta, PARTITIONS)? {
        Some(stored) if stored == u64::from(q) => Ok(()),
        Some(stored) => Err(Error::Config(format!(
            "the data directory was created with {stored} partitions, not {q}; the partition count is fixed when a cluster is created"
        ))),
        None => write_u64(db, meta, PARTITIONS, u64::from(q)),
    }
}

/// Dots an actor may issue per lease by default (`actor-lease`): extended
/// when half are used, so a busy node extends every couple of million
/// writes.
pub const LEASE_BLOCK: u64 = 1 << 22;

fn read_pair(meta: &Keyspace, key: &str) -> Result<Option<(Actor, u64)>> {
    let Some(v) = meta.get(key).map_err(storage)? else { return Ok(None) };
    let record = <[u8; 16]>::try_from(v.as_ref()).ok().and_then(|b| {
        let actor = u64::from_le_bytes(b[..8].try_into().ok()?);
        let counter = u64::from_le_bytes(b[8..].try_into().ok()?);
        (actor != 0).then_some((Actor(actor), counter))
    });
    if record.is_none() {
        tracing::warn!("ignoring a corrupt {key} record");
    }
    Ok(record)
}

fn put_pair(meta: &Keyspace, key: &str, actor: Actor, counter: u64) -> Result<()> {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&actor.0.to_le_bytes());
    v[8..].copy_from_slice(&counter.to_le_bytes());
    meta.insert(key, v).map_err(storage)
}

/// What the last process left to resume from: its actor and the first
/// counter not known to be used (after a clean stop, the one after its
/// last dot; after a crash, the one after its lease).
pub type Resumable = (Actor, u64);

/// The dots this process issues: an actor, the next counter and the end of
/// its lease, in memory; the lease on disk. See the module docs.
pub(super) struct Dots {
    state: Mutex<DotState>,
    /// Dots per lease.
    block: u64,
    db: Database,
    meta: Keyspace,
}

#[derive(Clone, Copy)]
struct DotState {
    actor: Actor,
    next: u64,
    /// The highest counter the lease on disk allows.
    end: u64,
}

fn fresh_actor() -> Actor {
    loop {
        let id = random_u64();
        if id != 0 {
            return Actor(id);
        }
    }
}

impl Dots {
    /// Takes what the last process left (the clean-stop record first, else
    /// its lease), then leases a fresh actor, durably, before returning.
    pub(super) fn open(db: &Database, meta: &Keyspace, block: u64) -> Result<(Self, Option<Resumable>)> {
        let clean = read_pair(meta, CLEAN_STOP)?;
        let lease = read_pair(meta, LEASE)?;
        let resumable = match (clean, lease) {
            (Some((actor, last)), _) => Some((actor, last.saturating_add(1))),
            (None, Some((actor, end))) => Some((actor, end.saturating_add(1))),
            (None, None) => None,
        };
        let state = DotState { actor: fresh_actor(), next: 1, end: block };
        meta.remove(CLEAN_STOP).map_err(storage)?;
        put_pair(meta, LEASE, state.actor, state.end)?;
        db.persist(PersistMode::SyncAll).map_err(storage)?;
        Ok((Self { state: Mutex::new(state), block, db: db.clone(), meta: meta.clone() }, resumable))
    }

    pub(super) fn block(&self) -> u64 {
        self.block
    }

    pub(super) fn actor(&self) -> Actor {
        self.lock().actor
    }

    /// The actor, the last counter it issued, and the end of its lease.
    pub(super) fn position(&self) -> (Actor, u64, u64) {
        let s = *self.lock();
        (s.actor, s.next - 1, s.end)
    }

    /// Records a clean stop: the actor issued no dot past its last. Written
    /// after the last write, before the final flush.
    pub(super) fn put_clean_stop(&self) -> Result<()> {
        let s = *self.lock();
        put_pair(&self.meta, CLEAN_STOP, s.actor, s.next - 1)
    }

    /// Writes as `actor` from counter `from` on, under a new lease (kept on
    /// disk first). Blocking.
    pub(super) fn resume(&self, actor: Actor, from: u64) -> Result<()> {
        let mut s = self.lock();
        let end = from.saturating_add(self.block - 1);
        self.keep_lease(actor, end)?;
        *s = DotState { actor, next: from.max(1), end };
        Ok(())
    }

    /// Extends the lease of `actor` to `end`, if it is still this
    /// process's actor (kept on disk first). Blocking.
    pub(super) fn extend(&self, actor: Actor, end: u64) -> Result<bool> {
        let mut s = self.lock();
        if s.actor != actor || end <= s.end {
            return Ok(false);
        }
        self.keep_lease(actor, end)?;
        s.end = end;
        Ok(true)
    }

    /// A dot no write has had before. Past the lease, a new actor.
    pub(super) fn next(&self) -> Dot {
        let mut s = self.lock();
        if s.next > s.end {
            let actor = fresh_actor();
            tracing::info!(old = %s.actor, new = %actor, "the actor's lease is used up and was not extended in time; writing as a new actor");
            // Without the lease on disk the new actor is merely never
            // resumed after a crash: still safe.
            if let Err(e) = self.keep_lease(actor, self.block) {
                tracing::warn!("cannot keep the new actor's lease: {e}");
            }
            *s = DotState { actor, next: 1, end: self.block };
        }
        let dot = Dot::new(s.actor, s.next);
        s.next += 1;
        dot
    }

    fn keep_lease(&self, actor: Actor, end: u64) -> Result<()> {
        put_pair(&self.meta, LEASE, actor, end)?;
        self.db.persist(PersistMode::SyncAll).map_err(storage)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use fjall::KeyspaceCreateOptions;

    use super::*;

    #[test]
    fn a_lease_used_up_before_it_is_extended_means_a_new_actor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::builder(dir.path()).open().expect("open");
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).expect("keyspace");
        let (dots, resumable) = Dots::open(&db, &meta, LEASE_BLOCK).expect("dots");
        assert_eq!(resumable, None);
        let first = dots.actor();
        dots.lock().end = 2;
        assert_eq!(dots.next(), Dot::new(first, 1));
        assert_eq!(dots.next(), Dot::new(first, 2));
        let third = dots.next();
        assert_ne!(third.actor, first, "never past the lease");
        assert_eq!(third.counter, 1);
        assert_eq!(read_pair(&meta, LEASE).expect("read"), Some((third.actor, LEASE_BLOCK)), "the new lease is kept");
        assert!(!dots.extend(first, 100).expect("extend"), "the old actor's lease is not extended");
    }
}
