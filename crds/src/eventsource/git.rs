//! Git hosting push sources: GitHub, GitLab, Bitbucket (Cloud), Bitbucket Server and Gerrit. Each
//! serves an HTTP endpoint (a [`WebhookContext`]) and, when API credentials are given, registers
//! that endpoint as a hook on the remote repositories itself.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{EventSourceFilter, WebhookContext};
use crate::common::{BasicAuth, SecretKeySelector, TLSConfig};

/// Events from GitHub repository or organization webhooks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GithubEventSource {
    /// Deprecated and unused: the id of an existing hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// The HTTP server GitHub delivers to. Its `url` is the public base URL registered with GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookContext>,
    /// Deprecated: the repository owner; use `repositories` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Deprecated: the repository name; use `repositories` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// GitHub event names to subscribe the hook to (e.g. `push`, `pull_request`, `*` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The Secret key holding a GitHub API token, used to create and delete the hook. Without it
    /// (and without `githubApp`) the hook must be created by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<SecretKeySelector>,
    /// The Secret key holding the hook secret; when set, each delivery's
    /// `X-Hub-Signature-256` HMAC is verified and unsigned or mis-signed requests are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretKeySelector>,
    /// Skip TLS verification when GitHub calls the endpoint. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Create the hook active, so GitHub delivers events. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub active: bool,
    /// The delivery format of the created hook: `json` or `form`. Default `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The API base URL of a GitHub Enterprise server (e.g. `https://github.example.com/api/v3/`).
    /// Set together with `githubUploadURL`. Default: public GitHub.
    #[serde(rename = "githubBaseURL", default, skip_serializing_if = "Option::is_none")]
    pub github_base_url: Option<String>,
    /// The upload URL of a GitHub Enterprise server. Set together with `githubBaseURL`.
    #[serde(rename = "githubUploadURL", default, skip_serializing_if = "Option::is_none")]
    pub github_upload_url: Option<String>,
    /// Delete the hooks this source created when it stops. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_hook_on_finish: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Repositories to hook, grouped by owner. Exactly one of `repositories` and
    /// `organizations` is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<OwnedRepositories>,
    /// Organizations to hook at organization level. Exactly one of `repositories` and
    /// `organizations` is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
    /// Authenticate to the API as a GitHub App instead of with `apiToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_app: Option<GithubAppCreds>,
    /// Only deliveries matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// Repositories of one owner (user or organization).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnedRepositories {
    /// The user or organization owning the repositories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Repository names under `owner`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// Credentials of a GitHub App installation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GithubAppCreds {
    /// The Secret key holding the app's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<SecretKeySelector>,
    /// The numeric id of the GitHub App.
    #[serde(rename = "appID", default)]
    pub app_id: i64,
    /// The numeric id of the app's installation on the account owning the repositories.
    #[serde(rename = "installationID", default)]
    pub installation_id: i64,
}

/// Events from GitLab project or group hooks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitlabEventSource {
    /// The HTTP server GitLab delivers to. Its `url` is the public base URL registered with GitLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookContext>,
    /// Deprecated: a single project id; use `projects` instead.
    #[serde(rename = "projectID", default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// GitLab hook event kinds to enable, e.g. `PushEvents`, `MergeRequestsEvents`, `TagPushEvents`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The Secret key holding a GitLab API token, used to create and delete hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<SecretKeySelector>,
    /// Ask GitLab to verify this endpoint's TLS certificate when delivering. Default false.
    #[serde(
        rename = "enableSSLVerification",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub enable_ssl_verification: bool,
    /// The base URL of the GitLab server, e.g. `https://gitlab.com`.
    #[serde(rename = "gitlabBaseURL", default, skip_serializing_if = "String::is_empty")]
    pub gitlab_base_url: String,
    /// Delete the hooks this source created when it stops. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_hook_on_finish: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Projects to hook, by numeric id or path (`group/project`). With neither projects nor
    /// groups, no hooks are managed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
    /// The Secret key holding the token GitLab sends in `X-Gitlab-Token`; requests without the
    /// matching token are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_token: Option<SecretKeySelector>,
    /// Only deliveries matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// Groups to hook at group level, by id or name (a GitLab Premium feature).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Events from Bitbucket Cloud repository webhooks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitbucketEventSource {
    /// Delete the hooks this source created when it stops. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_hook_on_finish: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The HTTP server Bitbucket delivers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookContext>,
    /// Credentials used to create and delete the hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BitbucketAuth>,
    /// Sluice extension (argo-events #2902): the Secret key holding the hook's secret. When set, each
    /// delivery's `X-Hub-Signature` (`sha256=<hex HMAC of the body>`) is verified and unsigned or
    /// mis-signed requests are rejected with 401. Upstream Argo Events does not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretKeySelector>,
    /// Bitbucket event keys to subscribe to, e.g. `repo:push`, `pullrequest:created`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Deprecated: the repository owner; use `repositories` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Deprecated: the project key; use `repositories` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_key: Option<String>,
    /// Deprecated: the repository slug; use `repositories` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_slug: Option<String>,
    /// The repositories to hook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<BitbucketRepository>,
    /// Only deliveries matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// How to authenticate to the Bitbucket Cloud API: basic auth or an OAuth token (set one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitbucketAuth {
    /// User name and app password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BitbucketBasicAuth>,
    /// The Secret key holding an OAuth bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_token: Option<SecretKeySelector>,
}

/// A Bitbucket user name and (app) password, each read from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitbucketBasicAuth {
    /// The Secret key holding the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretKeySelector>,
    /// The Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeySelector>,
}

/// One Bitbucket Cloud repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitbucketRepository {
    /// The workspace or user owning the repository.
    #[serde(default)]
    pub owner: String,
    /// The repository's URL slug.
    #[serde(default)]
    pub repository_slug: String,
}

/// Events from Bitbucket Server (Data Center) repository or project webhooks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitbucketServerEventSource {
    /// The HTTP server Bitbucket Server delivers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookContext>,
    /// Deprecated: the project key; use `repositories` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_key: Option<String>,
    /// Deprecated: the repository slug; use `repositories` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_slug: Option<String>,
    /// Projects whose every repository is hooked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
    /// Individual repositories to hook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<BitbucketServerRepository>,
    /// Bitbucket Server event keys to subscribe to, e.g. `repo:refs_changed`, `pr:opened`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Skip `repo:refs_changed` for a branch that has an open pull request (the PR events cover
    /// it). Default false.
    #[serde(
        rename = "skipBranchRefsChangedOnOpenPR",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub skip_branch_refs_changed_on_open_pr: bool,
    /// Publish one event per ref change of a `repo:refs_changed` delivery instead of one per
    /// delivery (useful when several tags are pushed at once). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_event_per_change: bool,
    /// The Secret key holding an API token, used to create and delete hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<SecretKeySelector>,
    /// The Secret key holding the hook secret; deliveries' HMAC signatures are verified with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretKeySelector>,
    /// The base URL of the Bitbucket Server REST API, e.g. `https://bitbucket.example.com/rest`.
    #[serde(
        rename = "bitbucketserverBaseURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub bitbucketserver_base_url: String,
    /// Delete the hooks this source created when it stops. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_hook_on_finish: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only deliveries matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// TLS settings for calls to the Bitbucket Server API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// How often to check that the hooks still exist and recreate missing ones, as a duration
    /// (`30s`, `5m`). Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<String>,
}

/// One Bitbucket Server repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitbucketServerRepository {
    /// The key of the project holding the repository.
    #[serde(default)]
    pub project_key: String,
    /// The repository's slug.
    #[serde(default)]
    pub repository_slug: String,
}

/// Events from Gerrit project webhooks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GerritEventSource {
    /// The HTTP server Gerrit delivers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookContext>,
    /// The name under which the hook is registered in each project.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hook_name: String,
    /// Gerrit event types to subscribe to, e.g. `patchset-created`, `change-merged`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// User name and password for the Gerrit REST API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BasicAuth>,
    /// The base URL of the Gerrit server.
    #[serde(rename = "gerritBaseURL", default, skip_serializing_if = "String::is_empty")]
    pub gerrit_base_url: String,
    /// Delete the hooks this source created when it stops. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_hook_on_finish: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Projects to hook, by name (e.g. `team/repo`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
    /// Ask Gerrit to verify this endpoint's TLS certificate when delivering. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssl_verify: bool,
    /// How many times Gerrit tries to deliver an event to the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tries: Option<i64>,
    /// Only deliveries matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}
