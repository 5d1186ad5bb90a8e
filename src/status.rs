//! `shoal status`: asks one node for `SHOAL.STATUS` and prints the cluster
//! as that node sees it, one member a line, as `nodetool status` does.
//! Its client ([`Client`]) is also what `shoal repair` asks through.
//!
//! The client is small and blocking on purpose: one connection, `AUTH` if
//! a password is given, one request, and a reader for only the RESP types
//! such a reply can hold. It speaks RESP2 (it sends no `HELLO`), where
//! SHOAL.STATUS's maps arrive flattened into arrays of pairs and doubles
//! as bulk strings; RESP3 maps and nulls are read too, should a server
//! send them. Every connect, read and write has a timeout, and every
//! length the server announces is bounded before anything is allocated.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long connecting, and each read or write, may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest line, bulk string and array the reader accepts, and how
/// deeply arrays may nest: far beyond any SHOAL.STATUS reply.
const MAX_LINE: u64 = 64 * 1024;
const MAX_BULK: usize = 16 << 20;
const MAX_ITEMS: usize = 1 << 20;
const MAX_DEPTH: usize = 8;

/// Connects to `host:port`, authenticates with `password` if given, and
/// returns SHOAL.STATUS as a table, or what went wrong, in a sentence.
pub fn run(host: &str, port: u16, password: Option<&str>) -> Result<String, String> {
    let mut client = Client::connect(host, port, password)?;
    let reply = client.ask(&[b"SHOAL.STATUS"])?;
    let status = Status::from_reply(reply).map_err(|e| format!("{}: unexpected reply: {e}", client.addr))?;
    Ok(status.table())
}

/// One connection to a node, authenticated; also what `shoal repair` asks
/// through.
pub struct Client {
    conn: BufReader<TcpStream>,
    /// `host:port`, for messages.
    pub addr: String,
}

impl Client {
    /// Connects to `host:port` and authenticates with `password` if given.
    pub fn connect(host: &str, port: u16, password: Option<&str>) -> Result<Self, String> {
        let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let stream = connect(host, port).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let mut client = Self { conn: BufReader::new(stream), addr };
        if let Some(password) = password {
            client.ask(&[b"AUTH", password.as_bytes()])?;
        }
        Ok(client)
    }

    /// Sends a request and reads its reply; an error reply is an error.
    pub fn ask(&mut self, args: &[&[u8]]) -> Result<Value, String> {
        let addr = &self.addr;
        match request(&mut self.conn, args) {
            Ok(Value::Error(e)) => Err(format!("{addr}: {e}")),
            Ok(reply) => Ok(reply),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(format!("{addr} did not answer within {} s", TIMEOUT.as_secs()))
            }
            Err(e) => Err(format!("talking to {addr}: {e}")),
        }
    }
}

fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => {
                stream.set_read_timeout(Some(TIMEOUT))?;
                stream.set_write_timeout(Some(TIMEOUT))?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address")))
}

/// Sends `args` as a multibulk request and reads the reply.
fn request(conn: &mut BufReader<TcpStream>, args: &[&[u8]]) -> io::Result<Value> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&out)?;
    read_value(conn, 0)
}

/// A reply, as far as this client needs to tell replies apart.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// One line without its CRLF.
fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
    match line.strip_suffix(b"\r\n") {
        Some(body) => Ok(body.to_vec()),
        None if line.is_empty() => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection was closed")),
        None => Err(invalid("a reply line without CRLF, or too long")),
    }
}

/// A length header: `None` for -1 (a null), else at most `max`.
fn length(text: &[u8], max: usize) -> io::Result<Option<usize>> {
    match integer(text)? {
        -1 => Ok(None),
        n => usize::try_from(n).ok().filter(|n| *n <= max).map(Some).ok_or_else(|| invalid(format!("length {n}"))),
    }
}

fn integer(text: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or_else(|| invalid("a malformed integer"))
}

fn read_value(r: &mut impl BufRead, depth: usize) -> io::Result<Value> {
    let line = read_line(r)?;
    let Some((&kind, rest)) = line.split_first() else { return Err(invalid("an empty reply line")) };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Value::Simple(text())),
        b'-' => Ok(Value::Error(text())),
        b':' => Ok(Value::Int(integer(rest)?)),
        b'_' => Ok(Value::Nil),
        b'$' => {
            let Some(n) = length(rest, MAX_BULK)? else { return Ok(Value::Nil) };
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(invalid("a bulk string without CRLF"));
            }
            data.truncate(n);
            Ok(Value::Bulk(data))
        }
        b'*' | b'%' if depth < MAX_DEPTH => {
            let Some(n) = length(rest, MAX_ITEMS)? else { return Ok(Value::Nil) };
            let count = if kind == b'%' { 2 * n } else { n };
            let items = (0..count).map(|_| read_value(r, depth + 1)).collect::<io::Result<Vec<_>>>()?;
            if kind == b'*' {
                return Ok(Value::Array(items));
            }
            let mut items = items.into_iter();
            Ok(Value::Map(std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()))
        }
        b'*' | b'%' => Err(invalid("replies nested too deeply")),
        other => Err(invalid(format!("unexpected reply type {:?}", char::from(other)))),
    }
}

/// The fields of a map reply (a flat array of pairs in RESP2), taken by
/// name.
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    pub fn of(v: Value) -> Result<Self, String> {
        let pairs = match v {
            Value::Map(pairs) => pairs,
            Value::Array(items) if items.len() % 2 == 0 => {
                let mut items = items.into_iter();
                std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
            }
            other => return Err(format!("expected a map, got {other:?}")),
        };
        pairs.into_iter().map(|(k, v)| Ok((text(k)?, v))).collect::<Result<_, String>>().map(Self)
    }

    pub fn take(&mut self, name: &str) -> Result<Value, String> {
        let at = self.0.iter().position(|(k, _)| k == name).ok_or_else(|| format!("no field {name:?}"))?;
        Ok(self.0.swap_remove(at).1)
    }

    pub fn text(&mut self, name: &str) -> Result<String, String> {
        text(self.take(name)?).map_err(|e| format!("{name}: {e}"))
    }

    pub fn int(&mut self, name: &str) -> Result<i64, String> {
        match self.take(name)? {
            Value::Int(n) => Ok(n),
            other => Err(format!("{name}: expected an integer, got {other:?}")),
        }
    }

    /// A double: a bulk string in RESP2.
    fn float(&mut self, name: &str) -> Result<f64, String> {
        match self.take(name)? {
            Value::Int(n) => Ok(n as f64),
            other => text(other)?.parse().map_err(|e| format!("{name}: {e}")),
        }
    }
}

pub fn text(v: Value) -> Result<String, String> {
    match v {
        Value::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Value::Simple(s) => Ok(s),
        other => Err(format!("expected a string, got {other:?}")),
    }
}

/// A SHOAL.STATUS reply.
#[derive(Debug, PartialEq)]
struct Status {
    /// Empty while the node has not joined a cluster yet.
    cluster: String,
    partitions: i64,
    n: i64,
    effective_n: i64,
    members: Vec<Member>,
    /// The ring's epoch, what is staged and how far the change in
    /// progress is (moves 0: none).
    ring_epoch: i64,
    staged: i64,
    change_moves: i64,
    change_moves_done: i64,
    /// This node's transfers of the partitions it gains.
    transfers: Transfers,
}

/// SHOAL.STATUS's `transfers`.
#[derive(Debug, PartialEq, Default)]
struct Transfers {
    total: i64,
    done: i64,
    bytes: i64,
    rate: i64,
    eta_seconds: i64,
    waiting: bool,
    /// Partition, source, bytes so far.
    running: Vec<(i64, String, i64)>,
}

impl Transfers {
    fn from_reply(reply: Value) -> Result<Self, String> {
        let mut f = Fields::of(reply)?;
        let running = match f.take("running")? {
            Value::Array(items) => items
                .into_iter()
                .map(|r| {
                    let mut r = Fields::of(r)?;
                    Ok((r.int("partition")?, r.text("from")?, r.int("bytes")?))
                })
                .collect::<Result<_, String>>()?,
            other => return Err(format!("running: expected an array, got {other:?}")),
        };
        Ok(Self {
            total: f.int("partitions_total")?,
            done: f.int("partitions_done")?,
            bytes: f.int("bytes")?,
            rate: f.int("bytes_per_second")?,
            eta_seconds: f.int("eta_seconds")?,
            waiting: f.int("waiting_for_members")? != 0,
            running,
        })
    }
}

#[derive(Debug, PartialEq)]
struct Member {
    id: String,
    address: String,
    peer: String,
    status: String,
    up: bool,
    phi: f64,
    /// Negative if never heard from.
    last_heard_ms: i64,
    partitions: i64,
    percent: f64,
    keys: i64,
    bytes: i64,
    /// Hints the node asked keeps for this member; 0 from a node that does
    /// not report them.
    hints: i64,
    /// How far this node's delivery of them is, while it runs.
    delivering: String,
    me: bool,
}

impl Status {
    fn from_reply(reply: Value) -> Result<Self, String> {
        let mut f = Fields::of(reply)?;
        let members = match f.take("members")? {
            Value::Array(items) => items.into_iter().map(Member::from_reply).collect::<Result<_, _>>()?,
            other => return Err(format!("members: expected an array, got {other:?}")),
        };
        Ok(Self {
            cluster: f.text("cluster")?,
            partitions: f.int("partitions")?,
            n: f.int("n")?,
            effective_n: f.int("effective_n")?,
            members,
            // Absent from a node of a build without a stored ring.
            ring_epoch: f.int("ring_epoch").unwrap_or(0),
            staged: f.int("staged").unwrap_or(0),
            change_moves: f.int("change_moves").unwrap_or(0),
            change_moves_done: f.int("change_moves_done").unwrap_or(0),
            transfers: match f.take("transfers") {
                Ok(t) => Transfers::from_reply(t)?,
                Err(_) => Transfers::default(),
            },
        })
    }

    /// The header line, then a table of the members by address.
    fn table(&self) -> String {
        let cluster = if self.cluster.is_empty() { "(none yet: joining)" } else { &self.cluster };
        let mut out = format!(
            "Cluster {cluster}  partitions {}  N {}  effective N {}\n",
            self.partitions, self.n, self.effective_n
        );
        let mut members: Vec<&Member> = self.members.iter().collect();
        members.sort_by(|a, b| a.address.cmp(&b.address).then_with(|| a.id.cmp(&b.id)));
        let header = [
            "--",
            "id",
            "address",
            "peer",
            "status",
            "phi",
            "last heard",
            "partitions",
            "owns",
            "keys",
            "bytes",
            "hints",
            "handing over",
        ];
        let rows: Vec<[String; 13]> = members
            .iter()
            .map(|m| {
                [
                    (if m.up { "UP" } else { "DN" }).to_string(),
                    m.id.clone(),
                    m.address.clone(),
                    m.peer.clone(),
                    m.status.clone(),
                    format!("{:.1}", m.phi),
                    since(m.last_heard_ms),
                    m.partitions.to_string(),
                    format!("{:.2}%", m.percent),
                    m.keys.to_string(),
                    size(m.bytes),
                    m.hints.to_string(),
                    m.delivering.clone(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let mut line = |cells: &[&str], me: bool| {
            let mut l = String::new();
            for (cell, w) in cells.iter().zip(widths) {
                let _ = write!(l, "{cell:w$}  ");
            }
            out.push_str(l.trim_end());
            out.push_str(if me { "   (this node)\n" } else { "\n" });
        };
        line(&header, false);
        for (row, m) in rows.iter().zip(&members) {
            line(&row.each_ref().map(String::as_str), m.me);
        }
        if self.ring_epoch > 0 {
            let _ = write!(out, "Ring epoch {}", self.ring_epoch);
            if self.staged > 0 {
                let _ = write!(out, "; {} change(s) staged (shoal plan shows them)", self.staged);
            }
            if self.change_moves > 0 {
                let _ = write!(
                    out,
                    "; change in progress: {} of {} partition copies done",
                    self.change_moves_done, self.change_moves
                );
            }
            out.push('\n');
        }
        let t = &self.transfers;
        if t.total > 0 {
            let eta = if t.eta_seconds < 0 { "unknown".to_string() } else { format!("{} s", t.eta_seconds) };
            let _ = write!(
                out,
                "Transfers to this node: {} of {} partitions, {} at {}/s, ETA {eta}",
                t.done,
                t.total,
                size(t.bytes),
                size(t.rate)
            );
            if t.waiting {
                out.push_str(" (waiting for every member to learn the change)");
            }
            for (p, from, bytes) in &t.running {
                let _ = write!(out, "; partition {p} from {from}: {}", size(*bytes));
            }
            out.push('\n');
        }
        out
    }
}

impl Member {
    fn from_reply(reply: Value) -> Result<Self, String> {
        let mut f = Fields::of(reply)?;
        Ok(Self {
            id: f.text("id")?,
            address: f.text("address")?,
            peer: f.text("peer")?,
            status: f.text("status")?,
            up: f.int("up")? != 0,
            phi: f.float("phi")?,
            last_heard_ms: f.int("last_heard_ms")?,
            partitions: f.int("partitions")?,
            percent: f.float("percent")?,
            keys: f.int("keys")?,
            bytes: f.int("bytes")?,
            hints: f.int("hints").unwrap_or(0),
            delivering: f.text("delivering").unwrap_or_default(),
            me: f.int("self")? != 0,
        })
    }
}

/// How long ago, in the unit that keeps the number short.
fn since(ms: i64) -> String {
    match ms {
        ..0 => "never".into(),
        0..10_000 => format!("{ms} ms"),
        10_000..600_000 => format!("{} s", ms / 1000),
        600_000..7_200_000 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}

/// Bytes in binary units, one decimal below 10.
fn size(bytes: i64) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value < 10.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A three-member SHOAL.STATUS reply as a node encodes it in RESP2.
    const REPLY: &[u8] = b"*10\r\n\
        $7\r\ncluster\r\n$16\r\n8eeade81aeb47d17\r\n\
        $10\r\npartitions\r\n:256\r\n\
        $1\r\nn\r\n:3\r\n\
        $11\r\neffective_n\r\n:3\r\n\
        $7\r\nmembers\r\n*2\r\n\
        *24\r\n$2\r\nid\r\n$16\r\nb657bb7ef7a8928a\r\n$7\r\naddress\r\n$14\r\n127.0.0.1:6380\r\n\
        $4\r\npeer\r\n$15\r\n127.0.0.1:16380\r\n$6\r\nstatus\r\n$5\r\nvalid\r\n$2\r\nup\r\n:1\r\n\
        $3\r\nphi\r\n$1\r\n0\r\n$13\r\nlast_heard_ms\r\n:0\r\n$10\r\npartitions\r\n:86\r\n\
        $7\r\npercent\r\n$5\r\n33.59\r\n$4\r\nkeys\r\n:0\r\n$5\r\nbytes\r\n:67108864\r\n$4\r\nself\r\n:1\r\n\
        *24\r\n$2\r\nid\r\n$16\r\n0a1b2c3d4e5f6071\r\n$7\r\naddress\r\n$14\r\n127.0.0.1:6379\r\n\
        $4\r\npeer\r\n$15\r\n127.0.0.1:16379\r\n$6\r\nstatus\r\n$5\r\nvalid\r\n$2\r\nup\r\n:0\r\n\
        $3\r\nphi\r\n$5\r\n12.31\r\n$13\r\nlast_heard_ms\r\n:14250\r\n$10\r\npartitions\r\n:85\r\n\
        $7\r\npercent\r\n$4\r\n33.2\r\n$4\r\nkeys\r\n:1200\r\n$5\r\nbytes\r\n:512\r\n$4\r\nself\r\n:0\r\n";

    #[test]
    fn a_status_reply_prints_as_a_table_by_address() {
        let reply = read_value(&mut &REPLY[..], 0).expect("a reply");
        let table = Status::from_reply(reply).expect("a status").table();
        let expected = "\
Cluster 8eeade81aeb47d17  partitions 256  N 3  effective N 3
--  id                address         peer             status  phi   last heard  partitions  owns    keys  bytes   hints  handing over
DN  0a1b2c3d4e5f6071  127.0.0.1:6379  127.0.0.1:16379  valid   12.3  14 s        85          33.20%  1200  512 B   0
UP  b657bb7ef7a8928a  127.0.0.1:6380  127.0.0.1:16380  valid   0.0   0 ms        86          33.59%  0     64 MiB  0   (this node)
";
        assert_eq!(table, expected);
    }

    #[test]
    fn resp3_maps_and_nulls_are_read_and_lengths_bounded() {
        let map = read_value(&mut &b"%1\r\n+a\r\n_\r\n"[..], 0).expect("a map");
        assert_eq!(map, Value::Map(vec![(Value::Simple("a".into()), Value::Nil)]));
        assert_eq!(read_value(&mut &b"$-1\r\n"[..], 0).expect("nil"), Value::Nil);
        assert!(read_value(&mut &b"$999999999999\r\n"[..], 0).is_err());
        assert!(read_value(&mut &b"*1\r\n"[..], 0).is_err(), "a truncated reply");
        assert!(read_value(&mut &"*1\r\n".repeat(20).into_bytes()[..], 0).is_err(), "nested too deeply");
        assert!(read_value(&mut &b"!3\r\nabc\r\n"[..], 0).is_err(), "an unknown type");
    }

    #[test]
    fn sizes_and_times_read_short() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(since(-1), "never");
        assert_eq!(since(250), "250 ms");
        assert_eq!(since(75_000), "75 s");
        assert_eq!(since(3_600_000), "60 min");
        assert_eq!(since(90_000_000), "25 h");
    }

    /// A one-connection server that answers each request with the next of
    /// `replies` and returns what it was sent.
    fn server(replies: &'static [&'static [u8]]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handle = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(socket.try_clone().expect("clone"));
            let mut got = Vec::new();
            for reply in replies {
                let count = read_line(&mut reader).expect("request");
                got.extend_from_slice(&count);
                let n: usize = std::str::from_utf8(&count[1..]).expect("utf-8").parse().expect("count");
                for _ in 0..n {
                    let Value::Bulk(arg) = read_value(&mut reader, 0).expect("argument") else { panic!("a bulk") };
                    got.push(b' ');
                    got.extend_from_slice(&arg);
                }
                got.push(b'\n');
                socket.write_all(reply).expect("reply");
            }
            got
        });
        (port, handle)
    }

    #[test]
    fn a_password_is_sent_first_and_error_replies_are_reported() {
        let (port, sent) = server(&[b"+OK\r\n", REPLY]);
        let table = run("127.0.0.1", port, Some("secret")).expect("a table");
        assert!(table.starts_with("Cluster 8eeade81aeb47d17"), "{table}");
        assert_eq!(sent.join().expect("server"), b"*2 AUTH secret\n*1 SHOAL.STATUS\n");

        let (port, _) = server(&[b"-NOAUTH Authentication required.\r\n"]);
        let e = run("127.0.0.1", port, None).expect_err("NOAUTH");
        assert_eq!(e, format!("127.0.0.1:{port}: NOAUTH Authentication required."));
    }

    #[test]
    fn a_closed_port_is_reported_as_such() {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let e = run("127.0.0.1", port, None).expect_err("nothing listens");
        assert!(e.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")), "{e}");
    }
}
