//! A real cluster: replication, quorums, failures, read repair.
//!
//! Most tests run several nodes in this process ([`TestCluster`]) and drive
//! them with real clients over loopback sockets; the last one runs three
//! `shoal` processes. Commands go out through `ConnectionLike::req_command`,
//! which hands back server errors as `Value::ServerError`, so an error's
//! exact text can be checked. Every wait polls with a deadline.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::cluster::TestCluster;
use common::reply::{
    Holder, array, call, err, error_text, fields, get, getctx, getctx_reply, info, int, members, ok, opt_text, set,
    setctx, text, where_is,
};
use common::{Shoal, closed_by_server, wait_for};
use md5::{Digest, Md5};
use redis::{Commands, Connection, ConnectionLike, Value};

/// Bound for every poll.
const WAIT: Duration = Duration::from_secs(10);
/// The test cluster's partition count.
const PARTITIONS: u32 = 64;

#[track_caller]
fn info_int(c: &mut Connection, section: &str, field: &str) -> i64 {
    info(c, section, field).parse().expect("numeric INFO field")
}

/// Keys this node holds itself (INFO keyspace), 0 when it holds none.
#[track_caller]
fn local_keys(c: &mut Connection) -> i64 {
    let all = text(&call!(c, "INFO", "keyspace"));
    all.lines()
        .find_map(|l| l.strip_prefix("db0:keys="))
        .map(|r| r.split(',').next().expect("keys=N").parse().expect("numeric key count"))
        .unwrap_or(0)
}

/// The partition of `key` among `PARTITIONS`: the first 64 bits of its MD5.
fn partition_of(key: &str) -> u32 {
    let digest = Md5::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> (64 - PARTITIONS.trailing_zeros())) as u32
}

/// Keys named `{prefix}{i}` until every partition has at least `per` keys.
fn covering_keys(prefix: &str, per: usize) -> Vec<String> {
    let mut counts = vec![0usize; PARTITIONS as usize];
    let mut keys = Vec::new();
    let mut i = 0;
    while counts.iter().any(|&n| n < per) {
        let key = format!("{prefix}{i}");
        counts[partition_of(&key) as usize] += 1;
        keys.push(key);
        i += 1;
    }
    keys
}

/// The index of the cluster node listening on `port`.
fn node_at(cluster: &TestCluster, port: u16) -> usize {
    (0..cluster.len()).find(|&i| cluster.port(i) == port).unwrap_or_else(|| panic!("no node on port {port}"))
}

/// Waits until every primary of `key` holds one live value, all with the
/// same non-empty context; returns that context.
#[track_caller]
fn wait_replicated(c: &mut Connection, key: &str) -> String {
    wait_for(&format!("every replica of {key} to hold it"), WAIT, || {
        let (_, nodes) = where_is(c, key);
        let copies: Vec<_> = nodes.iter().filter(|h| h.primary).map(|h| h.copy.clone()).collect();
        let first = copies.first()?.clone().ok()?;
        let all_same = copies.iter().all(|h| h.as_ref().ok() == Some(&first));
        (all_same && first.0 == 1 && first.1 == 1 && !first.2.is_empty()).then_some(first.2)
    })
}

/// Is the reply a NOQUORUM error for `needed` replicas?
fn is_noquorum(v: &Value, needed: usize) -> bool {
    error_text(v).is_some_and(|e| e.starts_with(&format!("NOQUORUM {needed} replicas needed")))
}

/// A cluster of `size` nodes whose writes reach every running node: true
/// once a SET through each running node succeeds.
#[track_caller]
fn wait_serving(cluster: &TestCluster, tag: &str) {
    cluster.wait_all_up(WAIT);
    for i in (0..cluster.len()).filter(|&i| cluster.is_running(i)) {
        let mut c = cluster.client(i);
        let key = format!("probe:{tag}:{i}");
        wait_for(&format!("node {i} to accept writes"), WAIT, || {
            matches!(call!(c, "SET", &key, "up"), Value::Okay).then_some(())
        });
    }
}

#[test]
fn a_write_on_one_node_is_read_on_every_other() {
    let cluster = TestCluster::start(3, 3, 2, 2);
    let _: () = cluster.client(0).set("greeting", "hello").expect("set");
    for i in 0..3 {
        let v: Option<String> = cluster.client(i).get("greeting").expect("get");
        assert_eq!(v.as_deref(), Some("hello"), "node {i}");
    }
}

#[test]
fn every_plain_command_through_one_node_is_seen_through_the_others() {
    let cluster = TestCluster::start(3, 3, 2, 2);
    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();

    // SET / GET.
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        set(&mut c[i], key, &format!("value of {key}"));
    }
    for (writer, key) in ["a", "b", "c"].into_iter().enumerate() {
        for (reader, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, key), Some(format!("value of {key}")), "{key} written on {writer}, read on {reader}");
        }
    }

    // MSET / MGET across many keys (every partition).
    let keys = covering_keys("m:", 1);
    let mut mset = redis::cmd("MSET");
    for k in &keys {
        mset.arg(k).arg(format!("v-{k}"));
    }
    ok(&c[1].req_command(&mset).expect("MSET"));
    let mut mget = redis::cmd("MGET");
    for k in &keys {
        mget.arg(k);
    }
    for (i, conn) in c.iter_mut().enumerate() {
        let got: Vec<Option<String>> = array(&conn.req_command(&mget).expect("MGET")).iter().map(opt_text).collect();
        let want: Vec<Option<String>> = keys.iter().map(|k| Some(format!("v-{k}"))).collect();
        assert_eq!(got, want, "MGET of {} keys on node {i}", keys.len());
    }

    // DEL and EXISTS.
    let doomed: Vec<&String> = keys.iter().take(20).collect();
    let mut del = redis::cmd("DEL");
    for k in &doomed {
        del.arg(k.as_str());
    }
    del.arg("never-written");
    assert_eq!(int(&c[2].req_command(&del).expect("DEL")), 20, "DEL counts the keys that existed");
    for (i, conn) in c.iter_mut().enumerate() {
        for k in &doomed {
            assert_eq!(int(&call!(conn, "EXISTS", k.as_str())), 0, "{k} deleted, node {i}");
            assert_eq!(get(conn, k), None, "{k} deleted, node {i}");
        }
        let kept = &keys[20];
        assert_eq!(int(&call!(conn, "EXISTS", kept, doomed[0].as_str(), kept, "a")), 3, "node {i}");
    }
    assert_eq!(int(&c[0].req_command(&del).expect("DEL")), 0, "deleted keys are gone for every node");

    // INCR through each node in turn.
    for n in 1..=30 {
        assert_eq!(int(&call!(c[n % 3], "INCR", "counter")), n as i64, "INCR number {n} on node {}", n % 3);
    }
    assert_eq!(int(&call!(c[1], "INCRBY", "counter", 70)), 100);
    assert_eq!(int(&call!(c[2], "DECR", "counter")), 99);
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(get(conn, "counter").as_deref(), Some("99"), "node {i}");
    }

    // APPEND through each node in turn.
    let mut expected = String::new();
    for (n, piece) in ["alpha", "-beta", "-gamma", "-delta", "-epsilon", "-zeta"].into_iter().enumerate() {
        expected.push_str(piece);
        assert_eq!(int(&call!(c[n % 3], "APPEND", "log", piece)), expected.len() as i64, "APPEND {piece}");
    }
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(get(conn, "log"), Some(expected.clone()), "node {i}");
        assert_eq!(int(&call!(conn, "STRLEN", "log")), expected.len() as i64, "node {i}");
    }

    // EXPIRE / TTL / PERSIST, and an expiry that runs out.
    set(&mut c[0], "ttl", "x");
    assert_eq!(int(&call!(c[1], "TTL", "ttl")), -1, "no expiry yet");
    assert_eq!(int(&call!(c[1], "EXPIRE", "ttl", 100)), 1);
    for (i, conn) in c.iter_mut().enumerate() {
        let ttl = int(&call!(conn, "TTL", "ttl"));
        assert!((95..=100).contains(&ttl), "TTL {ttl} on node {i}");
        let pttl = int(&call!(conn, "PTTL", "ttl"));
        assert!((95_000..=100_000).contains(&pttl), "PTTL {pttl} on node {i}");
    }
    assert_eq!(int(&call!(c[2], "PERSIST", "ttl")), 1);
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(int(&call!(conn, "TTL", "ttl")), -1, "persisted, node {i}");
    }
    assert_eq!(int(&call!(c[0], "PEXPIRE", "ttl", 300)), 1);
    assert_eq!(int(&call!(c[0], "TTL", "missing")), -2);
    for (i, conn) in c.iter_mut().enumerate() {
        wait_for(&format!("the key to expire on node {i}"), WAIT, || (get(conn, "ttl").is_none()).then_some(()));
        assert_eq!(int(&call!(conn, "EXISTS", "ttl")), 0, "node {i}");
        assert_eq!(int(&call!(conn, "TTL", "ttl")), -2, "node {i}");
    }
    ok(&call!(c[2], "SET", "short", "lived", "PX", 300));
    for (i, conn) in c.iter_mut().enumerate() {
        wait_for(&format!("SET PX to expire on node {i}"), WAIT, || (get(conn, "short").is_none()).then_some(()));
    }
}

#[test]
fn shoal_where_shows_the_partition_and_three_primaries_holding_one_value() {
    let cluster = TestCluster::start(3, 3, 2, 2);
    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
    let ports: BTreeSet<u16> = (0..3).map(|i| cluster.port(i)).collect();
    for (n, key) in ["where:1", "where:2", "where:3", "user:42", "x"].into_iter().enumerate() {
        set(&mut c[n % 3], key, &format!("value {n}"));
        let context = wait_replicated(&mut c[(n + 1) % 3], key);
        for (i, conn) in c.iter_mut().enumerate() {
            let (partition, nodes) = where_is(conn, key);
            assert_eq!(partition, i64::from(partition_of(key)), "{key}: partition on node {i}");
            assert_eq!(nodes.len(), 3, "{key}: 3 nodes, no fallback on node {i}: {nodes:?}");
            assert!(nodes.iter().all(|h| h.primary), "{key}: all primaries on node {i}: {nodes:?}");
            let seen: BTreeSet<u16> = nodes.iter().map(|h| h.port).collect();
            assert_eq!(seen, ports, "{key}: the primaries are the three nodes (node {i})");
            let ids: HashSet<&str> = nodes.iter().map(|h| h.id.as_str()).collect();
            assert_eq!(ids.len(), 3, "{key}: distinct ids on node {i}");
            for h in &nodes {
                assert_eq!(h.copy, Ok((1, 1, context.clone())), "{key}: node {} as seen from node {i}", h.port);
            }
        }
    }
    // A key never written: every primary answers, none holds it.
    let (partition, nodes) = where_is(&mut c[0], "never-written");
    assert_eq!(partition, i64::from(partition_of("never-written")));
    assert_eq!(nodes.len(), 3);
    for h in &nodes {
        assert_eq!(h.copy, Ok((0, 0, String::new())), "node {}", h.port);
    }
}

#[test]
fn concurrent_setctx_through_two_nodes_makes_siblings_that_a_third_resolves() {
    let cluster = TestCluster::start(3, 3, 2, 2);
    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();

    // With the empty context: two blind writes.
    setctx(&mut c[0], "blind", "", "from node 0");
    setctx(&mut c[1], "blind", "", "from node 1");
    // With a context both read.
    setctx(&mut c[2], "read", "", "original");
    let (read_ctx, values) = getctx(&mut c[0], "read");
    assert_eq!(values, ["original"]);
    let (ctx1, _) = getctx(&mut c[1], "read");
    assert_eq!(ctx1, read_ctx, "every node reports the same context");
    setctx(&mut c[0], "read", &read_ctx, "edit on node 0");
    setctx(&mut c[1], "read", &read_ctx, "edit on node 1");

    for (key, a, b) in [("blind", "from node 0", "from node 1"), ("read", "edit on node 0", "edit on node 1")] {
        let mut merged = None;
        for (i, conn) in c.iter_mut().enumerate() {
            let (ctx, mut values) = getctx(conn, key);
            values.sort();
            assert_eq!(values, [a, b], "{key}: both siblings on node {i}");
            assert!(!ctx.is_empty());
            if let Some(m) = &merged {
                assert_eq!(&ctx, m, "{key}: the same merged context on node {i}");
            }
            merged = Some(ctx);
        }
        let merged = merged.expect("context");
        // The third node resolves with the merged context.
        setctx(&mut c[2], key, &merged, &format!("{key} resolved"));
        for (i, conn) in c.iter_mut().enumerate() {
            let (_, values) = getctx(conn, key);
            assert_eq!(values, [format!("{key} resolved")], "{key}: one value on node {i}");
            assert_eq!(get(conn, key), Some(format!("{key} resolved")), "{key}: GET on node {i}");
        }
        // And every replica ends up holding just that one value.
        wait_replicated(&mut c[0], key);
    }
}

#[test]
fn one_node_of_three_down_reads_and_writes_still_succeed() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    let keys = covering_keys("down1:", 3);
    {
        let mut c0 = cluster.client(0);
        for k in keys.iter().step_by(2) {
            set(&mut c0, k, &format!("before {k}"));
        }
    }
    cluster.stop(2);
    let mut c: Vec<Connection> = (0..2).map(|i| cluster.client(i)).collect();
    // Keys written before the stop are readable on both survivors.
    for k in keys.iter().step_by(2) {
        for (i, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, k), Some(format!("before {k}")), "node {i}");
        }
    }
    // Writes through either survivor, in every partition.
    for (n, k) in keys.iter().enumerate() {
        let reply = call!(c[n % 2], "SET", k, format!("after {k}"));
        assert!(matches!(reply, Value::Okay), "SET {k} through node {} with node 2 down: {reply:?}", n % 2);
    }
    for k in &keys {
        for (i, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, k), Some(format!("after {k}")), "node {i}");
        }
    }
    for n in 1..=10 {
        assert_eq!(int(&call!(c[n % 2], "INCR", "down1:counter")), n as i64);
    }
    let (_, values) = getctx_reply(&call!(c[1], "GETCTX", &keys[0], "R", 2));
    assert_eq!(values, [format!("after {}", keys[0])]);
    let ctx = setctx(&mut c[0], "down1:ctx", "", "first");
    setctx(&mut c[1], "down1:ctx", &ctx, "second");
    assert_eq!(getctx(&mut c[0], "down1:ctx").1, ["second"]);
    assert_eq!(info_int(&mut c[0], "cluster", "shoal_members"), 3, "a stopped node stays a member");

    // The cluster-wide views skip the stopped node.
    let total = keys.len() as i64 + 2;
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(int(&call!(conn, "DBSIZE")), total, "DBSIZE on node {i} with node 2 down");
        assert_eq!(scan_all(conn, 50, Some("down1:*")).len() as i64, total, "SCAN on node {i}");
    }
    let stopped = cluster.port(2);
    for k in keys.iter().take(5) {
        let (_, nodes) = where_is(&mut c[1], k);
        assert_eq!(nodes.len(), 3);
        for h in &nodes {
            if h.port == stopped {
                assert!(h.copy.is_err(), "{k}: the stopped node cannot be asked: {h:?}");
            } else {
                assert!(matches!(&h.copy, Ok((1, 1, ctx)) if !ctx.is_empty()), "{k}: {h:?}");
            }
        }
    }
    wait_for("SHOAL.STATUS to show the stopped node unreachable", WAIT, || {
        let members = members(&mut c[0]);
        let down: Vec<String> = members.iter().filter(|m| int(&m["up"]) == 0).map(|m| text(&m["address"])).collect();
        (members.len() == 3 && down == [format!("127.0.0.1:{stopped}")]).then_some(())
    });
}

#[test]
fn two_nodes_of_three_down_writes_fail_and_no_acknowledged_write_is_lost() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    let keys = covering_keys("acked:", 2);
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    {
        let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
        for (n, k) in keys.iter().enumerate() {
            set(&mut c[n % 3], k, &format!("v {k}"));
            acked.insert(k.clone(), format!("v {k}"));
        }
    }

    // A writer keeps writing fresh keys through node 0 while the others stop.
    let both_down = Arc::new(AtomicBool::new(false));
    let finish = Arc::new(AtomicBool::new(false));
    let late_tries = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (both_down, finish, late_tries) = (Arc::clone(&both_down), Arc::clone(&finish), Arc::clone(&late_tries));
        let mut c0 = cluster.client(0);
        std::thread::spawn(move || {
            let mut results = Vec::new();
            let mut n = 0;
            while !finish.load(Ordering::SeqCst) {
                let after = both_down.load(Ordering::SeqCst);
                let key = format!("during:{n}");
                let reply = call!(c0, "SET", &key, format!("w {n}"));
                results.push((key, format!("w {n}"), after, reply));
                if after {
                    late_tries.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
            }
            results
        })
    };
    cluster.stop(1);
    cluster.stop(2);
    both_down.store(true, Ordering::SeqCst);

    // Every read and write through the survivor fails; a failed write may
    // have reached the survivor's own copy, so writes go to keys of their
    // own, never to an acknowledged one.
    let mut c0 = cluster.client(0);
    for n in 0..20 {
        let reply = call!(c0, "SET", format!("down2:{n}"), "never");
        assert!(is_noquorum(&reply, 2), "SET with two of three nodes down: {reply:?}");
    }
    for (name, cmd) in [
        ("GET", redis::cmd("GET").arg(&keys[0]).clone()),
        ("EXISTS", redis::cmd("EXISTS").arg(&keys[0]).clone()),
        ("MGET", redis::cmd("MGET").arg(&keys[0]).arg(&keys[1]).clone()),
        ("GETCTX", redis::cmd("GETCTX").arg(&keys[0]).clone()),
        ("TTL", redis::cmd("TTL").arg(&keys[0]).clone()),
        ("INCR", redis::cmd("INCR").arg("down2:counter").clone()),
        ("DEL", redis::cmd("DEL").arg("down2:0").clone()),
        ("APPEND", redis::cmd("APPEND").arg("down2:1").arg("x").clone()),
        ("MSET", redis::cmd("MSET").arg("down2:a").arg("1").arg("down2:b").arg("2").clone()),
        ("EXPIRE", redis::cmd("EXPIRE").arg("down2:2").arg(1).clone()),
        ("SETCTX", redis::cmd("SETCTX").arg("down2:ctx").arg("").arg("sibling").clone()),
        ("DELCTX", redis::cmd("DELCTX").arg("down2:ctx").arg("").clone()),
    ] {
        let reply = c0.req_command(&cmd).expect("connection");
        assert!(is_noquorum(&reply, 2), "{name} with two of three nodes down: {reply:?}");
    }
    // Let the writer try a few more with both nodes down.
    wait_for("the writer to try with both nodes down", WAIT, || {
        (late_tries.load(Ordering::SeqCst) >= 20).then_some(())
    });
    finish.store(true, Ordering::SeqCst);
    let results = writer.join().expect("writer");
    let mut late = 0;
    for (key, value, after, reply) in results {
        if after {
            late += 1;
            assert!(is_noquorum(&reply, 2), "SET {key} after both nodes stopped: {reply:?}");
        } else if matches!(reply, Value::Okay) {
            acked.insert(key, value);
        } else {
            assert!(is_noquorum(&reply, 2), "SET {key} while nodes stopped: an error other than NOQUORUM: {reply:?}");
        }
    }
    assert!(late > 0, "the writer tried writes with both nodes down");

    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_converged();
    wait_serving(&cluster, "restarted");

    // Nothing acknowledged is lost, on any node.
    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
    for (k, v) in &acked {
        for (i, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, k).as_ref(), Some(v), "acknowledged {k} read through node {i}");
        }
    }
    // And the cluster takes new writes through every node again.
    for (n, k) in keys.iter().enumerate() {
        set(&mut c[n % 3], k, "again");
        assert_eq!(get(&mut c[(n + 1) % 3], k).as_deref(), Some("again"));
    }
}

/// Three nodes with N = 3 and the given R and W, without hinted handoff:
/// a replica that missed writes keeps missing them until they are read.
fn without_hints(n: usize, r: usize, w: usize) -> TestCluster {
    TestCluster::start_with(3, |c| {
        c.n = Some(n);
        c.r = Some(r);
        c.w = Some(w);
        c.hinted_handoff = false;
    })
}

/// Writes 40 keys named `prefix:i` (value `v <key>`) through node `via`
/// while node `down` is stopped, then restarts it and waits until all are
/// up; returns the keys.
fn written_while_down(cluster: &mut TestCluster, down: usize, via: usize, prefix: &str) -> Vec<String> {
    cluster.stop(down);
    let keys: Vec<String> = (0..40).map(|i| format!("{prefix}:{i}")).collect();
    let mut c = cluster.client(via);
    for k in &keys {
        set(&mut c, k, &format!("v {k}"));
    }
    drop(c);
    cluster.restart(down);
    cluster.wait_all_up(WAIT);
    keys
}

#[test]
fn a_read_repairs_a_replica_that_missed_writes() {
    // Without hints, so that the replica that was down still lacks the
    // writes when it is read.
    let mut cluster = without_hints(3, 2, 2);
    let keys = written_while_down(&mut cluster, 2, 0, "repair");
    let mut c2 = cluster.client(2);
    let node2 = cluster.port(2);
    // Node 2 missed every write.
    for k in &keys {
        let (_, nodes) = where_is(&mut c2, k);
        let mine = nodes.iter().find(|h| h.port == node2).expect("node 2 is a primary");
        assert_eq!(mine.copy, Ok((0, 0, String::new())), "{k}: node 2 was down when it was written");
    }
    assert_eq!(info_int(&mut c2, "cluster", "shoal_read_repairs"), 0);

    for k in &keys {
        assert_eq!(get(&mut c2, k), Some(format!("v {k}")), "{k} read through the node that missed it");
    }
    for k in &keys {
        let context = wait_replicated(&mut c2, k);
        let (_, nodes) = where_is(&mut c2, k);
        assert!(nodes.iter().all(|h| h.copy == Ok((1, 1, context.clone()))), "{k}: {nodes:?}");
    }
    let repairs = info_int(&mut c2, "cluster", "shoal_read_repairs");
    assert!(repairs >= keys.len() as i64, "shoal_read_repairs {repairs}: one repair per key at least");

    // Again with node 1 missing writes, read through node 0 this time: the
    // reading node repairs a replica other than itself.
    cluster.stop(1);
    let keys: Vec<String> = (0..40).map(|i| format!("repair2:{i}")).collect();
    for k in &keys {
        set(&mut c2, k, &format!("w {k}"));
    }
    cluster.restart(1);
    cluster.wait_all_up(WAIT);
    let node1 = cluster.port(1);
    let mut c0 = cluster.client(0);
    let before = info_int(&mut c0, "cluster", "shoal_read_repairs");
    // Once node 0 reaches node 1 again (SHOAL.WHERE asks it)…
    wait_for("node 0 to reach the restarted node 1", WAIT, || {
        let (_, nodes) = where_is(&mut c0, &keys[0]);
        let theirs = nodes.iter().find(|h| h.port == node1).expect("node 1 is a primary");
        (theirs.copy == Ok((0, 0, String::new()))).then_some(())
    });
    for k in &keys {
        assert_eq!(get(&mut c0, k), Some(format!("w {k}")));
    }
    for k in &keys {
        wait_replicated(&mut c0, k);
    }
    let repairs = info_int(&mut c0, "cluster", "shoal_read_repairs") - before;
    assert!(repairs >= keys.len() as i64, "node 0 made {repairs} read repairs");

    // A replica holding an older value (not none) is repaired too.
    let keys: Vec<String> = (0..40).map(|i| format!("repair3:{i}")).collect();
    for k in &keys {
        set(&mut c0, k, "old");
        wait_replicated(&mut c0, k);
    }
    cluster.stop(2);
    for k in &keys {
        set(&mut c0, k, "new");
    }
    cluster.restart(2);
    cluster.wait_all_up(WAIT);
    let mut c2 = cluster.client(2);
    for k in &keys {
        assert_eq!(get(&mut c2, k).as_deref(), Some("new"), "{k} read through the node that holds the old value");
    }
    for k in &keys {
        wait_replicated(&mut c2, k);
    }
}

/// A read asks R replicas for their copies and the others for digests only:
/// with R = 1 the reading node reads its own copy, and where another
/// replica's digest differs the read fetches that copy and repairs.
#[test]
fn a_read_at_r_1_repairs_from_the_digests_of_the_others() {
    let mut cluster = without_hints(3, 2, 2);
    let keys = written_while_down(&mut cluster, 0, 1, "digest");
    let mut c0 = cluster.client(0);
    let node0 = cluster.port(0);
    let mine = |c: &mut Connection, k: &str| {
        let (_, nodes) = where_is(c, k);
        nodes.iter().find(|h| h.port == node0).expect("node 0 is a primary").copy.clone()
    };
    for k in &keys {
        assert_eq!(mine(&mut c0, k), Ok((0, 0, String::new())), "{k}: node 0 was down when it was written");
    }
    let before = info_int(&mut c0, "cluster", "shoal_read_repairs");
    for k in &keys {
        // R 1: node 0's own copy answers (it has none yet) ...
        let (_, values) = getctx_reply(&call!(c0, "GETCTX", k, "R", 1));
        assert!(values.is_empty() || values == [format!("v {k}")], "{k}: {values:?}");
    }
    // ... and the digests of nodes 1 and 2 bring it the value, with no
    // further read.
    for k in &keys {
        wait_for(&format!("node 0 to be repaired with {k}"), WAIT, || (mine(&mut c0, k).ok()?.0 == 1).then_some(()));
    }
    let repairs = info_int(&mut c0, "cluster", "shoal_read_repairs") - before;
    assert!(repairs >= keys.len() as i64, "node 0 made {repairs} read repairs");
    // Replicas that agree are not repaired again.
    for k in &keys {
        let (_, values) = getctx_reply(&call!(c0, "GETCTX", k, "R", 1));
        assert_eq!(values, [format!("v {k}")]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let again = info_int(&mut c0, "cluster", "shoal_read_repairs") - before;
    assert_eq!(again, repairs, "reads of replicas that agree repair nothing");
}

/// Reads until the server closes `stream`; false if it stays open.
fn server_closes(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(8))).expect("timeout");
    closed_by_server(stream)
}

/// Writes and reads through every node, and checks the membership.
#[track_caller]
fn check_serving(cluster: &TestCluster, c: &mut [Connection], round: usize) {
    for w in 0..c.len() {
        let key = format!("garbage:{round}:{w}");
        set(&mut c[w], &key, &format!("{round}/{w}"));
        for (r, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, &key), Some(format!("{round}/{w}")), "round {round}: written on {w}, read on {r}");
        }
    }
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(info_int(conn, "cluster", "shoal_members"), cluster.len() as i64, "members seen by node {i}");
    }
}

/// A varint as the peer protocol writes it (LEB128).
fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A well-formed handshake: `SHOAL`, version 1, and a member description.
fn handshake(cluster: u64, id: u64) -> Vec<u8> {
    let mut out = b"SHOAL\x02\x02".to_vec();
    out.extend_from_slice(&cluster.to_le_bytes());
    varint(&mut out, 64);
    out.extend_from_slice(&id.to_le_bytes());
    for addr in ["127.0.0.1:1", "127.0.0.1:2"] {
        varint(&mut out, addr.len() as u64);
        out.extend_from_slice(addr.as_bytes());
    }
    out
}

#[test]
fn garbage_on_the_peer_port_does_not_disturb_the_cluster() {
    let cluster = TestCluster::start(3, 3, 2, 2);
    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
    check_serving(&cluster, &mut c, 0);

    let mut noise = Vec::with_capacity(4096);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while noise.len() < 4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    noise[0] = 0xfe; // not the start of `SHOAL`
    let status = fields(&call!(c[0], "SHOAL.STATUS"));
    let cluster_id = u64::from_str_radix(&text(&status["cluster"]), 16).expect("cluster id");
    let mut wrong_version = handshake(cluster_id, 77);
    wrong_version[5..7].copy_from_slice(&[9, 9]);
    let other_cluster = handshake(cluster_id ^ 1, 78);
    let mut oversized_frame = handshake(cluster_id, 79);
    oversized_frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let mut short_frame = handshake(cluster_id, 80);
    short_frame.extend_from_slice(&[1, 0, 0, 0, 0xee]);
    let junk: [(&str, &[u8]); 6] = [
        ("HTTP", b"GET / HTTP/1.1\r\nHost: shoal\r\nUser-Agent: curl\r\n\r\n"),
        ("random bytes", &noise),
        ("SHOAL with protocol version 9 only", &wrong_version),
        ("a handshake of another cluster", &other_cluster),
        ("a handshake then an oversized frame", &oversized_frame),
        ("a handshake then a frame too short for its header", &short_frame),
    ];
    let mut round = 1;
    for (what, bytes) in junk {
        for i in 0..3 {
            let mut s = TcpStream::connect(cluster.peer_addr(i)).expect("connect to the peer port");
            // The peer may close before reading everything: a failed write is fine.
            let _ = s.write_all(bytes);
            assert!(server_closes(&mut s), "node {i} closes a connection that sent {what}");
            check_serving(&cluster, &mut c, round);
            round += 1;
        }
    }

    // A truncated handshake, then silence: the cluster keeps serving while
    // the connections hang, and after they close.
    let whole = handshake(cluster_id, 81);
    let mut hanging: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut s = TcpStream::connect(cluster.peer_addr(i)).expect("connect to the peer port");
            s.write_all(&whole[..whole.len() / 2]).expect("half a handshake");
            s
        })
        .collect();
    // Many connections in the same state, too.
    for i in 0..3 {
        for _ in 0..20 {
            let mut s = TcpStream::connect(cluster.peer_addr(i)).expect("connect");
            s.write_all(b"SHO").expect("write");
            hanging.push(s);
        }
    }
    for _ in 0..5 {
        check_serving(&cluster, &mut c, round);
        round += 1;
    }
    drop(hanging);
    for _ in 0..3 {
        check_serving(&cluster, &mut c, round);
        round += 1;
    }
    // Every node still talks to every other: a key written through each
    // node reaches all three replicas.
    for (i, conn) in c.iter_mut().enumerate() {
        let key = format!("garbage:final:{i}");
        set(conn, &key, "done");
        wait_replicated(conn, &key);
    }
}

#[test]
fn five_nodes_forward_writes_to_replicas() {
    let cluster = TestCluster::start(5, 3, 2, 2);
    let mut c: Vec<Connection> = (0..5).map(|i| cluster.client(i)).collect();
    let keys = covering_keys("fwd:", 2);
    for (n, k) in keys.iter().enumerate() {
        let reply = call!(c[n % 5], "SET", k, format!("v {k}"));
        assert!(matches!(reply, Value::Okay), "SET {k} through node {}: {reply:?}", n % 5);
    }
    for k in &keys {
        for (i, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, k), Some(format!("v {k}")), "{k} read through node {i}");
        }
    }
    // Which writes had to be forwarded: those through a node that is not
    // one of the key's primaries.
    let mut not_replica = 0;
    for (n, k) in keys.iter().enumerate() {
        let (partition, nodes) = where_is(&mut c[(n + 3) % 5], k);
        assert_eq!(partition, i64::from(partition_of(k)));
        assert_eq!(nodes.len(), 5, "{k}: the preference list names every node: {nodes:?}");
        let primaries: Vec<&Holder> = nodes.iter().filter(|h| h.primary).collect();
        assert_eq!(primaries.len(), 3, "{k}: 3 primaries: {nodes:?}");
        assert!(nodes[..3].iter().all(|h| h.primary), "{k}: primaries come first: {nodes:?}");
        assert_eq!(nodes.iter().filter(|h| !h.primary).count(), 2, "{k}: 2 fallbacks");
        let distinct: HashSet<u16> = nodes.iter().map(|h| h.port).collect();
        assert_eq!(distinct.len(), 5, "{k}: distinct nodes");
        let writer = cluster.port(n % 5);
        if !primaries.iter().any(|h| h.port == writer) {
            not_replica += 1;
        }
        let context = wait_replicated(&mut c[n % 5], k);
        let (_, nodes) = where_is(&mut c[n % 5], k);
        for h in &nodes {
            let want = if h.primary { (1, 1, context.clone()) } else { (0, 0, String::new()) };
            assert_eq!(h.copy, Ok(want), "{k}: node {} ({})", node_at(&cluster, h.port), h.primary);
        }
    }
    assert!(not_replica > 0, "some writes went through a node that is not a replica");
    let forwarded: i64 = c.iter_mut().map(|conn| info_int(conn, "cluster", "shoal_writes_forwarded")).sum();
    assert!(forwarded > 0, "shoal_writes_forwarded is 0 on every node");
    assert_eq!(forwarded, not_replica, "each write through a non-replica is forwarded once");
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(info_int(conn, "cluster", "shoal_members"), 5, "node {i}");
    }

    // Context writes are forwarded too, quorum overrides included.
    for (n, k) in keys.iter().take(40).enumerate() {
        let (read, _) = getctx_reply(&call!(c[(n + 2) % 5], "GETCTX", k, "R", 3));
        let written = text(&call!(c[n % 5], "SETCTX", k, &read, format!("ctx {k}"), "W", 3));
        for (i, conn) in c.iter_mut().enumerate() {
            // W 3: every replica holds it, so any one answer has it.
            let (ctx, values) = getctx_reply(&call!(conn, "GETCTX", k, "R", 1));
            assert_eq!(values, [format!("ctx {k}")], "{k} through node {i}");
            assert_eq!(ctx, written);
        }
        let e = err(&call!(c[n % 5], "GETCTX", k, "R", 4));
        assert!(e.contains("must be between 1 and N (3)"), "{e}");
        let e = err(&call!(c[n % 5], "SETCTX", k, "", "v", "W", 5));
        assert!(e.contains("must be between 1 and N (3)"), "{e}");
    }
}

#[test]
fn five_nodes_with_one_down_forward_around_it_and_scan_everything() {
    let mut cluster = TestCluster::start(5, 3, 2, 2);
    cluster.stop(3);
    let running = [0, 1, 2, 4];
    let mut c: Vec<Connection> = running.iter().map(|&i| cluster.client(i)).collect();
    let keys = covering_keys("fwd-down:", 2);
    for (n, k) in keys.iter().enumerate() {
        let reply = call!(c[n % 4], "SET", k, format!("v {k}"));
        assert!(matches!(reply, Value::Okay), "SET {k} through node {}: {reply:?}", running[n % 4]);
    }
    for (n, k) in keys.iter().enumerate() {
        let reply = call!(c[(n + 1) % 4], "SETCTX", format!("ctx:{k}"), "", "x");
        assert!(matches!(reply, Value::BulkString(_)), "SETCTX through node {}: {reply:?}", running[(n + 1) % 4]);
    }
    let all: BTreeSet<String> = keys.iter().cloned().chain(keys.iter().map(|k| format!("ctx:{k}"))).collect();
    for k in &keys {
        for (i, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, k), Some(format!("v {k}")), "{k} read through node {}", running[i]);
        }
    }
    let forwarded: i64 = c.iter_mut().map(|conn| info_int(conn, "cluster", "shoal_writes_forwarded")).sum();
    assert!(forwarded > 0, "some writes were forwarded");
    for (i, conn) in c.iter_mut().enumerate() {
        let node = running[i];
        wait_for(&format!("DBSIZE {} on node {node}", all.len()), WAIT, || {
            (int(&call!(conn, "DBSIZE")) == all.len() as i64).then_some(())
        });
        // A SCAN reads each partition from one replica, which may still be
        // catching up on writes acknowledged by the two others: poll until
        // complete, never accepting a key twice.
        wait_for(&format!("SCAN on node {node} to return every key"), WAIT, || {
            (scan_all(conn, 64, None) == all).then_some(())
        });
        let keys_reply: BTreeSet<String> = array(&call!(conn, "KEYS", "ctx:*")).iter().map(text).collect();
        assert_eq!(keys_reply.len(), keys.len(), "KEYS ctx:* on node {node}");
    }
}

/// Every key a full SCAN from `c` returns, checking none comes twice.
#[track_caller]
fn scan_all(c: &mut Connection, count: usize, pattern: Option<&str>) -> BTreeSet<String> {
    let mut cursor = "0".to_string();
    let mut seen = BTreeSet::new();
    let mut steps = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(&cursor).arg("COUNT").arg(count);
        if let Some(p) = pattern {
            cmd.arg("MATCH").arg(p);
        }
        let reply = c.req_command(&cmd).expect("SCAN");
        let items = array(&reply);
        assert_eq!(items.len(), 2, "SCAN is [cursor, keys]: {reply:?}");
        for k in array(&items[1]).iter().map(text) {
            assert!(seen.insert(k.clone()), "SCAN returned {k} twice");
        }
        cursor = text(&items[0]);
        steps += 1;
        assert!(steps < 100_000, "SCAN does not end");
        if cursor == "0" {
            return seen;
        }
    }
}

#[test]
fn cluster_wide_dbsize_scan_keys_and_flushall() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
    let mut all = BTreeSet::new();
    for n in 0..500 {
        let key = if n < 300 { format!("user:{n}") } else { format!("item:{}", n - 300) };
        set(&mut c[n % 3], &key, "x");
        all.insert(key);
    }
    for (i, conn) in c.iter_mut().enumerate() {
        wait_for(&format!("DBSIZE 500 on node {i}"), WAIT, || (int(&call!(conn, "DBSIZE")) == 500).then_some(()));
    }
    // Every node holds every key (N = 3 on 3 nodes) once replication settles.
    for (i, conn) in c.iter_mut().enumerate() {
        wait_for(&format!("node {i} to hold all 500 keys"), WAIT, || (local_keys(conn) == 500).then_some(()));
    }
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(int(&call!(conn, "DBSIZE")), 500, "node {i}");
        for count in [7, 100, 1000] {
            assert_eq!(scan_all(conn, count, None), all, "SCAN COUNT {count} on node {i}");
        }
        let items: BTreeSet<String> = all.iter().filter(|k| k.starts_with("item:")).cloned().collect();
        assert_eq!(scan_all(conn, 20, Some("item:*")), items, "SCAN MATCH on node {i}");

        let keys: BTreeSet<String> = array(&call!(conn, "KEYS", "user:*")).iter().map(text).collect();
        assert_eq!(keys.len(), 300, "KEYS user:* on node {i}");
        assert!(keys.iter().all(|k| k.starts_with("user:")));
        let keys: BTreeSet<String> = array(&call!(conn, "KEYS", "item:1?")).iter().map(text).collect();
        let want: BTreeSet<String> = (10..20).map(|n| format!("item:{n}")).collect();
        assert_eq!(keys, want, "KEYS item:1? on node {i}");
        let keys: BTreeSet<String> = array(&call!(conn, "KEYS", "*")).iter().map(text).collect();
        assert_eq!(keys, all, "KEYS * on node {i}");
        assert!(array(&call!(conn, "KEYS", "nothing:*")).is_empty());
    }

    ok(&call!(c[1], "FLUSHALL"));
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(int(&call!(conn, "DBSIZE")), 0, "DBSIZE after FLUSHALL on node {i}");
        assert!(scan_all(conn, 100, None).is_empty(), "SCAN after FLUSHALL on node {i}");
        assert!(array(&call!(conn, "KEYS", "*")).is_empty(), "KEYS after FLUSHALL on node {i}");
    }
    for (n, k) in all.iter().enumerate() {
        assert_eq!(get(&mut c[n % 3], k), None, "{k} after FLUSHALL");
    }
    // Still writable afterwards.
    set(&mut c[2], "after-flush", "yes");
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(get(conn, "after-flush").as_deref(), Some("yes"), "node {i}");
        wait_for(&format!("DBSIZE 1 on node {i}"), WAIT, || (int(&call!(conn, "DBSIZE")) == 1).then_some(()));
    }
    // With a node down, FLUSHALL refuses and flushes nothing: the stopped
    // node would otherwise bring its keys back through read repair.
    cluster.stop(0);
    let e = err(&call!(c[1], "FLUSHALL"));
    assert!(e.starts_with("ERR FLUSHALL needs every node") && e.ends_with("nothing was flushed"), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{}", cluster.port(0))), "names the silent node: {e}");
    for conn in &mut c[1..] {
        assert_eq!(get(conn, "after-flush").as_deref(), Some("yes"));
    }
}

#[test]
fn per_request_quorum_overrides() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    {
        let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
        let ctx = text(&call!(c[0], "SETCTX", "q", "", "one", "W", 1));
        assert!(!ctx.is_empty());
        for r in [1, 2, 3] {
            for (i, conn) in c.iter_mut().enumerate() {
                let (rctx, values) = getctx_reply(&call!(conn, "GETCTX", "q", "R", r));
                if r == 3 {
                    // Three answers always include the coordinator's.
                    assert_eq!(values, ["one"], "GETCTX R 3 on node {i}");
                    assert_eq!(rctx, ctx);
                } else {
                    // Fewer may miss a W 1 write still on its way; poll.
                    wait_for(&format!("GETCTX R {r} on node {i} to see the write"), WAIT, || {
                        let (_, values) = getctx_reply(&call!(conn, "GETCTX", "q", "R", r));
                        (values == ["one"]).then_some(())
                    });
                }
            }
        }
        let ctx = text(&call!(c[1], "SETCTX", "q", &ctx, "two", "W", 3));
        // W 3: every replica holds it the moment the write is acknowledged.
        for (i, conn) in c.iter_mut().enumerate() {
            let (rctx, values) = getctx_reply(&call!(conn, "GETCTX", "q", "R", 1));
            assert_eq!(values, ["two"], "GETCTX R 1 on node {i} after W 3");
            assert_eq!(rctx, ctx);
        }
        let ctx = text(&call!(c[2], "SETCTX", "q", &ctx, "three", "PX", 60_000, "W", 2));
        assert_eq!(int(&call!(c[0], "DELCTX", "q", &ctx, "W", 3)), 1);
        assert_eq!(getctx_reply(&call!(c[1], "GETCTX", "q", "R", 3)).1, Vec::<String>::new());

        for (what, reply) in [
            ("GETCTX R 0", call!(c[0], "GETCTX", "q", "R", 0)),
            ("GETCTX R 4", call!(c[1], "GETCTX", "q", "R", 4)),
            ("SETCTX W 9", call!(c[2], "SETCTX", "q", "", "v", "W", 9)),
            ("SETCTX W 0", call!(c[0], "SETCTX", "q", "", "v", "W", 0)),
            ("SETCTX W 4", call!(c[1], "SETCTX", "q", "", "v", "W", 4)),
            ("DELCTX W 9", call!(c[2], "DELCTX", "q", "", "W", 9)),
        ] {
            let e = err(&reply);
            assert!(e.contains("must be between 1 and N"), "{what}: {e}");
        }
        assert_eq!(getctx_reply(&call!(c[1], "GETCTX", "q", "R", 3)).1, Vec::<String>::new(), "nothing written");
    }

    cluster.stop(2);
    let mut c: Vec<Connection> = (0..2).map(|i| cluster.client(i)).collect();
    for (i, conn) in c.iter_mut().enumerate() {
        let key = format!("q:down:{i}");
        let reply = call!(conn, "SETCTX", &key, "", "all three", "W", 3);
        assert!(is_noquorum(&reply, 3), "SETCTX W 3 with a node down, through node {i}: {reply:?}");
        let reply = call!(conn, "GETCTX", &key, "R", 3);
        assert!(is_noquorum(&reply, 3), "GETCTX R 3 with a node down: {reply:?}");
        // The failed write may have reached the running replicas (it is
        // not reported as done, but not undone either): write over it.
        let (read, _) = getctx_reply(&call!(conn, "GETCTX", &key, "R", 2));
        let ctx = text(&call!(conn, "SETCTX", &key, &read, "two of three", "W", 2));
        assert_eq!(getctx_reply(&call!(conn, "GETCTX", &key)).1, ["two of three"], "node {i}");
        let ctx = text(&call!(conn, "SETCTX", &key, &ctx, "one of three", "W", 1));
        // R 2 of the two running replicas includes the coordinator's answer.
        let (rctx, values) = getctx_reply(&call!(conn, "GETCTX", &key, "R", 2));
        assert_eq!(values, ["one of three"], "node {i}");
        assert_eq!(rctx, ctx);
    }
}

/// A context write asked at W needs W live replicas, whatever R is: with two
/// of three nodes down, SETCTX and DELCTX at W 1 succeed through the third,
/// blind or with a context, and once the others are back every replica
/// ends with the same siblings. NOQUORUM says what a refusal leaves behind.
#[test]
fn context_writes_need_only_the_w_they_ask_for() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    cluster.stop(1);
    cluster.stop(2);
    let mut c = cluster.client(0);

    // Blind writes: two siblings. A write with their context resolves them.
    text(&call!(c, "SETCTX", "w1", "", "a", "W", 1));
    text(&call!(c, "SETCTX", "w1", "", "b", "W", 1));
    let (ctx, mut values) = getctx_reply(&call!(c, "GETCTX", "w1", "R", 1));
    values.sort();
    assert_eq!(values, ["a", "b"]);
    text(&call!(c, "SETCTX", "w1", &ctx, "c", "W", 1));
    text(&call!(c, "SETCTX", "w1", "", "d", "W", 1));
    assert_eq!(getctx_reply(&call!(c, "GETCTX", "w1", "R", 1)).1, ["c", "d"]);

    // DELCTX with the context of one sibling removes that one only.
    let ctx_x = text(&call!(c, "SETCTX", "w2", "", "x", "W", 1));
    text(&call!(c, "SETCTX", "w2", "", "y", "W", 1));
    assert_eq!(int(&call!(c, "DELCTX", "w2", &ctx_x, "W", 1)), 1);
    assert_eq!(getctx_reply(&call!(c, "GETCTX", "w2", "R", 1)).1, ["y"]);

    // At the default W=2 and R=2 they are refused, and say what that means.
    let e = err(&call!(c, "SETCTX", "w3", "", "v"));
    assert_eq!(e, "NOQUORUM 2 replicas needed, 1 acknowledged; the write may or may not have been applied");
    let e = err(&call!(c, "GETCTX", "w1"));
    assert_eq!(e, "NOQUORUM 2 replicas needed, 1 answered");
    // A write that reads first is refused before it writes anything.
    let e = err(&call!(c, "INCR", "w4"));
    assert_eq!(e, "NOQUORUM 2 replicas needed, 1 answered; nothing was written");
    let e = err(&call!(c, "SET", "w5", "v"));
    assert_eq!(e, "NOQUORUM 2 replicas needed, 1 acknowledged; the write may or may not have been applied");

    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_converged();
    wait_serving(&cluster, "healed");
    let mut c = cluster.client(0);
    assert_eq!(get(&mut c, "w4"), None, "the refused INCR wrote nothing");
    for (key, want) in [("w1", vec!["c", "d"]), ("w2", vec!["y"])] {
        // Reading all three repairs the two that missed the writes.
        assert_eq!(getctx_reply(&call!(c, "GETCTX", key, "R", 3)).1, want, "{key}");
        wait_for(&format!("every replica of {key} to hold the same siblings"), WAIT, || {
            let (_, nodes) = where_is(&mut c, key);
            let copies: Vec<_> = nodes.iter().filter(|h| h.primary).map(|h| h.copy.clone().ok()).collect();
            let same = copies.len() == 3 && copies.iter().all(|x| x.is_some() && *x == copies[0]);
            (same && copies[0].as_ref().is_some_and(|(_, values, _)| *values == want.len() as i64)).then_some(())
        });
    }
}

/// Polls a binary's INFO until it sees `n` members, all in its ring, with
/// no change staged or in progress.
fn wait_members(node: &Shoal, n: i64) {
    wait_for(&format!("node on {} to see {n} members in a settled ring", node.port), Duration::from_secs(30), || {
        let mut c = node.client();
        let settled = info_int(&mut c, "cluster", "shoal_ring_change") == 0
            && info_int(&mut c, "cluster", "shoal_ring_staged") == 0
            && info_int(&mut c, "cluster", "shoal_ring_members") == n;
        (info_int(&mut c, "cluster", "shoal_members") == n && settled).then_some(())
    });
}

#[test]
fn three_shoal_processes_form_a_cluster_and_survive_a_sigterm() {
    let temp = tempfile::tempdir().expect("temp dir");
    let a = Shoal::spawn(&temp.path().join("a"), &[], &[("SHOAL_N", "3"), ("SHOAL_R", "2"), ("SHOAL_W", "2")]);
    let seed = format!("127.0.0.1:{}", a.peer_port);
    let b = Shoal::start_args(&["--seeds", &seed]);
    let c = Shoal::start_args(&["--seeds", &seed]);
    let nodes = [&a, &b, &c];
    for node in nodes {
        wait_members(node, 3);
        let mut conn = node.client();
        for (field, want) in [("shoal_n", 3), ("shoal_r", 2), ("shoal_w", 2)] {
            assert_eq!(info_int(&mut conn, "cluster", field), want, "{field} of the node on {}", node.port);
        }
        // SHOAL.STATUS lists the three, this one as self, all up.
        wait_for("SHOAL.STATUS to show three members up", WAIT, || {
            let members = members(&mut conn);
            let ports: BTreeSet<u16> = members
                .iter()
                .filter_map(|m| text(&m["address"]).rsplit(':').next().and_then(|p| p.parse().ok()))
                .collect();
            let want: BTreeSet<u16> = nodes.iter().map(|n| n.port).collect();
            let selves = members.iter().filter(|m| int(&m["self"]) == 1).count();
            let up = members.iter().all(|m| int(&m["up"]) == 1);
            (ports == want && selves == 1 && up).then_some(())
        });
    }

    let keys: Vec<String> = (0..100).map(|n| format!("proc:{n}")).collect();
    let mut conns: Vec<Connection> = nodes.iter().map(|n| n.client()).collect();
    for (n, k) in keys.iter().enumerate() {
        set(&mut conns[1], k, &format!("v {n}"));
    }
    for (n, k) in keys.iter().enumerate() {
        for (i, conn) in conns.iter_mut().enumerate() {
            assert_eq!(get(conn, k), Some(format!("v {n}")), "{k} read through process {i}");
        }
    }
    drop(conns);

    // SIGTERM the seed node: it exits cleanly, the other two carry on.
    let status = a.stop();
    assert!(status.success(), "SIGTERM exit status: {status:?}");
    let mut rest = [b.client(), c.client()];
    for (n, k) in keys.iter().enumerate() {
        for (i, conn) in rest.iter_mut().enumerate() {
            assert_eq!(get(conn, k), Some(format!("v {n}")), "{k} with the seed stopped, survivor {i}");
        }
    }
    for (n, k) in keys.iter().enumerate() {
        let reply = call!(rest[n % 2], "SET", k, format!("after {n}"));
        assert!(matches!(reply, Value::Okay), "SET {k} with one process of three stopped: {reply:?}");
        assert_eq!(get(&mut rest[(n + 1) % 2], k), Some(format!("after {n}")));
    }
    assert_eq!(int(&call!(rest[0], "INCR", "proc:counter")), 1);
    assert_eq!(int(&call!(rest[1], "INCR", "proc:counter")), 2);
    assert_eq!(info_int(&mut rest[1], "cluster", "shoal_members"), 3, "a stopped node stays a member");
}

/// Resumes a SIGSTOPped process however the test ends.
struct Resume<'a>(&'a Shoal);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.signal("-CONT");
    }
}

#[test]
fn a_forwarded_write_that_times_out_is_applied_once() {
    // Four processes, N=3: every key has one node that is not a replica and
    // must forward. Its first replica is frozen (SIGSTOP), so the forwarded
    // INCR sits unanswered in that replica's socket until the request
    // timeout.
    let env = [("SHOAL_N", "3"), ("SHOAL_R", "2"), ("SHOAL_W", "2"), ("SHOAL_REQUEST_TIMEOUT", "500")];
    let temp = tempfile::tempdir().expect("temp dir");
    let first = Shoal::spawn(&temp.path().join("n0"), &[], &env);
    let seed = format!("127.0.0.1:{}", first.peer_port);
    let mut nodes = vec![first];
    for i in 1..4 {
        nodes.push(Shoal::spawn(&temp.path().join(format!("n{i}")), &["--seeds", &seed], &env));
    }
    for node in &nodes {
        wait_members(node, 4);
    }
    let key = "forwarded-counter";
    let by_port = |port: u16| nodes.iter().find(|n| n.port == port).expect("a node of the cluster");
    let (_, list) = where_is(&mut nodes[0].client(), key);
    assert_eq!(list.len(), 4);
    let (first_replica, outsider) = (by_port(list[0].port), by_port(list[3].port));
    assert!(list[0].primary && !list[3].primary);
    let mut f = outsider.client();
    // Every node talks to every other before the freeze.
    wait_for("every node to reach every other", WAIT, || {
        let (_, list) = where_is(&mut f, key);
        list.iter().all(|h| h.copy.is_ok()).then_some(())
    });

    first_replica.signal("-STOP");
    let resume = Resume(first_replica);
    let reply = call!(f, "INCR", key);
    drop(resume);

    match reply {
        Value::Int(n) => {
            assert_eq!(n, 1, "the first INCR of a key");
            // The frozen replica now runs what was queued for it. Whatever
            // it does, the counter must stay at the acknowledged 1: observe
            // it for a while through every node.
            let mut conns: Vec<Connection> = nodes.iter().map(Shoal::client).collect();
            let until = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < until {
                for (i, c) in conns.iter_mut().enumerate() {
                    if let Some(v) = get(c, key) {
                        assert_eq!(v, "1", "INCR answered 1 once, node {i} reads {v}");
                    }
                }
            }
            wait_replicated(&mut f, key);
            assert_eq!(get(&mut f, key).as_deref(), Some("1"));
        }
        // Reporting the timeout instead is honest too.
        other => assert!(error_text(&other).is_some(), "INCR: {other:?}"),
    }
}

/// A context write whose read cannot reach R merges what the replicas that
/// did answer hold: with R = 3 and one node down, SETCTX at W 1 through
/// node 0, with a context covering a sibling only node 1 holds, supersedes
/// that sibling. (Node 0's own copy never had it: were the context clamped
/// to that copy alone, the sibling would survive.)
#[test]
fn a_context_write_short_of_r_merges_what_answered() {
    let mut cluster = without_hints(3, 3, 2);
    let mut c1 = cluster.client(1);
    set(&mut c1, "partial", "v1");
    wait_replicated(&mut c1, "partial");
    cluster.stop(0);
    cluster.stop(2);
    text(&call!(c1, "SETCTX", "partial", "", "x", "W", 1));
    let (ctx, mut values) = getctx_reply(&call!(c1, "GETCTX", "partial", "R", 1));
    values.sort();
    assert_eq!(values, ["v1", "x"], "node 1 alone holds both");

    cluster.restart(0);
    let mut c0 = cluster.client(0);
    wait_for("node 0 to see node 1 up and node 2 down", WAIT, || {
        let seen: Vec<i64> = members(&mut c0).iter().map(|m| int(&m["up"])).collect();
        (seen.iter().sum::<i64>() == 2).then_some(())
    });
    let (_, nodes) = where_is(&mut c0, "partial");
    let own = nodes.iter().find(|h| h.port == cluster.port(0)).expect("node 0 is a replica");
    assert_eq!(own.copy.as_ref().map(|c| c.1), Ok(1), "node 0 holds only v1: {nodes:?}");

    text(&call!(c0, "SETCTX", "partial", &ctx, "y", "W", 1));
    wait_for("the replicas that answered to agree", WAIT, || {
        let (_, values) = getctx_reply(&call!(c0, "GETCTX", "partial", "R", 2));
        (values == ["y"]).then_some(())
    });
    // Node 1's own copy too, once the write (or the read repair) reaches it.
    wait_for("node 1's x to be superseded", WAIT, || {
        let (_, nodes) = where_is(&mut c1, "partial");
        let theirs = nodes.iter().find(|h| h.port == cluster.port(1)).expect("node 1 is a replica");
        (theirs.copy.as_ref().map(|c| c.1) == Ok(1)).then_some(())
    });
    wait_for("node 1 to read y at R 2", WAIT, || {
        let reply = call!(c1, "GETCTX", "partial", "R", 2);
        (matches!(reply, Value::Array(_)) && getctx_reply(&reply).1 == ["y"]).then_some(())
    });
}

/// A node restarted cleanly writes as the same actor (the other members
/// vouch that no run of it came since), so a key it writes again gains no
/// version-vector entry, restart after restart.
#[test]
fn clean_restarts_keep_the_actor_and_histories_do_not_grow() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    let mut c = cluster.client(1);
    let actor = info(&mut c, "server", "shoal_actor");
    set(&mut c, "history", "0");
    let (first, _) = getctx(&mut c, "history");
    for round in 1..=3 {
        cluster.stop(1);
        cluster.restart(1);
        cluster.wait_all_up(WAIT);
        let mut c = cluster.client(1);
        assert_eq!(info(&mut c, "server", "shoal_actor"), actor, "restart {round}");
        set(&mut c, "history", &round.to_string());
    }
    let (last, values) = getctx(&mut cluster.client(1), "history");
    assert_eq!(values, ["3"]);
    assert!(last.len() <= first.len() + 4, "the history grew from {first} to {last}");
}

/// A snapshot of a running node holds no clean-stop record: restored after
/// the node went on writing (and died), it writes as a new actor, so its
/// writes cannot claim to have seen the ones its disk lacks, and none of
/// those is lost.
#[test]
fn a_snapshot_of_a_running_node_restored_writes_as_a_new_actor() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    let mut c = cluster.client(1);
    let actor = info(&mut c, "server", "shoal_actor");
    set(&mut c, "early", "v");
    let snapshot = tempfile::tempdir().expect("snapshot dir");
    common::copy_dir(&cluster.data_dir(1), snapshot.path());

    let keys: Vec<String> = (0..20).map(|i| format!("snap:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        if i % 2 == 0 {
            set(&mut c, key, "before the restore");
        } else {
            text(&call!(c, "SETCTX", key, "", "before the restore"));
        }
    }
    drop(c);
    cluster.stop(1);
    std::fs::remove_dir_all(cluster.data_dir(1)).expect("remove");
    common::copy_dir(snapshot.path(), &cluster.data_dir(1));
    cluster.restart(1);
    cluster.wait_all_up(WAIT);
    let mut c = cluster.client(1);
    assert_ne!(info(&mut c, "server", "shoal_actor"), actor, "a snapshot has no clean stop to resume from");
    for (i, key) in keys.iter().enumerate() {
        if i % 2 == 0 {
            set(&mut c, key, "after the restore");
        } else {
            text(&call!(c, "SETCTX", key, "", "after the restore"));
        }
    }
    let mut c0 = cluster.client(0);
    for key in &keys {
        let (_, values) = getctx_reply(&call!(c0, "GETCTX", key, "R", 3));
        assert!(values.contains(&"before the restore".to_string()), "{key}: {values:?}");
    }
}
