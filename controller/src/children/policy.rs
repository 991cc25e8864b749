//! What a CR's pod template may ask for, and the security settings every generated pod starts from.
//!
//! Anyone who may create an EventSource, Sensor or EventBus would otherwise get a pod on a node
//! with whatever privileges its template asks for (GHSA-hmp7-x699-cvhq). Unless the controller
//! runs with `--allow-privileged`, templates are held to the Pod Security Standards' *baseline*
//! profile, and to the *restricted* profile's list of volume kinds (node-mounted volumes such as
//! nfs, iscsi or rbd are as good as hostPath for reaching the node's data). The generated pods
//! themselves meet the *restricted* profile: [`pod_security_defaults`] and
//! [`container_security_defaults`] are applied first, and a template's own settings override
//! them field by field.

use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext, Volume};
use serde_json::{json, Value};
use sluice_crds::common::Template;
use sluice_crds::eventbus::JetStreamBus;

use super::BuildError;

/// The user and group generated pods run as (the image's `nonroot` user).
pub const RUN_AS_ID: i64 = 65532;

/// Volume kinds the restricted profile allows: none of them reaches into the node.
const ALLOWED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sysctls the baseline profile calls safe: namespaced, and unable to affect other pods.
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_syncookies",
];

/// SELinux types the baseline profile allows (empty: the runtime's default).
const SELINUX_TYPES: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn reject(path: String, reason: impl Into<String>) -> Result<(), BuildError> {
    Err(BuildError::RejectPrivileged {
        path,
        reason: reason.into(),
    })
}

/// Rejects what an EventSource or Sensor template may not ask for unless privileged pods are
/// allowed (see the module documentation).
pub fn check_template(template: Option<&Template>, allow_privileged: bool) -> Result<(), BuildError> {
    let Some(template) = template else { return Ok(()) };
    if allow_privileged {
        return Ok(());
    }
    check_volumes(
        template.volumes.as_deref().unwrap_or_default(),
        "spec.template.volumes",
    )?;
    check_pod_security(
        template.security_context.as_ref(),
        "spec.template.securityContext",
    )?;
    check_environment(template)?;
    check_container_security(
        template
            .container
            .as_ref()
            .and_then(|c| c.security_context.as_ref()),
        "spec.template.container.securityContext",
    )
}

/// Environment variables a template may not set: `SLUICE_*` (the process's own settings, egress
/// rules among them) and `*_PROXY` (a proxy would be handed requests the egress guard never saw).
fn check_environment(template: &Template) -> Result<(), BuildError> {
    let env = template.container.as_ref().and_then(|c| c.env.as_ref());
    for (i, var) in env.into_iter().flatten().enumerate() {
        let name = var.name.to_ascii_uppercase();
        if name.starts_with("SLUICE_") || name.ends_with("_PROXY") {
            return reject(
                format!("spec.template.container.env[{i}].name"),
                format!("{} is the controller's to set, not a template's", var.name),
            );
        }
    }
    Ok(())
}

/// The same rules for a `jetstream` EventBus's pod settings and its container templates.
pub fn check_bus(js: &JetStreamBus, allow_privileged: bool) -> Result<(), BuildError> {
    if allow_privileged {
        return Ok(());
    }
    check_pod_security(js.security_context.as_ref(), "spec.jetstream.securityContext")?;
    for (field, template) in [
        ("containerTemplate", &js.container_template),
        ("reloaderContainerTemplate", &js.reloader_container_template),
        ("metricsContainerTemplate", &js.metrics_container_template),
    ] {
        check_container_security(
            template.as_ref().and_then(|t| t.security_context.as_ref()),
            &format!("spec.jetstream.{field}.securityContext"),
        )?;
    }
    Ok(())
}

fn check_volumes(volumes: &[Volume], path: &str) -> Result<(), BuildError> {
    for (i, volume) in volumes.iter().enumerate() {
        if volume.host_path.is_some() {
            return reject(
                format!("{path}[{i}].hostPath"),
                "hostPath volumes are not allowed",
            );
        }
        // A volume serializes as its name plus exactly the one source it uses.
        let encoded = serde_json::to_value(volume).unwrap_or(Value::Null);
        let kinds = encoded
            .as_object()
            .map(|o| o.keys().filter(|k| *k != "name").cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        for kind in kinds {
            if !ALLOWED_VOLUMES.contains(&kind.as_str()) {
                return reject(
                    format!("{path}[{i}].{kind}"),
                    format!(
                        "{kind} volumes are not allowed (allowed: {})",
                        ALLOWED_VOLUMES.join(", ")
                    ),
                );
            }
        }
    }
    Ok(())
}

fn check_pod_security(sc: Option<&PodSecurityContext>, path: &str) -> Result<(), BuildError> {
    let Some(sc) = sc else { return Ok(()) };
    for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            return reject(
                format!("{path}.sysctls[{i}]"),
                format!("sysctl {} is not one of the safe set", sysctl.name),
            );
        }
    }
    check_confinement(
        Confinement {
            selinux: sc.se_linux_options.as_ref(),
            seccomp: sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            app_armor: sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
            host_process: sc.windows_options.as_ref().and_then(|w| w.host_process),
        },
        path,
    )
}

fn check_container_security(sc: Option<&SecurityContext>, path: &str) -> Result<(), BuildError> {
    let Some(sc) = sc else { return Ok(()) };
    if sc.privileged == Some(true) {
        return reject(
            format!("{path}.privileged"),
            "privileged containers are not allowed",
        );
    }
    if sc.allow_privilege_escalation == Some(true) {
        return reject(
            format!("{path}.allowPrivilegeEscalation"),
            "privilege escalation is not allowed",
        );
    }
    // Added capabilities (SYS_ADMIN, NET_ADMIN, …) give a container most of what `privileged` does;
    // dropping capabilities stays allowed.
    let added = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.as_ref())
        .filter(|add| !add.is_empty());
    if let Some(add) = added {
        return reject(
            format!("{path}.capabilities.add"),
            format!("adding capabilities ({}) is not allowed", add.join(", ")),
        );
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        return reject(
            format!("{path}.procMount"),
            "only the Default proc mount is allowed",
        );
    }
    check_confinement(
        Confinement {
            selinux: sc.se_linux_options.as_ref(),
            seccomp: sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            app_armor: sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
            host_process: sc.windows_options.as_ref().and_then(|w| w.host_process),
        },
        path,
    )
}

/// The settings a pod and a container security context share: how the container is confined.
struct Confinement<'a> {
    selinux: Option<&'a k8s_openapi::api::core::v1::SELinuxOptions>,
    seccomp: Option<&'a str>,
    app_armor: Option<&'a str>,
    host_process: Option<bool>,
}

fn check_confinement(c: Confinement<'_>, path: &str) -> Result<(), BuildError> {
    check_selinux(c.selinux, path)?;
    check_profile(c.seccomp, &format!("{path}.seccompProfile.type"))?;
    check_profile(c.app_armor, &format!("{path}.appArmorProfile.type"))?;
    if c.host_process == Some(true) {
        return reject(
            format!("{path}.windowsOptions.hostProcess"),
            "host processes are not allowed",
        );
    }
    Ok(())
}

fn check_selinux(
    options: Option<&k8s_openapi::api::core::v1::SELinuxOptions>,
    path: &str,
) -> Result<(), BuildError> {
    let Some(options) = options else { return Ok(()) };
    let type_ = options.type_.as_deref().unwrap_or_default();
    if !SELINUX_TYPES.contains(&type_) {
        return reject(
            format!("{path}.seLinuxOptions.type"),
            format!("SELinux type {type_} is not allowed"),
        );
    }
    for (field, value) in [("user", &options.user), ("role", &options.role)] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            return reject(
                format!("{path}.seLinuxOptions.{field}"),
                format!("setting the SELinux {field} is not allowed"),
            );
        }
    }
    Ok(())
}

/// A seccomp or AppArmor profile type: anything but `Unconfined`.
fn check_profile(type_: Option<&str>, path: &str) -> Result<(), BuildError> {
    if type_ == Some("Unconfined") {
        return reject(path.to_string(), "unconfined profiles are not allowed");
    }
    Ok(())
}

/// The pod security context every generated pod starts from: a non-root user, the runtime's
/// default seccomp profile, and a group owning mounted volumes (a JetStream store on a fresh
/// PersistentVolume is writable by it).
pub fn pod_security_defaults() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS_ID,
        "runAsGroup": RUN_AS_ID,
        "fsGroup": RUN_AS_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The container security context every generated container starts from: no privilege
/// escalation, no capabilities, a read-only root file system.
pub fn container_security_defaults() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// `defaults` with every field `overrides` sets replaced by the override's value (one level deep:
/// a template's `capabilities` replaces the default's as a whole).
pub fn overlay(defaults: Value, overrides: Option<Value>) -> Value {
    let mut out = defaults;
    if let (Some(target), Some(Value::Object(fields))) = (out.as_object_mut(), overrides) {
        for (k, v) in fields {
            if !v.is_null() {
                target.insert(k, v);
            }
        }
    }
    out
}
