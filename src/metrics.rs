//! Prometheus metrics (OpenMetrics text). Every family is registered at startup so dashboards show
//! zeros rather than "no data". Label values are bounded: rule ids, webhook names, operations,
//! results and hook events are fixed sets; kinds outside the built-in API groups are reported as
//! `custom`; the namespace label can be turned off for clusters with very many namespaces.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admission::{Outcome, Webhook};
use crate::policy::RULES;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub webhook: &'static str,
    pub operation: &'static str,
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub rule: &'static str,
    /// `mutate`, `deny`, `warn` or `exempt`.
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub event: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExemptionLabels {
    /// `namespace` or `object`.
    pub scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    /// `serving` or `ca`.
    pub cert: &'static str,
}

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// `webhook` or `admin`.
    pub server: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    /// `body_budget`: the request body bytes in flight were at their limit; `engine_busy`: every
    /// engine slot for large reviews stayed busy.
    pub reason: &'static str,
}

type GaugeI = Gauge<i64, AtomicI64>;

type HistogramFamily = Family<WebhookLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: admission is expected to take well under a millisecond.
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5,
    ])
}

fn job_duration_histogram() -> Histogram {
    // 1 s .. 2 h: hook Jobs range from a quick migration to a long backup.
    Histogram::new([
        1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
    ])
}

/// All of hookguard's metric families.
pub struct Metrics {
    pub registry: Registry,
    pub admission_requests: Family<RequestLabels, Counter>,
    pub admission_duration: HistogramFamily,
    pub rule_findings: Family<FindingLabels, Counter>,
    pub hook_admissions: Family<HookLabels, Counter>,
    pub exemptions: Family<ExemptionLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub tls_reloads: Family<ResultLabels, Counter>,
    pub tls_cert_expiry: Gauge<i64, AtomicI64>,
    pub build_info: Family<VersionLabels, Gauge<i64, AtomicI64>>,
    pub tls_ca_expiry: GaugeI,
    pub cert_rotations: Family<CertLabels, Counter>,
    pub cert_reconciles: Family<ResultLabels, Counter>,
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
    pub connections_refused: Family<ServerLabels, Counter>,
    pub requests_shed: Family<ShedLabels, Counter>,
    namespace_label: bool,
    admission_namespaces: BoundedValues,
}

impl Metrics {
    /// Creates and registers every family. `namespace_label: false` drops the namespace label
    /// value (reported as empty) to bound cardinality.
    pub fn new(namespace_label: bool) -> Self {
        let mut registry = Registry::default();
        let admission_requests = Family::<RequestLabels, Counter>::default();
        let admission_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let rule_findings = Family::<FindingLabels, Counter>::default();
        let hook_admissions = Family::<HookLabels, Counter>::default();
        let exemptions = Family::<ExemptionLabels, Counter>::default();
        let config_reloads = Family::<ResultLabels, Counter>::default();
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        let tls_cert_expiry = Gauge::<i64, AtomicI64>::default();
        let build_info = Family::<VersionLabels, Gauge<i64, AtomicI64>>::default();

        registry.register(
            "hookguard_admission_requests",
            "AdmissionReview requests answered, by webhook, operation, kind and result",
            admission_requests.clone(),
        );
        registry.register(
            "hookguard_admission_duration_seconds",
            "Time to answer one AdmissionReview, from body read to response serialized",
            admission_duration.clone(),
        );
        registry.register(
            "hookguard_rule_findings",
            "Rule findings by rule and action (mutate, deny, warn, exempt)",
            rule_findings.clone(),
        );
        registry.register(
            "hookguard_hook_admissions",
            "Helm hook objects seen at admission (hook churn), by event, kind, namespace and operation",
            hook_admissions.clone(),
        );
        registry.register(
            "hookguard_exemptions",
            "Hook objects not judged because of an exemption, by scope (namespace, object)",
            exemptions.clone(),
        );
        registry.register(
            "hookguard_config_reloads",
            "Policy configuration reloads by result (success, failure)",
            config_reloads.clone(),
        );
        registry.register(
            "hookguard_tls_reloads",
            "Serving certificate reloads by result (success, failure)",
            tls_reloads.clone(),
        );
        registry.register(
            "hookguard_tls_cert_expiry_timestamp_seconds",
            "Expiry (notAfter) of the serving certificate in use, as a Unix timestamp",
            tls_cert_expiry.clone(),
        );
        registry.register(
            "hookguard_build_info",
            "Always 1; the version label says which hookguard is running",
            build_info.clone(),
        );
        let tls_ca_expiry = GaugeI::default();
        registry.register(
            "hookguard_tls_ca_expiry_timestamp_seconds",
            "Earliest expiry (notAfter) of the CAs in the published caBundle (self-managed certificates), as a Unix timestamp; 0 in other modes",
            tls_ca_expiry.clone(),
        );
        let cert_rotations = Family::<CertLabels, Counter>::default();
        registry.register(
            "hookguard_cert_rotations",
            "Certificates this replica issued in self-managed mode, by certificate (serving, ca)",
            cert_rotations.clone(),
        );
        let cert_reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "hookguard_cert_reconciles",
            "Checks of the self-managed certificates (Secret and caBundle), by result (success, failure)",
            cert_reconciles.clone(),
        );
        let leader = GaugeI::default();
        registry.register(
            "hookguard_leader",
            "1 when this replica holds the leader Lease (and runs the inventory and janitor)",
            leader.clone(),
        );
        let inventory_up = GaugeI::default();
        registry.register(
            "hookguard_inventory_up",
            "1 when this replica runs the hook inventory and its watches are synced",
            inventory_up.clone(),
        );
        let hook_objects = Family::<HookObjectLabels, GaugeI>::default();
        registry.register(
            "hookguard_hook_objects",
            "Live hook objects by namespace, kind and state (active, succeeded, failed, other)",
            hook_objects.clone(),
        );
        let hook_oldest_finished_age = Family::<NamespaceLabels, GaugeI>::default();
        registry.register(
            "hookguard_hook_oldest_finished_age_seconds",
            "Age of the oldest finished (succeeded or failed) hook object still present, by namespace",
            hook_oldest_finished_age.clone(),
        );
        let hook_created = Family::<ReleaseLabels, Counter>::default();
        registry.register(
            "hookguard_hook_created",
            "Hook objects created, by namespace and release (seen by the inventory)",
            hook_created.clone(),
        );
        let hook_deleted = Family::<ReleaseLabels, Counter>::default();
        registry.register(
            "hookguard_hook_deleted",
            "Hook objects deleted, by namespace and release (seen by the inventory)",
            hook_deleted.clone(),
        );
        let hook_job_duration: Family<OutcomeLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(job_duration_histogram);
        registry.register(
            "hookguard_hook_job_duration_seconds",
            "Run time of finished hook Jobs (startTime to completion or failure), by outcome",
            hook_job_duration.clone(),
        );
        let hook_job_outcomes = Family::<NamespaceOutcomeLabels, Counter>::default();
        registry.register(
            "hookguard_hook_job_outcomes",
            "Hook Jobs seen finishing, by namespace and outcome (succeeded, failed)",
            hook_job_outcomes.clone(),
        );
        let hook_orphans = Family::<NamespaceKindLabels, GaugeI>::default();
        registry.register(
            "hookguard_hook_orphans",
            "Hook objects whose Helm release no longer exists, by namespace and kind",
            hook_orphans.clone(),
        );
        let janitor_deletions = Family::<JanitorLabels, Counter>::default();
        registry.register(
            "hookguard_janitor_deletions",
            "Hook objects deleted by the janitor (mode=dry-run: only reported), by namespace, kind and reason",
            janitor_deletions.clone(),
        );
        let connections_refused = Family::<ServerLabels, Counter>::default();
        registry.register(
            "hookguard_connections_refused",
            "Connections closed at once because the server's connection limit was reached, by server (webhook, admin)",
            connections_refused.clone(),
        );
        let requests_shed = Family::<ShedLabels, Counter>::default();
        registry.register(
            "hookguard_requests_shed",
            "Webhook requests answered 503 instead of being served, by reason (body_budget, engine_busy)",
            requests_shed.clone(),
        );
        for server in ["webhook", "admin"] {
            let _ = connections_refused.get_or_create(&ServerLabels { server });
        }
        for reason in ["body_budget", "engine_busy"] {
            let _ = requests_shed.get_or_create(&ShedLabels { reason });
        }
        for cert in ["serving", "ca"] {
            let _ = cert_rotations.get_or_create(&CertLabels { cert });
        }
        for result in ["success", "failure"] {
            let _ = cert_reconciles.get_or_create(&ResultLabels { result });
        }
        for outcome in ["succeeded", "failed"] {
            let _ = hook_job_duration.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        let _ = hook_admissions.get_or_create(&HookLabels {
            event: "",
            kind: "",
            namespace: String::new(),
            operation: "",
        });
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        for result in ["success", "failure"] {
            let _ = config_reloads.get_or_create(&ResultLabels { result });
            let _ = tls_reloads.get_or_create(&ResultLabels { result });
        }
        for webhook in [Webhook::Mutate, Webhook::Validate] {
            // Requests that are not AdmissionReviews carry no operation or kind; creating these
            // series up front makes the family visible (as zero) before the first request.
            let _ = admission_requests.get_or_create(&RequestLabels {
                webhook: webhook.as_str(),
                operation: "",
                kind: "",
                result: "invalid",
            });
            let _ = admission_duration.get_or_create(&WebhookLabels {
                webhook: webhook.as_str(),
            });
        }
        for rule in RULES {
            let info = rule.info();
            let action = if info.mutates { "mutate" } else { "deny" };
            let _ = rule_findings.get_or_create(&FindingLabels {
                rule: info.id,
                action,
            });
        }
        for scope in ["namespace", "object"] {
            let _ = exemptions.get_or_create(&ExemptionLabels { scope });
        }
        let metrics = Metrics {
            registry,
            admission_requests,
            admission_duration,
            rule_findings,
            hook_admissions,
            exemptions,
            config_reloads,
            tls_reloads,
            tls_cert_expiry,
            build_info,
            tls_ca_expiry,
            cert_rotations,
            cert_reconciles,
            leader,
            inventory_up,
            hook_objects,
            hook_oldest_finished_age,
            hook_created,
            hook_deleted,
            hook_job_duration,
            hook_job_outcomes,
            hook_orphans,
            janitor_deletions,
            connections_refused,
            requests_shed,
            namespace_label,
            admission_namespaces: BoundedValues::new(MAX_ADMISSION_NAMESPACES),
        };
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

    /// Records one answered review.
    pub fn record(&self, webhook: Webhook, outcome: &Outcome, seconds: f64) {
        let kind = bounded_kind(&outcome.group, &outcome.kind);
        self.admission_requests
            .get_or_create(&RequestLabels {
                webhook: webhook.as_str(),
                operation: outcome.operation.as_str(),
                kind,
                result: outcome.result,
            })
            .inc();
        self.observe(webhook, seconds);
        let decision = &outcome.decision;
        let finding = |rule: &'static str, action: &'static str| {
            self.rule_findings
                .get_or_create(&FindingLabels { rule, action })
                .inc();
        };
        match webhook {
            Webhook::Mutate => decision
                .mutations
                .iter()
                .for_each(|f| finding(f.rule, "mutate")),
            Webhook::Validate => {
                decision
                    .denials
                    .iter()
                    .for_each(|f| finding(f.rule, "deny"));
                decision
                    .warnings
                    .iter()
                    .for_each(|f| finding(f.rule, "warn"));
                decision.exempted.iter().for_each(|r| finding(r, "exempt"));
                // Hook churn and exemptions are counted once per request: by the validating
                // webhook, which sees the final object and DELETEs.
                if decision.skipped == Some(crate::policy::Skip::ExemptNamespace) {
                    self.exemptions
                        .get_or_create(&ExemptionLabels { scope: "namespace" })
                        .inc();
                }
                if !decision.exempted.is_empty() {
                    self.exemptions
                        .get_or_create(&ExemptionLabels { scope: "object" })
                        .inc();
                }
                let events = decision.event_labels();
                if events.is_empty() {
                    return;
                }
                let namespace = if self.namespace_label {
                    // A namespace Kubernetes could not have is not worth a series of its own.
                    if is_dns_label(&outcome.namespace) {
                        self.admission_namespaces.get(&outcome.namespace)
                    } else {
                        "other".to_owned()
                    }
                } else {
                    String::new()
                };
                for event in events {
                    self.hook_admissions
                        .get_or_create(&HookLabels {
                            event,
                            kind,
                            namespace: namespace.clone(),
                            operation: outcome.operation.as_str(),
                        })
                        .inc();
                }
            }
        }
    }

    /// Records a request shed because the engine was busy (answered 503).
    pub fn record_engine_busy(&self, webhook: Webhook, seconds: f64) {
        self.requests_shed
            .get_or_create(&ShedLabels {
                reason: "engine_busy",
            })
            .inc();
        self.observe(webhook, seconds);
    }

    /// Records a request that could not be read as an AdmissionReview.
    pub fn record_invalid(&self, webhook: Webhook, seconds: f64) {
        self.admission_requests
            .get_or_create(&RequestLabels {
                webhook: webhook.as_str(),
                operation: "",
                kind: "",
                result: "invalid",
            })
            .inc();
        self.observe(webhook, seconds);
    }

    fn observe(&self, webhook: Webhook, seconds: f64) {
        self.admission_duration
            .get_or_create(&WebhookLabels {
                webhook: webhook.as_str(),
            })
            .observe(seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

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
fn is_dns_label(s: &str) -> bool {
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
    fn every_family_is_exported_at_startup() {
        let text = Metrics::new(true).encode();
        for name in [
            "hookguard_admission_requests_total",
            "hookguard_admission_duration_seconds_bucket",
            "hookguard_rule_findings_total",
            "hookguard_config_reloads_total",
            "hookguard_tls_cert_expiry_timestamp_seconds",
            "hookguard_build_info",
            "hookguard_exemptions_total",
            "hookguard_hook_admissions_total",
            "hookguard_tls_ca_expiry_timestamp_seconds",
            "hookguard_cert_rotations_total",
            "hookguard_cert_reconciles_total",
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
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("hookguard_build_info{version=\""));
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

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
