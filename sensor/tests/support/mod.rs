//! Test support shared by the sensor's integration tests: a real nats-server per test.
//!
//! The server binary: `$NATS_SERVER_BIN`, else the one `scripts/services.sh start nats` installs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;

const DEFAULT_BIN: &str = "/var/cache/sluice/nats-2.15.1/bin/nats-server";

/// A nats-server of this test; killed on drop.
pub struct NatsServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

fn server_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
    if !bin.is_file() {
        bail!(
            "nats-server not found at {} — run `scripts/services.sh start nats` (it installs it) or set NATS_SERVER_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NatsServer {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Vec::new()).await
    }

    /// A server started with extra arguments (e.g. `--auth TOKEN`); `url()` then needs credentials.
    pub async fn start_with(extra: Vec<String>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let child = Self::spawn(port, &dir, &extra)?;
        let server = Self {
            child,
            port,
            dir,
            extra,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    fn spawn(port: u16, dir: &tempfile::TempDir, extra: &[String]) -> anyhow::Result<Child> {
        Command::new(server_bin()?)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start nats-server")
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(client) = self.connect().await {
                // JetStream answers once the store is recovered.
                if jetstream::new(client).query_account().await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("nats-server on port {} did not become ready", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server and starts it again on the same port and store directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.child = Self::spawn(self.port, &self.dir, &self.extra)?;
        self.wait_ready().await
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client, with the `--auth` token when the server was started with one.
    async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        let options = match self.extra.iter().position(|a| a == "--auth") {
            Some(i) => {
                async_nats::ConnectOptions::with_token(self.extra.get(i + 1).cloned().unwrap_or_default())
            }
            None => async_nats::ConnectOptions::new(),
        };
        Ok(options.connect(self.url()).await?)
    }

    pub async fn jetstream(&self) -> anyhow::Result<jetstream::Context> {
        Ok(jetstream::new(async_nats::connect(self.url()).await?))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
