//! Calling peers: one persistent connection per peer address, requests
//! multiplexed over it by id.
//!
//! Each connection opens with the handshake (see `wire.rs`): a peer of
//! another cluster, with another partition count or no common protocol
//! version is refused, by whichever side notices first, and the caller gets
//! [`CallError::Refused`] with the reason.
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
//! A connection whose calls keep timing out (a paused or partitioned peer)
//! is closed the same way, rather than held open for answers that do not
//! come.
//!
//! Bulk traffic (anti-entropy exchanges) travels on a connection of its own
//! to each peer ([`Lane::Bulk`]), with its own timeout, so a large answer
//! or a backed-up bulk queue never sits in front of a client request's
//! frames, and a bulk call that times out never closes or backs off the
//! connection client requests use.
//!
//! [`Faults`] is the test seam: rules that drop, delay or refuse this
//! node's calls to chosen addresses, so partitions are deterministic.

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

use super::gossip::{GossipRequest, GossipResponse};
use super::kv::{KvRequest, KvResponse};
use super::wire::{Greeting, HEADER, Hello, Request, Response, handshake, parse_handshake, split_frame};

/// Frames queued per connection before callers wait.
const QUEUE: usize = 4096;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Calls timed out in a row, with no answer between, after which a
/// connection is closed.
const STALLED_AFTER: u32 = 3;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nothing was delivered: the peer could not be reached.
    #[error("{0} is unreachable: {1}")]
    Unreachable(String, String),
    /// No answer in time: the request may or may not have been applied.
    #[error("{0} did not answer in time")]
    Timeout(String),
    /// The connection broke after the request was sent: outcome unknown.
    #[error("connection to {0} lost")]
    Lost(String),
    /// The peer (or this node) refused the connection, and why.
    #[error("{0} refused: {1}")]
    Refused(String, String),
    /// The peer answered with an error (a RESP error line: `CODE message`).
    #[error("{0}")]
    Remote(String),
}

impl CallError {
    /// True if the request certainly did not reach the peer.
    #[must_use]
    pub fn not_delivered(&self) -> bool {
        matches!(self, Self::Unreachable(..) | Self::Refused(..))
    }
}

/// What the test seam does to this node's calls to an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Requests are lost: calls time out.
    Drop,
    /// Requests are held this long before they are sent.
    Delay(Duration),
    /// The address refuses connections: calls fail at once.
    Refuse,
}

/// The test seam: faults injected into this node's calls, by peer address.
#[derive(Default)]
pub struct Faults {
    any: AtomicBool,
    rules: Mutex<HashMap<String, Fault>>,
}

impl Faults {
    /// Applies `fault` to calls to `addr` from now on.
    pub fn set(&self, addr: &str, fault: Fault) {
        lock(&self.rules).insert(addr.to_string(), fault);
        self.any.store(true, Ordering::Release);
    }

    /// Lifts the fault on calls to `addr`.
    pub fn clear(&self, addr: &str) {
        let mut rules = lock(&self.rules);
        rules.remove(addr);
        self.any.store(!rules.is_empty(), Ordering::Release);
    }

    /// Lifts every fault.
    pub fn heal(&self) {
        lock(&self.rules).clear();
        self.any.store(false, Ordering::Release);
    }

    fn of(&self, addr: &str) -> Option<Fault> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.rules).get(addr).copied()
    }
}

/// An answer and the size of its frame.
type Answer = Result<(Response, usize), CallError>;

/// Calls awaiting their response: the caller's channel and its deadline.
type Pending = Arc<Mutex<HashMap<u64, (oneshot::Sender<Answer>, Instant)>>>;

/// Which of the two connections to a peer a call travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Client requests, gossip: small frames that must not wait.
    Client,
    /// Anti-entropy: large frames, long waits allowed.
    Bulk,
}

/// Bytes a call put on the wire and received back (frames, headers
/// included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent: usize,
    pub received: usize,
}

/// One live connection.
struct Conn {
    frames: mpsc::Sender<BytesMut>,
    pending: Pending,
    closed: Arc<AtomicBool>,
    next_id: AtomicU64,
    remote: Hello,
}

/// When a link may next try to connect, and the backoff after the next
/// failure.
type Retry = Arc<Mutex<(Instant, Duration)>>;

/// Pushes a link's next connection attempt back by its backoff, and
/// doubles the backoff.
fn back_off(retry: &Retry) {
    let mut retry = lock(retry);
    *retry = (Instant::now() + retry.1, (retry.1 * 2).min(MAX_BACKOFF));
}

/// What the pool knows of one address.
struct Link {
    conn: Mutex<Option<Arc<Conn>>>,
    /// Serializes connection attempts (an async lock: held across connect).
    connecting: tokio::sync::Mutex<()>,
    retry: Retry,
    /// Smoothed round-trip time of answered calls, in microseconds; 0
    /// until the first answer.
    rtt_us: AtomicU64,
}

impl Link {
    /// Folds one answered call's round trip into the smoothed value (an
    /// exponential average weighing the newest sample by 1/8, as TCP's
    /// SRTT does).
    fn sample(&self, rtt: Duration) {
        let sample = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.rtt_us.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { old - old / 8 + sample / 8 };
        self.rtt_us.store(new, Ordering::Relaxed);
    }
}

struct Inner {
    /// What this node says in handshakes; changes when it joins a cluster.
    me: Mutex<Hello>,
    timeout: Duration,
    /// How often readers look for calls past their deadline.
    sweep: Duration,
    max_frame: usize,
    links: Mutex<HashMap<(String, Lane), Arc<Link>>>,
    faults: Faults,
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
    pub fn new(me: Hello, timeout: Duration, max_frame: usize, stop: Stop) -> Self {
        let sweep = (timeout / 8).clamp(Duration::from_millis(5), Duration::from_millis(250));
        Self {
            inner: Arc::new(Inner {
                me: Mutex::new(me),
                timeout,
                sweep,
                max_frame,
                links: Mutex::new(HashMap::new()),
                faults: Faults::default(),
                stop,
            }),
        }
    }

    /// What this node says in handshakes.
    #[must_use]
    pub fn hello(&self) -> Hello {
        lock(&self.inner.me).clone()
    }

    /// This node joined (or created) a cluster: say so in handshakes from
    /// now on, and drop the connections opened before.
    pub fn set_cluster(&self, cluster: u64, partitions: u32) {
        {
            let mut me = lock(&self.inner.me);
            me.cluster = cluster;
            me.partitions = partitions;
        }
        for link in lock(&self.inner.links).drain().map(|(_, link)| link) {
            if let Some(conn) = lock(&link.conn).take() {
                conn.closed.store(true, Ordering::Release);
            }
        }
    }

    /// The test seam.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Calls to `addr` may try to connect again at once: the peer is known
    /// to be back (its heartbeats arrive), so the backoff left by its
    /// absence would only fail requests it could serve.
    pub fn retry_now(&self, addr: &str) {
        let links = lock(&self.inner.links);
        for lane in [Lane::Client, Lane::Bulk] {
            if let Some(link) = links.get(&(addr.to_string(), lane)) {
                *lock(&link.retry) = (Instant::now(), FIRST_BACKOFF);
            }
        }
    }

    /// The request timeout.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    fn link(&self, addr: &str, lane: Lane) -> Arc<Link> {
        let mut links = lock(&self.inner.links);
        Arc::clone(links.entry((addr.to_string(), lane)).or_insert_with(|| {
            Arc::new(Link {
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                retry: Arc::new(Mutex::new((Instant::now(), FIRST_BACKOFF))),
                rtt_us: AtomicU64::new(0),
            })
        }))
    }

    /// The smoothed round-trip time of calls to `addr` that were answered,
    /// if any were.
    #[must_use]
    pub fn latency(&self, addr: &str) -> Option<Duration> {
        let us = lock(&self.inner.links).get(&(addr.to_string(), Lane::Client))?.rtt_us.load(Ordering::Relaxed);
        (us > 0).then(|| Duration::from_micros(us))
    }

    /// A key-value request to the peer at `addr`.
    ///
    /// # Errors
    /// As [`call`](Self::call); an error answer is [`CallError::Remote`].
    pub async fn kv(&self, addr: &str, request: KvRequest) -> Result<KvResponse, CallError> {
        match self.call(addr, &Request::Kv(request)).await? {
            Response::Kv(r) => Ok(r),
            Response::Error(e) => Err(CallError::Remote(e)),
            other => Err(CallError::Remote(format!("ERR unexpected answer from {addr}: {other:?}"))),
        }
    }

    /// A key-value request on the bulk lane, bounded by `timeout` rather
    /// than the request timeout: the answer and the bytes it took.
    ///
    /// # Errors
    /// As [`kv`](Self::kv).
    pub async fn bulk_kv(
        &self,
        addr: &str,
        request: KvRequest,
        timeout: Duration,
    ) -> Result<(KvResponse, Traffic), CallError> {
        match self.call_on(addr, &Request::Kv(request), Lane::Bulk, timeout).await? {
            (Response::Kv(r), traffic) => Ok((r, traffic)),
            (Response::Error(e), _) => Err(CallError::Remote(e)),
            (other, _) => Err(CallError::Remote(format!("ERR unexpected answer from {addr}: {other:?}"))),
        }
    }

    /// A gossip request to the peer at `addr`.
    ///
    /// # Errors
    /// As [`kv`](Self::kv).
    pub async fn gossip(&self, addr: &str, request: GossipRequest) -> Result<GossipResponse, CallError> {
        match self.call(addr, &Request::Gossip(request)).await? {
            Response::Gossip(r) => Ok(r),
            Response::Error(e) => Err(CallError::Remote(e)),
            other => Err(CallError::Remote(format!("ERR unexpected answer from {addr}: {other:?}"))),
        }
    }

    /// Sends `request` to the peer at `addr` and waits for its response.
    ///
    /// # Errors
    /// The peer is unreachable or refuses, does not answer within the
    /// timeout, or the connection is lost before it does.
    pub async fn call(&self, addr: &str, request: &Request) -> Result<Response, CallError> {
        Ok(self.call_on(addr, request, Lane::Client, self.inner.timeout).await?.0)
    }

    /// [`call`](Self::call) on `lane`, bounded by `timeout`.
    async fn call_on(
        &self,
        addr: &str,
        request: &Request,
        lane: Lane,
        timeout: Duration,
    ) -> Result<(Response, Traffic), CallError> {
        let started = Instant::now();
        let deadline = started + timeout;
        match self.inner.faults.of(addr) {
            None => {}
            Some(Fault::Refuse) => {
                return Err(CallError::Refused(addr.to_string(), "connection refused (test seam)".into()));
            }
            Some(Fault::Drop) => {
                tokio::time::sleep_until(deadline.into()).await;
                return Err(CallError::Timeout(addr.to_string()));
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        }
        let link = self.link(addr, lane);
        let conn = self.connection(addr, &link).await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, (tx, deadline));
        let mut frame = BytesMut::with_capacity(64);
        request.encode(id, &mut frame);
        let size = frame.len();
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
        let (answer, received) = rx.await.unwrap_or_else(|_| Err(CallError::Lost(addr.to_string())))?;
        link.sample(started.elapsed());
        Ok((answer, Traffic { sent: size, received }))
    }

    /// Who answers at `addr` (connecting if need be).
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn identify(&self, addr: &str) -> Result<Hello, CallError> {
        if self.inner.faults.of(addr).is_some() {
            return Err(CallError::Unreachable(addr.to_string(), "cut off (test seam)".into()));
        }
        let link = self.link(addr, Lane::Client);
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
        let attempt = tokio::time::timeout(self.inner.timeout, connect(addr, &self.inner, Arc::clone(&link.retry)));
        match attempt.await.unwrap_or_else(|_| Err(CallError::Unreachable(addr.into(), "no answer in time".into()))) {
            Ok(conn) => {
                *lock(&link.retry) = (Instant::now(), FIRST_BACKOFF);
                *lock(&link.conn) = Some(Arc::clone(&conn));
                Ok(conn)
            }
            Err(e) => {
                back_off(&link.retry);
                Err(e)
            }
        }
    }
}

async fn connect(addr: &str, inner: &Inner, retry: Retry) -> Result<Arc<Conn>, CallError> {
    let unreachable = |e: String| CallError::Unreachable(addr.to_string(), e);
    let stream = TcpStream::connect(addr).await.map_err(|e| unreachable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let me = lock(&inner.me).clone();
    wr.write_all(&handshake(&me)).await.map_err(|e| unreachable(e.to_string()))?;
    let mut buf = BytesMut::with_capacity(4096);
    let remote = loop {
        match parse_handshake(&buf).map_err(unreachable)? {
            Some((Greeting::Hello(hello), used)) => {
                let _ = buf.split_to(used);
                break hello;
            }
            Some((Greeting::Refused(why), _)) => return Err(CallError::Refused(addr.to_string(), why)),
            None => {}
        }
        if rd.read_buf(&mut buf).await.map_err(|e| unreachable(e.to_string()))? == 0 {
            return Err(unreachable("closed during the handshake".into()));
        }
    };
    if let Some(why) = me.refuses(&remote) {
        return Err(CallError::Refused(addr.to_string(), why));
    }
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
        (addr.to_string(), retry),
        inner.stop.clone(),
    ));
    Ok(Arc::new(Conn { frames, pending, closed, next_id: AtomicU64::new(1), remote }))
}

/// Writes queued frames, flushing once the queue stays empty for a turn of
/// the scheduler (see [`settled`]). Ends when the connection is dropped or
/// a write fails.
async fn write_frames(wr: OwnedWriteHalf, mut queue: mpsc::Receiver<BytesMut>, closed: Arc<AtomicBool>) {
    let mut out = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(frame) = queue.recv().await {
        if out.write_all(&frame).await.is_err() {
            break;
        }
        if settled(&queue).await && out.flush().await.is_err() {
            break;
        }
    }
    closed.store(true, Ordering::Release);
    let _ = out.shutdown().await;
}

/// Whether a writer should flush now: its queue is empty, and still empty
/// after one turn of the scheduler, which lets the tasks that are about to
/// queue a frame (the other requests of a client's pipeline, the other
/// answers of a batch) do so. So the frames of one tick go out in one
/// write, not one each.
pub(super) async fn settled<T>(queue: &mpsc::Receiver<T>) -> bool {
    if !queue.is_empty() {
        return false;
    }
    tokio::task::yield_now().await;
    queue.is_empty()
}

/// Fails the calls past their deadline; returns how many.
fn sweep(pending: &Pending, addr: &str) -> u32 {
    let now = Instant::now();
    let mut pending = lock(pending);
    let expired: Vec<u64> = pending.iter().filter(|(_, (_, deadline))| *deadline <= now).map(|(id, _)| *id).collect();
    for id in &expired {
        if let Some((caller, _)) = pending.remove(id) {
            let _ = caller.send(Err(CallError::Timeout(addr.to_string())));
        }
    }
    u32::try_from(expired.len()).unwrap_or(u32::MAX)
}

/// Reads responses and hands each to its caller, and fails calls that
/// outlive their deadline. On any error, at shutdown, or when calls keep
/// timing out with no answer between ([`STALLED_AFTER`]), marks the
/// connection closed and fails every pending call; a stalled connection
/// also backs off its link, so the next callers fail fast.
async fn read_responses(
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    pending: Pending,
    closed: Arc<AtomicBool>,
    (max_frame, every): (usize, Duration),
    (addr, retry): (String, Retry),
    mut stop: Stop,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut timeouts_in_a_row = 0u32;
    'read: loop {
        loop {
            match split_frame(&mut buf, max_frame) {
                Ok(Some((id, subsystem, kind, payload))) => match Response::decode(subsystem, kind, &payload) {
                    Ok(response) => {
                        timeouts_in_a_row = 0;
                        if let Some((caller, _)) = lock(&pending).remove(&id) {
                            let _ = caller.send(Ok((response, HEADER + payload.len())));
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
                timeouts_in_a_row = timeouts_in_a_row.saturating_add(sweep(&pending, &addr));
                if timeouts_in_a_row >= STALLED_AFTER {
                    tracing::debug!(peer = %addr, "calls keep timing out; closing the connection");
                    back_off(&retry);
                    break;
                }
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
