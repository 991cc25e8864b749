//! The registry: which kinds this build runs, and what each says about its attempts.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_crds::sensor::{Trigger as TriggerSpec, TriggerKind};

use super::*;
use crate::secrets::FileSecretResolver;

fn ctx() -> BuildContext {
    BuildContext {
        sensor: "s".into(),
        secrets: Arc::new(FileSecretResolver::new("/nonexistent")),
        http: reqwest::Client::new().into(),
        namespace: None,
    }
}

fn spec(template: serde_json::Value) -> TriggerSpec {
    serde_json::from_value(json!({ "template": template })).expect("a trigger spec")
}

/// `is_supported` (read by the messages) and `BuiltTrigger::build` (which runs the kinds) agree.
#[tokio::test]
async fn build_refuses_exactly_the_kinds_not_supported() {
    for kind in TriggerKind::ALL {
        let built = BuiltTrigger::build_offline(&spec(json!({"name": "t", kind.field_name(): {}})), &ctx());
        let refused = matches!(built, Err(BuildError::UnsupportedKind { .. }));
        assert_eq!(refused, !is_supported(kind), "{kind}");
    }
}

#[tokio::test]
async fn messages_list_the_kinds_this_build_runs() {
    let supported = supported_names();
    assert!(supported.starts_with("k8s, argoWorkflow, http, "), "{supported}");
    assert!(!supported.contains("pulsar"), "{supported}");
    let err = BuiltTrigger::build_offline(&spec(json!({"name": "t", "pulsar": {}})), &ctx())
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(&*format!(
            "failed to build trigger `t`: the `pulsar` trigger is not supported yet (supported: {supported})"
        ))
    );
    let err = BuiltTrigger::build_offline(&spec(json!({"name": "t"})), &ctx())
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(&*format!(
            "failed to build trigger `t`: the template sets no action (set one of {supported})"
        ))
    );
}

#[tokio::test]
async fn each_kind_states_how_long_an_attempt_may_take() {
    let attempt = |template: serde_json::Value| {
        BuiltTrigger::build_offline(&spec(template), &ctx())
            .map(|t| t.attempt_timeout())
            .expect("builds")
    };
    assert_eq!(
        attempt(json!({"name": "t", "http": {"url": "http://127.0.0.1:1/", "timeout": 5}})),
        Duration::from_secs(5)
    );
    assert_eq!(
        attempt(json!({"name": "t", "http": {"url": "http://127.0.0.1:1/"}})),
        http::request::DEFAULT_TIMEOUT
    );
    assert_eq!(attempt(json!({"name": "t", "log": {}})), DEFAULT_ATTEMPT_TIMEOUT);
}

/// The lease of a Kubernetes trigger covers its `policy.k8s` label wait.
#[tokio::test]
async fn a_label_policy_lengthens_a_kubernetes_attempt() {
    let trigger: TriggerSpec = serde_json::from_value(json!({
        "template": {"name": "t", "k8s": {"operation": "create",
            "source": {"resource": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}}}},
        "policy": {"k8s": {"labels": {"done": "true"}, "backoff": {"duration": "2s", "steps": 3, "factor": 2}}}
    }))
    .expect("a trigger spec");
    let wait = k8s::policy::LabelPolicy::from_spec(trigger.policy.as_ref().and_then(|p| p.k8s.as_ref()))
        .expect("a valid policy")
        .map(|p| p.max_wait())
        .expect("labels to wait for");
    assert!(wait >= Duration::from_secs(2), "{wait:?}");
    let built = BuiltTrigger::build_offline(&trigger, &ctx()).expect("builds");
    assert_eq!(built.attempt_timeout(), DEFAULT_ATTEMPT_TIMEOUT + wait);
}
