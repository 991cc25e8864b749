//! Kubernetes trigger actions: the generic `k8s` trigger and `argoWorkflow`, and where their resource
//! manifest comes from ([`ArtifactLocation`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::serde_util::{is_false, null_as_default};
use super::trigger::TriggerParameter;
use crate::common::{ConfigMapKeySelector, GithubAppCreds, S3Artifact, SecretKeySelector};

/// Creates, updates, patches or deletes any Kubernetes object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandardK8STrigger {
    /// Where the object's manifest comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ArtifactLocation>,
    /// `create` (default), `update`, `patch` or `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Values from the events applied to the manifest (e.g. `dest: metadata.generateName`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// The patch content type for `operation: patch`: `application/merge-patch+json` (default),
    /// `application/strategic-merge-patch+json`, `application/json-patch+json` or
    /// `application/apply-patch+yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_strategy: Option<String>,
    /// For `update` and `patch`: read the object from the API server and change that, instead of
    /// using the manifest as a whole. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub live_object: bool,
}

/// Submits an Argo Workflow, or resubmits, retries, resumes, suspends, terminates or stops one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgoWorkflowTrigger {
    /// Where the Workflow manifest comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ArtifactLocation>,
    /// `submit` (default), `submit-from`, `resubmit`, `retry`, `resume`, `suspend`, `terminate` or `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Values from the events applied to the Workflow manifest.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// Extra command-line arguments for the `argo` CLI.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub args: Vec<String>,
}

/// Where a resource manifest is read from. Exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactLocation {
    /// An object in an S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Artifact>,
    /// The manifest itself, as YAML or JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// A file on the sensor pod's file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileArtifact>,
    /// A URL to download the manifest from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<URLArtifact>,
    /// A ConfigMap key holding the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configmap: Option<ConfigMapKeySelector>,
    /// A file in a Git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitArtifact>,
    /// The manifest as a YAML object inside the sensor. Any object is accepted as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::any_object_schema")]
    pub resource: Option<serde_json::Value>,
}

impl ArtifactLocation {
    /// The names of the fields that are set (`s3`, `inline`, …). A valid location has exactly one.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.s3.is_some() {
            out.push("s3");
        }
        if self.inline.is_some() {
            out.push("inline");
        }
        if self.file.is_some() {
            out.push("file");
        }
        if self.url.is_some() {
            out.push("url");
        }
        if self.configmap.is_some() {
            out.push("configmap");
        }
        if self.git.is_some() {
            out.push("git");
        }
        if self.resource.is_some() {
            out.push("resource");
        }
        out
    }
}

/// A file on the sensor pod's file system.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileArtifact {
    /// Absolute path of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A manifest downloaded over HTTP(S).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct URLArtifact {
    /// The full URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Verify the server's TLS certificate. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub verify_cert: bool,
}

/// A file in a Git repository, cloned by the sensor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitArtifact {
    /// The repository URL (HTTPS or SSH).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Local directory to clone into.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clone_directory: String,
    /// User name and password (or token) for HTTPS, from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creds: Option<GitCreds>,
    /// The Secret key with an SSH private key for SSH URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_secret: Option<SecretKeySelector>,
    /// Path of the manifest inside the repository.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file_path: String,
    /// The branch to check out. Default: the remote's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A tag to check out (instead of a branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A ref to fetch and check out (shallow), e.g. `refs/pull/1/head`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub ref_: Option<String>,
    /// The remote to fetch from. Default `origin` with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<GitRemoteConfig>,
    /// Do not check the SSH host key. Insecure. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_ignore_host_key: bool,
    /// Authenticate as a GitHub App installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_app: Option<GithubAppCreds>,
}

/// Git HTTPS credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitCreds {
    /// The Secret key with the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretKeySelector>,
    /// The Secret key with the password or token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeySelector>,
}

/// A named Git remote.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRemoteConfig {
    /// The remote's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The remote's URLs; fetching uses the first.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub urls: Vec<String>,
}
