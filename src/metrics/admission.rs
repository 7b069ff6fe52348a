//! The webhook's admission metrics: requests, latency, findings, hook churn, exemptions, load
//! shedding and policy reloads.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::ResultLabels;
use super::bounded::{BoundedValues, MAX_ADMISSION_NAMESPACES, bounded_kind, is_dns_label};
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
pub struct ExceptionLabels {
    pub rule: &'static str,
    /// `applied` (the rule was waived) or `expired` (a matching exception had expired).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExemptionLabels {
    /// `namespace` or `object`.
    pub scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    /// `body_budget`: the request body bytes in flight were at their limit; `engine_busy`: every
    /// engine slot for large reviews stayed busy.
    pub reason: &'static str,
}

type HistogramFamily = Family<WebhookLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: admission is expected to take well under a millisecond.
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5,
    ])
}

/// The admission families; cheap to clone (every family is shared).
#[derive(Clone)]
pub struct AdmissionMetrics {
    pub admission_requests: Family<RequestLabels, Counter>,
    pub admission_duration: HistogramFamily,
    pub rule_findings: Family<FindingLabels, Counter>,
    pub hook_admissions: Family<HookLabels, Counter>,
    pub exemptions: Family<ExemptionLabels, Counter>,
    pub policy_exceptions: Family<ExceptionLabels, Counter>,
    pub requests_shed: Family<ShedLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    namespace_label: bool,
    admission_namespaces: Arc<BoundedValues>,
}

impl AdmissionMetrics {
    /// Registers the families and creates their zero series. `namespace_label: false` reports
    /// the namespace label value as empty.
    pub fn register(registry: &mut Registry, namespace_label: bool) -> Self {
        let metrics = AdmissionMetrics {
            admission_requests: Family::default(),
            admission_duration: Family::new_with_constructor(latency_histogram),
            rule_findings: Family::default(),
            hook_admissions: Family::default(),
            exemptions: Family::default(),
            policy_exceptions: Family::default(),
            requests_shed: Family::default(),
            config_reloads: Family::default(),
            namespace_label,
            admission_namespaces: Arc::new(BoundedValues::new(MAX_ADMISSION_NAMESPACES)),
        };
        registry.register(
            "hookguard_admission_requests",
            "AdmissionReview requests answered, by webhook, operation, kind and result",
            metrics.admission_requests.clone(),
        );
        registry.register(
            "hookguard_admission_duration_seconds",
            "Time to answer one AdmissionReview, from body read to response serialized",
            metrics.admission_duration.clone(),
        );
        registry.register(
            "hookguard_rule_findings",
            "Rule findings by rule and action (mutate, deny, warn, exempt)",
            metrics.rule_findings.clone(),
        );
        registry.register(
            "hookguard_hook_admissions",
            "Helm hook objects seen at admission (hook churn), by event, kind, namespace and operation",
            metrics.hook_admissions.clone(),
        );
        registry.register(
            "hookguard_exemptions",
            "Hook objects not judged because of an exemption, by scope (namespace, object)",
            metrics.exemptions.clone(),
        );
        registry.register(
            "hookguard_policy_exceptions",
            "Rule findings a HookPolicyException waived (applied), or that fired although a matching exception had expired (expired), by rule",
            metrics.policy_exceptions.clone(),
        );
        registry.register(
            "hookguard_config_reloads",
            "Policy configuration reloads by result (success, failure)",
            metrics.config_reloads.clone(),
        );
        registry.register(
            "hookguard_requests_shed",
            "Webhook requests answered 503 instead of being served, by reason (body_budget, engine_busy)",
            metrics.requests_shed.clone(),
        );
        metrics.zero_series();
        metrics
    }

    fn zero_series(&self) {
        for reason in ["body_budget", "engine_busy"] {
            let _ = self.requests_shed.get_or_create(&ShedLabels { reason });
        }
        let _ = self.hook_admissions.get_or_create(&HookLabels {
            event: "",
            kind: "",
            namespace: String::new(),
            operation: "",
        });
        for result in ["success", "failure"] {
            let _ = self.config_reloads.get_or_create(&ResultLabels { result });
        }
        for webhook in [Webhook::Mutate, Webhook::Validate] {
            // Requests that are not AdmissionReviews carry no operation or kind; creating these
            // series up front makes the family visible (as zero) before the first request.
            let _ = self.admission_requests.get_or_create(&RequestLabels {
                webhook: webhook.as_str(),
                operation: "",
                kind: "",
                result: "invalid",
            });
            let _ = self.admission_duration.get_or_create(&WebhookLabels {
                webhook: webhook.as_str(),
            });
        }
        for rule in RULES {
            let info = rule.info();
            let action = if info.mutates { "mutate" } else { "deny" };
            let _ = self.rule_findings.get_or_create(&FindingLabels {
                rule: info.id,
                action,
            });
        }
        for scope in ["namespace", "object"] {
            let _ = self.exemptions.get_or_create(&ExemptionLabels { scope });
        }
        for rule in RULES {
            for result in ["applied", "expired"] {
                let _ = self.policy_exceptions.get_or_create(&ExceptionLabels {
                    rule: rule.info().id,
                    result,
                });
            }
        }
    }

    /// Counts one policy reload: `success` or `failure`.
    pub fn record_config_reload(&self, result: &'static str) {
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The counter of requests shed for `reason` (`body_budget`, `engine_busy`).
    pub fn shed(&self, reason: &'static str) -> Counter {
        self.requests_shed
            .get_or_create(&ShedLabels { reason })
            .clone()
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
                for (list, result) in [
                    (&decision.excepted, "applied"),
                    (&decision.expired_exceptions, "expired"),
                ] {
                    for (rule, _) in list {
                        self.policy_exceptions
                            .get_or_create(&ExceptionLabels { rule, result })
                            .inc();
                    }
                }
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
}
