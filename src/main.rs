//! The `shoal` command: runs a node (`shoal` or `shoal server`), prints
//! the cluster as a running node sees it (`shoal status`), has a node
//! repair its partitions now (`shoal repair`), or changes the members
//! (`shoal join`, `leave`, `remove`, `plan`, `commit`).

mod alloc_count;
mod change;
mod repair;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use shoal::config::Config;
use shoal::node::{Node, shutdown_requested};

#[derive(Parser)]
#[command(name = "shoal", version, about = "A Dynamo-style distributed key-value store that speaks the Redis protocol")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the default).
    Server(ServerArgs),
    /// Show the cluster as a node sees it: members up or down, what each owns and holds.
    Status(StatusArgs),
    /// Have a node compare its partitions with the other replicas now and repair what differs.
    Repair(RepairArgs),
    /// Make an empty node (started on its own) join the cluster of the member at a peer address.
    Join(JoinArgs),
    /// Have a node hand all its data over to the others, then stop being a member.
    Leave(NowArgs),
    /// Take out a member that is gone for good (its partitions are rebuilt from the other replicas).
    Remove(RemoveArgs),
    /// Show what the staged changes (or the change in progress) move; --clear takes them back.
    Plan(PlanArgs),
    /// Start the staged changes.
    Commit(StatusArgs),
}

/// `shoal join`.
#[derive(Args)]
struct JoinArgs {
    #[command(flatten)]
    node: StatusArgs,
    /// A member's peer address, host:port (its client port + 10000).
    seed: String,
    /// Commit at once rather than staging the join.
    #[arg(long)]
    now: bool,
}

/// `shoal leave`.
#[derive(Args)]
struct NowArgs {
    #[command(flatten)]
    node: StatusArgs,
    /// Commit at once rather than staging the change.
    #[arg(long)]
    now: bool,
}

/// `shoal remove`.
#[derive(Args)]
struct RemoveArgs {
    #[command(flatten)]
    node: StatusArgs,
    /// The member's id, as `shoal status` shows it.
    id: String,
    /// Commit at once rather than staging the change.
    #[arg(long)]
    now: bool,
    /// Decide without a majority of the members up (on the claimant only):
    /// for a cluster that lost most of its members for good.
    #[arg(long)]
    force: bool,
}

/// `shoal plan`.
#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    node: StatusArgs,
    /// Take back the staged changes not committed.
    #[arg(long)]
    clear: bool,
}

impl StatusArgs {
    /// Sends `request` through [`change::run`] and prints the answer.
    fn send(self, request: &[&[u8]]) -> ExitCode {
        let password = self.password.or_else(|| std::env::var("REDISCLI_AUTH").ok());
        match change::run(&self.host, self.port, password.as_deref(), request) {
            Ok(text) => {
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shoal: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// What `shoal repair` asks of which node.
#[derive(Args)]
struct RepairArgs {
    #[command(flatten)]
    node: StatusArgs,
    /// Only this partition (see SHOAL.WHERE for a key's); default: every
    /// partition the node replicates.
    partition: Option<u32>,
}

impl RepairArgs {
    fn run(self) -> ExitCode {
        let password = self.node.password.or_else(|| std::env::var("REDISCLI_AUTH").ok());
        let mut out = |line: &str| {
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), format!("{line}\n").as_bytes());
        };
        match repair::run(&self.node.host, self.node.port, password.as_deref(), self.partition, &mut out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shoal repair: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Which node `shoal status` (and `shoal repair`) asks.
#[derive(Args)]
struct StatusArgs {
    /// The node's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The node's client port.
    #[arg(short, long, default_value_t = 6379)]
    port: u16,
    /// The node's requirepass, sent with AUTH first (else REDISCLI_AUTH, as
    /// redis-cli reads it, if set).
    #[arg(short = 'a', long)]
    password: Option<String>,
}

impl StatusArgs {
    fn run(self) -> ExitCode {
        let password = self.password.or_else(|| std::env::var("REDISCLI_AUTH").ok());
        match status::run(&self.host, self.port, password.as_deref()) {
            Ok(table) => {
                // Not print!, which panics when a reader such as `head` has
                // closed the pipe.
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), table.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shoal status: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Settings given as flags override the config file and SHOAL_* variables.
#[derive(Args, Default)]
struct ServerArgs {
    /// A TOML file of settings (see conf/shoal.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    bind: Option<String>,
    /// Client port (0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Peer port (default: port + 10000).
    #[arg(long)]
    peer_port: Option<u16>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// When acknowledged writes reach the disk: os or fsync.
    #[arg(long, value_parser = ["os", "fsync"])]
    durability: Option<String>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long)]
    log_level: Option<String>,
    /// Peers to join, comma-separated host:peer-port (this node's own may be included).
    #[arg(long, value_name = "HOST:PORT,...")]
    seeds: Option<String>,
}

impl ServerArgs {
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut o = Vec::new();
        let mut add = |key, value: Option<String>| {
            if let Some(v) = value {
                o.push((key, v));
            }
        };
        add("bind", self.bind.clone());
        add("port", self.port.map(|p| p.to_string()));
        add("peer-port", self.peer_port.map(|p| p.to_string()));
        add("data-dir", self.data_dir.as_ref().map(|d| d.display().to_string()));
        add("durability", self.durability.clone());
        add("log-level", self.log_level.clone());
        add("seeds", self.seeds.clone());
        o
    }
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(log_directive(level)?)
        .map_err(|e| anyhow::anyhow!("log-level {level:?} is not a valid filter: {e}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).init();
    Ok(())
}

/// The tracing filter for a `log-level` setting: a level (tracing's names
/// or Redis's: `verbose`, `notice`, `warning`), which keeps the storage
/// engine's routine messages at warn, or a full filter (`shoal=debug,warn`)
/// taken as given. A bare word that is neither would silence everything,
/// so it is refused.
fn log_directive(level: &str) -> anyhow::Result<String> {
    if level.contains(['=', ',']) {
        return Ok(level.to_string());
    }
    let level = match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" | "verbose" => "debug",
        "info" | "notice" => "info",
        "warn" | "warning" => "warn",
        "error" => "error",
        "off" => "off",
        _ => anyhow::bail!(
            "log-level {level:?} is not a level (error, warn, info, debug, trace, off) or a filter such as \"shoal=debug,warn\""
        ),
    };
    Ok(format!("{level},fjall=warn,lsm_tree=warn"))
}

async fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log_level)?;
    let node = Node::start(config).await?;
    shutdown_requested().await;
    tracing::info!("shutdown requested: finishing in-flight requests");
    node.stop().await?;
    Ok(())
}

fn main() -> ExitCode {
    shoal::metrics::set_allocation_counter(alloc_count::total);
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Server(args)) => args,
        Some(Command::Status(args)) => return args.run(),
        Some(Command::Repair(args)) => return args.run(),
        Some(Command::Join(a)) => {
            let mut request: Vec<&[u8]> = vec![b"SHOAL.JOIN", a.seed.as_bytes()];
            request.extend(a.now.then_some(b"NOW".as_slice()));
            return a.node.send(&request);
        }
        Some(Command::Leave(a)) => {
            let mut request: Vec<&[u8]> = vec![b"SHOAL.LEAVE"];
            request.extend(a.now.then_some(b"NOW".as_slice()));
            return a.node.send(&request);
        }
        Some(Command::Remove(a)) => {
            let mut request: Vec<&[u8]> = vec![b"SHOAL.REMOVE", a.id.as_bytes()];
            request.extend(a.now.then_some(b"NOW".as_slice()));
            request.extend(a.force.then_some(b"FORCE".as_slice()));
            return a.node.send(&request);
        }
        Some(Command::Plan(a)) => {
            let mut request: Vec<&[u8]> = vec![b"SHOAL.PLAN"];
            request.extend(a.clear.then_some(b"CLEAR".as_slice()));
            return a.node.send(&request);
        }
        Some(Command::Commit(a)) => return a.send(&[b"SHOAL.COMMIT"]),
        None => cli.server,
    };
    // The runtime's size is a setting, so the config is read before it.
    let config = match Config::load(args.config.as_deref(), &args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(config.io_threads()).enable_all().build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(config)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal: {e}");
            ExitCode::FAILURE
        }
    }
}

// glibc's allocator spends a measurable share of each request consolidating
// and locking; mimalloc's thread-local heaps suit many small, short-lived,
// cross-thread allocations. Counted, for INFO's `total_allocations`.
#[global_allocator]
static GLOBAL: alloc_count::Counting<mimalloc::MiMalloc> = alloc_count::Counting(mimalloc::MiMalloc);

#[cfg(test)]
mod tests {
    use super::log_directive;

    #[test]
    fn log_levels_take_tracing_and_redis_names_and_refuse_other_words() {
        assert_eq!(log_directive("info").expect("info"), "info,fjall=warn,lsm_tree=warn");
        assert_eq!(log_directive("NOTICE").expect("NOTICE"), "info,fjall=warn,lsm_tree=warn");
        assert_eq!(log_directive("verbose").expect("verbose"), "debug,fjall=warn,lsm_tree=warn");
        assert_eq!(log_directive("warning").expect("warning"), "warn,fjall=warn,lsm_tree=warn");
        assert_eq!(log_directive("shoal=debug,warn").expect("shoal=debug,warn"), "shoal=debug,warn");
        for bad in ["bogus", "", "inf0"] {
            let e = log_directive(bad).expect_err(bad).to_string();
            assert!(e.contains("is not a level"), "{bad}: {e}");
        }
    }
}
