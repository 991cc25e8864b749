//! The chart on a real node (`scripts/services.sh start node helm`): `helm install` of
//! charts/sluice with `SLUICE_IMAGE`, then the CRs a user applies, running as pods.
//!
//! - A `jetstream` EventBus with 3 replicas (auth, routes, a stream on 3 servers).
//! - An EventSource with a webhook and a github event; github has `webhookSecret` and `apiToken`,
//!   and registers its hook with a fake GitHub API that this test serves inside the node's network
//!   namespace, where the token is checked.
//! - A Sensor with 2 replicas: an http trigger with `basicAuth` and `secureHeaders` from a Secret,
//!   to a sink this test serves at `NODE_HOST_IP`, and an argoWorkflow trigger (the Workflow CRD is
//!   installed; no Argo controller runs — the test counts the Workflows the sensor submits).
//!
//! Then: 1,000 webhook events arrive at the sink exactly once each, with the credentials, and
//! 1,000 Workflows exist; signed github deliveries arrive, a forged one is refused. Deleting a
//! sensor pod, the eventsource pod and a NATS pod while 600 more events flow loses none, and every
//! repeat at the sink carries the same idempotency key; no Workflow is submitted twice. A change of
//! the EventSource's spec rolls its pod; a restart of the controller changes no object; removing
//! the CRs and `helm uninstall` leaves nothing in the namespace.
//!
//! It prints the time from `kubectl apply` to Ready per CR and the idle memory of each pod, and
//! saves them to `<target dir>/bench/node-e2e.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};
use sluice_eventsource::testing::try_setting;
use sluice_integration_tests::{secrets, wait_for_every, NetnsRuntime, Received, Sink};

const NS: &str = "sluice-e2e";
const GITHUB_TOKEN: &str = "e2e-github-api-token";
const GITHUB_SECRET: &str = "e2e-github-webhook-secret";
const SINK_USER: &str = "sensor";
const SINK_PASSWORD: &str = "e2e-sink-password";
const SINK_TOKEN: &str = "e2e-sink-token";
const WEBHOOK_PORT: u16 = 12000;
const GITHUB_PORT: u16 = 13000;
const FIRST: usize = 1000;
const SECOND: usize = 600;

/// The node's settings from `scripts/services.sh start node helm`, and kubectl/helm.
struct Node {
    kubeconfig: String,
    kubectl: String,
    helm: String,
    netns: String,
    host_ip: String,
    image: String,
    nats_version: String,
}

fn setting(key: &str) -> Result<String> {
    Ok(try_setting(key)?)
}

impl Node {
    fn from_env() -> Result<Self> {
        let nats_image = setting("NATS_IMAGE")?;
        Ok(Self {
            kubeconfig: setting("KUBECONFIG")?,
            kubectl: setting("KUBECTL_BIN")?,
            helm: setting("HELM_BIN")?,
            netns: setting("NODE_NETNS")?,
            host_ip: setting("NODE_HOST_IP")?,
            image: setting("SLUICE_IMAGE")?,
            nats_version: nats_image.rsplit(':').next().unwrap_or_default().to_owned(),
        })
    }

    fn run(&self, program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
        let mut child = Command::new(program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {program}"))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{program} {}: {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.run(&self.kubectl, args, None)
    }

    fn apply(&self, manifest: &str) -> Result<String> {
        self.run(&self.kubectl, &["apply", "-n", NS, "-f", "-"], Some(manifest))
    }

    fn helm(&self, args: &[&str]) -> Result<String> {
        self.run(&self.helm, args, None)
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.kubectl(&all)?;
        serde_json::from_str(&text).with_context(|| format!("kubectl {}: not JSON", args.join(" ")))
    }

    /// The items of `kubectl get <what> -n NS -l <selector>`.
    fn items(&self, what: &str, selector: &str) -> Result<Vec<Value>> {
        let mut args = vec!["get", what, "-n", NS];
        if !selector.is_empty() {
            args.extend(["-l", selector]);
        }
        Ok(self.json(&args)?["items"].as_array().cloned().unwrap_or_default())
    }

    /// Registers every Secret value of the namespace (the test's and the controller's generated
    /// bus credentials), then scans every pod's log, the namespace's Events and the CRs' statuses
    /// for any registered secret; `Err` names the output and the secret's label.
    fn assert_no_secret_leaked(&self) -> Result<()> {
        for secret in self.items("secrets", "")? {
            let name = secret["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            for (key, value) in secret["data"].as_object().cloned().unwrap_or_default() {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value.as_str().unwrap_or_default())
                    .unwrap_or_default();
                secrets::register_text(
                    &format!("Secret {NS}/{name} key {key}"),
                    &key,
                    &String::from_utf8_lossy(&decoded),
                );
            }
        }
        for pod in self.pod_names("")? {
            let logs = self.kubectl(&["logs", "-n", NS, &pod, "--all-containers"])?;
            secrets::check(&format!("the log of pod {NS}/{pod}"), &logs).map_err(anyhow::Error::msg)?;
        }
        let mut text = String::new();
        for event in self.items("events", "")? {
            text.push_str(&format!("{} {}\n", event["reason"], event["message"]));
        }
        for object in self.items("eventsources,sensors,eventbus", "")? {
            text.push_str(&format!("{} {}\n", object["metadata"]["name"], object["status"]));
        }
        secrets::check(&format!("the Events and CR statuses of namespace {NS}"), &text)
            .map_err(anyhow::Error::msg)
    }

    fn pod_names(&self, selector: &str) -> Result<Vec<String>> {
        Ok(self
            .items("pods", selector)?
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// Ready pods matching `selector` that are not being deleted.
    fn ready_pods(&self, selector: &str) -> Result<Vec<String>> {
        Ok(self
            .items("pods", selector)?
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// Removes the CRs while the controller runs (an EventBus carries its finalizer), the release
    /// and the namespace.
    fn remove_all(&self) {
        let _ = self.kubectl(&[
            "delete",
            "sensors,eventsources",
            "--all",
            "-n",
            NS,
            "--timeout=60s",
        ]);
        let _ = self.kubectl(&["delete", "eventbus", "--all", "-n", NS, "--timeout=60s"]);
        let _ = self.helm(&["uninstall", "sluice", "-n", NS, "--wait", "--timeout", "120s"]);
        let _ = self.kubectl(&["delete", "namespace", NS, "--ignore-not-found", "--timeout=180s"]);
    }
}

/// Polls `check` once a second (each poll runs kubectl) until it gives `Some`, or fails after
/// `within` naming `what` and the last error seen.
async fn wait_for<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    wait_for_every(within, Duration::from_secs(1), || std::future::ready(check()))
        .await
        .with_context(|| format!("waiting for {what}"))
}

/// What the fake GitHub API saw: every request's method, path and `Authorization`, and its hooks.
#[derive(Default)]
struct GithubApi {
    requests: Vec<(String, String, String)>,
    hooks: Vec<Value>,
}

type SharedApi = Arc<Mutex<GithubApi>>;

fn note(api: &SharedApi, method: &str, path: String, headers: &HeaderMap) -> bool {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let ok = auth == format!("Bearer {GITHUB_TOKEN}") || auth == format!("token {GITHUB_TOKEN}");
    if let Ok(mut api) = api.lock() {
        api.requests.push((method.to_owned(), path, auth));
    }
    ok
}

/// The repository hooks endpoints the github source uses, answering 401 to a wrong token as
/// GitHub does.
async fn serve_github_api(addr: String) -> Result<(u16, SharedApi)> {
    let api: SharedApi = Arc::default();
    let app = axum::Router::new()
        .route(
            "/repos/{owner}/{repo}/hooks",
            get(
                |State(api): State<SharedApi>, Path((o, r)): Path<(String, String)>, h: HeaderMap| async move {
                    if !note(&api, "GET", format!("/repos/{o}/{r}/hooks"), &h) {
                        return (StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"})));
                    }
                    let hooks = api.lock().map(|a| a.hooks.clone()).unwrap_or_default();
                    (StatusCode::OK, Json(Value::Array(hooks)))
                },
            )
            .post(
                |State(api): State<SharedApi>,
                 Path((o, r)): Path<(String, String)>,
                 h: HeaderMap,
                 Json(mut hook): Json<Value>| async move {
                    if !note(&api, "POST", format!("/repos/{o}/{r}/hooks"), &h) {
                        return (StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"})));
                    }
                    let Ok(mut api) = api.lock() else {
                        return (StatusCode::INTERNAL_SERVER_ERROR, Json(Value::Null));
                    };
                    hook["id"] = json!(api.hooks.len() + 1);
                    api.hooks.push(hook.clone());
                    (StatusCode::CREATED, Json(hook))
                },
            ),
        )
        .route(
            "/repos/{owner}/{repo}/hooks/{id}",
            axum::routing::patch(
                |State(api): State<SharedApi>,
                 Path((o, r, id)): Path<(String, String, String)>,
                 h: HeaderMap,
                 Json(update): Json<Value>| async move {
                    if !note(&api, "PATCH", format!("/repos/{o}/{r}/hooks/{id}"), &h) {
                        return (StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"})));
                    }
                    let Ok(mut api) = api.lock() else {
                        return (StatusCode::INTERNAL_SERVER_ERROR, Json(Value::Null));
                    };
                    let found = api.hooks.iter_mut().find(|hk| hk["id"].as_u64() == id.parse().ok());
                    match found {
                        Some(hook) => {
                            let id = hook["id"].clone();
                            *hook = update;
                            hook["id"] = id;
                            (StatusCode::OK, Json(hook.clone()))
                        }
                        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))),
                    }
                },
            )
            .delete(
                |State(api): State<SharedApi>, Path((o, r, id)): Path<(String, String, String)>, h: HeaderMap| async move {
                    if !note(&api, "DELETE", format!("/repos/{o}/{r}/hooks/{id}"), &h) {
                        return StatusCode::UNAUTHORIZED;
                    }
                    if let Ok(mut api) = api.lock() {
                        api.hooks.retain(|hk| hk["id"].as_u64() != id.parse().ok());
                    }
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind(format!("{addr}:0")).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((port, api))
}

fn sign(body: &[u8]) -> Result<String> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes())?;
    mac.update(body);
    Ok(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

/// Posts webhook events `seqs` to `url` from `connections` tasks, each waiting `pace` between
/// events (so a batch can be spread over time), and each event until the EventSource
/// answers 200 (the bus stored it), as a sender with retries does: the same `Idempotency-Key` on
/// every try, so a retry of an event that was stored after all is the same event. Returns how many
/// tries were answered with something else (or not at all).
async fn post_events(
    url: String,
    seqs: Vec<usize>,
    connections: usize,
    pace: Duration,
    per_event: Duration,
) -> Result<usize> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?;
    let queue = Arc::new(Mutex::new(seqs));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, queue, url) = (client.clone(), queue.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed_tries = 0usize;
            loop {
                let Some(seq) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return Ok::<usize, anyhow::Error>(failed_tries);
                };
                tokio::time::sleep(pace).await;
                let deadline = Instant::now() + per_event;
                loop {
                    let res = client
                        .post(&url)
                        .header("Idempotency-Key", format!("e2e-{seq}"))
                        .json(&json!({"seq": seq.to_string(), "kind": "deploy"}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == reqwest::StatusCode::OK => break,
                        _ => failed_tries += 1,
                    }
                    if Instant::now() > deadline {
                        bail!("event {seq} was not accepted within {per_event:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await??;
    }
    Ok(failed)
}

/// The sink's webhook requests: every one must carry the credentials; returns each `seq` with the
/// idempotency keys it arrived with, and the number of requests.
fn hook_deliveries(received: &[Received]) -> Result<(BTreeMap<String, BTreeSet<String>>, usize)> {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SINK_USER}:{SINK_PASSWORD}"))
    );
    let mut by_seq: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut count = 0;
    for r in received.iter().filter(|r| r.path == "/hook") {
        count += 1;
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        if header("authorization") != basic || header("x-sink-token") != SINK_TOKEN {
            bail!("a request arrived without the credentials: {:?}", r.headers);
        }
        let seq = r.body["seq"]
            .as_str()
            .context("a request without seq")?
            .to_owned();
        let key = r.idempotency_key()?;
        by_seq.entry(seq).or_default().insert(key);
    }
    Ok((by_seq, count))
}

/// The seq argument of every Workflow the sensor submitted.
fn workflow_seqs(node: &Node) -> Result<Vec<String>> {
    Ok(node
        .items("workflows", "events.argoproj.io/sensor=e2e")?
        .iter()
        .map(|w| {
            w["spec"]["arguments"]["parameters"][0]["value"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect())
}

const WORKFLOW_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: workflows.argoproj.io}
spec:
  group: argoproj.io
  scope: Namespaced
  names: {kind: Workflow, listKind: WorkflowList, plural: workflows, singular: workflow, shortNames: [wf]}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

fn manifests(node: &Node, sink_port: u16, github_port: u16) -> (String, String, String, String) {
    let host = &node.host_ip;
    let secrets = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: github-access}}
stringData: {{token: {GITHUB_TOKEN}, secret: {GITHUB_SECRET}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sink-auth}}
stringData: {{username: {SINK_USER}, password: {SINK_PASSWORD}, token: {SINK_TOKEN}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: e2e-sensor}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: e2e-workflows}}
rules:
  - apiGroups: [argoproj.io]
    resources: [workflows]
    verbs: [create, get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: e2e-workflows}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: e2e-workflows}}
subjects: [{{kind: ServiceAccount, name: e2e-sensor}}]
"#
    );
    let bus = format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata: {{name: default}}
spec:
  jetstream:
    version: "{}"
    replicas: 3
"#,
        node.nats_version
    );
    let eventsource = format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {{name: e2e}}
spec:
  webhook:
    example: {{port: "{WEBHOOK_PORT}", endpoint: /example, method: POST}}
  github:
    push:
      webhook:
        url: http://e2e-eventsource.{NS}.svc:{GITHUB_PORT}
        port: "{GITHUB_PORT}"
        endpoint: /push
        method: POST
      repositories: [{{owner: sluice-test, names: [pipes]}}]
      events: [push]
      apiToken: {{name: github-access, key: token}}
      webhookSecret: {{name: github-access, key: secret}}
      githubBaseURL: http://{host}:{github_port}/
      githubUploadURL: http://{host}:{github_port}/
"#
    );
    let sensor = format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: e2e}}
spec:
  replicas: 2
  template:
    serviceAccountName: e2e-sensor
  dependencies:
    - {{name: hook, eventSourceName: e2e, eventName: example}}
    - {{name: push, eventSourceName: e2e, eventName: push}}
  triggers:
    - template:
        name: to-sink
        conditions: hook
        http:
          url: http://{host}:{sink_port}/hook
          method: POST
          payload:
            - src: {{dependencyName: hook, dataKey: body.seq}}
              dest: seq
          basicAuth:
            username: {{name: sink-auth, key: username}}
            password: {{name: sink-auth, key: password}}
          secureHeaders:
            - name: X-Sink-Token
              valueFrom: {{secretKeyRef: {{name: sink-auth, key: token}}}}
      retryStrategy: {{steps: 10, duration: 1s}}
    - template:
        name: push-to-sink
        conditions: push
        http:
          url: http://{host}:{sink_port}/push
          method: POST
          payload:
            - src: {{dependencyName: push, dataKey: body.after}}
              dest: after
      retryStrategy: {{steps: 10, duration: 1s}}
    - template:
        name: workflow
        conditions: hook
        argoWorkflow:
          operation: submit
          source:
            resource:
              apiVersion: argoproj.io/v1alpha1
              kind: Workflow
              metadata: {{generateName: e2e-}}
              spec:
                entrypoint: main
                arguments: {{parameters: [{{name: seq, value: unset}}]}}
                templates: [{{name: main, container: {{image: busybox, command: [echo]}}}}]
          parameters:
            - src: {{dependencyName: hook, dataKey: body.seq}}
              dest: spec.arguments.parameters.0.value
      retryStrategy: {{steps: 10, duration: 1s}}
"#
    );
    (secrets, bus, eventsource, sensor)
}

/// The `metadata.resourceVersion` of every object the controller made, by kind/name.
fn generated_objects(node: &Node) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let kinds = "deployments,statefulsets,services,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies";
    for item in node.items(kinds, "app.kubernetes.io/managed-by=sluice-controller")? {
        let key = format!(
            "{}/{}",
            item["kind"].as_str().unwrap_or_default(),
            item["metadata"]["name"].as_str().unwrap_or_default()
        );
        out.insert(
            key,
            item["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    Ok(out)
}

/// Seconds from `started` until `ready` holds.
async fn time_to(
    what: &str,
    started: Instant,
    within: Duration,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<f64> {
    wait_for(what, within, || Ok(ready()?.then_some(()))).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Whether `what` (`kind/name`) has `want` ready, updated replicas (false while it does not exist).
fn ready_replicas(node: &Node, what: &str, want: i64) -> Result<bool> {
    let Ok(o) = node.json(&["get", what, "-n", NS]) else {
        return Ok(false);
    };
    let ready = o["status"]["readyReplicas"].as_i64().unwrap_or(0);
    let updated = o["status"]["updatedReplicas"].as_i64().unwrap_or(0);
    Ok(ready == want && updated == want && o["status"]["replicas"].as_i64() == Some(want))
}

/// [`ready_replicas`] of the workload of CR `cr` (`kind/name`); while it is not ready, a False
/// condition of the CR (a spec the controller refused) is the error, so a timeout names it.
fn cr_ready(node: &Node, cr: &str, workload: &str, want: i64) -> Result<bool> {
    if ready_replicas(node, workload, want)? {
        return Ok(true);
    }
    let status = node.json(&["get", cr, "-n", NS])?;
    let refused: Vec<String> = status["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "False")
        .map(|c| format!("{}: {}", c["type"], c["message"]))
        .collect();
    if !refused.is_empty() {
        bail!("{cr} is not deployed: {refused:?}");
    }
    Ok(false)
}

/// The memory of each pod in the namespace, from the kubelet's summary: (RSS — anonymous memory —,
/// working set — RSS plus the active file-backed pages).
fn pod_memory(node: &Node) -> Result<BTreeMap<String, (u64, u64)>> {
    let nodes = node.json(&["get", "nodes"])?;
    let name = nodes["items"][0]["metadata"]["name"]
        .as_str()
        .context("no node")?
        .to_owned();
    let text = node.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{name}/proxy/stats/summary"),
    ])?;
    let summary: Value = serde_json::from_str(&text)?;
    let mut out = BTreeMap::new();
    for pod in summary["pods"].as_array().cloned().unwrap_or_default() {
        if pod["podRef"]["namespace"] != NS {
            continue;
        }
        let (mut rss, mut working_set) = (0, 0);
        for c in pod["containers"].as_array().cloned().unwrap_or_default() {
            rss += c["memory"]["rssBytes"].as_u64().unwrap_or(0);
            working_set += c["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
        }
        out.insert(
            pod["podRef"]["name"].as_str().unwrap_or_default().to_owned(),
            (rss, working_set),
        );
    }
    Ok(out)
}

fn save_numbers(numbers: &Value) -> Result<PathBuf> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| sluice_integration_tests::workspace_root().join("target"));
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("node-e2e.json");
    std::fs::write(&path, serde_json::to_string_pretty(numbers)?)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test node and helm (root; SLUICE_TEST_NODE=0 leaves it out): scripts/test starts them and runs ignored tests"]
async fn the_chart_runs_a_webhook_to_workflow_pipeline_as_pods_and_loses_nothing() -> Result<()> {
    let node = Node::from_env()?;
    // A namespace left by an earlier run goes first.
    node.remove_all();
    let result = run(&node).await;
    if result.is_err() {
        // What the pods said, for the failure's reader.
        for pod in node.pod_names("").unwrap_or_default() {
            if let Ok(logs) = node.kubectl(&["logs", "-n", NS, &pod, "--all-containers", "--tail=30"]) {
                eprintln!("---- logs of {pod}\n{logs}");
            }
        }
        let _ = node
            .kubectl(&["get", "all,eventbus,eventsources,sensors", "-n", NS, "-o", "wide"])
            .map(|s| eprintln!("{s}"));
        // SLUICE_E2E_KEEP=1 keeps the namespace to look at.
        if std::env::var("SLUICE_E2E_KEEP").as_deref() != Ok("1") {
            node.remove_all();
        }
    }
    result
}

async fn run(node: &Node) -> Result<()> {
    let netns = NetnsRuntime::enter(&node.netns)?;
    let host = node.host_ip.clone();
    let sink = netns.spawn({
        let host = host.clone();
        async move { Sink::start_on(&format!("{host}:0")).await }
    });
    let sink = sink.await??;
    let (github_port, github) = netns.spawn(serve_github_api(host.clone())).await??;

    node.run(&node.kubectl, &["apply", "-f", "-"], Some(WORKFLOW_CRD))?;
    node.kubectl(&["create", "namespace", NS])?;
    let (repository, tag) = node.image.rsplit_once(':').context("SLUICE_IMAGE has no tag")?;
    let chart = sluice_integration_tests::workspace_root().join("charts/sluice");
    let chart = chart.to_string_lossy().into_owned();
    node.helm(&[
        "install",
        "sluice",
        &chart,
        "-n",
        NS,
        "--wait",
        "--timeout",
        "180s",
        "--set",
        &format!("image.repository={repository}"),
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        "image.pullPolicy=Never",
        "--set",
        &format!("nats.version={}", node.nats_version),
    ])?;

    for (label, value) in [
        ("github api token", GITHUB_TOKEN),
        ("github webhook secret", GITHUB_SECRET),
        ("sink password", SINK_PASSWORD),
        ("sink token", SINK_TOKEN),
    ] {
        secrets::register(label, value);
    }
    let (secret_manifests, bus, eventsource, sensor) = manifests(node, sink.port, github_port);
    node.apply(&secret_manifests)?;
    let mut numbers = json!({});

    // ---- the CRs come up, each timed from its apply to Ready
    let started = Instant::now();
    node.apply(&bus)?;
    let t = time_to(
        "the EventBus's 3 NATS pods",
        started,
        Duration::from_secs(240),
        || cr_ready(node, "eventbus/default", "statefulset/eventbus-default-js", 3),
    )
    .await?;
    numbers["apply_to_ready_seconds"]["EventBus (jetstream, 3 replicas)"] = json!(t);
    wait_for("the EventBus status", Duration::from_secs(60), || {
        let b = node.json(&["get", "eventbus/default", "-n", NS])?;
        Ok(b["status"]["config"]["jetstream"]["url"]
            .is_string()
            .then_some(()))
    })
    .await?;

    let started = Instant::now();
    node.apply(&eventsource)?;
    let t = time_to("the EventSource's pod", started, Duration::from_secs(180), || {
        cr_ready(node, "eventsource/e2e", "deployment/e2e-eventsource", 1)
    })
    .await?;
    numbers["apply_to_ready_seconds"]["EventSource (webhook + github)"] = json!(t);

    let started = Instant::now();
    node.apply(&sensor)?;
    let t = time_to("the Sensor's 2 pods", started, Duration::from_secs(180), || {
        cr_ready(node, "sensor/e2e", "deployment/e2e-sensor", 2)
    })
    .await?;
    numbers["apply_to_ready_seconds"]["Sensor (2 replicas)"] = json!(t);

    // ---- the github hook was registered with the token, pointing at the EventSource's Service
    let hook = wait_for("the github hook registration", Duration::from_secs(60), || {
        let api = github.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        Ok(api.hooks.first().cloned())
    })
    .await?;
    assert_eq!(
        hook["config"]["url"],
        format!("http://e2e-eventsource.{NS}.svc:{GITHUB_PORT}/push")
    );
    assert_eq!(
        hook["config"]["secret"], GITHUB_SECRET,
        "the hook carries the webhook secret"
    );
    assert_eq!(hook["events"], json!(["push"]));
    {
        let api = github.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        assert!(
            api.requests
                .iter()
                .all(|(_, _, auth)| auth == &format!("Bearer {GITHUB_TOKEN}")),
            "every API request carries the token: {:?}",
            api.requests
        );
    }

    // Idle memory, before any load.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let memory = pod_memory(node)?;
    let mib = |bytes: u64| (bytes as f64 / 1048576.0 * 10.0).round() / 10.0;
    numbers["idle_memory_mib"] = json!(memory
        .iter()
        .map(|(pod, (rss, ws))| (pod.clone(), json!({"rss": mib(*rss), "working_set": mib(*ws)})))
        .collect::<serde_json::Map<_, _>>());

    let service = node.json(&["get", "service/e2e-eventsource", "-n", NS])?;
    let ip = service["spec"]["clusterIP"]
        .as_str()
        .context("the EventSource Service has no cluster IP")?
        .to_owned();
    let ports: Vec<i64> = service["spec"]["ports"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["port"].as_i64()).collect())
        .unwrap_or_default();
    assert!(
        ports.contains(&i64::from(WEBHOOK_PORT)) && ports.contains(&i64::from(GITHUB_PORT)),
        "the Service exposes both event ports: {ports:?}"
    );
    let webhook_url = format!("http://{ip}:{WEBHOOK_PORT}/example");

    // ---- github: signed deliveries arrive; a forged one is refused
    let github_url = format!("http://{ip}:{GITHUB_PORT}/push");
    let statuses = netns
        .spawn(async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()?;
            let mut statuses = Vec::new();
            for i in 0..6 {
                let body =
                    serde_json::to_vec(&json!({"ref": "refs/heads/main", "after": format!("sha-{i}"),
                    "repository": {"full_name": "sluice-test/pipes"}}))?;
                let signature = if i == 5 {
                    "sha256=00".to_owned()
                } else {
                    sign(&body)?
                };
                let mut tries = 0;
                loop {
                    let res = client
                        .post(&github_url)
                        .header("Content-Type", "application/json")
                        .header("X-GitHub-Event", "push")
                        .header("X-GitHub-Delivery", format!("e2e-delivery-{i}"))
                        .header("X-Hub-Signature-256", &signature)
                        .body(body.clone())
                        .send()
                        .await;
                    tries += 1;
                    match res {
                        Ok(r) if r.status().is_success() || r.status().is_client_error() || tries > 30 => {
                            statuses.push(r.status().as_u16());
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
            Ok::<_, anyhow::Error>(statuses)
        })
        .await??;
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 401], "github deliveries");

    // ---- 1,000 events, exactly once each, with the credentials; 1,000 Workflows
    let started = Instant::now();
    let failed = netns
        .spawn(post_events(
            webhook_url.clone(),
            (0..FIRST).collect(),
            20,
            Duration::ZERO,
            Duration::from_secs(60),
        ))
        .await??;
    let accepted_in = started.elapsed().as_secs_f64();
    wait_for("1,000 events at the sink", Duration::from_secs(180), || {
        Ok((hook_deliveries(&sink.received())?.0.len() >= FIRST).then_some(()))
    })
    .await?;
    let delivered_in = started.elapsed().as_secs_f64();
    let (by_seq, requests) = hook_deliveries(&sink.received())?;
    let want: BTreeSet<String> = (0..FIRST).map(|s| s.to_string()).collect();
    assert_eq!(
        by_seq.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "every event arrived"
    );
    assert_eq!(
        requests, FIRST,
        "each event arrived once (no repeats without a fault)"
    );
    assert!(by_seq.values().all(|keys| keys.len() == 1));
    let distinct_keys: BTreeSet<&String> = by_seq.values().flatten().collect();
    assert_eq!(distinct_keys.len(), FIRST, "one idempotency key per event");
    wait_for("1,000 Workflows", Duration::from_secs(180), || {
        Ok((workflow_seqs(node)?.len() >= FIRST).then_some(()))
    })
    .await?;
    let seqs = workflow_seqs(node)?;
    assert_eq!(seqs.len(), FIRST, "one Workflow per event");
    assert_eq!(seqs.iter().cloned().collect::<BTreeSet<_>>(), want);
    let workflows_in = started.elapsed().as_secs_f64();
    numbers["first_1000"] = json!({
        "connections": 20,
        "accepted_per_second": FIRST as f64 / accepted_in,
        "delivered_to_sink_per_second": FIRST as f64 / delivered_in,
        "workflows_per_second": FIRST as f64 / workflows_in,
        "retried_posts": failed,
    });
    let pushes: BTreeSet<String> = sink
        .received()
        .iter()
        .filter(|r| r.path == "/push")
        .filter_map(|r| r.body["after"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        pushes,
        (0..5).map(|i| format!("sha-{i}")).collect(),
        "signed github pushes arrived"
    );

    // ---- pods deleted mid-stream: nothing lost, repeats carry the same key, no second Workflow
    // About 20 events/s for 30 s, so every deletion below lands while events flow.
    let load = netns.spawn(post_events(
        webhook_url.clone(),
        (FIRST..FIRST + SECOND).collect(),
        10,
        Duration::from_millis(500),
        Duration::from_secs(120),
    ));
    let before = sink.received().len();
    wait_for(
        "the second batch to start flowing",
        Duration::from_secs(60),
        || Ok((sink.received().len() > before + 20).then_some(())),
    )
    .await?;
    let sensor_pod = node
        .pod_names("sensor-name=e2e")?
        .into_iter()
        .next()
        .context("no sensor pod")?;
    let eventsource_pod = node
        .pod_names("eventsource-name=e2e")?
        .into_iter()
        .next()
        .context("no eventsource pod")?;
    let nats_pod = "eventbus-default-js-1".to_owned();
    for pod in [&sensor_pod, &eventsource_pod, &nats_pod] {
        node.kubectl(&["delete", "pod", pod, "-n", NS, "--wait=false"])?;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let retried = load.await??;
    let total = FIRST + SECOND;
    wait_for(
        "every event after the deletions",
        Duration::from_secs(240),
        || Ok((hook_deliveries(&sink.received())?.0.len() >= total).then_some(())),
    )
    .await?;
    let (by_seq, requests) = hook_deliveries(&sink.received())?;
    let want: BTreeSet<String> = (0..total).map(|s| s.to_string()).collect();
    assert_eq!(
        by_seq.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "nothing was lost"
    );
    let changed: Vec<_> = by_seq.iter().filter(|(_, keys)| keys.len() != 1).collect();
    assert!(
        changed.is_empty(),
        "a repeat came with another idempotency key: {changed:?}"
    );
    wait_for(
        "a Workflow per event after the deletions",
        Duration::from_secs(180),
        || Ok((workflow_seqs(node)?.len() >= total).then_some(())),
    )
    .await?;
    // Settle: a repeat still in flight would show up as a second Workflow now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seqs = workflow_seqs(node)?;
    assert_eq!(seqs.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(seqs.len(), total, "no event made a second Workflow");
    numbers["pods_deleted_mid_stream"] = json!({
        "deleted": [sensor_pod, eventsource_pod, nats_pod],
        "events": SECOND,
        "sink_requests": requests - FIRST,
        "repeats_same_key": requests - total,
        "retried_posts": retried,
    });
    for (what, want) in [
        ("deployment/e2e-sensor", 2),
        ("deployment/e2e-eventsource", 1),
        ("statefulset/eventbus-default-js", 3),
    ] {
        wait_for(what, Duration::from_secs(120), || {
            Ok(ready_replicas(node, what, want)?.then_some(()))
        })
        .await?;
    }

    // ---- a change of the EventSource's spec rolls its pod
    let old_pods = node.pod_names("eventsource-name=e2e")?;
    node.kubectl(&[
        "patch",
        "eventsource",
        "e2e",
        "-n",
        NS,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"template":{"metadata":{"labels":{"rev":"2"}}}}}"#,
    ])?;
    let new_pod = wait_for("a new EventSource pod", Duration::from_secs(120), || {
        let ready = node.ready_pods("eventsource-name=e2e,rev=2")?;
        let all = node.pod_names("eventsource-name=e2e")?;
        Ok((ready.len() == 1 && all.iter().all(|p| !old_pods.contains(p))).then(|| ready[0].clone()))
    })
    .await?;
    assert!(!old_pods.contains(&new_pod), "the pod was replaced");
    let accepted = netns
        .spawn(post_events(
            webhook_url.clone(),
            vec![total],
            1,
            Duration::ZERO,
            Duration::from_secs(60),
        ))
        .await?;
    accepted?;
    wait_for("the event through the new pod", Duration::from_secs(60), || {
        Ok(hook_deliveries(&sink.received())?
            .0
            .contains_key(&total.to_string())
            .then_some(()))
    })
    .await?;

    // ---- a restart of the controller changes nothing
    let controller_selector = "app.kubernetes.io/component=controller";
    tokio::time::sleep(Duration::from_secs(3)).await;
    let objects = generated_objects(node)?;
    let pods: BTreeSet<String> = node
        .pod_names("app.kubernetes.io/managed-by=sluice-controller")?
        .into_iter()
        .collect();
    let old_controller = node.pod_names(controller_selector)?;
    node.kubectl(&[
        "delete",
        "pod",
        "-n",
        NS,
        "-l",
        controller_selector,
        "--wait=true",
    ])?;
    wait_for("a new controller", Duration::from_secs(120), || {
        let ready = node.ready_pods(controller_selector)?;
        Ok((ready.len() == 1 && !old_controller.contains(&ready[0])).then_some(()))
    })
    .await?;
    // Its first reconciles of the three CRs happen right after it takes the lease.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        generated_objects(node)?,
        objects,
        "the restarted controller changed objects"
    );
    let after: BTreeSet<String> = node
        .pod_names("app.kubernetes.io/managed-by=sluice-controller")?
        .into_iter()
        .collect();
    assert_eq!(after, pods, "the restarted controller replaced pods");

    // ---- no secret in any pod's log, Event or status, after all of the above
    node.assert_no_secret_leaked()?;

    // ---- removing the CRs and uninstalling leaves nothing
    node.kubectl(&[
        "delete",
        "sensors,eventsources",
        "--all",
        "-n",
        NS,
        "--timeout=120s",
    ])?;
    node.kubectl(&["delete", "eventbus", "--all", "-n", NS, "--timeout=120s"])?;
    node.kubectl(&[
        "delete",
        "-n",
        NS,
        "secrets/github-access",
        "secrets/sink-auth",
        "serviceaccount/e2e-sensor",
        "role/e2e-workflows",
        "rolebinding/e2e-workflows",
    ])?;
    node.kubectl(&["delete", "workflows", "--all", "-n", NS])?;
    node.helm(&["uninstall", "sluice", "-n", NS, "--wait", "--timeout", "120s"])?;
    let left = wait_for("an empty namespace", Duration::from_secs(120), || {
        let kinds = "all,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies,leases,persistentvolumeclaims";
        let items = node.items(kinds, "")?;
        let left: Vec<String> = items
            .iter()
            .map(|i| format!("{}/{}", i["kind"].as_str().unwrap_or_default(), i["metadata"]["name"].as_str().unwrap_or_default()))
            // What every namespace has.
            .filter(|k| k != "ConfigMap/kube-root-ca.crt" && k != "ServiceAccount/default")
            .collect();
        Ok(left.is_empty().then_some(left))
    })
    .await?;
    assert!(left.is_empty());
    let cluster = node.kubectl(&[
        "get",
        "clusterroles,clusterrolebindings",
        "-l",
        "app.kubernetes.io/instance=sluice",
        "-o",
        "name",
    ])?;
    assert_eq!(cluster.trim(), "", "cluster-scoped objects left behind");
    node.kubectl(&["delete", "namespace", NS, "--timeout=120s"])?;

    let path = save_numbers(&numbers)?;
    println!(
        "node e2e numbers ({}):\n{}",
        path.display(),
        serde_json::to_string_pretty(&numbers)?
    );
    drop(netns);
    Ok(())
}
