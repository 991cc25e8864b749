//! The runner on the real embedded bus, firing to a real local HTTP sink.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_crds::sensor::Sensor;
use sluice_eventbus::embedded::EmbeddedBus;
use sluice_eventbus::{Bus, Event, EventBuilder, Subject};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::firing::FiringId;
use crate::secrets::FileSecretResolver;
use crate::triggers::BuildError;

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    idempotency_key: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Sink {
    seen: Arc<Mutex<Vec<Seen>>>,
    hits: Arc<Mutex<HashMap<String, u32>>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: Arc<Mutex<(u32, u32)>>,
}

impl Sink {
    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .map(|v| v.iter().filter(|s| s.path == path).cloned().collect())
            .unwrap_or_default()
    }
}

/// Records every request. `/status/<code>` answers `<code>`; `/flaky/<n>/…` answers 503 to the first
/// `n` requests on that path, then 200; `/slow/<ms>/…` answers 200 after `ms` milliseconds; anything
/// else 200.
async fn sink() -> anyhow::Result<(String, Sink)> {
    let sink = Sink::default();
    let state = sink.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let state = state.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let path = parts.uri.path().to_owned();
            let key = parts
                .headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let hits = {
                let mut hits = state.hits.lock().unwrap_or_else(|p| p.into_inner());
                let n = hits.entry(path.clone()).or_default();
                *n += 1;
                *n
            };
            let segments: Vec<&str> = path.split('/').collect();
            if let ["", "slow", ms, ..] = segments.as_slice() {
                if let Ok(mut n) = state.in_flight.lock() {
                    n.0 += 1;
                    n.1 = n.1.max(n.0);
                }
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
                if let Ok(mut n) = state.in_flight.lock() {
                    n.0 -= 1;
                }
            }
            let status = match segments.as_slice() {
                ["", "status", code, ..] => code.parse().unwrap_or(200),
                ["", "flaky", n, ..] if hits <= n.parse().unwrap_or(0) => 503,
                _ => 200,
            };
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Ok(mut seen) = state.seen.lock() {
                seen.push(Seen {
                    path,
                    idempotency_key: key,
                    body,
                });
            }
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), sink))
}

fn sensor(spec: Value) -> anyhow::Result<Sensor> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Sensor",
        "metadata": {"name": "s"},
        "spec": spec,
    }))?)
}

fn deps(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "eventSourceName": "es", "eventName": n}))
            .collect(),
    )
}

/// An http trigger template posting `{"<dep>": <event id>}` for each of `deps` to `url`.
fn http_trigger(name: &str, url: &str, deps: &[&str]) -> Value {
    let payload: Vec<Value> = deps
        .iter()
        .map(|d| json!({"src": {"dependencyName": d, "contextKey": "id"}, "dest": d}))
        .collect();
    json!({"name": name, "http": {"url": url, "payload": payload}})
}

fn event(id: &str, data: Value) -> anyhow::Result<Event> {
    Ok(EventBuilder::new("es", "x", "webhook")
        .id(id)
        .data_json(data)
        .build()?)
}

struct Running {
    bus: Arc<EmbeddedBus>,
    stats: Arc<SensorStats>,
    metrics: crate::metrics::SensorMetrics,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SensorError>>,
}

impl Running {
    async fn start(sensor: Sensor) -> anyhow::Result<Self> {
        let bus = Arc::new(EmbeddedBus::default());
        let metrics = crate::metrics::SensorMetrics::default();
        let runner = SensorRunner::new(
            sensor,
            bus.clone(),
            Arc::new(FileSecretResolver::new("/nonexistent")),
            reqwest::Client::new(),
            metrics.clone(),
        )?;
        runner.subscribe().await?;
        let stats = runner.stats();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(runner.run(cancel.clone()));
        Ok(Self {
            bus,
            stats,
            metrics,
            cancel,
            task,
        })
    }

    async fn publish(&self, dep: &str, id: &str, data: Value) -> anyhow::Result<()> {
        self.bus
            .publish(&Subject::new("es", dep), &event(id, data)?)
            .await?;
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await???;
        Ok(())
    }
}

/// Polls `check` until it holds (up to 10 s).
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn key(trigger: &str, pairs: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut events = BTreeMap::new();
    for (dep, id) in pairs {
        events.insert(dep.to_string(), event(id, Value::Null)?);
    }
    Ok(FiringId::new(trigger, &events).to_string())
}

#[tokio::test]
async fn single_dependency_http_trigger_posts_the_parameterized_payload() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let spec = json!({
        "dependencies": deps(&["d"]),
        "triggers": [{
            "template": {"name": "t", "http": {"url": format!("{base}/hook"), "payload": [
                {"src": {"dependencyName": "d", "dataKey": "body.service"}, "dest": "service"},
                {"src": {"dependencyName": "d", "dataKey": "body.user", "value": "unknown"}, "dest": "requestedBy"}
            ]}},
            "atLeastOnce": true
        }]
    });
    let run = Running::start(sensor(spec)?).await?;
    run.publish("d", "e1", json!({"body": {"service": "checkout"}}))
        .await?;
    assert!(eventually(|| sink.seen("/hook").len() == 1).await);
    let seen = sink.seen("/hook");
    assert_eq!(
        seen[0].body,
        json!({"service": "checkout", "requestedBy": "unknown"})
    );
    assert_eq!(seen[0].idempotency_key, key("t", &[("d", "e1")])?);
    assert!(
        eventually(|| run.bus.pending("s-t-d") == 0).await,
        "the delivery is acked after success"
    );
    assert_eq!(run.stats.snapshot().fired, 1);
    run.stop().await
}

#[tokio::test]
async fn filtered_out_event_is_acked_and_not_fired() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let spec = json!({
        "dependencies": [{"name": "d", "eventSourceName": "es", "eventName": "d",
            "filters": {"data": [{"path": "body.type", "type": "string", "value": ["^deploy$"]}]}}],
        "triggers": [{"template": http_trigger("t", &format!("{base}/hook"), &["d"]), "atLeastOnce": true}]
    });
    let run = Running::start(sensor(spec)?).await?;
    run.publish("d", "build-1", json!({"body": {"type": "build"}}))
        .await?;
    assert!(eventually(|| run.stats.snapshot().filtered_out == 1).await);
    assert!(
        eventually(|| run.bus.pending("s-t-d") == 0).await,
        "filtered-out deliveries are acked"
    );
    run.publish("d", "deploy-1", json!({"body": {"type": "deploy"}}))
        .await?;
    assert!(eventually(|| sink.seen("/hook").len() == 1).await);
    assert_eq!(
        sink.seen("/hook")[0].body,
        json!({"d": "deploy-1"}),
        "only the deploy fired"
    );
    let count = |result| run.filter_results("d", result);
    assert_eq!((count("passed"), count("filtered"), count("error")), (1, 1, 0));
    run.stop().await
}

#[tokio::test]
async fn transform_runs_before_filters_and_feeds_parameters() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let spec = json!({
        "dependencies": [{"name": "d", "eventSourceName": "es", "eventName": "d",
            "transform": {"jq": "{body: {service: .body.svc, type: .body.kind}}"},
            "filters": {"data": [{"path": "body.type", "type": "string", "value": ["^deploy$"]}]}}],
        "triggers": [{"template": {"name": "t", "http": {"url": format!("{base}/hook"), "payload": [
            {"src": {"dependencyName": "d", "dataKey": "body.service"}, "dest": "service"}]}},
            "atLeastOnce": true}]
    });
    let run = Running::start(sensor(spec)?).await?;
    // The filter reads `body.type`, which only the transform creates.
    run.publish("d", "build-1", json!({"body": {"svc": "cart", "kind": "build"}}))
        .await?;
    run.publish(
        "d",
        "deploy-1",
        json!({"body": {"svc": "checkout", "kind": "deploy"}}),
    )
    .await?;
    assert!(eventually(|| sink.seen("/hook").len() == 1).await);
    assert!(eventually(|| run.stats.snapshot().filtered_out == 1).await);
    assert_eq!(sink.seen("/hook")[0].body, json!({"service": "checkout"}));
    assert_eq!(
        sink.seen("/hook")[0].idempotency_key,
        key("t", &[("d", "deploy-1")])?
    );
    run.stop().await
}

#[tokio::test]
async fn a_failing_transform_discards_the_event_as_a_filter_error() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let spec = json!({
        "dependencies": [{"name": "d", "eventSourceName": "es", "eventName": "d",
            // jq's first output must be an object (upstream's rule); a string is an error.
            "transform": {"jq": ".body.name"}}],
        "triggers": [{"template": http_trigger("t", &format!("{base}/hook"), &["d"]), "atLeastOnce": true}]
    });
    let run = Running::start(sensor(spec)?).await?;
    run.publish("d", "e1", json!({"body": {"name": "x"}})).await?;
    assert!(eventually(|| run.stats.snapshot().filtered_out == 1).await);
    assert!(
        eventually(|| run.bus.pending("s-t-d") == 0).await,
        "the discarded delivery is acked, not redelivered forever"
    );
    let errors = run.filter_results("d", "error");
    assert_eq!(errors, 1);
    assert!(sink.seen("/hook").is_empty());
    run.stop().await
}

#[tokio::test]
async fn a_runaway_script_is_a_filter_error_and_the_sensor_keeps_working() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let spec = json!({
        "dependencies": [{"name": "d", "eventSourceName": "es", "eventName": "d",
            "filters": {"script": "return string.find(event.body.text, '(.-)(.-)(.-)(.-)x') ~= nil"}}],
        "triggers": [{"template": http_trigger("t", &format!("{base}/hook"), &["d"]), "atLeastOnce": true}]
    });
    let run = Running::start(sensor(spec)?).await?;
    // This test runs on a current-thread runtime: a script on the runtime's only thread would stop
    // this ticker (and the bus, and the HTTP sink) for as long as it runs.
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let started = tokio::time::Instant::now();
    run.publish("d", "slow", json!({"body": {"text": "a".repeat(60_000)}}))
        .await?;
    run.publish("d", "fine", json!({"body": {"text": "ax"}})).await?;
    assert!(
        eventually(|| sink.seen("/hook").len() == 1).await,
        "the next event fires"
    );
    let took = started.elapsed();
    ticker.abort();
    assert!(
        took < crate::eval::DEFAULT_EVAL_TIMEOUT + crate::eval::WATCHDOG_SLACK + Duration::from_secs(1),
        "the runaway script ended at its limit: {took:?}"
    );
    assert!(
        ticks.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the runtime ran other tasks meanwhile"
    );
    assert_eq!(sink.seen("/hook")[0].body, json!({"d": "fine"}));
    let errors = run.filter_results("d", "error");
    assert_eq!(errors, 1, "the stopped script counts as a filter error");
    assert_eq!(run.stats.snapshot().filtered_out, 1);
    run.stop().await
}

impl Running {
    /// `sluice_sensor_filter_results_total` of sensor `s`'s dependency `dependency` for `result`.
    fn filter_results(&self, dependency: &str, result: &'static str) -> u64 {
        self.metrics
            .filter_results
            .get_or_create(&crate::metrics::FilterLabels {
                sensor: "s".into(),
                dependency: dependency.into(),
                result,
            })
            .get()
    }

    /// Publishes to dependency `dep` and waits until trigger `trigger` settled the delivery.
    async fn publish_settled(&self, trigger: &str, dep: &str, id: &str, data: Value) -> anyhow::Result<()> {
        self.publish(dep, id, data).await?;
        // The bus drops an event once every durable that owns it settled it; only this trigger's
        // durable for `dep` owns it here.
        anyhow::ensure!(
            eventually(|| self.bus.stored() == 0).await,
            "{id} was not settled by trigger {trigger}"
        );
        Ok(())
    }
}

fn and_sensor(base: &str, conditions: &str) -> anyhow::Result<Sensor> {
    let mut template = http_trigger("t", &format!("{base}/fire"), &["a", "b"]);
    template["conditions"] = json!(conditions);
    sensor(
        json!({"dependencies": deps(&["a", "b"]), "triggers": [{"template": template, "atLeastOnce": true}]}),
    )
}

#[tokio::test]
async fn and_condition_fires_each_complete_pair_in_order() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let run = Running::start(and_sensor(&base, "a && b")?).await?;
    for (dep, id) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")] {
        run.publish_settled("t", dep, id, json!({})).await?;
    }
    assert!(eventually(|| sink.seen("/fire").len() == 2).await);
    let seen = sink.seen("/fire");
    assert_eq!(seen[0].body, json!({"a": "a1", "b": "b1"}));
    assert_eq!(seen[1].body, json!({"a": "a2", "b": "b2"}));
    assert_eq!(seen[0].idempotency_key, key("t", &[("a", "a1"), ("b", "b1")])?);
    assert_eq!(seen[1].idempotency_key, key("t", &[("a", "a2"), ("b", "b2")])?);
    assert_eq!(run.stats.snapshot().replaced, 0);
    run.stop().await
}

#[tokio::test]
async fn and_condition_keeps_the_latest_event_and_reports_the_replaced_one() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let run = Running::start(and_sensor(&base, "a && b")?).await?;
    for (dep, id) in [("a", "a1"), ("a", "a2"), ("b", "b1")] {
        run.publish_settled("t", dep, id, json!({})).await?;
    }
    assert!(eventually(|| sink.seen("/fire").len() == 1).await);
    assert_eq!(sink.seen("/fire")[0].body, json!({"a": "a2", "b": "b1"}));
    let stats = run.stats.snapshot();
    assert_eq!((stats.replaced, stats.fired), (1, 1));
    run.stop().await
}

#[tokio::test]
async fn default_condition_is_the_and_of_all_dependencies() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let template = http_trigger("t", &format!("{base}/fire"), &["a", "b"]);
    let spec =
        json!({"dependencies": deps(&["a", "b"]), "triggers": [{"template": template, "atLeastOnce": true}]});
    let run = Running::start(sensor(spec)?).await?;
    run.publish_settled("t", "a", "a1", json!({})).await?;
    assert!(sink.seen("/fire").is_empty(), "a alone does not fire");
    run.publish_settled("t", "b", "b1", json!({})).await?;
    assert!(eventually(|| sink.seen("/fire").len() == 1).await);
    assert_eq!(sink.seen("/fire")[0].body, json!({"a": "a1", "b": "b1"}));
    run.stop().await
}

#[tokio::test]
async fn or_condition_fires_each_event_alone() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let run = Running::start(and_sensor(&base, "a || b")?).await?;
    run.publish_settled("t", "a", "a1", json!({})).await?;
    run.publish_settled("t", "b", "b1", json!({})).await?;
    assert!(eventually(|| sink.seen("/fire").len() == 2).await);
    let seen = sink.seen("/fire");
    // A parameter whose dependency has no event (and no default) is skipped.
    assert_eq!(seen[0].body, json!({"a": "a1"}));
    assert_eq!(seen[1].body, json!({"b": "b1"}));
    assert_eq!(seen[1].idempotency_key, key("t", &[("b", "b1")])?);
    run.stop().await
}

#[tokio::test]
async fn retryable_failures_are_retried_until_success() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let spec = json!({
        "dependencies": deps(&["d"]),
        "triggers": [{
            "template": http_trigger("t", &format!("{base}/flaky/2/x"), &["d"]),
            "policy": {"status": {"allow": [200]}},
            "retryStrategy": {"steps": 3, "duration": "10ms", "jitter": 0},
            "atLeastOnce": true
        }]
    });
    let run = Running::start(sensor(spec)?).await?;
    run.publish("d", "e1", json!({})).await?;
    assert!(eventually(|| run.stats.snapshot().fired == 1).await);
    let seen = sink.seen("/flaky/2/x");
    assert_eq!(seen.len(), 3, "two 503s, then 200");
    let expected = key("t", &[("d", "e1")])?;
    assert!(
        seen.iter().all(|s| s.idempotency_key == expected),
        "every attempt carries the same firing id"
    );
    assert!(eventually(|| run.bus.pending("s-t-d") == 0).await);
    assert_eq!(run.stats.snapshot().failed, 0);
    let labels = crate::metrics::SensorMetrics::labels("s", "t");
    assert_eq!(
        run.metrics.failed.get_or_create(&labels).get(),
        2,
        "argo_events_action_failed counts attempts"
    );
    assert_eq!(run.metrics.triggered.get_or_create(&labels).get(), 1);
    assert_eq!(run.metrics.retries_failed.get_or_create(&labels).get(), 0);
    run.stop().await
}

#[tokio::test]
async fn exhausted_retries_run_the_dlq_trigger_with_the_same_firing_id() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let spec = json!({
        "dependencies": deps(&["d"]),
        "triggers": [{
            "template": http_trigger("t", &format!("{base}/status/503"), &["d"]),
            "policy": {"status": {"allow": [200]}},
            "retryStrategy": {"steps": 2, "duration": "10ms", "jitter": 0},
            "atLeastOnce": true,
            "dlqTrigger": {"template": http_trigger("dlq", &format!("{base}/dlq"), &["d"]), "atLeastOnce": true}
        }]
    });
    let run = Running::start(sensor(spec)?).await?;
    run.publish("d", "e1", json!({})).await?;
    assert!(eventually(|| sink.seen("/dlq").len() == 1).await);
    let main = sink.seen("/status/503");
    assert_eq!(main.len(), 2, "steps: 2 means two attempts");
    let dlq = sink.seen("/dlq");
    assert_eq!(dlq[0].idempotency_key, main[0].idempotency_key);
    assert_eq!(dlq[0].body, json!({"d": "e1"}));
    assert!(
        eventually(|| run.bus.pending("s-t-d") == 0).await,
        "acked once the dlq trigger ran"
    );
    let stats = run.stats.snapshot();
    assert_eq!((stats.failed, stats.dead_lettered, stats.fired), (1, 1, 0));
    let labels = crate::metrics::SensorMetrics::labels("s", "t");
    assert_eq!(run.metrics.retries_failed.get_or_create(&labels).get(), 1);
    assert_eq!(run.metrics.dead_lettered.get_or_create(&labels).get(), 1);
    run.stop().await
}

#[tokio::test]
async fn permanent_failures_are_not_retried() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let spec = json!({
        "dependencies": deps(&["d"]),
        "triggers": [{
            "template": http_trigger("t", &format!("{base}/status/404"), &["d"]),
            "policy": {"status": {"allow": [200]}},
            "retryStrategy": {"steps": 5, "duration": "10ms", "jitter": 0},
            "atLeastOnce": true
        }]
    });
    let run = Running::start(sensor(spec)?).await?;
    run.publish("d", "e1", json!({})).await?;
    assert!(eventually(|| run.stats.snapshot().failed == 1).await);
    assert_eq!(sink.seen("/status/404").len(), 1);
    assert!(
        eventually(|| run.bus.pending("s-t-d") == 0).await,
        "acked after the failure is reported, as upstream"
    );
    run.stop().await
}

#[tokio::test]
async fn a_failing_trigger_does_not_block_the_others() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let spec = json!({
        "dependencies": deps(&["d"]),
        "triggers": [
            {
                "template": http_trigger("failing", &format!("http://127.0.0.1:{closed}/x"), &["d"]),
                "retryStrategy": {"steps": 4, "duration": "200ms", "jitter": 0},
                "atLeastOnce": true
            },
            {"template": http_trigger("ok", &format!("{base}/ok"), &["d"]), "atLeastOnce": true}
        ]
    });
    let run = Running::start(sensor(spec)?).await?;
    run.publish("d", "e1", json!({})).await?;
    run.publish("d", "e2", json!({})).await?;
    assert!(eventually(|| sink.seen("/ok").len() == 2).await);
    assert_eq!(
        run.stats.snapshot().failed,
        0,
        "the failing trigger is still retrying its first firing"
    );
    assert!(eventually(|| run.stats.snapshot().failed == 2).await);
    run.stop().await
}

#[tokio::test]
async fn at_most_once_trigger_fires_after_acking() -> anyhow::Result<()> {
    let (base, sink) = sink().await?;
    let spec = json!({"dependencies": deps(&["d"]), "triggers": [{"template": http_trigger("t", &format!("{base}/amo"), &["d"])}]});
    let run = Running::start(sensor(spec)?).await?;
    run.publish("d", "e1", json!({})).await?;
    assert!(eventually(|| sink.seen("/amo").len() == 1).await);
    assert!(eventually(|| run.bus.pending("s-t-d") == 0).await);
    run.stop().await
}

#[tokio::test]
async fn log_trigger_fires() -> anyhow::Result<()> {
    let spec = json!({"dependencies": deps(&["d"]), "triggers": [{"template": {"name": "t", "log": {}}, "atLeastOnce": true}]});
    let run = Running::start(sensor(spec)?).await?;
    run.publish("d", "e1", json!({"k": 1})).await?;
    assert!(eventually(|| run.stats.snapshot().fired == 1).await);
    run.stop().await
}

fn start_error(spec: Value) -> anyhow::Result<SensorError> {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::default());
    match SensorRunner::new(
        sensor(spec)?,
        bus,
        Arc::new(FileSecretResolver::new("/nonexistent")),
        reqwest::Client::new(),
        crate::metrics::SensorMetrics::default(),
    ) {
        Ok(_) => anyhow::bail!("the sensor should not start"),
        Err(e) => Ok(e),
    }
}

#[test]
fn an_empty_trigger_secret_refuses_to_start_naming_the_field() -> anyhow::Result<()> {
    let spec = json!({"dependencies": deps(&["d"]), "triggers": [
        {"template": {"name": "first", "log": {}}},
        {"template": {"name": "hook", "http": {"url": "http://127.0.0.1:1/x",
            "basicAuth": {"username": {"name": "creds", "key": "user"},
                          "password": {"name": "creds", "key": "password"}}}}}]});
    let secrets = crate::secrets::MapSecretResolver::new()
        .with_secret("creds", "user", "ann")
        .with_secret("creds", "password", "");
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::default());
    let error = match SensorRunner::new(
        sensor(spec)?,
        bus,
        Arc::new(secrets),
        reqwest::Client::new(),
        crate::metrics::SensorMetrics::default(),
    ) {
        Ok(_) => anyhow::bail!("the sensor should not start"),
        Err(e) => e,
    };
    assert!(
        error.to_string().contains(
            "spec.triggers[1].template.http.basicAuth.password of trigger `hook` names Secret \"creds\" key \"password\""
        ),
        "{error}"
    );
    Ok(())
}

#[test]
fn unsupported_features_refuse_to_start_with_a_clear_error() -> anyhow::Result<()> {
    let pulsar = json!({"dependencies": deps(&["d"]), "triggers": [{"template": {"name": "k", "pulsar": {"topic": "t"}}}]});
    let e = start_error(pulsar)?;
    let kind = match &e {
        SensorError::BuildTrigger { source, .. } => match **source {
            BuildError::UnsupportedKind { kind, .. } => kind,
            _ => "",
        },
        _ => "",
    };
    assert_eq!(kind, "pulsar", "{e}");

    let unknown = json!({"dependencies": deps(&["d"]), "triggers": [{"template": {"name": "t", "conditions": "d && x", "log": {}}}]});
    let e = start_error(unknown)?;
    assert!(
        matches!(e, SensorError::UnknownDependency { ref dependency, .. } if dependency == "x"),
        "{e}"
    );

    let dup = json!({"dependencies": deps(&["d"]), "triggers": [
        {"template": {"name": "t", "log": {}}}, {"template": {"name": "t", "log": {}}}]});
    assert!(matches!(
        start_error(dup)?,
        SensorError::DuplicateName { what: "trigger", .. }
    ));
    Ok(())
}

#[tokio::test]
async fn run_returns_promptly_on_cancel() -> anyhow::Result<()> {
    let spec = json!({"dependencies": deps(&["d"]), "triggers": [{"template": {"name": "t", "log": {}}}]});
    let run = Running::start(sensor(spec)?).await?;
    run.stop().await
}

/// Publishes `n` events to a trigger answering after 50 ms, with `concurrency` (absent when `None`);
/// returns the ids in the order the sink saw them and the most requests it had at once.
async fn fire_slowly(concurrency: Option<u32>, n: usize) -> anyhow::Result<(Vec<String>, u32)> {
    let (base, sink) = sink().await?;
    let mut trigger = json!({"template": http_trigger("t", &format!("{base}/slow/50/t"), &["d"])});
    if let Some(c) = concurrency {
        trigger["concurrency"] = json!(c);
    }
    let run = Running::start(sensor(
        json!({"dependencies": deps(&["d"]), "triggers": [trigger]}),
    )?)
    .await?;
    for i in 0..n {
        run.publish("d", &format!("e{i:02}"), Value::Null).await?;
    }
    assert!(
        eventually(|| sink.seen("/slow/50/t").len() == n).await,
        "every event fires"
    );
    assert!(
        eventually(|| run.bus.pending("s-t-d") == 0).await,
        "every delivery is acked"
    );
    let order = sink
        .seen("/slow/50/t")
        .iter()
        .map(|s| s.body["d"].as_str().unwrap_or_default().to_owned())
        .collect();
    let most = sink.in_flight.lock().map(|n| n.1).unwrap_or_default();
    run.stop().await?;
    Ok((order, most))
}

#[tokio::test]
async fn by_default_a_trigger_fires_one_event_at_a_time_in_bus_order() -> anyhow::Result<()> {
    let (order, most) = fire_slowly(None, 12).await?;
    let expected: Vec<String> = (0..12).map(|i| format!("e{i:02}")).collect();
    assert_eq!(order, expected);
    assert_eq!(most, 1);
    Ok(())
}

#[tokio::test]
async fn raised_concurrency_fires_several_events_at_once_within_the_bound() -> anyhow::Result<()> {
    let (order, most) = fire_slowly(Some(4), 24).await?;
    let mut sorted = order.clone();
    sorted.sort();
    let expected: Vec<String> = (0..24).map(|i| format!("e{i:02}")).collect();
    assert_eq!(sorted, expected, "each event fires once");
    assert!(most > 1, "deliveries overlap (most at once: {most})");
    assert!(
        most <= 4,
        "never more than the concurrency at once (most at once: {most})"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn conditions_reset_drops_a_half_satisfied_condition_at_each_tick() -> anyhow::Result<()> {
    let spec = json!({
        "dependencies": deps(&["a", "b"]),
        "triggers": [{"template": {"name": "t", "conditions": "a && b", "log": {},
            "conditionsReset": [{"byTime": {"cron": "* * * * *", "timezone": "UTC"}}]}}]
    });
    // The runner reads time as the wall clock at start plus (paused) runtime time since.
    let (wall, started) = (chrono::Utc::now(), tokio::time::Instant::now());
    let run = Running::start(sensor(spec)?).await?;
    run.publish("a", "a1", Value::Null).await?;
    assert!(eventually(|| run.bus.stored() == 0).await, "a1 is held");
    // To one second past a minute boundary at least a minute later: a tick has passed (a1 was
    // dropped, so b1 alone does not fire) and the next is 59 s away.
    let now = wall + chrono::Duration::from_std(started.elapsed())?;
    let into_minute = u64::from(chrono::Timelike::second(&now)) * 1000
        + u64::from(chrono::Timelike::nanosecond(&now) / 1_000_000);
    tokio::time::sleep(Duration::from_millis(60_000 - into_minute + 61_000)).await;
    run.publish("b", "b1", Value::Null).await?;
    assert!(eventually(|| run.bus.stored() == 0).await, "b1 is held");
    assert_eq!(run.stats.snapshot().fired, 0);
    // Within the same minute as b1, a2 completes the pair.
    run.publish("a", "a2", Value::Null).await?;
    assert!(eventually(|| run.stats.snapshot().fired == 1).await);
    run.stop().await
}
