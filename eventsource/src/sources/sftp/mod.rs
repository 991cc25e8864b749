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
//! On the pull skeleton ([`crate::pull`]): `connect` opens the connection and lists the directory
//! once (so ready means listed), `next` hands out the changes of the newest listing one by one and
//! lists again after `pollIntervalDuration` once they are all handed out; `decode` keeps the
//! watched operation and names (zero drafts for the rest); `close` ends the connection politely.
//! The baseline lives in the source, not the session, so a reconnect keeps it.
//!
//! Delivery: at-most-once by nature. A change is seen only by comparing listings, so changes
//! while the process is down are not reported (each start takes a new baseline), and a file
//! created and removed between two polls is never seen. A change that was seen is retried
//! against the bus with backoff until it is stored or the source stops; a listing becomes the
//! baseline only after every change it showed was handled, so none drops out of the comparison.
//! Nothing is settled upstream (a listing cannot be acknowledged). The event id is a random
//! UUID, as for the `file` kind: the server gives no delivery id.

mod poll;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use serde_json::json;
use sluice_crds::eventsource::SFTPEventSource;
use tracing::info;

pub use poll::{diff, Listing, Stat};

use crate::clients::files::{FileOp, PathMatch};
use crate::pull::{Draft, Malformed, Names, Pull, Upstream, UpstreamError};
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{resolve_secret, BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "sftp";
/// Upstream's default `pollIntervalDuration`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// How long connecting and authenticating may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean disconnect may take when a connection ends.
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
        let upstream = SftpUpstream {
            address,
            username,
            credential,
            directory: directory.to_owned(),
            path_match,
            op,
            interval,
            metadata: spec.metadata.clone(),
            baseline: Mutex::new(None),
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// One `sftp` event: a poller of one remote directory.
pub struct SftpUpstream {
    address: String,
    username: String,
    credential: Credential,
    directory: String,
    path_match: PathMatch,
    op: FileOp,
    interval: Duration,
    metadata: Option<BTreeMap<String, String>>,
    /// The last listing whose changes were all handled; `None` until the first listing. Here, not
    /// in the session, so a file created or removed while the connection was down is reported once
    /// it is back.
    baseline: Mutex<Option<Listing>>,
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

/// One connection's polling: the SSH connection with its SFTP session, and the changes of the
/// newest listing not yet handed out.
pub struct Poll {
    ssh: russh::client::Handle<HostKeyLogger>,
    sftp: SftpSession,
    pending: VecDeque<(FileOp, String)>,
    /// The newest listing; the baseline once every change in `pending` was handled.
    listed: Option<Listing>,
}

impl SftpUpstream {
    async fn open(&self, names: &Names) -> Result<Poll, SftpError> {
        let config = Arc::new(russh::client::Config {
            // A server that vanished without closing is noticed within about a minute.
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            ..Default::default()
        });
        let handler = HostKeyLogger {
            event_source: names.event_source.clone(),
            event_name: names.event_name.clone(),
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
        Ok(Poll {
            ssh,
            sftp,
            pending: VecDeque::new(),
            listed: None,
        })
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

    /// Queues the changes from the baseline to `listed`; `true` when `listed` is the very first
    /// listing, which becomes the baseline itself (files already there are not changes).
    fn compare(&self, poll: &mut Poll, listed: Listing) -> bool {
        let mut baseline = self.baseline.lock().unwrap_or_else(|e| e.into_inner());
        let Some(before) = baseline.as_ref() else {
            *baseline = Some(listed);
            return true;
        };
        poll.pending.extend(diff(before, &listed));
        poll.listed = Some(listed);
        false
    }

    /// The event of one change, when it is of the watched operation and name.
    pub fn draft(&self, op: FileOp, name: &str) -> Option<Draft> {
        (op == self.op && self.path_match.matches(Path::new(""), Path::new(name)))
            .then(|| Draft::new(json!({"name": name, "op": self.op.number(), "metadata": self.metadata})))
    }
}

#[async_trait]
impl Upstream for SftpUpstream {
    type Session = Poll;
    /// One change between two listings.
    type Message = (FileOp, String);

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry in hand: a change is seen once, by comparing listings; it cannot be asked for again.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    /// Connects and lists once, so the source is ready only once the directory can be listed.
    async fn connect(&self, names: &Names) -> Result<Poll, UpstreamError> {
        let mut poll = tokio::time::timeout(CONNECT_TIMEOUT, self.open(names))
            .await
            .map_err(|_| SftpError::ConnectTimeout {
                address: self.address.clone(),
            })??;
        let listed = self.list(&poll.sftp).await?;
        info!(eventsource = %names.event_source, event_name = %names.event_name, address = %self.address, directory = %self.directory, interval = ?self.interval, "connected to the sftp server");
        let files = listed.len();
        if self.compare(&mut poll, listed) {
            info!(eventsource = %names.event_source, event_name = %names.event_name, directory = %self.directory, files, "sftp baseline listed");
        }
        Ok(poll)
    }

    /// Cancel-safe: the queue and the baseline change only between awaits.
    async fn next(&self, poll: &mut Poll) -> Result<Option<(FileOp, String)>, UpstreamError> {
        loop {
            if let Some(change) = poll.pending.pop_front() {
                return Ok(Some(change));
            }
            // Every change of the last listing was handled (the skeleton asks for the next message
            // only after settling the previous one): it is the baseline now, and not before, so a
            // change is never dropped from the comparison.
            if let Some(listed) = poll.listed.take() {
                *self.baseline.lock().unwrap_or_else(|e| e.into_inner()) = Some(listed);
            }
            tokio::time::sleep(self.interval).await;
            let listed = self.list(&poll.sftp).await?;
            self.compare(poll, listed);
        }
    }

    fn decode(&self, (op, name): &(FileOp, String)) -> Result<Vec<Draft>, Malformed> {
        Ok(self.draft(*op, name).into_iter().collect())
    }

    fn locate(&self, (op, name): &(FileOp, String)) -> String {
        format!("{} {name}", op.name())
    }

    /// Closes the SFTP session and the SSH connection politely, within [`DISCONNECT_TIMEOUT`] (a
    /// server that is gone cannot answer).
    async fn close(&self, poll: Poll) {
        let bye = async {
            let _ = poll.sftp.close().await;
            let _ = poll
                .ssh
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        };
        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, bye).await;
    }
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;

    #[test]
    fn a_change_is_an_event_only_for_the_watched_operation_and_name() {
        let upstream = SftpUpstream {
            address: "127.0.0.1:22".into(),
            username: "u".into(),
            credential: Credential::Password("p".into()),
            directory: "/in".into(),
            path_match: PathMatch::Regexp(Regex::new(r"\.csv$").expect("a regex")),
            op: FileOp::Create,
            interval: DEFAULT_POLL_INTERVAL,
            metadata: Some(BTreeMap::from([("team".into(), "ops".into())])),
            baseline: Mutex::new(None),
        };
        let drafts = upstream
            .decode(&(FileOp::Create, "a.csv".into()))
            .expect("a change always decodes");
        assert_eq!(drafts.len(), 1);
        assert_eq!(
            drafts[0].data,
            json!({"name": "a.csv", "op": 1, "metadata": {"team": "ops"}})
        );
        assert_eq!(upstream.draft(FileOp::Remove, "a.csv"), None);
        assert_eq!(upstream.draft(FileOp::Create, "a.txt"), None);
    }
}
