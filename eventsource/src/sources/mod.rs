//! The runtime side of the registry of source kinds. The kinds themselves are the closed enum
//! [`EventSourceKind`] in `crds`; [`dispatch`] matches it exhaustively, so adding a kind fails to
//! compile here until this build says whether it can run it. Kinds not yet runnable are refused at
//! build time with a message naming the kind, never silently skipped.

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

/// The registry: the one exhaustive match from a kind to its events and builder. A kind added to
/// `crds` fails to compile here until this build runs it or refuses it.
pub fn dispatch<V: KindVisitor>(kind: EventSourceKind, spec: &EventSourceSpec, v: &mut V) -> V::Out {
    use EventSourceKind as K;
    match kind {
        K::Amqp => v.runnable(kind, &spec.amqp, amqp::build),
        K::Bitbucket => v.runnable(kind, &spec.bitbucket, bitbucket::build),
        K::BitbucketServer => v.runnable(kind, &spec.bitbucketserver, bitbucketserver::build),
        K::Calendar => v.runnable(kind, &spec.calendar, calendar::build),
        K::File => v.runnable(kind, &spec.file, file::build),
        K::Github => v.runnable(kind, &spec.github, github::build),
        K::Gitlab => v.runnable(kind, &spec.gitlab, gitlab::build),
        K::Jetstream => v.runnable(kind, &spec.jetstream, jetstream::build),
        K::Kafka => v.runnable(kind, &spec.kafka, kafka::build),
        K::Minio => v.runnable(kind, &spec.minio, minio::build),
        K::Mqtt => v.runnable(kind, &spec.mqtt, mqtt::build),
        K::Nats => v.runnable(kind, &spec.nats, nats::build),
        K::Redis => v.runnable(kind, &spec.redis, redis::build),
        K::RedisStream => v.runnable(kind, &spec.redis_stream, redis_stream::build),
        K::Resource => v.runnable(kind, &spec.resource, resource::build),
        K::S3 => v.runnable(kind, &spec.s3, s3::build),
        K::Sftp => v.runnable(kind, &spec.sftp, sftp::build),
        K::Slack => v.runnable(kind, &spec.slack, slack::build),
        K::Sns => v.runnable(kind, &spec.sns, sns::build),
        K::Sqs => v.runnable(kind, &spec.sqs, sqs::build),
        K::Stripe => v.runnable(kind, &spec.stripe, stripe::build),
        K::Webhook => v.runnable(kind, &spec.webhook, webhook::build),
        K::WebSocket => v.runnable(kind, &spec.websocket, websocket::build),
        K::AzureEventsHub
        | K::AzureQueueStorage
        | K::AzureServiceBus
        | K::Emitter
        | K::Generic
        | K::Gerrit
        | K::Hdfs
        | K::Mns
        | K::Nsq
        | K::PubSub
        | K::Pulsar
        | K::StorageGrid => v.unsupported(kind),
    }
}

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
