//! Sloppy quorum: while some of a key's replicas are cut off, the next
//! nodes of its preference list stand in for them, so writes and reads
//! through the others go on; once the cut heals, the fallbacks hand back
//! what they kept, and every replica holds every key by itself.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::reply::{call, err, info, int, local_keys, members, ring_of, text, where_is};
use common::wait_for;
use redis::Connection;
use shoal::ring::{Partitioner, Ring, key_hash};
use shoal::version::NodeId;

/// Bound for every poll.
const WAIT: Duration = Duration::from_secs(20);
/// Partitions of the test cluster (`TestCluster` makes 64).
const Q: u32 = 64;

fn hints(c: &mut Connection, field: &str) -> u64 {
    info(c, "hints", field).parse().expect("a number")
}

/// Each node's id, by index.
fn ids(cluster: &TestCluster) -> Vec<NodeId> {
    let all = members(&mut cluster.client(0));
    (0..cluster.len())
        .map(|i| {
            let port = format!(":{}", cluster.port(i));
            let m = all.iter().find(|m| text(&m["address"]).ends_with(&port)).expect("a member");
            NodeId(u64::from_str_radix(&text(&m["id"]), 16).expect("a hex id"))
        })
        .collect()
}

/// Waits until every node in `watchers` sees exactly `up` members up.
fn wait_members_up(cluster: &TestCluster, watchers: &[usize], up: u64) {
    for &i in watchers {
        let mut c = cluster.client(i);
        wait_for(&format!("node {i} to see {up} members up"), WAIT, || {
            let seen: u64 = info(&mut c, "cluster", "shoal_members_up").parse().expect("a number");
            (seen == up).then_some(())
        });
    }
}

/// Sets every key to `value` through the nodes of `via`, in turn, 100 a
/// pipeline; every write must be acknowledged.
fn write_all(cluster: &TestCluster, via: &[usize], keys: &[String], value: &str) {
    let mut clients: Vec<Connection> = via.iter().map(|&i| cluster.client(i)).collect();
    for (n, chunk) in keys.chunks(100).enumerate() {
        let c = &mut clients[n % via.len()];
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("SET").arg(k).arg(format!("{value} {k}"));
        }
        let replies: Vec<redis::Value> = pipe.query(c).expect("every write acknowledged");
        assert!(replies.iter().all(|r| matches!(r, redis::Value::Okay)), "{replies:?}");
    }
}

/// Reads every key through the nodes of `via`, in turn: each must be
/// `value`.
fn read_all(cluster: &TestCluster, via: &[usize], keys: &[String], value: &str) {
    let mut clients: Vec<Connection> = via.iter().map(|&i| cluster.client(i)).collect();
    for (n, chunk) in keys.chunks(100).enumerate() {
        let c = &mut clients[n % via.len()];
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("GET").arg(k);
        }
        let got: Vec<Option<String>> = pipe.query(c).expect("every read answered");
        for (k, v) in chunk.iter().zip(got) {
            assert_eq!(
                v.as_deref(),
                Some(format!("{value} {k}").as_str()),
                "{k} read through node {}",
                via[n % via.len()]
            );
        }
    }
}

#[test]
fn with_any_two_of_five_nodes_cut_off_writes_and_reads_go_on_and_the_fallbacks_hand_back() {
    let cluster = TestCluster::start(5, 3, 2, 2);
    cluster.wait_all_up(WAIT);
    let ids = ids(&cluster);
    let ring = ring_of(&mut cluster.client(0));
    let partitioner = Partitioner::new(Q);
    let replicas = |k: &str| ring.replicas(partitioner.of(key_hash(k.as_bytes())), 3).to_vec();

    // Written before the cut, overwritten during it: reads must see the
    // overwrite, not the older value the cut-off replicas hold. And written
    // before the cut only: reads must find them, though the fallbacks hold
    // nothing of them.
    let keys: Vec<String> = (0..10_000).map(|i| format!("sloppy:{i}")).collect();
    write_all(&cluster, &[0, 1, 2, 3, 4], &keys[..1000], "before");
    let old: Vec<String> = (0..500).map(|i| format!("old:{i}")).collect();
    write_all(&cluster, &[0, 1, 2, 3, 4], &old, "old");

    let (cut, others) = ([1, 3], [0, 2, 4]);
    for &i in &cut {
        cluster.isolate(i);
    }
    wait_members_up(&cluster, &others, 3);
    // Every write through the others succeeds, even for keys two of whose
    // three replicas are cut off.
    let both_cut = keys
        .iter()
        .filter(|k| {
            let r = replicas(k);
            r.contains(&ids[cut[0]]) && r.contains(&ids[cut[1]])
        })
        .count();
    assert!(both_cut > 500, "{both_cut} keys have both cut-off nodes among their replicas");
    write_all(&cluster, &others, &keys, "during");
    read_all(&cluster, &others, &keys, "during");
    read_all(&cluster, &others, &old, "old");
    // The fallbacks keep hints with the writes for the cut-off nodes.
    let held: u64 = others.iter().map(|&i| hints(&mut cluster.client(i), "hints_pending")).sum();
    assert!(held > 0);

    // What each cut-off node must hold once it is back.
    let expected: Vec<u64> =
        cut.iter().map(|&i| keys.iter().chain(&old).filter(|k| replicas(k).contains(&ids[i])).count() as u64).collect();
    for (&i, &e) in cut.iter().zip(&expected) {
        assert!(local_keys(&mut cluster.client(i)) < e, "node {i} cannot hold what it missed yet");
    }

    // Heal: without any client reading a key, each cut-off node receives
    // every key it is a replica of, within 10 s.
    cluster.heal();
    let healed = Instant::now();
    wait_members_up(&cluster, &[0, 1, 2, 3, 4], 5);
    for (&i, &e) in cut.iter().zip(&expected) {
        let mut c = cluster.client(i);
        wait_for(&format!("node {i} to hold its {e} keys"), WAIT, || (local_keys(&mut c) == e).then_some(()));
    }
    let took = healed.elapsed();
    eprintln!("caught up in {took:?}");
    assert!(took < Duration::from_secs(10), "the cut-off nodes caught up in {took:?}");
    // Then the hints are gone, everywhere.
    for i in 0..5 {
        let mut c = cluster.client(i);
        wait_for(&format!("node {i}'s hints to go"), WAIT, || (hints(&mut c, "hints_pending") == 0).then_some(()));
    }
    // Every replica holds the latest value by itself (a sample, through
    // SHOAL.WHERE, which repairs nothing), and no fallback keeps a hint.
    let mut c = cluster.client(0);
    for k in keys.iter().step_by(37) {
        let (_, holders) = where_is(&mut c, k);
        let by_port: HashMap<u16, _> = holders.iter().map(|h| (h.port, h)).collect();
        for id in replicas(k) {
            let i = ids.iter().position(|&x| x == id).expect("a node");
            let h = by_port[&cluster.port(i)];
            assert!(h.primary);
            assert!(matches!(h.copy, Ok((1, 1, _))), "{k} on node {i}: {:?}", h.copy);
        }
        assert!(holders.iter().all(|h| h.hints.is_empty()), "{k}: {holders:?}");
    }
    let mut c3 = cluster.client(3);
    assert_eq!(
        redis::cmd("GET").arg(&keys[7]).query::<Option<String>>(&mut c3).expect("GET").as_deref(),
        Some(format!("during {}", keys[7]).as_str())
    );
    for i in 0..5 {
        assert_eq!(info(&mut cluster.client(i), "cluster", "shoal_read_repairs"), "0", "node {i} repaired nothing");
    }
}

#[test]
fn without_sloppy_quorum_or_with_pw_only_the_keys_own_replicas_count() {
    let cluster = TestCluster::start_with(4, |c| {
        c.n = Some(3);
        c.r = Some(2);
        c.w = Some(2);
    });
    cluster.wait_all_up(WAIT);
    let ids = ids(&cluster);
    let ring = ring_of(&mut cluster.client(0));
    let partitioner = Partitioner::new(Q);
    // A key of which nodes 0, 1 and 2 are the replicas, and node 3 the
    // fallback.
    let key = (0..)
        .map(|i| format!("pw:{i}"))
        .find(|k| {
            let r = ring.replicas(partitioner.of(key_hash(k.as_bytes())), 3);
            r.contains(&ids[0]) && r.contains(&ids[1]) && r.contains(&ids[2])
        })
        .expect("a key");
    let others = [0, 3];
    cluster.isolate(1);
    cluster.isolate(2);
    wait_members_up(&cluster, &others, 2);
    let mut c = cluster.client(others[0]);
    // Sloppy: one replica and the fallback make W = 2.
    let ctx: String = redis::cmd("SETCTX").arg(&key).arg("").arg("v1").query(&mut c).expect("a sloppy write");
    // With PW 2 the same write needs two of the key's own replicas: refused.
    // With PW 2 the same write needs two of the key's own replicas, and only
    // one is up: refused before anything is written.
    let e = err(&call!(c, "SETCTX", &key, &ctx, "v2", "PW", 2));
    assert_eq!(e, "NOQUORUM 2 replicas needed, 1 answered; nothing was written");
    // PR 2 likewise for a read; PR 1 is met by the one replica up.
    let e = err(&call!(c, "GETCTX", &key, "PR", 2));
    assert_eq!(e, "NOQUORUM 2 replicas needed, 1 answered");
    let got = format!("{:?}", call!(c, "GETCTX", &key, "PR", 1));
    assert!(got.contains("\"v1\"") && !got.contains("\"v2\""), "{got}");
    let e = err(&call!(c, "SETCTX", &key, "", "v", "PW", 4));
    assert!(e.contains("PW/PR must be between 1 and N (3)"), "{e}");
    // A replica that coordinates without fallbacks at all: plain writes
    // need two of the key's own replicas, which are not there.
    drop(c);
    let mut cluster = cluster;
    let coordinator = others[0];
    cluster.stop(coordinator);
    cluster.restart_with(coordinator, |c| c.sloppy_quorum = false);
    for &i in &[1, 2] {
        cluster.isolate(i);
    }
    wait_members_up(&cluster, &[coordinator], 2);
    let mut c = cluster.client(coordinator);
    assert_eq!(info(&mut c, "hints", "sloppy_quorum"), "0");
    let e = err(&call!(c, "SET", &key, "strict"));
    assert!(e.starts_with("NOQUORUM"), "{e}");
    let e = err(&call!(c, "GET", &key));
    assert!(e.starts_with("NOQUORUM"), "{e}");
    // Healed, the same node writes again.
    cluster.heal();
    cluster.wait_all_up(WAIT);
    let mut c = cluster.client(coordinator);
    wait_for("the write to go through once healed", WAIT, || {
        redis::cmd("SET").arg(&key).arg("strict").query::<()>(&mut c).ok()
    });
    assert_eq!(int(&call!(c, "EXISTS", &key)), 1);
}

/// Before the failure detector has noticed (here it never does), a
/// replica that fails a write is stood in for by a fallback at once:
/// writes through the others go on with two of five nodes stopped, and the
/// stopped nodes get what they missed when they return.
#[test]
fn a_replica_that_fails_before_it_is_seen_down_is_stood_in_for_at_once() {
    let mut cluster = TestCluster::start_with(5, |c| {
        c.n = Some(3);
        c.r = Some(2);
        c.w = Some(2);
        // Never believed down.
        c.phi_threshold = 1e9;
    });
    cluster.wait_all_up(WAIT);
    let ids = ids(&cluster);
    let ring = ring_of(&mut cluster.client(0));
    let partitioner = Partitioner::new(Q);
    let replicas = |k: &str| ring.replicas(partitioner.of(key_hash(k.as_bytes())), 3).to_vec();
    cluster.stop(1);
    cluster.stop(3);
    let others = [0, 2, 4];
    wait_members_up(&cluster, &others, 5);
    let keys: Vec<String> = (0..600).map(|i| format!("undetected:{i}")).collect();
    write_all(&cluster, &others, &keys, "while stopped");
    cluster.restart(1);
    cluster.restart(3);
    cluster.wait_all_up(WAIT);
    for i in [1, 3] {
        let e = keys.iter().filter(|k| replicas(k).contains(&ids[i])).count() as u64;
        let mut c = cluster.client(i);
        wait_for(&format!("node {i} to hold its {e} keys"), WAIT, || (local_keys(&mut c) == e).then_some(()));
    }
    for i in 0..5 {
        let mut c = cluster.client(i);
        wait_for(&format!("node {i}'s hints to go"), WAIT, || (hints(&mut c, "hints_pending") == 0).then_some(()));
    }
    read_all(&cluster, &[0, 1, 2, 3, 4], &keys, "while stopped");
}

/// Hints for a node that no longer holds their keys (the ring changed
/// while it was down: a node joined) go to the keys' current replicas
/// instead; the others wait for it.
#[test]
fn hints_whose_keys_moved_go_to_their_current_replicas() {
    let mut cluster = TestCluster::start(4, 3, 2, 2);
    cluster.wait_all_up(WAIT);
    let down = 3;
    cluster.stop(down);
    wait_members_up(&cluster, &[0, 1, 2], 3);
    let keys: Vec<String> = (0..300).map(|i| format!("moved:{i}")).collect();
    write_all(&cluster, &[0, 1, 2], &keys, "v");
    let old_ids = ids(&cluster);
    let partitioner = Partitioner::new(Q);
    let replicas_in = |ring: &Ring, k: &str| ring.replicas(partitioner.of(key_hash(k.as_bytes())), 3).to_vec();
    let old = ring_of(&mut cluster.client(0));
    let hinted: Vec<&String> = keys.iter().filter(|k| replicas_in(&old, k).contains(&old_ids[down])).collect();
    assert!(hinted.len() > 100, "{} keys had the stopped node as a replica", hinted.len());

    // A fifth node joins: the ring changes while node 3 is still down.
    let joined = cluster.add();
    cluster.wait_converged();
    wait_members_up(&cluster, &[0, 1, 2, joined], 4);
    let new = ring_of(&mut cluster.client(0));
    let (moved, stayed): (Vec<&String>, Vec<&String>) =
        hinted.into_iter().partition(|k| !replicas_in(&new, k).contains(&old_ids[down]));
    assert!(!moved.is_empty() && !stayed.is_empty(), "{} moved, {} stayed", moved.len(), stayed.len());
    // Each moved key ends up on every one of its current replicas, and no
    // node keeps a hint about it any more; the others still wait for node 3.
    let mut c = cluster.client(0);
    let hinted_ids =
        |holders: &[common::reply::Holder]| holders.iter().flat_map(|h| h.hints.clone()).collect::<Vec<_>>();
    let down_id = old_ids[down].to_string();
    for k in &moved {
        wait_for(&format!("{k} on its current replicas"), WAIT, || {
            let (_, holders) = where_is(&mut c, k);
            let on_replicas = holders.iter().filter(|h| h.primary).all(|h| matches!(h.copy, Ok((1, 1, _))));
            (on_replicas && hinted_ids(&holders).is_empty()).then_some(())
        });
    }
    for k in &stayed {
        let (_, holders) = where_is(&mut c, k);
        assert!(hinted_ids(&holders).contains(&down_id), "{k}: a hint for node 3 is kept");
    }
    cluster.restart(down);
    cluster.wait_all_up(WAIT);
    for i in [0, 1, 2, joined] {
        let mut c = cluster.client(i);
        wait_for(&format!("node {i}'s hints to go"), WAIT, || (hints(&mut c, "hints_pending") == 0).then_some(()));
    }
    // Node 3 received the keys it still holds, and only those.
    assert_eq!(local_keys(&mut cluster.client(down)), stayed.len() as u64);
}

/// Every pair of five nodes cut off in turn: while a pair is away every
/// write through the other three succeeds and every read (of this round's
/// keys and of earlier rounds') returns the latest value; after the heal
/// the hints drain.
#[test]
fn every_pair_of_five_nodes_can_be_cut_off() {
    let cluster = TestCluster::start(5, 3, 2, 2);
    cluster.wait_all_up(WAIT);
    let mut written: Vec<String> = Vec::new();
    for a in 0..5 {
        for b in a + 1..5 {
            let others: Vec<usize> = (0..5).filter(|&i| i != a && i != b).collect();
            cluster.isolate(a);
            cluster.isolate(b);
            wait_members_up(&cluster, &others, 3);
            let keys: Vec<String> = (0..60).map(|i| format!("pair{a}{b}:{i}")).collect();
            write_all(&cluster, &others, &keys, "v");
            written.extend(keys);
            read_all(&cluster, &others, &written, "v");
            cluster.heal();
            wait_members_up(&cluster, &[0, 1, 2, 3, 4], 5);
            for i in 0..5 {
                let mut c = cluster.client(i);
                wait_for(&format!("node {i}'s hints to go"), WAIT, || {
                    (hints(&mut c, "hints_pending") == 0).then_some(())
                });
            }
        }
    }
    read_all(&cluster, &[0, 1, 2, 3, 4], &written, "v");
}
