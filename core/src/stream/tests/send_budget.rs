//! The connection's send buffer: data written on all streams and not yet acknowledged stays
//! below [`StreamConfig::connection_send_buffer`], and the streams it refused hear `Writable`
//! when acknowledgements or a reset free room.

use super::*;

const KIB: usize = 1024;

fn config() -> StreamConfig {
    StreamConfig {
        stream_send_buffer: 64 * KIB as u64,
        connection_send_buffer: 96 * KIB as u64,
        ..Default::default()
    }
}

/// Two streams opened by side 0, nothing sent yet.
fn two_streams(pair: &mut Pair) -> (StreamId, StreamId) {
    let side = pair.side(0);
    let a = side.mux.open().unwrap();
    let b = side.mux.open().unwrap();
    side.streams.insert(a, StreamLog::default());
    side.streams.insert(b, StreamLog::default());
    (a, b)
}

#[test]
fn the_connection_buffer_bounds_the_sum_of_the_streams_and_wakes_a_refused_one() {
    let mut pair = Pair::new(config(), Link::clean(10 * MS), 1);
    let (a, b) = two_streams(&mut pair);
    let side = pair.side(0);
    assert_eq!(side.write(a, 80 * KIB), 64 * KIB, "a stream's own limit");
    assert_eq!(
        side.write(b, 64 * KIB),
        32 * KIB,
        "what is left of the connection's"
    );
    assert_eq!(side.write(b, 1), 0, "the connection's buffer is full");
    assert_eq!(side.write(a, 1), 0, "and so is the stream's");
    assert_eq!(side.mux.send_buffered, 96 * KIB as u64);
    // The peer reads; acknowledgements free room and both streams hear it.
    pair.advance(500 * MS);
    let side = pair.side(0);
    assert_eq!(side.mux.send_buffered, 0, "all of it acknowledged");
    assert!(side.streams[&a].writable >= 1, "a hears Writable");
    assert!(side.streams[&b].writable >= 1, "b hears Writable");
    assert_eq!(side.write(b, 64 * KIB), 64 * KIB);
    pair.advance(500 * MS);
    assert_eq!(pair.side(1).streams[&b].read, 96 * KIB as u64);
    assert_eq!(pair.side(1).streams[&a].read, 64 * KIB as u64);
}

/// Buffers larger than the peer's 64 KiB stream window, so unsent bytes stay in them while
/// the peer does not read.
fn deep_config() -> StreamConfig {
    StreamConfig {
        stream_receive_window: 64 * KIB as u64,
        stream_send_buffer: 128 * KIB as u64,
        connection_send_buffer: 160 * KIB as u64,
        ..Default::default()
    }
}

/// With the reader stalled: stream a writes 128 KiB, `settle` passes (the peer's 64 KiB
/// window of it leaves and is acknowledged), then b takes what is left of the connection's
/// buffer and is refused more. Returns the pair and the two streams.
fn a_sent_and_b_refused(seed: u64, settle: Duration) -> (Pair, StreamId, StreamId) {
    let mut pair = Pair::new(deep_config(), Link::clean(10 * MS), seed);
    pair.side(1).reading = false;
    let (a, b) = two_streams(&mut pair);
    assert_eq!(pair.side(0).write(a, 128 * KIB), 128 * KIB);
    pair.advance(settle);
    let side = pair.side(0);
    assert_eq!(
        side.mux.send_buffered,
        64 * KIB as u64,
        "the half past the peer's window waits"
    );
    assert_eq!(
        side.write(b, 128 * KIB),
        96 * KIB,
        "the rest of the connection's"
    );
    assert_eq!(
        side.write(b, 1),
        0,
        "refused: the connection's buffer is full"
    );
    (pair, a, b)
}

#[test]
fn a_reset_gives_its_bytes_back_to_the_connection_and_wakes_a_refused_stream() {
    let (mut pair, a, b) = a_sent_and_b_refused(2, 300 * MS);
    let side = pair.side(0);
    while side.mux.poll_event().is_some() {}
    side.mux.reset(a, 9);
    side.streams.get_mut(&a).unwrap().reset_sent = true;
    assert_eq!(
        side.mux.send_buffered,
        96 * KIB as u64,
        "a's bytes are gone"
    );
    let mut woken = false;
    while let Some(ev) = side.mux.poll_event() {
        woken |= ev == StreamEvent::Writable(b);
    }
    assert!(woken, "b hears Writable");
    assert_eq!(side.write(b, 64 * KIB), 32 * KIB, "b's own limit is left");
}

#[test]
fn a_peers_stop_sending_gives_its_bytes_back_to_the_connection() {
    let (mut pair, a, b) = a_sent_and_b_refused(3, 100 * MS);
    // The peer stops stream a; the half of it that never left is dropped.
    pair.side(1).mux.stop_sending(a, 5);
    pair.side(1).streams.get_mut(&a).unwrap().stopped = true;
    pair.advance(100 * MS);
    let side = pair.side(0);
    assert!(side.streams[&a].stop_seen, "the sender heard STOP_SENDING");
    assert_eq!(
        side.mux.send_buffered,
        32 * KIB as u64,
        "a's bytes are gone, and b's past its window are left"
    );
    assert!(side.streams[&b].writable >= 1, "b hears Writable");
    assert_eq!(side.write(b, 128 * KIB), 96 * KIB, "up to b's own limit");
}

/// Two bulk streams refill their buffers whenever their own data is acknowledged and keep the
/// connection's buffer full; a third stream that found it full still gets its turn, and soon.
#[test]
fn streams_refilling_the_connection_buffer_do_not_starve_a_refused_one() {
    let mut pair = Pair::new(config(), Link::clean(10 * MS), 4);
    let side = pair.side(0);
    side.refill = 64 * KIB;
    let (a, c) = two_streams(&mut pair);
    let side = pair.side(0);
    let b = side.mux.open().unwrap();
    side.streams.insert(b, StreamLog::default());
    assert_eq!(side.write(a, 64 * KIB), 64 * KIB);
    assert_eq!(side.write(c, 64 * KIB), 32 * KIB);
    assert_eq!(
        side.write(b, 64 * KIB),
        0,
        "refused: the connection's buffer is full"
    );
    // The bulk streams have more waiting too: refused, they wait for Writable.
    assert_eq!(side.write(a, 1), 0);
    assert_eq!(side.write(c, 1), 0);
    // b refills on Writable too (side.refill), as a forwarder with data waiting would.
    pair.advance(200 * MS);
    let side = pair.side(0);
    let (wa, wb, wc) = (
        side.streams[&a].written,
        side.streams[&b].written,
        side.streams[&c].written,
    );
    assert!(
        wa > 64 * KIB as u64 && wc > 32 * KIB as u64,
        "the bulk streams went on: {wa} {wc}"
    );
    assert!(
        wb > 0,
        "b wrote nothing in 200 ms beside {wa} and {wc} bytes"
    );
}
