//! Anti-entropy: replicas that diverged without any hint to bring them
//! together converge by comparing hash trees, with no client reading the
//! keys.

mod common;

use std::time::Duration;

use common::cluster::TestCluster;
use common::reply::{info, local_keys, set, where_is};
use common::wait_for;
use redis::Connection;

const WAIT: Duration = Duration::from_secs(30);

fn field(c: &mut Connection, name: &str) -> u64 {
    info(c, "antientropy", name).parse().expect("a number")
}

/// Three nodes, N = 3, no hints: a node cut off while 300 keys were
/// written and 20 deleted ends up with exactly what the others hold, by
/// anti-entropy alone, and nothing deleted comes back.
#[test]
fn a_replica_that_missed_writes_without_hints_converges_by_itself() {
    let cluster = TestCluster::start_with(3, |c| {
        c.n = Some(3);
        c.r = Some(2);
        c.w = Some(2);
        c.hinted_handoff = false;
        c.sloppy_quorum = false;
        c.anti_entropy_interval = 2;
    });
    cluster.wait_all_up(WAIT);
    let mut c0 = cluster.client(0);
    let deleted: Vec<String> = (0..20).map(|i| format!("gone:{i}")).collect();
    for k in &deleted {
        set(&mut c0, k, "soon deleted");
    }
    // Everyone holds the keys to delete before the cut.
    for k in &deleted {
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
