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
//! On the pull skeleton ([`crate::pull`]): `connect` makes the client and lists (so ready means
//! listed), `next` hands out the list's changes and then the watch's, re-watching and re-listing as
//! above; each change is a message, `decode` applies `eventTypes` and the filters (a change they
//! leave out is zero events: acknowledged, not counted, as before the skeleton), and `settle`
//! records the change as seen. What was seen lives in the source, not the session, so a reconnect
//! re-lists against it.
//!
//! Delivery: the event id is derived from `uid/resourceVersion/type`, so the same change always has
//! the same id: a restarted source re-lists and re-sends existing objects as `ADD` with the ids they
//! had, which the bus drops as duplicates (within its dedupe window). A change counts as seen only
//! after the bus stored its event (its settle); until then it is re-sent (with backoff), so none is
//! lost while the bus is away. API access comes from the kubeconfig chain (`KUBECONFIG`,
//! in-cluster).

pub mod filter;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::Client;
use serde_json::Value;
use sluice_crds::eventsource::ResourceEventSource;
use sluice_eventbus::event::deterministic_id;
use tracing::{debug, info, warn};

use self::filter::{event_data, label_selector, ChangeType, ObjectFilter};
use crate::pull::{Draft, Malformed, Names, Pull, Settle, Upstream, UpstreamError};
use crate::reconnect::Backoff;
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "resource";
/// How long one watch request stays open before it is renewed (the API server caps it anyway).
const WATCH_TIMEOUT_SECS: u32 = 290;

/// Builds a pull source per `resource` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, ResourceEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
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
        // Checked now; `afterStart` is based on the first connect (the source may be built long
        // before it runs, e.g. by a standby waiting for its Lease).
        ObjectFilter::new(spec.filter.as_ref(), chrono::Utc::now()).map_err(invalid)?;
        if let Err(kubeconfig) = kube::config::Kubeconfig::read() {
            if let Err(in_cluster) = kube::Config::incluster() {
                return Err(invalid(format!(
                    "the resource source needs a Kubernetes API server; set KUBECONFIG (or ~/.kube/config) or run in a pod with a service account: no kubeconfig ({kubeconfig}) and not in a cluster ({in_cluster})"
                )));
            }
        }
        let upstream = ResourceUpstream {
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            spec: spec.clone(),
            types,
            selector,
            filter: OnceLock::new(),
            seen: Mutex::new(HashMap::new()),
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// What the source has seen, by uid.
type Seen = HashMap<String, Value>;

/// One `resource` event: a watch.
pub struct ResourceUpstream {
    event_source: String,
    event_name: String,
    spec: ResourceEventSource,
    types: HashSet<ChangeType>,
    selector: String,
    /// The filters, with `afterStart` based on the first connect (set there, before any change).
    filter: OnceLock<ObjectFilter>,
    /// The objects whose changes were handled, by uid: `oldBody` of updates, and what a re-list
    /// compares with. Here, not in the session, so it outlives reconnects.
    seen: Mutex<Seen>,
}

/// One change of an object.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// ADD, UPDATE or DELETE.
    pub change: ChangeType,
    /// The object as it is now (as it was, for a DELETE).
    pub object: Value,
    /// The object before an UPDATE.
    pub old: Option<Value>,
}

/// The watch events of one watch request.
type Events = BoxStream<'static, Result<WatchEvent<DynamicObject>, kube::Error>>;

/// One connection's list and watches.
pub struct Watch {
    api: Api<DynamicObject>,
    /// Changes of the last list not yet handed out.
    pending: VecDeque<Change>,
    /// The resourceVersion to watch from; `None` when a list is due.
    version: Option<String>,
    /// The open watch request, if any.
    events: Option<Events>,
}

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
pub fn diff_list(seen: &Seen, listed: &[Value]) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut present = HashSet::new();
    for object in listed {
        let id = uid(object);
        present.insert(id.clone());
        match seen.get(&id) {
            None => changes.push(Change {
                change: ChangeType::Add,
                object: object.clone(),
                old: None,
            }),
            Some(old) if resource_version(old) != resource_version(object) => changes.push(Change {
                change: ChangeType::Update,
                object: object.clone(),
                old: Some(old.clone()),
            }),
            Some(_) => {}
        }
    }
    for (id, old) in seen {
        if !present.contains(id) {
            changes.push(Change {
                change: ChangeType::Delete,
                object: old.clone(),
                old: None,
            });
        }
    }
    changes
}

/// The change a watch event of `object` stands for, given what was seen: `changed` is the event's
/// kind (`None` for ADDED, which is an UPDATE of an object already seen). `None` when it is
/// nothing new: an object already seen at this resourceVersion (an ADD replayed after a re-list).
/// Pure.
pub fn watched_change(seen: &Seen, changed: Option<ChangeType>, object: Value) -> Option<Change> {
    let old = seen.get(&uid(&object));
    let change = match (changed, old) {
        (Some(c), _) => c,
        (None, Some(_)) => ChangeType::Update,
        (None, None) => ChangeType::Add,
    };
    if change != ChangeType::Delete && old.is_some_and(|o| resource_version(o) == resource_version(&object)) {
        return None;
    }
    let old = (change == ChangeType::Update).then(|| old.cloned()).flatten();
    Some(Change { change, object, old })
}

impl ResourceUpstream {
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

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists, queues what changed since what was seen, and sets the version to watch from.
    async fn list(&self, watch: &mut Watch) -> Result<(), UpstreamError> {
        let list = watch
            .api
            .list(&ListParams::default().labels(&self.selector))
            .await?;
        let version = list
            .metadata
            .resource_version
            .ok_or("the list has no resourceVersion to watch from")?;
        let listed: Vec<Value> = list
            .items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        watch.pending.extend(diff_list(&self.seen(), &listed));
        watch.version = Some(version);
        watch.events = None;
        Ok(())
    }

    /// Whether `change` is one this event reports.
    fn wanted(&self, change: &Change) -> bool {
        // `connect` set the filter before any change was read.
        self.types.contains(&change.change) && self.filter.get().is_some_and(|f| f.passes(&change.object))
    }
}

#[async_trait]
impl Upstream for ResourceUpstream {
    type Session = Watch;
    type Message = Change;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry until stored: a watch cannot be nak'ed; the change is only safe once stored.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    /// From 500 ms, doubling: between failed lists.
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(500), 2.0)
    }

    async fn connect(&self, names: &Names) -> Result<Watch, UpstreamError> {
        let mut config = kube::Config::infer().await?;
        config.default_retry = false;
        let client = Client::try_from(config)?;
        let started = chrono::Utc::now();
        if self.filter.get().is_none() {
            let filter = ObjectFilter::new(self.spec.filter.as_ref(), started)?;
            // Only this source's own `connect` sets it, one at a time: it is unset here.
            let _ = self.filter.set(filter);
        }
        let mut watch = Watch {
            api: self.api(client),
            pending: VecDeque::new(),
            version: None,
            events: None,
        };
        self.list(&mut watch).await?;
        info!(eventsource = %names.event_source, event_name = %names.event_name, resource = %self.spec.resource, namespace = %self.spec.namespace, "watching");
        Ok(watch)
    }

    /// Cancel-safe: the queue, the version and the watch change only between awaits.
    async fn next(&self, watch: &mut Watch) -> Result<Option<Change>, UpstreamError> {
        loop {
            if let Some(change) = watch.pending.pop_front() {
                return Ok(Some(change));
            }
            let Some(version) = watch.version.clone() else {
                // A failed list ends the session: the skeleton backs off and connects again.
                self.list(watch).await?;
                continue;
            };
            let events = match &mut watch.events {
                Some(events) => events,
                None => {
                    let params = WatchParams::default()
                        .labels(&self.selector)
                        .timeout(WATCH_TIMEOUT_SECS);
                    match watch.api.watch(&params, &version).await {
                        Ok(events) => watch.events.insert(events.boxed()),
                        Err(e) => {
                            warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to watch; listing again");
                            watch.version = None;
                            continue;
                        }
                    }
                }
            };
            let event = match events.next().await {
                // The server closed the watch (timeout): renew it from the last version.
                None => {
                    watch.events = None;
                    continue;
                }
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "watch failed; listing again");
                    watch.version = None;
                    continue;
                }
            };
            let (changed, object) = match event {
                WatchEvent::Added(o) => (None, o),
                WatchEvent::Modified(o) => (Some(ChangeType::Update), o),
                WatchEvent::Deleted(o) => (Some(ChangeType::Delete), o),
                WatchEvent::Bookmark(b) => {
                    watch.version = Some(b.metadata.resource_version);
                    continue;
                }
                WatchEvent::Error(status) => {
                    // 410 Gone: the version expired; anything else: start over too.
                    debug!(eventsource = %self.event_source, code = status.code, message = %status.message, "watch ended with an error; listing again");
                    watch.version = None;
                    continue;
                }
            };
            let Ok(object) = serde_json::to_value(&object) else {
                continue;
            };
            watch.version = Some(resource_version(&object));
            if let Some(change) = watched_change(&self.seen(), changed, object) {
                return Ok(Some(change));
            }
        }
    }

    /// The change's event, or none when `eventTypes` or the filters leave it out (acknowledged and
    /// recorded as seen all the same, as before the skeleton: not counted).
    fn decode(&self, change: &Change) -> Result<Vec<Draft>, Malformed> {
        if !self.wanted(change) {
            return Ok(Vec::new());
        }
        let id = deterministic_id(&[
            SOURCE_TYPE,
            &self.event_source,
            &self.event_name,
            &uid(&change.object),
            &resource_version(&change.object),
            change.change.as_str(),
        ]);
        let data = event_data(&self.spec, change.change, &change.object, change.old.as_ref());
        Ok(vec![Draft::new(data).with_id(id)])
    }

    /// Records the change as seen, only now that its event was stored (or it was left out, or
    /// rejected for good): a change not recorded is reported again by the next list.
    async fn settle(&self, _: &mut Watch, change: Change, _: Settle) -> Result<(), UpstreamError> {
        let id = uid(&change.object);
        let mut seen = self.seen();
        match change.change {
            ChangeType::Delete => {
                seen.remove(&id);
            }
            ChangeType::Add | ChangeType::Update => {
                seen.insert(id, change.object);
            }
        }
        Ok(())
    }

    fn locate(&self, change: &Change) -> String {
        format!(
            "{} uid {} resourceVersion {}",
            change.change.as_str(),
            uid(&change.object),
            resource_version(&change.object)
        )
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
            .map(|c| (c.change.as_str().to_owned(), uid(&c.object)))
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

    #[test]
    fn a_watch_event_is_classified_against_what_was_seen() {
        let seen: Seen = [("a".into(), obj("a", "1"))].into();
        assert_eq!(watched_change(&seen, None, obj("a", "1")), None, "a replayed ADD");
        let update = watched_change(&seen, None, obj("a", "2")).expect("a newer version");
        assert_eq!(
            (update.change, update.old),
            (ChangeType::Update, Some(obj("a", "1")))
        );
        let add = watched_change(&seen, None, obj("b", "3")).expect("a new object");
        assert_eq!((add.change, add.old), (ChangeType::Add, None));
        let delete = watched_change(&seen, Some(ChangeType::Delete), obj("a", "1")).expect("a delete");
        assert_eq!((delete.change, delete.old), (ChangeType::Delete, None));
    }

    #[test]
    fn a_change_left_out_by_event_types_or_filters_is_no_event() {
        let spec = ResourceEventSource {
            version: "v1".into(),
            resource: "configmaps".into(),
            filter: Some(sluice_crds::eventsource::ResourceFilter {
                prefix: Some("watched-".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let upstream = ResourceUpstream {
            event_source: "k8s".into(),
            event_name: "cm".into(),
            filter: OnceLock::from(
                ObjectFilter::new(spec.filter.as_ref(), chrono::Utc::now()).expect("a valid filter"),
            ),
            spec,
            types: [ChangeType::Add].into(),
            selector: String::new(),
            seen: Mutex::new(Seen::new()),
        };
        let add = |name: &str| Change {
            change: ChangeType::Add,
            object: json!({"metadata": {"uid": name, "resourceVersion": "1", "name": name}}),
            old: None,
        };
        let drafts = upstream
            .decode(&add("watched-1"))
            .expect("a change always decodes");
        assert_eq!(drafts.len(), 1);
        assert_eq!(drafts[0].data["type"], "ADD");
        assert_eq!(
            drafts[0].id,
            upstream
                .decode(&add("watched-1"))
                .expect("decodes")
                .pop()
                .and_then(|d| d.id),
            "the same change has the same id"
        );
        assert!(
            upstream.decode(&add("other")).expect("decodes").is_empty(),
            "filtered out"
        );
        let delete = Change {
            change: ChangeType::Delete,
            ..add("watched-1")
        };
        assert!(
            upstream.decode(&delete).expect("decodes").is_empty(),
            "not in eventTypes"
        );
    }
}
