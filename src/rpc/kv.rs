//! Key-value messages: what a coordinator asks of a key's replicas (read,
//! merge), writes forwarded to a replica to coordinate, and the
//! cluster-wide walks (scan, counts, flush).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::mutation::{Condition, ExpireCondition, Expiry, Mutation, Outcome};
use crate::version::codec::{DecodeError, put_varint};
use crate::version::{Context, Encoded, NodeId, Object};

use super::wire::{Payload, put_bytes, put_opt_bytes, put_opt_u64};

/// Per-partition key counts, for DBSIZE across the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionCount {
    pub partition: u32,
    pub keys: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum KvRequest {
    /// The replica's object for a key.
    Read { key: Bytes },
    /// A digest of the replica's version summary for a key
    /// ([`Object::digest`]), not its value: what a read asks of the replicas
    /// it does not need values from.
    Digest { key: Bytes },
    /// Merge this object into the replica's.
    Merge { key: Bytes, object: Encoded },
    /// Keep this object on behalf of replica `target`, which is down: the
    /// receiver is a fallback standing in for it (sloppy quorum).
    Hint { key: Bytes, target: NodeId, object: Encoded },
    /// What a fallback holds for a key standing in for `target`: its own
    /// copy merged with what it keeps for `target`.
    HintRead { key: Bytes, target: NodeId },
    /// The nodes the receiver keeps a hint about a key for.
    Hinted { key: Bytes },
    /// The root and branches of the receiver's hash tree of a partition
    /// (anti-entropy); refused unless the receiver has seen as many
    /// FLUSHALLs as the sender.
    TreeBranches { partition: u32, flushes: u64 },
    /// Anti-entropy's merge of an object: refused unless the receiver has
    /// seen as many FLUSHALLs as the sender (so a flush is not undone).
    Repair { key: Bytes, object: Encoded, flushes: u64 },
    /// The leaves of some branches of that tree.
    TreeLeaves { partition: u32, branches: Vec<u32> },
    /// The keys the receiver holds in some leaves of a partition, with
    /// their digests.
    LeafKeys { partition: u32, leaves: Vec<u32> },
    /// Coordinate this plain write (the sender is not a replica).
    Write { key: Bytes, mutation: Mutation },
    /// Coordinate this context write.
    WriteVersions {
        key: Bytes,
        context: Context,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        w: Option<u32>,
        pw: Option<u32>,
    },
    /// Live keys with positions in `from..=to`, about `count` examined.
    Scan { from: u64, to: u64, count: u32, pattern: Option<Bytes> },
    /// Key counts of every partition the receiver holds.
    Tallies,
    /// Remove every key the receiver holds.
    FlushAll,
    /// A page of a partition's objects in key order, from ring position
    /// `from` on (ownership transfer): at most `max_keys` keys.
    TransferPage { partition: u32, from: u64, max_keys: u32 },
}

/// A replica's answer. A copy it sends (`Object`) is shared with its cache,
/// not cloned to be sent.
#[derive(Clone, Debug, PartialEq)]
pub enum KvResponse {
    Object(Option<Arc<Object>>),
    /// The digest of the replica's copy, `None` if it has none.
    Digest(Option<u64>),
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
    /// The nodes hints are kept for.
    Hinted(Vec<NodeId>),
    /// A hash tree's root and branches.
    Branches {
        root: u64,
        branches: Vec<u64>,
    },
    /// Leaves of a hash tree, a run per branch asked for.
    Leaves(Vec<u64>),
    /// Keys with their positions and digests.
    KeyDigests(Vec<(Bytes, u64, u64)>),
    /// A page of a transfer: keys with their positions and objects, and
    /// the position the next page starts at (`None`: the partition is
    /// done).
    Page {
        entries: Vec<(Bytes, u64, Encoded)>,
        next: Option<u64>,
    },
}

fn put_u32s(out: &mut BytesMut, list: &[u32]) {
    put_varint(out, list.len() as u64);
    for &v in list {
        put_varint(out, u64::from(v));
    }
}

fn put_u64s(out: &mut BytesMut, list: &[u64]) {
    put_varint(out, list.len() as u64);
    for &v in list {
        out.put_u64_le(v);
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

impl Payload<'_> {
    fn object(&mut self) -> Result<Object, DecodeError> {
        Object::decode(&self.bytes()?)
    }

    fn u32s(&mut self) -> Result<Vec<u32>, DecodeError> {
        let n = self.r.len(1)?;
        (0..n).map(|_| self.u32()).collect()
    }

    fn u64s(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.r.len(8)?;
        (0..n).map(|_| self.u64_le()).collect()
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
}

impl KvRequest {
    pub(super) fn kind(&self) -> u8 {
        match self {
            Self::Read { .. } => 1,
            Self::Merge { .. } => 2,
            Self::Write { .. } => 3,
            Self::WriteVersions { .. } => 4,
            Self::Scan { .. } => 5,
            Self::Tallies => 6,
            Self::FlushAll => 7,
            Self::Digest { .. } => 8,
            Self::Hint { .. } => 9,
            Self::HintRead { .. } => 10,
            Self::Hinted { .. } => 11,
            Self::TreeBranches { .. } => 12,
            Self::TreeLeaves { .. } => 13,
            Self::LeafKeys { .. } => 14,
            Self::Repair { .. } => 15,
            Self::TransferPage { .. } => 16,
        }
    }

    pub(super) fn encode_payload(&self, out: &mut BytesMut) {
        match self {
            Self::Tallies | Self::FlushAll => {}
            Self::Read { key } | Self::Digest { key } | Self::Hinted { key } => put_bytes(out, key),
            Self::Hint { key, target, object } => {
                put_bytes(out, key);
                out.put_u64_le(target.0);
                put_bytes(out, object.bytes());
            }
            Self::HintRead { key, target } => {
                put_bytes(out, key);
                out.put_u64_le(target.0);
            }
            Self::TreeBranches { partition, flushes } => {
                put_varint(out, u64::from(*partition));
                put_varint(out, *flushes);
            }
            Self::Repair { key, object, flushes } => {
                put_bytes(out, key);
                put_bytes(out, object.bytes());
                put_varint(out, *flushes);
            }
            Self::TransferPage { partition, from, max_keys } => {
                put_varint(out, u64::from(*partition));
                out.put_u64_le(*from);
                put_varint(out, u64::from(*max_keys));
            }
            Self::TreeLeaves { partition, branches: list } | Self::LeafKeys { partition, leaves: list } => {
                put_varint(out, u64::from(*partition));
                put_u32s(out, list);
            }
            Self::Merge { key, object } => {
                put_bytes(out, key);
                put_bytes(out, object.bytes());
            }
            Self::Write { key, mutation } => {
                put_bytes(out, key);
                put_mutation(out, mutation);
            }
            Self::WriteVersions { key, context, value, ttl_ms, w, pw } => {
                put_bytes(out, key);
                put_bytes(out, context.encode().as_bytes());
                put_opt_bytes(out, value.as_ref());
                put_opt_u64(out, *ttl_ms);
                put_opt_u64(out, w.map(u64::from));
                put_opt_u64(out, pw.map(u64::from));
            }
            Self::Scan { from, to, count, pattern } => {
                out.put_u64_le(*from);
                out.put_u64_le(*to);
                put_varint(out, u64::from(*count));
                put_opt_bytes(out, pattern.as_ref());
            }
        }
    }

    /// Decodes a request of `kind`; `None` for a kind this build does not
    /// know.
    pub(super) fn decode(kind: u8, p: &mut Payload<'_>) -> Result<Option<Self>, DecodeError> {
        Ok(Some(match kind {
            1 => Self::Read { key: p.bytes()? },
            2 => Self::Merge { key: p.bytes()?, object: Encoded::decode(p.bytes()?)? },
            3 => Self::Write { key: p.bytes()?, mutation: p.mutation()? },
            4 => Self::WriteVersions {
                key: p.bytes()?,
                context: p.context()?,
                value: p.opt_bytes()?,
                ttl_ms: p.opt_u64()?,
                w: p.opt_u64()?.map(|w| u32::try_from(w).unwrap_or(u32::MAX)),
                pw: p.opt_u64()?.map(|w| u32::try_from(w).unwrap_or(u32::MAX)),
            },
            5 => Self::Scan { from: p.u64_le()?, to: p.u64_le()?, count: p.u32()?, pattern: p.opt_bytes()? },
            6 => Self::Tallies,
            7 => Self::FlushAll,
            8 => Self::Digest { key: p.bytes()? },
            9 => Self::Hint { key: p.bytes()?, target: NodeId(p.u64_le()?), object: Encoded::decode(p.bytes()?)? },
            10 => Self::HintRead { key: p.bytes()?, target: NodeId(p.u64_le()?) },
            11 => Self::Hinted { key: p.bytes()? },
            12 => Self::TreeBranches { partition: p.u32()?, flushes: p.varint()? },
            13 => Self::TreeLeaves { partition: p.u32()?, branches: p.u32s()? },
            14 => Self::LeafKeys { partition: p.u32()?, leaves: p.u32s()? },
            15 => Self::Repair { key: p.bytes()?, object: Encoded::decode(p.bytes()?)?, flushes: p.varint()? },
            16 => Self::TransferPage { partition: p.u32()?, from: p.u64_le()?, max_keys: p.u32()? },
            _ => return Ok(None),
        }))
    }
}

impl KvResponse {
    pub(super) fn kind(&self) -> u8 {
        match self {
            Self::Object(_) => 1,
            Self::Done => 2,
            Self::Outcome(_) => 3,
            Self::Written { .. } => 4,
            Self::Keys { .. } => 5,
            Self::Tallies(_) => 6,
            Self::Digest(_) => 7,
            Self::Hinted(_) => 8,
            Self::Branches { .. } => 9,
            Self::Leaves(_) => 10,
            Self::KeyDigests(_) => 11,
            Self::Page { .. } => 12,
        }
    }

    pub(super) fn encode_payload(&self, out: &mut BytesMut) {
        match self {
            Self::Done => {}
            Self::Object(o) => match o {
                Some(o) => {
                    out.put_u8(1);
                    put_bytes(out, &o.encode());
                }
                None => out.put_u8(0),
            },
            Self::Digest(d) => put_opt_u64(out, *d),
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
            Self::Hinted(targets) => {
                put_varint(out, targets.len() as u64);
                for t in targets {
                    out.put_u64_le(t.0);
                }
            }
            Self::Branches { root, branches } => {
                out.put_u64_le(*root);
                put_u64s(out, branches);
            }
            Self::Leaves(leaves) => put_u64s(out, leaves),
            Self::KeyDigests(keys) => {
                put_varint(out, keys.len() as u64);
                for (key, position, digest) in keys {
                    put_bytes(out, key);
                    out.put_u64_le(*position);
                    out.put_u64_le(*digest);
                }
            }
            Self::Page { entries, next } => {
                put_varint(out, entries.len() as u64);
                for (key, position, object) in entries {
                    put_bytes(out, key);
                    out.put_u64_le(*position);
                    put_bytes(out, object.bytes());
                }
                put_opt_u64(out, *next);
            }
        }
    }

    /// Decodes a response of `kind`; `None` for a kind this build does not
    /// know.
    pub(super) fn decode(kind: u8, p: &mut Payload<'_>) -> Result<Option<Self>, DecodeError> {
        Ok(Some(match kind {
            1 => Self::Object(if p.bool()? { Some(Arc::new(p.object()?)) } else { None }),
            2 => Self::Done,
            3 => Self::Outcome(p.outcome()?),
            4 => Self::Written { context: p.context()?, superseded: p.varint()? },
            5 => {
                let n = p.r.len(1)?;
                let keys = (0..n).map(|_| p.bytes()).collect::<Result<_, _>>()?;
                Self::Keys { keys, examined: p.u32()?, next: p.opt_u64()? }
            }
            6 => {
                // Grown as items decode, not sized by the count: a count
                // the payload can hold still claims 8 bytes of memory for
                // each of its bytes.
                let n = p.r.len(2)?;
                let counts = (0..n).map(|_| Ok(PartitionCount { partition: p.u32()?, keys: p.varint()? }));
                Self::Tallies(counts.collect::<Result<_, DecodeError>>()?)
            }
            7 => Self::Digest(p.opt_u64()?),
            8 => {
                let n = p.r.len(8)?;
                Self::Hinted((0..n).map(|_| p.u64_le().map(NodeId)).collect::<Result<_, _>>()?)
            }
            9 => Self::Branches { root: p.u64_le()?, branches: p.u64s()? },
            10 => Self::Leaves(p.u64s()?),
            11 => {
                let n = p.r.len(17)?;
                let keys = (0..n).map(|_| Ok((p.bytes()?, p.u64_le()?, p.u64_le()?)));
                Self::KeyDigests(keys.collect::<Result<_, DecodeError>>()?)
            }
            12 => {
                let n = p.r.len(10)?;
                let entries = (0..n).map(|_| Ok((p.bytes()?, p.u64_le()?, Encoded::decode(p.bytes()?)?)));
                Self::Page { entries: entries.collect::<Result<_, DecodeError>>()?, next: p.opt_u64()? }
            }
            _ => return Ok(None),
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// One of every kind of message, for the wire tests.
    pub(crate) fn kv_messages() -> (Vec<KvRequest>, Vec<KvResponse>) {
        let ctx = Context::from_vector(VersionVector::from_entries([(Actor(1), 4)]));
        let requests = vec![
            KvRequest::Read { key: Bytes::from("k") },
            KvRequest::Digest { key: Bytes::from("k") },
            KvRequest::Merge { key: Bytes::from("k"), object: Encoded::new(object()) },
            KvRequest::Write {
                key: Bytes::from("k"),
                mutation: Mutation::Set {
                    value: Bytes::from("v"),
                    expiry: Expiry::In(5),
                    condition: Condition::IfPresent,
                    get: true,
                },
            },
            KvRequest::Write { key: Bytes::from("k"), mutation: Mutation::IncrBy(-3) },
            KvRequest::Write { key: Bytes::from("k"), mutation: Mutation::IncrByFloat(1.5) },
            KvRequest::Write {
                key: Bytes::from("k"),
                mutation: Mutation::Expire {
                    expiry: Expiry::At(77),
                    condition: ExpireCondition { xx: true, lt: true, ..Default::default() },
                },
            },
            KvRequest::Write { key: Bytes::from("k"), mutation: Mutation::GetEx(Expiry::Clear) },
            KvRequest::WriteVersions {
                key: Bytes::from("k"),
                context: ctx,
                value: None,
                ttl_ms: Some(10),
                w: Some(2),
                pw: Some(1),
            },
            KvRequest::Hint { key: Bytes::from("k"), target: NodeId(3), object: Encoded::new(object()) },
            KvRequest::HintRead { key: Bytes::from("k"), target: NodeId(u64::MAX) },
            KvRequest::Hinted { key: Bytes::from("k") },
            KvRequest::TreeBranches { partition: 7, flushes: 2 },
            KvRequest::Repair { key: Bytes::from("k"), object: Encoded::new(object()), flushes: u64::MAX },
            KvRequest::TreeLeaves { partition: 7, branches: vec![0, 31] },
            KvRequest::LeafKeys { partition: u32::MAX, leaves: Vec::new() },
            KvRequest::Scan { from: 1, to: u64::MAX, count: 10, pattern: Some(Bytes::from("a*")) },
            KvRequest::Tallies,
            KvRequest::FlushAll,
            KvRequest::TransferPage { partition: 7, from: u64::MAX, max_keys: 100 },
        ];
        let responses = vec![
            KvResponse::Object(Some(Arc::new(object()))),
            KvResponse::Object(None),
            KvResponse::Digest(Some(u64::MAX)),
            KvResponse::Digest(None),
            KvResponse::Done,
            KvResponse::Outcome(Outcome::Value(Some(Bytes::from("x")))),
            KvResponse::Outcome(Outcome::Int(-9)),
            KvResponse::Written { context: Context::default(), superseded: 2 },
            KvResponse::Keys { keys: vec![Bytes::from("a"), Bytes::new()], examined: 5, next: Some(42) },
            KvResponse::Tallies(vec![PartitionCount { partition: 3, keys: 10 }]),
            KvResponse::Hinted(vec![NodeId(1), NodeId(u64::MAX)]),
            KvResponse::Hinted(Vec::new()),
            KvResponse::Branches { root: 9, branches: vec![1, u64::MAX] },
            KvResponse::Leaves(vec![3; 32]),
            KvResponse::KeyDigests(vec![(Bytes::from("k"), 1, 2), (Bytes::new(), u64::MAX, 0)]),
            KvResponse::Page { entries: vec![(Bytes::from("k"), 9, Encoded::new(object()))], next: Some(10) },
            KvResponse::Page { entries: Vec::new(), next: None },
        ];
        (requests, responses)
    }
}
