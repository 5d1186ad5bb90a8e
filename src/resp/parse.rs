//! Decoding client requests: RESP multibulk arrays of bulk strings, and
//! inline commands (`PING\r\n` typed into a socket), as Redis accepts them.
//!
//! The decoder is incremental, like Redis's own: it consumes a request's
//! header and each complete argument as soon as it has arrived, remembering
//! how far it got, so a large request arriving in pieces is never re-parsed.
//! Arguments are split out of the read buffer without copying.
//!
//! Bounds: nothing is allocated from a declared length. The argument vector
//! starts at most 1024 entries and grows as arguments actually arrive, a
//! bulk longer than `proto-max-bulk-len` or a count beyond 2^31 is refused
//! at once, and header lines and inline requests are limited to 64 KiB.
//! Before a client has authenticated (when a password is required), a
//! request may have at most [`UNAUTH_MAX_ARGS`] arguments of at most
//! [`UNAUTH_MAX_BULK`] bytes each, Redis's limits since CVE-2021-32675.
//! Every error carries Redis's wording; the connection replies with it and
//! closes, as Redis does.

use super::args::ArgList;
use bytes::{Buf, Bytes, BytesMut};

/// Longest header line or inline request.
pub const MAX_LINE: usize = 64 * 1024;
/// Arguments preallocated for a request, whatever its declared count.
const MAX_PREALLOC: usize = 1024;
/// Most arguments in a request before authentication.
pub const UNAUTH_MAX_ARGS: i64 = 10;
/// Longest argument before authentication.
pub const UNAUTH_MAX_BULK: usize = 16 * 1024;

/// A malformed request; the text follows `-ERR Protocol error: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

/// A request in progress.
#[derive(Debug)]
struct Partial {
    args: ArgList,
    /// Arguments still to come.
    remaining: usize,
    /// Length of the bulk whose header has been read.
    bulk: Option<usize>,
    /// Bytes of the arguments received so far.
    bytes: usize,
}

/// The decoder of one connection.
#[derive(Debug)]
pub struct Decoder {
    max_bulk: usize,
    /// False while the client still has to authenticate: tighter limits.
    authenticated: bool,
    partial: Option<Partial>,
    /// Bytes consumed of the request being decoded.
    consumed: usize,
    /// Bytes the last decoded request took on the wire.
    last_len: usize,
}

/// Finds `\r\n` in the first [`MAX_LINE`] bytes; `Ok(None)` if not there yet.
fn line_end(buf: &[u8], what: &str) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() >= MAX_LINE => Err(ProtocolError::new(format!("too big {what}"))),
        None => Ok(None),
    }
}

fn parse_len(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Decoder {
    #[must_use]
    pub fn new(max_bulk: usize) -> Self {
        Self { max_bulk, authenticated: true, partial: None, consumed: 0, last_len: 0 }
    }

    /// Whether the client has authenticated (or needs not): until it has,
    /// requests are held to [`UNAUTH_MAX_ARGS`] and [`UNAUTH_MAX_BULK`].
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
    }

    /// Bytes held by a request in progress, outside the read buffer.
    #[must_use]
    pub fn pending_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.bytes + p.args.capacity() * std::mem::size_of::<Bytes>())
    }

    /// True while a request has been partly decoded.
    #[must_use]
    pub fn in_request(&self) -> bool {
        self.partial.is_some()
    }

    /// How many more bytes the bulk being read needs, if one is being read.
    #[must_use]
    pub fn bulk_wanted(&self, buffered: usize) -> Option<usize> {
        let len = self.partial.as_ref()?.bulk?;
        Some((len + 2).saturating_sub(buffered))
    }

    /// Bytes the request last returned by [`decode`](Self::decode) took on
    /// the wire.
    #[must_use]
    pub fn last_len(&self) -> usize {
        self.last_len
    }

    /// Decodes the next request from `buf`, consuming what it uses.
    /// `Ok(None)`: more bytes are needed. An empty vector is a request with
    /// no arguments (a blank line, `*0`), which Redis ignores.
    ///
    /// # Errors
    /// A malformed request; the connection should reply and close.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ArgList>, ProtocolError> {
        let before = buf.len();
        let decoded = self.decode_one(buf);
        self.consumed += before - buf.len();
        if let Ok(Some(_)) = decoded {
            self.last_len = std::mem::take(&mut self.consumed);
        }
        decoded
    }

    fn decode_one(&mut self, buf: &mut BytesMut) -> Result<Option<ArgList>, ProtocolError> {
        if self.partial.is_none() {
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => {
                    let Some(end) = line_end(buf, "mbulk count string")? else { return Ok(None) };
                    let count = parse_len(&buf[1..end])
                        .filter(|&n| n <= i64::from(i32::MAX))
                        .ok_or_else(|| ProtocolError::new("invalid multibulk length"))?;
                    if count > UNAUTH_MAX_ARGS && !self.authenticated {
                        return Err(ProtocolError::new("unauthenticated multibulk length"));
                    }
                    buf.advance(end + 2);
                    if count <= 0 {
                        return Ok(Some(ArgList::default()));
                    }
                    let remaining = count as usize;
                    self.partial = Some(Partial {
                        args: ArgList::with_count(remaining, MAX_PREALLOC),
                        remaining,
                        bulk: None,
                        bytes: 0,
                    });
                }
                Some(_) => return inline(buf),
            }
        }
        let Some(p) = self.partial.as_mut() else { return Ok(None) };
        while p.remaining > 0 {
            let len = match p.bulk {
                Some(len) => len,
                None => {
                    let Some(&first) = buf.first() else { return Ok(None) };
                    if first != b'$' {
                        return Err(ProtocolError::new(format!("expected '$', got '{}'", char::from(first))));
                    }
                    let Some(end) = line_end(buf, "bulk count string")? else { return Ok(None) };
                    let len = parse_len(&buf[1..end])
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n <= self.max_bulk)
                        .ok_or_else(|| ProtocolError::new("invalid bulk length"))?;
                    if len > UNAUTH_MAX_BULK && !self.authenticated {
                        return Err(ProtocolError::new("unauthenticated bulk length"));
                    }
                    buf.advance(end + 2);
                    p.bulk = Some(len);
                    len
                }
            };
            if buf.len() < len + 2 {
                return Ok(None);
            }
            if &buf[len..len + 2] != b"\r\n" {
                return Err(ProtocolError::new("expected CRLF after bulk string"));
            }
            let arg = buf.split_to(len).freeze();
            buf.advance(2);
            p.bytes += len;
            p.args.push(arg);
            p.bulk = None;
            p.remaining -= 1;
        }
        Ok(self.partial.take().map(|p| p.args))
    }
}

/// Decodes one inline request: words split by spaces, with Redis's quoting
/// ("double" with escapes, 'single').
fn inline(buf: &mut BytesMut) -> Result<Option<ArgList>, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_LINE { Err(ProtocolError::new("too big inline request")) } else { Ok(None) };
    };
    let line = buf.split_to(nl + 1);
    let text = line.strip_suffix(b"\n").unwrap_or(&line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    split_args(text).map(|args| Some(args.into())).ok_or_else(|| ProtocolError::new("unbalanced quotes in request"))
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Redis's `sdssplitargs`: `None` on unbalanced quotes.
#[must_use]
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            let c = line.get(i).copied();
            if in_dq {
                match c? {
                    b'\\'
                        if line.get(i + 1) == Some(&b'x')
                            && line.get(i + 2).and_then(|&b| hex(b)).is_some()
                            && line.get(i + 3).and_then(|&b| hex(b)).is_some() =>
                    {
                        cur.push(hex(line[i + 2])? * 16 + hex(line[i + 3])?);
                        i += 3;
                    }
                    b'\\' if i + 1 < line.len() => {
                        i += 1;
                        cur.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                    b'"' => {
                        // A closing quote must be followed by a space or the end.
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    other => cur.push(other),
                }
            } else if in_sq {
                match c? {
                    b'\\' if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        cur.push(b'\'');
                    }
                    b'\'' => {
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    other => cur.push(other),
                }
            } else {
                match c {
                    None => break,
                    Some(b) if b.is_ascii_whitespace() => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(b) => cur.push(b),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(cur));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_all(input: &[u8], chunks: &[usize]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut d = Decoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        for &c in chunks.iter().chain(std::iter::once(&input.len())) {
            let upto = c.min(input.len()).max(fed);
            buf.extend_from_slice(&input[fed..upto]);
            fed = upto;
            while let Some(req) = d.decode(&mut buf)? {
                out.push(req.to_vec());
            }
        }
        Ok(out)
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    fn encode(req: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", req.len()).into_bytes();
        for a in req {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn multibulk_and_inline_and_pipelines() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nPING\r\n  echo \"a b\\x41\" 'c\\'d'\n\r\n*0\r\n";
        let got = decode_all(input, &[]).expect("valid");
        assert_eq!(got, vec![args(&["SET", "k", ""]), args(&["PING"]), args(&["echo", "a bA", "c'd"]), vec![], vec![]]);
    }

    #[test]
    fn requests_know_their_length_on_the_wire() {
        let mut d = Decoder::new(1 << 20);
        let mut buf = BytesMut::from(&b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\nCLIENT INFO\r\n*1\r\n$4\r\nPI"[..]);
        assert!(d.decode(&mut buf).expect("valid").is_some());
        assert_eq!(d.last_len(), 26);
        assert!(d.decode(&mut buf).expect("valid").is_some());
        assert_eq!(d.last_len(), 13);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"NG\r\n");
        assert!(d.decode(&mut buf).expect("valid").is_some());
        assert_eq!(d.last_len(), 14, "a request split over reads counts whole");
    }

    #[test]
    fn redis_protocol_errors() {
        let err = |input: &[u8]| decode_all(input, &[]).expect_err("invalid").0;
        assert_eq!(err(b"*2\r\n+foo\r\n"), "expected '$', got '+'");
        assert_eq!(err(b"*x\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*99999999999\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*1\r\n$-5\r\n"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$2000000\r\n"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$1\r\nab\r\n"), "expected CRLF after bulk string");
        assert_eq!(err(b"SET \"k v\n"), "unbalanced quotes in request");
        assert_eq!(err(b"GET \"k\"x\n"), "unbalanced quotes in request");
        assert_eq!(err(&[b'a'; MAX_LINE + 1]), "too big inline request");
        let mut long = b"*1\r\n$".to_vec();
        long.extend(std::iter::repeat_n(b'1', MAX_LINE));
        assert_eq!(err(&long), "too big bulk count string");
    }

    #[test]
    fn before_authentication_requests_are_small() {
        let mut d = Decoder::new(1 << 20);
        d.set_authenticated(false);
        let mut ten = BytesMut::from(&encode(&vec![b"a".to_vec(); 10])[..]);
        assert_eq!(d.decode(&mut ten).map(|r| r.map(|a| a.len())), Ok(Some(10)));
        let mut big = BytesMut::from(&encode(&[b"x".repeat(UNAUTH_MAX_BULK)])[..]);
        assert_eq!(d.decode(&mut big).map(|r| r.map(|a| a.len())), Ok(Some(1)));
        let mut eleven = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(d.decode(&mut eleven), Err(ProtocolError::new("unauthenticated multibulk length")));
        let mut d = Decoder::new(1 << 20);
        d.set_authenticated(false);
        let mut bigger = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        assert_eq!(d.decode(&mut bigger), Err(ProtocolError::new("unauthenticated bulk length")));
        let mut d = Decoder::new(1 << 20);
        d.set_authenticated(false);
        let mut too_long = BytesMut::from(&b"*1\r\n$2000000\r\n"[..]);
        assert_eq!(d.decode(&mut too_long), Err(ProtocolError::new("invalid bulk length")), "the general limit first");
    }

    #[test]
    fn huge_declarations_allocate_nothing_up_front() {
        let mut d = Decoder::new(512 << 20);
        let mut buf = BytesMut::from(&b"*2147483647\r\n$536870912\r\nabc"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(d.pending_bytes() < 64 * 1024, "{}", d.pending_bytes());
        assert_eq!(d.bulk_wanted(buf.len()), Some(536_870_914 - 3));
    }

    proptest! {
        #[test]
        fn every_split_decodes_the_same(req in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..6), inline_tail in any::<bool>()) {
            let mut input = encode(&req);
            input.extend_from_slice(&encode(&req));
            if inline_tail {
                input.extend_from_slice(b"PING a \"b c\"\r\n");
            }
            let whole = decode_all(&input, &[]).expect("valid");
            for cut in 0..=input.len() {
                prop_assert_eq!(&decode_all(&input, &[cut]).expect("valid"), &whole);
            }
            let every_byte: Vec<usize> = (0..=input.len()).collect();
            prop_assert_eq!(&decode_all(&input, &every_byte).expect("valid"), &whole);
            prop_assert_eq!(whole.len(), 2 + usize::from(inline_tail));
            prop_assert_eq!(&whole[0], &req.iter().map(|a| Bytes::from(a.clone())).collect::<Vec<_>>());
        }

        #[test]
        fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..300), cut in any::<prop::sample::Index>()) {
            let _ = decode_all(&input, &[cut.index(input.len() + 1)]);
        }

        #[test]
        fn resp_like_noise_never_panics(parts in prop::collection::vec(prop_oneof![
            Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()), Just(b"-1".to_vec()),
            Just(b"3".to_vec()), Just(b"\"".to_vec()), Just(b"'".to_vec()), Just(b"\\x".to_vec()),
            prop::collection::vec(any::<u8>(), 0..4)], 0..40)) {
            let input: Vec<u8> = parts.concat();
            let _ = decode_all(&input, &[input.len() / 2]);
        }
    }
}
