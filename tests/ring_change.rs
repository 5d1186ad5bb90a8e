//! Ring changes end to end: a cluster grows and shrinks (a join, a leave,
//! the removal of a dead member) under a client writing and reading
//! through every member, and transfers interrupted by a kill -9 of either
//! side resume where they stopped.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{TestCluster, members_seen};
use common::reply::{error_text, info, int, local_keys, members, ring_of, text};
use common::{Shoal, XorShift, wait_for};
use redis::{ConnectionLike, Value};
use shoal::version::NodeId;

/// Bound for every wait on the cluster.
const WAIT: Duration = Duration::from_secs(30);
/// Partitions of the in-process cluster (as the harness sets them).
const Q: usize = 64;

/// Waits until every node of `nodes` sees `size` members and holds the
/// same settled ring (nothing staged or in progress) of `size` owners;
/// returns its epoch.
fn wait_ring(cluster: &TestCluster, nodes: &[usize], size: usize) -> u64 {
    wait_for(&format!("nodes {nodes:?} to hold one settled ring of {size} members"), WAIT, || {
        let epochs: Vec<u64> = nodes
            .iter()
            .map(|&i| match members_seen(cluster.port(i))? {
                (m, Some((ring, epoch))) if m == size && ring == size => Some(epoch),
                _ => None,
            })
            .collect::<Option<_>>()?;
        epochs.windows(2).all(|w| w[0] == w[1]).then(|| epochs[0])
    })
}

/// Asks for a ring change (`args`, e.g. SHOAL.LEAVE NOW), again while it
/// answers TRYAGAIN (a claimant that just became one catches up with its
/// peers' ring first); its answer.
fn change(c: &mut redis::Connection, args: &[&str]) -> String {
    wait_for(&format!("{args:?} to be taken"), WAIT, || match redis::cmd(args[0]).arg(&args[1..]).query::<String>(c) {
        Ok(reply) => Some(reply),
        Err(e) if e.code() == Some("TRYAGAIN") => None,
        Err(e) => panic!("{args:?}: {e}"),
    })
}

/// Node `i`'s own id, as its SHOAL.STATUS shows it.
fn id_of(cluster: &TestCluster, i: usize) -> NodeId {
    let me = members(&mut cluster.client(i)).into_iter().find(|m| int(&m["self"]) == 1).expect("self");
    NodeId(u64::from_str_radix(&text(&me["id"]), 16).expect("a hex id"))
}

/// Asserts that every node of `nodes` holds the same ring, owned by
/// exactly `ids`, each owning Q/S ± 1 partitions.
#[track_caller]
fn assert_balanced(cluster: &TestCluster, nodes: &[usize], ids: &[NodeId]) {
    let ring = ring_of(&mut cluster.client(nodes[0]));
    for &i in &nodes[1..] {
        assert_eq!(ring_of(&mut cluster.client(i)).owners(), ring.owners(), "node {i} holds another ring");
    }
    let mut owners = ring.members();
    owners.sort_unstable();
    let mut expected = ids.to_vec();
    expected.sort_unstable();
    assert_eq!(owners, expected, "the ring's owners");
    let share = Q as f64 / ids.len() as f64;
    for &id in ids {
        let owned = ring.owned_by(id);
        assert!((owned as f64 - share).abs() <= 1.0, "{id} owns {owned} of {Q} partitions; {share:.2} ± 1 expected");
    }
}

/// The phases of the grow-and-shrink test, for counting what happened in
/// each.
const PHASES: [&str; 4] = [
    "a: a 4th node joins",
    "b: node 1 leaves",
    "c: node 2 stopped, not yet seen down",
    "c: node 2 seen down and removed",
];
/// The one phase in which requests may fail (the docs: until the failure
/// detector sees a dead replica down, requests that need it can fail).
const MAY_FAIL: usize = 2;

/// Keys the load writes and reads, each with a counter as its value.
const LOAD_KEYS: usize = 500;
const WORKERS: usize = 2;

fn load_key(i: usize) -> String {
    format!("load:{i}")
}

fn load_value(i: usize, counter: u64) -> String {
    format!("load:{i}={counter}")
}

/// The counter in a value of key `i`, or why it is not one.
fn counter_in(i: usize, value: &str) -> Result<u64, String> {
    value
        .strip_prefix(&format!("load:{i}="))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("load:{i} holds {value:?}, not one of its values"))
}

/// A request that failed: (phase, port, request, error, when it was sent
/// since the load began).
type Failure = (usize, u16, String, String, Duration);

/// What the load threads share with the test.
struct Load {
    stop: AtomicBool,
    phase: AtomicUsize,
    /// The client ports requests go to, in turn.
    targets: Mutex<Vec<u16>>,
    /// Raised with every change of `targets`; each worker records the
    /// one it works with (so the test knows when none still sends to a
    /// port taken out).
    generation: AtomicU64,
    seen: Vec<AtomicU64>,
    failures: Mutex<Vec<Failure>>,
    /// When the load began.
    began: Instant,
    /// Reads that returned an older value than one acknowledged before.
    stale: Mutex<Vec<String>>,
    sets: Vec<AtomicU64>,
    gets: Vec<AtomicU64>,
}

impl Load {
    fn new(targets: Vec<u16>) -> Self {
        Self {
            stop: AtomicBool::new(false),
            phase: AtomicUsize::new(0),
            targets: Mutex::new(targets),
            generation: AtomicU64::new(0),
            seen: (0..WORKERS).map(|_| AtomicU64::new(0)).collect(),
            failures: Mutex::new(Vec::new()),
            stale: Mutex::new(Vec::new()),
            began: Instant::now(),
            sets: PHASES.iter().map(|_| AtomicU64::new(0)).collect(),
            gets: PHASES.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Sends requests to `targets` only, from once this returns.
    fn retarget(&self, targets: Vec<u16>) {
        *self.targets.lock().expect("targets") = targets;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        wait_for("every load thread to take the new targets", WAIT, || {
            self.seen.iter().all(|s| s.load(Ordering::SeqCst) >= generation).then_some(())
        });
    }

    fn ops(&self, phase: usize) -> (u64, u64) {
        (self.sets[phase].load(Ordering::SeqCst), self.gets[phase].load(Ordering::SeqCst))
    }
}

/// Per key of a worker: the highest counter acknowledged, and the highest
/// sent (a failed write may still have been applied).
#[derive(Clone, Copy, Default)]
struct KeyState {
    acked: u64,
    sent: u64,
}

/// One load thread: writes (a counter one higher each time) and reads its
/// own keys (those `i % WORKERS == w`), through each target in turn,
/// checking every read against what was acknowledged before it was sent.
fn worker(load: &Load, w: usize) -> HashMap<usize, KeyState> {
    let mine: Vec<usize> = (0..LOAD_KEYS).filter(|i| i % WORKERS == w).collect();
    let mut keys: HashMap<usize, KeyState> = mine.iter().map(|&i| (i, KeyState::default())).collect();
    let mut conns: HashMap<u16, redis::Connection> = HashMap::new();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
    let mut turn = 0usize;
    while !load.stop.load(Ordering::SeqCst) {
        let generation = load.generation.load(Ordering::SeqCst);
        let targets = load.targets.lock().expect("targets").clone();
        load.seen[w].store(generation, Ordering::SeqCst);
        let port = targets[turn % targets.len()];
        turn += 1;
        let phase = load.phase.load(Ordering::SeqCst);
        let i = mine[rng.below(mine.len() as u64) as usize];
        let sent = load.began.elapsed();
        let fail =
            |what: String, why: String| load.failures.lock().expect("failures").push((phase, port, what, why, sent));
        let conn = match conns.entry(port) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let connected = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)));
                match connected {
                    Ok(c) => {
                        c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                        e.insert(c)
                    }
                    Err(err) => {
                        fail("connect".into(), err.to_string());
                        continue;
                    }
                }
            }
        };
        let state = keys.get_mut(&i).expect("a key of this worker");
        if rng.below(2) == 0 {
            let counter = state.sent + 1;
            state.sent = counter;
            let what = format!("SET {} {}", load_key(i), load_value(i, counter));
            match conn.req_command(redis::cmd("SET").arg(load_key(i)).arg(load_value(i, counter))) {
                Ok(Value::Okay) => {
                    state.acked = counter;
                    load.sets[phase].fetch_add(1, Ordering::SeqCst);
                }
                Ok(other) => fail(what, error_text(&other).unwrap_or_else(|| format!("{other:?}"))),
                Err(e) => {
                    conns.remove(&port);
                    fail(what, format!("connection: {e}"));
                }
            }
        } else {
            let acked = state.acked;
            let what = format!("GET {}", load_key(i));
            match conn.req_command(redis::cmd("GET").arg(load_key(i))) {
                Ok(Value::BulkString(b)) => {
                    load.gets[phase].fetch_add(1, Ordering::SeqCst);
                    let value = String::from_utf8_lossy(&b).into_owned();
                    match counter_in(i, &value) {
                        Ok(c) if c >= acked && c <= state.sent => {}
                        Ok(c) => load.stale.lock().expect("stale").push(format!(
                            "{} through port {port} in phase {:?}: read {c}, {acked} acknowledged before, {} sent",
                            load_key(i),
                            PHASES[phase],
                            state.sent
                        )),
                        Err(why) => load.stale.lock().expect("stale").push(why),
                    }
                }
                Ok(Value::Nil) => {
                    load.gets[phase].fetch_add(1, Ordering::SeqCst);
                    load.stale.lock().expect("stale").push(format!(
                        "{} through port {port} in phase {:?}: nil, {acked} acknowledged before",
                        load_key(i),
                        PHASES[phase]
                    ));
                }
                Ok(other) => fail(what, error_text(&other).unwrap_or_else(|| format!("{other:?}"))),
                Err(e) => {
                    conns.remove(&port);
                    fail(what, format!("connection: {e}"));
                }
            }
        }
    }
    keys
}

/// Writes `entries` through `c` in pipelines of a thousand.
fn preload(c: &mut redis::Connection, entries: impl Iterator<Item = (String, String)>) -> usize {
    let entries: Vec<(String, String)> = entries.collect();
    for chunk in entries.chunks(1000) {
        let mut pipe = redis::pipe();
        for (k, v) in chunk {
            pipe.cmd("SET").arg(k).arg(v).ignore();
        }
        pipe.query::<()>(c).expect("preload");
    }
    entries.len()
}

#[test]
fn a_cluster_grows_and_shrinks_under_load_without_losing_or_staling_anything() {
    let started = Instant::now();
    let mut cluster = TestCluster::start_with(3, |c| {
        c.n = Some(3);
        c.r = Some(2);
        c.w = Some(2);
        // Copies no longer replicated go soon, inside the test.
        c.transfer_drop_delay = 2;
    });
    // 2000 keys: the load's 500 (counter 0) and 1500 written once.
    let other = |i: usize| (format!("pre:{i}"), format!("pre value {i}"));
    preload(
        &mut cluster.client(0),
        (0..LOAD_KEYS).map(|i| (load_key(i), load_value(i, 0))).chain((0..1500).map(other)),
    );
    let ids: Vec<NodeId> = (0..3).map(|i| id_of(&cluster, i)).collect();

    let load = Arc::new(Load::new((0..3).map(|i| cluster.port(i)).collect()));
    let threads: Vec<_> = (0..WORKERS)
        .map(|w| {
            let load = Arc::clone(&load);
            std::thread::spawn(move || worker(&load, w))
        })
        .collect();
    // Each phase waits for some load first, so that every phase has some.
    let some_load = |phase: usize| {
        wait_for(&format!("load in phase {:?}", PHASES[phase]), WAIT, || {
            let (sets, gets) = load.ops(phase);
            (sets >= 100 && gets >= 100).then_some(())
        });
    };

    // (a) A 4th node joins.
    let t = Instant::now();
    some_load(0);
    eprintln!("node 3 starts {:?} into the load", load.began.elapsed());
    let d = cluster.add();
    let id_d = id_of(&cluster, d);
    let epoch = wait_ring(&cluster, &[0, 1, 2, 3], 4);
    eprintln!("4 members, settled at epoch {epoch}, {:?} into the load", load.began.elapsed());
    assert_balanced(&cluster, &[0, 1, 2, 3], &[ids[0], ids[1], ids[2], id_d]);
    let ring_a = ring_of(&mut cluster.client(0));
    let all_ids = [ids[0], ids[1], ids[2], id_d];
    load.retarget((0..4).map(|i| cluster.port(i)).collect());
    some_load(0);
    eprintln!("phase a (join) took {:?}", t.elapsed());

    // (b) Node 1, an original, leaves (and keeps running).
    let t = Instant::now();
    load.phase.store(1, Ordering::SeqCst);
    some_load(1);
    eprintln!("node 1 leaves {:?} into the load", load.began.elapsed());
    let reply = change(&mut cluster.client(1), &["SHOAL.LEAVE", "NOW"]);
    assert!(reply.starts_with("OK"), "{reply}");
    let epoch = wait_ring(&cluster, &[0, 2, 3], 3);
    eprintln!("3 members, settled at epoch {epoch}, {:?} into the load", load.began.elapsed());
    assert_balanced(&cluster, &[0, 2, 3], &[ids[0], ids[2], id_d]);
    for i in [0, 2, 3] {
        let listed: Vec<String> = members(&mut cluster.client(i)).iter().map(|m| text(&m["id"])).collect();
        assert!(!listed.contains(&ids[1].to_string()), "node {i} still lists node 1 ({}): {listed:?}", ids[1]);
    }
    load.retarget([0, 2, 3].iter().map(|&i| cluster.port(i)).collect());
    some_load(1);
    eprintln!("phase b (leave) took {:?}", t.elapsed());

    // (c) Node 2 dies; once seen down it is removed.
    let t = Instant::now();
    load.retarget([0, 3].iter().map(|&i| cluster.port(i)).collect());
    load.phase.store(2, Ordering::SeqCst);
    cluster.stop(2);
    for i in [0, 3] {
        let mut c = cluster.client(i);
        wait_for(&format!("node {i} to see node 2 down"), WAIT, || {
            (info(&mut c, "cluster", "shoal_members_up") == "2" && info(&mut c, "cluster", "shoal_members") == "3")
                .then_some(())
        });
    }
    load.phase.store(3, Ordering::SeqCst);
    let reply = change(&mut cluster.client(0), &["SHOAL.REMOVE", &ids[2].to_string(), "NOW"]);
    assert!(reply.starts_with("OK"), "{reply}");
    wait_ring(&cluster, &[0, 3], 2);
    assert_balanced(&cluster, &[0, 3], &[ids[0], id_d]);
    some_load(3);
    eprintln!("phase c (stop and remove) took {:?}", t.elapsed());

    load.stop.store(true, Ordering::SeqCst);
    let mut keys: HashMap<usize, KeyState> = HashMap::new();
    for t in threads {
        keys.extend(t.join().expect("a load thread"));
    }
    for (p, name) in PHASES.iter().enumerate() {
        let (sets, gets) = load.ops(p);
        eprintln!("phase {name:?}: {sets} writes and {gets} reads acknowledged");
    }

    // Failures: none but NOQUORUM or TRYAGAIN while node 2 is dead and
    // not yet seen down.
    let failures = load.failures.lock().expect("failures").clone();
    let mut by_kind: HashMap<(usize, String), usize> = HashMap::new();
    for (phase, _, _, why, _) in &failures {
        let kind = why.split_whitespace().next().unwrap_or_default().to_string();
        *by_kind.entry((*phase, kind)).or_default() += 1;
    }
    eprintln!("failures by phase and kind: {by_kind:?}");
    let wrong: Vec<_> = failures
        .iter()
        .filter(|(phase, _, _, why, _)| {
            *phase != MAY_FAIL || !(why.starts_with("NOQUORUM") || why.starts_with("TRYAGAIN"))
        })
        .map(|(phase, port, what, why, at)| {
            let node = (0..cluster.len()).find(|&i| cluster.port(i) == *port).expect("a node's port");
            // Where the key lives once the join is done, as evidence.
            let key = what.split_whitespace().nth(1).unwrap_or_default();
            let p = ring_a.partitioner().of(shoal::ring::key_hash(key.as_bytes()));
            let replicas: Vec<usize> = ring_a
                .replicas(p, 3)
                .iter()
                .map(|id| all_ids.iter().position(|x| x == id).expect("a member"))
                .collect();
            format!(
                "{}: at {at:?}: {what} through node {node}: {why} (replicas after the join: nodes {replicas:?})",
                PHASES[*phase]
            )
        })
        .collect();
    let stale = load.stale.lock().expect("stale").clone();
    // Every problem is reported at the end, together.
    let mut problems = Vec::new();
    if !wrong.is_empty() {
        problems.push(format!("{} requests failed outside the moments allowed:\n{}", wrong.len(), wrong.join("\n")));
    }
    if !stale.is_empty() {
        problems.push(format!("{} stale reads:\n{}", stale.len(), stale.join("\n")));
    }

    // Nothing acknowledged is lost: every key reads its last acknowledged
    // value (or a later one sent) through every running member.
    for node in [0, 3] {
        let mut c = cluster.client(node);
        for (&i, s) in &keys {
            let value: Option<String> = redis::cmd("GET").arg(load_key(i)).query(&mut c).expect("GET");
            let counter = value.as_deref().map(|v| counter_in(i, v));
            if !matches!(counter, Some(Ok(c)) if (s.acked..=s.sent).contains(&c)) {
                problems.push(format!(
                    "{} through node {node} at the end: {value:?}, acknowledged {}, sent {}",
                    load_key(i),
                    s.acked,
                    s.sent
                ));
            }
        }
        for i in 0..1500 {
            let (k, v) = other(i);
            let got: Option<String> = redis::cmd("GET").arg(&k).query(&mut c).expect("GET");
            if got.as_deref() != Some(v.as_str()) {
                problems.push(format!("{k} through node {node} at the end: {got:?}"));
            }
        }
    }
    // The node that left drops its copies (transfer-drop-delay is 2 s).
    let mut c1 = cluster.client(1);
    wait_for("node 1 to drop the copies it no longer replicates", WAIT, || (local_keys(&mut c1) == 0).then_some(()));
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The cluster-wide commands no longer wait for the removed node (nor
    // for the one that left): DBSIZE counts every key once, FLUSHALL
    // empties the members.
    let mut c0 = cluster.client(0);
    let want = (keys.len() + 1500) as i64;
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c0).expect("DBSIZE after the removal");
    assert!(dbsize >= want, "DBSIZE {dbsize}, at least {want} keys were written");
    let flushed: String = redis::cmd("FLUSHALL").query(&mut c0).expect("FLUSHALL after the removal");
    assert_eq!(flushed, "OK");
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c0).expect("DBSIZE after FLUSHALL");
    assert_eq!(dbsize, 0, "FLUSHALL emptied the members");
    eprintln!("the test took {:?}", started.elapsed());
}

/// Real processes for the kill -9 tests: keys on the first node, and the
/// settings that make a transfer last seconds, one partition at a time,
/// with several pages per partition (8 partitions of 2500 keys; a page is
/// at most 500 keys), so a kill lands in the middle of a partition.
const KEYS: usize = 20_000;
const ENV: [(&str, &str); 4] = [
    ("SHOAL_PARTITIONS", "8"),
    ("SHOAL_TRANSFERS", "1"),
    ("SHOAL_TRANSFER_RATE", "300kb"),
    ("SHOAL_GOSSIP_INTERVAL", "200"),
];

fn field(node: &Shoal, section: &str, name: &str) -> u64 {
    info(&mut node.client(), section, name).parse().expect("a number")
}

/// A node alone, holding `KEYS` keys.
fn first_node(dir: &std::path::Path) -> Shoal {
    let a = Shoal::spawn(dir, &[], &ENV);
    let entries = (0..KEYS).map(|i| (format!("k:{i:05}"), format!("value {i:05} {}", "x".repeat(40))));
    preload(&mut a.client(), entries);
    assert_eq!(local_keys(&mut a.client()), KEYS as u64);
    a
}

/// Waits for a running transfer on `b` (SHOAL.STATUS) that has copied at
/// least two pages of its partition: its cursor is saved past the start.
fn wait_mid_transfer(b: &Shoal) {
    let mut c = b.client();
    wait_for("a transfer to be part way through a partition", WAIT, || {
        let status = common::reply::fields(&redis::cmd("SHOAL.STATUS").query::<Value>(&mut c).ok()?);
        let transfers = common::reply::fields(&status["transfers"]);
        let running = common::reply::array(&transfers["running"]).iter().map(common::reply::fields);
        running.into_iter().any(|r| int(&r["keys"]) >= 1000).then_some(())
    });
    assert_ne!(field(b, "cluster", "shoal_ring_change"), 0, "the change is still in progress");
}

/// Waits until `node` holds a settled ring of `size` members.
fn wait_settled(node: &Shoal, size: usize) {
    wait_for(&format!("the node on {} to hold a settled ring of {size}", node.port), Duration::from_secs(60), || {
        matches!(members_seen(node.port), Some((m, Some((ring, _)))) if m == size && ring == size).then_some(())
    });
}

/// Asserts `b` holds every key itself and serves each.
fn assert_holds_everything(b: &Shoal) {
    b.wait_counted();
    let mut c = b.client();
    wait_for("b to count every key", WAIT, || (local_keys(&mut c) == KEYS as u64).then_some(()));
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("GET").arg(format!("k:{i:05}"));
        }
        let values: Vec<Option<String>> = pipe.query(&mut c).expect("GETs");
        for (i, v) in chunk.iter().zip(values) {
            assert_eq!(v, Some(format!("value {i:05} {}", "x".repeat(40))), "k:{i:05} through b");
        }
    }
}

#[test]
fn a_transfer_interrupted_by_kill_9_of_the_receiver_resumes() {
    let started = Instant::now();
    let temp = tempfile::tempdir().expect("temp dir");
    let a = first_node(&temp.path().join("a"));
    let seeds = format!("127.0.0.1:{}", a.peer_port);
    let b = Shoal::spawn(&temp.path().join("b"), &["--seeds", &seeds], &ENV);
    wait_mid_transfer(&b);
    let copied = field(&b, "cluster", "shoal_transfer_keys");
    assert!(copied > 0 && copied < KEYS as u64, "{copied} keys copied when killed");
    let (port, peer_port) = (b.port, b.peer_port);
    let before = b.log();
    b.kill9();
    eprintln!("b killed after {copied} keys, {:?} in", started.elapsed());
    let b = Shoal::spawn_at(&temp.path().join("b"), port, Some(peer_port), &["--seeds", &seeds], &ENV);
    wait_settled(&b, 2);
    wait_settled(&a, 2);
    let resumed = b.log().lines().filter(|l| l.contains("transfer begins") && l.contains("resumed=true")).count();
    assert!(resumed >= 1, "no transfer resumed after the restart; b's log:\n{}\nbefore the kill:\n{before}", b.log());
    // Resumed from the cursor: the restart copied less than everything.
    let after = field(&b, "cluster", "shoal_transfer_keys");
    assert!(
        after + copied <= KEYS as u64 + 1000,
        "b copied {copied} keys before the kill and {after} after it: more than a resumed transfer would"
    );
    assert_holds_everything(&b);
    eprintln!("the test took {:?}", started.elapsed());
}

#[test]
fn a_transfer_interrupted_by_kill_9_of_the_source_resumes() {
    let started = Instant::now();
    let temp = tempfile::tempdir().expect("temp dir");
    let a = first_node(&temp.path().join("a"));
    let seeds = format!("127.0.0.1:{}", a.peer_port);
    let b = Shoal::spawn(&temp.path().join("b"), &["--seeds", &seeds], &ENV);
    wait_mid_transfer(&b);
    let (port, peer_port) = (a.port, a.peer_port);
    a.kill9();
    let copied = field(&b, "cluster", "shoal_transfer_keys");
    assert!(copied > 0 && copied < KEYS as u64, "{copied} keys copied when the source was killed");
    eprintln!("a killed after {copied} keys, {:?} in", started.elapsed());
    // A stays down until b has seen its transfer stop (a restart faster
    // than b's next page would interrupt nothing).
    wait_for("b to see its transfer stop with the source", Duration::from_secs(20), || {
        b.log().contains("transfer stopped, will resume").then_some(())
    });
    let a = Shoal::spawn_at(&temp.path().join("a"), port, Some(peer_port), &[], &ENV);
    wait_settled(&b, 2);
    wait_settled(&a, 2);
    let resumed = b.log().lines().filter(|l| l.contains("transfer begins") && l.contains("resumed=true")).count();
    assert!(resumed >= 1, "no transfer resumed; b's log:\n{}", b.log());
    let total = field(&b, "cluster", "shoal_transfer_keys");
    assert!(total <= KEYS as u64 + 1000, "b copied {total} keys in all: more than a resumed transfer would");
    assert_holds_everything(&b);
    eprintln!("the test took {:?}", started.elapsed());
}

/// Competing claimants: a network partition cuts the claimant (the
/// lowest-id member) off from the other three. Its side has no majority:
/// a change asked of it is refused and its ring does not move. The other
/// side has one: its own claimant lets a member leave, while clients write
/// through it (the change then waits for the cut-off node, which gains
/// partitions). Once healed, every node holds that side's ring, the change
/// ends, and every write acknowledged reads back from every member.
#[test]
fn only_the_side_of_a_partition_with_a_majority_changes_the_ring() {
    let cluster = TestCluster::start(4, 3, 2, 2);
    let ids: Vec<NodeId> = (0..4).map(|i| id_of(&cluster, i)).collect();
    let lowest = (0..4).min_by_key(|&i| ids[i]).expect("four nodes");
    let others: Vec<usize> = (0..4).filter(|&i| i != lowest).collect();
    let (leaver, rest) = (others[2], [others[0], others[1]]);
    let mut written: HashMap<String, String> = HashMap::new();
    let mut write = |c: &mut redis::Connection, key: String, value: String| {
        let reply: Value = redis::cmd("SET").arg(&key).arg(&value).query(c).expect("SET");
        assert_eq!(reply, Value::Okay, "SET {key}");
        written.insert(key, value);
    };
    let mut c = cluster.client(rest[0]);
    for i in 0..200 {
        write(&mut c, format!("before:{i}"), format!("v{i}"));
    }
    let epoch_before = wait_ring(&cluster, &[0, 1, 2, 3], 4);

    cluster.isolate(lowest);
    let mut cut = cluster.client(lowest);
    wait_for("the claimant to see the others down", WAIT, || {
        (info(&mut cut, "cluster", "shoal_members_up") == "1").then_some(())
    });
    for &i in &others {
        let mut c = cluster.client(i);
        wait_for("the others to see the claimant down", WAIT, || {
            (info(&mut c, "cluster", "shoal_members_up") == "3").then_some(())
        });
    }

    // The cut-off claimant's side decides nothing.
    for command in [vec!["SHOAL.LEAVE", "NOW"], vec!["SHOAL.LEAVE"]] {
        let e = redis::cmd(command[0]).arg(&command[1..]).query::<Value>(&mut cut).expect_err("refused");
        assert_eq!(e.code(), Some("TRYAGAIN"), "{command:?}: {e}");
        assert!(e.detail().is_some_and(|d| d.starts_with("no majority")), "{command:?}: {e}");
    }

    // The majority side lets a member leave, under writes.
    let reply = change(&mut cluster.client(leaver), &["SHOAL.LEAVE", "NOW"]);
    assert!(reply.starts_with("OK"), "{reply}");
    for i in 0..200 {
        let node = rest[i % 2];
        write(&mut cluster.client(node), format!("during:{i}"), format!("v{i}"));
    }
    // The change starts on the majority side; it cannot end before the
    // cut-off node, which gains partitions, has copied them.
    let mut c = cluster.client(rest[0]);
    wait_for("the leave to start on the majority side", WAIT, || {
        (info(&mut c, "cluster", "shoal_ring_change") != "0").then_some(())
    });
    let epoch = |c: &mut redis::Connection| info(c, "cluster", "shoal_ring_epoch").parse::<u64>().expect("an epoch");
    assert!(epoch(&mut c) > epoch_before);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(epoch(&mut cut), epoch_before, "the cut-off side's ring moved");
    assert_eq!(info(&mut cut, "cluster", "shoal_ring_change"), "0", "the cut-off side started a change");

    // Healed: the cut-off node takes the majority's ring, and every write
    // acknowledged reads back from every member.
    cluster.heal();
    let members = [lowest, rest[0], rest[1]];
    wait_ring(&cluster, &members, 3);
    let ring = ring_of(&mut cut);
    assert!(!ring.members().contains(&ids[leaver]), "the leaver still owns partitions");
    for &i in &rest {
        assert_eq!(ring_of(&mut cluster.client(i)).owners(), ring.owners(), "node {i}'s ring");
    }
    for &i in &members {
        let mut c = cluster.client(i);
        for (key, value) in &written {
            let got: Option<String> = redis::cmd("GET").arg(key).query(&mut c).expect("GET");
            assert_eq!(got.as_deref(), Some(value.as_str()), "{key} through node {i}");
        }
    }
}

/// How the joiner of [`joiner_lost_mid_change`] is lost, and regained.
#[derive(Clone, Copy, Debug)]
enum Lost {
    /// Stopped, and restarted copying at full speed.
    Stopped,
    /// Cut off from the other nodes through the peer layer's fault seam
    /// (calls to it time out), and the cuts lifted.
    CutOff,
}

/// Growing a cluster of two (N = 3, R = W = 2) to three: while the change
/// is in progress, the joining node is lost. Each partition's replica set
/// before the change is the two first nodes and after it all three, so
/// the two first nodes hold W (and R) of both sets: writes and reads
/// through them go on. The joiner then comes back, the change ends, and
/// every acknowledged write reads back from every node.
fn joiner_lost_mid_change(lost: Lost) {
    let started = Instant::now();
    let mut cluster = TestCluster::start(2, 3, 2, 2);
    const KEYS: usize = 60;
    let key = |i: usize| format!("grow:{i}");
    let value = |i: usize, round: usize| format!("grow:{i}@{round}");
    preload(&mut cluster.client(0), (0..KEYS).map(|i| (key(i), value(i, 0))));
    // Each partition's page holds about a key (~100 bytes): at 100 bytes
    // a second the change lasts a minute unless the joiner is restarted
    // faster; cut off, it copies at 2 kB a second, a few seconds in all.
    let rate = match lost {
        Lost::Stopped => 100,
        Lost::CutOff => 2000,
    };
    let c = cluster.add_with(|config| config.transfer_rate = shoal::config::ByteSize(rate));
    for i in [0, 1, c] {
        let mut client = cluster.client(i);
        wait_for(&format!("node {i} to see the change in progress"), WAIT, || {
            (info(&mut client, "cluster", "shoal_ring_change") != "0").then_some(())
        });
    }
    let mut joiner = cluster.client(c);
    wait_for("the joiner to copy a first page", WAIT, || {
        (info(&mut joiner, "cluster", "shoal_transfer_keys") != "0").then_some(())
    });
    drop(joiner);
    match lost {
        Lost::Stopped => cluster.stop(c),
        Lost::CutOff => cluster.isolate(c),
    }
    eprintln!("joiner {lost:?} mid-change, {:?} in", started.elapsed());

    // Rounds of a SET and a GET of every key, through nodes 0 and 1 in
    // turn: the first at once, the second once both see the joiner down.
    let mut clients = [cluster.client(0), cluster.client(1)];
    let round = |round: usize, clients: &mut [redis::Connection; 2]| {
        for i in 0..KEYS {
            let c = &mut clients[(i + round) % 2];
            let set: redis::RedisResult<String> = redis::cmd("SET").arg(key(i)).arg(value(i, round)).query(c);
            assert_eq!(set.as_deref(), Ok("OK"), "SET {} in round {round}, joiner {lost:?}", key(i));
            let c = &mut clients[(i + round + 1) % 2];
            let got: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(key(i)).query(c);
            assert_eq!(got, Ok(Some(value(i, round))), "GET {} in round {round}, joiner {lost:?}", key(i));
        }
    };
    round(1, &mut clients);
    for (i, c) in clients.iter_mut().enumerate() {
        wait_for(&format!("node {i} to see the joiner down"), WAIT, || {
            (info(c, "cluster", "shoal_members_up") == "2").then_some(())
        });
    }
    round(2, &mut clients);
    for (i, c) in clients.iter_mut().enumerate() {
        assert_ne!(info(c, "cluster", "shoal_ring_change"), "0", "node {i}: the change is still in progress");
    }

    // The joiner comes back; the change ends.
    match lost {
        Lost::Stopped => cluster.restart_with(c, |config| config.transfer_rate = shoal::config::ByteSize(64 << 20)),
        Lost::CutOff => cluster.heal(),
    }
    wait_ring(&cluster, &[0, 1, c], 3);
    eprintln!("the change ended, {:?} in", started.elapsed());
    for node in [0, 1, c] {
        let mut client = cluster.client(node);
        for i in 0..KEYS {
            let got: Option<String> = redis::cmd("GET").arg(key(i)).query(&mut client).expect("GET");
            assert_eq!(got, Some(value(i, 2)), "{} through node {node} once the change ended", key(i));
        }
    }
    eprintln!("the test took {:?}", started.elapsed());
}

#[test]
fn a_joiner_that_stops_mid_change_stops_no_request() {
    joiner_lost_mid_change(Lost::Stopped);
}

#[test]
fn a_joiner_cut_off_mid_change_stops_no_request() {
    joiner_lost_mid_change(Lost::CutOff);
}

/// A context write through a node outside a key's targets is forwarded to
/// one of them with the client's W, which that coordinator counts in the
/// replica sets of its own view: during a change (a 5th node joining 4,
/// N = 3) W 3 is accepted through every node, not refused as "W must be
/// between 1 and N" (W + g was sent before).
#[test]
fn a_forwarded_context_write_keeps_the_clients_w_during_a_change() {
    let mut cluster = TestCluster::start(4, 3, 2, 2);
    // The joiner copies at 100 bytes a second: the change lasts.
    let e = cluster.add_with(|config| config.transfer_rate = shoal::config::ByteSize(100));
    for i in 0..=e {
        let mut client = cluster.client(i);
        wait_for(&format!("node {i} to see the change in progress"), WAIT, || {
            (info(&mut client, "cluster", "shoal_ring_change") != "0").then_some(())
        });
    }
    let mut clients: Vec<redis::Connection> = (0..4).map(|i| cluster.client(i)).collect();
    for k in 0..40 {
        for (i, c) in clients.iter_mut().enumerate() {
            let key = format!("ctx:{k}");
            let reply = c.req_command(redis::cmd("SETCTX").arg(&key).arg("").arg(i).arg("W").arg(3)).expect("SETCTX");
            assert!(error_text(&reply).is_none(), "SETCTX {key} W 3 through node {i}: {reply:?}");
        }
    }
    for c in &mut clients {
        assert_ne!(info(c, "cluster", "shoal_ring_change"), "0", "the change is still in progress");
    }
}

/// A cluster of three that lost two members for good: the survivor has no
/// majority, so a removal is refused, until the operator forces it on the
/// survivor (the claimant); then it serves every key alone.
#[test]
fn a_survivor_of_a_lost_majority_removes_the_dead_with_force() {
    let mut cluster = TestCluster::start(3, 3, 2, 2);
    let ids: Vec<NodeId> = (0..3).map(|i| id_of(&cluster, i)).collect();
    let mut c = cluster.client(0);
    for i in 0..100 {
        common::reply::set(&mut c, &format!("lost:{i}"), &format!("v{i}"));
    }
    cluster.stop(1);
    cluster.stop(2);
    wait_for("the others to be seen down", WAIT, || (info(&mut c, "cluster", "shoal_members_up") == "1").then_some(()));
    let dead = [ids[1].to_string(), ids[2].to_string()];
    let e = redis::cmd("SHOAL.REMOVE").arg(&dead[0]).arg("NOW").query::<String>(&mut c).expect_err("refused");
    assert!(e.detail().is_some_and(|d| d.starts_with("no majority")), "{e}");
    for id in &dead {
        let reply = change(&mut c, &["SHOAL.REMOVE", id, "NOW", "FORCE"]);
        assert!(reply.starts_with("OK"), "{reply}");
    }
    wait_for("the ring of the survivor alone", WAIT, || {
        (info(&mut c, "cluster", "shoal_ring_members") == "1" && info(&mut c, "cluster", "shoal_ring_change") == "0")
            .then_some(())
    });
    for i in 0..100 {
        let got: Option<String> = redis::cmd("GET").arg(format!("lost:{i}")).query(&mut c).expect("GET");
        assert_eq!(got, Some(format!("v{i}")));
    }
    common::reply::set(&mut c, "after", "alone");
}
