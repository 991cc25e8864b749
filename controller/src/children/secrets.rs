//! The credentials generated for a `jetstream` EventBus. (The Secrets and ConfigMaps a spec
//! references are found by type in `sluice_crds::refs` and mounted by the workload builder.)

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use sluice_crds::EventBus;

use super::{labels, owner, BuildError, Owner};

/// The key of the server's auth configuration in the server Secret (upstream's key).
pub const JS_SERVER_AUTH_KEY: &str = "auth";
/// The key of the client credentials in the client Secret (upstream's key): a YAML document with
/// `username` and `password`, the format an `accessSecret` has.
pub const JS_CLIENT_AUTH_KEY: &str = "client-auth";

/// Generated credentials of a `jetstream` EventBus: generated once, kept in its Secrets, never
/// logged (`Debug` shows no value).
#[derive(Clone, PartialEq)]
pub struct BusCredentials {
    /// The user of the account with JetStream.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The password of the system account's `sys` user (monitoring, never given to clients).
    pub sys_password: String,
}

impl std::fmt::Debug for BusCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusCredentials { <redacted> }")
    }
}

impl BusCredentials {
    /// Fresh random credentials (version-4 UUIDs: 122 random bits each, from the OS's generator).
    pub fn generate() -> Self {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        Self {
            user: format!("sluice-{}", &random()[..8]),
            password: format!("{}{}", random(), random()),
            sys_password: format!("{}{}", random(), random()),
        }
    }
}

/// The two Secrets of a `jetstream` EventBus's client authentication, as upstream names them:
/// `eventbus-<name>-js-server` (key `auth`: the accounts block the NATS configuration includes) and
/// `eventbus-<name>-js-client-auth` (key `client-auth`: `username`/`password` YAML, what the status's
/// `accessSecret` points EventSource and Sensor pods at). Both are owned by the EventBus.
pub fn jetstream_auth_secrets(bus: &EventBus, creds: &BusCredentials) -> Result<(Value, Value), BuildError> {
    let owner = owner("EventBus", &bus.metadata)?;
    let labels = labels("eventbus", "eventbus-name", owner.name);
    let quoted = |s: &str| serde_json::to_string(s).map_err(|e| BuildError::EncodeSpec(e.to_string()));
    // Only the JetStream account's user may connect; the system account is for `nats` tooling.
    let server_conf = format!(
        "accounts {{\n  js {{\n    jetstream: enabled\n    users: [\n      {{user: {}, password: {}}}\n    ]\n  }}\n  \
         sys {{\n    users: [\n      {{user: sys, password: {}}}\n    ]\n  }}\n}}\nsystem_account: sys\n",
        quoted(&creds.user)?,
        quoted(&creds.password)?,
        quoted(&creds.sys_password)?,
    );
    let client_conf = serde_yaml::to_string(&json!({"username": creds.user, "password": creds.password}))
        .map_err(|e| BuildError::EncodeSpec(e.to_string()))?;
    let secret = |name: &str, key: &str, value: String| secret_object(&owner, &labels, name, [(key, value)]);
    Ok((
        secret(
            &jetstream_server_secret_name(owner.name),
            JS_SERVER_AUTH_KEY,
            server_conf,
        ),
        secret(
            &jetstream_client_secret_name(owner.name),
            JS_CLIENT_AUTH_KEY,
            client_conf,
        ),
    ))
}

/// `eventbus-<name>-js-server`, upstream's name.
pub fn jetstream_server_secret_name(bus: &str) -> String {
    format!("eventbus-{bus}-js-server")
}

/// `eventbus-<name>-js-client-auth`, upstream's name.
pub fn jetstream_client_secret_name(bus: &str) -> String {
    format!("eventbus-{bus}-js-client-auth")
}

/// An Opaque Secret owned by `owner` with `data` (plain values, base64-encoded here).
fn secret_object<const N: usize>(
    owner: &Owner<'_>,
    labels: &BTreeMap<String, String>,
    name: &str,
    data: [(&str, String); N],
) -> Value {
    let data: serde_json::Map<String, Value> = data
        .into_iter()
        .map(|(key, value)| (key.to_string(), json!(BASE64.encode(value.as_bytes()))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": owner.meta(name, labels),
        "type": "Opaque",
        "data": data,
    })
}

/// `eventbus-<name>-js-cluster`: the route credentials of a clustered bus (a Sluice addition;
/// upstream's routes take no credentials, so any pod could join its bus as a route).
pub fn jetstream_cluster_secret_name(bus: &str) -> String {
    format!("eventbus-{bus}-js-cluster")
}

/// The key of the route password in the cluster Secret: generated once, kept across reconciles.
pub const JS_ROUTE_PASSWORD_KEY: &str = "password";
/// The key of the route configuration in the cluster Secret, included inside the NATS `cluster`
/// block: the `authorization` every route must present and the `routes` (which carry the
/// credentials in their URLs, as NATS requires of explicitly listed routes).
pub const JS_CLUSTER_AUTH_KEY: &str = "cluster-auth";
/// The user the bus's NATS servers authenticate their routes with.
const ROUTE_USER: &str = "route";

/// A fresh route password (two version-4 UUIDs: 244 random bits, URL-safe).
pub fn generate_route_password() -> String {
    let random = || uuid::Uuid::new_v4().simple().to_string();
    format!("{}{}", random(), random())
}

/// Whether a route password read back from the cluster Secret can be used: it goes into route
/// URLs unescaped, so only URL-safe characters, and at least as long as a generated one would be
/// half of (an empty or short one would be an open door). Anything else is replaced.
pub fn usable_route_password(password: &str) -> bool {
    password.len() >= 32
        && password
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The cluster Secret of a `jetstream` EventBus: the route `password` and the `cluster-auth` file
/// the NATS configuration includes in its `cluster` block. `routes` are the `host:port` of every
/// server of the bus; the file is re-rendered on each reconcile (replicas may change), the
/// password is not.
pub fn jetstream_cluster_secret(
    bus: &EventBus,
    routes: &[String],
    password: &str,
) -> Result<Value, BuildError> {
    let owner = owner("EventBus", &bus.metadata)?;
    let labels = labels("eventbus", "eventbus-name", owner.name);
    if !usable_route_password(password) {
        return Err(BuildError::EncodeSpec(
            "the route password is not a generated one (URL-safe, 32 characters or more)".into(),
        ));
    }
    let quoted = |s: &str| serde_json::to_string(s).map_err(|e| BuildError::EncodeSpec(e.to_string()));
    let mut conf = format!(
        "# Generated by the Sluice controller: a server joins the bus's cluster only with these credentials.\n\
         authorization {{\n  user: {}\n  password: {}\n  timeout: 2\n}}\nroutes: [\n",
        quoted(ROUTE_USER)?,
        quoted(password)?,
    );
    for route in routes {
        conf.push_str(&format!(
            "  {}\n",
            quoted(&format!("nats://{ROUTE_USER}:{password}@{route}"))?
        ));
    }
    conf.push_str("]\n");
    Ok(secret_object(
        &owner,
        &labels,
        &jetstream_cluster_secret_name(owner.name),
        [
            (JS_ROUTE_PASSWORD_KEY, password.to_string()),
            (JS_CLUSTER_AUTH_KEY, conf),
        ],
    ))
}
