//! The `sftp` source against a real OpenSSH sshd serving `internal-sftp` (`scripts/services.sh start
//! sftp`: `SFTP_ADDRESS`, `SFTP_USER`, `SFTP_KEY_FILE`, `SFTP_DIR`, `SFTP_SSHD`). Files are created
//! and removed over SFTP; events carry the `file` kind's data `{name, op, metadata}`; a restarted
//! sshd is reconnected to, and changes made while it was down are reported then.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_crds::common::SecretKeySelector;
use sluice_crds::eventsource::{SFTPEventSource, WatchPathConfig};
use sluice_eventsource::sources::sftp;
use sluice_eventsource::testing::{setting, Recorder};
use sluice_eventsource::{build_kind, FileSecretResolver, SourceContext};
use tokio_util::sync::CancellationToken;

/// A directory of this test's own under `SFTP_DIR`, writable by the SFTP user.
fn test_dir(tag: &str) -> PathBuf {
    let dir = Path::new(&setting("SFTP_DIR")).join(format!("{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// Secrets `sftp/{address,username,key}` for `address` in a temporary secrets directory, with the
/// user and key of `scripts/services.sh start sftp`.
fn secrets(address: &str) -> tempfile::TempDir {
    let key = std::fs::read_to_string(setting("SFTP_KEY_FILE")).expect("read SFTP_KEY_FILE");
    secrets_with(address, &setting("SFTP_USER"), &key)
}

/// Secrets `sftp/{address,username,key}` in a temporary secrets directory.
fn secrets_with(address: &str, username: &str, key: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = dir.path().join("sftp");
    std::fs::create_dir_all(&s).expect("mkdir");
    std::fs::write(s.join("address"), address).expect("write");
    std::fs::write(s.join("username"), format!("{username}\n")).expect("write");
    std::fs::write(s.join("key"), key).expect("write");
    dir
}

fn selector(key: &str) -> Option<SecretKeySelector> {
    Some(SecretKeySelector {
        name: "sftp".into(),
        key: key.into(),
        ..Default::default()
    })
}

fn spec(dir: &Path, event_type: &str, path: Option<&str>, re: Option<&str>) -> SFTPEventSource {
    SFTPEventSource {
        event_type: event_type.into(),
        watch_path_config: Some(WatchPathConfig {
            directory: format!("{}/", dir.display()),
            path: path.map(Into::into),
            path_regexp: re.map(Into::into),
        }),
        username: selector("username"),
        ssh_key_secret: selector("key"),
        address: selector("address"),
        metadata: Some(BTreeMap::from([("team".into(), "ops".into())])),
        poll_interval_duration: Some("200ms".into()),
        ..Default::default()
    }
}

/// An SFTP client of the test's own, to change files through the server as a user would.
struct Client {
    _ssh: russh::client::Handle<AnyHostKey>,
    sftp: russh_sftp::client::SftpSession,
}

struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

impl Client {
    async fn connect() -> Self {
        let key = russh::keys::load_secret_key(setting("SFTP_KEY_FILE"), None).expect("key");
        let mut ssh = russh::client::connect(Arc::default(), setting("SFTP_ADDRESS"), AnyHostKey)
            .await
            .expect("connect");
        let auth = ssh
            .authenticate_publickey(
                setting("SFTP_USER"),
                russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None),
            )
            .await
            .expect("authenticate");
        assert!(auth.success());
        let channel = ssh.channel_open_session().await.expect("session");
        channel.request_subsystem(true, "sftp").await.expect("subsystem");
        let sftp = russh_sftp::client::SftpSession::new(channel.into_stream())
            .await
            .expect("sftp");
        Self { _ssh: ssh, sftp }
    }

    /// Writes `path` under a temporary name and renames it into place, so a poll never sees it
    /// half-written (which would be a second `CREATE`, as upstream reports changed files).
    async fn create(&self, path: &Path, content: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let tmp = format!("{}.part", path.display());
        let mut file = self.sftp.create(tmp.as_str()).await.expect("create over sftp");
        file.write_all(content).await.expect("write over sftp");
        file.shutdown().await.expect("close over sftp");
        self.sftp
            .rename(tmp, path.display().to_string())
            .await
            .expect("rename over sftp");
    }
}

#[tokio::test]
#[ignore = "needs sshd: scripts/test starts it and runs ignored tests"]
async fn files_created_and_removed_over_sftp_are_events_after_the_baseline() {
    let dir = test_dir("crud");
    // Already there at start: the baseline, never reported.
    std::fs::write(dir.join("old.csv"), "a,b").expect("write");
    let secrets = secrets(&setting("SFTP_ADDRESS"));
    let recorder = Arc::new(Recorder::default());
    let ctx = SourceContext::new(
        Arc::new(FileSecretResolver::new(secrets.path())),
        recorder.clone(),
    );
    let events = BTreeMap::from([
        ("created".to_string(), spec(&dir, "CREATE", None, Some(r"\.csv$"))),
        ("removed".to_string(), spec(&dir, "REMOVE", Some("old.csv"), None)),
    ]);
    let built = build_kind("es", &events, sftp::build, &ctx).expect("build");
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for task in built.tasks {
        tasks.push(tokio::spawn(task.run(cancel.clone())));
    }
    // A source is ready once it listed the directory, so both have their baseline after this.
    for _ in 0..600 {
        if ctx.readiness.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ctx.readiness.is_ready(), "{:?}", ctx.readiness.unmet());

    let client = Client::connect().await;
    client.create(&dir.join("new.csv"), b"1,2").await;
    client.create(&dir.join("ignored.txt"), b"x").await;
    client
        .sftp
        .remove_file(dir.join("old.csv").display().to_string())
        .await
        .expect("remove over sftp");
    recorder.wait_sent(2).await;
    cancel.cancel();
    for t in tasks {
        t.await.expect("join").expect("run");
    }
    let mut data: Vec<String> = recorder.sent_data().iter().map(Value::to_string).collect();
    data.sort();
    let mut want = vec![
        json!({"name": "new.csv", "op": 1, "metadata": {"team": "ops"}}).to_string(),
        json!({"name": "old.csv", "op": 4, "metadata": {"team": "ops"}}).to_string(),
    ];
    want.sort();
    assert_eq!(data, want);
    assert!(recorder.sent().iter().all(|e| e.ty() == "sftp"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An sshd of the test's own (`SFTP_SSHD -d -p PORT`), killed with its process group on drop. `-d`
/// serves one connection without detaching it into a session of its own, so killing the group cuts
/// the source's connection as a server restart does.
struct Sshd(Child);

impl Sshd {
    fn start(port: u16) -> Self {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(setting("SFTP_SSHD"))
            .args(["-d", "-p", &port.to_string()])
            // Its own process group: sshd forks a child for the authenticated session, which a
            // kill of sshd alone would leave serving the connection.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd");
        // Not probed by connecting: `-d` serves exactly one connection. Its log says when it
        // listens; the thread drains the rest so sshd never blocks on a full pipe.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server listening") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("sshd did not listen on {port}"));
        Self(child)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs sshd: scripts/test starts it and runs ignored tests"]
async fn a_restarted_server_is_reconnected_to_and_changes_made_meanwhile_are_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let sshd = Sshd::start(port);
    let dir = test_dir("restart");
    let secrets = secrets(&format!("127.0.0.1:{port}"));
    let recorder = Arc::new(Recorder::default());
    let ctx = SourceContext::new(
        Arc::new(FileSecretResolver::new(secrets.path())),
        recorder.clone(),
    );
    let events = BTreeMap::from([("files".to_string(), spec(&dir, "CREATE", None, Some(".")))]);
    let built = build_kind("es", &events, sftp::build, &ctx).expect("build");
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for task in built.tasks {
        tasks.push(tokio::spawn(task.run(cancel.clone())));
    }
    // Ready once the baseline is listed; a file created after it is reported.
    for _ in 0..600 {
        if ctx.readiness.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(dir.join("first"), "x").expect("write");
    recorder.wait_sent(1).await;
    assert_eq!(
        recorder.sent_data(),
        [json!({"name": "first", "op": 1, "metadata": {"team": "ops"}})]
    );

    // sshd stops mid-stream: the source notices (readiness drops) and retries.
    drop(sshd);
    for _ in 0..600 {
        if !ctx.readiness.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ctx.readiness.unmet(), vec!["es/files"]);
    // Created while the server is down: reported after the reconnect (the baseline is kept).
    std::fs::write(dir.join("while-down"), "x").expect("write");
    let _sshd = Sshd::start(port);
    recorder.wait_sent(2).await;
    assert!(ctx.readiness.is_ready(), "{:?}", ctx.readiness.unmet());
    cancel.cancel();
    for t in tasks {
        t.await.expect("join").expect("run");
    }
    assert_eq!(
        recorder.sent_data()[1..],
        [json!({"name": "while-down", "op": 1, "metadata": {"team": "ops"}})]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_specs_are_refused_with_the_field() {
    // Every refusal here comes before the key is parsed (the last one is about the key, written
    // below), so no server's user or key is needed.
    let secrets = secrets_with("127.0.0.1:1", "nobody", "replaced below");
    let err = |spec: SFTPEventSource| {
        build_kind(
            "es",
            &BTreeMap::from([("s".to_string(), spec)]),
            sftp::build,
            &SourceContext::new(
                Arc::new(FileSecretResolver::new(secrets.path())),
                Arc::new(Recorder::default()),
            ),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let dir = Path::new("/in");
    assert!(err(spec(dir, "WRITE", Some("a"), None)).contains("eventType"));
    assert!(err(SFTPEventSource {
        address: None,
        ..spec(dir, "CREATE", Some("a"), None)
    })
    .contains("address is required"));
    assert!(err(SFTPEventSource {
        poll_interval_duration: Some("10".into()),
        ..spec(dir, "CREATE", Some("a"), None)
    })
    .contains("pollIntervalDuration"));
    std::fs::write(secrets.path().join("sftp/key"), "not a key").expect("write");
    let bad_key = err(spec(dir, "CREATE", Some("a"), None));
    assert!(bad_key.contains("sshKeySecret"), "{bad_key}");
    assert!(!bad_key.contains("not a key"), "{bad_key}");
}
