//! The NATS StatefulSet of a `jetstream` EventBus, its Services and configuration.

use serde_json::{json, Value};
use sluice_crds::eventbus::JetStreamBus;
use sluice_crds::EventBus;

use super::policy::{check_bus, container_security_defaults, overlay, pod_security_defaults};
use super::secrets::{
    jetstream_client_secret_name, jetstream_cluster_secret_name, jetstream_server_secret_name,
    JS_CLUSTER_AUTH_KEY, JS_SERVER_AUTH_KEY,
};
use super::{hash, labels, merge_map, owner, selector, BuildConfig, BuildError, NATS_CLIENT_PORT};

/// NATS route port (cluster connections between the bus's servers).
pub const NATS_CLUSTER_PORT: i32 = 6222;
/// NATS monitoring port (`/healthz`, `/varz`, …), reached by the probes only.
pub const NATS_MONITOR_PORT: i32 = 8222;

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
    /// The Secret with the route credentials (`cluster-auth`, included in the `cluster` block),
    /// built by [`jetstream_cluster_secret`](super::jetstream_cluster_secret) from [`Self::routes`].
    pub cluster_secret: String,
    /// `host:port` of every NATS server's route listener (empty with one replica).
    pub routes: Vec<String>,
    /// Lets clients reach 4222 from anywhere, and only the bus's own pods reach the route (6222)
    /// and monitoring (8222) ports.
    pub network_policy: Value,
    /// The stream settings clients create the bus's stream with (`streamConfig` YAML), see
    /// [`stream_settings`].
    pub stream_config: String,
}

/// The children of a `jetstream` EventBus: NATS with JetStream enabled, clustered when replicas > 1.
pub fn jetstream_children(
    bus: &EventBus,
    js: &JetStreamBus,
    cfg: &BuildConfig,
) -> Result<BusChildren, BuildError> {
    check_bus(js, cfg.allow_privileged)?;
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
        "port: {NATS_CLIENT_PORT}\nhttp: {NATS_MONITOR_PORT}\nserver_name: $POD_NAME\n\
         max_payload: {}\n\
         jetstream {{\n  store_dir: /data/jetstream\n}}\n",
        js.max_payload.as_deref().unwrap_or("1MB"),
    );
    let routes: Vec<String> = if replicas > 1 {
        (0..replicas)
            .map(|i| {
                format!(
                    "{base}-{i}.{headless}.{}.svc:{NATS_CLUSTER_PORT}",
                    owner.namespace
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    if replicas > 1 {
        // The route credentials and the routes (whose URLs carry them) come from the cluster
        // Secret, projected next to this file: without them any pod that reaches 6222 could join
        // the cluster as a route, read every event and inject forged ones.
        conf.push_str(&format!(
            "cluster {{\n  name: {}\n  port: {NATS_CLUSTER_PORT}\n  include ./cluster-auth.conf\n}}\n",
            owner.name,
        ));
    }
    // Clients must authenticate: the accounts block with the generated user comes from the server
    // Secret, projected next to this file.
    conf.push_str("include ./auth.conf\n");
    if let Some(settings) = &js.settings {
        conf.push_str(settings);
        conf.push('\n');
    }
    // The routes live in a Secret, so they are hashed with the file: a change of replicas rolls
    // the pods as it did when the routes were inline.
    let conf_hash = hash(&format!("{conf}\n{}", routes.join(",")));
    let server_secret = jetstream_server_secret_name(owner.name);
    let cluster_secret = jetstream_cluster_secret_name(owner.name);
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.meta(&format!("{base}-config"), &labels),
        "data": {"nats-js.conf": conf},
    });
    // The monitoring port is not published: it serves server internals to whoever asks (the
    // probes reach it on the pod itself).
    let nats_ports = json!([
        {"name": "client", "port": NATS_CLIENT_PORT, "targetPort": NATS_CLIENT_PORT},
        {"name": "cluster", "port": NATS_CLUSTER_PORT, "targetPort": NATS_CLUSTER_PORT},
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
            {"name": "cluster", "containerPort": NATS_CLUSTER_PORT},
            {"name": "monitor", "containerPort": NATS_MONITOR_PORT},
        ],
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/nats-config"},
            {"name": "data", "mountPath": "/data"},
        ],
        "securityContext": container_security_defaults(),
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
        container["securityContext"] = overlay(
            container["securityContext"].take(),
            ct.security_context
                .as_ref()
                .and_then(|v| serde_json::to_value(v).ok()),
        );
    }
    let mut volumes = vec![json!({"name": "config", "projected": {"sources": [
        {"configMap": {"name": format!("{base}-config"), "items": [{"key": "nats-js.conf", "path": "nats-js.conf"}]}},
        {"secret": {"name": server_secret, "items": [{"key": JS_SERVER_AUTH_KEY, "path": "auth.conf"}]}},
        {"secret": {"name": cluster_secret, "items": [{"key": JS_CLUSTER_AUTH_KEY, "path": "cluster-auth.conf"}]}},
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
            Some(overlay(
                pod_security_defaults(),
                js.security_context
                    .as_ref()
                    .and_then(|v| serde_json::to_value(v).ok()),
            )),
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
    let network_policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": owner.meta(&base, &labels),
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": NATS_CLIENT_PORT}]},
                {
                    "from": [{"podSelector": {"matchLabels": selector}}],
                    "ports": [
                        {"protocol": "TCP", "port": NATS_CLUSTER_PORT},
                        {"protocol": "TCP", "port": NATS_MONITOR_PORT},
                    ],
                },
            ],
        },
    });
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
        cluster_secret,
        routes,
        network_policy,
        stream_config: stream_settings(js.stream_config.as_deref(), replicas)?,
    })
}

/// The stream settings for a bus of `replicas` servers: the manifest's `streamConfig`, with
/// `replicas: min(servers, 3)` added when it names none, as upstream's controller configuration
/// does. Without it the first client would create the stream with one replica, and losing the one
/// server that holds it (a pod deleted, its volume gone) would lose every event not yet consumed.
pub fn stream_settings(stream_config: Option<&str>, replicas: i32) -> Result<String, BuildError> {
    let mut settings = match stream_config.map(str::trim).filter(|s| !s.is_empty()) {
        None => serde_yaml::Mapping::new(),
        Some(text) => match serde_yaml::from_str::<serde_yaml::Value>(text) {
            Ok(serde_yaml::Value::Mapping(m)) => m,
            Ok(_) => {
                return Err(BuildError::EncodeSpec(
                    "spec.jetstream.streamConfig: not a YAML mapping".into(),
                ))
            }
            Err(e) => {
                return Err(BuildError::EncodeSpec(format!(
                    "spec.jetstream.streamConfig: {e}"
                )))
            }
        },
    };
    let key = serde_yaml::Value::from("replicas");
    if !settings.contains_key(&key) {
        settings.insert(key, serde_yaml::Value::from(replicas.clamp(1, 3)));
    }
    serde_yaml::to_string(&settings).map_err(|e| BuildError::EncodeSpec(e.to_string()))
}
