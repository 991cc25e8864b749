//! `calendar`: ticks on a cron `schedule` or a fixed `interval`.
//!
//! Schedule: 5-field cron read as upstream's robfig/cron parser reads it (see [`sluice_crds::eventsource::cron`]), in `timezone`
//! (an IANA name; a `CRON_TZ=`/`TZ=` prefix of the spec wins; default UTC, or the zone named by the
//! `TZ` environment variable). `interval` (a duration) ticks every interval from the start (or from
//! the last persisted tick). `exclusionDates` (`EXDATE:20260101T000000Z,…`) skip every tick on those
//! days (the tick's local date), as upstream.
//!
//! Event: `type` calendar, `time` = the scheduled tick, data `{"eventTime": <tick as Go's
//! time.String>, "metadata": …}` as upstream. The event id is derived from EventSource/event/tick, so
//! a tick published twice (a crash between publish and checkpoint) is one event on the bus.
//!
//! Persistence (`persistence.catchup.enabled`): after each published tick its time is stored in the
//! process's checkpoint store (a JetStream key-value bucket in cluster mode, a file under `sluice run`);
//! on start, every tick missed since the stored one is fired, oldest first, going back at most
//! `catchup.maxDuration`.
//!
//! On the pull skeleton ([`crate::pull`]): `connect` loads the checkpoint (where ticking starts),
//! `next` sleeps until the next tick (under tokio's clock, so tests run paused), `decode` builds the
//! event, and `settle` — the tick's "ack" — saves the checkpoint. Delivery guarantee: a tick is
//! checkpointed only after the bus stored it (or the EventSource's filter dropped it, or it was
//! rejected for good); a publish that fails is retried with backoff until it succeeds or the source
//! stops, so a tick is lost only when the source stops before the bus takes it — and with
//! persistence it is fired on the next start.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use sluice_crds::eventsource::cron::CronSpec;
use sluice_crds::eventsource::{CalendarEventSource, CalendarSchedule};
use sluice_eventbus::deterministic_id;

use crate::checkpoint::CheckpointStore;
pub use crate::clock::{Clock, SystemClock, TokioClock};
use crate::pull::{Draft, Malformed, Names, Pull, Settle, Upstream, UpstreamError};
use crate::push::metadata_value;
use crate::sender::Retry;
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "calendar";

/// When ticks happen.
#[derive(Clone, Debug, PartialEq)]
pub enum Timing {
    /// Cron ticks in a zone.
    Cron(CronSpec, Tz),
    /// A fixed period.
    Every(Duration),
}

/// One calendar event, resolved: the schedule the skeleton ticks on.
pub struct CalendarUpstream {
    event_source: String,
    event_name: String,
    timing: Timing,
    zone: Tz,
    excluded: BTreeSet<NaiveDate>,
    metadata: Option<BTreeMap<String, String>>,
    catchup: Option<Option<Duration>>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    clock: Arc<dyn Clock>,
}

/// Where the schedule stands: the last tick handled (fired, or skipped on an excluded day).
pub struct Cursor(DateTime<Utc>);

/// Parses `EXDATE:20260101T000000Z,…` entries into dates; entries without the prefix are ignored, as
/// upstream.
pub fn exclusion_dates(entries: &[String]) -> Result<BTreeSet<NaiveDate>, String> {
    let mut out = BTreeSet::new();
    for entry in entries {
        let Some(dates) = entry.strip_prefix("EXDATE:") else {
            continue;
        };
        for d in dates.split(',') {
            let day = NaiveDate::parse_from_str(d.get(..8).unwrap_or(""), "%Y%m%d")
                .map_err(|_| format!("{d:?} is not a date-time like 20260101T000000Z"))?;
            out.insert(day);
        }
    }
    Ok(out)
}

/// Parses a zone name.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name:?} (use an IANA name such as Europe/Berlin)"))
}

/// Go's `time.Time.String()` layout, which upstream's `eventTime` uses.
pub fn go_time_string(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %z %Z")
        .to_string()
}

impl CalendarUpstream {
    /// Resolves one calendar event.
    pub fn build(
        event_source: &str,
        event_name: &str,
        spec: &CalendarEventSource,
        ctx: &SourceContext,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BuildError> {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: event_source.into(),
            event: event_name.into(),
            reason: format!("spec.calendar.{event_name}.{reason}"),
        };
        let default_zone = match spec.timezone.as_deref().map(str::trim).filter(|z| !z.is_empty()) {
            Some(z) => parse_zone(z).map_err(|r| invalid(format!("timezone: {r}")))?,
            None => std::env::var("TZ")
                .ok()
                .and_then(|z| z.parse::<Tz>().ok())
                .unwrap_or(chrono_tz::UTC),
        };
        let resolved = spec
            .resolve_schedule()
            .map_err(|e| invalid(format!("schedule: {e}")))?;
        let (timing, zone) = match resolved {
            CalendarSchedule::Every(d) => (Timing::Every(d), default_zone),
            CalendarSchedule::Cron { schedule, timezone } => {
                let zone = match timezone {
                    Some(z) => parse_zone(&z).map_err(|r| invalid(format!("schedule: {r}")))?,
                    None => default_zone,
                };
                (Timing::Cron(schedule, zone), zone)
            }
        };
        let excluded =
            exclusion_dates(&spec.exclusion_dates).map_err(|r| invalid(format!("exclusionDates: {r}")))?;
        let catchup = match spec.persistence.as_ref().and_then(|p| p.catchup.as_ref()) {
            Some(c) if c.enabled => {
                let max = c
                    .max_duration
                    .as_deref()
                    .filter(|d| !d.trim().is_empty())
                    .map(|d| {
                        sluice_crds::duration::parse_go_duration(d)
                            .map_err(|e| invalid(format!("persistence.catchup.maxDuration: {e}")))
                    })
                    .transpose()?;
                Some(max)
            }
            _ => None,
        };
        if catchup.is_some() && ctx.checkpoints.is_none() {
            return Err(BuildError::Unsupported {
                event_source: event_source.into(),
                event: event_name.into(),
                what: "persistence.catchup without a checkpoint store in this process".into(),
            });
        }
        Ok(Self {
            event_source: event_source.into(),
            event_name: event_name.into(),
            timing,
            zone,
            excluded,
            metadata: spec.metadata.clone(),
            catchup,
            checkpoints: ctx.checkpoints.clone(),
            clock,
        })
    }

    fn checkpoint_key(&self) -> String {
        format!("calendar/{}/{}", self.event_source, self.event_name)
    }

    /// The first tick strictly after `after` (excluded days included; the caller skips them).
    pub fn next_tick(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.timing {
            Timing::Cron(spec, zone) => spec.next_after(after, *zone),
            Timing::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| after + d),
        }
    }

    fn is_excluded(&self, tick: DateTime<Utc>) -> bool {
        self.excluded
            .contains(&tick.with_timezone(&self.zone).date_naive())
    }

    /// The id of the event of `tick`.
    pub fn event_id(&self, tick: DateTime<Utc>) -> String {
        deterministic_id(&[
            SOURCE_TYPE,
            &self.event_source,
            &self.event_name,
            &tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ])
    }

    /// Upstream's data of the event of `tick`.
    pub fn event_data(&self, tick: DateTime<Utc>) -> Value {
        let mut data = Map::new();
        data.insert("eventTime".into(), Value::String(go_time_string(tick, self.zone)));
        if let Some(m) = metadata_value(self.metadata.as_ref()) {
            data.insert("metadata".into(), m);
        }
        Value::Object(data)
    }

    /// Where ticking starts: now, or (catch-up) the stored last tick, bounded by `maxDuration`.
    async fn start_cursor(&self) -> DateTime<Utc> {
        // Whole seconds: interval ticks then fall on whole seconds too, which is the precision of the
        // checkpoint and of the tick's event id.
        let now = self.clock.now().trunc_subsecs(0);
        let (Some(store), Some(max)) = (&self.checkpoints, &self.catchup) else {
            return now;
        };
        let last = match store.load(&self.checkpoint_key()).await {
            Ok(Some(text)) => match DateTime::parse_from_rfc3339(&text) {
                Ok(t) => t.with_timezone(&Utc),
                Err(_) => {
                    tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, "ignoring an unreadable last-tick checkpoint");
                    return now;
                }
            },
            Ok(None) => return now,
            Err(error) => {
                tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %sluice_eventbus::error_chain(&error), "failed to read the last tick; not catching up");
                return now;
            }
        };
        let floor = max
            .and_then(|m| chrono::Duration::from_std(m).ok())
            .map(|m| now - m);
        let cursor = match floor {
            Some(f) if f > last => f,
            _ => last,
        };
        tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, from = %cursor, "catching up missed ticks");
        cursor.min(now)
    }
}

#[async_trait]
impl Upstream for CalendarUpstream {
    type Session = Cursor;
    /// The scheduled time of one tick.
    type Message = DateTime<Utc>;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry until stored: the tick exists only here; giving up would lose it. Stopping while
    /// retrying leaves it unrecorded, so catch-up fires it on the next start.
    fn retry(&self) -> Retry {
        Retry::UntilStored {
            first: Duration::from_millis(500),
        }
    }

    async fn connect(&self, _: &Names) -> Result<Cursor, UpstreamError> {
        Ok(Cursor(self.start_cursor().await))
    }

    /// Cancel-safe: the cursor moves only after the sleep, with no await in between.
    async fn next(&self, cursor: &mut Cursor) -> Result<Option<DateTime<Utc>>, UpstreamError> {
        loop {
            let Some(tick) = self.next_tick(cursor.0) else {
                tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, "the schedule has no further tick; stopping");
                // Not `None`: that would reconnect and ask again; nothing will ever come.
                return std::future::pending().await;
            };
            let now = self.clock.now();
            if tick > now {
                let wait = (tick - now).to_std().unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait).await;
                // The clock may have moved differently from the timer (suspend, clock steps): wait
                // again if it is still early.
                if self.clock.now() < tick {
                    continue;
                }
            }
            cursor.0 = tick;
            if self.is_excluded(tick) {
                tracing::debug!(eventsource = %self.event_source, event_name = %self.event_name, tick = %tick, "tick on an excluded date; skipped");
                continue;
            }
            return Ok(Some(tick));
        }
    }

    fn decode(&self, tick: &DateTime<Utc>) -> Result<Vec<Draft>, Malformed> {
        Ok(vec![Draft::new(self.event_data(*tick))
            .with_id(self.event_id(*tick))
            .with_time(*tick)])
    }

    /// Records the tick as done: the checkpoint the next start catches up from.
    async fn settle(&self, _: &mut Cursor, tick: DateTime<Utc>, settle: Settle) -> Result<(), UpstreamError> {
        // Never `Nak` (retried until stored); a tick the EventSource's filter dropped or the bus
        // rejected for good (`Term`, logged by the sender) is done all the same: never re-fired.
        // `Ack` is also a tick the filter dropped on purpose: the skeleton does not tell them apart.
        if settle == Settle::Ack {
            tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, event = %self.event_id(tick), tick = %tick, "published");
        }
        let (Some(store), Some(_)) = (&self.checkpoints, &self.catchup) else {
            return Ok(());
        };
        let value = tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // An error is not fatal (logged by the skeleton): the next checkpoint overwrites it; at
        // worst a restart re-fires this tick, which the bus dedupes by its id.
        store.save(&self.checkpoint_key(), &value).await?;
        Ok(())
    }

    fn locate(&self, tick: &DateTime<Utc>) -> String {
        tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

/// The tasks of the `calendar` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, CalendarEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let upstream = CalendarUpstream::build(es_name, event_name, spec, ctx, Arc::new(SystemClock))?;
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}
