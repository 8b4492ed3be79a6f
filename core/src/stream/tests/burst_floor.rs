//! The burst floor (`Mux::poll_packet`): with data in flight, new stream data waits until the
//! window has room for a burst (a millisecond of the rate, at most a third of the window), so
//! that each ACK sends one large burst instead of the few packets it freed; control frames go
//! at once.

use super::*;

/// NewReno without pacing, so that only the window decides.
fn config() -> StreamConfig {
    StreamConfig {
        congestion: CongestionControl::NewReno,
        pacing: false,
        ..Default::default()
    }
}

/// Every packet `mux` sends at `now`, until it has nothing more it may send.
fn drain(mux: &mut Mux, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 1200];
    std::iter::from_fn(|| mux.poll_packet(now, &mut buf).map(|n| buf[..n].to_vec())).collect()
}

/// The peer receives `packets` at `now` and acknowledges them (at once, or when its ACK delay
/// runs out); returns the ACK packets and when they left.
fn acknowledge(peer: &mut Mux, now: Instant, packets: &[Vec<u8>]) -> (Vec<Vec<u8>>, Instant) {
    for p in packets {
        peer.handle_packet(now, p);
    }
    let acks = drain(peer, now);
    if !acks.is_empty() {
        return (acks, now);
    }
    let (at, _) = peer.poll_timeout().expect("an ACK is due");
    peer.handle_timeout(at);
    (drain(peer, at), at)
}

/// A sender with a full initial window in flight and 200 kB more waiting, and its peer.
fn sending() -> (Mux, Mux, Vec<Vec<u8>>, Instant) {
    let t0 = crate::tests::origin();
    let mut a = Mux::new(config(), Role::Initiator, t0);
    let b = Mux::new(config(), Role::Responder, t0);
    let id = a.open().unwrap();
    assert!(a.write(id, &vec![7u8; 200_000]).unwrap() > 100_000);
    let flight = drain(&mut a, t0);
    assert!(flight.len() >= 10, "the initial window: {}", flight.len());
    assert!(a.recovery.bytes_in_flight + 1200 > a.recovery.cc.window());
    (a, b, flight, t0)
}

fn room(mux: &Mux) -> u64 {
    mux.recovery.cc.window() - mux.recovery.bytes_in_flight
}

#[test]
fn new_data_waits_for_room_for_a_burst_then_goes_in_one() {
    let (mut a, mut b, flight, t0) = sending();
    let mut now = t0 + 2 * MS;
    let mut delivered = 0;
    let burst = loop {
        assert!(
            delivered < flight.len(),
            "all acknowledged and nothing sent"
        );
        let (acks, at) = acknowledge(&mut b, now, &flight[delivered..delivered + 2]);
        delivered += 2;
        now = at + MS;
        for ack in &acks {
            a.handle_packet(now, ack);
        }
        let sent = drain(&mut a, now);
        if !sent.is_empty() {
            break sent;
        }
        assert!(
            room(&a) >= 2 * 1100,
            "an ACK freed room for packets ({}), yet the data waits for a burst's",
            room(&a)
        );
    };
    assert!(
        delivered >= 4,
        "the first ACK's room was not enough for a burst"
    );
    assert!(
        burst.len() >= 6,
        "the burst goes out as one: {} packets",
        burst.len()
    );
}

#[test]
fn a_control_frame_goes_at_once_without_waiting_for_a_burst() {
    let (mut a, mut b, flight, t0) = sending();
    let (acks, at) = acknowledge(&mut b, t0 + 2 * MS, &flight[..2]);
    let now = at + MS;
    for ack in &acks {
        a.handle_packet(now, ack);
    }
    assert!(room(&a) > 0);
    a.ping();
    let sent = drain(&mut a, now);
    assert!(!sent.is_empty(), "the PING went");
    assert!(sent.len() <= 4, "and no burst with it: {}", sent.len());
}
