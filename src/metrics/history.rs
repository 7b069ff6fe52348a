//! The metrics of the controller's hook run history (`--history`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunOutcomeLabels {
    /// `succeeded`, `failed` or `deleted` (removed before it finished).
    pub outcome: &'static str,
}

#[derive(Clone)]
pub struct HistoryMetrics {
    /// Finished runs recorded.
    pub runs: Family<RunOutcomeLabels, Counter>,
    /// Runs with at least one container whose log could not be captured before the Pod was gone.
    pub logs_missed: Counter,
    /// Failed reads or writes of the history records.
    pub store_errors: Counter,
}

impl HistoryMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = HistoryMetrics {
            runs: Family::default(),
            logs_missed: Counter::default(),
            store_errors: Counter::default(),
        };
        // Every outcome exported from the start: rates over a fresh controller read 0, not gaps.
        for outcome in ["succeeded", "failed", "deleted"] {
            m.runs
                .get_or_create(&RunOutcomeLabels { outcome })
                .inc_by(0);
        }
        registry.register(
            "hookguard_history_runs",
            "Finished hook runs recorded in the history, by outcome (succeeded, failed, deleted before it finished)",
            m.runs.clone(),
        );
        registry.register(
            "hookguard_history_logs_missed",
            "Hook runs with a container whose log could not be captured in time (its Pod was deleted first, or the API refused)",
            m.logs_missed.clone(),
        );
        registry.register(
            "hookguard_history_store_errors",
            "Failed reads or writes of the hook run history records",
            m.store_errors.clone(),
        );
        m
    }
}
