//! Just enough XML reading for the few S3 and STS responses Sluice reads: the text of an element
//! and the inner text of repeated elements. Responses are machine-written, without CDATA or
//! namespaced prefixes on the elements read here; entities are decoded.

/// The inner text of every `<tag>…</tag>` (or `<tag attr…>…</tag>`) in `xml`, in order; not nested
/// in itself.
pub fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        // `<Key>` and `<Key attr>` are ours; `<KeyCount>` is another element.
        let Some(first) = after.chars().next() else { break };
        if first != '>' && !first.is_whitespace() && first != '/' {
            rest = after;
            continue;
        }
        let Some(gt) = after.find('>') else { break };
        if after[..gt].ends_with('/') {
            out.push("");
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// The decoded text of the first `<tag>` in `xml`.
pub fn text(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|t| unescape(t))
}

/// Decodes the five predefined entities and numeric character references.
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => {
                u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32)
            }
            e if e.starts_with('#') => e[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_repeated_elements_and_skips_longer_names() {
        let xml =
            "<R><KeyCount>2</KeyCount><Contents><Key>a&amp;b</Key><ETag>&quot;e1&quot;</ETag></Contents>\
                   <Contents><Key>c&#x20;d</Key><ETag>\"e2\"</ETag></Contents><Empty/></R>";
        let contents = elements(xml, "Contents");
        assert_eq!(contents.len(), 2);
        assert_eq!(text(contents[0], "Key").as_deref(), Some("a&b"));
        assert_eq!(text(contents[0], "ETag").as_deref(), Some("\"e1\""));
        assert_eq!(text(contents[1], "Key").as_deref(), Some("c d"));
        assert_eq!(text(xml, "KeyCount").as_deref(), Some("2"));
        assert_eq!(elements(xml, "Empty"), vec![""]);
        assert_eq!(text(xml, "Missing"), None);
    }
}
