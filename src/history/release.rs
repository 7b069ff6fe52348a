//! Which release, and which revision of it, a hook run belongs to: the latest revision among
//! Helm's release records in the hook's namespace (Helm writes the new revision, pending,
//! before it runs the hooks of an install, upgrade or rollback; a test runs against the
//! latest). With hookguard's instance-label attribution the release is known and only the
//! records' labels are read; without it, the latest record of each release in the namespace
//! is decoded and the one that lists a hook of this kind and name wins.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};

use crate::helm_release::{self, HelmRelease};
use crate::inventory::HelmDriver;

/// Releases decoded per namespace at most, when a hook carries no release label.
const MAX_DECODED_RELEASES: usize = 32;

pub struct Found {
    pub release: String,
    pub revision: Option<u64>,
}

pub struct Resolver {
    client: kube::Client,
    drivers: BTreeSet<HelmDriver>,
}

impl Resolver {
    pub fn new(client: kube::Client, drivers: BTreeSet<HelmDriver>) -> Self {
        Resolver { client, drivers }
    }

    pub async fn resolve(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        release: Option<&str>,
    ) -> Option<Found> {
        for driver in &self.drivers {
            let latest = match self.latest_records(*driver, namespace, release).await {
                Ok(latest) => latest,
                Err(e) => {
                    tracing::warn!(%namespace, driver = ?driver, error = %e, "history: cannot list Helm's release records");
                    continue;
                }
            };
            if let Some(release) = release {
                if let Some((revision, _)) = latest.get(release) {
                    return Some(Found {
                        release: release.to_owned(),
                        revision: Some(*revision),
                    });
                }
                continue;
            }
            for (release, (revision, record)) in latest.iter().take(MAX_DECODED_RELEASES) {
                match self.decode(*driver, namespace, record).await {
                    Some(r) if r.hooks.iter().any(|h| h.kind == kind && h.name == name) => {
                        return Some(Found {
                            release: release.clone(),
                            revision: Some(*revision),
                        });
                    }
                    _ => {}
                }
            }
        }
        // Attributed by its label but no record found (another storage driver): still recorded.
        release.map(|r| Found {
            release: r.to_owned(),
            revision: None,
        })
    }

    /// Release name → (latest revision, its record's name), from the records' labels.
    async fn latest_records(
        &self,
        driver: HelmDriver,
        namespace: &str,
        release: Option<&str>,
    ) -> Result<BTreeMap<String, (u64, String)>, kube::Error> {
        let selector = match release {
            Some(r) => format!("owner=helm,name={r}"),
            None => "owner=helm".to_owned(),
        };
        let params = ListParams::default().labels(&selector);
        let metas = match driver {
            HelmDriver::Secret => Api::<Secret>::namespaced(self.client.clone(), namespace)
                .list_metadata(&params)
                .await?
                .items
                .into_iter()
                .map(|m| m.metadata)
                .collect::<Vec<_>>(),
            HelmDriver::Configmap => Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .list_metadata(&params)
                .await?
                .items
                .into_iter()
                .map(|m| m.metadata)
                .collect(),
        };
        let mut latest: BTreeMap<String, (u64, String)> = BTreeMap::new();
        for meta in metas {
            let labels = meta.labels.unwrap_or_default();
            let (Some(name), Some(version), Some(record)) = (
                labels.get("name"),
                labels.get("version").and_then(|v| v.parse::<u64>().ok()),
                meta.name,
            ) else {
                continue;
            };
            let entry = latest.entry(name.clone()).or_insert((0, String::new()));
            if version >= entry.0 {
                *entry = (version, record);
            }
        }
        Ok(latest)
    }

    async fn decode(
        &self,
        driver: HelmDriver,
        namespace: &str,
        record: &str,
    ) -> Option<HelmRelease> {
        let bytes = match driver {
            HelmDriver::Secret => {
                Api::<Secret>::namespaced(self.client.clone(), namespace)
                    .get_opt(record)
                    .await
                    .ok()??
                    .data?
                    .remove("release")?
                    .0
            }
            HelmDriver::Configmap => Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .get_opt(record)
                .await
                .ok()??
                .data?
                .remove("release")?
                .into_bytes(),
        };
        helm_release::decode(&bytes).ok()
    }
}
