//! Services attached to a running daemon through its control socket (`burrow attach`,
//! `burrow detach`), next to those of its config file. They take effect at once (through the
//! same reload the config file uses, so the other services keep their connections) and are
//! kept in `attached.toml` in the state directory (0600), which the daemon reads again at
//! start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use burrow_core::node::Services;
use burrow_core::rendezvous::ServiceName;
use burrow_core::rendezvous::directory::Attachment;
use serde::{Deserialize, Serialize};

use crate::node::Control;

/// The file in the state directory.
pub const ATTACHED_FILE: &str = "attached.toml";
/// Most services attached at once.
pub const MAX_ATTACHED: usize = 64;
/// The longest `attached.toml` read.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// What `attached.toml` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attached {
    #[serde(default)]
    pub expose: Vec<Exposed>,
    #[serde(default)]
    pub connect: Vec<Connected>,
}

/// An attached exposed service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exposed {
    pub name: ServiceName,
    pub target: String,
    /// Attached by the tenant's master (`burrow admin rattach`), not by `burrow attach`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub by_master: bool,
}

/// An attached connected service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connected {
    pub name: ServiceName,
    pub listen: SocketAddr,
    /// Attached by the tenant's master (`burrow admin rattach`), not by `burrow attach`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub by_master: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Attached {
    fn len(&self) -> usize {
        self.expose.len() + self.connect.len()
    }

    fn names(&self) -> impl Iterator<Item = &ServiceName> {
        let exposed = self.expose.iter().map(|e| &e.name);
        exposed.chain(self.connect.iter().map(|c| &c.name))
    }

    /// Adds them to `base` (a config's services).
    pub fn onto(&self, base: &Services) -> Services {
        let mut all = base.clone();
        all.expose.extend(
            self.expose
                .iter()
                .map(|e| (e.name.clone(), e.target.clone())),
        );
        all.connect
            .extend(self.connect.iter().map(|c| (c.name.clone(), c.listen)));
        all
    }

    /// Checks that no name is attached twice or also in `base`, and the count.
    pub fn check(&self, base: &Services) -> Result<(), String> {
        if self.len() > MAX_ATTACHED {
            return Err(format!("at most {MAX_ATTACHED} services can be attached"));
        }
        let mut seen = Vec::new();
        let in_base = |n: &ServiceName| {
            base.expose.iter().any(|(b, _)| b == n) || base.connect.iter().any(|(b, _)| b == n)
        };
        for name in self.names() {
            if seen.contains(&name) {
                return Err(format!("{name} is attached twice"));
            }
            if in_base(name) {
                return Err(format!(
                    "{name} is in the config file already; edit the file and reload to change it"
                ));
            }
            seen.push(name);
        }
        Ok(())
    }
}

/// Reads `attached.toml` in `state_dir`; empty if there is none.
pub fn load(state_dir: &Path) -> Result<Attached, String> {
    let path = state_dir.join(ATTACHED_FILE);
    let text = match crate::secrets::read_private(&path, "attached services", MAX_FILE_LEN) {
        Ok(text) => text,
        Err(_) if !path.exists() => return Ok(Attached::default()),
        Err(e) => return Err(e),
    };
    toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message().trim()))
}

/// Writes `attached` to `attached.toml` in `state_dir`: a new 0600 file renamed into place.
fn save(state_dir: &Path, attached: &Attached) -> Result<(), String> {
    let path = state_dir.join(ATTACHED_FILE);
    let text = toml::to_string(attached).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::secrets::write_private(&path, &text)
}

/// The services a running daemon runs: its config file's and the attached ones.
pub struct Running {
    node: Control,
    state_dir: PathBuf,
    base: Services,
    attached: Attached,
}

impl Running {
    pub fn new(node: Control, state_dir: PathBuf, base: Services, attached: Attached) -> Self {
        Self {
            node,
            state_dir,
            base,
            attached,
        }
    }

    /// The config file changed: runs its services with the attached ones.
    pub fn reload_base(&mut self, base: Services) -> Result<String, String> {
        self.attached.check(&base)?;
        let summary = self.node.reload(self.attached.onto(&base))?;
        self.base = base;
        Ok(summary.to_string())
    }

    /// Tells the daemon's server how the attachment of `name` went (the master sees a
    /// failure in `burrow admin tree` and `daemons`).
    fn report(&self, name: &ServiceName, result: &Result<String, String>) {
        self.node
            .report_attach(name.clone(), result.as_ref().err().cloned());
    }

    /// Attaches `name`: exposed toward `target`, or listened for on `listen`.
    pub fn attach(
        &mut self,
        name: &str,
        target: Option<String>,
        listen: Option<&str>,
    ) -> Result<String, String> {
        let name = ServiceName::parse(name).map_err(|e| format!("{name}: {e}"))?;
        let mut attached = self.attached.clone();
        match (target, listen) {
            (Some(target), None) => attached.expose.push(Exposed {
                name: name.clone(),
                target,
                by_master: false,
            }),
            (None, Some(listen)) => {
                let listen = listen
                    .parse()
                    .map_err(|_| format!("listen address `{listen}` is not IP:PORT"))?;
                attached.connect.push(Connected {
                    name: name.clone(),
                    listen,
                    by_master: false,
                });
            }
            _ => return Err("give a target to expose, or a listen address, not both".into()),
        }
        let result = self.apply(attached);
        self.report(&name, &result);
        result
    }

    /// Detaches `name`.
    pub fn detach(&mut self, name: &str) -> Result<String, String> {
        let name = ServiceName::parse(name).map_err(|e| format!("{name}: {e}"))?;
        let by_master = self
            .attached
            .expose
            .iter()
            .any(|e| e.name == name && e.by_master)
            || self
                .attached
                .connect
                .iter()
                .any(|c| c.name == name && c.by_master);
        if by_master {
            return Err(format!(
                "{name} was attached by the tenant's master, who detaches it with                  `burrow admin rdetach {name} --daemon KEY` (it would come back at the next                  registration otherwise)"
            ));
        }
        let mut attached = self.attached.clone();
        attached.expose.retain(|e| e.name != name);
        attached.connect.retain(|c| c.name != name);
        if attached == self.attached {
            return Err(format!(
                "{name} is not attached (a service of the config file goes by editing the file and reloading)"
            ));
        }
        let result = self.apply(attached);
        if result.is_ok() {
            self.report(&name, &Ok(String::new()));
        }
        result
    }

    /// Does what the tenant's master pushed: attaches `name` as `attach` says (replacing
    /// what was attached under that name), or detaches it (`None`). Applying the same push
    /// twice changes nothing the second time.
    pub fn master(
        &mut self,
        name: ServiceName,
        attach: Option<Attachment>,
    ) -> Result<String, String> {
        let mut attached = self.attached.clone();
        attached.expose.retain(|e| e.name != name);
        attached.connect.retain(|c| c.name != name);
        match attach {
            Some(Attachment::Expose { target }) => attached.expose.push(Exposed {
                name: name.clone(),
                target,
                by_master: true,
            }),
            Some(Attachment::Listen { addr }) => attached.connect.push(Connected {
                name: name.clone(),
                listen: addr,
                by_master: true,
            }),
            None => {}
        }
        if attached == self.attached {
            return Ok(format!("{name}: nothing to change"));
        }
        let result = self.apply(attached);
        // A detachment that went through ends a failure too.
        self.report(&name, &result);
        result
    }

    /// Runs the config's services with `attached`, and keeps `attached` if that worked.
    fn apply(&mut self, attached: Attached) -> Result<String, String> {
        attached.check(&self.base)?;
        let summary = self.node.reload(attached.onto(&self.base))?;
        if !summary.failed.is_empty() {
            // What did start stays out of the file: the next reload makes it consistent.
            let _ = self.node.reload(self.attached.onto(&self.base));
            return Err(summary.failed.join("; "));
        }
        save(&self.state_dir, &attached)?;
        self.attached = attached;
        Ok(summary.to_string())
    }
}
