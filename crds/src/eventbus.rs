//! The `EventBus` custom resource (placeholder while the full types are written).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of an EventBus.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(group = "argoproj.io", version = "v1alpha1", kind = "EventBus", namespaced, shortname = "eb", plural = "eventbus")]
#[serde(rename_all = "camelCase")]
pub struct EventBusSpec {}
