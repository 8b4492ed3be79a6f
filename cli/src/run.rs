//! Running the server and the daemons until Ctrl-C (or SIGTERM).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use burrow_core::Config;
use burrow_core::PublicKey;
use burrow_core::breach::BreachConfig;
use burrow_core::config::PeerPolicy;
use burrow_core::config::{PortMappingConfig, RendezvousConfig};
use burrow_core::node::{KNOWN_SERVICES_FILE, MAX_KNOWN_SERVICES_LEN, parse_known_services};
use burrow_core::rendezvous::ServiceName;
use burrow_core::rendezvous::{PublishConfig, ServerConfig, TokenLimits, TokenPolicy};
use std::collections::BTreeMap;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use burrow_core::node::{Routing, Services};
use burrow_core::rendezvous::directory::{Directory, DirectoryStore};

use crate::args::DaemonArgs;
use crate::attach::{self, Running};
use crate::config::{self, Settings};
use crate::control::AttachRequest;
use crate::import::{self, Imports};
use crate::node::{Control, Node, NodeConfig, Runtime};
use crate::store::SqliteStore;
use crate::{control, hooks, keys, logging, metrics, notify};
use burrow_core::rendezvous::MAX_PATH_TOKENS;
use std::sync::PoisonError;

/// How long a daemon waits for its registration before diagnosing why it is missing.
const REGISTRATION_GRACE: Duration = Duration::from_secs(5);

/// What `burrow server` was started with.
pub struct ServerOptions {
    pub runtime: Runtime,
    pub listen: SocketAddr,
    pub key: PathBuf,
    pub tokens: Vec<String>,
    pub open: bool,
    pub state_dir: Option<PathBuf>,
    /// The Containment Breach API's address and settings.
    pub cb: Option<(SocketAddr, BreachConfig)>,
    /// The second STUN address for `burrow netcheck`.
    pub netcheck: Option<SocketAddr>,
    /// Which public TCP ports daemons may publish their paths on.
    pub publish: PublishConfig,
    /// The metrics endpoint.
    pub metrics: Option<metrics::Listen>,
    /// How long a peer-mode request waits for the other side (`--peer-wait`).
    pub peer_wait: Option<Duration>,
    /// Bytes per second each token may relay (`--relay-rate`); `None`: the default.
    pub relay_rate: Option<u64>,
}

/// `burrow server`.
pub fn server(options: ServerOptions) -> Result<(), String> {
    let ServerOptions {
        runtime,
        listen,
        key,
        tokens,
        open,
        state_dir,
        cb,
        netcheck,
        publish,
        metrics,
        peer_wait,
        relay_rate,
    } = options;
    let (key, state_dir) = (key.as_path(), state_dir.as_deref());
    let key = keys::read(key)?;
    let mut config = ServerConfig::default();
    if let Some(wait) = peer_wait {
        config.peer_wait = wait;
    }
    if let Some(rate) = relay_rate {
        config.relay.bytes_per_sec = rate;
        // A burst of at most a second's worth: a low rate shapes from the first packets.
        config.relay.burst = config.relay.burst.min(rate.max(64 << 10));
        tracing::info!("relaying at most {rate} bytes/s per token");
    }
    // Bound first, so that the main socket's STUN answers can name it.
    let alternate = netcheck.map(crate::netcheck::bind_alternate).transpose()?;
    if let Some((first, last)) = publish.ports {
        tracing::info!(
            "publishing daemons' paths on TCP and UDP ports {first}-{last} of {}, at most {} per token",
            listen.ip(),
            publish.max_per_token
        );
    }
    if let Some(sni) = &publish.sni {
        tracing::info!(
            "routing TLS connections to port {} of {} by their server name (*.{}), at most {} publications per token",
            sni.port,
            listen.ip(),
            sni.domain,
            publish.max_per_token
        );
    }
    config.publish = publish;
    let mut store = match state_dir {
        Some(dir) => {
            let mut store = SqliteStore::open(dir)?;
            let records = store.load()?;
            let tenants = records.tenants.len();
            config.directory = Directory::from_records(records)
                .map_err(|e| format!("{}: {e}", dir.join(crate::store::DB_FILE).display()))?;
            if tenants == 0 {
                tracing::warn!(state_dir = %dir.display(), "the store has no tenant yet: create one with `burrow server init --state-dir DIR`");
            }
            Some((store, tenants))
        }
        None => None,
    };
    let tenants = store.as_ref().map_or(0, |(_, n)| *n);
    if tokens.is_empty() && !open && tenants == 0 {
        return Err(
            "the server has no token, so anyone could register and look up names: give \
             --token-file FILE (or --token), a --state-dir with a tenant (`burrow server init`), \
             or --open to accept every token"
                .into(),
        );
    }
    let directory_only = tokens.is_empty() && !open;
    if !tokens.is_empty() {
        let limits = TokenLimits {
            max_services: 1000,
            max_registrations: 1000,
        };
        config.tokens = TokenPolicy::Only(tokens.into_iter().map(|t| (t, limits)).collect());
    }
    let interrupted = interrupts()?;
    if directory_only {
        // Only the directory's tokens: no open tenant at all.
        config.tokens = TokenPolicy::Only(BTreeMap::new());
    }
    let mut endpoint = Config::server(key, config);
    endpoint.stun_other_address = alternate.as_ref().and_then(|s| s.local_addr().ok());
    let mut node = Node::spawn(runtime, NodeConfig::new(endpoint, listen))?;
    let mut writer = None;
    if let Some((mut store, _)) = store.take() {
        let mut changes = node.directory_changes();
        writer = Some(std::thread::spawn(move || {
            while let Some(change) = changes() {
                if let Err(e) = store.apply(&change) {
                    tracing::error!(error = %e, "cannot store a directory change; it holds until the server stops");
                }
            }
        }));
    }
    hangups(|| {
        tracing::warn!(
            "SIGHUP: the server has no config file to reload; restart it to change its flags"
        )
    })?;
    println!("server public key: {}", node.public_key());
    println!("listening on udp {}", node.udp_addr());
    tracing::info!(udp = %node.udp_addr(), public_key = %node.public_key(), runtime = runtime.name(), "server running");
    if let Some(alternate) = alternate {
        let addr = alternate.local_addr().map_err(|e| e.to_string())?;
        let main = node
            .udp_socket()
            .map_err(|e| format!("a second handle on the server's socket: {e}"))?;
        crate::netcheck::spawn_alternate(alternate, main, node.udp_addr());
        println!("netcheck stun on udp {addr}");
        tracing::info!(%addr, "second STUN address for `burrow netcheck`");
    }
    if let Some((listen, config)) = cb {
        let lease = config.lease_timeout.as_secs();
        let addr = crate::breach::spawn(listen, config)?;
        println!("containment breach api on udp+tcp {addr}");
        tracing::info!(%addr, lease_timeout_secs = lease, "containment breach api running");
    }
    serve_metrics(metrics.as_ref(), &node)?;
    notify::notify(&format!(
        "READY=1\nSTATUS=listening on udp {}",
        node.udp_addr()
    ));
    if open {
        tracing::warn!(
            "open server (--open): any token is accepted; anyone who reaches this port may register names and look them up"
        );
    }
    let stopped = wait(node, &interrupted);
    if let Some(writer) = writer {
        finish_store(writer);
    }
    stopped
}

/// Lets the store take the directory changes made before the node stopped (the node's end
/// closes their channel): a master was told "created" once core had a change, so the change
/// must reach the disk before the process exits. Bounded, so a stuck disk cannot hold the
/// exit forever.
fn finish_store(writer: std::thread::JoinHandle<()>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !writer.is_finished() {
        if std::time::Instant::now() >= deadline {
            tracing::error!(
                "the directory store did not finish within 10 s; the last changes may be lost"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = writer.join();
}

/// Where a daemon's config comes from, to read it again on reload: the file and the flags
/// given at start (which still override it).
pub struct Reloader {
    pub config: PathBuf,
    pub common: DaemonArgs,
}

impl Reloader {
    /// Reads and checks the file again (as at start, flags winning), and has the node run its
    /// services. Settings that only a restart can change are logged if they changed.
    fn reload(
        &self,
        node: &Mutex<Running>,
        running: &Settings,
        hooks: &Mutex<hooks::Table>,
    ) -> Result<String, String> {
        let file = config::load(&self.config)?;
        if let Some(level) = &file.log_level {
            logging::check_level(level)?;
        }
        let source = self.config.display().to_string();
        let new = config::settings(file, self.common.clone(), &source)?;
        let restart: Vec<&str> = [
            ("server", new.server != running.server),
            ("server_key", new.server_key != running.server_key),
            ("token", new.token != running.token),
            ("allow", new.allow != running.allow),
            ("key_file", new.key_file != running.key_file),
            ("state_dir", new.state_dir != running.state_dir),
            ("udp", new.udp != running.udp),
            ("route", new.route != running.route),
            ("congestion", new.congestion != running.congestion),
            ("metrics", new.metrics != running.metrics),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
        if !restart.is_empty() {
            tracing::warn!(
                "reload: {} changed; that takes a restart (services were reloaded)",
                restart.join(", ")
            );
        }
        let hooks_changed = new.hooks != *hooks.lock().unwrap_or_else(PoisonError::into_inner);
        *hooks.lock().unwrap_or_else(PoisonError::into_inner) = new.hooks;
        if hooks_changed {
            tracing::info!("reload: hooks changed; new sessions' events run the new ones");
        }
        let services = Services {
            expose: new.expose,
            connect: new.connect,
            connect_udp: new.connect_udp,
            pins: new.peer_keys.into_iter().collect(),
            options: new.expose_options,
            routing: Some(Routing {
                peers: new.peers,
                peer_services: new.peer_services,
                connect_routes: new.connect_routes,
            }),
        };
        lock(node).reload_base(services)
    }
}

/// The running services, whoever panicked while holding them.
fn lock(running: &Mutex<Running>) -> std::sync::MutexGuard<'_, Running> {
    running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `burrow daemon`, `burrow expose` and `burrow connect`; `reloader` for a daemon with a
/// config file.
pub fn daemon(
    runtime: Runtime,
    settings: Settings,
    reloader: Option<Reloader>,
) -> Result<(), String> {
    let key = keys::read_or_create(&settings.key_file)?;
    let mut rendezvous =
        RendezvousConfig::new(settings.server_key, settings.server, settings.token.clone());
    rendezvous.route = settings.route;
    rendezvous.connect_routes = settings.connect_routes.clone();
    rendezvous.peers = settings.peers.clone();
    rendezvous.peer_services = settings.peer_services.clone();
    // Path tokens imported at run time come back after the config's.
    let imported = import::load(&settings.state_dir)?;
    rendezvous.path_tokens = Imports::all(&settings.path_tokens, &imported);
    if rendezvous.path_tokens.len() > MAX_PATH_TOKENS {
        return Err(format!(
            "{} and the config's path token files hold {} tokens together; a daemon presents              at most {MAX_PATH_TOKENS}: remove some from either",
            settings.state_dir.join(import::IMPORTED_FILE).display(),
            rendezvous.path_tokens.len()
        ));
    }
    // Pins remembered from earlier runs, then the ones given now (which win).
    rendezvous.pinned = known_services(&settings.state_dir)?;
    rendezvous.pinned.extend(settings.peer_keys.clone());
    if settings.port_mapping {
        rendezvous.port_mapping = crate::netcheck::gateway_toward(settings.server).map(|gateway| {
            tracing::debug!(%gateway, "asking the gateway for a port (PCP, else NAT-PMP, else UPnP-IGD)");
            let client = match burrow_tokio::local_ip_toward((gateway, 5351).into()) {
                Some(std::net::IpAddr::V4(ip)) => Some(ip),
                _ => None,
            };
            PortMappingConfig {
                gateway,
                client,
                internal_port: 0,
                // UPnP's mapping names our LAN address: asked only when it is known.
                upnp: client.is_some(),
            }
        });
    }
    let rendezvous_upnp = rendezvous
        .port_mapping
        .filter(|pm| pm.upnp)
        .and_then(|pm| pm.client);
    let mut config = Config::daemon(key, rendezvous);
    config.session.relay_first = settings.relay_first;
    config.stream.congestion = settings.congestion;
    config.peers = PeerPolicy::Authorized(settings.allow.clone());
    let mut spec = NodeConfig::new(config, settings.udp);
    spec.state_dir = Some(settings.state_dir.clone());
    let base = Services {
        expose: settings.expose.clone(),
        connect: settings.connect.clone(),
        connect_udp: settings.connect_udp.clone(),
        pins: settings.peer_keys.clone().into_iter().collect(),
        options: settings.expose_options.clone(),
        // The node starts with the settings' routing; a reload says the new one.
        routing: None,
    };
    // What was attached at run time comes back (the config file's entries win a clash: that
    // is refused here, not silently dropped).
    let attached = attach::load(&settings.state_dir)?;
    attached.check(&base).map_err(|e| {
        let file = settings.state_dir.join(attach::ATTACHED_FILE);
        format!("{}: {e}", file.display())
    })?;
    let all = attached.onto(&base);
    spec.expose = all.expose;
    spec.connect = all.connect;
    spec.expose_options = all.options;
    spec.connect_udp.clone_from(&settings.connect_udp);
    if spec.expose.is_empty() && spec.connect.is_empty() && spec.connect_udp.is_empty() {
        tracing::warn!("{}", crate::check::NOTHING_TO_DO);
    }
    spec.udp = settings.udp_forward.clone();
    let interrupted = interrupts()?;
    let mut node = Node::spawn(runtime, spec)?;
    let hook_table = hooks::spawn(settings.hooks.clone(), node.hook_events());
    let running = Arc::new(Mutex::new(Running::new(
        node.control(),
        settings.state_dir.clone(),
        base,
        attached,
    )));
    // What the tenant's master attaches or detaches, run as `burrow attach`/`detach` would.
    let mut pushed = node.master_attachments();
    let by_master = running.clone();
    std::thread::spawn(move || {
        while let Some((name, attach)) = pushed() {
            match lock(&by_master).master(name.clone(), attach) {
                Ok(summary) => tracing::info!("the master's attachment of {name}: {summary}"),
                Err(e) => tracing::error!("cannot run what the master attached as {name}: {e}"),
            }
        }
    });
    let reload: control::Reload = {
        let running = running.clone();
        let settings = settings.clone();
        let reloader = reloader.map(Arc::new);
        Arc::new(move || match &reloader {
            Some(r) => r.reload(&running, &settings, &hook_table),
            None => Err(
                "this daemon was started without a config file (`burrow daemon -c FILE` reloads)"
                    .into(),
            ),
        })
    };
    let attach: control::Attach = Arc::new(move |request| match request {
        AttachRequest::Attach {
            path,
            expose,
            listen,
        } => lock(&running).attach(&path, expose, listen.as_deref()),
        AttachRequest::Detach { path } => lock(&running).detach(&path),
    });
    let imports = Arc::new(Mutex::new(Imports::new(
        node.control(),
        settings.state_dir.clone(),
        settings.path_tokens.clone(),
        imported,
    )));
    let forgets = Arc::clone(&imports);
    let import: control::Import = Arc::new(move |token| {
        imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .import(token)
    });
    let forget: control::Import = Arc::new(move |token| {
        forgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .forget(token)
    });
    let handlers = control::Handlers {
        reload: reload.clone(),
        attach,
        import,
        forget,
    };
    control::serve(&settings.state_dir, node.control(), handlers)?;
    hangups(move || match reload() {
        Ok(summary) => tracing::info!("reloaded the config: {summary}"),
        Err(e) => tracing::error!("reload refused, keeping the running config: {e}"),
    })?;
    println!("daemon public key: {}", node.public_key());
    for (service, addr) in node.listeners() {
        println!("listening on {addr} for {service}");
    }
    serve_metrics(settings.metrics.as_ref(), &node)?;
    tracing::info!(udp = %node.udp_addr(), server = %settings.server, runtime = runtime.name(), "daemon running");
    let forwards_udp = !settings.connect_udp.is_empty()
        || settings
            .expose_options
            .iter()
            .any(|(_, o)| o.protocol == burrow_core::forward::Protocol::Udp);
    if forwards_udp {
        if let Ok(Some(max)) = node.control().status().map(|s| s.udp_max_payload) {
            tracing::info!(
                max_payload = max,
                "UDP forwarding: datagrams up to {max} bytes travel, larger ones are dropped and counted"
            );
        }
    }
    notify::notify(&format!(
        "READY=1\nSTATUS=daemon on udp {}",
        node.udp_addr()
    ));
    let control = node.control();
    let server = settings.server;
    std::thread::spawn(move || diagnose(control, server));
    // UPnP-IGD, asked after PCP and NAT-PMP (the node says when).
    let upnp = rendezvous_upnp.map(|ip| {
        let internal = std::net::SocketAddrV4::new(ip, node.udp_addr().port());
        crate::portmap::spawn(node.control(), internal)
    });
    let result = wait(node, &interrupted);
    if let Some(upnp) = upnp {
        upnp.stop();
    }
    let _ = std::fs::remove_file(control::socket_path(&settings.state_dir));
    result
}

/// Starts the metrics endpoint if asked for, and says where it is.
fn serve_metrics(listen: Option<&metrics::Listen>, node: &Node) -> Result<(), String> {
    if let Some(listen) = listen {
        let addr = metrics::spawn(listen, node.control())?;
        println!("metrics on http://{addr}/metrics");
        tracing::info!(%addr, "metrics endpoint running");
    }
    Ok(())
}

/// The pins in `known_services` in `state_dir`; none if the file does not exist.
fn known_services(state_dir: &Path) -> Result<BTreeMap<ServiceName, PublicKey>, String> {
    let path = state_dir.join(KNOWN_SERVICES_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_KNOWN_SERVICES_LEN as u64 + 1),
        &mut text,
    )
    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_known_services(&text).map_err(|e| {
        format!(
            "{} {e}: fix or delete that line (deleting it forgets the pinned key)",
            path.display()
        )
    })
}

/// How long a daemon that is not registered, though the server answers STUN, is given to
/// register before the key is blamed (a restarted server answers before our next handshake).
const KEY_RECHECK: Duration = Duration::from_secs(10);

/// Says why the daemon is not registered after a grace period: the server does not answer
/// at all, or it answers STUN but not our handshake (a wrong pinned key).
fn diagnose(node: Control, server: SocketAddr) {
    let mut wait = REGISTRATION_GRACE;
    loop {
        std::thread::sleep(wait);
        wait = Duration::from_secs(60);
        let Ok(status) = node.status() else {
            return;
        };
        if status.registered.is_some() || status.registration_error.is_some() {
            // Registered, or the server said why not (already logged).
            continue;
        }
        match node.stun_probe(server) {
            Ok(Some(_)) => {
                // A server that has just come back answers STUN before our next handshake
                // reaches it: look again before blaming the key.
                std::thread::sleep(KEY_RECHECK);
                let still = node
                    .status()
                    .is_ok_and(|s| s.registered.is_none() && s.registration_error.is_none());
                if still {
                    tracing::error!(
                        "the rendezvous server at {server} answers but our handshake does not \
                         complete: the server key does not match (use the key `burrow server` \
                         printed)"
                    );
                }
            }
            Ok(None) => tracing::error!(
                "cannot reach the rendezvous server at {server}: no answer over UDP \
                 (is `burrow server` running there, and is the port open?)"
            ),
            Err(_) => return,
        }
    }
}

/// Runs `on_hup` on a thread of its own for every SIGHUP, which no longer stops the process.
fn hangups(on_hup: impl Fn() + Send + 'static) -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(|e| format!("cannot wait for SIGHUP: {e}"))?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            on_hup();
        }
    });
    Ok(())
}

/// A channel that receives once per Ctrl-C (SIGINT) or SIGTERM.
pub fn interrupts() -> Result<mpsc::Receiver<()>, String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let (tx, rx) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Runs until Ctrl-C or until the node stops by itself.
fn wait(node: Node, interrupted: &mpsc::Receiver<()>) -> Result<(), String> {
    loop {
        match interrupted.recv_timeout(Duration::from_millis(500)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                tracing::info!("shutting down");
                notify::notify("STOPPING=1");
                node.shutdown();
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) if node.is_stopped() => {
                return Err("the node stopped unexpectedly".into());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}
