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
//! peer connections are served at once, and one that has not introduced
//! itself within [`HANDSHAKE_TIMEOUT`] is closed, so silent or trickling
//! connections free their slots.
//!
//! What one connection holds is bounded: its read buffer grows with the
//! bytes that arrived (up to one frame of the node's `max_frame`), and once
//! [`BACKLOG`] bytes of answers wait to be written (a peer that asks
//! without reading), it reads no more requests until they drain; a peer
//! that reads nothing for [`WRITE_STALL`] is closed. Warnings a peer can
//! cause at will (refusals, the connection bound) are throttled, so a
//! flood of them cannot flood the log.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::shutdown::{Stop, Tracker};

use super::client::Peers;
use super::wire::{Greeting, Hello, Request, Response, Undecodable, handshake, parse_handshake, refusal, split_frame};

/// Requests one connection may have in progress.
pub const IN_FLIGHT: usize = 1024;
/// Peer connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a new connection gets to introduce itself.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of answers a connection may have waiting to be written before it
/// stops reading requests.
pub const BACKLOG: usize = 4 << 20;
/// How long writing to a peer may make no progress before its connection
/// is closed.
pub const WRITE_STALL: Duration = Duration::from_secs(30);
/// Throttled warnings: at most this many of a kind per [`LOG_WINDOW`].
const REFUSALS_LOGGED: u32 = 10;
const BOUND_LOGGED: u32 = 1;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Lets through at most `burst` warnings of one kind per [`LOG_WINDOW`],
/// counting the ones it holds back.
struct Throttle {
    burst: u32,
    window: Option<Instant>,
    used: u32,
    held: u64,
}

impl Throttle {
    fn new(burst: u32) -> Self {
        Self { burst, window: None, used: 0, held: 0 }
    }

    /// Whether to log a warning at `now`: `Some` of how many were held back
    /// since the last one logged, or `None` to hold this one back.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.window.is_none_or(|start| now.duration_since(start) >= LOG_WINDOW) {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

/// Answers encoded but not yet written, in bytes; the writer wakes the
/// reader as they drain.
#[derive(Default)]
struct Backlog {
    bytes: AtomicUsize,
    drained: Notify,
}

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
    let mut bound = Throttle::new(BOUND_LOGGED);
    let refusals = Arc::new(Mutex::new(Throttle::new(REFUSALS_LOGGED)));
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
            if let Some(held) = bound.allow(Instant::now()) {
                tracing::warn!(peer = %addr, not_logged = held, "too many peer connections ({MAX_CONNECTIONS}); closing new ones");
            }
            continue;
        };
        let (me, handler, stop, inner) = (peers.hello(), Arc::clone(&handler), stop.clone(), tasks.clone());
        let refusals = Arc::clone(&refusals);
        tasks.spawn(async move {
            if let Err(e) = serve_peer(socket, &me, handler, max_frame, stop, inner, &refusals).await {
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
    refusals: &Mutex<Throttle>,
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
        let logged = refusals.lock().unwrap_or_else(PoisonError::into_inner).allow(Instant::now());
        if let Some(held) = logged {
            tracing::warn!(peer = %from.member.peer_addr, id = %from.member.id, not_logged = held, "refused a peer: {why}");
        }
        wr.write_all(&refusal(&why)).await.map_err(|e| e.to_string())?;
        let _ = wr.shutdown().await;
        return Err(why);
    }
    let from = Arc::new(from);
    wr.write_all(&handshake(me)).await.map_err(|e| e.to_string())?;
    wr.flush().await.map_err(|e| e.to_string())?;

    let (responses, queue) = mpsc::channel::<BytesMut>(IN_FLIGHT);
    let backlog = Arc::new(Backlog::default());
    let writer = tokio::spawn(write_responses(wr, queue, Arc::clone(&backlog)));
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let result = 'serve: loop {
        // A peer that does not read its answers gets no more until they
        // drain, rather than have the node queue them without end.
        while backlog.bytes.load(Ordering::Acquire) > BACKLOG {
            tokio::select! {
                () = backlog.drained.notified() => {}
                () = responses.closed() => break 'serve Ok(()),
                () = stop.stopped() => break 'serve Ok(()),
            }
        }
        match split_frame(&mut buf, max_frame) {
            Ok(Some((id, subsystem, kind, payload))) => {
                let request = match Request::decode(subsystem, kind, &payload) {
                    Ok(r) => r,
                    Err(Undecodable::Unknown(subsystem, kind)) => {
                        // A newer peer: say so, and carry on.
                        let error = Response::Error(format!("ERR unknown peer message {subsystem}.{kind}"));
                        if !queue_answer(&error, id, &responses, &backlog).await {
                            break Ok(());
                        }
                        continue;
                    }
                    Err(e) => break Err(format!("malformed request: {e}")),
                };
                let permit = tokio::select! {
                    permit = Arc::clone(&in_flight).acquire_owned() => permit,
                    () = stop.stopped() => break Ok(()),
                };
                let Ok(permit) = permit else { break Ok(()) };
                let (handler, from) = (Arc::clone(&handler), Arc::clone(&from));
                let (responses, backlog) = (responses.clone(), Arc::clone(&backlog));
                let mut answer = Box::pin(async move {
                    let response = handler.handle(&from, request).await;
                    queue_answer(&response, id, &responses, &backlog).await;
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
            // The writer gave up (a peer that stopped reading).
            () = responses.closed() => break Ok(()),
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

/// Queues `response` to request `id` for the writer, counting it in the
/// backlog; false if the connection is closing.
async fn queue_answer(response: &Response, id: u64, responses: &mpsc::Sender<BytesMut>, backlog: &Backlog) -> bool {
    let mut frame = BytesMut::new();
    response.encode(id, &mut frame);
    backlog.bytes.fetch_add(frame.len(), Ordering::AcqRel);
    responses.send(frame).await.is_ok()
}

async fn write_responses(
    mut wr: BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    mut queue: mpsc::Receiver<BytesMut>,
    backlog: Arc<Backlog>,
) {
    while let Some(frame) = queue.recv().await {
        let written = write_unless_stalled(&mut wr, &frame).await;
        backlog.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        drop(frame);
        backlog.drained.notify_one();
        if written.is_err() {
            return;
        }
        if super::client::settled(&queue).await
            && !matches!(tokio::time::timeout(WRITE_STALL, wr.flush()).await, Ok(Ok(())))
        {
            return;
        }
    }
    let _ = tokio::time::timeout(WRITE_STALL, wr.shutdown()).await;
}

/// Writes all of `bytes`, failing if a write makes no progress for
/// [`WRITE_STALL`]: a slow peer that reads gets its answers however long
/// they take, one that stopped reading is let go.
async fn write_unless_stalled<W: AsyncWrite + Unpin>(wr: &mut W, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let written = tokio::time::timeout(WRITE_STALL, wr.write(bytes)).await;
        match written.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn writes_to_a_peer_that_stopped_reading_give_up() {
        let (mut near, mut far) = tokio::io::duplex(1024);
        let answer = vec![7u8; 64 * 1024];
        let start = tokio::time::Instant::now();
        let stalled = write_unless_stalled(&mut near, &answer).await;
        assert_eq!(stalled.map_err(|e| e.kind()), Err(std::io::ErrorKind::TimedOut));
        assert_eq!(start.elapsed(), WRITE_STALL);
        // A peer that reads, however slowly, gets everything.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 100];
            while got.len() < 64 * 1024 + 1024 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let n = far.read(&mut chunk).await.expect("read");
                got.extend_from_slice(&chunk[..n]);
            }
            got.len()
        });
        write_unless_stalled(&mut near, &answer).await.expect("a slow reader");
        drop(near);
        assert_eq!(reader.await.expect("reader"), 64 * 1024 + 1024);
    }

    #[test]
    fn throttled_warnings_come_in_bursts_and_count_what_they_held() {
        let mut t = Throttle::new(2);
        let start = Instant::now();
        assert_eq!(t.allow(start), Some(0));
        assert_eq!(t.allow(start), Some(0));
        for _ in 0..5 {
            assert_eq!(t.allow(start + Duration::from_secs(1)), None);
        }
        assert_eq!(t.allow(start + LOG_WINDOW), Some(5), "the next window says how many were held");
        assert_eq!(t.allow(start + LOG_WINDOW), Some(0));
        assert_eq!(t.allow(start + LOG_WINDOW), None);
    }
}
