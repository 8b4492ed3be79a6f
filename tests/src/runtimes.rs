//! [`LoopbackNode`] for each runtime, so the loopback suite runs the same tests on all.

use std::net::SocketAddr;
use std::sync::OnceLock;

use burrow_core::rendezvous::ServiceName;
use burrow_core::status::Status;

use crate::loopback::{LoopbackNode, NodeSpec};

/// A node on burrow-tokio, on one shared two-worker runtime.
pub struct TokioNode(burrow_tokio::NodeHandle);

fn tokio_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

impl LoopbackNode for TokioNode {
    fn start(spec: NodeSpec) -> Self {
        let _entered = tokio_runtime().enter();
        Self(burrow_tokio::Node::spawn(spec).expect("the node starts"))
    }
    fn udp_addr(&self) -> SocketAddr {
        self.0.udp_addr()
    }
    fn listeners(&self) -> Vec<(ServiceName, SocketAddr)> {
        self.0.listeners().to_vec()
    }
    fn status(&self) -> Status {
        tokio_runtime()
            .block_on(self.0.status())
            .expect("the node runs")
    }
    fn stop(self) {
        tokio_runtime().block_on(self.0.shutdown());
    }
}

/// A node on burrow-mio (its own thread).
pub struct MioNode(burrow_mio::NodeHandle);

impl LoopbackNode for MioNode {
    fn start(spec: NodeSpec) -> Self {
        Self(burrow_mio::Node::spawn(spec).expect("the node starts"))
    }
    fn udp_addr(&self) -> SocketAddr {
        self.0.udp_addr()
    }
    fn listeners(&self) -> Vec<(ServiceName, SocketAddr)> {
        self.0.listeners().to_vec()
    }
    fn status(&self) -> Status {
        self.0.status().expect("the node runs")
    }
    fn stop(self) {
        self.0.shutdown();
    }
}

/// A node on burrow-smol (its loop on its own thread; handles driven with `smol::block_on`).
pub struct SmolNode(burrow_smol::NodeHandle);

impl LoopbackNode for SmolNode {
    fn start(spec: NodeSpec) -> Self {
        Self(burrow_smol::Node::spawn(spec).expect("the node starts"))
    }
    fn udp_addr(&self) -> SocketAddr {
        self.0.udp_addr()
    }
    fn listeners(&self) -> Vec<(ServiceName, SocketAddr)> {
        self.0.listeners().to_vec()
    }
    fn status(&self) -> Status {
        smol::block_on(self.0.status()).expect("the node runs")
    }
    fn stop(self) {
        smol::block_on(self.0.shutdown());
    }
}
