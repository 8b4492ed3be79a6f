//! Running the server and the daemons until Ctrl-C (or SIGTERM).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use burrow_core::Config;
use burrow_core::PublicKey;
use burrow_core::config::PeerPolicy;
use burrow_core::config::RendezvousConfig;
use burrow_core::node::{KNOWN_SERVICES_FILE, MAX_KNOWN_SERVICES_LEN, parse_known_services};
use burrow_core::rendezvous::ServiceName;
use burrow_core::rendezvous::{ServerConfig, TokenLimits, TokenPolicy};
use std::collections::BTreeMap;

use crate::config::Settings;
use crate::node::{Control, Node, NodeConfig, Runtime};
use crate::{control, keys};

/// How long a daemon waits for its registration before diagnosing why it is missing.
const REGISTRATION_GRACE: Duration = Duration::from_secs(5);

/// `burrow server`.
pub fn server(
    runtime: Runtime,
    listen: SocketAddr,
    key: &Path,
    tokens: Vec<String>,
    open: bool,
) -> Result<(), String> {
    let key = keys::read(key)?;
    if tokens.is_empty() && !open {
        return Err(
            "the server has no token, so anyone could register and look up names: give \
             --token-file FILE (or --token), or --open to accept every token"
                .into(),
        );
    }
    let mut config = ServerConfig::default();
    if !tokens.is_empty() {
        let limits = TokenLimits {
            max_services: 1000,
            max_registrations: 1000,
        };
        config.tokens = TokenPolicy::Only(tokens.into_iter().map(|t| (t, limits)).collect());
    }
    let interrupted = interrupts()?;
    let node = Node::spawn(
        runtime,
        NodeConfig::new(Config::server(key, config), listen),
    )?;
    println!("server public key: {}", node.public_key());
    println!("listening on udp {}", node.udp_addr());
    tracing::info!(udp = %node.udp_addr(), public_key = %node.public_key(), runtime = runtime.name(), "server running");
    if open {
        tracing::warn!(
            "open server (--open): any token is accepted; anyone who reaches this port may register names and look them up"
        );
    }
    wait(node, &interrupted)
}

/// `burrow daemon`, `burrow expose` and `burrow connect`.
pub fn daemon(runtime: Runtime, settings: Settings) -> Result<(), String> {
    let key = keys::read_or_create(&settings.key_file)?;
    let mut rendezvous =
        RendezvousConfig::new(settings.server_key, settings.server, settings.token.clone());
    rendezvous.route = settings.route;
    // Pins remembered from earlier runs, then the ones given now (which win).
    rendezvous.pinned = known_services(&settings.state_dir)?;
    rendezvous.pinned.extend(settings.peer_keys);
    let mut config = Config::daemon(key, rendezvous);
    config.peers = PeerPolicy::Authorized(settings.allow);
    let mut spec = NodeConfig::new(config, settings.udp);
    spec.state_dir = Some(settings.state_dir.clone());
    spec.expose = settings.expose;
    spec.connect = settings.connect;
    let interrupted = interrupts()?;
    let node = Node::spawn(runtime, spec)?;
    control::serve(&settings.state_dir, node.control())?;
    println!("daemon public key: {}", node.public_key());
    for (service, addr) in node.listeners() {
        println!("listening on {addr} for {service}");
    }
    tracing::info!(udp = %node.udp_addr(), server = %settings.server, runtime = runtime.name(), "daemon running");
    let control = node.control();
    let server = settings.server;
    std::thread::spawn(move || diagnose(control, server));
    let result = wait(node, &interrupted);
    let _ = std::fs::remove_file(control::socket_path(&settings.state_dir));
    result
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
            Ok(Some(_)) => tracing::error!(
                "the rendezvous server at {server} answers but our handshake does not complete: \
                 the server key does not match (use the key `burrow server` printed)"
            ),
            Ok(None) => tracing::error!(
                "cannot reach the rendezvous server at {server}: no answer over UDP \
                 (is `burrow server` running there, and is the port open?)"
            ),
            Err(_) => return,
        }
    }
}

/// A channel that receives once per Ctrl-C or SIGTERM.
fn interrupts() -> Result<mpsc::Receiver<()>, String> {
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    Ok(rx)
}

/// Runs until Ctrl-C or until the node stops by itself.
fn wait(node: Node, interrupted: &mpsc::Receiver<()>) -> Result<(), String> {
    loop {
        match interrupted.recv_timeout(Duration::from_millis(500)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                tracing::info!("shutting down");
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
