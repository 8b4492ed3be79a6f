//! The HTTP/1.1 of UPnP's description and control: one request per connection
//! (`Connection: close`), and the response read whole, with limits: headers up to
//! [`MAX_HEADERS`] bytes, the whole response up to [`MAX_RESPONSE`], a `Content-Length` or
//! chunked body, else the body runs to the end of the connection.

use std::net::SocketAddr;

/// Longest response read: a gateway's description is a few KiB. The runtime reads at most
/// this much (and one byte more, so that a longer answer is seen to be too long).
pub const MAX_RESPONSE: usize = 64 * 1024;
/// Longest status line and headers.
const MAX_HEADERS: usize = 8 * 1024;

/// A response, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Response {
    /// The status code (200, 500, ...).
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Why a response could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// Longer than [`MAX_RESPONSE`], or headers longer than [`MAX_HEADERS`].
    TooLong,
    /// Not HTTP/1.x, or a header or chunk that does not parse.
    Malformed,
    /// The connection ended before the body did.
    Truncated,
}

/// A request: `method path` to `host`, with `headers` and `body` (a `Content-Length` is added
/// when there is a body).
pub(crate) fn request(
    method: &str,
    host: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads a whole response (the connection has ended).
pub(crate) fn response(bytes: &[u8]) -> Result<Response, Error> {
    if bytes.len() > MAX_RESPONSE {
        return Err(Error::TooLong);
    }
    let head_len = match find(bytes, b"\r\n\r\n") {
        Some(i) if i <= MAX_HEADERS => i,
        Some(_) => return Err(Error::TooLong),
        None if bytes.len() > MAX_HEADERS => return Err(Error::TooLong),
        None => return Err(Error::Truncated),
    };
    let head = std::str::from_utf8(&bytes[..head_len]).map_err(|_| Error::Malformed)?;
    let rest = &bytes[head_len + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or(Error::Malformed)?;
    let mut words = status_line.splitn(3, ' ');
    if !words.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(Error::Malformed);
    }
    let status = words
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(Error::Malformed)?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Error::Malformed)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| Error::Malformed)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n).ok_or(Error::Truncated)?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// A chunked body's data.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or(Error::Truncated)?;
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| Error::Malformed)?;
        let size = line.split(';').next().unwrap_or("").trim();
        if size.is_empty() || size.len() > 8 {
            return Err(Error::Malformed);
        }
        let size = usize::from_str_radix(size, 16).map_err(|_| Error::Malformed)?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let data = rest.get(..size).ok_or(Error::Truncated)?;
        body.extend_from_slice(data);
        rest = rest.get(size..).ok_or(Error::Truncated)?;
        rest = rest.strip_prefix(b"\r\n").ok_or(Error::Malformed)?;
    }
}

/// Where `needle` first starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_request_names_its_host_and_length() {
        let r = request(
            "POST",
            "10.1.0.1:5000".parse().unwrap(),
            "/ctl/IPConn",
            &[("SOAPAction", "\"x#y\"")],
            b"<a/>",
        );
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 10.1.0.1:5000\r\n"));
        assert!(text.contains("SOAPAction: \"x#y\"\r\n"));
        assert!(text.ends_with("Content-Length: 4\r\n\r\n<a/>"));
    }

    #[test]
    fn bodies_by_length_by_chunks_and_to_the_end() {
        let r = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = response(
            b"HTTP/1.1 500 Internal\r\ntransfer-encoding: chunked\r\n\r\n3;x\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, &b"abcde"[..]));
        let r = response(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nall of it").unwrap();
        assert_eq!(r.body, b"all of it");
    }

    #[test]
    fn hostile_responses_are_refused() {
        assert_eq!(response(b"HTTP/1.1 200 OK\r\n"), Err(Error::Truncated));
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
            Err(Error::Truncated)
        );
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Err(Error::Malformed)
        );
        assert_eq!(response(b"SSH-2.0-x\r\n\r\n"), Err(Error::Malformed));
        assert_eq!(response(b"HTTP/1.1 2000 OK\r\n\r\n"), Err(Error::Malformed));
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"),
            Err(Error::Malformed)
        );
        // A chunk larger than what came, and a chunk size past any body.
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab"),
            Err(Error::Truncated)
        );
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n"),
            Err(Error::Malformed)
        );
        // Endless headers, and a response past the limit.
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEADERS));
        assert_eq!(response(&long), Err(Error::TooLong));
        let mut big = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        big.resize(MAX_RESPONSE + 1, b'x');
        assert_eq!(response(&big), Err(Error::TooLong));
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = response(&bytes);
            let mut framed = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = response(&framed);
        }
    }
}
