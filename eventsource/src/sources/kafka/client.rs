//! librdkafka client settings from the upstream spec fields (`url`, `tls`, `sasl`,
//! `consumerGroup`), with secrets resolved. Pure apart from secret resolution.

use std::collections::BTreeMap;

use sluice_crds::common::{SASLConfig, TLSConfig};
use sluice_crds::eventsource::KafkaEventSource;

use crate::{resolve_secret, BuildError, SecretResolver};

/// Client settings as librdkafka keys; values hold secrets, so this is never logged.
pub type Settings = BTreeMap<String, String>;

/// The librdkafka `partition.assignment.strategy` for upstream's `rebalanceStrategy`
/// (Sarama's names). Sarama's eager `sticky` maps to librdkafka's cooperative sticky assignor,
/// which keeps assignments as stable and never revokes partitions that stay put.
pub fn assignment_strategy(name: Option<&str>) -> Result<&'static str, String> {
    match name.map(str::trim).unwrap_or("") {
        "" | "range" => Ok("range"),
        "roundrobin" => Ok("roundrobin"),
        "sticky" => Ok("cooperative-sticky"),
        other => Err(format!(
            "unknown rebalance strategy {other:?} (use range, roundrobin or sticky)"
        )),
    }
}

/// The settings common to consumers and producers: brokers, TLS, SASL.
pub fn connection_settings(
    es: &str,
    event: &str,
    spec: &KafkaEventSource,
    secrets: &dyn SecretResolver,
) -> Result<Settings, BuildError> {
    let invalid = |reason: String| BuildError::InvalidSpec {
        event_source: es.into(),
        event: event.into(),
        reason: format!("spec.kafka.{event}.{reason}"),
    };
    let brokers: Vec<&str> = spec
        .url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if brokers.is_empty() {
        return Err(invalid(
            "url: no broker address (host:port, comma-separated)".into(),
        ));
    }
    let mut s = Settings::new();
    s.insert("bootstrap.servers".into(), brokers.join(","));
    security_settings(&mut s, spec.tls.as_ref(), spec.sasl.as_ref(), |sel| {
        resolve_secret(secrets, es, event, sel)
    })
    .map_err(|e| match e {
        SecurityError::Build(b) => b,
        SecurityError::Invalid(r) => invalid(r),
    })?;
    Ok(s)
}

/// Why TLS/SASL settings could not be made.
pub enum SecurityError {
    /// A secret did not resolve.
    Build(BuildError),
    /// A field is wrong; the reason names it.
    Invalid(String),
}

/// Adds `security.protocol` and the TLS/SASL keys. Certificates go in as inline PEM, so nothing is
/// written to disk.
pub fn security_settings(
    s: &mut Settings,
    tls: Option<&TLSConfig>,
    sasl: Option<&SASLConfig>,
    resolve: impl Fn(&sluice_crds::common::SecretKeySelector) -> Result<String, BuildError>,
) -> Result<(), SecurityError> {
    let tls_on = tls.is_some();
    if let Some(tls) = tls {
        if let Some(sel) = &tls.ca_cert_secret {
            s.insert("ssl.ca.pem".into(), resolve(sel).map_err(SecurityError::Build)?);
        }
        match (&tls.client_cert_secret, &tls.client_key_secret) {
            (Some(c), Some(k)) => {
                s.insert(
                    "ssl.certificate.pem".into(),
                    resolve(c).map_err(SecurityError::Build)?,
                );
                s.insert("ssl.key.pem".into(), resolve(k).map_err(SecurityError::Build)?);
            }
            (None, None) => {}
            _ => {
                return Err(SecurityError::Invalid(
                    "tls: clientCertSecret and clientKeySecret go together".into(),
                ))
            }
        }
        if tls.insecure_skip_verify {
            s.insert("enable.ssl.certificate.verification".into(), "false".into());
        }
    }
    if let Some(sasl) = sasl {
        let mechanism = sasl.mechanism.as_deref().map(str::trim).unwrap_or("");
        let mechanism = match mechanism {
            "" | "PLAIN" => "PLAIN",
            "SCRAM-SHA-256" => "SCRAM-SHA-256",
            "SCRAM-SHA-512" => "SCRAM-SHA-512",
            "GSSAPI" => "GSSAPI",
            "OAUTHBEARER" => {
                return Err(SecurityError::Invalid(
                    "sasl.mechanism: OAUTHBEARER is not supported by Sluice yet".into(),
                ))
            }
            other => {
                return Err(SecurityError::Invalid(format!(
                "sasl.mechanism: unknown mechanism {other:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI)"
            )))
            }
        };
        s.insert("sasl.mechanism".into(), mechanism.into());
        if let Some(sel) = &sasl.user_secret {
            s.insert(
                "sasl.username".into(),
                resolve(sel).map_err(SecurityError::Build)?,
            );
        }
        if let Some(sel) = &sasl.password_secret {
            s.insert(
                "sasl.password".into(),
                resolve(sel).map_err(SecurityError::Build)?,
            );
        }
        if mechanism != "GSSAPI" && !(s.contains_key("sasl.username") && s.contains_key("sasl.password")) {
            return Err(SecurityError::Invalid(
                "sasl: userSecret and passwordSecret are required for this mechanism".into(),
            ));
        }
    }
    let protocol = match (tls_on, sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    s.insert("security.protocol".into(), protocol.into());
    Ok(())
}

/// A librdkafka config from settings.
pub fn client_config(s: &Settings) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    for (k, v) in s {
        c.set(k, v);
    }
    c
}
