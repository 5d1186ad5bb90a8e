//! Counters behind INFO: plain relaxed atomics, bumped on the request path
//! and read when a client asks. Per-command counters ([`CommandStats`])
//! and error replies by code ([`ErrorStats`]) back INFO's `commandstats`
//! and `errorstats` sections.
//!
//! The count of heap allocations comes from the binary, whose global
//! allocator counts them: it registers a reader with
//! [`set_allocation_counter`], and INFO shows `total_allocations` only
//! when one is registered (a library user's allocator may count nothing).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::version::NodeId;

/// Distinct error codes counted in `errorstats`, as in Redis; errors with
/// other codes still count in the total.
const MAX_ERROR_CODES: usize = 128;

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
    /// Hints taken for replicas that missed a write.
    pub hints_stored: AtomicU64,
    /// Hints handed to their replica (or found no longer needed).
    pub hints_delivered: AtomicU64,
    /// Hints refused, past the bounds on hints for their target.
    pub hints_refused: AtomicU64,
    /// Keys and bytes of partitions transferred to this node (ring
    /// changes).
    pub transfer_keys: AtomicU64,
    pub transfer_bytes: AtomicU64,
    /// Anti-entropy comparisons of a partition with another replica.
    pub ae_exchanges: AtomicU64,
    /// Keys anti-entropy changed, on either side.
    pub ae_keys_repaired: AtomicU64,
    /// Keys listed, with their digests, by either side of an exchange in
    /// leaves that differed.
    pub ae_keys_compared: AtomicU64,
    /// Keys whose digests differed that an exchange read from the other
    /// replica, and merged copies it sent back to it.
    pub ae_keys_fetched: AtomicU64,
    pub ae_keys_sent: AtomicU64,
    /// Requests exchanges sent, and their bytes on the wire each way.
    pub ae_messages: AtomicU64,
    pub ae_bytes_sent: AtomicU64,
    pub ae_bytes_received: AtomicU64,
    /// When the partition of this node compared longest ago was last
    /// compared with every replica (ms since the epoch; 0: one never was).
    pub ae_oldest_comparison_ms: AtomicU64,
    /// Error replies sent to clients.
    pub errors: ErrorStats,
    /// Requests that missed their quorum.
    pub noquorums: AtomicU64,
    /// The last of them: what was needed and which peers failed how.
    pub last_noquorum: Mutex<String>,
    /// When a NOQUORUM was last logged (ms since the epoch).
    noquorum_logged: AtomicU64,
    /// Hint deliveries under way, by the node they go to.
    deliveries: Mutex<HashMap<NodeId, Delivery>>,
}

/// A hint delivery under way.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    pub started: Instant,
    /// Hints held for the node when it started.
    pub total: u64,
    /// Hints handed over so far.
    pub done: u64,
}

impl Delivery {
    /// "done of total, rate keys/s", for SHOAL.STATUS.
    #[must_use]
    pub fn progress(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        format!("{} of {}, {:.0} keys/s", self.done, self.total, self.done as f64 / secs)
    }
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
            hints_stored: AtomicU64::new(0),
            hints_delivered: AtomicU64::new(0),
            hints_refused: AtomicU64::new(0),
            transfer_keys: AtomicU64::new(0),
            transfer_bytes: AtomicU64::new(0),
            ae_exchanges: AtomicU64::new(0),
            ae_keys_repaired: AtomicU64::new(0),
            ae_keys_compared: AtomicU64::new(0),
            ae_keys_fetched: AtomicU64::new(0),
            ae_keys_sent: AtomicU64::new(0),
            ae_messages: AtomicU64::new(0),
            ae_bytes_sent: AtomicU64::new(0),
            ae_bytes_received: AtomicU64::new(0),
            ae_oldest_comparison_ms: AtomicU64::new(0),
            errors: ErrorStats::default(),
            noquorums: AtomicU64::new(0),
            last_noquorum: Mutex::new(String::new()),
            noquorum_logged: AtomicU64::new(0),
            deliveries: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// Counts a missed quorum described by `summary`; true if it should be
    /// logged (at most one a second).
    pub fn noquorum(&self, summary: String) -> bool {
        add(&self.noquorums, 1);
        *self.last_noquorum.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = summary;
        let now = crate::clock::now_ms();
        let last = self.noquorum_logged.load(Ordering::Relaxed);
        now >= last + 1000
            && self.noquorum_logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Records the progress of a hint delivery to `node` (`None`: it
    /// ended).
    pub fn delivering(&self, node: NodeId, delivery: Option<Delivery>) {
        let mut all = self.deliveries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match delivery {
            Some(d) => all.insert(node, d),
            None => all.remove(&node),
        };
    }

    /// The hint delivery to `node` under way, if any.
    #[must_use]
    pub fn delivery(&self, node: NodeId) -> Option<Delivery> {
        self.deliveries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&node).copied()
    }

    /// CONFIG RESETSTAT: zeroes the counters Redis resets (not the gauges,
    /// nor the cluster's own counters).
    pub fn reset(&self) {
        for counter in [
            &self.connections_received,
            &self.connections_rejected,
            &self.commands_processed,
            &self.keyspace_hits,
            &self.keyspace_misses,
            &self.net_input_bytes,
            &self.net_output_bytes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.errors.reset();
    }
}

/// One command's counters, as INFO commandstats shows them; a cache line
/// of its own, so threads running different commands do not contend.
#[derive(Default)]
#[repr(align(64))]
pub struct CommandCounters {
    /// Times it ran.
    pub calls: AtomicU64,
    /// Microseconds it ran for, in all.
    pub usec: AtomicU64,
    /// Times it was refused before running (arity, authentication).
    pub rejected: AtomicU64,
    /// Times it ran and answered an error.
    pub failed: AtomicU64,
}

/// Counters for every command and subcommand, by a number the caller
/// gives each.
pub struct CommandStats {
    slots: Box<[CommandCounters]>,
}

impl CommandStats {
    #[must_use]
    pub fn new(slots: usize) -> Self {
        Self { slots: (0..slots).map(|_| CommandCounters::default()).collect() }
    }

    /// Counts a run of command `slot` that took `usec` microseconds.
    pub fn ran(&self, slot: usize, usec: u64, failed: bool) {
        if let Some(c) = self.slots.get(slot) {
            add(&c.calls, 1);
            add(&c.usec, usec);
            if failed {
                add(&c.failed, 1);
            }
        }
    }

    /// Counts a refusal of command `slot` before it ran.
    pub fn rejected(&self, slot: usize) {
        if let Some(c) = self.slots.get(slot) {
            add(&c.rejected, 1);
        }
    }

    /// The counters of every slot, in order.
    #[must_use]
    pub fn slots(&self) -> &[CommandCounters] {
        &self.slots
    }

    /// Zeroes every counter (CONFIG RESETSTAT).
    pub fn reset(&self) {
        for c in &*self.slots {
            for counter in [&c.calls, &c.usec, &c.rejected, &c.failed] {
                counter.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// The error codes most replies carry, counted without a lock (an outage
/// makes every I/O thread answer NOQUORUM at once).
const COMMON_ERROR_CODES: [&str; 6] = ["ERR", "NOQUORUM", "WRONGTYPE", "NOAUTH", "TRYAGAIN", "EXECABORT"];

/// Error replies: how many in all, and how many per code (the error's first
/// word, as Redis counts them).
#[derive(Default)]
pub struct ErrorStats {
    total: AtomicU64,
    common: [AtomicU64; COMMON_ERROR_CODES.len()],
    others: Mutex<BTreeMap<String, u64>>,
}

impl ErrorStats {
    /// Counts an error reply whose text (without the `-`) is `text`.
    pub fn record(&self, text: &str) {
        add(&self.total, 1);
        // Redis looks for the code's end in the first 32 bytes.
        let head = &text.as_bytes()[..text.len().min(32)];
        let code = match head.iter().position(|&b| b == b' ') {
            Some(end) => &text[..end],
            None => "ERR",
        };
        if let Some(i) = COMMON_ERROR_CODES.iter().position(|&c| c == code) {
            add(&self.common[i], 1);
            return;
        }
        let mut others = self.others.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = others.get_mut(code) {
            *n += 1;
        } else if others.len() + COMMON_ERROR_CODES.len() < MAX_ERROR_CODES {
            others.insert(code.to_string(), 1);
        }
    }

    #[must_use]
    pub fn total(&self) -> u64 {
        get(&self.total)
    }

    /// Counts per code, in code order (codes never seen left out).
    #[must_use]
    pub fn by_code(&self) -> Vec<(String, u64)> {
        let mut all = self.others.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for (code, n) in COMMON_ERROR_CODES.iter().zip(&self.common) {
            let n = get(n);
            if n > 0 {
                all.insert((*code).to_string(), n);
            }
        }
        all.into_iter().collect()
    }

    /// Forgets every count (CONFIG RESETSTAT).
    pub fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        for n in &self.common {
            n.store(0, Ordering::Relaxed);
        }
        self.others.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

/// Reads the heap allocations the process has made so far; see
/// [`set_allocation_counter`].
static ALLOCATIONS: OnceLock<fn() -> u64> = OnceLock::new();

/// Registers `count`, which returns the heap allocations the process has
/// made since it started. The first registration stays.
pub fn set_allocation_counter(count: fn() -> u64) {
    let _ = ALLOCATIONS.set(count);
}

/// The heap allocations the process has made so far, if the binary counts
/// them.
#[must_use]
pub fn allocations() -> Option<u64> {
    ALLOCATIONS.get().map(|count| count())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_count_by_their_first_word() {
        let e = ErrorStats::default();
        e.record("ERR syntax error");
        e.record("NOQUORUM 2 replicas needed, 1 answered");
        e.record("ERR unknown command 'x', with args beginning with: ");
        e.record("NOSPACEINTHEFIRST32BYTES_XXXXXXXXXXXXXXX at all");
        assert_eq!(e.total(), 4);
        assert_eq!(e.by_code(), [("ERR".to_string(), 3), ("NOQUORUM".to_string(), 1)]);
        for i in 0..200 {
            e.record(&format!("CODE{i} x"));
        }
        let codes = e.by_code().len();
        assert!((MAX_ERROR_CODES - COMMON_ERROR_CODES.len()..=MAX_ERROR_CODES).contains(&codes), "{codes} codes kept");
        assert_eq!(e.total(), 204, "but every error counts in the total");
        e.reset();
        assert_eq!((e.total(), e.by_code().len()), (0, 0));
    }
}
