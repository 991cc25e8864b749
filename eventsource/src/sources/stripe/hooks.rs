//! Registering the webhook endpoint with Stripe (`createWebhook`), as upstream: an endpoint whose `url`
//! is ours is adopted; otherwise one is created with `enabled_events` = `eventFilter` (or `*`).

use async_trait::async_trait;
use serde_json::Value;
use sluice_crds::eventsource::{StripeEventSource, WebhookContext};

use crate::push::hooks::{api_client, check_status, join_url, send, HookError, HookRegistrar};
use crate::secrets::SecretResolver;
use crate::BuildError;

/// Stripe's API.
pub const STRIPE_API: &str = "https://api.stripe.com/v1/";

/// The endpoint registration of one `stripe` event.
pub struct StripeHooks {
    client: reqwest::Client,
    api: String,
    key: String,
    url: String,
    events: Vec<String>,
}

impl StripeHooks {
    /// The registrar of `spec` (which has `createWebhook`).
    pub fn from_spec(
        es_name: &str,
        event_name: &str,
        spec: &StripeEventSource,
        ctx: &WebhookContext,
        secrets: &dyn SecretResolver,
        api: &str,
    ) -> Result<Self, BuildError> {
        let invalid = |reason: &str| BuildError::InvalidSpec {
            event_source: es_name.into(),
            event: event_name.into(),
            reason: format!("spec.stripe.{event_name}: {reason}"),
        };
        let key_ref = spec
            .api_key
            .as_ref()
            .ok_or_else(|| invalid("createWebhook needs apiKey"))?;
        if ctx.url.trim().is_empty() {
            return Err(invalid("createWebhook needs webhook.url"));
        }
        let events = if spec.event_filter.is_empty() {
            vec!["*".to_string()]
        } else {
            spec.event_filter.clone()
        };
        Ok(Self {
            client: api_client(),
            api: api.to_string(),
            key: crate::resolve_secret(secrets, es_name, event_name, key_ref)?,
            url: join_url(&ctx.url, &ctx.endpoint),
            events,
        })
    }
}

#[async_trait]
impl HookRegistrar for StripeHooks {
    fn targets(&self) -> Vec<String> {
        vec!["webhook_endpoints".into()]
    }

    async fn ensure(&self, target: &str) -> Result<String, HookError> {
        let list = format!("{}{target}?limit=100", self.api);
        let res = send(self.client.get(&list).bearer_auth(&self.key), "GET", &list).await?;
        let page: Value = check_status("list webhook endpoints", &list, res)
            .await?
            .json()
            .await
            .map_err(|e| HookError::DecodeAnswer {
                url: list.clone(),
                reason: e.without_url().to_string(),
            })?;
        if let Some(found) = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"].as_str() == Some(self.url.as_str()))
        {
            return Ok(found["id"].as_str().unwrap_or_default().to_string());
        }
        let create = format!("{}{target}", self.api);
        let mut form: Vec<(&str, &str)> = vec![("url", self.url.as_str())];
        form.extend(self.events.iter().map(|e| ("enabled_events[]", e.as_str())));
        let res = send(
            self.client.post(&create).bearer_auth(&self.key).form(&form),
            "POST",
            &create,
        )
        .await?;
        let created: Value = check_status("create webhook endpoint", &create, res)
            .await?
            .json()
            .await
            .map_err(|e| HookError::DecodeAnswer {
                url: create.clone(),
                reason: e.without_url().to_string(),
            })?;
        created["id"]
            .as_str()
            .map(str::to_string)
            .ok_or(HookError::DecodeAnswer {
                url: create,
                reason: "the created endpoint has no id".into(),
            })
    }

    async fn delete(&self, target: &str, id: &str) -> Result<(), HookError> {
        let url = format!("{}{target}/{id}", self.api);
        let res = send(self.client.delete(&url).bearer_auth(&self.key), "DELETE", &url).await?;
        check_status("delete webhook endpoint", &url, res).await?;
        Ok(())
    }
}
