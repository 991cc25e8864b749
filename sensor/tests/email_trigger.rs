//! The `email` trigger against a real SMTP server: Python's aiosmtpd (installed by
//! `scripts/services.sh start smtp`, which prints `SMTP_PYTHON`), one server per test with its own
//! port, credentials and mailbox file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use sluice_crds::sensor::Trigger as TriggerSpec;
use sluice_eventbus::EventBuilder;
use sluice_sensor::secrets::MapSecretResolver;
use sluice_sensor::triggers::{BuildContext, BuiltTrigger};
use sluice_sensor::{ErrorKind, Firing, FiringId, Outcome, Trigger as _};

/// Accepts mail for anyone except `…@reject.test` (550) and `…@busy.test` (451); requires
/// AUTH with the given user and password (over plain text, as a test server may); appends each
/// message to the mailbox file as a JSON line.
const SERVER: &str = r#"
import json, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
port, out, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Handler:
    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.endswith("@reject.test"):
            return "550 no such user here"
        if address.endswith("@busy.test"):
            return "451 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"
    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                                "data": envelope.content.decode("utf8", "replace")}) + "\n")
        return "250 OK"
def authenticate(server, session, envelope, mechanism, auth_data):
    with open(out + ".auth", "a") as f:
        f.write(auth_data.login.decode() + "\n")
    ok = auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False,
                      message=None if ok else "535 5.7.8 Authentication credentials invalid")
controller = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticate,
                        auth_required=True, auth_require_tls=False)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

struct SmtpServer {
    child: Child,
    port: u16,
    mailbox: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start(user: &str, password: &str) -> anyhow::Result<Self> {
        let python = std::env::var("SMTP_PYTHON").context(
            "SMTP_PYTHON is not set: run `scripts/services.sh start smtp` (it installs aiosmtpd) and export what it prints",
        )?;
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mailbox = dir.path().join("mailbox.jsonl");
        let mut child = Command::new(python)
            .args(["-c", SERVER, &port.to_string()])
            .arg(&mailbox)
            .args([user, password])
            .stdout(Stdio::piped())
            // aiosmtpd warns (on stderr) that AUTH without TLS is unsafe: true, and intended here.
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start aiosmtpd")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("aiosmtpd did not start: {line:?}");
        }
        Ok(Self {
            child,
            port,
            mailbox,
            _dir: dir,
        })
    }

    /// The logins of every AUTH attempt the server saw.
    fn auth_attempts(&self) -> Vec<String> {
        std::fs::read_to_string(self.mailbox.with_extension("jsonl.auth"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.mailbox)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn trigger(email: Value) -> anyhow::Result<(BuiltTrigger, Firing)> {
    let spec: TriggerSpec = serde_json::from_value(json!({"template": {"name": "mail", "email": email}}))?;
    let ctx = BuildContext {
        sensor: "s".into(),
        secrets: Arc::new(
            MapSecretResolver::new()
                .with_secret("smtp", "password", "hunter2\n")
                .with_secret("smtp", "wrong", "nope"),
        ),
        http: reqwest::Client::new().into(),
        namespace: None,
    };
    let built = BuiltTrigger::build(&spec, &ctx)?;
    let event = EventBuilder::new("github", "push", "github")
        .id("delivery-1")
        .data_json(json!({"body": {"head_commit": {"message": "Fix the flaky test"}}}))
        .build()?;
    let events = BTreeMap::from([("push".to_owned(), event)]);
    let firing = Firing {
        id: FiringId::new("mail", &events),
        sensor: "s".into(),
        trigger: "mail".into(),
        events,
        template: spec.template.unwrap_or_default(),
    };
    Ok((built, firing))
}

fn email(server: &SmtpServer, to: &str, password_key: &str) -> Value {
    json!({
        "host": "127.0.0.1", "port": server.port, "username": "sluice",
        "smtpPassword": {"name": "smtp", "key": password_key},
        // The test server offers no TLS: sending the credentials anyway must be asked for.
        "plaintextAuth": true,
        "from": "Sluice <sluice@example.test>", "to": [to], "subject": "Pushed",
        "body": "placeholder",
        "parameters": [{"src": {"dependencyName": "push", "dataKey": "body.head_commit.message"}, "dest": "body"}]
    })
}

#[tokio::test]
#[ignore = "needs aiosmtpd: scripts/test installs it and runs ignored tests"]
async fn sends_the_parameterized_message_with_the_firing_id_as_message_id() -> anyhow::Result<()> {
    let server = SmtpServer::start("sluice", "hunter2")?;
    let (t, f) = trigger(email(&server, "ops@example.test", "password"))?;
    assert_eq!(t.execute(&f).await?, Outcome::Published { sequence: None });
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.messages().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["from"], json!("sluice@example.test"));
    assert_eq!(m["to"], json!(["ops@example.test"]));
    let data = m["data"].as_str().unwrap_or_default();
    assert!(data.contains("Subject: Pushed"), "{data}");
    assert!(data.contains(&format!("Message-ID: <{}@sluice>", f.id)), "{data}");
    assert!(data.contains("Fix the flaky test"), "{data}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs aiosmtpd: scripts/test installs it and runs ignored tests"]
async fn smtp_answers_decide_retryability() -> anyhow::Result<()> {
    let server = SmtpServer::start("sluice", "hunter2")?;
    for (to, key, kind) in [
        ("ops@example.test", "wrong", ErrorKind::Permanent),
        ("nobody@reject.test", "password", ErrorKind::Permanent),
        ("someone@busy.test", "password", ErrorKind::Retryable),
    ] {
        let (t, f) = trigger(email(&server, to, key))?;
        let err = t
            .execute(&f)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("{to}/{key}: sent"))?;
        assert_eq!(err.kind(), kind, "{to}/{key}: {err}");
        assert!(
            !err.to_string().contains("hunter2"),
            "no password in errors: {err}"
        );
    }
    assert!(server.messages().is_empty());
    // Nothing listening: retryable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut spec = email(&server, "ops@example.test", "password");
    spec["port"] = json!(port);
    let (t, f) = trigger(spec)?;
    let err = t
        .execute(&f)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("sent to nothing"))?;
    assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
    Ok(())
}

#[test]
fn bad_specs_are_build_errors_naming_the_field() {
    for (email, fragment) in [
        (json!({"from": "a@b.test", "to": ["c@d.test"]}), "`email.host`"),
        (
            json!({"host": "h", "from": "not an address", "to": ["c@d.test"]}),
            "`email.from`",
        ),
        (json!({"host": "h", "from": "a@b.test", "to": []}), "`email.to`"),
        (
            json!({"host": "h", "from": "a@b.test", "to": ["c@d.test", "bad"]}),
            "`email.to[1]`",
        ),
        (
            json!({"host": "h", "port": 70000, "from": "a@b.test", "to": ["c@d.test"]}),
            "`email.port`",
        ),
        (
            json!({"host": "h", "from": "a@b.test", "to": ["c@d.test"], "username": "u"}),
            "`email.smtpPassword`",
        ),
    ] {
        let err = trigger(email.clone())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(fragment), "{email}: {err}");
    }
}

/// With credentials and a server that offers no STARTTLS, nothing is sent and the password never
/// leaves: a man in the middle who strips STARTTLS from the server's answer gets nothing.
#[tokio::test]
#[ignore = "needs aiosmtpd: scripts/test installs it and runs ignored tests"]
async fn credentials_are_never_sent_without_tls_unless_asked() -> anyhow::Result<()> {
    let server = SmtpServer::start("sluice", "hunter2")?;
    let mut spec = email(&server, "ops@example.test", "password");
    spec.as_object_mut().context("spec")?.remove("plaintextAuth");
    let (t, f) = trigger(spec)?;
    let err = t
        .execute(&f)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("sent without TLS"))?;
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(
        err.to_string()
            .contains("TLS is required because credentials are set"),
        "{err}"
    );
    assert!(server.auth_attempts().is_empty(), "{:?}", server.auth_attempts());
    assert!(server.messages().is_empty());
    // The explicit opt-out sends them (the other tests rely on it).
    let (t, f) = trigger(email(&server, "ops@example.test", "password"))?;
    assert_eq!(t.execute(&f).await?, Outcome::Published { sequence: None });
    assert_eq!(server.auth_attempts(), vec!["sluice".to_string()]);
    Ok(())
}
