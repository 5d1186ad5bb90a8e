//! Calling peers: one persistent connection per peer address, requests
//! multiplexed over it by id.
//!
//! Callers encode their request into a frame and hand it to the
//! connection's writer task, which writes frames as they come and flushes
//! when its queue runs dry (so concurrent calls share writes); the reader
//! task matches each response to its caller by id. Every call is bounded by
//! the request timeout, connecting included: a pending call records its
//! deadline and the reader sweeps expired calls on a coarse tick, which
//! spares a timer per call. A connection that fails is
//! dropped, its callers get an error, and the next call reconnects, but not
//! before a backoff that doubles per failure (up to a second), so a dead
//! peer costs callers a fast failure rather than a connect attempt each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::shutdown::Stop;

use super::wire::{Member, Request, Response, handshake, parse_handshake, split_frame};

/// Frames queued per connection before callers wait.
const QUEUE: usize = 4096;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0} is unreachable: {1}")]
    Unreachable(String, String),
    #[error("{0} did not answer in time")]
    Timeout(String),
    #[error("connection to {0} lost")]
    Lost(String),
}

/// Calls awaiting their response: the caller's channel and its deadline.
type Pending = Arc<Mutex<HashMap<u64, (oneshot::Sender<Result<Response, CallError>>, Instant)>>>;

/// One live connection.
struct Conn {
    frames: mpsc::Sender<BytesMut>,
    pending: Pending,
    closed: Arc<AtomicBool>,
    next_id: AtomicU64,
    remote: Member,
}

/// What the pool knows of one address.
struct Link {
    conn: Mutex<Option<Arc<Conn>>>,
    /// Serializes connection attempts (an async lock: held across connect).
    connecting: tokio::sync::Mutex<()>,
    /// (earliest next attempt, backoff after the next failure)
    retry: Mutex<(Instant, Duration)>,
}

struct Inner {
    me: Member,
    timeout: Duration,
    /// How often readers look for calls past their deadline.
    sweep: Duration,
    max_frame: usize,
    links: Mutex<HashMap<String, Arc<Link>>>,
    stop: Stop,
}

/// The node's connections to its peers. Cheap to clone.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Peers {
    /// `me` is sent in every handshake; `timeout` bounds every call.
    #[must_use]
    pub fn new(me: Member, timeout: Duration, max_frame: usize, stop: Stop) -> Self {
        let sweep = (timeout / 8).clamp(Duration::from_millis(5), Duration::from_millis(250));
        Self { inner: Arc::new(Inner { me, timeout, sweep, max_frame, links: Mutex::new(HashMap::new()), stop }) }
    }

    fn link(&self, addr: &str) -> Arc<Link> {
        let mut links = lock(&self.inner.links);
        Arc::clone(links.entry(addr.to_string()).or_insert_with(|| {
            Arc::new(Link {
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                retry: Mutex::new((Instant::now(), FIRST_BACKOFF)),
            })
        }))
    }

    /// Sends `request` to the peer at `addr` and waits for its response.
    ///
    /// # Errors
    /// The peer is unreachable, does not answer within the timeout, or the
    /// connection is lost before it does.
    pub async fn call(&self, addr: &str, request: &Request) -> Result<Response, CallError> {
        let deadline = Instant::now() + self.inner.timeout;
        let link = self.link(addr);
        let conn = self.connection(addr, &link).await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, (tx, deadline));
        let mut frame = BytesMut::with_capacity(64);
        request.encode(id, &mut frame);
        let sent = match conn.frames.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(frame)) => {
                // A backed-up connection: wait for room, within the deadline.
                matches!(tokio::time::timeout_at(deadline.into(), conn.frames.send(frame)).await, Ok(Ok(())))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if !sent {
            lock(&conn.pending).remove(&id);
            return Err(CallError::Unreachable(
                addr.to_string(),
                "the connection closed before the request was sent".into(),
            ));
        }
        if conn.closed.load(Ordering::Acquire) {
            // The reader may have failed the pending calls before this one
            // joined them; nobody would answer it.
            lock(&conn.pending).remove(&id);
            return Err(CallError::Lost(addr.to_string()));
        }
        // The reader answers, the sweeper times out, or a lost connection
        // drops the sender: every pending call ends one of those ways.
        rx.await.unwrap_or_else(|_| Err(CallError::Lost(addr.to_string())))
    }

    /// Who answers at `addr` (connecting if need be).
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn identify(&self, addr: &str) -> Result<Member, CallError> {
        let link = self.link(addr);
        Ok(self.connection(addr, &link).await?.remote.clone())
    }

    /// The live connection to `addr`, connecting if there is none and the
    /// backoff allows.
    async fn connection(&self, addr: &str, link: &Link) -> Result<Arc<Conn>, CallError> {
        let live = |link: &Link| lock(&link.conn).clone().filter(|c| !c.closed.load(Ordering::Acquire));
        if let Some(conn) = live(link) {
            return Ok(conn);
        }
        let _one_at_a_time = link.connecting.lock().await;
        if let Some(conn) = live(link) {
            return Ok(conn);
        }
        let (next_attempt, _) = *lock(&link.retry);
        if Instant::now() < next_attempt {
            return Err(CallError::Unreachable(addr.to_string(), "recently failed; backing off".into()));
        }
        // A peer that vanished without a reset (powered off, partitioned)
        // never answers the connect: bounded like any call, and then a
        // failure like any other, so the backoff spares the next callers.
        let attempt = tokio::time::timeout(self.inner.timeout, connect(addr, &self.inner)).await;
        match attempt.unwrap_or_else(|_| Err("no answer to the connection in time".into())) {
            Ok(conn) => {
                *lock(&link.retry) = (Instant::now(), FIRST_BACKOFF);
                *lock(&link.conn) = Some(Arc::clone(&conn));
                Ok(conn)
            }
            Err(e) => {
                let mut retry = lock(&link.retry);
                *retry = (Instant::now() + retry.1, (retry.1 * 2).min(MAX_BACKOFF));
                Err(CallError::Unreachable(addr.to_string(), e))
            }
        }
    }
}

async fn connect(addr: &str, inner: &Inner) -> Result<Arc<Conn>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(&handshake(&inner.me)).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(4096);
    let remote = loop {
        if let Some((member, used)) = parse_handshake(&buf)? {
            let _ = buf.split_to(used);
            break member;
        }
        if rd.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed during the handshake".into());
        }
    };
    let (frames, queue) = mpsc::channel(QUEUE);
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let closed = Arc::new(AtomicBool::new(false));
    tokio::spawn(write_frames(wr, queue, Arc::clone(&closed)));
    tokio::spawn(read_responses(
        rd,
        buf,
        Arc::clone(&pending),
        Arc::clone(&closed),
        (inner.max_frame, inner.sweep),
        addr.to_string(),
        inner.stop.clone(),
    ));
    Ok(Arc::new(Conn { frames, pending, closed, next_id: AtomicU64::new(1), remote }))
}

/// Writes queued frames, flushing whenever the queue is empty. Ends when
/// the connection is dropped or a write fails.
async fn write_frames(wr: OwnedWriteHalf, mut queue: mpsc::Receiver<BytesMut>, closed: Arc<AtomicBool>) {
    let mut out = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(frame) = queue.recv().await {
        if out.write_all(&frame).await.is_err() {
            break;
        }
        if queue.is_empty() && out.flush().await.is_err() {
            break;
        }
    }
    closed.store(true, Ordering::Release);
    let _ = out.shutdown().await;
}

/// Fails the calls past their deadline.
fn sweep(pending: &Pending, addr: &str) {
    let now = Instant::now();
    let mut pending = lock(pending);
    let expired: Vec<u64> = pending.iter().filter(|(_, (_, deadline))| *deadline <= now).map(|(id, _)| *id).collect();
    for id in expired {
        if let Some((caller, _)) = pending.remove(&id) {
            let _ = caller.send(Err(CallError::Timeout(addr.to_string())));
        }
    }
}

/// Reads responses and hands each to its caller, and fails calls that
/// outlive their deadline. On any error or at shutdown, marks the
/// connection closed and fails every pending call.
async fn read_responses(
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    pending: Pending,
    closed: Arc<AtomicBool>,
    (max_frame, every): (usize, Duration),
    addr: String,
    mut stop: Stop,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'read: loop {
        loop {
            match split_frame(&mut buf, max_frame) {
                Ok(Some((id, tag, payload))) => match Response::decode(tag, &payload) {
                    Ok(response) => {
                        if let Some((caller, _)) = lock(&pending).remove(&id) {
                            let _ = caller.send(Ok(response));
                        }
                    }
                    Err(e) => {
                        tracing::warn!("malformed response from a peer: {e}; dropping the connection");
                        break 'read;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("bad frame from a peer: {e}; dropping the connection");
                    break 'read;
                }
            }
        }
        buf.reserve(16 * 1024);
        let read = tokio::select! {
            read = rd.read_buf(&mut buf) => read,
            _ = tick.tick() => {
                sweep(&pending, &addr);
                continue;
            }
            () = stop.stopped() => break,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    closed.store(true, Ordering::Release);
    lock(&pending).clear();
}
