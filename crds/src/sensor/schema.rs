//! Hand-written schema pieces where the derived one would not be a valid Kubernetes structural schema.

use schemars::{json_schema, Schema, SchemaGenerator};

use super::trigger::{RateLimit, TriggerParameter, TriggerPolicy, TriggerTemplate};
use crate::common::Backoff;

/// An object whose content is not checked and kept as written (`x-kubernetes-preserve-unknown-fields`),
/// for the k8s trigger's embedded resource manifest.
pub(crate) fn any_object_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The schema of `dlqTrigger`: a trigger without a `dlqTrigger` of its own. Deriving it would recurse
/// (a `$ref` back to `Trigger`), which structural schemas forbid; nesting is invalid anyway.
pub(crate) fn dlq_trigger_schema(generator: &mut SchemaGenerator) -> Schema {
    let template = generator.subschema_for::<TriggerTemplate>();
    let parameter = generator.subschema_for::<TriggerParameter>();
    let policy = generator.subschema_for::<TriggerPolicy>();
    let backoff = generator.subschema_for::<Backoff>();
    let rate_limit = generator.subschema_for::<RateLimit>();
    json_schema!({
        "type": "object",
        "properties": {
            "template": template,
            "parameters": {
                "description": "Values copied from the triggering events into the template.",
                "type": "array",
                "items": parameter,
            },
            "policy": policy,
            "retryStrategy": backoff,
            "rateLimit": rate_limit,
            "atLeastOnce": {
                "description": "Acknowledge the events only after this trigger succeeded. Default false.",
                "type": "boolean",
            },
        },
    })
}
