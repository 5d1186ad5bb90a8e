//! Memory stays proportional to the data, not to the buffers it arrived in.

mod common;

use std::io::{Read, Write};

use common::Shoal;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("number")
}

/// Values are sliced out of the connection's read buffer while a command
/// runs. A stored value must not keep that whole buffer (16 KiB or more)
/// alive: 30 000 small values arriving in 30 000 reads would then hold
/// about 500 MB.
#[test]
fn stored_values_do_not_pin_read_buffers() {
    let node = Shoal::start();
    let mut s = node.raw();
    let before = rss_kb(node.pid());
    let value = "v".repeat(64);
    let mut reply = [0u8; 5];
    for i in 0..30_000 {
        // One request per write and a wait for its reply: one read buffer each.
        let req = format!("*3\r\n$3\r\nSET\r\n${}\r\nkey:{i:08}\r\n$64\r\n{value}\r\n", 12);
        s.write_all(req.as_bytes()).expect("write");
        s.read_exact(&mut reply).expect("reply");
        assert_eq!(&reply, b"+OK\r\n");
    }
    let grown_mb = rss_kb(node.pid()).saturating_sub(before) / 1024;
    assert!(grown_mb < 150, "30 000 values of 64 bytes grew the server by {grown_mb} MB");
}
