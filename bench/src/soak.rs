//! The Rust half of `scripts/soak` (the orchestrator, which starts the processes and injects the
//! faults, is `bench/soak.py`):
//!
//! - `sluice-bench soak-load`: open-loop load at a fixed rate. Half the events are webhook `POST`s,
//!   spread over every eventsource address given (a failed or busy address is skipped, as a load
//!   balancer would), half are Kafka records; every `--pair-every` seconds one *pair* is sent, its `a`
//!   half to the webhook and its `b` half to Kafka. Every event is `{"s": stream, "id": n, "t": µs}`
//!   with ids dense per stream and `t` the time it was *scheduled* (so a stalled sender can't hide
//!   latency). It prints which ids were accepted (2xx, or a Kafka ack with acks=all), which have an
//!   unknown outcome (sent, no answer), and how many were refused or never sent.
//! - `sluice-bench soak-sink`: the trigger target. `POST /single` takes the single-dependency
//!   firings, `POST /pair` the `a && b` firings (`{"a": …, "b": …}`). For each event it keeps the first
//!   arrival, the idempotency key and the number of repeats; `POST /fail?seconds=N` makes it answer
//!   500 for N seconds; `GET /progress` answers counts; `POST /report` with the fault windows answers
//!   the whole report (arrived ids as ranges, repeats, key checks, latency inside and outside the
//!   windows).
//!
//! Nothing here asserts; the orchestrator compares the two reports.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::hist::Histogram;
use crate::now_us;

/// Ids above this are refused as malformed, so a bad body cannot make the sink allocate without bound.
const MAX_ID: u64 = 50_000_000;
/// Connect timeout of the load generator.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one webhook request may take; past it the outcome is unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Jobs queued per connection before the dispatcher tries another one.
const QUEUE_PER_CONNECTION: usize = 8;

/// The streams of events, as the `s` field of each body names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Stream {
    /// Webhook events (single-dependency trigger).
    Web,
    /// Kafka events (single-dependency trigger).
    Kafka,
    /// The webhook half of a pair.
    PairA,
    /// The Kafka half of a pair.
    PairB,
}

impl Stream {
    const ALL: [Stream; 4] = [Stream::Web, Stream::Kafka, Stream::PairA, Stream::PairB];

    fn tag(self) -> &'static str {
        match self {
            Stream::Web => "w",
            Stream::Kafka => "k",
            Stream::PairA => "pa",
            Stream::PairB => "pb",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stream::Web => "web",
            Stream::Kafka => "kafka",
            Stream::PairA => "pair_a",
            Stream::PairB => "pair_b",
        }
    }

    fn body(self, id: u64, t: u64) -> String {
        format!(r#"{{"s":"{}","id":{id},"t":{t}}}"#, self.tag())
    }
}

/// A set of ids as sorted, half-open `[start, end)` ranges (ids are dense, so there are few).
fn ranges(mut ids: Vec<u64>) -> Vec<[u64; 2]> {
    ids.sort_unstable();
    ids.dedup();
    let mut out: Vec<[u64; 2]> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some(last) if last[1] == id => last[1] = id + 1,
            _ => out.push([id, id + 1]),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The load generator.

/// `soak-load`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakLoadArgs {
    /// Webhook base addresses (`IP:PORT`, one per eventsource process); events go to `/in`, pair
    /// halves to `/pair`.
    #[arg(long = "web", required = true, value_delimiter = ',')]
    web: Vec<SocketAddr>,
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Topic of the single Kafka events.
    #[arg(long)]
    topic: String,
    /// Topic of the pairs' `b` halves.
    #[arg(long)]
    pair_topic: String,
    /// Events per second in all (half webhook, half Kafka), sent on schedule whatever the answers.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seconds between pairs.
    #[arg(long, default_value_t = 2.0)]
    pair_every: f64,
    /// Seconds of load.
    #[arg(long)]
    duration: f64,
    /// Keep-alive connections per webhook address.
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

/// What happened to the ids of one stream.
#[derive(Default)]
struct Outcomes {
    scheduled: AtomicU64,
    accepted: Mutex<Vec<u64>>,
    unknown: Mutex<Vec<u64>>,
    /// Answered non-2xx. The event may have been stored all the same (a publish that timed out
    /// at the eventsource but reached the bus): the sender was told to retry, which dedupes.
    refused: Mutex<Vec<u64>>,
    /// Never sent: no connection with room, or the connection could not be opened.
    not_sent: AtomicU64,
    non_2xx: Mutex<BTreeMap<u16, u64>>,
    accept: Histogram,
}

impl Outcomes {
    fn accept(&self, id: u64, scheduled_us: u64) {
        self.accept.record(now_us().saturating_sub(scheduled_us));
        lock(&self.accepted).push(id);
    }

    fn unknown(&self, id: u64) {
        lock(&self.unknown).push(id);
    }

    fn to_json(&self) -> Value {
        let accepted = ranges(lock(&self.accepted).clone());
        let unknown = ranges(lock(&self.unknown).clone());
        let refused = ranges(lock(&self.refused).clone());
        json!({
            "scheduled": self.scheduled.load(Ordering::Relaxed),
            "accepted": count(&accepted),
            "accepted_ranges": accepted,
            "unknown": count(&unknown),
            "unknown_ranges": unknown,
            "refused": count(&refused),
            "refused_ranges": refused,
            "not_sent": self.not_sent.load(Ordering::Relaxed),
            "non_2xx_by_status": *lock(&self.non_2xx),
            "accept_latency": self.accept.summary(),
        })
    }
}

fn count(ranges: &[[u64; 2]]) -> u64 {
    ranges.iter().map(|[a, b]| b - a).sum()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type AllOutcomes = Arc<BTreeMap<Stream, Outcomes>>;

/// One webhook request to make.
struct Job {
    stream: Stream,
    id: u64,
    scheduled_us: u64,
}

impl Job {
    fn path(&self) -> &'static str {
        match self.stream {
            Stream::PairA => "/pair",
            _ => "/in",
        }
    }
}

/// One keep-alive connection: takes jobs in order, reconnects after an error.
async fn connection(addr: SocketAddr, mut jobs: mpsc::Receiver<Job>, outcomes: AllOutcomes) {
    let host = addr.to_string();
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    while let Some(job) = jobs.recv().await {
        let o = &outcomes[&job.stream];
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                anyhow::Ok(hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?)
            })
            .await;
            match connected {
                Ok(Ok((s, driver))) => {
                    // The driver ends when the connection closes; the sender then reports closed.
                    tokio::spawn(driver);
                    sender = Some(s);
                }
                _ => {
                    // Nothing was sent: the event was never offered, so it is not expected anywhere.
                    o.not_sent.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let req = Request::post(job.path())
            .header(HOST, &host)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(job.stream.body(job.id, job.scheduled_us))));
        let Ok(req) = req else {
            o.not_sent.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            s.ready().await?;
            let resp = s.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            anyhow::Ok(status)
        })
        .await;
        match answer {
            Ok(Ok(status)) if status.is_success() => o.accept(job.id, job.scheduled_us),
            Ok(Ok(status)) => {
                lock(&o.refused).push(job.id);
                *lock(&o.non_2xx).entry(status.as_u16()).or_default() += 1;
            }
            _ => {
                // Sent (maybe), never answered: the eventsource may or may not have stored it.
                o.unknown(job.id);
                sender = None;
            }
        }
    }
}

/// Hands each job to the next connection with room, starting after the last one used.
struct Dispatcher {
    queues: Vec<mpsc::Sender<Job>>,
    next: usize,
}

impl Dispatcher {
    fn dispatch(&mut self, job: Job, outcomes: &AllOutcomes) {
        let mut job = job;
        for _ in 0..self.queues.len() {
            let i = self.next % self.queues.len();
            self.next = self.next.wrapping_add(1);
            match self.queues[i].try_send(job) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j)) => job = j,
            }
        }
        // Every connection is busy (an eventsource stalled): open-loop load does not wait.
        outcomes[&job.stream].not_sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the open-loop load; returns its report.
pub async fn load(args: &SoakLoadArgs) -> anyhow::Result<Value> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 100_000.0,
        "--rate must be in (0, 100000]"
    );
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    anyhow::ensure!(args.pair_every > 0.0, "--pair-every must be positive");
    let outcomes: AllOutcomes = Arc::new(
        Stream::ALL
            .into_iter()
            .map(|s| (s, Outcomes::default()))
            .collect(),
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "10000")
        .create()
        .context("failed to create the Kafka producer")?;

    // Interleave the addresses so consecutive jobs go to different eventsources.
    let mut queues = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..args.connections.max(1) {
        for addr in &args.web {
            let (tx, rx) = mpsc::channel(QUEUE_PER_CONNECTION);
            queues.push(tx);
            connections.push(tokio::spawn(connection(*addr, rx, outcomes.clone())));
        }
    }
    let mut dispatcher = Dispatcher { queues, next: 0 };
    let mut kafka_acks = tokio::task::JoinSet::new();

    let start_us = now_us();
    let start = Instant::now();
    let per_stream = args.rate / 2.0;
    let mut sent = [0u64; 2];
    let mut pairs = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut shutdown => break,
        }
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= args.duration {
            break;
        }
        let due = (elapsed * per_stream) as u64;
        let now = now_us();
        while sent[0] < due {
            let id = sent[0];
            sent[0] += 1;
            outcomes[&Stream::Web].scheduled.fetch_add(1, Ordering::Relaxed);
            dispatcher.dispatch(
                Job {
                    stream: Stream::Web,
                    id,
                    scheduled_us: now,
                },
                &outcomes,
            );
        }
        while sent[1] < due {
            let id = sent[1];
            sent[1] += 1;
            produce(
                &producer,
                &args.topic,
                Stream::Kafka,
                id,
                now,
                &outcomes,
                &mut kafka_acks,
            );
        }
        let pairs_due = (elapsed / args.pair_every) as u64;
        while pairs < pairs_due {
            let id = pairs;
            pairs += 1;
            outcomes[&Stream::PairA].scheduled.fetch_add(1, Ordering::Relaxed);
            dispatcher.dispatch(
                Job {
                    stream: Stream::PairA,
                    id,
                    scheduled_us: now,
                },
                &outcomes,
            );
            produce(
                &producer,
                &args.pair_topic,
                Stream::PairB,
                id,
                now,
                &outcomes,
                &mut kafka_acks,
            );
        }
        // Reap finished Kafka acks so the set stays small.
        while kafka_acks.try_join_next().is_some() {}
    }
    let end_us = now_us();
    // Let what is in flight finish: connections drain their queues, Kafka acks or times out.
    drop(dispatcher);
    let drain = async {
        for c in connections {
            let _ = c.await;
        }
        while kafka_acks.join_next().await.is_some() {}
    };
    if tokio::time::timeout(REQUEST_TIMEOUT * 4, drain).await.is_err() {
        eprintln!("soak-load: in-flight requests did not finish in time; their outcome counts as unknown");
    }
    Ok(json!({
        "rate": args.rate,
        "pair_every_s": args.pair_every,
        "duration_s": args.duration,
        "start_us": start_us,
        "end_us": end_us,
        "streams": outcomes.iter().map(|(s, o)| (s.name().to_owned(), o.to_json())).collect::<serde_json::Map<_, _>>(),
    }))
}

/// Queues one Kafka record; its ack is awaited in `acks`.
fn produce(
    producer: &FutureProducer,
    topic: &str,
    stream: Stream,
    id: u64,
    scheduled_us: u64,
    outcomes: &AllOutcomes,
    acks: &mut tokio::task::JoinSet<()>,
) {
    let o = &outcomes[&stream];
    o.scheduled.fetch_add(1, Ordering::Relaxed);
    let body = stream.body(id, scheduled_us);
    let key = id.to_string();
    let record = FutureRecord::to(topic).payload(&body).key(&key);
    match producer.send_result(record) {
        Ok(delivery) => {
            let outcomes = outcomes.clone();
            acks.spawn(async move {
                let o = &outcomes[&stream];
                match delivery.await {
                    Ok(Ok(_)) => o.accept(id, scheduled_us),
                    // Refused by the broker or timed out: with an idempotent producer a timed-out
                    // record may still be stored, so it is "unknown", not "refused".
                    Ok(Err(_)) | Err(_) => o.unknown(id),
                }
            });
        }
        Err(_) => {
            // librdkafka's queue is full: the record never left this process.
            o.not_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sink.

/// The first arrival of one event (or pair) and its repeats.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// When it was scheduled by the load generator (µs); 0: not arrived.
    scheduled_us: u64,
    /// When it first arrived (µs).
    first_us: u64,
    /// Hash of the idempotency key of the first arrival.
    key: u64,
    arrivals: u32,
}

/// Arrivals of one stream, indexed by id.
#[derive(Default)]
struct Track {
    slots: Vec<Slot>,
}

/// What the sink has seen.
#[derive(Default)]
pub struct Sink {
    single: Mutex<BTreeMap<Stream, Track>>,
    /// `a && b` firings whose halves belong to the same pair, by pair id.
    pairs: Mutex<Track>,
    /// Firings whose halves belong to different pairs (possible around faults): (a, b) → slot.
    mixed: Mutex<HashMap<(u64, u64), Slot>>,
    /// Hashes of every first arrival's key, to find two events sharing one key.
    keys: Mutex<HashSet<u64>>,
    shared_keys: AtomicU64,
    key_mismatches: AtomicU64,
    missing_keys: AtomicU64,
    bad_bodies: AtomicU64,
    /// The first few bodies that could not be read, to show what went wrong.
    bad_samples: Mutex<Vec<String>>,
    arrivals: AtomicU64,
    refused_attempts: AtomicU64,
    failing_until_us: AtomicU64,
}

#[derive(Deserialize)]
struct Stamp {
    s: String,
    id: u64,
    t: u64,
}

#[derive(Deserialize)]
struct PairBody {
    a: Stamp,
    b: Stamp,
}

/// What went wrong with one arrival (each is counted).
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    Body,
    NoKey,
}

fn key_hash(headers: &HeaderMap) -> Result<u64, Bad> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .ok_or(Bad::NoKey)?;
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    Ok(h.finish())
}

impl Sink {
    /// Records an arrival in `slot`; checks its key against earlier arrivals of the same event.
    fn record(&self, slot: &mut Slot, key: u64, scheduled_us: u64, now: u64) {
        if slot.arrivals == 0 {
            *slot = Slot {
                scheduled_us: scheduled_us.max(1),
                first_us: now,
                key,
                arrivals: 1,
            };
            if !lock(&self.keys).insert(key) {
                self.shared_keys.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            slot.arrivals = slot.arrivals.saturating_add(1);
            if slot.key != key {
                self.key_mismatches.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn single(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<(), Bad> {
        let key = key_hash(headers)?;
        let stamp: Stamp = serde_json::from_slice(body).map_err(|_| Bad::Body)?;
        let stream = match stamp.s.as_str() {
            "w" => Stream::Web,
            "k" => Stream::Kafka,
            _ => return Err(Bad::Body),
        };
        if stamp.id > MAX_ID {
            return Err(Bad::Body);
        }
        let mut single = lock(&self.single);
        let track = single.entry(stream).or_default();
        let i = stamp.id as usize;
        if track.slots.len() <= i {
            track.slots.resize(i + 1, Slot::default());
        }
        self.record(&mut track.slots[i], key, stamp.t, now);
        Ok(())
    }

    fn pair(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<(), Bad> {
        let key = key_hash(headers)?;
        let pair: PairBody = serde_json::from_slice(body).map_err(|_| Bad::Body)?;
        if pair.a.s != "pa" || pair.b.s != "pb" || pair.a.id > MAX_ID || pair.b.id > MAX_ID {
            return Err(Bad::Body);
        }
        // A pair's latency runs from its later half.
        let scheduled = pair.a.t.max(pair.b.t);
        if pair.a.id == pair.b.id {
            let mut track = lock(&self.pairs);
            let i = pair.a.id as usize;
            if track.slots.len() <= i {
                track.slots.resize(i + 1, Slot::default());
            }
            self.record(&mut track.slots[i], key, scheduled, now);
        } else {
            let mut mixed = lock(&self.mixed);
            let slot = mixed.entry((pair.a.id, pair.b.id)).or_default();
            self.record(slot, key, scheduled, now);
        }
        Ok(())
    }

    /// Counts an arrival that could not be recorded.
    fn bad(&self, bad: Bad, body: &[u8]) {
        match bad {
            Bad::Body => {
                self.bad_bodies.fetch_add(1, Ordering::Relaxed);
                let mut samples = lock(&self.bad_samples);
                if samples.len() < 5 {
                    samples.push(String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned());
                }
            }
            Bad::NoKey => {
                self.missing_keys.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn failing(&self, now: u64) -> bool {
        now < self.failing_until_us.load(Ordering::Relaxed)
    }

    fn progress(&self) -> Value {
        let single = lock(&self.single);
        let distinct = |t: Option<&Track>| t.map_or(0, |t| t.slots.iter().filter(|s| s.arrivals > 0).count());
        json!({
            "arrivals": self.arrivals.load(Ordering::Relaxed),
            "web": distinct(single.get(&Stream::Web)),
            "kafka": distinct(single.get(&Stream::Kafka)),
            "pairs": distinct(Some(&lock(&self.pairs))),
            "refused_attempts": self.refused_attempts.load(Ordering::Relaxed),
        })
    }

    fn report(&self, windows: &[[u64; 2]], grace_us: u64) -> Value {
        let outside = |t: u64| {
            !windows
                .iter()
                .any(|[s, e]| t >= *s && t <= e.saturating_add(grace_us))
        };
        let summarise = |slots: &mut dyn Iterator<Item = (u64, Slot)>| {
            let (all, calm) = (Histogram::default(), Histogram::default());
            let (mut ids, mut repeats, mut repeated_events) = (Vec::new(), 0u64, 0u64);
            for (id, s) in slots.filter(|(_, s)| s.arrivals > 0) {
                ids.push(id);
                let latency = s.first_us.saturating_sub(s.scheduled_us);
                all.record(latency);
                if outside(s.scheduled_us) {
                    calm.record(latency);
                }
                if s.arrivals > 1 {
                    repeated_events += 1;
                    repeats += u64::from(s.arrivals - 1);
                }
            }
            let arrived = ranges(ids);
            json!({
                "distinct": count(&arrived),
                "arrived_ranges": arrived,
                "repeats": repeats,
                "repeated_events": repeated_events,
                "latency": all.summary(),
                "latency_outside_faults": calm.summary(),
            })
        };
        let single = lock(&self.single);
        let mut streams = serde_json::Map::new();
        for stream in [Stream::Web, Stream::Kafka] {
            let slots = single
                .get(&stream)
                .map(|t| t.slots.as_slice())
                .unwrap_or_default();
            let mut it = slots.iter().enumerate().map(|(i, s)| (i as u64, *s));
            streams.insert(stream.name().into(), summarise(&mut it));
        }
        let pairs = lock(&self.pairs);
        let mut it = pairs.slots.iter().enumerate().map(|(i, s)| (i as u64, *s));
        streams.insert("pairs".into(), summarise(&mut it));
        let mixed = lock(&self.mixed);
        json!({
            "streams": streams,
            "mixed_pairs": mixed.keys().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
            "arrivals": self.arrivals.load(Ordering::Relaxed),
            "shared_keys": self.shared_keys.load(Ordering::Relaxed),
            "key_mismatches": self.key_mismatches.load(Ordering::Relaxed),
            "missing_keys": self.missing_keys.load(Ordering::Relaxed),
            "bad_bodies": self.bad_bodies.load(Ordering::Relaxed),
            "bad_body_samples": *lock(&self.bad_samples),
            "refused_attempts": self.refused_attempts.load(Ordering::Relaxed),
        })
    }
}

#[derive(Deserialize)]
struct FailFor {
    seconds: f64,
}

#[derive(Deserialize)]
struct ReportRequest {
    /// Fault windows, `[start, end]` in µs since the epoch.
    windows: Vec<[u64; 2]>,
    /// How long after a window's end events still count as inside it.
    grace_s: f64,
}

/// Answers a firing: 500 while failing (nothing recorded: the sensor must retry), else records it.
fn firing(sink: &Sink, headers: &HeaderMap, body: &[u8], pair: bool) -> StatusCode {
    let now = now_us();
    if sink.failing(now) {
        sink.refused_attempts.fetch_add(1, Ordering::Relaxed);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    sink.arrivals.fetch_add(1, Ordering::Relaxed);
    let recorded = if pair {
        sink.pair(headers, body, now)
    } else {
        sink.single(headers, body, now)
    };
    if let Err(bad) = recorded {
        sink.bad(bad, body);
    }
    StatusCode::OK
}

/// The sink's router.
pub fn sink_router(sink: Arc<Sink>) -> Router {
    Router::new()
        .route(
            "/single",
            post(
                |State(s): State<Arc<Sink>>, headers: HeaderMap, body: Bytes| async move {
                    firing(&s, &headers, &body, false)
                },
            ),
        )
        .route(
            "/pair",
            post(
                |State(s): State<Arc<Sink>>, headers: HeaderMap, body: Bytes| async move {
                    firing(&s, &headers, &body, true)
                },
            ),
        )
        .route(
            "/fail",
            post(
                |State(s): State<Arc<Sink>>, Query(f): Query<FailFor>| async move {
                    let until = now_us() + (f.seconds.clamp(0.0, 3600.0) * 1e6) as u64;
                    s.failing_until_us.store(until, Ordering::Relaxed);
                    Json(json!({"failing_until_us": until}))
                },
            ),
        )
        .route(
            "/progress",
            get(|State(s): State<Arc<Sink>>| async move { Json(s.progress()) }),
        )
        .route(
            "/report",
            post(
                |State(s): State<Arc<Sink>>, Json(r): Json<ReportRequest>| async move {
                    Json(s.report(&r.windows, (r.grace_s.max(0.0) * 1e6) as u64))
                },
            ),
        )
        .with_state(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = k.parse() {
            h.insert("idempotency-key", v);
        }
        h
    }

    #[test]
    fn ranges_merge_dense_ids() {
        assert_eq!(ranges(vec![5, 1, 2, 3, 7, 2]), vec![[1, 4], [5, 6], [7, 8]]);
        assert!(ranges(vec![]).is_empty());
    }

    #[test]
    fn sink_checks_keys_repeats_and_pairs() {
        let s = Sink::default();
        let w = |id: u64, t: u64| format!(r#"{{"s":"w","id":{id},"t":{t}}}"#);
        assert_eq!(s.single(&key("k0"), w(0, 100).as_bytes(), 150), Ok(()));
        assert_eq!(s.single(&key("k1"), w(1, 100).as_bytes(), 300), Ok(()));
        // A repeat with its own key is fine; one with another key is a mismatch.
        assert_eq!(s.single(&key("k1"), w(1, 100).as_bytes(), 400), Ok(()));
        assert_eq!(s.single(&key("other"), w(1, 100).as_bytes(), 500), Ok(()));
        // Another event under an already used key.
        assert_eq!(s.single(&key("k0"), w(3, 100).as_bytes(), 600), Ok(()));
        assert_eq!(
            s.single(&HeaderMap::new(), w(4, 100).as_bytes(), 600),
            Err(Bad::NoKey)
        );
        assert_eq!(s.single(&key("x"), b"{}", 600), Err(Bad::Body));
        let pair = |a: u64, b: u64| {
            format!(r#"{{"a":{{"s":"pa","id":{a},"t":10}},"b":{{"s":"pb","id":{b},"t":20}}}}"#)
        };
        assert_eq!(s.pair(&key("p0"), pair(0, 0).as_bytes(), 70), Ok(()));
        assert_eq!(s.pair(&key("p1"), pair(1, 2).as_bytes(), 70), Ok(()));

        let r = s.report(&[[90, 110]], 0);
        assert_eq!(r["streams"]["web"]["arrived_ranges"], json!([[0, 2], [3, 4]]));
        assert_eq!(r["streams"]["web"]["repeats"], 2);
        assert_eq!(r["streams"]["web"]["repeated_events"], 1);
        // Every web event was scheduled at t=100, inside the window: none counts as calm.
        assert_eq!(r["streams"]["web"]["latency_outside_faults"]["count"], 0);
        assert_eq!(r["streams"]["pairs"]["arrived_ranges"], json!([[0, 1]]));
        assert_eq!(r["streams"]["pairs"]["latency"]["count"], 1);
        assert_eq!(r["mixed_pairs"], json!([[1, 2]]));
        assert_eq!(r["key_mismatches"], 1);
        assert_eq!(r["shared_keys"], 1);
    }

    #[test]
    fn a_failing_sink_records_nothing() {
        let s = Sink::default();
        s.failing_until_us.store(u64::MAX, Ordering::Relaxed);
        let status = firing(&s, &key("k"), br#"{"s":"w","id":0,"t":1}"#, false);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(s.progress()["web"], 0);
        assert_eq!(s.progress()["refused_attempts"], 1);
    }
}
