//! Rate limiting for bulk background work: keys and bytes a second.

use std::time::{Duration, Instant};

use crate::shutdown::Stop;

/// Keeps bulk work (anti-entropy, ownership transfer) within its rates: after each step, waits until the
/// keys and bytes spent since the pace began fit in the time elapsed. An
/// idle spell does not bank credit beyond a second.
pub struct Pace {
    bytes_per_second: f64,
    keys_per_second: f64,
    since: Instant,
    bytes: f64,
    keys: f64,
    /// A wait ends early when the node stops.
    stop: Stop,
}

impl Pace {
    #[must_use]
    pub fn new(bytes_per_second: u64, keys_per_second: u64, stop: Stop) -> Self {
        Self {
            stop,
            bytes_per_second: bytes_per_second.max(1) as f64,
            keys_per_second: keys_per_second.max(1) as f64,
            since: Instant::now(),
            bytes: 0.0,
            keys: 0.0,
        }
    }

    /// Seconds the spending so far takes at these rates.
    fn due(&self) -> f64 {
        (self.bytes / self.bytes_per_second).max(self.keys / self.keys_per_second)
    }

    /// Counts `keys` and `bytes` more, and waits until they fit the rates
    /// (or the node stops).
    pub async fn spend(&mut self, keys: u64, bytes: u64) {
        if self.since.elapsed().as_secs_f64() > self.due() + 1.0 {
            (self.since, self.bytes, self.keys) = (Instant::now(), 0.0, 0.0);
        }
        self.bytes += bytes as f64;
        self.keys += keys as f64;
        let until = self.since + Duration::from_secs_f64(self.due());
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => {}
            () = self.stop.stopped() => {}
        }
    }
}
