//! gjson/sjson paths as sensors use them (`sluice_sensor::jsonpath`): `PATH\n---\nJSON`.
//! Reads the path with gjson and with the parsed-document fast path (which must agree where it
//! answers), converts the result as Go's gjson does, and writes a value at the path as sjson does.
#![no_main]

use sluice_sensor::jsonpath;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((path, json)) = sluice_fuzz::split(data) else {
        return;
    };
    let root = sluice_fuzz::json_or_string(json);
    // The canonical text (no duplicate keys, which the parsed form cannot hold), as filters read it.
    let text = root.to_string();
    let found = gjson::get(&text, path);
    let _ = jsonpath::GoKind::of(&found);
    let _ = jsonpath::go_string(&found);
    let _ = jsonpath::go_float(&found);
    let _ = jsonpath::go_bool(&found);
    let _ = jsonpath::go_parse_bool(path);
    let _ = jsonpath::go_parse_float(path);
    let _ = jsonpath::go_number_string(path);
    if let Some(fast) = jsonpath::GjsonPath::new(path).get_parsed(&root) {
        match fast {
            Some(value) => {
                assert!(
                    found.exists(),
                    "fast path found {value} at {path:?}, gjson nothing"
                );
                let _ = jsonpath::go_string_of(value);
                let _ = jsonpath::go_float_of(value);
                let _ = jsonpath::go_bool_of(value);
                let by_gjson: serde_json::Value =
                    serde_json::from_str(found.json()).expect("gjson returns JSON");
                assert_eq!(&by_gjson, value, "fast path and gjson disagree at {path:?}");
            }
            None => assert!(
                !found.exists(),
                "gjson found {} at {path:?}, the fast path nothing",
                found.json()
            ),
        }
    }
    let mut target = root.clone();
    if jsonpath::set_path(&mut target, path, serde_json::json!("fuzz")).is_ok() {
        let _ = target.to_string();
    }
});
