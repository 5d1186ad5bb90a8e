//! The peer protocol: the only module that knows how nodes talk to each
//! other on the wire.
//!
//! `wire` defines the handshake, the frames and the envelope of every
//! message; the messages are grouped by subsystem, each in its own file
//! (`kv`: reads and writes of keys; `gossip`: membership), and each
//! subsystem of the node answers its own. `client` keeps one multiplexed
//! connection per peer, bounds every call by the request timeout and holds
//! the test seam ([`Faults`]); `server` answers peers with the node's
//! [`Handler`]. Messages carry the version module's objects and contexts
//! and the mutation module's operations in their own binary encodings.

mod client;
pub mod gossip;
pub mod kv;
mod server;
mod wire;

pub use client::{CallError, Fault, Faults, Lane, Peers, Traffic};
pub use gossip::{
    Beat, ClusterRecord, Decision, Delta, DigestItem, Entry, GossipRequest, GossipResponse, MAX_MEMBERS, Status,
    decode_entries, decode_record, decode_ring, encode_entries, encode_record, encode_ring,
};
pub use kv::{KvRequest, KvResponse, PartitionCount};
pub use server::{BACKLOG, HANDSHAKE_TIMEOUT, Handler, MAX_CONNECTIONS, WRITE_STALL, serve};
pub use wire::{Hello, MAX_ADDR, Member, Request, Response, VERSIONS, valid_addr};

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use tokio::net::TcpListener;

    use super::*;
    use crate::shutdown;
    use crate::version::NodeId;

    /// Echoes reads back as errors naming the key; sleeps on a key `slow`,
    /// answers 1 MB on a key `big`.
    struct Echo(AtomicUsize);

    impl Handler for Echo {
        async fn handle(&self, _: &Hello, request: Request) -> Response {
            self.0.fetch_add(1, Ordering::Relaxed);
            match request {
                Request::Gossip(GossipRequest::Ping) => Response::Gossip(GossipResponse::Pong),
                Request::Kv(KvRequest::Read { key }) if key.as_ref() == b"big" => Response::Error("x".repeat(1 << 20)),
                Request::Kv(KvRequest::Read { key }) if key.as_ref() == b"slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Response::Kv(KvResponse::Done)
                }
                Request::Kv(KvRequest::Read { key }) => Response::Error(String::from_utf8_lossy(&key).into_owned()),
                _ => Response::Kv(KvResponse::Done),
            }
        }
    }

    fn hello(id: u64, cluster: u64, peer_addr: String) -> Hello {
        Hello {
            versions: VERSIONS,
            cluster,
            partitions: 64,
            member: Member { id: NodeId(id), client_addr: "127.0.0.1:0".into(), peer_addr },
        }
    }

    async fn start() -> (String, Arc<Echo>, shutdown::Trigger) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (trigger, stop) = shutdown::signal();
        let handler = Arc::new(Echo(AtomicUsize::new(0)));
        let tasks = shutdown::Tracker::default();
        let me = Peers::new(hello(1, 7, addr.clone()), Duration::from_secs(5), 1 << 20, stop.clone());
        tokio::spawn(serve(listener, me, Arc::clone(&handler), 1 << 20, stop, tasks));
        (addr, handler, trigger)
    }

    fn client(timeout: Duration) -> Peers {
        let (_t, stop) = shutdown::signal();
        std::mem::forget(_t);
        Peers::new(hello(2, 7, "127.0.0.1:1".into()), timeout, 1 << 20, stop)
    }

    fn ping() -> Request {
        Request::Gossip(GossipRequest::Ping)
    }

    fn pong() -> Response {
        Response::Gossip(GossipResponse::Pong)
    }

    #[tokio::test]
    async fn many_calls_share_one_connection_and_each_gets_its_answer() {
        let (addr, handler, _trigger) = start().await;
        let peers = client(Duration::from_secs(5));
        assert_eq!(peers.identify(&addr).await.expect("identify").member.id, NodeId(1));
        let calls: Vec<_> = (0..500)
            .map(|i| {
                let (peers, addr) = (peers.clone(), addr.clone());
                tokio::spawn(
                    async move { peers.kv(&addr, KvRequest::Read { key: Bytes::from(format!("k{i}")) }).await },
                )
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.expect("task"), Err(CallError::Remote(format!("k{i}"))));
        }
        assert_eq!(handler.0.load(Ordering::Relaxed), 500);
    }

    #[tokio::test]
    async fn calls_time_out_and_dead_peers_fail_fast() {
        let (addr, _handler, trigger) = start().await;
        let peers = client(Duration::from_millis(300));
        let slow = peers.kv(&addr, KvRequest::Read { key: Bytes::from("slow") }).await;
        assert!(matches!(slow, Err(CallError::Timeout(_))), "{slow:?}");
        assert_eq!(peers.call(&addr, &ping()).await, Ok(pong()), "the connection survives a timeout");
        trigger.fire();
        // The server stops: calls fail, and soon without even connecting.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while peers.call(&addr, &ping()).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "calls still succeed after the server stopped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t = std::time::Instant::now();
        assert!(peers.call(&addr, &ping()).await.is_err());
        assert!(t.elapsed() < Duration::from_millis(250), "failing fast, not timing out");
    }

    #[tokio::test]
    async fn a_connection_whose_calls_keep_timing_out_is_closed_and_backs_off() {
        let (addr, _handler, _trigger) = start().await;
        let peers = client(Duration::from_millis(200));
        let slow = |peers: Peers, addr: String| async move {
            peers.kv(&addr, KvRequest::Read { key: Bytes::from("slow") }).await
        };
        let calls: Vec<_> = (0..4).map(|_| tokio::spawn(slow(peers.clone(), addr.clone()))).collect();
        for call in calls {
            assert!(matches!(call.await.expect("task"), Err(CallError::Timeout(_))));
        }
        // Stalled: the next call fails at once instead of waiting again.
        let t = std::time::Instant::now();
        let next = peers.call(&addr, &ping()).await;
        assert!(next.as_ref().is_err_and(CallError::not_delivered), "{next:?}");
        assert!(t.elapsed() < Duration::from_millis(100));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while peers.call(&addr, &ping()).await != Ok(pong()) {
            assert!(std::time::Instant::now() < deadline, "reconnects after the backoff");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn peers_of_another_cluster_are_refused_with_the_reason() {
        let (addr, handler, _trigger) = start().await;
        let (_t, stop) = shutdown::signal();
        let stranger = Peers::new(hello(3, 9, "127.0.0.1:2".into()), Duration::from_secs(2), 1 << 20, stop);
        match stranger.call(&addr, &ping()).await {
            Err(CallError::Refused(at, why)) => {
                assert_eq!(at, addr);
                assert!(why.contains("0000000000000007") && why.contains("0000000000000009"), "{why}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(handler.0.load(Ordering::Relaxed), 0, "nothing of it was handled");
        // A node with no cluster yet may connect (to ask to join).
        let (_t, stop) = shutdown::signal();
        let newcomer = Peers::new(hello(4, 0, "127.0.0.1:3".into()), Duration::from_secs(2), 1 << 20, stop);
        assert_eq!(newcomer.call(&addr, &ping()).await, Ok(pong()));
        newcomer.set_cluster(9, 64);
        assert!(matches!(newcomer.call(&addr, &ping()).await, Err(CallError::Refused(..))), "now it is a stranger");
    }

    #[tokio::test]
    async fn the_test_seam_drops_delays_and_refuses() {
        let (addr, _handler, _trigger) = start().await;
        let peers = client(Duration::from_millis(300));
        assert_eq!(peers.call(&addr, &ping()).await, Ok(pong()));
        peers.faults().set(&addr, Fault::Refuse);
        let t = std::time::Instant::now();
        assert!(matches!(peers.call(&addr, &ping()).await, Err(CallError::Refused(..))));
        assert!(t.elapsed() < Duration::from_millis(100));
        peers.faults().set(&addr, Fault::Drop);
        assert!(matches!(peers.call(&addr, &ping()).await, Err(CallError::Timeout(_))));
        peers.faults().set(&addr, Fault::Delay(Duration::from_millis(100)));
        let t = std::time::Instant::now();
        assert_eq!(peers.call(&addr, &ping()).await, Ok(pong()));
        assert!(t.elapsed() >= Duration::from_millis(100));
        peers.faults().heal();
        assert_eq!(peers.call(&addr, &ping()).await, Ok(pong()));
    }

    #[tokio::test]
    async fn unknown_messages_get_an_error_and_the_connection_stays() {
        let (addr, _handler, _trigger) = start().await;
        let a = addr.clone();
        let reply = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(&a).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            s.write_all(&wire::handshake(&hello(5, 7, "127.0.0.1:4".into()))).expect("handshake");
            // A frame of subsystem 42, then a ping, on the same connection.
            let mut frames = BytesMut::new();
            frames.extend_from_slice(&(10u32 + 4).to_le_bytes());
            frames.extend_from_slice(&1u64.to_le_bytes());
            frames.extend_from_slice(&[42, 1, b'a', b'b', b'c', b'd']);
            ping().encode(2, &mut frames);
            s.write_all(&frames).expect("frames");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("unknown peer message") || got.len() < 64 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            got
        })
        .await
        .expect("client");
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("ERR unknown peer message 42.1"), "{text}");
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_its_answers_is_not_read_either() {
        const ASKS: usize = 200;
        let (addr, handler, _trigger) = start().await;
        let a = addr.clone();
        let mut s = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(&a).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            s.write_all(&wire::handshake(&hello(6, 7, "127.0.0.1:5".into()))).expect("handshake");
            let mut asks = BytesMut::new();
            for id in 0..ASKS as u64 {
                Request::Kv(KvRequest::Read { key: Bytes::from("big") }).encode(id, &mut asks);
            }
            s.write_all(&asks).expect("requests");
            s
        })
        .await
        .expect("client");
        // The server answers until the backlog is full, then waits.
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = handler.0.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        let answered = handler.0.load(Ordering::Relaxed);
        assert!(answered >= server::BACKLOG >> 20, "{answered} answered");
        assert!(answered < ASKS / 2, "{answered} of {ASKS} answered with none read");
        // Reading, the peer gets every answer.
        let greeting = wire::handshake(&hello(1, 7, addr.clone())).len();
        let got = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 16];
            let (mut total, want) = (0usize, greeting + ASKS * ((1 << 20) + 3 + wire::HEADER));
            while total < want {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            (total, want)
        })
        .await
        .expect("reader");
        assert_eq!(got.0, got.1, "every answer arrives");
        assert_eq!(handler.0.load(Ordering::Relaxed), ASKS);
    }

    #[tokio::test]
    async fn garbage_closes_only_its_own_connection() {
        let (addr, _handler, _trigger) = start().await;
        let peers = client(Duration::from_secs(5));
        assert_eq!(peers.call(&addr, &ping()).await, Ok(pong()));
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
        assert_eq!(peers.call(&addr, &ping()).await, Ok(pong()));
    }
}
