//! The binary encoding of objects and contexts.
//!
//! Objects are what storage keeps and peers exchange; contexts are handed to
//! clients as printable base64url text. Both start with a format byte, use
//! LEB128 varints for counters and lengths and fixed 8-byte node ids.
//! Decoding validates every invariant the rest of the module relies on
//! (sorted vectors, siblings covered by the vector and in dot order, no
//! trailing bytes), so corrupt input is an error, never a panic or a
//! silently wrong object. Values are sliced out of the input `Bytes`
//! without copying.
//!
//! Object layout (format 1):
//! ```text
//! u8 format | varint vv_len | vv_len × (u64le node, varint counter)
//! varint siblings | siblings × (varint node_index, varint counter,
//!     varint timestamp_ms, u8 flags, [varint expires_at_ms], [varint len, value])
//! ```
//! `node_index` points into the vector; flags bit 0 = has value, bit 1 = has
//! expiry.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::{Actor, Dot, Object, Sibling, VersionVector};

const OBJECT_FORMAT: u8 = 1;
const FLAG_VALUE: u8 = 1;
const FLAG_EXPIRY: u8 = 2;
/// Items reserved up front when decoding a list: a declared count is
/// checked against the bytes left, but an item in memory can be many times
/// its encoding, so larger lists grow as they decode.
pub(crate) const PREALLOCATE: usize = 1024;

/// Why bytes did not decode.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated")]
    Truncated,
    #[error("unknown format {0}")]
    Format(u8),
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

pub(crate) fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// A cursor over encoded bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u64_fixed(&mut self) -> Result<u64, DecodeError> {
        let bytes = self.buf.get(self.pos..self.pos + 8).ok_or(DecodeError::Truncated)?;
        self.pos += 8;
        let mut arr = [0u8; 8];
        arr.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(arr))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(DecodeError::Malformed("varint overflow"));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("varint overflow"))
    }

    /// A length that must fit in what is left of the input.
    pub(crate) fn len(&mut self, min_item_size: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_size.max(1) as u64) > left {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Truncated);
        }
        let range = self.pos..self.pos + n;
        self.pos += n;
        Ok(range)
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() { Ok(()) } else { Err(DecodeError::Malformed("trailing bytes")) }
    }
}

/// Writes a version vector: count, then (actor, counter) pairs.
pub(crate) fn put_vector(out: &mut BytesMut, vv: &VersionVector) {
    put_varint(out, vv.len() as u64);
    for &(actor, counter) in vv.entries() {
        out.put_u64_le(actor.0);
        put_varint(out, counter);
    }
}

/// Reads a version vector written by [`put_vector`], insisting on sorted,
/// distinct actors and non-zero counters.
pub(crate) fn read_vector(r: &mut Reader<'_>) -> Result<VersionVector, DecodeError> {
    let n = r.len(9)?;
    let mut entries = Vec::with_capacity(n.min(PREALLOCATE));
    for _ in 0..n {
        let actor = Actor(r.u64_fixed()?);
        let counter = r.varint()?;
        if counter == 0 {
            return Err(DecodeError::Malformed("zero counter"));
        }
        if entries.last().is_some_and(|&(last, _)| last >= actor) {
            return Err(DecodeError::Malformed("vector not sorted"));
        }
        entries.push((actor, counter));
    }
    Ok(VersionVector::from_entries(entries))
}

/// An object with its encoding, made once: what the store keeps and what a
/// replica message carries, so a write is encoded once however many copies
/// of it are made.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    object: Arc<Object>,
    bytes: Bytes,
}

impl Encoded {
    /// Encodes `object`, re-pointing its values into the encoding (see
    /// [`Object::encode_shared`]).
    #[must_use]
    pub fn new(mut object: Object) -> Self {
        let bytes = object.encode_shared();
        Self { object: Arc::new(object), bytes }
    }

    /// Decodes `bytes`, keeping them as the encoding.
    ///
    /// # Errors
    /// As [`Object::decode`].
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        Ok(Self { object: Arc::new(Object::decode(&bytes)?), bytes })
    }

    #[must_use]
    pub fn object(&self) -> &Arc<Object> {
        &self.object
    }

    #[must_use]
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl Object {
    /// Encodes the object for storage or the wire.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        self.encode_recording(|_| {})
    }

    /// Encodes the object and re-points its values into the encoding, so
    /// that the object keeps no other buffer alive (a value sliced out of a
    /// client's read buffer would otherwise pin the whole buffer for as long
    /// as the object is cached).
    pub fn encode_shared(&mut self) -> Bytes {
        // Where the values start: inline for the usual few siblings.
        let (mut inline, mut more, mut count) = ([0usize; 4], Vec::new(), 0);
        let bytes = self.encode_recording(|at| {
            match inline.get_mut(count) {
                Some(slot) => *slot = at,
                None => more.push(at),
            }
            count += 1;
        });
        let mut at = inline.into_iter().take(count).chain(more);
        for s in self.siblings_mut() {
            if let (Some(v), Some(start)) = (s.value.as_mut(), at.next()) {
                *v = bytes.slice(start..start + v.len());
            }
        }
        bytes
    }

    /// Encodes, noting where each value starts.
    fn encode_recording(&self, mut value_at: impl FnMut(usize)) -> Bytes {
        let values: usize = self.siblings().iter().map(|s| s.value.as_ref().map_or(0, Bytes::len)).sum();
        let mut out = BytesMut::with_capacity(16 + self.vv().len() * 12 + self.siblings().len() * 24 + values);
        out.put_u8(OBJECT_FORMAT);
        put_vector(&mut out, self.vv());
        put_varint(&mut out, self.siblings().len() as u64);
        for s in self.siblings() {
            // Decoding rejects objects whose siblings the vector does not cover,
            // and the constructors keep that invariant, so the index exists.
            let index = self.vv().position(s.dot.actor).unwrap_or(usize::MAX);
            put_varint(&mut out, index as u64);
            put_varint(&mut out, s.dot.counter);
            put_varint(&mut out, s.timestamp);
            let flags =
                if s.value.is_some() { FLAG_VALUE } else { 0 } | if s.expires_at.is_some() { FLAG_EXPIRY } else { 0 };
            out.put_u8(flags);
            if let Some(at) = s.expires_at {
                put_varint(&mut out, at);
            }
            if let Some(v) = &s.value {
                put_varint(&mut out, v.len() as u64);
                value_at(out.len());
                out.put_slice(v);
            }
        }
        out.freeze()
    }

    /// Decodes an object, slicing values out of `bytes` without copying.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are truncated, of an unknown format or
    /// break an invariant of objects.
    pub fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let format = r.u8()?;
        if format != OBJECT_FORMAT {
            return Err(DecodeError::Format(format));
        }
        let vv = read_vector(&mut r)?;
        let count = r.len(4)?;
        let mut siblings: Vec<Sibling> = Vec::with_capacity(count.min(PREALLOCATE));
        for _ in 0..count {
            let index = r.varint()?;
            let &(node, max) = usize::try_from(index)
                .ok()
                .and_then(|i| vv.entries().get(i))
                .ok_or(DecodeError::Malformed("sibling node not in vector"))?;
            let counter = r.varint()?;
            if counter == 0 || counter > max {
                return Err(DecodeError::Malformed("sibling dot not covered by vector"));
            }
            let dot = Dot::new(node, counter);
            // Siblings are stored sorted by dot: equal or descending dots
            // mean corruption (and the check stays linear).
            if siblings.last().is_some_and(|last| last.dot >= dot) {
                return Err(DecodeError::Malformed("siblings not in dot order"));
            }
            let timestamp = r.varint()?;
            let flags = r.u8()?;
            if flags & !(FLAG_VALUE | FLAG_EXPIRY) != 0 {
                return Err(DecodeError::Malformed("unknown sibling flags"));
            }
            let expires_at = if flags & FLAG_EXPIRY != 0 { Some(r.varint()?) } else { None };
            let value = if flags & FLAG_VALUE != 0 {
                let len = r.len(1)?;
                Some(bytes.slice(r.take(len)?))
            } else {
                None
            };
            siblings.push(Sibling { dot, timestamp, expires_at, value });
        }
        r.finish()?;
        Ok(Self::from_parts(vv, siblings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint(), Ok(v));
            r.finish().expect("no trailing bytes");
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let bytes = [0xffu8; 11];
        assert!(Reader::new(&bytes).varint().is_err());
        let ten = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&ten).varint().is_err());
    }

    #[test]
    fn shared_encoding_points_values_into_itself() {
        use crate::version::{Context, Sibling};
        let big = Bytes::from(vec![7u8; 4096]);
        let mut o = Object::new();
        for (i, range) in [(1, 10..20), (2, 100..164)] {
            let value = Some(big.slice(range));
            o.update(
                &Context::default(),
                Sibling { dot: Dot::new(Actor(3), i), timestamp: i, expires_at: None, value },
            );
        }
        let before = o.clone();
        let bytes = o.encode_shared();
        assert_eq!(o, before, "same values");
        assert_eq!(Object::decode(&bytes), Ok(before));
        let span = bytes.as_ptr_range();
        for s in o.siblings() {
            let v = s.value.as_ref().expect("value");
            assert!(span.contains(&v.as_ptr()), "value lives in the encoding");
        }
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating() {
        let mut out = BytesMut::new();
        out.put_u8(OBJECT_FORMAT);
        put_varint(&mut out, u64::MAX / 2);
        assert_eq!(Object::decode(&out.freeze()), Err(DecodeError::Truncated));
    }
}
