//! # burrow-tokio: burrow's driver on tokio, and the async driver shared with smol
//!
//! One task per node drives a sans-IO [`burrow_core::node::Node`] the way core's crate docs
//! say: send what the node wants sent (in GSO batches, applying each datagram's TTL), perform
//! what it asks of local sockets, wait for a datagram, local I/O, a command or the node's
//! deadline, read the clock once, feed the node. There is no protocol logic here.
//!
//! The driver is written once over a small [`Runtime`] trait (quinn's model); the tokio shim
//! is behind the default `tokio` feature. burrow-smol depends on this crate without it and
//! brings its own shim; burrow-mio uses only [`udp`], the batching UDP socket.
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run(config: burrow_core::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use burrow_tokio::{Node, NodeConfig};
//! let node = Node::spawn(NodeConfig::new(config, "0.0.0.0:0".parse()?))?;
//! println!("UDP on {}", node.udp_addr());
//! let status = node.status().await?;
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod driver;
mod handle;
mod local;
pub mod local_conn;
mod ready;
pub mod requests;
#[cfg(feature = "tokio")]
mod rt_tokio;
mod runtime;
pub mod udp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use burrow_core::forward::ConnId;
use burrow_core::node::{Level, LogLine};

pub use burrow_core::node::{NodeConfig, Services, StartError, Stopped, Summary};
pub use burrow_core::status::{ConnInfo, PeerInfo, ServiceInfo, Status};
pub use handle::{LoopFuture, MasterAttach, NodeControl, NodeHandle, start};
#[cfg(feature = "tokio")]
pub use rt_tokio::Tokio;
pub use runtime::{Direction, Runtime};

/// Starts nodes on tokio.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct Node;

#[cfg(feature = "tokio")]
impl Node {
    /// Binds the UDP socket and the listeners, exposes the services, and spawns the node's
    /// task on the current tokio runtime. Must be called from within a tokio runtime.
    pub fn spawn(config: NodeConfig) -> Result<NodeHandle, StartError> {
        start::<Tokio>(config, |run| {
            tokio::spawn(run);
            Ok(())
        })
    }
}

/// Logs a node's [`LogLine`] at its level.
pub fn log(line: &LogLine) {
    match line.level() {
        Level::Warn => tracing::warn!("{line}"),
        Level::Info => tracing::info!("{line}"),
        Level::Trace => tracing::trace!("{line}"),
    }
}

/// Performs a node's [`burrow_core::node::Output::Save`]: writes `contents` to a temporary
/// file beside `path` (mode 0600), syncs it and renames it over `path`, so a crash leaves the
/// old file or the new one, never half of one. A failure is logged, not fatal: the state stays
/// in memory. The files are small and rare (a pin per new service), so the loop does this
/// inline.
pub fn save(path: &std::path::Path, contents: &str) {
    if let Err(e) = write_atomically(path, contents.as_bytes()) {
        tracing::error!("cannot save {}: {e}", path.display());
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Logs a local connection's end, with why it failed if it did.
pub fn log_close(conn: ConnId, reason: Option<&str>) {
    match reason {
        Some(why) => tracing::info!(%conn, "connection failed: {why}"),
        None => tracing::debug!(%conn, "connection closed"),
    }
}

/// A non-blocking UDP socket on an ephemeral port of `target`'s family, for one UDP flow
/// toward `target` (`burrow_core::forward::udp::UdpAction::Open`). Not connected, so that
/// sending to the target works on every system: its reader ignores anyone but the target.
pub fn flow_socket(target: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let any: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Looks `target` (`host:port`) up on a thread of its own, for a UDP flow whose target is a
/// host name (every runtime does it so, never on its loop), and hands `done` the first
/// address or why there is none. `Err` when no thread could be started.
pub fn lookup_flow_target(
    target: String,
    done: impl FnOnce(Result<std::net::SocketAddr, String>) + Send + 'static,
) -> std::io::Result<()> {
    use std::net::ToSocketAddrs;
    let lookup = move || {
        let addr = match target.to_socket_addrs() {
            Ok(mut found) => found
                .next()
                .ok_or_else(|| format!("`{target}` has no address")),
            Err(e) => Err(format!("cannot look up `{target}`: {e}")),
        };
        done(addr);
    };
    std::thread::Builder::new()
        .name("burrow-lookup".into())
        .spawn(lookup)
        .map(drop)
}

/// The accept queue of local listeners: redis's 511 (the kernel caps it at
/// `net.core.somaxconn`), where the standard library's 128 overflowed under a burst of 500
/// connections.
pub const LISTEN_BACKLOG: i32 = 511;

/// A non-blocking TCP listener on `addr` with a [`LISTEN_BACKLOG`]-deep accept queue, for a
/// service's local port (every runtime binds them here).
pub fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As the standard library does: a restarted daemon rebinds a port whose old
    // connections linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The local address the OS routes toward `server` from, found by connecting a throwaway UDP
/// socket (which sends nothing); the OS query behind
/// [`burrow_core::config::RendezvousConfig::default_host_candidates`].
pub fn local_ip_toward(server: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(server).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;
    use std::time::Duration;

    /// 400 connections complete their handshake while nobody accepts: the accept queue holds
    /// them (with the standard library's backlog of 128, the rest time out).
    #[test]
    fn a_local_listener_queues_hundreds_of_connections() {
        let somaxconn: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if somaxconn < super::LISTEN_BACKLOG {
            println!("skipping: net.core.somaxconn is {somaxconn}");
            return;
        }
        let listener = super::tcp_listener("127.0.0.1:0".parse().expect("literal")).expect("bind");
        let addr = listener.local_addr().expect("bound");
        let mut held = Vec::new();
        for i in 0..400 {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(conn) => held.push(conn),
                Err(e) => panic!("connection {i} not queued: {e}"),
            }
        }
        assert_eq!(held.len(), 400);
    }
}
