//! shoal: a Dynamo-style distributed key-value store that speaks the Redis
//! protocol.
//!
//! # The path of one request
//!
//! ```text
//! client ─RESP─▶ resp (connection → parse → commands → cmd/*) ─▶ coordinator ─▶ storage (fjall)
//!                                                                  │
//!                                                         ring: where the key lives
//! ```
//!
//! [`resp`] reads a client's bytes, decodes requests and runs each command
//! handler; a handler turns the command into a read or a [`Mutation`]
//! (or a context write) and asks the [`coordinator`]. The coordinator finds
//! the key's place on the [`ring`] and reads or writes its replicas' objects;
//! today the ring has one member and the only replica is the local
//! [`storage`]. Objects are [`version`] sibling sets: a write gets a fresh
//! dot from the node's counter and supersedes what its context covers.
//!
//! # Modules
//!
//! | module | role | uses |
//! |---|---|---|
//! | `main.rs` | the `shoal` command: `shoal` / `shoal server` run a node | `config`, `node` |
//! | [`config`] | one `Config`: defaults < TOML < `SHOAL_*` env < flags; `validate()` | — |
//! | [`error`] | the crate `Error`; the one place errors become RESP error lines | — |
//! | [`node`] | composition root: opens storage, starts the listener and the reaper, owns shutdown | all |
//! | [`resp`] | the Redis protocol: connections, request decoding (multibulk and inline), the command table, one file per command family, reply encoding (RESP2/RESP3), MULTI/EXEC | `coordinator`, `config`, `metrics` |
//! | [`coordinator`] | reads and writes of keys: locate, read objects and pick what clients see, apply mutations under a fresh dot | `ring`, `version`, `storage`, `mutation` |
//! | [`mutation`] | what plain Redis writes do to a value, as data (pure) | — |
//! | [`version`] | dots, version vectors, sibling sets, contexts and their encoding (pure) | — |
//! | [`ring`] | MD5 positions, partitions, ownership, preference lists (pure) | `version` (node ids) |
//! | [`storage`] | the only module that touches fjall: keyspaces `data`, `reap`, `meta`; partition-owned worker threads with group commit; the object cache | `version`, `ring` |
//! | [`metrics`] | counters behind INFO | — |
//! | [`glob`] | Redis glob patterns (pure) | — |
//! | [`join`] | running borrowed futures concurrently | — |
//! | [`shutdown`] | the one stop signal | — |
//! | [`clock`] | the wall clock, in milliseconds | — |
//!
//! Still to come, each in the module ../shared/DESIGN.md names: `rpc` (the
//! peer wire protocol), `membership` (gossip and failure detection),
//! `handoff` (hints, ownership transfer), `antientropy` (Merkle trees).
//!
//! # Rules
//!
//! - The pure modules (`version`, `ring`, `mutation`, `glob`) use neither
//!   tokio nor fjall and take the time as an argument.
//! - One owner per dependency: only `storage` imports fjall, only `resp`
//!   speaks RESP.
//! - No blocking call on an async thread: fjall runs on the storage workers
//!   or tokio's blocking pool. Async threads only take short
//!   `std::sync::Mutex` sections (the object cache).
//! - Every spawned task stops on the shutdown signal; every queue, buffer
//!   and frame has a bound.
//!
//! # Where this differs from ../shared/DESIGN.md, and why
//!
//! - **Dot counters are per node, not per key.** DESIGN gives a write the
//!   dot `(node, largest counter of that node known for the key + 1)`. Once
//!   a key's tombstone or expired value is reaped, or after a power loss in
//!   `os` durability, that rule issues a dot again; a stale copy still
//!   carrying the old dot (a lagging replica, a hint in flight) would then
//!   merge as "the same write" and drop the new one, losing an acknowledged
//!   write. Counters instead come from the node's persistent counter
//!   (reserved in fsynced blocks, see `storage/meta.rs`), which is larger
//!   than any counter the node issued before, for any key, so it is also
//!   larger than the key's largest. Contexts fold a new dot into their
//!   vector when they already covered every dot of that node for the key,
//!   which keeps them as compact as per-key counters would.
//! - **A fourth keyspace, `reap`,** schedules background work (expiries to
//!   reclaim, tombstones to remove) by due time, so the reaper reads only
//!   what is due instead of scanning all data.
//! - **Storage keys start with the key's 64-bit ring position** rather than
//!   just the partition number: a partition is still one contiguous range,
//!   and within it keys sit in ring order, which gives SCAN a resumable
//!   numeric cursor (the position) that clients can parse as an integer.
//! - **The operation types (`mutation`) are a pure module of their own**,
//!   so that a forwarded write can travel as data between nodes.

pub mod clock;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod glob;
pub mod join;
pub mod membership;
pub mod metrics;
pub mod mutation;
pub mod node;
pub mod resp;
pub mod ring;
pub mod rpc;
pub mod shutdown;
pub mod storage;
pub mod version;

pub use mutation::Mutation;
