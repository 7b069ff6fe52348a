//! The live inventory of hook objects, inside `hookguard serve`, and the opt-in janitor.
//!
//! Hook Jobs and Pods are watched with the `hookguard.io/hook=true` label the webhook adds, so
//! the API server only sends hooks; a discovery pass (metadata-only list of objects *without* that
//! label, then one GET per hook found) brings in hooks created before hookguard was installed.
//! Helm's release records (Secrets labelled `owner=helm`) are watched metadata-only to tell which
//! releases still exist. Only compact [`record::HookRecord`]s are kept: memory grows with the
//! number of hooks. With several replicas only the holder of a Lease runs all this.

pub mod attribution;
pub mod janitor;
pub mod record;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, PartialObjectMeta, Preconditions, PropagationPolicy,
};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use wildmatch::WildMatch;

use crate::hook::HOOK_ANNOTATION;
use crate::managed_certs::stopped;
use crate::metrics::{
    HookObjectLabels, JanitorLabels, Metrics, NamespaceKindLabels, NamespaceLabels,
    NamespaceOutcomeLabels, OutcomeLabels, ReleaseLabels,
};
use crate::object::HOOK_LABEL;
use crate::server::AppState;
use record::{HookRecord, Kind, State};
use store::{Effect, Inventory, Releases};

/// Options of the inventory, leader election and janitor (part of `hookguard serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct InventoryOptions {
    /// Run the hook inventory (metrics of live hook objects and churn). Needs the Kubernetes API;
    /// with several replicas only the leader runs it.
    #[arg(long, env = "HOOKGUARD_INVENTORY")]
    pub inventory: bool,
    /// How often hooks without hookguard's label (created before it was installed) are looked for.
    #[arg(long, env = "HOOKGUARD_INVENTORY_DISCOVERY_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub inventory_discovery_interval: Duration,
    /// Watch Helm's release records (Secrets labelled owner=helm, metadata only) to report hooks
    /// whose release was uninstalled.
    #[arg(long, env = "HOOKGUARD_ORPHAN_DETECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub orphan_detection: bool,
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
    /// Delete finished hook objects Kubernetes never cleans (needs --inventory and
    /// --janitor-namespaces).
    #[arg(long, env = "HOOKGUARD_JANITOR", requires = "inventory")]
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
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("--janitor needs --janitor-namespaces: the namespaces (globs) where it may delete")]
    NoJanitorNamespaces,
}

impl InventoryOptions {
    pub fn validate(&self) -> Result<(), InventoryError> {
        if self.janitor && self.janitor_namespaces.iter().all(|n| n.trim().is_empty()) {
            return Err(InventoryError::NoJanitorNamespaces);
        }
        Ok(())
    }
}

/// What the watchers share.
#[derive(Default)]
struct Shared {
    inventory: Inventory,
    releases: Releases,
    releases_synced: bool,
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
    releases_seen: Mutex<HashSet<String>>,
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
        let mut seen = self
            .releases_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.contains(release) || seen.len() < MAX_RELEASE_VALUES {
            seen.insert(release.to_owned());
            release.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

fn apply_effects(effects: Vec<Effect>, metrics: &Metrics, labels: &Labels) {
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

/// Runs the inventory (and janitor) until `stop`: on every replica when leader election is off,
/// else only while this replica holds the Lease.
pub async fn run(
    client: kube::Client,
    namespace: String,
    opts: InventoryOptions,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    if !opts.leader_election {
        state.metrics.leader.set(1);
        work(client, opts, state.clone(), stop).await;
        state.metrics.leader.set(0);
        return;
    }
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let duration = opts.lease_duration.as_secs().max(2);
    let manager = loop {
        let built = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &opts.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(error = %e, lease = %opts.lease_name, %namespace, "cannot use the leader Lease yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    };
    let (mut leader, lease_task) = manager.watch().await;
    let mut worker: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)> = None;
    loop {
        let is_leader = *leader.borrow_and_update();
        match (is_leader, worker.is_some()) {
            (true, false) => {
                tracing::info!(%identity, lease = %opts.lease_name, "leader: running the inventory");
                state.metrics.leader.set(1);
                let (tx, rx) = watch::channel(false);
                let task = tokio::spawn(work(client.clone(), opts.clone(), state.clone(), rx));
                worker = Some((tx, task));
            }
            (false, true) => {
                tracing::info!(%identity, "lost the leader Lease: stopping the inventory");
                state.metrics.leader.set(0);
                if let Some((tx, task)) = worker.take() {
                    let _ = tx.send(true);
                    let _ = task.await;
                }
            }
            _ => {}
        }
        tokio::select! {
            changed = leader.changed() => if changed.is_err() { break },
            _ = stopped(&mut stop) => break,
        }
    }
    if let Some((tx, task)) = worker.take() {
        let _ = tx.send(true);
        let _ = task.await;
    }
    state.metrics.leader.set(0);
    // Dropping the receiver makes the manager release the Lease, so another replica takes over
    // at once instead of after the Lease expires.
    drop(leader);
    let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "hookguard".to_owned())
}

/// The inventory proper, until `stop`.
async fn work(
    client: kube::Client,
    opts: InventoryOptions,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    let shared: SharedRef = Arc::default();
    let labels = Arc::new(Labels {
        namespace: state.metrics.namespace_label(),
        release: opts.metrics_release_label,
        releases_seen: Mutex::default(),
    });
    if !opts.orphan_detection {
        lock(&shared).releases_synced = false;
    }
    let mut tasks = vec![
        tokio::spawn(watch_hooks::<Job>(
            Api::all(client.clone()),
            record::from_job,
            Kind::Job,
            shared.clone(),
            state.clone(),
            labels.clone(),
        )),
        tokio::spawn(watch_hooks::<Pod>(
            Api::all(client.clone()),
            record::from_pod,
            Kind::Pod,
            shared.clone(),
            state.clone(),
            labels.clone(),
        )),
        tokio::spawn(discover(
            client.clone(),
            opts.inventory_discovery_interval,
            shared.clone(),
            state.clone(),
            labels.clone(),
        )),
    ];
    if opts.orphan_detection {
        tasks.push(tokio::spawn(watch_releases(
            Api::all(client.clone()),
            shared.clone(),
        )));
    }
    let janitor = opts.janitor.then(|| Janitor {
        client: client.clone(),
        policy: janitor::JanitorPolicy {
            namespaces: opts
                .janitor_namespaces
                .iter()
                .map(|g| WildMatch::new(g.trim()))
                .collect(),
            min_age: opts.janitor_min_age.as_secs() as i64,
        },
        dry_run: opts.janitor_dry_run,
        interval: opts.janitor_interval,
        reported: HashSet::new(),
        last: None,
    });
    let mut refresher = Refresher {
        shared: shared.clone(),
        state: state.clone(),
        labels,
        orphan_detection: opts.orphan_detection,
        janitor,
        previous: PreviousSeries::default(),
    };
    loop {
        refresher.refresh().await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stopped(&mut stop) => break,
        }
    }
    for t in tasks {
        t.abort();
    }
    let m = &state.metrics;
    m.inventory_up.set(0);
    m.hook_objects.clear();
    m.hook_oldest_finished_age.clear();
    m.hook_orphans.clear();
    m.zero_inventory_series();
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Watches one kind's labelled hooks into the inventory.
async fn watch_hooks<K>(
    api: Api<K>,
    to_record: fn(&K) -> Option<(String, HookRecord)>,
    kind: Kind,
    shared: SharedRef,
    state: Arc<AppState>,
    labels: Arc<Labels>,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().labels(&format!("{HOOK_LABEL}=true"));
    let stream = watcher::watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listing = Vec::new();
    let mut first = true;
    while let Some(event) = stream.next().await {
        let effects = match event {
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(obj)) => {
                listing.extend(to_record(&obj));
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                let mut s = lock(&shared);
                let effects = s
                    .inventory
                    .resync(kind, true, std::mem::take(&mut listing), !first);
                match kind {
                    Kind::Job => s.jobs_synced = true,
                    Kind::Pod => s.pods_synced = true,
                }
                tracing::info!(
                    kind = kind.as_str(),
                    hooks = s.inventory.len(),
                    "inventory synced"
                );
                first = false;
                effects
            }
            Ok(watcher::Event::Apply(obj)) => match to_record(&obj) {
                Some((uid, record)) => lock(&shared).inventory.upsert(uid, record, true),
                // No longer a hook (annotation removed): it leaves the inventory, uncounted.
                None => {
                    if let Some(uid) = obj.meta().uid.as_deref() {
                        lock(&shared).inventory.remove(uid);
                    }
                    Vec::new()
                }
            },
            Ok(watcher::Event::Delete(obj)) => match obj.meta().uid.as_deref() {
                Some(uid) => lock(&shared).inventory.remove(uid),
                None => Vec::new(),
            },
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "hook watch failed; retrying");
                continue;
            }
        };
        apply_effects(effects, &state.metrics, &labels);
    }
}

/// Watches Helm's release records, metadata only.
async fn watch_releases(api: Api<PartialObjectMeta<Secret>>, shared: SharedRef) {
    let config = watcher::Config::default().labels("owner=helm");
    let stream = watcher::watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listing = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(meta)) => listing.push(meta),
            Ok(watcher::Event::InitDone) => {
                let mut s = lock(&shared);
                s.releases.clear();
                for meta in listing.drain(..) {
                    if let Some(uid) = meta.uid() {
                        s.releases.upsert(
                            uid,
                            &meta.namespace().unwrap_or_default(),
                            meta.labels(),
                        );
                    }
                }
                s.releases_synced = true;
            }
            Ok(watcher::Event::Apply(meta)) => {
                if let Some(uid) = meta.uid() {
                    lock(&shared).releases.upsert(
                        uid,
                        &meta.namespace().unwrap_or_default(),
                        meta.labels(),
                    );
                }
            }
            Ok(watcher::Event::Delete(meta)) => {
                if let Some(uid) = meta.uid() {
                    lock(&shared).releases.remove(&uid);
                }
            }
            Err(e) => tracing::warn!(error = %e, "Helm release watch failed; retrying"),
        }
    }
}

/// Finds hooks without hookguard's label: a metadata-only list, then a GET per hook found.
async fn discover(
    client: kube::Client,
    interval: Duration,
    shared: SharedRef,
    state: Arc<AppState>,
    labels: Arc<Labels>,
) {
    let mut first = true;
    loop {
        let jobs = discover_kind::<Job>(&client, None, record::from_job).await;
        let pods = discover_kind::<Pod>(&client, None, record::from_pod).await;
        for (kind, found) in [(Kind::Job, jobs), (Kind::Pod, pods)] {
            match found {
                Ok(found) => {
                    let effects = lock(&shared).inventory.resync(kind, false, found, !first);
                    apply_effects(effects, &state.metrics, &labels);
                }
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), error = %e, "hook discovery failed; retrying at the next pass")
                }
            }
        }
        first = false;
        tokio::time::sleep(interval).await;
    }
}

/// Every hook of kind `K` without hookguard's label, in `namespace` (all when `None`).
pub async fn discover_kind<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    to_record: fn(&K) -> Option<(String, HookRecord)>,
) -> Result<Vec<(String, HookRecord)>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let all: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut found = Vec::new();
    let mut params = ListParams::default()
        .labels(&format!("!{HOOK_LABEL}"))
        .limit(500);
    loop {
        let page = all.list_metadata(&params).await?;
        for meta in &page.items {
            let is_hook = meta
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(HOOK_ANNOTATION));
            if !is_hook {
                continue;
            }
            let ns = meta.namespace().unwrap_or_default();
            let api: Api<K> = Api::namespaced(client.clone(), &ns);
            if let Some(obj) = api.get_opt(&meta.name_any()).await? {
                found.extend(to_record(&obj));
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(found)
}

/// Label sets of the gauges set last time, to remove series that disappeared.
#[derive(Default)]
struct PreviousSeries {
    objects: HashSet<HookObjectLabels>,
    oldest: HashSet<NamespaceLabels>,
    orphans: HashSet<NamespaceKindLabels>,
}

struct Janitor {
    client: kube::Client,
    policy: janitor::JanitorPolicy,
    dry_run: bool,
    interval: Duration,
    /// Dry run: uids already reported, so each is counted once.
    reported: HashSet<String>,
    last: Option<tokio::time::Instant>,
}

struct Refresher {
    shared: SharedRef,
    state: Arc<AppState>,
    labels: Arc<Labels>,
    orphan_detection: bool,
    janitor: Option<Janitor>,
    previous: PreviousSeries,
}

/// A deletion to make, copied out of the lock.
struct Doomed {
    uid: String,
    namespace: String,
    name: String,
    kind: Kind,
    reason: janitor::Reason,
}

impl Refresher {
    async fn refresh(&mut self) {
        let now = now();
        let janitor_due = self
            .janitor
            .as_ref()
            .is_some_and(|j| j.last.is_none_or(|last| last.elapsed() >= j.interval));
        let (summary, synced, doomed) = {
            let s = lock(&self.shared);
            let synced = s.jobs_synced && s.pods_synced;
            let releases_known = self.orphan_detection && s.releases_synced;
            let live = releases_known.then(|| s.releases.live());
            let summary = store::summarize(&s.inventory, live.as_ref(), now, self.labels.namespace);
            let doomed: Vec<Doomed> = match (&self.janitor, janitor_due && synced) {
                (Some(j), true) => janitor::select(&s.inventory, live.as_ref(), now, &j.policy)
                    .into_iter()
                    // Orphans are only told apart once releases are known; until then wait.
                    .filter(|_| releases_known || !self.orphan_detection)
                    .map(|c| Doomed {
                        uid: c.uid.to_owned(),
                        namespace: c.record.namespace.clone(),
                        name: c.record.name.clone(),
                        kind: c.record.kind,
                        reason: c.reason,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            (summary, synced, doomed)
        };
        self.set_gauges(summary, synced);
        if let Some(j) = self.janitor.as_mut()
            && janitor_due
            && synced
        {
            j.last = Some(tokio::time::Instant::now());
            for d in doomed {
                j.remove(d, &self.state.metrics, &self.labels).await;
            }
        }
    }

    fn set_gauges(&mut self, summary: store::Summary, synced: bool) {
        let m = &self.state.metrics;
        m.inventory_up.set(i64::from(synced));
        let mut objects = HashSet::new();
        // Every state of every kind in a namespace with hooks, zeros included, so a state that
        // drains shows 0 rather than vanishing.
        let namespaces: HashSet<&String> = summary.objects.keys().map(|(ns, _, _)| ns).collect();
        let mut values: HashMap<HookObjectLabels, i64> = HashMap::new();
        for ns in namespaces {
            for kind in [Kind::Job, Kind::Pod] {
                for state in State::ALL {
                    let count = summary
                        .objects
                        .get(&(ns.clone(), kind, state))
                        .copied()
                        .unwrap_or(0);
                    values.insert(
                        HookObjectLabels {
                            namespace: ns.clone(),
                            kind: kind.as_str(),
                            state: state.as_str(),
                        },
                        count,
                    );
                }
            }
        }
        for (labels, count) in values {
            m.hook_objects.get_or_create(&labels).set(count);
            objects.insert(labels);
        }
        for gone in self.previous.objects.difference(&objects) {
            m.hook_objects.remove(gone);
        }

        self.previous.objects = objects;

        let mut oldest = HashSet::new();
        for (ns, age) in summary.oldest_finished_age {
            let labels = NamespaceLabels { namespace: ns };
            m.hook_oldest_finished_age.get_or_create(&labels).set(age);
            oldest.insert(labels);
        }
        for gone in self.previous.oldest.difference(&oldest) {
            m.hook_oldest_finished_age.remove(gone);
        }
        self.previous.oldest = oldest;

        let mut orphans = HashSet::new();
        for ((ns, kind), count) in summary.orphans {
            let labels = NamespaceKindLabels {
                namespace: ns,
                kind: kind.as_str(),
            };
            m.hook_orphans.get_or_create(&labels).set(count);
            orphans.insert(labels);
        }
        for gone in self.previous.orphans.difference(&orphans) {
            m.hook_orphans.remove(gone);
        }
        self.previous.orphans = orphans;
        // Keep the always-present zero series (empty namespace) in place.
        m.zero_inventory_series();
    }
}

impl Janitor {
    async fn remove(&mut self, d: Doomed, metrics: &Metrics, labels: &Labels) {
        let count = |mode: &'static str| {
            metrics
                .janitor_deletions
                .get_or_create(&JanitorLabels {
                    namespace: labels.namespace(&d.namespace),
                    kind: d.kind.as_str(),
                    reason: d.reason.as_str(),
                    mode,
                })
                .inc();
        };
        if self.dry_run {
            if self.reported.insert(d.uid.clone()) {
                tracing::info!(namespace = %d.namespace, kind = d.kind.as_str(), name = %d.name, reason = d.reason.as_str(), "janitor (dry run): would delete");
                count("dry-run");
            }
            return;
        }
        let params = DeleteParams {
            // Only the object judged: not a namesake created since.
            preconditions: Some(Preconditions {
                uid: Some(d.uid.clone()),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        let result = match d.kind {
            Kind::Job => Api::<Job>::namespaced(self.client.clone(), &d.namespace)
                .delete(&d.name, &params)
                .await
                .map(|_| ()),
            Kind::Pod => Api::<Pod>::namespaced(self.client.clone(), &d.namespace)
                .delete(&d.name, &params)
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => {
                tracing::info!(namespace = %d.namespace, kind = d.kind.as_str(), name = %d.name, uid = %d.uid, reason = d.reason.as_str(), "janitor: deleted");
                count("delete");
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                tracing::debug!(namespace = %d.namespace, name = %d.name, "janitor: already gone or replaced");
            }
            Err(e) => {
                tracing::warn!(namespace = %d.namespace, kind = d.kind.as_str(), name = %d.name, error = %e, "janitor: delete failed");
            }
        }
    }
}

/// A point-in-time view for `hookguard audit`: every hook Job and Pod (labelled or not) in
/// `namespace` (all when `None`), and the live Helm releases (`None` if they cannot be listed).
pub async fn snapshot(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<(Inventory, Option<HashSet<(String, String)>>), kube::Error> {
    let mut inventory = Inventory::default();
    let labeled = ListParams::default().labels(&format!("{HOOK_LABEL}=true"));
    let jobs: Api<Job> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let pods: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut listed: Vec<(String, HookRecord)> = Vec::new();
    for job in jobs.list(&labeled).await?.items {
        listed.extend(record::from_job(&job));
    }
    for pod in pods.list(&labeled).await?.items {
        listed.extend(record::from_pod(&pod));
    }
    listed.extend(discover_kind::<Job>(client, namespace, record::from_job).await?);
    listed.extend(discover_kind::<Pod>(client, namespace, record::from_pod).await?);
    for (uid, r) in listed {
        inventory.upsert(uid, r, false);
    }
    let secrets: Api<Secret> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let live = match secrets
        .list_metadata(&ListParams::default().labels("owner=helm"))
        .await
    {
        Ok(list) => {
            let mut releases = Releases::default();
            for meta in list.items {
                if let Some(uid) = meta.uid() {
                    releases.upsert(uid, &meta.namespace().unwrap_or_default(), meta.labels());
                }
            }
            Some(releases.live())
        }
        Err(kube::Error::Api(s)) if s.code == 403 => None,
        Err(e) => return Err(e),
    };
    Ok((inventory, live))
}
