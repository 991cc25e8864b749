//! `KvTriggerState` against a real nats-server with JetStream: one server per test on a free
//! loopback port with its own store directory, killed on drop; a unique sensor (bucket) per test.
//!
//! The server binary: `$NATS_SERVER_BIN`, else the one `scripts/services.sh start nats` installs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use serde_json::{json, Value};
use sluice_eventbus::jetstream::{JetStreamBus, JetStreamConfig};
use sluice_eventbus::{Bus, Event, EventBuilder, Subject};
use sluice_sensor::metrics::SensorMetrics;
use sluice_sensor::params::EventsByDependency;
use sluice_sensor::state::{
    Claim, KvStateConfig, KvStateFactory, KvTriggerState, StateFactory, TriggerScope, TriggerState,
};
use sluice_sensor::{FileSecretResolver, FiringId, SensorRunner};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(60);

mod support;
use support::NatsServer;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A sensor name no other test uses (so a bucket of its own), with a `.` to exercise sanitizing.
fn unique_sensor(test: &str) -> String {
    format!(
        "{test}.{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test event; the same id always gives an equal event (fixed time), so stored events can be
/// compared whole.
fn event(id: &str) -> anyhow::Result<Event> {
    let time = chrono::DateTime::from_timestamp(1_700_000_000, 0).context("fixed time")?;
    Ok(EventBuilder::new("es", "ev", "webhook")
        .id(id)
        .time(time)
        .data_json(serde_json::json!({"id": id, "n": 1.5}))
        .build()?)
}

fn ids(events: &EventsByDependency) -> BTreeMap<String, String> {
    events
        .iter()
        .map(|(d, e)| (d.clone(), e.id().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter().map(|(d, e)| (d.to_string(), e.to_string())).collect()
}

async fn factory(
    js: &jetstream::Context,
    sensor: &str,
    config: KvStateConfig,
) -> anyhow::Result<KvStateFactory> {
    Ok(KvStateFactory::open(js, sensor, config).await?)
}

/// Holds `event` of `dependency`; when both `a` and `b` are held, claims them. Returns the claimed
/// firing's event ids.
async fn step(
    state: &KvTriggerState,
    dependency: &str,
    id: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let held = state.hold(dependency, event(id)?).await?;
    if held.events.len() < 2 {
        return Ok(None);
    }
    let firing = FiringId::new("t", &held.events);
    match state.claim(&firing, &held.events).await? {
        Claim::Claimed => {
            state.finish(&firing).await?;
            Ok(Some(ids(&held.events)))
        }
        other => bail!("unexpected claim result {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn interleaved_events_fire_in_pairs() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let js = server.jetstream().await?;
    let states = factory(&js, &unique_sensor("pairs"), KvStateConfig::default()).await?;
    let state = states.trigger_state("t", LEASE);

    let mut fired = Vec::new();
    for (dep, id) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")] {
        fired.extend(step(&state, dep, id).await?);
    }
    assert_eq!(
        fired,
        [
            pairs(&[("a", "a1"), ("b", "b1")]),
            pairs(&[("a", "a2"), ("b", "b2")])
        ]
    );
    assert!(state.in_flight().await?.is_empty());
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn newer_event_replaces_the_older_unused_one() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let js = server.jetstream().await?;
    let states = factory(&js, &unique_sensor("replace"), KvStateConfig::default()).await?;
    let state = states.trigger_state("t", LEASE);

    assert!(state.hold("a", event("a1")?).await?.replaced.is_none());
    let held = state.hold("a", event("a2")?).await?;
    assert_eq!(held.replaced.map(|e| e.id().to_owned()).as_deref(), Some("a1"));
    assert!(
        state.hold("a", event("a2")?).await?.replaced.is_none(),
        "a redelivery is no replacement"
    );
    let fired = step(&state, "b", "b1").await?;
    assert_eq!(fired, Some(pairs(&[("a", "a2"), ("b", "b1")])));
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn two_replicas_racing_claim_each_complete_set_exactly_once() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let sensor = unique_sensor("race");
    // Two replicas: separate connections, separate owners, the same bucket and key.
    let one = factory(&server.jetstream().await?, &sensor, KvStateConfig::default()).await?;
    let two = factory(&server.jetstream().await?, &sensor, KvStateConfig::default()).await?;
    let replicas = [
        Arc::new(one.trigger_state("t", LEASE)),
        Arc::new(two.trigger_state("t", LEASE)),
    ];
    assert_eq!(replicas[0].key(), replicas[1].key());
    assert_ne!(replicas[0].owner(), replicas[1].owner());

    const ROUNDS: usize = 200;
    const CLAIMERS: usize = 6;
    for round in 0..ROUNDS {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        // Each event arrives at one replica (a shared durable), at the same time.
        let (ha, hb) = tokio::join!(
            replicas[0].hold("a", event(&a)?),
            replicas[1].hold("b", event(&b)?)
        );
        let (ha, hb) = (ha?, hb?);
        assert!(
            ha.events.len() == 2 || hb.events.len() == 2,
            "round {round}: the later hold sees both"
        );
        let complete = pairs(&[("a", &a), ("b", &b)]);
        let expected: EventsByDependency =
            [("a".to_owned(), event(&a)?), ("b".to_owned(), event(&b)?)].into();
        let firing = FiringId::new("t", &expected);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CLAIMERS {
            let state = replicas[i % 2].clone();
            let (firing, expected) = (firing.clone(), expected.clone());
            tasks.spawn(async move { state.claim(&firing, &expected).await });
        }
        let mut claimed = 0;
        while let Some(result) = tasks.join_next().await {
            match result?? {
                Claim::Claimed => claimed += 1,
                Claim::Conflict => {}
                Claim::AlreadyDone => bail!("round {round}: nothing was done yet"),
            }
        }
        assert_eq!(claimed, 1, "round {round}: exactly one claim wins");
        let in_flight = replicas[round % 2].in_flight().await?;
        assert_eq!(in_flight.len(), 1);
        assert_eq!((&in_flight[0].id, ids(&in_flight[0].events)), (&firing, complete));
        replicas[round % 2].finish(&firing).await?;
    }
    assert!(replicas[0].in_flight().await?.is_empty());
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn a_crashed_owners_claim_is_taken_over_with_the_same_id_and_events() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let js = server.jetstream().await?;
    let sensor = unique_sensor("crash");
    let pod0 = KvStateConfig {
        replica: Some("pod-0".into()),
        ..KvStateConfig::default()
    };
    let states = factory(&js, &sensor, pod0.clone()).await?;
    let firing = {
        let crashed = states.trigger_state("t", LEASE);
        crashed.hold("a", event("a1")?).await?;
        let held = crashed.hold("b", event("b1")?).await?.events;
        let firing = FiringId::new("t", &held);
        assert_eq!(crashed.claim(&firing, &held).await?, Claim::Claimed);
        firing
        // Dropped without finishing: the process died mid-firing.
    };

    // Another live replica does not take it (the lease has not run out) ...
    let other = factory(&js, &sensor, KvStateConfig::default()).await?;
    assert!(other.trigger_state("t", LEASE).take_over().await?.is_empty());
    // ... the restarted pod-0 does, once, with the same id and events ...
    let restarted = states.trigger_state("t", LEASE);
    let taken = restarted.take_over().await?;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, firing);
    assert_eq!(ids(&taken[0].events), pairs(&[("a", "a1"), ("b", "b1")]));
    // The full events, data included, came back from the bucket.
    assert_eq!(taken[0].events["a"], event("a1")?);
    assert_eq!(taken[0].events["b"], event("b1")?);
    assert!(restarted.take_over().await?.is_empty(), "taken over once");
    // ... and the redelivered completing event is not held again (it is in that firing).
    let held = restarted.hold("b", event("b1")?).await?;
    assert!(held.events.is_empty() && held.replaced.is_none());
    restarted.finish(&firing).await?;
    assert!(restarted.in_flight().await?.is_empty());
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn an_expired_claim_is_taken_over_by_exactly_one_replica() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let sensor = unique_sensor("lease");
    // The lease runs on the wall clock the claim records in the bucket (not tokio's), so the
    // margins are generous for a loaded 2-core machine: the "within the lease" check must finish
    // within 5 s of the claim, and the take-over waits 1 s past the lease's end.
    let lease = Duration::from_secs(5);
    let one = factory(&server.jetstream().await?, &sensor, KvStateConfig::default()).await?;
    let two = factory(&server.jetstream().await?, &sensor, KvStateConfig::default()).await?;
    let crashed = one.trigger_state("t", lease);
    crashed.hold("a", event("a1")?).await?;
    let held = crashed.hold("b", event("b1")?).await?.events;
    let firing = FiringId::new("t", &held);
    let before_claim = Instant::now();
    assert_eq!(crashed.claim(&firing, &held).await?, Claim::Claimed);
    let after_claim = Instant::now();
    drop(crashed);

    let (x, y) = (one.trigger_state("t", lease), two.trigger_state("t", lease));
    assert!(x.take_over().await?.is_empty(), "within the lease");
    assert!(
        before_claim.elapsed() < lease,
        "the within-the-lease check took longer than the lease ({:?}); it proved nothing",
        before_claim.elapsed()
    );
    // The claim recorded a time no later than `after_claim`: its lease has surely run out then.
    tokio::time::sleep_until((after_claim + lease + Duration::from_secs(1)).into()).await;
    let (tx, ty) = tokio::join!(x.take_over(), y.take_over());
    let taken: Vec<FiringId> = tx?.into_iter().chain(ty?).map(|f| f.id).collect();
    assert_eq!(taken, [firing]);
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn done_firings_are_remembered_and_not_run_again() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let js = server.jetstream().await?;
    let states = factory(&js, &unique_sensor("done"), KvStateConfig::default()).await?;
    let state = states.trigger_state("t", LEASE);
    assert_eq!(step(&state, "a", "a1").await?, None);
    assert_eq!(
        step(&state, "b", "b1").await?,
        Some(pairs(&[("a", "a1"), ("b", "b1")]))
    );

    // A new owner (restart) sees the redelivered events as used: nothing is held, nothing claimed.
    let replay = states.trigger_state("t", LEASE);
    assert!(replay.hold("a", event("a1")?).await?.events.is_empty());
    assert!(replay.hold("b", event("b1")?).await?.events.is_empty());
    let old: EventsByDependency = [("a".to_owned(), event("a1")?), ("b".to_owned(), event("b1")?)].into();
    assert_eq!(
        replay.claim(&FiringId::new("t", &old), &old).await?,
        Claim::Conflict
    );
    assert!(replay.in_flight().await?.is_empty());
    // New events still pair up.
    assert_eq!(step(&replay, "b", "b2").await?, None);
    assert_eq!(
        step(&replay, "a", "a2").await?,
        Some(pairs(&[("a", "a2"), ("b", "b2")]))
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn state_survives_a_server_restart() -> anyhow::Result<()> {
    let mut server = NatsServer::start().await?;
    let sensor = unique_sensor("restart");
    let config = KvStateConfig {
        replica: Some("pod-0".into()),
        ..KvStateConfig::default()
    };
    let firing = {
        let states = factory(&server.jetstream().await?, &sensor, config.clone()).await?;
        let state = states.trigger_state("t", LEASE);
        state.hold("a", event("a1")?).await?;
        let held = state.hold("b", event("b1")?).await?.events;
        let firing = FiringId::new("t", &held);
        assert_eq!(state.claim(&firing, &held).await?, Claim::Claimed);
        state.hold("a", event("a2")?).await?;
        firing
    };
    server.restart().await?;

    let states = factory(&server.jetstream().await?, &sensor, config).await?;
    let scope = TriggerScope::new(&sensor, "t", LEASE);
    let state = states.create(&scope)?;
    let in_flight = state.in_flight().await?;
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0].id, firing);
    let taken = state.take_over().await?;
    assert_eq!(taken.iter().map(|f| &f.id).collect::<Vec<_>>(), [&firing]);
    state.finish(&firing).await?;
    let fired = {
        let held = state.hold("b", event("b2")?).await?.events;
        assert_eq!(
            ids(&held),
            pairs(&[("a", "a2"), ("b", "b2")]),
            "a2 was held across the restart"
        );
        let id = FiringId::new("t", &held);
        state.claim(&id, &held).await?
    };
    assert_eq!(fired, Claim::Claimed);
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn a_factory_refuses_another_sensor() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let states = factory(
        &server.jetstream().await?,
        &unique_sensor("mine"),
        KvStateConfig::default(),
    )
    .await?;
    let result = states.create(&TriggerScope::new("someone-else", "t", LEASE));
    assert!(result.is_err());
    Ok(())
}

/// Whether every durable on `stream` has nothing pending and nothing delivered unacknowledged
/// (and there is at least one).
async fn bus_settled(bus: &JetStreamBus, stream: &str) -> anyhow::Result<bool> {
    use futures::TryStreamExt as _;
    let stream = bus.context().get_stream(stream).await?;
    let mut consumers = stream.consumers();
    let mut seen = 0;
    while let Some(c) = consumers.try_next().await? {
        if c.num_pending > 0 || c.num_ack_pending > 0 {
            return Ok(false);
        }
        seen += 1;
    }
    Ok(seen > 0)
}

/// Records `(Idempotency-Key, body)` of every request.
async fn sink() -> anyhow::Result<(String, Arc<Mutex<Vec<(String, Value)>>>)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let state = state.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let key = parts.headers.get("idempotency-key").and_then(|v| v.to_str().ok());
            let entry = (
                key.unwrap_or_default().to_owned(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            );
            state.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen))
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn two_runner_replicas_on_jetstream_fire_each_pair_once() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let server = NatsServer::start().await?;
    let (url, seen) = sink().await?;
    let name = unique_sensor("runner");
    let stream = format!(
        "runner-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let sensor: sluice_crds::sensor::Sensor = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": name},
        "spec": {
            "dependencies": [{"name": "a", "eventSourceName": "es", "eventName": "a"},
                             {"name": "b", "eventSourceName": "es", "eventName": "b"}],
            "triggers": [{"template": {"name": "t", "http": {"url": url, "payload": [
                {"src": {"dependencyName": "a", "contextKey": "id"}, "dest": "a"},
                {"src": {"dependencyName": "b", "contextKey": "id"}, "dest": "b"}]}}}]
        }
    }))?;
    let cancel = CancellationToken::new();
    let mut replicas = Vec::new();
    let mut buses = Vec::new();
    for pod in ["pod-0", "pod-1"] {
        let bus =
            JetStreamBus::connect(JetStreamConfig::new(server.url()).with_stream(stream.clone())).await?;
        let config = KvStateConfig {
            replica: Some(pod.into()),
            ..KvStateConfig::default()
        };
        let states = KvStateFactory::open(bus.context(), &name, config).await?;
        let runner = SensorRunner::with_state_factory(
            sensor.clone(),
            Arc::new(bus.clone()),
            Arc::new(FileSecretResolver::new("/nonexistent")),
            reqwest::Client::new(),
            SensorMetrics::default(),
            &states,
        )?;
        runner.subscribe().await?;
        replicas.push(tokio::spawn(runner.run(cancel.child_token())));
        buses.push(bus);
    }

    const PAIRS: usize = 8;
    let count = || seen.lock().map(|v| v.len()).unwrap_or_default();
    for i in 0..PAIRS {
        buses[0]
            .publish(&Subject::new("es", "a"), &event(&format!("a{i}"))?)
            .await?;
        buses[1]
            .publish(&Subject::new("es", "b"), &event(&format!("b{i}"))?)
            .await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while count() < i + 1 {
            if Instant::now() > deadline {
                bail!("pair {i} did not fire within 20 s ({} firings)", count());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Room for a wrong second firing, measured from when the bus had nothing left to deliver
    // (every delivery acknowledged), not from a guess.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !bus_settled(&buses[0], &stream).await? {
        if Instant::now() > deadline {
            bail!("the sensor's durables still had deliveries pending after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        count(),
        settled,
        "a firing came after every delivery was acknowledged"
    );
    cancel.cancel();
    for replica in replicas {
        tokio::time::timeout(Duration::from_secs(10), replica).await???;
    }

    let mut expected = Vec::new();
    for i in 0..PAIRS {
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        let events: EventsByDependency = [("a".to_owned(), event(&a)?), ("b".to_owned(), event(&b)?)].into();
        expected.push((FiringId::new("t", &events).to_string(), json!({"a": a, "b": b})));
    }
    let got = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(
        got, expected,
        "each pair fired once, in order, with its firing id as the key"
    );
    let states = KvStateFactory::open(buses[0].context(), &name, KvStateConfig::default()).await?;
    assert!(states.trigger_state("t", LEASE).in_flight().await?.is_empty());
    Ok(())
}
