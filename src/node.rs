//! The composition root: opens storage, builds the ring and the
//! coordinator, starts the client listener and the background tasks, and
//! owns shutdown.
//!
//! Shutdown order: stop accepting and let connections finish their
//! in-flight requests (bounded by `shutdown-timeout`), stop the background
//! tasks, then stop the storage workers and fsync.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, Durability};
use crate::coordinator::{self, Coordinator};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::resp;
use crate::ring::Ring;
use crate::shutdown::{self, Stop, Trigger};
use crate::storage::{self, Store};

/// How often the reaper looks for expired values and old tombstones.
const REAP_INTERVAL: Duration = Duration::from_millis(100);
/// Keys the reaper handles per round at most.
const REAP_BATCH: usize = 1000;

/// A running node.
pub struct Node {
    pub addr: SocketAddr,
    trigger: Trigger,
    tasks: Vec<JoinHandle<()>>,
    store: Arc<Store>,
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

impl Node {
    /// Starts a node: storage, listener, background tasks.
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
            cache_bytes: config.cache_size.0,
            object_cache_bytes: config.object_cache_size.0,
        };
        let store =
            tokio::task::spawn_blocking(move || Store::open(&opts)).await.map_err(|_| Error::ShuttingDown)??;
        let store = Arc::new(store);
        let node_id = store.node_id();
        let ring = Ring::single(node_id, config.partitions);
        let metrics = Arc::new(Metrics::default());
        let settings = coordinator::Settings { max_siblings: config.max_siblings };
        let coordinator = Arc::new(Coordinator::new(ring, Arc::clone(&store), Arc::clone(&metrics), settings));
        let listener = TcpListener::bind((config.bind.as_str(), config.port))
            .await
            .map_err(|e| Error::Config(format!("cannot listen on {}:{}: {e}", config.bind, config.port)))?;
        let addr = listener.local_addr()?;
        let server = Arc::new(resp::Server {
            coordinator,
            config: Arc::clone(&config),
            metrics,
            clients: resp::Clients::default(),
            addr,
            run_id: run_id(),
        });
        let (trigger, stop) = shutdown::signal();
        let tasks = vec![
            tokio::spawn(resp::serve(listener, server, stop.clone())),
            tokio::spawn(reaper(Arc::clone(&store), stop)),
        ];
        tracing::info!(node = %node_id, data_dir = %config.data_dir.display(), durability = ?config.durability, "shoal {} ready: accepting clients on {addr}", env!("CARGO_PKG_VERSION"));
        Ok(Self { addr, trigger, tasks, store })
    }

    /// Stops the node in order and waits for it.
    ///
    /// # Errors
    /// The final storage flush failed.
    pub async fn stop(self) -> Result<()> {
        self.trigger.fire();
        for task in self.tasks {
            let _ = task.await;
        }
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
