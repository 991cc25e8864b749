//! The registry of source kinds: a closed enum with one arm per upstream kind, so adding a kind fails to
//! compile until every place that must handle it does. Kinds not yet runnable are refused at build time
//! with a message naming the kind, never silently skipped.

pub mod webhook;

use sluice_crds::eventsource::EventSourceSpec;

/// Every EventSource kind of upstream v1alpha1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    Amqp,
    AzureEventsHub,
    AzureQueueStorage,
    AzureServiceBus,
    Bitbucket,
    BitbucketServer,
    Calendar,
    Emitter,
    File,
    Generic,
    Gerrit,
    Github,
    Gitlab,
    Hdfs,
    Kafka,
    Minio,
    Mns,
    Mqtt,
    Nats,
    Nsq,
    PubSub,
    Pulsar,
    Redis,
    RedisStream,
    Resource,
    Sftp,
    Slack,
    Sns,
    Sqs,
    StorageGrid,
    Stripe,
    Webhook,
}

impl SourceKind {
    /// The field name in the spec, which is also the CloudEvent `type` (upstream's EventSourceType).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Amqp => "amqp",
            SourceKind::AzureEventsHub => "azureEventsHub",
            SourceKind::AzureQueueStorage => "azureQueueStorage",
            SourceKind::AzureServiceBus => "azureServiceBus",
            SourceKind::Bitbucket => "bitbucket",
            SourceKind::BitbucketServer => "bitbucketserver",
            SourceKind::Calendar => "calendar",
            SourceKind::Emitter => "emitter",
            SourceKind::File => "file",
            SourceKind::Generic => "generic",
            SourceKind::Gerrit => "gerrit",
            SourceKind::Github => "github",
            SourceKind::Gitlab => "gitlab",
            SourceKind::Hdfs => "hdfs",
            SourceKind::Kafka => "kafka",
            SourceKind::Minio => "minio",
            SourceKind::Mns => "mns",
            SourceKind::Mqtt => "mqtt",
            SourceKind::Nats => "nats",
            SourceKind::Nsq => "nsq",
            SourceKind::PubSub => "pubSub",
            SourceKind::Pulsar => "pulsar",
            SourceKind::Redis => "redis",
            SourceKind::RedisStream => "redisStream",
            SourceKind::Resource => "resource",
            SourceKind::Sftp => "sftp",
            SourceKind::Slack => "slack",
            SourceKind::Sns => "sns",
            SourceKind::Sqs => "sqs",
            SourceKind::StorageGrid => "storageGrid",
            SourceKind::Stripe => "stripe",
            SourceKind::Webhook => "webhook",
        }
    }

    /// True when this build of Sluice can run the kind.
    pub fn is_runnable(self) -> bool {
        match self {
            SourceKind::Webhook => true,
            SourceKind::Amqp
            | SourceKind::AzureEventsHub
            | SourceKind::AzureQueueStorage
            | SourceKind::AzureServiceBus
            | SourceKind::Bitbucket
            | SourceKind::BitbucketServer
            | SourceKind::Calendar
            | SourceKind::Emitter
            | SourceKind::File
            | SourceKind::Generic
            | SourceKind::Gerrit
            | SourceKind::Github
            | SourceKind::Gitlab
            | SourceKind::Hdfs
            | SourceKind::Kafka
            | SourceKind::Minio
            | SourceKind::Mns
            | SourceKind::Mqtt
            | SourceKind::Nats
            | SourceKind::Nsq
            | SourceKind::PubSub
            | SourceKind::Pulsar
            | SourceKind::Redis
            | SourceKind::RedisStream
            | SourceKind::Resource
            | SourceKind::Sftp
            | SourceKind::Slack
            | SourceKind::Sns
            | SourceKind::Sqs
            | SourceKind::StorageGrid
            | SourceKind::Stripe => false,
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The (kind, event name) pairs an EventSource spec defines, in spec order of kinds.
pub fn events_of(spec: &EventSourceSpec) -> Vec<(SourceKind, String)> {
    fn names<T>(
        kind: SourceKind,
        m: &Option<std::collections::BTreeMap<String, T>>,
    ) -> Vec<(SourceKind, String)> {
        m.iter()
            .flat_map(|m| m.keys().map(move |k| (kind, k.clone())))
            .collect()
    }
    let mut out = Vec::new();
    out.extend(names(SourceKind::Amqp, &spec.amqp));
    out.extend(names(SourceKind::AzureEventsHub, &spec.azure_events_hub));
    out.extend(names(SourceKind::AzureQueueStorage, &spec.azure_queue_storage));
    out.extend(names(SourceKind::AzureServiceBus, &spec.azure_service_bus));
    out.extend(names(SourceKind::Bitbucket, &spec.bitbucket));
    out.extend(names(SourceKind::BitbucketServer, &spec.bitbucketserver));
    out.extend(names(SourceKind::Calendar, &spec.calendar));
    out.extend(names(SourceKind::Emitter, &spec.emitter));
    out.extend(names(SourceKind::File, &spec.file));
    out.extend(names(SourceKind::Generic, &spec.generic));
    out.extend(names(SourceKind::Gerrit, &spec.gerrit));
    out.extend(names(SourceKind::Github, &spec.github));
    out.extend(names(SourceKind::Gitlab, &spec.gitlab));
    out.extend(names(SourceKind::Hdfs, &spec.hdfs));
    out.extend(names(SourceKind::Kafka, &spec.kafka));
    out.extend(names(SourceKind::Minio, &spec.minio));
    out.extend(names(SourceKind::Mns, &spec.mns));
    out.extend(names(SourceKind::Mqtt, &spec.mqtt));
    out.extend(names(SourceKind::Nats, &spec.nats));
    out.extend(names(SourceKind::Nsq, &spec.nsq));
    out.extend(names(SourceKind::PubSub, &spec.pub_sub));
    out.extend(names(SourceKind::Pulsar, &spec.pulsar));
    out.extend(names(SourceKind::Redis, &spec.redis));
    out.extend(names(SourceKind::RedisStream, &spec.redis_stream));
    out.extend(names(SourceKind::Resource, &spec.resource));
    out.extend(names(SourceKind::Sftp, &spec.sftp));
    out.extend(names(SourceKind::Slack, &spec.slack));
    out.extend(names(SourceKind::Sns, &spec.sns));
    out.extend(names(SourceKind::Sqs, &spec.sqs));
    out.extend(names(SourceKind::StorageGrid, &spec.storage_grid));
    out.extend(names(SourceKind::Stripe, &spec.stripe));
    out.extend(names(SourceKind::Webhook, &spec.webhook));
    out
}
