//! SQS and SNS message decoding: `RECEIVE\n---\nSNS`. RECEIVE is an SQS `ReceiveMessage` answer
//! (JSON protocol); each message becomes the `sqs` kind's event data (with and without `jsonBody`),
//! which must survive the bus's encoding. SNS is an SNS HTTP delivery, decoded and put in the
//! canonical form its signature covers.
#![no_main]

use std::collections::BTreeMap;

use sluice_eventsource::sources::{sns, sqs};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((receive, sns_text)) = sluice_fuzz::split(data) else {
        return;
    };
    if let Ok(out) = serde_json::from_str::<serde_json::Value>(receive) {
        let metadata = BTreeMap::from([("team".to_owned(), "fuzz".to_owned())]);
        for message in sluice_eventsource::aws::sqs_messages(&out) {
            for json_body in [false, true] {
                let data = sqs::event_data(&message, json_body, Some(&metadata));
                let _ = sqs::decode(&message, json_body, None);
                sluice_fuzz::assert_round_trip(&sluice_fuzz::event_with(data));
            }
        }
    }
    if let Ok(message) = serde_json::from_str::<sns::verify::SnsMessage>(sns_text) {
        let _ = sns::verify::canonical_string(&message);
    }
});
