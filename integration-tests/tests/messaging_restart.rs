//! The upstream server goes away and comes back while `sluice run` streams its messages to an HTTP
//! sink: for `nats`, `jetstream`, `mqtt`, `amqp`, `redis` and `redisStream`, the source reconnects
//! (with growing waits where it logs them) and the messages published after the restart arrive;
//! for the acking kinds, so do those the broker kept while the source was away. While a server is
//! down, `/readyz` answers 503 naming the source (`fault-src/msg`); once it is back, 200.
//!
//! Every test records what it published and ends by comparing that with what arrived: every
//! message that must arrive did (for pub/sub kinds, those seen after each reconnection; for the
//! acking kinds, all published), nothing arrived that was not published, and each arrival carries
//! a non-empty idempotency key, the same for repeats of one message and distinct across messages;
//! then a quiet second after the last required arrival in which nothing more may come.
//!
//! Servers: a private nats-server, redis-server or mosquitto per test on a free port
//! (`NATS_SERVER_BIN`, `REDIS_SERVER_BIN`, `MOSQUITTO_BIN` from `scripts/services.sh start nats
//! redis mosquitto`), so restarting it disturbs no other test. RabbitMQ is too heavy to start per
//! test and its node is shared: the `amqp` test uses a vhost of its own on it and closes that vhost's
//! connections from the broker side (`rabbitmqctl close_all_connections --vhost`, `AMQP_URL` and
//! `RABBITMQCTL` from `scripts/services.sh start rabbitmq`), which the client sees as a lost server.

mod messaging_support;

use std::time::Duration;

use anyhow::Result;
use messaging_support::*;
use serde_json::{json, Value};
use sluice_integration_tests::NatsServer;

const WAIT: Duration = Duration::from_secs(30);
/// What the NATS client (async-nats, used by the `nats` and `jetstream` sources; on the embedded
/// bus nothing else in the process talks NATS) logs when it loses and regains its server. It
/// reconnects by itself, with its own backoff, which it does not log.
const NATS_DISCONNECTED: &str = "event: disconnected";
const NATS_CONNECTED: &str = "event: connected";

/// Asserts the sink received `want`.
async fn assert_arrives(pipe: &Pipeline, want: &Value, p: &sluice_integration_tests::SluiceProcess) {
    assert!(
        pipe.wait_body(want, Duration::from_secs(40)).await,
        "{want} never reached the sink (got {:?}); log:\n{}",
        pipe.bodies(),
        p.log_text()
    );
}

/// One outage: stops `server`, waits until the source logged `message` `n` more times with
/// growing `retry_in` while `/readyz` answers 503 naming the source, starts the server again and
/// waits until `/readyz` answers 200; returns those waits.
async fn outage(
    p: &sluice_integration_tests::SluiceProcess,
    server: &mut PrivateServer,
    message: &str,
    n: usize,
) -> Result<Vec<Duration>> {
    let before = logged(p, message).len();
    server.stop();
    let lines = wait_logged_n(p, message, before + n, WAIT).await?;
    assert_backs_off(&lines[before..], message);
    assert_not_ready(p, WAIT).await?;
    server.restart()?;
    wait_readyz(p, 200, WAIT).await?;
    Ok(retry_waits(&lines[before..]))
}

/// After a successful reconnect the backoff starts over: the second outage's first wait is the
/// first outage's first wait, not where the first outage's waits stopped.
fn assert_backoff_starts_over(first: &[Duration], second: &[Duration], what: &str) {
    assert_eq!(
        first.first(),
        second.first(),
        "{what}: the backoff did not start over after reconnecting (first outage {first:?}, second {second:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn nats_resubscribes_after_server_restart() -> Result<()> {
    env("NATS_SERVER_BIN");
    let mut server = NatsServer::start()?;
    let (url, subject) = (server.url(), format!("restart.nats.{}", run_id()));
    let spec = format!("      url: {url}\n      subject: {subject}\n      jsonBody: true\n");
    let pipe = Pipeline::new("nats", &spec, "body").await?;
    let p = pipe.run(None, "run.log").await?;
    p.wait_logged("subscribed", WAIT).await?;
    let publish = |body: Value| {
        let (url, subject) = (url.clone(), subject.clone());
        async move { nats_publish(&url, &subject, &body).await }
    };
    let mut required = vec![
        pipe.publish_until_seen(|n| json!({"phase": "before", "n": n}), publish, WAIT)
            .await?,
    ];

    // Core NATS keeps nothing: the client reconnects by itself (async-nats backs off) and keeps
    // the subscription, so messages published once it is back arrive.
    wait_readyz(&p, 200, WAIT).await?;
    server.stop();
    p.wait_logged(NATS_DISCONNECTED, WAIT).await?;
    assert_not_ready(&p, WAIT).await?;
    server.restart()?;
    wait_readyz(&p, 200, WAIT).await?;
    let got = pipe
        .publish_until_seen(
            |n| json!({"phase": "after", "n": n}),
            publish,
            Duration::from_secs(40),
        )
        .await
        .map_err(|e| e.context(p.log_text()))?;
    assert_eq!(got["phase"], "after");
    required.push(got);
    assert!(
        logged(&p, NATS_CONNECTED).len() >= 2,
        "no reconnection logged:\n{}",
        p.log_text()
    );
    pipe.finish(&required)
        .await
        .map_err(|e| e.context(p.log_text()))?;
    p.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn jetstream_resumes_after_server_restart() -> Result<()> {
    env("NATS_SERVER_BIN");
    let mut server = NatsServer::start()?;
    let run = run_id();
    let (url, subject, stream) = (
        server.url(),
        format!("restart.js.{run}"),
        format!("RESTART_{run}"),
    );
    let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await?);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await?;
    drop(js);
    let spec =
        format!("      url: {url}\n      stream: {stream}\n      consumer: restart\n      jsonBody: true\n");
    let pipe = Pipeline::new("jetstream", &spec, "body").await?;
    let p = pipe.run(None, "run.log").await?;
    p.wait_logged("consuming", WAIT).await?;
    let before = json!({"phase": "before"});
    pipe.note_sent(&before);
    js_publish(&url, &subject, &before).await?;
    assert_arrives(&pipe, &before, &p).await;

    wait_readyz(&p, 200, WAIT).await?;
    server.stop();
    p.wait_logged(NATS_DISCONNECTED, WAIT).await?;
    assert_not_ready(&p, WAIT).await?;
    server.restart()?;
    wait_readyz(&p, 200, WAIT).await?;
    // The stream and the durable consumer live in the server's store: the message published
    // after the restart is delivered whenever the source is connected again.
    let after = json!({"phase": "after"});
    pipe.note_sent(&after);
    js_publish(&url, &subject, &after).await?;
    assert_arrives(&pipe, &after, &p).await;
    assert!(
        logged(&p, NATS_CONNECTED).len() >= 2,
        "no reconnection logged:\n{}",
        p.log_text()
    );
    // A killed server may come back without the last acks it confirmed, so `before` may come
    // again: under the same key (its id is its stream sequence).
    pipe.finish(&[before, after])
        .await
        .map_err(|e| e.context(p.log_text()))?;
    p.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the mosquitto binary: scripts/test installs it and runs ignored tests"]
async fn mqtt_reconnects_with_backoff_after_broker_restart() -> Result<()> {
    let mut broker = PrivateServer::mosquitto()?;
    let url = mqtt_url(broker.port);
    let run = run_id();
    let topic = format!("restart/{run}/orders");
    let spec = format!(
        "      url: {url}\n      topic: restart/{run}/#\n      clientId: restart-{run}\n      jsonBody: true\n"
    );
    let pipe = Pipeline::new("mqtt", &spec, "body").await?;
    let p = pipe.run(None, "run.log").await?;
    p.wait_logged("connected to the MQTT broker", WAIT).await?;
    let publish = |body: Value| {
        let (url, topic) = (url.clone(), topic.clone());
        async move { mqtt_publish(&url, &topic, &body).await }
    };
    // Until the subscription is in place the broker routes nothing to the session.
    let mut required = vec![
        pipe.publish_until_seen(|n| json!({"phase": "before", "n": n}), publish, WAIT)
            .await?,
    ];

    const FAILED: &str = "MQTT connection failed; reconnecting";
    let mut outages = Vec::new();
    for round in 1..=2 {
        outages.push(outage(&p, &mut broker, FAILED, 3).await?);
        // Published at once, possibly before the source is back: the persistent session (QoS 1,
        // clean_session false, saved by the broker across its restart) keeps it for the source.
        let after = json!({"phase": "after", "round": round});
        pipe.note_sent(&after);
        publish(after.clone()).await?;
        assert_arrives(&pipe, &after, &p).await;
        required.push(after);
    }
    assert_backoff_starts_over(&outages[0], &outages[1], "mqtt");
    assert!(logged(&p, "connected to the MQTT broker").len() >= 3);
    pipe.finish(&required)
        .await
        .map_err(|e| e.context(p.log_text()))?;
    p.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test starts it and runs ignored tests"]
async fn amqp_reconnects_with_backoff_and_gets_what_the_queue_kept() -> Result<()> {
    let vhost = Vhost::create()?;
    let url = vhost.url();
    let (exchange, queue) = ("restart-x", "restart-q");
    let spec = format!(
        "      url: \"{url}\"\n      exchangeName: {exchange}\n      exchangeType: topic\n      routingKey: \"orders.*\"\n      \
         jsonBody: true\n      queueDeclare:\n        name: {queue}\n        durable: true\n        exclusive: false\n        autoDelete: false\n"
    );
    let pipe = Pipeline::new("amqp", &spec, "body").await?;
    let p = pipe.run(None, "run.log").await?;
    const CONSUMING: &str = "consuming the AMQP queue";
    const STOPPED: &str = "AMQP consumer stopped; reconnecting";
    p.wait_logged(CONSUMING, WAIT).await?;
    let before = json!({"phase": "before"});
    pipe.note_sent(&before);
    amqp_publish(&url, exchange, "orders.new", &before).await?;
    assert_arrives(&pipe, &before, &p).await;
    wait_readyz(&p, 200, WAIT).await?;

    // Twice: the broker drops the connection; a message is published while the source is away
    // (the durable queue keeps it); the source reconnects, waiting longer the second time.
    let mut kept = Vec::new();
    for round in 1..=2 {
        vhost.close_connections()?;
        let during = json!({"phase": "during", "round": round});
        pipe.note_sent(&during);
        amqp_publish(&url, exchange, "orders.new", &during).await?;
        kept.push(during);
        wait_logged_n(&p, STOPPED, round, WAIT).await?;
        wait_logged_n(&p, CONSUMING, round + 1, WAIT).await?;
    }
    assert_backs_off(&logged(&p, STOPPED), "amqp");
    let after = json!({"phase": "after"});
    pipe.note_sent(&after);
    amqp_publish(&url, exchange, "orders.new", &after).await?;
    for want in kept.iter().chain([&after]) {
        assert_arrives(&pipe, want, &p).await;
    }
    let required: Vec<Value> = [before].into_iter().chain(kept).chain([after]).collect();
    pipe.finish(&required)
        .await
        .map_err(|e| e.context(p.log_text()))?;
    // The broker only closed connections (it never went away, so a 503 would be too brief to
    // catch): the source is ready again.
    wait_readyz(&p, 200, WAIT).await?;
    p.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the redis-server binary: scripts/test installs it and runs ignored tests"]
async fn redis_pub_sub_resubscribes_with_backoff_after_restart() -> Result<()> {
    let mut server = PrivateServer::redis()?;
    let url = format!("redis://127.0.0.1:{}", server.port);
    let channel = format!("restart-{}", run_id());
    let spec = format!(
        "      hostAddress: {}\n      channels: [{channel}]\n      jsonBody: true\n",
        redis_host(&url)
    );
    let pipe = Pipeline::new("redis", &spec, "body").await?;
    let p = pipe.run(None, "run.log").await?;
    p.wait_logged("subscribed", WAIT).await?;
    let publish = |body: Value| {
        let (url, channel) = (url.clone(), channel.clone());
        async move { redis_publish(&url, &channel, &body).await }
    };
    let mut required = vec![
        pipe.publish_until_seen(|n| json!({"phase": "before", "n": n}), publish, WAIT)
            .await?,
    ];

    let mut outages = Vec::new();
    for round in 1..=2 {
        outages.push(outage(&p, &mut server, "the upstream connection failed; reconnecting", 2).await?);
        // Pub/sub keeps nothing for an absent subscriber: publish until the source is back.
        let got = pipe
            .publish_until_seen(
                |n| json!({"phase": "after", "round": round, "n": n}),
                publish,
                Duration::from_secs(40),
            )
            .await
            .map_err(|e| e.context(p.log_text()))?;
        assert_eq!(got["round"], round);
        required.push(got);
    }
    assert_backoff_starts_over(&outages[0], &outages[1], "redis");
    assert_eq!(
        logged(&p, "the upstream ended the session; reconnecting").len(),
        2
    );
    assert!(logged(&p, "subscribed").len() >= 3);
    pipe.finish(&required)
        .await
        .map_err(|e| e.context(p.log_text()))?;
    p.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the redis-server binary: scripts/test installs it and runs ignored tests"]
async fn redis_stream_reconnects_with_backoff_after_restart() -> Result<()> {
    let mut server = PrivateServer::redis()?;
    let url = format!("redis://127.0.0.1:{}", server.port);
    let stream = format!("restart-{}", run_id());
    let spec = format!(
        "      hostAddress: {}\n      streams: [{stream}]\n",
        redis_host(&url)
    );
    let pipe = Pipeline::new("redisStream", &spec, "values").await?;
    let p = pipe.run(None, "run.log").await?;
    const READING: &str = "reading redis streams";
    p.wait_logged(READING, WAIT).await?;
    let before = json!({"phase": "before"});
    pipe.note_sent(&before);
    redis_xadd(&url, &stream, &before).await?;
    assert_arrives(&pipe, &before, &p).await;

    let mut required = vec![before];
    let mut outages = Vec::new();
    for round in 1..=2 {
        outages.push(outage(&p, &mut server, "redis stream consumer failed; reconnecting", 3).await?);
        // The stream and its consumer group survive the restart (append-only file): an entry
        // added before the source is back is read once it is.
        let after = json!({"phase": "after", "round": round.to_string()});
        pipe.note_sent(&after);
        redis_xadd(&url, &stream, &after).await?;
        assert_arrives(&pipe, &after, &p).await;
        required.push(after);
    }
    assert_backoff_starts_over(&outages[0], &outages[1], "redisStream");
    assert!(logged(&p, READING).len() >= 3);
    pipe.finish(&required)
        .await
        .map_err(|e| e.context(p.log_text()))?;
    p.terminate()?;
    Ok(())
}
