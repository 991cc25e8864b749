//! Errors of the JetStream backend. Messages name the failed action and never carry secrets: URLs
//! are shown without their user info, credentials never appear.

use std::path::PathBuf;

use async_nats::jetstream;

/// Why [`JetStreamBus::connect`](super::JetStreamBus::connect) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A setting cannot be used; fix the configuration.
    #[error("failed to connect: `{field}` {reason}")]
    InvalidConfig {
        /// The field of [`JetStreamConfig`](super::JetStreamConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The credentials file could not be read.
    #[error("failed to read the NATS credentials file {path}")]
    ReadCredentials {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// No server of `url` could be reached, or it refused us (auth, TLS).
    #[error("failed to connect to the NATS server {url}")]
    ConnectServer {
        /// The server URL(s), comma-separated, without user info.
        url: String,
        /// The client's error.
        source: async_nats::ConnectError,
    },
    /// The stream did not exist and could not be created (or JetStream is not enabled).
    #[error("failed to get or create the JetStream stream `{stream}`")]
    CreateStream {
        /// The stream's name.
        stream: String,
        /// The client's error.
        source: jetstream::context::CreateStreamError,
    },
}

impl ConnectError {
    /// True when retrying the same configuration later may succeed (the server was unreachable or
    /// not ready); false for configuration mistakes.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::InvalidConfig { .. } | Self::ReadCredentials { .. } => false,
            Self::ConnectServer { source, .. } => matches!(
                source.kind(),
                async_nats::ConnectErrorKind::Io
                    | async_nats::ConnectErrorKind::TimedOut
                    | async_nats::ConnectErrorKind::Dns
                    | async_nats::ConnectErrorKind::MaxReconnects
            ),
            Self::CreateStream { source, .. } => match source.kind() {
                jetstream::context::CreateStreamErrorKind::JetStreamUnavailable
                | jetstream::context::CreateStreamErrorKind::TimedOut
                | jetstream::context::CreateStreamErrorKind::Response => true,
                // 5xx: JetStream not ready (still recovering, no leader yet); 4xx: a conflict
                // such as overlapping subjects, which waiting does not fix.
                jetstream::context::CreateStreamErrorKind::JetStream(err) => err.code() >= 500,
                _ => false,
            },
        }
    }
}

/// Failures of the JetStream backend carried in the `Backend` variants of the bus errors
/// ([`PublishError`](crate::PublishError), [`SubscribeError`](crate::SubscribeError),
/// [`AckError`](crate::AckError)).
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    /// The server refused to store an event (too large, stream limits with discard-new, …).
    #[error("failed to publish on subject `{subject}`")]
    Publish {
        /// The NATS subject.
        subject: String,
        /// The client's error.
        source: jetstream::context::PublishError,
    },
    /// The durable consumer could not be looked up or created.
    #[error("failed to get or create the durable consumer `{durable}` on stream `{stream}`")]
    CreateConsumer {
        /// The stream's name.
        stream: String,
        /// The consumer's name (sanitized).
        durable: String,
        /// The client's error.
        source: jetstream::stream::ConsumerError,
    },
    /// `subscribe` was given options the bus cannot honour.
    #[error("failed to create durable `{durable}`: {reason}")]
    CreateDurable {
        /// The durable's name as requested.
        durable: String,
        /// What is wrong with the options.
        reason: &'static str,
    },
    /// `subscribe` named an existing durable that filters another subject.
    #[error("failed to join durable `{durable}`: it filters `{existing}`, not `{requested}`")]
    JoinDurable {
        /// The consumer's name (sanitized).
        durable: String,
        /// The existing consumer's filter subject(s).
        existing: String,
        /// The filter subject asked for.
        requested: String,
    },
    /// The pull subscription on a durable could not be started.
    #[error("failed to start pulling from durable `{durable}`")]
    StartPull {
        /// The consumer's name (sanitized).
        durable: String,
        /// The client's error.
        source: jetstream::consumer::StreamError,
    },
    /// An ack, nak or term was not sent, or (with confirmed acks) not confirmed by the server.
    #[error("failed to {action} stream sequence {stream_sequence} on durable `{durable}`")]
    Settle {
        /// `ack`, `nak`, `term` or `progress`.
        action: &'static str,
        /// The consumer's name (sanitized).
        durable: String,
        /// The event's position in the stream.
        stream_sequence: u64,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `err` and its sources, `: `-separated, for log lines (our messages do not repeat their
/// source's text, so a log line needs the chain).
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        let next_text = next.to_string();
        // async-nats errors print their source themselves.
        if !text.ends_with(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        source = next.source();
    }
    text
}
