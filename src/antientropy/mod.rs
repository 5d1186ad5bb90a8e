//! Anti-entropy: replicas that converge by themselves, comparing hash
//! trees of what they hold, partition by partition, and exchanging only
//! the keys that differ (issue 12).
//!
//! - `tree.rs`: one partition's hash tree (pure). The store keeps one per
//!   partition, updated by every change it makes (`storage::trees`),
//!   saved by a clean stop and loaded by the next start; after a crash it
//!   is rebuilt in the background, partition by partition.
//! - `exchange.rs`: the background comparison with the other replicas,
//!   and the repair of the keys that differ.
//!
//! A tree still being rebuilt is not compared: the exchange skips the
//! partition on this node, and a peer asked for it refuses (TRYAGAIN), so
//! the asker counts the partition as not compared, never as equal.
//!
//! Still to come: rate limits in bytes, SHOAL.REPAIR, and removing
//! tombstones every replica holds.

mod exchange;
pub mod tree;

pub use exchange::AntiEntropy;
