//! `burrow server --cb-listen ADDR`: the Containment Breach API on one UDP and TCP port.
//!
//! A thin driver of [`burrow_core::breach::Breach`], on plain threads so that it runs the same
//! in the tokio and the mio build: one thread receives UDP and fires the timers, one accepts
//! TCP connections, and each connection (at most `max_connections`, the core's bound) has a
//! thread that reads its requests. The machine sits behind a mutex; whoever feeds it drains
//! its output (writes responses, closes connections) before letting go. The threads decode
//! JSON into the core's message types and encode its responses; every decision is the core's.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use burrow_core::breach::{
    Breach, BreachConfig, ConnId, MAX_REQUEST_LEN, Malformed, Output, Request, Response,
    UdpOutcome, UdpRequest,
};

/// The longest the UDP thread sleeps between looks at the timers (a deadline set by another
/// thread is met at most this late).
const TICK: Duration = Duration::from_millis(100);
/// How long a response write may block before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Stack of a connection's thread: it decodes one small request at a time.
const CONN_STACK: usize = 256 * 1024;

/// The machine and the connections it knows.
struct Inner {
    cb: Breach,
    streams: BTreeMap<ConnId, (TcpStream, SocketAddr)>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    // A thread that panicked while holding the lock left the machine consistent enough to go
    // on: each call completes or does nothing.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Writes the responses and closes the connections the core asked for.
    fn drain(&mut self) {
        while let Some(out) = self.cb.poll_output() {
            match out {
                Output::Respond { conn, response } => {
                    let Some((stream, peer)) = self.streams.get_mut(&conn) else {
                        continue;
                    };
                    if response.is_error() {
                        tracing::info!(%conn, %peer, error = %response.error, "containment breach: error sent");
                    } else {
                        tracing::info!(
                            %conn, %peer,
                            source = %format!("{}:{}", response.source_ip, response.source_port),
                            dest = %format!("{}:{}", response.dest_ip, response.dest_port),
                            "containment breach: addresses sent"
                        );
                    }
                    if let Err(e) = write_response(stream, &response) {
                        // A peer that does not read its responses: give it up.
                        tracing::info!(%conn, %peer, error = %e, "containment breach: cannot write a response; closing");
                        let _ = stream.shutdown(Shutdown::Both);
                        self.streams.remove(&conn);
                        self.cb.handle_closed(Instant::now(), conn);
                    }
                }
                Output::Close { conn } => {
                    if let Some((stream, peer)) = self.streams.remove(&conn) {
                        tracing::debug!(%conn, %peer, "containment breach: connection closed");
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                }
            }
        }
    }
}

/// One JSON object and a newline, as Go's `json.Encoder` writes them.
fn write_response(stream: &mut TcpStream, response: &Response) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    stream.write_all(&bytes)
}

/// Binds UDP and TCP on `listen` (the same port for both; port 0 picks one) and starts serving
/// the API. Returns the bound address.
pub fn spawn(listen: SocketAddr, config: BreachConfig) -> Result<SocketAddr, String> {
    let (listener, udp) = bind(listen)?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("--cb-listen {listen}: {e}"))?;
    let shared: Shared = Arc::new(Mutex::new(Inner {
        cb: Breach::new(config),
        streams: BTreeMap::new(),
    }));
    let s = shared.clone();
    std::thread::Builder::new()
        .name("cb-udp".into())
        .spawn(move || udp_loop(&udp, &s))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    std::thread::Builder::new()
        .name("cb-accept".into())
        .spawn(move || accept_loop(&listener, &shared))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(addr)
}

/// A TCP listener and a UDP socket on the same port.
fn bind(listen: SocketAddr) -> Result<(TcpListener, UdpSocket), String> {
    let err = |e: std::io::Error| format!("--cb-listen {listen}: {e}");
    // With port 0, the TCP port picked may be taken for UDP: try a few.
    let tries = if listen.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let listener = TcpListener::bind(listen).map_err(err)?;
        let port = listener.local_addr().map_err(err)?.port();
        match UdpSocket::bind(SocketAddr::new(listen.ip(), port)) {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) => last = Some(e),
        }
    }
    Err(err(
        last.unwrap_or_else(|| std::io::Error::other("cannot bind"))
    ))
}

/// Receives `{"PeerPort": n}` datagrams and fires the machine's timers.
fn udp_loop(udp: &UdpSocket, shared: &Shared) {
    let mut buf = [0u8; MAX_REQUEST_LEN + 1];
    loop {
        let wait = {
            let inner = lock(shared);
            inner.cb.poll_timeout().map_or(TICK, |at| {
                at.saturating_duration_since(Instant::now()).min(TICK)
            })
        };
        let _ = udp.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let received = udp.recv_from(&mut buf);
        let now = Instant::now();
        let mut inner = lock(shared);
        match received {
            Ok((n, from)) if n > MAX_REQUEST_LEN => {
                tracing::debug!(%from, len = n, "containment breach: UDP request too long, dropped");
            }
            Ok((n, from)) => match serde_json::from_slice::<UdpRequest>(&buf[..n]) {
                Ok(req) => match inner.cb.handle_udp(now, from, req.peer_port) {
                    UdpOutcome::Leased => {
                        tracing::info!(%from, peer_port = req.peer_port, "containment breach: lease")
                    }
                    UdpOutcome::Renewed => {
                        tracing::debug!(%from, peer_port = req.peer_port, "containment breach: lease renewed")
                    }
                    UdpOutcome::Refused(why) => {
                        tracing::debug!(%from, peer_port = req.peer_port, %why, "containment breach: lease refused")
                    }
                    other => tracing::debug!(%from, ?other, "containment breach: UDP request"),
                },
                Err(e) => {
                    tracing::debug!(%from, error = %e, "containment breach: malformed UDP request, dropped");
                }
            },
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // ICMP errors from earlier sends and the like: nothing to do with this socket.
            Err(e) => tracing::debug!(error = %e, "containment breach: UDP receive"),
        }
        if inner.cb.poll_timeout().is_some_and(|at| at <= now) {
            inner.cb.handle_timeout(now);
        }
        inner.drain();
    }
}

/// Accepts connections the machine admits, each with a reader thread.
fn accept_loop(listener: &TcpListener, shared: &Shared) {
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "containment breach: accept");
                // Out of descriptors and the like: let it pass.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let _ = stream.set_nodelay(true);
        let mut inner = lock(shared);
        let conn = match inner.cb.handle_connect(Instant::now(), peer) {
            Ok(conn) => conn,
            Err(refused) => {
                drop(inner);
                tracing::info!(%peer, %refused, "containment breach: connection refused");
                let _ = write_response(&mut stream, &Response::error(refused));
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
        };
        let Ok(reader) = stream.try_clone() else {
            inner.cb.handle_closed(Instant::now(), conn);
            continue;
        };
        let s = shared.clone();
        let started = std::thread::Builder::new()
            .name("cb-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || read_loop(reader, conn, &s));
        if let Err(e) = started {
            tracing::warn!(%peer, error = %e, "containment breach: cannot start a connection thread");
            inner.cb.handle_closed(Instant::now(), conn);
            continue;
        }
        tracing::debug!(%conn, %peer, "containment breach: connection");
        inner.streams.insert(conn, (stream, peer));
    }
}

/// Reads one connection's requests (JSON objects, back to back or separated by whitespace)
/// until it closes or the machine closes it.
fn read_loop(mut stream: TcpStream, conn: ConnId, shared: &Shared) {
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_REQUEST_LEN);
    let mut chunk = [0u8; MAX_REQUEST_LEN];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            let mut inner = lock(shared);
            if inner.streams.remove(&conn).is_some() {
                tracing::debug!(%conn, "containment breach: connection closed by its peer");
            }
            inner.cb.handle_closed(Instant::now(), conn);
            inner.drain();
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let mut requests = serde_json::Deserializer::from_slice(&buf).into_iter::<Request>();
            let next = requests.next();
            let used = requests.byte_offset();
            let malformed = match next {
                None => {
                    buf.clear();
                    None
                }
                Some(Ok(request)) => {
                    buf.drain(..used);
                    let mut inner = lock(shared);
                    tracing::debug!(%conn, ?request, "containment breach: request");
                    inner.cb.handle_request(Instant::now(), conn, &request);
                    inner.drain();
                    continue;
                }
                Some(Err(e)) if e.is_eof() => None,
                Some(Err(e)) => Some(Malformed::Invalid(e.to_string())),
            };
            let malformed =
                malformed.or((buf.len() > MAX_REQUEST_LEN).then_some(Malformed::TooLong));
            if let Some(what) = malformed {
                let mut inner = lock(shared);
                tracing::debug!(%conn, ?what, "containment breach: malformed request");
                inner.cb.handle_malformed(Instant::now(), conn, what);
                inner.drain();
                return;
            }
            break;
        }
    }
}
