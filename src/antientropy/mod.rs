//! Anti-entropy: replicas that converge by themselves, comparing hash
//! trees of what they hold, partition by partition, and exchanging only
//! the keys that differ (issue 12).
//!
//! - `tree.rs`: one partition's hash tree (pure). The store keeps one per
//!   partition, updated by every change it makes (`storage::trees`).
//! - `exchange.rs`: the background comparison with the other replicas,
//!   the repair of the keys that differ, and the evidence that lets the
//!   store remove tombstones every replica holds (`storage::settled`).
//! - `repairs.rs`: what operators ask for (`SHOAL.REPAIR`) and its
//!   progress.

mod exchange;
mod repairs;
pub mod tree;

pub use exchange::AntiEntropy;
pub use repairs::{Progress, Repairs};
