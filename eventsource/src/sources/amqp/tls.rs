//! TLS of the `amqp` source: upstream's `tls` block turned into a rustls client configuration
//! (ring, the workspace's one crypto provider) that lapin connects with.
//!
//! - `caCertSecret`: the only roots trusted (as upstream, whose Go client puts the CA alone in its
//!   pool); without it, the system's roots.
//! - `clientCertSecret` + `clientKeySecret` (PEM): mutual TLS; one without the other is an error.
//! - `insecureSkipVerify`: the server's certificate and name are not checked (tests only).
//!
//! The URL must be `amqps://` when `tls` is set: with `amqp://` upstream silently connects in
//! plain text, which is refused here rather than repeated.

use std::sync::Arc;
use std::time::Duration;

use lapin::tcp::{HandshakeResult, RustlsConnector, TcpStream};
use lapin::uri::AMQPUri;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The PEM texts of a `tls` block, resolved from their Secrets.
#[derive(Default)]
pub struct TlsMaterial {
    /// `caCertSecret`.
    pub ca_cert: Option<String>,
    /// `clientCertSecret` and `clientKeySecret`.
    pub client: Option<(String, String)>,
    /// `insecureSkipVerify`.
    pub insecure_skip_verify: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration; the error says which field is wrong (never its content).
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
                let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "tls.caCertSecret: not a PEM certificate".to_string())?;
                if certs.is_empty() {
                    return Err("tls.caCertSecret: no PEM certificate in it".into());
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| format!("tls.caCertSecret: {e}"))?;
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
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| "tls.clientCertSecret: not a PEM certificate".to_string())?;
            if certs.is_empty() {
                return Err("tls.clientCertSecret: no PEM certificate in it".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|_| "tls.clientKeySecret: not a PEM private key".to_string())?;
            builder
                .with_client_auth_cert(certs, key)
                .map(Arc::new)
                .map_err(|e| format!("tls.clientCertSecret/clientKeySecret: {e}"))
        }
    }
}

/// lapin's connect function for `config`: TCP (honouring the URL's `connection_timeout`), then the
/// TLS handshake with the URL's host as the server name.
#[allow(
    clippy::result_large_err,
    reason = "HandshakeResult is the error type lapin's connector signature requires"
)]
pub fn connector(config: Arc<ClientConfig>) -> Box<dyn Fn(&AMQPUri) -> HandshakeResult + Send + Sync> {
    let tls = RustlsConnector::from(config);
    Box::new(move |uri: &AMQPUri| {
        let address = (uri.authority.host.as_str(), uri.authority.port);
        let stream = match uri.query.connection_timeout {
            Some(ms) => TcpStream::connect_timeout(address, Duration::from_millis(ms)),
            None => TcpStream::connect(address),
        }?;
        let stream = stream.into_rustls(&tls, &uri.authority.host)?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    })
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
}
