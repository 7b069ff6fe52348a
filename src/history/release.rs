//! Which release, and which revision of it, a hook run belongs to: the latest revision among
//! Helm's release records in the hook's namespace (Helm writes the new revision, pending,
//! before it runs the hooks of an install, upgrade or rollback; a test runs against the
//! latest). With hookguard's instance-label attribution the release is known and only the
//! records' labels are read; without it, the latest record of each release in the namespace
//! is decoded and the one that lists a hook of this kind and name wins.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// Decoded records remembered, at most: an upgrade's hooks without a release label are matched
/// against the same records, which are read and decoded once per version of each.
const MAX_CACHED_RECORDS: usize = 256;

/// A record's hooks, as `(kind, name)`, at one resourceVersion.
type Hooks = (String, Vec<(String, String)>);

pub struct Resolver {
    client: kube::Client,
    drivers: BTreeSet<HelmDriver>,
    /// `(namespace, record name)` → its hooks at the resourceVersion read.
    decoded: HashMap<(String, String), Hooks>,
}

impl Resolver {
    pub fn new(client: kube::Client, drivers: BTreeSet<HelmDriver>) -> Self {
        Resolver {
            client,
            drivers,
            decoded: HashMap::new(),
        }
    }

    pub async fn resolve(
        &mut self,
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
                if let Some(Latest { revision, .. }) = latest.get(release) {
                    return Some(Found {
                        release: release.to_owned(),
                        revision: Some(*revision),
                    });
                }
                continue;
            }
            for (release, latest) in latest.iter().take(MAX_DECODED_RELEASES) {
                let key = (namespace.to_owned(), latest.record.clone());
                let cached = self
                    .decoded
                    .get(&key)
                    .filter(|(version, _)| *version == latest.resource_version);
                let hooks = match cached {
                    Some((_, hooks)) => hooks.clone(),
                    None => {
                        let Some(decoded) = self.decode(*driver, namespace, &latest.record).await
                        else {
                            continue;
                        };
                        let hooks: Vec<(String, String)> = decoded
                            .hooks
                            .into_iter()
                            .map(|h| (h.kind, h.name))
                            .collect();
                        if self.decoded.len() >= MAX_CACHED_RECORDS {
                            self.decoded.clear();
                        }
                        self.decoded
                            .insert(key, (latest.resource_version.clone(), hooks.clone()));
                        hooks
                    }
                };
                if hooks.iter().any(|(k, n)| k == kind && n == name) {
                    return Some(Found {
                        release: release.clone(),
                        revision: Some(latest.revision),
                    });
                }
            }
        }
        // Attributed by its label but no record found (another storage driver): still recorded.
        release.map(|r| Found {
            release: r.to_owned(),
            revision: None,
        })
    }

    /// Release name → its latest record, from the records' labels.
    async fn latest_records(
        &self,
        driver: HelmDriver,
        namespace: &str,
        release: Option<&str>,
    ) -> Result<BTreeMap<String, Latest>, kube::Error> {
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
        let mut latest: BTreeMap<String, Latest> = BTreeMap::new();
        for meta in metas {
            let labels = meta.labels.unwrap_or_default();
            let (Some(name), Some(revision), Some(record)) = (
                labels.get("name"),
                labels.get("version").and_then(|v| v.parse::<u64>().ok()),
                meta.name,
            ) else {
                continue;
            };
            if latest.get(name).is_none_or(|l| revision >= l.revision) {
                latest.insert(
                    name.clone(),
                    Latest {
                        revision,
                        record,
                        resource_version: meta.resource_version.unwrap_or_default(),
                    },
                );
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
        let read = match driver {
            HelmDriver::Secret => Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get_opt(record)
                .await
                .map(|s| s.and_then(|s| s.data?.remove("release")).map(|b| b.0)),
            HelmDriver::Configmap => Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .get_opt(record)
                .await
                .map(|c| {
                    c.and_then(|c| c.data?.remove("release"))
                        .map(String::into_bytes)
                }),
        };
        let bytes = match read {
            Ok(bytes) => bytes?,
            Err(e) => {
                tracing::warn!(%namespace, %record, error = %e, "history: cannot read a Helm release record");
                return None;
            }
        };
        match helm_release::decode(&bytes) {
            Ok(release) => Some(release),
            Err(e) => {
                tracing::warn!(%namespace, %record, error = %e, "history: cannot decode a Helm release record");
                None
            }
        }
    }
}

/// The latest record of a release.
struct Latest {
    revision: u64,
    record: String,
    resource_version: String,
}
