//! The kafka source's readiness condition (`<EventSource>/<event>`, which `/readyz` names when
//! unmet): false while its brokers are unreachable (a closed port), true once the real broker from
//! `scripts/services.sh start kafka` (KAFKA_BROKERS) answered.

use std::sync::Arc;
use std::time::Duration;

use sluice_crds::eventsource::EventSource;
use sluice_eventsource::testing::{setting, start, Recorder};
use sluice_eventsource::{FileSecretResolver, Readiness, SourceContext};

fn manifest(brokers: &str, topic: &str) -> EventSource {
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: ready-it}}\nspec:\n  kafka:\n    orders:\n      url: \"{brokers}\"\n      topic: {topic}\n      consumerGroup: {{groupName: {topic}}}\n"
    );
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Runs the source of `brokers` and returns the readiness after it had `within` to connect.
async fn unmet_after(brokers: &str, topic: &str, within: Duration) -> Vec<String> {
    let readiness = Readiness::default();
    let mut ctx = SourceContext::new(
        Arc::new(FileSecretResolver::new(std::env::temp_dir())),
        Arc::new(Recorder::default()),
    );
    ctx.readiness = readiness.clone();
    let running = start(&manifest(brokers, topic), &ctx);
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline && !readiness.is_ready() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unmet = readiness.unmet();
    running.stop().await;
    unmet
}

#[tokio::test]
#[ignore = "needs Kafka: scripts/test starts it and runs ignored tests"]
async fn not_ready_while_the_brokers_are_unreachable_ready_on_the_real_broker() {
    let brokers = setting("KAFKA_BROKERS");
    let topic = format!("ready-{}", uuid::Uuid::new_v4().simple());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port can be bound");
    assert_eq!(
        unmet_after(&format!("127.0.0.1:{closed}"), &topic, Duration::from_secs(3)).await,
        vec!["ready-it/orders"],
        "an unreachable broker leaves the source's condition unmet"
    );
    assert_eq!(
        unmet_after(&brokers, &topic, Duration::from_secs(30)).await,
        Vec::<String>::new(),
        "the real broker makes it ready"
    );
}
