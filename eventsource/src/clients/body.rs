//! The `body` of a message-broker event (nats, jetstream, mqtt, amqp, sqs, redis, websocket, …), as
//! upstream builds it.

use base64::Engine as _;
use serde_json::Value;

/// Parsed JSON with `jsonBody` when the payload parses, else base64 of the raw bytes (upstream
/// marshals the bytes, which Go encodes as base64), so a payload that is not JSON is published
/// rather than dropped.
pub fn body_value(payload: &[u8], json_body: bool) -> Value {
    if json_body {
        if let Ok(v) = serde_json::from_slice::<Value>(payload) {
            return v;
        }
    }
    Value::String(base64::engine::general_purpose::STANDARD.encode(payload))
}

/// As [`body_value`], except that without `jsonBody` the payload is its text (invalid UTF-8
/// replaced), not base64: upstream's `redis` kind publishes its string payloads so, and the
/// `websocket` kind its text messages. With `jsonBody`, parsed JSON, else base64 of the raw bytes.
pub fn text_body_value(payload: &[u8], json_body: bool) -> Value {
    if json_body {
        if let Ok(v) = serde_json::from_slice::<Value>(payload) {
            return v;
        }
        return Value::String(base64::engine::general_purpose::STANDARD.encode(payload));
    }
    Value::String(String::from_utf8_lossy(payload).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_when_asked_and_parsable_else_base64() {
        assert_eq!(body_value(b"{\"a\":1}", true), json!({"a": 1}));
        assert_eq!(body_value(b"not json", true), json!("bm90IGpzb24="));
        assert_eq!(body_value(b"{\"a\":1}", false), json!("eyJhIjoxfQ=="));
    }
}
