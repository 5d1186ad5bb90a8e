//! Membership with real `shoal` processes, read the way an operator reads
//! it: through `shoal status`.
//!
//! - A node killed (`kill -9`) or paused (`SIGSTOP`) is seen down by the
//!   others, and up again once it is back; writes go on meanwhile and none
//!   acknowledged is lost.
//! - A node whose data directory belongs to another cluster is refused:
//!   nothing of it enters the cluster, and it does not join it.
//! - A lone node holds every key itself (effective N 1 of N 3); once two
//!   more join, effective N is 3 everywhere and new writes have 3 replicas.
//! - `shoal status` fails clearly: no password, a wrong one, nothing
//!   listening.
//!
//! Gossip runs every 200 ms, so a silent node is judged down within a few
//! seconds; every wait is bounded.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::reply::{call, fields, get, info, int, set, where_is};
use common::{BIN, Shoal, wait_for};

const WAIT: Duration = Duration::from_secs(30);
const GOSSIP: (&str, &str) = ("SHOAL_GOSSIP_INTERVAL", "200");
const NRW: [(&str, &str); 4] = [("SHOAL_N", "3"), ("SHOAL_R", "2"), ("SHOAL_W", "2"), GOSSIP];
/// A request timeout well under the time a silent node takes to be judged
/// down (about a second at 200 ms gossip): a gossip round stalled on a
/// paused peer for the default 2 s makes healthy nodes look down (see
/// `a_paused_node_makes_no_healthy_node_look_down`).
const TIMEOUT: (&str, &str) = ("SHOAL_REQUEST_TIMEOUT", "500");

/// Runs `shoal status --port <port>` with extra flags and environment.
fn shoal_status(port: u16, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(["status", "--port", &port.to_string()])
        .args(args)
        .env_remove("REDISCLI_AUTH")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run shoal status")
}

/// What `shoal status` printed.
#[derive(Debug)]
struct Seen {
    cluster: String,
    n: usize,
    effective_n: usize,
    /// Each member's id, and whether it is UP.
    up: HashMap<String, bool>,
    /// The id of the node asked.
    me: String,
}

impl Seen {
    fn all_up(&self, count: usize) -> bool {
        self.up.len() == count && self.up.values().all(|up| *up)
    }
}

/// Asks `node` through `shoal status` and parses the table.
#[track_caller]
fn status(node: &Shoal) -> Seen {
    let out = shoal_status(node.port, &[], &[]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(out.status.success(), "shoal status failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("a header line").split_whitespace().collect();
    assert!(
        head.len() == 9 && head[0] == "Cluster" && head[2] == "partitions" && head[4] == "N" && head[6] == "effective",
        "the header line: {text}"
    );
    assert!(lines.next().is_some_and(|l| l.starts_with("--  id")), "the column names: {text}");
    let (mut up, mut me) = (HashMap::new(), None);
    for line in lines {
        if line.starts_with("Ring epoch") || line.starts_with("Transfers") {
            break;
        }
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert!(cells.len() >= 12 && (cells[0] == "UP" || cells[0] == "DN"), "a member line: {line:?} in {text}");
        up.insert(cells[1].to_string(), cells[0] == "UP");
        if line.ends_with("(this node)") {
            assert!(me.replace(cells[1].to_string()).is_none(), "one line is this node: {text}");
        }
    }
    Seen {
        cluster: head[1].to_string(),
        n: head[5].parse().expect("N"),
        effective_n: head[8].parse().expect("effective N"),
        up,
        me: me.unwrap_or_else(|| panic!("no line is this node: {text}")),
    }
}

/// Waits until `observer`'s `shoal status` shows `id` UP (`up`) or DN.
fn wait_seen(observer: &Shoal, id: &str, up: bool) -> Duration {
    let start = Instant::now();
    let word = if up { "UP" } else { "DN" };
    wait_for(&format!("the node on {} to show {id} {word}", observer.port), WAIT, || {
        (status(observer).up.get(id) == Some(&up)).then_some(())
    });
    start.elapsed()
}

/// Waits until every node shows `count` members, all UP, all in a
/// settled ring.
fn wait_all_up(nodes: &[&Shoal], count: usize) {
    for node in nodes {
        wait_for(&format!("the node on {} to show {count} members UP", node.port), WAIT, || {
            status(node).all_up(count).then_some(())
        });
        node.wait_ring(count);
    }
}

fn seeded(dir: &Path, seed: &str, env: &[(&str, &str)]) -> Shoal {
    Shoal::spawn(dir, &["--seeds", seed], env)
}

/// SETs `count` keys named `{round}-{i}` through `node`, each of which
/// must be acknowledged, and records them.
fn write_round(node: &Shoal, round: &str, count: usize, acked: &mut BTreeMap<String, String>) {
    let mut c = node.client();
    for i in 0..count {
        let (key, value) = (format!("{round}-{i}"), format!("{round} {i} via {}", node.port));
        set(&mut c, &key, &value);
        acked.insert(key, value);
    }
}

#[test]
fn a_killed_or_paused_node_is_seen_down_then_up_and_no_acknowledged_write_is_lost() {
    let temp = tempfile::tempdir().expect("temp dir");
    let env = [&NRW[..], &[TIMEOUT]].concat();
    let first = Shoal::spawn(&temp.path().join("n1"), &[], &env);
    let seed = format!("127.0.0.1:{}", first.peer_port);
    let second = seeded(&temp.path().join("n2"), &seed, &env);
    let third = seeded(&temp.path().join("n3"), &seed, &env);
    wait_all_up(&[&first, &second, &third], 3);
    let ids: Vec<String> = [&first, &second, &third].iter().map(|n| status(n).me).collect();
    let mut acked = BTreeMap::new();
    write_round(&first, "all-up", 20, &mut acked);

    // kill -9: seen down by both others; writes through either still succeed.
    let (port, peer_port, dir) = (third.port, third.peer_port, third.dir.clone());
    third.kill9();
    for observer in [&first, &second] {
        let took = wait_seen(observer, &ids[2], false);
        eprintln!("killed node seen DN by {} after {took:?}", observer.port);
    }
    write_round(&first, "killed-1", 20, &mut acked);
    write_round(&second, "killed-2", 20, &mut acked);

    // Back on its directory and ports: the same member, seen up again.
    let third = Shoal::spawn_at(&dir, port, Some(peer_port), &["--seeds", &seed], &env);
    assert_eq!(status(&third).me, ids[2], "a restart keeps the node's id");
    for observer in [&first, &second] {
        wait_seen(observer, &ids[2], true);
    }
    wait_all_up(&[&first, &second, &third], 3);

    // SIGSTOP: a silent process, seen down; SIGCONT: up again.
    second.signal("-STOP");
    for observer in [&first, &third] {
        let took = wait_seen(observer, &ids[1], false);
        eprintln!("paused node seen DN by {} after {took:?}", observer.port);
    }
    write_round(&first, "paused-1", 20, &mut acked);
    write_round(&third, "paused-3", 20, &mut acked);
    second.signal("-CONT");
    for observer in [&first, &third] {
        wait_seen(observer, &ids[1], true);
    }
    wait_all_up(&[&first, &second, &third], 3);

    for node in [&first, &second, &third] {
        let mut c = node.client();
        for (key, value) in &acked {
            assert_eq!(get(&mut c, key).as_deref(), Some(value.as_str()), "GET {key} through {}", node.port);
        }
    }
}

/// A paused peer (or one behind a partition that drops packets) holds
/// each call to it for the whole request timeout. Gossip must not wait for
/// it: were a round to stall on it, this node's own heartbeat would stop
/// rising and the others would judge it down, and it would judge down
/// every member it did not hear from meanwhile. With gossip every 200 ms
/// and the default 2 s request timeout, pausing one node of three leaves
/// the two healthy ones seeing each other up throughout.
#[test]
fn a_paused_node_makes_no_healthy_node_look_down() {
    let temp = tempfile::tempdir().expect("temp dir");
    let first = Shoal::spawn(&temp.path().join("n1"), &[], &NRW);
    let seed = format!("127.0.0.1:{}", first.peer_port);
    let second = seeded(&temp.path().join("n2"), &seed, &NRW);
    let third = seeded(&temp.path().join("n3"), &seed, &NRW);
    wait_all_up(&[&first, &second, &third], 3);
    let ids: Vec<String> = [&first, &second, &third].iter().map(|n| status(n).me).collect();
    second.signal("-STOP");
    for observer in [&first, &third] {
        wait_seen(observer, &ids[1], false);
    }
    // Ten more gossip rounds' worth of pause, so rounds stall again.
    std::thread::sleep(Duration::from_secs(2));
    second.signal("-CONT");
    for (node, healthy) in [(&first, &ids[2]), (&third, &ids[0])] {
        let log = node.log();
        let downs: Vec<&str> =
            log.lines().filter(|l| l.contains("peer down") && l.contains(healthy.as_str())).collect();
        assert!(downs.is_empty(), "the node on {} judged healthy {healthy} down:\n{}", node.port, downs.join("\n"));
    }
}

#[test]
fn a_node_whose_directory_belongs_to_another_cluster_is_refused() {
    let temp = tempfile::tempdir().expect("temp dir");
    let a1 = Shoal::spawn(&temp.path().join("a1"), &[], &[GOSSIP]);
    let a2 = seeded(&temp.path().join("a2"), &format!("127.0.0.1:{}", a1.peer_port), &[GOSSIP]);
    wait_all_up(&[&a1, &a2], 2);
    let a = status(&a1).cluster;

    // B creates a cluster of its own, stops, and restarts pointing at A.
    let b_dir = temp.path().join("b");
    let b = Shoal::spawn(&b_dir, &[], &[GOSSIP]);
    let seen = status(&b);
    let (b_id, b_cluster) = (seen.me, seen.cluster);
    assert_ne!(a, b_cluster, "two clusters");
    assert!(b.stop().success());
    let seeds = format!("127.0.0.1:{},127.0.0.1:{}", a1.peer_port, a2.peer_port);
    let b = seeded(&b_dir, &seeds, &[GOSSIP]);
    assert_eq!(status(&b).me, b_id, "B keeps its id");

    // Both of A's nodes refuse it, naming both clusters.
    for node in [&a1, &a2] {
        let refusal = format!(
            "refused a peer: another cluster: {} at 127.0.0.1:{} is in cluster {a}, {b_id} at 127.0.0.1:{} in cluster {b_cluster}",
            status(node).me,
            node.peer_port,
            b.peer_port
        );
        wait_for(&format!("the node on {} to log the refusal", node.port), WAIT, || {
            node.log().contains(&refusal).then_some(())
        });
    }
    wait_for("B to log that A refused it", WAIT, || b.log().contains("refused: another cluster").then_some(()));

    // Over two more seconds (ten gossip rounds), B never enters A, and A
    // never enters B.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for node in [&a1, &a2] {
            let seen = status(node);
            assert!(seen.up.len() == 2 && !seen.up.contains_key(&b_id), "A's view stays A: {seen:?}");
            assert_eq!(seen.cluster, a);
        }
        let seen = status(&b);
        assert_eq!((seen.cluster.as_str(), seen.up.len()), (b_cluster.as_str(), 1), "B stays in its cluster: {seen:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut c = a1.client();
    let members = common::reply::members(&mut c);
    assert!(members.iter().all(|m| common::reply::text(&m["id"]) != b_id), "SHOAL.STATUS of A: {members:?}");
    assert!(!b.log().contains("joined the cluster"), "B did not adopt A's record:\n{}", b.log());

    // A keeps serving.
    set(&mut c, "still", "serving");
    assert_eq!(get(&mut a2.client(), "still").as_deref(), Some("serving"));
    let count = a1.log().matches("refused a peer").count();
    eprintln!("the node A1 logged {count} refusals of B");
}

#[test]
fn effective_n_grows_from_one_to_n_as_nodes_join() {
    let temp = tempfile::tempdir().expect("temp dir");
    let one = Shoal::spawn(&temp.path().join("n1"), &[], &[GOSSIP]);
    let mut c = one.client();
    set(&mut c, "alone", "1");
    assert_eq!(get(&mut c, "alone").as_deref(), Some("1"));
    let seen = status(&one);
    assert_eq!((seen.n, seen.effective_n), (3, 1), "a lone node keeps its only copy: {seen:?}");
    assert_eq!(
        (info(&mut c, "cluster", "shoal_n"), info(&mut c, "cluster", "shoal_effective_n")),
        ("3".into(), "1".into())
    );
    let top = fields(&call!(c, "SHOAL.STATUS"));
    assert_eq!((int(&top["n"]), int(&top["effective_n"])), (3, 1));

    let seed = format!("127.0.0.1:{}", one.peer_port);
    let two = seeded(&temp.path().join("n2"), &seed, &[GOSSIP]);
    let three = seeded(&temp.path().join("n3"), &seed, &[GOSSIP]);
    for node in [&one, &two, &three] {
        let mut c = node.client();
        wait_for(&format!("the node on {} to reach effective N 3", node.port), WAIT, || {
            (info(&mut c, "cluster", "shoal_effective_n") == "3").then_some(())
        });
        let seen = status(node);
        assert_eq!((seen.n, seen.effective_n), (3, 3), "{seen:?}");
    }

    set(&mut c, "after", "3");
    wait_for("three replicas to hold the new write", WAIT, || {
        let (_, holders) = where_is(&mut c, "after");
        let copies = holders.iter().filter(|h| h.primary && matches!(h.copy, Ok((1, 1, _)))).count();
        (holders.iter().filter(|h| h.primary).count() == 3 && copies == 3).then_some(())
    });
}

#[test]
fn shoal_status_sends_the_password_and_says_what_failed() {
    let temp = tempfile::tempdir().expect("temp dir");
    let node = Shoal::spawn(&temp.path().join("n"), &[], &[("SHOAL_REQUIREPASS", "sesame")]);
    let fails = |out: &Output, starts: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(out.stdout.is_empty() && stderr.starts_with(starts), "{stderr:?} starts with {starts:?}");
    };
    let at = format!("shoal status: 127.0.0.1:{}: ", node.port);
    fails(&shoal_status(node.port, &[], &[]), &format!("{at}NOAUTH"));
    fails(&shoal_status(node.port, &["-a", "wrong"], &[]), &at);
    for out in [
        shoal_status(node.port, &["--password", "sesame"], &[]),
        shoal_status(node.port, &[], &[("REDISCLI_AUTH", "sesame")]),
    ] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("Cluster ") && text.contains("(this node)"), "{text}");
    }

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    fails(&shoal_status(closed, &[], &[]), &format!("shoal status: cannot connect to 127.0.0.1:{closed}: "));
}
