//! The peer protocol: the only module that knows how nodes talk to each
//! other on the wire.
//!
//! `wire` defines the handshake, the frames and every message; `client`
//! keeps one multiplexed connection per peer and bounds every call by the
//! request timeout; `server` answers peers with the node's [`Handler`].
//! Messages carry the version module's objects and contexts and the
//! mutation module's operations in their own binary encodings.

mod client;
mod server;
mod wire;

pub use client::{CallError, Peers};
pub use server::{Handler, serve};
pub use wire::{Member, PartitionCount, Request, Response};

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::net::TcpListener;

    use super::*;
    use crate::shutdown;
    use crate::version::NodeId;

    /// Echoes reads back as errors naming the key; sleeps on a key `slow`.
    struct Echo(AtomicUsize);

    impl Handler for Echo {
        async fn handle(&self, _: &Member, request: Request) -> Response {
            self.0.fetch_add(1, Ordering::Relaxed);
            match request {
                Request::Ping => Response::Pong,
                Request::Read { key } if key.as_ref() == b"slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Response::Done
                }
                Request::Read { key } => Response::Error(String::from_utf8_lossy(&key).into_owned()),
                _ => Response::Done,
            }
        }
    }

    fn member(id: u64, peer_addr: String) -> Member {
        Member { id: NodeId(id), client_addr: "127.0.0.1:0".into(), peer_addr, epoch: 1 }
    }

    async fn start() -> (String, Arc<Echo>, shutdown::Trigger) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (trigger, stop) = shutdown::signal();
        let handler = Arc::new(Echo(AtomicUsize::new(0)));
        let tasks = shutdown::Tracker::default();
        tokio::spawn(serve(listener, member(1, addr.clone()), Arc::clone(&handler), 1 << 20, stop, tasks));
        (addr, handler, trigger)
    }

    #[tokio::test]
    async fn many_calls_share_one_connection_and_each_gets_its_answer() {
        let (addr, handler, _trigger) = start().await;
        let (_t, stop) = shutdown::signal();
        let peers = Peers::new(member(2, "127.0.0.1:1".into()), Duration::from_secs(5), 1 << 20, stop);
        assert_eq!(peers.identify(&addr).await.expect("identify").id, NodeId(1));
        let calls: Vec<_> = (0..500)
            .map(|i| {
                let (peers, addr) = (peers.clone(), addr.clone());
                tokio::spawn(
                    async move { peers.call(&addr, &Request::Read { key: Bytes::from(format!("k{i}")) }).await },
                )
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.expect("task"), Ok(Response::Error(format!("k{i}"))));
        }
        assert_eq!(handler.0.load(Ordering::Relaxed), 500);
    }

    #[tokio::test]
    async fn calls_time_out_and_dead_peers_fail_fast() {
        let (addr, _handler, trigger) = start().await;
        let (_t, stop) = shutdown::signal();
        let peers = Peers::new(member(2, "127.0.0.1:1".into()), Duration::from_millis(300), 1 << 20, stop);
        let slow = peers.call(&addr, &Request::Read { key: Bytes::from("slow") }).await;
        assert!(matches!(slow, Err(CallError::Timeout(_))), "{slow:?}");
        assert_eq!(peers.call(&addr, &Request::Ping).await, Ok(Response::Pong), "the connection survives a timeout");
        trigger.fire();
        // The server stops: calls fail, and soon without even connecting.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while peers.call(&addr, &Request::Ping).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "calls still succeed after the server stopped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t = std::time::Instant::now();
        assert!(peers.call(&addr, &Request::Ping).await.is_err());
        assert!(t.elapsed() < Duration::from_millis(250), "failing fast, not timing out");
    }

    #[tokio::test]
    async fn garbage_closes_only_its_own_connection() {
        let (addr, _handler, _trigger) = start().await;
        let (_t, stop) = shutdown::signal();
        let peers = Peers::new(member(2, "127.0.0.1:1".into()), Duration::from_secs(5), 1 << 20, stop);
        assert_eq!(peers.call(&addr, &Request::Ping).await, Ok(Response::Pong));
        let a = addr.clone();
        tokio::task::spawn_blocking(move || {
            for junk in [&b"GET / HTTP/1.1\r\n\r\n"[..], b"SHOAL\x01", &[0xff; 300]] {
                let mut s = std::net::TcpStream::connect(&a).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                let _ = s.write_all(junk);
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        })
        .await
        .expect("junk");
        assert_eq!(peers.call(&addr, &Request::Ping).await, Ok(Response::Pong));
    }
}
