//! URLs made fit for logs and error messages. A URL in a spec can carry a credential in its user
//! info (`nats://user:secret@host`), in its query (`wss://host/feed?token=…`, a presigned S3 URL's
//! `X-Amz-Signature`) or in its fragment (`#access_token=…`); [`redact_url`] keeps what identifies
//! the endpoint — scheme, host, port, path, parameter names — and masks the rest. Every process
//! logs URLs through it (the bus crate is the runtime crate all of them share).

/// What a masked part is replaced with.
const MASK: &str = "***";

/// `url` with its user info, every query value and its fragment masked:
/// `https://u:p@h:8443/hook?token=abc&x=1#frag` → `https://***@h:8443/hook?token=***&x=***#***`.
/// Text that is not a URL is masked the same way where it has those parts, and otherwise kept.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((before, _)) => (before, Some(MASK)),
        None => (tail, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before_fragment, None),
    };
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(MASK);
                }
                // A bare value (`?secret`) may itself be the credential.
                None if !pair.is_empty() => out.push_str(MASK),
                None => {}
            }
        }
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_and_the_endpoint_kept() {
        let cases = [
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://user:p@ss@host:4222/x", "nats://***@host:4222/x"),
            ("token@host", "***@host"),
            ("tls://h/a@b", "tls://h/a@b"),
            (
                "https://u:p@h:8443/hook?token=abc&x=1#frag",
                "https://***@h:8443/hook?token=***&x=***#***",
            ),
            (
                "wss://feed.example/v1?apikey=s3cr3t",
                "wss://feed.example/v1?apikey=***",
            ),
            ("http://h/p?secret&a=", "http://h/p?***&a=***"),
            ("https://h/p?", "https://h/p?"),
            ("https://h/#access_token=abc", "https://h/#***"),
            ("http://h?x=1", "http://h?x=***"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
