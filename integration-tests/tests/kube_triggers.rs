//! The `k8s` and `argoWorkflow` triggers against a real kube-apiserver (with kube-controller-manager)
//! from `scripts/services.sh start kube`: every operation, parameters from a GitHub-shaped event,
//! policy labels, and API errors (RBAC 403, 409, 422). Each test works in its own namespace.

mod kube_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::Client;
use serde_json::{json, Value};
use sluice_crds::common::Backoff;
use sluice_crds::sensor::{
    ArgoWorkflowTrigger as ArgoSpec, ArtifactLocation, K8SResourcePolicy, StandardK8STrigger,
    Trigger as TriggerSpec, TriggerParameter, TriggerParameterSource, TriggerPolicy, TriggerTemplate,
};
use sluice_sensor::triggers::argo_workflow::ArgoWorkflowTrigger;
use sluice_sensor::triggers::k8s::client::{KubeAccess, KubeClient};
use sluice_sensor::triggers::k8s::K8sTrigger;
use sluice_sensor::triggers::{BuildContext, ErrorKind, Outcome, Trigger, TriggerError};
use sluice_sensor::{FileSecretResolver, Firing, FiringId};

use kube_support::*;

fn ctx() -> BuildContext {
    BuildContext {
        sensor: "kube-test-sensor".into(),
        secrets: Arc::new(FileSecretResolver::new("/nonexistent")),
        http: reqwest::Client::new().into(),
        namespace: None,
    }
}

fn access(client: &Client, namespace: &str) -> KubeAccess {
    KubeAccess::Client(KubeClient {
        client: client.clone(),
        namespace: namespace.to_owned(),
    })
}

fn param(dependency: &str, data_key: &str, dest: &str) -> TriggerParameter {
    TriggerParameter {
        src: Some(TriggerParameterSource {
            dependency_name: dependency.into(),
            data_key: Some(data_key.into()),
            ..Default::default()
        }),
        dest: dest.into(),
        ..Default::default()
    }
}

fn resource(object: Value) -> Option<ArtifactLocation> {
    Some(ArtifactLocation {
        resource: Some(object),
        ..Default::default()
    })
}

fn k8s_spec(k8s: StandardK8STrigger, policy: Option<TriggerPolicy>) -> TriggerSpec {
    TriggerSpec {
        template: Some(TriggerTemplate {
            name: "k8s-trigger".into(),
            k8s: Some(k8s),
            ..Default::default()
        }),
        policy,
        ..Default::default()
    }
}

fn argo_spec(argo: ArgoSpec) -> TriggerSpec {
    TriggerSpec {
        template: Some(TriggerTemplate {
            name: "argo-trigger".into(),
            argo_workflow: Some(argo),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn firing(spec: &TriggerSpec, repository: &str) -> Result<Firing> {
    firing_of(spec, "delivery-1", repository)
}

/// A firing for the push with GitHub delivery id `delivery` (which makes the event's id, and so the
/// firing's).
fn firing_of(spec: &TriggerSpec, delivery: &str, repository: &str) -> Result<Firing> {
    let events: BTreeMap<_, _> = [("push".to_owned(), github_push(delivery, repository, "abc123")?)].into();
    let trigger = spec.template.as_ref().map(|t| t.name.clone()).unwrap_or_default();
    Ok(Firing {
        id: FiringId::new(&trigger, &events),
        sensor: "kube-test-sensor".into(),
        trigger,
        events,
        template: spec.template.clone().unwrap_or_default(),
    })
}

fn k8s_trigger(client: &Client, ns: &str, spec: &TriggerSpec) -> Result<K8sTrigger> {
    let k8s = spec
        .template
        .as_ref()
        .and_then(|t| t.k8s.clone())
        .context("k8s")?;
    Ok(K8sTrigger::build_with_access(
        "k8s-trigger",
        &k8s,
        spec,
        &ctx(),
        access(client, ns),
    )?)
}

fn argo_trigger(client: &Client, ns: &str, spec: &TriggerSpec) -> Result<ArgoWorkflowTrigger> {
    let argo = spec
        .template
        .as_ref()
        .and_then(|t| t.argo_workflow.clone())
        .context("argo")?;
    Ok(ArgoWorkflowTrigger::build_with_access(
        "argo-trigger",
        &argo,
        spec,
        &ctx(),
        access(client, ns),
    )?)
}

fn core(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural)
}

fn config_maps(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &core("ConfigMap", "configmaps"))
}

fn workflows(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &argo("Workflow", "workflows"))
}

async fn create(api: &Api<DynamicObject>, object: Value) -> Result<DynamicObject> {
    Ok(api
        .create(&PostParams::default(), &serde_json::from_value(object)?)
        .await?)
}

fn object_name(outcome: &Outcome) -> String {
    match outcome {
        Outcome::KubernetesObject { object, .. } => object.rsplit('/').next().unwrap_or_default().to_owned(),
        other => format!("unexpected outcome {other:?}"),
    }
}

async fn setup(prefix: &str) -> Result<(Client, String)> {
    let client = admin_client().await?;
    install_crds(&client).await?;
    let ns = namespace(&client, prefix).await?;
    Ok((client, ns))
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn k8s_create_applies_parameters_labels_and_the_sensor_namespace() -> Result<()> {
    let (client, ns) = setup("k8s-create").await?;
    let spec = k8s_spec(
        StandardK8STrigger {
            source: Some(ArtifactLocation {
                inline: Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: push-\ndata:\n  repo: unset\n".into()),
                ..Default::default()
            }),
            parameters: vec![
                param("push", "body.repository.full_name", "data.repo"),
                param("push", "body.after", "data.sha"),
            ],
            ..Default::default()
        },
        None,
    );
    let trigger = k8s_trigger(&client, &ns, &spec)?;
    let outcome = trigger.execute(&firing(&spec, "sluice")?).await?;
    let name = object_name(&outcome);
    assert!(name.starts_with("push-"), "{outcome:?}");
    let cm = config_maps(&client, &ns).get(&name).await?;
    assert_eq!(cm.data["data"]["repo"], "acme/sluice");
    assert_eq!(cm.data["data"]["sha"], "abc123");
    let labels = cm.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("events.argoproj.io/sensor").map(String::as_str),
        Some("kube-test-sensor")
    );
    assert_eq!(
        labels.get("events.argoproj.io/trigger").map(String::as_str),
        Some("k8s-trigger")
    );
    assert!(labels
        .get("events.argoproj.io/action-timestamp")
        .is_some_and(|t| t.parse::<i64>().is_ok()));
    Ok(())
}

/// A firing of `create` makes its object once: run again (a sensor restarted before the ack, the
/// event redelivered, another replica), it finds the object it made; another firing makes another;
/// a name that something else took is still the API's `AlreadyExists`.
#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn k8s_create_makes_one_object_per_firing_however_often_it_runs() -> Result<()> {
    let (client, ns) = setup("k8s-once").await?;
    let api = config_maps(&client, &ns);
    let manifest = |meta: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"repo": "unset"}});
    let spec = k8s_spec(
        StandardK8STrigger {
            source: resource(manifest(json!({"generateName": "push-"}))),
            ..Default::default()
        },
        None,
    );
    let trigger = k8s_trigger(&client, &ns, &spec)?;
    let first = firing(&spec, "sluice")?;
    let name = object_name(&trigger.execute(&first).await?);
    assert_eq!(
        name,
        format!("push-{}", &first.id.as_str()[..16]),
        "a generateName object is named after its firing"
    );
    assert_eq!(object_name(&trigger.execute(&first).await?), name);
    let made = api.list(&ListParams::default()).await?;
    let pushes: Vec<_> = made
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .filter(|n| n.starts_with("push-"))
        .collect();
    assert_eq!(pushes, vec![name.clone()], "the repeat made no second object");
    let annotations = api.get(&name).await?.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("sluice.dev/firing-id"),
        Some(&first.id.to_string())
    );

    let other = firing_of(&spec, "delivery-2", "sluice")?;
    let second = object_name(&trigger.execute(&other).await?);
    assert_ne!(second, name, "another firing makes another object");

    // An explicit name taken by an object no firing made stays an error (as upstream).
    create(&api, manifest(json!({"name": "taken"}))).await?;
    let spec = k8s_spec(
        StandardK8STrigger {
            source: resource(manifest(json!({"name": "taken"}))),
            ..Default::default()
        },
        None,
    );
    let err = k8s_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "sluice")?)
        .await
        .expect_err("the name is taken");
    assert!(
        matches!(&err, TriggerError::KubernetesApi { status: 409, reason, .. } if reason == "AlreadyExists"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn k8s_update_merges_into_the_live_object_or_creates_it() -> Result<()> {
    let (client, ns) = setup("k8s-update").await?;
    let api = config_maps(&client, &ns);
    let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"repo": "x"}});
    let spec = k8s_spec(
        StandardK8STrigger {
            operation: Some("update".into()),
            source: resource(manifest.clone()),
            parameters: vec![param("push", "body.repository.name", "data.repo")],
            ..Default::default()
        },
        None,
    );
    let trigger = k8s_trigger(&client, &ns, &spec)?;
    // Absent: created.
    let outcome = trigger.execute(&firing(&spec, "first")?).await?;
    assert!(
        matches!(
            outcome,
            Outcome::KubernetesObject {
                action: "created",
                ..
            }
        ),
        "{outcome:?}"
    );
    // Present: merged; keys the manifest does not name stay.
    api.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"kept": "yes"}})),
    )
    .await?;
    let outcome = trigger.execute(&firing(&spec, "second")?).await?;
    assert!(
        matches!(
            outcome,
            Outcome::KubernetesObject {
                action: "updated",
                ..
            }
        ),
        "{outcome:?}"
    );
    let cm = api.get("settings").await?;
    assert_eq!(cm.data["data"], json!({"repo": "second", "kept": "yes"}));

    // liveObject: parameters apply to the object read from the server.
    let live = k8s_spec(
        StandardK8STrigger {
            operation: Some("update".into()),
            live_object: true,
            source: resource(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": ns}})),
            parameters: vec![param("push", "body.after", "data.sha")],
            ..Default::default()
        },
        None,
    );
    k8s_trigger(&client, &ns, &live)?
        .execute(&firing(&live, "third")?)
        .await?;
    let cm = api.get("settings").await?;
    assert_eq!(
        cm.data["data"],
        json!({"repo": "second", "kept": "yes", "sha": "abc123"})
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn k8s_patch_with_each_strategy() -> Result<()> {
    let (client, ns) = setup("k8s-patch").await?;
    let api = config_maps(&client, &ns);
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": {"a": "1"}}),
    )
    .await?;
    let run = |strategy: Option<&str>, object: Value| {
        let spec = k8s_spec(
            StandardK8STrigger {
                operation: Some("patch".into()),
                patch_strategy: strategy.map(str::to_owned),
                source: resource(object),
                ..Default::default()
            },
            None,
        );
        let client = client.clone();
        let ns = ns.clone();
        async move {
            k8s_trigger(&client, &ns, &spec)?
                .execute(&firing(&spec, "r")?)
                .await
                .map_err(anyhow::Error::from)
        }
    };
    let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": data});
    run(None, cm(json!({"b": "2"}))).await?;
    assert_eq!(api.get("p").await?.data["data"], json!({"a": "1", "b": "2"}));
    run(
        Some("application/strategic-merge-patch+json"),
        cm(json!({"c": "3"})),
    )
    .await?;
    assert_eq!(
        api.get("p").await?.data["data"],
        json!({"a": "1", "b": "2", "c": "3"})
    );
    run(
        Some("application/json-patch+json"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"},
            "patch": [{"op": "remove", "path": "/data/a"}, {"op": "replace", "path": "/data/b", "value": "two"}]}),
    )
    .await?;
    assert_eq!(api.get("p").await?.data["data"], json!({"b": "two", "c": "3"}));
    run(Some("application/apply-patch+yaml"), cm(json!({"d": "4"}))).await?;
    let after = api.get("p").await?;
    assert_eq!(after.data["data"]["d"], "4");
    let managers: Vec<_> = after
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "sluice"), "{managers:?}");
    // Patch of an absent object creates it (upstream).
    let spec = k8s_spec(
        StandardK8STrigger {
            operation: Some("patch".into()),
            source: resource(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}, "data": {"x": "y"}}),
            ),
            ..Default::default()
        },
        None,
    );
    let outcome = k8s_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await?;
    assert!(
        matches!(
            outcome,
            Outcome::KubernetesObject {
                action: "created",
                ..
            }
        ),
        "{outcome:?}"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn k8s_strategic_merge_on_a_custom_resource_is_refused_by_the_api_with_its_message() -> Result<()> {
    let (client, ns) = setup("k8s-smp").await?;
    create(
        &workflows(&client, &ns),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"}, "spec": {"entrypoint": "a"}}),
    )
    .await?;
    let spec = k8s_spec(
        StandardK8STrigger {
            operation: Some("patch".into()),
            patch_strategy: Some("application/strategic-merge-patch+json".into()),
            source: resource(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"}, "spec": {"entrypoint": "b"}}),
            ),
            ..Default::default()
        },
        None,
    );
    let err = k8s_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await
        .err()
        .context("strategic merge on a CR must fail")?;
    let text = err.to_string();
    assert!(
        text.contains(&format!("failed to patch Workflow {ns}/w: 415")),
        "{text}"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn k8s_delete_removes_the_object_and_succeeds_when_it_is_gone() -> Result<()> {
    let (client, ns) = setup("k8s-delete").await?;
    let api = config_maps(&client, &ns);
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone"}}),
    )
    .await?;
    let spec = k8s_spec(
        StandardK8STrigger {
            operation: Some("delete".into()),
            source: resource(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone"}})),
            ..Default::default()
        },
        None,
    );
    let trigger = k8s_trigger(&client, &ns, &spec)?;
    let outcome = trigger.execute(&firing(&spec, "r")?).await?;
    assert!(
        matches!(
            outcome,
            Outcome::KubernetesObject {
                action: "deleted",
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(api.get_opt("gone").await?.is_none());
    let outcome = trigger.execute(&firing(&spec, "r")?).await?;
    assert!(
        matches!(outcome, Outcome::KubernetesObject { action: "absent", .. }),
        "{outcome:?}"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn k8s_api_errors_name_the_object_and_say_whether_to_retry() -> Result<()> {
    let (client, ns) = setup("k8s-errors").await?;
    // 422: an invalid name.
    let spec = k8s_spec(
        StandardK8STrigger {
            source: resource(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid"}}),
            ),
            ..Default::default()
        },
        None,
    );
    let err = k8s_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await
        .err()
        .context("invalid name must fail")?;
    let text = err.to_string();
    assert!(
        text.contains(&format!("failed to create ConfigMap {ns}/Not_Valid: 422 Invalid")),
        "{text}"
    );
    assert!(text.contains("a lowercase RFC 1123 subdomain"), "{text}");
    assert_eq!(err.kind(), ErrorKind::Permanent);

    // 409 AlreadyExists: a fixed name created by two firings; permanent (a retry would fail the
    // same way). (The same firing twice finds its own object: see k8s_create_makes_one_object_….)
    let spec = k8s_spec(
        StandardK8STrigger {
            source: resource(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "once"}})),
            ..Default::default()
        },
        None,
    );
    let trigger = k8s_trigger(&client, &ns, &spec)?;
    trigger.execute(&firing(&spec, "r")?).await?;
    let err = trigger
        .execute(&firing_of(&spec, "delivery-2", "r")?)
        .await
        .err()
        .context("second create must fail")?;
    match &err {
        TriggerError::KubernetesApi {
            status,
            reason,
            object,
            ..
        } => {
            assert_eq!((*status, reason.as_str()), (409, "AlreadyExists"));
            assert_eq!(object, &format!("ConfigMap {ns}/once"));
        }
        other => anyhow::bail!("unexpected error {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Permanent);

    // An unknown kind: discovery says so.
    let spec = k8s_spec(
        StandardK8STrigger {
            source: resource(
                json!({"apiVersion": "example.com/v1", "kind": "Nothing", "metadata": {"name": "n"}}),
            ),
            ..Default::default()
        },
        None,
    );
    let err = k8s_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await
        .err()
        .context("unknown kind must fail")?;
    assert!(
        err.to_string().contains("kind `Nothing` in `example.com/v1`"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn rbac_denied_gives_a_clear_permanent_error() -> Result<()> {
    let (client, ns) = setup("k8s-rbac").await?;
    let denied = denied_client().await?;
    let spec = k8s_spec(
        StandardK8STrigger {
            source: resource(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "forbidden"}}),
            ),
            ..Default::default()
        },
        None,
    );
    let err = k8s_trigger(&denied, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await
        .err()
        .context("a user without rights must be refused")?;
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "failed to create ConfigMap {ns}/forbidden: 403 Forbidden"
        )),
        "{text}"
    );
    assert!(
        text.contains("User \"sluice-nobody\" cannot create resource \"configmaps\""),
        "{text}"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(config_maps(&client, &ns).get_opt("forbidden").await?.is_none());

    let argo = argo_spec(ArgoSpec {
        source: resource(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "x-"}, "spec": {}}),
        ),
        ..Default::default()
    });
    let err = argo_trigger(&denied, &ns, &argo)?
        .execute(&firing(&argo, "r")?)
        .await
        .err()
        .context("a user without rights must be refused")?;
    assert!(err.to_string().contains("403 Forbidden"), "{err}");
    assert!(err.to_string().contains("workflows"), "{err}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn policy_waits_for_labels_and_errors_on_timeout_only_when_asked() -> Result<()> {
    let (client, ns) = setup("k8s-policy").await?;
    let policy = |error_on_backoff_timeout: bool, steps: i32| TriggerPolicy {
        k8s: Some(K8SResourcePolicy {
            labels: [("ready".to_owned(), "true".to_owned())].into(),
            backoff: Some(Backoff {
                duration: Some(sluice_crds::common::Int64OrString::String("200ms".into())),
                steps: Some(steps),
                factor: None,
                jitter: None,
            }),
            error_on_backoff_timeout,
        }),
        ..Default::default()
    };
    let manifest =
        |name: &str| resource(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}));
    // Someone else (here: a task standing in for a controller) labels the object after a while.
    let spec = k8s_spec(
        StandardK8STrigger {
            source: manifest("labelled"),
            ..Default::default()
        },
        Some(policy(true, 100)),
    );
    let api = config_maps(&client, &ns);
    let labeller = tokio::spawn({
        let api = api.clone();
        async move {
            wait_for(Duration::from_secs(30), || {
                let api = api.clone();
                async move { Ok(api.get_opt("labelled").await?) }
            })
            .await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            api.patch(
                "labelled",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"ready": "true"}}})),
            )
            .await?;
            anyhow::Ok(())
        }
    });
    k8s_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await?;
    labeller.await??;

    // Never labelled: an error with errorOnBackoffTimeout…
    let spec = k8s_spec(
        StandardK8STrigger {
            source: manifest("never"),
            ..Default::default()
        },
        Some(policy(true, 3)),
    );
    let err = k8s_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await
        .err()
        .context("labels never appear")?;
    assert!(matches!(err, TriggerError::PolicyTimeout { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("ready=true on ConfigMap {ns}/never")),
        "{err}"
    );
    // …and a success without it (upstream).
    let spec = k8s_spec(
        StandardK8STrigger {
            source: manifest("never-ok"),
            ..Default::default()
        },
        Some(policy(false, 2)),
    );
    k8s_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver and kube-controller-manager: scripts/test starts them and runs ignored tests"]
async fn controller_manager_runs_deployments_and_garbage_collection() -> Result<()> {
    let (client, ns) = setup("k8s-kcm").await?;
    let spec = k8s_spec(
        StandardK8STrigger {
            source: resource(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}}}}),
            ),
            ..Default::default()
        },
        None,
    );
    k8s_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await?;
    let replica_sets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", "ReplicaSet"), "replicasets"),
    );
    // The Deployment controller makes a ReplicaSet owned by the Deployment.
    let rs = wait_for(Duration::from_secs(60), || {
        let replica_sets = replica_sets.clone();
        async move {
            Ok(replica_sets
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .next())
        }
    })
    .await?;
    let owner = rs.metadata.owner_references.unwrap_or_default();
    assert_eq!(owner.first().map(|o| o.name.as_str()), Some("web"));
    // Deleting the Deployment through the trigger: the garbage collector removes the ReplicaSet.
    let delete = k8s_spec(
        StandardK8STrigger {
            operation: Some("delete".into()),
            source: resource(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
            ),
            ..Default::default()
        },
        None,
    );
    k8s_trigger(&client, &ns, &delete)?
        .execute(&firing(&delete, "r")?)
        .await?;
    wait_for(Duration::from_secs(60), || {
        let replica_sets = replica_sets.clone();
        async move {
            Ok(replica_sets
                .list(&ListParams::default())
                .await?
                .items
                .is_empty()
                .then_some(()))
        }
    })
    .await
    .context("the ReplicaSet of a deleted Deployment was not garbage-collected")?;
    Ok(())
}

fn workflow_manifest() -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "on-push-"},
        "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "repo", "value": "unset"}, {"name": "sha", "value": "unset"}]},
            "templates": [{"name": "main", "container": {"image": "alpine", "command": ["echo", "{{workflow.parameters.repo}}"]}}]}})
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn argo_submit_puts_event_values_into_the_workflow_arguments() -> Result<()> {
    let (client, ns) = setup("argo-submit").await?;
    let spec = argo_spec(ArgoSpec {
        source: resource(workflow_manifest()),
        parameters: vec![
            param(
                "push",
                "body.repository.full_name",
                "spec.arguments.parameters.0.value",
            ),
            param("push", "body.after", "spec.arguments.parameters.1.value"),
        ],
        ..Default::default()
    });
    let outcome = argo_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "sluice")?)
        .await?;
    let name = object_name(&outcome);
    assert!(name.starts_with("on-push-"), "{outcome:?}");
    let wf = workflows(&client, &ns).get(&name).await?;
    assert_eq!(
        wf.data["spec"]["arguments"]["parameters"],
        json!([{"name": "repo", "value": "acme/sluice"}, {"name": "sha", "value": "abc123"}])
    );
    let labels = wf.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("events.argoproj.io/trigger").map(String::as_str),
        Some("argo-trigger")
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn argo_submit_from_templates_and_cron_workflows() -> Result<()> {
    let (client, ns) = setup("argo-from").await?;
    let wf_spec = json!({"entrypoint": "main", "arguments": {"parameters": [{"name": "repo"}]},
        "templates": [{"name": "main", "container": {"image": "alpine"}}]});
    create(
        &Api::namespaced_with(client.clone(), &ns, &argo("WorkflowTemplate", "workflowtemplates")),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": {"name": "build"}, "spec": wf_spec}),
    )
    .await?;
    let cluster_name = format!("{ns}-cluster");
    create(
        &Api::all_with(client.clone(), &argo("ClusterWorkflowTemplate", "clusterworkflowtemplates")),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterWorkflowTemplate", "metadata": {"name": cluster_name}, "spec": wf_spec}),
    )
    .await?;
    let cron = create(
        &Api::namespaced_with(client.clone(), &ns, &argo("CronWorkflow", "cronworkflows")),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 0 * * *", "workflowMetadata": {"labels": {"team": "infra"}}, "workflowSpec": wf_spec}}),
    )
    .await?;

    let from = |kind: &str, name: &str| {
        argo_spec(ArgoSpec {
            operation: Some("submit-from".into()),
            source: resource(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": {"name": name},
                "spec": {"arguments": {"parameters": [{"name": "repo", "value": "unset"}]}}}),
            ),
            parameters: vec![param(
                "push",
                "body.repository.name",
                "spec.arguments.parameters.0.value",
            )],
            ..Default::default()
        })
    };
    let wfs = workflows(&client, &ns);

    let spec = from("WorkflowTemplate", "build");
    let name = object_name(
        &argo_trigger(&client, &ns, &spec)?
            .execute(&firing(&spec, "one")?)
            .await?,
    );
    let wf = wfs.get(&name).await?;
    assert_eq!(wf.data["spec"]["workflowTemplateRef"], json!({"name": "build"}));
    assert_eq!(wf.data["spec"]["arguments"]["parameters"][0]["value"], "one");
    assert_eq!(
        wf.labels()
            .get("workflows.argoproj.io/workflow-template")
            .map(String::as_str),
        Some("build")
    );

    let spec = from("ClusterWorkflowTemplate", &cluster_name);
    let name = object_name(
        &argo_trigger(&client, &ns, &spec)?
            .execute(&firing(&spec, "two")?)
            .await?,
    );
    let wf = wfs.get(&name).await?;
    assert_eq!(
        wf.data["spec"]["workflowTemplateRef"],
        json!({"name": cluster_name, "clusterScope": true})
    );
    assert_eq!(wf.data["spec"]["arguments"]["parameters"][0]["value"], "two");

    let spec = from("CronWorkflow", "nightly");
    let name = object_name(
        &argo_trigger(&client, &ns, &spec)?
            .execute(&firing(&spec, "three")?)
            .await?,
    );
    let wf = wfs.get(&name).await?;
    assert_eq!(wf.data["spec"]["entrypoint"], "main");
    assert_eq!(wf.data["spec"]["arguments"]["parameters"][0]["value"], "three");
    assert_eq!(wf.labels().get("team").map(String::as_str), Some("infra"));
    let owners = wf.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(
        owners.first().map(|o| o.uid.as_str()),
        cron.metadata.uid.as_deref()
    );

    // A template that does not exist: a 404 naming it.
    let spec = from("WorkflowTemplate", "missing");
    let err = argo_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "x")?)
        .await
        .err()
        .context("missing template")?;
    assert!(
        err.to_string().contains(&format!(
            "failed to read WorkflowTemplate {ns}/missing: 404 NotFound"
        )),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn argo_resubmit_suspend_resume_terminate_and_stop() -> Result<()> {
    let (client, ns) = setup("argo-ops").await?;
    let wfs = workflows(&client, &ns);
    create(
        &wfs,
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "run-1", "labels": {"app": "ci"}},
            "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "alpine"}}]}}),
    )
    .await?;
    let op = |operation: &str| {
        argo_spec(ArgoSpec {
            operation: Some(operation.into()),
            source: resource(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "run-1"}}),
            ),
            ..Default::default()
        })
    };
    let run = |operation: &'static str| {
        let spec = op(operation);
        let client = client.clone();
        let ns = ns.clone();
        async move {
            anyhow::Ok(
                argo_trigger(&client, &ns, &spec)?
                    .execute(&firing(&spec, "r")?)
                    .await?,
            )
        }
    };

    run("suspend").await?;
    assert_eq!(wfs.get("run-1").await?.data["spec"]["suspend"], true);
    run("resume").await?;
    assert!(wfs.get("run-1").await?.data["spec"].get("suspend").is_none());
    run("stop").await?;
    assert_eq!(wfs.get("run-1").await?.data["spec"]["shutdown"], "Stop");
    run("terminate").await?;
    assert_eq!(wfs.get("run-1").await?.data["spec"]["shutdown"], "Terminate");

    let name = object_name(&run("resubmit").await?);
    assert!(name.starts_with("run-1-"), "{name}");
    let wf = wfs.get(&name).await?;
    assert_eq!(wf.data["spec"]["entrypoint"], "main");
    assert!(wf.data["spec"].get("shutdown").is_none());
    assert_eq!(wf.labels().get("app").map(String::as_str), Some("ci"));
    assert_eq!(
        wf.labels()
            .get("workflows.argoproj.io/resubmitted-from-workflow")
            .map(String::as_str),
        Some("run-1")
    );

    // On a Workflow that does not exist: a 404 naming it.
    let spec = argo_spec(ArgoSpec {
        operation: Some("suspend".into()),
        source: resource(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "nope"}}),
        ),
        ..Default::default()
    });
    let err = argo_trigger(&client, &ns, &spec)?
        .execute(&firing(&spec, "r")?)
        .await
        .err()
        .context("missing workflow")?;
    assert!(
        err.to_string()
            .contains(&format!("failed to suspend Workflow {ns}/nope: 404 NotFound")),
        "{err}"
    );
    Ok(())
}

use kube::ResourceExt as _;

/// Benchmark (run by hand, prints numbers, asserts only that every submit succeeded):
/// `cargo test -p sluice-integration-tests --test kube_triggers -- --ignored --nocapture bench_`.
/// Named `bench_*`: `scripts/test` runs the ignored tests but skips every `bench_` one.
/// Workflows submitted per second by the argoWorkflow trigger with 1, 8 and 32 firings in flight,
/// and the same number of raw Workflow creates through the client as the API server's ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand"]
async fn bench_argo_submit_rate() -> Result<()> {
    const N: usize = 1000;
    let (client, ns) = setup("bench").await?;
    let spec = argo_spec(ArgoSpec {
        source: resource(workflow_manifest()),
        parameters: vec![param(
            "push",
            "body.repository.full_name",
            "spec.arguments.parameters.0.value",
        )],
        ..Default::default()
    });
    let trigger = Arc::new(argo_trigger(&client, &ns, &spec)?);
    let firing = Arc::new(firing(&spec, "bench")?);
    for concurrency in [1usize, 8, 32] {
        let started = std::time::Instant::now();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = Vec::with_capacity(N);
        for _ in 0..N {
            let permit = semaphore.clone().acquire_owned().await?;
            let (trigger, firing) = (trigger.clone(), firing.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                trigger.execute(&firing).await
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "argoWorkflow submit, concurrency {concurrency:>2}: {N} workflows in {secs:.2}s = {:.0}/s",
            N as f64 / secs
        );
    }
    let wfs = workflows(&client, &ns);
    let body: DynamicObject = serde_json::from_value(workflow_manifest())?;
    let started = std::time::Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::with_capacity(N);
    for _ in 0..N {
        let permit = semaphore.clone().acquire_owned().await?;
        let (wfs, body) = (wfs.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            wfs.create(&PostParams::default(), &body).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw Workflow create (API ceiling), concurrency 32: {N} in {secs:.2}s = {:.0}/s",
        N as f64 / secs
    );
    Ok(())
}
