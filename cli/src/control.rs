//! The local control socket: a unix socket in the state directory speaking JSON lines.
//! Request `{"cmd":"status"}`; answer one line, the node's status or `{"error": "..."}`.
//! Request `{"cmd":"reload"}`: the daemon re-reads its config file; answer
//! `{"reloaded": "what changed"}` or `{"error": "why it was refused"}`.
//! Request `{"cmd":"attach","path":"/x","expose":"127.0.0.1:22"}` (or `"listen":"IP:PORT"`) and
//! `{"cmd":"detach","path":"/x"}`: a service added or removed at run time; answer
//! `{"reloaded": "what changed"}` or `{"error": "..."}`.
//! Request `{"cmd":"import","token":"..."}`: a path token added to the daemon's registration;
//! answer `{"imported": "what the registration may use"}` or `{"error": "..."}`.
//! Request `{"cmd":"forget","token":"..."}`: an imported path token removed; answer
//! `{"forgotten": "what the registration may use"}` or `{"error": "..."}`.
//! Request `{"cmd":"ping","target":"/x"}` (a connected service, or a peer's key): answer
//! `{"path": "direct 1.2.3.4:5", "rtt_us": 1234}` or `{"error": "..."}` (within 2 s).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burrow_core::status::Status;
use serde::Deserialize;

use crate::node::Control;

/// Re-reads the daemon's config file and applies it: what changed, or why it was refused.
pub type Reload = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Attaches or detaches a service: what changed, or why it was refused.
pub type Attach = Arc<dyn Fn(AttachRequest) -> Result<String, String> + Send + Sync>;

/// Imports a path token: what the registration may use now, or why it was refused.
pub type Import = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// `burrow attach` and `burrow detach`, as the control socket carries them.
pub enum AttachRequest {
    /// Expose `path` toward `expose`, or listen for it on `listen`.
    Attach {
        path: String,
        expose: Option<String>,
        listen: Option<String>,
    },
    /// Stop the attached service `path`.
    Detach { path: String },
}

/// What the control socket asks of the daemon besides its status.
#[derive(Clone)]
pub struct Handlers {
    pub reload: Reload,
    pub attach: Attach,
    pub import: Import,
    pub forget: Import,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    cmd: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    expose: Option<String>,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    target: Option<String>,
}

/// The control socket's path in `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// The longest request line a client may send.
const MAX_REQUEST: u64 = 4096;
/// Clients answered at once; more are closed at once.
const MAX_CLIENTS: usize = 16;

/// Binds the control socket, replacing a stale one; refuses if a daemon answers on it. The
/// socket is owner-only (0600) whatever the umask: it is bound under a temporary name, made
/// 0600, then renamed into place, so no other user can connect in between. A state directory
/// it creates is 0700. Answers on a thread per client, at most [`MAX_CLIENTS`] at once.
pub fn serve(state_dir: &Path, node: Control, handlers: Handlers) -> Result<(), String> {
    let path = socket_path(state_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|e| format!("cannot create state directory {}: {e}", state_dir.display()))?;
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(format!(
                "another burrow daemon is running with state directory {} (stop it, or pass --state-dir)",
                state_dir.display()
            ));
        }
        let _ = std::fs::remove_file(&path);
    }
    let listener = bind_private(&path)
        .map_err(|e| format!("cannot create control socket {}: {e}", path.display()))?;
    let clients = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                clients.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let (node, clients, handlers) = (node.clone(), clients.clone(), handlers.clone());
            std::thread::spawn(move || {
                answer(stream, node, &handlers);
                clients.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
    Ok(())
}

/// Binds a unix socket at `path` that only its owner can connect to.
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

fn answer(stream: UnixStream, node: Control, handlers: &Handlers) {
    let Ok(mut wr) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.by_ref().take(MAX_REQUEST + 1).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() as u64 > MAX_REQUEST {
            let reply = serde_json::json!({
                "error": format!("request longer than {MAX_REQUEST} bytes")
            });
            let _ = wr.write_all(format!("{reply}\n").as_bytes());
            return;
        }
        let line = line.trim_end();
        let reply = match serde_json::from_str::<Request>(line) {
            Ok(r) if r.cmd == "status" => match node.status() {
                Ok(status) => serde_json::to_string(&status).unwrap_or_default(),
                Err(e) => serde_json::json!({ "error": e }).to_string(),
            },
            Ok(r) if r.cmd == "reload" => changed((handlers.reload)()),
            Ok(Request {
                cmd,
                path: Some(path),
                expose,
                listen,
                ..
            }) if cmd == "attach" => changed((handlers.attach)(AttachRequest::Attach {
                path,
                expose,
                listen,
            })),
            Ok(Request {
                cmd,
                path: Some(path),
                ..
            }) if cmd == "detach" => changed((handlers.attach)(AttachRequest::Detach { path })),
            Ok(Request {
                cmd,
                token: Some(token),
                ..
            }) if cmd == "import" => match (handlers.import)(&token) {
                Ok(summary) => serde_json::json!({ "imported": summary }).to_string(),
                Err(e) => serde_json::json!({ "error": e }).to_string(),
            },
            Ok(Request {
                cmd,
                token: Some(token),
                ..
            }) if cmd == "forget" => match (handlers.forget)(&token) {
                Ok(summary) => serde_json::json!({ "forgotten": summary }).to_string(),
                Err(e) => serde_json::json!({ "error": e }).to_string(),
            },
            Ok(Request {
                cmd,
                target: Some(target),
                ..
            }) if cmd == "ping" => match node.ping(target) {
                Ok((path, rtt)) => {
                    serde_json::json!({ "path": path.to_string(), "rtt_us": rtt.as_micros() })
                        .to_string()
                }
                Err(e) => serde_json::json!({ "error": e }).to_string(),
            },
            Ok(r) => {
                serde_json::json!({ "error": format!("unknown command `{}`", r.cmd) }).to_string()
            }
            Err(e) => serde_json::json!({ "error": format!("bad request: {e}") }).to_string(),
        };
        if wr.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
    }
}

/// The answer to a command that changes the running services.
fn changed(outcome: Result<String, String>) -> String {
    match outcome {
        Ok(summary) => serde_json::json!({ "reloaded": summary }).to_string(),
        Err(e) => serde_json::json!({ "error": e }).to_string(),
    }
}

/// Asks the daemon with `state_dir` for its status.
pub fn status(state_dir: &Path) -> Result<(String, Status), String> {
    let (line, path) = request(state_dir, serde_json::json!({ "cmd": "status" }))?;
    let status = serde_json::from_str(&line).map_err(|_| {
        format!(
            "control socket {}: unexpected answer: {line}",
            path.display()
        )
    })?;
    Ok((line, status))
}

/// Asks the daemon with `state_dir` to reload its config: what changed.
pub fn reload(state_dir: &Path) -> Result<String, String> {
    let (line, path) = request(state_dir, serde_json::json!({ "cmd": "reload" }))?;
    summary(&line, &path, "reload refused", "reloaded")
}

/// Asks the daemon with `state_dir` to attach `path` (exposed toward `expose`, or listened
/// for on `listen`) or, with neither, to detach it: what changed.
pub fn attach(
    state_dir: &Path,
    path: &str,
    expose: Option<&str>,
    listen: Option<&str>,
) -> Result<String, String> {
    let (cmd, verb) = match (expose, listen) {
        (None, None) => ("detach", "detached"),
        _ => ("attach", "attached"),
    };
    let request_json =
        serde_json::json!({ "cmd": cmd, "path": path, "expose": expose, "listen": listen });
    let (line, socket) = request(state_dir, request_json)?;
    summary(&line, &socket, &format!("{cmd} refused"), verb)
}

/// Asks the daemon with `state_dir` to add the path token `token` to its registration: what
/// the registration may use now.
pub fn import(state_dir: &Path, token: &str) -> Result<String, String> {
    let body = serde_json::json!({ "cmd": "import", "token": token });
    // The daemon registers again and waits for the server's verdict (at most 20 s).
    let (line, socket) = request_within(state_dir, body, std::time::Duration::from_secs(30))?;
    let answer = parse_answer(&line, &socket).map_err(|e| format!("import refused: {e}"))?;
    Ok(text(&answer, "imported").to_string())
}

/// Asks the daemon with `state_dir` to remove the imported path token `token`: what the
/// registration may use now.
pub fn forget(state_dir: &Path, token: &str) -> Result<String, String> {
    let body = serde_json::json!({ "cmd": "forget", "token": token });
    let (line, socket) = request_within(state_dir, body, std::time::Duration::from_secs(30))?;
    let answer = parse_answer(&line, &socket).map_err(|e| format!("forget refused: {e}"))?;
    Ok(text(&answer, "forgotten").to_string())
}

/// Pings `target` through the daemon with `state_dir`: the path that answered and the round
/// trip.
pub fn ping(state_dir: &Path, target: &str) -> Result<(String, std::time::Duration), String> {
    let body = serde_json::json!({ "cmd": "ping", "target": target });
    let (line, socket) = request_within(state_dir, body, std::time::Duration::from_secs(5))?;
    let answer = parse_answer(&line, &socket)?;
    let rtt = answer.get("rtt_us").and_then(serde_json::Value::as_u64);
    let rtt = std::time::Duration::from_micros(rtt.unwrap_or(0));
    Ok((text(&answer, "path").to_string(), rtt))
}

/// Reads a `{"reloaded": ...}` or `{"error": ...}` answer.
fn summary(line: &str, path: &Path, refused: &str, done: &str) -> Result<String, String> {
    let answer = parse_answer(line, path).map_err(|e| format!("{refused}: {e}"))?;
    Ok(format!("{done}: {}", text(&answer, "reloaded")))
}

/// An answer line as JSON; its `error` as the error.
fn parse_answer(line: &str, socket: &Path) -> Result<serde_json::Value, String> {
    let answer: serde_json::Value = serde_json::from_str(line).map_err(|_| {
        format!(
            "control socket {}: unexpected answer: {line}",
            socket.display()
        )
    })?;
    match answer.get("error").and_then(|e| e.as_str()) {
        Some(e) => Err(e.to_string()),
        None => Ok(answer),
    }
}

/// The string field `key` of an answer (empty if missing).
fn text<'a>(answer: &'a serde_json::Value, key: &str) -> &'a str {
    answer.get(key).and_then(|s| s.as_str()).unwrap_or("")
}

/// Sends one command to the daemon with `state_dir`; its answer line and the socket's path.
fn request(state_dir: &Path, body: serde_json::Value) -> Result<(String, PathBuf), String> {
    request_within(state_dir, body, std::time::Duration::from_secs(10))
}

/// [`request`], waiting at most `timeout` for the answer.
fn request_within(
    state_dir: &Path,
    body: serde_json::Value,
    timeout: std::time::Duration,
) -> Result<(String, PathBuf), String> {
    let path = socket_path(state_dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "no daemon answers at {} ({e}): start one with `burrow daemon`, or pass --state-dir",
            path.display()
        )
    })?;
    let io_err = |e: std::io::Error| format!("control socket {}: {e}", path.display());
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream
        .write_all(format!("{body}\n").as_bytes())
        .map_err(io_err)?;
    let mut line = String::new();
    let n = BufReader::new(stream)
        .read_line(&mut line)
        .map_err(io_err)?;
    if n == 0 {
        return Err(format!(
            "control socket {}: closed without an answer",
            path.display()
        ));
    }
    Ok((line.trim_end().to_string(), path))
}

/// A human-readable status.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("public key  {}", s.public_key));
    if let Some(a) = s.udp_addr {
        line(format!("udp         {a}"));
    }
    let lost = match (&s.registration_lost, s.registration_lost_secs) {
        (Some(why), Some(ago)) => Some(format!(
            "lost since {} ({ago:.0} s ago): {why}; registering again",
            utc_time_ago(ago)
        )),
        _ => None,
    };
    match (&s.registered, &s.registration_error, lost) {
        (Some(r), _, _) => line(format!("registered  yes, seen as {r}")),
        (None, Some(e), None) => line(format!("registered  no: {e}")),
        (None, Some(e), Some(lost)) => line(format!("registered  no: {e} ({lost})")),
        (None, None, Some(lost)) => line(format!("registered  no: {lost}")),
        (None, None, None) => line("registered  not yet".into()),
    }
    line(String::new());
    line(
        "PEER  ADDRESS                 STATE       RTT        MAX UDP  SENT        RECEIVED    STREAMS  KEY"
            .into(),
    );
    for p in &s.peers {
        line(format!(
            "{:<5} {:<23} {:<11} {:<10} {:<8} {:<11} {:<11} {:<8} {}",
            p.peer,
            p.addr.map_or("-".into(), |a| a.to_string()),
            match (p.connected, p.relayed) {
                (false, _) => "handshake",
                (true, false) => "direct",
                (true, true) => "relayed",
            },
            p.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
            p.max_udp_payload.map_or("-".into(), |n| n.to_string()),
            bytes(p.bytes_sent),
            bytes(p.bytes_received),
            p.open_streams,
            p.key,
        ));
    }
    for p in &s.peers {
        if let Some(w) = &p.why_relayed {
            line(format!("{:<5} {}", p.peer, w.line));
            let each: Vec<String> = w
                .candidates
                .iter()
                .map(|(addr, outcome)| format!("{addr} {outcome}"))
                .collect();
            if !each.is_empty() {
                line(format!("      candidates: {}", each.join(", ")));
            }
        }
    }
    if !s.exposed.is_empty() {
        line(String::new());
        line("EXPOSED                         ROUTE   TARGET                  STATE".into());
        for (name, target) in &s.exposed {
            let route = s.exposed_routes.iter().find(|(n, _)| n == name);
            let route = route.map_or("-", |(_, r)| r.as_str());
            let state = s.exposed_state.iter().find(|(n, _)| n == name);
            let state = state.map_or("-", |(_, r)| r.as_str());
            line(format!("{name:<31} {route:<7} {target:<23} {state}"));
        }
    }
    if !s.published.is_empty() {
        line(String::new());
        line("PUBLISHED                       WHERE".into());
        for (name, state) in &s.published {
            line(format!("{name:<31} {state}"));
        }
    }
    if !s.services.is_empty() {
        line(String::new());
        line("SERVICE                         LISTEN                  STATE    ROUTE   PEER  WAITING  LAST ERROR".into());
        for v in &s.services {
            let listen: Vec<String> = v.listen.iter().map(|a| a.to_string()).collect();
            line(format!(
                "{:<31} {:<23} {:<8} {:<7} {:<5} {:<8} {}",
                v.name,
                listen.join(","),
                v.state,
                v.route.as_deref().unwrap_or("-"),
                v.peer.map_or("-".into(), |p| p.to_string()),
                v.waiting,
                v.last_error.as_deref().unwrap_or("-"),
            ));
        }
    }
    if !s.meetings.is_empty() {
        line(String::new());
        line("PEER MODE                                     STATE    PEER  LAST ERROR".into());
        for m in &s.meetings {
            line(format!(
                "{:<45} {:<8} {:<5} {}",
                m.key,
                m.state,
                m.peer.map_or("-".into(), |p| p.to_string()),
                m.last_error.as_deref().unwrap_or("-"),
            ));
        }
    }
    line(String::new());
    line(format!("{} open connection(s)", s.conns.len()));
    let u = &s.udp;
    let any_udp = !s.flows.is_empty() || u.flows_opened > 0;
    if any_udp {
        line(String::new());
        line("FLOW  SERVICE                         SIDE  LOCAL                   OUT                IN                 DROPPED  IDLE".into());
        for f in &s.flows {
            line(format!(
                "{:<5} {:<31} {:<5} {:<23} {:<18} {:<18} {:<8} {:.0} s",
                f.flow,
                f.service,
                if f.incoming { "in" } else { "out" },
                f.local,
                format!("{} ({})", f.datagrams_out, bytes(f.bytes_out)),
                format!("{} ({})", f.datagrams_in, bytes(f.bytes_in)),
                f.dropped,
                f.idle_secs,
            ));
        }
        line(format!(
            "udp flows: {} opened, {} expired, {} ended by their opener, {} held for their introduction, {} refused; dropped: {} too large (max {} B), {} over the flow limit, {} unreachable, {} malformed, {} unknown flow, {} not sent",
            u.flows_opened,
            u.flows_expired,
            u.flows_ended,
            u.flows_held,
            u.flows_refused,
            u.dropped_too_large,
            s.udp_max_payload.map_or("-".into(), |m| m.to_string()),
            u.dropped_limit,
            u.dropped_unreachable,
            u.dropped_malformed,
            u.dropped_unknown_flow,
            u.dropped_send,
        ));
    }
    out
}

/// The UTC time of day `ago` seconds before now, as `HH:MM:SS UTC`.
fn utc_time_ago(ago: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ago = std::time::Duration::try_from_secs_f64(ago).unwrap_or_default();
    let at = now.saturating_sub(ago);
    let day = at.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02} UTC", day / 3600, day / 60 % 60, day % 60)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
