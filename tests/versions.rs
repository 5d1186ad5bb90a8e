//! Sibling versions through a real client: GETCTX, SETCTX and DELCTX, the
//! rules that decide which siblings a context supersedes, plain commands
//! on keys with siblings, the sibling bound and warnings, tombstone reaping,
//! and contexts across restarts, kill -9 and a wiped data directory.
//!
//! Commands go out through `ConnectionLike::req_command`, which hands back
//! the raw reply with server errors left in place as `Value::ServerError`,
//! so both the reply's shape and an error's exact text can be checked.

mod common;

use std::time::Duration;

use common::reply::{bulk, call, err, get, getctx, info, int, setctx};
use common::{Shoal, XorShift, wait_for};
use redis::{Connection, Value};

/// Bound for every poll: expiry, reaping, log lines.
const WAIT: Duration = Duration::from_secs(10);

#[track_caller]
fn dbsize(c: &mut Connection) -> i64 {
    int(&call!(c, "DBSIZE"))
}

#[track_caller]
fn exists(c: &mut Connection, key: &str) -> i64 {
    int(&call!(c, "EXISTS", key))
}

#[track_caller]
fn versions(c: &mut Connection, field: &str) -> u64 {
    info(c, "versions", field).parse().expect("numeric INFO versions field")
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| (*s).to_string()).collect()
}

// 1.
#[test]
fn getctx_of_a_missing_key_then_a_blind_write() {
    let node = Shoal::start();
    for (mut c, key) in [(node.client(), "resp2"), (node.client3(), "resp3")] {
        let (ctx, values) = getctx(&mut c, key);
        assert!(values.is_empty(), "a missing key has no values: {values:?}");
        assert_eq!(ctx, "", "a key never written has an empty history");

        let written = setctx(&mut c, key, "", "first");
        let (ctx, values) = getctx(&mut c, key);
        assert_eq!(values, strings(&["first"]));
        assert!(!ctx.is_empty(), "a written key has a history");
        assert_eq!(ctx, written, "the context of the only write is the key's whole history");
        assert_eq!(get(&mut c, key).as_deref(), Some("first"), "plain GET sees a SETCTX value");
    }
    let mut c = node.client();
    assert_eq!(dbsize(&mut c), 2);
}

// 2.
#[test]
fn concurrent_writes_with_the_same_context_become_siblings() {
    let node = Shoal::start();
    let mut a = node.client();
    let mut b = node.client3();
    setctx(&mut a, "cart", "", "milk");
    let (ctx, _) = getctx(&mut a, "cart");

    // Both clients read once, then both write with what they read.
    setctx(&mut a, "cart", &ctx, "milk,eggs");
    setctx(&mut b, "cart", &ctx, "milk,bread");

    for c in [&mut a, &mut b] {
        let (_, values) = getctx(c, "cart");
        assert_eq!(values, strings(&["milk,eggs", "milk,bread"]), "both kept, oldest first; the read one superseded");
        // GET picks the latest timestamp; in the same millisecond the tie
        // goes to the larger dot, and this node's later write has the larger
        // counter, so the later write wins either way.
        assert_eq!(get(c, "cart").as_deref(), Some("milk,bread"));
    }
    assert_eq!(versions(&mut a, "keys_with_siblings"), 1);
    assert_eq!(exists(&mut a, "cart"), 1);
    assert_eq!(dbsize(&mut a), 1, "siblings are one key");

    // Truly at the same time: eight clients, one context, no lost write.
    let (ctx, _) = getctx(&mut a, "cart");
    let start = std::sync::Barrier::new(8);
    std::thread::scope(|scope| {
        for i in 0..8 {
            let (node, ctx, start) = (&node, &ctx, &start);
            scope.spawn(move || {
                let mut c = if i % 2 == 0 { node.client() } else { node.client3() };
                start.wait();
                setctx(&mut c, "cart", ctx, &format!("writer{i}"));
            });
        }
    });
    let (_, mut values) = getctx(&mut a, "cart");
    values.sort();
    let want: Vec<String> = (0..8).map(|i| format!("writer{i}")).collect();
    assert_eq!(values, want, "every concurrent write is a sibling; what they read is superseded");
    let winner = get(&mut a, "cart").expect("GET sees a winner");
    assert!(want.contains(&winner), "GET returns one of the siblings: {winner}");
}

// 3.
#[test]
fn writing_with_the_full_context_resolves_siblings() {
    let node = Shoal::start();
    let mut a = node.client3();
    let mut b = node.client();
    setctx(&mut a, "cart", "", "milk");
    let (ctx, _) = getctx(&mut a, "cart");
    setctx(&mut a, "cart", &ctx, "milk,eggs");
    setctx(&mut b, "cart", &ctx, "milk,bread");
    assert_eq!(versions(&mut a, "keys_with_siblings"), 1);

    let (ctx, values) = getctx(&mut b, "cart");
    assert_eq!(values.len(), 2);
    let resolved = setctx(&mut b, "cart", &ctx, "milk,eggs,bread");

    let (now, values) = getctx(&mut a, "cart");
    assert_eq!(values, strings(&["milk,eggs,bread"]));
    assert_eq!(now, resolved, "the resolving write's context is the whole history now");
    assert_eq!(get(&mut a, "cart").as_deref(), Some("milk,eggs,bread"));
    assert_eq!(versions(&mut a, "keys_with_siblings"), 0);
}

// 4.
#[test]
fn two_clients_writing_with_their_own_contexts_keep_two_siblings() {
    let node = Shoal::start();
    let mut a = node.client();
    let mut b = node.client3();
    let (mut ctx_a, mut ctx_b) = (String::new(), String::new());
    for round in 1..=20 {
        ctx_a = setctx(&mut a, "k", &ctx_a, &format!("a{round}"));
        ctx_b = setctx(&mut b, "k", &ctx_b, &format!("b{round}"));
        let (_, values) = getctx(&mut a, "k");
        assert_eq!(values, vec![format!("a{round}"), format!("b{round}")], "round {round}");
    }
    let (_, values) = getctx(&mut b, "k");
    assert_eq!(values, strings(&["a20", "b20"]), "each client replaced only its own value");
    assert_eq!(versions(&mut a, "max_siblings_seen"), 2, "never more than two siblings");
    assert_eq!(versions(&mut a, "sibling_warnings"), 0);
}

// 5.
#[test]
fn a_context_supersedes_only_what_its_client_saw() {
    let node = Shoal::start();
    let mut a = node.client();
    let mut b = node.client3();
    setctx(&mut a, "k", "", "v0");
    let (ctx, _) = getctx(&mut a, "k");

    setctx(&mut b, "k", "", "from-b");
    let returned = setctx(&mut a, "k", &ctx, "from-a");

    let (_, values) = getctx(&mut b, "k");
    assert_eq!(values, strings(&["from-b", "from-a"]), "A's write superseded v0 only, not B's unseen write");

    // A's returned context covers A's own write and nothing of B's: writing
    // with it again replaces A's value and still keeps B's.
    setctx(&mut a, "k", &returned, "from-a-again");
    let (_, values) = getctx(&mut a, "k");
    assert_eq!(values, strings(&["from-b", "from-a-again"]));
}

// 6.
#[test]
fn delctx_supersedes_what_its_context_covers_and_leaves_a_tombstone() {
    let node = Shoal::start();
    let mut c = node.client();
    let mut c3 = node.client3();
    setctx(&mut c, "other", "", "stays");
    setctx(&mut c, "one", "", "v");
    setctx(&mut c, "two", "", "x");
    setctx(&mut c3, "two", "", "y");
    assert_eq!(dbsize(&mut c), 3);

    for (conn, key, superseded) in [(&mut c, "one", 1), (&mut c3, "two", 2)] {
        let (ctx, values) = getctx(conn, key);
        assert_eq!(values.len(), superseded as usize);
        assert_eq!(int(&call!(conn, "DELCTX", key, &ctx)), superseded, "DELCTX {key}");
        let (after, values) = getctx(conn, key);
        assert!(values.is_empty(), "{key}: no values after DELCTX: {values:?}");
        assert!(!after.is_empty(), "{key}: the tombstone's history is still handed out");
        assert_ne!(after, ctx, "{key}: the history includes the delete");
        assert_eq!(get(conn, key), None);
        assert_eq!(exists(conn, key), 0);
    }
    assert_eq!(dbsize(&mut c), 1, "only 'other' is left");
    assert_eq!(versions(&mut c, "tombstones"), 2);
    assert_eq!(versions(&mut c, "keys_with_siblings"), 0);
    assert_eq!(get(&mut c, "other").as_deref(), Some("stays"));
}

// 7.
#[test]
fn plain_set_and_del_supersede_every_sibling() {
    let node = Shoal::start();
    let mut c = node.client3();
    for v in ["x", "y", "z"] {
        setctx(&mut c, "k", "", v);
    }
    assert_eq!(getctx(&mut c, "k").1.len(), 3);
    assert_eq!(call!(c, "SET", "k", "plain"), Value::Okay);
    assert_eq!(getctx(&mut c, "k").1, strings(&["plain"]));
    assert_eq!(versions(&mut c, "keys_with_siblings"), 0);

    for v in ["p", "q"] {
        setctx(&mut c, "k", "", v);
    }
    assert_eq!(getctx(&mut c, "k").1, strings(&["plain", "p", "q"]));
    assert_eq!(int(&call!(c, "DEL", "k")), 1, "DEL counts the key once");
    let (ctx, values) = getctx(&mut c, "k");
    assert!(values.is_empty(), "every sibling deleted: {values:?}");
    assert!(!ctx.is_empty());
    assert_eq!(get(&mut c, "k"), None);
    assert_eq!(exists(&mut c, "k"), 0);
    assert_eq!(dbsize(&mut c), 0);
    assert_eq!(versions(&mut c, "keys_with_siblings"), 0);
}

// 8.
#[test]
fn garbled_contexts_are_refused_and_write_nothing() {
    let node = Shoal::start();
    let mut c = node.client();
    let valid = setctx(&mut c, "k", "", "v");
    setctx(&mut c, "k", "", "w");
    let before = getctx(&mut c, "k");
    let size = dbsize(&mut c);

    // A context's first byte is its format (1). Changing the first
    // character to another base64url letter changes that byte's top six
    // bits, so the format is no longer 1 and the context cannot decode.
    assert!(valid.starts_with('A'), "contexts start with the format byte 1: {valid}");
    let one_changed = format!("B{}", &valid[1..]);
    let mut bad: Vec<Vec<u8>> = vec![b"!!!".to_vec(), b"AAAA".to_vec(), one_changed.into_bytes()];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = XorShift(0x5eed_1234_abcd_0042);
    for len in [1usize, 7, 16, 33] {
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Make sure the noise cannot be base64url by chance.
        if bytes.iter().all(|b| alphabet.contains(b)) {
            bytes[0] = 0xff;
        }
        bad.push(bytes);
    }

    for ctx in &bad {
        for key in ["k", "missing"] {
            assert_eq!(err(&call!(c, "SETCTX", key, ctx.as_slice(), "evil")), "ERR invalid context", "{ctx:?}");
            assert_eq!(err(&call!(c, "DELCTX", key, ctx.as_slice())), "ERR invalid context", "{ctx:?}");
        }
    }
    assert_eq!(getctx(&mut c, "k"), before, "nothing was written to k");
    assert_eq!(getctx(&mut c, "missing"), (String::new(), vec![]), "nothing was written to missing");
    assert_eq!(dbsize(&mut c), size);
    // The connection is still usable and the valid context still works.
    setctx(&mut c, "k", &before.0, "resolved");
    assert_eq!(getctx(&mut c, "k").1, strings(&["resolved"]));
}

// 9.
#[test]
fn setctx_expiry() {
    let node = Shoal::start();
    let mut c = node.client3();
    setctx(&mut c, "k", "", "lasting");
    let (read, _) = getctx(&mut c, "k");
    let ctx = bulk(&call!(c, "SETCTX", "k", &read, "short", "PX", 300));
    let (now, values) = getctx(&mut c, "k");
    assert_eq!(values, strings(&["short"]), "present at once, and it superseded what was read");
    assert_eq!(now, ctx);
    assert_eq!(get(&mut c, "k").as_deref(), Some("short"));
    let pttl = int(&call!(c, "PTTL", "k"));
    assert!((1..=300).contains(&pttl), "PTTL {pttl}");

    wait_for("the SETCTX value to expire", WAIT, || getctx(&mut c, "k").1.is_empty().then_some(()));
    assert_eq!(getctx(&mut c, "k").1, Vec::<String>::new(), "the superseded value does not come back");
    assert_eq!(get(&mut c, "k"), None);
    assert_eq!(exists(&mut c, "k"), 0);
    wait_for("the expired key to leave DBSIZE", WAIT, || (dbsize(&mut c) == 0).then_some(()));

    setctx(&mut c, "kept", "", "v");
    let before = getctx(&mut c, "kept");
    for (unit, n) in [("EX", 0), ("PX", -1), ("PX", 0), ("EX", -5)] {
        let e = err(&call!(c, "SETCTX", "kept", &before.0, "replaced", unit, n));
        assert!(e.starts_with("ERR invalid expire time"), "{unit} {n}: {e}");
    }
    assert_eq!(getctx(&mut c, "kept"), before, "a refused expiry writes nothing");
    assert_eq!(int(&call!(c, "TTL", "kept")), -1);
}

// 10a.
#[test]
fn the_sibling_bound_refuses_a_write_and_keeps_the_siblings() {
    let temp = tempfile::tempdir().expect("tempdir");
    let node = Shoal::spawn(&temp.path().join("data"), &[], &[("SHOAL_MAX_SIBLINGS", "5")]);
    let mut c = node.client();
    assert_eq!(versions(&mut c, "max_siblings"), 5, "the environment setting is in effect");
    let written: Vec<String> = (1..=5).map(|i| format!("v{i}")).collect();
    for v in &written {
        setctx(&mut c, "k", "", v);
    }
    assert_eq!(
        err(&call!(c, "SETCTX", "k", "", "v6")),
        "ERR too many siblings for key; resolve them with SETCTX",
        "a sixth sibling is refused"
    );
    let (ctx, values) = getctx(&mut c, "k");
    assert_eq!(values, written, "the five siblings are kept, the sixth not written");
    assert_eq!(versions(&mut c, "max_siblings_seen"), 5);

    setctx(&mut c, "k", &ctx, "merged");
    assert_eq!(getctx(&mut c, "k").1, strings(&["merged"]));
    assert_eq!(versions(&mut c, "keys_with_siblings"), 0);
}

// 10b.
#[test]
fn many_siblings_are_warned_about_and_counted() {
    let node = Shoal::start();
    let mut c = node.client3();
    assert_eq!(versions(&mut c, "max_siblings"), 100, "the default bound");
    for i in 1..=30 {
        setctx(&mut c, "crowded", "", &format!("v{i}"));
    }
    assert_eq!(getctx(&mut c, "crowded").1.len(), 30);
    // Writes past 25 siblings (the 26th to the 30th) are each a warning.
    assert_eq!(versions(&mut c, "sibling_warnings"), 5);
    assert!(versions(&mut c, "max_siblings_seen") >= 30);
    wait_for("a sibling warning in the log", WAIT, || {
        node.log().lines().any(|l| l.contains("WARN") && l.contains("siblings") && l.contains("crowded")).then_some(())
    });
}

// 11.
#[test]
fn tombstones_are_reaped_after_the_grace_period_only() {
    let long = Shoal::start();
    let temp = tempfile::tempdir().expect("tempdir");
    let short = Shoal::spawn(&temp.path().join("data"), &[], &[("SHOAL_TOMBSTONE_GRACE", "1")]);
    let mut l = long.client();
    let mut s = short.client3();
    assert_eq!(versions(&mut l, "tombstone_grace_seconds"), 10_800);
    assert_eq!(versions(&mut s, "tombstone_grace_seconds"), 1);

    // The default-grace node deletes first, so by the time the short-grace
    // node has reaped, the long node's tombstone is older than one grace
    // second plus the reaper's interval: no fixed sleep is needed.
    for c in [&mut l, &mut s] {
        assert_eq!(call!(c, "SET", "plain", "v"), Value::Okay);
        assert_eq!(int(&call!(c, "DEL", "plain")), 1);
        let ctx = setctx(c, "ctx", "", "v");
        assert_eq!(int(&call!(c, "DELCTX", "ctx", &ctx)), 1);
        assert_eq!(versions(c, "tombstones"), 2);
        assert_eq!(dbsize(c), 0);
    }
    wait_for("the short-grace tombstones to be reaped", WAIT, || (versions(&mut s, "tombstones") == 0).then_some(()));
    assert_eq!(getctx(&mut s, "plain"), (String::new(), vec![]), "a reaped key is gone entirely");
    assert_eq!(get(&mut s, "ctx"), None);
    assert_eq!(versions(&mut l, "tombstones"), 2, "the default grace keeps tombstones");
    let (ctx, values) = getctx(&mut l, "plain");
    assert!(values.is_empty() && !ctx.is_empty(), "the long node still holds the tombstone's history");

    // A reaped key takes writes as a new one.
    setctx(&mut s, "plain", "", "again");
    assert_eq!(getctx(&mut s, "plain").1, strings(&["again"]));
}

/// What `populate` wrote, for `verify` after a restart.
struct Written {
    /// Context returned by A's write to `siblings`, and the key's context.
    ctx_a: String,
    ctx_all: String,
}

fn populate(node: &Shoal) -> Written {
    let mut a = node.client();
    let mut b = node.client3();
    let ctx_a = setctx(&mut a, "siblings", "", "a");
    setctx(&mut b, "siblings", "", "b");
    let (ctx_all, values) = getctx(&mut a, "siblings");
    assert_eq!(values, strings(&["a", "b"]));

    assert_eq!(call!(a, "SET", "deleted", "x"), Value::Okay);
    assert_eq!(int(&call!(a, "DEL", "deleted")), 1);
    bulk(&call!(a, "SETCTX", "expiring", "", "soon", "EX", 1000));
    bulk(&call!(a, "SETCTX", "fleeting", "", "gone", "PX", 200));
    assert_eq!(versions(&mut a, "tombstones"), 1);
    Written { ctx_a, ctx_all }
}

fn verify(node: &Shoal, w: &Written) {
    let mut c = node.client3();
    assert_eq!(getctx(&mut c, "siblings"), (w.ctx_all.clone(), strings(&["a", "b"])), "siblings and context kept");
    assert_eq!(versions(&mut c, "keys_with_siblings"), 1);

    assert_eq!(get(&mut c, "deleted"), None, "the delete is durable");
    assert_eq!(exists(&mut c, "deleted"), 0);
    let (ctx, values) = getctx(&mut c, "deleted");
    assert!(values.is_empty() && !ctx.is_empty(), "the tombstone is kept");
    assert_eq!(versions(&mut c, "tombstones"), 1);

    assert_eq!(getctx(&mut c, "expiring").1, strings(&["soon"]));
    let ttl = int(&call!(c, "TTL", "expiring"));
    assert!((990..=1000).contains(&ttl), "expiry kept across restart: {ttl}");
    // The 200 ms value expires (perhaps while the node was down) and does
    // not come back.
    wait_for("the short SETCTX value to expire", WAIT, || getctx(&mut c, "fleeting").1.is_empty().then_some(()));
    assert_eq!(get(&mut c, "fleeting"), None);
    wait_for("DBSIZE to drop the expired key", WAIT, || (dbsize(&mut c) == 2).then_some(()));

    // A blind write after the restart gets a fresh dot: a third sibling,
    // not a clobbered old one.
    setctx(&mut c, "siblings", "", "c");
    assert_eq!(getctx(&mut c, "siblings").1, strings(&["a", "b", "c"]));
    // A's context from before the restart still supersedes exactly A's write.
    setctx(&mut c, "siblings", &w.ctx_a, "a2");
    assert_eq!(getctx(&mut c, "siblings").1, strings(&["b", "c", "a2"]));
    // The key's context from before the restart supersedes a and b (a is
    // already gone) but not the later writes.
    setctx(&mut c, "siblings", &w.ctx_all, "merged-old");
    assert_eq!(getctx(&mut c, "siblings").1, strings(&["c", "a2", "merged-old"]));
    let (ctx, _) = getctx(&mut c, "siblings");
    setctx(&mut c, "siblings", &ctx, "merged");
    assert_eq!(getctx(&mut c, "siblings").1, strings(&["merged"]));
}

// 12a.
#[test]
fn versions_survive_a_clean_restart() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let node = Shoal::start_in(&dir, &[]);
    let written = populate(&node);
    let status = node.stop();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let node = Shoal::start_in(&dir, &[]);
    verify(&node, &written);
}

// 12b.
#[test]
fn versions_survive_kill_9() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let node = Shoal::start_in(&dir, &[]);
    let written = populate(&node);
    node.kill9();
    let node = Shoal::start_in(&dir, &[]);
    node.wait_counted();
    verify(&node, &written);
}

// 13.
#[test]
fn contexts_from_a_wiped_node_are_still_accepted() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let node = Shoal::start_in(&dir, &[]);
    let mut c = node.client();
    let old_id = info(&mut c, "server", "shoal_node_id");
    let written = setctx(&mut c, "k", "", "old");
    let (old_ctx, _) = getctx(&mut c, "k");
    drop(c);
    assert!(node.stop().success());
    std::fs::remove_dir_all(&dir).expect("wipe the data directory");

    let node = Shoal::start_in(&dir, &[]);
    let mut c = node.client3();
    let new_id = info(&mut c, "server", "shoal_node_id");
    assert_ne!(new_id, old_id, "a new data directory is a new node");
    assert_eq!(getctx(&mut c, "k"), (String::new(), vec![]), "the wiped key is gone");

    let next = setctx(&mut c, "k", &old_ctx, "new");
    assert_eq!(getctx(&mut c, "k").1, strings(&["new"]), "the old context is valid; the write is a value");
    setctx(&mut c, "k", &written, "also-new");
    assert_eq!(getctx(&mut c, "k").1, strings(&["new", "also-new"]), "an old context supersedes no new write");
    // The context returned on the new node works as usual.
    setctx(&mut c, "k", &next, "new2");
    assert_eq!(getctx(&mut c, "k").1, strings(&["also-new", "new2"]));
    let (ctx, _) = getctx(&mut c, "k");
    assert_eq!(int(&call!(c, "DELCTX", "k", &ctx)), 2);
    assert_eq!(getctx(&mut c, "k").1, Vec::<String>::new());
    assert_eq!(dbsize(&mut c), 0);
}
