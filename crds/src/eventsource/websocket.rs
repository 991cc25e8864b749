//! `websocket` — a Sluice extension beyond upstream Argo Events: messages read from a WebSocket
//! server that Sluice connects to as a client.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EventSourceFilter;
use crate::common::SecretKeySelector;

/// Messages from a WebSocket server (Sluice extension; not in upstream Argo Events). Sluice
/// connects as a client and publishes one event per text or binary message, reconnecting with
/// backoff when the server closes the connection or cannot be reached. WebSocket has no
/// acknowledgement: a message sent while Sluice is disconnected, or in hand when it stops, is lost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketEventSource {
    /// The server URL, `ws://` or `wss://`, e.g. `wss://feed.example.com/v1/stream`. `wss://`
    /// trusts the system's certificate authorities.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The Secret key holding the value of the `Authorization` header sent with the opening
    /// handshake, e.g. `Bearer <token>`. Default: no such header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<SecretKeySelector>,
    /// Publish a message that parses as JSON as JSON. Default false: a text message is published
    /// as its text, a binary one as base64.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}
