//! A rendezvous server and two daemons on loopback, on any runtime: daemon A exposes local
//! services, daemon B listens for them. The suite in [`crate::loopback_suite!`] runs the same
//! tests on each runtime through the [`LoopbackNode`] trait; clients and services are plain
//! blocking std sockets on threads, so they favour no runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::{ServerConfig, ServiceName};
use burrow_core::status::Status;
use burrow_core::{Config, SecretKey};

use crate::ports::ReservedPort;

/// How long a test may take in all: far above what it needs, so only a hang trips it.
pub const LIMIT: Duration = Duration::from_secs(240);
/// Read and write timeout of test clients: a stalled tunnel fails the test instead of hanging.
pub const IO_LIMIT: Duration = Duration::from_secs(90);

/// What a node runs: every runtime's `NodeConfig` is this one type.
pub use burrow_core::node::NodeConfig as NodeSpec;

/// A running node of some runtime, driven from plain threads.
pub trait LoopbackNode: Sized + Send + 'static {
    /// Starts a node; panics if it cannot.
    fn start(spec: NodeSpec) -> Self;
    /// Its bound UDP address.
    fn udp_addr(&self) -> SocketAddr;
    /// Its listeners: service and local address.
    fn listeners(&self) -> Vec<(ServiceName, SocketAddr)>;
    /// Its status; panics if it has stopped.
    fn status(&self) -> Status;
    /// Stops it and waits until it has.
    fn stop(self);
}

/// Runs `body` on its own thread and fails if it does not finish within [`LIMIT`]. A panic in
/// `body` fails the test with its message.
pub fn bounded(body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(LIMIT) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test did not finish within {LIMIT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// Waits (bounded) until `check` holds for the node's status; panics with `what` otherwise.
pub fn wait_for<N: LoopbackNode>(node: &N, what: &str, check: impl Fn(&Status) -> bool) {
    for _ in 0..1200 {
        if check(&node.status()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within 60 s");
}

/// Deterministic pseudo-random bytes (xorshift), so the data is not compressible or periodic.
pub fn noise(len: usize, mut state: u64) -> Vec<u8> {
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

/// Connects a test client to `addr`, with [`IO_LIMIT`] timeouts.
pub fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_LIMIT).expect("connect to the local listener");
    s.set_read_timeout(Some(IO_LIMIT)).expect("timeout");
    s.set_write_timeout(Some(IO_LIMIT)).expect("timeout");
    s
}

/// Sends `data` and reads everything back until end of file, on one connection to `addr`.
pub fn round_trip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, IO_LIMIT)?;
    s.set_read_timeout(Some(IO_LIMIT))?;
    s.set_write_timeout(Some(IO_LIMIT))?;
    let mut wr = s.try_clone()?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        wr.write_all(&data)?;
        wr.shutdown(Shutdown::Write)
    });
    let mut back = Vec::new();
    let read = s.read_to_end(&mut back);
    writer.join().expect("writer thread")?;
    read.map(|_| back)
}

fn name(s: &str) -> ServiceName {
    s.parse().expect("valid name")
}

/// The three nodes of a loopback tunnel, and what it takes to restart each.
pub struct Tunnel<N: LoopbackNode> {
    server: Option<N>,
    exposer: Option<N>,
    connector: Option<N>,
    server_spec: NodeSpec,
    exposer_spec: NodeSpec,
    connector_spec: NodeSpec,
    /// The server's port, ours while it is down during a restart.
    _server_port: ReservedPort,
}

impl<N: LoopbackNode> Tunnel<N> {
    /// Starts the server and the two daemons: A exposes each `(name, target)`, B listens on a
    /// random loopback port for each name. Returns once both daemons are registered. A target
    /// is `host:port` or `unix:PATH`.
    pub fn start(services: &[(&str, String)]) -> Self {
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        let server_key = SecretKey::from_bytes([7; 32]);
        // A restarted server comes back on the same port, so nobody else may take the port
        // while it is down: a reserved one, not whatever port 0 gave the first start.
        let server_port = ReservedPort::udp();
        let server_spec = NodeSpec::new(
            Config::server(server_key.clone(), ServerConfig::default()),
            server_port.addr(),
        );
        let server = N::start(server_spec.clone());
        let rendezvous =
            RendezvousConfig::new(server_key.public_key(), server.udp_addr(), "loopback");
        let mut exposer_spec = NodeSpec::new(
            Config::daemon(SecretKey::from_bytes([1; 32]), rendezvous.clone()),
            loopback,
        );
        exposer_spec.expose = services.iter().map(|(n, t)| (name(n), t.clone())).collect();
        let mut connector_spec = NodeSpec::new(
            Config::daemon(SecretKey::from_bytes([2; 32]), rendezvous),
            loopback,
        );
        connector_spec.connect = services.iter().map(|(n, _)| (name(n), loopback)).collect();
        let tunnel = Self {
            server: Some(server),
            exposer: Some(N::start(exposer_spec.clone())),
            connector: Some(N::start(connector_spec.clone())),
            server_spec,
            exposer_spec,
            connector_spec,
            _server_port: server_port,
        };
        tunnel.wait_registered();
        tunnel
    }

    /// The rendezvous server.
    pub fn server(&self) -> &N {
        self.server.as_ref().expect("running")
    }

    /// Daemon A, which exposes the services.
    pub fn exposer(&self) -> &N {
        self.exposer.as_ref().expect("running")
    }

    /// Daemon B, which listens for them.
    pub fn connector(&self) -> &N {
        self.connector.as_ref().expect("running")
    }

    /// Waits until both daemons are registered with the server.
    pub fn wait_registered(&self) {
        for node in [self.exposer(), self.connector()] {
            wait_for(node, "daemon registered", |s| s.registered.is_some());
        }
    }

    /// The local address daemon B listens on for `service`.
    pub fn listen_addr(&self, service: &str) -> SocketAddr {
        self.connector()
            .listeners()
            .into_iter()
            .find(|(n, _)| n.as_str() == service)
            .map(|(_, a)| a)
            .expect("a listener for the service")
    }

    /// Stops daemon A and starts it again with the same key and services (on a new port, as
    /// after a restart behind a NAT).
    pub fn restart_exposer(&mut self) {
        self.exposer.take().expect("running").stop();
        self.exposer = Some(N::start(self.exposer_spec.clone()));
    }

    /// Stops daemon B and starts it again with the same key and services.
    pub fn restart_connector(&mut self) {
        self.connector.take().expect("running").stop();
        self.connector = Some(N::start(self.connector_spec.clone()));
    }

    /// Stops the server and starts it again with the same key on the same port.
    pub fn restart_server(&mut self) {
        self.server.take().expect("running").stop();
        self.server = Some(N::start(self.server_spec.clone()));
    }

    /// Stops daemon A for good (the tunnel dies from its end).
    pub fn stop_exposer(&mut self) {
        self.exposer.take().expect("running").stop();
    }

    /// Starts daemon A again after [`Self::stop_exposer`].
    pub fn restart_exposer_after_stop(&mut self) {
        assert!(self.exposer.is_none(), "daemon A is still running");
        self.exposer = Some(N::start(self.exposer_spec.clone()));
    }

    /// Stops daemon B for good (the tunnel dies under its local clients).
    pub fn stop_connector(&mut self) {
        self.connector.take().expect("running").stop();
    }

    /// Stops all three nodes (those still running).
    pub fn shutdown(mut self) {
        for node in [
            self.connector.take(),
            self.exposer.take(),
            self.server.take(),
        ]
        .into_iter()
        .flatten()
        {
            node.stop();
        }
    }
}

fn serve(handle: fn(TcpStream) -> std::io::Result<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("bound");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || handle(stream));
        }
    });
    addr
}

/// A download that never ends by itself: sends bytes to every client until the connection
/// fails, so any end a client sees is the tunnel's doing.
pub fn source_service() -> SocketAddr {
    serve(|mut stream| {
        let chunk = vec![0xA5u8; 64 << 10];
        loop {
            stream.write_all(&chunk)?;
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// A TCP echo service on a random loopback port: echoes until end of file, then half-closes.
pub fn echo_service() -> SocketAddr {
    serve(|mut stream| {
        let mut rd = stream.try_clone()?;
        std::io::copy(&mut rd, &mut stream)?;
        stream.shutdown(Shutdown::Write)
    })
}

/// A service that answers only after the client's end of file: `received N bytes\n` then
/// the bytes reversed, then closes. It shows the half-close crossed the tunnel with the
/// reverse direction still open.
pub fn reply_after_eof_service() -> SocketAddr {
    serve(|mut stream| {
        let mut all = Vec::new();
        stream.read_to_end(&mut all)?;
        let head = format!("received {} bytes\n", all.len());
        all.reverse();
        stream.write_all(head.as_bytes())?;
        stream.write_all(&all)?;
        stream.shutdown(Shutdown::Write)
    })
}

/// A unix-socket echo service at `path`: echoes until end of file, then half-closes.
pub fn unix_echo_service(path: &std::path::Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut rd = stream.try_clone()?;
                std::io::copy(&mut rd, &mut stream)?;
                stream.shutdown(Shutdown::Write)
            });
        }
    });
    Ok(())
}
