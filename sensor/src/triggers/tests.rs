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

/// Whatever URL the code that failed passed, the message masks its credentials.
#[test]
fn error_messages_mask_credentials_in_urls_and_targets() {
    let url = "http://user:url-pass@127.0.0.1:9/p?token=query-token#frag-token";
    let errors = [
        TriggerError::BuildRequest {
            url: url.into(),
            reason: "bad".into(),
        },
        TriggerError::StatusNotAllowed {
            url: url.into(),
            status: 500,
        },
        TriggerError::Publish {
            target: "nats://user:url-pass@127.0.0.1:4222/subject".into(),
            reason: "refused".into(),
            retryable: true,
        },
        TriggerError::FetchSource {
            location: url.into(),
            reason: "refused".into(),
            retryable: true,
        },
    ];
    for error in errors {
        let shown = error.to_string();
        for secret in ["url-pass", "query-token", "frag-token"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("***@127.0.0.1:"), "{shown}");
    }
}

/// `sluice sensor test` prints `describe`: a NATS URL's password stays out of it, and a failed
/// connection's message masks it.
#[tokio::test]
async fn the_nats_trigger_masks_the_password_of_its_url() -> anyhow::Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let spec = spec(json!({"name": "t", "nats": {
        "url": format!("nats://user:nats-url-pass@127.0.0.1:{closed}"), "subject": "s"}}));
    let built = BuiltTrigger::build_offline(&spec, &ctx())?;
    let events = crate::params::EventsByDependency::new();
    let firing = Firing {
        id: crate::FiringId::new("t", &events),
        sensor: "s".into(),
        trigger: "t".into(),
        events,
        template: spec.template.clone().unwrap_or_default(),
    };
    let described = built.describe(&firing)?.to_string();
    assert!(!described.contains("nats-url-pass"), "{described}");
    assert!(described.contains("nats://***@127.0.0.1"), "{described}");
    let error = built.execute(&firing).await.expect_err("nothing listens");
    let text = sluice_eventbus::error_chain(&error);
    assert!(!text.contains("nats-url-pass"), "{text}");
    Ok(())
}
