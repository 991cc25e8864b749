//! Shared by the tests against the real Kubernetes API server (`scripts/services.sh start kube`):
//! clients (admin and RBAC-less), CRD installation, a namespace per test, GitHub-shaped events.
#![allow(dead_code)] // Each test binary uses a different part.

use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::Client;
use serde_json::{json, Value};
use sluice_eventbus::{Event, EventBuilder};
use sluice_eventsource::testing::try_setting;
use sluice_integration_tests::{secrets, workspace_root};
use tokio::sync::OnceCell;

/// A setting printed by `scripts/services.sh start kube`; the test fails without it.
pub fn setting(name: &str) -> Result<String> {
    Ok(try_setting(name)?)
}

/// A client as the kubeconfig chain makes it (KUBECONFIG: the admin token).
pub async fn admin_client() -> Result<Client> {
    setting("KUBECONFIG")?;
    let mut config = kube::Config::infer().await?;
    config.default_retry = false;
    Ok(Client::try_from(config)?)
}

/// A client authenticated as a user without any RBAC rights.
pub async fn denied_client() -> Result<Client> {
    let path = setting("KUBECONFIG")?;
    let token = setting("KUBE_DENIED_TOKEN")?;
    let mut kubeconfig = Kubeconfig::read_from(&path)?;
    for user in &mut kubeconfig.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            auth.token = Some(token.clone().into());
        }
    }
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn crd_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    )
}

/// The Argo resource of `kind`/`plural`.
pub fn argo(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind), plural)
}

static CRDS: OnceCell<()> = OnceCell::const_new();

/// Installs the Argo Workflows test CRDs and Sluice's CRDs (server-side apply, so reruns and
/// parallel test binaries agree) and waits until the API serves them.
pub async fn install_crds(client: &Client) -> Result<()> {
    CRDS.get_or_try_init(|| async {
        let root = workspace_root();
        let mut files = vec![root.join("integration-tests/fixtures/argo-workflows-crds.yaml")];
        for entry in std::fs::read_dir(root.join("crds"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
        let mut names = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            for doc in text.split("\n---") {
                let value: Value = serde_yaml::from_str(doc)?;
                if value.is_null() {
                    continue;
                }
                let name = value["metadata"]["name"]
                    .as_str()
                    .context("CRD without name")?
                    .to_owned();
                let object: DynamicObject = serde_json::from_value(value)?;
                api.patch(
                    &name,
                    &PatchParams::apply("sluice-tests").force(),
                    &Patch::Apply(&object),
                )
                .await
                .with_context(|| format!("applying CRD {name} from {}", file.display()))?;
                names.push(name);
            }
        }
        for name in names {
            wait_for(Duration::from_secs(60), || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await?;
                    let established = crd.data["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    });
                    Ok(established.then_some(()))
                }
            })
            .await
            .with_context(|| format!("CRD {name} not established"))?;
        }
        anyhow::Ok(())
    })
    .await?;
    Ok(())
}

/// Creates a namespace named `prefix-<random>` and returns its name.
pub async fn namespace(client: &Client, prefix: &str) -> Result<String> {
    let name = format!("{prefix}-{}", &uuid_like()[..8]);
    let ns = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ns);
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &object).await?;
    Ok(name)
}

fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}

pub use sluice_integration_tests::wait_for;

/// A GitHub `push` delivery as the github/webhook event sources put it on the bus.
pub fn github_push(id: &str, repository: &str, sha: &str) -> Result<Event> {
    Ok(EventBuilder::new("github", "push", "github")
        .id(id)
        .data_json(json!({
            "header": {"X-Github-Event": ["push"], "X-Github-Delivery": [id]},
            "body": {
                "ref": "refs/heads/main",
                "after": sha,
                "repository": {"name": repository, "full_name": format!("acme/{repository}")},
                "pusher": {"name": "ada"}
            }
        }))
        .build()?)
}

/// Registers every value of every Secret in `ns` ([`secrets::register_text`]), then scans what the
/// controller and the processes wrote there for any registered secret: the Events (both APIs:
/// reason, note/message, the object named) and the `status` of every EventSource, Sensor and
/// EventBus. `Err` names the namespace and the secret's label, never the value.
pub async fn assert_no_secret_in_namespace(client: &Client, ns: &str) -> Result<()> {
    use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
    use k8s_openapi::api::events::v1::Event;
    let secret_objects: Api<Secret> = Api::namespaced(client.clone(), ns);
    for secret in secret_objects.list(&Default::default()).await? {
        let name = secret.metadata.name.clone().unwrap_or_default();
        for (key, value) in secret.data.unwrap_or_default() {
            let label = format!("Secret {ns}/{name} key {key}");
            secrets::register_text(&label, &key, &String::from_utf8_lossy(&value.0));
        }
        for (key, value) in secret.string_data.unwrap_or_default() {
            secrets::register_text(&format!("Secret {ns}/{name} key {key}"), &key, &value);
        }
    }
    let mut text = String::new();
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    for e in events.list(&Default::default()).await? {
        text.push_str(&serde_json::to_string(&json!({
            "reason": e.reason, "note": e.note, "regarding": e.regarding, "action": e.action}))?);
        text.push('\n');
    }
    let core_events: Api<CoreEvent> = Api::namespaced(client.clone(), ns);
    for e in core_events.list(&Default::default()).await? {
        text.push_str(&serde_json::to_string(
            &json!({"reason": e.reason, "message": e.message}),
        )?);
        text.push('\n');
    }
    for (kind, plural) in [
        ("EventSource", "eventsources"),
        ("Sensor", "sensors"),
        ("EventBus", "eventbus"),
    ] {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &argo(kind, plural));
        for object in api.list(&Default::default()).await? {
            text.push_str(&format!(
                "{kind} {}: {}\n",
                object.metadata.name.unwrap_or_default(),
                object.data["status"]
            ));
        }
    }
    secrets::check(&format!("the Events and CR statuses of namespace {ns}"), &text)
        .map_err(anyhow::Error::msg)
}
