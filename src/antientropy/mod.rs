//! Anti-entropy: replicas that converge by themselves, comparing hash
//! trees of what they hold, partition by partition, and exchanging only
//! the keys that differ (issue 12).
//!
//! Built so far: the trees themselves (`tree.rs`, pure). Still to come:
//! keeping a tree per partition up to date wherever data changes, saving
//! and rebuilding them, the exchange between replicas, and removing
//! tombstones every replica holds.

pub mod tree;
