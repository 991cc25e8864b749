//! The `file` source on a temporary directory: inotify and polling, with upstream's data
//! `{name, op, metadata}` (op as upstream's number), only the watched paths and operation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_crds::eventsource::{FileEventSource, WatchPathConfig};
use sluice_eventsource::sources::file;
use sluice_eventsource::testing::{one_source, Recorder};
use sluice_eventsource::{FileSecretResolver, PullSource, SourceContext};
use tokio_util::sync::CancellationToken;

fn source(
    dir: &Path,
    event_type: &str,
    path: Option<&str>,
    re: Option<&str>,
    polling: bool,
    rec: Arc<Recorder>,
) -> Box<dyn PullSource> {
    let spec = FileEventSource {
        event_type: event_type.into(),
        watch_path_config: Some(WatchPathConfig {
            directory: format!("{}/", dir.display()),
            path: path.map(Into::into),
            path_regexp: re.map(Into::into),
        }),
        polling,
        metadata: Some(BTreeMap::from([("team".into(), "ops".into())])),
        ..Default::default()
    };
    one_source("files", spec, file::build, rec)
}

/// Runs the source, doing `act` repeatedly (a watch starts asynchronously) until `n` events came.
async fn run(
    task: Box<dyn PullSource>,
    rec: &Recorder,
    n: usize,
    act: impl Fn(u32),
) -> Vec<serde_json::Value> {
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(task.run(cancel.clone()));
    for i in 0..100 {
        if rec.sent().len() >= n {
            break;
        }
        act(i);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cancel.cancel();
    handle.await.expect("join").expect("run");
    rec.sent_data()
}

#[tokio::test]
async fn inotify_reports_creates_of_the_watched_path_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Arc::new(Recorder::default());
    let task = source(dir.path(), "CREATE", Some("ready.txt"), None, false, rec.clone());
    let events = run(task, &rec, 1, |i| {
        std::fs::write(dir.path().join(format!("other-{i}.txt")), "x").expect("write");
        let _ = std::fs::remove_file(dir.path().join("ready.txt"));
        std::fs::write(dir.path().join("ready.txt"), "x").expect("write");
    })
    .await;
    let want = json!({"name": dir.path().join("ready.txt").display().to_string(), "op": 1, "metadata": {"team": "ops"}});
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| *e == want), "{events:?}");
}

#[tokio::test]
async fn polling_reports_removes_matching_the_regexp_by_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Arc::new(Recorder::default());
    let task = source(dir.path(), "REMOVE", None, Some(r"\.csv$"), true, rec.clone());
    let events = run(task, &rec, 1, |i| {
        // Created in one round, removed in the next, so the poller sees both states.
        let csv = dir.path().join(format!("r{}.csv", i / 2));
        let txt = dir.path().join(format!("r{}.txt", i / 2));
        if i % 2 == 0 {
            std::fs::write(&csv, "a,b").expect("write");
            std::fs::write(&txt, "a").expect("write");
        } else {
            std::fs::remove_file(&csv).expect("remove");
            std::fs::remove_file(&txt).expect("remove");
        }
    })
    .await;
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e["op"], json!(4), "{e}");
        assert!(
            e["name"]
                .as_str()
                .is_some_and(|n| n.starts_with('r') && n.ends_with(".csv")),
            "{e}"
        );
        assert_eq!(e["metadata"], json!({"team": "ops"}));
    }
}

#[test]
fn bad_specs_are_refused_with_the_field() {
    let err = |spec: FileEventSource| {
        sluice_eventsource::build_kind(
            "es",
            &BTreeMap::from([("f".to_string(), spec)]),
            file::build,
            &SourceContext::new(
                Arc::new(FileSecretResolver::new("/nonexistent")),
                Arc::new(Recorder::default()),
            ),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    assert!(err(FileEventSource {
        event_type: "MODIFY".into(),
        ..Default::default()
    })
    .contains("eventType"));
    assert!(err(FileEventSource {
        event_type: "CREATE".into(),
        ..Default::default()
    })
    .contains("watchPathConfig is required"));
    let cfg = WatchPathConfig {
        directory: "/tmp/".into(),
        path: None,
        path_regexp: Some("(".into()),
    };
    assert!(err(FileEventSource {
        event_type: "CREATE".into(),
        watch_path_config: Some(cfg),
        ..Default::default()
    })
    .contains("pathRegexp"));
}
