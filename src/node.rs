//! The composition root: opens storage, binds the client and peer ports,
//! builds the membership, the peer connections and the coordinator, starts
//! the listeners and the background tasks, and owns shutdown.
//!
//! Shutdown goes in stages, each bounded by `shutdown-timeout`: stop
//! accepting clients and let their connections finish the requests in
//! flight (which still need the peers); let the coordinator's background
//! work finish (read repair, replication to slow replicas); stop the peer
//! side (server, connections, membership exchange) and the reaper; then
//! stop the storage workers and fsync.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::antientropy;
use crate::config::{Config, Durability};
use crate::coordinator::{self, Coordinator};
use crate::error::{Error, Result};
use crate::handoff;
use crate::membership::{self, Membership};
use crate::metrics::Metrics;
use crate::resp;
use crate::rpc::{self, Faults, Hello, Member, Peers, Request, Response};
use crate::shutdown::{self, Stop, Tracker, Trigger};
use crate::storage::{self, Store};
use crate::version::NodeId;

/// How often the reaper looks for expired values and old tombstones.
const REAP_INTERVAL: Duration = Duration::from_millis(100);
/// Keys the reaper handles per round at most.
const REAP_BATCH: usize = 1000;

/// A running node.
pub struct Node {
    pub id: NodeId,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Where peers connect.
    pub peer_addr: SocketAddr,
    clients: (Trigger, JoinHandle<()>),
    peers: (Trigger, Vec<JoinHandle<()>>, Tracker),
    rpc: Peers,
    coordinator: Arc<Coordinator>,
    store: Arc<Store>,
    grace: Duration,
}

fn run_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("{:016x}{:016x}{:08x}", a, h.finish(), std::process::id())
}

/// Expires and reaps in the background until stopped.
async fn reaper(store: Arc<Store>, mut stop: Stop) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(REAP_INTERVAL) => {}
            () = stop.stopped() => return,
        }
        loop {
            match store.reap_due(crate::clock::now_ms(), REAP_BATCH).await {
                Ok(n) if n == REAP_BATCH && !stop.is_stopped() => {}
                Ok(_) => break,
                Err(e) => {
                    tracing::error!("reaping failed: {e}");
                    break;
                }
            }
        }
    }
}

/// What this node does for its peers: each subsystem answers its own
/// messages, and only members of this node's cluster get key-value ones.
struct PeerService {
    coordinator: Arc<Coordinator>,
    membership: Arc<Membership>,
}

impl rpc::Handler for PeerService {
    async fn handle(&self, from: &Hello, request: Request) -> Response {
        match request {
            Request::Gossip(g) => self.membership.handle(from, g).await,
            Request::Kv(kv) => {
                if self.membership.cluster().is_none_or(|c| c.id != from.cluster) {
                    return Response::Error("TRYAGAIN not a member of this node's cluster".into());
                }
                self.coordinator.serve_peer(kv).await
            }
        }
    }
}

async fn bind(host: &str, port: u16, what: &str) -> Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::Config(format!("cannot listen for {what} on {host}:{port}: {e}")))
}

impl Node {
    /// Starts a node: storage, listeners, background tasks.
    ///
    /// # Errors
    /// Storage that cannot be opened, a port that cannot be bound.
    pub async fn start(config: Config) -> Result<Self> {
        let config = Arc::new(config);
        let opts = storage::Options {
            path: config.data_dir.clone(),
            partitions: config.partitions,
            fsync: config.durability == Durability::Fsync,
            workers: config.storage_threads(),
            tombstone_grace_ms: config.tombstone_grace.saturating_mul(1000),
            // Membership decides once it knows the cluster's size.
            sole_replica: false,
            // Removals wait for anti-entropy's evidence: look again about
            // once per pass (hourly with anti-entropy off, when none comes).
            settle_retry_ms: match config.anti_entropy_interval {
                0 => 3_600_000,
                s => s.saturating_mul(1000),
            },
            cache_bytes: config.cache_size.0,
            object_cache_bytes: config.object_cache_size.0,
            hint_bounds: storage::HintBounds {
                window_ms: config.hint_window.saturating_mul(1000),
                max_bytes: config.hint_max_bytes.0,
            },
        };
        let store =
            tokio::task::spawn_blocking(move || Store::open(&opts)).await.map_err(|_| Error::ShuttingDown)??;
        let store = Arc::new(store);
        let id = store.node_id();
        let listener = bind(&config.bind, config.port, "clients").await?;
        let peer_listener = bind(&config.bind, config.peer_port(), "peers").await?;
        let (addr, peer_addr) = (listener.local_addr()?, peer_listener.local_addr()?);
        let me = Member { id, client_addr: addr.to_string(), peer_addr: peer_addr.to_string() };
        let (client_trigger, client_stop) = shutdown::signal();
        let (peer_trigger, stop) = shutdown::signal();
        // Room in a peer frame for an object with a value of the largest size.
        let max_frame =
            usize::try_from(config.proto_max_bulk_len.0).unwrap_or(usize::MAX / 4).saturating_mul(2) + (16 << 20);
        let hello = Hello { versions: rpc::VERSIONS, cluster: 0, partitions: config.partitions, member: me.clone() };
        let peers = Peers::new(hello, Duration::from_millis(config.request_timeout), max_frame, stop.clone());
        let (n, r, w) = config.quorum();
        let membership_settings = membership::Settings {
            seeds: config.seeds.clone(),
            partitions: config.partitions,
            n,
            n_configured: config.n.is_some(),
            gossip_interval: Duration::from_millis(config.gossip_interval),
            phi_threshold: config.phi_threshold,
        };
        let membership = Membership::start(me, membership_settings, peers.clone(), Arc::clone(&store)).await?;
        let settings = coordinator::Settings {
            r,
            w,
            max_siblings: config.max_siblings,
            max_value_len: usize::try_from(config.proto_max_bulk_len.0).unwrap_or(usize::MAX),
            hinted_handoff: config.hinted_handoff,
            sloppy_quorum: config.sloppy_quorum,
        };
        let metrics = Arc::new(Metrics::default());
        let coordinator = Arc::new(Coordinator::new(
            Arc::clone(&store),
            Arc::clone(&membership),
            peers.clone(),
            Arc::clone(&metrics),
            settings,
        ));
        let repairs = Arc::new(antientropy::Repairs::default());
        let transfer_progress = Arc::new(handoff::transfer::Progress::default());
        let server = Arc::new(resp::Server::new(
            Arc::clone(&coordinator),
            Arc::clone(&config),
            Arc::clone(&metrics),
            Arc::clone(&repairs),
            Arc::clone(&transfer_progress),
            addr,
            run_id(),
        ));
        let service =
            Arc::new(PeerService { coordinator: Arc::clone(&coordinator), membership: Arc::clone(&membership) });
        let peer_tasks = Tracker::default();
        // Peers first: members starting together answer each other's
        // claims while they settle which actor each writes as.
        let mut tasks = vec![tokio::spawn(rpc::serve(
            peer_listener,
            peers.clone(),
            service,
            max_frame,
            stop.clone(),
            peer_tasks.clone(),
        ))];
        membership.begin().await?;
        tasks.push(tokio::spawn(Arc::clone(&membership).run(stop.clone())));
        let handoff = handoff::Handoff {
            store: Arc::clone(&store),
            membership: Arc::clone(&membership),
            peers: peers.clone(),
            metrics: Arc::clone(&metrics),
            rate: config.hint_delivery_rate.0,
        };
        tasks.push(tokio::spawn(handoff.run(stop.clone())));
        let transfers = handoff::transfer::Transfers {
            store: Arc::clone(&store),
            membership: Arc::clone(&membership),
            peers: peers.clone(),
            metrics: Arc::clone(&metrics),
            rate: config.transfer_rate.0,
            at_once: config.transfers,
            timeout: Duration::from_millis(config.request_timeout.saturating_mul(5)).max(Duration::from_secs(10)),
            drop_delay: Duration::from_secs(config.transfer_drop_delay),
            progress: Arc::clone(&transfer_progress),
        };
        tasks.push(tokio::spawn(transfers.run(stop.clone())));
        let exchange = antientropy::AntiEntropy {
            store: Arc::clone(&store),
            membership: Arc::clone(&membership),
            peers: peers.clone(),
            metrics: Arc::clone(&metrics),
            interval: Duration::from_secs(config.anti_entropy_interval),
            bytes_per_second: config.anti_entropy_rate.0,
            keys_per_second: config.anti_entropy_keys_rate,
            // Bulk requests may wait behind others of their kind.
            timeout: Duration::from_millis(config.request_timeout.saturating_mul(5)).max(Duration::from_secs(10)),
            repairs: Arc::clone(&repairs),
        };
        tasks.push(tokio::spawn(exchange.run(stop.clone())));
        tasks.push(tokio::spawn(reaper(Arc::clone(&store), stop)));
        let client_task = tokio::spawn(resp::serve(listener, server, client_stop));
        let cluster = membership.cluster().map_or_else(|| "joining".to_string(), |c| format!("{:016x}", c.id));
        tracing::info!(node = %id, peers = %peer_addr, data_dir = %config.data_dir.display(), durability = %config.durability, cluster, r, w, "shoal {} ready: accepting clients on {addr}", env!("CARGO_PKG_VERSION"));
        Ok(Self {
            id,
            addr,
            peer_addr,
            clients: (client_trigger, client_task),
            peers: (peer_trigger, tasks, peer_tasks),
            rpc: peers,
            coordinator,
            store,
            grace: Duration::from_secs(config.shutdown_timeout),
        })
    }

    /// The test seam of this node's calls to its peers: drop, delay or
    /// refuse them by peer address.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        self.rpc.faults()
    }

    /// Stops the node in order and waits for it.
    ///
    /// # Errors
    /// The final storage flush failed.
    pub async fn stop(self) -> Result<()> {
        let (client_trigger, client_task) = self.clients;
        client_trigger.fire();
        let _ = client_task.await;
        if !self.coordinator.background().wait(self.grace).await {
            tracing::warn!("background work still running after {:?}; stopping anyway", self.grace);
        }
        let (peer_trigger, tasks, peer_tasks) = self.peers;
        peer_trigger.fire();
        for task in tasks {
            let _ = task.await;
        }
        peer_tasks.wait(self.grace).await;
        self.store.close().await?;
        tracing::info!("shoal stopped; data flushed");
        Ok(())
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_requested() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
