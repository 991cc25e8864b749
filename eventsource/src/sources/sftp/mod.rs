//! `sftp`: polls a directory of an SFTP server every `pollIntervalDuration` (default 10 s) and
//! publishes an event for each change of a watched file whose operation is `eventType`, with the
//! `file` kind's data `{name, op, metadata}` (upstream's shape): `name` is the file name as the
//! server lists it, `op` upstream's operation number (`CREATE` 1, `REMOVE` 4).
//!
//! Polling, as upstream: the first listing is the baseline and emits nothing; after that a name
//! that appears, or whose size or modification time changed, is `CREATE`, and a name that vanished
//! is `REMOVE`. Subdirectories are not listed. `path` is compared with, and `pathRegexp` matched
//! (unanchored) against, the file name. Unlike upstream, the baseline survives a reconnect, so a
//! file created or removed while the connection was down is reported once it is back; and an
//! unparsable `pollIntervalDuration` is refused at start (upstream then polls in a busy loop).
//!
//! Connection: SSH (russh, pure Rust, ring crypto) with `username` and `sshKeySecret` (an
//! unencrypted OpenSSH or PEM private key) or `password`, all from Secrets, to `address`
//! (`host:port`, also a Secret). The server's host key is **not verified**: upstream has no field
//! for a known host key and accepts any key (its password path ignores the key; its key path
//! cannot parse one). Sluice logs the key's SHA-256 fingerprint on every connection, so a change
//! is visible. A failed connection or listing is retried after a backoff that doubles from 200 ms
//! to 30 s. The process's readiness flag `<eventSourceName>/<eventName>` is set once the directory
//! was listed and cleared while the connection is down, so `/readyz` names it.
//!
//! Delivery: at-most-once by nature. A change is seen only by comparing listings, so changes
//! while the process is down are not reported (each start takes a new baseline), and a file
//! created and removed between two polls is never seen. A change that was seen is retried
//! against the bus with backoff until it is stored or the source stops. The event id is a random
//! UUID, as for the `file` kind: the server gives no delivery id.

mod poll;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::sender::build_event;
use async_trait::async_trait;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use serde_json::json;
use sluice_crds::eventsource::SFTPEventSource;
use sluice_eventbus::Subject;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use poll::{diff, Listing, Stat};

use crate::clients::files::{FileOp, PathMatch};
use crate::metrics::{EventLabels, SourceMetrics};
use crate::reconnect::Backoff;
use crate::sender::EventSender;
use crate::{
    resolve_secret, BuildError, BuiltEventSource, PullSource, ReadyFlag, SourceContext, SourceError,
};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "sftp";
/// Upstream's default `pollIntervalDuration`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// How long connecting and authenticating may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean disconnect may take when the source stops.
const DISCONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// Why one connection to the SFTP server ended or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    /// TCP or the SSH handshake failed.
    #[error("failed to connect to the sftp server at {address}")]
    Connect {
        address: String,
        #[source]
        source: russh::Error,
    },
    /// Connecting took longer than [`CONNECT_TIMEOUT`].
    #[error("failed to connect to the sftp server at {address} within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout { address: String },
    /// The authentication exchange failed.
    #[error("failed to authenticate to the sftp server as {user}")]
    Authenticate {
        user: String,
        #[source]
        source: russh::Error,
    },
    /// The server refused the credentials.
    #[error("failed to authenticate to the sftp server as {user}: the server refused the credentials")]
    AuthenticationRefused { user: String },
    /// The session channel or the `sftp` subsystem could not be opened.
    #[error("failed to open the sftp subsystem")]
    OpenSubsystem(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Listing the watched directory failed.
    #[error("failed to list the directory {directory}")]
    ListDirectory {
        directory: String,
        #[source]
        source: russh_sftp::client::error::Error,
    },
}

/// How the source authenticates; resolved from Secrets at build time.
#[derive(Clone)]
enum Credential {
    Password(String),
    Key(Arc<PrivateKey>),
}

/// Builds a pull source per `sftp` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, SFTPEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    let secrets = ctx.secrets.as_ref();
    for (event_name, spec) in events {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: es_name.into(),
            event: event_name.clone(),
            reason,
        };
        let op = match FileOp::parse(&spec.event_type) {
            Some(op @ (FileOp::Create | FileOp::Remove)) => op,
            _ => {
                return Err(invalid(format!(
                    "eventType: `{}` is not CREATE or REMOVE (the operations polling can see)",
                    spec.event_type
                )))
            }
        };
        let (directory, path_match) =
            PathMatch::from_config(spec.watch_path_config.as_ref()).map_err(invalid)?;
        let interval = match spec.poll_interval_duration.as_deref() {
            None => DEFAULT_POLL_INTERVAL,
            Some(d) => match sluice_crds::duration::parse_go_duration(d) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => return Err(invalid("pollIntervalDuration must be longer than 0".into())),
                Err(e) => return Err(invalid(format!("pollIntervalDuration: {e}"))),
            },
        };
        let required = |selector: &Option<sluice_crds::common::SecretKeySelector>, field: &str| {
            selector
                .as_ref()
                .ok_or_else(|| invalid(format!("{field} is required")))
                .and_then(|s| resolve_secret(secrets, es_name, event_name, s))
        };
        let address = required(&spec.address, "address")?.trim().to_owned();
        let username = required(&spec.username, "username")?.trim().to_owned();
        let credential = match (&spec.ssh_key_secret, &spec.password) {
            (Some(key), _) => {
                let pem = resolve_secret(secrets, es_name, event_name, key)?;
                // The parser's message is not repeated: it could quote key material.
                let key = russh::keys::decode_secret_key(&pem, None).map_err(|_| {
                    invalid("sshKeySecret does not hold an unencrypted OpenSSH or PEM private key".into())
                })?;
                Credential::Key(Arc::new(key))
            }
            (None, Some(password)) => {
                Credential::Password(resolve_secret(secrets, es_name, event_name, password)?)
            }
            (None, None) => return Err(invalid("set password or sshKeySecret".into())),
        };
        out.tasks.push(Box::new(SftpSource {
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            address,
            username,
            credential,
            directory: directory.to_owned(),
            path_match,
            op,
            interval,
            metadata: spec.metadata.clone(),
            sender: ctx.sender.clone(),
            metrics: ctx.metrics.clone(),
            ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
        }));
    }
    Ok(())
}

/// One `sftp` event: a poller of one remote directory.
pub struct SftpSource {
    event_source: String,
    event_name: String,
    address: String,
    username: String,
    credential: Credential,
    directory: String,
    path_match: PathMatch,
    op: FileOp,
    interval: Duration,
    metadata: Option<BTreeMap<String, String>>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    ready: ReadyFlag,
}

/// Accepts the server's host key and logs its fingerprint (see the module docs for why).
struct HostKeyLogger {
    event_source: String,
    event_name: String,
    address: String,
}

impl russh::client::Handler for HostKeyLogger {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let fingerprint = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.fingerprint(HashAlg::Sha256),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().fingerprint(HashAlg::Sha256),
        };
        // Why accept: upstream has no known-host setting; the fingerprint is logged so an operator
        // can see which server answered and notice a change.
        info!(eventsource = %self.event_source, event_name = %self.event_name, address = %self.address, host_key = %fingerprint, "sftp server host key accepted without verification");
        Ok(true)
    }
}

/// An authenticated SSH connection with its SFTP session.
struct Connection {
    ssh: russh::client::Handle<HostKeyLogger>,
    sftp: SftpSession,
}

impl Connection {
    async fn close(self) {
        let _ = self.sftp.close().await;
        let _ = tokio::time::timeout(
            DISCONNECT_TIMEOUT,
            self.ssh.disconnect(russh::Disconnect::ByApplication, "", "en"),
        )
        .await;
    }
}

impl SftpSource {
    async fn connect(&self) -> Result<Connection, SftpError> {
        let config = Arc::new(russh::client::Config {
            // A server that vanished without closing is noticed within about a minute.
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            ..Default::default()
        });
        let handler = HostKeyLogger {
            event_source: self.event_source.clone(),
            event_name: self.event_name.clone(),
            address: self.address.clone(),
        };
        let mut ssh = russh::client::connect(config, self.address.as_str(), handler)
            .await
            .map_err(|source| SftpError::Connect {
                address: self.address.clone(),
                source,
            })?;
        let authenticated = match &self.credential {
            Credential::Password(password) => ssh.authenticate_password(&self.username, password).await,
            Credential::Key(key) => {
                let hash = if key.algorithm().is_rsa() {
                    ssh.best_supported_rsa_hash().await.ok().flatten().flatten()
                } else {
                    None
                };
                ssh.authenticate_publickey(&self.username, PrivateKeyWithHashAlg::new(key.clone(), hash))
                    .await
            }
        }
        .map_err(|source| SftpError::Authenticate {
            user: self.username.clone(),
            source,
        })?;
        if !authenticated.success() {
            return Err(SftpError::AuthenticationRefused {
                user: self.username.clone(),
            });
        }
        let channel = ssh
            .channel_open_session()
            .await
            .map_err(|e| SftpError::OpenSubsystem(Box::new(e)))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| SftpError::OpenSubsystem(Box::new(e)))?;
        let sftp = SftpSession::new(channel.into_stream())
            .await
            .map_err(|e| SftpError::OpenSubsystem(Box::new(e)))?;
        Ok(Connection { ssh, sftp })
    }

    /// The files (not directories) of the watched directory.
    async fn list(&self, sftp: &SftpSession) -> Result<Listing, SftpError> {
        let entries =
            sftp.read_dir(self.directory.as_str())
                .await
                .map_err(|source| SftpError::ListDirectory {
                    directory: self.directory.clone(),
                    source,
                })?;
        Ok(entries
            .filter(|e| !e.file_type().is_dir())
            .map(|e| {
                let meta = e.metadata();
                (
                    e.file_name(),
                    Stat {
                        size: meta.size,
                        mtime: meta.mtime,
                    },
                )
            })
            .collect())
    }

    /// Publishes the changes from `before` to `after` that this event watches; `false` when
    /// cancelled first.
    async fn publish_changes(
        &self,
        before: &Listing,
        after: &Listing,
        labels: &EventLabels,
        cancel: &CancellationToken,
    ) -> bool {
        for (op, name) in diff(before, after) {
            if op != self.op || !self.path_match.matches(Path::new(""), Path::new(&name)) {
                continue;
            }
            debug!(eventsource = %self.event_source, event_name = %self.event_name, file = %name, op = op.name(), "sftp change");
            if !self.publish(&name, labels, cancel).await {
                return false;
            }
        }
        true
    }

    /// Publishes until the bus stored the event; `false` when cancelled first.
    async fn publish(&self, name: &str, labels: &EventLabels, cancel: &CancellationToken) -> bool {
        let data = json!({"name": name, "op": self.op.number(), "metadata": self.metadata});
        // Why `true` without an event (settled): see `build_event`; retrying cannot build it either.
        let Some(event) = build_event(SOURCE_TYPE, labels, data, &self.metrics) else {
            return true;
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        crate::sender::publish_until_stored(&*self.sender, &subject, &event, &self.metrics, labels, cancel)
            .await
    }

    /// Polls over one connection until it fails (`Err`) or the source is cancelled (`Ok`).
    async fn poll(
        &self,
        sftp: &SftpSession,
        baseline: &mut Option<Listing>,
        labels: &EventLabels,
        cancel: &CancellationToken,
    ) -> Result<(), SftpError> {
        loop {
            let listed = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                l = self.list(sftp) => l?,
            };
            match baseline.as_ref() {
                // The first listing is the baseline: files already there are not changes.
                None => {
                    info!(eventsource = %self.event_source, event_name = %self.event_name, directory = %self.directory, files = listed.len(), "sftp baseline listed");
                }
                Some(before) => {
                    if !self.publish_changes(before, &listed, labels, cancel).await {
                        return Ok(());
                    }
                }
            }
            // Only after every change was published (or the source stopped above), so a change
            // is never dropped from the comparison.
            *baseline = Some(listed);
            // Ready means the directory can be listed (and so the baseline exists).
            self.ready.set(true);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

#[async_trait]
impl PullSource for SftpSource {
    fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let labels = EventLabels {
            eventsource_name: self.event_source.clone(),
            event_name: self.event_name.clone(),
        };
        let mut baseline: Option<Listing> = None;
        let mut backoff = Backoff::default();
        loop {
            let connected = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                c = tokio::time::timeout(CONNECT_TIMEOUT, self.connect()) => c.unwrap_or_else(|_| Err(SftpError::ConnectTimeout { address: self.address.clone() })),
            };
            let failure = match connected {
                Ok(connection) => {
                    info!(eventsource = %self.event_source, event_name = %self.event_name, address = %self.address, directory = %self.directory, interval = ?self.interval, "connected to the sftp server");
                    backoff.reset();
                    let polled = self.poll(&connection.sftp, &mut baseline, &labels, &cancel).await;
                    self.ready.set(false);
                    connection.close().await;
                    match polled {
                        Ok(()) => return Ok(()),
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %failure, cause = ?std::error::Error::source(&failure).map(ToString::to_string), retry_in = ?backoff.wait(), "sftp polling failed; reconnecting");
            if !backoff.sleep(&cancel).await {
                return Ok(());
            }
        }
    }
}
