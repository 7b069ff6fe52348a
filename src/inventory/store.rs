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

/// Helm's release records (Secrets labelled `owner=helm`), by uid.
#[derive(Debug, Default)]
pub struct Releases {
    records: HashMap<String, ReleaseRecord>,
}

#[derive(Debug, Clone)]
struct ReleaseRecord {
    namespace: String,
    name: String,
    version: u64,
    status: String,
}

impl Releases {
    /// Records one release Secret from its labels (`name`, `version`, `status`).
    pub fn upsert(&mut self, uid: String, namespace: &str, labels: &BTreeMap<String, String>) {
        let (Some(name), Some(version)) = (
            labels.get("name"),
            labels.get("version").and_then(|v| v.parse().ok()),
        ) else {
            return;
        };
        self.records.insert(
            uid,
            ReleaseRecord {
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

    pub fn clear(&mut self) {
        self.records.clear();
    }

    /// `(namespace, release)` of every release whose latest revision is not uninstalled.
    pub fn live(&self) -> HashSet<(String, String)> {
        let mut latest: HashMap<(&str, &str), &ReleaseRecord> = HashMap::new();
        for r in self.records.values() {
            let entry = latest.entry((&r.namespace, &r.name)).or_insert(r);
            if r.version > entry.version {
                *entry = r;
            }
        }
        latest
            .into_iter()
            .filter(|(_, r)| r.status != "uninstalled")
            .map(|((ns, name), _)| (ns.to_owned(), name.to_owned()))
            .collect()
    }
}

/// Whether a hook's Helm release is gone. `live`: `None` when releases are not known (orphan
/// detection off or not synced), then nothing is called an orphan.
pub fn is_orphan(record: &HookRecord, live: Option<&HashSet<(String, String)>>) -> bool {
    let (Some(live), Some(release)) = (live, record.attribution.release.as_ref()) else {
        return false;
    };
    record.attribution.is_helm_release()
        && !live.contains(&(record.namespace.clone(), release.clone()))
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
    live: Option<&HashSet<(String, String)>>,
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
        if is_orphan(r, live) {
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

    #[test]
    fn releases_are_live_until_their_latest_revision_is_uninstalled() {
        let labels = |version: &str, status: &str| {
            BTreeMap::from([
                ("name".to_owned(), "shop".to_owned()),
                ("owner".to_owned(), "helm".to_owned()),
                ("version".to_owned(), version.to_owned()),
                ("status".to_owned(), status.to_owned()),
            ])
        };
        let mut rel = Releases::default();
        rel.upsert("s1".into(), "shop", &labels("1", "superseded"));
        rel.upsert("s2".into(), "shop", &labels("2", "deployed"));
        let key = ("shop".to_owned(), "shop".to_owned());
        assert!(rel.live().contains(&key));
        let (_, r) = rec(Some("Complete"));
        assert!(!is_orphan(&r, Some(&rel.live())));
        assert!(!is_orphan(&r, None), "unknown releases: never an orphan");
        // `helm uninstall --keep-history` leaves the records, the latest one uninstalled.
        rel.upsert("s2".into(), "shop", &labels("2", "uninstalled"));
        assert!(is_orphan(&r, Some(&rel.live())));
        // Plain `helm uninstall` deletes them all.
        rel.remove("s1");
        rel.remove("s2");
        assert!(is_orphan(&r, Some(&rel.live())));
    }

    #[test]
    fn summary_counts_states_oldest_finished_and_orphans() {
        let mut inv = Inventory::default();
        let (_, active) = rec(None);
        let (_, done) = rec(Some("Complete"));
        inv.upsert("a".into(), active, false);
        inv.upsert("b".into(), done.clone(), false);
        let now = done.finished.unwrap() + 100;
        let s = summarize(&inv, Some(&HashSet::new()), now, true);
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
