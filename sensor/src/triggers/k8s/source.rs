//! Where a trigger's Kubernetes manifest comes from (`source`), read once and kept:
//!
//! - `resource` (an object inside the sensor) and `inline` (YAML or JSON text) are part of the
//!   trigger template, so the firing's template (top-level parameters applied) is used as is;
//! - `file` is read on first use and read again only when its modification time changes;
//! - `configmap` is read when the trigger is built (a missing key stops the sensor from starting)
//!   and kept; a changed ConfigMap takes effect when the sensor restarts;
//! - `url` is downloaded on first use and kept; a failed download is tried again on the next firing
//!   (and is retryable), a changed document takes effect when the sensor restarts;
//! - `git` and `s3` are not supported yet (a build error naming the field).
//!
//! Upstream downloads the source again on every firing; Sluice does not, so a burst of events does
//! not become a burst of downloads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::triggers::http::egress::HttpClients;

use serde_json::Value;
use sluice_crds::sensor::ArtifactLocation;

use crate::secrets::SecretResolver;
use crate::triggers::{BuildError, TriggerError};

/// How many distinct file/url sources are remembered (parameters can change a source's location).
const MAX_CACHED: usize = 64;

/// One remembered document.
#[derive(Clone)]
struct Cached {
    object: Arc<Value>,
    /// For files: the modification time the document was read at.
    modified: Option<SystemTime>,
}

/// Reads and remembers trigger sources.
pub struct SourceCache {
    /// Under the sensor's egress rules: `source.url` is often filled from event data.
    http: HttpClients,
    cache: Mutex<HashMap<String, Cached>>,
}

/// Parses a manifest (YAML, which includes JSON) into a JSON object.
pub fn parse_manifest(text: &str, what: &str) -> Result<Value, TriggerError> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| TriggerError::InvalidObject {
        reason: format!("the {what} is not valid YAML or JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(TriggerError::InvalidObject {
            reason: format!("the {what} is not an object"),
        });
    }
    Ok(value)
}

impl SourceCache {
    /// Checks `source` (field path `field`, e.g. `k8s.source`) and reads what can be read now.
    pub fn build(
        trigger: &str,
        field: &str,
        source: Option<&ArtifactLocation>,
        secrets: &dyn SecretResolver,
        http: impl Into<HttpClients>,
    ) -> Result<Self, BuildError> {
        let http = http.into();
        let invalid = |reason: String| BuildError::InvalidField {
            trigger: trigger.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let source = source.ok_or_else(|| {
            invalid("it is required: set one of resource, inline, file, url, configmap".into())
        })?;
        let kinds = source.kinds();
        match kinds.as_slice() {
            [] => {
                return Err(invalid(
                    "set one of resource, inline, file, url, configmap".into(),
                ))
            }
            [_] => {}
            several => {
                return Err(invalid(format!(
                    "it sets {}; set exactly one",
                    several.join(", ")
                )))
            }
        }
        if source.git.is_some() || source.s3.is_some() {
            return Err(BuildError::UnsupportedField {
                trigger: trigger.to_owned(),
                field: format!("{field}.{}", kinds[0]),
            });
        }
        let cache = Self {
            http,
            cache: Mutex::new(HashMap::new()),
        };
        if let Some(inline) = &source.inline {
            parse_manifest(inline, "inline source").map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(resource) = &source.resource {
            if !resource.is_object() {
                return Err(invalid(
                    "`resource` must be an object (a Kubernetes manifest)".into(),
                ));
            }
        }
        if let Some(selector) = &source.configmap {
            let text = secrets
                .resolve_config_map(selector)
                .map_err(|source| BuildError::ResolveSecret {
                    trigger: trigger.to_owned(),
                    source,
                })?;
            let object = parse_manifest(&text, "configmap source").map_err(|e| invalid(e.to_string()))?;
            cache.put(
                key(source),
                Cached {
                    object: Arc::new(object),
                    modified: None,
                },
            );
        }
        if let Some(url) = &source.url {
            if reqwest::Url::parse(&url.path).is_err() {
                return Err(invalid(format!("url.path `{}` is not a URL", url.path)));
            }
        }
        Ok(cache)
    }

    /// The manifest `source` points to, from memory when it has not changed.
    pub async fn object(&self, source: Option<&ArtifactLocation>) -> Result<Value, TriggerError> {
        let source = source.ok_or_else(|| TriggerError::InvalidObject {
            reason: "the trigger has no `source`".into(),
        })?;
        if let Some(resource) = &source.resource {
            return Ok(resource.clone());
        }
        if let Some(inline) = &source.inline {
            return parse_manifest(inline, "inline source");
        }
        let key = key(source);
        if let Some(file) = &source.file {
            let path = PathBuf::from(file.path.clone().unwrap_or_default());
            let modified = tokio::fs::metadata(&path)
                .await
                .and_then(|m| m.modified())
                .map_err(|e| TriggerError::FetchSource {
                    location: path.display().to_string(),
                    reason: e.to_string(),
                    retryable: false,
                })?;
            if let Some(hit) = self.get(&key).filter(|c| c.modified == Some(modified)) {
                return Ok((*hit.object).clone());
            }
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| TriggerError::FetchSource {
                    location: path.display().to_string(),
                    reason: e.to_string(),
                    retryable: false,
                })?;
            let object = parse_manifest(&text, &format!("file {}", path.display()))?;
            self.put(
                key,
                Cached {
                    object: Arc::new(object.clone()),
                    modified: Some(modified),
                },
            );
            return Ok(object);
        }
        if let Some(hit) = self.get(&key) {
            return Ok((*hit.object).clone());
        }
        if let Some(url) = &source.url {
            let object = self.download(&url.path).await?;
            self.put(
                key,
                Cached {
                    object: Arc::new(object.clone()),
                    modified: None,
                },
            );
            return Ok(object);
        }
        // A configmap is read at build; it is only missing here when parameters changed it.
        Err(TriggerError::FetchSource {
            location: "configmap".into(),
            reason:
                "a configmap source must be fixed when the sensor starts (it cannot come from parameters)"
                    .into(),
            retryable: false,
        })
    }

    /// The manifest if it needs no I/O (for `describe`): resource, inline, a read configmap, or a
    /// file/url already read.
    pub fn object_now(&self, source: Option<&ArtifactLocation>) -> Result<Value, TriggerError> {
        let source = source.ok_or_else(|| TriggerError::InvalidObject {
            reason: "the trigger has no `source`".into(),
        })?;
        if let Some(resource) = &source.resource {
            return Ok(resource.clone());
        }
        if let Some(inline) = &source.inline {
            return parse_manifest(inline, "inline source");
        }
        if let Some(file) = &source.file {
            let path = file.path.clone().unwrap_or_default();
            let text = std::fs::read_to_string(&path).map_err(|e| TriggerError::FetchSource {
                location: path.clone(),
                reason: e.to_string(),
                retryable: false,
            })?;
            return parse_manifest(&text, &format!("file {path}"));
        }
        self.get(&key(source))
            .map(|c| (*c.object).clone())
            .ok_or_else(|| TriggerError::FetchSource {
                location: source.url.as_ref().map(|u| u.path.clone()).unwrap_or_default(),
                reason: "not downloaded yet (it is fetched on the first firing)".into(),
                retryable: false,
            })
    }

    async fn download(&self, url: &str) -> Result<Value, TriggerError> {
        let fail = |reason: String, retryable: bool| TriggerError::FetchSource {
            location: url.to_owned(),
            reason,
            retryable,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| fail(format!("not a URL: {e}"), false))?;
        // A literal IP skips DNS and so the guarded resolver: checked here; a name is checked
        // when the client resolves it.
        self.http
            .check_url(&parsed)
            .map_err(|denied| fail(denied.to_string(), false))?;
        let response = self
            .http
            .shared()
            .get(parsed)
            .send()
            .await
            // reqwest's message repeats the URL, which may carry credentials; `location` is shown
            // masked.
            .map_err(|e| fail(e.without_url().to_string(), true))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(
                format!("the server answered {status}"),
                status.is_server_error() || status.as_u16() == 429,
            ));
        }
        let text = response
            .text()
            .await
            .map_err(|e| fail(e.without_url().to_string(), true))?;
        parse_manifest(
            &text,
            &format!("document at {}", sluice_eventbus::redact_url(url)),
        )
    }

    fn get(&self, key: &str) -> Option<Cached> {
        self.lock().get(key).cloned()
    }

    fn put(&self, key: String, value: Cached) {
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED && !cache.contains_key(&key) {
            cache.clear();
        }
        cache.insert(key, value);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // A panic while holding the lock leaves a plain cache behind; it is still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The cache key of a location: its JSON form.
fn key(source: &ArtifactLocation) -> String {
    serde_json::to_string(source).unwrap_or_default()
}
