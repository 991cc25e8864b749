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

/// Why a document is not an S3 notification. Each caller logs it (with its message id, never the
/// body) and counts it in `argo_events_events_processing_failed_total`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedNotification {
    /// `Records` is there but is not a list.
    #[error("failed to read the S3 notification: `Records` is {found}, not an array")]
    RecordsNotAnArray {
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A record is not a JSON object.
    #[error("failed to read the S3 notification: record {index} is {found}, not an object")]
    RecordNotAnObject {
        /// The record's position in `Records`.
        index: usize,
        /// The JSON type found instead.
        found: &'static str,
    },
    /// Neither `Records` nor an S3 test event.
    #[error("failed to read the S3 notification: the document has no `Records` and is not an s3:TestEvent")]
    NoRecords,
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The records of a notification document. Documents that carry no change on purpose have none:
/// the `s3:TestEvent` S3 sends when notifications are configured, and `"Records": []` or `null`
/// (what MinIO's Go encoder writes for an empty list). Anything else without a list of record
/// objects is an error, so a malformed notification is reported instead of becoming zero events.
pub fn records(document: &Value) -> Result<Vec<Value>, MalformedNotification> {
    let list = match document.get("Records") {
        Some(Value::Array(list)) => list,
        Some(Value::Null) => return Ok(Vec::new()),
        Some(other) => {
            return Err(MalformedNotification::RecordsNotAnArray {
                found: json_type(other),
            })
        }
        None if document["Event"] == "s3:TestEvent" => return Ok(Vec::new()),
        None => return Err(MalformedNotification::NoRecords),
    };
    if let Some((index, record)) = list.iter().enumerate().find(|(_, r)| !r.is_object()) {
        return Err(MalformedNotification::RecordNotAnObject {
            index,
            found: json_type(record),
        });
    }
    Ok(list.clone())
}

/// Bucket name and decoded key of a record.
pub fn bucket_and_key(record: &Value) -> Option<(String, String)> {
    let bucket = record["s3"]["bucket"]["name"].as_str()?.to_string();
    let key = decode_key(record["s3"]["object"]["key"].as_str()?);
    Some((bucket, key))
}

/// The event id of a record, a stable hash of what tells one change from another, so a
/// notification delivered twice has one id on the bus:
/// - bucket, key and change kind, with the object's version: its `versionId`, else its `eTag`;
/// - the notification's `sequencer` (which orders the changes of one key), when present.
///
/// A listed record has no sequencer, so it gets the id of a notification for the same object state
/// without one. When a record has neither a version nor a sequencer (an unversioned removal from a
/// store that sends no sequencer), nothing in those fields tells two changes of the key apart, and
/// empty strings in their place would give both one id, merging them on the bus. The id is then a
/// hash of the whole record, under its own `s3-record` prefix so it never equals an id of the
/// first form: a redelivered record keeps its id, and records that differ anywhere (`eventTime`,
/// request ids) get different ones.
pub fn event_id(record: &Value) -> Option<String> {
    let (bucket, key) = bucket_and_key(record)?;
    let kind = match object_event(record)? {
        S3ObjectEvent::Created => "created",
        S3ObjectEvent::Removed => "removed",
    };
    let object = &record["s3"]["object"];
    let present = |field: &str| object[field].as_str().filter(|v| !v.is_empty());
    let version = present("versionId").or_else(|| present("eTag"));
    let sequencer = present("sequencer");
    if version.is_none() && sequencer.is_none() {
        return Some(deterministic_id(&["s3-record", &record.to_string()]));
    }
    Some(deterministic_id(&[
        "s3",
        &bucket,
        &key,
        version.unwrap_or(""),
        sequencer.unwrap_or(""),
        kind,
    ]))
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
        let recs = records(&notification()).expect("a notification");
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
        assert!(records(&json!({"Event": "s3:TestEvent"}))
            .expect("a test event")
            .is_empty());
    }

    #[test]
    fn filters_on_prefix_suffix_and_kind() {
        let recs = records(&notification()).expect("a notification");
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
        let mut from_notification = records(&notification()).expect("a notification")[0].clone();
        from_notification["s3"]["object"]["sequencer"] = Value::Null;
        assert_eq!(event_id(&listed), event_id(&from_notification));
    }

    #[test]
    fn malformed_notifications_are_errors_not_zero_records() {
        for empty in [
            json!({"Records": []}),
            json!({"Records": null}),
            json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "photos"}),
        ] {
            assert_eq!(records(&empty), Ok(Vec::new()), "{empty}");
        }
        assert_eq!(
            records(&json!({"Records": "oops"})),
            Err(MalformedNotification::RecordsNotAnArray { found: "a string" })
        );
        assert_eq!(
            records(&json!({"Records": [{"eventName": "ObjectCreated:Put"}, 7]})),
            Err(MalformedNotification::RecordNotAnObject {
                index: 1,
                found: "a number"
            })
        );
        // An SNS envelope delivered to SQS without raw message delivery: the records are inside
        // `Message` as text, so this is not a notification this decoder can read.
        assert_eq!(
            records(&json!({"Type": "Notification", "Message": "{\"Records\":[]}"})),
            Err(MalformedNotification::NoRecords)
        );
        assert_eq!(records(&json!([1, 2])), Err(MalformedNotification::NoRecords));
    }

    #[test]
    fn a_record_without_version_or_sequencer_gets_an_id_of_its_own() {
        // Two deletions of one key in an unversioned bucket, from a store that sends no sequencer.
        // Before, both ids hashed `""` for the version and the sequencer, so the bus kept one.
        let delete = |time: &str| {
            json!({"eventName": "ObjectRemoved:Delete", "eventTime": time,
                   "s3": {"bucket": {"name": "photos"}, "object": {"key": "old.txt", "eTag": ""}}})
        };
        let first = event_id(&delete("2026-03-01T10:00:00.000Z")).expect("an id");
        let second = event_id(&delete("2026-03-01T11:00:00.000Z")).expect("an id");
        assert_ne!(first, second, "two different removals must not merge");
        assert_eq!(
            event_id(&delete("2026-03-01T10:00:00.000Z")),
            Some(first.clone()),
            "a redelivered record keeps its id"
        );

        // The same fields with a sequencer (or a version) take the usual form, and differ.
        let mut sequenced = delete("2026-03-01T10:00:00.000Z");
        sequenced["s3"]["object"]["sequencer"] = json!("17A");
        let sequenced_id = event_id(&sequenced).expect("an id");
        assert_ne!(sequenced_id, first);
        let mut other = sequenced.clone();
        other["eventTime"] = json!("2026-03-01T11:00:00.000Z");
        assert_eq!(
            event_id(&other),
            Some(sequenced_id),
            "the sequencer, not the time, tells changes apart"
        );
    }

    #[test]
    fn key_codec_round_trips() {
        for key in ["a b/c+d%e.txt", "ünï/çødé", "plain/key.json", "100%"] {
            assert_eq!(decode_key(&encode_key(key)), key);
        }
    }
}
