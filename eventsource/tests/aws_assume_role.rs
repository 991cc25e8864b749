//! `roleARN`: STS `AssumeRole` against moto's STS (S3_ENDPOINT, from `scripts/services.sh start s3`).
//! The provider signs the call with the base keys and hands out the role's temporary credentials,
//! cached until shortly before they expire.

use std::sync::Arc;

use sluice_eventsource::aws::credentials::AssumedRole;
use sluice_eventsource::aws::{Credentials, CredentialsProvider};
use sluice_eventsource::testing::setting;

#[tokio::test]
#[ignore = "needs moto: scripts/test starts it and runs ignored tests"]
async fn assumes_the_role_and_caches_its_temporary_credentials() {
    let endpoint = setting("S3_ENDPOINT");
    let base = CredentialsProvider::Static(Credentials {
        access_key: "testing".into(),
        secret_key: "testing".into(),
        session_token: None,
    });
    let provider = CredentialsProvider::Assumed(Arc::new(AssumedRole::new(
        base,
        "arn:aws:iam::123456789012:role/sluice-it",
        endpoint,
    )));
    let http = reqwest::Client::new();
    let first = provider
        .get(&http, "us-east-1")
        .await
        .expect("moto's STS hands out the role's credentials");
    assert_ne!(first.access_key, "testing", "the role's keys, not the base keys");
    assert!(
        first.session_token.as_deref().is_some_and(|t| !t.is_empty()),
        "temporary credentials carry a session token"
    );
    let second = provider
        .get(&http, "us-east-1")
        .await
        .expect("the cached credentials are handed out again");
    assert_eq!(
        first.access_key, second.access_key,
        "cached until shortly before they expire"
    );
}
