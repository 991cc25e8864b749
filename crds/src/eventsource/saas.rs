//! Push sources for hosted services that call a webhook: Slack (Events API, interactions, slash
//! commands) and Stripe.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EventSourceFilter;
use super::WebhookContext;
use crate::common::SecretKeySelector;

/// Events from a Slack app: Events API callbacks, interactive components and slash commands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackEventSource {
    /// The Secret key holding the app's signing secret; each request's `X-Slack-Signature` is
    /// verified with it. Without it requests are not verified (insecure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SecretKeySelector>,
    /// The Secret key holding the app's verification token, used to answer Slack's URL
    /// verification challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretKeySelector>,
    /// The HTTP server Slack calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookContext>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only requests matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// Events from Stripe webhook notifications.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StripeEventSource {
    /// The HTTP server Stripe calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookContext>,
    /// Register the webhook endpoint with Stripe at start-up (needs `apiKey`). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_webhook: bool,
    /// The Secret key holding the Stripe API key; used only when `createWebhook` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretKeySelector>,
    /// Sluice extension: the Secret key holding the endpoint's signing secret (`whsec_…`). When set,
    /// each request's `Stripe-Signature` (`t=…,v1=…`, HMAC-SHA256 of `<t>.<body>`) is verified and
    /// requests more than 5 minutes old are rejected. Upstream Argo Events does not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretKeySelector>,
    /// Stripe event types to accept, e.g. `charge.succeeded`. Default: all types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_filter: Vec<String>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}
