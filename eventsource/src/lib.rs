//! Event sources: adapters that turn outside events (HTTP requests, broker messages, ticks) into
//! CloudEvents and hand them to an [`EventSender`], which returns only once the bus stored them.
//!
//! Layout: one directory per kind under `sources/`, one exhaustive match in [`build`] over `crds`'s
//! `EventSourceKind` (derived from it: [`sources::is_runnable`]), the
//! shared HTTP server for push kinds ([`http`]), secret resolution from files ([`secrets`]).
//! [`build`] turns an `EventSource` into routes (push kinds) and tasks (pull kinds); the caller mounts
//! the routes of every EventSource of the process on one [`http::RouteTable`] and runs the tasks.

pub mod aws;
pub mod checkpoint;
pub mod clients;
pub mod clock;
pub mod filter;
pub mod http;
pub mod metrics;
pub mod pull;
pub mod push;
pub mod reconnect;
pub use sluice_eventbus::secrets;
pub mod sender;
pub mod sources;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use sluice_crds::eventsource::{EventSource, EventSourceKind};
pub use sluice_eventbus::readiness::{Readiness, ReadyFlag};
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
    /// The spec has events of a kind this build cannot run.
    #[error(
        "failed to build EventSource {event_source} event {event}: the {kind} event source kind is not supported yet (supported: {supported})",
        supported = sources::runnable_names()
    )]
    UnsupportedKind {
        /// `metadata.name`.
        event_source: String,
        /// The first event of the kind.
        event: String,
        /// The kind.
        kind: EventSourceKind,
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
    /// A secret reference resolved to an empty value (a webhook secret or token that is empty
    /// would sign with an empty key or match a missing header: an open door).
    #[error("failed to build EventSource {event_source} event {event}: {field} names Secret {name:?} key {key:?}, whose value is empty; put the value in the Secret (an empty secret would leave the endpoint open)")]
    EmptySecret {
        event_source: String,
        event: String,
        /// The field path(s) naming the Secret, e.g. `spec.github.example.webhookSecret`.
        field: String,
        /// The Secret's name.
        name: String,
        /// The key inside it.
        key: String,
    },
    /// The EventSource has no name.
    #[error("failed to build an EventSource: metadata.name is empty")]
    MissingName,
}

/// `error` with the field path of an empty secret filled in from `spec`'s references (the
/// resolver knows only the Secret's name and key, the spec knows where it is named).
fn name_empty_secret_field(
    error: BuildError,
    spec: &sluice_crds::eventsource::EventSourceSpec,
) -> BuildError {
    let BuildError::ResolveSecret {
        event_source,
        event,
        source,
    } = error
    else {
        return error;
    };
    let SecretError::EmptySecret { name, key } = source.as_ref() else {
        return BuildError::ResolveSecret {
            event_source,
            event,
            source,
        };
    };
    let references = sluice_crds::refs::references(spec).unwrap_or_default();
    let matching: Vec<&sluice_crds::refs::Reference> = references
        .iter()
        .filter(|r| r.kind == sluice_crds::refs::RefKind::Secret && &r.name == name && &r.key == key)
        .collect();
    // The event's own fields first; a Secret named by several fields of it lists them all.
    let of_event: Vec<&&sluice_crds::refs::Reference> = matching
        .iter()
        .filter(|r| r.path.split('.').nth(1) == Some(event.as_str()))
        .collect();
    let paths: Vec<String> = if of_event.is_empty() {
        matching.iter().map(|r| format!("spec.{}", r.path)).collect()
    } else {
        of_event.iter().map(|r| format!("spec.{}", r.path)).collect()
    };
    let field = if paths.is_empty() {
        "a field".to_owned()
    } else {
        paths.join(" and ")
    };
    BuildError::EmptySecret {
        event_source,
        event,
        field,
        name: name.clone(),
        key: key.clone(),
    }
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
    /// The process's readiness: a source that connects to a broker registers a flag here and
    /// clears it while disconnected, so `/readyz` fails and names it.
    pub readiness: Readiness,
}

impl SourceContext {
    /// A context resolving with `secrets` and publishing to `sender`, with unregistered metrics, no
    /// checkpoint store and its own readiness: for tests and tools that build one source.
    pub fn new(secrets: Arc<dyn SecretResolver>, sender: Arc<dyn EventSender>) -> Self {
        Self {
            secrets,
            sender,
            metrics: metrics::SourceMetrics::default(),
            checkpoints: None,
            readiness: Readiness::default(),
        }
    }
}

/// Builds the events of one kind with its builder (`sources::<kind>::build`), outside an
/// EventSource: for tests and tools. [`build`] is what processes use.
pub fn build_kind<T>(
    es_name: &str,
    events: &std::collections::BTreeMap<String, T>,
    build: BuildFn<T>,
    ctx: &SourceContext,
) -> Result<BuiltEventSource, BuildError> {
    let mut built = BuiltEventSource {
        name: es_name.into(),
        routes: Vec::new(),
        tasks: Vec::new(),
    };
    build(es_name, events, ctx, &mut built)?;
    Ok(built)
}

/// A kind's builder: adds the routes and tasks of its events to the EventSource being built.
pub type BuildFn<T> = fn(
    &str,
    &std::collections::BTreeMap<String, T>,
    &SourceContext,
    &mut BuiltEventSource,
) -> Result<(), BuildError>;

/// Runs each kind's builder over its events and counts them for `running`; refuses a kind this
/// build cannot run if the spec has events of it.
struct Adder<'a> {
    name: &'a str,
    spec: &'a sluice_crds::eventsource::EventSourceSpec,
    ctx: &'a SourceContext,
    built: &'a mut BuiltEventSource,
    running: usize,
}

impl sources::KindVisitor for Adder<'_> {
    type Out = Result<(), BuildError>;

    fn runnable<T>(
        &mut self,
        _: EventSourceKind,
        events: &sluice_crds::eventsource::Events<T>,
        build: BuildFn<T>,
    ) -> Self::Out {
        if let Some(events) = events {
            build(self.name, events, self.ctx, self.built)?;
            self.running += events.len();
        }
        Ok(())
    }

    fn unsupported(&mut self, kind: EventSourceKind) -> Self::Out {
        // `build` returns nothing on an error, so a process never starts with part of an
        // EventSource silently missing.
        match self.spec.names_of(kind).next() {
            Some(event) => Err(BuildError::UnsupportedKind {
                event_source: self.name.into(),
                event: event.to_string(),
                kind,
            }),
            None => Ok(()),
        }
    }
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
    let mut adder = Adder {
        name: &name,
        spec: &es.spec,
        ctx,
        built: &mut built,
        running: 0,
    };
    for kind in EventSourceKind::ALL {
        sources::dispatch(kind, &es.spec, &mut adder).map_err(|e| name_empty_secret_field(e, &es.spec))?;
    }
    let running = adder.running;
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
        SourceContext::new(
            Arc::new(FileSecretResolver::new("/nonexistent")),
            Arc::new(testing::Recorder::refusing()),
        )
    }

    fn event_source(yaml: &str) -> EventSource {
        serde_yaml::from_str(yaml).expect("the test manifest parses")
    }

    #[test]
    fn a_kind_not_runnable_yet_is_refused_by_name() {
        let es = event_source(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: ticks}\nspec:\n  \
             webhook: {a: {port: \"1\", endpoint: /a, method: POST}}\n  nsq: {every: {hostAddress: a, topic: t, channel: c}}\n",
        );
        let err = build(&es, &context()).err().map(|e| e.to_string());
        let supported = sources::runnable_names();
        assert_eq!(
            err,
            Some(format!(
                "failed to build EventSource ticks event every: the nsq event source kind is not supported yet \
                 (supported: {supported})"
            ))
        );
        assert!(supported.starts_with("amqp, bitbucket, "), "{supported}");
        assert!(!supported.contains("nsq"), "{supported}");
    }

    #[test]
    fn an_empty_secret_is_refused_naming_the_field() {
        let es = event_source(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: gh}\nspec:\n  github:\n    \
             example:\n      webhook: {port: \"12000\", endpoint: /push, method: POST}\n      \
             webhookSecret: {name: github-access, key: secret}\n",
        );
        // A file holding only a newline resolves to an empty value.
        let ctx = SourceContext {
            secrets: Arc::new(sluice_eventbus::secrets::MapSecretResolver::new().with_secret(
                "github-access",
                "secret",
                "",
            )),
            ..context()
        };
        let err = build(&es, &ctx).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("event example: spec.github.example.webhookSecret names Secret \"github-access\" key \"secret\""),
            "{err}"
        );
    }

    #[test]
    fn webhook_events_become_routes() {
        let es = event_source(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: hooks}\nspec:\n  webhook:\n    \
             a: {port: \"1\", endpoint: /a, method: POST}\n    b: {port: \"2\", endpoint: /b, method: get}\n",
        );
        let built = build(&es, &context()).expect("two webhook events on two ports build");
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
