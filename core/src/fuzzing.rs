//! Entry points for the fuzz targets in `core/fuzz` (cargo-fuzz, nightly) and for the tests
//! that replay their corpora on the stable toolchain. Not part of the API: compiled only for
//! tests and with the `fuzzing` feature.
//!
//! Each function takes bytes an attacker controls, must never panic, and checks what must hold
//! for any input (a decoded message re-encodes to something that decodes the same; the stream
//! layer never buffers more than its window).

use std::time::{Duration, Instant};

use crate::rendezvous::{ClientMessage, ServerMessage};
use crate::stream::{Mux, ReadOutcome, Role, StreamConfig, StreamEvent};
use crate::wire::Packet;
use crate::wire::control::Control;
use crate::wire::payload::Payload;
use crate::wire::stun::StunMessage;

/// A datagram as the endpoint first sees it: the data-plane header, then (as if it had
/// decrypted) the payload's kind byte.
pub fn header(data: &[u8]) {
    let _ = Packet::parse(data);
    let _ = Payload::parse(data);
}

/// A control message body.
pub fn control(data: &[u8]) {
    if let Ok(message) = Control::decode(data) {
        let mut again = Vec::new();
        message.encode(&mut again);
        assert_eq!(Control::decode(&again).ok(), Some(message));
    }
}

/// A STUN message.
pub fn stun(data: &[u8]) {
    if let Ok(message) = StunMessage::parse(data) {
        assert_eq!(StunMessage::parse(&message.encode()).ok(), Some(message));
    }
}

/// A rendezvous message body, read as either direction.
pub fn rendezvous(data: &[u8]) {
    if let Ok(message) = ClientMessage::decode(data) {
        assert_eq!(ClientMessage::decode(&message.encode()).ok(), Some(message));
    }
    if let Ok(message) = ServerMessage::decode(data) {
        assert_eq!(ServerMessage::decode(&message.encode()).ok(), Some(message));
    }
}

/// Stream-layer packets from a peer of an established session: `data` is a sequence of
/// packets, each a length byte then that many bytes (a decrypted payload: packet number, then
/// frames). After each packet the mux's output is drained and every readable stream read, as
/// the session does; what it buffers never exceeds its connection window.
pub fn stream_frames(now: Instant, data: &[u8]) {
    let config = StreamConfig::default();
    let window = config.connection_receive_window;
    let mut mux = Mux::new(config, Role::Initiator, now);
    let mut rest = data;
    let mut at = now;
    let mut out = [0u8; 1500];
    let mut read = [0u8; 4096];
    while let Some((&len, tail)) = rest.split_first() {
        let (packet, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        at += Duration::from_millis(1);
        mux.handle_packet(at, packet);
        assert!(
            mux.buffered_bytes() as u64 <= window,
            "buffered past the window"
        );
        mux.handle_timeout(at);
        while mux.poll_packet(at, &mut out).is_some() {}
        while let Some(event) = mux.poll_event() {
            if let StreamEvent::Readable(id) = event {
                while let Ok(ReadOutcome::Data(_)) = mux.read(id, &mut read) {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every file of every corpus in `core/fuzz/corpus` is replayed here, so a crash the fuzzer
    //! found stays fixed on the stable toolchain.

    use std::path::Path;

    fn replay(target: &str, run: impl Fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|entry| entry.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus {} is empty", dir.display());
        for file in &files {
            let data = std::fs::read(file).expect("corpus file");
            run(&data);
        }
        println!("{target}: {} corpus files replayed", files.len());
    }

    #[test]
    fn header_corpus() {
        replay("header", super::header);
    }

    #[test]
    fn control_corpus() {
        replay("control", super::control);
    }

    #[test]
    fn stun_corpus() {
        replay("stun", super::stun);
    }

    #[test]
    fn rendezvous_corpus() {
        replay("rendezvous", super::rendezvous);
    }

    #[test]
    fn stream_frames_corpus() {
        let now = crate::tests::origin();
        replay("stream_frames", |data| super::stream_frames(now, data));
    }
}
