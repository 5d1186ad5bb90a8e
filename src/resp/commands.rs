//! The command table and the path of one command: look the name up, check
//! authentication and arity, queue it inside MULTI or run its handler.
//!
//! The table is the single source of each command's name, arity, flags and
//! key positions: dispatch, arity errors and the COMMAND reply all read it.
//! Handlers live in `cmd/`, one file per command family; each takes the
//! session and the arguments after the name and returns a reply.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use crate::error::{Error, Result};

use super::args::Args;
use super::cmd::{connection, context, keys, server, strings};
use super::reply::Reply;
use super::session::Session;
use super::transaction;

/// One row of the command table, as COMMAND INFO reports it.
#[derive(Debug)]
pub struct Spec {
    pub cmd: Cmd,
    pub name: &'static str,
    /// Exact argument count including the name, or at least -arity.
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// ACL category of the family (`@string`, `@keyspace`…).
    pub category: &'static str,
}

impl Spec {
    fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 { argc == arity } else { argc >= -arity }
    }

    #[must_use]
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }
}

macro_rules! commands {
    ($( $cmd:ident $name:literal $arity:literal [$($flag:literal),*] $first:literal $last:literal $step:literal $cat:literal => $handler:path; )*) => {
        /// Every command shoal knows.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Cmd { $($cmd),* }

        /// The command table, in COMMAND's order.
        pub static TABLE: &[Spec] = &[$(
            Spec { cmd: Cmd::$cmd, name: $name, arity: $arity, flags: &[$($flag),*],
                   first_key: $first, last_key: $last, step: $step, category: $cat },
        )*];

        /// Runs a command's handler. MULTI, EXEC, DISCARD and QUIT are
        /// handled before dispatch and never reach it.
        pub(super) async fn dispatch(cmd: Cmd, s: &mut Session, args: Args) -> Result<Reply> {
            match cmd {
                $(Cmd::$cmd => $handler(s, args).await,)*
            }
        }
    };
}

commands! {
    // connection
    Ping "ping" -1 ["fast"] 0 0 0 "@connection" => connection::ping;
    Echo "echo" 2 ["fast"] 0 0 0 "@connection" => connection::echo;
    Quit "quit" -1 ["fast", "no-auth"] 0 0 0 "@connection" => transaction::not_dispatched;
    Hello "hello" -1 ["fast", "no-auth"] 0 0 0 "@connection" => connection::hello;
    Auth "auth" -2 ["fast", "no-auth"] 0 0 0 "@connection" => connection::auth;
    Select "select" 2 ["fast"] 0 0 0 "@connection" => connection::select;
    Client "client" -2 ["admin"] 0 0 0 "@connection" => connection::client;
    // server
    Command "command" -1 ["loading", "stale"] 0 0 0 "@connection" => server::command;
    Info "info" -1 ["loading", "stale"] 0 0 0 "@dangerous" => server::info;
    Config "config" -2 ["admin"] 0 0 0 "@dangerous" => server::config;
    Dbsize "dbsize" 1 ["readonly", "fast"] 0 0 0 "@keyspace" => server::dbsize;
    Flushdb "flushdb" -1 ["write"] 0 0 0 "@keyspace" => server::flushall;
    Flushall "flushall" -1 ["write"] 0 0 0 "@keyspace" => server::flushall;
    // transactions
    Multi "multi" 1 ["fast"] 0 0 0 "@transaction" => transaction::not_dispatched;
    Exec "exec" 1 ["slow"] 0 0 0 "@transaction" => transaction::not_dispatched;
    Discard "discard" 1 ["fast"] 0 0 0 "@transaction" => transaction::not_dispatched;
    // strings
    Get "get" 2 ["readonly", "fast"] 1 1 1 "@string" => strings::get;
    Set "set" -3 ["write", "denyoom"] 1 1 1 "@string" => strings::set;
    Setnx "setnx" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => strings::setnx;
    Setex "setex" 4 ["write", "denyoom"] 1 1 1 "@string" => strings::setex;
    Psetex "psetex" 4 ["write", "denyoom"] 1 1 1 "@string" => strings::psetex;
    Getset "getset" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => strings::getset;
    Getdel "getdel" 2 ["write", "fast"] 1 1 1 "@string" => strings::getdel;
    Getex "getex" -2 ["write", "fast"] 1 1 1 "@string" => strings::getex;
    Mget "mget" -2 ["readonly", "fast"] 1 -1 1 "@string" => strings::mget;
    Mset "mset" -3 ["write", "denyoom"] 1 -1 2 "@string" => strings::mset;
    Msetnx "msetnx" -3 ["write", "denyoom"] 1 -1 2 "@string" => strings::msetnx;
    Strlen "strlen" 2 ["readonly", "fast"] 1 1 1 "@string" => strings::strlen;
    Append "append" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => strings::append;
    Incr "incr" 2 ["write", "denyoom", "fast"] 1 1 1 "@string" => strings::incr;
    Decr "decr" 2 ["write", "denyoom", "fast"] 1 1 1 "@string" => strings::decr;
    Incrby "incrby" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => strings::incrby;
    Decrby "decrby" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => strings::decrby;
    Incrbyfloat "incrbyfloat" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => strings::incrbyfloat;
    // keys
    Del "del" -2 ["write"] 1 -1 1 "@keyspace" => keys::del;
    Unlink "unlink" -2 ["write", "fast"] 1 -1 1 "@keyspace" => keys::del;
    Exists "exists" -2 ["readonly", "fast"] 1 -1 1 "@keyspace" => keys::exists;
    Expire "expire" -3 ["write", "fast"] 1 1 1 "@keyspace" => keys::expire;
    Pexpire "pexpire" -3 ["write", "fast"] 1 1 1 "@keyspace" => keys::pexpire;
    Expireat "expireat" -3 ["write", "fast"] 1 1 1 "@keyspace" => keys::expireat;
    Pexpireat "pexpireat" -3 ["write", "fast"] 1 1 1 "@keyspace" => keys::pexpireat;
    Ttl "ttl" 2 ["readonly", "fast"] 1 1 1 "@keyspace" => keys::ttl;
    Pttl "pttl" 2 ["readonly", "fast"] 1 1 1 "@keyspace" => keys::pttl;
    Persist "persist" 2 ["write", "fast"] 1 1 1 "@keyspace" => keys::persist;
    Type "type" 2 ["readonly", "fast"] 1 1 1 "@keyspace" => keys::type_of;
    Scan "scan" -2 ["readonly"] 0 0 0 "@keyspace" => keys::scan;
    Keys "keys" 2 ["readonly"] 0 0 0 "@keyspace" => keys::keys;
    // versions
    Getctx "getctx" -2 ["readonly", "fast"] 1 1 1 "@string" => context::getctx;
    Setctx "setctx" -4 ["write", "denyoom"] 1 1 1 "@string" => context::setctx;
    Delctx "delctx" -3 ["write", "fast"] 1 1 1 "@string" => context::delctx;
}

static BY_NAME: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| TABLE.iter().enumerate().map(|(i, s)| (s.name, i)).collect());

/// Finds a command by name, ignoring case.
#[must_use]
pub fn lookup(name: &[u8]) -> Option<(usize, &'static Spec)> {
    let mut lower = [0u8; 32];
    let lower = lower.get_mut(..name.len())?;
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    let i = *BY_NAME.get(std::str::from_utf8(lower).ok()?)?;
    Some((i, &TABLE[i]))
}

/// True if `arg` equals `word`, ignoring ASCII case.
#[must_use]
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Redis's reply to an unknown command: the name and the first arguments,
/// each quoted, within about 128 characters.
fn unknown_command(name: &[u8], args: &[Bytes]) -> Error {
    let mut shown = String::new();
    for a in args {
        if shown.len() >= 128 {
            break;
        }
        let text = String::from_utf8_lossy(a);
        let room = 128 - shown.len();
        shown.push('\'');
        shown.extend(text.chars().take(room));
        shown.push_str("' ");
    }
    let name: String = String::from_utf8_lossy(name).chars().take(128).collect();
    Error::UnknownCommand { name, args: shown }
}

/// What the connection does after a command.
pub enum Flow {
    Reply(Reply),
    /// Nothing to send (an empty request).
    Silent,
    /// Send the reply, if any, and close the connection.
    Close(Option<Reply>),
}

/// Runs one request: the whole path from argument vector to reply.
pub async fn execute(s: &mut Session, mut argv: Vec<Bytes>) -> Flow {
    if argv.is_empty() {
        return Flow::Silent;
    }
    let name = argv.remove(0);
    // A browser or HTTP client speaking to the port: drop it, as Redis does.
    if is(&name, "post") || is(&name, "host:") {
        tracing::warn!(client = %s.client.addr, "possible cross-protocol attack: an HTTP request was sent to the client port; connection closed");
        return Flow::Close(None);
    }
    let Some((index, spec)) = lookup(&name) else {
        transaction::fail(s);
        return Flow::Reply(unknown_command(&name, &argv).into());
    };
    if !s.authenticated && !spec.has_flag("no-auth") {
        transaction::fail(s);
        return Flow::Reply(Error::NoAuth.into());
    }
    if !spec.arity_ok(argv.len() + 1) {
        transaction::fail(s);
        return Flow::Reply(Error::WrongArity(spec.name.to_string()).into());
    }
    s.client.touch(index);
    crate::metrics::add(&s.server.metrics.commands_processed, 1);
    match spec.cmd {
        Cmd::Quit => Flow::Close(Some(Reply::OK)),
        Cmd::Multi => Flow::Reply(transaction::multi(s)),
        Cmd::Exec => Flow::Reply(transaction::exec(s).await),
        Cmd::Discard => Flow::Reply(transaction::discard(s)),
        cmd if s.multi.is_some() => Flow::Reply(transaction::queue(s, cmd, argv)),
        cmd => Flow::Reply(dispatch(cmd, s, Args::new(argv)).await.unwrap_or_else(Reply::from)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_rejects_strangers() {
        assert_eq!(lookup(b"GeT").map(|(_, s)| s.cmd), Some(Cmd::Get));
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(&[b'g'; 100]).is_none());
        assert!(lookup(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn every_command_is_listed_once_with_sane_keys() {
        let mut names: Vec<_> = TABLE.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
        for s in TABLE {
            assert!(s.arity != 0, "{}", s.name);
            assert!(s.first_key >= 0 && (s.first_key == 0) == (s.step == 0), "{}", s.name);
        }
    }

    #[test]
    fn unknown_command_wording_matches_redis() {
        let e = unknown_command(b"foo", &[Bytes::from("a"), Bytes::from("b c")]);
        assert_eq!(e.resp_message(), "ERR unknown command 'foo', with args beginning with: 'a' 'b c' ");
        let e = unknown_command(b"foo", &[]);
        assert_eq!(e.resp_message(), "ERR unknown command 'foo', with args beginning with: ");
    }
}
