//! The state of a multi-dependency trigger: for each dependency the latest event that passed its
//! filters, and the firings claimed but not yet finished (ARCHITECTURE.md, "Trigger state and
//! firing").
//!
//! Behind the [`TriggerState`] trait, made per trigger by a [`StateFactory`], so the runner works
//! the same on either implementation:
//! - [`InMemoryTriggerState`] lives as long as the process: events held when it stops are lost
//!   (they were acknowledged when they entered the state). The default, for `sluice run` on the
//!   embedded bus.
//! - [`kv::KvTriggerState`] lives in a JetStream key-value bucket per sensor, changed only with
//!   compare-and-set on the revision, so replicas share it without double-firing and a restarted
//!   replica finds what a crashed one held and claimed.

mod document;
pub mod kv;

pub use kv::{KvStateConfig, KvStateError, KvStateFactory, KvTriggerState};

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sluice_eventbus::Event;

use crate::firing::FiringId;
use crate::params::EventsByDependency;

/// How many finished firing ids the in-memory state remembers, to skip a firing formed again from
/// redelivered events.
pub const REMEMBERED_FIRINGS: usize = 4096;

/// Why the state could not be read or changed. The runner naks the delivery and tries again later.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A backend failure (KV store unreachable, revision conflict after retries, …).
    #[error("failed to access the trigger state")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The result of holding an event.
#[derive(Clone, Debug)]
pub struct Held {
    /// Every held event after the change, by dependency.
    pub events: EventsByDependency,
    /// The older, unused event of the same dependency that the new one replaced (upstream keeps
    /// only the latest). `None` when nothing was held or it was the same event again.
    pub replaced: Option<Event>,
}

/// The result of claiming a firing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The held events were taken; the firing is in flight and must be executed, then finished.
    Claimed,
    /// A firing with this id already finished (its events were redelivered); the held events were
    /// taken and nothing is to be executed.
    AlreadyDone,
    /// The held events changed since they were read (another replica moved first); nothing taken.
    Conflict,
}

/// A firing claimed and not yet finished, for recovery after a restart.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// The firing's id.
    pub id: FiringId,
    /// Its events.
    pub events: EventsByDependency,
}

/// The state of one trigger.
#[async_trait]
pub trait TriggerState: Send + Sync + 'static {
    /// Holds `event` as the latest event of `dependency`, replacing an older one.
    async fn hold(&self, dependency: &str, event: Event) -> Result<Held, StateError>;

    /// Takes the held events if they are exactly `expected` (same dependencies, same event ids) and
    /// records `firing` as in flight with them, in one step.
    async fn claim(&self, firing: &FiringId, expected: &EventsByDependency) -> Result<Claim, StateError>;

    /// Records `firing` as finished (succeeded, or failed and dead-lettered or reported).
    async fn finish(&self, firing: &FiringId) -> Result<(), StateError>;

    /// Firings claimed and not finished, by any owner.
    async fn in_flight(&self) -> Result<Vec<InFlight>, StateError>;

    /// `conditionsReset`: drops the held events (a partly satisfied condition starts over) for the
    /// scheduled tick at `tick_ms`; a tick already applied (by another replica) is not applied again.
    /// Returns how many events were dropped. Claimed firings are not touched.
    async fn reset(&self, tick_ms: u64) -> Result<usize, StateError>;

    /// Firings claimed and not finished whose owner is gone (a crashed process or replica), now
    /// owned by the caller, who runs each again with the same id and then [`finish`](Self::finish)es
    /// it. At most one caller gets each. The runner calls it at start and then periodically.
    ///
    /// The default returns none: a state that lives only inside one process has no other owner to
    /// take over from (and its own in-flight firings are running).
    async fn take_over(&self) -> Result<Vec<InFlight>, StateError> {
        Ok(Vec::new())
    }
}

/// Which trigger a [`StateFactory`] makes a state for.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TriggerScope<'a> {
    /// The sensor's name.
    pub sensor: &'a str,
    /// The trigger's name.
    pub trigger: &'a str,
    /// How long a claimed firing may take before another owner may take it over: the trigger's
    /// worst-case firing time plus a margin (the ack wait of its durables).
    pub claim_lease: Duration,
}

impl<'a> TriggerScope<'a> {
    /// The scope of trigger `trigger` of sensor `sensor`.
    pub fn new(sensor: &'a str, trigger: &'a str, claim_lease: Duration) -> Self {
        Self {
            sensor,
            trigger,
            claim_lease,
        }
    }
}

/// Makes the [`TriggerState`] of each trigger of a sensor (no I/O: open the backend first).
pub trait StateFactory: Send + Sync {
    /// The state of the trigger in `scope`.
    fn create(&self, scope: &TriggerScope<'_>) -> Result<Arc<dyn TriggerState>, StateError>;
}

/// Makes an [`InMemoryTriggerState`] per trigger.
#[derive(Clone, Copy, Debug, Default)]
pub struct InMemoryStateFactory;

impl StateFactory for InMemoryStateFactory {
    fn create(&self, _scope: &TriggerScope<'_>) -> Result<Arc<dyn TriggerState>, StateError> {
        Ok(Arc::new(InMemoryTriggerState::new()))
    }
}

#[derive(Default)]
struct Inner {
    held: EventsByDependency,
    in_flight: BTreeMap<FiringId, EventsByDependency>,
    done: HashSet<FiringId>,
    done_order: VecDeque<FiringId>,
    last_reset_ms: Option<u64>,
}

/// A [`TriggerState`] in memory, for one process.
#[derive(Default)]
pub struct InMemoryTriggerState {
    inner: Mutex<Inner>,
}

impl InMemoryTriggerState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another task panicked mid-update of plain maps; the maps are
        // still consistent enough to keep serving, so recover rather than propagate the panic.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn same_ids(a: &EventsByDependency, b: &EventsByDependency) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((da, ea), (db, eb))| da == db && ea.id() == eb.id())
}

#[async_trait]
impl TriggerState for InMemoryTriggerState {
    async fn hold(&self, dependency: &str, event: Event) -> Result<Held, StateError> {
        let mut inner = self.lock();
        let previous = inner.held.insert(dependency.to_owned(), event);
        let new_id = inner.held.get(dependency).map(|e| e.id().to_owned());
        let replaced = previous.filter(|old| Some(old.id()) != new_id.as_deref());
        Ok(Held {
            events: inner.held.clone(),
            replaced,
        })
    }

    async fn claim(&self, firing: &FiringId, expected: &EventsByDependency) -> Result<Claim, StateError> {
        let mut inner = self.lock();
        if !same_ids(&inner.held, expected) {
            return Ok(Claim::Conflict);
        }
        let events = std::mem::take(&mut inner.held);
        if inner.done.contains(firing) {
            return Ok(Claim::AlreadyDone);
        }
        inner.in_flight.insert(firing.clone(), events);
        Ok(Claim::Claimed)
    }

    async fn finish(&self, firing: &FiringId) -> Result<(), StateError> {
        let mut inner = self.lock();
        inner.in_flight.remove(firing);
        if inner.done.insert(firing.clone()) {
            inner.done_order.push_back(firing.clone());
            while inner.done_order.len() > REMEMBERED_FIRINGS {
                if let Some(oldest) = inner.done_order.pop_front() {
                    inner.done.remove(&oldest);
                }
            }
        }
        Ok(())
    }

    async fn reset(&self, tick_ms: u64) -> Result<usize, StateError> {
        let mut inner = self.lock();
        if inner.last_reset_ms.is_some_and(|last| last >= tick_ms) {
            return Ok(0);
        }
        inner.last_reset_ms = Some(tick_ms);
        Ok(std::mem::take(&mut inner.held).len())
    }

    async fn in_flight(&self) -> Result<Vec<InFlight>, StateError> {
        let inner = self.lock();
        Ok(inner
            .in_flight
            .iter()
            .map(|(id, events)| InFlight {
                id: id.clone(),
                events: events.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_eventbus::EventBuilder;

    fn event(id: &str) -> Event {
        EventBuilder::new("es", "ev", "webhook")
            .id(id)
            .build()
            .expect("a test event with an id builds")
    }

    #[tokio::test]
    async fn newer_event_replaces_older_and_reports_it() -> anyhow::Result<()> {
        let state = InMemoryTriggerState::new();
        assert!(state.hold("a", event("a1")).await?.replaced.is_none());
        let held = state.hold("a", event("a2")).await?;
        assert_eq!(held.replaced.map(|e| e.id().to_owned()), Some("a1".to_owned()));
        assert_eq!(held.events.get("a").map(|e| e.id()), Some("a2"));
        // The same event again (a redelivery) is not a replacement.
        assert!(state.hold("a", event("a2")).await?.replaced.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn claim_takes_the_held_events_once() -> anyhow::Result<()> {
        let state = InMemoryTriggerState::new();
        state.hold("a", event("a1")).await?;
        let held = state.hold("b", event("b1")).await?.events;
        let id = FiringId::new("t", &held);
        assert_eq!(state.claim(&id, &held).await?, Claim::Claimed);
        assert_eq!(state.in_flight().await?.len(), 1);
        assert_eq!(
            state.claim(&id, &held).await?,
            Claim::Conflict,
            "nothing is held any more"
        );
        state.finish(&id).await?;
        assert!(state.in_flight().await?.is_empty());

        // The same events formed again (redelivered) are recognised as done.
        state.hold("a", event("a1")).await?;
        let held = state.hold("b", event("b1")).await?.events;
        assert_eq!(state.claim(&id, &held).await?, Claim::AlreadyDone);
        Ok(())
    }

    #[tokio::test]
    async fn claim_conflicts_when_the_state_moved() -> anyhow::Result<()> {
        let state = InMemoryTriggerState::new();
        let seen = state.hold("a", event("a1")).await?.events;
        state.hold("a", event("a2")).await?;
        assert_eq!(
            state.claim(&FiringId::new("t", &seen), &seen).await?,
            Claim::Conflict
        );
        Ok(())
    }
}
