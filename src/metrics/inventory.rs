//! The controller's metrics: leadership, the live hook inventory, churn, Job outcomes, orphans
//! and the janitor.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::GaugeI;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookObjectLabels {
    pub namespace: String,
    pub kind: &'static str,
    /// `active`, `succeeded`, `failed` or `other`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReleaseLabels {
    pub namespace: String,
    /// The Helm release, or `unknown` when it cannot be told (never guessed).
    pub release: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `succeeded` or `failed`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceOutcomeLabels {
    pub namespace: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceKindLabels {
    pub namespace: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JanitorLabels {
    pub namespace: String,
    pub kind: &'static str,
    /// `finished` or `orphaned`.
    pub reason: &'static str,
    /// `delete` or `dry-run`.
    pub mode: &'static str,
}

fn job_duration_histogram() -> Histogram {
    // 1 s .. 2 h: hook Jobs range from a quick migration to a long backup.
    Histogram::new([
        1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
    ])
}

/// The inventory families; cheap to clone.
#[derive(Clone)]
pub struct InventoryMetrics {
    pub leader: GaugeI,
    pub inventory_up: GaugeI,
    pub hook_objects: Family<HookObjectLabels, GaugeI>,
    pub hook_oldest_finished_age: Family<NamespaceLabels, GaugeI>,
    pub hook_created: Family<ReleaseLabels, Counter>,
    pub hook_deleted: Family<ReleaseLabels, Counter>,
    pub hook_job_duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    pub hook_job_outcomes: Family<NamespaceOutcomeLabels, Counter>,
    pub hook_orphans: Family<NamespaceKindLabels, GaugeI>,
    pub janitor_deletions: Family<JanitorLabels, Counter>,
    namespace_label: bool,
}

impl InventoryMetrics {
    /// Registers the families and creates their zero series. `namespace_label: false` reports
    /// the namespace label value as empty.
    pub fn register(registry: &mut Registry, namespace_label: bool) -> Self {
        let metrics = InventoryMetrics {
            leader: GaugeI::default(),
            inventory_up: GaugeI::default(),
            hook_objects: Family::default(),
            hook_oldest_finished_age: Family::default(),
            hook_created: Family::default(),
            hook_deleted: Family::default(),
            hook_job_duration: Family::new_with_constructor(job_duration_histogram),
            hook_job_outcomes: Family::default(),
            hook_orphans: Family::default(),
            janitor_deletions: Family::default(),
            namespace_label,
        };
        registry.register(
            "hookguard_leader",
            "1 when this replica holds the leader Lease (and runs the inventory and janitor)",
            metrics.leader.clone(),
        );
        registry.register(
            "hookguard_inventory_up",
            "1 when this replica runs the hook inventory and its watches are synced",
            metrics.inventory_up.clone(),
        );
        registry.register(
            "hookguard_hook_objects",
            "Live hook objects by namespace, kind and state (active, succeeded, failed, other)",
            metrics.hook_objects.clone(),
        );
        registry.register(
            "hookguard_hook_oldest_finished_age_seconds",
            "Age of the oldest finished (succeeded or failed) hook object still present, by namespace",
            metrics.hook_oldest_finished_age.clone(),
        );
        registry.register(
            "hookguard_hook_created",
            "Hook objects created, by namespace and release (seen by the inventory)",
            metrics.hook_created.clone(),
        );
        registry.register(
            "hookguard_hook_deleted",
            "Hook objects deleted, by namespace and release (seen by the inventory)",
            metrics.hook_deleted.clone(),
        );
        registry.register(
            "hookguard_hook_job_duration_seconds",
            "Run time of finished hook Jobs (startTime to completion or failure), by outcome",
            metrics.hook_job_duration.clone(),
        );
        registry.register(
            "hookguard_hook_job_outcomes",
            "Hook Jobs seen finishing, by namespace and outcome (succeeded, failed)",
            metrics.hook_job_outcomes.clone(),
        );
        registry.register(
            "hookguard_hook_orphans",
            "Hook objects whose Helm release no longer exists, by namespace and kind",
            metrics.hook_orphans.clone(),
        );
        registry.register(
            "hookguard_janitor_deletions",
            "Hook objects deleted by the janitor (mode=dry-run: only reported), by namespace, kind and reason",
            metrics.janitor_deletions.clone(),
        );
        for outcome in ["succeeded", "failed"] {
            let _ = metrics
                .hook_job_duration
                .get_or_create(&OutcomeLabels { outcome });
        }
        metrics.zero_inventory_series();
        metrics
    }

    /// Creates the zero series with an empty namespace (and release) of the inventory families,
    /// so that sums on dashboards and in alerts read 0 rather than "no data" before the first
    /// hook is seen, and when the inventory does not run. Called at startup and after the
    /// inventory's gauges are cleared.
    pub fn zero_inventory_series(&self) {
        for kind in ["Job", "Pod"] {
            for state in ["active", "succeeded", "failed", "other"] {
                let _ = self.hook_objects.get_or_create(&HookObjectLabels {
                    namespace: String::new(),
                    kind,
                    state,
                });
            }
            let _ = self.hook_orphans.get_or_create(&NamespaceKindLabels {
                namespace: String::new(),
                kind,
            });
            for reason in ["finished", "orphaned"] {
                for mode in ["delete", "dry-run"] {
                    let _ = self.janitor_deletions.get_or_create(&JanitorLabels {
                        namespace: String::new(),
                        kind,
                        reason,
                        mode,
                    });
                }
            }
        }
        let _ = self
            .hook_oldest_finished_age
            .get_or_create(&NamespaceLabels {
                namespace: String::new(),
            });
        let zero = ReleaseLabels {
            namespace: String::new(),
            release: String::new(),
        };
        let _ = self.hook_created.get_or_create(&zero);
        let _ = self.hook_deleted.get_or_create(&zero);
        for outcome in ["succeeded", "failed"] {
            let _ = self
                .hook_job_outcomes
                .get_or_create(&NamespaceOutcomeLabels {
                    namespace: String::new(),
                    outcome,
                });
        }
    }

    /// Whether namespace label values are reported (else they are empty).
    pub fn namespace_label(&self) -> bool {
        self.namespace_label
    }
}
