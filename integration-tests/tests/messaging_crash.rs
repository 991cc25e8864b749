//! kill -9 of an acking source between receipt and the bus's ack, end to end through the `sluice`
//! binary, for every kind that acknowledges upstream only after the bus stored the event:
//! `jetstream` (JetStream ack), `mqtt` (QoS 1 PUBACK in a persistent session), `amqp` (manual
//! `basic.ack`) and `redisStream` (XACK).
//!
//! Each test: `sluice eventsource --bus nats://BUS` against a JetStream bus of the test's own; the
//! bus is stopped; a set of distinguishable messages is published to the broker (`NATS_URL`,
//! `MQTT_URL`, `AMQP_URL`, `REDIS_URL` from `scripts/services.sh start nats mosquitto rabbitmq
//! redis`); the source receives at least one and logs that the bus did not take it (and the broker
//! shows it delivered and un-acknowledged); the process is killed with SIGKILL; the bus starts
//! again; `sluice run --bus nats://BUS` (the same EventSource and a Sensor with an http trigger)
//! delivers to a sink. The sink must receive exactly the published set (nothing lost, nothing
//! else), each message under one non-empty idempotency key of its own; the broker must have
//! delivered again what the killed process held (observed on the broker where it shows it); and
//! nothing more arrives once the broker, the bus and the sink have settled.

mod messaging_support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use messaging_support::*;
use serde_json::{json, Value};
use sluice_integration_tests::{
    bus_settled, wait_for, wait_for_every, Arrivals, NatsServer, Received, SluiceProcess,
};

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

    /// Kills `es` with SIGKILL, starts the bus again and `sluice run` on it; waits until the sink
    /// received every message of `sent`, `upstream_settled` holds (the broker has the messages
    /// acknowledged) and the bus has nothing left to deliver; then checks the arrivals against
    /// `sent` and that nothing more arrives.
    async fn kill_and_recover<F, Fut>(
        &mut self,
        es: SluiceProcess,
        sent: &[Value],
        upstream_settled: F,
    ) -> Result<Arrivals<String>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let first_log = es.log_text();
        es.kill_hard()?;
        self.bus.restart()?;
        let run = self.pipe.run(Some(&self.bus.url()), "second.log").await?;
        let result = self.settle(sent, upstream_settled).await;
        let log = run.log_text();
        run.terminate()?;
        result.map_err(|e| e.context(format!("first run:\n{first_log}\nsecond run:\n{log}")))
    }

    async fn settle<F, Fut>(&self, sent: &[Value], upstream_settled: F) -> Result<Arrivals<String>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let sent = body_set(sent);
        self.pipe
            .sink
            .wait_until(
                "every message published reached the sink",
                Duration::from_secs(45),
                |got| body_set_of(got).is_superset(&sent),
            )
            .await
            .map_err(|e| e.context(format!("got {:?}", self.pipe.bodies())))?;
        eventually(
            "the broker has every message acknowledged",
            Duration::from_secs(20),
            upstream_settled,
        )
        .await?;
        let bus = self.bus.url();
        wait_for(Duration::from_secs(30), || bus_settled(&bus))
            .await
            .context("the bus has nothing left to deliver")?;
        let got = self.pipe.sink.assert_quiet(Duration::from_secs(1)).await?;
        let arrivals = Arrivals::of(&got, |r| Some(r.body.to_string()))?;
        arrivals.check(&sent)?;
        Ok(arrivals)
    }
}

/// The messages of one crash test: `{"order": i, "run": run}` for i in 0..MESSAGES (text values
/// for redis streams, whose fields are strings).
fn messages(run: &str, text: bool) -> Vec<Value> {
    (0..MESSAGES)
        .map(|i| {
            if text {
                json!({"order": i.to_string(), "run": run})
            } else {
                json!({"order": i, "run": run})
            }
        })
        .collect()
}

/// How many messages each crash test publishes while the bus is down.
const MESSAGES: usize = 5;

/// A set of bodies by their JSON text (serde_json sorts object keys, so equal bodies give equal
/// text).
fn body_set(bodies: &[Value]) -> BTreeSet<String> {
    bodies.iter().map(Value::to_string).collect()
}

fn body_set_of(got: &[Received]) -> BTreeSet<String> {
    got.iter().map(|r| r.body.to_string()).collect()
}

/// Polls `check` every 200 ms until it is true; fails with `what` after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, check: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    wait_for_every(within, Duration::from_millis(200), || {
        let attempt = check();
        async move { Ok(attempt.await?.then_some(())) }
    })
    .await
    .with_context(|| format!("{what} did not hold"))
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

    let sent = messages(&run, false);
    for body in &sent {
        js_publish(&url, &subject, body).await?;
    }
    wait_refused(&es, Duration::from_secs(30)).await?;
    // JetStream shows messages delivered to the source and none acknowledged.
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = source_stream
        .get_consumer("crash")
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let at_kill = consumer.info().await?.clone();
    assert!(
        at_kill.delivered.stream_sequence >= 1,
        "not delivered: {at_kill:?}"
    );
    assert_eq!(
        at_kill.ack_floor.stream_sequence, 0,
        "acknowledged before the bus stored it: {at_kill:?}"
    );

    let total = sent.len() as u64;
    c.kill_and_recover(es, &sent, || {
        let mut consumer = consumer.clone();
        async move { Ok(consumer.info().await?.ack_floor.stream_sequence == total) }
    })
    .await?;
    // The redelivery the kill forced: after it, the consumer handed out every message again
    // (to the second process) — messages 1..=S, which the killed process held, a second time.
    let after = consumer.info().await?.clone();
    let since_kill = after.delivered.consumer_sequence - at_kill.delivered.consumer_sequence;
    assert!(
        since_kill >= total,
        "messages held by the killed process were not delivered again: {since_kill} deliveries since the kill \
         of {total} messages, {} of them delivered before it",
        at_kill.delivered.stream_sequence
    );
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

    let sent = messages(&run, false);
    for body in &sent {
        mqtt_publish(&url, &topic, body).await?;
    }
    // Received and held without PUBACK while the bus refuses.
    wait_refused(&es, Duration::from_secs(30)).await?;

    // The broker shows nothing of its session state; the message the killed process held (the
    // refusal above) reaching the sink through the second process is its redelivery.
    c.kill_and_recover(es, &sent, || async { Ok(true) }).await?;
    Ok(())
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

    let sent = messages(&run, false);
    for body in &sent {
        amqp_publish(&url, &exchange, "orders.new", body).await?;
    }
    wait_refused(&es, Duration::from_secs(30)).await?;
    // Handed out to the source (prefetch) and not acknowledged: fewer than all are ready.
    let ready_at_kill = amqp_ready(&url, &queue).await?;
    assert!(
        (ready_at_kill as usize) < sent.len(),
        "the source holds none of the messages: {ready_at_kill} ready"
    );
    let first_log = es.log_text();
    es.kill_hard()?;
    // The redelivery the kill forces, observed on the broker: it took every un-acknowledged
    // message back when the connection died, so all are ready again.
    eventually(
        "the queue holds every message again",
        Duration::from_secs(20),
        || async { Ok(amqp_ready(&url, &queue).await? as usize == sent.len()) },
    )
    .await
    .map_err(|e| e.context(first_log.clone()))?;

    c.bus.restart()?;
    let runp = c.pipe.run(Some(&c.bus.url()), "second.log").await?;
    let result = c
        .settle(&sent, || async { Ok(amqp_ready(&url, &queue).await? == 0) })
        .await;
    let log = runp.log_text();
    runp.terminate()?;
    result.map_err(|e| e.context(format!("first run:\n{first_log}\nsecond run:\n{log}")))?;
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

/// The entries of `group` on `stream` read and not acknowledged: (entry id, consumer, times
/// delivered), from XPENDING's extended form.
async fn pending_entries(url: &str, stream: &str, group: &str) -> Result<Vec<(String, String, u64)>> {
    let mut con = redis_con(url).await?;
    let entries: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(1000)
        .query_async(&mut con)
        .await?;
    Ok(entries
        .into_iter()
        .map(|(id, consumer, _idle, delivered)| (id, consumer, delivered))
        .collect())
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

    let sent = messages(&stream, true);
    for body in &sent {
        redis_xadd(&url, &stream, body).await?;
    }
    wait_refused(&es, Duration::from_secs(30)).await?;
    // Read by the group's consumer and pending (not XACKed).
    let held = pending_entries(&url, &stream, "crash").await?;
    assert!(!held.is_empty(), "no entry pending at the kill");
    assert!(held.iter().all(|(_, _, delivered)| *delivered >= 1), "{held:?}");

    // Entries pending on the killed consumer reach the sink only by being read again from the
    // group's pending list: that read is the redelivery the kill forced.
    c.kill_and_recover(es, &sent, || async {
        Ok(pending_entries(&url, &stream, "crash").await?.is_empty())
    })
    .await?;
    let mut con = redis_con(&url).await?;
    let _: i64 = redis::cmd("DEL").arg(&stream).query_async(&mut con).await?;
    Ok(())
}
