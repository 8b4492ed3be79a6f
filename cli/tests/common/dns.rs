//! DNS for the UDP tests: dnsmasq (the distribution's package) answering `burrow.test` with
//! 10.1.2.3 on a loopback port, and `dig` to ask it, directly or through burrow.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{WAIT, path};

/// dnsmasq on a loopback port with one local answer.
pub struct Dnsmasq {
    child: std::process::Child,
    /// Where it answers.
    pub addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn dnsmasq() -> Dnsmasq {
    // A free port: bind, note it, let go (dnsmasq binds it right after).
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "-C",
            "/dev/null",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            &format!("--port={port}"),
            "--address=/burrow.test/10.1.2.3",
            "--pid-file=",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let d = Dnsmasq { child, addr };
    // Up once it answers.
    let start = Instant::now();
    while dig(addr, 1).is_none() {
        assert!(start.elapsed() < WAIT, "dnsmasq does not answer on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    d
}

/// `dig` for burrow.test at `server`, `n` times in one process; the answers (`None` if dig
/// failed).
pub fn dig(server: SocketAddr, n: usize) -> Option<Vec<String>> {
    let batch = format!(
        "burrow.test A @{} -p {} +short +tries=1 +timeout=2\n",
        server.ip(),
        server.port()
    )
    .repeat(n);
    let file = std::env::temp_dir().join(format!("burrow-dig-{}-{n}", std::process::id()));
    std::fs::write(&file, batch).expect("batch file");
    let out = Command::new("dig").args(["-f", path(&file)]).output();
    let _ = std::fs::remove_file(&file);
    let out = out.ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<String> = text.lines().map(str::to_string).collect();
    (out.status.success() && !answers.is_empty()).then_some(answers)
}
