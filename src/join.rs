//! Running futures concurrently without spawning tasks: the futures borrow
//! from the caller (a session, the coordinator), which spawned tasks could
//! not.

use std::future::Future;

/// Futures polled at once; the rest wait for a chunk to finish. (Up to 30,
/// `futures_util` keeps a chunk in one allocation, not one per future.)
const FAN_OUT: usize = 30;

/// Runs futures concurrently, 30 at a time, and returns their outputs in
/// order. Each future is first polled in order, so work the futures queue
/// on their first poll is queued in order. (A `Vec`, not an iterator: an
/// iterator of closures held across an await would make the caller's
/// future not `Send`.)
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures = futures.into_iter();
    let mut outputs = Vec::with_capacity(futures.len());
    while futures.len() > 0 {
        outputs.extend(futures_util::future::join_all(futures.by_ref().take(FAN_OUT)).await);
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outputs_come_in_order_across_chunks() {
        let futures: Vec<_> = (0..100).map(|i| async move { i * 2 }).collect();
        assert_eq!(join_all(futures).await, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    }
}
