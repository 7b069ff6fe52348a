//! The hook run history, inside `hookguard controller` (on the leader, with the inventory).
//!
//! Helm deletes hook objects under `hook-succeeded`, `hook-failed` and `before-hook-creation`,
//! and their logs with them. The controller records every run of a hook Job or Pod it sees
//! (release, revision, events, weight, kind, name, start, end, outcome) and reads the tail of
//! each container's log as soon as the container has terminated, before a delete policy
//! removes the Pod. It adds no finalizer: when hookguard is down nothing waits for it, and a
//! run it did not see is missing from the history, not stuck in the cluster.
//!
//! One record per release: a HookRunHistory (the chart's CRD) `hookguard-history.NS.RELEASE` in
//! hookguard's own namespace, so the controller writes nowhere else, and nothing else there.
//! Bounds: [`record`].
//! Hooks the webhook admitted are seen (hookguard's label); Job Pods are matched to their Job
//! by owner reference.

pub mod record;
mod release;
mod store;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use kube::api::{Api, LogParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::hook::{HOOK_ANNOTATION, HookAnnotations, WEIGHT_ANNOTATION};
use crate::inventory::HelmDriver;
use crate::inventory::record::{from_job, from_pod};
use crate::metrics::HistoryMetrics;
use crate::metrics::history::RunOutcomeLabels;
use crate::object::HOOK_LABEL;
pub use record::{Bounds, ContainerLog, HookRun, Outcome, ReleaseHistory};
pub use store::{HISTORY_LABEL, load};

/// Options of the hook run history (part of `hookguard controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryOptions {
    /// Record hook runs and the tail of their logs (`hookguard history`), as HookRunHistory
    /// objects in hookguard's namespace (the chart's CRD). Needs get on pods/log cluster-wide
    /// and on hookrunhistories in hookguard's namespace.
    #[arg(long, env = "HOOKGUARD_HISTORY", default_value_t = true, action = clap::ArgAction::Set)]
    pub history: bool,
    /// Runs kept per release (the oldest go first).
    #[arg(long, env = "HOOKGUARD_HISTORY_RUNS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub history_runs: u32,
    /// Bytes of log tail kept per container (at most 64 KiB).
    #[arg(long, env = "HOOKGUARD_HISTORY_LOG_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub history_log_bytes: u32,
    /// Release records kept (the least recently written go first).
    #[arg(long, env = "HOOKGUARD_HISTORY_RELEASES", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub history_releases: u32,
}

impl HistoryOptions {
    pub fn bounds(&self) -> Bounds {
        Bounds {
            log_bytes: self.history_log_bytes as usize,
            runs: self.history_runs as usize,
            releases: self.history_releases as usize,
        }
    }
}

/// Lines asked of the API per container, and the most bytes it may send (a log tail is cut to
/// [`Bounds::log_bytes`] after that): a hook printing huge lines costs at most this.
const LOG_TAIL_LINES: i64 = 200;
const LOG_READ_LIMIT_BYTES: i64 = 1024 * 1024;
/// Log reads in flight at once.
const MAX_LOG_READS: usize = 4;
/// Hook objects remembered as belonging to no release, at most.
const MAX_UNATTRIBUTED: usize = 10_000;
/// Job Pods are watched with this label (the Job controller sets it, Kubernetes 1.27+).
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// A release, as `(namespace, name)`.
type ReleaseKey = (String, String);

struct Tracked {
    release: ReleaseKey,
    run: HookRun,
    /// Containers (`pod uid`, `container`) whose log is read or being read.
    logs_started: HashSet<(String, String)>,
    reads_in_flight: usize,
    /// The object is gone: forget it once written and no read is in flight.
    gone: bool,
    dirty: bool,
    counted: bool,
}

enum Seen {
    Job(Box<Result<watcher::Event<Job>, watcher::Error>>),
    HookPod(Box<Result<watcher::Event<Pod>, watcher::Error>>),
    JobPod(Box<Result<watcher::Event<Pod>, watcher::Error>>),
}

/// What a finished log read brings back.
struct LogRead {
    run_uid: String,
    log: ContainerLog,
}

struct History {
    client: kube::Client,
    store: store::Store,
    releases: release::Resolver,
    bounds: Bounds,
    metrics: HistoryMetrics,
    runs: HashMap<String, Tracked>,
    /// Hook objects no Helm release lists (another tool's hooks).
    unattributed: HashSet<String>,
    /// The uids of the list in progress, per kind.
    relisted: Relisted,
    reads: JoinSet<LogRead>,
    /// At most [`MAX_LOG_READS`] log reads run at once; the others wait their turn.
    permits: Arc<tokio::sync::Semaphore>,
}

/// Records hook runs until `stop`.
pub async fn run(
    client: kube::Client,
    namespace: String,
    opts: HistoryOptions,
    helm_drivers: BTreeSet<HelmDriver>,
    metrics: HistoryMetrics,
    stop: CancellationToken,
) {
    let hooks = watcher::Config::default().labels(&format!("{HOOK_LABEL}=true"));
    let job_pods = watcher::Config::default().labels(JOB_NAME_LABEL);
    let jobs = watcher::watcher(Api::<Job>::all(client.clone()), hooks.clone())
        .default_backoff()
        .map(|e| Seen::Job(Box::new(e)));
    let hook_pods = watcher::watcher(Api::<Pod>::all(client.clone()), hooks)
        .default_backoff()
        .map(|e| Seen::HookPod(Box::new(e)));
    let job_pods = watcher::watcher(Api::<Pod>::all(client.clone()), job_pods)
        .default_backoff()
        .map(|e| Seen::JobPod(Box::new(e)));
    // Jobs first, so a Job is known before its Pods when the lists come in together.
    let seen = futures::stream::select_with_strategy(
        jobs,
        futures::stream::select(hook_pods, job_pods),
        |_: &mut ()| futures::stream::PollNext::Left,
    );
    let mut seen = std::pin::pin!(seen);
    let mut history = History {
        store: store::Store::new(client.clone(), &namespace, opts.bounds()),
        releases: release::Resolver::new(client.clone(), helm_drivers),
        client,
        bounds: opts.bounds(),
        metrics,
        runs: HashMap::new(),
        unattributed: HashSet::new(),
        relisted: Relisted::default(),
        reads: JoinSet::new(),
        permits: Arc::new(tokio::sync::Semaphore::new(MAX_LOG_READS)),
    };
    tracing::info!(%namespace, runs = opts.history_runs, log_bytes = opts.history_log_bytes, "hook run history recording");
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(event) = seen.next() => history.on(event).await,
            Some(read) = history.reads.join_next(), if !history.reads.is_empty() => {
                if let Ok(read) = read {
                    history.on_log(read);
                }
            }
            _ = flush.tick() => history.flush().await,
        }
    }
    // What was seen last is written before the leader lets go.
    history.flush().await;
}

impl History {
    async fn on(&mut self, seen: Seen) {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let (what, event) = match seen {
            Seen::Job(e) => match *e {
                Ok(Init) => return self.relisted.clear_kind("Job"),
                Ok(InitDone) => return self.relist_done("Job"),
                Ok(InitApply(job)) => {
                    self.relisted.saw("Job", job.uid());
                    return self.on_job(&job).await;
                }
                Ok(Apply(job)) => return self.on_job(&job).await,
                Ok(Delete(job)) => {
                    self.on_job(&job).await;
                    if let Some(uid) = job.uid() {
                        self.gone(&uid);
                    }
                    return;
                }
                other => ("jobs", other.map(|_| ())),
            },
            Seen::HookPod(e) => match *e {
                Ok(Init) => return self.relisted.clear_kind("Pod"),
                Ok(InitDone) => return self.relist_done("Pod"),
                Ok(InitApply(pod)) => {
                    self.relisted.saw("Pod", pod.uid());
                    return self.on_hook_pod(&pod, false).await;
                }
                Ok(Apply(pod)) => return self.on_hook_pod(&pod, false).await,
                Ok(Delete(pod)) => return self.on_hook_pod(&pod, true).await,
                other => ("hook pods", other.map(|_| ())),
            },
            Seen::JobPod(e) => match *e {
                Ok(Apply(pod) | InitApply(pod)) => return self.on_job_pod(&pod, false),
                Ok(Delete(pod)) => return self.on_job_pod(&pod, true),
                other => ("job pods", other.map(|_| ())),
            },
        };
        if let Err(e) = event {
            tracing::warn!(watch = what, error = %e, "history: watch failed; listing again");
        }
    }

    /// After a fresh list: the runs of `kind` whose object it no longer holds were deleted
    /// while the watch was down (a watch reports no deletion for those).
    fn relist_done(&mut self, kind: &str) {
        let gone: Vec<String> = self
            .runs
            .iter()
            .filter(|(uid, t)| t.run.kind == kind && !self.relisted.contains(kind, uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.gone(&uid);
        }
        self.relisted.clear_kind(kind);
    }

    async fn on_job(&mut self, job: &Job) {
        let Some((uid, record)) = from_job(job) else {
            return;
        };
        let outcome = outcome_of(record.state);
        self.observe(uid, &job.metadata, "Job", record, outcome)
            .await;
    }

    async fn on_hook_pod(&mut self, pod: &Pod, deleted: bool) {
        let Some((uid, record)) = from_pod(pod) else {
            return;
        };
        let outcome = outcome_of(record.state);
        self.observe(uid.clone(), &pod.metadata, "Pod", record, outcome)
            .await;
        self.read_logs(&uid, pod, deleted);
        if deleted {
            self.gone(&uid);
        }
    }

    fn on_job_pod(&mut self, pod: &Pod, deleted: bool) {
        let owner = pod
            .owner_references()
            .iter()
            .find(|o| o.kind == "Job" && o.controller == Some(true))
            .map(|o| o.uid.clone());
        if let Some(owner) = owner {
            self.read_logs(&owner, pod, deleted);
        }
    }

    /// Starts tracking a run, or updates its outcome.
    async fn observe(
        &mut self,
        uid: String,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        kind: &str,
        record: crate::inventory::record::HookRecord,
        outcome: Outcome,
    ) {
        if let Some(tracked) = self.runs.get_mut(&uid) {
            if tracked.run.outcome != outcome && !tracked.run.outcome.finished() {
                tracked.run.outcome = outcome;
                tracked.run.finished = record.finished.or(outcome.finished().then(now));
                tracked.dirty = true;
            }
            return;
        }
        if self.unattributed.contains(&uid) {
            return;
        }
        let Some(found) = self
            .releases
            .resolve(
                &record.namespace,
                kind,
                &record.name,
                record.attribution.release.as_deref(),
            )
            .await
        else {
            tracing::debug!(namespace = %record.namespace, name = %record.name, kind, "history: no Helm release has this hook; not recorded");
            // Not looked up again on its next update; the set is bounded, not a leak.
            if self.unattributed.len() >= MAX_UNATTRIBUTED {
                self.unattributed.clear();
            }
            self.unattributed.insert(uid);
            return;
        };
        // Read as Helm reads them: the events Helm runs the hook for, the weight it sorts by.
        let annotation = |key: &str| meta.annotations.as_ref()?.get(key).map(String::as_str);
        let hook = HookAnnotations::parse(
            annotation(HOOK_ANNOTATION),
            annotation(WEIGHT_ANNOTATION),
            None,
            None,
        );
        let run = HookRun {
            uid: uid.clone(),
            kind: kind.to_owned(),
            name: record.name.clone(),
            revision: found.revision,
            events: hook
                .as_ref()
                .map(|h| {
                    h.known_events()
                        .iter()
                        .map(|e| e.as_str().to_owned())
                        .collect()
                })
                .unwrap_or_default(),
            weight: hook
                .and_then(|h| h.weight)
                .map_or(0, |w| w.weight.effective()),
            started: record.started.unwrap_or(record.created),
            finished: record.finished,
            outcome,
            logs: Vec::new(),
        };
        self.runs.insert(
            uid,
            Tracked {
                release: (record.namespace, found.release),
                run,
                logs_started: HashSet::new(),
                reads_in_flight: 0,
                gone: false,
                dirty: true,
                counted: false,
            },
        );
    }

    /// Reads the log of every terminated container of `pod` not read yet; when the Pod is
    /// deleted, the containers never read are recorded as missed.
    fn read_logs(&mut self, run_uid: &str, pod: &Pod, deleted: bool) {
        let Some(tracked) = self.runs.get_mut(run_uid) else {
            return;
        };
        let (Some(pod_uid), Some(namespace)) = (pod.uid(), pod.namespace()) else {
            return;
        };
        let pod_name = pod.name_any();
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        for status in statuses {
            let key = (pod_uid.clone(), status.name.clone());
            if tracked.logs_started.contains(&key) {
                continue;
            }
            let terminated = status.state.as_ref().and_then(|s| s.terminated.as_ref());
            match terminated {
                Some(t) => {
                    tracked.logs_started.insert(key);
                    tracked.reads_in_flight += 1;
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                    let (pod_name, container, exit_code) =
                        (pod_name.clone(), status.name.clone(), t.exit_code);
                    let (run_uid, log_bytes) = (run_uid.to_owned(), self.bounds.log_bytes);
                    let permits = self.permits.clone();
                    self.reads.spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        let params = LogParams {
                            container: Some(container.clone()),
                            tail_lines: Some(LOG_TAIL_LINES),
                            limit_bytes: Some(LOG_READ_LIMIT_BYTES),
                            ..LogParams::default()
                        };
                        let log = match api.logs(&pod_name, &params).await {
                            Ok(text) => {
                                let (log, truncated) = record::log_tail(text.as_bytes(), log_bytes);
                                ContainerLog {
                                    pod: pod_name,
                                    container,
                                    exit_code: Some(exit_code),
                                    log,
                                    truncated,
                                    error: None,
                                }
                            }
                            Err(e) => ContainerLog {
                                exit_code: Some(exit_code),
                                ..missed(&pod_name, &container, &bounded_error(&e))
                            },
                        };
                        LogRead { run_uid, log }
                    });
                }
                None if deleted => {
                    tracked.logs_started.insert(key);
                    tracked.run.logs.push(missed(
                        &pod_name,
                        &status.name,
                        "the Pod was deleted before its container terminated",
                    ));
                    tracked.dirty = true;
                }
                None => {}
            }
        }
    }

    fn on_log(&mut self, read: LogRead) {
        if let Some(tracked) = self.runs.get_mut(&read.run_uid) {
            tracked.reads_in_flight = tracked.reads_in_flight.saturating_sub(1);
            tracked.run.add_log(read.log);
            tracked.dirty = true;
        }
    }

    fn gone(&mut self, uid: &str) {
        if let Some(tracked) = self.runs.get_mut(uid) {
            if !tracked.run.outcome.finished() {
                tracked.run.outcome = Outcome::Deleted;
                tracked.run.finished = Some(now());
            }
            tracked.gone = true;
            tracked.dirty = true;
        }
    }

    /// Writes the changed runs, one record per release.
    async fn flush(&mut self) {
        let mut by_release: HashMap<ReleaseKey, Vec<HookRun>> = HashMap::new();
        for tracked in self.runs.values().filter(|t| t.dirty) {
            by_release
                .entry(tracked.release.clone())
                .or_default()
                .push(tracked.run.clone());
        }
        for (release, runs) in by_release {
            match self.store.record(&release.0, &release.1, &runs).await {
                Ok(()) => {
                    for run in &runs {
                        let Some(tracked) = self.runs.get_mut(&run.uid) else {
                            continue;
                        };
                        tracked.dirty = false;
                        // Counted once the run is over and no read is pending.
                        if !tracked.counted
                            && run.outcome.finished()
                            && tracked.reads_in_flight == 0
                        {
                            tracked.counted = true;
                            self.metrics
                                .runs
                                .get_or_create(&RunOutcomeLabels {
                                    outcome: run.outcome.as_str(),
                                })
                                .inc();
                        }
                        if tracked.gone && tracked.reads_in_flight == 0 && run.logs_missed() {
                            self.metrics.logs_missed.inc();
                        }
                    }
                }
                Err(e) => {
                    self.metrics.store_errors.inc();
                    tracing::warn!(namespace = %release.0, release = %release.1, error = %e, "history: cannot write the release's record; retrying");
                }
            }
        }
        self.runs
            .retain(|_, t| !(t.gone && !t.dirty && t.reads_in_flight == 0));
    }
}

/// The uids a list in progress has delivered, for the Job and the hook Pod watch.
#[derive(Default)]
struct Relisted {
    jobs: HashSet<String>,
    pods: HashSet<String>,
}

impl Relisted {
    fn of(&mut self, kind: &str) -> &mut HashSet<String> {
        if kind == "Job" {
            &mut self.jobs
        } else {
            &mut self.pods
        }
    }

    fn clear_kind(&mut self, kind: &str) {
        self.of(kind).clear();
    }

    fn saw(&mut self, kind: &str, uid: Option<String>) {
        self.of(kind).extend(uid);
    }

    fn contains(&self, kind: &str, uid: &str) -> bool {
        if kind == "Job" {
            self.jobs.contains(uid)
        } else {
            self.pods.contains(uid)
        }
    }
}

fn outcome_of(state: crate::inventory::record::State) -> Outcome {
    use crate::inventory::record::State;
    match state {
        State::Succeeded => Outcome::Succeeded,
        State::Failed => Outcome::Failed,
        State::Active | State::Other => Outcome::Running,
    }
}

fn missed(pod: &str, container: &str, why: &str) -> ContainerLog {
    ContainerLog {
        pod: pod.to_owned(),
        container: container.to_owned(),
        exit_code: None,
        log: String::new(),
        truncated: false,
        error: Some(why.to_owned()),
    }
}

/// An API error as stored: short, whatever the server said.
fn bounded_error(e: &kube::Error) -> String {
    let mut text = e.to_string();
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
