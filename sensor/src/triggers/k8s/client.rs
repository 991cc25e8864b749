//! Access to the Kubernetes API shared by the `k8s` and `argoWorkflow` triggers: the client (from the
//! usual kubeconfig chain, made on first use), discovery of a kind's resource (cached per
//! apiVersion/kind) and the mapping of API failures to [`TriggerError`]s that name the object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, Scope};
use kube::Client;
use tokio::sync::OnceCell;

use crate::triggers::{BuildError, TriggerError};

/// How many discovered kinds are remembered (a sensor names a handful; a bound keeps a parameterised
/// `kind` from growing the map without end).
const MAX_DISCOVERED: usize = 256;

/// A connected client and the namespace objects without one go to.
#[derive(Clone)]
pub struct KubeClient {
    /// The client.
    pub client: Client,
    /// The default namespace: the kubeconfig context's, or the pod's in a cluster.
    pub namespace: String,
}

/// Where a trigger's client comes from.
#[derive(Clone)]
pub enum KubeAccess {
    /// The usual chain (`KUBECONFIG`, `~/.kube/config`, then in-cluster), connected on first use;
    /// objects without a namespace go to the given one (the sensor's) when set, else the chain's.
    Infer(Arc<OnceCell<KubeClient>>, Option<String>),
    /// A client made by the caller (tests, or a process that already has one).
    Client(KubeClient),
    /// No API at all: `sluice sensor test` renders what a firing would send (`describe`) and never
    /// executes; an execution fails permanently instead of reaching a cluster.
    Offline,
}

impl KubeAccess {
    /// The kubeconfig chain. Checks now, without I/O beyond reading the kubeconfig file, that a
    /// configuration exists, so a sensor that needs the API and has none refuses to start.
    pub fn infer(trigger: &str, kind: &'static str, namespace: Option<&str>) -> Result<Self, BuildError> {
        if let Err(kubeconfig) = kube::config::Kubeconfig::read() {
            if let Err(in_cluster) = kube::Config::incluster() {
                return Err(BuildError::NoKubernetes {
                    trigger: trigger.to_owned(),
                    kind,
                    reason: format!("no kubeconfig ({kubeconfig}) and not in a cluster ({in_cluster})"),
                });
            }
        }
        Ok(KubeAccess::Infer(
            Arc::new(OnceCell::new()),
            namespace.filter(|n| !n.is_empty()).map(str::to_owned),
        ))
    }

    /// The client, connecting on first use.
    pub async fn get(&self) -> Result<KubeClient, TriggerError> {
        match self {
            KubeAccess::Client(c) => Ok(c.clone()),
            KubeAccess::Offline => Err(TriggerError::ConnectKubernetes {
                reason: "this is a dry run: no Kubernetes API is used".into(),
            }),
            KubeAccess::Infer(cell, sensor_namespace) => cell
                .get_or_try_init(|| async {
                    let mut config =
                        kube::Config::infer()
                            .await
                            .map_err(|e| TriggerError::ConnectKubernetes {
                                reason: e.to_string(),
                            })?;
                    // One attempt per call: retries are the runner's (retryStrategy), not the client's.
                    config.default_retry = false;
                    let namespace = sensor_namespace
                        .clone()
                        .unwrap_or_else(|| config.default_namespace.clone());
                    let client = Client::try_from(config).map_err(|e| TriggerError::ConnectKubernetes {
                        reason: e.to_string(),
                    })?;
                    Ok(KubeClient { client, namespace })
                })
                .await
                .cloned(),
        }
    }
}

/// The identity of an object in a manifest: enough to find its API.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKind {
    /// `apiVersion`, e.g. `apps/v1` or `v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
}

impl ObjectKind {
    /// Reads `apiVersion` and `kind` of `object`.
    pub fn of(object: &serde_json::Value) -> Result<Self, TriggerError> {
        let field = |name: &str| {
            object
                .get(name)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| TriggerError::InvalidObject {
                    reason: format!("the object has no `{name}`"),
                })
        };
        Ok(Self {
            api_version: field("apiVersion")?,
            kind: field("kind")?,
        })
    }

    fn gvk(&self) -> GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        GroupVersionKind::gvk(group, version, &self.kind)
    }
}

/// Resolves kinds to their API resource, remembering each answer.
#[derive(Default)]
pub struct Discovery {
    known: Mutex<HashMap<ObjectKind, (ApiResource, ApiCapabilities)>>,
}

impl Discovery {
    /// The API resource of `kind` (its plural and whether it is namespaced).
    pub async fn resolve(
        &self,
        client: &Client,
        kind: &ObjectKind,
    ) -> Result<(ApiResource, ApiCapabilities), TriggerError> {
        if let Some(found) = self.lock().get(kind) {
            return Ok(found.clone());
        }
        let found = kube::discovery::pinned_kind(client, &kind.gvk())
            .await
            .map_err(|source| TriggerError::Discover {
                api_version: kind.api_version.clone(),
                kind: kind.kind.clone(),
                retryable: is_retryable(&source),
                source: Box::new(source),
            })?;
        let mut known = self.lock();
        if known.len() >= MAX_DISCOVERED {
            known.clear();
        }
        known.insert(kind.clone(), found.clone());
        Ok(found)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKind, (ApiResource, ApiCapabilities)>> {
        // A panic while holding the lock leaves a plain cache behind; it is still usable.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The API for objects of `resource` in `namespace` (ignored for cluster-scoped kinds).
pub fn api_for(
    client: &Client,
    resource: &ApiResource,
    caps: &ApiCapabilities,
    namespace: &str,
) -> Api<DynamicObject> {
    match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), resource),
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, resource),
    }
}

/// Whether a client error is worth retrying: a conflict, rate limiting, a server error, or no answer
/// at all (connection refused, timeout).
pub fn is_retryable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 409 | 429) || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// The HTTP status of an API error, if the server answered.
pub fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A failed API call on an object, as a [`TriggerError`] naming it.
pub fn api_error(
    action: &'static str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    error: kube::Error,
) -> TriggerError {
    let object = match namespace {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    };
    match error {
        kube::Error::Api(status) => TriggerError::KubernetesApi {
            action,
            object,
            status: status.code,
            reason: status.reason.clone(),
            message: status.message.clone(),
        },
        other => TriggerError::KubernetesRequest {
            action,
            object,
            retryable: is_retryable(&other),
            source: Box::new(other),
        },
    }
}
