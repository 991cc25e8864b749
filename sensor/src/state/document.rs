//! The JSON document that holds one trigger's state in the key-value bucket, and the pure
//! transitions on it (no I/O, so they are unit-tested in milliseconds). `kv` reads a document,
//! applies one transition and writes it back with compare-and-set on the revision.
//!
//! ```json
//! {"version": 1, "trigger": "t",
//!  "held": {"a": {CloudEvent JSON}},
//!  "inFlight": {"<firing id>": {"events": {"a": {…}, "b": {…}}, "owner": "<uuid>",
//!                               "replica": "pod-0", "claimedAtMs": 1700000000000}},
//!  "done": [{"id": "<firing id>", "events": {"a": "a1", "b": "b1"}}]}
//! ```
//!
//! Events are kept as full CloudEvents JSON (the same encoding as [`Event::to_json`]), so an
//! in-flight firing can be run again by another replica with exactly its events.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use sluice_eventbus::Event;

use super::Claim;
use crate::params::EventsByDependency;

/// The document format this code writes. A document with a higher version is never overwritten.
pub const DOCUMENT_VERSION: u32 = 1;

/// The state of one trigger.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerDocument {
    /// The format version, [`DOCUMENT_VERSION`].
    pub version: u32,
    /// The trigger's name (the key is a sanitized form of it).
    #[serde(default)]
    pub trigger: String,
    /// The latest event per dependency that passed its filters and is not yet used by a firing.
    #[serde(default)]
    pub held: EventsByDependency,
    /// Firings claimed and not finished, by firing id.
    #[serde(default)]
    pub in_flight: BTreeMap<String, InFlightRecord>,
    /// Recently finished firings, oldest first, bounded.
    #[serde(default)]
    pub done: VecDeque<DoneRecord>,
    /// The latest `conditionsReset` tick applied (ms since the Unix epoch), so replicas that each
    /// reset at the same tick clear the held events once, not again after a newer event arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset_ms: Option<u64>,
}

/// A claimed firing.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlightRecord {
    /// Its events, by dependency.
    pub events: EventsByDependency,
    /// The state instance (one per trigger per process) that runs it.
    pub owner: String,
    /// The stable name of the replica that runs it (e.g. the pod name), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// When it was claimed or last taken over, in milliseconds since the Unix epoch.
    pub claimed_at_ms: u64,
}

/// A finished firing: its id and the ids of the events it used, by dependency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneRecord {
    /// The firing id.
    pub id: String,
    /// The event id per dependency.
    #[serde(default)]
    pub events: BTreeMap<String, String>,
}

/// Who is changing the document, and when.
#[derive(Clone, Debug)]
pub struct Actor<'a> {
    /// The state instance's id.
    pub owner: &'a str,
    /// The replica's stable name.
    pub replica: Option<&'a str>,
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// What holding an event did.
#[derive(Clone, Debug, PartialEq)]
pub enum HoldOutcome {
    /// The event is held; `replaced` is the older unused event of the same dependency it replaced.
    Held { replaced: Option<Event> },
    /// The same event was already held (a redelivery); nothing changed.
    AlreadyHeld,
    /// The event was already used by this firing (in flight or done); it is not held again.
    AlreadyUsed { firing: String },
}

impl TriggerDocument {
    /// An empty document for `trigger`.
    pub fn new(trigger: &str) -> Self {
        Self {
            version: DOCUMENT_VERSION,
            trigger: trigger.to_owned(),
            held: EventsByDependency::new(),
            in_flight: BTreeMap::new(),
            done: VecDeque::new(),
            last_reset_ms: None,
        }
    }

    /// Applies the `conditionsReset` tick at `tick_ms`: drops the held events unless this tick (or a
    /// later one) was applied already. Returns how many were dropped and whether the document changed.
    pub fn reset(&mut self, tick_ms: u64) -> (usize, bool) {
        if self.last_reset_ms.is_some_and(|last| last >= tick_ms) {
            return (0, false);
        }
        let dropped = std::mem::take(&mut self.held).len();
        self.last_reset_ms = Some(tick_ms);
        (dropped, true)
    }

    /// The firing (in flight or recently done) that used event `event_id` of `dependency`.
    pub fn used_by(&self, dependency: &str, event_id: &str) -> Option<&str> {
        let in_flight = self
            .in_flight
            .iter()
            .find(|(_, record)| record.events.get(dependency).is_some_and(|e| e.id() == event_id));
        if let Some((id, _)) = in_flight {
            return Some(id);
        }
        self.done
            .iter()
            .find(|record| record.events.get(dependency).is_some_and(|e| e == event_id))
            .map(|record| record.id.as_str())
    }

    /// Holds `event` as the latest event of `dependency`.
    pub fn hold(&mut self, dependency: &str, event: Event) -> HoldOutcome {
        // Why refuse a used event: a redelivery of the event that completed a firing (its ack was
        // lost, or the firing was interrupted and the delivery naked) would otherwise sit in the
        // state alone and later pair with a newer event of another dependency — one event used by
        // two firings. The firing that used it runs (or ran) with it already.
        if let Some(firing) = self.used_by(dependency, event.id()) {
            return HoldOutcome::AlreadyUsed {
                firing: firing.to_owned(),
            };
        }
        match self.held.get(dependency) {
            Some(old) if old.id() == event.id() => HoldOutcome::AlreadyHeld,
            _ => HoldOutcome::Held {
                // Why report it: upstream keeps only the latest event per dependency; the older
                // one was acked when it was held, so this is the only trace of it (counted, logged).
                replaced: self.held.insert(dependency.to_owned(), event),
            },
        }
    }

    /// Takes the held events when their ids are exactly `expected` and records `firing` in flight
    /// with them. Returns the claim and whether the document changed.
    pub fn claim(
        &mut self,
        firing: &str,
        expected: &BTreeMap<String, String>,
        actor: &Actor<'_>,
    ) -> (Claim, bool) {
        if !same_ids(&self.held, expected) {
            // Another owner (or a newer event) moved the state since the caller read it; the
            // caller's events are either taken by that owner's claim or replaced (and reported).
            return (Claim::Conflict, false);
        }
        let events = std::mem::take(&mut self.held);
        if self.done.iter().any(|d| d.id == firing) || self.in_flight.contains_key(firing) {
            // The same events formed this firing before (it is done, or running under its owner):
            // taking them without a new claim is what keeps it from running twice.
            return (Claim::AlreadyDone, true);
        }
        self.in_flight.insert(
            firing.to_owned(),
            InFlightRecord {
                events,
                owner: actor.owner.to_owned(),
                replica: actor.replica.map(str::to_owned),
                claimed_at_ms: actor.now_ms,
            },
        );
        (Claim::Claimed, true)
    }

    /// Records `firing` as finished, remembering at most `remembered` finished firings. Returns
    /// whether the document changed.
    pub fn finish(&mut self, firing: &str, remembered: usize) -> bool {
        let record = self.in_flight.remove(firing);
        if self.done.iter().any(|d| d.id == firing) {
            return record.is_some();
        }
        let events = record
            .map(|r| {
                r.events
                    .iter()
                    .map(|(d, e)| (d.clone(), e.id().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        self.done.push_back(DoneRecord {
            id: firing.to_owned(),
            events,
        });
        // Why bounded: the document must fit in one NATS message. A firing older than the last
        // `remembered` ones is no longer recognised if all its events are redelivered — the
        // target's idempotency key (the same firing id) is the guard after that.
        while self.done.len() > remembered.max(1) {
            self.done.pop_front();
        }
        true
    }

    /// Takes over the in-flight firings whose owner is gone: claims older than `lease_ms` (any
    /// owner, this one included: a claim whose write outcome was unknown), and claims of an earlier
    /// process of the same replica (it is not running: we are). Returns their ids.
    pub fn take_over(&mut self, actor: &Actor<'_>, lease_ms: u64) -> Vec<String> {
        let mut taken = Vec::new();
        for (id, record) in &mut self.in_flight {
            let expired = record.claimed_at_ms.saturating_add(lease_ms) <= actor.now_ms;
            let earlier_self = record.owner != actor.owner
                && actor.replica.is_some()
                && record.replica.as_deref() == actor.replica;
            if expired || earlier_self {
                record.owner = actor.owner.to_owned();
                record.replica = actor.replica.map(str::to_owned);
                record.claimed_at_ms = actor.now_ms;
                taken.push(id.clone());
            }
        }
        taken
    }
}

/// The event id per dependency.
pub fn event_ids(events: &EventsByDependency) -> BTreeMap<String, String> {
    events
        .iter()
        .map(|(d, e)| (d.clone(), e.id().to_owned()))
        .collect()
}

fn same_ids(held: &EventsByDependency, expected: &BTreeMap<String, String>) -> bool {
    held.len() == expected.len()
        && held
            .iter()
            .zip(expected)
            .all(|((dh, eh), (de, ie))| dh == de && eh.id() == ie)
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

    fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(d, e)| (d.to_string(), e.to_string()))
            .collect()
    }

    const ME: Actor<'static> = Actor {
        owner: "me",
        replica: Some("pod-0"),
        now_ms: 1_000,
    };

    #[test]
    fn hold_replaces_reports_and_ignores_repeats() {
        let mut doc = TriggerDocument::new("t");
        assert_eq!(doc.hold("a", event("a1")), HoldOutcome::Held { replaced: None });
        assert_eq!(doc.hold("a", event("a1")), HoldOutcome::AlreadyHeld);
        let a1 = match doc.hold("a", event("a2")) {
            HoldOutcome::Held { replaced } => replaced.map(|e| e.id().to_owned()),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(a1.as_deref(), Some("a1"));
        assert_eq!(event_ids(&doc.held), ids(&[("a", "a2")]));
    }

    #[test]
    fn claim_moves_held_events_in_flight_once() {
        let mut doc = TriggerDocument::new("t");
        doc.hold("a", event("a1"));
        doc.hold("b", event("b1"));
        let expected = ids(&[("a", "a1"), ("b", "b1")]);
        assert_eq!(
            doc.claim("f1", &ids(&[("a", "a1")]), &ME),
            (Claim::Conflict, false)
        );
        assert_eq!(doc.claim("f1", &expected, &ME), (Claim::Claimed, true));
        assert!(doc.held.is_empty());
        let record = &doc.in_flight["f1"];
        assert_eq!(event_ids(&record.events), expected);
        assert_eq!((record.owner.as_str(), record.claimed_at_ms), ("me", 1_000));
        assert_eq!(doc.claim("f1", &expected, &ME), (Claim::Conflict, false));
    }

    #[test]
    fn used_events_are_not_held_again_and_done_is_bounded() {
        let mut doc = TriggerDocument::new("t");
        doc.hold("a", event("a1"));
        doc.hold("b", event("b1"));
        doc.claim("f1", &ids(&[("a", "a1"), ("b", "b1")]), &ME);
        let used = HoldOutcome::AlreadyUsed { firing: "f1".into() };
        assert_eq!(doc.hold("b", event("b1")), used, "while in flight");
        assert!(doc.finish("f1", 2));
        assert!(doc.in_flight.is_empty());
        assert_eq!(doc.hold("b", event("b1")), used, "after done");
        assert!(!doc.finish("f1", 2), "finishing twice changes nothing");
        assert!(doc.finish("f2", 2));
        assert!(doc.finish("f3", 2));
        let remembered: Vec<&str> = doc.done.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(remembered, ["f2", "f3"]);
        assert_eq!(doc.hold("b", event("b1")), HoldOutcome::Held { replaced: None });
    }

    #[test]
    fn claim_of_a_done_firing_takes_the_events_without_running() {
        let mut doc = TriggerDocument::new("t");
        doc.finish("f1", 10);
        doc.hold("a", event("a1"));
        assert_eq!(
            doc.claim("f1", &ids(&[("a", "a1")]), &ME),
            (Claim::AlreadyDone, true)
        );
        assert!(doc.held.is_empty() && doc.in_flight.is_empty());
    }

    #[test]
    fn take_over_only_expired_or_earlier_self() {
        let mut doc = TriggerDocument::new("t");
        for (firing, owner, replica, at) in [
            ("live", "other", Some("pod-1"), 900),
            ("expired", "other", Some("pod-1"), 100),
            ("restarted", "old-me", Some("pod-0"), 900),
            ("mine", "me", Some("pod-0"), 900),
        ] {
            doc.in_flight.insert(
                firing.into(),
                InFlightRecord {
                    events: EventsByDependency::new(),
                    owner: owner.into(),
                    replica: replica.map(str::to_owned),
                    claimed_at_ms: at,
                },
            );
        }
        let mut taken = doc.take_over(&ME, 500);
        taken.sort();
        assert_eq!(taken, ["expired", "restarted"]);
        assert_eq!(doc.in_flight["expired"].owner, "me");
        assert_eq!(doc.in_flight["expired"].claimed_at_ms, 1_000);
        assert_eq!(doc.in_flight["live"].owner, "other");
        assert!(doc.take_over(&ME, 500).is_empty(), "taken over once");
    }

    #[test]
    fn document_round_trips_as_json_with_full_events() -> anyhow::Result<()> {
        let mut doc = TriggerDocument::new("t");
        doc.hold("a", event("a1"));
        let json = serde_json::to_value(&doc)?;
        assert_eq!(json["version"], 1);
        assert_eq!(json["held"]["a"]["id"], "a1");
        assert_eq!(json["held"]["a"]["specversion"], "1.0");
        let back: TriggerDocument = serde_json::from_value(json)?;
        assert_eq!(back.held, doc.held);
        Ok(())
    }
}
