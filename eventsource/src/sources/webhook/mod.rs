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

use crate::{BuiltEventSource, SourceContext};
use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_crds::eventsource::WebhookEventSource;

pub use crate::push::{canonical_header_name, parse_method, DEFAULT_MAX_PAYLOAD_SIZE};
pub use handler::{event_data, parse_body, WebhookAdapter};

use crate::push::{resolve_endpoint, PushRoute};
use crate::BuildError;

/// Builds the routes of every `webhook` event of EventSource `es_name`, resolving `authSecret`s.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, WebhookEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    let (secrets, sender, metrics) = (ctx.secrets.as_ref(), &ctx.sender, &ctx.metrics);
    for (event_name, spec) in events {
        let webhook = &spec.webhook_context;
        let endpoint = resolve_endpoint(es_name, event_name, webhook)?;
        let auth_token = webhook
            .auth_secret
            .as_ref()
            .map(|sel| crate::resolve_secret(secrets, es_name, event_name, sel))
            .transpose()?;
        let adapter = WebhookAdapter {
            auth_token,
            metadata: webhook.metadata.clone(),
        };
        out.routes.push(
            PushRoute::new(
                es_name,
                event_name,
                "webhook",
                endpoint,
                Arc::new(adapter),
                sender.clone(),
                metrics.clone(),
            )
            .into_route(),
        );
    }
    Ok(())
}
