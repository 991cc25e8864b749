//! The gitlab kind through the shared router (no socket) with our own payload fixtures, and hook
//! registration against a local HTTP server standing in for the GitLab API.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_crds::eventsource::{GitlabEventSource, WebhookContext};
use sluice_eventbus::deterministic_id;

use crate::testing::{
    built, context, post, router, run_hooks_until, selector, send, stand_in_api, summary, Recorder, Secrets,
};

const TOKEN: &str = "gl-hook-token";
const PUSH: &[u8] = include_bytes!("fixtures/push.json");
const MERGE_REQUEST: &[u8] = include_bytes!("fixtures/merge_request.json");

fn spec() -> GitlabEventSource {
    GitlabEventSource {
        webhook: Some(WebhookContext {
            port: "12000".into(),
            endpoint: "/gitlab".into(),
            method: "POST".into(),
            ..Default::default()
        }),
        secret_token: Some(selector("gitlab", "token")),
        projects: vec!["4242".into()],
        ..Default::default()
    }
}

fn secrets() -> Secrets {
    Secrets::default()
        .with("gitlab", "token", TOKEN)
        .with("gitlab", "access", "glpat-access")
}

fn app(spec: GitlabEventSource, rec: Arc<Recorder>) -> axum::Router {
    let events = BTreeMap::from([("project".to_string(), spec)]);
    let mut out = built("gl");
    super::build("gl", &events, &context(secrets(), rec), &mut out).expect("the test's gitlab spec builds");
    router(out.routes, 12000)
}

async fn deliver(app: &axum::Router, kind: &str, token: Option<&str>, key: &str, body: &[u8]) -> StatusCode {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-gitlab-event", kind),
        ("idempotency-key", key),
    ];
    if let Some(t) = token {
        headers.push(("x-gitlab-token", t));
    }
    send(app.clone(), post("/gitlab", &headers, body.to_vec()))
        .await
        .0
}

#[tokio::test]
async fn good_token_publishes_the_body_as_sent() {
    let rec = Arc::new(Recorder::default());
    let app = app(spec(), rec.clone());
    assert_eq!(
        deliver(&app, "Push Hook", Some(TOKEN), "k1", PUSH).await,
        StatusCode::OK
    );
    assert_eq!(
        deliver(&app, "Merge Request Hook", Some(TOKEN), "k2", MERGE_REQUEST).await,
        StatusCode::OK
    );
    let events = rec.events();
    assert_eq!(events.len(), 2);
    for ((_, e), (raw, key)) in events.iter().zip([(PUSH, "k1"), (MERGE_REQUEST, "k2")]) {
        assert_eq!(e.ty(), "gitlab");
        assert_eq!(e.id(), deterministic_id(&["gitlab", "gl", "project", key]));
        let data = e.data().cloned().unwrap_or(Value::Null);
        assert_eq!(
            data["body"],
            serde_json::from_slice::<Value>(raw).unwrap_or(Value::Null)
        );
        assert!(
            data.get("metadata").is_none(),
            "no metadata key when none is configured"
        );
    }
    assert_eq!(
        events[0].1.data().map(|d| d["headers"]["X-Gitlab-Event"].clone()),
        Some(json!(["Push Hook"]))
    );
    // The shared secret GitLab sends as is never travels on the bus (upstream publishes it).
    for (_, e) in &events {
        let text = serde_json::to_string(&e.data().cloned().unwrap_or(Value::Null)).expect("encodes");
        assert!(!text.contains(TOKEN), "the token leaked into the event: {text}");
        assert!(e
            .data()
            .is_some_and(|d| d["headers"].get("X-Gitlab-Token").is_none()));
    }
}

#[tokio::test]
async fn credentials_in_headers_never_reach_the_event() {
    let headers: axum::http::HeaderMap = [
        ("x-gitlab-token", "t0ken"),
        ("cookie", "session=abc"),
        ("proxy-authorization", "Basic cHJveHk="),
        ("authorization", "Bearer xyz"),
        ("x-hub-signature-256", "sha256=00"),
    ]
    .into_iter()
    .map(|(k, v)| {
        (
            axum::http::HeaderName::from_static(k),
            axum::http::HeaderValue::from_static(v),
        )
    })
    .collect();
    let object = crate::push::header_object(&headers);
    assert_eq!(
        object,
        json!({
            "Authorization": [crate::push::MASKED_AUTHORIZATION],
            "X-Hub-Signature-256": ["sha256=00"],
        })
    );
}

#[tokio::test]
async fn wrong_or_missing_token_is_403_and_nothing_published() {
    let rec = Arc::new(Recorder::default());
    let app = app(spec(), rec.clone());
    assert_eq!(
        deliver(&app, "Push Hook", Some("nope"), "k1", PUSH).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        deliver(&app, "Push Hook", Some(&format!("{TOKEN}x")), "k1", PUSH).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        deliver(&app, "Push Hook", None, "k1", PUSH).await,
        StatusCode::FORBIDDEN
    );
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn a_retried_delivery_is_one_event() {
    let rec = Arc::new(Recorder::default());
    let app = app(spec(), rec.clone());
    for _ in 0..2 {
        assert_eq!(
            deliver(&app, "Push Hook", Some(TOKEN), "same", PUSH).await,
            StatusCode::OK
        );
    }
    let uuid_only = post(
        "/gitlab",
        &[("x-gitlab-token", TOKEN), ("x-gitlab-event-uuid", "u-1")],
        PUSH.to_vec(),
    );
    assert_eq!(send(app.clone(), uuid_only).await.0, StatusCode::OK);
    let again = post(
        "/gitlab",
        &[("x-gitlab-token", TOKEN), ("x-gitlab-event-uuid", "u-1")],
        PUSH.to_vec(),
    );
    assert_eq!(send(app, again).await.0, StatusCode::OK);
    assert_eq!(rec.events().len(), 2);
}

#[tokio::test]
async fn bad_input_and_event_filter() {
    let rec = Arc::new(Recorder::default());
    let mut s = spec();
    s.events = vec!["PushEvents".into()];
    if let Some(w) = s.webhook.as_mut() {
        w.max_payload_size = Some(200);
    }
    let app = app(s, rec.clone());
    assert_eq!(
        deliver(&app, "Push Hook", Some(TOKEN), "k1", b"{\"object_kind\":").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        deliver(&app, "Push Hook", Some(TOKEN), "k2", PUSH).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        deliver(
            &app,
            "Merge Request Hook",
            Some(TOKEN),
            "k3",
            b"{\"object_kind\":\"merge_request\"}"
        )
        .await,
        StatusCode::OK
    );
    assert!(rec.events().is_empty(), "merge requests are not subscribed");
    assert_eq!(
        deliver(
            &app,
            "Push Hook",
            Some(TOKEN),
            "k4",
            b"{\"object_kind\":\"push\"}"
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(rec.events().len(), 1);
}

#[test]
fn unknown_events_are_refused_at_build() {
    let mut s = spec();
    s.events = vec!["PushEvent".into()];
    let events = BTreeMap::from([("project".to_string(), s)]);
    let err = super::build(
        "gl",
        &events,
        &context(secrets(), Arc::new(Recorder::default())),
        &mut built("gl"),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("unknown event \"PushEvent\""), "{err}");
}

#[test]
fn flag_fields_are_snake_case() {
    assert_eq!(
        super::hooks::flag_field("MergeRequestsEvents"),
        "merge_requests_events"
    );
    assert_eq!(super::hooks::flag_field("PushEvents"), "push_events");
}

#[tokio::test]
async fn hooks_are_created_adopted_and_deleted_on_finish() {
    let (addr, calls) = stand_in_api(("private-token", "glpat-access".into()), |method, path| {
        match (method, path) {
            ("GET", "/api/v4/groups/platform/hooks") => json!([
                {"id": 5, "url": "https://hooks.example.test/gitlab", "push_events": true, "merge_requests_events": false}
            ]),
            ("GET", _) => json!([]),
            ("POST", _) => json!({"id": 77}),
            _ => json!({}),
        }
    })
    .await;
    let mut s = spec();
    s.access_token = Some(selector("gitlab", "access"));
    s.gitlab_base_url = format!("http://{addr}");
    s.projects = vec!["sluice-test/pipes".into()];
    s.groups = vec!["platform".into()];
    s.events = vec!["PushEvents".into()];
    s.delete_hook_on_finish = true;
    if let Some(w) = s.webhook.as_mut() {
        w.url = "https://hooks.example.test".into();
    }
    let events = BTreeMap::from([("project".to_string(), s)]);
    let mut out = built("gl");
    super::build(
        "gl",
        &events,
        &context(secrets(), Arc::new(Recorder::default())),
        &mut out,
    )
    .expect("the test's gitlab spec builds");
    assert_eq!(out.tasks.len(), 1);
    let calls = run_hooks_until(out.tasks.remove(0), &calls, 3).await;
    let summary = summary(&calls);
    assert_eq!(
        summary,
        vec![
            ("GET".to_string(), "/api/v4/groups/platform/hooks".to_string()),
            ("GET".into(), "/api/v4/projects/sluice-test%2Fpipes/hooks".into()),
            ("POST".into(), "/api/v4/projects/sluice-test%2Fpipes/hooks".into()),
            ("DELETE".into(), "/api/v4/groups/platform/hooks/5".into()),
            (
                "DELETE".into(),
                "/api/v4/projects/sluice-test%2Fpipes/hooks/77".into()
            ),
        ]
    );
    let created = &calls[2].2;
    assert_eq!(created["url"], json!("https://hooks.example.test/gitlab"));
    assert_eq!(created["token"], json!(TOKEN));
    assert_eq!(created["push_events"], json!(true));
    assert_eq!(created["merge_requests_events"], json!(false));
    assert_eq!(created["enable_ssl_verification"], json!(false));
}
