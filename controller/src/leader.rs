//! Leader election with a `coordination.k8s.io/v1` Lease: the holder renews it every `renew`; a
//! candidate takes it over once `duration` passed without renewal. Losing the Lease cancels the work
//! token, so a replica that cannot renew stops reconciling (and the process exits to restart clean).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;

/// Which Lease to hold and how.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
}

/// Why leadership could not be held.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// Reading or writing the Lease failed.
    #[error("failed to {action} the Lease {name}")]
    UpdateLease {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// A held Lease: renewed in the background until dropped or lost.
pub struct HeldLease {
    stop: CancellationToken,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Tries once to take or renew the Lease; true when this replica holds it. Writes are optimistic:
/// creating fails when another candidate created the Lease first, replacing fails when it changed
/// since it was read (its resourceVersion), so two candidates never both believe they won.
async fn try_hold(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, LeaderError> {
    let err = |action| {
        let name = cfg.name.clone();
        move |source| LeaderError::UpdateLease { action, name, source }
    };
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await.map_err(err("read"))?;
    let spec = current.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let renewed = spec.renew_time.as_ref().map(|t| t.0);
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let expired = renewed.is_none_or(|t| t.as_second() + seconds < now.as_second());
    if holder != cfg.identity && !holder.is_empty() && !expired {
        return Ok(false);
    }
    let ours = holder == cfg.identity;
    let next = LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX)),
        renew_time: Some(MicroTime(now)),
        acquire_time: if ours {
            spec.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
        ..spec
    };
    let written = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(next),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            lease.spec = Some(next);
            api.replace(&cfg.name, &PostParams::default(), &lease).await
        }
    };
    match written {
        Ok(_) => Ok(true),
        // Another candidate wrote first: it holds the Lease (or will, when its write lands).
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => Ok(false),
        Err(source) => Err(err("write")(source)),
    }
}

/// Waits until this replica holds the Lease (`None` when cancelled first), then renews it in the
/// background; if a renewal fails past the Lease duration, `work` is cancelled.
pub async fn acquire(
    client: Client,
    cfg: LeaseConfig,
    work: CancellationToken,
) -> Result<Option<HeldLease>, LeaderError> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let retry = (cfg.duration / 3).max(Duration::from_millis(500));
    loop {
        match try_hold(&api, &cfg).await {
            Ok(true) => break,
            Ok(false) => tracing::info!(lease = %cfg.name, "another replica leads; waiting"),
            Err(error) => tracing::warn!(error = %error, "leader election attempt failed"),
        }
        tokio::select! {
            biased;
            () = work.cancelled() => return Ok(None),
            () = tokio::time::sleep(retry) => {}
        }
    }
    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "leading");
    let stop = CancellationToken::new();
    let held = HeldLease { stop: stop.clone() };
    tokio::spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = work.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
            match try_hold(&api, &cfg).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %cfg.name, "lost the Lease to another replica; stopping");
                    work.cancel();
                    return;
                }
                Err(error) if last_ok.elapsed() > cfg.duration => {
                    tracing::error!(error = %error, "could not renew the Lease in time; stopping");
                    work.cancel();
                    return;
                }
                Err(error) => tracing::warn!(error = %error, "renewing the Lease failed; retrying"),
            }
        }
    });
    Ok(Some(held))
}
