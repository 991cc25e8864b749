//! Upstream's `tls` block (`caCertSecret`, `clientCertSecret`, `clientKeySecret`,
//! `insecureSkipVerify`) turned into a rustls client configuration, for every broker source that
//! has one (`amqp`, `nats`, `jetstream`, `mqtt`, `redis`, `redisStream`). The configuration is
//! built on ring, the workspace's one crypto provider.
//!
//! - `caCertSecret`: the only roots trusted (as upstream, whose Go client puts the CA alone in its
//!   pool); without it, the system's roots.
//! - `clientCertSecret` + `clientKeySecret` (PEM): mutual TLS; one without the other is an error.
//! - `insecureSkipVerify`: the server's certificate and name are not checked (tests only).
//!
//! Errors name the field path (`spec.mqtt.<event>.tls.caCertSecret: not a PEM certificate`) and
//! never the secret's content.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sluice_crds::common::TLSConfig;

use crate::{BuildError, SecretResolver};

/// The PEM texts of a `tls` block, resolved from their Secrets. No `Debug`: it holds a key.
#[derive(Default, Clone)]
pub struct TlsMaterial {
    /// `caCertSecret`.
    pub ca_cert: Option<String>,
    /// `clientCertSecret` and `clientKeySecret`.
    pub client: Option<(String, String)>,
    /// `insecureSkipVerify`.
    pub insecure_skip_verify: bool,
}

/// A `tls` block of one event, resolved and checked at build time.
#[derive(Clone)]
pub struct Tls {
    /// The PEM texts (for clients that take PEM rather than a rustls configuration).
    pub material: TlsMaterial,
    /// The client configuration built from them.
    pub config: Arc<ClientConfig>,
}

impl Tls {
    /// Resolves the Secrets of `tls`, the block of event `event_name` of kind `kind` (as spelled in
    /// the manifest, e.g. `redisStream`) of EventSource `es_name`, and builds its configuration.
    /// A bad block is an `InvalidSpec` naming `spec.<kind>.<event>.tls.<field>`.
    pub fn build(
        kind: &str,
        es_name: &str,
        event_name: &str,
        tls: &TLSConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: es_name.into(),
            event: event_name.into(),
            reason: format!("spec.{kind}.{event_name}.{reason}"),
        };
        let resolve = |s: &sluice_crds::common::SecretKeySelector| {
            crate::resolve_secret(secrets, es_name, event_name, s)
        };
        let client = match (&tls.client_cert_secret, &tls.client_key_secret) {
            (Some(c), Some(k)) => Some((resolve(c)?, resolve(k)?)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "tls: set both clientCertSecret and clientKeySecret for mutual TLS, or neither".into(),
                ))
            }
        };
        let material = TlsMaterial {
            ca_cert: tls.ca_cert_secret.as_ref().map(resolve).transpose()?,
            client,
            insecure_skip_verify: tls.insecure_skip_verify,
        };
        let config = client_config(&material).map_err(invalid)?;
        Ok(Self { material, config })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration; the error starts with the field (`tls.caCertSecret: …`),
/// never with its content.
pub fn client_config(m: &TlsMaterial) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = if m.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        match &m.ca_cert {
            Some(pem) => {
                for cert in certificates(pem, "caCertSecret")? {
                    roots
                        .add(cert)
                        .map_err(|_| "tls.caCertSecret: not a usable CA certificate".to_string())?;
                }
            }
            None => {
                // Certificates the system store holds but rustls cannot parse are skipped, as
                // every rustls client does.
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        builder.with_root_certificates(roots)
    };
    match &m.client {
        None => Ok(Arc::new(builder.with_no_client_auth())),
        Some((cert, key)) => {
            let certs = certificates(cert, "clientCertSecret")?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|_| "tls.clientKeySecret: not a PEM private key".to_string())?;
            builder
                .with_client_auth_cert(certs, key)
                .map(Arc::new)
                .map_err(|_| {
                    "tls.clientCertSecret/clientKeySecret: the key does not fit the certificate".to_string()
                })
        }
    }
}

/// The PEM certificates of `pem`, the content of `field`; at least one.
fn certificates(pem: &str, field: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("tls.{field}: not a PEM certificate"))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.{field}: not a PEM certificate (no CERTIFICATE block in it)"
        ));
    }
    Ok(certs)
}

/// `insecureSkipVerify`: accepts any server certificate, but still checks the handshake's
/// signatures (so the session is encrypted to whoever answered).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crds::common::SecretKeySelector;

    #[test]
    fn a_ca_that_is_not_pem_is_named_without_its_content() {
        let m = TlsMaterial {
            ca_cert: Some("secret-garbage".into()),
            ..Default::default()
        };
        let err = client_config(&m).err().unwrap_or_default();
        assert!(err.starts_with("tls.caCertSecret:"), "{err}");
        assert!(!err.contains("secret-garbage"), "{err}");
    }

    #[test]
    fn a_client_key_that_is_not_pem_is_refused() {
        let m = TlsMaterial {
            insecure_skip_verify: true,
            client: Some((String::new(), "nope".into())),
            ..Default::default()
        };
        let err = client_config(&m).err().unwrap_or_default();
        assert!(err.starts_with("tls.clientCertSecret:"), "{err}");
    }

    #[test]
    fn system_roots_and_insecure_configurations_build() {
        assert!(client_config(&TlsMaterial::default()).is_ok());
        let insecure = TlsMaterial {
            insecure_skip_verify: true,
            ..Default::default()
        };
        assert!(client_config(&insecure).is_ok());
    }

    fn selector(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector {
            name: name.into(),
            key: key.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_bad_secret_is_named_by_its_field_path_never_by_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tls")).expect("mkdir");
        std::fs::write(dir.path().join("tls/ca.pem"), "hunter2-not-a-cert").expect("write");
        let secrets = crate::FileSecretResolver::new(dir.path());
        let block = TLSConfig {
            ca_cert_secret: Some(selector("tls", "ca.pem")),
            ..Default::default()
        };
        let err = Tls::build("mqtt", "es", "telemetry", &block, &secrets)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("spec.mqtt.telemetry.tls.caCertSecret: not a PEM certificate"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused() {
        let secrets = crate::FileSecretResolver::new("/nonexistent");
        let block = TLSConfig {
            client_cert_secret: Some(selector("tls", "client.pem")),
            ..Default::default()
        };
        let err = Tls::build("nats", "es", "e", &block, &secrets)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("spec.nats.e.tls: set both clientCertSecret and clientKeySecret"),
            "{err}"
        );
    }
}
