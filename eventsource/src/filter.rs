//! The source-side filter: `spec.<kind>.<event>.filter.expression`, evaluated on each event's data
//! before it is published, for every kind at once.
//!
//! Semantics follow upstream: the environment binds each top-level key of the event data (with `-`
//! in a key read as `_`, so `X-Hub-Signature` is `X_Hub_Signature`); an event is published only when
//! the expression is `true`. An expression that fails on an event (a missing key, a type mismatch)
//! or yields a non-boolean drops that event with a log line, as upstream. The language is
//! [`sluice_expr`]'s: expr-lang's operators and member access, without function calls (a compile
//! error at build time, never a silent difference). Filters are keyed by event name, as upstream.
//! A spec whose filters cannot be read fails the build like a malformed expression: the process
//! never starts publishing, unfiltered, events a filter was meant to drop.
//!
//! A dropped event is acknowledged to its sender like a published one: the drop is the user's
//! intent, not a failure, and a nack would only make the sender redeliver an event that would be
//! dropped again.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sluice_crds::eventsource::{EventSource, EventSourceKind};
use sluice_eventbus::{Event, PublishAck, PublishError, Subject};

use crate::metrics::EventLabels;
use crate::sender::EventSender;
use crate::BuildError;

/// One event's compiled filter.
struct Compiled {
    program: sluice_expr::Program,
    labels: EventLabels,
}

/// One declared filter: `(event name, field path, compiled program or why not)`.
type Declared = (String, String, Result<sluice_expr::Program, String>);

/// Why the declared filters of `es` could not be found: its spec did not serialise to JSON. Which
/// events are filtered is then unknown, so this is an error, never "no filters" (which would
/// publish unfiltered every event the user meant to filter).
const UNREADABLE_SPEC: &str =
    "spec: failed to read the filter.expression fields (the spec did not serialise to JSON)";

/// Every declared `filter` of `es`, or [`UNREADABLE_SPEC`] with the serialiser's error.
fn each(es: &EventSource) -> Result<Vec<Declared>, String> {
    // Every kind's spec carries `filter` under the same name, so the JSON form finds them all
    // without a match arm per kind (and kinds added later are covered).
    declared(serde_json::to_value(&es.spec), es)
}

/// [`each`] on `spec`, the JSON form of `es.spec` (a parameter so the failure is testable).
fn declared(
    spec: Result<serde_json::Value, serde_json::Error>,
    es: &EventSource,
) -> Result<Vec<Declared>, String> {
    let spec = spec.map_err(|e| format!("{UNREADABLE_SPEC}: {e}"))?;
    let mut out = Vec::new();
    for (kind, event) in es.spec.event_names() {
        if !has_expression_filter(kind) {
            continue;
        }
        let field = kind.field_name();
        let Some(filter) = spec
            .get(field)
            .and_then(|k| k.get(event))
            .and_then(|e| e.get("filter"))
        else {
            continue;
        };
        if filter.is_null() {
            continue;
        }
        let path = format!("spec.{field}.{event}.filter.expression");
        let expression = filter.get("expression").and_then(|v| v.as_str()).unwrap_or("");
        let program = if expression.trim().is_empty() {
            Err("is empty (remove `filter` to publish every event)".to_string())
        } else {
            sluice_expr::compile(expression).map_err(|e| format!("does not compile: {e}"))
        };
        out.push((event.to_string(), path, program));
    }
    Ok(out)
}

/// Whether the kind's `filter` is upstream's `EventSourceFilter` (`expression`). A few kinds use the
/// name for their own filter (resource: labels and fields; minio: prefix/suffix; storageGrid),
/// which their sources apply themselves.
fn has_expression_filter(kind: EventSourceKind) -> bool {
    use EventSourceKind as K;
    match kind {
        K::Resource | K::Minio | K::StorageGrid => false,
        K::Amqp
        | K::AzureEventsHub
        | K::AzureQueueStorage
        | K::AzureServiceBus
        | K::Bitbucket
        | K::BitbucketServer
        | K::Calendar
        | K::Emitter
        | K::File
        | K::Generic
        | K::Gerrit
        | K::Github
        | K::Gitlab
        | K::Hdfs
        | K::Kafka
        | K::Mns
        | K::Mqtt
        | K::Nats
        | K::Nsq
        | K::PubSub
        | K::Pulsar
        | K::Redis
        | K::RedisStream
        | K::Sftp
        | K::Slack
        | K::Sns
        | K::Sqs
        | K::Stripe
        | K::S3
        | K::Jetstream
        | K::Webhook
        | K::WebSocket => true,
    }
}

/// Problems of `es`'s filters as `(field path, reason)`, for `sluice validate`.
pub fn problems(es: &EventSource) -> Vec<(String, String)> {
    problems_of(each(es))
}

fn problems_of(declared: Result<Vec<Declared>, String>) -> Vec<(String, String)> {
    match declared {
        Ok(declared) => declared
            .into_iter()
            .filter_map(|(_, path, program)| program.err().map(|reason| (path, reason)))
            .collect(),
        Err(reason) => vec![("spec".to_string(), reason)],
    }
}

/// Compiles every `filter.expression` of `es`, keyed by event name. An empty or malformed
/// expression is a build error naming its field path; so is a spec whose filters cannot be read,
/// because starting without them would publish the events they were meant to drop.
pub fn compile(es: &EventSource) -> Result<HashMap<String, sluice_expr::Program>, BuildError> {
    compile_declared(es, each(es))
}

fn compile_declared(
    es: &EventSource,
    declared: Result<Vec<Declared>, String>,
) -> Result<HashMap<String, sluice_expr::Program>, BuildError> {
    let name = es.metadata.name.clone().unwrap_or_default();
    let declared = declared.map_err(|reason| BuildError::InvalidSpec {
        event_source: name.clone(),
        event: "(all events)".to_string(),
        reason,
    })?;
    let mut out = HashMap::new();
    for (event, path, program) in declared {
        match program {
            Ok(program) => {
                out.insert(event, program);
            }
            Err(reason) => {
                return Err(BuildError::InvalidSpec {
                    event_source: name,
                    event,
                    reason: format!("{path} {reason}"),
                })
            }
        }
    }
    Ok(out)
}

/// A sender that evaluates each event's filter and publishes only the events it lets through.
pub struct FilteringSender {
    inner: Arc<dyn EventSender>,
    filters: HashMap<String, Compiled>,
    filtered: Family<EventLabels, Counter>,
}

impl FilteringSender {
    /// Filters in front of `inner`; `filtered` counts the events dropped.
    pub fn new(
        event_source: &str,
        inner: Arc<dyn EventSender>,
        programs: HashMap<String, sluice_expr::Program>,
        filtered: Family<EventLabels, Counter>,
    ) -> Self {
        let filters = programs
            .into_iter()
            .map(|(event_name, program)| {
                let labels = EventLabels {
                    eventsource_name: event_source.to_string(),
                    event_name: event_name.clone(),
                };
                (event_name, Compiled { program, labels })
            })
            .collect();
        Self {
            inner,
            filters,
            filtered,
        }
    }
}

/// Whether `data` passes `program` (upstream's environment: top-level keys, `-` read as `_`).
pub fn passes(program: &sluice_expr::Program, data: Option<&serde_json::Value>) -> Result<bool, String> {
    let mut env = sluice_expr::Env::new();
    if let Some(serde_json::Value::Object(map)) = data {
        for (k, v) in map {
            env.insert(k.replace('-', "_"), sluice_expr::Value::from(v));
        }
    }
    match sluice_expr::eval(program, &env) {
        Ok(sluice_expr::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "the expression gave {}, not a boolean",
            other.type_name()
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[async_trait]
impl EventSender for FilteringSender {
    async fn send(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError> {
        let Some(filter) = self.filters.get(&subject.event_name) else {
            return self.inner.send(subject, event).await;
        };
        match passes(&filter.program, event.data()) {
            Ok(true) => self.inner.send(subject, event).await,
            Ok(false) => {
                tracing::debug!(eventsource = %subject.event_source_name, event_name = %subject.event_name, event = %event.id(), "filter.expression is false: not published");
                self.filtered.get_or_create(&filter.labels).inc();
                // Why acking is right: see the module docs (a filtered event is dropped on purpose).
                Ok(PublishAck::filtered())
            }
            Err(reason) => {
                tracing::warn!(eventsource = %subject.event_source_name, event_name = %subject.event_name, event = %event.id(), %reason, "filter.expression failed on the event: not published");
                self.filtered.get_or_create(&filter.labels).inc();
                // Why acking is right: an expression that fails on this event fails on every
                // redelivery of it too; upstream drops it the same way.
                Ok(PublishAck::filtered())
            }
        }
    }
}

#[cfg(test)]
mod tests;
