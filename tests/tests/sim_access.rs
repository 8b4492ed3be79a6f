//! The server's authority in the simulator, with real endpoints behind NATs: a daemon
//! connects to a declared path with its client token (direct through cone NATs, relayed
//! through symmetric ones); when the tenant's master redeems that token, the destination drops
//! the session at once, the relay stops forwarding for the client, and the client's
//! registration is refused from then on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::ServerEvent;
use burrow_core::rendezvous::directory::{
    AdminCommand, Directory, PathRecord, Records, TenantRecord, TokenHash, TokenRole,
};
use burrow_core::rendezvous::{ServerConfig, TokenPolicy};
use burrow_core::{Config, Event, Path, PeerId, PublicKey};
use burrow_sim::endpoint::secret_key;
use burrow_sim::link::LinkConfig;
use burrow_sim::nat::NatConfig;
use burrow_sim::scenario::{NodeId, Sim};
use burrow_sim::topology::{Network, Uplink};

const PORT: u16 = 40000;

fn service() -> burrow_core::rendezvous::ServiceName {
    "/home/ssh".parse().expect("valid name")
}

/// Tenant `acme` (master `M`) with `/home/ssh` (server token `S`, client token `C`), and
/// tenant `umbrella` (master `M2`) with `/home/web` (server token `S2`, client token `C2`).
fn directory() -> Directory {
    let path = |tenant: &str, name: &str, server: &str, client: &str| PathRecord {
        tenant: tenant.parse().expect("tenant"),
        name: name.parse().expect("valid name"),
        server: TokenHash::of(server),
        client: TokenHash::of(client),
        fixed: false,
        clients: BTreeSet::new(),
        max_connections: None,
    };
    let tenant = |name: &str, master: &str| TenantRecord {
        name: name.parse().expect("tenant"),
        master: TokenHash::of(master),
        limits: Default::default(),
    };
    Directory::from_records(Records {
        tenants: vec![tenant("acme", "M"), tenant("umbrella", "M2")],
        paths: vec![
            path("acme", "/home/ssh", "S", "C"),
            path("umbrella", "/home/web", "S2", "C2"),
        ],
        attachments: Vec::new(),
        daemons: Vec::new(),
    })
    .expect("directory")
}

struct World {
    sim: Sim,
    a: NodeId,
    b: NodeId,
    master: NodeId,
    server: NodeId,
    /// The daemons `world_with` added, in the order asked.
    extra: Vec<NodeId>,
}

/// The server; A exposing `/home/ssh` with `S`, B connecting with `C`, each behind `nat`; the
/// master M on a public host.
fn world(seed: u64, nat: &NatConfig) -> World {
    world_with(seed, nat, &[])
}

/// [`world`], and a daemon behind `nat` for each (name, token) of `extra`.
fn world_with(seed: u64, nat: &NatConfig, extra: &[(&str, &str)]) -> World {
    let mut net = Network::new();
    let server_host = net.add_public_host("server", [198, 51, 100, 1]);
    let master_host = net.add_public_host("master", [198, 51, 100, 9]);
    let mut site = |name: &str, ext: [u8; 4], lan_ip: [u8; 4]| {
        let nat_id = net.add_nat(&format!("{name}-nat"), None, ext, nat.clone());
        net.set_nat_uplink(
            nat_id,
            Uplink::new(4, LinkConfig::new(Duration::from_millis(15))),
        );
        let lan = net.add_site(&format!("{name}-lan"), Some(nat_id));
        net.add_host(lan, name, lan_ip)
    };
    let a_host = site("a", [203, 0, 113, 10], [192, 168, 1, 2]);
    let b_host = site("b", [198, 18, 0, 10], [10, 0, 0, 2]);
    let extra_hosts: Vec<_> = (0u8..)
        .zip(extra)
        .map(|(i, (name, _))| site(name, [198, 18, 1, 10 + i], [10, 1, i, 2]))
        .collect();
    let mut sim = Sim::new(net, seed);
    let server_secret = secret_key(seed, "server");
    // As `burrow server --state-dir` without --token or --open: only the directory's tokens.
    let config = ServerConfig {
        directory: directory(),
        tokens: TokenPolicy::Only(BTreeMap::new()),
        ..ServerConfig::default()
    };
    let server = sim.add_endpoint(
        server_host,
        7000,
        "server",
        Config::server(server_secret.clone(), config),
    );
    let server_addr = sim.node_addr(server);
    let daemon = |sim: &mut Sim, name: &str, host, token: &str| {
        let mut rendezvous = RendezvousConfig::new(server_secret.public_key(), server_addr, token);
        rendezvous.host_candidates = vec![sim.network().host_addr(host, PORT)];
        let config = Config::daemon(secret_key(seed, name), rendezvous);
        sim.add_endpoint(host, PORT, name, config)
    };
    let a = daemon(&mut sim, "a", a_host, "S");
    let b = daemon(&mut sim, "b", b_host, "C");
    let master = daemon(&mut sim, "master", master_host, "M");
    let extra = extra
        .iter()
        .zip(extra_hosts)
        .map(|((name, token), host)| daemon(&mut sim, name, host, token))
        .collect();
    World {
        sim,
        a,
        b,
        master,
        server,
        extra,
    }
}

fn events(w: &World, node: NodeId) -> Vec<Event> {
    w.sim
        .endpoint(node)
        .events()
        .iter()
        .map(|l| l.event.clone())
        .collect()
}

/// Runs the scenario; returns the path B's session took and how long after the redemption
/// A dropped B.
fn redeem_while_connected(seed: u64, nat: &NatConfig) -> (Option<Path>, Duration) {
    let mut w = world(seed, nat);
    let (a, b, master) = (w.a, w.b, w.master);
    w.sim
        .endpoint_command(a, |ep, now| ep.expose(now, service(), "127.0.0.1:22"))
        .expect("expose");
    w.sim.run_for(Duration::from_secs(1)).expect("sim");
    w.sim
        .endpoint_command(b, |ep, now| ep.connect_service(now, service()))
        .expect("connect");
    let mut peer: Option<PeerId> = None;
    w.sim
        .run_until(w.sim.now() + Duration::from_secs(10), |s| {
            peer = s.endpoint(b).events().iter().find_map(|l| match l.event {
                Event::ServiceReady { peer, .. } => Some(peer),
                _ => None,
            });
            peer.is_some()
        })
        .expect("sim");
    let peer = peer.expect("B reached the service");
    let path = w.sim.endpoint(b).endpoint().peer_path(peer);
    let b_key = w.sim.endpoint(b).endpoint().public_key();

    let redeem = AdminCommand::Redeem {
        name: service(),
        role: TokenRole::Client,
    };
    let request = w
        .sim
        .endpoint_command(master, |ep, now| ep.admin(now, "M".into(), redeem))
        .expect("admin");
    let redeemed_at = w.sim.now();
    let mut dropped_at = None;
    w.sim
        .run_until(w.sim.now() + Duration::from_secs(5), |s| {
            let revoked = s
                .endpoint(a)
                .events()
                .iter()
                .any(|l| matches!(l.event, Event::AccessRevoked { key } if key == b_key));
            if revoked && dropped_at.is_none() {
                dropped_at = Some(s.now());
            }
            revoked
        })
        .expect("sim");
    let dropped_at = dropped_at.expect("A never dropped B");
    // The master got its answer; A's session with B is gone and B's too.
    assert!(
        events(&w, master)
            .iter()
            .any(|e| matches!(e, Event::AdminAnswered { request: r, .. } if *r == request))
    );
    assert!(
        events(&w, a)
            .iter()
            .any(|e| matches!(e, Event::SessionClosed { key, .. } if *key == b_key))
    );
    // A minute later B is still refused, and never reached A again.
    let connects_before = count_connected(&w, a, b_key);
    w.sim.run_for(Duration::from_secs(60)).expect("sim");
    let b_events = events(&w, b);
    assert!(
        b_events.iter().any(
            |e| matches!(e, Event::RegistrationFailed { reason } if reason.contains("BadToken"))
        ),
        "{b_events:#?}"
    );
    assert_eq!(
        count_connected(&w, a, b_key),
        connects_before,
        "B reached A again"
    );
    (path, dropped_at - redeemed_at)
}

fn count_connected(w: &World, node: NodeId, key: burrow_core::PublicKey) -> usize {
    events(w, node)
        .iter()
        .filter(|e| matches!(e, Event::Connected { key: k, .. } if *k == key))
        .count()
}

#[test]
fn a_redeemed_client_token_drops_a_direct_session_at_once() {
    for seed in 1..=3 {
        let (path, after) = redeem_while_connected(seed, &NatConfig::port_restricted_cone());
        println!("seed {seed}: path {path:?}, dropped {after:?} after the redemption");
        assert!(matches!(path, Some(Path::Direct(_))), "{path:?}");
        assert!(after < Duration::from_secs(1), "{after:?}");
    }
}

#[test]
fn a_redeemed_client_token_drops_a_relayed_session_at_once() {
    for seed in 1..=3 {
        let (path, after) = redeem_while_connected(seed, &NatConfig::symmetric());
        println!("seed {seed}: path {path:?}, dropped {after:?} after the redemption");
        assert!(matches!(path, Some(Path::Relay(_))), "{path:?}");
        assert!(after < Duration::from_secs(1), "{after:?}");
    }
}

/// The server's relay refusals of packets from `from`, as its log shows them: (destination,
/// reason, count).
fn relay_refusals(w: &World, server: NodeId, from: PublicKey) -> Vec<(PublicKey, String, u64)> {
    events(w, server)
        .into_iter()
        .filter_map(|e| match e {
            Event::Rendezvous(ServerEvent::RelayRefused {
                from: f,
                to,
                reason,
                refused,
            }) if f == from => Some((to, reason.to_string(), refused)),
            _ => None,
        })
        .collect()
}

/// Whether `node` ever had a session with `key`, or `key` ever got a stream into it.
fn reached(w: &World, node: NodeId, key: PublicKey) -> bool {
    let peer = w.sim.endpoint(node).endpoint().peer_of(&key);
    events(w, node).iter().any(|e| match e {
        Event::Connected { key: k, .. } => *k == key,
        Event::IncomingStream { peer: p, .. } | Event::StreamUnauthorized { peer: p, .. } => {
            Some(*p) == peer
        }
        _ => false,
    })
}

/// The relay refuses what the server did not introduce, while an introduced pair relays in
/// the same run. Every NAT is symmetric, so nothing goes direct: B, which looked
/// `/home/ssh` up, reaches A through the relay. `sender` (a modified daemon, through
/// `burrow_core::hostile`) sends a Noise handshake addressed to A, and a stream naming
/// `/home/ssh`, wrapped in its own session with the server: the server counts and logs the
/// refusal, and nothing reaches A. Returns the sender's key and the server's refusals of it.
fn relay_without_introduction(
    seed: u64,
    token: &str,
    look_up_first: bool,
) -> (World, PublicKey, Vec<(PublicKey, String, u64)>) {
    let mut w = world_with(seed, &NatConfig::symmetric(), &[("x", token)]);
    let (a, b, x) = (w.a, w.b, w.extra[0]);
    let server = w.server;
    w.sim
        .endpoint_command(a, |ep, now| ep.expose(now, service(), "127.0.0.1:22"))
        .expect("expose");
    w.sim.run_for(Duration::from_secs(1)).expect("sim");
    w.sim
        .endpoint_command(b, |ep, now| ep.connect_service(now, service()))
        .expect("connect");
    let a_key = w.sim.endpoint(a).endpoint().public_key();
    let x_key = w.sim.endpoint(x).endpoint().public_key();
    if look_up_first {
        w.sim
            .endpoint_command(x, |ep, now| ep.connect_service(now, service()))
            .expect("connect");
        w.sim.run_for(Duration::from_secs(2)).expect("sim");
    }
    let peer = w
        .sim
        .endpoint_command(x, |ep, now| {
            let peer = burrow_core::hostile::connect_through_relay(ep, now, a_key)?;
            ep.open_stream(now, peer, &service()).ok()?;
            Some(peer)
        })
        .expect("the hook opens a session and a stream");
    w.sim.run_for(Duration::from_secs(20)).expect("sim");

    // The introduced pair relays.
    let b_peer = events(&w, b)
        .iter()
        .find_map(|e| match e {
            Event::ServiceReady { peer, .. } => Some(*peer),
            _ => None,
        })
        .expect("B reached the service");
    let b_path = w.sim.endpoint(b).endpoint().peer_path(b_peer);
    assert!(matches!(b_path, Some(Path::Relay(_))), "{b_path:?}");
    // The hostile daemon's packets left for the server, and none came back from A.
    let x_stats = w.sim.endpoint(x).endpoint().stats();
    assert!(x_stats.relayed_out > 0, "the hook sent nothing");
    assert!(!w.sim.endpoint(x).is_connected(peer));
    assert!(!reached(&w, a, x_key), "{:#?}", events(&w, a));
    let refusals = relay_refusals(&w, server, x_key);
    assert!(w.sim.endpoint(server).endpoint().stats().relay_refused > 0);
    for (to, _, _) in &refusals {
        assert_eq!(*to, a_key);
    }
    (w, x_key, refusals)
}

/// Must-show 3: two registered daemons that were never introduced cannot relay to each
/// other. X holds a valid client token of A's tenant (it could look `/home/ssh` up), but did
/// not: the relay refuses it.
#[test]
fn a_registered_daemon_never_introduced_cannot_relay_to_another() {
    for seed in 1..=3 {
        let (w, x_key, refusals) = relay_without_introduction(seed, "C", false);
        let x = w.extra[0];
        assert!(
            events(&w, x)
                .iter()
                .any(|e| matches!(e, Event::Registered { .. })),
            "X registered"
        );
        let first = refusals.first().expect("the server logged the refusal");
        assert!(first.1.contains("never introduced"), "{refusals:?}");
        let total: u64 = refusals.iter().map(|r| r.2).sum();
        println!("seed {seed}: X {x_key}: relay refusals logged {refusals:?} ({total} packets)");
    }
}

/// Must-show 1, relay half: a key that never registered (its token is refused) sends its
/// handshake and a stream naming an exposed service through the relay: refused, nothing
/// reaches the target.
#[test]
fn a_key_that_never_registered_cannot_relay_to_a_destination() {
    for seed in 1..=3 {
        let (w, x_key, refusals) = relay_without_introduction(seed, "not-a-token", false);
        let x = w.extra[0];
        assert!(
            !events(&w, x)
                .iter()
                .any(|e| matches!(e, Event::Registered { .. })),
            "the stranger registered"
        );
        let first = refusals.first().expect("the server logged the refusal");
        assert!(
            first.1.contains("sender holds no registration"),
            "{refusals:?}"
        );
        println!("seed {seed}: stranger {x_key}: relay refusals logged {refusals:?}");
    }
}

/// Must-show 2, relayed: a daemon of another tenant (`umbrella`, client token `C2`) looks
/// `/home/ssh` up and is told "unknown service", then sends its handshake and a stream
/// naming it through the relay anyway: refused, nothing reaches A.
#[test]
fn a_daemon_of_another_tenant_neither_finds_nor_relays_to_a_path() {
    for seed in 1..=3 {
        let (w, x_key, refusals) = relay_without_introduction(seed, "C2", true);
        let x = w.extra[0];
        let failed = events(&w, x).into_iter().find_map(|e| match e {
            Event::ServiceFailed { reason, .. } => Some(reason),
            _ => None,
        });
        let failed = failed.expect("the lookup failed");
        assert!(failed.contains("UnknownService"), "{failed}");
        let first = refusals.first().expect("the server logged the refusal");
        assert!(first.1.contains("never introduced"), "{refusals:?}");
        println!(
            "seed {seed}: other tenant {x_key}: lookup {failed:?}; relay refusals {refusals:?}"
        );
    }
}
