//! The metrics of the controller's policy re-check (`--policy-recheck`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{BoundedValues, GaugeI, MAX_ADMISSION_NAMESPACES};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub rule: &'static str,
    pub namespace: String,
    /// `live` (a hook object) or `release` (a hook stored in a release's latest revision).
    pub from: &'static str,
    /// What the current policy does: `deny`, `warn` or `mutate`.
    pub effect: &'static str,
    /// What the rule does in `enforce` mode: `deny` or `mutate`. `effect="warn"` with
    /// `when_enforced="deny"` is what an enforce switch would turn into denials.
    pub when_enforced: &'static str,
}

#[derive(Clone)]
pub struct RecheckMetrics {
    violations: Family<ViolationLabels, GaugeI>,
    last_success: GaugeI,
    namespace_label: bool,
    namespaces: std::sync::Arc<BoundedValues>,
}

impl RecheckMetrics {
    pub fn register(registry: &mut Registry, namespace_label: bool) -> Self {
        let m = RecheckMetrics {
            violations: Family::default(),
            last_success: GaugeI::default(),
            namespace_label,
            namespaces: std::sync::Arc::new(BoundedValues::new(MAX_ADMISSION_NAMESPACES)),
        };
        registry.register(
            "hookguard_policy_violations",
            "Findings of the current policy on live hooks and on the hooks stored in releases' latest revisions, at the last re-check, by rule, namespace, from (live, release), effect (deny, warn, mutate) and when_enforced (deny, mutate)",
            m.violations.clone(),
        );
        registry.register(
            "hookguard_policy_recheck_timestamp_seconds",
            "When the last policy re-check completed (Unix time); 0 before the first",
            m.last_success.clone(),
        );
        m
    }

    /// Replaces every series with this pass's counts: one per finding (namespaces capped like
    /// the admission metrics', or empty without the namespace label).
    pub fn publish(&self, violations: impl IntoIterator<Item = ViolationLabels>, now: i64) {
        self.violations.clear();
        for mut v in violations {
            v.namespace = if self.namespace_label {
                self.namespaces.get(&v.namespace)
            } else {
                String::new()
            };
            self.violations.get_or_create(&v).inc();
        }
        self.last_success.set(now);
    }
}
