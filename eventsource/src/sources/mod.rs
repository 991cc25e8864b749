//! The runtime side of the registry of source kinds. The kinds themselves are the table in `crds`
//! (`sluice_crds::event_source_kinds!`), which generates [`dispatch`] here; each kind's spec type
//! says through [`Registered`] whether this build runs it, so adding a kind fails to compile here
//! until that is said. Kinds not yet runnable are refused at build time with a message naming the
//! kind and the kinds that run, never silently skipped.

pub mod amqp;
pub mod bitbucket;
pub mod bitbucketserver;
pub mod calendar;
pub mod file;
pub mod github;
pub mod gitlab;
pub mod jetstream;
pub mod kafka;
pub mod minio;
pub mod mqtt;
pub mod nats;
pub mod redis;
pub mod redis_stream;
pub mod resource;
pub mod s3;
pub mod sftp;
pub mod slack;
pub mod sns;
pub mod sqs;
pub mod stripe;
pub mod webhook;
pub mod websocket;

pub use sluice_crds::eventsource::EventSourceKind;
use sluice_crds::eventsource::{EventSourceSpec, Events};

use crate::BuildFn;

/// What to do with one kind of an EventSource spec, given to [`dispatch`].
pub trait KindVisitor {
    /// What the visit returns.
    type Out;
    /// `kind` is runnable: `events` are its events and `build` its builder.
    fn runnable<T>(&mut self, kind: EventSourceKind, events: &Events<T>, build: BuildFn<T>) -> Self::Out;
    /// `kind` cannot run in this build.
    fn unsupported(&mut self, kind: EventSourceKind) -> Self::Out;
}

/// How this build runs the events of one kind. Implemented for every kind's spec type (each kind
/// has a type of its own) by [`runnable!`] or [`not_runnable!`] below; [`dispatch`], generated from
/// the kind table in `crds`, asks it, so a kind added to the table fails to compile here until
/// this build says whether it can run it.
#[diagnostic::on_unimplemented(
    message = "the source registry has no entry for `{Self}`",
    label = "this kind is neither run nor refused",
    note = "add `{Self} => <kind>::build` to `runnable!` in eventsource/src/sources/mod.rs, or `{Self}` to \
            `not_runnable!` there until it runs"
)]
pub trait Registered: Sized {
    /// The kind's builder; `None` when this build cannot run the kind.
    const BUILD: Option<BuildFn<Self>>;
}

/// Registers each spec type with the builder of its kind.
macro_rules! runnable {
    ($($ty:ident => $build:path),* $(,)?) => {
        $(
            impl Registered for sluice_crds::eventsource::$ty {
                const BUILD: Option<BuildFn<Self>> = Some($build);
            }
        )*
    };
}

/// Registers each spec type as a kind this build refuses.
macro_rules! not_runnable {
    ($($ty:ident),* $(,)?) => {
        $(
            impl Registered for sluice_crds::eventsource::$ty {
                const BUILD: Option<BuildFn<Self>> = None;
            }
        )*
    };
}

runnable! {
    AMQPEventSource => amqp::build,
    BitbucketEventSource => bitbucket::build,
    BitbucketServerEventSource => bitbucketserver::build,
    CalendarEventSource => calendar::build,
    FileEventSource => file::build,
    GithubEventSource => github::build,
    GitlabEventSource => gitlab::build,
    JetStreamEventSource => jetstream::build,
    KafkaEventSource => kafka::build,
    S3Artifact => minio::build,
    MQTTEventSource => mqtt::build,
    NATSEventsSource => nats::build,
    RedisEventSource => redis::build,
    RedisStreamEventSource => redis_stream::build,
    ResourceEventSource => resource::build,
    S3EventSource => s3::build,
    SFTPEventSource => sftp::build,
    SlackEventSource => slack::build,
    SNSEventSource => sns::build,
    SQSEventSource => sqs::build,
    StripeEventSource => stripe::build,
    WebhookEventSource => webhook::build,
    WebSocketEventSource => websocket::build,
}

not_runnable! {
    AzureEventsHubEventSource,
    AzureQueueStorageEventSource,
    AzureServiceBusEventSource,
    EmitterEventSource,
    GenericEventSource,
    GerritEventSource,
    HDFSEventSource,
    MNSEventSource,
    NSQEventSource,
    PubSubEventSource,
    PulsarEventSource,
    StorageGridEventSource,
}

fn visit<T: Registered, V: KindVisitor>(kind: EventSourceKind, events: &Events<T>, v: &mut V) -> V::Out {
    match T::BUILD {
        Some(build) => v.runnable(kind, events, build),
        None => v.unsupported(kind),
    }
}

/// Generates [`dispatch`] from the kind table: one arm per kind, handing its events to [`visit`].
macro_rules! define_dispatch {
    ($( $(#[$attr:meta])* $variant:ident($field:ident, $name:literal, $place:ident) ),* $(,)?) => {
        /// The registry: the one match from a kind to its events and builder, generated from the
        /// kind table in `crds`, so it covers every kind.
        pub fn dispatch<V: KindVisitor>(kind: EventSourceKind, spec: &EventSourceSpec, v: &mut V) -> V::Out {
            match kind {
                $(EventSourceKind::$variant => visit(kind, &spec.$field, v),)*
            }
        }
    };
}

sluice_crds::event_source_kinds!(define_dispatch);

/// True when this build of Sluice can run the kind (read off [`dispatch`], so never out of step).
pub fn is_runnable(kind: EventSourceKind) -> bool {
    struct Runnable;
    impl KindVisitor for Runnable {
        type Out = bool;
        fn runnable<T>(&mut self, _: EventSourceKind, _: &Events<T>, _: BuildFn<T>) -> bool {
            true
        }
        fn unsupported(&mut self, _: EventSourceKind) -> bool {
            false
        }
    }
    dispatch(kind, &EventSourceSpec::default(), &mut Runnable)
}

/// The `spec` names of the kinds this build runs, comma-separated, for messages.
pub fn runnable_names() -> String {
    EventSourceKind::ALL
        .into_iter()
        .filter(|k| is_runnable(*k))
        .map(EventSourceKind::field_name)
        .collect::<Vec<_>>()
        .join(", ")
}
