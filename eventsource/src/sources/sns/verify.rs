//! SNS message signatures: the canonical string AWS signs, SignatureVersion 1 (SHA1withRSA) and 2
//! (SHA256withRSA), and the signing certificates, fetched only from allow-listed URLs and cached.
//!
//! A signed message is also refused when its (signed) `Timestamp` is more than [`MAX_AGE`] old or
//! more than [`MAX_CLOCK_SKEW`] in the future: SNS gives up retrying an HTTP delivery within an
//! hour, so an older message is a replay. A certificate that could not be fetched or read is not
//! fetched again for [`FAILED_FETCH_TTL`] (each URL; at most [`MAX_FAILED_URLS`] remembered), so a
//! stream of messages naming a missing certificate does not turn into a stream of outbound requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use base64::Engine as _;
use regex::Regex;
use serde::Deserialize;
use tokio::sync::Mutex;

/// Upstream's allow-list: `https://sns.<region>.amazonaws.com[.cn]/…`.
pub const DEFAULT_CERT_URL_PATTERN: &str = r"^https://sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?/";

/// The process setting that replaces [`DEFAULT_CERT_URL_PATTERN`] (a Sluice extension, for SNS-like
/// servers and tests): a regular expression the whole `SigningCertURL` must match.
pub const CERT_URL_PATTERN_ENV: &str = "SLUICE_SNS_SIGNING_CERT_URL_PATTERN";

/// The largest certificate document read (as upstream).
const MAX_CERT_BYTES: usize = 65 * 1024;

/// The oldest `Timestamp` accepted: SNS's longest HTTP delivery retry period.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// How far in the future a `Timestamp` may be (clocks differ).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// How long a failed certificate fetch is remembered (and answered without fetching again).
pub const FAILED_FETCH_TTL: Duration = Duration::from_secs(30);
/// How many failed certificate URLs are remembered at most.
pub const MAX_FAILED_URLS: usize = 256;

/// The fields of a notification the signature covers (see [`canonical_string`]); with
/// `validateSignature` only these are published.
pub const NOTIFICATION_SIGNED_FIELDS: [&str; 6] =
    ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"];

/// One SNS HTTP(S) delivery: a notification or a (un)subscription confirmation, in AWS's JSON.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SnsMessage {
    /// `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// Unique per published message; the same on a redelivery.
    #[serde(rename = "MessageId", default)]
    pub message_id: String,
    /// Confirmation token (confirmations only).
    #[serde(rename = "Token", default)]
    pub token: Option<String>,
    /// The topic.
    #[serde(rename = "TopicArn", default)]
    pub topic_arn: String,
    /// The subject (notifications, when the publisher gave one).
    #[serde(rename = "Subject", default)]
    pub subject: Option<String>,
    /// The message text.
    #[serde(rename = "Message", default)]
    pub message: String,
    /// Where a GET confirms the subscription (confirmations only).
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    /// When SNS published it, as sent (signed as text).
    #[serde(rename = "Timestamp", default)]
    pub timestamp: String,
    /// `1` (SHA1withRSA) or `2` (SHA256withRSA).
    #[serde(rename = "SignatureVersion", default)]
    pub signature_version: String,
    /// Base64 signature over [`canonical_string`].
    #[serde(rename = "Signature", default)]
    pub signature: String,
    /// Where the signing certificate is.
    #[serde(rename = "SigningCertURL", default)]
    pub signing_cert_url: String,
}

impl SnsMessage {
    /// `Notification`.
    pub const NOTIFICATION: &'static str = "Notification";
    /// `SubscriptionConfirmation`.
    pub const SUBSCRIPTION_CONFIRMATION: &'static str = "SubscriptionConfirmation";
    /// `UnsubscribeConfirmation`.
    pub const UNSUBSCRIBE_CONFIRMATION: &'static str = "UnsubscribeConfirmation";
}

/// The text AWS signs: `name\nvalue\n` for each signed field, in AWS's order; absent optional
/// fields (a notification's `Subject`) are left out. `None` for an unknown message type.
pub fn canonical_string(m: &SnsMessage) -> Option<String> {
    let fields: Vec<(&str, Option<&str>)> = match m.kind.as_str() {
        SnsMessage::NOTIFICATION => vec![
            ("Message", Some(&m.message)),
            ("MessageId", Some(&m.message_id)),
            ("Subject", m.subject.as_deref()),
            ("Timestamp", Some(&m.timestamp)),
            ("TopicArn", Some(&m.topic_arn)),
            ("Type", Some(&m.kind)),
        ],
        SnsMessage::SUBSCRIPTION_CONFIRMATION | SnsMessage::UNSUBSCRIBE_CONFIRMATION => vec![
            ("Message", Some(&m.message)),
            ("MessageId", Some(&m.message_id)),
            ("SubscribeURL", m.subscribe_url.as_deref()),
            ("Timestamp", Some(&m.timestamp)),
            ("Token", m.token.as_deref()),
            ("TopicArn", Some(&m.topic_arn)),
            ("Type", Some(&m.kind)),
        ],
        _ => return None,
    };
    let mut out = String::new();
    for (name, value) in fields {
        if let Some(v) = value {
            out.push_str(name);
            out.push('\n');
            out.push_str(v);
            out.push('\n');
        }
    }
    Some(out)
}

/// Why a message's signature was not accepted.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The message is not signed in a way this verifier knows (a caller error: 400).
    #[error("unsupported SignatureVersion {0:?} (1 and 2 are supported)")]
    UnsupportedVersion(String),
    /// `Signature` is not base64.
    #[error("the Signature is not base64")]
    SignatureEncoding,
    /// `SigningCertURL` is not on the allow-list.
    #[error("SigningCertURL {0:?} is not an allowed SNS certificate URL")]
    CertUrlNotAllowed(String),
    /// The certificate could not be fetched (retryable: 503).
    #[error("failed to fetch the signing certificate from {url}: {reason}")]
    FetchCert { url: String, reason: String },
    /// The certificate document is not a PEM X.509 certificate with an RSA key.
    #[error("failed to read the signing certificate from {url}: {reason}")]
    ParseCert { url: String, reason: String },
    /// The signature does not match.
    #[error("the message signature does not match")]
    BadSignature,
    /// The message type is unknown.
    #[error("unknown message Type {0:?}")]
    UnknownType(String),
    /// `Timestamp` is not an RFC 3339 time.
    #[error("the Timestamp {0:?} is not an RFC 3339 time")]
    Timestamp(String),
    /// `Timestamp` is too old (a replay) or too far in the future.
    #[error("the Timestamp {timestamp} is outside the accepted window ({MAX_AGE:?} old to {MAX_CLOCK_SKEW:?} ahead)")]
    Stale {
        /// The message's time.
        timestamp: String,
    },
}

/// Verifies signatures, fetching certificates from allowed URLs only and keeping their keys.
#[derive(Clone)]
pub struct Verifier {
    allowed: Regex,
    http: reqwest::Client,
    /// Certificate URL → the RSA public key (PKCS#1 DER) of its certificate.
    keys: Arc<Mutex<HashMap<String, Arc<Vec<u8>>>>>,
    /// Certificate URL → when fetching or reading it failed, and how.
    failed: Arc<Mutex<HashMap<String, (Instant, VerifyError)>>>,
    clock: fn() -> DateTime<Utc>,
}

impl Verifier {
    /// A verifier allowing certificate URLs that match `pattern`.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            allowed: Regex::new(pattern)?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                // Why: a redirect could lead off the allow-list.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            keys: Arc::default(),
            failed: Arc::default(),
            clock: Utc::now,
        })
    }

    /// The same verifier reading the time from `clock` (tests with fixed, signed timestamps).
    pub fn with_clock(mut self, clock: fn() -> DateTime<Utc>) -> Self {
        self.clock = clock;
        self
    }

    /// The process's verifier: [`CERT_URL_PATTERN_ENV`] when set, else upstream's allow-list.
    pub fn from_env() -> Result<Self, regex::Error> {
        let pattern = std::env::var(CERT_URL_PATTERN_ENV)
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_CERT_URL_PATTERN.to_string());
        Self::new(&pattern)
    }

    /// Puts a certificate for `url` in the cache without fetching it (tests, preloading).
    pub async fn preload(&self, url: &str, pem: &[u8]) -> Result<(), VerifyError> {
        let key = rsa_key_of(url, pem)?;
        self.keys.lock().await.insert(url.to_string(), Arc::new(key));
        Ok(())
    }

    async fn key(&self, url: &str) -> Result<Arc<Vec<u8>>, VerifyError> {
        if !self.allowed.is_match(url) {
            return Err(VerifyError::CertUrlNotAllowed(url.to_string()));
        }
        if let Some(k) = self.keys.lock().await.get(url) {
            return Ok(k.clone());
        }
        if let Some((at, error)) = self.failed.lock().await.get(url) {
            if at.elapsed() < FAILED_FETCH_TTL {
                return Err(error.clone());
            }
        }
        match self.fetch(url).await {
            Ok(key) => {
                self.keys.lock().await.insert(url.to_string(), key.clone());
                Ok(key)
            }
            Err(error) => {
                let mut failed = self.failed.lock().await;
                failed.retain(|_, (at, _)| at.elapsed() < FAILED_FETCH_TTL);
                if failed.len() >= MAX_FAILED_URLS {
                    // Full of fresh failures (many URLs at once): forget the oldest.
                    if let Some(oldest) = failed
                        .iter()
                        .min_by_key(|(_, (at, _))| *at)
                        .map(|(u, _)| u.clone())
                    {
                        failed.remove(&oldest);
                    }
                }
                failed.insert(url.to_string(), (Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<Arc<Vec<u8>>, VerifyError> {
        let fetch_err = |reason: String| VerifyError::FetchCert {
            url: url.to_string(),
            reason,
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fetch_err(format!("status {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| fetch_err(e.to_string()))?;
        if body.len() > MAX_CERT_BYTES {
            return Err(fetch_err(format!("larger than {MAX_CERT_BYTES} bytes")));
        }
        Ok(Arc::new(rsa_key_of(url, &body)?))
    }

    /// Refuses a message whose `Timestamp` is outside [`MAX_AGE`] / [`MAX_CLOCK_SKEW`] of now.
    fn check_timestamp(&self, m: &SnsMessage) -> Result<(), VerifyError> {
        let at = DateTime::parse_from_rfc3339(m.timestamp.trim())
            .map_err(|_| VerifyError::Timestamp(m.timestamp.clone()))?
            .with_timezone(&Utc);
        let now = (self.clock)();
        let age = now.signed_duration_since(at);
        let too_old = age.to_std().is_ok_and(|age| age > MAX_AGE);
        let too_new = (-age).to_std().is_ok_and(|ahead| ahead > MAX_CLOCK_SKEW);
        if too_old || too_new {
            return Err(VerifyError::Stale {
                timestamp: m.timestamp.clone(),
            });
        }
        Ok(())
    }

    /// Verifies `m`'s signature.
    pub async fn verify(&self, m: &SnsMessage) -> Result<(), VerifyError> {
        let algorithm: &'static dyn ring::signature::VerificationAlgorithm =
            match m.signature_version.as_str() {
                "1" => &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                "2" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                other => return Err(VerifyError::UnsupportedVersion(other.to_string())),
            };
        let canonical = canonical_string(m).ok_or_else(|| VerifyError::UnknownType(m.kind.clone()))?;
        // Before the certificate: a replayed message costs no fetch.
        self.check_timestamp(m)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(m.signature.trim())
            .map_err(|_| VerifyError::SignatureEncoding)?;
        let key = self.key(&m.signing_cert_url).await?;
        ring::signature::UnparsedPublicKey::new(algorithm, key.as_slice())
            .verify(canonical.as_bytes(), &signature)
            .map_err(|_| VerifyError::BadSignature)
    }
}

/// The RSA public key (PKCS#1 DER, as ring takes it) of a PEM certificate.
fn rsa_key_of(url: &str, pem: &[u8]) -> Result<Vec<u8>, VerifyError> {
    let parse_err = |reason: String| VerifyError::ParseCert {
        url: url.to_string(),
        reason,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| parse_err(format!("not PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| parse_err(format!("not an X.509 certificate: {e}")))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}
