//! The http trigger against a real local server (axum on 127.0.0.1:0).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_crds::common::{BasicAuth, SecretKeySelector, SecureHeader, TLSConfig, ValueFromSource};
use sluice_crds::sensor::{
    StatusPolicy, Trigger as TriggerSpec, TriggerParameter, TriggerParameterSource, TriggerPolicy,
    TriggerTemplate,
};
use sluice_eventbus::EventBuilder;

use super::*;
use crate::firing::FiringId;
use crate::params::EventsByDependency;
use crate::secrets::MapSecretResolver;
use crate::triggers::ErrorKind;

fn secrets() -> Arc<dyn SecretResolver> {
    Arc::new(
        MapSecretResolver::new()
            .with_secret("auth", "user", "ada")
            .with_secret("auth", "pass", "s3cret")
            .with_secret("auth", "token", "Bearer tok"),
    )
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
        .build()
        .expect("a test event with an id builds");
    BTreeMap::from([("d".to_owned(), event)])
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
        http: reqwest::Client::new().into(),
        namespace: None,
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
async fn errors_show_the_url_without_credentials() -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://user:hunter2@127.0.0.1:{port}/x?token=s3cr3t");
    let error = match send(url, &[]).await? {
        Err(e @ TriggerError::SendRequest { .. }) => e,
        other => panic!("expected a send error, got {other:?}"),
    };
    let text = sluice_eventbus::error_chain(&error);
    assert!(!text.contains("hunter2") && !text.contains("s3cr3t"), "{text}");
    assert!(text.contains("127.0.0.1") && text.contains("token=***"), "{text}");
    let (base, _seen) = sink().await?;
    let error = match send(format!("{base}/status/404?sig=abc"), &[200]).await? {
        Err(e @ TriggerError::StatusNotAllowed { .. }) => e,
        other => panic!("expected a disallowed 404, got {other:?}"),
    };
    assert!(!error.to_string().contains("abc"), "{error}");
    Ok(())
}

/// `sluice sensor test` prints the plan: the URL's user info and query values are masked there too.
#[test]
fn the_described_plan_masks_the_credentials_of_the_url() {
    let s = spec(
        HTTPTrigger {
            url: "http://user:plan-pass@127.0.0.1:9/x?access_token=plan-token&sig=plan-sig".into(),
            ..HTTPTrigger::default()
        },
        &[],
    );
    let described = build(&s)
        .expect("builds")
        .describe(&firing(&s))
        .expect("describes")
        .to_string();
    for secret in ["plan-pass", "plan-token", "plan-sig"] {
        assert!(!described.contains(secret), "{described}");
    }
    assert!(
        described.contains("http://***@127.0.0.1:9/x?access_token=***&sig=***"),
        "{described}"
    );
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
fn build_refuses_bad_tls_bad_urls_and_missing_secrets() {
    let tls = spec(
        HTTPTrigger {
            url: "http://x/".into(),
            tls: Some(TLSConfig::default()),
            ..HTTPTrigger::default()
        },
        &[],
    );
    assert!(build(&tls).is_ok(), "tls with no settings uses the system roots");
    let tls_secret = |name: &str| {
        Some(SecretKeySelector {
            name: "auth".into(),
            key: name.into(),
            optional: None,
        })
    };
    let bad_ca = spec(
        HTTPTrigger {
            url: "https://x/".into(),
            tls: Some(TLSConfig {
                ca_cert_secret: tls_secret("user"),
                ..TLSConfig::default()
            }),
            ..HTTPTrigger::default()
        },
        &[],
    );
    assert!(
        matches!(build(&bad_ca), Err(BuildError::InvalidField { ref field, .. }) if field == "http.tls.caCertSecret")
    );
    let half_pair = spec(
        HTTPTrigger {
            url: "https://x/".into(),
            tls: Some(TLSConfig {
                client_cert_secret: tls_secret("user"),
                ..TLSConfig::default()
            }),
            ..HTTPTrigger::default()
        },
        &[],
    );
    assert!(
        matches!(build(&half_pair), Err(BuildError::InvalidField { ref field, .. }) if field == "http.tls")
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

fn get(url: &str) -> TriggerSpec {
    spec(
        HTTPTrigger {
            url: url.into(),
            method: Some("GET".into()),
            ..HTTPTrigger::default()
        },
        &[],
    )
}

#[tokio::test]
async fn a_literal_metadata_address_is_refused_before_any_connection() -> anyhow::Result<()> {
    let s = get("http://169.254.169.254/latest/meta-data/");
    let err = build(&s)?.execute(&firing(&s)).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("the request was sent"))?;
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(
        err.to_string(),
        "failed to send the request to `http://169.254.169.254/latest/meta-data/`: refused to connect to \
         169.254.169.254 (host `169.254.169.254`): it is in 169.254.0.0/16, which the sensor's egress rules \
         deny by default (link-local and cloud metadata addresses); allow it with --egress-allow if this is intended"
    );
    Ok(())
}

#[tokio::test]
async fn a_host_name_resolving_to_a_denied_address_is_refused_and_an_allowed_one_passes() -> anyhow::Result<()>
{
    let (base, seen) = sink().await?;
    let port = base.rsplit(':').next().unwrap_or_default().to_owned();
    let s = get(&format!("http://localhost:{port}/hook"));
    let deny_loopback = egress::EgressPolicy::with_rules(&["127.0.0.0/8".parse()?, "::1/128".parse()?], &[]);
    let guarded = BuildContext {
        http: egress::HttpClients::new(deny_loopback)?,
        ..ctx()
    };
    let trigger = HttpTrigger::build(
        "t",
        s.template
            .as_ref()
            .and_then(|t| t.http.as_ref())
            .ok_or_else(|| anyhow::anyhow!("http"))?,
        &s,
        &guarded,
    )?;
    let err = trigger.execute(&firing(&s)).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("the request was sent"))?;
    assert!(matches!(err, TriggerError::EgressDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("(host `localhost`)"), "{err}");
    assert_eq!(seen.lock().map(|v| v.len()).unwrap_or_default(), 0);

    let open = BuildContext {
        http: egress::HttpClients::new(egress::EgressPolicy::default())?,
        ..ctx()
    };
    let trigger = HttpTrigger::build(
        "t",
        s.template
            .as_ref()
            .and_then(|t| t.http.as_ref())
            .ok_or_else(|| anyhow::anyhow!("http"))?,
        &s,
        &open,
    )?;
    assert_eq!(
        trigger.execute(&firing(&s)).await?,
        Outcome::HttpResponse { status: 200 }
    );
    Ok(())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn openssl(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        Self::openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sluice test CA",
            ],
        )?;
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")?;
        for who in ["server", "client"] {
            Self::openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{who}.key"),
                    "-out",
                    &format!("{who}.csr"),
                    "-subj",
                    &format!("/CN={who}"),
                ],
            )?;
            Self::openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{who}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &format!("{who}.pem"),
                    "-days",
                    "2",
                    "-extfile",
                    "san.ext",
                ],
            )?;
        }
        Ok(Self { dir })
    }

    fn read(&self, name: &str) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join(name))?)
    }

    /// `openssl s_server -www` (answers GET with 200) on a free port; `verify_client` requires a client
    /// certificate signed by the CA.
    fn serve(&self, verify_client: bool) -> anyhow::Result<(u16, std::process::Child)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = std::process::Command::new("openssl");
        cmd.current_dir(self.dir.path()).args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "server.pem",
            "-key",
            "server.key",
            "-www",
            "-quiet",
        ]);
        if verify_client {
            cmd.args(["-Verify", "1", "-CAfile", "ca.pem"]);
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok((port, child));
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        anyhow::bail!("openssl s_server did not listen on {port}")
    }
}

fn tls_trigger(pki: &Pki, port: u16, tls: TLSConfig) -> anyhow::Result<(HttpTrigger, TriggerSpec)> {
    let mut files = MapSecretResolver::new();
    for name in ["ca.pem", "client.pem", "client.key"] {
        files = files.with_secret("tls", name, &pki.read(name)?);
    }
    let ctx = BuildContext {
        secrets: Arc::new(files),
        ..ctx()
    };
    let s = spec(
        HTTPTrigger {
            url: format!("https://127.0.0.1:{port}/"),
            method: Some("GET".into()),
            tls: Some(tls),
            ..HTTPTrigger::default()
        },
        &[200],
    );
    let http = s
        .template
        .as_ref()
        .and_then(|t| t.http.clone())
        .unwrap_or_default();
    Ok((HttpTrigger::build("t", &http, &s, &ctx)?, s))
}

fn tls_key(name: &str) -> Option<SecretKeySelector> {
    Some(SecretKeySelector {
        name: "tls".into(),
        key: name.into(),
        optional: None,
    })
}

#[tokio::test]
async fn tls_with_a_custom_ca_and_a_client_certificate() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let (port, mut server) = pki.serve(true)?;
    let result = async {
        // Without the CA the server's certificate is not trusted.
        let (untrusting, s) = tls_trigger(
            &pki,
            port,
            TLSConfig {
                enabled: true,
                ..TLSConfig::default()
            },
        )?;
        let err = untrusting.execute(&firing(&s)).await.err();
        assert!(matches!(err, Some(TriggerError::SendRequest { .. })), "{err:?}");
        // With the CA and the client certificate the mutual-TLS handshake succeeds.
        let (mutual, s) = tls_trigger(
            &pki,
            port,
            TLSConfig {
                ca_cert_secret: tls_key("ca.pem"),
                client_cert_secret: tls_key("client.pem"),
                client_key_secret: tls_key("client.key"),
                ..TLSConfig::default()
            },
        )?;
        assert_eq!(
            mutual.execute(&firing(&s)).await?,
            Outcome::HttpResponse { status: 200 }
        );
        anyhow::Ok(())
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    result
}

#[tokio::test]
async fn tls_insecure_skip_verify_accepts_an_unknown_issuer() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let (port, mut server) = pki.serve(false)?;
    let result = async {
        let (trigger, s) = tls_trigger(
            &pki,
            port,
            TLSConfig {
                insecure_skip_verify: true,
                ..TLSConfig::default()
            },
        )?;
        assert_eq!(
            trigger.execute(&firing(&s)).await?,
            Outcome::HttpResponse { status: 200 }
        );
        anyhow::Ok(())
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// A recording listener on 127.0.0.2 (a loopback address the tests deny, standing in for a
/// metadata address no test may ever contact) and the guarded context that denies it.
async fn denied_listener() -> anyhow::Result<(std::net::SocketAddr, Arc<Mutex<Vec<Seen>>>, BuildContext)> {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let store = store.clone();
        async move {
            let (parts, _) = req.into_parts();
            if let Ok(mut v) = store.lock() {
                v.push(Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body: Bytes::new(),
                });
            }
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let ctx = BuildContext {
        http: egress::HttpClients::new(egress::EgressPolicy::with_rules(&["127.0.0.2/32".parse()?], &[]))?,
        ..ctx()
    };
    Ok((addr, seen, ctx))
}

/// A server on 127.0.0.1 answering every request with a 307 to `location`.
async fn redirector(location: String) -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, location)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

fn guarded(spec: &TriggerSpec, ctx: &BuildContext) -> anyhow::Result<HttpTrigger> {
    let http = spec
        .template
        .as_ref()
        .and_then(|t| t.http.as_ref())
        .ok_or_else(|| anyhow::anyhow!("http"))?;
    Ok(HttpTrigger::build("t", http, spec, ctx)?)
}

#[tokio::test]
async fn a_redirect_to_a_denied_address_is_not_followed() -> anyhow::Result<()> {
    let (denied, seen, ctx) = denied_listener().await?;
    for location in [
        format!("http://{denied}/stolen"),
        format!("http://[::ffff:127.0.0.2]:{}/stolen", denied.port()),
    ] {
        let start = redirector(location.clone()).await?;
        // A POST: a 307 keeps the method and body, so following it would replay the request.
        let s = spec(
            HTTPTrigger {
                url: format!("{start}/hook"),
                method: Some("POST".into()),
                ..HTTPTrigger::default()
            },
            &[],
        );
        let err = guarded(&s, &ctx)?.execute(&firing(&s)).await.err();
        let err = err.ok_or_else(|| anyhow::anyhow!("{location}: the redirect was followed"))?;
        assert!(format!("{err:?}").contains("127.0.0.2"), "{location}: {err:?}");
    }
    assert_eq!(
        seen.lock().map(|v| v.len()).unwrap_or_default(),
        0,
        "the denied listener was reached"
    );
    Ok(())
}

#[tokio::test]
async fn an_ipv4_mapped_ipv6_literal_of_a_denied_address_is_refused() -> anyhow::Result<()> {
    let (denied, seen, ctx) = denied_listener().await?;
    let s = get(&format!("http://[::ffff:127.0.0.2]:{}/x", denied.port()));
    let err = guarded(&s, &ctx)?.execute(&firing(&s)).await.err();
    assert!(matches!(err, Some(TriggerError::EgressDenied { .. })), "{err:?}");
    assert_eq!(seen.lock().map(|v| v.len()).unwrap_or_default(), 0);
    Ok(())
}

#[tokio::test]
async fn secure_headers_never_follow_a_redirect_to_another_origin() -> anyhow::Result<()> {
    let (base, seen) = sink().await?;
    // Another origin that the egress rules allow: the sink on localhost instead of 127.0.0.1.
    let other = base.replace("127.0.0.1", "localhost");
    let start = redirector(format!("{other}/landed")).await?;
    let with_secure = spec(
        HTTPTrigger {
            url: format!("{start}/hook"),
            method: Some("GET".into()),
            secure_headers: vec![SecureHeader {
                name: "X-Api-Key".into(),
                value_from: Some(ValueFromSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "auth".into(),
                        key: "token".into(),
                        optional: None,
                    }),
                    config_map_key_ref: None,
                }),
            }],
            ..HTTPTrigger::default()
        },
        &[],
    );
    let open = BuildContext {
        http: egress::HttpClients::new(egress::EgressPolicy::default())?,
        ..ctx()
    };
    let err = guarded(&with_secure, &open)?
        .execute(&firing(&with_secure))
        .await
        .err();
    let err = err.ok_or_else(|| anyhow::anyhow!("followed a cross-origin redirect with secure headers"))?;
    assert!(format!("{err:?}").contains("another origin"), "{err:?}");
    assert_eq!(seen.lock().map(|v| v.len()).unwrap_or_default(), 0);
    // Without secure headers the same redirect is followed.
    let plain = get(&format!("{start}/hook"));
    guarded(&plain, &open)?.execute(&firing(&plain)).await?;
    assert_eq!(seen.lock().map(|v| v.len()).unwrap_or_default(), 1);
    Ok(())
}
