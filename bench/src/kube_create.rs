//! `sluice-bench kube-create`: the API server's own rate for the kube benchmark's ceiling — Workflow
//! objects created directly with kube-rs, `concurrency` requests in flight, no Sluice in between.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::hist::Histogram;

/// What to create.
#[derive(clap::Args, Debug, Clone)]
pub struct KubeCreateArgs {
    /// Namespace to create the Workflows in (must exist).
    #[arg(long)]
    pub namespace: String,
    /// How many Workflows.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Creates in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u64,
}

/// Creates the Workflows; returns the JSON report.
pub async fn run(args: &KubeCreateArgs) -> anyhow::Result<Value> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes API (KUBECONFIG)")?;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow"));
    let api: Api<DynamicObject> = Api::namespaced_with(client, &args.namespace, &resource);
    let next = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Histogram::default());
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.concurrency {
        let (api, next, latency, errors, count) = (
            api.clone(),
            next.clone(),
            latency.clone(),
            errors.clone(),
            args.count,
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let object: DynamicObject = match serde_json::from_value(json!({
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Workflow",
                    "metadata": {"generateName": "ceiling-"},
                    "spec": {"entrypoint": "main", "arguments": {"parameters": [{"name": "id", "value": i.to_string()}]}},
                })) {
                    Ok(o) => o,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let sent = Instant::now();
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => latency.record(sent.elapsed().as_micros() as u64),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let created = args.count - errors.load(Ordering::Relaxed).min(args.count);
    Ok(json!({
        "namespace": args.namespace,
        "count": args.count,
        "concurrency": args.concurrency,
        "created": created,
        "errors": errors.load(Ordering::Relaxed),
        "elapsed_s": elapsed,
        "created_per_second": created as f64 / elapsed,
        "create_latency": latency.summary(),
    }))
}
