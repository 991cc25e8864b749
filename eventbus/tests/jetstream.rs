//! The JetStream backend against a real nats-server. Each test starts its own server on a free
//! loopback port with a fresh store directory, and kills it when done, so tests run in parallel and
//! never see each other's streams. The server binary is `$NATS_SERVER_BIN`, else the one
//! `scripts/services.sh start nats` installs.
//!
//! `RUST_LOG=sluice_eventbus=debug cargo test -p sluice-eventbus --test jetstream` shows the bus's
//! logs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use futures::StreamExt as _;
use serde_json::json;
use sluice_eventbus::jetstream::names;
use sluice_eventbus::{
    Bus, Deliveries, Delivery, Event, EventBuilder, JetStreamBus, JetStreamConfig, PublishError, Subject,
    SubjectFilter, SubscribeError, SubscribeOptions,
};

const DEFAULT_NATS_SERVER_BIN: &str = "/var/cache/sluice/nats-2.15.1/bin/nats-server";
/// Longest wait for something that should happen.
const EVENTUALLY: Duration = Duration::from_secs(30);

/// A nats-server of one test, killed on drop.
struct NatsServer {
    bin: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    fn start() -> anyhow::Result<Self> {
        let bin = std::env::var_os("NATS_SERVER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_NATS_SERVER_BIN));
        if !bin.exists() {
            bail!(
                "nats-server not found at {}: run `scripts/services.sh start nats` (it installs it) or set NATS_SERVER_BIN",
                bin.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self {
            bin,
            port,
            store: tempfile::tempdir()?,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.store.path().join("server.log"))?;
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path().join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + EVENTUALLY;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            ensure!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Starts the server again on the same port with an empty store, as a NATS pod without a
    /// persistent volume comes back: every stream and durable is gone.
    fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.kill();
        std::fs::remove_dir_all(self.store.path().join("data"))?;
        self.spawn()
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn config(&self, stream: &str) -> JetStreamConfig {
        let mut config = JetStreamConfig::new(self.url()).with_stream(stream);
        config.publish_timeout = Duration::from_secs(2);
        config.request_timeout = Duration::from_secs(2);
        config
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Connects, retrying while the fresh server's JetStream gets ready.
async fn connect(config: JetStreamConfig) -> anyhow::Result<JetStreamBus> {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        match JetStreamBus::connect(config.clone()).await {
            Ok(bus) => return Ok(bus),
            Err(err) if Instant::now() < deadline && err.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

fn subject() -> Subject {
    Subject::new("webhook", "example")
}

fn filter_of(subject: &Subject) -> SubjectFilter {
    SubjectFilter {
        event_source_name: subject.event_source_name.clone(),
        event_name: subject.event_name.clone(),
    }
}

fn options(ack_wait: Duration) -> SubscribeOptions {
    SubscribeOptions {
        ack_wait,
        max_deliver: 0,
        max_ack_pending: 256,
        deliver_all: true,
    }
}

fn event(id: &str) -> Event {
    EventBuilder::new("webhook", "example", "webhook")
        .id(id)
        .data_json(json!({"body": {"id": id, "n": 1.5, "s": "ü"}, "header": {"X-A": ["1"]}}))
        .build()
        .expect("a test event with an id and JSON data builds")
}

async fn next(deliveries: &mut Deliveries) -> anyhow::Result<Delivery> {
    tokio::time::timeout(EVENTUALLY, deliveries.next())
        .await
        .context("no delivery in time")?
        .context("the deliveries ended")
}

/// The end of a test: waits until durable `durable` of `stream` has nothing pending and nothing
/// delivered but unacknowledged (every delivery settled on the server), then fails if a delivery
/// arrives within a quiet second. A later redelivery could only come from an unsettled delivery,
/// so the quiet second follows an end condition rather than standing in for one. Returns the
/// consumer's state.
async fn assert_settled(
    bus: &JetStreamBus,
    stream: &str,
    durable: &str,
    deliveries: &mut Deliveries,
) -> anyhow::Result<async_nats::jetstream::consumer::Info> {
    let stream = bus.context().get_stream(stream).await?;
    let durable = names::durable_name(durable);
    let deadline = Instant::now() + EVENTUALLY;
    let info = loop {
        let info = stream.consumer_info(&durable).await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break info;
        }
        ensure!(
            Instant::now() < deadline,
            "durable {durable} did not settle: {} pending, {} unacknowledged",
            info.num_pending,
            info.num_ack_pending
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_quiet(deliveries, Duration::from_secs(1)).await?;
    Ok(info)
}

/// Fails if a delivery arrives within `quiet`.
async fn assert_quiet(deliveries: &mut Deliveries, quiet: Duration) -> anyhow::Result<()> {
    if let Ok(delivery) = tokio::time::timeout(quiet, deliveries.next()).await {
        bail!("expected nothing, got {delivery:?}");
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn publish_subscribe_ack_round_trips() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("roundtrip")).await?;
    let mut deliveries = bus
        .subscribe(
            "roundtrip-d",
            filter_of(&subject()),
            options(Duration::from_secs(1)),
        )
        .await?;

    let sent = event("e-1");
    let ack = bus.publish(&subject(), &sent).await?;
    assert_eq!((ack.sequence, ack.duplicate), (1, false));

    let delivery = next(&mut deliveries).await?;
    assert_eq!(delivery.event, sent);
    assert_eq!(delivery.subject, subject());
    assert_eq!(delivery.attempt, 1);
    delivery.ack().await?;
    // Acked: settled on the server, and nothing comes back.
    assert_settled(&bus, "roundtrip", "roundtrip-d", &mut deliveries).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn names_with_subject_characters_are_encoded_and_recovered() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("names")).await?;
    let odd = Subject::new("my.es", "push *> now");
    let plain = Subject::new("my", "es");
    let mut odd_deliveries = bus
        .subscribe(
            "names.odd durable",
            filter_of(&odd),
            options(Duration::from_secs(5)),
        )
        .await?;
    let mut plain_deliveries = bus
        .subscribe("names-plain", filter_of(&plain), options(Duration::from_secs(5)))
        .await?;

    bus.publish(&odd, &event("odd")).await?;
    bus.publish(&plain, &event("plain")).await?;

    let delivery = next(&mut odd_deliveries).await?;
    assert_eq!((delivery.event.id(), &delivery.subject), ("odd", &odd));
    delivery.ack().await?;
    let delivery = next(&mut plain_deliveries).await?;
    assert_eq!((delivery.event.id(), &delivery.subject), ("plain", &plain));
    delivery.ack().await?;

    // On the wire: one token per name, and the subject decodes back.
    let stream = bus.context().get_stream("names").await?;
    let stored = stream.get_raw_message(1).await?;
    assert_eq!(stored.subject.as_str(), "names.my%2Ees.push%20%2A%3E%20now");
    assert_eq!(names::decode_subject("names", &stored.subject), Some(odd));
    assert_eq!(
        stored.headers.get("Nats-Msg-Id").map(|value| value.as_str()),
        Some("odd")
    );
    assert_eq!(Event::from_json(&stored.payload)?.id(), "odd");
    // The durable's name is sanitized deterministically.
    let info = stream
        .consumer_info(names::durable_name("names.odd durable"))
        .await?;
    assert_eq!(info.config.filter_subject, "names.my%2Ees.push%20%2A%3E%20now");
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn the_same_event_id_is_stored_once() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("dedup")).await?;
    let first = bus.publish(&subject(), &event("same")).await?;
    let second = bus.publish(&subject(), &event("same")).await?;
    assert_eq!((first.sequence, first.duplicate), (1, false));
    assert_eq!((second.sequence, second.duplicate), (1, true));
    let other = bus.publish(&subject(), &event("other")).await?;
    assert_eq!((other.sequence, other.duplicate), (2, false));

    let mut deliveries = bus
        .subscribe("dedup-d", filter_of(&subject()), options(Duration::from_secs(5)))
        .await?;
    let held = [next(&mut deliveries).await?, next(&mut deliveries).await?];
    let ids = held.each_ref().map(|d| d.event.id().to_owned());
    assert_eq!(ids, ["same", "other"]);
    for d in held {
        d.ack().await?;
    }
    assert_settled(&bus, "dedup", "dedup-d", &mut deliveries).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn two_durables_each_get_every_event() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("fanout")).await?;
    let mut a = bus
        .subscribe("fanout-a", filter_of(&subject()), options(Duration::from_secs(5)))
        .await?;
    let mut b = bus
        .subscribe("fanout-b", filter_of(&subject()), options(Duration::from_secs(5)))
        .await?;
    for id in ["1", "2", "3"] {
        bus.publish(&subject(), &event(id)).await?;
    }
    for (durable, deliveries) in [("fanout-a", &mut a), ("fanout-b", &mut b)] {
        let mut ids = Vec::new();
        for _ in 0..3 {
            let delivery = next(deliveries).await?;
            ids.push(delivery.event.id().to_owned());
            delivery.ack().await?;
        }
        assert_eq!(ids, ["1", "2", "3"]);
        assert_settled(&bus, "fanout", durable, deliveries).await?;
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn two_subscribers_of_one_durable_share_its_events() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let mut config = server.config("share");
    // One message per pull, so the server alternates between the two waiting subscribers.
    config.pull_batch = 1;
    let bus = connect(config).await?;
    let mut a = bus
        .subscribe("share-d", filter_of(&subject()), options(Duration::from_secs(30)))
        .await?;
    let mut b = bus
        .subscribe("share-d", filter_of(&subject()), options(Duration::from_secs(30)))
        .await?;
    const N: usize = 40;
    for n in 0..N {
        bus.publish(&subject(), &event(&format!("e-{n}"))).await?;
    }
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let (mut from_a, mut from_b) = (0, 0);
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while from_a + from_b < N {
        let delivery = tokio::select! {
            Some(d) = a.next() => { from_a += 1; d }
            Some(d) = b.next() => { from_b += 1; d }
            () = tokio::time::sleep_until(deadline) => bail!("only {} of {N} events arrived", from_a + from_b),
        };
        *got.entry(delivery.event.id().to_owned()).or_default() += 1;
        delivery.ack().await?;
    }
    let expected: BTreeMap<String, usize> = (0..N).map(|n| (format!("e-{n}"), 1)).collect();
    assert_eq!(got, expected, "each event exactly once in total");
    assert!(from_a > 0 && from_b > 0, "a got {from_a}, b got {from_b}");
    println!("shared durable: a got {from_a}, b got {from_b}");
    assert_settled(&bus, "share", "share-d", &mut a).await?;
    assert_quiet(&mut b, Duration::from_secs(1)).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn nak_redelivers_with_the_next_attempt() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("nak")).await?;
    let mut deliveries = bus
        .subscribe("nak-d", filter_of(&subject()), options(Duration::from_secs(30)))
        .await?;
    bus.publish(&subject(), &event("n")).await?;
    let first = next(&mut deliveries).await?;
    assert_eq!((first.event.id(), first.attempt), ("n", 1));
    first.nak(Duration::from_millis(200)).await?;
    let second = next(&mut deliveries).await?;
    assert_eq!((second.event.id(), second.attempt), ("n", 2));
    second.ack().await?;
    let info = assert_settled(&bus, "nak", "nak-d", &mut deliveries).await?;
    // The redelivery, as the server counts it: two deliveries of one message.
    assert_eq!(
        (info.delivered.consumer_sequence, info.delivered.stream_sequence),
        (2, 1)
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn an_unsettled_delivery_comes_back_after_ack_wait() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("ackwait")).await?;
    let mut deliveries = bus
        .subscribe(
            "ackwait-d",
            filter_of(&subject()),
            options(Duration::from_secs(1)),
        )
        .await?;
    bus.publish(&subject(), &event("w")).await?;
    let first = next(&mut deliveries).await?;
    assert_eq!((first.event.id(), first.attempt), ("w", 1));
    drop(first);
    let second = next(&mut deliveries).await?;
    assert_eq!((second.event.id(), second.attempt), ("w", 2));
    second.ack().await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn a_termed_delivery_never_comes_back() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("term")).await?;
    let mut deliveries = bus
        .subscribe("term-d", filter_of(&subject()), options(Duration::from_secs(1)))
        .await?;
    bus.publish(&subject(), &event("t")).await?;
    let first = next(&mut deliveries).await?;
    assert_eq!(first.event.id(), "t");
    first.term().await?;
    bus.publish(&subject(), &event("after")).await?;
    let second = next(&mut deliveries).await?;
    assert_eq!((second.event.id(), second.attempt), ("after", 1));
    second.ack().await?;
    // `t` is settled on the server (terminated), so it cannot come back.
    let info = assert_settled(&bus, "term", "term-d", &mut deliveries).await?;
    assert_eq!(info.ack_floor.stream_sequence, 2);
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn a_poison_payload_is_terminated_and_the_stream_goes_on() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("poison")).await?;
    let mut deliveries = bus
        .subscribe("poison-d", filter_of(&subject()), options(Duration::from_secs(1)))
        .await?;
    // Raw bytes on the subject, bypassing the bus.
    bus.context()
        .publish(bus.nats_subject(&subject()), "not an event".into())
        .await?
        .await?;
    bus.publish(&subject(), &event("good")).await?;

    let delivery = next(&mut deliveries).await?;
    assert_eq!((delivery.event.id(), delivery.attempt), ("good", 1));
    delivery.ack().await?;
    assert_settled(&bus, "poison", "poison-d", &mut deliveries).await?;
    // Both settled on the server: the poison one by term, the good one by ack.
    let info = bus
        .context()
        .get_stream("poison")
        .await?
        .consumer_info("poison-d")
        .await?;
    assert_eq!(info.ack_floor.stream_sequence, 2);
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_redelivered, 0);
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn publishing_to_a_dead_server_fails_within_the_timeout() -> anyhow::Result<()> {
    init_logs();
    let mut server = NatsServer::start()?;
    let config = server.config("dead");
    let timeout = config.publish_timeout;
    let bus = connect(config).await?;
    bus.publish(&subject(), &event("before")).await?;
    server.kill();

    let started = Instant::now();
    let result = bus.publish(&subject(), &event("after")).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(PublishError::Timeout(_) | PublishError::Unavailable)),
        "expected a timeout or unavailable, got {result:?}"
    );
    // A bound with a generous margin (the machine may be loaded): answered within a small
    // multiple of the publish timeout, not left waiting on the dead server.
    assert!(
        took <= timeout * 3,
        "took {took:?} with a publish timeout of {timeout:?}"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn a_subscription_survives_a_server_restart() -> anyhow::Result<()> {
    init_logs();
    let mut server = NatsServer::start()?;
    let bus = connect(server.config("restart")).await?;
    let mut deliveries = bus
        .subscribe(
            "restart-d",
            filter_of(&subject()),
            options(Duration::from_secs(2)),
        )
        .await?;
    bus.publish(&subject(), &event("before")).await?;
    let held = next(&mut deliveries).await?;
    assert_eq!((held.event.id(), held.attempt), ("before", 1));
    // Never settled: the server must redeliver it after the restart.
    drop(held);

    server.restart()?;
    // The client reconnects by itself; publish as soon as the server takes events again.
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        match bus.publish(&subject(), &event("after")).await {
            Ok(ack) => {
                assert_eq!(ack.sequence, 2);
                break;
            }
            Err(err) if Instant::now() < deadline => {
                println!("publish after restart not yet accepted: {err}");
            }
            Err(err) => return Err(err.into()),
        }
    }

    let mut got = BTreeMap::new();
    while got.len() < 2 {
        let delivery = tokio::time::timeout(Duration::from_secs(60), deliveries.next())
            .await
            .context("no delivery after the restart")?
            .context("the deliveries ended")?;
        got.insert(delivery.event.id().to_owned(), delivery.attempt);
        delivery.ack().await?;
    }
    assert_eq!(got.get("after"), Some(&1));
    // Redelivered. Its attempt may start again at 1: the server writes a consumer's delivery
    // state lazily, and a killed server may not have written this delivery yet.
    assert!(got.contains_key("before"), "{got:?}");
    assert_settled(&bus, "restart", "restart-d", &mut deliveries).await?;
    Ok(())
}

/// A server that comes back without its store (a NATS pod on emptyDir, an EventBus scaled from
/// one replica to three) has no stream: the publisher makes it again, and the subscriber's durable
/// is made again reading the new stream from its start (its old ack floor means nothing there),
/// so an event published after the loss arrives.
#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn the_stream_is_made_again_after_a_server_comes_back_empty() -> anyhow::Result<()> {
    init_logs();
    let mut server = NatsServer::start()?;
    let bus = connect(server.config("emptied")).await?;
    let mut deliveries = bus
        .subscribe(
            "emptied-d",
            filter_of(&subject()),
            options(Duration::from_secs(2)),
        )
        .await?;
    for id in ["a", "b", "c"] {
        bus.publish(&subject(), &event(id)).await?;
        next(&mut deliveries).await?.ack().await?;
    }

    server.restart_empty()?;
    let deadline = Instant::now() + EVENTUALLY;
    let mut refused = 0;
    let ack = loop {
        match bus.publish(&subject(), &event("after")).await {
            Ok(ack) => break ack,
            Err(err) if Instant::now() < deadline => {
                refused += 1;
                println!("publish after the empty restart not yet accepted: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err.into()),
        }
    };
    assert_eq!(ack.sequence, 1, "a new stream (refused {refused} times first)");
    let delivery = tokio::time::timeout(Duration::from_secs(60), deliveries.next())
        .await
        .context("no delivery from the new stream")?
        .context("the deliveries ended")?;
    assert_eq!(delivery.event.id(), "after");
    delivery.ack().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn ten_thousand_concurrent_publishes_are_all_acked() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let mut config = server.config("many");
    config.publish_timeout = Duration::from_secs(30);
    let bus = connect(config).await?;
    const TASKS: usize = 8;
    const PER_TASK: usize = 1250;
    let events: Vec<Vec<Event>> = (0..TASKS)
        .map(|t| (0..PER_TASK).map(|n| event(&format!("{t}-{n}"))).collect())
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = events
        .into_iter()
        .map(|batch| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let subject = subject();
                futures::stream::iter(batch)
                    .map(|event| {
                        let (bus, subject) = (&bus, &subject);
                        async move { bus.publish(subject, &event).await }
                    })
                    .buffer_unordered(PER_TASK)
                    .collect::<Vec<_>>()
                    .await
            })
        })
        .collect();
    let mut sequences = BTreeSet::new();
    for task in tasks {
        for ack in task.await? {
            let ack = ack?;
            assert!(!ack.duplicate);
            sequences.insert(ack.sequence);
        }
    }
    let took = started.elapsed();
    let total = TASKS * PER_TASK;
    assert_eq!(sequences, (1..=total as u64).collect::<BTreeSet<_>>());
    let mut stream = bus.context().get_stream("many").await?;
    assert_eq!(stream.info().await?.state.messages, total as u64);
    println!(
        "{total} concurrent publishes from {TASKS} tasks acked in {took:?}: {:.0} events/s",
        total as f64 / took.as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn close_refuses_publishes_and_ends_subscriptions() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("close")).await?;
    let mut deliveries = bus
        .subscribe("close-d", filter_of(&subject()), options(Duration::from_secs(5)))
        .await?;
    bus.publish(&subject(), &event("last")).await?;
    let held = next(&mut deliveries).await?;

    bus.close().await;
    assert!(matches!(
        bus.publish(&subject(), &event("late")).await,
        Err(PublishError::Closed)
    ));
    assert!(matches!(
        bus.subscribe("close-e", filter_of(&subject()), options(Duration::from_secs(5)))
            .await,
        Err(SubscribeError::Closed)
    ));
    let end = tokio::time::timeout(Duration::from_secs(5), deliveries.next()).await?;
    assert!(end.is_none(), "expected the end, got {end:?}");
    // A delivery held across close can still be acked.
    held.ack().await?;
    bus.close().await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn an_existing_durable_keeps_its_filter_and_position() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("existing")).await?;
    let new_only = SubscribeOptions {
        deliver_all: false,
        ..options(Duration::from_secs(5))
    };
    bus.publish(&subject(), &event("old")).await?;
    let mut first = bus
        .subscribe("existing-d", filter_of(&subject()), new_only.clone())
        .await?;
    bus.publish(&subject(), &event("new")).await?;
    let delivery = next(&mut first).await?;
    assert_eq!(
        delivery.event.id(),
        "new",
        "deliver_all false skips stored events"
    );
    delivery.ack().await?;
    drop(first);

    // Joining later with deliver_all does not rewind the durable.
    let mut again = bus
        .subscribe(
            "existing-d",
            filter_of(&subject()),
            options(Duration::from_secs(5)),
        )
        .await?;
    assert_settled(&bus, "existing", "existing-d", &mut again).await?;

    let other = Subject::new("webhook", "other");
    match bus
        .subscribe("existing-d", filter_of(&other), options(Duration::from_secs(5)))
        .await
    {
        Err(SubscribeError::Backend(err)) => assert_eq!(
            err.to_string(),
            "failed to join durable `existing-d`: it filters `existing.webhook.example`, not `existing.webhook.other`"
        ),
        Ok(_) => bail!("joining with another filter must fail"),
        Err(err) => bail!("unexpected error {err:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn connect_errors_name_the_failed_action() -> anyhow::Result<()> {
    init_logs();
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut config = JetStreamConfig::new(format!("nats://alice:hunter2@127.0.0.1:{port}"));
    config.request_timeout = Duration::from_secs(1);
    let err = JetStreamBus::connect(config.clone())
        .await
        .err()
        .context("nothing listens there")?;
    assert_eq!(
        err.to_string(),
        format!("failed to connect to the NATS server nats://***@127.0.0.1:{port}")
    );
    assert!(!format!("{err:?}").contains("hunter2"));
    assert!(err.is_retryable());

    config.stream = "a.b".into();
    let err = JetStreamBus::connect(config)
        .await
        .err()
        .context("invalid stream name")?;
    assert_eq!(
        err.to_string(),
        "failed to connect: `stream` may contain only ASCII letters, digits, `-` and `_`"
    );
    assert!(!err.is_retryable());
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn an_ack_through_an_outdated_delivery_settles_the_event() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("late")).await?;
    let mut deliveries = bus
        .subscribe("late-d", filter_of(&subject()), options(Duration::from_secs(1)))
        .await?;
    bus.publish(&subject(), &event("l")).await?;
    let first = next(&mut deliveries).await?;
    let second = next(&mut deliveries).await?;
    assert_eq!((second.event.id(), second.attempt), ("l", 2));
    // As on the embedded bus: acks go by stream sequence, and the server confirms even a late one.
    first.ack().await?;
    second.ack().await?;
    assert_settled(&bus, "late", "late-d", &mut deliveries).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn max_deliver_ends_redelivery() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("maxdeliver")).await?;
    let mut deliveries = bus
        .subscribe(
            "maxdeliver-d",
            filter_of(&subject()),
            SubscribeOptions {
                max_deliver: 2,
                ..options(Duration::from_secs(1))
            },
        )
        .await?;
    bus.publish(&subject(), &event("m")).await?;
    for attempt in 1..=2 {
        let delivery = next(&mut deliveries).await?;
        assert_eq!((delivery.event.id(), delivery.attempt), ("m", attempt));
        delivery.nak(Duration::ZERO).await?;
    }
    // The server gave up on it (and the subscription logged its advisory).
    let info = assert_settled(&bus, "maxdeliver", "maxdeliver-d", &mut deliveries).await?;
    assert_eq!(
        info.delivered.consumer_sequence, 2,
        "delivered twice, then never again"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn publishes_beyond_the_in_flight_bound_wait_within_the_timeout() -> anyhow::Result<()> {
    init_logs();
    let mut server = NatsServer::start()?;
    let mut config = server.config("bound");
    config.max_publishes_in_flight = 2;
    let timeout = config.publish_timeout;
    let bus = connect(config).await?;
    let subject = subject();
    let events: Vec<Event> = (0..100).map(|n| event(&format!("b-{n}"))).collect();
    // 100 callers, 2 slots: the others wait for a slot instead of failing.
    let acks = futures::future::join_all(events.iter().map(|event| bus.publish(&subject, event))).await;
    let sequences = acks
        .into_iter()
        .map(|ack| ack.map(|ack| ack.sequence))
        .collect::<Result<BTreeSet<_>, _>>()?;
    assert_eq!(sequences, (1..=100).collect::<BTreeSet<u64>>());

    // With the server gone, every caller — holding a slot or waiting for one — has its answer
    // within one publish timeout, and none is Ok.
    server.kill();
    let started = Instant::now();
    let late: Vec<Event> = (0..5).map(|n| event(&format!("late-{n}"))).collect();
    let results = futures::future::join_all(late.iter().map(|event| bus.publish(&subject, event))).await;
    let took = started.elapsed();
    for result in &results {
        assert!(
            matches!(result, Err(PublishError::Timeout(_) | PublishError::Unavailable)),
            "{result:?}"
        );
    }
    // A bound with a generous margin (the machine may be loaded): the callers are answered
    // within a small multiple of the publish timeout, not left waiting on the dead server.
    assert!(
        took <= timeout * 3,
        "took {took:?} with a publish timeout of {timeout:?}"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn a_deleted_durable_is_recreated_and_the_subscription_goes_on() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("deleted")).await?;
    let mut deliveries = bus
        .subscribe(
            "deleted-d",
            filter_of(&subject()),
            SubscribeOptions {
                deliver_all: false,
                ..options(Duration::from_secs(5))
            },
        )
        .await?;
    bus.publish(&subject(), &event("one")).await?;
    let delivery = next(&mut deliveries).await?;
    assert_eq!(delivery.event.id(), "one");
    delivery.ack().await?;

    // Someone deletes the durable, and an event is published before anyone notices: the pull
    // fails, the subscription creates the durable again where it was, and nothing is skipped.
    let stream = bus.context().get_stream("deleted").await?;
    stream.delete_consumer("deleted-d").await?;
    bus.publish(&subject(), &event("two")).await?;
    let mut got = Vec::new();
    while !got.contains(&"two".to_owned()) {
        let delivery = next(&mut deliveries).await?;
        got.push(delivery.event.id().to_owned());
        delivery.ack().await?;
    }
    // `one` was acked after the subscription started, so it may come again; nothing else does.
    assert!(got == ["two"] || got == ["one", "two"], "{got:?}");
    let info = stream.consumer_info("deleted-d").await?;
    assert_eq!(info.config.filter_subject, "deleted.webhook.example");
    assert_settled(&bus, "deleted", "deleted-d", &mut deliveries).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn a_subscription_survives_a_long_outage() -> anyhow::Result<()> {
    init_logs();
    let mut server = NatsServer::start()?;
    let bus = connect(server.config("outage")).await?;
    let mut deliveries = bus
        .subscribe("outage-d", filter_of(&subject()), options(Duration::from_secs(5)))
        .await?;
    bus.publish(&subject(), &event("before")).await?;
    next(&mut deliveries).await?.ack().await?;

    // Down long enough for the pull's heartbeats to be missed (2 × 5 s): the subscription drops
    // the pull and keeps trying to start a new one, while the subscriber keeps polling.
    server.kill();
    assert_quiet(&mut deliveries, Duration::from_secs(12)).await?;
    server.restart()?;
    let deadline = Instant::now() + EVENTUALLY;
    while let Err(err) = bus.publish(&subject(), &event("after")).await {
        ensure!(
            Instant::now() < deadline,
            "publishing after the outage failed: {err}"
        );
    }
    let mut got = Vec::new();
    while !got.iter().any(|(id, _)| id == "after") {
        let delivery = next(&mut deliveries).await?;
        got.push((delivery.event.id().to_owned(), delivery.attempt));
        delivery.ack().await?;
    }
    // A killed server may come back without the last acks it confirmed (it writes consumer state
    // lazily), so `before` may be delivered again: at least once, never lost.
    assert!(
        got == [("after".to_owned(), 1)]
            || got.len() == 2 && got[0].0 == "before" && got[1] == ("after".to_owned(), 1),
        "{got:?}"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn progress_keeps_a_delivery_from_coming_back() -> anyhow::Result<()> {
    init_logs();
    let server = NatsServer::start()?;
    let bus = connect(server.config("progress")).await?;
    let mut deliveries = bus
        .subscribe(
            "progress-d",
            filter_of(&subject()),
            options(Duration::from_secs(1)),
        )
        .await?;
    bus.publish(&subject(), &event("p")).await?;
    let delivery = next(&mut deliveries).await?;
    assert_eq!((delivery.event.id(), delivery.attempt), ("p", 1));
    // Three ack waits of work, reporting progress twice per ack wait: no redelivery meanwhile.
    for _ in 0..6 {
        delivery.progress().await?;
        assert_quiet(&mut deliveries, Duration::from_millis(500)).await?;
    }
    delivery.ack().await?;
    let info = assert_settled(&bus, "progress", "progress-d", &mut deliveries).await?;
    // However slow this machine was, the server counts it: one delivery, never redelivered.
    assert_eq!(info.delivered.consumer_sequence, 1, "{info:?}");
    Ok(())
}
