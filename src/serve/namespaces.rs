//! The labels of Namespaces, for policy `overrides` with a `namespaceSelector`
//! (`--namespace-labels`): a metadata-only watch of every Namespace keeps their labels in memory
//! (names and labels only), and a namespace the watch has not delivered yet is read directly,
//! bounded in time (`helm install --create-namespace` creates hooks right after their namespace).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt as _;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::metrics::NamespaceMetrics;
use crate::policy::Labels;
use crate::server::NamespaceLabels;

/// How long a request waits for a direct read of a namespace the watch has not delivered.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Namespace labels by name, kept current by [`NamespaceLabelCache::run`].
#[derive(Clone)]
pub struct NamespaceLabelCache {
    api: Api<PartialObjectMeta<Namespace>>,
    labels: Arc<RwLock<HashMap<String, Labels>>>,
    metrics: NamespaceMetrics,
}

impl NamespaceLabelCache {
    pub fn new(client: kube::Client, metrics: NamespaceMetrics) -> Self {
        NamespaceLabelCache {
            api: Api::all(client),
            labels: Arc::default(),
            metrics,
        }
    }

    fn set(&self, meta: &PartialObjectMeta<Namespace>) {
        if let Ok(mut map) = self.labels.write() {
            map.insert(meta.name_any(), meta.labels().clone());
        }
    }

    /// Watches Namespaces until `stop`, listing again after any watch error.
    pub async fn run(self, stop: CancellationToken) {
        let mut listing = HashMap::new();
        let mut delay = Duration::from_millis(500);
        loop {
            let stream = watcher::watcher(self.api.clone(), watcher::Config::default());
            let mut stream = std::pin::pin!(stream);
            loop {
                let event = tokio::select! {
                    event = stream.next() => event,
                    _ = stop.cancelled() => return,
                };
                match event {
                    Some(Ok(watcher::Event::Init)) => listing.clear(),
                    Some(Ok(watcher::Event::InitApply(meta))) => {
                        listing.insert(meta.name_any(), meta.labels().clone());
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        if let Ok(mut map) = self.labels.write() {
                            *map = std::mem::take(&mut listing);
                        }
                        delay = Duration::from_millis(500);
                    }
                    Some(Ok(watcher::Event::Apply(meta))) => self.set(&meta),
                    Some(Ok(watcher::Event::Delete(meta))) => {
                        if let Ok(mut map) = self.labels.write() {
                            map.remove(&meta.name_any());
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "Namespace watch failed; listing again");
                        break;
                    }
                    None => break,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    async fn lookup(&self, namespace: &str) -> Option<Labels> {
        let cached = self
            .labels
            .read()
            .ok()
            .and_then(|map| map.get(namespace).cloned());
        if cached.is_some() {
            self.metrics.record("cached");
            return cached;
        }
        match tokio::time::timeout(READ_TIMEOUT, self.api.get_opt(namespace)).await {
            Ok(Ok(Some(meta))) => {
                self.set(&meta);
                self.metrics.record("read");
                Some(meta.labels().clone())
            }
            outcome => {
                let error = match outcome {
                    Ok(Ok(_)) => "not found".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {READ_TIMEOUT:?}"),
                };
                tracing::warn!(%namespace, %error, "namespace labels unknown: no namespaceSelector of the policy matches it");
                self.metrics.record("unknown");
                None
            }
        }
    }
}

impl NamespaceLabels for NamespaceLabelCache {
    fn labels<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Option<Labels>> {
        Box::pin(self.lookup(namespace))
    }
}
