//! The controller against the real test API server (`scripts/services.sh start kube`): an EventBus
//! (with its generated client credentials, kept across reconciles),
//! an EventSource and Sensors become a StatefulSet, Deployments and Services with the right args,
//! volumes, probes and owner references; updates roll through; deletion garbage-collects; an
//! invalid Sensor gets a condition naming the field and the others are unaffected; a
//! `jetstreamExotic` bus deploys nothing and reports its URL; the EventBus finalizer holds the bus
//! (with a `DeletionBlocked` Event) until the Sensors naming it are gone; with the operator's
//! allow-lists on, CRs naming a ServiceAccount or Secret outside them are refused (`NotAllowed`).

mod kube_support;

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::Client;
use kube_support::{admin_client, argo, assert_no_secret_in_namespace, install_crds, namespace, wait_for};
use serde_json::{json, Value};
use sluice_controller::{BuildConfig, ControllerConfig};
use tokio_util::sync::CancellationToken;

// Generous: the test machine is shared and the controller's watches start cold.
const WAIT: Duration = Duration::from_secs(120);

async fn apply(client: &Client, ns: &str, kind: &str, plural: &str, object: Value) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &argo(kind, plural));
    let name = object["metadata"]["name"].as_str().context("name")?.to_string();
    let object: DynamicObject = serde_json::from_value(object)?;
    api.patch(
        &name,
        &PatchParams::apply("sluice-tests").force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

async fn condition(
    client: &Client,
    ns: &str,
    kind: &str,
    plural: &str,
    name: &str,
    type_: &str,
) -> Result<Option<Value>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &argo(kind, plural));
    let object = api.get(name).await?;
    Ok(object.data["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_).cloned()))
}

fn eventsource(replicas: i32) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
        "metadata": {"name": "webhook"},
        "spec": {
            "replicas": replicas,
            "webhook": {"example": {"port": "12000", "endpoint": "/example", "method": "POST",
                "authSecret": {"name": "hook-token", "key": "token"}}},
        }
    })
}

fn sensor(name: &str, dependency_source: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "dependencies": [{"name": "dep", "eventSourceName": dependency_source, "eventName": "example"}],
            "triggers": [{"template": {"name": "log", "log": {}}}],
        }
    })
}

/// The controller running in a test's namespace, until [`Running::stop`].
struct Running {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), sluice_controller::leader::LeaderError>>,
    client: Client,
    ns: String,
}

/// Starts the controller on namespace `ns` with `build` (image `sluice:test` unless set) and,
/// with `lease`, leader election on that Lease.
fn start_controller(client: &Client, ns: &str, build: BuildConfig, lease: Option<&str>) -> Running {
    let cancel = CancellationToken::new();
    let config = ControllerConfig {
        namespace: Some(ns.to_owned()),
        build,
        leader_election: lease.map(|name| sluice_controller::leader::LeaseConfig {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            identity: "test".into(),
            duration: Duration::from_secs(15),
        }),
    };
    let task = tokio::spawn(sluice_controller::run(
        client.clone(),
        config,
        sluice_controller::Metrics::default(),
        cancel.clone(),
    ));
    Running {
        cancel,
        task,
        client: client.clone(),
        ns: ns.to_owned(),
    }
}

impl Running {
    /// Stops the controller, then scans its namespace's Events and CR statuses for secrets.
    async fn stop(self) -> Result<()> {
        self.cancel.cancel();
        self.task.await??;
        assert_no_secret_in_namespace(&self.client, &self.ns).await
    }
}

fn test_build() -> BuildConfig {
    BuildConfig {
        image: "sluice:test".into(),
        ..BuildConfig::default()
    }
}

/// Waits for a Warning Event with `reason` in `ns` that `matches`.
async fn warning_event(
    client: &Client,
    ns: &str,
    reason: &str,
    matches: impl Fn(&Event) -> bool + Clone,
) -> Result<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait_for(WAIT, || {
        let (events, matches) = (events.clone(), matches.clone());
        let reason = reason.to_owned();
        async move {
            Ok(events
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason.as_str())
                        && e.type_.as_deref() == Some("Warning")
                        && matches(e)
                }))
        }
    })
    .await
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn controller_turns_resources_into_workloads_and_reports_status() -> Result<()> {
    let client = admin_client().await?;
    install_crds(&client).await?;
    let ns = namespace(&client, "controller").await?;
    let controller = start_controller(&client, &ns, test_build(), Some("sluice-controller"));

    apply(
        &client,
        &ns,
        "EventBus",
        "eventbus",
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
            "metadata": {"name": "default"},
            "spec": {"jetstream": {"version": "2.10.22", "replicas": 3}},
        }),
    )
    .await?;
    apply(&client, &ns, "EventSource", "eventsources", eventsource(1)).await?;
    apply(&client, &ns, "Sensor", "sensors", sensor("good", "webhook")).await?;
    // An empty eventSourceName fails validation; the other objects must still be reconciled.
    apply(&client, &ns, "Sensor", "sensors", sensor("bad", "")).await?;

    // The EventSource names a Secret that does not exist yet: no Deployment (its pods would wait
    // for the volume without a word), a condition naming it and the field, and a Warning Event.
    let missing = wait_for(WAIT, || {
        let c = client.clone();
        let ns = ns.clone();
        async move {
            let deployed = condition(&c, &ns, "EventSource", "eventsources", "webhook", "Deployed").await?;
            Ok(deployed.filter(|d| d["reason"] == "MissingReference"))
        }
    })
    .await?;
    assert_eq!(missing["status"], "False");
    assert_eq!(
        missing["message"],
        "Secret \"hook-token\" named at spec.webhook.example.authSecret does not exist"
    );
    warning_event(&client, &ns, "MissingReference", |e| {
        e.note.as_deref().is_some_and(|n| n.contains("hook-token"))
    })
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(deployments.get_opt("webhook-eventsource").await?.is_none());
    // A Secret without the key is still missing something, and says which key.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let hook_secret = |data: Value| -> Result<Secret> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook-token"}, "stringData": data,
        }))?)
    };
    secrets
        .create(&Default::default(), &hook_secret(json!({"other": "x"}))?)
        .await?;
    wait_for(WAIT, || {
        let c = client.clone();
        let ns = ns.clone();
        async move {
            let deployed = condition(&c, &ns, "EventSource", "eventsources", "webhook", "Deployed").await?;
            Ok(deployed.filter(|d| {
                d["message"] == "Secret \"hook-token\" named at spec.webhook.example.authSecret has no key \"token\""
            }))
        }
    })
    .await?;
    // Once it is there, the controller finds it on its own (it does not watch Secrets; it looks
    // again while one is missing) and deploys.
    secrets
        .replace(
            "hook-token",
            &Default::default(),
            &hook_secret(json!({"token": "s3cret"}))?,
        )
        .await?;

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let sts = wait_for(WAIT, || {
        let sts = sts.clone();
        async move { Ok(sts.get_opt("eventbus-default-js").await?) }
    })
    .await?;
    let sts_spec = sts.spec;
    assert_eq!(sts_spec.replicas, Some(3));
    assert_eq!(sts_spec.service_name.as_deref(), Some("eventbus-default-js-svc"));
    let nats = &sts_spec.template.spec.as_ref().context("pod spec")?.containers[0];
    assert_eq!(nats.image.as_deref(), Some("nats:2.10.22"));
    let owner = &sts.metadata.owner_references.context("owner refs")?[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("EventBus", "default", Some(true))
    );
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let headless = services.get("eventbus-default-js-svc").await?;
    let headless_spec = headless.spec.context("headless spec")?;
    assert_eq!(headless_spec.cluster_ip.as_deref(), Some("None"));
    let headless_ports = headless_spec.ports.unwrap_or_default();
    services.get("eventbus-default-js-client-svc").await?;
    // The monitoring port is not published; routes authenticate with the cluster Secret, and only
    // the bus's own pods may reach the route and monitoring ports.
    let published: Vec<i32> = headless_ports.iter().map(|p| p.port).collect();
    assert_eq!(published, vec![4222, 6222]);
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let policy = policies.get("eventbus-default-js").await?;
    let ingress = policy.spec.context("policy spec")?.ingress.unwrap_or_default();
    assert_eq!(ingress.len(), 2);
    assert!(ingress[0].from.is_none(), "clients come from anywhere");
    assert!(
        ingress[1].from.is_some(),
        "routes and monitoring from the bus's pods only"
    );
    let cluster_secret: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let cluster_secret = cluster_secret.get("eventbus-default-js-cluster").await?;
    let cluster_data = cluster_secret.data.clone().context("cluster data")?;
    let route_password = String::from_utf8(cluster_data["password"].0.clone())?;
    assert!(route_password.len() >= 32);
    let cluster_auth = String::from_utf8(cluster_data["cluster-auth"].0.clone())?;
    assert!(
        cluster_auth.contains(&format!(
            "nats://route:{route_password}@eventbus-default-js-2.eventbus-default-js-svc.{ns}.svc:6222"
        )),
        "three routes with the credentials"
    );

    // Generated client auth, as upstream: two Secrets owned by the bus, the server half projected
    // next to the NATS configuration (which includes it), the client half in the status.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let server_secret = secrets.get("eventbus-default-js-server").await?;
    let client_secret = secrets.get("eventbus-default-js-client-auth").await?;
    for secret in [&server_secret, &client_secret] {
        let owner = &secret.metadata.owner_references.as_ref().context("owner refs")?[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("EventBus", "default", Some(true))
        );
    }
    let access: Value =
        serde_yaml::from_slice(&client_secret.data.as_ref().context("data")?["client-auth"].0)?;
    let user = access["username"].as_str().context("username")?;
    assert!(!access["password"].as_str().unwrap_or_default().is_empty());
    let server_auth = String::from_utf8(server_secret.data.as_ref().context("data")?["auth"].0.clone())?;
    assert!(
        server_auth.contains(&format!("user: \"{user}\"")),
        "the halves match"
    );
    let projected = sts_spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "config"))
        .and_then(|v| v.projected.as_ref())
        .and_then(|p| p.sources.clone())
        .unwrap_or_default();
    assert!(projected.iter().any(|s| s
        .secret
        .as_ref()
        .is_some_and(|s| s.name == "eventbus-default-js-server")));
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let nats_conf = config_maps.get("eventbus-default-js-config").await?;
    let nats_conf = nats_conf.data.unwrap_or_default()["nats-js.conf"].clone();
    assert!(nats_conf.contains("include ./auth.conf"), "{nats_conf}");
    let buses: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &argo("EventBus", "eventbus"));
    let access_secret = wait_for(WAIT, || {
        let buses = buses.clone();
        async move {
            let bus = buses.get("default").await?;
            let selector = bus.data["status"]["config"]["jetstream"]["accessSecret"].clone();
            Ok((!selector.is_null()).then_some(selector))
        }
    })
    .await?;
    assert_eq!(
        access_secret,
        json!({"name": "eventbus-default-js-client-auth", "key": "client-auth"})
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let es = wait_for(WAIT, || {
        let d = deployments.clone();
        async move { Ok(d.get_opt("webhook-eventsource").await?) }
    })
    .await?;
    let pod = es.spec.template.spec.clone().context("pod spec")?;
    let main = &pod.containers[0];
    let args = main.args.clone().unwrap_or_default();
    // The bus needs credentials: the pod reads it from a manifest with the client Secret mounted.
    let bus_file = "/etc/sluice/eventbus.yaml".to_string();
    assert_eq!(
        args[..5],
        [
            "eventsource".to_string(),
            "-f".into(),
            "/etc/sluice/eventsource.yaml".into(),
            "--bus".into(),
            bus_file.clone()
        ]
    );
    let es_config = config_maps
        .get("webhook-eventsource-spec")
        .await?
        .data
        .unwrap_or_default();
    let bus_manifest: Value = serde_yaml::from_str(es_config.get("eventbus.yaml").context("eventbus.yaml")?)?;
    assert_eq!(
        bus_manifest["spec"]["jetstreamExotic"]["url"],
        format!("nats://eventbus-default-js-client-svc.{ns}.svc:4222")
    );
    assert_eq!(
        bus_manifest["spec"]["jetstreamExotic"]["accessSecret"],
        access_secret
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--secrets-dir", "/var/run/sluice/secrets"]),
        "{args:?}"
    );
    let volumes = pod.volumes.unwrap_or_default();
    for secret in ["hook-token", "eventbus-default-js-client-auth"] {
        assert!(volumes
            .iter()
            .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(secret)));
        let mounts = main.volume_mounts.clone().unwrap_or_default();
        assert!(mounts
            .iter()
            .any(|m| m.mount_path == format!("/var/run/sluice/secrets/{secret}")));
    }
    // Every CR reconciled, the generated bus credentials in place: nothing the controller wrote
    // (Events, conditions) shows one of them, nor the webhook's token.
    assert_no_secret_in_namespace(&client, &ns).await?;
    let liveness = main
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .context("liveness")?;
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    let readiness = main
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .context("readiness")?;
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    assert_eq!(
        es.metadata.owner_references.as_ref().context("owner")?[0].kind,
        "EventSource"
    );
    // The controller applies the Service after the Deployment: wait for it rather than race it.
    let mut es_service = None;
    for _ in 0..300 {
        if let Some(found) = services.get_opt("webhook-eventsource").await? {
            es_service = Some(found);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let es_service = es_service.context("Service webhook-eventsource was never created")?;
    assert_eq!(
        es_service.spec.and_then(|s| s.ports).context("ports")?[0].port,
        12000
    );

    let sensor_deployment = wait_for(WAIT, || {
        let d = deployments.clone();
        async move { Ok(d.get_opt("good-sensor").await?) }
    })
    .await?;
    assert_eq!(sensor_deployment.spec.replicas, Some(2));
    let sensor_args = sensor_deployment
        .spec
        .template
        .spec
        .map(|p| p.containers[0].args.clone().unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(
        sensor_args[..5],
        [
            "sensor".to_string(),
            "-f".into(),
            "/etc/sluice/sensor.yaml".into(),
            "--bus".into(),
            bus_file
        ]
    );

    let bad = wait_for(WAIT, || {
        let c = client.clone();
        let ns = ns.clone();
        async move { condition(&c, &ns, "Sensor", "sensors", "bad", "DependenciesProvided").await }
    })
    .await?;
    assert_eq!(bad["status"], "False");
    assert_eq!(bad["reason"], "InvalidSensor");
    let message = bad["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.dependencies[0].eventSourceName"),
        "{message}"
    );
    assert!(deployments.get_opt("bad-sensor").await?.is_none());
    let deployed = wait_for(WAIT, || {
        let c = client.clone();
        let ns = ns.clone();
        async move {
            Ok(condition(&c, &ns, "Sensor", "sensors", "good", "Deployed")
                .await?
                .filter(|c| c["status"] == "True"))
        }
    })
    .await?;
    assert_eq!(deployed["status"], "True");

    // A kind that must not run twice: replicas honoured, the pods elect a leader with their own
    // ServiceAccount and a Role on their Lease only.
    apply(
        &client,
        &ns,
        "EventSource",
        "eventsources",
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
            "metadata": {"name": "ticks"},
            "spec": {"replicas": 2, "calendar": {"tick": {"interval": "10s"}}},
        }),
    )
    .await?;
    let ticks = wait_for(WAIT, || {
        let d = deployments.clone();
        async move { Ok(d.get_opt("ticks-eventsource").await?) }
    })
    .await?;
    assert_eq!(ticks.spec.replicas, Some(2));
    let ticks_pod = ticks.spec.template.spec.context("pod spec")?;
    assert_eq!(
        ticks_pod.service_account_name.as_deref(),
        Some("ticks-eventsource")
    );
    assert!(ticks_pod.containers[0]
        .args
        .clone()
        .unwrap_or_default()
        .contains(&"--leader-elect".to_string()));
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    accounts.get("ticks-eventsource").await?;
    let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
    let role = roles.get("ticks-eventsource-leader").await?;
    let rules = role.rules.unwrap_or_default();
    assert!(rules
        .iter()
        .all(|r| r.resources.as_deref() == Some(&["leases".to_string()][..])));
    // Only reading and renewing that one Lease: the controller makes it, owned by the EventSource
    // (so it goes with it); the pods cannot create Leases.
    assert!(rules
        .iter()
        .all(|r| r.resource_names.as_deref() == Some(&["ticks-eventsource".to_string()][..])));
    assert!(rules.iter().all(|r| !r.verbs.contains(&"create".to_string())));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &ns);
    let lease = leases.get("ticks-eventsource").await?;
    let owners = lease.metadata.owner_references.unwrap_or_default();
    assert_eq!(
        owners
            .iter()
            .map(|o| (o.kind.as_str(), o.name.as_str()))
            .collect::<Vec<_>>(),
        vec![("EventSource", "ticks")]
    );
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    let binding = bindings.get("ticks-eventsource-leader").await?;
    assert_eq!(binding.subjects.unwrap_or_default()[0].name, "ticks-eventsource");

    // Added capabilities are refused like privileged containers, with the field path.
    apply(
        &client,
        &ns,
        "EventSource",
        "eventsources",
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
            "metadata": {"name": "caps"},
            "spec": {
                "template": {"container": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}},
                "webhook": {"example": {"port": "12001", "endpoint": "/example", "method": "POST"}},
            },
        }),
    )
    .await?;
    let refused = wait_for(WAIT, || {
        let c = client.clone();
        let ns = ns.clone();
        async move { condition(&c, &ns, "EventSource", "eventsources", "caps", "Deployed").await }
    })
    .await?;
    assert_eq!(
        (refused["status"].as_str(), refused["reason"].as_str()),
        (Some("False"), Some("PrivilegedTemplate"))
    );
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.template.container.securityContext.capabilities.add"),
        "{message}"
    );
    assert!(deployments.get_opt("caps-eventsource").await?.is_none());

    // A second reconcile of the bus (its spec changed) keeps the generated credentials as they are.
    apply(
        &client,
        &ns,
        "EventBus",
        "eventbus",
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
            "metadata": {"name": "default"},
            "spec": {"jetstream": {"version": "2.10.22", "replicas": 3, "maxPayload": "2MB"}},
        }),
    )
    .await?;
    wait_for(WAIT, || {
        let config_maps = config_maps.clone();
        async move {
            let data = config_maps
                .get("eventbus-default-js-config")
                .await?
                .data
                .unwrap_or_default();
            Ok(data["nats-js.conf"].contains("max_payload: 2MB").then_some(()))
        }
    })
    .await?;
    for before in [&server_secret, &client_secret] {
        let name = before.metadata.name.clone().context("name")?;
        let after = secrets.get(&name).await?;
        assert_eq!(after.data, before.data, "{name} was regenerated");
        assert_eq!(
            after.metadata.resource_version, before.metadata.resource_version,
            "{name} was rewritten"
        );
    }

    // Update: replicas and the spec hash change on the Deployment.
    let old_hash = es
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    apply(&client, &ns, "EventSource", "eventsources", eventsource(3)).await?;
    let updated = wait_for(WAIT, || {
        let d = deployments.clone();
        async move {
            Ok(d.get("webhook-eventsource").await?.spec).map(|s| Some(s).filter(|s| s.replicas == Some(3)))
        }
    })
    .await?;
    let new_hash = updated
        .template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert_ne!(
        old_hash.get("sluice.dev/spec-hash"),
        new_hash.get("sluice.dev/spec-hash")
    );

    // Delete: the garbage collector removes the children.
    let es_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &argo("EventSource", "eventsources"));
    es_api.delete("webhook", &DeleteParams::foreground()).await?;
    // The garbage collector of kube-controller-manager works through the Deployment, its
    // ReplicaSet and pods; on a loaded test machine that took over a minute.
    wait_for(Duration::from_secs(240), || {
        let d = deployments.clone();
        async move { Ok(d.get_opt("webhook-eventsource").await?.is_none().then_some(())) }
    })
    .await?;

    // A jetstreamExotic bus: nothing deployed, its connection details in the status.
    apply(
        &client,
        &ns,
        "EventBus",
        "eventbus",
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
            "metadata": {"name": "exotic"},
            "spec": {"jetstreamExotic": {"url": "nats://nats.example:4222"}},
        }),
    )
    .await?;
    let skipped = wait_for(WAIT, || {
        let c = client.clone();
        let ns = ns.clone();
        async move { condition(&c, &ns, "EventBus", "eventbus", "exotic", "Deployed").await }
    })
    .await?;
    assert_eq!(
        (skipped["status"].as_str(), skipped["reason"].as_str()),
        (Some("True"), Some("Skipped"))
    );
    let exotic = buses.get("exotic").await?;
    assert_eq!(
        exotic.data["status"]["config"]["jetstream"]["url"],
        "nats://nats.example:4222"
    );
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(stateful_sets.get_opt("eventbus-exotic-js").await?.is_none());

    // The finalizer keeps the default bus while the Sensors name it, and says so in an Event.
    buses.delete("default", &DeleteParams::default()).await?;
    let blocked = warning_event(&client, &ns, "DeletionBlocked", |e| {
        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("default")
    })
    .await?;
    let note = blocked.note.unwrap_or_default();
    assert!(note.contains("Sensor/good"), "{note}");
    let held = buses.get("default").await?;
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(held
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"eventbus-controller".to_string()));
    let sensors: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &argo("Sensor", "sensors"));
    sensors.delete("good", &DeleteParams::default()).await?;
    sensors.delete("bad", &DeleteParams::default()).await?;
    es_api.delete("ticks", &DeleteParams::default()).await?;
    es_api.delete("caps", &DeleteParams::default()).await?;
    wait_for(WAIT, || {
        let buses = buses.clone();
        async move { Ok(buses.get_opt("default").await?.is_none().then_some(())) }
    })
    .await?;

    controller.stop().await?;
    Ok(())
}

/// Every pod the controller generates (EventSource, leader-elected EventSource, Sensor, NATS) is
/// admitted by the API server's own Pod Security admission in a namespace that enforces the
/// *restricted* profile; a pod without the hardening is refused there, so the check is live.
#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn generated_pods_are_admitted_under_the_restricted_pod_security_standard() -> Result<()> {
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use sluice_controller::children;
    let client = admin_client().await?;
    let ns = namespace(&client, "restricted").await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}})),
        )
        .await?;
    let meta = |kind: &str, name: &str| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")}})
    };
    let with_spec = |mut object: Value, spec: Value| {
        object["spec"] = spec;
        object
    };
    let cfg = BuildConfig::default();
    let webhook: sluice_crds::EventSource = serde_json::from_value(with_spec(
        meta("EventSource", "hooks"),
        json!({"webhook": {"example": {"port": "12000", "endpoint": "/e", "method": "POST",
            "authSecret": {"name": "hook", "key": "token"}}}}),
    ))?;
    let calendar: sluice_crds::EventSource = serde_json::from_value(with_spec(
        meta("EventSource", "ticks"),
        json!({"calendar": {"tick": {"interval": "10s"}}}),
    ))?;
    let sensor: sluice_crds::Sensor = serde_json::from_value(with_spec(
        meta("Sensor", "fire"),
        json!({"dependencies": [{"name": "d", "eventSourceName": "hooks", "eventName": "example"}],
               "triggers": [{"template": {"name": "l", "log": {}}}]}),
    ))?;
    let bus: sluice_crds::EventBus = serde_json::from_value(with_spec(
        meta("EventBus", "default"),
        json!({"jetstream": {"replicas": 3}}),
    ))?;
    let js = bus.spec.jetstream.clone().context("jetstream")?;
    let ticks = children::eventsource_children(&calendar, "nats://bus:4222", &cfg)?;
    // The leader-elected source runs as a ServiceAccount of its own, which must exist first.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for account in ticks.rbac.iter().filter(|o| o["kind"] == "ServiceAccount") {
        let mut account: ServiceAccount = serde_json::from_value(account.clone())?;
        account.metadata.owner_references = None;
        accounts.create(&Default::default(), &account).await?;
    }
    let templates = [
        (
            "hooks",
            children::eventsource_children(&webhook, "nats://bus:4222", &cfg)?.deployment,
        ),
        ("ticks", ticks.deployment),
        (
            "fire",
            children::sensor_children(&sensor, "nats://bus:4222", &cfg)?.deployment,
        ),
        (
            "nats",
            children::jetstream_children(&bus, &js, &cfg)?.stateful_set,
        ),
    ];
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for (name, workload) in templates {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": workload["spec"]["template"]["spec"],
        }))?;
        pods.create(&Default::default(), &pod)
            .await
            .with_context(|| format!("the {name} pod was refused under the restricted profile"))?;
    }
    // The control: the same kind of pod without the hardening is refused.
    let bare: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
        "spec": {"containers": [{"name": "main", "image": "sluice:test"}]},
    }))?;
    let refused = pods.create(&Default::default(), &bare).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("restricted")),
        "{refused:?}"
    );
    namespaces.delete(&ns, &DeleteParams::default()).await?;
    Ok(())
}

/// A child's name already taken by an object the CR does not control is never taken over: the
/// CR reports `AdoptionRefused` naming it, and the object is left exactly as it was.
#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn an_object_sluice_did_not_create_is_never_adopted() -> Result<()> {
    let client = admin_client().await?;
    install_crds(&client).await?;
    let ns = namespace(&client, "adopt").await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let theirs: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "webhook-eventsource-spec", "labels": {"owner": "someone-else"}},
        "data": {"theirs": "keep me"},
    }))?;
    config_maps.create(&Default::default(), &theirs).await?;
    let controller = start_controller(&client, &ns, test_build(), None);
    apply(
        &client,
        &ns,
        "EventBus",
        "eventbus",
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
            "metadata": {"name": "default"},
            "spec": {"jetstreamExotic": {"url": "nats://nats.example:4222"}},
        }),
    )
    .await?;
    let mut source = eventsource(1);
    source["spec"]["webhook"]["example"]
        .as_object_mut()
        .context("event")?
        .remove("authSecret");
    apply(&client, &ns, "EventSource", "eventsources", source).await?;
    let refused = wait_for(WAIT, || {
        let c = client.clone();
        let ns = ns.clone();
        async move {
            let deployed = condition(&c, &ns, "EventSource", "eventsources", "webhook", "Deployed").await?;
            Ok(deployed.filter(|d| d["reason"] == "AdoptionRefused"))
        }
    })
    .await?;
    assert_eq!(refused["status"], "False");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "ConfigMap {ns}/webhook-eventsource-spec exists and is not owned"
        )),
        "{message}"
    );
    let kept = config_maps.get("webhook-eventsource-spec").await?;
    assert_eq!(
        kept.data.unwrap_or_default().get("theirs").map(String::as_str),
        Some("keep me")
    );
    assert!(kept.metadata.owner_references.is_none());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(deployments.get_opt("webhook-eventsource").await?.is_none());
    controller.stop().await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &DeleteParams::default()).await?;
    Ok(())
}

/// With the operator's allow-lists on, a Sensor whose template names a ServiceAccount outside
/// them, an EventSource naming a Secret outside them (one that does not even exist: the list is
/// checked first) and an EventBus naming a ServiceAccount outside them are not deployed
/// (`Deployed=False`, reason `NotAllowed`, the field and the name, a Warning Event); a Sensor
/// keeping to them deploys, with the bus's generated client Secret mounted although the Secret
/// list does not name it.
#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn the_allow_lists_refuse_service_accounts_and_secrets_outside_them() -> Result<()> {
    use sluice_controller::children::{AllowList, NamePattern};
    let client = admin_client().await?;
    install_crds(&client).await?;
    let ns = namespace(&client, "allowlist").await?;
    let list = |names: &[&str]| -> Result<Option<AllowList>> {
        Ok(Some(
            names
                .iter()
                .map(|n| n.parse::<NamePattern>())
                .collect::<Result<AllowList, _>>()?,
        ))
    };
    let build = BuildConfig {
        allowed_service_accounts: list(&["sensor-*"])?,
        allowed_secrets: list(&["hook-*"])?,
        ..test_build()
    };
    let controller = start_controller(&client, &ns, build, None);
    let bus = |name: &str, jetstream: Value| {
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
            "metadata": {"name": name},
            "spec": {"jetstream": jetstream},
        })
    };
    apply(
        &client,
        &ns,
        "EventBus",
        "eventbus",
        bus("default", json!({"replicas": 1})),
    )
    .await?;
    apply(
        &client,
        &ns,
        "EventBus",
        "eventbus",
        bus(
            "locked",
            json!({"replicas": 1, "serviceAccountName": "nats-admin"}),
        ),
    )
    .await?;
    let with_account = |name: &str, account: &str| {
        let mut s = sensor(name, "hooks");
        s["spec"]["template"] = json!({"serviceAccountName": account});
        s
    };
    apply(
        &client,
        &ns,
        "Sensor",
        "sensors",
        with_account("outsider", "cluster-admin"),
    )
    .await?;
    apply(
        &client,
        &ns,
        "Sensor",
        "sensors",
        with_account("insider", "sensor-runner"),
    )
    .await?;
    let mut peeker = eventsource(1);
    peeker["metadata"]["name"] = json!("peeker");
    peeker["spec"]["webhook"]["example"]["authSecret"] = json!({"name": "db-password", "key": "token"});
    apply(&client, &ns, "EventSource", "eventsources", peeker).await?;

    let refused = |kind: &'static str, plural: &'static str, name: &'static str| {
        let c = client.clone();
        let ns = ns.clone();
        wait_for(WAIT, move || {
            let c = c.clone();
            let ns = ns.clone();
            async move {
                let deployed = condition(&c, &ns, kind, plural, name, "Deployed").await?;
                Ok(deployed.filter(|d| d["reason"] == "NotAllowed"))
            }
        })
    };
    let outsider = refused("Sensor", "sensors", "outsider").await?;
    assert_eq!(outsider["status"], "False");
    assert_eq!(
        outsider["message"],
        "spec.template.serviceAccountName: ServiceAccount \"cluster-admin\" is not in the \
         controller's allow-list (--allowed-service-accounts)"
    );
    let peeker = refused("EventSource", "eventsources", "peeker").await?;
    assert_eq!(peeker["status"], "False");
    assert_eq!(
        peeker["message"],
        "spec.webhook.example.authSecret: Secret \"db-password\" is not in the controller's \
         allow-list (--allowed-secrets)"
    );
    let locked = refused("EventBus", "eventbus", "locked").await?;
    let message = locked["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.jetstream.serviceAccountName: ServiceAccount \"nats-admin\""),
        "{message}"
    );

    warning_event(&client, &ns, "NotAllowed", |e| {
        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("outsider")
            && e.note.as_deref().is_some_and(|n| n.contains("cluster-admin"))
    })
    .await?;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let insider = wait_for(WAIT, || {
        let d = deployments.clone();
        async move { Ok(d.get_opt("insider-sensor").await?) }
    })
    .await?;
    let pod = insider.spec.template.spec.context("pod spec")?;
    assert_eq!(pod.service_account_name.as_deref(), Some("sensor-runner"));
    assert!(
        pod.volumes.unwrap_or_default().iter().any(|v| v
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref())
            == Some("eventbus-default-js-client-auth")),
        "the generated bus credentials are mounted though the list does not name them"
    );
    for refused in ["outsider-sensor", "peeker-eventsource"] {
        assert!(deployments.get_opt(refused).await?.is_none(), "{refused}");
    }
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(stateful_sets.get_opt("eventbus-locked-js").await?.is_none());

    // Cleared up while the controller runs, so the buses' finalizer lets them go.
    let sensors: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &argo("Sensor", "sensors"));
    sensors.delete("outsider", &DeleteParams::default()).await?;
    sensors.delete("insider", &DeleteParams::default()).await?;
    let sources: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &argo("EventSource", "eventsources"));
    sources.delete("peeker", &DeleteParams::default()).await?;
    let buses: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &argo("EventBus", "eventbus"));
    for name in ["default", "locked"] {
        buses.delete(name, &DeleteParams::default()).await?;
    }
    wait_for(WAIT, || {
        let buses = buses.clone();
        async move {
            let left = buses.list(&Default::default()).await?.items.len();
            Ok((left == 0).then_some(()))
        }
    })
    .await?;
    controller.stop().await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &DeleteParams::default()).await?;
    Ok(())
}
