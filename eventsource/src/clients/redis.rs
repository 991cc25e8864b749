//! The Redis client shared by the `redis` and `redisStream` kinds: `hostAddress` with credentials
//! and database, over TLS when the event has a `tls` block ([`redis_client`]).

use crate::BuildError;

/// A `redis://` URL for `host:port`, with credentials percent-encoded and a database number.
pub fn redis_url(host: &str, username: Option<&str>, password: Option<&str>, db: i32) -> String {
    fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
    let creds = match (username, password) {
        (Some(u), Some(p)) => format!("{}:{}@", encode(u), encode(p)),
        (None, Some(p)) => format!(":{}@", encode(p)),
        (Some(u), None) => format!("{}@", encode(u)),
        (None, None) => String::new(),
    };
    format!("redis://{creds}{host}/{db}")
}

/// The client of a `redis` or `redisStream` event (`kind` as spelled in the manifest): `hostAddress`
/// with the credentials and database, over TLS when the event has a `tls` block (as upstream,
/// whose client then dials TLS to `hostAddress`). The block is checked with [`crate::tls`]; its
/// PEM texts go to the redis client, which builds its own rustls configuration from them (on the
/// process's one provider, ring).
#[allow(
    clippy::too_many_arguments,
    reason = "the fields of two spec types with no common type"
)]
pub(crate) fn redis_client(
    kind: &str,
    es_name: &str,
    event_name: &str,
    host: &str,
    username: Option<&str>,
    password: Option<&str>,
    db: i32,
    tls: Option<&sluice_crds::common::TLSConfig>,
    secrets: &dyn crate::SecretResolver,
) -> Result<redis::Client, BuildError> {
    let invalid = |reason: String| BuildError::InvalidSpec {
        event_source: es_name.into(),
        event: event_name.into(),
        reason,
    };
    // The URL holds the password: errors name the field, never the URL.
    let url = redis_url(host, username, password, db);
    let Some(block) = tls else {
        return redis::Client::open(url)
            .map_err(|_| invalid(format!("spec.{kind}.{event_name}.hostAddress: not host:port")));
    };
    let material = crate::tls::Tls::build(kind, es_name, event_name, block, secrets)?.material;
    let mut url = format!("rediss://{}", &url["redis://".len()..]);
    if material.insecure_skip_verify {
        // The redis client's spelling of "do not verify the server's certificate".
        url.push_str("#insecure");
    }
    let certificates = redis::TlsCertificates {
        client_tls: material.client.map(|(cert, key)| redis::ClientTlsConfig {
            client_cert: cert.into_bytes(),
            client_key: key.into_bytes(),
        }),
        root_cert: material.ca_cert.map(String::into_bytes),
    };
    redis::Client::build_with_tls(url, certificates).map_err(|_| {
        invalid(format!(
            "spec.{kind}.{event_name}.tls: the redis client refused the TLS settings"
        ))
    })
}
