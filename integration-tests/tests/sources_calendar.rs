//! End to end: a calendar source with `persistence.catchup` under `sluice run`, stopped and started
//! again. The second run must fire every tick missed while it was down — once — so that across both
//! runs the published ticks are one unbroken series, one second apart, with no tick twice.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sluice_integration_tests::{NatsServer, SluiceProcess};

const MANIFEST: &str = "apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: conf-cal
spec:
  calendar:
    tick:
      interval: 1s
      persistence:
        catchup:
          enabled: true
";

fn start(dir: &std::path::Path, log: &str, bus: Option<&str>) -> Result<SluiceProcess> {
    let manifest = dir.join("calendar.yaml");
    let state = dir.join("state");
    let mut args = vec![
        "run",
        manifest.to_str().context("path")?,
        "--log-format",
        "json",
        "--metrics-address",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().context("path")?,
    ];
    if let Some(url) = bus {
        args.extend(["--bus", url]);
    }
    SluiceProcess::start(&args, dir.join(log), &dir.join("secrets"))
}

/// The ticks a run logged as published.
fn published(process: &SluiceProcess) -> Vec<DateTime<Utc>> {
    process
        .log_lines()
        .into_iter()
        .filter(|l| l["message"] == "published" && l["eventsource"] == "conf-cal")
        .filter_map(|l| l["tick"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()))
        .collect()
}

async fn wait_ticks(process: &SluiceProcess, n: usize) -> Result<()> {
    for _ in 0..300 {
        if published(process).len() >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("fewer than {n} ticks within 15 s; log:\n{}", process.log_text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_after_a_restart_fires_each_missed_tick_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    restart_scenario(dir.path(), None).await?;
    assert!(
        dir.path().join("state").is_dir(),
        "the embedded bus keeps the checkpoint in files"
    );
    Ok(())
}

/// The same on JetStream: the checkpoint lives in the bus's key-value bucket, not in files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn catch_up_on_jetstream_keeps_the_checkpoint_in_the_bus() -> Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    restart_scenario(dir.path(), Some(&nats.url())).await?;
    assert!(
        !dir.path().join("state").exists(),
        "no checkpoint file on JetStream"
    );
    Ok(())
}

async fn restart_scenario(dir: &std::path::Path, bus: Option<&str>) -> Result<()> {
    std::fs::write(dir.join("calendar.yaml"), MANIFEST)?;
    std::fs::create_dir_all(dir.join("secrets"))?;

    let first = start(dir, "first.log", bus)?;
    wait_ticks(&first, 2).await?;
    let before = published(&first);
    first.terminate()?;
    let before_len = before.len();
    // Down for a few ticks.
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let second = start(dir, "second.log", bus)?;
    wait_ticks(&second, 5).await?;
    let after = published(&second);
    second.terminate()?;

    let all: Vec<DateTime<Utc>> = before.iter().chain(after.iter()).copied().collect();
    let unique: BTreeSet<DateTime<Utc>> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a tick was published twice: {all:?}");
    let sorted: Vec<DateTime<Utc>> = unique.into_iter().collect();
    for pair in sorted.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "ticks {} and {} are not consecutive: the missed ones were not caught up ({before_len} before the restart, all: {sorted:?})",
            pair[0],
            pair[1]
        );
    }
    assert!(
        after.len() >= 5 && after[0] == before[before_len - 1] + chrono::Duration::seconds(1),
        "the second run starts right after the last tick of the first"
    );
    Ok(())
}
