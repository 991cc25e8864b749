use std::sync::Arc;

use sluice_crds::common::{ConfigMapKeySelector, SecretKeySelector};

use super::*;
use crate::secrets::{SecretError, SecretResolver};
use crate::triggers::http::egress::HttpClients;

struct Secrets;

impl SecretResolver for Secrets {
    fn resolve_secret(&self, s: &SecretKeySelector) -> Result<String, SecretError> {
        match (s.name.as_str(), s.key.as_str()) {
            ("kafka", "user") => Ok("alice".into()),
            ("kafka", "password") => Ok("s3cret".into()),
            _ => Err(SecretError::ResolveSecret {
                name: s.name.clone(),
                key: s.key.clone(),
                path: "test".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    }
    fn resolve_config_map(&self, _: &ConfigMapKeySelector) -> Result<String, SecretError> {
        Err(SecretError::ResolveSecret {
            name: String::new(),
            key: String::new(),
            path: "test".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }
}

fn ctx() -> BuildContext {
    BuildContext {
        sensor: "s".into(),
        secrets: Arc::new(Secrets),
        http: HttpClients::from(reqwest::Client::new()),
        namespace: None,
    }
}

fn spec(yaml: &str) -> KafkaSpec {
    serde_yaml::from_str(yaml).expect("the test spec parses")
}

fn build_error(yaml: &str) -> String {
    KafkaTrigger::build("out", &spec(yaml), &ctx())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn build_refuses_bad_fields_by_path() {
    assert!(build_error("{topic: t}").contains("invalid `kafka.url`"));
    assert!(build_error("{url: 'h:1'}").contains("invalid `kafka.topic`"));
    assert!(build_error("{url: 'h:1', topic: t, requiredAcks: 2}").contains("kafka.requiredAcks"));
    assert!(
        build_error("{url: 'h:1', topic: t, schemaRegistry: {url: 'http://r', schemaId: 1}}")
            .contains("kafka.schemaRegistry")
    );
    assert!(build_error("{url: 'h:1', topic: t, sasl: {mechanism: PLAIN}}").contains("kafka.sasl"));
    assert!(build_error(
        "{url: 'h:1', topic: t, sasl: {userSecret: {name: kafka, key: nope}, passwordSecret: {name: kafka, key: password}}}"
    )
    .contains("failed to build trigger `out`"));
}

#[test]
fn settings_follow_the_spec() {
    let t = KafkaTrigger::build(
        "out",
        &spec(
            "{url: 'a:1, b:2', topic: t, requiredAcks: -1, compress: true, flushFrequency: 20, \
             sasl: {mechanism: SCRAM-SHA-512, userSecret: {name: kafka, key: user}, passwordSecret: {name: kafka, key: password}}}",
        ),
        &ctx(),
    )
    .expect("the test kafka trigger builds");
    assert_eq!(t.settings["acks"], "all");
    assert_eq!(t.settings["compression.type"], "snappy");
    assert_eq!(t.settings["linger.ms"], "20");
    assert_eq!(t.settings["security.protocol"], "sasl_plaintext");
    assert_eq!(t.settings["sasl.username"], "alice");
    assert_eq!(brokers("a:1, b:2"), "a:1,b:2");
    let default = KafkaTrigger::build("out", &spec("{url: 'h:1', topic: t}"), &ctx())
        .expect("a minimal kafka trigger builds");
    assert_eq!(default.settings["acks"], "1");
    assert_eq!(default.settings["linger.ms"], "0");
    assert_eq!(default.settings["security.protocol"], "plaintext");
}

#[test]
fn permanent_and_retryable_errors() {
    use rdkafka::types::RDKafkaErrorCode as C;
    assert!(!is_retryable(&KafkaError::MessageProduction(
        C::MessageSizeTooLarge
    )));
    assert!(!is_retryable(&KafkaError::MessageProduction(
        C::TopicAuthorizationFailed
    )));
    assert!(is_retryable(&KafkaError::MessageProduction(C::MessageTimedOut)));
    assert!(is_retryable(&KafkaError::MessageProduction(
        C::NotLeaderForPartition
    )));
}
