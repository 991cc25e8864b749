//! Helpers shared by the end-to-end tests in `tests/`: the `sluice` binary as a real process, a
//! nats-server of the test's own on a free port, and an HTTP sink that records what triggers send.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::http::HeaderMap;
use futures::TryStreamExt as _;
use serde_json::Value;

pub mod secrets;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `sluice` binary built by `cargo build --bin sluice` (scripts/test builds it first), or `$SLUICE_BIN`.
pub fn sluice_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let bin = target.join("debug").join("sluice");
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --bin sluice` first (scripts/test does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Polls `check` every 100 ms until it returns `Some`, up to `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    wait_for_every(within, Duration::from_millis(100), check).await
}

/// Polls `check` every `every` until it returns `Some`, up to `within`. An error from `check` is
/// taken as "not yet"; the timeout's error carries the last one.
pub async fn wait_for_every<T, F, Fut>(within: Duration, every: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut last_error = None;
    while tokio::time::Instant::now() < deadline {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(every).await;
    }
    match last_error {
        Some(e) => Err(e.context(format!("condition not met within {within:?}"))),
        None => bail!("condition not met within {within:?}"),
    }
}

/// A free loopback port (bound and released; a small race with other processes is accepted).
pub fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `port` on 127.0.0.1 accepts connections.
pub fn wait_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A `sluice` process whose stderr goes to a log file; killed on drop.
///
/// Every value in the secrets directory it was given is registered ([`secrets::register_dir`]), and
/// once the process has ended — [`kill_hard`](Self::kill_hard), [`terminate`](Self::terminate) or
/// drop — its whole log is scanned for every registered secret; a hit fails the test, naming the
/// log file and the secret's label. (A test that is already failing gets the finding on stderr
/// instead, as a second panic would abort the run.)
pub struct SluiceProcess {
    child: Child,
    log: PathBuf,
    secrets_dir: PathBuf,
    scanned: bool,
}

impl SluiceProcess {
    /// Starts `sluice ARGS…`, logging to `log`.
    pub fn start(args: &[&str], log: PathBuf, secrets_dir: &Path) -> Result<Self> {
        Self::start_with_env(args, log, secrets_dir, &[])
    }

    /// Starts `sluice ARGS…` like [`start`](Self::start), with `env` added to its environment.
    pub fn start_with_env(
        args: &[&str],
        log: PathBuf,
        secrets_dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        secrets::register_dir(secrets_dir);
        let file = std::fs::File::create(&log)?;
        let child = Command::new(sluice_bin()?)
            .args(args)
            .env("SLUICE_SECRETS_DIR", secrets_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()?;
        Ok(Self {
            child,
            log,
            secrets_dir: secrets_dir.to_owned(),
            scanned: false,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its JSON log lines so far.
    pub fn log_lines(&self) -> Vec<Value> {
        log_lines(&self.log_text())
    }

    /// `kill -9`: no chance to drain. Then scans its log for secrets.
    pub fn kill_hard(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.scan_log()
    }

    /// Scans the whole log for registered secrets (the ones of its secrets directory read again,
    /// in case the test wrote more after the start); `Err` names the log and each secret's label.
    /// `terminate`, `kill_hard` and drop call it after the process ended; drop scans again unless
    /// an earlier scan passed (so a caller ignoring the `Err` still fails).
    pub fn scan_log(&mut self) -> Result<()> {
        secrets::register_dir(&self.secrets_dir);
        let text = std::fs::read_to_string(&self.log)
            .with_context(|| format!("failed to read the log {}", self.log.display()))?;
        secrets::check(&format!("the process log {}", self.log.display()), &text)
            .map_err(anyhow::Error::msg)?;
        self.scanned = true;
        Ok(())
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(mut self) -> Result<Option<i32>> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.scan_log()?;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "sluice did not exit within 30s of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `GET http://127.0.0.1:{port}/health` answers 200.
    pub async fn wait_healthy(&self, port: u16) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/health")).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "sluice did not listen on {port} within 30s; log:\n{}",
            self.log_text()
        )
    }

    /// Waits until the process logs a line with `message`.
    pub async fn wait_logged(&self, message: &str, within: Duration) -> Result<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(l) = self.log_lines().into_iter().find(|l| l["message"] == message) {
                return Ok(l);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "no log line {message:?} within {within:?}; log:\n{}",
            self.log_text()
        )
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.scanned {
            return;
        }
        if let Err(e) = self.scan_log() {
            if std::thread::panicking() {
                // Panicking again while unwinding would abort the whole test binary.
                eprintln!("{e:#}");
            } else {
                panic!("{e:#}");
            }
        }
    }
}

/// The JSON log lines of a `--log-format json` log.
pub fn log_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// One request the sink received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request path.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its JSON body (`Null` when not JSON).
    pub body: Value,
    /// Whether the sink held its answer back (see [`Sink::hold`]): the sender saw no answer
    /// before the sink was released, so whatever it does after an answer (ack) had not happened.
    pub held: bool,
}

impl Received {
    /// The `Idempotency-Key` header; an error when it is missing, not text or empty, so a
    /// trigger that sends no key (or an empty one) fails the test instead of passing as `""`.
    pub fn idempotency_key(&self) -> Result<String> {
        let value = self.headers.get("idempotency-key").with_context(|| {
            format!(
                "a request to {} without Idempotency-Key: {:?}",
                self.path, self.body
            )
        })?;
        let key = value
            .to_str()
            .with_context(|| format!("a request to {} with a non-text Idempotency-Key", self.path))?;
        if key.is_empty() {
            bail!(
                "a request to {} with an empty Idempotency-Key: {:?}",
                self.path,
                self.body
            );
        }
        Ok(key.to_owned())
    }
}

/// The arrivals of a fault test, per event: the idempotency key of every arrival of it, in order.
/// Built by [`Arrivals::of`]; [`Arrivals::check`] holds them to the delivery contract.
#[derive(Clone, Debug)]
pub struct Arrivals<K> {
    /// Event → the key of each of its arrivals (more than one: repeats).
    pub by_event: BTreeMap<K, Vec<String>>,
}

impl<K: Ord + Clone + Debug> Arrivals<K> {
    /// Groups `received` by the event each request names (`event_of`, `None` for a request that
    /// names none, which fails: nothing may arrive that no one sent). Every request must carry a
    /// non-empty idempotency key.
    pub fn of(received: &[Received], event_of: impl Fn(&Received) -> Option<K>) -> Result<Self> {
        let mut by_event: BTreeMap<K, Vec<String>> = BTreeMap::new();
        for r in received {
            let event = event_of(r)
                .with_context(|| format!("a request to {} names no sent event: {}", r.path, r.body))?;
            by_event.entry(event).or_default().push(r.idempotency_key()?);
        }
        Ok(Self { by_event })
    }

    /// How many arrivals there were in all.
    pub fn total(&self) -> usize {
        self.by_event.values().map(Vec::len).sum()
    }

    /// The events that arrived more than once (repeats after a redelivery).
    pub fn repeated(&self) -> BTreeSet<K> {
        self.by_event
            .iter()
            .filter(|(_, keys)| keys.len() > 1)
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// The delivery contract against `sent`: every sent event arrived, nothing arrived that was
    /// not sent, all arrivals of one event carry the same key (a repeat is recognisable as one),
    /// and no two events share a key (a constant key would make the target drop real events).
    pub fn check(&self, sent: &BTreeSet<K>) -> Result<()> {
        self.check_between(sent, sent)
    }

    /// [`check`](Self::check) for a test where some sent events may or may not arrive (a sender
    /// got no 2xx and did not retry; a pub/sub broker kept nothing while the source was away):
    /// every event of `required` arrived, and nothing arrived that is not in `sent`.
    pub fn check_between(&self, required: &BTreeSet<K>, sent: &BTreeSet<K>) -> Result<()> {
        let missing: Vec<&K> = required
            .iter()
            .filter(|e| !self.by_event.contains_key(e))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} of {} required events never arrived, e.g. {:?}",
                missing.len(),
                required.len(),
                &missing[..missing.len().min(10)]
            );
        }
        let unexpected: Vec<&K> = self.by_event.keys().filter(|e| !sent.contains(e)).collect();
        if !unexpected.is_empty() {
            bail!("events arrived that were not sent: {unexpected:?}");
        }
        let mut owner: BTreeMap<&str, &K> = BTreeMap::new();
        for (event, keys) in &self.by_event {
            let distinct: BTreeSet<&String> = keys.iter().collect();
            if distinct.len() != 1 {
                bail!("event {event:?} arrived under several idempotency keys: {distinct:?}");
            }
            if let Some(other) = owner.insert(keys[0].as_str(), event) {
                bail!(
                    "events {other:?} and {event:?} arrived under the same idempotency key {}",
                    keys[0]
                );
            }
        }
        Ok(())
    }
}

/// An HTTP server on a free loopback port answering 200 to every POST and recording it.
#[derive(Clone)]
pub struct Sink {
    /// Its port.
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// While true, requests are recorded at once but answered only once it turns false.
    hold: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Sink {
    /// Starts the sink on a free loopback port.
    pub async fn start() -> Result<Self> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts the sink on `addr` (`ip:0` for a free port). Its server task runs on the calling
    /// runtime, so on a [`NetnsRuntime`] it listens inside that network namespace.
    pub async fn start_on(addr: &str) -> Result<Self> {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let hold = Arc::new(tokio::sync::watch::Sender::new(false));
        let (store, gate) = (received.clone(), hold.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let (store, gate) = (store.clone(), gate.clone());
                async move {
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let held = *gate.borrow();
                    if let Ok(mut v) = store.lock() {
                        v.push(Received {
                            path: uri.path().to_string(),
                            headers,
                            body,
                            held,
                        });
                    }
                    if held {
                        // Recorded (the target "did it"), answered only on release: a sender
                        // killed meanwhile never learns it succeeded.
                        let mut rx = gate.subscribe();
                        let _ = rx.wait_for(|h| !*h).await;
                    }
                    "ok"
                }
            },
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { port, received, hold })
    }

    /// From now on, record each request at once but hold its answer until [`release`](Self::release).
    pub fn hold(&self) {
        self.hold.send_replace(true);
    }

    /// Answers the held requests and every later one at once.
    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` requests arrived; returns how many did.
    pub async fn wait_for(&self, n: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received().len();
            if got >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `done` holds for what was received; fails naming `what` after `within`.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Result<Vec<Received>> {
        wait_for(within, || {
            let got = self.received();
            let result = done(&got).then_some(got);
            async move { Ok(result) }
        })
        .await
        .with_context(|| format!("{what}: {} requests received", self.received().len()))
    }

    /// After an end condition held (every event arrived and the bus has nothing left to deliver),
    /// waits `quiet` and fails if anything arrived meanwhile; returns what was received.
    pub async fn assert_quiet(&self, quiet: Duration) -> Result<Vec<Received>> {
        let before = self.received().len();
        tokio::time::sleep(quiet).await;
        let after = self.received();
        if after.len() != before {
            bail!(
                "{} requests arrived after the end condition held: {:?}",
                after.len() - before,
                after[before..].iter().map(|r| &r.body).collect::<Vec<_>>()
            );
        }
        Ok(after)
    }
}

/// How many durable consumers the JetStream server at `url` has in all, once none of them has a
/// message pending or delivered but not acknowledged; `None` while one has. Key-value buckets'
/// streams (the sensor's trigger state) are skipped: their watchers are not deliveries.
pub async fn bus_settled(url: &str) -> Result<Option<usize>> {
    let js = async_nats::jetstream::new(async_nats::connect(url).await?);
    let mut streams = js.streams();
    let mut consumers_seen = 0;
    while let Some(info) = streams.try_next().await? {
        if info.config.name.starts_with("KV_") {
            continue;
        }
        let stream = js.get_stream(&info.config.name).await?;
        let mut consumers = stream.consumers();
        while let Some(c) = consumers.try_next().await? {
            if c.num_pending > 0 || c.num_ack_pending > 0 {
                return Ok(None);
            }
            consumers_seen += 1;
        }
    }
    Ok((consumers_seen > 0).then_some(consumers_seen))
}

/// A nats-server with JetStream of the test's own, on a free port with its own store; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    store: tempfile::TempDir,
}

/// The nats-server binary: `$NATS_SERVER_BIN` (printed by `scripts/services.sh start nats`), else the
/// cached install.
pub fn nats_server_bin() -> Result<PathBuf> {
    let p = std::env::var("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/cache/sluice/nats-2.15.1/bin/nats-server"));
    if !p.exists() {
        bail!(
            "nats-server not found at {}: run `scripts/services.sh start nats` (scripts/test does)",
            p.display()
        );
    }
    Ok(p)
}

impl NatsServer {
    /// Starts a server on a free port.
    pub fn start() -> Result<Self> {
        let port = free_port()?;
        let store = tempfile::tempdir()?;
        let mut server = Self {
            child: None,
            port,
            store,
        };
        server.restart()?;
        Ok(server)
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let child = Command::new(nats_server_bin()?)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start nats-server")?;
        self.child = Some(child);
        if !wait_port(self.port, Duration::from_secs(20)) {
            bail!("nats-server did not listen on {} within 20s", self.port);
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A single-threaded tokio runtime whose thread lives in another network namespace (one that the
/// test run created, such as the test node's `NODE_NETNS`). Every socket a task on it opens —
/// listeners, client connections — is in that namespace, so a test can serve pods at an address
/// inside it and reach Services' cluster IPs, while the rest of the test stays on the host.
/// Stopped on drop.
pub struct NetnsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NetnsRuntime {
    /// Starts the runtime in the namespace `/var/run/netns/<netns>` (`ip netns` names; needs root).
    pub fn enter(netns: &str) -> Result<Self> {
        let path = format!("/var/run/netns/{netns}");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{netns}"))
            .spawn(move || {
                let runtime = (|| -> Result<tokio::runtime::Runtime> {
                    let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
                    // Only this thread moves; threads it starts later (the runtime's blocking pool)
                    // inherit the namespace.
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("enter the network namespace {path}"))?;
                    Ok(tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?)
                })();
                match runtime {
                    Ok(runtime) => {
                        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                        if ready_tx.send(Ok((runtime.handle().clone(), stop_tx))).is_ok() {
                            runtime.block_on(async {
                                let _ = stop_rx.await;
                            });
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let (handle, stop) = ready_rx
            .recv()
            .context("the network namespace thread ended before it started")??;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `task` on the namespace's thread; await the handle from any runtime.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }
}

impl Drop for NetnsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: u64, key: Option<&str>) -> Received {
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            headers.insert(
                "idempotency-key",
                key.parse().expect("a test key is a header value"),
            );
        }
        Received {
            path: "/hook".into(),
            headers,
            body: serde_json::json!({ "n": n }),
            held: false,
        }
    }

    fn n_of(r: &Received) -> Option<u64> {
        r.body["n"].as_u64()
    }

    fn sent(ns: &[u64]) -> BTreeSet<u64> {
        ns.iter().copied().collect()
    }

    #[test]
    fn repeats_under_one_key_per_event_pass() -> Result<()> {
        let got = [
            request(1, Some("k1")),
            request(2, Some("k2")),
            request(1, Some("k1")),
        ];
        let arrivals = Arrivals::of(&got, n_of)?;
        arrivals.check(&sent(&[1, 2]))?;
        assert_eq!(arrivals.repeated(), sent(&[1]));
        assert_eq!(arrivals.total(), 3);
        Ok(())
    }

    #[test]
    fn a_missing_or_empty_key_fails() {
        assert!(request(1, None).idempotency_key().is_err());
        assert!(request(1, Some("")).idempotency_key().is_err());
        assert!(Arrivals::of(&[request(1, None)], n_of).is_err());
    }

    #[test]
    fn a_constant_key_a_changed_key_a_lost_or_an_unsent_event_fails() -> Result<()> {
        let constant = Arrivals::of(&[request(1, Some("k")), request(2, Some("k"))], n_of)?;
        assert!(constant.check(&sent(&[1, 2])).is_err());
        let changed = Arrivals::of(&[request(1, Some("a")), request(1, Some("b"))], n_of)?;
        assert!(changed.check(&sent(&[1])).is_err());
        let lost = Arrivals::of(&[request(1, Some("k1"))], n_of)?;
        assert!(lost.check(&sent(&[1, 2])).is_err());
        assert!(lost.check_between(&sent(&[1]), &sent(&[1, 2])).is_ok());
        let unsent = Arrivals::of(&[request(1, Some("k1")), request(3, Some("k3"))], n_of)?;
        assert!(unsent.check(&sent(&[1])).is_err());
        Ok(())
    }
}
