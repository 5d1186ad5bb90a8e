//! Gossip messages: the cluster's record, what each member says of itself
//! ([`Entry`]) and of its liveness and load ([`Beat`]), and the three
//! messages of a gossip round: a digest of what the sender knows, the
//! deltas the receiver has that the sender lacks together with the ids it
//! wants, and those wanted deltas.
//!
//! Every count is bounded by [`MAX_MEMBERS`] and every address by
//! `MAX_ADDR`, so a hostile peer cannot make a node allocate by claiming.

use bytes::{BufMut, BytesMut};

use crate::ring::state::{Change, RingState, Staged, Stamp};
use crate::ring::{MAX_PARTITIONS, valid_partition_count};
use crate::version::NodeId;
use crate::version::codec::{DecodeError, put_varint};

use super::wire::{Payload, put_bytes};

/// The most members a cluster may have.
pub const MAX_MEMBERS: usize = 4096;
/// The highest ring epoch a peer may announce.
const MAX_EPOCH: u64 = 1 << 62;

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
    /// The epoch of the ring the member holds (so a change's transfers
    /// can tell when every member sends writes to the gaining nodes).
    pub ring_epoch: u64,
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
    /// The stamp of the sender's ring (changes ended, epoch, claimant id;
    /// see [`RingState::stamp`]): the receiver answers with its own ring if
    /// newer.
    RingStamp(u64, u64, u64),
    /// A ring newer than the receiver's (it keeps it if it is).
    Ring(Box<RingState>),
    /// A decision for the claimant to make.
    Decide(Decision),
}

/// What a member asks of the claimant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Stage a change of `node` (and commit it at once if `commit`).
    Stage { node: NodeId, change: Change, commit: bool },
    /// Commit every staged change.
    Commit,
    /// Take back the staged changes not committed.
    Clear,
    /// `node` holds partition `partition` for the change that began at
    /// epoch `change`.
    Done { change: u64, partition: u32, node: NodeId },
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
    /// The receiver's ring stamp, and its ring if newer than the one asked
    /// about (or the ring a decision made).
    Ring {
        stamp: Stamp,
        ring: Option<Box<RingState>>,
    },
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
    put_varint(out, b.ring_epoch);
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

fn change_code(c: Change) -> u8 {
    match c {
        Change::Join => 0,
        Change::Leave => 1,
        Change::Remove => 2,
    }
}

/// A ring: its members once, then every owner as an index among them.
fn put_ring(out: &mut BytesMut, r: &RingState) {
    put_varint(out, r.generation);
    put_varint(out, r.epoch);
    out.put_u64_le(r.claimant.0);
    put_varint(out, r.change);
    put_varint(out, r.planned);
    let mut members: Vec<NodeId> = r.members();
    for id in r.done.iter().map(|d| d.1).chain(r.staged.iter().map(|s| s.node)).chain(r.removing.iter().copied()) {
        if let Err(at) = members.binary_search(&id) {
            members.insert(at, id);
        }
    }
    let index = |id: &NodeId| members.binary_search(id).unwrap_or(0) as u64;
    put_list(out, &members, |out, id| out.put_u64_le(id.0));
    put_list(out, &r.owners, |out, id| put_varint(out, index(id)));
    put_list(out, &r.next, |out, id| put_varint(out, index(id)));
    put_list(out, &r.done, |out, (p, id)| {
        put_varint(out, u64::from(*p));
        put_varint(out, index(id));
    });
    put_list(out, &r.staged, |out, s| {
        put_varint(out, index(&s.node));
        out.put_u8(change_code(s.change));
        out.put_u8(u8::from(s.commit));
    });
    put_list(out, &r.removing, |out, id| put_varint(out, index(id)));
}

/// A ring, encoded for keeping on disk.
#[must_use]
pub fn encode_ring(r: &RingState) -> bytes::Bytes {
    let mut out = BytesMut::new();
    put_ring(&mut out, r);
    out.freeze()
}

/// Reads what [`encode_ring`] wrote.
///
/// # Errors
/// Bytes that are not a ring.
pub fn decode_ring(bytes: &bytes::Bytes) -> Result<RingState, DecodeError> {
    let mut p = Payload::new(bytes);
    let ring = p.ring()?;
    p.finish()?;
    Ok(ring)
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
        Ok(Beat { heartbeat: self.varint()?, keys: self.varint()?, bytes: self.varint()?, ring_epoch: self.varint()? })
    }

    fn delta(&mut self) -> Result<Delta, DecodeError> {
        let id = NodeId(self.u64_le()?);
        let version = self.varint()?;
        let entry = if self.bool()? { Some(self.entry()?) } else { None };
        Ok(Delta { id, version, entry, beat: self.beat()? })
    }

    fn change(&mut self) -> Result<Change, DecodeError> {
        Ok(match self.u8()? {
            0 => Change::Join,
            1 => Change::Leave,
            2 => Change::Remove,
            _ => return Err(DecodeError::Malformed("bad change")),
        })
    }

    /// A ring: checked to be one (a valid partition count, `next` empty
    /// or as long, every index among the members), since a peer may send
    /// anything.
    fn ring(&mut self) -> Result<RingState, DecodeError> {
        let generation = self.varint()?;
        let epoch = self.varint()?;
        let claimant = NodeId(self.u64_le()?);
        let change = self.varint()?;
        let planned = self.varint()?;
        // Far beyond any real count of decisions: a ring at such an epoch
        // would leave no room for the next.
        if epoch > MAX_EPOCH || change > epoch || planned > epoch || generation > epoch {
            return Err(DecodeError::Malformed("bad ring epoch"));
        }
        let members = self.list(8, |p| Ok(NodeId(p.u64_le()?)))?;
        let member = |p: &mut Self| -> Result<NodeId, DecodeError> {
            let i = usize::try_from(p.varint()?).unwrap_or(usize::MAX);
            members.get(i).copied().ok_or(DecodeError::Malformed("bad member index"))
        };
        let max = MAX_PARTITIONS as usize;
        let n = self.count(1, max)?;
        let owners = (0..n).map(|_| member(self)).collect::<Result<Vec<_>, _>>()?;
        let n = self.count(1, max)?;
        let next = (0..n).map(|_| member(self)).collect::<Result<Vec<_>, _>>()?;
        let n = self.count(2, max * MAX_MEMBERS.min(8))?;
        let done = (0..n).map(|_| Ok((self.u32()?, member(self)?))).collect::<Result<Vec<_>, DecodeError>>()?;
        let n = self.count(3, MAX_MEMBERS)?;
        let staged = (0..n)
            .map(|_| Ok(Staged { node: member(self)?, change: self.change()?, commit: self.bool()? }))
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let n = self.count(1, MAX_MEMBERS)?;
        let removing = (0..n).map(|_| member(self)).collect::<Result<Vec<_>, _>>()?;
        let valid_q = |len: usize| u32::try_from(len).is_ok_and(valid_partition_count);
        if !(owners.is_empty() || valid_q(owners.len())) || !(next.is_empty() || next.len() == owners.len()) {
            return Err(DecodeError::Malformed("bad ring size"));
        }
        if !done.is_sorted() || done.iter().any(|&(p, _)| p as usize >= owners.len()) {
            return Err(DecodeError::Malformed("bad transfers done"));
        }
        Ok(RingState { generation, epoch, claimant, owners, next, change, planned, done, staged, removing })
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
            Self::RingStamp(..) => 6,
            Self::Ring(_) => 7,
            Self::Decide(_) => 8,
        }
    }

    pub(super) fn encode_payload(&self, out: &mut BytesMut) {
        match self {
            Self::Ping | Self::Join => {}
            Self::RingStamp(generation, epoch, claimant) => {
                put_varint(out, *generation);
                put_varint(out, *epoch);
                out.put_u64_le(*claimant);
            }
            Self::Ring(ring) => put_ring(out, ring),
            Self::Decide(d) => match d {
                Decision::Stage { node, change, commit } => {
                    out.put_u8(1);
                    out.put_u64_le(node.0);
                    out.put_u8(change_code(*change));
                    out.put_u8(u8::from(*commit));
                }
                Decision::Commit => out.put_u8(2),
                Decision::Clear => out.put_u8(3),
                Decision::Done { change, partition, node } => {
                    out.put_u8(4);
                    put_varint(out, *change);
                    put_varint(out, u64::from(*partition));
                    out.put_u64_le(node.0);
                }
            },
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
            6 => Self::RingStamp(p.varint()?, p.varint()?, p.u64_le()?),
            7 => Self::Ring(Box::new(p.ring()?)),
            8 => Self::Decide(match p.u8()? {
                1 => Decision::Stage { node: NodeId(p.u64_le()?), change: p.change()?, commit: p.bool()? },
                2 => Decision::Commit,
                3 => Decision::Clear,
                4 => Decision::Done { change: p.varint()?, partition: p.u32()?, node: NodeId(p.u64_le()?) },
                _ => return Err(DecodeError::Malformed("bad decision")),
            }),
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
            Self::Ring { .. } => 6,
        }
    }

    pub(super) fn encode_payload(&self, out: &mut BytesMut) {
        match self {
            Self::Pong | Self::Done => {}
            Self::Ring { stamp, ring } => {
                put_varint(out, stamp.0);
                put_varint(out, stamp.1);
                out.put_u64_le(stamp.2);
                match ring {
                    Some(r) => {
                        out.put_u8(1);
                        put_ring(out, r);
                    }
                    None => out.put_u8(0),
                }
            }
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
            6 => Self::Ring {
                stamp: (p.varint()?, p.varint()?, p.u64_le()?),
                ring: if p.bool()? { Some(Box::new(p.ring()?)) } else { None },
            },
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
        let beat = Beat { heartbeat: 9, keys: 1000, bytes: 1 << 30, ring_epoch: 12 };
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
            GossipRequest::RingStamp(1, 7, u64::MAX - 3),
            GossipRequest::Ring(Box::new(ring())),
            GossipRequest::Decide(Decision::Stage { node: NodeId(4), change: Change::Leave, commit: true }),
            GossipRequest::Decide(Decision::Commit),
            GossipRequest::Decide(Decision::Clear),
            GossipRequest::Decide(Decision::Done { change: 9, partition: 3, node: NodeId(2) }),
        ];
        let responses = vec![
            GossipResponse::Pong,
            GossipResponse::Cluster(Some(ClusterRecord { id: 42, partitions: 256, n: 3 }), vec![entry(1), entry(2)]),
            GossipResponse::Cluster(None, vec![]),
            GossipResponse::Ack { deltas, wants: vec![NodeId(8)] },
            GossipResponse::Done,
            GossipResponse::Claimed(true),
            GossipResponse::Claimed(false),
            GossipResponse::Ring { stamp: (2, 3, 4), ring: None },
            GossipResponse::Ring { stamp: (2, 3, 4), ring: Some(Box::new(ring())) },
        ];
        (requests, responses)
    }

    /// A ring in the middle of a change, with something staged.
    pub(crate) fn ring() -> RingState {
        let mut r = RingState::first(NodeId(1), 8);
        r = r.stage(NodeId(1), NodeId(2), Change::Join, true).expect("stage");
        r = r.step(NodeId(1), 3).expect("starts");
        let m = r.moves(3)[0].clone();
        r = r.mark_done(NodeId(1), r.change, m.partition, m.to, 3).expect("done");
        r.stage(NodeId(1), NodeId(9), Change::Join, false).expect("stage")
    }

    #[test]
    fn rings_keep_on_disk_and_bad_ones_are_refused() {
        let r = ring();
        assert_eq!(decode_ring(&encode_ring(&r)), Ok(r.clone()));
        assert_eq!(decode_ring(&encode_ring(&RingState::unknown())), Ok(RingState::unknown()));
        let mut bad = r.clone();
        bad.owners.pop();
        assert!(decode_ring(&encode_ring(&bad)).is_err(), "7 partitions");
        let mut bad = r;
        bad.next.pop();
        assert!(decode_ring(&encode_ring(&bad)).is_err(), "next of another size");
    }
}
