//! NAT traversal in the simulator, asserted: every NAT pair gets a working path, direct
//! wherever RFC 4787 permits one and through the relay elsewhere (within the configured
//! fallback bound); the Linux conntrack clash is defeated by TTL-limited first probes, and two
//! daemons behind one NAT find each other on their LAN. Port prediction takes a peer behind a
//! sequential symmetric NAT direct to any endpoint-independent mapping.

use std::time::Duration;

use burrow_core::config::SessionConfig;
use burrow_sim::traversal::{Outcome, Profile, RunOptions, run_pair_with, run_same_nat};

fn check_matrix(loss: f64, seeds: &[u64]) {
    let profiles = Profile::all();
    let mut wrong = Vec::new();
    let mut direct_rtts = Vec::new();
    let mut relayed = Vec::new();
    for (i, a) in profiles.iter().enumerate() {
        for b in &profiles[i..] {
            for &seed in seeds {
                let r = run_pair_with(
                    a,
                    b,
                    seed,
                    RunOptions {
                        loss,
                        ..RunOptions::default()
                    },
                );
                if !r.as_expected() {
                    wrong.push(format!("{r} (seed {seed})"));
                }
                match r.outcome {
                    Outcome::Direct(t) => direct_rtts.push(t.as_secs_f64() / r.rtt.as_secs_f64()),
                    Outcome::Relay { first_byte, .. } => relayed.push((first_byte, r.to_string())),
                    Outcome::Fail(_) => {}
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} runs at {loss} loss differ from RFC 4787:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // The relay takes over once punching has had `relay_after`; the first byte follows within
    // a few relay round trips, loss permitting.
    let bound =
        SessionConfig::default().relay_after + Duration::from_secs(if loss == 0.0 { 1 } else { 4 });
    for (t, r) in &relayed {
        assert!(*t <= bound, "relay fallback too slow: {r}");
    }
    direct_rtts.sort_by(f64::total_cmp);
    let median = direct_rtts[direct_rtts.len() / 2];
    println!(
        "loss {loss}: {} direct runs, median first byte {median:.2} RTT",
        direct_rtts.len()
    );
    if loss == 0.0 {
        // From the connect request: one round trip to the server for the lookup, the punch
        // lead, one handshake round trip and half a round trip for the byte.
        assert!(median <= 4.5, "median time to first byte {median:.2} RTT");
    }
}

#[test]
fn every_pair_is_direct_exactly_where_rfc_4787_permits() {
    check_matrix(0.0, &[0, 1, 2]);
}

#[test]
fn the_matrix_holds_with_two_percent_loss() {
    check_matrix(0.02, &[3, 4]);
}

#[test]
fn ttl_limited_first_probes_defeat_the_linux_conntrack_clash() {
    let clash = Profile::all()
        .into_iter()
        .find(|p| p.name == "linux-clash")
        .unwrap();
    for seed in 0..3 {
        let limited = run_pair_with(&clash, &clash, seed, RunOptions::default());
        assert!(
            matches!(limited.outcome, Outcome::Direct(_)),
            "seed {seed}: {limited}"
        );
        let full = run_pair_with(
            &clash,
            &clash,
            seed,
            RunOptions {
                probe_ttl: Some(64),
                ..RunOptions::default()
            },
        );
        println!("seed {seed}: TTL-limited: {limited}; full-TTL probes: {full}");
    }
}

#[test]
fn two_daemons_behind_one_nat_without_hairpin_connect_over_their_lan() {
    for seed in 0..3 {
        let r = run_same_nat(seed, RunOptions::default());
        assert!(matches!(r.outcome, Outcome::Direct(_)), "seed {seed}: {r}");
    }
}

/// Regression (cone-random pair, seed 3, 2% loss): both daemons' early initiations were lost,
/// so the larger key answered the smaller's initiation (its own attempts having gone
/// unanswered) while the smaller answered the larger's. Each abandoned its own handshake and
/// dropped the other's answer; neither session came up, and no relay could help. The larger
/// key now keeps its handshake in flight until the session is up.
#[test]
fn regression_both_sides_answering_each_other_still_connects() {
    let random = Profile::all()
        .into_iter()
        .find(|p| p.name == "cone-random")
        .unwrap();
    let r = burrow_sim::traversal::run_pair(&random, &random, 3, 0.02);
    assert!(matches!(r.outcome, Outcome::Direct(_)), "{r}");
}

/// Regression (5% loss; linux-clash pair seed 7, cone-random with linux-clash seed 17): lost
/// probes let punching end in the conntrack clash, so the pair fell back to the relay, and
/// the challenges that look for a direct path refreshed the clash entries forever. The rounds
/// now start with TTL-limited probes, line up on both sides, and grow past the 30 s in which
/// Linux forgets an unreplied entry; the pairs end direct. (Since the first probes' TTL comes
/// from the hop count to the server, cone-random with linux-clash seed 17 goes direct while
/// punching; seed 43 was one that still fell back to the relay first. Path MTU probes changed
/// the loss draws: seeds 27 and 2 are the ones that take the relayed road now.)
#[test]
fn regression_relayed_pairs_upgrade_through_a_conntrack_clash() {
    let profiles = Profile::all();
    let find = |name: &str| profiles.iter().find(|p| p.name == name).unwrap();
    for (a, b, seed) in [
        ("linux-clash", "linux-clash", 27),
        ("cone-random", "linux-clash", 2),
    ] {
        let r = burrow_sim::traversal::run_pair(find(a), find(b), seed, 0.05);
        assert!(
            matches!(
                r.outcome,
                Outcome::Relay {
                    upgraded: Some(_),
                    ..
                }
            ),
            "{r}"
        );
    }
}

#[test]
fn the_matrix_holds_with_five_percent_loss() {
    check_matrix(0.05, &[5, 6]);
}

fn profile(name: &str) -> Profile {
    Profile::all()
        .into_iter()
        .find(|p| p.name == name)
        .expect("a matrix profile")
}

/// A sequential symmetric NAT maps us toward the peer just above our reflexive port; the peer
/// punches there too and gets in even through its own port-restricted filter. Without
/// prediction these pairs were relayed.
#[test]
fn port_prediction_takes_a_symmetric_seq_peer_direct() {
    let seq = profile("symmetric-seq");
    for other in ["port-restricted", "cone-random", "linux-clash", "cgn"] {
        let other = profile(other);
        for seed in 0..3 {
            for (a, b) in [(&other, &seq), (&seq, &other)] {
                let r = burrow_sim::traversal::run_pair(a, b, seed, 0.0);
                assert!(r.direct_possible, "{r}");
                assert!(matches!(r.outcome, Outcome::Direct(_)), "seed {seed}: {r}");
            }
        }
    }
}

/// Both sides behind sequential symmetric NATs: each side's predictions make further mappings
/// on its own NAT, so neither guesses the port the other sends from; the relay carries it.
#[test]
fn port_prediction_does_not_pair_two_symmetric_seq_nats() {
    let seq = profile("symmetric-seq");
    for seed in 0..2 {
        let r = burrow_sim::traversal::run_pair(&seq, &seq, seed, 0.0);
        assert!(!r.direct_possible, "{r}");
        assert!(r.as_expected(), "seed {seed}: {r}");
    }
}

/// Regression (5% loss, linux-clash with symmetric-seq, seed 7): with prediction in punching
/// alone, lost packets let the relay take over first, and the relayed search for a direct path
/// (candidates only) never found the predicted port. The relayed rounds predict too; the pair
/// ends direct. (Seed 31 since path MTU probes changed the loss draws; 7 goes direct now.)
#[test]
fn regression_relayed_rounds_predict_ports_too() {
    let r = burrow_sim::traversal::run_pair(
        &profile("linux-clash"),
        &profile("symmetric-seq"),
        31,
        0.05,
    );
    assert!(r.outcome.ends_direct(), "{r}");
    assert!(matches!(r.outcome, Outcome::Relay { .. }), "{r}");
}

/// Regression (the real-NAT lab, issue 16): a home NAT right behind a Linux carrier NAT, to a
/// cone site, in both start orders. With `skewed`, A's packets reach B's side before B's own
/// first packets leave it: when B is the carrier site, the cone side's first full-TTL packet
/// reached the carrier NAT before any of B's probes had crossed it (the first round's TTL 2
/// dies at the carrier NAT, the second hop, before translation), left a conntrack entry there,
/// and B's own flow toward the peer was remapped: relayed. The first probes' TTL now comes
/// from the hop count the server saw (three here), so the carrier NAT opens in the first
/// round, and the pair goes direct whichever side starts first.
#[test]
fn regression_carrier_nat_to_cone_is_direct_in_both_start_orders() {
    let (cgn, cone) = (profile("cgn"), profile("linux-drop"));
    for seed in 0..3 {
        for (a, b) in [(&cone, &cgn), (&cgn, &cone)] {
            let r = run_pair_with(
                a,
                b,
                seed,
                RunOptions {
                    skewed: true,
                    ..RunOptions::default()
                },
            );
            assert!(matches!(r.outcome, Outcome::Direct(_)), "seed {seed}: {r}");
        }
    }
}

/// Relay first (issue 16): with `relay_first`, data starts on the relay at once instead of
/// after `relay_after` of punching, then the session moves to the direct path when a
/// challenge proves it. Carrier NAT and cone pairs in both start orders, and a Linux pair.
///
/// The first byte needs the lookup (half a relay round trip: the server sits halfway), the
/// relayed handshake (one) and the byte's way through the relay (half): two relay round trips.
/// When the tie-break makes the connecting side the handshake's responder it sends behind its
/// answer (0.5-RTT data through the relay), half a round trip sooner; it used to wait for the
/// initiator's first packet, half a round trip later (2.6). See `sim_first_byte.rs`.
/// Before, a relayed first byte waited `relay_after` (2.1 s here). The session is direct
/// within a second of the first byte.
#[test]
fn relay_first_carries_the_first_byte_then_moves_to_direct() {
    let (cgn, cone, clash) = (
        profile("cgn"),
        profile("linux-drop"),
        profile("linux-clash"),
    );
    let mut wrong = Vec::new();
    for seed in 0..3 {
        for (a, b) in [(&cone, &cgn), (&cgn, &cone), (&clash, &clash)] {
            let r = run_pair_with(
                a,
                b,
                seed,
                RunOptions {
                    relay_first: true,
                    ..RunOptions::default()
                },
            );
            let ok = match r.outcome {
                Outcome::Relay {
                    first_byte,
                    upgraded: Some(direct),
                } => {
                    // Jitter: up to 1 ms on each of the ten uplink crossings.
                    first_byte <= r.relay_rtt * 5 / 2 + Duration::from_millis(10)
                        && direct <= first_byte + Duration::from_secs(1)
                }
                _ => false,
            };
            let line = format!(
                "seed {seed}: {r}; {:.2} relay RTTs ({:?})",
                r.outcome.first_byte().unwrap_or_default().as_secs_f64()
                    / r.relay_rtt.as_secs_f64(),
                r.relay_rtt
            );
            println!("{line}");
            if !ok {
                wrong.push(line);
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
