//! Runtime selection: the one place that knows which runtime runs the nodes. The `tokio`
//! feature (the default) picks burrow-tokio; a build with only the `mio` feature picks
//! burrow-mio. Both are offered to the rest of the binary as the same small blocking API.

use std::net::SocketAddr;

use burrow_core::rendezvous::ServiceName;
use burrow_core::rendezvous::directory::{AdminAnswer, AdminCommand, DirectoryChange};
use burrow_core::status::Status;

use burrow_core::PublicKey;
/// What a node runs: the same type on every runtime.
pub use burrow_core::node::NodeConfig;
use burrow_core::node::{Services, Summary};

#[cfg(not(any(feature = "tokio", feature = "mio")))]
compile_error!("build burrow with the `tokio` feature (the default) or the `mio` feature");

#[cfg(feature = "tokio")]
use burrow_tokio as rt;

#[cfg(all(feature = "mio", not(feature = "tokio")))]
use burrow_mio as rt;

/// Which runtime this binary runs on.
pub const RUNTIME: &str = if cfg!(feature = "tokio") {
    "tokio"
} else {
    "mio"
};

/// A running node.
pub struct Node(rt::NodeHandle);

/// Asks a running node for status or probes; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Control(rt::NodeControl);

impl Node {
    pub fn spawn(config: NodeConfig) -> Result<Self, String> {
        #[cfg(feature = "tokio")]
        let _entered = tokio_rt::get()?.enter();
        rt::Node::spawn(config).map(Self).map_err(|e| e.to_string())
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.0.udp_addr()
    }

    pub fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }

    pub fn listeners(&self) -> &[(ServiceName, SocketAddr)] {
        self.0.listeners()
    }

    pub fn control(&self) -> Control {
        Control(self.0.control())
    }

    pub fn is_stopped(&self) -> bool {
        self.0.is_stopped()
    }

    /// The server's directory changes, one per call, blocking; `None` once the node stopped.
    /// For one consumer (a server's store).
    pub fn directory_changes(
        &mut self,
    ) -> impl FnMut() -> Option<DirectoryChange> + Send + 'static {
        #[cfg(feature = "tokio")]
        {
            let changes = self.0.directory_changes();
            move || changes.recv_blocking().ok()
        }
        #[cfg(not(feature = "tokio"))]
        {
            let changes = self.0.directory_changes();
            move || changes.as_ref()?.recv().ok()
        }
    }

    /// Stops the node and waits until it has.
    pub fn shutdown(self) {
        #[cfg(feature = "tokio")]
        if let Ok(rt) = tokio_rt::get() {
            rt.block_on(self.0.shutdown());
        }
        #[cfg(not(feature = "tokio"))]
        self.0.shutdown();
    }
}

impl Control {
    pub fn status(&self) -> Result<Status, String> {
        #[cfg(feature = "tokio")]
        let status = tokio_rt::get()?.block_on(self.0.status());
        #[cfg(not(feature = "tokio"))]
        let status = self.0.status();
        status.map_err(|e| e.to_string())
    }

    /// Sends a master's command to the daemon's server: the answer, or why it failed.
    pub fn admin(&self, master: String, command: AdminCommand) -> Result<AdminAnswer, String> {
        #[cfg(feature = "tokio")]
        let answer = tokio_rt::get()?.block_on(self.0.admin(master, command));
        #[cfg(not(feature = "tokio"))]
        let answer = self.0.admin(master, command);
        answer.map_err(|e| e.to_string())?
    }

    /// Makes the node run `services`: what changed, or why nothing did.
    pub fn reload(&self, services: Services) -> Result<Summary, String> {
        #[cfg(feature = "tokio")]
        let reloaded = tokio_rt::get()?.block_on(self.0.reload(services));
        #[cfg(not(feature = "tokio"))]
        let reloaded = self.0.reload(services);
        reloaded
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    pub fn stun_probe(&self, server: SocketAddr) -> Result<Option<SocketAddr>, String> {
        #[cfg(feature = "tokio")]
        let probe = tokio_rt::get()?.block_on(self.0.stun_probe(server));
        #[cfg(not(feature = "tokio"))]
        let probe = self.0.stun_probe(server);
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
