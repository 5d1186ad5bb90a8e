//! The peer wire format: the handshake, frames, and the envelope of every
//! message. The messages themselves are grouped by subsystem, each in a
//! file of its own (`kv.rs`, `gossip.rs`), with room for more (hints,
//! anti-entropy, transfers).
//!
//! A connection opens with a handshake each way ([`Hello`]): `SHOAL`, the
//! range of protocol versions the sender speaks, its cluster id (0 while it
//! has none: a node joining for the first time), the cluster's partition
//! count and the sender's [`Member`] description. The side that accepted
//! may answer with a refusal instead (`SHOAL`, two zero bytes, the reason)
//! and close: another cluster, another partition count, no common version.
//!
//! Then frames, each `u32 length | u64 request id | u8 subsystem | u8 kind
//! | payload` (little-endian), the length covering what follows it and
//! bounded by the connection's limit. The side that connected sends
//! [`Request`]s; the other answers each with a [`Response`] carrying the
//! same id, in any order. A request of a subsystem or kind the receiver
//! does not know gets an error response, and the connection stays up.
//!
//! Payloads use LEB128 varints, length-prefixed byte strings, and the
//! version module's own encodings of objects and contexts. Decoding checks
//! every length against what is left, so a corrupt frame is an error,
//! never a panic or an allocation sized by the peer. An address is at most
//! [`MAX_ADDR`] bytes, refused from its declared length; a handshake's
//! addresses must be `host:port` ([`valid_addr`]), which keeps what a
//! stranger says out of the log unless it is one.

use bytes::{BufMut, Bytes, BytesMut};

use crate::version::NodeId;
use crate::version::codec::{DecodeError, Reader, put_varint};

use super::gossip::{GossipRequest, GossipResponse};
use super::kv::{KvRequest, KvResponse};

pub const MAGIC: &[u8; 5] = b"SHOAL";
/// The protocol versions this build speaks.
pub const VERSIONS: (u8, u8) = (4, 4);
/// Bytes before a frame's payload: length, id, subsystem, kind.
pub const HEADER: usize = 4 + 8 + 1 + 1;
/// The longest address a peer may announce.
pub const MAX_ADDR: usize = 256;
/// The longest handshake.
const MAX_HANDSHAKE: usize = 4096;

/// Subsystem codes in frames.
const KV: u8 = 1;
const GOSSIP: u8 = 2;
/// Responses that are errors.
const ERROR: u8 = 0;

/// A node as its peers reach it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    pub id: NodeId,
    /// Where Redis clients reach it.
    pub client_addr: String,
    /// Where peers reach it.
    pub peer_addr: String,
}

/// What each side of a connection says first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The protocol versions the sender speaks, lowest and highest.
    pub versions: (u8, u8),
    /// The sender's cluster; 0 while it has none.
    pub cluster: u64,
    /// The cluster's partition count (0 only while it has no cluster).
    pub partitions: u32,
    pub member: Member,
}

impl Hello {
    /// Why a connection between `self` (this node) and `peer` cannot go on,
    /// if it cannot.
    #[must_use]
    pub fn refuses(&self, peer: &Self) -> Option<String> {
        let (lo, hi) = (self.versions.0.max(peer.versions.0), self.versions.1.min(peer.versions.1));
        if lo > hi {
            return Some(format!(
                "no common protocol version: {} at {} speaks {}..={}, {} at {} {}..={}",
                self.member.id,
                self.member.peer_addr,
                self.versions.0,
                self.versions.1,
                peer.member.id,
                peer.member.peer_addr,
                peer.versions.0,
                peer.versions.1
            ));
        }
        if self.cluster != 0 && peer.cluster != 0 && self.cluster != peer.cluster {
            return Some(format!(
                "another cluster: {} at {} is in cluster {:016x}, {} at {} in cluster {:016x}",
                self.member.id,
                self.member.peer_addr,
                self.cluster,
                peer.member.id,
                peer.member.peer_addr,
                peer.cluster
            ));
        }
        // A peer that claims a cluster must say its partition count: a
        // cluster id alone is no proof of membership (every node tells it
        // to whoever connects).
        let peer_q_known = peer.partitions != 0 || peer.cluster != 0;
        if self.partitions != 0 && peer_q_known && self.partitions != peer.partitions {
            return Some(format!(
                "another partition count: {} at {} has {}, {} at {} {}",
                self.member.id,
                self.member.peer_addr,
                self.partitions,
                peer.member.id,
                peer.member.peer_addr,
                peer.partitions
            ));
        }
        None
    }
}

/// What a handshake said: who the other side is, or why it refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Greeting {
    Hello(Hello),
    Refused(String),
}

/// A request, by subsystem.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Kv(KvRequest),
    Gossip(GossipRequest),
}

/// A response, by subsystem, or the error a request met.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    Kv(KvResponse),
    Gossip(GossipResponse),
    /// The request failed: a RESP error line (`CODE message`) to pass on.
    Error(String),
}

pub(super) fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.put_slice(b);
}

pub(super) fn put_opt_bytes(out: &mut BytesMut, b: Option<&Bytes>) {
    match b {
        Some(b) => {
            out.put_u8(1);
            put_bytes(out, b);
        }
        None => out.put_u8(0),
    }
}

pub(super) fn put_opt_u64(out: &mut BytesMut, v: Option<u64>) {
    match v {
        Some(v) => {
            out.put_u8(1);
            put_varint(out, v);
        }
        None => out.put_u8(0),
    }
}

pub(super) fn put_member(out: &mut BytesMut, m: &Member) {
    out.put_u64_le(m.id.0);
    put_bytes(out, m.client_addr.as_bytes());
    put_bytes(out, m.peer_addr.as_bytes());
}

/// A reader over one frame's payload, slicing byte strings out of it.
pub(super) struct Payload<'a> {
    bytes: &'a Bytes,
    pub(super) r: Reader<'a>,
}

impl<'a> Payload<'a> {
    pub(super) fn new(bytes: &'a Bytes) -> Self {
        Self { bytes, r: Reader::new(bytes) }
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.r.u8()
    }

    pub(super) fn varint(&mut self) -> Result<u64, DecodeError> {
        self.r.varint()
    }

    pub(super) fn u64_le(&mut self) -> Result<u64, DecodeError> {
        self.r.u64_fixed()
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("not a 32-bit number"))
    }

    pub(super) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("bad flag")),
        }
    }

    pub(super) fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.r.len(1)?;
        Ok(self.bytes.slice(self.r.take(len)?))
    }

    pub(super) fn opt_bytes(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.bool()? { self.bytes().map(Some) } else { Ok(None) }
    }

    pub(super) fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        if self.bool()? { self.varint().map(Some) } else { Ok(None) }
    }

    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::Malformed("not utf-8"))
    }

    /// An address: UTF-8 and at most [`MAX_ADDR`] bytes, a longer one
    /// refused from its declared length, before its bytes arrive. (What
    /// it says is for the reader to judge: a removed member's entry has
    /// none.)
    pub(super) fn addr(&mut self) -> Result<String, DecodeError> {
        let len = self.varint()?;
        if len > MAX_ADDR as u64 {
            return Err(DecodeError::Malformed("address too long"));
        }
        let range = self.r.take(len as usize)?;
        String::from_utf8(self.bytes[range].to_vec()).map_err(|_| DecodeError::Malformed("not utf-8"))
    }

    /// A handshake's member: both its addresses must be `host:port`.
    pub(super) fn member(&mut self) -> Result<Member, DecodeError> {
        let member = Member { id: NodeId(self.u64_le()?), client_addr: self.addr()?, peer_addr: self.addr()? };
        if !valid_addr(&member.client_addr) || !valid_addr(&member.peer_addr) {
            return Err(DecodeError::Malformed("an address that is not host:port"));
        }
        Ok(member)
    }

    /// A count of items of at least `min_size` bytes each, at most `max`.
    pub(super) fn count(&mut self, min_size: usize, max: usize) -> Result<usize, DecodeError> {
        let n = self.r.len(min_size)?;
        if n > max {
            return Err(DecodeError::Malformed("too many items"));
        }
        Ok(n)
    }

    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        self.r.finish()
    }
}

/// Whether `addr` is a `host:port` a node may announce: an IP socket
/// address, or a host name of letters, digits, `.`, `-` and `_` and a
/// decimal port, in at most [`MAX_ADDR`] bytes. Peers' addresses end up in
/// logs and in connection attempts, so nothing else gets that far.
#[must_use]
pub fn valid_addr(addr: &str) -> bool {
    if addr.len() > MAX_ADDR {
        return false;
    }
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = addr.rsplit_once(':') else { return false };
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    let port_ok = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    host_ok && port_ok
}

/// Appends a frame: its length, id, subsystem and kind, then the payload
/// `payload` writes.
fn frame(out: &mut BytesMut, id: u64, subsystem: u8, kind: u8, payload: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32_le(0);
    out.put_u64_le(id);
    out.put_u8(subsystem);
    out.put_u8(kind);
    payload(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Why a frame's payload did not decode into a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Undecodable {
    /// A subsystem or kind this build does not know: answer with an error
    /// and carry on.
    Unknown(u8, u8),
    /// A known message that does not parse: the peer is broken or hostile.
    Malformed(DecodeError),
}

impl From<DecodeError> for Undecodable {
    fn from(e: DecodeError) -> Self {
        Self::Malformed(e)
    }
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown(subsystem, kind) => write!(f, "unknown message {subsystem}.{kind}"),
            Self::Malformed(e) => write!(f, "{e}"),
        }
    }
}

impl Request {
    /// Appends the request as a frame with id `id`.
    pub fn encode(&self, id: u64, out: &mut BytesMut) {
        match self {
            Self::Kv(r) => frame(out, id, KV, r.kind(), |out| r.encode_payload(out)),
            Self::Gossip(r) => frame(out, id, GOSSIP, r.kind(), |out| r.encode_payload(out)),
        }
    }

    /// Decodes a request of `subsystem` and `kind` from its payload.
    ///
    /// # Errors
    /// An unknown subsystem or kind, or a payload that is not such a
    /// request.
    pub fn decode(subsystem: u8, kind: u8, payload: &Bytes) -> Result<Self, Undecodable> {
        let mut p = Payload::new(payload);
        let request = match subsystem {
            KV => Self::Kv(KvRequest::decode(kind, &mut p)?.ok_or(Undecodable::Unknown(subsystem, kind))?),
            GOSSIP => Self::Gossip(GossipRequest::decode(kind, &mut p)?.ok_or(Undecodable::Unknown(subsystem, kind))?),
            _ => return Err(Undecodable::Unknown(subsystem, kind)),
        };
        p.finish()?;
        Ok(request)
    }
}

impl Response {
    /// Appends the response as a frame answering request `id`.
    pub fn encode(&self, id: u64, out: &mut BytesMut) {
        match self {
            Self::Kv(r) => frame(out, id, KV, r.kind(), |out| r.encode_payload(out)),
            Self::Gossip(r) => frame(out, id, GOSSIP, r.kind(), |out| r.encode_payload(out)),
            Self::Error(e) => frame(out, id, ERROR, 0, |out| put_bytes(out, e.as_bytes())),
        }
    }

    /// Decodes a response of `subsystem` and `kind` from its payload.
    ///
    /// # Errors
    /// As [`Request::decode`].
    pub fn decode(subsystem: u8, kind: u8, payload: &Bytes) -> Result<Self, Undecodable> {
        let mut p = Payload::new(payload);
        let response = match subsystem {
            KV => Self::Kv(KvResponse::decode(kind, &mut p)?.ok_or(Undecodable::Unknown(subsystem, kind))?),
            GOSSIP => Self::Gossip(GossipResponse::decode(kind, &mut p)?.ok_or(Undecodable::Unknown(subsystem, kind))?),
            ERROR if kind == 0 => Self::Error(p.string()?),
            _ => return Err(Undecodable::Unknown(subsystem, kind)),
        };
        p.finish()?;
        Ok(response)
    }
}

/// The handshake a side sends first.
#[must_use]
pub fn handshake(hello: &Hello) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_slice(MAGIC);
    out.put_u8(hello.versions.0);
    out.put_u8(hello.versions.1);
    out.put_u64_le(hello.cluster);
    put_varint(&mut out, u64::from(hello.partitions));
    put_member(&mut out, &hello.member);
    out
}

/// The refusal an accepting side sends instead of its handshake.
#[must_use]
pub fn refusal(reason: &str) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_slice(MAGIC);
    out.put_u8(0);
    out.put_u8(0);
    let reason = &reason.as_bytes()[..reason.len().min(1024)];
    put_bytes(&mut out, reason);
    out
}

/// Parses a handshake (or a refusal) from the front of `buf`: `Ok(None)`
/// if incomplete, else what it said and the bytes it took.
///
/// # Errors
/// Not a shoal peer, or a malformed handshake.
pub fn parse_handshake(buf: &[u8]) -> Result<Option<(Greeting, usize)>, String> {
    let head = MAGIC.len() + 2;
    if buf.len() < head {
        return if MAGIC.starts_with(&buf[..buf.len().min(MAGIC.len())]) {
            Ok(None)
        } else {
            Err("not a shoal peer".into())
        };
    }
    if &buf[..MAGIC.len()] != MAGIC {
        return Err("not a shoal peer".into());
    }
    let versions = (buf[MAGIC.len()], buf[MAGIC.len() + 1]);
    let bytes = Bytes::copy_from_slice(&buf[head..buf.len().min(MAX_HANDSHAKE)]);
    let mut p = Payload::new(&bytes);
    let parsed = if versions == (0, 0) {
        p.string().map(|reason| Greeting::Refused(reason.chars().take(1024).collect()))
    } else if versions.0 > versions.1 {
        return Err(format!("bad version range {}..={}", versions.0, versions.1));
    } else {
        (|| -> Result<Greeting, DecodeError> {
            let cluster = p.u64_le()?;
            let partitions = p.u32()?;
            let member = p.member()?;
            Ok(Greeting::Hello(Hello { versions, cluster, partitions, member }))
        })()
    };
    match parsed {
        Ok(greeting) => Ok(Some((greeting, head + p.r.position()))),
        Err(DecodeError::Truncated) if buf.len() < MAX_HANDSHAKE => Ok(None),
        Err(e) => Err(format!("bad handshake: {e}")),
    }
}

/// Splits the next whole frame off `buf`: `(id, subsystem, kind, payload)`.
///
/// # Errors
/// A frame longer than `max_frame`, or one too short to hold its header.
pub fn split_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<(u64, u8, u8, Bytes)>, String> {
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
    let (subsystem, kind) = (frame[12], frame[13]);
    let payload = frame.split_off(HEADER);
    Ok(Some((id, subsystem, kind, payload)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rpc::gossip::tests::gossip_messages;
    use crate::rpc::kv::tests::kv_messages;

    fn hello(i: u64, cluster: u64) -> Hello {
        Hello {
            versions: VERSIONS,
            cluster,
            partitions: 64,
            member: Member {
                id: NodeId(i),
                client_addr: format!("127.0.0.1:{i}"),
                peer_addr: format!("127.0.0.1:1{i}"),
            },
        }
    }

    pub(crate) fn requests() -> Vec<Request> {
        let (kv, _) = kv_messages();
        let (gossip, _) = gossip_messages();
        kv.into_iter().map(Request::Kv).chain(gossip.into_iter().map(Request::Gossip)).collect()
    }

    fn responses() -> Vec<Response> {
        let (_, kv) = kv_messages();
        let (_, gossip) = gossip_messages();
        kv.into_iter()
            .map(Response::Kv)
            .chain(gossip.into_iter().map(Response::Gossip))
            .chain([Response::Error("NOQUORUM 2 replicas needed, 1 answered".into())])
            .collect()
    }

    #[test]
    fn every_message_round_trips_through_frames() {
        let mut buf = BytesMut::new();
        for (i, r) in requests().iter().enumerate() {
            r.encode(i as u64, &mut buf);
        }
        for (i, r) in requests().iter().enumerate() {
            let (id, subsystem, kind, payload) = split_frame(&mut buf, 1 << 20).expect("frame").expect("whole");
            assert_eq!(id, i as u64);
            assert_eq!(&Request::decode(subsystem, kind, &payload).expect("decodes"), r);
        }
        for r in responses() {
            r.encode(5, &mut buf);
            let (id, subsystem, kind, payload) = split_frame(&mut buf, 1 << 20).expect("frame").expect("whole");
            assert_eq!(id, 5);
            assert_eq!(Response::decode(subsystem, kind, &payload).expect("decodes"), r);
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn unknown_messages_are_told_apart_from_broken_ones() {
        let payload = Bytes::from_static(b"whatever");
        assert_eq!(Request::decode(9, 1, &payload), Err(Undecodable::Unknown(9, 1)));
        assert_eq!(Request::decode(KV, 200, &payload), Err(Undecodable::Unknown(KV, 200)));
        assert!(matches!(Request::decode(KV, 3, &Bytes::new()), Err(Undecodable::Malformed(_))));
    }

    #[test]
    fn frames_are_bounded_and_partial_ones_wait() {
        let mut buf = BytesMut::new();
        Request::Kv(KvRequest::Read { key: Bytes::from(vec![1u8; 100]) }).encode(1, &mut buf);
        let mut part = BytesMut::from(&buf[..50]);
        assert_eq!(split_frame(&mut part, 1 << 20), Ok(None));
        assert!(split_frame(&mut buf.clone(), 50).is_err(), "over the bound");
        let mut tiny = BytesMut::from(&[2u8, 0, 0, 0, 0, 0][..]);
        assert!(split_frame(&mut tiny, 1 << 20).is_err(), "shorter than a header");
    }

    #[test]
    fn handshakes_round_trip_and_refuse_strangers() {
        let hs = handshake(&hello(4, 7));
        for cut in 0..hs.len() {
            assert_eq!(parse_handshake(&hs[..cut]), Ok(None));
        }
        let mut with_more = hs.to_vec();
        with_more.extend_from_slice(b"next");
        assert_eq!(parse_handshake(&with_more), Ok(Some((Greeting::Hello(hello(4, 7)), hs.len()))));
        assert!(parse_handshake(b"GET / HTTP/1.1\r\n").is_err());
        let no = refusal("another cluster");
        assert_eq!(parse_handshake(&no), Ok(Some((Greeting::Refused("another cluster".into()), no.len()))));
        let mut long = handshake(&hello(4, 7)).to_vec();
        long.truncate(MAGIC.len() + 2 + 8 + 1 + 8);
        long.push(200);
        long.push(200);
        long.extend(std::iter::repeat_n(b'a', 5000));
        assert!(parse_handshake(&long).is_err(), "an oversized address");
    }

    #[test]
    fn mismatched_peers_are_refused_with_a_reason() {
        let me = hello(1, 7);
        assert_eq!(me.refuses(&hello(2, 7)), None);
        assert_eq!(me.refuses(&hello(2, 0)), None, "a node with no cluster yet may ask");
        let other = me.refuses(&hello(2, 9)).expect("another cluster");
        assert!(other.contains("0000000000000007") && other.contains("0000000000000009"), "{other}");
        let mut q = hello(2, 7);
        q.partitions = 128;
        assert!(me.refuses(&q).expect("another Q").contains("128"));
        let mut old = hello(2, 7);
        old.versions = (1, 1);
        assert!(me.refuses(&old).expect("no common version").contains("version"));
        let mut no_q = hello(2, 7);
        no_q.partitions = 0;
        assert!(me.refuses(&no_q).expect("a cluster with no Q").contains("partition count"));
        let mut newcomer = hello(2, 0);
        newcomer.partitions = 0;
        assert_eq!(me.refuses(&newcomer), None, "no cluster and no Q: a node that asks");
    }

    #[test]
    fn addresses_are_host_and_port() {
        for good in ["127.0.0.1:6379", "[::1]:16379", "[fe80::1%2]:80", "node-1.example.com:0", "x:65535"] {
            assert!(valid_addr(good), "{good}");
        }
        let long = format!("{}:1", "a".repeat(MAX_ADDR));
        for bad in ["", "127.0.0.1", ":80", "host:", "host:65536", "host:+80", "a b:1", "x:1\nINFO forged", &long] {
            assert!(!valid_addr(bad), "{bad:?}");
        }
    }

    #[test]
    fn handshakes_with_bad_addresses_are_refused_at_once() {
        let mut bad = hello(4, 7);
        bad.member.peer_addr = "x:1\nforged log line".into();
        assert!(parse_handshake(&handshake(&bad)).is_err_and(|e| e.contains("host:port")));
        bad.member.peer_addr = String::new();
        assert!(parse_handshake(&handshake(&bad)).is_err());
        // A declared length past MAX_ADDR fails before its bytes arrive.
        let mut declared = handshake(&hello(4, 7)).to_vec();
        declared.truncate(MAGIC.len() + 2 + 8 + 1 + 8);
        declared.extend_from_slice(&[0x80, 0x80, 0x40]); // 1 MB, and nothing of it
        assert!(parse_handshake(&declared).is_err_and(|e| e.contains("too long")), "{:?}", parse_handshake(&declared));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(subsystem in 0u8..4, kind in any::<u8>(), payload in prop::collection::vec(any::<u8>(), 0..200)) {
            let payload = Bytes::from(payload);
            let _ = Request::decode(subsystem, kind, &payload);
            let _ = Response::decode(subsystem, kind, &payload);
            let _ = parse_handshake(&payload);
            let _ = split_frame(&mut BytesMut::from(&payload[..]), 1 << 16);
        }

        #[test]
        fn truncated_payloads_are_errors(i in 0usize..64, cut in any::<prop::sample::Index>()) {
            let mut buf = BytesMut::new();
            let reqs = requests();
            let r = &reqs[i % reqs.len()];
            r.encode(0, &mut buf);
            let (_, subsystem, kind, payload) = split_frame(&mut buf, 1 << 20).expect("frame").expect("whole");
            if !payload.is_empty() {
                let cut = cut.index(payload.len());
                prop_assert!(Request::decode(subsystem, kind, &payload.slice(..cut)).is_err());
            }
        }
    }
}
