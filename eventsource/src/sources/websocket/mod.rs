//! `websocket` — a Sluice extension beyond upstream Argo Events: connects to `url` (`ws://` or
//! `wss://`) as a client and publishes each text or binary message as one event with data
//! `{body, metadata}`, in the style of the other messaging kinds.
//!
//! Body: with `jsonBody` a message that parses as JSON is embedded as JSON. Otherwise a text
//! message is its text (as `redis` publishes its string payloads; with `jsonBody` and text that is
//! not JSON, base64 as `redis` does) and a binary message is base64 (as `nats` marshals bytes).
//! Never dropped for its shape. Ping, pong and close frames are not events.
//!
//! Delivery: **at-most-once by nature.** WebSocket has no acknowledgement and no redelivery: a
//! message the bus refuses is retried here with backoff (the socket is not read meanwhile, so the
//! server sees backpressure), but a message sent while Sluice is disconnected or down, or in hand
//! when the process stops, is lost. The event id is a random UUID, as for the other at-most-once
//! kinds (`nats`, `redis`, `file`): a message carries no delivery id to derive one from.
//!
//! Connection: the optional `authorization` Secret is sent as the handshake's `Authorization`
//! header (never logged). When the server closes the connection, the connection fails, or the
//! server cannot be reached, the source reconnects after a backoff that doubles from 200 ms to
//! 30 s and restarts at 200 ms once connected. While disconnected the process's readiness flag
//! `<eventSourceName>/<eventName>` is cleared, so `/readyz` names it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::sender::build_event;
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_crds::eventsource::WebSocketEventSource;
use sluice_eventbus::Subject;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, Request};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::{EventLabels, SourceMetrics};
use crate::reconnect::Backoff;
use crate::sender::EventSender;
use crate::{
    resolve_secret, BuildError, BuiltEventSource, PullSource, ReadyFlag, SourceContext, SourceError,
};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "websocket";
/// How long connecting (TCP, TLS and the HTTP upgrade) may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean close may take when the source stops.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(200);

/// The event body of one message (see the module docs).
pub fn body(message: &Message, json_body: bool) -> Option<Value> {
    match message {
        Message::Text(text) => Some(crate::clients::body::text_body_value(text.as_bytes(), json_body)),
        Message::Binary(bytes) => Some(crate::clients::body::body_value(bytes, json_body)),
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => None,
    }
}

/// Checks `url` is a `ws://` or `wss://` URL with a host and makes the handshake request, with
/// `authorization` as its `Authorization` header.
pub fn handshake_request(url: &str, authorization: Option<&str>) -> Result<Request<()>, String> {
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(format!("url {url:?} must start with ws:// or wss://"));
    }
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("url {url:?} is not a WebSocket URL: {e}"))?;
    if request.uri().host().is_none_or(str::is_empty) {
        return Err(format!("url {url:?} has no host"));
    }
    if let Some(value) = authorization {
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| "the authorization Secret is not a valid header value".to_string())?;
        value.set_sensitive(true);
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Ok(request)
}

/// Builds a pull source per `websocket` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, WebSocketEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let authorization = spec
            .authorization
            .as_ref()
            .map(|s| resolve_secret(ctx.secrets.as_ref(), es_name, event_name, s))
            .transpose()?;
        let request = handshake_request(spec.url.trim(), authorization.as_deref()).map_err(|reason| {
            BuildError::InvalidSpec {
                event_source: es_name.into(),
                event: event_name.clone(),
                reason,
            }
        })?;
        out.tasks.push(Box::new(WebSocketSource {
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            url: spec.url.trim().to_owned(),
            request,
            json_body: spec.json_body,
            metadata: spec.metadata.clone(),
            sender: ctx.sender.clone(),
            metrics: ctx.metrics.clone(),
            ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
        }));
    }
    Ok(())
}

/// One `websocket` event: a client connection, reopened when it ends.
pub struct WebSocketSource {
    event_source: String,
    event_name: String,
    /// For logs; the request holds the same URL (and a header that is never logged).
    url: String,
    request: Request<()>,
    json_body: bool,
    metadata: Option<BTreeMap<String, String>>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    ready: ReadyFlag,
}

impl WebSocketSource {
    /// Publishes until the bus stored it; `false` when cancelled first (the message is then lost:
    /// the server cannot redeliver it).
    async fn publish(&self, body: Value, labels: &EventLabels, cancel: &CancellationToken) -> bool {
        let data = json!({"body": body, "metadata": self.metadata});
        // Why `true` without an event (settled): see `build_event`; retrying cannot build it either.
        let Some(event) = build_event(SOURCE_TYPE, labels, data, &self.metrics) else {
            return true;
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        crate::sender::publish_until_stored(&*self.sender, &subject, &event, &self.metrics, labels, cancel)
            .await
    }
}

#[async_trait]
impl PullSource for WebSocketSource {
    fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let labels = EventLabels {
            eventsource_name: self.event_source.clone(),
            event_name: self.event_name.clone(),
        };
        let mut backoff = Backoff::default();
        loop {
            let connected = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                c = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(self.request.clone())) => c,
            };
            match connected {
                Ok(Ok((mut socket, _response))) => {
                    info!(eventsource = %self.event_source, event_name = %self.event_name, url = %sluice_eventbus::redact_url(&self.url), "connected");
                    self.ready.set(true);
                    backoff.reset();
                    loop {
                        let next = tokio::select! {
                            biased;
                            _ = cancel.cancelled() => {
                                // A polite close; the server may be gone, so bounded.
                                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
                                return Ok(());
                            }
                            m = socket.next() => m,
                        };
                        let message = match next {
                            Some(Ok(m)) => m,
                            Some(Err(e)) => {
                                warn!(eventsource = %self.event_source, event_name = %self.event_name, url = %sluice_eventbus::redact_url(&self.url), error = %e, "websocket connection failed; reconnecting");
                                break;
                            }
                            None => {
                                warn!(eventsource = %self.event_source, event_name = %self.event_name, url = %sluice_eventbus::redact_url(&self.url), "websocket server closed the connection; reconnecting");
                                break;
                            }
                        };
                        let Some(body) = body(&message, self.json_body) else {
                            // Control frames: tungstenite answers pings and the close handshake.
                            continue;
                        };
                        if !self.publish(body, &labels, &cancel).await {
                            return Ok(());
                        }
                    }
                    self.ready.set(false);
                }
                Ok(Err(e)) => {
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, url = %sluice_eventbus::redact_url(&self.url), error = %e, retry_in = ?backoff.wait(), "failed to connect to the websocket server; retrying");
                }
                Err(_) => {
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, url = %sluice_eventbus::redact_url(&self.url), timeout = ?CONNECT_TIMEOUT, retry_in = ?backoff.wait(), "connecting to the websocket server timed out; retrying");
                }
            }
            if !backoff.sleep(&cancel).await {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_messaging_kinds() {
        let text = |s: &str| Message::Text(s.into());
        let binary = |b: &[u8]| Message::Binary(b.to_vec().into());
        assert_eq!(body(&text(r#"{"a":1}"#), true), Some(json!({"a": 1})));
        assert_eq!(body(&text(r#"{"a":1}"#), false), Some(json!(r#"{"a":1}"#)));
        assert_eq!(body(&text("plain"), false), Some(json!("plain")));
        // Not JSON although asked for: base64, never dropped.
        assert_eq!(body(&text("plain"), true), Some(json!("cGxhaW4=")));
        assert_eq!(body(&binary(b"\x00\xff"), false), Some(json!("AP8=")));
        assert_eq!(body(&binary(br#"[1,2]"#), true), Some(json!([1, 2])));
        assert_eq!(body(&binary(br#"[1,2]"#), false), Some(json!("WzEsMl0=")));
        assert_eq!(body(&Message::Ping(vec![1].into()), true), None);
        assert_eq!(body(&Message::Close(None), true), None);
    }

    #[test]
    fn the_url_must_be_ws_with_a_host_and_authorization_is_a_sensitive_header() {
        assert!(handshake_request("https://example.com/", None).is_err());
        assert!(handshake_request("ws://", None).is_err());
        assert!(handshake_request("", None).is_err());
        assert!(handshake_request("ws://example.com/feed", Some("Bearer x\n")).is_ok());
        assert!(handshake_request("ws://example.com/feed", Some("bad\u{7f}value")).is_err());
        let request = handshake_request("wss://example.com:8443/feed?x=1", Some("Bearer t0k"))
            .expect("a wss URL with a valid header value makes a request");
        let auth = request
            .headers()
            .get(header::AUTHORIZATION)
            .expect("the request carries the Authorization header");
        assert_eq!(auth.to_str().ok(), Some("Bearer t0k"));
        assert!(auth.is_sensitive());
        assert_eq!(
            request.uri().path_and_query().map(|p| p.as_str()),
            Some("/feed?x=1")
        );
    }
}
