//! End to end through `sluice run` for the `websocket` kind (a WebSocket server run by the test on
//! 127.0.0.1) and the `sftp` kind (the sshd of `scripts/services.sh start sftp`: `SFTP_ADDRESS`,
//! `SFTP_USER`, `SFTP_KEY_FILE`, `SFTP_DIR`): messages and file changes go through the EventSource,
//! the embedded bus and a Sensor's http trigger to a sink, which receives the exact payload.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::SinkExt;
use serde_json::{json, Value};
use sluice_eventsource::testing::setting;
use sluice_integration_tests::{free_port, Received, Sink, SluiceProcess};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A Sensor named `rt-<event>` whose http trigger POSTs `{dest: <data at dataKey>…}` to the sink at
/// `/<event>` for each event `event` of EventSource `rt-src`.
fn sensor(event: &str, sink_port: u16, params: &[(&str, &str)]) -> String {
    let mut payload = String::new();
    for (data_key, dest) in params {
        payload.push_str(&format!(
            "            - src: {{dependencyName: d, dataKey: {data_key}}}\n              dest: {dest}\n"
        ));
    }
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata:\n  name: rt-{event}\nspec:\n  dependencies:\n    - name: d\n      eventSourceName: rt-src\n      eventName: {event}\n  triggers:\n    - template:\n        name: to-sink\n        http:\n          url: http://127.0.0.1:{sink_port}/{event}\n          method: POST\n          payload:\n{payload}"
    )
}

/// `sluice run` over the EventSource `es_spec` (the YAML under `spec:`) and `sensors`, with
/// `secrets` as `(name, key, value)`; `/readyz` on the returned port.
struct Run {
    dir: tempfile::TempDir,
    sluice: Option<SluiceProcess>,
    metrics_port: u16,
}

impl Run {
    fn start(es_spec: &str, sensors: &[String], secrets: &[(&str, &str, String)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let es = format!("apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata:\n  name: rt-src\nspec:\n{es_spec}");
        std::fs::write(dir.path().join("es.yaml"), es)?;
        let mut paths = vec![dir.path().join("es.yaml")];
        for (i, s) in sensors.iter().enumerate() {
            let p = dir.path().join(format!("sensor-{i}.yaml"));
            std::fs::write(&p, s)?;
            paths.push(p);
        }
        for (name, key, value) in secrets {
            std::fs::create_dir_all(dir.path().join("secrets").join(name))?;
            std::fs::write(dir.path().join("secrets").join(name).join(key), value)?;
        }
        std::fs::create_dir_all(dir.path().join("secrets"))?;
        let metrics_port = free_port()?;
        let metrics = format!("127.0.0.1:{metrics_port}");
        let state = dir.path().join("state");
        let mut args: Vec<&str> = vec!["run"];
        for p in &paths {
            args.push(p.to_str().context("path")?);
        }
        args.extend([
            "--log-format",
            "json",
            "--metrics-address",
            &metrics,
            "--state-dir",
            state.to_str().context("path")?,
        ]);
        let sluice = SluiceProcess::start(&args, dir.path().join("sluice.log"), &dir.path().join("secrets"))?;
        Ok(Self {
            dir,
            sluice: Some(sluice),
            metrics_port,
        })
    }

    fn log(&self) -> String {
        self.sluice
            .as_ref()
            .map(SluiceProcess::log_text)
            .unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200 (every source connected; for `sftp`, its baseline listed).
    async fn wait_ready(&self) -> Result<()> {
        let client = reqwest::Client::new();
        for _ in 0..600 {
            let url = format!("http://127.0.0.1:{}/readyz", self.metrics_port);
            if let Ok(r) = client.get(url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("sluice did not become ready; log:\n{}", self.log())
    }

    fn stop(mut self) -> Result<()> {
        if let Some(s) = self.sluice.take() {
            s.terminate()?;
        }
        drop(self.dir);
        Ok(())
    }
}

/// The value the http trigger sent for `dest` (an object parameter arrives as its JSON text).
fn field(r: &Received, dest: &str) -> Value {
    let v = r.body[dest].clone();
    match v.as_str().map(serde_json::from_str::<Value>) {
        Some(Ok(parsed)) if parsed.is_object() => parsed,
        _ => v,
    }
}

/// What the sink received on `path`.
fn on(sink: &Sink, path: &str) -> Vec<Received> {
    sink.received().into_iter().filter(|r| r.path == path).collect()
}

async fn wait_on(sink: &Sink, path: &str, n: usize, run: &Run) -> Result<Vec<Received>> {
    for _ in 0..600 {
        let got = on(sink, path);
        if got.len() >= n {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "the sink got {:?} on {path}, expected {n}; log:\n{}",
        on(sink, path).iter().map(|r| r.body.clone()).collect::<Vec<_>>(),
        run.log()
    )
}

/// One accepted WebSocket connection: its request path and socket.
type Accepted = (String, WebSocketStream<TcpStream>);

/// A WebSocket server on 127.0.0.1:`port` (0: any) handing connections to the test.
async fn ws_server(port: u16) -> Result<(u16, mpsc::Receiver<Accepted>, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let path = Arc::new(Mutex::new(String::new()));
            let into = path.clone();
            // The signature is tungstenite's handshake callback; its error type is not ours to shrink.
            #[allow(clippy::result_large_err)]
            let callback = move |req: &Request, res: Response| {
                if let Ok(mut p) = into.lock() {
                    *p = req.uri().path().to_owned();
                }
                Ok(res)
            };
            let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                continue;
            };
            let path = path.lock().map(|p| p.clone()).unwrap_or_default();
            if tx.send((path, socket)).await.is_err() {
                return;
            }
        }
    });
    Ok((port, rx, task))
}

/// The next connection to each of `paths` (bounded wait).
async fn accept(
    rx: &mut mpsc::Receiver<Accepted>,
    paths: &[&str],
    run: &Run,
) -> Result<Vec<WebSocketStream<TcpStream>>> {
    let mut got: Vec<Option<WebSocketStream<TcpStream>>> = paths.iter().map(|_| None).collect();
    while got.iter().any(Option::is_none) {
        let Ok(Some((path, socket))) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await else {
            bail!("sluice did not connect to {paths:?}; log:\n{}", run.log());
        };
        if let Some(i) = paths.iter().position(|p| *p == path) {
            got[i] = Some(socket);
        }
    }
    Ok(got.into_iter().flatten().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_reach_the_sink_filtered_and_across_a_server_restart() -> Result<()> {
    let sink = Sink::start().await?;
    let (port, mut rx, server) = ws_server(0).await?;
    let spec = format!(
        "  websocket:\n    json:\n      url: ws://127.0.0.1:{port}/json\n      jsonBody: true\n      metadata: {{team: ops}}\n      filter:\n        expression: 'body.kind == \"keep\"'\n    raw:\n      url: ws://127.0.0.1:{port}/raw\n"
    );
    let sensors = [
        sensor("json", sink.port, &[("body", "body"), ("metadata.team", "team")]),
        sensor("raw", sink.port, &[("body", "body")]),
    ];
    let run = Run::start(&spec, &sensors, &[])?;
    let mut sockets = accept(&mut rx, &["/json", "/raw"], &run).await?;
    for m in [r#"{"kind":"drop","n":0}"#, r#"{"kind":"keep","n":1}"#] {
        sockets[0].send(Message::Text(m.into())).await?;
    }
    sockets[1]
        .send(Message::Binary(vec![0u8, 159, 146, 150].into()))
        .await?;
    let json_got = wait_on(&sink, "/json", 1, &run).await?;
    let raw_got = wait_on(&sink, "/raw", 1, &run).await?;
    assert_eq!(field(&json_got[0], "body"), json!({"kind": "keep", "n": 1}));
    assert_eq!(field(&json_got[0], "team"), json!("ops"));
    assert_eq!(field(&raw_got[0], "body"), json!("AJ+Slg=="));

    // The server stops mid-stream and comes back on the same port: sluice reconnects by itself.
    server.abort();
    let _ = server.await;
    drop(sockets);
    drop(rx);
    let (_, mut rx, server) = ws_server(port).await?;
    let mut sockets = accept(&mut rx, &["/json", "/raw"], &run).await?;
    for m in [r#"{"kind":"drop","n":2}"#, r#"{"kind":"keep","n":3}"#] {
        sockets[0].send(Message::Text(m.into())).await?;
    }
    let json_got = wait_on(&sink, "/json", 2, &run).await?;
    assert_eq!(field(&json_got[1], "body"), json!({"kind": "keep", "n": 3}));
    let bodies: Vec<Value> = json_got.iter().map(|r| field(r, "body")).collect();
    assert!(bodies.iter().all(|b| b["kind"] == "keep"), "{bodies:?}");
    run.stop()?;
    server.abort();
    Ok(())
}

/// Writes `path` under a temporary name and renames it into place (one listing never sees it
/// half-written).
fn create(path: &Path, content: &str) {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs sshd: scripts/test starts it and runs ignored tests"]
async fn sftp_creates_and_removes_reach_the_sink() -> Result<()> {
    let sink = Sink::start().await?;
    let watched = Path::new(&setting("SFTP_DIR")).join(format!("rt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&watched)?;
    std::fs::set_permissions(&watched, std::fs::Permissions::from_mode(0o777))?;
    create(&watched.join("old.csv"), "a,b");
    let auth = "      pollIntervalDuration: 200ms\n      address: {name: sftp, key: address}\n      username: {name: sftp, key: username}\n      sshKeySecret: {name: sftp, key: key}\n";
    let spec = format!(
        "  sftp:\n    files:\n      eventType: CREATE\n      watchPathConfig:\n        directory: {dir}/\n        pathRegexp: \"\\\\.csv$\"\n{auth}    gone:\n      eventType: REMOVE\n      watchPathConfig:\n        directory: {dir}/\n        path: old.csv\n{auth}",
        dir = watched.display()
    );
    let sensors = [
        sensor("files", sink.port, &[("name", "name"), ("op", "op")]),
        sensor("gone", sink.port, &[("name", "name"), ("op", "op")]),
    ];
    let secrets = [
        ("sftp", "address", setting("SFTP_ADDRESS")),
        ("sftp", "username", setting("SFTP_USER")),
        ("sftp", "key", std::fs::read_to_string(setting("SFTP_KEY_FILE"))?),
    ];
    let run = Run::start(&spec, &sensors, &secrets)?;
    // Ready once both sources listed their baseline (old.csv is in it, so not "created").
    run.wait_ready().await?;
    create(&watched.join("new.csv"), "1,2");
    create(&watched.join("skip.txt"), "x");
    std::fs::remove_file(watched.join("old.csv"))?;
    let created = wait_on(&sink, "/files", 1, &run).await?;
    let removed = wait_on(&sink, "/gone", 1, &run).await?;
    // `op` is upstream's numeric fsnotify value in the event data; a payload parameter read with
    // `dataKey` (no `useRawData`) carries it as text, as upstream's sensor does.
    assert_eq!(
        (field(&created[0], "name"), field(&created[0], "op")),
        (json!("new.csv"), json!("1"))
    );
    assert_eq!(
        (field(&removed[0], "name"), field(&removed[0], "op")),
        (json!("old.csv"), json!("4"))
    );
    run.stop()?;
    let _ = std::fs::remove_dir_all(&watched);
    Ok(())
}
