//! The `argoWorkflow` trigger: submits an Argo Workflow, or acts on an existing one, through the
//! Kubernetes API (`argoproj.io/v1alpha1`). Upstream shells out to the `argo` CLI; Sluice writes
//! the same objects directly, so no CLI (and no Argo Server) is needed.
//!
//! The manifest comes from `source` (read once and kept, see [`crate::triggers::k8s::source`]) with
//! `parameters` applied; its namespace defaults to the sensor's. Per `operation`:
//! - `submit` (default): creates the manifest, a `Workflow`, with the labels
//!   `events.argoproj.io/sensor`, `events.argoproj.io/trigger` and `events.argoproj.io/action-timestamp`
//!   (as upstream). Parameters go where their `dest` says, e.g. `spec.arguments.parameters.0.value`.
//! - `submit-from`: the manifest names a `WorkflowTemplate`, `ClusterWorkflowTemplate` or
//!   `CronWorkflow` (`kind`, `metadata.name`); Sluice checks it exists and creates a Workflow from it
//!   as `argo submit --from` does: `spec.workflowTemplateRef` (with `clusterScope: true` for a
//!   cluster template) or, for a CronWorkflow, a copy of its `spec.workflowSpec` with its
//!   `workflowMetadata` and an owner reference to it; `generateName: <name>-` and Argo's
//!   `workflows.argoproj.io/workflow-template` / `cluster-workflow-template` / `cron-workflow` label.
//!   The manifest's `spec.arguments` (parameters applied) become the Workflow's arguments, like
//!   `argo submit --from … -p name=value`.
//! - `resubmit`: reads the Workflow `metadata.name` and creates a new one from its spec
//!   (`generateName: <name>-`, label `workflows.argoproj.io/resubmitted-from-workflow`, its labels
//!   and annotations without Argo's run-state labels, `spec.shutdown` cleared).
//! - `suspend` / `resume`: merge-patches `spec.suspend` to `true` / removes it. Limitation: `resume`
//!   does not complete `suspend` template steps (that edits node status, done by the Argo Server).
//! - `terminate` / `stop`: merge-patches `spec.shutdown` to `Terminate` / `Stop`; the workflow
//!   controller then ends the run.
//! - `retry` is **not supported**: it rewrites failed nodes in the Workflow's status and deletes
//!   their pods, which only the Argo Server's retry logic does; a sensor using it refuses to start.
//! - `args` (extra `argo` CLI arguments) have no meaning without the CLI; a sensor setting them
//!   refuses to start rather than silently ignoring them.
//!
//! Errors and retries as the [`k8s`](crate::triggers::k8s) trigger; `policy.k8s` waits for labels on
//! the Workflow acted on.

use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{json, Map, Value};
use sluice_crds::sensor::{ArgoWorkflowTrigger as ArgoWorkflowSpec, Trigger as TriggerSpec};
use tracing::info;

use super::k8s::client::{api_error, KubeAccess};
use super::k8s::object::{add_labels, creation_labels, describe_object, mark_firing, meta_str, now_millis};
use super::k8s::policy::LabelPolicy;
use super::k8s::source::SourceCache;
use super::{BuildContext, BuildError, Outcome, Trigger, TriggerError};
use crate::firing::Firing;
use crate::params::apply_params;

/// The API group and version of Argo Workflows objects.
pub const GROUP: &str = "argoproj.io";
/// See [`GROUP`].
pub const VERSION: &str = "v1alpha1";
/// Argo's label on a Workflow submitted from a WorkflowTemplate.
pub const LABEL_WORKFLOW_TEMPLATE: &str = "workflows.argoproj.io/workflow-template";
/// Argo's label on a Workflow submitted from a ClusterWorkflowTemplate.
pub const LABEL_CLUSTER_WORKFLOW_TEMPLATE: &str = "workflows.argoproj.io/cluster-workflow-template";
/// Argo's label on a Workflow created from a CronWorkflow.
pub const LABEL_CRON_WORKFLOW: &str = "workflows.argoproj.io/cron-workflow";
/// Argo's label on a resubmitted Workflow.
pub const LABEL_RESUBMITTED_FROM: &str = "workflows.argoproj.io/resubmitted-from-workflow";

/// `operation` of an `argoWorkflow` trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `submit` (default).
    Submit,
    /// `submit-from`.
    SubmitFrom,
    /// `resubmit`.
    Resubmit,
    /// `suspend`.
    Suspend,
    /// `resume`.
    Resume,
    /// `terminate`.
    Terminate,
    /// `stop`.
    Stop,
}

impl Operation {
    /// The name as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Submit => "submit",
            Operation::SubmitFrom => "submit-from",
            Operation::Resubmit => "resubmit",
            Operation::Suspend => "suspend",
            Operation::Resume => "resume",
            Operation::Terminate => "terminate",
            Operation::Stop => "stop",
        }
    }

    /// The merge patch of the operations that only change the spec.
    pub fn spec_patch(self) -> Option<Value> {
        match self {
            Operation::Suspend => Some(json!({"spec": {"suspend": true}})),
            Operation::Resume => Some(json!({"spec": {"suspend": null}})),
            Operation::Terminate => Some(json!({"spec": {"shutdown": "Terminate"}})),
            Operation::Stop => Some(json!({"spec": {"shutdown": "Stop"}})),
            Operation::Submit | Operation::SubmitFrom | Operation::Resubmit => None,
        }
    }
}

/// The API resource of an Argo kind.
fn argo_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

/// What `submit-from` submits from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromKind {
    /// A namespaced WorkflowTemplate.
    WorkflowTemplate,
    /// A ClusterWorkflowTemplate.
    ClusterWorkflowTemplate,
    /// A CronWorkflow.
    CronWorkflow,
}

impl FromKind {
    /// The kind named by a manifest's `kind` (case-insensitive, as the CLI's `--from`).
    pub fn parse(kind: &str) -> Option<Self> {
        match kind.to_ascii_lowercase().as_str() {
            "workflowtemplate" => Some(FromKind::WorkflowTemplate),
            "clusterworkflowtemplate" => Some(FromKind::ClusterWorkflowTemplate),
            "cronworkflow" => Some(FromKind::CronWorkflow),
            _ => None,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            FromKind::WorkflowTemplate => "WorkflowTemplate",
            FromKind::ClusterWorkflowTemplate => "ClusterWorkflowTemplate",
            FromKind::CronWorkflow => "CronWorkflow",
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            FromKind::WorkflowTemplate => argo_resource("WorkflowTemplate", "workflowtemplates"),
            FromKind::ClusterWorkflowTemplate => {
                argo_resource("ClusterWorkflowTemplate", "clusterworkflowtemplates")
            }
            FromKind::CronWorkflow => argo_resource("CronWorkflow", "cronworkflows"),
        }
    }
}

/// The Workflow `submit-from` creates from `source` (the template read from the server) and the
/// trigger's manifest `manifest` (whose `spec.arguments` become the Workflow's). Pure.
pub fn workflow_from(from: FromKind, name: &str, namespace: &str, source: &Value, manifest: &Value) -> Value {
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut spec = match from {
        FromKind::WorkflowTemplate => {
            labels.insert(LABEL_WORKFLOW_TEMPLATE.into(), name.into());
            json!({"workflowTemplateRef": {"name": name}})
        }
        FromKind::ClusterWorkflowTemplate => {
            labels.insert(LABEL_CLUSTER_WORKFLOW_TEMPLATE.into(), name.into());
            json!({"workflowTemplateRef": {"name": name, "clusterScope": true}})
        }
        FromKind::CronWorkflow => {
            labels.insert(LABEL_CRON_WORKFLOW.into(), name.into());
            let meta = source.pointer("/spec/workflowMetadata");
            for (target, field) in [(&mut labels, "labels"), (&mut annotations, "annotations")] {
                if let Some(Value::Object(m)) = meta.and_then(|m| m.get(field)) {
                    for (k, v) in m {
                        target.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            source
                .pointer("/spec/workflowSpec")
                .cloned()
                .unwrap_or_else(|| json!({}))
        }
    };
    if let (Some(arguments), Some(spec)) = (manifest.pointer("/spec/arguments"), spec.as_object_mut()) {
        spec.insert("arguments".into(), arguments.clone());
    }
    let mut metadata = json!({"generateName": format!("{name}-"), "namespace": namespace, "labels": labels});
    if !annotations.is_empty() {
        metadata["annotations"] = Value::Object(annotations);
    }
    if from == FromKind::CronWorkflow {
        if let Some(uid) = meta_str(source, "uid") {
            metadata["ownerReferences"] = json!([{
                "apiVersion": format!("{GROUP}/{VERSION}"), "kind": "CronWorkflow",
                "name": name, "uid": uid, "blockOwnerDeletion": true, "controller": true,
            }]);
        }
    }
    json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "Workflow", "metadata": metadata, "spec": spec})
}

/// The Workflow `resubmit` creates from the existing Workflow `old`. Pure.
pub fn resubmitted(old: &Value, name: &str, namespace: &str) -> Value {
    let mut labels = Map::new();
    if let Some(Value::Object(old_labels)) = old.pointer("/metadata/labels") {
        for (k, v) in old_labels {
            // Argo's run-state labels (phase, completed, …) describe the old run, not the new one;
            // the template and cron labels say where it came from and stay.
            let keep = !k.starts_with("workflows.argoproj.io/")
                || [
                    LABEL_WORKFLOW_TEMPLATE,
                    LABEL_CLUSTER_WORKFLOW_TEMPLATE,
                    LABEL_CRON_WORKFLOW,
                ]
                .contains(&k.as_str());
            if keep {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    labels.insert(LABEL_RESUBMITTED_FROM.into(), name.into());
    let mut spec = old.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(spec) = spec.as_object_mut() {
        spec.remove("shutdown");
    }
    let mut metadata = json!({"generateName": format!("{name}-"), "namespace": namespace, "labels": labels});
    if let Some(annotations) = old.pointer("/metadata/annotations").filter(|a| a.is_object()) {
        metadata["annotations"] = annotations.clone();
    }
    json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "Workflow", "metadata": metadata, "spec": spec})
}

/// A built `argoWorkflow` trigger.
pub struct ArgoWorkflowTrigger {
    name: String,
    sensor: String,
    operation: Operation,
    policy: Option<LabelPolicy>,
    source: SourceCache,
    access: KubeAccess,
}

impl ArgoWorkflowTrigger {
    /// Checks `spec` and finds the API through the kubeconfig chain.
    pub fn build(
        name: &str,
        argo: &ArgoWorkflowSpec,
        spec: &TriggerSpec,
        ctx: &BuildContext,
    ) -> Result<Self, BuildError> {
        let operation = Self::check(name, argo)?;
        let access = KubeAccess::infer(name, "argoWorkflow", ctx.namespace.as_deref())?;
        Self::build_checked(name, operation, argo, spec, ctx, access)
    }

    /// As [`build`](Self::build), with the API client given.
    pub fn build_with_access(
        name: &str,
        argo: &ArgoWorkflowSpec,
        spec: &TriggerSpec,
        ctx: &BuildContext,
        access: KubeAccess,
    ) -> Result<Self, BuildError> {
        let operation = Self::check(name, argo)?;
        Self::build_checked(name, operation, argo, spec, ctx, access)
    }

    fn check(name: &str, argo: &ArgoWorkflowSpec) -> Result<Operation, BuildError> {
        let unsupported = |field: &str| BuildError::UnsupportedField {
            trigger: name.to_owned(),
            field: field.to_owned(),
        };
        if !argo.args.is_empty() {
            return Err(unsupported(
                "argoWorkflow.args (argo CLI arguments; Sluice uses the Kubernetes API, not the CLI)",
            ));
        }
        match argo.operation.as_deref().unwrap_or("") {
            "" | "submit" => Ok(Operation::Submit),
            "submit-from" => Ok(Operation::SubmitFrom),
            "resubmit" => Ok(Operation::Resubmit),
            "suspend" => Ok(Operation::Suspend),
            "resume" => Ok(Operation::Resume),
            "terminate" => Ok(Operation::Terminate),
            "stop" => Ok(Operation::Stop),
            "retry" => Err(unsupported("argoWorkflow.operation `retry` (it needs the Argo Server's retry logic)")),
            other => Err(BuildError::InvalidField {
                trigger: name.to_owned(),
                field: "argoWorkflow.operation".into(),
                reason: format!("`{other}` is not an operation (use submit, submit-from, resubmit, suspend, resume, terminate or stop)"),
            }),
        }
    }

    fn build_checked(
        name: &str,
        operation: Operation,
        argo: &ArgoWorkflowSpec,
        spec: &TriggerSpec,
        ctx: &BuildContext,
        access: KubeAccess,
    ) -> Result<Self, BuildError> {
        let (policy, source) =
            super::k8s::policy_and_source(name, "argoWorkflow.source", argo.source.as_ref(), spec, ctx)?;
        Ok(Self {
            name: name.to_owned(),
            sensor: ctx.sensor.clone(),
            operation,
            policy,
            source,
            access,
        })
    }

    fn spec<'a>(&self, firing: &'a Firing) -> Result<&'a ArgoWorkflowSpec, TriggerError> {
        firing
            .template
            .argo_workflow
            .as_ref()
            .ok_or(TriggerError::MissingAction { kind: "argoWorkflow" })
    }

    /// The manifest of `firing`, parameters applied, and its name (checked as upstream does).
    fn manifest(&self, firing: &Firing, mut object: Value) -> Result<(Value, Option<String>), TriggerError> {
        let spec = self.spec(firing)?;
        apply_params(&mut object, &spec.parameters, &firing.events).map_err(TriggerError::ApplyParams)?;
        let name = meta_str(&object, "name").map(str::to_owned);
        if name.is_none() {
            if self.operation != Operation::Submit {
                return Err(TriggerError::InvalidObject {
                    reason: format!(
                        "`{}` needs `metadata.name` in the manifest",
                        self.operation.as_str()
                    ),
                });
            }
            if meta_str(&object, "generateName").is_none() {
                return Err(TriggerError::InvalidObject {
                    reason: "the Workflow has neither `metadata.name` nor `metadata.generateName`".into(),
                });
            }
        }
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let kind_ok = match self.operation {
            Operation::SubmitFrom => FromKind::parse(kind).is_some(),
            _ => kind == "Workflow",
        };
        if !kind_ok {
            let wanted = match self.operation {
                Operation::SubmitFrom => "WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow",
                _ => "Workflow",
            };
            return Err(TriggerError::InvalidObject {
                reason: format!(
                    "`{}` needs a manifest of kind {wanted}, not `{kind}`",
                    self.operation.as_str()
                ),
            });
        }
        Ok((object, name))
    }
}

#[async_trait]
impl Trigger for ArgoWorkflowTrigger {
    fn kind(&self) -> &'static str {
        "argoWorkflow"
    }

    fn attempt_timeout(&self) -> Duration {
        // The API calls have no bound of their own; `policy.k8s` adds its label wait after them.
        super::DEFAULT_ATTEMPT_TIMEOUT
            .saturating_add(self.policy.as_ref().map_or(Duration::ZERO, LabelPolicy::max_wait))
    }

    fn describe(&self, firing: &Firing) -> Result<Value, TriggerError> {
        let spec = self.spec(firing)?;
        let (mut object, name) = self.manifest(firing, self.source.object_now(spec.source.as_ref())?)?;
        let op = self.operation;
        Ok(match op {
            Operation::Submit => {
                add_labels(
                    &mut object,
                    &creation_labels(&self.sensor, &firing.trigger, now_millis()),
                );
                mark_firing(&mut object, firing.id.as_str());
                json!({"operation": op.as_str(), "workflow": object})
            }
            Operation::SubmitFrom | Operation::Resubmit => json!({
                "operation": op.as_str(),
                "from": format!("{}/{}", object.get("kind").and_then(Value::as_str).unwrap_or_default(), name.unwrap_or_default()),
                "arguments": object.pointer("/spec/arguments").cloned().unwrap_or(Value::Null),
            }),
            Operation::Suspend | Operation::Resume | Operation::Terminate | Operation::Stop => json!({
                "operation": op.as_str(),
                "workflow": name,
                "mergePatch": op.spec_patch(),
            }),
        })
    }

    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError> {
        let spec = self.spec(firing)?;
        let (mut object, name) = self.manifest(firing, self.source.object(spec.source.as_ref()).await?)?;
        let kube = self.access.get().await?;
        let namespace = meta_str(&object, "namespace")
            .unwrap_or(&kube.namespace)
            .to_owned();
        let workflows: Api<DynamicObject> = Api::namespaced_with(
            kube.client.clone(),
            &namespace,
            &argo_resource("Workflow", "workflows"),
        );
        let ns = Some(namespace.as_str());
        let name = name.unwrap_or_default();
        // Every Workflow is created once per firing (see `create_once`): a repeated firing finds
        // the Workflow it submitted before instead of submitting a second run.
        let create = |wf: Value| super::k8s::create_once(&workflows, "Workflow", ns, wf, firing);
        let (action, acted_on) = match self.operation {
            Operation::Submit => {
                add_labels(
                    &mut object,
                    &creation_labels(&self.sensor, &firing.trigger, now_millis()),
                );
                super::k8s::object::set_namespace(&mut object, Some(&namespace));
                ("submitted", create(object).await?)
            }
            Operation::SubmitFrom => {
                let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
                let from = FromKind::parse(kind).ok_or_else(|| TriggerError::InvalidObject {
                    reason: format!("cannot submit from a `{kind}`"),
                })?;
                let api: Api<DynamicObject> = match from {
                    FromKind::ClusterWorkflowTemplate => Api::all_with(kube.client.clone(), &from.resource()),
                    _ => Api::namespaced_with(kube.client.clone(), &namespace, &from.resource()),
                };
                let from_ns = (from != FromKind::ClusterWorkflowTemplate).then_some(namespace.as_str());
                let template = api
                    .get(&name)
                    .await
                    .map_err(|e| api_error("read", from.kind(), from_ns, &name, e))?;
                let template = serde_json::to_value(&template).unwrap_or_default();
                let wf = workflow_from(from, &name, &namespace, &template, &object);
                ("submitted", create(wf).await?)
            }
            Operation::Resubmit => {
                let old = workflows
                    .get(&name)
                    .await
                    .map_err(|e| api_error("read", "Workflow", ns, &name, e))?;
                let old = serde_json::to_value(&old).unwrap_or_default();
                ("resubmitted", create(resubmitted(&old, &name, &namespace)).await?)
            }
            op @ (Operation::Suspend | Operation::Resume | Operation::Terminate | Operation::Stop) => {
                let patch = op.spec_patch().unwrap_or_default();
                workflows
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| api_error(op.as_str(), "Workflow", ns, &name, e))?;
                (op.as_str(), name.clone())
            }
        };
        let shown = describe_object("Workflow", ns, &acted_on);
        info!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, workflow = %shown, action, "argoWorkflow trigger acted");
        if let Some(policy) = &self.policy {
            policy.wait(&workflows, "Workflow", ns, &acted_on).await?;
        }
        Ok(Outcome::KubernetesObject {
            action,
            object: shown,
        })
    }
}

#[cfg(test)]
mod tests;
