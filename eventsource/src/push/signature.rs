//! Signature and token checks shared by the push kinds. Every comparison is constant-time (`hmac`'s
//! `verify_slice`, `subtle`), so a caller cannot learn how many leading bytes of a secret matched.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Incoming, Rejection};

/// True when a signed request's `timestamp` (Unix seconds) is at most `max_skew` seconds from
/// `now`, either way. Checked arithmetic: a hostile timestamp such as `-9223372036854775808`
/// would overflow the difference (a panic in a debug build; in a release build `i64::MIN.abs()`
/// stays negative and would pass the check).
pub fn within_skew(now: i64, timestamp: i64, max_skew: i64) -> bool {
    now.checked_sub(timestamp)
        .and_then(i64::checked_abs)
        .is_some_and(|skew| skew <= max_skew)
}

/// The digest of an HMAC signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// HMAC-SHA1 (GitHub's legacy `X-Hub-Signature`).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
}

/// True when `hex_signature` is the HMAC of `body` under `secret`. A signature that is not hex is
/// simply not valid.
pub fn verify_hmac_hex(digest: Digest, secret: &[u8], body: &[u8], hex_signature: &str) -> bool {
    let Ok(given) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    verify_hmac(digest, secret, body, &given)
}

/// True when `given` is the HMAC of `body` under `secret`.
pub fn verify_hmac(digest: Digest, secret: &[u8], body: &[u8], given: &[u8]) -> bool {
    match digest {
        Digest::Sha1 => match Hmac::<Sha1>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(body);
                mac.verify_slice(given).is_ok()
            }
            Err(_) => false,
        },
        Digest::Sha256 => match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(body);
                mac.verify_slice(given).is_ok()
            }
            Err(_) => false,
        },
    }
}

/// The hex HMAC of `body` under `secret` (for tests and for signing outgoing requests).
pub fn hmac_hex(digest: Digest, secret: &[u8], body: &[u8]) -> String {
    match digest {
        Digest::Sha1 => match Hmac::<Sha1>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(body);
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        },
        Digest::Sha256 => match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(body);
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        },
    }
}

/// Verifies a `<prefix>=<hex>` header such as `sha256=ab12…` (GitHub, Bitbucket).
pub fn verify_prefixed(digest: Digest, secret: &[u8], body: &[u8], header: &str) -> bool {
    let prefix = match digest {
        Digest::Sha1 => "sha1=",
        Digest::Sha256 => "sha256=",
    };
    match header.trim().strip_prefix(prefix) {
        Some(hex) => verify_hmac_hex(digest, secret, body, hex),
        None => false,
    }
}

/// Verifies `X-Hub-Signature: sha256=…` when a secret is set (the bitbucket and bitbucketserver
/// kinds).
pub fn verify_hub_signature(secret: Option<&str>, req: &Incoming<'_>) -> Result<(), Rejection> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let sig = req
        .header("x-hub-signature")
        .ok_or_else(|| Rejection::unauthorized("missing X-Hub-Signature"))?;
    if verify_prefixed(Digest::Sha256, secret.as_bytes(), req.body, sig) {
        Ok(())
    } else {
        Err(Rejection::unauthorized("invalid X-Hub-Signature"))
    }
}

/// Constant-time equality of a shared token.
pub fn token_eq(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_checked_without_overflow() {
        assert!(within_skew(1_000, 1_000, 300));
        assert!(within_skew(1_000, 700, 300));
        assert!(within_skew(1_000, 1_300, 300));
        assert!(!within_skew(1_000, 1_301, 300));
        assert!(!within_skew(1_000, 699, 300));
        for hostile in [i64::MIN, i64::MIN + 1, i64::MAX, -1] {
            assert!(!within_skew(1_700_000_000, hostile, 300), "{hostile}");
        }
        assert!(!within_skew(i64::MIN, i64::MAX, 300));
    }

    #[test]
    fn hmac_round_trip_and_flips() {
        for digest in [Digest::Sha1, Digest::Sha256] {
            let sig = hmac_hex(digest, b"s3cret", b"{\"a\":1}");
            assert!(verify_hmac_hex(digest, b"s3cret", b"{\"a\":1}", &sig));
            assert!(!verify_hmac_hex(digest, b"s3cret", b"{\"a\":2}", &sig));
            assert!(!verify_hmac_hex(digest, b"other", b"{\"a\":1}", &sig));
            assert!(!verify_hmac_hex(digest, b"s3cret", b"{\"a\":1}", "zz"));
        }
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_hex(Digest::Sha256, b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = hmac_hex(Digest::Sha256, b"k", b"x");
        assert!(verify_prefixed(
            Digest::Sha256,
            b"k",
            b"x",
            &format!("sha256={sig}")
        ));
        assert!(!verify_prefixed(Digest::Sha256, b"k", b"x", &sig));
        assert!(token_eq("abc", "abc") && !token_eq("abc", "abd") && !token_eq("ab", "abc"));
    }
}
