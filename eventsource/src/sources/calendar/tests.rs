//! The calendar source under `tokio::time::pause()`: ticks, exclusion dates, time zones across DST,
//! catch-up after a simulated restart without double fire.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_crds::eventsource::{CalendarEventSource, CatchupConfiguration, EventPersistence};
use tokio_util::sync::CancellationToken;

use super::{CalendarUpstream, TokioClock};
use crate::pull::Pull;
use crate::testing::{context, Recorder, Secrets};
use crate::{PullSource, SourceContext};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("the test timestamp is RFC 3339")
        .with_timezone(&Utc)
}

fn upstream(spec: &CalendarEventSource, ctx: &SourceContext, origin: &str) -> CalendarUpstream {
    CalendarUpstream::build("cal", "tick", spec, ctx, Arc::new(TokioClock::new(utc(origin))))
        .expect("the test's calendar spec builds")
}

/// The source as `build` makes it: the schedule on the pull skeleton.
fn source(spec: &CalendarEventSource, ctx: &SourceContext, origin: &str) -> Pull<CalendarUpstream> {
    Pull::new("cal", "tick", upstream(spec, ctx, origin), ctx)
}

/// Runs `source` for `for_how_long` of (paused) time, then cancels it and waits for it to stop.
async fn run_for(source: Pull<CalendarUpstream>, for_how_long: Duration) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Box::new(source).run(cancel.clone()));
    tokio::time::sleep(for_how_long).await;
    cancel.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(1), task).await;
    assert!(stopped.is_ok(), "the source stops within 1 s of cancellation");
}

fn times(rec: &Recorder) -> Vec<String> {
    rec.events()
        .iter()
        .map(|(_, e)| {
            e.time()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        })
        .collect()
}

fn event_times(rec: &Recorder) -> Vec<Value> {
    rec.events()
        .iter()
        .map(|(_, e)| e.data().map(|d| d["eventTime"].clone()).unwrap_or(Value::Null))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn cron_ticks_with_upstream_event_data_and_tick_ids() {
    let rec = Arc::new(Recorder::default());
    let ctx = context(Secrets::default(), rec.clone());
    let spec = CalendarEventSource {
        schedule: Some("*/2 * * * *".into()),
        metadata: Some([("team".to_string(), "ops".to_string())].into()),
        ..Default::default()
    };
    let expected_id = upstream(&spec, &ctx, "2026-01-01T10:00:30Z").event_id(utc("2026-01-01T10:02:00Z"));
    run_for(
        source(&spec, &ctx, "2026-01-01T10:00:30Z"),
        Duration::from_secs(6 * 60),
    )
    .await;
    assert_eq!(
        times(&rec),
        [
            "2026-01-01T10:02:00Z",
            "2026-01-01T10:04:00Z",
            "2026-01-01T10:06:00Z"
        ]
    );
    let events = rec.events();
    let (subject, first) = &events[0];
    assert_eq!(subject.event_name, "tick");
    assert_eq!(first.ty(), "calendar");
    assert_eq!(first.id(), expected_id);
    assert_eq!(
        first.data(),
        Some(&json!({"eventTime": "2026-01-01 10:02:00 +0000 UTC", "metadata": {"team": "ops"}}))
    );
}

#[tokio::test(start_paused = true)]
async fn interval_ticks() {
    let rec = Arc::new(Recorder::default());
    let ctx = context(Secrets::default(), rec.clone());
    let spec = CalendarEventSource {
        interval: Some("10s".into()),
        ..Default::default()
    };
    run_for(
        source(&spec, &ctx, "2026-01-01T00:00:00Z"),
        Duration::from_secs(35),
    )
    .await;
    assert_eq!(
        times(&rec),
        [
            "2026-01-01T00:00:10Z",
            "2026-01-01T00:00:20Z",
            "2026-01-01T00:00:30Z"
        ]
    );
    assert!(rec.events()[0]
        .1
        .data()
        .is_some_and(|d| d.get("metadata").is_none()));
}

#[tokio::test(start_paused = true)]
async fn exclusion_dates_skip_whole_days() {
    let rec = Arc::new(Recorder::default());
    let ctx = context(Secrets::default(), rec.clone());
    let spec = CalendarEventSource {
        schedule: Some("0 12 * * *".into()),
        exclusion_dates: vec![
            "EXDATE:20260102T000000Z,20260104T083000Z".into(),
            "20260103T000000Z".into(), // no prefix: ignored, as upstream
        ],
        ..Default::default()
    };
    run_for(
        source(&spec, &ctx, "2026-01-01T00:00:00Z"),
        Duration::from_secs(5 * 86400),
    )
    .await;
    assert_eq!(
        times(&rec),
        [
            "2026-01-01T12:00:00Z",
            "2026-01-03T12:00:00Z",
            "2026-01-05T12:00:00Z"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn time_zone_across_spring_forward_and_fall_back() {
    let rec = Arc::new(Recorder::default());
    let ctx = context(Secrets::default(), rec.clone());
    let spec = CalendarEventSource {
        schedule: Some("30 2 * * *".into()),
        timezone: Some("Europe/Berlin".into()),
        ..Default::default()
    };
    // 2026-03-29: 02:30 does not exist in Berlin.
    run_for(
        source(&spec, &ctx, "2026-03-27T12:00:00Z"),
        Duration::from_secs(3 * 86400),
    )
    .await;
    assert_eq!(
        times(&rec),
        ["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"],
        "skipped on the spring-forward day"
    );
    assert_eq!(
        event_times(&rec),
        [
            json!("2026-03-28 02:30:00 +0100 CET"),
            json!("2026-03-30 02:30:00 +0200 CEST")
        ]
    );
    // 2026-10-25: 02:30 happens twice; it fires once.
    let rec = Arc::new(Recorder::default());
    let ctx = context(Secrets::default(), rec.clone());
    run_for(
        source(&spec, &ctx, "2026-10-24T12:00:00Z"),
        Duration::from_secs(2 * 86400),
    )
    .await;
    assert_eq!(times(&rec), ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
    // A CRON_TZ prefix wins over `timezone`.
    let rec = Arc::new(Recorder::default());
    let ctx = context(Secrets::default(), rec.clone());
    let tokyo = CalendarEventSource {
        schedule: Some("CRON_TZ=Asia/Tokyo 0 9 * * *".into()),
        timezone: Some("Europe/Berlin".into()),
        ..Default::default()
    };
    run_for(
        source(&tokyo, &ctx, "2026-01-01T00:00:00Z"),
        Duration::from_secs(86400 + 60),
    )
    .await;
    assert_eq!(times(&rec), ["2026-01-02T00:00:00Z"]);
}

fn persistent(max: Option<&str>) -> CalendarEventSource {
    CalendarEventSource {
        schedule: Some("* * * * *".into()),
        persistence: Some(EventPersistence {
            catchup: Some(CatchupConfiguration {
                enabled: true,
                max_duration: max.map(str::to_string),
            }),
            config_map: None,
        }),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn catch_up_after_a_restart_fires_missed_ticks_once() {
    let rec = Arc::new(Recorder::default());
    // One context = one checkpoint store shared by both runs (the "bus KV" that survives a restart).
    let ctx = context(Secrets::default(), rec.clone());
    let spec = persistent(None);
    run_for(
        source(&spec, &ctx, "2026-01-01T00:00:30Z"),
        Duration::from_secs(3 * 60),
    )
    .await;
    assert_eq!(
        times(&rec),
        [
            "2026-01-01T00:01:00Z",
            "2026-01-01T00:02:00Z",
            "2026-01-01T00:03:00Z"
        ]
    );
    // Down for seven minutes: the restart fires 00:04 … 00:10 at once, then goes on ticking.
    run_for(
        source(&spec, &ctx, "2026-01-01T00:10:30Z"),
        Duration::from_secs(60),
    )
    .await;
    let t = times(&rec);
    assert_eq!(t.len(), 11, "{t:?}");
    assert_eq!(t[3], "2026-01-01T00:04:00Z");
    assert_eq!(t[10], "2026-01-01T00:11:00Z");
    assert_eq!(rec.duplicates(), 0, "no tick was sent twice");
    // A restart right away fires nothing old again.
    run_for(
        source(&spec, &ctx, "2026-01-01T00:11:10Z"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(times(&rec).len(), 11);
    assert_eq!(rec.duplicates(), 0);
}

#[tokio::test(start_paused = true)]
async fn catch_up_goes_back_at_most_max_duration() {
    let rec = Arc::new(Recorder::default());
    let ctx = context(Secrets::default(), rec.clone());
    let spec = persistent(Some("3m"));
    run_for(
        source(&spec, &ctx, "2026-01-01T00:00:30Z"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(times(&rec), ["2026-01-01T00:01:00Z"]);
    run_for(
        source(&spec, &ctx, "2026-01-01T01:00:30Z"),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        times(&rec)[1..],
        [
            "2026-01-01T00:58:00Z",
            "2026-01-01T00:59:00Z",
            "2026-01-01T01:00:00Z"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn without_persistence_a_restart_starts_from_now() {
    let rec = Arc::new(Recorder::default());
    let ctx = context(Secrets::default(), rec.clone());
    let spec = CalendarEventSource {
        schedule: Some("* * * * *".into()),
        ..Default::default()
    };
    run_for(
        source(&spec, &ctx, "2026-01-01T00:00:30Z"),
        Duration::from_secs(60),
    )
    .await;
    run_for(
        source(&spec, &ctx, "2026-01-01T00:10:30Z"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(times(&rec), ["2026-01-01T00:01:00Z", "2026-01-01T00:11:00Z"]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_tick_is_retried_not_lost() {
    use crate::sender::EventSender;
    use sluice_eventbus::{Event, PublishAck, PublishError, Subject};
    /// Refuses the first two sends.
    struct Flaky {
        calls: std::sync::atomic::AtomicUsize,
        inner: Arc<Recorder>,
    }
    #[async_trait::async_trait]
    impl EventSender for Flaky {
        async fn send(&self, s: &Subject, e: &Event) -> Result<PublishAck, PublishError> {
            if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                return Err(PublishError::Unavailable);
            }
            self.inner.send(s, e).await
        }
    }
    let rec = Arc::new(Recorder::default());
    let mut ctx = context(Secrets::default(), rec.clone());
    ctx.sender = Arc::new(Flaky {
        calls: Default::default(),
        inner: rec.clone(),
    });
    let spec = CalendarEventSource {
        schedule: Some("* * * * *".into()),
        ..Default::default()
    };
    run_for(
        source(&spec, &ctx, "2026-01-01T00:00:30Z"),
        Duration::from_secs(45),
    )
    .await;
    assert_eq!(times(&rec), ["2026-01-01T00:01:00Z"]);
}

#[test]
fn bad_specs_are_build_errors() {
    let ctx = context(Secrets::default(), Arc::new(Recorder::default()));
    let clock = || Arc::new(TokioClock::new(Utc::now()));
    for (spec, field) in [
        (
            CalendarEventSource {
                schedule: Some("0 0 * * 7".into()),
                ..Default::default()
            },
            "spec.calendar.tick.schedule",
        ),
        (
            CalendarEventSource {
                schedule: Some("* * * * *".into()),
                timezone: Some("Mars/Olympus".into()),
                ..Default::default()
            },
            "spec.calendar.tick.timezone",
        ),
        (
            CalendarEventSource {
                interval: Some("10s".into()),
                exclusion_dates: vec!["EXDATE:2026-01-01".into()],
                ..Default::default()
            },
            "spec.calendar.tick.exclusionDates",
        ),
        (CalendarEventSource::default(), "spec.calendar.tick.schedule"),
    ] {
        let err = CalendarUpstream::build("cal", "tick", &spec, &ctx, clock())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(field), "{err}");
    }
    let mut no_store = context(Secrets::default(), Arc::new(Recorder::default()));
    no_store.checkpoints = None;
    assert!(matches!(
        CalendarUpstream::build("cal", "tick", &persistent(None), &no_store, clock()),
        Err(crate::BuildError::Unsupported { .. })
    ));
}
