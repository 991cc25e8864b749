//! Offline checks of an EventSource beyond what parsing proves. Each rule records a
//! [`Problem`](crate::validate::Problem) at the field's path (`spec.webhook.example.port`) with a
//! reason the user can act on. Errors mean the manifest cannot work (or upstream Argo Events
//! rejects it); warnings flag likely mistakes and Sluice-only extensions.
//!
//! The cross-event rules live here (unique names, HTTP route collisions, deployment strategy);
//! per-kind field rules are in `kinds` and `push`.

use std::collections::BTreeMap;

use super::{
    CalendarEventSource, EventSource, EventSourceFilter, EventSourceKind, EventSourceSpec, WatchPathConfig,
    WebhookContext, WebhookContextPlace,
};
use crate::common::{Backoff, BasicAuth};
use crate::validate::{check_duration, check_regex, Problems, Validate};

mod kinds;
mod push;

impl Validate for EventSource {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let name_path = Problems::at(path, "metadata.name");
        match self.metadata.name.as_deref() {
            None | Some("") => problems.error(
                name_path,
                "the EventSource needs a name: it is the first part of every event's bus subject",
            ),
            Some(name) if !is_subject_token(name) => problems.warning(
                name_path,
                format!(
                    "{name:?} contains '.', '*', '>' or whitespace, which split or wildcard the bus subject"
                ),
            ),
            Some(_) => {}
        }
        self.spec.validate(&Problems::at(path, "spec"), problems);
    }
}

impl Validate for EventSourceSpec {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let events = self.event_names();
        if events.is_empty() {
            problems.error(
                path,
                "no events are defined: add at least one event under a kind, e.g. spec.webhook.<name> or \
                 spec.calendar.<name>",
            );
        }
        check_event_names(&events, path, problems);
        check_strategies(&events, path, problems);
        check_http_routes(self, path, problems);
        if let Some(replicas) = self.replicas {
            if replicas < 0 {
                problems.error(
                    Problems::at(path, "replicas"),
                    format!("replicas must not be negative, got {replicas}"),
                );
            }
        }
        if self.event_bus_name.as_deref() == Some("") {
            problems.warning(
                Problems::at(path, "eventBusName"),
                "empty eventBusName: the EventBus `default` is used",
            );
        }
        if let Some(service) = &self.service {
            for (i, port) in service.ports.iter().enumerate() {
                if !(1..=65535).contains(&port.port) {
                    problems.error(
                        Problems::at(&Problems::index(&Problems::at(path, "service.ports"), i), "port"),
                        format!("port {} is outside 1-65535", port.port),
                    );
                }
            }
        }
        kinds::validate_kinds(self, path, problems);
    }
}

/// `spec.<kind>.<event>`
pub(super) fn event_path(spec_path: &str, kind: EventSourceKind, name: &str) -> String {
    Problems::at(&Problems::at(spec_path, kind.field_name()), name)
}

/// True when `s` is usable as one token of a NATS subject.
fn is_subject_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
}

fn check_event_names(events: &[(EventSourceKind, &str)], path: &str, problems: &mut Problems) {
    let mut first: BTreeMap<&str, EventSourceKind> = BTreeMap::new();
    for &(kind, name) in events {
        let at = event_path(path, kind, name);
        if name.is_empty() {
            problems.error(at, "event names must not be empty");
            continue;
        }
        if !is_subject_token(name) {
            problems.warning(
                at.clone(),
                format!("event name {name:?} contains '.', '*', '>' or whitespace, which split or wildcard the bus subject"),
            );
        }
        match first.get(name) {
            Some(other) => problems.error(
                at,
                format!(
                    "event name {name:?} is also declared under spec.{other}; names must be unique across all \
                     kinds because each event is published as <eventSourceName>.<eventName>"
                ),
            ),
            None => {
                first.insert(name, kind);
            }
        }
    }
}

fn check_strategies(events: &[(EventSourceKind, &str)], path: &str, problems: &mut Problems) {
    let single = events.iter().find(|(k, _)| k.needs_single_active());
    let overlap = events.iter().find(|(k, _)| !k.needs_single_active());
    if let (Some((a, _)), Some((b, _))) = (single, overlap) {
        problems.warning(
            path,
            format!(
                "spec.{a} must run in one active pod while spec.{b} may overlap during updates; upstream Argo \
                 Events rejects such a mix, so split them into two EventSources to stay portable"
            ),
        );
    }
}

/// The HTTP methods' token syntax (RFC 9110 `token`).
fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a webhook port string the way upstream does (decimal digits only) and checks its range.
pub(super) fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "port {port:?} is not a number; write it as a quoted string such as \"12000\""
        ));
    }
    match port.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("port {port} is outside 1-65535")),
    }
}

/// Checks one push event's HTTP settings. `method_required` is true for the plain webhook kind,
/// which rejects every request whose method differs from `method`.
pub(super) fn check_webhook_context(
    ctx: &WebhookContext,
    path: &str,
    method_required: bool,
    problems: &mut Problems,
) {
    let at = |field: &str| Problems::at(path, field);
    if ctx.endpoint.is_empty() {
        problems.error(at("endpoint"), "endpoint is required, e.g. \"/push\"");
    } else if !ctx.endpoint.starts_with('/') {
        problems.error(
            at("endpoint"),
            format!("endpoint {:?} must start with '/'", ctx.endpoint),
        );
    }
    if ctx.port.is_empty() {
        problems.error(at("port"), "port is required, e.g. \"12000\"");
    } else if let Err(reason) = parse_port(&ctx.port) {
        problems.error(at("port"), reason);
    }
    if ctx.method.is_empty() {
        if method_required {
            problems.error(
                at("method"),
                "method is required (e.g. POST): requests with any other method are rejected",
            );
        }
    } else if !is_http_token(&ctx.method) {
        problems.error(
            at("method"),
            format!("{:?} is not a valid HTTP method", ctx.method),
        );
    } else if ctx.method.bytes().any(|b| b.is_ascii_lowercase()) {
        problems.warning(
            at("method"),
            format!(
                "methods are case-sensitive and clients send upper case; did you mean {:?}?",
                ctx.method.to_uppercase()
            ),
        );
    }
    if let Some(size) = ctx.max_payload_size {
        if size <= 0 {
            problems.error(
                at("maxPayloadSize"),
                format!("maxPayloadSize must be a positive number of bytes, got {size}"),
            );
        }
    }
    match (&ctx.server_cert_secret, &ctx.server_key_secret) {
        (Some(_), None) => problems.error(
            at("serverKeySecret"),
            "serverCertSecret is set without serverKeySecret; set both to serve HTTPS",
        ),
        (None, Some(_)) => problems.error(
            at("serverCertSecret"),
            "serverKeySecret is set without serverCertSecret; set both to serve HTTPS",
        ),
        _ => {}
    }
}

/// Push events share one HTTP server per port, routed by endpoint and method.
fn check_http_routes(spec: &EventSourceSpec, path: &str, problems: &mut Problems) {
    struct Seen<'a> {
        at: String,
        method: &'a str,
    }
    let mut by_route: BTreeMap<(u16, &str), Vec<Seen>> = BTreeMap::new();
    let mut tls_by_port: BTreeMap<u16, (bool, String)> = BTreeMap::new();
    for (kind, name, ctx) in spec.webhook_contexts() {
        let Ok(port) = parse_port(&ctx.port) else { continue };
        let event = event_path(path, kind, name);
        let at = match kind.webhook_context_place() {
            WebhookContextPlace::UnderWebhook => Problems::at(&event, "webhook"),
            // `webhook_contexts` yields push kinds only; a kind that is not one has no fields to add.
            WebhookContextPlace::Inline | WebhookContextPlace::NotPush => event,
        };
        let tls = ctx.server_cert_secret.is_some() && ctx.server_key_secret.is_some();
        match tls_by_port.get(&port) {
            Some((other_tls, other_at)) if *other_tls != tls => problems.warning(
                Problems::at(&at, "serverCertSecret"),
                format!("port {port} is served with{} TLS by {other_at}; one server per port uses the first event's setting", if *other_tls { "" } else { "out" }),
            ),
            Some(_) => {}
            None => {
                tls_by_port.insert(port, (tls, at.clone()));
            }
        }
        if ctx.endpoint == "/health" {
            problems.warning(
                Problems::at(&at, "endpoint"),
                "/health is the built-in health check of every webhook port; pick another endpoint",
            );
        }
        let seen = by_route.entry((port, ctx.endpoint.as_str())).or_default();
        for other in seen.iter() {
            if other.method == ctx.method || other.method.is_empty() || ctx.method.is_empty() {
                problems.error(
                    Problems::at(&at, "endpoint"),
                    format!(
                        "port {port}, endpoint {:?} and method {:?} are already used by {}; give one of them another endpoint or port",
                        ctx.endpoint, ctx.method, other.at
                    ),
                );
            } else {
                problems.warning(
                    Problems::at(&at, "endpoint"),
                    format!(
                        "port {port} and endpoint {:?} are also used by {} (method {}); Sluice routes by method, but \
                         upstream Argo Events delivers only to one of them",
                        ctx.endpoint, other.at, other.method
                    ),
                );
            }
        }
        seen.push(Seen {
            at,
            method: &ctx.method,
        });
    }
}

/// `filter.expression` must say something when a filter is given.
pub(super) fn check_filter(filter: &Option<EventSourceFilter>, path: &str, problems: &mut Problems) {
    if let Some(f) = filter {
        if f.expression.trim().is_empty() {
            problems.error(
                Problems::at(path, "filter.expression"),
                "filter.expression is empty: write a condition such as `body.action == \"opened\"` or drop the filter",
            );
        }
    }
}

/// Checks an optional Go duration field.
pub(super) fn check_opt_duration(value: &Option<String>, path: &str, field: &str, problems: &mut Problems) {
    if let Some(v) = value {
        check_duration(v, &Problems::at(path, field), problems);
    }
}

/// Records "`field` is required" when `value` is blank.
pub(super) fn require(value: &str, path: &str, field: &str, example: &str, problems: &mut Problems) {
    if value.trim().is_empty() {
        problems.error(
            Problems::at(path, field),
            format!("{field} is required, e.g. {example}"),
        );
    }
}

/// Records "`field` is required" when `value` is absent.
pub(super) fn require_some<T>(
    value: &Option<T>,
    path: &str,
    field: &str,
    hint: &str,
    problems: &mut Problems,
) {
    if value.is_none() {
        problems.error(Problems::at(path, field), format!("{field} is required: {hint}"));
    }
}

pub(super) fn check_backoff(backoff: &Option<Backoff>, path: &str, problems: &mut Problems) {
    let Some(b) = backoff else { return };
    let path = Problems::at(path, "connectionBackoff");
    if let Some(d) = &b.duration {
        if let Err(e) = d.to_duration() {
            problems.error(Problems::at(&path, "duration"), e.to_string());
        }
    }
    for (field, amount) in [("factor", &b.factor), ("jitter", &b.jitter)] {
        if let Some(a) = amount {
            match a.as_f64() {
                Some(f) if f >= 0.0 => {}
                _ => problems.error(
                    Problems::at(&path, field),
                    format!("{field} must be a non-negative number, got {:?}", a.0),
                ),
            }
        }
    }
    if let Some(steps) = b.steps {
        if steps < 0 {
            problems.error(
                Problems::at(&path, "steps"),
                format!("steps must not be negative, got {steps}"),
            );
        }
    }
}

pub(super) fn check_basic_auth(auth: &Option<BasicAuth>, path: &str, problems: &mut Problems) {
    if let Some(a) = auth {
        let path = Problems::at(path, "auth");
        require_some(
            &a.username,
            &path,
            "username",
            "the Secret key holding the user name",
            problems,
        );
        require_some(
            &a.password,
            &path,
            "password",
            "the Secret key holding the password",
            problems,
        );
    }
}

pub(super) fn check_calendar(cal: &CalendarEventSource, path: &str, problems: &mut Problems) {
    let schedule = cal.schedule.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let interval = cal.interval.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let mut prefix_zone = false;
    match (schedule, interval) {
        (None, None) => problems.error(
            path,
            "set schedule (a cron spec such as \"*/5 * * * *\") or interval (a duration such as \"10s\")",
        ),
        (Some(spec), interval) => {
            match super::parse_schedule(spec) {
                Ok(parsed) => {
                    if parsed.uses_descriptor {
                        problems.warning(
                            Problems::at(path, "schedule"),
                            format!("{spec:?} is a descriptor, which upstream Argo Events rejects; use a 5-field spec or interval to stay portable"),
                        );
                    }
                    if let super::CalendarSchedule::Cron {
                        timezone: Some(_), ..
                    } = parsed.schedule
                    {
                        prefix_zone = true;
                    }
                }
                Err(e) => problems.error(Problems::at(path, "schedule"), e.to_string()),
            }
            if interval.is_some() {
                problems.warning(
                    Problems::at(path, "interval"),
                    "interval is ignored because schedule is set",
                );
            }
        }
        (None, Some(interval)) => {
            if let Err(e) = super::parse_interval(interval) {
                problems.error(Problems::at(path, "interval"), e.to_string());
            }
        }
    }
    if let Some(zone) = &cal.timezone {
        let at = Problems::at(path, "timezone");
        if zone.trim().is_empty() {
            problems.error(
                at,
                "timezone is empty: name an IANA zone such as \"Europe/Berlin\" or drop the field",
            );
        } else if !zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
        {
            problems.error(
                at,
                format!("{zone:?} is not an IANA time zone name such as \"America/New_York\""),
            );
        } else if prefix_zone {
            problems.warning(at, "the schedule's CRON_TZ= prefix overrides timezone");
        }
    }
    for (i, entry) in cal.exclusion_dates.iter().enumerate() {
        let at = Problems::index(&Problems::at(path, "exclusionDates"), i);
        match super::check_exclusion_date(entry) {
            Ok(true) => {}
            Ok(false) => problems.warning(
                at,
                format!("{entry:?} lacks the EXDATE: prefix and is ignored; write EXDATE:20240101T000000Z"),
            ),
            Err(reason) => problems.error(at, reason),
        }
    }
    if let Some(p) = &cal.persistence {
        let at = Problems::at(path, "persistence");
        if let Some(c) = &p.catchup {
            check_opt_duration(
                &c.max_duration,
                &Problems::at(&at, "catchup"),
                "maxDuration",
                problems,
            );
            if c.enabled && p.config_map.is_none() {
                problems.warning(
                    Problems::at(&at, "catchup.enabled"),
                    "catch-up needs persistence.configMap to remember the last tick",
                );
            }
        }
        if let Some(cm) = &p.config_map {
            if cm.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
                problems.error(
                    Problems::at(&at, "configMap.name"),
                    "configMap.name is required: the ConfigMap holding the last tick",
                );
            }
        }
    }
    check_filter(&cal.filter, path, problems);
}

/// Checks `watchPathConfig` of the file and SFTP kinds (and the inline one of HDFS).
pub(super) fn check_watch_path(cfg: &WatchPathConfig, path: &str, problems: &mut Problems) {
    let at = |f: &str| Problems::at(path, f);
    if cfg.directory.is_empty() {
        problems.error(at("directory"), "directory is required, e.g. \"/data/\"");
    } else if !cfg.directory.starts_with('/') {
        problems.error(
            at("directory"),
            format!("directory {:?} must be an absolute path", cfg.directory),
        );
    }
    let p = cfg.path.as_deref().filter(|s| !s.is_empty());
    let re = cfg.path_regexp.as_deref().filter(|s| !s.is_empty());
    match (p, re) {
        (None, None) => problems.error(path, "set path (a file name relative to directory) or pathRegexp"),
        (Some(_), Some(_)) => problems.error(at("pathRegexp"), "set either path or pathRegexp, not both"),
        (Some(p), None) if p.starts_with('/') => {
            problems.error(at("path"), format!("path {p:?} must be relative to directory"))
        }
        (None, Some(re)) => check_regex(re, &at("pathRegexp"), problems),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
