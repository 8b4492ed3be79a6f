//! The local control socket: a unix socket in the state directory speaking JSON lines.
//! Request `{"cmd":"status"}`; answer one line, the node's status or `{"error": "..."}`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use burrow_core::status::Status;
use serde::Deserialize;

use crate::node::Control;

#[derive(Deserialize)]
struct Request {
    cmd: String,
}

/// The control socket's path in `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// Binds the control socket, replacing a stale one; refuses if a daemon answers on it.
/// Answers on a thread per client.
pub fn serve(state_dir: &Path, node: Control) -> Result<(), String> {
    let path = socket_path(state_dir);
    std::fs::create_dir_all(state_dir)
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
    let listener = UnixListener::bind(&path)
        .map_err(|e| format!("cannot create control socket {}: {e}", path.display()))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let node = node.clone();
            std::thread::spawn(move || answer(stream, node));
        }
    });
    Ok(())
}

fn answer(stream: UnixStream, node: Control) {
    let Ok(mut wr) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else {
            return;
        };
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(r) if r.cmd == "status" => match node.status() {
                Ok(status) => serde_json::to_string(&status).unwrap_or_default(),
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

/// Asks the daemon with `state_dir` for its status.
pub fn status(state_dir: &Path) -> Result<(String, Status), String> {
    let path = socket_path(state_dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "no daemon answers at {} ({e}): start one with `burrow daemon`, or pass --state-dir",
            path.display()
        )
    })?;
    let io_err = |e: std::io::Error| format!("control socket {}: {e}", path.display());
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(io_err)?;
    stream
        .write_all(b"{\"cmd\":\"status\"}\n")
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
    let line = line.trim_end().to_string();
    let status = serde_json::from_str(&line).map_err(|_| {
        format!(
            "control socket {}: unexpected answer: {line}",
            path.display()
        )
    })?;
    Ok((line, status))
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
    match (&s.registered, &s.registration_error) {
        (Some(r), _) => line(format!("registered  yes, seen as {r}")),
        (None, Some(e)) => line(format!("registered  no: {e}")),
        (None, None) => line("registered  not yet".into()),
    }
    line(String::new());
    line(
        "PEER  ADDRESS                 STATE       RTT        SENT        RECEIVED    STREAMS  KEY"
            .into(),
    );
    for p in &s.peers {
        line(format!(
            "{:<5} {:<23} {:<11} {:<10} {:<11} {:<11} {:<8} {}",
            p.peer,
            p.addr.map_or("-".into(), |a| a.to_string()),
            match (p.connected, p.relayed) {
                (false, _) => "handshake",
                (true, false) => "direct",
                (true, true) => "relayed",
            },
            p.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
            bytes(p.bytes_sent),
            bytes(p.bytes_received),
            p.open_streams,
            p.key,
        ));
    }
    if !s.exposed.is_empty() {
        line(String::new());
        line("EXPOSED                         TARGET".into());
        for (name, target) in &s.exposed {
            line(format!("{name:<31} {target}"));
        }
    }
    if !s.services.is_empty() {
        line(String::new());
        line("SERVICE                         LISTEN                  STATE    PEER  WAITING  LAST ERROR".into());
        for v in &s.services {
            let listen: Vec<String> = v.listen.iter().map(|a| a.to_string()).collect();
            line(format!(
                "{:<31} {:<23} {:<8} {:<5} {:<8} {}",
                v.name,
                listen.join(","),
                v.state,
                v.peer.map_or("-".into(), |p| p.to_string()),
                v.waiting,
                v.last_error.as_deref().unwrap_or("-"),
            ));
        }
    }
    line(String::new());
    line(format!("{} open connection(s)", s.conns.len()));
    out
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
