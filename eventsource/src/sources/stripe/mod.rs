//! `stripe`: Stripe webhook notifications.
//!
//! Protocol: the body is a Stripe event (JSON; 400 otherwise) and is published as the event data, as
//! upstream. `eventFilter` (when set) lists the event `type`s to publish; others are answered 200 and
//! not published (upstream answers 400, which makes Stripe retry them for days).
//!
//! Sluice extension — signature verification: with `webhookSecret`, the `Stripe-Signature` header
//! (`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">[,v1=…]`) must hold a matching `v1` and a `t`
//! within 5 minutes of now; otherwise 401 and nothing is published (so a captured request cannot be
//! replayed later).
//!
//! Delivery guarantee: 200 only after the bus stored the event; the event id is derived from the
//! Stripe event's `id` (`evt_…`), which Stripe keeps on retries, so a retry is one event on the bus.
//! With `createWebhook` and `apiKey`, the endpoint is registered with Stripe at start (see [`hooks`]).

mod hooks;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use sluice_crds::eventsource::StripeEventSource;

use crate::clock::{Clock, SystemClock};
use crate::push::hooks::HookTask;
use crate::push::signature::{verify_hmac_hex, Digest};
use crate::push::{
    mount, parse_json, require_webhook, resolve_endpoint, Accepted, Incoming, Outgoing, PushAdapter,
    Rejection,
};
use crate::{BuildError, BuiltEventSource, SourceContext};

pub use hooks::StripeHooks;

/// Stripe's default tolerance for a signature's timestamp.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// The stripe kind's adapter.
pub struct StripeAdapter {
    secret: Option<String>,
    event_filter: Vec<String>,
    clock: Arc<dyn Clock>,
}

impl StripeAdapter {
    /// An adapter verifying with `secret` (none: unsigned requests pass, as upstream).
    pub fn new(secret: Option<String>, event_filter: Vec<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            secret,
            event_filter,
            clock,
        }
    }

    fn verify(&self, req: &Incoming<'_>) -> Result<(), Rejection> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let header = req
            .header("stripe-signature")
            .ok_or_else(|| Rejection::unauthorized("missing Stripe-Signature"))?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", t)) => timestamp = Some(t.trim()),
                Some(("v1", s)) => signatures.push(s.trim()),
                _ => {}
            }
        }
        let t = timestamp.ok_or_else(|| Rejection::unauthorized("Stripe-Signature without a timestamp"))?;
        let seconds: i64 = t
            .parse()
            .map_err(|_| Rejection::unauthorized("the Stripe-Signature timestamp is not a number"))?;
        if !crate::push::signature::within_skew(self.clock.now().timestamp(), seconds, TOLERANCE_SECONDS) {
            return Err(Rejection::unauthorized(
                "the Stripe-Signature timestamp is outside the 5-minute tolerance (replayed?)",
            ));
        }
        let mut signed = Vec::with_capacity(req.body.len() + t.len() + 1);
        signed.extend_from_slice(t.as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(req.body);
        if signatures
            .iter()
            .any(|s| verify_hmac_hex(Digest::Sha256, secret.as_bytes(), &signed, s))
        {
            Ok(())
        } else {
            Err(Rejection::unauthorized(
                "no v1 signature in Stripe-Signature matches",
            ))
        }
    }
}

impl PushAdapter for StripeAdapter {
    /// Stripe's id is in the body.
    fn delivery_id(&self, _headers: &HeaderMap) -> Option<String> {
        None
    }

    fn accept(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection> {
        self.verify(req)?;
        let event = parse_json(req.body)?;
        if !event.is_object() {
            return Err(Rejection::bad_request("the body is not a Stripe event object"));
        }
        let ty = event["type"].as_str().unwrap_or("");
        if !self.event_filter.is_empty() && !self.event_filter.iter().any(|f| f == ty || f == "*") {
            return Ok(Accepted::Answer(
                StatusCode::OK,
                format!("event type {ty:?} is not in eventFilter; ignored"),
            ));
        }
        let key = event["id"].as_str().map(str::to_string);
        Ok(Accepted::Publish(vec![Outgoing { data: event, key }]))
    }
}

/// Routes (and the endpoint registration task) of the `stripe` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, StripeEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    build_with(
        es_name,
        events,
        ctx,
        out,
        Arc::new(SystemClock),
        hooks::STRIPE_API,
    )
}

/// [`build`] with a given clock and API base (tests).
pub fn build_with(
    es_name: &str,
    events: &BTreeMap<String, StripeEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
    clock: Arc<dyn Clock>,
    api: &str,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let wh = require_webhook(es_name, event_name, "stripe", spec.webhook.as_ref())?;
        let endpoint = resolve_endpoint(es_name, event_name, wh)?;
        let secret = spec
            .webhook_secret
            .as_ref()
            .map(|s| crate::resolve_secret(ctx.secrets.as_ref(), es_name, event_name, s))
            .transpose()?;
        if spec.create_webhook {
            let registrar = StripeHooks::from_spec(es_name, event_name, spec, wh, ctx.secrets.as_ref(), api)?;
            // Why never delete: upstream has no deleteHookOnFinish for Stripe; the endpoint stays.
            out.tasks.push(Box::new(HookTask::new(
                format!("{es_name}/{event_name}"),
                Arc::new(registrar),
                false,
            )));
        }
        mount(
            out,
            ctx,
            (es_name, event_name),
            "stripe",
            endpoint,
            StripeAdapter::new(secret, spec.event_filter.clone(), clock.clone()),
        );
    }
    Ok(())
}
