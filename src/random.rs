//! Random numbers for ids (node ids, actors, cluster ids) and gossip's
//! choice of partners: from the OS-seeded keys of the standard hasher,
//! mixed with the clock and the process id. Not for cryptography.

use std::hash::{BuildHasher, Hasher};

/// A random 64-bit number.
#[must_use]
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}
