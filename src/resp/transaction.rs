//! MULTI / EXEC / DISCARD: a connection queues commands after MULTI and
//! EXEC runs them in order, replying with an array of their replies.
//!
//! This gives Redis's reply shape and ordering, not isolation: another
//! client's writes may interleave between the queued commands, since each
//! key is coordinated on its own (there is no cross-key lock in a Dynamo
//! store). As in Redis, a command refused while queueing (unknown, wrong
//! arity) makes EXEC discard the whole transaction.

use bytes::Bytes;

use crate::error::{Error, Result};

use super::args::Args;
use super::commands::{Cmd, dispatch};
use super::reply::Reply;
use super::session::Session;

/// Commands queued since MULTI.
#[derive(Default)]
pub struct Multi {
    queued: Vec<(Cmd, Vec<Bytes>)>,
    failed: bool,
}

fn in_multi(s: &mut Session, on: bool) {
    s.client.in_multi.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub(super) fn multi(s: &mut Session) -> Reply {
    if s.multi.is_some() {
        return Error::err("MULTI calls can not be nested").into();
    }
    s.multi = Some(Multi::default());
    in_multi(s, true);
    Reply::OK
}

pub(super) fn queue(s: &mut Session, cmd: Cmd, args: Vec<Bytes>) -> Reply {
    if let Some(m) = s.multi.as_mut() {
        m.queued.push((cmd, args));
    }
    Reply::simple("QUEUED")
}

/// Marks the open transaction, if any, as failed.
pub(super) fn fail(s: &mut Session) {
    if let Some(m) = s.multi.as_mut() {
        m.failed = true;
    }
}

pub(super) fn discard(s: &mut Session) -> Reply {
    if s.multi.take().is_none() {
        return Error::err("DISCARD without MULTI").into();
    }
    in_multi(s, false);
    Reply::OK
}

pub(super) async fn exec(s: &mut Session) -> Reply {
    let Some(m) = s.multi.take() else { return Error::err("EXEC without MULTI").into() };
    in_multi(s, false);
    if m.failed {
        return Error::Command("EXECABORT Transaction discarded because of previous errors.".into()).into();
    }
    let mut replies = Vec::with_capacity(m.queued.len());
    for (cmd, args) in m.queued {
        replies.push(dispatch(cmd, s, Args::new(args)).await.unwrap_or_else(Reply::from));
    }
    Reply::Array(replies)
}

/// The table's handler for commands the connection handles before dispatch.
#[allow(clippy::unused_async)]
pub(super) async fn not_dispatched(_: &Session, _: Args) -> Result<Reply> {
    Err(Error::err("this command is handled by the connection"))
}
