//! Running the server and the daemons until Ctrl-C.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use burrow_core::Config;
use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::{ServerConfig, TokenLimits, TokenPolicy};
use burrow_tokio::{Node, NodeConfig, NodeControl, NodeHandle};

use crate::config::Settings;
use crate::{control, keys};

/// How long a daemon waits for its registration before diagnosing why it is missing.
const REGISTRATION_GRACE: Duration = Duration::from_secs(5);

/// `burrow server`.
pub async fn server(listen: SocketAddr, key: &Path, tokens: Vec<String>) -> Result<(), String> {
    let key = keys::read(key)?;
    let mut config = ServerConfig::default();
    if !tokens.is_empty() {
        let limits = TokenLimits {
            max_services: 1000,
            max_registrations: 1000,
        };
        config.tokens = TokenPolicy::Only(tokens.into_iter().map(|t| (t, limits)).collect());
    }
    let node = Node::spawn(NodeConfig::new(Config::server(key, config), listen))
        .map_err(|e| e.to_string())?;
    println!("server public key: {}", node.public_key());
    println!("listening on udp {}", node.udp_addr());
    tracing::info!(udp = %node.udp_addr(), public_key = %node.public_key(), "server running");
    wait(node).await
}

/// `burrow daemon`, `burrow expose` and `burrow connect`.
pub async fn daemon(settings: Settings) -> Result<(), String> {
    let key = keys::read_or_create(&settings.key_file)?;
    let rendezvous = RendezvousConfig {
        server_key: settings.server_key,
        server_addr: settings.server,
        token: settings.token.clone(),
        host_candidates: Vec::new(),
        route: Default::default(),
    };
    let mut config = NodeConfig::new(Config::daemon(key, rendezvous), settings.udp);
    config.expose = settings.expose;
    config.connect = settings.connect;
    let node = Node::spawn(config).map_err(|e| e.to_string())?;
    control::serve(&settings.state_dir, node.control()).await?;
    println!("daemon public key: {}", node.public_key());
    for (service, addr) in node.listeners() {
        println!("listening on {addr} for {service}");
    }
    tracing::info!(udp = %node.udp_addr(), server = %settings.server, "daemon running");
    tokio::spawn(diagnose(node.control(), settings.server));
    let result = wait(node).await;
    let _ = std::fs::remove_file(control::socket_path(&settings.state_dir));
    result
}

/// Says why the daemon is not registered after a grace period: the server does not answer
/// at all, or it answers STUN but not our handshake (a wrong pinned key).
async fn diagnose(node: NodeControl, server: SocketAddr) {
    let mut wait = REGISTRATION_GRACE;
    loop {
        tokio::time::sleep(wait).await;
        wait = Duration::from_secs(60);
        let Ok(status) = node.status().await else {
            return;
        };
        if status.registered.is_some() || status.registration_error.is_some() {
            // Registered, or the server said why not (already logged).
            continue;
        }
        probe(&node, server).await;
    }
}

async fn probe(node: &NodeControl, server: SocketAddr) {
    match node.stun_probe(server).await {
        Ok(Some(_)) => tracing::error!(
            "the rendezvous server at {server} answers but our handshake does not complete: \
             the server key does not match (use the key `burrow server` printed)"
        ),
        Ok(None) => tracing::error!(
            "cannot reach the rendezvous server at {server}: no answer over UDP \
             (is `burrow server` running there, and is the port open?)"
        ),
        Err(_) => {}
    }
}

/// Runs until Ctrl-C or until the node stops by itself.
async fn wait(mut node: NodeHandle) -> Result<(), String> {
    tokio::select! {
        signal = tokio::signal::ctrl_c() => {
            signal.map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
            tracing::info!("shutting down");
            node.shutdown().await;
            Ok(())
        }
        () = node.stopped() => Err("the node stopped unexpectedly".into()),
    }
}
