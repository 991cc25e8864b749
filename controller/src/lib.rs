//! The Sluice controller: reconciles EventBus, EventSource and Sensor custom resources into NATS
//! StatefulSets and `sluice eventsource|sensor` Deployments, with upstream's status conditions.
//!
//! Layers: [`children`] builds child objects (pure), [`conditions`] edits status (pure),
//! [`reconcile`] applies them, [`leader`] holds a Lease so one replica acts, [`run`] wires it up.

pub use sluice_crds as crds;

pub mod children;
pub mod conditions;
pub mod leader;
pub mod reconcile;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sluice_crds::{EventBus, EventSource, Sensor};
use tokio_util::sync::CancellationToken;

pub use children::BuildConfig;

/// What `sluice controller` was asked to do.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Builder settings (images, privilege policy).
    pub build: BuildConfig,
    /// Hold a Lease before reconciling (several controller replicas).
    pub leader_election: Option<leader::LeaseConfig>,
}

/// Metric families of the controller, registered by [`register_metrics`].
#[derive(Clone, Default)]
pub struct Metrics {
    /// Reconciles by kind and result.
    pub reconciles: Family<Vec<(String, String)>, Counter>,
}

/// Registers the controller's metrics (`sluice_controller_reconcile_total`).
pub fn register_metrics(registry: &mut Registry) -> Metrics {
    let metrics = Metrics::default();
    registry.register(
        "sluice_controller_reconcile",
        "Reconciles by kind and result",
        metrics.reconciles.clone(),
    );
    metrics
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the three controllers until `cancel` (after winning the Lease when leader election is on).
pub async fn run(
    client: Client,
    config: ControllerConfig,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Result<(), leader::LeaderError> {
    let work = cancel.child_token();
    let lease = match &config.leader_election {
        Some(lease) => match leader::acquire(client.clone(), lease.clone(), work.clone()).await? {
            Some(held) => Some(held),
            None => return Ok(()), // Cancelled while waiting.
        },
        None => None,
    };
    let ctx = Arc::new(reconcile::Context {
        client: client.clone(),
        build: config.build.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "sluice-controller".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        reconciles: metrics.reconciles.clone(),
    });
    let ns = config.namespace.as_deref();
    let wc = watcher::Config::default();
    let shutdown = |token: CancellationToken| async move { token.cancelled().await };

    let buses = Controller::new(api::<EventBus>(&client, ns), wc.clone())
        .owns(api::<StatefulSet>(&client, ns), wc.clone())
        .owns(api::<Service>(&client, ns), wc.clone())
        .owns(api::<ConfigMap>(&client, ns), wc.clone())
        .graceful_shutdown_on(shutdown(work.clone()))
        .run(
            reconcile::reconcile_eventbus,
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let sources = Controller::new(api::<EventSource>(&client, ns), wc.clone())
        .owns(api::<Deployment>(&client, ns), wc.clone())
        .owns(api::<Service>(&client, ns), wc.clone())
        .owns(api::<ConfigMap>(&client, ns), wc.clone())
        .graceful_shutdown_on(shutdown(work.clone()))
        .run(
            reconcile::reconcile_eventsource,
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let sensors = Controller::new(api::<Sensor>(&client, ns), wc.clone())
        .owns(api::<Deployment>(&client, ns), wc.clone())
        .owns(api::<ConfigMap>(&client, ns), wc.clone())
        .graceful_shutdown_on(shutdown(work.clone()))
        .run(reconcile::reconcile_sensor, reconcile::error_policy, ctx.clone())
        .for_each(|_| async {});
    tracing::info!(namespace = ?config.namespace, "controllers started");
    tokio::join!(buses, sources, sensors);
    tracing::info!("controllers stopped");
    if let Some(lease) = lease {
        // Stopped reconciling: a standby may take over now rather than after the Lease expires.
        lease.release().await;
    }
    Ok(())
}
