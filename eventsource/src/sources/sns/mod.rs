//! `sns`: AWS SNS notifications delivered to an HTTP endpoint on the shared server.
//!
//! Protocol, as upstream: SNS POSTs a JSON document whose `Type` is
//! - `SubscriptionConfirmation`: the source calls SNS `ConfirmSubscription` with the message's token
//!   (upstream's way; the `SubscribeURL` is not fetched) and answers 200 once confirmed (an error
//!   → 503, so SNS sends the confirmation again). A confirmation for another topic than `topicArn`
//!   is refused with 400;
//! - `Notification`: published as one event, data `{header, body, metadata}` as upstream (`header` the
//!   request headers, `body` the whole SNS document as JSON);
//! - `UnsubscribeConfirmation`: acknowledged with 200, nothing published.
//!
//! `validateSignature`: the message's signature is checked before anything else (SignatureVersion 1,
//! SHA1withRSA, and 2, SHA256withRSA, over AWS's canonical string, see [`verify`]); a message whose
//! signed `Timestamp` is over an hour old (a replay) is refused, and the published `body` holds only
//! the signed fields (`Message`, `MessageId`, `Subject`, `Timestamp`, `TopicArn`, `Type`): the others
//! (`MessageAttributes`, `UnsubscribeURL`, …) can be changed by whoever replays a signed message. The signing
//! certificate is fetched only from a URL matching upstream's allow-list
//! (`https://sns.<region>.amazonaws.com[.cn]/…`) and cached per URL. Sluice extension: the process
//! environment variable `SLUICE_SNS_SIGNING_CERT_URL_PATTERN` replaces the allow-list with another
//! regular expression (for SNS-compatible servers and tests). A bad or unverifiable signature is
//! answered 4xx; an unreachable certificate 503; nothing is published either way.
//!
//! Subscription: when `topicArn` and `webhook.url` are set, a task subscribes `webhook.url` +
//! `webhook.endpoint` to the topic (SNS `Subscribe`, protocol http or https from the URL, as
//! upstream), retrying with backoff; readiness `<EventSource>/<event>` is false until it succeeded.
//! Unlike upstream the subscription is not removed on shutdown: replicas and a rolling update share
//! it, and removing it from a stopping pod would stop deliveries to the ones still running.
//! Credentials: `accessKey`/`secretKey`, else the AWS default chain ([`crate::aws::credentials`]);
//! with `roleARN` those assume the role through STS `AssumeRole` (at `endpoint` when set) and the
//! role's temporary credentials are used. `endpoint` overrides the SNS API URL.
//!
//! Delivery guarantee: 200 only after the bus stored the event; the event id is derived from the
//! SNS `MessageId`, which SNS keeps on its retries, so a redelivery is one event on the bus.

#[cfg(test)]
mod tests;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use sluice_crds::eventsource::SNSEventSource;
use tokio_util::sync::CancellationToken;

use crate::aws::AwsClient;
use crate::http::Route;
use crate::metrics::{EventLabels, SourceMetrics};
use crate::push::{
    header_text, parse_json, require_webhook, resolve_endpoint, with_metadata, Accepted, Endpoint, Incoming,
    Outgoing, PushAdapter, PushRoute, Rejection,
};
use crate::{BuildError, BuiltEventSource, PullSource, ReadyFlag, SourceContext, SourceError};

pub use verify::{SnsMessage, Verifier, VerifyError};

/// The header SNS names the message id in.
pub const MESSAGE_ID_HEADER: &str = "x-amz-sns-message-id";

/// The longest wait between two subscription attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Turns an (already verified) notification into its event.
pub struct NotificationAdapter {
    metadata: Option<BTreeMap<String, String>>,
    /// With `validateSignature`: publish only the fields the signature covers.
    signed_only: bool,
}

impl PushAdapter for NotificationAdapter {
    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        header_text(headers, MESSAGE_ID_HEADER)
    }

    fn accept(&self, req: &Incoming<'_>) -> Result<Accepted, Rejection> {
        let mut body = parse_json(req.body)?;
        if self.signed_only {
            // Why: an unsigned field (MessageAttributes, UnsubscribeURL, anything added) can be
            // changed by whoever replays a signed message; a sensor must not act on it as if SNS
            // had sent it.
            if let Some(fields) = body.as_object_mut() {
                fields.retain(|name, _| verify::NOTIFICATION_SIGNED_FIELDS.contains(&name.as_str()));
            }
        }
        let key = body["MessageId"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .or_else(|| self.delivery_id(req.headers));
        let data = with_metadata(
            "header",
            crate::push::header_object(req.headers),
            body,
            self.metadata.as_ref(),
        );
        Ok(Accepted::Publish(vec![Outgoing { data, key }]))
    }
}

/// Confirms subscriptions through the SNS API.
#[derive(Clone)]
pub struct Confirmer {
    /// The signing client.
    pub client: AwsClient,
    /// The SNS API URL.
    pub endpoint: String,
    /// `topicArn` of the spec (empty: any topic).
    pub topic_arn: String,
}

/// The sns route: verify, dispatch on `Type`, publish notifications through the shared pipeline.
pub struct SnsRoute {
    event_source: String,
    event_name: String,
    endpoint: Endpoint,
    verifier: Option<Verifier>,
    confirmer: Confirmer,
    notifications: PushRoute,
    metrics: SourceMetrics,
    labels: EventLabels,
}

impl SnsRoute {
    /// A route of `event_source/event_name`; `verifier` set when `validateSignature` is.
    pub fn new(
        (event_source, event_name): (&str, &str),
        endpoint: Endpoint,
        verifier: Option<Verifier>,
        confirmer: Confirmer,
        metadata: Option<BTreeMap<String, String>>,
        ctx: &SourceContext,
    ) -> Self {
        let notifications = PushRoute::new(
            event_source,
            event_name,
            "sns",
            endpoint.clone(),
            Arc::new(NotificationAdapter {
                metadata,
                signed_only: verifier.is_some(),
            }),
            ctx.sender.clone(),
            ctx.metrics.clone(),
        );
        Self {
            event_source: event_source.into(),
            event_name: event_name.into(),
            endpoint,
            verifier,
            confirmer,
            notifications,
            metrics: ctx.metrics.clone(),
            labels: SourceMetrics::labels(event_source, event_name),
        }
    }

    /// The route to mount on the shared server.
    pub fn into_route(self) -> Route {
        let me = Arc::new(self);
        Route {
            port: me.endpoint.port,
            endpoint: me.endpoint.endpoint.clone(),
            method: me.endpoint.method.clone(),
            owner: format!("{}/{}", me.event_source, me.event_name),
            handler: Arc::new(move |req| {
                let me = me.clone();
                Box::pin(async move { me.handle(req).await })
            }),
        }
    }

    fn reject(&self, status: StatusCode, reason: String, message_id: &str) -> Response {
        tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, delivery = message_id, status = status.as_u16(), %reason, "rejected SNS request");
        if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            self.metrics.processing_failed.get_or_create(&self.labels).inc();
        }
        (status, reason).into_response()
    }

    /// Handles one request.
    pub async fn handle(&self, req: Request<Body>) -> Response {
        let (parts, body) = req.into_parts();
        if parts.method != self.endpoint.method {
            return (StatusCode::METHOD_NOT_ALLOWED, "http method does not match").into_response();
        }
        let bytes = match crate::http::read_body(body, self.endpoint.max_payload_size).await {
            Ok(b) => b,
            Err(e) => {
                // Nothing was published: the body never arrived whole.
                self.metrics.processing_failed.get_or_create(&self.labels).inc();
                return (e.status(), e.text()).into_response();
            }
        };
        let message: SnsMessage = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => return self.reject(StatusCode::BAD_REQUEST, format!("not an SNS message: {e}"), ""),
        };
        let id = message.message_id.clone();
        if let Some(verifier) = &self.verifier {
            if let Err(error) = verifier.verify(&message).await {
                let status = match error {
                    VerifyError::FetchCert { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    VerifyError::BadSignature
                    | VerifyError::CertUrlNotAllowed(_)
                    | VerifyError::Stale { .. } => StatusCode::UNAUTHORIZED,
                    VerifyError::UnsupportedVersion(_)
                    | VerifyError::SignatureEncoding
                    | VerifyError::ParseCert { .. }
                    | VerifyError::Timestamp(_)
                    | VerifyError::UnknownType(_) => StatusCode::BAD_REQUEST,
                };
                return self.reject(status, error.to_string(), &id);
            }
        }
        match message.kind.as_str() {
            SnsMessage::NOTIFICATION => {
                // Publishes through the shared pipeline: 200 only after the bus stored the event.
                let req = Request::from_parts(parts, Body::from(bytes));
                self.notifications.handle(req).await
            }
            SnsMessage::SUBSCRIPTION_CONFIRMATION => self.confirm(&message).await,
            SnsMessage::UNSUBSCRIBE_CONFIRMATION => {
                tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, topic = %message.topic_arn, "SNS unsubscribe confirmation acknowledged");
                (StatusCode::OK, "acknowledged").into_response()
            }
            other => self.reject(
                StatusCode::BAD_REQUEST,
                format!("unknown SNS message Type {other:?}"),
                &id,
            ),
        }
    }

    async fn confirm(&self, message: &SnsMessage) -> Response {
        let c = &self.confirmer;
        if !c.topic_arn.is_empty() && message.topic_arn != c.topic_arn {
            return self.reject(
                StatusCode::BAD_REQUEST,
                format!(
                    "subscription confirmation for topic {:?}, not {:?}",
                    message.topic_arn, c.topic_arn
                ),
                &message.message_id,
            );
        }
        let Some(token) = message.token.as_deref().filter(|t| !t.is_empty()) else {
            return self.reject(
                StatusCode::BAD_REQUEST,
                "subscription confirmation without a Token".into(),
                &message.message_id,
            );
        };
        match c.client.sns_confirm(&c.endpoint, &message.topic_arn, token).await {
            Ok(arn) => {
                tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, topic = %message.topic_arn, subscription = %arn, "SNS subscription confirmed");
                (StatusCode::OK, "subscription confirmed").into_response()
            }
            Err(error) => {
                // Why 503: SNS sends the confirmation again; a 2xx would leave the subscription
                // pending forever.
                self.metrics.processing_failed.get_or_create(&self.labels).inc();
                tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, topic = %message.topic_arn, error = %sluice_eventbus::error_chain(&error), "failed to confirm the SNS subscription");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "failed to confirm the subscription",
                )
                    .into_response()
            }
        }
    }
}

/// Subscribes the webhook URL to the topic at start, retrying until it succeeds.
pub struct Subscriber {
    event_source: String,
    event_name: String,
    confirmer: Confirmer,
    url: String,
    ready: ReadyFlag,
}

impl Subscriber {
    /// `http` or `https`, from the URL (as upstream).
    pub fn protocol(url: &str) -> &'static str {
        if url.starts_with("https://") {
            "https"
        } else {
            "http"
        }
    }
}

#[async_trait]
impl PullSource for Subscriber {
    fn describe(&self) -> String {
        format!("{}/{} sns subscription", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let c = &self.confirmer;
        let mut delay = Duration::from_millis(500);
        loop {
            let attempt = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                r = c.client.sns_subscribe(&c.endpoint, &c.topic_arn, Self::protocol(&self.url), &self.url) => r,
            };
            match attempt {
                Ok(arn) => {
                    self.ready.set(true);
                    tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, topic = %c.topic_arn, url = %sluice_eventbus::redact_url(&self.url), subscription = %arn, "subscribed to the SNS topic");
                    return Ok(());
                }
                Err(error) => {
                    self.ready.set(false);
                    tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, topic = %c.topic_arn, error = %sluice_eventbus::error_chain(&error), retry_in_ms = delay.as_millis() as u64, "failed to subscribe to the SNS topic; retrying");
                }
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }
}

/// `webhook.url` + `webhook.endpoint`, as upstream joins them.
pub fn subscription_url(url: &str, endpoint: &str) -> String {
    format!(
        "{}/{}",
        url.trim_end_matches('/'),
        endpoint.trim_start_matches('/')
    )
}

/// Routes and subscription tasks of the `sns` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, SNSEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let wh = require_webhook(es_name, event_name, "sns", spec.webhook.as_ref())?;
        let endpoint = resolve_endpoint(es_name, event_name, wh)?;
        let region = if spec.region.trim().is_empty() {
            "us-east-1"
        } else {
            spec.region.trim()
        };
        let client = crate::clients::aws::aws_client(
            es_name,
            event_name,
            ctx,
            spec.access_key.as_ref(),
            spec.secret_key.as_ref(),
            None,
            region,
            spec.role_arn.as_deref(),
            spec.endpoint.as_deref(),
        )?;
        let confirmer = Confirmer {
            client,
            endpoint: crate::aws::sns_endpoint(spec.endpoint.as_deref(), region),
            topic_arn: spec.topic_arn.trim().to_string(),
        };
        let verifier = if spec.validate_signature {
            Some(Verifier::from_env().map_err(|e| BuildError::InvalidSpec {
                event_source: es_name.into(),
                event: event_name.into(),
                reason: format!("{}: {e}", verify::CERT_URL_PATTERN_ENV),
            })?)
        } else {
            None
        };
        if !confirmer.topic_arn.is_empty() && !wh.url.trim().is_empty() {
            out.tasks.push(Box::new(Subscriber {
                event_source: es_name.into(),
                event_name: event_name.into(),
                confirmer: confirmer.clone(),
                url: subscription_url(wh.url.trim(), &wh.endpoint),
                ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
            }));
        }
        let route = SnsRoute::new(
            (es_name, event_name),
            endpoint,
            verifier,
            confirmer,
            spec.metadata.clone(),
            ctx,
        );
        out.routes.push(route.into_route());
    }
    Ok(())
}
