//! Cross-kind behaviour of the broker sources against real servers (`scripts/services.sh start
//! nats redis mosquitto rabbitmq`, settings exported): readiness follows the broker connection,
//! a message bigger than the bus takes is rejected once (counted, settled upstream) and the next
//! one flows, and the amqp source connects over TLS.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use sluice_crds::eventsource::EventSource;
use sluice_eventbus::embedded::{EmbeddedBus, EmbeddedConfig};
use sluice_eventsource::metrics::{RejectLabels, SourceMetrics};
use sluice_eventsource::sources::mqtt;
use sluice_eventsource::testing::{setting, start};
use sluice_eventsource::{build, BusSender, FileSecretResolver, SourceContext};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn event_source(yaml: &str) -> EventSource {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// A context publishing to an in-process bus through the production [`BusSender`] (so its size
/// limit applies), resolving secrets from `secrets_dir`.
fn context(secrets_dir: &std::path::Path) -> SourceContext {
    let bus = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
    SourceContext::new(
        Arc::new(FileSecretResolver::new(secrets_dir)),
        Arc::new(BusSender::new(bus, Duration::from_secs(5))),
    )
}

fn host_port(url: &str, scheme: &str) -> String {
    url.trim_start_matches(scheme).trim_end_matches('/').to_string()
}

/// Waits until `check` holds, failing with `what` after a minute.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn sent(metrics: &SourceMetrics, es: &str, event: &str) -> u64 {
    metrics
        .sent
        .get_or_create(&SourceMetrics::labels(es, event))
        .get()
}

fn rejected(metrics: &SourceMetrics, es: &str, event: &str) -> u64 {
    metrics
        .rejected
        .get_or_create(&RejectLabels {
            eventsource_name: es.into(),
            event_name: event.into(),
            reason: "too_large".into(),
        })
        .get()
}

/// Every broker kind's events, all pointing at `nats`, `redis` (host:port), `mqtt` and `amqp`.
fn brokers_manifest(name: &str, nats: &str, redis: &str, mqtt: &str, amqp: &str) -> String {
    let id = unique("c");
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: {name}}}\nspec:\n  \
         nats: {{n: {{url: \"{nats}\", subject: \"{id}.x\"}}}}\n  \
         redis: {{r: {{hostAddress: \"{redis}\", channels: [\"{id}\"]}}}}\n  \
         redisStream: {{rs: {{hostAddress: \"{redis}\", streams: [\"{id}\"]}}}}\n  \
         mqtt: {{m: {{url: \"{mqtt}\", topic: \"{id}/x\", clientId: \"{id}\"}}}}\n  \
         amqp: {{a: {{url: \"{amqp}\", exchangeName: \"{id}\", exchangeType: topic, routingKey: \"#\"}}}}\n"
    )
}

#[tokio::test]
#[ignore = "needs nats-server, Redis, Mosquitto and RabbitMQ: scripts/test starts them and runs ignored tests"]
async fn readiness_is_true_once_every_broker_source_is_connected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    let es = event_source(&brokers_manifest(
        "ready",
        &setting("NATS_URL"),
        &host_port(&setting("REDIS_URL"), "redis://"),
        &setting("MQTT_URL"),
        &setting("AMQP_URL"),
    ));
    let running = start(&es, &ctx);
    let mut unmet = ctx.readiness.unmet();
    assert_eq!(
        unmet.len(),
        5,
        "every broker event registers a condition: {unmet:?}"
    );
    eventually("every source to connect", || {
        unmet = ctx.readiness.unmet();
        unmet.is_empty()
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn readiness_names_every_source_whose_broker_is_unreachable() {
    // A port nothing listens on: bound, then released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    let es = event_source(&brokers_manifest(
        "down",
        &format!("nats://127.0.0.1:{closed}"),
        &format!("127.0.0.1:{closed}"),
        &format!("tcp://127.0.0.1:{closed}"),
        &format!("amqp://guest:guest@127.0.0.1:{closed}/%2f"),
    ));
    let running = start(&es, &ctx);
    // Several connection attempts fail meanwhile; none may report ready.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut unmet = ctx.readiness.unmet();
    unmet.sort();
    assert_eq!(unmet, ["down/a", "down/m", "down/n", "down/r", "down/rs"]);
    running.stop().await;
}

/// The XPENDING summary: count, lowest id, highest id, per-consumer counts.
type PendingSummary = (i64, Option<String>, Option<String>, Option<Vec<(String, String)>>);

const TWO_MIB: usize = 2 * 1024 * 1024;

#[tokio::test]
#[ignore = "needs Redis: scripts/test starts it and runs ignored tests"]
async fn an_oversized_redis_stream_entry_is_rejected_acknowledged_and_the_next_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    let stream = unique("big");
    let host = host_port(&setting("REDIS_URL"), "redis://");
    let mut con = redis::Client::open(format!("redis://{host}"))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("argo-events-cg")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await
        .expect("group");
    let big = "x".repeat(TWO_MIB);
    for value in [big.as_str(), "small"] {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("v")
            .arg(value)
            .query_async(&mut con)
            .await
            .expect("xadd");
    }
    let es = event_source(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: limits}}\nspec:\n  \
         redisStream: {{rs: {{hostAddress: \"{host}\", streams: [\"{stream}\"]}}}}\n"
    ));
    let running = start(&es, &ctx);
    eventually("the small entry to be published", || {
        sent(&ctx.metrics, "limits", "rs") == 1
    })
    .await;
    assert_eq!(rejected(&ctx.metrics, "limits", "rs"), 1);
    let (pending, _, _, _): PendingSummary = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("argo-events-cg")
        .query_async(&mut con)
        .await
        .expect("xpending");
    assert_eq!(
        pending, 0,
        "the rejected entry was acknowledged, not left pending"
    );
    running.stop().await;
}

#[tokio::test]
#[ignore = "needs Mosquitto: scripts/test starts it and runs ignored tests"]
async fn an_oversized_mqtt_message_is_rejected_acknowledged_and_the_next_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    let topic = unique("big");
    let id = unique("sluice");
    let es = event_source(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: limits}}\nspec:\n  \
         mqtt: {{m: {{url: \"{}\", topic: \"{topic}\", clientId: \"{id}\"}}}}\n",
        setting("MQTT_URL")
    ));
    let running = start(&es, &ctx);
    eventually("the mqtt source to subscribe", || ctx.readiness.is_ready()).await;

    let (host, port) = mqtt::parse_url(&setting("MQTT_URL")).expect("MQTT_URL");
    let mut options = MqttOptions::new(unique("pub"), host, port);
    options.set_max_packet_size(TWO_MIB * 2, TWO_MIB * 2);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .publish(&topic, QoS::AtLeastOnce, false, vec![b'x'; TWO_MIB])
        .await
        .expect("publish");
    client
        .publish(&topic, QoS::AtLeastOnce, false, b"small".to_vec())
        .await
        .expect("publish");
    let mut acks = 0;
    while acks < 2 {
        if let MqttEvent::Incoming(Packet::PubAck(_)) = eventloop.poll().await.expect("mqtt") {
            acks += 1;
        }
    }
    eventually("the small message to be published", || {
        sent(&ctx.metrics, "limits", "m") == 1
    })
    .await;
    assert_eq!(rejected(&ctx.metrics, "limits", "m"), 1);
    running.stop().await;
}

/// A durable queue bound to a topic exchange, declared as the source declares them.
async fn amqp_queue(exchange: &str, queue: &str) -> (Connection, Channel) {
    let conn = Connection::connect(&setting("AMQP_URL"), ConnectionProperties::default())
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
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    (conn, ch)
}

async fn amqp_publish(ch: &Channel, exchange: &str, body: &[u8]) {
    ch.basic_publish(
        exchange,
        "k",
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
}

fn amqp_manifest(url: &str, exchange: &str, queue: &str, tls: &str) -> EventSource {
    event_source(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: limits}}\nspec:\n  \
         amqp:\n    a:\n      url: \"{url}\"\n      exchangeName: \"{exchange}\"\n      exchangeType: topic\n      \
         routingKey: \"#\"\n      queueDeclare: {{name: \"{queue}\", durable: true}}\n{tls}"
    ))
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test starts it and runs ignored tests"]
async fn an_oversized_amqp_message_is_nacked_without_requeue_and_the_next_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    let (exchange, queue) = (unique("ex"), unique("q"));
    let (_conn, ch) = amqp_queue(&exchange, &queue).await;
    amqp_publish(&ch, &exchange, &vec![b'x'; TWO_MIB]).await;
    amqp_publish(&ch, &exchange, b"small").await;
    let running = start(&amqp_manifest(&setting("AMQP_URL"), &exchange, &queue, ""), &ctx);
    eventually("the small message to be published", || {
        sent(&ctx.metrics, "limits", "a") == 1
    })
    .await;
    assert_eq!(rejected(&ctx.metrics, "limits", "a"), 1);
    running.stop().await;
    let left = ch
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("inspect queue")
        .message_count();
    assert_eq!(
        left, 0,
        "the rejected message left the queue instead of being requeued"
    );
}

async fn amqp_over_tls(tls: &str, secrets: &[(&str, &str, String)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, key, value) in secrets {
        std::fs::create_dir_all(dir.path().join(name)).expect("mkdir");
        std::fs::write(dir.path().join(name).join(key), value).expect("write secret");
    }
    let ctx = context(dir.path());
    let (exchange, queue) = (unique("ex"), unique("q"));
    let (_conn, ch) = amqp_queue(&exchange, &queue).await;
    let running = start(
        &amqp_manifest(&setting("AMQPS_URL"), &exchange, &queue, tls),
        &ctx,
    );
    eventually("the amqp source to consume over TLS", || ctx.readiness.is_ready()).await;
    amqp_publish(&ch, &exchange, b"{\"over\":\"tls\"}").await;
    eventually("the message to be published", || {
        sent(&ctx.metrics, "limits", "a") == 1
    })
    .await;
    running.stop().await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ with TLS: scripts/test starts it and runs ignored tests"]
async fn the_amqp_source_verifies_the_broker_with_the_ca_of_its_tls_block() {
    let ca = std::fs::read_to_string(setting("AMQPS_CA_FILE")).expect("read AMQPS_CA_FILE");
    amqp_over_tls(
        "      tls: {caCertSecret: {name: rabbit, key: ca.pem}}\n",
        &[("rabbit", "ca.pem", ca)],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ with TLS: scripts/test starts it and runs ignored tests"]
async fn the_amqp_source_connects_with_insecure_skip_verify() {
    amqp_over_tls("      tls: {insecureSkipVerify: true}\n", &[]).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ with TLS: scripts/test starts it and runs ignored tests"]
async fn the_amqp_source_does_not_trust_an_unknown_broker_certificate() {
    // System roots only: the test CA is not among them, so the source never becomes ready.
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    let es = amqp_manifest(
        &setting("AMQPS_URL"),
        &unique("ex"),
        &unique("q"),
        "      tls: {enabled: true}\n",
    );
    let running = start(&es, &ctx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ctx.readiness.unmet(), vec!["limits/a".to_string()]);
    running.stop().await;
}

#[test]
fn tls_with_a_plain_amqp_url_is_refused_at_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    let es = amqp_manifest(
        "amqp://guest:secret-pw@127.0.0.1:1/%2f",
        "ex",
        "q",
        "      tls: {insecureSkipVerify: true}\n",
    );
    let err = build(&es, &ctx).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("tls is set but the url is not amqps://"), "{err}");
    assert!(!err.contains("secret-pw"), "{err}");
}
