//! The `websocket` source (a Sluice extension) against a real WebSocket server run by each test on
//! 127.0.0.1 (tokio-tungstenite): exact payloads of text, JSON and binary messages, the
//! `Authorization` header from a Secret, reconnection after the server stopped and came back on the
//! same port, and `filter.expression` applied through the EventSource build.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::SinkExt;
use serde_json::json;
use sluice_crds::common::SecretKeySelector;
use sluice_crds::eventsource::{EventSource, WebSocketEventSource};
use sluice_eventsource::sources::websocket;
use sluice_eventsource::testing::Recorder;
use sluice_eventsource::{build, build_kind, FileSecretResolver, SourceContext};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

/// One accepted connection: the request path, its `Authorization` header, the socket.
struct Accepted {
    path: String,
    authorization: Option<String>,
    socket: WebSocketStream<TcpStream>,
}

/// A WebSocket server on 127.0.0.1 handing each accepted connection to the test.
struct Server {
    port: u16,
    accepted: mpsc::Receiver<Accepted>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, accepted) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let captured = Arc::new(Mutex::new((String::new(), None)));
                let into = captured.clone();
                // The signature is tungstenite's handshake callback; its error type is not ours to shrink.
                #[allow(clippy::result_large_err)]
                let callback = move |req: &Request, res: Response| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    *into.lock().expect("lock") = (req.uri().path().to_owned(), auth);
                    Ok(res)
                };
                let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    continue;
                };
                let (path, authorization) = captured.lock().expect("lock").clone();
                if tx
                    .send(Accepted {
                        path,
                        authorization,
                        socket,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Self { port, accepted, task }
    }

    /// The next connection (bounded wait, so a source that never connects fails the test).
    async fn next(&mut self) -> Accepted {
        tokio::time::timeout(Duration::from_secs(30), self.accepted.recv())
            .await
            .expect("the source connects")
            .expect("server running")
    }

    /// Stops accepting and releases the port (connections already handed out stay with the test).
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn metadata() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([("team".into(), "ops".into())]))
}

#[tokio::test]
async fn text_json_and_binary_messages_round_trip_with_the_authorization_secret() {
    let mut server = Server::start(0).await;
    let secrets = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(secrets.path().join("feed")).expect("mkdir");
    std::fs::write(secrets.path().join("feed/token"), "Bearer s3cret\n").expect("write");
    let spec = |json_body| WebSocketEventSource {
        url: format!("ws://127.0.0.1:{}/v1/feed?x=1", server.port),
        authorization: Some(SecretKeySelector {
            name: "feed".into(),
            key: "token".into(),
            ..Default::default()
        }),
        json_body,
        metadata: metadata(),
        ..Default::default()
    };
    let recorder = Arc::new(Recorder::default());
    let ctx = SourceContext::new(
        Arc::new(FileSecretResolver::new(secrets.path())),
        recorder.clone(),
    );
    let built = build_kind(
        "es",
        &BTreeMap::from([("json".to_string(), spec(true))]),
        websocket::build,
        &ctx,
    )
    .expect("build");
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for task in built.tasks {
        tasks.push(tokio::spawn(task.run(cancel.clone())));
    }
    let mut conn = server.next().await;
    assert_eq!(conn.path, "/v1/feed");
    assert_eq!(conn.authorization.as_deref(), Some("Bearer s3cret"));
    for m in [
        Message::Text(r#"{"order":7,"tags":["a"]}"#.into()),
        Message::Text("plain text".into()),
        Message::Ping(vec![1].into()),
        Message::Binary(vec![0u8, 159, 146, 150].into()),
        Message::Binary(br#"{"bin":true}"#.to_vec().into()),
    ] {
        conn.socket.send(m).await.expect("send");
    }
    recorder.wait_sent(4).await;
    cancel.cancel();
    for t in tasks {
        t.await.expect("join").expect("run");
    }
    assert_eq!(
        recorder.sent_data(),
        vec![
            json!({"body": {"order": 7, "tags": ["a"]}, "metadata": {"team": "ops"}}),
            // jsonBody with text that is not JSON: base64, as the redis kind.
            json!({"body": "cGxhaW4gdGV4dA==", "metadata": {"team": "ops"}}),
            json!({"body": "AJ+Slg==", "metadata": {"team": "ops"}}),
            json!({"body": {"bin": true}, "metadata": {"team": "ops"}}),
        ]
    );
    assert!(recorder.sent().iter().all(|e| e.ty() == "websocket"));
    server.stop().await;
}

#[tokio::test]
async fn the_source_reconnects_after_the_server_stopped_and_restarted_and_is_unready_meanwhile() {
    let mut server = Server::start(0).await;
    let port = server.port;
    let spec = WebSocketEventSource {
        url: format!("ws://127.0.0.1:{port}/"),
        ..Default::default()
    };
    let recorder = Arc::new(Recorder::default());
    let ctx = SourceContext::new(
        Arc::new(FileSecretResolver::new("/nonexistent")),
        recorder.clone(),
    );
    let built = build_kind(
        "es",
        &BTreeMap::from([("w".to_string(), spec)]),
        websocket::build,
        &ctx,
    )
    .expect("build");
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for task in built.tasks {
        tasks.push(tokio::spawn(task.run(cancel.clone())));
    }
    let mut conn = server.next().await;
    conn.socket
        .send(Message::Text("before".into()))
        .await
        .expect("send");
    recorder.wait_sent(1).await;
    assert!(ctx.readiness.is_ready(), "{:?}", ctx.readiness.unmet());

    // The server goes away mid-stream: listener and connection gone.
    server.stop().await;
    drop(conn);
    for _ in 0..300 {
        if !ctx.readiness.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ctx.readiness.unmet(), vec!["es/w"]);

    // Back on the same port: the source reconnects by itself and reads on.
    let mut server = Server::start(port).await;
    let mut conn = server.next().await;
    conn.socket
        .send(Message::Text("after".into()))
        .await
        .expect("send");
    recorder.wait_sent(2).await;
    assert!(ctx.readiness.is_ready(), "{:?}", ctx.readiness.unmet());
    cancel.cancel();
    for t in tasks {
        t.await.expect("join").expect("run");
    }
    assert_eq!(
        recorder.sent_data(),
        vec![
            json!({"body": "before", "metadata": null}),
            json!({"body": "after", "metadata": null})
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn filter_expression_drops_messages_through_the_eventsource_build() {
    let mut server = Server::start(0).await;
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: feed}}\nspec:\n  websocket:\n    orders:\n      url: ws://127.0.0.1:{}/orders\n      jsonBody: true\n      filter:\n        expression: 'body.kind == \"keep\"'\n",
        server.port
    );
    let es: EventSource = serde_yaml::from_str(&yaml).expect("manifest");
    let recorder = Arc::new(Recorder::default());
    let ctx = SourceContext::new(
        Arc::new(FileSecretResolver::new("/nonexistent")),
        recorder.clone(),
    );
    let built = build(&es, &ctx).expect("build");
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for task in built.tasks {
        tasks.push(tokio::spawn(task.run(cancel.clone())));
    }
    let mut conn = server.next().await;
    for body in [
        r#"{"kind":"drop","n":1}"#,
        r#"{"kind":"keep","n":2}"#,
        r#"{"kind":"drop","n":3}"#,
        r#"{"kind":"keep","n":4}"#,
    ] {
        conn.socket.send(Message::Text(body.into())).await.expect("send");
    }
    // Messages are handled in order, so once n=4 arrived every earlier one was decided.
    recorder.wait_sent(2).await;
    cancel.cancel();
    for t in tasks {
        t.await.expect("join").expect("run");
    }
    assert_eq!(
        recorder.sent_data(),
        vec![
            json!({"body": {"kind": "keep", "n": 2}, "metadata": null}),
            json!({"body": {"kind": "keep", "n": 4}, "metadata": null}),
        ]
    );
    server.stop().await;
}

#[test]
fn a_url_that_is_not_websocket_is_refused_with_the_field() {
    let err = build_kind(
        "es",
        &BTreeMap::from([(
            "w".to_string(),
            WebSocketEventSource {
                url: "http://example.com/feed".into(),
                ..Default::default()
            },
        )]),
        websocket::build,
        &SourceContext::new(
            Arc::new(FileSecretResolver::new("/nonexistent")),
            Arc::new(Recorder::default()),
        ),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("must start with ws:// or wss://"), "{err}");
}
