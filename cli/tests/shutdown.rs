//! Shutdown that cannot pass for success, through the real binary on loopback: a download
//! through a tunnel whose exposing daemon is stopped (SIGTERM) or killed (SIGKILL), or whose
//! connecting daemon is stopped, ends in a reset (ECONNRESET) for the local client, never a
//! clean end of file, and soon: within 1 s after SIGTERM, within 5 s after SIGKILL. Every
//! test runs on each runtime (`--runtime tokio|smol|mio`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::*;

/// A service that sends bytes to every client until the connection fails: a download that
/// never ends by itself, so any end the client sees is the tunnel's doing.
fn source() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("bound");
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut stream = stream;
                let chunk = vec![0xA5u8; 64 << 10];
                while stream.write_all(&chunk).is_ok() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
    });
    addr
}

/// A server, a daemon exposing [`source`] and a daemon connecting to it, on loopback, all on
/// one runtime.
struct Tunnel {
    _server: Proc,
    exposer: Proc,
    connector: Proc,
    listen: SocketAddr,
    /// Everything's files; removed after the processes above are stopped.
    _dir: TempDir,
}

impl Tunnel {
    fn new(name: &str, runtime: &str) -> Self {
        let dir = temp_dir(&format!("{name}-{runtime}"));
        let key = dir.join("server.key");
        keygen(&key);
        let server = spawn(
            &["server", "--listen", "127.0.0.1:0", "--key", path(&key)]
                .map(String::from)
                .into_iter()
                .chain(["--token", "tok", "--runtime", runtime].map(String::from))
                .collect::<Vec<_>>(),
        );
        let public = wait_for(&server.stdout, "server public key:");
        let public = public.rsplit(' ').next().expect("key").to_string();
        let addr = wait_for(&server.stdout, "listening on udp");
        let addr = addr.rsplit(' ').next().expect("addr").to_string();
        let common = |state: &str| {
            vec![
                "--server".to_string(),
                addr.clone(),
                "--server-key".into(),
                public.clone(),
                "--token".into(),
                "tok".into(),
                "--state-dir".into(),
                path(&dir.join(state)).to_string(),
                "--udp".into(),
                "127.0.0.1:0".into(),
                "--runtime".into(),
                runtime.into(),
            ]
        };
        let mut args = vec![
            "expose".to_string(),
            "/stop/download".into(),
            source().to_string(),
        ];
        args.extend(common("a"));
        let exposer = spawn(&args);
        let running = running_and_registered(&exposer.stderr);
        assert!(
            running.contains(&format!("runtime=\"{runtime}\"")),
            "{running}"
        );
        let mut args = vec![
            "connect".to_string(),
            "/stop/download".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(common("b"));
        let connector = spawn(&args);
        let running = running_and_registered(&connector.stderr);
        assert!(
            running.contains(&format!("runtime=\"{runtime}\"")),
            "{running}"
        );
        let line = wait_for(&connector.stdout, "listening on");
        let listen = line
            .split(' ')
            .nth(2)
            .expect("address")
            .parse()
            .expect("addr");
        Self {
            _server: server,
            exposer,
            connector,
            listen,
            _dir: dir,
        }
    }

    /// A client that has received the first MiB of a download.
    fn downloading(&self) -> TcpStream {
        let mut stream = TcpStream::connect(self.listen).expect("connect to the listener");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = vec![0u8; 1 << 20];
        stream.read_exact(&mut buf).expect("the first MiB");
        stream
    }
}

/// Reads until the connection ends; returns how it ended and when (after `since`).
fn read_to_end(mut stream: TcpStream, since: Instant) -> (std::io::Result<()>, Duration) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (Ok(()), since.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), since.elapsed()),
        }
    }
}

fn assert_reset(what: &str, end: std::io::Result<()>, took: Duration, within: Duration) {
    println!("{what}: the client's download ended after {took:?}: {end:?}");
    match end {
        Ok(()) => panic!("{what}: a clean end of file, which passes for a complete download"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{what}: {e}"),
    }
    assert!(
        took <= within,
        "{what}: reset after {took:?}, not within {within:?}"
    );
}

on_every_runtime!(
    sigterm_of_the_exposing_daemon_resets_the_download_within_one_second,
    sigkill_of_the_exposing_daemon_resets_the_download_within_five_seconds,
    sigterm_of_the_connecting_daemon_resets_its_local_client,
);

fn sigterm_of_the_exposing_daemon_resets_the_download_within_one_second(runtime: &str) {
    let tunnel = Tunnel::new("term-exposer", runtime);
    let client = tunnel.downloading();
    let start = Instant::now();
    tunnel.exposer.terminate();
    let (end, took) = read_to_end(client, start);
    assert_reset(
        "SIGTERM of the exposing daemon",
        end,
        took,
        Duration::from_secs(1),
    );
}

fn sigkill_of_the_exposing_daemon_resets_the_download_within_five_seconds(runtime: &str) {
    let mut tunnel = Tunnel::new("kill-exposer", runtime);
    let client = tunnel.downloading();
    let start = Instant::now();
    tunnel.exposer.child.kill().expect("SIGKILL");
    let (end, took) = read_to_end(client, start);
    assert_reset(
        "SIGKILL of the exposing daemon",
        end,
        took,
        Duration::from_secs(5),
    );
}

fn sigterm_of_the_connecting_daemon_resets_its_local_client(runtime: &str) {
    let tunnel = Tunnel::new("term-connector", runtime);
    let client = tunnel.downloading();
    let start = Instant::now();
    tunnel.connector.terminate();
    let (end, took) = read_to_end(client, start);
    assert_reset(
        "SIGTERM of the connecting daemon",
        end,
        took,
        Duration::from_secs(1),
    );
}
