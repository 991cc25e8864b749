//! Leader election among `sluice eventsource` replicas on the real test API server
//! (`scripts/services.sh start kube`): two processes run the same calendar EventSource with
//! `--leader-elect`; only the holder of the Lease ticks, the standby stays ready (it would serve
//! push routes); after `kill -9` of the leader the standby takes the Lease over and ticks. A leader
//! stopped with SIGTERM releases the Lease, so the standby takes over long before it would expire.

mod kube_support;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_support::{admin_client, namespace, wait_for};
use sluice_integration_tests::{free_port, NatsServer, SluiceProcess};

// Generous: the machine is shared. The Lease itself lasts 3 s.
const WAIT: Duration = Duration::from_secs(90);

fn manifest(ns: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata:\n  name: elect-cal\n  namespace: {ns}\n\
         spec:\n  replicas: 2\n  calendar:\n    tick:\n      interval: 1s\n"
    )
}

fn start(dir: &Path, identity: &str, metrics_port: u16, bus: &str) -> Result<SluiceProcess> {
    start_with(dir, identity, metrics_port, bus, "3s")
}

fn start_with(
    dir: &Path,
    identity: &str,
    metrics_port: u16,
    bus: &str,
    lease_duration: &str,
) -> Result<SluiceProcess> {
    let manifest = dir.join("eventsource.yaml");
    let metrics = format!("127.0.0.1:{metrics_port}");
    let state = dir.join(format!("state-{identity}"));
    SluiceProcess::start(
        &[
            "eventsource",
            "-f",
            manifest.to_str().context("path")?,
            "--bus",
            bus,
            "--listen",
            "127.0.0.1",
            "--log-format",
            "json",
            "--metrics-address",
            &metrics,
            "--state-dir",
            state.to_str().context("path")?,
            "--leader-elect",
            "--lease-identity",
            identity,
            "--lease-duration",
            lease_duration,
        ],
        dir.join(format!("{identity}.log")),
        &dir.join("secrets"),
    )
}

/// How many ticks a process logged as published.
fn ticks(process: &SluiceProcess) -> usize {
    process
        .log_lines()
        .iter()
        .filter(|l| l["message"] == "published" && l["eventsource"] == "elect-cal")
        .count()
}

async fn holder(leases: &Api<Lease>) -> Result<Option<String>> {
    Ok(leases
        .get_opt("elect-cal-eventsource")
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and the nats-server binary: scripts/test starts and installs them and runs ignored tests"]
async fn only_the_lease_holder_ticks_and_a_standby_takes_over_after_kill_9() -> Result<()> {
    let client = admin_client().await?;
    let ns = namespace(&client, "leader").await?;
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("eventsource.yaml"), manifest(&ns))?;
    std::fs::create_dir_all(dir.path().join("secrets"))?;

    let ports = [free_port()?, free_port()?];
    let mut processes = vec![
        ("a", ports[0], start(dir.path(), "a", ports[0], &nats.url())?),
        ("b", ports[1], start(dir.path(), "b", ports[1], &nats.url())?),
    ];

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let leader = wait_for(WAIT, || {
        let leases = leases.clone();
        async move { holder(&leases).await }
    })
    .await?;
    let leader_at = processes
        .iter()
        .position(|(id, _, _)| *id == leader)
        .context("the Lease names one of the two processes")?;
    let (leader_id, _, leading) = processes.remove(leader_at);
    let (standby_id, standby_port, standby) = processes.remove(0);

    wait_for(WAIT, || {
        let n = ticks(&leading);
        async move { Ok((n >= 3).then_some(())) }
    })
    .await
    .with_context(|| format!("leader {leader_id} did not tick; log:\n{}", leading.log_text()))?;
    assert_eq!(
        ticks(&standby),
        0,
        "the standby {standby_id} ticked while {leader_id} held the Lease; log:\n{}",
        standby.log_text()
    );
    assert!(
        standby
            .log_lines()
            .iter()
            .any(|l| l["message"] == "another replica leads; waiting"),
        "{}",
        standby.log_text()
    );
    // A standby is ready: it serves every push route, only the run-once kinds wait for the Lease.
    let ready = reqwest::get(format!("http://127.0.0.1:{standby_port}/readyz")).await?;
    assert!(ready.status().is_success(), "{}", ready.status());

    leading.kill_hard()?;
    wait_for(WAIT, || {
        let n = ticks(&standby);
        async move { Ok((n >= 2).then_some(())) }
    })
    .await
    .with_context(|| {
        format!(
            "standby {standby_id} did not take over; log:\n{}",
            standby.log_text()
        )
    })?;
    assert_eq!(holder(&leases).await?.as_deref(), Some(standby_id));
    assert!(standby
        .log_lines()
        .iter()
        .any(|l| l["message"] == "leading: starting the sources that must not run twice"));
    assert_eq!(standby.terminate()?, Some(0));
    Ok(())
}

/// With a Lease lasting far longer than the wait below, a standby can only take over within it
/// because the leader released the Lease on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and the nats-server binary: scripts/test starts and installs them and runs ignored tests"]
async fn a_leader_stopped_with_sigterm_releases_the_lease_to_the_standby() -> Result<()> {
    let client = admin_client().await?;
    let ns = namespace(&client, "release").await?;
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("eventsource.yaml"), manifest(&ns))?;
    std::fs::create_dir_all(dir.path().join("secrets"))?;
    // Ten minutes: without a release the standby would wait this long (WAIT is 90 s).
    let lease = "600s";
    let mut processes = vec![
        (
            "a",
            start_with(dir.path(), "a", free_port()?, &nats.url(), lease)?,
        ),
        (
            "b",
            start_with(dir.path(), "b", free_port()?, &nats.url(), lease)?,
        ),
    ];
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let leader = wait_for(WAIT, || {
        let leases = leases.clone();
        async move { holder(&leases).await }
    })
    .await?;
    let leader_at = processes
        .iter()
        .position(|(id, _)| *id == leader)
        .context("the Lease names one of the two processes")?;
    let (leader_id, leading) = processes.remove(leader_at);
    let (standby_id, standby) = processes.remove(0);
    wait_for(WAIT, || {
        let n = ticks(&leading);
        async move { Ok((n >= 1).then_some(())) }
    })
    .await
    .with_context(|| format!("leader {leader_id} did not tick; log:\n{}", leading.log_text()))?;

    let leader_log = dir.path().join(format!("{leader_id}.log"));
    assert_eq!(
        leading.terminate()?,
        Some(0),
        "the leader exits cleanly on SIGTERM"
    );
    let leader_lines = sluice_integration_tests::log_lines(&std::fs::read_to_string(&leader_log)?);
    assert!(
        leader_lines.iter().any(|l| l["message"] == "released the Lease"),
        "{leader_lines:?}"
    );
    let took_over = wait_for(WAIT, || {
        let leases = leases.clone();
        async move { Ok(holder(&leases).await?.filter(|h| h == standby_id)) }
    })
    .await
    .with_context(|| {
        format!(
            "standby {standby_id} did not take the released Lease; log:\n{}",
            standby.log_text()
        )
    });
    took_over?;
    wait_for(WAIT, || {
        let n = ticks(&standby);
        async move { Ok((n >= 1).then_some(())) }
    })
    .await
    .with_context(|| format!("standby {standby_id} did not tick; log:\n{}", standby.log_text()))?;
    assert_eq!(holder(&leases).await?.as_deref(), Some(standby_id));
    assert_eq!(standby.terminate()?, Some(0));
    Ok(())
}
