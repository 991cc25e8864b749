use super::*;

use chrono::TimeZone;
use rdkafka::message::{Header, OwnedHeaders, Timestamp};

fn message(payload: Option<&[u8]>) -> OwnedMessage {
    let headers = OwnedHeaders::new().insert(Header {
        key: "trace",
        value: Some("abc"),
    });
    OwnedMessage::new(
        payload.map(<[u8]>::to_vec),
        Some(b"k-1".to_vec()),
        "orders".into(),
        Timestamp::CreateTime(1_700_000_000_120),
        3,
        42,
        Some(headers),
    )
}

#[test]
fn data_has_upstreams_shape() {
    let t = Utc
        .timestamp_millis_opt(1_700_000_000_120)
        .single()
        .unwrap_or_default();
    let meta: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
    let (data, not_json) = record_data(&message(Some(b"{\"n\":1}")), true, Some(&meta), t);
    assert!(!not_json);
    assert_eq!(
        data,
        serde_json::json!({
            "topic": "orders", "key": "k-1", "partition": 3, "body": {"n": 1},
            "timestamp": "2023-11-14 22:13:20.12 +0000 UTC",
            "headers": {"trace": "abc"}, "metadata": {"team": "a"}
        })
    );
}

#[test]
fn non_json_body_is_base64_never_dropped() {
    let t = Utc::now();
    let (data, not_json) = record_data(&message(Some(b"not json")), true, None, t);
    assert!(not_json);
    assert_eq!(data["body"], "bm90IGpzb24=");
    // Without jsonBody the raw bytes are base64, as upstream marshals []byte.
    let (data, not_json) = record_data(&message(Some(b"{\"n\":1}")), false, None, t);
    assert!(!not_json);
    assert_eq!(data["body"], "eyJuIjoxfQ==");
    assert!(data.get("metadata").is_none());
    let (data, _) = record_data(&message(None), true, None, t);
    assert_eq!(data["body"], Value::Null);
}

#[test]
fn go_timestamps_trim_the_fraction() {
    let whole = Utc.timestamp_opt(1_700_000_000, 0).single().unwrap_or_default();
    assert_eq!(go_timestamp(whole), "2023-11-14 22:13:20 +0000 UTC");
    let ms = Utc
        .timestamp_millis_opt(1_700_000_000_005)
        .single()
        .unwrap_or_default();
    assert_eq!(go_timestamp(ms), "2023-11-14 22:13:20.005 +0000 UTC");
}

#[test]
fn ids_are_deterministic_per_record() {
    let a = event_id("es", "ev", "t", 0, 7);
    assert_eq!(a, event_id("es", "ev", "t", 0, 7));
    assert_ne!(a, event_id("es", "ev", "t", 1, 7));
    assert_ne!(a, event_id("es", "ev", "t", 0, 8));
    assert_ne!(a, event_id("es", "other", "t", 0, 7));
}

#[test]
fn rebalance_strategies_map_to_librdkafka() {
    assert_eq!(client::assignment_strategy(None), Ok("range"));
    assert_eq!(client::assignment_strategy(Some("roundrobin")), Ok("roundrobin"));
    assert_eq!(
        client::assignment_strategy(Some("sticky")),
        Ok("cooperative-sticky")
    );
    assert!(client::assignment_strategy(Some("fair")).is_err());
}

fn secrets() -> crate::testing::Secrets {
    crate::testing::Secrets::default()
}

fn spec(yaml: &str) -> KafkaEventSource {
    serde_yaml::from_str(yaml).expect("the test spec parses")
}

#[test]
fn build_checks_fields_and_names_them() {
    let err = |y: &str| {
        KafkaUpstream::build("es", "ev", &spec(y), &secrets())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(err("{url: '', topic: t, partition: '0'}").contains("spec.kafka.ev.url"));
    assert!(err("{url: 'h:1', partition: '0'}").contains("spec.kafka.ev.topic"));
    assert!(err("{url: 'h:1', topic: t}").contains("spec.kafka.ev.partition"));
    assert!(
        err("{url: 'h:1', topic: t, consumerGroup: {groupName: g, rebalanceStrategy: x}}")
            .contains("consumerGroup.rebalanceStrategy")
    );
    assert!(
        err("{url: 'h:1', topic: t, partition: '0', sasl: {mechanism: PLAIN}}")
            .contains("userSecret and passwordSecret")
    );
    assert!(
        err("{url: 'h:1', topic: t, partition: '0', schemaRegistry: {url: 'http://r', schemaId: 1}}")
            .contains("schemaRegistry")
    );
    let ok = KafkaUpstream::build(
        "es",
        "ev",
        &spec("{url: 'a:1, b:2', topic: t, consumerGroup: {groupName: g, oldest: true}}"),
        &secrets(),
    )
    .expect("a consumer group spec builds");
    assert_eq!(ok.mode, Mode::Group);
    assert_eq!(ok.settings["bootstrap.servers"], "a:1,b:2");
    assert_eq!(ok.settings["auto.offset.reset"], "earliest");
    assert_eq!(ok.settings["enable.auto.offset.store"], "false");
    assert_eq!(ok.settings["security.protocol"], "plaintext");
}

#[test]
fn a_records_event_has_its_position_as_id_and_its_timestamp_as_time() {
    let u = KafkaUpstream::build(
        "es",
        "ev",
        &spec("{url: 'h:1', topic: orders, partition: '3', jsonBody: true}"),
        &secrets(),
    )
    .expect("a partition-mode kafka spec builds");
    let now = Utc.timestamp_opt(1_800_000_000, 0).single().unwrap_or_default();
    let (draft, not_json) = u.draft(&message(Some(b"{\"n\":1}")), now);
    assert!(!not_json);
    assert_eq!(
        draft.id.as_deref(),
        Some(event_id("es", "ev", "orders", 3, 42).as_str())
    );
    assert_eq!(
        draft.time,
        Utc.timestamp_millis_opt(1_700_000_000_120).single(),
        "the record's timestamp, not now"
    );
    assert_eq!(draft.data["body"], serde_json::json!({"n": 1}));
    let untimed = OwnedMessage::new(None, None, "orders".into(), Timestamp::NotAvailable, 3, 43, None);
    let (draft, _) = u.draft(&untimed, now);
    assert_eq!(draft.time, Some(now), "now when the record has no timestamp");
    assert_eq!(draft.data["timestamp"], "2027-01-15 08:00:00 +0000 UTC");
}
