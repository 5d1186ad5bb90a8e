//! shoal: a Dynamo-style distributed key-value store that speaks the Redis
//! protocol.
//!
//! # The path of one request
//!
//! ```text
//! client ─RESP─▶ resp (connection → parse → commands → cmd/*) ─▶ coordinator ─┬─▶ storage (fjall), local replica
//!                                                                  │         └─▶ rpc ─▶ peers' replicas
//!                                                     membership: the ring, who the replicas are
//! ```
//!
//! [`resp`] reads a client's bytes, decodes requests and runs each command
//! handler; a handler turns the command into a read or a [`Mutation`] (or
//! a context write) and asks the [`coordinator`]. The coordinator finds the
//! key's replicas on the ring of the current [`membership`] view, reads
//! them at quorum (copies from R of them, digests of the others' version
//! histories, then repairs stale ones) or applies the write to its
//! own copy in [`storage`] under a fresh dot and sends the new object to
//! the other replicas over [`rpc`], answering after W acknowledgements.
//! Objects are [`version`] sibling sets: a write supersedes what its
//! context covers, and replicas merge by the same rule.
//!
//! # Modules
//!
//! | module | role | uses |
//! |---|---|---|
//! | `main.rs`, `status.rs`, `repair.rs`, `change.rs`, `alloc_count.rs` | the `shoal` command: `shoal` / `shoal server` run a node, `shoal status` prints a node's SHOAL.STATUS as a table (a small RESP client of its own), `shoal repair`, and `shoal join/leave/remove/plan/commit` send the matching SHOAL. command; the global allocator, mimalloc counting its allocations for INFO (registered with `metrics`) | `config`, `node`, `metrics` |
//! | [`config`] | one `Config`: defaults < TOML < `SHOAL_*` env < flags; `validate()` | — |
//! | [`error`] | the crate `Error`; the one place errors become RESP error lines | — |
//! | [`node`] | composition root: opens storage, binds the ports, wires membership, peers and coordinator, answers peers, owns the staged shutdown | all |
//! | [`resp`] | the Redis protocol: connections, request decoding (multibulk and inline), the command table, one file per command family, reply encoding (RESP2/RESP3), MULTI/EXEC | `coordinator`, `config`, `metrics` |
//! | [`coordinator`] | reads and writes of keys: sloppy-quorum reads with read repair and replicated writes (fallbacks standing in for replicas that are down; PW/PR; during a ring change, W and R counted in the replica sets before and after it), forwarding, cluster-wide SCAN/DBSIZE/FLUSHALL, and what a node does for its peers | `membership`, `rpc`, `storage`, `version`, `mutation`, `ring` |
//! | [`membership`] | the cluster record, the member table spread by gossip (`table`), the phi-accrual failure detector (`detector`), the ring as this node keeps, spreads and (as claimant) decides it (`ring.rs`), and the `View` the coordinator reads: members, who is up, the ring and the ring a change leads to, effective N | `rpc`, `ring`, `storage` (`meta`) |
//! | [`rpc`] | the peer wire protocol: handshake with versions and cluster identity (`wire`), messages by subsystem (`kv`, `gossip`); multiplexed client with typed errors, timeouts, backoff and a fault seam for tests; server | `version`, `mutation` |
//! | [`mutation`] | what plain Redis writes do to a value, as data (pure) | — |
//! | [`version`] | dots, version vectors, sibling sets, contexts and their encoding (pure) | — |
//! | [`ring`] | MD5 positions, partitions, preference lists; claim (`claim`: who owns what after joins and leaves, moving as little as balance needs); what a change moves (`transfer`); the ring as cluster state with its epoch, staged changes and the change in progress (`state`) (all pure) | `version` (node ids) |
//! | [`storage`] | the only module that touches fjall: shards (a fjall database each, with keyspaces `data`, `reap` and `hints`, holding a share of the partitions) and the root's `meta`; a worker thread per shard with group commit; the object cache; every partition's key counts and hash tree, updated by each write, saved by a clean stop and rebuilt in the background after a crash (start-up reads no keys); the evidence that every replica holds a dead object (`settled`), which reaping needs; the actor this process writes as | `version`, `ring`, `antientropy::tree` (pure) |
//! | [`handoff`] | hinted handoff: delivering the hints this node keeps (as a coordinator for replicas that missed a write, or as a fallback standing in for a replica that was down) once their node is back, or to the key's current replicas once the ring moved; ownership transfer (`transfer`): pulling the partitions this node gains in a ring change from a current replica, and dropping the copies it no longer replicates | `storage`, `membership`, `rpc`, `metrics` |
//! | [`antientropy`] | per-partition hash trees (Tictac: XOR of per-key hashes of position and version summary, O(1) to update; pure, `tree`) and the background exchange that compares them with the other replicas' and repairs the keys that differ, both ways, on the peer layer's bulk lane, rate-limited; what operators ask of it (SHOAL.REPAIR, `repairs`) | `storage`, `membership`, `rpc`, `metrics` |
//! | [`metrics`] | counters behind INFO; the hook through which the binary's allocator reports its count | — |
//! | [`glob`] | Redis glob patterns (pure) | — |
//! | [`join`] | running borrowed futures concurrently | — |
//! | [`shutdown`] | the stop signals and the tracker of background tasks | — |
//! | [`clock`] | the wall clock, in milliseconds | — |
//! | [`random`] | random 64-bit numbers (ids, gossip partners) | — |
//! | [`pace`] | keeping bulk background work within keys and bytes a second | `shutdown` |
//!
//! # Rules
//!
//! - No unsafe code in the library (`forbid`). The one exception is the
//!   binary's counting allocator (`alloc_count.rs`): a global allocator is
//!   an unsafe trait to implement.
//! - The pure modules (`version`, `ring`, `mutation`, `glob`,
//!   `antientropy::tree`) use neither
//!   tokio nor fjall and take the time as an argument.
//! - One owner per dependency: only `storage` imports fjall, only `resp`
//!   speaks RESP, only `rpc` knows the peer wire format.
//! - No blocking call on an async thread: fjall runs on the storage workers
//!   or tokio's blocking pool. Async threads only take short
//!   `std::sync::Mutex` sections (the object cache, connection tables).
//! - Every network call has a timeout; every queue, buffer and frame has a
//!   bound. Spawned work ends with the node: connections and background
//!   tasks stop on the shutdown signals, and the tasks that outlive a reply
//!   (read repair, replication to slow replicas, peer requests) are tracked
//!   and waited for before storage closes.
//!
//! # Where this differs from ../shared/DESIGN.md, and why
//!
//! - **Dots are issued by actors, not by nodes.** DESIGN gives a write the
//!   dot `(node, largest counter of that node known for the key + 1)`. Any
//!   rule that counts from what a disk holds issues a dot again once the
//!   disk goes back in time: a restore from a backup, a rolled-back
//!   snapshot, two processes started from copies of one directory, a
//!   reaped tombstone, a power loss in `os` durability. Replicas holding
//!   the first write under that dot then drop the second as already seen,
//!   losing an acknowledged write (Riak's "kv679"). So a process writes as
//!   an actor (`version::Actor`) and counts its dots in memory
//!   (`storage/meta.rs`): a fresh random actor, unless the last run stopped
//!   cleanly (so the disk holds every write of its actor, and records its
//!   last counter) and more than half of the other members vouch that no
//!   run of this node came after it (`membership::claim`: a member grants
//!   a claim unless it knows a newer version of the node, once). A
//!   restored, copied or crashed node thus writes as a new actor,
//!   concurrent with what it forgot; clean restarts keep theirs, so vectors
//!   grow only with crashes, restores and starts cut off from most peers.
//!   A single node bounds them at once: with no other copy to reconcile, a
//!   write forgets the actors whose values it superseded
//!   (`Object::forget_superseded`). In a cluster the entries are
//!   tombstones of dots and go when their key's tombstone goes (once
//!   anti-entropy shows every replica holds it); a live key keeps them. Contexts fold a new dot into their vector
//!   when they already covered every dot of that actor for the key.
//! - **A member's version is a persisted generation with the clock as its
//!   floor.** DESIGN says never the wall clock. A generation read from disk
//!   goes back with the disk: a node restored from a backup announced the
//!   same version its later run had, with another address, and peers kept
//!   the stale entry (equal versions look equal in a digest). So a start
//!   takes `max(saved + 1, now in ms)`, as Cassandra's generation is the
//!   start time: the saved value still makes it rise when the clock goes
//!   back, and a node that sees its own entry newer elsewhere moves past it.
//! - **A fourth keyspace, `reap`,** schedules background work (expiries to
//!   reclaim, tombstones to remove) by due time, so the reaper reads only
//!   what is due instead of scanning all data.
//! - **Storage keys start with the key's 64-bit ring position** rather than
//!   just the partition number: a partition is still one contiguous range,
//!   and within it keys sit in ring order, which gives SCAN a resumable
//!   numeric cursor (the position) that clients can parse as an integer.
//! - **The operation types (`mutation`) are a pure module of their own**,
//!   so that a forwarded write can travel as data between nodes.
//! - **Which replica coordinates.** DESIGN lets any node of the preference
//!   list coordinate a write. A write whose result depends on the current
//!   value (INCR, APPEND, SET NX, DEL…) goes to the key's first reachable
//!   replica instead: two coordinators would each read the same value and
//!   each write their own result, losing an increment or granting a lock
//!   twice. A plain SET, or a context write, is coordinated by any replica.
//! - **A context covers only what the coordinator has seen.** Its claims
//!   about any node are capped at the coordinator's copy (which first
//!   merges the other replicas' copies, read at quorum), so a forged,
//!   corrupt or misdirected context cannot make replicas drop acknowledged
//!   writes it never saw.
//! - **A coordinator's hint names the key, not the value.** DESIGN's hints
//!   hold the write. A hint kept by the coordinator (a replica of the key,
//!   which holds the write in its data) records only which replica missed
//!   which key (`storage`'s `hints` keyspace, per shard); delivery sends
//!   the key's current object, which includes the write and anything after
//!   it. A hint kept by a fallback standing in for a replica holds the
//!   object itself, as DESIGN says.
//! - **Only a replica coordinates a write.** With every replica of a key
//!   down, a fallback could coordinate in Dynamo; here the write is refused
//!   (NOQUORUM, nothing written), as a context write needs the
//!   coordinator's own copy to hold what it supersedes. With N = 3 that
//!   takes three nodes of one preference list down at once.
//! - **Tombstones go on evidence, bounded by a grace period.** DESIGN
//!   removes a tombstone once all replicas have it. Here a node removes a
//!   dead object (tombstone or expired value) once `tombstone-grace` has
//!   passed and a round of anti-entropy exchanges that began after that
//!   compared its partition with every other replica and repaired nothing
//!   in its leaf (`storage/settled.rs`); a single node (N = 1) needs no
//!   evidence. A copy that missed the delete and arrives from outside the
//!   replica set later than the grace period (a backup restored late)
//!   can bring the value back, as in Cassandra (`gc_grace_seconds`).
//! - **A ring change ends in one epoch, not partition by partition.**
//!   DESIGN gives each partition to its new owner in the next epoch once
//!   its transfer is done. A partition's replica set depends on the owners
//!   of the N partitions from it, so handing over owners one at a time
//!   would change replica sets in steps no plan showed. Here a change
//!   (`ring::state`) keeps the old owners and lists the copies to make,
//!   and the claimant makes the new owners current in one epoch once every
//!   copy is reported done. Meanwhile requests go to the old replicas and
//!   the gaining nodes and need W (or R) of the old replica set and W (or
//!   R) of the new one (`View::target_indices`), so W of the old replicas
//!   hold every acknowledged write (DESIGN's rule) and W of the new ones
//!   too, and nodes on either side of the change's end agree; a gaining
//!   node that fails costs no more than a replica that fails.
//! - **Staged changes, or at once.** DESIGN shows a plan before a change.
//!   SHOAL.JOIN, SHOAL.LEAVE and SHOAL.REMOVE stage a change that
//!   SHOAL.PLAN shows and SHOAL.COMMIT starts (Riak's cluster plan and
//!   commit), unless given `NOW`; a node started with seeds commits its
//!   own join at once, as a new Cassandra node bootstraps, since that is
//!   how clusters are started.
//! - **The claimant needs a majority.** DESIGN has one claimant decide.
//!   Liveness picks it (the lowest-id owner up), so a network partition
//!   can give each side one; here a claimant decides only while it sees
//!   more than half of the owners up, those staged for removal aside
//!   (`RingState::majority_up`), so at most one side changes the ring,
//!   and only once it has fetched the newest ring of the members up since
//!   it became claimant. `SHOAL.REMOVE … FORCE` on the claimant overrides
//!   the majority, for a cluster that lost most members for good.

#![forbid(unsafe_code)]

pub mod antientropy;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod glob;
pub mod handoff;
pub mod join;
pub mod membership;
pub mod metrics;
pub mod mutation;
pub mod node;
pub mod pace;
pub mod random;
pub mod resp;
pub mod ring;
pub mod rpc;
pub mod shutdown;
pub mod storage;
pub mod version;

pub use mutation::Mutation;
