//! Pure builders of the objects the controller creates for each custom resource: no I/O, so every
//! shape is snapshot-tested. Objects are JSON values ready for server-side apply (each carries its
//! `apiVersion`/`kind`, an owner reference to the CR, and Sluice's labels); a test checks that each
//! one deserializes into its typed Kubernetes struct.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Volume;
use kube::api::ObjectMeta;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use sluice_crds::common::Template;
use sluice_crds::eventbus::{JetStreamBus, JetStreamConfig};
use sluice_crds::eventsource::EventSourceSpec;
use sluice_crds::{EventBus, EventSource, Sensor};

/// Where the spec file is mounted in EventSource and Sensor pods.
pub const SPEC_DIR: &str = "/etc/sluice";
/// Where referenced secrets are mounted (`<dir>/<name>/<key>`, the layout `--secrets-dir` reads); not
/// under [`SPEC_DIR`]: a mount point cannot be created inside a read-only ConfigMap volume.
pub const SECRETS_DIR: &str = "/var/run/sluice/secrets";
/// The port of `/metrics`, `/healthz` and `/readyz` in generated pods.
pub const METRICS_PORT: i32 = 7777;
/// The pod-template annotation holding the hash of the mounted spec: a spec change rolls the pods.
pub const SPEC_HASH_ANNOTATION: &str = "sluice.dev/spec-hash";
/// NATS client port.
pub const NATS_CLIENT_PORT: i32 = 4222;

/// Settings the builders take from the controller's command line.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    /// The `sluice` image run by EventSource and Sensor pods.
    pub image: String,
    /// The NATS image repository for `jetstream` EventBuses (the tag is the bus's `version`).
    pub nats_image: String,
    /// The NATS version used when an EventBus does not name one.
    pub nats_version: String,
    /// Allow hostPath volumes, privileged containers, privilege escalation and added capabilities in
    /// CR pod templates (GHSA-hmp7-x699-cvhq).
    pub allow_privileged: bool,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            image: format!("ghcr.io/sluice-dev/sluice:{}", env!("CARGO_PKG_VERSION")),
            nats_image: "nats".into(),
            nats_version: "2.10.22".into(),
            allow_privileged: false,
        }
    }
}

/// Why a CR's children cannot be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BuildError {
    /// The pod template asks for something only `--allow-privileged` permits.
    #[error("{path}: {reason} (the controller runs without --allow-privileged)")]
    RejectPrivileged { path: String, reason: String },
    /// The object has no name, namespace or uid (it was not read from the API server).
    #[error("failed to build children: the object has no {field}")]
    MissingMetadata { field: &'static str },
    /// Serializing the spec for the mounted file failed.
    #[error("failed to encode the spec: {0}")]
    EncodeSpec(String),
}

/// The children of an EventSource or a Sensor.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadChildren {
    /// The ConfigMap holding the spec file.
    pub config_map: Value,
    /// The Deployment running `sluice eventsource|sensor`.
    pub deployment: Value,
    /// The Service for webhook-style ports, when there are any.
    pub service: Option<Value>,
    /// What the pods need to elect a leader, applied before the Deployment (EventSources of
    /// [`runs_once`]): a ServiceAccount when the template names none, a Role on the Lease and
    /// its RoleBinding. Empty otherwise.
    pub rbac: Vec<Value>,
}

/// The children of a `jetstream` EventBus.
#[derive(Clone, Debug, PartialEq)]
pub struct BusChildren {
    /// The NATS configuration.
    pub config_map: Value,
    /// Headless Service giving each NATS pod a stable DNS name (cluster routes).
    pub headless_service: Value,
    /// Client Service clients connect to.
    pub client_service: Value,
    /// The NATS StatefulSet.
    pub stateful_set: Value,
    /// The URL clients use, reported in the EventBus status.
    pub url: String,
    /// The Secret holding the server's side of the generated credentials (`auth`, included by the
    /// NATS configuration); built by [`jetstream_auth_secrets`].
    pub server_secret: String,
    /// The Secret clients read their credentials from (`client-auth`), the status's `accessSecret`.
    pub client_secret: String,
}

/// The key of the server's auth configuration in the server Secret (upstream's key).
pub const JS_SERVER_AUTH_KEY: &str = "auth";
/// The key of the client credentials in the client Secret (upstream's key): a YAML document with
/// `username` and `password`, the format an `accessSecret` has.
pub const JS_CLIENT_AUTH_KEY: &str = "client-auth";

/// Generated credentials of a `jetstream` EventBus: generated once, kept in its Secrets, never
/// logged (`Debug` shows no value).
#[derive(Clone, PartialEq)]
pub struct BusCredentials {
    /// The user of the account with JetStream.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The password of the system account's `sys` user (monitoring, never given to clients).
    pub sys_password: String,
}

impl std::fmt::Debug for BusCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusCredentials { <redacted> }")
    }
}

impl BusCredentials {
    /// Fresh random credentials (version-4 UUIDs: 122 random bits each, from the OS's generator).
    pub fn generate() -> Self {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        Self {
            user: format!("sluice-{}", &random()[..8]),
            password: format!("{}{}", random(), random()),
            sys_password: format!("{}{}", random(), random()),
        }
    }
}

/// The two Secrets of a `jetstream` EventBus's client authentication, as upstream names them:
/// `eventbus-<name>-js-server` (key `auth`: the accounts block the NATS configuration includes) and
/// `eventbus-<name>-js-client-auth` (key `client-auth`: `username`/`password` YAML, what the status's
/// `accessSecret` points EventSource and Sensor pods at). Both are owned by the EventBus.
pub fn jetstream_auth_secrets(bus: &EventBus, creds: &BusCredentials) -> Result<(Value, Value), BuildError> {
    let owner = owner("EventBus", &bus.metadata)?;
    let labels = labels("eventbus", "eventbus-name", owner.name);
    let quoted = |s: &str| serde_json::to_string(s).map_err(|e| BuildError::EncodeSpec(e.to_string()));
    // Only the JetStream account's user may connect; the system account is for `nats` tooling.
    let server_conf = format!(
        "accounts {{\n  js {{\n    jetstream: enabled\n    users: [\n      {{user: {}, password: {}}}\n    ]\n  }}\n  \
         sys {{\n    users: [\n      {{user: sys, password: {}}}\n    ]\n  }}\n}}\nsystem_account: sys\n",
        quoted(&creds.user)?,
        quoted(&creds.password)?,
        quoted(&creds.sys_password)?,
    );
    let client_conf = serde_yaml::to_string(&json!({"username": creds.user, "password": creds.password}))
        .map_err(|e| BuildError::EncodeSpec(e.to_string()))?;
    let secret = |name: &str, key: &str, value: String| {
        let typed = k8s_openapi::api::core::v1::Secret {
            data: Some(BTreeMap::from([(
                key.to_string(),
                k8s_openapi::ByteString(value.into_bytes()),
            )])),
            ..Default::default()
        };
        let mut object = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": owner.meta(name, &labels),
            "type": "Opaque",
        });
        object["data"] = serde_json::to_value(&typed)
            .map(|v| v["data"].clone())
            .unwrap_or(Value::Null);
        object
    };
    Ok((
        secret(
            &jetstream_server_secret_name(owner.name),
            JS_SERVER_AUTH_KEY,
            server_conf,
        ),
        secret(
            &jetstream_client_secret_name(owner.name),
            JS_CLIENT_AUTH_KEY,
            client_conf,
        ),
    ))
}

/// `eventbus-<name>-js-server`, upstream's name.
pub fn jetstream_server_secret_name(bus: &str) -> String {
    format!("eventbus-{bus}-js-server")
}

/// `eventbus-<name>-js-client-auth`, upstream's name.
pub fn jetstream_client_secret_name(bus: &str) -> String {
    format!("eventbus-{bus}-js-client-auth")
}

struct Owner<'a> {
    kind: &'static str,
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
}

fn owner<'a>(kind: &'static str, meta: &'a ObjectMeta) -> Result<Owner<'a>, BuildError> {
    Ok(Owner {
        kind,
        name: meta
            .name
            .as_deref()
            .ok_or(BuildError::MissingMetadata { field: "name" })?,
        namespace: meta
            .namespace
            .as_deref()
            .ok_or(BuildError::MissingMetadata { field: "namespace" })?,
        uid: meta
            .uid
            .as_deref()
            .ok_or(BuildError::MissingMetadata { field: "uid" })?,
    })
}

impl Owner<'_> {
    /// Metadata of a child: name, namespace, labels, and a controller owner reference so the
    /// garbage collector deletes the child with the CR.
    fn meta(&self, name: &str, labels: &BTreeMap<String, String>) -> Value {
        json!({
            "name": name,
            "namespace": self.namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": sluice_crds::API_VERSION,
                "kind": self.kind,
                "name": self.name,
                "uid": self.uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        })
    }
}

fn labels(component: &str, owner_label: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "sluice".to_string()),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "sluice-controller".to_string(),
        ),
        (owner_label.to_string(), name.to_string()),
    ])
}

/// The selector labels (a subset of [`labels`] that never changes).
fn selector(component: &str, owner_label: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/component".to_string(), component.to_string()),
        (owner_label.to_string(), name.to_string()),
    ])
}

/// Rejects what a CR may not ask for unless privileged pods are allowed: hostPath volumes,
/// privileged containers, privilege escalation and added capabilities (a CR author could otherwise
/// take over the node: GHSA-hmp7-x699-cvhq).
pub fn check_template(template: Option<&Template>, allow_privileged: bool) -> Result<(), BuildError> {
    let Some(template) = template else { return Ok(()) };
    if allow_privileged {
        return Ok(());
    }
    for (i, volume) in template.volumes.iter().flatten().enumerate() {
        if volume.host_path.is_some() {
            return Err(BuildError::RejectPrivileged {
                path: format!("spec.template.volumes[{i}].hostPath"),
                reason: "hostPath volumes are not allowed".into(),
            });
        }
    }
    let sc = template
        .container
        .as_ref()
        .and_then(|c| c.security_context.as_ref());
    if sc.and_then(|s| s.privileged).unwrap_or(false) {
        return Err(BuildError::RejectPrivileged {
            path: "spec.template.container.securityContext.privileged".into(),
            reason: "privileged containers are not allowed".into(),
        });
    }
    if sc.and_then(|s| s.allow_privilege_escalation).unwrap_or(false) {
        return Err(BuildError::RejectPrivileged {
            path: "spec.template.container.securityContext.allowPrivilegeEscalation".into(),
            reason: "privilege escalation is not allowed".into(),
        });
    }
    // Added capabilities (SYS_ADMIN, NET_ADMIN, …) give a container most of what `privileged` does;
    // dropping capabilities stays allowed.
    let added = sc
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.as_ref())
        .filter(|add| !add.is_empty());
    if let Some(add) = added {
        return Err(BuildError::RejectPrivileged {
            path: "spec.template.container.securityContext.capabilities.add".into(),
            reason: format!("adding capabilities ({}) is not allowed", add.join(", ")),
        });
    }
    Ok(())
}

/// Names of the Secrets a spec references: every `{name, key}` object under a field whose name
/// contains `secret` (`accessSecret`, `secretKeyRef`, `webhookSecret`, `caCertSecret`, …).
pub fn referenced_secrets(spec: &Value) -> Vec<String> {
    fn walk(value: &Value, under_secret: bool, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if under_secret {
                    if let (Some(Value::String(name)), Some(Value::String(_))) =
                        (map.get("name"), map.get("key"))
                    {
                        out.push(name.clone());
                    }
                }
                for (k, v) in map {
                    walk(v, k.to_ascii_lowercase().contains("secret"), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, under_secret, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(spec, false, &mut out);
    out.sort();
    out.dedup();
    out
}

/// Ports push-style sources listen on: every event with a `port` (directly, as `webhook`, or under
/// `webhook`, as the SaaS kinds), as `(port, "<kind>-<event>")`.
pub fn push_ports(spec: &Value) -> Vec<i32> {
    let mut ports = Vec::new();
    let Some(kinds) = spec.as_object() else {
        return ports;
    };
    for events in kinds.values() {
        let Some(events) = events.as_object() else {
            continue;
        };
        for event in events.values() {
            let port = event
                .get("port")
                .or_else(|| event.get("webhook").and_then(|w| w.get("port")));
            let parsed = match port {
                Some(Value::String(s)) => s.parse::<i32>().ok(),
                Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
                _ => None,
            };
            if let Some(p) = parsed.filter(|p| *p > 0) {
                ports.push(p);
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Whether an EventSource has an event of a kind that must not run in two active pods at once
/// ([`EventSourceKind::needs_single_active`], the one list of such kinds).
pub fn runs_once(spec: &EventSourceSpec) -> bool {
    spec.event_names()
        .iter()
        .any(|(kind, _)| kind.needs_single_active())
}

/// The Lease the replicas of EventSource `name` elect their leader with.
pub fn eventsource_lease_name(name: &str) -> String {
    format!("{name}-eventsource")
}

/// A Role allowing exactly what leader election needs on the EventSource's Lease (create cannot
/// be limited to one name in RBAC; read and renew can), bound to the pods' ServiceAccount.
fn leader_rbac(owner: &Owner<'_>, account: &str) -> [Value; 2] {
    let labels = labels("eventsource", "eventsource-name", owner.name);
    let role = format!("{}-eventsource-leader", owner.name);
    [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": owner.meta(&role, &labels),
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
                 "resourceNames": [eventsource_lease_name(owner.name)]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": owner.meta(&role, &labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": owner.namespace}],
        }),
    ]
}

/// The file a pod reads its bus from when the bus needs more than a URL.
pub const BUS_FILE: &str = "eventbus.yaml";

/// Points a workload at an EventBus whose connection needs more than a URL (credentials, TLS,
/// stream settings: a `jetstreamExotic` bus with an `accessSecret`, say): the bus's connection
/// settings go into the ConfigMap as an EventBus manifest (`--bus /etc/sluice/eventbus.yaml`, which
/// `sluice eventsource|sensor` reads) and the Secrets it names are mounted as files. With only a
/// URL nothing changes (`--bus nats://…`). Without this a pod would connect without credentials.
pub fn use_bus_manifest(
    children: &mut WorkloadChildren,
    bus_name: &str,
    bus: &JetStreamConfig,
) -> Result<(), BuildError> {
    if bus.access_secret.is_none() && bus.tls.is_none() && bus.stream_config.is_none() {
        return Ok(());
    }
    let config = serde_json::to_value(bus).map_err(|e| BuildError::EncodeSpec(e.to_string()))?;
    let manifest = json!({
        "apiVersion": sluice_crds::API_VERSION,
        "kind": "EventBus",
        "metadata": {"name": bus_name},
        "spec": {"jetstreamExotic": config},
    });
    let document = serde_yaml::to_string(&manifest).map_err(|e| BuildError::EncodeSpec(e.to_string()))?;
    children.config_map["data"][BUS_FILE] = json!(document);
    let pod = &mut children.deployment["spec"]["template"]["spec"];
    if let Some(args) = pod["containers"][0]["args"].as_array_mut() {
        if let Some(i) = args.iter().position(|a| a == "--bus") {
            if let Some(value) = args.get_mut(i + 1) {
                *value = json!(format!("{SPEC_DIR}/{BUS_FILE}"));
            }
        }
    }
    let mounted: Vec<String> = pod["volumes"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|v| v["secret"]["secretName"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (i, secret) in referenced_secrets(&config).iter().enumerate() {
        if mounted.contains(secret) {
            continue;
        }
        let volume = format!("bus-secret-{i}");
        if let Some(volumes) = pod["volumes"].as_array_mut() {
            volumes.push(json!({"name": volume, "secret": {"secretName": secret}}));
        }
        if let Some(mounts) = pod["containers"][0]["volumeMounts"].as_array_mut() {
            mounts.push(
                json!({"name": volume, "mountPath": format!("{SECRETS_DIR}/{secret}"), "readOnly": true}),
            );
        }
    }
    Ok(())
}

fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The spec file mounted into the pod: the CR as `kubectl get -o yaml` would show it, without
/// status and server-managed metadata.
fn spec_document(kind: &str, name: &str, namespace: &str, spec: &Value) -> Result<String, BuildError> {
    let doc = json!({
        "apiVersion": sluice_crds::API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    });
    serde_yaml::to_string(&doc).map_err(|e| BuildError::EncodeSpec(e.to_string()))
}

/// Which workload a [`workload`] call builds.
#[derive(Clone, Copy)]
enum Role {
    EventSource,
    Sensor,
}

impl Role {
    fn kind(self) -> &'static str {
        match self {
            Role::EventSource => "EventSource",
            Role::Sensor => "Sensor",
        }
    }
    fn component(self) -> &'static str {
        match self {
            Role::EventSource => "eventsource",
            Role::Sensor => "sensor",
        }
    }
    fn owner_label(self) -> &'static str {
        match self {
            Role::EventSource => "eventsource-name",
            Role::Sensor => "sensor-name",
        }
    }
}

/// The children of an EventSource; `bus_url` is the EventBus's client URL from its status.
pub fn eventsource_children(
    es: &EventSource,
    bus_url: &str,
    cfg: &BuildConfig,
) -> Result<WorkloadChildren, BuildError> {
    check_template(es.spec.template.as_ref(), cfg.allow_privileged)?;
    let spec = serde_json::to_value(&es.spec).map_err(|e| BuildError::EncodeSpec(e.to_string()))?;
    let mut ports = push_ports(&spec);
    if let Some(service) = &es.spec.service {
        ports = service
            .ports
            .iter()
            .filter_map(|p| Some(p.port).filter(|p| *p > 0))
            .collect();
    }
    let mut children = workload(
        Role::EventSource,
        &es.metadata,
        &spec,
        es.spec.template.as_ref(),
        es.spec.replicas.unwrap_or(1),
        &ports,
        bus_url,
        cfg,
    )?;
    // Kinds that must not run twice: every replica serves the push routes, but only the holder of
    // the Lease runs their pull tasks (`sluice eventsource --leader-elect`, identity $POD_NAME), so
    // `replicas` is honoured and rolling updates are safe.
    if runs_once(&es.spec) {
        let owner = owner("EventSource", &es.metadata)?;
        let pod = &mut children.deployment["spec"]["template"]["spec"];
        if let Some(args) = pod["containers"][0]["args"].as_array_mut() {
            args.push(json!("--leader-elect"));
        }
        let account = match pod["serviceAccountName"].as_str() {
            Some(name) => name.to_string(),
            None => {
                let name = format!("{}-eventsource", owner.name);
                pod["serviceAccountName"] = json!(name);
                let labels = labels("eventsource", "eventsource-name", owner.name);
                children.rbac.push(json!({
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": owner.meta(&name, &labels),
                }));
                name
            }
        };
        children.rbac.extend(leader_rbac(&owner, &account));
    }
    if let Some(service) = &children.service {
        let mut service = service.clone();
        if let Some(custom) = &es.spec.service {
            let custom_ports: Vec<Value> = custom
                .ports
                .iter()
                .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
                .collect();
            service["spec"]["ports"] = Value::Array(custom_ports);
            if let Some(ip) = &custom.cluster_ip {
                service["spec"]["clusterIP"] = json!(ip);
            }
            if let Some(meta) = &custom.metadata {
                merge_map(&mut service["metadata"], "labels", meta.labels.as_ref());
                merge_map(&mut service["metadata"], "annotations", meta.annotations.as_ref());
            }
        }
        children.service = Some(service);
    }
    Ok(children)
}

/// The children of a Sensor.
pub fn sensor_children(
    sensor: &Sensor,
    bus_url: &str,
    cfg: &BuildConfig,
) -> Result<WorkloadChildren, BuildError> {
    check_template(sensor.spec.template.as_ref(), cfg.allow_privileged)?;
    let spec = serde_json::to_value(&sensor.spec).map_err(|e| BuildError::EncodeSpec(e.to_string()))?;
    workload(
        Role::Sensor,
        &sensor.metadata,
        &spec,
        sensor.spec.template.as_ref(),
        sensor.spec.replicas.unwrap_or(1),
        &[],
        bus_url,
        cfg,
    )
}

fn merge_map(target: &mut Value, field: &str, extra: Option<&BTreeMap<String, String>>) {
    let Some(extra) = extra else { return };
    if !target[field].is_object() {
        target[field] = Value::Object(Map::new());
    }
    if let Some(map) = target[field].as_object_mut() {
        for (k, v) in extra {
            // Sluice's own labels win: they are the Deployment's selector.
            map.entry(k.clone()).or_insert_with(|| json!(v));
        }
    }
}

#[allow(clippy::too_many_arguments)] // Reason: a private helper shared by the two public builders.
fn workload(
    role: Role,
    meta: &ObjectMeta,
    spec: &Value,
    template: Option<&Template>,
    replicas: i32,
    ports: &[i32],
    bus_url: &str,
    cfg: &BuildConfig,
) -> Result<WorkloadChildren, BuildError> {
    let owner = owner(role.kind(), meta)?;
    let component = role.component();
    let labels = labels(component, role.owner_label(), owner.name);
    let selector = selector(component, role.owner_label(), owner.name);
    let base = format!("{}-{component}", owner.name);
    let file = format!("{component}.yaml");
    let document = spec_document(role.kind(), owner.name, owner.namespace, spec)?;
    let spec_hash = hash(&document);

    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.meta(&format!("{base}-spec"), &labels),
        "data": {file.clone(): document},
    });

    let mut volumes = vec![json!({"name": "spec", "configMap": {"name": format!("{base}-spec")}})];
    let mut mounts = vec![json!({"name": "spec", "mountPath": SPEC_DIR, "readOnly": true})];
    for (i, secret) in referenced_secrets(spec).iter().enumerate() {
        let volume = format!("secret-{i}");
        volumes.push(json!({"name": volume, "secret": {"secretName": secret}}));
        mounts
            .push(json!({"name": volume, "mountPath": format!("{SECRETS_DIR}/{secret}"), "readOnly": true}));
    }

    let probe = |path: &str| {
        json!({
            "httpGet": {"path": path, "port": "metrics"},
            "initialDelaySeconds": 3,
            "periodSeconds": 5,
        })
    };
    let mut container_ports = vec![json!({"name": "metrics", "containerPort": METRICS_PORT})];
    for port in ports {
        container_ports.push(json!({"containerPort": port}));
    }
    let mut container = json!({
        "name": "main",
        "image": cfg.image,
        "args": [
            component,
            "-f", format!("{SPEC_DIR}/{file}"),
            "--bus", bus_url,
            "--secrets-dir", SECRETS_DIR,
            "--metrics-address", format!("0.0.0.0:{METRICS_PORT}"),
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
        "ports": container_ports,
        "volumeMounts": mounts,
        "livenessProbe": probe("/healthz"),
        "readinessProbe": probe("/readyz"),
    });
    let mut pod_spec = json!({"containers": []});
    let mut pod_meta = json!({"labels": labels, "annotations": {SPEC_HASH_ANNOTATION: spec_hash}});
    if let Some(t) = template {
        apply_template(t, &mut pod_meta, &mut pod_spec, &mut container, &mut volumes);
    }
    pod_spec["volumes"] = Value::Array(volumes);
    pod_spec["containers"] = json!([container]);

    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.meta(&base, &labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": pod_meta, "spec": pod_spec},
        },
    });
    let service = (!ports.is_empty()).then(|| {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": owner.meta(&base, &labels),
            "spec": {
                "selector": selector,
                "ports": ports.iter().map(|p| json!({"name": format!("port-{p}"), "port": p, "targetPort": p})).collect::<Vec<_>>(),
            },
        })
    });
    Ok(WorkloadChildren {
        config_map,
        deployment,
        service,
        rbac: Vec::new(),
    })
}

/// Merges a CR's pod `template` as upstream: pod-level fields set when given, volumes appended,
/// the main container's env/envFrom/resources/securityContext/volumeMounts/imagePullPolicy added.
fn apply_template(
    t: &Template,
    pod_meta: &mut Value,
    pod_spec: &mut Value,
    container: &mut Value,
    volumes: &mut Vec<Value>,
) {
    if let Some(meta) = &t.metadata {
        merge_map(pod_meta, "labels", meta.labels.as_ref());
        merge_map(pod_meta, "annotations", meta.annotations.as_ref());
    }
    let mut set = |field: &str, value: Option<Value>| {
        if let Some(v) = value.filter(|v| !v.is_null()) {
            pod_spec[field] = v;
        }
    };
    set(
        "serviceAccountName",
        t.service_account_name.as_ref().map(|v| json!(v)),
    );
    set(
        "securityContext",
        t.security_context
            .as_ref()
            .and_then(|v| serde_json::to_value(v).ok()),
    );
    set("nodeSelector", t.node_selector.as_ref().map(|v| json!(v)));
    set(
        "tolerations",
        t.tolerations.as_ref().and_then(|v| serde_json::to_value(v).ok()),
    );
    set(
        "affinity",
        t.affinity.as_ref().and_then(|v| serde_json::to_value(v).ok()),
    );
    set(
        "imagePullSecrets",
        t.image_pull_secrets
            .as_ref()
            .and_then(|v| serde_json::to_value(v).ok()),
    );
    set(
        "priorityClassName",
        t.priority_class_name.as_ref().map(|v| json!(v)),
    );
    set("priority", t.priority.map(|v| json!(v)));
    for volume in t.volumes.iter().flatten() {
        if let Ok(v) = serde_json::to_value::<&Volume>(volume) {
            volumes.push(v);
        }
    }
    let Some(c) = &t.container else { return };
    let mut append = |field: &str, value: Option<Value>| {
        if let Some(Value::Array(extra)) = value {
            if let Some(list) = container[field].as_array_mut() {
                list.extend(extra);
            } else {
                container[field] = Value::Array(extra);
            }
        }
    };
    append("env", c.env.as_ref().and_then(|v| serde_json::to_value(v).ok()));
    append(
        "envFrom",
        c.env_from.as_ref().and_then(|v| serde_json::to_value(v).ok()),
    );
    append(
        "volumeMounts",
        c.volume_mounts
            .as_ref()
            .and_then(|v| serde_json::to_value(v).ok()),
    );
    if let Some(p) = &c.image_pull_policy {
        container["imagePullPolicy"] = json!(p);
    }
    if let Some(r) = c.resources.as_ref().and_then(|v| serde_json::to_value(v).ok()) {
        container["resources"] = r;
    }
    if let Some(s) = c
        .security_context
        .as_ref()
        .and_then(|v| serde_json::to_value(v).ok())
    {
        container["securityContext"] = s;
    }
}

/// The children of a `jetstream` EventBus: NATS with JetStream enabled, clustered when replicas > 1.
pub fn jetstream_children(
    bus: &EventBus,
    js: &JetStreamBus,
    cfg: &BuildConfig,
) -> Result<BusChildren, BuildError> {
    let owner = owner("EventBus", &bus.metadata)?;
    let labels = labels("eventbus", "eventbus-name", owner.name);
    let selector = selector("eventbus", "eventbus-name", owner.name);
    let base = format!("eventbus-{}-js", owner.name);
    let headless = format!("{base}-svc");
    let client = format!("{base}-client-svc");
    let replicas = js.replicas.unwrap_or(3).max(1);
    let version = js.version.clone().unwrap_or_else(|| cfg.nats_version.clone());
    let image = format!("{}:{version}", cfg.nats_image);

    let mut conf = format!(
        "port: {NATS_CLIENT_PORT}\nhttp: 8222\nserver_name: $POD_NAME\n\
         max_payload: {}\n\
         jetstream {{\n  store_dir: /data/jetstream\n}}\n",
        js.max_payload.as_deref().unwrap_or("1MB"),
    );
    if replicas > 1 {
        let routes: Vec<String> = (0..replicas)
            .map(|i| format!("nats://{base}-{i}.{headless}.{}.svc:6222", owner.namespace))
            .collect();
        conf.push_str(&format!(
            "cluster {{\n  name: {}\n  port: 6222\n  routes: [\n    {}\n  ]\n}}\n",
            owner.name,
            routes.join("\n    ")
        ));
    }
    // Clients must authenticate: the accounts block with the generated user comes from the server
    // Secret, projected next to this file.
    conf.push_str("include ./auth.conf\n");
    if let Some(settings) = &js.settings {
        conf.push_str(settings);
        conf.push('\n');
    }
    let conf_hash = hash(&conf);
    let server_secret = jetstream_server_secret_name(owner.name);
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.meta(&format!("{base}-config"), &labels),
        "data": {"nats-js.conf": conf},
    });
    let nats_ports = json!([
        {"name": "client", "port": NATS_CLIENT_PORT, "targetPort": NATS_CLIENT_PORT},
        {"name": "cluster", "port": 6222, "targetPort": 6222},
        {"name": "monitor", "port": 8222, "targetPort": 8222},
    ]);
    let headless_service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.meta(&headless, &labels),
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "selector": selector, "ports": nats_ports},
    });
    let client_service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.meta(&client, &labels),
        "spec": {"selector": selector, "ports": [{"name": "client", "port": NATS_CLIENT_PORT, "targetPort": NATS_CLIENT_PORT}]},
    });
    let mut container = json!({
        "name": "nats",
        "image": image,
        "args": ["--config", "/etc/nats-config/nats-js.conf"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [
            {"name": "client", "containerPort": NATS_CLIENT_PORT},
            {"name": "cluster", "containerPort": 6222},
            {"name": "monitor", "containerPort": 8222},
        ],
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/nats-config"},
            {"name": "data", "mountPath": "/data"},
        ],
        "livenessProbe": {"httpGet": {"path": "/healthz?js-enabled-only=true", "port": "monitor"}, "initialDelaySeconds": 10},
        "readinessProbe": {"httpGet": {"path": "/healthz?js-server-only=true", "port": "monitor"}, "initialDelaySeconds": 5},
    });
    if let Some(ct) = &js.container_template {
        if let Some(r) = ct.resources.as_ref().and_then(|v| serde_json::to_value(v).ok()) {
            container["resources"] = r;
        }
        if let Some(p) = &ct.image_pull_policy {
            container["imagePullPolicy"] = json!(p);
        }
        if let Some(s) = ct
            .security_context
            .as_ref()
            .and_then(|v| serde_json::to_value(v).ok())
        {
            container["securityContext"] = s;
        }
    }
    let mut volumes = vec![json!({"name": "config", "projected": {"sources": [
        {"configMap": {"name": format!("{base}-config"), "items": [{"key": "nats-js.conf", "path": "nats-js.conf"}]}},
        {"secret": {"name": server_secret, "items": [{"key": JS_SERVER_AUTH_KEY, "path": "auth.conf"}]}},
    ]}})];
    let mut claims = Vec::new();
    match &js.persistence {
        Some(p) => {
            let mut claim_spec = json!({
                "accessModes": [p.access_mode.clone().unwrap_or_else(|| "ReadWriteOnce".into())],
                "resources": {"requests": {"storage": p.volume_size.as_ref().map(|q| q.0.clone()).unwrap_or_else(|| "20Gi".into())}},
            });
            if let Some(class) = &p.storage_class_name {
                claim_spec["storageClassName"] = json!(class);
            }
            claims.push(json!({"metadata": {"name": "data"}, "spec": claim_spec}));
        }
        None => volumes.push(json!({"name": "data", "emptyDir": {}})),
    }
    let mut pod_meta = json!({"labels": labels, "annotations": {"sluice.dev/config-hash": conf_hash}});
    if let Some(meta) = &js.metadata {
        merge_map(&mut pod_meta, "labels", meta.labels.as_ref());
        merge_map(&mut pod_meta, "annotations", meta.annotations.as_ref());
    }
    let mut pod_spec = json!({"containers": [container], "volumes": volumes});
    for (field, value) in [
        ("nodeSelector", js.node_selector.as_ref().map(|v| json!(v))),
        (
            "tolerations",
            js.tolerations.as_ref().and_then(|v| serde_json::to_value(v).ok()),
        ),
        (
            "securityContext",
            js.security_context
                .as_ref()
                .and_then(|v| serde_json::to_value(v).ok()),
        ),
        (
            "imagePullSecrets",
            js.image_pull_secrets
                .as_ref()
                .and_then(|v| serde_json::to_value(v).ok()),
        ),
        (
            "priorityClassName",
            js.priority_class_name.as_ref().map(|v| json!(v)),
        ),
        ("priority", js.priority.map(|v| json!(v))),
        (
            "affinity",
            js.affinity.as_ref().and_then(|v| serde_json::to_value(v).ok()),
        ),
        (
            "serviceAccountName",
            js.service_account_name.as_ref().map(|v| json!(v)),
        ),
    ] {
        if let Some(v) = value {
            pod_spec[field] = v;
        }
    }
    let mut sts_spec = json!({
        "replicas": replicas,
        "serviceName": headless,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector},
        "template": {"metadata": pod_meta, "spec": pod_spec},
    });
    if !claims.is_empty() {
        sts_spec["volumeClaimTemplates"] = Value::Array(claims);
    }
    let stateful_set = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": owner.meta(&base, &labels),
        "spec": sts_spec,
    });
    Ok(BusChildren {
        config_map,
        headless_service,
        client_service,
        stateful_set,
        url: format!("nats://{client}.{}.svc:{NATS_CLIENT_PORT}", owner.namespace),
        server_secret,
        client_secret: jetstream_client_secret_name(owner.name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::{ConfigMap, Service};

    fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    fn meta_fixture(kind: &str) -> String {
        format!("apiVersion: argoproj.io/v1alpha1\nkind: {kind}\nmetadata: {{name: demo, namespace: team, uid: 0000-1111}}\n")
    }

    fn eventsource(extra: &str) -> EventSource {
        parse(&format!(
            "{}spec:\n  replicas: 2\n  webhook:\n    example:\n      port: \"12000\"\n      endpoint: /example\n      method: POST\n      authSecret: {{name: hook, key: token}}\n{extra}",
            meta_fixture("EventSource")
        ))
    }

    /// Every built object deserializes into its typed Kubernetes struct (catches misspelt fields).
    fn typed(children: &WorkloadChildren) {
        serde_json::from_value::<ConfigMap>(children.config_map.clone()).expect("ConfigMap");
        serde_json::from_value::<Deployment>(children.deployment.clone()).expect("Deployment");
        if let Some(s) = &children.service {
            serde_json::from_value::<Service>(s.clone()).expect("Service");
        }
        for object in &children.rbac {
            match object["kind"].as_str() {
                Some("ServiceAccount") => {
                    serde_json::from_value::<k8s_openapi::api::core::v1::ServiceAccount>(object.clone())
                        .map(drop)
                }
                Some("Role") => {
                    serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(object.clone()).map(drop)
                }
                Some("RoleBinding") => {
                    serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(object.clone())
                        .map(drop)
                }
                other => panic!("unexpected child {other:?}"),
            }
            .expect("typed RBAC object");
        }
    }

    #[test]
    fn eventsource_children_snapshot() {
        let es = eventsource("");
        let c = eventsource_children(&es, "nats://bus:4222", &BuildConfig::default()).expect("builds");
        typed(&c);
        insta::assert_yaml_snapshot!("eventsource_deployment", c.deployment);
        insta::assert_yaml_snapshot!("eventsource_service", c.service);
    }

    #[test]
    fn sensor_children_snapshot() {
        let sensor: Sensor = parse(&format!(
            "{}spec:\n  replicas: 3\n  template:\n    serviceAccountName: runner\n    container:\n      env: [{{name: EXTRA, value: \"1\"}}]\n  dependencies:\n    - {{name: d, eventSourceName: demo, eventName: example}}\n  triggers:\n    - template: {{name: l, log: {{}}}}\n",
            meta_fixture("Sensor")
        ));
        let c = sensor_children(&sensor, "nats://bus:4222", &BuildConfig::default()).expect("builds");
        typed(&c);
        assert!(c.service.is_none());
        insta::assert_yaml_snapshot!("sensor_deployment", c.deployment);
    }

    #[test]
    fn jetstream_children_snapshot() {
        let bus: EventBus = parse(&format!(
            "{}spec:\n  jetstream:\n    version: \"2.10.22\"\n    replicas: 3\n",
            meta_fixture("EventBus")
        ));
        let js = bus.spec.jetstream.clone().expect("jetstream");
        let c = jetstream_children(&bus, &js, &BuildConfig::default()).expect("builds");
        serde_json::from_value::<StatefulSet>(c.stateful_set.clone()).expect("StatefulSet");
        serde_json::from_value::<Service>(c.headless_service.clone()).expect("Service");
        serde_json::from_value::<Service>(c.client_service.clone()).expect("Service");
        assert_eq!(c.url, "nats://eventbus-demo-js-client-svc.team.svc:4222");
        insta::assert_yaml_snapshot!("jetstream_statefulset", c.stateful_set);
        insta::assert_yaml_snapshot!("jetstream_config", c.config_map);
        assert_eq!(c.server_secret, "eventbus-demo-js-server");
        assert_eq!(c.client_secret, "eventbus-demo-js-client-auth");
    }

    #[test]
    fn jetstream_auth_secrets_snapshot() {
        let bus: EventBus = parse(&format!(
            "{}spec:\n  jetstream:\n    version: \"2.10.22\"\n",
            meta_fixture("EventBus")
        ));
        let creds = BusCredentials {
            user: "sluice-user".into(),
            password: "p\"w".into(),
            sys_password: "sys-pw".into(),
        };
        let (server, client) = jetstream_auth_secrets(&bus, &creds).expect("builds");
        let server_typed: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(server.clone()).expect("Secret");
        let client_typed: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(client.clone()).expect("Secret");
        let text = |s: &k8s_openapi::api::core::v1::Secret, key: &str| {
            String::from_utf8(s.data.as_ref().expect("data")[key].0.clone()).expect("utf-8")
        };
        // The client file is what an `accessSecret` holds: username/password YAML.
        let access: serde_json::Value =
            serde_yaml::from_str(&text(&client_typed, "client-auth")).expect("YAML");
        assert_eq!(access, json!({"username": "sluice-user", "password": "p\"w"}));
        insta::assert_snapshot!("jetstream_server_auth", text(&server_typed, "auth"));
        insta::assert_yaml_snapshot!("jetstream_client_auth_secret", client);
        assert_eq!(server["metadata"]["ownerReferences"][0]["kind"], "EventBus");
        // Random, and never shown by Debug.
        let a = BusCredentials::generate();
        assert_ne!(a, BusCredentials::generate());
        assert!(a.password.len() >= 64);
        assert!(!format!("{a:?}").contains(&a.password));
    }

    #[test]
    fn spec_change_changes_the_pod_template_hash() {
        let cfg = BuildConfig::default();
        let a = eventsource_children(&eventsource(""), "nats://bus:4222", &cfg).expect("builds");
        let mut es = eventsource("");
        es.spec.replicas = Some(2);
        let same = eventsource_children(&es, "nats://bus:4222", &cfg).expect("builds");
        assert_eq!(a, same);
        let b = eventsource_children(&eventsource("  eventBusName: other\n"), "nats://bus:4222", &cfg)
            .expect("builds");
        let hash = |c: &WorkloadChildren| {
            c.deployment["spec"]["template"]["metadata"]["annotations"][SPEC_HASH_ANNOTATION].clone()
        };
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn host_path_and_privileged_are_rejected_unless_allowed() {
        let host = eventsource("  template:\n    volumes: [{name: root, hostPath: {path: /}}]\n");
        let err =
            eventsource_children(&host, "nats://bus:4222", &BuildConfig::default()).expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "spec.template.volumes[0].hostPath: hostPath volumes are not allowed (the controller runs without --allow-privileged)"
        );
        let privileged =
            eventsource("  template:\n    container:\n      securityContext: {privileged: true}\n");
        assert!(matches!(
            eventsource_children(&privileged, "nats://bus:4222", &BuildConfig::default()),
            Err(BuildError::RejectPrivileged { .. })
        ));
        let allowed = BuildConfig {
            allow_privileged: true,
            ..BuildConfig::default()
        };
        assert!(eventsource_children(&host, "nats://bus:4222", &allowed).is_ok());
    }

    #[test]
    fn added_capabilities_are_rejected_unless_allowed_and_dropped_ones_pass() {
        let add = eventsource(
            "  template:\n    container:\n      securityContext: {capabilities: {add: [NET_ADMIN, SYS_TIME]}}\n",
        );
        let err =
            eventsource_children(&add, "nats://bus:4222", &BuildConfig::default()).expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "spec.template.container.securityContext.capabilities.add: adding capabilities (NET_ADMIN, SYS_TIME) is not allowed (the controller runs without --allow-privileged)"
        );
        let sensor: Sensor = parse(&format!(
            "{}spec:\n  template:\n    container:\n      securityContext: {{capabilities: {{add: [SYS_ADMIN]}}}}\n  dependencies:\n    - {{name: d, eventSourceName: demo, eventName: example}}\n  triggers:\n    - template: {{name: l, log: {{}}}}\n",
            meta_fixture("Sensor")
        ));
        assert!(matches!(
            sensor_children(&sensor, "nats://bus:4222", &BuildConfig::default()),
            Err(BuildError::RejectPrivileged { path, .. }) if path == "spec.template.container.securityContext.capabilities.add"
        ));
        let drop_all = eventsource(
            "  template:\n    container:\n      securityContext: {capabilities: {drop: [ALL]}}\n",
        );
        let children = eventsource_children(&drop_all, "nats://bus:4222", &BuildConfig::default())
            .expect("dropping capabilities is allowed");
        assert_eq!(
            children.deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                ["capabilities"]["drop"],
            json!(["ALL"])
        );
        let allowed = BuildConfig {
            allow_privileged: true,
            ..BuildConfig::default()
        };
        assert!(eventsource_children(&add, "nats://bus:4222", &allowed).is_ok());
    }

    #[test]
    fn kinds_that_must_not_run_twice_elect_a_leader_with_their_own_rbac() {
        let calendar = parse::<EventSource>(&format!(
            "{}spec:\n  replicas: 3\n  calendar:\n    tick:\n      interval: 10s\n",
            meta_fixture("EventSource")
        ));
        let children = eventsource_children(&calendar, "nats://bus:4222", &BuildConfig::default())
            .expect("a valid calendar source builds");
        typed(&children);
        assert_eq!(children.deployment["spec"]["replicas"], 3);
        assert!(children.deployment["spec"].get("strategy").is_none());
        let pod = &children.deployment["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "demo-eventsource");
        let args = pod["containers"][0]["args"].as_array().expect("args");
        assert!(args.contains(&json!("--leader-elect")), "{args:?}");
        // The identity comes from the downward API.
        assert!(pod["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "POD_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"));
        insta::assert_yaml_snapshot!("eventsource_leader_rbac", children.rbac);
        // A ServiceAccount of the template's own is bound, not replaced.
        let own = parse::<EventSource>(&format!(
            "{}spec:\n  template:\n    serviceAccountName: mine\n  calendar:\n    tick:\n      interval: 10s\n",
            meta_fixture("EventSource")
        ));
        let children =
            eventsource_children(&own, "nats://bus:4222", &BuildConfig::default()).expect("builds");
        assert_eq!(
            children.deployment["spec"]["template"]["spec"]["serviceAccountName"],
            "mine"
        );
        assert_eq!(children.rbac.len(), 2);
        assert_eq!(children.rbac[1]["subjects"][0]["name"], "mine");
        // Push kinds run active-active without any of it.
        let webhook = eventsource("");
        let children = eventsource_children(&webhook, "nats://bus:4222", &BuildConfig::default())
            .expect("a valid webhook source builds");
        assert_eq!(children.deployment["spec"]["replicas"], 2);
        assert!(children.rbac.is_empty());
        let args = children.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args");
        assert!(!args.contains(&json!("--leader-elect")));
    }

    #[test]
    fn a_bus_with_credentials_is_passed_as_a_manifest_with_its_secret_mounted() {
        let url_only = JetStreamConfig {
            url: Some("nats://bus:4222".into()),
            ..JetStreamConfig::default()
        };
        let mut children = eventsource_children(&eventsource(""), "nats://bus:4222", &BuildConfig::default())
            .expect("a valid webhook source builds");
        let before = children.clone();
        use_bus_manifest(&mut children, "default", &url_only).expect("url only");
        assert_eq!(children, before);

        let with_secret = JetStreamConfig {
            access_secret: serde_json::from_value(json!({"name": "bus-auth", "key": "auth"})).ok(),
            ..url_only
        };
        use_bus_manifest(&mut children, "default", &with_secret).expect("with a secret");
        let pod = &children.deployment["spec"]["template"]["spec"];
        let args = pod["containers"][0]["args"].as_array().expect("args");
        let bus = args.iter().position(|a| a == "--bus").expect("--bus");
        assert_eq!(args[bus + 1], "/etc/sluice/eventbus.yaml");
        let manifest: sluice_crds::EventBus = parse(
            children.config_map["data"]["eventbus.yaml"]
                .as_str()
                .expect("bus file"),
        );
        assert_eq!(manifest.spec.jetstream_exotic.as_ref(), Some(&with_secret));
        assert!(pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["secret"]["secretName"] == "bus-auth"));
        assert!(pod["containers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["mountPath"] == "/var/run/sluice/secrets/bus-auth"));
        typed(&children);
    }

    #[test]
    fn referenced_secrets_are_found_under_secret_fields_only() {
        let spec = serde_json::json!({"a": {"accessSecret": {"name": "s1", "key": "k"}}, "b": {"configMap": {"name": "c", "key": "k"}},
            "c": [{"headers": [{"valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}]}]});
        assert_eq!(
            referenced_secrets(&spec),
            vec!["s1".to_string(), "s2".to_string()]
        );
    }
}
