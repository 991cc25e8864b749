//! The reconcilers: turn each CR into its children (server-side apply, field manager `sluice`),
//! then write status conditions when they changed. A CR that fails validation, asks for privileges
//! or uses a ServiceAccount or Secret outside the operator's allow-lists gets a condition saying why;
//! nothing else is affected because each object reconciles alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{json, Value};
use sluice_crds::common::Status;
use sluice_crds::eventbus::{BusConfig, EventBusStatus, JetStreamConfig};
use sluice_crds::refs::{references, RefKind, Reference};
use sluice_crds::validate::{Problems, Validate};
use sluice_crds::{EventBus, EventSource, Sensor};

use crate::children::{self, BuildConfig, BuildError, PodUses, WorkloadChildren};
use crate::conditions;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "sluice";
/// Finalizer keeping an EventBus while EventSources or Sensors use it (upstream's name).
pub const BUS_FINALIZER: &str = "eventbus-controller";

/// Shared by all reconcilers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Builder settings.
    pub build: BuildConfig,
    /// Publishes Kubernetes Events on failures.
    pub recorder: Recorder,
    /// `sluice_controller_reconcile_total{kind,result}`.
    pub reconciles: Family<Vec<(String, String)>, Counter>,
}

/// Why a reconcile failed; retried by `error_policy`.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Applying a child or writing status failed.
    #[error("failed to {action}")]
    Apply {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// Building the EventBus's auth Secrets failed.
    #[error("failed to build the EventBus's auth Secrets")]
    BuildSecrets(#[source] BuildError),
    /// The EventSource's Lease did not decode as a Lease (a builder bug).
    #[error("failed to build the EventSource's Lease")]
    BuildLease(#[source] serde_json::Error),
    /// A child's name is taken by an object Sluice did not create (no controller reference to this
    /// CR): applying would take it over and the garbage collector would later delete it.
    #[error("{kind} {name} exists and is not owned by this {owner}; Sluice does not adopt it (rename or delete it)")]
    RefuseAdoption {
        kind: String,
        name: String,
        owner: String,
    },
    /// The EventBus finalizer failed (or deletion is blocked while the bus is in use).
    #[error("failed to finalize the EventBus: {0}")]
    Finalize(String),
}

fn apply_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let action = action.into();
    move |source| ReconcileError::Apply { action, source }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn count(ctx: &Context, kind: &str, result: &str) {
    ctx.reconciles
        .get_or_create(&vec![
            ("kind".into(), kind.into()),
            ("result".into(), result.into()),
        ])
        .inc();
}

/// Requeues a failed reconcile after a pause (the error is logged and counted).
pub fn error_policy<K: ResourceExt>(obj: Arc<K>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %obj.name_any(), namespace = ?obj.namespace(), error = %error, "reconcile failed; retrying");
    count(&ctx, "any", "error");
    Action::requeue(Duration::from_secs(10))
}

async fn warn_event<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, reason: &str, note: &str) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %error, "failed to publish a Kubernetes Event");
    }
}

/// Passes `result` through, publishing a Warning Event on `obj` when it is an error, so a failed
/// apply or status write shows in `kubectl describe` and not only in the controller's log.
async fn reported<K: Resource<DynamicType = ()>, T>(
    ctx: &Context,
    obj: &K,
    result: Result<T, ReconcileError>,
) -> Result<T, ReconcileError> {
    if let Err(error) = &result {
        warn_event(ctx, obj, "ReconcileFailed", &error_chain(error)).await;
    }
    result
}

/// An error with its sources, `a: b: c` (the Event note; the log gets the same).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

async fn apply<K>(client: &Client, ns: &str, object: &Value) -> Result<(), ReconcileError>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    // Server-side apply with force would take over an object of the same name that someone else
    // made, and the garbage collector would delete it with the CR: only objects this CR controls
    // (or none) are written.
    let owner = &object["metadata"]["ownerReferences"][0];
    read_child(
        &api,
        ns,
        &name,
        owner["uid"].as_str().unwrap_or_default(),
        owner["kind"].as_str().unwrap_or("custom resource"),
    )
    .await?;
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(apply_err(format!("apply {} {ns}/{name}", K::kind(&()))))?;
    Ok(())
}

/// Reads child `name`, if it exists; one that the CR (`owner_uid`, of kind `owner_kind`) does not
/// control is refused (`RefuseAdoption`): it is someone else's, to neither read nor overwrite.
async fn read_child<K>(
    api: &Api<K>,
    ns: &str,
    name: &str,
    owner_uid: &str,
    owner_kind: &str,
) -> Result<Option<K>, ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let existing = api
        .get_opt(name)
        .await
        .map_err(apply_err(format!("read {} {ns}/{name}", K::kind(&()))))?;
    match existing {
        Some(existing) if !controlled_by(existing.meta(), owner_uid) => Err(ReconcileError::RefuseAdoption {
            kind: K::kind(&()).to_string(),
            name: format!("{ns}/{name}"),
            owner: owner_kind.to_string(),
        }),
        existing => Ok(existing),
    }
}

/// Whether `meta` carries a controller reference to the object with `uid`.
fn controlled_by(meta: &kube::api::ObjectMeta, uid: &str) -> bool {
    !uid.is_empty()
        && meta
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid && r.controller == Some(true))
}

/// Creates the EventSource's Lease when it is missing, and otherwise leaves it alone: its spec is
/// the leader's (it renews it), and a Lease that pods of an earlier version made without an owner
/// is kept as it is rather than refused.
async fn ensure_lease(client: &Client, ns: &str, object: &Value) -> Result<(), ReconcileError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    let read = apply_err(format!("read Lease {ns}/{name}"));
    if api.get_opt(name).await.map_err(read)?.is_some() {
        return Ok(());
    }
    let lease: Lease = serde_json::from_value(object.clone()).map_err(ReconcileError::BuildLease)?;
    match api.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        // A pod of the EventSource made it meanwhile: the leader owns it now.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(apply_err(format!("create Lease {ns}/{name}"))(e)),
    }
}

async fn apply_workload(client: &Client, ns: &str, c: &WorkloadChildren) -> Result<(), ReconcileError> {
    // RBAC first: pods that start before their Role exists fail their first Lease attempts.
    for object in &c.rbac {
        match object["kind"].as_str() {
            Some("ServiceAccount") => apply::<ServiceAccount>(client, ns, object).await?,
            Some("Role") => apply::<Role>(client, ns, object).await?,
            Some("RoleBinding") => apply::<RoleBinding>(client, ns, object).await?,
            Some("Lease") => ensure_lease(client, ns, object).await?,
            // The builders make only these four kinds.
            _ => {}
        }
    }
    apply::<ConfigMap>(client, ns, &c.config_map).await?;
    apply::<Deployment>(client, ns, &c.deployment).await?;
    if let Some(service) = &c.service {
        apply::<Service>(client, ns, service).await?;
    }
    Ok(())
}

/// Writes `status` (merge patch on the status subresource) unless it equals `current`.
async fn write_status<K>(
    api: &Api<K>,
    name: &str,
    current: Option<Value>,
    status: Value,
) -> Result<(), ReconcileError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if current.as_ref() == Some(&status) {
        return Ok(());
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map_err(apply_err(format!("write the status of {name}")))?;
    Ok(())
}

/// How pods reach an EventBus.
struct BusConnection {
    /// The connection settings from the bus's status (with a URL).
    config: JetStreamConfig,
    /// The client Secret the controller generated, when it runs the bus (`jetstream`).
    generated_secret: Option<String>,
}

/// The connection settings of EventBus `name` (with a URL), once it is configured.
async fn bus_config(client: &Client, ns: &str, name: &str) -> Result<Option<BusConnection>, ReconcileError> {
    let api: Api<EventBus> = Api::namespaced(client.clone(), ns);
    let Some(bus) = api
        .get_opt(name)
        .await
        .map_err(apply_err(format!("read EventBus {ns}/{name}")))?
    else {
        return Ok(None);
    };
    let generated_secret = bus
        .spec
        .jetstream
        .is_some()
        .then(|| children::jetstream_client_secret_name(name));
    Ok(bus
        .status
        .and_then(|s| s.config)
        .and_then(|c| c.jetstream)
        .filter(|j| j.url.is_some())
        .map(|config| BusConnection {
            config,
            generated_secret,
        }))
}

fn problems_of(validate: impl FnOnce(&mut Problems)) -> Vec<String> {
    let mut problems = Problems::new();
    validate(&mut problems);
    problems
        .into_vec()
        .into_iter()
        .filter(|p| p.severity == sluice_crds::validate::Severity::Error)
        .map(|p| p.to_string())
        .collect()
}

/// The references (Secrets, ConfigMaps) that cannot be mounted: the object or its key does not
/// exist. Optional references are skipped. Each is described with the field that names it.
async fn missing_references(
    client: &Client,
    ns: &str,
    refs: &[Reference],
) -> Result<Vec<String>, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    // Keys of each object read, so an object named twice is read once; None: it does not exist.
    let mut keys: BTreeMap<(RefKind, String), Option<BTreeSet<String>>> = BTreeMap::new();
    let mut missing = Vec::new();
    for r in refs.iter().filter(|r| !r.optional) {
        let slot = (r.kind, r.name.clone());
        if !keys.contains_key(&slot) {
            let found = match r.kind {
                RefKind::Secret => secrets
                    .get_opt(&r.name)
                    .await
                    .map_err(apply_err(format!("read Secret {ns}/{}", r.name)))?
                    .map(|s| s.data.unwrap_or_default().into_keys().collect()),
                RefKind::ConfigMap => config_maps
                    .get_opt(&r.name)
                    .await
                    .map_err(apply_err(format!("read ConfigMap {ns}/{}", r.name)))?
                    .map(|c| {
                        let mut keys: BTreeSet<String> = c.data.unwrap_or_default().into_keys().collect();
                        keys.extend(c.binary_data.unwrap_or_default().into_keys());
                        keys
                    }),
            };
            keys.insert(slot.clone(), found);
        }
        match keys.get(&slot) {
            Some(None) => missing.push(format!(
                "{} {:?} named at spec.{} does not exist",
                r.kind.kind(),
                r.name,
                r.path
            )),
            Some(Some(present)) if !present.contains(&r.key) => missing.push(format!(
                "{} {:?} named at spec.{} has no key {:?}",
                r.kind.kind(),
                r.name,
                r.path,
                r.key
            )),
            _ => {}
        }
    }
    Ok(missing)
}

/// `Deployed=False`, reason `NotAllowed`, when `uses` falls outside the operator's allow-lists.
/// Not requeued: the lists change only with a restart of the controller, which reconciles every
/// object again.
fn not_allowed(ctx: &Context, uses: &PodUses) -> Option<(bool, String, String, Option<Duration>)> {
    children::check_allowed(&ctx.build, uses)
        .err()
        .map(|e| (false, "NotAllowed".into(), e.to_string(), None))
}

/// Deploys children once the spec is valid, its pods keep to the allow-lists and the bus is
/// configured; returns the `Deployed` condition.
async fn deploy(
    ctx: &Context,
    ns: &str,
    bus_name: &str,
    refs: Vec<Reference>,
    uses: PodUses,
    build: impl FnOnce(&str) -> Result<WorkloadChildren, BuildError>,
) -> Result<(bool, String, String, Option<Duration>), ReconcileError> {
    // Before anything is read: a Secret outside the list is neither mounted nor looked at (a
    // MissingReference message would tell whether it exists and which keys it has).
    if let Some(refused) = not_allowed(ctx, &uses) {
        return Ok(refused);
    }
    let Some(bus) = bus_config(&ctx.client, ns, bus_name).await? else {
        return Ok((
            false,
            "EventBusNotReady".into(),
            format!("EventBus {bus_name:?} is not configured yet"),
            Some(Duration::from_secs(5)),
        ));
    };
    let config = bus.config;
    let mut refs = refs;
    // As above: use_bus_manifest encodes the same config and reports a failure.
    if let Ok(bus_refs) = references(&config) {
        let uses = PodUses::of_bus_connection(bus_name, &bus_refs, bus.generated_secret.as_deref());
        if let Some(refused) = not_allowed(ctx, &uses) {
            return Ok(refused);
        }
        refs.extend(bus_refs);
    }
    let missing = missing_references(&ctx.client, ns, &refs).await?;
    if !missing.is_empty() {
        // Pods would wait in ContainerCreating for a volume that never comes, saying nothing the
        // CR's owner looks at. The controller does not watch Secrets, so it looks again later.
        return Ok((
            false,
            "MissingReference".into(),
            missing.join("; "),
            Some(Duration::from_secs(15)),
        ));
    }
    let url = config.url.clone().unwrap_or_default();
    let built = build(&url).and_then(|mut children| {
        children::use_bus_manifest(&mut children, bus_name, &config)?;
        Ok(children)
    });
    match built {
        Ok(children) => match apply_workload(&ctx.client, ns, &children).await {
            Ok(()) => Ok((true, "Deployed".into(), String::new(), None)),
            Err(e @ ReconcileError::RefuseAdoption { .. }) => {
                Ok((false, "AdoptionRefused".into(), e.to_string(), None))
            }
            Err(e) => Err(e),
        },
        Err(e @ BuildError::RejectPrivileged { .. }) => {
            Ok((false, "PrivilegedTemplate".into(), e.to_string(), None))
        }
        Err(e) => Ok((false, "BuildFailed".into(), e.to_string(), None)),
    }
}

/// Reconciles one EventSource.
pub async fn reconcile_eventsource(
    es: Arc<EventSource>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    // Being deleted: the garbage collector removes the children; applying them again would
    // recreate what it just deleted.
    if es.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = es.namespace().unwrap_or_default();
    let name = es.name_any();
    let api: Api<EventSource> = Api::namespaced(ctx.client.clone(), &ns);
    let mut status: Status = es.status.as_ref().map(|s| s.status.clone()).unwrap_or_default();
    let current = es.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
    let now = now();
    let errors = problems_of(|p| es.validate("", p));
    let mut requeue = None;
    if errors.is_empty() {
        conditions::set(&mut status, "SourcesProvided", true, "", "", &now);
        let bus = es.spec.event_bus_name.clone().unwrap_or_else(|| "default".into());
        let build = &ctx.build;
        // An encoding failure here fails the build below too, which reports it (BuildFailed).
        let refs = references(&es.spec).unwrap_or_default();
        let uses = PodUses::of_workload(es.spec.template.as_ref(), &refs);
        let deployed = deploy(&ctx, &ns, &bus, refs, uses, |url| {
            children::eventsource_children(&es, url, build)
        })
        .await;
        let (ok, reason, message, again) = reported(&ctx, es.as_ref(), deployed).await?;
        requeue = again;
        if conditions::set(&mut status, "Deployed", ok, &reason, &message, &now) && !ok {
            warn_event(&ctx, es.as_ref(), &reason, &message).await;
        }
    } else {
        let message = errors.join("; ");
        if conditions::set(
            &mut status,
            "SourcesProvided",
            false,
            "InvalidEventSource",
            &message,
            &now,
        ) {
            warn_event(&ctx, es.as_ref(), "InvalidEventSource", &message).await;
        }
    }
    status.observed_generation = es.metadata.generation;
    let status = serde_json::to_value(&status).unwrap_or(Value::Null);
    write_status(&api, &name, current, status).await?;
    count(&ctx, "EventSource", "ok");
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Reconciles one Sensor.
pub async fn reconcile_sensor(sensor: Arc<Sensor>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    // Being deleted: the garbage collector removes the children; applying them again would
    // recreate what it just deleted.
    if sensor.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = sensor.namespace().unwrap_or_default();
    let name = sensor.name_any();
    let api: Api<Sensor> = Api::namespaced(ctx.client.clone(), &ns);
    let mut status: Status = sensor
        .status
        .as_ref()
        .map(|s| s.status.clone())
        .unwrap_or_default();
    let current = sensor.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
    let now = now();
    let errors = problems_of(|p| sensor.validate("", p));
    let (trigger_errors, dependency_errors): (Vec<_>, Vec<_>) = errors
        .iter()
        .cloned()
        .partition(|e| e.starts_with("spec.triggers"));
    let mut changed = conditions::set(
        &mut status,
        "DependenciesProvided",
        dependency_errors.is_empty(),
        if dependency_errors.is_empty() {
            ""
        } else {
            "InvalidSensor"
        },
        &dependency_errors.join("; "),
        &now,
    );
    changed |= conditions::set(
        &mut status,
        "TriggersProvided",
        trigger_errors.is_empty(),
        if trigger_errors.is_empty() {
            ""
        } else {
            "InvalidSensor"
        },
        &trigger_errors.join("; "),
        &now,
    );
    let mut requeue = None;
    if errors.is_empty() {
        let bus = sensor
            .spec
            .event_bus_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let build = &ctx.build;
        // An encoding failure here fails the build below too, which reports it (BuildFailed).
        let refs = references(&sensor.spec).unwrap_or_default();
        let uses = PodUses::of_workload(sensor.spec.template.as_ref(), &refs);
        let deployed = deploy(&ctx, &ns, &bus, refs, uses, |url| {
            children::sensor_children(&sensor, url, build)
        })
        .await;
        let (ok, reason, message, again) = reported(&ctx, sensor.as_ref(), deployed).await?;
        requeue = again;
        if conditions::set(&mut status, "Deployed", ok, &reason, &message, &now) && !ok {
            warn_event(&ctx, sensor.as_ref(), &reason, &message).await;
        }
    } else if changed {
        warn_event(&ctx, sensor.as_ref(), "InvalidSensor", &errors.join("; ")).await;
    }
    status.observed_generation = sensor.metadata.generation;
    let status = serde_json::to_value(&status).unwrap_or(Value::Null);
    write_status(&api, &name, current, status).await?;
    count(&ctx, "Sensor", "ok");
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Reconciles one EventBus, behind the finalizer that keeps it while it is in use.
pub async fn reconcile_eventbus(bus: Arc<EventBus>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = bus.namespace().unwrap_or_default();
    let api: Api<EventBus> = Api::namespaced(ctx.client.clone(), &ns);
    let inner = ctx.clone();
    finalizer(&api, BUS_FINALIZER, bus, |event| async move {
        match event {
            Finalizer::Apply(bus) => {
                let applied = apply_eventbus(&bus, &inner).await;
                reported(&inner, bus.as_ref(), applied).await
            }
            Finalizer::Cleanup(bus) => cleanup_eventbus(&bus, &inner).await,
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalize(e.to_string()))
}

/// Refuses to let an EventBus go while an EventSource or a Sensor in its namespace names it.
async fn cleanup_eventbus(bus: &EventBus, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = bus.namespace().unwrap_or_default();
    let name = bus.name_any();
    let lp = ListParams::default();
    let sources: Api<EventSource> = Api::namespaced(ctx.client.clone(), &ns);
    let sensors: Api<Sensor> = Api::namespaced(ctx.client.clone(), &ns);
    let mut users: Vec<String> = Vec::new();
    for es in sources.list(&lp).await.map_err(apply_err("list EventSources"))? {
        if es.spec.event_bus_name.as_deref().unwrap_or("default") == name {
            users.push(format!("EventSource/{}", es.name_any()));
        }
    }
    for s in sensors.list(&lp).await.map_err(apply_err("list Sensors"))? {
        if s.spec.event_bus_name.as_deref().unwrap_or("default") == name {
            users.push(format!("Sensor/{}", s.name_any()));
        }
    }
    if users.is_empty() {
        return Ok(Action::await_change());
    }
    let message = format!("still used by {}", users.join(", "));
    warn_event(ctx, bus, "DeletionBlocked", &message).await;
    Err(ReconcileError::Finalize(message))
}

/// Makes sure the bus's two auth Secrets exist with their keys. Existing ones are kept as they are
/// (credentials are generated once: regenerating them on each reconcile would lock out every
/// connected client); when either is missing or lacks its key both are written afresh, as
/// upstream does, since the halves must match. Their values are never logged.
async fn ensure_bus_credentials(
    ctx: &Context,
    bus: &EventBus,
    ns: &str,
    c: &children::BusChildren,
) -> Result<(), ReconcileError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let has_key = |secret: Option<Secret>, key: &str| {
        secret
            .and_then(|s| s.data)
            .is_some_and(|d| d.get(key).is_some_and(|v| !v.0.is_empty()))
    };
    // Credentials someone else wrote under the bus's names would be whoever wrote them's to read.
    let uid = bus.metadata.uid.as_deref().unwrap_or_default();
    let server = read_child(&api, ns, &c.server_secret, uid, "EventBus").await?;
    let client = read_child(&api, ns, &c.client_secret, uid, "EventBus").await?;
    if has_key(server, children::JS_SERVER_AUTH_KEY) && has_key(client, children::JS_CLIENT_AUTH_KEY) {
        return Ok(());
    }
    let credentials = children::BusCredentials::generate();
    let (server, client) = match children::jetstream_auth_secrets(bus, &credentials) {
        Ok(secrets) => secrets,
        // Only missing metadata fails here, and jetstream_children succeeded on the same object.
        Err(error) => return Err(ReconcileError::BuildSecrets(error)),
    };
    apply::<Secret>(&ctx.client, ns, &server).await?;
    apply::<Secret>(&ctx.client, ns, &client).await?;
    tracing::info!(eventbus = %bus.name_any(), namespace = %ns, "generated the bus's client credentials");
    Ok(())
}

/// Makes sure the bus's cluster Secret holds a route password and the route configuration for the
/// current replicas. The password is generated once and kept (a new one would split a running
/// cluster until every pod restarted); the routes are re-rendered on every reconcile, which
/// server-side apply turns into no write when nothing changed. Values are never logged.
async fn ensure_route_credentials(
    ctx: &Context,
    bus: &EventBus,
    ns: &str,
    c: &children::BusChildren,
) -> Result<(), ReconcileError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let uid = bus.metadata.uid.as_deref().unwrap_or_default();
    let existing = read_child(&api, ns, &c.cluster_secret, uid, "EventBus").await?;
    let kept = existing
        .and_then(|s| s.data)
        .and_then(|d| d.get(children::JS_ROUTE_PASSWORD_KEY).cloned())
        .and_then(|v| String::from_utf8(v.0).ok())
        .filter(|p| children::usable_route_password(p));
    let password = match kept {
        Some(password) => password,
        None => {
            tracing::info!(eventbus = %bus.name_any(), namespace = %ns, "generated the bus's route credentials");
            children::generate_route_password()
        }
    };
    let secret = children::jetstream_cluster_secret(bus, &c.routes, &password)
        .map_err(ReconcileError::BuildSecrets)?;
    apply::<Secret>(&ctx.client, ns, &secret).await
}

/// Applies a `jetstream` bus's children, credentials first (the pods mount them).
async fn apply_bus_children(
    ctx: &Context,
    bus: &EventBus,
    ns: &str,
    c: &children::BusChildren,
) -> Result<(), ReconcileError> {
    ensure_bus_credentials(ctx, bus, ns, c).await?;
    ensure_route_credentials(ctx, bus, ns, c).await?;
    apply::<ConfigMap>(&ctx.client, ns, &c.config_map).await?;
    apply::<NetworkPolicy>(&ctx.client, ns, &c.network_policy).await?;
    apply::<Service>(&ctx.client, ns, &c.headless_service).await?;
    apply::<Service>(&ctx.client, ns, &c.client_service).await?;
    apply::<StatefulSet>(&ctx.client, ns, &c.stateful_set).await
}

async fn apply_eventbus(bus: &EventBus, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = bus.namespace().unwrap_or_default();
    let name = bus.name_any();
    let api: Api<EventBus> = Api::namespaced(ctx.client.clone(), &ns);
    let current = bus.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
    let mut status: EventBusStatus = bus.status.clone().unwrap_or_default();
    let now = now();
    let errors = problems_of(|p| bus.validate("", p));
    if !errors.is_empty() {
        let message = errors.join("; ");
        if conditions::set(
            &mut status.status,
            "Configured",
            false,
            "InvalidSpec",
            &message,
            &now,
        ) {
            warn_event(ctx, bus, "InvalidSpec", &message).await;
        }
    } else if let Some(js) = &bus.spec.jetstream {
        let built = children::check_allowed(&ctx.build, &PodUses::of_bus(js))
            .and_then(|()| children::jetstream_children(bus, js, &ctx.build));
        match built {
            Ok(c) => match apply_bus_children(ctx, bus, &ns, &c).await {
                Err(e @ ReconcileError::RefuseAdoption { .. }) => {
                    let message = e.to_string();
                    if conditions::set(
                        &mut status.status,
                        "Deployed",
                        false,
                        "AdoptionRefused",
                        &message,
                        &now,
                    ) {
                        warn_event(ctx, bus, "AdoptionRefused", &message).await;
                    }
                }
                Err(e) => return Err(e),
                Ok(()) => {
                    status.config = Some(BusConfig {
                        jetstream: Some(sluice_crds::eventbus::JetStreamConfig {
                            url: Some(c.url),
                            // EventSource and Sensor pods get this Secret mounted and connect with it
                            // (`use_bus_manifest`), as upstream's pods do.
                            access_secret: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                                name: c.client_secret.clone(),
                                key: children::JS_CLIENT_AUTH_KEY.into(),
                                optional: None,
                            }),
                            stream_config: Some(c.stream_config.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                    conditions::set(&mut status.status, "Configured", true, "", "", &now);
                    conditions::set(&mut status.status, "Deployed", true, "Succeeded", "", &now);
                }
            },
            Err(e) => {
                let message = e.to_string();
                let reason = match e {
                    BuildError::RejectPrivileged { .. } => "PrivilegedTemplate",
                    BuildError::RejectNotAllowed { .. } => "NotAllowed",
                    _ => "BuildFailed",
                };
                if conditions::set(&mut status.status, "Deployed", false, reason, &message, &now) {
                    warn_event(ctx, bus, reason, &message).await;
                }
            }
        }
    } else if let Some(exotic) = &bus.spec.jetstream_exotic {
        status.config = Some(BusConfig {
            jetstream: Some(exotic.clone()),
            ..Default::default()
        });
        conditions::set(&mut status.status, "Configured", true, "", "", &now);
        conditions::set(
            &mut status.status,
            "Deployed",
            true,
            "Skipped",
            "Skip deployment because of using exotic config.",
            &now,
        );
    } else {
        let message = "Sluice runs only `jetstream` and `jetstreamExotic` buses";
        if conditions::set(
            &mut status.status,
            "Configured",
            false,
            "Unsupported",
            message,
            &now,
        ) {
            warn_event(ctx, bus, "Unsupported", message).await;
        }
    }
    status.status.observed_generation = bus.metadata.generation;
    let status = serde_json::to_value(&status).unwrap_or(Value::Null);
    write_status(&api, &name, current, status).await?;
    count(ctx, "EventBus", "ok");
    Ok(Action::await_change())
}
