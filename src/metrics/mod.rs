//! Prometheus metrics (OpenMetrics text), one set of families per component.
//!
//! Each component registers its own families, and their zero series, into the registry of the
//! process that runs it: dashboards show zeros rather than "no data", and a process exports only
//! what it does (`hookguard serve` no inventory gauges, `hookguard controller` no admission
//! counters). Label values are bounded: rule ids, webhook names, operations, results and hook
//! events are fixed sets; kinds outside the built-in API groups are reported as `custom`;
//! namespaces and releases from outside are capped, and the namespace label can be turned off.

mod admission;
mod bounded;
mod certs;
mod connections;
pub mod history;
mod inventory;
mod namespaces;
mod recheck;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use admission::{
    AdmissionMetrics, ExemptionLabels, FindingLabels, HookLabels, RequestLabels, ShedLabels,
    WebhookLabels,
};
pub use bounded::{BoundedValues, MAX_ADMISSION_NAMESPACES, bounded_kind};
pub use certs::{CertLabels, CertMetrics};
pub use connections::{ConnectionMetrics, ServerLabels};
pub use history::HistoryMetrics;
pub use inventory::{
    HookObjectLabels, InventoryMetrics, JanitorLabels, NamespaceKindLabels, NamespaceLabels,
    NamespaceOutcomeLabels, OutcomeLabels, ReleaseLabels,
};
pub use namespaces::NamespaceMetrics;
pub use recheck::{RecheckMetrics, ViolationLabels};

pub(crate) type GaugeI = Gauge<i64, AtomicI64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

/// A process's registry with what every hookguard process exports: `hookguard_build_info` and
/// the `process_*` families.
fn process_registry() -> Registry {
    let mut registry = Registry::default();
    let build_info = Family::<VersionLabels, GaugeI>::default();
    registry.register(
        "hookguard_build_info",
        "Always 1; the version label says which hookguard is running",
        build_info.clone(),
    );
    build_info
        .get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
    registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
    registry
}

/// The OpenMetrics text exposition of a registry.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Everything `hookguard serve` exports: admissions and policy reloads, certificates, the
/// webhook and admin listeners.
pub struct WebhookMetrics {
    pub registry: Arc<Registry>,
    pub admission: AdmissionMetrics,
    pub certs: CertMetrics,
    pub connections: ConnectionMetrics,
    pub namespaces: NamespaceMetrics,
}

impl WebhookMetrics {
    /// `namespace_label: false` reports the namespace label value as empty (bounds cardinality).
    pub fn new(namespace_label: bool) -> Self {
        let mut registry = process_registry();
        let admission = AdmissionMetrics::register(&mut registry, namespace_label);
        let certs = CertMetrics::register(&mut registry);
        let connections = ConnectionMetrics::register(&mut registry, &["webhook", "admin"]);
        let namespaces = NamespaceMetrics::register(&mut registry);
        WebhookMetrics {
            registry: Arc::new(registry),
            admission,
            certs,
            connections,
            namespaces,
        }
    }
}

/// Everything `hookguard controller` exports: the inventory, orphans, janitor and leadership,
/// and its admin listener.
pub struct ControllerMetrics {
    pub registry: Arc<Registry>,
    pub inventory: InventoryMetrics,
    pub connections: ConnectionMetrics,
    pub recheck: RecheckMetrics,
    pub history: HistoryMetrics,
}

impl ControllerMetrics {
    /// `namespace_label: false` reports the namespace label value as empty (bounds cardinality).
    pub fn new(namespace_label: bool) -> Self {
        let mut registry = process_registry();
        let inventory = InventoryMetrics::register(&mut registry, namespace_label);
        let connections = ConnectionMetrics::register(&mut registry, &["admin"]);
        let recheck = RecheckMetrics::register(&mut registry, namespace_label);
        let history = HistoryMetrics::register(&mut registry);
        ControllerMetrics {
            registry: Arc::new(registry),
            inventory,
            connections,
            recheck,
            history,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_exports(text: &str, names: &[&str]) {
        for name in names {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("hookguard_build_info{version=\""));
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    const WEBHOOK_FAMILIES: &[&str] = &[
        "hookguard_admission_requests_total",
        "hookguard_admission_duration_seconds_bucket",
        "hookguard_rule_findings_total",
        "hookguard_config_reloads_total",
        "hookguard_tls_cert_expiry_timestamp_seconds",
        "hookguard_exemptions_total",
        "hookguard_hook_admissions_total",
        "hookguard_tls_ca_expiry_timestamp_seconds",
        "hookguard_cert_rotations_total",
        "hookguard_cert_reconciles_total",
        "hookguard_connections_refused_total",
        "hookguard_requests_shed_total",
    ];

    const CONTROLLER_FAMILIES: &[&str] = &[
        "hookguard_leader",
        "hookguard_inventory_up",
        "hookguard_hook_objects",
        "hookguard_hook_oldest_finished_age_seconds",
        "hookguard_hook_created_total",
        "hookguard_hook_deleted_total",
        "hookguard_hook_job_duration_seconds_bucket",
        "hookguard_hook_job_outcomes_total",
        "hookguard_hook_orphans",
        "hookguard_janitor_deletions_total",
        "hookguard_connections_refused_total",
    ];

    #[test]
    fn each_process_exports_its_families_at_startup_and_only_those() {
        let webhook = encode(&WebhookMetrics::new(true).registry);
        assert_exports(&webhook, WEBHOOK_FAMILIES);
        let controller = encode(&ControllerMetrics::new(true).registry);
        assert_exports(&controller, CONTROLLER_FAMILIES);
        for name in CONTROLLER_FAMILIES {
            if !WEBHOOK_FAMILIES.contains(name) {
                assert!(!webhook.contains(name), "the webhook exports {name}");
            }
        }
        for name in WEBHOOK_FAMILIES {
            if !CONTROLLER_FAMILIES.contains(name) {
                assert!(!controller.contains(name), "the controller exports {name}");
            }
        }
        assert!(!controller.contains("server=\"webhook\""), "{controller}");
    }
}
