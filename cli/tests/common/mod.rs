//! Helpers shared by the binary's test files: run `burrow` processes, read their lines, make
//! temporary directories, start a server and an echo service.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod authority;
pub mod dns;
pub mod lines;

pub use lines::Lines;

/// Makes each named test body (taking the runtime's name) a test on every runtime, named
/// `body::runtime`. (Test files that use it declare `#[macro_use] mod common;`.)
#[allow(unused_macros)]
macro_rules! on_every_runtime {
    ($($body:ident),* $(,)?) => {
        $(mod $body {
            #[test]
            fn tokio() {
                super::$body("tokio");
            }

            #[test]
            fn smol() {
                super::$body("smol");
            }

            #[test]
            fn mio() {
                super::$body("mio");
            }
        })*
    };
}

/// The programs a test needs, or whether it must skip: on CI (`CI=true`) a missing program
/// fails the test, elsewhere the test is skipped with the reason printed.
pub fn need(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| {
            Command::new(p)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (.ci/run installs them)",
        missing.join(", ")
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    println!("skipping: {why}");
    false
}

pub const BIN: &str = env!("CARGO_BIN_EXE_burrow");
/// How long to wait for a line a process should print; only a hang reaches it.
pub const WAIT: Duration = Duration::from_secs(30);

/// A child process that is killed when dropped, with its output lines on channels.
pub struct Proc {
    pub child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Proc {
    /// Sends SIGTERM, as a service manager stopping the daemon does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Fails the test if the process has exited.
    pub fn assert_running(&mut self, what: &str) {
        let status = self.child.try_wait().expect("try_wait");
        assert!(status.is_none(), "{what} exited: {status:?}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn lines(stream: impl Read + Send + 'static) -> Lines {
    Lines::of(stream)
}

pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Proc {
    spawn_env(args, None)
}

/// Runs `burrow args` with one more environment variable.
pub fn spawn_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: Option<(&str, &str)>) -> Proc {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((k, v)) = env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("run burrow");
    let stdout = lines(child.stdout.take().expect("piped"));
    let stderr = lines(child.stderr.take().expect("piped"));
    Proc {
        child,
        stdout,
        stderr,
    }
}

/// The first line on `rx` containing `needle`, or a panic after [`WAIT`].
pub fn wait_for(rx: &Lines, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(e) => panic!(
                "no line containing {needle:?}: {e}; the lines before it:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// One line for each of `needles`, in whatever order they come (a daemon's "daemon running"
/// and "registered with the rendezvous server" race: the node registers on its own thread while
/// the main thread is still setting up), or a panic after [`WAIT`]. The other lines read on the
/// way are handed back: a line that came between the two (a service published at once, say) is
/// still there for the next [`wait_for`].
pub fn wait_for_each(rx: &Lines, needles: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut found: Vec<Option<String>> = vec![None; needles.len()];
    let mut seen = Vec::new();
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = needles
                    .iter()
                    .zip(&found)
                    .position(|(n, f)| f.is_none() && line.contains(n));
                match hit {
                    Some(i) => found[i] = Some(line),
                    None => seen.push(line),
                }
            }
            Err(e) => panic!(
                "no line for each of {needles:?} ({found:?}): {e}; the other lines:\n{}",
                seen.join("\n")
            ),
        }
    }
    rx.unread(seen);
    found.into_iter().flatten().collect()
}

/// A daemon's "daemon running" line, once it has also registered with the server.
pub fn running_and_registered(stderr: &Lines) -> String {
    wait_for_each(
        stderr,
        &["daemon running", "registered with the rendezvous server"],
    )
    .swap_remove(0)
}

/// A fresh directory for one test, removed when the test passes (kept when it fails, to be
/// looked at: a panicking test leaves it behind).
pub fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("burrow-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

/// See [`temp_dir`].
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Starts `burrow server` with a fresh key; returns it with its address and public key.
pub fn server(dir: &Path) -> (Proc, String, String) {
    server_with(dir, &[])
}

/// [`server`] with more flags after the common ones (`--listen 127.0.0.1:0 --key ...
/// --token tok`).
pub fn server_with(dir: &Path, extra: &[&str]) -> (Proc, String, String) {
    let key = dir.join("server.key");
    keygen(&key);
    let mut args = vec![
        "server",
        "--listen",
        "127.0.0.1:0",
        "--key",
        path(&key),
        "--token",
        "tok",
    ];
    args.extend_from_slice(extra);
    let server = spawn(&args);
    let key_line = wait_for(&server.stdout, "server public key:");
    let addr_line = wait_for(&server.stdout, "listening on udp");
    let public = key_line.rsplit(' ').next().expect("key").to_string();
    let addr = addr_line.rsplit(' ').next().expect("addr").to_string();
    (server, addr, public)
}

/// A one-connection-at-a-time echo service on a random port.
/// A local port nobody listens on right now.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("bound");
    serve_echo(listener);
    addr
}

/// An echo service on `addr` (e.g. a port that refused connections before).
pub fn echo_on(addr: SocketAddr) {
    serve_echo(TcpListener::bind(addr).expect("bind the target port"));
}

/// Echoes every connection to `listener`, each on a thread of its own.
fn serve_echo(listener: TcpListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut rd = stream.try_clone().expect("clone");
                let mut wr = stream;
                let _ = std::io::copy(&mut rd, &mut wr);
                let _ = wr.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}

/// The word after `key=` in a log line.
pub fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        .trim_matches('"')
        .to_string()
}

/// Writes a fresh secret key to `key` with `burrow keygen`.
pub fn keygen(key: &Path) {
    let out = Command::new(BIN)
        .args(["keygen", "--out", path(key)])
        .output()
        .expect("keygen");
    assert!(out.status.success(), "keygen: {out:?}");
}

/// Starts `burrow server` with the Containment Breach API on a random loopback port (and
/// `--cb-lease-timeout` if given); returns it and the API's address.
pub fn cb_server(dir: &Path, lease_timeout: Option<u64>) -> (Proc, SocketAddr) {
    let key = dir.join("server.key");
    keygen(&key);
    let mut args = vec![
        "server".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--key".into(),
        path(&key).into(),
        "--token".into(),
        "tok".into(),
        "--cb-listen".into(),
        "127.0.0.1:0".into(),
    ];
    if let Some(secs) = lease_timeout {
        args.extend(["--cb-lease-timeout".into(), secs.to_string()]);
    }
    let server = spawn(&args);
    let line = wait_for(&server.stdout, "containment breach api on udp+tcp");
    let addr = line
        .rsplit(' ')
        .next()
        .expect("addr")
        .parse()
        .expect("an address");
    (server, addr)
}

/// Runs `burrow ARGS` to completion: its stdout, or its stderr when it fails.
pub fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(BIN).args(args).output().expect("run burrow");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    if out.status.success() {
        Ok(text(out.stdout))
    } else {
        Err(text(out.stderr))
    }
}

/// The local address a `connect` daemon prints it listens on (its first such line).
pub fn listening(daemon: &Proc) -> SocketAddr {
    let line = wait_for(&daemon.stdout, "listening on");
    line.split(' ').nth(2).expect("addr").parse().expect("addr")
}

/// Sends a line to `addr` and returns the answer line; "" when nothing comes back within 5 s.
pub fn ask(addr: SocketAddr, line: &str) -> String {
    use std::io::Write;
    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = conn.write_all(format!("{line}\n").as_bytes());
    let mut reply = String::new();
    let _ = BufReader::new(&conn).read_line(&mut reply);
    reply
}

/// [`ask`] until an answer comes (the tunnel may still be coming up), for at most [`WAIT`].
pub fn ask_until_answered(addr: SocketAddr, line: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let reply = ask(addr, line);
        if !reply.is_empty() || start.elapsed() > WAIT {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
