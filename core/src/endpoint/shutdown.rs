//! Stopping an endpoint politely: the rendezvous server and every peer are told at once.

use std::time::Instant;

use super::Endpoint;
use crate::wire::control::CloseCode;

impl Endpoint {
    /// Stops the endpoint politely: a daemon removes its port mapping on the gateway and
    /// unregisters from its rendezvous server (which forgets its registration and services
    /// at once), then every session is closed, telling
    /// its peer, so that peers reset their streams within a round trip instead of noticing a
    /// silence. [`crate::Event::SessionClosed`] follows for every announced session. Send the
    /// transmits that follow before dropping the endpoint.
    pub fn shutdown(&mut self, now: Instant) {
        if let Some(daemon) = self.daemon.as_mut() {
            daemon.client.stop(now);
        }
        // The gateway forgets our port (the request goes out first: it needs no session).
        self.remove_port_mapping();
        // The Unregister goes out on the server's session before its close.
        self.after(now);
        for key in self.sessions.keys() {
            let (mut ctx, sessions) = self.parts();
            if let Some(session) = sessions.get_mut(&key) {
                session.close(&mut ctx, now, CloseCode::Normal);
            }
        }
        self.reap();
        self.after(now);
        self.settle();
    }
}
