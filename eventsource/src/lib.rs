//! Event sources: adapters that turn outside events (HTTP requests, broker messages, ticks) into
//! CloudEvents and hand them to an [`EventSender`], which returns only once the bus stored them.
//!
//! Layout: one directory per kind under `sources/`, a closed registry ([`sources::is_runnable`] over `crds`'s `EventSourceKind`), the
//! shared HTTP server for push kinds ([`http`]), secret resolution from files ([`secrets`]).
//! [`build`] turns an `EventSource` into routes (push kinds) and tasks (pull kinds); the caller mounts
//! the routes of every EventSource of the process on one [`http::RouteTable`] and runs the tasks.

pub mod aws;
pub mod checkpoint;
pub mod clock;
pub mod filter;
pub mod http;
pub mod metrics;
pub mod push;
pub use sluice_eventbus::secrets;
pub mod sender;
pub mod sources;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use async_trait::async_trait;
use sluice_crds::eventsource::EventSource;
use tokio_util::sync::CancellationToken;

pub use secrets::{FileSecretResolver, SecretError, SecretResolver};
pub use sender::{BusSender, EventSender};

/// Why an EventSource could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The spec asks for something this build cannot run; the message says what.
    #[error("failed to build EventSource {event_source} event {event}: {what} is not supported yet")]
    Unsupported {
        event_source: String,
        event: String,
        what: String,
    },
    /// A field is invalid in a way `sluice validate` also reports.
    #[error("failed to build EventSource {event_source} event {event}: {reason}")]
    InvalidSpec {
        event_source: String,
        event: String,
        reason: String,
    },
    /// A secret reference did not resolve.
    #[error("failed to resolve a secret of EventSource {event_source} event {event}")]
    ResolveSecret {
        event_source: String,
        event: String,
        #[source]
        source: Box<SecretError>,
    },
    /// The EventSource has no name.
    #[error("failed to build an EventSource: metadata.name is empty")]
    MissingName,
}

/// Resolves one secret reference of `event_source/event`.
pub fn resolve_secret(
    secrets: &dyn SecretResolver,
    event_source: &str,
    event: &str,
    selector: &sluice_crds::common::SecretKeySelector,
) -> Result<String, BuildError> {
    secrets
        .resolve_secret(selector)
        .map_err(|source| BuildError::ResolveSecret {
            event_source: event_source.into(),
            event: event.into(),
            source: Box::new(source),
        })
}

/// Why a running pull source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A backend-specific failure.
    #[error("event source {event_source}/{event} failed")]
    Run {
        event_source: String,
        event: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A source that pulls or produces events on its own (brokers, schedules), run until cancelled.
#[async_trait]
pub trait PullSource: Send {
    /// `EventSource/event`, for logs.
    fn describe(&self) -> String;
    /// Runs until `cancel`; returns after in-flight events were published or left unacknowledged
    /// upstream.
    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError>;
}

/// What building needs from the process.
#[derive(Clone)]
pub struct SourceContext {
    /// Resolves secret references.
    pub secrets: Arc<dyn SecretResolver>,
    /// Publishes events.
    pub sender: Arc<dyn EventSender>,
    /// Metric families (registered by the caller).
    pub metrics: metrics::SourceMetrics,
    /// Where sources keep progress across restarts (the calendar's last tick); `None` refuses
    /// specs that need it.
    pub checkpoints: Option<Arc<dyn checkpoint::CheckpointStore>>,
}

/// An EventSource ready to run: routes for the shared HTTP server and tasks for pull kinds.
pub struct BuiltEventSource {
    /// `metadata.name`.
    pub name: String,
    /// Routes of push kinds.
    pub routes: Vec<http::Route>,
    /// Pull sources to run.
    pub tasks: Vec<Box<dyn PullSource>>,
}

/// Builds every event of `es`. A kind this build cannot run is an error naming it, so a process never
/// starts with part of an EventSource silently missing.
pub fn build(es: &EventSource, ctx: &SourceContext) -> Result<BuiltEventSource, BuildError> {
    let name = es.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(BuildError::MissingName);
    }
    let mut built = BuiltEventSource {
        name: name.clone(),
        routes: Vec::new(),
        tasks: Vec::new(),
    };
    // Source-side filters wrap the sender once, so every kind (and every kind added later) honours
    // `filter.expression` without code of its own.
    let programs = filter::compile(es)?;
    let filtered_ctx;
    let ctx = if programs.is_empty() {
        ctx
    } else {
        filtered_ctx = SourceContext {
            sender: Arc::new(filter::FilteringSender::new(
                &name,
                ctx.sender.clone(),
                programs,
                ctx.metrics.filtered.clone(),
            )),
            ..ctx.clone()
        };
        &filtered_ctx
    };
    for (kind, event) in es.spec.event_names() {
        if !sources::is_runnable(kind) {
            return Err(BuildError::Unsupported {
                event_source: name.clone(),
                event: event.to_string(),
                what: format!("the {} event source kind", kind.field_name()),
            });
        }
    }
    let mut running = 0usize;
    if let Some(events) = &es.spec.webhook {
        built.routes.extend(sources::webhook::build_routes(
            &name,
            events,
            ctx.secrets.as_ref(),
            ctx.sender.clone(),
            &ctx.metrics,
        )?);
        running += events.len();
    }
    if let Some(events) = &es.spec.github {
        sources::github::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.calendar {
        sources::calendar::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.slack {
        sources::slack::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.stripe {
        sources::stripe::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.bitbucketserver {
        sources::bitbucketserver::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.bitbucket {
        sources::bitbucket::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.gitlab {
        sources::gitlab::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.sqs {
        sources::sqs::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.minio {
        sources::minio::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.s3 {
        sources::s3::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.kafka {
        sources::kafka::build(&name, events, ctx, &mut built)?;
        running += events.len();
    }
    if let Some(events) = &es.spec.resource {
        built.tasks.extend(sources::resource::build(
            &name,
            events,
            ctx.sender.clone(),
            &ctx.metrics,
        )?);
        running += events.len();
    }
    if let Some(events) = &es.spec.jetstream {
        built.tasks.extend(sources::jetstream::build(
            &name,
            events,
            ctx.secrets.as_ref(),
            ctx.sender.clone(),
            &ctx.metrics,
        )?);
        running += events.len();
    }
    if let Some(events) = &es.spec.redis_stream {
        built.tasks.extend(sources::redis_stream::build(
            &name,
            events,
            ctx.secrets.as_ref(),
            ctx.sender.clone(),
            &ctx.metrics,
        )?);
        running += events.len();
    }
    if let Some(events) = &es.spec.mqtt {
        built.tasks.extend(sources::mqtt::build(
            &name,
            events,
            ctx.secrets.as_ref(),
            ctx.sender.clone(),
            &ctx.metrics,
        )?);
        running += events.len();
    }
    if let Some(events) = &es.spec.nats {
        built.tasks.extend(sources::nats::build(
            &name,
            events,
            ctx.secrets.as_ref(),
            ctx.sender.clone(),
            &ctx.metrics,
        )?);
        running += events.len();
    }
    if let Some(events) = &es.spec.redis {
        built.tasks.extend(sources::redis::build(
            &name,
            events,
            ctx.secrets.as_ref(),
            ctx.sender.clone(),
            &ctx.metrics,
        )?);
        running += events.len();
    }
    if let Some(events) = &es.spec.amqp {
        built.tasks.extend(sources::amqp::build(
            &name,
            events,
            ctx.secrets.as_ref(),
            ctx.sender.clone(),
            &ctx.metrics,
        )?);
        running += events.len();
    }
    if let Some(events) = &es.spec.file {
        built.tasks.extend(sources::file::build(
            &name,
            events,
            ctx.sender.clone(),
            &ctx.metrics,
        )?);
        running += events.len();
    }
    ctx.metrics
        .running
        .get_or_create(&metrics::SourceLabels {
            eventsource_name: name.clone(),
        })
        .set(i64::try_from(running).unwrap_or(i64::MAX));
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> SourceContext {
        struct NoSender;
        #[async_trait]
        impl EventSender for NoSender {
            async fn send(
                &self,
                _: &sluice_eventbus::Subject,
                _: &sluice_eventbus::Event,
            ) -> Result<sluice_eventbus::PublishAck, sluice_eventbus::PublishError> {
                Err(sluice_eventbus::PublishError::Unavailable)
            }
        }
        SourceContext {
            secrets: Arc::new(FileSecretResolver::new("/nonexistent")),
            sender: Arc::new(NoSender),
            metrics: metrics::SourceMetrics::default(),
            checkpoints: None,
        }
    }

    fn event_source(yaml: &str) -> EventSource {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_kind_not_runnable_yet_is_refused_by_name() {
        let es = event_source(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: ticks}\nspec:\n  \
             webhook: {a: {port: \"1\", endpoint: /a, method: POST}}\n  nsq: {every: {hostAddress: a, topic: t, channel: c}}\n",
        );
        let err = build(&es, &context()).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("failed to build EventSource ticks event every: the nsq event source kind is not supported yet")
        );
    }

    #[test]
    fn webhook_events_become_routes() {
        let es = event_source(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: hooks}\nspec:\n  webhook:\n    \
             a: {port: \"1\", endpoint: /a, method: POST}\n    b: {port: \"2\", endpoint: /b, method: get}\n",
        );
        let built = build(&es, &context()).unwrap_or_else(|e| panic!("{e}"));
        let routes: Vec<(u16, String, String)> = built
            .routes
            .iter()
            .map(|r| (r.port, r.endpoint.clone(), r.method.to_string()))
            .collect();
        assert_eq!(
            routes,
            vec![(1, "/a".into(), "POST".into()), (2, "/b".into(), "GET".into())]
        );
        assert!(built.tasks.is_empty());
    }
}
