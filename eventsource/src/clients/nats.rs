//! The NATS connection shared by the `nats` and `jetstream` kinds: resolving an `auth` block
//! ([`resolve_auth`]) and connecting with it ([`connect`]), over TLS when the event has a `tls` block.

use std::time::Duration;

use async_nats::ConnectOptions;
use sluice_eventbus::readiness::ReadyFlag;

use crate::{BuildError, SecretResolver};

/// How a NATS source authenticates, resolved at build time.
#[derive(Clone)]
pub(crate) enum Auth {
    None,
    Basic { user: String, password: String },
    Token(String),
    NKey(String),
    Creds(String),
}

/// Resolves a NATS `auth` block.
pub(crate) fn resolve_auth(
    es_name: &str,
    event_name: &str,
    auth: Option<&sluice_crds::eventsource::NATSAuth>,
    secrets: &dyn SecretResolver,
) -> Result<Auth, BuildError> {
    let resolve = |s: &sluice_crds::common::SecretKeySelector| {
        secrets.resolve_secret(s).map_err(|e| BuildError::ResolveSecret {
            event_source: es_name.into(),
            event: event_name.into(),
            source: Box::new(e),
        })
    };
    let Some(a) = auth else {
        return Ok(Auth::None);
    };
    Ok(if let Some(b) = &a.basic {
        let (Some(u), Some(p)) = (&b.username, &b.password) else {
            return Err(BuildError::InvalidSpec {
                event_source: es_name.into(),
                event: event_name.into(),
                reason: "auth.basic needs username and password".into(),
            });
        };
        Auth::Basic {
            user: resolve(u)?,
            password: resolve(p)?,
        }
    } else if let Some(t) = &a.token {
        Auth::Token(resolve(t)?)
    } else if let Some(n) = &a.nkey {
        Auth::NKey(resolve(n)?)
    } else if let Some(c) = &a.credential {
        Auth::Creds(resolve(c)?)
    } else {
        Auth::None
    })
}

/// Connects to NATS with `auth`, over TLS when the event has a `tls` block (as upstream's
/// `nats.Secure`: TLS is then required whatever the URL's scheme).
/// `ready` follows the connection after this: cleared on a disconnect, set again when the client
/// reconnected by itself (it resubscribes and resumes pulls).
pub(crate) async fn connect(
    url: &str,
    auth: &Auth,
    tls: Option<&crate::tls::Tls>,
    name: String,
    ready: &ReadyFlag,
) -> Result<async_nats::Client, Box<dyn std::error::Error + Send + Sync>> {
    let options = match auth {
        Auth::None => ConnectOptions::new(),
        Auth::Basic { user, password } => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Auth::Token(t) => ConnectOptions::with_token(t.clone()),
        Auth::NKey(seed) => ConnectOptions::with_nkey(seed.clone()),
        Auth::Creds(creds) => ConnectOptions::with_credentials(creds)?,
    };
    let options = match tls {
        Some(tls) => options
            .require_tls(true)
            .tls_client_config(tls.config.as_ref().clone()),
        None => options,
    };
    let flag = ready.clone();
    Ok(options
        .name(name)
        .event_callback(move |event| {
            let flag = flag.clone();
            async move {
                match event {
                    async_nats::Event::Connected => flag.set(true),
                    async_nats::Event::Disconnected | async_nats::Event::Closed => flag.set(false),
                    _ => {}
                }
            }
        })
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await?)
}

/// The headers of a NATS message as upstream publishes them: each name to the list of its values,
/// or `null` when the message has none.
pub(crate) fn headers_value(headers: Option<&async_nats::HeaderMap>) -> serde_json::Value {
    let Some(headers) = headers else {
        return serde_json::Value::Null;
    };
    let map = headers
        .iter()
        .map(|(name, values)| {
            let values = values
                .iter()
                .map(|v| serde_json::Value::String(v.to_string()))
                .collect();
            (name.to_string(), serde_json::Value::Array(values))
        })
        .collect();
    serde_json::Value::Object(map)
}
