//! A minimal blocking driver for one endpoint on a real UDP socket, for interop tests that
//! talk to other implementations before (or without) a full runtime.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burrow_core::{Config, Endpoint, Event};

/// One endpoint bound to a loopback UDP socket, driven by the core's run-loop contract.
pub struct BlockingEndpoint {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its socket.
    pub socket: UdpSocket,
    /// Every event seen so far.
    pub events: Vec<Event>,
    /// Source addresses of every datagram received so far.
    pub senders: Vec<SocketAddr>,
}

impl BlockingEndpoint {
    /// Binds `127.0.0.1:0` and creates the endpoint with an OS-random seed.
    pub fn bind(config: Config) -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let mut seed = [0u8; 32];
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        seed[..16].copy_from_slice(&nanos.as_nanos().to_le_bytes());
        let endpoint = Endpoint::new(config, seed, Instant::now(), nanos);
        Ok(Self {
            endpoint,
            socket,
            events: Vec::new(),
            senders: Vec::new(),
        })
    }

    /// The socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("bound socket has an address")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        while let Some(t) = self.endpoint.poll_transmit() {
            self.socket.send_to(&t.payload, t.dst)?;
        }
        while let Some(e) = self.endpoint.poll_event() {
            self.events.push(e);
        }
        Ok(())
    }

    /// Runs the loop until `done` holds for the events so far, or `limit` passes. Returns
    /// whether `done` held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&[Event]) -> bool,
    ) -> std::io::Result<bool> {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        loop {
            self.flush()?;
            if done(&self.events) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= end {
                return Ok(false);
            }
            let wake = self
                .endpoint
                .poll_timeout()
                .map_or(end, |(at, _)| at.min(end));
            let wait = wake
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            self.socket.set_read_timeout(Some(wait))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    self.senders.push(from);
                    self.endpoint.handle_input(Instant::now(), from, &buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    self.endpoint.handle_timeout(Instant::now());
                }
                Err(e) => return Err(e),
            }
        }
    }
}
