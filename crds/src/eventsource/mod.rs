//! The `EventSource` custom resource (`argoproj.io/v1alpha1`): one manifest declares any number of
//! named events, grouped by kind (`webhook`, `github`, `kafka`, `calendar`, …). Each event is
//! published on the bus under the subject `<eventSourceName>.<eventName>`, so event names are unique
//! across all kinds of one EventSource.
//!
//! Field names and types follow upstream Argo Events exactly, so upstream manifests parse
//! unchanged; offline checks live in [`validate`](self::validate).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod calendar;
mod cloud;
pub mod cron;
mod git;
mod kinds;
mod messaging;
mod resource;
mod s3;
mod saas;
mod storage;
mod streams;
mod template;
pub mod validate;
mod webhook;
mod websocket;

#[cfg(test)]
mod tests;

pub use crate::common::{Container, Template};
pub use calendar::{
    check_exclusion_date, parse_interval, parse_schedule, CalendarEventSource, CalendarSchedule,
    CatchupConfiguration, ConfigMapPersistence, EventPersistence, ParsedSpec, ScheduleError,
};
pub use cloud::{
    AzureEventsHubEventSource, AzureQueueStorageEventSource, AzureServiceBusEventSource, MNSEventSource,
    PubSubEventSource, SNSEventSource, SQSEventSource,
};
pub use git::{
    BitbucketAuth, BitbucketBasicAuth, BitbucketEventSource, BitbucketRepository, BitbucketServerEventSource,
    BitbucketServerRepository, GerritEventSource, GithubAppCreds, GithubEventSource, GitlabEventSource,
    OwnedRepositories,
};
pub use kinds::WebhookContextPlace;
pub use messaging::{
    AMQPConsumeConfig, AMQPEventSource, AMQPExchangeDeclareConfig, AMQPQueueBindConfig,
    AMQPQueueDeclareConfig, AWSMSKIAMConfig, GenericEventSource, KafkaConsumerGroup, KafkaEventSource,
    SchemaRegistryConfig,
};
pub use resource::{ResourceEventSource, ResourceFilter};
pub use s3::{S3EventSource, S3Mode, S3ObjectEvent};
pub use saas::{SlackEventSource, StripeEventSource};
pub use storage::{
    FileEventSource, HDFSEventSource, S3Artifact, S3Bucket, S3Filter, SFTPEventSource,
    StorageGridEventSource, StorageGridFilter, WatchPathConfig,
};
pub use streams::{
    EmitterEventSource, JetStreamEventSource, MQTTEventSource, NATSAuth, NATSEventsSource, NSQEventSource,
    PulsarEventSource, RedisEventSource, RedisStreamEventSource,
};
pub use template::Service;
pub use webhook::{EventSourceFilter, WebhookContext, WebhookEventSource};
pub use websocket::WebSocketEventSource;

/// Events of one kind, keyed by event name.
pub type Events<T> = Option<BTreeMap<String, T>>;

/// The desired state of an EventSource: the events to produce, and how to run the process that
/// produces them. Every kind is a map from event name to that event's settings.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "EventSource",
    namespaced,
    status = "EventSourceStatus",
    shortname = "es",
    plural = "eventsources",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct EventSourceSpec {
    /// The name of the EventBus events are published to. Default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bus_name: Option<String>,
    /// Settings for the EventSource pod (metadata, resources, volumes, scheduling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// A ClusterIP Service in front of the pod, needed for push sources to be reachable.
    /// Default: no Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    /// How many pods run this EventSource. Kinds that must not run twice at once elect a leader,
    /// so only one pod is active; push kinds serve from every pod. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// MinIO bucket notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minio: Events<S3Artifact>,
    /// Cron or interval ticks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Events<CalendarEventSource>,
    /// Local file system changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Events<FileEventSource>,
    /// Kubernetes object changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Events<ResourceEventSource>,
    /// Plain HTTP endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Events<WebhookEventSource>,
    /// AMQP (RabbitMQ) queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp: Events<AMQPEventSource>,
    /// Kafka topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Events<KafkaEventSource>,
    /// MQTT topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Events<MQTTEventSource>,
    /// NATS subjects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Events<NATSEventsSource>,
    /// NATS JetStream streams, read through a durable consumer (a Sluice extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Events<JetStreamEventSource>,
    /// AWS SNS topics (delivered over HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sns: Events<SNSEventSource>,
    /// AWS SQS queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqs: Events<SQSEventSource>,
    /// Google Cloud Pub/Sub subscriptions.
    #[serde(default, rename = "pubSub", skip_serializing_if = "Option::is_none")]
    pub pub_sub: Events<PubSubEventSource>,
    /// GitHub webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Events<GithubEventSource>,
    /// GitLab webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Events<GitlabEventSource>,
    /// HDFS directory changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdfs: Events<HDFSEventSource>,
    /// Slack app events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Events<SlackEventSource>,
    /// NetApp StorageGRID notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_grid: Events<StorageGridEventSource>,
    /// Azure Event Hubs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_events_hub: Events<AzureEventsHubEventSource>,
    /// Stripe webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe: Events<StripeEventSource>,
    /// Emitter channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitter: Events<EmitterEventSource>,
    /// Redis pub/sub channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Events<RedisEventSource>,
    /// NSQ topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nsq: Events<NSQEventSource>,
    /// Apache Pulsar topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulsar: Events<PulsarEventSource>,
    /// Events from user-provided gRPC servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Events<GenericEventSource>,
    /// Redis streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_stream: Events<RedisStreamEventSource>,
    /// Bitbucket Server webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitbucketserver: Events<BitbucketServerEventSource>,
    /// Bitbucket Cloud webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitbucket: Events<BitbucketEventSource>,
    /// Azure Service Bus queues and subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_service_bus: Events<AzureServiceBusEventSource>,
    /// Azure Storage queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_queue_storage: Events<AzureQueueStorageEventSource>,
    /// SFTP server file changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sftp: Events<SFTPEventSource>,
    /// Gerrit webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gerrit: Events<GerritEventSource>,
    /// Alibaba Cloud MNS queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mns: Events<MNSEventSource>,
    /// Object changes in a bucket of any S3-compatible store, from notifications on an SQS queue
    /// or by listing (Sluice extension; not in upstream Argo Events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Events<S3EventSource>,
    /// Messages read from a WebSocket server as a client (Sluice extension; not in upstream Argo
    /// Events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Events<WebSocketEventSource>,
}

/// The observed state of an EventSource: its conditions (`SourcesProvided`, `Deployed`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSourceStatus {
    /// Conditions sit at the top level of `status`, as upstream.
    #[serde(flatten)]
    pub status: crate::common::Status,
}

/// Generates, from the table [`event_source_kinds!`](crate::event_source_kinds):
/// [`EventSourceKind`] with `COUNT`, `ALL`, `field_name`, `from_field_name` and
/// `webhook_context_place`; [`EventSourceSpec::names_of`] and [`EventSourceSpec::webhook_contexts`];
/// and a compile-time check that every field of [`EventSourceSpec`] is either a kind with a row or
/// one of the four settings named here.
macro_rules! define_event_source_kinds {
    ($( $(#[$attr:meta])* $variant:ident($field:ident, $name:literal, $place:ident) ),* $(,)?) => {
        /// The kinds of event an EventSource can declare, named as the `spec` field that holds
        /// them. Generated from the table [`event_source_kinds!`](crate::event_source_kinds); add a
        /// kind there.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventSourceKind {
            $(
                #[doc = concat!("`spec.", $name, "`")]
                $(#[$attr])*
                $variant,
            )*
        }

        impl EventSourceKind {
            /// How many kinds there are.
            pub const COUNT: usize = [$(Self::$variant),*].len();

            /// Every kind, in the order of the `spec` field names.
            pub const ALL: [EventSourceKind; Self::COUNT] = [$(Self::$variant),*];

            /// The `spec` field holding this kind, e.g. `pubSub`, `bitbucketserver`.
            pub fn field_name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// The kind held by the `spec` field `name` (as written in YAML, e.g. `redisStream`);
            /// `None` for any other name.
            pub fn from_field_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// Where the kind's events keep their HTTP server settings;
            /// [`WebhookContextPlace::NotPush`] for kinds that receive no HTTP requests.
            pub fn webhook_context_place(self) -> WebhookContextPlace {
                match self {
                    $(Self::$variant => WebhookContextPlace::$place,)*
                }
            }
        }

        impl EventSourceSpec {
            /// The names of the events of `kind`.
            pub fn names_of(&self, kind: EventSourceKind) -> Box<dyn Iterator<Item = &str> + '_> {
                match kind {
                    $(EventSourceKind::$variant => Box::new(names(&self.$field)),)*
                }
            }

            /// Every HTTP server setting declared by push events, as `(kind, event name, context)`,
            /// kinds in [`EventSourceKind::ALL`] order. Events of push kinds without a `webhook`
            /// block are left out (validation reports them).
            pub fn webhook_contexts(&self) -> Vec<(EventSourceKind, &str, &WebhookContext)> {
                let mut out = Vec::new();
                $(push_contexts!($place, &mut out, EventSourceKind::$variant, &self.$field);)*
                out
            }
        }

        // Every field of the spec is a kind with a row in the table or one of the settings named
        // here: a field added without a row (or a row without a field) fails to compile.
        const _: fn(&EventSourceSpec) = |spec| {
            let EventSourceSpec {
                event_bus_name: _,
                template: _,
                service: _,
                replicas: _,
                $($field: _,)*
            } = spec;
        };
    };
}

/// Collects the webhook contexts of one kind's events, reached as its [`WebhookContextPlace`] says.
macro_rules! push_contexts {
    (NotPush, $out:expr, $kind:expr, $events:expr) => {};
    (UnderWebhook, $out:expr, $kind:expr, $events:expr) => {
        collect_contexts($out, $kind, $events, |e| e.webhook.as_ref())
    };
    (Inline, $out:expr, $kind:expr, $events:expr) => {
        collect_contexts($out, $kind, $events, |e| Some(&e.webhook_context))
    };
}

crate::event_source_kinds!(define_event_source_kinds);

fn collect_contexts<'a, T>(
    out: &mut Vec<(EventSourceKind, &'a str, &'a WebhookContext)>,
    kind: EventSourceKind,
    events: &'a Events<T>,
    get: impl Fn(&'a T) -> Option<&'a WebhookContext>,
) {
    for (name, ev) in events.iter().flatten() {
        if let Some(ctx) = get(ev) {
            out.push((kind, name.as_str(), ctx));
        }
    }
}

impl EventSourceKind {
    /// True for kinds that receive pushes over HTTP: they serve a [`WebhookContext`] and need a
    /// Service to be reachable. Read off the table's [`WebhookContextPlace`] column.
    pub fn is_push(self) -> bool {
        match self.webhook_context_place() {
            WebhookContextPlace::NotPush => false,
            WebhookContextPlace::UnderWebhook | WebhookContextPlace::Inline => true,
        }
    }

    /// True for kinds that must not run in two active pods at once: a second copy would read every
    /// message twice (a broker subscription without a shared consumer group), fire every tick twice
    /// (calendar) or report every change twice (file, resource, sftp and list watches). The
    /// controller runs EventSources with such events under leader election (`sluice eventsource
    /// --leader-elect`: only the Lease holder runs these events) and `validate` warns when one
    /// EventSource mixes them with kinds that may overlap. This is the one list; everything asks it.
    ///
    /// Upstream's list is `RecreateStrategyEventSources` (the kinds deployed with the `Recreate`
    /// strategy). It matches for every upstream kind. Sluice's extension kinds, which upstream does not
    /// have, are decided here: `websocket` runs once (every connected client receives every message,
    /// so a second pod would publish each one twice); `s3` runs once (its `list` mode diffs the bucket
    /// against a checkpoint, which two pods would both report and overwrite); `jetstream` may overlap
    /// (every pod pulls from the same durable consumer, so JetStream hands each message to one of them,
    /// as SQS does). The push kinds and the competing-consumer queues (`sqs`, `azureQueueStorage`,
    /// `mns`) may overlap, as upstream.
    pub fn needs_single_active(self) -> bool {
        match self {
            Self::Amqp
            | Self::AzureEventsHub
            | Self::AzureServiceBus
            | Self::Calendar
            | Self::Emitter
            | Self::File
            | Self::Generic
            | Self::Hdfs
            | Self::Kafka
            | Self::Minio
            | Self::Mqtt
            | Self::Nats
            | Self::Nsq
            | Self::PubSub
            | Self::Pulsar
            | Self::Redis
            | Self::RedisStream
            | Self::Resource
            | Self::Sftp => true,
            // Sluice extensions (see above).
            Self::S3 | Self::WebSocket => true,
            Self::Jetstream => false,
            // Competing consumers: the queue hands each message to one receiver.
            Self::AzureQueueStorage | Self::Mns | Self::Sqs => false,
            // Pushed over HTTP: each request reaches one pod.
            Self::Bitbucket
            | Self::BitbucketServer
            | Self::Gerrit
            | Self::Github
            | Self::Gitlab
            | Self::Slack
            | Self::Sns
            | Self::StorageGrid
            | Self::Stripe
            | Self::Webhook => false,
        }
    }
}

impl std::fmt::Display for EventSourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.field_name())
    }
}

fn names<T>(events: &Events<T>) -> impl Iterator<Item = &str> {
    events.iter().flat_map(|m| m.keys().map(String::as_str))
}

impl EventSourceSpec {
    /// Every declared event as `(kind, event name)`, kinds in [`EventSourceKind::ALL`] order and
    /// names sorted within a kind. An event name may appear under two kinds (an error that
    /// [`validate`](self::validate) reports).
    pub fn event_names(&self) -> Vec<(EventSourceKind, &str)> {
        let mut out = Vec::new();
        for kind in EventSourceKind::ALL {
            out.extend(self.names_of(kind).map(|n| (kind, n)));
        }
        out
    }
}
