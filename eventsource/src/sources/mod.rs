//! The runtime side of the registry of source kinds. The kinds themselves are the closed enum
//! [`EventSourceKind`] in `crds`; [`is_runnable`] matches it exhaustively, so adding a kind fails to
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
pub mod slack;
pub mod sqs;
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
        | K::Sqs
        | K::S3
        | K::Minio
        | K::Kafka => true,
        K::Jetstream | K::RedisStream | K::Mqtt | K::Nats | K::Redis | K::Amqp | K::File => true,
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
        | K::Sftp
        | K::Sns
        | K::StorageGrid => false,
    }
}
