//! The stripe kind through the shared router (no socket): signatures, tolerance, event filter,
//! retries; endpoint registration against a local stand-in for the Stripe API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_crds::eventsource::{StripeEventSource, WebhookContext};
use sluice_eventbus::deterministic_id;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::push::signature::{hmac_hex, Digest};
use crate::testing::{built, context, post, router, selector, send, Recorder, Secrets};

const SECRET: &str = "whsec_test_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH";
const NOW: i64 = 1_780_000_000;
const EVENT: &str = r#"{"id":"evt_1QXyZ2AbCdEfGhIj","object":"event","api_version":"2024-06-20","created":1780000000,"type":"charge.succeeded","livemode":false,"pending_webhooks":1,"data":{"object":{"id":"ch_3QXyZ2","object":"charge","amount":4200,"currency":"eur","paid":true}}}"#;

struct Fixed;
impl Clock for Fixed {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).unwrap_or_default()
    }
}

fn spec() -> StripeEventSource {
    StripeEventSource {
        webhook: Some(WebhookContext {
            port: "12000".into(),
            endpoint: "/stripe".into(),
            method: "POST".into(),
            url: "https://hooks.example.test".into(),
            ..Default::default()
        }),
        webhook_secret: Some(selector("stripe", "whsec")),
        event_filter: vec!["charge.succeeded".into()],
        ..Default::default()
    }
}

fn secrets() -> Secrets {
    Secrets::default()
        .with("stripe", "whsec", SECRET)
        .with("stripe", "api", "sk_test_123")
}

fn build(spec: StripeEventSource, rec: Arc<Recorder>, api: &str) -> crate::BuiltEventSource {
    let mut out = built("st");
    super::build_with(
        "st",
        &BTreeMap::from([("pay".to_string(), spec)]),
        &context(secrets(), rec),
        &mut out,
        Arc::new(Fixed),
        api,
    )
    .expect("the test's stripe spec builds");
    out
}

fn signature(t: i64, body: &[u8], secret: &str) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "t={t},v1={},v0=ignored",
        hmac_hex(Digest::Sha256, secret.as_bytes(), &signed)
    )
}

async fn call(app: &axum::Router, sig: &str, body: &[u8]) -> StatusCode {
    let req = post(
        "/stripe",
        &[("content-type", "application/json"), ("stripe-signature", sig)],
        body.to_vec(),
    );
    send(app.clone(), req).await.0
}

#[tokio::test]
async fn signed_events_are_published_once_per_stripe_id() {
    let rec = Arc::new(Recorder::default());
    let app = router(build(spec(), rec.clone(), "http://unused/").routes, 12000);
    let body = EVENT.as_bytes();
    for _ in 0..2 {
        assert_eq!(
            call(&app, &signature(NOW - 30, body, SECRET), body).await,
            StatusCode::OK
        );
    }
    let events = rec.events();
    assert_eq!(events.len(), 1, "Stripe's retry is the same event");
    assert_eq!(events[0].1.ty(), "stripe");
    assert_eq!(
        events[0].1.id(),
        deterministic_id(&["stripe", "st", "pay", "evt_1QXyZ2AbCdEfGhIj"])
    );
    assert_eq!(
        events[0].1.data().cloned(),
        Some(serde_json::from_str::<Value>(EVENT).unwrap_or(Value::Null))
    );
}

#[tokio::test]
async fn bad_signatures_replays_and_filtered_types() {
    let rec = Arc::new(Recorder::default());
    let app = router(build(spec(), rec.clone(), "http://unused/").routes, 12000);
    let body = EVENT.as_bytes();
    let mut flipped = body.to_vec();
    flipped[30] ^= 0x01;
    assert_eq!(
        call(&app, &signature(NOW, body, SECRET), &flipped).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, &signature(NOW, body, "whsec_other"), body).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, &signature(NOW - 301, body, SECRET), body).await,
        StatusCode::UNAUTHORIZED,
        "outside the tolerance"
    );
    assert_eq!(call(&app, "v1=abc", body).await, StatusCode::UNAUTHORIZED);
    let unsigned = post("/stripe", &[("content-type", "application/json")], body.to_vec());
    assert_eq!(send(app.clone(), unsigned).await.0, StatusCode::UNAUTHORIZED);
    let refund = EVENT
        .replace("charge.succeeded", "charge.refunded")
        .replace("evt_1", "evt_2");
    assert_eq!(
        call(
            &app,
            &signature(NOW, refund.as_bytes(), SECRET),
            refund.as_bytes()
        )
        .await,
        StatusCode::OK
    );
    let broken = b"{\"id\":";
    assert_eq!(
        call(&app, &signature(NOW, broken, SECRET), broken).await,
        StatusCode::BAD_REQUEST
    );
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn create_webhook_registers_the_endpoint_once() {
    use axum::routing::get;
    type Calls = Arc<Mutex<Vec<(String, String)>>>;
    let calls: Calls = Arc::default();
    let api = axum::Router::new()
        .route(
            "/v1/webhook_endpoints",
            get(|axum::extract::State(c): axum::extract::State<Calls>, h: axum::http::HeaderMap| async move {
                assert_eq!(h.get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer sk_test_123"));
                if let Ok(mut c) = c.lock() {
                    c.push(("GET".into(), String::new()));
                }
                axum::Json(json!({"object": "list", "data": [{"id": "we_other", "url": "https://elsewhere.test/x"}]}))
            })
            .post(|axum::extract::State(c): axum::extract::State<Calls>, body: String| async move {
                if let Ok(mut c) = c.lock() {
                    c.push(("POST".into(), body));
                }
                axum::Json(json!({"id": "we_new", "object": "webhook_endpoint"}))
            }),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port can be bound");
    let addr = listener.local_addr().expect("a bound listener has an address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, api).await;
    });
    let mut s = spec();
    s.create_webhook = true;
    s.api_key = Some(selector("stripe", "api"));
    let mut out = build(s, Arc::new(Recorder::default()), &format!("http://{addr}/v1/"));
    assert_eq!(out.tasks.len(), 1);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(out.tasks.remove(0).run(cancel.clone()));
    while calls.lock().map(|c| c.len()).unwrap_or(0) < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cancel.cancel();
    let _ = task.await;
    let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[1].1,
        "url=https%3A%2F%2Fhooks.example.test%2Fstripe&enabled_events%5B%5D=charge.succeeded"
    );
}
