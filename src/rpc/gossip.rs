//! Gossip messages: the cluster's record, what each member says of itself
//! ([`Entry`]) and of its liveness and load ([`Beat`]), and the three
//! messages of a gossip round: a digest of what the sender knows, the
//! deltas the receiver has that the sender lacks together with the ids it
//! wants, and those wanted deltas.
//!
//! Every count is bounded by [`MAX_MEMBERS`] and every address by
//! `MAX_ADDR`, so a hostile peer cannot make a node allocate by claiming.

use bytes::{BufMut, BytesMut};

use crate::version::NodeId;
use crate::version::codec::{DecodeError, put_varint};

use super::wire::{Payload, put_bytes};

/// The most members a cluster may have.
pub const MAX_MEMBERS: usize = 4096;

/// A cluster's identity, created once, when its first node starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterRecord {
    /// Random, never 0.
    pub id: u64,
    /// Q: partitions of the ring.
    pub partitions: u32,
    /// Replicas of each key.
    pub n: u32,
}

/// Where a member stands. The join/leave work drives the transitions; a
/// removed member stays in the table, so stale gossip cannot bring it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Joining,
    Valid,
    Leaving,
    Removed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Joining => "joining",
            Self::Valid => "valid",
            Self::Leaving => "leaving",
            Self::Removed => "removed",
        })
    }
}

/// What a member says of itself. Only the member changes it, raising
/// `version` each time; a higher version wins everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: NodeId,
    pub client_addr: String,
    pub peer_addr: String,
    pub status: Status,
    /// Raised by the member at every start and every change of its entry,
    /// and persisted first, so it never goes back.
    pub version: u64,
    /// A member this one took the place of: a node that came back at the
    /// same address with a new data directory.
    pub replaces: Option<NodeId>,
}

/// What a member says of itself every round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Beat {
    /// Rises every round, from 1 at each start (with the entry's version).
    pub heartbeat: u64,
    /// Keys the member holds.
    pub keys: u64,
    /// Bytes the member's data takes on disk.
    pub bytes: u64,
}

/// One line of a digest: how far the sender knows a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestItem {
    pub id: NodeId,
    pub version: u64,
    pub heartbeat: u64,
}

/// What the sender knows of a member that the receiver does not: the
/// entry if the receiver's is older, and the latest beat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub id: NodeId,
    pub version: u64,
    pub entry: Option<Entry>,
    pub beat: Beat,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipRequest {
    /// Are you there? (for operators and tests)
    Ping,
    /// What cluster is this? Asked by a node that has none, of its seeds.
    Join,
    /// A round's opening: what the sender knows, in brief.
    Syn(Vec<DigestItem>),
    /// What the receiver asked for in its answer to a `Syn`.
    Push(Vec<Delta>),
    /// May the sender resume the actor its last run stopped with? (see
    /// `membership::claim`)
    Claim { before: u64, after: u64, token: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipResponse {
    Pong,
    /// The receiver's cluster and members (`None`: it has no cluster yet).
    Cluster(Option<ClusterRecord>, Vec<Entry>),
    /// What the sender of a `Syn` lacks, and the ids the receiver wants.
    Ack {
        deltas: Vec<Delta>,
        wants: Vec<NodeId>,
    },
    Done,
    /// The answer to a `Claim`: granted or not.
    Claimed(bool),
}

fn put_entry(out: &mut BytesMut, e: &Entry) {
    out.put_u64_le(e.id.0);
    put_bytes(out, e.client_addr.as_bytes());
    put_bytes(out, e.peer_addr.as_bytes());
    out.put_u8(match e.status {
        Status::Joining => 0,
        Status::Valid => 1,
        Status::Leaving => 2,
        Status::Removed => 3,
    });
    put_varint(out, e.version);
    match e.replaces {
        Some(id) => {
            out.put_u8(1);
            out.put_u64_le(id.0);
        }
        None => out.put_u8(0),
    }
}

fn put_beat(out: &mut BytesMut, b: &Beat) {
    put_varint(out, b.heartbeat);
    put_varint(out, b.keys);
    put_varint(out, b.bytes);
}

fn put_delta(out: &mut BytesMut, d: &Delta) {
    out.put_u64_le(d.id.0);
    put_varint(out, d.version);
    match &d.entry {
        Some(e) => {
            out.put_u8(1);
            put_entry(out, e);
        }
        None => out.put_u8(0),
    }
    put_beat(out, &d.beat);
}

fn put_list<T>(out: &mut BytesMut, items: &[T], put: impl Fn(&mut BytesMut, &T)) {
    put_varint(out, items.len() as u64);
    for item in items {
        put(out, item);
    }
}

impl Payload<'_> {
    fn entry(&mut self) -> Result<Entry, DecodeError> {
        Ok(Entry {
            id: NodeId(self.u64_le()?),
            client_addr: self.addr()?,
            peer_addr: self.addr()?,
            status: match self.u8()? {
                0 => Status::Joining,
                1 => Status::Valid,
                2 => Status::Leaving,
                3 => Status::Removed,
                _ => return Err(DecodeError::Malformed("bad status")),
            },
            version: self.varint()?,
            replaces: if self.bool()? { Some(NodeId(self.u64_le()?)) } else { None },
        })
    }

    fn beat(&mut self) -> Result<Beat, DecodeError> {
        Ok(Beat { heartbeat: self.varint()?, keys: self.varint()?, bytes: self.varint()? })
    }

    fn delta(&mut self) -> Result<Delta, DecodeError> {
        let id = NodeId(self.u64_le()?);
        let version = self.varint()?;
        let entry = if self.bool()? { Some(self.entry()?) } else { None };
        Ok(Delta { id, version, entry, beat: self.beat()? })
    }

    fn list<T>(
        &mut self,
        min_size: usize,
        item: impl Fn(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.count(min_size, MAX_MEMBERS)?;
        (0..n).map(|_| item(self)).collect()
    }
}

impl GossipRequest {
    pub(super) fn kind(&self) -> u8 {
        match self {
            Self::Ping => 1,
            Self::Join => 2,
            Self::Syn(_) => 3,
            Self::Push(_) => 4,
            Self::Claim { .. } => 5,
        }
    }

    pub(super) fn encode_payload(&self, out: &mut BytesMut) {
        match self {
            Self::Ping | Self::Join => {}
            Self::Syn(digest) => put_list(out, digest, |out, d| {
                out.put_u64_le(d.id.0);
                put_varint(out, d.version);
                put_varint(out, d.heartbeat);
            }),
            Self::Push(deltas) => put_list(out, deltas, put_delta),
            Self::Claim { before, after, token } => {
                put_varint(out, *before);
                put_varint(out, *after);
                out.put_u64_le(*token);
            }
        }
    }

    /// Decodes a request of `kind`; `None` for a kind this build does not
    /// know.
    pub(super) fn decode(kind: u8, p: &mut Payload<'_>) -> Result<Option<Self>, DecodeError> {
        Ok(Some(match kind {
            1 => Self::Ping,
            2 => Self::Join,
            3 => Self::Syn(p.list(10, |p| {
                Ok(DigestItem { id: NodeId(p.u64_le()?), version: p.varint()?, heartbeat: p.varint()? })
            })?),
            4 => Self::Push(p.list(13, Payload::delta)?),
            5 => Self::Claim { before: p.varint()?, after: p.varint()?, token: p.u64_le()? },
            _ => return Ok(None),
        }))
    }
}

impl GossipResponse {
    pub(super) fn kind(&self) -> u8 {
        match self {
            Self::Pong => 1,
            Self::Cluster(..) => 2,
            Self::Ack { .. } => 3,
            Self::Done => 4,
            Self::Claimed(_) => 5,
        }
    }

    pub(super) fn encode_payload(&self, out: &mut BytesMut) {
        match self {
            Self::Pong | Self::Done => {}
            Self::Claimed(granted) => out.put_u8(u8::from(*granted)),
            Self::Cluster(record, entries) => {
                match record {
                    Some(r) => {
                        out.put_u8(1);
                        out.put_u64_le(r.id);
                        put_varint(out, u64::from(r.partitions));
                        put_varint(out, u64::from(r.n));
                    }
                    None => out.put_u8(0),
                }
                put_list(out, entries, put_entry);
            }
            Self::Ack { deltas, wants } => {
                put_list(out, deltas, put_delta);
                put_list(out, wants, |out, id| out.put_u64_le(id.0));
            }
        }
    }

    /// Decodes a response of `kind`; `None` for a kind this build does not
    /// know.
    pub(super) fn decode(kind: u8, p: &mut Payload<'_>) -> Result<Option<Self>, DecodeError> {
        Ok(Some(match kind {
            1 => Self::Pong,
            2 => {
                let record = if p.bool()? {
                    Some(ClusterRecord { id: p.u64_le()?, partitions: p.u32()?, n: p.u32()? })
                } else {
                    None
                };
                Self::Cluster(record, p.list(13, Payload::entry)?)
            }
            3 => Self::Ack { deltas: p.list(13, Payload::delta)?, wants: p.list(8, |p| Ok(NodeId(p.u64_le()?)))? },
            4 => Self::Done,
            5 => Self::Claimed(p.bool()?),
            _ => return Ok(None),
        }))
    }
}

/// The cluster's record, encoded for keeping on disk.
#[must_use]
pub fn encode_record(r: &ClusterRecord) -> bytes::Bytes {
    let mut out = BytesMut::new();
    out.put_u64_le(r.id);
    put_varint(&mut out, u64::from(r.partitions));
    put_varint(&mut out, u64::from(r.n));
    out.freeze()
}

/// Reads what [`encode_record`] wrote.
///
/// # Errors
/// Bytes that are not a record.
pub fn decode_record(bytes: &bytes::Bytes) -> Result<ClusterRecord, DecodeError> {
    let mut p = Payload::new(bytes);
    let record = ClusterRecord { id: p.u64_le()?, partitions: p.u32()?, n: p.u32()? };
    p.finish()?;
    Ok(record)
}

/// Member entries, encoded for keeping on disk.
#[must_use]
pub fn encode_entries(entries: &[Entry]) -> bytes::Bytes {
    let mut out = BytesMut::new();
    put_list(&mut out, entries, put_entry);
    out.freeze()
}

/// Reads what [`encode_entries`] wrote. Unlike a message, the list may
/// hold more than [`MAX_MEMBERS`] entries (a table saved before members
/// were bounded); the member table keeps what fits.
///
/// # Errors
/// Bytes that are not a list of entries.
pub fn decode_entries(bytes: &bytes::Bytes) -> Result<Vec<Entry>, DecodeError> {
    let mut p = Payload::new(bytes);
    let n = p.count(13, usize::MAX)?;
    let entries = (0..n).map(|_| p.entry()).collect::<Result<_, _>>()?;
    p.finish()?;
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(i: u64) -> Entry {
        Entry {
            id: NodeId(i),
            client_addr: format!("127.0.0.1:{i}"),
            peer_addr: format!("127.0.0.1:1{i}"),
            status: Status::Valid,
            version: i + 3,
            replaces: (i % 2 == 0).then_some(NodeId(i + 100)),
        }
    }

    #[test]
    fn records_and_entries_keep_on_disk() {
        let r = ClusterRecord { id: 0xfeed, partitions: 64, n: 3 };
        assert_eq!(decode_record(&encode_record(&r)), Ok(r));
        let entries = vec![entry(1), entry(2)];
        assert_eq!(decode_entries(&encode_entries(&entries)), Ok(entries));
        assert!(decode_entries(&bytes::Bytes::from_static(b"\xff\xff\xff")).is_err());
        let many: Vec<Entry> = (0..MAX_MEMBERS as u64 + 10).map(entry).collect();
        assert_eq!(decode_entries(&encode_entries(&many)).map(|e| e.len()), Ok(many.len()), "a table saved unbounded");
    }

    #[test]
    fn counts_past_the_bound_or_the_payload_are_refused() {
        let decode = |kind, payload: &[u8]| {
            let payload = bytes::Bytes::copy_from_slice(payload);
            GossipRequest::decode(kind, &mut Payload::new(&payload))
        };
        // 2^32 items declared, none sent.
        assert!(decode(3, &[0x80, 0x80, 0x80, 0x80, 0x10]).is_err());
        assert!(decode(4, &[0x80, 0x80, 0x80, 0x80, 0x10]).is_err());
        // MAX_MEMBERS + 1 items, all there.
        let mut out = BytesMut::new();
        GossipRequest::Syn(vec![DigestItem { id: NodeId(1), version: 1, heartbeat: 1 }; MAX_MEMBERS + 1])
            .encode_payload(&mut out);
        assert_eq!(decode(3, &out), Err(DecodeError::Malformed("too many items")));
        // An entry whose address is declared longer than MAX_ADDR.
        let mut long = vec![1];
        long.extend_from_slice(&1u64.to_le_bytes());
        long.extend_from_slice(&[0x80, 0x80, 0x40]); // 1 MB
        long.extend_from_slice(&[0; 20]);
        let long = bytes::Bytes::from(long);
        assert_eq!(Payload::new(&long).list(13, Payload::entry), Err(DecodeError::Malformed("address too long")));
    }

    /// One of every kind of message, for the wire tests.
    pub(crate) fn gossip_messages() -> (Vec<GossipRequest>, Vec<GossipResponse>) {
        let beat = Beat { heartbeat: 9, keys: 1000, bytes: 1 << 30 };
        let deltas = vec![
            Delta { id: NodeId(1), version: 4, entry: Some(entry(1)), beat },
            Delta { id: NodeId(2), version: 5, entry: None, beat: Beat::default() },
        ];
        let requests = vec![
            GossipRequest::Ping,
            GossipRequest::Join,
            GossipRequest::Syn(vec![DigestItem { id: NodeId(3), version: 1, heartbeat: 77 }]),
            GossipRequest::Push(deltas.clone()),
            GossipRequest::Claim { before: 1_700_000_000_000, after: 1_700_000_000_001, token: u64::MAX },
        ];
        let responses = vec![
            GossipResponse::Pong,
            GossipResponse::Cluster(Some(ClusterRecord { id: 42, partitions: 256, n: 3 }), vec![entry(1), entry(2)]),
            GossipResponse::Cluster(None, vec![]),
            GossipResponse::Ack { deltas, wants: vec![NodeId(8)] },
            GossipResponse::Done,
            GossipResponse::Claimed(true),
            GossipResponse::Claimed(false),
        ];
        (requests, responses)
    }
}
