//! Attachments that failed on this daemon, told to the server
//! ([`ClientMessage::AttachOutcome`]) so that its master sees them in `burrow admin tree` and
//! `burrow admin daemons`: sent at once when registered, and again after every registration
//! while they stand (the server forgets them with the registration). Also the end of our
//! last session for a path we looked up ([`ClientMessage::Disconnected`]), and as a
//! destination the end of a source's session ([`ClientMessage::SourceLeft`]).

use super::super::directory::{MAX_ATTACH_ERROR_LEN, MAX_FAILED_PER_DAEMON};
use super::super::messages::{ClientMessage, truncate};
use super::super::name::ServiceName;
use super::Client;

impl Client {
    /// Our attachment of `name` failed, with why (`Some`), or runs now (`None`). At most
    /// [`MAX_FAILED_PER_DAEMON`] failures are kept (more are not reported); a reason is cut to
    /// [`MAX_ATTACH_ERROR_LEN`] bytes.
    pub(crate) fn report_attach(&mut self, name: ServiceName, failed: Option<String>) {
        let failed = failed.map(|why| truncate(why, MAX_ATTACH_ERROR_LEN));
        match &failed {
            Some(why) => {
                let room = self.attach_failed.len() < MAX_FAILED_PER_DAEMON;
                if !room && !self.attach_failed.contains_key(&name) {
                    return;
                }
                if self.attach_failed.get(&name) == Some(why) {
                    return;
                }
                self.attach_failed.insert(name.clone(), why.clone());
            }
            None => {
                if self.attach_failed.remove(&name).is_none() {
                    return;
                }
            }
        }
        if self.is_registered() {
            self.messages
                .push_back(ClientMessage::AttachOutcome { name, failed });
        }
    }

    /// Just registered: every failure that stands goes to the server again.
    pub(super) fn resend_attach_failures(&mut self) {
        for (name, why) in &self.attach_failed {
            self.messages.push_back(ClientMessage::AttachOutcome {
                name: name.clone(),
                failed: Some(why.clone()),
            });
        }
    }

    /// Our last session for `name`, which we looked up, ended: the server frees our place in
    /// the path's limit of connections (sent once, if registered; a lookup takes it again).
    pub(crate) fn disconnected(&mut self, name: ServiceName) {
        if self.is_registered() {
            self.messages
                .push_back(ClientMessage::Disconnected { name });
        }
    }

    /// Our session with `source`, which the server introduced to us, ended for good: the
    /// server frees the places it held through us in paths' limits (sent once, if
    /// registered).
    pub(crate) fn source_left(&mut self, source: crate::crypto::PublicKey) {
        if self.is_registered() {
            self.messages
                .push_back(ClientMessage::SourceLeft { source });
        }
    }
}
