//! `bitbucketserver`: Bitbucket Server / Data Center repository and project webhooks.
//!
//! Protocol, as upstream: with `webhookSecret`, each delivery's `X-Hub-Signature`
//! (`sha256=<hex HMAC-SHA256 of the body>`) must match; missing or wrong → 401, nothing published. The
//! `diagnostics:ping` test delivery is answered 200 and not published. The body must be JSON (400).
//! Event data is `{"headers", "body", "metadata"}`. With `oneEventPerChange`, a `repo:refs_changed`
//! delivery with several `changes` becomes one event per change (the body with `changes` holding that
//! one change), as upstream.
//!
//! Delivery guarantee: 200 only after the bus stored every event of the delivery. Event ids derive from
//! `X-Request-Id` (plus the change's index), so a redelivery is the same events on the bus. With
//! `accessToken` and `webhook.url`, hooks are created on the repositories and projects through the
//! REST API (`{bitbucketserverBaseURL}/api/1.0/…/webhooks`) and deleted on shutdown when
//! `deleteHookOnFinish` is set.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use sluice_crds::eventsource::BitbucketServerEventSource;

use crate::push::hooks::{join_url, ApiAuth, HookTask, JsonHooks};
use crate::push::signature::verify_hub_signature;
use crate::push::{
    header_text, headers_body_metadata, mount, parse_json, require_webhook, resolve_endpoint, Accepted,
    Incoming, Outgoing, PushAdapter, Rejection,
};
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The bitbucketserver kind's adapter.
pub struct BitbucketServerAdapter {
    secret: Option<String>,
    one_event_per_change: bool,
    metadata: Option<BTreeMap<String, String>>,
}

impl BitbucketServerAdapter {
    /// An adapter verifying with `secret` (none: unsigned deliveries pass, as upstream).
    pub fn new(
        secret: Option<String>,
        one_event_per_change: bool,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Self {
        Self {
            secret,
            one_event_per_change,
            metadata,
        }
    }
}

impl PushAdapter for BitbucketServerAdapter {
    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        header_text(headers, "x-request-id")
    }

    fn accept(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection> {
        verify_hub_signature(self.secret.as_deref(), req)?;
        let key = req.header("x-event-key").unwrap_or("");
        if key == "diagnostics:ping" {
            return Ok(Accepted::Answer(StatusCode::OK, "pong".into()));
        }
        let body = parse_json(req.body)?;
        let delivery = self.delivery_id(req.headers);
        let changes = body["changes"].as_array().filter(|c| c.len() > 1).cloned();
        match changes {
            Some(changes) if self.one_event_per_change && key == "repo:refs_changed" => {
                let events = changes
                    .into_iter()
                    .enumerate()
                    .map(|(i, change)| {
                        let mut one = body.clone();
                        one["changes"] = json!([change]);
                        Outgoing {
                            data: headers_body_metadata(req.headers, one, self.metadata.as_ref()),
                            key: delivery.as_ref().map(|d| format!("{d}/{i}")),
                        }
                    })
                    .collect();
                Ok(Accepted::Publish(events))
            }
            _ => Ok(Accepted::Publish(vec![Outgoing {
                data: headers_body_metadata(req.headers, body, self.metadata.as_ref()),
                key: delivery,
            }])),
        }
    }
}

/// Routes and hook tasks of the `bitbucketserver` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, BitbucketServerEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let wh = require_webhook(es_name, event_name, "bitbucketserver", spec.webhook.as_ref())?;
        let endpoint = resolve_endpoint(es_name, event_name, wh)?;
        if spec.skip_branch_refs_changed_on_open_pr {
            return Err(BuildError::Unsupported {
                event_source: es_name.into(),
                event: event_name.clone(),
                what: "bitbucketserver skipBranchRefsChangedOnOpenPR".into(),
            });
        }
        let resolve = |sel: &Option<sluice_crds::common::SecretKeySelector>| {
            sel.as_ref()
                .map(|s| crate::resolve_secret(ctx.secrets.as_ref(), es_name, event_name, s))
                .transpose()
        };
        let secret = resolve(&spec.webhook_secret)?;
        if let (Some(token), false) = (resolve(&spec.access_token)?, wh.url.trim().is_empty()) {
            let mut targets: Vec<String> = spec
                .projects
                .iter()
                .map(|p| format!("projects/{p}/webhooks"))
                .collect();
            for r in &spec.repositories {
                targets.push(format!(
                    "projects/{}/repos/{}/webhooks",
                    r.project_key, r.repository_slug
                ));
            }
            if let (Some(p), Some(r)) = (&spec.project_key, &spec.repository_slug) {
                targets.push(format!("projects/{p}/repos/{r}/webhooks"));
            }
            let hook_url = join_url(&wh.url, &wh.endpoint);
            let mut body = json!({
                "name": format!("sluice-{es_name}-{event_name}"),
                "url": hook_url,
                "events": spec.events,
                "active": true,
            });
            if let Some(s) = &secret {
                body["configuration"] = json!({"secret": s});
            }
            let registrar = JsonHooks::new(
                &join_url(&spec.bitbucketserver_base_url, "api/1.0/"),
                ApiAuth::Bearer(token),
                targets,
                hook_url,
                body,
                "id",
            );
            out.tasks.push(Box::new(HookTask::new(
                format!("{es_name}/{event_name}"),
                Arc::new(registrar),
                spec.delete_hook_on_finish,
            )));
        }
        let adapter = BitbucketServerAdapter::new(secret, spec.one_event_per_change, spec.metadata.clone());
        mount(
            out,
            ctx,
            (es_name, event_name),
            "bitbucketserver",
            endpoint,
            adapter,
        );
    }
    Ok(())
}

/// `Value` helper for tests.
#[cfg(test)]
pub(crate) fn changes_of(v: &serde_json::Value) -> usize {
    v["body"]["changes"].as_array().map(Vec::len).unwrap_or(0)
}
