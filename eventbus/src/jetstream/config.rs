//! Settings of a [`JetStreamBus`](super::JetStreamBus): plain values, secrets already resolved.
//! [`JetStreamConfig::from_exotic`] builds one from an EventBus manifest.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::redact::redact_url;

/// The stream name when none is given, as upstream Argo Events.
pub const DEFAULT_STREAM: &str = "default";
/// Default of [`JetStreamConfig::publish_timeout`] (async-nats's own ack wait).
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`JetStreamConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`JetStreamConfig::max_publishes_in_flight`].
pub const DEFAULT_MAX_PUBLISHES_IN_FLIGHT: usize = 4096;
/// Default of [`JetStreamConfig::pull_batch`].
pub const DEFAULT_PULL_BATCH: usize = 64;
/// Default of [`StreamSettings::duplicate_window`] (JetStream's default).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Default of [`StreamSettings::max_age`] (upstream's 72h).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(72 * 3600);
/// Default of [`StreamSettings::max_msgs`] (upstream's 1,000,000).
pub const DEFAULT_MAX_MSGS: u64 = 1_000_000;
/// Default of [`StreamSettings::max_bytes`] (upstream's 1GB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// How to reach and use a NATS JetStream server. `Debug` hides credentials (URL user info, auth
/// values), so a config can be logged.
#[derive(Clone)]
pub struct JetStreamConfig {
    /// Server URLs, e.g. `nats://127.0.0.1:4222`; the client fails over between them and learns
    /// the rest of a cluster from the server. At least one.
    pub urls: Vec<String>,
    /// The stream's name: letters, digits, `-` and `_`. Default `default`. Subjects are
    /// `<stream>.<eventSourceName>.<eventName>`.
    pub stream: String,
    /// How the client authenticates. Default none.
    pub auth: JetStreamAuth,
    /// TLS settings; `None` for plain TCP (unless the server requires TLS).
    pub tls: Option<JetStreamTls>,
    /// Limits of the stream, used when it is created (an existing stream keeps its settings).
    pub stream_settings: StreamSettings,
    /// How long one `publish` may take in all: waiting for a free in-flight slot, sending, and
    /// the server's ack. Default 5 s.
    pub publish_timeout: Duration,
    /// Bound on JetStream API requests (stream and consumer lookups) and on confirmed acks.
    /// Default 10 s.
    pub request_timeout: Duration,
    /// Most publishes waiting for their ack at once; further callers wait for a slot (within
    /// `publish_timeout`, else [`PublishError::Unavailable`](crate::PublishError::Unavailable)).
    /// Default 4096.
    pub max_publishes_in_flight: usize,
    /// Most messages one subscription asks the server for at a time (capped by the durable's
    /// `max_ack_pending`). Pulled messages are delivered — their ack wait runs — before the
    /// subscriber takes them, so keep `pull_batch × time per event` below `ack_wait`. Smaller
    /// spreads events more evenly over the replicas sharing a durable. Default 64.
    pub pull_batch: usize,
    /// Wait for the server to confirm each ack, nak and term (a request/reply, "double ack"), so
    /// `Delivery::ack` returning `Ok` means the server has it. False (the default): fire and
    /// forget, on the connection's write buffer, flushed with the next batch — a lost ack means a
    /// redelivery after `ack_wait`, which consumers handle (firing ids are idempotency keys), and
    /// it saves the server a reply and the client a wake-up per event (the end-to-end benchmark
    /// measured the difference). `Delivery::ack_confirmed` always waits, whatever this says.
    pub confirm_acks: bool,
    /// The connection name shown by the server (`nats server report connections`). Default
    /// `sluice`.
    pub connection_name: String,
}

impl fmt::Debug for JetStreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact_url(url)).collect();
        f.debug_struct("JetStreamConfig")
            .field("urls", &urls)
            .field("stream", &self.stream)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("stream_settings", &self.stream_settings)
            .field("publish_timeout", &self.publish_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_publishes_in_flight", &self.max_publishes_in_flight)
            .field("pull_batch", &self.pull_batch)
            .field("confirm_acks", &self.confirm_acks)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

impl JetStreamConfig {
    /// Defaults for a server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            stream: DEFAULT_STREAM.to_owned(),
            auth: JetStreamAuth::None,
            tls: None,
            stream_settings: StreamSettings::default(),
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_publishes_in_flight: DEFAULT_MAX_PUBLISHES_IN_FLIGHT,
            pull_batch: DEFAULT_PULL_BATCH,
            confirm_acks: false,
            connection_name: "sluice".to_owned(),
        }
    }

    /// The same settings on stream `stream`.
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }
}

/// Client authentication. Values are resolved (not references) and never logged: `Debug` shows
/// only which kind is used.
#[derive(Clone, Default)]
pub enum JetStreamAuth {
    /// No authentication.
    #[default]
    None,
    /// A token (`authorization { token: … }` on the server).
    Token(String),
    /// A user name and password.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// An NKey seed (`SU…`).
    NKeySeed(String),
    /// A `.creds` file (JWT and NKey seed), read when connecting.
    CredsFile(PathBuf),
}

impl fmt::Debug for JetStreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret values: configs are logged at startup.
        match self {
            Self::None => f.write_str("None"),
            Self::Token(_) => f.write_str("Token(***)"),
            Self::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"***")
                .finish(),
            Self::NKeySeed(_) => f.write_str("NKeySeed(***)"),
            Self::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
        }
    }
}

/// TLS settings; files are PEM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JetStreamTls {
    /// CA certificate(s) to verify the server with, in addition to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS (with `client_key_file`).
    pub client_cert_file: Option<PathBuf>,
    /// Client private key for mutual TLS (with `client_cert_file`).
    pub client_key_file: Option<PathBuf>,
    /// Refuse to connect without TLS even when no file is given (system roots).
    pub tls_required: bool,
}

/// Limits of the stream, applied when Sluice creates it. The stream always uses file storage, the
/// limits retention policy and discard-old: an event stays until it is older than `max_age` or
/// pushed out by `max_msgs` / `max_bytes`, whether or not every durable has acked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// How long an event is kept; `None` for ever. Default 72 h.
    pub max_age: Option<Duration>,
    /// Most bytes kept; `None` unlimited. Default 1 GiB.
    pub max_bytes: Option<u64>,
    /// Most events kept; `None` unlimited. Default 1,000,000.
    pub max_msgs: Option<u64>,
    /// Copies in a cluster (1, 3 or 5). Default 1.
    pub replicas: usize,
    /// How long an event id is remembered for deduplication (`Nats-Msg-Id`). Default 2 min.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_age: Some(DEFAULT_MAX_AGE),
            max_bytes: Some(DEFAULT_MAX_BYTES),
            max_msgs: Some(DEFAULT_MAX_MSGS),
            replicas: 1,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!(
            "{:?} {:?} {:?}",
            JetStreamAuth::Token("tok-secret".into()),
            JetStreamAuth::UserPassword {
                user: "alice".into(),
                password: "pw-secret".into()
            },
            JetStreamAuth::NKeySeed("SUseed-secret".into()),
        );
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
        let config = JetStreamConfig::new("nats://bob:pw-secret@nats:4222");
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("nats://***@nats:4222"), "{shown}");
    }
}
