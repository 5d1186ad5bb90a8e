//! Anti-entropy: replicas that diverged without any hint to bring them
//! together converge by comparing hash trees, with no client reading the
//! keys; what a repair costs (requests, bytes, keys listed and moved, as
//! INFO antientropy counts them); and SHOAL.REPAIR.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::TestCluster;
use common::reply::{bulk, call, err, fields, getctx, info, int, local_keys, ok, set, text, where_is};
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

/// INFO antientropy's counters of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counters {
    exchanges: u64,
    compared: u64,
    repaired: u64,
    messages: u64,
    /// Sent and received.
    bytes: u64,
    /// Keys read from the other replica, and merged copies sent to it.
    fetched: u64,
    sent: u64,
}

impl Counters {
    fn of(c: &mut Connection) -> Self {
        Self {
            exchanges: field(c, "exchanges"),
            compared: field(c, "keys_compared"),
            repaired: field(c, "keys_repaired"),
            messages: field(c, "messages_sent"),
            bytes: field(c, "bytes_sent") + field(c, "bytes_received"),
            fetched: field(c, "keys_fetched"),
            sent: field(c, "keys_sent"),
        }
    }

    /// What grew since `before`.
    fn since(self, before: Self) -> Self {
        Self {
            exchanges: self.exchanges - before.exchanges,
            compared: self.compared - before.compared,
            repaired: self.repaired - before.repaired,
            messages: self.messages - before.messages,
            bytes: self.bytes - before.bytes,
            fetched: self.fetched - before.fetched,
            sent: self.sent - before.sent,
        }
    }
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

/// Sets every key to "`value` key", a pipeline of 1 000 at a time; every
/// write must be acknowledged.
fn write_all(c: &mut Connection, keys: &[String], value: &str) {
    for chunk in keys.chunks(1_000) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("SET").arg(k).arg(format!("{value} {k}"));
        }
        let replies: Vec<Value> = pipe.query(c).expect("every write answered");
        assert!(replies.iter().all(|r| matches!(r, Value::Okay)), "every write acknowledged: {replies:?}");
    }
}

/// Each node's own copy of `key` (holds, live values, context), in node
/// order, as SHOAL.WHERE through `c` sees them.
fn copies(cluster: &TestCluster, c: &mut Connection, key: &str) -> Vec<Result<(i64, i64, String), String>> {
    let (_, holders) = where_is(c, key);
    (0..cluster.len())
        .map(|i| {
            let h = holders.iter().find(|h| h.port == cluster.port(i)).expect("every node holds every key (N = 3)");
            h.copy.clone()
        })
        .collect()
}

fn wait_seen_up(cluster: &TestCluster, watchers: &[usize], up: u64) {
    for &i in watchers {
        let mut c = cluster.client(i);
        wait_for(&format!("node {i} to see {up} members up"), WAIT, || {
            (info(&mut c, "cluster", "shoal_members_up").parse::<u64>().ok() == Some(up)).then_some(())
        });
    }
}

fn read_repairs(cluster: &TestCluster) -> Vec<String> {
    (0..cluster.len()).map(|i| info(&mut cluster.client(i), "cluster", "shoal_read_repairs")).collect()
}

/// Replicas that hold the same keys: a repair costs one request per
/// partition and other replica (roots and branches, a few hundred bytes),
/// lists no key and repairs none.
#[test]
fn a_repair_of_equal_replicas_sends_one_request_per_partition_and_replica() {
    // Background anti-entropy off (the test cluster's default).
    let cluster = TestCluster::start_with(3, |c| c.n = Some(3));
    cluster.wait_all_up(WAIT);
    let keys: Vec<String> = (0..2_000).map(|i| format!("equal:{i}")).collect();
    write_all(&mut cluster.client(0), &keys, "v");
    for i in 0..3 {
        let mut c = cluster.client(i);
        wait_for("every copy", WAIT, || (local_keys(&mut c) == 2_000).then_some(()));
    }
    let mut c1 = cluster.client(1);
    assert_eq!(info(&mut c1, "antientropy", "background"), "off");
    let before = Counters::of(&mut c1);
    let done = repair(&mut c1, None);
    let spent = Counters::of(&mut c1).since(before);
    eprintln!("repair: {done:?}\nINFO antientropy grew by {spent:?}");
    // With N = 3 of 3 nodes, node 1 replicates every partition.
    let partitions = num(&done, "partitions_total");
    assert_eq!(partitions, 64, "{done:?}");
    assert_eq!((num(&done, "partitions_done"), num(&done, "partitions_incomplete")), (partitions, 0), "{done:?}");
    assert_eq!(text(&done["background"]), "off");
    assert_eq!(spent.exchanges, partitions * 2, "one exchange per partition and other replica: {spent:?}");
    assert_eq!(spent.messages, partitions * 2, "one request per exchange: {spent:?}");
    assert_eq!((spent.compared, spent.repaired, spent.fetched, spent.sent), (0, 0, 0, 0), "{spent:?}");
    assert_eq!((num(&done, "keys_compared"), num(&done, "keys_repaired")), (0, 0), "{done:?}");
    // Per exchange a root and 32 branches of 8 bytes (264), the request,
    // and their framing: 295 bytes measured.
    assert!(
        (partitions * 2 * 264..=partitions * 2 * 330).contains(&spent.bytes),
        "{} bytes for {partitions} partitions",
        spent.bytes
    );
    assert_eq!(num(&done, "bytes"), spent.bytes, "the progress counts the bytes INFO counts");
}

/// 100 000 keys on three replicas, 1 000 of them overwritten while the
/// third was cut off (no hints): its repair reads exactly those 1 000
/// from another replica, sends nothing, and lists only the keys of the
/// leaves they are in.
#[test]
fn a_repair_of_100_000_keys_of_which_1_000_differ_moves_only_those() {
    let cluster = TestCluster::start_with(3, |c| without_hints(c, 0));
    cluster.wait_all_up(WAIT);
    let keys: Vec<String> = (0..100_000).map(|i| format!("many:{i}")).collect();
    let mut c0 = cluster.client(0);
    let t = std::time::Instant::now();
    write_all(&mut c0, &keys, "old");
    for i in 0..3 {
        let mut c = cluster.client(i);
        wait_for("every copy", 2 * WAIT, || (local_keys(&mut c) == 100_000).then_some(()));
    }
    eprintln!("100 000 keys on three nodes in {:?}", t.elapsed());
    cluster.isolate(2);
    wait_seen_up(&cluster, &[0, 1], 2);
    // 1 %, spread over the keyspace.
    let changed: Vec<String> = keys.iter().step_by(100).cloned().collect();
    assert_eq!(changed.len(), 1_000);
    write_all(&mut c0, &changed, "new");
    cluster.heal();
    cluster.wait_all_up(WAIT);
    let mut c2 = cluster.client(2);
    // Node 2 still holds the old copies.
    for k in changed.iter().step_by(50) {
        let copies = copies(&cluster, &mut c2, k);
        assert_eq!(copies[0], copies[1], "{k}");
        assert_ne!(copies[2], copies[0], "{k}: node 2 missed the write");
    }
    let before = Counters::of(&mut c2);
    let done = repair(&mut c2, None);
    let spent = Counters::of(&mut c2).since(before);
    eprintln!("repair: {done:?}\nINFO antientropy grew by {spent:?}");
    assert_eq!((num(&done, "partitions_done"), num(&done, "partitions_incomplete")), (64, 0), "{done:?}");
    // Each of the 1 000 changed on one side (node 2's) only.
    assert_eq!(spent.repaired, 1_000, "{spent:?}");
    assert_eq!(num(&done, "keys_repaired"), 1_000, "{done:?}");
    // Read from the other replica: exactly the keys that differ; sent
    // back: none, as the other held all of each.
    assert_eq!((spent.fetched, spent.sent), (1_000, 0), "{spent:?}");
    // Requests: roots and branches from both other replicas for each of
    // the 64 partitions; from the first one compared, as every partition
    // holds some of the 1 000, the leaves of the branches that differ and
    // the keys of the leaves that differ (a page of 32 leaves, seldom
    // two); a read per key. The second compared was equal by then.
    let listing = spent.messages - spent.exchanges - spent.fetched - spent.sent;
    assert_eq!(spent.exchanges, 128, "{spent:?}");
    assert!((64 * 2..=64 * 3).contains(&listing), "{spent:?}");
    // Listed: the keys of the leaves that differ, on both sides. 64
    // partitions of 1 024 leaves hold about 1.5 keys each; a leaf with a
    // changed key holds 2.5 on average, so about 5 000 are listed (each
    // changed key at least twice), far below the 100 000.
    assert!((2_000..30_000).contains(&spent.compared), "{} keys compared", spent.compared);
    assert_eq!(num(&done, "keys_compared"), spent.compared);
    // Node 2's copies are now the other replicas' (the same context, one
    // value), with no client read before.
    assert_eq!(read_repairs(&cluster), ["0", "0", "0"]);
    for k in &changed {
        let copies = copies(&cluster, &mut c2, k);
        assert!(matches!(&copies[0], Ok((1, 1, _))), "{k}: {copies:?}");
        assert!(copies.iter().all(|c| *c == copies[0]), "{k}: {copies:?}");
    }
    // And they read as the new values, with nothing for a read to repair.
    let mut pipe = redis::pipe();
    for k in &changed {
        pipe.cmd("GET").arg(k);
    }
    let got: Vec<String> = pipe.query(&mut c2).expect("GETs");
    for (k, v) in changed.iter().zip(got) {
        assert_eq!(v, format!("new {k}"));
    }
    assert_eq!(read_repairs(&cluster), ["0", "0", "0"]);
    assert_eq!(local_keys(&mut c2), 100_000);
}

/// A value written on each side of a cut, with no context, is two
/// concurrent siblings: after one repair every replica holds both, the
/// same, and no read had to repair anything.
#[test]
fn concurrent_writes_on_both_sides_of_a_cut_end_as_the_same_siblings_everywhere() {
    // Each write below asks for W = 1.
    let cluster = TestCluster::start_with(3, |c| without_hints(c, 0));
    cluster.wait_all_up(WAIT);
    cluster.isolate(0);
    wait_seen_up(&cluster, &[0], 1);
    wait_seen_up(&cluster, &[1, 2], 2);
    let (mut c0, mut c1) = (cluster.client(0), cluster.client(1));
    bulk(&call!(c0, "SETCTX", "k", "", "A", "W", 1));
    bulk(&call!(c1, "SETCTX", "k", "", "B", "W", 1));
    // B reaches node 2 (as node 1 sees it; node 0 is cut off).
    wait_for("B on nodes 1 and 2", WAIT, || {
        let copies = copies(&cluster, &mut c1, "k");
        (matches!(&copies[1], Ok((1, 1, _))) && copies[2] == copies[1]).then_some(())
    });
    assert!(matches!(&copies(&cluster, &mut c0, "k")[0], Ok((1, 1, _))), "A on node 0");
    cluster.heal();
    cluster.wait_all_up(WAIT);
    let apart = copies(&cluster, &mut c0, "k");
    assert!(apart[0] != apart[1] && apart[1] == apart[2], "still apart after the heal: {apart:?}");
    assert_eq!(read_repairs(&cluster), ["0", "0", "0"]);
    let done = repair(&mut c0, None);
    // Node 0 took B, then sent both to node 1 and node 2: each copy
    // changed once.
    assert_eq!(num(&done, "keys_repaired"), 3, "{done:?}");
    assert_eq!(num(&done, "partitions_incomplete"), 0, "{done:?}");
    let after = copies(&cluster, &mut c0, "k");
    assert!(matches!(&after[0], Ok((1, 2, _))), "two siblings: {after:?}");
    assert!(after.iter().all(|c| *c == after[0]), "the same on every node: {after:?}");
    assert_eq!(read_repairs(&cluster), ["0", "0", "0"], "no read repaired anything");
    let mut contexts = Vec::new();
    for i in 0..3 {
        let (context, mut values) = getctx(&mut cluster.client(i), "k");
        values.sort();
        assert_eq!(values, ["A", "B"], "through node {i}");
        contexts.push(context);
    }
    assert!(contexts.iter().all(|c| *c == contexts[0]), "{contexts:?}");
    assert_eq!(read_repairs(&cluster), ["0", "0", "0"]);
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
