//! The runtime side of the registry of source kinds. The kinds themselves are the closed enum
//! [`EventSourceKind`] in `crds`; [`is_runnable`] matches it exhaustively, so adding a kind fails to
//! compile here until this build says whether it can run it. Kinds not yet runnable are refused at
//! build time with a message naming the kind, never silently skipped.

pub mod bitbucket;
pub mod bitbucketserver;
pub mod calendar;
pub mod github;
pub mod gitlab;
pub mod kafka;
pub mod resource;
pub mod slack;
pub mod stripe;
pub mod webhook;

pub use sluice_crds::eventsource::EventSourceKind;

/// True when this build of Sluice can run the kind.
pub fn is_runnable(kind: EventSourceKind) -> bool {
    use EventSourceKind as K;
    match kind {
        K::Webhook
        | K::Github
        | K::Gitlab
        | K::Calendar
        | K::Slack
        | K::Stripe
        | K::BitbucketServer
        | K::Bitbucket
        | K::Resource
        | K::Kafka => true,
        K::Amqp
        | K::AzureEventsHub
        | K::AzureQueueStorage
        | K::AzureServiceBus
        | K::Emitter
        | K::File
        | K::Generic
        | K::Gerrit
        | K::Hdfs
        | K::Minio
        | K::Mns
        | K::Mqtt
        | K::Nats
        | K::Nsq
        | K::PubSub
        | K::Pulsar
        | K::Redis
        | K::RedisStream
        | K::Sftp
        | K::Sns
        | K::Sqs
        | K::StorageGrid => false,
    }
}
