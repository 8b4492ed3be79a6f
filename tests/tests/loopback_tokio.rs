//! End to end on loopback with the tokio runtime: real UDP and TCP sockets, a server and two
//! daemons, TCP services behind the tunnel. Every test is bounded in time; none passes or
//! fails on timing alone.

use std::time::Duration;

use burrow_tests::loopback::{Tunnel, echo_service, reply_after_eof_service};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound for a whole test: far above what it needs, so only a hang trips it.
const LIMIT: Duration = Duration::from_secs(240);

/// Deterministic pseudo-random bytes (xorshift), so the data is not compressible or periodic.
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_echo_matches_sha256() {
    tokio::time::timeout(LIMIT, async {
        let echo = echo_service().await;
        let tunnel = Tunnel::start(&[("/e2e/echo", echo)]).await;
        let stream = TcpStream::connect(tunnel.listen_addr("/e2e/echo"))
            .await
            .expect("connect to the local listener");
        let (mut rd, mut wr) = stream.into_split();
        let data = noise(64 << 20, 0x9E37_79B9_7F4A_7C15);
        let sent = Sha256::digest(&data);
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(256 * 1024) {
                wr.write_all(chunk).await.expect("write");
            }
            wr.shutdown().await.expect("half-close");
        });
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        loop {
            let n = rd.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n;
        }
        writer.await.expect("writer");
        assert_eq!(total, 64 << 20);
        assert_eq!(hasher.finalize(), sent, "SHA-256 of what came back");
        tunnel.shutdown().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_connections() {
    tokio::time::timeout(LIMIT, async {
        let echo = echo_service().await;
        let tunnel = Tunnel::start(&[("/e2e/echo", echo)]).await;
        let addr = tunnel.listen_addr("/e2e/echo");
        let clients: Vec<_> = (0..100u64)
            .map(|i| {
                tokio::spawn(async move {
                    let mut s = TcpStream::connect(addr).await.expect("connect");
                    let data = noise(10_000 + i as usize * 100, i + 1);
                    let (mut rd, mut wr) = s.split();
                    let write = async {
                        wr.write_all(&data).await.expect("write");
                        wr.shutdown().await.expect("half-close");
                    };
                    let mut back = Vec::new();
                    let read = rd.read_to_end(&mut back);
                    let ((), got) = tokio::join!(write, read);
                    got.expect("read");
                    assert!(back == data, "connection {i} got its own bytes back");
                })
            })
            .collect();
        for c in clients {
            c.await.expect("client");
        }
        let status = tunnel.connector.status().await.expect("runs");
        assert_eq!(status.conns.len(), 0, "every connection was closed cleanly");
        tunnel.shutdown().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_client_still_receives_the_reply() {
    tokio::time::timeout(LIMIT, async {
        let service = reply_after_eof_service().await;
        let tunnel = Tunnel::start(&[("/e2e/reply", service)]).await;
        let mut s = TcpStream::connect(tunnel.listen_addr("/e2e/reply"))
            .await
            .expect("connect");
        let request = noise(300_000, 42);
        s.write_all(&request).await.expect("write");
        s.shutdown().await.expect("half-close our side");
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.expect("read the reply");
        let head = b"received 300000 bytes\n";
        assert!(
            reply.starts_with(head),
            "{:?}",
            String::from_utf8_lossy(&reply[..40.min(reply.len())])
        );
        let mut reversed = request.clone();
        reversed.reverse();
        assert!(
            reply[head.len()..] == reversed[..],
            "the whole reply after our EOF"
        );
        tunnel.shutdown().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_resets_the_client() {
    tokio::time::timeout(LIMIT, async {
        // A port nothing listens on: bind, note the port, close.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("bound")
        };
        let tunnel = Tunnel::start(&[("/e2e/nothing", closed)]).await;
        let mut s = TcpStream::connect(tunnel.listen_addr("/e2e/nothing"))
            .await
            .expect("the local listener accepts");
        let _ = s.write_all(b"anyone?").await;
        let mut buf = Vec::new();
        let got = s.read_to_end(&mut buf).await;
        assert!(buf.is_empty(), "no data from a target that is not there");
        assert!(
            matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the client sees a reset, not a clean end: {got:?}"
        );
        tunnel.shutdown().await;
    })
    .await
    .expect("within the time limit");
}
