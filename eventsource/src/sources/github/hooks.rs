//! Creating, updating and deleting GitHub hooks through the REST API (`POST/PATCH/DELETE
//! {base}repos/{owner}/{repo}/hooks[/{id}]`, and `orgs/{org}/hooks` for organizations), as upstream:
//! an existing hook whose `config.url` is ours is adopted (and updated when its events or `active`
//! differ) instead of creating a second one. `githubBaseURL` points at a GitHub Enterprise API.

use async_trait::async_trait;
use serde_json::{json, Value};
use sluice_crds::eventsource::{GithubEventSource, WebhookContext};

use crate::push::hooks::{api_client, check_status, join_url, send, HookError, HookRegistrar};
use crate::secrets::SecretResolver;
use crate::BuildError;

/// Public GitHub's API.
pub const DEFAULT_BASE_URL: &str = "https://api.github.com/";

/// The hooks of one `github` event.
pub struct GithubHooks {
    client: reqwest::Client,
    base: String,
    token: String,
    hook_url: String,
    hook: Value,
    events: Vec<String>,
    active: bool,
    targets: Vec<String>,
}

impl GithubHooks {
    /// The registrar of `spec`, or `None` when the spec asks for no hook management (no credentials
    /// or no `webhook.url`, as upstream's `NeedToCreateHooks`).
    pub fn from_spec(
        es_name: &str,
        event_name: &str,
        spec: &GithubEventSource,
        ctx: &WebhookContext,
        secret: Option<String>,
        secrets: &dyn SecretResolver,
    ) -> Result<Option<Self>, BuildError> {
        if ctx.url.trim().is_empty() || (spec.api_token.is_none() && spec.github_app.is_none()) {
            return Ok(None);
        }
        let Some(token_ref) = &spec.api_token else {
            return Err(BuildError::Unsupported {
                event_source: es_name.into(),
                event: event_name.into(),
                what: "github githubApp credentials for hook registration (use apiToken, or create the hook by hand)"
                    .into(),
            });
        };
        let token = crate::resolve_secret(secrets, es_name, event_name, token_ref)?;
        let mut targets: Vec<String> = spec.organizations.iter().map(|o| format!("orgs/{o}")).collect();
        for repos in &spec.repositories {
            let owner = repos.owner.as_deref().unwrap_or_default();
            targets.extend(repos.names.iter().map(|n| format!("repos/{owner}/{n}")));
        }
        if let (Some(owner), Some(repo)) = (&spec.owner, &spec.repository) {
            targets.push(format!("repos/{owner}/{repo}"));
        }
        let mut base = spec
            .github_base_url
            .clone()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        if !base.ends_with('/') {
            base.push('/');
        }
        let hook_url = join_url(&ctx.url, &ctx.endpoint);
        let mut config = json!({
            "url": hook_url,
            "content_type": spec.content_type.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "json".into()),
            "insecure_ssl": if spec.insecure { "1" } else { "0" },
        });
        if let Some(secret) = secret {
            config["secret"] = Value::String(secret);
        }
        let hook = json!({"name": "web", "active": spec.active, "events": spec.events, "config": config});
        Ok(Some(Self {
            client: api_client(),
            base,
            token,
            hook_url,
            hook,
            events: spec.events.clone(),
            active: spec.active,
            targets,
        }))
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .bearer_auth(&self.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }

    /// The id of the hook of `target` already pointing at our URL, with whether it needs an update.
    async fn find(&self, target: &str) -> Result<Option<(String, bool)>, HookError> {
        let url = format!("{}{target}/hooks?per_page=100", self.base);
        let res = send(self.request(reqwest::Method::GET, &url), "GET", &url).await?;
        let res = check_status("list hooks", &url, res).await?;
        let hooks: Vec<Value> = res.json().await.map_err(|e| HookError::DecodeAnswer {
            url: url.clone(),
            reason: e.without_url().to_string(),
        })?;
        for hook in hooks {
            if hook["config"]["url"].as_str() != Some(self.hook_url.as_str()) {
                continue;
            }
            let id = match &hook["id"] {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => continue,
            };
            let mut have: Vec<&str> = hook["events"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut want: Vec<&str> = self.events.iter().map(String::as_str).collect();
            have.sort_unstable();
            want.sort_unstable();
            let stale = have != want || hook["active"].as_bool() != Some(self.active);
            return Ok(Some((id, stale)));
        }
        Ok(None)
    }
}

#[async_trait]
impl HookRegistrar for GithubHooks {
    fn targets(&self) -> Vec<String> {
        self.targets.clone()
    }

    async fn ensure(&self, target: &str) -> Result<String, HookError> {
        match self.find(target).await? {
            Some((id, false)) => Ok(id),
            Some((id, true)) => {
                let url = format!("{}{target}/hooks/{id}", self.base);
                let res = send(
                    self.request(reqwest::Method::PATCH, &url).json(&self.hook),
                    "PATCH",
                    &url,
                )
                .await?;
                check_status("update hook", &url, res).await?;
                Ok(id)
            }
            None => {
                let url = format!("{}{target}/hooks", self.base);
                let res = send(
                    self.request(reqwest::Method::POST, &url).json(&self.hook),
                    "POST",
                    &url,
                )
                .await?;
                let res = check_status("create hook", &url, res).await?;
                let created: Value = res.json().await.map_err(|e| HookError::DecodeAnswer {
                    url: url.clone(),
                    reason: e.without_url().to_string(),
                })?;
                match &created["id"] {
                    Value::Number(n) => Ok(n.to_string()),
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(HookError::DecodeAnswer {
                        url,
                        reason: "the created hook has no id".into(),
                    }),
                }
            }
        }
    }

    async fn delete(&self, target: &str, id: &str) -> Result<(), HookError> {
        let url = format!("{}{target}/hooks/{id}", self.base);
        let res = send(self.request(reqwest::Method::DELETE, &url), "DELETE", &url).await?;
        check_status("delete hook", &url, res).await?;
        Ok(())
    }
}
