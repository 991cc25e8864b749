//! The http trigger against a real local server (axum on 127.0.0.1:0).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_crds::common::{
    BasicAuth, ConfigMapKeySelector, SecretKeySelector, SecureHeader, TLSConfig, ValueFromSource,
};
use sluice_crds::sensor::{
    StatusPolicy, Trigger as TriggerSpec, TriggerParameter, TriggerParameterSource, TriggerPolicy,
    TriggerTemplate,
};
use sluice_eventbus::EventBuilder;

use super::*;
use crate::firing::FiringId;
use crate::params::EventsByDependency;
use crate::secrets::SecretError;
use crate::triggers::ErrorKind;

/// Secrets from a map, for tests.
struct MapSecrets(HashMap<(String, String), String>);

impl SecretResolver for MapSecrets {
    fn resolve_secret(&self, s: &SecretKeySelector) -> Result<String, SecretError> {
        self.0
            .get(&(s.name.clone(), s.key.clone()))
            .cloned()
            .ok_or_else(|| SecretError::ResolveSecret {
                name: s.name.clone(),
                key: s.key.clone(),
                path: "map".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
    }
    fn resolve_config_map(&self, s: &ConfigMapKeySelector) -> Result<String, SecretError> {
        self.resolve_secret(&SecretKeySelector {
            name: s.name.clone(),
            key: s.key.clone(),
            optional: None,
        })
    }
}

fn secrets() -> Arc<dyn SecretResolver> {
    Arc::new(MapSecrets(HashMap::from([
        (("auth".into(), "user".into()), "ada".into()),
        (("auth".into(), "pass".into()), "s3cret".into()),
        (("auth".into(), "token".into()), "Bearer tok".into()),
    ])))
}

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

/// A server that records every request and answers with the status named by the last path
/// segment when it is a number (`/status/503`), else 200.
async fn sink() -> anyhow::Result<(String, Arc<Mutex<Vec<Seen>>>)> {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let store = store.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let path = parts.uri.path().to_owned();
            let status = path
                .rsplit('/')
                .next()
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(200);
            if let Ok(mut v) = store.lock() {
                v.push(Seen {
                    method: parts.method.to_string(),
                    path,
                    headers: parts.headers,
                    body,
                });
            }
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), seen))
}

fn events() -> EventsByDependency {
    let event = EventBuilder::new("webhook", "example", "webhook")
        .id("evt-1")
        .data_json(json!({"header": {}, "body": {"service": "checkout", "version": "1.4.2", "n": 3}}))
        .build();
    match event {
        Ok(e) => BTreeMap::from([("d".to_owned(), e)]),
        Err(e) => panic!("test event: {e}"),
    }
}

fn param(key: &str, dest: &str) -> TriggerParameter {
    TriggerParameter {
        src: Some(TriggerParameterSource {
            dependency_name: "d".into(),
            data_key: Some(key.into()),
            ..TriggerParameterSource::default()
        }),
        dest: dest.into(),
        operation: None,
    }
}

fn spec(http: HTTPTrigger, allow: &[i32]) -> TriggerSpec {
    TriggerSpec {
        template: Some(TriggerTemplate {
            name: "t".into(),
            http: Some(http),
            ..TriggerTemplate::default()
        }),
        policy: (!allow.is_empty()).then(|| TriggerPolicy {
            status: Some(StatusPolicy {
                allow: allow.to_vec(),
            }),
            ..TriggerPolicy::default()
        }),
        ..TriggerSpec::default()
    }
}

fn ctx() -> BuildContext {
    BuildContext {
        sensor: "s".into(),
        secrets: secrets(),
        http: reqwest::Client::new(),
    }
}

fn build(spec: &TriggerSpec) -> Result<HttpTrigger, BuildError> {
    let template = spec
        .template
        .as_ref()
        .and_then(|t| t.http.as_ref())
        .cloned()
        .unwrap_or_default();
    HttpTrigger::build("t", &template, spec, &ctx())
}

fn firing(spec: &TriggerSpec) -> Firing {
    let events = events();
    Firing {
        id: FiringId::new("t", &events),
        sensor: "s".into(),
        trigger: "t".into(),
        events,
        template: spec.template.clone().unwrap_or_default(),
    }
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn posts_the_parameterized_payload_with_headers_and_idempotency_key() -> anyhow::Result<()> {
    let (base, seen) = sink().await?;
    let s = spec(
        HTTPTrigger {
            url: format!("{base}/deploy"),
            payload: vec![
                param("body.service", "service"),
                param("body.version", "release.version"),
            ],
            headers: BTreeMap::from([("X-Requested-By".to_owned(), "sluice".to_owned())]),
            ..HTTPTrigger::default()
        },
        &[],
    );
    let trigger = build(&s)?;
    let f = firing(&s);
    assert_eq!(trigger.execute(&f).await?, Outcome::HttpResponse { status: 200 });

    let got = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/deploy");
    assert_eq!(
        serde_json::from_slice::<Value>(&req.body)?,
        json!({"service": "checkout", "release": {"version": "1.4.2"}})
    );
    assert_eq!(header(req, "content-type"), Some("application/json"));
    assert_eq!(header(req, "x-requested-by"), Some("sluice"));
    assert_eq!(header(req, "idempotency-key"), Some(f.id.as_str()));
    Ok(())
}

#[tokio::test]
async fn empty_dest_sends_the_body_unchanged() -> anyhow::Result<()> {
    let (base, seen) = sink().await?;
    let s = spec(
        HTTPTrigger {
            url: format!("{base}/raw"),
            payload: vec![param("body", "")],
            ..HTTPTrigger::default()
        },
        &[],
    );
    build(&s)?.execute(&firing(&s)).await?;
    let got = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].body)?,
        json!({"service": "checkout", "version": "1.4.2", "n": 3})
    );
    Ok(())
}

#[tokio::test]
async fn method_basic_auth_and_secure_headers() -> anyhow::Result<()> {
    let (base, seen) = sink().await?;
    let secret = |key: &str| SecretKeySelector {
        name: "auth".into(),
        key: key.into(),
        optional: None,
    };
    let s = spec(
        HTTPTrigger {
            url: format!("{base}/put"),
            method: Some("PUT".into()),
            basic_auth: Some(BasicAuth {
                username: Some(secret("user")),
                password: Some(secret("pass")),
            }),
            secure_headers: vec![SecureHeader {
                name: "X-Token".into(),
                value_from: Some(ValueFromSource {
                    secret_key_ref: Some(secret("token")),
                    config_map_key_ref: None,
                }),
            }],
            ..HTTPTrigger::default()
        },
        &[],
    );
    let trigger = build(&s)?;
    let f = firing(&s);
    trigger.execute(&f).await?;
    let got = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(got[0].method, "PUT");
    assert_eq!(header(&got[0], "authorization"), Some("Basic YWRhOnMzY3JldA=="));
    assert_eq!(header(&got[0], "x-token"), Some("Bearer tok"));
    assert!(
        got[0].body.is_empty(),
        "no payload parameters: empty body, as upstream"
    );

    let described = trigger.describe(&f)?.to_string();
    assert!(
        !described.contains("s3cret") && !described.contains("YWRh") && !described.contains("Bearer tok")
    );
    assert!(described.contains(request::REDACTED));
    Ok(())
}

async fn send(url: String, allow: &[i32]) -> anyhow::Result<Result<Outcome, TriggerError>> {
    let s = spec(
        HTTPTrigger {
            url,
            ..HTTPTrigger::default()
        },
        allow,
    );
    Ok(build(&s)?.execute(&firing(&s)).await)
}

#[tokio::test]
async fn allow_policy_decides_success_and_retryability() -> anyhow::Result<()> {
    let (base, _seen) = sink().await?;
    assert_eq!(
        send(format!("{base}/status/201"), &[200, 201]).await??,
        Outcome::HttpResponse { status: 201 }
    );
    match send(format!("{base}/status/404"), &[200]).await? {
        Err(e @ TriggerError::StatusNotAllowed { status: 404, .. }) => {
            assert_eq!(e.kind(), ErrorKind::Permanent)
        }
        other => panic!("expected a disallowed 404, got {other:?}"),
    }
    match send(format!("{base}/status/503"), &[200]).await? {
        Err(e @ TriggerError::StatusNotAllowed { status: 503, .. }) => assert!(e.is_retryable()),
        other => panic!("expected a disallowed 503, got {other:?}"),
    }
    match send(format!("{base}/status/429"), &[200]).await? {
        Err(e) => assert!(e.is_retryable(), "429 is retryable"),
        other => panic!("expected a disallowed 429, got {other:?}"),
    }
    // Without a policy any response succeeds, as upstream.
    assert_eq!(
        send(format!("{base}/status/500"), &[]).await??,
        Outcome::HttpResponse { status: 500 }
    );
    Ok(())
}

#[tokio::test]
async fn connection_errors_are_retryable() -> anyhow::Result<()> {
    // Bind then drop a listener: the port is (almost certainly) closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let s = spec(
        HTTPTrigger {
            url: format!("http://127.0.0.1:{port}/x"),
            ..HTTPTrigger::default()
        },
        &[],
    );
    match build(&s)?.execute(&firing(&s)).await {
        Err(e @ TriggerError::SendRequest { .. }) => assert!(e.is_retryable()),
        other => panic!("expected a send error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn resource_parameters_rewrite_the_url() -> anyhow::Result<()> {
    let (base, seen) = sink().await?;
    let events = events();
    let mut with_url = events.clone();
    let event = EventBuilder::new("webhook", "example", "webhook")
        .id("evt-2")
        .data_json(json!({"body": {"target": format!("{base}/from-event")}}))
        .build()?;
    with_url.insert("d".into(), event);
    let s = spec(
        HTTPTrigger {
            url: "http://placeholder.invalid/".into(),
            parameters: vec![param("body.target", "url")],
            ..HTTPTrigger::default()
        },
        &[],
    );
    let mut f = firing(&s);
    f.events = with_url;
    build(&s)?.execute(&f).await?;
    let got = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(got[0].path, "/from-event");
    Ok(())
}

#[test]
fn build_refuses_tls_bad_urls_and_missing_secrets() {
    let tls = spec(
        HTTPTrigger {
            url: "http://x/".into(),
            tls: Some(TLSConfig::default()),
            ..HTTPTrigger::default()
        },
        &[],
    );
    assert!(
        matches!(build(&tls), Err(BuildError::UnsupportedField { ref field, .. }) if field == "http.tls")
    );
    let bad = spec(
        HTTPTrigger {
            url: "not a url".into(),
            ..HTTPTrigger::default()
        },
        &[],
    );
    assert!(matches!(build(&bad), Err(BuildError::InvalidField { ref field, .. }) if field == "http.url"));
    let missing = spec(
        HTTPTrigger {
            url: "http://x/".into(),
            basic_auth: Some(BasicAuth {
                username: Some(SecretKeySelector {
                    name: "nope".into(),
                    key: "user".into(),
                    optional: None,
                }),
                password: None,
            }),
            ..HTTPTrigger::default()
        },
        &[],
    );
    assert!(matches!(build(&missing), Err(BuildError::ResolveSecret { .. })));
    let bad_status = spec(
        HTTPTrigger {
            url: "http://x/".into(),
            ..HTTPTrigger::default()
        },
        &[42],
    );
    assert!(
        matches!(build(&bad_status), Err(BuildError::InvalidField { ref field, .. }) if field == "policy.status.allow")
    );
}
