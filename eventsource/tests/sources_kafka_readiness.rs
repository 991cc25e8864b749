//! The kafka source's readiness condition (`<EventSource>/<event>`, which `/readyz` names when
//! unmet): false while its brokers are unreachable (a closed port), true once the real broker from
//! `scripts/services.sh start kafka` (KAFKA_BROKERS) answered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_crds::eventsource::EventSource;
use sluice_eventbus::{Event, PublishAck, PublishError, Subject};
use sluice_eventsource::{build, EventSender, FileSecretResolver, Readiness, SourceContext};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Stored;

#[async_trait]
impl EventSender for Stored {
    async fn send(&self, _: &Subject, _: &Event) -> Result<PublishAck, PublishError> {
        Ok(PublishAck::stored(1, false))
    }
}

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
        Arc::new(Stored),
    );
    ctx.readiness = readiness.clone();
    let built = build(&manifest(brokers, topic), &ctx).unwrap_or_else(|e| panic!("{e}"));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    for task in built.tasks {
        let token = cancel.child_token();
        tracker.spawn(async move {
            let _ = task.run(token).await;
        });
    }
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline && !readiness.is_ready() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unmet = readiness.unmet();
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    unmet
}

#[tokio::test]
async fn not_ready_while_the_brokers_are_unreachable_ready_on_the_real_broker() {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("KAFKA_BROKERS is not set: start Kafka with `scripts/services.sh start kafka`")
    });
    let topic = format!("ready-{}", uuid::Uuid::new_v4().simple());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
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
