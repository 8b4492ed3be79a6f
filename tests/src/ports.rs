//! Loopback ports that stay a test's own for as long as it needs them.
//!
//! The suites run in parallel processes (nextest), and every one of them binds port 0 for its
//! listeners, sockets and daemons. A port number a test got from the kernel, let go, and then
//! used by number later ("unreachable" targets, a server restarted on the same port) can be
//! handed to any of those in the meantime: a target that should refuse connections accepts them
//! instead, or a restarted server finds its port taken. So:
//!
//! - [`RefusingAddr`]: a TCP address that refuses connections. A socket stays bound to it
//!   without listening and without `SO_REUSEADDR`, so no listener can bind the port and the
//!   kernel never picks it as the source port of an outgoing connection (which could connect a
//!   socket to itself); a connection attempt gets a reset.
//! - [`ReservedPort`]: a UDP port kept free for one test's use, from below the kernel's
//!   ephemeral range, so no `bind(port 0)` anywhere can get it, and marked by a TCP socket bound
//!   to the same number, so no other test reserving a port picks it either.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use socket2::{Domain, Socket, Type};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A TCP socket bound to `127.0.0.1:port` without `SO_REUSEADDR` and not listening.
fn bind_tcp(port: u16) -> std::io::Result<Socket> {
    // socket2 sets no options of its own: in particular not SO_REUSEADDR, which std's
    // `TcpListener::bind` sets and which would let another reuse-socket bind beside this one.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((LOOPBACK, port)).into())?;
    Ok(socket)
}

/// A loopback TCP address where nothing listens and nothing can, while this value lives.
#[derive(Debug)]
pub struct RefusingAddr {
    addr: SocketAddr,
    _held: Socket,
}

impl RefusingAddr {
    /// Binds a fresh port and holds it.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub fn new() -> Self {
        let held = bind_tcp(0).expect("bind a loopback TCP port");
        let addr = held
            .local_addr()
            .expect("bound")
            .as_socket()
            .expect("an inet address");
        Self { addr, _held: held }
    }

    /// The address; connecting to it is refused.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for RefusingAddr {
    fn default() -> Self {
        Self::new()
    }
}

/// A UDP port on 127.0.0.1 that only its holder uses, bound or not, while this value lives.
#[derive(Debug)]
pub struct ReservedPort {
    port: u16,
    _mark: Socket,
}

impl ReservedPort {
    /// Reserves a port below the ephemeral range that is free for UDP now.
    ///
    /// # Panics
    ///
    /// If every candidate is taken.
    pub fn udp() -> Self {
        let low = ephemeral_low();
        // Start somewhere that depends on the process, to keep parallel tests from trying the
        // same candidates in the same order; correctness comes from the marks, not from this.
        let span = 8192.min(low.saturating_sub(1025));
        let start = std::process::id() as u16 % span.max(1);
        for i in 0..span {
            let port = low - 1 - (start + i) % span;
            let Ok(mark) = bind_tcp(port) else {
                continue; // another test reserved it (or something listens there)
            };
            if UdpSocket::bind((LOOPBACK, port)).is_ok() {
                return Self { port, _mark: mark };
            }
        }
        panic!("no free loopback port below {low}");
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.port))
    }
}

/// The lowest port the kernel hands out for port 0 (Linux's `ip_local_port_range`; the IANA
/// default elsewhere).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|&low: &u16| low > 2048)
        .unwrap_or(49152)
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn a_refusing_address_refuses_and_cannot_be_taken() {
        let refusing = RefusingAddr::new();
        for _ in 0..3 {
            let err = TcpStream::connect(refusing.addr()).expect_err("nothing listens");
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        assert!(
            TcpListener::bind(refusing.addr()).is_err(),
            "nobody else can listen there"
        );
    }

    #[test]
    fn a_reserved_port_is_outside_the_ephemeral_range_and_not_reserved_twice() {
        let a = ReservedPort::udp();
        let b = ReservedPort::udp();
        assert_ne!(a.port(), b.port());
        assert!(a.port() < ephemeral_low());
        let socket = UdpSocket::bind(a.addr()).expect("the holder can bind it");
        drop(socket);
        assert!(
            UdpSocket::bind(a.addr()).is_ok(),
            "and again after a restart"
        );
    }
}
