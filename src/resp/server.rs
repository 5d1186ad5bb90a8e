//! The client listener: accepts connections, enforces `maxclients`, and on
//! shutdown stops accepting and waits (up to `shutdown-timeout`) for the
//! connections to finish their in-flight requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::metrics;
use crate::shutdown::Stop;

use super::connection;
use super::session::Server;

#[cfg(unix)]
fn raw_fd(socket: &TcpStream) -> i64 {
    i64::from(std::os::fd::AsRawFd::as_raw_fd(socket))
}

#[cfg(not(unix))]
fn raw_fd(_: &TcpStream) -> i64 {
    -1
}

/// Accepts clients on `listener` until `stop` fires, then waits for them.
pub async fn serve(listener: TcpListener, server: Arc<Server>, mut stop: Stop) {
    // Every connection task holds a sender; when all are dropped, all are done.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.stopped() => break,
        };
        let (mut socket, addr) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(e) => {
                // Out of file descriptors, typically: wait and retry.
                tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        metrics::add(&server.metrics.connections_received, 1);
        if server.clients.count() >= server.config.maxclients {
            metrics::add(&server.metrics.connections_rejected, 1);
            tokio::spawn(async move {
                let _ = socket.write_all(b"-ERR max number of clients reached\r\n").await;
            });
            continue;
        }
        let _ = socket.set_nodelay(true);
        let laddr = socket.local_addr().unwrap_or(server.addr);
        let client = server.clients.register(addr, laddr, raw_fd(&socket));
        let (server, stop, done) = (Arc::clone(&server), stop.clone(), done_tx.clone());
        tokio::spawn(async move {
            connection::serve(server, socket, client, stop).await;
            drop(done);
        });
    }
    drop(listener);
    drop(done_tx);
    let deadline = Duration::from_secs(server.config.shutdown_timeout);
    if tokio::time::timeout(deadline, done_rx.recv()).await.is_err() {
        tracing::warn!("{} connections still busy after {deadline:?}; closing them", server.clients.count());
    }
}
