//! A registration the server refused (a bad token, a name taken, a limit): requests that wait
//! for the registration fail at once with the server's reason rather than after their
//! timeout, and the registration is tried again after a delay that doubles from
//! [`super::REGISTER_RETRY`] to [`REFUSED_MAX`] while the server keeps refusing (a token may
//! be fixed on the server's side, so it is not given up).

use std::time::{Duration, Instant};

use super::{Client, ClientEvent, ErrorCode, State};

/// The longest delay between two registrations the server refused.
pub(crate) const REFUSED_MAX: Duration = Duration::from_secs(300);

impl Client {
    /// The server refused our `Register` with `code` and `detail`.
    pub(super) fn registration_refused(&mut self, now: Instant, code: ErrorCode, detail: String) {
        self.events.push_back(ClientEvent::RegistrationFailed {
            code,
            detail: detail.clone(),
        });
        self.state = State::Backoff {
            at: now + self.refused_wait,
        };
        self.refused_wait = (self.refused_wait * 2).min(REFUSED_MAX);
        self.refused = Some((code, detail));
        self.fail_unsent();
    }

    /// Registered: the next refusal waits the shortest delay again.
    pub(super) fn registration_accepted(&mut self) {
        self.refused = None;
        self.refused_wait = super::REGISTER_RETRY;
    }

    /// When to reopen a session the server closed while our registration stands refused: not
    /// before the refused registration's retry is due.
    pub(super) fn refused_retry_at(&self) -> Option<Instant> {
        match self.state {
            State::Backoff { at } if self.refused.is_some() => Some(at),
            _ => None,
        }
    }

    /// While the last registration stands refused, fails every request not sent yet (they
    /// wait for a registration) with the server's reason.
    pub(super) fn fail_unsent(&mut self) {
        let Some((code, detail)) = self.refused.clone() else {
            return;
        };
        if self.is_registered() {
            return;
        }
        let unsent: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.retry.is_none())
            .map(|(&request, _)| request)
            .collect();
        for request in unsent {
            self.requests.remove(&request);
            self.events.push_back(ClientEvent::RequestFailed {
                request,
                code,
                detail: format!("not registered: {code} ({detail})"),
            });
        }
    }
}
