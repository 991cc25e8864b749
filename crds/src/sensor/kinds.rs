//! The table of trigger kinds: the one place a kind is declared. Every row names the kind's
//! [`TriggerKind`] variant, its field of [`TriggerTemplate`] (the Rust ident and the name in YAML)
//! and its spec type. From the table come [`TriggerKind`] with `ALL` and the field names, the
//! borrowed view [`TriggerAction`], [`TriggerTemplate::actions`] and a check that every field of
//! [`TriggerTemplate`] is a kind or one of its three settings. What a kind *does* (its validation,
//! its parameter lists, its runtime) is an exhaustive `match` on [`TriggerAction`] or
//! [`TriggerKind`], so a new row fails to compile until each is written (`docs/adding-a-kind.md`).

use super::trigger::TriggerTemplate;
use super::triggers_http::{
    AWSLambdaTrigger, CustomTrigger, EmailTrigger, HTTPTrigger, LogTrigger, OpenWhiskTrigger, SlackTrigger,
};
use super::triggers_k8s::{ArgoWorkflowTrigger, StandardK8STrigger};
use super::triggers_messaging::{
    AzureEventHubsTrigger, AzureServiceBusTrigger, KafkaTrigger, NATSTrigger, PulsarTrigger,
};

/// Generates the kind types from the table below: one row per kind,
/// `Variant(field_ident, "yamlName", SpecType)`, in the order of the template's fields.
macro_rules! trigger_kinds {
    ($( $variant:ident($field:ident, $name:literal, $ty:ident) ),* $(,)?) => {
        /// The kinds of action a trigger template can name, in the order of the template's fields.
        /// Generated from the table in `crds/src/sensor/kinds.rs`; add a kind there.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum TriggerKind {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl TriggerKind {
            /// How many kinds there are.
            pub const COUNT: usize = [$(Self::$variant),*].len();

            /// Every kind, in the order of the template's fields.
            pub const ALL: [TriggerKind; Self::COUNT] = [$(Self::$variant),*];

            /// The action's field name in the template, as written in YAML (`argoWorkflow`).
            pub fn field_name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// The kind of the template field `name` (as written in YAML); `None` for any other name.
            pub fn from_field_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }

        /// A borrowed view of the one action a [`TriggerTemplate`] names; match on it exhaustively
        /// so a new kind fails to compile until every place handles it.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum TriggerAction<'a> {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant(&'a $ty),
            )*
        }

        impl TriggerAction<'_> {
            /// The action's kind.
            pub fn kind(&self) -> TriggerKind {
                match self {
                    $(Self::$variant(_) => TriggerKind::$variant,)*
                }
            }
        }

        impl TriggerTemplate {
            /// Every action field that is set, in declaration order. A valid template has exactly one.
            pub fn actions(&self) -> Vec<TriggerAction<'_>> {
                // Every field of the template is a kind with a row in the table or one of the
                // settings named here: a field added without a row fails to compile.
                let TriggerTemplate {
                    name: _,
                    conditions: _,
                    conditions_reset: _,
                    $($field,)*
                } = self;
                let mut out = Vec::with_capacity(1);
                $(
                    if let Some(t) = $field {
                        out.push(TriggerAction::$variant(t));
                    }
                )*
                out
            }
        }
    };
}

trigger_kinds! {
    K8s(k8s, "k8s", StandardK8STrigger),
    ArgoWorkflow(argo_workflow, "argoWorkflow", ArgoWorkflowTrigger),
    Http(http, "http", HTTPTrigger),
    AwsLambda(aws_lambda, "awsLambda", AWSLambdaTrigger),
    Custom(custom, "custom", CustomTrigger),
    Kafka(kafka, "kafka", KafkaTrigger),
    Nats(nats, "nats", NATSTrigger),
    Slack(slack, "slack", SlackTrigger),
    OpenWhisk(open_whisk, "openWhisk", OpenWhiskTrigger),
    Log(log, "log", LogTrigger),
    AzureEventHubs(azure_event_hubs, "azureEventHubs", AzureEventHubsTrigger),
    Pulsar(pulsar, "pulsar", PulsarTrigger),
    AzureServiceBus(azure_service_bus, "azureServiceBus", AzureServiceBusTrigger),
    Email(email, "email", EmailTrigger),
}

impl std::fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.field_name())
    }
}
