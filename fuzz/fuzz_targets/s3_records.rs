//! S3 notification decoding (the `s3` kind's SQS mode and the `minio` kind's listen stream): a
//! stream of notification documents, one per line, as MinIO sends them (one line is an SQS body).
//! Checks: every wanted record has an event id (else it would be dropped), and object keys
//! survive encoding and decoding.
#![no_main]

use sluice_crds::eventsource::S3ObjectEvent;
use sluice_eventsource::clients::s3_records;
use sluice_eventsource::sources::minio;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut buffer = data.to_vec();
    let mut lines = minio::drain_lines(&mut buffer);
    // The rest of the stream, as the last line when it ends without a newline.
    lines.push(buffer);
    for line in lines {
        let Ok(doc) = minio::document(&line) else {
            continue;
        };
        let _ = minio::document_id(&doc);
        let _ = minio::event_data(&doc, None);
        let records = s3_records::records(&doc).expect("a document has records");
        for record in &records {
            let kinds = [S3ObjectEvent::Created, S3ObjectEvent::Removed];
            if s3_records::wanted(record, None, None, &kinds) {
                assert!(
                    s3_records::event_id(record).is_some(),
                    "a wanted record has no event id: {record}"
                );
            }
            let _ = s3_records::wanted(record, Some("a"), Some(".json"), &kinds[..1]);
            if let Some((_, key)) = s3_records::bucket_and_key(record) {
                let encoded = s3_records::encode_key(&key);
                assert_eq!(
                    s3_records::decode_key(&encoded),
                    key,
                    "key {key:?} does not survive encoding"
                );
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = s3_records::decode_key(text);
    }
});
