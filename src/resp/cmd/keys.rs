//! Keyspace commands: DEL, EXISTS, the EXPIRE family, TTL, PERSIST, TYPE,
//! SCAN and KEYS.

use bytes::Bytes;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::mutation::{ExpireCondition, Expiry, Mutation, Outcome};
use crate::resp::args::Args;
use crate::resp::reply::Reply;
use crate::resp::session::Session;

fn int(o: Outcome) -> i64 {
    match o {
        Outcome::Int(n) => n,
        _ => 0,
    }
}

/// DEL and UNLINK: the number of keys that existed.
pub async fn del(s: &Session, args: Args) -> Result<Reply> {
    let writes = args.rest().into_iter().map(|k| (k, Mutation::Delete)).collect();
    let mut removed = 0;
    for r in s.coordinator().write_many(writes).await {
        removed += int(r?);
    }
    Ok(Reply::Int(removed))
}

/// EXISTS: how many of the keys exist (a key named twice counts twice).
pub async fn exists(s: &Session, args: Args) -> Result<Reply> {
    let keys = args.rest();
    let mut n = 0;
    for v in s.coordinator().get_many(&keys).await {
        n += i64::from(v?.is_some());
    }
    Ok(Reply::Int(n))
}

/// The EXPIRE family: `unit_ms` per unit, `absolute` for the *AT forms.
/// A time in the past deletes the key.
async fn expire_generic(s: &Session, mut args: Args, unit_ms: i64, absolute: bool, command: &str) -> Result<Reply> {
    let key = args.bytes()?;
    let n = args.int()?;
    let mut c = ExpireCondition::default();
    while let Some(option) = args.keyword() {
        match option.as_str() {
            "NX" => c.nx = true,
            "XX" => c.xx = true,
            "GT" => c.gt = true,
            "LT" => c.lt = true,
            _ => return Err(Error::err(format!("Unsupported option {option}"))),
        }
    }
    if c.nx && (c.xx || c.gt || c.lt) {
        return Err(Error::err("NX and XX, GT or LT options at the same time are not compatible"));
    }
    if c.gt && c.lt {
        return Err(Error::err("GT and LT options at the same time are not compatible"));
    }
    let invalid = || Error::InvalidExpire(command.into());
    let mut at = n.checked_mul(unit_ms).ok_or_else(invalid)?;
    if !absolute {
        at = at.checked_add(now_ms() as i64).ok_or_else(invalid)?;
    }
    let m = Mutation::Expire { expiry: Expiry::At(at.max(0) as u64), condition: c };
    Ok(Reply::Int(int(s.coordinator().write(&key, m).await?)))
}

pub async fn expire(s: &Session, args: Args) -> Result<Reply> {
    expire_generic(s, args, 1000, false, "expire").await
}

pub async fn pexpire(s: &Session, args: Args) -> Result<Reply> {
    expire_generic(s, args, 1, false, "pexpire").await
}

pub async fn expireat(s: &Session, args: Args) -> Result<Reply> {
    expire_generic(s, args, 1000, true, "expireat").await
}

pub async fn pexpireat(s: &Session, args: Args) -> Result<Reply> {
    expire_generic(s, args, 1, true, "pexpireat").await
}

/// TTL and PTTL: -2 for a missing key, -1 without expiry.
async fn ttl_generic(s: &Session, mut args: Args, millis: bool) -> Result<Reply> {
    let key = args.bytes()?;
    let Some(v) = s.coordinator().get(&key).await? else { return Ok(Reply::Int(-2)) };
    let Some(at) = v.expires_at else { return Ok(Reply::Int(-1)) };
    let left = at.saturating_sub(now_ms()) as i64;
    Ok(Reply::Int(if millis { left } else { (left + 500) / 1000 }))
}

pub async fn ttl(s: &Session, args: Args) -> Result<Reply> {
    ttl_generic(s, args, false).await
}

pub async fn pttl(s: &Session, args: Args) -> Result<Reply> {
    ttl_generic(s, args, true).await
}

pub async fn persist(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    Ok(Reply::Int(int(s.coordinator().write(&key, Mutation::Persist).await?)))
}

pub async fn type_of(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let exists = s.coordinator().get(&key).await?.is_some();
    Ok(Reply::simple(if exists { "string" } else { "none" }))
}

/// A SCAN cursor as Redis reads it (C's `strtoul`): digits with an
/// optional sign, a minus wrapping around (`-1` is the last position); the
/// empty string is 0.
fn parse_cursor(text: &[u8]) -> Option<u64> {
    let (negative, digits) = match text.split_first() {
        None => return Some(0),
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        Some(_) => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if negative { n.wrapping_neg() } else { n })
}

/// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]. The cursor is a
/// position on the ring; see the coordinator's `scan`.
pub async fn scan(s: &Session, mut args: Args) -> Result<Reply> {
    let cursor = parse_cursor(&args.bytes()?).ok_or_else(|| Error::err("invalid cursor"))?;
    let mut pattern: Option<Bytes> = None;
    let mut count = 10usize;
    let mut only_strings = true;
    while let Some(option) = args.keyword() {
        match option.as_str() {
            "MATCH" => pattern = Some(args.bytes()?),
            "COUNT" => {
                count = usize::try_from(args.int()?).ok().filter(|&c| c >= 1).ok_or(Error::Syntax)?;
            }
            "TYPE" => only_strings = crate::resp::commands::is(&args.bytes()?, "string"),
            _ => return Err(Error::Syntax),
        }
    }
    let (next, keys) =
        if only_strings { s.coordinator().scan(cursor, count, pattern.as_ref()).await? } else { (0, Vec::new()) };
    Ok(Reply::Array(vec![Reply::bulk(next.to_string()), Reply::bulks(keys)]))
}

pub async fn keys(s: &Session, mut args: Args) -> Result<Reply> {
    let pattern = args.bytes()?;
    Ok(Reply::bulks(s.coordinator().keys(&pattern).await?))
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursors_read_as_strtoul_reads_them() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+5"), Some(5));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b"18446744073709551616"[..], b"abc", b"1.5", b" 1", b"-", b"1 "] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
