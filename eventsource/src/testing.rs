//! Test doubles shared by the source kinds' unit tests: a recording [`EventSender`] and a fixed
//! [`SecretResolver`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use sluice_crds::common::{ConfigMapKeySelector, SecretKeySelector};
use sluice_eventbus::{Event, PublishAck, PublishError, Subject};
use tower::ServiceExt;

use crate::http::{Route, RouteTable};
use crate::secrets::{SecretError, SecretResolver};
use crate::sender::EventSender;

/// Records what was published, deduplicating by event id as the bus does; refuses everything when
/// `refuse` is set.
#[derive(Default)]
pub struct Recorder {
    pub refuse: bool,
    sent: Mutex<Vec<(Subject, Event)>>,
    duplicates: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl EventSender for Recorder {
    async fn send(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError> {
        if self.refuse {
            return Err(PublishError::Unavailable);
        }
        let mut sent = self.sent.lock().map_err(|_| PublishError::Closed)?;
        if sent.iter().any(|(_, e)| e.id() == event.id()) {
            self.duplicates.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Ok(PublishAck::stored(sent.len() as u64, true));
        }
        sent.push((subject.clone(), event.clone()));
        Ok(PublishAck::stored(sent.len() as u64, false))
    }
}

impl Recorder {
    /// A sender that refuses every event.
    pub fn refusing() -> Self {
        Self {
            refuse: true,
            ..Default::default()
        }
    }

    /// How many sends repeated an id already stored.
    pub fn duplicates(&self) -> usize {
        self.duplicates.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Everything stored so far.
    pub fn events(&self) -> Vec<(Subject, Event)> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }
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
        table.add(r).unwrap_or_else(|e| panic!("{e}"));
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
    b.body(body.into()).unwrap_or_else(|e| panic!("{e}"))
}

/// A context publishing to `rec` with `secrets`.
pub fn context(secrets: Secrets, rec: std::sync::Arc<Recorder>) -> crate::SourceContext {
    crate::SourceContext {
        secrets: std::sync::Arc::new(secrets),
        sender: rec,
        metrics: crate::metrics::SourceMetrics::default(),
        checkpoints: Some(std::sync::Arc::new(MemoryCheckpoints::default())),
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
pub type Calls = std::sync::Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

/// A stand-in for a remote hook API on a free local port: checks that every call carries the header
/// `auth` (name, value), records it, and answers `answer(method, path)` as JSON.
pub async fn stand_in_api(
    auth: (&'static str, String),
    answer: fn(&str, &str) -> serde_json::Value,
) -> (std::net::SocketAddr, Calls) {
    use axum::extract::{OriginalUri, State};
    let calls: Calls = Default::default();
    let state = (calls.clone(), std::sync::Arc::new(auth));
    let api = axum::Router::new()
        .route(
            "/{*path}",
            axum::routing::any(
                move |State((calls, auth)): State<(Calls, std::sync::Arc<(&'static str, String)>)>,
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
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, api).await;
    });
    (addr, calls)
}

/// Runs a hook task until the API saw `n` calls, then stops it (which deletes hooks when asked) and
/// returns every call.
pub async fn run_hooks_until(
    task: Box<dyn crate::PullSource>,
    calls: &Calls,
    n: usize,
) -> Vec<(String, String, serde_json::Value)> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(task.run(cancel.clone()));
    while calls.lock().map(|c| c.len()).unwrap_or(0) < n {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cancel.cancel();
    let _ = running.await;
    calls.lock().map(|c| c.clone()).unwrap_or_default()
}

/// (method, path) of each call.
pub fn summary(calls: &[(String, String, serde_json::Value)]) -> Vec<(String, String)> {
    calls.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect()
}
