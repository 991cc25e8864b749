//! Building the HTTP request of one firing from the `http` spec: pure apart from reading secrets
//! through the [`SecretResolver`], so it is tested without a network.
//!
//! Order, as upstream: the method defaults to POST; the spec's own `parameters` are applied to it;
//! the body is built from `payload`; then headers: ours (`Content-Type: application/json`,
//! `Idempotency-Key: <firing id>`), `headers`, `dynamicHeaders`, `secureHeaders`, `basicAuth`, each
//! later one overriding an earlier one of the same name. Secret-derived headers are marked
//! sensitive, so they are never printed (`describe` shows them as `<redacted>`).

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use reqwest::{Method, Url};
use sluice_crds::sensor::HTTPTrigger;

use crate::firing::Firing;
use crate::params::{apply_to_typed, construct_payload, resolve_value};
use crate::secrets::SecretResolver;
use crate::triggers::TriggerError;

/// The request timeout when `timeout` is unset or not positive (upstream: 60 seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The header carrying the firing id.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Shown instead of a sensitive header's value.
pub const REDACTED: &str = "<redacted>";

/// How long to wait for the response: `timeout` seconds, or [`DEFAULT_TIMEOUT`] when it is unset or
/// not positive.
pub fn timeout(spec: &HTTPTrigger) -> Duration {
    match spec.timeout {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds.unsigned_abs()),
        _ => DEFAULT_TIMEOUT,
    }
}

/// Everything needed to send one request.
#[derive(Debug)]
pub struct RequestPlan {
    /// The method.
    pub method: Method,
    /// The URL.
    pub url: Url,
    /// The headers; secret-derived ones are marked sensitive.
    pub headers: HeaderMap,
    /// The body (empty without payload parameters, as upstream).
    pub body: Vec<u8>,
    /// How long to wait for the response.
    pub timeout: Duration,
}

impl RequestPlan {
    /// The plan as JSON with sensitive header values replaced by `<redacted>` and the URL's
    /// credentials masked ([`sluice_eventbus::redact_url`]).
    pub fn describe(&self) -> serde_json::Value {
        let headers: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if value.is_sensitive() || name == AUTHORIZATION {
                    REDACTED.to_owned()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name.as_str().to_owned(), serde_json::Value::String(shown))
            })
            .collect();
        let body = serde_json::from_slice::<serde_json::Value>(&self.body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned()));
        serde_json::json!({
            "method": self.method.as_str(),
            // Credentials in the URL's user info or query are masked like secret headers.
            "url": sluice_eventbus::redact_url(self.url.as_str()),
            "headers": headers,
            "body": body,
            "timeoutSeconds": self.timeout.as_secs(),
        })
    }
}

fn build_error(url: &str, reason: impl Into<String>) -> TriggerError {
    TriggerError::BuildRequest {
        url: sluice_eventbus::redact_url(url),
        reason: reason.into(),
    }
}

fn header(
    url: &str,
    name: &str,
    value: &str,
    sensitive: bool,
) -> Result<(HeaderName, HeaderValue), TriggerError> {
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| build_error(url, format!("`{name}` is not a valid header name")))?;
    let mut header_value = HeaderValue::from_str(value)
        // Never echo the value: it may be a secret.
        .map_err(|_| {
            build_error(
                url,
                format!("the value of header `{name}` is not valid in a header"),
            )
        })?;
    header_value.set_sensitive(sensitive);
    Ok((header_name, header_value))
}

/// The method of `spec` with upstream's default.
pub fn method_or_default(spec: &HTTPTrigger) -> &str {
    spec.method.as_deref().filter(|m| !m.is_empty()).unwrap_or("POST")
}

/// Builds the request of `firing` from `spec` (the firing's template, top-level parameters applied).
pub fn plan(
    spec: &HTTPTrigger,
    firing: &Firing,
    secrets: &dyn SecretResolver,
) -> Result<RequestPlan, TriggerError> {
    let mut spec = spec.clone();
    spec.method = Some(method_or_default(&spec).to_owned());
    if !spec.parameters.is_empty() {
        spec = apply_to_typed(&spec, &spec.parameters, &firing.events, "http trigger")
            .map_err(TriggerError::ApplyParams)?;
    }
    let url_text = spec.url.as_str();
    let url = Url::parse(url_text).map_err(|e| build_error(url_text, format!("not a valid URL ({e})")))?;
    let method_text = method_or_default(&spec);
    let method = Method::from_bytes(method_text.as_bytes())
        .map_err(|_| build_error(url_text, format!("`{method_text}` is not a valid HTTP method")))?;
    let body = if spec.payload.is_empty() {
        Vec::new()
    } else {
        construct_payload(&spec.payload, &firing.events)
            .map_err(TriggerError::ApplyParams)?
            .unwrap_or_default()
    };

    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (name, value) = header(url_text, IDEMPOTENCY_KEY, firing.id.as_str(), false)?;
    headers.insert(name, value);
    for (name, value) in &spec.headers {
        let (name, value) = header(url_text, name, value, false)?;
        headers.insert(name, value);
    }
    for dynamic in &spec.dynamic_headers {
        let Some(src) = &dynamic.src else { continue };
        // A dependency without an event (possible under `||`) and without a default adds no header.
        if let Some(value) = resolve_value(src, &firing.events).map_err(TriggerError::ApplyParams)? {
            let (name, value) = header(url_text, &dynamic.dest, &value.text, false)?;
            headers.insert(name, value);
        }
    }
    for secure in &spec.secure_headers {
        let Some(from) = &secure.value_from else { continue };
        let value = match (&from.secret_key_ref, &from.config_map_key_ref) {
            (Some(secret), _) => secrets.resolve_secret(secret),
            (None, Some(config_map)) => secrets.resolve_config_map(config_map),
            (None, None) => continue,
        }
        .map_err(TriggerError::ResolveSecret)?;
        let (name, value) = header(url_text, &secure.name, &value, true)?;
        headers.insert(name, value);
    }
    if let Some(auth) = &spec.basic_auth {
        let read = |s: &Option<sluice_crds::common::SecretKeySelector>| match s {
            Some(s) => secrets.resolve_secret(s).map_err(TriggerError::ResolveSecret),
            None => Ok(String::new()),
        };
        let credentials = format!("{}:{}", read(&auth.username)?, read(&auth.password)?);
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        let (name, value) = header(
            url_text,
            AUTHORIZATION.as_str(),
            &format!("Basic {encoded}"),
            true,
        )?;
        headers.insert(name, value);
    }
    if let Some(host) = spec.host.as_deref().filter(|h| !h.is_empty()) {
        let (_, value) = header(url_text, HOST.as_str(), host, false)?;
        headers.insert(HOST, value);
    }
    let timeout = timeout(&spec);
    Ok(RequestPlan {
        method,
        url,
        headers,
        body,
        timeout,
    })
}
