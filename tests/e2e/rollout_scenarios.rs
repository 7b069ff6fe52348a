//! Rolling a rule out namespace by namespace with policy `overrides`, against the real API server
//! and real Helm 3: a release installed while the rule is off; the rule enforced in one namespace
//! by name, where the release's next upgrade is denied while it passes elsewhere; then in a
//! namespace chosen by its labels, which hookguard reads from its Namespace watch
//! (`--namespace-labels`); and HookPolicyExceptions granted by the platform (scenario 19).
//! Simulated: the node (kwok runs no containers).

use std::path::Path;
use std::time::Duration;

use crate::hookguard::Served;
use crate::proc::{Result, ensure, wait_for};
use crate::tools::repo;
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[
    (
        "18-policy-rollout-by-namespace-and-label",
        rollout_by_namespace_and_label,
    ),
    (
        "19-policy-exceptions-granted-by-the-platform",
        exceptions_granted_by_the_platform,
    ),
];

/// hookguard's own namespace here (its certificate Secret).
const OWN_NS: &str = "e2e-rollout";
/// Where the rule is enforced by name.
const BY_NAME: &str = "e2e-rollout-a";
/// Where it is enforced once the namespace carries the label.
const BY_LABEL: &str = "e2e-rollout-b";
const NAME: &str = "e2e-rollout";
const LABEL: &str = "e2e.hookguard.io/image-tag";

/// The release's migration hook uses `:latest`: image-tag fires on every install and upgrade.
const IMAGE_TAG_OFF: &str = "rules:\n  image-tag: \"off\"\n";
const ENFORCED_BY_NAME: &str = "rules:\n  image-tag: \"off\"\noverrides:\n  - namespaces: [e2e-rollout-a]\n    rules: {image-tag: enforce}\n";
const ENFORCED_BY_LABEL: &str = "rules:\n  image-tag: \"off\"\noverrides:\n  - namespaces: [e2e-rollout-a]\n    rules: {image-tag: enforce}\n  - namespaceSelector:\n      matchLabels: {e2e.hookguard.io/image-tag: enforce}\n    rules: {image-tag: enforce}\n";

fn rollout_by_namespace_and_label(env: &Env) -> Result<()> {
    for ns in [OWN_NS, BY_NAME, BY_LABEL] {
        env.cluster.namespace(ns)?;
    }
    let dir = env.cluster.work.join("rollout");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, IMAGE_TAG_OFF).map_err(|e| e.to_string())?;
    let hg = Served::start(
        "hookguard-rollout",
        &dir,
        &[
            format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
            format!("--namespace={OWN_NS}"),
            format!("--cert-secret={NAME}-tls"),
            format!("--webhook-config-name={NAME}"),
            format!("--config={}", policy.display()),
            "--namespace-labels".into(),
            "--reload-interval=300ms".into(),
        ],
        &[],
    )?;
    let result = (|| -> Result<()> {
        register(env, &hg, NAME, &[BY_NAME, BY_LABEL])?;
        let chart = repo().join("tests/e2e/charts/shop").display().to_string();
        let helm = |verb: &str, ns: &str| {
            env.cluster.run(
                "helm",
                &[
                    verb,
                    "app",
                    &chart,
                    "-n",
                    ns,
                    "--set",
                    "migrate.tag=latest",
                    "--timeout",
                    "60s",
                ],
                None,
            )
        };
        let succeeds = |verb: &str, ns: &str| -> Result<()> {
            let out = helm(verb, ns);
            ensure(out.status.success(), || {
                format!(
                    "helm {verb} in {ns} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        };
        let denied = |ns: &str| -> Result<()> {
            let out = helm("upgrade", ns);
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure(
                !out.status.success()
                    && stderr.contains("denied the request")
                    && stderr.contains("image-tag")
                    && stderr.contains("latest"),
                || format!("helm upgrade in {ns} was not denied by image-tag: {stderr}"),
            )
        };

        // Installed while the rule is off, in both namespaces.
        succeeds("install", BY_NAME)?;
        succeeds("install", BY_LABEL)?;

        // Before enforcing: `hookguard audit --policy` predicts which upgrade the candidate
        // denies, from the hooks Helm stored in each release.
        let candidate = dir.join("candidate.yaml");
        std::fs::write(&candidate, ENFORCED_BY_NAME).map_err(|e| e.to_string())?;
        predicts(env, &candidate, BY_NAME, true)?;
        predicts(env, &candidate, BY_LABEL, false)?;

        // Enforced in one namespace by name: its next upgrade fails, the other's passes.
        set_policy(&hg, &policy, ENFORCED_BY_NAME)?;
        // The controller's re-check of the same policy file agrees with `audit --policy`, in
        // its gauge and in the OpenReports Reports it writes.
        env.cluster.apply(OPENREPORTS_STAND_IN)?;
        env.cluster.run_ok(
            "kubectl",
            &[
                "wait",
                "--for=condition=Established",
                "crd/reports.openreports.io",
                "--timeout=30s",
            ],
            None,
        )?;
        let controller = Served::controller(
            "controller-rollout",
            &dir,
            &[
                format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
                format!("--namespace={OWN_NS}"),
                "--leader-election=false".into(),
                "--policy-recheck".into(),
                format!("--config={}", policy.display()),
                "--recheck-interval=3s".into(),
                "--reports=openreports".into(),
                "--events".into(),
            ],
            &[],
        )?;
        let recheck = rechecked(env, &controller, &policy);
        if recheck.is_err() {
            eprintln!(
                "===== controller-rollout =====\n{}",
                controller.log_tail(30)
            );
        }
        controller.stop();
        recheck?;
        denied(BY_NAME)?;
        succeeds("upgrade", BY_LABEL)?;

        // Enforced where the Namespace is labelled: only once the label is there.
        set_policy(&hg, &policy, ENFORCED_BY_LABEL)?;
        succeeds("upgrade", BY_LABEL)?;
        label(env, BY_LABEL, Some("enforce"))?;
        wait_until_judged(env, BY_LABEL, true)?;
        denied(BY_LABEL)?;
        label(env, BY_LABEL, None)?;
        wait_until_judged(env, BY_LABEL, false)?;
        succeeds("upgrade", BY_LABEL)?;
        denied(BY_NAME)?;
        ensure(
            hg.metric_sum(
                "hookguard_namespace_label_lookups_total",
                &["result=\"cached\""],
            ) >= 1.0
                && hg.metric_sum(
                    "hookguard_namespace_label_lookups_total",
                    &["result=\"unknown\""],
                ) == 0.0,
            || hg.metrics(),
        )?;
        eprintln!(
            "e2e:   image-tag off: installed in {BY_NAME} and {BY_LABEL}; enforced in {BY_NAME} by name: its upgrade denied, {BY_LABEL}'s passed; enforced by label: {BY_LABEL}'s upgrade denied while labelled, passed again without"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("===== hookguard-rollout =====\n{}", hg.log_tail(40));
    }
    hg.stop();
    unregister(env, NAME);
    for ns in [BY_NAME, BY_LABEL, OWN_NS] {
        let _ = env
            .cluster
            .kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
    result
}

/// Once `hg` is ready, the chart's webhook configurations (named `name`) for it, for the objects
/// of `namespaces` only, with the caBundle it publishes itself.
fn register(env: &Env, hg: &Served, name: &str, namespaces: &[&str]) -> Result<()> {
    wait_for("ready", Duration::from_secs(30), || {
        hg.ready().then_some(())
    })?;
    env.apply_webhooks(name, &hg.url(), None, namespaces)?;
    wait_for("caBundle published", Duration::from_secs(20), || {
        env.cluster
            .webhook_ca_bundles(name)
            .iter()
            .all(|b| !b.is_empty())
            .then_some(())
    })
}

fn unregister(env: &Env, name: &str) {
    let _ = env.cluster.kubectl(&[
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration",
        name,
        "--ignore-not-found",
    ]);
}

/// `hookguard audit --policy candidate -n ns`: whether it says release `app`'s next upgrade
/// would be denied by image-tag (exit 1) or not (exit 0).
fn predicts(env: &Env, candidate: &Path, ns: &str, denied: bool) -> Result<()> {
    let run = |output: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookguard"))
            .args(["audit", "-n", ns, "-o", output, "--policy"])
            .arg(candidate)
            .arg(format!("--kubeconfig={}", env.cluster.kubeconfig.display()))
            .output()
            .map_err(|e| e.to_string())
    };
    let table = run("table")?;
    let text = String::from_utf8_lossy(&table.stdout).into_owned();
    let line =
        format!("release app (namespace {ns}): its next upgrade would be denied by image-tag");
    ensure(
        table.status.code() == Some(if denied { 1 } else { 0 }) && text.contains(&line) == denied,
        || {
            format!(
                "audit --policy -n {ns} ({:?}): {text}{}",
                table.status.code(),
                String::from_utf8_lossy(&table.stderr)
            )
        },
    )?;
    if denied {
        eprintln!("e2e:   hookguard audit --policy CANDIDATE -n {ns}:\n{text}");
    }
    let json = run("json")?;
    let impacts: serde_json::Value =
        serde_json::from_slice(&json.stdout).map_err(|e| format!("audit json: {e}"))?;
    let stored_denial = impacts.as_array().is_some_and(|all| {
        all.iter().any(|i| {
            i["from"] == "release"
                && i["release"] == "app"
                && i["name"] == "app-migrate"
                && i["findings"].as_array().is_some_and(|f| {
                    f.iter()
                        .any(|f| f["rule"] == "image-tag" && f["action"] == "deny")
                })
        })
    });
    ensure(stored_denial == denied, || {
        format!("audit --policy -n {ns} -o json: {impacts}")
    })
}

/// The controller's `hookguard_policy_violations` for image-tag denials in `BY_NAME` (live and
/// stored in the release) equal what `hookguard audit --policy` counts; none in `BY_LABEL`.
fn rechecked(env: &Env, controller: &Served, policy: &Path) -> Result<()> {
    let gauge = |ns: &str| {
        controller.metric_sum(
            "hookguard_policy_violations",
            &[
                &format!("namespace=\"{ns}\""),
                "rule=\"image-tag\"",
                "effect=\"deny\"",
            ],
        )
    };
    let release_denials = wait_for(
        "the re-check to report the stored hook's denial",
        Duration::from_secs(30),
        || {
            let stored = controller.metric_sum(
                "hookguard_policy_violations",
                &[
                    &format!("namespace=\"{BY_NAME}\""),
                    "rule=\"image-tag\"",
                    "from=\"release\"",
                    "effect=\"deny\"",
                ],
            );
            (stored >= 1.0).then_some(stored)
        },
    )?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookguard"))
        .args(["audit", "-n", BY_NAME, "-o", "json", "--policy"])
        .arg(policy)
        .arg(format!("--kubeconfig={}", env.cluster.kubeconfig.display()))
        .output()
        .map_err(|e| e.to_string())?;
    let impacts: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("audit json: {e}"))?;
    let audited = impacts
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["findings"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["rule"] == "image-tag" && f["action"] == "deny")
        .count() as f64;
    ensure(gauge(BY_NAME) == audited && gauge(BY_LABEL) == 0.0, || {
        format!(
            "re-check: {} image-tag denials in {BY_NAME} ({release_denials} stored in the release), {} in {BY_LABEL}; audit --policy counts {audited}",
            gauge(BY_NAME),
            gauge(BY_LABEL)
        )
    })?;
    // The Reports: as many failing results as denials, in each namespace.
    let report = |ns: &str| {
        wait_for(
            &format!("the OpenReports Report in {ns}"),
            Duration::from_secs(30),
            || {
                env.cluster
                    .get_json(&["reports.openreports.io", "hookguard", "-n", ns])
            },
        )
    };
    let (a, b) = (report(BY_NAME)?, report(BY_LABEL)?);
    let fails = |r: &serde_json::Value| {
        r["results"].as_array().map_or(0, |all| {
            all.iter().filter(|x| x["result"] == "fail").count()
        }) as f64
    };
    ensure(
        a["summary"]["fail"] == serde_json::json!(audited as u64)
            && fails(&a) == audited
            && b["summary"]["fail"] == 0
            && a["source"] == "hookguard",
        || format!("Reports: {BY_NAME} {a}\n{BY_LABEL} {b}"),
    )?;
    // And a Warning Event on the live hook, for `kubectl describe`.
    wait_for(
        "the re-check's Event on the live migration Job",
        Duration::from_secs(30),
        || {
            let events = env
                .cluster
                .get_json(&["events.events.k8s.io", "-n", BY_NAME])?;
            events["items"]
                .as_array()?
                .iter()
                .any(|e| {
                    e["reason"] == "PolicyViolation"
                        && e["type"] == "Warning"
                        && e["regarding"]["name"] == "app-migrate"
                        && e["note"]
                            .as_str()
                            .is_some_and(|n| n.contains("[image-tag] deny"))
                })
                .then_some(())
        },
    )?;
    eprintln!(
        "e2e:   the controller's re-check: {audited} image-tag denials in {BY_NAME} ({release_denials} in the stored release), as audit --policy says, also in its OpenReports Report and as a Warning Event on the live Job; none in {BY_LABEL}"
    );
    Ok(())
}

/// A stand-in for the OpenReports `Report` CRD (a SIMULATION: the test cluster cannot fetch the
/// real one): its real group, version, kind and plural, the fields hookguard writes preserved.
const OPENREPORTS_STAND_IN: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: reports.openreports.io
  labels: {hookguard.test/minimal-crd: "true"}
spec:
  group: openreports.io
  scope: Namespaced
  names: {kind: Report, listKind: ReportList, plural: reports, singular: report, shortNames: [reps]}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;

/// Writes a new policy file and waits until hookguard reports it reloaded.
fn set_policy(hg: &Served, path: &Path, yaml: &str) -> Result<()> {
    let series = "hookguard_config_reloads_total{result=\"success\"}";
    let before = hg.metric(series);
    std::fs::write(path, yaml).map_err(|e| e.to_string())?;
    wait_for("the policy reload", Duration::from_secs(20), || {
        (hg.metric(series) > before).then_some(())
    })
}

/// Sets (`Some`) or removes the rollout label of namespace `ns`.
fn label(env: &Env, ns: &str, value: Option<&str>) -> Result<()> {
    let arg = match value {
        Some(v) => format!("{LABEL}={v}"),
        None => format!("{LABEL}-"),
    };
    env.cluster.run_ok(
        "kubectl",
        &["label", "--overwrite", "namespace", ns, &arg],
        None,
    )?;
    Ok(())
}

/// Waits until a server-side dry run of a `:latest` hook Pod in `ns` is denied (`true`) or
/// admitted (`false`): hookguard's Namespace watch has delivered the label change.
fn wait_until_judged(env: &Env, ns: &str, denied: bool) -> Result<()> {
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: probe\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: test\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: \"registry.example/c:latest\"}}]\n"
    );
    wait_for(
        &format!(
            "a :latest hook in {ns} to be {}",
            if denied { "denied" } else { "admitted" }
        ),
        Duration::from_secs(20),
        || {
            let out = env.cluster.run(
                "kubectl",
                &["create", "--dry-run=server", "-f", "-"],
                Some(&pod),
            );
            (out.status.success() != denied).then_some(())
        },
    )
}

/// hookguard's namespace in scenario 19: where HookPolicyExceptions count.
const PLATFORM_NS: &str = "e2e-exceptions";
/// The team's namespace, whose hook is privileged. Exempt from the suite's own hookguard (which
/// honours no exceptions), so only this scenario's judges it.
const TEAM_NS: &str = "e2e-unguarded-exc-team";
const EXC_NAME: &str = "e2e-exceptions";

/// A HookPolicyException waiving pod-security for the team's `cni-setup` hook, in `ns`.
fn exception_yaml(ns: &str, name: &str, expires: Option<&str>) -> String {
    let expires = expires
        .map(|t| format!("  expires: \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: hookguard.io/v1alpha1\nkind: HookPolicyException\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  rules: [pod-security]\n  match:\n    namespaces: [{TEAM_NS}]\n    names: [cni-setup]\n  reason: the CNI's setup hook needs hostNetwork until the v2 chart\n{expires}"
    )
}

/// HookPolicyExceptions with the real API server: the chart's CRD; one in the team's own
/// namespace waives nothing; the same in hookguard's namespace (the platform's) lets the
/// privileged hook through; after `expires` it no longer does, and the denial says so.
fn exceptions_granted_by_the_platform(env: &Env) -> Result<()> {
    env.cluster.install_chart_crd("hookpolicyexceptions")?;
    for ns in [PLATFORM_NS, TEAM_NS] {
        env.cluster.namespace(ns)?;
    }
    let dir = env.cluster.work.join("exceptions");
    let hg = Served::start(
        "hookguard-exceptions",
        &dir,
        &[
            format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
            format!("--namespace={PLATFORM_NS}"),
            format!("--cert-secret={EXC_NAME}-tls"),
            format!("--webhook-config-name={EXC_NAME}"),
            "--policy-exceptions".into(),
        ],
        &[],
    )?;
    let result = (|| -> Result<()> {
        register(env, &hg, EXC_NAME, &[TEAM_NS])?;
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: cni-setup\n  namespace: {TEAM_NS}\n  annotations:\n    helm.sh/hook: pre-install\nspec:\n  hostNetwork: true\n  restartPolicy: Never\n  containers: [{{name: c, image: \"registry.example/cni:1.0\"}}]\n"
        );
        // A server-side dry run goes through both webhooks and stores nothing.
        let dry_run = || {
            env.cluster.run(
                "kubectl",
                &["create", "--dry-run=server", "-f", "-"],
                Some(&pod),
            )
        };
        let admitted = |want: bool, what: &str| {
            wait_for(what, Duration::from_secs(20), || {
                let out = dry_run();
                (out.status.success() == want).then_some(out)
            })
        };
        let denied = admitted(false, "the privileged hook to be denied")?;
        ensure(
            String::from_utf8_lossy(&denied.stderr).contains("pod-security"),
            || format!("{}", String::from_utf8_lossy(&denied.stderr)),
        )?;

        // Granted in the team's own namespace: ignored. Then by the platform: honoured (the
        // team's, created first, has been seen by then).
        env.cluster
            .apply(&exception_yaml(TEAM_NS, "self-granted", None))?;
        env.cluster
            .apply(&exception_yaml(PLATFORM_NS, "cni-hostnetwork", None))?;
        admitted(
            true,
            "the hook to be admitted under the platform's exception",
        )?;
        env.cluster.run_ok(
            "kubectl",
            &[
                "delete",
                "hookpolicyexception",
                "cni-hostnetwork",
                "-n",
                PLATFORM_NS,
            ],
            None,
        )?;
        admitted(
            false,
            "the hook to be denied with only the team's own exception",
        )?;

        // An exception that expires in a few seconds: honoured, then not, and the denial names it.
        let expires =
            k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(6);
        env.cluster.apply(&exception_yaml(
            PLATFORM_NS,
            "short-lived",
            Some(&expires.to_string()),
        ))?;
        admitted(true, "the hook to be admitted before the exception expires")?;
        let out = admitted(false, "the hook to be denied once the exception expired")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure(
            stderr.contains(&format!(
                "HookPolicyException {PLATFORM_NS}/short-lived has expired"
            )),
            || format!("the denial does not name the expired exception: {stderr}"),
        )?;
        let count = |result: &str| {
            hg.metric_sum(
                "hookguard_policy_exceptions_total",
                &["rule=\"pod-security\"", &format!("result=\"{result}\"")],
            )
        };
        ensure(count("applied") >= 2.0 && count("expired") >= 1.0, || {
            hg.metrics()
        })?;
        eprintln!(
            "e2e:   a HookPolicyException in {TEAM_NS} waived nothing; in {PLATFORM_NS} it let the privileged hook through; after expires the hook was denied again, naming it"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("===== hookguard-exceptions =====\n{}", hg.log_tail(40));
    }
    hg.stop();
    unregister(env, EXC_NAME);
    for ns in [TEAM_NS, PLATFORM_NS] {
        let _ = env
            .cluster
            .kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
    result
}
