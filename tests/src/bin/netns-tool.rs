//! Small network tools the real-NAT suite runs inside network namespaces
//! (`ip netns exec NS netns-tool ...`). Every wait is bounded.
//!
//! - `reflect ADDR...`: answer every UDP datagram with the sender's address as text
//!   (a minimal STUN-like reflector); prints `ready` once all sockets are bound.
//! - `probe BIND TTL TIMEOUT_MS DEST...`: from one socket bound to BIND, with IP TTL `TTL`,
//!   send one datagram to each DEST and print what it answered (`DEST ADDR`) or `DEST timeout`.
//! - `sink ADDR`: a TCP service: on each connection write a banner line at once, read to EOF
//!   while hashing, then answer `BYTES SHA256HEX MAX_GAP_MS GAP_END_UNIX_MS` and close: the
//!   longest wait between two reads and when it ended (milliseconds since the Unix epoch, so
//!   a test can line it up with what it did to the network). Prints `ready`.
//! - `send ADDR BYTES TIMEOUT_S [BYTES_PER_SEC]`: connect, time the banner's first byte, send
//!   BYTES of deterministic pseudo-random data (at most BYTES_PER_SEC when given; the first
//!   byte's time goes to stderr at once as `first_byte_unix_ms=..`), half-close,
//!   read the sink's answer and print `ttfb_ms=.. first_byte_unix_ms=.. secs=.. bytes=..
//!   sent=SHA recv_bytes=.. recv=SHA max_gap_ms=.. gap_end_unix_ms=..`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// The banner the sink sends first; the client times its first byte.
const BANNER: &[u8] = b"burrow-netns-sink\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("reflect") => reflect(&args[1..]),
        Some("probe") => probe(&args[1..]),
        Some("sink") => sink(&args[1..]),
        Some("send") => send(&args[1..]),
        _ => Err("usage: netns-tool reflect|probe|sink|send ...".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netns-tool: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Milliseconds since the Unix epoch (the clock every process of the lab shares).
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("bad address {s:?}: {e}"))
}

fn num<T: std::str::FromStr>(s: Option<&String>, what: &str) -> Result<T, String> {
    s.ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}"))
}

fn reflect(args: &[String]) -> Result<(), String> {
    let mut sockets = Vec::new();
    for a in args {
        let a = addr(a)?;
        sockets.push(UdpSocket::bind(a).map_err(|e| format!("bind {a}: {e}"))?);
    }
    println!("ready");
    std::io::stdout().flush().ok();
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|s| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(from.to_string().as_bytes(), from);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn probe(args: &[String]) -> Result<(), String> {
    let bind = addr(args.first().ok_or("missing BIND")?)?;
    let ttl: u32 = num(args.get(1), "TTL")?;
    let timeout: u64 = num(args.get(2), "TIMEOUT_MS")?;
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    socket.set_ttl(ttl).map_err(|e| format!("set ttl: {e}"))?;
    let mut buf = [0u8; 2048];
    for d in &args[3..] {
        let dest = addr(d)?;
        socket
            .send_to(b"probe", dest)
            .map_err(|e| format!("send to {dest}: {e}"))?;
        let end = Instant::now() + Duration::from_millis(timeout);
        let mut answer = None;
        while answer.is_none() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left)).ok();
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == dest => {
                    answer = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                Ok(_) => {}
                // ICMP errors (port unreachable) surface as errors; keep waiting for the bound.
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        println!("{dest} {}", answer.as_deref().unwrap_or("timeout"));
    }
    Ok(())
}

fn sink(args: &[String]) -> Result<(), String> {
    let a = addr(args.first().ok_or("missing ADDR")?)?;
    let listener = TcpListener::bind(a).map_err(|e| format!("bind {a}: {e}"))?;
    println!("ready");
    std::io::stdout().flush().ok();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            stream.set_read_timeout(Some(Duration::from_secs(120))).ok();
            if stream.write_all(BANNER).is_err() {
                return;
            }
            let mut hash = Sha256::new();
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            let (mut last, mut max_gap, mut gap_end) = (None::<Instant>, Duration::ZERO, 0);
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let now = Instant::now();
                        if let Some(gap) = last.map(|l| now - l).filter(|g| *g > max_gap) {
                            max_gap = gap;
                            gap_end = unix_ms();
                        }
                        last = Some(now);
                        hash.update(&buf[..n]);
                        total += n as u64;
                    }
                    Err(e) => {
                        eprintln!("sink: read after {total} bytes: {e}");
                        return;
                    }
                }
            }
            let _ = writeln!(
                stream,
                "{total} {} {} {gap_end}",
                hex(&hash.finalize()),
                max_gap.as_millis()
            );
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic, incompressible-looking test data (xorshift64*).
fn fill(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn send(args: &[String]) -> Result<(), String> {
    let a = addr(args.first().ok_or("missing ADDR")?)?;
    let bytes: u64 = num(args.get(1), "BYTES")?;
    let timeout: u64 = num(args.get(2), "TIMEOUT_S")?;
    let rate: Option<u64> = args
        .get(3)
        .map(|_| num(args.get(3), "BYTES_PER_SEC"))
        .transpose()?;
    let limit = Duration::from_secs(timeout);
    let start = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&a, limit).map_err(|e| format!("connect {a}: {e}"))?;
    stream.set_read_timeout(Some(limit)).ok();
    stream.set_write_timeout(Some(limit)).ok();
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(1) => {}
        Ok(_) => return Err("the tunnel closed before the first byte".into()),
        Err(e) => return Err(format!("no first byte within {timeout} s: {e}")),
    }
    let ttfb = start.elapsed();
    let first_byte_unix_ms = unix_ms();
    // At once, for a test that acts on the network mid-transfer.
    eprintln!("first_byte_unix_ms={first_byte_unix_ms}");
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut banner = Vec::new();
    reader
        .read_until(b'\n', &mut banner)
        .map_err(|e| format!("banner: {e}"))?;
    if [&first[..], &banner[..]].concat() != BANNER {
        return Err("wrong banner".into());
    }
    let t0 = Instant::now();
    let mut hash = Sha256::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = bytes;
    let chunk = rate.map_or(buf.len() as u64, |r| (r / 50).clamp(1, buf.len() as u64));
    while left > 0 {
        if let Some(r) = rate {
            // Paced: never ahead of BYTES_PER_SEC since the banner.
            let due = Duration::from_secs_f64((bytes - left) as f64 / r as f64);
            std::thread::sleep(due.saturating_sub(t0.elapsed()));
        }
        let n = left.min(chunk) as usize;
        fill(&mut state, &mut buf[..n]);
        stream
            .write_all(&buf[..n])
            .map_err(|e| format!("write after {} bytes: {e}", bytes - left))?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("half-close: {e}"))?;
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .map_err(|e| format!("no answer from the sink: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let mut parts = answer.split_whitespace();
    let recv_bytes = parts.next().unwrap_or("?");
    let recv = parts.next().unwrap_or("?");
    let max_gap_ms = parts.next().unwrap_or("?");
    let gap_end = parts.next().unwrap_or("?");
    println!(
        "ttfb_ms={:.1} first_byte_unix_ms={first_byte_unix_ms} secs={secs:.3} bytes={bytes} sent={} recv_bytes={recv_bytes} recv={recv} max_gap_ms={max_gap_ms} gap_end_unix_ms={gap_end}",
        ttfb.as_secs_f64() * 1000.0,
        hex(&hash.finalize())
    );
    Ok(())
}
