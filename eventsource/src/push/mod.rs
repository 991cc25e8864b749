//! What every push source (webhook, github, gitlab, bitbucket, bitbucketserver, slack, stripe) shares:
//! one [`PushRoute`] runs the HTTP pipeline — method check, body read under `maxPayloadSize` (413; 408
//! when it stalls past the server's body-read timeout), the kind's [`PushAdapter`] (signature, parsing,
//! event data), publish, answer — so the delivery rules live in one place:
//!
//! - the sender hears `200` only after the bus stored every event of the request;
//! - when the bus refuses or times out it hears `503` with `Retry-After` and must retry;
//! - a rejected request (bad signature, malformed body) publishes nothing and logs one line with the
//!   reason and the sender's delivery id — never a secret, never the body;
//! - where the sender gives a delivery id, the event id is derived from it ([`deterministic_id`]), so a
//!   redelivery is one event on the bus.
//!
//! Kinds differ only in their adapter. [`signature`] holds the HMAC and token checks they share,
//! [`hooks`] the task that registers hooks with a remote API and removes them on shutdown.

pub mod hooks;
pub mod signature;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};
use sluice_crds::eventsource::WebhookContext;
use sluice_eventbus::event::deterministic_id;
use sluice_eventbus::{EventBuilder, Subject};
use tokio_util::sync::CancellationToken;

use crate::http::Route;
use crate::metrics::{EventLabels, SourceMetrics};
use crate::sender::{publish, EventSender, Outcome, Publisher, Retry};
use crate::BuildError;

/// Upstream's default `maxPayloadSize`: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_SIZE: usize = 1024 * 1024;

/// What upstream puts in place of a masked `Authorization` header.
pub const MASKED_AUTHORIZATION: &str = "*** Masked Auth Secret ***";

/// Seconds a sender is asked to wait before retrying when the bus did not take the event.
const RETRY_AFTER_SECONDS: &str = "1";

/// One request as an adapter sees it: headers, query and the whole body (already size-checked).
pub struct Incoming<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The exact body bytes (signatures are computed over these).
    pub body: &'a Bytes,
}

impl Incoming<'_> {
    /// A header's value as text, when present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The event's `data`.
    pub data: Value,
    /// The sender's delivery id (plus, for several events of one request, a suffix); the event id is
    /// derived from it. `None` gives a fresh id.
    pub key: Option<String>,
}

/// What an adapter decided about an authentic, well-formed request.
#[derive(Debug)]
pub enum Accepted {
    /// Publish these events (possibly none), then answer 200 `success`.
    Publish(Vec<Outgoing>),
    /// Answer this directly and publish nothing (a ping, a URL verification, an event type filtered out).
    Answer(StatusCode, String),
}

/// Why a request was refused. Nothing is published; the reason is logged and sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 400, 401, 403, …
    pub status: StatusCode,
    /// A short reason without secrets, for the log and the response.
    pub reason: String,
}

impl Rejection {
    /// 401: missing or invalid signature.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }
    /// 403: a shared token that does not match.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
        }
    }
    /// 400: a malformed body or header.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: reason.into(),
        }
    }
}

/// The kind-specific part of a push source.
pub trait PushAdapter: Send + Sync + 'static {
    /// The sender's delivery id, for logs and event ids, when it gives one.
    fn delivery_id(&self, headers: &HeaderMap) -> Option<String>;
    /// Checks the headers before the body is read (e.g. a bearer token). Default: nothing to check.
    fn check_headers(&self, _headers: &HeaderMap) -> Result<(), Rejection> {
        Ok(())
    }
    /// Verifies and turns one request into events.
    fn accept(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection>;
}

/// The `WebhookContext` settings of one event, checked.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// TCP port.
    pub port: u16,
    /// Path.
    pub endpoint: String,
    /// Method.
    pub method: Method,
    /// Largest body accepted.
    pub max_payload_size: usize,
}

/// Checks a `WebhookContext` (port, endpoint, method, maxPayloadSize; TLS is refused for now).
pub fn resolve_endpoint(
    event_source: &str,
    event_name: &str,
    ctx: &WebhookContext,
) -> Result<Endpoint, BuildError> {
    let invalid = |what: String| BuildError::InvalidSpec {
        event_source: event_source.into(),
        event: event_name.into(),
        reason: what,
    };
    let port: u16 = ctx
        .port
        .trim()
        .parse()
        .map_err(|_| invalid(format!("port {:?} is not a number from 1 to 65535", ctx.port)))?;
    let method = parse_method(&ctx.method)
        .ok_or_else(|| invalid(format!("method {:?} is not an HTTP method", ctx.method)))?;
    crate::http::check_endpoint(&ctx.endpoint)
        .map_err(|r| invalid(format!("endpoint {:?}: {r}", ctx.endpoint)))?;
    let max_payload_size = match ctx.max_payload_size {
        None => DEFAULT_MAX_PAYLOAD_SIZE,
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => return Err(invalid(format!("maxPayloadSize {n} must be greater than 0"))),
    };
    if ctx.server_cert_secret.is_some() || ctx.server_key_secret.is_some() {
        return Err(BuildError::Unsupported {
            event_source: event_source.into(),
            event: event_name.into(),
            what: "serving TLS (serverCertSecret/serverKeySecret); terminate TLS in front of Sluice for now"
                .into(),
        });
    }
    Ok(Endpoint {
        port,
        endpoint: ctx.endpoint.clone(),
        method,
        max_payload_size,
    })
}

/// Parses an upstream method string (`POST`, `get`) into a method.
pub fn parse_method(method: &str) -> Option<Method> {
    if method.is_empty() {
        return None;
    }
    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()
}

/// The `webhook` field every push kind but `webhook` itself requires.
pub fn require_webhook<'a>(
    event_source: &str,
    event_name: &str,
    kind: &str,
    webhook: Option<&'a WebhookContext>,
) -> Result<&'a WebhookContext, BuildError> {
    webhook.ok_or_else(|| BuildError::InvalidSpec {
        event_source: event_source.into(),
        event: event_name.into(),
        reason: format!("spec.{kind}.{event_name}.webhook is required (port, endpoint, method)"),
    })
}

/// One push route, ready to serve.
pub struct PushRoute {
    event_source: String,
    event_name: String,
    source_type: &'static str,
    endpoint: Endpoint,
    adapter: Arc<dyn PushAdapter>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    labels: EventLabels,
    /// Never cancelled: a request in flight gets its answer (the server's graceful shutdown waits
    /// for it), and one publish attempt is bounded by the sender's timeout.
    cancel: CancellationToken,
}

impl PushRoute {
    /// A route of `event_source/event_name` of kind `source_type` (the CloudEvent `type`).
    pub fn new(
        event_source: &str,
        event_name: &str,
        source_type: &'static str,
        endpoint: Endpoint,
        adapter: Arc<dyn PushAdapter>,
        sender: Arc<dyn EventSender>,
        metrics: SourceMetrics,
    ) -> Self {
        Self {
            event_source: event_source.into(),
            event_name: event_name.into(),
            source_type,
            endpoint,
            adapter,
            sender,
            metrics,
            labels: SourceMetrics::labels(event_source, event_name),
            cancel: CancellationToken::new(),
        }
    }

    /// The route to mount on the shared server.
    pub fn into_route(self) -> Route {
        let me = Arc::new(self);
        Route {
            port: me.endpoint.port,
            endpoint: me.endpoint.endpoint.clone(),
            method: me.endpoint.method.clone(),
            owner: format!("{}/{}", me.event_source, me.event_name),
            handler: Arc::new(move |req| {
                let me = me.clone();
                Box::pin(async move { me.handle(req).await })
            }),
        }
    }

    /// Handles one request: check, read, adapt, publish, answer.
    pub async fn handle(&self, req: Request<Body>) -> Response {
        let (parts, body) = req.into_parts();
        let delivery = self.adapter.delivery_id(&parts.headers);
        let delivery = delivery.as_deref().unwrap_or("");
        if let Err(rejection) = self.adapter.check_headers(&parts.headers) {
            return self.reject(rejection, delivery);
        }
        if parts.method != self.endpoint.method {
            return (StatusCode::METHOD_NOT_ALLOWED, "http method does not match").into_response();
        }
        let bytes = match crate::http::read_body(body, self.endpoint.max_payload_size).await {
            Ok(b) => b,
            Err(e) => {
                // Nothing was published: the body never arrived whole. 413 for the length limit and a
                // broken connection (where no answer arrives anyway), 408 for a stalled body.
                tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, delivery, status = e.status().as_u16(), "rejected request: {}", e.text());
                self.metrics.processing_failed.get_or_create(&self.labels).inc();
                return (e.status(), e.text()).into_response();
            }
        };
        let incoming = Incoming {
            method: &parts.method,
            headers: &parts.headers,
            query: parts.uri.query(),
            body: &bytes,
        };
        let outgoing = match self.adapter.accept(&incoming) {
            Ok(Accepted::Publish(events)) => events,
            Ok(Accepted::Answer(status, text)) => {
                tracing::debug!(eventsource = %self.event_source, event_name = %self.event_name, delivery, %status, "answered without publishing");
                return (status, text).into_response();
            }
            Err(rejection) => return self.reject(rejection, delivery),
        };
        let traceparent = parts.headers.get("traceparent").and_then(|v| v.to_str().ok());
        for out in outgoing {
            if let Err(res) = self.publish(out, traceparent, delivery).await {
                return res;
            }
        }
        (StatusCode::OK, "success").into_response()
    }

    fn reject(&self, rejection: Rejection, delivery: &str) -> Response {
        tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, delivery, status = rejection.status.as_u16(), reason = %rejection.reason, "rejected request");
        // Why not count 401/403 as processing failures: they are requests nobody should have sent
        // (scanners, misconfigured senders), not events that failed.
        if !matches!(rejection.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            self.metrics.processing_failed.get_or_create(&self.labels).inc();
        }
        (rejection.status, rejection.reason).into_response()
    }

    /// Publishes one event; `Err` is the response to send (the event was not stored).
    async fn publish(
        &self,
        out: Outgoing,
        traceparent: Option<&str>,
        delivery: &str,
    ) -> Result<(), Response> {
        let mut builder =
            EventBuilder::new(&self.event_source, &self.event_name, self.source_type).data_json(out.data);
        if let Some(key) = &out.key {
            builder = builder.id(deterministic_id(&[
                self.source_type,
                &self.event_source,
                &self.event_name,
                key,
            ]));
        }
        if let Some(tp) = traceparent {
            builder = builder.extension("traceparent", tp);
        }
        let event = match builder.build() {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, delivery, %error, "rejected request: could not build the event");
                self.metrics.processing_failed.get_or_create(&self.labels).inc();
                return Err((StatusCode::BAD_REQUEST, "failed to build the event").into_response());
            }
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        let p = Publisher {
            sender: &*self.sender,
            metrics: &self.metrics,
            labels: &self.labels,
            cancel: &self.cancel,
        };
        // Why one attempt: the sender is waiting for the answer and retries on a 503 itself; the
        // request must not hang while the bus is away.
        match publish(&p, &subject, &event, Retry::Once).await {
            Outcome::Stored(ack) => {
                // Why the sender may now hear 200: the bus has stored the event.
                tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), delivery, duplicate = ack.duplicate, "published");
                Ok(())
            }
            // Why 200: filter.expression dropped the event on purpose (see `crate::filter`).
            Outcome::Filtered => Ok(()),
            // Why 413 and not 503: the event can never be stored, so a retry cannot help (the
            // sender logged its size and counted it).
            Outcome::Rejected(_) => {
                Err((StatusCode::PAYLOAD_TOO_LARGE, "event larger than the bus takes").into_response())
            }
            Outcome::Refused(_) | Outcome::Cancelled => {
                // Why 503 + Retry-After: the event was not stored; the sender must retry or it is
                // lost.
                tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), delivery, "failed to publish; answered 503");
                let mut res = (StatusCode::SERVICE_UNAVAILABLE, "failed to record event").into_response();
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
                Err(res)
            }
        }
    }
}

/// Mounts the push route of `event_source/event_name` (kind `source_type`) on `out`, publishing
/// through the context's sender.
pub fn mount(
    out: &mut crate::BuiltEventSource,
    ctx: &crate::SourceContext,
    (event_source, event_name): (&str, &str),
    source_type: &'static str,
    endpoint: Endpoint,
    adapter: impl PushAdapter,
) {
    out.routes.push(
        PushRoute::new(
            event_source,
            event_name,
            source_type,
            endpoint,
            Arc::new(adapter),
            ctx.sender.clone(),
            ctx.metrics.clone(),
        )
        .into_route(),
    );
}

/// Go's canonical MIME header form, which upstream's event data uses: `x-github-event` → `X-Github-Event`.
pub fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// Headers whose value is a credential in its own right: the shared secret GitLab sends as is
/// (`X-Gitlab-Token`), proxy credentials and cookies. They never reach the bus, so no sensor,
/// trigger payload or log can leak them (upstream publishes them). `Authorization` stays, masked,
/// as upstream shows it. Signature headers (`X-Hub-Signature-256`, …) are digests, not secrets,
/// and stay.
pub const DROPPED_HEADERS: [&str; 3] = ["x-gitlab-token", "proxy-authorization", "cookie"];

/// The headers object of upstream's event data: canonical names, every value, `Authorization`
/// masked, `Host` left out (Go's server moves it out of the header map too), and the
/// [`DROPPED_HEADERS`] left out.
pub fn header_object(headers: &HeaderMap) -> Value {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in headers {
        // `HeaderName`s are lowercase, so the comparison is exact.
        if name == header::HOST || DROPPED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let text = if name == header::AUTHORIZATION {
            MASKED_AUTHORIZATION.to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        map.entry(canonical_header_name(name.as_str()))
            .or_default()
            .push(Value::String(text));
    }
    Value::Object(map.into_iter().map(|(k, v)| (k, Value::Array(v))).collect())
}

/// Upstream's event data of the git and SaaS push kinds: `{"headers", "body", "metadata"}`, with
/// `metadata` left out when empty (Go's `omitempty`).
pub fn headers_body_metadata(
    headers: &HeaderMap,
    body: Value,
    metadata: Option<&BTreeMap<String, String>>,
) -> Value {
    with_metadata("headers", header_object(headers), body, metadata)
}

/// `{<headers_key>: headers, "body": body, "metadata"?: …}`.
pub fn with_metadata(
    headers_key: &str,
    headers: Value,
    body: Value,
    metadata: Option<&BTreeMap<String, String>>,
) -> Value {
    let mut data = Map::new();
    data.insert(headers_key.into(), headers);
    data.insert("body".into(), body);
    if let Some(m) = metadata_value(metadata) {
        data.insert("metadata".into(), m);
    }
    Value::Object(data)
}

/// `metadata` as a JSON object, `None` when absent or empty.
pub fn metadata_value(metadata: Option<&BTreeMap<String, String>>) -> Option<Value> {
    metadata.filter(|m| !m.is_empty()).map(|m| {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    })
}

/// Parses a JSON body; `Err` is the 400.
pub fn parse_json(bytes: &[u8]) -> Result<Value, Rejection> {
    serde_json::from_slice(bytes)
        .map_err(|e| Rejection::bad_request(format!("request body is not valid JSON: {e}")))
}

/// A trimmed, non-empty header value.
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// True when the request's media type is `application/x-www-form-urlencoded`.
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mt| {
            mt.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Decodes `a=1&b=x+y&a=2` (percent-decoding, `+` as space), in order.
pub fn form_urlencoded_pairs(input: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &[u8]) -> String {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    input
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The form fields as `{name: [values]}`.
pub fn form_object(pairs: &[u8]) -> Value {
    let mut map: Map<String, Value> = Map::new();
    for (k, v) in form_urlencoded_pairs(pairs) {
        if let Value::Array(values) = map.entry(k).or_insert_with(|| Value::Array(Vec::new())) {
            values.push(Value::String(v));
        }
    }
    Value::Object(map)
}
