//! `file`: watches a directory of the EventSource's file system (inotify through the `notify`
//! crate, or polling with `polling: true` for file systems without notifications) and publishes an
//! event for each change of a watched path whose operation is `eventType`, with upstream's data
//! `{name, op, metadata}`: `op` is upstream's operation number (`CREATE` 1, `WRITE` 2, `REMOVE` 4,
//! `RENAME` 8, `CHMOD` 16); `name` is the full path with inotify and the file name when polling,
//! as upstream reports them.
//!
//! On the pull skeleton ([`crate::pull`]): a session is one watcher and the queue it fills; each
//! notification is a message, and `decode` keeps the watched paths of the watched operation (zero
//! drafts for the rest).
//!
//! Delivery: at-most-once by nature: the kernel's notification cannot be acknowledged or replayed
//! (nothing to settle), and changes while the process is down are not seen. A notification
//! received is retried against the bus with backoff until it is stored or the source stops.
//! Notifications wait in a bounded queue ([`QUEUE`]); when it is full the watcher thread waits, and
//! the kernel's own queue absorbs the rest (an overflow there is logged by `notify` as a rescan).
//!
//! A missing directory is retried with backoff (it may be a volume not mounted yet), not an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use notify::{PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use serde_json::json;
use sluice_crds::eventsource::FileEventSource;
use tokio::sync::mpsc;

use crate::clients::files::{FileOp, PathMatch};
use crate::pull::{Draft, Malformed, Names, Pull, Upstream, UpstreamError};
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "file";
/// Notifications received but not yet published.
pub const QUEUE: usize = 256;
/// How often the polling watcher scans (upstream's interval).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Builds a pull source per `file` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, FileEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: es_name.into(),
            event: event_name.clone(),
            reason,
        };
        let op = FileOp::parse(&spec.event_type).ok_or_else(|| {
            invalid(format!(
                "eventType: `{}` is not one of CREATE, WRITE, REMOVE, RENAME, CHMOD",
                spec.event_type
            ))
        })?;
        let (directory, path_match) =
            PathMatch::from_config(spec.watch_path_config.as_ref()).map_err(invalid)?;
        let upstream = FileUpstream {
            directory: PathBuf::from(directory),
            path_match,
            op,
            polling: spec.polling,
            metadata: spec.metadata.clone(),
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// One `file` event: a watch on one directory.
pub struct FileUpstream {
    directory: PathBuf,
    path_match: PathMatch,
    op: FileOp,
    polling: bool,
    metadata: Option<BTreeMap<String, String>>,
}

/// Either watcher; kept alive while the source runs (dropping it stops the watch).
enum AnyWatcher {
    Notify(RecommendedWatcher),
    Poll(PollWatcher),
}

/// A watch on the directory and the notifications it queued.
pub struct Watch {
    /// Held for the watch to go on.
    _watcher: AnyWatcher,
    notifications: mpsc::Receiver<notify::Result<notify::Event>>,
}

impl FileUpstream {
    /// The `name` of upstream's event: the path with inotify, the file name when polling.
    fn name_of(&self, path: &Path) -> String {
        if self.polling {
            path.file_name()
                .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy())
                .into_owned()
        } else {
            path.to_string_lossy().into_owned()
        }
    }

    /// The events of one notification: its watched paths, when its operation is the watched one.
    pub fn drafts(&self, notification: &notify::Event) -> Vec<Draft> {
        if FileOp::of(&notification.kind) != Some(self.op) {
            return Vec::new();
        }
        notification
            .paths
            .iter()
            .filter(|path| self.path_match.matches(&self.directory, path))
            .map(|path| {
                Draft::new(
                    json!({"name": self.name_of(path), "op": self.op.number(), "metadata": self.metadata}),
                )
            })
            .collect()
    }
}

#[async_trait]
impl Upstream for FileUpstream {
    type Session = Watch;
    type Message = notify::Event;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry in hand: a file notification cannot be replayed.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    async fn connect(&self, names: &Names) -> Result<Watch, UpstreamError> {
        let (tx, notifications) = mpsc::channel(QUEUE);
        let handler = move |res: notify::Result<notify::Event>| {
            // Runs on the watcher's thread: waiting here is the backpressure.
            let _ = tx.blocking_send(res);
        };
        let mut watcher = if self.polling {
            AnyWatcher::Poll(PollWatcher::new(
                handler,
                notify::Config::default().with_poll_interval(POLL_INTERVAL),
            )?)
        } else {
            AnyWatcher::Notify(notify::recommended_watcher(handler)?)
        };
        match &mut watcher {
            AnyWatcher::Notify(w) => w.watch(&self.directory, RecursiveMode::NonRecursive)?,
            AnyWatcher::Poll(w) => w.watch(&self.directory, RecursiveMode::NonRecursive)?,
        }
        tracing::info!(eventsource = %names.event_source, event_name = %names.event_name, directory = %self.directory.display(), polling = self.polling, "watching the directory");
        Ok(Watch {
            _watcher: watcher,
            notifications,
        })
    }

    async fn next(&self, watch: &mut Watch) -> Result<Option<notify::Event>, UpstreamError> {
        // A watcher error (the directory went away, a rescan) ends the session: watched again.
        Ok(watch.notifications.recv().await.transpose()?)
    }

    fn decode(&self, notification: &notify::Event) -> Result<Vec<Draft>, Malformed> {
        Ok(self.drafts(notification))
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, EventKind, RemoveKind};
    use regex::Regex;

    use super::*;

    fn upstream(op: FileOp, polling: bool) -> FileUpstream {
        FileUpstream {
            directory: PathBuf::from("/data/in/"),
            path_match: PathMatch::Regexp(Regex::new(r"\.csv$").expect("a regex")),
            op,
            polling,
            metadata: Some(BTreeMap::from([("team".into(), "ops".into())])),
        }
    }

    fn notification(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut event = notify::Event::new(kind);
        for p in paths {
            event = event.add_path(PathBuf::from(p));
        }
        event
    }

    #[test]
    fn a_notification_becomes_an_event_per_watched_path_of_the_watched_operation() {
        let created = notification(
            EventKind::Create(CreateKind::File),
            &["/data/in/a.csv", "/data/in/a.txt", "/data/in/b.csv"],
        );
        let names: Vec<_> = upstream(FileOp::Create, false)
            .drafts(&created)
            .into_iter()
            .map(|d| d.data)
            .collect();
        assert_eq!(
            names,
            [
                json!({"name": "/data/in/a.csv", "op": 1, "metadata": {"team": "ops"}}),
                json!({"name": "/data/in/b.csv", "op": 1, "metadata": {"team": "ops"}}),
            ]
        );
        assert!(
            upstream(FileOp::Remove, false).drafts(&created).is_empty(),
            "another operation: no event"
        );
        let removed = notification(EventKind::Remove(RemoveKind::File), &["/data/in/x.csv"]);
        let drafts = upstream(FileOp::Remove, true).drafts(&removed);
        assert_eq!(drafts.len(), 1);
        assert_eq!(drafts[0].data["name"], "x.csv", "the file name when polling");
        assert_eq!(drafts[0].id, None, "no delivery id: a random event id");
    }
}
