//! `hookguard controller`, the composition root of the controller process: the hook inventory,
//! orphan detection, the janitor and leader election, plus an admin server (`/livez`, `/readyz`,
//! `/metrics`) and no other listener.
//!
//! It holds the cluster-wide read permissions (Jobs, Pods, Helm's release records) and the
//! janitor's deletes; the webhook process, which every pod can reach, holds none of them. With
//! several replicas only the holder of the Lease works; the others wait to take over.

mod recheck;
mod reports;

pub use recheck::RecheckOptions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::Readiness;
use crate::inventory::InventoryOptions;
use crate::metrics::ControllerMetrics;
use crate::server::connections;

/// Options of `hookguard controller`. Every flag can also be set with a `HOOKGUARD_*` variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerOptions {
    /// Plain-HTTP address of the admin server (`/livez`, `/readyz`, `/metrics`).
    #[arg(long, env = "HOOKGUARD_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    pub admin_addr: SocketAddr,
    /// kubeconfig for the Kubernetes API. Without it: $KUBECONFIG, ~/.kube/config, then the
    /// in-cluster service account.
    #[arg(long, env = "HOOKGUARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// hookguard's own namespace, where the leader Lease lives. Defaults to POD_NAMESPACE, then
    /// the kubeconfig's namespace.
    #[arg(long, env = "HOOKGUARD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Report the namespace label of the inventory, churn and janitor metrics; turn off for
    /// clusters with very many namespaces.
    #[arg(long, env = "HOOKGUARD_METRICS_NAMESPACE_LABEL", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_namespace_label: bool,
    /// On SIGTERM: longest wait for the inventory to stop and the Lease to be released.
    #[arg(long, env = "HOOKGUARD_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub inventory: InventoryOptions,
    #[command(flatten)]
    pub recheck: RecheckOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Inventory(#[from] crate::inventory::InventoryError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("controller error: {0}")]
    Io(#[from] std::io::Error),
}

/// The Event recorder of the controller (events.k8s.io), as `hookguard-controller` and, in a
/// pod, its name.
pub fn event_recorder(client: kube::Client) -> kube::runtime::events::Recorder {
    let reporter = kube::runtime::events::Reporter {
        controller: "hookguard-controller".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    kube::runtime::events::Recorder::new(client, reporter)
}

/// The admin server's limits: it serves probes and one Prometheus scrape at a time.
const ADMIN: connections::AdminSettings = connections::AdminSettings {
    header_read_timeout: Duration::from_secs(5),
    idle_timeout: Duration::from_secs(90),
    max_connections: 64,
    close_grace: Duration::from_secs(5),
};

/// Runs until `shutdown` is cancelled (see [`crate::admin::cancel_on_signal`]), then stops the
/// inventory and releases the Lease.
pub async fn run(
    opts: ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    opts.inventory.validate()?;
    let metrics = ControllerMetrics::new(opts.metrics_namespace_label);
    let readiness = Readiness::default();
    let background = CancellationToken::new();
    let admin = connections::bind_admin(
        opts.admin_addr,
        crate::admin::admin_router(readiness.clone(), metrics.registry.clone()),
        ADMIN,
        metrics.connections.refused("admin"),
    )
    .await
    .map_err(|(addr, source)| ControllerError::Bind { addr, source })?;
    let admin_addr = admin.local_addr()?;
    let admin = tokio::spawn(admin.run(background.child_token()));

    let conn = match crate::cluster::connect(opts.kubeconfig.as_deref()).await {
        Ok(conn) => conn,
        Err(e) => {
            background.cancel();
            let _ = admin.await;
            return Err(e.into());
        }
    };
    let namespace = opts
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| conn.default_namespace.clone());
    let inventory = tokio::spawn(crate::inventory::run(
        conn.client.clone(),
        namespace.clone(),
        opts.inventory.clone(),
        metrics.inventory.clone(),
        metrics.history.clone(),
        shutdown.child_token(),
    ));
    if opts.recheck.policy_recheck {
        // Every replica re-checks (read-only and idempotent): the gauge is the same on each, so
        // dashboards take the maximum over replicas, as for the inventory.
        tokio::spawn(recheck::run(
            conn.client.clone(),
            opts.recheck.clone(),
            opts.inventory.helm_drivers.clone(),
            opts.inventory
                .events
                .then(|| event_recorder(conn.client.clone())),
            namespace.clone(),
            metrics.recheck.clone(),
            background.child_token(),
        ));
    }
    readiness.set(true);
    tracing::info!(%admin_addr, %namespace, janitor = opts.inventory.janitor, version = env!("CARGO_PKG_VERSION"), "hookguard controller running");

    shutdown.cancelled().await;
    tracing::info!("shutting down: stopping the inventory");
    readiness.set(false);
    // The leader releases its Lease on the way out, so another replica takes over at once.
    if tokio::time::timeout(opts.shutdown_grace, inventory)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?opts.shutdown_grace, "the inventory did not stop in time");
    }
    background.cancel();
    let _ = admin.await;
    tracing::info!("hookguard controller stopped");
    Ok(())
}
