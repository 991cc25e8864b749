//! The sns kind: canonical strings and signatures on our own signed fixtures (see
//! `testdata/README.md`), the route through the shared router (no socket), and a certificate
//! fetched from a local HTTP server that the allow-list admits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_crds::eventsource::{SNSEventSource, WebhookContext};

use super::*;
use crate::testing::{context, post, router, send, Recorder, Secrets};

const CERT: &[u8] = include_bytes!("testdata/cert.pem");
const NOTIFICATION_V1: &str = include_str!("testdata/notification-v1.sig");
const NOTIFICATION_V2: &str = include_str!("testdata/notification-v2.sig");
const CONFIRMATION_V2: &str = include_str!("testdata/confirmation-v2.sig");
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:orders";

fn notification(version: &str, signature: &str, cert_url: &str) -> Value {
    json!({
        "Type": "Notification",
        "MessageId": "6b0e71fd-7a1c-4a2e-9d2a-0000000000a1",
        "TopicArn": TOPIC,
        "Subject": "greeting",
        "Message": "hello from sns",
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SignatureVersion": version,
        "Signature": signature.trim(),
        "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    })
}

fn confirmation() -> Value {
    json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": "6b0e71fd-7a1c-4a2e-9d2a-0000000000c1",
        "Token": "tok-123",
        "TopicArn": TOPIC,
        "Message": "confirm please",
        "SubscribeURL": "http://127.0.0.1:1/confirm",
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SignatureVersion": "2",
        "Signature": CONFIRMATION_V2.trim(),
        "SigningCertURL": CERT_URL,
    })
}

fn message(v: &Value) -> SnsMessage {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// Ten minutes after the fixtures were signed (their `Timestamp`).
fn fixtures_clock() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_767_225_600 + 600, 0).unwrap_or_default()
}

async fn verifier() -> Verifier {
    let v = Verifier::new(verify::DEFAULT_CERT_URL_PATTERN)
        .expect("the default certificate URL pattern compiles")
        .with_clock(fixtures_clock);
    v.preload(CERT_URL, CERT)
        .await
        .expect("the fixture certificate preloads");
    v
}

#[test]
fn canonical_strings_follow_aws_order_and_skip_absent_fields() {
    let n = message(&notification("1", "", CERT_URL));
    assert_eq!(
        verify::canonical_string(&n).unwrap_or_default(),
        "Message\nhello from sns\nMessageId\n6b0e71fd-7a1c-4a2e-9d2a-0000000000a1\nSubject\ngreeting\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:123456789012:orders\nType\nNotification\n"
    );
    let mut no_subject = n.clone();
    no_subject.subject = None;
    assert!(!verify::canonical_string(&no_subject)
        .unwrap_or_default()
        .contains("Subject"));
    let c = message(&confirmation());
    assert!(verify::canonical_string(&c)
        .unwrap_or_default()
        .starts_with("Message\nconfirm please\nMessageId\n6b0e71fd-7a1c-4a2e-9d2a-0000000000c1\nSubscribeURL\nhttp://127.0.0.1:1/confirm\nTimestamp\n2026-01-01T00:00:00.000Z\nToken\ntok-123\n"));
    let mut unknown = n;
    unknown.kind = "Other".into();
    assert_eq!(verify::canonical_string(&unknown), None);
}

#[tokio::test]
async fn signature_versions_1_and_2_verify_and_tampering_fails() {
    let v = verifier().await;
    assert_eq!(
        v.verify(&message(&notification("1", NOTIFICATION_V1, CERT_URL)))
            .await,
        Ok(())
    );
    assert_eq!(
        v.verify(&message(&notification("2", NOTIFICATION_V2, CERT_URL)))
            .await,
        Ok(())
    );
    assert_eq!(v.verify(&message(&confirmation())).await, Ok(()));
    // A version-1 signature presented as version 2 (and vice versa) does not verify.
    assert_eq!(
        v.verify(&message(&notification("2", NOTIFICATION_V1, CERT_URL)))
            .await,
        Err(VerifyError::BadSignature)
    );
    let mut tampered = message(&notification("2", NOTIFICATION_V2, CERT_URL));
    tampered.message = "hello from someone else".into();
    assert_eq!(v.verify(&tampered).await, Err(VerifyError::BadSignature));
    assert_eq!(
        v.verify(&message(&notification("3", NOTIFICATION_V2, CERT_URL)))
            .await,
        Err(VerifyError::UnsupportedVersion("3".into()))
    );
    assert_eq!(
        v.verify(&message(&notification("2", "%%%", CERT_URL))).await,
        Err(VerifyError::SignatureEncoding)
    );
}

#[tokio::test]
async fn certificates_come_only_from_allowed_urls() {
    let v = verifier().await;
    for url in [
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.x.amazonaws.com/cert.pem",
    ] {
        assert_eq!(
            v.verify(&message(&notification("2", NOTIFICATION_V2, url))).await,
            Err(VerifyError::CertUrlNotAllowed(url.into())),
            "{url}"
        );
    }
}

/// A local server standing in for the SNS certificate host, counting requests (any path; only
/// `/cert.pem` exists).
async fn cert_server() -> (String, Arc<AtomicUsize>, tokio_util::sync::CancellationToken) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if uri.path() == "/cert.pem" {
                (StatusCode::OK, CERT.to_vec())
            } else {
                (StatusCode::NOT_FOUND, Vec::new())
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port can be bound");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    });
    (format!("http://{addr}/cert.pem"), hits, stop)
}

#[tokio::test]
async fn a_fetched_certificate_is_cached() {
    let (url, hits, stop) = cert_server().await;
    let v = Verifier::new(r"^http://127\.0\.0\.1:\d+/")
        .expect("the loopback certificate URL pattern compiles")
        .with_clock(fixtures_clock);
    for _ in 0..3 {
        assert_eq!(
            v.verify(&message(&notification("1", NOTIFICATION_V1, &url)))
                .await,
            Ok(())
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched once, then cached");
    // An allowed host that does not answer: 503 material, not a signature verdict.
    stop.cancel();
    let v = Verifier::new(r"^http://127\.0\.0\.1:\d+/")
        .expect("the loopback certificate URL pattern compiles")
        .with_clock(fixtures_clock);
    let unreachable = format!("http://127.0.0.1:{}/cert.pem", free_port());
    assert!(matches!(
        v.verify(&message(&notification("1", NOTIFICATION_V1, &unreachable)))
            .await,
        Err(VerifyError::FetchCert { .. })
    ));
}

#[tokio::test]
async fn a_failed_certificate_fetch_is_not_repeated_for_a_while() {
    let (url, hits, _stop) = cert_server().await;
    let missing = url.replace("/cert.pem", "/missing.pem");
    let v = Verifier::new(r"^http://127\.0\.0\.1:\d+/")
        .expect("a valid pattern")
        .with_clock(fixtures_clock);
    for _ in 0..3 {
        assert!(matches!(
            v.verify(&message(&notification("1", NOTIFICATION_V1, &missing)))
                .await,
            Err(VerifyError::FetchCert { .. })
        ));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the failure is remembered");
    // Per URL: a good certificate on the same host is still fetched.
    assert_eq!(
        v.verify(&message(&notification("1", NOTIFICATION_V1, &url)))
            .await,
        Ok(())
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stale_and_future_timestamps_are_refused() {
    fn two_hours_later() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_767_225_600 + 7200, 0).unwrap_or_default()
    }
    fn an_hour_before() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_767_225_600 - 3600, 0).unwrap_or_default()
    }
    for clock in [two_hours_later as fn() -> _, an_hour_before] {
        let v = verifier().await.with_clock(clock);
        assert_eq!(
            v.verify(&message(&notification("2", NOTIFICATION_V2, CERT_URL)))
                .await,
            Err(VerifyError::Stale {
                timestamp: "2026-01-01T00:00:00.000Z".into()
            })
        );
    }
    let mut garbled = notification("2", NOTIFICATION_V2, CERT_URL);
    garbled["Timestamp"] = json!("yesterday");
    assert_eq!(
        verifier().await.verify(&message(&garbled)).await,
        Err(VerifyError::Timestamp("yesterday".into()))
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port can be bound")
}

fn spec() -> SNSEventSource {
    SNSEventSource {
        webhook: Some(WebhookContext {
            port: "12000".into(),
            endpoint: "/sns".into(),
            method: "POST".into(),
            ..Default::default()
        }),
        topic_arn: TOPIC.into(),
        region: "us-east-1".into(),
        metadata: Some(BTreeMap::from([("team".to_string(), "data".to_string())])),
        validate_signature: true,
        ..Default::default()
    }
}

async fn route(rec: Arc<Recorder>, confirm_endpoint: &str) -> axum::Router {
    let ctx = context(Secrets::default(), rec);
    let s = spec();
    let endpoint = resolve_endpoint(
        "es",
        "orders",
        s.webhook.as_ref().expect("the spec has a webhook"),
    )
    .expect("the spec's webhook has an endpoint");
    let confirmer = Confirmer {
        client: AwsClient::new(
            crate::aws::CredentialsProvider::Static(crate::aws::Credentials {
                access_key: "testing".into(),
                secret_key: "testing".into(),
                session_token: None,
            }),
            "us-east-1",
        ),
        endpoint: confirm_endpoint.into(),
        topic_arn: TOPIC.into(),
    };
    let r = SnsRoute::new(
        ("es", "orders"),
        endpoint,
        Some(verifier().await),
        confirmer,
        s.metadata.clone(),
        &ctx,
    );
    router(vec![r.into_route()], 12000)
}

#[tokio::test]
async fn a_signed_notification_is_published_once_with_upstreams_shape() {
    let rec = Arc::new(Recorder::default());
    let app = route(rec.clone(), "http://127.0.0.1:1").await;
    let body = notification("2", NOTIFICATION_V2, CERT_URL).to_string();
    let headers = [
        ("content-type", "text/plain; charset=UTF-8"),
        ("x-amz-sns-message-type", "Notification"),
        ("x-amz-sns-message-id", "6b0e71fd-7a1c-4a2e-9d2a-0000000000a1"),
    ];
    for _ in 0..2 {
        let (status, _, _) = send(app.clone(), post("/sns", &headers, body.clone())).await;
        assert_eq!(status, StatusCode::OK);
    }
    let events = rec.events();
    assert_eq!(events.len(), 1, "a redelivery (same MessageId) is one event");
    let (_, event) = &events[0];
    assert_eq!(event.ty(), "sns");
    let data: Value = event.data().cloned().unwrap_or_default();
    // Only the signed fields: UnsubscribeURL, the signature material and anything a replayer adds
    // are not published.
    assert_eq!(
        data["body"],
        json!({
            "Type": "Notification",
            "MessageId": "6b0e71fd-7a1c-4a2e-9d2a-0000000000a1",
            "TopicArn": TOPIC,
            "Subject": "greeting",
            "Message": "hello from sns",
            "Timestamp": "2026-01-01T00:00:00.000Z",
        })
    );
    assert_eq!(data["header"]["X-Amz-Sns-Message-Type"], json!(["Notification"]));
    assert_eq!(data["metadata"], json!({"team": "data"}));
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_is_published() {
    let rec = Arc::new(Recorder::default());
    let app = route(rec.clone(), "http://127.0.0.1:1").await;
    let mut forged = notification("2", NOTIFICATION_V2, CERT_URL);
    forged["Message"] = json!("forged");
    let (status, _, _) = send(app.clone(), post("/sns", &[], forged.to_string())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let elsewhere = notification("2", NOTIFICATION_V2, "https://attacker.example/cert.pem");
    let (status, _, _) = send(app.clone(), post("/sns", &[], elsewhere.to_string())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(app.clone(), post("/sns", &[], "not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(rec.events().is_empty());
}

#[tokio::test]
async fn confirmations_call_confirm_subscription_and_fail_with_503_when_it_fails() {
    let rec = Arc::new(Recorder::default());
    // Nothing listens on the SNS endpoint: confirming fails, so SNS must hear a 5xx and retry.
    let app = route(rec.clone(), &format!("http://127.0.0.1:{}", free_port())).await;
    let (status, _, _) = send(app.clone(), post("/sns", &[], confirmation().to_string())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(rec.events().is_empty(), "a confirmation is not an event");
}

#[test]
fn subscription_urls_and_protocols_as_upstream() {
    assert_eq!(subscription_url("http://h:1/", "/sns"), "http://h:1/sns");
    assert_eq!(Subscriber::protocol("https://h/sns"), "https");
    assert_eq!(Subscriber::protocol("http://h/sns"), "http");
}
