//! Anti-entropy: replicas that diverged without any hint to bring them
//! together converge by comparing hash trees, with no client reading the
//! keys; and SHOAL.REPAIR.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::TestCluster;
use common::reply::{call, err, fields, info, int, local_keys, ok, set, text, where_is};
use common::wait_for;
use redis::{Connection, ConnectionLike, Value};

const WAIT: Duration = Duration::from_secs(30);

/// N = 3, R = W = 2, no hints and only a key's own replicas counting, so
/// a replica that is cut off misses writes for good, but for anti-entropy
/// (every partition compared each `interval` seconds; 0: only when asked).
fn without_hints(c: &mut shoal::config::Config, interval: u64) {
    c.n = Some(3);
    c.r = Some(2);
    c.w = Some(2);
    c.hinted_handoff = false;
    c.sloppy_quorum = false;
    c.anti_entropy_interval = interval;
}

/// Waits until every node holds a live value of each of `keys`, then cuts
/// node 2 off and waits until the others see it down.
fn cut_off_node_2_once_all_hold(cluster: &TestCluster, keys: &[String]) {
    let mut c0 = cluster.client(0);
    for k in keys {
        wait_for(&format!("{k} everywhere"), WAIT, || {
            let (_, holders) = where_is(&mut c0, k);
            holders.iter().all(|h| matches!(h.copy, Ok((1, 1, _)))).then_some(())
        });
    }
    cluster.isolate(2);
    for i in 0..2 {
        let mut c = cluster.client(i);
        wait_for("node 2 to be seen down", WAIT, || (info(&mut c, "cluster", "shoal_members_up") == "2").then_some(()));
    }
}

fn field(c: &mut Connection, name: &str) -> u64 {
    info(c, "antientropy", name).parse().expect("a number")
}

/// Three nodes, N = 3, no hints: a node cut off while 300 keys were
/// written and 20 deleted ends up with exactly what the others hold, by
/// anti-entropy alone, and nothing deleted comes back.
#[test]
fn a_replica_that_missed_writes_without_hints_converges_by_itself() {
    let cluster = TestCluster::start_with(3, |c| without_hints(c, 2));
    cluster.wait_all_up(WAIT);
    let mut c0 = cluster.client(0);
    let deleted: Vec<String> = (0..20).map(|i| format!("gone:{i}")).collect();
    for k in &deleted {
        set(&mut c0, k, "soon deleted");
    }
    // Everyone holds the keys to delete before the cut.
    cut_off_node_2_once_all_hold(&cluster, &deleted);
    let keys: Vec<String> = (0..300).map(|i| format!("ae:{i}")).collect();
    for k in &keys {
        set(&mut c0, k, &format!("v {k}"));
    }
    for k in &deleted {
        let _: i64 = redis::cmd("DEL").arg(k).query(&mut c0).expect("DEL");
    }
    assert_eq!(local_keys(&mut cluster.client(2)), 20, "the cut-off node missed everything");
    let repaired_before: u64 = (0..3).map(|i| field(&mut cluster.client(i), "keys_repaired")).sum();
    cluster.heal();
    cluster.wait_all_up(WAIT);
    // No client reads a key: node 2 receives the 300 keys, and the
    // deletes (it then counts 300 keys: a deleted one is not counted).
    let mut c2 = cluster.client(2);
    wait_for("node 2 to receive every key", WAIT, || (local_keys(&mut c2) == 300).then_some(()));
    for k in keys.iter().step_by(10).chain(&deleted) {
        wait_for(&format!("{k} alike everywhere"), WAIT, || {
            let (_, holders) = where_is(&mut c0, k);
            let copies: Vec<_> = holders.iter().map(|h| h.copy.clone()).collect();
            copies.iter().all(|c| c.is_ok() && *c == copies[0]).then_some(())
        });
    }
    // The deleted keys stay deleted everywhere.
    for k in &deleted {
        let got: Option<String> = redis::cmd("GET").arg(k).query(&mut c2).expect("GET");
        assert_eq!(got, None, "{k} was deleted");
    }
    let repaired: u64 = (0..3).map(|i| field(&mut cluster.client(i), "keys_repaired")).sum();
    assert!(repaired - repaired_before >= 320, "{repaired} keys repaired");
    for i in 0..3 {
        assert_eq!(info(&mut cluster.client(i), "cluster", "shoal_read_repairs"), "0", "node {i}: no read repair");
    }
}

/// Three nodes (N = 3) comparing every partition every second, and 200
/// keys written through the first.
fn three_with_keys(prefix: &str) -> (TestCluster, Connection) {
    let cluster = TestCluster::start_with(3, |c| {
        c.n = Some(3);
        c.anti_entropy_interval = 1;
    });
    cluster.wait_all_up(WAIT);
    let mut c0 = cluster.client(0);
    for i in 0..200 {
        set(&mut c0, &format!("{prefix}:{i}"), "v");
    }
    (cluster, c0)
}

/// Equal replicas exchange only roots: once converged, the exchanges go
/// on and repair nothing.
#[test]
fn equal_replicas_repair_nothing() {
    let (cluster, _) = three_with_keys("same");
    // Every write reached all three (W = 2, the third in the background).
    for i in 0..3 {
        let mut c = cluster.client(i);
        wait_for("every copy", WAIT, || (local_keys(&mut c) == 200).then_some(()));
    }
    let mut c1 = cluster.client(1);
    let (exchanges, repaired) = (field(&mut c1, "exchanges"), field(&mut c1, "keys_repaired"));
    wait_for("more exchanges", WAIT, || (field(&mut c1, "exchanges") > exchanges + 20).then_some(()));
    assert_eq!(field(&mut c1, "keys_repaired"), repaired, "equal replicas repair nothing");
}

/// A FLUSHALL is not a versioned delete: anti-entropy compares only
/// replicas that have seen the same flushes, and never repairs across one,
/// so flushed keys stay gone.
#[test]
fn a_flushall_stays_flushed() {
    let (cluster, mut c0) = three_with_keys("flushed");
    let _: () = redis::cmd("FLUSHALL").query(&mut c0).expect("FLUSHALL");
    let mut c1 = cluster.client(1);
    let exchanges = field(&mut c1, "exchanges");
    wait_for("exchanges after the flush", WAIT, || (field(&mut c1, "exchanges") > exchanges + 100).then_some(()));
    for i in 0..3 {
        assert_eq!(local_keys(&mut cluster.client(i)), 0, "node {i} holds nothing after FLUSHALL");
    }
}

/// Tombstones and fully expired values go, in a cluster, once a round of
/// exchanges has shown every replica holds them, and not before: while a
/// replica that missed the deletes is cut off, well past the grace
/// period, every node keeps them; once it is back it receives the deletes,
/// and then every node removes each dead object exactly once, with
/// nothing deleted coming back.
#[test]
fn tombstones_go_once_every_replica_holds_them_and_not_before() {
    let cluster = TestCluster::start_with(3, |c| {
        without_hints(c, 1);
        c.tombstone_grace = 1;
    });
    cluster.wait_all_up(WAIT);
    let mut c0 = cluster.client(0);
    let deleted: Vec<String> = (0..50).map(|i| format!("del:{i}")).collect();
    let expiring: Vec<String> = (0..20).map(|i| format!("exp:{i}")).collect();
    for k in &deleted {
        set(&mut c0, k, "to delete");
    }
    for k in &expiring {
        let _: () = redis::cmd("SET").arg(k).arg("short-lived").arg("PX").arg(1500).query(&mut c0).expect("SET PX");
    }
    let all: Vec<String> = deleted.iter().chain(&expiring).cloned().collect();
    cut_off_node_2_once_all_hold(&cluster, &all);
    for k in &deleted {
        let _: i64 = redis::cmd("DEL").arg(k).query(&mut c0).expect("DEL");
    }
    // Past the expiries and the grace, with exchanges every second among
    // the two nodes that are up: nothing may go while node 2, which still
    // holds the values, is not compared.
    // (An exchange with node 2 begun before it was seen down waits out
    // its timeout first.)
    let mut c1 = cluster.client(1);
    let exchanges = field(&mut c1, "exchanges");
    std::thread::sleep(Duration::from_secs(3));
    wait_for("exchanges among the two", WAIT, || (field(&mut c1, "exchanges") > exchanges + 50).then_some(()));
    for i in 0..3 {
        let mut c = cluster.client(i);
        assert_eq!(field(&mut c, "tombstones_removed"), 0, "node {i} removed a tombstone before every replica held it");
    }
    assert_eq!(local_keys(&mut cluster.client(2)), 50, "node 2 missed the deletes");
    assert!(field(&mut c0, "tombstones") >= 50, "node 0 keeps the tombstones");

    cluster.heal();
    cluster.wait_all_up(WAIT);
    for i in 0..3 {
        let mut c = cluster.client(i);
        wait_for(&format!("node {i} to remove every dead object"), WAIT, || {
            (field(&mut c, "tombstones") == 0 && local_keys(&mut c) == 0).then_some(())
        });
    }
    // Let more rounds run: a removed object must not be copied back.
    let exchanges = field(&mut c1, "exchanges");
    wait_for("more exchanges", WAIT, || (field(&mut c1, "exchanges") > exchanges + 50).then_some(()));
    for i in 0..3 {
        let mut c = cluster.client(i);
        assert_eq!(field(&mut c, "tombstones_removed"), 70, "node {i} removes each dead object once");
        assert_eq!(local_keys(&mut c), 0, "node {i}: nothing deleted or expired came back");
        assert_eq!(field(&mut c, "tombstones"), 0);
    }
    for k in deleted.iter().chain(&expiring) {
        let got: Option<String> = redis::cmd("GET").arg(k).query(&mut cluster.client(2)).expect("GET");
        assert_eq!(got, None, "{k} stays gone");
        let (_, holders) = where_is(&mut c0, k);
        assert!(
            holders.iter().all(|h| matches!(h.copy, Ok((0, 0, _)))),
            "{k} is held nowhere: {:?}",
            holders.iter().map(|h| &h.copy).collect::<Vec<_>>()
        );
    }
}

/// `shoal repair` against a node that missed writes: it asks for a repair
/// of every partition the node replicates, prints progress until done and
/// exits 0, and the node then holds every key; against a node one of whose
/// peers is down it reports the partitions it could not compare and exits
/// non-zero.
#[test]
fn shoal_repair_repairs_now_and_says_when_it_could_not() {
    let mut cluster = TestCluster::start_with(3, |c| without_hints(c, 0));
    cluster.wait_all_up(WAIT);
    cluster.isolate(2);
    let mut c0 = cluster.client(0);
    wait_for("node 2 to be seen down", WAIT, || (info(&mut c0, "cluster", "shoal_members_up") == "2").then_some(()));
    for i in 0..100 {
        set(&mut c0, &format!("cli:{i}"), "v");
    }
    cluster.heal();
    cluster.wait_all_up(WAIT);
    let mut c2 = cluster.client(2);
    assert_eq!(local_keys(&mut c2), 0, "no background pass, no hints: node 2 missed every key");
    let out = shoal_repair(cluster.port(2));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "shoal repair failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().expect("a progress line");
    let repaired: u64 = last
        .split("repaired ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("keys repaired in {last:?}"));
    assert!(repaired >= 100, "{last}");
    assert!(last.contains(", 0 incomplete;"), "{last}");
    assert_eq!(local_keys(&mut c2), 100, "repaired before shoal repair returned");

    cluster.stop(1);
    wait_for("node 1 to be seen down", WAIT, || (info(&mut c0, "cluster", "shoal_members_up") == "2").then_some(()));
    let out = shoal_repair(cluster.port(0));
    assert!(!out.status.success(), "a repair that could not reach a replica fails");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not be compared with every replica"), "{stderr}");
}

fn shoal_repair(port: u16) -> std::process::Output {
    std::process::Command::new(common::BIN)
        .args(["repair", "--port", &port.to_string()])
        .env_remove("REDISCLI_AUTH")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run shoal repair")
}

/// A SHOAL.REPAIR progress map, by field.
type Progress = HashMap<String, Value>;

fn num(progress: &Progress, name: &str) -> u64 {
    u64::try_from(int(&progress[name])).expect("a count")
}

/// `SHOAL.REPAIR STATUS`.
fn repair_status(c: &mut Connection) -> Progress {
    fields(&call!(c, "SHOAL.REPAIR", "STATUS"))
}

/// `SHOAL.REPAIR [partition]`, then waits until the repair has finished:
/// its last progress.
fn repair(c: &mut Connection, partition: Option<u32>) -> Progress {
    let reply = match partition {
        Some(p) => call!(c, "SHOAL.REPAIR", p),
        None => call!(c, "SHOAL.REPAIR"),
    };
    let started = fields(&reply);
    assert!(num(&started, "partitions_total") > 0, "a repair of something: {reply:?}");
    wait_for("the repair to finish", WAIT, || {
        let progress = repair_status(c);
        (num(&progress, "running") == 0).then_some(progress)
    })
}

/// SHOAL.REPAIR refuses a partition that does not exist or that this node
/// does not replicate (four nodes, N = 2), starting nothing; PAUSE and
/// RESUME stop and restart the background pass.
#[test]
fn shoal_repair_refuses_what_it_cannot_repair_and_pauses_the_background() {
    let cluster = TestCluster::start_with(4, |c| {
        c.n = Some(2);
        c.r = Some(1);
        c.w = Some(1);
        c.anti_entropy_interval = 1;
    });
    cluster.wait_all_up(WAIT);
    let mut c0 = cluster.client(0);
    // A partition node 0 replicates and one it does not, from where keys
    // live.
    let (mut mine, mut other) = (None, None);
    for i in 0.. {
        let (p, holders) = where_is(&mut c0, &format!("probe:{i}"));
        let p = u32::try_from(p).expect("a partition");
        if holders.iter().any(|h| h.primary && h.port == cluster.port(0)) {
            mine.get_or_insert(p);
        } else {
            other.get_or_insert(p);
        }
        if mine.is_some() && other.is_some() {
            break;
        }
    }
    let (mine, other) = (mine.expect("mine"), other.expect("other"));
    for bad in ["64", "-1", "4294967296", "1.5", "partition", ""] {
        assert_eq!(
            err(&call!(c0, "SHOAL.REPAIR", bad)),
            "ERR SHOAL.REPAIR takes a partition (0 to 63), STATUS, PAUSE or RESUME",
            "SHOAL.REPAIR {bad:?}"
        );
    }
    assert_eq!(
        err(&call!(c0, "SHOAL.REPAIR", other)),
        format!("ERR this node is not a replica of partition {other}; ask one of its replicas")
    );
    for extra in
        [vec![mine.to_string(), "now".into()], vec!["STATUS".into(), "now".into()], vec!["PAUSE".into(), "now".into()]]
    {
        let mut cmd = redis::cmd("SHOAL.REPAIR");
        cmd.arg(&extra);
        assert_eq!(err(&c0.req_command(&cmd).expect("connection")), "ERR syntax error", "SHOAL.REPAIR {extra:?}");
    }
    // None of that started a repair.
    let status = repair_status(&mut c0);
    assert_eq!((num(&status, "running"), num(&status, "partitions_total")), (0, 0), "{status:?}");
    assert_eq!(text(&status["background"]), "running");
    // A partition it replicates.
    let done = repair(&mut c0, Some(mine));
    assert_eq!(
        (num(&done, "partitions_total"), num(&done, "partitions_done"), num(&done, "partitions_incomplete")),
        (1, 1, 0),
        "{done:?}"
    );
    // The background pass runs (every partition every second), stops
    // while paused, and goes on once resumed.
    assert_eq!(info(&mut c0, "antientropy", "background"), "running");
    let exchanges = field(&mut c0, "exchanges");
    wait_for("background exchanges", WAIT, || (field(&mut c0, "exchanges") >= exchanges + 5).then_some(()));
    ok(&call!(c0, "SHOAL.REPAIR", "pause"));
    assert_eq!(info(&mut c0, "antientropy", "background"), "paused");
    assert_eq!(text(&repair_status(&mut c0)["background"]), "paused");
    // The exchange under way, if one is, ends; then none for 2 s, when
    // running it makes about 30 a second.
    let paused = field(&mut c0, "exchanges");
    let watch = std::time::Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        assert!(field(&mut c0, "exchanges") <= paused + 1, "no background exchange while paused");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&call!(c0, "SHOAL.REPAIR", "RESUME"));
    assert_eq!(info(&mut c0, "antientropy", "background"), "running");
    let resumed = field(&mut c0, "exchanges");
    wait_for("exchanges again", WAIT, || (field(&mut c0, "exchanges") >= resumed + 5).then_some(()));
}
