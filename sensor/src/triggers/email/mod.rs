//! The `email` trigger: sends one plain-text email per firing over SMTP, as upstream.
//!
//! - **Message**: `from`, `to` (one or more), `subject`, `body`, after the spec's `parameters` (e.g.
//!   `dest: body`). Sluice sets `Message-ID: <firing id@sluice>`, so a repeated firing (after a crash)
//!   is recognisable by mail systems and readers as the same message.
//! - **Connection**: `host`, `port` (465: TLS from the start; anything else: STARTTLS when the server
//!   offers it, as upstream's mail library does; unset or 0: 587), `username` with the password from
//!   `smtpPassword` (read at build and per message, never logged).
//! - **Errors**: SMTP 4xx answers and connection failures are retryable; 5xx answers (bad recipient,
//!   authentication refused) and unparsable addresses are permanent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use sluice_crds::sensor::EmailTrigger as EmailSpec;
use tracing::{debug, info};

use super::{BuildContext, BuildError, Outcome, Trigger, TriggerError};
use crate::firing::Firing;
use crate::params::apply_to_typed;
use crate::secrets::SecretResolver;

/// The port when `port` is unset or 0: mail submission.
pub const DEFAULT_PORT: u16 = 587;
/// How long connecting and one SMTP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A built `email` trigger.
pub struct EmailTrigger {
    name: String,
    sensor: String,
    secrets: Arc<dyn SecretResolver>,
}

impl EmailTrigger {
    /// Checks `spec` and reads its password once.
    pub fn build(name: &str, spec: &EmailSpec, ctx: &BuildContext) -> Result<Self, BuildError> {
        let invalid = |field: &str, reason: String| BuildError::InvalidField {
            trigger: name.to_owned(),
            field: field.to_owned(),
            reason,
        };
        if let Some(password) = &spec.smtp_password {
            ctx.secrets
                .resolve_secret(password)
                .map_err(|source| BuildError::ResolveSecret {
                    trigger: name.to_owned(),
                    source,
                })?;
        }
        if spec.parameters.is_empty() {
            if spec.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
                return Err(invalid(
                    "email.host",
                    "required: the SMTP server's host name".into(),
                ));
            }
            port(spec).map_err(|r| invalid("email.port", r))?;
            let from = spec.from.as_deref().unwrap_or_default();
            from.parse::<Mailbox>()
                .map_err(|e| invalid("email.from", format!("`{from}` is not an email address ({e})")))?;
            if spec.to.is_empty() {
                return Err(invalid("email.to", "at least one recipient is required".into()));
            }
            for (i, to) in spec.to.iter().enumerate() {
                to.parse::<Mailbox>().map_err(|e| {
                    invalid(
                        &format!("email.to[{i}]"),
                        format!("`{to}` is not an email address ({e})"),
                    )
                })?;
            }
        }
        if spec.username.is_some() != spec.smtp_password.is_some() {
            return Err(invalid(
                "email.smtpPassword",
                "set username and smtpPassword together, or neither".into(),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            sensor: ctx.sensor.clone(),
            secrets: ctx.secrets.clone(),
        })
    }

    fn spec(&self, firing: &Firing) -> Result<EmailSpec, TriggerError> {
        let spec = firing
            .template
            .email
            .as_ref()
            .ok_or(TriggerError::MissingAction { kind: "email" })?;
        if spec.parameters.is_empty() {
            return Ok(spec.clone());
        }
        apply_to_typed(spec, &spec.parameters, &firing.events, "email trigger")
            .map_err(TriggerError::ApplyParams)
    }

    fn target(spec: &EmailSpec) -> String {
        format!(
            "smtp://{}:{}",
            spec.host.as_deref().unwrap_or_default(),
            port(spec).unwrap_or(DEFAULT_PORT)
        )
    }

    fn message(&self, spec: &EmailSpec, firing: &Firing) -> Result<Message, TriggerError> {
        let bad = |reason: String| TriggerError::Publish {
            target: Self::target(spec),
            reason,
            retryable: false,
        };
        let from = spec.from.as_deref().unwrap_or_default();
        let mut builder = Message::builder()
            .from(from.parse().map_err(|e| bad(format!("from `{from}`: {e}")))?)
            .subject(spec.subject.clone().unwrap_or_default())
            .message_id(Some(format!("<{}@sluice>", firing.id)))
            .header(ContentType::TEXT_PLAIN);
        if spec.to.is_empty() {
            return Err(bad("no recipient".into()));
        }
        for to in &spec.to {
            builder = builder.to(to.parse().map_err(|e| bad(format!("to `{to}`: {e}")))?);
        }
        builder
            .body(spec.body.clone().unwrap_or_default())
            .map_err(|e| bad(format!("failed to build the message: {e}")))
    }
}

fn port(spec: &EmailSpec) -> Result<u16, String> {
    match spec.port {
        None | Some(0) => Ok(DEFAULT_PORT),
        Some(p) => u16::try_from(p).map_err(|_| format!("{p} is not a port (1 to 65535)")),
    }
}

#[async_trait]
impl Trigger for EmailTrigger {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn attempt_timeout(&self) -> Duration {
        // TIMEOUT bounds each SMTP exchange, not the whole conversation (several commands), so the
        // default covers it.
        super::DEFAULT_ATTEMPT_TIMEOUT.max(TIMEOUT)
    }

    fn describe(&self, firing: &Firing) -> Result<serde_json::Value, TriggerError> {
        let spec = self.spec(firing)?;
        Ok(json!({
            "server": Self::target(&spec),
            "username": spec.username,
            "password": spec.smtp_password.as_ref().map(|_| super::http::request::REDACTED),
            "from": spec.from,
            "to": spec.to,
            "subject": spec.subject,
            "messageId": format!("<{}@sluice>", firing.id),
            "body": spec.body,
        }))
    }

    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError> {
        let spec = self.spec(firing)?;
        let target = Self::target(&spec);
        let failed = |reason: String, retryable: bool| TriggerError::Publish {
            target: target.clone(),
            reason,
            retryable,
        };
        let host = spec.host.clone().unwrap_or_default();
        let port = port(&spec).map_err(|r| failed(r, false))?;
        let message = self.message(&spec, firing)?;
        let tls_parameters = TlsParameters::new(host.clone())
            .map_err(|e| failed(format!("failed to set up TLS: {e}"), false))?;
        let credentials = spec.username.is_some() && spec.smtp_password.is_some();
        let tls_required = port != 465 && credentials && spec.plaintext_auth != Some(true);
        let tls = if port == 465 {
            Tls::Wrapper(tls_parameters)
        } else if tls_required {
            // Opportunistic TLS would send the password in clear to whoever stripped the
            // server's STARTTLS offer; with credentials, no TLS means no mail.
            Tls::Required(tls_parameters)
        } else {
            Tls::Opportunistic(tls_parameters)
        };
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(port)
            .tls(tls)
            .timeout(Some(TIMEOUT));
        if let (Some(user), Some(password)) = (&spec.username, &spec.smtp_password) {
            let password = self
                .secrets
                .resolve_secret(password)
                .map_err(TriggerError::ResolveSecret)?;
            // PLAIN only: one exchange whose 535 answer is a clear, permanent refusal (LOGIN's
            // multi-step exchange leaves some servers' refusals looking like a broken connection).
            transport = transport
                .credentials(Credentials::new(user.clone(), password.trim().to_owned()))
                .authentication(vec![Mechanism::Plain]);
        }
        debug!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, server = %target, "sending email");
        let response = transport.build().send(message).await.map_err(|e| {
            if tls_required && (e.is_tls() || e.is_client()) {
                // The server did not offer STARTTLS (lettre's client error) or the handshake
                // failed: the same next time.
                return failed(
                    format!("{e}: TLS is required because credentials are set (the server offers no STARTTLS, or its certificate is not trusted); set plaintextAuth: true to send them without TLS"),
                    false,
                );
            }
            // 5xx answers will repeat; 4xx answers and connection trouble may not.
            let retryable = !e.is_permanent();
            failed(format!("{e}"), retryable)
        })?;
        info!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, code = %response.code(), "email sent");
        Ok(Outcome::Published { sequence: None })
    }
}
