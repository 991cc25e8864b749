//! The slack trigger against a local server speaking the part of Slack's Web API it uses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use sluice_crds::sensor::{Trigger as TriggerSpec, TriggerTemplate};
use sluice_eventbus::EventBuilder;

use super::*;
use crate::firing::FiringId;
use crate::secrets::MapSecretResolver;
use crate::triggers::http::egress::HttpClients;
use crate::triggers::ErrorKind;

#[derive(Clone, Default)]
struct Api {
    calls: Arc<Mutex<Vec<(String, String, Value)>>>,
    joined: Arc<Mutex<HashSet<String>>>,
}

/// `chat.postMessage`: `invalid_auth` for another token, `ratelimited` on channel `busy`,
/// `not_in_channel` on `private` until joined; `ts` counts posts. `conversations.join` joins.
async fn api() -> anyhow::Result<(String, Api)> {
    async fn handle(
        State(api): State<Api>,
        Path(method): Path<String>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let n = {
            let mut calls = api.calls.lock().unwrap_or_else(|p| p.into_inner());
            calls.push((method.clone(), auth.clone(), body.clone()));
            calls.len()
        };
        if auth != "Bearer xoxb-good" {
            return Json(json!({"ok": false, "error": "invalid_auth"}));
        }
        let channel = body["channel"].as_str().unwrap_or_default().to_owned();
        let mut joined = api.joined.lock().unwrap_or_else(|p| p.into_inner());
        Json(match method.as_str() {
            "conversations.join" => {
                joined.insert(channel);
                json!({"ok": true})
            }
            "chat.postMessage" if channel == "busy" => json!({"ok": false, "error": "ratelimited"}),
            "chat.postMessage" if channel == "private" && !joined.contains("private") => {
                json!({"ok": false, "error": "not_in_channel"})
            }
            "chat.postMessage" => json!({"ok": true, "ts": format!("1700000000.{n:06}")}),
            _ => json!({"ok": false, "error": "unknown_method"}),
        })
    }
    let state = Api::default();
    let app = axum::Router::new()
        .route("/api/{method}", axum::routing::post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}/api"), state))
}

fn trigger(base: &str, slack: Value) -> anyhow::Result<(SlackTrigger, TriggerSpec)> {
    let spec: TriggerSpec = serde_json::from_value(json!({"template": {"name": "notify", "slack": slack}}))?;
    let ctx = BuildContext {
        sensor: "s".into(),
        secrets: Arc::new(
            MapSecretResolver::new()
                .with_secret("slack", "token", "xoxb-good\n")
                .with_secret("slack", "bad", "xoxb-bad"),
        ),
        http: HttpClients::from(reqwest::Client::new()).with_slack_api_url(base),
        namespace: None,
    };
    let template = spec.template.clone().unwrap_or_default();
    let slack = template.slack.clone().unwrap_or_default();
    Ok((SlackTrigger::build("notify", &slack, &ctx)?, spec))
}

fn firing(template: TriggerTemplate, id: &str) -> anyhow::Result<Firing> {
    let event = EventBuilder::new("github", "push", "github")
        .id(id)
        .data_json(json!({"body": {"pusher": {"name": "ada"}, "repository": {"name": "sluice"}}}))
        .build()?;
    let events = BTreeMap::from([("push".to_owned(), event)]);
    Ok(Firing {
        id: FiringId::new("notify", &events),
        sensor: "s".into(),
        trigger: "notify".into(),
        events,
        template,
    })
}

fn calls(api: &Api) -> Vec<(String, String, Value)> {
    api.calls.lock().map(|c| c.clone()).unwrap_or_default()
}

#[tokio::test]
async fn posts_the_parameterized_message_with_blocks_and_sender() -> anyhow::Result<()> {
    let (base, api) = api().await?;
    let (t, spec) = trigger(
        &base,
        json!({
            "slackToken": {"name": "slack", "key": "token"},
            "channel": "#deploys",
            "message": "placeholder",
            "blocks": "[{\"type\": \"divider\"}]",
            "sender": {"username": "sluice", "icon": ":rocket:"},
            "parameters": [{"src": {"dependencyName": "push", "dataKey": "body.pusher.name"}, "dest": "message"}]
        }),
    )?;
    let out = t
        .execute(&firing(spec.template.clone().unwrap_or_default(), "e1")?)
        .await?;
    assert_eq!(out, Outcome::Published { sequence: None });
    let calls = calls(&api);
    assert_eq!(calls.len(), 1);
    let (method, auth, body) = &calls[0];
    assert_eq!(method, "chat.postMessage");
    assert_eq!(auth, "Bearer xoxb-good", "the token is sent trimmed");
    assert_eq!(
        body,
        &json!({"channel": "deploys", "text": "ada", "blocks": [{"type": "divider"}],
                "username": "sluice", "icon_emoji": ":rocket:"})
    );
    // describe shows the same body, with the token masked.
    let shown = t.describe(&firing(spec.template.clone().unwrap_or_default(), "e1")?)?;
    assert_eq!(shown["body"], *body);
    assert!(!shown.to_string().contains("xoxb"), "{shown}");
    Ok(())
}

#[tokio::test]
async fn messages_with_one_aggregation_key_share_a_thread() -> anyhow::Result<()> {
    let (base, api) = api().await?;
    let (t, spec) = trigger(
        &base,
        json!({"slackToken": {"name": "slack", "key": "token"}, "channel": "deploys", "message": "m",
               "thread": {"messageAggregationKey": "release-1", "broadcastMessageToChannel": true}}),
    )?;
    let template = spec.template.clone().unwrap_or_default();
    for id in ["e1", "e2", "e3"] {
        t.execute(&firing(template.clone(), id)?).await?;
    }
    let calls = calls(&api);
    assert_eq!(
        calls[0].2.get("thread_ts"),
        None,
        "the first message starts the thread"
    );
    for (_, _, body) in &calls[1..] {
        assert_eq!(body["thread_ts"], json!("1700000000.000001"));
        assert_eq!(body["reply_broadcast"], json!(true));
    }
    Ok(())
}

#[tokio::test]
async fn joins_a_channel_it_is_not_in_and_posts_again() -> anyhow::Result<()> {
    let (base, api) = api().await?;
    let (t, spec) = trigger(
        &base,
        json!({"slackToken": {"name": "slack", "key": "token"}, "channel": "private", "message": "m"}),
    )?;
    t.execute(&firing(spec.template.clone().unwrap_or_default(), "e1")?)
        .await?;
    let methods: Vec<String> = calls(&api).into_iter().map(|c| c.0).collect();
    assert_eq!(
        methods,
        ["chat.postMessage", "conversations.join", "chat.postMessage"]
    );
    Ok(())
}

#[tokio::test]
async fn slack_errors_are_permanent_unless_rate_limited() -> anyhow::Result<()> {
    let (base, _api) = api().await?;
    let cases: HashMap<&str, (&str, ErrorKind)> = HashMap::from([
        ("bad", ("deploys", ErrorKind::Permanent)),
        ("token", ("busy", ErrorKind::Retryable)),
    ]);
    for (key, (channel, kind)) in cases {
        let (t, spec) = trigger(
            &base,
            json!({"slackToken": {"name": "slack", "key": key}, "channel": channel, "message": "m"}),
        )?;
        let err = t
            .execute(&firing(spec.template.clone().unwrap_or_default(), "e1")?)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("{channel}: posted"))?;
        assert_eq!(err.kind(), kind, "{err}");
        assert!(!err.to_string().contains("xoxb"), "no token in errors: {err}");
    }
    Ok(())
}

#[test]
fn bad_specs_are_build_errors_naming_the_field() {
    for (slack, fragment) in [
        (json!({"channel": "c"}), "`slack.slackToken`"),
        (
            json!({"slackToken": {"name": "slack", "key": "token"}}),
            "`slack.channel`",
        ),
        (
            json!({"slackToken": {"name": "slack", "key": "token"}, "channel": "c", "blocks": "{\"a\": 1}"}),
            "`slack.blocks`: must be a JSON array",
        ),
        (
            json!({"slackToken": {"name": "slack", "key": "nope"}, "channel": "c"}),
            "failed to build trigger `notify`",
        ),
    ] {
        let err = trigger("http://127.0.0.1:9/api", slack.clone())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(fragment), "{slack}: {err}");
    }
}

/// `--slack-api-url` may carry credentials: a failed call's message and the described request mask
/// them.
#[tokio::test]
async fn a_failed_call_masks_the_credentials_of_the_api_url() -> anyhow::Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://user:slack-url-pass@127.0.0.1:{closed}/api");
    let (t, spec) = trigger(
        &base,
        json!({"slackToken": {"name": "slack", "key": "token"}, "channel": "general", "message": "hi"}),
    )?;
    let f = firing(spec.template.clone().unwrap_or_default(), "e1")?;
    let error = t.execute(&f).await.expect_err("nothing listens");
    let text = sluice_eventbus::error_chain(&error);
    assert!(!text.contains("slack-url-pass"), "{text}");
    assert!(text.contains("***@127.0.0.1"), "{text}");
    let described = t.describe(&f)?.to_string();
    assert!(!described.contains("slack-url-pass"), "{described}");
    Ok(())
}
