//! UPDATE ratcheting: hooks that already exist with violations (created while their namespace
//! was exempt, as they would be before hookguard was installed, while it was down, or before a
//! policy was tightened) are not locked in place by the policy. A metadata-only UPDATE is allowed
//! with the old violations as warnings; a terminating hook can have its finalizer removed and go
//! away; an UPDATE that introduces a new violation is still denied with the rule's message.
//!
//! Real: the API server, its webhook calls and kubectl. SIMULATED: the node (kwok) that finishes
//! the Pod; Argo CD's finalizer is set by the test, no Argo CD runs.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::proc::{Result, ensure};
use crate::scenarios::{hook_job, hook_pod, text};
use crate::{DEFAULT_POLICY, Env, Scenario};

pub const ALL: &[Scenario] = &[("16-update-ratcheting-of-existing-hooks", update_ratcheting)];

const NS: &str = "e2e-ratchet";
const FINALIZER: &str = "argocd.argoproj.io/hook-finalizer";

/// A privileged hook Pod held by Argo CD's hook finalizer.
fn privileged_pod_with_finalizer() -> String {
    hook_pod(NS, "privileged", "  restartPolicy: Never\n")
        .replace(
            &format!("  namespace: {NS}\n"),
            &format!("  namespace: {NS}\n  finalizers: [{FINALIZER}]\n"),
        )
        .replace(
            "    image: registry.example/test:1.0\n",
            "    image: registry.example/test:1.0\n    securityContext:\n      privileged: true\n",
        )
}

/// A hook Job whose weight Helm cannot parse (Helm silently runs it as weight 0).
fn job_with_bad_weight() -> String {
    hook_job(
        NS,
        "weighted",
        "    helm.sh/hook-weight: \"5.0\"\n",
        "",
        "      restartPolicy: Never\n",
    )
}

/// Creates both while the namespace is exempt, and checks they were stored as they are.
fn create_while_exempt(env: &Env) -> Result<()> {
    let c = &env.cluster;
    env.set_policy(&format!(
        "exemptions:\n  namespaces: [kube-system, \"e2e-unguarded-*\", {NS}]\n"
    ))?;
    let created: Result<()> = (|| {
        c.apply(&privileged_pod_with_finalizer())?;
        c.apply(&job_with_bad_weight())?;
        let pod = c
            .get_json(&["-n", NS, "pod/privileged"])
            .ok_or("pod not stored")?;
        ensure(
            pod["spec"]["containers"][0]["securityContext"]["privileged"] == true
                && pod["metadata"]["labels"]["hookguard.io/hook"].is_null(),
            || format!("the exempt pod was changed: {}", pod["metadata"]),
        )
    })();
    // The exemption goes, whatever happened: from now on the default policy applies to them.
    env.set_policy(DEFAULT_POLICY)?;
    created
}

/// `kubectl -n e2e-ratchet <args>` that must succeed; its stderr (where kubectl prints warnings).
fn allowed(c: &Cluster, args: &[&str]) -> Result<String> {
    let mut all = vec!["-n", NS];
    all.extend_from_slice(args);
    Ok(text(&c.run_ok("kubectl", &all, None)?.stderr))
}

fn update_ratcheting(env: &Env) -> Result<()> {
    let c = &env.cluster;
    c.namespace(NS)?;
    create_while_exempt(env)?;

    // Label-only UPDATEs are allowed; the violations they already had are warnings.
    let warned = allowed(c, &["label", "pod/privileged", "team=payments"])?;
    ensure(
        warned.contains("Warning:") && warned.contains("[pod-security]"),
        || format!("label of the privileged hook Pod: no pod-security warning in {warned:?}"),
    )?;
    let warned = allowed(c, &["label", "job/weighted", "team=payments"])?;
    ensure(
        warned.contains("Warning:") && warned.contains("[hook-weight-invalid]"),
        || format!("label of the hook Job: no hook-weight-invalid warning in {warned:?}"),
    )?;
    for object in ["pod/privileged", "job/weighted"] {
        let stored = c.get_json(&["-n", NS, object]).ok_or("object gone")?;
        ensure(stored["metadata"]["labels"]["team"] == "payments", || {
            format!("{object}: label not stored")
        })?;
    }

    // An UPDATE that adds a violation the stored object did not have is still denied.
    let out = c.run_fails(
        "kubectl",
        &[
            "-n",
            NS,
            "annotate",
            "job/weighted",
            "--overwrite",
            "helm.sh/hook-delete-policy=before-hook-creations",
        ],
    )?;
    let err = text(&out.stderr);
    for needle in [
        "admission webhook \"validate.hookguard.io\" denied the request",
        "[delete-policy-unknown]",
        "did you mean \"before-hook-creation\"",
    ] {
        ensure(err.contains(needle), || {
            format!("new violation: {needle:?} not in {err}")
        })?;
    }
    let job = c.get_json(&["-n", NS, "job/weighted"]).ok_or("job gone")?;
    ensure(
        job["metadata"]["annotations"]["helm.sh/hook-delete-policy"] != "before-hook-creations",
        || "the denied annotation was stored".into(),
    )?;

    // Deleted, the Pod stays Terminating while Argo CD's finalizer holds it; removing the
    // finalizer (what Argo CD does when the hook is done) is allowed, and the Pod is gone.
    allowed(c, &["delete", "pod/privileged", "--wait=false"])?;
    let pod = c
        .get_json(&["-n", NS, "pod/privileged"])
        .ok_or("the Pod went away despite its finalizer")?;
    ensure(!pod["metadata"]["deletionTimestamp"].is_null(), || {
        "the deleted Pod is not terminating".into()
    })?;
    allowed(
        c,
        &[
            "patch",
            "pod/privileged",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
    )?;
    c.wait_gone(&["-n", NS, "pod/privileged"], Duration::from_secs(60))
}
