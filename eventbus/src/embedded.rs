//! The in-process bus backend: [`EmbeddedBus`], the default of `sluice run` on one machine.
//!
//! Its semantics are shaped like JetStream's so sensor code is the same on both backends: publish
//! returns once the event is stored; consumers are durable by name; several subscribers of one
//! durable share its events (work queue); every durable sees every matching event (fan-out); each
//! delivery is settled once with ack, nak(delay) or term, and is redelivered when it is not settled
//! within `ack_wait`.
//!
//! **Not durable across restarts.** "Stored" means "in this process's memory": a crash or restart
//! loses every event not yet acked. Sources that ack their senders after `publish` therefore lose
//! those events on a crash; that is the price of running without a server. Use the JetStream
//! backend when that matters.
//!
//! # Guarantees
//! - `publish` returns `Ok` only after the event is in the store; when the store is full it returns
//!   [`PublishError::Unavailable`] at once (never blocks, never drops). An id seen within the
//!   duplicate window is answered with `duplicate: true` and not stored again.
//! - Per durable, first deliveries come in publish order; redeliveries (after nak or ack wait) may
//!   come later than newer events.
//! - An event leaves a durable only by ack, term, or reaching `max_deliver` deliveries without an
//!   ack; the last is logged with `tracing::warn!` naming the durable and the event id.
//!
//! # Storage rule
//! When an event is published, every durable whose filter matches becomes one of its *owners*; a
//! durable created later with `deliver_all` becomes an owner of the stored events it matches. An
//! event is removed from the store once all its owners have settled it (ack, term, or dropped at
//! `max_deliver`). An event that no durable owns is kept for `unclaimed_retention`, so a durable
//! created soon after (e.g. a sensor starting after its EventSource) can still read it with
//! `deliver_all`; such events are also the first to be evicted when the store is full, since no
//! consumer is waiting for them. Events with owners never expire.
//!
//! # Backpressure
//! `max_ack_pending` bounds, per durable, the events delivered or waiting for redelivery (after a
//! nak) but not yet settled; while it is reached, no new events are handed out on that durable.
//!
//! # Shutdown
//! [`Bus::close`] rejects further publishes and subscriptions, ends every subscription stream, then
//! waits until the deliveries still held by subscribers are settled, dropped, or past their ack
//! wait (acks are still accepted after close). The backend spawns no tasks: all timing (ack wait, nak delay)
//! is driven by the subscribers' own polls, so there is nothing to leak.
//!
//! The options of a durable are those of the `subscribe` call that created it; later calls join it
//! and must pass the same filter.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    AckError, Acker, Bus, Deliveries, Delivery, Event, PublishAck, PublishError, Subject, SubjectFilter,
    SubscribeError, SubscribeOptions,
};

/// Settings of an [`EmbeddedBus`].
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Most events stored at once; when reached (and no unclaimed event can be evicted), `publish`
    /// returns [`PublishError::Unavailable`]. Default 100 000.
    pub capacity: usize,
    /// How long an event id is remembered for deduplication. Default 2 minutes (JetStream's default).
    pub duplicate_window: Duration,
    /// How long an event no durable owns is kept for durables created later with `deliver_all`.
    /// Default 5 minutes.
    pub unclaimed_retention: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            duplicate_window: Duration::from_secs(120),
            unclaimed_retention: Duration::from_secs(300),
        }
    }
}

/// Errors of the embedded backend, carried in the `Backend` variants of the bus errors.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// `subscribe` named an existing durable with a different filter.
    #[error(
        "failed to join durable `{durable}`: it filters {existing_source}.{existing_name}, not {requested_source}.{requested_name}"
    )]
    JoinDurable {
        /// The durable's name.
        durable: String,
        /// The durable's EventSource name.
        existing_source: String,
        /// The durable's event name.
        existing_name: String,
        /// The requested EventSource name.
        requested_source: String,
        /// The requested event name.
        requested_name: String,
    },
    /// `subscribe` was given options the bus cannot honour.
    #[error("failed to create durable `{durable}`: {reason}")]
    CreateDurable {
        /// The durable's name.
        durable: String,
        /// What is wrong with the options.
        reason: &'static str,
    },
}

/// The in-process bus. Cheap to clone; clones share one store.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: EmbeddedConfig,
    state: Mutex<State>,
    /// Cancelled by `close`; every subscription stream selects on it.
    cancel: CancellationToken,
    /// Notified whenever a delivery is settled, for `close` waiting on in-flight work.
    settled: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock (no user callbacks run under it, no indexing that
        // can fail), so a poisoned lock still guards consistent state; recover it rather than
        // taking every publisher and subscriber down.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    closed: bool,
    next_sequence: u64,
    next_generation: u64,
    store: BTreeMap<u64, Stored>,
    /// Event id → sequence of the first publish, for the duplicate window.
    seen: HashMap<String, u64>,
    /// The ids of `seen` in publish order, to expire them.
    seen_order: VecDeque<(Instant, String)>,
    /// Sequences of events published with no owner, in publish order, to expire or evict them.
    unclaimed: VecDeque<(Instant, u64)>,
    consumers: HashMap<String, Consumer>,
}

struct Stored {
    subject: Subject,
    event: Event,
    /// Durables that still have to settle this event.
    owners: usize,
}

struct Consumer {
    filter: SubjectFilter,
    options: SubscribeOptions,
    /// Events owned but never delivered, in publish order.
    ready: VecDeque<u64>,
    /// Delivered or nak'd events not yet settled, by sequence.
    pending: HashMap<u64, Pending>,
    /// When each pending event becomes deliverable again: its ack deadline while in flight, its
    /// redelivery time after a nak. Ordered, so the first entry is the next thing to do.
    timers: BTreeSet<(Instant, u64)>,
    /// Wakes this durable's subscribers: a new event, a settled one (a free slot), a changed timer.
    notify: Arc<Notify>,
}

struct Pending {
    /// How many times the event has been delivered to this durable.
    deliveries: u32,
    /// Identifies the latest delivery; settling through an older one is ignored where it matters.
    generation: u64,
    /// The event's entry in `Consumer::timers`.
    at: Instant,
    /// Handed out and not yet settled (false: waiting for redelivery after a nak).
    in_flight: bool,
    /// A subscriber still holds the latest delivery (false once its `Delivery` was dropped
    /// unsettled): only held deliveries can still be acked, so only they delay `close`.
    held: bool,
}

/// What a subscriber gets when it asks for the next delivery.
enum Next {
    Deliver {
        subject: Subject,
        event: Event,
        attempt: u32,
        sequence: u64,
        generation: u64,
    },
    /// Nothing to do before this instant (or before a notification, if `None`).
    Wait(Option<Instant>),
    /// The bus is closed or the durable is gone.
    End,
}

impl State {
    /// Forgets ids older than the duplicate window and expires unclaimed events.
    fn sweep(&mut self, config: &EmbeddedConfig, now: Instant) {
        while let Some((at, _)) = self.seen_order.front() {
            if now.saturating_duration_since(*at) < config.duplicate_window {
                break;
            }
            if let Some((_, id)) = self.seen_order.pop_front() {
                self.seen.remove(&id);
            }
        }
        while let Some(&(at, sequence)) = self.unclaimed.front() {
            if now.saturating_duration_since(at) < config.unclaimed_retention {
                break;
            }
            self.unclaimed.pop_front();
            // Why this is no loss: no durable owns the event (a durable that took it since is an
            // owner, and then the event stays); it was kept only for durables not yet created.
            self.remove_if_unowned(sequence);
        }
    }

    /// Makes room for one event by evicting the oldest event no durable owns; false if there is
    /// none.
    fn evict_unclaimed(&mut self) -> bool {
        while let Some((_, sequence)) = self.unclaimed.pop_front() {
            // Why this is no loss: as in `sweep`, nobody is waiting for an unowned event.
            if self.remove_if_unowned(sequence) {
                debug!(sequence, "evicted an unclaimed event to make room");
                return true;
            }
        }
        false
    }

    fn remove_if_unowned(&mut self, sequence: u64) -> bool {
        if self.store.get(&sequence).is_some_and(|stored| stored.owners == 0) {
            self.store.remove(&sequence);
            true
        } else {
            false
        }
    }

    /// One owner has settled `sequence`; removes the event once the last has.
    fn release(&mut self, sequence: u64) {
        if let Some(stored) = self.store.get_mut(&sequence) {
            stored.owners = stored.owners.saturating_sub(1);
            if stored.owners == 0 {
                self.store.remove(&sequence);
            }
        }
    }

    fn publish(
        &mut self,
        config: &EmbeddedConfig,
        subject: &Subject,
        event: &Event,
        now: Instant,
    ) -> Result<PublishAck, PublishError> {
        if self.closed {
            return Err(PublishError::Closed);
        }
        self.sweep(config, now);
        if let Some(&sequence) = self.seen.get(event.id()) {
            // Why no loss: the same id is already stored (or was, and was settled) within the window;
            // the sender may be acked, as JetStream does with Nats-Msg-Id.
            return Ok(PublishAck::stored(sequence, true));
        }
        if self.store.len() >= config.capacity && !self.evict_unclaimed() {
            // Why no loss: the caller gets an error and must not ack its sender, who retries.
            return Err(PublishError::Unavailable);
        }
        self.next_sequence += 1;
        let sequence = self.next_sequence;
        let mut owners = 0;
        for consumer in self.consumers.values_mut() {
            if consumer.filter.matches(subject) {
                consumer.ready.push_back(sequence);
                consumer.notify.notify_waiters();
                owners += 1;
            }
        }
        if owners == 0 {
            self.unclaimed.push_back((now, sequence));
        }
        self.store.insert(
            sequence,
            Stored {
                subject: subject.clone(),
                event: event.clone(),
                owners,
            },
        );
        self.seen.insert(event.id().to_owned(), sequence);
        self.seen_order.push_back((now, event.id().to_owned()));
        Ok(PublishAck::stored(sequence, false))
    }

    fn subscribe(
        &mut self,
        durable: &str,
        filter: SubjectFilter,
        options: SubscribeOptions,
    ) -> Result<Arc<Notify>, SubscribeError> {
        if self.closed {
            return Err(SubscribeError::Closed);
        }
        if let Some(consumer) = self.consumers.get(durable) {
            if consumer.filter != filter {
                return Err(SubscribeError::Backend(Box::new(EmbeddedError::JoinDurable {
                    durable: durable.to_owned(),
                    existing_source: consumer.filter.event_source_name.clone(),
                    existing_name: consumer.filter.event_name.clone(),
                    requested_source: filter.event_source_name,
                    requested_name: filter.event_name,
                })));
            }
            return Ok(consumer.notify.clone());
        }
        let invalid = |reason| {
            Err(SubscribeError::Backend(Box::new(EmbeddedError::CreateDurable {
                durable: durable.to_owned(),
                reason,
            })))
        };
        if options.max_ack_pending == 0 {
            return invalid("max_ack_pending must be at least 1");
        }
        if options.ack_wait.is_zero() {
            return invalid("ack_wait must be longer than zero");
        }
        let mut ready = VecDeque::new();
        if options.deliver_all {
            for (&sequence, stored) in &mut self.store {
                if filter.matches(&stored.subject) {
                    stored.owners += 1;
                    ready.push_back(sequence);
                }
            }
        }
        let notify = Arc::new(Notify::new());
        self.consumers.insert(
            durable.to_owned(),
            Consumer {
                filter,
                options,
                ready,
                pending: HashMap::new(),
                timers: BTreeSet::new(),
                notify: notify.clone(),
            },
        );
        Ok(notify)
    }

    /// The next delivery for `durable`: a due redelivery first, else the oldest new event if
    /// `max_ack_pending` allows.
    fn take_next(&mut self, durable: &str, now: Instant) -> Next {
        if self.closed {
            return Next::End;
        }
        let Some(consumer) = self.consumers.get_mut(durable) else {
            return Next::End;
        };
        let mut dropped = Vec::new();
        let mut taken = None;
        while let Some(&(at, sequence)) = consumer.timers.first() {
            if at > now {
                break;
            }
            consumer.timers.pop_first();
            let Some(pending) = consumer.pending.get_mut(&sequence) else {
                continue;
            };
            let max = consumer.options.max_deliver;
            if max > 0 && pending.deliveries >= max {
                // The only place the bus gives up on an event (the other is in `nak`): it was
                // delivered `max_deliver` times and never acked. Logged, never silent.
                consumer.pending.remove(&sequence);
                dropped.push(sequence);
                continue;
            }
            pending.deliveries += 1;
            self.next_generation += 1;
            pending.generation = self.next_generation;
            pending.at = later(now, consumer.options.ack_wait);
            pending.in_flight = true;
            pending.held = true;
            consumer.timers.insert((pending.at, sequence));
            taken = Some((sequence, pending.deliveries, pending.generation));
            break;
        }
        if taken.is_none() && consumer.pending.len() < consumer.options.max_ack_pending {
            if let Some(sequence) = consumer.ready.pop_front() {
                self.next_generation += 1;
                let at = later(now, consumer.options.ack_wait);
                consumer.pending.insert(
                    sequence,
                    Pending {
                        deliveries: 1,
                        generation: self.next_generation,
                        at,
                        in_flight: true,
                        held: true,
                    },
                );
                consumer.timers.insert((at, sequence));
                taken = Some((sequence, 1, self.next_generation));
            }
        }
        let wake_at = consumer.timers.first().map(|&(at, _)| at);
        let max_deliver = consumer.options.max_deliver;
        if !dropped.is_empty() {
            consumer.notify.notify_waiters();
        }
        for sequence in dropped {
            self.drop_at_max_deliver(durable, sequence, max_deliver);
        }
        match taken {
            Some((sequence, attempt, generation)) => match self.store.get(&sequence) {
                Some(stored) => Next::Deliver {
                    subject: stored.subject.clone(),
                    event: stored.event.clone(),
                    attempt,
                    sequence,
                    generation,
                },
                // Unreachable: an owned event stays stored until its owners settle it. Should it
                // happen there is nothing left to deliver; forget the entry (so it holds no
                // max_ack_pending slot) and let the caller go on to the next event at once.
                None => {
                    if let Some(consumer) = self.consumers.get_mut(durable) {
                        if let Some(pending) = consumer.pending.remove(&sequence) {
                            consumer.timers.remove(&(pending.at, sequence));
                        }
                    }
                    Next::Wait(Some(now))
                }
            },
            None => Next::Wait(wake_at),
        }
    }

    fn drop_at_max_deliver(&mut self, durable: &str, sequence: u64, max_deliver: u32) {
        let id = self
            .store
            .get(&sequence)
            .map(|stored| stored.event.id().to_owned())
            .unwrap_or_default();
        warn!(durable, event = %id, max_deliver, "dropped the event: delivered max_deliver times without an ack");
        self.release(sequence);
    }

    fn settle(&mut self, durable: &str, sequence: u64, how: Settle, now: Instant) {
        let Some(consumer) = self.consumers.get_mut(durable) else {
            return;
        };
        let Some(pending) = consumer.pending.get_mut(&sequence) else {
            // Already settled (through another delivery of the same event) or dropped: nothing to do.
            return;
        };
        match how {
            // Ack and term settle the event whichever delivery of it they come through (JetStream
            // acks by stream sequence too): the work was done, or the event is poison.
            Settle::Ack | Settle::Term => {
                consumer.timers.remove(&(pending.at, sequence));
                consumer.pending.remove(&sequence);
                consumer.notify.notify_waiters();
                self.release(sequence);
            }
            Settle::Nak { delay, generation } => {
                // A nak through an outdated delivery is ignored: the event is already due for
                // redelivery (its ack wait passed) or out with someone else.
                if pending.generation != generation || !pending.in_flight {
                    return;
                }
                let max = consumer.options.max_deliver;
                consumer.timers.remove(&(pending.at, sequence));
                if max > 0 && pending.deliveries >= max {
                    // Giving up: see `take_next`. Logged, never silent.
                    consumer.pending.remove(&sequence);
                    consumer.notify.notify_waiters();
                    self.drop_at_max_deliver(durable, sequence, max);
                    return;
                }
                pending.at = later(now, delay);
                pending.in_flight = false;
                consumer.timers.insert((pending.at, sequence));
                consumer.notify.notify_waiters();
            }
            Settle::Progress { generation } => {
                // Only the delivery that is out right now can extend its own ack wait.
                if pending.generation != generation || !pending.in_flight {
                    return;
                }
                consumer.timers.remove(&(pending.at, sequence));
                pending.at = later(now, consumer.options.ack_wait);
                consumer.timers.insert((pending.at, sequence));
                consumer.notify.notify_waiters();
            }
        }
    }

    /// The delivery `generation` of `sequence` was dropped without being settled. Nothing changes
    /// for redelivery (it still comes after ack_wait, as for any unacked delivery); `close` just
    /// stops waiting for it.
    fn let_go(&mut self, durable: &str, sequence: u64, generation: u64) {
        let pending = self
            .consumers
            .get_mut(durable)
            .and_then(|consumer| consumer.pending.get_mut(&sequence));
        if let Some(pending) = pending {
            if pending.generation == generation {
                pending.held = false;
            }
        }
    }

    /// The latest ack deadline of the deliveries handed out and not settled, if any is still open.
    fn in_flight_deadline(&self, now: Instant) -> Option<Instant> {
        self.consumers
            .values()
            .flat_map(|consumer| consumer.pending.values())
            .filter(|pending| pending.in_flight && pending.held && pending.at > now)
            .map(|pending| pending.at)
            .max()
    }
}

/// `now + duration`, saturating far in the future instead of panicking on overflow (a caller may
/// pass `Duration::MAX` as "never", and this runs under the state lock).
fn later(now: Instant, duration: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(duration.min(FAR)).unwrap_or(now)
}

enum Settle {
    Ack,
    Term,
    Nak {
        delay: Duration,
        generation: u64,
    },
    /// Not a settlement: the consumer is still working; restart the ack wait.
    Progress {
        generation: u64,
    },
}

impl EmbeddedBus {
    /// An empty bus.
    pub fn new(config: EmbeddedConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                cancel: CancellationToken::new(),
                settled: Notify::new(),
            }),
        }
    }

    /// How many events are stored now (for tests and metrics).
    pub fn stored(&self) -> usize {
        self.inner.lock().store.len()
    }

    /// How many events of durable `durable` are delivered or waiting for redelivery, unsettled.
    pub fn pending(&self, durable: &str) -> usize {
        self.inner
            .lock()
            .consumers
            .get(durable)
            .map_or(0, |consumer| consumer.pending.len())
    }
}

impl Default for EmbeddedBus {
    fn default() -> Self {
        Self::new(EmbeddedConfig::default())
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError> {
        let now = Instant::now();
        self.inner.lock().publish(&self.inner.config, subject, event, now)
    }

    async fn subscribe(
        &self,
        durable: &str,
        filter: SubjectFilter,
        options: SubscribeOptions,
    ) -> Result<Deliveries, SubscribeError> {
        let notify = self.inner.lock().subscribe(durable, filter, options)?;
        let subscriber = Subscriber {
            inner: self.inner.clone(),
            durable: Arc::from(durable),
            notify,
        };
        Ok(futures::stream::unfold(subscriber, |subscriber| async move {
            let delivery = subscriber.next().await?;
            Some((delivery, subscriber))
        })
        .boxed())
    }

    async fn close(&self) {
        {
            let mut state = self.inner.lock();
            if !state.closed {
                info!(stored = state.store.len(), "closing the embedded bus");
            }
            state.closed = true;
        }
        // Why no loss: ending the streams takes nothing out of the store; events not yet acked
        // stay there (and with the process go, see the module doc: the embedded bus is not durable).
        self.inner.cancel.cancel();
        // Wait for deliveries still held, so a sensor finishing its in-flight work can still ack
        // it; a delivery dropped, or unsettled past its ack wait, would be redelivered anyway.
        loop {
            let settled = self.inner.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let Some(deadline) = self.inner.lock().in_flight_deadline(Instant::now()) else {
                return;
            };
            tokio::select! {
                () = &mut settled => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// One subscriber of a durable: polls the shared state for its next delivery.
struct Subscriber {
    inner: Arc<Inner>,
    durable: Arc<str>,
    notify: Arc<Notify>,
}

impl Subscriber {
    async fn next(&self) -> Option<Delivery> {
        loop {
            // Registered before looking at the state, so a notification sent between the look and
            // the wait is not missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = match self.inner.lock().take_next(&self.durable, Instant::now()) {
                Next::End => return None,
                Next::Deliver {
                    subject,
                    event,
                    attempt,
                    sequence,
                    generation,
                } => {
                    let acker = EmbeddedAcker {
                        inner: Arc::downgrade(&self.inner),
                        durable: self.durable.clone(),
                        sequence,
                        generation,
                        settled: AtomicBool::new(false),
                    };
                    // A Delivery dropped unsettled is redelivered after ack_wait: its ack deadline
                    // is already in the durable's timers (the acker's Drop only informs `close`).
                    return Some(Delivery::new(event, subject, attempt, Box::new(acker)));
                }
                Next::Wait(wake_at) => wake_at,
            };
            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.inner.cancel.cancelled() => return None,
                () = &mut notified => {}
                () = sleep => {}
            }
        }
    }
}

struct EmbeddedAcker {
    /// Weak, so a delivery held after the bus is gone does not keep the store alive.
    inner: Weak<Inner>,
    durable: Arc<str>,
    sequence: u64,
    generation: u64,
    /// Set by ack, nak or term, so dropping a settled delivery costs nothing.
    settled: AtomicBool,
}

impl EmbeddedAcker {
    fn settle(&self, how: Settle) -> Result<(), AckError> {
        let inner = self.inner.upgrade().ok_or(AckError::Closed)?;
        self.settled.store(true, Ordering::Relaxed);
        inner
            .lock()
            .settle(&self.durable, self.sequence, how, Instant::now());
        inner.settled.notify_waiters();
        Ok(())
    }
}

impl Drop for EmbeddedAcker {
    fn drop(&mut self) {
        if self.settled.load(Ordering::Relaxed) {
            return;
        }
        // Dropped unsettled: the event is redelivered after its ack wait like any unacked one
        // (its timer is already set). Only tell `close` that nobody can ack it any more.
        if let Some(inner) = self.inner.upgrade() {
            inner.lock().let_go(&self.durable, self.sequence, self.generation);
            inner.settled.notify_waiters();
        }
    }
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(&self) -> Result<(), AckError> {
        self.settle(Settle::Ack)
    }

    async fn nak(&self, delay: Duration) -> Result<(), AckError> {
        self.settle(Settle::Nak {
            delay,
            generation: self.generation,
        })
    }

    async fn term(&self) -> Result<(), AckError> {
        self.settle(Settle::Term)
    }

    async fn progress(&self) -> Result<(), AckError> {
        let inner = self.inner.upgrade().ok_or(AckError::Closed)?;
        // Not `settle`: the delivery stays unsettled, only its ack wait restarts.
        inner.lock().settle(
            &self.durable,
            self.sequence,
            Settle::Progress {
                generation: self.generation,
            },
            Instant::now(),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
