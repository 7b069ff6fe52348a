//! The metrics of the webhook's Namespace label cache (`--namespace-labels`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `cached`, `read` (not in the cache yet: read from the API server) or `unknown`.
    pub result: &'static str,
}

/// What a lookup of a namespace's labels found.
pub const LOOKUP_RESULTS: [&str; 3] = ["cached", "read", "unknown"];

#[derive(Clone)]
pub struct NamespaceMetrics {
    lookups: Family<LookupLabels, Counter>,
}

impl NamespaceMetrics {
    /// Registers the family with a zero series per result.
    pub fn register(registry: &mut Registry) -> Self {
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "hookguard_namespace_label_lookups",
            "Lookups of a namespace's labels for policy overrides with a namespaceSelector, by result: cached, read (from the API server: not in the cache yet) or unknown (no selector matches then)",
            lookups.clone(),
        );
        for result in LOOKUP_RESULTS {
            let _ = lookups.get_or_create(&LookupLabels { result });
        }
        NamespaceMetrics { lookups }
    }

    pub fn record(&self, result: &'static str) {
        self.lookups.get_or_create(&LookupLabels { result }).inc();
    }
}
