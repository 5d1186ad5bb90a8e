//! What operators ask of anti-entropy (`SHOAL.REPAIR`, `shoal repair`): a
//! repair of some partitions now, ahead of the background pass, and its
//! progress; and pausing the background pass.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// What one round of a partition did (see `exchange.rs`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Round {
    /// Every other replica was up and compared.
    pub everyone: bool,
    pub compared: u64,
    pub repaired: u64,
    pub bytes: u64,
}

/// The progress of the repair operators asked for last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Partitions still to compare.
    pub running: bool,
    pub partitions_total: u64,
    pub partitions_done: u64,
    /// Of those done, the partitions some replica of which could not be
    /// compared (down, or the exchange failed).
    pub partitions_incomplete: u64,
    /// Keys listed by both sides in leaves that differed.
    pub keys_compared: u64,
    pub keys_repaired: u64,
    pub bytes: u64,
    /// When the repair was asked for, and when it ended (ms; 0: not yet).
    pub started_ms: u64,
    pub finished_ms: u64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<u32>,
    /// What `queue` holds.
    queued: HashSet<u32>,
    progress: Progress,
}

/// Shared by the exchange and the commands that steer it.
#[derive(Default)]
pub struct Repairs {
    paused: AtomicBool,
    wake: Notify,
    state: Mutex<State>,
}

impl Repairs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for `partitions` to be compared now. Joins the repair under way,
    /// if one is, else starts a new one (and its progress).
    pub fn request(&self, partitions: &[u32]) -> Progress {
        let mut st = self.state();
        if !st.progress.running {
            st.progress = Progress { running: true, started_ms: crate::clock::now_ms(), ..Progress::default() };
        }
        for &p in partitions {
            if st.queued.insert(p) {
                st.queue.push_back(p);
                st.progress.partitions_total += 1;
            }
        }
        if st.queue.is_empty() {
            st.progress.running = false;
            st.progress.finished_ms = crate::clock::now_ms();
        }
        drop(st);
        self.wake.notify_one();
        self.progress()
    }

    #[must_use]
    pub fn progress(&self) -> Progress {
        self.state().progress.clone()
    }

    /// Stops or resumes the background pass (asked-for repairs still run).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    #[must_use]
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// The next partition asked for, if any.
    pub(super) fn next(&self) -> Option<u32> {
        self.state().queue.front().copied()
    }

    /// Waits for a request.
    pub(super) async fn asked(&self) {
        self.wake.notified().await;
    }

    /// The partition [`next`](Self::next) gave is done.
    pub(super) fn finished(&self, round: &Round) {
        let mut st = self.state();
        if let Some(p) = st.queue.pop_front() {
            st.queued.remove(&p);
        }
        let progress = &mut st.progress;
        progress.partitions_done += 1;
        progress.partitions_incomplete += u64::from(!round.everyone);
        progress.keys_compared += round.compared;
        progress.keys_repaired += round.repaired;
        progress.bytes += round.bytes;
        if st.queue.is_empty() {
            st.progress.running = false;
            st.progress.finished_ms = crate::clock::now_ms();
            tracing::info!(
                partitions = st.progress.partitions_done,
                incomplete = st.progress.partitions_incomplete,
                repaired = st.progress.keys_repaired,
                ms = st.progress.finished_ms.saturating_sub(st.progress.started_ms),
                "repair finished"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_each_partition_once_and_ends_when_all_are_done() {
        let r = Repairs::default();
        let p = r.request(&[3, 4, 3]);
        assert!(p.running);
        assert_eq!(p.partitions_total, 2);
        assert_eq!(r.next(), Some(3));
        r.finished(&Round { everyone: true, compared: 10, repaired: 2, bytes: 100 });
        // Joining the repair under way.
        assert_eq!(r.request(&[4, 5]).partitions_total, 3);
        assert_eq!(r.next(), Some(4));
        r.finished(&Round::default());
        r.finished(&Round { everyone: true, ..Round::default() });
        let p = r.progress();
        assert!(!p.running);
        assert_eq!((p.partitions_done, p.partitions_incomplete, p.keys_repaired), (3, 1, 2));
        assert!(p.finished_ms >= p.started_ms);
        assert_eq!(r.next(), None);
        // A new request starts afresh; an empty one is done at once.
        assert_eq!(r.request(&[]).partitions_total, 0);
        assert!(!r.progress().running);
    }
}
