//! The node's one stop signal: cloned into every server, connection and
//! background task, which finish what they are doing and return once it
//! fires.

use tokio::sync::watch;

/// Fires the stop signal.
pub struct Trigger(watch::Sender<bool>);

/// Waits for the stop signal.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

/// A new signal, not yet fired.
#[must_use]
pub fn signal() -> (Trigger, Stop) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Stop(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Stop {
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the signal has fired (at once if it already has).
    pub async fn stopped(&mut self) {
        // An error means the trigger is gone, which also means stop.
        let _ = self.0.wait_for(|&stop| stop).await;
    }
}

/// Background tasks that must be done before the node goes further down:
/// spawned through the tracker, counted until they end.
#[derive(Clone, Default)]
pub struct Tracker {
    inner: std::sync::Arc<TrackerInner>,
}

#[derive(Default)]
struct TrackerInner {
    active: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Tracker {
    /// Spawns `task`, counting it until it ends.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        use std::sync::atomic::Ordering;
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        let inner = std::sync::Arc::clone(&self.inner);
        tokio::spawn(async move {
            task.await;
            if inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
                inner.idle.notify_waiters();
            }
        });
    }

    /// Tasks still running.
    #[must_use]
    pub fn active(&self) -> usize {
        self.inner.active.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until no task runs, or `limit` passes; true if none runs.
    pub async fn wait(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.inner.idle.notified();
            if self.active() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.active() == 0;
            }
        }
    }
}
