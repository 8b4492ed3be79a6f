//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use burrow_core::forward::{Protocol, ProxyVersion, PublishPort};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::node::Runtime;

/// burrow: reach TCP services on machines behind NAT, through an encrypted tunnel over UDP.
///
/// A public rendezvous server (`burrow server`) introduces daemons; one daemon exposes a local
/// service under a name (`/home/ssh`), another asks for that name and gets a local port that
/// reaches it over a direct, hole-punched UDP path.
#[derive(Debug, Parser)]
#[command(name = "burrow", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level: error, warn, info, debug or trace (or a tracing filter such as
    /// `burrow_tokio=debug`). Overrides `log_level` in the config file.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format on stderr. Overrides `log_format` in the config file.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// The runtime nodes run on: tokio (the default), smol or mio, of those this binary was
    /// built with. Overrides `runtime` in the config file.
    #[arg(long, global = true, value_enum, value_name = "RUNTIME")]
    pub runtime: Option<Runtime>,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a static key (a daemon's or a server's identity) and print its public key.
    Keygen {
        /// Write the secret key to this file (mode 0600) instead of printing it.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print a new random access token (48 hex characters), for `burrow server --token` and
    /// the daemons' `--token`.
    Token,
    /// Print the public key of a key file (what daemons pin with --server-key).
    Pubkey {
        /// The secret key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Run a rendezvous server on a public UDP address (or `burrow server init`: create its
    /// directory and a tenant's master token).
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Server {
        #[command(subcommand)]
        init: Option<ServerCommand>,
        /// Directory of the server's store (its tenants, masters and declared paths, in
        /// SQLite), as `burrow server init` created it. Without it, only --token tenants.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:7000", value_name = "ADDR")]
        listen: SocketAddr,
        /// The server's secret key file (create it with `burrow keygen --out FILE`).
        #[arg(long, value_name = "FILE", required = true)]
        key: Option<PathBuf>,
        /// A token daemons must present; repeat for several. Each token is one tenant: its
        /// daemons publish and look up names in a namespace of their own. On a shared machine
        /// prefer --token-file (command lines are visible to other users).
        #[arg(long = "token", value_name = "TOKEN")]
        tokens: Vec<String>,
        /// A file of tokens, one per line (`#` comments allowed), readable by its owner
        /// only. Adds to --token.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Accept any token: anyone who can reach the server may register and look up names.
        /// Without a token and without --open the server refuses to start.
        #[arg(long, conflicts_with_all = ["tokens", "token_file"])]
        open: bool,
        /// Also serve the Containment Breach API on this address, UDP and TCP on the same port
        /// (its `-port`): programs written for Containment Breach meet through this server.
        #[arg(long, value_name = "ADDR")]
        cb_listen: Option<SocketAddr>,
        /// Seconds a Containment Breach lease lasts after its latest UDP request (its
        /// `-lease_timeout`; default 90).
        #[arg(long, value_name = "SECS", requires = "cb_listen", value_parser = clap::value_parser!(u64).range(1..=86400))]
        cb_lease_timeout: Option<u64>,
        /// Seconds a daemon that asked to meet another in peer mode (`[[peer]]`) waits for
        /// the other to ask too, before it is told the other never did (default 90).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        peer_wait: Option<u64>,
        /// A second UDP address answering STUN, which `burrow netcheck` needs to tell how a
        /// client's NAT maps and filters: `auto` (the next port after --listen's), `off`, or
        /// IP:PORT (a second IP address of this machine tells the most).
        #[arg(long, default_value = "auto", value_name = "ADDR|auto|off")]
        netcheck_udp: String,
        /// Let daemons publish their paths on public ports of this server, from this range
        /// (FIRST-LAST, such as 20000-20100): a connection to such a TCP port (a datagram to
        /// such a UDP port, for a UDP service) reaches the daemon through its session with
        /// the server. A port holds one path, TCP or UDP. Off without it.
        #[arg(long, value_name = "FIRST-LAST", value_parser = port_range)]
        publish_ports: Option<(u16, u16)>,
        /// Most ports (and --publish-sni host names) one token (tenant) may have published
        /// at once.
        #[arg(long, value_name = "N", default_value_t = burrow_core::rendezvous::DEFAULT_PUBLISH_LIMIT)]
        publish_limit: usize,
        /// Let many TLS services share this one public TCP port, routed by the name each
        /// client asks for (TLS SNI) without the server terminating TLS: a daemon's
        /// `publish = "sni"` path /any/NAME answers as NAME.DOMAIN (see --sni-domain). A
        /// connection naming no published path is closed (logged as `sni: refused`).
        #[arg(long, value_name = "PORT", requires = "sni_domain")]
        publish_sni: Option<u16>,
        /// The domain the --publish-sni names end in (such as example.com, whose wildcard
        /// *.example.com points at this server).
        #[arg(long, value_name = "DOMAIN", requires = "publish_sni", value_parser = sni_domain)]
        sni_domain: Option<String>,
        /// Serve Prometheus metrics at http://ADDR/metrics (off by default; a loopback
        /// address unless --metrics-public).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Allow --metrics on a non-loopback address (the metrics name daemons' keys and
        /// traffic).
        #[arg(long, requires = "metrics")]
        metrics_public: bool,
        /// Bytes per second each token's daemons may relay through this server together,
        /// such as 2MiB, 512KiB or 100000 (default 16MiB). Packets over it wait in a short
        /// queue; those that find it full are dropped, counted and logged (`relay limit:`).
        /// A store tenant's own `--relay-rate` (`burrow server limits`) overrides it.
        #[arg(long, value_name = "RATE", value_parser = crate::admin::parse_rate)]
        relay_rate: Option<u64>,
    },
    /// Run a daemon from a TOML config file; flags override the file.
    ///
    /// Example config:
    ///
    ///   server = "203.0.113.7:7000"
    ///   server_key = "BASE64 key printed by `burrow server`"
    ///   token_file = "/etc/burrow/token"   # or token = "...", or $BURROW_TOKEN
    ///   state_dir = "/var/lib/burrow"   # holds the key and the control socket
    ///   route = "any"                   # any, relay-first, direct or relay
    ///   congestion = "bbr"              # bbr or newreno
    ///   port_mapping = true             # ask the router for a port (NAT-PMP/PCP)
    ///   runtime = "tokio"               # tokio, smol or mio
    ///   allow = ["BASE64 key"]          # reach every exposed service without the server
    ///
    ///   udp_flow_timeout = 60           # seconds a UDP flow lives idle
    ///   udp_max_flows = 1024            # UDP flows per service
    ///
    ///   [[expose]]
    ///   name = "/home/ssh"
    ///   target = "127.0.0.1:22"
    ///   proxy_protocol = "v2"           # optional: v1 or v2, the client's address first
    ///   publish = 20001                 # optional: a public port of the server, "any",
    ///                                   # or "sni" (NAME.DOMAIN on its --publish-sni port)
    ///
    ///   [[expose]]
    ///   name = "/home/dns"
    ///   target = "127.0.0.1:53"         # HOST:PORT for UDP
    ///   protocol = "udp"                # tcp (default) or udp
    ///   publish = 20053                 # optional: a public UDP port of the server, or "any"
    ///
    ///   [[connect]]
    ///   name = "/office/db"
    ///   listen = "127.0.0.1:5432"
    ///   peer_key = "BASE64 key"         # optional; else pinned at first use
    ///   protocol = "tcp"                # tcp (default) or udp
    ///   route = "relay"                 # optional per service: any, direct or relay
    ///
    ///   [[peer]]                        # peer mode: met once it names us too
    ///   key = "BASE64 key of the other daemon"
    ///   allow = ["/home/ssh"]           # our services it may reach (default: none)
    ///   connect = [{ name = "/its/web", listen = "127.0.0.1:8080" }]
    #[command(verbatim_doc_comment)]
    Daemon {
        /// The TOML config file.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        common: DaemonArgs,
    },
    /// Expose one local service under NAME (a daemon with a single [[expose]]).
    Expose {
        /// The service name, a path such as `/home/ssh`.
        name: String,
        /// Where connections go locally: a TCP address such as 127.0.0.1:22, or a unix socket
        /// as unix:/run/app.sock; with `--protocol udp`, a UDP HOST:PORT such as 127.0.0.1:53.
        target: String,
        /// Forward TCP connections or UDP datagrams (`--udp` is the daemon's own UDP address).
        #[arg(long, value_name = "tcp|udp", default_value = "tcp")]
        protocol: Protocol,
        /// Send each connection's client address first, with the PROXY protocol (v1 or v2).
        #[arg(long, value_name = "v1|v2")]
        proxy_protocol: Option<ProxyVersion>,
        /// Ask the rendezvous server to publish the service on this public port of its own,
        /// TCP or UDP as the service (`any`: one it picks from its --publish-ports range;
        /// `sni`: a TLS service on its --publish-sni port, as NAME.DOMAIN for the path's last
        /// segment NAME). Anyone who reaches that port reaches the service.
        #[arg(long, value_name = "PORT|any|sni")]
        publish: Option<PublishPort>,
        #[command(flatten)]
        common: DaemonArgs,
    },
    /// Reach the service NAME on a local port (a daemon with a single [[connect]]).
    Connect {
        /// The service name, as exposed.
        name: String,
        /// Local TCP (or UDP, with `--protocol udp`) address to listen on; port 0 picks one
        /// and prints it.
        listen: SocketAddr,
        /// The key the service's daemon must have (its `daemon public key`). Without it, the
        /// first key met is remembered in `known_services` in the state directory and any
        /// other is refused later, as ssh does with known_hosts.
        #[arg(long, value_name = "KEY")]
        peer_key: Option<String>,
        /// Forward TCP connections or UDP datagrams (`--udp` is the daemon's own UDP address).
        #[arg(long, value_name = "tcp|udp", default_value = "tcp")]
        protocol: Protocol,
        #[command(flatten)]
        common: DaemonArgs,
    },
    /// Show a running daemon's sessions, services and connections.
    Status {
        /// The daemon's state directory, where its control socket is (default as for
        /// `burrow daemon`).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Attach a service to a running daemon, without a restart: expose PATH toward TARGET
    /// (`--expose`), or listen for it on a local address (`--listen`). Kept in
    /// `attached.toml` in the state directory: it comes back after a restart.
    Attach {
        /// The service name, such as /home/ssh.
        path: String,
        /// Where its connections go locally (HOST:PORT or unix:PATH).
        #[arg(
            long,
            value_name = "TARGET",
            conflicts_with = "listen",
            required_unless_present = "listen"
        )]
        expose: Option<String>,
        /// The local address to listen on for it (IP:PORT).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// The daemon's state directory (default as for `burrow daemon`).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Detach a service attached with `burrow attach`: its listener closes, its connections
    /// reset; the others carry on.
    Detach {
        /// The service name.
        path: String,
        /// The daemon's state directory (default as for `burrow daemon`).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Add a path token to a running daemon's registration, without a restart: the daemon
    /// registers again with it and prints which paths it may now expose or connect to (or
    /// why the server refused the token; then nothing changes). Kept in `path-tokens` in the
    /// state directory: it comes back after a restart. With --forget, removes an imported
    /// token instead (one its master redeemed, say): the daemon registers again without it
    /// and drops it from `path-tokens`. `--forget PATH` removes every imported token for
    /// PATH; a token's first 6 characters (as the log names a refused one) also do.
    Import {
        /// The token (visible to other users on a command line: prefer --token-file).
        #[arg(value_name = "TOKEN", required_unless_present = "token_file")]
        token: Option<String>,
        /// Remove the imported TOKEN (or the tokens for TOKEN when it is a PATH such as
        /// /home/ssh) from the running daemon and from `path-tokens`.
        #[arg(long)]
        forget: bool,
        /// A file holding the token (readable by its owner only).
        #[arg(long, value_name = "FILE", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// The daemon's state directory (default as for `burrow daemon`).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Tell what the NAT in front of this machine does, against a rendezvous server: its
    /// mapping (does the public address change per destination?), its filtering (who may
    /// send to us?), hairpinning, IPv4 and IPv6, which port-mapping protocols the router
    /// answers, and what that means for direct paths. Takes a few seconds.
    Netcheck {
        /// The rendezvous server (HOST:PORT). Default: `server` of the daemon's config file.
        #[arg(long, value_name = "ADDR", required_unless_present = "config")]
        server: Option<String>,
        /// A daemon config file to take the server from.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Do not ask the default gateway for NAT-PMP and PCP, nor search the LAN for a UPnP
        /// gateway (a multicast datagram).
        #[arg(long)]
        no_port_mapping: bool,
    },
    /// Ping a service this daemon reaches (once a connection has used it) or a peer by its
    /// key, through the running daemon: one line per ping with the path that answered
    /// (direct or relay) and the round trip, so a move from the relay to a direct path shows
    /// as it happens.
    Ping {
        /// A service name (/home/ssh) or a peer's public key.
        target: String,
        /// How many pings (1 to 1000).
        #[arg(long, short = 'c', default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
        /// Seconds between pings (0.2 to 60).
        #[arg(long, short = 'i', default_value_t = 1.0)]
        interval: f64,
        /// The daemon's state directory (default as for `burrow daemon`).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// A tenant master's commands to a server: declare paths and their tokens, list them,
    /// rotate tokens. The master token comes from --token-file, $BURROW_TOKEN or --token.
    Admin {
        /// The rendezvous server's UDP address (HOST:PORT).
        #[arg(long, value_name = "ADDR")]
        server: String,
        /// The server's public key, as `burrow server` printed it.
        #[arg(long, value_name = "KEY")]
        server_key: String,
        /// The master token (visible to other users on a command line: prefer --token-file).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// A file holding the master token (readable by its owner only).
        #[arg(long, value_name = "FILE", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Start a server, two daemons and an echo service on loopback, send a line through the
    /// tunnel and check that it comes back.
    Demo {
        /// Keep the demo running after the check, and print how to try it by hand, until
        /// Ctrl-C.
        #[arg(long)]
        hold: bool,
    },
    /// Check a daemon config file without starting anything: prints `ok` and a summary, or
    /// every problem with its line and key (and exits non-zero).
    Check {
        /// The TOML config file.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
    },
    /// Make a running daemon re-read its config file (as SIGHUP does): added services start,
    /// removed ones stop, the others keep their connections. A config with problems is
    /// refused and the daemon keeps the one it has.
    Reload {
        /// The daemon's state directory, where its control socket is (default as for
        /// `burrow daemon`).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Print a shell completion script: `burrow completions bash > /etc/bash_completion.d/burrow`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `burrow server init`.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Create the server's store (if needed) and a tenant in it, and print the tenant's master
    /// token (shown once: the store keeps only its hash).
    Init {
        /// Where the store goes (created 0700; `directory.sqlite3` inside, 0600).
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// The tenant's name (a-z, 0-9, _ and -).
        #[arg(long, default_value = "default", value_name = "NAME")]
        tenant: String,
        /// Write the master token to FILE (0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        limits: crate::admin::LimitArgs,
    },
    /// Set a tenant's limits in the server's store (those left out stay as they are); a
    /// running server applies them when it starts again. `burrow admin tree` shows them.
    Limits {
        /// The server's store, as `burrow server init` created it.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// The tenant.
        #[arg(long, default_value = "default", value_name = "NAME")]
        tenant: String,
        #[command(flatten)]
        limits: crate::admin::LimitArgs,
    },
}

/// What a master asks of the server.
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Declare PATH and print its server token (to expose it) and client token (to connect).
    Create {
        /// The path, such as /home/ssh.
        path: String,
        /// Pin the first client key that connects; others are refused until `reload`.
        #[arg(long)]
        fixed: bool,
        /// Most connecting daemons the server introduces to PATH at once (at least 1;
        /// default: no limit). One counts from its first lookup of PATH until it stops or
        /// unregisters (or PATH's exposing daemon does); looking PATH up again takes no second
        /// place. One more is refused: "path PATH is at its limit of N connections".
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: Option<u32>,
    },
    /// Delete PATH: its tokens stop working and its daemon stops publishing it.
    Delete {
        /// The path.
        path: String,
    },
    /// List the tenant's paths: who exposes each, which are fixed, their connections and
    /// limits, and the daemons each is attached to; the tenant's own limits come first.
    Tree,
    /// Replace PATH's server or client token (`redeem PATH server|client`), or a daemon's
    /// token (`redeem daemon NAME`, which also unbinds its key); the old one stops working at
    /// once.
    Redeem {
        /// The path, or `daemon`.
        path: String,
        /// Which token: server or client; after `daemon`, the daemon's name.
        role: String,
    },
    /// Register a daemon NAME in the tenant and print its daemon token (shown once). The first
    /// daemon that registers with the token binds its key to NAME; any other key is refused.
    Register {
        /// The daemon's name (a-z, 0-9, _ and -).
        name: String,
    },
    /// Remove daemon NAME: its token stops working, and the daemon bound to it loses its
    /// registration and sessions at once.
    Unregister {
        /// The daemon's name.
        name: String,
    },
    /// List the tenant's daemons: name, bound key, online or not, and the paths each exposes
    /// or connects to; with PATH, only those using it.
    Daemons {
        /// Only the daemons using this path.
        path: Option<String>,
    },
    /// Forget the client keys a fixed PATH pinned, so a new client may connect.
    Reload {
        /// The path.
        path: String,
    },
    /// Attach PATH to a running daemon of the tenant, without touching it: the server pushes
    /// it, and the daemon exposes PATH toward TARGET (`--expose`) or listens for it
    /// (`--listen`) as `burrow attach` would, and keeps it. The attachment also lets the
    /// daemon expose or connect to PATH, whatever its tokens.
    Rattach {
        /// The path.
        path: String,
        /// The daemon: its public key as `burrow daemon` printed it, or the NAME its master
        /// registered it under.
        #[arg(long, value_name = "KEY|NAME")]
        daemon: String,
        /// Where its connections go on the daemon's side (HOST:PORT or unix:PATH).
        #[arg(
            long,
            value_name = "TARGET",
            conflicts_with = "listen",
            required_unless_present = "listen"
        )]
        expose: Option<String>,
        /// The local address the daemon listens on for it (IP:PORT).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Detach PATH from a daemon it was attached to with `rattach`.
    Rdetach {
        /// The path.
        path: String,
        /// The daemon: its public key, or its registered NAME.
        #[arg(long, value_name = "KEY|NAME")]
        daemon: String,
    },
}

/// Settings every daemon form shares; each overrides the config file.
#[derive(Clone, Debug, Args, Default)]
pub struct DaemonArgs {
    /// The rendezvous server's UDP address (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
    /// The server's public key, as `burrow server` printed it (pinned: no other is trusted).
    #[arg(long, value_name = "KEY")]
    pub server_key: Option<String>,
    /// The access token the server expects. Command lines are visible to other users: prefer
    /// --token-file, $BURROW_TOKEN or the config file.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// A file holding the access token (readable by its owner only).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// A file holding one more token of the server's directory: a declared path's server
    /// token (to expose it) or client token (to connect to it). Repeat for up to 4.
    #[arg(long = "path-token-file", value_name = "FILE")]
    pub path_token_files: Vec<PathBuf>,
    /// A peer key admitted to every exposed service without an introduction by the server
    /// (repeat for several). Without any, only peers the server introduces get in, each to
    /// the service it looked up.
    #[arg(long = "allow-key", value_name = "KEY")]
    pub allow_keys: Vec<String>,
    /// This daemon's secret key file (default: `key` in the state directory, created if
    /// missing).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Directory for the key and the control socket (default: $BURROW_STATE_DIR,
    /// $XDG_STATE_HOME/burrow or ~/.local/state/burrow).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Local UDP address to bind (default 0.0.0.0:0).
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<SocketAddr>,
    /// Which paths to peers may be used: any (direct, else the relay), relay-first (the relay
    /// at once, then direct when proven), direct or relay.
    #[arg(long, value_name = "POLICY")]
    pub route: Option<String>,
    /// Congestion control of the tunnels: bbr (the default: random loss does not slow it
    /// down) or newreno (every loss halves the window, as TCP Reno).
    #[arg(long, value_name = "CC")]
    pub congestion: Option<String>,
    /// Do not ask the home router for a port (NAT-PMP or PCP). By default a daemon whose way
    /// to the server leaves through a gateway asks it, and announces the mapped address so
    /// that peers behind symmetric NATs reach it directly; the mapping is renewed while the
    /// daemon runs and removed when it stops. Same as `port_mapping = false` in the file.
    #[arg(long)]
    pub no_port_mapping: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default; a loopback address
    /// unless --metrics-public).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Allow --metrics on a non-loopback address (the metrics name peers' keys and traffic).
    #[arg(long)]
    pub metrics_public: bool,
}

/// `FIRST-LAST`, a range of TCP ports (a single port is a range of one).
pub fn port_range(text: &str) -> Result<(u16, u16), String> {
    let port = |t: &str| match t.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{t}` is not a port (1-65535)")),
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(text)?, port(text)?),
    };
    if first > last {
        return Err(format!("{first}-{last}: the first port is above the last"));
    }
    Ok((first, last))
}

/// A `--sni-domain`: a host name, in lower case.
fn sni_domain(s: &str) -> Result<String, String> {
    burrow_core::forward::sni::host_name(s.as_bytes())
        .map_err(|_| format!("`{s}` is not a host name (letters, digits, '-' and dots)"))
}
