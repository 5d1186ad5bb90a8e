//! The command table and the path of one command: look the name up, check
//! authentication and arity, queue it inside MULTI or run its handler.
//!
//! The table is the single source of each command's name, arity, flags and
//! key positions: dispatch, arity errors and the COMMAND reply all read it.
//! Handlers live in `cmd/`, one file per command family; each takes the
//! session and the arguments after the name and returns a reply. Most take
//! the session by shared reference (`ref`); the few that change it (HELLO,
//! AUTH) take it mutably (`mut`). A `ref` command with a single key may run
//! concurrently with other such commands of the same pipeline (see
//! `connection.rs`).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Instant;

use bytes::Bytes;

use crate::error::{Error, Result};

use super::args::{ArgList, Args};
use super::cmd::{admin, connection, context, info, keys, ring, server, strings};
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
    /// The handler leaves the session unchanged.
    pub shared: bool,
}

impl Spec {
    fn arity_ok(&self, argc: usize) -> bool {
        arity_ok(self.arity, argc)
    }

    #[must_use]
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    /// True if the command touches exactly one key (its first argument) and
    /// leaves the session alone: it may run concurrently with others of its
    /// kind on other keys.
    #[must_use]
    pub fn single_key(&self) -> bool {
        self.shared && self.first_key == 1 && self.last_key == 1
    }
}

macro_rules! handler_kind {
    (ref) => {
        true
    };
    (mut) => {
        false
    };
}

/// Calls a `ref` handler from a shared session; a `mut` one cannot be.
macro_rules! call_shared {
    (ref, $h:path, $s:expr, $a:expr) => {
        $h($s, $a).await
    };
    (mut, $h:path, $s:expr, $a:expr) => {
        Err(Error::err("this command changes the connection and cannot run in a pipeline group"))
    };
}

macro_rules! commands {
    ($( $cmd:ident $name:literal $arity:literal [$($flag:literal),*] $first:literal $last:literal $step:literal $cat:literal => $kind:ident $handler:path; )*) => {
        /// Every command shoal knows.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Cmd { $($cmd),* }

        /// The command table, in COMMAND's order.
        pub static TABLE: &[Spec] = &[$(
            Spec { cmd: Cmd::$cmd, name: $name, arity: $arity, flags: &[$($flag),*],
                   first_key: $first, last_key: $last, step: $step, category: $cat,
                   shared: handler_kind!($kind) },
        )*];

        /// Runs a command's handler. MULTI, EXEC, DISCARD and QUIT are
        /// handled before dispatch and never reach it.
        pub(super) async fn dispatch(cmd: Cmd, s: &mut Session, args: Args) -> Result<Reply> {
            match cmd {
                $(Cmd::$cmd => $handler(s, args).await,)*
            }
        }

        /// Runs the handler of a command that leaves the session unchanged.
        pub(super) async fn dispatch_shared(cmd: Cmd, s: &Session, args: Args) -> Result<Reply> {
            match cmd {
                $(Cmd::$cmd => call_shared!($kind, $handler, s, args),)*
            }
        }
    };
}

commands! {
    // connection
    Ping "ping" -1 ["fast"] 0 0 0 "@connection" => ref connection::ping;
    Echo "echo" 2 ["fast"] 0 0 0 "@connection" => ref connection::echo;
    Quit "quit" -1 ["fast", "no-auth"] 0 0 0 "@connection" => ref transaction::not_dispatched;
    Hello "hello" -1 ["fast", "no-auth"] 0 0 0 "@connection" => mut connection::hello;
    Auth "auth" -2 ["fast", "no-auth"] 0 0 0 "@connection" => mut connection::auth;
    Select "select" 2 ["fast"] 0 0 0 "@connection" => ref connection::select;
    Client "client" -2 ["admin"] 0 0 0 "@connection" => ref connection::client;
    // server
    Command "command" -1 ["loading", "stale"] 0 0 0 "@connection" => ref server::command;
    Info "info" -1 ["loading", "stale"] 0 0 0 "@dangerous" => ref info::info;
    Config "config" -2 ["admin"] 0 0 0 "@dangerous" => ref server::config;
    Dbsize "dbsize" 1 ["readonly", "fast"] 0 0 0 "@keyspace" => ref server::dbsize;
    Flushdb "flushdb" -1 ["write"] 0 0 0 "@keyspace" => ref server::flushall;
    Flushall "flushall" -1 ["write"] 0 0 0 "@keyspace" => ref server::flushall;
    // transactions
    Multi "multi" 1 ["fast"] 0 0 0 "@transaction" => ref transaction::not_dispatched;
    Exec "exec" 1 ["slow"] 0 0 0 "@transaction" => ref transaction::not_dispatched;
    Discard "discard" 1 ["fast"] 0 0 0 "@transaction" => ref transaction::not_dispatched;
    // strings
    Get "get" 2 ["readonly", "fast"] 1 1 1 "@string" => ref strings::get;
    Set "set" -3 ["write", "denyoom"] 1 1 1 "@string" => ref strings::set;
    Setnx "setnx" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => ref strings::setnx;
    Setex "setex" 4 ["write", "denyoom"] 1 1 1 "@string" => ref strings::setex;
    Psetex "psetex" 4 ["write", "denyoom"] 1 1 1 "@string" => ref strings::psetex;
    Getset "getset" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => ref strings::getset;
    Getdel "getdel" 2 ["write", "fast"] 1 1 1 "@string" => ref strings::getdel;
    Getex "getex" -2 ["write", "fast"] 1 1 1 "@string" => ref strings::getex;
    Mget "mget" -2 ["readonly", "fast"] 1 -1 1 "@string" => ref strings::mget;
    Mset "mset" -3 ["write", "denyoom"] 1 -1 2 "@string" => ref strings::mset;
    Msetnx "msetnx" -3 ["write", "denyoom"] 1 -1 2 "@string" => ref strings::msetnx;
    Strlen "strlen" 2 ["readonly", "fast"] 1 1 1 "@string" => ref strings::strlen;
    Append "append" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => ref strings::append;
    Incr "incr" 2 ["write", "denyoom", "fast"] 1 1 1 "@string" => ref strings::incr;
    Decr "decr" 2 ["write", "denyoom", "fast"] 1 1 1 "@string" => ref strings::decr;
    Incrby "incrby" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => ref strings::incrby;
    Decrby "decrby" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => ref strings::decrby;
    Incrbyfloat "incrbyfloat" 3 ["write", "denyoom", "fast"] 1 1 1 "@string" => ref strings::incrbyfloat;
    // keys
    Del "del" -2 ["write"] 1 -1 1 "@keyspace" => ref keys::del;
    Unlink "unlink" -2 ["write", "fast"] 1 -1 1 "@keyspace" => ref keys::del;
    Exists "exists" -2 ["readonly", "fast"] 1 -1 1 "@keyspace" => ref keys::exists;
    Expire "expire" -3 ["write", "fast"] 1 1 1 "@keyspace" => ref keys::expire;
    Pexpire "pexpire" -3 ["write", "fast"] 1 1 1 "@keyspace" => ref keys::pexpire;
    Expireat "expireat" -3 ["write", "fast"] 1 1 1 "@keyspace" => ref keys::expireat;
    Pexpireat "pexpireat" -3 ["write", "fast"] 1 1 1 "@keyspace" => ref keys::pexpireat;
    Ttl "ttl" 2 ["readonly", "fast"] 1 1 1 "@keyspace" => ref keys::ttl;
    Pttl "pttl" 2 ["readonly", "fast"] 1 1 1 "@keyspace" => ref keys::pttl;
    Persist "persist" 2 ["write", "fast"] 1 1 1 "@keyspace" => ref keys::persist;
    Type "type" 2 ["readonly", "fast"] 1 1 1 "@keyspace" => ref keys::type_of;
    Scan "scan" -2 ["readonly"] 0 0 0 "@keyspace" => ref keys::scan;
    Keys "keys" 2 ["readonly"] 0 0 0 "@keyspace" => ref keys::keys;
    // versions
    Getctx "getctx" -2 ["readonly", "fast"] 1 1 1 "@string" => ref context::getctx;
    Setctx "setctx" -4 ["write", "denyoom"] 1 1 1 "@string" => ref context::setctx;
    Delctx "delctx" -3 ["write", "fast"] 1 1 1 "@string" => ref context::delctx;
    // administration
    ShoalStatus "shoal.status" 1 ["readonly"] 0 0 0 "@admin" => ref admin::status;
    ShoalWhere "shoal.where" 2 ["readonly"] 1 1 1 "@admin" => ref admin::where_is;
    ShoalRepair "shoal.repair" -1 ["admin"] 0 0 0 "@admin" => ref admin::repair;
    ShoalRing "shoal.ring" 1 ["readonly"] 0 0 0 "@admin" => ref ring::ring;
    ShoalJoin "shoal.join" -2 ["admin"] 0 0 0 "@admin" => ref ring::join;
    ShoalLeave "shoal.leave" -1 ["admin"] 0 0 0 "@admin" => ref ring::leave;
    ShoalRemove "shoal.remove" -2 ["admin"] 0 0 0 "@admin" => ref ring::remove;
    ShoalPlan "shoal.plan" -1 ["admin"] 0 0 0 "@admin" => ref ring::plan;
    ShoalCommit "shoal.commit" 1 ["admin"] 0 0 0 "@admin" => ref ring::commit;
}

static BY_NAME: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| TABLE.iter().enumerate().map(|(i, s)| (s.name, i)).collect());

/// A subcommand of a container command (CLIENT LIST), as COMMAND and INFO
/// commandstats show it: `client|list`.
#[derive(Debug)]
pub struct Sub {
    pub name: &'static str,
    /// As [`Spec::arity`], counting the command and the subcommand.
    pub arity: i32,
}

const fn sub(name: &'static str, arity: i32) -> Sub {
    Sub { name, arity }
}

impl Sub {
    fn arity_ok(&self, argc: usize) -> bool {
        arity_ok(self.arity, argc)
    }
}

/// True if `argc` arguments (the name included) fit `arity`: exactly that
/// many, or at least `-arity`.
fn arity_ok(arity: i32, argc: usize) -> bool {
    let (argc, arity) = (argc as i64, i64::from(arity));
    if arity >= 0 { argc == arity } else { argc >= -arity }
}

/// The subcommands of the container commands.
pub static SUBCOMMANDS: &[(Cmd, &[Sub])] = &[
    (
        Cmd::Client,
        &[
            sub("getname", 2),
            sub("help", 2),
            sub("id", 2),
            sub("info", 2),
            sub("list", -2),
            sub("setinfo", 4),
            sub("setname", 3),
        ],
    ),
    (Cmd::Command, &[sub("count", 2), sub("help", 2), sub("info", -2), sub("list", -2)]),
    (Cmd::Config, &[sub("get", -3), sub("help", 2), sub("resetstat", 2), sub("rewrite", 2), sub("set", -4)]),
];

/// The subcommands of the command at `index` in [`TABLE`], if it has any.
#[must_use]
pub fn subcommands(index: usize) -> &'static [Sub] {
    SUBCOMMANDS.iter().find(|(cmd, _)| *cmd == TABLE[index].cmd).map_or(&[], |(_, subs)| subs)
}

/// Every command and subcommand by number ("stat slot"): the commands in
/// table order, then each container's subcommands. INFO commandstats and
/// CLIENT LIST name them by these numbers.
struct Slots {
    /// `get`, …, `client|list`, …
    names: Vec<String>,
    /// The subcommand of each slot past the commands.
    subs: Vec<&'static Sub>,
    /// The first slot of each command's subcommands.
    first_sub: Vec<usize>,
}

static SLOTS: LazyLock<Slots> = LazyLock::new(|| {
    let mut slots =
        Slots { names: TABLE.iter().map(|s| s.name.to_string()).collect(), subs: Vec::new(), first_sub: Vec::new() };
    for (index, spec) in TABLE.iter().enumerate() {
        slots.first_sub.push(slots.names.len());
        for sub in subcommands(index) {
            slots.names.push(format!("{}|{}", spec.name, sub.name));
            slots.subs.push(sub);
        }
    }
    slots
});

/// The names of every stat slot, in order.
#[must_use]
pub fn stat_names() -> &'static [String] {
    &SLOTS.names
}

/// The stat slot of a request for the command at `index` with `args`
/// (after the name): the subcommand's for a container command, `None` when
/// that subcommand does not exist (Redis counts such requests nowhere).
#[must_use]
pub fn stat_slot(index: usize, args: &[Bytes]) -> Option<usize> {
    let subs = subcommands(index);
    if subs.is_empty() {
        return Some(index);
    }
    let Some(first) = args.first() else { return Some(index) };
    let at = subs.iter().position(|sub| is(first, sub.name))?;
    Some(SLOTS.first_sub[index] + at)
}

/// The subcommand a stat slot stands for, if it stands for one.
fn sub_of(slot: usize) -> Option<&'static Sub> {
    slot.checked_sub(TABLE.len()).and_then(|i| SLOTS.subs.get(i).copied())
}

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

/// A command that passed the checks, ready to run.
pub struct Ready {
    pub spec: &'static Spec,
    /// Its number among [`stat_names`], for INFO commandstats.
    pub slot: Option<usize>,
    /// The arguments after the name.
    pub args: ArgList,
}

/// A request after the checks that need no waiting.
pub enum Prepared {
    /// Answered already (an error, QUEUED, MULTI…).
    Done(Flow),
    /// A command to run.
    Run(Ready),
}

/// Counts a command that ran (in INFO commandstats, if it has a slot) and
/// the error it answered, if any (in errorstats).
pub(super) fn record(s: &Session, slot: Option<usize>, started: Option<Instant>, reply: &Reply) {
    let failed = match reply {
        Reply::Error(text) => {
            s.server.metrics.errors.record(text);
            true
        }
        _ => false,
    };
    if let Some(slot) = slot {
        let usec = started.map_or(0, |t| u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        s.server.commands.ran(slot, usec, failed);
    }
}

/// Checks one request: name, authentication, arity; answers MULTI, DISCARD,
/// QUIT and queueing inside MULTI; leaves the rest to run.
pub fn prepare(s: &mut Session, mut argv: ArgList) -> Prepared {
    let Some(name) = argv.take_first() else { return Prepared::Done(Flow::Silent) };
    // A browser or HTTP client speaking to the port: drop it, as Redis does.
    if is(&name, "post") || is(&name, "host:") {
        tracing::warn!(client = %s.client.addr, "possible cross-protocol attack: an HTTP request was sent to the client port; connection closed");
        return Prepared::Done(Flow::Close(None));
    }
    // Refused before running: counted as rejected, and it fails any open
    // transaction; a refused EXEC discards it and says why, as Redis does.
    let refuse = |s: &mut Session, spec: Option<&Spec>, slot: Option<usize>, e: Error| {
        transaction::fail(s);
        if let Some(slot) = slot {
            s.server.commands.rejected(slot);
        }
        let e = match spec {
            Some(spec) if spec.cmd == Cmd::Exec => {
                s.multi = None;
                transaction::set_queued(s, None);
                let why = e.resp_message();
                let why = why.strip_prefix("ERR ").unwrap_or(&why).to_string();
                Error::Command(format!("EXECABORT Transaction discarded because of: {why}"))
            }
            _ => e,
        };
        let reply = Reply::from(e);
        record(s, None, None, &reply);
        Prepared::Done(Flow::Reply(reply))
    };
    // Redis's order: the name (and subcommand), the arity, then
    // authentication.
    let Some((index, spec)) = lookup(&name) else { return refuse(s, None, None, unknown_command(&name, &argv)) };
    let slot = stat_slot(index, &argv);
    if slot.is_none()
        && let Some(sub) = argv.first()
    {
        let e = Error::UnknownSubcommand {
            command: spec.name.to_ascii_uppercase(),
            sub: String::from_utf8_lossy(sub).into(),
        };
        return refuse(s, Some(spec), None, e);
    }
    if !spec.arity_ok(argv.len() + 1) {
        return refuse(s, Some(spec), slot, Error::WrongArity(spec.name.to_string()));
    }
    if let Some((slot, sub)) = slot.and_then(|slot| Some((slot, sub_of(slot)?)))
        && !sub.arity_ok(argv.len() + 1)
    {
        return refuse(s, Some(spec), Some(slot), Error::WrongArity(stat_names()[slot].clone()));
    }
    if !s.authenticated && !spec.has_flag("no-auth") {
        return refuse(s, Some(spec), slot, Error::NoAuth);
    }
    s.client.touch(slot.unwrap_or(index));
    crate::metrics::add(&s.server.metrics.commands_processed, 1);
    let answered = |s: &mut Session, reply: Reply| {
        record(s, slot, None, &reply);
        Prepared::Done(Flow::Reply(reply))
    };
    match spec.cmd {
        Cmd::Quit => {
            record(s, slot, None, &Reply::OK);
            Prepared::Done(Flow::Close(Some(Reply::OK)))
        }
        Cmd::Multi => {
            let reply = transaction::multi(s);
            answered(s, reply)
        }
        Cmd::Discard => {
            let reply = transaction::discard(s);
            answered(s, reply)
        }
        Cmd::Exec => Prepared::Run(Ready { spec, slot, args: argv }),
        _ if s.multi.is_some() => Prepared::Done(Flow::Reply(transaction::queue(s, Ready { spec, slot, args: argv }))),
        _ => Prepared::Run(Ready { spec, slot, args: argv }),
    }
}

/// Runs a prepared command on its own.
pub async fn run(s: &mut Session, ready: Ready) -> Reply {
    let started = Instant::now();
    let reply = match ready.spec.cmd {
        Cmd::Exec => transaction::exec(s).await,
        cmd => dispatch(cmd, s, Args::new(ready.args)).await.unwrap_or_else(Reply::from),
    };
    record(s, ready.slot, Some(started), &reply);
    reply
}

/// Runs a prepared command whose spec is [`Spec::shared`].
pub async fn run_shared(s: &Session, ready: Ready) -> Reply {
    let started = Instant::now();
    let reply = dispatch_shared(ready.spec.cmd, s, Args::new(ready.args)).await.unwrap_or_else(Reply::from);
    record(s, ready.slot, Some(started), &reply);
    reply
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
