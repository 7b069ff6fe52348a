//! The history records: one Secret per release in hookguard's namespace, labelled
//! `hookguard.io/history=true`, its `history.json` key a [`ReleaseHistory`]. Written with the
//! record's resourceVersion (a conflicting writer makes this one read again), and at most
//! [`Bounds::releases`] of them: creating one more deletes the least recently written.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::record::{Bounds, HookRun, ReleaseHistory, record_name};

pub const HISTORY_LABEL: &str = "hookguard.io/history";
/// When the record was last written (Unix seconds), for evicting the least recently written.
const UPDATED_ANNOTATION: &str = "hookguard.io/updated";
const DATA_KEY: &str = "history.json";
const SECRET_TYPE: &str = "hookguard.io/hook-history";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("record {0} changed under every attempt to write it")]
    Conflicts(String),
    #[error("record {name} holds no readable history: {source}")]
    Unreadable {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

pub struct Store {
    api: Api<Secret>,
    bounds: Bounds,
}

impl Store {
    pub fn new(client: kube::Client, namespace: &str, bounds: Bounds) -> Self {
        Store {
            api: Api::namespaced(client, namespace),
            bounds,
        }
    }

    /// Merges `runs` into the release's record.
    pub async fn record(
        &self,
        namespace: &str,
        release: &str,
        runs: &[HookRun],
    ) -> Result<(), StoreError> {
        let name = record_name(namespace, release);
        for _ in 0..4 {
            let existing = self.api.get_opt(&name).await?;
            let created = existing.is_none();
            let mut secret = existing.unwrap_or_else(|| Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([
                        (HISTORY_LABEL.to_owned(), "true".to_owned()),
                        (
                            "app.kubernetes.io/managed-by".to_owned(),
                            "hookguard".to_owned(),
                        ),
                    ])),
                    ..ObjectMeta::default()
                },
                type_: Some(SECRET_TYPE.to_owned()),
                ..Secret::default()
            });
            // A record that cannot be read (edited by hand) is started again, not kept failing.
            let mut history = parse(&name, &secret).unwrap_or_default();
            history.namespace = namespace.to_owned();
            history.release = release.to_owned();
            for run in runs {
                history.record(run, &self.bounds);
            }
            let json = serde_json::to_vec(&history).map_err(|source| StoreError::Unreadable {
                name: name.clone(),
                source,
            })?;
            secret
                .data
                .get_or_insert_with(BTreeMap::new)
                .insert(DATA_KEY.to_owned(), ByteString(json));
            secret
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(
                    UPDATED_ANNOTATION.to_owned(),
                    time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
                );
            let written = if created {
                self.api.create(&PostParams::default(), &secret).await
            } else {
                self.api
                    .replace(&name, &PostParams::default(), &secret)
                    .await
            };
            match written {
                Ok(_) => {
                    if created {
                        self.evict().await?;
                    }
                    return Ok(());
                }
                // Someone else wrote (or created) it in between: read it again.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflicts(name))
    }

    /// Deletes the least recently written records beyond the bound.
    async fn evict(&self) -> Result<(), StoreError> {
        let listed = self
            .api
            .list_metadata(&ListParams::default().labels(&format!("{HISTORY_LABEL}=true")))
            .await?;
        let excess = listed.items.len().saturating_sub(self.bounds.releases);
        if excess == 0 {
            return Ok(());
        }
        let mut by_age: Vec<(i64, String)> = listed
            .items
            .into_iter()
            .filter_map(|m| {
                let updated = m
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(UPDATED_ANNOTATION))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Some((updated, m.metadata.name?))
            })
            .collect();
        by_age.sort();
        for (_, name) in by_age.into_iter().take(excess) {
            tracing::info!(record = %name, bound = self.bounds.releases, "history: deleting the least recently written release record");
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn parse(name: &str, secret: &Secret) -> Result<ReleaseHistory, StoreError> {
    match secret.data.as_ref().and_then(|d| d.get(DATA_KEY)) {
        None => Ok(ReleaseHistory::default()),
        Some(bytes) => serde_json::from_slice(&bytes.0).map_err(|source| StoreError::Unreadable {
            name: name.to_owned(),
            source,
        }),
    }
}

/// The stored history of a release (`hookguard history`), `None` when nothing was recorded.
pub async fn load(
    client: &kube::Client,
    hookguard_namespace: &str,
    namespace: &str,
    release: &str,
) -> Result<Option<ReleaseHistory>, StoreError> {
    let name = record_name(namespace, release);
    let api: Api<Secret> = Api::namespaced(client.clone(), hookguard_namespace);
    match api.get_opt(&name).await? {
        None => Ok(None),
        Some(secret) => parse(&name, &secret).map(Some),
    }
}
