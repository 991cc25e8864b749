//! The Helm chart: its CRDs equal the generated `crds/*.yaml` (drift check), and `scripts/chart-check`
//! (helm lint, kubeconform -strict, kubectl apply --server-side on the test API server) passes; the
//! applied chart's controller Deployment, ServiceAccount, RBAC and CRDs are then read back from the
//! API server, and the RBAC is checked to grant what the controller needs in its namespace only.

mod kube_support;

use std::process::Command;

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use kube_support::{admin_client, assert_no_secret_in_namespace, setting};
use sluice_integration_tests::workspace_root;

#[test]
fn chart_crds_equal_the_generated_crds() -> Result<()> {
    let root = workspace_root();
    for (name, yaml) in sluice_crds::crd_files()? {
        let chart = std::fs::read_to_string(root.join("charts/sluice/crds").join(name))
            .with_context(|| format!("charts/sluice/crds/{name} is missing"))?;
        ensure!(
            chart == yaml,
            "charts/sluice/crds/{name} differs from the generated CRD: run `cargo run -p sluice-crds --bin crdgen -- --write` and copy crds/*.yaml into charts/sluice/crds/"
        );
    }
    Ok(())
}

/// Whether the chart's ServiceAccount in `ns` may `verb` `resource` (of `group`) in `in_ns`.
async fn allowed(
    client: &Client,
    ns: &str,
    verb: &str,
    group: &str,
    resource: &str,
    in_ns: &str,
) -> Result<bool> {
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{ns}:sluice-controller")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(in_ns.into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

#[tokio::test]
#[ignore = "needs helm, kubeconform, kubectl and kube-apiserver: scripts/test starts them and runs ignored tests"]
async fn chart_lints_validates_and_applies() -> Result<()> {
    for var in ["HELM_BIN", "KUBECONFORM_BIN", "KUBECTL_BIN", "KUBE_SCHEMAS_DIR"] {
        setting(var)?;
    }
    setting("KUBECONFIG")?;
    let client = admin_client().await?;
    let ns = format!(
        "chart-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos()
    );
    // The script blocks; run it off the async runtime.
    let script = workspace_root().join("scripts/chart-check");
    let script_ns = ns.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .env("CHART_CHECK_NAMESPACE", script_ns)
            .output()
    })
    .await??;
    ensure!(
        output.status.success(),
        "scripts/chart-check failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // What the chart installed, read back from the API server.
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("sluice-controller")
        .await
        .context("the controller Deployment")?;
    let pod = deployment.spec.template.spec.context("pod spec")?;
    assert_eq!(pod.service_account_name.as_deref(), Some("sluice-controller"));
    let args = pod.containers[0].args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("controller"));
    assert!(args.contains(&format!("--namespace={ns}")), "{args:?}");
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get("sluice-controller")
        .await
        .context("the ServiceAccount")?;
    let role = Api::<Role>::namespaced(client.clone(), &ns)
        .get("sluice-controller")
        .await
        .context("the Role")?;
    assert!(!role.rules.unwrap_or_default().is_empty());
    let binding = Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .get("sluice-controller")
        .await
        .context("the RoleBinding")?;
    let subject = &binding.subjects.context("subjects")?[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", "sluice-controller")
    );
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "eventbus.argoproj.io",
        "eventsources.argoproj.io",
        "sensors.argoproj.io",
    ] {
        let crd = crds.get(name).await.with_context(|| format!("CRD {name}"))?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "CRD {name} is not established");
    }

    // Least privilege, namespaced by default: what the controller needs, in its namespace only.
    for (verb, group, resource) in [
        ("watch", "argoproj.io", "eventsources"),
        ("patch", "argoproj.io", "sensors/status"),
        ("update", "argoproj.io", "eventbus/finalizers"),
        ("patch", "apps", "deployments"),
        ("patch", "apps", "statefulsets"),
        ("patch", "", "services"),
        ("create", "events.k8s.io", "events"),
        ("update", "coordination.k8s.io", "leases"),
        // A `jetstream` bus's generated credentials: read back, written once.
        ("get", "", "secrets"),
        ("create", "", "secrets"),
        // The leader-election RBAC of EventSource pods of kinds that must not run twice.
        ("create", "", "serviceaccounts"),
        ("patch", "rbac.authorization.k8s.io", "roles"),
        ("patch", "rbac.authorization.k8s.io", "rolebindings"),
    ] {
        assert!(
            allowed(&client, &ns, verb, group, resource, &ns).await?,
            "the chart's RBAC does not allow {verb} {group}/{resource}"
        );
    }
    // Secrets are read by name only: never listed or watched (no cache of every Secret).
    assert!(!allowed(&client, &ns, "list", "", "secrets", &ns).await?);
    assert!(!allowed(&client, &ns, "watch", "", "secrets", &ns).await?);
    assert!(!allowed(&client, &ns, "update", "", "secrets", &ns).await?);
    assert!(!allowed(&client, &ns, "delete", "", "secrets", &ns).await?);
    // Namespaced by default: no Secret of another namespace.
    assert!(!allowed(&client, &ns, "get", "", "secrets", "kube-system").await?);
    assert!(!allowed(&client, &ns, "bind", "rbac.authorization.k8s.io", "roles", &ns).await?);
    assert!(
        !allowed(
            &client,
            &ns,
            "escalate",
            "rbac.authorization.k8s.io",
            "roles",
            &ns
        )
        .await?
    );
    assert!(!allowed(&client, &ns, "delete", "apps", "deployments", &ns).await?);
    assert!(!allowed(&client, &ns, "list", "argoproj.io", "sensors", "default").await?);

    assert_no_secret_in_namespace(&client, &ns).await?;
    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await?;
    Ok(())
}
