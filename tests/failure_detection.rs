//! Failure detection and membership under partitions, in-process: nodes
//! are cut off from each other through the peer layer's test seam
//! (`TestCluster::cut`, `isolate`, `heal`), and what each node believes is
//! read from `SHOAL.STATUS` through real clients.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::reply::{call, error_text, get, int, members, set, text};
use common::wait_for;
use redis::Value;

/// Who node `i` believes is up: member id → up.
fn liveness(cluster: &TestCluster, i: usize) -> BTreeMap<String, bool> {
    members(&mut cluster.client(i)).iter().map(|m| (text(&m["id"]), int(&m["up"]) == 1)).collect()
}

/// Node `i`'s member table as it matters for agreement: id → (peer
/// address, status).
fn table(cluster: &TestCluster, i: usize) -> BTreeMap<String, (String, String)> {
    members(&mut cluster.client(i)).iter().map(|m| (text(&m["id"]), (text(&m["peer"]), text(&m["status"])))).collect()
}

/// Node `i`'s own id.
fn id_of(cluster: &TestCluster, i: usize) -> String {
    let all = members(&mut cluster.client(i));
    text(&all.iter().find(|m| int(&m["self"]) == 1).expect("self")["id"])
}

fn is_noquorum(v: &Value) -> bool {
    error_text(v).is_some_and(|e| e.starts_with("NOQUORUM"))
}

#[test]
fn a_node_cut_off_is_seen_down_within_ten_seconds_and_up_again_once_healed() {
    // Default gossip interval and phi threshold; a long request timeout,
    // so a request that waited for the cut node would show it.
    let cluster = TestCluster::start_with(3, |c| {
        c.n = Some(3);
        c.r = Some(2);
        c.w = Some(2);
        c.gossip_interval = 1000;
        c.request_timeout = 5000;
    });
    cluster.wait_all_up(Duration::from_secs(20));
    let cut = id_of(&cluster, 2);
    let mut c0 = cluster.client(0);
    set(&mut c0, "before", "the cut");

    cluster.isolate(2);
    let cut_at = Instant::now();
    for i in [0, 1] {
        wait_for(&format!("node {i} to see node 2 down"), Duration::from_secs(10), || {
            (liveness(&cluster, i).get(&cut) == Some(&false)).then_some(())
        });
    }
    let detected = cut_at.elapsed();
    assert!(detected < Duration::from_secs(10), "node 2 was seen down after {detected:?}");
    // Node 2, for its part, sees both others down.
    wait_for("node 2 to see the others down", Duration::from_secs(10), || {
        let seen = liveness(&cluster, 2);
        (seen.values().filter(|&&up| !up).count() == 2).then_some(())
    });

    // A request that needs node 2 answers at once, not after the timeout.
    let started = Instant::now();
    let reply = call!(c0, "GETCTX", "before", "R", 3);
    let took = started.elapsed();
    assert!(is_noquorum(&reply), "R 3 with a replica down: {reply:?}");
    assert!(took < Duration::from_millis(2500), "R 3 with node 2 known down took {took:?} (timeout 5 s)");
    // What does not need it is served, without waiting for it either.
    let started = Instant::now();
    set(&mut c0, "during", "the cut");
    assert_eq!(get(&mut cluster.client(1), "during").as_deref(), Some("the cut"));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "a W 2 write and R 2 read took {took:?}");
    // Node 2 alone cannot make W = 2 and says so at once.
    let mut c2 = cluster.client(2);
    let started = Instant::now();
    let reply = call!(c2, "SET", "lonely", "write");
    let took = started.elapsed();
    assert!(is_noquorum(&reply), "a write through the cut-off node: {reply:?}");
    assert!(took < Duration::from_millis(2500), "the cut-off node's refusal took {took:?}");

    cluster.heal();
    let healed_at = Instant::now();
    cluster.wait_all_up(Duration::from_secs(15));
    let back = healed_at.elapsed();
    // Every acknowledged write is there, at R 3 too.
    for key in ["before", "during"] {
        for i in 0..3 {
            wait_for(&format!("{key} at R 3 through node {i}"), Duration::from_secs(10), || {
                let reply = call!(cluster.client(i), "GETCTX", key, "R", 3);
                matches!(reply, Value::Array(_)).then_some(())
            });
        }
    }
    eprintln!("cut node seen down after {detected:?}; seen up again {back:?} after healing");
}

#[test]
fn a_cut_between_two_nodes_only_converges_on_one_view() {
    let cluster = TestCluster::start(3, 3, 2, 2);
    cluster.wait_all_up(Duration::from_secs(10));
    let mut c0 = cluster.client(0);
    let mut c1 = cluster.client(1);

    // Nodes 0 and 1 cannot talk; each still reaches node 2.
    cluster.cut(0, 1);
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    let mut n = 0;
    while Instant::now() < until {
        // Both sides keep taking writes at W 2 (with node 2).
        for (c, side) in [(&mut c0, 0), (&mut c1, 1)] {
            let key = format!("k{n}-via{side}");
            match call!(c, "SET", &key, n) {
                Value::Okay => acknowledged.push(key),
                other => refused.push((key, other)),
            }
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(refused.is_empty(), "writes refused during a one-link cut: {refused:?}");

    // One view: the same members everywhere, and (heartbeats travel through
    // node 2) nobody believes a live node down.
    let tables: Vec<_> = (0..3).map(|i| table(&cluster, i)).collect();
    assert_eq!(tables[0].len(), 3, "{tables:?}");
    assert!(tables.iter().all(|t| *t == tables[0]), "views differ: {tables:?}");
    for i in 0..3 {
        let seen = liveness(&cluster, i);
        assert!(seen.values().all(|&up| up), "node {i} believes a live node down during a one-link cut: {seen:?}");
    }

    cluster.heal();
    cluster.wait_all_up(Duration::from_secs(10));
    for key in &acknowledged {
        assert!(get(&mut c1, key).is_some(), "{key} lost");
        assert!(get(&mut c0, key).is_some(), "{key} lost");
    }
}

#[test]
fn a_node_restarted_without_seeds_rejoins_from_its_saved_view() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    cluster.wait_all_up(Duration::from_secs(10));
    let mut c0 = cluster.client(0);
    set(&mut c0, "kept", "across restarts");

    for i in [1, 0] {
        cluster.stop(i);
        cluster.restart_with(i, |c| c.seeds.clear());
        cluster.wait_all_up(Duration::from_secs(10));
        let mut c = cluster.client(i);
        // It is a member again, not a cluster of its own: it reads at R 3
        // with the others and writes at W 2.
        wait_for(&format!("node {i} to read at R 3"), Duration::from_secs(10), || {
            matches!(call!(c, "GETCTX", "kept", "R", 3), Value::Array(_)).then_some(())
        });
        set(&mut c, &format!("written after restart {i}"), "yes");
        let tables: Vec<_> = (0..3).map(|j| table(&cluster, j)).collect();
        assert!(tables.iter().all(|t| *t == tables[0] && t.len() == 3), "views differ: {tables:?}");
    }
    for i in 0..3 {
        let mut c = cluster.client(i);
        assert_eq!(get(&mut c, "kept").as_deref(), Some("across restarts"));
        assert_eq!(get(&mut c, "written after restart 1").as_deref(), Some("yes"));
        assert_eq!(get(&mut c, "written after restart 0").as_deref(), Some("yes"));
    }
}
