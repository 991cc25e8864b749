//! How the EventSource's own pod and Service are shaped: the `spec.template` (pod settings for the
//! Deployment the controller creates) and `spec.service` (the ClusterIP Service in front of push
//! sources).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements,
    SecurityContext, ServicePort, Toleration, Volume, VolumeMount,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Metadata;

/// Pod-level settings for the Deployment that runs this EventSource. Everything is optional; the
/// controller fills in the image, command and bus configuration itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// Labels and annotations added to the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Overrides for the main container (environment, resources, mounts, security).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Extra volumes the pod mounts; reference them from `container.volumeMounts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Pod-wide security settings (user, group, fsGroup, seccomp, …). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Node/pod (anti-)affinity rules for scheduling the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints the pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node labels a node must carry for the pod to be scheduled there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Secrets (in the same namespace) used to pull the container image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The PriorityClass of the pod (e.g. `system-cluster-critical`); it must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// The pod's numeric priority. Usually filled in by the admission controller from
    /// `priorityClassName`; higher runs first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// The ServiceAccount the pod runs as. Sources that talk to the Kubernetes API (`resource`,
    /// calendar persistence) need one with the right RBAC. Default: the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// Settings for the main container of the EventSource pod. A slim subset of a Kubernetes
/// container: image and command are chosen by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Whole ConfigMaps or Secrets to expose as environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Container-level security settings (capabilities, read-only root filesystem, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// `Always`, `IfNotPresent` or `Never`. Default: the controller's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Where to mount volumes declared in `template.volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

/// The ClusterIP Service the controller creates in front of the EventSource pod, so push sources
/// (webhooks) are reachable inside the cluster. Without it no Service is created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Labels and annotations added to the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// The ports the Service exposes; `targetPort` should be the `port` of a webhook event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// A fixed cluster IP for the Service. Default: one is assigned. The string `None` makes a
    /// headless Service. Cannot be changed after creation.
    #[serde(rename = "clusterIP", default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
}
