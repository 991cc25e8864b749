//! Trigger kinds: what a sensor does when a trigger fires.
//!
//! Each kind lives in its own directory (`http/`, `log/`, `k8s/`, `argo_workflow/`) behind the [`Trigger`] trait. The registry
//! is the closed enum [`BuiltTrigger`], built by an exhaustive `match` over the template's action,
//! and [`is_supported`], an exhaustive `match` over `crds`'s [`TriggerKind`] table saying which kinds
//! this build runs (a test keeps the two in step). A kind without an implementation is a
//! [`BuildError::UnsupportedKind`] naming it and the kinds that run, so a sensor using it refuses to
//! start with a clear message instead of ignoring the trigger.
//!
//! A kind does one attempt: apply its own parameters (pure), act, judge the result. Retries, rate
//! limits, the dead-letter trigger and acknowledgements are the runner's job, the same for every
//! kind; a kind only says whether its error is worth retrying ([`TriggerError::is_retryable`]).

pub mod argo_workflow;
pub mod email;
pub mod http;
pub mod k8s;
pub mod kafka;
pub mod log;
pub mod nats;
pub mod slack;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_crds::sensor::{Trigger as TriggerSpec, TriggerAction, TriggerKind};
use sluice_eventbus::redact_url;

use crate::firing::Firing;
use crate::params::ParamError;
use crate::secrets::{SecretError, SecretResolver};

/// Why a trigger could not be built from its spec (the sensor does not start).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The trigger has no `template`.
    #[error("failed to build a trigger: it has no `template`")]
    MissingTemplate,
    /// The template sets no action.
    #[error(
        "failed to build trigger `{trigger}`: the template sets no action (set one of {supported})",
        supported = supported_names()
    )]
    NoAction {
        /// The trigger's name.
        trigger: String,
    },
    /// The template sets more than one action.
    #[error("failed to build trigger `{trigger}`: the template sets {fields}; set exactly one")]
    SeveralActions {
        /// The trigger's name.
        trigger: String,
        /// The actions set, comma-separated.
        fields: String,
    },
    /// The action's kind has no implementation yet.
    #[error(
        "failed to build trigger `{trigger}`: the `{kind}` trigger is not supported yet (supported: {supported})",
        supported = supported_names()
    )]
    UnsupportedKind {
        /// The trigger's name.
        trigger: String,
        /// The action's field name, e.g. `argoWorkflow`.
        kind: &'static str,
    },
    /// A field of the action is not supported yet.
    #[error("failed to build trigger `{trigger}`: `{field}` is not supported yet")]
    UnsupportedField {
        /// The trigger's name.
        trigger: String,
        /// The field path, e.g. `http.tls`.
        field: String,
    },
    /// A field has an invalid value.
    #[error("failed to build trigger `{trigger}`: invalid `{field}`: {reason}")]
    InvalidField {
        /// The trigger's name.
        trigger: String,
        /// The field path, e.g. `http.method`.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The action needs the Kubernetes API and no configuration for it was found.
    #[error("failed to build trigger `{trigger}`: the `{kind}` trigger needs a Kubernetes API server; set KUBECONFIG (or ~/.kube/config) or run in a pod with a service account: {reason}")]
    NoKubernetes {
        /// The trigger's name.
        trigger: String,
        /// The action's field name.
        kind: &'static str,
        /// What was tried.
        reason: String,
    },
    /// A secret the action needs could not be read.
    #[error("failed to build trigger `{trigger}`")]
    ResolveSecret {
        /// The trigger's name.
        trigger: String,
        /// Why.
        source: SecretError,
    },
}

/// Whether an error is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient (connection refused, timeout, 5xx): retry per `retryStrategy`.
    Retryable,
    /// Will fail the same way again (bad request, 4xx, a missing secret): go straight to the
    /// dead-letter trigger or the error log.
    Permanent,
}

/// Why one attempt of a trigger failed.
///
/// Every URL, target and location is shown through [`redact_url`] (user info, query values and
/// fragment masked), whatever the code that built the error passed: a spec's URL may carry a
/// password or a token, and these messages go to logs, dead-letter records and `sluice sensor test`.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// Parameters could not be applied to the trigger's spec or payload.
    #[error("failed to apply parameters")]
    ApplyParams(#[source] ParamError),
    /// The template (after the trigger's parameters) no longer has this kind's action.
    #[error("failed to execute: the template has no `{kind}` action after applying parameters")]
    MissingAction {
        /// The expected action field.
        kind: &'static str,
    },
    /// The request could not be built (bad URL, method or header).
    #[error("failed to build the request to `{}`: {reason}", redact_url(.url))]
    BuildRequest {
        /// The URL, for messages: credentials masked ([`sluice_eventbus::redact_url`]).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The request could not be sent or no response arrived (connect error, timeout).
    #[error("failed to send the request to `{}`", redact_url(.url))]
    SendRequest {
        /// The URL, for messages: credentials masked ([`sluice_eventbus::redact_url`]).
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The response status is not allowed by `policy.status.allow`.
    #[error(
        "failed to get an allowed response from `{}`: status {status} is not in policy.status.allow",
        redact_url(.url)
    )]
    StatusNotAllowed {
        /// The URL, for messages: credentials masked ([`sluice_eventbus::redact_url`]).
        url: String,
        /// The response status.
        status: u16,
    },
    /// A secret could not be read.
    #[error("failed to read a secret for the request")]
    ResolveSecret(#[source] SecretError),
    /// A message could not be published (or its publication not confirmed).
    #[error("failed to publish to `{}`: {reason}", redact_url(.target))]
    Publish {
        /// Where to: URL and subject, or broker and topic.
        target: String,
        /// Why.
        reason: String,
        /// Whether trying again can help (connection lost, no ack in time).
        retryable: bool,
    },
    /// The egress rules refuse the request's address (SSRF guard).
    #[error("failed to send the request to `{}`: {denied}", redact_url(.url))]
    EgressDenied {
        /// The URL.
        url: String,
        /// The address refused and the rule.
        denied: http::egress::EgressDenied,
    },
    /// No Kubernetes client could be made from the kubeconfig chain.
    #[error("failed to connect to the Kubernetes API: {reason}")]
    ConnectKubernetes {
        /// Why.
        reason: String,
    },
    /// The trigger's manifest could not be read from its source.
    #[error("failed to read the trigger source `{}`: {reason}", redact_url(.location))]
    FetchSource {
        /// The file path or URL.
        location: String,
        /// Why.
        reason: String,
        /// Whether reading again can help (a download that failed).
        retryable: bool,
    },
    /// The manifest (after parameters) is not usable for the operation.
    #[error("failed to use the trigger's manifest: {reason}")]
    InvalidObject {
        /// What is wrong.
        reason: String,
    },
    /// The API server does not know the manifest's kind, or could not be asked.
    #[error("failed to find the API of kind `{kind}` in `{api_version}`")]
    Discover {
        /// The manifest's apiVersion.
        api_version: String,
        /// The manifest's kind.
        kind: String,
        /// Whether asking again can help.
        retryable: bool,
        /// Why.
        source: Box<kube::Error>,
    },
    /// The API server refused the request.
    #[error("failed to {action} {object}: {status} {reason}: {message}")]
    KubernetesApi {
        /// `create`, `update`, `patch`, `delete`, `read`, `suspend`, …
        action: &'static str,
        /// Kind namespace/name.
        object: String,
        /// The HTTP status.
        status: u16,
        /// The API's reason, e.g. `Forbidden`, `AlreadyExists`, `Invalid`.
        reason: String,
        /// The API's message.
        message: String,
    },
    /// The request got no answer from the API server.
    #[error("failed to {action} {object}")]
    KubernetesRequest {
        /// `create`, `update`, …
        action: &'static str,
        /// Kind namespace/name.
        object: String,
        /// Whether retrying can help.
        retryable: bool,
        /// Why.
        source: Box<kube::Error>,
    },
    /// `policy.k8s` labels did not appear in time and `errorOnBackoffTimeout` is set.
    #[error(
        "failed to see labels {labels} on {object} within policy.k8s.backoff (errorOnBackoffTimeout is true)"
    )]
    PolicyTimeout {
        /// Kind namespace/name.
        object: String,
        /// The labels waited for, `k=v,…`.
        labels: String,
    },
}

impl TriggerError {
    /// Whether retrying can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TriggerError::SendRequest { .. } => ErrorKind::Retryable,
            TriggerError::Publish { retryable, .. } => {
                if *retryable {
                    ErrorKind::Retryable
                } else {
                    ErrorKind::Permanent
                }
            }
            TriggerError::StatusNotAllowed { status, .. } => {
                // Server errors, request timeouts and rate limiting pass; other statuses will repeat.
                if *status >= 500 || *status == 408 || *status == 429 {
                    ErrorKind::Retryable
                } else {
                    ErrorKind::Permanent
                }
            }
            TriggerError::FetchSource { retryable, .. }
            | TriggerError::Discover { retryable, .. }
            | TriggerError::KubernetesRequest { retryable, .. } => {
                if *retryable {
                    ErrorKind::Retryable
                } else {
                    ErrorKind::Permanent
                }
            }
            TriggerError::KubernetesApi { status, reason, .. } => {
                // A conflict (someone changed the object meanwhile), rate limiting and server errors
                // pass; a taken name (AlreadyExists), RBAC, invalid objects will fail the same way.
                if (*status == 409 && reason != "AlreadyExists") || *status == 429 || *status >= 500 {
                    ErrorKind::Retryable
                } else {
                    ErrorKind::Permanent
                }
            }
            TriggerError::ApplyParams(_)
            | TriggerError::MissingAction { .. }
            | TriggerError::BuildRequest { .. }
            | TriggerError::ResolveSecret(_)
            | TriggerError::EgressDenied { .. }
            | TriggerError::ConnectKubernetes { .. }
            | TriggerError::InvalidObject { .. }
            | TriggerError::PolicyTimeout { .. } => ErrorKind::Permanent,
        }
    }

    /// Shorthand for `kind() == Retryable`.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }
}

/// How long one attempt of a kind with no bound of its own is given (for the claim lease; see
/// [`Trigger::attempt_timeout`]).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a successful attempt did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP request was answered with `status` (allowed by the policy).
    HttpResponse {
        /// The response status.
        status: u16,
    },
    /// The events were written to the log.
    Logged {
        /// How many events.
        events: usize,
    },
    /// Nothing was written: the log trigger's `intervalSeconds` has not passed yet.
    Throttled,
    /// A message was published (and, where the target confirms storage, stored at `sequence`).
    Published {
        /// The stream sequence, when a stream stored it.
        sequence: Option<u64>,
    },
    /// A Kubernetes object was acted on (`k8s`, `argoWorkflow`).
    KubernetesObject {
        /// What was done: `created`, `updated`, `patched`, `deleted`, `absent` (nothing to delete),
        /// `submitted`, `resubmitted`, `suspend`, `resume`, `terminate`, `stop`.
        action: &'static str,
        /// Kind namespace/name of the object.
        object: String,
    },
}

/// What a trigger kind needs from the sensor to build itself.
#[derive(Clone)]
pub struct BuildContext {
    /// The sensor's name (for logs).
    pub sensor: String,
    /// Resolves Secret and ConfigMap references.
    pub secrets: Arc<dyn SecretResolver>,
    /// The HTTP clients of request-style triggers, under the process's egress rules.
    pub http: http::egress::HttpClients,
    /// The sensor's namespace (`metadata.namespace`): where Kubernetes triggers put objects whose
    /// manifest names none. `None`: the kubeconfig context's (the pod's in a cluster).
    pub namespace: Option<String>,
}

/// One trigger kind, built and ready to act.
#[async_trait]
pub trait Trigger: Send + Sync {
    /// The action's field name, e.g. `http`.
    fn kind(&self) -> &'static str;

    /// What `execute` would send for `firing`, parameters applied and secrets masked; nothing is
    /// sent. For `sluice sensor test` and debug logs.
    fn describe(&self, firing: &Firing) -> Result<serde_json::Value, TriggerError>;

    /// One attempt at the action for `firing`.
    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError>;

    /// The longest one attempt is expected to take. The runner sizes a firing's claim lease from it
    /// (every attempt plus every retry wait), so a live replica's claim is not taken over while the
    /// action runs: too long only delays the retry after a crash, too short risks a second
    /// execution. A kind without a bound of its own says [`DEFAULT_ATTEMPT_TIMEOUT`].
    fn attempt_timeout(&self) -> Duration;
}

/// Whether this build runs `kind`: the one list, read by the error messages. [`BuiltTrigger::build`]
/// refuses exactly the kinds this says `false` for (a test checks it).
pub fn is_supported(kind: TriggerKind) -> bool {
    match kind {
        TriggerKind::K8s
        | TriggerKind::ArgoWorkflow
        | TriggerKind::Http
        | TriggerKind::Kafka
        | TriggerKind::Nats
        | TriggerKind::Slack
        | TriggerKind::Log
        | TriggerKind::Email => true,
        TriggerKind::AwsLambda
        | TriggerKind::Custom
        | TriggerKind::OpenWhisk
        | TriggerKind::AzureEventHubs
        | TriggerKind::Pulsar
        | TriggerKind::AzureServiceBus => false,
    }
}

/// The field names of the kinds this build runs, comma-separated, for messages.
pub fn supported_names() -> String {
    TriggerKind::ALL
        .into_iter()
        .filter(|k| is_supported(*k))
        .map(TriggerKind::field_name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The registry: every implemented kind. Built by [`BuiltTrigger::build`].
pub enum BuiltTrigger {
    /// `http`
    Http(http::HttpTrigger),
    /// `log`
    Log(log::LogTrigger),
    /// `nats`
    Nats(nats::NatsTrigger),
    /// `kafka`
    Kafka(kafka::KafkaTrigger),
    /// `slack`
    Slack(slack::SlackTrigger),
    /// `email`
    Email(email::EmailTrigger),
    /// `k8s`
    K8s(k8s::K8sTrigger),
    /// `argoWorkflow`
    ArgoWorkflow(argo_workflow::ArgoWorkflowTrigger),
}

impl BuiltTrigger {
    /// Builds the kind named by `spec.template`, checking its fields and secrets.
    pub fn build(spec: &TriggerSpec, ctx: &BuildContext) -> Result<Self, BuildError> {
        Self::build_with(spec, ctx, false)
    }

    /// As [`build`](Self::build) for a dry run: Kubernetes triggers get no API access (they only
    /// [`describe`](Trigger::describe)), so no kubeconfig is needed.
    pub fn build_offline(spec: &TriggerSpec, ctx: &BuildContext) -> Result<Self, BuildError> {
        Self::build_with(spec, ctx, true)
    }

    fn build_with(spec: &TriggerSpec, ctx: &BuildContext, offline: bool) -> Result<Self, BuildError> {
        let template = spec.template.as_ref().ok_or(BuildError::MissingTemplate)?;
        let name = template.name.clone();
        let actions = template.actions();
        let action = match actions.as_slice() {
            [] => return Err(BuildError::NoAction { trigger: name }),
            [one] => *one,
            several => {
                let fields = several
                    .iter()
                    .map(|a| a.field_name())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(BuildError::SeveralActions {
                    trigger: name,
                    fields,
                });
            }
        };
        match action {
            TriggerAction::Http(http) => Ok(BuiltTrigger::Http(http::HttpTrigger::build(
                &name, http, spec, ctx,
            )?)),
            TriggerAction::Log(log) => Ok(BuiltTrigger::Log(log::LogTrigger::build(&name, log))),
            TriggerAction::Nats(spec) => Ok(BuiltTrigger::Nats(nats::NatsTrigger::build(&name, spec, ctx)?)),
            TriggerAction::Kafka(spec) => {
                Ok(BuiltTrigger::Kafka(kafka::KafkaTrigger::build(&name, spec, ctx)?))
            }
            TriggerAction::Slack(spec) => {
                Ok(BuiltTrigger::Slack(slack::SlackTrigger::build(&name, spec, ctx)?))
            }
            TriggerAction::Email(spec) => {
                Ok(BuiltTrigger::Email(email::EmailTrigger::build(&name, spec, ctx)?))
            }
            TriggerAction::K8s(k8s) if offline => Ok(BuiltTrigger::K8s(k8s::K8sTrigger::build_with_access(
                &name,
                k8s,
                spec,
                ctx,
                k8s::client::KubeAccess::Offline,
            )?)),
            TriggerAction::K8s(k8s) => Ok(BuiltTrigger::K8s(k8s::K8sTrigger::build(&name, k8s, spec, ctx)?)),
            TriggerAction::ArgoWorkflow(argo) if offline => Ok(BuiltTrigger::ArgoWorkflow(
                argo_workflow::ArgoWorkflowTrigger::build_with_access(
                    &name,
                    argo,
                    spec,
                    ctx,
                    k8s::client::KubeAccess::Offline,
                )?,
            )),
            TriggerAction::ArgoWorkflow(argo) => Ok(BuiltTrigger::ArgoWorkflow(
                argo_workflow::ArgoWorkflowTrigger::build(&name, argo, spec, ctx)?,
            )),
            TriggerAction::AwsLambda(_)
            | TriggerAction::Custom(_)
            | TriggerAction::OpenWhisk(_)
            | TriggerAction::AzureEventHubs(_)
            | TriggerAction::Pulsar(_)
            | TriggerAction::AzureServiceBus(_) => Err(BuildError::UnsupportedKind {
                trigger: name,
                kind: action.field_name(),
            }),
        }
    }

    fn inner(&self) -> &dyn Trigger {
        match self {
            BuiltTrigger::Http(t) => t,
            BuiltTrigger::Log(t) => t,
            BuiltTrigger::Nats(t) => t,
            BuiltTrigger::Kafka(t) => t,
            BuiltTrigger::Slack(t) => t,
            BuiltTrigger::Email(t) => t,
            BuiltTrigger::K8s(t) => t,
            BuiltTrigger::ArgoWorkflow(t) => t,
        }
    }
}

#[async_trait]
impl Trigger for BuiltTrigger {
    fn kind(&self) -> &'static str {
        self.inner().kind()
    }

    fn describe(&self, firing: &Firing) -> Result<serde_json::Value, TriggerError> {
        self.inner().describe(firing)
    }

    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError> {
        self.inner().execute(firing).await
    }

    fn attempt_timeout(&self) -> Duration {
        self.inner().attempt_timeout()
    }
}
