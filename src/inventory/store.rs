//! The inventory's state: hook records by uid and Helm's release records, updated from watch
//! events, and what the metrics need computed from them. Pure: the caller passes the time.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::record::{HookRecord, Kind, State};

/// Counter updates an event causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Created {
        namespace: String,
        release: String,
    },
    Deleted {
        namespace: String,
        release: String,
    },
    /// A hook Job was seen finishing.
    JobFinished {
        namespace: String,
        outcome: State,
        /// startTime to finish, when both are known.
        seconds: Option<i64>,
    },
}

fn created(r: &HookRecord) -> Effect {
    Effect::Created {
        namespace: r.namespace.clone(),
        release: r.attribution.release_label().to_owned(),
    }
}

fn deleted(r: &HookRecord) -> Effect {
    Effect::Deleted {
        namespace: r.namespace.clone(),
        release: r.attribution.release_label().to_owned(),
    }
}

#[derive(Debug, Default)]
pub struct Inventory {
    hooks: HashMap<String, HookRecord>,
}

impl Inventory {
    pub fn len(&self) -> usize {
        self.hooks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    pub fn get(&self, uid: &str) -> Option<&HookRecord> {
        self.hooks.get(uid)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &HookRecord)> {
        self.hooks.iter()
    }

    /// Adds or updates a record. `count_new`: a record not known before counts as created (false
    /// while listing what existed before the inventory started).
    pub fn upsert(&mut self, uid: String, record: HookRecord, count_new: bool) -> Vec<Effect> {
        let mut effects = Vec::new();
        let previous = self.hooks.get(&uid);
        if previous.is_none() && count_new {
            effects.push(created(&record));
        }
        let was_finished = previous.map(|p| p.state.finished()).unwrap_or(!count_new);
        if record.kind == Kind::Job && record.state.finished() && !was_finished {
            effects.push(Effect::JobFinished {
                namespace: record.namespace.clone(),
                outcome: record.state,
                seconds: record
                    .finished
                    .zip(record.started)
                    .map(|(f, s)| (f - s).max(0)),
            });
        }
        self.hooks.insert(uid, record);
        effects
    }

    pub fn remove(&mut self, uid: &str) -> Vec<Effect> {
        self.hooks
            .remove(uid)
            .map(|r| deleted(&r))
            .into_iter()
            .collect()
    }

    /// Replaces the records of one source (a kind, labeled by hookguard or found by discovery)
    /// with a fresh listing: records no longer listed were deleted meanwhile.
    pub fn resync(
        &mut self,
        kind: Kind,
        labeled: bool,
        listed: Vec<(String, HookRecord)>,
        count: bool,
    ) -> Vec<Effect> {
        let listed_uids: HashSet<&String> = listed.iter().map(|(uid, _)| uid).collect();
        let gone: Vec<String> = self
            .hooks
            .iter()
            .filter(|(uid, r)| r.kind == kind && r.labeled == labeled && !listed_uids.contains(uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        let mut effects = Vec::new();
        for uid in gone {
            let removed = self.remove(&uid);
            if count {
                effects.extend(removed);
            }
        }
        for (uid, record) in listed {
            effects.extend(self.upsert(uid, record, count));
        }
        effects
    }
}

/// Where Helm keeps its release records (`HELM_DRIVER`). The `sql` and `memory` drivers keep
/// them outside the cluster: hookguard cannot see those releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum HelmDriver {
    /// Secrets labelled `owner=helm` (Helm's default).
    Secret,
    /// ConfigMaps labelled `owner=helm` (`HELM_DRIVER=configmap`).
    Configmap,
}

/// Helm's release records, by uid, with the driver each came from.
#[derive(Debug, Default)]
pub struct Releases {
    records: HashMap<String, ReleaseRecord>,
}

#[derive(Debug, Clone)]
struct ReleaseRecord {
    driver: HelmDriver,
    namespace: String,
    name: String,
    version: u64,
    status: String,
}

impl Releases {
    /// Records one release record from its labels (`name`, `version`, `status`).
    pub fn upsert(
        &mut self,
        driver: HelmDriver,
        uid: String,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) {
        let (Some(name), Some(version)) = (
            labels.get("name"),
            labels.get("version").and_then(|v| v.parse().ok()),
        ) else {
            return;
        };
        self.records.insert(
            uid,
            ReleaseRecord {
                driver,
                namespace: namespace.to_owned(),
                name: name.clone(),
                version,
                status: labels.get("status").cloned().unwrap_or_default(),
            },
        );
    }

    pub fn remove(&mut self, uid: &str) {
        self.records.remove(uid);
    }

    /// Forgets the records of one driver (before its fresh listing is recorded).
    pub fn clear(&mut self, driver: HelmDriver) {
        self.records.retain(|_, r| r.driver != driver);
    }

    /// What the records say. `complete`: records of every namespace are here (not only of the
    /// namespaces listed).
    pub fn known(&self, complete: bool) -> KnownReleases {
        let mut latest: HashMap<(&str, &str), &ReleaseRecord> = HashMap::new();
        for r in self.records.values() {
            let entry = latest.entry((&r.namespace, &r.name)).or_insert(r);
            if r.version > entry.version {
                *entry = r;
            }
        }
        let mut known = KnownReleases {
            complete,
            ..KnownReleases::default()
        };
        for ((ns, name), r) in latest {
            let key = (ns.to_owned(), name.to_owned());
            if r.status != "uninstalled" {
                known.installed_names.insert(key.1.clone());
                known.installed.insert(key.clone());
            }
            known.recorded.insert(key);
        }
        known
    }
}

/// The Helm releases that exist, as far as their records tell.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KnownReleases {
    /// `(namespace, release)` whose latest revision is not uninstalled.
    installed: HashSet<(String, String)>,
    /// Names of those, in any namespace.
    installed_names: HashSet<String>,
    /// `(namespace, release)` with any record (`helm uninstall --keep-history` leaves them).
    recorded: HashSet<(String, String)>,
    complete: bool,
}

/// Whether a hook's release is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseVerdict {
    Installed,
    Gone,
    /// A hook may live outside its release's namespace (a template can set any namespace), and
    /// the records do not say which release a hook came from: when a release of that name is
    /// installed elsewhere, or the namespaces seen do not include every one, no verdict.
    CannotTell,
}

impl KnownReleases {
    /// Every namespace listed, no release installed.
    #[cfg(test)]
    pub fn none_installed() -> Self {
        KnownReleases {
            complete: true,
            ..KnownReleases::default()
        }
    }

    /// For a hook of release `name` in `namespace`.
    pub fn verdict(&self, namespace: &str, name: &str) -> ReleaseVerdict {
        let key = (namespace.to_owned(), name.to_owned());
        if self.installed.contains(&key) {
            ReleaseVerdict::Installed
        } else if self.installed_names.contains(name) {
            ReleaseVerdict::CannotTell
        } else if self.complete || self.recorded.contains(&key) {
            ReleaseVerdict::Gone
        } else {
            ReleaseVerdict::CannotTell
        }
    }
}

/// Whether a hook's Helm release is gone. `known`: `None` when releases are not known (orphan
/// detection off or not synced), then nothing is called an orphan; nor is a hook whose verdict is
/// [`ReleaseVerdict::CannotTell`].
pub fn is_orphan(record: &HookRecord, known: Option<&KnownReleases>) -> bool {
    let (Some(known), Some(release)) = (known, record.attribution.release.as_ref()) else {
        return false;
    };
    record.attribution.is_helm_release()
        && known.verdict(&record.namespace, release) == ReleaseVerdict::Gone
}

/// The gauges' values.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub objects: BTreeMap<(String, Kind, State), i64>,
    pub oldest_finished_age: BTreeMap<String, i64>,
    pub orphans: BTreeMap<(String, Kind), i64>,
}

/// Computes the gauges at `now`. `namespace_label: false` folds every namespace into "".
pub fn summarize(
    inventory: &Inventory,
    known: Option<&KnownReleases>,
    now: i64,
    namespace_label: bool,
) -> Summary {
    let mut s = Summary::default();
    for r in inventory.hooks.values() {
        let ns = if namespace_label {
            r.namespace.clone()
        } else {
            String::new()
        };
        *s.objects.entry((ns.clone(), r.kind, r.state)).or_default() += 1;
        if let (true, Some(finished)) = (r.state.finished(), r.finished) {
            let age = (now - finished).max(0);
            let oldest = s.oldest_finished_age.entry(ns.clone()).or_default();
            *oldest = (*oldest).max(age);
        }
        if is_orphan(r, known) {
            *s.orphans.entry((ns, r.kind)).or_default() += 1;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::record::from_job;
    use crate::inventory::record::tests::job;

    fn rec(condition: Option<&str>) -> (String, HookRecord) {
        from_job(&job("shop-migrate", "u1", condition, None)).unwrap()
    }

    #[test]
    fn existing_objects_are_not_churn_but_new_ones_and_their_end_are() {
        let mut inv = Inventory::default();
        let (uid, r) = rec(Some("Complete"));
        assert!(
            inv.upsert(uid.clone(), r, false).is_empty(),
            "listing at start counts nothing"
        );
        let mut inv = Inventory::default();
        let (uid, active) = rec(None);
        assert_eq!(
            inv.upsert(uid.clone(), active.clone(), true),
            vec![Effect::Created {
                namespace: "shop".into(),
                release: "shop".into()
            }]
        );
        assert!(
            inv.upsert(uid.clone(), active, true).is_empty(),
            "an update is no creation"
        );
        let (_, done) = rec(Some("Failed"));
        assert_eq!(
            inv.upsert(uid.clone(), done.clone(), true),
            vec![Effect::JobFinished {
                namespace: "shop".into(),
                outcome: State::Failed,
                seconds: Some(60)
            }]
        );
        assert!(
            inv.upsert(uid.clone(), done, true).is_empty(),
            "finishing is counted once"
        );
        assert_eq!(
            inv.remove(&uid),
            vec![Effect::Deleted {
                namespace: "shop".into(),
                release: "shop".into()
            }]
        );
        assert!(inv.remove(&uid).is_empty());
    }

    #[test]
    fn a_resync_removes_what_is_gone_only_from_its_own_source() {
        let mut inv = Inventory::default();
        let (_, labeled) = rec(None);
        let mut discovered = labeled.clone();
        discovered.labeled = false;
        inv.upsert("a".into(), labeled.clone(), false);
        inv.upsert("b".into(), labeled, false);
        inv.upsert("c".into(), discovered, false);
        let (_, b) = rec(None);
        let effects = inv.resync(Kind::Job, true, vec![("b".into(), b)], true);
        assert_eq!(
            effects,
            vec![Effect::Deleted {
                namespace: "shop".into(),
                release: "shop".into()
            }]
        );
        assert!(inv.get("a").is_none() && inv.get("b").is_some() && inv.get("c").is_some());
    }

    fn release_labels(name: &str, version: &str, status: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("name".to_owned(), name.to_owned()),
            ("owner".to_owned(), "helm".to_owned()),
            ("version".to_owned(), version.to_owned()),
            ("status".to_owned(), status.to_owned()),
        ])
    }

    #[test]
    fn releases_are_live_until_their_latest_revision_is_uninstalled() {
        let mut rel = Releases::default();
        rel.upsert(
            HelmDriver::Secret,
            "s1".into(),
            "shop",
            &release_labels("shop", "1", "superseded"),
        );
        rel.upsert(
            HelmDriver::Secret,
            "s2".into(),
            "shop",
            &release_labels("shop", "2", "deployed"),
        );
        let (_, r) = rec(Some("Complete"));
        assert_eq!(
            rel.known(true).verdict("shop", "shop"),
            ReleaseVerdict::Installed
        );
        assert!(!is_orphan(&r, Some(&rel.known(true))));
        assert!(!is_orphan(&r, None), "unknown releases: never an orphan");
        // `helm uninstall --keep-history` leaves the records, the latest one uninstalled: gone
        // even when only this namespace was listed.
        rel.upsert(
            HelmDriver::Secret,
            "s2".into(),
            "shop",
            &release_labels("shop", "2", "uninstalled"),
        );
        assert!(is_orphan(&r, Some(&rel.known(true))));
        assert!(is_orphan(&r, Some(&rel.known(false))));
        // Plain `helm uninstall` deletes them all: gone, if every namespace's records were seen.
        rel.remove("s1");
        rel.remove("s2");
        assert!(is_orphan(&r, Some(&rel.known(true))));
        assert_eq!(
            rel.known(false).verdict("shop", "shop"),
            ReleaseVerdict::CannotTell
        );
        assert!(!is_orphan(&r, Some(&rel.known(false))));
    }

    #[test]
    fn configmap_records_count_like_secrets_and_relisting_one_driver_keeps_the_other() {
        let mut rel = Releases::default();
        rel.upsert(
            HelmDriver::Configmap,
            "c1".into(),
            "shop",
            &release_labels("shop", "1", "deployed"),
        );
        rel.upsert(
            HelmDriver::Secret,
            "s1".into(),
            "web",
            &release_labels("web", "3", "deployed"),
        );
        let (_, r) = rec(Some("Complete"));
        assert!(
            !is_orphan(&r, Some(&rel.known(true))),
            "a HELM_DRIVER=configmap release is installed"
        );
        rel.clear(HelmDriver::Secret);
        assert_eq!(
            rel.known(true).verdict("shop", "shop"),
            ReleaseVerdict::Installed
        );
        assert_eq!(rel.known(true).verdict("web", "web"), ReleaseVerdict::Gone);
        rel.clear(HelmDriver::Configmap);
        assert!(is_orphan(&r, Some(&rel.known(true))));
    }

    #[test]
    fn a_hook_outside_its_releases_namespace_is_never_an_orphan() {
        // Release `shop` lives in `apps`; its template put a hook into namespace `shop`.
        let mut rel = Releases::default();
        rel.upsert(
            HelmDriver::Secret,
            "s1".into(),
            "apps",
            &release_labels("shop", "1", "deployed"),
        );
        let (_, r) = rec(Some("Complete"));
        assert_eq!(r.namespace, "shop");
        assert_eq!(
            rel.known(true).verdict("shop", "shop"),
            ReleaseVerdict::CannotTell
        );
        assert!(!is_orphan(&r, Some(&rel.known(true))));
        // Also when the hook's namespace kept an uninstalled revision of a release of that name.
        rel.upsert(
            HelmDriver::Secret,
            "s2".into(),
            "shop",
            &release_labels("shop", "4", "uninstalled"),
        );
        assert!(!is_orphan(&r, Some(&rel.known(true))));
        // Once no release of that name is installed anywhere, it is an orphan.
        rel.remove("s1");
        assert!(is_orphan(&r, Some(&rel.known(true))));
    }

    #[test]
    fn summary_counts_states_oldest_finished_and_orphans() {
        let mut inv = Inventory::default();
        let (_, active) = rec(None);
        let (_, done) = rec(Some("Complete"));
        inv.upsert("a".into(), active, false);
        inv.upsert("b".into(), done.clone(), false);
        let now = done.finished.unwrap() + 100;
        let s = summarize(&inv, Some(&KnownReleases::none_installed()), now, true);
        assert_eq!(
            s.objects.get(&("shop".into(), Kind::Job, State::Active)),
            Some(&1)
        );
        assert_eq!(
            s.objects.get(&("shop".into(), Kind::Job, State::Succeeded)),
            Some(&1)
        );
        assert_eq!(s.oldest_finished_age.get("shop"), Some(&100));
        assert_eq!(s.orphans.get(&("shop".into(), Kind::Job)), Some(&2));
        let folded = summarize(&inv, None, now, false);
        assert_eq!(
            folded
                .objects
                .get(&(String::new(), Kind::Job, State::Active)),
            Some(&1)
        );
        assert!(folded.orphans.is_empty());
    }
}
