//! The webhook kind's [`PushAdapter`]: bearer-token check, upstream's body rules and event data.
//! The HTTP pipeline itself (limits, publish, 503) is the shared [`crate::push::PushRoute`].

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, Method};
use serde_json::Value;

use crate::push::{
    form_object, header_object, header_text, is_form, with_metadata, Accepted, Incoming, Outgoing,
    PushAdapter, Rejection,
};

/// The webhook kind's adapter.
pub struct WebhookAdapter {
    pub(super) auth_token: Option<String>,
    pub(super) metadata: Option<BTreeMap<String, String>>,
}

impl PushAdapter for WebhookAdapter {
    /// Sluice extension: `Idempotency-Key`, else `X-Request-Id`.
    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        header_text(headers, "idempotency-key").or_else(|| header_text(headers, "x-request-id"))
    }

    fn check_headers(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(token) = &self.auth_token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if crate::push::signature::token_eq(given, token) => Ok(()),
            _ => Err(Rejection::unauthorized("invalid authorization")),
        }
    }

    fn accept(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection> {
        let body =
            parse_body(req.method, req.headers, req.query, req.body).map_err(Rejection::bad_request)?;
        let data = event_data(req.headers, body, self.metadata.as_ref());
        Ok(Accepted::Publish(vec![Outgoing {
            data,
            key: self.delivery_id(req.headers),
        }]))
    }
}

/// The `body` of the event, by upstream's rules. `Err` is the 400 message.
pub fn parse_body(
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    bytes: &[u8],
) -> Result<Value, String> {
    if *method == Method::GET {
        return Ok(form_object(query.unwrap_or("").as_bytes()));
    }
    if is_form(headers) {
        return Ok(form_object(bytes));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("request body is not valid JSON: {e}"))
}

/// The event data object upstream's webhook source produces (`header`, singular, unlike the git kinds).
pub fn event_data(headers: &HeaderMap, body: Value, metadata: Option<&BTreeMap<String, String>>) -> Value {
    with_metadata("header", header_object(headers), body, metadata)
}
