//! Offline checks of one trigger: its template names exactly one action, its condition parses and
//! names existing dependencies, every parameter reads from an existing dependency, the action's own
//! required fields are set, and retry, rate-limit, policy and dead-letter settings make sense.

use std::collections::BTreeSet;

use super::conditions;
use super::trigger::{Trigger, TriggerAction, TriggerKind, TriggerParameter, TriggerPolicy, TriggerTemplate};
use super::triggers_k8s::ArtifactLocation;
use crate::common::Backoff;
use crate::validate::Problems;

/// Every action field name, for messages: `k8s, argoWorkflow, … or email`.
fn action_names() -> String {
    let names: Vec<&str> = TriggerKind::ALL
        .into_iter()
        .map(TriggerKind::field_name)
        .collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Checks one trigger at `path` (`spec.triggers[0]`, or `…dlqTrigger` when `is_dlq`). `known` are the
/// sensor's dependency names.
pub(super) fn check_trigger(
    trigger: &Trigger,
    path: &str,
    known: &BTreeSet<&str>,
    is_dlq: bool,
    problems: &mut Problems,
) {
    // Template-level parameters may rewrite the action's own parameters (upstream's tutorial sets
    // `argoWorkflow.parameters.0.src.dependencyName` from the event), so those are only known at
    // run time and are not checked here.
    let rewritten: Vec<&str> = trigger
        .parameters
        .iter()
        .map(|p| p.dest.as_str())
        .filter(|d| !d.is_empty())
        .collect();
    match &trigger.template {
        Some(template) => check_template(
            template,
            &Problems::at(path, "template"),
            known,
            &rewritten,
            problems,
        ),
        None => problems.error(
            Problems::at(path, "template"),
            "every trigger needs a template with a name and one action",
        ),
    }
    for (i, p) in trigger.parameters.iter().enumerate() {
        check_parameter(
            p,
            &Problems::index(&Problems::at(path, "parameters"), i),
            known,
            false,
            problems,
        );
    }
    if let Some(retry) = &trigger.retry_strategy {
        check_backoff(retry, &Problems::at(path, "retryStrategy"), problems);
    }
    if let Some(rate) = &trigger.rate_limit {
        let p = Problems::at(path, "rateLimit");
        match rate.unit.as_deref() {
            None | Some("" | "Second" | "Minute" | "Hour") => {}
            Some(other) => problems.error(
                Problems::at(&p, "unit"),
                format!("unknown unit {other:?}: use Second, Minute or Hour"),
            ),
        }
        if rate.requests_per_unit.is_some_and(|n| n < 0) {
            problems.error(Problems::at(&p, "requestsPerUnit"), "must not be negative");
        }
    }
    if let Some(n) = trigger.concurrency {
        if n == 0 || n > Trigger::MAX_CONCURRENCY {
            problems.error(
                Problems::at(path, "concurrency"),
                format!("must be from 1 to {} (got {n})", Trigger::MAX_CONCURRENCY),
            );
        }
    }
    if let (Some(policy), Some(template)) = (&trigger.policy, &trigger.template) {
        check_policy(policy, template, &Problems::at(path, "policy"), problems);
    }
    if let Some(dlq) = &trigger.dlq_trigger {
        let p = Problems::at(path, "dlqTrigger");
        if is_dlq {
            problems.error(&p, "a dlqTrigger cannot have a dlqTrigger of its own");
            return;
        }
        if !trigger.is_at_least_once() {
            problems.error(
                Problems::at(path, "atLeastOnce"),
                "a dlqTrigger needs at-least-once delivery: remove atLeastOnce: false (failed events are only sent there when delivery is at least once)",
            );
        }
        if !dlq.is_at_least_once() {
            problems.error(
                Problems::at(&p, "atLeastOnce"),
                "remove atLeastOnce: false inside the dlqTrigger",
            );
        }
        check_trigger(dlq, &p, known, true, problems);
    }
}

fn check_template(
    template: &TriggerTemplate,
    path: &str,
    known: &BTreeSet<&str>,
    rewritten: &[&str],
    problems: &mut Problems,
) {
    if template.name.is_empty() {
        problems.error(Problems::at(path, "name"), "every trigger needs a name");
    }
    if let Some(text) = template.conditions.as_deref().filter(|t| !t.trim().is_empty()) {
        let p = Problems::at(path, "conditions");
        match conditions::parse(text) {
            Err(e) => problems.error(&p, e.to_string()),
            Ok(expr) => {
                for dep in expr.deps().into_iter().filter(|d| !known.contains(d)) {
                    problems.error(
                        &p,
                        format!(
                            "{dep:?} is not a dependency of this sensor; known: {}",
                            join(known)
                        ),
                    );
                }
            }
        }
    }
    for (i, reset) in template.conditions_reset.iter().enumerate() {
        let p = Problems::index(&Problems::at(path, "conditionsReset"), i);
        match reset.by_time.as_ref() {
            None => problems.error(&p, "set byTime.cron"),
            Some(by_time) => {
                let p = Problems::at(&Problems::at(&p, "byTime"), "cron");
                check_cron(by_time.cron.as_deref().unwrap_or(""), &p, problems);
            }
        }
    }
    let actions = template.actions();
    match actions.as_slice() {
        [] => problems.error(path, format!("set one action: {}", action_names())),
        [_] => {}
        many => {
            let names: Vec<&str> = many.iter().map(TriggerAction::field_name).collect();
            problems.error(
                path,
                format!("set only one action, found {}", names.join(" and ")),
            );
        }
    }
    for action in &actions {
        let p = Problems::at(path, action.field_name());
        let lists =
            std::iter::once(("parameters", action.parameters())).chain(action.extra_parameter_lists());
        for (field, list) in lists {
            // Why: upstream lets an HTTP payload parameter have an empty dest (the value becomes the
            // whole body); every other list needs a destination.
            let dest_optional = matches!(action, TriggerAction::Http(_)) && field == "payload";
            for (i, param) in list.iter().enumerate() {
                let pp = Problems::index(&Problems::at(&p, field), i);
                let own_path = format!("{}.{field}.{i}", action.field_name());
                if rewritten.iter().any(|dest| covers(dest, &own_path)) {
                    check_parameter_shape(param, &pp, dest_optional, problems);
                } else {
                    check_parameter(param, &pp, known, dest_optional, problems);
                }
            }
        }
        check_action(action, &p, problems);
    }
}

/// Checks a `conditionsReset.byTime.cron` spec with the parser the sensor runs it with.
fn check_cron(spec: &str, path: &str, problems: &mut Problems) {
    match crate::eventsource::parse_schedule(spec) {
        Ok(parsed) if matches!(parsed.schedule, crate::eventsource::CalendarSchedule::Every(_)) => {
            problems.error(path, "@every is not a time of day; use a 5-field cron spec")
        }
        Ok(_) => {}
        Err(e) => problems.error(path, e.to_string()),
    }
}

/// True when a template-level parameter writing to `dest` (a dotted path from the template)
/// replaces, or writes inside, the action parameter at `param_path` (`argoWorkflow.parameters.0`).
fn covers(dest: &str, param_path: &str) -> bool {
    dest == param_path
        || dest
            .strip_prefix(param_path)
            .is_some_and(|rest| rest.starts_with('.'))
        || param_path
            .strip_prefix(dest)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn check_parameter(
    param: &TriggerParameter,
    path: &str,
    known: &BTreeSet<&str>,
    dest_optional: bool,
    problems: &mut Problems,
) {
    match &param.src {
        None => problems.error(
            Problems::at(path, "src"),
            "set src.dependencyName (and dataKey, contextKey or value)",
        ),
        Some(src) => {
            let p = Problems::at(&Problems::at(path, "src"), "dependencyName");
            if src.dependency_name.is_empty() {
                problems.error(&p, "name the dependency whose event supplies the value");
            } else if !known.contains(src.dependency_name.as_str()) {
                problems.error(
                    &p,
                    format!(
                        "{:?} is not a dependency of this sensor; known: {}",
                        src.dependency_name,
                        join(known)
                    ),
                );
            }
        }
    }
    check_parameter_shape(param, path, dest_optional, problems);
}

/// The checks of a parameter that do not depend on the sensor's dependencies.
fn check_parameter_shape(param: &TriggerParameter, path: &str, dest_optional: bool, problems: &mut Problems) {
    if param.dest.is_empty() && !dest_optional {
        problems.error(Problems::at(path, "dest"), "give the path of the field to set");
    }
    match param.operation.as_deref() {
        None | Some("" | "overwrite" | "prepend" | "append") => {}
        Some(other) => problems.error(
            Problems::at(path, "operation"),
            format!("unknown operation {other:?}: use overwrite, prepend or append"),
        ),
    }
}

fn check_backoff(b: &Backoff, path: &str, problems: &mut Problems) {
    if b.steps.is_some_and(|s| s < 0) {
        problems.error(Problems::at(path, "steps"), "must not be negative");
    }
    if let Some(d) = &b.duration {
        if let Err(e) = d.to_duration() {
            problems.error(Problems::at(path, "duration"), e.to_string());
        }
    }
    for (field, amount) in [("factor", &b.factor), ("jitter", &b.jitter)] {
        if let Some(a) = amount {
            match a.as_f64() {
                Some(f) if f >= 0.0 && f.is_finite() => {}
                _ => problems.error(
                    Problems::at(path, field),
                    format!("{:?} is not a non-negative number", a.0),
                ),
            }
        }
    }
}

/// Which block of `policy` judges a kind's success: upstream reads `policy.k8s` (labels on the
/// object acted on) for the Kubernetes kinds and `policy.status` (response codes) for the
/// request-style ones; other kinds ignore `policy`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JudgedBy {
    Labels,
    Status,
    Nothing,
}

fn judged_by(kind: TriggerKind) -> JudgedBy {
    match kind {
        TriggerKind::K8s | TriggerKind::ArgoWorkflow => JudgedBy::Labels,
        TriggerKind::Http | TriggerKind::AwsLambda => JudgedBy::Status,
        TriggerKind::Custom
        | TriggerKind::Kafka
        | TriggerKind::Nats
        | TriggerKind::Slack
        | TriggerKind::OpenWhisk
        | TriggerKind::Log
        | TriggerKind::AzureEventHubs
        | TriggerKind::Pulsar
        | TriggerKind::AzureServiceBus
        | TriggerKind::Email => JudgedBy::Nothing,
    }
}

fn check_policy(policy: &TriggerPolicy, template: &TriggerTemplate, path: &str, problems: &mut Problems) {
    let judged = |by: JudgedBy| template.actions().iter().any(|a| judged_by(a.kind()) == by);
    if let (true, Some(k8s)) = (judged(JudgedBy::Labels), &policy.k8s) {
        if k8s.labels.is_empty() {
            problems.error(
                Problems::at(path, "k8s.labels"),
                "list the labels that mark the resource as succeeded",
            );
        }
        if let Some(b) = &k8s.backoff {
            check_backoff(b, &Problems::at(path, "k8s.backoff"), problems);
        }
    }
    if let (true, Some(status)) = (judged(JudgedBy::Status), &policy.status) {
        if status.allow.is_empty() {
            problems.error(
                Problems::at(path, "status.allow"),
                "list the response status codes that count as success",
            );
        }
    }
}

fn require(value: &str, path: &str, field: &str, what: &str, problems: &mut Problems) {
    if value.trim().is_empty() {
        problems.error(Problems::at(path, field), format!("{what} is required"));
    }
}

fn require_opt(value: Option<&str>, path: &str, field: &str, what: &str, problems: &mut Problems) {
    require(value.unwrap_or(""), path, field, what, problems);
}

fn require_payload(list: &[TriggerParameter], path: &str, problems: &mut Problems) {
    if list.is_empty() {
        problems.error(
            Problems::at(path, "payload"),
            "list the payload parameters that build the message (dest is a path in the JSON body)",
        );
    }
}

fn check_source(source: Option<&ArtifactLocation>, path: &str, problems: &mut Problems) {
    let p = Problems::at(path, "source");
    let Some(source) = source else {
        problems.error(
            &p,
            "say where the resource comes from: resource, inline, file, url, configmap, git or s3",
        );
        return;
    };
    match source.kinds().as_slice() {
        [] => problems.error(&p, "set one of resource, inline, file, url, configmap, git or s3"),
        [_] => {}
        many => problems.error(&p, format!("set only one source, found {}", many.join(" and "))),
    }
    if let Some(git) = &source.git {
        let gp = Problems::at(&p, "git");
        require(&git.url, &gp, "url", "the repository URL", problems);
        require(
            &git.file_path,
            &gp,
            "filePath",
            "the path of the manifest in the repository",
            problems,
        );
    }
    if let Some(url) = &source.url {
        require(&url.path, &p, "url.path", "the URL", problems);
    }
    if source.resource.as_ref().is_some_and(|r| !r.is_object()) {
        problems.error(
            Problems::at(&p, "resource"),
            "the resource must be a YAML object (a Kubernetes manifest)",
        );
    }
}

fn check_action(action: &TriggerAction<'_>, path: &str, problems: &mut Problems) {
    match action {
        TriggerAction::K8s(t) => {
            check_source(t.source.as_ref(), path, problems);
            match t.operation.as_deref() {
                None | Some("" | "create" | "update" | "patch" | "delete") => {}
                Some(other) => problems.error(
                    Problems::at(path, "operation"),
                    format!("unknown operation {other:?}: use create, update, patch or delete"),
                ),
            }
            if let Some(s) = t.patch_strategy.as_deref().filter(|s| !s.is_empty()) {
                if !matches!(
                    s,
                    "application/json-patch+json"
                        | "application/merge-patch+json"
                        | "application/strategic-merge-patch+json"
                        | "application/apply-patch+yaml"
                ) {
                    problems.error(
                        Problems::at(path, "patchStrategy"),
                        format!("unknown patch strategy {s:?}"),
                    );
                }
            }
        }
        TriggerAction::ArgoWorkflow(t) => {
            check_source(t.source.as_ref(), path, problems);
            match t.operation.as_deref() {
                None
                | Some(
                    "" | "submit" | "submit-from" | "resubmit" | "retry" | "resume" | "suspend" | "terminate"
                    | "stop",
                ) => {}
                Some(other) => problems.error(
                    Problems::at(path, "operation"),
                    format!(
                        "unknown operation {other:?}: use submit, submit-from, resubmit, retry, resume, suspend, terminate or stop"
                    ),
                ),
            }
        }
        TriggerAction::Http(t) => {
            require(&t.url, path, "url", "the URL to send the request to", problems);
            if let Some(m) = t.method.as_deref().filter(|m| !m.is_empty()) {
                if !matches!(m, "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                    problems.error(
                        Problems::at(path, "method"),
                        format!("unsupported method {m:?}: use GET, POST, PUT, PATCH or DELETE (upper case)"),
                    );
                }
            }
            if t.timeout.is_some_and(|s| s < 0) {
                problems.error(Problems::at(path, "timeout"), "must not be negative (seconds)");
            }
        }
        TriggerAction::AwsLambda(t) => {
            require(
                &t.function_name,
                path,
                "functionName",
                "the function name",
                problems,
            );
            require(&t.region, path, "region", "the AWS region", problems);
            require_payload(&t.payload, path, problems);
        }
        TriggerAction::Custom(t) => {
            require(
                &t.server_url,
                path,
                "serverURL",
                "the gRPC server address",
                problems,
            );
            if t.spec.is_empty() {
                problems.error(
                    Problems::at(path, "spec"),
                    "give the spec the custom trigger server interprets",
                );
            }
            if t.secure && t.cert_secret.is_none() {
                problems.error(
                    Problems::at(path, "certSecret"),
                    "a secure connection needs certSecret",
                );
            }
        }
        TriggerAction::Kafka(t) => {
            require(&t.url, path, "url", "the broker address", problems);
            require(&t.topic, path, "topic", "the topic", problems);
            require_payload(&t.payload, path, problems);
            if t.partition.is_some() {
                problems.warning(
                    Problems::at(path, "partition"),
                    "deprecated and ignored; use partitioningKey",
                );
            }
        }
        TriggerAction::Nats(t) => {
            require(&t.url, path, "url", "the NATS server URL", problems);
            require(&t.subject, path, "subject", "the subject", problems);
            require_payload(&t.payload, path, problems);
        }
        TriggerAction::Slack(t) => {
            if t.slack_token.is_none() {
                problems.error(
                    Problems::at(path, "slackToken"),
                    "reference the Secret key holding the Slack token",
                );
            }
        }
        TriggerAction::OpenWhisk(t) => {
            require(&t.host, path, "host", "the OpenWhisk host", problems);
            require(&t.action_name, path, "actionName", "the action name", problems);
            require_payload(&t.payload, path, problems);
            if let Some(token) = &t.auth_token {
                if token.name.is_empty() || token.key.is_empty() {
                    problems.error(
                        Problems::at(path, "authToken"),
                        "give both name and key of the Secret",
                    );
                }
            }
        }
        TriggerAction::Log(_) => {}
        TriggerAction::AzureEventHubs(t) => {
            require(
                &t.fqdn,
                path,
                "fqdn",
                "the Event Hubs namespace host name",
                problems,
            );
            require(&t.hub_name, path, "hubName", "the Event Hub name", problems);
        }
        TriggerAction::Pulsar(t) => {
            require(&t.url, path, "url", "the Pulsar service URL", problems);
            require(&t.topic, path, "topic", "the topic", problems);
            if let Some(b) = &t.connection_backoff {
                check_backoff(b, &Problems::at(path, "connectionBackoff"), problems);
            }
        }
        TriggerAction::AzureServiceBus(t) => {
            let queue = t.queue_name.as_deref().is_some_and(|s| !s.is_empty());
            let topic = t.topic_name.as_deref().is_some_and(|s| !s.is_empty());
            if !queue && !topic {
                problems.error(path, "set queueName, or topicName with subscriptionName");
            }
        }
        TriggerAction::Email(t) => {
            require_opt(t.host.as_deref(), path, "host", "the SMTP host", problems);
            if t.port.is_some_and(|p| !(0..=65535).contains(&p)) {
                problems.error(Problems::at(path, "port"), "must be between 0 and 65535");
            }
        }
    }
}

fn join(names: &BTreeSet<&str>) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.iter().copied().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
#[path = "validate_triggers_tests.rs"]
mod tests;
