//! INFO: the node's state, in Redis's sections and field names, plus
//! shoal's own (`# Cluster` fields prefixed `shoal_`, `# Versions`).
//!
//! As in Redis 7.0, `INFO` (or `INFO default`) gives every section but
//! `commandstats`; `INFO all` and `INFO everything` give them all; named
//! sections combine, each shown once, in the usual order.

use std::fmt::Write as _;

use crate::error::Result;
use crate::metrics::get;
use crate::resp::args::Args;
use crate::resp::commands::stat_names;
use crate::resp::reply::Reply;
use crate::resp::session::Session;

use super::connection::REDIS_VERSION;

/// Every section, in the order INFO prints them.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "commandstats",
    "errorstats",
    "cluster",
    "versions",
    "antientropy",
    "hints",
    "keyspace",
];

/// Sections left out unless asked for by name, `all` or `everything`.
const NOT_DEFAULT: &[&str] = &["commandstats"];

/// Clock ticks per second in /proc (Linux's USER_HZ).
const TICKS_PER_SECOND: u64 = 100;

/// Resident memory of the process, from /proc where there is one.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).map_or(0, |pages| pages * 4096)
}

/// CPU time from a /proc `stat` file, in clock ticks: (user, system, user
/// of waited-for children, system of waited-for children).
fn cpu_ticks(path: &str) -> [u64; 4] {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name, in parentheses, may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    // utime, stime, cutime, cstime are fields 14 to 17; `rest` starts at 3.
    [11, 12, 13, 14].map(|i| fields.get(i).copied().unwrap_or(0))
}

/// Clock ticks as Redis prints CPU seconds: `seconds.microseconds`.
fn seconds(ticks: u64) -> String {
    let micros = ticks * (1_000_000 / TICKS_PER_SECOND);
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
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
            line("shoal_actor", &s.coordinator().store().actor());
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
            line("mem_allocator", &"mimalloc");
            if let Some(n) = crate::metrics::allocations() {
                line("total_allocations", &n);
            }
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
            line("evicted_keys", &0);
            line("keyspace_hits", &get(&m.keyspace_hits));
            line("keyspace_misses", &get(&m.keyspace_misses));
            line("total_error_replies", &m.errors.total());
        }
        "replication" => {
            line("role", &"master");
            line("connected_slaves", &0);
            line("master_replid", &server.run_id);
            line("master_repl_offset", &0);
        }
        "cpu" => {
            let [user, sys, user_children, sys_children] = cpu_ticks("/proc/self/stat");
            let [main_user, main_sys, ..] = cpu_ticks(&format!("/proc/self/task/{}/stat", std::process::id()));
            line("used_cpu_sys", &seconds(sys));
            line("used_cpu_user", &seconds(user));
            line("used_cpu_sys_children", &seconds(sys_children));
            line("used_cpu_user_children", &seconds(user_children));
            line("used_cpu_sys_main_thread", &seconds(main_sys));
            line("used_cpu_user_main_thread", &seconds(main_user));
        }
        "commandstats" => {
            for (name, c) in stat_names().iter().zip(server.commands.slots()) {
                let (calls, usec, rejected, failed) = (get(&c.calls), get(&c.usec), get(&c.rejected), get(&c.failed));
                if calls + rejected + failed == 0 {
                    continue;
                }
                let per_call = if calls == 0 { 0.0 } else { usec as f64 / calls as f64 };
                line(
                    &format!("cmdstat_{name}"),
                    &format!(
                        "calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls={rejected},failed_calls={failed}"
                    ),
                );
            }
        }
        "errorstats" => {
            for (code, count) in m.errors.by_code() {
                line(&format!("errorstat_{code}"), &format!("count={count}"));
            }
        }
        "cluster" => {
            // Not a Redis Cluster: cluster-aware clients must not switch modes.
            line("cluster_enabled", &0);
            let coordinator = s.coordinator();
            let view = coordinator.view();
            let (r, w) = (coordinator.settings().r.min(view.n), coordinator.settings().w.min(view.n));
            let gossip = coordinator.membership().stats();
            let cluster = view.cluster.map_or_else(String::new, |c| format!("{:016x}", c.id));
            line("shoal_cluster_id", &cluster);
            line("shoal_members", &view.members.len());
            line("shoal_members_up", &view.up_count());
            line("shoal_members_down", &(view.members.len() - view.up_count()));
            line("shoal_partitions", &view.ring.partition_count());
            line("shoal_partitions_owned", &view.ring.owned_by(coordinator.node_id()));
            line("shoal_n", &view.cluster.map_or(view.n, |c| c.n as usize));
            line("shoal_effective_n", &view.n);
            let ring = coordinator.membership().ring_state();
            line("shoal_ring_epoch", &ring.epoch);
            line("shoal_ring_members", &ring.ring_members());
            line("shoal_ring_staged", &ring.staged.len());
            line("shoal_ring_change", &ring.change);
            line("shoal_ring_moves_done", &ring.done.len());
            line("shoal_transfer_keys", &get(&m.transfer_keys));
            line("shoal_transfer_bytes", &get(&m.transfer_bytes));
            line("shoal_r", &r);
            line("shoal_w", &w);
            line("shoal_gossip_rounds", &gossip.rounds);
            line("shoal_slowest_heartbeat_ms", &gossip.slowest_heartbeat_ms);
            line("shoal_reads_coordinated", &get(&m.reads_coordinated));
            line("shoal_writes_coordinated", &get(&m.writes_coordinated));
            line("shoal_writes_forwarded", &get(&m.writes_forwarded));
            line("shoal_read_repairs", &get(&m.read_repairs));
            line("shoal_noquorums", &get(&m.noquorums));
            let last = m.last_noquorum.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            line("shoal_last_noquorum", &last);
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
        "hints" => {
            let store = s.coordinator().store();
            line("hinted_handoff", &u8::from(s.coordinator().settings().hinted_handoff));
            line("hints_stored", &get(&m.hints_stored));
            line("hints_delivered", &get(&m.hints_delivered));
            line("hints_pending", &store.hints_held());
            line("hints_refused", &get(&m.hints_refused));
            line("sloppy_quorum", &u8::from(s.coordinator().settings().sloppy_quorum));
            line("hint_window_seconds", &server.config.hint_window);
            line("hint_max_bytes", &server.config.hint_max_bytes.0);
            let repair = store.partitions_needing_repair();
            line("partitions_needing_repair", &repair.len());
            // Per node hints are held for: hints_for_<id>:count=…,bytes=…,oldest_age_seconds=…
            let now = crate::clock::now_ms();
            for (target, t) in store.hint_tallies() {
                let age = now.saturating_sub(t.oldest) / 1000;
                line(
                    &format!("hints_for_{target}"),
                    &format!("count={},bytes={},oldest_age_seconds={age}", t.count, t.bytes),
                );
            }
        }
        "antientropy" => {
            line("anti_entropy_interval_seconds", &server.config.anti_entropy_interval);
            line("anti_entropy_rate", &server.config.anti_entropy_rate.0);
            line("anti_entropy_keys_rate", &server.config.anti_entropy_keys_rate);
            let background = match (server.config.anti_entropy_interval, server.repairs.paused()) {
                (0, _) => "off",
                (_, true) => "paused",
                _ => "running",
            };
            line("background", &background);
            line("repair_running", &i32::from(server.repairs.progress().running));
            line("exchanges", &get(&m.ae_exchanges));
            line("keys_compared", &get(&m.ae_keys_compared));
            line("keys_repaired", &get(&m.ae_keys_repaired));
            line("keys_fetched", &get(&m.ae_keys_fetched));
            line("keys_sent", &get(&m.ae_keys_sent));
            line("messages_sent", &get(&m.ae_messages));
            line("bytes_sent", &get(&m.ae_bytes_sent));
            line("bytes_received", &get(&m.ae_bytes_received));
            line("tombstones", &tally.tombstones);
            line("tombstones_removed", &s.coordinator().store().removed());
            // -1 while some partition has not been compared with every
            // replica since the node started.
            let oldest = get(&m.ae_oldest_comparison_ms);
            let age = if oldest == 0 { -1 } else { (crate::clock::now_ms().saturating_sub(oldest) / 1000) as i64 };
            line("oldest_comparison_age_seconds", &age);
            line("partitions_needing_repair", &s.coordinator().store().partitions_needing_repair().len());
            // Partitions whose trees are still being rebuilt after a crash;
            // anti-entropy skips them until then.
            line("trees_not_ready", &s.coordinator().store().trees_not_ready());
        }
        "keyspace" if tally.keys > 0 => {
            line("db0", &format!("keys={},expires={},avg_ttl=0", tally.keys, tally.expires))
        }
        // "modules": no modules, an empty section.
        _ => {}
    }
}

/// The sections `wanted` asks for (lower-cased words), in print order.
fn sections(wanted: &[String]) -> Vec<&'static str> {
    let every = wanted.iter().any(|w| w == "all" || w == "everything");
    let default = wanted.is_empty() || wanted.iter().any(|w| w == "default");
    SECTIONS
        .iter()
        .copied()
        .filter(|&name| {
            every
                || (default && !NOT_DEFAULT.contains(&name))
                || wanted.iter().any(|w| w == name || (name == "modules" && w == "module_list"))
        })
        .collect()
}

pub async fn info(s: &Session, args: Args) -> Result<Reply> {
    let wanted: Vec<String> = args.rest().iter().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).collect();
    let sections = sections(&wanted);
    let disk = if sections.contains(&"memory") { s.coordinator().store().disk_space().await } else { 0 };
    let mut out = String::new();
    for name in sections {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let title = match name {
            "cpu" => "CPU".to_string(),
            "antientropy" => "Anti-entropy".to_string(),
            other => other[..1].to_ascii_uppercase() + &other[1..],
        };
        let _ = write!(out, "# {title}\r\n");
        section(s, name, disk, &mut out);
    }
    Ok(Reply::Verbatim("txt", out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_string()).collect()
    }

    #[test]
    fn sections_as_redis_7_0_chooses_them() {
        let default = sections(&[]);
        assert!(default.contains(&"cpu") && default.contains(&"errorstats") && default.contains(&"modules"));
        assert!(!default.contains(&"commandstats"));
        assert_eq!(sections(&words(&["default"])), default);
        assert_eq!(sections(&words(&["all"])), SECTIONS);
        assert_eq!(sections(&words(&["everything"])), SECTIONS);
        assert_eq!(sections(&words(&["commandstats"])), ["commandstats"]);
        assert_eq!(sections(&words(&["cpu", "sentinel"])), ["cpu"]);
        assert_eq!(sections(&words(&["cpu", "all"])), SECTIONS, "each section once");
        assert_eq!(sections(&words(&["module_list"])), ["modules"]);
        assert!(sections(&words(&["foo"])).is_empty());
    }

    #[test]
    fn cpu_seconds_print_as_redis_does() {
        assert_eq!(seconds(0), "0.000000");
        assert_eq!(seconds(1234), "12.340000");
        if std::path::Path::new("/proc/self/stat").exists() {
            // Burn CPU until the kernel has counted a tick of it (10 ms).
            let start = std::time::Instant::now();
            let mut x = 1u64;
            while cpu_ticks("/proc/self/stat")[..2].iter().sum::<u64>() == 0 {
                for _ in 0..100_000 {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                }
                assert!(start.elapsed() < std::time::Duration::from_secs(10), "no CPU counted after 10 s");
            }
        }
    }
}
