//! The secret values tests used, and a scan of every output a test sees for them: process logs,
//! `sluice sensor test` output, Kubernetes Events and status messages, dead-letter payloads,
//! metrics. A hit fails the test, naming the output and the secret's label, never the secret (the
//! failure shows a masked form, [`mask`]).
//!
//! **Registering.** A test registers what it gave out: [`register`] for a value it put into a
//! manifest, a Kubernetes Secret or a server's configuration; [`register_dir`] for a secrets
//! directory (`<dir>/<name>/<key>`, the layout `sluice` reads), which [`crate::SluiceProcess`] calls
//! itself for the directory it hands to the process, so tests writing secret files need no edit.
//! The registry is one per test binary: a value one test registered is looked for in every other
//! test's output too (a secret belongs in no log at all). Values shorter than
//! [`MIN_SECRET_LEN`] are refused: they would match ordinary text.
//!
//! **What counts as a hit.** The value itself, and the forms it takes when code encodes it on the
//! way to a log:
//! - percent-encoded (`%40` for `@`, as in a URL's user info or query), when that differs;
//! - JSON-escaped (a JSON log line's string), when that differs;
//! - base64, standard and URL-safe alphabets, **at each of the three byte alignments**: an
//!   `Authorization: Basic base64(user:password)` header or a base64'd config blob contains the
//!   password at an offset, so what is looked for is the run of base64 characters determined by
//!   the secret's bytes alone, whatever precedes it (runs shorter than [`MIN_ENCODED_LEN`] are
//!   skipped);
//! - lowercase and uppercase hex (a byte dump).
//!
//! Not covered: hashes and HMACs of the secret (they are what a signature is meant to show),
//! encryption, and fragments of a secret (a log printing half of a token passes).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;

/// The shortest value [`register`] accepts.
pub const MIN_SECRET_LEN: usize = 6;
/// The shortest encoded form looked for (shorter base64 runs would match ordinary text).
pub const MIN_ENCODED_LEN: usize = 6;

/// Keys of a secrets directory whose values identify rather than authenticate, so
/// [`register_dir`] does not register them (they appear in logs by design).
pub const NOT_SECRET_KEYS: &[&str] = &["address", "username", "user", "url", "host", "region"];

/// One registered value and the forms it is looked for in.
#[derive(Clone)]
struct Secret {
    label: String,
    value: String,
    forms: Vec<(Encoding, String)>,
}

/// How a secret appeared in a hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Encoding {
    /// As is.
    Raw,
    /// Percent-encoded.
    Percent,
    /// Escaped for a JSON string.
    Json,
    /// Base64, standard alphabet, at some alignment.
    Base64,
    /// Base64, URL-safe alphabet, at some alignment.
    Base64Url,
    /// Hex digits.
    Hex,
}

/// One secret found in one output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The label the secret was registered with.
    pub label: String,
    /// The form it was found in.
    pub encoding: Encoding,
    /// The secret, masked ([`mask`]).
    pub masked: String,
    /// The 1-based line of the output it is on.
    pub line: usize,
}

static REGISTRY: Mutex<BTreeMap<String, Secret>> = Mutex::new(BTreeMap::new());

fn registry() -> MutexGuard<'static, BTreeMap<String, Secret>> {
    // A test that panicked while holding the lock left the map whole (every write is one insert).
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers `value` under `label` (say where it came from: `secret github/token`,
/// `nats password`). Panics when `value` is shorter than [`MIN_SECRET_LEN`]: choose a distinctive
/// test secret.
pub fn register(label: &str, value: &str) {
    assert!(
        value.len() >= MIN_SECRET_LEN,
        "secret {label:?} is shorter than {MIN_SECRET_LEN} bytes: too short to scan logs for, \
         choose a longer test value"
    );
    registry().insert(value.to_owned(), secret(label, value));
}

/// Registers the values of a secrets directory `<dir>/<name>/<key>` under the label
/// `secret <name>/<key>`: each file's trimmed content, and, of a file with several lines (a key, a
/// YAML or properties file), each line that is not PEM armour and each `name: value` /
/// `name=value` value whose name says password, token, secret or key. Skips [`NOT_SECRET_KEYS`]
/// and values shorter than [`MIN_SECRET_LEN`] (saying so on stderr). A missing directory
/// registers nothing.
pub fn register_dir(dir: &Path) {
    for (label, value) in dir_values(dir) {
        register_lenient(&label, &value);
    }
}

/// Registers the value of a Secret's `key` under `label` as [`register_dir`] does a file's: skips
/// [`NOT_SECRET_KEYS`], splits a text of several lines, and skips (saying so on stderr) values
/// shorter than [`MIN_SECRET_LEN`]. For Secret objects a test finds rather than writes (the
/// controller's generated credentials).
pub fn register_text(label: &str, key: &str, text: &str) {
    if NOT_SECRET_KEYS.contains(&key) {
        return;
    }
    for value in values_of(text) {
        register_lenient(label, &value);
    }
}

fn register_lenient(label: &str, value: &str) {
    if value.len() < MIN_SECRET_LEN {
        eprintln!("secrets: {label} is shorter than {MIN_SECRET_LEN} bytes; not scanned for");
        return;
    }
    registry()
        .entry(value.to_owned())
        .or_insert_with(|| secret(label, value));
}

fn dir_values(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(names) = std::fs::read_dir(dir) else {
        return out;
    };
    for name in names.flatten() {
        let Ok(keys) = std::fs::read_dir(name.path()) else {
            continue;
        };
        let name = name.file_name().to_string_lossy().into_owned();
        for key in keys.flatten() {
            let key_name = key.file_name().to_string_lossy().into_owned();
            if NOT_SECRET_KEYS.contains(&key_name.as_str()) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(key.path()) else {
                continue;
            };
            let label = format!("secret {name}/{key_name}");
            out.extend(values_of(&text).into_iter().map(|v| (label.clone(), v)));
        }
    }
    out
}

/// The values a secret file's text holds: see [`register_dir`].
fn values_of(text: &str) -> Vec<String> {
    let whole = text.trim();
    let mut out = vec![whole.to_owned()];
    if !whole.contains('\n') {
        return out;
    }
    for line in whole.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("-----") {
            continue;
        }
        let assignment = line.split_once(':').or_else(|| line.split_once('='));
        match assignment {
            Some((name, value))
                if ["password", "token", "secret", "key", "pass"]
                    .iter()
                    .any(|word| name.to_ascii_lowercase().contains(word)) =>
            {
                out.push(value.trim().trim_matches(['"', '\'']).to_owned());
            }
            Some(_) => {}
            None => out.push(line.to_owned()),
        }
    }
    out
}

fn secret(label: &str, value: &str) -> Secret {
    Secret {
        label: label.to_owned(),
        value: value.to_owned(),
        forms: forms(value),
    }
}

/// Every form `value` is looked for in.
fn forms(value: &str) -> Vec<(Encoding, String)> {
    let mut forms = vec![(Encoding::Raw, value.to_owned())];
    let mut add = |encoding, form: String| {
        if form.len() >= MIN_ENCODED_LEN && !forms.iter().any(|(_, f)| *f == form) {
            forms.push((encoding, form));
        }
    };
    add(Encoding::Percent, percent_encode(value));
    let json = serde_json::to_string(value).unwrap_or_default();
    add(Encoding::Json, json.trim_matches('"').to_owned());
    for run in base64_runs(value.as_bytes(), &base64::engine::general_purpose::STANDARD) {
        add(Encoding::Base64, run);
    }
    for run in base64_runs(value.as_bytes(), &base64::engine::general_purpose::URL_SAFE) {
        add(Encoding::Base64Url, run);
    }
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    add(Encoding::Hex, hex.to_ascii_uppercase());
    add(Encoding::Hex, hex);
    forms
}

/// Every byte except RFC 3986's unreserved ones as `%XX`.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// For each alignment (0, 1 or 2 bytes before the secret in the encoded blob), the base64
/// characters that depend on the secret's bytes only. Character `i` covers bits `6i..6i+6`; with `k`
/// bytes before, the secret holds bits `8k..8(k+n)`.
fn base64_runs(bytes: &[u8], engine: &base64::engine::GeneralPurpose) -> Vec<String> {
    (0..3usize)
        .filter_map(|k| {
            let mut blob = vec![0u8; k];
            blob.extend_from_slice(bytes);
            let encoded = engine.encode(&blob);
            let first = (8 * k).div_ceil(6);
            let end = (8 * (k + bytes.len())) / 6;
            encoded.get(first..end).map(str::to_owned)
        })
        .collect()
}

/// `value` masked for a failure message: its length and at most its first two characters.
pub fn mask(value: &str) -> String {
    let shown: String = value
        .chars()
        .take(if value.len() >= 12 { 2 } else { 1 })
        .collect();
    format!("{shown}*** ({} bytes)", value.len())
}

/// The registered secrets found in `text`, in order of line, one hit per secret and form.
pub fn scan(text: &str) -> Vec<Hit> {
    let secrets: Vec<Secret> = registry().values().cloned().collect();
    scan_with(&secrets, text)
}

fn scan_with(secrets: &[Secret], text: &str) -> Vec<Hit> {
    let mut hits = Vec::new();
    for secret in secrets {
        for (encoding, form) in &secret.forms {
            if let Some(at) = text.find(form.as_str()) {
                hits.push(Hit {
                    label: secret.label.clone(),
                    encoding: *encoding,
                    masked: mask(&secret.value),
                    line: text[..at].matches('\n').count() + 1,
                });
            }
        }
    }
    hits.sort_by(|a, b| (a.line, &a.label, a.encoding).cmp(&(b.line, &b.label, b.encoding)));
    hits
}

/// The longest part of a line [`check`] quotes.
const MAX_QUOTED: usize = 600;

/// `text` with every form of every registered secret replaced by `<secret LABEL>`.
pub fn masked(text: &str) -> String {
    let secrets: Vec<Secret> = registry().values().cloned().collect();
    mask_with(&secrets, text)
}

fn mask_with(secrets: &[Secret], text: &str) -> String {
    let mut out = text.to_owned();
    // Longest forms first, so a secret containing another is replaced whole.
    let mut forms: Vec<(&str, &str)> = secrets
        .iter()
        .flat_map(|s| s.forms.iter().map(move |(_, f)| (f.as_str(), s.label.as_str())))
        .collect();
    forms.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
    for (form, label) in forms {
        out = out.replace(form, &format!("<secret {label}>"));
    }
    out
}

/// `Err` naming `output` and every hit (label, form, masked value, line, and the line itself with
/// the secrets replaced by their labels) when `text` holds a registered secret.
pub fn check(output: &str, text: &str) -> Result<(), String> {
    let secrets: Vec<Secret> = registry().values().cloned().collect();
    let hits = scan_with(&secrets, text);
    if hits.is_empty() {
        return Ok(());
    }
    let lines: Vec<&str> = text.lines().collect();
    let list: Vec<String> = hits
        .iter()
        .map(|h| {
            let line = lines.get(h.line - 1).copied().unwrap_or_default();
            let mut quoted = mask_with(&secrets, line);
            if quoted.len() > MAX_QUOTED {
                let mut end = MAX_QUOTED;
                while !quoted.is_char_boundary(end) {
                    end -= 1;
                }
                quoted.truncate(end);
                quoted.push('…');
            }
            format!(
                "{} ({}) as {:?} on line {}: {quoted}",
                h.label, h.masked, h.encoding, h.line
            )
        })
        .collect();
    Err(format!("a secret leaked into {output}:\n  {}", list.join("\n  ")))
}

/// Panics (failing the test) when `text`, the content of `output`, holds a registered secret.
pub fn assert_clean(output: &str, text: &str) {
    if let Err(message) = check(output, text) {
        panic!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(label: &str, value: &str) -> Vec<Secret> {
        vec![secret(label, value)]
    }

    #[test]
    fn a_log_with_the_secret_fails_and_the_message_masks_it() {
        let value = "hunter2-registered-in-a-test";
        register("secret db/password", value);
        let log =
            format!("{{\"message\":\"connected\"}}\n{{\"message\":\"failed\",\"error\":\"auth {value}\"}}\n");
        let message = check("the process log x.log", &log).expect_err("the secret is in the log");
        assert!(message.contains("the process log x.log"), "{message}");
        assert!(message.contains("secret db/password"), "{message}");
        assert!(message.contains("on line 2"), "{message}");
        assert!(message.contains("hu*** (28 bytes)"), "{message}");
        assert!(
            !message.contains(value),
            "the failure names the secret: {message}"
        );
        assert!(
            message.contains(r#""error":"auth <secret secret db/password>""#),
            "the failure quotes the line with the secret replaced: {message}"
        );
        assert!(check("a clean log", "{\"message\":\"connected\"}").is_ok());
        let panic = std::panic::catch_unwind(|| assert_clean("the log", &log));
        assert!(panic.is_err(), "assert_clean panics on a hit");
    }

    #[test]
    fn encoded_forms_are_found() {
        let secrets = one("secret s/p", "p@ss:w0rd/\"x\"");
        let cases = [
            ("raw", "error: p@ss:w0rd/\"x\"", Encoding::Raw),
            (
                "percent",
                "url=http://u:p%40ss%3Aw0rd%2F%22x%22@h/",
                Encoding::Percent,
            ),
            ("json", r#"{"error":"p@ss:w0rd/\"x\""}"#, Encoding::Json),
            ("hex", "bytes 704073733a773072642f227822", Encoding::Hex),
            ("HEX", "bytes 704073733A773072642F227822", Encoding::Hex),
        ];
        for (what, text, encoding) in cases {
            let hits = scan_with(&secrets, text);
            assert!(hits.iter().any(|h| h.encoding == encoding), "{what}: {hits:?}");
        }
        // Basic auth: base64 of `user:password`, so the password starts at every alignment.
        for user in ["u", "us", "usr", "user", "admin-user"] {
            let header = base64::engine::general_purpose::STANDARD.encode(format!("{user}:p@ss:w0rd/\"x\""));
            let hits = scan_with(&secrets, &format!("authorization: Basic {header}"));
            assert!(
                hits.iter().any(|h| h.encoding == Encoding::Base64),
                "user {user}: {header} {hits:?}"
            );
        }
        // URL-safe base64 (`-` and `_` where the standard alphabet has `+` and `/`) of a blob with
        // the secret in the middle.
        let secrets_url = one("secret s/u", "s3cret~~~???>>>");
        let blob = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{\"k\":\"s3cret~~~???>>>\"}");
        assert!(blob.contains(['-', '_']), "{blob}");
        assert!(
            scan_with(&secrets_url, &blob)
                .iter()
                .any(|h| h.encoding == Encoding::Base64Url),
            "{blob}"
        );
    }

    #[test]
    fn text_without_the_secret_passes() {
        let secrets = one("secret s/t", "tok-9f8e7d6c");
        for text in [
            "",
            "tok-9f8e7d6",
            "token=*** url=http://***@127.0.0.1:8080/x?token=***",
            "9f8e7d6c tok-",
        ] {
            assert_eq!(scan_with(&secrets, text), vec![], "{text}");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(std::panic::catch_unwind(|| register("short", "abc")).is_err());
    }

    #[test]
    fn a_secrets_directory_registers_its_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, key: &str, text: &str| {
            std::fs::create_dir_all(dir.path().join(name)).expect("mkdir");
            std::fs::write(dir.path().join(name).join(key), text).expect("write");
        };
        write("github", "token", "ghp-dir-registered-token\n");
        write("sftp", "address", "127.0.0.1:2222");
        write(
            "sftp",
            "key",
            "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\n-----END KEY-----\n",
        );
        write(
            "bus",
            "client-auth",
            "username: sluice\npassword: dir-registered-password\n",
        );
        write("tiny", "token", "abc");
        let mut values = dir_values(dir.path());
        values.sort();
        let labels_of = |v: &str| -> Vec<String> {
            values
                .iter()
                .filter(|(_, x)| x == v)
                .map(|(l, _)| l.clone())
                .collect()
        };
        assert_eq!(labels_of("ghp-dir-registered-token"), ["secret github/token"]);
        assert_eq!(labels_of("QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"), ["secret sftp/key"]);
        assert_eq!(labels_of("dir-registered-password"), ["secret bus/client-auth"]);
        assert!(
            labels_of("127.0.0.1:2222").is_empty(),
            "an address is not a secret"
        );
        assert!(labels_of("sluice").is_empty(), "a username is not a secret");
        register_dir(dir.path());
        assert_eq!(
            scan("error: ghp-dir-registered-token")
                .iter()
                .map(|h| h.label.as_str())
                .collect::<Vec<_>>(),
            ["secret github/token"]
        );
    }
}
