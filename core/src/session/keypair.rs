//! One generation of transport keys: the two ciphers, the send counter and the replay window.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

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
    /// An authentic packet, but its counter is past the keys' hard limit.
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
    /// Where packets are sealed: each is split off the front and frozen, so one allocation
    /// serves many packets (see [`Keypair::seal_with`]).
    arena: BytesMut,
}

/// Bytes of [`Keypair`]'s packet arena: sixteen 1452-byte packets between allocations.
const ARENA: usize = 16 * 1452;

/// Bytes of the arena of a session that sends runs: a whole run and one more packet, so a run
/// is never cut short by the arena's end.
const RUN_ARENA: usize = crate::transmit::MAX_RUN_BYTES + 1500;

/// A whole packet's bytes around a plaintext of `plaintext` bytes.
fn packet_len(plaintext: usize) -> usize {
    TRANSPORT_HEADER_LEN + plaintext + TAG_LEN
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
            arena: BytesMut::new(),
        }
    }

    /// Packets sent with these keys so far.
    pub(crate) fn sent(&self) -> u64 {
        self.next_counter
    }

    /// Seals a plaintext made of `parts` (kind byte and body, or nothing for a keepalive) into
    /// a whole transport packet. `None` once `reject_after` packets were sent.
    pub(crate) fn seal(&mut self, parts: &[&[u8]], reject_after: u64) -> Option<Bytes> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.seal_with(len, reject_after, |buf| {
            let mut at = 0;
            for part in parts {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Some(len)
        })
    }

    /// Seals a plaintext that `fill` writes straight into the packet buffer (at most
    /// `max_plaintext` bytes), so the stream layer's frames are never copied. `fill` returns the
    /// plaintext's length, or `None` to send nothing, which uses no counter.
    pub(crate) fn seal_with(
        &mut self,
        max_plaintext: usize,
        reject_after: u64,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<Bytes> {
        debug_assert_eq!(self.arena.len(), 0, "a run was left unsent");
        let len = self.seal_at_end(max_plaintext, reject_after, ARENA, fill)?;
        Some(self.take_run(len))
    }

    /// Whether a packet of up to `max_plaintext` bytes fits behind the run being built
    /// without moving it (always true for an empty run, which gets fresh room as needed).
    pub(crate) fn run_has_room(&self, max_plaintext: usize) -> bool {
        let run = self.arena.len();
        run == 0 || self.arena.capacity() - run >= packet_len(max_plaintext)
    }

    /// Bytes sealed into the run being built and not yet taken ([`Self::take_run`]).
    pub(crate) fn run_len(&self) -> usize {
        self.arena.len()
    }

    /// Seals like [`Self::seal_with`], but leaves the packet behind the ones sealed before it,
    /// end to end in one buffer, so that [`Self::take_run`] hands out a run of datagrams
    /// without copying them together; returns the packet's length. The caller checks
    /// [`Self::run_has_room`] first and takes the run when there is none.
    pub(crate) fn seal_onto_run(
        &mut self,
        max_plaintext: usize,
        reject_after: u64,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        self.seal_at_end(max_plaintext, reject_after, RUN_ARENA, fill)
    }

    /// Seals a packet behind the arena's contents; a new allocation, when one is needed, holds
    /// `arena` bytes.
    fn seal_at_end(
        &mut self,
        max_plaintext: usize,
        reject_after: u64,
        arena: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        if self.next_counter >= reject_after {
            return None;
        }
        let start = self.arena.len();
        let max_len = packet_len(max_plaintext);
        if self.arena.capacity() - start < max_len {
            debug_assert_eq!(start, 0, "no room behind the run: take it first");
            // Takes the arena's memory back from the start once every packet split off it has
            // been dropped; while some are still in flight, allocates room for more. A session
            // that sends runs (bulk streams) gets room for a whole run.
            self.arena.reserve(max_len.max(arena));
        }
        self.arena.resize(start + max_len, 0);
        let buf = &mut self.arena[start..];
        let Some(len) = fill(&mut buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + max_plaintext])
        else {
            self.arena.truncate(start);
            return None;
        };
        let counter = self.next_counter;
        self.next_counter += 1;
        let header = transport_header(self.remote_index, counter);
        buf[..TRANSPORT_HEADER_LEN].copy_from_slice(&header);
        let end = TRANSPORT_HEADER_LEN + len;
        let tag = self
            .send
            .seal_in_place(counter, &header, &mut buf[TRANSPORT_HEADER_LEN..end]);
        buf[end..end + TAG_LEN].copy_from_slice(&tag);
        self.arena.truncate(start + end + TAG_LEN);
        Some(end + TAG_LEN)
    }

    /// Hands out the first `len` bytes of the run being built (whole packets, as
    /// [`Self::seal_onto_run`] returned their lengths); what follows stays as the next run.
    pub(crate) fn take_run(&mut self, len: usize) -> Bytes {
        self.arena.split_to(len).freeze()
    }

    /// Checks the counter, decrypts `sealed` (ciphertext and tag) where it lies and marks the
    /// counter seen; returns the plaintext's length (it is `sealed[..len]` afterwards). On an
    /// error `sealed` may have been changed.
    pub(crate) fn open(
        &mut self,
        header: &[u8; TRANSPORT_HEADER_LEN],
        counter: u64,
        sealed: &mut [u8],
        reject_after: u64,
    ) -> Result<usize, OpenError> {
        if !self.replay.check(counter) {
            return Err(OpenError::Replay);
        }
        let len = sealed.len() - TAG_LEN;
        let (ciphertext, tag) = sealed.split_at_mut(len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("split at TAG_LEN from the end");
        self.recv
            .open_in_place(counter, header, ciphertext, tag)
            .map_err(|_| OpenError::Auth)?;
        // Checked after the tag, so that `Expired` says the peer really is still sending under
        // keys we consider used up (and a rekey is due), not that someone forged a counter.
        if counter >= reject_after {
            return Err(OpenError::Expired);
        }
        // Only an authenticated packet may move the window, or forgeries could push it.
        if !self.replay.accept(counter) {
            return Err(OpenError::Replay);
        }
        Ok(len)
    }

    /// The highest counter received so far, if any.
    pub(crate) fn highest_received(&self) -> Option<u64> {
        self.replay.highest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::noise::CipherState;

    fn pair(now: Instant) -> (Keypair, Keypair) {
        let keys = |a, b| TransportKeys {
            send: CipherState::new([a; 32]),
            recv: CipherState::new([b; 32]),
            handshake_hash: [0; 32],
        };
        (
            Keypair::new(keys(1, 2), 10, 20, true, now),
            Keypair::new(keys(2, 1), 20, 10, false, now),
        )
    }

    /// Packets come off one arena: once they are dropped its memory is used again, so a
    /// steady flow allocates nothing per packet.
    #[test]
    fn sealed_packets_open_and_the_arena_is_reused() {
        let (mut a, mut b) = pair(crate::tests::origin());
        let mut first = None;
        let mut reused = false;
        for i in 0..64u8 {
            let body = vec![i; 1000 + usize::from(i)];
            let packet = a.seal(&[&[i], &body], u64::MAX).expect("keys not used up");
            let addr = packet.as_ptr();
            reused |= i > 0 && first == Some(addr);
            first.get_or_insert(addr);
            let header: &[u8; TRANSPORT_HEADER_LEN] =
                packet[..TRANSPORT_HEADER_LEN].try_into().unwrap();
            let mut sealed = packet[TRANSPORT_HEADER_LEN..].to_vec();
            let len = b.open(header, u64::from(i), &mut sealed, u64::MAX).unwrap();
            assert_eq!(sealed[0], i);
            assert_eq!(&sealed[1..len], &body[..]);
        }
        assert!(reused, "the arena's first packet slot came round again");
        // Nothing to send uses no counter; a packet still held keeps its bytes.
        assert!(a.seal_with(100, u64::MAX, |_| None).is_none());
        let held = a.seal(&[b"held"], u64::MAX).unwrap();
        let copy = held.to_vec();
        for _ in 0..64 {
            let _ = a.seal(&[&[0xEE; 1200]], u64::MAX);
        }
        assert_eq!(held.to_vec(), copy);
        assert_eq!(a.sent(), 64 + 1 + 64);
    }

    /// Packets sealed onto a run lie end to end in one buffer, each whole: split at their
    /// lengths, every one opens. A run is taken before the arena runs out of room, and the
    /// next run starts where the last ended while its memory is still held.
    #[test]
    fn a_run_is_packets_end_to_end_and_each_opens() {
        let (mut a, mut b) = pair(crate::tests::origin());
        let mut counter = 0u64;
        let mut held = Vec::new();
        for round in 0..3u8 {
            let mut lens = Vec::new();
            while a.run_has_room(1200) && lens.len() < 100 {
                let len = a
                    .seal_onto_run(1200, u64::MAX, |buf| {
                        buf.fill(round);
                        Some(1200 - usize::from(round))
                    })
                    .expect("keys not used up");
                lens.push(len);
            }
            assert!(lens.len() > 1, "room for more than one packet");
            assert!(lens.len() < 100, "the arena's room ends a run");
            assert_eq!(a.run_len(), lens.iter().sum::<usize>());
            let mut run = a.take_run(a.run_len());
            assert_eq!(a.run_len(), 0);
            for len in lens {
                let packet = run.split_to(len);
                let header: &[u8; TRANSPORT_HEADER_LEN] =
                    packet[..TRANSPORT_HEADER_LEN].try_into().unwrap();
                let mut sealed = packet[TRANSPORT_HEADER_LEN..].to_vec();
                let len = b.open(header, counter, &mut sealed, u64::MAX).unwrap();
                assert!(sealed[..len].iter().all(|&x| x == round));
                counter += 1;
                held.push(packet);
            }
        }
        // A packet that is never filled takes no counter and leaves the run as it was.
        assert!(a.seal_onto_run(1200, u64::MAX, |_| None).is_none());
        assert_eq!((a.run_len(), a.sent()), (0, counter));
    }
}
