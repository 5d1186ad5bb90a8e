//! The context commands, which expose sibling versions: GETCTX, SETCTX,
//! DELCTX. A context is opaque printable text; see `version::Context`.
//! `R n` / `W n` override the read or write quorum for one request;
//! `PR n` / `PW n` ask that n of the replicas answering be the key's own
//! replicas, not fallbacks standing in for them (Riak's PR and PW).

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::mutation::{Expiry, parse_i64};
use crate::resp::args::Args;
use crate::resp::cmd::strings::ttl as ttl_of;
use crate::resp::reply::Reply;
use crate::resp::session::Session;
use crate::version::Context;

fn context(text: &[u8]) -> Result<Context> {
    Context::decode(text).map_err(|_| Error::InvalidContext)
}

/// The number after `R` or `W`.
fn quorum(args: &mut Args) -> Result<usize> {
    let n = parse_i64(&args.bytes()?).ok_or(Error::NotInteger)?;
    usize::try_from(n).map_err(|_| Error::NotInteger)
}

/// GETCTX key [R n] [PR n] → [context, [value, …]].
pub async fn getctx(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let (mut r, mut pr) = (None, None);
    while let Some(option) = args.keyword() {
        match option.as_str() {
            "R" if r.is_none() => r = Some(quorum(&mut args)?),
            "PR" if pr.is_none() => pr = Some(quorum(&mut args)?),
            _ => return Err(Error::Syntax),
        }
    }
    let v = s.coordinator().get_versions(&key, r, pr).await?;
    Ok(Reply::Array(vec![Reply::bulk(v.context.encode()), Reply::bulks(v.values)]))
}

/// SETCTX key context value [EX seconds | PX milliseconds] [W n] [PW n]
/// → new context.
pub async fn setctx(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let ctx = context(&args.bytes()?)?;
    let value: Bytes = args.bytes()?;
    let (mut ttl, mut w, mut pw) = (None, None, None);
    while let Some(option) = args.keyword() {
        let expiry = match option.as_str() {
            "EX" if ttl.is_none() => ttl_of(args.int()?, 1000, "setctx")?,
            "PX" if ttl.is_none() => ttl_of(args.int()?, 1, "setctx")?,
            "W" if w.is_none() => {
                w = Some(quorum(&mut args)?);
                continue;
            }
            "PW" if pw.is_none() => {
                pw = Some(quorum(&mut args)?);
                continue;
            }
            _ => return Err(Error::Syntax),
        };
        ttl = match expiry {
            Expiry::In(ms) => Some(ms),
            _ => return Err(Error::Syntax),
        };
    }
    let (next, _) = s.coordinator().write_versions(&key, ctx, Some(value), ttl, w, pw).await?;
    Ok(Reply::bulk(next.encode()))
}

/// DELCTX key context [W n] [PW n] → how many values it superseded.
pub async fn delctx(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let ctx = context(&args.bytes()?)?;
    let (mut w, mut pw) = (None, None);
    while let Some(option) = args.keyword() {
        match option.as_str() {
            "W" if w.is_none() => w = Some(quorum(&mut args)?),
            "PW" if pw.is_none() => pw = Some(quorum(&mut args)?),
            _ => return Err(Error::Syntax),
        }
    }
    let (_, superseded) = s.coordinator().write_versions(&key, ctx, None, None, w, pw).await?;
    Ok(Reply::Int(superseded as i64))
}
