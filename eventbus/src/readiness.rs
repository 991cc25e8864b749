//! Readiness of a process: named conditions that must all hold for `/readyz` to answer 200.
//!
//! Two forms: a [`ReadyFlag`] that its owner sets (a source connected to its broker, a consumer
//! bound) and a probe asked on each request (the bus's connection). A process is ready when every
//! registered condition holds; `/readyz` names the ones that do not, so an operator reading a failed
//! probe sees which broker is unreachable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

type Probe = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
enum Condition {
    Flag(Arc<AtomicBool>),
    Probe(Probe),
}

impl Condition {
    fn holds(&self) -> bool {
        match self {
            Self::Flag(flag) => flag.load(Ordering::Acquire),
            Self::Probe(probe) => probe(),
        }
    }
}

/// The process's readiness conditions; cheap to clone (clones share them).
#[derive(Clone, Default)]
pub struct Readiness {
    conditions: Arc<Mutex<Vec<(String, Condition)>>>,
}

impl Readiness {
    fn lock(&self) -> MutexGuard<'_, Vec<(String, Condition)>> {
        match self.conditions.lock() {
            Ok(guard) => guard,
            // A panic while pushing cannot leave the list half-written.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Registers a condition named `name` that starts unmet; the returned flag sets it.
    pub fn flag(&self, name: impl Into<String>) -> ReadyFlag {
        let name = name.into();
        let flag = Arc::new(AtomicBool::new(false));
        self.lock().push((name.clone(), Condition::Flag(flag.clone())));
        ReadyFlag {
            name: name.into(),
            flag,
        }
    }

    /// Registers a condition named `name` that `probe` answers on each check.
    pub fn probe(&self, name: impl Into<String>, probe: impl Fn() -> bool + Send + Sync + 'static) {
        self.lock().push((name.into(), Condition::Probe(Arc::new(probe))));
    }

    /// The names of the conditions that do not hold, in registration order.
    pub fn unmet(&self) -> Vec<String> {
        let conditions = self.lock().clone();
        conditions
            .into_iter()
            .filter(|(_, c)| !c.holds())
            .map(|(name, _)| name)
            .collect()
    }

    /// Whether every condition holds.
    pub fn is_ready(&self) -> bool {
        self.unmet().is_empty()
    }
}

/// One condition's setter, held by whatever knows whether it holds.
#[derive(Clone)]
pub struct ReadyFlag {
    name: Arc<str>,
    flag: Arc<AtomicBool>,
}

impl ReadyFlag {
    /// Sets the condition; a change is logged once, not on every call.
    pub fn set(&self, ready: bool) {
        let was = self.flag.swap(ready, Ordering::AcqRel);
        if was != ready {
            if ready {
                tracing::info!(condition = %self.name, "ready");
            } else {
                tracing::warn!(condition = %self.name, "not ready");
            }
        }
    }

    /// Whether the condition holds now.
    pub fn get(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// The condition's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A flag registered nowhere, for code run outside a process (tests, `sensor test`).
    pub fn detached(name: &str) -> Self {
        Self {
            name: name.into(),
            flag: Arc::new(AtomicBool::new(false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds_and_unmet_names_them() {
        let readiness = Readiness::default();
        let started = readiness.flag("started");
        let broker = readiness.flag("es/mqtt");
        let bus_up = Arc::new(AtomicBool::new(true));
        let probe = bus_up.clone();
        readiness.probe("bus", move || probe.load(Ordering::Acquire));

        assert_eq!(readiness.unmet(), vec!["started", "es/mqtt"]);
        started.set(true);
        broker.set(true);
        assert!(readiness.is_ready());

        broker.set(false);
        bus_up.store(false, Ordering::Release);
        assert_eq!(readiness.unmet(), vec!["es/mqtt", "bus"]);
        assert!(!broker.get());
        assert_eq!(broker.name(), "es/mqtt");
    }

    #[test]
    fn a_detached_flag_affects_no_readiness() {
        let readiness = Readiness::default();
        let flag = ReadyFlag::detached("x");
        flag.set(true);
        assert!(flag.get());
        assert!(readiness.is_ready());
    }
}
