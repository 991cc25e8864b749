//! Offline checks of an EventBus, following upstream's rules (one kind; `native` or `exotic` for
//! NATS; URLs for the exotic kinds and Kafka; a JetStream quorum) plus
//! checks that durations and the stream settings parse.

use super::{EventBus, EventBusSpec};
use crate::validate::{check_duration, Problems, Validate};

impl Validate for EventBus {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.spec.validate(&Problems::at(path, "spec"), problems);
    }
}

impl Validate for EventBusSpec {
    fn validate(&self, path: &str, problems: &mut Problems) {
        match self.kinds().as_slice() {
            [_] => {}
            [] => problems.error(path, "set one of nats, jetstream, jetstreamExotic or kafka"),
            many => problems.error(
                path,
                format!("set only one of {}, not all of them", many.join(", ")),
            ),
        }
        if let Some(nats) = &self.nats {
            let p = Problems::at(path, "nats");
            match (&nats.native, &nats.exotic) {
                (Some(_), Some(_)) => problems.error(&p, "set either native or exotic, not both"),
                (None, None) => problems.error(&p, "set native or exotic"),
                _ => {}
            }
            if let Some(native) = &nats.native {
                let p = Problems::at(&p, "native");
                check_auth(native.auth.as_deref(), &p, problems);
                for (field, value) in [
                    ("maxAge", &native.max_age),
                    ("raftHeartbeatTimeout", &native.raft_heartbeat_timeout),
                    ("raftElectionTimeout", &native.raft_election_timeout),
                    ("raftLeaseTimeout", &native.raft_lease_timeout),
                    ("raftCommitTimeout", &native.raft_commit_timeout),
                ] {
                    if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                        check_duration(v, &Problems::at(&p, field), problems);
                    }
                }
            }
            if let Some(exotic) = &nats.exotic {
                let p = Problems::at(&p, "exotic");
                if exotic.url.as_deref().unwrap_or("").is_empty() {
                    problems.error(Problems::at(&p, "url"), "the NATS server URL is required");
                }
                if exotic.cluster_id.is_none() {
                    problems.error(
                        Problems::at(&p, "clusterID"),
                        "the NATS Streaming cluster id is required",
                    );
                }
                check_auth(exotic.auth.as_deref(), &p, problems);
            }
        }
        if let Some(js) = &self.jetstream {
            let p = Problems::at(path, "jetstream");
            // No `version` error (upstream requires one): the controller's `--nats-version` (the
            // chart's `nats.version`) is the default, so a bus runs the image the node has.
            if let Some(r) = js.replicas {
                if r <= 0 || r == 2 {
                    problems.error(
                        Problems::at(&p, "replicas"),
                        format!("{r} replicas cannot form a quorum: use 1, or 3 or more"),
                    );
                }
            }
            if let Some(sc) = &js.stream_config {
                check_stream_config(sc, &Problems::at(&p, "streamConfig"), problems);
            }
        }
        if let Some(js) = &self.jetstream_exotic {
            let p = Problems::at(path, "jetstreamExotic");
            if js.url.as_deref().unwrap_or("").is_empty() {
                problems.error(Problems::at(&p, "url"), "the JetStream server URL is required");
            }
            if let Some(sc) = &js.stream_config {
                check_stream_config(sc, &Problems::at(&p, "streamConfig"), problems);
            }
        }
        if let Some(kafka) = &self.kafka {
            let p = Problems::at(path, "kafka");
            if kafka.url.as_deref().unwrap_or("").is_empty() {
                problems.error(Problems::at(&p, "url"), "the Kafka broker URL is required");
            }
            if let Some(part) = kafka.partitioner.as_deref().filter(|s| !s.is_empty()) {
                if !matches!(part, "random" | "hash" | "roundrobin" | "manual") {
                    problems.warning(
                        Problems::at(&p, "partitioner"),
                        format!("unknown partitioner {part:?}: use random, hash, roundrobin or manual"),
                    );
                }
            }
            if let Some(group) = &kafka.consumer_group {
                if let Some(s) = group.rebalance_strategy.as_deref().filter(|s| !s.is_empty()) {
                    if !matches!(s, "sticky" | "roundrobin" | "range") {
                        problems.warning(
                            Problems::at(&p, "consumerGroup.rebalanceStrategy"),
                            format!("unknown rebalance strategy {s:?}: use range, roundrobin or sticky"),
                        );
                    }
                }
            }
        }
    }
}

fn check_auth(auth: Option<&str>, path: &str, problems: &mut Problems) {
    if let Some(a) = auth.filter(|a| !a.is_empty()) {
        if !matches!(a, "none" | "token") {
            problems.error(
                Problems::at(path, "auth"),
                format!("unknown auth strategy {a:?}: use none or token"),
            );
        }
    }
}

/// Checks JetStream `streamConfig` YAML: it parses, and its duration settings are durations.
fn check_stream_config(text: &str, path: &str, problems: &mut Problems) {
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            problems.error(path, format!("stream settings are not valid YAML: {e}"));
            return;
        }
    };
    let Some(map) = value.as_mapping() else {
        if !value.is_null() {
            problems.error(
                path,
                "stream settings must be a YAML mapping such as `maxAge: 72h`",
            );
        }
        return;
    };
    for (key, v) in map {
        let Some(key) = key.as_str() else { continue };
        if matches!(key, "maxAge" | "duplicates") {
            if let Some(s) = v.as_str() {
                check_duration(s, &Problems::at(path, key), problems);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn parse(yaml: &str) -> EventBus {
        let text = if yaml.contains("metadata") {
            yaml.to_string()
        } else {
            format!("metadata: {{name: default}}\n{yaml}")
        };
        serde_yaml::from_str(&text).expect("test manifest parses")
    }

    fn problems(bus: &EventBus) -> Vec<String> {
        let mut p = Problems::new();
        bus.validate("", &mut p);
        p.into_vec().into_iter().map(|p| p.to_string()).collect()
    }

    fn round_trip(bus: &EventBus) {
        let text = serde_yaml::to_string(bus).expect("serializes");
        let again: EventBus = serde_yaml::from_str(&text).expect("parses again");
        assert_eq!(&again, bus, "{text}");
    }

    const JETSTREAM: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata:
  name: default
spec:
  jetstream:
    version: "2.10.10"
    replicas: 3
    persistence:
      storageClassName: standard
      accessMode: ReadWriteOnce
      volumeSize: 10Gi
    containerTemplate:
      resources:
        limits:
          cpu: 100m
          memory: 128Mi
    streamConfig: |
      maxAge: 24h
      duplicates: 5m
      replicas: 3
    settings: |
      max_file_store: 1TB
    startArgs: ["-D"]
    maxPayload: 2MB
"#;

    #[test]
    fn jetstream_parses_validates_and_round_trips() {
        let bus = parse(JETSTREAM);
        let js = bus.spec.jetstream.as_ref().expect("jetstream set");
        assert_eq!(js.version.as_deref(), Some("2.10.10"));
        assert_eq!(
            js.persistence.as_ref().and_then(|p| p.volume_size.clone()),
            Some(Quantity("10Gi".into()))
        );
        assert_eq!(js.start_args.as_deref(), Some(&["-D".to_string()][..]));
        assert!(problems(&bus).is_empty(), "{:?}", problems(&bus));
        round_trip(&bus);
    }

    #[test]
    fn native_nats_parses_and_validates() {
        let bus = parse(
            r#"
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata: {name: default}
spec:
  nats:
    native:
      replicas: 3
      auth: token
      maxAge: 72h
      maxMsgs: 1000000
      raftHeartbeatTimeout: 2s
      persistence:
        volumeSize: 1
"#,
        );
        assert!(problems(&bus).is_empty(), "{:?}", problems(&bus));
        round_trip(&bus);
    }

    #[test]
    fn exotic_kinds_parse_and_validate() {
        let exotic_nats = parse(
            "spec:\n  nats:\n    exotic:\n      url: nats://x:4222\n      clusterID: c\n      auth: token\n      accessSecret: {name: s, key: k}\n",
        );
        assert!(problems(&exotic_nats).is_empty(), "{:?}", problems(&exotic_nats));
        round_trip(&exotic_nats);
        let exotic_js = parse(
            "spec:\n  jetstreamExotic:\n    url: nats://js:4222\n    accessSecret: {name: s, key: k}\n    streamConfig: \"maxAge: 1h\"\n",
        );
        assert!(problems(&exotic_js).is_empty(), "{:?}", problems(&exotic_js));
        round_trip(&exotic_js);
        let kafka = parse(
            r#"
spec:
  kafka:
    url: kafka:9092
    topic: argo-events
    version: "2.5.0"
    partitioner: hash
    consumerGroup:
      groupName: sensors
      oldest: true
      rebalanceStrategy: sticky
    sasl:
      mechanism: PLAIN
      userSecret: {name: k, key: user}
"#,
        );
        assert!(problems(&kafka).is_empty(), "{:?}", problems(&kafka));
        round_trip(&kafka);
    }

    #[test]
    fn exactly_one_kind() {
        assert!(problems(&parse("spec: {}"))[0].contains("set one of nats"));
        let two = parse("spec:\n  jetstream: {version: latest}\n  kafka: {url: k:9092}\n");
        assert!(
            problems(&two)[0].contains("jetstream, kafka"),
            "{:?}",
            problems(&two)
        );
    }

    #[test]
    fn required_fields() {
        // A bus without a version runs the controller's default (a Sluice extension).
        assert!(problems(&parse("spec:\n  jetstream: {}\n")).is_empty());
        assert!(problems(&parse("spec:\n  jetstreamExotic: {}\n"))[0].starts_with("spec.jetstreamExotic.url"));
        assert!(problems(&parse("spec:\n  kafka: {}\n"))[0].starts_with("spec.kafka.url"));
        assert!(problems(&parse("spec:\n  nats: {}\n"))[0].contains("native or exotic"));
        let both = parse("spec:\n  nats:\n    native: {}\n    exotic: {url: u, clusterID: c}\n");
        assert!(problems(&both)[0].contains("not both"));
    }

    #[test]
    fn jetstream_replicas_form_a_quorum() {
        assert!(problems(&parse("spec:\n  jetstream: {version: latest, replicas: 1}\n")).is_empty());
        assert!(
            problems(&parse("spec:\n  jetstream: {version: latest, replicas: 2}\n"))[0].contains("quorum")
        );
    }

    #[test]
    fn durations_are_checked() {
        let bad = parse("spec:\n  jetstream:\n    version: latest\n    streamConfig: \"maxAge: 3 days\"\n");
        assert!(
            problems(&bad)[0].starts_with("spec.jetstream.streamConfig.maxAge"),
            "{:?}",
            problems(&bad)
        );
        let bad = parse("spec:\n  nats:\n    native: {maxAge: forever}\n");
        assert!(problems(&bad)[0].starts_with("spec.nats.native.maxAge"));
        let bad = parse("spec:\n  jetstreamExotic: {url: u, streamConfig: \"[1, 2]\"}\n");
        assert!(problems(&bad)[0].contains("mapping"));
    }
}
