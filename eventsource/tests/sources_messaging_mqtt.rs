//! The `mqtt` source against a real mosquitto (`MQTT_URL`, from `scripts/services.sh start
//! mosquitto`): QoS 1 in a persistent session, so a message published while the source was down
//! arrives with its exact payload, and a message the bus refused is not acknowledged and is
//! redelivered after a restart.

use std::collections::BTreeMap;
use std::sync::Arc;

use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;
use sluice_crds::eventsource::MQTTEventSource;
use sluice_eventbus::Event;
use sluice_eventsource::sources::mqtt;
use sluice_eventsource::testing::{self, one_source, setting, Recorder};
use sluice_eventsource::PullSource;

fn mqtt_url() -> String {
    setting("MQTT_URL")
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
    one_source("telemetry", spec, mqtt::build, sender)
}

async fn run_until(client_id: &str, topic: &str, recorder: Arc<Recorder>, n: usize) -> Vec<Event> {
    testing::run_until(source(client_id, topic, recorder.clone()), &recorder, n).await
}

#[tokio::test]
#[ignore = "needs Mosquitto: scripts/test starts it and runs ignored tests"]
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
#[ignore = "needs Mosquitto: scripts/test starts it and runs ignored tests"]
async fn a_message_the_bus_refused_is_not_acked_and_is_redelivered_after_a_restart() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (client_id, filter) = (format!("sluice-{run}"), format!("sluice/{run}/#"));
    open_session(&client_id, &filter).await;
    publish(&format!("sluice/{run}/a"), br#"{"n":1}"#).await;

    let refusing = Arc::new(Recorder::refusing());
    run_until(&client_id, &filter, refusing, 1).await;

    // No PUBACK was sent, so the broker redelivers the message to the resumed session.
    let events = run_until(&client_id, &filter, Arc::new(Recorder::default()), 1).await;
    assert_eq!(events[0].data().expect("data")["body"], json!({"n": 1}));
}
