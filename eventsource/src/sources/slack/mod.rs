//! `slack`: a Slack app's Events API callbacks, interactive components and slash commands.
//!
//! Protocol, as upstream: with `signingSecret`, every request must carry `X-Slack-Request-Timestamp`
//! and `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">`; a missing or wrong
//! signature, or a timestamp more than 5 minutes from now (a replay), is 401 and nothing is published.
//! With `token`, an Events API body's `token` must match it (401 otherwise).
//!
//! - JSON bodies are Events API requests: `url_verification` is answered with its `challenge` and not
//!   published; `event_callback` publishes `{"type": <inner type>, "Data": <inner event>}` (upstream's
//!   shape); other types are answered 200 and not published.
//! - Form bodies with `payload` are interactions: the payload object is published.
//! - Form bodies with `command` are slash commands: the command's fields are published (without the
//!   deprecated verification `token`, which Sluice never puts into an event).
//!
//! Delivery guarantee: 200 only after the bus stored the event. The event id is derived from the
//! callback's `event_id` (Slack keeps it on retries), else the `trigger_id`, so Slack's retries are one
//! event on the bus.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use sluice_crds::eventsource::SlackEventSource;

use crate::clock::{Clock, SystemClock};
use crate::push::signature::{token_eq, verify_hmac_hex, Digest};
use crate::push::{
    form_urlencoded_pairs, is_form, mount, parse_json, require_webhook, resolve_endpoint, Accepted, Incoming,
    Outgoing, PushAdapter, Rejection,
};
use crate::{BuildError, BuiltEventSource, SourceContext};

/// How far a request's timestamp may be from now, as Slack's guidance (and slack-go) say.
pub const MAX_SKEW_SECONDS: i64 = 5 * 60;

/// The slash command fields upstream publishes (slack-go's `SlashCommand`), minus `token`.
const SLASH_FIELDS: &[&str] = &[
    "team_id",
    "team_domain",
    "enterprise_id",
    "enterprise_name",
    "channel_id",
    "channel_name",
    "user_id",
    "user_name",
    "command",
    "text",
    "response_url",
    "trigger_id",
    "api_app_id",
    "is_enterprise_install",
];

/// The slack kind's adapter.
pub struct SlackAdapter {
    signing_secret: Option<String>,
    token: Option<String>,
    clock: Arc<dyn Clock>,
}

impl SlackAdapter {
    /// An adapter verifying with `signing_secret` and `token` (each optional).
    pub fn new(signing_secret: Option<String>, token: Option<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            signing_secret,
            token,
            clock,
        }
    }

    fn verify(&self, req: &Incoming<'_>) -> Result<(), Rejection> {
        let Some(secret) = &self.signing_secret else {
            return Ok(());
        };
        let ts = req
            .header("x-slack-request-timestamp")
            .ok_or_else(|| Rejection::unauthorized("missing X-Slack-Request-Timestamp"))?;
        let sig = req
            .header("x-slack-signature")
            .ok_or_else(|| Rejection::unauthorized("missing X-Slack-Signature"))?;
        let seconds: i64 = ts
            .trim()
            .parse()
            .map_err(|_| Rejection::unauthorized("X-Slack-Request-Timestamp is not a number"))?;
        if !crate::push::signature::within_skew(self.clock.now().timestamp(), seconds, MAX_SKEW_SECONDS) {
            return Err(Rejection::unauthorized(
                "X-Slack-Request-Timestamp is more than 5 minutes from now (replayed?)",
            ));
        }
        let Some(hex) = sig.trim().strip_prefix("v0=") else {
            return Err(Rejection::unauthorized("X-Slack-Signature is not a v0 signature"));
        };
        let mut base = Vec::with_capacity(req.body.len() + ts.len() + 4);
        base.extend_from_slice(b"v0:");
        base.extend_from_slice(ts.trim().as_bytes());
        base.push(b':');
        base.extend_from_slice(req.body);
        if verify_hmac_hex(Digest::Sha256, secret.as_bytes(), &base, hex) {
            Ok(())
        } else {
            Err(Rejection::unauthorized("invalid X-Slack-Signature"))
        }
    }

    fn event_api(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection> {
        let body = parse_json(req.body)?;
        if let Some(expected) = &self.token {
            let given = body["token"].as_str().unwrap_or("");
            if !token_eq(given, expected) {
                return Err(Rejection::unauthorized("the verification token does not match"));
            }
        }
        match body["type"].as_str() {
            Some("url_verification") => match body["challenge"].as_str() {
                Some(challenge) => Ok(Accepted::Answer(StatusCode::OK, challenge.to_string())),
                None => Err(Rejection::bad_request("url_verification without a challenge")),
            },
            Some("event_callback") => {
                let inner = body["event"].clone();
                if !inner.is_object() {
                    return Err(Rejection::bad_request("event_callback without an event object"));
                }
                let mut data = Map::new();
                data.insert("type".into(), inner["type"].clone());
                data.insert("Data".into(), inner);
                Ok(Accepted::Publish(vec![Outgoing {
                    data: Value::Object(data),
                    key: body["event_id"].as_str().map(str::to_string),
                }]))
            }
            other => Ok(Accepted::Answer(
                StatusCode::OK,
                format!("event type {:?} is not published", other.unwrap_or("")),
            )),
        }
    }
}

impl PushAdapter for SlackAdapter {
    /// Slack's ids are in the body; the headers only say which retry this is.
    fn delivery_id(&self, _headers: &HeaderMap) -> Option<String> {
        None
    }

    fn accept(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection> {
        self.verify(req)?;
        if !is_form(req.headers) {
            return self.event_api(req);
        }
        let fields: BTreeMap<String, String> = form_urlencoded_pairs(req.body).into_iter().collect();
        if let Some(payload) = fields.get("payload").filter(|p| !p.is_empty()) {
            let data = parse_json(payload.as_bytes())?;
            if !data.is_object() {
                return Err(Rejection::bad_request(
                    "the interaction payload is not a JSON object",
                ));
            }
            let key = data["trigger_id"].as_str().map(str::to_string);
            return Ok(Accepted::Publish(vec![Outgoing { data, key }]));
        }
        if fields.get("command").is_some_and(|c| !c.is_empty()) {
            let mut data = Map::new();
            for f in SLASH_FIELDS {
                let v = fields.get(*f).cloned().unwrap_or_default();
                let v = if *f == "is_enterprise_install" {
                    Value::Bool(v == "true")
                } else {
                    Value::String(v)
                };
                data.insert((*f).to_string(), v);
            }
            let key = fields.get("trigger_id").filter(|t| !t.is_empty()).cloned();
            return Ok(Accepted::Publish(vec![Outgoing {
                data: Value::Object(data),
                key,
            }]));
        }
        Err(Rejection::bad_request(
            "could not determine the slack request type from the form (no payload, no command)",
        ))
    }
}

/// Routes of the `slack` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, SlackEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    build_with_clock(es_name, events, ctx, out, Arc::new(SystemClock))
}

/// [`build`] with a given clock (tests).
pub fn build_with_clock(
    es_name: &str,
    events: &BTreeMap<String, SlackEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
    clock: Arc<dyn Clock>,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let wh = require_webhook(es_name, event_name, "slack", spec.webhook.as_ref())?;
        let endpoint = resolve_endpoint(es_name, event_name, wh)?;
        let resolve = |sel: &Option<sluice_crds::common::SecretKeySelector>| {
            sel.as_ref()
                .map(|s| crate::resolve_secret(ctx.secrets.as_ref(), es_name, event_name, s))
                .transpose()
        };
        let signing_secret = resolve(&spec.signing_secret)?;
        let token = resolve(&spec.token)?;
        if signing_secret.is_none() {
            tracing::warn!(eventsource = %es_name, event_name = %event_name, "slack signingSecret is not set: requests are not verified");
        }
        mount(
            out,
            ctx,
            (es_name, event_name),
            "slack",
            endpoint,
            SlackAdapter::new(signing_secret, token, clock.clone()),
        );
    }
    Ok(())
}
