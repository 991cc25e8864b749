//! The `mqtt` source against a real mosquitto (`MQTT_URL`, from `scripts/services.sh start
//! mosquitto`): QoS 1 in a persistent session, so a message published while the source was down
//! arrives with its exact payload, and a message the bus refused is not acknowledged and is
//! redelivered after a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;
use sluice_crds::eventsource::MQTTEventSource;
use sluice_eventbus::{Event, PublishAck, PublishError, Subject};
use sluice_eventsource::sources::mqtt;
use sluice_eventsource::SourceContext;
use sluice_eventsource::{EventSender, FileSecretResolver, PullSource};
use tokio_util::sync::CancellationToken;

fn mqtt_url() -> String {
    std::env::var("MQTT_URL").expect("MQTT_URL is not set: run `scripts/services.sh start mosquitto`")
}

#[derive(Default)]
struct Recorder {
    refuse: bool,
    seen: Mutex<Vec<Event>>,
}

#[async_trait]
impl EventSender for Recorder {
    async fn send(&self, _: &Subject, event: &Event) -> Result<PublishAck, PublishError> {
        self.seen.lock().expect("lock").push(event.clone());
        if self.refuse {
            Err(PublishError::Unavailable)
        } else {
            Ok(PublishAck::stored(1, false))
        }
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.seen.lock().expect("lock").clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Event> {
        for _ in 0..300 {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("expected {n} events, got {:?}", self.events());
    }
}

fn options(client_id: &str, clean: bool) -> MqttOptions {
    let (host, port) = mqtt::parse_url(&mqtt_url()).expect("MQTT_URL");
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_clean_session(clean);
    o
}

/// Opens the persistent session of `client_id` with a QoS 1 subscription, then leaves: messages
/// published from now on are kept for it.
async fn open_session(client_id: &str, topic: &str) {
    let (client, mut eventloop) = AsyncClient::new(options(client_id, false), 10);
    client
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    loop {
        match eventloop.poll().await.expect("mqtt") {
            MqttEvent::Incoming(Packet::SubAck(_)) => break,
            _ => continue,
        }
    }
    client.disconnect().await.expect("disconnect");
    loop {
        match eventloop.poll().await {
            Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
            Ok(_) => continue,
        }
    }
}

async fn publish(topic: &str, payload: &[u8]) {
    let id = format!("pub-{}", uuid::Uuid::new_v4().simple());
    let (client, mut eventloop) = AsyncClient::new(options(&id, true), 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .await
        .expect("publish");
    loop {
        match eventloop.poll().await.expect("mqtt") {
            MqttEvent::Incoming(Packet::PubAck(_)) => break,
            _ => continue,
        }
    }
}

fn source(client_id: &str, topic: &str, sender: Arc<Recorder>) -> Box<dyn PullSource> {
    let spec = MQTTEventSource {
        url: mqtt_url(),
        topic: topic.into(),
        client_id: client_id.into(),
        json_body: true,
        metadata: Some(BTreeMap::from([("team".into(), "ops".into())])),
        ..Default::default()
    };
    sluice_eventsource::build_kind(
        "es",
        &BTreeMap::from([("telemetry".to_string(), spec)]),
        mqtt::build,
        &SourceContext::new(Arc::new(FileSecretResolver::new("/nonexistent")), sender),
    )
    .expect("build")
    .tasks
    .pop()
    .expect("one source")
}

async fn run_until(client_id: &str, topic: &str, recorder: Arc<Recorder>, n: usize) -> Vec<Event> {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source(client_id, topic, recorder.clone()).run(cancel.clone()));
    let events = recorder.wait_for(n).await;
    cancel.cancel();
    task.await.expect("join").expect("run");
    events
}

#[tokio::test]
async fn messages_published_while_down_arrive_exactly() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (client_id, filter) = (format!("sluice-{run}"), format!("sluice/{run}/#"));
    open_session(&client_id, &filter).await;
    let topic = format!("sluice/{run}/temp");
    publish(&topic, br#"{"celsius":21.5}"#).await;
    publish(&topic, b"\x00raw").await;

    let events = run_until(&client_id, &filter, Arc::new(Recorder::default()), 2).await;
    let first = events[0].data().cloned().expect("data");
    assert_eq!(first["topic"], json!(topic));
    assert_eq!(first["body"], json!({"celsius": 21.5}));
    assert_eq!(first["metadata"], json!({"team": "ops"}));
    assert!(first["messageId"].as_u64().is_some_and(|id| id > 0), "{first}");
    // Not JSON although jsonBody is set: base64, not dropped.
    assert_eq!(events[1].data().expect("data")["body"], json!("AHJhdw=="));
    assert_eq!(events[0].ty(), "mqtt");
}

#[tokio::test]
async fn a_message_the_bus_refused_is_not_acked_and_is_redelivered_after_a_restart() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (client_id, filter) = (format!("sluice-{run}"), format!("sluice/{run}/#"));
    open_session(&client_id, &filter).await;
    publish(&format!("sluice/{run}/a"), br#"{"n":1}"#).await;

    let refusing = Arc::new(Recorder {
        refuse: true,
        ..Default::default()
    });
    run_until(&client_id, &filter, refusing, 1).await;

    // No PUBACK was sent, so the broker redelivers the message to the resumed session.
    let events = run_until(&client_id, &filter, Arc::new(Recorder::default()), 1).await;
    assert_eq!(events[0].data().expect("data")["body"], json!({"n": 1}));
}
