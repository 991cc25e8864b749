//! Triggers: what a sensor does once its dependencies are met — the template naming exactly one
//! action, the parameters copied from events into it, retries, rate limits and the dead-letter trigger.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::kinds::{TriggerAction, TriggerKind};
use super::serde_util::{is_false, null_as_default};
use super::triggers_http::{
    AWSLambdaTrigger, CustomTrigger, EmailTrigger, HTTPTrigger, LogTrigger, OpenWhiskTrigger, SlackTrigger,
};
use super::triggers_k8s::{ArgoWorkflowTrigger, StandardK8STrigger};
use super::triggers_messaging::{
    AzureEventHubsTrigger, AzureServiceBusTrigger, KafkaTrigger, NATSTrigger, PulsarTrigger,
};
use crate::common::Backoff;

/// One action of the sensor, with how it is parameterised, retried, rate-limited and what runs when
/// it finally fails.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// The action itself and the condition under which it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TriggerTemplate>,
    /// Values copied from the triggering events into the template itself (paths such as
    /// `http.url` or `k8s.source.resource.metadata.name`), applied before the action's own parameters.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// How to decide whether the action succeeded (HTTP status codes, labels on a created resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<TriggerPolicy>,
    /// How often and how fast to retry a failed action. Default: no retry (one attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_strategy: Option<Backoff>,
    /// At most this many firings per time unit; further firings wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// `true`: the events are acknowledged on the bus only after the action (or the dead-letter
    /// trigger) succeeded, so a crash repeats the action (with the same idempotency key). `false`:
    /// acknowledged first, at most once. Default `true` in Sluice (upstream defaults to `false`, which
    /// loses the event when the sensor dies mid-action); see [`Trigger::is_at_least_once`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least_once: Option<bool>,
    /// A trigger run with the same events when this one still fails after its retries. Only used
    /// with `atLeastOnce: true`; it cannot have a `dlqTrigger` of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::dlq_trigger_schema")]
    pub dlq_trigger: Option<Box<Trigger>>,
    /// Sluice extension: how many deliveries this trigger works on at once (per sensor replica).
    /// Default 1: the events of each dependency are handled one after another, in bus order. Raise it
    /// for throughput when the order of firings does not matter; at most [`Trigger::MAX_CONCURRENCY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

impl Trigger {
    /// Whether the trigger acknowledges its events only after the action succeeded. Sluice defaults to
    /// `true` when `atLeastOnce` is absent, so no event is lost when a sensor dies mid-action.
    pub fn is_at_least_once(&self) -> bool {
        self.at_least_once.unwrap_or(true)
    }

    /// The upper bound of `concurrency`: more in flight per replica only adds memory and ack pressure.
    pub const MAX_CONCURRENCY: u32 = 1024;

    /// Deliveries worked on at once: `concurrency`, default 1 (in bus order).
    pub fn concurrency(&self) -> u32 {
        self.concurrency.unwrap_or(1).clamp(1, Self::MAX_CONCURRENCY)
    }
}

/// A trigger's name, condition and its one action. Exactly one of the action fields is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerTemplate {
    /// The trigger's name, unique within the sensor.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Which dependencies must have events for the trigger to fire: dependency names joined with
    /// `&&` and `||`, with parentheses, e.g. `(dep01 || dep02) && dep04`. Default: all of the
    /// sensor's dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<String>,
    /// When to forget events that are waiting for the rest of `conditions`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub conditions_reset: Vec<ConditionsResetCriteria>,
    /// Create, update, patch or delete a Kubernetes object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<StandardK8STrigger>,
    /// Submit an Argo Workflow, or act on an existing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo_workflow: Option<ArgoWorkflowTrigger>,
    /// Send an HTTP request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HTTPTrigger>,
    /// Invoke an AWS Lambda function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_lambda: Option<AWSLambdaTrigger>,
    /// Hand the firing to a custom trigger server over gRPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomTrigger>,
    /// Produce a message to a Kafka topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaTrigger>,
    /// Publish a message on a NATS subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NATSTrigger>,
    /// Post a Slack message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackTrigger>,
    /// Invoke an Apache OpenWhisk action. The all-lower-case spelling `openwhisk`, found in an
    /// upstream example, is accepted too.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "openwhisk")]
    pub open_whisk: Option<OpenWhiskTrigger>,
    /// Write the triggering events to the sensor's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogTrigger>,
    /// Send an event to an Azure Event Hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_event_hubs: Option<AzureEventHubsTrigger>,
    /// Produce a message to an Apache Pulsar topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulsar: Option<PulsarTrigger>,
    /// Send a message to an Azure Service Bus queue or topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_service_bus: Option<AzureServiceBusTrigger>,
    /// Send an email over SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailTrigger>,
}

impl TriggerAction<'_> {
    /// The action's field name in the template, as written in YAML (`argoWorkflow`).
    pub fn field_name(&self) -> &'static str {
        self.kind().field_name()
    }

    /// The action's own `parameters`, applied to the action spec (paths relative to it).
    pub fn parameters(&self) -> &[TriggerParameter] {
        match self {
            TriggerAction::K8s(t) => &t.parameters,
            TriggerAction::ArgoWorkflow(t) => &t.parameters,
            TriggerAction::Http(t) => &t.parameters,
            TriggerAction::AwsLambda(t) => &t.parameters,
            TriggerAction::Custom(t) => &t.parameters,
            TriggerAction::Kafka(t) => &t.parameters,
            TriggerAction::Nats(t) => &t.parameters,
            TriggerAction::Slack(t) => &t.parameters,
            TriggerAction::OpenWhisk(t) => &t.parameters,
            TriggerAction::Log(_) => &[],
            TriggerAction::AzureEventHubs(t) => &t.parameters,
            TriggerAction::Pulsar(t) => &t.parameters,
            TriggerAction::AzureServiceBus(t) => &t.parameters,
            TriggerAction::Email(t) => &t.parameters,
        }
    }

    /// Other parameter lists of the action, each with its field name: the `payload` that builds the
    /// message body, and HTTP's `dynamicHeaders`.
    pub fn extra_parameter_lists(&self) -> Vec<(&'static str, &[TriggerParameter])> {
        match self {
            TriggerAction::Http(t) => vec![("payload", &t.payload), ("dynamicHeaders", &t.dynamic_headers)],
            TriggerAction::AwsLambda(t) => vec![("payload", &t.payload)],
            TriggerAction::Custom(t) => vec![("payload", &t.payload)],
            TriggerAction::Kafka(t) => vec![("payload", &t.payload)],
            TriggerAction::Nats(t) => vec![("payload", &t.payload)],
            TriggerAction::OpenWhisk(t) => vec![("payload", &t.payload)],
            TriggerAction::AzureEventHubs(t) => vec![("payload", &t.payload)],
            TriggerAction::Pulsar(t) => vec![("payload", &t.payload)],
            TriggerAction::AzureServiceBus(t) => vec![("payload", &t.payload)],
            TriggerAction::K8s(_)
            | TriggerAction::ArgoWorkflow(_)
            | TriggerAction::Slack(_)
            | TriggerAction::Log(_)
            | TriggerAction::Email(_) => Vec::new(),
        }
    }
}

impl TriggerTemplate {
    /// The one action, when exactly one is set.
    pub fn action(&self) -> Option<TriggerAction<'_>> {
        let actions = self.actions();
        match actions.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// Copies one value from a triggering event (or a literal) into the trigger's spec or payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerParameter {
    /// Where the value comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<TriggerParameterSource>,
    /// Dotted path of the field to set, relative to what the parameter applies to (the resource, the
    /// template or the payload object). `-1` as a key appends to a list.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dest: String,
    /// What to do with a value already at `dest`: `overwrite` (default), `prepend` or `append`
    /// (string concatenation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// The source of a [`TriggerParameter`]: a dependency's event, and which part of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerParameterSource {
    /// The dependency whose event supplies the value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dependency_name: String,
    /// Dotted gjson path into the event's CloudEvent attributes (`type`, `source`, `subject`, `time`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_key: Option<String>,
    /// A Go template over the event's attributes (`{{ .Input.subject }}`); evaluated before
    /// `contextKey` when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_template: Option<String>,
    /// Dotted gjson path into the event's JSON data (`body.repository.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key: Option<String>,
    /// A Go template over the event's data (`{{ .Input.body.name | upper }}`); evaluated before
    /// `dataKey` when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_template: Option<String>,
    /// The value to use when the key or template finds nothing; alone, a literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Insert the value found at `dataKey` as JSON (number, boolean, object) rather than as a string.
    /// Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_raw_data: bool,
}

/// How a trigger's success is judged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerPolicy {
    /// For k8s triggers: wait until the created object carries the given labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8SResourcePolicy>,
    /// For request-style triggers: the response status codes that count as success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusPolicy>,
}

/// Success of a k8s trigger, judged by labels appearing on the object it created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct K8SResourcePolicy {
    /// Labels the object must carry to count as succeeded.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub labels: BTreeMap<String, String>,
    /// How long and how often to re-read the object while waiting for the labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// `true`: the firing fails when the labels never appear within the backoff. Default false (the
    /// firing counts as done anyway).
    #[serde(default, skip_serializing_if = "is_false")]
    pub error_on_backoff_timeout: bool,
}

/// Response status codes that count as success.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusPolicy {
    /// The accepted status codes, e.g. `[200, 201, 202]`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub allow: Vec<i32>,
}

/// A cap on how often a trigger fires.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// The time unit: `Second` (default), `Minute` or `Hour`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Firings allowed per unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_unit: Option<i32>,
}

/// When to discard events a trigger holds while waiting for the rest of its `conditions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionsResetCriteria {
    /// Discard on a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_time: Option<ConditionsResetByTime>,
}

/// A schedule for discarding held events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionsResetByTime {
    /// A five-field cron schedule (minute hour day-of-month month day-of-week), e.g. `0 0 * * *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone of the schedule. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}
