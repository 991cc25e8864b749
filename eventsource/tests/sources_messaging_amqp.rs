//! The `amqp` source against a real RabbitMQ (`AMQP_URL`, from `scripts/services.sh start
//! rabbitmq`): exact payloads and properties round-trip; by default a message is acked only after
//! the bus stored it, so a message the bus refused stays in the queue and is delivered after a
//! restart; `consume.autoAck: true` is honoured.

use std::collections::BTreeMap;
use std::sync::Arc;

use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::json;
use sluice_crds::eventsource::{AMQPConsumeConfig, AMQPEventSource, AMQPQueueDeclareConfig};
use sluice_eventsource::sources::amqp;
use sluice_eventsource::testing::{one_source, run_until, setting, Recorder};
use sluice_eventsource::{FileSecretResolver, PullSource, SourceContext};

fn amqp_url() -> String {
    setting("AMQP_URL")
}

/// A durable named queue bound to a topic exchange, declared as the source declares them, so
/// messages published before the source starts wait in it.
async fn channel(exchange: &str, queue: &str, key: &str) -> (Connection, Channel) {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.exchange_declare(
        exchange,
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    ch.queue_declare(
        queue,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue");
    ch.queue_bind(
        queue,
        exchange,
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    (conn, ch)
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(exchange, key, BasicPublishOptions::default(), body, props)
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

async fn queued(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue")
    .message_count()
}

fn source(
    exchange: &str,
    queue: &str,
    key: &str,
    consume: Option<AMQPConsumeConfig>,
    sender: Arc<Recorder>,
) -> Box<dyn PullSource> {
    let spec = AMQPEventSource {
        url: Some(amqp_url()),
        exchange_name: exchange.into(),
        exchange_type: "topic".into(),
        routing_key: key.into(),
        json_body: true,
        metadata: Some(BTreeMap::from([("team".into(), "ops".into())])),
        queue_declare: Some(AMQPQueueDeclareConfig {
            name: Some(queue.into()),
            durable: true,
            ..Default::default()
        }),
        consume,
        ..Default::default()
    };
    one_source("orders", spec, amqp::build, sender)
}

fn names() -> (String, String) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    (format!("sluice-x-{run}"), format!("sluice-q-{run}"))
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test starts it and runs ignored tests"]
async fn messages_round_trip_with_their_properties() {
    let (exchange, queue) = names();
    let (_conn, ch) = channel(&exchange, &queue, "order.*").await;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_priority(3)
        .with_correlation_id("corr-1".into())
        .with_reply_to("replies".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_714_564_800)
        .with_type("order.created".into())
        .with_app_id("shop".into());
    publish(&ch, &exchange, "order.created", br#"{"id":7}"#, props).await;
    publish(
        &ch,
        &exchange,
        "order.raw",
        b"\x00raw",
        BasicProperties::default(),
    )
    .await;

    let recorder = Arc::new(Recorder::default());
    let events = run_until(
        source(&exchange, &queue, "order.*", None, recorder.clone()),
        &recorder,
        2,
    )
    .await;
    assert_eq!(
        events[0].data().cloned().expect("data"),
        json!({
            "contentType": "application/json", "contentEncoding": "", "deliveryMode": 2,
            "priority": 3, "correlationId": "corr-1", "replyTo": "replies", "expiration": "600000",
            "messageId": "msg-1", "timestamp": "2024-05-01 12:00:00 +0000 UTC", "type": "order.created",
            "appId": "shop", "exchange": exchange, "routingKey": "order.created", "body": {"id": 7},
            "metadata": {"team": "ops"}
        })
    );
    assert_eq!(events[0].ty(), "amqp");
    // Not JSON although jsonBody is set: base64, not dropped.
    assert_eq!(events[1].data().expect("data")["body"], json!("AHJhdw=="));
    // Both were acked after the bus stored them.
    assert_eq!(queued(&ch, &queue).await, 0);
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test starts it and runs ignored tests"]
async fn a_message_the_bus_refused_stays_queued_and_is_delivered_after_a_restart() {
    let (exchange, queue) = names();
    let (_conn, ch) = channel(&exchange, &queue, "k").await;
    publish(&ch, &exchange, "k", br#"{"n":1}"#, BasicProperties::default()).await;

    let refusing = Arc::new(Recorder::refusing());
    // Refused twice: nacked with requeue, handed out again.
    run_until(
        source(&exchange, &queue, "k", None, refusing.clone()),
        &refusing,
        2,
    )
    .await;
    assert_eq!(queued(&ch, &queue).await, 1, "nacked, not acked");

    let recorder = Arc::new(Recorder::default());
    let events = run_until(
        source(&exchange, &queue, "k", None, recorder.clone()),
        &recorder,
        1,
    )
    .await;
    assert_eq!(events[0].data().expect("data")["body"], json!({"n": 1}));
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test starts it and runs ignored tests"]
async fn auto_ack_is_honoured() {
    let (exchange, queue) = names();
    let (_conn, ch) = channel(&exchange, &queue, "k").await;
    publish(&ch, &exchange, "k", br#"{"n":2}"#, BasicProperties::default()).await;
    let consume = Some(AMQPConsumeConfig {
        auto_ack: true,
        ..Default::default()
    });
    let recorder = Arc::new(Recorder::default());
    let events = run_until(
        source(&exchange, &queue, "k", consume, recorder.clone()),
        &recorder,
        1,
    )
    .await;
    assert_eq!(events[0].data().expect("data")["body"], json!({"n": 2}));
    assert_eq!(queued(&ch, &queue).await, 0);
}

#[test]
fn a_spec_without_an_exchange_or_with_two_urls_is_refused() {
    let build = |spec: AMQPEventSource| {
        sluice_eventsource::build_kind(
            "es",
            &BTreeMap::from([("e".to_string(), spec)]),
            amqp::build,
            &SourceContext::new(
                Arc::new(FileSecretResolver::new("/nonexistent")),
                Arc::new(Recorder::default()),
            ),
        )
        .err()
        .map(|e| e.to_string())
    };
    let msg = build(AMQPEventSource {
        url: Some("amqp://localhost".into()),
        ..Default::default()
    });
    assert_eq!(
        msg.as_deref(),
        Some("failed to build EventSource es event e: `exchangeName`, `exchangeType` and `routingKey` are required")
    );
    let msg = build(AMQPEventSource {
        url: Some("amqp://u:hunter2@localhost".into()),
        url_secret: Some(sluice_crds::common::SecretKeySelector::default()),
        exchange_name: "x".into(),
        exchange_type: "topic".into(),
        routing_key: "k".into(),
        ..Default::default()
    });
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.contains("not both") && !m.contains("hunter2")),
        "{msg:?}"
    );
}
