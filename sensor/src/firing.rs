//! A firing: one execution of a trigger for a set of events, identified by a deterministic id.
//!
//! The id is the hex SHA-256 of the trigger's name and the sorted `dependency = event id` pairs
//! (each part length-prefixed, so no two different inputs share an encoding). The same events always
//! give the same id — after a redelivery, a restart or on another replica — and it is sent to the
//! target as the idempotency key, so a repeated firing can be recognised there.

use std::fmt;

use sha2::{Digest, Sha256};
use sluice_crds::sensor::TriggerTemplate;

use crate::params::EventsByDependency;

/// The id of a firing (64 lowercase hex characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiringId(String);

impl FiringId {
    /// The id of trigger `trigger` firing for `events`.
    pub fn new(trigger: &str, events: &EventsByDependency) -> Self {
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        part(trigger.as_bytes());
        // A BTreeMap iterates in dependency-name order: the pairs are sorted.
        for (dependency, event) in events {
            part(dependency.as_bytes());
            part(event.id().as_bytes());
        }
        FiringId(hex::encode(hasher.finalize()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FiringId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a trigger needs to act once.
#[derive(Clone, Debug)]
pub struct Firing {
    /// The firing's id, sent as the idempotency key.
    pub id: FiringId,
    /// The sensor's name.
    pub sensor: String,
    /// The trigger's name (for a dead-letter firing: the dead-letter trigger's name).
    pub trigger: String,
    /// The events that caused the firing, by dependency name.
    pub events: EventsByDependency,
    /// The trigger template with the trigger's top-level `parameters` applied (upstream applies them
    /// per firing, before the action's own parameters).
    pub template: TriggerTemplate,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_eventbus::{Event, EventBuilder};

    fn event(id: &str) -> Event {
        EventBuilder::new("es", "ev", "webhook")
            .id(id)
            .build()
            .expect("a test event with an id builds")
    }

    fn events(pairs: &[(&str, &str)]) -> EventsByDependency {
        pairs.iter().map(|(d, id)| (d.to_string(), event(id))).collect()
    }

    #[test]
    fn same_events_same_id_regardless_of_insertion_order() {
        let a = FiringId::new("t", &events(&[("a", "1"), ("b", "2")]));
        let b = FiringId::new("t", &events(&[("b", "2"), ("a", "1")]));
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    /// Pinned values: a firing id is the idempotency key targets have already stored, so it must
    /// not change between versions (a new derivation would make every redelivery after an upgrade
    /// look like a new firing). Each derives only from the trigger's name and the sorted
    /// `(dependency name, event id)` pairs: SHA-256 over each part as its length (u64 big-endian)
    /// followed by its UTF-8 bytes — trigger, then dependency, event id, dependency, event id, … —
    /// in lowercase hex. Nothing else of the event (source, time, data) goes in. The expected
    /// values were computed once, independently (Python's hashlib over that encoding), and written
    /// down; if this test fails, the derivation changed, which is a breaking change for targets.
    #[test]
    fn ids_are_pinned_across_versions() {
        let cases = [
            (
                "t",
                events(&[("a", "1"), ("b", "2")]),
                "6ec5bad9d709b72db1f2133339db34631e2837fdca97d3fdd753a4e9cf73bb7e",
            ),
            // The single-dependency webhook trigger of tests/cluster.rs, event id from the sender's
            // Idempotency-Key.
            (
                "forward",
                events(&[("d", "cluster-delivery-7")]),
                "9478c4bd784fd20f69d00dcd91120bda45cafbf938ed6fe7820fb188253b41e7",
            ),
            // An `a && b` pair, inserted out of order.
            (
                "pair",
                events(&[("b", "b1"), ("a", "a1")]),
                "7ae97a03da842eada97818b144603293a74f24f1ddca8d14f34f047b37a3eaac",
            ),
        ];
        for (trigger, events, want) in cases {
            assert_eq!(
                FiringId::new(trigger, &events).as_str(),
                want,
                "trigger {trigger}"
            );
        }
        // The event's source, type, time and data do not go in: only its id does.
        let other = EventBuilder::new("another-source", "another-event", "calendar")
            .id("1")
            .data_json(serde_json::json!({"x": 1}))
            .build()
            .expect("a test event with an id builds");
        let mixed: EventsByDependency = [("a".to_owned(), other), ("b".to_owned(), event("2"))].into();
        assert_eq!(
            FiringId::new("t", &mixed).as_str(),
            "6ec5bad9d709b72db1f2133339db34631e2837fdca97d3fdd753a4e9cf73bb7e"
        );
    }

    #[test]
    fn different_trigger_events_or_pairing_give_different_ids() {
        let base = FiringId::new("t", &events(&[("a", "1"), ("b", "2")]));
        assert_ne!(base, FiringId::new("u", &events(&[("a", "1"), ("b", "2")])));
        assert_ne!(base, FiringId::new("t", &events(&[("a", "2"), ("b", "1")])));
        assert_ne!(base, FiringId::new("t", &events(&[("a", "1")])));
        assert_ne!(
            FiringId::new("t", &events(&[("ab", "c")])),
            FiringId::new("t", &events(&[("a", "bc")]))
        );
    }
}
