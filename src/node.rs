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

use crate::config::{Config, Durability};
use crate::coordinator::{self, Coordinator};
use crate::error::{Error, Result};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::resp;
use crate::rpc::{self, Member, Peers, Request, Response};
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

/// What this node does for its peers.
struct PeerService {
    coordinator: Arc<Coordinator>,
    membership: Arc<Membership>,
}

fn answer<T>(result: Result<T>, ok: impl FnOnce(T) -> Response) -> Response {
    match result {
        Ok(v) => ok(v),
        Err(e) => Response::Error(e.resp_message()),
    }
}

impl rpc::Handler for PeerService {
    async fn handle(&self, _from: &Member, request: Request) -> Response {
        let c = &self.coordinator;
        match request {
            Request::Ping => Response::Pong,
            Request::Members(list) => {
                self.membership.learn(&list);
                Response::Members(self.membership.view().members.clone())
            }
            Request::Read { key } => answer(c.replica_read(&key).await, Response::Object),
            Request::Merge { key, object } => answer(c.replica_merge(&key, &object).await, |()| Response::Done),
            Request::Write { key, mutation } => answer(c.forwarded_write(&key, mutation).await, Response::Outcome),
            Request::WriteVersions { key, context, value, ttl_ms, w } => answer(
                c.forwarded_write_versions(&key, context, value, ttl_ms, w.map(|w| w as usize)).await,
                |(context, superseded)| Response::Written { context, superseded: superseded as u64 },
            ),
            Request::Scan { from, to, count, pattern } => {
                answer(c.scan_local(from, to, count as usize, pattern.as_ref()).await, |(keys, examined, next)| {
                    Response::Keys { keys, examined: u32::try_from(examined).unwrap_or(u32::MAX), next }
                })
            }
            Request::Tallies => Response::Tallies(c.local_tallies()),
            Request::FlushAll => answer(c.store().flush_all().await, |()| Response::Done),
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
            reap_objects: config.quorum().0 == 1,
            cache_bytes: config.cache_size.0,
            object_cache_bytes: config.object_cache_size.0,
        };
        let store =
            tokio::task::spawn_blocking(move || Store::open(&opts)).await.map_err(|_| Error::ShuttingDown)??;
        let store = Arc::new(store);
        let id = store.node_id();
        let listener = bind(&config.bind, config.port, "clients").await?;
        let peer_listener = bind(&config.bind, config.peer_port(), "peers").await?;
        let (addr, peer_addr) = (listener.local_addr()?, peer_listener.local_addr()?);
        let me = Member {
            id,
            client_addr: addr.to_string(),
            peer_addr: peer_addr.to_string(),
            epoch: crate::clock::now_ms(),
        };
        let (client_trigger, client_stop) = shutdown::signal();
        let (peer_trigger, stop) = shutdown::signal();
        // Room in a peer frame for an object with a value of the largest size.
        let max_frame =
            usize::try_from(config.proto_max_bulk_len.0).unwrap_or(usize::MAX / 4).saturating_mul(2) + (16 << 20);
        let peers = Peers::new(me.clone(), Duration::from_millis(config.request_timeout), max_frame, stop.clone());
        let membership = Arc::new(Membership::new(me.clone(), config.partitions, config.seeds.clone(), peers.clone()));
        let (n, r, w) = config.quorum();
        let settings = coordinator::Settings {
            n,
            r,
            w,
            max_siblings: config.max_siblings,
            max_value_len: usize::try_from(config.proto_max_bulk_len.0).unwrap_or(usize::MAX),
        };
        let metrics = Arc::new(Metrics::default());
        let coordinator = Arc::new(Coordinator::new(
            Arc::clone(&store),
            Arc::clone(&membership),
            peers,
            Arc::clone(&metrics),
            settings,
        ));
        let server =
            Arc::new(resp::Server::new(Arc::clone(&coordinator), Arc::clone(&config), metrics, addr, run_id()));
        let service =
            Arc::new(PeerService { coordinator: Arc::clone(&coordinator), membership: Arc::clone(&membership) });
        let peer_tasks = Tracker::default();
        let client_task = tokio::spawn(resp::serve(listener, server, client_stop));
        let tasks = vec![
            tokio::spawn(rpc::serve(peer_listener, me, service, max_frame, stop.clone(), peer_tasks.clone())),
            tokio::spawn(Arc::clone(&membership).run(stop.clone())),
            tokio::spawn(reaper(Arc::clone(&store), stop)),
        ];
        tracing::info!(node = %id, peers = %peer_addr, data_dir = %config.data_dir.display(), durability = %config.durability, n, r, w, "shoal {} ready: accepting clients on {addr}", env!("CARGO_PKG_VERSION"));
        Ok(Self {
            id,
            addr,
            peer_addr,
            clients: (client_trigger, client_task),
            peers: (peer_trigger, tasks, peer_tasks),
            coordinator,
            store,
            grace: Duration::from_secs(config.shutdown_timeout),
        })
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
