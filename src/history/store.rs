//! The history records: one HookRunHistory (hookguard.io/v1alpha1, the chart's CRD) per release
//! in hookguard's namespace, its `spec` a [`ReleaseHistory`]. A resource of its own, so the
//! controller's write access reaches nothing else there (not the webhook's certificate Secret,
//! not the policy ConfigMap). Written with the record's resourceVersion (a conflicting writer
//! makes this one read again), and at most [`Bounds::releases`] of them: creating one more
//! deletes the least recently written.

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};

use super::record::{Bounds, HookRun, ReleaseHistory, record_name};

pub const HISTORY_LABEL: &str = "hookguard.io/history";
/// When the record was last written (Unix seconds), for evicting the least recently written.
const UPDATED_ANNOTATION: &str = "hookguard.io/updated";

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("hookguard.io", "v1alpha1", "HookRunHistory"),
        "hookrunhistories",
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the HookRunHistory CRD (charts/hookguard/crds/hookrunhistories.yaml) is not installed"
    )]
    NoCrd,
    #[error(transparent)]
    Api(kube::Error),
    #[error("record {0} changed under every attempt to write it")]
    Conflicts(String),
    #[error("record {name} holds no readable history: {source}")]
    Unreadable {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

impl From<kube::Error> for StoreError {
    fn from(e: kube::Error) -> Self {
        match &e {
            // The API server answers 404 for the whole resource type when the CRD is missing.
            kube::Error::Api(s)
                if s.code == 404
                    && s.reason == "NotFound"
                    && s.message
                        .contains("the server could not find the requested resource") =>
            {
                StoreError::NoCrd
            }
            _ => StoreError::Api(e),
        }
    }
}

pub struct Store {
    api: Api<DynamicObject>,
    bounds: Bounds,
}

impl Store {
    pub fn new(client: kube::Client, namespace: &str, bounds: Bounds) -> Self {
        Store {
            api: Api::namespaced_with(client, namespace, &resource()),
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
            let mut object = existing.unwrap_or_else(|| {
                let mut o = DynamicObject::new(&name, &resource());
                o.metadata.labels = Some(
                    [
                        (HISTORY_LABEL.to_owned(), "true".to_owned()),
                        (
                            "app.kubernetes.io/managed-by".to_owned(),
                            "hookguard".to_owned(),
                        ),
                    ]
                    .into(),
                );
                o
            });
            // A record that cannot be read (edited by hand) is started again, not kept failing.
            let mut history = parse(&name, &object).unwrap_or_default();
            history.namespace = namespace.to_owned();
            history.release = release.to_owned();
            history.record(runs, &self.bounds);
            object.data = serde_json::json!({ "spec": history });
            object
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    UPDATED_ANNOTATION.to_owned(),
                    time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
                );
            let written = if created {
                self.api.create(&PostParams::default(), &object).await
            } else {
                self.api
                    .replace(&name, &PostParams::default(), &object)
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

fn parse(name: &str, object: &DynamicObject) -> Result<ReleaseHistory, StoreError> {
    match object.data.get("spec") {
        None => Ok(ReleaseHistory::default()),
        Some(spec) => {
            serde_json::from_value(spec.clone()).map_err(|source| StoreError::Unreadable {
                name: name.to_owned(),
                source,
            })
        }
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
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), hookguard_namespace, &resource());
    match api.get_opt(&name).await? {
        None => Ok(None),
        Some(object) => parse(&name, &object).map(Some),
    }
}
