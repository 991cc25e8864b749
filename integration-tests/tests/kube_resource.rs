//! The `resource` event source against the real Kubernetes API server: ConfigMap create/update/delete
//! → three events with the right `type`, `body` and `oldBody`, through a real (embedded) bus; a
//! restarted source does not put old objects on the bus again.

mod kube_support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{json, Value};
use sluice_crds::eventsource::{ResourceEventSource, ResourceFilter};
use sluice_eventbus::{Bus, EmbeddedBus, EmbeddedConfig, Event};
use sluice_eventsource::testing::{Recorder, SendOutcome};
use sluice_eventsource::BusSender;
use tokio_util::sync::CancellationToken;

use kube_support::*;

fn spec(ns: &str, after_start: bool) -> ResourceEventSource {
    ResourceEventSource {
        namespace: ns.into(),
        group: String::new(),
        version: "v1".into(),
        resource: "configmaps".into(),
        event_types: vec!["ADD".into(), "UPDATE".into(), "DELETE".into()],
        filter: Some(ResourceFilter {
            prefix: Some("watched-".into()),
            after_start,
            ..Default::default()
        }),
        metadata: Some([("team".to_owned(), "infra".to_owned())].into()),
    }
}

/// Starts the source of `spec` publishing through `recorder`; returns its cancel token and task.
fn start(
    spec: ResourceEventSource,
    recorder: Arc<Recorder>,
) -> Result<(CancellationToken, tokio::task::JoinHandle<()>)> {
    let ctx = sluice_eventsource::SourceContext::new(
        Arc::new(sluice_eventsource::secrets::MapSecretResolver::new()),
        recorder,
    );
    let mut built = sluice_eventsource::build_kind(
        "k8s",
        &[("cm".to_owned(), spec)].into(),
        sluice_eventsource::sources::resource::build,
        &ctx,
    )?;
    let source = built.tasks.pop().context("one source")?;
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let task = tokio::spawn(async move {
        source
            .run(token)
            .await
            .expect("the resource source runs until it is cancelled");
    });
    Ok((cancel, task))
}

/// Waits until the source sent `n` events; every event sent so far, each with whether the bus
/// called it a duplicate.
async fn wait_events(recorder: &Recorder, n: usize) -> Vec<(Event, bool)> {
    recorder.wait_sent(n).await;
    recorder
        .outcomes()
        .into_iter()
        .map(|(event, outcome)| (event, outcome == SendOutcome::Duplicate))
        .collect()
}

fn data(event: &Event) -> Value {
    event.data().cloned().unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs kube-apiserver: scripts/test starts it and runs ignored tests"]
async fn configmap_changes_become_add_update_delete_events_and_a_restart_sends_nothing_new() -> Result<()> {
    let client = admin_client().await?;
    let ns = namespace(&client, "res").await?;
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
    let recorder = Arc::new(Recorder::forwarding(Arc::new(BusSender::new(
        bus.clone(),
        Duration::from_secs(5),
    ))));
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps"),
    );
    let create = |name: &str| {
        let api = api.clone();
        let object =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": "1"}});
        async move {
            api.create(&PostParams::default(), &serde_json::from_value(object)?)
                .await?;
            anyhow::Ok(())
        }
    };
    // An object that exists before the source starts: reported as ADD by the first list.
    create("watched-old").await?;
    let (cancel, task) = start(spec(&ns, false), recorder.clone())?;
    let first = wait_events(&recorder, 1).await;
    assert_eq!(data(&first[0].0)["type"], "ADD");
    assert_eq!(data(&first[0].0)["body"]["metadata"]["name"], "watched-old");

    create("other").await?; // filtered out by the prefix
    create("watched-1").await?;
    api.patch(
        "watched-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await?;
    api.delete("watched-1", &DeleteParams::default()).await?;
    let events = wait_events(&recorder, 4).await;
    let changes: Vec<(String, String)> = events
        .iter()
        .map(|(e, _)| {
            let d = data(e);
            (
                d["type"].as_str().unwrap_or_default().to_owned(),
                d["body"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("ADD".into(), "watched-old".into()),
            ("ADD".into(), "watched-1".into()),
            ("UPDATE".into(), "watched-1".into()),
            ("DELETE".into(), "watched-1".into()),
        ]
    );
    let update = data(&events[2].0);
    assert_eq!(update["body"]["data"]["v"], "2");
    assert_eq!(update["oldBody"]["data"]["v"], "1");
    assert_eq!(
        (update["version"].as_str(), update["resource"].as_str()),
        (Some("v1"), Some("configmaps"))
    );
    assert_eq!(update["metadata"]["team"], "infra");
    assert!(data(&events[1].0).get("oldBody").is_none());
    assert!(events.iter().all(|(_, duplicate)| !duplicate));
    cancel.cancel();
    task.await?;

    // Restart: the first list sends watched-old again with the id it had, so the bus stores nothing new.
    let before = recorder.sent().len();
    let (cancel, task) = start(spec(&ns, false), recorder.clone())?;
    let after = wait_events(&recorder, before + 1).await;
    let (again, duplicate) = &after[before];
    assert_eq!(data(again)["body"]["metadata"]["name"], "watched-old");
    assert_eq!(again.id(), first[0].0.id());
    assert!(duplicate, "the bus stored a re-sent old object again");
    cancel.cancel();
    task.await?;

    // afterStart: old objects are not even sent; a new one is. creationTimestamp has whole seconds
    // and an object of the starting second counts as new, so the old ones must be a second older.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = recorder.sent().len();
    let (cancel, task) = start(spec(&ns, true), recorder.clone())?;
    create("watched-new").await?;
    let after = wait_events(&recorder, before + 1).await;
    let names: Vec<_> = after[before..]
        .iter()
        .map(|(e, _)| {
            data(e)["body"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(names, vec!["watched-new".to_owned()]);
    cancel.cancel();
    task.await?;
    Ok(())
}
