//! Finding the gateway: SSDP's search (UPnP Device Architecture 1.1, section 1.3) and the
//! device description's WAN connection service (its control URL).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::xml;

/// SSDP's multicast group and port.
pub(crate) const GROUP: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900));
/// Longest SSDP answer read.
const MAX_ANSWER: usize = 2048;
/// Longest path kept from a URL.
const MAX_PATH: usize = 512;

/// The WAN connection services that map ports, best first.
pub(crate) const SERVICES: [&str; 3] = [
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];

/// A search for Internet gateway devices.
pub(crate) fn search() -> Vec<u8> {
    b"M-SEARCH * HTTP/1.1\r\n\
      HOST: 239.255.255.250:1900\r\n\
      MAN: \"ssdp:discover\"\r\n\
      MX: 1\r\n\
      ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n"
        .to_vec()
}

/// An `http://` URL whose host is an IPv4 address (no names: nothing resolves them here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    /// Host and port (80 when not given).
    pub host: SocketAddr,
    /// The path, `/` at least, with its query.
    pub path: String,
}

impl Url {
    /// Reads `http://a.b.c.d[:port][/path]`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let rest = text.trim().strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let host = match authority.split_once(':') {
            Some((ip, port)) => SocketAddrV4::new(ip.parse().ok()?, port.parse().ok()?),
            None => SocketAddrV4::new(authority.parse().ok()?, 80),
        };
        (path.len() <= MAX_PATH && path.bytes().all(|b| b.is_ascii_graphic())).then(|| Self {
            host: host.into(),
            path: path.to_string(),
        })
    }

    /// `reference` (absolute, or a path) resolved against this URL's host.
    pub(crate) fn join(&self, reference: &str) -> Option<Self> {
        if reference.starts_with("http://") {
            return Self::parse(reference);
        }
        let path = if reference.starts_with('/') {
            reference.to_string()
        } else {
            format!("/{reference}")
        };
        Self::parse(&format!("http://{}{path}", self.host))
    }
}

/// The description's URL from an SSDP answer naming a gateway device or a WAN connection
/// service; `None` for anything else (other devices, our own search, oversized answers).
pub(crate) fn location(bytes: &[u8]) -> Option<Url> {
    if bytes.len() > MAX_ANSWER {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split("\r\n");
    if !lines.next()?.starts_with("HTTP/1.1 200") {
        return None;
    }
    let (mut gateway, mut location) = (false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("st") {
            gateway = value.contains(":device:InternetGatewayDevice:")
                || value.contains(":service:WANIPConnection:")
                || value.contains(":service:WANPPPConnection:");
        } else if name.eq_ignore_ascii_case("location") {
            location = Url::parse(value);
        }
    }
    location.filter(|_| gateway)
}

/// The control URL and type of the description's best WAN connection service (see
/// [`SERVICES`]), resolved against `base` (where the description came from, or its
/// `URLBase`).
pub(crate) fn control(description: &str, base: &Url) -> Option<(Url, &'static str)> {
    let base = xml::text(description, "URLBase")
        .and_then(|b| Url::parse(&b))
        .unwrap_or_else(|| base.clone());
    let services: Vec<(String, String)> = xml::elements(description, "service")
        .filter_map(|s| Some((xml::text(s, "serviceType")?, xml::text(s, "controlURL")?)))
        .collect();
    SERVICES.iter().find_map(|&wanted| {
        let (_, url) = services.iter().find(|(kind, _)| kind == wanted)?;
        Some((base.join(url)?, wanted))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// miniupnpd's answer to our search.
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n\
        ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\
        USN: uuid:3e0e4b58::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\n\
        SERVER: Debian/13 UPnP/1.1 MiniUPnPd/2.3.7\r\n\
        LOCATION: http://10.1.0.1:41235/rootDesc.xml\r\n\r\n";

    #[test]
    fn an_answer_gives_the_description_url() {
        let url = location(ANSWER).unwrap();
        assert_eq!(url.host, "10.1.0.1:41235".parse().unwrap());
        assert_eq!(url.path, "/rootDesc.xml");
        assert_eq!(location(&search()), None, "our own search");
        let printer = b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:Printer:1\r\nLOCATION: http://10.1.0.9/\r\n\r\n";
        assert_eq!(location(printer), None);
        let named = b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://router.lan/d.xml\r\n\r\n";
        assert_eq!(location(named), None, "no name resolution");
        let mut big = ANSWER.to_vec();
        big.resize(MAX_ANSWER + 1, b' ');
        assert_eq!(location(&big), None);
    }

    #[test]
    fn urls_parse_and_join() {
        let base = Url::parse("http://10.1.0.1:5000/rootDesc.xml").unwrap();
        assert_eq!(base.join("/ctl/IPConn").unwrap().path, "/ctl/IPConn");
        assert_eq!(base.join("ctl").unwrap().path, "/ctl");
        let abs = base.join("http://10.1.0.2:80/x").unwrap();
        assert_eq!(abs.host, "10.1.0.2:80".parse().unwrap());
        assert_eq!(Url::parse("http://10.0.0.1").unwrap().path, "/");
        for bad in [
            "https://10.0.0.1/",
            "http://10.0.0.1:99999/",
            "http://[::1]/",
            "http://10.0.0.1/a b",
            "ftp://x",
        ] {
            assert_eq!(Url::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Url::parse(&format!("http://1.2.3.4/{}", "a".repeat(600))),
            None
        );
    }

    #[test]
    fn the_best_wan_service_is_chosen() {
        let desc = "<root><device><serviceList>\
            <service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>\
            <controlURL>/ctl/L3F</controlURL></service></serviceList>\
            <deviceList><device><deviceList><device><serviceList>\
            <service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType>\
            <controlURL>/ctl/PPP</controlURL></service>\
            <service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>\
            <controlURL>/ctl/IPConn?a=1&amp;b=2</controlURL></service>\
            </serviceList></device></deviceList></device></deviceList></device></root>";
        let base = Url::parse("http://10.1.0.1:5000/rootDesc.xml").unwrap();
        let (url, kind) = control(desc, &base).unwrap();
        assert_eq!(kind, SERVICES[1]);
        assert_eq!(url.path, "/ctl/IPConn?a=1&b=2");
        assert_eq!(url.host, base.host);
        assert_eq!(control("<root><service/></root>", &base), None);
        assert_eq!(control("", &base), None);
    }
}
