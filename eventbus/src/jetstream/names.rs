//! How Sluice names become JetStream names: subject tokens, consumer (durable) names, the stream
//! name. Pure functions, no I/O.
//!
//! # Subject tokens
//! A subject is `<stream>.<token(eventSourceName)>.<token(eventName)>`. NATS splits subjects on
//! `.`, treats `*` and `>` as wildcards and forbids whitespace, so a name is encoded into one token:
//! - the bytes `A-Z a-z 0-9 - _` are kept as they are (so `webhook.example` stays readable and is
//!   what upstream Argo Events writes for such names);
//! - every other byte of the name's UTF-8 (including `%`, `.`, `*`, `>`, space and non-ASCII) becomes
//!   `%HH`, two uppercase hex digits;
//! - the empty name becomes the token `%` (never produced otherwise, since `%` itself is `%25`).
//!
//! The encoding is injective and [`decode_token`] reverses it, so a subject always maps back to the
//! original [`Subject`].
//!
//! # Durable names
//! JetStream consumer names may not contain `.`, `*`, `>`, whitespace or path separators.
//! [`durable_name`] keeps `A-Z a-z 0-9 - _`, replaces anything else with `_`, and — only when it
//! changed or shortened the name — appends `_` and 16 hex digits of a stable 64-bit FNV-1a hash of
//! the original, so `a.b` and `a_b` stay different durables. The result is at most
//! [`MAX_NAME_LEN`] bytes and the same on every machine and version (the hash is written out here,
//! not taken from `std`, whose hasher may change): renaming a durable would restart its position.

use crate::Subject;

/// The longest stream or consumer name we produce (the server allows 255).
pub const MAX_NAME_LEN: usize = 200;

/// Length of the `_` + hash suffix of a sanitized durable name.
const HASH_SUFFIX_LEN: usize = 17;

fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// Encodes one name into one subject token (see the module doc for the rule).
pub fn encode_token(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned();
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut token = String::with_capacity(name.len());
    for &byte in name.as_bytes() {
        if is_plain(byte) {
            token.push(char::from(byte));
        } else {
            token.push('%');
            token.push(char::from(HEX[usize::from(byte >> 4)]));
            token.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    token
}

/// Reverses [`encode_token`]; `None` when `token` is not something it produces.
pub fn decode_token(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    if token.is_empty() {
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let decoded = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            // Only the canonical form: uppercase hex, and never an escaped plain byte.
            if is_plain(decoded) || hex.iter().any(u8::is_ascii_lowercase) {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else if is_plain(byte) {
            out.push(byte);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The subject events of `subject` are published on in stream `stream`.
pub fn subject_for(stream: &str, subject: &Subject) -> String {
    format!(
        "{stream}.{}.{}",
        encode_token(&subject.event_source_name),
        encode_token(&subject.event_name)
    )
}

/// The [`Subject`] a NATS subject of stream `stream` was made from; `None` when it is not one of ours.
pub fn decode_subject(stream: &str, nats_subject: &str) -> Option<Subject> {
    let rest = nats_subject.strip_prefix(stream)?.strip_prefix('.')?;
    let (source, name) = rest.split_once('.')?;
    if name.contains('.') {
        return None;
    }
    Some(Subject::new(decode_token(source)?, decode_token(name)?))
}

/// The JetStream consumer name for the durable `durable` (see the module doc for the rule).
pub fn durable_name(durable: &str) -> String {
    let mut name: String = durable
        .bytes()
        .map(|byte| if is_plain(byte) { char::from(byte) } else { '_' })
        .collect();
    let changed = name.len() != durable.len() || name.as_bytes() != durable.as_bytes();
    if !changed && !name.is_empty() && name.len() <= MAX_NAME_LEN {
        return name;
    }
    name.truncate(MAX_NAME_LEN - HASH_SUFFIX_LEN);
    name.push_str(&format!("_{:016x}", fnv1a64(durable.as_bytes())));
    name
}

/// Why a stream name cannot be used.
pub fn check_stream_name(stream: &str) -> Result<(), &'static str> {
    if stream.is_empty() {
        return Err("must not be empty");
    }
    if stream.len() > MAX_NAME_LEN {
        return Err("must be at most 200 bytes");
    }
    if !stream.bytes().all(is_plain) {
        return Err("may contain only ASCII letters, digits, `-` and `_`");
    }
    Ok(())
}

/// 64-bit FNV-1a: tiny, stable, good enough to keep sanitized names apart.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(encode_token("webhook"), "webhook");
        assert_eq!(encode_token("my-es_1"), "my-es_1");
        assert_eq!(
            subject_for("default", &Subject::new("webhook", "example")),
            "default.webhook.example"
        );
    }

    #[test]
    fn special_characters_are_escaped() {
        assert_eq!(encode_token("a.b"), "a%2Eb");
        assert_eq!(encode_token("*"), "%2A");
        assert_eq!(encode_token(">"), "%3E");
        assert_eq!(encode_token("a b"), "a%20b");
        assert_eq!(encode_token("100%"), "100%25");
        assert_eq!(encode_token("ü"), "%C3%BC");
        assert_eq!(encode_token(""), "%");
        assert_eq!(
            subject_for("s", &Subject::new("my.es", "push *>")),
            "s.my%2Ees.push%20%2A%3E"
        );
    }

    #[test]
    fn decoding_rejects_non_canonical_tokens() {
        for bad in ["", "%2", "%2e", "%41", "a.b", "a b", "%ZZ", "%C3"] {
            assert_eq!(decode_token(bad), None, "{bad:?}");
        }
        assert_eq!(decode_subject("s", "s.a.b.c"), None);
        assert_eq!(decode_subject("s", "t.a.b"), None);
        assert_eq!(
            decode_subject("s", "s.my%2Ees.%"),
            Some(Subject::new("my.es", ""))
        );
    }

    #[test]
    fn durable_names_are_sanitized_deterministically() {
        assert_eq!(durable_name("sensor-trigger-dep_1"), "sensor-trigger-dep_1");
        let dotted = durable_name("a.b");
        assert_eq!(dotted, format!("a_b_{:016x}", fnv1a64(b"a.b")));
        assert_eq!(dotted, "a_b_e61d99190466522c", "the hash must never change");
        assert_ne!(durable_name("a.b"), durable_name("a_b"));
        assert_ne!(durable_name("a.b"), durable_name("a*b"));
        assert_eq!(durable_name("").len(), HASH_SUFFIX_LEN);
        let long = "x".repeat(500);
        assert_eq!(durable_name(&long).len(), MAX_NAME_LEN);
        assert_ne!(durable_name(&long), durable_name(&"x".repeat(501)));
    }

    #[test]
    fn stream_names() {
        assert!(check_stream_name("default").is_ok());
        assert!(check_stream_name("sluice_test-1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b"] {
            assert!(check_stream_name(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn tokens_round_trip_and_are_valid(name in ".{0,24}") {
            let token = encode_token(&name);
            prop_assert!(!token.is_empty());
            prop_assert!(!token.contains(['.', '*', '>', ' ', '\t', '\r', '\n']));
            prop_assert!(token.is_ascii());
            prop_assert_eq!(decode_token(&token), Some(name));
        }

        #[test]
        fn subjects_round_trip(source in ".{0,12}", name in ".{0,12}") {
            let subject = Subject::new(source, name);
            prop_assert_eq!(decode_subject("st", &subject_for("st", &subject)), Some(subject));
        }

        #[test]
        fn durable_names_are_valid_and_injective_enough(a in ".{0,40}", b in ".{0,40}") {
            let (na, nb) = (durable_name(&a), durable_name(&b));
            prop_assert!(!na.is_empty() && na.len() <= MAX_NAME_LEN);
            prop_assert!(na.bytes().all(is_plain));
            prop_assert_eq!(na == nb, a == b);
        }
    }
}
