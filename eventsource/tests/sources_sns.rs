//! The sns source against moto's SNS (S3_ENDPOINT, from `scripts/services.sh start s3`): the source
//! subscribes its webhook URL to a topic at start (readiness false until then), moto delivers a
//! published message to it over HTTP, and the event arrives with upstream's data shape. moto signs
//! with a certificate URL on AWS, which this machine cannot reach, so `validateSignature` is covered
//! by the unit tests on our own signed fixtures (eventsource/src/sources/sns/tests.rs).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use sluice_crds::eventsource::EventSource;
use sluice_eventsource::http::RouteTable;
use sluice_eventsource::testing::{setting, start, Recorder};
use sluice_eventsource::{build, FileSecretResolver, Readiness, SourceContext};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn endpoint() -> String {
    setting("S3_ENDPOINT")
}

/// One unsigned SNS Query call to moto (it routes by the service in the credential scope).
async fn sns(action: &str, params: &[(&str, &str)]) -> String {
    let mut form = format!("Action={action}&Version=2010-03-31");
    for (k, v) in params {
        form.push_str(&format!("&{k}={}", urlencode(v)));
    }
    let res = reqwest::Client::new()
        .post(format!("{}/", endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=0")
        .body(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
    assert!(res.status().is_success(), "{action}: {}", res.status());
    res.text().await.unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn between(text: &str, open: &str, close: &str) -> String {
    text.split_once(open)
        .and_then(|(_, rest)| rest.split_once(close))
        .map(|(v, _)| v.to_string())
        .unwrap_or_else(|| panic!("no {open} in {text}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port can be bound")
}

fn context(dir: &std::path::Path, bus: Arc<Recorder>, readiness: &Readiness) -> SourceContext {
    let mut ctx = SourceContext::new(Arc::new(FileSecretResolver::new(dir.join("secrets"))), bus);
    ctx.readiness = readiness.clone();
    ctx
}

fn manifest(topic: &str, port: u16, sns_endpoint: &str) -> EventSource {
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: sns-it}}\nspec:\n  sns:\n    orders:\n      topicArn: \"{topic}\"\n      region: us-east-1\n      endpoint: \"{sns_endpoint}\"\n      accessKey: {{name: aws, key: id}}\n      secretKey: {{name: aws, key: secret}}\n      metadata: {{team: data}}\n      webhook: {{port: \"{port}\", endpoint: /sns, method: POST, url: \"http://127.0.0.1:{port}\"}}\n"
    );
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

#[tokio::test]
#[ignore = "needs moto: scripts/test starts it and runs ignored tests"]
async fn subscribes_at_start_and_publishes_what_moto_delivers() {
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    std::fs::create_dir_all(dir.path().join("secrets/aws")).expect("the secrets directory can be made");
    std::fs::write(dir.path().join("secrets/aws/id"), "testing")
        .expect("the access key secret can be written");
    std::fs::write(dir.path().join("secrets/aws/secret"), "testing")
        .expect("the secret key secret can be written");
    let name = format!("orders-{}", uuid::Uuid::new_v4().simple());
    let created = sns("CreateTopic", &[("Name", &name)]).await;
    let topic = between(&created, "<TopicArn>", "</TopicArn>");

    // An unreachable SNS API: the source is not ready, and /readyz names it.
    let readiness = Readiness::default();
    let bus = Arc::new(Recorder::default());
    let closed = format!("http://127.0.0.1:{}", free_port());
    let running = start(
        &manifest(&topic, free_port(), &closed),
        &context(dir.path(), bus.clone(), &readiness),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(readiness.unmet(), vec!["sns-it/orders"]);
    running.stop().await;

    // The real moto: subscribed → ready; a published message arrives as an event.
    let readiness = Readiness::default();
    let port = free_port();
    let built = build(
        &manifest(&topic, port, &endpoint()),
        &context(dir.path(), bus.clone(), &readiness),
    )
    .expect("the sns EventSource builds against moto");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut table = RouteTable::new();
    for r in built.routes {
        table.add(r).expect("the sns route is the only route");
    }
    table
        .serve(IpAddr::V4(Ipv4Addr::LOCALHOST), cancel.child_token(), &tracker)
        .await
        .expect("the sns webhook port can be served");
    for task in built.tasks {
        let token = cancel.child_token();
        tracker.spawn(async move {
            let _ = task.run(token).await;
        });
    }
    for _ in 0..100 {
        if readiness.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(readiness.is_ready(), "unmet: {:?}", readiness.unmet());
    let published = sns(
        "Publish",
        &[
            ("TopicArn", &topic),
            ("Message", "{\"order\":7}"),
            ("Subject", "new order"),
        ],
    )
    .await;
    let message_id = between(&published, "<MessageId>", "</MessageId>");
    for _ in 0..100 {
        if !bus.events().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = bus.events();
    assert_eq!(events.len(), 1, "one delivery, one event");
    let (_, event) = &events[0];
    assert_eq!(event.ty(), "sns");
    assert_eq!(event.subject(), Some("orders"));
    let data = event.data().cloned().unwrap_or_default();
    assert_eq!(data["body"]["Type"], "Notification");
    assert_eq!(data["body"]["MessageId"], message_id.as_str());
    assert_eq!(data["body"]["Message"], "{\"order\":7}");
    assert_eq!(data["body"]["Subject"], "new order");
    assert_eq!(data["body"]["TopicArn"], topic.as_str());
    assert!(data["header"]["Content-Type"].is_array(), "{data}");
    assert_eq!(data["metadata"], serde_json::json!({"team": "data"}));
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}
