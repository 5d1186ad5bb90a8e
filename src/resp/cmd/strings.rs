//! String commands: GET, SET and its relatives, MGET/MSET, counters, APPEND.
//!
//! Each handler parses its arguments into a [`Mutation`] (or a read) and
//! lets the coordinator apply it; MGET, MSET and MSETNX fan out per key.

use bytes::Bytes;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::mutation::{Condition, Expiry, Mutation, Outcome};
use crate::resp::args::Args;
use crate::resp::reply::Reply;
use crate::resp::session::Session;

/// A relative time to live of `n` units of `unit_ms`, as Redis validates
/// it: positive, and not overflowing when added to the clock.
pub fn ttl(n: i64, unit_ms: i64, command: &str) -> Result<Expiry> {
    let invalid = || Error::InvalidExpire(command.into());
    let ms = n.checked_mul(unit_ms).filter(|&ms| ms > 0).ok_or_else(invalid)?;
    (now_ms() as i64).checked_add(ms).ok_or_else(invalid)?;
    Ok(Expiry::In(ms as u64))
}

/// An absolute expiry at `n` units of `unit_ms` since the epoch.
pub fn at(n: i64, unit_ms: i64, command: &str) -> Result<Expiry> {
    let ms = n.checked_mul(unit_ms).filter(|&ms| ms > 0).ok_or_else(|| Error::InvalidExpire(command.into()))?;
    Ok(Expiry::At(ms as u64))
}

/// The expiry options of SET and GETEX, parsed as Redis does: an option may
/// repeat (the last value wins) but two different kinds conflict.
struct ExpiryOptions {
    command: &'static str,
    kind: Option<&'static str>,
    expiry: Option<Expiry>,
}

impl ExpiryOptions {
    fn new(command: &'static str) -> Self {
        Self { command, kind: None, expiry: None }
    }

    /// Takes `option` (and its argument) if it is an expiry option; false if
    /// it is not one. Two kinds of option conflict (a syntax error) before
    /// the argument is looked at.
    fn take(&mut self, option: &str, args: &mut Args) -> Result<bool> {
        let kind = match option {
            "EX" => "EX",
            "PX" => "PX",
            "EXAT" => "EXAT",
            "PXAT" => "PXAT",
            "KEEPTTL" if self.command == "set" => "KEEPTTL",
            "PERSIST" if self.command == "getex" => "PERSIST",
            _ => return Ok(false),
        };
        if self.kind.is_some_and(|k| k != kind) {
            return Err(Error::Syntax);
        }
        self.kind = Some(kind);
        self.expiry = Some(match kind {
            "EX" => ttl(args.int()?, 1000, self.command)?,
            "PX" => ttl(args.int()?, 1, self.command)?,
            "EXAT" => at(args.int()?, 1000, self.command)?,
            "PXAT" => at(args.int()?, 1, self.command)?,
            "KEEPTTL" => Expiry::Keep,
            _ => Expiry::Clear,
        });
        Ok(true)
    }
}

fn outcome(o: Outcome) -> Reply {
    match o {
        Outcome::Ok => Reply::OK,
        Outcome::Nil => Reply::Nil,
        Outcome::Value(v) => Reply::opt_bulk(v),
        Outcome::Int(n) => Reply::Int(n),
        Outcome::Float(f) => Reply::Bulk(f),
    }
}

async fn write(s: &Session, key: &Bytes, m: Mutation) -> Result<Reply> {
    s.coordinator().write(key, m).await.map(outcome)
}

fn set_of(value: Bytes, expiry: Expiry, condition: Condition, get: bool) -> Mutation {
    Mutation::Set { value, expiry, condition, get }
}

pub async fn get(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    Ok(Reply::opt_bulk(s.coordinator().get(&key).await?.map(|v| v.data)))
}

pub async fn set(s: &Session, mut args: Args) -> Result<Reply> {
    let (key, value) = (args.bytes()?, args.bytes()?);
    let mut expiry = ExpiryOptions::new("set");
    let mut condition = Condition::Always;
    let mut get = false;
    while let Some(option) = args.keyword() {
        match option.as_str() {
            "NX" if condition != Condition::IfPresent => condition = Condition::IfAbsent,
            "XX" if condition != Condition::IfAbsent => condition = Condition::IfPresent,
            "GET" => get = true,
            other if expiry.take(other, &mut args)? => {}
            _ => return Err(Error::Syntax),
        }
    }
    write(s, &key, set_of(value, expiry.expiry.unwrap_or(Expiry::Clear), condition, get)).await
}

pub async fn setnx(s: &Session, mut args: Args) -> Result<Reply> {
    let (key, value) = (args.bytes()?, args.bytes()?);
    let done = s.coordinator().write(&key, set_of(value, Expiry::Clear, Condition::IfAbsent, false)).await?;
    Ok(Reply::Int(i64::from(done == Outcome::Ok)))
}

async fn set_with_ttl(s: &Session, mut args: Args, unit_ms: i64, command: &str) -> Result<Reply> {
    let key = args.bytes()?;
    let expiry = ttl(args.int()?, unit_ms, command)?;
    let value = args.bytes()?;
    write(s, &key, set_of(value, expiry, Condition::Always, false)).await
}

pub async fn setex(s: &Session, args: Args) -> Result<Reply> {
    set_with_ttl(s, args, 1000, "setex").await
}

pub async fn psetex(s: &Session, args: Args) -> Result<Reply> {
    set_with_ttl(s, args, 1, "psetex").await
}

pub async fn getset(s: &Session, mut args: Args) -> Result<Reply> {
    let (key, value) = (args.bytes()?, args.bytes()?);
    write(s, &key, set_of(value, Expiry::Clear, Condition::Always, true)).await
}

pub async fn getdel(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    write(s, &key, Mutation::GetDel).await
}

/// GETEX key [EX|PX|EXAT|PXAT n | PERSIST]. As in Redis, a bad time is
/// only an error for a key that exists: a missing key answers nil first.
pub async fn getex(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let mut expiry = ExpiryOptions::new("getex");
    let mut bad_time = None;
    while let Some(option) = args.keyword() {
        match expiry.take(&option, &mut args) {
            Ok(true) => {}
            Ok(false) => return Err(Error::Syntax),
            Err(e @ (Error::NotInteger | Error::InvalidExpire(_))) => bad_time = Some(e),
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = bad_time {
        return match s.coordinator().get(&key).await? {
            None => Ok(Reply::Nil),
            Some(_) => Err(e),
        };
    }
    match expiry.expiry {
        None => Ok(Reply::opt_bulk(s.coordinator().get(&key).await?.map(|v| v.data))),
        Some(expiry) => write(s, &key, Mutation::GetEx(expiry)).await,
    }
}

pub async fn mget(s: &Session, args: Args) -> Result<Reply> {
    let keys = args.rest();
    let values = s.coordinator().get_many(&keys).await;
    let replies = values.into_iter().map(|v| v.map(|v| Reply::opt_bulk(v.map(|v| v.data))));
    Ok(Reply::Array(replies.collect::<Result<_>>()?))
}

/// Pairs of MSET's arguments; an odd count is an arity error, as in Redis.
fn pairs(args: Args, command: &str) -> Result<Vec<(Bytes, Bytes)>> {
    let items = args.rest();
    if items.len() % 2 != 0 {
        return Err(Error::WrongArity(command.into()));
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

pub async fn mset(s: &Session, args: Args) -> Result<Reply> {
    let writes = pairs(args, "mset")?
        .into_iter()
        .map(|(k, v)| (k, set_of(v, Expiry::Clear, Condition::Always, false)))
        .collect();
    for r in s.coordinator().write_many(writes).await {
        r?;
    }
    Ok(Reply::OK)
}

/// MSETNX: sets every key only if none exists. A key named twice takes its
/// last value, as in Redis. Each key is still written on its own, so a
/// concurrent writer of one of the keys can make it set only some of them;
/// the reply is 1 only if all were set.
pub async fn msetnx(s: &Session, args: Args) -> Result<Reply> {
    let mut pairs = pairs(args, "msetnx")?;
    let mut seen = std::collections::HashSet::new();
    pairs.reverse();
    pairs.retain(|(k, _)| seen.insert(k.clone()));
    pairs.reverse();
    let keys: Vec<Bytes> = pairs.iter().map(|(k, _)| k.clone()).collect();
    for v in s.coordinator().get_many(&keys).await {
        if v?.is_some() {
            return Ok(Reply::Int(0));
        }
    }
    let writes = pairs.into_iter().map(|(k, v)| (k, set_of(v, Expiry::Clear, Condition::IfAbsent, false))).collect();
    let mut all = true;
    for r in s.coordinator().write_many(writes).await {
        all &= r? == Outcome::Ok;
    }
    Ok(Reply::Int(i64::from(all)))
}

pub async fn strlen(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let len = s.coordinator().get(&key).await?.map_or(0, |v| v.data.len());
    Ok(Reply::Int(len as i64))
}

pub async fn append(s: &Session, mut args: Args) -> Result<Reply> {
    let (key, suffix) = (args.bytes()?, args.bytes()?);
    write(s, &key, Mutation::Append(suffix)).await
}

async fn incr_by(s: &Session, key: Bytes, by: i64) -> Result<Reply> {
    write(s, &key, Mutation::IncrBy(by)).await
}

pub async fn incr(s: &Session, mut args: Args) -> Result<Reply> {
    incr_by(s, args.bytes()?, 1).await
}

pub async fn decr(s: &Session, mut args: Args) -> Result<Reply> {
    incr_by(s, args.bytes()?, -1).await
}

pub async fn incrby(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    incr_by(s, key, args.int()?).await
}

pub async fn decrby(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let by = args.int()?.checked_neg().ok_or_else(|| Error::err("decrement would overflow"))?;
    incr_by(s, key, by).await
}

pub async fn incrbyfloat(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let by = args.float()?;
    write(s, &key, Mutation::IncrByFloat(by)).await
}
