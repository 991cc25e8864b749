//! The source conformance suite: every runnable source kind, built from a manifest through the public
//! `build()` exactly as a process does, must
//!
//! 1. emit events that are valid CloudEvents 1.0 (required attributes, `type` = the kind, JSON data);
//! 2. give the same event id to a redelivery where the sender gives a delivery id (so the bus stores
//!    it once);
//! 3. count what it published in the upstream-named metrics;
//! 4. stop within 1 s of cancellation (its HTTP server or its task).
//!
//! Adding a kind means adding a [`Case`] and listing its kind in [`LOCAL_KINDS`] or [`SERVER_KINDS`];
//! the suite fails for a runnable kind without one. The kinds on real servers run only when asked
//! for (`--include-ignored`, as `scripts/test` does).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sluice_crds::eventsource::{EventSource, EventSourceKind};
use sluice_eventbus::Event;
use sluice_eventsource::checkpoint::FileCheckpointStore;
use sluice_eventsource::http::RouteTable;
use sluice_eventsource::metrics::SourceMetrics;
use sluice_eventsource::testing::{setting, Recorder};
use sluice_eventsource::{build, sources, FileSecretResolver, SourceContext};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

fn hmac_hex(secret: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// Makes a pull source's server produce one message (publish, XADD, write a file).
type Produce = Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;

/// One kind's manifest and a delivery that a sender would repeat.
struct Case {
    kind: EventSourceKind,
    yaml: String,
    /// Builds the same delivery each time it is called; `None` for pull kinds.
    request: Option<Box<dyn Fn() -> Request<Body>>>,
    /// For pull kinds reading a real server: produces a message on it (called until an event
    /// arrives, as a subscription starts asynchronously). `None` for kinds producing on their own.
    produce: Option<Produce>,
}

const SECRET: &str = "conformance-secret";

fn cases(port: u16) -> Vec<Case> {
    let header = |kind: &str, body: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: conf-{kind}}}\nspec:\n  {kind}:\n    hook:\n{body}"
        )
    };
    let webhook = format!("      webhook: {{port: \"{port}\", endpoint: /hook, method: POST}}\n");
    let secret_ref = "{name: conf, key: secret}";
    let json = |extra: Vec<(&'static str, String)>, body: &'static str| {
        let mut b = Request::post("/hook").header("content-type", "application/json");
        for (k, v) in extra {
            b = b.header(k, v);
        }
        b.body(Body::from(body))
            .expect("the conformance request is well-formed")
    };
    vec![
        Case {
            kind: EventSourceKind::Webhook,
            yaml: header(
                "webhook",
                &format!("      port: \"{port}\"\n      endpoint: /hook\n      method: POST\n"),
            ),
            request: Some(Box::new(move || {
                json(vec![("idempotency-key", "d-1".into())], "{\"a\":1}")
            })),
            produce: None,
        },
        Case {
            kind: EventSourceKind::Github,
            yaml: header("github", &format!("{webhook}      webhookSecret: {secret_ref}\n")),
            request: Some(Box::new(move || {
                let body = "{\"zen\":\"x\"}";
                json(
                    vec![
                        ("x-github-event", "ping".into()),
                        ("x-github-delivery", "d-1".into()),
                        (
                            "x-hub-signature-256",
                            format!("sha256={}", hmac_hex(SECRET, body.as_bytes())),
                        ),
                    ],
                    body,
                )
            })),
            produce: None,
        },
        Case {
            kind: EventSourceKind::Gitlab,
            yaml: header("gitlab", &format!("{webhook}      secretToken: {secret_ref}\n")),
            request: Some(Box::new(move || {
                json(
                    vec![
                        ("x-gitlab-token", SECRET.into()),
                        ("x-gitlab-event", "Push Hook".into()),
                        ("idempotency-key", "d-1".into()),
                    ],
                    "{\"object_kind\":\"push\"}",
                )
            })),
            produce: None,
        },
        Case {
            kind: EventSourceKind::Slack,
            yaml: header("slack", &format!("{webhook}      signingSecret: {secret_ref}\n")),
            request: Some(Box::new(move || {
                let body = "{\"type\":\"event_callback\",\"event_id\":\"Ev1\",\"event\":{\"type\":\"app_mention\",\"text\":\"hi\"}}";
                let ts = chrono::Utc::now().timestamp().to_string();
                let sig = hmac_hex(SECRET, format!("v0:{ts}:{body}").as_bytes());
                json(
                    vec![
                        ("x-slack-request-timestamp", ts),
                        ("x-slack-signature", format!("v0={sig}")),
                    ],
                    body,
                )
            })),
            produce: None,
        },
        Case {
            kind: EventSourceKind::Stripe,
            yaml: header("stripe", &format!("{webhook}      webhookSecret: {secret_ref}\n")),
            request: Some(Box::new(move || {
                let body = "{\"id\":\"evt_1\",\"object\":\"event\",\"type\":\"charge.succeeded\"}";
                let t = chrono::Utc::now().timestamp();
                let sig = hmac_hex(SECRET, format!("{t}.{body}").as_bytes());
                json(vec![("stripe-signature", format!("t={t},v1={sig}"))], body)
            })),
            produce: None,
        },
        Case {
            kind: EventSourceKind::BitbucketServer,
            yaml: header(
                "bitbucketserver",
                &format!("{webhook}      webhookSecret: {secret_ref}\n"),
            ),
            request: Some(Box::new(move || {
                let body = "{\"eventKey\":\"repo:refs_changed\",\"changes\":[]}";
                json(
                    vec![
                        ("x-event-key", "repo:refs_changed".into()),
                        ("x-request-id", "d-1".into()),
                        (
                            "x-hub-signature",
                            format!("sha256={}", hmac_hex(SECRET, body.as_bytes())),
                        ),
                    ],
                    body,
                )
            })),
            produce: None,
        },
        Case {
            kind: EventSourceKind::Bitbucket,
            yaml: header(
                "bitbucket",
                &format!("{webhook}      webhookSecret: {secret_ref}\n"),
            ),
            request: Some(Box::new(move || {
                let body = "{\"push\":{\"changes\":[]}}";
                json(
                    vec![
                        ("x-event-key", "repo:push".into()),
                        ("x-request-uuid", "d-1".into()),
                        (
                            "x-hub-signature",
                            format!("sha256={}", hmac_hex(SECRET, body.as_bytes())),
                        ),
                    ],
                    body,
                )
            })),
            produce: None,
        },
        Case {
            kind: EventSourceKind::Calendar,
            yaml: header("calendar", "      interval: 1s\n"),
            request: None,
            produce: None,
        },
        Case {
            // Without webhook.url the source subscribes nothing; SNS redelivers with the same
            // MessageId, which is the delivery id.
            kind: EventSourceKind::Sns,
            yaml: header(
                "sns",
                &format!("{webhook}      topicArn: arn:aws:sns:us-east-1:123456789012:conf\n      region: us-east-1\n"),
            ),
            request: Some(Box::new(move || {
                json(
                    vec![("x-amz-sns-message-type", "Notification".into())],
                    r#"{"Type":"Notification","MessageId":"m-1","TopicArn":"arn:aws:sns:us-east-1:123456789012:conf","Message":"hi","Timestamp":"2026-01-01T00:00:00.000Z","SignatureVersion":"1","Signature":"","SigningCertURL":""}"#,
                )
            })),
            produce: None,
        },
    ]
}

/// The pull kinds on moto (S3_ENDPOINT, from `scripts/services.sh start s3`): an SQS queue holding a
/// message, and a bucket holding an object (list mode). Each run owns its queue and bucket. moto does
/// not check signatures, so the setup requests here are unsigned (SQS ones name the service in a dummy Authorization header, which moto routes by).
async fn aws_cases() -> Vec<Case> {
    let endpoint = setting("S3_ENDPOINT");
    let http = reqwest::Client::new();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let queue = format!("conf-{unique}");
    let sqs = |action: &str, body: serde_json::Value| {
        http.post(format!("{endpoint}/"))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            // moto routes a request by the service named in the credential scope.
            .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0")
            .body(body.to_string())
            .send()
    };
    let created: serde_json::Value = sqs("CreateQueue", serde_json::json!({"QueueName": queue}))
        .await
        .expect("moto answers CreateQueue")
        .json()
        .await
        .expect("CreateQueue answers JSON");
    let url = created["QueueUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("no QueueUrl in {created}"))
        .to_string();
    let sent = sqs(
        "SendMessage",
        serde_json::json!({"QueueUrl": url, "MessageBody": "{\"a\":1}"}),
    )
    .await
    .expect("moto answers SendMessage");
    assert!(sent.status().is_success(), "SendMessage: {}", sent.status());
    let bucket = format!("conf-{unique}");
    for (url, body) in [
        (format!("{endpoint}/{bucket}"), ""),
        (format!("{endpoint}/{bucket}/dir/a.txt"), "x"),
    ] {
        let put = http
            .put(url)
            .body(body)
            .send()
            .await
            .expect("moto answers the bucket and object PUTs");
        assert!(put.status().is_success(), "PUT: {}", put.status());
    }
    let creds = "accessKey: {name: conf, key: secret}, secretKey: {name: conf, key: secret}";
    let header = |kind: &str, body: String| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: conf-{kind}}}\nspec:\n  {kind}:\n    hook:\n{body}"
        )
    };
    vec![
        Case {
            kind: EventSourceKind::Sqs,
            yaml: header(
                "sqs",
                format!("      {{queue: {queue}, region: us-east-1, endpoint: \"{endpoint}\", waitTimeSeconds: 1, jsonBody: true, {creds}}}\n"),
            ),
            request: None,
            produce: None,
        },
        Case {
            kind: EventSourceKind::S3,
            yaml: header(
                "s3",
                format!("      {{bucket: {bucket}, endpoint: \"{endpoint}\", mode: list, interval: 1s, {creds}}}\n"),
            ),
            request: None,
            produce: None,
        },
    ]
}

/// Checks the CloudEvents 1.0 JSON format's required attributes and Sluice's envelope rules.
fn assert_cloudevent(event: &Event, kind: &str) {
    let json: serde_json::Value = event
        .to_json()
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("{kind}: the event serializes to JSON"));
    assert_eq!(json["specversion"], "1.0", "{kind}");
    for attr in ["id", "source", "type"] {
        assert!(
            json[attr].as_str().is_some_and(|s| !s.is_empty()),
            "{kind}: {attr} is a non-empty string"
        );
    }
    assert_eq!(json["type"], kind, "{kind}: type is the source kind, as upstream");
    assert_eq!(json["subject"], "hook", "{kind}: subject is the event name");
    assert_eq!(json["datacontenttype"], "application/json", "{kind}");
    let time = json["time"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "{kind}: time {time:?} is RFC 3339"
    );
    assert!(json["data"].is_object(), "{kind}: data is a JSON object");
    let round = Event::from_json(&event.to_json().unwrap_or_default());
    assert!(round.is_ok(), "{kind}: the JSON form parses back");
}

fn metrics_text(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

async fn check(case: Case, dir: &std::path::Path) {
    let kind = case.kind.field_name();
    let es: EventSource =
        serde_yaml::from_str(&case.yaml).unwrap_or_else(|e| panic!("{kind}: {e}\n{}", case.yaml));
    let bus = Arc::new(Recorder::default());
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = SourceMetrics::register(&mut registry);
    let ctx = SourceContext {
        secrets: Arc::new(FileSecretResolver::new(dir.join("secrets"))),
        sender: bus.clone(),
        metrics,
        checkpoints: Some(Arc::new(FileCheckpointStore::new(dir.join("state")))),
        readiness: sluice_eventsource::Readiness::default(),
    };
    let built = build(&es, &ctx).unwrap_or_else(|e| panic!("{kind}: {e}"));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut table = RouteTable::new();
    for r in built.routes {
        table.add(r).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    let port = table.ports().next();
    if let (Some(port), Some(request)) = (port, &case.request) {
        // 2: the same delivery twice → one event on the bus.
        for _ in 0..2 {
            let res = table
                .router(port)
                .oneshot(request())
                .await
                .unwrap_or_else(|e| match e {});
            assert_eq!(res.status(), 200, "{kind}: a valid delivery is accepted");
        }
        assert_eq!(bus.sent().len(), 2, "{kind}");
        assert_eq!(bus.events().len(), 1, "{kind}: a redelivery has the same id");
    }
    for task in built.tasks {
        let token = cancel.child_token();
        tracker.spawn(async move {
            let _ = task.run(token).await;
        });
    }
    if case.request.is_none() {
        // A pull kind: wait for its first event, producing on its server meanwhile.
        for _ in 0..100 {
            if !bus.events().is_empty() {
                break;
            }
            if let Some(produce) = &case.produce {
                produce().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let served = table
        .serve(IpAddr::V4(Ipv4Addr::LOCALHOST), cancel.child_token(), &tracker)
        .await;
    assert!(served.is_ok(), "{kind}: serves its port");
    // 4: stops within 1 s of cancellation.
    cancel.cancel();
    tracker.close();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), tracker.wait())
            .await
            .is_ok(),
        "{kind}: stopped within 1 s of cancellation"
    );
    assert!(!bus.events().is_empty(), "{kind}: the source produced events");
    // 1: CloudEvents.
    for (_, event) in bus.events() {
        assert_cloudevent(&event, kind);
    }
    // 3: metrics with upstream names and labels.
    let text = metrics_text(&registry);
    let sent = format!(
        "argo_events_events_sent_total{{eventsource_name=\"conf-{kind}\",event_name=\"hook\"}} {}",
        bus.sent().len()
    );
    assert!(text.contains(&sent), "{kind}: {sent} in\n{text}");
    assert!(
        text.contains(&format!(
            "argo_events_event_service_running_total{{eventsource_name=\"conf-{kind}\"}} 1"
        )),
        "{kind}: running gauge in\n{text}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port can be bound")
}

/// The kinds whose cases need nothing but this process (push kinds through the router, the
/// calendar, `file` on a temporary directory, `websocket` on a server of the test's own).
const LOCAL_KINDS: [EventSourceKind; 11] = [
    EventSourceKind::Webhook,
    EventSourceKind::Github,
    EventSourceKind::Gitlab,
    EventSourceKind::Slack,
    EventSourceKind::Stripe,
    EventSourceKind::BitbucketServer,
    EventSourceKind::Bitbucket,
    EventSourceKind::Calendar,
    EventSourceKind::Sns,
    EventSourceKind::File,
    EventSourceKind::WebSocket,
];

/// The kinds whose cases run against the real servers of `scripts/services.sh`.
const SERVER_KINDS: [EventSourceKind; 10] = [
    EventSourceKind::Sqs,
    EventSourceKind::S3,
    EventSourceKind::Kafka,
    EventSourceKind::Nats,
    EventSourceKind::Jetstream,
    EventSourceKind::Redis,
    EventSourceKind::RedisStream,
    EventSourceKind::Mqtt,
    EventSourceKind::Amqp,
    EventSourceKind::Sftp,
];

/// A temporary directory holding the Secret `conf` (`secret`) that the push kinds verify with.
fn conformance_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    std::fs::create_dir_all(dir.path().join("secrets/conf")).expect("the secrets directory can be made");
    std::fs::write(dir.path().join("secrets/conf/secret"), SECRET)
        .expect("the conformance secret can be written");
    dir
}

/// Checks each case, after checking that the cases are exactly those of `kinds`.
async fn check_all(cases: Vec<Case>, kinds: &[EventSourceKind], dir: &std::path::Path) {
    let covered: Vec<EventSourceKind> = cases.iter().map(|c| c.kind).collect();
    assert_eq!(covered, kinds, "one case per listed kind, in order");
    for case in cases {
        check(case, dir).await;
    }
}

/// Every runnable kind has a case among [`LOCAL_KINDS`] or [`SERVER_KINDS`] (whose tests check that
/// each listed kind has one), or is conformance-tested elsewhere.
#[test]
fn every_runnable_kind_has_a_conformance_case() {
    // Kinds whose server cannot run inside this crate's tests; each has its conformance checks
    // (CloudEvents, deterministic ids, stop on cancel) against its real server in integration-tests.
    let elsewhere = [
        // integration-tests/tests/kube_resource.rs, on the test kube-apiserver.
        EventSourceKind::Resource,
        // No MinIO server can run on this machine (moto has no ListenBucketNotification); its stream
        // decoding and ids are unit-tested in eventsource/src/sources/minio. Not conformance-tested.
        EventSourceKind::Minio,
    ];
    for kind in EventSourceKind::ALL {
        assert!(
            !sources::is_runnable(kind)
                || LOCAL_KINDS.contains(&kind)
                || SERVER_KINDS.contains(&kind)
                || elsewhere.contains(&kind),
            "runnable kind {} has no conformance case",
            kind.field_name()
        );
    }
    assert!(
        LOCAL_KINDS.iter().all(|k| !SERVER_KINDS.contains(k)),
        "a kind is listed once"
    );
}

#[tokio::test]
async fn kinds_that_need_no_server_conform() {
    let dir = conformance_dir();
    let mut cases = cases(free_port());
    cases.push(file_case(dir.path()));
    cases.push(websocket_case().await);
    check_all(cases, &LOCAL_KINDS, dir.path()).await;
}

#[tokio::test]
#[ignore = "needs moto, Kafka, nats-server, Redis, Mosquitto, RabbitMQ and sshd: scripts/test starts them and runs ignored tests"]
async fn kinds_on_real_servers_conform() {
    let dir = conformance_dir();
    let mut cases = aws_cases().await;
    cases.extend(pull_cases());
    cases.push(sftp_case(dir.path()));
    check_all(cases, &SERVER_KINDS, dir.path()).await;
}

fn pull_header(kind: &str, body: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: conf-{kind}}}\nspec:\n  {kind}:\n    hook:\n{body}"
    )
}

/// `redis://host:port` → `host:port`.
fn redis_host() -> String {
    setting("REDIS_URL")
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

/// The broker-backed kinds, each against its real server (names unique to this run).
fn pull_cases() -> Vec<Case> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let nats_url = setting("NATS_URL");
    let (nats_subject, js_subject, stream) = (
        format!("conf.nats.{run}"),
        format!("conf.js.{run}"),
        format!("CONF_{run}"),
    );
    let (channel, redis_stream) = (format!("conf-ch-{run}"), format!("conf-st-{run}"));
    let mqtt_topic = format!("conf/{run}");
    let (exchange, key) = (format!("conf-x-{run}"), "conf.key".to_string());
    let redis_url = setting("REDIS_URL");
    let amqp_url = setting("AMQP_URL");
    let mqtt_url = setting("MQTT_URL");
    let brokers = setting("KAFKA_BROKERS");
    let kafka_topic = format!("conf-{run}");
    vec![
        Case {
            // On the test broker (`scripts/services.sh start kafka`); the group starts at the oldest
            // record, so what was produced before its partitions were assigned is read too.
            kind: EventSourceKind::Kafka,
            yaml: pull_header(
                "kafka",
                &format!("      url: \"{brokers}\"\n      topic: {kafka_topic}\n      jsonBody: true\n      consumerGroup: {{groupName: conf-{run}, oldest: true}}\n"),
            ),
            request: None,
            produce: Some({
                let (brokers, topic) = (brokers.clone(), kafka_topic.clone());
                Box::new(move || {
                    let (brokers, topic) = (brokers.clone(), topic.clone());
                    Box::pin(async move {
                        use rdkafka::producer::{FutureProducer, FutureRecord};
                        let producer: FutureProducer = rdkafka::ClientConfig::new()
                            .set("bootstrap.servers", &brokers)
                            .create()
                            .expect("a Kafka producer for KAFKA_BROKERS can be made");
                        producer
                            .send(
                                FutureRecord::to(&topic).key("k").payload("{\"a\":1}"),
                                Duration::from_secs(10),
                            )
                            .await
                            .expect("Kafka takes the record");
                    })
                })
            }),
        },
        Case {
            kind: EventSourceKind::Nats,
            yaml: pull_header("nats", &format!("      url: {nats_url}\n      subject: {nats_subject}\n      jsonBody: true\n")),
            request: None,
            produce: Some({
                let (url, subject) = (nats_url.clone(), nats_subject.clone());
                Box::new(move || {
                    let (url, subject) = (url.clone(), subject.clone());
                    Box::pin(async move {
                        let c = async_nats::connect(url).await.expect("the NATS_URL server accepts a connection");
                        c.publish(subject, "{\"a\":1}".into()).await.expect("core NATS takes the publish");
                        c.flush().await.expect("core NATS flushes");
                    })
                })
            }),
        },
        Case {
            kind: EventSourceKind::Jetstream,
            yaml: pull_header("jetstream", &format!("      url: {nats_url}\n      stream: {stream}\n      jsonBody: true\n")),
            request: None,
            produce: Some({
                let (url, subject, stream) = (nats_url.clone(), js_subject.clone(), stream.clone());
                Box::new(move || {
                    let (url, subject, stream) = (url.clone(), subject.clone(), stream.clone());
                    Box::pin(async move {
                        let c = async_nats::connect(url).await.expect("the NATS_URL server accepts a connection");
                        let js = async_nats::jetstream::new(c);
                        js.get_or_create_stream(async_nats::jetstream::stream::Config {
                            name: stream,
                            subjects: vec![subject.clone()],
                            ..Default::default()
                        })
                        .await
                        .expect("the conformance stream can be made on JetStream");
                        js.publish(subject, "{\"a\":1}".into())
                            .await
                            .expect("JetStream takes the publish")
                            .await
                            .expect("JetStream stores the message");
                    })
                })
            }),
        },
        Case {
            kind: EventSourceKind::Redis,
            yaml: pull_header("redis", &format!("      hostAddress: {}\n      channels: [{channel}]\n      jsonBody: true\n", redis_host())),
            request: None,
            produce: Some({
                let (url, channel) = (redis_url.clone(), channel.clone());
                Box::new(move || {
                    let (url, channel) = (url.clone(), channel.clone());
                    Box::pin(async move {
                        let client = redis::Client::open(url).expect("REDIS_URL is a redis URL");
                        let mut con = client.get_multiplexed_async_connection().await.expect("the REDIS_URL server accepts a connection");
                        let _: i64 = redis::cmd("PUBLISH").arg(&channel).arg("{\"a\":1}").query_async(&mut con).await.expect("redis takes the PUBLISH");
                    })
                })
            }),
        },
        Case {
            kind: EventSourceKind::RedisStream,
            yaml: pull_header("redisStream", &format!("      hostAddress: {}\n      streams: [{redis_stream}]\n", redis_host())),
            request: None,
            produce: Some({
                let (url, stream) = (redis_url.clone(), redis_stream.clone());
                Box::new(move || {
                    let (url, stream) = (url.clone(), stream.clone());
                    Box::pin(async move {
                        let client = redis::Client::open(url).expect("REDIS_URL is a redis URL");
                        let mut con = client.get_multiplexed_async_connection().await.expect("the REDIS_URL server accepts a connection");
                        let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("a").arg("1").query_async(&mut con).await.expect("redis takes the XADD");
                    })
                })
            }),
        },
        Case {
            kind: EventSourceKind::Mqtt,
            yaml: pull_header("mqtt", &format!("      url: {mqtt_url}\n      topic: {mqtt_topic}\n      clientId: conf-{run}\n      jsonBody: true\n")),
            request: None,
            produce: Some({
                let (url, topic) = (mqtt_url.clone(), mqtt_topic.clone());
                Box::new(move || {
                    let (url, topic) = (url.clone(), topic.clone());
                    Box::pin(async move {
                        let (host, port) = sources::mqtt::parse_url(&url).expect("MQTT_URL is an mqtt URL");
                        let id = format!("conf-pub-{}", uuid::Uuid::new_v4().simple());
                        let (client, mut eventloop) = rumqttc::AsyncClient::new(rumqttc::MqttOptions::new(id, host, port), 10);
                        client.publish(topic, rumqttc::QoS::AtLeastOnce, false, b"{\"a\":1}".to_vec()).await.expect("mosquitto takes the QoS 1 publish");
                        loop {
                            match eventloop.poll().await.expect("the mosquitto connection stays up until the PUBACK") {
                                rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) => break,
                                _ => continue,
                            }
                        }
                    })
                })
            }),
        },
        Case {
            kind: EventSourceKind::Amqp,
            yaml: pull_header("amqp", &format!("      url: \"{amqp_url}\"\n      exchangeName: {exchange}\n      exchangeType: topic\n      routingKey: {key}\n      jsonBody: true\n")),
            request: None,
            produce: Some({
                let (url, exchange, key) = (amqp_url.clone(), exchange.clone(), key.clone());
                Box::new(move || {
                    let (url, exchange, key) = (url.clone(), exchange.clone(), key.clone());
                    Box::pin(async move {
                        use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
                        let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await.expect("the AMQP_URL broker accepts a connection");
                        let ch = conn.create_channel().await.expect("RabbitMQ opens a channel");
                        // As the source declares it (upstream's default: durable).
                        let options = ExchangeDeclareOptions { durable: true, ..Default::default() };
                        ch.exchange_declare(exchange.as_str(), lapin::ExchangeKind::Topic, options, Default::default()).await.expect("the exchange is declared as the source declares it");
                        ch.basic_publish(exchange.as_str(), key.as_str(), BasicPublishOptions::default(), b"{\"a\":1}", Default::default())
                            .await
                            .expect("RabbitMQ takes the publish")
                            .await
                            .expect("RabbitMQ confirms the publish");
                        let _ = conn.close(200, "done").await;
                    })
                })
            }),
        },
    ]
}

/// `file` on a directory of this test's own, where each production is a new file.
fn file_case(dir: &std::path::Path) -> Case {
    let files = dir.join("watched");
    std::fs::create_dir_all(&files).expect("the watched directory can be made");
    Case {
        kind: EventSourceKind::File,
        yaml: pull_header("file", &format!("      eventType: CREATE\n      watchPathConfig:\n        directory: {}/\n        pathRegexp: \"\\\\.json$\"\n", files.display())),
        request: None,
        produce: Some({
            let files = files.clone();
            Box::new(move || {
                let path = files.join(format!("{}.json", uuid::Uuid::new_v4().simple()));
                Box::pin(async move {
                    std::fs::write(path, "{}").expect("the watched directory is writable");
                })
            })
        }),
    }
}

/// `websocket` against a WebSocket server of this test's own that sends `{"a":1}` every 100 ms on
/// each connection.
async fn websocket_case() -> Case {
    use futures::SinkExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port can be bound");
    let ws_port = listener
        .local_addr()
        .expect("a bound listener has an address")
        .port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let message = || tokio_tungstenite::tungstenite::Message::Text("{\"a\":1}".into());
                while socket.send(message()).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });

    Case {
        kind: EventSourceKind::WebSocket,
        yaml: pull_header(
            "websocket",
            &format!("      url: ws://127.0.0.1:{ws_port}/feed\n      jsonBody: true\n"),
        ),
        request: None,
        produce: None,
    }
}

/// `sftp` against the sshd of `scripts/services.sh start sftp` (`SFTP_*`), where each production
/// is a new file in a directory of this run's own.
fn sftp_case(dir: &std::path::Path) -> Case {
    use std::os::unix::fs::PermissionsExt;

    let run = uuid::Uuid::new_v4().simple().to_string();
    let watched = std::path::Path::new(&setting("SFTP_DIR")).join(format!("conf-{run}"));
    std::fs::create_dir_all(&watched).expect("the conformance directory under SFTP_DIR can be made");
    std::fs::set_permissions(&watched, std::fs::Permissions::from_mode(0o777))
        .expect("the conformance directory under SFTP_DIR can be opened to the SFTP user");
    let secrets = dir.join("secrets/conf-sftp");
    std::fs::create_dir_all(&secrets).expect("the sftp secrets directory can be made");
    let key = std::fs::read_to_string(setting("SFTP_KEY_FILE")).expect("SFTP_KEY_FILE is readable");
    for (name, value) in [
        ("address", setting("SFTP_ADDRESS")),
        ("username", setting("SFTP_USER")),
        ("key", key),
    ] {
        std::fs::write(secrets.join(name), value).expect("the sftp secret can be written");
    }
    let selector = |key: &str| format!("{{name: conf-sftp, key: {key}}}");
    Case {
        kind: EventSourceKind::Sftp,
        yaml: pull_header(
            "sftp",
            &format!(
                "      eventType: CREATE\n      watchPathConfig:\n        directory: {}/\n        pathRegexp: \"\\\\.json$\"\n      pollIntervalDuration: 200ms\n      address: {}\n      username: {}\n      sshKeySecret: {}\n",
                watched.display(),
                selector("address"),
                selector("username"),
                selector("key"),
            ),
        ),
        request: None,
        produce: Some({
            let watched = watched.clone();
            Box::new(move || {
                let path = watched.join(format!("{}.json", uuid::Uuid::new_v4().simple()));
                Box::pin(async move {
                    std::fs::write(path, "{}").expect("the watched SFTP directory is writable");
                })
            })
        }),
    }
}
