//! Leader election with a `coordination.k8s.io/v1` Lease: the holder renews it every third of
//! `duration`; a candidate (polling every [`CANDIDATE_RETRY`] at most) takes it over once `duration`
//! passed without renewal, or at once after the holder released it. Losing the Lease cancels the
//! work token, so a replica that cannot renew stops its work (and the process exits to restart
//! clean). A holder that shuts down releases the Lease ([`HeldLease::release`]), as client-go's
//! `ReleaseOnCancel` does, so failover does not wait for the Lease to expire.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest a candidate waits between two attempts to take the Lease (upstream's `retryPeriod`
/// is 2 s), so it notices a released Lease soon even when `duration` is long.
pub const CANDIDATE_RETRY: Duration = Duration::from_secs(2);

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

/// A held Lease: renewed in the background until released, dropped or lost.
pub struct HeldLease {
    stop: CancellationToken,
    renewal: Option<JoinHandle<()>>,
    api: Api<Lease>,
    cfg: LeaseConfig,
}

impl HeldLease {
    /// Stops renewing and gives the Lease up, if this replica still holds it: the holder becomes
    /// empty and the duration 1 s (client-go's release), written only if the Lease is unchanged since
    /// it was read, so a Lease another replica took meanwhile is left alone. Call it after the work
    /// the Lease guards has stopped. A failure is logged: the Lease then expires after its duration.
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(renewal) = self.renewal.take() {
            // Why wait: a renewal in flight must not land after the release and take it back.
            let _ = renewal.await;
        }
        match try_release(&self.api, &self.cfg).await {
            Ok(true) => {
                tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "released the Lease")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(lease = %self.cfg.name, %error, "failed to release the Lease; another replica takes it over once it expires")
            }
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Empties the Lease if `cfg.identity` holds it; true when written.
async fn try_release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, LeaderError> {
    let err = |action| {
        let name = cfg.name.clone();
        move |source| LeaderError::UpdateLease { action, name, source }
    };
    let Some(mut lease) = api.get_opt(&cfg.name).await.map_err(err("read"))? else {
        return Ok(false);
    };
    let spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(false);
    }
    let now = MicroTime(Timestamp::now());
    lease.spec = Some(LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(now.clone()),
        acquire_time: Some(now),
        ..spec
    });
    // `replace` carries the resourceVersion read above: it fails if the Lease changed since.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
        Err(source) => Err(err("release")(source)),
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
    let poll = retry.min(CANDIDATE_RETRY);
    loop {
        match try_hold(&api, &cfg).await {
            Ok(true) => break,
            Ok(false) => tracing::info!(lease = %cfg.name, "another replica leads; waiting"),
            Err(error) => tracing::warn!(error = %error, "leader election attempt failed"),
        }
        tokio::select! {
            biased;
            () = work.cancelled() => return Ok(None),
            () = tokio::time::sleep(poll) => {}
        }
    }
    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "leading");
    let stop = CancellationToken::new();
    let (renew_api, renew_cfg, renew_stop) = (api.clone(), cfg.clone(), stop.clone());
    let renewal = tokio::spawn(async move {
        let (api, cfg, stop) = (renew_api, renew_cfg, renew_stop);
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
    Ok(Some(HeldLease {
        stop,
        renewal: Some(renewal),
        api,
        cfg,
    }))
}
