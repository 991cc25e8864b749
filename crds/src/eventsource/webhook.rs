//! The plain HTTP webhook event source, and the HTTP server settings (`WebhookContext`) shared by every
//! push source (GitHub, GitLab, Bitbucket, Slack, Stripe, SNS, StorageGRID, …).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeySelector;

/// Where and how a push source listens for HTTP requests. Several events may share one port; each
/// is routed by its endpoint and method.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookContext {
    /// The URL path this event is served on, starting with `/` (e.g. `/push`).
    #[serde(default)]
    pub endpoint: String,
    /// The HTTP method accepted on the endpoint, e.g. `POST`. Requests with another method get 405.
    #[serde(default)]
    pub method: String,
    /// The TCP port the HTTP server listens on, written as a string (`"12000"`), as upstream.
    #[serde(default)]
    pub port: String,
    /// The externally reachable base URL of this server (scheme and host, no path). Sources that
    /// register their webhook with a remote service (GitHub, GitLab, …) give the service this URL
    /// plus the endpoint. Unused by the plain webhook source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The Secret key holding the server's TLS certificate (PEM). Set together with
    /// `serverKeySecret` to serve HTTPS; otherwise plain HTTP is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cert_secret: Option<SecretKeySelector>,
    /// The Secret key holding the server's TLS private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_key_secret: Option<SecretKeySelector>,
    /// Extra key/value pairs copied into every event produced by this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The Secret key holding a bearer token. When set, requests must carry
    /// `Authorization: Bearer <token>` or are rejected with 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<SecretKeySelector>,
    /// The largest request body accepted, in bytes; larger requests are rejected with 413.
    /// Default 1048576 (1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload_size: Option<i64>,
}

/// A boolean expression an event must satisfy before it is published to the bus.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSourceFilter {
    /// The expression, evaluated against the event (e.g. `body.action == "opened"`). Events for
    /// which it is false are dropped before publishing.
    #[serde(default)]
    pub expression: String,
}

/// A generic HTTP endpoint: every accepted request becomes one event carrying its headers and body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventSource {
    /// Where and how to listen.
    #[serde(flatten)]
    pub webhook_context: WebhookContext,
    /// Only requests matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}
