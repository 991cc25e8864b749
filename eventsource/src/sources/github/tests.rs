//! The github kind through the shared router (no socket), with our own payload fixtures, and hook
//! registration against a local HTTP server standing in for the GitHub API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_crds::eventsource::{GithubEventSource, OwnedRepositories, WebhookContext};
use sluice_eventbus::deterministic_id;
use tokio_util::sync::CancellationToken;

use crate::push::signature::{hmac_hex, Digest};
use crate::testing::{built, context, post, router, selector, send, Recorder, Secrets};

const SECRET: &str = "gh-hook-secret";
const PUSH: &[u8] = include_bytes!("fixtures/push.json");
const PULL_REQUEST: &[u8] = include_bytes!("fixtures/pull_request.json");
const PING: &[u8] = include_bytes!("fixtures/ping.json");

fn spec() -> GithubEventSource {
    GithubEventSource {
        webhook: Some(WebhookContext {
            port: "12000".into(),
            endpoint: "/github".into(),
            method: "POST".into(),
            ..Default::default()
        }),
        webhook_secret: Some(selector("github", "secret")),
        metadata: Some(BTreeMap::from([("team".to_string(), "pipes".to_string())])),
        ..Default::default()
    }
}

fn secrets() -> Secrets {
    Secrets::default()
        .with("github", "secret", SECRET)
        .with("github", "token", "api-t0ken")
}

fn app(spec: GithubEventSource, rec: Arc<Recorder>) -> axum::Router {
    let events = BTreeMap::from([("repo".to_string(), spec)]);
    let mut out = built("gh");
    super::build("gh", &events, &context(secrets(), rec), &mut out).expect("the test's github spec builds");
    assert!(out.tasks.is_empty(), "no hook task without apiToken and url");
    router(out.routes, 12000)
}

fn sig256(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(Digest::Sha256, secret.as_bytes(), body))
}

async fn deliver(
    app: &axum::Router,
    event: &str,
    delivery: &str,
    signature: &str,
    body: &[u8],
) -> StatusCode {
    let req = post(
        "/github",
        &[
            ("content-type", "application/json"),
            ("x-github-event", event),
            ("x-github-delivery", delivery),
            ("x-hub-signature-256", signature),
        ],
        body.to_vec(),
    );
    send(app.clone(), req).await.0
}

fn without_merged(body: &Value) -> Value {
    let mut body = body.clone();
    if let Value::Object(m) = &mut body {
        m.remove("X-GitHub-Event");
        m.remove("X-GitHub-Delivery");
    }
    body
}

#[tokio::test]
async fn signed_fixtures_are_published_unchanged() {
    let rec = Arc::new(Recorder::default());
    let app = app(spec(), rec.clone());
    let cases = [("push", PUSH), ("pull_request", PULL_REQUEST), ("ping", PING)];
    for (i, (event, body)) in cases.iter().enumerate() {
        let delivery = format!("7d1f0000-0000-4000-8000-00000000000{i}");
        assert_eq!(
            deliver(&app, event, &delivery, &sig256(SECRET, body), body).await,
            StatusCode::OK,
            "{event}"
        );
    }
    let events = rec.events();
    assert_eq!(events.len(), 3);
    for (i, ((event, body), (subject, published))) in cases.iter().zip(&events).enumerate() {
        let delivery = format!("7d1f0000-0000-4000-8000-00000000000{i}");
        assert_eq!(subject.event_name, "repo");
        assert_eq!(published.ty(), "github");
        assert_eq!(published.source(), "gh");
        assert_eq!(
            published.id(),
            deterministic_id(&["github", "gh", "repo", &delivery])
        );
        let data = published.data().cloned().unwrap_or(Value::Null);
        let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        assert_eq!(
            without_merged(&data["body"]),
            sent,
            "{event}: every key and value as sent"
        );
        assert_eq!(data["body"]["X-GitHub-Event"], json!(event));
        assert_eq!(data["body"]["X-GitHub-Delivery"], json!(delivery));
        assert_eq!(data["headers"]["X-Github-Event"], json!([event]));
        assert_eq!(data["metadata"], json!({"team": "pipes"}));
    }
    // Numbers and text survive exactly (a float, a large id, non-ASCII, an escaped newline).
    let push = events[0].1.data().cloned().unwrap_or(Value::Null);
    assert_eq!(push["body"]["repository"]["score"], json!(125.0));
    assert_eq!(push["body"]["repository"]["id"], json!(918273645));
    assert_eq!(
        push["body"]["commits"][0]["message"],
        json!("Tighten the valve tolerances\n\nUnicode too: żółw ✓")
    );
}

#[tokio::test]
async fn flipped_byte_wrong_secret_or_missing_signature_is_401_and_nothing_published() {
    let rec = Arc::new(Recorder::default());
    let app = app(spec(), rec.clone());
    let good = sig256(SECRET, PUSH);
    let mut flipped = PUSH.to_vec();
    flipped[10] ^= 0x01;
    assert_eq!(
        deliver(&app, "push", "d1", &good, &flipped).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(&app, "push", "d2", &sig256("not-the-secret", PUSH), PUSH).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(&app, "push", "d3", "sha256=zz", PUSH).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(&app, "push", "d4", &good.replace("sha256=", ""), PUSH).await,
        StatusCode::UNAUTHORIZED
    );
    let unsigned = post(
        "/github",
        &[("x-github-event", "push"), ("x-github-delivery", "d5")],
        PUSH.to_vec(),
    );
    assert_eq!(send(app.clone(), unsigned).await.0, StatusCode::UNAUTHORIZED);
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn legacy_sha1_signature_is_accepted() {
    let rec = Arc::new(Recorder::default());
    let app = app(spec(), rec.clone());
    let sig = format!("sha1={}", hmac_hex(Digest::Sha1, SECRET.as_bytes(), PUSH));
    let req = post(
        "/github",
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "d1"),
            ("x-hub-signature", &sig),
        ],
        PUSH.to_vec(),
    );
    assert_eq!(send(app.clone(), req).await.0, StatusCode::OK);
    let bad = post(
        "/github",
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "d2"),
            ("x-hub-signature", "sha1=00"),
        ],
        PUSH.to_vec(),
    );
    assert_eq!(send(app, bad).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(rec.events().len(), 1);
}

#[tokio::test]
async fn a_redelivery_is_one_event_on_the_bus() {
    let rec = Arc::new(Recorder::default());
    let app = app(spec(), rec.clone());
    let sig = sig256(SECRET, PUSH);
    for _ in 0..3 {
        assert_eq!(
            deliver(&app, "push", "same-delivery", &sig, PUSH).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        deliver(&app, "push", "other-delivery", &sig, PUSH).await,
        StatusCode::OK
    );
    assert_eq!(rec.events().len(), 2);
}

#[tokio::test]
async fn events_filter_answers_200_without_publishing() {
    let rec = Arc::new(Recorder::default());
    let mut s = spec();
    s.events = vec!["push".into()];
    let app = app(s, rec.clone());
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "d1",
            &sig256(SECRET, PULL_REQUEST),
            PULL_REQUEST
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        deliver(&app, "ping", "d2", &sig256(SECRET, PING), PING).await,
        StatusCode::OK
    );
    assert_eq!(
        deliver(&app, "push", "d3", &sig256(SECRET, PUSH), PUSH).await,
        StatusCode::OK
    );
    let events = rec.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].1.data().map(|d| d["body"]["X-GitHub-Event"].clone()),
        Some(json!("push"))
    );
}

#[tokio::test]
async fn bad_input_statuses() {
    let rec = Arc::new(Recorder::default());
    let mut s = spec();
    if let Some(w) = s.webhook.as_mut() {
        w.max_payload_size = Some(64);
    }
    let app = app(s, rec.clone());
    assert_eq!(
        deliver(&app, "push", "d1", &sig256(SECRET, PUSH), PUSH).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let broken = b"{\"ref\": ";
    assert_eq!(
        deliver(&app, "push", "d2", &sig256(SECRET, broken), broken).await,
        StatusCode::BAD_REQUEST
    );
    let array = b"[1,2]";
    assert_eq!(
        deliver(&app, "push", "d3", &sig256(SECRET, array), array).await,
        StatusCode::BAD_REQUEST
    );
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn form_encoded_deliveries_are_verified_over_the_raw_body() {
    let rec = Arc::new(Recorder::default());
    let app = app(spec(), rec.clone());
    let form = b"payload=%7B%22zen%22%3A%22a+b%22%7D".to_vec();
    let req = post(
        "/github",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-github-event", "ping"),
            ("x-github-delivery", "d1"),
            ("x-hub-signature-256", &sig256(SECRET, &form)),
        ],
        form.clone(),
    );
    assert_eq!(send(app, req).await.0, StatusCode::OK);
    assert_eq!(
        rec.events()[0].1.data().map(|d| d["body"]["zen"].clone()),
        Some(json!("a b"))
    );
}

#[tokio::test]
async fn without_a_secret_unsigned_deliveries_pass_as_upstream() {
    let rec = Arc::new(Recorder::default());
    let mut s = spec();
    s.webhook_secret = None;
    let app = app(s, rec.clone());
    let req = post("/github", &[("x-github-event", "push")], PUSH.to_vec());
    assert_eq!(send(app, req).await.0, StatusCode::OK);
    assert_eq!(rec.events().len(), 1);
}

/// A stand-in GitHub API: records every call and answers like GitHub.
#[derive(Default)]
struct FakeApi {
    calls: Mutex<Vec<(String, String, Value)>>,
}

async fn github_api() -> (String, Arc<FakeApi>, CancellationToken) {
    use axum::extract::{Path, State};
    use axum::routing::{get, patch};
    use axum::Json;
    let api = Arc::new(FakeApi::default());
    fn record(api: &FakeApi, method: &str, path: String, body: Value, auth: Option<&str>) {
        assert_eq!(
            auth,
            Some("Bearer api-t0ken"),
            "{method} {path}: token sent as bearer"
        );
        if let Ok(mut c) = api.calls.lock() {
            c.push((method.into(), path, body));
        }
    }
    let app = axum::Router::new()
        .route(
            "/api/v3/repos/{owner}/{repo}/hooks",
            get(
                |State(api): State<Arc<FakeApi>>, Path((o, r)): Path<(String, String)>, h: axum::http::HeaderMap| async move {
                    record(&api, "GET", format!("repos/{o}/{r}"), Value::Null, h.get("authorization").and_then(|v| v.to_str().ok()));
                    Json(json!([{"id": 1, "config": {"url": "https://elsewhere.test/hook"}, "events": ["push"], "active": true}]))
                },
            )
            .post(
                |State(api): State<Arc<FakeApi>>, Path((o, r)): Path<(String, String)>, h: axum::http::HeaderMap, Json(body): Json<Value>| async move {
                    record(&api, "POST", format!("repos/{o}/{r}"), body, h.get("authorization").and_then(|v| v.to_str().ok()));
                    (StatusCode::CREATED, Json(json!({"id": 101})))
                },
            ),
        )
        .route(
            "/api/v3/orgs/{org}/hooks",
            get(
                |State(api): State<Arc<FakeApi>>, Path(org): Path<String>, h: axum::http::HeaderMap| async move {
                    record(&api, "GET", format!("orgs/{org}"), Value::Null, h.get("authorization").and_then(|v| v.to_str().ok()));
                    Json(json!([{"id": 202, "config": {"url": "https://hooks.example.test/github"}, "events": ["push"], "active": true}]))
                },
            ),
        )
        .route(
            "/api/v3/orgs/{org}/hooks/{id}",
            patch(
                |State(api): State<Arc<FakeApi>>, Path((org, id)): Path<(String, String)>, h: axum::http::HeaderMap, Json(body): Json<Value>| async move {
                    record(&api, "PATCH", format!("orgs/{org}/{id}"), body, h.get("authorization").and_then(|v| v.to_str().ok()));
                    Json(json!({"id": 202}))
                },
            )
            .delete(
                |State(api): State<Arc<FakeApi>>, Path((org, id)): Path<(String, String)>, h: axum::http::HeaderMap| async move {
                    record(&api, "DELETE", format!("orgs/{org}/{id}"), Value::Null, h.get("authorization").and_then(|v| v.to_str().ok()));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/api/v3/repos/{o}/{r}/hooks/{id}",
            axum::routing::delete(
                |State(api): State<Arc<FakeApi>>, Path((o, r, id)): Path<(String, String, String)>, h: axum::http::HeaderMap| async move {
                    record(&api, "DELETE", format!("repos/{o}/{r}/{id}"), Value::Null, h.get("authorization").and_then(|v| v.to_str().ok()));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port can be bound");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    });
    (format!("http://{addr}/api/v3"), api, stop)
}

#[tokio::test]
async fn hooks_are_created_or_updated_and_deleted_on_finish() {
    let (base, api, stop) = github_api().await;
    let mut s = spec();
    s.api_token = Some(selector("github", "token"));
    s.github_base_url = Some(base);
    s.events = vec!["push".into(), "pull_request".into()];
    s.active = true;
    s.delete_hook_on_finish = true;
    s.repositories = vec![OwnedRepositories {
        owner: Some("sluice-test".into()),
        names: vec!["pipes".into()],
    }];
    s.organizations = vec!["acme".into()];
    if let Some(w) = s.webhook.as_mut() {
        w.url = "https://hooks.example.test/".into();
    }
    let events = BTreeMap::from([("repo".to_string(), s)]);
    let rec = Arc::new(Recorder::default());
    let mut out = built("gh");
    super::build("gh", &events, &context(secrets(), rec), &mut out).expect("the test's github spec builds");
    assert_eq!(out.tasks.len(), 1);
    let task = out.tasks.remove(0);
    let cancel = CancellationToken::new();
    let running = tokio::spawn(task.run(cancel.clone()));
    // Wait (without a clock) until the three registration calls were made.
    loop {
        let n = api.calls.lock().map(|c| c.len()).unwrap_or(0);
        if n >= 4 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cancel.cancel();
    let _ = running.await;
    stop.cancel();
    let calls = api.calls.lock().map(|c| c.clone()).unwrap_or_default();
    let summary: Vec<(String, String)> = calls.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(
        summary,
        vec![
            ("GET".to_string(), "orgs/acme".to_string()),
            ("PATCH".into(), "orgs/acme/202".into()),
            ("GET".into(), "repos/sluice-test/pipes".into()),
            ("POST".into(), "repos/sluice-test/pipes".into()),
            ("DELETE".into(), "orgs/acme/202".into()),
            ("DELETE".into(), "repos/sluice-test/pipes/101".into()),
        ]
    );
    let created = &calls[3].2;
    assert_eq!(
        created,
        &json!({
            "name": "web",
            "active": true,
            "events": ["push", "pull_request"],
            "config": {"url": "https://hooks.example.test/github", "content_type": "json", "insecure_ssl": "0", "secret": SECRET}
        })
    );
    assert_eq!(
        &calls[1].2, created,
        "the stale org hook is updated to the same config"
    );
}

/// Captures log output of one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_rejection_logs_the_reason_and_delivery_id_never_the_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // Why: another test thread may have hit these callsites with no subscriber and cached
        // "never" for them; re-deciding now that this thread's subscriber exists keeps the log
        // lines this test reads.
        tracing::callsite::rebuild_interest_cache();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime builds");
        rt.block_on(async {
            let rec = Arc::new(Recorder::default());
            let app = app(spec(), rec.clone());
            let status = deliver(&app, "push", "d-log-1", &sig256("wrong", PUSH), PUSH).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(rec.events().is_empty());
        });
    });
    let text = captured
        .0
        .lock()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    assert!(text.contains("rejected request"), "{text}");
    assert!(text.contains("invalid X-Hub-Signature-256 signature"), "{text}");
    assert!(text.contains("d-log-1"), "the delivery id is logged: {text}");
    assert!(!text.contains(SECRET), "the secret is never logged: {text}");
}
