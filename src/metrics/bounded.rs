//! Label values from outside, bounded: kinds by an allow-list, namespaces and releases by a cap.

/// The built-in kinds reported by name, by API group; any other kind (custom resources, and
/// whatever a forged request claims) is reported as `custom`, so a request cannot add series.
const BUILT_IN_KINDS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "Pod",
            "Service",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Namespace",
            "PersistentVolumeClaim",
            "PersistentVolume",
            "ReplicationController",
            "Endpoints",
            "LimitRange",
            "ResourceQuota",
            "PodTemplate",
            "Event",
        ],
    ),
    (
        "apps",
        &[
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "ControllerRevision",
        ],
    ),
    ("batch", &["Job", "CronJob"]),
    ("autoscaling", &["HorizontalPodAutoscaler"]),
    ("policy", &["PodDisruptionBudget"]),
    (
        "rbac.authorization.k8s.io",
        &["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
    ),
    (
        "networking.k8s.io",
        &["Ingress", "IngressClass", "NetworkPolicy"],
    ),
    (
        "storage.k8s.io",
        &["StorageClass", "CSIDriver", "VolumeAttachment"],
    ),
    ("scheduling.k8s.io", &["PriorityClass"]),
    ("coordination.k8s.io", &["Lease"]),
    ("discovery.k8s.io", &["EndpointSlice"]),
    ("node.k8s.io", &["RuntimeClass"]),
    ("certificates.k8s.io", &["CertificateSigningRequest"]),
    ("apiextensions.k8s.io", &["CustomResourceDefinition"]),
    (
        "admissionregistration.k8s.io",
        &[
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
        ],
    ),
    ("apiregistration.k8s.io", &["APIService"]),
    (
        "flowcontrol.apiserver.k8s.io",
        &["FlowSchema", "PriorityLevelConfiguration"],
    ),
];

/// A kind label value from a fixed set: the built-in kind's name, or `custom`.
pub fn bounded_kind(group: &str, kind: &str) -> &'static str {
    BUILT_IN_KINDS
        .iter()
        .find(|(g, _)| *g == group)
        .and_then(|(_, kinds)| kinds.iter().find(|k| **k == kind))
        .copied()
        .unwrap_or("custom")
}

/// At most this many distinct namespace values in the admission metrics; later ones are reported
/// as `other`. A request names its namespace itself, and anyone who can reach the webhook can
/// send one, so the set must be capped; real clusters with more namespaces can turn the label off
/// (`--metrics-namespace-label=false`).
pub const MAX_ADMISSION_NAMESPACES: usize = 1000;

/// A label whose values come from outside: the first `cap` distinct values are reported as they
/// are, later ones as `other`.
pub struct BoundedValues {
    cap: usize,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl BoundedValues {
    pub fn new(cap: usize) -> Self {
        BoundedValues {
            cap,
            seen: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    pub fn get(&self, value: &str) -> String {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.cap {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        "other".to_owned()
    }
}

/// A namespace name as Kubernetes allows it (RFC 1123 label); the empty name (cluster-scoped).
pub(super) fn is_dns_label(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_kinds_are_bounded() {
        assert_eq!(bounded_kind("batch", "Job"), "Job");
        assert_eq!(bounded_kind("", "Pod"), "Pod");
        assert_eq!(bounded_kind("example.com", "Widget"), "custom");
        assert_eq!(bounded_kind("", "Widget"), "custom");
        assert_eq!(bounded_kind("apps", "Job"), "custom");
    }

    #[test]
    fn input_namespaces_are_capped_and_validated() {
        let values = BoundedValues::new(3);
        for ns in ["a", "b", "c"] {
            assert_eq!(values.get(ns), ns);
        }
        assert_eq!(values.get("d"), "other");
        assert_eq!(values.get("a"), "a");
        assert!(is_dns_label("team-a") && is_dns_label(""));
        assert!(!is_dns_label("Not_A_Namespace"));
        assert!(!is_dns_label(&"n".repeat(64)));
    }
}
