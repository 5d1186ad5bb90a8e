//! Running futures concurrently without spawning tasks: the futures borrow
//! from the caller (a session, the coordinator), which spawned tasks could
//! not.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Futures polled at once; the rest wait for a chunk to finish.
const FAN_OUT: usize = 64;

/// Runs futures concurrently, 64 at a time, and returns their
/// outputs in order. Each future is first polled in order, so work the
/// futures queue on their first poll is queued in order. (A `Vec`, not an
/// iterator: an iterator of closures held across an await would make the
/// caller's future not `Send`.)
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures = futures.into_iter();
    let mut outputs = Vec::with_capacity(futures.len());
    while futures.len() > 0 {
        let mut chunk: Vec<Pin<Box<F>>> = futures.by_ref().take(FAN_OUT).map(Box::pin).collect();
        let mut done: Vec<Option<F::Output>> = chunk.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, slot) in chunk.iter_mut().zip(done.iter_mut()) {
                if slot.is_none() {
                    match f.as_mut().poll(cx) {
                        Poll::Ready(v) => *slot = Some(v),
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending { Poll::Pending } else { Poll::Ready(()) }
        })
        .await;
        outputs.extend(done.into_iter().flatten());
    }
    outputs
}
