//! Memory stays proportional to what clients send and store: not to the
//! buffers data arrived in, nor to the lengths clients declare, and what
//! connections held is given back when they close.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::meter::{Meter, rss};
use common::{Shoal, closed_by_server, wait_for};

const MB: u64 = 1 << 20;
/// Clients in the many-connection tests.
const CLIENTS: usize = 500;
/// A SET whose value is declared as 100 MB.
const HUGE: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$104857600\r\n";

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

/// SET then GET of a fresh key: the node serves its other clients.
fn assert_served(c: &mut redis::Connection, key: &str) {
    let _: () = redis::cmd("SET").arg(key).arg("served").query(c).expect("SET");
    let got: Option<String> = redis::cmd("GET").arg(key).query(c).expect("GET");
    assert_eq!(got.as_deref(), Some("served"), "another client is served");
}

/// Opens [`CLIENTS`] connections that each send `header`, then three times
/// a few more bytes each; checks after every step that the server has read
/// it all and still serves `other`, and at the end that its resident memory
/// is less than 100 MB above `before`. Returns the connections.
fn trickle(node: &Shoal, meter: &mut Meter, other: &mut redis::Connection, header: &[u8], before: u64) -> Wave {
    let clients_before = meter.poll().1;
    let mut conns = Vec::with_capacity(CLIENTS);
    let mut sent = 0;
    for _ in 0..CLIENTS {
        let mut s = node.raw();
        s.write_all(header).expect("write header");
        sent += header.len() as u64;
        conns.push(s);
    }
    meter.wait_read(sent);
    assert_served(other, "during-headers");
    for round in 0..3 {
        for s in &mut conns {
            s.write_all(b"0123456789").expect("write a few bytes");
            sent += 10;
        }
        meter.wait_read(sent);
        assert_served(other, &format!("during-round-{round}"));
    }
    let peak = rss(node);
    assert!(
        peak < before + 100 * MB,
        "{CLIENTS} clients sending {:?} and a few bytes grew the node from {} MB to {} MB",
        String::from_utf8_lossy(header),
        before / MB,
        peak / MB
    );
    Wave { conns, clients_before, peak }
}

/// Connections opened by [`trickle`].
struct Wave {
    conns: Vec<TcpStream>,
    /// Clients connected before the wave.
    clients_before: u64,
    /// The node's resident memory with the whole wave connected.
    peak: u64,
}

/// Closes the connections and waits until the node has seen them go and its
/// resident memory is back within `slack` of `before` (the allocator gives
/// freed pages back after a short delay, prompted by further work).
fn close_and_settle(node: &Shoal, meter: &mut Meter, other: &mut redis::Connection, wave: Wave, before: u64) {
    drop(wave.conns);
    wait_for("the trickling clients to be gone", Duration::from_secs(10), || {
        (meter.poll().1 == wave.clients_before).then_some(())
    });
    let slack = 16 * MB;
    let mut last = 0;
    let settled = wait_for_rss(Duration::from_secs(10), || {
        assert_served(other, "after-close");
        last = rss(node);
        last <= before + slack
    });
    assert!(
        settled,
        "resident memory stayed at {} MB after the clients left (it was {} MB before)",
        last / MB,
        before / MB
    );
}

/// Polls `check` for up to `timeout`; true once it holds.
fn wait_for_rss(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client that declares a 100 MB value holds only what it has sent: 500
/// of them trickling a few bytes each cost far less than 100 MB, every other
/// client is served meanwhile, and the memory is given back once they close.
#[test]
fn clients_declaring_huge_values_hold_only_what_they_sent() {
    let node = Shoal::start();
    let mut meter = Meter::new(&node);
    let mut other = node.client();
    assert_served(&mut other, "warm-up");
    let before = rss(&node);

    let wave = trickle(&node, &mut meter, &mut other, HUGE, before);
    let peak = wave.peak;
    close_and_settle(&node, &mut meter, &mut other, wave, before);

    // Freed memory is reused: a second wave costs no more than the first.
    let wave = trickle(&node, &mut meter, &mut other, HUGE, before);
    let again = wave.peak;
    assert!(again < peak + 16 * MB, "a second wave grew the node to {} MB (first: {} MB)", again / MB, peak / MB);
    close_and_settle(&node, &mut meter, &mut other, wave, before);
}

/// Reads until the server closes; returns what arrived.
fn reply_then_close(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// With `requirepass` set, a client that has not authenticated gets Redis's
/// limits (CVE-2021-32675): at most 10 arguments and 16 KB per argument,
/// past which it is answered with Redis's error and disconnected. Within
/// them, 500 trickling clients still hold only what they sent.
#[test]
fn before_auth_requests_are_held_to_redis_limits() {
    let temp = tempfile::tempdir().expect("temp dir");
    let node = Shoal::spawn(&temp.path().join("data"), &[], &[("SHOAL_REQUIREPASS", "secret")]);
    let authed = || {
        let url = format!("redis://:secret@127.0.0.1:{}/", node.port);
        redis::Client::open(url).expect("url").get_connection().expect("connect with the password")
    };
    let mut meter = Meter::with(authed());
    let mut other = authed();
    assert_served(&mut other, "warm-up");
    let before = rss(&node);

    for _ in 0..CLIENTS / 5 {
        let mut s = node.raw();
        s.write_all(HUGE).expect("write");
        assert_eq!(reply_then_close(&mut s), "-ERR Protocol error: unauthenticated bulk length\r\n");
        let mut s = node.raw();
        s.write_all(b"*11\r\n").expect("write");
        assert_eq!(reply_then_close(&mut s), "-ERR Protocol error: unauthenticated multibulk length\r\n");
    }
    assert_served(&mut other, "after-refusals");

    // Within the limits: answered NOAUTH, and the connection stays.
    let mut s = node.raw();
    let ten = format!("*10\r\n$3\r\nSET\r\n{}", "$1\r\nx\r\n".repeat(9));
    s.write_all(ten.as_bytes()).expect("write");
    let mut reply = [0u8; 34];
    s.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b"-NOAUTH Authentication required.\r\n");
    s.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    assert!(!closed_by_server(&mut s), "a request within the limits keeps the connection");

    // AUTH takes effect before the rest of its pipeline is read: a 20 KB
    // value sent in the same write as AUTH is stored.
    let mut s = node.raw();
    let value = "v".repeat(20_000);
    let pipeline =
        format!("*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n{value}\r\n", value.len());
    s.write_all(pipeline.as_bytes()).expect("write");
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).expect("replies");
    assert_eq!(&reply, b"+OK\r\n+OK\r\n");

    // Clients trickling a 16 KB argument (the most allowed) hold what they sent.
    let wave = trickle(&node, &mut meter, &mut other, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16384\r\n", before);
    close_and_settle(&node, &mut meter, &mut other, wave, before);
}

/// A pipeline of 1024 GETs of a 1 MB value from a client that reads none
/// of the replies: the node writes replies out as they are encoded and
/// stops reading the client when the socket is full, so it holds about a
/// socket buffer of replies, not a gigabyte.
#[test]
fn replies_a_client_does_not_read_are_not_piled_up() {
    let node = Shoal::start();
    let mut c = node.client();
    let big = "b".repeat(1 << 20);
    let _: () = redis::cmd("SET").arg("big").arg(&big).query(&mut c).expect("SET");
    let before = rss_kb(node.pid());
    let mut hog = node.raw();
    let pipeline = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(1024);
    hog.write_all(&pipeline).expect("write the pipeline");
    // Let the node do what it will with the pipeline, serving others.
    for i in 0..20 {
        assert_served(&mut c, &format!("meanwhile:{i}"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown_mb = rss_kb(node.pid()).saturating_sub(before) / 1024;
    assert!(grown_mb < 100, "1024 unread replies of 1 MB grew the server by {grown_mb} MB");
    // The replies are all there for a client that does read them.
    let mut got = 0usize;
    let want = 1024 * (big.len() + b"$1048576\r\n\r\n".len());
    let mut buf = vec![0u8; 1 << 20];
    while got < want {
        let n = hog.read(&mut buf).expect("read the replies");
        assert!(n > 0, "closed after {got} of {want} bytes");
        got += n;
    }
    assert_eq!(got, want);
}
