//! The `jetstream` source against a real nats-server (`NATS_URL`, from `scripts/services.sh start
//! nats`): exact payloads round-trip, and a message the bus refused is neither acked nor lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_crds::eventsource::JetStreamEventSource;
use sluice_eventsource::sources::jetstream;
use sluice_eventsource::testing::{one_source, setting, Recorder};
use sluice_eventsource::PullSource;
use tokio_util::sync::CancellationToken;

fn nats_url() -> String {
    setting("NATS_URL")
}

async fn stream(name: &str, subject: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(nats_url()).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream(name).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        ..Default::default()
    })
    .await
    .expect("create stream");
    js
}

fn source(stream: &str, sender: Arc<Recorder>, json_body: bool) -> Box<dyn PullSource> {
    let spec = JetStreamEventSource {
        url: nats_url(),
        stream: stream.into(),
        consumer: Some("sluice-test".into()),
        json_body,
        metadata: Some(BTreeMap::from([("team".into(), "ops".into())])),
        ..Default::default()
    };
    one_source("orders", spec, jetstream::build, sender)
}

#[tokio::test]
#[ignore = "needs nats-server: scripts/test starts it and runs ignored tests"]
async fn payloads_round_trip_exactly_with_stream_and_sequence() {
    let name = format!("JSRT{}", uuid::Uuid::new_v4().simple());
    let subject = format!("{name}.orders");
    let js = stream(&name, &format!("{name}.>")).await;
    for payload in [&br#"{"id":7,"item":"tea"}"#[..], &b"not json \xff"[..]] {
        js.publish(subject.clone(), bytes::Bytes::copy_from_slice(payload))
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    let recorder = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source(&name, recorder.clone(), true).run(cancel.clone()));
    let events = recorder.wait_sent(2).await;
    cancel.cancel();
    task.await.expect("join").expect("run");

    let data: Vec<Value> = events.iter().map(|e| e.data().cloned().expect("data")).collect();
    assert_eq!(
        data[0],
        json!({"subject": subject, "body": {"id": 7, "item": "tea"}, "header": null,
               "metadata": {"team": "ops"}, "stream": name, "sequence": 1})
    );
    // Not JSON although jsonBody is set: published as base64, not dropped.
    assert_eq!(data[1]["body"], json!("bm90IGpzb24g/w=="));
    assert_eq!(data[1]["sequence"], json!(2));
    assert_eq!(events[0].ty(), "jetstream");
    assert_ne!(events[0].id(), events[1].id());
}

#[tokio::test]
#[ignore = "needs nats-server: scripts/test starts it and runs ignored tests"]
async fn a_message_the_bus_refused_is_not_acked_and_is_delivered_after_a_restart() {
    let name = format!("JSNACK{}", uuid::Uuid::new_v4().simple());
    let js = stream(&name, &format!("{name}.>")).await;
    js.publish(format!("{name}.a"), "kept".into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    // The bus refuses: the source sees the message but must not ack it.
    let refusing = Arc::new(Recorder::refusing());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source(&name, refusing.clone(), false).run(cancel.clone()));
    let refused = refusing.wait_sent(1).await;
    cancel.cancel();
    task.await.expect("join").expect("run");
    let mut stream = js.get_stream(&name).await.expect("stream");
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("sluice-test").await.expect("consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!(info.ack_floor.stream_sequence, 0, "nothing may be acked");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);

    // Restarted with a working bus: the same message arrives, with the same id.
    let recorder = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source(&name, recorder.clone(), false).run(cancel.clone()));
    let events = recorder.wait_sent(1).await;
    assert_eq!(events[0].id(), refused[0].id());
    assert_eq!(events[0].data().expect("data")["body"], json!("a2VwdA=="));
    // Acked once stored: the ack floor moves to the message.
    let mut acked = 0;
    for _ in 0..100 {
        acked = consumer.info().await.expect("info").ack_floor.stream_sequence;
        if acked == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    task.await.expect("join").expect("run");
    assert_eq!(acked, 1);
}
