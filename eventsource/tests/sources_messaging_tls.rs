//! The `tls` block of the `nats`, `jetstream`, `mqtt`, `redis` and `redisStream` sources against
//! real TLS servers (`scripts/services.sh start nats mosquitto redis`, settings exported:
//! `NATS_TLS_URL`, `MQTTS_URL`, `MQTTS_MTLS_URL`, `REDISS_URL`, and the test certificates
//! `TLS_CA_FILE`, `TLS_OTHER_CA_FILE`, `TLS_CLIENT_CERT_FILE`, `TLS_CLIENT_KEY_FILE`).
//!
//! For each kind: an event arrives over TLS with the CA from a Secret; with another CA the source
//! never becomes ready and keeps retrying (no panic); `insecureSkipVerify` connects. Mutual TLS:
//! mosquitto's second TLS listener requires a client certificate. A `tls` block whose Secret is
//! not PEM fails the build naming the field path, never the content.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use sluice_crds::eventsource::EventSource;
use sluice_eventsource::sources::mqtt;
use sluice_eventsource::testing::{setting, start, Recorder};
use sluice_eventsource::tls::{client_config, TlsMaterial};
use sluice_eventsource::{build, FileSecretResolver, SourceContext};

const ES: &str = "tls";
const EVENT: &str = "e";

fn read(var: &str) -> String {
    std::fs::read_to_string(setting(var)).unwrap_or_else(|e| panic!("read {var}: {e}"))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A secrets directory with Secret `tls`: `ca.pem`, `other-ca.pem`, `client.pem`, `client.key`
/// (the services' test certificates) and `garbage` (not PEM).
fn secrets() -> tempfile::TempDir {
    let dir = garbage_secret();
    let tls = dir.path().join("tls");
    for (key, var) in [
        ("ca.pem", "TLS_CA_FILE"),
        ("other-ca.pem", "TLS_OTHER_CA_FILE"),
        ("client.pem", "TLS_CLIENT_CERT_FILE"),
        ("client.key", "TLS_CLIENT_KEY_FILE"),
    ] {
        std::fs::write(tls.join(key), read(var)).expect("write secret");
    }
    dir
}

/// A secrets directory with Secret `tls`: `garbage` (not PEM); the other keys are added by
/// [`secrets`].
fn garbage_secret() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).expect("mkdir");
    std::fs::write(tls.join("garbage"), "hunter2 is not a certificate").expect("write secret");
    dir
}

const WITH_CA: &str = "{caCertSecret: {name: tls, key: ca.pem}}";
const WITH_OTHER_CA: &str = "{caCertSecret: {name: tls, key: other-ca.pem}}";
const INSECURE: &str = "{insecureSkipVerify: true}";
const MUTUAL: &str =
    "{caCertSecret: {name: tls, key: ca.pem}, clientCertSecret: {name: tls, key: client.pem}, \
                      clientKeySecret: {name: tls, key: client.key}}";

/// The broker kinds with a `tls` block, each with its TLS endpoint and a publisher.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Nats,
    JetStream,
    Mqtt,
    Redis,
    RedisStream,
}

const KINDS: [Kind; 5] = [
    Kind::Nats,
    Kind::JetStream,
    Kind::Mqtt,
    Kind::Redis,
    Kind::RedisStream,
];

impl Kind {
    /// The kind's key in an EventSource spec.
    fn spelled(self) -> &'static str {
        match self {
            Kind::Nats => "nats",
            Kind::JetStream => "jetstream",
            Kind::Mqtt => "mqtt",
            Kind::Redis => "redis",
            Kind::RedisStream => "redisStream",
        }
    }
}

/// A NATS client of the TLS server, verifying it with the test CA.
async fn nats_tls_client() -> async_nats::Client {
    let config = client_config(&TlsMaterial {
        ca_cert: Some(read("TLS_CA_FILE")),
        ..Default::default()
    })
    .expect("client config");
    async_nats::ConnectOptions::new()
        .require_tls(true)
        .tls_client_config(config.as_ref().clone())
        .connect(setting("NATS_TLS_URL"))
        .await
        .expect("connect to NATS_TLS_URL")
}

async fn redis_plain() -> redis::aio::MultiplexedConnection {
    redis::Client::open(setting("REDIS_URL"))
        .expect("REDIS_URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to REDIS_URL")
}

/// Where one test's messages go, and the event's spec.
struct Target {
    kind: Kind,
    /// Subject, topic, channel or stream.
    name: String,
    /// The server: `NATS_TLS_URL`, `MQTTS_URL` (or `MQTTS_MTLS_URL`), or the host:port of
    /// `REDISS_URL`.
    url: String,
}

impl Target {
    async fn new(kind: Kind) -> Self {
        let name = unique("tls");
        if let Kind::JetStream = kind {
            // The stream exists before the source binds its consumer to it.
            async_nats::jetstream::new(nats_tls_client().await)
                .create_stream(async_nats::jetstream::stream::Config {
                    name: name.clone(),
                    subjects: vec![format!("{name}.>")],
                    ..Default::default()
                })
                .await
                .expect("create stream");
        }
        let url = match kind {
            Kind::Nats | Kind::JetStream => setting("NATS_TLS_URL"),
            Kind::Mqtt => setting("MQTTS_URL"),
            Kind::Redis | Kind::RedisStream => setting("REDISS_URL")
                .trim_start_matches("rediss://")
                .trim_end_matches('/')
                .to_string(),
        };
        Self { kind, name, url }
    }

    fn manifest(&self, tls: &str) -> EventSource {
        let name = &self.name;
        let spec = match self.kind {
            Kind::Nats => format!("url: \"{}\", subject: \"{name}.>\"", self.url),
            Kind::JetStream => format!("url: \"{}\", stream: \"{name}\"", self.url),
            Kind::Mqtt => format!("url: \"{}\", topic: \"{name}/#\", clientId: \"{name}\"", self.url),
            Kind::Redis => format!("hostAddress: \"{}\", channels: [\"{name}\"]", self.url),
            Kind::RedisStream => format!("hostAddress: \"{}\", streams: [\"{name}\"]", self.url),
        };
        let kind = self.kind.spelled();
        let yaml = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: {ES}}}\nspec:\n  \
             {kind}:\n    {EVENT}: {{{spec}, jsonBody: true, tls: {tls}}}\n"
        );
        serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    /// Publishes `body` the way the kind's producers do (over TLS for NATS, whose TLS server is
    /// a server of its own; through the plain port of the same server for mosquitto and redis).
    async fn publish(&self, body: &Value) {
        let payload = body.to_string();
        let name = &self.name;
        match self.kind {
            Kind::Nats => {
                let client = nats_tls_client().await;
                client
                    .publish(format!("{name}.x"), payload.into())
                    .await
                    .expect("publish");
                client.flush().await.expect("flush");
            }
            Kind::JetStream => {
                async_nats::jetstream::new(nats_tls_client().await)
                    .publish(format!("{name}.x"), payload.into())
                    .await
                    .expect("publish")
                    .await
                    .expect("stored");
            }
            Kind::Mqtt => {
                let (host, port) = mqtt::parse_url(&setting("MQTT_URL")).expect("MQTT_URL");
                let (client, mut eventloop) =
                    AsyncClient::new(MqttOptions::new(unique("pub"), host, port), 10);
                client
                    .publish(format!("{name}/x"), QoS::AtLeastOnce, false, payload.into_bytes())
                    .await
                    .expect("publish");
                loop {
                    if let MqttEvent::Incoming(Packet::PubAck(_)) = eventloop.poll().await.expect("mqtt") {
                        break;
                    }
                }
            }
            Kind::Redis => {
                let _: i64 = redis::cmd("PUBLISH")
                    .arg(name)
                    .arg(payload)
                    .query_async(&mut redis_plain().await)
                    .await
                    .expect("publish");
            }
            Kind::RedisStream => {
                let _: String = redis::cmd("XADD")
                    .arg(name)
                    .arg("*")
                    .arg("body")
                    .arg(payload)
                    .query_async(&mut redis_plain().await)
                    .await
                    .expect("xadd");
            }
        }
    }
}

/// A message published to `target` arrives as an event through a source with `tls`. Core NATS
/// and redis pub/sub keep nothing for a subscriber not yet in place, and a redis stream's group is
/// created at `$` when the source first connects: publish until one arrives.
async fn arrives_over_tls(target: Target, tls: &str) {
    let dir = secrets();
    let recorder = Arc::new(Recorder::default());
    let ctx = SourceContext::new(Arc::new(FileSecretResolver::new(dir.path())), recorder.clone());
    let running = start(&target.manifest(tls), &ctx);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while recorder.sent_data().is_empty() {
        assert!(
            Instant::now() < deadline,
            "{:?}: nothing arrived over TLS within 60s (unmet: {:?})",
            target.kind,
            ctx.readiness.unmet()
        );
        if ctx.readiness.is_ready() {
            n += 1;
            target.publish(&json!({"over": "tls", "n": n})).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let data = recorder.sent_data().remove(0);
    let body = match target.kind {
        Kind::RedisStream => {
            serde_json::from_str::<Value>(data["values"]["body"].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}: {data}"))
        }
        _ => data["body"].clone(),
    };
    assert_eq!(body["over"], "tls", "{:?}: {data}", target.kind);
    running.stop().await;
}

/// The source never becomes ready with `tls` (its server's certificate is not trusted, or the
/// server wants a client certificate it does not get), keeps retrying rather than ending, and
/// publishes nothing.
async fn never_ready(target: Target, tls: &str) {
    let dir = secrets();
    let recorder = Arc::new(Recorder::default());
    let ctx = SourceContext::new(Arc::new(FileSecretResolver::new(dir.path())), recorder.clone());
    let running = start(&target.manifest(tls), &ctx);
    // Several connection attempts fail meanwhile; none may report ready.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ctx.readiness.unmet(),
        vec![format!("{ES}/{EVENT}")],
        "{:?}",
        target.kind
    );
    assert_eq!(
        running.running_tasks(),
        1,
        "{:?}: the source ended instead of retrying",
        target.kind
    );
    assert!(recorder.sent_data().is_empty());
    running.stop().await;
}

#[tokio::test]
#[ignore = "needs nats-server's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn nats_over_tls_with_the_ca_of_its_tls_block() {
    arrives_over_tls(Target::new(Kind::Nats).await, WITH_CA).await;
}

#[tokio::test]
#[ignore = "needs nats-server's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn nats_does_not_trust_a_server_signed_by_another_ca() {
    never_ready(Target::new(Kind::Nats).await, WITH_OTHER_CA).await;
}

#[tokio::test]
#[ignore = "needs nats-server's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn nats_connects_with_insecure_skip_verify() {
    arrives_over_tls(Target::new(Kind::Nats).await, INSECURE).await;
}

#[tokio::test]
#[ignore = "needs nats-server's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn jetstream_over_tls_with_the_ca_of_its_tls_block() {
    arrives_over_tls(Target::new(Kind::JetStream).await, WITH_CA).await;
}

#[tokio::test]
#[ignore = "needs nats-server's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn jetstream_does_not_trust_a_server_signed_by_another_ca() {
    never_ready(Target::new(Kind::JetStream).await, WITH_OTHER_CA).await;
}

#[tokio::test]
#[ignore = "needs nats-server's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn jetstream_connects_with_insecure_skip_verify() {
    arrives_over_tls(Target::new(Kind::JetStream).await, INSECURE).await;
}

#[tokio::test]
#[ignore = "needs Mosquitto's TLS listeners and the test certificates: scripts/test starts them and runs ignored tests"]
async fn mqtt_over_tls_with_the_ca_of_its_tls_block() {
    arrives_over_tls(Target::new(Kind::Mqtt).await, WITH_CA).await;
}

#[tokio::test]
#[ignore = "needs Mosquitto's TLS listeners and the test certificates: scripts/test starts them and runs ignored tests"]
async fn mqtt_does_not_trust_a_broker_signed_by_another_ca() {
    never_ready(Target::new(Kind::Mqtt).await, WITH_OTHER_CA).await;
}

#[tokio::test]
#[ignore = "needs Mosquitto's TLS listeners and the test certificates: scripts/test starts them and runs ignored tests"]
async fn mqtt_connects_with_insecure_skip_verify() {
    arrives_over_tls(Target::new(Kind::Mqtt).await, INSECURE).await;
}

#[tokio::test]
#[ignore = "needs Mosquitto's TLS listeners and the test certificates: scripts/test starts them and runs ignored tests"]
async fn mqtt_mutual_tls_presents_the_client_certificate() {
    let mut target = Target::new(Kind::Mqtt).await;
    target.url = setting("MQTTS_MTLS_URL");
    arrives_over_tls(target, MUTUAL).await;
}

#[tokio::test]
#[ignore = "needs Mosquitto's TLS listeners and the test certificates: scripts/test starts them and runs ignored tests"]
async fn mqtt_without_a_client_certificate_is_refused_by_a_broker_requiring_one() {
    let mut target = Target::new(Kind::Mqtt).await;
    target.url = setting("MQTTS_MTLS_URL");
    never_ready(target, WITH_CA).await;
}

#[tokio::test]
#[ignore = "needs Redis's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn redis_over_tls_with_the_ca_of_its_tls_block() {
    arrives_over_tls(Target::new(Kind::Redis).await, WITH_CA).await;
}

#[tokio::test]
#[ignore = "needs Redis's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn redis_does_not_trust_a_server_signed_by_another_ca() {
    never_ready(Target::new(Kind::Redis).await, WITH_OTHER_CA).await;
}

#[tokio::test]
#[ignore = "needs Redis's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn redis_connects_with_insecure_skip_verify() {
    arrives_over_tls(Target::new(Kind::Redis).await, INSECURE).await;
}

#[tokio::test]
#[ignore = "needs Redis's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn redis_stream_over_tls_with_the_ca_of_its_tls_block() {
    arrives_over_tls(Target::new(Kind::RedisStream).await, WITH_CA).await;
}

#[tokio::test]
#[ignore = "needs Redis's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn redis_stream_does_not_trust_a_server_signed_by_another_ca() {
    never_ready(Target::new(Kind::RedisStream).await, WITH_OTHER_CA).await;
}

#[tokio::test]
#[ignore = "needs Redis's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn redis_stream_connects_with_insecure_skip_verify() {
    arrives_over_tls(Target::new(Kind::RedisStream).await, INSECURE).await;
}

#[tokio::test]
#[ignore = "needs Redis's TLS listener and the test certificates: scripts/test starts them and runs ignored tests"]
async fn redis_stream_presents_a_client_certificate_the_server_accepts() {
    arrives_over_tls(Target::new(Kind::RedisStream).await, MUTUAL).await;
}

#[tokio::test]
async fn a_tls_secret_that_is_not_pem_fails_the_build_naming_the_field_not_the_content() {
    let dir = garbage_secret();
    let ctx = SourceContext::new(
        Arc::new(FileSecretResolver::new(dir.path())),
        Arc::new(Recorder::default()),
    );
    for kind in KINDS {
        // No server is contacted: the build fails first (JetStream's stream is not needed).
        let url = match kind {
            Kind::Nats | Kind::JetStream => "nats://127.0.0.1:1",
            Kind::Mqtt => "ssl://127.0.0.1:1",
            Kind::Redis | Kind::RedisStream => "127.0.0.1:1",
        };
        let target = Target {
            kind,
            name: unique("bad"),
            url: url.into(),
        };
        let spelled = kind.spelled();
        let err = build(
            &target.manifest("{caCertSecret: {name: tls, key: garbage}}"),
            &ctx,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains(&format!(
                "spec.{spelled}.{EVENT}.tls.caCertSecret: not a PEM certificate"
            )),
            "{kind:?}: {err}"
        );
        assert!(!err.contains("hunter2"), "{kind:?}: {err}");
    }
}

#[tokio::test]
#[ignore = "needs Mosquitto's TLS listeners and the test certificates: scripts/test starts them and runs ignored tests"]
async fn mqtt_with_a_tls_block_and_a_tcp_url_connects_over_tls() {
    // Upstream's example writes tcp:// with a `tls` block; the block means TLS.
    let mut target = Target::new(Kind::Mqtt).await;
    target.url = target.url.replacen("ssl://", "tcp://", 1);
    arrives_over_tls(target, WITH_CA).await;
}

#[test]
fn mqtt_tls_schemes_are_those_of_paho() {
    for scheme in ["ssl", "tls", "mqtts", "mqtt+ssl", "tcps"] {
        let url = mqtt::broker_url(&format!("{scheme}://broker")).expect("url");
        assert!(url.tls, "{scheme}");
        assert_eq!(url.port, 8883, "{scheme}");
    }
    for scheme in ["tcp", "mqtt"] {
        let url = mqtt::broker_url(&format!("{scheme}://broker:1")).expect("url");
        assert!(!url.tls, "{scheme}");
    }
    assert!(mqtt::broker_url("ws://broker").is_err());
}
