//! Code several source kinds share (no kind imports a sibling kind; what two need lives here).
//!
//! - [`aws`]: the AWS signing client (sqs, s3, minio, sns);
//! - [`body`]: event bodies of broker messages;
//! - [`files`]: upstream's file operations and path matching (file, sftp);
//! - [`nats`]: NATS auth and connection (nats, jetstream);
//! - [`redis`]: the Redis client (redis, redisStream);
//! - [`s3_records`]: S3 notification records (s3, minio);
//! - [`sqs`]: the SQS poller (sqs, s3).
//!
//! Signature checks of push kinds live in [`crate::push::signature`].

pub mod aws;
pub mod body;
pub mod files;
pub mod nats;
pub mod redis;
pub mod s3_records;
pub mod sqs;
