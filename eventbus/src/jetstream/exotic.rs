//! [`JetStreamConfig`] from an EventBus manifest: `spec.jetstreamExotic` (an existing server), or
//! `status.config.jetstream` (the server the controller runs) — both are the same CRD type.
//!
//! The mapping is documented on [`JetStreamConfig::from_exotic`].

use std::time::Duration;

use serde::Deserialize;
use sluice_crds::common::SecretKeySelector;
use sluice_crds::eventbus::JetStreamConfig as JetStreamSpec;

use super::config::{JetStreamAuth, JetStreamConfig, JetStreamTls, StreamSettings};
use crate::secrets::{FileSecretResolver, SecretError, SecretResolver};

/// Why an EventBus manifest could not be turned into a [`JetStreamConfig`]. Messages name the
/// field and never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum FromExoticError {
    /// `url` is missing or empty.
    #[error("failed to read the EventBus: `url` is required (e.g. `nats://nats:4222`)")]
    MissingUrl,
    /// The access secret could not be read.
    #[error("failed to resolve `accessSecret`")]
    ResolveAccessSecret(#[source] SecretError),
    /// The access secret is not upstream's YAML.
    #[error(
        "failed to parse `accessSecret` {name}/{key}: expected YAML with `username` and `password`, or `token`"
    )]
    ParseAccessSecret {
        /// The Secret's name.
        name: String,
        /// The key inside it.
        key: String,
    },
    /// A value of `streamConfig` is not what it should be.
    #[error("failed to parse `{field}`: {reason}")]
    ParseStreamConfig {
        /// `streamConfig` or `streamConfig.<key>`.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A TLS Secret reference is not a plain name/key.
    #[error("failed to resolve `tls.{field}` {name}/{key}: name and key must be plain file names")]
    InvalidTlsReference {
        /// `caCertSecret`, `clientCertSecret` or `clientKeySecret`.
        field: &'static str,
        /// The Secret's name.
        name: String,
        /// The key inside it.
        key: String,
    },
    /// Only one of the client certificate and key is given.
    #[error("failed to configure TLS: `tls.clientCertSecret` and `tls.clientKeySecret` go together")]
    IncompleteClientCertificate,
    /// `insecureSkipVerify` is set.
    #[error(
        "failed to configure TLS: `tls.insecureSkipVerify` is not supported; give the server's CA in `tls.caCertSecret`"
    )]
    InsecureSkipVerify,
}

/// Upstream's `auth.yaml` (viper keys, lowercase).
#[derive(Deserialize)]
struct AccessSecret {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

impl JetStreamConfig {
    /// The settings an EventBus describes, with Sluice's defaults for everything it does not say.
    /// Secrets are read through `secrets`.
    ///
    /// - `url`: one URL, or several separated by commas.
    /// - `accessSecret`: upstream's format, a YAML document with `username` and `password` (or
    ///   `token`), read through the secret resolver.
    /// - `streamConfig`: upstream's YAML keys `maxMsgs`, `maxAge`, `maxBytes`, `replicas`,
    ///   `duplicates`, over Sluice's defaults. Durations are Go duration strings (`72h`, `1h30m`,
    ///   `300s`); a bare number is nanoseconds, as Go's `viper` reads it. Sizes are a number of bytes or
    ///   a number with `K`, `M`, `G`, `T` (optionally `B`, `i`, `iB`; all powers of 1024, as in NATS
    ///   configuration); 0 or a negative number is unlimited. `retention` and `discard` other than 0 are
    ///   refused (Sluice always uses limits / discard-old); other keys are ignored.
    /// - `tls`: the Secret keys become file paths `<secrets-dir>/<name>/<key>` — how Secrets are
    ///   mounted in pods and laid out outside Kubernetes. `enabled` requires TLS with the system's
    ///   roots. `insecureSkipVerify` is refused: the client cannot skip verification.
    pub fn from_exotic(spec: &JetStreamSpec, secrets: &FileSecretResolver) -> Result<Self, FromExoticError> {
        let urls: Vec<String> = spec
            .url
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        let Some(first) = urls.first() else {
            return Err(FromExoticError::MissingUrl);
        };
        let mut config = JetStreamConfig::new(first.clone());
        config.urls = urls;
        if let Some(selector) = &spec.access_secret {
            config.auth = access_secret(selector, secrets)?;
        }
        if let Some(yaml) = &spec.stream_config {
            config.stream_settings = stream_settings(yaml)?;
        }
        if let Some(tls) = &spec.tls {
            if tls.insecure_skip_verify {
                return Err(FromExoticError::InsecureSkipVerify);
            }
            let path = |field, selector: &Option<SecretKeySelector>| {
                selector
                    .as_ref()
                    .map(|s| secret_path(field, s, secrets))
                    .transpose()
            };
            let settings = JetStreamTls {
                ca_file: path("caCertSecret", &tls.ca_cert_secret)?,
                client_cert_file: path("clientCertSecret", &tls.client_cert_secret)?,
                client_key_file: path("clientKeySecret", &tls.client_key_secret)?,
                tls_required: tls.enabled,
            };
            if settings.client_cert_file.is_some() != settings.client_key_file.is_some() {
                return Err(FromExoticError::IncompleteClientCertificate);
            }
            config.tls = Some(settings);
        }
        Ok(config)
    }
}

fn access_secret(
    selector: &SecretKeySelector,
    secrets: &FileSecretResolver,
) -> Result<JetStreamAuth, FromExoticError> {
    let value = secrets
        .resolve_secret(selector)
        .map_err(FromExoticError::ResolveAccessSecret)?;
    // The parser's own error is dropped on purpose: it may quote the secret.
    let parse_error = || FromExoticError::ParseAccessSecret {
        name: selector.name.clone(),
        key: selector.key.clone(),
    };
    let parsed: AccessSecret = serde_yaml::from_str(&value).map_err(|_| parse_error())?;
    match parsed {
        AccessSecret {
            username: Some(user),
            password,
            ..
        } => Ok(JetStreamAuth::UserPassword {
            user,
            password: password.unwrap_or_default(),
        }),
        AccessSecret {
            token: Some(token), ..
        } => Ok(JetStreamAuth::Token(token)),
        _ => Err(parse_error()),
    }
}

fn secret_path(
    field: &'static str,
    selector: &SecretKeySelector,
    secrets: &FileSecretResolver,
) -> Result<std::path::PathBuf, FromExoticError> {
    let plain = |s: &str| {
        let mut parts = std::path::Path::new(s).components();
        matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        )
    };
    if !plain(&selector.name) || !plain(&selector.key) {
        return Err(FromExoticError::InvalidTlsReference {
            field,
            name: selector.name.clone(),
            key: selector.key.clone(),
        });
    }
    Ok(secrets.secrets_dir().join(&selector.name).join(&selector.key))
}

fn stream_settings(yaml: &str) -> Result<StreamSettings, FromExoticError> {
    let bad = |field: &str, reason: String| FromExoticError::ParseStreamConfig {
        field: if field.is_empty() {
            "streamConfig".to_owned()
        } else {
            format!("streamConfig.{field}")
        },
        reason,
    };
    let value: serde_yaml::Value =
        serde_yaml::from_str(yaml).map_err(|err| bad("", format!("not YAML ({err})")))?;
    let mut settings = StreamSettings::default();
    let Some(map) = value.as_mapping() else {
        if value.is_null() {
            return Ok(settings);
        }
        return Err(bad("", "expected a mapping of stream settings".into()));
    };
    for (key, value) in map {
        let Some(key) = key.as_str() else { continue };
        let text = || scalar_text(value).ok_or_else(|| bad(key, "expected a scalar".into()));
        match key {
            "maxMsgs" => settings.max_msgs = parse_limit(&text()?).map_err(|r| bad(key, r))?,
            "maxBytes" => settings.max_bytes = parse_size(&text()?).map_err(|r| bad(key, r))?,
            "maxAge" => {
                let age = parse_go_duration(&text()?).map_err(|r| bad(key, r))?;
                settings.max_age = (!age.is_zero()).then_some(age);
            }
            "duplicates" => {
                settings.duplicate_window = parse_go_duration(&text()?).map_err(|r| bad(key, r))?;
            }
            "replicas" => {
                let replicas: i64 = text()?
                    .parse()
                    .map_err(|_| bad(key, "expected a whole number".into()))?;
                settings.replicas = usize::try_from(replicas.max(1)).unwrap_or(1);
            }
            "retention" | "discard" if text()? != "0" => {
                return Err(bad(
                    key,
                    "only 0 is supported (limits retention, discard old)".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(settings)
}

fn scalar_text(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.trim().to_owned()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A count; 0 or negative is unlimited (`None`).
fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("expected a whole number, got `{text}`"))?;
    Ok(u64::try_from(n).ok().filter(|n| *n > 0))
}

/// A size in bytes: `1048576`, `512K`, `1GB`, `2Gi`, `1TiB`; 0 or negative is unlimited (`None`).
pub(crate) fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let expected = || format!("expected bytes like `1073741824` or `1GB`, got `{text}`");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| expected())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .or_else(|| unit.strip_suffix('I'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(expected()),
    };
    let Ok(number) = u64::try_from(number) else {
        return Ok(None);
    };
    if number == 0 {
        return Ok(None);
    }
    number
        .checked_mul(1u64 << shift)
        .map(Some)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A Go duration (`72h`, `1h30m`, `1.5s`, `500ms`, `2m0s`, `0`); a bare number is nanoseconds.
pub(crate) fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let expected = || format!("expected a duration like `72h` or `300s`, got `{text}`");
    if text.is_empty() {
        return Err(expected());
    }
    if let Ok(nanos) = text.parse::<u64>() {
        return Ok(Duration::from_nanos(nanos));
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(expected)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| expected())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(expected()),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| expected())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use sluice_crds::common::TLSConfig;

    use super::*;

    fn selector(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector {
            name: name.into(),
            key: key.into(),
            ..SecretKeySelector::default()
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_go_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("2m0s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("1000"), Ok(Duration::from_nanos(1000)));
        for bad in ["", "h", "1d", "1h x", "-1s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size("1GB"), Ok(Some(1 << 30)));
        assert_eq!(parse_size("2Gi"), Ok(Some(2 << 30)));
        assert_eq!(parse_size("512K"), Ok(Some(512 << 10)));
        assert_eq!(parse_size("1TiB"), Ok(Some(1 << 40)));
        assert_eq!(parse_size("1048576"), Ok(Some(1 << 20)));
        assert_eq!(parse_size("0"), Ok(None));
        assert_eq!(parse_size("-1"), Ok(None));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("GB").is_err());
    }

    #[test]
    fn upstream_default_stream_config() {
        let settings = stream_settings(
            "maxMsgs: 1000000\nmaxAge: 72h\nmaxBytes: 1GB\nreplicas: 3\nduplicates: 300s\nretention: 0\ndiscard: 0\n",
        )
        .expect("parses");
        assert_eq!(
            settings,
            StreamSettings {
                max_age: Some(Duration::from_secs(72 * 3600)),
                max_bytes: Some(1 << 30),
                max_msgs: Some(1_000_000),
                replicas: 3,
                duplicate_window: Duration::from_secs(300),
            }
        );
        assert_eq!(stream_settings("").expect("empty"), StreamSettings::default());
        match stream_settings("maxAge: soon") {
            Err(FromExoticError::ParseStreamConfig { field, .. }) => {
                assert_eq!(field, "streamConfig.maxAge")
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        assert!(stream_settings("retention: 1").is_err());
        assert!(stream_settings("[1]").is_err());
    }

    #[test]
    fn from_exotic_reads_url_auth_and_tls() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("auth")).expect("mkdir");
        fs::write(
            dir.path().join("auth/auth.yaml"),
            "username: alice\npassword: s3cret\n",
        )
        .expect("write");
        fs::write(dir.path().join("auth/token.yaml"), "token: tok\n").expect("write");
        fs::write(dir.path().join("auth/bad.yaml"), "s3cret").expect("write");
        let secrets = FileSecretResolver::new(dir.path());
        let spec = JetStreamSpec {
            url: Some("nats://a:4222, nats://b:4222".into()),
            access_secret: Some(selector("auth", "auth.yaml")),
            stream_config: Some("maxAge: 1h".into()),
            tls: Some(TLSConfig {
                ca_cert_secret: Some(selector("tls", "ca.crt")),
                enabled: true,
                ..TLSConfig::default()
            }),
        };
        let config = JetStreamConfig::from_exotic(&spec, &secrets).expect("valid");
        assert_eq!(config.urls, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(config.stream, "default");
        assert!(matches!(
            &config.auth,
            JetStreamAuth::UserPassword { user, password } if user == "alice" && password == "s3cret"
        ));
        assert_eq!(config.stream_settings.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(
            config.tls,
            Some(JetStreamTls {
                ca_file: Some(dir.path().join("tls/ca.crt")),
                client_cert_file: None,
                client_key_file: None,
                tls_required: true,
            })
        );

        let token = JetStreamSpec {
            access_secret: Some(selector("auth", "token.yaml")),
            ..spec.clone()
        };
        assert!(matches!(
            JetStreamConfig::from_exotic(&token, &secrets).expect("valid").auth,
            JetStreamAuth::Token(t) if t == "tok"
        ));

        let bad = JetStreamSpec {
            access_secret: Some(selector("auth", "bad.yaml")),
            ..spec.clone()
        };
        let err = JetStreamConfig::from_exotic(&bad, &secrets).expect_err("not YAML auth");
        assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");

        let no_url = JetStreamSpec {
            url: None,
            ..spec.clone()
        };
        assert!(matches!(
            JetStreamConfig::from_exotic(&no_url, &secrets),
            Err(FromExoticError::MissingUrl)
        ));
        let insecure = JetStreamSpec {
            tls: Some(TLSConfig {
                insecure_skip_verify: true,
                ..TLSConfig::default()
            }),
            ..spec.clone()
        };
        assert!(matches!(
            JetStreamConfig::from_exotic(&insecure, &secrets),
            Err(FromExoticError::InsecureSkipVerify)
        ));
        let half_mtls = JetStreamSpec {
            tls: Some(TLSConfig {
                client_cert_secret: Some(selector("tls", "tls.crt")),
                ..TLSConfig::default()
            }),
            ..spec
        };
        assert!(matches!(
            JetStreamConfig::from_exotic(&half_mtls, &secrets),
            Err(FromExoticError::IncompleteClientCertificate)
        ));
    }
}
