//! The `kafka` trigger: produces one record per firing to a Kafka topic, through librdkafka.
//!
//! - **Record**: the value is built by `payload` parameters (as upstream); the spec's own
//!   `parameters` are applied first, so topic or key can come from the event. `partitioningKey` is
//!   the record key, so records of one key land on one partition in order; unset, the record has no
//!   key. Headers: `headers`, `secureHeaders` (values read from Secrets/ConfigMaps at build, never
//!   logged) and the firing id as `Idempotency-Key`, so a consumer can drop a repeated firing.
//! - **Success**: the broker's delivery report — the firing succeeds only once the broker
//!   acknowledged the record with `requiredAcks` (1 the leader, default; -1 all in-sync replicas;
//!   0 none, where librdkafka reports success once the record was sent). Upstream counts a local
//!   enqueue as success; Sluice does not. An attempt gives up after 30 s (`message.timeout.ms`).
//! - **Errors**: broker/connection errors and timeouts are retryable; a record too large, an
//!   unknown or forbidden topic, rejected credentials or an invalid record are permanent.
//! - **Settings**: `compress` uses snappy; `flushFrequency` (ms) becomes librdkafka's `linger.ms`
//!   (unset: 0, since firings of a trigger are sent one at a time and lingering only adds latency);
//!   `version` is not needed (librdkafka negotiates); `partition` is deprecated upstream and
//!   ignored; `schemaRegistry` (Avro) is refused at build. One producer per broker list, made at
//!   the first firing and kept (librdkafka reconnects by itself).

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use sluice_crds::common::{SASLConfig, SecretKeySelector, TLSConfig};
use sluice_crds::sensor::KafkaTrigger as KafkaSpec;
use tokio::sync::Mutex;
use tracing::{debug, info};

use super::{BuildContext, BuildError, Outcome, Trigger, TriggerError};
use crate::firing::Firing;
use crate::params::{apply_to_typed, construct_payload};

/// How long one record may wait for its delivery report.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The header that carries the firing id.
pub const FIRING_ID_HEADER: &str = "Idempotency-Key";

/// A built `kafka` trigger.
pub struct KafkaTrigger {
    name: String,
    sensor: String,
    /// librdkafka settings other than the brokers (TLS, SASL, acks, compression); hold secrets.
    settings: BTreeMap<String, String>,
    /// `secureHeaders`, resolved.
    secure_headers: Vec<(String, String)>,
    producers: Mutex<HashMap<String, FutureProducer>>,
}

/// Producer settings from the spec; `resolve` reads a secret. Pure apart from `resolve`.
pub fn producer_settings(
    spec: &KafkaSpec,
    resolve: &dyn Fn(&SecretKeySelector) -> Result<String, BuildError>,
    invalid: &dyn Fn(&str, String) -> BuildError,
) -> Result<BTreeMap<String, String>, BuildError> {
    let mut s = BTreeMap::new();
    let acks = match spec.required_acks.unwrap_or(1) {
        0 => "0",
        1 => "1",
        -1 => "all",
        other => {
            return Err(invalid(
                "kafka.requiredAcks",
                format!("{other} is not one of 0, 1, -1"),
            ))
        }
    };
    s.insert("acks".into(), acks.into());
    if spec.compress {
        s.insert("compression.type".into(), "snappy".into());
    }
    let linger = match spec.flush_frequency {
        Some(ms) if ms < 0 => return Err(invalid("kafka.flushFrequency", format!("{ms} is negative"))),
        Some(ms) => ms,
        None => 0,
    };
    s.insert("linger.ms".into(), linger.to_string());
    s.insert(
        "message.timeout.ms".into(),
        DELIVERY_TIMEOUT.as_millis().to_string(),
    );
    security(&mut s, spec.tls.as_ref(), spec.sasl.as_ref(), resolve, invalid)?;
    Ok(s)
}

fn security(
    s: &mut BTreeMap<String, String>,
    tls: Option<&TLSConfig>,
    sasl: Option<&SASLConfig>,
    resolve: &dyn Fn(&SecretKeySelector) -> Result<String, BuildError>,
    invalid: &dyn Fn(&str, String) -> BuildError,
) -> Result<(), BuildError> {
    if let Some(tls) = tls {
        if let Some(sel) = &tls.ca_cert_secret {
            s.insert("ssl.ca.pem".into(), resolve(sel)?);
        }
        match (&tls.client_cert_secret, &tls.client_key_secret) {
            (Some(c), Some(k)) => {
                s.insert("ssl.certificate.pem".into(), resolve(c)?);
                s.insert("ssl.key.pem".into(), resolve(k)?);
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "kafka.tls",
                    "set both clientCertSecret and clientKeySecret for mutual TLS, or neither".into(),
                ))
            }
        }
        if tls.insecure_skip_verify {
            s.insert("enable.ssl.certificate.verification".into(), "false".into());
        }
    }
    if let Some(sasl) = sasl {
        let mechanism = match sasl.mechanism.as_deref().map(str::trim).unwrap_or("") {
            "" | "PLAIN" => "PLAIN",
            m @ ("SCRAM-SHA-256" | "SCRAM-SHA-512" | "GSSAPI") => m,
            other => {
                return Err(invalid(
                    "kafka.sasl.mechanism",
                    format!("{other:?} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI)"),
                ))
            }
        };
        s.insert("sasl.mechanism".into(), mechanism.into());
        match (&sasl.user_secret, &sasl.password_secret) {
            (Some(u), Some(p)) => {
                s.insert("sasl.username".into(), resolve(u)?);
                s.insert("sasl.password".into(), resolve(p)?);
            }
            _ if mechanism == "GSSAPI" => {}
            _ => {
                return Err(invalid(
                    "kafka.sasl",
                    "userSecret and passwordSecret are required".into(),
                ))
            }
        }
    }
    let protocol = match (tls.is_some(), sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    s.insert("security.protocol".into(), protocol.into());
    Ok(())
}

/// The broker list of `url` (comma-separated, spaces trimmed).
pub fn brokers(url: &str) -> String {
    url.split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a produce error may pass on retry.
pub fn is_retryable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    !matches!(
        error.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::MessageBatchTooLarge
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::Authentication
                | C::SaslAuthenticationFailed
                | C::InvalidTopic
                | C::UnknownTopic
                | C::UnsupportedCompressionType
        )
    )
}

impl KafkaTrigger {
    /// Checks `spec` and reads its secrets.
    pub fn build(name: &str, spec: &KafkaSpec, ctx: &BuildContext) -> Result<Self, BuildError> {
        let invalid = |field: &str, reason: String| BuildError::InvalidField {
            trigger: name.to_owned(),
            field: field.to_owned(),
            reason,
        };
        if spec.schema_registry.is_some() {
            return Err(BuildError::UnsupportedField {
                trigger: name.to_owned(),
                field: "kafka.schemaRegistry (Avro encoding)".into(),
            });
        }
        if spec.parameters.is_empty() {
            if brokers(&spec.url).is_empty() {
                return Err(invalid("kafka.url", "required, e.g. kafka:9092".into()));
            }
            if spec.topic.trim().is_empty() {
                return Err(invalid("kafka.topic", "required".into()));
            }
        }
        let resolve = |selector: &SecretKeySelector| {
            ctx.secrets
                .resolve_secret(selector)
                .map_err(|source| BuildError::ResolveSecret {
                    trigger: name.to_owned(),
                    source,
                })
        };
        let settings = producer_settings(spec, &resolve, &invalid)?;
        let mut secure_headers = Vec::new();
        for secure in &spec.secure_headers {
            let Some(from) = &secure.value_from else { continue };
            let value = match (&from.secret_key_ref, &from.config_map_key_ref) {
                (Some(secret), _) => ctx.secrets.resolve_secret(secret),
                (None, Some(config_map)) => ctx.secrets.resolve_config_map(config_map),
                (None, None) => continue,
            }
            .map_err(|source| BuildError::ResolveSecret {
                trigger: name.to_owned(),
                source,
            })?;
            secure_headers.push((secure.name.clone(), value));
        }
        Ok(Self {
            name: name.to_owned(),
            sensor: ctx.sensor.clone(),
            settings,
            secure_headers,
            producers: Mutex::new(HashMap::new()),
        })
    }

    /// The spec of this firing, parameters applied.
    fn spec(&self, firing: &Firing) -> Result<KafkaSpec, TriggerError> {
        let spec = firing
            .template
            .kafka
            .as_ref()
            .ok_or(TriggerError::MissingAction { kind: "kafka" })?;
        if spec.parameters.is_empty() {
            return Ok(spec.clone());
        }
        apply_to_typed(spec, &spec.parameters, &firing.events, "kafka trigger")
            .map_err(TriggerError::ApplyParams)
    }

    async fn producer(&self, brokers: &str) -> Result<FutureProducer, TriggerError> {
        let mut producers = self.producers.lock().await;
        if let Some(p) = producers.get(brokers) {
            return Ok(p.clone());
        }
        let mut config = rdkafka::ClientConfig::new();
        for (k, v) in &self.settings {
            config.set(k, v);
        }
        config.set("bootstrap.servers", brokers);
        config.set("client.id", format!("sluice-{}-{}", self.sensor, self.name));
        let producer: FutureProducer = config.create().map_err(|e| TriggerError::Publish {
            target: brokers.to_owned(),
            reason: format!("failed to create the Kafka producer: {e}"),
            retryable: false,
        })?;
        producers.insert(brokers.to_owned(), producer.clone());
        Ok(producer)
    }
}

#[async_trait]
impl Trigger for KafkaTrigger {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn attempt_timeout(&self) -> Duration {
        // Waiting for room in the producer queue and then for the delivery report are each bounded
        // by DELIVERY_TIMEOUT.
        2 * DELIVERY_TIMEOUT
    }

    fn describe(&self, firing: &Firing) -> Result<serde_json::Value, TriggerError> {
        let spec = self.spec(firing)?;
        let body = construct_payload(&spec.payload, &firing.events)
            .map_err(TriggerError::ApplyParams)?
            .unwrap_or_default();
        let body = serde_json::from_slice::<serde_json::Value>(&body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
        let mut headers = serde_json::Map::new();
        for (k, v) in &spec.headers {
            headers.insert(k.clone(), v.clone().into());
        }
        for (k, _) in &self.secure_headers {
            headers.insert(k.clone(), "***".into());
        }
        headers.insert(FIRING_ID_HEADER.into(), firing.id.to_string().into());
        Ok(serde_json::json!({
            "url": spec.url,
            "topic": spec.topic,
            "key": spec.partitioning_key,
            "headers": headers,
            "body": body,
        }))
    }

    async fn execute(&self, firing: &Firing) -> Result<Outcome, TriggerError> {
        let spec = self.spec(firing)?;
        let brokers = brokers(&spec.url);
        let topic = spec.topic.trim().to_owned();
        let target = format!("{brokers}/{topic}");
        let failed = |reason: String, retryable: bool| TriggerError::Publish {
            target: target.clone(),
            reason,
            retryable,
        };
        if brokers.is_empty() || topic.is_empty() {
            return Err(failed(
                "url and topic must be set (after parameters)".into(),
                false,
            ));
        }
        let body = construct_payload(&spec.payload, &firing.events)
            .map_err(TriggerError::ApplyParams)?
            .unwrap_or_default();
        let producer = self.producer(&brokers).await?;
        let id = firing.id.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(spec.headers.len() + self.secure_headers.len() + 1);
        for (k, v) in spec
            .headers
            .iter()
            .chain(self.secure_headers.iter().map(|(k, v)| (k, v)))
        {
            headers = headers.insert(Header {
                key: k.as_str(),
                value: Some(v.as_bytes()),
            });
        }
        headers = headers.insert(Header {
            key: FIRING_ID_HEADER,
            value: Some(id.as_bytes()),
        });
        let mut record = FutureRecord::to(&topic).payload(&body).headers(headers);
        if let Some(key) = spec.partitioning_key.as_deref() {
            record = record.key(key);
        }
        debug!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, topic = %topic, "producing");
        // Why await the delivery future: it resolves only with the broker's acknowledgement (or an
        // error), so success means the record is stored per `requiredAcks` — never a local enqueue.
        let delivered = producer
            .send(record, rdkafka::util::Timeout::After(DELIVERY_TIMEOUT))
            .await;
        match delivered {
            Ok(delivery) => {
                info!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, topic = %topic,
                    partition = delivery.partition, offset = delivery.offset, "kafka record delivered");
                Ok(Outcome::Published {
                    sequence: u64::try_from(delivery.offset).ok(),
                })
            }
            Err((error, _)) => {
                let retryable = is_retryable(&error);
                Err(failed(
                    format!("the broker did not take the record: {error}"),
                    retryable,
                ))
            }
        }
    }
}
