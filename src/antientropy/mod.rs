//! Anti-entropy: replicas that converge by themselves, comparing hash
//! trees of what they hold, partition by partition, and exchanging only
//! the keys that differ (issue 12).
//!
//! - `tree.rs`: one partition's hash tree (pure). The store keeps one per
//!   partition, updated by every change it makes (`storage::trees`).
//! - `exchange.rs`: the background comparison with the other replicas,
//!   and the repair of the keys that differ.
//!
//! Still to come: saving the trees on a clean stop (they are rebuilt at
//! every start, in the pass that counts the keys), rate limits in bytes,
//! SHOAL.REPAIR, and removing tombstones every replica holds.

mod exchange;
pub mod tree;

pub use exchange::AntiEntropy;
