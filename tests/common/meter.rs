//! Watching a node's resources from outside: its memory from
//! `/proc/<pid>/status`, and through `INFO` the bytes it has read from
//! other connections and how many clients it has.

#![allow(dead_code)]

use super::{Shoal, wait_for};
use std::time::Duration;

/// Longest a [`Meter`] waits for the server to read something.
const WAIT: Duration = Duration::from_secs(10);

/// A `kB` field of /proc/<pid>/status, in bytes.
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024
}

/// Resident memory of the node, in bytes.
pub fn rss(node: &Shoal) -> u64 {
    proc_status(node.pid(), "VmRSS")
}

/// Watches the node's `INFO` counters from a client of its own, telling
/// apart the bytes other connections sent from those of its own polls.
pub struct Meter {
    conn: redis::Connection,
    base: u64,
    per_poll: u64,
    polls: u64,
}

pub fn info_field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO has no {name}"))
}

impl Meter {
    pub fn new(node: &Shoal) -> Self {
        Self::with(node.client())
    }

    /// A meter on a connection of the caller's (one that has authenticated,
    /// say).
    pub fn with(mut conn: redis::Connection) -> Self {
        let first = Self::info(&mut conn);
        let second = Self::info(&mut conn);
        let base = info_field(&second, "total_net_input_bytes");
        let per_poll = base - info_field(&first, "total_net_input_bytes");
        Self { conn, base, per_poll, polls: 0 }
    }

    pub fn info(conn: &mut redis::Connection) -> String {
        redis::cmd("INFO").query(conn).expect("INFO")
    }

    /// (bytes read from other connections since `new`, connected clients).
    pub fn poll(&mut self) -> (u64, u64) {
        let info = Self::info(&mut self.conn);
        self.polls += 1;
        let input = info_field(&info, "total_net_input_bytes");
        let others = input.saturating_sub(self.base + self.polls * self.per_poll);
        (others, info_field(&info, "connected_clients"))
    }

    /// Waits until the server has read `bytes` from other connections.
    pub fn wait_read(&mut self, bytes: u64) {
        wait_for(&format!("the server to read {bytes} bytes"), WAIT, || (self.poll().0 >= bytes).then_some(()));
    }
}
