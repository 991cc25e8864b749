//! The `nats` trigger against a real nats-server: core publish (confirmed by a flush), JetStream
//! publish awaiting the stream's ack and deduplicated by firing id, token authentication, and the
//! errors of a missing stream and a bad subject.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{json, Value};
use sluice_crds::sensor::Trigger as TriggerSpec;
use sluice_eventbus::EventBuilder;
use sluice_sensor::secrets::MapSecretResolver;
use sluice_sensor::triggers::{BuildContext, BuiltTrigger};
use sluice_sensor::{ErrorKind, Firing, FiringId, Outcome, Trigger as _};
use support::NatsServer;

fn build(nats: Value, secrets: &[(&str, &str, &str)]) -> anyhow::Result<BuiltTrigger> {
    let spec: TriggerSpec = serde_json::from_value(json!({"template": {"name": "t", "nats": nats}}))?;
    let secrets = secrets
        .iter()
        .fold(MapSecretResolver::new(), |m, (n, k, v)| m.with_secret(n, k, v));
    let ctx = BuildContext {
        sensor: "s".into(),
        secrets: Arc::new(secrets),
        http: reqwest::Client::new().into(),
        namespace: None,
    };
    Ok(BuiltTrigger::build(&spec, &ctx)?)
}

fn firing(nats: Value, event_id: &str) -> anyhow::Result<Firing> {
    let spec: TriggerSpec = serde_json::from_value(json!({"template": {"name": "t", "nats": nats}}))?;
    let event = EventBuilder::new("es", "push", "webhook")
        .id(event_id)
        .data_json(json!({"body": {"repo": "sluice", "ref": "main"}}))
        .build()?;
    let events = BTreeMap::from([("d".to_owned(), event)]);
    Ok(Firing {
        id: FiringId::new("t", &events),
        sensor: "s".into(),
        trigger: "t".into(),
        events,
        template: spec.template.unwrap_or_default(),
    })
}

fn payload() -> Value {
    json!([{"src": {"dependencyName": "d", "dataKey": "body.repo"}, "dest": "repository"}])
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn core_publish_carries_the_payload_and_the_firing_id() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut sub = client.subscribe("sluice").await?;
    client.flush().await?;
    // The subject comes from the event, through a parameter of the nats spec.
    let nats = json!({"url": server.url(), "subject": "placeholder", "payload": payload(),
        "parameters": [{"src": {"dependencyName": "d", "dataKey": "body.repo"}, "dest": "subject"}]});
    let trigger = build(nats.clone(), &[])?;
    let f = firing(nats, "e1")?;
    assert_eq!(trigger.execute(&f).await?, Outcome::Published { sequence: None });
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no message"))?;
    assert_eq!(msg.subject.as_str(), "sluice");
    assert_eq!(
        serde_json::from_slice::<Value>(&msg.payload)?,
        json!({"repository": "sluice"})
    );
    let headers = msg.headers.ok_or_else(|| anyhow::anyhow!("no headers"))?;
    assert_eq!(
        headers.get("Idempotency-Key").map(|v| v.as_str()),
        Some(f.id.as_str())
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn jetstream_publish_waits_for_the_stream_and_dedupes_a_repeated_firing() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let js = server.jetstream().await?;
    let nats = json!({"url": server.url(), "subject": "audit.push", "payload": payload(), "jetStream": true});
    let trigger = build(nats.clone(), &[])?;
    let f = firing(nats, "e1")?;

    // No stream on the subject: not stored, so the attempt fails (retryable).
    let err = trigger
        .execute(&f)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("published without a stream"))?;
    assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
    assert!(err.to_string().contains("audit.push"), "{err}");

    js.create_stream(async_nats::jetstream::stream::Config {
        name: "AUDIT".into(),
        subjects: vec!["audit.>".into()],
        ..Default::default()
    })
    .await?;
    assert_eq!(
        trigger.execute(&f).await?,
        Outcome::Published { sequence: Some(1) }
    );
    // The same firing again (a redelivery after a crash): the stream keeps one message.
    trigger.execute(&f).await?;
    let mut stream = js.get_stream("AUDIT").await?;
    assert_eq!(stream.info().await?.state.messages, 1);
    let stored = stream.get_raw_message(1).await?;
    assert_eq!(
        serde_json::from_slice::<Value>(&stored.payload)?,
        json!({"repository": "sluice"})
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn token_authentication_from_a_secret() -> anyhow::Result<()> {
    let server = NatsServer::start_with(vec!["--auth".into(), "s3cret-token".into()]).await?;
    let nats =
        json!({"url": server.url(), "subject": "ok", "auth": {"token": {"name": "nats", "key": "token"}}});
    let trigger = build(nats.clone(), &[("nats", "token", "s3cret-token\n")])?;
    assert_eq!(
        trigger.execute(&firing(nats, "e1")?).await?,
        Outcome::Published { sequence: None }
    );

    let wrong =
        json!({"url": server.url(), "subject": "ok", "auth": {"token": {"name": "nats", "key": "token"}}});
    let trigger = build(wrong.clone(), &[("nats", "token", "wrong")])?;
    let err = trigger.execute(&firing(wrong, "e2")?).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("a wrong token must not publish"))?;
    assert!(err.to_string().contains("failed to connect"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the token is not in the error: {err}"
    );

    let missing =
        json!({"url": server.url(), "subject": "ok", "auth": {"token": {"name": "nats", "key": "nope"}}});
    assert!(build(missing, &[]).is_err(), "a missing secret stops the build");
    Ok(())
}

#[test]
fn bad_subjects_and_auth_are_build_errors_naming_the_field() -> anyhow::Result<()> {
    for (nats, field) in [
        (json!({"url": "nats://x:4222", "subject": "a.*"}), "nats.subject"),
        (json!({"url": "nats://x:4222", "subject": ""}), "nats.subject"),
        (json!({"subject": "a"}), "nats.url"),
        (
            json!({"url": "nats://x:4222", "subject": "a", "auth": {}}),
            "nats.auth",
        ),
        (
            json!({"url": "nats://x:4222", "subject": "a", "tls": {"insecureSkipVerify": true}}),
            "nats.tls.insecureSkipVerify",
        ),
    ] {
        let err = build(nats.clone(), &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(&format!("invalid `{field}`")), "{nats}: {err}");
    }
    Ok(())
}
