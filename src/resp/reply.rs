//! Replies and their encoding in RESP2 and RESP3.
//!
//! A [`Reply`] is protocol-neutral; [`Reply::encode`] writes it for the
//! connection's protocol: RESP3's maps, sets, doubles, booleans, nulls and
//! verbatim strings become arrays, bulk strings, integers and `$-1` for
//! RESP2 clients, as Redis does.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Error;

#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Simple(Cow<'static, str>),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    /// The null bulk string (RESP3 null).
    Nil,
    /// The null array (RESP3 null).
    NilArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Bool(bool),
    /// A verbatim string of the given three-letter format (`txt`).
    Verbatim(&'static str, String),
}

impl From<Error> for Reply {
    fn from(e: Error) -> Self {
        Self::Error(e.resp_message())
    }
}

fn put_decimal(out: &mut BytesMut, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&buf[i..]);
}

fn put_header(out: &mut BytesMut, kind: u8, n: usize) {
    out.put_u8(kind);
    put_decimal(out, n as i64);
    out.put_slice(b"\r\n");
}

fn put_line(out: &mut BytesMut, kind: u8, text: &str) {
    out.put_u8(kind);
    // A simple string or error cannot span lines.
    for b in text.bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_header(out, b'$', data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

impl Reply {
    pub const OK: Self = Self::Simple(Cow::Borrowed("OK"));

    #[must_use]
    pub fn simple(text: &'static str) -> Self {
        Self::Simple(Cow::Borrowed(text))
    }

    /// A bulk string reply.
    pub fn bulk(data: impl Into<Bytes>) -> Self {
        Self::Bulk(data.into())
    }

    /// A bulk string, or null.
    pub fn opt_bulk(data: Option<impl Into<Bytes>>) -> Self {
        data.map_or(Self::Nil, |d| Self::Bulk(d.into()))
    }

    /// An array of bulk strings.
    pub fn bulks<T: Into<Bytes>>(items: impl IntoIterator<Item = T>) -> Self {
        Self::Array(items.into_iter().map(|i| Self::Bulk(i.into())).collect())
    }

    /// Writes the reply for a RESP3 (`resp3`) or RESP2 connection.
    pub fn encode(&self, resp3: bool, out: &mut BytesMut) {
        match self {
            Self::Simple(s) => put_line(out, b'+', s),
            Self::Error(e) => put_line(out, b'-', e),
            Self::Int(n) => {
                out.put_u8(b':');
                put_decimal(out, *n);
                out.put_slice(b"\r\n");
            }
            Self::Bulk(b) => put_bulk(out, b),
            Self::Nil if resp3 => out.put_slice(b"_\r\n"),
            Self::Nil => out.put_slice(b"$-1\r\n"),
            Self::NilArray if resp3 => out.put_slice(b"_\r\n"),
            Self::NilArray => out.put_slice(b"*-1\r\n"),
            Self::Array(items) => {
                put_header(out, b'*', items.len());
                items.iter().for_each(|i| i.encode(resp3, out));
            }
            Self::Set(items) => {
                put_header(out, if resp3 { b'~' } else { b'*' }, items.len());
                items.iter().for_each(|i| i.encode(resp3, out));
            }
            Self::Map(pairs) => {
                if resp3 {
                    put_header(out, b'%', pairs.len());
                } else {
                    put_header(out, b'*', pairs.len() * 2);
                }
                for (k, v) in pairs {
                    k.encode(resp3, out);
                    v.encode(resp3, out);
                }
            }
            Self::Double(f) => {
                let text = if f.is_infinite() {
                    if *f > 0.0 { "inf".to_string() } else { "-inf".to_string() }
                } else {
                    crate::mutation::format_f64(*f)
                };
                if resp3 {
                    put_line(out, b',', &text);
                } else {
                    put_bulk(out, text.as_bytes());
                }
            }
            Self::Bool(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Self::Bool(b) => out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
            Self::Verbatim(format, text) if resp3 => {
                put_header(out, b'=', text.len() + 4);
                out.put_slice(format.as_bytes());
                out.put_u8(b':');
                out.put_slice(text.as_bytes());
                out.put_slice(b"\r\n");
            }
            Self::Verbatim(_, text) => put_bulk(out, text.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use redis_protocol::resp2::decode::decode as decode2;
    use redis_protocol::resp2::types::OwnedFrame as F2;
    use redis_protocol::resp3::decode::complete::decode as decode3;
    use redis_protocol::resp3::types::OwnedFrame as F3;

    use super::*;

    fn enc(r: &Reply, resp3: bool) -> Vec<u8> {
        let mut out = BytesMut::new();
        r.encode(resp3, &mut out);
        out.to_vec()
    }

    #[test]
    fn shapes_differ_by_protocol() {
        let map = Reply::Map(vec![(Reply::bulk("proto"), Reply::Int(3))]);
        assert_eq!(enc(&map, true), b"%1\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(enc(&map, false), b"*2\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(enc(&Reply::Nil, false), b"$-1\r\n");
        assert_eq!(enc(&Reply::Nil, true), b"_\r\n");
        assert_eq!(enc(&Reply::NilArray, false), b"*-1\r\n");
        assert_eq!(enc(&Reply::Double(1.5), true), b",1.5\r\n");
        assert_eq!(enc(&Reply::Double(1.5), false), b"$3\r\n1.5\r\n");
        assert_eq!(enc(&Reply::Verbatim("txt", "hi".into()), true), b"=6\r\ntxt:hi\r\n");
        assert_eq!(enc(&Reply::Error("ERR a\r\nb".into()), false), b"-ERR a  b\r\n");
        assert_eq!(enc(&Reply::Int(i64::MIN), false), b":-9223372036854775808\r\n");
    }

    fn arb_reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Reply::Int),
            prop::collection::vec(any::<u8>(), 0..30).prop_map(Reply::bulk),
            "[a-zA-Z ]{0,20}".prop_map(|s| Reply::Simple(s.into())),
            "[a-zA-Z ]{0,20}".prop_map(|s| Reply::Error(format!("ERR {s}"))),
            Just(Reply::Nil),
            any::<bool>().prop_map(Reply::Bool),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
                // Map keys are strings, as in every reply shoal sends.
                prop::collection::vec(("[a-z]{1,8}".prop_map(Reply::bulk), inner), 0..4).prop_map(Reply::Map),
            ]
        })
    }

    fn as_resp2(r: &Reply) -> F2 {
        match r {
            Reply::Int(n) => F2::Integer(*n),
            Reply::Bool(b) => F2::Integer(i64::from(*b)),
            Reply::Bulk(b) => F2::BulkString(b.to_vec()),
            Reply::Simple(s) => F2::SimpleString(s.as_bytes().to_vec()),
            Reply::Error(e) => F2::Error(e.clone()),
            Reply::Array(items) => F2::Array(items.iter().map(as_resp2).collect()),
            Reply::Map(pairs) => F2::Array(pairs.iter().flat_map(|(k, v)| [as_resp2(k), as_resp2(v)]).collect()),
            _ => F2::Null,
        }
    }

    proptest! {
        // redis-protocol, an independent implementation, decodes what we
        // encode to the frame we meant, in both protocols.
        #[test]
        fn redis_protocol_agrees(r in arb_reply()) {
            let bytes = enc(&r, false);
            let (frame, used) = decode2(&bytes).expect("decodes").expect("complete");
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(frame, as_resp2(&r));
            let bytes3 = enc(&r, true);
            let (frame3, used3) = decode3(&bytes3).expect("decodes").expect("complete");
            prop_assert_eq!(used3, bytes3.len());
            let same_kind = match (&r, &frame3) {
                (Reply::Map(pairs), F3::Map { data, .. }) => data.len() <= pairs.len(),
                (Reply::Array(items), F3::Array { data, .. }) => data.len() == items.len(),
                (Reply::Int(n), F3::Number { data, .. }) => n == data,
                (Reply::Bool(b), F3::Boolean { data, .. }) => b == data,
                (Reply::Bulk(b), F3::BlobString { data, .. }) => b.as_ref() == data.as_slice(),
                (Reply::Simple(t), F3::SimpleString { data, .. }) => t.as_bytes() == data.as_slice(),
                (Reply::Error(e), F3::SimpleError { data, .. }) => e == data,
                (Reply::Nil, F3::Null) => true,
                _ => false,
            };
            prop_assert!(same_kind, "{:?} decoded as {:?}", r, frame3);
        }
    }
}
