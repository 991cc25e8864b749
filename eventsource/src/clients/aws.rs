//! The AWS signing client of a source (sqs, s3, minio, sns), built from its secret references.

use std::sync::Arc;

use crate::aws::{AwsClient, Credentials, CredentialsProvider};
use crate::{resolve_secret, BuildError, SourceContext};

/// Builds the signing client of an AWS source from its secret references; `role` is
/// (`roleARN`, STS endpoint) when the source assumes a role.
#[allow(clippy::too_many_arguments)] // reason: the three secret references and their context
pub fn aws_client(
    event_source: &str,
    event_name: &str,
    ctx: &SourceContext,
    access_key: Option<&sluice_crds::common::SecretKeySelector>,
    secret_key: Option<&sluice_crds::common::SecretKeySelector>,
    session_token: Option<&sluice_crds::common::SecretKeySelector>,
    region: &str,
    role_arn: Option<&str>,
    endpoint: Option<&str>,
) -> Result<AwsClient, BuildError> {
    let provider =
        match (access_key, secret_key) {
            (Some(a), Some(s)) => CredentialsProvider::Static(Credentials {
                access_key: resolve_secret(ctx.secrets.as_ref(), event_source, event_name, a)?,
                secret_key: resolve_secret(ctx.secrets.as_ref(), event_source, event_name, s)?,
                session_token: session_token
                    .map(|t| resolve_secret(ctx.secrets.as_ref(), event_source, event_name, t))
                    .transpose()?,
            }),
            (None, None) => CredentialsProvider::default_chain(),
            _ => return Err(BuildError::InvalidSpec {
                event_source: event_source.into(),
                event: event_name.into(),
                reason:
                    "set both accessKey and secretKey, or neither (to use the AWS default credential chain)"
                        .into(),
            }),
        };
    // `roleARN`: the keys above only call STS AssumeRole; the source uses the role's credentials.
    // STS is reached at the spec's `endpoint` when it has one (a local stack), else AWS's.
    let provider = match role_arn.map(str::trim) {
        Some(role_arn) if !role_arn.is_empty() => {
            let sts = crate::aws::sts_endpoint(endpoint, region);
            CredentialsProvider::Assumed(Arc::new(crate::aws::credentials::AssumedRole::new(
                provider, role_arn, &sts,
            )))
        }
        _ => provider,
    };
    Ok(AwsClient::new(provider, region))
}
