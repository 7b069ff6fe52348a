//! Which hook objects the janitor removes: finished ones, older than the configured age, in a
//! namespace that opted in, that Kubernetes will never clean by itself (Pods; Jobs without
//! `ttlSecondsAfterFinished`). Running hooks, objects being deleted and objects carrying Argo CD's
//! hook finalizer are never selected. Pure: the shell deletes (or, in dry-run mode, reports).

use wildmatch::WildMatch;

use super::record::{HookRecord, Kind};
use super::store::{Inventory, KnownReleases, is_orphan};

#[derive(Debug, Clone)]
pub struct JanitorPolicy {
    /// Namespace globs that opted in.
    pub namespaces: Vec<WildMatch>,
    /// Seconds a hook must have been finished.
    pub min_age: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Finished and never cleaned by Kubernetes.
    Finished,
    /// Finished, and its Helm release is gone.
    Orphaned,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Finished => "finished",
            Reason::Orphaned => "orphaned",
        }
    }
}

#[derive(Debug)]
pub struct Candidate<'a> {
    pub uid: &'a str,
    pub record: &'a HookRecord,
    pub reason: Reason,
}

/// Kubernetes removes finished Jobs with a TTL by itself; Pods never.
fn cleaned_by_kubernetes(r: &HookRecord) -> bool {
    r.kind == Kind::Job && r.ttl_seconds.is_some()
}

pub fn select<'a>(
    inventory: &'a Inventory,
    known: Option<&KnownReleases>,
    now: i64,
    policy: &JanitorPolicy,
) -> Vec<Candidate<'a>> {
    let mut out: Vec<Candidate<'a>> = inventory
        .iter()
        .filter(|(_, r)| {
            r.state.finished()
                && !r.deleting
                && !r.argo_finalizer
                && !cleaned_by_kubernetes(r)
                && r.finished.is_some_and(|f| now - f >= policy.min_age)
                && policy.namespaces.iter().any(|g| g.matches(&r.namespace))
        })
        .map(|(uid, r)| Candidate {
            uid,
            record: r,
            reason: if is_orphan(r, known) {
                Reason::Orphaned
            } else {
                Reason::Finished
            },
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.record.namespace, &a.record.name).cmp(&(&b.record.namespace, &b.record.name))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::record::tests::{job, pod};
    use crate::inventory::record::{from_job, from_pod};

    fn policy(glob: &str) -> JanitorPolicy {
        JanitorPolicy {
            namespaces: vec![WildMatch::new(glob)],
            min_age: 3600,
        }
    }

    #[test]
    fn selects_only_old_finished_hooks_kubernetes_leaves_behind() {
        let mut inv = Inventory::default();
        let add = |inv: &mut Inventory, (uid, r): (String, HookRecord)| {
            inv.upsert(uid, r, false);
        };
        add(
            &mut inv,
            from_job(&job("done-no-ttl", "j1", Some("Complete"), None)).unwrap(),
        );
        add(
            &mut inv,
            from_job(&job("done-ttl", "j2", Some("Complete"), Some(600))).unwrap(),
        );
        add(
            &mut inv,
            from_job(&job("running", "j3", None, None)).unwrap(),
        );
        add(
            &mut inv,
            from_job(&job("failed", "j4", Some("Failed"), None)).unwrap(),
        );
        // Finished, but Argo CD's finalizer is on it.
        add(
            &mut inv,
            from_pod(&pod("argo-test", "p1", "Succeeded")).unwrap(),
        );
        let mut plain = from_pod(&pod("test", "p2", "Succeeded")).unwrap();
        plain.1.argo_finalizer = false;
        add(&mut inv, plain);
        let mut deleting = from_pod(&pod("going", "p3", "Succeeded")).unwrap();
        deleting.1.argo_finalizer = false;
        deleting.1.deleting = true;
        add(&mut inv, deleting);

        let finished = inv.get("j1").unwrap().finished.unwrap();
        fn names(c: &[Candidate]) -> Vec<(String, Reason)> {
            c.iter()
                .map(|c| (c.record.name.clone(), c.reason))
                .collect()
        }
        // Too young.
        assert!(select(&inv, None, finished + 10, &policy("*")).is_empty());
        let now = finished + 3600;
        assert_eq!(
            names(&select(&inv, None, now, &policy("sh*"))),
            vec![
                ("done-no-ttl".to_owned(), Reason::Finished),
                ("failed".to_owned(), Reason::Finished),
                ("test".to_owned(), Reason::Finished)
            ]
        );
        // The release is gone: the shop hooks are orphans (the test Pod has no release label).
        let orphaned = select(
            &inv,
            Some(&KnownReleases::none_installed()),
            now,
            &policy("shop"),
        );
        assert_eq!(
            names(&orphaned),
            vec![
                ("done-no-ttl".to_owned(), Reason::Orphaned),
                ("failed".to_owned(), Reason::Orphaned),
                ("test".to_owned(), Reason::Finished)
            ]
        );
        // A namespace that did not opt in.
        assert!(select(&inv, None, now, &policy("other-*")).is_empty());
    }
}
