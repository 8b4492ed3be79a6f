//! Whether the local targets of the services we expose answer: the exposing side's view of
//! each service, for `burrow status` and the log.
//!
//! A target that refuses (nothing listens on its port) fails each incoming stream with
//! [`super::CONNECT_FAILED`]; the service is then "target unreachable", with the reason, the
//! target, how many connections failed in a row and when the last did, until a connection to
//! the target succeeds again.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::rendezvous::ServiceName;

/// Failures in a row of one exposed service's target.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unreachable {
    target: String,
    reason: String,
    times: u64,
    last: Instant,
}

/// Where the target of each exposed service stands; a service not listed answered its last
/// connection (or has had none).
#[derive(Debug, Default)]
pub(super) struct Targets {
    down: BTreeMap<ServiceName, Unreachable>,
}

impl Targets {
    /// A connection to `service`'s `target` failed at `now` with `reason`.
    pub(super) fn failed(
        &mut self,
        now: Instant,
        service: &ServiceName,
        target: &str,
        reason: &str,
    ) {
        let entry = self
            .down
            .entry(service.clone())
            .or_insert_with(|| Unreachable {
                target: target.to_string(),
                reason: String::new(),
                times: 0,
                last: now,
            });
        entry.target = target.to_string();
        entry.reason = reason.to_string();
        entry.times = entry.times.saturating_add(1);
        entry.last = now;
    }

    /// A connection to `service`'s target succeeded: it is ready again.
    pub(super) fn connected(&mut self, service: &ServiceName) {
        self.down.remove(service);
    }

    /// Forgets `service` (no longer exposed).
    pub(super) fn forget(&mut self, service: &ServiceName) {
        self.down.remove(service);
    }

    /// `ready`, or `target unreachable: REASON (TARGET) N time(s), last S s ago` as of `now`.
    pub(super) fn state(&self, now: Instant, service: &ServiceName) -> String {
        match self.down.get(service) {
            None => "ready".into(),
            Some(u) => format!(
                "target unreachable: {} ({}) {} time{}, last {} s ago",
                u.reason,
                u.target,
                u.times,
                if u.times == 1 { "" } else { "s" },
                now.saturating_duration_since(u.last).as_secs()
            ),
        }
    }
}

impl super::Forwarder {
    /// The exposing daemon could not connect `conn`'s stream to its target (a reset with
    /// [`super::CONNECT_FAILED`]): the service shows as unreachable, with why, until a
    /// connection gets an answer. Returns the reason for the connection.
    pub(super) fn target_refused(&mut self, conn: super::ConnId) -> String {
        let why = format!(
            "the exposing daemon could not connect to the service's target (refused or down \
             there; its `burrow status` says why; code {:#x})",
            super::CONNECT_FAILED
        );
        let service = self.conns.get(&conn).map(|c| c.service.clone());
        if let Some(w) = service.and_then(|s| self.wanted.get_mut(&s)) {
            w.target_down = true;
            w.last_error = Some(why.clone());
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_failures_until_a_connection_succeeds() {
        let t0 = crate::tests::origin();
        let name: ServiceName = "/a/b".parse().unwrap();
        let mut t = Targets::default();
        assert_eq!(t.state(t0, &name), "ready");
        t.failed(t0, &name, "127.0.0.1:9", "connection refused");
        t.failed(
            t0 + Duration::from_secs(2),
            &name,
            "127.0.0.1:9",
            "connection refused",
        );
        assert_eq!(
            t.state(t0 + Duration::from_secs(5), &name),
            "target unreachable: connection refused (127.0.0.1:9) 2 times, last 3 s ago"
        );
        t.connected(&name);
        assert_eq!(t.state(t0, &name), "ready");
        t.failed(t0, &name, "127.0.0.1:9", "refused");
        t.forget(&name);
        assert_eq!(t.state(t0, &name), "ready");
    }
}
