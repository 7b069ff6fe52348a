//! The policy re-check (`--policy-recheck`): the webhook's policy judged again, periodically and
//! whenever the policy file changes, against every live hook and every hook stored in the latest
//! revision of each Helm release (the same pass as `hookguard audit --policy`), published as the
//! `hookguard_policy_violations` gauge. Only the counts are kept.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::impact::{self, From};
use crate::inventory::HelmDriver;
use crate::metrics::{RecheckMetrics, ViolationLabels};
use crate::policy::{Config, Policy, RULES};

/// How often the policy file is looked at for changes.
const FILE_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, clap::Args)]
pub struct RecheckOptions {
    /// Re-run the policy over live hooks and the hooks stored in Helm releases, and publish
    /// `hookguard_policy_violations`. Needs get on the release records' Secrets/ConfigMaps.
    #[arg(long, env = "HOOKGUARD_POLICY_RECHECK")]
    pub policy_recheck: bool,
    /// The webhook's policy file (the built-in policy when absent); re-read on change.
    #[arg(long, env = "HOOKGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// How often the re-check runs (and at once when the policy file changes).
    #[arg(long, env = "HOOKGUARD_RECHECK_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub recheck_interval: Duration,
    /// With --policy-recheck: also write the findings as report objects, one per namespace (when
    /// their CRD is installed): `openreports` (openreports.io Report) or `policyreport`
    /// (wgpolicyk8s.io PolicyReport). Needs list, patch and delete on them.
    #[arg(long, env = "HOOKGUARD_REPORTS", value_enum, default_value = "none")]
    pub reports: super::reports::ReportFormat,
}

/// Runs re-checks until `stop`. `own_namespace` is exempt, as in the webhook.
pub async fn run(
    client: kube::Client,
    opts: RecheckOptions,
    drivers: Vec<HelmDriver>,
    events: Option<kube::runtime::events::Recorder>,
    own_namespace: String,
    metrics: RecheckMetrics,
    stop: CancellationToken,
) {
    let mut bytes: Option<Vec<u8>> = None;
    let mut policy = Policy::default().with_own_namespace(&own_namespace);
    let mut last_pass: Option<Instant> = None;
    let mut reported = None;
    loop {
        let current = match &opts.config {
            Some(path) => std::fs::read(path).ok(),
            None => None,
        };
        let changed = current.is_some() && current != bytes;
        if changed {
            let parsed = current
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .map(|text| Config::from_yaml(&text));
            match parsed {
                Some(Ok(p)) => policy = p.with_own_namespace(&own_namespace),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "policy re-check: new policy rejected; keeping the current one")
                }
                None => {}
            }
            bytes = current;
        }
        let due = last_pass.is_none_or(|t| t.elapsed() >= opts.recheck_interval);
        if changed || due {
            match impact::collect(&client, None, &drivers, &policy).await {
                Ok(impacts) => {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    metrics.publish(violations(&impacts), now);
                    if let Some(events) = &events {
                        record_events(events, &impacts).await;
                    }
                    super::reports::publish(&client, opts.reports, &impacts, now, &mut reported)
                        .await;
                    tracing::info!(hooks = impacts.len(), "policy re-check done");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "policy re-check failed; retrying at the next pass")
                }
            }
            last_pass = Some(Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(FILE_POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Events per re-check at most (the rest is in the gauge, the Reports and `audit`).
const MAX_EVENTS: usize = 200;

/// A Warning Event on each live hook object with a denial or warning, so `kubectl describe`
/// shows it (the recorder folds repeats into a series).
async fn record_events(events: &kube::runtime::events::Recorder, impacts: &[impact::Impact]) {
    let flagged = impacts
        .iter()
        .filter(|i| i.from == From::Live && i.findings.iter().any(|f| f.action != "mutate"));
    for i in flagged.take(MAX_EVENTS) {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(i.api_version.clone()),
            kind: Some(i.kind.clone()),
            name: Some(i.name.clone()),
            namespace: Some(i.namespace.clone()),
            uid: i.uid.clone(),
            ..Default::default()
        };
        let note: Vec<String> = i
            .findings
            .iter()
            .filter(|f| f.action != "mutate")
            .map(|f| format!("[{}] {}: {}", f.rule, f.action, f.message))
            .collect();
        let mut note = note.join("; ");
        // events.k8s.io caps the note at 1 KiB.
        if note.len() > 1000 {
            let cut = (0..=1000)
                .rev()
                .find(|&n| note.is_char_boundary(n))
                .unwrap_or(0);
            note.truncate(cut);
        }
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Warning,
            reason: "PolicyViolation".into(),
            note: Some(note),
            action: "Recheck".into(),
            secondary: None,
        };
        if let Err(e) = events.publish(&event, &reference).await {
            tracing::warn!(namespace = %i.namespace, name = %i.name, error = %e, "policy re-check: cannot record an Event");
        }
    }
}

/// One [`ViolationLabels`] per finding.
fn violations(impacts: &[impact::Impact]) -> Vec<ViolationLabels> {
    let mut out = Vec::new();
    for i in impacts {
        for f in &i.findings {
            let mutates = RULES
                .iter()
                .find(|r| r.info().id == f.rule)
                .is_some_and(|r| r.info().mutates);
            out.push(ViolationLabels {
                rule: f.rule,
                namespace: i.namespace.clone(),
                from: match i.from {
                    From::Live => "live",
                    From::Release => "release",
                },
                effect: f.action,
                when_enforced: if mutates { "mutate" } else { "deny" },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impact::Impact;
    use crate::lint::LintFinding;

    #[test]
    fn each_finding_is_one_violation_saying_what_enforcing_its_rule_does() {
        let finding = |rule, action| LintFinding {
            rule,
            action,
            message: String::new(),
        };
        let impacts = [Impact {
            from: From::Release,
            namespace: "shop".into(),
            release: "shop".into(),
            revision: Some(2),
            kind: "Job".into(),
            name: "shop-migrate".into(),
            api_version: "batch/v1".into(),
            uid: None,
            findings: vec![finding("image-tag", "warn"), finding("job-ttl", "warn")],
            error: None,
        }];
        let v = violations(&impacts);
        let got: Vec<_> = v
            .iter()
            .map(|v| {
                (
                    v.rule,
                    v.namespace.as_str(),
                    v.from,
                    v.effect,
                    v.when_enforced,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("image-tag", "shop", "release", "warn", "deny"),
                ("job-ttl", "shop", "release", "warn", "mutate"),
            ]
        );
    }
}
