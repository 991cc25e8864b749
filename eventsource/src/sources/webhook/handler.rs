//! The request handling of one webhook route, kept free of sockets so it is tested through axum's
//! `oneshot`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use sluice_crds::eventsource::WebhookContext;
use sluice_eventbus::event::deterministic_id;
use sluice_eventbus::{EventBuilder, Subject};
use subtle::ConstantTimeEq;

use super::{parse_method, DEFAULT_MAX_PAYLOAD_SIZE};
use crate::http::Route;
use crate::metrics::{EventLabels, SourceMetrics};
use crate::secrets::SecretResolver;
use crate::sender::EventSender;
use crate::BuildError;

/// What upstream puts in place of a masked `Authorization` header.
pub const MASKED_AUTHORIZATION: &str = "*** Masked Auth Secret ***";

/// Seconds a sender is asked to wait before retrying when the bus did not take the event.
const RETRY_AFTER_SECONDS: &str = "1";

/// One webhook route, resolved and ready to serve.
pub struct WebhookRoute {
    event_source: String,
    event_name: String,
    source_type: &'static str,
    port: u16,
    endpoint: String,
    method: Method,
    auth_token: Option<String>,
    max_payload_size: usize,
    metadata: Option<BTreeMap<String, String>>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    labels: EventLabels,
}

impl WebhookRoute {
    /// Resolves a webhook context (`port`, `endpoint`, `method`, `authSecret`, `maxPayloadSize`).
    pub fn build(
        event_source: &str,
        event_name: &str,
        source_type: &'static str,
        ctx: &WebhookContext,
        secrets: &dyn SecretResolver,
        sender: Arc<dyn EventSender>,
        metrics: SourceMetrics,
    ) -> Result<Self, BuildError> {
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
                what:
                    "serving TLS (serverCertSecret/serverKeySecret); terminate TLS in front of Sluice for now"
                        .into(),
            });
        }
        let auth_token = match &ctx.auth_secret {
            Some(sel) => Some(
                secrets
                    .resolve_secret(sel)
                    .map_err(|source| BuildError::ResolveSecret {
                        event_source: event_source.into(),
                        event: event_name.into(),
                        source: Box::new(source),
                    })?,
            ),
            None => None,
        };
        Ok(Self {
            event_source: event_source.into(),
            event_name: event_name.into(),
            source_type,
            port,
            endpoint: ctx.endpoint.clone(),
            method,
            auth_token,
            max_payload_size,
            metadata: ctx.metadata.clone(),
            sender,
            metrics,
            labels: SourceMetrics::labels(event_source, event_name),
        })
    }

    /// The route to mount on the shared server.
    pub fn into_route(self) -> Route {
        let me = Arc::new(self);
        Route {
            port: me.port,
            endpoint: me.endpoint.clone(),
            method: me.method.clone(),
            owner: format!("{}/{}", me.event_source, me.event_name),
            handler: Arc::new(move |req| {
                let me = me.clone();
                Box::pin(async move { me.handle(req).await })
            }),
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.auth_token else {
            return true;
        };
        let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(given) = given.strip_prefix("Bearer ") else {
            return false;
        };
        // Why constant time: the comparison must not leak how many leading bytes of the token matched.
        given.as_bytes().ct_eq(token.as_bytes()).into()
    }

    /// Handles one request: authenticate, read and parse the body, publish, answer.
    pub async fn handle(&self, req: Request<Body>) -> Response {
        let started = std::time::Instant::now();
        let res = self.process(req, started).await;
        if res.status().is_client_error() && res.status() != StatusCode::UNAUTHORIZED {
            self.metrics.processing_failed.get_or_create(&self.labels).inc();
        }
        res
    }

    async fn process(&self, req: Request<Body>, started: std::time::Instant) -> Response {
        let (parts, body) = req.into_parts();
        if !self.authorized(&parts.headers) {
            tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, "rejected request: bad or missing bearer token");
            return (StatusCode::UNAUTHORIZED, "invalid authorization").into_response();
        }
        if parts.method != self.method {
            return (StatusCode::METHOD_NOT_ALLOWED, "http method does not match").into_response();
        }
        let bytes = match axum::body::to_bytes(body, self.max_payload_size).await {
            Ok(b) => b,
            Err(e) => {
                // Why 413 for every read failure: to_bytes fails on the length limit, and on a broken
                // client connection where no answer arrives anyway.
                tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "rejected request body");
                return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
            }
        };
        let body = match parse_body(&parts.method, &parts.headers, parts.uri.query(), &bytes) {
            Ok(v) => v,
            Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
        };
        let data = event_data(&parts.headers, body, self.metadata.as_ref());
        let mut builder =
            EventBuilder::new(&self.event_source, &self.event_name, self.source_type).data_json(data);
        if let Some(key) = delivery_key(&parts.headers) {
            builder = builder.id(deterministic_id(&[
                self.source_type,
                &self.event_source,
                &self.event_name,
                key,
            ]));
        }
        if let Some(tp) = parts.headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            builder = builder.extension("traceparent", tp);
        }
        let event = match builder.build() {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, %error, "rejected request: could not build the event");
                return (StatusCode::BAD_REQUEST, "failed to build the event").into_response();
            }
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        match self.sender.send(&subject, &event).await {
            Ok(ack) => {
                // Why 200 only here: the bus has stored the event, so answering the sender is safe.
                self.metrics.sent.get_or_create(&self.labels).inc();
                self.metrics
                    .processing_duration
                    .get_or_create(&self.labels)
                    .observe(started.elapsed().as_secs_f64() * 1000.0);
                tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), duplicate = ack.duplicate, "published");
                (StatusCode::OK, "success").into_response()
            }
            Err(error) => {
                // Why 503 + Retry-After: the event was not stored; the sender must retry or it is lost.
                self.metrics.sent_failed.get_or_create(&self.labels).inc();
                self.metrics.processing_failed.get_or_create(&self.labels).inc();
                tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), %error, "failed to publish; answered 503");
                let mut res = (StatusCode::SERVICE_UNAVAILABLE, "failed to record event").into_response();
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
                res
            }
        }
    }
}

/// The sender's delivery id, when it gives one: `Idempotency-Key`, else `X-Request-Id`.
fn delivery_key(headers: &HeaderMap) -> Option<&str> {
    ["idempotency-key", "x-request-id"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
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

/// The `header` object: canonical names, every value, `Authorization` masked, `Host` left out (Go's
/// server moves it out of the header map too).
pub fn header_object(headers: &HeaderMap) -> Value {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in headers {
        if name == header::HOST {
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

fn form_object(pairs: &[u8]) -> Value {
    let mut map: Map<String, Value> = Map::new();
    for (k, v) in form_urlencoded_pairs(pairs) {
        if let Value::Array(values) = map.entry(k).or_insert_with(|| Value::Array(Vec::new())) {
            values.push(Value::String(v));
        }
    }
    Value::Object(map)
}

/// Decodes `a=1&b=x+y&a=2` (percent-decoding, `+` as space), in order.
fn form_urlencoded_pairs(input: &[u8]) -> Vec<(String, String)> {
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

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mt| {
            mt.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The `body` of the event, by upstream's rules. `Err` is the 400 message.
pub fn parse_body(
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    bytes: &[u8],
) -> Result<Value, String> {
    if *method == Method::GET {
        return Ok(form_object(query.unwrap_or("").as_bytes()));
    }
    if is_form(headers) {
        return Ok(form_object(bytes));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("request body is not valid JSON: {e}"))
}

/// The event data object upstream's webhook source produces.
pub fn event_data(headers: &HeaderMap, body: Value, metadata: Option<&BTreeMap<String, String>>) -> Value {
    let mut data = Map::new();
    data.insert("header".into(), header_object(headers));
    data.insert("body".into(), body);
    if let Some(m) = metadata.filter(|m| !m.is_empty()) {
        data.insert(
            "metadata".into(),
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
    Value::Object(data)
}
