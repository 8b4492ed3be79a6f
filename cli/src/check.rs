//! `burrow check -c FILE`: every problem of a daemon config, each with its line and key,
//! without starting anything. A reload runs the same check before it changes anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use burrow_core::PublicKey;

use crate::config::{self, File};
use crate::{keys, logging, secrets};

/// Where the problems of one file are reported: `FILE line N: `key`: why`.
struct Problems<'a> {
    path: &'a Path,
    text: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    /// A problem with top-level `key`.
    fn top(&mut self, key: &str, why: impl std::fmt::Display) {
        let line = key_line(self.text, None, key);
        self.push(line, key, why);
    }

    /// A problem with `key` of the `n`th (from 0) `[[table]]` entry.
    fn entry(&mut self, table: &str, n: usize, key: &str, why: impl std::fmt::Display) {
        let line = key_line(self.text, Some((table, n)), key);
        let key = format!("[[{table}]] #{} {key}", n + 1);
        self.push(line, &key, why);
    }

    fn push(&mut self, line: Option<usize>, key: &str, why: impl std::fmt::Display) {
        let at = line.map_or(String::new(), |l| format!(" line {l}"));
        self.list
            .push(format!("{}{at}: `{key}`: {why}", self.path.display()));
    }
}

/// The line (from 1) where `key` is set: at the top (`entry` `None`) or in the `n`th
/// `[[table]]`; for an entry without that key, its header's line.
fn key_line(text: &str, entry: Option<(&str, usize)>, key: &str) -> Option<usize> {
    let mut section: Option<(String, usize)> = None;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut header = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_default();
            section = Some((name, *n));
            *n += 1;
            if entry.is_some_and(|(t, n)| section == Some((t.to_string(), n))) {
                header = Some(i + 1);
            }
            continue;
        }
        if line.starts_with('[') {
            section = Some((line.to_string(), usize::MAX));
            continue;
        }
        let here = match (&section, entry) {
            (None, None) => true,
            (Some((name, n)), Some((t, m))) => name == t && *n == m,
            _ => false,
        };
        let sets = line
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if here && sets {
            return Some(i + 1);
        }
    }
    header
}

/// Checks the daemon config at `path`: the one-line summary if it is good, else every
/// problem found.
pub fn daemon(path: &Path) -> Result<String, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read config {}: {e}", path.display())])?;
    let file = config::load(path).map_err(|e| vec![e])?;
    let mut p = Problems {
        path,
        text: &text,
        list: Vec::new(),
    };
    let summary = check_file(&file, &mut p);
    if p.list.is_empty() {
        Ok(summary)
    } else {
        Err(p.list)
    }
}

fn check_file(file: &File, p: &mut Problems<'_>) -> String {
    let server = match &file.server {
        None => {
            p.top("server", "missing: the rendezvous server's HOST:PORT");
            String::new()
        }
        Some(s) => {
            if let Err(e) = config::resolve(s) {
                p.top("server", e);
            }
            s.clone()
        }
    };
    match &file.server_key {
        None => p.top(
            "server_key",
            "missing: the public key `burrow server` printed at start",
        ),
        Some(k) => {
            if let Err(e) = k.parse::<PublicKey>() {
                p.top("server_key", format!("`{k}`: {e}"));
            }
        }
    }
    let env = std::env::var("BURROW_TOKEN").ok().filter(|t| !t.is_empty());
    match (&file.token, &file.token_file) {
        (Some(_), Some(_)) => p.top("token_file", "give `token` or `token_file`, not both"),
        (Some(t), None) => {
            if let Err(e) = secrets::check_token(t) {
                p.top("token", e);
            }
        }
        (None, Some(path)) => match secrets::read_token(path) {
            Ok(t) => {
                if let Err(e) = secrets::check_token(&t) {
                    p.top("token_file", e);
                }
            }
            Err(e) => p.top("token_file", e),
        },
        (None, None) if env.is_none() => p.top(
            "token_file",
            "missing: a file holding the access token (or `token`, or $BURROW_TOKEN)",
        ),
        (None, None) => {}
    }
    for k in &file.allow {
        if let Err(e) = k.parse::<PublicKey>() {
            p.top("allow", format!("`{k}`: {e}"));
        }
    }
    let state_dir = file
        .state_dir
        .clone()
        .unwrap_or_else(config::default_state_dir);
    let key_file = file
        .key_file
        .clone()
        .unwrap_or_else(|| state_dir.join("key"));
    // A missing key is created at start; one that exists must be readable and private.
    if std::fs::symlink_metadata(&key_file).is_ok() {
        if let Err(e) = keys::read(&key_file) {
            p.top("key_file", e);
        }
    }
    if state_dir.exists() && !state_dir.is_dir() {
        p.top(
            "state_dir",
            format!("{} is not a directory", state_dir.display()),
        );
    }
    if let Some(udp) = &file.udp {
        if udp.parse::<SocketAddr>().is_err() {
            p.top("udp", format!("`{udp}` is not IP:PORT"));
        }
    }
    if let Some(route) = &file.route {
        if !matches!(route.as_str(), "any" | "relay-first" | "direct" | "relay") {
            p.top(
                "route",
                format!("`{route}` is not one of any, relay-first, direct, relay"),
            );
        }
    }
    if let Some(cc) = &file.congestion {
        if !matches!(cc.as_str(), "bbr" | "newreno") {
            p.top("congestion", format!("`{cc}` is not one of bbr, newreno"));
        }
    }
    if let Some(level) = &file.log_level {
        if let Err(e) = logging::check_level(level) {
            p.top("log_level", e);
        }
    }
    if let Some(text) = &file.metrics {
        match text.parse() {
            Err(_) => p.top("metrics", format!("`{text}` is not IP:PORT")),
            Ok(addr) => {
                let public = file.metrics_public.unwrap_or(false);
                if let Err(e) = crate::metrics::Listen::new(addr, public) {
                    p.top("metrics", e);
                }
            }
        }
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, e) in file.expose.iter().enumerate() {
        if let Err(why) = config::service(&e.name) {
            p.entry("expose", i, "name", why);
        } else if let Some(first) = names.insert(e.name.clone(), i) {
            let why = format!(
                "`{}` is exposed already by [[expose]] #{}",
                e.name,
                first + 1
            );
            p.entry("expose", i, "name", why);
        }
        if let Err(why) = check_target(&e.target) {
            p.entry("expose", i, "target", why);
        }
        if let Err(why) = config::expose_options_of(e) {
            let key = if why.starts_with("publish") {
                "publish"
            } else if why.starts_with("proxy_protocol") || why.contains("TCP only") {
                "proxy_protocol"
            } else if why.starts_with("route") {
                "route"
            } else if why.starts_with("protocol") {
                "protocol"
            } else {
                "target"
            };
            p.entry("expose", i, key, why);
        }
        match e.hook_keys().check() {
            Err((key, why)) => p.entry("expose", i, key, why),
            Ok(Some(_)) if e.protocol.as_deref() == Some("udp") => {
                p.entry("expose", i, "on_up", "hooks run for TCP services only");
            }
            Ok(_) => {}
        }
    }
    if file.udp_flow_timeout == Some(0) {
        p.top("udp_flow_timeout", "must be at least 1 (seconds)");
    }
    if file.udp_max_flows == Some(0) {
        p.top("udp_max_flows", "must be at least 1");
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut ports: BTreeMap<(bool, SocketAddr), usize> = BTreeMap::new();
    for (i, c) in file.connect.iter().enumerate() {
        let udp = match config::protocol(c.protocol.as_deref()) {
            Ok(p) => p == burrow_core::forward::Protocol::Udp,
            Err(why) => {
                p.entry("connect", i, "protocol", why);
                false
            }
        };
        if let Err(why) = config::service(&c.name) {
            p.entry("connect", i, "name", why);
        } else if let Some(first) = names.insert(c.name.clone(), i) {
            let why = format!(
                "`{}` is connected already by [[connect]] #{}",
                c.name,
                first + 1
            );
            p.entry("connect", i, "name", why);
        }
        match c.listen.parse::<SocketAddr>() {
            Err(_) => p.entry(
                "connect",
                i,
                "listen",
                format!("`{}` is not IP:PORT", c.listen),
            ),
            Ok(addr) if addr.port() != 0 => {
                // TCP and UDP may listen on the same port.
                if let Some(first) = ports.insert((udp, addr), i) {
                    let why = format!("{addr} is used already by [[connect]] #{}", first + 1);
                    p.entry("connect", i, "listen", why);
                }
            }
            Ok(_) => {}
        }
        if let Some(k) = &c.peer_key {
            if let Err(e) = k.parse::<PublicKey>() {
                p.entry("connect", i, "peer_key", format!("`{k}`: {e}"));
            }
        }
        if let Err(why) = config::service_route(c.route.as_deref()) {
            p.entry("connect", i, "route", why);
        }
        if let Err((key, why)) = c.hook_keys().check() {
            p.entry("connect", i, key, why);
        }
    }
    if file.peer.len() > burrow_core::config::MAX_PEERS {
        p.top(
            "peer",
            format!(
                "at most {} [[peer]] entries",
                burrow_core::config::MAX_PEERS
            ),
        );
    }
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    for (i, peer) in file.peer.iter().enumerate() {
        match peer.key.parse::<PublicKey>() {
            Err(e) => p.entry("peer", i, "key", format!("`{}`: {e}", peer.key)),
            Ok(key) => {
                if let Some(first) = keys.insert(key.to_string(), i) {
                    let why = format!("{key} is named already by [[peer]] #{}", first + 1);
                    p.entry("peer", i, "key", why);
                }
            }
        }
        for name in &peer.allow {
            if let Err(why) = config::service(name) {
                p.entry("peer", i, "allow", why);
            }
        }
        if let Err(why) = config::service_route(peer.route.as_deref()) {
            p.entry("peer", i, "route", why);
        }
        if let Err((key, why)) = peer.hook_keys().check() {
            p.entry("peer", i, key, why);
        }
        for c in &peer.connect {
            if let Err(why) = config::service(&c.name) {
                p.entry("peer", i, "connect", why);
            } else if let Some(first) = names.insert(c.name.clone(), usize::MAX - i) {
                let why = match first {
                    f if f > usize::MAX / 2 => format!("`{}` is connected twice", c.name),
                    f => format!(
                        "`{}` is connected already by [[connect]] #{}",
                        c.name,
                        f + 1
                    ),
                };
                p.entry("peer", i, "connect", why);
            }
            match c.listen.parse::<SocketAddr>() {
                Err(_) => p.entry(
                    "peer",
                    i,
                    "connect",
                    format!("listen `{}` is not IP:PORT", c.listen),
                ),
                Ok(addr) if addr.port() != 0 => {
                    if ports.insert((false, addr), usize::MAX - i).is_some() {
                        p.entry("peer", i, "connect", format!("{addr} is listened on twice"));
                    }
                }
                Ok(_) => {}
            }
        }
    }
    let list = |names: Vec<&str>| {
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    };
    let idle = if file.expose.is_empty() && file.connect.is_empty() {
        format!("; warning: {NOTHING_TO_DO}")
    } else {
        String::new()
    };
    format!(
        "server {server}, {} exposed{}, {} connected{}{idle}",
        file.expose.len(),
        list(file.expose.iter().map(|e| e.name.as_str()).collect()),
        file.connect.len(),
        list(file.connect.iter().map(|c| c.name.as_str()).collect()),
    )
}

/// What `check` and a starting daemon say about a config without services.
pub const NOTHING_TO_DO: &str = "nothing to do: no [[expose]] or [[connect]] entry (services can \
                                 still come from `burrow attach` or the tenant's master)";

/// An expose target: `host:port` or `unix:PATH`.
fn check_target(target: &str) -> Result<(), String> {
    if let Some(path) = target.strip_prefix("unix:") {
        return if path.is_empty() {
            Err("`unix:` needs a socket path".into())
        } else {
            Ok(())
        };
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            Ok(())
        }
        _ => Err(format!(
            "`{target}` is not HOST:PORT (or unix:PATH for a unix socket)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_at_the_top_and_in_entries() {
        let text = "server = \"x\"\n[[expose]]\nname = \"/a\"\n[[expose]]\nname = \"/b\"\ntarget = \"t\"\n";
        assert_eq!(key_line(text, None, "server"), Some(1));
        assert_eq!(key_line(text, Some(("expose", 1)), "target"), Some(6));
        assert_eq!(key_line(text, Some(("expose", 0)), "target"), Some(2));
        assert_eq!(key_line(text, None, "name"), None);
    }

    #[test]
    fn targets() {
        assert!(check_target("127.0.0.1:22").is_ok());
        assert!(check_target("localhost:80").is_ok());
        assert!(check_target("[::1]:80").is_ok());
        assert!(check_target("unix:/run/a.sock").is_ok());
        assert!(check_target("127.0.0.1").is_err());
        assert!(check_target("unix:").is_err());
        assert!(check_target("host:0").is_err());
    }

    #[test]
    fn udp_and_proxy_entries_are_checked() {
        let text = "server = \"127.0.0.1:7000\"\nserver_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\ntoken = \"t\"\nudp_max_flows = 0\n\
            [[expose]]\nname = \"/a\"\ntarget = \"unix:/run/dns.sock\"\nprotocol = \"udp\"\n\
            [[connect]]\nname = \"/b\"\nlisten = \"127.0.0.1:53\"\nprotocol = \"udp\"\n\
            [[connect]]\nname = \"/c\"\nlisten = \"127.0.0.1:53\"\n\
            [[connect]]\nname = \"/d\"\nlisten = \"127.0.0.1:54\"\nprotocol = \"quic\"\n\
            [[expose]]\nname = \"/e\"\ntarget = \"127.0.0.1:80\"\nroute = \"sideways\"\n\
            [[connect]]\nname = \"/f\"\nlisten = \"127.0.0.1:0\"\nroute = \"relay-first\"\n";
        let dir = crate::test_dir::TestDir::new("check-udp");
        let path = dir.join("d.toml");
        std::fs::write(&path, text).unwrap();
        let err = daemon(&path).unwrap_err().join("\n");
        assert!(err.contains("udp_max_flows"), "{err}");
        assert!(
            err.contains("[[expose]] #1 target") && err.contains("not the unix socket"),
            "{err}"
        );
        assert!(err.contains("[[connect]] #3 protocol"), "{err}");
        assert!(
            err.contains("[[expose]] #2 route") && err.contains("line 23"),
            "{err}"
        );
        assert!(
            err.contains("[[connect]] #4 route") && err.contains("daemon-wide only"),
            "{err}"
        );
        assert!(
            !err.contains("used already"),
            "TCP and UDP share port 53: {err}"
        );
    }

    #[test]
    fn peer_entries_are_checked() {
        let key = burrow_core::SecretKey::from_bytes([5; 32]).public_key();
        let text = format!(
            "server = \"127.0.0.1:7000\"\nserver_key = \"{key}\"\ntoken = \"t\"\n\
            [[connect]]\nname = \"/b\"\nlisten = \"127.0.0.1:53\"\n\
            [[peer]]\nkey = \"bad\"\n\
            [[peer]]\nkey = \"{key}\"\nallow = [\"nope\"]\nroute = \"up\"\n\
            connect = [{{ name = \"/b\", listen = \"127.0.0.1:54\" }}, {{ name = \"/c\", listen = \"127.0.0.1:53\" }}]\n\
            [[peer]]\nkey = \"{key}\"\n"
        );
        let dir = crate::test_dir::TestDir::new("check-peer");
        let path = dir.join("p.toml");
        std::fs::write(&path, text).unwrap();
        let err = daemon(&path).unwrap_err().join("\n");
        for want in [
            "line 8: `[[peer]] #1 key`",
            "`[[peer]] #2 allow`",
            "`[[peer]] #2 route`",
            "connected already by [[connect]] #1",
            "127.0.0.1:53 is listened on twice",
            "`[[peer]] #3 key`",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
