//! Sending commands and decoding their raw replies, shared by the test
//! files that drive a node through the `redis` crate.
//!
//! Commands go out through `ConnectionLike::req_command`, which hands back
//! the raw reply with server errors left in place as `Value::ServerError`,
//! so both a reply's shape and an error's exact text can be checked. Every
//! decoder panics, naming what it got, when a reply is not of the expected
//! kind.

#![allow(dead_code)]

use std::collections::HashMap;

use redis::{ConnectionLike, Value};

/// Sends one command and returns its raw reply (errors included):
/// `call!(conn, "SET", key, value)`.
macro_rules! call {
    ($c:expr, $name:expr $(, $arg:expr)* $(,)?) => {{
        // Unused where `$c` is generic over the trait already.
        #[allow(unused_imports)]
        use ::redis::ConnectionLike as _;
        #[allow(unused_mut)]
        let mut cmd = ::redis::cmd($name);
        $( cmd.arg($arg); )*
        $c.req_command(&cmd).expect("connection failed")
    }};
}

#[allow(unused_imports)]
pub(crate) use call;

/// The full error line of a reply (`CODE detail`), if it is an error.
pub fn error_text(v: &Value) -> Option<String> {
    match v {
        Value::ServerError(e) => Some(match e.details() {
            Some(d) => format!("{} {d}", e.code()),
            None => e.code().to_string(),
        }),
        _ => None,
    }
}

/// The full error line of a reply (`CODE detail`), or a panic.
#[track_caller]
pub fn err(v: &Value) -> String {
    error_text(v).unwrap_or_else(|| panic!("expected an error reply, got {v:?}"))
}

/// Asserts the reply is `OK`.
#[track_caller]
pub fn ok(v: &Value) {
    assert!(matches!(v, Value::Okay), "expected OK, got {v:?}");
}

/// An integer reply.
#[track_caller]
pub fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("expected an integer reply, got {other:?}"),
    }
}

/// A bulk, simple or verbatim string reply as text (not `OK`).
#[track_caller]
pub fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).expect("utf-8 reply"),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("expected a string reply, got {other:?}"),
    }
}

/// A string reply as [`text`], or nil as `None`.
#[track_caller]
pub fn opt_text(v: &Value) -> Option<String> {
    match v {
        Value::Nil => None,
        other => Some(text(other)),
    }
}

/// A bulk string reply as text (not a simple string or `OK`).
#[track_caller]
pub fn bulk(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).expect("utf-8 reply"),
        other => panic!("expected a bulk string reply, got {other:?}"),
    }
}

/// A bulk string reply as text, or nil as `None`.
#[track_caller]
pub fn opt_bulk(v: &Value) -> Option<String> {
    match v {
        Value::Nil => None,
        other => Some(bulk(other)),
    }
}

/// The items of an array reply.
#[track_caller]
pub fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => panic!("expected an array reply, got {other:?}"),
    }
}

/// A map reply (a flat array of pairs in RESP2) by field name.
#[track_caller]
pub fn fields(v: &Value) -> HashMap<String, Value> {
    match v {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        Value::Array(items) => {
            assert!(items.len() % 2 == 0, "a map has pairs: {items:?}");
            items.chunks(2).map(|p| (text(&p[0]), p[1].clone())).collect()
        }
        other => panic!("expected a map reply, got {other:?}"),
    }
}

/// GET key: the value as a bulk string, or nil as `None`.
#[track_caller]
pub fn get(c: &mut impl ConnectionLike, key: &str) -> Option<String> {
    opt_bulk(&call!(c, "GET", key))
}

/// SET key value, which must answer `OK`.
#[track_caller]
pub fn set(c: &mut impl ConnectionLike, key: &str, value: &str) {
    ok(&call!(c, "SET", key, value));
}

/// A GETCTX reply as (context, values oldest first), checking its shape:
/// a two-element array of a bulk string and an array of bulk strings.
#[track_caller]
pub fn getctx_reply(v: &Value) -> (String, Vec<String>) {
    context_and_values(v, "GETCTX")
}

/// GETCTX key → (context, values oldest first), shape checked as by
/// [`getctx_reply`].
#[track_caller]
pub fn getctx(c: &mut impl ConnectionLike, key: &str) -> (String, Vec<String>) {
    context_and_values(&call!(c, "GETCTX", key), &format!("GETCTX {key}"))
}

/// The [`getctx_reply`] decoding; `what` names the request in panics.
#[track_caller]
fn context_and_values(v: &Value, what: &str) -> (String, Vec<String>) {
    match v {
        Value::Array(items) => {
            assert_eq!(items.len(), 2, "{what} is [context, values]: {items:?}");
            let values = match &items[1] {
                Value::Array(vs) => vs.iter().map(bulk).collect(),
                other => panic!("{what}: values are an array, got {other:?}"),
            };
            (bulk(&items[0]), values)
        }
        other => panic!("{what}: expected an array, got {other:?}"),
    }
}

/// SETCTX that must succeed; returns the new context.
#[track_caller]
pub fn setctx(c: &mut impl ConnectionLike, key: &str, ctx: &str, value: &str) -> String {
    let next = bulk(&call!(c, "SETCTX", key, ctx, value));
    assert!(!next.is_empty(), "SETCTX returns the context of the write it made");
    next
}

/// One field of an `INFO section` reply (bulk in RESP2, verbatim in RESP3).
#[track_caller]
pub fn info(c: &mut impl ConnectionLike, section: &str, field: &str) -> String {
    let all = match call!(c, "INFO", section) {
        Value::BulkString(b) => String::from_utf8(b).expect("utf-8 INFO"),
        Value::VerbatimString { text, .. } => text,
        other => panic!("INFO {section}: expected text, got {other:?}"),
    };
    all.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}: {all}"))
}

/// One node of a SHOAL.WHERE reply.
#[derive(Debug, Clone)]
pub struct Holder {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    /// (holds, values, context), or the error in asking the node.
    pub copy: Result<(i64, i64, String), String>,
    pub up: bool,
    /// The ids of the nodes it keeps a hint about the key for.
    pub hints: Vec<String>,
}

/// SHOAL.WHERE key → (partition, preference list).
#[track_caller]
pub fn where_is(c: &mut impl ConnectionLike, key: &str) -> (i64, Vec<Holder>) {
    let reply = call!(c, "SHOAL.WHERE", key);
    let top = fields(&reply);
    assert_eq!(top.len(), 2, "SHOAL.WHERE is {{partition, nodes}}: {reply:?}");
    let partition = int(&top["partition"]);
    let nodes = array(&top["nodes"])
        .iter()
        .map(|n| {
            let f = fields(n);
            let address = text(&f["address"]);
            let role = text(&f["role"]);
            assert!(role == "primary" || role == "fallback", "role {role}");
            let copy = match f.get("error") {
                Some(e) => Err(text(e)),
                None => Ok((int(&f["holds"]), int(&f["values"]), text(&f["context"]))),
            };
            Holder {
                id: text(&f["id"]),
                port: address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("address host:port"),
                primary: role == "primary",
                copy,
                up: int(&f["up"]) == 1,
                hints: array(&f["hints"]).iter().map(text).collect(),
            }
        })
        .collect();
    (partition, nodes)
}

/// SHOAL.STATUS's members, one field map each.
#[track_caller]
pub fn members(c: &mut impl ConnectionLike) -> Vec<HashMap<String, Value>> {
    let reply = call!(c, "SHOAL.STATUS");
    let top = fields(&reply);
    array(&top["members"]).iter().map(fields).collect()
}

/// The keys a node holds itself, as its INFO keyspace counts them.
#[track_caller]
pub fn local_keys(c: &mut impl ConnectionLike) -> u64 {
    let all = match call!(c, "INFO", "keyspace") {
        Value::BulkString(b) => String::from_utf8(b).expect("utf-8 INFO"),
        Value::VerbatimString { text, .. } => text,
        other => panic!("INFO keyspace: expected text, got {other:?}"),
    };
    all.lines()
        .find_map(|l| l.strip_prefix("db0:keys="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a count"))
}

/// The ring a node holds (SHOAL.RING's owners).
pub fn ring_of(c: &mut impl ConnectionLike) -> shoal::ring::Ring {
    let reply: Value = redis::cmd("SHOAL.RING").query(c).expect("SHOAL.RING");
    let owners = array(&fields(&reply)["owners"])
        .iter()
        .map(|id| shoal::version::NodeId(u64::from_str_radix(&text(id), 16).expect("a hex id")))
        .collect();
    shoal::ring::Ring::from_owners(owners)
}
