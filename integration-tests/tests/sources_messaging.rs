//! End to end through `sluice run`: for each messaging and file kind, a message published on the
//! real server (`NATS_URL`, `REDIS_URL`, `MQTT_URL`, `AMQP_URL` from `scripts/services.sh start
//! nats redis mosquitto rabbitmq`; a temporary directory for `file`) goes through the EventSource,
//! the embedded bus and a Sensor's http trigger to a sink, which receives the exact payload.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sluice_eventsource::testing::setting;
use sluice_integration_tests::{Sink, SluiceProcess};

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Writes the EventSource (`kind` with the event `msg` configured by `spec`) and a Sensor whose
/// http trigger POSTs `{"got": <data at data_key>}` to the sink; starts `sluice run`; calls
/// `publish` until the sink got one request (pub/sub kinds keep nothing for a subscriber not yet
/// there); returns what the sink received.
async fn round_trip<F, Fut>(kind: &str, spec: &str, data_key: &str, publish: F) -> Result<Value>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir()?;
    let sink = Sink::start().await?;
    let es = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata:\n  name: rt-src\nspec:\n  {kind}:\n    msg:\n{spec}"
    );
    let sensor = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata:\n  name: rt-sensor\nspec:\n  dependencies:\n    - name: d\n      eventSourceName: rt-src\n      eventName: msg\n  triggers:\n    - template:\n        name: to-sink\n        http:\n          url: http://127.0.0.1:{}/got\n          method: POST\n          payload:\n            - src: {{dependencyName: d, dataKey: {data_key}}}\n              dest: got\n",
        sink.port
    );
    std::fs::write(dir.path().join("es.yaml"), es)?;
    std::fs::write(dir.path().join("sensor.yaml"), sensor)?;
    std::fs::create_dir_all(dir.path().join("secrets"))?;
    let (es_path, sensor_path, state) = (
        dir.path().join("es.yaml"),
        dir.path().join("sensor.yaml"),
        dir.path().join("state"),
    );
    let args = [
        "run",
        es_path.to_str().context("path")?,
        sensor_path.to_str().context("path")?,
        "--log-format",
        "json",
        "--metrics-address",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().context("path")?,
    ];
    let sluice = SluiceProcess::start(&args, dir.path().join("sluice.log"), &dir.path().join("secrets"))?;
    for _ in 0..60 {
        publish().await;
        if sink.wait_for(1, Duration::from_millis(500)).await >= 1 {
            break;
        }
    }
    let received = sink.received();
    let log = sluice.log_text();
    sluice.terminate()?;
    let first = received
        .first()
        .with_context(|| format!("the sink received nothing; log:\n{log}"))?;
    assert_eq!(first.path, "/got");
    // The http trigger renders an object parameter as its JSON text (the sensor's rule); compare
    // the payload itself.
    let got = first.body["got"].clone();
    Ok(match got.as_str().map(serde_json::from_str::<Value>) {
        Some(Ok(v)) if v.is_object() => v,
        _ => got,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: scripts/test starts it and runs ignored tests"]
async fn nats() -> Result<()> {
    let (url, subject) = (setting("NATS_URL"), format!("rt.nats.{}", run_id()));
    let spec = format!("      url: {url}\n      subject: {subject}\n      jsonBody: true\n");
    let got = round_trip("nats", &spec, "body", || async {
        let c = async_nats::connect(url.clone()).await.expect("connect");
        c.publish(subject.clone(), r#"{"order":1,"tags":["a"]}"#.into())
            .await
            .expect("publish");
        c.flush().await.expect("flush");
    })
    .await?;
    assert_eq!(got, json!({"order": 1, "tags": ["a"]}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: scripts/test starts it and runs ignored tests"]
async fn jetstream() -> Result<()> {
    let run = run_id();
    let (url, subject, stream) = (setting("NATS_URL"), format!("rt.js.{run}"), format!("RT_{run}"));
    let js = async_nats::jetstream::new(async_nats::connect(url.clone()).await?);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await?;
    // Stored before Sluice starts: a durable stream keeps it.
    js.publish(subject.clone(), r#"{"order":2}"#.into())
        .await?
        .await?;
    let spec =
        format!("      url: {url}\n      stream: {stream}\n      consumer: rt\n      jsonBody: true\n");
    let got = round_trip("jetstream", &spec, "body", || async {}).await?;
    assert_eq!(got, json!({"order": 2}));
    Ok(())
}

fn redis_host() -> String {
    setting("REDIS_URL")
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

async fn redis_con() -> redis::aio::MultiplexedConnection {
    redis::Client::open(setting("REDIS_URL"))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: scripts/test starts it and runs ignored tests"]
async fn redis_pub_sub() -> Result<()> {
    let channel = format!("rt-{}", run_id());
    let spec = format!(
        "      hostAddress: {}\n      channels: [{channel}]\n      jsonBody: true\n",
        redis_host()
    );
    let got = round_trip("redis", &spec, "body", || async {
        let mut con = redis_con().await;
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(r#"{"order":3}"#)
            .query_async(&mut con)
            .await
            .expect("publish");
    })
    .await?;
    assert_eq!(got, json!({"order": 3}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: scripts/test starts it and runs ignored tests"]
async fn redis_stream() -> Result<()> {
    let stream = format!("rt-{}", run_id());
    let spec = format!("      hostAddress: {}\n      streams: [{stream}]\n", redis_host());
    let got = round_trip("redisStream", &spec, "values", || async {
        let mut con = redis_con().await;
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("order")
            .arg("4")
            .query_async(&mut con)
            .await
            .expect("xadd");
    })
    .await?;
    assert_eq!(got, json!({"order": "4"}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Mosquitto: scripts/test starts it and runs ignored tests"]
async fn mqtt() -> Result<()> {
    let run = run_id();
    let (url, topic) = (setting("MQTT_URL"), format!("rt/{run}/orders"));
    let spec = format!(
        "      url: {url}\n      topic: rt/{run}/#\n      clientId: rt-{run}\n      jsonBody: true\n"
    );
    let got = round_trip("mqtt", &spec, "body", || async {
        let (host, port) = sluice_eventsource::sources::mqtt::parse_url(&url).expect("url");
        let (client, mut eventloop) = rumqttc::AsyncClient::new(
            rumqttc::MqttOptions::new(format!("pub-{}", run_id()), host, port),
            10,
        );
        client
            .publish(
                topic.clone(),
                rumqttc::QoS::AtLeastOnce,
                false,
                br#"{"order":5}"#.to_vec(),
            )
            .await
            .expect("publish");
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                    eventloop.poll().await.expect("mqtt")
                {
                    break;
                }
            }
        })
        .await
        .expect("a PUBACK from the broker within 30 s");
    })
    .await?;
    assert_eq!(got, json!({"order": 5}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test starts it and runs ignored tests"]
async fn amqp() -> Result<()> {
    let run = run_id();
    let (url, exchange) = (setting("AMQP_URL"), format!("rt-x-{run}"));
    let spec = format!(
        "      url: \"{url}\"\n      exchangeName: {exchange}\n      exchangeType: topic\n      routingKey: \"orders.*\"\n      jsonBody: true\n"
    );
    let got = round_trip("amqp", &spec, "body", || async {
        use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
        let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        let options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            exchange.as_str(),
            lapin::ExchangeKind::Topic,
            options,
            Default::default(),
        )
        .await
        .expect("exchange");
        ch.basic_publish(
            exchange.as_str(),
            "orders.new",
            BasicPublishOptions::default(),
            br#"{"order":6}"#,
            Default::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
        let _ = conn.close(200, "done").await;
    })
    .await?;
    assert_eq!(got, json!({"order": 6}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file() -> Result<()> {
    let watched = tempfile::tempdir()?;
    let dir: &Path = watched.path();
    let spec = format!(
        "      eventType: CREATE\n      watchPathConfig:\n        directory: {}/\n        path: ready.txt\n",
        dir.display()
    );
    let target = dir.join("ready.txt");
    let got = round_trip("file", &spec, "name", || async {
        let _ = std::fs::remove_file(&target);
        std::fs::write(&target, "x").expect("write");
    })
    .await?;
    assert_eq!(got, json!(target.display().to_string()));
    Ok(())
}
