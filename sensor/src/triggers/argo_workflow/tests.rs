use std::sync::Arc;

use serde_json::json;
use sluice_crds::sensor::{
    ArgoWorkflowTrigger as ArgoWorkflowSpec, ArtifactLocation, Trigger as TriggerSpec, TriggerTemplate,
};

use super::*;
use crate::secrets::FileSecretResolver;

fn ctx() -> BuildContext {
    BuildContext {
        sensor: "s".into(),
        secrets: Arc::new(FileSecretResolver::new("/nonexistent")),
        http: reqwest::Client::new().into(),
        namespace: None,
    }
}

fn access() -> KubeAccess {
    // Never connected in these tests: building and describing need no API.
    KubeAccess::Infer(Arc::new(tokio::sync::OnceCell::new()), None)
}

fn spec(operation: &str, resource: Value) -> (ArgoWorkflowSpec, TriggerSpec) {
    let argo = ArgoWorkflowSpec {
        operation: Some(operation.into()),
        source: Some(ArtifactLocation {
            resource: Some(resource),
            ..ArtifactLocation::default()
        }),
        ..ArgoWorkflowSpec::default()
    };
    let trigger = TriggerSpec {
        template: Some(TriggerTemplate {
            name: "t".into(),
            argo_workflow: Some(argo.clone()),
            ..TriggerTemplate::default()
        }),
        ..TriggerSpec::default()
    };
    (argo, trigger)
}

fn build(operation: &str) -> Result<ArgoWorkflowTrigger, BuildError> {
    let (argo, trigger) = spec(
        operation,
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow"}),
    );
    ArgoWorkflowTrigger::build_with_access("t", &argo, &trigger, &ctx(), access())
}

#[test]
fn retry_and_cli_args_refuse_to_start_naming_the_field() {
    let err = build("retry").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("argoWorkflow.operation `retry`"), "{err}");
    let err = build("explode").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("`explode` is not an operation"), "{err}");
    let (mut argo, trigger) = spec("submit", json!({"kind": "Workflow"}));
    argo.args = vec!["--serviceaccount".into(), "x".into()];
    let err = ArgoWorkflowTrigger::build_with_access("t", &argo, &trigger, &ctx(), access())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("argoWorkflow.args"), "{err}");
    for op in [
        "submit",
        "submit-from",
        "resubmit",
        "suspend",
        "resume",
        "terminate",
        "stop",
    ] {
        assert!(build(op).is_ok(), "{op}");
    }
}

#[test]
fn spec_patches_set_suspend_and_shutdown() {
    assert_eq!(
        Operation::Suspend.spec_patch(),
        Some(json!({"spec": {"suspend": true}}))
    );
    assert_eq!(
        Operation::Resume.spec_patch(),
        Some(json!({"spec": {"suspend": null}}))
    );
    assert_eq!(
        Operation::Terminate.spec_patch(),
        Some(json!({"spec": {"shutdown": "Terminate"}}))
    );
    assert_eq!(
        Operation::Stop.spec_patch(),
        Some(json!({"spec": {"shutdown": "Stop"}}))
    );
    assert_eq!(Operation::Submit.spec_patch(), None);
}

#[test]
fn submit_from_a_template_references_it_and_carries_the_arguments() {
    let manifest = json!({"kind": "WorkflowTemplate", "metadata": {"name": "build"},
        "spec": {"arguments": {"parameters": [{"name": "repo", "value": "sluice"}]}}});
    let wf = workflow_from(FromKind::WorkflowTemplate, "build", "ns", &json!({}), &manifest);
    assert_eq!(wf["kind"], "Workflow");
    assert_eq!(wf["metadata"]["generateName"], "build-");
    assert_eq!(wf["metadata"]["namespace"], "ns");
    assert_eq!(wf["metadata"]["labels"][LABEL_WORKFLOW_TEMPLATE], "build");
    assert_eq!(wf["spec"]["workflowTemplateRef"], json!({"name": "build"}));
    assert_eq!(wf["spec"]["arguments"]["parameters"][0]["value"], "sluice");

    let wf = workflow_from(
        FromKind::ClusterWorkflowTemplate,
        "c",
        "ns",
        &json!({}),
        &json!({}),
    );
    assert_eq!(
        wf["spec"],
        json!({"workflowTemplateRef": {"name": "c", "clusterScope": true}})
    );
    assert_eq!(wf["metadata"]["labels"][LABEL_CLUSTER_WORKFLOW_TEMPLATE], "c");
}

#[test]
fn submit_from_a_cron_workflow_copies_its_workflow_spec_and_is_owned_by_it() {
    let cron = json!({"metadata": {"name": "nightly", "uid": "u-1"}, "spec": {
        "schedule": "0 0 * * *",
        "workflowMetadata": {"labels": {"team": "a"}, "annotations": {"note": "n"}},
        "workflowSpec": {"entrypoint": "main", "templates": [{"name": "main"}]}}});
    let wf = workflow_from(
        FromKind::CronWorkflow,
        "nightly",
        "ns",
        &cron,
        &json!({"kind": "CronWorkflow"}),
    );
    assert_eq!(
        wf["spec"],
        json!({"entrypoint": "main", "templates": [{"name": "main"}]})
    );
    assert_eq!(wf["metadata"]["labels"]["team"], "a");
    assert_eq!(wf["metadata"]["labels"][LABEL_CRON_WORKFLOW], "nightly");
    assert_eq!(wf["metadata"]["annotations"]["note"], "n");
    assert_eq!(wf["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert_eq!(wf["metadata"]["ownerReferences"][0]["kind"], "CronWorkflow");
}

#[test]
fn resubmit_copies_the_spec_without_run_state() {
    let old = json!({"metadata": {"name": "wf-1", "labels": {
            "app": "x", "workflows.argoproj.io/phase": "Failed", "workflows.argoproj.io/completed": "true",
            LABEL_WORKFLOW_TEMPLATE: "build"}},
        "spec": {"entrypoint": "main", "shutdown": "Terminate"}, "status": {"phase": "Failed"}});
    let wf = resubmitted(&old, "wf-1", "ns");
    assert_eq!(wf["spec"], json!({"entrypoint": "main"}));
    assert_eq!(wf["metadata"]["generateName"], "wf-1-");
    let labels = &wf["metadata"]["labels"];
    assert_eq!(labels["app"], "x");
    assert_eq!(labels[LABEL_WORKFLOW_TEMPLATE], "build");
    assert_eq!(labels[LABEL_RESUBMITTED_FROM], "wf-1");
    assert!(labels.get("workflows.argoproj.io/phase").is_none());
    assert!(wf.get("status").is_none());
}

#[test]
fn describe_shows_the_workflow_with_labels_and_checks_names_and_kinds() -> anyhow::Result<()> {
    let (argo, trigger) = spec(
        "submit",
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "hello-"}}),
    );
    let t = ArgoWorkflowTrigger::build_with_access("t", &argo, &trigger, &ctx(), access())?;
    let events = Default::default();
    let firing = Firing {
        id: crate::firing::FiringId::new("t", &events),
        sensor: "s".into(),
        trigger: "t".into(),
        events,
        template: trigger.template.clone().unwrap_or_default(),
    };
    let shown = t.describe(&firing)?;
    assert_eq!(
        shown["workflow"]["metadata"]["labels"][super::super::k8s::object::LABEL_SENSOR],
        "s"
    );

    let (argo, trigger) = spec(
        "suspend",
        json!({"kind": "Workflow", "metadata": {"generateName": "x-"}}),
    );
    let t = ArgoWorkflowTrigger::build_with_access("t", &argo, &trigger, &ctx(), access())?;
    let firing = Firing {
        template: trigger.template.clone().unwrap_or_default(),
        ..firing
    };
    let err = t
        .describe(&firing)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("`suspend` needs `metadata.name`"), "{err}");

    let (argo, trigger) = spec("submit-from", json!({"kind": "Pod", "metadata": {"name": "p"}}));
    let t = ArgoWorkflowTrigger::build_with_access("t", &argo, &trigger, &ctx(), access())?;
    let firing = Firing {
        template: trigger.template.clone().unwrap_or_default(),
        ..firing
    };
    let err = t
        .describe(&firing)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow"),
        "{err}"
    );
    Ok(())
}
