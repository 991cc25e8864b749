//! The one skeleton every pull source runs on: a kind implements [`Upstream`] (connect, next
//! message, decode, settle) and [`Pull`] does the rest — cancellation, readiness, reconnect with
//! [`Backoff`], building the event, publishing it through [`crate::sender::publish`], and telling
//! the upstream what became of the message.
//!
//! ```text
//!   loop:  connect ──err──▶ not ready, log retry_in, backoff ──▶ connect
//!            │ ok: ready
//!            ▼
//!          next ──None/err──▶ not ready, close, log, backoff ──▶ connect
//!            │ message
//!            ▼
//!          decode ──malformed──▶ log + count (rejected{reason="malformed"}) ──▶ settle(Term)
//!            │ drafts (0..n events)
//!            ▼
//!          publish each (Retry from the kind) ──cancelled──▶ return, message left unsettled
//!            │
//!            ▼
//!          settle(Ack | Nak | Term)
//! ```
//!
//! A session that ends (cancelled too) is handed to [`Upstream::close`]; the backoff starts over
//! once a session lasted [`Upstream::steady_after`] (at once by default).
//!
//! Delivery: a message is settled only after every event it carries was stored by the bus, dropped
//! on purpose by the EventSource's filter, or rejected for good (logged and counted by
//! [`crate::sender::publish`]). A cancel while publishing returns without settling, so an upstream
//! that redelivers (JetStream, AMQP, MQTT sessions, Redis stream groups, Kafka offsets) delivers the
//! message again; one that cannot (core NATS, Redis pub/sub) loses it, which each kind's header
//! says.
//!
//! Logs carry `eventsource` and `event_name`, and `event` (the id) per event; metrics are the
//! sender's, plus `rejected{reason="malformed"}` and `processing_failed` for a message that is not
//! an event of its kind.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_eventbus::readiness::ReadyFlag;
use sluice_eventbus::{error_chain, Event, EventBuilder, Subject};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::{EventLabels, RejectLabels, SourceMetrics};
use crate::reconnect::Backoff;
use crate::sender::{publish, EventSender, Outcome, Publisher, Retry};
use crate::{PullSource, SourceContext, SourceError};

/// A failure of the upstream connection (connect, read, settle); the skeleton logs it and
/// reconnects.
pub type UpstreamError = Box<dyn std::error::Error + Send + Sync>;

/// One event a message carries, before the CloudEvent attributes are added.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    /// The event's `data`, in upstream's shape for the kind.
    pub data: Value,
    /// A deterministic id from the upstream's message id (stream sequence, offset, entry id), so a
    /// redelivery dedupes on the bus; `None` for upstreams without one (a random id).
    pub id: Option<String>,
    /// The event's `time` when the upstream says when it happened; `None` for now.
    pub time: Option<DateTime<Utc>>,
}

impl Draft {
    /// An event with `data`, a random id and the current time.
    pub fn new(data: Value) -> Self {
        Self {
            data,
            id: None,
            time: None,
        }
    }

    /// The same draft with a deterministic id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The same draft with the time the upstream gives.
    pub fn with_time(mut self, time: DateTime<Utc>) -> Self {
        self.time = Some(time);
        self
    }
}

/// Why a message is not an event of its kind (logged with the reason, counted, and settled with
/// [`Settle::Term`] so it is not redelivered forever).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// What to tell the upstream about one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Every event of the message was stored (or filtered on purpose): the upstream may forget it.
    Ack,
    /// The bus refused under [`Retry::Once`]: redeliver it.
    Nak,
    /// It can never be stored (too large, malformed; logged and counted): forget it without
    /// redelivery.
    Term,
}

/// Where a source is and what it is called, for logs and for connecting.
#[derive(Clone)]
pub struct Names {
    /// The EventSource's name.
    pub event_source: String,
    /// The event's name inside it.
    pub event_name: String,
    /// Set while connected; a kind whose client reports disconnects by itself (async-nats) may
    /// clear and set it too.
    pub ready: ReadyFlag,
}

impl Names {
    /// `eventSource/event`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    /// A client name for brokers that show one: `sluice-<eventSource>-<event>`.
    pub fn client_name(&self) -> String {
        format!("sluice-{}-{}", self.event_source, self.event_name)
    }
}

/// What a pull kind implements; [`Pull`] runs it.
#[async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// A live connection or subscription.
    type Session: Send;
    /// One message read from it.
    type Message: Send + Sync;

    /// The CloudEvent `type` of the kind.
    fn kind(&self) -> &'static str;

    /// How a refusal by the bus is retried: [`Retry::Once`] when the upstream redelivers a
    /// [`Settle::Nak`], [`Retry::UntilStored`] when it cannot or the kind holds the message.
    fn retry(&self) -> Retry;

    /// The backoff between connection attempts ([`Backoff::default`] unless the spec sets one).
    fn backoff(&self) -> Backoff {
        Backoff::default()
    }

    /// Connects and subscribes. An error is logged and retried after the backoff.
    async fn connect(&self, names: &Names) -> Result<Self::Session, UpstreamError>;

    /// The next message; `Ok(None)` when the session ended, and an error when it broke (both
    /// reconnect). Must be cancel-safe: the skeleton drops it when the source is cancelled.
    async fn next(&self, session: &mut Self::Session) -> Result<Option<Self::Message>, UpstreamError>;

    /// The events of `message`, with no I/O (so unit tests need no socket). Most kinds return one.
    fn decode(&self, message: &Self::Message) -> Result<Vec<Draft>, Malformed>;

    /// Tells the upstream what became of `message`. The default does nothing (no acknowledgements
    /// upstream). An error is logged: the message will be redelivered, and deduped on the bus when
    /// its id is deterministic.
    async fn settle(
        &self,
        _session: &mut Self::Session,
        _message: Self::Message,
        _settle: Settle,
    ) -> Result<(), UpstreamError> {
        Ok(())
    }

    /// A few words on `message` for the log line of a malformed one (an id or a position, never
    /// the payload).
    fn locate(&self, _message: &Self::Message) -> String {
        String::new()
    }

    /// Ends a session once it ended, failed or the source was cancelled, after its last message
    /// was settled or left unsettled: a close frame, a graceful close that hands unacknowledged
    /// messages back, a last commit, a checkpoint save. The default drops it. Must finish in
    /// bounded time: the process may be stopping.
    async fn close(&self, _session: Self::Session) {}

    /// The message of the warning logged when a session ends or fails (with `error` and
    /// `retry_in`); `None` keeps the skeleton's wording. For a kind whose operators (and restart
    /// tests) search for a wording of its own.
    fn reconnect_message(&self) -> Option<&'static str> {
        None
    }

    /// How long a session must have lasted for the next outage's backoff to start over from its
    /// first wait. The default (zero) starts over after every successful connect; a longer one
    /// keeps the waits growing at a broker that accepts connections and drops them at once.
    fn steady_after(&self) -> Duration {
        Duration::ZERO
    }
}

/// A pull source: the skeleton around one [`Upstream`].
pub struct Pull<U: Upstream> {
    upstream: U,
    names: Names,
    labels: EventLabels,
    /// Where every event of this source is published (built once, not per message).
    subject: Subject,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
}

impl<U: Upstream> Pull<U> {
    /// The source of event `event_name` of EventSource `event_source`, with its readiness flag
    /// registered in `ctx` as `eventSource/event`.
    pub fn new(event_source: &str, event_name: &str, upstream: U, ctx: &SourceContext) -> Self {
        Self {
            upstream,
            names: Names {
                event_source: event_source.to_owned(),
                event_name: event_name.to_owned(),
                ready: ctx.readiness.flag(format!("{event_source}/{event_name}")),
            },
            labels: SourceMetrics::labels(event_source, event_name),
            subject: Subject::new(event_source, event_name),
            sender: ctx.sender.clone(),
            metrics: ctx.metrics.clone(),
        }
    }

    /// The CloudEvent of one draft; `None` only when the builder refuses the attributes (names
    /// checked when the EventSource was built, so not in practice): logged and counted.
    fn event(&self, draft: Draft) -> Option<Event> {
        let mut builder = EventBuilder::new(
            &self.names.event_source,
            &self.names.event_name,
            self.upstream.kind(),
        )
        .data_json(draft.data);
        if let Some(id) = draft.id {
            builder = builder.id(id);
        }
        if let Some(time) = draft.time {
            builder = builder.time(time);
        }
        match builder.build() {
            Ok(event) => Some(event),
            Err(error) => {
                warn!(eventsource = %self.names.event_source, event_name = %self.names.event_name, error = %error, "failed to build an event");
                self.metrics.processing_failed.get_or_create(&self.labels).inc();
                None
            }
        }
    }

    /// Counts and logs a message that is not an event of this kind.
    fn malformed(&self, message: &U::Message, why: &Malformed) {
        self.metrics.processing_failed.get_or_create(&self.labels).inc();
        self.metrics
            .rejected
            .get_or_create(&RejectLabels {
                eventsource_name: self.labels.eventsource_name.clone(),
                event_name: self.labels.event_name.clone(),
                reason: "malformed".into(),
            })
            .inc();
        warn!(eventsource = %self.names.event_source, event_name = %self.names.event_name, at = %self.upstream.locate(message), error = %why, "dropped a message that is not an event of this kind");
    }

    /// Publishes the events of one message; `None` when cancelled before they were all settled.
    async fn publish(&self, message: &U::Message, cancel: &CancellationToken) -> Option<Settle> {
        let drafts = match self.upstream.decode(message) {
            Ok(drafts) => drafts,
            Err(why) => {
                self.malformed(message, &why);
                // Why term: redelivering a message that does not decode would fail the same way.
                return Some(Settle::Term);
            }
        };
        let p = Publisher {
            sender: &*self.sender,
            metrics: &self.metrics,
            labels: &self.labels,
            cancel,
        };
        let (mut stored, mut rejected) = (0usize, 0usize);
        for draft in drafts {
            let Some(event) = self.event(draft) else {
                // Why it counts as rejected: a build failure repeats on every redelivery.
                rejected += 1;
                continue;
            };
            match publish(&p, &self.subject, &event, self.upstream.retry()).await {
                Outcome::Stored(_) | Outcome::Filtered => {
                    debug!(eventsource = %self.names.event_source, event_name = %self.names.event_name, event = %event.id(), "published");
                    stored += 1;
                }
                Outcome::Rejected(_) => rejected += 1,
                // Why nak the whole message: the events already stored come back with the same
                // ids when the kind gives deterministic ones, and the bus drops those repeats.
                Outcome::Refused(_) => return Some(Settle::Nak),
                // Why no settle: the message stays unacknowledged upstream and is redelivered
                // where the upstream can; the kind's header says where it cannot.
                Outcome::Cancelled => return None,
            }
        }
        Some(if rejected > 0 && stored == 0 {
            Settle::Term
        } else {
            Settle::Ack
        })
    }

    /// Reads and publishes until the session ends (`Ok(true)`), the source is cancelled
    /// (`Ok(false)`), or reading fails.
    async fn consume(
        &self,
        session: &mut U::Session,
        cancel: &CancellationToken,
    ) -> Result<bool, UpstreamError> {
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(false),
                n = self.upstream.next(session) => n?,
            };
            let Some(message) = next else {
                return Ok(true);
            };
            let Some(settle) = self.publish(&message, cancel).await else {
                return Ok(false);
            };
            if let Err(error) = self.upstream.settle(session, message, settle).await {
                // Why only a warning: an unsettled message is redelivered, and deduped on the bus
                // by its id where the kind gives a deterministic one.
                warn!(eventsource = %self.names.event_source, event_name = %self.names.event_name, error = %error_chain(&*error), ?settle, "failed to settle a message upstream; it may be redelivered");
            }
        }
    }
}

#[async_trait]
impl<U: Upstream> PullSource for Pull<U> {
    fn describe(&self) -> String {
        self.names.describe()
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let mut backoff = self.upstream.backoff();
        loop {
            let connected = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                c = self.upstream.connect(&self.names) => c,
            };
            let ended = match connected {
                Ok(mut session) => {
                    info!(eventsource = %self.names.event_source, event_name = %self.names.event_name, kind = self.upstream.kind(), "connected");
                    self.names.ready.set(true);
                    let since = tokio::time::Instant::now();
                    let ended = self.consume(&mut session, &cancel).await;
                    self.names.ready.set(false);
                    self.upstream.close(session).await;
                    // Why reset only after a steady session: a broker that accepts and then drops
                    // every connection must still see the waits grow (see `steady_after`).
                    if since.elapsed() >= self.upstream.steady_after() {
                        backoff.reset();
                    }
                    ended
                }
                Err(error) => Err(error),
            };
            self.names.ready.set(false);
            let message = self.upstream.reconnect_message();
            match ended {
                Ok(false) => break,
                Ok(true) => {
                    let message = message.unwrap_or("the upstream ended the session; reconnecting");
                    warn!(eventsource = %self.names.event_source, event_name = %self.names.event_name, retry_in = ?backoff.wait(), "{message}");
                }
                Err(error) => {
                    let message = message.unwrap_or("the upstream connection failed; reconnecting");
                    warn!(eventsource = %self.names.event_source, event_name = %self.names.event_name, error = %error_chain(&*error), retry_in = ?backoff.wait(), "{message}");
                }
            }
            if !backoff.sleep(&cancel).await {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::testing::{context, Recorder, Secrets};

    /// What one scripted read returns.
    enum Read {
        Message(&'static str),
        End,
        Fail,
    }

    /// An upstream whose sessions read from a script; it records connects and settlements.
    struct Scripted {
        reads: Mutex<VecDeque<Read>>,
        retry: Retry,
        connects: Mutex<u32>,
        closes: Mutex<u32>,
        settled: Mutex<Vec<(String, Settle)>>,
        /// [`Upstream::steady_after`].
        steady: Duration,
        /// Cancelled once the script is used up, so `run` returns.
        done: CancellationToken,
    }

    impl Scripted {
        fn new(reads: Vec<Read>, retry: Retry) -> Self {
            Self {
                reads: Mutex::new(reads.into()),
                retry,
                connects: Mutex::new(0),
                closes: Mutex::new(0),
                settled: Mutex::new(Vec::new()),
                steady: Duration::ZERO,
                done: CancellationToken::new(),
            }
        }
    }

    #[async_trait]
    impl Upstream for Arc<Scripted> {
        type Session = ();
        type Message = String;

        fn kind(&self) -> &'static str {
            "scripted"
        }

        fn retry(&self) -> Retry {
            self.retry
        }

        async fn connect(&self, _: &Names) -> Result<(), UpstreamError> {
            *self.connects.lock().expect("not poisoned") += 1;
            Ok(())
        }

        async fn next(&self, _: &mut ()) -> Result<Option<String>, UpstreamError> {
            let read = self.reads.lock().expect("not poisoned").pop_front();
            match read {
                Some(Read::Message(m)) => Ok(Some(m.to_owned())),
                Some(Read::End) => Ok(None),
                Some(Read::Fail) => Err("connection reset".into()),
                None => {
                    self.done.cancel();
                    std::future::pending().await
                }
            }
        }

        /// `bad` is malformed; `two:<x>` carries two events; anything else one, with the
        /// message as its id.
        fn decode(&self, m: &String) -> Result<Vec<Draft>, Malformed> {
            match m.as_str() {
                "bad" => Err(Malformed("not an event".into())),
                two if two.starts_with("two:") => Ok(vec![
                    Draft::new(json!({"n": 1})).with_id(format!("{two}-1")),
                    Draft::new(json!({"n": 2})).with_id(format!("{two}-2")),
                ]),
                one => Ok(vec![Draft::new(json!({"m": one})).with_id(one)]),
            }
        }

        async fn settle(&self, _: &mut (), m: String, settle: Settle) -> Result<(), UpstreamError> {
            self.settled.lock().expect("not poisoned").push((m, settle));
            Ok(())
        }

        async fn close(&self, _: ()) {
            *self.closes.lock().expect("not poisoned") += 1;
        }

        fn steady_after(&self) -> Duration {
            self.steady
        }
    }

    async fn run(upstream: Arc<Scripted>, recorder: Arc<Recorder>) -> crate::SourceContext {
        let ctx = context(Secrets::default(), recorder);
        let source = Box::new(Pull::new("es", "ev", upstream.clone(), &ctx));
        source
            .run(upstream.done.clone())
            .await
            .expect("a pull source returns Ok when cancelled");
        ctx
    }

    fn rejected_malformed(ctx: &crate::SourceContext) -> u64 {
        ctx.metrics
            .rejected
            .get_or_create(&RejectLabels {
                eventsource_name: "es".into(),
                event_name: "ev".into(),
                reason: "malformed".into(),
            })
            .get()
    }

    #[tokio::test(start_paused = true)]
    async fn each_message_is_settled_after_its_events_were_stored_and_reconnects_follow_ends_and_failures() {
        let upstream = Arc::new(Scripted::new(
            vec![
                Read::Message("a"),
                Read::End,
                Read::Message("two:b"),
                Read::Fail,
                Read::Message("bad"),
            ],
            Retry::UntilStored {
                first: Duration::from_millis(10),
            },
        ));
        let recorder = Arc::new(Recorder::default());
        let ctx = run(upstream.clone(), recorder.clone()).await;
        let ids: Vec<String> = recorder.events().iter().map(|(_, e)| e.id().to_owned()).collect();
        assert_eq!(ids, ["a", "two:b-1", "two:b-2"]);
        assert!(recorder.events().iter().all(|(_, e)| e.ty() == "scripted"));
        assert_eq!(
            *upstream.settled.lock().expect("not poisoned"),
            [
                ("a".to_owned(), Settle::Ack),
                ("two:b".to_owned(), Settle::Ack),
                ("bad".to_owned(), Settle::Term),
            ]
        );
        assert_eq!(
            *upstream.connects.lock().expect("not poisoned"),
            3,
            "an end and a failure each reconnect"
        );
        assert_eq!(
            *upstream.closes.lock().expect("not poisoned"),
            3,
            "every session is closed, the cancelled one too"
        );
        assert_eq!(rejected_malformed(&ctx), 1, "the malformed message is counted");
        assert!(!ctx.readiness.is_ready(), "not ready once stopped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_under_once_naks_and_nothing_is_stored() {
        let upstream = Arc::new(Scripted::new(vec![Read::Message("a")], Retry::Once));
        let recorder = Arc::new(Recorder::refusing());
        run(upstream.clone(), recorder.clone()).await;
        assert!(recorder.events().is_empty());
        assert_eq!(
            *upstream.settled.lock().expect("not poisoned"),
            [("a".to_owned(), Settle::Nak)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_while_the_bus_refuses_leaves_the_message_unsettled() {
        let upstream = Arc::new(Scripted::new(
            vec![Read::Message("a")],
            Retry::UntilStored {
                first: Duration::from_millis(10),
            },
        ));
        let ctx = context(Secrets::default(), Arc::new(Recorder::refusing()));
        let cancel = CancellationToken::new();
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stopper.cancel();
        });
        let source = Box::new(Pull::new("es", "ev", upstream.clone(), &ctx));
        source.run(cancel).await.expect("Ok when cancelled");
        assert!(
            upstream.settled.lock().expect("not poisoned").is_empty(),
            "left for the upstream to redeliver"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_keeps_growing_across_sessions_shorter_than_steady_after() {
        let reads = || vec![Read::Fail, Read::Fail, Read::Fail];
        let started = tokio::time::Instant::now();
        run(
            Arc::new(Scripted::new(reads(), Retry::Once)),
            Arc::new(Recorder::default()),
        )
        .await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(600),
            "200ms after each session"
        );
        let mut short = Scripted::new(reads(), Retry::Once);
        short.steady = Duration::from_secs(30);
        let started = tokio::time::Instant::now();
        run(Arc::new(short), Arc::new(Recorder::default())).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(1400),
            "200ms, 400ms, 800ms"
        );
    }

    /// Sessions that end at once; the third read stops the source. Counts the sessions closed.
    #[derive(Default)]
    struct Closing {
        reads: Mutex<u32>,
        closed: Mutex<u32>,
        done: CancellationToken,
    }

    #[async_trait]
    impl Upstream for Arc<Closing> {
        type Session = ();
        type Message = String;

        fn kind(&self) -> &'static str {
            "closing"
        }

        fn retry(&self) -> Retry {
            Retry::Once
        }

        async fn connect(&self, _: &Names) -> Result<(), UpstreamError> {
            Ok(())
        }

        async fn next(&self, _: &mut ()) -> Result<Option<String>, UpstreamError> {
            let reads = {
                let mut reads = self.reads.lock().expect("not poisoned");
                *reads += 1;
                *reads
            };
            if reads < 3 {
                return Ok(None);
            }
            self.done.cancel();
            std::future::pending().await
        }

        fn decode(&self, _: &String) -> Result<Vec<Draft>, Malformed> {
            Ok(Vec::new())
        }

        async fn close(&self, _: ()) {
            *self.closed.lock().expect("not poisoned") += 1;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_session_is_closed_when_it_ends_and_when_the_source_stops() {
        let upstream = Arc::new(Closing::default());
        let ctx = context(Secrets::default(), Arc::new(Recorder::default()));
        let source = Box::new(Pull::new("es", "ev", upstream.clone(), &ctx));
        source
            .run(upstream.done.clone())
            .await
            .expect("Ok when cancelled");
        assert_eq!(*upstream.closed.lock().expect("not poisoned"), 3);
    }
}
