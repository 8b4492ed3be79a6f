//! A rendezvous server and two daemons on the tokio runtime, on loopback: daemon A exposes
//! local TCP services, daemon B listens for them. For the end-to-end suites.

use std::net::SocketAddr;
use std::time::Duration;

use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::{ServerConfig, ServiceName};
use burrow_core::{Config, SecretKey};
use burrow_tokio::{Node, NodeConfig, NodeHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The three nodes of a loopback tunnel.
pub struct Tunnel {
    /// The rendezvous server.
    pub server: NodeHandle,
    /// The daemon exposing the services.
    pub exposer: NodeHandle,
    /// The daemon listening for them.
    pub connector: NodeHandle,
}

impl Tunnel {
    /// Starts the server and the two daemons: A exposes each `(name, target)`, B listens on a
    /// random loopback port for each name. Returns once both daemons are registered (within
    /// ten seconds, or panics).
    pub async fn start(services: &[(&str, SocketAddr)]) -> Self {
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        let server_key = SecretKey::from_bytes([7; 32]);
        let server = Node::spawn(NodeConfig::new(
            Config::server(server_key.clone(), ServerConfig::default()),
            loopback,
        ))
        .expect("server starts");
        let rendezvous = RendezvousConfig {
            server_key: server_key.public_key(),
            server_addr: server.udp_addr(),
            token: "loopback".into(),
            host_candidates: Vec::new(),
            route: Default::default(),
        };
        let name = |s: &str| -> ServiceName { s.parse().expect("valid name") };
        let mut a = NodeConfig::new(
            Config::daemon(SecretKey::from_bytes([1; 32]), rendezvous.clone()),
            loopback,
        );
        a.expose = services
            .iter()
            .map(|(n, t)| (name(n), t.to_string()))
            .collect();
        let mut b = NodeConfig::new(
            Config::daemon(SecretKey::from_bytes([2; 32]), rendezvous),
            loopback,
        );
        b.connect = services.iter().map(|(n, _)| (name(n), loopback)).collect();
        let tunnel = Self {
            server,
            exposer: Node::spawn(a).expect("daemon A starts"),
            connector: Node::spawn(b).expect("daemon B starts"),
        };
        for node in [&tunnel.exposer, &tunnel.connector] {
            wait_registered(node).await;
        }
        tunnel
    }

    /// The local address daemon B listens on for `service`.
    pub fn listen_addr(&self, service: &str) -> SocketAddr {
        self.connector
            .listeners()
            .iter()
            .find(|(n, _)| n.as_str() == service)
            .map(|(_, a)| *a)
            .expect("a listener for the service")
    }

    /// Stops all three nodes.
    pub async fn shutdown(self) {
        self.connector.shutdown().await;
        self.exposer.shutdown().await;
        self.server.shutdown().await;
    }
}

async fn wait_registered(node: &NodeHandle) {
    for _ in 0..200 {
        let status = node.status().await.expect("node runs");
        if status.registered.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("daemon not registered within 10 s");
}

/// A TCP echo service on a random loopback port: echoes until end of file, then half-closes.
pub async fn echo_service() -> SocketAddr {
    serve(|mut stream| async move {
        let (mut rd, mut wr) = stream.split();
        tokio::io::copy(&mut rd, &mut wr).await?;
        wr.shutdown().await
    })
    .await
}

/// A service that answers only after the client's end of file: `received N bytes\n` then
/// the bytes reversed, then closes. It shows the half-close crossed the tunnel with the
/// reverse direction still open.
pub async fn reply_after_eof_service() -> SocketAddr {
    serve(|mut stream| async move {
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await?;
        let head = format!("received {} bytes\n", all.len());
        all.reverse();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&all).await?;
        stream.shutdown().await
    })
    .await
}

async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    addr
}
