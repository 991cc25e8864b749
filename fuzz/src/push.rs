//! Push sources' request handling, in-process: the EventSource of a [`Kind`] (a manifest below, the
//! way a user writes it) is built by `sluice_eventsource::build`, as `sluice run` builds it, and each
//! input is one request through the same axum router the listener serves (no socket).
//!
//! Input: a raw request.
//! ```text
//! POST /signed?x=1
//! content-type: application/json
//! x-fuzz-sign: 1
//!
//! {"body": "…"}
//! ```
//! The first line is the method and the target; header lines follow until an empty line; the rest is
//! the body. A method, target or header that `http` refuses is replaced (POST, `/`) or left out, so
//! every input makes a request. The pseudo-header `x-fuzz-sign` is removed and replaced by a valid
//! signature (or token) of the kind over the body, with the current time where the kind signs one,
//! so the fuzzer reaches the code behind the signature check.
//!
//! Every event a source publishes goes to a sink that checks it survives the bus's encoding.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request};
use sluice_crds::common::{ConfigMapKeySelector, SecretKeySelector};
use sluice_eventbus::secrets::{SecretError, SecretResolver};
use sluice_eventbus::{Event, PublishAck, PublishError, Subject};
use sluice_eventsource::push::signature::{hmac_hex, Digest};
use sluice_eventsource::{EventSender, SourceContext};
use tower::ServiceExt;

/// The shared secret every signed route of the fuzz manifests uses.
pub const SECRET: &str = "fuzz-shared-secret";

/// The port of every route (the router is per port; nothing listens on it).
const PORT: u16 = 12000;

/// The push kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    Github,
    Gitlab,
    Bitbucket,
    BitbucketServer,
    Slack,
    Stripe,
    Sns,
}

impl Kind {
    /// The EventSource fuzzed: `/signed` checks a signature or token, `/open` has none (and, where the
    /// kind has one, a `filter.expression`).
    fn manifest(self) -> &'static str {
        match self {
            Kind::Webhook => {
                r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: fuzz}
spec:
  webhook:
    signed: {port: "12000", endpoint: /signed, method: POST, authSecret: {name: fuzz, key: secret}, maxPayloadSize: 65536}
    open:
      port: "12000"
      endpoint: /open
      method: POST
      metadata: {team: fuzz}
      filter: {expression: 'body.a == "x" || header["X-Keep"] != nil'}
    get: {port: "12000", endpoint: /get, method: GET}
"#
            }
            Kind::Github => {
                r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: fuzz}
spec:
  github:
    signed:
      webhook: {port: "12000", endpoint: /signed, method: POST}
      webhookSecret: {name: fuzz, key: secret}
      events: ["push", "pull_request"]
      metadata: {team: fuzz}
    open:
      webhook: {port: "12000", endpoint: /open, method: POST}
      filter: {expression: 'body.ref == "refs/heads/main"'}
"#
            }
            Kind::Gitlab => {
                r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: fuzz}
spec:
  gitlab:
    signed:
      webhook: {port: "12000", endpoint: /signed, method: POST}
      secretToken: {name: fuzz, key: secret}
      events: ["PushEvents", "MergeRequestsEvents"]
      metadata: {team: fuzz}
    open:
      webhook: {port: "12000", endpoint: /open, method: POST}
"#
            }
            Kind::Bitbucket => {
                r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: fuzz}
spec:
  bitbucket:
    signed:
      webhook: {port: "12000", endpoint: /signed, method: POST}
      webhookSecret: {name: fuzz, key: secret}
      events: ["repo:push"]
      metadata: {team: fuzz}
    open:
      webhook: {port: "12000", endpoint: /open, method: POST}
"#
            }
            Kind::BitbucketServer => {
                r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: fuzz}
spec:
  bitbucketserver:
    signed:
      webhook: {port: "12000", endpoint: /signed, method: POST}
      webhookSecret: {name: fuzz, key: secret}
      events: ["repo:refs_changed", "pr:opened"]
      oneEventPerChange: true
      metadata: {team: fuzz}
    open:
      webhook: {port: "12000", endpoint: /open, method: POST}
"#
            }
            Kind::Slack => {
                r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: fuzz}
spec:
  slack:
    signed:
      webhook: {port: "12000", endpoint: /signed, method: POST}
      signingSecret: {name: fuzz, key: secret}
      token: {name: fuzz, key: token}
      metadata: {team: fuzz}
    open:
      webhook: {port: "12000", endpoint: /open, method: POST}
"#
            }
            Kind::Stripe => {
                r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: fuzz}
spec:
  stripe:
    signed:
      webhook: {port: "12000", endpoint: /signed, method: POST}
      webhookSecret: {name: fuzz, key: secret}
      eventFilter: ["charge.succeeded", "customer.created"]
      metadata: {team: fuzz}
    open:
      webhook: {port: "12000", endpoint: /open, method: POST}
"#
            }
            // `/signed` verifies signatures against an allow-list of certificate URLs that matches
            // none (set in `router`), so no certificate is ever fetched; `/open` takes unsigned
            // messages, and a subscription confirmation for its topic goes to a closed loopback
            // port (static keys, so no credential lookup leaves the machine either).
            Kind::Sns => {
                r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: fuzz}
spec:
  sns:
    signed:
      webhook: {port: "12000", endpoint: /signed, method: POST}
      topicArn: arn:aws:sns:us-east-1:123456789012:fuzz
      region: us-east-1
      accessKey: {name: fuzz, key: access}
      secretKey: {name: fuzz, key: secret}
      endpoint: http://127.0.0.1:9
      validateSignature: true
      metadata: {team: fuzz}
    open:
      webhook: {port: "12000", endpoint: /open, method: POST}
      topicArn: arn:aws:sns:us-east-1:123456789012:fuzz
      region: us-east-1
      accessKey: {name: fuzz, key: access}
      secretKey: {name: fuzz, key: secret}
      endpoint: http://127.0.0.1:9
"#
            }
        }
    }

    /// Adds a valid signature (or token) of `body` to `headers`.
    fn sign(self, headers: &mut http::HeaderMap, body: &[u8]) {
        let now = chrono::Utc::now().timestamp().to_string();
        let mut add = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        match self {
            Kind::Webhook => add("authorization", format!("Bearer {SECRET}")),
            Kind::Github => add(
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(Digest::Sha256, SECRET.as_bytes(), body)),
            ),
            Kind::Gitlab => add("x-gitlab-token", SECRET.to_owned()),
            Kind::Bitbucket | Kind::BitbucketServer => add(
                "x-hub-signature",
                format!("sha256={}", hmac_hex(Digest::Sha256, SECRET.as_bytes(), body)),
            ),
            Kind::Slack => {
                let mut base = format!("v0:{now}:").into_bytes();
                base.extend_from_slice(body);
                add("x-slack-request-timestamp", now.clone());
                add(
                    "x-slack-signature",
                    format!("v0={}", hmac_hex(Digest::Sha256, SECRET.as_bytes(), &base)),
                );
            }
            Kind::Stripe => {
                let mut signed = format!("{now}.").into_bytes();
                signed.extend_from_slice(body);
                add(
                    "stripe-signature",
                    format!(
                        "t={now},v1={}",
                        hmac_hex(Digest::Sha256, SECRET.as_bytes(), &signed)
                    ),
                );
            }
            // SNS signs with AWS's certificate; nothing here can sign for it.
            Kind::Sns => {}
        }
    }
}

/// Secrets of the fuzz manifests.
struct Secrets;

impl SecretResolver for Secrets {
    fn resolve_secret(&self, selector: &SecretKeySelector) -> Result<String, SecretError> {
        match (selector.name.as_str(), selector.key.as_str()) {
            ("fuzz", "secret") => Ok(SECRET.to_owned()),
            ("fuzz", "token") => Ok("fuzz-token".to_owned()),
            ("fuzz", "access") => Ok("AKIAFUZZ".to_owned()),
            _ => Err(SecretError::InvalidReference {
                name: selector.name.clone(),
                key: selector.key.clone(),
            }),
        }
    }

    fn resolve_config_map(&self, selector: &ConfigMapKeySelector) -> Result<String, SecretError> {
        Err(SecretError::InvalidReference {
            name: selector.name.clone(),
            key: selector.key.clone(),
        })
    }
}

/// The bus: takes every event after checking it survives the bus's encoding.
struct Sink;

#[async_trait]
impl EventSender for Sink {
    async fn send(&self, _subject: &Subject, event: &Event) -> Result<PublishAck, PublishError> {
        crate::assert_round_trip(event);
        Ok(PublishAck::stored(1, false))
    }
}

/// One runtime and one router per target process.
struct Harness {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn harness(kind: Kind) -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // A pattern no URL matches: a signed SNS message is checked up to the certificate, which is
        // never fetched.
        std::env::set_var(
            sluice_eventsource::sources::sns::verify::CERT_URL_PATTERN_ENV,
            r"[^\s\S]",
        );
        let es: sluice_crds::EventSource =
            serde_yaml::from_str(kind.manifest()).expect("the fuzz manifest parses");
        let ctx = SourceContext::new(Arc::new(Secrets), Arc::new(Sink));
        let built = sluice_eventsource::build(&es, &ctx).expect("the fuzz manifest builds");
        let mut table = sluice_eventsource::http::RouteTable::new();
        for route in built.routes {
            table
                .add(route)
                .expect("the fuzz manifest's routes do not collide");
        }
        // Why the tasks are dropped: hook registration and SNS subscription would talk to servers;
        // the request handlers are what is fuzzed.
        drop(built.tasks);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime starts");
        Harness {
            runtime,
            router: table.router(PORT),
        }
    })
}

/// Parses a raw request (see the module doc).
pub fn request(kind: Kind, data: &[u8]) -> Request<Body> {
    let (head, body) = match find(data, b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let (method, target) = first.split_once(' ').unwrap_or((first, "/"));
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST);
    let mut builder = Request::builder().method(method);
    builder = match target.trim().parse::<http::Uri>() {
        Ok(uri) if uri.path().starts_with('/') => builder.uri(uri),
        _ => builder.uri("/"),
    };
    let mut headers = http::HeaderMap::new();
    let mut sign = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("x-fuzz-sign") {
            sign = true;
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim_start().as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    if sign {
        kind.sign(&mut headers, body);
    }
    let mut req = builder
        .body(Body::from(body.to_vec()))
        .unwrap_or_else(|_| Request::new(Body::empty()));
    req.headers_mut().extend(headers);
    req
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs one input against `kind`'s routes.
pub fn run(kind: Kind, data: &[u8]) {
    let h = harness(kind);
    let req = request(kind, data);
    let router = h.router.clone();
    let response = h
        .runtime
        .block_on(async move { router.oneshot(req).await })
        .unwrap_or_else(|e| match e {});
    // A server error is a bug unless the bus refused (it never does here) or, for SNS, a
    // confirmation could not reach the (closed) SNS endpoint (503).
    let status = response.status();
    assert!(
        !status.is_server_error() || (kind == Kind::Sns && status.as_u16() == 503),
        "{kind:?}: a request was answered {status}"
    );
}
