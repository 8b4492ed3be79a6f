//! `burrow netcheck` (what the NAT in front of this host does) and the server's second STUN
//! socket that it needs (`burrow server --netcheck-udp`). Both are thin drivers of
//! [`burrow_core::netcheck`]: every decision is the core's; here are sockets and threads.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use burrow_core::netcheck::{
    AnswerFrom, Netcheck, NetcheckConfig, Report, Socket, answer_alternate,
};
use burrow_tokio::local_ip_toward;

/// Largest datagram read; STUN answers and port-mapping replies are far smaller.
const MAX_DATAGRAM: usize = 2048;

/// Where the second STUN socket goes for `--netcheck-udp VALUE` and a server on `listen`:
/// `off` for none; `auto` (the default) for the next port on the same address (any free port
/// when the server's is 0); else an address.
pub fn alternate_addr(value: &str, listen: SocketAddr) -> Result<Option<SocketAddr>, String> {
    match value {
        "off" => Ok(None),
        "auto" => {
            let port = match listen.port() {
                0 => 0,
                u16::MAX => return Err("--netcheck-udp auto: the server's port is 65535, so there is no next port; give an address or `off`".into()),
                p => p + 1,
            };
            Ok(Some(SocketAddr::new(listen.ip(), port)))
        }
        addr => addr.parse().map(Some).map_err(|_| {
            format!("--netcheck-udp {addr}: give `auto`, `off` or an IP:PORT address")
        }),
    }
}

/// Binds the server's second STUN socket.
pub fn bind_alternate(addr: SocketAddr) -> Result<UdpSocket, String> {
    UdpSocket::bind(addr).map_err(|e| {
        format!(
            "--netcheck-udp {addr}: cannot bind: {e} (give another address, or `off` to run without `burrow netcheck` support)"
        )
    })
}

/// Answers STUN on `alternate` (bound at `here`), sending the answers to change requests from
/// `main` (a handle on the server's own socket, at `main_addr`). Runs on a thread of its own
/// until the process ends.
pub fn spawn_alternate(alternate: UdpSocket, main: UdpSocket, main_addr: SocketAddr) {
    let here = alternate
        .local_addr()
        .expect("a bound socket has an address");
    std::thread::spawn(move || {
        let mut buf = [0u8; MAX_DATAGRAM];
        loop {
            let (len, from) = match alternate.recv_from(&mut buf) {
                Ok(r) => r,
                // ICMP errors from earlier answers and the like: nothing to do.
                Err(_) => continue,
            };
            let Some((via, reply)) = answer_alternate(&buf[..len], from, here, main_addr) else {
                continue;
            };
            let socket = match via {
                AnswerFrom::Same => &alternate,
                AnswerFrom::Other => &main,
            };
            // A lost answer is retransmitted for by the client; nothing to report.
            let _ = socket.send_to(&reply, from);
        }
    });
}

/// `burrow netcheck`: runs the check against `server` and returns the report; with
/// `port_mapping`, also asks the default gateway and the LAN's UPnP devices.
pub fn run(server: &str, port_mapping: bool) -> Result<Report, String> {
    let addrs: Vec<SocketAddr> = server
        .to_socket_addrs()
        .map_err(|e| format!("--server {server}: {e}"))?
        .collect();
    let v4 = addrs
        .iter()
        .copied()
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("--server {server}: no IPv4 address"))?;
    let v6 = addrs.iter().copied().find(SocketAddr::is_ipv6);
    let bind4 = |what: &str| {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| format!("{what} socket: {e}"))
    };
    let discover = bind4("discovery")?;
    let test = bind4("test")?;
    let filter = bind4("filtering")?;
    let v6_socket = v6.and_then(|_| UdpSocket::bind("[::]:0").ok());
    let test_port = test.local_addr().map_err(|e| e.to_string())?.port();
    let config = NetcheckConfig {
        server: v4,
        server_v6: v6.filter(|_| v6_socket.is_some()),
        gateway: default_gateway().filter(|_| port_mapping).map(IpAddr::V4),
        test_local: local_ip_toward(v4).map(|ip| SocketAddr::new(ip, test_port)),
        upnp: port_mapping,
    };
    let seed: [u8; 32] = burrow_core::node::seed(getrandom::fill).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    let mut sockets = vec![
        (Socket::Discover, discover),
        (Socket::Test, test),
        (Socket::Filter, filter),
    ];
    if let Some(s) = v6_socket {
        sockets.push((Socket::V6, s));
    }
    let mut senders = Vec::new();
    for (which, socket) in sockets {
        let reader = socket.try_clone().map_err(|e| e.to_string())?;
        reader
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; MAX_DATAGRAM];
            loop {
                match reader.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        if tx.send((which, from, buf[..len].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        // The check is over once nobody listens.
                        if tx.send((which, from_nowhere(), Vec::new())).is_err() {
                            return;
                        }
                    }
                    Err(_) => {}
                }
            }
        });
        senders.push((which, socket));
    }
    drop(tx);
    let mut check = Netcheck::new(config, Instant::now(), seed);
    loop {
        while let Some(t) = check.poll_transmit() {
            if let Some((_, s)) = senders.iter().find(|(w, _)| *w == t.socket) {
                // Unreachable destinations (no IPv6 route, say) are what the check measures.
                let _ = s.send_to(&t.payload, t.dst);
            }
        }
        let Some(deadline) = check.poll_timeout() else {
            break;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok((which, from, bytes)) if !bytes.is_empty() => {
                check.handle_input(Instant::now(), which, from, &bytes)
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => check.handle_timeout(Instant::now()),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(check.report().clone())
}

/// A placeholder source for the readers' "still here" ticks (empty datagrams are never
/// passed on to the machine).
fn from_nowhere() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
}

/// The report as one JSON object, for scripts (and the tests).
pub fn to_json(report: &Report) -> String {
    let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string());
    serde_json::json!({
        "server": addr(report.server),
        "public_v4": addr(report.public_v4),
        "public_v6": report.public_v6.map(addr),
        "no_nat": report.no_nat(),
        "server_other": addr(report.server_other),
        "mapping": report.mapping_name(),
        "filtering": report.filtering_name(),
        "hairpin": report.hairpin,
        "unsolicited_moves_mapping": report.unsolicited_moves_mapping,
        "gateway": report.port_mapping.gateway.map(|g| g.to_string()),
        "upnp": report.port_mapping.upnp.map(|g| g.to_string()),
        "nat_pmp": report.port_mapping.nat_pmp,
        "pcp": report.port_mapping.pcp,
        "verdict": report.verdict(),
    })
    .to_string()
}

/// The gateway a daemon asks for a port mapping: the IPv4 default gateway, unless the way to
/// `server` does not leave this machine through it (a server on loopback or IPv6, or on this
/// host's own network), where a mapping would serve nothing.
pub fn gateway_toward(server: SocketAddr) -> Option<Ipv4Addr> {
    let local = local_ip_toward(server)?;
    if !server.is_ipv4() || local.is_loopback() || server.ip().is_loopback() {
        return None;
    }
    let gateway = default_gateway()?;
    let same_subnet = |a: IpAddr| match (a, server.ip()) {
        (IpAddr::V4(a), IpAddr::V4(s)) => a.octets()[..3] == s.octets()[..3],
        _ => false,
    };
    (!same_subnet(local)).then_some(gateway)
}

/// The IPv4 default gateway from /proc/net/route (Linux); `None` elsewhere or without one.
fn default_gateway() -> Option<Ipv4Addr> {
    parse_route_table(&std::fs::read_to_string("/proc/net/route").ok()?)
}

/// The gateway of the first default route (destination and mask 0, flags UP|GATEWAY) in the
/// text of /proc/net/route, whose addresses are little-endian hex.
fn parse_route_table(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (dest, gw, flags, mask) = (
            hex(f.get(1)?)?,
            hex(f.get(2)?)?,
            hex(f.get(3)?)?,
            hex(f.get(7)?)?,
        );
        (dest == 0 && mask == 0 && flags & 0x3 == 0x3 && gw != 0)
            .then(|| Ipv4Addr::from(gw.swap_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_gateway_is_read_from_the_route_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t0100010A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(parse_route_table(table), Some(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(parse_route_table("Iface\tDestination\n"), None);
        assert_eq!(parse_route_table("garbage\nx y z\n\u{0}\n"), None);
        // A default route without a gateway (a point-to-point link) names none.
        let ptp = "h\neth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(parse_route_table(ptp), None);
    }

    #[test]
    fn the_alternate_address_follows_the_server_or_is_refused_with_the_fix() {
        let listen: SocketAddr = "0.0.0.0:7000".parse().unwrap();
        assert_eq!(
            alternate_addr("auto", listen),
            Ok(Some("0.0.0.0:7001".parse().unwrap()))
        );
        assert_eq!(
            alternate_addr("auto", "127.0.0.1:0".parse().unwrap()),
            Ok(Some("127.0.0.1:0".parse().unwrap()))
        );
        assert_eq!(alternate_addr("off", listen), Ok(None));
        assert_eq!(
            alternate_addr("192.0.2.11:3478", listen),
            Ok(Some("192.0.2.11:3478".parse().unwrap()))
        );
        assert!(
            alternate_addr("nonsense", listen)
                .unwrap_err()
                .contains("`auto`, `off`")
        );
        assert!(alternate_addr("auto", "0.0.0.0:65535".parse().unwrap()).is_err());
    }
}
