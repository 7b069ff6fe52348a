//! The serving certificate's metrics: reloads, expiry, and the self-managed certificates'
//! rotations and checks.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{GaugeI, ResultLabels};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    /// `serving` or `ca`.
    pub cert: &'static str,
}

/// The certificate families; cheap to clone.
#[derive(Clone)]
pub struct CertMetrics {
    pub tls_reloads: Family<ResultLabels, Counter>,
    pub tls_cert_expiry: GaugeI,
    pub tls_ca_expiry: GaugeI,
    pub cert_rotations: Family<CertLabels, Counter>,
    pub cert_reconciles: Family<ResultLabels, Counter>,
}

impl CertMetrics {
    /// Registers the families and creates their zero series.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = CertMetrics {
            tls_reloads: Family::default(),
            tls_cert_expiry: GaugeI::default(),
            tls_ca_expiry: GaugeI::default(),
            cert_rotations: Family::default(),
            cert_reconciles: Family::default(),
        };
        registry.register(
            "hookguard_tls_reloads",
            "Serving certificate reloads by result (success, failure)",
            metrics.tls_reloads.clone(),
        );
        registry.register(
            "hookguard_tls_cert_expiry_timestamp_seconds",
            "Expiry (notAfter) of the serving certificate in use, as a Unix timestamp",
            metrics.tls_cert_expiry.clone(),
        );
        registry.register(
            "hookguard_tls_ca_expiry_timestamp_seconds",
            "Earliest expiry (notAfter) of the CAs in the published caBundle (self-managed certificates), as a Unix timestamp; 0 in other modes",
            metrics.tls_ca_expiry.clone(),
        );
        registry.register(
            "hookguard_cert_rotations",
            "Certificates this replica issued in self-managed mode, by certificate (serving, ca)",
            metrics.cert_rotations.clone(),
        );
        registry.register(
            "hookguard_cert_reconciles",
            "Checks of the self-managed certificates (Secret and caBundle), by result (success, failure)",
            metrics.cert_reconciles.clone(),
        );
        for cert in ["serving", "ca"] {
            let _ = metrics.cert_rotations.get_or_create(&CertLabels { cert });
        }
        for result in ["success", "failure"] {
            let _ = metrics
                .cert_reconciles
                .get_or_create(&ResultLabels { result });
            let _ = metrics.tls_reloads.get_or_create(&ResultLabels { result });
        }
        metrics
    }

    /// Counts one reload of the serving certificate or client CA: `success` or `failure`.
    pub fn record_reload(&self, result: &'static str) {
        self.tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts one check of the self-managed certificates: `success` or `failure`.
    pub fn record_reconcile(&self, result: &'static str) {
        self.cert_reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts one certificate issued: `serving` or `ca`.
    pub fn record_rotation(&self, cert: &'static str) {
        self.cert_rotations
            .get_or_create(&CertLabels { cert })
            .inc();
    }
}
