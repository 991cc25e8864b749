//! Test doubles and helpers shared by this crate's unit tests, its integration tests
//! (`eventsource/tests/`) and `integration-tests/`: a recording [`EventSender`], a fixed
//! [`SecretResolver`], routers driven without a socket, a pull source run until it sent, and the
//! settings of the real servers that `scripts/services.sh` starts.
//!
//! Compiled for this crate's tests and, for other test crates, behind the `test-util` feature; never
//! part of a release build.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use sluice_crds::common::{ConfigMapKeySelector, SecretKeySelector};
use sluice_crds::eventsource::EventSource;
use sluice_eventbus::{Event, PublishAck, PublishError, Subject};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::{Route, RouteTable};
use crate::secrets::{FileSecretResolver, SecretError, SecretResolver};
use crate::sender::EventSender;
use crate::{BuildFn, PullSource, SourceContext};

/// How long a helper here waits for a source before it fails the test (generous: a real server
/// on a loaded CI machine; a working source is much faster).
pub const WAIT: Duration = Duration::from_secs(30);

/// What became of one [`Recorder`] send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored: the first event with its id.
    Stored,
    /// Acknowledged as a duplicate: an event with the same id was stored before.
    Duplicate,
    /// Refused with an error, as a bus that is down.
    Refused,
}

/// Where a [`Recorder`] puts what it is sent.
#[derive(Default)]
enum Mode {
    /// Stores in memory, deduplicating by event id as the bus does.
    #[default]
    Store,
    /// Refuses everything.
    Refuse,
    /// Hands every event to another sender (a real bus) and reports what it answered.
    Forward(Arc<dyn EventSender>),
}

/// A recording [`EventSender`]: by default it stores events in memory, deduplicating by event id as
/// the bus does; [`refusing`](Self::refusing) refuses every event as a bus that is down;
/// [`forwarding`](Self::forwarding) passes them on to a real sender. Every send is recorded with
/// its [`SendOutcome`].
#[derive(Default)]
pub struct Recorder {
    mode: Mode,
    sends: Mutex<Vec<(Subject, Event, SendOutcome)>>,
}

#[async_trait]
impl EventSender for Recorder {
    async fn send(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError> {
        if let Mode::Forward(next) = &self.mode {
            // No lock is held across the forwarded send.
            let answer = next.send(subject, event).await;
            let outcome = match &answer {
                Ok(ack) if ack.duplicate => SendOutcome::Duplicate,
                Ok(_) => SendOutcome::Stored,
                Err(_) => SendOutcome::Refused,
            };
            self.sends.lock().map_err(|_| PublishError::Closed)?.push((
                subject.clone(),
                event.clone(),
                outcome,
            ));
            return answer;
        }
        // Checked and recorded under one lock, so two concurrent sends of one id store it once.
        let mut sends = self.sends.lock().map_err(|_| PublishError::Closed)?;
        let (outcome, answer) = if matches!(self.mode, Mode::Refuse) {
            (SendOutcome::Refused, Err(PublishError::Unavailable))
        } else {
            let stored = sends.iter().filter(|(_, _, o)| *o == SendOutcome::Stored);
            let count = stored.clone().count() as u64;
            if stored.clone().any(|(_, e, _)| e.id() == event.id()) {
                (SendOutcome::Duplicate, Ok(PublishAck::stored(count, true)))
            } else {
                (SendOutcome::Stored, Ok(PublishAck::stored(count + 1, false)))
            }
        };
        sends.push((subject.clone(), event.clone(), outcome));
        answer
    }
}

impl Recorder {
    /// A sender that refuses every event (and records each attempt).
    pub fn refusing() -> Self {
        Self {
            mode: Mode::Refuse,
            ..Default::default()
        }
    }

    /// A sender that hands every event to `next` (such as a [`crate::BusSender`] on a real bus) and
    /// records whether it stored it, called it a duplicate or refused it.
    pub fn forwarding(next: Arc<dyn EventSender>) -> Self {
        Self {
            mode: Mode::Forward(next),
            ..Default::default()
        }
    }

    /// The events stored so far, one per id, in the order they arrived, with their subjects.
    pub fn events(&self) -> Vec<(Subject, Event)> {
        self.outcomes_matching(|o| o == SendOutcome::Stored)
            .into_iter()
            .map(|(s, e, _)| (s, e))
            .collect()
    }

    /// How many sends repeated an id already stored.
    pub fn duplicates(&self) -> usize {
        self.outcomes_matching(|o| o == SendOutcome::Duplicate).len()
    }

    /// Every event handed to `send` so far, in order: refused ones and repeats included.
    pub fn sent(&self) -> Vec<Event> {
        self.outcomes().into_iter().map(|(e, _)| e).collect()
    }

    /// The data of every event handed to `send` so far, in order (events without data left out).
    pub fn sent_data(&self) -> Vec<serde_json::Value> {
        self.sent().iter().filter_map(|e| e.data().cloned()).collect()
    }

    /// Every send so far, in order, with what became of it.
    pub fn outcomes(&self) -> Vec<(Event, SendOutcome)> {
        self.outcomes_matching(|_| true)
            .into_iter()
            .map(|(_, e, o)| (e, o))
            .collect()
    }

    /// Waits until `n` events were handed to `send` and returns every one sent so far; fails the
    /// test, saying what did arrive, when that takes longer than [`WAIT`] (so a broken source fails
    /// rather than hangs).
    pub async fn wait_sent(&self, n: usize) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} sends within {WAIT:?}, got {}: {:?}",
                sent.len(),
                self.sent_data()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn outcomes_matching(&self, keep: impl Fn(SendOutcome) -> bool) -> Vec<(Subject, Event, SendOutcome)> {
        self.sends
            .lock()
            .map(|v| v.iter().filter(|(_, _, o)| keep(*o)).cloned().collect())
            .unwrap_or_default()
    }
}

/// The one task that `build` (a kind's `sources::<kind>::build`) makes of `spec` as event `event`
/// of EventSource `es`, publishing to `sender`, with no secrets; fails the test when the build
/// fails or makes no task.
pub fn one_source<T>(
    event: &str,
    spec: T,
    build: BuildFn<T>,
    sender: Arc<dyn EventSender>,
) -> Box<dyn PullSource> {
    let ctx = SourceContext::new(Arc::new(FileSecretResolver::new("/nonexistent")), sender);
    crate::build_kind("es", &BTreeMap::from([(event.to_owned(), spec)]), build, &ctx)
        .expect("the test's spec builds")
        .tasks
        .pop()
        .expect("a pull kind's build makes one task per event")
}

/// Runs `source` until `recorder` saw `n` sends (see [`Recorder::wait_sent`]), then cancels it and
/// waits for it to return; every event sent, in order. Fails the test when the source fails.
pub async fn run_until(source: Box<dyn PullSource>, recorder: &Recorder, n: usize) -> Vec<Event> {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source.run(cancel.clone()));
    let sent = recorder.wait_sent(n).await;
    cancel.cancel();
    task.await
        .expect("the source task does not panic")
        .expect("the source returns without error once cancelled");
    sent
}

/// The tasks of a built EventSource, running until [`stop`](Self::stop).
pub struct Running {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    /// How many of its tasks are still running (a source that gave up has ended).
    pub fn running_tasks(&self) -> usize {
        self.tracker.len()
    }

    /// Cancels every task and waits until each returned.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }
}

/// Builds `es` through [`crate::build`], as a process does, and runs its tasks (routes are not
/// served); fails the test when the build fails.
pub fn start(es: &EventSource, ctx: &SourceContext) -> Running {
    let built = crate::build(es, ctx).expect("the test's EventSource builds");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    for task in built.tasks {
        let token = cancel.child_token();
        tracker.spawn(async move {
            let _ = task.run(token).await;
        });
    }
    tracker.close();
    Running { cancel, tracker }
}

/// Secrets from a fixed map of `(name, key) → value`.
#[derive(Default)]
pub struct Secrets(pub BTreeMap<(String, String), String>);

impl Secrets {
    /// One secret.
    pub fn with(mut self, name: &str, key: &str, value: &str) -> Self {
        self.0.insert((name.into(), key.into()), value.into());
        self
    }
}

/// A selector `{name, key}`.
pub fn selector(name: &str, key: &str) -> SecretKeySelector {
    SecretKeySelector {
        name: name.into(),
        key: key.into(),
        optional: None,
    }
}

impl SecretResolver for Secrets {
    fn resolve_config_map(&self, selector: &ConfigMapKeySelector) -> Result<String, SecretError> {
        Err(SecretError::InvalidReference {
            name: selector.name.clone(),
            key: selector.key.clone(),
        })
    }

    fn resolve_secret(&self, selector: &SecretKeySelector) -> Result<String, SecretError> {
        self.0
            .get(&(selector.name.clone(), selector.key.clone()))
            .cloned()
            .ok_or_else(|| SecretError::InvalidReference {
                name: selector.name.clone(),
                key: selector.key.clone(),
            })
    }
}

/// The router of `port` serving `routes`.
pub fn router(routes: Vec<Route>, port: u16) -> axum::Router {
    let mut table = RouteTable::new();
    for r in routes {
        table.add(r).expect("the test's routes do not collide");
    }
    table.router(port)
}

/// Sends one request through `router` without a socket.
pub async fn send(router: axum::Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let res = router.oneshot(req).await.unwrap_or_else(|e| match e {});
    let status = res.status();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A POST of `body` to `uri` with extra headers.
pub fn post(uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).expect("the test's URI and headers are valid")
}

/// A context publishing to `rec` with `secrets`.
pub fn context(secrets: Secrets, rec: Arc<Recorder>) -> SourceContext {
    SourceContext {
        secrets: Arc::new(secrets),
        sender: rec,
        metrics: crate::metrics::SourceMetrics::default(),
        checkpoints: Some(Arc::new(MemoryCheckpoints::default())),
        readiness: crate::Readiness::default(),
    }
}

/// An empty build result for EventSource `name`.
pub fn built(name: &str) -> crate::BuiltEventSource {
    crate::BuiltEventSource {
        name: name.into(),
        routes: Vec::new(),
        tasks: Vec::new(),
    }
}

/// Checkpoints in memory.
#[derive(Default)]
pub struct MemoryCheckpoints(Mutex<BTreeMap<String, String>>);

#[async_trait]
impl crate::checkpoint::CheckpointStore for MemoryCheckpoints {
    async fn load(&self, key: &str) -> Result<Option<String>, crate::checkpoint::CheckpointError> {
        Ok(self.0.lock().ok().and_then(|m| m.get(key).cloned()))
    }

    async fn save(&self, key: &str, value: &str) -> Result<(), crate::checkpoint::CheckpointError> {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.into(), value.into());
        }
        Ok(())
    }
}

/// What a stand-in API recorded: (method, path, JSON body or null) per call.
pub type Calls = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

/// A stand-in for a remote hook API on a free local port: checks that every call carries the header
/// `auth` (name, value), records it, and answers `answer(method, path)` as JSON.
pub async fn stand_in_api(
    auth: (&'static str, String),
    answer: fn(&str, &str) -> serde_json::Value,
) -> (std::net::SocketAddr, Calls) {
    use axum::extract::{OriginalUri, State};
    let calls: Calls = Default::default();
    let state = (calls.clone(), Arc::new(auth));
    let api = axum::Router::new()
        .route(
            "/{*path}",
            axum::routing::any(
                move |State((calls, auth)): State<(Calls, Arc<(&'static str, String)>)>,
                      method: axum::http::Method,
                      OriginalUri(uri): OriginalUri,
                      headers: HeaderMap,
                      body: bytes::Bytes| async move {
                    assert_eq!(
                        headers.get(auth.0).and_then(|v| v.to_str().ok()),
                        Some(auth.1.as_str()),
                        "{method} {uri}: credentials sent"
                    );
                    let body: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    let path = uri.path().to_string();
                    if let Ok(mut c) = calls.lock() {
                        c.push((method.to_string(), path.clone(), body));
                    }
                    axum::Json(answer(method.as_str(), &path))
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port can be bound");
    let addr = listener.local_addr().expect("a bound listener has an address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, api).await;
    });
    (addr, calls)
}

/// Runs a hook task until the API saw `n` calls, then stops it (which deletes hooks when asked) and
/// returns every call. Fails the test when the calls take longer than [`WAIT`].
pub async fn run_hooks_until(
    task: Box<dyn PullSource>,
    calls: &Calls,
    n: usize,
) -> Vec<(String, String, serde_json::Value)> {
    let cancel = CancellationToken::new();
    let running = tokio::spawn(task.run(cancel.clone()));
    let deadline = tokio::time::Instant::now() + WAIT;
    while calls.lock().map(|c| c.len()).unwrap_or(0) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} API calls within {WAIT:?}, got {:?}",
            calls.lock().map(|c| summary(&c)).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    let _ = running.await;
    calls.lock().map(|c| c.clone()).unwrap_or_default()
}

/// (method, path) of each call.
pub fn summary(calls: &[(String, String, serde_json::Value)]) -> Vec<(String, String)> {
    calls.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect()
}

/// The settings each service under `scripts/services/` prints as `KEY=VALUE` lines when started
/// (`scripts/services.sh start NAME`); `scripts/test` starts them all and exports the settings.
/// Checked against the scripts by a unit test. `KUBECONFIG` is printed by `node` too (the same file).
const PRINTED_BY: &[(&str, &[&str])] = &[
    (
        "helm",
        &["HELM_BIN", "KUBECONFORM_BIN", "KUBECTL_BIN", "KUBE_SCHEMAS_DIR"],
    ),
    ("kafka", &["KAFKA_BROKERS"]),
    (
        "kube",
        &[
            "KUBECONFIG",
            "KUBE_API_URL",
            "KUBE_TOKEN",
            "KUBE_DENIED_TOKEN",
            "KUBE_CA_FILE",
        ],
    ),
    (
        "mosquitto",
        &["MQTT_URL", "MOSQUITTO_BIN", "MQTTS_URL", "MQTTS_MTLS_URL"],
    ),
    (
        "nats",
        &["NATS_URL", "NATS_MONITOR_URL", "NATS_SERVER_BIN", "NATS_TLS_URL"],
    ),
    (
        "node",
        &[
            "NODE_NETNS",
            "NODE_HOST_IP",
            "NODE_NAME",
            "SLUICE_IMAGE",
            "NATS_IMAGE",
            "NODE_TOOLS_IMAGE",
        ],
    ),
    (
        "rabbitmq",
        &["AMQP_URL", "AMQPS_URL", "AMQPS_CA_FILE", "RABBITMQCTL"],
    ),
    ("redis", &["REDIS_URL", "REDIS_SERVER_BIN", "REDISS_URL"]),
    (
        "s3",
        &[
            "S3_ENDPOINT",
            "S3_PYTHON",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ],
    ),
    (
        "sftp",
        &[
            "SFTP_ADDRESS",
            "SFTP_USER",
            "SFTP_KEY_FILE",
            "SFTP_DIR",
            "SFTP_SSHD",
        ],
    ),
    ("smtp", &["SMTP_PYTHON"]),
    (
        "tls",
        &[
            "TLS_CA_FILE",
            "TLS_OTHER_CA_FILE",
            "TLS_CLIENT_CERT_FILE",
            "TLS_CLIENT_KEY_FILE",
        ],
    ),
];

/// A setting of a real server that is not in the environment.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} is not set: this test needs a server; run `scripts/services.sh start {service}` and export \
     the KEY=VALUE lines it prints (scripts/test does both, then runs the ignored tests too)"
)]
pub struct MissingSetting {
    /// The environment variable.
    pub name: String,
    /// The service under `scripts/services/` that prints it.
    pub service: &'static str,
}

/// The setting `name` (`NATS_URL`, `KAFKA_BROKERS`, …) that `scripts/services.sh start` printed and
/// `scripts/test` exported; an error naming the variable and the command to start its server when
/// it is not set.
pub fn try_setting(name: &str) -> Result<String, MissingSetting> {
    std::env::var(name).map_err(|_| MissingSetting {
        name: name.to_owned(),
        service: PRINTED_BY
            .iter()
            .find(|(_, names)| names.contains(&name))
            .map_or("NAME", |(service, _)| service),
    })
}

/// The setting `name`, as [`try_setting`]; fails the test, naming the variable and the command to
/// start its server, when it is not set. Tests that call this are `#[ignore]`d with the server they
/// need, so plain `cargo test` skips them and `scripts/test` runs them.
#[track_caller]
pub fn setting(name: &str) -> String {
    match try_setting(name) {
        Ok(value) => value,
        Err(missing) => panic!("{missing}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `echo "KEY=` line of `scripts/services/NAME.sh` is in [`PRINTED_BY`] under NAME (or,
    /// for a key two services print, under one of them), and every listed key is printed by its service.
    #[test]
    fn the_settings_table_matches_the_service_scripts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services");
        let echo = regex::Regex::new(r#"echo "([A-Z][A-Z0-9_]*)="#).expect("the pattern compiles");
        let mut printed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).expect("scripts/services is readable") {
            let path = entry.expect("a directory entry").path();
            let Some(service) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".sh"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).expect("a service script is readable");
            for key in echo.captures_iter(&text) {
                printed
                    .entry(key[1].to_owned())
                    .or_default()
                    .push(service.to_owned());
            }
        }
        for (key, services) in &printed {
            let listed = PRINTED_BY.iter().find(|(_, keys)| keys.contains(&key.as_str()));
            assert!(
                listed.is_some_and(|(s, _)| services.iter().any(|p| p == s)),
                "{key} is printed by {services:?} but listed under {:?}",
                listed.map(|(s, _)| s)
            );
        }
        for (service, keys) in PRINTED_BY {
            for key in *keys {
                assert!(
                    printed.get(*key).is_some_and(|s| s.iter().any(|p| p == service)),
                    "{key} is listed under {service} but scripts/services/{service}.sh does not print it"
                );
            }
        }
    }

    #[test]
    fn a_missing_setting_names_the_service_that_prints_it() {
        let missing = try_setting("SLUICE_TEST_SURELY_UNSET_SFTP_DIR")
            .err()
            .map(|e| e.to_string());
        assert!(missing.is_some_and(|m| m.contains("scripts/services.sh start NAME")));
        let message = MissingSetting {
            name: "SFTP_DIR".into(),
            service: "sftp",
        }
        .to_string();
        assert!(message.starts_with("SFTP_DIR is not set"), "{message}");
        assert!(message.contains("`scripts/services.sh start sftp`"), "{message}");
    }

    #[tokio::test]
    async fn the_recorder_stores_each_id_once_and_records_every_send() {
        let event = |id: &str| {
            sluice_eventbus::EventBuilder::new("es", "e", "test")
                .id(id)
                .build()
                .expect("a test event builds")
        };
        let subject = Subject::new("es", "e");
        let rec = Recorder::default();
        for id in ["a", "b", "a"] {
            rec.send(&subject, &event(id)).await.expect("stored");
        }
        assert_eq!(rec.events().len(), 2);
        assert_eq!(rec.duplicates(), 1);
        assert_eq!(rec.sent().len(), 3);
        let refusing = Recorder::refusing();
        assert!(refusing.send(&subject, &event("a")).await.is_err());
        assert!(refusing.events().is_empty());
        assert_eq!(refusing.outcomes()[0].1, SendOutcome::Refused);
        let forwarding = Recorder::forwarding(Arc::new(rec));
        forwarding.send(&subject, &event("b")).await.expect("forwarded");
        assert_eq!(forwarding.outcomes()[0].1, SendOutcome::Duplicate);
    }
}
