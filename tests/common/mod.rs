//! Test harness: runs the real `shoal` binary on an ephemeral loopback port
//! with a temporary data directory, and stops it when the test ends.
//!
//! The node is started with `--port 0` (or, to restart it, on the ports it
//! had); the harness reads the ports from the node's "accepting clients on
//! ADDR" log line, so no port is ever guessed.
//! Every wait polls a condition with a deadline; nothing sleeps a fixed time
//! to let something happen.

#![allow(dead_code)]

pub mod cluster;
pub mod meter;
pub mod reply;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shoal");

/// A running node.
pub struct Shoal {
    child: Option<Child>,
    pub port: u16,
    /// Where peers reach the node.
    pub peer_port: u16,
    pub dir: PathBuf,
    /// Keeps a temporary directory alive for the node's life.
    _temp: Option<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Shoal {
    /// A fresh node with a new temporary data directory.
    pub fn start() -> Self {
        Self::start_args(&[])
    }

    /// A fresh node with extra flags.
    pub fn start_args(args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("data");
        let mut node = Self::start_in(&dir, args);
        node._temp = Some(temp);
        node
    }

    /// A node on the data directory `dir` (which outlives it).
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        Self::spawn(dir, args, &[])
    }

    /// A node with extra flags and environment variables.
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_at(dir, 0, None, args, env)
    }

    /// A node on the client port `port` (0: a free one) and, if given, the
    /// peer port `peer_port`: a restart on the ports a node had before.
    pub fn spawn_at(dir: &Path, port: u16, peer_port: Option<u16>, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("--port").arg(port.to_string());
        if let Some(peer_port) = peer_port {
            cmd.arg("--peer-port").arg(peer_port.to_string());
        }
        cmd.arg("--data-dir").arg(dir).args(args);
        // Anti-entropy off unless a test asks for it (it would repair what
        // tests of reads and hints look at).
        cmd.env_remove("RUST_LOG").env("SHOAL_ANTI_ENTROPY_INTERVAL", "0").envs(env.iter().copied());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn shoal");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let (log, tx) = (Arc::clone(&log), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.split("accepting clients on ").nth(1) {
                        let port_of = |a: &str| a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                        let port = addr.split_whitespace().next().and_then(port_of);
                        let peer =
                            line.split("peers=").nth(1).and_then(|a| a.split_whitespace().next()).and_then(port_of);
                        if let (Some(port), Some(peer)) = (port, peer) {
                            let _ = tx.send((port, peer));
                        }
                    }
                    log.lock().expect("log").push_str(&(line + "\n"));
                }
            });
        }
        let (port, peer_port) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(ports) => ports,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shoal did not start; its output:\n{}", log.lock().expect("log"));
            }
        };
        Self { child: Some(child), port, peer_port, dir: dir.to_path_buf(), _temp: None, log }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// What the node has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// A RESP2 client of the `redis` crate.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url()).expect("url").get_connection().expect("connect")
    }

    /// A RESP3 client of the `redis` crate.
    pub fn client3(&self) -> redis::Connection {
        redis::Client::open(format!("{}?protocol=resp3", self.url())).expect("url").get_connection().expect("connect")
    }

    /// A raw TCP connection with a read timeout.
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s
    }

    /// Runs redis-cli against the node and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (install redis-tools)");
        assert!(out.status.success(), "redis-cli {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `sig` (`-TERM`, `-STOP`, `-CONT`, ...) to the node process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.pid().to_string()]).status().expect("kill");
        assert!(status.success(), "kill {sig}");
    }

    /// SIGTERM, then wait (bounded) for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("-TERM");
        let mut child = self.child.take().expect("running");
        wait_for("shoal to exit", Duration::from_secs(30), || child.try_wait().expect("wait"))
    }

    /// Waits until the node has counted its keys: after a crash it serves
    /// at once and counts them again in the background (with its hash
    /// trees), so until then DBSIZE and INFO counts are partial.
    pub fn wait_counted(&self) {
        let mut c = self.client();
        wait_for("the node to count its keys", Duration::from_secs(30), || {
            (reply::info(&mut c, "antientropy", "trees_not_ready") == "0").then_some(())
        });
    }

    /// SIGKILL: no chance to flush anything.
    /// Waits until this node holds a settled ring (no change staged or in
    /// progress) of `members` members.
    pub fn wait_ring(&self, members: usize) {
        wait_for(
            &format!("the node on {} to hold a settled ring of {members}", self.port),
            Duration::from_secs(30),
            || {
                let mut c = self.client();
                let info: String = redis::cmd("INFO").arg("cluster").query(&mut c).ok()?;
                let field = |name: &str| {
                    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(|v| v.trim().to_string())
                };
                let settled = field("shoal_ring_change")? == "0" && field("shoal_ring_staged")? == "0";
                (settled && field("shoal_ring_members")? == members.to_string()).then_some(())
            },
        );
    }

    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("wait");
    }
}

impl Drop for Shoal {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies a directory tree, as a backup (or, of a running node, a
/// snapshot) would.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Sends raw bytes and reads until `expect` bytes arrive or the peer closes;
/// returns what was read.
pub fn exchange(stream: &mut TcpStream, send: &[u8], expect: usize) -> Vec<u8> {
    stream.write_all(send).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < expect {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// True once the server has closed `stream` (reads EOF or a reset).
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// xorshift64: reproducible noise without a `rand` crate.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
