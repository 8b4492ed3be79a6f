//! Runtime selection: the one place that knows which runtimes run the nodes. Each runtime is a
//! cargo feature (`tokio`, `smol`, `mio`; all three by default) and `--runtime` (or `runtime`
//! in the daemon's config file) picks one of those built in at run time. Every runtime is
//! offered to the rest of the binary as the same small blocking API.

use std::net::SocketAddr;

use burrow_core::PublicKey;
use burrow_core::rendezvous::directory::{AdminAnswer, AdminCommand, Attachment, DirectoryChange};
use burrow_core::rendezvous::{Grants, ServiceName};
use burrow_core::status::Status;
use burrow_core::upnp::{Turn, UpnpEvent};

/// What a node runs: the same type on every runtime.
pub use burrow_core::node::NodeConfig;
use burrow_core::node::{HookEvent, Services, Summary};

#[cfg(not(any(feature = "tokio", feature = "smol", feature = "mio")))]
compile_error!("build burrow with at least one of the `tokio`, `smol` and `mio` features");

/// A runtime a node can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// tokio, multi-threaded (the production runtime).
    Tokio,
    /// smol / async-io, with the same async driver as tokio.
    Smol,
    /// One mio poll loop on one thread (the small-footprint runtime).
    Mio,
}

impl Runtime {
    /// The runtime used when none is asked for: tokio if it is built in.
    pub fn default_built() -> Self {
        if cfg!(feature = "tokio") {
            Self::Tokio
        } else if cfg!(feature = "smol") {
            Self::Smol
        } else {
            Self::Mio
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Smol => "smol",
            Self::Mio => "mio",
        }
    }
}

/// A node's handle on the runtime it runs on.
enum Handle {
    /// tokio and smol share the async driver and its handle, whose futures run anywhere.
    #[cfg(any(feature = "tokio", feature = "smol"))]
    Async(Runtime, burrow_tokio::NodeHandle),
    #[cfg(feature = "mio")]
    Mio(burrow_mio::NodeHandle),
}

/// A running node.
pub struct Node(Handle);

/// Asks a running node for status or probes; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Control(ControlHandle);

#[derive(Clone)]
enum ControlHandle {
    #[cfg(any(feature = "tokio", feature = "smol"))]
    Async(Runtime, burrow_tokio::NodeControl),
    #[cfg(feature = "mio")]
    Mio(burrow_mio::NodeControl),
}

/// Runs one of the async driver's futures to completion on the calling thread.
#[cfg(any(feature = "tokio", feature = "smol"))]
fn block_on<T>(runtime: Runtime, future: impl Future<Output = T>) -> Result<T, String> {
    match runtime {
        #[cfg(feature = "tokio")]
        Runtime::Tokio => Ok(tokio_rt::get()?.block_on(future)),
        #[cfg(feature = "smol")]
        Runtime::Smol => Ok(smol::block_on(future)),
        #[allow(unreachable_patterns)]
        other => Err(format!("{} runs no async driver", other.name())),
    }
}

impl Node {
    pub fn spawn(runtime: Runtime, config: NodeConfig) -> Result<Self, String> {
        let handle = match runtime {
            #[cfg(feature = "tokio")]
            Runtime::Tokio => {
                let _entered = tokio_rt::get()?.enter();
                burrow_tokio::Node::spawn(config).map(|h| Handle::Async(runtime, h))
            }
            #[cfg(feature = "smol")]
            Runtime::Smol => burrow_smol::Node::spawn(config).map(|h| Handle::Async(runtime, h)),
            #[cfg(feature = "mio")]
            Runtime::Mio => burrow_mio::Node::spawn(config).map(Handle::Mio),
            #[allow(unreachable_patterns)]
            other => {
                return Err(format!(
                    "this burrow was built without the {} runtime (cargo feature `{0}`)",
                    other.name()
                ));
            }
        };
        handle.map(Self).map_err(|e| e.to_string())
    }

    pub fn udp_addr(&self) -> SocketAddr {
        match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(_, h) => h.udp_addr(),
            #[cfg(feature = "mio")]
            Handle::Mio(h) => h.udp_addr(),
        }
    }

    /// Another handle on the node's UDP socket, to send from its address.
    pub fn udp_socket(&self) -> std::io::Result<std::net::UdpSocket> {
        match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(_, h) => h.udp_socket(),
            #[cfg(feature = "mio")]
            Handle::Mio(h) => h.udp_socket(),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(_, h) => h.public_key(),
            #[cfg(feature = "mio")]
            Handle::Mio(h) => h.public_key(),
        }
    }

    pub fn listeners(&self) -> &[(ServiceName, SocketAddr)] {
        match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(_, h) => h.listeners(),
            #[cfg(feature = "mio")]
            Handle::Mio(h) => h.listeners(),
        }
    }

    pub fn control(&self) -> Control {
        Control(match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(rt, h) => ControlHandle::Async(*rt, h.control()),
            #[cfg(feature = "mio")]
            Handle::Mio(h) => ControlHandle::Mio(h.control()),
        })
    }

    pub fn is_stopped(&self) -> bool {
        match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(_, h) => h.is_stopped(),
            #[cfg(feature = "mio")]
            Handle::Mio(h) => h.is_stopped(),
        }
    }

    /// The server's directory changes, one per call, blocking; `None` once the node stopped.
    /// For one consumer (a server's store).
    pub fn directory_changes(&mut self) -> Box<dyn FnMut() -> Option<DirectoryChange> + Send> {
        match &mut self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(_, h) => {
                let changes = h.directory_changes();
                Box::new(move || changes.recv_blocking().ok())
            }
            #[cfg(feature = "mio")]
            Handle::Mio(h) => {
                let changes = h.directory_changes();
                Box::new(move || changes.as_ref()?.recv().ok())
            }
        }
    }

    /// Paths the tenant's master attached (`Some`) or detached (`None`), one per call,
    /// blocking; `None` once the node stopped. For one consumer (a daemon's services).
    pub fn master_attachments(
        &mut self,
    ) -> Box<dyn FnMut() -> Option<(ServiceName, Option<Attachment>)> + Send> {
        match &mut self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(_, h) => {
                let pushed = h.master_attachments();
                Box::new(move || pushed.recv_blocking().ok())
            }
            #[cfg(feature = "mio")]
            Handle::Mio(h) => {
                let pushed = h.master_attachments();
                Box::new(move || pushed.as_ref()?.recv().ok())
            }
        }
    }

    /// When configured services and peers came up on a session, moved path or went down,
    /// one per call, blocking; `None` once the node stopped. For one consumer (the hooks).
    pub fn hook_events(&mut self) -> Box<dyn FnMut() -> Option<HookEvent> + Send> {
        match &mut self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(_, h) => {
                let events = h.hook_events();
                Box::new(move || events.recv_blocking().ok())
            }
            #[cfg(feature = "mio")]
            Handle::Mio(h) => {
                let events = h.hook_events();
                Box::new(move || events.as_ref()?.recv().ok())
            }
        }
    }

    /// Stops the node and waits until it has.
    pub fn shutdown(self) {
        match self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            Handle::Async(rt, h) => {
                let _ = block_on(rt, h.shutdown());
            }
            #[cfg(feature = "mio")]
            Handle::Mio(h) => h.shutdown(),
        }
    }
}

impl Control {
    pub fn status(&self) -> Result<Status, String> {
        let status = match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            ControlHandle::Async(rt, c) => block_on(*rt, c.status())?,
            #[cfg(feature = "mio")]
            ControlHandle::Mio(c) => c.status(),
        };
        status.map_err(|e| e.to_string())
    }

    /// Sends a master's command to the daemon's server: the answer, or why it failed.
    pub fn admin(&self, master: String, command: AdminCommand) -> Result<AdminAnswer, String> {
        let answer = match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            ControlHandle::Async(rt, c) => block_on(*rt, c.admin(master, command))?,
            #[cfg(feature = "mio")]
            ControlHandle::Mio(c) => c.admin(master, command),
        };
        answer.map_err(|e| e.to_string())?
    }

    /// Presents `tokens` as the daemon's path tokens (`burrow import`): what the server
    /// granted, or why it refused them (the previous ones are in use again then).
    pub fn set_path_tokens(&self, tokens: Vec<String>) -> Result<Grants, String> {
        let outcome = match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            ControlHandle::Async(rt, c) => block_on(*rt, c.set_path_tokens(tokens))?,
            #[cfg(feature = "mio")]
            ControlHandle::Mio(c) => c.set_path_tokens(tokens),
        };
        outcome.map_err(|e| e.to_string())?
    }

    /// Tells the daemon's server that its attachment of `service` failed, with why, or runs
    /// (`None`); best effort (a stopped node has nothing to tell).
    pub fn report_attach(&self, service: ServiceName, failed: Option<String>) {
        match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            ControlHandle::Async(rt, c) => {
                let _ = block_on(*rt, c.report_attach(service, failed));
            }
            #[cfg(feature = "mio")]
            ControlHandle::Mio(c) => {
                let _ = c.report_attach(service, failed);
            }
        }
    }

    /// The UPnP-IGD driver's report, and what it does next; [`Turn::Off`] once the node
    /// stopped.
    pub fn upnp(&self, report: Option<UpnpEvent>) -> Turn {
        let turn = match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            ControlHandle::Async(rt, c) => block_on(*rt, c.upnp(report)).ok().and_then(Result::ok),
            #[cfg(feature = "mio")]
            ControlHandle::Mio(c) => c.upnp(report).ok(),
        };
        turn.unwrap_or(Turn::Off)
    }

    /// Pings `target` (a connected service or a peer's key): the path that answered and the
    /// round trip, or why there is none.
    pub fn ping(&self, target: String) -> Result<(burrow_core::Path, std::time::Duration), String> {
        let pong = match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            ControlHandle::Async(rt, c) => block_on(*rt, c.ping(target))?,
            #[cfg(feature = "mio")]
            ControlHandle::Mio(c) => c.ping(target),
        };
        pong.map_err(|e| e.to_string())?
    }

    /// Makes the node run `services`: what changed, or why nothing did.
    pub fn reload(&self, services: Services) -> Result<Summary, String> {
        let reloaded = match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            ControlHandle::Async(rt, c) => block_on(*rt, c.reload(services))?,
            #[cfg(feature = "mio")]
            ControlHandle::Mio(c) => c.reload(services),
        };
        reloaded
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    pub fn stun_probe(&self, server: SocketAddr) -> Result<Option<SocketAddr>, String> {
        let probe = match &self.0 {
            #[cfg(any(feature = "tokio", feature = "smol"))]
            ControlHandle::Async(rt, c) => block_on(*rt, c.stun_probe(server))?,
            #[cfg(feature = "mio")]
            ControlHandle::Mio(c) => c.stun_probe(server),
        };
        probe.map_err(|e| e.to_string())
    }
}

#[cfg(feature = "tokio")]
mod tokio_rt {
    use std::sync::OnceLock;

    /// The process's tokio runtime, started on first use.
    pub fn get() -> Result<&'static tokio::runtime::Runtime, String> {
        static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
    }
}
