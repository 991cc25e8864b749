//! The `redisStream` source against a real redis-server (`REDIS_URL`, from `scripts/services.sh
//! start redis`): exact entries round-trip, an entry the bus refused stays pending (no XACK) and is
//! delivered after a restart, and a dead consumer's pending entry is claimed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use sluice_crds::eventsource::RedisStreamEventSource;
use sluice_eventbus::Event;
use sluice_eventsource::sources::redis_stream;
use sluice_eventsource::testing::{self, one_source, setting, Recorder};
use sluice_eventsource::PullSource;

fn redis_host() -> String {
    let url = setting("REDIS_URL");
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string()
}

async fn connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{}", redis_host()))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

/// A fresh stream with the group created at `0`, so entries added before the source starts count.
async fn stream(con: &mut redis::aio::MultiplexedConnection, name: &str) {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(name)
        .arg(redis_stream::DEFAULT_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(con)
        .await
        .expect("create group");
}

async fn xadd(con: &mut redis::aio::MultiplexedConnection, name: &str, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(name).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(con).await.expect("xadd")
}

/// The XPENDING summary: count, lowest id, highest id, per-consumer counts.
type PendingSummary = (i64, Option<String>, Option<String>, Option<Vec<(String, String)>>);

async fn pending(con: &mut redis::aio::MultiplexedConnection, name: &str) -> i64 {
    let (count, _, _, _): PendingSummary = redis::cmd("XPENDING")
        .arg(name)
        .arg(redis_stream::DEFAULT_GROUP)
        .query_async(con)
        .await
        .expect("xpending");
    count
}

fn source(stream: &str, sender: Arc<Recorder>) -> Box<dyn PullSource> {
    let spec = RedisStreamEventSource {
        host_address: redis_host(),
        streams: vec![stream.into()],
        metadata: Some(BTreeMap::from([("team".into(), "ops".into())])),
        ..Default::default()
    };
    one_source("entries", spec, redis_stream::build, sender)
}

async fn run_until(stream: &str, recorder: Arc<Recorder>, n: usize) -> Vec<Event> {
    testing::run_until(source(stream, recorder.clone()), &recorder, n).await
}

#[tokio::test]
#[ignore = "needs Redis: scripts/test starts it and runs ignored tests"]
async fn entries_round_trip_exactly_and_are_acked() {
    let mut con = connection().await;
    let name = format!("sluice-rt-{}", uuid::Uuid::new_v4().simple());
    stream(&mut con, &name).await;
    let id = xadd(&mut con, &name, &[("message", "hello"), ("n", "1")]).await;
    let events = run_until(&name, Arc::new(Recorder::default()), 1).await;
    assert_eq!(
        events[0].data().cloned().expect("data"),
        json!({"stream": name, "message_id": id, "values": {"message": "hello", "n": "1"},
               "metadata": {"team": "ops"}})
    );
    assert_eq!(events[0].ty(), "redisStream");
    assert_eq!(pending(&mut con, &name).await, 0);
}

#[tokio::test]
#[ignore = "needs Redis: scripts/test starts it and runs ignored tests"]
async fn an_entry_the_bus_refused_stays_pending_and_is_delivered_after_a_restart() {
    let mut con = connection().await;
    let name = format!("sluice-nack-{}", uuid::Uuid::new_v4().simple());
    stream(&mut con, &name).await;
    let id = xadd(&mut con, &name, &[("k", "v")]).await;
    let refused = run_until(&name, Arc::new(Recorder::refusing()), 1).await;
    assert_eq!(pending(&mut con, &name).await, 1, "no XACK while the bus refuses");

    let events = run_until(&name, Arc::new(Recorder::default()), 1).await;
    assert_eq!(events[0].id(), refused[0].id());
    assert_eq!(events[0].data().expect("data")["message_id"], Value::String(id));
    assert_eq!(pending(&mut con, &name).await, 0);
}

#[tokio::test]
#[ignore = "needs Redis: scripts/test starts it and runs ignored tests"]
async fn a_dead_consumers_pending_entry_is_claimed() {
    let mut con = connection().await;
    let name = format!("sluice-claim-{}", uuid::Uuid::new_v4().simple());
    stream(&mut con, &name).await;
    let id = xadd(&mut con, &name, &[("k", "orphan")]).await;
    // Another consumer reads the entry and dies without XACK; IDLE backdates it past the claim age.
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(redis_stream::DEFAULT_GROUP)
        .arg("dead")
        .arg("STREAMS")
        .arg(&name)
        .arg(">")
        .query_async::<redis::Value>(&mut con)
        .await
        .map(|_| Value::Null)
        .expect("read as the dead consumer");
    let idle = redis_stream::CLAIM_MIN_IDLE.as_millis() as u64 + 1000;
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&name)
        .arg(redis_stream::DEFAULT_GROUP)
        .arg("dead")
        .arg(0)
        .arg(&id)
        .arg("IDLE")
        .arg(idle)
        .query_async(&mut con)
        .await
        .expect("backdate");
    let events = run_until(&name, Arc::new(Recorder::default()), 1).await;
    assert_eq!(events[0].data().expect("data")["values"], json!({"k": "orphan"}));
    assert_eq!(pending(&mut con, &name).await, 0);
}
