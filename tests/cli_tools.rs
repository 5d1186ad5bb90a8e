//! Real Redis tools against shoal: redis-cli, redis-benchmark and the
//! Python client redis-py (through tests/redis_py_client.py).
//!
//! Every child process runs with its output sent to a file and is polled
//! with a deadline; one that overruns is killed and the test fails.

mod common;

use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{Shoal, wait_for};
use redis::Commands;

/// Longest any tool may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a finished tool run left.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!("status {:?}\n--- stdout:\n{}\n--- stderr:\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs `cmd` with `input` on its standard input (none if `None`), killing
/// it if it outlives [`TOOL_TIMEOUT`].
fn run(cmd: &mut Command, input: Option<&[u8]>) -> Run {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (out_dir.path().join("stdout"), out_dir.path().join("stderr"));
    cmd.stdout(std::fs::File::create(&out_path).expect("stdout file"));
    cmd.stderr(std::fs::File::create(&err_path).expect("stderr file"));
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
        // Dropping stdin closes it: the tool sees end of input.
    }
    let deadline = std::time::Instant::now() + TOOL_TIMEOUT;
    let status = wait_for(&format!("{cmd:?} to finish"), TOOL_TIMEOUT + Duration::from_secs(5), || {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {TOOL_TIMEOUT:?}; killed");
        }
        None
    });
    Run {
        status,
        stdout: std::fs::read_to_string(&out_path).expect("read stdout"),
        stderr: std::fs::read_to_string(&err_path).expect("read stderr"),
    }
}

/// redis-cli against `node` with `args`, feeding it `input`.
fn cli(node: &Shoal, args: &[&str], input: Option<&[u8]>) -> Run {
    let run = run(Command::new("redis-cli").args(["-p", &node.port.to_string()]).args(args), input);
    assert!(run.status.success(), "redis-cli {args:?} failed: {}", run.describe());
    run
}

#[test]
fn redis_cli_basics() {
    let node = Shoal::start();
    assert_eq!(node.cli(&["ping"]), "PONG\n");
    assert_eq!(node.cli(&["set", "greeting", "hi"]), "OK\n");
    assert_eq!(node.cli(&["get", "greeting"]), "hi\n");
    assert_eq!(node.cli(&["--no-raw", "get", "greeting"]), "\"hi\"\n");

    // nil: empty line in raw output (stdout is not a terminal), (nil) otherwise.
    assert_eq!(node.cli(&["get", "missing"]), "\n");
    assert_eq!(node.cli(&["--no-raw", "get", "missing"]), "(nil)\n");
    assert_eq!(node.cli(&["--raw", "get", "missing"]), "\n");

    assert_eq!(node.cli(&["incr", "counter"]), "1\n");
    assert_eq!(node.cli(&["--no-raw", "incr", "counter"]), "(integer) 2\n");
    assert_eq!(node.cli(&["--no-raw", "incr", "greeting"]), "(error) ERR value is not an integer or out of range\n");

    assert_eq!(node.cli(&["set", "spaced", "hello big world"]), "OK\n");
    assert_eq!(node.cli(&["get", "spaced"]), "hello big world\n");
    assert_eq!(node.cli(&["--no-raw", "get", "spaced"]), "\"hello big world\"\n");
    assert_eq!(node.cli(&["strlen", "spaced"]), "15\n");

    let info = node.cli(&["info", "server"]);
    assert!(info.contains("# Server"), "{info}");
    assert!(info.contains("redis_version:7."), "{info}");

    let hello = node.cli(&["-3", "hello", "3"]);
    let lines: Vec<&str> = hello.lines().collect();
    assert_eq!(lines[0], "server redis", "{hello}");
    assert!(lines[1].starts_with("version 7."), "{hello}");
    assert_eq!(lines[2], "proto 3", "{hello}");
    assert!(lines[3].starts_with("id "), "{hello}");
    assert_eq!(&lines[4..], ["mode standalone", "role master", "modules "], "{hello}");

    // RESP3 mode (the cli sends HELLO 3 first) can read keys.
    assert_eq!(node.cli(&["-3", "get", "greeting"]), "hi\n");
    assert_eq!(node.cli(&["-3", "--no-raw", "get", "spaced"]), "\"hello big world\"\n");
    assert_eq!(node.cli(&["-3", "--no-raw", "get", "missing"]), "(nil)\n");
    assert_eq!(node.cli(&["-3", "mget", "greeting", "missing", "counter"]), "hi\n\n2\n");

    // The data is the same through the redis crate.
    let mut c = node.client();
    let v: String = c.get("spaced").expect("get");
    assert_eq!(v, "hello big world");
}

#[test]
fn redis_cli_runs_a_script_from_stdin() {
    let node = Shoal::start();
    let script = b"SET a 1\nINCR a\nINCRBY a 40\nGET a\nGET nokey\nSET \"two words\" \"x y z\"\nGET \"two words\"\n\
                   MSET k1 v1 k2 v2\nMGET k1 k2 nokey\nDEL a k1\nEXISTS a k1 k2\nPING\n";
    let out = cli(&node, &[], Some(script));
    assert_eq!(out.stdout, "OK\n2\n42\n42\n\nOK\nx y z\nOK\nv1\nv2\n\n2\n1\nPONG\n", "{}", out.describe());

    let out = cli(&node, &["--no-raw"], Some(b"GET k2\nGET nokey\nINCR k2\nDBSIZE\n"));
    assert_eq!(
        out.stdout,
        "\"v2\"\n(nil)\n(error) ERR value is not an integer or out of range\n(integer) 2\n",
        "{}",
        out.describe()
    );

    let out = cli(&node, &["-3"], Some(b"GET k2\nHELLO 3\nGET \"two words\"\n"));
    assert!(out.stdout.starts_with("v2\nserver redis\nversion 7."), "{}", out.describe());
    assert!(out.stdout.ends_with("x y z\n"), "{}", out.describe());
}

/// Runs redis-benchmark against `node` and checks its report.
fn benchmark(node: &Shoal, pipeline: &str, requests: &str) {
    let port = node.port.to_string();
    let args = ["-p", &port, "-t", "ping,set,get,incr,mset", "-P", pipeline, "-n", requests, "-c", "20", "-q"];
    let out = run(Command::new("redis-benchmark").args(args), None);
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(out.status.success(), "redis-benchmark {args:?}: {}", out.describe());
    // Progress updates are separated by \r; each test's result line ends
    // with "requests per second".
    let results: Vec<&str> =
        out.stdout.split(['\r', '\n']).map(str::trim).filter(|l| l.contains("requests per second")).collect();
    for test in ["PING_INLINE", "SET", "GET", "INCR", "MSET (10 keys)"] {
        assert!(
            results.iter().any(|l| l.starts_with(&format!("{test}: "))),
            "no result line for {test}: {}",
            out.describe()
        );
    }
    assert!(
        results.iter().any(|l| l.starts_with("PING_MBULK: ") || l.starts_with("PING_BULK: ")),
        "no result line for PING_MBULK: {}",
        out.describe()
    );
    assert_eq!(results.len(), 6, "one result per test: {}", out.describe());
    let lower = all.to_ascii_lowercase();
    for bad in ["error", "err ", "warning", "unexpected"] {
        assert!(!lower.contains(bad), "redis-benchmark printed {bad:?}: {}", out.describe());
    }
}

#[test]
fn redis_benchmark_pipelined_and_not() {
    let node = Shoal::start();
    benchmark(&node, "16", "20000");
    let mut c = node.client();
    let pong: String = redis::cmd("PING").query(&mut c).expect("ping after benchmark");
    assert_eq!(pong, "PONG");
    let counter: String = c.get("counter:__rand_int__").expect("get counter");
    let n: i64 = counter.parse().unwrap_or_else(|_| panic!("INCR's counter holds an integer: {counter:?}"));
    assert!(n > 0, "{n}");
    let key: String = c.get("key:__rand_int__").expect("get SET's key");
    assert!(!key.is_empty());

    benchmark(&node, "1", "5000");
    let after: i64 = c.get("counter:__rand_int__").expect("get counter");
    assert!(after > n, "the second run incremented the counter: {n} -> {after}");
    let _: () = c.set("still", "works").expect("set");
    let v: String = c.get("still").expect("get");
    assert_eq!(v, "works");
}

#[test]
fn redis_py_client() {
    let node = Shoal::start();
    let out = run(
        Command::new("python3")
            .arg("tests/redis_py_client.py")
            .arg(node.port.to_string())
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        None,
    );
    assert!(out.status.success(), "redis-py checks failed: {}", out.describe());
    assert!(out.stdout.lines().any(|l| l.ends_with(" passed, 0 failed") && !l.starts_with("0 ")), "{}", out.describe());
}
