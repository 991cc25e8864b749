//! The `k8s` trigger: creates, updates, patches or deletes any Kubernetes object per firing, through
//! the API server (dynamic objects; the kind's resource is found by discovery and remembered).
//!
//! - **Source** (`source`): `resource`, `inline`, `file`, `url` or `configmap`, read once and kept
//!   (see [`source`]); `git` and `s3` are not supported yet. Then `parameters` are applied to the
//!   manifest (with `liveObject: true` and `operation: update`, to the object read from the server).
//! - **Namespace**: the manifest's, else the sensor's. Sluice runs a sensor where its API access
//!   points: in a pod that is the pod's (= the sensor's) namespace, outside a cluster the kubeconfig
//!   context's namespace. Cluster-scoped kinds get none.
//! - **Operations**, as upstream: `create` (default) adds the labels `events.argoproj.io/sensor`,
//!   `events.argoproj.io/trigger` and `events.argoproj.io/action-timestamp` (Unix ms) and creates;
//!   `update` reads the object and merges the manifest into it (objects key by key, other non-empty
//!   values replace), or creates it when absent; `patch` sends the manifest as a patch of
//!   `patchStrategy` (default `application/merge-patch+json`; `application/strategic-merge-patch+json`
//!   where the API accepts it — built-in kinds, not custom resources; `application/apply-patch+yaml`,
//!   server-side apply as field manager `sluice` with conflicts forced), or creates it when absent;
//!   `delete` deletes it, and succeeds when it is already gone.
//! - **Sluice extension, `application/json-patch+json`**: upstream sends the whole manifest, which the
//!   API rejects; Sluice reads the RFC 6902 operations from the manifest's top-level `patch` list
//!   (the rest of the manifest names the object), so parameters can fill in operation values.
//! - **Policy** (`policy.k8s`): wait for labels on the object acted on (see [`policy`]).
//! - **Errors** name the object (kind, namespace/name) and carry the API's status and message:
//!   403 (RBAC), 404, 422 (invalid) are permanent; 409 Conflict (a concurrent change), 429 and 5xx
//!   are retryable, and so are connection failures; 409 AlreadyExists (a fixed name taken) is
//!   permanent. Retries are the runner's (`retryStrategy`).
//! - **API access**: the kubeconfig chain (`KUBECONFIG`, `~/.kube/config`, in-cluster); a sensor
//!   with a `k8s` trigger and no configuration refuses to start ([`BuildError::NoKubernetes`]).

pub mod client;
pub mod object;
pub mod policy;
pub mod source;

use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;
use sluice_crds::sensor::{StandardK8STrigger, Trigger as TriggerSpec};
use tracing::info;

use self::client::{api_error, api_for, Discovery, KubeAccess, ObjectKind};
use self::object::{
    add_labels, created_by_firing, creation_labels, mark_firing, merge_override, meta_str, now_millis,
    set_namespace,
};
use self::policy::LabelPolicy;
use self::source::SourceCache;
use super::{BuildContext, BuildError, Outcome, Trigger, TriggerError};
use crate::firing::Firing;
use crate::params::apply_params;

/// The field manager of server-side apply patches.
pub const FIELD_MANAGER: &str = "sluice";

/// `operation` of a `k8s` trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `create` (default).
    Create,
    /// `update`.
    Update,
    /// `patch`.
    Patch,
    /// `delete`.
    Delete,
}

impl Operation {
    /// Parses upstream's operation names; empty means `create`.
    pub fn parse(text: Option<&str>) -> Option<Self> {
        match text.unwrap_or("") {
            "" | "create" => Some(Operation::Create),
            "update" => Some(Operation::Update),
            "patch" => Some(Operation::Patch),
            "delete" => Some(Operation::Delete),
            _ => None,
        }
    }

    /// The name as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
        }
    }
}

/// `patchStrategy` of a `k8s` trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchStrategy {
    /// `application/merge-patch+json` (default).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/json-patch+json` (operations from the manifest's `patch` list).
    Json,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchStrategy {
    /// Parses the content types upstream takes; empty means merge.
    pub fn parse(text: Option<&str>) -> Option<Self> {
        match text.unwrap_or("") {
            "" | "application/merge-patch+json" => Some(PatchStrategy::Merge),
            "application/strategic-merge-patch+json" => Some(PatchStrategy::Strategic),
            "application/json-patch+json" => Some(PatchStrategy::Json),
            "application/apply-patch+yaml" => Some(PatchStrategy::Apply),
            _ => None,
        }
    }
}

/// A built `k8s` trigger.
pub struct K8sTrigger {
    name: String,
    sensor: String,
    operation: Operation,
    patch_strategy: PatchStrategy,
    live_object: bool,
    policy: Option<LabelPolicy>,
    source: SourceCache,
    access: KubeAccess,
    discovery: Discovery,
}

impl K8sTrigger {
    /// Checks `k8s` (of the trigger `spec` named `name`), reads its source where it can, and finds
    /// the API through the kubeconfig chain.
    pub fn build(
        name: &str,
        k8s: &StandardK8STrigger,
        spec: &TriggerSpec,
        ctx: &BuildContext,
    ) -> Result<Self, BuildError> {
        let access = KubeAccess::infer(name, "k8s", ctx.namespace.as_deref())?;
        Self::build_with_access(name, k8s, spec, ctx, access)
    }

    /// As [`build`](Self::build), with the API client given.
    pub fn build_with_access(
        name: &str,
        k8s: &StandardK8STrigger,
        spec: &TriggerSpec,
        ctx: &BuildContext,
        access: KubeAccess,
    ) -> Result<Self, BuildError> {
        let invalid = |field: &str, reason: String| BuildError::InvalidField {
            trigger: name.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let operation = Operation::parse(k8s.operation.as_deref()).ok_or_else(|| {
            invalid(
                "k8s.operation",
                format!(
                    "`{}` is not an operation (use create, update, patch or delete)",
                    k8s.operation.as_deref().unwrap_or_default()
                ),
            )
        })?;
        let patch_strategy = PatchStrategy::parse(k8s.patch_strategy.as_deref()).ok_or_else(|| {
            invalid(
                "k8s.patchStrategy",
                format!(
                    "`{}` is not a patch type (use application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json or application/apply-patch+yaml)",
                    k8s.patch_strategy.as_deref().unwrap_or_default()
                ),
            )
        })?;
        let (policy, source) = policy_and_source(name, "k8s.source", k8s.source.as_ref(), spec, ctx)?;
        Ok(Self {
            name: name.to_owned(),
            sensor: ctx.sensor.clone(),
            operation,
            patch_strategy,
            live_object: k8s.live_object,
            policy,
            source,
            access,
            discovery: Discovery::default(),
        })
    }

    fn spec<'a>(&self, firing: &'a Firing) -> Result<&'a StandardK8STrigger, TriggerError> {
        firing
            .template
            .k8s
            .as_ref()
            .ok_or(TriggerError::MissingAction { kind: "k8s" })
    }
}

/// Reads `metadata.name`, required by every operation but `create`.
/// What the k8s and argoWorkflow triggers both build: the `policy.k8s` label wait and the cached
/// source object (field path `field`).
pub(crate) fn policy_and_source(
    name: &str,
    field: &str,
    source: Option<&sluice_crds::sensor::ArtifactLocation>,
    spec: &TriggerSpec,
    ctx: &BuildContext,
) -> Result<(Option<LabelPolicy>, SourceCache), BuildError> {
    let policy = LabelPolicy::from_spec(spec.policy.as_ref().and_then(|p| p.k8s.as_ref())).map_err(|e| {
        BuildError::InvalidField {
            trigger: name.to_owned(),
            field: "policy.k8s.backoff".into(),
            reason: e.to_string(),
        }
    })?;
    let source = SourceCache::build(name, field, source, &*ctx.secrets, ctx.http.clone())?;
    Ok((policy, source))
}

fn required_name(object: &Value, operation: Operation) -> Result<String, TriggerError> {
    meta_str(object, "name")
        .map(str::to_owned)
        .ok_or_else(|| TriggerError::InvalidObject {
            reason: format!("`{}` needs `metadata.name` in the manifest", operation.as_str()),
        })
}

fn to_dynamic(object: &Value) -> Result<DynamicObject, TriggerError> {
    serde_json::from_value(object.clone()).map_err(|e| TriggerError::InvalidObject {
        reason: format!("the manifest is not a Kubernetes object: {e}"),
    })
}

/// Creates `object` (labels already set) once per firing and returns the object's name.
///
/// The object is marked with the firing's id ([`mark_firing`]; a `generateName` becomes a name
/// derived from it). When the name is taken by an object that the same firing created — this
/// firing ran before, and the sensor restarted or the event was redelivered before its ack — that
/// object is the result, and nothing is created twice. A name taken by anything else is the
/// API's `AlreadyExists` error, as upstream.
pub(crate) async fn create_once(
    api: &Api<DynamicObject>,
    kind: &str,
    namespace: Option<&str>,
    mut object: Value,
    firing: &Firing,
) -> Result<String, TriggerError> {
    let named = mark_firing(&mut object, firing.id.as_str());
    let shown = named.clone().unwrap_or_else(|| "<unnamed>".to_owned());
    let error = match api.create(&PostParams::default(), &to_dynamic(&object)?).await {
        Ok(created) => return Ok(created.metadata.name.unwrap_or(shown)),
        Err(e) => e,
    };
    let taken =
        matches!(&error, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists");
    if let (true, Some(name)) = (taken, named) {
        let existing = api
            .get_opt(&name)
            .await
            .map_err(|e| api_error("read", kind, namespace, &name, e))?;
        let existing = existing.and_then(|o| serde_json::to_value(o).ok());
        if existing.as_ref().and_then(created_by_firing) == Some(firing.id.as_str()) {
            info!(sensor = %firing.sensor, trigger = %firing.trigger, firing = %firing.id, kind, object = %name,
                "repeated firing: the object it creates exists already");
            return Ok(name);
        }
    }
    Err(api_error("create", kind, namespace, &shown, error))
}

#[async_trait]
impl Trigger for K8sTrigger {
    fn kind(&self) -> &'static str {
        "k8s"
    }

    fn attempt_timeout(&self) -> Duration {
        // The API calls have no bound of their own; `policy.k8s` adds its label wait after them.
        super::DEFAULT_ATTEMPT_TIMEOUT
            .saturating_add(self.policy.as_ref().map_or(Duration::ZERO, LabelPolicy::max_wait))
    }

    fn describe(&self, firing: &Firing) -> Result<Value, TriggerError> {
        let spec = self.spec(firing)?;
        let mut object = self.source.object_now(spec.source.as_ref())?;
        apply_params(&mut object, &spec.parameters, &firing.events).map_err(TriggerError::ApplyParams)?;
        if self.operation == Operation::Create {
            add_labels(
                &mut object,
                &creation_labels(&self.sensor, &firing.trigger, now_millis()),
            );
            mark_firing(&mut object, firing.id.as_str());
        }
        Ok(serde_json::json!({
            "operation": self.operation.as_str(),
            "patchStrategy": spec.patch_strategy,
            "liveObject": self.live_object,
            "object": object,
        }))
    }

    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError> {
        let spec = self.spec(firing)?;
        let mut object = self.source.object(spec.source.as_ref()).await?;
        let kube = self.access.get().await?;
        let op = self.operation;

        if self.live_object && op == Operation::Update {
            // Upstream: the manifest only names the object; parameters apply to the live one.
            let kind = ObjectKind::of(&object)?;
            let (resource, caps) = self.discovery.resolve(&kube.client, &kind).await?;
            let name = required_name(&object, op)?;
            let namespace = meta_str(&object, "namespace")
                .unwrap_or(&kube.namespace)
                .to_owned();
            let api = api_for(&kube.client, &resource, &caps, &namespace);
            let live = api
                .get(&name)
                .await
                .map_err(|e| api_error("read", &kind.kind, Some(&namespace), &name, e))?;
            object = serde_json::to_value(&live).map_err(|e| TriggerError::InvalidObject {
                reason: format!("the live object could not be read as JSON: {e}"),
            })?;
        }
        apply_params(&mut object, &spec.parameters, &firing.events).map_err(TriggerError::ApplyParams)?;

        let kind = ObjectKind::of(&object)?;
        let (resource, caps) = self.discovery.resolve(&kube.client, &kind).await?;
        let namespace = match caps.scope {
            kube::discovery::Scope::Namespaced => Some(
                meta_str(&object, "namespace")
                    .unwrap_or(&kube.namespace)
                    .to_owned(),
            ),
            kube::discovery::Scope::Cluster => None,
        };
        set_namespace(&mut object, namespace.as_deref());
        let ns = namespace.as_deref();
        let api = api_for(&kube.client, &resource, &caps, ns.unwrap_or_default());
        let k = kind.kind.as_str();

        let (action, name) = match op {
            Operation::Create => {
                add_labels(
                    &mut object,
                    &creation_labels(&self.sensor, &firing.trigger, now_millis()),
                );
                ("created", create_once(&api, k, ns, object, firing).await?)
            }
            Operation::Update => {
                let name = required_name(&object, op)?;
                match api
                    .get_opt(&name)
                    .await
                    .map_err(|e| api_error("read", k, ns, &name, e))?
                {
                    None => ("created", create_once(&api, k, ns, object, firing).await?),
                    Some(existing) => {
                        let mut merged =
                            serde_json::to_value(&existing).map_err(|e| TriggerError::InvalidObject {
                                reason: format!("the existing object could not be read as JSON: {e}"),
                            })?;
                        merge_override(&mut merged, &object);
                        api.replace(&name, &PostParams::default(), &to_dynamic(&merged)?)
                            .await
                            .map_err(|e| api_error("update", k, ns, &name, e))?;
                        ("updated", name)
                    }
                }
            }
            Operation::Patch => {
                let name = required_name(&object, op)?;
                let exists = api
                    .get_opt(&name)
                    .await
                    .map_err(|e| api_error("read", k, ns, &name, e))?
                    .is_some();
                if !exists && self.patch_strategy != PatchStrategy::Json {
                    ("created", create_once(&api, k, ns, object, firing).await?)
                } else {
                    let params = match self.patch_strategy {
                        PatchStrategy::Apply => PatchParams::apply(FIELD_MANAGER).force(),
                        _ => PatchParams::default(),
                    };
                    let result = match self.patch_strategy {
                        PatchStrategy::Merge => api.patch(&name, &params, &Patch::Merge(&object)).await,
                        PatchStrategy::Strategic => {
                            api.patch(&name, &params, &Patch::Strategic(&object)).await
                        }
                        PatchStrategy::Apply => api.patch(&name, &params, &Patch::Apply(&object)).await,
                        PatchStrategy::Json => {
                            let ops = object.get("patch").cloned().unwrap_or(Value::Null);
                            let ops: json_patch::Patch =
                                serde_json::from_value(ops).map_err(|e| TriggerError::InvalidObject {
                                    reason: format!(
                                        "patchStrategy application/json-patch+json needs the manifest's `patch` to be a list of RFC 6902 operations: {e}"
                                    ),
                                })?;
                            api.patch(&name, &params, &Patch::<()>::Json(ops)).await
                        }
                    };
                    result.map_err(|e| api_error("patch", k, ns, &name, e))?;
                    ("patched", name)
                }
            }
            Operation::Delete => {
                let name = required_name(&object, op)?;
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => ("deleted", name),
                    // Already gone: what the operation wanted (upstream: "nothing to delete").
                    Err(kube::Error::Api(status)) if status.code == 404 => ("absent", name),
                    Err(e) => return Err(api_error("delete", k, ns, &name, e)),
                }
            }
        };
        let shown = object::describe_object(k, ns, &name);
        info!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, object = %shown, action, "k8s trigger acted");
        if let (Some(policy), false) = (&self.policy, op == Operation::Delete) {
            policy.wait(&api, k, ns, &name).await?;
        }
        Ok(Outcome::KubernetesObject {
            action,
            object: shown,
        })
    }
}

#[cfg(test)]
mod tests;
