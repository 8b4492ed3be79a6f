//! `burrow server init` (a store and a tenant's master token) and `burrow admin` (a master's
//! commands, sent to the server over an encrypted session of a short-lived daemon).

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use burrow_core::Config;
use burrow_core::PublicKey;
use burrow_core::config::RendezvousConfig;
use burrow_core::rendezvous::ServiceName;
use burrow_core::rendezvous::directory::{
    AdminAnswer, AdminCommand, AttachFailure, Attachment, DaemonName, DaemonPath, DaemonRef,
    DaemonView, DirectoryChange, DirectoryStore, MAX_QUOTA, TenantName, TenantQuota, TenantRecord,
    TokenHash, TokenRole, UnnamedView,
};

use crate::args::AdminAction;
use crate::node::{Node, NodeConfig, Runtime};
use crate::store::SqliteStore;
use crate::{keys, secrets};

/// How long `burrow admin` waits to be registered with the server.
const REGISTER_WAIT: Duration = Duration::from_secs(10);

/// A tenant's limits as the server's operator sets them (`burrow server init`, `burrow
/// server limits`); each left out is the server's default (or, for `limits`, stays).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LimitArgs {
    /// Most paths the tenant's master may create (default 10000; at most 1000000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_QUOTA)))]
    pub max_paths: Option<u32>,
    /// Most daemons the tenant's master may register (default 1000; at most 1000000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_QUOTA)))]
    pub max_daemons: Option<u32>,
    /// Bytes per second the tenant's daemons may relay through the server together, such as
    /// 2MiB, 512KiB or 100000 (default: the server's 16 MiB/s per token).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub relay_rate: Option<u64>,
}

impl LimitArgs {
    /// `base` with the limits given here.
    fn onto(&self, base: TenantQuota) -> TenantQuota {
        TenantQuota {
            max_paths: self.max_paths.or(base.max_paths),
            max_daemons: self.max_daemons.or(base.max_daemons),
            relay_bytes_per_sec: self.relay_rate.or(base.relay_bytes_per_sec),
        }
    }
}

/// A rate in bytes per second: a number, optionally followed by KiB, MiB or GiB (or K, M, G:
/// the same binary units), with an optional `/s`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        other => return Err(format!("`{other}` is not a unit: use KiB, MiB or GiB")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a rate such as 2MiB or 100000"))?;
    match n.checked_mul(1 << shift) {
        Some(0) => Err("a relay rate is at least 1 byte/s".into()),
        Some(rate) if rate <= 1 << 40 => Ok(rate),
        _ => Err(format!("`{text}` is more than 1 TiB/s")),
    }
}

/// `burrow server limits`: sets a tenant's limits in the store.
pub fn set_limits(state_dir: &Path, tenant: &str, limits: &LimitArgs) -> Result<(), String> {
    let name: TenantName = tenant.parse().map_err(|e| format!("--tenant: {e}"))?;
    if !state_dir.join(crate::store::DB_FILE).exists() {
        return Err(format!(
            "{} holds no server store; create one with `burrow server init`",
            state_dir.display()
        ));
    }
    let mut store = SqliteStore::open(state_dir)?;
    let records = store.load()?;
    let Some(mut record) = records.tenants.into_iter().find(|t| t.name == name) else {
        return Err(format!(
            "no tenant {name} in {}; create it with `burrow server init --tenant {name}`",
            state_dir.display()
        ));
    };
    record.limits = limits.onto(record.limits);
    record.limits.check()?;
    store.apply(&DirectoryChange::PutTenant(record.clone()))?;
    println!(
        "tenant {name}: {} (the server applies them when it starts again)",
        describe(&record.limits)
    );
    Ok(())
}

/// A tenant's limits in one line, defaults named as such.
fn describe(q: &TenantQuota) -> String {
    let or_default = |n: Option<String>| n.unwrap_or_else(|| "default".into());
    format!(
        "max paths {}, max daemons {}, relay {}",
        or_default(q.max_paths.map(|n| n.to_string())),
        or_default(q.max_daemons.map(|n| n.to_string())),
        or_default(q.relay_bytes_per_sec.map(rate)),
    )
}

/// `burrow server init`: creates the store if needed and the tenant, and hands out its master
/// token once.
pub fn init(
    state_dir: &Path,
    tenant: &str,
    out: Option<&Path>,
    limits: &LimitArgs,
) -> Result<(), String> {
    let name: TenantName = tenant.parse().map_err(|e| format!("--tenant: {e}"))?;
    let limits = limits.onto(TenantQuota::default());
    limits.check()?;
    let mut store = SqliteStore::open(state_dir)?;
    if store.has_tenant(&name)? {
        return Err(format!(
            "tenant {name} already exists in {}; its master token was shown when it was created \
             (pick another --tenant for a new one)",
            state_dir.display()
        ));
    }
    let master = keys::token()?;
    if let Some(path) = out {
        write_secret(path, &master)?;
    }
    store.apply(&DirectoryChange::PutTenant(TenantRecord {
        name: name.clone(),
        master: TokenHash::of(&master),
        limits,
    }))?;
    println!("tenant {name} created in {}", state_dir.display());
    if limits != TenantQuota::default() {
        println!("limits: {}", describe(&limits));
    }
    match out {
        Some(path) => println!("master token written to {}", path.display()),
        None => println!("master token: {master}"),
    }
    println!(
        "(shown once: the store keeps only its hash; start the server with --state-dir {})",
        state_dir.display()
    );
    Ok(())
}

/// Writes `secret` to a new file at `path`, owner-only (0600), never through a symlink.
fn write_secret(path: &Path, secret: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot create {}: {e} (it must not exist yet)",
                path.display()
            )
        })?;
    writeln!(file, "{secret}").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `burrow admin`.
pub fn run(
    runtime: Runtime,
    server: &str,
    server_key: &str,
    token: Option<String>,
    token_file: Option<&Path>,
    action: AdminAction,
) -> Result<(), String> {
    let master = match (token, token_file) {
        (Some(t), _) => t,
        (None, Some(path)) => secrets::read_token(path)?,
        (None, None) => std::env::var("BURROW_TOKEN").map_err(|_| {
            "give the master token with --token-file FILE, $BURROW_TOKEN or --token".to_string()
        })?,
    };
    secrets::check_token(&master).map_err(|e| format!("master token: {e}"))?;
    let server_key: PublicKey = server_key
        .parse()
        .map_err(|_| "--server-key: not a public key (as `burrow server` prints it)".to_string())?;
    let server: SocketAddr = server
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("--server: cannot resolve {server}"))?;
    let commands = commands(action)?;

    // A short-lived daemon with a fresh key, registered with the master token.
    let key = keys::generate()?;
    let rendezvous = RendezvousConfig::new(server_key, server, master.clone());
    let bind: SocketAddr = if server.ip().is_loopback() {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let config = NodeConfig::new(Config::daemon(key, rendezvous), bind);
    let node = Node::spawn(runtime, config)?;
    let result = registered(&node).and_then(|()| {
        let control = node.control();
        let (mut tree, mut daemons, mut unnamed) = (Vec::new(), Vec::new(), Vec::new());
        let mut failed: Vec<AttachFailure> = Vec::new();
        let mut listed: Option<Option<ServiceName>> = None;
        for command in commands {
            let mut next = Some(command);
            while let Some(command) = next.take() {
                let filter = match &command {
                    AdminCommand::Daemons { path, .. } | AdminCommand::Unnamed { path, .. } => {
                        path.clone()
                    }
                    _ => None,
                };
                let optional = matches!(command, AdminCommand::Failed { .. });
                let answer = match control.admin(master.clone(), command) {
                    // An older server knows no failed attachments: the listing goes without.
                    Err(_) if optional => break,
                    answer => answer?,
                };
                match answer {
                    AdminAnswer::Tree {
                        ref paths, more, ..
                    } => {
                        if more {
                            next = paths.last().map(|p| AdminCommand::Tree {
                                after: Some(p.name.clone()),
                            });
                        }
                        tree.push(answer);
                    }
                    AdminAnswer::Daemons {
                        daemons: page,
                        more,
                    } => {
                        if more {
                            next = page.last().map(|d| AdminCommand::Daemons {
                                path: filter.clone(),
                                after: Some(d.name.clone()),
                            });
                        }
                        daemons.extend(page);
                        listed = Some(filter);
                    }
                    AdminAnswer::Unnamed {
                        daemons: page,
                        more,
                    } => {
                        if more {
                            next = page.last().map(|d| AdminCommand::Unnamed {
                                path: filter.clone(),
                                after: Some(d.key),
                            });
                        }
                        unnamed.extend(page);
                    }
                    AdminAnswer::Failed { failures, more } => {
                        failed.extend(failures);
                        if more {
                            let after = u32::try_from(failed.len()).unwrap_or(u32::MAX);
                            next = Some(AdminCommand::Failed { after });
                        }
                    }
                    other => print_answer(&other),
                }
            }
        }
        if !tree.is_empty() {
            print_tree(&tree, &failed);
        }
        if let Some(filter) = listed {
            failed.retain(|f| filter.as_ref().is_none_or(|p| f.name == *p));
            print_daemons(&daemons, &unnamed, filter.as_ref(), &failed);
        }
        Ok(())
    });
    node.shutdown();
    result
}

fn commands(action: AdminAction) -> Result<Vec<AdminCommand>, String> {
    let path = |p: &str| ServiceName::parse(p).map_err(|e| format!("{p}: {e}"));
    Ok(vec![match action {
        AdminAction::Create {
            path: p,
            fixed,
            max_connections,
        } => AdminCommand::Create {
            name: path(&p)?,
            fixed,
            max_connections,
        },
        AdminAction::Delete { path: p } => AdminCommand::Delete { name: path(&p)? },
        AdminAction::Tree => {
            let failed = AdminCommand::Failed { after: 0 };
            return Ok(vec![AdminCommand::Tree { after: None }, failed]);
        }
        AdminAction::Redeem { path: p, role } if p == "daemon" => AdminCommand::RedeemDaemon {
            name: daemon_name(&role)?,
        },
        AdminAction::Redeem { path: p, role } => AdminCommand::Redeem {
            name: path(&p)?,
            role: match role.as_str() {
                "server" => TokenRole::Server,
                "client" => TokenRole::Client,
                _ => {
                    return Err(format!(
                        "redeem {p} {role}: say which token, server or client \
                         (or `redeem daemon NAME`)"
                    ));
                }
            },
        },
        AdminAction::Register { name } => AdminCommand::Register {
            name: daemon_name(&name)?,
        },
        AdminAction::Unregister { name } => AdminCommand::Unregister {
            name: daemon_name(&name)?,
        },
        AdminAction::Daemons { path: p } => {
            let p = p.as_deref().map(path).transpose()?;
            return Ok(vec![
                AdminCommand::Daemons {
                    path: p.clone(),
                    after: None,
                },
                AdminCommand::Unnamed {
                    path: p,
                    after: None,
                },
                AdminCommand::Failed { after: 0 },
            ]);
        }
        AdminAction::Reload { path: p } => AdminCommand::Reload { name: path(&p)? },
        AdminAction::Rattach {
            path: p,
            daemon,
            expose,
            listen,
        } => {
            let attach = match (expose, listen) {
                (Some(target), None) => Attachment::Expose { target },
                (None, Some(addr)) => Attachment::Listen {
                    addr: addr
                        .parse()
                        .map_err(|_| format!("--listen: `{addr}` is not IP:PORT"))?,
                },
                _ => return Err("give --expose TARGET or --listen ADDR".into()),
            };
            attach.check().map_err(|e| format!("--expose: {e}"))?;
            AdminCommand::Rattach {
                name: path(&p)?,
                daemon: daemon_key(&daemon)?,
                attach,
            }
        }
        AdminAction::Rdetach { path: p, daemon } => AdminCommand::Rdetach {
            name: path(&p)?,
            daemon: daemon_key(&daemon)?,
        },
    }])
}

/// A daemon as `--daemon` gives it: a public key, else a registered daemon's name.
fn daemon_key(text: &str) -> Result<DaemonRef, String> {
    if let Ok(key) = text.parse::<PublicKey>() {
        return Ok(DaemonRef::Key(key));
    }
    text.parse().map(DaemonRef::Name).map_err(|e| {
        format!(
            "--daemon: `{text}` is neither a public key (as `burrow daemon` prints it) nor a \
             daemon name ({e})"
        )
    })
}

/// A daemon's name as `register`, `unregister` and `redeem daemon` take it.
fn daemon_name(text: &str) -> Result<DaemonName, String> {
    text.parse().map_err(|e| format!("{text:?}: {e}"))
}

/// Waits until the daemon is registered, or says why not.
fn registered(node: &Node) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let status = node.control().status()?;
        if status.registered.is_some() {
            return Ok(());
        }
        if let Some(reason) = status.registration_error {
            return Err(format!("the server refused the master token: {reason}"));
        }
        if start.elapsed() > REGISTER_WAIT {
            return Err(format!(
                "no answer from the server within {} s; check --server and --server-key",
                REGISTER_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn print_answer(answer: &AdminAnswer) {
    match answer {
        AdminAnswer::Created {
            name,
            server_token,
            client_token,
        } => {
            println!("created {name}");
            println!("server token: {server_token}");
            println!("client token: {client_token}");
            println!("(shown once: the server keeps only their hashes)");
        }
        AdminAnswer::Deleted { name } => println!("deleted {name}"),
        AdminAnswer::Redeemed { name, role, token } => {
            println!("new {role} token of {name}: {token}");
            println!("(the old one no longer works)");
        }
        AdminAnswer::Reloaded { name, forgotten } => {
            println!("{name} forgot {forgotten} pinned client key(s)");
        }
        AdminAnswer::Rattached { name, daemon } => {
            println!(
                "attached {name} to daemon {daemon} (pushed to it now, and whenever it registers)"
            );
        }
        AdminAnswer::Rdetached { name, daemon } => {
            println!("detached {name} from daemon {daemon}");
        }
        AdminAnswer::DaemonRegistered { name, token } => {
            println!("registered daemon {name}");
            println!("daemon token: {token}");
            println!(
                "(shown once: the server keeps only its hash; the first key that uses it is bound to {name})"
            );
        }
        AdminAnswer::DaemonRedeemed { name, token } => {
            println!("new daemon token of {name}: {token}");
            println!(
                "(the old one no longer works, and the key is unbound until the next registration)"
            );
        }
        AdminAnswer::Unregistered { name, key } => match key {
            Some(key) => println!("unregistered daemon {name} (key {key} is offline)"),
            None => println!("unregistered daemon {name} (it was not yet bound)"),
        },
        other => println!("{other:?}"),
    }
}

/// Prints the pages of a tree:
///
/// ```text
/// tenant acme   limits: 10000 paths, 1000 daemons, relay 16 MiB/s
/// ├── /home/ssh   exposed by KEY   connections 1 of 2
/// │   └── attached to laptop (client, online)
/// └── /office/db  not exposed   fixed, 1 client(s) pinned
/// ```
fn print_tree(pages: &[AdminAnswer], failed: &[AttachFailure]) {
    let mut rows = Vec::new();
    let mut header = String::new();
    for page in pages {
        if let AdminAnswer::Tree {
            tenant,
            paths,
            limits,
            ..
        } = page
        {
            header = format!(
                "tenant {tenant}   limits: {} paths, {} daemons, relay {}",
                limits.max_paths,
                limits.max_daemons,
                rate(limits.relay_bytes_per_sec)
            );
            rows.extend(paths.iter().cloned());
        }
    }
    println!("{header}");
    if rows.is_empty() {
        println!("└── (no paths: create one with `burrow admin ... create PATH`)");
        return;
    }
    let width = rows
        .iter()
        .map(|p| p.name.as_str().len())
        .max()
        .unwrap_or(0);
    for (i, p) in rows.iter().enumerate() {
        let last = i + 1 == rows.len();
        let branch = if last { "└──" } else { "├──" };
        let exposed = p
            .exposed_by
            .map_or("not exposed".to_string(), |k| format!("exposed by {k}"));
        let connections = match p.max_connections {
            Some(max) => format!("   connections {} of {max}", p.connections),
            None => String::new(),
        };
        let fixed = if p.fixed {
            format!("   fixed, {} client(s) pinned", p.pinned)
        } else {
            String::new()
        };
        println!(
            "{branch} {:width$}  {exposed}{connections}{fixed}",
            p.name.as_str()
        );
        let stem = if last { "    " } else { "│   " };
        let mut lines: Vec<String> = p
            .attached
            .iter()
            .map(|a| {
                let role = match a.role {
                    TokenRole::Server => "server",
                    TokenRole::Client => "client",
                };
                let state = if a.online { "online" } else { "offline" };
                let why = failed
                    .iter()
                    .find(|f| f.name == p.name && f.daemon == a.daemon)
                    .map_or(String::new(), |f| format!("   attach failed: {}", f.reason));
                format!("attached to {} ({role}, {state}){why}", a.daemon)
            })
            .collect();
        // Failures of a daemon's own attachments (`burrow attach`), which the tree lists not.
        lines.extend(
            failed
                .iter()
                .filter(|f| f.name == p.name && !p.attached.iter().any(|a| a.daemon == f.daemon))
                .map(|f| format!("{}: attach failed: {}", f.daemon, f.reason)),
        );
        if p.more_attached > 0 {
            lines.push(format!("and {} more attachment(s)", p.more_attached));
        }
        for (n, line) in lines.iter().enumerate() {
            let twig = if n + 1 == lines.len() {
                "└──"
            } else {
                "├──"
            };
            println!("{stem}{twig} {line}");
        }
    }
}

/// A byte rate as people read it.
fn rate(bytes_per_sec: u64) -> String {
    match bytes_per_sec {
        b if b > 0 && b % (1 << 20) == 0 => format!("{} MiB/s", b >> 20),
        b if b > 0 && b % (1 << 10) == 0 => format!("{} KiB/s", b >> 10),
        b => format!("{b} B/s"),
    }
}

/// Prints the tenant's daemons, those its master registered and then those online without
/// an entry (registered with a path token or the master token), marked as such:
///
/// ```text
/// NAME              KEY            STATE    PATHS
/// laptop            KEY            online   exposes /home/ssh, connects to /office/db
/// nas               not yet bound  offline  -
/// (not registered)  KEY            online   connects to /home/ssh
/// ```
fn print_daemons(
    daemons: &[DaemonView],
    unnamed: &[UnnamedView],
    filter: Option<&ServiceName>,
    failed: &[AttachFailure],
) {
    if daemons.is_empty() && unnamed.is_empty() {
        match filter {
            Some(p) => println!("(no daemon uses {p})"),
            None => println!("(no daemons: register one with `burrow admin ... register NAME`)"),
        }
        return;
    }
    let describe = |paths: &[DaemonPath], more: u32| {
        let mut shown: Vec<String> = paths
            .iter()
            .map(|p| match p.role {
                TokenRole::Server => format!("exposes {}", p.name),
                TokenRole::Client => format!("connects to {}", p.name),
            })
            .collect();
        if more > 0 {
            shown.push(format!("and {more} more"));
        }
        if shown.is_empty() {
            "-".to_string()
        } else {
            shown.join(", ")
        }
    };
    // Each row with the daemon as a failure names it (its registered name, else its key).
    let mut rows: Vec<([String; 4], DaemonRef)> = daemons
        .iter()
        .map(|d| {
            let row = [
                d.name.to_string(),
                d.key.map_or("not yet bound".to_string(), |k| k.to_string()),
                if d.online { "online" } else { "offline" }.to_string(),
                describe(&d.paths, d.more_paths),
            ];
            (row, DaemonRef::Name(d.name.clone()))
        })
        .collect();
    rows.extend(unnamed.iter().map(|d| {
        let row = [
            "(not registered)".to_string(),
            d.key.to_string(),
            "online".to_string(),
            describe(&d.paths, d.more_paths),
        ];
        (row, DaemonRef::Key(d.key))
    }));
    let name_w = rows.iter().map(|r| r.0[0].len()).max().unwrap_or(0).max(4);
    let key_w = rows.iter().map(|r| r.0[1].len()).max().unwrap_or(0).max(3);
    println!("{:name_w$}  {:key_w$}  {:7}  PATHS", "NAME", "KEY", "STATE");
    for ([name, key, state, paths], daemon) in rows {
        println!("{name:name_w$}  {key:key_w$}  {state:7}  {paths}");
        for f in failed.iter().filter(|f| f.daemon == daemon) {
            println!("  └── {}: attach failed: {}", f.name, f.reason);
        }
    }
}
