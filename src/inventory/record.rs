//! One hook object as the inventory keeps it: only what metrics, audit and janitor read, so memory
//! grows with the number of hooks and not with the size of their specs.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;

use super::attribution::{Attribution, attribute};
use crate::hook::{DELETE_POLICY_ANNOTATION, HOOK_ANNOTATION};
use crate::object::HOOK_LABEL;

/// Argo CD's finalizer on hooks it is running: such objects are never deleted by the janitor.
pub const ARGO_HOOK_FINALIZER: &str = "argocd.argoproj.io/hook-finalizer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Job,
    Pod,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Job => "Job",
            Kind::Pod => "Pod",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Active,
    Succeeded,
    Failed,
    /// Suspended Jobs, Pods in phase Unknown.
    Other,
}

impl State {
    pub const ALL: [State; 4] = [State::Active, State::Succeeded, State::Failed, State::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Other => "other",
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, State::Succeeded | State::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookRecord {
    pub namespace: String,
    pub name: String,
    pub kind: Kind,
    pub attribution: Attribution,
    /// Unix seconds.
    pub created: i64,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    pub state: State,
    pub has_delete_policy: bool,
    /// `spec.ttlSecondsAfterFinished` of a Job: Kubernetes deletes it by itself.
    pub ttl_seconds: Option<i32>,
    pub argo_finalizer: bool,
    /// Being deleted (deletionTimestamp set).
    pub deleting: bool,
    /// Carries hookguard's label (admitted through the webhook) rather than found by discovery.
    pub labeled: bool,
}

fn secs(t: &Option<Time>) -> Option<i64> {
    t.as_ref().map(|t| t.0.as_second())
}

/// The uid and the common fields, if `meta` is a hook's.
fn base(meta: &ObjectMeta, kind: Kind) -> Option<(String, HookRecord)> {
    let annotations = meta.annotations.as_ref()?;
    annotations.get(HOOK_ANNOTATION)?;
    let uid = meta.uid.clone()?;
    let record = HookRecord {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        kind,
        attribution: attribute(meta),
        created: secs(&meta.creation_timestamp).unwrap_or(0),
        started: None,
        finished: None,
        state: State::Other,
        has_delete_policy: annotations.contains_key(DELETE_POLICY_ANNOTATION),
        ttl_seconds: None,
        argo_finalizer: meta
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == ARGO_HOOK_FINALIZER),
        deleting: meta.deletion_timestamp.is_some(),
        labeled: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(HOOK_LABEL))
            .is_some_and(|v| v == "true"),
    };
    Some((uid, record))
}

/// A hook Job's record; `None` when the Job is no hook (or has no uid).
pub fn from_job(job: &Job) -> Option<(String, HookRecord)> {
    let (uid, mut r) = base(&job.metadata, Kind::Job)?;
    r.ttl_seconds = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    let status = job.status.as_ref();
    r.started = status.and_then(|s| secs(&s.start_time));
    let condition = |types: &[&str]| {
        status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| types.contains(&c.type_.as_str()) && c.status == "True")
    };
    if let Some(c) = condition(&["Complete"]) {
        r.state = State::Succeeded;
        r.finished = status
            .and_then(|s| secs(&s.completion_time))
            .or_else(|| secs(&c.last_transition_time));
    } else if let Some(c) = condition(&["Failed"]) {
        r.state = State::Failed;
        r.finished = secs(&c.last_transition_time);
    } else if suspended {
        r.state = State::Other;
    } else {
        r.state = State::Active;
    }
    Some((uid, r))
}

/// A hook Pod's record; `None` when the Pod is no hook.
pub fn from_pod(pod: &Pod) -> Option<(String, HookRecord)> {
    let (uid, mut r) = base(&pod.metadata, Kind::Pod)?;
    let status = pod.status.as_ref();
    r.started = status.and_then(|s| secs(&s.start_time));
    r.state = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") | Some("Running") => State::Active,
        Some("Succeeded") => State::Succeeded,
        Some("Failed") => State::Failed,
        _ => State::Other,
    };
    if r.state.finished() {
        // The last container to end; else when the Pod stopped being ready.
        let terminated = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .filter_map(|t| secs(&t.finished_at))
            .max();
        let ready_changed = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .and_then(|c| secs(&c.last_transition_time));
        r.finished = terminated
            .or(ready_changed)
            .or(r.started)
            .or(Some(r.created));
    }
    Some((uid, r))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A hook Job as the API server returns it after the Job controller ran it.
    pub fn job(name: &str, uid: &str, condition: Option<&str>, ttl: Option<i32>) -> Job {
        let mut status = json!({"startTime": "2026-11-20T10:00:05Z", "active": 1});
        if let Some(c) = condition {
            status = json!({
                "startTime": "2026-11-20T10:00:05Z",
                "completionTime": if c == "Complete" { json!("2026-11-20T10:01:05Z") } else { json!(null) },
                "conditions": [{"type": c, "status": "True", "lastTransitionTime": "2026-11-20T10:01:05Z"}],
                "succeeded": if c == "Complete" { 1 } else { 0 },
            });
        }
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {
                "name": name, "namespace": "shop", "uid": uid,
                "creationTimestamp": "2026-11-20T10:00:00Z",
                "labels": {"app.kubernetes.io/instance": "shop", "hookguard.io/hook": "true"},
                "annotations": {"helm.sh/hook": "pre-upgrade", "helm.sh/hook-delete-policy": "before-hook-creation"},
                "managedFields": [{"manager": "helm", "operation": "Update"}]
            },
            "spec": {
                "backoffLimit": 0, "ttlSecondsAfterFinished": ttl,
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "m:1"}]}}
            },
            "status": status
        }))
        .unwrap()
    }

    pub fn pod(name: &str, uid: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": "shop", "uid": uid,
                "creationTimestamp": "2026-11-20T10:00:00Z",
                "annotations": {"helm.sh/hook": "test"},
                "finalizers": ["argocd.argoproj.io/hook-finalizer"]
            },
            "spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "t:1"}]},
            "status": {
                "phase": phase, "startTime": "2026-11-20T10:00:02Z",
                "containerStatuses": [{
                    "name": "t", "image": "t:1", "imageID": "", "ready": false, "restartCount": 0,
                    "state": if phase == "Succeeded" {
                        json!({"terminated": {"exitCode": 0, "finishedAt": "2026-11-20T10:00:30Z"}})
                    } else { json!({"running": {}}) }
                }]
            }
        }))
        .unwrap()
    }

    const T0: i64 = 1_795_168_800; // 2026-11-20T10:00:00Z

    #[test]
    fn job_states_times_and_attribution() {
        let (uid, r) = from_job(&job("shop-migrate", "u1", None, None)).unwrap();
        assert_eq!(uid, "u1");
        assert_eq!(
            (r.state, r.started, r.finished),
            (State::Active, Some(T0 + 5), None)
        );
        assert_eq!(r.attribution.release.as_deref(), Some("shop"));
        assert!(r.labeled && r.has_delete_policy && !r.argo_finalizer);
        let (_, done) = from_job(&job("shop-migrate", "u1", Some("Complete"), Some(600))).unwrap();
        assert_eq!(
            (done.state, done.finished, done.ttl_seconds),
            (State::Succeeded, Some(T0 + 65), Some(600))
        );
        let (_, failed) = from_job(&job("shop-migrate", "u1", Some("Failed"), None)).unwrap();
        assert_eq!(
            (failed.state, failed.finished),
            (State::Failed, Some(T0 + 65))
        );
    }

    #[test]
    fn pod_states_and_the_argo_finalizer() {
        let (_, running) = from_pod(&pod("t", "p1", "Running")).unwrap();
        assert_eq!((running.state, running.finished), (State::Active, None));
        let (_, done) = from_pod(&pod("t", "p1", "Succeeded")).unwrap();
        assert_eq!(
            (done.state, done.finished),
            (State::Succeeded, Some(T0 + 30))
        );
        assert!(done.argo_finalizer && !done.labeled && !done.has_delete_policy);
        assert_eq!(done.attribution.release, None);
    }

    #[test]
    fn objects_without_the_hook_annotation_are_not_recorded() {
        let mut j = job("plain", "u2", None, None);
        j.metadata.annotations = None;
        assert!(from_job(&j).is_none());
    }
}
