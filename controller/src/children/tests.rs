//! Snapshot and shape tests of the builders.

use super::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde_json::json;
use sluice_crds::eventbus::JetStreamConfig;
use sluice_crds::{EventBus, EventSource, Sensor};

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
                serde_json::from_value::<k8s_openapi::api::core::v1::ServiceAccount>(object.clone()).map(drop)
            }
            Some("Role") => {
                serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(object.clone()).map(drop)
            }
            Some("RoleBinding") => {
                serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(object.clone()).map(drop)
            }
            Some("Lease") => {
                serde_json::from_value::<k8s_openapi::api::coordination::v1::Lease>(object.clone()).map(drop)
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
    assert_eq!(c.cluster_secret, "eventbus-demo-js-cluster");
    // Routes authenticate: the cluster block takes its credentials and routes from the Secret.
    let conf = c.config_map["data"]["nats-js.conf"].as_str().expect("conf");
    assert!(
        conf.contains("cluster {\n  name: demo\n  port: 6222\n  include ./cluster-auth.conf\n}"),
        "{conf}"
    );
    assert!(
        !conf.contains("routes"),
        "routes carry credentials, so never in the ConfigMap: {conf}"
    );
    assert_eq!(
        c.routes,
        (0..3)
            .map(|i| format!("eventbus-demo-js-{i}.eventbus-demo-js-svc.team.svc:6222"))
            .collect::<Vec<_>>()
    );
    // The monitoring port is not published.
    let ports: Vec<i64> = c.headless_service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(ports, vec![4222, 6222]);
    serde_json::from_value::<k8s_openapi::api::networking::v1::NetworkPolicy>(c.network_policy.clone())
        .expect("NetworkPolicy");
    insta::assert_yaml_snapshot!("jetstream_network_policy", c.network_policy);
}

#[test]
fn one_replica_has_no_routes_and_a_replica_change_rolls_the_pods() {
    let bus = |replicas: i32| -> EventBus {
        parse(&format!(
            "{}spec:\n  jetstream:\n    replicas: {replicas}\n",
            meta_fixture("EventBus")
        ))
    };
    let build = |b: &EventBus| {
        let js = b.spec.jetstream.clone().expect("jetstream");
        jetstream_children(b, &js, &BuildConfig::default()).expect("builds")
    };
    let one = build(&bus(1));
    assert!(one.routes.is_empty());
    assert!(!one.config_map["data"]["nats-js.conf"]
        .as_str()
        .expect("conf")
        .contains("cluster"));
    let hash = |c: &BusChildren| {
        c.stateful_set["spec"]["template"]["metadata"]["annotations"]["sluice.dev/config-hash"].clone()
    };
    let (three, five) = (build(&bus(3)), build(&bus(5)));
    assert_eq!(three.config_map, five.config_map);
    assert_ne!(
        hash(&three),
        hash(&five),
        "routes are hashed with the configuration"
    );
}

#[test]
fn cluster_secret_carries_the_route_password_in_the_authorization_and_every_route() {
    let bus: EventBus = parse(&format!(
        "{}spec:\n  jetstream:\n    replicas: 2\n",
        meta_fixture("EventBus")
    ));
    let password = "0123456789abcdef0123456789abcdef";
    let routes = vec!["a.svc:6222".to_string(), "b.svc:6222".to_string()];
    let secret = jetstream_cluster_secret(&bus, &routes, password).expect("builds");
    let typed: k8s_openapi::api::core::v1::Secret = serde_json::from_value(secret.clone()).expect("Secret");
    let data = typed.data.expect("data");
    assert_eq!(data[JS_ROUTE_PASSWORD_KEY].0, password.as_bytes());
    let conf = String::from_utf8(data[JS_CLUSTER_AUTH_KEY].0.clone()).expect("utf-8");
    insta::assert_snapshot!("jetstream_cluster_auth", conf);
    assert_eq!(secret["metadata"]["name"], "eventbus-demo-js-cluster");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["kind"], "EventBus");
    // Generated passwords are usable; empty, short or URL-unsafe ones are refused.
    let generated = generate_route_password();
    assert!(usable_route_password(&generated));
    assert_ne!(generated, generate_route_password());
    for bad in [
        "",
        "short",
        "0123456789abcdef0123456789abcde@",
        "0123456789abcdef 123456789abcdef0",
    ] {
        assert!(!usable_route_password(bad), "{bad:?}");
        assert!(jetstream_cluster_secret(&bus, &routes, bad).is_err(), "{bad:?}");
    }
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
    let access: serde_json::Value = serde_yaml::from_str(&text(&client_typed, "client-auth")).expect("YAML");
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
    let err = eventsource_children(&host, "nats://bus:4222", &BuildConfig::default()).expect_err("rejected");
    assert_eq!(
            err.to_string(),
            "spec.template.volumes[0].hostPath: hostPath volumes are not allowed (the controller runs without --allow-privileged)"
        );
    let privileged = eventsource("  template:\n    container:\n      securityContext: {privileged: true}\n");
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
    let err = eventsource_children(&add, "nats://bus:4222", &BuildConfig::default()).expect_err("rejected");
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
    let drop_all =
        eventsource("  template:\n    container:\n      securityContext: {capabilities: {drop: [ALL]}}\n");
    let children = eventsource_children(&drop_all, "nats://bus:4222", &BuildConfig::default())
        .expect("dropping capabilities is allowed");
    assert_eq!(
        children.deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
            ["drop"],
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
    let children = eventsource_children(&own, "nats://bus:4222", &BuildConfig::default()).expect("builds");
    assert_eq!(
        children.deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "mine"
    );
    assert_eq!(children.rbac.len(), 3);
    assert_eq!(children.rbac[0]["kind"], "Lease");
    assert_eq!(
        children.rbac[0]["metadata"]["ownerReferences"][0]["kind"],
        "EventSource"
    );
    assert_eq!(children.rbac[2]["subjects"][0]["name"], "mine");
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
fn every_referenced_secret_and_config_map_is_mounted_once_by_type() {
    let sensor: Sensor = parse(&format!(
        "{}spec:\n  dependencies:\n    - {{name: d, eventSourceName: demo, eventName: example}}\n  triggers:\n    - template:\n        name: call\n        http:\n          url: http://sink.invalid/\n          basicAuth:\n            username: {{name: http-auth, key: user}}\n            password: {{name: http-auth, key: pass}}\n          secureHeaders:\n            - {{name: X-Env, valueFrom: {{configMapKeyRef: {{name: settings, key: env, optional: true}}}}}}\n",
        meta_fixture("Sensor")
    ));
    let c = sensor_children(&sensor, "nats://bus:4222", &BuildConfig::default()).expect("builds");
    typed(&c);
    let pod = &c.deployment["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().expect("volumes");
    let secret: Vec<&Value> = volumes
        .iter()
        .filter(|v| v["secret"]["secretName"] == "http-auth")
        .collect();
    assert_eq!(secret.len(), 1, "one volume per Secret: {volumes:?}");
    assert!(secret[0]["secret"].get("optional").is_none());
    let config = volumes
        .iter()
        .find(|v| v["configMap"]["name"] == "settings")
        .expect("the ConfigMap is mounted");
    assert_eq!(
        config["configMap"]["optional"], true,
        "only optional references: an optional volume"
    );
    let mounts: Vec<&str> = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(
        mounts.contains(&"/var/run/sluice/secrets/http-auth"),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&"/var/run/sluice/configmaps/settings"),
        "{mounts:?}"
    );
    let args = pod["containers"][0]["args"].as_array().expect("args");
    let at = args
        .iter()
        .position(|a| a == "--configmaps-dir")
        .expect("--configmaps-dir");
    assert_eq!(args[at + 1], "/var/run/sluice/configmaps");
}

#[test]
fn push_ports_come_from_the_typed_webhook_contexts() {
    let es: EventSource = parse(&format!(
        "{}spec:\n  webhook:\n    a: {{port: \"12000\", endpoint: /a, method: POST}}\n    b: {{port: \"12000\", endpoint: /b, method: POST}}\n  github:\n    push:\n      repositories: [{{owner: o, names: [r]}}]\n      webhook: {{port: \"13000\", endpoint: /push, method: POST}}\n  calendar:\n    tick: {{interval: 10s}}\n",
        meta_fixture("EventSource")
    ));
    assert_eq!(push_ports(&es.spec), vec![12000, 13000]);
}

#[test]
fn templates_are_held_to_the_baseline_profile() {
    let cases = [
        (
            "  template:\n    volumes: [{name: share, nfs: {server: nas, path: /}}]\n",
            "spec.template.volumes[0].nfs",
        ),
        (
            "  template:\n    securityContext: {sysctls: [{name: kernel.msgmax, value: \"1\"}]}\n",
            "spec.template.securityContext.sysctls[0]",
        ),
        (
            "  template:\n    securityContext: {seccompProfile: {type: Unconfined}}\n",
            "spec.template.securityContext.seccompProfile.type",
        ),
        (
            "  template:\n    securityContext: {seLinuxOptions: {type: spc_t}}\n",
            "spec.template.securityContext.seLinuxOptions.type",
        ),
        (
            "  template:\n    securityContext: {windowsOptions: {hostProcess: true}}\n",
            "spec.template.securityContext.windowsOptions.hostProcess",
        ),
        (
            "  template:\n    container:\n      securityContext: {procMount: Unmasked}\n",
            "spec.template.container.securityContext.procMount",
        ),
        (
            "  template:\n    container:\n      securityContext: {appArmorProfile: {type: Unconfined}}\n",
            "spec.template.container.securityContext.appArmorProfile.type",
        ),
    ];
    for (template, path) in cases {
        let es = eventsource(template);
        match eventsource_children(&es, "nats://bus:4222", &BuildConfig::default()) {
            Err(BuildError::RejectPrivileged { path: got, .. }) => assert_eq!(got, path, "{template}"),
            other => panic!("{template}: not refused: {other:?}"),
        }
        let allowed = BuildConfig {
            allow_privileged: true,
            ..BuildConfig::default()
        };
        assert!(
            eventsource_children(&es, "nats://bus:4222", &allowed).is_ok(),
            "{template}"
        );
    }
    // What the baseline allows passes: safe sysctls, the container SELinux type, volumes that do
    // not reach into the node.
    let fine = eventsource(
        "  template:\n    securityContext: {sysctls: [{name: net.ipv4.tcp_syncookies, value: \"1\"}], seLinuxOptions: {type: container_t}}\n    volumes: [{name: scratch, emptyDir: {}}, {name: cfg, configMap: {name: c}}]\n",
    );
    assert!(eventsource_children(&fine, "nats://bus:4222", &BuildConfig::default()).is_ok());
}

#[test]
fn a_bus_template_is_checked_too() {
    let bus: EventBus = parse(&format!(
        "{}spec:\n  jetstream:\n    containerTemplate:\n      securityContext: {{privileged: true}}\n",
        meta_fixture("EventBus")
    ));
    let js = bus.spec.jetstream.clone().expect("jetstream");
    assert!(matches!(
        jetstream_children(&bus, &js, &BuildConfig::default()),
        Err(BuildError::RejectPrivileged { path, .. }) if path == "spec.jetstream.containerTemplate.securityContext.privileged"
    ));
}

#[test]
fn a_template_overrides_the_hardened_defaults_field_by_field() {
    let es = eventsource(
        "  template:\n    securityContext: {runAsUser: 1000}\n    container:\n      securityContext: {readOnlyRootFilesystem: false}\n",
    );
    let c = eventsource_children(&es, "nats://bus:4222", &BuildConfig::default()).expect("builds");
    let pod = &c.deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 1000);
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"], true,
        "the other defaults stay"
    );
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0]["securityContext"];
    assert_eq!(container["readOnlyRootFilesystem"], false);
    assert_eq!(container["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["allowPrivilegeEscalation"], false);
}

#[test]
fn egress_rules_reach_sensor_pods_as_flags_and_templates_may_not_set_them() {
    let cfg = BuildConfig {
        egress_deny: vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()],
        egress_allow: vec!["10.1.2.0/24".into()],
        ..BuildConfig::default()
    };
    let sensor: Sensor = parse(&format!(
        "{}spec:\n  dependencies:\n    - {{name: d, eventSourceName: demo, eventName: example}}\n  triggers:\n    - template: {{name: l, log: {{}}}}\n",
        meta_fixture("Sensor")
    ));
    let c = sensor_children(&sensor, "nats://bus:4222", &cfg).expect("builds");
    let args = c.deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    let args: Vec<&str> = args
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--egress-deny", "10.0.0.0/8,192.168.0.0/16"]),
        "{args:?}"
    );
    assert!(
        args.windows(2).any(|w| w == ["--egress-allow", "10.1.2.0/24"]),
        "{args:?}"
    );
    for name in ["SLUICE_EGRESS_ALLOW", "https_proxy", "HTTP_PROXY", "NO_PROXY"] {
        let es = eventsource(&format!(
            "  template:\n    container:\n      env: [{{name: A, value: b}}, {{name: {name}, value: x}}]\n"
        ));
        assert!(
            matches!(
                eventsource_children(&es, "nats://bus:4222", &BuildConfig::default()),
                Err(BuildError::RejectPrivileged { path, .. }) if path == "spec.template.container.env[1].name"
            ),
            "{name}"
        );
    }
}

#[test]
fn the_stream_is_replicated_on_up_to_three_servers_unless_the_manifest_says_otherwise() {
    let replicas = |text: &str| -> serde_yaml::Value {
        let parsed: serde_yaml::Value = parse(text);
        parsed["replicas"].clone()
    };
    let one = eventbus::stream_settings(None, 1).expect("settings");
    assert_eq!(replicas(&one), serde_yaml::Value::from(1));
    let five = eventbus::stream_settings(None, 5).expect("settings");
    assert_eq!(replicas(&five), serde_yaml::Value::from(3));
    // The manifest's other settings are kept, and its own `replicas` wins.
    let own = eventbus::stream_settings(Some("maxAge: 1h\n"), 3).expect("settings");
    assert_eq!(replicas(&own), serde_yaml::Value::from(3));
    let own: serde_yaml::Value = parse(&own);
    assert_eq!(own["maxAge"], serde_yaml::Value::from("1h"));
    let pinned = eventbus::stream_settings(Some("replicas: 1\n"), 3).expect("settings");
    assert_eq!(replicas(&pinned), serde_yaml::Value::from(1));
    let err = eventbus::stream_settings(Some("[1, 2]"), 3).expect_err("a list is refused");
    assert!(err.to_string().contains("streamConfig"), "{err}");
}
