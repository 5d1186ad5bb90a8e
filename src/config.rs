//! One [`Config`] for the node, layered: built-in defaults, then the TOML
//! file given with `--config`, then `SHOAL_*` environment variables
//! (`SHOAL_PEER_PORT` sets `peer-port`), then command-line flags.
//! [`Config::validate`] rejects impossible settings before anything starts.
//! `conf/shoal.toml` documents every setting with its default.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// When an acknowledged write is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Written to the operating system before the reply: survives a crash of
    /// the process (kill -9), not a power loss.
    Os,
    /// fdatasync'd before the reply, concurrent writes sharing one sync:
    /// survives power loss.
    Fsync,
}

impl std::fmt::Display for Durability {
    /// As the setting is written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Os => "os",
            Self::Fsync => "fsync",
        })
    }
}

/// A size in bytes, written as a number or with Redis's units
/// (`1k` = 1000, `1kb` = 1024, likewise m/mb and g/gb).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `512mb`, `1gb`, `4096`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim().to_ascii_lowercase();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let mult: u64 = match unit {
            "" | "b" => 1,
            "k" => 1000,
            "kb" => 1024,
            "m" => 1000 * 1000,
            "mb" => 1024 * 1024,
            "g" => 1000 * 1000 * 1000,
            "gb" => 1024 * 1024 * 1024,
            _ => return None,
        };
        n.checked_mul(mult).map(Self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Text(t) => {
                Self::parse(&t).ok_or_else(|| serde::de::Error::custom(format!("`{t}` is not a size like 512mb")))
            }
        }
    }
}

/// Every setting of a node. Field names are the TOML keys in kebab-case.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct Config {
    /// Address for client and peer listeners.
    pub bind: String,
    /// Client (RESP) port; 0 picks a free one.
    pub port: u16,
    /// Peer port; defaults to `port + 10000`.
    pub peer_port: Option<u16>,
    /// Where the node keeps its data and identity.
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// A tracing filter: `info`, `debug`, `shoal=debug,warn`.
    pub log_level: String,
    /// Most client connections at once; more are refused with an error.
    pub maxclients: usize,
    /// Longest bulk string a client may send.
    pub proto_max_bulk_len: ByteSize,
    /// Most unparsed input a client connection may hold.
    pub client_query_buffer_limit: ByteSize,
    /// When set, clients must AUTH with it first.
    pub requirepass: Option<String>,
    /// Partitions of the ring (a power of two, fixed when the data
    /// directory is created).
    pub partitions: u32,
    /// Peers to join, as `host:peer-port`; the node's own address may be
    /// among them. Empty: a cluster of one.
    #[serde(deserialize_with = "list")]
    pub seeds: Vec<String>,
    /// Replicas of each key, for a cluster this node creates (default 3;
    /// a cluster's N is fixed when it is created, and never more than its
    /// members).
    pub n: Option<usize>,
    /// Replies a read waits for (default 2, at most N).
    pub r: Option<usize>,
    /// Acknowledgements a write waits for (default 2, at most N).
    pub w: Option<usize>,
    /// Milliseconds a request to a peer may take before it counts as failed.
    pub request_timeout: u64,
    /// Milliseconds between gossip rounds.
    pub gossip_interval: u64,
    /// The failure detector's suspicion (phi) above which a peer is down.
    pub phi_threshold: f64,
    /// Threads serving clients; 0 = one per core.
    pub io_threads: usize,
    /// Storage shards, one worker thread each; 0 = one per core.
    pub storage_threads: usize,
    /// Block cache of the storage engine.
    pub cache_size: ByteSize,
    /// Cache of decoded objects in front of the storage engine.
    pub object_cache_size: ByteSize,
    /// Seconds a tombstone (or a reclaimed expiry) is kept before removal.
    pub tombstone_grace: u64,
    /// Writes that would leave a key with more siblings are refused.
    pub max_siblings: usize,
    /// Whether a write a replica missed is kept as a hint and handed to it
    /// when it is back.
    pub hinted_handoff: bool,
    /// Bytes per second of hints handed back, at most.
    pub hint_delivery_rate: ByteSize,
    /// Seconds of hints kept per node: once the oldest hint for a node is
    /// this old, new ones are refused (the partitions are marked for
    /// repair instead).
    pub hint_window: u64,
    /// Bytes of hints kept per node at most; past them, likewise.
    pub hint_max_bytes: ByteSize,
    /// Seconds within which every partition a node replicates is compared
    /// with each other replica (anti-entropy); 0 turns it off.
    pub anti_entropy_interval: u64,
    /// Bytes per second anti-entropy exchanges put on the wire, at most.
    pub anti_entropy_rate: ByteSize,
    /// Keys per second anti-entropy exchanges read or send, at most.
    pub anti_entropy_keys_rate: u64,
    /// Bytes per second of partitions transferred to this node when the
    /// ring changes, at most.
    pub transfer_rate: ByteSize,
    /// Partitions transferred to this node at once, at most.
    pub transfers: usize,
    /// Seconds a node keeps its copy of a partition it no longer
    /// replicates before dropping it.
    pub transfer_drop_delay: u64,
    /// Whether a fallback may stand in for a replica that is down, its
    /// acknowledgement counting towards W (sloppy quorum); else only a
    /// key's own replicas count.
    pub sloppy_quorum: bool,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            port: 6379,
            peer_port: None,
            data_dir: PathBuf::from("./data"),
            durability: Durability::Os,
            log_level: "info".into(),
            maxclients: 10_000,
            proto_max_bulk_len: ByteSize(512 * 1024 * 1024),
            client_query_buffer_limit: ByteSize(1024 * 1024 * 1024),
            requirepass: None,
            partitions: 256,
            seeds: Vec::new(),
            n: None,
            r: None,
            w: None,
            request_timeout: 2000,
            gossip_interval: 1000,
            phi_threshold: 8.0,
            io_threads: 0,
            storage_threads: 0,
            cache_size: ByteSize(64 * 1024 * 1024),
            object_cache_size: ByteSize(256 * 1024 * 1024),
            tombstone_grace: 3 * 3600,
            max_siblings: 100,
            hinted_handoff: true,
            hint_delivery_rate: ByteSize(10 * 1024 * 1024),
            hint_window: 3 * 3600,
            hint_max_bytes: ByteSize(1024 * 1024 * 1024),
            sloppy_quorum: true,
            anti_entropy_interval: 600,
            anti_entropy_rate: ByteSize(10 * 1024 * 1024),
            anti_entropy_keys_rate: 10_000,
            transfer_rate: ByteSize(20 * 1024 * 1024),
            transfers: 2,
            transfer_drop_delay: 60,
            shutdown_timeout: 10,
        }
    }
}

impl Config {
    /// Loads defaults < `file` < `SHOAL_*` environment < `overrides`
    /// (`(key, value)` pairs from flags, keys in kebab-case).
    ///
    /// # Errors
    /// An unreadable file, an unknown key or a value of the wrong type.
    pub fn load(file: Option<&std::path::Path>, overrides: &[(&str, String)]) -> Result<Self> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SHOAL").convert_case(config::Case::Kebab).source(Some(settings_in_env())),
        );
        for (key, value) in overrides {
            builder = builder.set_override(*key, value.as_str()).map_err(|e| Error::Config(e.to_string()))?;
        }
        let config: Self =
            builder.build().and_then(config::Config::try_deserialize).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects settings the node cannot run with.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if !crate::ring::valid_partition_count(self.partitions) {
            return bad(format!(
                "partitions = {} must be a power of two up to {}",
                self.partitions,
                crate::ring::MAX_PARTITIONS
            ));
        }
        if self.port != 0 && self.peer_port() == self.port {
            return bad(format!("peer-port {} must differ from port", self.port));
        }
        let (n, r, w) = self.quorum();
        if n == 0 || !(1..=n).contains(&r) || !(1..=n).contains(&w) {
            return bad(format!("n = {n}, r = {r}, w = {w}: need 1 <= r <= n and 1 <= w <= n"));
        }
        if self.request_timeout == 0 {
            return bad("request-timeout must be at least 1 ms".into());
        }
        if !(10..=60_000).contains(&self.gossip_interval) {
            return bad(format!("gossip-interval = {} must be between 10 and 60000 ms", self.gossip_interval));
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold >= 1.0) {
            return bad(format!("phi-threshold = {} must be at least 1", self.phi_threshold));
        }
        if self.max_siblings == 0 {
            return bad("max-siblings must be at least 1".into());
        }
        if self.maxclients == 0 {
            return bad("maxclients must be at least 1".into());
        }
        if self.storage_threads > MAX_STORAGE_THREADS {
            return bad(format!("storage-threads must be at most {MAX_STORAGE_THREADS} (0 = one per core)"));
        }
        if self.proto_max_bulk_len.0 < 1024 {
            return bad("proto-max-bulk-len must be at least 1kb".into());
        }
        if self.client_query_buffer_limit.0 < 1024 * 1024 {
            return bad("client-query-buffer-limit must be at least 1mb".into());
        }
        if self.hint_window == 0 {
            return bad("hint-window must be at least 1 second".into());
        }
        if self.anti_entropy_rate.0 == 0 || self.anti_entropy_keys_rate == 0 {
            return bad("anti-entropy-rate and anti-entropy-keys-rate must be at least 1".into());
        }
        if self.transfer_rate.0 == 0 || self.transfers == 0 {
            return bad("transfer-rate and transfers must be at least 1".into());
        }
        if self.bind.parse::<std::net::IpAddr>().is_err() {
            return bad(format!("bind = {:?} is not an IP address", self.bind));
        }
        Ok(())
    }

    /// The peer port: configured, or the client port + 10000 (0 when the
    /// client port is 0, so tests get a free one too).
    #[must_use]
    pub fn peer_port(&self) -> u16 {
        self.peer_port.unwrap_or(if self.port == 0 { 0 } else { self.port.wrapping_add(10_000) })
    }

    /// N (for a cluster this node creates), R and W: as configured, else
    /// 3, 2 and 2. A cluster smaller than N keeps a copy on every member,
    /// and R and W never ask for more than that.
    #[must_use]
    pub fn quorum(&self) -> (usize, usize, usize) {
        (self.n.unwrap_or(3), self.r.unwrap_or(2), self.w.unwrap_or(2))
    }

    /// Client-serving threads to run.
    #[must_use]
    pub fn io_threads(&self) -> usize {
        if self.io_threads == 0 { cores() } else { self.io_threads }
    }

    /// Storage shards (and workers) to run.
    #[must_use]
    pub fn storage_threads(&self) -> usize {
        if self.storage_threads == 0 { cores().min(MAX_STORAGE_THREADS) } else { self.storage_threads }
    }
}

/// The `SHOAL_*` environment variables that name settings. Others are
/// reported and ignored: a file's unknown keys are errors (a typo there is
/// the user's), but the environment is shared with other programs.
fn settings_in_env() -> std::collections::HashMap<String, String> {
    let mut found = std::collections::HashMap::new();
    for (name, value) in std::env::vars() {
        let Some(rest) = name.strip_prefix("SHOAL_") else { continue };
        let key = rest.to_ascii_lowercase().replace('_', "-");
        if is_setting(&key) {
            found.insert(name, value);
        } else {
            eprintln!("shoal: ignoring {name} in the environment: there is no setting `{key}`");
        }
    }
    found
}

/// True if `key` names a setting: a config holding only that key fails to
/// deserialize for any reason but an unknown field.
fn is_setting(key: &str) -> bool {
    let probe = config::Config::builder()
        .set_override(key, "0")
        .and_then(|b| b.build())
        .and_then(config::Config::try_deserialize::<Config>);
    !matches!(probe, Err(e) if e.to_string().contains("unknown field"))
}

/// A list given as a TOML array or as one comma-separated string (from the
/// environment or a flag).
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    let items = match Raw::deserialize(d)? {
        Raw::List(items) => items,
        Raw::Text(text) => text.split(',').map(str::to_string).collect(),
    };
    Ok(items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

/// Storage shards at most: each is a database with its own files and
/// background threads.
const MAX_STORAGE_THREADS: usize = 256;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_redis_units() {
        assert_eq!(ByteSize::parse("512mb"), Some(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("1k"), Some(ByteSize(1000)));
        assert_eq!(ByteSize::parse("1GB"), Some(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("42"), Some(ByteSize(42)));
        assert_eq!(ByteSize::parse("12xb"), None);
        assert_eq!(ByteSize::parse("99999999999999gb"), None);
    }

    #[test]
    fn layers_apply_in_order_and_validate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("shoal.toml");
        std::fs::write(&file, "port = 7000\ndurability = \"fsync\"\nproto-max-bulk-len = \"1mb\"\n").expect("write");
        let c = Config::load(Some(&file), &[("port", "7001".into())]).expect("load");
        assert_eq!(c.port, 7001);
        assert_eq!(c.peer_port(), 17001);
        assert_eq!(c.durability, Durability::Fsync);
        assert_eq!(c.proto_max_bulk_len, ByteSize(1 << 20));
        std::fs::write(&file, "prot = 1\n").expect("write");
        assert!(Config::load(Some(&file), &[]).is_err(), "unknown keys are refused");
        assert!(Config::load(None, &[("partitions", "100".into())]).is_err());
        assert!(Config::load(None, &[("port", "7000".into()), ("peer-port", "7000".into())]).is_err());
    }

    #[test]
    fn quorum_defaults_and_validation() {
        assert_eq!(Config::default().quorum(), (3, 2, 2));
        let c = Config::load(None, &[("seeds", "127.0.0.1:16379, 127.0.0.1:16380".into())]).expect("load");
        assert_eq!(c.seeds, ["127.0.0.1:16379", "127.0.0.1:16380"]);
        assert_eq!(c.quorum(), (3, 2, 2));
        assert!(Config::load(None, &[("gossip-interval", "0".into())]).is_err());
        assert!(Config::load(None, &[("phi-threshold", "0.5".into())]).is_err());
        assert!(Config::load(None, &[("n", "3".into()), ("w", "4".into())]).is_err());
        assert!(Config::load(None, &[("r", "0".into())]).is_err());
    }

    #[test]
    fn settings_are_told_apart_from_other_names() {
        for key in ["port", "peer-port", "max-siblings", "seeds", "n", "object-cache-size"] {
            assert!(is_setting(key), "{key}");
        }
        for key in ["cluster-dir", "prot", "log"] {
            assert!(!is_setting(key), "{key}");
        }
    }

    #[test]
    fn the_documented_file_states_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/shoal.toml");
        let c = Config::load(Some(&path), &[]).expect("conf/shoal.toml loads");
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
    }
}
