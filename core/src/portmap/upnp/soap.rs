//! The three WAN connection actions we call (UPnP IGD's WANIPConnection, section 2.4):
//! `GetExternalIPAddress`, `AddPortMapping` and `DeletePortMapping`, as SOAP requests, and
//! their answers: the fields, or the UPnP error code of a fault.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::http;
use super::ssdp::Url;
use super::xml;

/// What a mapping is called on the router (its `NewPortMappingDescription`).
const DESCRIPTION: &str = "burrow";

/// A control request: the HTTP request for `action` of `service` at `control`, with `args`.
pub(crate) fn request(
    control: &Url,
    service: &str,
    action: &str,
    args: &[(&str, String)],
) -> Vec<u8> {
    let mut body = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
         <u:{action} xmlns:u=\"{service}\">"
    );
    for (name, value) in args {
        body.push_str(&format!("<{name}>{value}</{name}>"));
    }
    body.push_str(&format!("</u:{action}></s:Body></s:Envelope>\r\n"));
    let soap_action = format!("\"{service}#{action}\"");
    http::request(
        "POST",
        control.host,
        &control.path,
        &[
            ("Content-Type", "text/xml; charset=\"utf-8\""),
            ("SOAPAction", &soap_action),
        ],
        body.as_bytes(),
    )
}

/// `GetExternalIPAddress`.
pub(crate) fn external_ip(control: &Url, service: &str) -> Vec<u8> {
    request(control, service, "GetExternalIPAddress", &[])
}

/// `AddPortMapping` of UDP `external_port` to `internal` for `lifetime` seconds (0: for as
/// long as the router keeps it).
pub(crate) fn add(
    control: &Url,
    service: &str,
    external_port: u16,
    internal: SocketAddrV4,
    lifetime: u32,
) -> Vec<u8> {
    let args = [
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", external_port.to_string()),
        ("NewProtocol", "UDP".into()),
        ("NewInternalPort", internal.port().to_string()),
        ("NewInternalClient", internal.ip().to_string()),
        ("NewEnabled", "1".into()),
        ("NewPortMappingDescription", DESCRIPTION.into()),
        ("NewLeaseDuration", lifetime.to_string()),
    ];
    request(control, service, "AddPortMapping", &args)
}

/// `DeletePortMapping` of UDP `external_port`.
pub(crate) fn delete(control: &Url, service: &str, external_port: u16) -> Vec<u8> {
    let args = [
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", external_port.to_string()),
        ("NewProtocol", "UDP".into()),
    ];
    request(control, service, "DeletePortMapping", &args)
}

/// What a control request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Done; the body, to read the action's fields from.
    Done(String),
    /// A UPnP fault with its error code (718: the port is mapped to another host; 725: only
    /// permanent leases), or 0 when the router's answer was not a fault it explained.
    Fault(u16),
}

/// Reads the HTTP response to a control request; `None` if it is not HTTP.
pub(crate) fn answer(bytes: &[u8]) -> Option<Answer> {
    let response = http::response(bytes).ok()?;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    if response.status == 200 {
        return Some(Answer::Done(body));
    }
    let code = xml::text(&body, "errorCode")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Some(Answer::Fault(code))
}

/// `GetExternalIPAddress`'s address, if it is one.
pub(crate) fn external_ip_of(body: &str) -> Option<Ipv4Addr> {
    xml::text(body, "NewExternalIPAddress")?.parse().ok()
}

/// What a UPnP error code means (IGD's WANIPConnection, section 2.4.16).
pub(crate) fn error_name(code: u16) -> &'static str {
    match code {
        401 => "invalid action",
        402 => "invalid arguments",
        501 => "action failed",
        606 => "not authorised",
        714 => "no such mapping",
        715 => "wildcard not permitted in source address",
        716 => "wildcard not permitted in external port",
        718 => "conflict with another mapping",
        724 => "internal and external ports must be the same",
        725 => "only permanent leases are supported",
        726 => "remote host must be a wildcard",
        727 => "external port must be a wildcard",
        728 => "no port maps available",
        729 => "conflict with another mechanism",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> Url {
        Url::parse("http://10.1.0.1:5000/ctl/IPConn").unwrap()
    }

    #[test]
    fn add_port_mapping_says_what_miniupnpd_reads() {
        let service = "urn:schemas-upnp-org:service:WANIPConnection:1";
        let internal = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 40000);
        let text = String::from_utf8(add(&control(), service, 40001, internal, 7200)).unwrap();
        assert!(text.starts_with("POST /ctl/IPConn HTTP/1.1\r\n"), "{text}");
        assert!(text.contains(&format!("SOAPAction: \"{service}#AddPortMapping\"\r\n")));
        for field in [
            "<NewExternalPort>40001</NewExternalPort>",
            "<NewProtocol>UDP</NewProtocol>",
            "<NewInternalPort>40000</NewInternalPort>",
            "<NewInternalClient>10.1.0.11</NewInternalClient>",
            "<NewLeaseDuration>7200</NewLeaseDuration>",
        ] {
            assert!(text.contains(field), "{field} in {text}");
        }
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn answers_and_faults() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n<s:Envelope><s:Body><u:GetExternalIPAddressResponse><NewExternalIPAddress>11.0.113.18</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>";
        let Some(Answer::Done(body)) = answer(ok) else {
            panic!("{:?}", answer(ok));
        };
        assert_eq!(external_ip_of(&body), Some(Ipv4Addr::new(11, 0, 113, 18)));
        let fault = b"HTTP/1.1 500 Internal Server Error\r\n\r\n<s:Envelope><s:Body><s:Fault><faultcode>s:Client</faultcode><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>";
        assert_eq!(answer(fault), Some(Answer::Fault(718)));
        assert_eq!(
            answer(b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Some(Answer::Fault(0))
        );
        assert_eq!(answer(b"garbage"), None);
        assert_eq!(
            external_ip_of("<NewExternalIPAddress>not an ip</NewExternalIPAddress>"),
            None
        );
        assert_eq!(
            answer(b"HTTP/1.1 500 x\r\n\r\n<errorCode>99999999</errorCode>"),
            Some(Answer::Fault(0))
        );
    }
}
