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
//! message the bus refuses is retried here with backoff ([`Retry::UntilStored`]; the socket is not
//! read meanwhile, so the server sees backpressure), but a message sent while Sluice is
//! disconnected or down, or in hand when the process stops, is lost. The event id is a random
//! UUID, as for the other at-most-once kinds (`nats`, `redis`, `file`): a message carries no
//! delivery id to derive one from.
//!
//! Connection: the optional `authorization` Secret is sent as the handshake's `Authorization`
//! header (never logged). When the server closes the connection, the connection fails, or the
//! server cannot be reached (or the handshake takes longer than 30 s), the source reconnects after
//! a backoff that doubles from 200 ms to 30 s and restarts at 200 ms once connected. While
//! disconnected the process's readiness flag `<eventSourceName>/<eventName>` is cleared, so
//! `/readyz` names it. A connection that ends (the source stopping too) is closed with a close
//! frame, waiting at most 200 ms for the server.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_crds::eventsource::WebSocketEventSource;
use sluice_eventbus::redact_url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, Request};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::pull::{Draft, Malformed, Names, Pull, Upstream, UpstreamError};
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{resolve_secret, BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "websocket";
/// How long connecting (TCP, TLS and the HTTP upgrade) may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean close may take when a connection ends.
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
        let upstream = WebSocketUpstream {
            url: spec.url.trim().to_owned(),
            request,
            json_body: spec.json_body,
            metadata: spec.metadata.clone(),
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// Upstream-style event data of one message body.
pub fn event_data(body: Value, metadata: Option<&BTreeMap<String, String>>) -> Value {
    json!({"body": body, "metadata": metadata})
}

/// One `websocket` event: a client connection, reopened when it ends.
pub struct WebSocketUpstream {
    /// For errors; the request holds the same URL (and a header that is never logged).
    url: String,
    request: Request<()>,
    json_body: bool,
    metadata: Option<BTreeMap<String, String>>,
}

/// Why a connection failed. The URL is shown without credentials.
#[derive(Debug, thiserror::Error)]
enum WebSocketError {
    #[error("failed to connect to the websocket server {url}")]
    Connect {
        url: String,
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("connecting to the websocket server {url} timed out after {after:?}")]
    ConnectTimeout { url: String, after: Duration },
    #[error("websocket connection to {url} failed")]
    Read {
        url: String,
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[async_trait]
impl Upstream for WebSocketUpstream {
    type Session = Socket;
    type Message = Message;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry in hand: the server cannot redeliver, so giving up would lose the message; a
    /// rejected (too large) one is dropped after the sender's error log.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    async fn connect(&self, _: &Names) -> Result<Socket, UpstreamError> {
        let url = || redact_url(&self.url);
        let connecting = tokio_tungstenite::connect_async(self.request.clone());
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((socket, _response))) => Ok(socket),
            Ok(Err(source)) => Err(WebSocketError::Connect { url: url(), source }.into()),
            Err(_) => Err(WebSocketError::ConnectTimeout {
                url: url(),
                after: CONNECT_TIMEOUT,
            }
            .into()),
        }
    }

    /// The next text or binary message; control frames are skipped (tungstenite answers pings and
    /// the close handshake). `None` when the server closed the connection.
    async fn next(&self, socket: &mut Socket) -> Result<Option<Message>, UpstreamError> {
        loop {
            match socket.next().await {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Ok(Some(m)),
                Some(Ok(_control)) => continue,
                Some(Err(source)) => {
                    let url = redact_url(&self.url);
                    return Err(WebSocketError::Read { url, source }.into());
                }
                None => return Ok(None),
            }
        }
    }

    fn decode(&self, message: &Message) -> Result<Vec<Draft>, Malformed> {
        // A control frame carries no event (not reached: `next` skips them).
        Ok(body(message, self.json_body)
            .map(|b| Draft::new(event_data(b, self.metadata.as_ref())))
            .into_iter()
            .collect())
    }

    async fn close(&self, mut socket: Socket) {
        // A polite close; the server may be gone, so bounded.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
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
    fn data_is_the_body_and_the_metadata() {
        let meta = BTreeMap::from([("team".to_owned(), "ops".to_owned())]);
        assert_eq!(
            event_data(json!({"a": 1}), Some(&meta)),
            json!({"body": {"a": 1}, "metadata": {"team": "ops"}})
        );
        assert_eq!(
            event_data(json!("x"), None),
            json!({"body": "x", "metadata": null})
        );
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
