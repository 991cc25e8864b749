//! `file`: watches a directory of the EventSource's file system (inotify through the `notify`
//! crate, or polling with `polling: true` for file systems without notifications) and publishes an
//! event for each change of a watched path whose operation is `eventType`, with upstream's data
//! `{name, op, metadata}`: `op` is upstream's operation number (`CREATE` 1, `WRITE` 2, `REMOVE` 4,
//! `RENAME` 8, `CHMOD` 16); `name` is the full path with inotify and the file name when polling,
//! as upstream reports them.
//!
//! Delivery: at-most-once by nature: the kernel's notification cannot be acknowledged or replayed,
//! and changes while the process is down are not seen. A notification received is retried against
//! the bus with backoff until it is stored or the source stops. Notifications wait in a bounded
//! queue ([`QUEUE`]); when it is full the watcher thread waits, and the kernel's own queue absorbs
//! the rest (an overflow there is logged by `notify` as a rescan).
//!
//! A missing directory is retried with backoff (it may be a volume not mounted yet), not an error.

use crate::{BuiltEventSource, SourceContext};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::sender::build_event;
use async_trait::async_trait;
use notify::{PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use serde_json::json;
use sluice_crds::eventsource::FileEventSource;
use sluice_eventbus::Subject;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clients::files::{FileOp, PathMatch};
use crate::metrics::{EventLabels, SourceMetrics};
use crate::reconnect::Backoff;
use crate::sender::{publish, EventSender, Publisher, Retry, FIRST_BACKOFF};
use crate::{BuildError, PullSource, SourceError};
use sluice_eventbus::readiness::ReadyFlag;

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
    let (sender, metrics) = (&ctx.sender, &ctx.metrics);
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
        out.tasks.push(Box::new(FileSource {
            ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            directory: PathBuf::from(directory),
            path_match,
            op,
            polling: spec.polling,
            metadata: spec.metadata.clone(),
            sender: sender.clone(),
            metrics: metrics.clone(),
        }));
    }
    Ok(())
}

/// One `file` event: a watch on one directory.
pub struct FileSource {
    event_source: String,
    event_name: String,
    directory: PathBuf,
    path_match: PathMatch,
    op: FileOp,
    polling: bool,
    metadata: Option<BTreeMap<String, String>>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    /// Set while the directory is watched; cleared while the watch fails (e.g. no directory yet).
    ready: ReadyFlag,
}

/// Either watcher; kept alive while the source runs (dropping it stops the watch).
enum AnyWatcher {
    Notify(RecommendedWatcher),
    Poll(PollWatcher),
}

impl FileSource {
    fn watch(&self, tx: mpsc::Sender<notify::Result<notify::Event>>) -> notify::Result<AnyWatcher> {
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
        Ok(watcher)
    }

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

    /// Publishes until the bus stored the event; `false` when cancelled first.
    async fn publish(&self, name: String, labels: &EventLabels, cancel: &CancellationToken) -> bool {
        let data = json!({"name": name, "op": self.op.number(), "metadata": self.metadata});
        // Why `true` without an event (settled): see `build_event`; retrying cannot build it either.
        let Some(event) = build_event(SOURCE_TYPE, labels, data, &self.metrics) else {
            return true;
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        let publisher = Publisher {
            sender: &*self.sender,
            metrics: &self.metrics,
            labels,
            cancel,
        };
        // Why retry in hand (the helper's UntilStored): a file notification cannot be replayed.
        let retry = Retry::UntilStored { first: FIRST_BACKOFF };
        let outcome = publish(&publisher, &subject, &event, retry).await;
        debug!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), file = %name, ?outcome, "handled a file change");
        // Settled includes a rejected event (cannot happen for this small data, logged if it did);
        // not settled means cancelled.
        outcome.settled()
    }
}

#[async_trait]
impl PullSource for FileSource {
    fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let labels = EventLabels {
            eventsource_name: self.event_source.clone(),
            event_name: self.event_name.clone(),
        };
        let mut backoff = Backoff::default();
        'watch: loop {
            let (tx, mut rx) = mpsc::channel(QUEUE);
            let watcher = match self.watch(tx) {
                Ok(w) => w,
                Err(e) => {
                    self.ready.set(false);
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, directory = %self.directory.display(), error = %e, retry_in = ?backoff.wait(), "failed to watch the directory; retrying");
                    if !backoff.sleep(&cancel).await {
                        return Ok(());
                    }
                    continue 'watch;
                }
            };
            backoff.reset();
            self.ready.set(true);
            info!(eventsource = %self.event_source, event_name = %self.event_name, directory = %self.directory.display(), polling = self.polling, "watching the directory");
            loop {
                let notified = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => { drop(watcher); return Ok(()) }
                    n = rx.recv() => n,
                };
                let event = match notified {
                    Some(Ok(e)) => e,
                    Some(Err(e)) => {
                        self.ready.set(false);
                        warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "file watcher error; watching again");
                        continue 'watch;
                    }
                    None => continue 'watch,
                };
                if FileOp::of(&event.kind) != Some(self.op) {
                    continue;
                }
                for path in &event.paths {
                    if !self.path_match.matches(&self.directory, path) {
                        continue;
                    }
                    if !self.publish(self.name_of(path), &labels, &cancel).await {
                        return Ok(());
                    }
                }
            }
        }
    }
}
