//! The table of source kinds: the one place a kind is declared. Every row names the kind's
//! [`EventSourceKind`](super::EventSourceKind) variant, its field of
//! [`EventSourceSpec`](super::EventSourceSpec) (the Rust ident and the `spec` name in YAML) and
//! where its events keep their HTTP server settings ([`WebhookContextPlace`]).
//!
//! [`event_source_kinds!`](crate::event_source_kinds) hands the rows to a macro of the caller's,
//! which generates from them what must list every kind: in this crate the enum, `ALL`, the field
//! names, `names_of`, `webhook_contexts`, a check that every spec field has a row, and the
//! per-kind validation calls; in `sluice-eventsource` the runtime `dispatch`. The spec type of a
//! kind is read off its field, and what a kind *does* (its validation rules, its builder) is a
//! trait implemented for that type, so a new row fails to compile until each of those is written.
//! `docs/adding-a-kind.md` walks through it.

/// Where the events of a kind keep their HTTP server settings (a
/// [`WebhookContext`](super::WebhookContext)): stated per kind in the table, so a new push kind
/// cannot be left out of the HTTP server, the Service ports or the route checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookContextPlace {
    /// Not a push kind: its events do not receive HTTP requests.
    NotPush,
    /// A push kind with the settings under the event's `webhook` field (GitHub, Slack, …).
    UnderWebhook,
    /// The `webhook` kind: the settings are the event's own fields (`port`, `endpoint`, …).
    Inline,
}

/// Calls `$callback! { rows }` with one row per source kind, in [`EventSourceKind::ALL`] order
/// (the `spec` field names, alphabetically):
///
/// ```text
/// $(#[doc = "…"])* Variant(field_ident, "specName", WebhookContextPlace)
/// ```
///
/// The `WebhookContextPlace` column is the bare variant name (`NotPush`, `UnderWebhook`, `Inline`).
/// Doc attributes on a row are added to the enum variant's documentation. To add a kind, add a row
/// here and follow the compiler's errors (`docs/adding-a-kind.md`).
///
/// [`EventSourceKind::ALL`]: crate::eventsource::EventSourceKind::ALL
#[macro_export]
macro_rules! event_source_kinds {
    ($callback:ident) => {
        $callback! {
            Amqp(amqp, "amqp", NotPush),
            AzureEventsHub(azure_events_hub, "azureEventsHub", NotPush),
            AzureQueueStorage(azure_queue_storage, "azureQueueStorage", NotPush),
            AzureServiceBus(azure_service_bus, "azureServiceBus", NotPush),
            Bitbucket(bitbucket, "bitbucket", UnderWebhook),
            BitbucketServer(bitbucketserver, "bitbucketserver", UnderWebhook),
            Calendar(calendar, "calendar", NotPush),
            Emitter(emitter, "emitter", NotPush),
            File(file, "file", NotPush),
            Generic(generic, "generic", NotPush),
            Gerrit(gerrit, "gerrit", UnderWebhook),
            Github(github, "github", UnderWebhook),
            Gitlab(gitlab, "gitlab", UnderWebhook),
            Hdfs(hdfs, "hdfs", NotPush),
            /// (a Sluice extension)
            Jetstream(jetstream, "jetstream", NotPush),
            Kafka(kafka, "kafka", NotPush),
            Minio(minio, "minio", NotPush),
            Mns(mns, "mns", NotPush),
            Mqtt(mqtt, "mqtt", NotPush),
            Nats(nats, "nats", NotPush),
            Nsq(nsq, "nsq", NotPush),
            PubSub(pub_sub, "pubSub", NotPush),
            Pulsar(pulsar, "pulsar", NotPush),
            Redis(redis, "redis", NotPush),
            RedisStream(redis_stream, "redisStream", NotPush),
            Resource(resource, "resource", NotPush),
            /// (a Sluice extension)
            S3(s3, "s3", NotPush),
            Sftp(sftp, "sftp", NotPush),
            Slack(slack, "slack", UnderWebhook),
            Sns(sns, "sns", UnderWebhook),
            Sqs(sqs, "sqs", NotPush),
            StorageGrid(storage_grid, "storageGrid", UnderWebhook),
            Stripe(stripe, "stripe", UnderWebhook),
            Webhook(webhook, "webhook", Inline),
            /// (a Sluice extension)
            WebSocket(websocket, "websocket", NotPush),
        }
    };
}
