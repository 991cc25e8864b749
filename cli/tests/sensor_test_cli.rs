//! `sluice sensor test` as a user runs it: verdicts with the values seen, AND across events, the
//! rendered http request with secrets masked, JSON output and the CI assertions' exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("the sluice binary cargo built for this test starts")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the test's temporary directory is writable");
    path.display().to_string()
}

const SENSOR: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: ci}
spec:
  dependencies:
    - name: push
      eventSourceName: github
      eventName: repo
      filters:
        data:
          - {path: body.ref, type: string, value: ["^refs/heads/main$"]}
        exprs:
          - expr: 'n >= 1 && msg =~ "deploy"'
            fields: [{name: n, path: body.commits.#}, {name: msg, path: body.head_commit.message}]
    - name: approval
      eventSourceName: chat
      eventName: approve
  triggers:
    - template:
        name: deploy
        conditions: push && approval
        http:
          url: https://deploy.example.test/run
          secureHeaders:
            - name: Authorization
              valueFrom: {secretKeyRef: {name: deploy-token, key: token}}
          payload:
            - src: {dependencyName: push, dataTemplate: "{{ .Input.body.head_commit.id | substr 0 7 }}"}
              dest: sha
            - src: {dependencyName: approval, dataKey: body.user}
              dest: approvedBy
    - template:
        name: audit
        conditions: push
        log: {}
"#;

fn cloudevent(source: &str, subject: &str, data: serde_json::Value) -> String {
    serde_json::json!({"specversion": "1.0", "id": format!("{source}-1"), "type": "webhook",
        "source": source, "subject": subject, "datacontenttype": "application/json", "data": data})
    .to_string()
}

#[test]
fn and_across_events_renders_the_request_and_asserts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sensor = write(dir.path(), "sensor.yaml", SENSOR);
    let push = write(
        dir.path(),
        "push.json",
        &cloudevent(
            "github",
            "repo",
            serde_json::json!({"body": {"ref": "refs/heads/main",
            "commits": [{"id": "a"}], "head_commit": {"id": "0123456789", "message": "deploy it"}}}),
        ),
    );
    // Raw data (no specversion) with --source/--event-name.
    let approval = write(dir.path(), "approval.json", r#"{"body": {"user": "ada"}}"#);

    // The push alone: audit fires, deploy waits for the approval.
    let out = sluice(&[
        "sensor",
        "test",
        &sensor,
        "--event",
        &push,
        "--expect-fire",
        "audit",
        "--expect-no-fire",
        "deploy",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("data[0] body.ref: pass (saw refs/heads/main)"),
        "{text}"
    );
    assert!(
        text.contains(r#"exprs[0] n >= 1 && msg =~ "deploy": pass (saw n=1 msg="deploy it")"#),
        "{text}"
    );

    // Then the approval: deploy fires with both events; the token is masked.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sensor", "test", &sensor, "--event", &push, "--event", &approval])
        .args([
            "--source",
            "chat",
            "--event-name",
            "approve",
            "-o",
            "json",
            "--expect-fire",
            "deploy",
        ])
        .output()?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let deploy = &report["events"][1]["triggers"][0];
    assert_eq!(deploy["fires"], true);
    let request = &deploy["action"]["request"];
    assert_eq!(request["url"], "https://deploy.example.test/run");
    assert_eq!(
        request["body"],
        serde_json::json!({"sha": "0123456", "approvedBy": "ada"})
    );
    assert_eq!(request["headers"]["authorization"], "<redacted>");
    assert_eq!(report["fired"], serde_json::json!(["audit", "deploy"]));

    // A wrong expectation exits 1.
    let out = sluice(&[
        "sensor",
        "test",
        &sensor,
        "--event",
        &push,
        "--expect-fire",
        "deploy",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED: expected trigger `deploy` to fire"));
    Ok(())
}

#[test]
fn unreadable_inputs_exit_2() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sensor = write(dir.path(), "sensor.yaml", SENSOR);
    let bad = write(dir.path(), "bad.json", "{not json");
    assert_eq!(
        sluice(&["sensor", "test", &sensor, "--event", &bad])
            .status
            .code(),
        Some(2)
    );
    let missing = dir.path().join("missing.yaml").display().to_string();
    assert_eq!(
        sluice(&["sensor", "test", &missing, "--event", &bad])
            .status
            .code(),
        Some(2)
    );
    Ok(())
}

const KUBE_SENSOR: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: kube}
spec:
  dependencies:
    - {name: push, eventSourceName: github, eventName: repo}
  triggers:
    - template:
        name: job
        k8s:
          operation: create
          source:
            resource:
              apiVersion: batch/v1
              kind: Job
              metadata: {generateName: build-}
              spec: {template: {spec: {containers: [{name: c, image: alpine, args: [placeholder]}]}}}
          parameters:
            - src: {dependencyName: push, dataKey: body.after}
              dest: spec.template.spec.containers.0.args.0
    - template:
        name: workflow
        argoWorkflow:
          operation: submit
          source:
            resource:
              apiVersion: argoproj.io/v1alpha1
              kind: Workflow
              metadata: {generateName: ci-}
              spec: {entrypoint: main, arguments: {parameters: [{name: sha}]}}
          parameters:
            - src: {dependencyName: push, dataKey: body.after}
              dest: spec.arguments.parameters.0.value
"#;

#[test]
fn kubernetes_triggers_render_the_object_they_would_create_without_a_cluster() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sensor = write(dir.path(), "sensor.yaml", KUBE_SENSOR);
    let push = write(
        dir.path(),
        "push.json",
        &cloudevent("github", "repo", serde_json::json!({"body": {"after": "c0ffee"}})),
    );
    // No kubeconfig anywhere: the dry run must not need one.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sensor", "test", &sensor, "--event", &push, "-o", "json"])
        .env("KUBECONFIG", dir.path().join("absent"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let triggers = &report["events"][0]["triggers"];

    let job = &triggers[0]["action"];
    assert_eq!(job["kind"], "k8s");
    assert_eq!(job["operation"], "create");
    assert_eq!(job["object"]["kind"], "Job");
    assert_eq!(
        job["object"]["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "c0ffee"
    );
    assert_eq!(
        job["object"]["metadata"]["labels"]["events.argoproj.io/sensor"],
        "kube"
    );
    assert_eq!(
        job["object"]["metadata"]["labels"]["events.argoproj.io/trigger"],
        "job"
    );

    let wf = &triggers[1]["action"];
    assert_eq!(wf["kind"], "argoWorkflow");
    assert_eq!(wf["operation"], "submit");
    assert_eq!(
        wf["workflow"]["spec"]["arguments"]["parameters"][0],
        serde_json::json!({"name": "sha", "value": "c0ffee"})
    );
    assert_eq!(report["fired"], serde_json::json!(["job", "workflow"]));
    Ok(())
}
