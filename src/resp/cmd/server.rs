//! Server commands: COMMAND, CONFIG, DBSIZE, FLUSHALL / FLUSHDB. (INFO has
//! a file of its own.)

use std::collections::HashSet;

use crate::config::Durability;
use crate::error::{Error, Result};
use crate::resp::args::Args;
use crate::resp::commands::{Spec, Sub, TABLE, is, lookup, stat_names, subcommands};
use crate::resp::reply::Reply;
use crate::resp::session::Session;

/// Redis's ACL categories in the order COMMAND lists them.
const CATEGORY_ORDER: &[&str] = &[
    "@keyspace",
    "@read",
    "@write",
    "@string",
    "@admin",
    "@fast",
    "@slow",
    "@dangerous",
    "@connection",
    "@transaction",
];

/// The ACL categories of a command: its family's, and those its flags imply.
fn categories(spec: &Spec) -> Vec<&'static str> {
    let mut set = vec![spec.category];
    for (flag, category) in [("readonly", "@read"), ("write", "@write"), ("fast", "@fast"), ("admin", "@admin")] {
        if spec.has_flag(flag) {
            set.push(category);
        }
    }
    if !spec.has_flag("fast") {
        set.push("@slow");
    }
    set.sort_by_key(|c| CATEGORY_ORDER.iter().position(|o| o == c));
    set.dedup();
    set
}

/// One command as COMMAND describes it: name, arity, flags, key positions,
/// ACL categories, tips, key specs, subcommands.
fn describe(index: usize) -> Reply {
    let spec = &TABLE[index];
    let subs = subcommands(index).iter().map(|sub| describe_sub(spec, sub)).collect();
    entry(spec.name.to_string(), spec.arity, spec, (spec.first_key, spec.last_key, spec.step), subs)
}

/// A subcommand as COMMAND describes it (`client|list`): its parent's flags
/// and categories, no keys.
fn describe_sub(parent: &Spec, sub: &Sub) -> Reply {
    entry(format!("{}|{}", parent.name, sub.name), sub.arity, parent, (0, 0, 0), Vec::new())
}

fn entry(name: String, arity: i32, spec: &Spec, keys: (i32, i32, i32), subs: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::bulk(name),
        Reply::Int(i64::from(arity)),
        Reply::Set(spec.flags.iter().map(|f| Reply::simple(f)).collect()),
        Reply::Int(i64::from(keys.0)),
        Reply::Int(i64::from(keys.1)),
        Reply::Int(i64::from(keys.2)),
        Reply::Set(categories(spec).into_iter().map(Reply::simple).collect()),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(subs),
    ])
}

/// The entry of a command or subcommand (`client|list`) by name.
fn describe_named(name: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(name);
    match text.split_once('|') {
        None => lookup(name).map_or(Reply::Nil, |(index, _)| describe(index)),
        Some((parent, sub)) => lookup(parent.as_bytes())
            .and_then(|(index, spec)| {
                subcommands(index).iter().find(|s| is(sub.as_bytes(), s.name)).map(|s| describe_sub(spec, s))
            })
            .unwrap_or(Reply::Nil),
    }
}

const COMMAND_HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "HELP",
    "    Print this help.",
];

/// COMMAND LIST's names, subcommands included, filtered as asked.
fn command_list(mut args: Args) -> Result<Reply> {
    let filter = match args.remaining() {
        0 => None,
        3 => {
            if args.keyword().as_deref() != Some("FILTERBY") {
                return Err(Error::Syntax);
            }
            let kind = args.keyword().unwrap_or_default();
            let value = args.bytes()?;
            match kind.as_str() {
                "MODULE" | "ACLCAT" | "PATTERN" => Some((kind, value)),
                _ => return Err(Error::Syntax),
            }
        }
        _ => return Err(Error::Syntax),
    };
    let names = stat_names().iter().enumerate().filter(|(slot, name)| match &filter {
        None => true,
        Some((kind, value)) => match kind.as_str() {
            "PATTERN" => crate::glob::matches(value, name.as_bytes(), true),
            "ACLCAT" => {
                let parent = name.split('|').next().unwrap_or(name);
                let index = if *slot < TABLE.len() { Some(*slot) } else { lookup(parent.as_bytes()).map(|(i, _)| i) };
                let wanted = format!("@{}", String::from_utf8_lossy(value).to_ascii_lowercase());
                index.is_some_and(|i| categories(&TABLE[i]).contains(&wanted.as_str()))
            }
            // No modules.
            _ => false,
        },
    });
    Ok(Reply::bulks(names.map(|(_, name)| name.clone()).collect::<Vec<_>>()))
}

pub async fn command(_: &Session, mut args: Args) -> Result<Reply> {
    let Some(raw) = args.next() else { return Ok(Reply::Array((0..TABLE.len()).map(describe).collect())) };
    match String::from_utf8_lossy(&raw).to_ascii_uppercase().as_str() {
        "COUNT" => Ok(Reply::Int(TABLE.len() as i64)),
        "LIST" => command_list(args),
        "INFO" => {
            let names = args.rest();
            if names.is_empty() {
                return Ok(Reply::Array((0..TABLE.len()).map(describe).collect()));
            }
            Ok(Reply::Array(names.iter().map(|name| describe_named(name)).collect()))
        }
        "HELP" => Ok(Reply::Array(COMMAND_HELP.iter().map(|l| Reply::simple(l)).collect())),
        // No COMMAND DOCS: redis-cli then falls back to its built-in hints.
        _ => Err(Error::UnknownSubcommand { command: "COMMAND".into(), sub: String::from_utf8_lossy(&raw).into() }),
    }
}

pub async fn dbsize(s: &Session, _: Args) -> Result<Reply> {
    Ok(Reply::Int(s.coordinator().dbsize().await? as i64))
}

pub async fn flushall(s: &Session, mut args: Args) -> Result<Reply> {
    match args.keyword().as_deref() {
        None | Some("SYNC" | "ASYNC") => {}
        Some(_) => return Err(Error::Syntax),
    }
    args.finish()?;
    s.coordinator().flush_all().await?;
    Ok(Reply::OK)
}

/// The settings CONFIG GET reports, by every name it answers to: shoal's
/// own, and Redis's names and aliases where Redis has the setting.
fn config_items(s: &Session) -> Vec<(&'static str, String)> {
    let c = &s.server.config;
    let (n, r, w) = c.quorum();
    let dir = c.data_dir.display().to_string();
    let appendfsync = if c.durability == Durability::Fsync { "always" } else { "no" };
    vec![
        // Redis's settings.
        ("bind", c.bind.clone()),
        ("port", s.server.addr.port().to_string()),
        ("dir", dir.clone()),
        ("loglevel", c.log_level.clone()),
        ("maxclients", c.maxclients.to_string()),
        ("proto-max-bulk-len", c.proto_max_bulk_len.0.to_string()),
        ("client-query-buffer-limit", c.client_query_buffer_limit.0.to_string()),
        ("requirepass", c.requirepass.clone().unwrap_or_default()),
        ("databases", "1".into()),
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("appendfsync", appendfsync.into()),
        ("timeout", "0".into()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        ("maxmemory-samples", "5".into()),
        ("maxmemory-clients", "0".into()),
        ("io-threads", c.io_threads.to_string()),
        // Never a replica of another server.
        ("replicaof", String::new()),
        ("slaveof", String::new()),
        // shoal's own.
        ("peer-port", c.peer_port().to_string()),
        ("data-dir", dir),
        ("log-level", c.log_level.clone()),
        ("durability", c.durability.to_string()),
        ("seeds", c.seeds.join(",")),
        ("n", n.to_string()),
        ("r", r.to_string()),
        ("w", w.to_string()),
        ("request-timeout", c.request_timeout.to_string()),
        ("gossip-interval", c.gossip_interval.to_string()),
        ("phi-threshold", c.phi_threshold.to_string()),
        ("partitions", c.partitions.to_string()),
        ("storage-threads", c.storage_threads.to_string()),
        ("cache-size", c.cache_size.0.to_string()),
        ("object-cache-size", c.object_cache_size.0.to_string()),
        ("tombstone-grace", c.tombstone_grace.to_string()),
        ("anti-entropy-interval", c.anti_entropy_interval.to_string()),
        ("anti-entropy-rate", c.anti_entropy_rate.0.to_string()),
        ("anti-entropy-keys-rate", c.anti_entropy_keys_rate.to_string()),
        ("max-siblings", c.max_siblings.to_string()),
        ("shutdown-timeout", c.shutdown_timeout.to_string()),
    ]
}

/// CONFIG GET: an exact name answers under the name as given; a pattern
/// answers every name it matches; each setting once.
fn config_get(s: &Session, patterns: &[bytes::Bytes]) -> Reply {
    let items = config_items(s);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for pattern in patterns {
        let text = String::from_utf8_lossy(pattern);
        if !text.contains(['*', '?', '[']) {
            if let Some((name, value)) = items.iter().find(|(name, _)| name.eq_ignore_ascii_case(&text))
                && seen.insert(*name)
            {
                out.push((Reply::bulk(text.into_owned()), Reply::bulk(value.clone())));
            }
            continue;
        }
        for (name, value) in &items {
            if !seen.contains(name) && crate::glob::matches(pattern, name.as_bytes(), true) {
                seen.insert(*name);
                out.push((Reply::bulk(*name), Reply::bulk(value.clone())));
            }
        }
    }
    Reply::Map(out)
}

/// CONFIG SET: settings are read at start; setting one to the value it has
/// is accepted (tools do that), anything else is refused.
fn config_set(s: &Session, args: &[bytes::Bytes]) -> Result<Reply> {
    let items = config_items(s);
    if args.len() % 2 != 0 {
        return Err(Error::WrongArity("config|set".into()));
    }
    let mut seen = HashSet::new();
    for pair in args.chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]);
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(Error::err(format!(
                "CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"
            )));
        }
        let Some((_, current)) = items.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)) else {
            return Err(Error::err(format!("Unknown option or number of arguments for CONFIG SET - '{name}'")));
        };
        if !current.as_bytes().eq_ignore_ascii_case(&pair[1]) {
            return Err(Error::err(format!(
                "CONFIG SET is not supported: shoal reads its settings at start (see conf/shoal.toml); '{name}' is '{current}'"
            )));
        }
    }
    Ok(Reply::OK)
}

const CONFIG_HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Accepted only when <value> is the setting's current value: shoal reads its",
    "    settings at start (see conf/shoal.toml).",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "HELP",
    "    Print this help.",
];

pub async fn config(s: &Session, mut args: Args) -> Result<Reply> {
    let raw = args.bytes()?;
    match String::from_utf8_lossy(&raw).to_ascii_uppercase().as_str() {
        "GET" => Ok(config_get(s, &args.rest())),
        "SET" => config_set(s, &args.rest()),
        "RESETSTAT" => {
            s.server.metrics.reset();
            s.server.commands.reset();
            Ok(Reply::OK)
        }
        "REWRITE" => {
            Err(Error::err("CONFIG REWRITE is not supported: shoal reads its settings at start (see conf/shoal.toml)"))
        }
        "HELP" => Ok(Reply::Array(CONFIG_HELP.iter().map(|l| Reply::simple(l)).collect())),
        _ => Err(Error::UnknownSubcommand { command: "CONFIG".into(), sub: String::from_utf8_lossy(&raw).into() }),
    }
}
