//! The bitbucketserver kind through the shared router (no socket), and hook registration against a
//! local stand-in for the Bitbucket Server REST API.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_crds::eventsource::{BitbucketServerEventSource, BitbucketServerRepository, WebhookContext};

use crate::push::signature::{hmac_hex, Digest};
use crate::testing::{
    built, context, post, router, run_hooks_until, selector, send, stand_in_api, summary, Recorder, Secrets,
};

const SECRET: &str = "bbs-secret";
const REFS_CHANGED: &str = r#"{"eventKey":"repo:refs_changed","date":"2026-02-03T10:00:00+0000","actor":{"name":"ada","id":101},"repository":{"slug":"pipes","project":{"key":"SLU"}},"changes":[{"ref":{"id":"refs/tags/v1.0.0","displayId":"v1.0.0","type":"TAG"},"fromHash":"0000000000000000000000000000000000000000","toHash":"a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0","type":"ADD"},{"ref":{"id":"refs/tags/v1.0.1","displayId":"v1.0.1","type":"TAG"},"fromHash":"0000000000000000000000000000000000000000","toHash":"b1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0","type":"ADD"}]}"#;

fn spec() -> BitbucketServerEventSource {
    BitbucketServerEventSource {
        webhook: Some(WebhookContext {
            port: "12000".into(),
            endpoint: "/bbs".into(),
            method: "POST".into(),
            ..Default::default()
        }),
        webhook_secret: Some(selector("bbs", "secret")),
        ..Default::default()
    }
}

fn build(spec: BitbucketServerEventSource, rec: Arc<Recorder>) -> crate::BuiltEventSource {
    let secrets = Secrets::default()
        .with("bbs", "secret", SECRET)
        .with("bbs", "token", "bbs-api-token");
    let mut out = built("bbs");
    super::build(
        "bbs",
        &BTreeMap::from([("repo".to_string(), spec)]),
        &context(secrets, rec),
        &mut out,
    )
    .expect("the test's bitbucketserver spec builds");
    out
}

async fn deliver(app: &axum::Router, key: &str, request_id: &str, sig: &str, body: &[u8]) -> StatusCode {
    let req = post(
        "/bbs",
        &[
            ("content-type", "application/json"),
            ("x-event-key", key),
            ("x-request-id", request_id),
            ("x-hub-signature", sig),
        ],
        body.to_vec(),
    );
    send(app.clone(), req).await.0
}

fn sig(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(Digest::Sha256, secret.as_bytes(), body))
}

#[tokio::test]
async fn signed_deliveries_publish_and_redeliveries_dedupe() {
    let rec = Arc::new(Recorder::default());
    let app = router(build(spec(), rec.clone()).routes, 12000);
    let body = REFS_CHANGED.as_bytes();
    for _ in 0..2 {
        assert_eq!(
            deliver(&app, "repo:refs_changed", "r-1", &sig(SECRET, body), body).await,
            StatusCode::OK
        );
    }
    let events = rec.events();
    assert_eq!(events.len(), 1);
    let data = events[0].1.data().cloned().unwrap_or(Value::Null);
    assert_eq!(
        data["body"],
        serde_json::from_str::<Value>(REFS_CHANGED).unwrap_or(Value::Null)
    );
    assert_eq!(data["headers"]["X-Event-Key"], json!(["repo:refs_changed"]));
    assert_eq!(events[0].1.ty(), "bitbucketserver");
}

#[tokio::test]
async fn bad_signatures_are_401_ping_is_200_and_nothing_published() {
    let rec = Arc::new(Recorder::default());
    let app = router(build(spec(), rec.clone()).routes, 12000);
    let body = REFS_CHANGED.as_bytes();
    let mut flipped = body.to_vec();
    flipped[5] ^= 0x01;
    assert_eq!(
        deliver(&app, "repo:refs_changed", "r-1", &sig(SECRET, body), &flipped).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(&app, "repo:refs_changed", "r-1", &sig("nope", body), body).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(&app, "repo:refs_changed", "r-1", "", body).await,
        StatusCode::UNAUTHORIZED
    );
    let ping = b"{\"test\": true}";
    assert_eq!(
        deliver(&app, "diagnostics:ping", "r-2", &sig(SECRET, ping), ping).await,
        StatusCode::OK
    );
    let broken = b"{";
    assert_eq!(
        deliver(&app, "repo:refs_changed", "r-3", &sig(SECRET, broken), broken).await,
        StatusCode::BAD_REQUEST
    );
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn one_event_per_change() {
    let rec = Arc::new(Recorder::default());
    let mut s = spec();
    s.one_event_per_change = true;
    let app = router(build(s, rec.clone()).routes, 12000);
    let body = REFS_CHANGED.as_bytes();
    for _ in 0..2 {
        assert_eq!(
            deliver(&app, "repo:refs_changed", "r-9", &sig(SECRET, body), body).await,
            StatusCode::OK
        );
    }
    let events = rec.events();
    assert_eq!(
        events.len(),
        2,
        "two changes, two events; the redelivery adds none"
    );
    let data: Vec<Value> = events
        .iter()
        .map(|(_, e)| e.data().cloned().unwrap_or(Value::Null))
        .collect();
    assert!(data.iter().all(|d| super::changes_of(d) == 1));
    assert_eq!(data[0]["body"]["changes"][0]["ref"]["displayId"], json!("v1.0.0"));
    assert_eq!(data[1]["body"]["changes"][0]["ref"]["displayId"], json!("v1.0.1"));
}

#[tokio::test]
async fn hooks_are_created_and_deleted_on_finish() {
    let (addr, calls) =
        stand_in_api(
            ("authorization", "Bearer bbs-api-token".into()),
            |method, _| match method {
                "GET" => json!({"values": [], "isLastPage": true}),
                "POST" => json!({"id": 12}),
                _ => json!({}),
            },
        )
        .await;
    let mut s = spec();
    s.access_token = Some(selector("bbs", "token"));
    s.bitbucketserver_base_url = format!("http://{addr}/rest");
    s.repositories = vec![BitbucketServerRepository {
        project_key: "SLU".into(),
        repository_slug: "pipes".into(),
    }];
    s.events = vec!["repo:refs_changed".into()];
    s.delete_hook_on_finish = true;
    if let Some(w) = s.webhook.as_mut() {
        w.url = "https://hooks.example.test".into();
    }
    let mut out = build(s, Arc::new(Recorder::default()));
    let calls = run_hooks_until(out.tasks.remove(0), &calls, 2).await;
    let summary = summary(&calls);
    let path = "/rest/api/1.0/projects/SLU/repos/pipes/webhooks".to_string();
    assert_eq!(
        summary,
        vec![
            ("GET".to_string(), path.clone()),
            ("POST".into(), path.clone()),
            ("DELETE".into(), format!("{path}/12")),
        ]
    );
    assert_eq!(calls[1].2["url"], json!("https://hooks.example.test/bbs"));
    assert_eq!(calls[1].2["configuration"]["secret"], json!(SECRET));
    assert_eq!(calls[1].2["events"], json!(["repo:refs_changed"]));
}
