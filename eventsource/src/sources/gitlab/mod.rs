//! `gitlab`: GitLab project and group webhooks.
//!
//! Protocol, as upstream: with `secretToken`, a delivery's `X-Gitlab-Token` must equal it (compared in
//! constant time); missing or different → 403 and nothing published (upstream checks the token only
//! when it also manages the hooks; Sluice always checks it when set). The body must be JSON (400
//! otherwise). Event data is `{"headers", "body", "metadata"}` with the body as sent.
//!
//! `events` (GitLab hook flags such as `PushEvents`, `MergeRequestsEvents`) set the hook's flags and, in
//! Sluice, also filter deliveries by their `X-Gitlab-Event` (`Push Hook` ↔ `PushEvents`, …): a kind not
//! listed is answered 200 and not published.
//!
//! Delivery guarantee: 200 only after the bus stored the event. The event id is derived from
//! `Idempotency-Key` (which GitLab keeps across retries of one delivery), else `X-Gitlab-Event-UUID`,
//! so a retried delivery is one event on the bus. With `accessToken` and `webhook.url`, hooks are
//! created or updated through the API (see [`hooks`]).

mod hooks;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use sluice_crds::eventsource::GitlabEventSource;

use crate::push::hooks::HookTask;
use crate::push::signature::token_eq;
use crate::push::{
    header_text, headers_body_metadata, mount, parse_json, refuse_filter, require_webhook, resolve_endpoint,
    Accepted, Incoming, Outgoing, PushAdapter, Rejection,
};
use crate::{BuildError, BuiltEventSource, SourceContext};

pub use hooks::GitlabHooks;

/// `X-Gitlab-Event` values and the hook flag (`events` entry) each belongs to.
pub const EVENT_KINDS: &[(&str, &str)] = &[
    ("Push Hook", "PushEvents"),
    ("Tag Push Hook", "TagPushEvents"),
    ("Issue Hook", "IssuesEvents"),
    ("Confidential Issue Hook", "ConfidentialIssuesEvents"),
    ("Note Hook", "NoteEvents"),
    ("Confidential Note Hook", "ConfidentialNoteEvents"),
    ("Merge Request Hook", "MergeRequestsEvents"),
    ("Job Hook", "JobEvents"),
    ("Pipeline Hook", "PipelineEvents"),
    ("Wiki Page Hook", "WikiPageEvents"),
    ("Emoji Hook", "EmojiEvents"),
    ("Deployment Hook", "DeploymentEvents"),
    ("Release Hook", "ReleasesEvents"),
];

/// The gitlab kind's adapter.
pub struct GitlabAdapter {
    token: Option<String>,
    events: Vec<String>,
    metadata: Option<BTreeMap<String, String>>,
}

impl GitlabAdapter {
    /// An adapter checking `token` (none: every delivery is accepted).
    pub fn new(
        token: Option<String>,
        events: Vec<String>,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Self {
        Self {
            token,
            events,
            metadata,
        }
    }

    fn wants(&self, event_header: &str) -> bool {
        if self.events.is_empty() {
            return true;
        }
        match EVENT_KINDS.iter().find(|(h, _)| *h == event_header) {
            Some((_, flag)) => self.events.iter().any(|e| e == flag),
            // A kind without a hook flag (system hooks, newer kinds): not ours to drop.
            None => true,
        }
    }
}

impl PushAdapter for GitlabAdapter {
    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        header_text(headers, "idempotency-key").or_else(|| header_text(headers, "x-gitlab-event-uuid"))
    }

    fn check_headers(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        match headers.get("x-gitlab-token").and_then(|v| v.to_str().ok()) {
            Some(given) if token_eq(given, expected) => Ok(()),
            Some(_) => Err(Rejection::forbidden("X-Gitlab-Token does not match")),
            None => Err(Rejection::forbidden("missing X-Gitlab-Token")),
        }
    }

    fn accept(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection> {
        let kind = req.header("x-gitlab-event").unwrap_or("");
        if !self.wants(kind) {
            return Ok(Accepted::Answer(
                StatusCode::OK,
                format!("event kind {kind:?} is not subscribed; ignored"),
            ));
        }
        let body = parse_json(req.body)?;
        let data = headers_body_metadata(req.headers, body, self.metadata.as_ref());
        Ok(Accepted::Publish(vec![Outgoing {
            data,
            key: self.delivery_id(req.headers),
        }]))
    }
}

/// Routes and hook tasks of the `gitlab` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, GitlabEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let wh = require_webhook(es_name, event_name, "gitlab", spec.webhook.as_ref())?;
        let endpoint = resolve_endpoint(es_name, event_name, wh)?;
        refuse_filter(es_name, event_name, "gitlab", spec.filter.as_ref())?;
        for e in &spec.events {
            if !EVENT_KINDS.iter().any(|(_, flag)| flag == e) {
                return Err(BuildError::InvalidSpec {
                    event_source: es_name.into(),
                    event: event_name.clone(),
                    reason: format!(
                        "spec.gitlab.{event_name}.events: unknown event {e:?}; use one of {}",
                        EVENT_KINDS.iter().map(|(_, f)| *f).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        let token = spec
            .secret_token
            .as_ref()
            .map(|sel| crate::resolve_secret(ctx.secrets.as_ref(), es_name, event_name, sel))
            .transpose()?;
        if let Some(registrar) =
            GitlabHooks::from_spec(es_name, event_name, spec, wh, token.clone(), ctx.secrets.as_ref())?
        {
            out.tasks.push(Box::new(HookTask::new(
                format!("{es_name}/{event_name}"),
                Arc::new(registrar),
                spec.delete_hook_on_finish,
            )));
        }
        let adapter = GitlabAdapter::new(token, spec.events.clone(), spec.metadata.clone());
        mount(out, ctx, (es_name, event_name), "gitlab", endpoint, adapter);
    }
    Ok(())
}
