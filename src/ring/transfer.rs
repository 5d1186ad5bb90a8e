//! What a change of ring moves: for each partition, which nodes become its
//! replicas and where each can copy the data from. Pure: no I/O, no tokio.
//!
//! The cluster layer runs these transfers (and an operator's plan shows
//! them) when a new ring replaces an old one; [`max_lost`] says how much
//! redundancy a key gives up while they run.

use super::Ring;
use crate::version::NodeId;

/// A node that becomes a replica of a partition, and where to fetch it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub partition: u32,
    /// The gaining node: a replica of `partition` in the new ring that was
    /// not one in the old.
    pub to: NodeId,
    /// The old replicas of `partition`, best source first: those that stop
    /// being replicas (they hold the data and are about to drop it, so
    /// copying from them leaves the staying replicas to serve requests),
    /// then those that stay, in preference order.
    pub sources: Vec<NodeId>,
}

/// The transfers that turn `old` into `new` for replication factor `n`,
/// sorted by (partition, gaining node).
///
/// Gainers of one partition are paired with its losers in preference order
/// (the k-th gainer's sources start at the k-th loser, wrapping), so that
/// distinct gainers start from distinct sources when there are enough
/// losers, and no single old replica serves every copy.
///
/// # Panics
/// If the rings have different partition counts.
#[must_use]
pub fn moves(old: &Ring, new: &Ring, n: usize) -> Vec<Move> {
    assert_eq!(old.partition_count(), new.partition_count(), "rings of different partition counts");
    let mut moves = Vec::new();
    for p in 0..new.partition_count() {
        let (before, after) = (old.replicas(p, n), new.replicas(p, n));
        let losers: Vec<NodeId> = before.iter().copied().filter(|r| !after.contains(r)).collect();
        let stayers = before.iter().copied().filter(|r| after.contains(r));
        let gainers = after.iter().copied().filter(|r| !before.contains(r));
        let mut here: Vec<Move> = gainers
            .enumerate()
            .map(|(k, to)| {
                let first = if losers.is_empty() { 0 } else { k % losers.len() };
                let sources = losers[first..].iter().chain(&losers[..first]).copied().chain(stayers.clone()).collect();
                Move { partition: p, to, sources }
            })
            .collect();
        here.sort_by_key(|m| m.to);
        moves.extend(here);
    }
    moves
}

/// The most replicas any partition's replica set loses from `old` to `new`
/// for replication factor `n`: while the transfers run, a key of that
/// partition has that many fewer up-to-date copies.
///
/// # Panics
/// If the rings have different partition counts.
#[must_use]
pub fn max_lost(old: &Ring, new: &Ring, n: usize) -> usize {
    assert_eq!(old.partition_count(), new.partition_count(), "rings of different partition counts");
    (0..new.partition_count())
        .map(|p| {
            let after = new.replicas(p, n);
            old.replicas(p, n).iter().filter(|r| !after.contains(r)).count()
        })
        .max()
        .unwrap_or(0)
}
