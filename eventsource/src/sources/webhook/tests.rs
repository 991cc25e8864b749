//! The webhook through the shared router with `oneshot`, no socket: every status code the issue names,
//! and the exact event published.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use sluice_crds::common::SecretKeySelector;
use sluice_crds::eventsource::{WebhookContext, WebhookEventSource};
use sluice_eventbus::Subject;

use crate::http::RouteTable;

use crate::testing::{send, Recorder, Secrets};

fn context(method: &str) -> WebhookContext {
    WebhookContext {
        port: "12000".into(),
        endpoint: "/example".into(),
        method: method.into(),
        ..Default::default()
    }
}

/// Builds the routes of `events` the way `crate::build` does, publishing to `sender`.
fn build_routes(
    events: &BTreeMap<String, WebhookEventSource>,
    sender: Arc<Recorder>,
) -> Result<Vec<crate::http::Route>, crate::BuildError> {
    let ctx = crate::SourceContext {
        secrets: Arc::new(Secrets::default().with("hook", "token", "t0ken")),
        sender,
        metrics: crate::metrics::SourceMetrics::default(),
        checkpoints: None,
        readiness: sluice_eventbus::readiness::Readiness::default(),
    };
    let mut built = crate::BuiltEventSource {
        name: "hooks".into(),
        routes: Vec::new(),
        tasks: Vec::new(),
    };
    super::build("hooks", events, &ctx, &mut built)?;
    Ok(built.routes)
}

fn router(events: BTreeMap<String, WebhookEventSource>, sender: Arc<Recorder>) -> axum::Router {
    let routes = build_routes(&events, sender).expect("the test's webhook events build");
    let mut table = RouteTable::new();
    for r in routes {
        table.add(r).expect("the test's routes do not collide");
    }
    table.router(12000)
}

fn one(ctx: WebhookContext) -> BTreeMap<String, WebhookEventSource> {
    BTreeMap::from([(
        "example".to_string(),
        WebhookEventSource {
            webhook_context: ctx,
            ..Default::default()
        },
    )])
}

fn post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("the test request is well-formed")
}

#[tokio::test]
async fn publishes_the_exact_event_and_answers_200() {
    let rec = Arc::new(Recorder::default());
    let mut ctx = context("POST");
    ctx.metadata = Some(BTreeMap::from([("team".to_string(), "platform".to_string())]));
    let req = Request::post("/example")
        .header("content-type", "application/json")
        .header("x-custom-thing", "a")
        .header("authorization", "Bearer whatever")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(Body::from(r#"{"type":"deploy","n":1}"#))
        .expect("the test request is well-formed");
    let (status, _, body) = send(router(one(ctx), rec.clone()), req).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "success"));
    let events = rec.events();
    assert_eq!(events.len(), 1);
    let (subject, event) = &events[0];
    assert_eq!(subject, &Subject::new("hooks", "example"));
    assert_eq!(event.source(), "hooks");
    assert_eq!(event.subject(), Some("example"));
    assert_eq!(event.ty(), "webhook");
    assert_eq!(event.datacontenttype(), Some("application/json"));
    assert_eq!(
        event.extension("traceparent").as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    let data = event.data().cloned().unwrap_or(Value::Null);
    assert_eq!(data["body"], json!({"type": "deploy", "n": 1}));
    assert_eq!(data["metadata"], json!({"team": "platform"}));
    assert_eq!(data["header"]["Content-Type"], json!(["application/json"]));
    assert_eq!(data["header"]["X-Custom-Thing"], json!(["a"]));
    assert_eq!(
        data["header"]["Authorization"],
        json!([crate::push::MASKED_AUTHORIZATION])
    );
}

#[tokio::test]
async fn idempotency_key_makes_the_id_deterministic() {
    let rec = Arc::new(Recorder::default());
    let r = router(one(context("POST")), rec.clone());
    for _ in 0..2 {
        let req = Request::post("/example")
            .header("idempotency-key", "delivery-42")
            .body(Body::from("{}"))
            .expect("the test request is well-formed");
        assert_eq!(send(r.clone(), req).await.0, StatusCode::OK);
    }
    let req = Request::post("/example")
        .body(Body::from("{}"))
        .expect("the test request is well-formed");
    assert_eq!(send(r, req).await.0, StatusCode::OK);
    // The recorder dedupes by id as the bus does: the two keyed requests are one event.
    let ids: Vec<String> = rec.events().iter().map(|(_, e)| e.id().to_string()).collect();
    assert_eq!(ids.len(), 2, "same delivery key → same id → one event");
    assert_eq!(
        ids[0],
        sluice_eventbus::deterministic_id(&["webhook", "hooks", "example", "delivery-42"])
    );
}

#[tokio::test]
async fn bus_refusal_is_503_with_retry_after() {
    let rec = Arc::new(Recorder::refusing());
    let (status, headers, _) = send(router(one(context("POST")), rec), post("/example", "{}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
}

#[tokio::test]
async fn oversized_body_is_413_and_not_published() {
    let rec = Arc::new(Recorder::default());
    let mut ctx = context("POST");
    ctx.max_payload_size = Some(16);
    let r = router(one(ctx), rec.clone());
    let (status, _, _) = send(r.clone(), post("/example", r#"{"a":"0123456789abcdef"}"#)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(send(r, post("/example", r#"{"a":1}"#)).await.0, StatusCode::OK);
    assert_eq!(rec.events().len(), 1);
}

#[tokio::test]
async fn default_limit_is_one_mebibyte() {
    let rec = Arc::new(Recorder::default());
    let r = router(one(context("POST")), rec.clone());
    let big = format!("\"{}\"", "x".repeat(1024 * 1024));
    assert_eq!(
        send(r, post("/example", &big)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn bearer_auth_is_401_unless_the_token_matches() {
    let rec = Arc::new(Recorder::default());
    let mut ctx = context("POST");
    ctx.auth_secret = Some(SecretKeySelector {
        name: "hook".into(),
        key: "token".into(),
        optional: None,
    });
    let r = router(one(ctx), rec.clone());
    let with = |auth: Option<&str>| {
        let mut b = Request::post("/example");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::from("{}")).expect("the test request is well-formed")
    };
    assert_eq!(send(r.clone(), with(None)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(r.clone(), with(Some("Bearer nope"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(r.clone(), with(Some("t0ken"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(rec.events().is_empty());
    assert_eq!(send(r, with(Some("Bearer t0ken"))).await.0, StatusCode::OK);
    let data = rec.events()[0].1.data().cloned().unwrap_or(Value::Null);
    assert_eq!(
        data["header"]["Authorization"],
        json!([crate::push::MASKED_AUTHORIZATION]),
        "the token never reaches the event"
    );
}

#[tokio::test]
async fn bad_json_is_400_wrong_method_405_unknown_path_404_and_nothing_published() {
    let rec = Arc::new(Recorder::default());
    let r = router(one(context("POST")), rec.clone());
    assert_eq!(
        send(r.clone(), post("/example", "{not json")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(r.clone(), post("/example", "")).await.0,
        StatusCode::BAD_REQUEST
    );
    let put = Request::put("/example")
        .body(Body::from("{}"))
        .expect("the test request is well-formed");
    assert_eq!(send(r.clone(), put).await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        send(r.clone(), post("/elsewhere", "{}")).await.0,
        StatusCode::NOT_FOUND
    );
    let health = Request::get("/health")
        .body(Body::empty())
        .expect("the test request is well-formed");
    assert_eq!(send(r, health).await.0, StatusCode::OK);
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn form_bodies_and_get_queries_become_maps_of_lists() {
    let rec = Arc::new(Recorder::default());
    let mut events = one(context("POST"));
    let mut get = context("GET");
    get.endpoint = "/q".into();
    events.insert(
        "query".into(),
        WebhookEventSource {
            webhook_context: get,
            ..Default::default()
        },
    );
    let r = router(events, rec.clone());
    let form = Request::post("/example")
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(Body::from("a=1&b=hello+world&a=%32&c"))
        .expect("the test request is well-formed");
    assert_eq!(send(r.clone(), form).await.0, StatusCode::OK);
    let q = Request::get("/q?x=1&x=2&y=%41")
        .body(Body::empty())
        .expect("the test request is well-formed");
    assert_eq!(send(r, q).await.0, StatusCode::OK);
    let events = rec.events();
    assert_eq!(
        events[0].1.data().map(|d| d["body"].clone()),
        Some(json!({"a": ["1", "2"], "b": ["hello world"], "c": [""]}))
    );
    assert_eq!(events[1].0, Subject::new("hooks", "query"));
    assert_eq!(
        events[1].1.data().map(|d| d["body"].clone()),
        Some(json!({"x": ["1", "2"], "y": ["A"]}))
    );
}

#[test]
fn canonical_header_names_match_go() {
    assert_eq!(super::canonical_header_name("x-github-event"), "X-Github-Event");
    assert_eq!(super::canonical_header_name("CONTENT-TYPE"), "Content-Type");
}

#[test]
fn invalid_specs_are_build_errors_not_panics() {
    let rec = Arc::new(Recorder::default());
    for (port, endpoint, method) in [
        ("x", "/a", "POST"),
        ("70000", "/a", "POST"),
        ("1", "a", "POST"),
        ("1", "/a", ""),
        ("1", "/:a", "POST"),
    ] {
        let ctx = WebhookContext {
            port: port.into(),
            endpoint: endpoint.into(),
            method: method.into(),
            ..Default::default()
        };
        assert!(
            build_routes(&one(ctx), rec.clone()).is_err(),
            "{port} {endpoint} {method}"
        );
    }
    let mut ctx = context("POST");
    ctx.auth_secret = Some(SecretKeySelector {
        name: "nope".into(),
        key: "k".into(),
        optional: None,
    });
    assert!(matches!(
        build_routes(&one(ctx), rec),
        Err(crate::BuildError::ResolveSecret { .. })
    ));
}
