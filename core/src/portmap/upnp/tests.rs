//! The UPnP-IGD client against a scripted gateway: found, described, asked; a port taken by
//! another host moves to the next; renewed and deleted; silent, broken and refusing gateways.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::*;

const INTERNAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 40_000);
const SSDP_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\n\
    ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\
    LOCATION: http://10.1.0.1:5000/rootDesc.xml\r\n\r\n";
const DESCRIPTION: &str = "<root><device><deviceList><device><serviceList><service>\
    <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>\
    <controlURL>/ctl/IPConn</controlURL></service></serviceList></device></deviceList>\
    </device></root>";

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn fault(code: u16) -> Vec<u8> {
    format!(
        "HTTP/1.1 500 Internal Server Error\r\n\r\n<s:Envelope><s:Body><s:Fault><detail>\
         <UPnPError><errorCode>{code}</errorCode></UPnPError></detail></s:Fault></s:Body>\
         </s:Envelope>"
    )
    .into_bytes()
}

fn external_ip() -> Vec<u8> {
    ok(
        "<u:GetExternalIPAddressResponse><NewExternalIPAddress>11.0.113.18\
        </NewExternalIPAddress></u:GetExternalIPAddressResponse>",
    )
}

/// The client's next HTTP request, as text.
fn next_http(c: &mut UpnpClient) -> String {
    let req = c.poll_http().expect("an HTTP request");
    assert_eq!(req.to, "10.1.0.1:5000".parse().unwrap());
    String::from_utf8(req.request).unwrap()
}

/// A client that found the gateway and read its description and external address: the
/// first `AddPortMapping` is out.
fn described(now: Instant) -> UpnpClient {
    let mut c = UpnpClient::new(INTERNAL, now);
    c.handle_timeout(now);
    let (to, search) = c.poll_datagram().expect("a search");
    assert_eq!(to, ssdp::GROUP);
    assert!(search.starts_with(b"M-SEARCH * HTTP/1.1\r\n"));
    c.handle_datagram(now, SSDP_ANSWER);
    assert!(next_http(&mut c).starts_with("GET /rootDesc.xml HTTP/1.1\r\n"));
    c.handle_http(now, Ok(&ok(DESCRIPTION)));
    assert!(next_http(&mut c).contains("#GetExternalIPAddress\""));
    c.handle_http(now, Ok(&external_ip()));
    c
}

#[test]
fn a_gateway_maps_the_next_port_when_ours_is_taken_renews_and_deletes() {
    let now = crate::tests::origin();
    let mut c = described(now);
    let add = next_http(&mut c);
    assert!(
        add.contains("<NewExternalPort>40000</NewExternalPort>"),
        "{add}"
    );
    assert!(add.contains("<NewInternalClient>10.1.0.11</NewInternalClient>"));
    c.handle_http(now, Ok(&fault(718)));
    let add = next_http(&mut c);
    assert!(
        add.contains("<NewExternalPort>40001</NewExternalPort>"),
        "{add}"
    );
    c.handle_http(now, Ok(&ok("<u:AddPortMappingResponse/>")));
    let mapped = SocketAddrV4::new(Ipv4Addr::new(11, 0, 113, 18), 40_001);
    assert_eq!(c.poll_event(), Some(UpnpEvent::Mapped(mapped)));
    assert_eq!(c.poll_event(), None);
    // Renewed at half the lifetime, the same port; no new event when it stays.
    let renew = c.next_deadline().expect("a renewal");
    assert_eq!(renew - now, Duration::from_secs(u64::from(LIFETIME) / 2));
    c.handle_timeout(renew);
    let add = next_http(&mut c);
    assert!(
        add.contains("<NewExternalPort>40001</NewExternalPort>"),
        "{add}"
    );
    c.handle_http(renew, Ok(&ok("")));
    assert_eq!(c.poll_event(), None);
    // Stop: its deletion.
    c.remove();
    let delete = next_http(&mut c);
    assert!(delete.contains("#DeletePortMapping\""), "{delete}");
    assert!(delete.contains("<NewExternalPort>40001</NewExternalPort>"));
    c.handle_http(renew, Ok(&ok("")));
    assert!(c.is_done());
}

#[test]
fn only_permanent_leases_are_asked_for_once_refused() {
    let now = crate::tests::origin();
    let mut c = described(now);
    assert!(next_http(&mut c).contains("<NewLeaseDuration>7200</NewLeaseDuration>"));
    c.handle_http(now, Ok(&fault(725)));
    assert!(next_http(&mut c).contains("<NewLeaseDuration>0</NewLeaseDuration>"));
    c.handle_http(now, Ok(&ok("")));
    assert!(matches!(c.poll_event(), Some(UpnpEvent::Mapped(_))));
    assert_eq!(c.next_deadline(), Some(now + Duration::from_secs(3600)));
}

#[test]
fn a_silent_lan_is_given_up_after_three_searches() {
    let now = crate::tests::origin();
    let mut c = UpnpClient::new(INTERNAL, now);
    let mut searches = 0;
    let mut t = now;
    while !c.is_done() && t < now + Duration::from_secs(60) {
        c.handle_timeout(t);
        while c.poll_datagram().is_some() {
            searches += 1;
        }
        t = c.next_deadline().unwrap_or(t);
    }
    assert_eq!(searches, SEARCHES);
    assert_eq!(c.poll_event(), Some(UpnpEvent::Failed(Failure::NoGateway)));
    // Nothing to delete.
    c.remove();
    assert_eq!(c.poll_http(), None);
}

#[test]
fn broken_and_refusing_gateways_fail_with_why() {
    let now = crate::tests::origin();
    // No WAN connection service in the description.
    let mut c = UpnpClient::new(INTERNAL, now);
    c.handle_timeout(now);
    c.handle_datagram(now, SSDP_ANSWER);
    c.poll_http();
    c.handle_http(now, Ok(&ok("<root><service/></root>")));
    assert_eq!(c.poll_event(), Some(UpnpEvent::Failed(Failure::Unusable)));
    assert_eq!(c.poll_http(), None);
    // Its HTTP server unreachable.
    let mut c = UpnpClient::new(INTERNAL, now);
    c.handle_timeout(now);
    c.handle_datagram(now, SSDP_ANSWER);
    c.poll_http();
    c.handle_http(now, Err("connection refused".into()));
    assert_eq!(c.poll_event(), Some(UpnpEvent::Failed(Failure::Unusable)));
    // Not authorised to map.
    let mut c = described(now);
    c.poll_http();
    c.handle_http(now, Ok(&fault(606)));
    assert_eq!(
        c.poll_event(),
        Some(UpnpEvent::Failed(Failure::Refused(Protocol::Upnp, 606)))
    );
    // A port taken again and again: given up after the tries.
    let mut c = described(now);
    for _ in 0..=PORT_TRIES {
        c.poll_http().expect("an AddPortMapping");
        c.handle_http(now, Ok(&fault(718)));
    }
    assert_eq!(
        c.poll_event(),
        Some(UpnpEvent::Failed(Failure::Refused(Protocol::Upnp, 718)))
    );
    // An oversized answer, and garbage.
    let mut c = described(now);
    c.poll_http();
    c.handle_http(now, Ok(&vec![b'x'; MAX_RESPONSE + 1]));
    assert_eq!(c.poll_event(), Some(UpnpEvent::Failed(Failure::Unusable)));
}

#[test]
fn answers_out_of_turn_change_nothing() {
    let now = crate::tests::origin();
    let mut c = UpnpClient::new(INTERNAL, now);
    c.handle_http(now, Ok(&ok(DESCRIPTION)));
    c.handle_http(now, Err("x".into()));
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.next_deadline(), Some(now));
    let mut c = described(now);
    c.poll_http();
    c.handle_http(now, Ok(&ok("")));
    c.poll_event();
    // SSDP answers once mapped, and a stray HTTP answer, are ignored.
    c.handle_datagram(now, SSDP_ANSWER);
    c.handle_http(now, Ok(&fault(501)));
    assert_eq!(c.poll_http(), None);
    assert_eq!(c.poll_event(), None);
    assert!(c.next_deadline().is_some());
}
