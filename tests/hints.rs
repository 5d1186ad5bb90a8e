//! Hinted handoff: a replica that missed writes while it was down or cut
//! off receives them from the coordinators' hints once it is back, without
//! any client reading the keys.

mod common;

use std::time::Duration;

use common::cluster::TestCluster;
use common::reply::{info, int, members, set, text, where_is};
use common::{Shoal, wait_for};
use redis::Connection;

/// Bound for every poll.
const WAIT: Duration = Duration::from_secs(10);

fn hints(c: &mut Connection, field: &str) -> u64 {
    info(c, "hints", field).parse().expect("a number")
}

/// Node `node`'s copy of `key` as SHOAL.WHERE (through `via`) shows it:
/// (values held, context); SHOAL.WHERE asks each replica for its copy and
/// repairs nothing.
fn copy_at(cluster: &TestCluster, via: &mut Connection, node: usize, key: &str) -> Option<(i64, String)> {
    let port = cluster.port(node);
    let (_, holders) = where_is(via, key);
    let h = holders.into_iter().find(|h| h.port == port).expect("a replica");
    h.copy.ok().map(|(_, values, context)| (values, context))
}

/// Waits until every replica, node `node` among them, holds each key of
/// `keys` with one value, all alike.
fn wait_caught_up(via: &mut Connection, node: usize, keys: &[String]) {
    for k in keys {
        wait_for(&format!("node {node} to receive {k}"), WAIT, || {
            let (_, holders) = where_is(via, k);
            let copies: Vec<_> = holders.iter().map(|h| h.copy.clone()).collect();
            let all_same = copies.iter().all(|c| c.as_ref().is_ok_and(|c| c.1 == 1) && *c == copies[0]);
            all_same.then_some(())
        });
    }
}

#[test]
fn a_replica_that_was_down_receives_what_it_missed_from_hints() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    cluster.stop(2);
    let keys: Vec<String> = (0..300).map(|i| format!("hinted:{i}")).collect();
    {
        let mut c0 = cluster.client(0);
        let mut c1 = cluster.client(1);
        for (i, k) in keys.iter().enumerate() {
            set(if i % 2 == 0 { &mut c0 } else { &mut c1 }, k, &format!("v {k}"));
        }
        // Every write missed node 2: one hint each, on its coordinator.
        wait_for("the hints to be kept", WAIT, || {
            (hints(&mut c0, "hints_pending") + hints(&mut c1, "hints_pending") == 300).then_some(())
        });
        assert_eq!(hints(&mut c0, "hints_stored") + hints(&mut c1, "hints_stored"), 300);
        // SHOAL.STATUS shows them by the member they are for.
        let for_node_2 = |c: &mut Connection| -> i64 {
            let port = cluster.port(2).to_string();
            members(c)
                .iter()
                .filter(|m| text(&m["address"]).ends_with(&format!(":{port}")))
                .map(|m| int(&m["hints"]))
                .sum()
        };
        assert_eq!(for_node_2(&mut c0) + for_node_2(&mut c1), 300);
        assert_eq!(info(&mut c0, "hints", "hinted_handoff"), "1");
    }
    // The hints survive a restart of the node that keeps them.
    cluster.stop(0);
    cluster.restart(0);
    cluster.restart(2);
    cluster.wait_all_up(WAIT);
    let mut c0 = cluster.client(0);
    let mut c1 = cluster.client(1);
    // No client reads a key: node 2 catches up from the hints alone.
    wait_caught_up(&mut c1, 2, &keys);
    for k in &keys {
        assert!(copy_at(&cluster, &mut c1, 2, k).is_some_and(|(values, _)| values == 1), "{k}");
    }
    wait_for("the delivered hints to go", WAIT, || {
        (hints(&mut c0, "hints_pending") + hints(&mut c1, "hints_pending") == 0).then_some(())
    });
    assert_eq!(hints(&mut c0, "hints_delivered") + hints(&mut c1, "hints_delivered"), 300);
    // No read repaired anything: the hints did it all.
    for c in [&mut c0, &mut c1] {
        assert_eq!(info(c, "cluster", "shoal_read_repairs"), "0");
    }
}

#[test]
fn a_replica_cut_off_receives_the_writes_once_the_cut_heals() {
    let cluster = TestCluster::start(3, 3, 2, 2);
    cluster.isolate(2);
    let keys: Vec<String> = (0..100).map(|i| format!("cut:{i}")).collect();
    let mut c0 = cluster.client(0);
    for k in &keys {
        set(&mut c0, k, "during the cut");
    }
    wait_for("the hints to be kept", WAIT, || (hints(&mut c0, "hints_pending") == 100).then_some(()));
    cluster.heal();
    cluster.wait_all_up(WAIT);
    wait_caught_up(&mut c0, 2, &keys);
    wait_for("the delivered hints to go", WAIT, || (hints(&mut c0, "hints_pending") == 0).then_some(()));
    // A hint delivered again changes nothing: the writes are merged by
    // their versions, so the copies stay equal (checked above) and one.
    assert_eq!(hints(&mut c0, "hints_delivered"), 100);
}

/// Waits until `node` sees `n` members, all up.
fn wait_all_up(node: &Shoal, n: u64) {
    wait_for(&format!("node on {} to see {n} members up", node.port), Duration::from_secs(30), || {
        let mut c = node.client();
        let up: u64 = info(&mut c, "cluster", "shoal_members_up").parse().expect("a number");
        (up == n).then_some(())
    });
}

/// Real processes: the node keeping hints is killed with SIGKILL before it
/// could deliver them, and delivers them after its restart.
#[test]
fn hints_survive_a_kill_9_of_the_node_that_keeps_them() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = |name: &str| temp.path().join(name);
    let env = [("SHOAL_N", "3"), ("SHOAL_R", "2"), ("SHOAL_W", "2")];
    let a = Shoal::spawn(&dir("a"), &[], &env);
    let seed = format!("127.0.0.1:{}", a.peer_port);
    let b = Shoal::spawn(&dir("b"), &["--seeds", &seed], &[]);
    let c = Shoal::spawn(&dir("c"), &["--seeds", &seed], &[]);
    for node in [&a, &b, &c] {
        wait_all_up(node, 3);
    }
    let (a_ports, c_ports) = ((a.port, a.peer_port), (c.port, c.peer_port));
    c.kill9();
    let keys: Vec<String> = (0..200).map(|i| format!("killed:{i}")).collect();
    {
        let mut ca = a.client();
        for k in &keys {
            set(&mut ca, k, &format!("v {k}"));
        }
        wait_for("the hints to be kept", WAIT, || (hints(&mut ca, "hints_pending") == 200).then_some(()));
    }
    a.kill9();
    let c = Shoal::spawn_at(&dir("c"), c_ports.0, Some(c_ports.1), &["--seeds", &seed], &[]);
    let a = Shoal::spawn_at(&dir("a"), a_ports.0, Some(a_ports.1), &[], &[]);
    for node in [&a, &b, &c] {
        wait_all_up(node, 3);
    }
    let mut cb = b.client();
    wait_caught_up(&mut cb, 2, &keys);
    let mut ca = a.client();
    wait_for("the delivered hints to go", WAIT, || (hints(&mut ca, "hints_pending") == 0).then_some(()));
    for node in [&a, &b, &c] {
        assert_eq!(info(&mut node.client(), "cluster", "shoal_read_repairs"), "0", "no read repaired anything");
    }
}
