//! Feeding the inventory from the API server: label-selected watches of hook Jobs and Pods, the
//! discovery pass for hooks without hookguard's label, and Helm's release records (metadata only).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;

use super::record::{self, HookRecord, Kind};
use super::store::{HelmDriver, Inventory, KnownReleases, Releases};
use super::{Labels, SharedRef, apply_effects, lock};
use crate::hook::HOOK_ANNOTATION;
use crate::metrics::InventoryMetrics;
use crate::object::HOOK_LABEL;

/// Watches one kind's labelled hooks into the inventory.
pub(super) async fn watch_hooks<K>(
    api: Api<K>,
    to_record: fn(&K) -> Option<(String, HookRecord)>,
    kind: Kind,
    shared: SharedRef,
    metrics: InventoryMetrics,
    labels: Arc<Labels>,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().labels(&format!("{HOOK_LABEL}=true"));
    let mut listing = Vec::new();
    let mut first = true;
    let mut retry = Retry::default();
    loop {
        let stream = watcher::watcher(api.clone(), config.clone());
        let mut stream = std::pin::pin!(stream);
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
                    let effects =
                        s.inventory
                            .resync(kind, true, std::mem::take(&mut listing), !first);
                    *synced(&mut s, kind) = true;
                    retry.reset();
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
                    // Events may be missed from here on: not synced until a fresh list.
                    *synced(&mut lock(&shared), kind) = false;
                    tracing::warn!(kind = kind.as_str(), error = %e, "hook watch failed; listing again");
                    break;
                }
            };
            apply_effects(effects, &metrics, &labels);
        }
        retry.wait().await;
    }
}

fn synced(s: &mut super::Shared, kind: Kind) -> &mut bool {
    match kind {
        Kind::Job => &mut s.jobs_synced,
        Kind::Pod => &mut s.pods_synced,
    }
}

/// Backoff between a failed watch and the next list: 1 s doubling to 30 s, back to 1 s once a
/// list completes.
#[derive(Default)]
struct Retry {
    failures: u32,
}

impl Retry {
    fn reset(&mut self) {
        self.failures = 0;
    }

    async fn wait(&mut self) {
        let seconds = 1u64 << self.failures.min(5);
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(Duration::from_secs(seconds.min(30))).await;
    }
}

/// Helm labels its release records (Secrets or ConfigMaps) `owner=helm`.
const HELM_RECORD_SELECTOR: &str = "owner=helm";

/// Watches one driver's Helm release records (Secrets or ConfigMaps), metadata only: the API
/// server sends no `data` (kube makes every request of an `Api<PartialObjectMeta<_>>`
/// metadata-only), so release contents never reach this process.
pub(super) async fn watch_releases<K>(
    api: Api<PartialObjectMeta<K>>,
    driver: HelmDriver,
    shared: SharedRef,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().labels(HELM_RECORD_SELECTOR);
    let mut listing: Vec<PartialObjectMeta<K>> = Vec::new();
    let mut retry = Retry::default();
    loop {
        let stream = watcher::watcher(api.clone(), config.clone());
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => listing.clear(),
                Ok(watcher::Event::InitApply(meta)) => listing.push(meta),
                Ok(watcher::Event::InitDone) => {
                    let mut s = lock(&shared);
                    s.releases.clear(driver);
                    for meta in listing.drain(..) {
                        if let Some(uid) = meta.uid() {
                            s.releases.upsert(
                                driver,
                                uid,
                                &meta.namespace().unwrap_or_default(),
                                meta.labels(),
                            );
                        }
                    }
                    s.releases_synced.insert(driver);
                    retry.reset();
                }
                Ok(watcher::Event::Apply(meta)) => {
                    if let Some(uid) = meta.uid() {
                        lock(&shared).releases.upsert(
                            driver,
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
                Err(e) => {
                    // Without every release record, a hook cannot be called an orphan.
                    lock(&shared).releases_synced.remove(&driver);
                    tracing::warn!(error = %e, ?driver, "Helm release watch failed; listing again");
                    break;
                }
            }
        }
        retry.wait().await;
    }
}

/// Finds hooks without hookguard's label: a metadata-only list, then a GET per hook found.
pub(super) async fn discover(
    client: kube::Client,
    interval: Duration,
    shared: SharedRef,
    metrics: InventoryMetrics,
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
                    apply_effects(effects, &metrics, &labels);
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
    let all: Api<K> = crate::cluster::scoped(client, namespace);
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

/// A point-in-time view for `hookguard audit`: every hook Job and Pod (labelled or not) in
/// `namespace` (all when `None`), and the Helm releases of `helm_drivers` (`None` if they cannot
/// be listed).
pub async fn snapshot(
    client: &kube::Client,
    namespace: Option<&str>,
    helm_drivers: &[HelmDriver],
) -> Result<(Inventory, Option<KnownReleases>), kube::Error> {
    let mut inventory = Inventory::default();
    let labeled = ListParams::default().labels(&format!("{HOOK_LABEL}=true"));
    let jobs: Api<Job> = crate::cluster::scoped(client, namespace);
    let pods: Api<Pod> = crate::cluster::scoped(client, namespace);
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
    let known = known_releases(client, helm_drivers, namespace).await?;
    Ok((inventory, known))
}

/// Helm's release records for `hookguard audit`: of every namespace where allowed (so that the
/// verdict on a hook outside its release's namespace is right), else of `namespace` only
/// (then hooks whose release left no record there are not called orphans). `None` when some
/// driver's records cannot be listed at all.
async fn known_releases(
    client: &kube::Client,
    helm_drivers: &[HelmDriver],
    namespace: Option<&str>,
) -> Result<Option<KnownReleases>, kube::Error> {
    let mut releases = Releases::default();
    let mut complete = true;
    for &driver in helm_drivers {
        let listed = match driver {
            HelmDriver::Secret => {
                list_records::<Secret>(client, driver, namespace, &mut releases).await?
            }
            HelmDriver::Configmap => {
                list_records::<ConfigMap>(client, driver, namespace, &mut releases).await?
            }
        };
        match listed {
            Listed::Everywhere => {}
            Listed::Namespace => complete = false,
            Listed::Forbidden => return Ok(None),
        }
    }
    Ok(Some(releases.known(complete)))
}

enum Listed {
    Everywhere,
    Namespace,
    Forbidden,
}

async fn list_records<K>(
    client: &kube::Client,
    driver: HelmDriver,
    namespace: Option<&str>,
    releases: &mut Releases,
) -> Result<Listed, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let lp = ListParams::default().labels(HELM_RECORD_SELECTOR);
    let forbidden = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 403);
    let (list, listed) = match Api::<K>::all(client.clone()).list_metadata(&lp).await {
        Ok(list) => (list, Listed::Everywhere),
        Err(e) if forbidden(&e) => match namespace {
            Some(ns) => match Api::<K>::namespaced(client.clone(), ns)
                .list_metadata(&lp)
                .await
            {
                Ok(list) => (list, Listed::Namespace),
                Err(e) if forbidden(&e) => return Ok(Listed::Forbidden),
                Err(e) => return Err(e),
            },
            None => return Ok(Listed::Forbidden),
        },
        Err(e) => return Err(e),
    };
    for meta in list.items {
        if let Some(uid) = meta.uid() {
            releases.upsert(
                driver,
                uid,
                &meta.namespace().unwrap_or_default(),
                meta.labels(),
            );
        }
    }
    Ok(listed)
}
