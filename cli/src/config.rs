//! The daemon's TOML config, merged with flags into one checked [`Settings`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use burrow_core::config::{MAX_PEERS, PeerConfig};
use burrow_core::forward::udp::UdpConfig;
use burrow_core::forward::{ExposeOptions, Protocol, ProxyVersion, PublishPort};
use burrow_core::node::HookSubject;
use burrow_core::rendezvous::ServiceName;
use burrow_core::{CongestionControl, PublicKey, RoutePolicy};
use serde::Deserialize;

use crate::args::{DaemonArgs, LogFormat};
use crate::node::Runtime;

use crate::{hooks, secrets};
/// Most path tokens a daemon presents (the server's limit).
use burrow_core::rendezvous::MAX_PATH_TOKENS;

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
    /// Ask the gateway for a port (NAT-PMP/PCP); default true.
    pub port_mapping: Option<bool>,
    /// Where to serve Prometheus metrics (`--metrics` overrides it); off when absent.
    pub metrics: Option<String>,
    /// Allow `metrics` on a non-loopback address.
    pub metrics_public: Option<bool>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    /// The runtime (`--runtime` overrides it).
    pub runtime: Option<Runtime>,
    /// Seconds a UDP flow lives without a datagram either way (default 60).
    pub udp_flow_timeout: Option<u64>,
    /// Most UDP flows at once per service (default 1024).
    pub udp_max_flows: Option<usize>,
    #[serde(default)]
    pub expose: Vec<Expose>,
    #[serde(default)]
    pub connect: Vec<Connect>,
    /// Daemons met in peer mode: each names the other.
    #[serde(default)]
    pub peer: Vec<Peer>,
}

/// A `[[peer]]`: another daemon, met in peer mode (both sides name each other), with no
/// lookup through the server's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its public key (`burrow daemon` prints it at start).
    pub key: String,
    /// Our exposed services it may reach (default: none).
    #[serde(default)]
    pub allow: Vec<String>,
    /// `any`, `direct` or `relay`: the paths the session with it may take.
    pub route: Option<String>,
    /// Its services to reach, each on a local address.
    #[serde(default)]
    pub connect: Vec<PeerConnect>,
    /// A program to run when a session comes up for it (see `hooks.rs`).
    pub on_up: Option<hooks::Written>,
    /// A program to run when that session moves to another path.
    pub on_path: Option<hooks::Written>,
    /// A program to run when that session ends.
    pub on_down: Option<hooks::Written>,
    /// Run the hooks with `sh -c` (each is one script then).
    pub shell: Option<bool>,
    /// Seconds a hook may run before it is killed (default 30).
    pub hook_timeout: Option<u64>,
}

/// One service of a `[[peer]]` to reach.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConnect {
    pub name: String,
    pub listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expose {
    pub name: String,
    pub target: String,
    /// `tcp` (the default) or `udp`.
    pub protocol: Option<String>,
    /// `v1` or `v2`: send the client's address ahead of each connection (TCP only).
    pub proxy_protocol: Option<String>,
    /// `any`, `direct` or `relay`: the paths this service may take (default: the daemon's
    /// `route`).
    pub route: Option<String>,
    /// A port of the rendezvous server to publish the service on (TCP or UDP, as the
    /// service), `"any"`, or `"sni"` (TLS services only).
    pub publish: Option<Publish>,
    /// A program to run when a session comes up for it (see `hooks.rs`).
    pub on_up: Option<hooks::Written>,
    /// A program to run when that session moves to another path.
    pub on_path: Option<hooks::Written>,
    /// A program to run when that session ends.
    pub on_down: Option<hooks::Written>,
    /// Run the hooks with `sh -c` (each is one script then).
    pub shell: Option<bool>,
    /// Seconds a hook may run before it is killed (default 30).
    pub hook_timeout: Option<u64>,
}

/// `publish = 20001` or `publish = "any"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Publish {
    /// A port number.
    Port(i64),
    /// A word: `any` (or a port written as a string).
    Word(String),
}

impl Publish {
    /// The port asked for, checked.
    pub fn port(&self) -> Result<PublishPort, String> {
        let text = match self {
            Self::Port(n) => n.to_string(),
            Self::Word(w) => w.clone(),
        };
        text.parse().map_err(|e| format!("publish {e}"))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    pub name: String,
    pub listen: String,
    pub peer_key: Option<String>,
    /// `tcp` (the default) or `udp`.
    pub protocol: Option<String>,
    /// `any`, `direct` or `relay`: the paths this connect may take (default: the daemon's
    /// `route`), combined with the exposing side's, the stricter winning.
    pub route: Option<String>,
    /// A program to run when a session comes up for it (see `hooks.rs`).
    pub on_up: Option<hooks::Written>,
    /// A program to run when that session moves to another path.
    pub on_path: Option<hooks::Written>,
    /// A program to run when that session ends.
    pub on_down: Option<hooks::Written>,
    /// Run the hooks with `sh -c` (each is one script then).
    pub shell: Option<bool>,
    /// Seconds a hook may run before it is killed (default 30).
    pub hook_timeout: Option<u64>,
}

/// The hook keys of an `[[expose]]`, `[[connect]]` or `[[peer]]`.
macro_rules! hook_keys {
    ($($t:ty),*) => {$(
        impl $t {
            /// Its hook keys, to check.
            pub fn hook_keys(&self) -> hooks::Keys<'_> {
                hooks::Keys {
                    on_up: self.on_up.as_ref(),
                    on_path: self.on_path.as_ref(),
                    on_down: self.on_down.as_ref(),
                    shell: self.shell,
                    hook_timeout: self.hook_timeout,
                }
            }
        }
    )*};
}
hook_keys!(Expose, Connect, Peer);

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
    /// Ask the gateway for a port (NAT-PMP/PCP) and announce it.
    pub port_mapping: bool,
    /// Exposed services, TCP and UDP alike (`expose_options` says which).
    pub expose: Vec<(ServiceName, String)>,
    /// How exposed services are forwarded, for those that are not plain TCP.
    pub expose_options: Vec<(ServiceName, ExposeOptions)>,
    /// TCP services to reach.
    pub connect: Vec<(ServiceName, SocketAddr)>,
    /// UDP services to reach (a reload starts and stops them as it does TCP ones).
    pub connect_udp: Vec<(ServiceName, SocketAddr)>,
    /// UDP forwarding tuning.
    pub udp_forward: UdpConfig,
    /// Destination keys given up front (`peer_key`), by service.
    pub peer_keys: BTreeMap<ServiceName, PublicKey>,
    /// Route policies `[[connect]]` entries set for themselves (the others take `route`).
    pub connect_routes: BTreeMap<ServiceName, RoutePolicy>,
    /// Daemons met in peer mode, by key.
    pub peers: BTreeMap<PublicKey, PeerConfig>,
    /// Services reached through a `[[peer]]` (also in `connect`, with their listeners).
    pub peer_services: BTreeMap<ServiceName, PublicKey>,
    /// The metrics endpoint, if asked for.
    pub metrics: Option<crate::metrics::Listen>,
    /// The hooks of every entry that has some.
    pub hooks: hooks::Table,
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
    let port_mapping = !args.no_port_mapping && file.port_mapping.unwrap_or(true);
    let mut expose = Vec::new();
    let mut expose_options = Vec::new();
    let mut hooks = hooks::Table::new();
    for (i, e) in file.expose.into_iter().enumerate() {
        let at = || format!("[[expose]] #{} in {source}", i + 1);
        let name = service(&e.name).map_err(|why| format!("{}: {why}", at()))?;
        if expose.iter().any(|(n, _)| *n == name) {
            return Err(format!("{}: `{name}` is exposed twice", at()));
        }
        let options = expose_options_of(&e).map_err(|why| format!("{}: {why}", at()))?;
        if let Some(h) = entry_hooks(&e.hook_keys(), &at())? {
            if options.protocol == Protocol::Udp {
                return Err(format!(
                    "{}: hooks run for TCP services only (a UDP expose has no stream to start \
                     a session's use of it)",
                    at()
                ));
            }
            hooks.insert(HookSubject::Expose(name.clone()), h);
        }
        if options != ExposeOptions::default() {
            expose_options.push((name.clone(), options));
        }
        expose.push((name, e.target));
    }
    let mut connect = Vec::new();
    let mut connect_udp: Vec<(ServiceName, SocketAddr)> = Vec::new();
    let mut peer_keys = BTreeMap::new();
    let mut connect_routes = BTreeMap::new();
    for (i, c) in file.connect.into_iter().enumerate() {
        let at = || format!("[[connect]] #{} in {source}", i + 1);
        let name = service(&c.name).map_err(|why| format!("{}: {why}", at()))?;
        let listen: SocketAddr = c
            .listen
            .parse()
            .map_err(|_| format!("{}: listen `{}` is not IP:PORT", at(), c.listen))?;
        let protocol = protocol(c.protocol.as_deref()).map_err(|why| format!("{}: {why}", at()))?;
        let both = connect.iter().chain(&connect_udp);
        if both.clone().any(|(n, _)| *n == name) {
            return Err(format!("{}: `{name}` is connected twice", at()));
        }
        let same = if protocol == Protocol::Udp {
            &connect_udp
        } else {
            &connect
        };
        if listen.port() != 0 && same.iter().any(|(_, a)| *a == listen) {
            return Err(format!("{}: {listen} is listened on twice", at()));
        }
        if let Some(text) = &c.peer_key {
            let key: PublicKey = text
                .parse()
                .map_err(|e| format!("{}: peer_key `{text}`: {e}", at()))?;
            peer_keys.insert(name.clone(), key);
        }
        if let Some(h) = entry_hooks(&c.hook_keys(), &at())? {
            hooks.insert(HookSubject::Connect(name.clone()), h);
        }
        if let Some(route) =
            service_route(c.route.as_deref()).map_err(|e| format!("{}: {e}", at()))?
        {
            connect_routes.insert(name.clone(), route);
        }
        match protocol {
            Protocol::Udp => connect_udp.push((name, listen)),
            Protocol::Tcp => connect.push((name, listen)),
        }
    }
    for (i, p) in file.peer.iter().enumerate() {
        let at = format!("[[peer]] #{} in {source}", i + 1);
        if let (Some(h), Ok(key)) = (entry_hooks(&p.hook_keys(), &at)?, p.key.parse()) {
            hooks.insert(HookSubject::Peer(key), h);
        }
    }
    let (peers, peer_services) = peers_of(file.peer, &mut connect, &connect_udp, source)?;
    let metrics_addr = match (args.metrics, file.metrics) {
        (Some(a), _) => Some(a),
        (None, Some(text)) => Some(text.parse().map_err(|_| {
            format!(
                "{}: `{text}` is not IP:PORT",
                origin(source, "metrics", "metrics")
            )
        })?),
        (None, None) => None,
    };
    let public = args.metrics_public || file.metrics_public.unwrap_or(false);
    let metrics = metrics_addr
        .map(|a| crate::metrics::Listen::new(a, public))
        .transpose()
        .map_err(|e| format!("{}: {e}", origin(source, "metrics", "metrics")))?;
    let mut udp_forward = UdpConfig::default();
    if let Some(secs) = file.udp_flow_timeout {
        if secs == 0 {
            return Err(format!(
                "`udp_flow_timeout` in {source}: must be at least 1 (seconds)"
            ));
        }
        udp_forward.idle_timeout = std::time::Duration::from_secs(secs);
    }
    if let Some(n) = file.udp_max_flows {
        if n == 0 {
            return Err(format!("`udp_max_flows` in {source}: must be at least 1"));
        }
        udp_forward.max_flows = n;
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
        port_mapping,
        expose,
        expose_options,
        connect,
        connect_udp,
        udp_forward,
        peer_keys,
        connect_routes,
        peers,
        peer_services,
        metrics,
        hooks,
    })
}

/// An entry's hooks, checked; errors name the entry `at` and the key.
fn entry_hooks(keys: &hooks::Keys<'_>, at: &str) -> Result<Option<hooks::Hooks>, String> {
    keys.check()
        .map_err(|(key, why)| format!("{at}: {key}: {why}"))
}

/// The `[[peer]]` entries, checked: their keys (each once, at most [`MAX_PEERS`]), the
/// services they may reach, their routes, and their services to reach, whose listeners join
/// `connect` (a name or address already used there is refused).
#[allow(clippy::type_complexity)]
pub fn peers_of(
    entries: Vec<Peer>,
    connect: &mut Vec<(ServiceName, SocketAddr)>,
    connect_udp: &[(ServiceName, SocketAddr)],
    source: &str,
) -> Result<
    (
        BTreeMap<PublicKey, PeerConfig>,
        BTreeMap<ServiceName, PublicKey>,
    ),
    String,
> {
    if entries.len() > MAX_PEERS {
        return Err(format!(
            "at most {MAX_PEERS} [[peer]] entries in {source} (the server lets a daemon wait \
             for that many at once)"
        ));
    }
    let mut peers = BTreeMap::new();
    let mut services = BTreeMap::new();
    for (i, p) in entries.into_iter().enumerate() {
        let at = || format!("[[peer]] #{} in {source}", i + 1);
        let key: PublicKey = p
            .key
            .parse()
            .map_err(|e| format!("{}: key `{}`: {e}", at(), p.key))?;
        if peers.contains_key(&key) {
            return Err(format!("{}: key {key} is named twice", at()));
        }
        let mut allow = Vec::new();
        for name in &p.allow {
            let name = service(name).map_err(|why| format!("{}: allow: {why}", at()))?;
            if !allow.contains(&name) {
                allow.push(name);
            }
        }
        let route = service_route(p.route.as_deref()).map_err(|why| format!("{}: {why}", at()))?;
        for c in p.connect {
            let name = service(&c.name).map_err(|why| format!("{}: connect: {why}", at()))?;
            let listen: SocketAddr = c.listen.parse().map_err(|_| {
                format!(
                    "{}: connect {name}: listen `{}` is not IP:PORT",
                    at(),
                    c.listen
                )
            })?;
            let both = connect.iter().chain(connect_udp);
            if both.clone().any(|(n, _)| *n == name) || services.contains_key(&name) {
                return Err(format!("{}: `{name}` is connected twice", at()));
            }
            if listen.port() != 0 && connect.iter().any(|(_, a)| *a == listen) {
                return Err(format!("{}: {listen} is listened on twice", at()));
            }
            services.insert(name.clone(), key);
            connect.push((name, listen));
        }
        peers.insert(key, PeerConfig { allow, route });
    }
    Ok((peers, services))
}

/// A service's `route = "any" | "direct" | "relay"` (`None` when absent: the daemon's).
/// `relay-first` is the daemon's way of starting sessions, not a service's policy.
pub fn service_route(text: Option<&str>) -> Result<Option<RoutePolicy>, String> {
    match text {
        None => Ok(None),
        Some("relay-first") => Err(
            "route `relay-first` is daemon-wide only (the top-level `route`); a service takes \
             any, direct or relay"
                .into(),
        ),
        Some(t) => t
            .parse::<RoutePolicy>()
            .map(Some)
            .map_err(|_| format!("route `{t}` is not one of any, direct, relay")),
    }
}

/// `protocol = "tcp" | "udp"`, TCP when absent.
pub fn protocol(text: Option<&str>) -> Result<Protocol, String> {
    text.map_or(Ok(Protocol::Tcp), |t| {
        t.parse().map_err(|e| format!("protocol {e}"))
    })
}

/// How an `[[expose]]` entry is forwarded, checked: a UDP target is HOST:PORT (a host name is
/// looked up for each flow, as a TCP target is for each connection), the PROXY protocol is
/// for TCP only, and so is publishing on the server's SNI port.
pub fn expose_options_of(e: &Expose) -> Result<ExposeOptions, String> {
    let protocol = protocol(e.protocol.as_deref())?;
    let proxy_protocol = match e.proxy_protocol.as_deref() {
        None => None,
        Some(t) => Some(
            t.parse::<ProxyVersion>()
                .map_err(|e| format!("proxy_protocol {e}"))?,
        ),
    };
    let publish = e.publish.as_ref().map(Publish::port).transpose()?;
    if protocol == Protocol::Udp {
        if proxy_protocol.is_some() {
            return Err("proxy_protocol is for TCP services only".into());
        }
        if publish == Some(PublishPort::Sni) {
            return Err(
                "publish = \"sni\" is for TLS (TCP) services; a UDP service takes a port or \"any\""
                    .into(),
            );
        }
        if e.target.starts_with("unix:") {
            return Err(format!(
                "a UDP target is HOST:PORT, such as 127.0.0.1:53 or localhost:53 (not the unix \
                 socket `{}`)",
                e.target
            ));
        }
    }
    Ok(ExposeOptions {
        protocol,
        proxy_protocol,
        route: service_route(e.route.as_deref())?,
        publish,
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
        let dir = crate::test_dir::TestDir::new("cfg");
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

    const HEAD: &str = "server = \"127.0.0.1:7000\"\nserver_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\ntoken = \"t\"\n";

    #[test]
    fn udp_and_proxy_protocol_entries() {
        let text = format!(
            "{HEAD}udp_flow_timeout = 30\nudp_max_flows = 8\n\
             [[expose]]\nname = \"/a/dns\"\ntarget = \"127.0.0.1:53\"\nprotocol = \"udp\"\n\
             [[expose]]\nname = \"/a/web\"\ntarget = \"127.0.0.1:80\"\nproxy_protocol = \"v2\"\n\
             [[connect]]\nname = \"/b/dns\"\nlisten = \"127.0.0.1:5353\"\nprotocol = \"udp\"\n\
             [[connect]]\nname = \"/b/web\"\nlisten = \"127.0.0.1:5353\"\n"
        );
        let file: File = toml::from_str(&text).unwrap();
        let s = settings(file, DaemonArgs::default(), "c.toml").unwrap();
        assert_eq!(s.expose.len(), 2);
        assert_eq!(
            s.expose_options,
            vec![
                (service("/a/dns").unwrap(), ExposeOptions::udp()),
                (
                    service("/a/web").unwrap(),
                    ExposeOptions {
                        protocol: Protocol::Tcp,
                        proxy_protocol: Some(ProxyVersion::V2),
                        route: None,
                        publish: None,
                    }
                ),
            ]
        );
        assert_eq!(s.connect_udp.len(), 1);
        assert_eq!(s.connect.len(), 1, "TCP and UDP may share a port number");
        assert_eq!(s.udp_forward.max_flows, 8);
        assert_eq!(s.udp_forward.idle_timeout.as_secs(), 30);
    }

    #[test]
    fn bad_udp_and_proxy_entries_say_why() {
        for (entry, want) in [
            (
                "target = \"unix:/run/x.sock\"\nprotocol = \"udp\"",
                "a UDP target is HOST:PORT",
            ),
            (
                "target = \"127.0.0.1:53\"\nprotocol = \"sctp\"",
                "not one of tcp, udp",
            ),
            (
                "target = \"127.0.0.1:53\"\nprotocol = \"udp\"\nproxy_protocol = \"v1\"",
                "TCP services only",
            ),
            (
                "target = \"127.0.0.1:80\"\nproxy_protocol = \"v3\"",
                "not one of v1, v2",
            ),
            (
                "target = \"127.0.0.1:80\"\npublish = 70000",
                "neither a port",
            ),
            (
                "target = \"127.0.0.1:80\"\npublish = \"some\"",
                "neither a port",
            ),
            (
                "target = \"127.0.0.1:53\"\nprotocol = \"udp\"\npublish = \"sni\"",
                "is for TLS (TCP) services",
            ),
        ] {
            let text = format!("{HEAD}[[expose]]\nname = \"/a/x\"\n{entry}\n");
            let file: File = toml::from_str(&text).unwrap();
            let err = settings(file, DaemonArgs::default(), "c.toml").unwrap_err();
            assert!(
                err.starts_with("[[expose]] #1 in c.toml") && err.contains(want),
                "{err}"
            );
        }
    }

    #[test]
    fn routes_per_service() {
        let text = format!(
            "{HEAD}route = \"direct\"\n\
             [[expose]]\nname = \"/a/r\"\ntarget = \"127.0.0.1:80\"\nroute = \"relay\"\n\
             [[expose]]\nname = \"/a/d\"\ntarget = \"127.0.0.1:81\"\n\
             [[connect]]\nname = \"/b/r\"\nlisten = \"127.0.0.1:0\"\nroute = \"any\"\n"
        );
        let file: File = toml::from_str(&text).unwrap();
        let s = settings(file, DaemonArgs::default(), "c.toml").unwrap();
        assert_eq!(s.route, RoutePolicy::Direct);
        assert_eq!(s.expose_options.len(), 1, "only /a/r sets its own");
        assert_eq!(s.expose_options[0].1.route, Some(RoutePolicy::Relay));
        assert_eq!(
            s.connect_routes.get(&service("/b/r").unwrap()),
            Some(&RoutePolicy::Any)
        );
        for (entry, want) in [
            ("route = \"relay-first\"", "daemon-wide only"),
            ("route = \"both\"", "not one of any, direct, relay"),
        ] {
            for table in ["expose", "connect"] {
                let text = format!(
                    "{HEAD}[[{table}]]\nname = \"/a/x\"\ntarget = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:1\"\n{entry}\n"
                )
                .replace(if table == "expose" { "listen = \"127.0.0.1:1\"\n" } else { "target = \"127.0.0.1:1\"\n" }, "");
                let file: File = toml::from_str(&text).unwrap();
                let err = settings(file, DaemonArgs::default(), "c.toml").unwrap_err();
                assert!(
                    err.contains(want) && err.contains(&format!("[[{table}]] #1")),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn publish_takes_a_port_or_any() {
        for (value, want) in [
            ("20001", PublishPort::Port(20001)),
            ("\"any\"", PublishPort::Any),
        ] {
            let text = format!(
                "{HEAD}[[expose]]\nname = \"/a/web\"\ntarget = \"127.0.0.1:80\"\npublish = {value}\n"
            );
            let file: File = toml::from_str(&text).unwrap();
            let s = settings(file, DaemonArgs::default(), "c.toml").unwrap();
            assert_eq!(s.expose_options[0].1.publish, Some(want));
        }
    }

    #[test]
    fn peers_are_read_and_checked() {
        let key = burrow_core::SecretKey::from_bytes([5; 32]).public_key();
        let text = format!(
            "{HEAD}[[expose]]\nname = \"/a/ssh\"\ntarget = \"127.0.0.1:22\"\n\
             [[peer]]\nkey = \"{key}\"\nallow = [\"/a/ssh\"]\nroute = \"relay\"\n\
             connect = [{{ name = \"/b/db\", listen = \"127.0.0.1:5432\" }}]\n"
        );
        let file: File = toml::from_str(&text).unwrap();
        let s = settings(file, DaemonArgs::default(), "c.toml").unwrap();
        let peer = s.peers.get(&key).expect("the peer");
        assert_eq!(peer.allow, vec![service("/a/ssh").unwrap()]);
        assert_eq!(peer.route, Some(RoutePolicy::Relay));
        assert_eq!(s.peer_services.get(&service("/b/db").unwrap()), Some(&key));
        assert!(s.connect.iter().any(|(n, _)| n.as_str() == "/b/db"));
        for (entry, want) in [
            ("key = \"nope\"", "[[peer]] #1 in c.toml: key `nope`"),
            (
                &format!("key = \"{key}\"\nallow = [\"x\"]"),
                "allow: service name `x`",
            ),
            (
                &format!("key = \"{key}\"\nroute = \"relay-first\""),
                "daemon-wide only",
            ),
            (
                &format!("key = \"{key}\"\nconnect = [{{ name = \"/b\", listen = \"x\" }}]"),
                "listen `x` is not IP:PORT",
            ),
            (
                &format!("key = \"{key}\"\n[[peer]]\nkey = \"{key}\""),
                "named twice",
            ),
            (&format!("key = \"{key}\"\nsecret = 1"), "unknown field"),
        ] {
            let text = format!("{HEAD}[[peer]]\n{entry}\n");
            let err = match toml::from_str::<File>(&text) {
                Ok(file) => settings(file, DaemonArgs::default(), "c.toml").unwrap_err(),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(want), "{entry}: {err}");
        }
        let many: String = (0..=MAX_PEERS as u8)
            .map(|i| {
                let k = burrow_core::SecretKey::from_bytes([i + 1; 32]).public_key();
                format!("[[peer]]\nkey = \"{k}\"\n")
            })
            .collect();
        let file: File = toml::from_str(&format!("{HEAD}{many}")).unwrap();
        let err = settings(file, DaemonArgs::default(), "c.toml").unwrap_err();
        assert!(err.contains("at most 16 [[peer]]"), "{err}");
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
