//! The `nats` trigger: publishes one message per firing on a NATS subject.
//!
//! - **Message**: the body is built by `payload` parameters (as upstream; empty without them); the
//!   spec's own `parameters` are applied first, so a subject can come from the event. Headers carry
//!   the firing id as `Idempotency-Key` and `Nats-Msg-Id`, so a consumer (or a JetStream stream's
//!   duplicate window) can drop a repeated firing.
//! - **Success**: core NATS (upstream's behaviour) has no acknowledgement; Sluice publishes and then
//!   flushes, which returns once the server has read the message, so a dead connection is a
//!   retryable error rather than a silent loss. With `jetStream: true` (a Sluice extension) the
//!   firing succeeds only once a stream stored the message; no stream on the subject is an error.
//! - **Connection**: one client per URL, made at the first firing and kept (async-nats reconnects by
//!   itself); `auth` (basic, token, nkey, credential) and `tls` (CA, client certificate,
//!   insecureSkipVerify is refused: NATS's client has no such switch) read from secrets at build,
//!   so a missing secret stops the sensor at start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::ConnectOptions;
use async_trait::async_trait;
use sluice_crds::common::{NATSAuth, TLSConfig};
use sluice_crds::sensor::NATSTrigger;
use tokio::sync::Mutex;
use tracing::{debug, info};

use super::{BuildContext, BuildError, Outcome, Trigger, TriggerError};
use crate::firing::Firing;
use crate::params::{apply_to_typed, construct_payload};

/// How long connecting, flushing and waiting for a JetStream ack may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Credentials and TLS files of one trigger, resolved at build.
#[derive(Clone, Default)]
struct Access {
    auth: Option<Auth>,
    /// PEM files written from secrets (async-nats reads TLS material from files).
    tls: Option<TlsFiles>,
}

#[derive(Clone)]
enum Auth {
    Basic { user: String, password: String },
    Token(String),
    NKey(String),
    Credentials(String),
}

#[derive(Clone)]
struct TlsFiles {
    _dir: Arc<tempfile::TempDir>,
    ca: Option<std::path::PathBuf>,
    client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// A built `nats` trigger.
pub struct NatsTrigger {
    name: String,
    sensor: String,
    access: Access,
    clients: Mutex<HashMap<String, async_nats::Client>>,
}

impl NatsTrigger {
    /// Checks `spec` and reads its secrets.
    pub fn build(name: &str, spec: &NATSTrigger, ctx: &BuildContext) -> Result<Self, BuildError> {
        let invalid = |field: &str, reason: String| BuildError::InvalidField {
            trigger: name.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let parameterized = !spec.parameters.is_empty();
        if !parameterized {
            if spec.url.trim().is_empty() {
                return Err(invalid("nats.url", "required, e.g. nats://nats:4222".into()));
            }
            check_subject(&spec.subject).map_err(|r| invalid("nats.subject", r))?;
        }
        let secret = |selector: &sluice_crds::common::SecretKeySelector| {
            ctx.secrets
                .resolve_secret(selector)
                .map_err(|source| BuildError::ResolveSecret {
                    trigger: name.to_owned(),
                    source,
                })
        };
        let auth = match &spec.auth {
            None => None,
            Some(auth) => Some(resolve_auth(auth, &secret).map_err(|e| match e {
                AuthError::Secret(e) => e,
                AuthError::Invalid(reason) => invalid("nats.auth", reason),
            })?),
        };
        let tls = match &spec.tls {
            None => None,
            Some(tls) => tls_files(tls, &secret, &invalid)?,
        };
        Ok(Self {
            name: name.to_owned(),
            sensor: ctx.sensor.clone(),
            access: Access { auth, tls },
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The spec of this firing, parameters applied.
    fn spec(&self, firing: &Firing) -> Result<NATSTrigger, TriggerError> {
        let spec = firing
            .template
            .nats
            .as_ref()
            .ok_or(TriggerError::MissingAction { kind: "nats" })?;
        if spec.parameters.is_empty() {
            return Ok(spec.clone());
        }
        apply_to_typed(spec, &spec.parameters, &firing.events, "nats trigger")
            .map_err(TriggerError::ApplyParams)
    }

    async fn client(&self, url: &str) -> Result<async_nats::Client, TriggerError> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(url) {
            return Ok(client.clone());
        }
        let options = self
            .access
            .options()
            .await
            .map_err(|reason| TriggerError::Publish {
                target: url.to_owned(),
                reason,
                retryable: false,
            })?;
        let client = options
            .connection_timeout(TIMEOUT)
            .request_timeout(Some(TIMEOUT))
            // No retry inside connect: a server that is down or refuses the credentials fails this
            // attempt at once with the reason, and the runner's retryStrategy decides what next.
            .connect(url)
            .await
            .map_err(|e| TriggerError::Publish {
                target: url.to_owned(),
                reason: format!("failed to connect: {e}"),
                retryable: true,
            })?;
        clients.insert(url.to_owned(), client.clone());
        Ok(client)
    }
}

enum AuthError {
    Secret(BuildError),
    Invalid(String),
}

fn resolve_auth(
    auth: &NATSAuth,
    secret: &dyn Fn(&sluice_crds::common::SecretKeySelector) -> Result<String, BuildError>,
) -> Result<Auth, AuthError> {
    let mut set = Vec::new();
    if let Some(basic) = &auth.basic {
        let (Some(user), Some(password)) = (&basic.username, &basic.password) else {
            return Err(AuthError::Invalid(
                "basic needs both username and password".into(),
            ));
        };
        set.push(Auth::Basic {
            user: secret(user).map_err(AuthError::Secret)?.trim().to_owned(),
            password: secret(password).map_err(AuthError::Secret)?.trim().to_owned(),
        });
    }
    if let Some(token) = &auth.token {
        set.push(Auth::Token(
            secret(token).map_err(AuthError::Secret)?.trim().to_owned(),
        ));
    }
    if let Some(nkey) = &auth.nkey {
        set.push(Auth::NKey(
            secret(nkey).map_err(AuthError::Secret)?.trim().to_owned(),
        ));
    }
    if let Some(cred) = &auth.credential {
        set.push(Auth::Credentials(secret(cred).map_err(AuthError::Secret)?));
    }
    match set.len() {
        1 => Ok(set.remove(0)),
        0 => Err(AuthError::Invalid(
            "set one of basic, token, nkey or credential".into(),
        )),
        _ => Err(AuthError::Invalid(
            "set only one of basic, token, nkey or credential".into(),
        )),
    }
}

fn tls_files(
    tls: &TLSConfig,
    secret: &dyn Fn(&sluice_crds::common::SecretKeySelector) -> Result<String, BuildError>,
    invalid: &dyn Fn(&str, String) -> BuildError,
) -> Result<Option<TlsFiles>, BuildError> {
    if tls.insecure_skip_verify {
        return Err(invalid(
            "nats.tls.insecureSkipVerify",
            "not supported by the NATS client; give the server's CA in caCertSecret instead".into(),
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| {
        invalid(
            "nats.tls",
            format!("failed to make a directory for the TLS files: {e}"),
        )
    })?;
    let write = |file: &str, text: String| {
        let path = dir.path().join(file);
        std::fs::write(&path, text)
            .map(|()| path)
            .map_err(|e| invalid("nats.tls", format!("failed to write a TLS file: {e}")))
    };
    let ca = match &tls.ca_cert_secret {
        Some(s) => Some(write("ca.pem", secret(s)?)?),
        None => None,
    };
    let client = match (&tls.client_cert_secret, &tls.client_key_secret) {
        (Some(c), Some(k)) => Some((write("cert.pem", secret(c)?)?, write("key.pem", secret(k)?)?)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "nats.tls",
                "set both clientCertSecret and clientKeySecret for mutual TLS, or neither".into(),
            ))
        }
    };
    Ok(Some(TlsFiles {
        _dir: Arc::new(dir),
        ca,
        client,
    }))
}

impl Access {
    async fn options(&self) -> Result<ConnectOptions, String> {
        let mut options = match &self.auth {
            None => ConnectOptions::new(),
            Some(Auth::Basic { user, password }) => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Some(Auth::Token(token)) => ConnectOptions::with_token(token.clone()),
            Some(Auth::NKey(seed)) => ConnectOptions::with_nkey(seed.clone()),
            Some(Auth::Credentials(creds)) => ConnectOptions::with_credentials(creds)
                .map_err(|e| format!("the credential secret is not a NATS credentials file: {e}"))?,
        };
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca {
                options = options.add_root_certificates(ca.clone());
            }
            if let Some((cert, key)) = &tls.client {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            options = options.require_tls(true);
        }
        Ok(options)
    }
}

/// A subject to publish on: non-empty tokens, no wildcards, no whitespace.
fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("required".into());
    }
    if subject.chars().any(|c| c.is_whitespace()) {
        return Err(format!("`{subject}` contains whitespace"));
    }
    if subject.split('.').any(|t| t.is_empty() || t == "*" || t == ">") {
        return Err(format!(
            "`{subject}` is not a subject to publish on (empty token or wildcard)"
        ));
    }
    Ok(())
}

#[async_trait]
impl Trigger for NatsTrigger {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn attempt_timeout(&self) -> Duration {
        // Connecting and the ack or flush are each bounded by TIMEOUT, but queueing a publish on a
        // full client buffer is not, so no tighter bound than the default can be promised.
        super::DEFAULT_ATTEMPT_TIMEOUT.max(2 * TIMEOUT)
    }

    fn describe(&self, firing: &Firing) -> Result<serde_json::Value, TriggerError> {
        let spec = self.spec(firing)?;
        let body = construct_payload(&spec.payload, &firing.events)
            .map_err(TriggerError::ApplyParams)?
            .unwrap_or_default();
        let body = serde_json::from_slice::<serde_json::Value>(&body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok(serde_json::json!({
            "url": sluice_eventbus::redact_url(&spec.url),
            "subject": spec.subject,
            "jetStream": spec.jet_stream,
            "headers": {"Idempotency-Key": firing.id.to_string(), "Nats-Msg-Id": firing.id.to_string()},
            "body": body,
        }))
    }

    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError> {
        let spec = self.spec(firing)?;
        let target = format!("{}/{}", spec.url, spec.subject);
        check_subject(&spec.subject).map_err(|reason| TriggerError::Publish {
            target: target.clone(),
            reason: format!("invalid subject: {reason}"),
            retryable: false,
        })?;
        let body = construct_payload(&spec.payload, &firing.events)
            .map_err(TriggerError::ApplyParams)?
            .unwrap_or_default();
        let client = self.client(&spec.url).await?;
        let mut headers = HeaderMap::new();
        let id = firing.id.to_string();
        headers.insert("Idempotency-Key", id.as_str());
        headers.insert(NATS_MESSAGE_ID, id.as_str());
        let failed = |reason: String, retryable: bool| TriggerError::Publish {
            target: target.clone(),
            reason,
            retryable,
        };
        debug!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, subject = %spec.subject, "publishing");
        if spec.jet_stream {
            let context = async_nats::jetstream::new(client);
            let ack = tokio::time::timeout(TIMEOUT, async {
                context
                    .publish_with_headers(spec.subject.clone(), headers, body.into())
                    .await?
                    .await
            })
            .await
            .map_err(|_| failed(format!("no JetStream ack within {TIMEOUT:?}"), true))?
            // No stream on the subject, a lost connection or a timeout may all pass: retry.
            .map_err(|e| failed(format!("JetStream did not store the message: {e}"), true))?;
            info!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, stream = %ack.stream,
                sequence = ack.sequence, duplicate = ack.duplicate, "nats message stored");
            return Ok(Outcome::Published {
                sequence: Some(ack.sequence),
            });
        }
        client
            .publish_with_headers(spec.subject.clone(), headers, body.into())
            .await
            .map_err(|e| failed(format!("failed to publish: {e}"), true))?;
        // Why flush: a core publish only queues the message; the flush returns once the server has
        // read it, so a broken connection fails this attempt (and is retried) instead of losing it.
        tokio::time::timeout(TIMEOUT, client.flush())
            .await
            .map_err(|_| failed(format!("the server did not confirm within {TIMEOUT:?}"), true))?
            .map_err(|e| failed(format!("failed to flush: {e}"), true))?;
        info!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, subject = %spec.subject, "nats message published");
        Ok(Outcome::Published { sequence: None })
    }
}
