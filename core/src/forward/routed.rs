//! Connections the node routes itself (the server's SNI port): accepted before anything is
//! known of where they go, read until their first bytes say, then piped into a stream.

use std::time::Instant;

use bytes::Bytes;

use super::conn::Conn;
use super::{ConnId, Forwarder, Origin};
use crate::crypto::PublicKey;
use crate::endpoint::Endpoint;
use crate::rendezvous::ServiceName;

impl Forwarder {
    /// A listener id for a listener the node routes itself: no connection accepted on it
    /// reaches the forwarder until [`Self::route_accepted`].
    pub(crate) fn reserve_listener(&mut self) -> super::ListenerId {
        let id = super::ListenerId(self.next_listener);
        self.next_listener += 1;
        id
    }

    /// A connection accepted on a listener the node routes itself (the server's SNI port):
    /// its handle, before anything is known of where it goes. Read it, then hand it over with
    /// [`Self::route_accepted`] or close it.
    pub(crate) fn reserve_conn(&mut self) -> ConnId {
        self.new_conn()
    }

    /// Pipes `conn` (from [`Self::reserve_conn`]), whose first bytes `first` were already
    /// read, into a new stream to `service` at the peer with `key`. `false` (close the
    /// socket) when there is no session or no room for a stream.
    pub(crate) fn route_accepted(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        conn: ConnId,
        (key, service): (PublicKey, ServiceName),
        origin: Option<Origin>,
        first: Bytes,
    ) -> bool {
        let Some(peer) = ep.peer_of(&key).filter(|p| ep.is_connected(*p)) else {
            return false;
        };
        let Ok(stream) = ep.open_stream_from(now, peer, &service, origin) else {
            return false;
        };
        let mut c = Conn::new(service, false, true);
        c.origin = origin;
        c.stream = Some((peer, stream));
        c.reading = false;
        c.bytes_read = first.len() as u64;
        c.pending = first;
        self.conns.insert(conn, c);
        self.streams.insert((peer, stream), conn);
        self.push_up(now, ep, conn);
        true
    }
}
