//! Issue 16: the simulator's outcome for each real-NAT profile pair, computed in-process, so
//! the matrix prints both side by side and asserts they agree.
//!
//! Each lab site becomes the simulator profile with the same NATs: `masquerade` is
//! `NatConfig::linux()` (port-preserving, endpoint-independent, reply-only filtering),
//! `masquerade fully-random` the same with endpoint-dependent mapping and random ports, a NAT
//! box that drops unsolicited packets `Unsolicited::Drop` (one that accepts them keeps a
//! conntrack entry, `Unsolicited::Conntrack`), and a carrier site a home NAT behind a carrier
//! NAT of the same kind. Where that equals a profile of the simulator's matrix
//! (`burrow-sim matrix`), its name is printed with it.

use burrow_sim::nat::{Mapping, NatConfig, PortAllocation, Unsolicited};
use burrow_sim::traversal::{self, Outcome, Profile, RunOptions};
use burrow_tests::netns::{self, Site};

/// Seeds the simulator runs per pair; the pair agrees when every seed does.
const SEEDS: [u64; 3] = [1, 2, 3];

/// The simulator's NAT for one of a site's NATs.
fn nat(site: &Site) -> NatConfig {
    let linux = NatConfig::linux();
    let cfg = match site.mapping {
        netns::Mapping::Masquerade => linux,
        netns::Mapping::FullyRandom => NatConfig {
            mapping: Mapping::AddressAndPortDependent,
            port_allocation: PortAllocation::Random,
            ..linux
        },
    };
    match site.inbound {
        netns::Inbound::Drop => cfg.with_unsolicited(Unsolicited::Drop),
        netns::Inbound::Accept => cfg.with_unsolicited(Unsolicited::Conntrack),
    }
}

/// The simulator's profile for `site`, named after the matrix's profile with the same NATs
/// (`site:LABEL` when the matrix has none).
pub(super) fn profile(site: &Site) -> Profile {
    let nats = if site.carrier {
        vec![nat(site), nat(site)]
    } else {
        vec![nat(site)]
    };
    let name = Profile::all()
        .into_iter()
        .find(|p| p.nats == nats)
        .map_or_else(
            || -> &'static str { Box::leak(format!("site:{}", site.label()).into_boxed_str()) },
            |p| p.name,
        );
    Profile { name, nats }
}

/// What the simulator says for the pair `sites` (one site: two hosts behind it): its profile
/// names, and whether every seed ended direct (`Some(true)`), relayed (`Some(false)`), or the
/// seeds disagree or failed (`None`, with the outcomes).
pub(super) fn simulate(sites: &[Site]) -> (String, Option<bool>, String) {
    let runs: Vec<Outcome> = SEEDS
        .iter()
        .map(|&seed| match sites {
            [_] => traversal::run_same_nat(seed, RunOptions::default()).outcome,
            [a, b, ..] => traversal::run_pair(&profile(a), &profile(b), seed, 0.0).outcome,
            [] => Outcome::Fail("no site".into()),
        })
        .collect();
    let names = match sites {
        [_] => "same-nat".to_string(),
        [a, b, ..] => format!("{} : {}", profile(a).name, profile(b).name),
        [] => String::new(),
    };
    let direct: Vec<bool> = runs.iter().map(Outcome::ends_direct).collect();
    let failed = runs.iter().any(|o| matches!(o, Outcome::Fail(_)));
    let verdict = (!failed && direct.iter().all(|d| *d == direct[0])).then(|| direct[0]);
    let shown = runs
        .iter()
        .map(|o| match o {
            Outcome::Direct(_) => "direct".to_string(),
            Outcome::Relay { upgraded: None, .. } => "relay".to_string(),
            Outcome::Relay {
                upgraded: Some(u), ..
            } => format!("relay->direct {:.1}s", u.as_secs_f64()),
            Outcome::Fail(why) => format!("fail ({why})"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    (names, verdict, shown)
}
