//! The bitbucket (cloud) kind through the shared router (no socket): the Sluice signature extension,
//! redelivery, bad input; hook creation with basic auth against a local stand-in API.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_crds::eventsource::{
    BitbucketAuth, BitbucketBasicAuth, BitbucketEventSource, BitbucketRepository, WebhookContext,
};
use sluice_eventbus::deterministic_id;

use crate::push::signature::{hmac_hex, Digest};
use crate::testing::{
    built, context, post, router, run_hooks_until, selector, send, stand_in_api, summary, Recorder, Secrets,
};

const SECRET: &str = "bb-cloud-secret";
const PUSH: &str = r#"{"push":{"changes":[{"new":{"type":"branch","name":"main","target":{"hash":"c0ffee0000000000000000000000000000000001"}},"old":{"type":"branch","name":"main"},"created":false,"forced":false}]},"repository":{"type":"repository","full_name":"sluice-test/pipes","uuid":"{b1a2c3d4-0000-4000-8000-000000000001}"},"actor":{"display_name":"Ada","uuid":"{a0000000-0000-4000-8000-000000000002}"}}"#;

fn spec() -> BitbucketEventSource {
    BitbucketEventSource {
        webhook: Some(WebhookContext {
            port: "12000".into(),
            endpoint: "/bitbucket".into(),
            method: "POST".into(),
            ..Default::default()
        }),
        webhook_secret: Some(selector("bb", "secret")),
        ..Default::default()
    }
}

fn build(spec: BitbucketEventSource, rec: Arc<Recorder>, api: &str) -> crate::BuiltEventSource {
    let secrets = Secrets::default()
        .with("bb", "secret", SECRET)
        .with("bb", "user", "ada")
        .with("bb", "password", "app-password");
    let mut out = built("bb");
    super::build_with(
        "bb",
        &BTreeMap::from([("repo".to_string(), spec)]),
        &context(secrets, rec),
        &mut out,
        api,
    )
    .expect("the test's bitbucket spec builds");
    out
}

async fn deliver(app: &axum::Router, uuid: &str, sig: Option<&str>, body: &[u8]) -> StatusCode {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-event-key", "repo:push"),
        ("x-request-uuid", uuid),
    ];
    if let Some(s) = sig {
        headers.push(("x-hub-signature", s));
    }
    send(app.clone(), post("/bitbucket", &headers, body.to_vec()))
        .await
        .0
}

fn sig(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(Digest::Sha256, secret.as_bytes(), body))
}

#[tokio::test]
async fn signed_deliveries_publish_once_and_bad_ones_are_401() {
    let rec = Arc::new(Recorder::default());
    let app = router(build(spec(), rec.clone(), "http://unused/").routes, 12000);
    let body = PUSH.as_bytes();
    let mut flipped = body.to_vec();
    flipped[3] ^= 0x01;
    assert_eq!(
        deliver(&app, "u-1", Some(&sig(SECRET, body)), &flipped).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(&app, "u-1", Some(&sig("other", body)), body).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(deliver(&app, "u-1", None, body).await, StatusCode::UNAUTHORIZED);
    assert!(rec.events().is_empty());
    for _ in 0..2 {
        assert_eq!(
            deliver(&app, "u-1", Some(&sig(SECRET, body)), body).await,
            StatusCode::OK
        );
    }
    let broken = b"{";
    assert_eq!(
        deliver(&app, "u-2", Some(&sig(SECRET, broken)), broken).await,
        StatusCode::BAD_REQUEST
    );
    let events = rec.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.ty(), "bitbucket");
    assert_eq!(
        events[0].1.id(),
        deterministic_id(&["bitbucket", "bb", "repo", "u-1"])
    );
    assert_eq!(
        events[0].1.data().map(|d| d["body"].clone()),
        serde_json::from_str::<Value>(PUSH).ok()
    );
}

#[tokio::test]
async fn without_a_secret_deliveries_pass_as_upstream() {
    let rec = Arc::new(Recorder::default());
    let mut s = spec();
    s.webhook_secret = None;
    let app = router(build(s, rec.clone(), "http://unused/").routes, 12000);
    assert_eq!(deliver(&app, "u-1", None, PUSH.as_bytes()).await, StatusCode::OK);
    assert_eq!(rec.events().len(), 1);
}

#[tokio::test]
async fn hooks_are_created_with_basic_auth_and_deleted() {
    // "ada:app-password" in base64.
    let (addr, calls) = stand_in_api(
        ("authorization", "Basic YWRhOmFwcC1wYXNzd29yZA==".into()),
        |method, _| match method {
            "GET" => json!({"values": []}),
            "POST" => json!({"uuid": "hook-1"}),
            _ => json!({}),
        },
    )
    .await;
    let mut s = spec();
    s.auth = Some(BitbucketAuth {
        basic: Some(BitbucketBasicAuth {
            username: Some(selector("bb", "user")),
            password: Some(selector("bb", "password")),
        }),
        oauth_token: None,
    });
    s.repositories = vec![BitbucketRepository {
        owner: "sluice-test".into(),
        repository_slug: "pipes".into(),
    }];
    s.events = vec!["repo:push".into()];
    s.delete_hook_on_finish = true;
    if let Some(w) = s.webhook.as_mut() {
        w.url = "https://hooks.example.test".into();
    }
    let mut out = build(s, Arc::new(Recorder::default()), &format!("http://{addr}/2.0/"));
    let calls = run_hooks_until(out.tasks.remove(0), &calls, 2).await;
    let summary = summary(&calls);
    let path = "/2.0/repositories/sluice-test/pipes/hooks".to_string();
    assert_eq!(
        summary,
        vec![
            ("GET".to_string(), path.clone()),
            ("POST".into(), path.clone()),
            ("DELETE".into(), format!("{path}/hook-1")),
        ]
    );
    assert_eq!(calls[1].2["secret"], json!(SECRET));
    assert_eq!(calls[1].2["url"], json!("https://hooks.example.test/bitbucket"));
}
