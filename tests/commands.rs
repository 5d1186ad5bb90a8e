//! The commands shoal supports, through the `redis` crate in RESP2 and
//! RESP3, checked against real Redis's replies and error wording.
//!
//! Commands go out through `ConnectionLike::req_command`, which hands back
//! the raw reply with server errors left in place as `Value::ServerError`,
//! so an error's exact text can be compared with Redis's.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::reply::{array, bulk, call, err, int, text};
use common::{Shoal, wait_for};
use redis::{Connection, ConnectionLike, Value};

/// A string-like reply (bulk, simple, verbatim, OK) as bytes.
fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.as_bytes().to_vec(),
        Value::VerbatimString { text, .. } => text.as_bytes().to_vec(),
        Value::Okay => b"OK".to_vec(),
        other => panic!("expected a string reply, got {other:?}"),
    }
}

/// The key/value pairs of a map reply (RESP3) or flat array (RESP2).
fn pairs(v: &Value) -> Vec<(Value, Value)> {
    match v {
        Value::Map(p) => p.clone(),
        Value::Array(flat) => {
            assert!(flat.len() % 2 == 0, "odd flat map: {flat:?}");
            flat.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()
        }
        other => panic!("expected a map reply, got {other:?}"),
    }
}

#[track_caller]
fn assert_ok(v: &Value) {
    assert_eq!(*v, Value::Okay, "expected OK");
}

#[track_caller]
fn assert_nil(v: &Value) {
    assert_eq!(*v, Value::Nil, "expected a null reply");
}

#[track_caller]
fn assert_bulk(v: &Value, want: &str) {
    assert_eq!(*v, Value::BulkString(want.as_bytes().to_vec()), "expected the bulk string {want:?}");
}

#[track_caller]
fn assert_err(v: &Value, want: &str) {
    assert_eq!(err(v), want);
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A connection of the given protocol, on an emptied keyspace.
fn connect(node: &Shoal, resp3: bool) -> Connection {
    let mut c = if resp3 { node.client3() } else { node.client() };
    assert_ok(&call!(c, "FLUSHALL"));
    c
}

/// Runs `area` once over RESP2 and once over RESP3.
fn both_protocols(area: impl Fn(&Shoal, &mut Connection, bool)) {
    let node = Shoal::start();
    for resp3 in [false, true] {
        let mut c = connect(&node, resp3);
        area(&node, &mut c, resp3);
    }
}

const INT_ERR: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

#[test]
fn strings() {
    both_protocols(|_, c, _| {
        // GET / SET.
        assert_nil(&call!(c, "GET", "k"));
        assert_ok(&call!(c, "SET", "k", "v"));
        assert_bulk(&call!(c, "GET", "k"), "v");
        assert_eq!(int(&call!(c, "TTL", "k")), -1);

        // Expiry options.
        assert_ok(&call!(c, "SET", "ex", "v", "EX", 100));
        assert!((99..=100).contains(&int(&call!(c, "TTL", "ex"))));
        assert_ok(&call!(c, "SET", "px", "v", "PX", 100_000));
        assert!((99_000..=100_000).contains(&int(&call!(c, "PTTL", "px"))));
        assert_ok(&call!(c, "SET", "exat", "v", "EXAT", now_secs() + 200));
        assert!((198..=200).contains(&int(&call!(c, "TTL", "exat"))));
        assert_ok(&call!(c, "SET", "pxat", "v", "PXAT", (now_secs() + 300) * 1000));
        assert!((298..=300).contains(&int(&call!(c, "TTL", "pxat"))));
        assert_ok(&call!(c, "SET", "lower", "v", "ex", 50));
        assert!((49..=50).contains(&int(&call!(c, "TTL", "lower"))), "options are case-insensitive");

        // KEEPTTL keeps the expiry; a plain SET clears it.
        assert_ok(&call!(c, "SET", "ex", "v2", "KEEPTTL"));
        assert_bulk(&call!(c, "GET", "ex"), "v2");
        assert!((99..=100).contains(&int(&call!(c, "TTL", "ex"))));
        assert_ok(&call!(c, "SET", "ex", "v3"));
        assert_eq!(int(&call!(c, "TTL", "ex")), -1);

        // NX / XX.
        assert_nil(&call!(c, "SET", "k", "other", "NX"));
        assert_bulk(&call!(c, "GET", "k"), "v");
        assert_ok(&call!(c, "SET", "nx", "1", "NX"));
        assert_bulk(&call!(c, "GET", "nx"), "1");
        assert_nil(&call!(c, "SET", "missing", "v", "XX"));
        assert_nil(&call!(c, "GET", "missing"));
        assert_eq!(int(&call!(c, "EXISTS", "missing")), 0, "XX on a missing key creates nothing");
        assert_ok(&call!(c, "SET", "k", "v2", "XX"));
        assert_bulk(&call!(c, "GET", "k"), "v2");

        // GET, alone and with NX / XX.
        assert_bulk(&call!(c, "SET", "k", "v3", "GET"), "v2");
        assert_bulk(&call!(c, "GET", "k"), "v3");
        assert_nil(&call!(c, "SET", "g", "new", "GET"));
        assert_bulk(&call!(c, "GET", "g"), "new");
        assert_bulk(&call!(c, "SET", "k", "ignored", "NX", "GET"), "v3");
        assert_bulk(&call!(c, "GET", "k"), "v3");
        assert_nil(&call!(c, "SET", "nxget", "set", "NX", "GET"));
        assert_bulk(&call!(c, "GET", "nxget"), "set");
        assert_nil(&call!(c, "SET", "missing", "v", "XX", "GET"));
        assert_eq!(int(&call!(c, "EXISTS", "missing")), 0);
        assert_bulk(&call!(c, "SET", "k", "v4", "XX", "GET", "EX", 100), "v3");
        assert!((99..=100).contains(&int(&call!(c, "TTL", "k"))));

        // Syntax and range errors; none of them writes.
        assert_err(&call!(c, "SET", "k", "v", "EX"), SYNTAX);
        assert_err(&call!(c, "SET", "k", "v", "NX", "XX"), SYNTAX);
        assert_err(&call!(c, "SET", "k", "v", "EX", 10, "PX", 10), SYNTAX);
        assert_err(&call!(c, "SET", "k", "v", "KEEPTTL", "EX", 10), SYNTAX);
        assert_err(&call!(c, "SET", "k", "v", "FOO"), SYNTAX);
        assert_err(&call!(c, "SET", "k", "v", "EX", "abc"), INT_ERR);
        let invalid = "ERR invalid expire time in 'set' command";
        assert_err(&call!(c, "SET", "k", "v", "EX", 0), invalid);
        assert_err(&call!(c, "SET", "k", "v", "EX", -1), invalid);
        assert_err(&call!(c, "SET", "k", "v", "PX", 0), invalid);
        assert_err(&call!(c, "SET", "k", "v", "EXAT", 0), invalid);
        assert_err(&call!(c, "SET", "k", "v", "EX", i64::MAX), invalid);
        assert_bulk(&call!(c, "GET", "k"), "v4");
        assert_err(&call!(c, "SET", "k"), "ERR wrong number of arguments for 'set' command");
        assert_err(&call!(c, "GET"), "ERR wrong number of arguments for 'get' command");

        // SETNX, SETEX, PSETEX.
        assert_eq!(int(&call!(c, "SETNX", "snx", "1")), 1);
        assert_eq!(int(&call!(c, "SETNX", "snx", "2")), 0);
        assert_bulk(&call!(c, "GET", "snx"), "1");
        assert_ok(&call!(c, "SETEX", "sex", 100, "v"));
        assert_bulk(&call!(c, "GET", "sex"), "v");
        assert!((99..=100).contains(&int(&call!(c, "TTL", "sex"))));
        assert_err(&call!(c, "SETEX", "sex", 0, "v"), "ERR invalid expire time in 'setex' command");
        assert_err(&call!(c, "SETEX", "sex", -5, "v"), "ERR invalid expire time in 'setex' command");
        assert_err(&call!(c, "SETEX", "sex", "abc", "v"), INT_ERR);
        assert_ok(&call!(c, "PSETEX", "psex", 100_000, "v"));
        assert!((99_000..=100_000).contains(&int(&call!(c, "PTTL", "psex"))));
        assert_err(&call!(c, "PSETEX", "psex", 0, "v"), "ERR invalid expire time in 'psetex' command");

        // GETSET returns the old value and clears the expiry.
        assert_bulk(&call!(c, "GETSET", "sex", "new"), "v");
        assert_bulk(&call!(c, "GET", "sex"), "new");
        assert_eq!(int(&call!(c, "TTL", "sex")), -1);
        assert_nil(&call!(c, "GETSET", "gs", "first"));
        assert_bulk(&call!(c, "GET", "gs"), "first");

        // GETDEL.
        assert_bulk(&call!(c, "GETDEL", "gs"), "first");
        assert_nil(&call!(c, "GETDEL", "gs"));
        assert_eq!(int(&call!(c, "EXISTS", "gs")), 0);

        // GETEX.
        assert_ok(&call!(c, "SET", "e", "v"));
        assert_bulk(&call!(c, "GETEX", "e"), "v");
        assert_eq!(int(&call!(c, "TTL", "e")), -1, "GETEX without options keeps no expiry");
        assert_bulk(&call!(c, "GETEX", "e", "EX", 100), "v");
        assert!((99..=100).contains(&int(&call!(c, "TTL", "e"))));
        assert_bulk(&call!(c, "GETEX", "e"), "v");
        assert!((99..=100).contains(&int(&call!(c, "TTL", "e"))), "GETEX without options keeps the expiry");
        assert_bulk(&call!(c, "GETEX", "e", "PX", 200_000), "v");
        assert!((199..=200).contains(&int(&call!(c, "TTL", "e"))));
        assert_bulk(&call!(c, "GETEX", "e", "EXAT", now_secs() + 300), "v");
        assert!((298..=300).contains(&int(&call!(c, "TTL", "e"))));
        assert_bulk(&call!(c, "GETEX", "e", "PXAT", (now_secs() + 400) * 1000), "v");
        assert!((398..=400).contains(&int(&call!(c, "TTL", "e"))));
        assert_bulk(&call!(c, "GETEX", "e", "PERSIST"), "v");
        assert_eq!(int(&call!(c, "TTL", "e")), -1);
        assert_nil(&call!(c, "GETEX", "nokey", "EX", 10));
        assert_eq!(int(&call!(c, "EXISTS", "nokey")), 0);
        assert_err(&call!(c, "GETEX", "e", "EX", 0), "ERR invalid expire time in 'getex' command");
        assert_err(&call!(c, "GETEX", "e", "EX", -1), "ERR invalid expire time in 'getex' command");
        assert_err(&call!(c, "GETEX", "e", "PERSIST", "EX", 10), SYNTAX);
        assert_err(&call!(c, "GETEX", "e", "FOO"), SYNTAX);
        assert_eq!(int(&call!(c, "TTL", "e")), -1);

        // MGET / MSET / MSETNX.
        assert_ok(&call!(c, "MSET", "m1", "a", "m2", "b", "m3", "c"));
        let got = call!(c, "MGET", "m1", "nokey", "m3", "m2", "nokey2");
        let expected = [Some("a"), None, Some("c"), Some("b"), None];
        let got = array(&got);
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            match e {
                Some(e) => assert_bulk(g, e),
                None => assert_nil(g),
            }
        }
        assert_ok(&call!(c, "MSET", "m1", "x"));
        assert_bulk(&call!(c, "GET", "m1"), "x");
        assert_err(&call!(c, "MSET", "a", "1", "b"), "ERR wrong number of arguments for 'mset' command");
        assert_err(&call!(c, "MSET", "a"), "ERR wrong number of arguments for 'mset' command");
        assert_eq!(int(&call!(c, "EXISTS", "a", "b")), 0);
        assert_err(&call!(c, "MSETNX", "a", "1", "b"), "ERR wrong number of arguments for 'msetnx' command");
        assert_eq!(int(&call!(c, "MSETNX", "n1", "1", "n2", "2")), 1);
        assert_bulk(&call!(c, "GET", "n2"), "2");
        assert_eq!(int(&call!(c, "MSETNX", "n3", "3", "n2", "changed")), 0);
        assert_eq!(int(&call!(c, "EXISTS", "n3")), 0, "MSETNX sets nothing when a key exists");
        assert_bulk(&call!(c, "GET", "n2"), "2");
        // A key named twice: judged before the command, its last value wins.
        assert_eq!(int(&call!(c, "MSETNX", "twice", "a", "twice", "b")), 1);
        assert_bulk(&call!(c, "GET", "twice"), "b");

        // STRLEN / APPEND.
        assert_eq!(int(&call!(c, "STRLEN", "nokey")), 0);
        assert_eq!(int(&call!(c, "APPEND", "ap", "abc")), 3);
        assert_eq!(int(&call!(c, "APPEND", "ap", "de")), 5);
        assert_bulk(&call!(c, "GET", "ap"), "abcde");
        assert_eq!(int(&call!(c, "STRLEN", "ap")), 5);
        assert_ok(&call!(c, "SET", "apt", "x", "EX", 100));
        assert_eq!(int(&call!(c, "APPEND", "apt", "yz")), 3);
        assert!((99..=100).contains(&int(&call!(c, "TTL", "apt"))), "APPEND keeps the expiry");

        // Counters.
        assert_eq!(int(&call!(c, "INCR", "cnt")), 1);
        assert_eq!(int(&call!(c, "INCRBY", "cnt", 10)), 11);
        assert_eq!(int(&call!(c, "DECR", "cnt")), 10);
        assert_eq!(int(&call!(c, "DECRBY", "cnt", 15)), -5);
        assert_eq!(int(&call!(c, "INCRBY", "cnt", -5)), -10);
        assert_bulk(&call!(c, "GET", "cnt"), "-10");
        assert_eq!(int(&call!(c, "DECR", "newcnt")), -1);
        assert_ok(&call!(c, "SET", "cntt", "5", "EX", 100));
        assert_eq!(int(&call!(c, "INCR", "cntt")), 6);
        assert!((99..=100).contains(&int(&call!(c, "TTL", "cntt"))), "INCR keeps the expiry");
        assert_ok(&call!(c, "SET", "word", "abc"));
        for v in [
            call!(c, "INCR", "word"),
            call!(c, "DECR", "word"),
            call!(c, "INCRBY", "word", 1),
            call!(c, "DECRBY", "word", 1),
            call!(c, "INCRBY", "cnt", "abc"),
            call!(c, "DECRBY", "cnt", "1.5"),
            call!(c, "INCRBY", "cnt", "99999999999999999999"),
        ] {
            assert_err(&v, INT_ERR);
        }
        for not_int in ["1.0", " 1", "1 ", "01", "+1", ""] {
            assert_ok(&call!(c, "SET", "odd", not_int));
            assert_err(&call!(c, "INCR", "odd"), INT_ERR);
        }
        assert_bulk(&call!(c, "GET", "word"), "abc");
        assert_ok(&call!(c, "SET", "max", i64::MAX));
        assert_err(&call!(c, "INCR", "max"), "ERR increment or decrement would overflow");
        assert_err(&call!(c, "INCRBY", "max", 1), "ERR increment or decrement would overflow");
        assert_bulk(&call!(c, "GET", "max"), &i64::MAX.to_string());
        assert_ok(&call!(c, "SET", "min", i64::MIN));
        assert_err(&call!(c, "DECR", "min"), "ERR increment or decrement would overflow");
        assert_eq!(int(&call!(c, "INCR", "min")), i64::MIN + 1);

        // INCRBYFLOAT.
        assert_ok(&call!(c, "SET", "f", "10.5"));
        assert_bulk(&call!(c, "INCRBYFLOAT", "f", "0.1"), "10.6");
        assert_bulk(&call!(c, "GET", "f"), "10.6");
        assert_bulk(&call!(c, "INCRBYFLOAT", "f", "-0.6"), "10");
        assert_bulk(&call!(c, "INCRBYFLOAT", "newf", "1.5"), "1.5");
        assert_ok(&call!(c, "SET", "f2", "5.0e3"));
        assert_bulk(&call!(c, "INCRBYFLOAT", "f2", "1"), "5001");
        assert_err(&call!(c, "INCRBYFLOAT", "word", "1"), "ERR value is not a valid float");
        assert_err(&call!(c, "INCRBYFLOAT", "f", "abc"), "ERR value is not a valid float");
        assert_err(&call!(c, "INCRBYFLOAT", "f", "nan"), "ERR value is not a valid float");
        assert_err(&call!(c, "INCRBYFLOAT", "f", "inf"), "ERR increment would produce NaN or Infinity");
        assert_err(&call!(c, "INCRBYFLOAT", "f", "1e400"), "ERR increment would produce NaN or Infinity");
        assert_bulk(&call!(c, "GET", "f"), "10");
    });
}

#[test]
fn keys() {
    both_protocols(|_, c, _| {
        // DEL / UNLINK / EXISTS.
        assert_ok(&call!(c, "MSET", "a", "1", "b", "2", "c", "3", "d", "4"));
        assert_eq!(int(&call!(c, "DEL", "a", "b", "nokey")), 2);
        assert_eq!(int(&call!(c, "DEL", "a")), 0);
        assert_eq!(int(&call!(c, "UNLINK", "c", "nokey")), 1);
        assert_eq!(int(&call!(c, "UNLINK", "c")), 0);
        assert_eq!(int(&call!(c, "EXISTS", "d")), 1);
        assert_eq!(int(&call!(c, "EXISTS", "d", "d", "nokey")), 2, "a key named twice counts twice");
        assert_eq!(int(&call!(c, "EXISTS", "a", "b", "c")), 0);

        // TTL / PTTL / PERSIST.
        assert_eq!(int(&call!(c, "TTL", "nokey")), -2);
        assert_eq!(int(&call!(c, "PTTL", "nokey")), -2);
        assert_eq!(int(&call!(c, "TTL", "d")), -1);
        assert_eq!(int(&call!(c, "PTTL", "d")), -1);
        assert_eq!(int(&call!(c, "PERSIST", "d")), 0);
        assert_eq!(int(&call!(c, "PERSIST", "nokey")), 0);

        // EXPIRE with NX / XX / GT / LT.
        assert_eq!(int(&call!(c, "EXPIRE", "nokey", 100)), 0);
        assert_eq!(int(&call!(c, "EXPIRE", "d", 100, "XX")), 0, "XX: no expiry yet");
        assert_eq!(int(&call!(c, "EXPIRE", "d", 100, "GT")), 0, "GT: no expiry counts as infinite");
        assert_eq!(int(&call!(c, "TTL", "d")), -1);
        assert_eq!(int(&call!(c, "EXPIRE", "d", 100, "NX")), 1);
        assert_eq!(int(&call!(c, "EXPIRE", "d", 200, "NX")), 0);
        assert!((99..=100).contains(&int(&call!(c, "TTL", "d"))));
        assert_eq!(int(&call!(c, "EXPIRE", "d", 200, "GT")), 1);
        assert_eq!(int(&call!(c, "EXPIRE", "d", 50, "GT")), 0);
        assert!((199..=200).contains(&int(&call!(c, "TTL", "d"))));
        assert_eq!(int(&call!(c, "EXPIRE", "d", 50, "LT")), 1);
        assert_eq!(int(&call!(c, "EXPIRE", "d", 300, "LT")), 0);
        assert!((49..=50).contains(&int(&call!(c, "TTL", "d"))));
        assert_eq!(int(&call!(c, "EXPIRE", "d", 150, "xx")), 1);
        assert!((149..=150).contains(&int(&call!(c, "TTL", "d"))));
        assert_eq!(int(&call!(c, "PERSIST", "d")), 1);
        assert_eq!(int(&call!(c, "TTL", "d")), -1);
        assert_eq!(int(&call!(c, "EXPIRE", "d", 100, "LT")), 1, "LT: no expiry counts as infinite");
        assert!((99..=100).contains(&int(&call!(c, "TTL", "d"))));
        assert_err(
            &call!(c, "EXPIRE", "d", 100, "NX", "XX"),
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        );
        assert_err(
            &call!(c, "EXPIRE", "d", 100, "GT", "LT"),
            "ERR GT and LT options at the same time are not compatible",
        );
        assert_err(&call!(c, "EXPIRE", "d", 100, "FOO"), "ERR Unsupported option FOO");
        assert_err(&call!(c, "EXPIRE", "d", "abc"), INT_ERR);
        assert_err(&call!(c, "EXPIRE", "d", i64::MAX), "ERR invalid expire time in 'expire' command");
        assert_err(&call!(c, "PEXPIRE", "d", i64::MAX), "ERR invalid expire time in 'pexpire' command");
        assert_err(&call!(c, "EXPIREAT", "d", i64::MAX), "ERR invalid expire time in 'expireat' command");

        // PEXPIRE / EXPIREAT / PEXPIREAT.
        assert_eq!(int(&call!(c, "PEXPIRE", "d", 5000, "LT")), 1);
        assert!((4000..=5000).contains(&int(&call!(c, "PTTL", "d"))));
        assert_eq!(int(&call!(c, "EXPIREAT", "d", now_secs() + 1000)), 1);
        assert!((998..=1000).contains(&int(&call!(c, "TTL", "d"))));
        assert_eq!(int(&call!(c, "EXPIREAT", "d", now_secs() + 2000, "LT")), 0);
        assert_eq!(int(&call!(c, "PEXPIREAT", "d", (now_secs() + 2000) * 1000, "GT")), 1);
        assert!((1998..=2000).contains(&int(&call!(c, "TTL", "d"))));
        assert_eq!(int(&call!(c, "PEXPIREAT", "d", (now_secs() + 3000) * 1000, "NX")), 0);

        // A time in the past deletes the key.
        for (name, when) in [("EXPIRE", -1), ("PEXPIRE", -100), ("EXPIRE", 0), ("EXPIREAT", 1), ("PEXPIREAT", 1000)] {
            assert_ok(&call!(c, "SET", "gone", "v"));
            assert_eq!(int(&call!(c, name, "gone", when)), 1, "{name} {when}");
            assert_eq!(int(&call!(c, "EXISTS", "gone")), 0, "{name} {when} deletes the key");
            assert_nil(&call!(c, "GET", "gone"));
            assert_eq!(int(&call!(c, "TTL", "gone")), -2);
        }

        // TYPE.
        assert_eq!(call!(c, "TYPE", "d"), Value::SimpleString("string".into()));
        assert_eq!(call!(c, "TYPE", "nokey"), Value::SimpleString("none".into()));

        // A short expiry: the key disappears by itself.
        assert_ok(&call!(c, "SET", "short", "v", "PX", 100));
        assert!(int(&call!(c, "PTTL", "short")) <= 100);
        wait_for("the PX 100 key to expire", Duration::from_secs(10), || {
            (call!(c, "GET", "short") == Value::Nil).then_some(())
        });
        assert_eq!(int(&call!(c, "EXISTS", "short")), 0);
        assert_eq!(int(&call!(c, "TTL", "short")), -2);
        // …and is reclaimed: DBSIZE and INFO stop counting it, as Redis's
        // active expiry does.
        wait_for("the expired key to leave DBSIZE", Duration::from_secs(10), || {
            (int(&call!(c, "DBSIZE")) == 1).then_some(())
        });

        // DBSIZE / FLUSHDB / FLUSHALL.
        assert_ok(&call!(c, "FLUSHDB"));
        assert_eq!(int(&call!(c, "DBSIZE")), 0);
        assert_ok(&call!(c, "MSET", "x", "1", "y", "2", "z", "3"));
        assert_eq!(int(&call!(c, "DBSIZE")), 3);
        assert_ok(&call!(c, "FLUSHDB"));
        assert_eq!(int(&call!(c, "DBSIZE")), 0);
        assert_nil(&call!(c, "GET", "x"));
        assert_ok(&call!(c, "MSET", "x", "1", "y", "2"));
        assert_eq!(int(&call!(c, "DBSIZE")), 2);
        assert_ok(&call!(c, "FLUSHALL"));
        assert_eq!(int(&call!(c, "DBSIZE")), 0);
        assert_ok(&call!(c, "FLUSHALL", "ASYNC"));
        assert_ok(&call!(c, "FLUSHDB", "SYNC"));
        assert_err(&call!(c, "FLUSHDB", "FOO"), SYNTAX);

        // KEYS with glob patterns.
        for k in ["user:1", "user:2", "user:", "users", "hello", "hallo", "hillo", "hllo", "heello", "xhello"] {
            assert_ok(&call!(c, "SET", k, "v"));
        }
        let keys = |c: &mut Connection, pattern: &str| -> HashSet<String> {
            array(&call!(c, "KEYS", pattern)).iter().map(bulk).collect()
        };
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        assert_eq!(keys(c, "user:*"), set(&["user:1", "user:2", "user:"]));
        assert_eq!(keys(c, "h?llo"), set(&["hello", "hallo", "hillo"]));
        assert_eq!(keys(c, "h[ae]llo"), set(&["hello", "hallo"]));
        assert_eq!(
            keys(c, "*"),
            set(&["user:1", "user:2", "user:", "users", "hello", "hallo", "hillo", "hllo", "heello", "xhello"])
        );
        assert_eq!(keys(c, "nomatch*"), set(&[]));
        assert_eq!(array(&call!(c, "KEYS", "*")).len(), 10, "KEYS lists each key once");
    });
}

/// Walks SCAN from cursor 0 back to 0, returning every key it listed
/// (with repeats) and checking each cursor is a decimal integer.
fn scan_all(c: &mut Connection, options: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(&cursor).arg(options);
        let reply = c.req_command(&cmd).expect("connection");
        let parts = array(&reply);
        assert_eq!(parts.len(), 2, "SCAN replies [cursor, keys]: {reply:?}");
        cursor = bulk(&parts[0]);
        assert!(cursor.parse::<u64>().is_ok(), "cursor {cursor:?} is a decimal integer");
        all.extend(array(&parts[1]).iter().map(bulk));
        if cursor == "0" {
            return all;
        }
    }
    panic!("SCAN did not come back to cursor 0");
}

#[test]
fn scan_visits_every_key_once() {
    both_protocols(|_, c, _| {
        let mut expected = HashSet::new();
        for chunk in 0..10 {
            let mut cmd = redis::cmd("MSET");
            for i in chunk * 100..(chunk + 1) * 100 {
                let key = if i % 2 == 0 { format!("user:{i}") } else { format!("item:{i}") };
                cmd.arg(&key).arg(i);
                expected.insert(key);
            }
            assert_ok(&c.req_command(&cmd).expect("connection"));
        }
        assert_eq!(int(&call!(c, "DBSIZE")), 1000);

        for options in [&[][..], &["COUNT", "100"][..], &["COUNT", "7"][..], &["COUNT", "5000"][..]] {
            let all = scan_all(c, options);
            let unique: HashSet<String> = all.iter().cloned().collect();
            assert_eq!(all.len(), unique.len(), "SCAN {options:?} returned a key twice");
            assert_eq!(unique, expected, "SCAN {options:?} returned every key");
        }

        let users: HashSet<String> = expected.iter().filter(|k| k.starts_with("user:")).cloned().collect();
        for options in [&["MATCH", "user:*"][..], &["MATCH", "user:*", "COUNT", "50"][..]] {
            let all = scan_all(c, options);
            let unique: HashSet<String> = all.iter().cloned().collect();
            assert_eq!(all.len(), unique.len(), "SCAN {options:?} returned a key twice");
            assert_eq!(unique, users, "SCAN {options:?}");
        }
        let ones = scan_all(c, &["MATCH", "item:1?", "COUNT", "1000"]);
        let ones: HashSet<String> = ones.into_iter().collect();
        let want: HashSet<String> = (11..20).step_by(2).map(|i| format!("item:{i}")).collect();
        assert_eq!(ones, want);

        assert_err(&call!(c, "SCAN", "abc"), "ERR invalid cursor");
        assert_err(&call!(c, "SCAN", "0", "COUNT", "0"), SYNTAX);
        assert_err(&call!(c, "SCAN", "0", "FOO"), SYNTAX);
    });
}

#[test]
fn connection_and_server() {
    both_protocols(|node, c, resp3| {
        // PING / ECHO / SELECT.
        assert_eq!(call!(c, "PING"), Value::SimpleString("PONG".into()));
        assert_bulk(&call!(c, "PING", "hello world"), "hello world");
        assert_err(&call!(c, "PING", "a", "b"), "ERR wrong number of arguments for 'ping' command");
        assert_bulk(&call!(c, "ECHO", "hi\r\nthere"), "hi\r\nthere");
        assert_err(&call!(c, "ECHO"), "ERR wrong number of arguments for 'echo' command");
        assert_ok(&call!(c, "SELECT", 0));
        assert_err(&call!(c, "SELECT", 1), "ERR DB index is out of range");
        assert_err(&call!(c, "SELECT", "abc"), INT_ERR);
        assert_err(
            &call!(c, "NOSUCHCMD", "a", "b c"),
            "ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b c' ",
        );

        // AUTH without a configured password.
        assert_err(
            &call!(c, "AUTH", "secret"),
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
        assert_ok(&call!(c, "AUTH", "default", "anything"));
        assert_err(&call!(c, "AUTH", "bob", "x"), "WRONGPASS invalid username-password pair or user is disabled.");

        // HELLO.
        let id = int(&call!(c, "CLIENT", "ID"));
        assert!(id > 0);
        let check_hello = |reply: &Value, proto: i64| {
            if proto == 3 {
                assert!(matches!(reply, Value::Map(_)), "HELLO 3 replies with a map: {reply:?}");
            } else {
                assert!(matches!(reply, Value::Array(items) if items.len() == 14), "HELLO 2: flat *14: {reply:?}");
            }
            let fields = pairs(reply);
            let keys: Vec<String> = fields.iter().map(|(k, _)| bulk(k)).collect();
            assert_eq!(keys, ["server", "version", "proto", "id", "mode", "role", "modules"]);
            let map: HashMap<String, Value> = fields.into_iter().map(|(k, v)| (bulk(&k), v)).collect();
            assert_bulk(&map["server"], "redis");
            assert!(bulk(&map["version"]).starts_with("7."), "version {:?}", map["version"]);
            assert_eq!(map["proto"], Value::Int(proto));
            assert_eq!(map["id"], Value::Int(id));
            assert_bulk(&map["mode"], "standalone");
            assert_bulk(&map["role"], "master");
            assert_eq!(map["modules"], Value::Array(vec![]));
        };
        check_hello(&call!(c, "HELLO", 3), 3);
        // Now in RESP3: CONFIG GET is a map.
        assert!(matches!(call!(c, "CONFIG", "GET", "save"), Value::Map(_)));
        assert_err(&call!(c, "HELLO", 4), "NOPROTO unsupported protocol version");
        assert_err(&call!(c, "HELLO", "abc"), "ERR Protocol version is not an integer or out of range");
        assert_err(&call!(c, "HELLO", 2, "foo"), "ERR Syntax error in HELLO option 'foo'");
        check_hello(&call!(c, "HELLO", 2), 2);
        // Back in RESP2: CONFIG GET is a flat array.
        assert!(matches!(call!(c, "CONFIG", "GET", "save"), Value::Array(_)));
        check_hello(&call!(c, "HELLO"), 2);
        if resp3 {
            check_hello(&call!(c, "HELLO", 3), 3);
        }

        // CLIENT.
        assert_nil(&call!(c, "CLIENT", "GETNAME"));
        assert_ok(&call!(c, "CLIENT", "SETNAME", "tester"));
        assert_bulk(&call!(c, "CLIENT", "GETNAME"), "tester");
        assert_err(
            &call!(c, "CLIENT", "SETNAME", "two words"),
            "ERR Client names cannot contain spaces, newlines or special characters.",
        );
        assert_bulk(&call!(c, "CLIENT", "GETNAME"), "tester");
        assert_eq!(int(&call!(c, "CLIENT", "ID")), id);
        assert_ok(&call!(c, "CLIENT", "SETINFO", "LIB-NAME", "mylib"));
        assert_ok(&call!(c, "CLIENT", "SETINFO", "LIB-VER", "1.2.3"));
        let info = text(&call!(c, "CLIENT", "INFO"));
        assert!(info.starts_with(&format!("id={id} ")), "{info}");
        for field in ["name=tester", "lib-name=mylib", "lib-ver=1.2.3", &format!("resp={}", if resp3 { 3 } else { 2 })]
        {
            assert!(info.split_whitespace().any(|f| f == field), "CLIENT INFO has {field}: {info}");
        }
        let mut other = node.client();
        assert_ok(&call!(other, "CLIENT", "SETNAME", "other"));
        let list = text(&call!(c, "CLIENT", "LIST"));
        let lines: Vec<&str> = list.lines().collect();
        assert!(lines.len() >= 2, "{list}");
        assert!(lines.iter().any(|l| l.starts_with(&format!("id={id} ")) && l.contains(" name=tester ")), "{list}");
        assert!(lines.iter().any(|l| l.contains(" name=other ")), "{list}");
        drop(other);
        assert_err(&call!(c, "CLIENT", "FOO"), "ERR unknown subcommand 'FOO'. Try CLIENT HELP.");
        assert_err(&call!(c, "CLIENT", "GETNAME", "x"), "ERR wrong number of arguments for 'client|getname' command");
        assert!(!array(&call!(c, "CLIENT", "HELP")).is_empty());

        // COMMAND.
        let count = int(&call!(c, "COMMAND", "COUNT"));
        let all = call!(c, "COMMAND");
        let entries = array(&all);
        assert_eq!(entries.len() as i64, count);
        assert!(count >= 40, "{count} commands");
        let mut names = HashSet::new();
        for e in entries {
            let e = array(e);
            assert_eq!(e.len(), 10, "{e:?}");
            let name = bulk(&e[0]);
            int(&e[1]);
            int(&e[3]);
            assert!(names.insert(name.clone()), "{name} listed twice");
        }
        for name in ["get", "set", "ping", "hello", "command", "info", "config", "scan", "multi", "exec"] {
            assert!(names.contains(name), "COMMAND lists {name}");
        }
        let info = call!(c, "COMMAND", "INFO", "get", "nosuchcommand");
        let info = array(&info);
        assert_eq!(info.len(), 2);
        let get = array(&info[0]);
        assert_eq!(get.len(), 10);
        assert_bulk(&get[0], "get");
        assert_eq!(get[1], Value::Int(2));
        assert_eq!((&get[3], &get[4], &get[5]), (&Value::Int(1), &Value::Int(1), &Value::Int(1)));
        assert_nil(&info[1]);
        assert!(matches!(call!(c, "COMMAND", "DOCS"), Value::ServerError(_)), "COMMAND DOCS is an error");

        // INFO.
        let info = text(&call!(c, "INFO"));
        if resp3 {
            assert!(matches!(call!(c, "INFO"), Value::VerbatimString { .. }), "RESP3 INFO is verbatim");
        } else {
            assert!(matches!(call!(c, "INFO"), Value::BulkString(_)), "RESP2 INFO is a bulk string");
        }
        assert!(info.starts_with("# Server\r\nredis_version:"), "{info}");
        let lines: Vec<&str> = info.split("\r\n").collect();
        for line in ["loading:0", "role:master"] {
            assert!(lines.contains(&line), "INFO has {line}");
        }
        assert!(lines.iter().any(|l| l.starts_with("redis_version:7.")));
        assert!(!info.contains("db0:"), "an empty keyspace has no db0 line: {info}");
        assert_ok(&call!(c, "MSET", "i1", "1", "i2", "2", "i3", "3", "i4", "4", "i5", "5"));
        assert_ok(&call!(c, "SET", "i6", "6", "EX", 1000));
        assert_ok(&call!(c, "SET", "i7", "7", "PX", 1_000_000));
        assert_eq!(int(&call!(c, "DEL", "i5")), 1);
        let info = text(&call!(c, "INFO"));
        let db0 = info.split("\r\n").find(|l| l.starts_with("db0:")).expect("db0 line");
        assert!(db0.starts_with("db0:keys=6,expires=2,avg_ttl="), "{db0}");
        let keyspace = text(&call!(c, "INFO", "keyspace"));
        assert!(keyspace.starts_with("# Keyspace\r\n"), "{keyspace}");
        assert!(keyspace.contains("\r\ndb0:keys=6,expires=2,avg_ttl="), "{keyspace}");
        for section in ["server", "SERVER", "clients", "persistence", "replication", "keyspace"] {
            let only = text(&call!(c, "INFO", section));
            let titles: Vec<&str> = only.split("\r\n").filter(|l| l.starts_with("# ")).collect();
            assert_eq!(titles.len(), 1, "INFO {section} has one section: {only}");
            assert!(titles[0].eq_ignore_ascii_case(&format!("# {section}")), "{titles:?}");
        }
        let server = text(&call!(c, "INFO", "server"));
        assert!(server.starts_with("# Server\r\nredis_version:"), "{server}");
        assert!(!server.contains("loading:") && !server.contains("db0:"), "{server}");

        // CONFIG GET.
        for (name, value) in [("save", ""), ("appendonly", "no")] {
            let reply = call!(c, "CONFIG", "GET", name);
            if resp3 {
                assert_eq!(reply, Value::Map(vec![(Value::BulkString(name.into()), Value::BulkString(value.into()))]));
            } else {
                assert_eq!(reply, Value::Array(vec![Value::BulkString(name.into()), Value::BulkString(value.into())]));
            }
        }
        let none = call!(c, "CONFIG", "GET", "nosuchthing");
        assert!(pairs(&none).is_empty(), "{none:?}");
        if !resp3 {
            assert_eq!(none, Value::Array(vec![]));
        }
        assert_err(&call!(c, "CONFIG", "GET"), "ERR wrong number of arguments for 'config|get' command");
    });
}

#[test]
fn transactions() {
    both_protocols(|_, c, _| {
        let queued = Value::SimpleString("QUEUED".into());

        // Replies come back in order.
        assert_ok(&call!(c, "MULTI"));
        assert_eq!(call!(c, "SET", "t", "1"), queued);
        assert_eq!(call!(c, "INCR", "t"), queued);
        assert_eq!(call!(c, "GET", "t"), queued);
        assert_eq!(call!(c, "GET", "nokey"), queued);
        let exec = call!(c, "EXEC");
        let replies = array(&exec);
        assert_eq!(replies.len(), 4);
        assert_ok(&replies[0]);
        assert_eq!(replies[1], Value::Int(2));
        assert_bulk(&replies[2], "2");
        assert_nil(&replies[3]);

        // An empty transaction.
        assert_ok(&call!(c, "MULTI"));
        assert_eq!(call!(c, "EXEC"), Value::Array(vec![]));

        // DISCARD drops the queue.
        assert_ok(&call!(c, "MULTI"));
        assert_eq!(call!(c, "SET", "t", "discarded"), queued);
        assert_ok(&call!(c, "DISCARD"));
        assert_bulk(&call!(c, "GET", "t"), "2");
        assert_err(&call!(c, "DISCARD"), "ERR DISCARD without MULTI");

        assert_err(&call!(c, "EXEC"), "ERR EXEC without MULTI");

        // Nested MULTI is refused without ending the transaction.
        assert_ok(&call!(c, "MULTI"));
        assert_err(&call!(c, "MULTI"), "ERR MULTI calls can not be nested");
        assert_eq!(call!(c, "SET", "t", "3"), queued);
        let exec = call!(c, "EXEC");
        assert_eq!(array(&exec).len(), 1);
        assert_ok(&array(&exec)[0]);
        assert_bulk(&call!(c, "GET", "t"), "3");

        // A command refused while queueing aborts the whole transaction.
        assert_ok(&call!(c, "MULTI"));
        assert_err(&call!(c, "NOSUCHCMD", "x"), "ERR unknown command 'NOSUCHCMD', with args beginning with: 'x' ");
        assert_eq!(call!(c, "SET", "t", "aborted"), queued);
        assert_err(&call!(c, "EXEC"), "EXECABORT Transaction discarded because of previous errors.");
        assert_bulk(&call!(c, "GET", "t"), "3");
        assert_ok(&call!(c, "MULTI"));
        assert_err(&call!(c, "GET"), "ERR wrong number of arguments for 'get' command");
        assert_eq!(call!(c, "SET", "t", "aborted"), queued);
        assert_err(&call!(c, "EXEC"), "EXECABORT Transaction discarded because of previous errors.");
        assert_bulk(&call!(c, "GET", "t"), "3");
        assert_err(&call!(c, "EXEC"), "ERR EXEC without MULTI");

        // A runtime error is just that element's reply.
        assert_ok(&call!(c, "SET", "word", "abc"));
        assert_ok(&call!(c, "MULTI"));
        assert_eq!(call!(c, "SET", "r", "1"), queued);
        assert_eq!(call!(c, "INCR", "word"), queued);
        assert_eq!(call!(c, "SET", "k", "v", "EX", 0), queued);
        assert_eq!(call!(c, "INCR", "r"), queued);
        let exec = call!(c, "EXEC");
        let replies = array(&exec);
        assert_eq!(replies.len(), 4);
        assert_ok(&replies[0]);
        assert_err(&replies[1], INT_ERR);
        assert_err(&replies[2], "ERR invalid expire time in 'set' command");
        assert_eq!(replies[3], Value::Int(2));
        assert_bulk(&call!(c, "GET", "r"), "2");

        // The crate's atomic pipeline (MULTI … EXEC in one write).
        let got: Vec<Value> = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg("p")
            .arg("10")
            .cmd("INCRBY")
            .arg("p")
            .arg(5)
            .cmd("GET")
            .arg("p")
            .cmd("MGET")
            .arg("p")
            .arg("nokey")
            .query(c)
            .expect("atomic pipeline");
        assert_eq!(got.len(), 4);
        assert_ok(&got[0]);
        assert_eq!(got[1], Value::Int(15));
        assert_bulk(&got[2], "15");
        assert_eq!(got[3], Value::Array(vec![Value::BulkString(b"15".to_vec()), Value::Nil]));

        // And a plain pipeline.
        let got: Vec<Value> =
            redis::pipe().cmd("INCR").arg("p").cmd("GET").arg("p").cmd("PING").query(c).expect("pipeline");
        assert_eq!(got[0], Value::Int(16));
        assert_bulk(&got[1], "16");
        assert_eq!(got[2], Value::SimpleString("PONG".into()));
    });
}

#[test]
fn binary_safety() {
    both_protocols(|_, c, _| {
        let all: Vec<u8> = (0..=255u8).collect();
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"nul\0key".to_vec(), b"nul\0value\0".to_vec()),
            (b"crlf\r\nkey".to_vec(), b"line1\r\nline2\r\n".to_vec()),
            (b"\r\n".to_vec(), b"\r\n$5\r\n*1\r\n".to_vec()),
            (all.clone(), all.iter().rev().copied().collect()),
            (b"binary-value".to_vec(), all.repeat(4)),
            (vec![0xff, 0xfe, 0x00], vec![0x80]),
        ];
        for (key, value) in &cases {
            assert_ok(&call!(c, "SET", key.as_slice(), value.as_slice()));
        }
        for (key, value) in &cases {
            assert_eq!(call!(c, "GET", key.as_slice()), Value::BulkString(value.clone()), "key {key:?}");
            assert_eq!(int(&call!(c, "STRLEN", key.as_slice())), value.len() as i64);
            assert_eq!(int(&call!(c, "EXISTS", key.as_slice())), 1);
        }
        let listed: HashSet<Vec<u8>> = array(&call!(c, "KEYS", "*")).iter().map(bytes).collect();
        let keys: HashSet<Vec<u8>> = cases.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(listed, keys, "KEYS returns binary keys intact");
        let mget = call!(c, "MGET", cases[0].0.as_slice(), cases[3].0.as_slice());
        assert_eq!(
            mget,
            Value::Array(vec![Value::BulkString(cases[0].1.clone()), Value::BulkString(cases[3].1.clone())])
        );
        assert_eq!(int(&call!(c, "APPEND", all.as_slice(), &b"\0\r\n"[..])), 259);
        assert_eq!(call!(c, "GETDEL", cases[1].0.as_slice()), Value::BulkString(cases[1].1.clone()));
        assert_eq!(int(&call!(c, "EXISTS", cases[1].0.as_slice())), 0);

        // Large and empty values.
        let big: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert_ok(&call!(c, "SET", "big", big.as_slice()));
        assert_eq!(call!(c, "GET", "big"), Value::BulkString(big.clone()));
        assert_eq!(int(&call!(c, "STRLEN", "big")), 1024 * 1024);
        assert_ok(&call!(c, "SET", "empty", ""));
        assert_eq!(call!(c, "GET", "empty"), Value::BulkString(vec![]));
        assert_eq!(int(&call!(c, "STRLEN", "empty")), 0);
        assert_eq!(int(&call!(c, "EXISTS", "empty")), 1);
        assert_eq!(call!(c, "TYPE", "empty"), Value::SimpleString("string".into()));
        assert_ok(&call!(c, "SET", "", "empty key"));
        assert_bulk(&call!(c, "GET", ""), "empty key");
    });
}

#[test]
fn overlong_key_is_refused_and_connection_survives() {
    both_protocols(|_, c, _| {
        let long = vec![b'k'; 65_001];
        for reply in
            [call!(c, "SET", long.as_slice(), "v"), call!(c, "GET", long.as_slice()), call!(c, "INCR", long.as_slice())]
        {
            let e = err(&reply);
            assert!(e.starts_with("ERR key is too long"), "{e}");
        }
        assert_eq!(call!(c, "PING"), Value::SimpleString("PONG".into()));
        assert_ok(&call!(c, "SET", "after", "ok"));
        assert_bulk(&call!(c, "GET", "after"), "ok");
        let at_limit = vec![b'k'; 65_000];
        assert_ok(&call!(c, "SET", at_limit.as_slice(), "v"));
        assert_bulk(&call!(c, "GET", at_limit.as_slice()), "v");
        assert_eq!(int(&call!(c, "DBSIZE")), 2);
    });
}

#[test]
fn set_and_getex_accept_a_repeated_option() {
    both_protocols(|_, c, _| {
        assert_nil(&call!(c, "SET", "k", "v", "GET", "GET"));
        assert_bulk(&call!(c, "GET", "k"), "v");
        assert_nil(&call!(c, "SET", "k", "w", "NX", "NX"));
        assert_ok(&call!(c, "SET", "k", "x", "XX", "XX"));
        assert_ok(&call!(c, "SET", "k", "y", "EX", 10, "EX", 200));
        assert!((199..=200).contains(&int(&call!(c, "TTL", "k"))), "the last EX wins");
        assert_ok(&call!(c, "SET", "k", "z", "KEEPTTL", "KEEPTTL"));
        assert!((199..=200).contains(&int(&call!(c, "TTL", "k"))));
        assert_bulk(&call!(c, "GETEX", "k", "EX", 10, "EX", 300), "z");
        assert!((299..=300).contains(&int(&call!(c, "TTL", "k"))), "the last EX wins");
        assert_bulk(&call!(c, "GETEX", "k", "PERSIST", "PERSIST"), "z");
        assert_eq!(int(&call!(c, "TTL", "k")), -1);
    });
}

#[test]
fn expire_combines_xx_with_gt_and_lt() {
    both_protocols(|_, c, _| {
        assert_ok(&call!(c, "SET", "e", "v", "EX", 100));
        assert_eq!(int(&call!(c, "EXPIRE", "e", 200, "XX", "GT")), 1);
        assert!((199..=200).contains(&int(&call!(c, "TTL", "e"))));
        assert_eq!(int(&call!(c, "EXPIRE", "e", 50, "XX", "GT")), 0);
        assert_eq!(int(&call!(c, "EXPIRE", "e", 50, "LT", "XX")), 1);
        assert!((49..=50).contains(&int(&call!(c, "TTL", "e"))));
        assert_eq!(int(&call!(c, "PEXPIRE", "e", 1000, "XX", "LT")), 1);
        assert!((900..=1000).contains(&int(&call!(c, "PTTL", "e"))));
        assert_ok(&call!(c, "SET", "p", "v"));
        assert_eq!(int(&call!(c, "EXPIRE", "p", 100, "XX", "LT")), 0, "XX: no expiry to replace");
        assert_eq!(int(&call!(c, "TTL", "p")), -1);
        assert_err(
            &call!(c, "EXPIRE", "p", 100, "NX", "GT"),
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        );
    });
}
