//! Bad input over real sockets: malformed RESP, oversized and absurd
//! declarations, query-buffer overflow, HTTP sent to the client port,
//! `maxclients`, inline commands, deep pipelines and random garbage. After
//! each, the node must still serve its other clients, with Redis's wording.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::meter::{Meter, proc_status};
use common::{Shoal, XorShift, closed_by_server, exchange, wait_for};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(5);
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PONG: &[u8] = b"+PONG\r\n";

/// A node with `SHOAL_*` environment variables.
fn start_env(env: &[(&str, &str)]) -> (Shoal, tempfile::TempDir) {
    let temp = tempfile::tempdir().expect("temp dir");
    let node = Shoal::spawn(&temp.path().join("data"), &[], env);
    (node, temp)
}

/// A raw connection whose reads give up after `WAIT`.
fn raw(node: &Shoal) -> TcpStream {
    let s = node.raw();
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    s.set_write_timeout(Some(WAIT)).expect("write timeout");
    s
}

/// Reads until the server closes the connection (EOF or reset) or nothing
/// arrives for `WAIT`; returns what arrived and whether it was closed.
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return (got, false),
            Err(_) => return (got, true),
        }
    }
}

/// Sends `send` and expects exactly `reply`, then the connection closed.
fn expect_reply_and_close(s: &mut TcpStream, send: &[u8], reply: &[u8]) {
    s.write_all(send).expect("write");
    let (got, closed) = read_to_close(s);
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(reply), "reply to {send:?}");
    assert!(closed, "the server closes the connection after replying to {send:?}");
}

/// Asserts the server has not closed `s`: no EOF or reset within 300 ms.
/// Called once the server has provably read the request (see [`Meter`]),
/// so a close for it would already be under way.
fn assert_open(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_millis(300))).expect("read timeout");
    assert!(!closed_by_server(s), "{what}: the connection must stay open");
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
}

/// PING on a fresh raw connection and on a `redis` crate client.
fn assert_served(node: &Shoal) {
    let mut s = raw(node);
    assert_eq!(exchange(&mut s, PING, PONG.len()), PONG, "a fresh client is served");
    let pong: String = redis::cmd("PING").query(&mut node.client()).expect("ping");
    assert_eq!(pong, "PONG");
}

/// SET then GET of a fresh key on a new client.
fn assert_set_get(node: &Shoal, key: &str, value: &str) {
    let mut c = node.client();
    let _: () = redis::cmd("SET").arg(key).arg(value).query(&mut c).expect("set");
    let got: Option<String> = redis::cmd("GET").arg(key).query(&mut c).expect("get");
    assert_eq!(got.as_deref(), Some(value));
}

/// RESP multibulk encoding of one request.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Memory of the node: resident (VmRSS) and mapped (VmSize).
#[derive(Clone, Copy, Debug)]
struct Mem {
    rss: u64,
    size: u64,
}

impl Mem {
    fn of(node: &Shoal) -> Self {
        Self { rss: proc_status(node.pid(), "VmRSS"), size: proc_status(node.pid(), "VmSize") }
    }

    /// Resident memory grew by less than 50 MB. The mapped size must not
    /// jump either: a buffer sized by a declared length is mapped lazily and
    /// would not show in VmRSS until written. Its bound leaves room for a
    /// few new 64 MB malloc arenas.
    fn assert_bounded_since(self, before: Self, what: &str) {
        assert!(self.rss < before.rss + (50 << 20), "{what}: VmRSS grew from {} to {} bytes", before.rss, self.rss);
        assert!(
            self.size < before.size + (256 << 20),
            "{what}: VmSize grew from {} to {} bytes",
            before.size,
            self.size
        );
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; the harness reaps only on drop.
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("State:") && !l.contains("zombie")))
}

#[test]
fn malformed_resp_gets_redis_error_and_close_others_unaffected() {
    let node = Shoal::start();
    let mut other = raw(&node);
    assert_eq!(exchange(&mut other, PING, PONG.len()), PONG, "before");

    let mut bad = raw(&node);
    expect_reply_and_close(&mut bad, b"*2\r\n+foo\r\n", b"-ERR Protocol error: expected '$', got '+'\r\n");

    assert_eq!(exchange(&mut other, PING, PONG.len()), PONG, "the other client, after");
    // A bulk not followed by CRLF is refused too.
    let mut bad = raw(&node);
    expect_reply_and_close(
        &mut bad,
        b"*1\r\n$1\r\nab\r\n",
        b"-ERR Protocol error: expected CRLF after bulk string\r\n",
    );
    assert_served(&node);
}

#[test]
fn negative_bulk_length_and_non_numeric_count_are_refused() {
    let node = Shoal::start();
    expect_reply_and_close(&mut raw(&node), b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n");
    expect_reply_and_close(&mut raw(&node), b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n");
    expect_reply_and_close(&mut raw(&node), b"*1x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n");
    expect_reply_and_close(&mut raw(&node), b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n");
    assert_served(&node);
}

#[test]
fn bulk_longer_than_proto_max_bulk_len_is_refused() {
    let (node, _temp) = start_env(&[("SHOAL_PROTO_MAX_BULK_LEN", "1mb")]);
    expect_reply_and_close(
        &mut raw(&node),
        b"*2\r\n$3\r\nGET\r\n$2000000\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    );
    // One byte over the limit is refused; exactly the limit is accepted.
    expect_reply_and_close(
        &mut raw(&node),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    );
    let value = vec![b'v'; 1 << 20];
    let mut s = raw(&node);
    assert_eq!(exchange(&mut s, &resp(&[b"SET", b"k", &value]), 5), b"+OK\r\n", "a bulk of exactly 1mb");
    let got: Vec<u8> = redis::cmd("GET").arg("k").query(&mut node.client()).expect("get");
    assert_eq!(got, value);
    assert_served(&node);
    drop(node);

    let node = Shoal::start();
    expect_reply_and_close(
        &mut raw(&node),
        b"*2\r\n$3\r\nGET\r\n$536870913\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_served(&node);
}

#[test]
fn absurd_multibulk_count_is_refused_and_a_huge_legal_one_allocates_nothing() {
    let node = Shoal::start();
    expect_reply_and_close(&mut raw(&node), b"*99999999999\r\n", b"-ERR Protocol error: invalid multibulk length\r\n");
    expect_reply_and_close(&mut raw(&node), b"*2147483648\r\n", b"-ERR Protocol error: invalid multibulk length\r\n");

    let mut meter = Meter::new(&node);
    let before = Mem::of(&node);
    let mut s = raw(&node);
    let send = b"*2147483647\r\n$3\r\nSET\r\n";
    s.write_all(send).expect("write");
    meter.wait_read(send.len() as u64);
    Mem::of(&node).assert_bounded_since(before, "a declared count of 2^31-1");
    assert_open(&mut s, "a legal count whose arguments have not arrived");
    let (_, clients) = meter.poll();
    assert_eq!(clients, 2, "the pending client and the meter are connected");
    assert_served(&node);
    assert_set_get(&node, "after-count", "v");
    Mem::of(&node).assert_bounded_since(before, "later");
}

#[test]
fn huge_declared_bulk_then_silence_keeps_memory_bounded() {
    let node = Shoal::start();
    let mut meter = Meter::new(&node);
    let before = Mem::of(&node);
    let mut s = raw(&node);
    let send = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870000\r\n";
    s.write_all(send).expect("write");
    meter.wait_read(send.len() as u64);
    Mem::of(&node).assert_bounded_since(before, "a declared bulk of 536870000 bytes");
    assert_open(&mut s, "a legal bulk that has not arrived");
    assert_served(&node);

    drop(s);
    wait_for("the silent client to be gone", WAIT, || (meter.poll().1 == 1).then_some(()));
    assert!(alive(node.pid()));
    assert_served(&node);
    assert_set_get(&node, "k", "carried on");
    Mem::of(&node).assert_bounded_since(before, "later");
}

#[test]
fn query_buffer_over_its_limit_closes_the_connection() {
    const TOTAL: usize = 10 << 20;
    const CHUNK: usize = 128 << 10;
    let (node, _temp) = start_env(&[("SHOAL_CLIENT_QUERY_BUFFER_LIMIT", "2mb"), ("SHOAL_PROTO_MAX_BULK_LEN", "16mb")]);
    let mut meter = Meter::new(&node);
    let mut s = raw(&node);
    let header = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${TOTAL}\r\n");
    s.write_all(header.as_bytes()).expect("write header");
    let mut sent = header.len();
    let chunk = vec![b'x'; CHUNK];
    let mut body = 0;
    let mut write_failed = false;
    // Each chunk is written once the server has read everything before it,
    // so what sits in socket buffers stays small and the close is seen as
    // soon as it happens, not after the kernel has swallowed the rest.
    s.set_read_timeout(Some(Duration::from_millis(1))).expect("read timeout");
    while body < TOTAL {
        if s.write_all(&chunk).is_err() {
            write_failed = true;
            break;
        }
        body += CHUNK;
        sent += CHUNK;
        let mut closed = false;
        wait_for("the server to read the chunk or close", WAIT, || {
            closed = closed || closed_by_server(&mut s);
            (closed || meter.poll().0 >= sent as u64).then_some(())
        });
        if closed {
            break;
        }
    }
    assert!(body < TOTAL, "the server let a {TOTAL}-byte bulk through a 2mb query buffer limit");
    assert!(body <= 4 << 20, "closed only after {body} bytes of the bulk, limit 2mb");
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    assert!(write_failed || closed_by_server(&mut s), "the connection is closed");
    assert!(alive(node.pid()));
    assert_served(&node);
    assert_set_get(&node, "k", "small");
}

#[test]
fn http_requests_are_dropped_without_a_reply() {
    let node = Shoal::start();
    let mut other = raw(&node);
    assert_eq!(exchange(&mut other, PING, PONG.len()), PONG);
    for request in [&b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"Host: x\r\n", b"post /x HTTP/1.0\r\n\r\n"] {
        let mut s = raw(&node);
        s.write_all(request).expect("write");
        let (got, closed) = read_to_close(&mut s);
        assert!(got.is_empty(), "no reply to {request:?}, got {:?}", String::from_utf8_lossy(&got));
        assert!(closed, "the connection is closed after {request:?}");
    }
    assert_eq!(exchange(&mut other, PING, PONG.len()), PONG, "the other client, after");
    assert_served(&node);
}

#[test]
fn maxclients_refuses_the_extra_client_until_one_leaves() {
    let (node, _temp) = start_env(&[("SHOAL_MAXCLIENTS", "3")]);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = raw(&node);
            assert_eq!(exchange(&mut s, PING, PONG.len()), PONG);
            s
        })
        .collect();

    let mut fourth = raw(&node);
    let (got, closed) = read_to_close(&mut fourth);
    assert_eq!(String::from_utf8_lossy(&got), "-ERR max number of clients reached\r\n");
    assert!(closed, "the refused client is closed");
    for s in &mut held {
        assert_eq!(exchange(s, PING, PONG.len()), PONG, "held clients still served");
    }

    drop(held.pop());
    let mut fresh = wait_for("a slot to free up", WAIT, || {
        let mut s = raw(&node);
        (exchange(&mut s, PING, PONG.len()) == PONG).then_some(s)
    });
    assert_eq!(exchange(&mut fresh, PING, PONG.len()), PONG);
    let mut fifth = raw(&node);
    let (got, closed) = read_to_close(&mut fifth);
    assert_eq!(String::from_utf8_lossy(&got), "-ERR max number of clients reached\r\n", "full again");
    assert!(closed);
}

#[test]
fn inline_commands_and_their_errors() {
    let node = Shoal::start();
    let mut s = raw(&node);
    assert_eq!(exchange(&mut s, b"PING\r\n", PONG.len()), PONG);
    assert_eq!(exchange(&mut s, b"PING\n", PONG.len()), PONG, "a bare LF ends an inline request too");
    let want = b"+OK\r\n$3\r\na b\r\n";
    assert_eq!(exchange(&mut s, b"SET k \"a b\"\r\nGET k\r\n", want.len()), want);
    let want = b"$3\r\nc'd\r\n$4\r\naA\tb\r\n";
    assert_eq!(exchange(&mut s, b"ECHO 'c\\'d'\r\nECHO \"a\\x41\\tb\"\r\n", want.len()), want, "Redis's quoting");
    assert_eq!(exchange(&mut s, b"PING\r\n", PONG.len()), PONG, "the connection stays open");

    expect_reply_and_close(
        &mut raw(&node),
        b"SET k \"a b\r\n",
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    );

    // Over 64 KiB with no newline. Everything is sent before the error is
    // due, so the server has read all of it and closes cleanly.
    let mut s = raw(&node);
    let long = vec![b'a'; 64 * 1024 + 1];
    expect_reply_and_close(&mut s, &long, b"-ERR Protocol error: too big inline request\r\n");
    assert_served(&node);
}

#[test]
fn pipeline_of_500_commands_in_one_write() {
    let node = Shoal::start();
    let mut request = Vec::new();
    let mut want = Vec::new();
    for i in 0..250 {
        let (key, value) = (format!("key:{i}"), i.to_string());
        request.extend_from_slice(&resp(&[b"SET", key.as_bytes(), value.as_bytes()]));
        request.extend_from_slice(&resp(&[b"GET", key.as_bytes()]));
        want.extend_from_slice(b"+OK\r\n");
        want.extend_from_slice(format!("${}\r\n{value}\r\n", value.len()).as_bytes());
    }
    let mut s = raw(&node);
    let got = exchange(&mut s, &request, want.len());
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "500 replies, in order");
    assert_eq!(exchange(&mut s, PING, PONG.len()), PONG, "nothing extra was queued before this reply");
}

/// A pipeline's commands on one key run in the order sent, interleaved with
/// other keys' (small groups and large ones are grouped differently).
#[test]
fn pipelined_commands_on_one_key_run_in_order() {
    let node = Shoal::start();
    let mut s = raw(&node);
    for (round, rounds) in [(0, 3), (1, 12)] {
        let (a, b) = (format!("order:{round}:a"), format!("order:{round}:b"));
        let mut request = Vec::new();
        let mut want = String::new();
        let mut appended = String::new();
        for i in 1..=rounds {
            request.extend_from_slice(&resp(&[b"INCR", a.as_bytes()]));
            want.push_str(&format!(":{i}\r\n"));
            let piece = format!("{i},");
            request.extend_from_slice(&resp(&[b"APPEND", b.as_bytes(), piece.as_bytes()]));
            appended.push_str(&piece);
            want.push_str(&format!(":{}\r\n", appended.len()));
            request.extend_from_slice(&resp(&[b"GET", b.as_bytes()]));
            want.push_str(&format!("${}\r\n{appended}\r\n", appended.len()));
        }
        let got = exchange(&mut s, &request, want.len());
        assert_eq!(String::from_utf8_lossy(&got), want, "{} commands in one write", rounds * 3);
    }
}

#[test]
fn random_garbage_never_takes_the_node_down() {
    // Bytes that steer the noise into the decoder's deeper states.
    const TOKENS: &[&[u8]] =
        &[b"*", b"$", b"\r\n", b"\n", b"-1", b"0", b"3", b"99999", b"\"", b"'", b"\\x", b" ", b"*2\r\n$3\r\n"];
    let node = Shoal::start();
    let pid = node.pid();
    let mut rng = XorShift(0x5eed_cafe_f00d_d00d);
    let started = Instant::now();
    for round in 0..200 {
        let len = 1 + rng.below(512) as usize;
        let mut garbage = Vec::with_capacity(len + 16);
        while garbage.len() < len {
            if rng.below(4) == 0 {
                garbage.extend_from_slice(TOKENS[rng.below(TOKENS.len() as u64) as usize]);
            } else {
                garbage.push(rng.next() as u8);
            }
        }
        let mut s = raw(&node);
        // The server may close first and reset the connection: fine.
        let _ = s.write_all(&garbage);
        let _ = s.shutdown(Shutdown::Write);
        let (_, closed) = read_to_close(&mut s);
        assert!(closed, "round {round}: the server closes after the client's EOF; input {garbage:?}");
        assert!(started.elapsed() < Duration::from_secs(8), "200 rounds take too long (at round {round})");
    }
    assert!(alive(pid), "the node survived the garbage");
    let mut s = raw(&node);
    assert_eq!(exchange(&mut s, PING, PONG.len()), PONG);
    assert_set_get(&node, "after-garbage", "still here");
    assert!(alive(pid));
}

#[test]
fn wrong_arity_and_unknown_command_keep_the_connection() {
    let node = Shoal::start();
    let mut s = raw(&node);
    let want = b"-ERR wrong number of arguments for 'get' command\r\n";
    assert_eq!(String::from_utf8_lossy(&exchange(&mut s, b"GET\r\n", want.len())), String::from_utf8_lossy(want));
    let want = b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n";
    assert_eq!(String::from_utf8_lossy(&exchange(&mut s, b"FOO a b\r\n", want.len())), String::from_utf8_lossy(want));
    let want = b"-ERR unknown command 'FOO', with args beginning with: \r\n";
    assert_eq!(
        String::from_utf8_lossy(&exchange(&mut s, b"*1\r\n$3\r\nFOO\r\n", want.len())),
        String::from_utf8_lossy(want)
    );
    assert_eq!(exchange(&mut s, b"PING\r\n", PONG.len()), PONG, "the connection stays open");
    assert_eq!(exchange(&mut s, PING, PONG.len()), PONG);
}
