//! HookPolicyExceptions (`hookguard.io/v1alpha1`, `--policy-exceptions`): watched in every
//! namespace, kept validated in memory, and handed to the engine with each review. Which
//! namespaces' exceptions count is the policy's decision (`exceptions.namespaces`), made per
//! request, so a policy reload applies at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt as _;
use kube::ResourceExt as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::policy::{Exception, ExceptionSpec};

/// The resource, as the chart's CRD defines it.
pub fn exception_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("hookguard.io", "v1alpha1", "HookPolicyException"),
        "hookpolicyexceptions",
    )
}

/// The valid exceptions that exist, swapped as a whole on every change.
#[derive(Clone, Default)]
pub struct ExceptionCache {
    current: Arc<ArcSwap<Vec<Exception>>>,
}

impl crate::server::PolicyExceptions for ExceptionCache {
    fn current(&self) -> Arc<Vec<Exception>> {
        self.current.load_full()
    }
}

impl ExceptionCache {
    /// Watches HookPolicyExceptions until `stop`, listing again after any watch error (for
    /// example while the CRD is not installed yet).
    pub async fn run(self, client: kube::Client, stop: CancellationToken) {
        let api: Api<DynamicObject> = Api::all_with(client, &exception_resource());
        let mut objects: BTreeMap<String, DynamicObject> = BTreeMap::new();
        let mut listing: BTreeMap<String, DynamicObject> = BTreeMap::new();
        let mut delay = Duration::from_millis(500);
        loop {
            let stream = watcher::watcher(api.clone(), watcher::Config::default());
            let mut stream = std::pin::pin!(stream);
            loop {
                let event = tokio::select! {
                    event = stream.next() => event,
                    _ = stop.cancelled() => return,
                };
                let changed = match event {
                    Some(Ok(watcher::Event::Init)) => {
                        listing.clear();
                        false
                    }
                    Some(Ok(watcher::Event::InitApply(o))) => {
                        listing.insert(key(&o), o);
                        false
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        objects = std::mem::take(&mut listing);
                        delay = Duration::from_millis(500);
                        true
                    }
                    Some(Ok(watcher::Event::Apply(o))) => {
                        objects.insert(key(&o), o);
                        true
                    }
                    Some(Ok(watcher::Event::Delete(o))) => {
                        objects.remove(&key(&o));
                        true
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "HookPolicyException watch failed (is the CRD installed?); listing again");
                        break;
                    }
                    None => break,
                };
                if changed {
                    self.current.store(Arc::new(
                        objects.values().filter_map(compile_exception).collect(),
                    ));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

fn key(o: &DynamicObject) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// The engine's form of one object; `None` (logged) when it is not valid, so a broken exception
/// never waives anything.
pub fn compile_exception(o: &DynamicObject) -> Option<Exception> {
    let (namespace, name) = (o.namespace().unwrap_or_default(), o.name_any());
    let spec: ExceptionSpec = match serde_json::from_value(o.data["spec"].clone()) {
        Ok(spec) => spec,
        Err(e) => {
            tracing::warn!(%namespace, %name, error = %e, "HookPolicyException ignored: spec does not parse");
            return None;
        }
    };
    let expires = match spec
        .expires
        .as_deref()
        .map(str::parse::<k8s_openapi::jiff::Timestamp>)
    {
        None => None,
        Some(Ok(t)) => Some(t.as_second()),
        Some(Err(e)) => {
            tracing::warn!(%namespace, %name, error = %e, "HookPolicyException ignored: spec.expires is not an RFC 3339 time");
            return None;
        }
    };
    match Exception::new(&namespace, &name, &spec, expires) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(%namespace, %name, error = %e, "HookPolicyException ignored");
            None
        }
    }
}
