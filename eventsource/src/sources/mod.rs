//! The runtime side of the registry of source kinds. The kinds themselves are the closed enum
//! [`EventSourceKind`] in `crds`; [`is_runnable`] matches it exhaustively, so adding a kind fails to
//! compile here until this build says whether it can run it. Kinds not yet runnable are refused at
//! build time with a message naming the kind, never silently skipped.

pub mod jetstream;
pub mod mqtt;
pub mod nats;
pub mod redis;
pub mod redis_stream;
pub mod resource;
pub mod webhook;

pub use sluice_crds::eventsource::EventSourceKind;

/// True when this build of Sluice can run the kind.
pub fn is_runnable(kind: EventSourceKind) -> bool {
    use EventSourceKind as K;
    match kind {
        K::Webhook | K::Resource => true,
        K::Jetstream | K::RedisStream | K::Mqtt | K::Nats | K::Redis => true,
        K::Amqp
        | K::AzureEventsHub
        | K::AzureQueueStorage
        | K::AzureServiceBus
        | K::Bitbucket
        | K::BitbucketServer
        | K::Calendar
        | K::Emitter
        | K::File
        | K::Generic
        | K::Gerrit
        | K::Github
        | K::Gitlab
        | K::Hdfs
        | K::Kafka
        | K::Minio
        | K::Mns
        | K::Nsq
        | K::PubSub
        | K::Pulsar
        | K::Sftp
        | K::Slack
        | K::Sns
        | K::Sqs
        | K::StorageGrid
        | K::Stripe => false,
    }
}
