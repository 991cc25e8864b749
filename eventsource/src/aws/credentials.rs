//! Where AWS credentials come from.
//!
//! Supported, in this order when no static keys are given (the "default chain"):
//! 1. environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`;
//! 2. web identity (EKS IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (optional
//!    `AWS_ROLE_SESSION_NAME`), exchanged through STS `AssumeRoleWithWebIdentity`; re-exchanged five
//!    minutes before the temporary credentials expire (the token file is re-read each time, as
//!    Kubernetes rotates it);
//! 3. the shared credentials file: `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`,
//!    profile `AWS_PROFILE` (default `default`), keys `aws_access_key_id`, `aws_secret_access_key`,
//!    `aws_session_token`.
//!
//! Not supported: EC2 instance metadata (IMDS), ECS container credentials, SSO, `credential_process`,
//! `role_arn`/`source_profile` chains in the config file, and `roleARN` on a source (refused at build
//! with a message). Secrets are never logged.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use super::{sigv4, xml, AwsError};

/// One set of credentials.
#[derive(Clone)]
pub struct Credentials {
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// A session token for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Why: never print a secret, even in debug output.
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// Resolved credentials and when they expire (`None`: they do not).
type Cached = Option<(Credentials, Option<SystemTime>)>;

/// A source of credentials: fixed, or the default chain (resolved on first use and cached).
#[derive(Clone)]
pub enum CredentialsProvider {
    /// Keys from secret references.
    Static(Credentials),
    /// The default chain described in the module docs.
    DefaultChain(Arc<Mutex<Cached>>),
    /// A role assumed with other credentials.
    Assumed(Arc<AssumedRole>),
}

impl CredentialsProvider {
    /// The default chain.
    pub fn default_chain() -> Self {
        Self::DefaultChain(Arc::new(Mutex::new(None)))
    }

    /// Current credentials.
    pub async fn get(&self, http: &reqwest::Client, region: &str) -> Result<Credentials, AwsError> {
        match self {
            Self::Static(c) => Ok(c.clone()),
            Self::DefaultChain(cache) => {
                let mut guard = cache.lock().await;
                if let Some((c, expires)) = guard.as_ref() {
                    let fresh = expires.is_none_or(|e| SystemTime::now() + Duration::from_secs(300) < e);
                    if fresh {
                        return Ok(c.clone());
                    }
                }
                let resolved = resolve_chain(http, region).await?;
                *guard = Some(resolved.clone());
                Ok(resolved.0)
            }
            // Boxed: assuming a role signs an STS call, which asks the base provider (async recursion).
            Self::Assumed(role) => Box::pin(role.get(region)).await,
        }
    }
}

/// Temporary credentials of an assumed role (`roleARN` on a source), obtained with STS `AssumeRole`
/// signed by the base credentials and refreshed five minutes before they expire.
pub struct AssumedRole {
    /// The credentials that call STS.
    pub base: CredentialsProvider,
    /// The role to assume.
    pub role_arn: String,
    /// The STS endpoint.
    pub sts_endpoint: String,
    cache: Mutex<Cached>,
}

impl AssumedRole {
    /// A role assumed with `base` through `sts_endpoint`.
    pub fn new(
        base: CredentialsProvider,
        role_arn: impl Into<String>,
        sts_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            base,
            role_arn: role_arn.into(),
            sts_endpoint: sts_endpoint.into(),
            cache: Mutex::new(None),
        }
    }

    async fn get(&self, region: &str) -> Result<Credentials, AwsError> {
        let mut guard = self.cache.lock().await;
        if let Some((c, expires)) = guard.as_ref() {
            if expires.is_none_or(|e| SystemTime::now() + Duration::from_secs(300) < e) {
                return Ok(c.clone());
            }
        }
        let client = super::AwsClient::new(self.base.clone(), region);
        let answer = client
            .sts_assume_role(&self.sts_endpoint, &self.role_arn, "sluice")
            .await?;
        let creds = (|| {
            Some(Credentials {
                access_key: xml::text(&answer, "AccessKeyId")?,
                secret_key: xml::text(&answer, "SecretAccessKey")?,
                session_token: xml::text(&answer, "SessionToken"),
            })
        })()
        .ok_or(AwsError::Decode {
            service: "sts",
            action: "AssumeRole",
            reason: "the answer has no credentials".into(),
        })?;
        let expires = xml::text(&answer, "Expiration")
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e).ok())
            .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)));
        *guard = Some((creds.clone(), expires));
        Ok(creds)
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn resolve_chain(
    http: &reqwest::Client,
    region: &str,
) -> Result<(Credentials, Option<SystemTime>), AwsError> {
    if let (Some(access_key), Some(secret_key)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok((
            Credentials {
                access_key,
                secret_key,
                session_token: env("AWS_SESSION_TOKEN"),
            },
            None,
        ));
    }
    if let (Some(token_file), Some(role)) = (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN")) {
        return web_identity(http, region, &token_file, &role).await;
    }
    let path =
        env("AWS_SHARED_CREDENTIALS_FILE").or_else(|| env("HOME").map(|h| format!("{h}/.aws/credentials")));
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    if let Some(path) = path {
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            if let Some(c) = profile_credentials(&text, &profile) {
                return Ok((c, None));
            }
        }
    }
    Err(AwsError::NoCredentials)
}

/// The keys of `[profile]` in a shared credentials file.
pub fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut ak, mut sk, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => ak = Some(v),
                "aws_secret_access_key" => sk = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key: ak?,
        secret_key: sk?,
        session_token: token,
    })
}

async fn web_identity(
    http: &reqwest::Client,
    region: &str,
    token_file: &str,
    role: &str,
) -> Result<(Credentials, Option<SystemTime>), AwsError> {
    let token = tokio::fs::read_to_string(token_file)
        .await
        .map_err(|e| AwsError::WebIdentity(format!("failed to read {token_file}: {e}")))?;
    let session = env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "sluice".into());
    let endpoint = env("AWS_STS_ENDPOINT").unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    assume_role_with_web_identity(http, &endpoint, token.trim(), role, &session).await
}

/// STS `AssumeRoleWithWebIdentity` at `endpoint` with `token`.
async fn assume_role_with_web_identity(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    role: &str,
    session: &str,
) -> Result<(Credentials, Option<SystemTime>), AwsError> {
    let query = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", session),
        ("WebIdentityToken", token),
    ];
    let q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // AssumeRoleWithWebIdentity is an unsigned call: the token is the proof.
    let url = format!("{endpoint}/?{}", sigv4::canonical_query(&q));
    let response = http
        .get(url)
        .send()
        .await
        // reqwest's message repeats the URL, whose query holds the token.
        .map_err(|e| AwsError::WebIdentity(format!("failed to call STS: {}", e.without_url())))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| AwsError::WebIdentity(format!("failed to read the STS answer: {}", e.without_url())))?;
    if !status.is_success() {
        let code = xml::text(&body, "Code").unwrap_or_default();
        return Err(AwsError::WebIdentity(format!("STS answered {status} {code}")));
    }
    let creds = (|| {
        Some(Credentials {
            access_key: xml::text(&body, "AccessKeyId")?,
            secret_key: xml::text(&body, "SecretAccessKey")?,
            session_token: xml::text(&body, "SessionToken"),
        })
    })()
    .ok_or_else(|| AwsError::WebIdentity("the STS answer has no credentials".into()))?;
    let expires = xml::text(&body, "Expiration")
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e).ok())
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)));
    Ok((creds, expires))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_profile_only() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[other]\n\
                    aws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n";
        let d = profile_credentials(text, "default").map(|c| (c.access_key, c.secret_key, c.session_token));
        assert_eq!(d, Some(("A".into(), "B".into(), None)));
        let o = profile_credentials(text, "other").map(|c| (c.access_key, c.session_token));
        assert_eq!(o, Some(("C".into(), Some("T".into()))));
        assert!(profile_credentials(text, "missing").is_none());
    }

    /// The call's URL holds the web identity token in its query: a failed call does not show it.
    #[tokio::test]
    async fn a_failed_sts_call_does_not_show_the_token() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let error = assume_role_with_web_identity(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{closed}"),
            "web-identity-token-value",
            "arn:aws:iam::1:role/r",
            "sluice",
        )
        .await
        .expect_err("nothing listens");
        let text = error.to_string();
        assert!(!text.contains("web-identity-token-value"), "{text}");
        assert!(text.contains("failed to call STS"), "{text}");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let c = Credentials {
            access_key: "AK".into(),
            secret_key: "very-secret".into(),
            session_token: Some("tok".into()),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AK") && !shown.contains("very-secret") && !shown.contains("tok"));
    }
}
