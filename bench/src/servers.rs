//! The two HTTP servers of the benchmark, both on loopback:
//!
//! - the **sink** the sensor's `http` trigger posts to: for every request it counts one arrival, reads
//!   `t` (send time, µs since the epoch, stamped by the load generator) and `id` from the JSON body and
//!   records `now − t` — the event → trigger latency — in a histogram. `GET /stats` answers the counts
//!   as JSON, `POST /reset` clears them, and on SIGTERM/Ctrl-C the stats are printed to stdout;
//! - the **hello-world** server, the baseline of what axum alone answers on this machine.
//!
//! Each prints one JSON line `{"listening": "127.0.0.1:PORT"}` on stdout once it accepts connections.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::hist::Histogram;
use crate::now_us;

/// What the sink has seen since start or the last reset.
#[derive(Default)]
pub struct SinkStats {
    received: AtomicU64,
    bad_bodies: AtomicU64,
    first_us: AtomicU64,
    last_us: AtomicU64,
    /// The `id`s seen, to tell redeliveries from new events.
    ids: Mutex<HashSet<u64>>,
    latency: Histogram,
}

#[derive(Deserialize)]
struct Stamp {
    t: u64,
    id: Option<u64>,
}

impl SinkStats {
    /// Records one trigger request with `body`, arrived at `now` (µs since the epoch).
    pub fn record(&self, body: &[u8], now: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        // first_us starts at 0, meaning "none yet"; the first arrival swaps it in.
        let _ = self
            .first_us
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_us.fetch_max(now, Ordering::Relaxed);
        match serde_json::from_slice::<Stamp>(body) {
            Ok(stamp) => {
                self.latency.record(now.saturating_sub(stamp.t));
                if let Some(id) = stamp.id {
                    self.ids.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                }
            }
            Err(_) => {
                self.bad_bodies.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Clears everything.
    pub fn reset(&self) {
        for c in [&self.received, &self.bad_bodies, &self.first_us, &self.last_us] {
            c.store(0, Ordering::Relaxed);
        }
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.latency.reset();
    }

    /// The stats as JSON.
    pub fn to_json(&self) -> Value {
        let received = self.received.load(Ordering::Relaxed);
        let distinct = self.ids.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        json!({
            "received": received,
            "distinct_ids": distinct,
            "bad_bodies": self.bad_bodies.load(Ordering::Relaxed),
            "first_arrival_us": self.first_us.load(Ordering::Relaxed),
            "last_arrival_us": self.last_us.load(Ordering::Relaxed),
            "event_to_trigger_latency": self.latency.summary(),
        })
    }
}

/// The sink's router: `GET /stats`, `POST /reset`, and every other request is a trigger arrival.
pub fn sink_router(stats: Arc<SinkStats>) -> Router {
    Router::new()
        .route(
            "/stats",
            get(|State(s): State<Arc<SinkStats>>| async move { Json(s.to_json()) }),
        )
        .route(
            "/reset",
            post(|State(s): State<Arc<SinkStats>>| async move {
                s.reset();
                "reset"
            }),
        )
        .fallback(|State(s): State<Arc<SinkStats>>, body: Bytes| async move {
            s.record(&body, now_us());
        })
        .with_state(stats)
}

/// The hello-world router: every request (body read, as a real handler would) answers a fixed text.
pub fn hello_router() -> Router {
    Router::new().fallback(|_body: Bytes| async { "Hello, World!" })
}

/// Serves `router` on `addr` until SIGTERM or Ctrl-C; then runs `on_exit`.
pub async fn serve(addr: SocketAddr, router: Router, on_exit: impl FnOnce() + Send) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("{}", json!({"listening": listener.local_addr()?.to_string()}));
    axum::serve(listener, router)
        .with_graceful_shutdown(crate::shutdown_signal())
        .await?;
    on_exit();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_counts_latency_duplicates_and_bad_bodies() {
        let s = SinkStats::default();
        s.record(br#"{"t": 1000, "id": 7}"#, 1500);
        s.record(br#"{"id": 7, "t": 1100}"#, 1600);
        s.record(b"not json", 1700);
        let j = s.to_json();
        assert_eq!(j["received"], 3);
        assert_eq!(j["distinct_ids"], 1);
        assert_eq!(j["bad_bodies"], 1);
        assert_eq!(j["first_arrival_us"], 1500);
        assert_eq!(j["last_arrival_us"], 1700);
        assert_eq!(j["event_to_trigger_latency"]["count"], 2);
        assert_eq!(j["event_to_trigger_latency"]["p50_us"], 500);
        s.reset();
        assert_eq!(s.to_json()["received"], 0);
    }
}
