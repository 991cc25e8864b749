//! The `log` trigger: writes the firing's events to the sensor's log at info level, one line per
//! event (sensor, trigger, firing id, dependency, event id and attributes, data), as upstream does.
//!
//! `intervalSeconds` throttles: after a firing was logged, firings within the interval are counted
//! as done but not written (upstream's rule). The trigger cannot fail; it never retries.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use sluice_crds::sensor::LogTrigger as LogSpec;
use tokio::time::Instant;
use tracing::info;

use super::{Outcome, Trigger, TriggerError};
use crate::firing::Firing;

/// One rendered log line: what is logged for one event of a firing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// The dependency the event came for.
    pub dependency: String,
    /// The event id.
    pub event: String,
    /// The event source (EventSource name).
    pub source: String,
    /// The event subject (event name).
    pub subject: String,
    /// The event type (source kind).
    #[serde(rename = "type")]
    pub ty: String,
    /// The event time, RFC 3339.
    pub time: String,
    /// The event data as JSON text (empty without data).
    pub data: String,
}

/// The lines `firing` is logged as, in dependency order. Pure.
pub fn render(firing: &Firing) -> Vec<LogLine> {
    firing
        .events
        .iter()
        .map(|(dependency, event)| LogLine {
            dependency: dependency.clone(),
            event: event.id().to_owned(),
            source: event.source().to_owned(),
            subject: event.subject().unwrap_or_default().to_owned(),
            ty: event.ty().to_owned(),
            time: event.time().map(|t| t.to_rfc3339()).unwrap_or_default(),
            data: event.data().map(|d| d.to_string()).unwrap_or_default(),
        })
        .collect()
}

/// A built `log` trigger.
pub struct LogTrigger {
    name: String,
    interval: Duration,
    last_logged: Mutex<Option<Instant>>,
}

impl LogTrigger {
    /// Builds the trigger named `name` from `spec`.
    pub fn build(name: &str, spec: &LogSpec) -> Self {
        Self {
            name: name.to_owned(),
            interval: Duration::from_secs(spec.interval_seconds.unwrap_or(0)),
            last_logged: Mutex::new(None),
        }
    }

    /// Whether a firing at `now` is logged; records it when it is.
    fn take_turn(&self, now: Instant) -> bool {
        // Poisoning only means a panic elsewhere mid-update of an `Option<Instant>`; still valid.
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        let due = match *last {
            None => true,
            Some(at) => now > at + self.interval,
        };
        if due {
            *last = Some(now);
        }
        due
    }
}

#[async_trait]
impl Trigger for LogTrigger {
    fn kind(&self) -> &'static str {
        "log"
    }

    fn attempt_timeout(&self) -> Duration {
        // Writing to the log has no bound of its own; it does no network I/O.
        super::DEFAULT_ATTEMPT_TIMEOUT
    }

    fn describe(&self, firing: &Firing) -> Result<serde_json::Value, TriggerError> {
        Ok(serde_json::json!({ "lines": render(firing) }))
    }

    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError> {
        if self.interval > Duration::ZERO && !self.take_turn(Instant::now()) {
            return Ok(Outcome::Throttled);
        }
        if self.interval == Duration::ZERO {
            self.take_turn(Instant::now());
        }
        let lines = render(firing);
        for line in &lines {
            info!(
                sensor = %firing.sensor,
                trigger = %self.name,
                firing = %firing.id,
                dependency = %line.dependency,
                event = %line.event,
                source = %line.source,
                subject = %line.subject,
                r#type = %line.ty,
                time = %line.time,
                data = %line.data,
                "event"
            );
        }
        Ok(Outcome::Logged { events: lines.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firing::FiringId;
    use crate::params::EventsByDependency;
    use serde_json::json;
    use sluice_crds::sensor::TriggerTemplate;
    use sluice_eventbus::EventBuilder;

    fn firing() -> Firing {
        let mut events = EventsByDependency::new();
        for (dep, id) in [("b", "e2"), ("a", "e1")] {
            let event = EventBuilder::new("webhook", "example", "webhook")
                .id(id)
                .data_json(json!({"k": id}))
                .build()
                .expect("a test event with an id builds");
            events.insert(dep.to_owned(), event);
        }
        Firing {
            id: FiringId::new("t", &events),
            sensor: "s".into(),
            trigger: "t".into(),
            events,
            template: TriggerTemplate::default(),
        }
    }

    #[test]
    fn renders_one_line_per_event_in_dependency_order() {
        let lines = render(&firing());
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].dependency.as_str(), lines[0].event.as_str()),
            ("a", "e1")
        );
        assert_eq!(lines[1].data, r#"{"k":"e2"}"#);
        assert_eq!(
            (
                lines[0].source.as_str(),
                lines[0].subject.as_str(),
                lines[0].ty.as_str()
            ),
            ("webhook", "example", "webhook")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn interval_throttles() -> anyhow::Result<()> {
        let t = LogTrigger::build(
            "t",
            &LogSpec {
                interval_seconds: Some(10),
            },
        );
        let f = firing();
        assert_eq!(t.execute(&f).await?, Outcome::Logged { events: 2 });
        assert_eq!(t.execute(&f).await?, Outcome::Throttled);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(t.execute(&f).await?, Outcome::Logged { events: 2 });
        Ok(())
    }

    #[tokio::test]
    async fn without_interval_every_firing_is_logged() -> anyhow::Result<()> {
        let t = LogTrigger::build("t", &LogSpec::default());
        let f = firing();
        assert_eq!(t.execute(&f).await?, Outcome::Logged { events: 2 });
        assert_eq!(t.execute(&f).await?, Outcome::Logged { events: 2 });
        Ok(())
    }
}
