//! The `Sensor` custom resource: which events a sensor waits for (dependencies and their filters),
//! and what it does when they arrive (triggers). Field names follow upstream
//! `io.argoproj.events.v1alpha1` exactly, so upstream manifests parse unchanged.
//!
//! Sub-modules: [`dependency`] (dependencies, filters, transforms), [`trigger`] (trigger, template,
//! parameters, policies), the table of action kinds in `kinds`, their specs in `triggers_*`, [`conditions`] (the `conditions`
//! expression language) and the offline checks in `validate`.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod conditions;
pub mod dependency;
mod kinds;
mod schema;
mod serde_util;
pub mod trigger;
pub mod triggers_http;
pub mod triggers_k8s;
pub mod triggers_messaging;
mod validate;
mod validate_triggers;

#[cfg(test)]
mod tests;

pub use crate::common::{Container, Template};
pub use dependency::{
    DataFilter, EventContext, EventDependency, EventDependencyFilter, EventDependencyTransformer, ExprFilter,
    PayloadField, TimeFilter,
};
pub use trigger::{
    ConditionsResetByTime, ConditionsResetCriteria, K8SResourcePolicy, RateLimit, StatusPolicy, Trigger,
    TriggerAction, TriggerKind, TriggerParameter, TriggerParameterSource, TriggerPolicy, TriggerTemplate,
};
pub use triggers_http::{
    AWSLambdaTrigger, CustomTrigger, EmailTrigger, HTTPTrigger, LogTrigger, OpenWhiskTrigger, SlackSender,
    SlackThread, SlackTrigger,
};
pub use triggers_k8s::{
    ArgoWorkflowTrigger, ArtifactLocation, FileArtifact, GitArtifact, GitCreds, GitRemoteConfig,
    StandardK8STrigger, URLArtifact,
};
pub use triggers_messaging::{
    AzureEventHubsTrigger, AzureServiceBusTrigger, KafkaTrigger, NATSTrigger, PulsarTrigger,
};

use serde_util::{is_false, null_as_default};

/// The desired state of a Sensor: the events it depends on and the triggers they fire.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Sensor",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    status = "SensorStatus",
    shortname = "sn",
    plural = "sensors"
)]
#[serde(rename_all = "camelCase")]
pub struct SensorSpec {
    /// The events the sensor waits for. At least one.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dependencies: Vec<EventDependency>,
    /// What the sensor does when its dependencies are met. At least one.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub triggers: Vec<Trigger>,
    /// How the controller shapes the sensor's pod (service account, resources, scheduling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// `true`: after a round of triggers in which one failed, the sensor stops firing and reports an
    /// error. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub error_on_failed_round: bool,
    /// The EventBus (in the same namespace) to read events from. Default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bus_name: Option<String>,
    /// Number of sensor pods. Default 1. Replicas share the work; firings are not duplicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// How many old ReplicaSets of the sensor's Deployment to keep. Kubernetes' default (10) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    /// Extra key-value pairs added to every log line of the sensor.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub logging_fields: BTreeMap<String, String>,
}

/// The observed state of a Sensor: its conditions (`Deployed`, `DependenciesProvided`,
/// `TriggersProvided`), at the top level of `status` as upstream writes them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SensorStatus {
    /// Conditions and the generation they describe.
    #[serde(flatten)]
    pub status: crate::common::Status,
}

impl SensorSpec {
    /// The dependency named `name`.
    pub fn dependency(&self, name: &str) -> Option<&EventDependency> {
        self.dependencies.iter().find(|d| d.name == name)
    }

    /// The EventBus name, with the default applied.
    pub fn event_bus_name_or_default(&self) -> &str {
        self.event_bus_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_EVENT_BUS_NAME)
    }
}

/// The EventBus a Sensor or EventSource uses when it names none.
pub const DEFAULT_EVENT_BUS_NAME: &str = "default";
