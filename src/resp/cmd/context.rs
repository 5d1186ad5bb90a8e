//! The context commands, which expose sibling versions: GETCTX, SETCTX,
//! DELCTX. A context is opaque printable text; see `version::Context`.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::resp::args::Args;
use crate::resp::reply::Reply;
use crate::resp::session::Session;
use crate::version::Context;

fn context(text: &[u8]) -> Result<Context> {
    Context::decode(text).map_err(|_| Error::InvalidContext)
}

/// GETCTX key → [context, [value, …]].
pub async fn getctx(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    args.finish()?;
    let v = s.coordinator().get_versions(&key).await?;
    Ok(Reply::Array(vec![Reply::bulk(v.context.encode()), Reply::bulks(v.values)]))
}

/// SETCTX key context value [EX seconds | PX milliseconds] → new context.
pub async fn setctx(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let ctx = context(&args.bytes()?)?;
    let value: Bytes = args.bytes()?;
    let mut ttl = None;
    while let Some(option) = args.keyword() {
        let unit = match option.as_str() {
            "EX" if ttl.is_none() => 1000,
            "PX" if ttl.is_none() => 1,
            _ => return Err(Error::Syntax),
        };
        let invalid = || Error::InvalidExpire("setctx".into());
        let ms = args.int()?.checked_mul(unit).filter(|&ms| ms > 0).ok_or_else(invalid)?;
        ttl = Some(ms as u64);
    }
    let (next, _) = s.coordinator().write_versions(&key, ctx, Some(value), ttl).await?;
    Ok(Reply::bulk(next.encode()))
}

/// DELCTX key context → how many values it superseded.
pub async fn delctx(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let ctx = context(&args.bytes()?)?;
    args.finish()?;
    let (_, superseded) = s.coordinator().write_versions(&key, ctx, None, None).await?;
    Ok(Reply::Int(superseded as i64))
}
