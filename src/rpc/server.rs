//! Serving peers: accepts connections on the peer port, exchanges
//! handshakes, and answers each request with the node's [`Handler`].
//!
//! A peer whose handshake does not fit (another cluster, another partition
//! count, no common protocol version) gets a refusal naming why, and the
//! node logs it. Requests on one connection are handled concurrently (each
//! in its own task, at most [`IN_FLIGHT`] at once per connection) and
//! their responses written in completion order through one writer. A
//! request of a kind this node does not know gets an error response; a
//! connection that sends anything malformed (a bad handshake, an oversized
//! or undecodable frame) is closed at once, as are all connections when
//! the node stops; nothing else is affected. At most [`MAX_CONNECTIONS`]
//! peer connections are served at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::shutdown::{Stop, Tracker};

use super::client::Peers;
use super::wire::{Greeting, Hello, Request, Response, Undecodable, handshake, parse_handshake, refusal, split_frame};

/// Requests one connection may have in progress.
pub const IN_FLIGHT: usize = 1024;
/// Peer connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a new connection gets to introduce itself.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the node does with a peer's request.
pub trait Handler: Send + Sync + 'static {
    /// Answers `request` from the peer that introduced itself as `from`.
    fn handle(&self, from: &Hello, request: Request) -> impl Future<Output = Response> + Send;
}

/// Serves peers on `listener` until `stop` fires, introducing this node as
/// `peers` does. Connections and requests run as tasks of `tasks`, so the
/// node can wait for them.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    peers: Peers,
    handler: Arc<H>,
    max_frame: usize,
    mut stop: Stop,
    tasks: Tracker,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.stopped() => return,
        };
        let (socket, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("peer accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::warn!(peer = %addr, "too many peer connections ({MAX_CONNECTIONS}); closing this one");
            continue;
        };
        let (me, handler, stop, inner) = (peers.hello(), Arc::clone(&handler), stop.clone(), tasks.clone());
        tasks.spawn(async move {
            if let Err(e) = serve_peer(socket, &me, handler, max_frame, stop, inner).await {
                tracing::debug!(peer = %addr, "peer connection closed: {e}");
            }
            drop(slot);
        });
    }
}

async fn serve_peer<H: Handler>(
    socket: TcpStream,
    me: &Hello,
    handler: Arc<H>,
    max_frame: usize,
    mut stop: Stop,
    tasks: Tracker,
) -> Result<(), String> {
    let _ = socket.set_nodelay(true);
    let (mut rd, wr) = socket.into_split();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let from = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        loop {
            match parse_handshake(&buf)? {
                Some((Greeting::Hello(hello), used)) => {
                    let _ = buf.split_to(used);
                    return Ok(hello);
                }
                Some((Greeting::Refused(why), _)) => return Err(format!("refused a connection it opened: {why}")),
                None => {}
            }
            if rd.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("closed during the handshake".to_string());
            }
        }
    })
    .await
    .map_err(|_| "no handshake".to_string())??;
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    if let Some(why) = me.refuses(&from) {
        tracing::warn!(peer = %from.member.peer_addr, id = %from.member.id, "refused a peer: {why}");
        wr.write_all(&refusal(&why)).await.map_err(|e| e.to_string())?;
        let _ = wr.shutdown().await;
        return Err(why);
    }
    let from = Arc::new(from);
    wr.write_all(&handshake(me)).await.map_err(|e| e.to_string())?;
    wr.flush().await.map_err(|e| e.to_string())?;

    let (responses, queue) = mpsc::channel::<BytesMut>(IN_FLIGHT);
    let writer = tokio::spawn(write_responses(wr, queue));
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let result = loop {
        match split_frame(&mut buf, max_frame) {
            Ok(Some((id, subsystem, kind, payload))) => {
                let request = match Request::decode(subsystem, kind, &payload) {
                    Ok(r) => r,
                    Err(Undecodable::Unknown(subsystem, kind)) => {
                        // A newer peer: say so, and carry on.
                        let mut frame = BytesMut::new();
                        Response::Error(format!("ERR unknown peer message {subsystem}.{kind}")).encode(id, &mut frame);
                        if responses.send(frame).await.is_err() {
                            break Ok(());
                        }
                        continue;
                    }
                    Err(e) => break Err(format!("malformed request: {e}")),
                };
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else { break Ok(()) };
                let (handler, from, responses) = (Arc::clone(&handler), Arc::clone(&from), responses.clone());
                let mut answer = Box::pin(async move {
                    let response = handler.handle(&from, request).await;
                    let mut frame = BytesMut::new();
                    response.encode(id, &mut frame);
                    let _ = responses.send(frame).await;
                    drop(permit);
                });
                // Most answers are ready at once (a cached read): give the
                // request one poll here and spawn a task only if it waits.
                let waker = std::task::Waker::noop();
                if answer.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_pending() {
                    tasks.spawn(answer);
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        buf.reserve(16 * 1024);
        let read = tokio::select! {
            read = rd.read_buf(&mut buf) => read,
            () = stop.stopped() => break Ok(()),
        };
        match read {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    // The peer left, misbehaved, or the node is stopping: close now rather
    // than keep the socket open for answers nobody will wait for.
    writer.abort();
    result
}

async fn write_responses(mut wr: BufWriter<tokio::net::tcp::OwnedWriteHalf>, mut queue: mpsc::Receiver<BytesMut>) {
    while let Some(frame) = queue.recv().await {
        if wr.write_all(&frame).await.is_err() {
            return;
        }
        if queue.is_empty() && wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}
