//! `bitbucket`: Bitbucket Cloud repository webhooks.
//!
//! Protocol, as upstream: the body must be JSON (400 otherwise); event data is
//! `{"headers", "body", "metadata"}`. Sluice extension (argo-events #2902): with `webhookSecret`, each
//! delivery's `X-Hub-Signature` (`sha256=<hex HMAC-SHA256 of the body>`, which Bitbucket Cloud sends
//! for hooks that have a secret) must match; missing or wrong → 401, nothing published. The secret is
//! also set on the hooks Sluice creates.
//!
//! Delivery guarantee: 200 only after the bus stored the event; the event id derives from
//! `X-Request-UUID`, so a redelivery is one event on the bus. With `auth` (basic or OAuth token) and
//! `webhook.url`, hooks are created through the 2.0 API (`repositories/{owner}/{slug}/hooks`) and
//! deleted on shutdown when `deleteHookOnFinish` is set.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::json;
use sluice_crds::eventsource::BitbucketEventSource;

use crate::push::hooks::{join_url, ApiAuth, HookTask, JsonHooks};
use crate::push::signature::verify_hub_signature;
use crate::push::{
    header_text, headers_body_metadata, mount, parse_json, require_webhook, resolve_endpoint, Accepted,
    Incoming, Outgoing, PushAdapter, Rejection,
};
use crate::{BuildError, BuiltEventSource, SourceContext};

/// Bitbucket Cloud's API.
pub const BITBUCKET_API: &str = "https://api.bitbucket.org/2.0/";

/// The bitbucket kind's adapter.
pub struct BitbucketAdapter {
    secret: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

impl PushAdapter for BitbucketAdapter {
    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        header_text(headers, "x-request-uuid")
    }

    fn accept(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection> {
        verify_hub_signature(self.secret.as_deref(), req)?;
        let body = parse_json(req.body)?;
        Ok(Accepted::Publish(vec![Outgoing {
            data: headers_body_metadata(req.headers, body, self.metadata.as_ref()),
            key: self.delivery_id(req.headers),
        }]))
    }
}

/// Routes and hook tasks of the `bitbucket` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, BitbucketEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    build_with(es_name, events, ctx, out, BITBUCKET_API)
}

/// [`build`] against another API base (tests).
pub fn build_with(
    es_name: &str,
    events: &BTreeMap<String, BitbucketEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
    api: &str,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let wh = require_webhook(es_name, event_name, "bitbucket", spec.webhook.as_ref())?;
        let endpoint = resolve_endpoint(es_name, event_name, wh)?;
        let resolve = |sel: &sluice_crds::common::SecretKeySelector| {
            crate::resolve_secret(ctx.secrets.as_ref(), es_name, event_name, sel)
        };
        let secret = spec.webhook_secret.as_ref().map(resolve).transpose()?;
        let auth = match &spec.auth {
            Some(a) => match (&a.oauth_token, &a.basic) {
                (Some(t), _) => Some(ApiAuth::Bearer(resolve(t)?)),
                (None, Some(b)) => match (&b.username, &b.password) {
                    (Some(u), Some(p)) => Some(ApiAuth::Basic {
                        username: resolve(u)?,
                        password: resolve(p)?,
                    }),
                    _ => {
                        return Err(BuildError::InvalidSpec {
                            event_source: es_name.into(),
                            event: event_name.clone(),
                            reason: format!(
                                "spec.bitbucket.{event_name}.auth.basic needs both username and password"
                            ),
                        })
                    }
                },
                (None, None) => None,
            },
            None => None,
        };
        if let (Some(auth), false) = (auth, wh.url.trim().is_empty()) {
            let mut targets: Vec<String> = spec
                .repositories
                .iter()
                .map(|r| format!("repositories/{}/{}/hooks", r.owner, r.repository_slug))
                .collect();
            if let (Some(o), Some(r)) = (&spec.owner, &spec.repository_slug) {
                targets.push(format!("repositories/{o}/{r}/hooks"));
            }
            let hook_url = join_url(&wh.url, &wh.endpoint);
            let mut body = json!({
                "description": format!("sluice {es_name}/{event_name}"),
                "url": hook_url,
                "active": true,
                "events": spec.events,
            });
            if let Some(s) = &secret {
                body["secret"] = json!(s);
            }
            out.tasks.push(Box::new(HookTask::new(
                format!("{es_name}/{event_name}"),
                Arc::new(JsonHooks::new(api, auth, targets, hook_url, body, "uuid")),
                spec.delete_hook_on_finish,
            )));
        }
        mount(
            out,
            ctx,
            (es_name, event_name),
            "bitbucket",
            endpoint,
            BitbucketAdapter {
                secret,
                metadata: spec.metadata.clone(),
            },
        );
    }
    Ok(())
}
