//! Anti-entropy: replicas that converge by themselves, comparing hash
//! trees of what they hold, partition by partition, and exchanging only
//! the keys that differ (issue 12).
//!
//! - `tree.rs`: one partition's hash tree (pure). The store keeps one per
//!   partition, updated by every change it makes (`storage::trees`),
//!   saved by a clean stop and loaded by the next start; after a crash it
//!   is rebuilt in the background, partition by partition.
//! - `exchange.rs`: the background comparison with the other replicas,
//!   the repair of the keys that differ, and the evidence that lets the
//!   store remove tombstones every replica holds (`storage::settled`).
//! - `repairs.rs`: what operators ask for (`SHOAL.REPAIR`) and its
//!   progress.
//!
//! A tree still being rebuilt is not compared: the exchange skips the
//! partition on this node, and a peer asked for it refuses (TRYAGAIN), so
//! the asker counts the partition as not compared, never as equal.

mod exchange;
mod repairs;
pub mod tree;

pub use exchange::AntiEntropy;
pub use repairs::{Progress, Repairs};
