//! Pure mapping of an AMQP delivery to upstream's event data, and of `queueDeclare.arguments` to
//! an AMQP field table. No I/O, unit-tested below.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use serde_json::{json, Value};

use crate::clients::body::body_value;

/// Go's `time.Time.String()` in UTC, as upstream renders the AMQP `timestamp` property
/// (`2024-05-01 12:00:00 +0000 UTC`); an absent timestamp is Go's zero time.
pub fn go_time_string(seconds: Option<u64>) -> String {
    let t = seconds
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    match t {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        None => "0001-01-01 00:00:00 +0000 UTC".to_owned(),
    }
}

fn short(s: &Option<ShortString>) -> &str {
    s.as_ref().map_or("", ShortString::as_str)
}

/// Upstream's `AMQPEventData`: the message properties, where it came from, and the body
/// (JSON when `json_body` and it parses, else base64 as Go marshals bytes).
pub fn event_data(
    properties: &BasicProperties,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    json_body: bool,
    metadata: Option<&BTreeMap<String, String>>,
) -> Value {
    let mut data = json!({
        "contentType": short(properties.content_type()),
        "contentEncoding": short(properties.content_encoding()),
        "deliveryMode": properties.delivery_mode().unwrap_or(0),
        "priority": properties.priority().unwrap_or(0),
        "correlationId": short(properties.correlation_id()),
        "replyTo": short(properties.reply_to()),
        "expiration": short(properties.expiration()),
        "messageId": short(properties.message_id()),
        "timestamp": go_time_string(*properties.timestamp()),
        "type": short(properties.kind()),
        "appId": short(properties.app_id()),
        "exchange": exchange,
        "routingKey": routing_key,
        "body": body_value(body, json_body),
    });
    if let (Some(m), Some(obj)) = (metadata, data.as_object_mut()) {
        obj.insert("metadata".into(), json!(m));
    }
    data
}

/// `queueDeclare.arguments` (a YAML or JSON object in a string, as upstream) → a field table.
pub fn arguments_table(arguments: Option<&str>) -> Result<FieldTable, String> {
    let mut table = FieldTable::default();
    let Some(text) = arguments.filter(|s| !s.trim().is_empty()) else {
        return Ok(table);
    };
    let value: Value = serde_yaml::from_str(text)
        .map_err(|e| format!("queueDeclare.arguments: not a YAML or JSON object: {e}"))?;
    let Value::Object(map) = value else {
        return Err(
            "queueDeclare.arguments: must be an object, e.g. '{\"x-queue-type\": \"quorum\"}'".into(),
        );
    };
    for (k, v) in map {
        table.insert(ShortString::from(k), amqp_value(v));
    }
    Ok(table)
}

fn amqp_value(v: Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s)),
        Value::Array(items) => {
            let mut array = FieldArray::default();
            for item in items {
                array.push(amqp_value(item));
            }
            AMQPValue::FieldArray(array)
        }
        Value::Object(map) => {
            let mut table = FieldTable::default();
            for (k, v) in map {
                table.insert(ShortString::from(k), amqp_value(v));
            }
            AMQPValue::FieldTable(table)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_go_time_strings() {
        assert_eq!(
            go_time_string(Some(1_714_564_800)),
            "2024-05-01 12:00:00 +0000 UTC"
        );
        assert_eq!(go_time_string(None), "0001-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn every_property_is_mapped_with_upstream_names() {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(2)
            .with_priority(5)
            .with_correlation_id("c-1".into())
            .with_reply_to("replies".into())
            .with_expiration("60000".into())
            .with_message_id("m-1".into())
            .with_timestamp(1_714_564_800)
            .with_type("order.created".into())
            .with_app_id("shop".into());
        let meta = BTreeMap::from([("team".to_string(), "ops".to_string())]);
        let data = event_data(
            &props,
            "orders",
            "order.created",
            br#"{"id":7}"#,
            true,
            Some(&meta),
        );
        assert_eq!(
            data,
            json!({
                "contentType": "application/json", "contentEncoding": "utf-8", "deliveryMode": 2,
                "priority": 5, "correlationId": "c-1", "replyTo": "replies", "expiration": "60000",
                "messageId": "m-1", "timestamp": "2024-05-01 12:00:00 +0000 UTC",
                "type": "order.created", "appId": "shop", "exchange": "orders",
                "routingKey": "order.created", "body": {"id": 7}, "metadata": {"team": "ops"}
            })
        );
    }

    #[test]
    fn absent_properties_are_empty_and_bodies_base64_without_json_body() {
        let data = event_data(&BasicProperties::default(), "x", "k", b"hi", false, None);
        assert_eq!(data["contentType"], json!(""));
        assert_eq!(data["deliveryMode"], json!(0));
        assert_eq!(data["body"], json!("aGk="));
        assert!(data.get("metadata").is_none());
        // jsonBody with a body that is not JSON: base64, never dropped.
        let data = event_data(&BasicProperties::default(), "x", "k", b"{oops", true, None);
        assert_eq!(data["body"], json!("e29vcHM="));
    }

    #[test]
    fn queue_arguments_parse_from_yaml_or_json() {
        let t = arguments_table(Some(r#"{"x-queue-type": "quorum", "x-max-length": 10}"#)).expect("json");
        assert_eq!(
            t.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(t.inner().get("x-max-length"), Some(&AMQPValue::LongLongInt(10)));
        let t = arguments_table(Some("x-queue-type: classic\n")).expect("yaml");
        assert_eq!(t.inner().len(), 1);
        assert!(arguments_table(Some("[1, 2]")).is_err());
        assert!(arguments_table(None).expect("none").inner().is_empty());
    }
}
