//! Bad input through the real binary: a server, an `expose` and a `connect` process on loopback
//! carry a transfer while 20,000 malformed datagrams hit the server's and both daemons' UDP
//! ports. The transfer must complete with the same bytes, a new connection must still work, and
//! every process must still be running. Bounded in time; timing decides nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;

use common::*;

/// Malformed datagrams sent in all.
const JUNK: usize = 20_000;
/// Bytes echoed through the tunnel at least; the writer goes on until the junk is all sent.
const TRANSFER: usize = 8 << 20;

/// xorshift64: deterministic junk.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One malformed datagram of kind `i % 9`.
fn junk(rng: &mut Rng, i: usize) -> Vec<u8> {
    match i % 9 {
        // Random bytes of any size up to a jumbo datagram.
        0 => {
            let len = rng.below(1500);
            rng.bytes(len)
        }
        // A burrow prefix (magic, version 1, a known kind), cut off inside the fixed layout.
        1 => {
            let mut p = vec![0xB1, 1 + rng.below(5) as u8, 0, 0];
            let len = rng.below(48);
            p.extend(rng.bytes(len));
            p
        }
        // A handshake initiation of a plausible size with random keys and MACs.
        2 => {
            let mut p = vec![0xB1, 1, 0, 0];
            let len = 4 + 32 + 48 + 28 + 32 + rng.below(64);
            p.extend(rng.bytes(len));
            p
        }
        // A handshake response to an index nobody chose.
        3 => {
            let mut p = vec![0xB1, 2, 0, 0];
            let len = 8 + 32 + 16 + 32 + rng.below(32);
            p.extend(rng.bytes(len));
            p
        }
        // A transport packet: random receiver index and counter, garbage ciphertext.
        4 => {
            let mut p = vec![0xB1, 4, 0, 0];
            let len = 12 + 16 + rng.below(1200);
            p.extend(rng.bytes(len));
            p
        }
        // A cookie reply of the right length, and wrong versions or reserved bits.
        5 => {
            let mut p = match rng.below(3) {
                0 => vec![0xB1, 3, 0, 0],
                1 => vec![0xB2, 4, 0, 0],
                _ => vec![0xB1, 4, 0x80, 1],
            };
            p.extend(rng.bytes(4 + 24 + 32));
            p
        }
        // STUN-looking: the magic cookie, random type and length fields, broken attributes.
        6 => {
            let mut p = vec![0, 0, 0, 0, 0x21, 0x12, 0xA4, 0x42];
            p[0] = (rng.next() as u8) & 0x3F;
            p[1] = rng.next() as u8;
            let claimed = rng.below(600) as u16;
            p[2..4].copy_from_slice(&claimed.to_be_bytes());
            p.extend(rng.bytes(12)); // transaction id
            let attrs = rng.below(80);
            p.extend(rng.bytes(attrs));
            p
        }
        // A STUN Binding request header with a truncated attribute (claims more than it has).
        7 => {
            let mut p = vec![0x00, 0x01, 0x00, 0x20, 0x21, 0x12, 0xA4, 0x42];
            p.extend(rng.bytes(12));
            p.extend([0x00, 0x20, 0x00, 0xFF]);
            p
        }
        // Oversize or empty.
        _ => {
            if rng.below(50) == 0 {
                let len = 60_000 + rng.below(5_000);
                rng.bytes(len)
            } else if rng.below(2) == 0 {
                Vec::new()
            } else {
                let mut p = vec![0xB1, 4, 0, 0];
                let len = 2_000 + rng.below(8_000);
                p.extend(rng.bytes(len));
                p
            }
        }
    }
}

/// Sends [`JUNK`] datagrams round-robin to `targets` from a few sockets, a little paced so the
/// nodes read most of them rather than the kernel dropping them.
fn blast(targets: &[SocketAddr]) {
    let sockets: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for i in 0..JUNK {
        let packet = junk(&mut rng, i / targets.len());
        let socket = &sockets[i % sockets.len()];
        // Oversize sends may fail locally (EMSGSIZE); that is the OS, not burrow.
        let _ = socket.send_to(&packet, targets[i % targets.len()]);
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn malformed_datagrams_do_not_hurt_a_running_tunnel() {
    let dir = temp_dir("badinput");
    let key = dir.join("server.key");
    keygen(&key);
    let mut server = spawn(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--key",
        path(&key),
        "--token",
        "tok",
    ]);
    let server_key = wait_for(&server.stdout, "server public key:")
        .rsplit(' ')
        .next()
        .expect("key")
        .to_string();
    let server_addr = wait_for(&server.stdout, "listening on udp")
        .rsplit(' ')
        .next()
        .expect("addr")
        .to_string();
    let common = |state: &str| -> Vec<String> {
        vec![
            "--server".into(),
            server_addr.clone(),
            "--server-key".into(),
            server_key.clone(),
            "--token".into(),
            "tok".into(),
            "--state-dir".into(),
            path(&dir.join(state)).to_string(),
            "--udp".into(),
            "127.0.0.1:0".into(),
        ]
    };
    let mut args = vec!["expose".to_string(), "/bad/echo".into(), echo().to_string()];
    args.extend(common("a"));
    let mut exposer = spawn(&args);
    let exposer_udp = field(&running_and_registered(&exposer.stderr), "udp");
    let mut args = vec![
        "connect".to_string(),
        "/bad/echo".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(common("b"));
    let mut connector = spawn(&args);
    let listen: SocketAddr = wait_for(&connector.stdout, "listening on")
        .split(' ')
        .nth(2)
        .expect("address")
        .parse()
        .expect("addr");
    let connector_udp = field(&running_and_registered(&connector.stderr), "udp");

    // A transfer in flight: write in a thread until the junk is all sent (and at least
    // TRANSFER bytes), read the echo here.
    let junk_done = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&junk_done);
    let stream = TcpStream::connect(listen).expect("connect to the listener");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let pattern = |i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    let write = std::thread::spawn(move || {
        let chunk: Vec<u8> = (0..64 * 1024).map(pattern).collect();
        let mut written = 0;
        while written < TRANSFER || !done.load(Ordering::Acquire) {
            writer.write_all(&chunk).expect("write into the tunnel");
            written += chunk.len();
        }
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        written
    });
    // Let data flow first, so the junk meets an established, busy tunnel.
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut got = vec![0u8; 1 << 20];
    reader
        .read_exact(&mut got)
        .expect("the first MiB comes back");
    let mut total = got.len();
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, b)| *b == pattern(i % 65536)),
        "first MiB intact"
    );

    let targets: Vec<SocketAddr> = [&server_addr, &exposer_udp, &connector_udp]
        .iter()
        .map(|a| a.parse().expect("a UDP address"))
        .collect();
    let junk = std::thread::spawn(move || {
        blast(&targets);
        junk_done.store(true, Ordering::Release);
    });

    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).expect("the echo keeps coming");
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                *b,
                pattern((total + k) % 65536),
                "byte {} intact",
                total + k
            );
        }
        total += n;
    }
    let written = write.join().expect("writer");
    junk.join().expect("blaster");
    assert_eq!(total, written, "every byte came back");

    // A new connection after the junk: the session and the service still work.
    let mut fresh = TcpStream::connect(listen).expect("connect again");
    fresh.set_read_timeout(Some(WAIT)).expect("timeout");
    fresh.write_all(b"still here\n").expect("write");
    let mut reply = String::new();
    BufReader::new(&fresh)
        .read_line(&mut reply)
        .expect("read the echo");
    assert_eq!(reply, "still here\n");

    server.assert_running("the server");
    exposer.assert_running("the exposing daemon");
    connector.assert_running("the connecting daemon");
    let status = Command::new(BIN)
        .args(["status", "--json", "--state-dir", path(&dir.join("b"))])
        .output()
        .expect("status");
    assert!(status.status.success(), "status still answers: {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
