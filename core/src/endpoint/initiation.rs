//! Answering a handshake initiation: the checks a packet from an unknown or known key goes
//! through before it may cost a Diffie-Hellman or create or replace a session (mac1, load
//! and cookies, the per-source cap on half-open handshakes, the replay floor and freshness,
//! the peer policy and the tie-break of two simultaneous handshakes).

use super::*;

impl Endpoint {
    pub(super) fn on_initiation(
        &mut self,
        now: Instant,
        from: Path,
        sender: u32,
        noise_msg: &[u8],
        (mac1_input, mac1): (&[u8], &[u8; MAC_LEN]),
        (mac2_input, mac2): (&[u8], &[u8; MAC_LEN]),
    ) {
        if !self.cookies.verify_mac1(mac1_input, mac1) {
            self.out.stats.dropped_bad_mac += 1;
            return;
        }
        let source = match from {
            Path::Direct(addr) => Some(addr.ip()),
            Path::Relay(_) => None,
        };
        let cfg = &self.config.session;
        let under_load = self.load.count(
            now,
            source,
            cfg.handshake_load_threshold,
            cfg.handshake_load_per_source,
        );
        // A source that holds its share of half-open handshakes must prove its address
        // before the Diffie-Hellman, as under load; past that, a new session is refused below.
        let half_open_full = source.is_some_and(|ip| {
            self.sessions.half_open_from(session::source_of(ip)) >= cfg.max_half_open_per_source
        });
        let under_load = under_load || half_open_full;
        // A relayed initiation needs no cookie: the relay authenticated its sender and
        // limits its rate, and a cookie reply could not be addressed through it.
        if let (true, Path::Direct(from)) = (under_load, from)
            && !self.cookies.verify_mac2(now, from, mac2_input, mac2)
        {
            // Answer with a cookie, which costs no Diffie-Hellman, instead of a response.
            let nonce = self.rng.bytes();
            let rng = &mut self.rng;
            let reply = self
                .cookies
                .seal_reply(now, || rng.bytes(), from, mac1, nonce);
            let packet = header::cookie_reply(sender, &reply);
            let stats = &mut self.out.stats;
            stats.dropped_no_cookie += 1;
            stats.cookies_sent += 1;
            stats.datagrams_out += 1;
            stats.bytes_out += packet.len() as u64;
            self.out.transmits.push_back(Transmit {
                segment_size: None,
                dst: from,
                ttl: None,
                payload: packet.into(),
            });
            return;
        }
        let Ok(responder) = noise::respond(&self.config.secret_key, PROLOGUE, noise_msg) else {
            self.out.stats.dropped_handshake += 1;
            return;
        };
        let Some(payload) = HandshakePayload::decode(responder.payload()) else {
            self.out.stats.dropped_handshake += 1;
            return;
        };
        let key = responder.remote_static();
        let answering = session::Answering {
            from,
            responder,
            remote_index: sender,
            resumes: payload.session,
        };
        if self
            .replay_floor
            .get(&key)
            .is_some_and(|t| payload.timestamp <= *t)
        {
            // A replay of an initiation from before this peer's last session ended.
            self.out.stats.dropped_handshake_replay += 1;
            return;
        }
        let admitted = self.access.admits(&key)
            || self.sessions.contains_key(&key)
            || Some(key) == self.server_key();
        if !admitted || key == self.public_key {
            self.out.stats.dropped_unknown_peer += 1;
            if self.access.first_refusal(key) {
                self.out.events.push_back(Event::PeerRejected {
                    key,
                    addr: from.addr(),
                });
            }
            return;
        }
        let public_key = self.public_key;
        let (mut ctx, sessions) = self.parts();
        if let Some(session) = sessions.get_mut(&key) {
            session.punch.heard(from);
            if !session.is_fresh_initiation(payload.timestamp) {
                ctx.out.stats.dropped_handshake_replay += 1;
                return;
            }
            if !session.punch.path_allowed(from) {
                ctx.out.stats.dropped_route_policy += 1;
                return;
            }
            if !session.yields_to_initiation(&public_key, from, payload.timestamp) {
                // Simultaneous initiation and our key is larger: the peer answers ours instead.
                ctx.out.stats.dropped_unexpected += 1;
                return;
            }
            if session.admit_initiation(&mut ctx, now, &payload) {
                session.respond(&mut ctx, now, answering, &public_key);
                self.catch_up(now, key);
            }
            return;
        }
        // A daemon's route policy holds for peers it has not been introduced to yet, too.
        let route = self.daemon.as_ref().map(|d| d.config.route);
        let allowed = match (route, from) {
            (Some(route), Path::Direct(_)) => {
                route.allows_direct() || Some(key) == self.server_key()
            }
            (Some(route), Path::Relay(_)) => route.allows_relay(),
            (None, _) => true,
        };
        if !allowed {
            self.out.stats.dropped_route_policy += 1;
            return;
        }
        if self.sessions.len() >= self.config.session.max_sessions {
            self.out.stats.dropped_session_limit += 1;
            return;
        }
        if half_open_full {
            self.out.stats.dropped_half_open_limit += 1;
            return;
        }
        let (mut ctx, sessions) = self.parts();
        let id = ctx.ids.assign(key);
        let mut session = Session::new(&ctx, id, key, from, now);
        session.opened_by = source.map(session::source_of);
        if let Path::Relay(relay) = from {
            // Came through our server's relay before it introduced the peer to us.
            session.punch.allow_relay(relay);
        }
        if session.admit_initiation(&mut ctx, now, &payload) {
            session.respond(&mut ctx, now, answering, &public_key);
            sessions.insert(key, session);
        } else {
            ctx.ids.release(session.id);
        }
    }
}
