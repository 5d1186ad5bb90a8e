//! The phi-accrual failure detector (Hayashibara et al., 2004), as Akka and
//! Cassandra use it. Pure: the time is an argument, in milliseconds.
//!
//! Instead of a yes/no timeout, the detector gives a suspicion level `phi`
//! for a peer: `-log10` of the probability that a heartbeat would still
//! arrive after the silence seen so far, given the intervals between the
//! heartbeats that did arrive (a normal distribution fitted to the last
//! [`WINDOW`] of them). phi 1 means a 10% chance the peer is merely slow,
//! phi 8 a one-in-10⁸ chance; the node calls a peer down above a threshold
//! (8 by default, as Cassandra). Because the distribution adapts to what is
//! observed, a peer on a slow or jittery path is judged by its own rhythm.
//!
//! Two allowances keep phi from firing on noise, both in proportion to the
//! expected interval between heartbeats (the gossip round): the standard
//! deviation is at least half of it, and an acceptable pause of one whole
//! interval is added to the mean, so a stop-the-world pause or a late
//! gossip round is not a failure. With heartbeats every second, a silent
//! peer crosses phi 8 after about five seconds.

use std::collections::VecDeque;

/// Intervals remembered per peer.
pub const WINDOW: usize = 1000;
/// Intervals longer than this many expected intervals (a restart, a
/// partition that healed) are not samples of the peer's rhythm and are
/// left out.
pub const MAX_INTERVALS: u64 = 30;

/// One peer's heartbeat history.
#[derive(Clone, Debug)]
pub struct Detector {
    /// The interval expected between heartbeats, in milliseconds.
    expected: u64,
    intervals: VecDeque<u64>,
    sum: f64,
    sum_squares: f64,
    last: Option<u64>,
}

impl Detector {
    /// A detector for heartbeats expected every `expected` milliseconds.
    #[must_use]
    pub fn new(expected: u64) -> Self {
        Self { expected: expected.max(1), intervals: VecDeque::new(), sum: 0.0, sum_squares: 0.0, last: None }
    }

    /// Records a heartbeat arriving at `now`.
    pub fn heartbeat(&mut self, now: u64) {
        match self.last {
            None => {
                // Seed the window with the expected rhythm, so the first
                // silence is judged against something.
                self.push(self.expected);
            }
            Some(last) => {
                let interval = now.saturating_sub(last);
                if interval <= MAX_INTERVALS * self.expected {
                    self.push(interval);
                }
            }
        }
        self.last = Some(now);
    }

    fn push(&mut self, interval: u64) {
        if self.intervals.len() == WINDOW
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= old as f64;
            self.sum_squares -= (old as f64) * (old as f64);
        }
        self.intervals.push_back(interval);
        self.sum += interval as f64;
        self.sum_squares += (interval as f64) * (interval as f64);
    }

    /// When the last heartbeat arrived.
    #[must_use]
    pub fn last_heard(&self) -> Option<u64> {
        self.last
    }

    /// The suspicion level at `now`: 0 right after a heartbeat, rising
    /// with silence. A peer never heard from has phi 0 (nothing to judge).
    #[must_use]
    pub fn phi(&self, now: u64) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let n = self.intervals.len().max(1) as f64;
        let mean = self.sum / n;
        let variance = (self.sum_squares / n - mean * mean).max(0.0);
        let expected = self.expected as f64;
        let std_dev = variance.sqrt().max(expected / 2.0);
        phi(now.saturating_sub(last) as f64, mean + expected, std_dev)
    }
}

/// `-log10` of the probability that a normally distributed interval of
/// `mean` and `std_dev` exceeds `elapsed`, with the logistic approximation
/// of the normal distribution that Akka uses (accurate to about 1e-4,
/// and with no underflow to infinity).
fn phi(elapsed: f64, mean: f64, std_dev: f64) -> f64 {
    let y = (elapsed - mean) / std_dev;
    let e = (-y * (1.5976 + 0.070_566 * y * y)).exp();
    if elapsed > mean { -(e / (1.0 + e)).log10() } else { -(1.0 - 1.0 / (1.0 + e)).log10() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detector fed heartbeats every `every` ms, `count` times, from 0.
    fn steady(every: u64, count: u64) -> (Detector, u64) {
        let mut d = Detector::new(1000);
        let mut now = 0;
        for _ in 0..count {
            d.heartbeat(now);
            now += every;
        }
        (d, now - every)
    }

    #[test]
    fn phi_rises_with_silence() {
        let (d, last) = steady(1000, 100);
        let mut previous = -1.0;
        for silence in (0..20_000).step_by(250) {
            let phi = d.phi(last + silence);
            assert!(phi >= previous, "phi never falls while silence grows: {previous} then {phi} at {silence} ms");
            previous = phi;
        }
        assert!(d.phi(last + 500) < 1.0, "half a beat late is nothing");
        assert!(d.phi(last + 2_000) < 1.0, "a missed beat is nothing much");
        assert!(d.phi(last + 10_000) > 8.0, "ten silent seconds is a failure");
        let down_after = (0..20_000).step_by(100).find(|s| d.phi(last + s) > 8.0).expect("crosses 8");
        assert!((3_000..=8_000).contains(&down_after), "phi 8 after {down_after} ms of silence");
    }

    #[test]
    fn jitter_keeps_phi_low() {
        // Heartbeats between 0.2 and 1.8 s apart, as gossip through other
        // nodes delivers them.
        let mut d = Detector::new(1000);
        let mut now = 0;
        let mut rng = 42u64;
        for _ in 0..500 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let interval = 200 + rng % 1600;
            // Just before the next beat, suspicion stays low.
            assert!(d.phi(now + interval - 1) < 3.0 || d.last_heard().is_none());
            now += interval;
            d.heartbeat(now);
        }
        assert!(d.phi(now + 1_800) < 3.0, "the slowest usual gap is no failure");
        assert!(d.phi(now + 15_000) > 8.0, "a long silence still is");
    }

    #[test]
    fn recovers_when_heartbeats_return() {
        let (mut d, last) = steady(1000, 50);
        let back = last + 60_000;
        assert!(d.phi(back) > 8.0);
        d.heartbeat(back);
        assert!(d.phi(back) < 0.5, "up again at once");
        assert!(d.phi(back + 1_000) < 1.0, "and the long gap did not distort the rhythm");
    }

    #[test]
    fn the_window_is_bounded() {
        let (d, _) = steady(10, 5_000);
        assert_eq!(d.intervals.len(), WINDOW);
        assert_eq!(Detector::new(1000).phi(1_000_000), 0.0, "never heard: nothing to judge");
        let (fast, last) = {
            let mut d = Detector::new(100);
            for t in 0..100 {
                d.heartbeat(t * 100);
            }
            (d, 9_900)
        };
        assert!(fast.phi(last + 200) < 1.0 && fast.phi(last + 1_500) > 8.0, "it scales with the rhythm");
    }
}
