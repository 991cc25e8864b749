//! The CloudEvents 1.0 envelope every Sluice event travels in.
//!
//! [`Event`] wraps a [`cloudevents::Event`] from the `cloudevents-sdk` crate. The decision: the SDK
//! gives spec-checked attributes, extensions and (behind features, later) the HTTP and Kafka
//! bindings, so we do not re-implement the wire formats. The cost — an attribute map per event and
//! the SDK's serde path — is measured by the envelope baseline in `benches/embedded.rs` and, later,
//! by the end-to-end benchmark; if it shows up there, this newtype is the one place to change.
//!
//! Mapping from upstream Argo Events (the same attributes upstream's eventsources set):
//!
//! | attribute         | value                                                  |
//! |-------------------|--------------------------------------------------------|
//! | `specversion`     | `1.0`                                                  |
//! | `id`              | a random UUID v4, or [`deterministic_id`] of the upstream delivery |
//! | `source`          | the EventSource name (a relative URI-reference)        |
//! | `subject`         | the event name (the key inside the EventSource spec)   |
//! | `type`            | the event source kind, e.g. `webhook`, `github`        |
//! | `datacontenttype` | `application/json`                                     |
//! | `time`            | the publish time                                       |
//!
//! Invariants every [`Event`] holds (checked by [`EventBuilder::build`] and by
//! `TryFrom<cloudevents::Event>`, so also by [`Event::from_json`]):
//! - spec version 1.0; `id` and `type` are non-empty; `source` is a non-empty RFC 3986
//!   URI-reference; `subject`, when set, is non-empty;
//! - extension names are lowercase ASCII letters and digits and do not shadow a context attribute;
//! - data, when present, is JSON and `datacontenttype` is `application/json`. An incoming
//!   CloudEvent with string data becomes a JSON string; with binary data, a JSON string of the
//!   bytes when they are UTF-8, otherwise of their standard base64 encoding (what Go's
//!   `encoding/json` does with `[]byte`, so upstream consumers see the same). Binary or string data
//!   declared as JSON (`application/json`, `text/json`, `*+json`) is parsed as JSON first.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use cloudevents::event::{AttributesReader, AttributesWriter, Data, EventBuilderV10, ExtensionValue};
use cloudevents::EventBuilder as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The `datacontenttype` of every Sluice event with data.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// The UUID v5 namespace of [`deterministic_id`]: `Uuid::new_v5(&Uuid::NAMESPACE_URL,
/// b"https://sluice.dev/ns/event-id")`, written out so it can never change by accident (a test checks
/// the derivation). Changing it changes every deterministic event id, which breaks bus dedup across
/// an upgrade.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x1a13_00f5_90e9_5e37_beac_9098_a237_22fb);

/// Context attribute names an extension must not take (they would be serialized twice).
const RESERVED_NAMES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
];

/// What is wrong with one attribute of an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    /// The attribute is empty but must not be.
    #[error("must not be empty")]
    Empty,
    /// The attribute is not an RFC 3986 URI-reference.
    #[error("is not a URI-reference (RFC 3986); use letters, digits and `-._~/`, or percent-encode")]
    NotUriReference,
    /// The attribute is not an RFC 2046 media type.
    #[error("is not a media type (RFC 2046) like `application/json`")]
    NotMediaType,
    /// An extension name with characters other than `a-z` and `0-9`.
    #[error("extension names must be one or more lowercase ASCII letters or digits")]
    BadExtensionName,
    /// An extension name that is a context attribute's name.
    #[error("is the name of a context attribute, not usable as an extension")]
    ReservedExtensionName,
}

/// Why an event could not be built, converted, encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// [`EventBuilder::build`] found an invalid attribute.
    #[error("failed to build the event: attribute `{attribute}` {source}")]
    Build {
        /// The attribute's name (for extensions, the extension's name).
        attribute: String,
        /// What is wrong with it.
        source: AttributeError,
    },
    /// The CloudEvents SDK refused the attributes (not expected: the builder sets all it needs).
    #[error("failed to build the CloudEvent")]
    BuildCloudEvent(#[source] cloudevents::event::EventBuilderError),
    /// A CloudEvent (decoded or handed in) breaks one of the invariants of [`Event`].
    #[error("failed to convert the CloudEvent: attribute `{attribute}` {source}")]
    Convert {
        /// The attribute's name (for extensions, the extension's name).
        attribute: String,
        /// What is wrong with it.
        source: AttributeError,
    },
    /// Serializing to the CloudEvents JSON format failed.
    #[error("failed to encode the event as CloudEvents JSON")]
    Encode(#[source] serde_json::Error),
    /// The bytes are not a CloudEvents JSON event.
    #[error("failed to decode the event from CloudEvents JSON")]
    Decode(#[source] serde_json::Error),
}

/// A CloudEvents 1.0 event with JSON data: what sources publish and sensors consume.
///
/// Build one with [`EventBuilder`]; decode one with [`Event::from_json`] or `TryFrom`. Cloning is
/// cheap (the SDK event is shared, immutable), which matters because the bus hands a clone to every
/// delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    inner: Arc<cloudevents::Event>,
}

impl Event {
    /// The event id; the bus dedupes on it.
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// The EventSource name.
    pub fn source(&self) -> &str {
        self.inner.source().as_str()
    }

    /// The event name inside the EventSource.
    pub fn subject(&self) -> Option<&str> {
        self.inner.subject()
    }

    /// The event source kind, e.g. `webhook`, `github`, `calendar`.
    pub fn ty(&self) -> &str {
        self.inner.ty()
    }

    /// When the event was published.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.inner.time().copied()
    }

    /// `application/json` when the event has data.
    pub fn datacontenttype(&self) -> Option<&str> {
        self.inner.datacontenttype()
    }

    /// The JSON data.
    pub fn data(&self) -> Option<&serde_json::Value> {
        match self.inner.data() {
            Some(Data::Json(value)) => Some(value),
            // Unreachable by the invariant (construction normalizes data to JSON); answering
            // `None` rather than panicking keeps a broken invariant from taking a process down.
            Some(Data::String(_) | Data::Binary(_)) | None => None,
        }
    }

    /// The value of extension `name` in its canonical string form (`true`, `42`, text).
    pub fn extension(&self, name: &str) -> Option<String> {
        self.inner.extension(name).map(ToString::to_string)
    }

    /// The names and values of all extensions, in no particular order.
    pub fn extensions(&self) -> impl Iterator<Item = (&str, String)> {
        self.inner
            .iter_extensions()
            .map(|(name, value)| (name, value.to_string()))
    }

    /// The event in the CloudEvents structured JSON format.
    pub fn to_json(&self) -> Result<Vec<u8>, EventError> {
        serde_json::to_vec(self.inner.as_ref()).map_err(EventError::Encode)
    }

    /// The size in bytes of [`to_json`](Self::to_json)'s output, counted without building it.
    pub fn encoded_len(&self) -> Result<usize, EventError> {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        serde_json::to_writer(&mut count, self.inner.as_ref()).map_err(EventError::Encode)?;
        Ok(count.0)
    }

    /// Decodes an event in the CloudEvents structured JSON format. Never panics on bad input.
    pub fn from_json(bytes: &[u8]) -> Result<Event, EventError> {
        let inner: cloudevents::Event = serde_json::from_slice(bytes).map_err(EventError::Decode)?;
        Event::try_from(inner)
    }

    /// The wrapped SDK event, e.g. for a protocol binding.
    pub fn as_cloudevent(&self) -> &cloudevents::Event {
        &self.inner
    }

    /// Unwraps the SDK event.
    pub fn into_cloudevent(self) -> cloudevents::Event {
        Arc::unwrap_or_clone(self.inner)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} from {})", self.id(), self.ty(), self.source())
    }
}

impl TryFrom<cloudevents::Event> for Event {
    type Error = EventError;

    /// Checks the invariants (see the module doc), upgrades a 0.3 event to 1.0 and turns
    /// string or binary data into JSON.
    fn try_from(event: cloudevents::Event) -> Result<Self, Self::Error> {
        let convert = |attribute: &str, source| EventError::Convert {
            attribute: attribute.to_owned(),
            source,
        };
        let mut inner = if event.specversion() == cloudevents::event::SpecVersion::V10 {
            event
        } else {
            EventBuilderV10::from(event)
                .build()
                .map_err(EventError::BuildCloudEvent)?
        };
        check_attributes(&inner).map_err(|(attribute, source)| convert(&attribute, source))?;

        let (content_type, schema, data) = inner.take_data();
        match data {
            Some(data) => {
                let declared_json = content_type.as_deref().is_none_or(is_json_content_type);
                let (value, was_json) = data_to_json(data, declared_json);
                inner.set_data(JSON_CONTENT_TYPE, value);
                // A schema describes the original JSON; it does not describe text wrapped in a
                // JSON string, so it is kept only when the data was JSON.
                if was_json {
                    inner.set_dataschema(schema);
                }
            }
            None => {
                if let Some(content_type) = &content_type {
                    if !is_media_type(content_type) {
                        return Err(convert("datacontenttype", AttributeError::NotMediaType));
                    }
                }
                inner.set_datacontenttype(content_type);
                inner.set_dataschema(schema);
            }
        }
        Ok(Event {
            inner: Arc::new(inner),
        })
    }
}

impl From<Event> for cloudevents::Event {
    fn from(event: Event) -> Self {
        event.into_cloudevent()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.as_ref().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let inner = cloudevents::Event::deserialize(deserializer)?;
        Event::try_from(inner).map_err(serde::de::Error::custom)
    }
}

/// Builds an [`Event`] with the upstream Argo Events attribute mapping.
#[derive(Clone, Debug)]
pub struct EventBuilder {
    event_source_name: String,
    event_name: String,
    source_type: String,
    id: Option<String>,
    time: Option<DateTime<Utc>>,
    data: Option<serde_json::Value>,
    extensions: Vec<(String, String)>,
}

impl EventBuilder {
    /// An event from EventSource `event_source_name` (→ `source`), event `event_name`
    /// (→ `subject`), of kind `source_type` (→ `type`, e.g. `webhook`).
    pub fn new(
        event_source_name: impl Into<String>,
        event_name: impl Into<String>,
        source_type: impl Into<String>,
    ) -> Self {
        Self {
            event_source_name: event_source_name.into(),
            event_name: event_name.into(),
            source_type: source_type.into(),
            id: None,
            time: None,
            data: None,
            extensions: Vec::new(),
        }
    }

    /// The event id. Default: a random UUID v4. Prefer [`deterministic_id`] of the upstream
    /// delivery where one exists, so a redelivery dedupes on the bus.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The event time. Default: now, when [`build`](Self::build) runs.
    pub fn time(mut self, t: DateTime<Utc>) -> Self {
        self.time = Some(t);
        self
    }

    /// The JSON data; sets `datacontenttype` to `application/json`.
    pub fn data_json(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets extension `name` (lowercase ASCII letters and digits, e.g. `traceparent`); checked in
    /// [`build`](Self::build). Setting a name twice keeps the last value.
    pub fn extension(mut self, name: &str, value: impl Into<String>) -> Self {
        self.extensions.push((name.to_owned(), value.into()));
        self
    }

    /// The event, or the first invalid attribute.
    pub fn build(self) -> Result<Event, EventError> {
        let mut builder = EventBuilderV10::new()
            .id(self.id.unwrap_or_else(|| Uuid::new_v4().to_string()))
            .source(self.event_source_name)
            .subject(self.event_name)
            .ty(self.source_type)
            .time(self.time.unwrap_or_else(Utc::now));
        if let Some(data) = self.data {
            builder = builder.data(JSON_CONTENT_TYPE, data);
        }
        for (name, value) in self.extensions {
            builder = builder.extension(&name, ExtensionValue::String(value));
        }
        // The SDK reports an empty `source` as its own error; check ours first for a clearer one.
        let inner = match builder.build() {
            Ok(inner) => inner,
            Err(cloudevents::event::EventBuilderError::InvalidUriRefError { attribute_name }) => {
                return Err(EventError::Build {
                    attribute: attribute_name.to_owned(),
                    source: AttributeError::Empty,
                })
            }
            Err(error) => return Err(EventError::BuildCloudEvent(error)),
        };
        check_attributes(&inner).map_err(|(attribute, source)| EventError::Build { attribute, source })?;
        Ok(Event {
            inner: Arc::new(inner),
        })
    }
}

/// A UUID v5 (as text) in a fixed Sluice namespace over `parts`, for event ids derived from the
/// upstream delivery: `deterministic_id(&["github", delivery_id])`. The same parts always give the
/// same id; different part lists never share an encoding (each part is prefixed by its length), so
/// `["ab", "c"]` and `["a", "bc"]` give different ids.
pub fn deterministic_id(parts: &[&str]) -> String {
    let mut name = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part.as_bytes());
    }
    Uuid::new_v5(&EVENT_ID_NAMESPACE, &name).to_string()
}

/// Checks the attribute invariants of the module doc, except the data ones; returns the offending
/// attribute's name.
fn check_attributes(event: &cloudevents::Event) -> Result<(), (String, AttributeError)> {
    let fail = |attribute: &str, error| Err((attribute.to_owned(), error));
    if event.id().is_empty() {
        return fail("id", AttributeError::Empty);
    }
    if event.ty().is_empty() {
        return fail("type", AttributeError::Empty);
    }
    if event.source().is_empty() {
        return fail("source", AttributeError::Empty);
    }
    if !is_uri_reference(event.source()) {
        return fail("source", AttributeError::NotUriReference);
    }
    if event.subject() == Some("") {
        return fail("subject", AttributeError::Empty);
    }
    for (name, _) in event.iter_extensions() {
        check_extension_name(name).map_err(|error| (name.to_owned(), error))?;
    }
    Ok(())
}

/// CloudEvents naming convention: `[a-z0-9]+`, and not a context attribute's name.
fn check_extension_name(name: &str) -> Result<(), AttributeError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(AttributeError::BadExtensionName);
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(AttributeError::ReservedExtensionName);
    }
    Ok(())
}

/// The SDK's rule for "this content type is JSON".
fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Turns any CloudEvent data into JSON (see the module doc for the rule); true when the data was
/// JSON already (not wrapped in a JSON string).
fn data_to_json(data: Data, declared_json: bool) -> (serde_json::Value, bool) {
    match data {
        Data::Json(value) => (value, true),
        Data::String(text) => {
            if declared_json {
                if let Ok(value) = serde_json::from_str(&text) {
                    return (value, true);
                }
            }
            (serde_json::Value::String(text), false)
        }
        Data::Binary(bytes) => {
            if declared_json {
                if let Ok(value) = serde_json::from_slice(&bytes) {
                    return (value, true);
                }
            }
            let text = match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(error) => base64::engine::general_purpose::STANDARD.encode(error.into_bytes()),
            };
            (serde_json::Value::String(text), false)
        }
    }
}

/// RFC 2046 / RFC 2045 `type "/" subtype *(";" parameter)`, checked for shape: both tokens
/// non-empty and made of token characters.
fn is_media_type(content_type: &str) -> bool {
    fn is_token(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    match essence.split_once('/') {
        Some((ty, subtype)) => is_token(ty) && is_token(subtype),
        None => false,
    }
}

/// RFC 3986 `URI-reference`: only URI characters, well-formed percent-escapes, at most one `#`,
/// square brackets only in an authority, and a colon in the first path segment only after a valid
/// scheme (otherwise the text is neither a URI nor a relative reference).
fn is_uri_reference(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let ok = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?#[]".contains(&b);
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !ok {
            return false;
        }
        i += 1;
    }
    if s.matches('#').count() > 1 {
        return false;
    }
    // Split off a scheme, if the first segment has a colon.
    let first_end = s.find(['/', '?', '#']).unwrap_or(s.len());
    let rest = match s[..first_end].find(':') {
        Some(colon) => {
            let scheme = &s[..colon];
            let valid_scheme = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
            if !valid_scheme {
                return false;
            }
            &s[colon + 1..]
        }
        None => s,
    };
    // Brackets belong to an IP literal in the authority only.
    let (authority, path) = match rest.strip_prefix("//") {
        Some(after) => after.split_at(after.find(['/', '?', '#']).unwrap_or(after.len())),
        None => ("", rest),
    };
    if path.contains(['[', ']']) {
        return false;
    }
    match authority.find('[') {
        None => !authority.contains(']'),
        Some(open) => {
            authority[..open].ends_with('@')
                || open == 0 && {
                    let after = &authority[open..];
                    after.matches('[').count() == 1 && after.contains(']')
                }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn example() -> Event {
        EventBuilder::new("webhook", "example", "webhook")
            .id("0b6c1ed0-3a4f-4e4b-9a3c-2f1b2d1c0e9f")
            .time(
                Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0)
                    .single()
                    .expect("a valid date"),
            )
            .data_json(json!({"header": {"X-A": ["1"]}, "body": {"n": 1.5, "s": "ü"}}))
            .extension(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .build()
            .expect("a valid event")
    }

    #[test]
    fn builder_maps_upstream_attributes_and_defaults() {
        let before = Utc::now();
        let event = EventBuilder::new("my-es", "push", "github")
            .build()
            .expect("valid");
        let after = Utc::now();
        assert_eq!(event.source(), "my-es");
        assert_eq!(event.subject(), Some("push"));
        assert_eq!(event.ty(), "github");
        assert_eq!(
            event.as_cloudevent().specversion(),
            cloudevents::event::SpecVersion::V10
        );
        let id = Uuid::parse_str(event.id()).expect("default id is a UUID");
        assert_eq!(id.get_version_num(), 4);
        let time = event.time().expect("default time is set");
        assert!(
            before <= time && time <= after,
            "{time} not within [{before}, {after}]"
        );
        assert_eq!(event.data(), None);
        assert_eq!(event.datacontenttype(), None);
        assert_eq!(event.extensions().count(), 0);
    }

    #[test]
    fn builder_sets_data_id_time_and_extensions() {
        let event = example();
        assert_eq!(event.id(), "0b6c1ed0-3a4f-4e4b-9a3c-2f1b2d1c0e9f");
        assert_eq!(event.datacontenttype(), Some("application/json"));
        assert_eq!(
            event.data(),
            Some(&json!({"header": {"X-A": ["1"]}, "body": {"n": 1.5, "s": "ü"}}))
        );
        assert_eq!(
            event.time().map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-05-01T12:30:00+00:00")
        );
        assert_eq!(
            event.extension("traceparent").as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(event.extension("missing"), None);
    }

    #[test]
    fn structured_json_has_the_upstream_shape() {
        let json: serde_json::Value =
            serde_json::from_slice(&example().to_json().expect("encodes")).expect("is JSON");
        assert_eq!(
            json,
            json!({
                "specversion": "1.0",
                "id": "0b6c1ed0-3a4f-4e4b-9a3c-2f1b2d1c0e9f",
                "source": "webhook",
                "subject": "example",
                "type": "webhook",
                "datacontenttype": "application/json",
                "time": "2024-05-01T12:30:00Z",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "data": {"header": {"X-A": ["1"]}, "body": {"n": 1.5, "s": "ü"}},
            })
        );
    }

    #[test]
    fn round_trips_through_json_and_serde() {
        let event = example();
        let bytes = event.to_json().expect("encodes");
        assert_eq!(Event::from_json(&bytes).expect("decodes"), event);
        let via_serde: Event =
            serde_json::from_value(serde_json::to_value(&event).expect("serializes")).expect("deserializes");
        assert_eq!(via_serde, event);
        // Default time keeps its nanoseconds through the text form.
        let now = EventBuilder::new("a", "b", "c")
            .data_json(json!(null))
            .build()
            .expect("valid");
        assert_eq!(
            Event::from_json(&now.to_json().expect("encodes")).expect("decodes"),
            now
        );
    }

    #[test]
    fn bad_extension_names_are_errors() {
        for (name, expected) in [
            ("Trace", AttributeError::BadExtensionName),
            ("trace-parent", AttributeError::BadExtensionName),
            ("", AttributeError::BadExtensionName),
            ("ünï", AttributeError::BadExtensionName),
            ("id", AttributeError::ReservedExtensionName),
            ("data", AttributeError::ReservedExtensionName),
        ] {
            match EventBuilder::new("a", "b", "c").extension(name, "v").build() {
                Err(EventError::Build { attribute, source }) => {
                    assert_eq!((attribute.as_str(), source), (name, expected));
                }
                other => panic!("{name:?}: expected a build error, got {other:?}"),
            }
        }
        assert!(EventBuilder::new("a", "b", "c")
            .extension("abc123", "v")
            .build()
            .is_ok());
    }

    #[test]
    fn empty_or_malformed_attributes_are_errors() {
        let attribute_of = |result: Result<Event, EventError>| match result {
            Err(EventError::Build { attribute, source }) => (attribute, source),
            other => panic!("expected a build error, got {other:?}"),
        };
        assert_eq!(
            attribute_of(EventBuilder::new("", "b", "c").build()),
            ("source".into(), AttributeError::Empty)
        );
        assert_eq!(
            attribute_of(EventBuilder::new("a", "", "c").build()),
            ("subject".into(), AttributeError::Empty)
        );
        assert_eq!(
            attribute_of(EventBuilder::new("a", "b", "").build()),
            ("type".into(), AttributeError::Empty)
        );
        assert_eq!(
            attribute_of(EventBuilder::new("a", "b", "c").id("").build()),
            ("id".into(), AttributeError::Empty)
        );
        assert_eq!(
            attribute_of(EventBuilder::new("my source", "b", "c").build()),
            ("source".into(), AttributeError::NotUriReference)
        );
    }

    #[test]
    fn uri_references() {
        for good in [
            "webhook",
            "my-es.v1",
            "https://github.com/cloudevents",
            "mailto:cncf-wg-serverless@lists.cncf.io",
            "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
            "/sensors/tn-1234567/alerts",
            "1-555-123-4567",
            "http://[::1]:8080/x",
            "a%20b",
            "./1:x",
        ] {
            assert!(is_uri_reference(good), "{good}");
        }
        for bad in ["a b", "1:x", "a%2", "x#y#z", "path/[x]", "{x}", "é", "a\\b"] {
            assert!(!is_uri_reference(bad), "{bad}");
        }
    }

    #[test]
    fn media_types() {
        assert!(is_media_type("application/json"));
        assert!(is_media_type("application/cloudevents+json; charset=utf-8"));
        assert!(!is_media_type("json"));
        assert!(!is_media_type("/json"));
        assert!(!is_media_type(""));
    }

    #[test]
    fn deterministic_id_is_stable_and_a_v5_uuid() {
        assert_eq!(
            EVENT_ID_NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://sluice.dev/ns/event-id"),
            "the namespace constant must match its documented derivation"
        );
        let id = deterministic_id(&["github", "72d3162e-cc78-11e3-81ab-4c9367dc0958"]);
        assert_eq!(
            id,
            deterministic_id(&["github", "72d3162e-cc78-11e3-81ab-4c9367dc0958"])
        );
        assert_eq!(Uuid::parse_str(&id).expect("a UUID").get_version_num(), 5);
        assert_ne!(deterministic_id(&["ab", "c"]), deterministic_id(&["a", "bc"]));
        assert_ne!(deterministic_id(&[]), deterministic_id(&[""]));
        assert_ne!(deterministic_id(&[""]), deterministic_id(&["", ""]));
    }

    #[test]
    fn converts_string_and_binary_data_to_json() {
        let base = || EventBuilderV10::new().id("1").source("s").ty("t");
        let convert = |event: cloudevents::Event| Event::try_from(event).expect("converts");

        let text = convert(base().data("text/plain", "hello").build().expect("sdk event"));
        assert_eq!(text.data(), Some(&json!("hello")));
        assert_eq!(text.datacontenttype(), Some("application/json"));

        let json_text = convert(
            base()
                .data("application/json", r#"{"a":1}"#)
                .build()
                .expect("sdk event"),
        );
        assert_eq!(json_text.data(), Some(&json!({"a": 1})));

        let json_bytes = convert(
            base()
                .data("application/ld+json", b"[1,2]".to_vec())
                .build()
                .expect("sdk"),
        );
        assert_eq!(json_bytes.data(), Some(&json!([1, 2])));

        let utf8 = convert(
            base()
                .data("application/octet-stream", b"hi".to_vec())
                .build()
                .expect("sdk"),
        );
        assert_eq!(utf8.data(), Some(&json!("hi")));

        let binary = convert(
            base()
                .data("image/png", vec![0xff, 0x00, 0x10])
                .build()
                .expect("sdk"),
        );
        assert_eq!(binary.data(), Some(&json!("/wAQ")));

        // After conversion, the event is a Sluice event: it round-trips.
        assert_eq!(
            Event::from_json(&binary.to_json().expect("encodes")).expect("decodes"),
            binary
        );
    }

    #[test]
    fn from_json_rejects_spec_violations() {
        for (input, attribute) in [
            (r#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#, "id"),
            (
                r#"{"specversion":"1.0","id":"1","source":"a b","type":"t"}"#,
                "source",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","subject":""}"#,
                "subject",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","Bad":"x"}"#,
                "Bad",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"x"}"#,
                "datacontenttype",
            ),
        ] {
            match Event::from_json(input.as_bytes()) {
                Err(EventError::Convert { attribute: got, .. }) => assert_eq!(got, attribute, "{input}"),
                other => panic!("{input}: expected a convert error, got {other:?}"),
            }
        }
        for input in [
            "",
            "{}",
            "[]",
            r#"{"specversion":"2.0","id":"1","source":"s","type":"t"}"#,
        ] {
            assert!(
                matches!(Event::from_json(input.as_bytes()), Err(EventError::Decode(_))),
                "{input}"
            );
        }
    }

    #[test]
    fn from_json_upgrades_spec_version_0_3() {
        let input = r#"{"specversion":"0.3","id":"1","source":"s","type":"t","datacontenttype":"application/json","data":{"a":1}}"#;
        let event = Event::from_json(input.as_bytes()).expect("decodes");
        assert_eq!(
            event.as_cloudevent().specversion(),
            cloudevents::event::SpecVersion::V10
        );
        assert_eq!(event.data(), Some(&json!({"a": 1})));
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".*".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(".*", inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn different_part_lists_give_different_ids(
            a in prop::collection::vec(".{0,6}", 0..4),
            b in prop::collection::vec(".{0,6}", 0..4),
        ) {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let b: Vec<&str> = b.iter().map(String::as_str).collect();
            prop_assert_eq!(deterministic_id(&a) == deterministic_id(&b), a == b);
        }

        #[test]
        fn from_json_of_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Event::from_json(&bytes);
        }

        #[test]
        fn from_json_of_near_events_never_panics(
            fields in prop::collection::btree_map(
                prop_oneof![
                    Just("specversion".to_owned()), Just("id".to_owned()), Just("source".to_owned()),
                    Just("type".to_owned()), Just("time".to_owned()), Just("data".to_owned()),
                    Just("data_base64".to_owned()), Just("datacontenttype".to_owned()),
                    Just("dataschema".to_owned()), Just("subject".to_owned()), "[a-zA-Z_]{1,4}",
                ],
                prop_oneof![json_value(), Just(json!("1.0")), Just(json!("0.3"))],
                0..10,
            ),
        ) {
            let object: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
            let bytes = serde_json::to_vec(&object).expect("a map encodes");
            let _ = Event::from_json(&bytes);
        }

        #[test]
        fn data_round_trips_exactly(data in json_value(), id in "[a-zA-Z0-9-]{1,40}") {
            let event = EventBuilder::new("es", "name", "webhook").id(id).data_json(data.clone()).build()
                .expect("valid");
            let decoded = Event::from_json(&event.to_json().expect("encodes")).expect("decodes");
            prop_assert_eq!(decoded.data(), Some(&data));
            prop_assert_eq!(decoded, event);
        }
    }
}
