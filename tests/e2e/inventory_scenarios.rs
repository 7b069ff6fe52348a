//! The hook inventory, leader election, janitor and `hookguard audit` against the real API server
//! with real Helm 3 installs. Simulated: the node (kwok runs no containers; hook Pods and Jobs
//! finish as the test chart's annotations say).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::hookguard::Served;
use crate::proc::{Result, ensure, wait_for};
use crate::tools::repo;
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[
    (
        "13-inventory-churn-failures-orphans-janitor-audit",
        inventory,
    ),
    (
        "13-orphans-configmap-driver-and-cross-namespace-hooks",
        orphans_across_drivers_and_namespaces,
    ),
];

const LEASE_NS: &str = "e2e-inventory";
const CHURN: &str = "e2e-inv-churn";
const FAIL: &str = "e2e-inv-fail";
/// Exempt from hookguard's policy: hooks get no label (only discovery finds them) and no TTL.
const ORPHANS: &str = "e2e-unguarded-inv-orphans";

fn chart() -> String {
    repo().join("tests/e2e/charts/shop").display().to_string()
}

fn replica(env: &Env, name: &str, dir: &Path, janitor_dry_run: bool) -> Result<Served> {
    let mut args = vec![
        format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
        format!("--namespace={LEASE_NS}"),
        "--inventory-discovery-interval=3s".to_owned(),
        "--lease-name=e2e-inventory".to_owned(),
        "--lease-duration=6s".to_owned(),
        "--janitor".to_owned(),
        "--janitor-namespaces=e2e-unguarded-inv-*".to_owned(),
        "--janitor-min-age=2s".to_owned(),
        "--janitor-interval=1s".to_owned(),
        "--events".to_owned(),
    ];
    if janitor_dry_run {
        args.push("--janitor-dry-run".to_owned());
    }
    Served::controller(name, dir, &args, &[("POD_NAME", name.to_owned())])
}

/// A ValidatingAdmissionPolicy (CEL, in the API server) that makes every write of the leader
/// Lease fail while reads still work: the API server is up, renewals are not.
const FREEZE_LEASE: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: e2e-freeze-lease}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [coordination.k8s.io]
        apiVersions: ["*"]
        operations: [UPDATE]
        resources: [leases]
  validations:
    - expression: "object.metadata.name != 'e2e-inventory'"
      message: "e2e: writes of this Lease are refused"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: e2e-freeze-lease}
spec:
  policyName: e2e-freeze-lease
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: e2e-inventory}
"#;

/// The leader's renewals are refused: it stops working before its Lease expires (so no other
/// replica can be working at the same time), and leads again once renewals succeed.
fn renewals_fail(env: &Env, leader: &Served) -> Result<()> {
    use k8s_openapi::jiff::Timestamp;
    let renew_time = || -> Option<Timestamp> {
        env.cluster
            .get_json(&["-n", LEASE_NS, "lease", "e2e-inventory"])?["spec"]["renewTime"]
            .as_str()?
            .parse()
            .ok()
    };
    env.cluster.apply(FREEZE_LEASE)?;
    // Poll the Lease and the leader gauge together: the last renewal the API server accepted and
    // the moment the replica stopped leading (same machine, same clock).
    let start = std::time::Instant::now();
    let mut last_renewal = renew_time().ok_or("no leader Lease")?;
    let stepped_down_at = loop {
        if let Some(t) = renew_time() {
            last_renewal = last_renewal.max(t);
        }
        if leader.metric_sum("hookguard_leader", &[]) == 0.0 {
            break Timestamp::now();
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "the leader never stepped down while its renewals were refused (last renewal {last_renewal})"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let after = stepped_down_at.duration_since(last_renewal);
    ensure(after.as_secs_f64() < 6.0, || {
        format!("stepped down {after:#} after its last renewal; the Lease lasts 6 s")
    })?;
    ensure(renew_time() == Some(last_renewal), || {
        "the Lease was renewed after the leader stepped down".to_owned()
    })?;
    wait_for(
        "the inventory to report down after stepping down",
        Duration::from_secs(10),
        || (leader.metric_sum("hookguard_inventory_up", &[]) == 0.0).then_some(()),
    )?;
    env.cluster
        .run_ok("kubectl", &["delete", "-f", "-"], Some(FREEZE_LEASE))?;
    wait_for(
        "the replica to lead again once renewals succeed",
        Duration::from_secs(30),
        || (leader.metric_sum("hookguard_leader", &[]) == 1.0).then_some(()),
    )
}

fn ns_label(ns: &str) -> String {
    format!("namespace=\"{ns}\"")
}

/// Waits until `series` (family + label matchers) sums to `want` on `s`.
fn wait_metric(s: &Served, family: &str, labels: &[&str], want: f64) -> Result<()> {
    let what = format!("{family}{labels:?} == {want}");
    wait_for(&what, Duration::from_secs(45), || {
        (s.metric_sum(family, labels) == want).then_some(())
    })
    .map_err(|e| format!("{e} (last value {})", s.metric_sum(family, labels)))
}

/// `(namespace, kind, name)` of every object with a helm.sh/hook annotation, per kubectl.
fn hooks_per_kubectl(env: &Env, namespaces: &[&str]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for ns in namespaces {
        for kind in ["jobs", "pods"] {
            let Some(list) = env.cluster.get_json(&[kind, "-n", ns]) else {
                continue;
            };
            for item in list["items"].as_array().into_iter().flatten() {
                if item["metadata"]["annotations"]["helm.sh/hook"].is_string() {
                    out.insert((
                        ns.to_string(),
                        item["kind"].as_str().unwrap_or_default().to_owned(),
                        item["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ));
                }
            }
        }
    }
    out
}

fn audit(env: &Env, ns: &str) -> Result<Vec<Value>> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookguard"))
        .args(["audit", "-o", "json", "-n", ns, "--older-than", "1s"])
        .arg(format!("--kubeconfig={}", env.cluster.kubeconfig.display()))
        .output()
        .map_err(|e| e.to_string())?;
    ensure(out.status.success(), || {
        format!("hookguard audit: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    serde_json::from_slice(&out.stdout).map_err(|e| format!("audit json: {e}"))
}

fn inventory(env: &Env) -> Result<()> {
    for ns in [LEASE_NS, CHURN, FAIL, ORPHANS] {
        env.cluster.namespace(ns)?;
    }
    let dir = env.cluster.work.join("inventory");
    let a = replica(env, "inventory-a", &dir, true)?;
    let b = replica(env, "inventory-b", &dir, true)?;
    let mut c = None;
    let result = (|| -> Result<()> {
        // One leader; only it runs the inventory.
        wait_for(
            "one leader with a synced inventory",
            Duration::from_secs(40),
            || {
                let leaders =
                    a.metric_sum("hookguard_leader", &[]) + b.metric_sum("hookguard_leader", &[]);
                let up = a.metric_sum("hookguard_inventory_up", &[])
                    + b.metric_sum("hookguard_inventory_up", &[]);
                (leaders == 1.0 && up == 1.0).then_some(())
            },
        )?;
        let (leader, follower) = if a.metric_sum("hookguard_leader", &[]) == 1.0 {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let helm = |args: &[&str]| env.cluster.run_ok("helm", args, None);

        // Churn: install and two upgrades. Install creates migrate and notify (notify deleted
        // on success); each upgrade re-creates migrate (before-hook-creation deletes the old
        // one), notify (deleted again) and one report Job named after the revision.
        helm(&["install", "shop", &chart(), "-n", CHURN, "--timeout", "90s"])?;
        for _ in 0..2 {
            helm(&["upgrade", "shop", &chart(), "-n", CHURN, "--timeout", "90s"])?;
        }
        let churn = ns_label(CHURN);
        let shop = "release=\"shop\"";
        wait_metric(leader, "hookguard_hook_created_total", &[&churn, shop], 8.0)?;
        wait_metric(leader, "hookguard_hook_deleted_total", &[&churn, shop], 5.0)?;
        wait_metric(
            leader,
            "hookguard_hook_job_outcomes_total",
            &[&churn, "outcome=\"succeeded\""],
            8.0,
        )?;
        wait_metric(
            leader,
            "hookguard_hook_objects",
            &[&churn, "kind=\"Job\"", "state=\"succeeded\""],
            3.0,
        )?;
        ensure(
            leader.metric_sum(
                "hookguard_hook_job_duration_seconds_count",
                &["outcome=\"succeeded\""],
            ) >= 8.0,
            || "job durations were not observed".to_owned(),
        )?;
        ensure(
            follower.metric_sum("hookguard_hook_created_total", &[]) == 0.0,
            || "the follower counted churn: the inventory runs on more than one replica".to_owned(),
        )?;

        // A failing hook.
        env.cluster.run_fails(
            "helm",
            &[
                "install",
                "shop",
                &chart(),
                "-n",
                FAIL,
                "--set",
                "migrate.fail=true",
                "--timeout",
                "60s",
            ],
        )?;
        let fail = ns_label(FAIL);
        wait_metric(
            leader,
            "hookguard_hook_job_outcomes_total",
            &[&fail, "outcome=\"failed\""],
            1.0,
        )?;
        wait_metric(
            leader,
            "hookguard_hook_objects",
            &[&fail, "kind=\"Job\"", "state=\"failed\""],
            1.0,
        )?;

        // Leftovers of an uninstalled release, in an unguarded namespace (no label: only the
        // discovery pass finds them), next to a running hook and one held by Argo CD. Its name
        // is installed nowhere else (a hook of a release named like one installed in another
        // namespace may belong to that one: never an orphan).
        helm(&[
            "install",
            "leftover",
            &chart(),
            "-n",
            ORPHANS,
            "--timeout",
            "90s",
        ])?;
        // The test Pod keeps restartPolicy Always here: it never finishes and `helm test` times out.
        env.cluster.run_fails(
            "helm",
            &["test", "leftover", "-n", ORPHANS, "--timeout", "5s"],
        )?;
        env.cluster.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: argo-presync\n  namespace: {ORPHANS}\n  annotations:\n    helm.sh/hook: pre-install\n  finalizers: [argocd.argoproj.io/hook-finalizer]\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: registry.example/c:1}}]\n"
        ))?;
        helm(&["uninstall", "leftover", "-n", ORPHANS])?;
        let orphans = ns_label(ORPHANS);
        wait_metric(
            leader,
            "hookguard_hook_orphans",
            &[&orphans, "kind=\"Job\""],
            1.0,
        )?;
        wait_metric(
            leader,
            "hookguard_hook_orphans",
            &[&orphans, "kind=\"Pod\""],
            1.0,
        )?;
        wait_metric(
            leader,
            "hookguard_hook_objects",
            &[&orphans, "kind=\"Pod\"", "state=\"succeeded\""],
            1.0,
        )?;
        // Dry run: the migrate Job is reported, nothing is deleted; the running test Pod and the
        // Pod held by Argo CD's finalizer are never candidates.
        wait_metric(
            leader,
            "hookguard_janitor_deletions_total",
            &[&orphans, "mode=\"dry-run\""],
            1.0,
        )?;
        ensure(
            leader.metric_sum(
                "hookguard_janitor_deletions_total",
                &[&orphans, "kind=\"Job\"", "mode=\"dry-run\""],
            ) == 1.0,
            || leader.metrics(),
        )?;
        let expected: BTreeSet<(String, String, String)> = [
            (ORPHANS, "Job", "leftover-migrate"),
            (ORPHANS, "Pod", "leftover-test-connection"),
            (ORPHANS, "Pod", "argo-presync"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        let present = hooks_per_kubectl(env, &[ORPHANS]);
        ensure(present == expected, || {
            format!("after the dry run: {present:?}")
        })?;

        // `hookguard audit` agrees with the cluster, object by object.
        for ns in [CHURN, FAIL, ORPHANS] {
            let rows = audit(env, ns)?;
            let audited: BTreeSet<(String, String, String)> = rows
                .iter()
                .map(|r| {
                    (
                        r["namespace"].as_str().unwrap_or_default().to_owned(),
                        r["kind"].as_str().unwrap_or_default().to_owned(),
                        r["name"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let listed = hooks_per_kubectl(env, &[ns]);
            ensure(audited == listed, || {
                format!("audit of {ns}: {audited:?}\nkubectl: {listed:?}")
            })?;
        }
        let rows = audit(env, ORPHANS)?;
        let row = |name: &str| {
            rows.iter()
                .find(|r| r["name"] == name)
                .cloned()
                .unwrap_or_default()
        };
        let problems = |name: &str| -> Vec<String> {
            row(name)["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        };
        ensure(
            problems("leftover-migrate") == ["finished-long-ago", "no-delete-policy", "orphaned"],
            || format!("{:?}", row("leftover-migrate")),
        )?;
        ensure(
            row("leftover-test-connection")["state"] == "active"
                && problems("leftover-test-connection").contains(&"orphaned".to_owned()),
            || format!("{:?}", row("leftover-test-connection")),
        )?;
        ensure(
            row("argo-presync")["release"] == "unknown"
                && !problems("argo-presync").contains(&"orphaned".to_owned()),
            || format!("{:?}", row("argo-presync")),
        )?;
        let failed = audit(env, FAIL)?;
        ensure(
            failed.len() == 1
                && failed[0]["state"] == "failed"
                && failed[0]["problems"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|x| x == "failed")),
            || format!("{failed:?}"),
        )?;

        // Failover: the leader stops, the follower takes over and rebuilds the same inventory
        // from lists without counting existing objects as churn.
        Ok(())
    })();
    let result = result.and_then(|()| {
        let (leader, follower) = if a.metric_sum("hookguard_leader", &[]) == 1.0 {
            (a, b)
        } else {
            (b, a)
        };
        leader.stop();
        let r = (|| -> Result<()> {
            let churn = ns_label(CHURN);
            wait_for(
                "the follower to lead with a synced inventory",
                Duration::from_secs(30),
                || {
                    (follower.metric_sum("hookguard_leader", &[]) == 1.0
                        && follower.metric_sum("hookguard_inventory_up", &[]) == 1.0)
                        .then_some(())
                },
            )?;
            wait_metric(
                &follower,
                "hookguard_hook_objects",
                &[&churn, "kind=\"Job\"", "state=\"succeeded\""],
                3.0,
            )?;
            ensure(
                follower.metric_sum("hookguard_hook_created_total", &[]) == 0.0,
                || "the new leader counted existing hooks as created".to_owned(),
            )?;
            renewals_fail(env, &follower)
        })();
        let _ = env.cluster.run(
            "kubectl",
            &["delete", "--ignore-not-found", "-f", "-"],
            Some(FREEZE_LEASE),
        );
        follower.stop();
        r?;
        // The janitor for real: exactly the finished leftover goes.
        let real = replica(env, "inventory-c", &dir, false)?;
        let orphans = ns_label(ORPHANS);
        let r = (|| -> Result<()> {
            wait_metric(
                &real,
                "hookguard_janitor_deletions_total",
                &[
                    &orphans,
                    "kind=\"Job\"",
                    "reason=\"orphaned\"",
                    "mode=\"delete\"",
                ],
                1.0,
            )?;
            wait_for(
                "the orphaned Job to be gone",
                Duration::from_secs(30),
                || {
                    let present = hooks_per_kubectl(env, &[ORPHANS]);
                    (!present.iter().any(|(_, _, n)| n == "leftover-migrate")).then_some(present)
                },
            )?;
            // The deletion is recorded where `kubectl get events -n` shows it.
            wait_for(
                "the janitor's Event for the deleted Job",
                Duration::from_secs(30),
                || {
                    let events = env
                        .cluster
                        .get_json(&["events.events.k8s.io", "-n", ORPHANS])?;
                    events["items"]
                        .as_array()?
                        .iter()
                        .any(|e| {
                            e["reason"] == "HookDeleted"
                                && e["regarding"]["kind"] == "Job"
                                && e["regarding"]["name"] == "leftover-migrate"
                        })
                        .then_some(())
                },
            )?;
            // Give it a few more rounds: nothing else may go.
            std::thread::sleep(Duration::from_secs(4));
            let present = hooks_per_kubectl(env, &[ORPHANS]);
            let names: Vec<&str> = present.iter().map(|(_, _, n)| n.as_str()).collect();
            ensure(
                names == ["argo-presync", "leftover-test-connection"],
                || format!("left: {names:?}"),
            )?;
            ensure(
                real.metric_sum("hookguard_janitor_deletions_total", &["mode=\"delete\""]) == 1.0,
                || real.metrics(),
            )?;
            ensure(!hooks_per_kubectl(env, &[FAIL]).is_empty(), || {
                "the janitor touched a namespace that did not opt in".to_owned()
            })?;
            Ok(())
        })();
        if r.is_err() {
            eprintln!("===== inventory-c =====\n{}", real.log_tail(40));
        }
        c = Some(real);
        r
    });
    if let Some(c) = c {
        c.stop();
    }
    let _ = env.cluster.kubectl(&[
        "-n",
        ORPHANS,
        "patch",
        "pod",
        "argo-presync",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    for ns in [CHURN, FAIL, ORPHANS, LEASE_NS] {
        let _ = env
            .cluster
            .kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
    result
}

/// Releases stored by `HELM_DRIVER=configmap`: their hooks are orphans exactly once the release
/// is uninstalled.
const CM_NS: &str = "e2e-unguarded-orph-cm";
/// A release whose migration Job lives in `XNS_HOOKS`, another namespace.
const XNS_RELEASE: &str = "e2e-unguarded-orph-rel";
const XNS_HOOKS: &str = "e2e-unguarded-orph-hooks";

/// Orphan detection beyond the Secret driver and the release's own namespace, with one
/// controller (no leader election): a hook of a release stored as ConfigMaps, and a hook created
/// in another namespace than its release's, are not orphans while their release is installed,
/// and are once it is uninstalled; `hookguard audit` agrees.
fn orphans_across_drivers_and_namespaces(env: &Env) -> Result<()> {
    for ns in [CM_NS, XNS_RELEASE, XNS_HOOKS] {
        env.cluster.namespace(ns)?;
    }
    let dir = env.cluster.work.join("orphans");
    let controller = Served::controller(
        "orphans",
        &dir,
        &[
            format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
            "--leader-election=false".to_owned(),
            "--inventory-discovery-interval=2s".to_owned(),
        ],
        &[],
    )?;
    let configmap = [("HELM_DRIVER", "configmap")];
    let result = (|| -> Result<()> {
        let helm = |env_vars: &[(&str, &str)], args: &[&str]| {
            env.cluster.run_ok_env("helm", env_vars, args)
        };
        let chart = chart();
        helm(
            &configmap,
            &["install", "cmshop", &chart, "-n", CM_NS, "--timeout", "90s"],
        )?;
        let records = env
            .cluster
            .get_json(&["configmaps", "-n", CM_NS, "-l", "owner=helm,name=cmshop"])
            .ok_or("cannot list ConfigMaps")?;
        ensure(
            records["items"].as_array().is_some_and(|i| i.len() == 1),
            || format!("HELM_DRIVER=configmap stored no ConfigMap release record: {records}"),
        )?;
        helm(
            &[],
            &[
                "install",
                "xshop",
                &chart,
                "-n",
                XNS_RELEASE,
                "--set",
                &format!("migrate.namespace={XNS_HOOKS}"),
                "--timeout",
                "90s",
            ],
        )?;
        ensure(
            env.cluster
                .get_json(&["job", "xshop-migrate", "-n", XNS_HOOKS])
                .is_some(),
            || format!("the migration Job is not in {XNS_HOOKS}"),
        )?;

        // Both migration Jobs are seen, and stay non-orphans over several discovery rounds.
        for ns in [CM_NS, XNS_HOOKS] {
            wait_metric(
                &controller,
                "hookguard_hook_objects",
                &[&ns_label(ns), "kind=\"Job\"", "state=\"succeeded\""],
                1.0,
            )?;
        }
        std::thread::sleep(Duration::from_secs(5));
        for ns in [CM_NS, XNS_HOOKS] {
            ensure(
                controller.metric_sum("hookguard_hook_orphans", &[&ns_label(ns)]) == 0.0,
                || format!("hooks in {ns} counted as orphans while their release is installed"),
            )?;
            ensure(!audit_problems(env, ns)?.contains("orphaned"), || {
                format!("audit calls a hook in {ns} orphaned while its release is installed")
            })?;
        }

        helm(&configmap, &["uninstall", "cmshop", "-n", CM_NS])?;
        wait_metric(
            &controller,
            "hookguard_hook_orphans",
            &[&ns_label(CM_NS), "kind=\"Job\""],
            1.0,
        )?;
        ensure(audit_problems(env, CM_NS)?.contains("orphaned"), || {
            "audit does not call the hook of the uninstalled ConfigMap release orphaned".to_owned()
        })?;
        ensure(
            controller.metric_sum("hookguard_hook_orphans", &[&ns_label(XNS_HOOKS)]) == 0.0,
            || "uninstalling one release orphaned another's hook".to_owned(),
        )?;

        helm(&[], &["uninstall", "xshop", "-n", XNS_RELEASE])?;
        wait_metric(
            &controller,
            "hookguard_hook_orphans",
            &[&ns_label(XNS_HOOKS), "kind=\"Job\""],
            1.0,
        )?;
        ensure(audit_problems(env, XNS_HOOKS)?.contains("orphaned"), || {
            "audit does not call the cross-namespace hook of the uninstalled release orphaned"
                .to_owned()
        })
    })();
    if result.is_err() {
        eprintln!("===== orphans =====\n{}", controller.log_tail(40));
    }
    controller.stop();
    for ns in [CM_NS, XNS_RELEASE, XNS_HOOKS] {
        let _ = env
            .cluster
            .kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
    result
}

/// Every problem `hookguard audit` reports for the hooks in `ns`.
fn audit_problems(env: &Env, ns: &str) -> Result<BTreeSet<String>> {
    Ok(audit(env, ns)?
        .iter()
        .flat_map(|row| row["problems"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect())
}
