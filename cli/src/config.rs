//! The daemon's TOML config, merged with flags into one checked [`Settings`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use burrow_core::rendezvous::ServiceName;
use burrow_core::{CongestionControl, PublicKey, RoutePolicy};
use serde::Deserialize;

use crate::args::{DaemonArgs, LogFormat};
use crate::node::Runtime;

/// Most path tokens a daemon presents (the server's limit).
const MAX_PATH_TOKENS: usize = 4;
use crate::secrets;

/// The file as written. Unknown keys are errors, so a typo is reported rather than ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub server: Option<String>,
    pub server_key: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Files of more path tokens (a declared path's server or client token each).
    #[serde(default)]
    pub path_token_files: Vec<PathBuf>,
    #[serde(default)]
    pub allow: Vec<String>,
    pub key_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub udp: Option<String>,
    pub route: Option<String>,
    pub congestion: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    /// The runtime (`--runtime` overrides it).
    pub runtime: Option<Runtime>,
    #[serde(default)]
    pub expose: Vec<Expose>,
    #[serde(default)]
    pub connect: Vec<Connect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expose {
    pub name: String,
    pub target: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    pub name: String,
    pub listen: String,
    pub peer_key: Option<String>,
}

/// Everything a daemon needs, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub server: SocketAddr,
    pub server_key: PublicKey,
    pub token: String,
    /// More tokens of the server's directory, one per declared path.
    pub path_tokens: Vec<String>,
    /// Keys admitted to every exposed service without an introduction.
    pub allow: BTreeSet<PublicKey>,
    pub key_file: PathBuf,
    pub state_dir: PathBuf,
    pub udp: SocketAddr,
    pub route: RoutePolicy,
    /// `relay-first`: any path, with data on the relay at once until a direct path is proven.
    pub relay_first: bool,
    /// The tunnels' congestion controller.
    pub congestion: CongestionControl,
    pub expose: Vec<(ServiceName, String)>,
    pub connect: Vec<(ServiceName, SocketAddr)>,
    /// Destination keys given up front (`peer_key`), by service.
    pub peer_keys: BTreeMap<ServiceName, PublicKey>,
}

/// Reads and parses `path`; errors name the file and, from the TOML parser, the line.
pub fn load(path: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let mut file: File = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|span| 1 + text[..span.start.min(text.len())].matches('\n').count());
        let at = line.map_or(String::new(), |l| format!(" line {l}"));
        format!("config {}{at}: {}", path.display(), e.message().trim())
    })?;
    // Paths in the file are relative to the file.
    let base = path.parent().unwrap_or(Path::new("."));
    file.key_file = file.key_file.map(|p| base.join(p));
    file.token_file = file.token_file.map(|p| base.join(p));
    file.path_token_files = file
        .path_token_files
        .into_iter()
        .map(|p| base.join(p))
        .collect();
    file.state_dir = file.state_dir.map(|p| base.join(p));
    Ok(file)
}

/// The default state directory.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BURROW_STATE_DIR") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("burrow");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/burrow"),
        None => PathBuf::from(".burrow"),
    }
}

/// Where a setting came from, for error messages.
fn origin(source: &str, key: &str, flag: &str) -> String {
    if source.is_empty() {
        format!("--{flag}")
    } else {
        format!("`{key}` in {source} (or --{flag})")
    }
}

/// Merges `file` (read from `source`, empty for none) with `args` (which win) and checks it.
pub fn settings(file: File, args: DaemonArgs, source: &str) -> Result<Settings, String> {
    let missing = |key: &str, flag: &str, example: &str| {
        format!("missing {}: {example}", origin(source, key, flag))
    };
    let server_text = args
        .server
        .or(file.server)
        .ok_or_else(|| missing("server", "server", "the rendezvous server's HOST:PORT"))?;
    let server = resolve(&server_text)
        .map_err(|e| format!("{}: {e}", origin(source, "server", "server")))?;
    let key_text = args.server_key.or(file.server_key).ok_or_else(|| {
        missing(
            "server_key",
            "server-key",
            "the public key `burrow server` printed at start",
        )
    })?;
    let server_key: PublicKey = key_text
        .parse()
        .map_err(|e| format!("{}: {e}", origin(source, "server_key", "server-key")))?;
    let token = token(
        [args.token.as_deref(), file.token.as_deref()],
        [args.token_file.as_deref(), file.token_file.as_deref()],
        source,
    )?
    .ok_or_else(|| {
        missing(
            "token_file",
            "token-file",
            "a file holding the access token the server accepts (or `token`, or $BURROW_TOKEN)",
        )
    })?;
    let mut allow = BTreeSet::new();
    for (text, from) in args
        .allow_keys
        .iter()
        .map(|k| (k, "--allow-key".to_string()))
        .chain(
            file.allow
                .iter()
                .map(|k| (k, origin(source, "allow", "allow-key"))),
        )
    {
        let key: PublicKey = text.parse().map_err(|e| format!("{from}: `{text}`: {e}"))?;
        allow.insert(key);
    }
    let state_dir = args
        .state_dir
        .or(file.state_dir)
        .unwrap_or_else(default_state_dir);
    let key_file = args
        .key
        .or(file.key_file)
        .unwrap_or_else(|| state_dir.join("key"));
    let udp = match (args.udp, file.udp) {
        (Some(a), _) => a,
        (None, Some(text)) => text
            .parse()
            .map_err(|_| format!("{}: `{text}` is not IP:PORT", origin(source, "udp", "udp")))?,
        (None, None) => "0.0.0.0:0".parse().expect("literal"),
    };
    let route_text = args.route.or(file.route);
    let relay_first = route_text.as_deref() == Some("relay-first");
    let route = match route_text.as_deref() {
        None | Some("any") | Some("relay-first") => RoutePolicy::Any,
        Some("direct") => RoutePolicy::Direct,
        Some("relay") => RoutePolicy::Relay,
        Some(other) => {
            return Err(format!(
                "{}: `{other}` is not one of any, relay-first, direct, relay",
                origin(source, "route", "route")
            ));
        }
    };
    let congestion = match args.congestion.or(file.congestion).as_deref() {
        None | Some("bbr") => CongestionControl::Bbr,
        Some("newreno") => CongestionControl::NewReno,
        Some(other) => {
            return Err(format!(
                "{}: `{other}` is not one of bbr, newreno",
                origin(source, "congestion", "congestion")
            ));
        }
    };
    let mut expose = Vec::new();
    for (i, e) in file.expose.into_iter().enumerate() {
        let name =
            service(&e.name).map_err(|why| format!("[[expose]] #{} in {source}: {why}", i + 1))?;
        if expose.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "[[expose]] #{} in {source}: `{name}` is exposed twice",
                i + 1
            ));
        }
        expose.push((name, e.target));
    }
    let mut connect = Vec::new();
    let mut peer_keys = BTreeMap::new();
    for (i, c) in file.connect.into_iter().enumerate() {
        let at = || format!("[[connect]] #{} in {source}", i + 1);
        let name = service(&c.name).map_err(|why| format!("{}: {why}", at()))?;
        let listen: SocketAddr = c
            .listen
            .parse()
            .map_err(|_| format!("{}: listen `{}` is not IP:PORT", at(), c.listen))?;
        if connect.iter().any(|(n, _)| *n == name) {
            return Err(format!("{}: `{name}` is connected twice", at()));
        }
        if listen.port() != 0 && connect.iter().any(|(_, a)| *a == listen) {
            return Err(format!("{}: {listen} is listened on twice", at()));
        }
        if let Some(text) = &c.peer_key {
            let key: PublicKey = text
                .parse()
                .map_err(|e| format!("{}: peer_key `{text}`: {e}", at()))?;
            peer_keys.insert(name.clone(), key);
        }
        connect.push((name, listen));
    }
    let files = args.path_token_files.iter().chain(&file.path_token_files);
    let path_tokens = files
        .map(|p| secrets::read_token(p))
        .collect::<Result<Vec<_>, _>>()?;
    if path_tokens.len() > MAX_PATH_TOKENS {
        return Err(format!(
            "at most {MAX_PATH_TOKENS} path token files (--path-token-file, `path_token_files`); \
             a daemon that needs more paths can use its tenant's master token"
        ));
    }
    Ok(Settings {
        server,
        server_key,
        token,
        path_tokens,
        allow,
        key_file,
        state_dir,
        udp,
        route,
        relay_first,
        congestion,
        expose,
        connect,
        peer_keys,
    })
}

/// The token, from the first place that has one: --token, --token-file, $BURROW_TOKEN, then
/// the file's `token` and `token_file`. Checked wherever it came from.
/// `tokens` and `files` are [flag, config file] each.
fn token(
    tokens: [Option<&str>; 2],
    files: [Option<&Path>; 2],
    source: &str,
) -> Result<Option<String>, String> {
    let env = std::env::var("BURROW_TOKEN").ok().filter(|t| !t.is_empty());
    let (token, from) = if let Some(t) = tokens[0] {
        (t.to_string(), "--token".to_string())
    } else if let Some(path) = files[0] {
        (
            secrets::read_token(path)?,
            format!("token file {}", path.display()),
        )
    } else if let Some(t) = env {
        (t, "$BURROW_TOKEN".to_string())
    } else if let Some(t) = tokens[1] {
        (t.to_string(), origin(source, "token", "token"))
    } else if let Some(path) = files[1] {
        (
            secrets::read_token(path)?,
            format!("token file {}", path.display()),
        )
    } else {
        return Ok(None);
    };
    secrets::check_token(&token).map_err(|e| format!("{from}: {e}"))?;
    Ok(Some(token))
}

/// Parses a service name, saying what is wrong with it.
pub fn service(text: &str) -> Result<ServiceName, String> {
    ServiceName::parse(text).map_err(|e| format!("service name `{text}`: {e}"))
}

/// Resolves `HOST:PORT` to its first address.
pub fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{text}` as HOST:PORT: {e}"))?
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let dir = std::env::temp_dir().join(format!("burrow-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "server = \"127.0.0.1:7000\"\nsevrer_key = \"x\"\n").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.contains("sevrer_key"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn missing_server_key_says_which_key() {
        let file = File {
            server: Some("127.0.0.1:7000".into()),
            token: Some("t".into()),
            ..File::default()
        };
        let err = settings(file, DaemonArgs::default(), "burrow.toml").unwrap_err();
        assert!(err.contains("`server_key` in burrow.toml"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let file = File {
            server: Some("127.0.0.1:7000".into()),
            server_key: Some("not a key".into()),
            token: Some("file".into()),
            ..File::default()
        };
        let args = DaemonArgs {
            server_key: Some(
                burrow_core::SecretKey::from_bytes([3; 32])
                    .public_key()
                    .to_string(),
            ),
            token: Some("flag".into()),
            ..DaemonArgs::default()
        };
        let s = settings(file, args, "burrow.toml").unwrap();
        assert_eq!(s.token, "flag");
    }

    #[test]
    fn bad_service_name_points_at_the_entry() {
        let file: File = toml::from_str(
            "server = \"127.0.0.1:7000\"\nserver_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\ntoken = \"t\"\n[[expose]]\nname = \"no-slash\"\ntarget = \"127.0.0.1:22\"\n",
        )
        .unwrap();
        let err = settings(file, DaemonArgs::default(), "c.toml").unwrap_err();
        assert!(
            err.starts_with("[[expose]] #1 in c.toml: service name `no-slash`"),
            "{err}"
        );
    }
}
