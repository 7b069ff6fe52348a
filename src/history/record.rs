//! The hook run history of one release, as stored (pure: no I/O, no clock).
//!
//! Bounds, so that a chatty hook or a release with thousands of runs cannot grow a record
//! without limit: a log tail per container ([`Bounds::log_bytes`]), [`MAX_LOGS_PER_RUN`]
//! container logs per run, [`Bounds::runs`] runs per release, and at most [`MAX_RECORD_BYTES`]
//! of JSON per record (the oldest runs go first). The number of records is bounded by the
//! shell ([`Bounds::releases`]).

use serde::{Deserialize, Serialize};

/// A record holds at most this much JSON (etcd takes requests of at most 1.5 MiB by default).
pub const MAX_RECORD_BYTES: usize = 512 * 1024;

/// Container logs kept per run (a Job that retried keeps its latest Pods' logs).
pub const MAX_LOGS_PER_RUN: usize = 8;

/// The configurable bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Bytes of log tail kept per container.
    pub log_bytes: usize,
    /// Runs kept per release (the oldest go first).
    pub runs: usize,
    /// Release records kept (the least recently written go first).
    pub releases: usize,
}

/// How a run ended, as far as hookguard saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
    /// Deleted before it finished (by Helm's timeout, a user, or `before-hook-creation`).
    Deleted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Deleted => "deleted",
        }
    }

    pub fn finished(self) -> bool {
        self != Outcome::Running
    }
}

/// The tail of one container's log, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerLog {
    pub pod: String,
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last lines, at most [`Bounds::log_bytes`] bytes.
    #[serde(default)]
    pub log: String,
    /// Earlier output was cut.
    #[serde(default)]
    pub truncated: bool,
    /// Set when the log could not be captured (the Pod was gone first, or the API refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One run of one hook object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRun {
    /// The object's uid: a hook created again is a new run.
    pub uid: String,
    pub kind: String,
    pub name: String,
    /// The release revision current when the run started (Helm writes it before running hooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The events of `helm.sh/hook` Helm runs the hook for (as Helm parses them).
    pub events: Vec<String>,
    #[serde(default)]
    pub weight: i64,
    /// Unix seconds.
    pub started: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<i64>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<ContainerLog>,
}

impl HookRun {
    pub fn duration_seconds(&self) -> Option<i64> {
        self.finished.map(|f| f.saturating_sub(self.started).max(0))
    }

    /// Merges what was seen now into what was stored: the later, more finished view wins, logs
    /// are joined per (pod, container) with a captured log preferred over an error.
    pub fn merge(&mut self, newer: &HookRun) {
        if newer.outcome.finished() || !self.outcome.finished() {
            self.outcome = newer.outcome;
            self.finished = newer.finished.or(self.finished);
        }
        self.revision = self.revision.or(newer.revision);
        for log in &newer.logs {
            self.add_log(log.clone());
        }
    }

    /// Adds a container's log, or replaces the one of the same (pod, container) unless that one
    /// was captured and this one is an error; keeps the last [`MAX_LOGS_PER_RUN`].
    pub fn add_log(&mut self, log: ContainerLog) {
        match self
            .logs
            .iter_mut()
            .find(|l| l.pod == log.pod && l.container == log.container)
        {
            Some(kept) if kept.error.is_none() && log.error.is_some() => {}
            Some(kept) => *kept = log,
            None => self.logs.push(log),
        }
        let excess = self.logs.len().saturating_sub(MAX_LOGS_PER_RUN);
        self.logs.drain(..excess);
    }

    /// Whether some container's log could not be captured.
    pub fn logs_missed(&self) -> bool {
        self.logs.iter().any(|l| l.error.is_some())
    }
}

/// The stored history of one release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseHistory {
    pub namespace: String,
    pub release: String,
    /// Oldest first.
    pub runs: Vec<HookRun>,
}

impl ReleaseHistory {
    /// Adds or updates runs, then applies the bounds once.
    pub fn record<'r>(&mut self, runs: impl IntoIterator<Item = &'r HookRun>, bounds: &Bounds) {
        for run in runs {
            match self.runs.iter_mut().find(|r| r.uid == run.uid) {
                Some(kept) => kept.merge(run),
                None => self.runs.push(run.clone()),
            }
        }
        self.runs.sort_by_key(|r| r.started);
        self.trim(bounds);
    }

    /// Drops the oldest runs beyond `bounds.runs` and until the JSON fits [`MAX_RECORD_BYTES`]
    /// (the record is serialized once, each dropped run once more).
    fn trim(&mut self, bounds: &Bounds) {
        let excess = self.runs.len().saturating_sub(bounds.runs.max(1));
        self.runs.drain(..excess);
        let mut len = json_len(self);
        let mut drop = 0;
        while self.runs.len() - drop > 1 && len > MAX_RECORD_BYTES {
            // The run and the comma after it.
            len = len.saturating_sub(json_len(&self.runs[drop]) + 1);
            drop += 1;
        }
        self.runs.drain(..drop);
    }

    /// The runs of one revision (all with `None`).
    pub fn of_revision(&self, revision: Option<u64>) -> impl Iterator<Item = &HookRun> {
        self.runs
            .iter()
            .filter(move |r| revision.is_none() || r.revision == revision)
    }
}

fn json_len(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// The last `max_bytes` of a log, cut at a line start when one is near, and whether anything
/// was cut. Invalid UTF-8 is replaced.
pub fn log_tail(raw: &[u8], max_bytes: usize) -> (String, bool) {
    if raw.len() <= max_bytes {
        return (String::from_utf8_lossy(raw).into_owned(), false);
    }
    let mut tail = &raw[raw.len() - max_bytes..];
    if let Some(newline) = tail.iter().position(|&b| b == b'\n')
        && newline + 1 < tail.len()
    {
        tail = &tail[newline + 1..];
    }
    (String::from_utf8_lossy(tail).into_owned(), true)
}

/// The name of a release's record: namespaces hold no dots, so `<namespace>.<release>` is
/// unambiguous, and both are DNS names short enough (63 and 53 characters) to fit.
pub fn record_name(namespace: &str, release: &str) -> String {
    format!("hookguard-history.{namespace}.{release}")
}

/// A run as `hookguard history -o json` prints it: its times also as RFC 3339 text.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView<'a> {
    #[serde(flatten)]
    pub run: &'a HookRun,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
}

impl<'a> RunView<'a> {
    pub fn new(run: &'a HookRun) -> Self {
        RunView {
            run,
            started_at: rfc3339(run.started),
            finished_at: run.finished.map(rfc3339),
            duration_seconds: run.duration_seconds(),
        }
    }
}

fn rfc3339(unix: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// The table `hookguard history` prints; with `logs`, each run's container logs under it.
pub fn render_text(history: &ReleaseHistory, revision: Option<u64>, logs: bool) -> String {
    let runs: Vec<&HookRun> = history.of_revision(revision).collect();
    let mut out = format!(
        "release {} in namespace {}: {} hook run{}{}\n",
        history.release,
        history.namespace,
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        revision
            .map(|r| format!(" of revision {r}"))
            .unwrap_or_default(),
    );
    let rows: Vec<[String; 8]> = runs
        .iter()
        .map(|r| {
            [
                r.revision.map_or("?".to_owned(), |v| v.to_string()),
                r.events.join(","),
                r.weight.to_string(),
                r.kind.clone(),
                r.name.clone(),
                rfc3339(r.started),
                r.duration_seconds()
                    .map_or("-".to_owned(), |d| format!("{d}s")),
                format!(
                    "{}{}",
                    r.outcome.as_str(),
                    if r.logs_missed() {
                        " (logs missed)"
                    } else {
                        ""
                    }
                ),
            ]
        })
        .collect();
    let header = [
        "REVISION", "EVENTS", "WEIGHT", "KIND", "NAME", "STARTED", "DURATION", "OUTCOME",
    ];
    let mut lines = crate::table::lines(header, &rows).into_iter();
    out.extend(lines.next().map(|h| h + "\n"));
    for (line, run) in lines.zip(&runs) {
        out.push_str(&line);
        out.push('\n');
        if !logs {
            continue;
        }
        for log in &run.logs {
            let exit = log
                .exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default();
            match &log.error {
                Some(e) => out.push_str(&format!(
                    "    {} / {}{exit}: log not captured: {e}\n",
                    log.pod, log.container
                )),
                None => {
                    out.push_str(&format!(
                        "    {} / {}{exit}{}:\n",
                        log.pod,
                        log.container,
                        if log.truncated { ", last lines" } else { "" }
                    ));
                    for l in log.log.lines() {
                        out.push_str(&format!("      {l}\n"));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        log_bytes: 64,
        runs: 3,
        releases: 10,
    };

    fn run(uid: &str, started: i64, outcome: Outcome) -> HookRun {
        HookRun {
            uid: uid.into(),
            kind: "Job".into(),
            name: format!("hook-{uid}"),
            revision: Some(1),
            events: vec!["pre-install".into()],
            weight: 0,
            started,
            finished: outcome.finished().then_some(started + 2),
            outcome,
            logs: Vec::new(),
        }
    }

    fn log(pod: &str, text: &str, error: Option<&str>) -> ContainerLog {
        ContainerLog {
            pod: pod.into(),
            container: "main".into(),
            exit_code: Some(0),
            log: text.into(),
            truncated: false,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_run_seen_again_is_updated_not_duplicated() {
        let mut h = ReleaseHistory::default();
        h.record([&run("a", 10, Outcome::Running)], &BOUNDS);
        let mut done = run("a", 10, Outcome::Succeeded);
        done.logs.push(log("p", "hello\n", None));
        h.record([&done], &BOUNDS);
        assert_eq!(h.runs.len(), 1);
        assert_eq!(h.runs[0].outcome, Outcome::Succeeded);
        assert_eq!(h.runs[0].duration_seconds(), Some(2));
        // A later view that only knows the run as running (a restarted controller) and could
        // not read the log changes neither the outcome nor the captured log.
        let mut stale = run("a", 10, Outcome::Running);
        stale.logs.push(log("p", "", Some("pod gone")));
        h.record([&stale], &BOUNDS);
        assert_eq!(h.runs[0].outcome, Outcome::Succeeded);
        assert_eq!(h.runs[0].logs, vec![log("p", "hello\n", None)]);
        assert!(!h.runs[0].logs_missed());
    }

    #[test]
    fn the_oldest_runs_go_first() {
        let mut h = ReleaseHistory::default();
        for (i, uid) in ["a", "b", "c", "d"].iter().enumerate() {
            h.record([&run(uid, 100 - i as i64 * 10, Outcome::Failed)], &BOUNDS);
        }
        // Started at 100, 90, 80, 70: the one that started at 70 is dropped, in start order.
        let uids: Vec<&str> = h.runs.iter().map(|r| r.uid.as_str()).collect();
        assert_eq!(uids, ["c", "b", "a"]);
    }

    #[test]
    fn a_record_stays_under_its_byte_bound() {
        let mut h = ReleaseHistory::default();
        let bounds = Bounds {
            runs: 10_000,
            ..BOUNDS
        };
        for i in 0..60 {
            let mut r = run(&format!("u{i}"), i, Outcome::Succeeded);
            for p in 0..MAX_LOGS_PER_RUN + 3 {
                r.merge(&HookRun {
                    logs: vec![log(&format!("p{p}"), &"x".repeat(4096), None)],
                    ..r.clone()
                });
            }
            assert!(r.logs.len() <= MAX_LOGS_PER_RUN);
            h.record([&r], &bounds);
        }
        assert!(json_len(&h) <= MAX_RECORD_BYTES);
        assert_eq!(h.runs.last().map(|r| r.uid.as_str()), Some("u59"));
    }

    #[test]
    fn log_tails_are_bounded_and_start_at_a_line() {
        assert_eq!(log_tail(b"short\n", 64), ("short\n".to_owned(), false));
        let (tail, cut) = log_tail(b"first line\nsecond line\nthird\n", 16);
        assert!(cut);
        assert_eq!(tail, "third\n");
        let (tail, cut) = log_tail(&[b'a'; 100], 10);
        assert!(cut && tail.len() == 10);
        // A multi-byte character cut in half is replaced, not a panic.
        let (tail, _) = log_tail("ééééé".as_bytes(), 3);
        assert!(tail.ends_with('é'));
    }

    #[test]
    fn the_table_shows_outcome_duration_and_logs() {
        let mut h = ReleaseHistory {
            namespace: "shop".into(),
            release: "web".into(),
            runs: Vec::new(),
        };
        let mut ok = run("a", 1_764_806_400, Outcome::Succeeded);
        ok.logs.push(log("hook-a-x1", "migrating\ndone\n", None));
        h.record([&ok], &BOUNDS);
        let mut failed = run("b", 1_764_806_500, Outcome::Failed);
        failed.revision = Some(2);
        failed
            .logs
            .push(log("hook-b", "", Some("the Pod was deleted first")));
        h.record([&failed], &BOUNDS);
        let text = render_text(&h, None, true);
        assert!(
            text.starts_with("release web in namespace shop: 2 hook runs\n"),
            "{text}"
        );
        assert!(text.contains("2025-12-04T00:00:00Z"), "{text}");
        assert!(text.contains("2s         succeeded"), "{text}");
        assert!(text.contains("failed (logs missed)"), "{text}");
        assert!(
            text.contains("    hook-a-x1 / main (exit 0):\n      migrating\n      done\n"),
            "{text}"
        );
        assert!(
            text.contains("log not captured: the Pod was deleted first"),
            "{text}"
        );
        let only_2 = render_text(&h, Some(2), false);
        assert!(
            only_2.contains("1 hook run of revision 2") && !only_2.contains("hook-a"),
            "{only_2}"
        );
        let json = serde_json::to_value(RunView::new(&h.runs[0])).unwrap();
        assert_eq!(json["startedAt"], "2025-12-04T00:00:00Z");
        assert_eq!(json["durationSeconds"], 2);
        assert_eq!(json["outcome"], "succeeded");
    }

    #[test]
    fn record_names_fit_an_object_name() {
        let name = record_name(&"n".repeat(63), &"r".repeat(53));
        assert!(name.len() <= 253);
    }
}
