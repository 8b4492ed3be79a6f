//! Just enough XML for UPnP: the text of elements by local name (namespace prefixes ignored),
//! the five predefined entities decoded. No DTDs, no attributes read; the input is at most
//! [`super::http::MAX_RESPONSE`] bytes, and every scan moves forward.

/// The contents of each `<name>` element (any prefix) in `xml`, in document order, raw (see
/// [`text`]). A self-closed `<name/>` is empty; an element that is never closed ends the scan.
pub(crate) fn elements<'a>(xml: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let mut at = 0;
    std::iter::from_fn(move || {
        loop {
            let open = at + xml.get(at..)?.find('<')?;
            let tag_end = open + xml[open..].find('>')?;
            at = tag_end + 1;
            let tag = &xml[open + 1..tag_end];
            if tag.starts_with(['/', '?', '!']) {
                continue;
            }
            let self_closed = tag.ends_with('/');
            let tag_name = tag.trim_end_matches('/').split_whitespace().next()?;
            if local(tag_name) != name {
                continue;
            }
            if self_closed {
                return Some("");
            }
            // The matching end tag: the first `</prefix:name>` after it (UPnP's elements of
            // interest do not nest in themselves).
            let mut search = at;
            loop {
                let close = search + xml[search..].find("</")?;
                let close_end = close + xml[close..].find('>')?;
                if local(xml[close + 2..close_end].trim()) == name {
                    let inner = &xml[at..close];
                    at = close_end + 1;
                    return Some(inner);
                }
                search = close_end + 1;
            }
        }
    })
}

/// The first `<name>` element's text, trimmed and entity-decoded.
pub(crate) fn text(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).next().map(|t| decode(t.trim()))
}

/// A name without its namespace prefix.
fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// `&amp;` and its four siblings decoded; anything else left as it is.
fn decode(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn elements_by_local_name() {
        let xml = "<?xml version=\"1.0\"?><s:Envelope><s:Body><u:R xmlns:u=\"x\">\
                   <NewExternalIPAddress> 11.0.113.18 </NewExternalIPAddress><e/>\
                   </u:R></s:Body></s:Envelope>";
        assert_eq!(
            text(xml, "NewExternalIPAddress").as_deref(),
            Some("11.0.113.18")
        );
        assert_eq!(text(xml, "e").as_deref(), Some(""));
        assert_eq!(text(xml, "missing"), None);
        let list: Vec<&str> = elements("<a>1</a><b/><a x='y'>2</a>", "a").collect();
        assert_eq!(list, ["1", "2"]);
        assert_eq!(text("<u>a&amp;b&lt;</u>", "u").as_deref(), Some("a&b<"));
    }

    #[test]
    fn unclosed_and_broken_documents_end_the_scan() {
        assert_eq!(text("<a>never closed", "a"), None);
        assert_eq!(text("<a", "a"), None);
        assert_eq!(text("</a></a><<<>>>", "a"), None);
        assert_eq!(elements("<a></b", "a").count(), 0);
    }

    proptest! {
        #[test]
        fn any_text_is_scanned(xml in "[<>/a-c: ]{0,200}") {
            let _ = elements(&xml, "a").count();
            let _ = text(&xml, "b");
        }
    }
}
