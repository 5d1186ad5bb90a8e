//! Regression tests for cluster faults: concurrent read-dependent writes
//! through different nodes, a node that cannot reach a quorum, deletes and
//! expiries that must not be undone by a replica that missed them, a node
//! that comes back with a wiped data directory, W = 1 with dead peers,
//! graceful shutdown under load, and an APPEND past proto-max-bulk-len.
//!
//! Every test runs an in-process [`TestCluster`] driven by real clients.
//! Commands go out through `ConnectionLike::req_command`, which hands back
//! server errors as `Value::ServerError`, so an error's exact text can be
//! checked. Waits poll with a deadline.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::reply::{array, call, error_text, get, info, int, members, ok, opt_text, set, text};
use common::wait_for;
use redis::{Connection, ConnectionLike, Value};

/// Bound for every poll.
const WAIT: Duration = Duration::from_secs(10);

/// Is the reply an error starting with NOQUORUM?
fn is_noquorum(v: &Value) -> bool {
    error_text(v).is_some_and(|e| e.starts_with("NOQUORUM"))
}

/// A loopback port nothing listens on (bound, then released).
fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Runs `work(thread, connection)` on one thread per node, each with its own
/// client of that node, all starting together; returns their results in
/// node order.
fn on_every_node<T: Send + 'static>(
    cluster: &TestCluster,
    work: impl Fn(usize, &mut Connection) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let work = Arc::new(work);
    let start = Arc::new(Barrier::new(cluster.len()));
    let threads: Vec<_> = (0..cluster.len())
        .map(|i| {
            let (work, start, mut c) = (Arc::clone(&work), Arc::clone(&start), cluster.client(i));
            std::thread::spawn(move || {
                start.wait();
                work(i, &mut c)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("worker thread")).collect()
}

#[test]
fn concurrent_incr_through_different_nodes_is_exact() {
    let cluster = TestCluster::start(3, 3, 2, 2);

    // 3 × 200 INCR, each thread through its own node.
    let replies = on_every_node(&cluster, |i, c| {
        (0..200)
            .map(|n| {
                let reply = call!(c, "INCR", "counter");
                assert!(matches!(reply, Value::Int(_)), "INCR number {n} through node {i}: {reply:?}");
                int(&reply)
            })
            .collect::<Vec<i64>>()
    });
    // Every INCR saw a distinct value: 1..=600 each exactly once.
    let mut all: Vec<i64> = replies.into_iter().flatten().collect();
    all.sort_unstable();
    let repeated: Vec<i64> = all.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).take(10).collect();
    assert!(repeated.is_empty(), "INCRs answered the same count twice: {repeated:?} (first 10)");
    assert_eq!(all.first().zip(all.last()), Some((&1, &600)), "the 600 INCRs answered 1..=600");
    for i in 0..3 {
        assert_eq!(get(&mut cluster.client(i), "counter").as_deref(), Some("600"), "GET counter through node {i}");
    }

    // INCRBY with mixed signs: the sum is exact.
    let step = |i: usize, n: usize| -> i64 { ((n * 37 + i * 11) % 201) as i64 - 100 };
    let expected: i64 = (0..3).flat_map(|i| (0..150).map(move |n| step(i, n))).sum();
    on_every_node(&cluster, move |i, c| {
        for n in 0..150 {
            let reply = call!(c, "INCRBY", "balance", step(i, n));
            assert!(matches!(reply, Value::Int(_)), "INCRBY number {n} through node {i}: {reply:?}");
        }
    });
    for i in 0..3 {
        assert_eq!(get(&mut cluster.client(i), "balance"), Some(expected.to_string()), "GET balance through node {i}");
    }
}

#[test]
fn set_nx_is_a_lock_across_nodes() {
    let cluster = TestCluster::start(3, 3, 2, 2);
    const ROUNDS: usize = 100;
    let names = ["alice", "bob"];
    // One barrier, waited at the start of every round: the two SET NX of a
    // round leave together.
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(t, &name)| {
            let (barrier, mut c) = (Arc::clone(&barrier), cluster.client(t));
            std::thread::spawn(move || {
                (0..ROUNDS)
                    .map(|i| {
                        barrier.wait();
                        let reply = call!(c, "SET", format!("lock:{i}"), name, "NX");
                        match reply {
                            Value::Okay => true,
                            Value::Nil => false,
                            other => panic!("SET lock:{i} {name} NX through node {t}: {other:?}"),
                        }
                    })
                    .collect::<Vec<bool>>()
            })
        })
        .collect();
    let won: Vec<Vec<bool>> = threads.into_iter().map(|t| t.join().expect("racer")).collect();
    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
    assert!(won.iter().all(|w| w.len() == ROUNDS));
    for (i, (&first, &second)) in won[0].iter().zip(&won[1]).enumerate() {
        let winners: Vec<&str> = names.iter().zip([first, second]).filter(|(_, w)| *w).map(|(&n, _)| n).collect();
        assert_eq!(winners.len(), 1, "lock:{i}: exactly one SET NX got OK, winners {winners:?}");
        for (n, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, &format!("lock:{i}")).as_deref(), Some(winners[0]), "lock:{i} read through node {n}");
        }
    }
}

#[test]
fn a_node_that_cannot_reach_enough_peers_refuses_instead_of_acting_alone() {
    // A lone node whose seeds are never there.
    {
        let seeds = vec![format!("127.0.0.1:{}", unused_port()), format!("127.0.0.1:{}", unused_port())];
        let lone = TestCluster::start_with(1, move |c| {
            c.seeds = seeds.clone();
            c.n = Some(3);
            c.r = Some(2);
            c.w = Some(2);
        });
        let mut c = lone.client(0);
        // It has joined no cluster: it serves no keys, and says why.
        for reply in [
            call!(c, "SET", "k", "v"),
            call!(c, "GET", "k"),
            call!(c, "INCR", "n"),
            call!(c, "GETCTX", "k", "R", 2),
            call!(c, "SETCTX", "k", "", "v", "W", 1),
        ] {
            let e = error_text(&reply).unwrap_or_else(|| panic!("expected an error, got {reply:?}"));
            assert!(e.starts_with("TRYAGAIN this node has not joined its cluster yet"), "{e}");
        }
        assert_eq!(info(&mut c, "cluster", "shoal_cluster_id"), "", "no cluster");
    }

    // A node restarted alone, with a stale copy, does not serve it.
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    set(&mut cluster.client(0), "k", "v1");
    cluster.stop(2);
    set(&mut cluster.client(0), "k", "v2");
    cluster.stop(0);
    cluster.stop(1);
    cluster.restart(2);
    let mut c2 = cluster.client(2);
    // Ask for a while: the restarted node keeps trying its seed meanwhile.
    let until = Instant::now() + Duration::from_secs(1);
    let mut asked = 0;
    while asked < 10 || Instant::now() < until {
        let reply = call!(c2, "GET", "k");
        assert!(is_noquorum(&reply), "GET k through node 2 restarted alone (it holds the stale v1): {reply:?}");
        asked += 1;
    }
}

#[test]
fn deletes_and_expiries_are_not_undone_by_a_replica_that_missed_them() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.n = Some(3);
        c.r = Some(2);
        c.w = Some(2);
        c.tombstone_grace = 1;
    });
    {
        let mut c0 = cluster.client(0);
        set(&mut c0, "k", "v");
        set(&mut c0, "e", "old");
        // Both on every replica before node 2 goes.
        for i in 0..3 {
            let mut c = cluster.client(i);
            assert_eq!(get(&mut c, "k").as_deref(), Some("v"));
            assert_eq!(get(&mut c, "e").as_deref(), Some("old"));
        }
    }
    cluster.stop(2);
    let deleted_at = {
        let mut c0 = cluster.client(0);
        assert_eq!(int(&call!(c0, "DEL", "k")), 1, "DEL k with node 2 down");
        ok(&call!(c0, "SET", "e", "new", "PX", 300));
        Instant::now()
    };
    // The tombstone and the expired value are past the 1 s grace, with room
    // for the 300 ms expiry and the reaper's pace. Nothing can be polled
    // for: the point is that nothing happens.
    wait_for("2.5 s since the delete", WAIT, || (deleted_at.elapsed() >= Duration::from_millis(2500)).then_some(()));
    cluster.restart(2);
    cluster.wait_converged();
    cluster.wait_all_up(WAIT);

    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
    // Several rounds through every node, with pauses so that the read
    // repairs of one round land before the next. Every read must be nil,
    // so there is nothing to poll for: the pauses are fixed on purpose.
    for round in 0..5 {
        for (i, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, "k"), None, "deleted k came back, round {round}, node {i}");
            assert_eq!(get(conn, "e"), None, "the overwritten old value of e came back, round {round}, node {i}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, conn) in c.iter_mut().enumerate() {
        wait_for(&format!("DBSIZE 0 on node {i}"), WAIT, || (int(&call!(conn, "DBSIZE")) == 0).then_some(()));
    }
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(get(conn, "k"), None, "k after repair, node {i}");
        assert_eq!(get(conn, "e"), None, "e after repair, node {i}");
        assert_eq!(int(&call!(conn, "EXISTS", "k", "e")), 0, "node {i}");
    }
}

#[test]
fn a_node_back_with_a_wiped_data_directory_replaces_its_old_self() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    let (old_id, dir) = {
        let mut c2 = cluster.client(2);
        let dir = array(&call!(c2, "CONFIG", "GET", "dir")).get(1).map(text).expect("CONFIG GET dir");
        (info(&mut c2, "server", "shoal_node_id"), std::path::PathBuf::from(dir))
    };
    assert!(dir.is_dir(), "node 2's data directory {} exists", dir.display());
    let node2 = format!("127.0.0.1:{}", cluster.port(2));
    cluster.stop(2);
    std::fs::remove_dir_all(&dir).expect("wipe node 2's data directory");
    cluster.restart(2);

    let new_id = info(&mut cluster.client(2), "server", "shoal_node_id");
    assert_ne!(new_id, old_id, "a wiped node starts under a new id");
    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
    for (i, conn) in c.iter_mut().enumerate() {
        wait_for(&format!("node {i} to list node 2 under its new id only"), Duration::from_secs(20), || {
            let members = members(conn);
            assert!(members.len() <= 3, "node {i} lists {} members: {members:?}", members.len());
            let at_node2: Vec<String> =
                members.iter().filter(|m| text(&m["address"]) == node2).map(|m| text(&m["id"])).collect();
            let all_reachable = members.iter().all(|m| int(&m["up"]) == 1);
            (members.len() == 3 && at_node2 == [new_id.clone()] && all_reachable).then_some(())
        });
        let ids: Vec<String> = members(conn).iter().map(|m| text(&m["id"])).collect();
        assert!(!ids.contains(&old_id), "node {i} still lists the old id {old_id}: {ids:?}");
        assert_eq!(info(conn, "cluster", "shoal_members"), "3", "node {i}");
    }
    // And the three serve together.
    for w in 0..3 {
        let key = format!("after-wipe:{w}");
        set(&mut c[w], &key, "x");
        for (r, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, &key).as_deref(), Some("x"), "written through {w}, read through {r}");
        }
    }
}

#[test]
fn w1_does_not_wait_for_peers() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.n = Some(3);
        c.r = Some(1);
        c.w = Some(1);
        c.request_timeout = 2000;
    });
    let (peer1, peer2) = (cluster.peer_addr(1), cluster.peer_addr(2));
    cluster.stop(1);
    cluster.stop(2);
    let mut c0 = cluster.client(0);
    // SETs on fresh keys for at least `min` (so that the client side's
    // reconnect backoff runs out and calls to the dead peers are really
    // attempted), each timed; then every one is read back with R = 1.
    let timed_sets = |c0: &mut Connection, prefix: &str, min: Duration| {
        let started = Instant::now();
        let mut n = 0;
        while n < 50 || started.elapsed() < min {
            let key = format!("{prefix}:{n}");
            let sent = Instant::now();
            let reply = call!(c0, "SET", &key, format!("v{n}"));
            let took = sent.elapsed();
            ok(&reply);
            assert!(took < Duration::from_millis(500), "SET {key} with W = 1 took {took:?}");
            n += 1;
        }
        for n in 0..n {
            let key = format!("{prefix}:{n}");
            let reply = call!(c0, "GET", &key);
            assert_eq!(opt_text(&reply), Some(format!("v{n}")), "GET {key} with R = 1");
        }
    };
    // Peers that are down refuse connections at once.
    timed_sets(&mut c0, "refused", Duration::ZERO);
    // Peers that vanished without a reset: their ports accept connections
    // (the kernel's backlog) but nobody ever answers, so every call to them
    // runs into the 2 s request timeout.
    let _holes: Vec<TcpListener> =
        [peer1, peer2].iter().map(|a| TcpListener::bind(a.as_str()).expect("bind a stopped peer's port")).collect();
    timed_sets(&mut c0, "silent", Duration::from_secs(3));
}

#[test]
fn graceful_shutdown_does_not_fail_in_flight_cluster_requests() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let done = Arc::clone(&done);
        let mut c0 = cluster.client(0);
        c0.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(25);
            let mut replies = Vec::new();
            let mut n = 0;
            loop {
                assert!(Instant::now() < deadline, "node 0 still answering after it was stopped");
                let key = format!("inflight:{n}");
                match c0.req_command(redis::cmd("SET").arg(&key).arg(n)) {
                    Ok(reply) => replies.push((key, n, reply)),
                    // The node closed the connection: expected, the end.
                    Err(_) => return replies,
                }
                done.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        })
    };
    wait_for("the writer to get going", WAIT, || (done.load(Ordering::SeqCst) >= 50).then_some(()));
    cluster.stop(0);
    let replies = writer.join().expect("writer");
    assert!(replies.len() >= 50);
    for (key, _, reply) in &replies {
        assert!(matches!(reply, Value::Okay), "SET {key} while node 0 shut down: {reply:?}");
    }
    // What was acknowledged is there.
    let mut c1 = cluster.client(1);
    for (key, n, _) in &replies {
        assert_eq!(get(&mut c1, key), Some(n.to_string()), "acknowledged {key} read through node 1");
    }
}

#[test]
fn append_beyond_proto_max_bulk_len_is_refused() {
    const LEN: usize = 600 * 1024;
    let cluster = TestCluster::start_with(3, |c| {
        c.n = Some(3);
        c.r = Some(2);
        c.w = Some(2);
        c.proto_max_bulk_len = shoal::config::ByteSize(1024 * 1024);
    });
    let mut c: Vec<Connection> = (0..3).map(|i| cluster.client(i)).collect();
    let chunk = vec![b'a'; LEN];
    assert_eq!(int(&call!(c[0], "APPEND", "big", chunk.as_slice())), LEN as i64, "the first APPEND");
    // Through each node: whichever coordinates (or forwards), the same
    // exact error.
    for (i, conn) in c.iter_mut().enumerate() {
        let reply = call!(conn, "APPEND", "big", chunk.as_slice());
        assert_eq!(
            error_text(&reply).as_deref(),
            Some("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
            "an APPEND to 1.2 MB through node {i}: {reply:?}"
        );
    }
    for (i, conn) in c.iter_mut().enumerate() {
        assert_eq!(int(&call!(conn, "STRLEN", "big")), LEN as i64, "STRLEN through node {i}");
    }
    // The cluster keeps serving: reads that go over the peer connections.
    for (i, conn) in c.iter_mut().enumerate() {
        match call!(conn, "GET", "big") {
            Value::BulkString(b) => assert!(b.len() == LEN && b.iter().all(|&x| x == b'a'), "GET big through node {i}"),
            other => panic!("GET big through node {i}: {other:?}"),
        }
        let key = format!("small:{i}");
        set(conn, &key, "still serving");
    }
    for i in 0..3 {
        for (r, conn) in c.iter_mut().enumerate() {
            assert_eq!(get(conn, &format!("small:{i}")).as_deref(), Some("still serving"), "written {i}, read {r}");
        }
    }
}
