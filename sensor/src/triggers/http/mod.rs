//! The `http` trigger: sends one HTTP request per firing.
//!
//! - **Request**: `url`, `method` (default POST), a JSON body built by `payload` parameters (empty
//!   without them, as upstream; a parameter with `dest: ""` sends its value as the whole body),
//!   `headers`, `dynamicHeaders`, `secureHeaders` (Secret or ConfigMap), `basicAuth`, `host`,
//!   `timeout` in seconds (default 60). The spec's own `parameters` are applied first. Sluice adds
//!   `Content-Type: application/json` and `Idempotency-Key: <firing id>` (the manifest's headers win).
//! - **Success**: with `policy.status.allow` set, only those statuses; without it *any* response
//!   counts, as upstream (a non-2xx answer is then logged at warn, not retried).
//! - **Errors**: connection errors and timeouts, and disallowed 5xx/408/429 responses, are retryable;
//!   other disallowed statuses and bad requests are permanent. Retries and acks are the runner's.
//! - **Secrets** are read at build (so a missing one stops the sensor from starting) and again per
//!   request (so a rotated mounted Secret is picked up, as upstream). They, and `Authorization`, are
//!   never logged.
//! - **TLS**: `tls.caCertSecret` (PEM, added to the trust roots), `tls.clientCertSecret` +
//!   `tls.clientKeySecret` (PEM, mutual TLS), `tls.insecureSkipVerify`. A trigger with `tls` gets its
//!   own client, built once at start (a bad certificate stops the sensor with the field named).
//! - **Egress guard** (see [`egress`]): every address a request would go to is checked against the
//!   process's egress rules after DNS resolution, and literal IP URLs before sending; a refused
//!   address is a permanent error naming the trigger, host and address (argo-events #4030).

pub mod egress;
pub mod request;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_crds::sensor::{HTTPTrigger, Trigger as TriggerSpec};
use tracing::{debug, info, warn};

use super::{BuildContext, BuildError, Outcome, Trigger, TriggerError};
use crate::firing::Firing;
use crate::secrets::SecretResolver;
use egress::{EgressDenied, EgressPolicy};

/// How much of a response body is read (and discarded) so the connection can be reused.
const MAX_DRAINED_BODY: usize = 64 * 1024;

/// A built `http` trigger.
pub struct HttpTrigger {
    name: String,
    sensor: String,
    client: reqwest::Client,
    /// The egress rules, checked here for literal IP URLs (host names are checked by the client's
    /// resolver).
    egress: Arc<EgressPolicy>,
    secrets: Arc<dyn SecretResolver>,
    /// `policy.status.allow`; `None`: every response is a success.
    allow: Option<Vec<u16>>,
    /// The spec's `timeout` (or the default), for [`Trigger::attempt_timeout`].
    timeout: Duration,
}

impl HttpTrigger {
    /// Checks `http` (of the trigger `spec` named `name`) and reads its secrets once.
    pub fn build(
        name: &str,
        http: &HTTPTrigger,
        spec: &TriggerSpec,
        ctx: &BuildContext,
    ) -> Result<Self, BuildError> {
        let invalid = |field: &str, reason: String| BuildError::InvalidField {
            trigger: name.to_owned(),
            field: field.to_owned(),
            reason,
        };
        // Secure headers must not follow a redirect to another origin: such a trigger gets a
        // client of its own that stays within the request's origin.
        let same_origin = !http.secure_headers.is_empty();
        let client = match (&http.tls, same_origin) {
            (Some(tls), _) => tls_client(name, tls, ctx, same_origin)?,
            (None, true) => ctx
                .http
                .same_origin_builder()
                .build()
                .map_err(|e| invalid("http.secureHeaders", format!("failed to build the client: {e}")))?,
            (None, false) => ctx.http.shared().clone(),
        };
        // Parameters may fill in the URL or method per firing; check them only when nothing can.
        let parameterized = !spec.parameters.is_empty() || !http.parameters.is_empty();
        if !parameterized {
            if let Err(e) = reqwest::Url::parse(&http.url) {
                return Err(invalid(
                    "http.url",
                    format!("`{}` is not a valid URL ({e})", http.url),
                ));
            }
            let method = request::method_or_default(http);
            if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
                return Err(invalid(
                    "http.method",
                    format!("`{method}` is not an HTTP method"),
                ));
            }
        }
        let allow = match spec.policy.as_ref().and_then(|p| p.status.as_ref()) {
            Some(status) if !status.allow.is_empty() => {
                let mut codes = Vec::with_capacity(status.allow.len());
                for code in &status.allow {
                    match u16::try_from(*code) {
                        Ok(c) if (100..=599).contains(&c) => codes.push(c),
                        _ => {
                            return Err(invalid(
                                "policy.status.allow",
                                format!("{code} is not an HTTP status"),
                            ))
                        }
                    }
                }
                Some(codes)
            }
            _ => None,
        };
        for secure in &http.secure_headers {
            let Some(from) = &secure.value_from else { continue };
            let result = match (&from.secret_key_ref, &from.config_map_key_ref) {
                (Some(secret), _) => ctx.secrets.resolve_secret(secret).map(drop),
                (None, Some(config_map)) => ctx.secrets.resolve_config_map(config_map).map(drop),
                (None, None) => Ok(()),
            };
            result.map_err(|source| BuildError::ResolveSecret {
                trigger: name.to_owned(),
                source,
            })?;
        }
        if let Some(auth) = &http.basic_auth {
            for selector in [&auth.username, &auth.password].into_iter().flatten() {
                ctx.secrets
                    .resolve_secret(selector)
                    .map_err(|source| BuildError::ResolveSecret {
                        trigger: name.to_owned(),
                        source,
                    })?;
            }
        }
        let method = request::method_or_default(http);
        if matches!(method, "POST" | "PUT" | "PATCH") && http.payload.is_empty() {
            warn!(sensor = %ctx.sensor, trigger = %name, "http trigger has no payload parameters; requests are sent with an empty body");
        }
        Ok(Self {
            name: name.to_owned(),
            sensor: ctx.sensor.clone(),
            client,
            egress: Arc::new(ctx.http.policy().clone()),
            secrets: ctx.secrets.clone(),
            allow,
            timeout: request::timeout(http),
        })
    }

    fn plan(&self, firing: &Firing) -> Result<request::RequestPlan, TriggerError> {
        let spec = firing
            .template
            .http
            .as_ref()
            .ok_or(TriggerError::MissingAction { kind: "http" })?;
        request::plan(spec, firing, &*self.secrets)
    }
}

#[async_trait]
impl Trigger for HttpTrigger {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn attempt_timeout(&self) -> Duration {
        // `timeout` as written in the spec (parameters applied per firing may change it; the
        // spec's value is what is known when the lease is sized).
        self.timeout
    }

    fn describe(&self, firing: &Firing) -> Result<serde_json::Value, TriggerError> {
        Ok(self.plan(firing)?.describe())
    }

    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError> {
        let plan = self.plan(firing)?;
        // For logs and errors only: user info, query values and fragment masked.
        let url = sluice_eventbus::redact_url(plan.url.as_str());
        // Literal IP URLs skip DNS, so the resolver's guard never sees them: check them here.
        if let Some(address) = literal_ip(&plan.url) {
            self.egress
                .check(plan.url.host_str().unwrap_or_default(), address)
                .map_err(|denied| TriggerError::EgressDenied {
                    url: url.clone(),
                    denied,
                })?;
        }
        debug!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, method = %plan.method, url = %url, "sending http request");
        let mut response = self
            .client
            .request(plan.method, plan.url)
            .headers(plan.headers)
            .body(plan.body)
            .timeout(plan.timeout)
            .send()
            .await
            .map_err(|source| match egress_denied(&source) {
                Some(denied) => TriggerError::EgressDenied {
                    url: url.clone(),
                    denied,
                },
                None => TriggerError::SendRequest {
                    url: url.clone(),
                    // reqwest's message repeats the whole URL; `url` has the redacted one.
                    source: source.without_url(),
                },
            })?;
        let status = response.status().as_u16();
        // Read (a bounded part of) the body so the connection can be reused; its content is unused.
        let mut drained = 0usize;
        while let Ok(Some(chunk)) = response.chunk().await {
            drained += chunk.len();
            if drained >= MAX_DRAINED_BODY {
                break;
            }
        }
        match &self.allow {
            Some(allow) if !allow.contains(&status) => {
                return Err(TriggerError::StatusNotAllowed { url, status })
            }
            None if !(200..300).contains(&status) => {
                warn!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, status, url = %url,
                    "http trigger got a non-2xx response; counted as success because policy.status.allow is not set (as upstream)");
            }
            _ => {}
        }
        info!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, status, "http request sent");
        Ok(Outcome::HttpResponse { status })
    }
}

/// The address of a URL whose host is a literal IP (`[…]` for IPv6).
fn literal_ip(url: &reqwest::Url) -> Option<std::net::IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// The egress refusal inside a send error, when the guarded resolver caused it.
pub(crate) fn egress_denied(error: &reqwest::Error) -> Option<EgressDenied> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(denied) = e.downcast_ref::<EgressDenied>() {
            return Some(denied.clone());
        }
        source = e.source();
    }
    None
}

/// A client of its own for a trigger with `tls`, under the same egress guard.
fn tls_client(
    name: &str,
    tls: &sluice_crds::common::TLSConfig,
    ctx: &BuildContext,
    same_origin: bool,
) -> Result<reqwest::Client, BuildError> {
    let secret = |selector| {
        ctx.secrets
            .resolve_secret(selector)
            .map_err(|source| BuildError::ResolveSecret {
                trigger: name.to_owned(),
                source,
            })
    };
    let invalid = |field: &str, reason: String| BuildError::InvalidField {
        trigger: name.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let mut builder = if same_origin {
        ctx.http.same_origin_builder()
    } else {
        ctx.http.builder()
    };
    if let Some(ca) = &tls.ca_cert_secret {
        let pem = secret(ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| invalid("http.tls.caCertSecret", format!("not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(invalid(
                "http.tls.caCertSecret",
                "holds no PEM certificate".to_owned(),
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    match (&tls.client_cert_secret, &tls.client_key_secret) {
        (Some(cert), Some(key)) => {
            let pem = format!("{}\n{}", secret(cert)?, secret(key)?);
            let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
                invalid(
                    "http.tls.clientCertSecret",
                    format!("the client certificate and key are not a PEM pair: {e}"),
                )
            })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid(
                "http.tls",
                "set both clientCertSecret and clientKeySecret for mutual TLS, or neither".to_owned(),
            ))
        }
    }
    if tls.insecure_skip_verify {
        warn!(sensor = %ctx.sensor, trigger = %name, "http.tls.insecureSkipVerify: the server's certificate is not verified");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| invalid("http.tls", format!("failed to build the TLS client: {e}")))
}

#[cfg(test)]
mod tests;
