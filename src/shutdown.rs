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
