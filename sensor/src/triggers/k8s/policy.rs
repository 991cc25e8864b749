//! `policy.k8s`: after the action, re-read the object until it carries the given labels, waiting per
//! `backoff` between reads (upstream's resource-labels policy). When the labels never appear the
//! firing still counts as done, unless `errorOnBackoffTimeout: true`, which makes it fail
//! ([`TriggerError::PolicyTimeout`], not retried: the object exists, a retry would act again).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use sluice_crds::common::Backoff;
use sluice_crds::sensor::K8SResourcePolicy;
use tracing::{debug, warn};

use super::client::api_error;
use super::object::has_labels;
use crate::retry::{random_unit, RetryConfigError, RetryPolicy};
use crate::triggers::TriggerError;

/// A checked `policy.k8s`.
#[derive(Clone, Debug)]
pub struct LabelPolicy {
    labels: BTreeMap<String, String>,
    backoff: RetryPolicy,
    error_on_timeout: bool,
}

impl LabelPolicy {
    /// The policy of `spec`; `None` when it names no labels (nothing to wait for). Without `backoff`,
    /// upstream's default backoff (5 reads, 1s apart, with jitter).
    pub fn from_spec(spec: Option<&K8SResourcePolicy>) -> Result<Option<Self>, RetryConfigError> {
        let Some(spec) = spec.filter(|p| !p.labels.is_empty()) else {
            return Ok(None);
        };
        let default = Backoff::default();
        let backoff = RetryPolicy::from_backoff(Some(spec.backoff.as_ref().unwrap_or(&default)))?;
        Ok(Some(Self {
            labels: spec.labels.clone(),
            backoff,
            error_on_timeout: spec.error_on_backoff_timeout,
        }))
    }

    /// The longest [`wait`](Self::wait) sleeps between reads: every wait of the backoff at full
    /// jitter (the reads themselves not counted).
    pub fn max_wait(&self) -> Duration {
        let reads = self.backoff.attempts.min(1000);
        (1..reads).map(|k| self.backoff.delay(k, 1.0)).sum()
    }

    /// Waits until the object `name` read through `api` carries the labels.
    pub async fn wait(
        &self,
        api: &Api<DynamicObject>,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), TriggerError> {
        for attempt in 1..=self.backoff.attempts {
            let object = api
                .get(name)
                .await
                .map_err(|e| api_error("read", kind, namespace, name, e))?;
            let object = serde_json::to_value(&object).unwrap_or_default();
            if has_labels(&object, &self.labels) {
                debug!(kind, name, attempt, "policy labels present");
                return Ok(());
            }
            if attempt < self.backoff.attempts {
                tokio::time::sleep(self.backoff.delay(attempt, random_unit())).await;
            }
        }
        let object = super::object::describe_object(kind, namespace, name);
        let labels = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        if self.error_on_timeout {
            return Err(TriggerError::PolicyTimeout { object, labels });
        }
        // Upstream counts the firing as done when the labels never show up without
        // errorOnBackoffTimeout; say so, since nothing else will.
        warn!(object = %object, labels = %labels, "policy.k8s labels did not appear within the backoff; counted as success (errorOnBackoffTimeout is false)");
        Ok(())
    }
}
