//! The slack kind through the shared router (no socket): signatures, replays, the URL verification
//! challenge, and the three request kinds.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_crds::eventsource::{SlackEventSource, WebhookContext};
use sluice_eventbus::deterministic_id;

use crate::clock::Clock;
use crate::push::signature::{hmac_hex, Digest};
use crate::testing::{built, context, post, router, selector, send, Recorder, Secrets};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const NOW: i64 = 1_780_000_000;

struct Fixed;
impl Clock for Fixed {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).unwrap_or_default()
    }
}

fn app(token: bool, rec: Arc<Recorder>) -> axum::Router {
    let spec = SlackEventSource {
        webhook: Some(WebhookContext {
            port: "12000".into(),
            endpoint: "/slack".into(),
            method: "POST".into(),
            ..Default::default()
        }),
        signing_secret: Some(selector("slack", "signing")),
        token: token.then(|| selector("slack", "token")),
        ..Default::default()
    };
    let secrets = Secrets::default()
        .with("slack", "signing", SECRET)
        .with("slack", "token", "verif-token");
    let mut out = built("sl");
    super::build_with_clock(
        "sl",
        &BTreeMap::from([("app".to_string(), spec)]),
        &context(secrets, rec),
        &mut out,
        Arc::new(Fixed),
    )
    .expect("the test's slack spec builds");
    router(out.routes, 12000)
}

fn sign(ts: i64, body: &[u8], secret: &str) -> String {
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(body);
    format!("v0={}", hmac_hex(Digest::Sha256, secret.as_bytes(), &base))
}

async fn call(
    app: &axum::Router,
    ts: i64,
    sig: &str,
    content_type: &str,
    body: &[u8],
) -> (StatusCode, String) {
    let ts = ts.to_string();
    let req = post(
        "/slack",
        &[
            ("content-type", content_type),
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", sig),
        ],
        body.to_vec(),
    );
    let (status, _, text) = send(app.clone(), req).await;
    (status, text)
}

const CALLBACK: &str = r#"{"token":"verif-token","team_id":"T0001","api_app_id":"A0001","type":"event_callback","event_id":"Ev0PV52K21","event_time":1780000000,"event":{"type":"app_mention","user":"U0001","text":"<@U0BOT> deploy checkout","ts":"1780000000.000100","channel":"C0001","event_ts":"1780000000.000100"}}"#;

#[tokio::test]
async fn a_signed_callback_is_published_once_per_event_id() {
    let rec = Arc::new(Recorder::default());
    let app = app(true, rec.clone());
    let body = CALLBACK.as_bytes();
    for _ in 0..2 {
        // Slack retries with the same event_id.
        assert_eq!(
            call(
                &app,
                NOW - 10,
                &sign(NOW - 10, body, SECRET),
                "application/json",
                body
            )
            .await
            .0,
            StatusCode::OK
        );
    }
    let events = rec.events();
    assert_eq!(events.len(), 1);
    let e = &events[0].1;
    assert_eq!(e.ty(), "slack");
    assert_eq!(e.id(), deterministic_id(&["slack", "sl", "app", "Ev0PV52K21"]));
    let data = e.data().cloned().unwrap_or(Value::Null);
    assert_eq!(data["type"], json!("app_mention"));
    assert_eq!(data["Data"]["text"], json!("<@U0BOT> deploy checkout"));
}

#[tokio::test]
async fn bad_signature_wrong_secret_replay_and_wrong_token_are_401() {
    let rec = Arc::new(Recorder::default());
    let app = app(true, rec.clone());
    let body = CALLBACK.as_bytes();
    let good = sign(NOW, body, SECRET);
    let mut flipped = body.to_vec();
    flipped[20] ^= 0x02;
    assert_eq!(
        call(&app, NOW, &good, "application/json", &flipped).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, NOW, &sign(NOW, body, "other"), "application/json", body)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // A captured request replayed six minutes later: correctly signed, but too old.
    let old = NOW - 6 * 60;
    assert_eq!(
        call(&app, old, &sign(old, body, SECRET), "application/json", body)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, NOW, "", "application/json", body).await.0,
        StatusCode::UNAUTHORIZED
    );
    let wrong_token = CALLBACK.replace("verif-token", "guess");
    assert_eq!(
        call(
            &app,
            NOW,
            &sign(NOW, wrong_token.as_bytes(), SECRET),
            "application/json",
            wrong_token.as_bytes()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn url_verification_is_answered_with_the_challenge() {
    let rec = Arc::new(Recorder::default());
    let app = app(false, rec.clone());
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let (status, text) = call(&app, NOW, &sign(NOW, body, SECRET), "application/json", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn interactions_and_slash_commands() {
    let rec = Arc::new(Recorder::default());
    let app = app(false, rec.clone());
    let form = "payload=%7B%22type%22%3A%22block_actions%22%2C%22trigger_id%22%3A%2213345224609.738474920.8088930838d88f008e0%22%2C%22actions%22%3A%5B%7B%22action_id%22%3A%22approve%22%7D%5D%7D";
    let ct = "application/x-www-form-urlencoded";
    assert_eq!(
        call(
            &app,
            NOW,
            &sign(NOW, form.as_bytes(), SECRET),
            ct,
            form.as_bytes()
        )
        .await
        .0,
        StatusCode::OK
    );
    let slash = "token=verif-token&team_id=T0001&team_domain=example&channel_id=C2147483705&channel_name=test&user_id=U2147483697&user_name=Steve&command=%2Fdeploy&text=checkout+1.4.2&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678&trigger_id=99995224609.738474920.1111930838d88f008e0&api_app_id=A123456";
    assert_eq!(
        call(
            &app,
            NOW,
            &sign(NOW, slash.as_bytes(), SECRET),
            ct,
            slash.as_bytes()
        )
        .await
        .0,
        StatusCode::OK
    );
    let neither = "foo=bar";
    assert_eq!(
        call(
            &app,
            NOW,
            &sign(NOW, neither.as_bytes(), SECRET),
            ct,
            neither.as_bytes()
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let events = rec.events();
    assert_eq!(events.len(), 2);
    let interaction = events[0].1.data().cloned().unwrap_or(Value::Null);
    assert_eq!(interaction["actions"][0]["action_id"], json!("approve"));
    let command = events[1].1.data().cloned().unwrap_or(Value::Null);
    assert_eq!(command["command"], json!("/deploy"));
    assert_eq!(command["text"], json!("checkout 1.4.2"));
    assert!(
        command.get("token").is_none(),
        "the verification token never reaches the event"
    );
    let broken = b"{\"type\":";
    assert_eq!(
        call(&app, NOW, &sign(NOW, broken, SECRET), "application/json", broken)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}
