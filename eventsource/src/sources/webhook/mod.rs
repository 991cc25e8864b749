//! `webhook`: a generic HTTP endpoint. Each event of the kind is one route (port, endpoint, method) on the
//! process's shared HTTP server (see [`crate::http`]).
//!
//! Protocol, as upstream: `authSecret` set → `Authorization: Bearer <token>` required (401 otherwise);
//! GET → the query string as `{name: [values]}`; a form-encoded body → the same map of the form fields;
//! any other body must be JSON (400 otherwise); larger than `maxPayloadSize` (default 1 MiB) → 413.
//! Event data is `{"header": {Canonical-Name: [values]}, "body": <json>, "metadata": {...}}` with the
//! `Authorization` header masked.
//!
//! Delivery guarantee: the sender is answered 200 only after the bus stored the event; when the bus
//! refuses or times out it gets 503 with `Retry-After`, so a retrying sender (every webhook sender worth
//! the name) loses nothing. Sluice extension: a request carrying an `Idempotency-Key` (or
//! `X-Request-Id`) header gets an event id derived from it, so the sender's retries dedupe on the bus.

mod handler;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::Method;
use sluice_crds::eventsource::WebhookEventSource;

pub use handler::{canonical_header_name, WebhookRoute};

use crate::http::Route;
use crate::metrics::SourceMetrics;
use crate::secrets::SecretResolver;
use crate::sender::EventSender;
use crate::BuildError;

/// Upstream's default `maxPayloadSize`: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_SIZE: usize = 1024 * 1024;

/// Builds the routes of every `webhook` event of EventSource `es_name`, resolving `authSecret`s.
pub fn build_routes(
    es_name: &str,
    events: &BTreeMap<String, WebhookEventSource>,
    secrets: &dyn SecretResolver,
    sender: Arc<dyn EventSender>,
    metrics: &SourceMetrics,
) -> Result<Vec<Route>, BuildError> {
    let mut routes = Vec::new();
    for (event_name, spec) in events {
        let route = WebhookRoute::build(
            es_name,
            event_name,
            "webhook",
            &spec.webhook_context,
            secrets,
            sender.clone(),
            metrics.clone(),
        )?;
        if spec.filter.is_some() {
            return Err(BuildError::Unsupported {
                event_source: es_name.into(),
                event: event_name.clone(),
                what: "webhook filter.expression (the source-side filter arrives with its own issue)".into(),
            });
        }
        routes.push(route.into_route());
    }
    Ok(routes)
}

/// Parses an upstream method string (`POST`, `get`) into a method.
pub fn parse_method(method: &str) -> Option<Method> {
    if method.is_empty() {
        return None;
    }
    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()
}
