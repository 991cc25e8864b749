//! Bad input, end to end: a kafka source whose `url` names a loopback port where nothing listens
//! yet, under `sluice run`. While the brokers are unreachable the process is not ready (`/readyz`
//! answers 503 naming `<EventSource>/<event>`) and logs, with backoff, that it failed to reach them.
//! Then the test opens that port with a TCP forwarder of its own to the real Kafka of
//! `scripts/services.sh start kafka` (KAFKA_BROKERS): the process turns ready, and a record produced
//! to the topic reaches the sensor's http trigger. The client bootstraps through the forwarder and
//! then talks to the broker's advertised address, as any Kafka client does. Fails (never skips)
//! without KAFKA_BROKERS.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sluice_eventsource::testing::try_setting;
use sluice_integration_tests::{free_port, Arrivals, Received, Sink, SluiceProcess};
use tokio::net::{TcpListener, TcpStream};

/// Generous: librdkafka's and the source's reconnect backoffs grow to tens of seconds.
const WAIT: Duration = Duration::from_secs(120);

fn brokers() -> Result<String> {
    Ok(try_setting("KAFKA_BROKERS")?)
}

/// `/readyz`'s status and body, or `None` while the process does not listen yet.
async fn readyz(port: u16) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.unwrap_or_default()))
}

/// Polls `/readyz` until `want` holds for it; its last answer.
async fn wait_readyz(
    port: u16,
    process: &SluiceProcess,
    what: &str,
    want: impl Fn(u16, &str) -> bool,
) -> Result<(u16, String)> {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((status, body)) = readyz(port).await {
            if want(status, &body) {
                return Ok((status, body));
            }
            last = Some((status, body));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "/readyz never {what} (last answer {last:?}); log:\n{}",
        process.log_text()
    )
}

/// Accepts on `listener` and pipes every connection to `target` until the test ends.
fn forward(listener: TcpListener, target: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: scripts/test starts it and runs ignored tests"]
async fn unreachable_brokers_keep_the_source_unready_until_they_answer() -> Result<()> {
    let brokers = brokers()?;
    let run = format!(
        "{:x}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
        std::process::id()
    );
    let topic = format!("unreachable-{run}");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create()?;
    for r in admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("failed to create topic {t}: {e}"))?;
    }

    // Nothing listens here until the forwarder starts.
    let closed = free_port()?;
    let address = format!("127.0.0.1:{closed}");
    let sink = Sink::start().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("es.yaml"),
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: kr-src}}\nspec:\n  kafka:\n    \
             orders:\n      url: \"{address}\"\n      topic: {topic}\n      jsonBody: true\n      \
             connectionBackoff: {{duration: 1s}}\n      consumerGroup: {{groupName: g-{run}, oldest: true}}\n"
        ),
    )?;
    std::fs::write(
        dir.path().join("sensor.yaml"),
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata: {{name: kr-sensor}}\nspec:\n  dependencies:\n    \
             - {{name: d, eventSourceName: kr-src, eventName: orders}}\n  triggers:\n    - template:\n        \
             name: to-sink\n        http:\n          url: http://127.0.0.1:{}/orders\n          method: POST\n          \
             payload:\n            - src: {{dependencyName: d, dataKey: body.order}}\n              dest: order\n",
            sink.port
        ),
    )?;
    std::fs::create_dir_all(dir.path().join("secrets"))?;
    let metrics_port = free_port()?;
    let metrics = format!("127.0.0.1:{metrics_port}");
    let (es, sensor, state) = (
        dir.path().join("es.yaml"),
        dir.path().join("sensor.yaml"),
        dir.path().join("state"),
    );
    let sluice = SluiceProcess::start(
        &[
            "run",
            es.to_str().context("path")?,
            sensor.to_str().context("path")?,
            "--log-format",
            "json",
            "--metrics-address",
            &metrics,
            "--state-dir",
            state.to_str().context("path")?,
        ],
        dir.path().join("sluice.log"),
        &dir.path().join("secrets"),
    )?;

    // Unreachable: the source logs each failed attempt, waiting longer each time (backoff)…
    const UNREACHABLE: &str = "failed to reach the kafka brokers; retrying";
    let deadline = Instant::now() + WAIT;
    let attempts = loop {
        let lines: Vec<Value> = sluice
            .log_lines()
            .into_iter()
            .filter(|l| l["message"] == UNREACHABLE)
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        if Instant::now() > deadline {
            bail!(
                "fewer than two {UNREACHABLE:?} lines; log:\n{}",
                sluice.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for line in &attempts {
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["eventsource"], "kr-src", "{line}");
        assert_eq!(line["event_name"], "orders", "{line}");
        assert_eq!(
            line["brokers"],
            address.as_str(),
            "the line names the brokers: {line}"
        );
    }
    let waits: Vec<u64> = attempts
        .iter()
        .filter_map(|l| l["retry_in_ms"].as_u64())
        .collect();
    assert_eq!(
        waits.len(),
        attempts.len(),
        "each line says when it retries: {attempts:?}"
    );
    assert!(waits[1] > waits[0], "the wait grows between attempts: {waits:?}");
    // …and is not ready: `/readyz` answers 503 naming the source's condition.
    let (status, body) = wait_readyz(metrics_port, &sluice, "answered", |_, _| true).await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("kr-src/orders"), "/readyz names the source: {body}");

    // The brokers become reachable at the configured address.
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("failed to listen on {address} (taken by another process meanwhile?)"))?;
    let forwarder = forward(listener, brokers.clone());
    wait_readyz(metrics_port, &sluice, "turned 200", |status, _| status == 200).await?;

    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create()?;
    let sent: BTreeSet<String> = (1..=5).map(|i| format!("o-{i}")).collect();
    for order in &sent {
        producer
            .send(
                FutureRecord::to(&topic)
                    .key("k")
                    .payload(&json!({"order": order}).to_string()),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("failed to produce record {order}: {e}"))?;
    }
    let order_of = |r: &Received| r.body["order"].as_str().map(str::to_owned);
    sink.wait_until("every record reached the sink", WAIT, |got| {
        got.iter()
            .filter_map(order_of)
            .collect::<BTreeSet<_>>()
            .is_superset(&sent)
    })
    .await
    .map_err(|e| e.context(sluice.log_text()))?;
    let received = sink.assert_quiet(Duration::from_secs(1)).await?;
    assert!(received.iter().all(|r| r.path == "/orders"), "{received:?}");
    // Each record once under a key of its own (an event id from topic/partition/offset).
    let arrivals = Arrivals::of(&received, order_of)?;
    arrivals.check(&sent)?;
    assert_eq!(arrivals.total(), sent.len(), "no repeats without faults");

    sluice.terminate()?;
    forwarder.abort();
    Ok(())
}
