//! Counters behind INFO: plain relaxed atomics, bumped on the request path
//! and read when a client asks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct Metrics {
    pub started: Instant,
    pub connections_received: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub commands_processed: AtomicU64,
    pub keyspace_hits: AtomicU64,
    pub keyspace_misses: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub reads_coordinated: AtomicU64,
    pub writes_coordinated: AtomicU64,
    /// Writes that left a key with more than 25 siblings.
    pub sibling_warnings: AtomicU64,
    /// Writes sent on to a replica because this node is not one.
    pub writes_forwarded: AtomicU64,
    /// Merged objects sent to replicas that answered a read with less.
    pub read_repairs: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            connections_received: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            commands_processed: AtomicU64::new(0),
            keyspace_hits: AtomicU64::new(0),
            keyspace_misses: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            reads_coordinated: AtomicU64::new(0),
            writes_coordinated: AtomicU64::new(0),
            sibling_warnings: AtomicU64::new(0),
            writes_forwarded: AtomicU64::new(0),
            read_repairs: AtomicU64::new(0),
        }
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
#[must_use]
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
