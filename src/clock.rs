//! Wall-clock time in milliseconds since the Unix epoch: the one place the
//! node reads the clock for timestamps and expiries. Pure modules take the
//! time as an argument instead.

/// Milliseconds since the Unix epoch (0 if the clock is before it).
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
