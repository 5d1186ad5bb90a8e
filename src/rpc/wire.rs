//! The peer wire format: the handshake, frames, and every message.
//!
//! A connection opens with a handshake each way: `SHOAL`, the protocol
//! version byte, and the sender's [`Member`] description. A peer speaking
//! another version is refused. Then frames, each
//! `u32 length | u64 request id | u8 tag | payload` (little-endian), the
//! length covering what follows it and bounded by the connection's limit.
//! The side that connected sends [`Request`]s; the other answers each with
//! a [`Response`] carrying the same id, in any order.
//!
//! Payloads use LEB128 varints, length-prefixed byte strings, and the
//! version module's own encodings of objects and contexts. Decoding checks
//! every length against what is left, so a corrupt frame is an error,
//! never a panic or an allocation sized by the peer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::mutation::{Condition, ExpireCondition, Expiry, Mutation, Outcome};
use crate::version::codec::{DecodeError, Reader, put_varint};
use crate::version::{Context, NodeId, Object};

pub const MAGIC: &[u8; 5] = b"SHOAL";
pub const VERSION: u8 = 1;
/// Bytes before a frame's payload: length, id, tag.
pub const HEADER: usize = 4 + 8 + 1;

/// A node as its peers know it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    pub id: NodeId,
    /// Where Redis clients reach it.
    pub client_addr: String,
    /// Where peers reach it.
    pub peer_addr: String,
    /// When this run of the node started (ms since the epoch): a node that
    /// restarts on other ports is known by its latest addresses.
    pub epoch: u64,
}

/// Per-partition key counts, for DBSIZE across the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionCount {
    pub partition: u32,
    pub keys: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Ping,
    /// The sender's member list; answered with the receiver's.
    Members(Vec<Member>),
    /// The replica's object for a key.
    Read {
        key: Bytes,
    },
    /// Merge this object into the replica's.
    Merge {
        key: Bytes,
        object: Object,
    },
    /// Coordinate this plain write (the sender is not a replica).
    Write {
        key: Bytes,
        mutation: Mutation,
    },
    /// Coordinate this context write.
    WriteVersions {
        key: Bytes,
        context: Context,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        w: Option<u32>,
    },
    /// Live keys with positions in `from..=to`, about `count` examined.
    Scan {
        from: u64,
        to: u64,
        count: u32,
        pattern: Option<Bytes>,
    },
    /// Key counts of every partition the receiver holds.
    Tallies,
    /// Remove every key the receiver holds.
    FlushAll,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    Pong,
    Members(Vec<Member>),
    Object(Option<Object>),
    Done,
    Outcome(Outcome),
    Written {
        context: Context,
        superseded: u64,
    },
    Keys {
        keys: Vec<Bytes>,
        examined: u32,
        next: Option<u64>,
    },
    Tallies(Vec<PartitionCount>),
    /// The request failed; a RESP error line to pass on.
    Error(String),
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.put_slice(b);
}

fn put_opt_bytes(out: &mut BytesMut, b: Option<&Bytes>) {
    match b {
        Some(b) => {
            out.put_u8(1);
            put_bytes(out, b);
        }
        None => out.put_u8(0),
    }
}

fn put_opt_u64(out: &mut BytesMut, v: Option<u64>) {
    match v {
        Some(v) => {
            out.put_u8(1);
            put_varint(out, v);
        }
        None => out.put_u8(0),
    }
}

fn put_member(out: &mut BytesMut, m: &Member) {
    out.put_u64_le(m.id.0);
    put_bytes(out, m.client_addr.as_bytes());
    put_bytes(out, m.peer_addr.as_bytes());
    put_varint(out, m.epoch);
}

fn put_members(out: &mut BytesMut, members: &[Member]) {
    put_varint(out, members.len() as u64);
    for m in members {
        put_member(out, m);
    }
}

fn put_expiry(out: &mut BytesMut, e: Expiry) {
    match e {
        Expiry::Keep => out.put_u8(0),
        Expiry::Clear => out.put_u8(1),
        Expiry::At(at) => {
            out.put_u8(2);
            put_varint(out, at);
        }
        Expiry::In(ms) => {
            out.put_u8(3);
            put_varint(out, ms);
        }
    }
}

fn put_mutation(out: &mut BytesMut, m: &Mutation) {
    match m {
        Mutation::Set { value, expiry, condition, get } => {
            out.put_u8(1);
            put_bytes(out, value);
            put_expiry(out, *expiry);
            out.put_u8(match condition {
                Condition::Always => 0,
                Condition::IfAbsent => 1,
                Condition::IfPresent => 2,
            });
            out.put_u8(u8::from(*get));
        }
        Mutation::Append(v) => {
            out.put_u8(2);
            put_bytes(out, v);
        }
        Mutation::IncrBy(n) => {
            out.put_u8(3);
            out.put_i64_le(*n);
        }
        Mutation::IncrByFloat(f) => {
            out.put_u8(4);
            out.put_u64_le(f.to_bits());
        }
        Mutation::Delete => out.put_u8(5),
        Mutation::GetDel => out.put_u8(6),
        Mutation::GetEx(e) => {
            out.put_u8(7);
            put_expiry(out, *e);
        }
        Mutation::Expire { expiry, condition: c } => {
            out.put_u8(8);
            put_expiry(out, *expiry);
            out.put_u8(u8::from(c.nx) | u8::from(c.xx) << 1 | u8::from(c.gt) << 2 | u8::from(c.lt) << 3);
        }
        Mutation::Persist => out.put_u8(9),
    }
}

fn put_outcome(out: &mut BytesMut, o: &Outcome) {
    match o {
        Outcome::Ok => out.put_u8(1),
        Outcome::Nil => out.put_u8(2),
        Outcome::Value(v) => {
            out.put_u8(3);
            put_opt_bytes(out, v.as_ref());
        }
        Outcome::Int(n) => {
            out.put_u8(4);
            out.put_i64_le(*n);
        }
        Outcome::Float(f) => {
            out.put_u8(5);
            put_bytes(out, f);
        }
    }
}

/// A reader over one frame's payload, slicing byte strings out of it.
struct Payload<'a> {
    bytes: &'a Bytes,
    r: Reader<'a>,
}

impl<'a> Payload<'a> {
    fn new(bytes: &'a Bytes) -> Self {
        Self { bytes, r: Reader::new(bytes) }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.r.u8()
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        self.r.varint()
    }

    fn u64_le(&mut self) -> Result<u64, DecodeError> {
        self.r.u64_fixed()
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("bad flag")),
        }
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.r.len(1)?;
        Ok(self.bytes.slice(self.r.take(len)?))
    }

    fn opt_bytes(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.bool()? { self.bytes().map(Some) } else { Ok(None) }
    }

    fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        if self.bool()? { self.varint().map(Some) } else { Ok(None) }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::Malformed("not utf-8"))
    }

    fn member(&mut self) -> Result<Member, DecodeError> {
        Ok(Member {
            id: NodeId(self.u64_le()?),
            client_addr: self.string()?,
            peer_addr: self.string()?,
            epoch: self.varint()?,
        })
    }

    fn members(&mut self) -> Result<Vec<Member>, DecodeError> {
        let n = self.r.len(11)?;
        (0..n).map(|_| self.member()).collect()
    }

    fn object(&mut self) -> Result<Object, DecodeError> {
        Object::decode(&self.bytes()?)
    }

    fn context(&mut self) -> Result<Context, DecodeError> {
        Context::decode(&self.bytes()?)
    }

    fn expiry(&mut self) -> Result<Expiry, DecodeError> {
        Ok(match self.u8()? {
            0 => Expiry::Keep,
            1 => Expiry::Clear,
            2 => Expiry::At(self.varint()?),
            3 => Expiry::In(self.varint()?),
            _ => return Err(DecodeError::Malformed("bad expiry")),
        })
    }

    fn mutation(&mut self) -> Result<Mutation, DecodeError> {
        Ok(match self.u8()? {
            1 => {
                let value = self.bytes()?;
                let expiry = self.expiry()?;
                let condition = match self.u8()? {
                    0 => Condition::Always,
                    1 => Condition::IfAbsent,
                    2 => Condition::IfPresent,
                    _ => return Err(DecodeError::Malformed("bad condition")),
                };
                Mutation::Set { value, expiry, condition, get: self.bool()? }
            }
            2 => Mutation::Append(self.bytes()?),
            3 => Mutation::IncrBy(self.u64_le()? as i64),
            4 => Mutation::IncrByFloat(f64::from_bits(self.u64_le()?)),
            5 => Mutation::Delete,
            6 => Mutation::GetDel,
            7 => Mutation::GetEx(self.expiry()?),
            8 => {
                let expiry = self.expiry()?;
                let f = self.u8()?;
                if f > 0xf {
                    return Err(DecodeError::Malformed("bad expire flags"));
                }
                let condition = ExpireCondition { nx: f & 1 != 0, xx: f & 2 != 0, gt: f & 4 != 0, lt: f & 8 != 0 };
                Mutation::Expire { expiry, condition }
            }
            9 => Mutation::Persist,
            _ => return Err(DecodeError::Malformed("unknown mutation")),
        })
    }

    fn outcome(&mut self) -> Result<Outcome, DecodeError> {
        Ok(match self.u8()? {
            1 => Outcome::Ok,
            2 => Outcome::Nil,
            3 => Outcome::Value(self.opt_bytes()?),
            4 => Outcome::Int(self.u64_le()? as i64),
            5 => Outcome::Float(self.bytes()?),
            _ => return Err(DecodeError::Malformed("unknown outcome")),
        })
    }

    fn finish(&self) -> Result<(), DecodeError> {
        self.r.finish()
    }
}

/// Starts a frame: space for the length, then the id and tag.
fn start(out: &mut BytesMut, id: u64, tag: u8) -> usize {
    let at = out.len();
    out.put_u32_le(0);
    out.put_u64_le(id);
    out.put_u8(tag);
    at
}

/// Fills in the length of the frame started at `at`.
fn finish(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

impl Request {
    /// Appends the request as a frame with id `id`.
    pub fn encode(&self, id: u64, out: &mut BytesMut) {
        let tag = match self {
            Self::Ping => 1,
            Self::Members(_) => 2,
            Self::Read { .. } => 3,
            Self::Merge { .. } => 4,
            Self::Write { .. } => 5,
            Self::WriteVersions { .. } => 6,
            Self::Scan { .. } => 7,
            Self::Tallies => 8,
            Self::FlushAll => 9,
        };
        let at = start(out, id, tag);
        match self {
            Self::Ping | Self::Tallies | Self::FlushAll => {}
            Self::Members(m) => put_members(out, m),
            Self::Read { key } => put_bytes(out, key),
            Self::Merge { key, object } => {
                put_bytes(out, key);
                put_bytes(out, &object.encode());
            }
            Self::Write { key, mutation } => {
                put_bytes(out, key);
                put_mutation(out, mutation);
            }
            Self::WriteVersions { key, context, value, ttl_ms, w } => {
                put_bytes(out, key);
                put_bytes(out, context.encode().as_bytes());
                put_opt_bytes(out, value.as_ref());
                put_opt_u64(out, *ttl_ms);
                put_opt_u64(out, w.map(u64::from));
            }
            Self::Scan { from, to, count, pattern } => {
                out.put_u64_le(*from);
                out.put_u64_le(*to);
                put_varint(out, u64::from(*count));
                put_opt_bytes(out, pattern.as_ref());
            }
        }
        finish(out, at);
    }

    /// Decodes a request of tag `tag` from its payload.
    ///
    /// # Errors
    /// A payload that is not such a request.
    pub fn decode(tag: u8, payload: &Bytes) -> Result<Self, DecodeError> {
        let mut p = Payload::new(payload);
        let request = match tag {
            1 => Self::Ping,
            2 => Self::Members(p.members()?),
            3 => Self::Read { key: p.bytes()? },
            4 => Self::Merge { key: p.bytes()?, object: p.object()? },
            5 => Self::Write { key: p.bytes()?, mutation: p.mutation()? },
            6 => Self::WriteVersions {
                key: p.bytes()?,
                context: p.context()?,
                value: p.opt_bytes()?,
                ttl_ms: p.opt_u64()?,
                w: p.opt_u64()?.map(|w| u32::try_from(w).unwrap_or(u32::MAX)),
            },
            7 => Self::Scan {
                from: p.u64_le()?,
                to: p.u64_le()?,
                count: u32::try_from(p.varint()?).map_err(|_| DecodeError::Malformed("count"))?,
                pattern: p.opt_bytes()?,
            },
            8 => Self::Tallies,
            9 => Self::FlushAll,
            _ => return Err(DecodeError::Malformed("unknown request")),
        };
        p.finish()?;
        Ok(request)
    }
}

impl Response {
    /// Appends the response as a frame answering request `id`.
    pub fn encode(&self, id: u64, out: &mut BytesMut) {
        let tag = match self {
            Self::Pong => 1,
            Self::Members(_) => 2,
            Self::Object(_) => 3,
            Self::Done => 4,
            Self::Outcome(_) => 5,
            Self::Written { .. } => 6,
            Self::Keys { .. } => 7,
            Self::Tallies(_) => 8,
            Self::Error(_) => 9,
        };
        let at = start(out, id, tag);
        match self {
            Self::Pong | Self::Done => {}
            Self::Members(m) => put_members(out, m),
            Self::Object(o) => match o {
                Some(o) => {
                    out.put_u8(1);
                    put_bytes(out, &o.encode());
                }
                None => out.put_u8(0),
            },
            Self::Outcome(o) => put_outcome(out, o),
            Self::Written { context, superseded } => {
                put_bytes(out, context.encode().as_bytes());
                put_varint(out, *superseded);
            }
            Self::Keys { keys, examined, next } => {
                put_varint(out, keys.len() as u64);
                for k in keys {
                    put_bytes(out, k);
                }
                put_varint(out, u64::from(*examined));
                put_opt_u64(out, *next);
            }
            Self::Tallies(counts) => {
                put_varint(out, counts.len() as u64);
                for c in counts {
                    put_varint(out, u64::from(c.partition));
                    put_varint(out, c.keys);
                }
            }
            Self::Error(e) => put_bytes(out, e.as_bytes()),
        }
        finish(out, at);
    }

    /// Decodes a response of tag `tag` from its payload.
    ///
    /// # Errors
    /// A payload that is not such a response.
    pub fn decode(tag: u8, payload: &Bytes) -> Result<Self, DecodeError> {
        let mut p = Payload::new(payload);
        let response = match tag {
            1 => Self::Pong,
            2 => Self::Members(p.members()?),
            3 => Self::Object(if p.bool()? { Some(p.object()?) } else { None }),
            4 => Self::Done,
            5 => Self::Outcome(p.outcome()?),
            6 => Self::Written { context: p.context()?, superseded: p.varint()? },
            7 => {
                let n = p.r.len(1)?;
                let keys = (0..n).map(|_| p.bytes()).collect::<Result<_, _>>()?;
                let examined = u32::try_from(p.varint()?).map_err(|_| DecodeError::Malformed("examined"))?;
                Self::Keys { keys, examined, next: p.opt_u64()? }
            }
            8 => {
                let n = p.r.len(2)?;
                let mut counts = Vec::with_capacity(n);
                for _ in 0..n {
                    let partition = u32::try_from(p.varint()?).map_err(|_| DecodeError::Malformed("partition"))?;
                    counts.push(PartitionCount { partition, keys: p.varint()? });
                }
                Self::Tallies(counts)
            }
            9 => Self::Error(p.string()?),
            _ => return Err(DecodeError::Malformed("unknown response")),
        };
        p.finish()?;
        Ok(response)
    }
}

/// The handshake a side sends first.
#[must_use]
pub fn handshake(me: &Member) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    put_member(&mut out, me);
    out
}

/// Parses a handshake from the front of `buf`: `Ok(None)` if incomplete.
///
/// # Errors
/// Not shoal, another protocol version, or a malformed description.
pub fn parse_handshake(buf: &[u8]) -> Result<Option<(Member, usize)>, String> {
    let head = MAGIC.len() + 1;
    if buf.len() < head {
        return if MAGIC.starts_with(buf) { Ok(None) } else { Err("not a shoal peer".into()) };
    }
    if &buf[..MAGIC.len()] != MAGIC {
        return Err("not a shoal peer".into());
    }
    if buf[MAGIC.len()] != VERSION {
        return Err(format!("peer speaks protocol version {}, this node {VERSION}", buf[MAGIC.len()]));
    }
    let bytes = Bytes::copy_from_slice(&buf[head..buf.len().min(head + 64 * 1024)]);
    let mut p = Payload::new(&bytes);
    match p.member() {
        Ok(m) => Ok(Some((m, head + p.r.position()))),
        Err(DecodeError::Truncated) if buf.len() < head + 64 * 1024 => Ok(None),
        Err(e) => Err(format!("bad handshake: {e}")),
    }
}

/// Splits the next whole frame off `buf`: `(id, tag, payload)`.
///
/// # Errors
/// A frame longer than `max_frame`, or one too short to hold its header.
pub fn split_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<(u64, u8, Bytes)>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len < HEADER - 4 || len > max_frame {
        return Err(format!("frame of {len} bytes"));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let mut frame = buf.split_to(4 + len).freeze();
    let id = u64::from_le_bytes(frame[4..12].try_into().map_err(|_| "short frame")?);
    let tag = frame[12];
    let payload = frame.split_off(HEADER);
    Ok(Some((id, tag, payload)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::version::{Actor, Dot, Sibling, VersionVector};

    fn object() -> Object {
        let mut o = Object::new();
        o.update(
            &Context::default(),
            Sibling { dot: Dot::new(Actor(7), 3), timestamp: 9, expires_at: Some(99), value: Some(Bytes::from("v")) },
        );
        o
    }

    fn member(i: u64) -> Member {
        Member {
            id: NodeId(i),
            client_addr: format!("127.0.0.1:{i}"),
            peer_addr: format!("127.0.0.1:1{i}"),
            epoch: i * 1000,
        }
    }

    fn requests() -> Vec<Request> {
        let ctx = Context::from_vector(VersionVector::from_entries([(Actor(1), 4)]));
        vec![
            Request::Ping,
            Request::Members(vec![member(1), member(2)]),
            Request::Read { key: Bytes::from("k") },
            Request::Merge { key: Bytes::from("k"), object: object() },
            Request::Write {
                key: Bytes::from("k"),
                mutation: Mutation::Set {
                    value: Bytes::from("v"),
                    expiry: Expiry::In(5),
                    condition: Condition::IfPresent,
                    get: true,
                },
            },
            Request::Write { key: Bytes::from("k"), mutation: Mutation::IncrBy(-3) },
            Request::Write { key: Bytes::from("k"), mutation: Mutation::IncrByFloat(1.5) },
            Request::Write {
                key: Bytes::from("k"),
                mutation: Mutation::Expire {
                    expiry: Expiry::At(77),
                    condition: ExpireCondition { xx: true, lt: true, ..Default::default() },
                },
            },
            Request::Write { key: Bytes::from("k"), mutation: Mutation::GetEx(Expiry::Clear) },
            Request::WriteVersions { key: Bytes::from("k"), context: ctx, value: None, ttl_ms: Some(10), w: Some(2) },
            Request::Scan { from: 1, to: u64::MAX, count: 10, pattern: Some(Bytes::from("a*")) },
            Request::Tallies,
            Request::FlushAll,
        ]
    }

    fn responses() -> Vec<Response> {
        vec![
            Response::Pong,
            Response::Members(vec![member(3)]),
            Response::Object(Some(object())),
            Response::Object(None),
            Response::Done,
            Response::Outcome(Outcome::Value(Some(Bytes::from("x")))),
            Response::Outcome(Outcome::Int(-9)),
            Response::Written { context: Context::default(), superseded: 2 },
            Response::Keys { keys: vec![Bytes::from("a"), Bytes::new()], examined: 5, next: Some(42) },
            Response::Tallies(vec![PartitionCount { partition: 3, keys: 10 }]),
            Response::Error("NOQUORUM 2 replicas needed, 1 answered".into()),
        ]
    }

    #[test]
    fn every_message_round_trips_through_frames() {
        let mut buf = BytesMut::new();
        for (i, r) in requests().iter().enumerate() {
            r.encode(i as u64, &mut buf);
        }
        for (i, r) in requests().iter().enumerate() {
            let (id, tag, payload) = split_frame(&mut buf, 1 << 20).expect("frame").expect("whole");
            assert_eq!(id, i as u64);
            assert_eq!(&Request::decode(tag, &payload).expect("decodes"), r);
        }
        for r in responses() {
            r.encode(5, &mut buf);
            let (id, tag, payload) = split_frame(&mut buf, 1 << 20).expect("frame").expect("whole");
            assert_eq!(id, 5);
            assert_eq!(Response::decode(tag, &payload).expect("decodes"), r);
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn frames_are_bounded_and_partial_ones_wait() {
        let mut buf = BytesMut::new();
        Request::Read { key: Bytes::from(vec![1u8; 100]) }.encode(1, &mut buf);
        let mut part = BytesMut::from(&buf[..50]);
        assert_eq!(split_frame(&mut part, 1 << 20), Ok(None));
        assert!(split_frame(&mut buf.clone(), 50).is_err(), "over the bound");
        let mut tiny = BytesMut::from(&[2u8, 0, 0, 0, 0, 0][..]);
        assert!(split_frame(&mut tiny, 1 << 20).is_err(), "shorter than a header");
    }

    #[test]
    fn handshakes_round_trip_and_refuse_strangers() {
        let hs = handshake(&member(4));
        for cut in 0..hs.len() {
            assert_eq!(parse_handshake(&hs[..cut]), Ok(None));
        }
        let mut with_more = hs.to_vec();
        with_more.extend_from_slice(b"next");
        assert_eq!(parse_handshake(&with_more), Ok(Some((member(4), hs.len()))));
        assert!(parse_handshake(b"GET / HTTP/1.1\r\n").is_err());
        let mut other = hs.to_vec();
        other[5] = 9;
        assert!(parse_handshake(&other).expect_err("version").contains("version 9"));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(tag in any::<u8>(), payload in prop::collection::vec(any::<u8>(), 0..200)) {
            let payload = Bytes::from(payload);
            let _ = Request::decode(tag, &payload);
            let _ = Response::decode(tag, &payload);
            let _ = parse_handshake(&payload);
            let _ = split_frame(&mut BytesMut::from(&payload[..]), 1 << 16);
        }

        #[test]
        fn truncated_payloads_are_errors(i in 0usize..13, cut in any::<prop::sample::Index>()) {
            let mut buf = BytesMut::new();
            let reqs = requests();
            let r = &reqs[i % reqs.len()];
            r.encode(0, &mut buf);
            let (_, tag, payload) = split_frame(&mut buf, 1 << 20).expect("frame").expect("whole");
            if !payload.is_empty() {
                let cut = cut.index(payload.len());
                prop_assert!(Request::decode(tag, &payload.slice(..cut)).is_err());
            }
        }
    }
}
