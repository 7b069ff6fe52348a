//! The live inventory of hook objects, inside `hookguard controller`, and the opt-in janitor.
//!
//! Hook Jobs and Pods are watched with the `hookguard.io/hook=true` label the webhook adds, so
//! the API server only sends hooks; a discovery pass (metadata-only list of objects *without* that
//! label, then one GET per hook found) brings in hooks created before hookguard was installed.
//! Helm's release records (Secrets labelled `owner=helm`) are watched metadata-only to tell which
//! releases still exist. Only compact [`record::HookRecord`]s are kept: memory grows with the
//! number of hooks. With several replicas only the holder of a Lease runs all this.
//!
//! Pure: [`record`] (what is kept of an object), [`attribution`], [`store`] (state, churn effects,
//! gauges), [`janitor`] (what may be deleted). Shell: `watchers`, `leader`, `refresh`.

pub mod attribution;
pub mod janitor;
mod leader;
pub mod record;
mod refresh;
pub mod store;
mod watchers;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;
use tokio_util::sync::CancellationToken;
use wildmatch::WildMatch;

use crate::metrics::{
    BoundedValues, HistoryMetrics, InventoryMetrics, NamespaceOutcomeLabels, OutcomeLabels,
    ReleaseLabels,
};
pub use leader::run;
use record::Kind;
use refresh::{Janitor, PreviousSeries, Refresher};
pub use store::HelmDriver;
use store::{Effect, Inventory, Releases};
use watchers::{discover, watch_hooks, watch_releases};
pub use watchers::{discover_kind, snapshot};

/// Options of the inventory, leader election and janitor (part of `hookguard controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct InventoryOptions {
    /// How often hooks without hookguard's label (created before it was installed) are looked for.
    #[arg(long, env = "HOOKGUARD_INVENTORY_DISCOVERY_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub inventory_discovery_interval: Duration,
    /// Watch Helm's release records (labelled owner=helm, metadata only) to report hooks whose
    /// release was uninstalled.
    #[arg(long, env = "HOOKGUARD_ORPHAN_DETECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub orphan_detection: bool,
    /// Where Helm keeps release records in this cluster (its HELM_DRIVER values): orphan detection
    /// watches these. Releases kept elsewhere (sql) are invisible: turn orphan detection off there.
    #[arg(
        long,
        env = "HOOKGUARD_HELM_DRIVERS",
        value_enum,
        value_delimiter = ',',
        default_value = "secret,configmap"
    )]
    pub helm_drivers: Vec<HelmDriver>,
    /// Report the release label of the churn metrics (turn off for clusters with very many releases).
    #[arg(long, env = "HOOKGUARD_METRICS_RELEASE_LABEL", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_release_label: bool,
    /// Elect one replica (a Lease in --namespace) to run the inventory and janitor.
    #[arg(long, env = "HOOKGUARD_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "HOOKGUARD_LEASE_NAME", default_value = "hookguard")]
    pub lease_name: String,
    /// How long a leader's Lease lasts without renewal (a new leader takes over after it).
    #[arg(long, env = "HOOKGUARD_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// Delete finished hook objects Kubernetes never cleans (needs --janitor-namespaces).
    #[arg(long, env = "HOOKGUARD_JANITOR")]
    pub janitor: bool,
    /// Namespaces (globs) where the janitor may delete: nothing is cleaned elsewhere.
    #[arg(long, env = "HOOKGUARD_JANITOR_NAMESPACES", value_delimiter = ',')]
    pub janitor_namespaces: Vec<String>,
    /// How long a hook must have been finished before the janitor removes it.
    #[arg(long, env = "HOOKGUARD_JANITOR_MIN_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub janitor_min_age: Duration,
    /// Only report (log and count with mode="dry-run") what would be deleted.
    #[arg(long, env = "HOOKGUARD_JANITOR_DRY_RUN")]
    pub janitor_dry_run: bool,
    /// How often the janitor looks for objects to remove.
    #[arg(long, env = "HOOKGUARD_JANITOR_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub janitor_interval: Duration,
    /// Record Kubernetes Events (events.k8s.io): each janitor deletion, in the deleted object's
    /// namespace; with --policy-recheck, the findings on live hook objects. Needs create and
    /// patch on events.
    #[arg(long, env = "HOOKGUARD_EVENTS")]
    pub events: bool,
    #[command(flatten)]
    pub history: crate::history::HistoryOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("--janitor needs --janitor-namespaces: the namespaces (globs) where it may delete")]
    NoJanitorNamespaces,
    #[error(
        "--orphan-detection needs --helm-drivers: where Helm keeps release records (secret, configmap)"
    )]
    NoHelmDrivers,
}

impl InventoryOptions {
    /// What the janitor may delete, from the flags.
    pub fn janitor_policy(&self) -> janitor::JanitorPolicy {
        janitor::JanitorPolicy {
            namespaces: self
                .janitor_namespaces
                .iter()
                .map(|g| WildMatch::new(g.trim()))
                .collect(),
            // Saturating: a huge --janitor-min-age must mean "never", not wrap to negative.
            min_age: i64::try_from(self.janitor_min_age.as_secs()).unwrap_or(i64::MAX),
        }
    }

    pub fn validate(&self) -> Result<(), InventoryError> {
        if self.janitor && self.janitor_namespaces.iter().all(|n| n.trim().is_empty()) {
            return Err(InventoryError::NoJanitorNamespaces);
        }
        if self.orphan_detection && self.helm_drivers.is_empty() {
            return Err(InventoryError::NoHelmDrivers);
        }
        Ok(())
    }
}

/// What the watchers share.
#[derive(Default)]
struct Shared {
    inventory: Inventory,
    releases: Releases,
    /// The drivers whose records are all listed and watched.
    releases_synced: BTreeSet<HelmDriver>,
    jobs_synced: bool,
    pods_synced: bool,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(shared: &SharedRef) -> std::sync::MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bounds the values of the namespace and release labels.
struct Labels {
    namespace: bool,
    release: bool,
    releases: BoundedValues,
}

/// At most this many distinct release label values; later ones are reported as `other`.
const MAX_RELEASE_VALUES: usize = 2000;

impl Labels {
    fn namespace(&self, ns: &str) -> String {
        if self.namespace {
            ns.to_owned()
        } else {
            String::new()
        }
    }

    fn release(&self, release: &str) -> String {
        if !self.release {
            return String::new();
        }
        self.releases.get(release)
    }
}

fn apply_effects(effects: Vec<Effect>, metrics: &InventoryMetrics, labels: &Labels) {
    for effect in effects {
        match effect {
            Effect::Created { namespace, release } => {
                metrics
                    .hook_created
                    .get_or_create(&ReleaseLabels {
                        namespace: labels.namespace(&namespace),
                        release: labels.release(&release),
                    })
                    .inc();
            }
            Effect::Deleted { namespace, release } => {
                metrics
                    .hook_deleted
                    .get_or_create(&ReleaseLabels {
                        namespace: labels.namespace(&namespace),
                        release: labels.release(&release),
                    })
                    .inc();
            }
            Effect::JobFinished {
                namespace,
                outcome,
                seconds,
            } => {
                let outcome = outcome.as_str();
                metrics
                    .hook_job_outcomes
                    .get_or_create(&NamespaceOutcomeLabels {
                        namespace: labels.namespace(&namespace),
                        outcome,
                    })
                    .inc();
                if let Some(s) = seconds {
                    metrics
                        .hook_job_duration
                        .get_or_create(&OutcomeLabels { outcome })
                        .observe(s as f64);
                }
            }
        }
    }
}

/// The inventory proper, until `stop`.
async fn work(
    client: kube::Client,
    namespace: String,
    opts: InventoryOptions,
    metrics: InventoryMetrics,
    history: HistoryMetrics,
    stop: CancellationToken,
) {
    let shared: SharedRef = Arc::default();
    let labels = Arc::new(Labels {
        namespace: metrics.namespace_label(),
        release: opts.metrics_release_label,
        releases: BoundedValues::new(MAX_RELEASE_VALUES),
    });
    let mut tasks = vec![
        tokio::spawn(watch_hooks::<Job>(
            Api::all(client.clone()),
            record::from_job,
            Kind::Job,
            shared.clone(),
            metrics.clone(),
            labels.clone(),
        )),
        tokio::spawn(watch_hooks::<Pod>(
            Api::all(client.clone()),
            record::from_pod,
            Kind::Pod,
            shared.clone(),
            metrics.clone(),
            labels.clone(),
        )),
        tokio::spawn(discover(
            client.clone(),
            opts.inventory_discovery_interval,
            shared.clone(),
            metrics.clone(),
            labels.clone(),
        )),
    ];
    let helm_drivers: BTreeSet<HelmDriver> = if opts.orphan_detection {
        opts.helm_drivers.iter().copied().collect()
    } else {
        BTreeSet::new()
    };
    for driver in &helm_drivers {
        tasks.push(match driver {
            HelmDriver::Secret => tokio::spawn(watch_releases::<Secret>(
                Api::all(client.clone()),
                *driver,
                shared.clone(),
            )),
            HelmDriver::Configmap => tokio::spawn(watch_releases::<ConfigMap>(
                Api::all(client.clone()),
                *driver,
                shared.clone(),
            )),
        });
    }
    if opts.history.history {
        tasks.push(tokio::spawn(crate::history::run(
            client.clone(),
            namespace,
            opts.history.clone(),
            opts.helm_drivers.iter().copied().collect(),
            history,
            stop.child_token(),
        )));
    }
    let janitor = opts.janitor.then(|| Janitor {
        events: opts
            .events
            .then(|| crate::controller::event_recorder(client.clone())),
        client: client.clone(),
        policy: opts.janitor_policy(),
        dry_run: opts.janitor_dry_run,
        interval: opts.janitor_interval,
        reported: HashSet::new(),
        last: None,
    });
    let mut refresher = Refresher {
        shared: shared.clone(),
        metrics: metrics.clone(),
        labels,
        helm_drivers,
        janitor,
        previous: PreviousSeries::default(),
    };
    loop {
        refresher.refresh().await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.cancelled() => break,
        }
    }
    for t in tasks {
        t.abort();
    }
    let m = &metrics;
    m.inventory_up.set(0);
    m.hook_objects.clear();
    m.hook_oldest_finished_age.clear();
    m.hook_orphans.clear();
    m.zero_inventory_series();
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::InventoryOptions;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: InventoryOptions,
    }

    fn parse(args: &[&str]) -> InventoryOptions {
        let mut all = vec!["hookguard"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().opts
    }

    #[test]
    fn janitor_flags_become_its_policy() {
        let opts = parse(&[
            "--janitor",
            "--janitor-namespaces",
            "team-*, ci",
            "--janitor-min-age",
            "2h",
        ]);
        assert!(opts.validate().is_ok());
        let policy = opts.janitor_policy();
        assert_eq!(policy.min_age, 7200);
        assert!(policy.namespaces.iter().any(|g| g.matches("team-a")));
        assert!(policy.namespaces.iter().any(|g| g.matches("ci")));
        // Larger than i64 seconds: never old enough, instead of wrapping to a negative age.
        let huge = parse(&["--janitor-min-age", "500000000000years"]);
        assert_eq!(huge.janitor_policy().min_age, i64::MAX);
        let unscoped = parse(&["--janitor"]);
        assert!(unscoped.validate().is_err());
    }
}
