//! kill -9 of an acking source between receipt and the bus's ack, end to end through the `sluice`
//! binary, for every kind that acknowledges upstream only after the bus stored the event:
//! `jetstream` (JetStream ack), `mqtt` (QoS 1 PUBACK in a persistent session), `amqp` (manual
//! `basic.ack`) and `redisStream` (XACK).
//!
//! Each test: `sluice eventsource --bus nats://BUS` against a JetStream bus of the test's own; the
//! bus is stopped; one message is published to the broker (`NATS_URL`, `MQTT_URL`, `AMQP_URL`,
//! `REDIS_URL` from `scripts/services.sh start nats mosquitto rabbitmq redis`); the source receives
//! it and logs that the bus did not take it (and the broker shows it un-acknowledged); the process
//! is killed with SIGKILL; the bus starts again; `sluice run --bus nats://BUS` (the same
//! EventSource and a Sensor with an http trigger) delivers the message to a sink exactly as
//! published — it was not lost.

mod messaging_support;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use messaging_support::*;
use serde_json::{json, Value};
use sluice_integration_tests::{NatsServer, SluiceProcess};

/// The bus of one crash test and the pipeline that runs on it.
struct Crash {
    bus: NatsServer,
    pipe: Pipeline,
}

impl Crash {
    async fn new(kind: &str, spec: &str, data_key: &str) -> Result<Self> {
        Ok(Self {
            bus: NatsServer::start()?,
            pipe: Pipeline::new(kind, spec, data_key).await?,
        })
    }

    /// Starts `sluice eventsource` on the bus, waits until the source logged `source_ready`, then
    /// stops the bus: from now on a received message cannot be stored.
    async fn start_then_stop_bus(&mut self, source_ready: &str) -> Result<SluiceProcess> {
        let es = self.pipe.eventsource(&self.bus.url(), "first.log").await?;
        es.wait_logged(source_ready, Duration::from_secs(30)).await?;
        self.bus.stop();
        Ok(es)
    }

    /// Kills `es` with SIGKILL, starts the bus again and `sluice run` on it; asserts that the sink
    /// receives `want` and nothing else.
    async fn kill_and_recover(&mut self, es: SluiceProcess, want: &Value) -> Result<()> {
        let first_log = es.log_text();
        es.kill_hard()?;
        self.bus.restart()?;
        let run = self.pipe.run(Some(&self.bus.url()), "second.log").await?;
        let arrived = self.pipe.wait_body(want, Duration::from_secs(45)).await;
        let (bodies, log) = (self.pipe.bodies(), run.log_text());
        run.terminate()?;
        assert!(
            arrived,
            "the message received before the kill never reached the sink (got {bodies:?});\nfirst run:\n{first_log}\nsecond run:\n{log}"
        );
        // A redelivery may repeat it (ids are not stable for every kind); nothing else may arrive.
        assert!(
            bodies.iter().all(|b| b == want),
            "unexpected deliveries: {bodies:?}"
        );
        Ok(())
    }
}

/// Polls `check` every 200 ms until it is true; fails with `what` after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, check: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => last = None,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{what} did not hold within {within:?} (last error: {last:?})")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: scripts/test starts it and runs ignored tests"]
async fn jetstream_message_in_hand_survives_kill() -> Result<()> {
    let url = env("NATS_URL");
    let run = run_id();
    let (subject, stream) = (format!("crash.js.{run}"), format!("CRASH_{run}"));
    let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await?);
    let source_stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await?;
    // The durable the source uses, made by the test with a short ack wait so the message the
    // killed process held comes back within the test (the source uses an existing consumer as is).
    source_stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("crash".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(3),
            ..Default::default()
        })
        .await?;
    let spec =
        format!("      url: {url}\n      stream: {stream}\n      consumer: crash\n      jsonBody: true\n");
    let mut c = Crash::new("jetstream", &spec, "body").await?;
    let es = c.start_then_stop_bus("consuming").await?;

    let want = json!({"order": 1, "run": run});
    js_publish(&url, &subject, &want).await?;
    wait_refused(&es, Duration::from_secs(30)).await?;
    // JetStream shows it delivered and not acknowledged.
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = source_stream
        .get_consumer("crash")
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let info = consumer.info().await?.clone();
    assert!(info.delivered.stream_sequence >= 1, "not delivered: {info:?}");
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "acknowledged before the bus stored it: {info:?}"
    );

    c.kill_and_recover(es, &want).await?;
    eventually(
        "the message is acknowledged after the bus stored it",
        Duration::from_secs(10),
        || {
            let mut consumer = consumer.clone();
            async move { Ok(consumer.info().await?.ack_floor.stream_sequence == 1) }
        },
    )
    .await?;
    js.delete_stream(&stream).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Mosquitto and nats-server: scripts/test starts them and runs ignored tests"]
async fn mqtt_message_in_hand_survives_kill() -> Result<()> {
    let url = env("MQTT_URL");
    let run = run_id();
    let (client_id, topic) = (format!("crash-{run}"), format!("crash/{run}/orders"));
    // The persistent session exists (with its QoS 1 subscription) before the message is published,
    // so the broker keeps the message for this client id whatever the source does.
    mqtt_open_session(&url, &client_id, &format!("crash/{run}/#")).await?;
    let spec = format!(
        "      url: {url}\n      topic: crash/{run}/#\n      clientId: {client_id}\n      jsonBody: true\n"
    );
    let mut c = Crash::new("mqtt", &spec, "body").await?;
    let es = c.start_then_stop_bus("connected to the MQTT broker").await?;

    let want = json!({"order": 2, "run": run});
    mqtt_publish(&url, &topic, &want).await?;
    // Received and held without PUBACK while the bus refuses.
    wait_refused(&es, Duration::from_secs(30)).await?;

    c.kill_and_recover(es, &want).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and nats-server: scripts/test starts them and runs ignored tests"]
async fn amqp_message_in_hand_survives_kill() -> Result<()> {
    let url = env("AMQP_URL");
    let run = run_id();
    let (exchange, queue) = (format!("crash-x-{run}"), format!("crash-q-{run}"));
    // A named durable queue: the broker keeps its messages when the consumer's connection dies
    // (upstream's default, a server-named exclusive queue, dies with the connection).
    let spec = format!(
        "      url: \"{url}\"\n      exchangeName: {exchange}\n      exchangeType: topic\n      routingKey: \"orders.*\"\n      \
         jsonBody: true\n      queueDeclare:\n        name: {queue}\n        durable: true\n        exclusive: false\n        autoDelete: false\n"
    );
    let mut c = Crash::new("amqp", &spec, "body").await?;
    let es = c.start_then_stop_bus("consuming the AMQP queue").await?;

    let want = json!({"order": 3, "run": run});
    amqp_publish(&url, &exchange, "orders.new", &want).await?;
    wait_refused(&es, Duration::from_secs(30)).await?;
    let first_log = es.log_text();
    es.kill_hard()?;
    // The broker took the un-acknowledged message back when the connection died.
    eventually(
        "the queue holds the message again",
        Duration::from_secs(20),
        || async { Ok(amqp_ready(&url, &queue).await? == 1) },
    )
    .await
    .map_err(|e| e.context(first_log.clone()))?;

    c.bus.restart()?;
    let runp = c.pipe.run(Some(&c.bus.url()), "second.log").await?;
    let arrived = c.pipe.wait_body(&want, Duration::from_secs(45)).await;
    let (bodies, log) = (c.pipe.bodies(), runp.log_text());
    runp.terminate()?;
    assert!(
        arrived,
        "lost (got {bodies:?});\nfirst run:\n{first_log}\nsecond run:\n{log}"
    );
    assert!(
        bodies.iter().all(|b| b == &want),
        "unexpected deliveries: {bodies:?}"
    );
    eventually(
        "the queue is empty after the ack",
        Duration::from_secs(10),
        || async { Ok(amqp_ready(&url, &queue).await? == 0) },
    )
    .await?;
    amqp_cleanup(&url, &exchange, &queue).await;
    Ok(())
}

async fn amqp_cleanup(url: &str, exchange: &str, queue: &str) {
    if let Ok(conn) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch.queue_delete(queue, Default::default()).await;
            let _ = ch.exchange_delete(exchange, Default::default()).await;
        }
        let _ = conn.close(200, "done").await;
    }
}

/// The XPENDING summary's count for `group` on `stream`.
async fn pending(url: &str, stream: &str, group: &str) -> Result<i64> {
    type Summary = (i64, Option<String>, Option<String>, Option<Vec<(String, String)>>);
    let mut con = redis_con(url).await?;
    let (count, ..): Summary = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(&mut con)
        .await?;
    Ok(count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis and nats-server: scripts/test starts them and runs ignored tests"]
async fn redis_stream_entry_in_hand_survives_kill() -> Result<()> {
    let url = env("REDIS_URL");
    let stream = format!("crash-{}", run_id());
    let spec = format!(
        "      hostAddress: {}\n      streams: [{stream}]\n      consumerGroup: crash\n",
        redis_host(&url)
    );
    let mut c = Crash::new("redisStream", &spec, "values").await?;
    let es = c.start_then_stop_bus("reading redis streams").await?;

    let want = json!({"order": "4", "stream": stream});
    redis_xadd(&url, &stream, &want).await?;
    wait_refused(&es, Duration::from_secs(30)).await?;
    // Read by the group's consumer and pending (not XACKed).
    assert_eq!(pending(&url, &stream, "crash").await?, 1);

    c.kill_and_recover(es, &want).await?;
    eventually(
        "the entry is acknowledged after the bus stored it",
        Duration::from_secs(10),
        || async { Ok(pending(&url, &stream, "crash").await? == 0) },
    )
    .await?;
    let mut con = redis_con(&url).await?;
    let _: i64 = redis::cmd("DEL").arg(&stream).query_async(&mut con).await?;
    Ok(())
}
