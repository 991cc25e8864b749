//! End to end against the real Kubernetes API server: a webhook POST → `sluice run` → the
//! `argoWorkflow` trigger submits a Workflow whose parameters carry the posted value. And a sensor
//! that needs the API with no configuration refuses to start, saying so.

mod kube_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::json;
use sluice_integration_tests::{free_port, sluice_bin, SluiceProcess};

use kube_support::*;

fn write_manifests(dir: &std::path::Path, port: u16, namespace: &str) -> Result<()> {
    std::fs::write(
        dir.join("eventsource.yaml"),
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata:\n  name: github\nspec:\n  webhook:\n    push:\n      port: \"{port}\"\n      endpoint: /push\n      method: POST\n"
        ),
    )?;
    std::fs::write(
        dir.join("sensor.yaml"),
        format!(
            r#"apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata:
  name: ci
spec:
  dependencies:
    - name: push
      eventSourceName: github
      eventName: push
  triggers:
    - template:
        name: build
        argoWorkflow:
          operation: submit
          source:
            resource:
              apiVersion: argoproj.io/v1alpha1
              kind: Workflow
              metadata:
                generateName: build-
                namespace: {namespace}
              spec:
                entrypoint: main
                arguments:
                  parameters:
                    - name: repo
                      value: unset
                templates:
                  - name: main
                    container:
                      image: alpine
                      command: [echo, "{{{{workflow.parameters.repo}}}}"]
          parameters:
            - src:
                dependencyName: push
                dataKey: body.repository.full_name
              dest: spec.arguments.parameters.0.value
"#
        ),
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn webhook_to_sluice_run_submits_a_workflow_with_the_posted_value() -> Result<()> {
    let client = admin_client().await?;
    install_crds(&client).await?;
    let ns = namespace(&client, "e2e-argo").await?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    write_manifests(dir.path(), port, &ns)?;
    let dir_arg = dir.path().to_str().context("path")?;
    // KUBECONFIG (from the test environment) is the API access `sluice run` uses.
    let sluice = SluiceProcess::start(
        &[
            "run",
            dir_arg,
            "--log-format",
            "json",
            "--metrics-address",
            "127.0.0.1:0",
        ],
        dir.path().join("sluice.log"),
        &dir.path().join("secrets"),
    )?;
    sluice.wait_healthy(port).await?;

    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/push"))
        .header("X-GitHub-Event", "push")
        .json(&json!({"ref": "refs/heads/main", "after": "abc123",
            "repository": {"name": "sluice", "full_name": "acme/sluice"}}))
        .send()
        .await?;
    assert_eq!(response.status(), 200);

    let workflows: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &argo("Workflow", "workflows"));
    let wf = wait_for(Duration::from_secs(60), || {
        let workflows = workflows.clone();
        async move {
            let list = workflows
                .list(
                    &ListParams::default()
                        .labels("events.argoproj.io/sensor=ci,events.argoproj.io/trigger=build"),
                )
                .await?;
            Ok(list.items.into_iter().next())
        }
    })
    .await
    .with_context(|| format!("no Workflow was submitted; sluice log:\n{}", sluice.log_text()))?;
    assert_eq!(
        wf.data["spec"]["arguments"]["parameters"][0],
        json!({"name": "repo", "value": "acme/sluice"})
    );
    assert!(wf.metadata.name.unwrap_or_default().starts_with("build-"));
    assert_no_secret_in_namespace(&client, &ns).await?;
    Ok(())
}

#[tokio::test]
async fn a_sensor_that_needs_the_api_without_any_configuration_refuses_to_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_manifests(dir.path(), free_port()?, "default")?;
    let output = Command::new(sluice_bin()?)
        .args([
            "run",
            dir.path().to_str().context("path")?,
            "--metrics-address",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "sluice run started without Kubernetes access:\n{stderr}"
    );
    assert!(
        stderr.contains("the `argoWorkflow` trigger needs a Kubernetes API server; set KUBECONFIG"),
        "{stderr}"
    );
    Ok(())
}
