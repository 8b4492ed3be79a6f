//! The rendezvous server's SNI port, as the node routing its connections sees it.

use std::time::Instant;

use super::Endpoint;
use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;

impl Endpoint {
    /// The server's SNI port (`burrow server --publish-sni`), `None` when it has none or this
    /// is no server.
    pub(crate) fn sni_port(&self) -> Option<u16> {
        self.server.as_ref()?.sni_port()
    }

    /// The daemon and path a TLS connection to the SNI port asking for `host` goes to.
    pub(crate) fn sni_route(&self, host: &str) -> Option<(PublicKey, ServiceName)> {
        self.server.as_ref()?.sni_route(host)
    }

    /// The owner bound the SNI port (`Ok`) or could not (`Err`, why). Drain the output after.
    pub(crate) fn sni_listening(&mut self, now: Instant, result: Result<(), String>) {
        if let Some(server) = self.server.as_mut() {
            server.sni_listening(result);
            self.after(now);
        }
    }
}
