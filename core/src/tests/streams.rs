//! Streams through whole endpoints: encryption, the session and the stream layer together.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::pair::{Pair, Side};
use crate::error::{CloseReason, StreamError};
use crate::event::{Event, PeerId};
use crate::rendezvous::ServiceName;
use crate::stream::{ReadOutcome, StreamId};

/// Everything B has read per stream, and which streams it saw finish.
#[derive(Default)]
struct Sink {
    data: BTreeMap<StreamId, Vec<u8>>,
    finished: Vec<StreamId>,
}

fn drain(pair: &mut Pair, side: Side, peer: PeerId, sink: &mut Sink) {
    let events = pair.events(side);
    let streams: Vec<StreamId> = events
        .iter()
        .filter_map(|e| match e {
            Event::IncomingStream { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect();
    let now = pair.now;
    let mut buf = vec![0u8; 64 * 1024];
    for stream in streams {
        if sink.finished.contains(&stream) {
            continue;
        }
        loop {
            match pair.endpoint(side).stream_read(now, peer, stream, &mut buf) {
                Ok(ReadOutcome::Data(n)) => sink
                    .data
                    .entry(stream)
                    .or_default()
                    .extend_from_slice(&buf[..n]),
                Ok(ReadOutcome::Finished) => {
                    sink.finished.push(stream);
                    break;
                }
                Ok(ReadOutcome::Blocked) | Err(StreamError::UnknownStream) => break,
                Err(e) => panic!("read {stream}: {e}"),
            }
        }
    }
}

/// The service every test stream is for; B exposes it (see [`pair`]).
fn svc() -> ServiceName {
    ServiceName::parse("/test/sink").unwrap()
}

/// A connected pair where B exposes [`svc`].
fn pair() -> (Pair, PeerId, PeerId) {
    let mut pair = Pair::pair();
    let now = pair.now;
    pair.b().expose(now, svc(), "127.0.0.1:9").unwrap();
    let (a, b) = pair.connect();
    (pair, a, b)
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

/// Writes `data` on `stream` as flow control allows, running the pair meanwhile and draining
/// B; finishes the stream at the end.
fn send_all(
    pair: &mut Pair,
    a_peer: PeerId,
    b_peer: PeerId,
    stream: StreamId,
    data: &[u8],
    sink: &mut Sink,
) {
    let mut written = 0;
    for _ in 0..100_000 {
        let now = pair.now;
        match pair.a().stream_write(now, a_peer, stream, &data[written..]) {
            Ok(n) => written += n,
            Err(StreamError::Blocked) => {}
            Err(e) => panic!("write: {e}"),
        }
        if written == data.len() {
            let now = pair.now;
            pair.a().stream_finish(now, a_peer, stream).unwrap();
            return;
        }
        pair.run_for(Duration::from_millis(5));
        drain(pair, Side::B, b_peer, sink);
    }
    panic!("wrote only {written} of {} bytes", data.len());
}

fn settle(pair: &mut Pair, b_peer: PeerId, sink: &mut Sink, stream: StreamId) {
    for _ in 0..20_000 {
        if sink.finished.contains(&stream) {
            return;
        }
        pair.run_for(Duration::from_millis(5));
        drain(pair, Side::B, b_peer, sink);
    }
    panic!("stream never finished at the reader");
}

#[test]
fn a_stream_carries_bytes_in_order_and_its_end() {
    let (mut pair, a_peer, b_peer) = pair();
    let now = pair.now;
    let stream = pair.a().open_stream(now, a_peer, &svc()).unwrap();
    let data = pattern(1, 3 << 20);
    let mut sink = Sink::default();
    send_all(&mut pair, a_peer, b_peer, stream, &data, &mut sink);
    settle(&mut pair, b_peer, &mut sink, stream);
    assert!(sink.data[&stream] == data, "bytes differ");
    pair.run_for(Duration::from_millis(200));
    assert!(pair.a_events().contains(&Event::StreamFinished {
        peer: a_peer,
        stream
    }));
}

#[test]
fn a_stream_survives_heavy_loss_duplication_and_reordering() {
    let (mut pair, a_peer, b_peer) = pair();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    pair.filter = Some(Box::new(move |_, _, _| rng.next_u32() % 100 >= 20));
    let now = pair.now;
    let stream = pair.a().open_stream(now, a_peer, &svc()).unwrap();
    let data = pattern(2, 256 << 10);
    let mut sink = Sink::default();
    send_all(&mut pair, a_peer, b_peer, stream, &data, &mut sink);
    settle(&mut pair, b_peer, &mut sink, stream);
    assert!(sink.data[&stream] == data, "bytes differ under 20% loss");
}

#[test]
fn streams_opened_during_the_handshake_flow_once_it_completes() {
    let mut pair = Pair::pair();
    let now = pair.now;
    pair.b().expose(now, svc(), "127.0.0.1:9").unwrap();
    let (b_key, b_addr, now) = (pair.b().public_key(), pair.b_addr(), pair.now);
    let a_peer = pair.a().connect(now, b_key, b_addr).unwrap();
    let stream = pair.a().open_stream(now, a_peer, &svc()).unwrap();
    pair.a()
        .stream_write(now, a_peer, stream, b"early bytes")
        .unwrap();
    pair.a().stream_finish(now, a_peer, stream).unwrap();
    pair.run_for(Duration::from_millis(200));
    let b_peer = pair
        .b_events()
        .iter()
        .find_map(|e| match e {
            Event::Connected { peer, .. } => Some(*peer),
            _ => None,
        })
        .unwrap();
    let mut sink = Sink::default();
    drain(&mut pair, Side::B, b_peer, &mut sink);
    assert_eq!(sink.data[&stream], b"early bytes");
    assert_eq!(sink.finished, vec![stream]);
}

#[test]
fn half_close_keeps_the_other_direction_open() {
    let (mut pair, a_peer, b_peer) = pair();
    let now = pair.now;
    let stream = pair.a().open_stream(now, a_peer, &svc()).unwrap();
    pair.a()
        .stream_write(now, a_peer, stream, b"request")
        .unwrap();
    pair.a().stream_finish(now, a_peer, stream).unwrap();
    pair.run_for(Duration::from_millis(50));
    let mut at_b = Sink::default();
    drain(&mut pair, Side::B, b_peer, &mut at_b);
    assert_eq!(at_b.finished, vec![stream], "B saw A's end");
    // B answers on the same stream after A's half-close, then closes its side.
    let now = pair.now;
    pair.b()
        .stream_write(now, b_peer, stream, b"response")
        .unwrap();
    pair.b().stream_finish(now, b_peer, stream).unwrap();
    pair.run_for(Duration::from_millis(50));
    let mut buf = [0u8; 64];
    let now = pair.now;
    assert_eq!(
        pair.a().stream_read(now, a_peer, stream, &mut buf),
        Ok(ReadOutcome::Data(8))
    );
    assert_eq!(&buf[..8], b"response");
    assert_eq!(
        pair.a().stream_read(now, a_peer, stream, &mut buf),
        Ok(ReadOutcome::Finished)
    );
}

#[test]
fn a_hundred_concurrent_streams_each_deliver_their_own_bytes() {
    let (mut pair, a_peer, b_peer) = pair();
    let mut streams = Vec::new();
    for i in 0..100u64 {
        let now = pair.now;
        let stream = loop {
            match pair.a().open_stream(now, a_peer, &svc()) {
                Ok(s) => break s,
                Err(StreamError::Limit) => pair.run_for(Duration::from_millis(20)),
                Err(e) => panic!("open: {e}"),
            }
        };
        let now = pair.now;
        let data = pattern(100 + i, 10_000);
        assert_eq!(
            pair.a().stream_write(now, a_peer, stream, &data),
            Ok(data.len())
        );
        pair.a().stream_finish(now, a_peer, stream).unwrap();
        streams.push((stream, data));
    }
    let mut sink = Sink::default();
    for _ in 0..200 {
        pair.run_for(Duration::from_millis(10));
        drain(&mut pair, Side::B, b_peer, &mut sink);
    }
    assert_eq!(sink.finished.len(), 100);
    for (stream, data) in streams {
        assert!(sink.data[&stream] == data, "{stream} differs");
    }
}

#[test]
fn a_reset_reaches_the_reader_and_closing_the_session_ends_everything() {
    let (mut pair, a_peer, b_peer) = pair();
    let now = pair.now;
    let stream = pair.a().open_stream(now, a_peer, &svc()).unwrap();
    pair.a()
        .stream_write(now, a_peer, stream, b"partial")
        .unwrap();
    pair.run_for(Duration::from_millis(50));
    let now = pair.now;
    pair.a().stream_reset(now, a_peer, stream, 42).unwrap();
    pair.run_for(Duration::from_millis(50));
    assert!(pair.b_events().contains(&Event::StreamReset {
        peer: b_peer,
        stream,
        code: 42
    }));
    let now = pair.now;
    pair.a().close(now, a_peer);
    pair.run_for(Duration::from_millis(50));
    assert!(pair.b_events().iter().any(|e| matches!(
        e,
        Event::SessionClosed {
            reason: CloseReason::Peer(_),
            ..
        }
    )));
    let now = pair.now;
    assert_eq!(
        pair.b().stream_write(now, b_peer, stream, b"x"),
        Err(StreamError::UnknownPeer)
    );
}

#[test]
fn an_idle_session_with_finished_streams_has_only_keepalive_timers() {
    let (mut pair, a_peer, b_peer) = pair();
    let now = pair.now;
    let stream = pair.a().open_stream(now, a_peer, &svc()).unwrap();
    pair.a().stream_write(now, a_peer, stream, b"x").unwrap();
    pair.a().stream_finish(now, a_peer, stream).unwrap();
    pair.run_for(Duration::from_millis(100));
    let mut sink = Sink::default();
    drain(&mut pair, Side::B, b_peer, &mut sink);
    let now = pair.now;
    pair.b().stream_finish(now, b_peer, stream).unwrap();
    pair.run_for(Duration::from_secs(2));
    let now = pair.now;
    assert_eq!(
        pair.a().stream_read(now, a_peer, stream, &mut [0; 8]),
        Ok(ReadOutcome::Finished)
    );
    pair.run_for(Duration::from_secs(2));
    let before = pair.a().stats().datagrams_out;
    pair.run_for(Duration::from_secs(60));
    let sent = pair.a().stats().datagrams_out - before;
    assert!(sent <= 6, "A sent {sent} datagrams in an idle minute");
    assert_eq!(pair.a().stream_stats(a_peer).unwrap().open_streams, 0);
}

#[test]
fn a_stream_for_a_service_the_peer_does_not_expose_is_refused() {
    let (mut pair, a_peer, b_peer) = pair();
    let other = ServiceName::parse("/not/here").unwrap();
    let now = pair.now;
    let stream = pair.a().open_stream(now, a_peer, &other).unwrap();
    pair.a()
        .stream_write(now, a_peer, stream, b"hello?")
        .unwrap();
    pair.run_for(Duration::from_millis(100));
    let code = crate::service::UNKNOWN_SERVICE;
    assert!(
        pair.a_events().contains(&Event::StreamReset {
            peer: a_peer,
            stream,
            code
        }),
        "{:?}",
        pair.a_events()
    );
    assert!(
        !pair
            .b_events()
            .iter()
            .any(|e| matches!(e, Event::IncomingStream { .. }))
    );
    assert_eq!(pair.b().stats().streams_refused, 1);
    let _ = b_peer;
}

#[test]
fn incoming_streams_carry_the_service_and_its_target() {
    let (mut pair, a_peer, b_peer) = pair();
    let now = pair.now;
    let stream = pair.a().open_stream(now, a_peer, &svc()).unwrap();
    pair.run_for(Duration::from_millis(100));
    let expected = Event::IncomingStream {
        peer: b_peer,
        stream,
        service: svc(),
        target: "127.0.0.1:9".into(),
        origin: None,
        proxy: None,
    };
    assert!(pair.b_events().contains(&expected), "{:?}", pair.b_events());
}

// ----- a session the peer no longer has ---------------------------------------------------

/// Carries one stream of `len` patterned bytes from A's `a_peer` to B's `b_peer` and checks
/// them at B.
fn carry(pair: &mut Pair, a_peer: PeerId, b_peer: PeerId, seed: u64, len: usize) {
    let now = pair.now;
    let stream = pair.a().open_stream(now, a_peer, &svc()).unwrap();
    let data = pattern(seed, len);
    let mut sink = Sink::default();
    send_all(pair, a_peer, b_peer, stream, &data, &mut sink);
    settle(pair, b_peer, &mut sink, stream);
    assert!(sink.data[&stream] == data, "bytes differ");
}

/// The handle of the last `Connected` on `side`.
fn last_connected(pair: &Pair, side: Side) -> PeerId {
    pair.events(side)
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Connected { peer, .. } => Some(*peer),
            _ => None,
        })
        .expect("connected")
}

fn closes(pair: &Pair, side: Side) -> Vec<(PeerId, CloseReason)> {
    pair.events(side)
        .iter()
        .filter_map(|e| match e {
            Event::SessionClosed { peer, reason, .. } => Some((*peer, *reason)),
            _ => None,
        })
        .collect()
}

/// `side` closes its session `peer` and its Close never reaches the other side.
fn close_losing_the_close(pair: &mut Pair, side: Side, peer: PeerId) {
    pair.filter = Some(Box::new(move |from, _, _| from != side.index()));
    let now = pair.now;
    pair.endpoint(side).close(now, peer);
    pair.run_for(Duration::from_millis(50));
    pair.filter = None;
}

/// B ends its session with A and its Close is lost. A, hearing nothing, checks on B with a
/// handshake that names the session; B no longer has it and answers with a new one. A must
/// start over too (`PeerReset`, a new handle, fresh streams), not carry its old stream state
/// into B's fresh one, which left the two stream layers disagreeing until both closed with a
/// protocol violation (found by the adversarial proptest).
#[test]
fn a_handshake_answered_with_a_new_session_starts_over_on_both_sides() {
    let (mut pair, a_peer, b_peer) = pair();
    carry(&mut pair, a_peer, b_peer, 1, 64 << 10);
    close_losing_the_close(&mut pair, Side::B, b_peer);
    for _ in 0..130 {
        if !closes(&pair, Side::A).is_empty() {
            break;
        }
        pair.run_for(Duration::from_secs(1));
    }
    assert_eq!(
        closes(&pair, Side::A),
        vec![(a_peer, CloseReason::PeerReset)]
    );
    pair.run_for(Duration::from_millis(100));
    let (a2, b2) = (
        last_connected(&pair, Side::A),
        last_connected(&pair, Side::B),
    );
    assert!(a2 != a_peer && b2 != b_peer, "new handles on both sides");
    carry(&mut pair, a2, b2, 2, 256 << 10);
    assert_eq!(closes(&pair, Side::B), vec![(b_peer, CloseReason::Local)]);
    assert_eq!(
        closes(&pair, Side::A).len(),
        1,
        "{:?}",
        closes(&pair, Side::A)
    );
}

/// A ends its session with B and its Close is lost, then connects again at once. B still has
/// the old session; A's initiation names a new one, so once A confirms the keys B ends the
/// old session (`PeerReset`) and the new one starts with fresh streams on both sides. (B
/// used to take it as a rekey of the old session.)
#[test]
fn a_new_session_after_a_lost_close_replaces_the_old_one_on_the_peer() {
    let (mut pair, a_peer, b_peer) = pair();
    carry(&mut pair, a_peer, b_peer, 3, 64 << 10);
    close_losing_the_close(&mut pair, Side::A, a_peer);
    let (b_key, b_addr, now) = (pair.b().public_key(), pair.b_addr(), pair.now);
    let a2 = pair.a().connect(now, b_key, b_addr).expect("valid key");
    pair.run_for(Duration::from_millis(200));
    assert_eq!(
        closes(&pair, Side::B),
        vec![(b_peer, CloseReason::PeerReset)]
    );
    let b2 = last_connected(&pair, Side::B);
    assert_ne!(b2, b_peer);
    carry(&mut pair, a2, b2, 4, 256 << 10);
    assert_eq!(closes(&pair, Side::A), vec![(a_peer, CloseReason::Local)]);
    assert_eq!(closes(&pair, Side::B).len(), 1);
}

/// Both sides initiate at once (hole punching, the first attempts lost); the larger key
/// answers the smaller's initiation and keeps its own, and the smaller side is up first. The
/// larger side's next retransmission must resume the session its own answer started, not
/// start another: that reset the fresh session, and with the smaller side's confirmation
/// delayed rather than lost, left each side on keys the other had dropped (found in review;
/// both variants failed before `Session::session_to_name`).
fn simultaneous_open_with_a_slow_confirmation(deliver_late: bool) {
    use crate::wire::header::PacketKind;
    let mut pair = Pair::pair();
    let now = pair.now;
    pair.b().expose(now, svc(), "127.0.0.1:9").unwrap();
    let (ka, kb) = (pair.a().public_key(), pair.b().public_key());
    let (large, small) = if ka > kb {
        (Side::A, Side::B)
    } else {
        (Side::B, Side::A)
    };
    let (l, s) = (large.index(), small.index());
    let (l_to, s_to) = (pair.source(s), pair.source(l));
    let (key_of_s, key_of_l) = (
        pair.endpoint(small).public_key(),
        pair.endpoint(large).public_key(),
    );
    let kind = |bytes: &[u8], k: PacketKind| bytes.get(1) == Some(&(k as u8));
    // Nothing passes while both start: S at 0 s, L at 2.9 s.
    pair.filter = Some(Box::new(|_, _, _| false));
    pair.endpoint(small).connect(now, key_of_l, s_to).unwrap();
    pair.run_for(Duration::from_millis(2900));
    let now = pair.now;
    pair.endpoint(large).connect(now, key_of_s, l_to).unwrap();
    pair.run_for(Duration::from_millis(3100));
    // S's initiations reach L and L's responses reach S; S's confirmation is lost.
    pair.filter = Some(Box::new(move |from, _, bytes: &[u8]| {
        (from == s && kind(bytes, PacketKind::Initiation))
            || (from == l && kind(bytes, PacketKind::Response))
    }));
    let up = |pair: &Pair, side| {
        pair.events(side)
            .iter()
            .any(|e| matches!(e, Event::Connected { .. }))
    };
    for _ in 0..1000 {
        if up(&pair, small) {
            break;
        }
        pair.run_for(Duration::from_millis(10));
    }
    assert!(up(&pair, small) && !up(&pair, large), "S up first");
    // L's retransmissions reach S, and S's answers; S's transport packets still do not.
    pair.filter = Some(Box::new(move |from, _, bytes: &[u8]| {
        from == l || (from == s && kind(bytes, PacketKind::Response))
    }));
    pair.run_for(Duration::from_secs(10));
    if deliver_late {
        let confirmation = pair
            .sent
            .iter()
            .find(|x| x.from == s && kind(&x.transmit.payload, PacketKind::Transport))
            .map(|x| x.transmit.payload.clone())
            .expect("S confirmed");
        pair.filter = None;
        pair.put_on_link(small, confirmation);
        pair.run_for(Duration::from_millis(100));
    }
    pair.filter = None;
    pair.run_for(Duration::from_millis(200));
    assert_eq!(closes(&pair, small), vec![], "S's fresh session was reset");
    assert_eq!(closes(&pair, large), vec![], "L's fresh session was reset");
    // One session, and it carries data both ways.
    let (lp, sp) = (last_connected(&pair, large), last_connected(&pair, small));
    let now = pair.now;
    pair.endpoint(large)
        .send_datagram(now, lp, b"from L")
        .unwrap();
    pair.endpoint(small)
        .send_datagram(now, sp, b"from S")
        .unwrap();
    pair.run_for(Duration::from_millis(100));
    assert_eq!(pair.datagrams(small), [Bytes::from_static(b"from L")]);
    assert_eq!(pair.datagrams(large), [Bytes::from_static(b"from S")]);
}

#[test]
fn regression_simultaneous_open_with_a_lost_confirmation_keeps_one_session() {
    simultaneous_open_with_a_slow_confirmation(false);
}

#[test]
fn regression_simultaneous_open_with_a_delayed_confirmation_keeps_one_session() {
    simultaneous_open_with_a_slow_confirmation(true);
}

/// A bulk stream leaves as runs of datagrams sealed end to end (one segmentation-offload send
/// each): every datagram of a run but the last has the run's segment size, the runs are at
/// most what the runtime asked for, and the datagrams, split as the kernel splits them, carry
/// the stream intact.
#[test]
fn a_bulk_stream_leaves_in_runs_that_split_into_whole_datagrams() {
    let (mut pair, a_peer, b_peer) = pair();
    let now = pair.now;
    let stream = pair.a().open_stream(now, a_peer, &svc()).unwrap();
    let data = pattern(7, 200_000);
    let written = pair.a().stream_write(now, a_peer, stream, &data).unwrap();
    assert_eq!(written, data.len(), "the stream's window takes it all");
    pair.a().stream_finish(now, a_peer, stream).unwrap();
    let mut runs = Vec::new();
    while let Some(t) = pair.a().poll_transmit_run(10) {
        runs.push(t);
    }
    let longest = runs.iter().map(|t| t.datagrams()).max().unwrap();
    assert!(longest > 1, "no run of more than one datagram");
    assert!(longest <= 10, "a run of {longest} datagrams, 10 asked for");
    for t in &runs {
        if let Some(size) = t.segment_size {
            assert!(t.ttl.is_none());
            let last = t.payload.len() - (t.datagrams() - 1) * size;
            assert!(last > 0 && last <= size, "last datagram {last} of {size}");
        }
        for datagram in t.clone().into_datagrams() {
            pair.put_on_link(Side::A, datagram.payload);
        }
    }
    let mut sink = Sink::default();
    settle(&mut pair, b_peer, &mut sink, stream);
    assert!(sink.data[&stream] == data, "bytes differ");
}
