//! EventSource and Sensor workloads: the spec ConfigMap, the Deployment running `sluice
//! eventsource|sensor`, the Service of push ports, and the bus manifest when the bus needs more
//! than a URL.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Volume;
use kube::api::ObjectMeta;
use serde_json::{json, Value};
use sluice_crds::common::Template;
use sluice_crds::eventbus::JetStreamConfig;
use sluice_crds::eventsource::EventSourceSpec;
use sluice_crds::refs::{references, RefKind, Reference};
use sluice_crds::{EventSource, Sensor};

use super::policy::{check_template, container_security_defaults, overlay, pod_security_defaults};
use super::rbac::leader_rbac;
use super::{
    hash, labels, merge_map, owner, selector, BuildConfig, BuildError, CONFIGMAPS_DIR, METRICS_PORT,
    SECRETS_DIR, SPEC_DIR, SPEC_HASH_ANNOTATION,
};

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

/// Ports push-style sources listen on, from the typed webhook context of every push event (the
/// `webhook` kind's own, the SaaS kinds' `webhook`), sorted and without repeats. A port that is
/// not a number is skipped here: validation has already refused it (`Deployed` is False then).
pub fn push_ports(spec: &EventSourceSpec) -> Vec<i32> {
    let mut ports: Vec<i32> = spec
        .webhook_contexts()
        .iter()
        .filter_map(|(_, _, context)| context.port.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Mounts every Secret and ConfigMap `refs` name, once each, at `<dir>/<name>` (the layout
/// `--secrets-dir` and `--configmaps-dir` read), unless a volume of `volumes` mounts it already.
/// A volume is optional when every reference to its object is: a pod then starts without it, as
/// the spec allows.
pub(super) fn mount_references(
    refs: &[Reference],
    prefix: &str,
    volumes: &mut Vec<Value>,
    mounts: &mut Vec<Value>,
) {
    let mut objects: BTreeMap<(RefKind, &str), bool> = BTreeMap::new();
    for r in refs {
        let optional = objects.entry((r.kind, r.name.as_str())).or_insert(true);
        *optional &= r.optional;
    }
    for (i, ((kind, name), optional)) in objects.into_iter().enumerate() {
        let (source, field, dir, volume) = match kind {
            RefKind::Secret => ("secret", "secretName", SECRETS_DIR, format!("{prefix}secret-{i}")),
            RefKind::ConfigMap => (
                "configMap",
                "name",
                CONFIGMAPS_DIR,
                format!("{prefix}configmap-{i}"),
            ),
        };
        let taken = volumes.iter().any(|v| v[source][field] == name);
        if taken {
            continue;
        }
        let mut from = json!({field: name});
        if optional {
            from["optional"] = json!(true);
        }
        volumes.push(json!({"name": volume, source: from}));
        mounts.push(json!({"name": volume, "mountPath": format!("{dir}/{name}"), "readOnly": true}));
    }
}

/// Whether an EventSource has an event of a kind that must not run in two active pods at once
/// ([`EventSourceKind::needs_single_active`], the one list of such kinds).
pub fn runs_once(spec: &EventSourceSpec) -> bool {
    spec.event_names()
        .iter()
        .any(|(kind, _)| kind.needs_single_active())
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
    let refs = references(bus).map_err(|e| BuildError::EncodeSpec(e.to_string()))?;
    let mut volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    let mut mounts = pod["containers"][0]["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    mount_references(&refs, "bus-", &mut volumes, &mut mounts);
    pod["volumes"] = Value::Array(volumes);
    pod["containers"][0]["volumeMounts"] = Value::Array(mounts);
    Ok(())
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
    let refs = references(&es.spec).map_err(|e| BuildError::EncodeSpec(e.to_string()))?;
    let mut ports = push_ports(&es.spec);
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
        &refs,
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
    let refs = references(&sensor.spec).map_err(|e| BuildError::EncodeSpec(e.to_string()))?;
    workload(
        Role::Sensor,
        &sensor.metadata,
        &spec,
        &refs,
        sensor.spec.template.as_ref(),
        sensor.spec.replicas.unwrap_or(1),
        &[],
        bus_url,
        cfg,
    )
}

#[allow(clippy::too_many_arguments)] // Reason: a private helper shared by the two public builders.
fn workload(
    role: Role,
    meta: &ObjectMeta,
    spec: &Value,
    refs: &[Reference],
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

    // The root file system is read-only; /tmp is the one writable place (scratch files of
    // libraries, never state: a restarted pod starts from the bus).
    let mut volumes = vec![
        json!({"name": "spec", "configMap": {"name": format!("{base}-spec")}}),
        json!({"name": "tmp", "emptyDir": {}}),
    ];
    let mut mounts = vec![
        json!({"name": "spec", "mountPath": SPEC_DIR, "readOnly": true}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    mount_references(refs, "", &mut volumes, &mut mounts);

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
            "--configmaps-dir", CONFIGMAPS_DIR,
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
        "securityContext": container_security_defaults(),
    });
    // The operator's egress rules reach sensor pods as flags: a flag beats the environment,
    // which a template may shape.
    if matches!(role, Role::Sensor) {
        if let Some(args) = container["args"].as_array_mut() {
            for (flag, rules) in [
                ("--egress-deny", &cfg.egress_deny),
                ("--egress-allow", &cfg.egress_allow),
            ] {
                if !rules.is_empty() {
                    args.push(json!(flag));
                    args.push(json!(rules.join(",")));
                }
            }
        }
    }
    let mut pod_spec = json!({"containers": [], "securityContext": pod_security_defaults()});
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
    // The template's own settings override the hardened defaults field by field.
    pod_spec["securityContext"] = overlay(
        pod_spec["securityContext"].take(),
        t.security_context
            .as_ref()
            .and_then(|v| serde_json::to_value(v).ok()),
    );
    let mut set = |field: &str, value: Option<Value>| {
        if let Some(v) = value.filter(|v| !v.is_null()) {
            pod_spec[field] = v;
        }
    };
    set(
        "serviceAccountName",
        t.service_account_name.as_ref().map(|v| json!(v)),
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
    container["securityContext"] = overlay(
        container["securityContext"].take(),
        c.security_context
            .as_ref()
            .and_then(|v| serde_json::to_value(v).ok()),
    );
}
