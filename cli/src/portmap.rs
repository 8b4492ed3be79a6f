//! UPnP-IGD for the daemon: the sockets of [`burrow_core::upnp::UpnpClient`], on a thread of
//! its own. The node says when it is UPnP's turn (after PCP and NAT-PMP failed) and gets the
//! mapping to announce; the thread sends the SSDP searches from a UDP socket on our LAN
//! address, runs each HTTP exchange on a new TCP connection with a time limit, and deletes the
//! mapping when the daemon stops.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burrow_core::upnp::{HttpRequest, MAX_RESPONSE, Turn, UpnpClient};

use crate::node::Control;

/// How often the node is asked whether it is UPnP's turn yet.
const POLL: Duration = Duration::from_secs(1);
/// Longest one HTTP exchange with the gateway may take (connect, send, read to the end).
const HTTP_LIMIT: Duration = Duration::from_secs(4);

/// The UPnP-IGD thread.
pub struct Upnp {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// Starts the thread for `internal` (our LAN address and the daemon's UDP port).
pub fn spawn(control: Control, internal: SocketAddrV4) -> Upnp {
    let (stop, stopped) = mpsc::channel();
    let thread = std::thread::spawn(move || run(&control, internal, &stopped));
    Upnp { stop, thread }
}

impl Upnp {
    /// The daemon stops: a mapping held is deleted (within [`HTTP_LIMIT`]) before this
    /// returns.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Whether the daemon stops within `wait`.
fn stops(stopped: &mpsc::Receiver<()>, wait: Duration) -> bool {
    !matches!(
        stopped.recv_timeout(wait),
        Err(mpsc::RecvTimeoutError::Timeout)
    )
}

fn run(control: &Control, internal: SocketAddrV4, stopped: &mpsc::Receiver<()>) {
    loop {
        match control.upnp(None) {
            Turn::Off => return,
            Turn::Ask => break,
            Turn::Wait if stops(stopped, POLL) => return,
            Turn::Wait => {}
        }
    }
    let socket = match UdpSocket::bind((*internal.ip(), 0)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("UPnP-IGD: no UDP socket on {}: {e}", internal.ip());
            return;
        }
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    let mut client = UpnpClient::new(internal, Instant::now());
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        if client.next_deadline().is_some_and(|at| at <= now) {
            client.handle_timeout(now);
        }
        while let Some((to, datagram)) = client.poll_datagram() {
            if let Err(e) = socket.send_to(&datagram, to) {
                tracing::debug!("UPnP-IGD: cannot send the SSDP search to {to}: {e}");
            }
        }
        if let Some(request) = client.poll_http() {
            let answer = exchange(&request);
            if let Err(e) = &answer {
                tracing::debug!("UPnP-IGD: HTTP to {}: {e}", request.to);
            }
            client.handle_http(Instant::now(), answer.as_deref().map_err(Clone::clone));
            continue;
        }
        while let Some(event) = client.poll_event() {
            control.upnp(Some(event));
        }
        if client.is_done() {
            return;
        }
        if stops(stopped, Duration::ZERO) {
            client.remove();
            if let Some(request) = client.poll_http() {
                if let Err(e) = exchange(&request) {
                    tracing::warn!("UPnP-IGD: the mapping's deletion failed: {e}");
                }
            }
            return;
        }
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            client.handle_datagram(Instant::now(), &buf[..n]);
        }
    }
}

/// One HTTP exchange: connect, send, read to the end (at most [`MAX_RESPONSE`] + 1 bytes),
/// all within [`HTTP_LIMIT`].
fn exchange(request: &HttpRequest) -> Result<Vec<u8>, String> {
    let end = Instant::now() + HTTP_LIMIT;
    let mut stream =
        TcpStream::connect_timeout(&request.to, HTTP_LIMIT).map_err(|e| e.to_string())?;
    let _ = stream.set_write_timeout(Some(HTTP_LIMIT));
    stream
        .write_all(&request.request)
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while answer.len() <= MAX_RESPONSE {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("the gateway's answer took too long".into());
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(answer)
}
