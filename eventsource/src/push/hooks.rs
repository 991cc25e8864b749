//! Hook registration: push kinds that hold API credentials (GitHub, GitLab, Bitbucket Server) create
//! or update their webhook on the remote service at start, and delete it on shutdown when
//! `deleteHookOnFinish` is set. The kind supplies a [`HookRegistrar`]; [`HookTask`] runs it as a
//! task of the process: registration is retried with backoff (the remote may be briefly down) until it
//! succeeds or the process stops, so a start never fails because the API was unreachable.
//!
//! Guarantees: each target is registered at most once per run; a hook is deleted only if this run
//! created or adopted it. Caveat: a hook left behind by a crash is adopted (matched by URL) by the
//! next run rather than duplicated.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::{PullSource, SourceError};

/// How long one API call may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two registration attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a hook could not be registered or deleted. URLs are shown through
/// [`redact_url`](sluice_eventbus::redact_url): an API base URL may carry a token in its user info or
/// query.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The API could not be reached.
    #[error("failed to call {method} {}", sluice_eventbus::redact_url(.url))]
    CallApi {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with an error status.
    #[error("failed to {action} at {}: the API answered {status}: {body}", sluice_eventbus::redact_url(.url))]
    ApiStatus {
        action: String,
        url: String,
        status: u16,
        body: String,
    },
    /// The API's answer was not what was expected.
    #[error("failed to read the answer of {}: {reason}", sluice_eventbus::redact_url(.url))]
    DecodeAnswer { url: String, reason: String },
}

/// The kind-specific calls of hook management. A target is an opaque name the registrar understands
/// (an API path such as `repos/owner/name`).
#[async_trait]
pub trait HookRegistrar: Send + Sync + 'static {
    /// Every target to register.
    fn targets(&self) -> Vec<String>;
    /// Creates the hook on `target`, or updates the one already pointing at our URL; returns its id.
    async fn ensure(&self, target: &str) -> Result<String, HookError>;
    /// Deletes hook `id` of `target`.
    async fn delete(&self, target: &str, id: &str) -> Result<(), HookError>;
}

/// Runs a registrar until cancelled.
pub struct HookTask {
    owner: String,
    registrar: Arc<dyn HookRegistrar>,
    delete_on_finish: bool,
}

impl HookTask {
    /// A task for `owner` (`EventSource/event`).
    pub fn new(owner: String, registrar: Arc<dyn HookRegistrar>, delete_on_finish: bool) -> Self {
        Self {
            owner,
            registrar,
            delete_on_finish,
        }
    }
}

/// The HTTP client of API calls.
pub fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(API_TIMEOUT)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Checks an API answer's status; reads the body on error (cut short, it can be a whole HTML page).
pub async fn check_status(
    action: &str,
    url: &str,
    res: reqwest::Response,
) -> Result<reqwest::Response, HookError> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let mut body = res.text().await.unwrap_or_default();
    // Cut on a character boundary (`truncate` panics inside a multi-byte character).
    let mut end = body.len().min(300);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body.truncate(end);
    Err(HookError::ApiStatus {
        action: action.into(),
        url: url.into(),
        status: status.as_u16(),
        body,
    })
}

/// Sends a request, naming the call in the error.
pub async fn send(
    req: reqwest::RequestBuilder,
    method: &str,
    url: &str,
) -> Result<reqwest::Response, HookError> {
    req.send().await.map_err(|source| HookError::CallApi {
        method: method.into(),
        url: url.into(),
        // reqwest's message repeats the whole URL; the error shows `url` masked instead.
        source: source.without_url(),
    })
}

/// Joins a base URL and a path with exactly one slash between them (upstream's `FormattedURL`).
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

#[async_trait]
impl PullSource for HookTask {
    fn describe(&self) -> String {
        format!("{} hooks", self.owner)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let mut registered: Vec<(String, String)> = Vec::new();
        for target in self.registrar.targets() {
            let mut backoff = Duration::from_secs(1);
            while !cancel.is_cancelled() {
                // Why an attempt under way is not cancelled: the remote may already have created
                // the hook; finishing the call (bounded by the API timeout) learns its id, so
                // `deleteHookOnFinish` removes it too instead of leaving it behind.
                let attempt = self.registrar.ensure(&target).await;
                match attempt {
                    Ok(id) => {
                        tracing::info!(owner = %self.owner, target = %target, hook = %id, "hook registered");
                        registered.push((target.clone(), id));
                        break;
                    }
                    Err(error) => {
                        // Why retry: the remote API may be briefly down; without the hook no event
                        // arrives, so keep trying until it works or the process stops.
                        tracing::error!(owner = %self.owner, target = %target, error = %sluice_eventbus::error_chain(&error), retry_in_secs = backoff.as_secs(), "failed to register hook");
                        tokio::select! {
                            biased;
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            if cancel.is_cancelled() {
                break;
            }
        }
        cancel.cancelled().await;
        if self.delete_on_finish {
            for (target, id) in registered {
                match self.registrar.delete(&target, &id).await {
                    Ok(()) => {
                        tracing::info!(owner = %self.owner, target = %target, hook = %id, "hook deleted")
                    }
                    Err(error) => {
                        tracing::error!(owner = %self.owner, target = %target, hook = %id, error = %sluice_eventbus::error_chain(&error), "failed to delete hook")
                    }
                }
            }
        }
        Ok(())
    }
}

/// How a [`JsonHooks`] authenticates.
#[derive(Clone)]
pub enum ApiAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic auth.
    Basic { username: String, password: String },
}

/// A registrar for APIs of the common shape (Bitbucket Cloud and Server): `GET {base}{target}` lists
/// hooks under `values`, `POST {base}{target}` creates one, `DELETE {base}{target}/{id}` removes it.
/// A listed hook whose `url` is ours is adopted rather than duplicated.
pub struct JsonHooks {
    client: reqwest::Client,
    base: String,
    auth: ApiAuth,
    targets: Vec<String>,
    hook_url: String,
    body: serde_json::Value,
    id_field: &'static str,
}

impl JsonHooks {
    /// A registrar creating `body` (whose `url` is `hook_url`) on each target; ids read from `id_field`.
    pub fn new(
        base: &str,
        auth: ApiAuth,
        targets: Vec<String>,
        hook_url: String,
        body: serde_json::Value,
        id_field: &'static str,
    ) -> Self {
        let mut base = base.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        Self {
            client: api_client(),
            base,
            auth,
            targets,
            hook_url,
            body,
            id_field,
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, url);
        match &self.auth {
            ApiAuth::Bearer(t) => req.bearer_auth(t),
            ApiAuth::Basic { username, password } => req.basic_auth(username, Some(password)),
        }
    }

    fn id_of(&self, v: &serde_json::Value, url: &str) -> Result<String, HookError> {
        match &v[self.id_field] {
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::String(s) => Ok(s.clone()),
            _ => Err(HookError::DecodeAnswer {
                url: url.into(),
                reason: format!("a hook without `{}`", self.id_field),
            }),
        }
    }
}

#[async_trait]
impl HookRegistrar for JsonHooks {
    fn targets(&self) -> Vec<String> {
        self.targets.clone()
    }

    async fn ensure(&self, target: &str) -> Result<String, HookError> {
        let url = format!("{}{target}", self.base);
        let res = send(self.request(reqwest::Method::GET, &url), "GET", &url).await?;
        let list: serde_json::Value = check_status("list hooks", &url, res)
            .await?
            .json()
            .await
            .map_err(|e| HookError::DecodeAnswer {
                url: url.clone(),
                reason: e.without_url().to_string(),
            })?;
        if let Some(h) = list["values"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["url"].as_str() == Some(self.hook_url.as_str()))
        {
            return self.id_of(h, &url);
        }
        let res = send(
            self.request(reqwest::Method::POST, &url).json(&self.body),
            "POST",
            &url,
        )
        .await?;
        let created: serde_json::Value = check_status("create hook", &url, res)
            .await?
            .json()
            .await
            .map_err(|e| HookError::DecodeAnswer {
                url: url.clone(),
                reason: e.without_url().to_string(),
            })?;
        self.id_of(&created, &url)
    }

    async fn delete(&self, target: &str, id: &str) -> Result<(), HookError> {
        let url = format!("{}{target}/{id}", self.base);
        let res = send(self.request(reqwest::Method::DELETE, &url), "DELETE", &url).await?;
        check_status("delete hook", &url, res).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API base URL with a token in its user info or query: neither a failed call nor an error
    /// answer shows it, and a long answer with multi-byte characters is cut without a panic.
    #[tokio::test]
    async fn hook_errors_mask_the_credentials_of_the_api_url() -> anyhow::Result<()> {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("http://user:hook-pass@127.0.0.1:{closed}/api/hooks?access_token=hook-token");
        let client = api_client();
        let error = send(client.get(&url), "GET", &url)
            .await
            .expect_err("nothing listens");
        let text = sluice_eventbus::error_chain(&error);
        assert!(
            !text.contains("hook-pass") && !text.contains("hook-token"),
            "{text}"
        );
        assert!(text.contains("***@127.0.0.1"), "{text}");

        let app = axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::UNAUTHORIZED, "é".repeat(400)) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://127.0.0.1:{port}/api/hooks?access_token=hook-token");
        let res = send(client.get(&url), "GET", &url).await?;
        let error = check_status("list hooks", &url, res)
            .await
            .expect_err("401 is an error");
        let text = error.to_string();
        assert!(!text.contains("hook-token"), "{text}");
        assert!(text.contains("the API answered 401"), "{text}");
        server.abort();
        Ok(())
    }
}
