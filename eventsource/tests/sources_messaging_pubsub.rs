//! The at-most-once kinds against real servers: `nats` (core NATS, `NATS_URL`) and `redis` pub/sub
//! (`REDIS_URL`). Exact payloads round-trip with upstream's data shapes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_crds::eventsource::{NATSEventsSource, RedisEventSource};
use sluice_eventbus::Event;
use sluice_eventsource::sources::{nats, redis as redis_source};
use sluice_eventsource::testing::{one_source, setting, Recorder};
use sluice_eventsource::PullSource;
use tokio_util::sync::CancellationToken;

fn metadata() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([("team".into(), "ops".into())]))
}

async fn run(task: Box<dyn PullSource>, recorder: &Recorder, mut publish: impl AsyncFnMut()) -> Event {
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(task.run(cancel.clone()));
    // Pub/sub keeps nothing for a subscriber that is not there yet: publish until it is.
    for _ in 0..300 {
        if let Some(e) = recorder.sent().first() {
            cancel.cancel();
            handle.await.expect("join").expect("run");
            return e.clone();
        }
        publish().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no event arrived");
}

#[tokio::test]
#[ignore = "needs nats-server: scripts/test starts it and runs ignored tests"]
async fn nats_messages_round_trip_with_headers() {
    let subject = format!("sluice.test.{}", uuid::Uuid::new_v4().simple());
    let spec = NATSEventsSource {
        url: setting("NATS_URL"),
        subject: format!("{subject}.>"),
        json_body: true,
        metadata: metadata(),
        ..Default::default()
    };
    let recorder = Arc::new(Recorder::default());
    let task = one_source("n", spec, nats::build, recorder.clone());
    let client = async_nats::connect(setting("NATS_URL")).await.expect("connect");
    let to = format!("{subject}.x");
    let event = run(task, &recorder, async || {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("X-Trace", "t1");
        client
            .publish_with_headers(to.clone(), headers, r#"{"k":[1,2]}"#.into())
            .await
            .expect("publish");
        client.flush().await.expect("flush");
    })
    .await;
    assert_eq!(
        event.data().cloned().expect("data"),
        json!({"subject": to, "body": {"k": [1, 2]}, "header": {"X-Trace": ["t1"]},
               "metadata": {"team": "ops"}})
    );
    assert_eq!(event.ty(), "nats");
}

#[tokio::test]
#[ignore = "needs Redis: scripts/test starts it and runs ignored tests"]
async fn redis_messages_round_trip_with_channel_and_pattern() {
    let url = setting("REDIS_URL");
    let host = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let prefix = format!("sluice-{}", uuid::Uuid::new_v4().simple());
    let spec = RedisEventSource {
        host_address: host,
        channels: vec![format!("{prefix}.*")],
        metadata: metadata(),
        ..Default::default()
    };
    let recorder = Arc::new(Recorder::default());
    let task = one_source("r", spec, redis_source::build, recorder.clone());
    let mut con = redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let channel = format!("{prefix}.news");
    let event = run(task, &recorder, async || {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg("plain text, not JSON")
            .query_async(&mut con)
            .await
            .expect("publish");
    })
    .await;
    assert_eq!(
        event.data().cloned().expect("data"),
        json!({"channel": channel, "pattern": format!("{prefix}.*"),
               "body": "plain text, not JSON", "metadata": {"team": "ops"}})
    );
    assert_eq!(event.ty(), "redis");
}
