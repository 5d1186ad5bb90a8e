//! MULTI / EXEC / DISCARD: a connection queues commands after MULTI and
//! EXEC runs them in order, replying with an array of their replies.
//!
//! This gives Redis's reply shape and ordering, not isolation: another
//! client's writes may interleave between the queued commands, since each
//! key is coordinated on its own (there is no cross-key lock in a Dynamo
//! store). As in Redis, a command refused while queueing (unknown, wrong
//! arity) makes EXEC discard the whole transaction.

use std::time::Instant;

use crate::error::{Error, Result};

use super::args::Args;
use super::commands::{Ready, dispatch, record};
use super::reply::Reply;
use super::session::Session;

/// Commands queued since MULTI.
#[derive(Default)]
pub struct Multi {
    queued: Vec<Ready>,
    failed: bool,
}

/// Shows in CLIENT LIST how many commands are queued (`None`: not in MULTI).
pub(super) fn set_queued(s: &Session, queued: Option<usize>) {
    let n = queued.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    s.client.multi.store(n, std::sync::atomic::Ordering::Relaxed);
}

pub(super) fn multi(s: &mut Session) -> Reply {
    if s.multi.is_some() {
        return Error::err("MULTI calls can not be nested").into();
    }
    s.multi = Some(Multi::default());
    set_queued(s, Some(0));
    Reply::OK
}

pub(super) fn queue(s: &mut Session, ready: Ready) -> Reply {
    if let Some(m) = s.multi.as_mut() {
        m.queued.push(ready);
        let n = m.queued.len();
        set_queued(s, Some(n));
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
    set_queued(s, None);
    Reply::OK
}

pub(super) async fn exec(s: &mut Session) -> Reply {
    let Some(m) = s.multi.take() else { return Error::err("EXEC without MULTI").into() };
    set_queued(s, None);
    if m.failed {
        return Error::Command("EXECABORT Transaction discarded because of previous errors.".into()).into();
    }
    let mut replies = Vec::with_capacity(m.queued.len());
    for ready in m.queued {
        let started = Instant::now();
        let reply = dispatch(ready.spec.cmd, s, Args::new(ready.args)).await.unwrap_or_else(Reply::from);
        record(s, ready.slot, Some(started), &reply);
        replies.push(reply);
    }
    Reply::Array(replies)
}

/// The table's handler for commands the connection handles before dispatch.
#[allow(clippy::unused_async)]
pub(super) async fn not_dispatched(_: &Session, _: Args) -> Result<Reply> {
    Err(Error::err("this command is handled by the connection"))
}
