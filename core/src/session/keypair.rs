//! One generation of transport keys: the two ciphers, the send counter and the replay window.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use crate::crypto::noise::{CipherState, TAG_LEN, TransportKeys};
use crate::crypto::replay::ReplayWindow;
use crate::wire::header::{TRANSPORT_HEADER_LEN, transport_header};

/// Why an incoming transport packet was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Counter seen before or older than the window.
    Replay,
    /// The tag did not verify.
    Auth,
    /// The keys are past their hard limits.
    Expired,
}

/// Keys of one completed handshake, identified by the index we chose for it.
pub(crate) struct Keypair {
    /// The index the peer puts in `receiver` when sending to us.
    pub(crate) local_index: u32,
    /// The index we put in `receiver` when sending to the peer.
    pub(crate) remote_index: u32,
    /// Whether we initiated the handshake that made these keys.
    pub(crate) initiator: bool,
    /// When the handshake completed.
    pub(crate) created: Instant,
    send: CipherState,
    recv: CipherState,
    next_counter: u64,
    replay: ReplayWindow,
}

impl Keypair {
    pub(crate) fn new(
        keys: TransportKeys,
        local_index: u32,
        remote_index: u32,
        initiator: bool,
        now: Instant,
    ) -> Self {
        Self {
            local_index,
            remote_index,
            initiator,
            created: now,
            send: keys.send,
            recv: keys.recv,
            next_counter: 0,
            replay: ReplayWindow::default(),
        }
    }

    /// Packets sent with these keys so far.
    pub(crate) fn sent(&self) -> u64 {
        self.next_counter
    }

    /// Seals `kind_and_body` (the plaintext: kind byte and body, or nothing for a keepalive)
    /// into a whole transport packet. `None` once `reject_after` packets were sent.
    pub(crate) fn seal(&mut self, plaintext: &[&[u8]], reject_after: u64) -> Option<Bytes> {
        if self.next_counter >= reject_after {
            return None;
        }
        let counter = self.next_counter;
        self.next_counter += 1;
        let header = transport_header(self.remote_index, counter);
        let len: usize = plaintext.iter().map(|p| p.len()).sum();
        let mut buf = BytesMut::with_capacity(TRANSPORT_HEADER_LEN + len + TAG_LEN);
        buf.put_slice(&header);
        for part in plaintext {
            buf.put_slice(part);
        }
        let tag = self
            .send
            .seal_in_place(counter, &header, &mut buf[TRANSPORT_HEADER_LEN..]);
        buf.put_slice(&tag);
        Some(buf.freeze())
    }

    /// Checks the counter, decrypts `sealed` (ciphertext and tag) into `scratch` and marks the
    /// counter seen. The plaintext is `scratch[..]` afterwards.
    pub(crate) fn open(
        &mut self,
        header: &[u8; TRANSPORT_HEADER_LEN],
        counter: u64,
        sealed: &[u8],
        scratch: &mut Vec<u8>,
        reject_after: u64,
    ) -> Result<(), OpenError> {
        if counter >= reject_after {
            return Err(OpenError::Expired);
        }
        if !self.replay.check(counter) {
            return Err(OpenError::Replay);
        }
        let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("split at TAG_LEN from the end");
        scratch.clear();
        scratch.extend_from_slice(ciphertext);
        self.recv
            .open_in_place(counter, header, scratch, tag)
            .map_err(|_| OpenError::Auth)?;
        // Only an authenticated packet may move the window, or forgeries could push it.
        if !self.replay.accept(counter) {
            return Err(OpenError::Replay);
        }
        Ok(())
    }

    /// The highest counter received so far, if any.
    pub(crate) fn highest_received(&self) -> Option<u64> {
        self.replay.highest()
    }
}
