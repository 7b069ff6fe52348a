//! Helm 4's plugins from this repository (`plugins/`), installed with `helm plugin install`,
//! and the controller's hook run history, against the real API server with real Helm 4. Pods
//! run on the simulated (kwok) node; what their containers "print" is the simulated node's
//! fixed text per container name (`cluster::SIMULATED_LOGS`): no container runs.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::SIMULATED_LOGS;
use crate::hookguard::{Served, exe};
use crate::proc::{Result, ensure, out_text, wait_for};
use crate::tools::repo;
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[
    ("20-helm4-postrender-plugin", postrender_plugin),
    ("21-hook-run-history", hook_run_history),
];

fn chart() -> String {
    repo()
        .join("tests/e2e/charts/plugged")
        .display()
        .to_string()
}

/// PATH with the `hookguard` binary first: the plugins call `hookguard`.
pub fn path_with_hookguard() -> String {
    let bin = exe();
    let dir = bin.parent().map(PathBuf::from).unwrap_or_default();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Installs both plugins from the repository (again, if an earlier run left them).
fn install_plugins(env: &Env) -> Result<()> {
    for name in ["hookguard", "hookguard-postrender"] {
        let _ = env
            .cluster
            .run("helm4", &["plugin", "uninstall", name], None);
        let dir = repo().join("plugins").join(name);
        env.cluster.run_ok(
            "helm4",
            &["plugin", "install", &dir.display().to_string()],
            None,
        )?;
    }
    let list = env.cluster.run_ok("helm4", &["plugin", "list"], None)?;
    let listed = out_text(&list);
    ensure(
        listed.contains("postrenderer/v1") && listed.contains("cli/v1"),
        || format!("helm4 plugin list does not show both plugins: {listed}"),
    )
}

/// Runs helm4 with the plugins' `hookguard` on PATH.
fn helm4(env: &Env, args: &[&str]) -> Output {
    let path = path_with_hookguard();
    env.cluster
        .run_env("helm4", &[("PATH", path.as_str())], args)
}

fn helm4_ok(env: &Env, args: &[&str]) -> Result<Output> {
    let out = helm4(env, args);
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "helm4 {} failed: {}",
            args.join(" "),
            out_text(&out)
        ))
    }
}

fn postrender_plugin(env: &Env) -> Result<()> {
    install_plugins(env)?;
    let chart = chart();
    let ns = "e2e-plugin";
    env.cluster.namespace(ns)?;
    let pr = "--post-renderer=hookguard-postrender";

    // 1. A hook that forgot restartPolicy and TTL: fixed in the stored release and live.
    helm4_ok(
        env,
        &["install", "fixed", &chart, "-n", ns, pr, "--timeout", "90s"],
    )?;
    let job = env
        .cluster
        .get_json(&["-n", ns, "job/fixed-setup"])
        .ok_or("the setup hook Job is not in the cluster")?;
    ensure(
        job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
            && job["spec"]["ttlSecondsAfterFinished"] == 600,
        || format!("live hook Job not fixed: {}", job["spec"]),
    )?;
    let hooks = out_text(&helm4_ok(env, &["get", "hooks", "fixed", "-n", ns])?);
    for wanted in [
        "restartPolicy: Never",
        "ttlSecondsAfterFinished: 600",
        "helm.sh/hook-output-log-policy: hook-failed",
        "helm.sh/hook-delete-policy: before-hook-creation",
    ] {
        ensure(hooks.contains(wanted), || {
            format!("the release's stored hook manifest lacks {wanted:?}:\n{hooks}")
        })?;
    }
    ensure(!hooks.contains("postrenderer.helm.sh"), || {
        format!("Helm's file annotation leaked into the stored manifest:\n{hooks}")
    })?;

    // 2. A typo'd hook event: the plugin fails the install with the did-you-mean message and
    //    nothing is installed; without it Helm installs the release silently without the hook.
    let typo = "setup.events=pre-instal";
    let refused = helm4(
        env,
        &[
            "install",
            "typo",
            &chart,
            "-n",
            ns,
            pr,
            "--set",
            typo,
            "--timeout",
            "60s",
        ],
    );
    let said = out_text(&refused);
    ensure(!refused.status.success(), || {
        format!("install with a typo'd hook event succeeded with the plugin: {said}")
    })?;
    ensure(
        said.contains("did you mean \"pre-install\"") && said.contains("templates/setup-job.yaml"),
        || format!("the refusal does not say what to fix: {said}"),
    )?;
    ensure(
        !helm4(env, &["status", "typo", "-n", ns]).status.success(),
        || "a release was recorded although the render was refused".into(),
    )?;
    let silent = helm4_ok(
        env,
        &[
            "install",
            "typo",
            &chart,
            "-n",
            ns,
            "--set",
            typo,
            "--timeout",
            "60s",
        ],
    )?;
    ensure(
        env.cluster
            .get_json(&["-n", ns, "job/typo-setup"])
            .is_none()
            && env
                .cluster
                .get_json(&["-n", ns, "configmap/typo-settings"])
                .is_some(),
        || {
            format!(
                "without the plugin Helm should install the release without the hook: {}",
                out_text(&silent)
            )
        },
    )?;

    // 3. `helm hookguard lint` sees the typo too (helm template alone drops the hook).
    let lint = helm4(env, &["hookguard", "lint", &chart, "--set", typo]);
    let linted = out_text(&lint);
    ensure(
        lint.status.code() == Some(1) && linted.contains("did you mean \"pre-install\""),
        || format!("helm hookguard lint did not deny the typo: {linted}"),
    )?;
    // A denied hook whose template is guarded by a value: lint names that value, and the
    //    platform's ways out (override, exception).
    let strict =
        std::env::temp_dir().join(format!("hookguard-e2e-strict-{}.yaml", std::process::id()));
    std::fs::write(
        &strict,
        "rules: {image-tag: enforce}\nimageTag: {mutableTags: [\"1.36\"]}\n",
    )
    .map_err(|e| e.to_string())?;
    let path = path_with_hookguard();
    let guarded = env.cluster.run_env(
        "helm4",
        &[
            ("PATH", path.as_str()),
            ("HOOKGUARD_CONFIG", &strict.display().to_string()),
        ],
        &["hookguard", "lint", &chart, "--set", "check.enabled=true"],
    );
    let _ = std::fs::remove_file(&strict);
    let linted = out_text(&guarded);
    ensure(
        guarded.status.code() == Some(1)
            && linted.contains(
                "plugged/templates/check-job.yaml: to skip this hook without changing the chart: --set check.enabled=false",
            )
            && linted.contains("without changing the chart:")
            && linted.contains("HookPolicyException"),
        || format!("helm hookguard lint did not name the ways out: {linted}"),
    )?;
    let clean = helm4(env, &["hookguard", "lint", &chart]);
    ensure(clean.status.success(), || {
        format!(
            "helm hookguard lint denied a clean chart: {}",
            out_text(&clean)
        )
    })?;

    // 4. A failing hook: Helm prints its container's log, because the plugin added the
    //    output-log policy (the chart names none).
    let failed = helm4(
        env,
        &[
            "install",
            "failing",
            &chart,
            "-n",
            ns,
            pr,
            "--set",
            "check.enabled=true",
            "--set",
            "check.fail=true",
            "--timeout",
            "60s",
        ],
    );
    let said = out_text(&failed);
    let (_, fail_lines) = SIMULATED_LOGS
        .iter()
        .find(|(c, _)| *c == "history-fail")
        .ok_or("no simulated log for history-fail")?;
    ensure(!failed.status.success(), || {
        format!("install with a failing hook succeeded: {said}")
    })?;
    ensure(fail_lines.iter().all(|l| said.contains(l)), || {
        format!("Helm did not print the failed hook's log {fail_lines:?}: {said}")
    })?;
    Ok(())
}

/// `hookguard history` against the controller's records.
pub fn history(env: &Env, hg_ns: &str, release: &str, ns: &str, extra: &[&str]) -> Result<Value> {
    let mut args = vec![
        "history".to_owned(),
        release.to_owned(),
        "-n".to_owned(),
        ns.to_owned(),
        format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
        format!("--hookguard-namespace={hg_ns}"),
        "-o".to_owned(),
        "json".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let out = Command::new(exe())
        .args(&args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("hookguard {}: {}", args.join(" "), out_text(&out)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn start_controller(env: &Env, hg_ns: &str, name: &str) -> Result<Served> {
    let dir = env.cluster.work.join("history");
    Served::controller(
        name,
        &dir,
        &[
            format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
            "--leader-election=false".to_owned(),
            format!("--namespace={hg_ns}"),
            "--helm-drivers=secret".to_owned(),
        ],
        &[],
    )
}

pub fn run_of<'v>(history: &'v Value, name: &str) -> Option<&'v Value> {
    history["runs"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
}

fn hook_run_history(env: &Env) -> Result<()> {
    let (hg_ns, ns) = ("e2e-history-hg", "e2e-history");
    env.cluster.install_chart_crd("hookrunhistories")?;
    env.cluster.namespace(hg_ns)?;
    env.cluster.namespace(ns)?;
    let controller = start_controller(env, hg_ns, "history-1")?;
    let chart = chart();
    // setup (pre-install, hook-succeeded) succeeds and check (post-install, hook-failed) fails:
    // Helm deletes both.
    let failed = helm4(
        env,
        &[
            "install",
            "hist",
            &chart,
            "-n",
            ns,
            "--set",
            "setup.deletePolicy=hook-succeeded",
            "--set",
            "check.enabled=true",
            "--set",
            "check.fail=true",
            "--timeout",
            "60s",
        ],
    );
    ensure(!failed.status.success(), || {
        format!(
            "install with a failing check hook succeeded: {}",
            out_text(&failed)
        )
    })?;
    wait_for(
        "Helm to delete both hook Jobs",
        Duration::from_secs(30),
        || {
            (env.cluster
                .get_json(&["-n", ns, "job/hist-setup"])
                .is_none()
                && env
                    .cluster
                    .get_json(&["-n", ns, "job/hist-check"])
                    .is_none())
            .then_some(())
        },
    )?;
    let log_of = |container: &str| {
        SIMULATED_LOGS
            .iter()
            .find(|(c, _)| *c == container)
            .map(|(_, lines)| *lines)
            .unwrap_or_default()
    };
    let complete = |h: &Value| {
        ["hist-setup", "hist-check"].iter().all(|n| {
            run_of(h, n).is_some_and(|r| {
                r["outcome"] != "running"
                    && r["logs"].as_array().is_some_and(|l| {
                        l.iter()
                            .any(|l| l["log"].as_str().is_some_and(|t| !t.is_empty()))
                    })
            })
        })
    };
    let recorded = wait_for(
        "both runs recorded with logs",
        Duration::from_secs(30),
        || {
            history(env, hg_ns, "hist", ns, &["--logs"])
                .ok()
                .filter(complete)
        },
    )?;
    let check_expectations = |h: &Value| -> Result<()> {
        let setup = run_of(h, "hist-setup").ok_or("no run of hist-setup")?;
        let check = run_of(h, "hist-check").ok_or("no run of hist-check")?;
        ensure(
            setup["outcome"] == "succeeded"
                && setup["revision"] == 1
                && setup["kind"] == "Job"
                && setup["events"] == serde_json::json!(["pre-install", "pre-upgrade"])
                && setup["durationSeconds"].as_i64().is_some(),
            || format!("setup run: {setup}"),
        )?;
        ensure(
            check["outcome"] == "failed" && check["revision"] == 1,
            || format!("check run (found through the release record, no label): {check}"),
        )?;
        for (run, container) in [(setup, "history-ok"), (check, "history-fail")] {
            let text: String = run["logs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|l| l["container"] == container)
                .filter_map(|l| l["log"].as_str())
                .collect();
            ensure(log_of(container).iter().all(|l| text.contains(l)), || {
                format!(
                    "run {} lacks its log lines {:?}: {run}",
                    run["name"],
                    log_of(container)
                )
            })?;
        }
        Ok(())
    };
    check_expectations(&recorded)?;
    ensure(
        controller.metric("hookguard_history_logs_missed_total") == 0.0,
        || format!("logs reported missed: {}", controller.log_tail(20)),
    )?;

    // The history survives a restart of the controller, which goes on recording.
    controller.stop();
    let controller = start_controller(env, hg_ns, "history-2")?;
    check_expectations(&history(env, hg_ns, "hist", ns, &["--logs"])?)?;
    helm4_ok(
        env,
        &[
            "upgrade",
            "hist",
            &chart,
            "-n",
            ns,
            "--set",
            "setup.deletePolicy=hook-succeeded",
            "--timeout",
            "60s",
        ],
    )?;
    let upgraded = wait_for(
        "the upgrade's run recorded",
        Duration::from_secs(30),
        || {
            history(env, hg_ns, "hist", ns, &["--revision", "2"])
                .ok()
                .filter(|h| run_of(h, "hist-setup").is_some_and(|r| r["outcome"] == "succeeded"))
        },
    )?;
    ensure(
        upgraded["runs"].as_array().is_some_and(|r| r.len() == 1),
        || format!("--revision 2 should show the upgrade's one run: {upgraded}"),
    )?;
    let all = history(env, hg_ns, "hist", ns, &[])?;
    ensure(
        all["runs"].as_array().is_some_and(|r| r.len() == 3) && all["runs"][0]["logs"].is_null(),
        || format!("three runs without logs expected: {all}"),
    )?;
    // The table form, as a person reads it.
    let table = Command::new(exe())
        .args([
            "history",
            "hist",
            "-n",
            ns,
            &format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
            &format!("--hookguard-namespace={hg_ns}"),
            "--logs",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let text = out_text(&table);
    ensure(
        text.contains("hist-check")
            && text.contains("failed")
            && text.contains("check: FAILED: connection refused"),
        || format!("hookguard history table: {text}"),
    )?;
    controller.stop();
    Ok(())
}
