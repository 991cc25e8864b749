//! The `slack` trigger: posts a message with Slack's Web API (`chat.postMessage`), as upstream.
//!
//! - **Message**: `channel` (a name such as `general`/`#general`, or an id), `message` (text),
//!   `attachments` and `blocks` (JSON arrays in strings, checked at build when not parameterized),
//!   `sender.username` / `sender.icon` (an `:emoji:` or an image URL), after the spec's `parameters`.
//! - **Threads**: with `thread.messageAggregationKey`, the first message of a key starts a thread and
//!   later ones reply in it (`broadcastMessageToChannel` also shows them in the channel); the thread of
//!   each key is remembered in memory, as upstream does.
//! - **Channels**: when Slack answers `not_in_channel`, the bot joins the channel
//!   (`conversations.join`) and posts again, as upstream.
//! - **Errors**: Slack answers 200 with `{"ok": false, "error": …}`; `ratelimited`, 429 and 5xx are
//!   retryable, anything else (e.g. `invalid_auth`, `channel_not_found`) permanent.
//! - **API base URL**: `https://slack.com/api` unless the process sets another (`--slack-api-url`, a
//!   Sluice extension, for Slack-compatible servers, proxies and tests). Requests go through the
//!   egress guard like the `http` trigger's. The token is read from its secret at build and per post,
//!   and never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use sluice_crds::common::SecretKeySelector;
use sluice_crds::sensor::SlackTrigger as SlackSpec;
use tracing::{debug, info};

use super::{BuildContext, BuildError, Outcome, Trigger, TriggerError};
use crate::firing::Firing;
use crate::params::apply_to_typed;
use crate::secrets::SecretResolver;

/// Slack's Web API.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// A built `slack` trigger.
pub struct SlackTrigger {
    name: String,
    sensor: String,
    client: reqwest::Client,
    api: String,
    token: SecretKeySelector,
    secrets: Arc<dyn SecretResolver>,
    /// The thread (`ts` of its first message) of each message aggregation key.
    threads: Mutex<HashMap<String, String>>,
}

impl SlackTrigger {
    /// Checks `spec` and reads its token once.
    pub fn build(name: &str, spec: &SlackSpec, ctx: &BuildContext) -> Result<Self, BuildError> {
        let invalid = |field: &str, reason: String| BuildError::InvalidField {
            trigger: name.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let token = spec.slack_token.clone().ok_or_else(|| {
            invalid(
                "slack.slackToken",
                "required: the Secret key with the bot token".into(),
            )
        })?;
        ctx.secrets
            .resolve_secret(&token)
            .map_err(|source| BuildError::ResolveSecret {
                trigger: name.to_owned(),
                source,
            })?;
        if spec.parameters.is_empty() {
            if spec.channel.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return Err(invalid("slack.channel", "required".into()));
            }
            for (field, text) in [
                ("slack.attachments", &spec.attachments),
                ("slack.blocks", &spec.blocks),
            ] {
                if let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) {
                    json_array(text).map_err(|reason| invalid(field, reason))?;
                }
            }
        }
        let api = ctx.http.slack_api_url().trim_end_matches('/').to_owned();
        reqwest::Url::parse(&api)
            .map_err(|e| invalid("--slack-api-url", format!("`{api}` is not a URL ({e})")))?;
        Ok(Self {
            name: name.to_owned(),
            sensor: ctx.sensor.clone(),
            client: ctx.http.shared().clone(),
            api,
            token,
            secrets: ctx.secrets.clone(),
            threads: Mutex::new(HashMap::new()),
        })
    }

    fn spec(&self, firing: &Firing) -> Result<SlackSpec, TriggerError> {
        let spec = firing
            .template
            .slack
            .as_ref()
            .ok_or(TriggerError::MissingAction { kind: "slack" })?;
        if spec.parameters.is_empty() {
            return Ok(spec.clone());
        }
        apply_to_typed(spec, &spec.parameters, &firing.events, "slack trigger")
            .map_err(TriggerError::ApplyParams)
    }

    /// The `chat.postMessage` body of this firing.
    fn message(&self, spec: &SlackSpec) -> Result<Map<String, Value>, TriggerError> {
        let bad = |reason: String| TriggerError::BuildRequest {
            url: format!("{}/chat.postMessage", self.api),
            reason,
        };
        let channel = spec
            .channel
            .as_deref()
            .map(|c| c.trim().trim_start_matches('#'))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("no channel".into()))?;
        let mut body = Map::new();
        body.insert("channel".into(), json!(channel));
        body.insert("text".into(), json!(spec.message.clone().unwrap_or_default()));
        for (key, text) in [("attachments", &spec.attachments), ("blocks", &spec.blocks)] {
            if let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) {
                body.insert(
                    key.into(),
                    json_array(text).map_err(|r| bad(format!("{key}: {r}")))?,
                );
            }
        }
        if let Some(sender) = &spec.sender {
            if let Some(username) = sender.username.as_deref().filter(|u| !u.is_empty()) {
                body.insert("username".into(), json!(username));
            }
            if let Some(icon) = sender.icon.as_deref().filter(|i| !i.is_empty()) {
                let key = if icon.starts_with(':') && icon.ends_with(':') {
                    "icon_emoji"
                } else {
                    "icon_url"
                };
                body.insert(key.into(), json!(icon));
            }
        }
        if let Some(thread) = &spec.thread {
            if let Some(key) = thread
                .message_aggregation_key
                .as_deref()
                .filter(|k| !k.is_empty())
            {
                let known = self.threads.lock().ok().and_then(|t| t.get(key).cloned());
                if let Some(ts) = known {
                    body.insert("thread_ts".into(), json!(ts));
                    if thread.broadcast_message_to_channel {
                        body.insert("reply_broadcast".into(), json!(true));
                    }
                }
            }
        }
        Ok(body)
    }

    /// Calls `method` with `body`; the parsed answer when Slack says `ok`.
    async fn call(&self, method: &str, body: &Map<String, Value>) -> Result<Value, SlackFailure> {
        let url = format!("{}/{method}", self.api);
        let token = self
            .secrets
            .resolve_secret(&self.token)
            .map_err(|e| SlackFailure::Trigger(TriggerError::ResolveSecret(e)))?;
        let response = self
            .client
            .post(&url)
            .bearer_auth(token.trim())
            .json(body)
            .send()
            .await
            .map_err(|source| {
                SlackFailure::Trigger(match super::http::egress_denied(&source) {
                    Some(denied) => TriggerError::EgressDenied {
                        url: url.clone(),
                        denied,
                    },
                    None => TriggerError::SendRequest {
                        url: url.clone(),
                        // reqwest's message repeats the whole URL, which `--slack-api-url` may
                        // give credentials; the error's own `url` is shown masked.
                        source: source.without_url(),
                    },
                })
            })?;
        let status = response.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(SlackFailure::Trigger(TriggerError::StatusNotAllowed {
                url,
                status,
            }));
        }
        let answer: Value = response.json().await.map_err(|e| {
            SlackFailure::Trigger(TriggerError::Publish {
                target: url.clone(),
                reason: format!("the answer (status {status}) is not JSON: {}", e.without_url()),
                retryable: true,
            })
        })?;
        if answer.get("ok") == Some(&Value::Bool(true)) {
            return Ok(answer);
        }
        let error = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_owned();
        Err(SlackFailure::Slack { url, error })
    }
}

enum SlackFailure {
    Trigger(TriggerError),
    Slack { url: String, error: String },
}

impl SlackFailure {
    fn into_error(self) -> TriggerError {
        match self {
            SlackFailure::Trigger(e) => e,
            SlackFailure::Slack { url, error } => TriggerError::Publish {
                target: url,
                retryable: matches!(
                    error.as_str(),
                    "ratelimited"
                        | "internal_error"
                        | "fatal_error"
                        | "service_unavailable"
                        | "request_timeout"
                ),
                reason: format!("Slack answered `{error}`"),
            },
        }
    }
}

/// A JSON array in a string (`attachments`, `blocks`).
fn json_array(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Array(_)) => Ok(v),
        Ok(_) => Err("must be a JSON array".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

#[async_trait]
impl Trigger for SlackTrigger {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn attempt_timeout(&self) -> Duration {
        // The Slack API calls have no timeout of their own beyond the shared HTTP client's.
        super::DEFAULT_ATTEMPT_TIMEOUT
    }

    fn describe(&self, firing: &Firing) -> Result<Value, TriggerError> {
        let spec = self.spec(firing)?;
        Ok(json!({
            "method": "POST",
            "url": sluice_eventbus::redact_url(&format!("{}/chat.postMessage", self.api)),
            "headers": {"authorization": super::http::request::REDACTED},
            "body": Value::Object(self.message(&spec)?),
        }))
    }

    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError> {
        let spec = self.spec(firing)?;
        let body = self.message(&spec)?;
        debug!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, channel = ?body.get("channel"), "posting to Slack");
        let answer = match self.call("chat.postMessage", &body).await {
            Err(SlackFailure::Slack { error, .. }) if error == "not_in_channel" => {
                let mut join = Map::new();
                join.insert("channel".into(), body.get("channel").cloned().unwrap_or_default());
                self.call("conversations.join", &join)
                    .await
                    .map_err(SlackFailure::into_error)?;
                info!(sensor = %self.sensor, trigger = %self.name, channel = ?body.get("channel"), "joined the Slack channel");
                self.call("chat.postMessage", &body)
                    .await
                    .map_err(SlackFailure::into_error)?
            }
            other => other.map_err(SlackFailure::into_error)?,
        };
        if let Some(key) = spec
            .thread
            .as_ref()
            .and_then(|t| t.message_aggregation_key.as_deref())
            .filter(|k| !k.is_empty())
        {
            if let (Some(ts), Ok(mut threads)) =
                (answer.get("ts").and_then(Value::as_str), self.threads.lock())
            {
                threads.entry(key.to_owned()).or_insert_with(|| ts.to_owned());
            }
        }
        info!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, "slack message posted");
        Ok(Outcome::Published { sequence: None })
    }
}

#[cfg(test)]
mod tests;
