//! The mapper's state machine: NAT-PMP and PCP mappings, renewal, deletion, the fallback
//! from PCP to NAT-PMP, refusals and hostile answers.

use super::*;
use proptest::prelude::*;

const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
const NONCE: [u8; 12] = [7; 12];

fn address_answer(ip: [u8; 4]) -> Vec<u8> {
    let mut r = vec![0, 128, 0, 0, 0, 0, 0, 9];
    r.extend_from_slice(&ip);
    r
}

fn map_answer(internal: u16, external: u16, lifetime: u32) -> Vec<u8> {
    let mut r = vec![0, 129, 0, 0, 0, 0, 0, 9];
    r.extend_from_slice(&internal.to_be_bytes());
    r.extend_from_slice(&external.to_be_bytes());
    r.extend_from_slice(&lifetime.to_be_bytes());
    r
}

/// A PCP router's answer to `request`: `external` for `lifetime`, or error `result`.
fn pcp_answer(request: &[u8], result: u8, external: SocketAddr, lifetime: u32) -> Vec<u8> {
    let mut nonce = [0; 12];
    nonce.copy_from_slice(&request[24..36]);
    pcp::MapResponse {
        result,
        lifetime,
        epoch: 100,
        nonce,
        protocol: request[36],
        internal_port: u16::from_be_bytes([request[40], request[41]]),
        external_port: external.port(),
        external_ip: external.ip(),
    }
    .encode()
}

fn drain(m: &mut PortMapper) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| {
        m.poll_transmit().map(|(to, p)| {
            assert_eq!(to, SocketAddr::from((GW, SERVER_PORT)));
            p
        })
    })
    .collect()
}

fn nat_pmp_mapper(now: Instant) -> PortMapper {
    PortMapper::new(GW, None, 4000, NONCE, now)
}

fn pcp_mapper(now: Instant) -> PortMapper {
    PortMapper::new(GW, Some(CLIENT), 4000, NONCE, now)
}

#[test]
fn nat_pmp_maps_renews_at_half_life_and_removes() {
    let t0 = crate::tests::origin();
    let mut m = nat_pmp_mapper(t0);
    assert_eq!(m.handle_timeout(t0), None);
    let sent = drain(&mut m);
    assert_eq!(sent[0], [0, 0]);
    assert_eq!(
        sent[1],
        [0, 1, 0, 0, 0x0f, 0xa0, 0x0f, 0xa0, 0, 0, 0x1c, 0x20]
    );
    // Both answers are needed, in either order.
    assert_eq!(m.handle_response(t0, &map_answer(4000, 31000, 3600)), None);
    let ext = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 2), 31000);
    assert_eq!(
        m.handle_response(t0, &address_answer([203, 0, 113, 2])),
        Some(Change::Mapped(ext, Protocol::NatPmp))
    );
    assert_eq!(m.external(), Some(ext));
    let renew = m.next_deadline().unwrap();
    assert_eq!(renew - t0, Duration::from_secs(1800));
    // Renewal: the same requests, suggesting the port held; the same answer changes nothing
    // for the endpoint.
    assert_eq!(m.handle_timeout(renew), None);
    let renewal = drain(&mut m);
    assert_eq!(
        renewal[1],
        [0, 1, 0, 0, 0x0f, 0xa0, 0x79, 0x18, 0, 0, 0x1c, 0x20]
    );
    assert_eq!(
        m.handle_response(renew, &address_answer([203, 0, 113, 2])),
        None
    );
    assert_eq!(
        m.handle_response(renew, &map_answer(4000, 31000, 3600)),
        None
    );
    assert_eq!(m.external(), Some(ext));
    m.remove();
    // RFC 6886 section 3.4: lifetime 0 and suggested port 0 delete the mapping.
    assert_eq!(
        drain(&mut m),
        vec![vec![0, 1, 0, 0, 0x0f, 0xa0, 0, 0, 0, 0, 0, 0]]
    );
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn pcp_maps_renews_with_its_nonce_and_removes() {
    let t0 = crate::tests::origin();
    let mut m = pcp_mapper(t0);
    assert_eq!(m.handle_timeout(t0), None);
    let sent = drain(&mut m);
    assert_eq!(sent.len(), 1, "one MAP request, no NAT-PMP");
    let request = &sent[0];
    assert_eq!(request.len(), pcp::MAP_LEN);
    assert_eq!(request[..2], [2, 1]);
    assert_eq!(request[8..24], CLIENT.to_ipv6_mapped().octets());
    assert_eq!(request[24..36], NONCE);
    let ext = SocketAddrV4::new(Ipv4Addr::new(11, 0, 113, 18), 31000);
    // Another nonce (a stale or forged answer) changes nothing.
    let mut other = pcp_answer(request, 0, ext.into(), 3600);
    other[24] ^= 1;
    assert_eq!(m.handle_response(t0, &other), None);
    assert_eq!(
        m.handle_response(t0, &pcp_answer(request, 0, ext.into(), 3600)),
        Some(Change::Mapped(ext, Protocol::Pcp))
    );
    let renew = m.next_deadline().unwrap();
    assert_eq!(renew - t0, Duration::from_secs(1800));
    assert_eq!(m.handle_timeout(renew), None);
    let renewal = drain(&mut m);
    assert_eq!(renewal.len(), 1);
    assert_eq!(renewal[0][24..36], NONCE, "the same mapping");
    // It suggests the address it holds.
    assert_eq!(renewal[0][42..44], 31000u16.to_be_bytes());
    assert_eq!(renewal[0][44..60], ext.ip().to_ipv6_mapped().octets());
    assert_eq!(
        m.handle_response(renew, &pcp_answer(&renewal[0], 0, ext.into(), 3600)),
        None
    );
    m.remove();
    let delete = drain(&mut m);
    assert_eq!(delete.len(), 1);
    assert_eq!(delete[0][4..8], [0, 0, 0, 0], "lifetime 0");
    assert_eq!(delete[0][24..36], NONCE);
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn a_silent_gateway_gets_pcp_then_nat_pmp_then_is_given_up() {
    let t0 = crate::tests::origin();
    let mut m = pcp_mapper(t0);
    let mut now = t0;
    let mut outcome = None;
    let mut sent = Vec::new();
    while let Some(at) = m.next_deadline() {
        now = at;
        outcome = m.handle_timeout(now).or(outcome);
        sent.extend(drain(&mut m).into_iter().map(|p| (now - t0, p[0])));
    }
    assert_eq!(outcome, Some(Change::Failed(Failure::NoAnswer)));
    let pcp: Vec<_> = sent.iter().filter(|(_, v)| *v == 2).collect();
    let nat_pmp: Vec<_> = sent.iter().filter(|(_, v)| *v == 0).collect();
    assert_eq!(pcp.len(), PCP_ATTEMPTS as usize);
    assert_eq!(nat_pmp.len(), 2 * ATTEMPTS as usize);
    // PCP at 0, 250 and 750 ms; NAT-PMP from 1750 ms, after PCP's last wait.
    assert_eq!(nat_pmp[0].0, Duration::from_millis(1750));
    assert!(pcp.iter().all(|(at, _)| *at < nat_pmp[0].0));
    assert_eq!(now - t0, Duration::from_millis(1750 + 250 * 31));
    // Nothing to remove.
    m.remove();
    assert!(drain(&mut m).is_empty());
}

#[test]
fn a_nat_pmp_only_router_is_asked_with_nat_pmp_at_once() {
    let t0 = crate::tests::origin();
    let mut m = pcp_mapper(t0);
    m.handle_timeout(t0);
    drain(&mut m);
    // "Unsupported version", in NAT-PMP's format (RFC 6887 section 9).
    assert_eq!(m.handle_response(t0, &[0, 129, 0, 1, 0, 0, 0, 9]), None);
    let sent = drain(&mut m);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], [0, 0]);
    assert_eq!(sent[1][..2], [0, 1]);
    m.handle_response(t0, &map_answer(4000, 31000, 3600));
    let ext = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 2), 31000);
    assert_eq!(
        m.handle_response(t0, &address_answer([203, 0, 113, 2])),
        Some(Change::Mapped(ext, Protocol::NatPmp))
    );
    // The deletion uses the protocol that mapped.
    m.remove();
    assert_eq!(drain(&mut m)[0][..2], [0, 1]);
}

#[test]
fn refusals_and_hostile_answers() {
    let t0 = crate::tests::origin();
    let mut m = nat_pmp_mapper(t0);
    m.handle_timeout(t0);
    // Another port's mapping, short answers, other versions, garbage: nothing.
    for junk in [
        map_answer(4001, 1, 60),
        vec![0, 129, 0, 0],
        vec![2, 129, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0xff; 64],
        vec![],
    ] {
        assert_eq!(m.handle_response(t0, &junk), None);
    }
    assert_eq!(m.external(), None);
    // Not authorised (result 2).
    let mut refused = map_answer(4000, 0, 0);
    refused[3] = 2;
    assert_eq!(
        m.handle_response(t0, &refused),
        Some(Change::Failed(Failure::Refused(Protocol::NatPmp, 2)))
    );
    assert_eq!(m.next_deadline(), None);
    // A zero lifetime granted is taken as a minute, not a renewal loop.
    let mut m = nat_pmp_mapper(t0);
    m.handle_timeout(t0);
    m.handle_response(t0, &address_answer([203, 0, 113, 2]));
    m.handle_response(t0, &map_answer(4000, 5000, 0));
    assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(30)));

    // PCP: a refusal ends it, with its name.
    let mut m = pcp_mapper(t0);
    m.handle_timeout(t0);
    let req = drain(&mut m).remove(0);
    let any: SocketAddr = (Ipv4Addr::UNSPECIFIED, 0).into();
    let change = m.handle_response(t0, &pcp_answer(&req, 2, any, 0));
    assert_eq!(
        change,
        Some(Change::Failed(Failure::Refused(Protocol::Pcp, 2)))
    );
    assert!(
        Failure::Refused(Protocol::Pcp, 12)
            .to_string()
            .contains("address mismatch")
    );
    // An IPv6 mapping for our IPv4 port is no use.
    let mut m = pcp_mapper(t0);
    m.handle_timeout(t0);
    let req = drain(&mut m).remove(0);
    let v6: SocketAddr = "[2001:db8::1]:31000".parse().unwrap();
    assert_eq!(
        m.handle_response(t0, &pcp_answer(&req, 0, v6, 3600)),
        Some(Change::Failed(Failure::NotIpv4))
    );
}

proptest! {
    #[test]
    fn any_answer_is_handled_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
        pcp in any::<bool>(),
    ) {
        let t0 = crate::tests::origin();
        let mut m = if pcp { pcp_mapper(t0) } else { nat_pmp_mapper(t0) };
        m.handle_timeout(t0);
        let _ = m.handle_response(t0, &bytes);
        // Whatever it was, a deadline left is not in the past.
        if let Some(at) = m.next_deadline() {
            prop_assert!(at >= t0);
        }
    }
}
