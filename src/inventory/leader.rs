//! Leader election on a Lease: with several replicas, only the holder runs the inventory and the
//! janitor, so API-server load and metrics do not multiply with replicas.
//!
//! The algorithm is client-go's `leaderelection`: every retry period a replica reads the Lease and
//! either renews it (it holds it), takes it (free, or not renewed for a lease duration as this
//! replica's own clock measures it, so clock skew between nodes does not matter), or follows. Every
//! write is a `replace` carrying the `resourceVersion` that was read, so of two replicas taking an
//! expired Lease at once one gets 409 Conflict. A holder that has not renewed for the renew
//! deadline (two thirds of the lease duration) stops working, before any other replica may take
//! over: when the API server is unreachable, nobody works rather than two.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

use super::{InventoryOptions, work};
use crate::metrics::{HistoryMetrics, InventoryMetrics};

/// The three periods of an election, from `--lease-duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A Lease not renewed for this long may be taken by another replica.
    pub lease: Duration,
    /// A holder that has not renewed for this long stops working (shorter than `lease`).
    pub renew_deadline: Duration,
    /// How often the Lease is read and renewed or tried.
    pub retry: Duration,
}

impl Timing {
    /// client-go's proportions (15 s, 10 s, 2 s): renew deadline two thirds, retry about a seventh.
    pub fn from_lease_duration(lease: Duration) -> Self {
        let lease = lease.max(Duration::from_secs(2));
        Timing {
            lease,
            renew_deadline: lease * 2 / 3,
            retry: (lease / 7).max(Duration::from_millis(250)),
        }
    }
}

/// What a replica does with the Lease it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create,
    /// We hold it: write a new renew time.
    Renew,
    /// Free or expired: write ourselves as the holder.
    Take,
    /// Another replica holds it and renews it.
    Follow { holder: String },
}

/// The holder and renew time last read, and when (on this replica's clock) they last changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    /// `leaseDurationSeconds` as the holder wrote it.
    duration: Option<Duration>,
    changed_at: Instant,
}

impl Observed {
    /// Records what was read at `now`; the clock restarts only when the record changed.
    pub fn update(previous: Option<Observed>, spec: Option<&LeaseSpec>, now: Instant) -> Observed {
        let holder = spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        let renew_time = spec.and_then(|s| s.renew_time.clone());
        let duration = spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|d| u64::try_from(d).ok())
            .map(Duration::from_secs);
        match previous {
            Some(p) if p.holder == holder && p.renew_time == renew_time => {
                Observed { duration, ..p }
            }
            _ => Observed {
                holder,
                renew_time,
                duration,
                changed_at: now,
            },
        }
    }
}

/// The decision of one round: pure, so it is tested without an API server. Another holder's
/// Lease lasts the duration it wrote (`lease` when it wrote none).
pub fn decide(
    lease_exists: bool,
    observed: &Observed,
    me: &str,
    lease: Duration,
    now: Instant,
) -> Step {
    if !lease_exists {
        return Step::Create;
    }
    let lasts = observed.duration.unwrap_or(lease);
    match &observed.holder {
        Some(holder) if holder == me => Step::Renew,
        Some(holder) if now.saturating_duration_since(observed.changed_at) < lasts => {
            Step::Follow {
                holder: holder.clone(),
            }
        }
        _ => Step::Take,
    }
}

/// The Lease as this replica writes it when holding it.
fn held(me: &str, lease: Duration, current: Option<&Lease>, name: &str, namespace: &str) -> Lease {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let spec = current.and_then(|l| l.spec.clone()).unwrap_or_default();
    let already_ours = spec.holder_identity.as_deref() == Some(me);
    let metadata = match current {
        Some(l) => l.metadata.clone(),
        None => ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
    };
    Lease {
        metadata,
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_owned()),
            lease_duration_seconds: Some(i32::try_from(lease.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: if already_ours {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: match (already_ours, current.is_some()) {
                (true, _) | (_, false) => spec.lease_transitions.or(Some(0)),
                (false, true) => Some(spec.lease_transitions.unwrap_or(0).saturating_add(1)),
            },
            ..spec
        }),
    }
}

/// One election round against the API server.
struct Elector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
}

impl Elector {
    /// Reads the Lease and acts on it; `Ok(true)` when this replica holds it after the round.
    async fn round(&mut self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let observed = Observed::update(
            self.observed.take(),
            current.as_ref().and_then(|l| l.spec.as_ref()),
            Instant::now(),
        );
        let step = decide(
            current.is_some(),
            &observed,
            &self.identity,
            self.timing.lease,
            Instant::now(),
        );
        self.observed = Some(observed);
        let lease = held(
            &self.identity,
            self.timing.lease,
            current.as_ref(),
            &self.name,
            &self.namespace,
        );
        let written = match step {
            Step::Follow { .. } => return Ok(false),
            Step::Create => self.api.create(&PostParams::default(), &lease).await,
            Step::Renew | Step::Take => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            // Another replica wrote first (409 on replace, 409 AlreadyExists on create).
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up so another replica takes over at once instead of after it expires.
    async fn release(&self) {
        let Ok(Some(current)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = current.spec.clone() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let released = Lease {
            metadata: current.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
                ..spec
            }),
        };
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &released)
            .await
        {
            tracing::warn!(error = %e, lease = %self.name, "could not release the leader Lease");
        }
    }
}

/// Runs the inventory (and janitor) until `stop`: on every replica when leader election is off,
/// else only while this replica holds the Lease and keeps renewing it.
pub async fn run(
    client: kube::Client,
    namespace: String,
    opts: InventoryOptions,
    metrics: InventoryMetrics,
    history: HistoryMetrics,
    stop: CancellationToken,
) {
    if !opts.leader_election {
        metrics.leader.set(1);
        work(client, namespace, opts, metrics.clone(), history, stop).await;
        metrics.leader.set(0);
        return;
    }
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let mut elector = Elector {
        api: Api::namespaced(client.clone(), &namespace),
        name: opts.lease_name.clone(),
        namespace: namespace.clone(),
        identity: identity.clone(),
        timing: Timing::from_lease_duration(opts.lease_duration),
        observed: None,
    };
    let timing = elector.timing;
    let mut renewed_at: Option<Instant> = None;
    let mut worker: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    loop {
        // A holder's round may last until its renew deadline, no longer: a hanging API call
        // must not keep it working past the point where another replica may take over.
        let budget = renewed_at.map_or(timing.renew_deadline, |t| {
            timing.renew_deadline.saturating_sub(t.elapsed())
        });
        match tokio::time::timeout(budget.max(Duration::from_millis(100)), elector.round()).await {
            Ok(Ok(true)) => renewed_at = Some(Instant::now()),
            Ok(Ok(false)) => renewed_at = None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = %opts.lease_name, %namespace, "leader Lease round failed")
            }
            Err(_) => {
                tracing::warn!(lease = %opts.lease_name, %namespace, "leader Lease round timed out")
            }
        }
        let leading = renewed_at.is_some_and(|t| t.elapsed() < timing.renew_deadline);
        match (leading, worker.is_some()) {
            (true, false) => {
                tracing::info!(%identity, lease = %opts.lease_name, "leader: running the inventory");
                metrics.leader.set(1);
                let token = stop.child_token();
                let task = tokio::spawn(work(
                    client.clone(),
                    namespace.clone(),
                    opts.clone(),
                    metrics.clone(),
                    history.clone(),
                    token.clone(),
                ));
                worker = Some((token, task));
            }
            (false, true) => {
                tracing::info!(%identity, lease = %opts.lease_name, "not (or no longer surely) the leader: stopping the inventory");
                metrics.leader.set(0);
                if let Some((token, task)) = worker.take() {
                    token.cancel();
                    let _ = task.await;
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(timing.retry) => {}
            _ = stop.cancelled() => break,
        }
    }
    if let Some((token, task)) = worker.take() {
        token.cancel();
        let _ = task.await;
    }
    metrics.leader.set(0);
    let _ = tokio::time::timeout(Duration::from_secs(5), elector.release()).await;
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "hookguard".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: Some(MicroTime(
                k8s_openapi::jiff::Timestamp::from_second(renewed).unwrap(),
            )),
            ..LeaseSpec::default()
        }
    }

    const LEASE: Duration = Duration::from_secs(15);

    #[test]
    fn timing_follows_client_go() {
        let t = Timing::from_lease_duration(LEASE);
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert!(t.retry >= Duration::from_secs(2) && t.retry < t.renew_deadline);
        let short = Timing::from_lease_duration(Duration::ZERO);
        assert_eq!(short.lease, Duration::from_secs(2));
        assert!(short.renew_deadline < short.lease);
    }

    #[test]
    fn a_missing_lease_is_created_and_our_own_renewed() {
        let t0 = Instant::now();
        let seen = Observed::update(None, None, t0);
        assert_eq!(decide(false, &seen, "me", LEASE, t0), Step::Create);
        let seen = Observed::update(None, Some(&spec(Some("me"), 100)), t0);
        assert_eq!(decide(true, &seen, "me", LEASE, t0), Step::Renew);
    }

    #[test]
    fn another_holder_is_followed_while_it_renews_and_replaced_when_it_stops() {
        let t0 = Instant::now();
        let seen = Observed::update(None, Some(&spec(Some("other"), 100)), t0);
        let follow = Step::Follow {
            holder: "other".to_owned(),
        };
        assert_eq!(decide(true, &seen, "me", LEASE, t0 + LEASE / 2), follow);
        // It renewed: the clock restarts, whatever the renew time says (clocks may be skewed).
        let t1 = t0 + LEASE - Duration::from_secs(1);
        let seen = Observed::update(Some(seen), Some(&spec(Some("other"), 50)), t1);
        assert_eq!(decide(true, &seen, "me", LEASE, t1 + LEASE / 2), follow);
        // Unchanged for a whole lease duration on our clock: expired.
        let seen = Observed::update(Some(seen), Some(&spec(Some("other"), 50)), t1 + LEASE);
        assert_eq!(decide(true, &seen, "me", LEASE, t1 + LEASE), Step::Take);
    }

    #[test]
    fn another_holder_s_own_lease_duration_counts() {
        let t0 = Instant::now();
        let mut longer = spec(Some("other"), 100);
        longer.lease_duration_seconds = Some(60);
        let seen = Observed::update(None, Some(&longer), t0);
        let follow = Step::Follow {
            holder: "other".to_owned(),
        };
        assert_eq!(decide(true, &seen, "me", LEASE, t0 + LEASE * 2), follow);
        assert_eq!(
            decide(true, &seen, "me", LEASE, t0 + Duration::from_secs(60)),
            Step::Take
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let seen = Observed::update(None, Some(&spec(None, 100)), t0);
        assert_eq!(decide(true, &seen, "me", LEASE, t0), Step::Take);
        let seen = Observed::update(None, Some(&spec(Some(""), 100)), t0);
        assert_eq!(decide(true, &seen, "me", LEASE, t0), Step::Take);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let mut theirs = Lease {
            metadata: ObjectMeta {
                name: Some("l".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(spec(Some("other"), 100)),
        };
        theirs.spec.as_mut().unwrap().lease_transitions = Some(3);
        let taken = held("me", LEASE, Some(&theirs), "l", "ns");
        let s = taken.spec.as_ref().unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("me"));
        assert_eq!(s.lease_transitions, Some(4));
        assert_eq!(s.lease_duration_seconds, Some(15));
        // The write is conditional on what was read.
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"));
        let renewed = held("me", LEASE, Some(&taken), "l", "ns");
        let r = renewed.spec.as_ref().unwrap();
        assert_eq!(r.lease_transitions, Some(4));
        assert_eq!(r.acquire_time, s.acquire_time);
        let created = held("me", LEASE, None, "l", "ns");
        assert_eq!(created.spec.unwrap().lease_transitions, Some(0));
        assert_eq!(created.metadata.namespace.as_deref(), Some("ns"));
    }
}
