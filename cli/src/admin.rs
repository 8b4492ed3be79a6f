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
    AdminAnswer, AdminCommand, Attachment, DirectoryChange, DirectoryStore, TenantName,
    TenantRecord, TokenHash, TokenRole,
};

use crate::args::AdminAction;
use crate::node::{Node, NodeConfig, Runtime};
use crate::store::SqliteStore;
use crate::{keys, secrets};

/// How long `burrow admin` waits to be registered with the server.
const REGISTER_WAIT: Duration = Duration::from_secs(10);

/// `burrow server init`: creates the store if needed and the tenant, and hands out its master
/// token once.
pub fn init(state_dir: &Path, tenant: &str, out: Option<&Path>) -> Result<(), String> {
    let name: TenantName = tenant.parse().map_err(|e| format!("--tenant: {e}"))?;
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
    }))?;
    println!("tenant {name} created in {}", state_dir.display());
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
        let mut tree = Vec::new();
        for command in commands {
            let is_tree = matches!(command, AdminCommand::Tree { .. });
            let mut next = Some(command);
            while let Some(command) = next.take() {
                let answer = control.admin(master.clone(), command)?;
                if let AdminAnswer::Tree { paths, more, .. } = &answer {
                    if *more {
                        next = paths.last().map(|p| AdminCommand::Tree {
                            after: Some(p.name.clone()),
                        });
                    }
                }
                if is_tree {
                    tree.push(answer);
                } else {
                    print_answer(&answer);
                }
            }
        }
        if !tree.is_empty() {
            print_tree(&tree);
        }
        Ok(())
    });
    node.shutdown();
    result
}

fn commands(action: AdminAction) -> Result<Vec<AdminCommand>, String> {
    let path = |p: &str| ServiceName::parse(p).map_err(|e| format!("{p}: {e}"));
    Ok(vec![match action {
        AdminAction::Create { path: p, fixed } => AdminCommand::Create {
            name: path(&p)?,
            fixed,
        },
        AdminAction::Delete { path: p } => AdminCommand::Delete { name: path(&p)? },
        AdminAction::Tree => AdminCommand::Tree { after: None },
        AdminAction::Redeem { path: p, role } => AdminCommand::Redeem {
            name: path(&p)?,
            role: if role == "server" {
                TokenRole::Server
            } else {
                TokenRole::Client
            },
        },
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

/// A daemon's key as `--daemon` gives it.
fn daemon_key(text: &str) -> Result<PublicKey, String> {
    text.parse().map_err(|_| {
        format!("--daemon: `{text}` is not a public key (as `burrow daemon` prints it)")
    })
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
        other => println!("{other:?}"),
    }
}

/// Prints the pages of a tree:
///
/// ```text
/// tenant acme
/// ├── /home/ssh   exposed by KEY
/// └── /office/db  not exposed   fixed, 1 client pinned
/// ```
fn print_tree(pages: &[AdminAnswer]) {
    let mut rows = Vec::new();
    let mut tenant = String::new();
    for page in pages {
        if let AdminAnswer::Tree {
            tenant: t, paths, ..
        } = page
        {
            tenant.clone_from(t);
            rows.extend(paths.iter().cloned());
        }
    }
    println!("tenant {tenant}");
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
        let branch = if i + 1 == rows.len() {
            "└──"
        } else {
            "├──"
        };
        let exposed = p
            .exposed_by
            .map_or("not exposed".to_string(), |k| format!("exposed by {k}"));
        let fixed = if p.fixed {
            format!("   fixed, {} client(s) pinned", p.pinned)
        } else {
            String::new()
        };
        println!("{branch} {:width$}  {exposed}{fixed}", p.name.as_str());
    }
}
