//! `hookguard audit`: hook objects by namespace and release with their state, age and problems.
//! Pure: the command lists the objects (see [`crate::inventory::snapshot`]) and passes the time.

use serde::Serialize;

use crate::inventory::attribution::Source;
use crate::inventory::record::{Kind, State};
use crate::inventory::store::{Inventory, KnownReleases, is_orphan};

/// One hook object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub namespace: String,
    /// The Helm release, or `unknown`.
    pub release: String,
    pub release_source: Source,
    pub kind: Kind,
    pub name: String,
    pub state: State,
    pub age_seconds: i64,
    /// Seconds since it finished (succeeded or failed).
    pub finished_seconds_ago: Option<i64>,
    /// `failed`, `finished-long-ago`, `no-delete-policy`, `orphaned`.
    pub problems: Vec<&'static str>,
}

/// The rows, sorted by namespace, release, kind and name. `known`: the Helm releases that exist
/// (`None` when unknown: then nothing is reported orphaned).
pub fn rows(
    inventory: &Inventory,
    known: Option<&KnownReleases>,
    now: i64,
    older_than_seconds: i64,
) -> Vec<AuditRow> {
    let mut rows: Vec<AuditRow> = inventory
        .iter()
        .map(|(_, r)| {
            let finished_ago = r
                .finished
                .filter(|_| r.state.finished())
                .map(|f| (now - f).max(0));
            let mut problems = Vec::new();
            if r.state == State::Failed {
                problems.push("failed");
            }
            if finished_ago.is_some_and(|a| a >= older_than_seconds) {
                problems.push("finished-long-ago");
            }
            if !r.has_delete_policy {
                problems.push("no-delete-policy");
            }
            if is_orphan(r, known) {
                problems.push("orphaned");
            }
            AuditRow {
                namespace: r.namespace.clone(),
                release: r.attribution.release_label().to_owned(),
                release_source: r.attribution.source,
                kind: r.kind,
                name: r.name.clone(),
                state: r.state,
                age_seconds: (now - r.created).max(0),
                finished_seconds_ago: finished_ago,
                problems,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.namespace, &a.release, a.kind, &a.name).cmp(&(
            &b.namespace,
            &b.release,
            b.kind,
            &b.name,
        ))
    });
    rows
}

/// `kubectl`-style short age: 45s, 12m, 5h, 3d.
pub fn short_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// An aligned table with a header; "No hook objects found." when empty.
pub fn render_table(rows: &[AuditRow]) -> String {
    if rows.is_empty() {
        return "No hook objects found.\n".to_owned();
    }
    let header = [
        "NAMESPACE",
        "RELEASE",
        "KIND",
        "NAME",
        "STATE",
        "AGE",
        "PROBLEMS",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.namespace.clone(),
                r.release.clone(),
                r.kind.as_str().to_owned(),
                r.name.clone(),
                r.state.as_str().to_owned(),
                short_age(r.age_seconds),
                if r.problems.is_empty() {
                    "-".to_owned()
                } else {
                    r.problems.join(",")
                },
            ]
        })
        .collect();
    let mut out = String::new();
    for line in crate::table::lines(header, &cells) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::record::tests::{job, pod};
    use crate::inventory::record::{from_job, from_pod};

    #[test]
    fn rows_name_the_problems_and_the_table_lines_up() {
        let mut inv = Inventory::default();
        let (uid, failed) = from_job(&job("shop-migrate", "j1", Some("Failed"), None)).unwrap();
        let finished = failed.finished.unwrap();
        inv.upsert(uid, failed, false);
        let (uid, test) = from_pod(&pod("shop-test", "p1", "Running")).unwrap();
        inv.upsert(uid, test, false);
        let now = finished + 7200;
        let rows = rows(&inv, Some(&KnownReleases::none_installed()), now, 3600);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "shop-migrate");
        assert_eq!(rows[0].release, "shop");
        assert_eq!(
            rows[0].problems,
            vec!["failed", "finished-long-ago", "orphaned"]
        );
        assert_eq!(rows[1].release, "unknown");
        assert_eq!(rows[1].problems, vec!["no-delete-policy"]);
        let table = render_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("NAMESPACE   RELEASE   KIND   NAME"),
            "{table}"
        );
        let col = lines[0].find("STATE").unwrap();
        assert_eq!(&lines[1][col..col + 6], "failed");
        assert!(
            lines[1].ends_with("failed,finished-long-ago,orphaned"),
            "{table}"
        );
        // Unknown releases: nobody is called an orphan.
        assert!(
            !super::rows(&inv, None, now, 3600)[0]
                .problems
                .contains(&"orphaned")
        );
        assert_eq!(render_table(&[]), "No hook objects found.\n");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(short_age(45), "45s");
        assert_eq!(short_age(600), "10m");
        assert_eq!(short_age(5 * 3600), "5h");
        assert_eq!(short_age(3 * 86400), "3d");
    }
}
