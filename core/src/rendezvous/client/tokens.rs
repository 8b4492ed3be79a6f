//! The daemon's path tokens (`burrow import`): a change waiting for the server's verdict,
//! and what each token of the latest registration does ([`ServerMessage::Tokens`]). A token
//! the server refuses alone is named in an event and costs the registration nothing; a
//! change that adds a refused token is refused and the previous tokens come back.

use std::time::Instant;

use super::super::config::ConfigError;
use super::super::events::ClientEvent;
use super::super::grants::{Grants, TokenUse, token_start};
use super::super::messages::ErrorCode;
#[cfg(doc)]
use super::super::messages::ServerMessage;
use super::super::retry::{GIVE_UP_AFTER, Retry};
use super::{Client, State};

/// A change of path tokens ([`Client::set_path_tokens`]) waiting for the server's verdict.
#[derive(Clone, Debug)]
pub(super) struct Import {
    /// The tokens presented before, restored if the server refuses the new ones.
    pub(super) previous: Vec<String>,
    /// The `Register` whose `Granted` answers it (the latest one sent).
    pub(super) request: u64,
    /// Resends that `Register` while registered but not yet told what it was granted.
    pub(super) retry: Retry,
    /// When it is given up and the previous tokens come back.
    pub(super) give_up: Instant,
}

impl Client {
    /// Presents `tokens` as the path tokens from now on (`burrow import`): registers again
    /// with them at once if the session to the server is up, otherwise at the next
    /// [`Self::start`]. The outcome comes as [`ClientEvent::PathTokensSet`]: what the server
    /// granted, or why it refused, in which case the previous tokens are presented again (a
    /// refused token never costs the daemon its registration). Refused at once, with nothing
    /// changed, when a token is too long, there are too many, or another change is waiting
    /// for its answer.
    pub(crate) fn set_path_tokens(
        &mut self,
        now: Instant,
        tokens: Vec<String>,
    ) -> Result<(), ConfigError> {
        if self.import.is_some() {
            return Err(ConfigError::ImportPending);
        }
        let mut candidate = self.config.clone();
        candidate.path_tokens = tokens;
        candidate.validate()?;
        let previous = std::mem::replace(&mut self.config.path_tokens, candidate.path_tokens);
        self.import = Some(Import {
            previous,
            request: 0,
            retry: Retry::new(now),
            // Long enough for a registration that first needs the session to come up.
            give_up: now + 2 * GIVE_UP_AFTER,
        });
        if matches!(self.state, State::Idle) {
            return Ok(());
        }
        self.register(now);
        Ok(())
    }

    /// Ends the change of path tokens in progress with `result`; a refusal restores the
    /// tokens presented before and registers with them again.
    pub(super) fn end_import(&mut self, now: Instant, result: Result<Grants, (ErrorCode, String)>) {
        let Some(import) = self.import.take() else {
            return;
        };
        let refused = result.is_err();
        self.events.push_back(ClientEvent::PathTokensSet { result });
        if refused {
            self.config.path_tokens = import.previous;
            if !matches!(self.state, State::Idle) {
                self.register(now);
            }
        }
    }

    /// What each path token of the latest registration does, in the order presented (empty
    /// until the server said, or when it does not say).
    pub(crate) fn token_uses(&self) -> &[(String, TokenUse)] {
        &self.token_uses
    }

    /// The server said what each path token of our `Register` `request` does.
    pub(super) fn on_tokens(&mut self, request: u64, uses: Vec<TokenUse>) {
        if self.last_register != Some(request) || uses.len() != self.config.path_tokens.len() {
            return;
        }
        self.token_uses = self.config.path_tokens.iter().cloned().zip(uses).collect();
        // A token a change waiting here adds is the change's to refuse (see `on_granted`).
        let previous = self.import.as_ref().map(|i| &i.previous);
        let refused: Vec<String> = self
            .token_uses
            .iter()
            .filter(|(t, u)| *u == TokenUse::Refused && previous.is_none_or(|p| p.contains(t)))
            .map(|(t, _)| token_start(t))
            .collect();
        if !refused.is_empty() {
            self.events
                .push_back(ClientEvent::TokensRefused { starts: refused });
        }
    }

    /// The server said what our `Register` `request` is granted: a change of path tokens
    /// waiting for it ends, refused if a token it added was refused.
    pub(super) fn on_granted(&mut self, now: Instant, request: u64, grants: Grants) {
        let Some(import) = self.import.as_ref().filter(|i| i.request == request) else {
            return;
        };
        let added_refused: Vec<String> = self
            .token_uses
            .iter()
            .filter(|(t, u)| *u == TokenUse::Refused && !import.previous.contains(t))
            .map(|(t, _)| token_start(t))
            .collect();
        if added_refused.is_empty() {
            return self.end_import(now, Ok(grants));
        }
        let detail = format!(
            "path token {}... is unknown, was redeemed, or belongs to another tenant",
            added_refused.join("..., ")
        );
        self.end_import(now, Err((ErrorCode::BadToken, detail)));
    }
}
