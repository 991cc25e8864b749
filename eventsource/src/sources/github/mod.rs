//! `github`: GitHub repository and organization webhooks.
//!
//! Protocol, as upstream: with `webhookSecret`, a delivery must carry `X-Hub-Signature-256`
//! (`sha256=<hex HMAC of the exact body>`) or the legacy `X-Hub-Signature` (`sha1=…`); missing or wrong
//! → 401 and nothing published. JSON bodies and form bodies (`payload=<json>`) are accepted, as
//! GitHub sends either. The event data is `{"headers", "body", "metadata"}` where `body` is the payload
//! with the `X-GitHub-Event` and `X-GitHub-Delivery` header values merged in as keys (as upstream).
//! `ping` deliveries are answered 200 (and published like any event, as upstream, unless `events`
//! excludes them).
//!
//! `events` (when set and not `*`) also filters deliveries: an event type not listed is answered 200
//! and not published (Sluice: upstream only uses the list for the hook it creates).
//!
//! Delivery guarantee: 200 only after the bus stored the event; the event id is derived from
//! `X-GitHub-Delivery`, which GitHub keeps on redelivery, so a redelivered event is one event on the
//! bus. Hooks are created or updated through the REST API when `apiToken` and `webhook.url` are set
//! (see [`hooks`]).

mod hooks;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use sluice_crds::eventsource::GithubEventSource;

use crate::push::hooks::HookTask;
use crate::push::signature::{verify_prefixed, Digest};
use crate::push::{
    form_urlencoded_pairs, header_text, headers_body_metadata, is_form, mount, parse_json, refuse_filter,
    require_webhook, resolve_endpoint, Accepted, Incoming, Outgoing, PushAdapter, Rejection,
};
use crate::{BuildError, BuiltEventSource, SourceContext};

pub use hooks::GithubHooks;

/// The header naming the event type.
pub const EVENT_HEADER: &str = "X-GitHub-Event";
/// The header carrying the delivery's id (the same on a redelivery).
pub const DELIVERY_HEADER: &str = "X-GitHub-Delivery";

/// The github kind's adapter.
pub struct GithubAdapter {
    secret: Option<String>,
    events: Vec<String>,
    metadata: Option<BTreeMap<String, String>>,
}

impl GithubAdapter {
    /// An adapter verifying with `secret` (none: unsigned deliveries are accepted, as upstream).
    pub fn new(
        secret: Option<String>,
        events: Vec<String>,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Self {
        Self {
            secret,
            events,
            metadata,
        }
    }

    fn wants(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == "*" || e == event_type)
    }

    fn verify(&self, req: &Incoming<'_>) -> Result<(), Rejection> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let (digest, header, value) = match (req.header("x-hub-signature-256"), req.header("x-hub-signature"))
        {
            (Some(v), _) => (Digest::Sha256, "X-Hub-Signature-256", v),
            (None, Some(v)) => (Digest::Sha1, "X-Hub-Signature", v),
            (None, None) => return Err(Rejection::unauthorized("missing X-Hub-Signature-256 signature")),
        };
        if verify_prefixed(digest, secret.as_bytes(), req.body, value) {
            Ok(())
        } else {
            Err(Rejection::unauthorized(format!("invalid {header} signature")))
        }
    }
}

impl PushAdapter for GithubAdapter {
    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        header_text(headers, DELIVERY_HEADER)
    }

    fn accept(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection> {
        self.verify(req)?;
        let event_type = req.header(EVENT_HEADER).unwrap_or("");
        if !self.wants(event_type) {
            return Ok(Accepted::Answer(
                StatusCode::OK,
                format!("event type {event_type:?} is not subscribed; ignored"),
            ));
        }
        let payload: Cow<'_, [u8]> = if is_form(req.headers) {
            match form_urlencoded_pairs(req.body)
                .into_iter()
                .find(|(k, _)| k == "payload")
            {
                Some((_, v)) => Cow::Owned(v.into_bytes()),
                None => return Err(Rejection::bad_request("form body without a payload field")),
            }
        } else {
            Cow::Borrowed(req.body.as_ref())
        };
        let mut body = parse_json(&payload)?;
        let Value::Object(fields) = &mut body else {
            return Err(Rejection::bad_request("the payload is not a JSON object"));
        };
        // As upstream: the two headers become keys of the body (empty strings when absent).
        for name in [EVENT_HEADER, DELIVERY_HEADER] {
            let value = req.header(name).unwrap_or("").to_string();
            fields.insert(name.to_string(), Value::String(value));
        }
        let data = headers_body_metadata(req.headers, body, self.metadata.as_ref());
        Ok(Accepted::Publish(vec![Outgoing {
            data,
            key: self.delivery_id(req.headers),
        }]))
    }
}

/// Routes and hook tasks of the `github` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, GithubEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    let secrets = ctx.secrets.as_ref();
    for (event_name, spec) in events {
        let wh = require_webhook(es_name, event_name, "github", spec.webhook.as_ref())?;
        let endpoint = resolve_endpoint(es_name, event_name, wh)?;
        refuse_filter(es_name, event_name, "github", spec.filter.as_ref())?;
        let secret = spec
            .webhook_secret
            .as_ref()
            .map(|sel| crate::resolve_secret(secrets, es_name, event_name, sel))
            .transpose()?;
        if let Some(registrar) =
            GithubHooks::from_spec(es_name, event_name, spec, wh, secret.clone(), secrets)?
        {
            out.tasks.push(Box::new(HookTask::new(
                format!("{es_name}/{event_name}"),
                Arc::new(registrar),
                spec.delete_hook_on_finish,
            )));
        }
        let adapter = GithubAdapter::new(secret, spec.events.clone(), spec.metadata.clone());
        mount(out, ctx, (es_name, event_name), "github", endpoint, adapter);
    }
    Ok(())
}
