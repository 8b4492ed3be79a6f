//! The set-up the publishing tests share: a server (host 0, key 9) that publishes, and a
//! daemon (host 1, key 1, token `t`) exposing services, each with how it is forwarded.

use super::*;
use crate::forward::ExposeOptions;
use crate::rendezvous::PublishConfig;

/// The server's UDP address.
pub(super) const SERVER: &str = "10.0.0.9:7000";

/// The server publishing as `publish` says, and a daemon exposing `services` (path, target,
/// options), both started at `now` on one test network.
pub(super) fn server_and_daemon_with(
    now: Instant,
    publish: PublishConfig,
    services: &[(&str, &str, ExposeOptions)],
) -> Net {
    let addrs = [addr(SERVER), addr("10.0.0.1:1000")];
    let server_config = ServerConfig {
        publish,
        ..ServerConfig::default()
    };
    let server = start(Config::server(key(9), server_config), addrs[0], 9, now);
    let daemon = Config::daemon(
        key(1),
        RendezvousConfig::new(key(9).public_key(), addrs[0], "t"),
    );
    let mut a = NodeConfig::new(daemon, addrs[1]);
    for (path, target, options) in services {
        let name = ServiceName::parse(path).unwrap();
        a.expose.push((name.clone(), (*target).into()));
        a.expose_options.push((name, *options));
    }
    let clock = (
        now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let a = a
        .start::<()>(addrs[1], Vec::new(), [1; 32], clock, |_| None)
        .unwrap();
    Net::new(now, vec![(addrs[0], server), (addrs[1], a.node)])
}

/// Runs the network for `d`.
pub(super) fn run(net: &mut Net, d: Duration) {
    let until = net.now + d;
    net.run_until(until);
}
