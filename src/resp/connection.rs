//! One client connection: read bytes, decode every complete request in
//! them, run them, and write all their replies with one write.
//!
//! A pipeline of hundreds of commands thus costs a few reads and writes.
//! Within a pipeline, consecutive commands that each touch one key and
//! leave the session alone (GET, SET, INCR…) run concurrently, in one chain
//! per key: commands on the same key run in order, so a pipeline reads its
//! own writes; commands on different keys may take effect in any order, as
//! across the shards of a Redis Cluster. Any other command waits for what
//! came before it and runs alone. Replies are always sent in request order.
//!
//! Replies are flushed early once they pass [`FLUSH_AT`], so output stays
//! bounded however long the pipeline. A malformed request gets Redis's
//! `ERR Protocol error: …` (after the replies to the requests before it)
//! and the connection closes; input beyond `client-query-buffer-limit`
//! closes it too. On shutdown the requests already read finish and their
//! replies are sent; nothing new is read.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::join::join_all;
use crate::metrics;
use crate::shutdown::Stop;

use super::args::ArgList;
use super::commands::{Flow, Prepared, Ready, prepare, run, run_shared};
use super::parse::{Decoder, ProtocolError};
use super::reply::Reply;
use super::session::{Client, Server, Session};

/// Replies buffered before an early write.
const FLUSH_AT: usize = 64 * 1024;
/// Read buffer space made available per read.
const READ_CHUNK: usize = 16 * 1024;
/// Requests decoded before they are run.
const MAX_BATCH: usize = 1024;
/// Buffer capacity a connection keeps between requests; a larger buffer,
/// left by a large request or reply, is released once it is empty.
const KEEP_IDLE: usize = 4 * READ_CHUNK;

struct Connection {
    socket: TcpStream,
    input: BytesMut,
    output: BytesMut,
    decoder: Decoder,
    session: Session,
    query_limit: usize,
    /// The requests decoded from one read, and the group of single-key
    /// ones being run: kept between reads (up to [`KEEP_REQUESTS`]) so
    /// that a steady pipeline does not allocate them again.
    batch: Vec<(ArgList, usize)>,
    group: Vec<Ready>,
}

/// Requests' worth of room the batch and group vectors keep between reads.
const KEEP_REQUESTS: usize = 64;

/// Empties `v`, keeping its room unless it grew past `KEEP_REQUESTS`.
fn recycle<T>(mut v: Vec<T>) -> Vec<T> {
    v.clear();
    if v.capacity() > KEEP_REQUESTS { Vec::new() } else { v }
}

/// Serves one client until it leaves, errs or the node stops.
pub(super) async fn serve(server: Arc<Server>, socket: TcpStream, client: Arc<Client>, mut stop: Stop) {
    let addr = client.addr;
    let mut conn = Connection {
        socket,
        input: BytesMut::with_capacity(READ_CHUNK),
        output: BytesMut::new(),
        decoder: Decoder::new(usize::try_from(server.config.proto_max_bulk_len.0).unwrap_or(usize::MAX)),
        query_limit: usize::try_from(server.config.client_query_buffer_limit.0).unwrap_or(usize::MAX),
        session: Session::new(server, client),
        batch: Vec::new(),
        group: Vec::new(),
    };
    if let Err(e) = conn.run(&mut stop).await {
        tracing::debug!(client = %addr, "connection closed: {e}");
    }
}

/// Groups up to this size find a request's chain by comparing keys; larger
/// ones use a map.
const LINEAR_CHAINS: usize = 32;

/// One request of a group being run.
enum Slot {
    Ready(Ready),
    Running,
    Done(Reply),
}

impl Slot {
    fn key(&self) -> Option<&Bytes> {
        match self {
            Self::Ready(ready) => ready.args.first(),
            _ => None,
        }
    }
}

impl Connection {
    async fn run(&mut self, stop: &mut Stop) -> io::Result<()> {
        loop {
            let mut batch = std::mem::take(&mut self.batch);
            let mut broken = None;
            // Before AUTH, one request at a time: the next is decoded under
            // the limits that hold once this one has run.
            let most = if self.session.authenticated { MAX_BATCH } else { 1 };
            while batch.len() < most {
                self.decoder.set_authenticated(self.session.authenticated);
                match self.decoder.decode(&mut self.input) {
                    Ok(Some(request)) => batch.push((request, self.decoder.last_len())),
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            let more = batch.len() == most;
            let done = self.run_batch(&mut batch).await?;
            self.batch = recycle(batch);
            if done == Done::Close {
                return self.flush().await;
            }
            if let Some(ProtocolError(text)) = broken {
                tracing::debug!(client = %self.session.client.addr, "protocol error: {text}");
                let text = format!("ERR Protocol error: {text}");
                self.session.server.metrics.errors.record(&text);
                Reply::Error(text).encode(self.session.resp3, &mut self.output);
                return self.flush().await;
            }
            if more && !stop.is_stopped() {
                continue;
            }
            self.flush().await?;
            if stop.is_stopped() {
                return Ok(());
            }
            if self.input.len() + self.decoder.pending_bytes() > self.query_limit {
                tracing::warn!(client = %self.session.client.addr, "closing client that reached max query buffer length");
                return Ok(());
            }
            if self.input.is_empty() && !self.decoder.in_request() && self.input.capacity() > KEEP_IDLE {
                // A large request has come and gone: do not hold its buffer.
                self.input = BytesMut::with_capacity(READ_CHUNK);
            }
            self.input.reserve(read_room(self.decoder.bulk_wanted(self.input.len()), self.input.len()));
            let n = tokio::select! {
                read = self.socket.read_buf(&mut self.input) => read?,
                () = stop.stopped() => return Ok(()),
            };
            if n == 0 {
                return Ok(());
            }
            metrics::add(&self.session.server.metrics.net_input_bytes, n as u64);
        }
    }

    /// Runs decoded requests (each with its length on the wire) in order,
    /// grouping consecutive single-key commands to run concurrently.
    async fn run_batch(&mut self, batch: &mut Vec<(ArgList, usize)>) -> io::Result<Done> {
        let mut group = std::mem::take(&mut self.group);
        let done = self.run_requests(batch, &mut group).await;
        self.group = recycle(group);
        done
    }

    async fn run_requests(&mut self, batch: &mut Vec<(ArgList, usize)>, group: &mut Vec<Ready>) -> io::Result<Done> {
        // The query buffer as CLIENT LIST shows it: the running request and
        // everything read after it.
        let mut qbuf = batch.iter().map(|(_, len)| len).sum::<usize>() + self.input.len();
        for (request, len) in batch.drain(..) {
            self.session.client.qbuf.store(qbuf, Ordering::Relaxed);
            qbuf -= len;
            match prepare(&mut self.session, request) {
                Prepared::Run(ready) if ready.spec.single_key() => group.push(ready),
                Prepared::Run(ready) => {
                    self.run_group(group).await?;
                    let reply = run(&mut self.session, ready).await;
                    self.emit(Flow::Reply(reply)).await?;
                }
                Prepared::Done(flow) => {
                    self.run_group(group).await?;
                    if self.emit(flow).await? == Done::Close {
                        return Ok(Done::Close);
                    }
                }
            }
        }
        self.run_group(group).await?;
        self.session.client.qbuf.store(self.input.len(), Ordering::Relaxed);
        Ok(Done::Continue)
    }

    /// Runs a group of single-key commands, one chain per key, and encodes
    /// their replies in order.
    async fn run_group(&mut self, group: &mut Vec<Ready>) -> io::Result<()> {
        if group.len() <= 1 {
            if let Some(ready) = group.pop() {
                let reply = run_shared(&self.session, ready).await;
                self.emit(Flow::Reply(reply)).await?;
            }
            return Ok(());
        }
        // Each request joins the chain of the first request of its key;
        // sorted by (chain, position), a chain is a run of slots that one
        // future works through in order, leaving each reply in its slot.
        let mut slots: Vec<(usize, usize, Slot)> = Vec::with_capacity(group.len());
        let scan = group.len() <= LINEAR_CHAINS;
        let mut first_of: HashMap<Bytes, usize> = HashMap::new();
        for (i, ready) in group.drain(..).enumerate() {
            let key = &ready.args[0];
            let chain = if scan {
                slots.iter().find(|(_, _, slot)| slot.key() == Some(key)).map_or(i, |&(chain, _, _)| chain)
            } else {
                *first_of.entry(key.clone()).or_insert(i)
            };
            slots.push((chain, i, Slot::Ready(ready)));
        }
        slots.sort_unstable_by_key(|&(chain, i, _)| (chain, i));
        let session = &self.session;
        let runs = slots
            .chunk_by_mut(|a, b| a.0 == b.0)
            .map(|chain| async move {
                for (_, _, slot) in chain {
                    if let Slot::Ready(ready) = std::mem::replace(slot, Slot::Running) {
                        *slot = Slot::Done(run_shared(session, ready).await);
                    }
                }
            })
            .collect();
        join_all(runs).await;
        slots.sort_unstable_by_key(|&(_, i, _)| i);
        // Flushed as they pass FLUSH_AT, not after the whole group: the
        // replies share their values, their encodings would not.
        for (_, _, slot) in slots {
            if let Slot::Done(reply) = slot {
                reply.encode(self.session.resp3, &mut self.output);
                self.flush_if_full().await?;
            }
        }
        Ok(())
    }

    async fn emit(&mut self, flow: Flow) -> io::Result<Done> {
        match flow {
            Flow::Reply(reply) => reply.encode(self.session.resp3, &mut self.output),
            Flow::Silent => {}
            Flow::Close(reply) => {
                if let Some(reply) = reply {
                    reply.encode(self.session.resp3, &mut self.output);
                }
                return Ok(Done::Close);
            }
        }
        self.flush_if_full().await?;
        Ok(Done::Continue)
    }

    async fn flush_if_full(&mut self) -> io::Result<()> {
        if self.output.len() >= FLUSH_AT { self.flush().await } else { Ok(()) }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        self.socket.write_all(&self.output).await?;
        metrics::add(&self.session.server.metrics.net_output_bytes, self.output.len() as u64);
        if self.output.capacity() > KEEP_IDLE {
            self.output = BytesMut::with_capacity(READ_CHUNK);
        } else {
            self.output.clear();
        }
        Ok(())
    }
}

/// Read buffer space to make available for the next read. A bulk string
/// being received gets room for what it still needs, but never more than
/// the bytes already buffered: its declared length is only a claim, so the
/// buffer grows in steps (doubling) as the bytes actually arrive, and a
/// client holds at most about twice what it has sent plus [`READ_CHUNK`].
fn read_room(bulk_wanted: Option<usize>, buffered: usize) -> usize {
    match bulk_wanted {
        Some(wanted) => wanted.min(buffered.max(READ_CHUNK / 2)).max(1),
        None => READ_CHUNK,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Done {
    Continue,
    Close,
}
