//! Shared by `messaging_crash.rs` and `messaging_restart.rs`: an EventSource + Sensor pair whose
//! http trigger forwards each message's body to a sink, private servers a test may stop and start
//! (redis-server, mosquitto; nats-server is [`sluice_integration_tests::NatsServer`]), publishers
//! for every broker, and readers of the `sluice` JSON log.
//!
//! Settings come from `scripts/services.sh start nats mosquitto rabbitmq redis`; a missing one
//! fails the test (never skips it).

#![allow(dead_code)] // Each test file uses its own subset.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sluice_integration_tests::{wait_port, Arrivals, Sink, SluiceProcess};

/// The EventSource and event names every test uses.
pub const ES: &str = "fault-src";
pub const EVENT: &str = "msg";

/// A setting printed by `scripts/services.sh start …`; panics (fails the test) when missing.
pub fn env(name: &str) -> String {
    sluice_eventsource::testing::setting(name)
}

/// A fresh suffix for this run's names (streams, topics, queues, vhosts).
pub fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// An EventSource of one `kind` event (`spec` is its YAML body, indented 6 spaces) and a Sensor
/// whose http trigger POSTs the event data at `data_key` to a sink, as the whole request body.
pub struct Pipeline {
    pub dir: tempfile::TempDir,
    pub sink: Sink,
    /// Every message the test published to the broker (see [`Pipeline::note_sent`]).
    sent: Mutex<Vec<Value>>,
}

impl Pipeline {
    pub async fn new(kind: &str, spec: &str, data_key: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let sink = Sink::start().await?;
        let es = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata:\n  name: {ES}\nspec:\n  {kind}:\n    {EVENT}:\n{spec}"
        );
        let sensor = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata:\n  name: fault-sensor\nspec:\n  dependencies:\n    \
             - {{name: d, eventSourceName: {ES}, eventName: {EVENT}}}\n  triggers:\n    - template:\n        \
             name: to-sink\n        http:\n          url: http://127.0.0.1:{}/got\n          method: POST\n          \
             payload:\n            - src: {{dependencyName: d, dataKey: {data_key}}}\n              dest: \"\"\n      \
             retryStrategy: {{steps: 5, duration: 100ms}}\n",
            sink.port
        );
        std::fs::write(dir.path().join("eventsource.yaml"), es)?;
        std::fs::write(dir.path().join("sensor.yaml"), sensor)?;
        std::fs::create_dir_all(dir.path().join("secrets"))?;
        Ok(Self {
            dir,
            sink,
            sent: Mutex::default(),
        })
    }

    /// Records that the test published `body` (before publishing it, so a failed publish counts
    /// as "may arrive").
    pub fn note_sent(&self, body: &Value) {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(body.clone());
        }
    }

    /// The end of a test: waits until every message of `required` reached the sink, then a quiet
    /// second in which nothing more may arrive; checks the arrivals: each of `required` arrived,
    /// nothing arrived that the test did not publish ([`note_sent`](Self::note_sent)), every
    /// arrival carries a non-empty idempotency key, one per message, distinct across messages.
    pub async fn finish(&self, required: &[Value]) -> Result<Arrivals<String>> {
        let required: BTreeSet<String> = required.iter().map(Value::to_string).collect();
        let sent: BTreeSet<String> = self
            .sent
            .lock()
            .map(|s| s.iter().map(Value::to_string).collect())
            .unwrap_or_default();
        self.sink
            .wait_until("every required message arrived", Duration::from_secs(40), |got| {
                let seen: BTreeSet<String> = got.iter().map(|r| r.body.to_string()).collect();
                seen.is_superset(&required)
            })
            .await?;
        let got = self.sink.assert_quiet(Duration::from_secs(1)).await?;
        let arrivals = Arrivals::of(&got, |r| Some(r.body.to_string()))?;
        arrivals.check_between(&required, &sent)?;
        Ok(arrivals)
    }

    fn path(&self, name: &str) -> Result<String> {
        Ok(self
            .dir
            .path()
            .join(name)
            .to_str()
            .context("temporary path is not UTF-8")?
            .to_owned())
    }

    fn start(&self, args: &[&str], log: &str) -> Result<SluiceProcess> {
        let mut all = args.to_vec();
        all.extend(["--log-format", "json", "--metrics-address", "127.0.0.1:0"]);
        all.extend(["--listen", "127.0.0.1"]);
        SluiceProcess::start(&all, self.dir.path().join(log), &self.dir.path().join("secrets"))
    }

    /// `sluice run eventsource.yaml sensor.yaml` on the embedded bus, or on JetStream at `bus`;
    /// returns once it logged that it runs.
    pub async fn run(&self, bus: Option<&str>, log: &str) -> Result<SluiceProcess> {
        let (es, sensor, state) = (
            self.path("eventsource.yaml")?,
            self.path("sensor.yaml")?,
            self.path("state")?,
        );
        let mut args = vec!["run", &es, &sensor, "--state-dir", &state];
        if let Some(bus) = bus {
            args.extend(["--bus", bus]);
        }
        let p = self.start(&args, log)?;
        p.wait_logged(RUNNING, Duration::from_secs(40)).await?;
        Ok(p)
    }

    /// `sluice eventsource -f eventsource.yaml --bus BUS`; returns once it logged that it runs.
    pub async fn eventsource(&self, bus: &str, log: &str) -> Result<SluiceProcess> {
        let es = self.path("eventsource.yaml")?;
        let p = self.start(&["eventsource", "-f", &es, "--bus", bus], log)?;
        p.wait_logged(RUNNING, Duration::from_secs(40)).await?;
        Ok(p)
    }

    /// The bodies the sink received, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.sink.received().into_iter().map(|r| r.body).collect()
    }

    /// Waits until the sink received `want`; false when `within` passed first.
    pub async fn wait_body(&self, want: &Value, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.bodies().contains(want) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Publishes `make(i)` for i = 0, 1, … every half second until the sink received one of them
    /// (pub/sub brokers keep nothing for a subscriber that is not there yet); returns the one
    /// that arrived first.
    pub async fn publish_until_seen<F, Fut>(
        &self,
        make: impl Fn(usize) -> Value,
        publish: F,
        within: Duration,
    ) -> Result<Value>
    where
        F: Fn(Value) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let deadline = Instant::now() + within;
        let mut sent = Vec::new();
        for i in 0.. {
            let body = make(i);
            self.note_sent(&body);
            publish(body.clone()).await?;
            sent.push(body);
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                if let Some(got) = self.bodies().into_iter().find(|b| sent.contains(b)) {
                    return Ok(got);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if Instant::now() > deadline {
                break;
            }
        }
        bail!(
            "none of {} published messages reached the sink within {within:?}",
            sent.len()
        )
    }
}

/// What `sluice` logs once every source and sensor started.
pub const RUNNING: &str = "sluice is running; Ctrl-C or SIGTERM stops it";

/// The JSON log lines of `p` whose message is `message`.
pub fn logged(p: &SluiceProcess, message: &str) -> Vec<Value> {
    p.log_lines()
        .into_iter()
        .filter(|l| l["message"] == message)
        .collect()
}

/// Waits until `p` logged `message` at least `n` times; returns those lines.
pub async fn wait_logged_n(
    p: &SluiceProcess,
    message: &str,
    n: usize,
    within: Duration,
) -> Result<Vec<Value>> {
    let deadline = Instant::now() + within;
    loop {
        let lines = logged(p, message);
        if lines.len() >= n {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            bail!(
                "{message:?} logged {} times, not {n}, within {within:?}; log:\n{}",
                lines.len(),
                p.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `sluice` logs once its `/metrics`, `/healthz` and `/readyz` listen (with `addr`).
pub const SERVING: &str = "serving /metrics, /healthz and /readyz";

/// Waits until `GET /readyz` of `p` answers `status` (200 ready, 503 not); returns the body.
pub async fn wait_readyz(p: &SluiceProcess, status: u16, within: Duration) -> Result<String> {
    let line = p.wait_logged(SERVING, within).await?;
    let addr = line["addr"]
        .as_str()
        .with_context(|| format!("no addr in {line}"))?
        .to_owned();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        let last = match client.get(format!("http://{addr}/readyz")).send().await {
            Ok(r) => {
                let got = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                if got == status {
                    return Ok(body);
                }
                format!("{got} {body}")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!(
                "/readyz did not answer {status} within {within:?} (last: {last}); log:\n{}",
                p.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts `/readyz` of `p` fails naming this test's source while its server is down.
pub async fn assert_not_ready(p: &SluiceProcess, within: Duration) -> Result<()> {
    let body = wait_readyz(p, 503, within).await?;
    let source = format!("{ES}/{EVENT}");
    assert!(body.contains(&source), "/readyz does not name {source}: {body}");
    Ok(())
}

/// Waits until `p` logged that the bus did not take an event of this test's source (the wording
/// after the semicolon says what the source does next, and differs between kinds).
pub async fn wait_refused(p: &SluiceProcess, within: Duration) -> Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let found = p.log_lines().into_iter().find(|l| {
            l["eventsource"] == ES
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("bus did not take the event"))
        });
        if let Some(l) = found {
            return Ok(l);
        }
        if Instant::now() > deadline {
            bail!("no refusal logged within {within:?}; log:\n{}", p.log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `Duration`'s `Debug` text (`200ms`, `1.6s`, `30s`, `750µs`) back as a duration.
pub fn parse_debug_duration(s: &str) -> Option<Duration> {
    let (number, unit) = s.split_at(s.find(|c: char| c.is_alphabetic() || c == 'µ')?);
    let n: f64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "µs" | "us" => n / 1e6,
        "ns" => n / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// The `retry_in` of each line (the wait before the next connection attempt).
pub fn retry_waits(lines: &[Value]) -> Vec<Duration> {
    lines
        .iter()
        .filter_map(|l| l["retry_in"].as_str().and_then(parse_debug_duration))
        .collect()
}

/// Asserts that the retry waits of `lines` back off: every wait at least the one before it, and
/// the last longer than the first.
pub fn assert_backs_off(lines: &[Value], what: &str) {
    let waits = retry_waits(lines);
    assert!(
        waits.len() >= 2,
        "{what}: expected two retry waits, got {lines:?}"
    );
    assert!(
        waits.windows(2).all(|w| w[1] >= w[0]) && waits[waits.len() - 1] > waits[0],
        "{what}: retry waits do not back off: {waits:?}"
    );
}

/// A server of the test's own on a free port (so stopping it disturbs no other test); killed on
/// drop.
pub struct PrivateServer {
    program: PathBuf,
    args: Vec<String>,
    /// Its port.
    pub port: u16,
    /// Its data directory.
    pub dir: tempfile::TempDir,
    /// SIGTERM (the server saves its state) rather than SIGKILL.
    graceful: bool,
    child: Option<Child>,
}

impl PrivateServer {
    /// redis-server (`$REDIS_SERVER_BIN`) with an append-only file synced on every write, so its
    /// streams and consumer groups survive a kill.
    pub fn redis() -> Result<Self> {
        let port = sluice_integration_tests::free_port()?;
        let dir = tempfile::tempdir()?;
        let args = [
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            dir.path().to_str().context("path")?,
        ]
        .map(String::from)
        .to_vec();
        Self::start(PathBuf::from(env("REDIS_SERVER_BIN")), args, port, dir, false)
    }

    /// mosquitto (`$MOSQUITTO_BIN`), anonymous, with persistence (sessions survive a graceful
    /// restart), stopped with SIGTERM.
    pub fn mosquitto() -> Result<Self> {
        let port = sluice_integration_tests::free_port()?;
        let dir = tempfile::tempdir()?;
        // Started as root, mosquitto drops to its own user, which must write the persistence file.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.path().display()
            ),
        )?;
        let args = vec!["-c".into(), conf.to_str().context("path")?.to_owned()];
        Self::start(PathBuf::from(env("MOSQUITTO_BIN")), args, port, dir, true)
    }

    fn start(
        program: PathBuf,
        args: Vec<String>,
        port: u16,
        dir: tempfile::TempDir,
        graceful: bool,
    ) -> Result<Self> {
        let mut s = Self {
            program,
            args,
            port,
            dir,
            graceful,
            child: None,
        };
        s.restart()?;
        Ok(s)
    }

    /// Stops it (SIGTERM and wait, or SIGKILL) — as a restart or a crash would.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if self.graceful {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start {}", self.program.display()))?;
        self.child = Some(child);
        if !wait_port(self.port, Duration::from_secs(20)) {
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            bail!(
                "{} did not listen on {} within 20s; log:\n{log}",
                self.program.display(),
                self.port
            );
        }
        Ok(())
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- publishers ------------------------------------------------------------------------------

/// Publishes `body` on core NATS at `url`.
pub async fn nats_publish(url: &str, subject: &str, body: &Value) -> Result<()> {
    let c = async_nats::connect(url).await?;
    c.publish(subject.to_owned(), body.to_string().into()).await?;
    c.flush().await?;
    Ok(())
}

/// Publishes `body` on JetStream at `url` and waits for the stream's ack; retries for a while
/// (a restarted server takes a moment to recover its streams).
pub async fn js_publish(url: &str, subject: &str, body: &Value) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let js = async_nats::jetstream::new(async_nats::connect(url).await?);
            js.publish(subject.to_owned(), body.to_string().into())
                .await?
                .await?;
            Ok::<_, anyhow::Error>(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e.context("failed to publish on JetStream")),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A multiplexed connection to the redis at `url`.
pub async fn redis_con(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

/// `host:port` of a `redis://host:port` URL (the sources' `hostAddress`).
pub fn redis_host(url: &str) -> String {
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

/// Runs `cmd`, retrying for a while: a restarted redis-server answers LOADING until it has read
/// its append-only file back.
async fn redis_query<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let mut con = redis_con(url).await?;
            Ok::<T, anyhow::Error>(cmd.query_async(&mut con).await?)
        };
        match attempt.await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// PUBLISH `body` on `channel`.
pub async fn redis_publish(url: &str, channel: &str, body: &Value) -> Result<()> {
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel).arg(body.to_string());
    let _: i64 = redis_query(url, &cmd).await?;
    Ok(())
}

/// XADD the string fields of `fields` (a JSON object) to `stream`; returns the entry id.
pub async fn redis_xadd(url: &str, stream: &str, fields: &Value) -> Result<String> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (k, v) in fields.as_object().context("fields must be an object")? {
        cmd.arg(k)
            .arg(v.as_str().context("field values must be strings")?);
    }
    redis_query(url, &cmd).await
}

fn mqtt_options(url: &str, client_id: &str, clean: bool) -> Result<rumqttc::MqttOptions> {
    let (host, port) = sluice_eventsource::sources::mqtt::parse_url(url).map_err(anyhow::Error::msg)?;
    let mut o = rumqttc::MqttOptions::new(client_id, host, port);
    o.set_clean_session(clean);
    Ok(o)
}

/// `tcp://127.0.0.1:PORT` of a private mosquitto.
pub fn mqtt_url(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

/// How long an MQTT exchange with the broker (SUBACK, PUBACK, the disconnect) may take.
const MQTT_EXCHANGE: Duration = Duration::from_secs(30);

/// Opens the persistent session of `client_id` with a QoS 1 subscription to `filter` and leaves:
/// from now on the broker keeps matching messages for that client, whether connected or not.
pub async fn mqtt_open_session(url: &str, client_id: &str, filter: &str) -> Result<()> {
    use rumqttc::{Event, Outgoing, Packet};
    let (client, mut eventloop) = rumqttc::AsyncClient::new(mqtt_options(url, client_id, false)?, 10);
    client.subscribe(filter, rumqttc::QoS::AtLeastOnce).await?;
    tokio::time::timeout(MQTT_EXCHANGE, async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await? {
                return Ok::<_, anyhow::Error>(());
            }
        }
    })
    .await
    .context("no SUBACK from the MQTT broker in time")??;
    client.disconnect().await?;
    tokio::time::timeout(MQTT_EXCHANGE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .context("the MQTT session did not disconnect in time")
}

/// Publishes `body` at QoS 1 and waits for the broker's PUBACK.
pub async fn mqtt_publish(url: &str, topic: &str, body: &Value) -> Result<()> {
    use rumqttc::{Event, Packet};
    let (client, mut eventloop) =
        rumqttc::AsyncClient::new(mqtt_options(url, &format!("pub-{}", run_id()), true)?, 10);
    client
        .publish(
            topic,
            rumqttc::QoS::AtLeastOnce,
            false,
            body.to_string().into_bytes(),
        )
        .await?;
    tokio::time::timeout(MQTT_EXCHANGE, async {
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await? {
                return Ok(());
            }
        }
    })
    .await
    .context("no PUBACK from the MQTT broker in time")?
}

/// Publishes `body` to `exchange` with `key` (persistent, publisher-confirmed).
pub async fn amqp_publish(url: &str, exchange: &str, key: &str, body: &Value) -> Result<()> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let confirm = ch
        .basic_publish(
            exchange,
            key,
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
    anyhow::ensure!(
        confirm.is_ack(),
        "the broker did not confirm the publish: {confirm:?}"
    );
    let _ = conn.close(200, "done").await;
    Ok(())
}

/// How many ready (not handed out) messages queue `queue` holds (a passive declare).
pub async fn amqp_ready(url: &str, queue: &str) -> Result<u32> {
    use lapin::options::QueueDeclareOptions;
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await?;
    let _ = conn.close(200, "done").await;
    Ok(q.message_count())
}

/// Runs the services' `rabbitmqctl` wrapper (`$RABBITMQCTL`) with `args`.
pub fn rabbitmqctl(args: &[&str]) -> Result<String> {
    let out = Command::new(env("RABBITMQCTL"))
        .args(args)
        .output()
        .context("failed to run rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A RabbitMQ virtual host of the test's own on the shared node (so closing its connections
/// disturbs no other test); deleted on drop.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn create() -> Result<Self> {
        let name = format!("rt-{}", run_id());
        rabbitmqctl(&["add_vhost", &name])?;
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"])?;
        Ok(Self { name })
    }

    /// `AMQP_URL` with this vhost instead of `/`.
    pub fn url(&self) -> String {
        let base = env("AMQP_URL");
        let root = base.rsplit_once('/').map_or(base.as_str(), |(r, _)| r);
        format!("{root}/{}", self.name)
    }

    /// Closes every client connection to this vhost (the broker side of a network failure).
    pub fn close_connections(&self) -> Result<()> {
        rabbitmqctl(&[
            "close_all_connections",
            "--vhost",
            &self.name,
            "sluice fault test",
        ])?;
        Ok(())
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}
