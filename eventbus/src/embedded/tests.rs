//! Tests of the embedded bus. All run with paused time: waits are advanced by the runtime, not
//! slept, and `Instant::now()` tells how much virtual time passed.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::json;
use tokio::time::Instant;

use super::{EmbeddedBus, EmbeddedConfig, EmbeddedError};
use crate::{
    Bus, Deliveries, Delivery, Event, EventBuilder, PublishAck, PublishError, Subject, SubjectFilter,
    SubscribeError, SubscribeOptions,
};

const ACK_WAIT: Duration = Duration::from_secs(10);
/// Longer than anything a test waits for, so "nothing arrives" is meaningful.
const QUIET: Duration = Duration::from_secs(3600);

fn subject() -> Subject {
    Subject::new("es", "ev")
}

fn filter() -> SubjectFilter {
    SubjectFilter {
        event_source_name: "es".into(),
        event_name: "ev".into(),
    }
}

fn options() -> SubscribeOptions {
    SubscribeOptions {
        ack_wait: ACK_WAIT,
        max_deliver: 0,
        max_ack_pending: 256,
        deliver_all: false,
    }
}

fn event(id: &str) -> Event {
    EventBuilder::new("es", "ev", "webhook")
        .id(id)
        .data_json(json!({ "n": id }))
        .build()
        .expect("valid event")
}

fn bus() -> EmbeddedBus {
    EmbeddedBus::new(EmbeddedConfig::default())
}

async fn publish(bus: &EmbeddedBus, id: &str) -> PublishAck {
    bus.publish(&subject(), &event(id))
        .await
        .expect("publish is acked")
}

async fn next(deliveries: &mut Deliveries) -> Delivery {
    tokio::time::timeout(QUIET, deliveries.next())
        .await
        .expect("a delivery within the quiet period")
        .expect("the stream has not ended")
}

async fn assert_quiet(deliveries: &mut Deliveries, within: Duration) {
    if let Ok(delivery) = tokio::time::timeout(within, deliveries.next()).await {
        panic!("expected no delivery within {within:?}, got {delivery:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn publish_subscribe_ack() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    let published = event("e1");
    let ack = bus
        .publish(&subject(), &published)
        .await
        .expect("publish is acked");
    assert_eq!(ack, PublishAck::stored(1, false));
    assert_eq!(bus.stored(), 1);

    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.event, published);
    assert_eq!(delivery.event.data(), Some(&json!({ "n": "e1" })));
    assert_eq!(delivery.subject, subject());
    assert_eq!(delivery.attempt, 1);
    assert_eq!(bus.pending("d"), 1);
    delivery.ack().await.expect("acks");

    assert_eq!(bus.pending("d"), 0);
    assert_eq!(bus.stored(), 0, "an event acked by its only owner is removed");
    assert_quiet(&mut deliveries, ACK_WAIT * 3).await;
}

#[tokio::test(start_paused = true)]
async fn other_subjects_are_not_delivered() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    let other = EventBuilder::new("es", "other", "webhook")
        .id("x")
        .build()
        .expect("valid");
    bus.publish(&Subject::new("es", "other"), &other)
        .await
        .expect("publishes");
    publish(&bus, "e1").await;
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.event.id(), "e1");
    delivery.ack().await.expect("acks");
    assert_quiet(&mut deliveries, QUIET).await;
    assert_eq!(
        bus.stored(),
        1,
        "the other event waits, unclaimed, for a later durable"
    );
}

#[tokio::test(start_paused = true)]
async fn each_durable_gets_every_event() {
    let bus = bus();
    let mut a = bus.subscribe("a", filter(), options()).await.expect("subscribes");
    let mut b = bus.subscribe("b", filter(), options()).await.expect("subscribes");
    for id in ["e1", "e2", "e3"] {
        publish(&bus, id).await;
    }
    for id in ["e1", "e2", "e3"] {
        let delivery = next(&mut a).await;
        assert_eq!((delivery.event.id(), delivery.attempt), (id, 1));
        delivery.ack().await.expect("acks");
    }
    assert_eq!(bus.stored(), 3, "durable b has not acked yet");
    for id in ["e1", "e2", "e3"] {
        let delivery = next(&mut b).await;
        assert_eq!((delivery.event.id(), delivery.attempt), (id, 1));
        delivery.ack().await.expect("acks");
    }
    assert_eq!(bus.stored(), 0);
}

#[tokio::test(start_paused = true)]
async fn subscribers_of_one_durable_share_its_events() {
    let bus = bus();
    let first = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    let second = bus.subscribe("d", filter(), options()).await.expect("joins");
    let ids: Vec<String> = (0..100).map(|n| format!("e{n}")).collect();
    for id in &ids {
        publish(&bus, id).await;
    }
    let mut merged = futures::stream::select(first.map(|d| (0, d)), second.map(|d| (1, d)));
    let mut got = Vec::new();
    let mut per_subscriber = [0; 2];
    for _ in 0..ids.len() {
        let (which, delivery) = tokio::time::timeout(QUIET, merged.next())
            .await
            .expect("a delivery")
            .expect("not ended");
        assert_eq!(delivery.attempt, 1);
        per_subscriber[which] += 1;
        got.push(delivery.event.id().to_owned());
        delivery.ack().await.expect("acks");
    }
    assert_eq!(got, ids, "each event exactly once, in publish order");
    assert!(
        per_subscriber.iter().all(|&n| n > 0),
        "both subscribers worked: {per_subscriber:?}"
    );
    assert!(
        tokio::time::timeout(ACK_WAIT * 3, merged.next()).await.is_err(),
        "nothing is redelivered"
    );
    assert_eq!(bus.stored(), 0);
}

#[tokio::test(start_paused = true)]
async fn nak_redelivers_after_the_delay() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    publish(&bus, "e1").await;
    let first = next(&mut deliveries).await;
    assert_eq!(first.attempt, 1);
    let naked_at = Instant::now();
    first.nak(Duration::from_secs(5)).await.expect("naks");

    assert_quiet(&mut deliveries, Duration::from_millis(4_900)).await;
    let second = next(&mut deliveries).await;
    assert_eq!((second.event.id(), second.attempt), ("e1", 2));
    assert_eq!(
        naked_at.elapsed(),
        Duration::from_secs(5),
        "redelivered exactly after the delay"
    );
    second.ack().await.expect("acks");
    assert_eq!(bus.stored(), 0);
}

#[tokio::test(start_paused = true)]
async fn unsettled_delivery_is_redelivered_after_ack_wait() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    publish(&bus, "e1").await;
    let delivered_at = Instant::now();
    let held = next(&mut deliveries).await;

    let again = next(&mut deliveries).await;
    assert_eq!((again.event.id(), again.attempt), ("e1", 2));
    assert_eq!(delivered_at.elapsed(), ACK_WAIT);

    // A nak through the outdated delivery does not reschedule the event...
    held.nak(Duration::ZERO)
        .await
        .expect("a stale nak is accepted and ignored");
    assert_eq!(bus.pending("d"), 1);
    assert_quiet(&mut deliveries, ACK_WAIT / 2).await;
    // ...and the current one settles it.
    again.ack().await.expect("acks");
    assert_eq!(bus.stored(), 0);
    assert_quiet(&mut deliveries, QUIET).await;
}

#[tokio::test(start_paused = true)]
async fn progress_restarts_the_ack_wait() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    publish(&bus, "e1").await;
    let held = next(&mut deliveries).await;
    // Three heartbeats, each before the ack wait ends: no redelivery across 1.5 ack waits.
    for _ in 0..3 {
        tokio::time::sleep(ACK_WAIT / 2).await;
        held.progress().await.expect("progress");
    }
    assert_quiet(&mut deliveries, ACK_WAIT / 2).await;
    // Without further heartbeats the ack wait runs out and the event comes back.
    let again = next(&mut deliveries).await;
    assert_eq!((again.event.id(), again.attempt), ("e1", 2));
    // The outdated delivery can no longer extend anything.
    held.progress()
        .await
        .expect("a stale progress is accepted and ignored");
    again.ack().await.expect("acks");
    assert_eq!(bus.stored(), 0);
}

#[tokio::test(start_paused = true)]
async fn ack_through_an_outdated_delivery_settles_the_event() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    publish(&bus, "e1").await;
    let held = next(&mut deliveries).await;
    let again = next(&mut deliveries).await;
    assert_eq!(again.attempt, 2);
    held.ack().await.expect("acks");
    assert_eq!(bus.stored(), 0, "the work was done: the event is settled");
    again.ack().await.expect("a second ack is a no-op");
    assert_quiet(&mut deliveries, QUIET).await;
}

#[tokio::test(start_paused = true)]
async fn dropped_delivery_counts_as_not_acked() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    publish(&bus, "e1").await;
    let delivered_at = Instant::now();
    drop(next(&mut deliveries).await);

    assert_quiet(&mut deliveries, ACK_WAIT - Duration::from_millis(1)).await;
    let again = next(&mut deliveries).await;
    assert_eq!((again.event.id(), again.attempt), ("e1", 2));
    assert_eq!(delivered_at.elapsed(), ACK_WAIT);
    again.ack().await.expect("acks");
}

#[tokio::test(start_paused = true)]
async fn term_never_redelivers() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    publish(&bus, "e1").await;
    publish(&bus, "e2").await;
    next(&mut deliveries).await.term().await.expect("terms");
    let second = next(&mut deliveries).await;
    assert_eq!((second.event.id(), second.attempt), ("e2", 1));
    second.ack().await.expect("acks");
    assert_quiet(&mut deliveries, QUIET).await;
    assert_eq!(bus.stored(), 0);
}

#[tokio::test(start_paused = true)]
async fn max_deliver_gives_up_after_naks() {
    let bus = bus();
    let options = SubscribeOptions {
        max_deliver: 3,
        ..options()
    };
    let mut deliveries = bus.subscribe("d", filter(), options).await.expect("subscribes");
    publish(&bus, "e1").await;
    for attempt in 1..=3 {
        let delivery = next(&mut deliveries).await;
        assert_eq!((delivery.event.id(), delivery.attempt), ("e1", attempt));
        delivery.nak(Duration::from_secs(1)).await.expect("naks");
    }
    assert_quiet(&mut deliveries, QUIET).await;
    assert_eq!(bus.pending("d"), 0);
    assert_eq!(bus.stored(), 0, "dropped by its only owner");
}

#[tokio::test(start_paused = true)]
async fn max_deliver_gives_up_after_ack_waits() {
    let bus = bus();
    let options = SubscribeOptions {
        max_deliver: 2,
        ..options()
    };
    let mut deliveries = bus.subscribe("d", filter(), options).await.expect("subscribes");
    publish(&bus, "e1").await;
    publish(&bus, "e2").await;
    let first = next(&mut deliveries).await;
    assert_eq!((first.event.id(), first.attempt), ("e1", 1));
    let second = next(&mut deliveries).await;
    assert_eq!((second.event.id(), second.attempt), ("e2", 1));
    second.ack().await.expect("acks");
    let again = next(&mut deliveries).await;
    assert_eq!((again.event.id(), again.attempt), ("e1", 2));
    drop((first, again));
    assert_quiet(&mut deliveries, QUIET).await;
    assert_eq!(bus.stored(), 0);
}

#[tokio::test(start_paused = true)]
async fn same_id_within_the_window_is_stored_once() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    assert_eq!(publish(&bus, "e1").await, PublishAck::stored(1, false));
    assert_eq!(publish(&bus, "e1").await, PublishAck::stored(1, true));
    assert_eq!(bus.stored(), 1);
    next(&mut deliveries).await.ack().await.expect("acks");
    // Still a duplicate after it was acked: the sender's retry must not run it twice.
    assert_eq!(publish(&bus, "e1").await, PublishAck::stored(1, true));
    assert_quiet(&mut deliveries, ACK_WAIT * 3).await;

    tokio::time::advance(EmbeddedConfig::default().duplicate_window).await;
    assert_eq!(publish(&bus, "e1").await, PublishAck::stored(2, false));
    let again = next(&mut deliveries).await;
    assert_eq!((again.event.id(), again.attempt), ("e1", 1));
}

#[tokio::test(start_paused = true)]
async fn full_store_is_unavailable_until_an_event_is_settled() {
    let bus = EmbeddedBus::new(EmbeddedConfig {
        capacity: 3,
        ..EmbeddedConfig::default()
    });
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    for id in ["e1", "e2", "e3"] {
        publish(&bus, id).await;
    }
    let full = bus.publish(&subject(), &event("e4")).await;
    assert!(matches!(full, Err(PublishError::Unavailable)), "{full:?}");
    assert_eq!(bus.stored(), 3);

    next(&mut deliveries).await.ack().await.expect("acks");
    assert_eq!(publish(&bus, "e4").await, PublishAck::stored(4, false));
    // The refused publish was not recorded as seen: its retry went through above.
    for id in ["e2", "e3", "e4"] {
        assert_eq!(next(&mut deliveries).await.event.id(), id);
    }
}

#[tokio::test(start_paused = true)]
async fn unclaimed_events_make_room_and_expire() {
    let bus = EmbeddedBus::new(EmbeddedConfig {
        capacity: 2,
        ..EmbeddedConfig::default()
    });
    for id in ["e1", "e2", "e3"] {
        publish(&bus, id).await;
    }
    assert_eq!(bus.stored(), 2, "the oldest event nobody owned was evicted");
    let options = SubscribeOptions {
        deliver_all: true,
        ..options()
    };
    let mut late = bus
        .subscribe("late", filter(), options.clone())
        .await
        .expect("subscribes");
    assert_eq!(next(&mut late).await.event.id(), "e2");
    assert_eq!(next(&mut late).await.event.id(), "e3");

    // Owned events are never evicted: the store is full.
    let full = bus.publish(&subject(), &event("e4")).await;
    assert!(matches!(full, Err(PublishError::Unavailable)), "{full:?}");
    drop(late);

    let other = EmbeddedBus::default();
    publish(&other, "e1").await;
    tokio::time::advance(EmbeddedConfig::default().unclaimed_retention).await;
    publish(&other, "e2").await;
    assert_eq!(other.stored(), 1, "the unclaimed e1 expired");
    let mut late = other
        .subscribe("late", filter(), options)
        .await
        .expect("subscribes");
    assert_eq!(next(&mut late).await.event.id(), "e2");
}

#[tokio::test(start_paused = true)]
async fn deliver_all_reads_stored_events_and_new_ones() {
    let bus = bus();
    let _early = bus
        .subscribe("early", filter(), options())
        .await
        .expect("subscribes");
    publish(&bus, "e1").await;
    publish(&bus, "e2").await;

    let mut all = bus
        .subscribe(
            "all",
            filter(),
            SubscribeOptions {
                deliver_all: true,
                ..options()
            },
        )
        .await
        .expect("subscribes");
    let mut new = bus
        .subscribe("new", filter(), options())
        .await
        .expect("subscribes");
    publish(&bus, "e3").await;

    for id in ["e1", "e2", "e3"] {
        let delivery = next(&mut all).await;
        assert_eq!((delivery.event.id(), delivery.attempt), (id, 1));
        delivery.ack().await.expect("acks");
    }
    let delivery = next(&mut new).await;
    assert_eq!(delivery.event.id(), "e3");
    delivery.ack().await.expect("acks");
    assert_quiet(&mut new, QUIET).await;
    assert_eq!(bus.stored(), 3, "durable `early` has settled none of them");
}

#[tokio::test(start_paused = true)]
async fn max_ack_pending_holds_back_new_events() {
    let bus = bus();
    let options = SubscribeOptions {
        max_ack_pending: 2,
        ..options()
    };
    let mut deliveries = bus.subscribe("d", filter(), options).await.expect("subscribes");
    for id in ["e1", "e2", "e3"] {
        publish(&bus, id).await;
    }
    let first = next(&mut deliveries).await;
    let second = next(&mut deliveries).await;
    assert_quiet(&mut deliveries, ACK_WAIT / 2).await;
    assert_eq!(bus.pending("d"), 2);

    // A nak'd event still holds its slot until it is settled...
    second.nak(Duration::from_secs(1)).await.expect("naks");
    assert_quiet(&mut deliveries, Duration::from_millis(900)).await;
    // ...the ack frees one, taken by the new event before the nak delay ends.
    first.ack().await.expect("acks");
    let acked_at = Instant::now();
    let third = next(&mut deliveries).await;
    assert_eq!((third.event.id(), third.attempt), ("e3", 1));
    let redelivered = next(&mut deliveries).await;
    assert_eq!((redelivered.event.id(), redelivered.attempt), ("e2", 2));
    assert_eq!(
        acked_at.elapsed(),
        Duration::from_millis(100),
        "at the end of the nak delay"
    );
}

#[tokio::test(start_paused = true)]
async fn first_deliveries_keep_publish_order() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    let ids: Vec<String> = (0..50).map(|n| format!("e{n}")).collect();
    for id in &ids {
        publish(&bus, id).await;
    }
    let mut got = Vec::new();
    for _ in &ids {
        let delivery = next(&mut deliveries).await;
        got.push(delivery.event.id().to_owned());
        delivery.ack().await.expect("acks");
    }
    assert_eq!(got, ids);
}

#[tokio::test(start_paused = true)]
async fn close_ends_streams_and_refuses_work() {
    let bus = bus();
    let mut idle = bus
        .subscribe("idle", filter(), options())
        .await
        .expect("subscribes");
    let mut busy = bus
        .subscribe("busy", filter(), options())
        .await
        .expect("subscribes");
    publish(&bus, "e1").await;
    publish(&bus, "e2").await;
    let settled = next(&mut idle).await;
    assert_eq!(settled.event.id(), "e1");
    settled.ack().await.expect("acks");
    let in_flight = next(&mut busy).await;

    let closing = tokio::spawn({
        let bus = bus.clone();
        async move { bus.close().await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!closing.is_finished(), "close waits for the in-flight delivery");
    assert!(
        idle.next().await.is_none(),
        "the stream ended although e2 was ready"
    );
    assert!(busy.next().await.is_none());
    assert!(matches!(
        bus.publish(&subject(), &event("e3")).await,
        Err(PublishError::Closed)
    ));
    assert!(matches!(
        bus.subscribe("d", filter(), options()).await,
        Err(SubscribeError::Closed)
    ));

    in_flight.ack().await.expect("acks are accepted after close");
    tokio::time::timeout(Duration::from_secs(1), closing)
        .await
        .expect("close returns once in-flight work is settled")
        .expect("the close task did not panic");
    bus.close().await;
}

#[tokio::test(start_paused = true)]
async fn close_gives_up_on_in_flight_work_after_ack_wait() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    publish(&bus, "e1").await;
    let _held = next(&mut deliveries).await;
    let started = Instant::now();
    bus.close().await;
    assert_eq!(started.elapsed(), ACK_WAIT);
}

#[tokio::test(start_paused = true)]
async fn joining_with_another_filter_or_bad_options_fails() {
    let bus = bus();
    let _d = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    let other = SubjectFilter {
        event_source_name: "es".into(),
        event_name: "other".into(),
    };
    match bus.subscribe("d", other, options()).await {
        Err(SubscribeError::Backend(error)) => {
            assert!(matches!(
                error.downcast_ref::<EmbeddedError>(),
                Some(EmbeddedError::JoinDurable { .. })
            ));
        }
        other => panic!("expected a join error, got {:?}", other.map(|_| "a stream")),
    }
    for options in [
        SubscribeOptions {
            max_ack_pending: 0,
            ..options()
        },
        SubscribeOptions {
            ack_wait: Duration::ZERO,
            ..options()
        },
    ] {
        match bus.subscribe("new", filter(), options).await {
            Err(SubscribeError::Backend(error)) => {
                let error = error.downcast_ref::<EmbeddedError>();
                assert!(
                    matches!(error, Some(EmbeddedError::CreateDurable { .. })),
                    "{error:?}"
                );
            }
            other => panic!("expected a create error, got {:?}", other.map(|_| "a stream")),
        }
    }
}

#[tokio::test]
async fn concurrent_publishers_and_subscribers_lose_nothing() {
    let bus = bus();
    let first = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    let second = bus.subscribe("d", filter(), options()).await.expect("joins");
    let publishers: Vec<_> = (0..4)
        .map(|task| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for n in 0..500 {
                    bus.publish(&subject(), &event(&format!("t{task}-{n}")))
                        .await
                        .expect("publishes");
                }
            })
        })
        .collect();
    let mut merged = futures::stream::select(first, second);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2_000 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), merged.next())
            .await
            .expect("a delivery")
            .expect("not ended");
        assert!(
            seen.insert(delivery.event.id().to_owned()),
            "delivered twice: {delivery:?}"
        );
        delivery.ack().await.expect("acks");
    }
    for publisher in publishers {
        publisher.await.expect("publisher finished");
    }
    assert_eq!(bus.stored(), 0);
}

#[tokio::test(start_paused = true)]
async fn huge_durations_mean_never_rather_than_a_panic() {
    let bus = bus();
    let options = SubscribeOptions {
        ack_wait: Duration::MAX,
        ..options()
    };
    let mut deliveries = bus.subscribe("d", filter(), options).await.expect("subscribes");
    publish(&bus, "e1").await;
    next(&mut deliveries)
        .await
        .nak(Duration::MAX)
        .await
        .expect("naks");
    publish(&bus, "e2").await;
    let held = next(&mut deliveries).await;
    assert_eq!(held.event.id(), "e2");
    assert_quiet(&mut deliveries, QUIET).await;
    assert_eq!(bus.pending("d"), 2);
}

#[tokio::test(start_paused = true)]
async fn close_does_not_wait_for_dropped_deliveries() {
    let bus = bus();
    let mut deliveries = bus.subscribe("d", filter(), options()).await.expect("subscribes");
    publish(&bus, "e1").await;
    drop(next(&mut deliveries).await);
    assert_eq!(bus.pending("d"), 1, "still unacked: it would be redelivered");
    let started = Instant::now();
    bus.close().await;
    assert_eq!(started.elapsed(), Duration::ZERO);
}
