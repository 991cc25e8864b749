use std::sync::Arc;

use serde_json::json;
use sluice_crds::sensor::{
    ArtifactLocation, FileArtifact, StandardK8STrigger, Trigger as TriggerSpec, TriggerParameter,
    TriggerParameterSource, TriggerTemplate,
};
use sluice_eventbus::EventBuilder;

use super::*;
use crate::firing::FiringId;
use crate::params::EventsByDependency;
use crate::secrets::FileSecretResolver;

fn ctx() -> BuildContext {
    BuildContext {
        sensor: "s".into(),
        secrets: Arc::new(FileSecretResolver::new("/nonexistent")),
        http: reqwest::Client::new().into(),
        namespace: None,
    }
}

fn access() -> KubeAccess {
    // Never connected in these tests: building and describing need no API.
    KubeAccess::Infer(Arc::new(tokio::sync::OnceCell::new()), None)
}

fn trigger_spec(k8s: StandardK8STrigger) -> TriggerSpec {
    TriggerSpec {
        template: Some(TriggerTemplate {
            name: "t".into(),
            k8s: Some(k8s),
            ..TriggerTemplate::default()
        }),
        ..TriggerSpec::default()
    }
}

fn build(k8s: StandardK8STrigger) -> Result<K8sTrigger, BuildError> {
    let spec = trigger_spec(k8s.clone());
    K8sTrigger::build_with_access("t", &k8s, &spec, &ctx(), access())
}

fn resource(value: Value) -> Option<ArtifactLocation> {
    Some(ArtifactLocation {
        resource: Some(value),
        ..ArtifactLocation::default()
    })
}

fn events() -> anyhow::Result<EventsByDependency> {
    let event = EventBuilder::new("github", "push", "github")
        .id("e1")
        .data_json(json!({"body": {"repository": {"name": "sluice"}}}))
        .build()?;
    Ok([("push".to_owned(), event)].into_iter().collect())
}

fn firing(spec: &TriggerSpec) -> anyhow::Result<Firing> {
    let events = events()?;
    Ok(Firing {
        id: FiringId::new("t", &events),
        sensor: "s".into(),
        trigger: "t".into(),
        events,
        template: spec.template.clone().unwrap_or_default(),
    })
}

fn err_text<T>(r: Result<T, BuildError>) -> String {
    r.err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn bad_operation_patch_strategy_and_sources_refuse_to_start() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
    let e = err_text(build(StandardK8STrigger {
        operation: Some("upsert".into()),
        source: resource(cm.clone()),
        ..Default::default()
    }));
    assert!(e.contains("k8s.operation") && e.contains("`upsert`"), "{e}");
    let e = err_text(build(StandardK8STrigger {
        patch_strategy: Some("merge".into()),
        source: resource(cm.clone()),
        ..Default::default()
    }));
    assert!(e.contains("k8s.patchStrategy"), "{e}");
    let e = err_text(build(StandardK8STrigger::default()));
    assert!(e.contains("k8s.source"), "{e}");
    let e = err_text(build(StandardK8STrigger {
        source: Some(ArtifactLocation {
            inline: Some("[not: an, object".into()),
            ..Default::default()
        }),
        ..Default::default()
    }));
    assert!(e.contains("k8s.source") && e.contains("YAML"), "{e}");
    let e = err_text(build(StandardK8STrigger {
        source: Some(ArtifactLocation {
            configmap: Some(sluice_crds::common::ConfigMapKeySelector {
                name: "missing".into(),
                key: "k".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }));
    assert!(e.contains("failed to build trigger `t`"), "{e}");
}

#[test]
fn operations_and_patch_types_parse_as_upstream_names_them() {
    assert_eq!(Operation::parse(None), Some(Operation::Create));
    assert_eq!(Operation::parse(Some("patch")), Some(Operation::Patch));
    assert_eq!(Operation::parse(Some("Patch")), None);
    assert_eq!(PatchStrategy::parse(None), Some(PatchStrategy::Merge));
    assert_eq!(
        PatchStrategy::parse(Some("application/apply-patch+yaml")),
        Some(PatchStrategy::Apply)
    );
    assert_eq!(
        PatchStrategy::parse(Some("application/json-patch+json")),
        Some(PatchStrategy::Json)
    );
}

#[test]
fn describe_applies_parameters_and_adds_the_upstream_labels_on_create() -> anyhow::Result<()> {
    let k8s = StandardK8STrigger {
        source: Some(ArtifactLocation {
            inline: Some(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: repo-\ndata:\n  repo: unset\n"
                    .into(),
            ),
            ..Default::default()
        }),
        parameters: vec![TriggerParameter {
            src: Some(TriggerParameterSource {
                dependency_name: "push".into(),
                data_key: Some("body.repository.name".into()),
                ..Default::default()
            }),
            dest: "data.repo".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let spec = trigger_spec(k8s.clone());
    let t = K8sTrigger::build_with_access("t", &k8s, &spec, &ctx(), access())?;
    let shown = t.describe(&firing(&spec)?)?;
    assert_eq!(shown["operation"], "create");
    assert_eq!(shown["object"]["data"]["repo"], "sluice");
    assert_eq!(shown["object"]["metadata"]["labels"][object::LABEL_SENSOR], "s");
    assert_eq!(shown["object"]["metadata"]["labels"][object::LABEL_TRIGGER], "t");
    Ok(())
}

#[tokio::test]
async fn a_file_source_is_read_again_only_when_it_changes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cm.yaml");
    std::fs::write(&path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")?;
    let location = ArtifactLocation {
        file: Some(FileArtifact {
            path: Some(path.display().to_string()),
        }),
        ..Default::default()
    };
    let cache = SourceCache::build(
        "t",
        "k8s.source",
        Some(&location),
        &FileSecretResolver::new("/x"),
        reqwest::Client::new(),
    )?;
    let first = cache.object(Some(&location)).await?;
    assert_eq!(first["metadata"]["name"], "a");
    // A rewrite with a different modification time is seen.
    std::fs::write(&path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")?;
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&path)?
        .set_modified(later)?;
    let second = cache.object(Some(&location)).await?;
    assert_eq!(second["metadata"]["name"], "b");
    Ok(())
}

#[tokio::test]
async fn a_url_source_is_downloaded_once_and_a_configmap_source_read_at_build() -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/cm.yaml",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-url}\n" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let location = ArtifactLocation {
        url: Some(sluice_crds::sensor::URLArtifact {
            path: format!("http://{addr}/cm.yaml"),
            verify_cert: false,
        }),
        ..Default::default()
    };
    let secrets = FileSecretResolver::new("/x");
    let cache = SourceCache::build(
        "t",
        "k8s.source",
        Some(&location),
        &secrets,
        reqwest::Client::new(),
    )?;
    for _ in 0..3 {
        assert_eq!(
            cache.object(Some(&location)).await?["metadata"]["name"],
            "from-url"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    server.abort();

    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("manifests"))?;
    std::fs::write(
        dir.path().join("manifests/cm"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-configmap}\n",
    )?;
    let secrets = FileSecretResolver::new("/x").with_config_maps_dir(dir.path());
    let location = ArtifactLocation {
        configmap: Some(sluice_crds::common::ConfigMapKeySelector {
            name: "manifests".into(),
            key: "cm".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cache = SourceCache::build(
        "t",
        "k8s.source",
        Some(&location),
        &secrets,
        reqwest::Client::new(),
    )?;
    // Read at build: removing the file afterwards changes nothing.
    std::fs::remove_file(dir.path().join("manifests/cm"))?;
    assert_eq!(
        cache.object(Some(&location)).await?["metadata"]["name"],
        "from-configmap"
    );
    assert_eq!(
        cache.object_now(Some(&location))?["metadata"]["name"],
        "from-configmap"
    );
    Ok(())
}

/// `source.url` is often filled from event data: it goes through the sensor's egress rules, a
/// literal IP included (which skips the guarded resolver). 127.0.0.2 stands in for a metadata
/// address; its listener must see nothing.
#[tokio::test]
async fn a_url_source_at_a_denied_address_is_refused() -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\n" }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = crate::triggers::http::egress::HttpClients::new(
        crate::triggers::http::egress::EgressPolicy::with_rules(&["127.0.0.2/32".parse()?], &[]),
    )?;
    for url in [
        format!("http://{addr}/cm.yaml"),
        format!("http://[::ffff:127.0.0.2]:{}/cm.yaml", addr.port()),
    ] {
        let location = ArtifactLocation {
            url: Some(sluice_crds::sensor::URLArtifact {
                path: url.clone(),
                verify_cert: false,
            }),
            ..Default::default()
        };
        let cache = SourceCache::build(
            "t",
            "k8s.source",
            Some(&location),
            &FileSecretResolver::new("/x"),
            http.clone(),
        )?;
        let err = cache
            .object(Some(&location))
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("{url} was fetched"))?;
        assert!(err.to_string().contains("egress rules"), "{url}: {err}");
        assert!(
            !err.is_retryable(),
            "{url}: a refusal does not get better with retries"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the denied listener was reached");
    server.abort();
    Ok(())
}

/// A source URL's credentials stay out of the download's error message.
#[tokio::test]
async fn a_failed_download_masks_the_credentials_of_the_url() -> anyhow::Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let location = ArtifactLocation {
        url: Some(sluice_crds::sensor::URLArtifact {
            path: format!("http://user:source-pass@127.0.0.1:{closed}/cm.yaml?token=source-token"),
            verify_cert: false,
        }),
        ..Default::default()
    };
    let secrets = FileSecretResolver::new("/x");
    let cache = SourceCache::build(
        "t",
        "k8s.source",
        Some(&location),
        &secrets,
        reqwest::Client::new(),
    )?;
    let error = cache.object(Some(&location)).await.expect_err("nothing listens");
    let text = sluice_eventbus::error_chain(&error);
    assert!(
        !text.contains("source-pass") && !text.contains("source-token"),
        "{text}"
    );
    assert!(text.contains("***@127.0.0.1"), "{text}");
    Ok(())
}
