//! Contexts: the causal history a client carries between a read and a write.
//!
//! A context is a dotted version vector: a vector plus single dots beyond it.
//! `GETCTX` hands out an object's whole vector; `SETCTX` hands back the
//! client's context plus the dot of the write it made, so a later write with
//! it supersedes what that client saw and wrote and nothing else.
//!
//! Clients see contexts as opaque printable text (base64url of a binary
//! encoding), so they can be copied in redis-cli. The empty context is the
//! empty string: a blind write.

use bytes::{BufMut, BytesMut};

use super::codec::{DecodeError, Reader, put_varint, put_vector, read_vector};
use super::{Actor, Dot, VersionVector};

const CONTEXT_FORMAT: u8 = 1;

/// A vector plus dots beyond it; the dots are sorted, distinct and not
/// covered by the vector.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct Context {
    vv: VersionVector,
    dots: Vec<Dot>,
}

impl Context {
    #[must_use]
    pub fn from_vector(vv: VersionVector) -> Self {
        Self { vv, dots: Vec::new() }
    }

    #[must_use]
    pub fn vector(&self) -> &VersionVector {
        &self.vv
    }

    #[must_use]
    pub fn dots(&self) -> &[Dot] {
        &self.dots
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.dots.is_empty()
    }

    /// True if the write named by `dot` is in this history.
    #[must_use]
    pub fn covers(&self, dot: Dot) -> bool {
        self.vv.covers(dot) || self.dots.binary_search(&dot).is_ok()
    }

    /// This context plus `dot`; with `fold`, the dot raises the vector
    /// (the caller knows no dot of that actor lies between).
    #[must_use]
    pub fn with_dot(&self, dot: Dot, fold: bool) -> Self {
        let mut next = self.clone();
        if fold {
            next.vv.add(dot);
            next.dots.retain(|d| !next.vv.covers(*d));
        } else if let Err(i) = next.dots.binary_search(&dot) {
            if !next.vv.covers(dot) {
                next.dots.insert(i, dot);
            }
        }
        next
    }

    /// This context limited to what `seen` covers: every entry capped at
    /// `seen`'s, dots beyond it dropped.
    #[must_use]
    pub fn clamped_to(&self, seen: &VersionVector) -> Self {
        if seen.dominates(&self.vv) && self.dots.iter().all(|d| seen.covers(*d)) {
            return self.clone();
        }
        let vv = VersionVector::from_entries(self.vv.entries().iter().map(|&(n, c)| (n, c.min(seen.get(n)))));
        let dots = self.dots.iter().copied().filter(|d| seen.covers(*d) && !vv.covers(*d)).collect();
        Self { vv, dots }
    }

    /// The printable form handed to clients.
    #[must_use]
    pub fn encode(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut out = BytesMut::with_capacity(2 + (self.vv.len() + self.dots.len()) * 12);
        out.put_u8(CONTEXT_FORMAT);
        put_vector(&mut out, &self.vv);
        put_varint(&mut out, self.dots.len() as u64);
        for d in &self.dots {
            out.put_u64_le(d.actor.0);
            put_varint(&mut out, d.counter);
        }
        base64url::encode(&out)
    }

    /// Parses what [`encode`](Self::encode) produced.
    ///
    /// # Errors
    /// [`DecodeError`] when the text is not a context.
    pub fn decode(text: &[u8]) -> Result<Self, DecodeError> {
        if text.is_empty() {
            return Ok(Self::default());
        }
        let bytes = base64url::decode(text).ok_or(DecodeError::Malformed("not base64url"))?;
        let mut r = Reader::new(&bytes);
        let format = r.u8()?;
        if format != CONTEXT_FORMAT {
            return Err(DecodeError::Format(format));
        }
        let vv = read_vector(&mut r)?;
        let n = r.len(9)?;
        let mut dots: Vec<Dot> = Vec::with_capacity(n.min(super::codec::PREALLOCATE));
        for _ in 0..n {
            let dot = Dot::new(Actor(r.u64_fixed()?), r.varint()?);
            if vv.covers(dot) || dots.last().is_some_and(|last| *last >= dot) {
                return Err(DecodeError::Malformed("context dots not sorted beyond the vector"));
            }
            dots.push(dot);
        }
        r.finish()?;
        Ok(Self { vv, dots })
    }
}

/// Unpadded base64url (RFC 4648 §5), enough for contexts.
mod base64url {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
        if text.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        for chunk in text.chunks(4) {
            let mut n = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                let v = ALPHABET.iter().position(|&a| a == c)? as u32;
                n |= v << (18 - 6 * i);
            }
            let bytes = n.to_be_bytes();
            let take = chunk.len() - 1;
            // Bits below the last whole byte must be zero, so every context
            // has exactly one spelling.
            if bytes[1 + take..].iter().any(|&b| b != 0) {
                return None;
            }
            out.extend_from_slice(&bytes[1..=take]);
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trips_every_length() {
            let data: Vec<u8> = (0..=255u8).collect();
            for len in 0..40 {
                let text = super::encode(&data[..len]);
                assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
                assert_eq!(super::decode(text.as_bytes()).as_deref(), Some(&data[..len]));
            }
        }

        #[test]
        fn rejects_foreign_characters_and_bad_lengths() {
            assert_eq!(super::decode(b"ab+c"), None);
            assert_eq!(super::decode(b"abcde"), None);
            assert_eq!(super::decode(b"AB"), None, "non-zero trailing bits");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Actor = Actor(0xa);
    const B: Actor = Actor(0xb);

    #[test]
    fn round_trips_and_empty_is_empty_text() {
        assert_eq!(Context::default().encode(), "");
        assert_eq!(Context::decode(b""), Ok(Context::default()));
        let ctx = Context::from_vector(VersionVector::from_entries([(A, 3), (B, 1)]))
            .with_dot(Dot::new(A, 9), false)
            .with_dot(Dot::new(B, 4), false);
        assert_eq!(Context::decode(ctx.encode().as_bytes()), Ok(ctx));
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [&b"!!!!"[..], b"AAAA", b"zzzzzzzz", b"AQ"] {
            assert!(Context::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn folding_raises_the_vector() {
        let ctx = Context::from_vector(VersionVector::from_entries([(A, 3)]));
        let folded = ctx.with_dot(Dot::new(A, 8), true);
        assert_eq!(folded.vector().get(A), 8);
        assert!(folded.dots().is_empty());
        let kept = ctx.with_dot(Dot::new(A, 8), false);
        assert!(!kept.covers(Dot::new(A, 5)));
        assert!(kept.covers(Dot::new(A, 8)));
    }

    #[test]
    fn clamping_drops_claims_beyond_what_was_seen() {
        let ctx = Context::from_vector(VersionVector::from_entries([(A, 50), (B, 2)]))
            .with_dot(Dot::new(A, 70), false)
            .with_dot(Dot::new(B, 4), false);
        let c = ctx.clamped_to(&VersionVector::from_entries([(A, 10), (B, 9)]));
        assert_eq!(c.vector().get(A), 10);
        assert_eq!(c.vector().get(B), 2);
        assert_eq!(c.dots(), &[Dot::new(B, 4)]);
        assert_eq!(ctx.clamped_to(&VersionVector::from_entries([(A, 99), (B, 99)])), ctx);
    }
}
