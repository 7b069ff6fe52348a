//! Every round (2 s): the gauges recomputed from the inventory, and, when due, the janitor's
//! deletions (or dry-run reports).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};

use super::record::{Kind, State};
use super::store::HelmDriver;
use super::{Labels, SharedRef, janitor, lock, now, store};
use crate::metrics::{
    HookObjectLabels, InventoryMetrics, JanitorLabels, NamespaceKindLabels, NamespaceLabels,
};

/// Label sets of the gauges set last time, to remove series that disappeared.
#[derive(Default)]
pub(super) struct PreviousSeries {
    pub(super) objects: HashSet<HookObjectLabels>,
    pub(super) oldest: HashSet<NamespaceLabels>,
    pub(super) orphans: HashSet<NamespaceKindLabels>,
}

pub(super) struct Janitor {
    pub(super) client: kube::Client,
    /// With --events: records each deletion.
    pub(super) events: Option<kube::runtime::events::Recorder>,
    pub(super) policy: janitor::JanitorPolicy,
    pub(super) dry_run: bool,
    pub(super) interval: Duration,
    /// Dry run: uids already reported, so each is counted once.
    pub(super) reported: HashSet<String>,
    pub(super) last: Option<tokio::time::Instant>,
}

pub(super) struct Refresher {
    pub(super) shared: SharedRef,
    pub(super) metrics: InventoryMetrics,
    pub(super) labels: Arc<Labels>,
    /// The drivers orphan detection watches (none: orphan detection is off).
    pub(super) helm_drivers: BTreeSet<HelmDriver>,
    pub(super) janitor: Option<Janitor>,
    pub(super) previous: PreviousSeries,
}

/// A deletion to make, copied out of the lock.
pub(super) struct Doomed {
    pub(super) uid: String,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) reason: janitor::Reason,
}

impl Refresher {
    pub(super) async fn refresh(&mut self) {
        let now = now();
        let janitor_due = self
            .janitor
            .as_ref()
            .is_some_and(|j| j.last.is_none_or(|last| last.elapsed() >= j.interval));
        let (summary, synced, doomed) = {
            let s = lock(&self.shared);
            let synced = s.jobs_synced && s.pods_synced;
            let orphan_detection = !self.helm_drivers.is_empty();
            let releases_known =
                orphan_detection && s.releases_synced.is_superset(&self.helm_drivers);
            // The watches are cluster-wide: every namespace's records are here.
            let known = releases_known.then(|| s.releases.known(true));
            let summary =
                store::summarize(&s.inventory, known.as_ref(), now, self.labels.namespace);
            let doomed: Vec<Doomed> = match (&self.janitor, janitor_due && synced) {
                (Some(j), true) => janitor::select(&s.inventory, known.as_ref(), now, &j.policy)
                    .into_iter()
                    // Orphans are only told apart once releases are known; until then wait.
                    .filter(|_| releases_known || !orphan_detection)
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
                j.remove(d, &self.metrics, &self.labels).await;
            }
        }
    }

    fn set_gauges(&mut self, summary: store::Summary, synced: bool) {
        let m = &self.metrics;
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
    async fn remove(&mut self, d: Doomed, metrics: &InventoryMetrics, labels: &Labels) {
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
                if let Some(events) = &self.events {
                    let (api_version, kind) = match d.kind {
                        Kind::Job => ("batch/v1", "Job"),
                        Kind::Pod => ("v1", "Pod"),
                    };
                    let reference = k8s_openapi::api::core::v1::ObjectReference {
                        api_version: Some(api_version.to_owned()),
                        kind: Some(kind.to_owned()),
                        name: Some(d.name.clone()),
                        namespace: Some(d.namespace.clone()),
                        uid: Some(d.uid.clone()),
                        ..Default::default()
                    };
                    let event = kube::runtime::events::Event {
                        type_: kube::runtime::events::EventType::Normal,
                        reason: "HookDeleted".into(),
                        note: Some(format!(
                            "hookguard's janitor deleted this finished hook {kind} ({}): nothing else would have",
                            d.reason.as_str()
                        )),
                        action: "Delete".into(),
                        secondary: None,
                    };
                    if let Err(e) = events.publish(&event, &reference).await {
                        tracing::warn!(namespace = %d.namespace, name = %d.name, error = %e, "janitor: cannot record the deletion's Event");
                    }
                }
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
