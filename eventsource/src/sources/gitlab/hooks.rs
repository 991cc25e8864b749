//! Creating, updating and deleting GitLab hooks through the REST API v4
//! (`{gitlabBaseURL}/api/v4/projects/{id}/hooks`, `…/groups/{id}/hooks`, `PRIVATE-TOKEN` auth), as
//! upstream: a hook whose `url` is ours is adopted (and updated when its event flags differ); every
//! flag not in `events` is set false, so GitLab's default of `push_events: true` does not apply.

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use sluice_crds::eventsource::{GitlabEventSource, WebhookContext};

use super::EVENT_KINDS;
use crate::push::hooks::{api_client, check_status, join_url, send, HookError, HookRegistrar};
use crate::secrets::SecretResolver;
use crate::BuildError;

/// The hooks of one `gitlab` event.
pub struct GitlabHooks {
    client: reqwest::Client,
    api: String,
    token: String,
    hook_url: String,
    hook: Value,
    targets: Vec<String>,
}

/// `PushEvents` → `push_events`.
pub fn flag_field(flag: &str) -> String {
    let mut out = String::new();
    for (i, c) in flag.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Percent-encodes a project path (`group/project` → `group%2Fproject`) for a URL segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl GitlabHooks {
    /// The registrar of `spec`, or `None` when no hooks are managed (no `accessToken` or no
    /// `webhook.url`, as upstream's `NeedToCreateHooks`).
    pub fn from_spec(
        es_name: &str,
        event_name: &str,
        spec: &GitlabEventSource,
        ctx: &WebhookContext,
        secret_token: Option<String>,
        secrets: &dyn SecretResolver,
    ) -> Result<Option<Self>, BuildError> {
        let Some(access) = &spec.access_token else {
            return Ok(None);
        };
        if ctx.url.trim().is_empty() {
            return Ok(None);
        }
        if spec.gitlab_base_url.trim().is_empty() {
            return Err(BuildError::InvalidSpec {
                event_source: es_name.into(),
                event: event_name.into(),
                reason: format!("spec.gitlab.{event_name}.gitlabBaseURL is required to manage hooks"),
            });
        }
        let token = crate::resolve_secret(secrets, es_name, event_name, access)?;
        let mut targets: Vec<String> = spec
            .groups
            .iter()
            .map(|g| format!("groups/{}", encode_segment(g)))
            .collect();
        let mut projects = spec.projects.clone();
        if let Some(p) = spec.project_id.as_ref().filter(|p| !p.is_empty()) {
            if !projects.contains(p) {
                projects.push(p.clone());
            }
        }
        targets.extend(projects.iter().map(|p| format!("projects/{}", encode_segment(p))));
        let hook_url = join_url(&ctx.url, &ctx.endpoint);
        let mut hook = Map::new();
        hook.insert("url".into(), json!(hook_url));
        hook.insert(
            "enable_ssl_verification".into(),
            json!(spec.enable_ssl_verification),
        );
        for (_, flag) in EVENT_KINDS {
            hook.insert(flag_field(flag), json!(spec.events.iter().any(|e| e == flag)));
        }
        if let Some(t) = secret_token {
            hook.insert("token".into(), json!(t));
        }
        Ok(Some(Self {
            client: api_client(),
            api: join_url(&spec.gitlab_base_url, "api/v4/"),
            token,
            hook_url,
            hook: Value::Object(hook),
            targets,
        }))
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .header("PRIVATE-TOKEN", &self.token)
    }

    fn stale(&self, existing: &Value) -> bool {
        EVENT_KINDS.iter().any(|(_, flag)| {
            let field = flag_field(flag);
            existing.get(&field).is_some() && existing[&field] != self.hook[&field]
        })
    }
}

#[async_trait]
impl HookRegistrar for GitlabHooks {
    fn targets(&self) -> Vec<String> {
        self.targets.clone()
    }

    async fn ensure(&self, target: &str) -> Result<String, HookError> {
        let url = format!("{}{target}/hooks?per_page=100", self.api);
        let res = send(self.request(reqwest::Method::GET, &url), "GET", &url).await?;
        let hooks: Vec<Value> = check_status("list hooks", &url, res)
            .await?
            .json()
            .await
            .map_err(|e| HookError::DecodeAnswer {
                url: url.clone(),
                reason: e.without_url().to_string(),
            })?;
        let existing = hooks
            .iter()
            .find(|h| h["url"].as_str() == Some(self.hook_url.as_str()));
        let id_of = |h: &Value, url: &str| match &h["id"] {
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(HookError::DecodeAnswer {
                url: url.into(),
                reason: "a hook without an id".into(),
            }),
        };
        match existing {
            Some(h) => {
                let id = id_of(h, &url)?;
                if self.stale(h) {
                    let put = format!("{}{target}/hooks/{id}", self.api);
                    let res = send(
                        self.request(reqwest::Method::PUT, &put).json(&self.hook),
                        "PUT",
                        &put,
                    )
                    .await?;
                    check_status("update hook", &put, res).await?;
                }
                Ok(id)
            }
            None => {
                let post = format!("{}{target}/hooks", self.api);
                let res = send(
                    self.request(reqwest::Method::POST, &post).json(&self.hook),
                    "POST",
                    &post,
                )
                .await?;
                let created: Value = check_status("create hook", &post, res)
                    .await?
                    .json()
                    .await
                    .map_err(|e| HookError::DecodeAnswer {
                        url: post.clone(),
                        reason: e.without_url().to_string(),
                    })?;
                id_of(&created, &post)
            }
        }
    }

    async fn delete(&self, target: &str, id: &str) -> Result<(), HookError> {
        let url = format!("{}{target}/hooks/{id}", self.api);
        let res = send(self.request(reqwest::Method::DELETE, &url), "DELETE", &url).await?;
        check_status("delete hook", &url, res).await?;
        Ok(())
    }
}
