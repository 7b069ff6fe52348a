//! The listeners' metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// `webhook` or `admin`.
    pub server: &'static str,
}

/// The connection families; cheap to clone.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub connections_refused: Family<ServerLabels, Counter>,
}

impl ConnectionMetrics {
    /// Registers the families with a zero series for each of the process's `servers`.
    pub fn register(registry: &mut Registry, servers: &[&'static str]) -> Self {
        let connections_refused = Family::<ServerLabels, Counter>::default();
        registry.register(
            "hookguard_connections_refused",
            "Connections closed at once because the server's connection limit was reached, by server (webhook, admin)",
            connections_refused.clone(),
        );
        for &server in servers {
            let _ = connections_refused.get_or_create(&ServerLabels { server });
        }
        ConnectionMetrics {
            connections_refused,
        }
    }

    /// The counter of connections `server` refused.
    pub fn refused(&self, server: &'static str) -> Counter {
        self.connections_refused
            .get_or_create(&ServerLabels { server })
            .clone()
    }
}
