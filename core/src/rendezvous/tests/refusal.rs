//! A registration the server refuses: requests waiting for it fail at once with the server's
//! reason (not "not registered in time" ten seconds later), later ones too while the refusal
//! stands, and the daemon tries again at doubling intervals, also when the server closed its
//! session.

use std::time::Duration;

use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn refused(h: &Harness, i: usize) -> Vec<(Duration, String)> {
    h.client_events(i)
        .into_iter()
        .filter_map(|(at, e)| match e {
            ClientEvent::RegistrationFailed { code, detail } => {
                Some((at - h.origin, format!("{code:?}: {detail}")))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn requests_waiting_for_a_refused_registration_fail_at_once_with_the_reason() {
    let mut h = Harness::new(limited(&[("good", 10, 10)]));
    let a = h.add_with(ClientConfig::new("bad"));
    // Asked before the answer: it waits for the registration, which is refused.
    let early = h.with(a, |c, now| c.lookup(now, name("/x")));
    h.run(SECOND);
    let failed: Vec<(u64, ErrorCode, String)> = h
        .events(a)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::RequestFailed {
                request,
                code,
                detail,
            } => Some((request, code, detail)),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!((failed[0].0, failed[0].1), (early, ErrorCode::BadToken));
    assert!(
        failed[0].2.contains("refused the token"),
        "the server's reason: {}",
        failed[0].2
    );
    // Asked while the refusal stands: fails at once too.
    let at = h.now;
    let late = h.with(a, |c, now| c.lookup(now, name("/x")));
    h.run(Duration::from_millis(10));
    let last = *h.failures(a).last().unwrap();
    assert_eq!((last.1, last.2), (late, ErrorCode::BadToken));
    assert_eq!(last.0, at - h.origin, "at once");
}

#[test]
fn a_refused_registration_is_tried_again_at_doubling_intervals() {
    let mut h = Harness::new(limited(&[("good", 10, 10)]));
    let a = h.add_with(ClientConfig::new("bad"));
    h.run(Duration::from_secs(200));
    let at: Vec<u64> = refused(&h, a).iter().map(|(t, _)| t.as_secs()).collect();
    // Refused at once, then after 30 s, then 60 s after that.
    assert_eq!(at, [0, 30, 90], "{:?}", refused(&h, a));
}

#[test]
fn a_session_closed_after_a_refusal_is_not_reopened_before_the_retry() {
    let mut h = Harness::new(limited(&[("good", 10, 10)]));
    let a = h.add_with(ClientConfig::new("bad"));
    h.run(SECOND);
    assert_eq!(refused(&h, a).len(), 1);
    // The server evicts the refused daemon's session.
    h.with(a, |c, now| c.session_lost(now));
    h.run(Duration::from_secs(20));
    assert!(!h.with(a, |c, _| c.poll_connect()), "reopened too early");
    h.run(Duration::from_secs(15));
    assert!(h.with(a, |c, _| c.poll_connect()), "reopened for the retry");
}
