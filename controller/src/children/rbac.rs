//! The rights EventSource pods need to elect a leader.

use serde_json::{json, Value};

use super::{labels, Owner};

/// The Lease the replicas of EventSource `name` elect their leader with.
pub fn eventsource_lease_name(name: &str) -> String {
    format!("{name}-eventsource")
}

/// The EventSource's Lease, made by the controller with the EventSource as its owner (so it goes
/// with the EventSource, as every other child), and a Role allowing only reading and renewing that
/// one Lease — no `create`, which RBAC cannot limit to one name — bound to the pods' ServiceAccount.
pub(super) fn leader_rbac(owner: &Owner<'_>, account: &str) -> [Value; 3] {
    let labels = labels("eventsource", "eventsource-name", owner.name);
    let role = format!("{}-eventsource-leader", owner.name);
    [
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": owner.meta(&eventsource_lease_name(owner.name), &labels),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": owner.meta(&role, &labels),
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
                 "resourceNames": [eventsource_lease_name(owner.name)]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": owner.meta(&role, &labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": owner.namespace}],
        }),
    ]
}
