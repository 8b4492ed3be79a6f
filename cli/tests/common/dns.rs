//! DNS for the UDP tests: dnsmasq (the distribution's package) answering `burrow.test` with
//! 10.1.2.3 on a loopback port, and `dig` to ask it, directly or through burrow.

use std::io::Read;
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

/// dnsmasq on a free loopback port. The port is found by binding and letting go, so another
/// process may take it before dnsmasq binds it: dnsmasq then exits, and it is started again on
/// another port (at most a few times).
pub fn dnsmasq() -> Dnsmasq {
    let mut exits = Vec::new();
    for _ in 0..5 {
        match start_dnsmasq() {
            Ok(d) => return d,
            Err(why) => exits.push(why),
        }
    }
    panic!("dnsmasq never started:\n{}", exits.join("\n"));
}

/// One try of [`dnsmasq`]: `Err` with why when dnsmasq exited before answering.
fn start_dnsmasq() -> Result<Dnsmasq, String> {
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
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dnsmasq");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut d = Dnsmasq { child, addr };
    // Up once it answers.
    let start = Instant::now();
    while dig(addr, 1).is_none() {
        if let Some(status) = d.child.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut stderr) = d.child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            return Err(format!("on {addr}: {status}: {}", err.trim()));
        }
        assert!(start.elapsed() < WAIT, "dnsmasq does not answer on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(d)
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
