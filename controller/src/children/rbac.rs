//! The rights EventSource pods need to elect a leader.

use serde_json::{json, Value};

use super::{labels, Owner};

/// The Lease the replicas of EventSource `name` elect their leader with.
pub fn eventsource_lease_name(name: &str) -> String {
    format!("{name}-eventsource")
}

/// A Role allowing exactly what leader election needs on the EventSource's Lease (create cannot
/// be limited to one name in RBAC; read and renew can), bound to the pods' ServiceAccount.
pub(super) fn leader_rbac(owner: &Owner<'_>, account: &str) -> [Value; 2] {
    let labels = labels("eventsource", "eventsource-name", owner.name);
    let role = format!("{}-eventsource-leader", owner.name);
    [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": owner.meta(&role, &labels),
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
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
