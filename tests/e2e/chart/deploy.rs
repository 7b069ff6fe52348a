//! 11-chart-deploy-manifests-current: `deploy/` is what the chart renders today, its `--check`
//! really detects drift, and `kubectl apply -k deploy/` yields objects kube-apiserver accepts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::dry_run::{install_minimal_crds, remove_minimal_crds, server_dry_run_apply};
use super::{check_dashboard_configmap, named, one, parse_docs, run_ok};
use crate::Env;
use crate::proc::{Result, ensure, out_text};
use crate::tools::repo;

pub(super) fn deploy_manifests_current(env: &Env) -> Result<()> {
    // deploy/ is what the chart renders today.
    let out = render_deploy(env, &repo(), true);
    ensure(out.status.success(), || {
        format!(
            "deploy/ has drifted from the chart (run scripts/render-deploy.sh): {}",
            out_text(&out)
        )
    })?;
    check_detects_drift(env)?;
    kustomize_output_is_accepted(env)
}

/// Runs scripts/render-deploy.sh from `root` (the repository or a copy of it).
fn render_deploy(env: &Env, root: &Path, check: bool) -> Output {
    let mut cmd = Command::new(root.join("scripts/render-deploy.sh"));
    if check {
        cmd.arg("--check");
    }
    cmd.env("HELM", env.cluster.bin.join("helm"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run render-deploy.sh: {e}"))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Replaces the first `from` in the file with `to`; returns what the file held before.
fn edit(path: &Path, from: &str, to: &str) -> Result<String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    fs::write(path, text.replacen(from, to, 1)).map_err(|e| e.to_string())?;
    Ok(text)
}

/// `render-deploy.sh --check` in `copy` exits 1 and its diff shows every one of `diff_lines`;
/// `what` names the change for the error.
fn check_fails_showing(env: &Env, copy: &Path, what: &str, diff_lines: &[&str]) -> Result<()> {
    let out = render_deploy(env, copy, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.code() == Some(1) && diff_lines.iter().all(|l| stdout.contains(l)),
        || format!("--check missed a changed {what}: {}", out_text(&out)),
    )
}

/// --check really detects drift: in a copy of the repository, change a chart default, then the
/// dashboard (rendered into deploy/grafana/ too).
fn check_detects_drift(env: &Env) -> Result<()> {
    let copy: PathBuf = env.cluster.work.join("render-deploy-copy");
    let _ = fs::remove_dir_all(&copy);
    for dir in ["scripts", "charts", "deploy", "examples"] {
        copy_dir(&repo().join(dir), &copy.join(dir))?;
    }
    let values = copy.join("charts/hookguard/values.yaml");
    let text = edit(&values, "\nreplicas: 2\n", "\nreplicas: 3\n")?;
    check_fails_showing(env, &copy, "default", &["-  replicas: 2", "+  replicas: 3"])?;
    fs::write(&values, &text).map_err(|e| e.to_string())?;
    edit(
        &copy.join("charts/hookguard/dashboards/hookguard.json"),
        "\"title\": \"hookguard\"",
        "\"title\": \"hookguard changed\"",
    )?;
    check_fails_showing(
        env,
        &copy,
        "dashboard",
        &[
            "deploy/grafana/hookguard-dashboard.json (rendered)",
            "+  \"title\": \"hookguard changed\"",
        ],
    )?;
    let _ = fs::remove_dir_all(&copy);
    Ok(())
}

/// kubectl apply -k deploy/: the namespace, the chart, the ConfigMap from deploy/policy.yaml;
/// kube-apiserver accepts every object (dry run).
fn kustomize_output_is_accepted(env: &Env) -> Result<()> {
    let deploy = repo().join("deploy");
    let out = run_ok(
        env,
        "kubectl",
        &["kustomize", &deploy.display().to_string()],
        None,
    )?;
    let built = String::from_utf8_lossy(&out.stdout).into_owned();
    let docs = parse_docs(&built)?;
    let policy_file = fs::read_to_string(deploy.join("policy.yaml")).map_err(|e| e.to_string())?;
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "hookguard-policy")
        .ok_or("no ConfigMap hookguard-policy in kustomize output")?;
    ensure(cm["data"]["policy.yaml"] == policy_file.as_str(), || {
        "kustomize did not replace the policy with deploy/policy.yaml".into()
    })?;
    ensure(
        one(&docs, "Namespace")?["metadata"]["name"] == "hookguard",
        || "namespace".into(),
    )?;
    ensure(!docs.iter().any(|d| d["kind"] == "Secret"), || {
        "deploy/ must not embed key material".into()
    })?;
    check_dashboard_configmap(
        named(&docs, "ConfigMap", "hookguard-dashboard")?,
        "hookguard",
    )?;
    // The namespace exists only for the dry run.
    let created_ns = env.cluster.get_json(&["namespace", "hookguard"]).is_none();
    if created_ns {
        env.cluster.namespace("hookguard")?;
    }
    install_minimal_crds(env)?;
    let without_ns: Vec<String> = built
        .split("\n---\n")
        .filter(|d| !d.contains("\nkind: Namespace\n") && !d.starts_with("kind: Namespace\n"))
        .map(str::to_owned)
        .collect();
    let result = server_dry_run_apply(env, &without_ns.join("\n---\n"));
    remove_minimal_crds(env);
    if created_ns {
        let _ = env
            .cluster
            .kubectl(&["delete", "namespace", "hookguard", "--wait=false"]);
    }
    let accepted = result.map_err(|e| format!("kubectl apply -k deploy/ (dry run): {e}"))?;
    ensure(accepted == docs.len() - 1, || {
        format!("{accepted} of {} objects accepted", docs.len() - 1)
    })?;
    eprintln!(
        "e2e:   deploy/ is current; kubectl apply -k deploy/ accepted ({accepted} objects, dry run)"
    );
    Ok(())
}
