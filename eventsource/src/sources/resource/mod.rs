//! `resource`: watches any Kubernetes resource (`group`/`version`/`resource`, in `namespace` or all
//! namespaces) and emits an event per change of the `eventTypes` it asks for (`ADD`, `UPDATE`,
//! `DELETE`), with upstream's data `{type, body, oldBody, group, version, resource, metadata}`.
//!
//! Protocol: list, then watch from the list's resourceVersion, as an informer does. The source keeps
//! the objects it has seen (uid → object), which gives `oldBody` for updates and makes a re-list
//! (after the watch's resourceVersion expired, 410 Gone, or any watch error) report only what changed
//! meanwhile: an object with the resourceVersion already seen is not emitted again; a changed one is
//! an `UPDATE`, a vanished one a `DELETE`. The first list reports the existing objects as `ADD` (as
//! upstream's informer), unless `filter.afterStart` holds them back.
//!
//! Filters: `filter.labels` is sent to the API server as the label selector; `prefix` (name),
//! `fields` (a dotted path into the object, the value an anchored regular expression, `=`/`==`/`!=`),
//! `createdBy` (created before that time) and `afterStart` (created after the source started) are
//! checked here.
//!
//! Delivery: the event id is derived from `uid/resourceVersion/type`, so the same change always has
//! the same id: a restarted source re-lists and re-sends existing objects as `ADD` with the ids they
//! had, which the bus drops as duplicates (within its dedupe window). A change counts as seen only
//! after the bus stored its event; until then it is re-sent (with backoff), so none is lost while the
//! bus is away. API access comes from the kubeconfig chain (`KUBECONFIG`, in-cluster).

pub mod filter;

use crate::{BuiltEventSource, SourceContext};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::Client;
use serde_json::Value;
use sluice_crds::eventsource::ResourceEventSource;
use sluice_eventbus::event::deterministic_id;
use sluice_eventbus::{EventBuilder, Subject};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::filter::{event_data, label_selector, ChangeType, ObjectFilter};
use crate::metrics::{EventLabels, SourceMetrics};
use crate::sender::{publish, EventSender, Publisher, Retry, FIRST_BACKOFF};
use crate::{BuildError, PullSource, SourceError};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "resource";
/// How long one watch request stays open before it is renewed (the API server caps it anyway).
const WATCH_TIMEOUT_SECS: u32 = 290;
/// The longest wait between attempts to publish or to reach the API server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Builds a pull source per `resource` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, ResourceEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    let (sender, metrics) = (&ctx.sender, &ctx.metrics);
    for (event_name, spec) in events {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: es_name.into(),
            event: event_name.clone(),
            reason,
        };
        if spec.version.is_empty() || spec.resource.is_empty() {
            return Err(invalid(
                "`version` and `resource` (the plural, e.g. configmaps) are required".into(),
            ));
        }
        let mut types = HashSet::new();
        for t in &spec.event_types {
            types
                .insert(ChangeType::parse(t).ok_or_else(|| {
                    invalid(format!("eventTypes: `{t}` is not one of ADD, UPDATE, DELETE"))
                })?);
        }
        if types.is_empty() {
            return Err(invalid(
                "eventTypes is empty: list the changes to report (ADD, UPDATE, DELETE)".into(),
            ));
        }
        let selector = label_selector(
            spec.filter
                .as_ref()
                .map(|f| f.labels.as_slice())
                .unwrap_or_default(),
        )
        .map_err(invalid)?;
        // Checked now (filters need the start time only at run; `afterStart` is re-based then).
        ObjectFilter::new(spec.filter.as_ref(), chrono::Utc::now()).map_err(invalid)?;
        if let Err(kubeconfig) = kube::config::Kubeconfig::read() {
            if let Err(in_cluster) = kube::Config::incluster() {
                return Err(invalid(format!(
                    "the resource source needs a Kubernetes API server; set KUBECONFIG (or ~/.kube/config) or run in a pod with a service account: no kubeconfig ({kubeconfig}) and not in a cluster ({in_cluster})"
                )));
            }
        }
        out.tasks.push(Box::new(ResourceSource {
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            spec: spec.clone(),
            types,
            selector,
            sender: sender.clone(),
            metrics: metrics.clone(),
            client: None,
        }));
    }
    Ok(())
}

/// One `resource` event: a watch.
pub struct ResourceSource {
    event_source: String,
    event_name: String,
    spec: ResourceEventSource,
    types: HashSet<ChangeType>,
    selector: String,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    /// Given by tests; otherwise made from the kubeconfig chain when the source starts.
    client: Option<Client>,
}

impl ResourceSource {
    /// Uses `client` instead of the kubeconfig chain (tests, or a process that has one).
    pub fn with_client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    fn run_error(&self, source: impl std::error::Error + Send + Sync + 'static) -> SourceError {
        SourceError::Run {
            event_source: self.event_source.clone(),
            event: self.event_name.clone(),
            source: Box::new(source),
        }
    }

    fn api(&self, client: Client) -> Api<DynamicObject> {
        let api_version = if self.spec.group.is_empty() {
            self.spec.version.clone()
        } else {
            format!("{}/{}", self.spec.group, self.spec.version)
        };
        let resource = ApiResource {
            group: self.spec.group.clone(),
            version: self.spec.version.clone(),
            api_version,
            kind: String::new(),
            plural: self.spec.resource.clone(),
        };
        if self.spec.namespace.is_empty() {
            Api::all_with(client, &resource)
        } else {
            Api::namespaced_with(client, &self.spec.namespace, &resource)
        }
    }
}

/// What the source has seen, by uid.
type Seen = HashMap<String, Value>;

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
}

fn resource_version(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The changes that turn `seen` into `listed` (a fresh list): ADD for new uids, UPDATE for a changed
/// resourceVersion, DELETE for uids no longer listed. Unchanged objects give nothing. Pure.
pub fn diff_list(seen: &Seen, listed: &[Value]) -> Vec<(ChangeType, Value, Option<Value>)> {
    let mut changes = Vec::new();
    let mut present = HashSet::new();
    for object in listed {
        let id = uid(object);
        present.insert(id.clone());
        match seen.get(&id) {
            None => changes.push((ChangeType::Add, object.clone(), None)),
            Some(old) if resource_version(old) != resource_version(object) => {
                changes.push((ChangeType::Update, object.clone(), Some(old.clone())))
            }
            Some(_) => {}
        }
    }
    for (id, old) in seen {
        if !present.contains(id) {
            changes.push((ChangeType::Delete, old.clone(), None));
        }
    }
    changes
}

/// How the watch ended.
enum WatchEnd {
    /// Cancelled: stop.
    Cancelled,
    /// The resourceVersion expired or the watch failed: list again.
    Relist,
}

struct Run<'a> {
    source: &'a ResourceSource,
    filter: ObjectFilter,
    seen: Seen,
    labels: EventLabels,
}

impl Run<'_> {
    /// Emits one change (when its type is asked for and it passes the filters), then records it as
    /// seen. `false` when cancelled before the bus took it.
    async fn apply(
        &mut self,
        change: ChangeType,
        object: Value,
        old: Option<Value>,
        cancel: &CancellationToken,
    ) -> bool {
        let id = uid(&object);
        let wanted = self.source.types.contains(&change) && self.filter.passes(&object);
        if wanted && !self.emit(change, &object, old.as_ref(), cancel).await {
            // Not recorded as seen: the next list reports it again.
            return false;
        }
        match change {
            ChangeType::Delete => {
                self.seen.remove(&id);
            }
            ChangeType::Add | ChangeType::Update => {
                self.seen.insert(id, object);
            }
        }
        true
    }

    async fn emit(
        &self,
        change: ChangeType,
        object: &Value,
        old: Option<&Value>,
        cancel: &CancellationToken,
    ) -> bool {
        let s = self.source;
        let (u, rv) = (uid(object), resource_version(object));
        let event = EventBuilder::new(&s.event_source, &s.event_name, SOURCE_TYPE)
            .id(deterministic_id(&[
                SOURCE_TYPE,
                &s.event_source,
                &s.event_name,
                &u,
                &rv,
                change.as_str(),
            ]))
            .data_json(event_data(&s.spec, change, object, old))
            .build();
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                // Cannot happen with these attributes; skipping beats blocking the watch forever.
                warn!(eventsource = %s.event_source, event = %s.event_name, error = %e, "failed to build a resource event; skipped");
                s.metrics.processing_failed.get_or_create(&self.labels).inc();
                return true;
            }
        };
        let subject = Subject::new(&s.event_source, &s.event_name);
        let publisher = Publisher {
            sender: &*s.sender,
            metrics: &s.metrics,
            labels: &self.labels,
            cancel,
        };
        // Why retry until stored: a watch cannot be nak'ed; the change is only safe once stored.
        let retry = Retry::UntilStored { first: FIRST_BACKOFF };
        let outcome = publish(&publisher, &subject, &event, retry).await;
        debug!(eventsource = %s.event_source, event_name = %s.event_name, event = %event.id(), change = change.as_str(), ?outcome, "handled a change");
        // Settled includes a rejected change (an object bigger than the bus takes, logged by the
        // helper): skipping it beats blocking the watch forever.
        outcome.settled()
    }

    /// Lists, reports what changed since the last list, and returns the list's resourceVersion.
    async fn list(
        &mut self,
        api: &Api<DynamicObject>,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, kube::Error> {
        let list = api
            .list(&ListParams::default().labels(&self.source.selector))
            .await?;
        let listed: Vec<Value> = list
            .items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        for (change, object, old) in diff_list(&self.seen, &listed) {
            if !self.apply(change, object, old, cancel).await {
                return Ok(None);
            }
        }
        Ok(list.metadata.resource_version)
    }

    async fn watch(
        &mut self,
        api: &Api<DynamicObject>,
        mut version: String,
        cancel: &CancellationToken,
    ) -> WatchEnd {
        loop {
            let params = WatchParams::default()
                .labels(&self.source.selector)
                .timeout(WATCH_TIMEOUT_SECS);
            let stream = tokio::select! {
                biased;
                _ = cancel.cancelled() => return WatchEnd::Cancelled,
                s = api.watch(&params, &version) => s,
            };
            let mut stream = match stream {
                Ok(s) => s.boxed(),
                Err(e) => {
                    warn!(eventsource = %self.source.event_source, event_name = %self.source.event_name, error = %e, "failed to watch; listing again");
                    return WatchEnd::Relist;
                }
            };
            loop {
                let next = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return WatchEnd::Cancelled,
                    n = stream.next() => n,
                };
                let event = match next {
                    // The server closed the watch (timeout): renew it from the last version.
                    None => break,
                    Some(Ok(e)) => e,
                    Some(Err(e)) => {
                        warn!(eventsource = %self.source.event_source, event_name = %self.source.event_name, error = %e, "watch failed; listing again");
                        return WatchEnd::Relist;
                    }
                };
                let (change, object) = match event {
                    WatchEvent::Added(o) => (None, o),
                    WatchEvent::Modified(o) => (Some(ChangeType::Update), o),
                    WatchEvent::Deleted(o) => (Some(ChangeType::Delete), o),
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(status) => {
                        // 410 Gone: the version expired; anything else: start over too.
                        debug!(eventsource = %self.source.event_source, code = status.code, message = %status.message, "watch ended with an error; listing again");
                        return WatchEnd::Relist;
                    }
                };
                let Ok(object) = serde_json::to_value(&object) else {
                    continue;
                };
                let rv = resource_version(&object);
                let old = self.seen.get(&uid(&object)).cloned();
                let change = match (change, &old) {
                    (Some(c), _) => c,
                    (None, Some(_)) => ChangeType::Update,
                    (None, None) => ChangeType::Add,
                };
                // Already seen at this version (e.g. an ADD replayed after a re-list): nothing new.
                if change != ChangeType::Delete && old.as_ref().is_some_and(|o| resource_version(o) == rv) {
                    version = rv;
                    continue;
                }
                let old = (change == ChangeType::Update).then_some(old).flatten();
                if !self.apply(change, object, old, cancel).await {
                    return WatchEnd::Cancelled;
                }
                version = rv;
            }
        }
    }
}

#[async_trait]
impl PullSource for ResourceSource {
    fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let mut config = kube::Config::infer().await.map_err(|e| self.run_error(e))?;
                config.default_retry = false;
                Client::try_from(config).map_err(|e| self.run_error(e))?
            }
        };
        let api = self.api(client);
        let filter = ObjectFilter::new(self.spec.filter.as_ref(), chrono::Utc::now()).map_err(|reason| {
            self.run_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, reason))
        })?;
        let mut run = Run {
            source: &self,
            filter,
            seen: HashMap::new(),
            labels: EventLabels {
                eventsource_name: self.event_source.clone(),
                event_name: self.event_name.clone(),
            },
        };
        info!(eventsource = %self.event_source, event_name = %self.event_name, resource = %self.spec.resource, namespace = %self.spec.namespace, "watching");
        let mut wait = Duration::from_millis(500);
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let version = match run.list(&api, &cancel).await {
                Ok(Some(v)) => {
                    wait = Duration::from_millis(500);
                    v
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to list; retrying");
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            match run.watch(&api, version, &cancel).await {
                WatchEnd::Cancelled => return Ok(()),
                WatchEnd::Relist => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(uid: &str, rv: &str) -> Value {
        json!({"metadata": {"uid": uid, "resourceVersion": rv, "name": uid}})
    }

    #[test]
    fn a_relist_reports_only_what_changed() {
        let seen: Seen = [
            ("a".into(), obj("a", "1")),
            ("b".into(), obj("b", "1")),
            ("c".into(), obj("c", "1")),
        ]
        .into();
        let listed = vec![obj("a", "1"), obj("b", "5"), obj("d", "6")];
        let mut changes: Vec<(String, String)> = diff_list(&seen, &listed)
            .into_iter()
            .map(|(t, o, _)| (t.as_str().to_owned(), uid(&o)))
            .collect();
        changes.sort();
        assert_eq!(
            changes,
            vec![
                ("ADD".into(), "d".into()),
                ("DELETE".into(), "c".into()),
                ("UPDATE".into(), "b".into())
            ]
        );
        assert!(diff_list(&seen, &[obj("a", "1"), obj("b", "1"), obj("c", "1")]).is_empty());
    }
}
