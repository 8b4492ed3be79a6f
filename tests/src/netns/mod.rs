//! A lab of Linux network namespaces for the real-NAT suite (`tests/tests/real_nat.rs`).
//!
//! [`Lab`] owns every namespace, link and process it creates and removes them when dropped,
//! also while a failing test unwinds. Names are `bn<pid>-<n>-<role>`, unique per process
//! and lab; [`Lab::new`] first removes leftovers of earlier runs whose process is gone (a run
//! killed with SIGKILL cannot clean up after itself). Links are veth pairs created directly
//! inside their namespaces, so nothing appears in, or routes through, the host's namespace;
//! processes started in namespaces get `PR_SET_PDEATHSIG` (via `setpriv`) so they die with
//! the test process even when it is killed.

mod topology;

pub use topology::{
    Inbound, MAPPING_NET, MAPPING_TABLE, Mapping, Site, Topology, miniupnpd_config,
};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static LABS: AtomicUsize = AtomicUsize::new(0);

/// Why the real-NAT suite cannot run here, or `None` when it can (root, `ip netns` works,
/// `nft`, `setpriv` and `conntrack` are present).
pub fn unavailable() -> Option<String> {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    for (prog, pkg) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("setpriv", "util-linux"),
        ("conntrack", "conntrack"),
    ] {
        if crate::tools::find(prog).is_none() {
            return Some(format!("{prog} not found (apt-get install {pkg})"));
        }
    }
    let probe = format!(
        "bn{}-{}-probe",
        std::process::id(),
        LABS.fetch_add(1, Ordering::Relaxed)
    );
    let ok = run_quiet("ip", &["netns", "add", &probe]).is_ok();
    let _ = run_quiet("ip", &["netns", "del", &probe]);
    if !ok {
        return Some("`ip netns add` fails here (no namespace support or not permitted)".into());
    }
    None
}

/// Runs a command to completion; its stderr (and stdout) on failure.
pub fn run_quiet(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{prog} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Names of all namespaces (first word of each `ip netns list` line).
fn netns_names() -> Vec<String> {
    run_quiet("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The pid encoded in a lab namespace name `bn<pid>-...`.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix("bn")?.split('-').next()?.parse().ok()
}

/// Kills every process in namespace `ns` and deletes it.
fn remove_netns(ns: &str) {
    if let Ok(pids) = run_quiet("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = run_quiet("kill", &["-KILL", pid]);
        }
    }
    let _ = run_quiet("ip", &["netns", "del", ns]);
}

/// Removes namespaces of earlier runs whose process no longer exists. Returns their names.
pub fn remove_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for name in netns_names() {
        if let Some(pid) = owner_pid(&name) {
            if !pid_alive(pid) {
                remove_netns(&name);
                removed.push(name);
            }
        }
    }
    removed
}

/// Namespaces that currently exist whose name starts with `prefix-`.
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let p = format!("{prefix}-");
    netns_names()
        .into_iter()
        .filter(|n| n.starts_with(&p))
        .collect()
}

/// A process running in a namespace; killed when dropped. Its stdout and stderr go to files
/// in the lab's directory.
pub struct Proc {
    /// A short name for logs.
    pub name: String,
    child: Child,
    /// Its stdout file.
    pub out: PathBuf,
    /// Its stderr file.
    pub err: PathBuf,
}

impl Proc {
    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until stdout has a line satisfying `f` (returned), the process exits, or `limit`.
    pub fn wait_line(
        &mut self,
        limit: Duration,
        f: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let end = Instant::now() + limit;
        loop {
            if let Some(l) = self.stdout().lines().find(|l| f(l)) {
                return Ok(l.to_string());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before the expected output; stderr: {}",
                    self.name,
                    tail(&self.stderr(), 20)
                ));
            }
            if Instant::now() >= end {
                return Err(format!(
                    "{}: expected output not seen within {limit:?}; stderr: {}",
                    self.name,
                    tail(&self.stderr(), 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends it SIGTERM (a daemon's orderly stop).
    pub fn terminate(&self) -> Result<(), String> {
        run_quiet("kill", &["-TERM", &self.child.id().to_string()]).map(|_| ())
    }

    /// Waits for the process to exit, at most `limit` (then kills it).
    pub fn wait(&mut self, limit: Duration) -> Result<std::process::ExitStatus, String> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!("{} did not finish within {limit:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A set of namespaces and a scratch directory; everything is removed on drop.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    /// Scratch directory for logs, keys and state (kept if the test fails).
    pub dir: PathBuf,
}

impl Lab {
    /// A new, empty lab. Removes stale namespaces of dead earlier runs first.
    pub fn new() -> Result<Self, String> {
        let removed = remove_stale();
        if !removed.is_empty() {
            eprintln!("removed stale namespaces of dead runs: {removed:?}");
        }
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("bn{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(Self {
            prefix,
            namespaces: Vec::new(),
            dir,
        })
    }

    /// The full namespace name for a role.
    pub fn ns_name(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Creates namespace `role` with loopback up; returns its full name.
    pub fn add_ns(&mut self, role: &str) -> Result<String, String> {
        let ns = self.ns_name(role);
        run_quiet("ip", &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        self.ip(role, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NS args...`
    pub fn ip(&self, role: &str, args: &[&str]) -> Result<String, String> {
        let ns = self.ns_name(role);
        let mut full = vec!["-n", ns.as_str()];
        full.extend_from_slice(args);
        run_quiet("ip", &full)
    }

    /// Runs a command inside namespace `role` to completion.
    pub fn exec(&self, role: &str, prog: &str, args: &[&str]) -> Result<String, String> {
        let ns = self.ns_name(role);
        let mut full = vec!["netns", "exec", ns.as_str(), prog];
        full.extend_from_slice(args);
        run_quiet("ip", &full)
    }

    /// Sets a sysctl inside namespace `role`.
    pub fn sysctl(&self, role: &str, key_value: &str) -> Result<(), String> {
        self.exec(role, "sysctl", &["-qw", key_value]).map(|_| ())
    }

    /// Loads an nftables ruleset into namespace `role`.
    pub fn nft(&self, role: &str, ruleset: &str) -> Result<(), String> {
        let file = self.dir.join(format!("{role}.nft"));
        fs::write(&file, ruleset).map_err(|e| e.to_string())?;
        self.exec(role, "nft", &["-f", &file.to_string_lossy()])
            .map(|_| ())
    }

    /// A veth pair: `a_if` in namespace `a` with `a_addr` (CIDR), `b_if` in `b` with
    /// `b_addr`; both up. Created directly inside the namespaces.
    pub fn link(
        &self,
        (a, a_if, a_addr): (&str, &str, Option<&str>),
        (b, b_if, b_addr): (&str, &str, Option<&str>),
    ) -> Result<(), String> {
        let (na, nb) = (self.ns_name(a), self.ns_name(b));
        run_quiet(
            "ip",
            &[
                "link", "add", a_if, "netns", &na, "type", "veth", "peer", "name", b_if, "netns",
                &nb,
            ],
        )?;
        for (role, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
            if let Some(addr) = addr {
                self.ip(role, &["addr", "add", addr, "dev", ifname])?;
            }
            self.ip(role, &["link", "set", ifname, "up"])?;
        }
        Ok(())
    }

    /// Starts `prog args` in namespace `role`, dying with this process.
    pub fn spawn(
        &self,
        role: &str,
        name: &str,
        prog: &Path,
        args: &[&str],
    ) -> Result<Proc, String> {
        let ns = self.ns_name(role);
        let out = self.dir.join(format!("{name}.out"));
        let err = self.dir.join(format!("{name}.err"));
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "setpriv", "--pdeathsig", "KILL", "--"])
            .arg(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).map_err(|e| e.to_string())?)
            .stderr(fs::File::create(&err).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc {
            name: name.into(),
            child,
            out,
            err,
        })
    }

    /// The prefix of every namespace name of this lab (`bn<pid>-<n>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespaces created so far (full names).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            remove_netns(ns);
        }
        if std::thread::panicking() {
            eprintln!("lab logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
