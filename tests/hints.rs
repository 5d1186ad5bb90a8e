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
/// Waits until `node` sees `n` members up, all in its settled ring.
fn wait_all_up(node: &Shoal, n: u64) {
    wait_for(&format!("node on {} to see {n} members up", node.port), Duration::from_secs(30), || {
        let mut c = node.client();
        let up: u64 = info(&mut c, "cluster", "shoal_members_up").parse().expect("a number");
        (up == n).then_some(())
    });
    node.wait_ring(n as usize);
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

/// Real processes, four nodes with N = 3: while one is killed, the
/// fallbacks standing in for it keep the writes it misses. One of them is
/// killed with SIGKILL in the middle of handing them back (delivery slowed
/// down to make that moment last), and finishes after its restart: the
/// returning node ends up holding every key, and no hint is left.
#[test]
fn a_fallback_killed_while_handing_hints_back_finishes_after_its_restart() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = |name: &str| temp.path().join(name);
    // About 60 bytes a hint: the hundred or so each fallback keeps take
    // seconds to hand back.
    let env = [("SHOAL_N", "3"), ("SHOAL_R", "2"), ("SHOAL_W", "2"), ("SHOAL_HINT_DELIVERY_RATE", "1kb")];
    let a = Shoal::spawn(&dir("a"), &[], &env);
    let seed = format!("127.0.0.1:{}", a.peer_port);
    let mut nodes = vec![Some(a)];
    for name in ["b", "c", "d"] {
        nodes.push(Some(Shoal::spawn(&dir(name), &["--seeds", &seed], &env)));
    }
    for node in nodes.iter().flatten() {
        wait_all_up(node, 4);
    }
    let ports: Vec<(u16, u16)> = nodes.iter().flatten().map(|n| (n.port, n.peer_port)).collect();
    nodes[3].take().expect("d").kill9();
    for node in nodes.iter().flatten() {
        wait_for("d to be seen down", WAIT, || {
            let up: u64 = info(&mut node.client(), "cluster", "shoal_members_up").parse().expect("a number");
            (up == 3).then_some(())
        });
    }
    let keys: Vec<String> = (0..300).map(|i| format!("fallback:{i}")).collect();
    {
        let mut ca = nodes[0].as_ref().expect("a").client();
        for k in &keys {
            set(&mut ca, k, &format!("v {k}"));
        }
    }
    // Every key d is a replica of went to a fallback, which keeps it.
    let pending = |n: &Shoal| hints(&mut n.client(), "hints_pending");
    let held: Vec<u64> = nodes.iter().flatten().map(pending).collect();
    assert!(held.iter().sum::<u64>() > 100, "hints kept: {held:?}");
    let d = Shoal::spawn_at(&dir("d"), ports[3].0, Some(ports[3].1), &["--seeds", &seed], &env);
    // The node handing the most back is killed once it has handed some.
    let keeper = (0..3).max_by_key(|&i| held[i]).expect("a node");
    let k = nodes[keeper].take().expect("the keeper");
    wait_for("delivery to start", WAIT, || (hints(&mut k.client(), "hints_delivered") > 0).then_some(()));
    let left = pending(&k);
    assert!(left > 0, "killed in the middle of the delivery");
    k.kill9();
    let name = ["a", "b", "c"][keeper];
    let seeds = if keeper == 0 { format!("127.0.0.1:{}", ports[1].1) } else { seed.clone() };
    let k = Shoal::spawn_at(&dir(name), ports[keeper].0, Some(ports[keeper].1), &["--seeds", &seeds], &env);
    // Those not handed over yet survived the kill (a few more may have
    // gone between the count and the kill).
    let after = pending(&k);
    assert!(after > 0 && after <= left, "{after} hints after the restart, {left} before the kill");
    nodes[keeper] = Some(k);
    nodes.push(Some(d));
    let all: Vec<&Shoal> = nodes.iter().flatten().collect();
    for node in &all {
        wait_all_up(node, 4);
    }
    // d holds every key it is a replica of, by itself.
    let d = all[3];
    let mut c = all[0].client();
    for k in &keys {
        wait_for(&format!("d to hold {k}"), Duration::from_secs(60), || {
            let (_, holders) = where_is(&mut c, k);
            let on_d = holders.iter().find(|h| h.port == d.port).expect("d in every list");
            (!on_d.primary || on_d.copy.as_ref().is_ok_and(|c| c.0 == 1 && c.1 == 1)).then_some(())
        });
    }
    for node in &all {
        wait_for("every hint handed back", Duration::from_secs(60), || (pending(node) == 0).then_some(()));
        assert_eq!(info(&mut node.client(), "cluster", "shoal_read_repairs"), "0", "no read repaired anything");
    }
}

/// Hints past the window are refused, counted, logged and their partitions
/// marked for repair; the writes still succeed (W is met without them).
#[test]
fn hints_past_the_window_are_refused_and_reported() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.n = Some(3);
        c.r = Some(2);
        c.w = Some(2);
        c.hint_window = 1;
    });
    cluster.stop(2);
    let mut c0 = cluster.client(0);
    set(&mut c0, "early", "v");
    wait_for("the first hint to be kept", WAIT, || (hints(&mut c0, "hints_pending") == 1).then_some(()));
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..20 {
        set(&mut c0, &format!("late:{i}"), "v");
    }
    wait_for("the late hints to be refused", WAIT, || (hints(&mut c0, "hints_refused") == 20).then_some(()));
    assert_eq!(hints(&mut c0, "hints_pending"), 1);
    let marked = hints(&mut c0, "partitions_needing_repair");
    assert!((1..=20).contains(&marked), "{marked} partitions marked");
    let all: String = redis::cmd("INFO").arg("hints").query(&mut c0).expect("INFO");
    assert!(all.contains("oldest_age_seconds="), "the bound's cause is shown per node:\n{all}");
    // The one kept is delivered once node 2 is back; the marks stay for
    // anti-entropy, across a restart.
    cluster.restart(2);
    cluster.wait_all_up(WAIT);
    let mut c0 = cluster.client(0);
    wait_for("the kept hint to be delivered", WAIT, || (hints(&mut c0, "hints_pending") == 0).then_some(()));
    drop(c0);
    cluster.stop(0);
    cluster.restart(0);
    assert_eq!(hints(&mut cluster.client(0), "partitions_needing_repair"), marked);
    // Anti-entropy compares the marked partitions first, with every
    // replica, and then forgets the marks.
    cluster.stop(0);
    cluster.restart_with(0, |c| c.anti_entropy_interval = 1);
    cluster.wait_all_up(WAIT);
    let mut c0 = cluster.client(0);
    wait_for("the marks to go", WAIT, || (hints(&mut c0, "partitions_needing_repair") == 0).then_some(()));
    wait_for("every partition compared", WAIT, || {
        let age: i64 = info(&mut c0, "antientropy", "oldest_comparison_age_seconds").parse().expect("a number");
        (age >= 0).then_some(())
    });
}

/// A write a fallback kept longer than the grace period (here 1 s) is not
/// handed over: it could bring back a delete every replica has since
/// forgotten. The fallback drops it, marks its partition for repair, and
/// anti-entropy brings the write to the returning replica from the
/// replicas that hold it.
#[test]
fn a_fallback_drops_a_write_kept_past_the_grace_and_anti_entropy_brings_it() {
    let cluster = TestCluster::start_with(4, |c| {
        c.n = Some(3);
        c.w = Some(2);
        c.tombstone_grace = 1;
        c.anti_entropy_interval = 1;
    });
    cluster.wait_all_up(WAIT);
    cluster.isolate(3);
    // Seen down by every coordinator, so fallbacks keep every write (a
    // coordinator's own hint, kept when a replica fails before it is seen
    // down, is about its own data and is handed over whatever its age).
    for i in 0..3 {
        let mut c = cluster.client(i);
        wait_for("node 3 to be seen down", WAIT, || (info(&mut c, "cluster", "shoal_members_up") == "3").then_some(()));
    }
    let mut c0 = cluster.client(0);
    let keys: Vec<String> = (0..100).map(|i| format!("late:{i}")).collect();
    for k in &keys {
        set(&mut c0, k, "v");
    }
    let kept: u64 = (0..3).map(|i| hints(&mut cluster.client(i), "hints_pending")).sum();
    assert!(kept > 0, "fallbacks keep writes for node 3");
    std::thread::sleep(Duration::from_millis(2500));
    cluster.heal();
    cluster.wait_all_up(WAIT);
    for i in 0..4 {
        let mut c = cluster.client(i);
        wait_for("the hints to go", WAIT, || (hints(&mut c, "hints_pending") == 0).then_some(()));
        assert_eq!(hints(&mut c, "hints_delivered"), 0, "node {i} handed over a write kept past the grace");
    }
    // Anti-entropy brings node 3 every key it replicates (SHOAL.WHERE
    // lists a fallback too, which holds nothing now).
    for k in &keys {
        wait_for(&format!("every replica to hold {k}"), WAIT, || {
            let (_, holders) = where_is(&mut c0, k);
            let copies: Vec<_> = holders.iter().filter(|h| h.primary).map(|h| h.copy.clone()).collect();
            copies.iter().all(|c| c.as_ref().is_ok_and(|c| c.1 == 1) && *c == copies[0]).then_some(())
        });
    }
}

/// A node that stops replicating partitions in a ring change keeps its
/// copies of them while it holds hints about their keys for a replica that
/// missed the writes (delivering a hint reads the key from that copy):
/// once the replica is back, the hints hand it every write, and only then
/// do the copies go.
#[test]
fn a_copy_that_hints_still_hand_over_is_kept_until_they_are_delivered() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.n = Some(3);
        c.r = Some(2);
        c.w = Some(2);
        c.transfer_drop_delay = 1;
    });
    cluster.stop(2);
    let mut c0 = cluster.client(0);
    wait_for("node 2 to be seen down", WAIT, || (info(&mut c0, "cluster", "shoal_members_up") == "2").then_some(()));
    // Node 0, a replica of every key, coordinates each write: one hint each
    // for node 2.
    let keys: Vec<String> = (0..300).map(|i| format!("kept:{i}")).collect();
    for k in &keys {
        set(&mut c0, k, &format!("v {k}"));
    }
    wait_for("the hints to be kept", WAIT, || (hints(&mut c0, "hints_pending") == 300).then_some(()));

    // A 4th node joins: node 0 leaves the replica sets of some partitions.
    let d = cluster.add();
    let settled = |c: &mut Connection| {
        info(c, "cluster", "shoal_ring_members") == "4"
            && info(c, "cluster", "shoal_ring_change") == "0"
            && info(c, "cluster", "shoal_ring_staged") == "0"
    };
    for i in [0, 1, d] {
        let mut c = cluster.client(i);
        wait_for("the join to end", Duration::from_secs(30), || settled(&mut c).then_some(()));
    }
    let replicated = |c: &mut Connection| {
        let id = members(c).into_iter().find(|m| int(&m["self"]) == 1).map(|m| text(&m["id"])).expect("self");
        keys.iter().filter(|k| where_is(c, k).1.iter().any(|h| h.primary && h.id == id)).count() as u64
    };
    let mine = replicated(&mut c0);
    assert!(mine < 300, "node 0 still replicates every key");
    // Past the drop delay, node 0 still holds every key: each one's hint
    // is waiting on it.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(common::reply::local_keys(&mut c0), 300, "a copy that hints hand over was dropped");

    // Node 2 comes back: the hints hand it every write it replicates, then
    // node 0 drops what it no longer replicates.
    cluster.restart(2);
    wait_for("the hints to be delivered", Duration::from_secs(30), || {
        (hints(&mut c0, "hints_pending") == 0).then_some(())
    });
    let mut c2 = cluster.client(2);
    for k in &keys {
        let (_, holders) = where_is(&mut c2, k);
        if holders.iter().any(|h| h.port == cluster.port(2) && h.primary) {
            assert_eq!(copy_at(&cluster, &mut c2, 2, k).map(|c| c.0), Some(1), "node 2's copy of {k}");
        }
    }
    wait_for("node 0 to drop what it no longer replicates", Duration::from_secs(30), || {
        (common::reply::local_keys(&mut c0) == mine).then_some(())
    });
}
