//! Server commands: COMMAND, INFO, CONFIG, DBSIZE, FLUSHALL / FLUSHDB.

use std::fmt::Write as _;

use crate::config::Durability;
use crate::error::{Error, Result};
use crate::metrics::get;
use crate::resp::args::Args;
use crate::resp::commands::{Spec, TABLE, lookup};
use crate::resp::reply::Reply;
use crate::resp::session::Session;

use super::connection::REDIS_VERSION;

/// One command as COMMAND describes it: name, arity, flags, key positions,
/// ACL categories, tips, key specs, subcommands.
fn describe(spec: &Spec) -> Reply {
    let mut categories = vec![Reply::simple(spec.category)];
    for (flag, category) in [("readonly", "@read"), ("write", "@write"), ("fast", "@fast"), ("admin", "@admin")] {
        if spec.has_flag(flag) {
            categories.push(Reply::simple(category));
        }
    }
    if !spec.has_flag("fast") {
        categories.push(Reply::simple("@slow"));
    }
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Int(i64::from(spec.arity)),
        Reply::Set(spec.flags.iter().map(|f| Reply::simple(f)).collect()),
        Reply::Int(i64::from(spec.first_key)),
        Reply::Int(i64::from(spec.last_key)),
        Reply::Int(i64::from(spec.step)),
        Reply::Set(categories),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

pub async fn command(_: &Session, mut args: Args) -> Result<Reply> {
    let Some(raw) = args.next() else { return Ok(Reply::Array(TABLE.iter().map(describe).collect())) };
    match String::from_utf8_lossy(&raw).to_ascii_uppercase().as_str() {
        "COUNT" => Ok(Reply::Int(TABLE.len() as i64)),
        "LIST" => Ok(Reply::bulks(TABLE.iter().map(|s| s.name))),
        "INFO" => Ok(Reply::Array(
            args.rest().iter().map(|name| lookup(name).map_or(Reply::Nil, |(_, spec)| describe(spec))).collect(),
        )),
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

/// The settings CONFIG GET reports: Redis's names where Redis has them.
fn config_items(s: &Session) -> Vec<(&'static str, String)> {
    let c = &s.server.config;
    vec![
        ("bind", c.bind.clone()),
        ("port", s.server.addr.port().to_string()),
        ("peer-port", c.peer_port().to_string()),
        ("dir", c.data_dir.display().to_string()),
        ("maxclients", c.maxclients.to_string()),
        ("proto-max-bulk-len", c.proto_max_bulk_len.0.to_string()),
        ("client-query-buffer-limit", c.client_query_buffer_limit.0.to_string()),
        ("requirepass", c.requirepass.clone().unwrap_or_default()),
        ("databases", "1".into()),
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("appendfsync", if c.durability == Durability::Fsync { "always" } else { "no" }.into()),
        ("durability", c.durability.to_string()),
        ("timeout", "0".into()),
        ("maxmemory", "0".into()),
        ("partitions", c.partitions.to_string()),
        ("tombstone-grace", c.tombstone_grace.to_string()),
    ]
}

pub async fn config(s: &Session, mut args: Args) -> Result<Reply> {
    let raw = args.bytes()?;
    match String::from_utf8_lossy(&raw).to_ascii_uppercase().as_str() {
        "GET" => {
            let patterns = args.rest();
            if patterns.is_empty() {
                return Err(Error::WrongArity("config|get".into()));
            }
            let items = config_items(s)
                .into_iter()
                .filter(|(name, _)| patterns.iter().any(|p| crate::glob::matches(p, name.as_bytes(), true)))
                .map(|(name, value)| (Reply::bulk(name), Reply::bulk(value)))
                .collect();
            Ok(Reply::Map(items))
        }
        "SET" => {
            Err(Error::err("CONFIG SET is not supported: shoal reads its settings at start (see conf/shoal.toml)"))
        }
        "RESETSTAT" => Ok(Reply::OK),
        _ => Err(Error::UnknownSubcommand { command: "CONFIG".into(), sub: String::from_utf8_lossy(&raw).into() }),
    }
}

const SECTIONS: &[&str] =
    &["server", "clients", "memory", "persistence", "stats", "replication", "cluster", "versions", "keyspace"];

/// Resident memory of the process, from /proc where there is one.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).map_or(0, |pages| pages * 4096)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2}G", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.2}M", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.2}K", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

fn section(s: &Session, name: &str, disk: u64, out: &mut String) {
    let server = &s.server;
    let m = &server.metrics;
    let uptime = m.started.elapsed().as_secs();
    let tally = s.coordinator().tally();
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(out, "{k}:{v}\r\n");
    };
    match name {
        "server" => {
            line("redis_version", &REDIS_VERSION);
            line("shoal_version", &env!("CARGO_PKG_VERSION"));
            line("redis_git_sha1", &"00000000");
            line("redis_git_dirty", &0);
            line("redis_mode", &"standalone");
            line("os", &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH));
            line("arch_bits", &(usize::BITS));
            line("process_id", &std::process::id());
            line("run_id", &server.run_id);
            line("tcp_port", &server.addr.port());
            line("uptime_in_seconds", &uptime);
            line("uptime_in_days", &(uptime / 86_400));
            line("shoal_node_id", &s.coordinator().node_id());
        }
        "clients" => {
            line("connected_clients", &server.clients.count());
            line("maxclients", &server.config.maxclients);
            line("blocked_clients", &0);
        }
        "memory" => {
            let rss = rss_bytes();
            line("used_memory", &rss);
            line("used_memory_human", &human(rss));
            line("used_memory_rss", &rss);
            line("maxmemory", &0);
            line("maxmemory_policy", &"noeviction");
            line("shoal_disk_bytes", &disk);
            line("shoal_disk_human", &human(disk));
        }
        "persistence" => {
            line("loading", &0);
            line("async_loading", &0);
            line("rdb_bgsave_in_progress", &0);
            line("aof_enabled", &0);
            line("shoal_storage", &"fjall");
            line("shoal_durability", &server.config.durability.to_string());
        }
        "stats" => {
            line("total_connections_received", &get(&m.connections_received));
            line("total_commands_processed", &get(&m.commands_processed));
            line("total_net_input_bytes", &get(&m.net_input_bytes));
            line("total_net_output_bytes", &get(&m.net_output_bytes));
            line("rejected_connections", &get(&m.connections_rejected));
            line("keyspace_hits", &get(&m.keyspace_hits));
            line("keyspace_misses", &get(&m.keyspace_misses));
        }
        "replication" => {
            line("role", &"master");
            line("connected_slaves", &0);
            line("master_replid", &server.run_id);
            line("master_repl_offset", &0);
        }
        "cluster" => {
            // Not a Redis Cluster: cluster-aware clients must not switch modes.
            line("cluster_enabled", &0);
            let view = s.coordinator().view();
            let settings = s.coordinator().settings();
            line("shoal_members", &view.members.len());
            line("shoal_partitions", &view.ring.partition_count());
            line("shoal_partitions_owned", &view.ring.owned_by(s.coordinator().node_id()));
            line("shoal_n", &settings.n);
            line("shoal_r", &settings.r);
            line("shoal_w", &settings.w);
            line("shoal_reads_coordinated", &get(&m.reads_coordinated));
            line("shoal_writes_coordinated", &get(&m.writes_coordinated));
            line("shoal_writes_forwarded", &get(&m.writes_forwarded));
            line("shoal_read_repairs", &get(&m.read_repairs));
        }
        "versions" => {
            let store = s.coordinator().store();
            line("keys_with_siblings", &tally.with_siblings);
            line("max_siblings_seen", &store.max_siblings());
            line("sibling_warnings", &get(&m.sibling_warnings));
            line("max_siblings", &s.coordinator().settings().max_siblings);
            line("tombstones", &tally.tombstones);
            line("tombstone_grace_seconds", &server.config.tombstone_grace);
        }
        "keyspace" if tally.keys > 0 => {
            line("db0", &format!("keys={},expires={},avg_ttl=0", tally.keys, tally.expires))
        }
        _ => {}
    }
}

pub async fn info(s: &Session, args: Args) -> Result<Reply> {
    let wanted: Vec<String> = args.rest().iter().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).collect();
    let all = wanted.is_empty() || wanted.iter().any(|w| matches!(w.as_str(), "all" | "everything" | "default"));
    let sections: Vec<&str> = SECTIONS.iter().copied().filter(|n| all || wanted.iter().any(|w| w == n)).collect();
    let disk = if sections.contains(&"memory") { s.coordinator().store().disk_space().await } else { 0 };
    let mut out = String::new();
    for name in sections {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let mut title = name.to_string();
        title[..1].make_ascii_uppercase();
        let _ = write!(out, "# {title}\r\n");
        section(s, name, disk, &mut out);
    }
    Ok(Reply::Verbatim("txt", out))
}
