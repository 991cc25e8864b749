//! The operator's allow-lists: which ServiceAccounts the pods of a CR may run as, and which Secrets
//! they may read (`sluice controller --allowed-service-accounts`, `--allowed-secrets`; the chart's
//! `allowList.serviceAccounts` and `allowList.secrets`).
//!
//! Without a list, whoever may create an EventSource or a Sensor in a namespace may make its pods
//! read any Secret there and act as any ServiceAccount there, as upstream. With a list, a CR whose
//! pods would use a name outside it is not deployed: `Deployed=False`, reason `NotAllowed`, naming
//! each field and name ([`check_allowed`]). A list entry is a name, or a prefix ending in `*`.
//!
//! What counts as a use ([`PodUses`]):
//! - **ServiceAccount**: the `serviceAccountName` of an EventSource's or Sensor's `template`, or of
//!   a `jetstream` EventBus. A pod that names none (or `default`) runs as the namespace's `default`
//!   account, and an EventSource that needs a Lease gets the `<name>-eventsource` account the
//!   controller makes (rights on its own Lease only); both are always allowed (the latter is never
//!   named in a template).
//! - **Secret**: every typed reference in the spec (the ones the controller mounts, found as for
//!   mounting, `env[].valueFrom.secretKeyRef` of the template among them); the template's `secret`
//!   and `projected` volumes and `envFrom[].secretRef`; and the Secrets of the EventBus connection mounted into the pods (a
//!   `jetstreamExotic` bus's `accessSecret`, say) — except the client credentials the controller
//!   generates for a `jetstream` bus, which every pod on that bus needs.
//! - Not counted: `imagePullSecrets` (the kubelet pulls the image with them; the pod never sees
//!   them), and the Secrets the controller generates for the NATS pods themselves.

use std::fmt;
use std::str::FromStr;

use sluice_crds::common::Template;
use sluice_crds::eventbus::JetStreamBus;
use sluice_crds::refs::{RefKind, Reference};

use super::{BuildConfig, BuildError};

/// One entry of an allow-list: a name, or a prefix followed by `*` (`team-*`); `*` alone allows
/// every name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    prefix: String,
    wildcard: bool,
}

/// Why an allow-list entry was refused at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("failed to parse the name pattern {pattern:?}: {reason}")]
pub struct ParsePatternError {
    pattern: String,
    reason: &'static str,
}

impl NamePattern {
    /// Whether `name` is this name, or starts with this prefix.
    pub fn matches(&self, name: &str) -> bool {
        if self.wildcard {
            name.starts_with(&self.prefix)
        } else {
            name == self.prefix
        }
    }
}

impl FromStr for NamePattern {
    type Err = ParsePatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| ParsePatternError {
            pattern: text.to_string(),
            reason,
        };
        let (prefix, wildcard) = match text.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        if prefix.is_empty() && !wildcard {
            return Err(refuse("it is empty"));
        }
        if prefix.contains('*') {
            return Err(refuse("`*` may only end it, as in `team-*`"));
        }
        // Object names are lowercase DNS names: anything else is a typo that would match nothing.
        if !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(refuse(
                "a Kubernetes object name has only lowercase letters, digits, `-` and `.`",
            ));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            wildcard,
        })
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.prefix, if self.wildcard { "*" } else { "" })
    }
}

/// The names an operator allows: a name is allowed when any pattern matches it. An empty list
/// allows nothing; "no list" is `None` in [`BuildConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Vec<NamePattern>);

impl AllowList {
    /// Whether any pattern matches `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.0.iter().any(|p| p.matches(name))
    }
}

impl FromIterator<NamePattern> for AllowList {
    fn from_iter<I: IntoIterator<Item = NamePattern>>(patterns: I) -> Self {
        Self(patterns.into_iter().collect())
    }
}

/// A ServiceAccount or Secret a CR's pods would use, with the field that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Use {
    /// Where the name is written (`spec.template.serviceAccountName`).
    pub path: String,
    /// The object's name.
    pub name: String,
}

/// The ServiceAccounts and Secrets a CR's pods would use (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodUses {
    /// ServiceAccounts the pods run as.
    pub service_accounts: Vec<Use>,
    /// Secrets the pods can read.
    pub secrets: Vec<Use>,
}

impl PodUses {
    fn secret(&mut self, path: String, name: &str) {
        // An empty name selects nothing (the API server refuses such a pod anyway).
        if !name.is_empty() {
            self.secrets.push(Use {
                path,
                name: name.to_string(),
            });
        }
    }

    /// What the pods of an EventSource or a Sensor use: its pod `template` and the references
    /// `refs` of its spec (as [`sluice_crds::refs::references`] lists them).
    pub fn of_workload(template: Option<&Template>, refs: &[Reference]) -> Self {
        let mut uses = Self::default();
        if let Some(t) = template {
            uses.add_template(t);
        }
        for r in refs.iter().filter(|r| r.kind == RefKind::Secret) {
            uses.secret(format!("spec.{}", r.path), &r.name);
        }
        uses
    }

    fn add_template(&mut self, t: &Template) {
        if let Some(account) = t.service_account_name.as_deref().filter(|a| chosen_account(a)) {
            self.service_accounts.push(Use {
                path: "spec.template.serviceAccountName".into(),
                name: account.to_string(),
            });
        }
        for (i, volume) in t.volumes.iter().flatten().enumerate() {
            if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
                self.secret(format!("spec.template.volumes[{i}].secret.secretName"), name);
            }
            let sources = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
            for (j, source) in sources.into_iter().flatten().enumerate() {
                if let Some(secret) = &source.secret {
                    self.secret(
                        format!("spec.template.volumes[{i}].projected.sources[{j}].secret.name"),
                        &secret.name,
                    );
                }
            }
        }
        // `env[].valueFrom.secretKeyRef` is a typed reference: the spec's references list it.
        let Some(c) = &t.container else { return };
        for (i, source) in c.env_from.iter().flatten().enumerate() {
            if let Some(secret) = &source.secret_ref {
                self.secret(
                    format!("spec.template.container.envFrom[{i}].secretRef.name"),
                    &secret.name,
                );
            }
        }
    }

    /// What the NATS pods of a `jetstream` EventBus use that its spec chose: the ServiceAccount.
    pub fn of_bus(js: &JetStreamBus) -> Self {
        let mut uses = Self::default();
        if let Some(account) = js.service_account_name.as_deref().filter(|a| chosen_account(a)) {
            uses.service_accounts.push(Use {
                path: "spec.jetstream.serviceAccountName".into(),
                name: account.to_string(),
            });
        }
        uses
    }

    /// What the connection to EventBus `bus` adds: the Secrets `refs` of its connection settings
    /// (`status.config.jetstream`), which the pods get mounted. `generated` is the client Secret
    /// the controller made for the bus when it runs it (a `jetstream` bus): always allowed.
    pub fn of_bus_connection(bus: &str, refs: &[Reference], generated: Option<&str>) -> Self {
        let mut uses = Self::default();
        for r in refs.iter().filter(|r| r.kind == RefKind::Secret) {
            if Some(r.name.as_str()) != generated {
                // Only a `jetstreamExotic` bus's connection names Secrets of the user's choosing.
                uses.secret(
                    format!("EventBus {bus:?} spec.jetstreamExotic.{}", r.path),
                    &r.name,
                );
            }
        }
        uses
    }
}

/// Whether a `serviceAccountName` picks an account: empty and `default` both give the pod the
/// namespace's `default` account, which a pod that names none runs as anyway.
fn chosen_account(name: &str) -> bool {
    !name.is_empty() && name != "default"
}

/// One use outside an allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The field naming the object.
    pub path: String,
    /// `ServiceAccount` or `Secret`.
    pub kind: &'static str,
    /// The object's name.
    pub name: String,
    /// The controller flag holding the list.
    pub flag: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {:?} is not in the controller's allow-list ({})",
            self.path, self.kind, self.name, self.flag
        )
    }
}

/// Refuses `uses` when any of them is outside the allow-lists of `cfg` (a list that is not set
/// allows every name), naming every such field and name.
pub fn check_allowed(cfg: &BuildConfig, uses: &PodUses) -> Result<(), BuildError> {
    let lists = [
        (
            cfg.allowed_service_accounts.as_ref(),
            "ServiceAccount",
            "--allowed-service-accounts",
            &uses.service_accounts,
        ),
        (
            cfg.allowed_secrets.as_ref(),
            "Secret",
            "--allowed-secrets",
            &uses.secrets,
        ),
    ];
    let mut refused = Vec::new();
    for (list, kind, flag, used) in lists {
        let Some(list) = list else { continue };
        for u in used.iter().filter(|u| !list.allows(&u.name)) {
            refused.push(Refusal {
                path: u.path.clone(),
                kind,
                name: u.name.clone(),
                flag,
            });
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(BuildError::RejectNotAllowed { refused })
    }
}

#[cfg(test)]
mod tests {
    use sluice_crds::refs::references;
    use sluice_crds::{EventBus, EventSource, Sensor};

    use super::*;
    use crate::children::{eventsource_children, jetstream_client_secret_name};

    fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    fn list(names: &[&str]) -> Option<AllowList> {
        Some(
            names
                .iter()
                .map(|n| n.parse::<NamePattern>().expect("valid pattern"))
                .collect(),
        )
    }

    fn strict(service_accounts: &[&str], secrets: &[&str]) -> BuildConfig {
        BuildConfig {
            allowed_service_accounts: list(service_accounts),
            allowed_secrets: list(secrets),
            ..BuildConfig::default()
        }
    }

    fn sensor(template: &str) -> Sensor {
        parse(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata: {{name: s, namespace: team, uid: u}}\nspec:\n{template}  dependencies:\n    - {{name: d, eventSourceName: es, eventName: e}}\n  triggers:\n    - template:\n        name: call\n        http:\n          url: http://127.0.0.1:9/\n          basicAuth:\n            username: {{name: api-user, key: u}}\n            password: {{name: api-pass, key: p}}\n"
        ))
    }

    fn sensor_uses(s: &Sensor) -> PodUses {
        let refs = references(&s.spec).expect("references listed");
        PodUses::of_workload(s.spec.template.as_ref(), &refs)
    }

    fn refusals_of(result: Result<(), BuildError>) -> Vec<Refusal> {
        match result {
            Err(BuildError::RejectNotAllowed { refused }) => refused,
            other => panic!("expected NotAllowed, got {other:?}"),
        }
    }

    #[test]
    fn patterns_are_names_or_prefixes() {
        let exact: NamePattern = "runner".parse().expect("a name");
        assert!(exact.matches("runner"));
        assert!(!exact.matches("runner-2"));
        assert!(!exact.matches("runne"));
        let prefix: NamePattern = "team-*".parse().expect("a prefix");
        assert!(prefix.matches("team-a"));
        assert!(prefix.matches("team-"));
        assert!(!prefix.matches("team"));
        assert!(!prefix.matches("other-team-a"));
        let any: NamePattern = "*".parse().expect("everything");
        assert!(any.matches("anything"));
        assert_eq!(prefix.to_string(), "team-*");
        for (bad, why) in [
            ("", "empty"),
            ("a*b", "may only end"),
            ("**", "may only end"),
            ("Runner", "lowercase"),
            ("team a", "lowercase"),
        ] {
            let error = bad.parse::<NamePattern>().expect_err("refused");
            assert!(error.to_string().contains(why), "{bad:?}: {error}");
            assert!(error.to_string().starts_with("failed to parse"), "{error}");
        }
        assert!(!AllowList::default().allows("x"), "an empty list allows nothing");
    }

    #[test]
    fn without_lists_everything_is_allowed_as_today() {
        let s = sensor("  template:\n    serviceAccountName: cluster-admin\n");
        let uses = sensor_uses(&s);
        assert_eq!(uses.service_accounts.len(), 1);
        assert_eq!(uses.secrets.len(), 2);
        assert_eq!(check_allowed(&BuildConfig::default(), &uses), Ok(()));
    }

    #[test]
    fn a_service_account_outside_the_list_is_refused_naming_field_and_name() {
        let cfg = strict(&["sensor-*", "runner"], &["api-*"]);
        let outsider = sensor("  template:\n    serviceAccountName: cluster-admin\n");
        let refused = refusals_of(check_allowed(&cfg, &sensor_uses(&outsider)));
        assert_eq!(
            refused,
            [Refusal {
                path: "spec.template.serviceAccountName".into(),
                kind: "ServiceAccount",
                name: "cluster-admin".into(),
                flag: "--allowed-service-accounts",
            }]
        );
        let message = BuildError::RejectNotAllowed { refused }.to_string();
        assert_eq!(
            message,
            "spec.template.serviceAccountName: ServiceAccount \"cluster-admin\" is not in the \
             controller's allow-list (--allowed-service-accounts)"
        );
        for allowed in ["runner", "sensor-runner"] {
            let s = sensor(&format!("  template:\n    serviceAccountName: {allowed}\n"));
            assert_eq!(check_allowed(&cfg, &sensor_uses(&s)), Ok(()), "{allowed}");
        }
        // No name: the pod runs as the namespace's `default` account, which stays allowed, and
        // naming it changes nothing.
        assert_eq!(check_allowed(&cfg, &sensor_uses(&sensor(""))), Ok(()));
        let named_default = sensor("  template:\n    serviceAccountName: default\n");
        assert_eq!(check_allowed(&cfg, &sensor_uses(&named_default)), Ok(()));
    }

    #[test]
    fn every_secret_reference_in_the_spec_is_checked_by_type() {
        let cfg = strict(&[], &["api-user"]);
        let refused = refusals_of(check_allowed(&cfg, &sensor_uses(&sensor(""))));
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].name, "api-pass");
        assert_eq!(refused[0].kind, "Secret");
        assert_eq!(refused[0].flag, "--allowed-secrets");
        assert_eq!(
            refused[0].path,
            "spec.triggers[0].template.http.basicAuth.password"
        );
        let es: EventSource = parse(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: hooks}\nspec:\n  webhook:\n    example:\n      port: \"12000\"\n      endpoint: /e\n      method: POST\n      authSecret: {name: hook-token, key: token}\n",
        );
        let uses = PodUses::of_workload(None, &references(&es.spec).expect("references listed"));
        let refused = refusals_of(check_allowed(&cfg, &uses));
        assert_eq!(refused[0].path, "spec.webhook.example.authSecret");
        assert_eq!(check_allowed(&strict(&[], &["hook-*"]), &uses), Ok(()));
    }

    #[test]
    fn secrets_a_template_mounts_or_puts_in_env_are_checked() {
        let template = "  template:\n    volumes:\n      - {name: a, secret: {secretName: vol-secret}}\n      - name: b\n        projected:\n          sources:\n            - serviceAccountToken: {path: token}\n            - secret: {name: projected-secret}\n    container:\n      env:\n        - {name: PLAIN, value: x}\n        - name: PASSWORD\n          valueFrom: {secretKeyRef: {name: env-secret, key: p}}\n      envFrom:\n        - configMapRef: {name: settings}\n        - secretRef: {name: envfrom-secret}\n    imagePullSecrets:\n      - name: registry\n";
        let s = sensor(template);
        let cfg = strict(&[], &["api-*"]);
        let paths: Vec<(String, String)> = refusals_of(check_allowed(&cfg, &sensor_uses(&s)))
            .into_iter()
            .map(|r| (r.path, r.name))
            .collect();
        let expected = [
            ("spec.template.volumes[0].secret.secretName", "vol-secret"),
            (
                "spec.template.volumes[1].projected.sources[1].secret.name",
                "projected-secret",
            ),
            (
                "spec.template.container.envFrom[1].secretRef.name",
                "envfrom-secret",
            ),
            (
                "spec.template.container.env[1].valueFrom.secretKeyRef",
                "env-secret",
            ),
        ];
        assert_eq!(
            paths,
            expected.map(|(p, n)| (p.to_string(), n.to_string())),
            "the pull secret is the kubelet's, not the pod's"
        );
        let allowed = strict(
            &[],
            &[
                "api-*",
                "vol-secret",
                "projected-secret",
                "env-secret",
                "envfrom-secret",
            ],
        );
        assert_eq!(check_allowed(&allowed, &sensor_uses(&s)), Ok(()));
    }

    #[test]
    fn the_generated_bus_credentials_are_always_allowed_other_bus_secrets_are_not() {
        let cfg = strict(&[], &["api-*"]);
        let connection = sluice_crds::eventbus::JetStreamConfig {
            url: Some("nats://bus:4222".into()),
            access_secret: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                name: jetstream_client_secret_name("default"),
                key: "client-auth".into(),
                optional: None,
            }),
            ..Default::default()
        };
        let refs = references(&connection).expect("references listed");
        let generated = jetstream_client_secret_name("default");
        let uses = PodUses::of_bus_connection("default", &refs, Some(&generated));
        assert_eq!(uses, PodUses::default());
        // The same name on a bus the controller does not run is the user's choice, and checked.
        let uses = PodUses::of_bus_connection("default", &refs, None);
        let refused = refusals_of(check_allowed(&cfg, &uses));
        assert_eq!(
            refused[0].path,
            "EventBus \"default\" spec.jetstreamExotic.accessSecret"
        );
        assert_eq!(refused[0].name, generated);
    }

    #[test]
    fn a_bus_service_account_is_checked() {
        let bus: EventBus = parse(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventBus\nmetadata: {name: default}\nspec:\n  jetstream:\n    serviceAccountName: nats-admin\n    imagePullSecrets: [{name: registry}]\n",
        );
        let js = bus.spec.jetstream.expect("jetstream");
        let uses = PodUses::of_bus(&js);
        assert!(uses.secrets.is_empty());
        let refused = refusals_of(check_allowed(&strict(&["nats"], &[]), &uses));
        assert_eq!(refused[0].path, "spec.jetstream.serviceAccountName");
        assert_eq!(check_allowed(&strict(&["nats-*"], &[]), &uses), Ok(()));
        assert_eq!(
            check_allowed(&strict(&[], &[]), &PodUses::of_bus(&JetStreamBus::default())),
            Ok(())
        );
    }

    #[test]
    fn the_leader_election_account_the_controller_makes_needs_no_entry() {
        let calendar: EventSource = parse(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: ticks, namespace: team, uid: u}\nspec:\n  calendar:\n    tick: {interval: 10s}\n",
        );
        let cfg = strict(&["nobody"], &["nothing"]);
        let uses = PodUses::of_workload(calendar.spec.template.as_ref(), &[]);
        assert_eq!(check_allowed(&cfg, &uses), Ok(()));
        let children = eventsource_children(&calendar, "nats://bus:4222", &cfg).expect("builds");
        assert_eq!(
            children.deployment["spec"]["template"]["spec"]["serviceAccountName"],
            "ticks-eventsource"
        );
    }
}
