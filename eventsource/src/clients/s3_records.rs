//! S3 event records, shared by the `s3` and `minio` kinds: decoding notifications
//! (`{"Records": [...]}` as S3 sends them to SQS, SNS or MinIO's listen API), building the same
//! record shape from a bucket listing, event ids, and the prefix/suffix/event-kind filters. Pure
//! functions, no I/O.

use serde_json::{json, Value};
use sluice_crds::eventsource::S3ObjectEvent;
use sluice_eventbus::deterministic_id;

/// What kind of change a record reports, from its `eventName` (`ObjectCreated:Put`,
/// `s3:ObjectRemoved:Delete`, …); `None` for other notifications (replication, restore, test events).
pub fn object_event(record: &Value) -> Option<S3ObjectEvent> {
    let name = record["eventName"].as_str()?;
    let name = name.strip_prefix("s3:").unwrap_or(name);
    if name.starts_with("ObjectCreated:") {
        Some(S3ObjectEvent::Created)
    } else if name.starts_with("ObjectRemoved:") {
        Some(S3ObjectEvent::Removed)
    } else {
        None
    }
}

/// Decodes an object key as notifications carry it (URL-encoded, spaces as `+`).
pub fn decode_key(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a key the way S3 notifications carry it.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/' | b'*') => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The records of a notification document; an S3 test event or any other document has none.
pub fn records(document: &Value) -> Vec<Value> {
    document["Records"].as_array().cloned().unwrap_or_default()
}

/// Bucket name and decoded key of a record.
pub fn bucket_and_key(record: &Value) -> Option<(String, String)> {
    let bucket = record["s3"]["bucket"]["name"].as_str()?.to_string();
    let key = decode_key(record["s3"]["object"]["key"].as_str()?);
    Some((bucket, key))
}

/// The event id of a record: bucket / key / versionId-or-eTag (/ sequencer when present), and the
/// change kind, hashed into a stable id. A notification delivered twice has one id on the bus.
pub fn event_id(record: &Value) -> Option<String> {
    let (bucket, key) = bucket_and_key(record)?;
    let kind = match object_event(record)? {
        S3ObjectEvent::Created => "created",
        S3ObjectEvent::Removed => "removed",
    };
    let object = &record["s3"]["object"];
    let version = object["versionId"]
        .as_str()
        .filter(|v| !v.is_empty())
        .or(object["eTag"].as_str())
        .unwrap_or_default();
    let sequencer = object["sequencer"].as_str().unwrap_or_default();
    Some(deterministic_id(&["s3", &bucket, &key, version, sequencer, kind]))
}

/// True when the record passes `prefix`, `suffix` and the wanted change kinds.
pub fn wanted(record: &Value, prefix: Option<&str>, suffix: Option<&str>, kinds: &[S3ObjectEvent]) -> bool {
    let Some(kind) = object_event(record) else {
        return false;
    };
    if !kinds.is_empty() && !kinds.contains(&kind) {
        return false;
    }
    let Some((_, key)) = bucket_and_key(record) else {
        return false;
    };
    prefix.is_none_or(|p| key.starts_with(p)) && suffix.is_none_or(|s| key.ends_with(s))
}

/// A record in AWS's shape for a change seen by listing (`eventTime` = the object's LastModified for
/// a creation, `now` for a removal).
pub fn listed_record(
    region: &str,
    bucket: &str,
    key: &str,
    etag: &str,
    size: Option<u64>,
    kind: S3ObjectEvent,
    event_time: &str,
) -> Value {
    let mut object = json!({ "key": encode_key(key), "eTag": etag });
    if let Some(size) = size {
        object["size"] = json!(size);
    }
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": event_time,
        "eventName": match kind {
            S3ObjectEvent::Created => "ObjectCreated:Put",
            S3ObjectEvent::Removed => "ObjectRemoved:Delete",
        },
        "userIdentity": { "principalId": "" },
        "requestParameters": { "sourceIPAddress": "" },
        "responseElements": {},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "sluice-list",
            "bucket": {
                "name": bucket,
                "ownerIdentity": { "principalId": "" },
                "arn": format!("arn:aws:s3:::{bucket}"),
            },
            "object": object,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification() -> Value {
        json!({"Records": [
            {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
             "eventTime": "2026-03-01T10:00:00.000Z", "eventName": "ObjectCreated:Put",
             "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "photos", "arn": "arn:aws:s3:::photos"},
                    "object": {"key": "holiday/my+photo%281%29.jpg", "size": 1024, "eTag": "abc",
                               "sequencer": "0055AED6DCD90281E5"}}},
            {"eventVersion": "2.1", "eventSource": "minio:s3", "eventName": "s3:ObjectRemoved:Delete",
             "s3": {"bucket": {"name": "photos"}, "object": {"key": "old.txt", "sequencer": "17A"}}},
            {"eventName": "ObjectRestore:Completed", "s3": {"bucket": {"name": "photos"}, "object": {"key": "x"}}}
        ]})
    }

    #[test]
    fn decodes_keys_kinds_and_ids() {
        let recs = records(&notification());
        assert_eq!(recs.len(), 3);
        assert_eq!(
            bucket_and_key(&recs[0]),
            Some(("photos".into(), "holiday/my photo(1).jpg".into()))
        );
        assert_eq!(object_event(&recs[0]), Some(S3ObjectEvent::Created));
        assert_eq!(object_event(&recs[1]), Some(S3ObjectEvent::Removed));
        assert_eq!(object_event(&recs[2]), None);
        let a = event_id(&recs[0]);
        assert!(a.is_some());
        assert_eq!(a, event_id(&recs[0].clone()));
        assert_ne!(a, event_id(&recs[1]));
        assert_eq!(event_id(&recs[2]), None);
        assert!(records(&json!({"Event": "s3:TestEvent"})).is_empty());
    }

    #[test]
    fn filters_on_prefix_suffix_and_kind() {
        let recs = records(&notification());
        assert!(wanted(&recs[0], Some("holiday/"), Some(".jpg"), &[]));
        assert!(!wanted(&recs[0], Some("work/"), None, &[]));
        assert!(!wanted(&recs[0], None, Some(".png"), &[]));
        assert!(!wanted(&recs[0], None, None, &[S3ObjectEvent::Removed]));
        assert!(wanted(&recs[1], None, None, &[S3ObjectEvent::Removed]));
        assert!(!wanted(&recs[2], None, None, &[]));
    }

    #[test]
    fn a_listed_record_has_the_notification_shape_and_id() {
        let listed = listed_record(
            "eu-west-1",
            "photos",
            "holiday/my photo(1).jpg",
            "abc",
            Some(1024),
            S3ObjectEvent::Created,
            "2026-03-01T10:00:00.000Z",
        );
        assert_eq!(listed["s3"]["object"]["key"], "holiday/my+photo%281%29.jpg");
        assert_eq!(
            bucket_and_key(&listed),
            Some(("photos".into(), "holiday/my photo(1).jpg".into()))
        );
        assert_eq!(object_event(&listed), Some(S3ObjectEvent::Created));
        // Same bucket, key and ETag as the notification, without the notification's sequencer.
        let mut from_notification = records(&notification())[0].clone();
        from_notification["s3"]["object"]["sequencer"] = Value::Null;
        assert_eq!(event_id(&listed), event_id(&from_notification));
    }

    #[test]
    fn key_codec_round_trips() {
        for key in ["a b/c+d%e.txt", "ünï/çødé", "plain/key.json", "100%"] {
            assert_eq!(decode_key(&encode_key(key)), key);
        }
    }
}
