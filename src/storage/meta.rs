//! The `meta` keyspace: the node's identity, its dot counter and the
//! partition count the data directory was created with.
//!
//! The dot counter never goes backwards, across restarts and crashes
//! included: counters are handed out from a block whose end is recorded and
//! fsynced before the first counter of the block is used, and a restart
//! continues after the recorded end. Dots are therefore unique per node
//! forever, whatever happens to the keys that carried them.

use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

use fjall::{Database, Keyspace, PersistMode};

use crate::error::{Error, Result};
use crate::version::NodeId;

const NODE_ID: &str = "node-id";
const PARTITIONS: &str = "partitions";
const DOT_LIMIT: &str = "dot-limit";
/// Counters reserved per fsync of the limit.
const DOT_BLOCK: u64 = 1 << 16;

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

/// A random 64-bit id from the OS-seeded hasher keys, the clock and the pid.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
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

/// The node's dot counter.
pub(super) struct DotCounter {
    db: Database,
    meta: Keyspace,
    /// (next counter to hand out, end of the reserved block)
    state: Mutex<(u64, u64)>,
}

impl DotCounter {
    pub(super) fn open(db: &Database, meta: &Keyspace) -> Result<Self> {
        let start = read_u64(meta, DOT_LIMIT)?.unwrap_or(0) + 1;
        let limit = start + DOT_BLOCK;
        write_u64(db, meta, DOT_LIMIT, limit)?;
        Ok(Self { db: db.clone(), meta: meta.clone(), state: Mutex::new((start, limit)) })
    }

    /// The next counter; reserves (and fsyncs) a new block when one runs out.
    pub(super) fn next(&self) -> Result<u64> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.0 > state.1 {
            let limit = state.1 + DOT_BLOCK;
            write_u64(&self.db, &self.meta, DOT_LIMIT, limit)?;
            state.1 = limit;
        }
        let counter = state.0;
        state.0 += 1;
        Ok(counter)
    }
}
