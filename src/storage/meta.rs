//! The `meta` keyspace: the node's identity and the partition count the
//! data directory was created with; and the dots this process issues.
//!
//! Dots are not counted on disk: a disk can be restored from a backup,
//! rolled back with a snapshot or copied, and a counter read back from it
//! would issue dots that writes since then already carry. Each process
//! instead writes as an actor of its own (see `version::Actor`).

use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, PersistMode};

use crate::error::{Error, Result};
use crate::random::random_u64;
use crate::version::{Actor, Dot, NodeId};

const NODE_ID: &str = "node-id";
const PARTITIONS: &str = "partitions";

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

/// The dots this process issues: an actor id drawn at random when the
/// store opens, and a counter kept in memory. A new process is a new actor,
/// so nothing on disk (a backup, a copy) can make it issue a dot again.
pub(super) struct Dots {
    actor: Actor,
    next: AtomicU64,
}

impl Dots {
    pub(super) fn new() -> Self {
        let actor = loop {
            let id = random_u64();
            if id != 0 {
                break Actor(id);
            }
        };
        Self { actor, next: AtomicU64::new(1) }
    }

    pub(super) fn actor(&self) -> Actor {
        self.actor
    }

    /// A dot no write has had before.
    pub(super) fn next(&self) -> Dot {
        Dot::new(self.actor, self.next.fetch_add(1, Ordering::Relaxed))
    }
}
