//! One client connection: read bytes, decode every complete request in
//! them, run each in order, and write all their replies with one write.
//!
//! A pipeline of hundreds of commands thus costs a few reads and writes.
//! Replies are flushed early once they pass [`FLUSH_AT`], so output stays
//! bounded however long the pipeline. A malformed request gets Redis's
//! `ERR Protocol error: …` and the connection closes; input beyond
//! `client-query-buffer-limit` closes it too. On shutdown the request in
//! progress finishes and its reply is sent; nothing new is started.

use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics;
use crate::shutdown::Stop;

use super::commands::{Flow, execute};
use super::parse::{Decoder, ProtocolError};
use super::reply::Reply;
use super::session::{Client, Server, Session};

/// Replies buffered before an early write.
const FLUSH_AT: usize = 64 * 1024;
/// Read buffer space made available per read.
const READ_CHUNK: usize = 16 * 1024;
/// Most read buffer space made available at once for a large bulk string.
const MAX_READ_RESERVE: usize = 4 * 1024 * 1024;

struct Connection {
    socket: TcpStream,
    input: BytesMut,
    output: BytesMut,
    decoder: Decoder,
    session: Session,
    query_limit: usize,
}

/// Serves one client until it leaves, errs or the node stops.
pub(super) async fn serve(server: Arc<Server>, socket: TcpStream, client: Arc<Client>, mut stop: Stop) {
    let addr = client.addr;
    let mut conn = Connection {
        socket,
        input: BytesMut::with_capacity(READ_CHUNK),
        output: BytesMut::with_capacity(READ_CHUNK),
        decoder: Decoder::new(usize::try_from(server.config.proto_max_bulk_len.0).unwrap_or(usize::MAX)),
        query_limit: usize::try_from(server.config.client_query_buffer_limit.0).unwrap_or(usize::MAX),
        session: Session::new(server, client),
    };
    if let Err(e) = conn.run(&mut stop).await {
        tracing::debug!(client = %addr, "connection closed: {e}");
    }
}

impl Connection {
    async fn run(&mut self, stop: &mut Stop) -> io::Result<()> {
        loop {
            while let Some(request) = self.next_request().await? {
                let flow = execute(&mut self.session, request).await;
                match flow {
                    Flow::Reply(reply) => reply.encode(self.session.resp3, &mut self.output),
                    Flow::Silent => {}
                    Flow::Close(reply) => {
                        if let Some(reply) = reply {
                            reply.encode(self.session.resp3, &mut self.output);
                        }
                        return self.flush().await;
                    }
                }
                if self.output.len() >= FLUSH_AT {
                    self.flush().await?;
                }
                if stop.is_stopped() {
                    break;
                }
            }
            self.flush().await?;
            if stop.is_stopped() {
                return Ok(());
            }
            if self.input.len() + self.decoder.pending_bytes() > self.query_limit {
                tracing::warn!(client = %self.session.client.addr, "closing client that reached max query buffer length");
                return Ok(());
            }
            let want = self.decoder.bulk_wanted(self.input.len()).unwrap_or(0).clamp(READ_CHUNK, MAX_READ_RESERVE);
            self.input.reserve(want);
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

    /// The next complete request in the input, if there is one. A protocol
    /// error is answered here and ends the connection.
    async fn next_request(&mut self) -> io::Result<Option<Vec<bytes::Bytes>>> {
        match self.decoder.decode(&mut self.input) {
            Ok(request) => Ok(request),
            Err(ProtocolError(text)) => {
                tracing::debug!(client = %self.session.client.addr, "protocol error: {text}");
                Reply::Error(format!("ERR Protocol error: {text}")).encode(self.session.resp3, &mut self.output);
                self.flush().await?;
                Err(io::Error::new(io::ErrorKind::InvalidData, text))
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        self.socket.write_all(&self.output).await?;
        metrics::add(&self.session.server.metrics.net_output_bytes, self.output.len() as u64);
        self.output.clear();
        Ok(())
    }
}
