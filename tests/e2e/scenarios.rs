//! Scenarios driven with kubectl: what the API server stores, rejects and warns about.

use std::time::Duration;

use crate::proc::{Result, ensure, wait_for};
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[
    ("01-defaults-pod-and-job", defaults_pod_and_job),
    ("02-ttl-zero-raised-to-floor", ttl_zero_raised_to_floor),
    (
        "03-unsafe-hooks-rejected-with-fix",
        unsafe_hooks_rejected_with_fix,
    ),
    ("04-warnings-reach-kubectl", warnings_reach_kubectl),
    (
        "05-non-hooks-never-reach-hookguard",
        non_hooks_never_reach_hookguard,
    ),
    (
        "09-failure-policies-when-hookguard-is-down",
        failure_policies_when_down,
    ),
    (
        "10-certificate-rotation-under-load",
        certificate_rotation_under_load,
    ),
];

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn hook_pod(ns: &str, name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: test\nspec:\n{extra_spec}  containers:\n  - name: main\n    image: registry.example/test:1.0\n"
    )
}

pub fn hook_job(
    ns: &str,
    name: &str,
    annotations: &str,
    spec_extra: &str,
    pod_extra: &str,
) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: pre-install\n{annotations}spec:\n{spec_extra}  template:\n    spec:\n{pod_extra}      containers:\n      - name: main\n        image: registry.example/migrate:2.3.1\n"
    )
}

fn defaults_pod_and_job(env: &Env) -> Result<()> {
    let c = &env.cluster;
    let ns = "e2e-defaults";
    c.namespace(ns)?;
    c.apply(&hook_pod(ns, "test-pod", ""))?;
    let pod = c
        .get_json(&["-n", ns, "pod/test-pod"])
        .ok_or("pod not stored")?;
    ensure(pod["spec"]["restartPolicy"] == "Never", || {
        format!("restartPolicy {}", pod["spec"]["restartPolicy"])
    })?;
    ensure(
        pod["metadata"]["labels"]["hookguard.io/hook"] == "true",
        || "no hookguard label".into(),
    )?;
    ensure(
        pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation",
        || "no default delete policy".into(),
    )?;
    // The simulated node finishes a Never pod: Succeeded (a real kubelet would too).
    wait_for("test pod Succeeded", Duration::from_secs(60), || {
        let p = c.get_json(&["-n", ns, "pod/test-pod"])?;
        (p["status"]["phase"] == "Succeeded").then_some(())
    })?;

    c.apply(&hook_job(ns, "migrate", "", "", ""))?;
    let job = c
        .get_json(&["-n", ns, "job/migrate"])
        .ok_or("job not stored")?;
    ensure(
        job["spec"]["template"]["spec"]["restartPolicy"] == "Never",
        || "job restartPolicy".into(),
    )?;
    ensure(job["spec"]["ttlSecondsAfterFinished"] == 600, || {
        format!("ttl {}", job["spec"]["ttlSecondsAfterFinished"])
    })?;
    ensure(
        job["metadata"]["annotations"]["hookguard.io/mutated"]
            == "restart-policy,job-ttl,delete-policy-default",
        || format!("mutated annotation {}", job["metadata"]["annotations"]),
    )?;

    // Without hookguard (no helm.sh/hook: never sent), the API server itself rejects the same Job:
    // the template is defaulted to restartPolicy Always, which a Job may not use.
    let plain = hook_job(ns, "plain", "", "", "")
        .replace("    helm.sh/hook: pre-install\n", "    note: not-a-hook\n");
    let err = c
        .apply(&plain)
        .err()
        .ok_or("a Job without restartPolicy was accepted")?;
    ensure(
        err.contains("spec.template.spec.restartPolicy: Required value"),
        || err.clone(),
    )?;
    Ok(())
}

fn ttl_zero_raised_to_floor(env: &Env) -> Result<()> {
    let c = &env.cluster;
    let ns = "e2e-ttl";
    c.namespace(ns)?;
    c.apply(&hook_job(
        ns,
        "ttl-zero",
        "",
        "  ttlSecondsAfterFinished: 0\n",
        "      restartPolicy: Never\n",
    ))?;
    let job = c
        .get_json(&["-n", ns, "job/ttl-zero"])
        .ok_or("job not stored")?;
    ensure(job["spec"]["ttlSecondsAfterFinished"] == 60, || {
        format!("ttl {}", job["spec"]["ttlSecondsAfterFinished"])
    })?;
    c.apply(&hook_job(
        ns,
        "ttl-long",
        "",
        "  ttlSecondsAfterFinished: 3600\n",
        "      restartPolicy: OnFailure\n",
    ))?;
    let job = c
        .get_json(&["-n", ns, "job/ttl-long"])
        .ok_or("job not stored")?;
    ensure(job["spec"]["ttlSecondsAfterFinished"] == 3600, || {
        "explicit TTL above the floor changed".into()
    })?;
    ensure(
        job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure",
        || "OnFailure changed".into(),
    )?;
    Ok(())
}

fn unsafe_hooks_rejected_with_fix(env: &Env) -> Result<()> {
    let c = &env.cluster;
    let ns = "e2e-deny";
    c.namespace(ns)?;
    let cases = [
        (
            "typo'd delete policy",
            hook_job(ns, "typo-policy", "    helm.sh/hook-delete-policy: before-hook-creations\n", "", ""),
            vec!["[delete-policy-unknown]", "did you mean \"before-hook-creation\""],
        ),
        (
            "unknown event",
            hook_job(ns, "typo-event", "", "", "").replace("helm.sh/hook: pre-install", "helm.sh/hook: pre-instal"),
            vec!["[hook-event-unknown]", "did you mean \"pre-install\""],
        ),
        (
            "crd-install",
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: crd-hook\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: crd-install\ndata: {{}}\n"),
            vec!["[hook-event-unknown]", "crds/ directory"],
        ),
        (
            "Deployment as hook",
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: warmup\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: post-install\nspec:\n  selector:\n    matchLabels: {{app: w}}\n  template:\n    metadata:\n      labels: {{app: w}}\n    spec:\n      containers:\n      - name: w\n        image: registry.example/w:1.0\n"),
            vec!["[hook-kind-long-running]", "remove the helm.sh/hook annotation"],
        ),
        (
            "privileged hook pod",
            hook_pod(ns, "priv", "").replace("    image: registry.example/test:1.0\n", "    image: registry.example/test:1.0\n    securityContext:\n      privileged: true\n"),
            vec!["[pod-security]", "is privileged"],
        ),
    ];
    for (what, yaml, needles) in cases {
        let err = c
            .apply(&yaml)
            .err()
            .ok_or_else(|| format!("{what}: accepted"))?;
        ensure(
            err.contains("admission webhook \"validate.hookguard.io\" denied the request"),
            || format!("{what}: {err}"),
        )?;
        for n in needles {
            ensure(err.contains(n), || format!("{what}: {n:?} not in {err}"))?;
        }
    }
    // Nothing of it was stored.
    let jobs = c.get_json(&["-n", ns, "jobs"]).ok_or("list jobs")?;
    ensure(jobs["items"].as_array().is_some_and(Vec::is_empty), || {
        "a denied Job was stored".into()
    })?;
    Ok(())
}

fn warnings_reach_kubectl(env: &Env) -> Result<()> {
    let c = &env.cluster;
    let ns = "e2e-warn";
    c.namespace(ns)?;
    let yaml = hook_job(
        ns,
        "notify",
        "    helm.sh/hook-delete-policy: hook-succeeded\n",
        "",
        "      restartPolicy: Never\n",
    )
    .replace("registry.example/migrate:2.3.1", "curlimages/curl:latest");
    let out = c.apply(&yaml)?;
    let stderr = text(&out.stderr);
    ensure(
        stderr.contains("Warning: [image-tag]") && stderr.contains("curlimages/curl:latest"),
        || stderr.clone(),
    )?;
    ensure(stderr.contains("Warning: [delete-policy-recreate]"), || {
        stderr.clone()
    })?;
    ensure(c.get_json(&["-n", ns, "job/notify"]).is_some(), || {
        "warned Job not stored".into()
    })?;
    Ok(())
}

fn non_hooks_never_reach_hookguard(env: &Env) -> Result<()> {
    let c = &env.cluster;
    let ns = "e2e-nonhook";
    c.namespace(ns)?;
    let total = || {
        env.hookguard
            .lock()
            .map(|hg| hg.metric_sum("hookguard_admission_requests_total", &[]))
            .unwrap_or(-1.0)
    };
    let before = total();
    c.apply(&format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n  namespace: {ns}\ndata: {{a: b}}\n"))?;
    c.apply(&format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: plain\n  namespace: {ns}\n  annotations:\n    helm.sh/hook-weight: \"5\"\nstringData: {{a: b}}\n"))?;
    c.apply(
        &hook_job(ns, "plain-job", "", "", "      restartPolicy: Never\n")
            .replace("    helm.sh/hook: pre-install\n", "    other: x\n"),
    )?;
    let _ = c.kubectl(&["-n", ns, "label", "configmap", "plain", "x=y"]);
    let _ = c.kubectl(&["-n", ns, "delete", "configmap", "plain", "--wait=false"]);
    let after = total();
    ensure(after == before, || {
        format!("non-hook objects reached hookguard: {before} -> {after}")
    })?;

    // A hook does reach it: once for /mutate and once for /validate.
    c.apply(&format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hook\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: pre-install\ndata: {{a: b}}\n"))?;
    let with_hook = total();
    ensure(with_hook == before + 2.0, || {
        format!("hook create counted {} times", with_hook - before)
    })?;
    Ok(())
}

fn failure_policies_when_down(env: &Env) -> Result<()> {
    let c = &env.cluster;
    let ns = "e2e-down";
    c.namespace(ns)?;
    env.hookguard.lock().map_err(|e| e.to_string())?.stop();
    let result: Result<()> = (|| {
        // Validating webhook failurePolicy Fail: hook creates are refused with a clear error.
        let err = c
            .apply(&hook_pod(ns, "refused", ""))
            .err()
            .ok_or("hook created while hookguard is down")?;
        ensure(
            err.contains("failed calling webhook \"validate.hookguard.io\""),
            || err.clone(),
        )?;
        // Non-hook objects are never affected.
        c.apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unaffected\n  namespace: {ns}\n"
        ))?;
        // With the validating webhook on Ignore as well, hooks get through, unmutated (the
        // mutating webhook is on Ignore).
        let patch = r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#;
        let out = c.kubectl(&[
            "patch",
            "validatingwebhookconfiguration",
            "hookguard",
            "--type=json",
            "-p",
            patch,
        ]);
        ensure(out.status.success(), || text(&out.stderr))?;
        c.apply(&hook_pod(ns, "unmutated", ""))?;
        let pod = c
            .get_json(&["-n", ns, "pod/unmutated"])
            .ok_or("pod not stored")?;
        ensure(pod["spec"]["restartPolicy"] == "Always", || {
            "mutated while down?".into()
        })?;
        ensure(
            pod["metadata"]["labels"]["hookguard.io/hook"].is_null(),
            || "labelled while down?".into(),
        )?;
        Ok(())
    })();
    // Back to the chart's configuration and a running hookguard, whatever happened above.
    env.hookguard.lock().map_err(|e| e.to_string())?.restart()?;
    env.register_webhooks()?;
    result?;
    c.apply(&hook_pod(ns, "after-restart", ""))?;
    let pod = c
        .get_json(&["-n", ns, "pod/after-restart"])
        .ok_or("pod not stored")?;
    ensure(pod["spec"]["restartPolicy"] == "Never", || {
        "not mutated after restart".into()
    })?;
    Ok(())
}

fn certificate_rotation_under_load(env: &Env) -> Result<()> {
    let c = &env.cluster;
    let ns = "e2e-rotate";
    c.namespace(ns)?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (created, failures) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let (mut created, mut failures) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || created < 10 {
                let yaml = format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hook-{created}\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: pre-upgrade\n    helm.sh/hook-delete-policy: before-hook-creation\ndata: {{n: \"{created}\"}}\n"
                );
                match c.apply(&yaml) {
                    Ok(_) => created += 1,
                    Err(e) => {
                        failures.push(e);
                        created += 1;
                    }
                }
            }
            (created, failures)
        });
        let mut result = Ok(());
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(700));
            let hg = env.hookguard.lock();
            if let Err(e) = hg
                .map_err(|e| e.to_string())
                .and_then(|h| h.rotate_certificate())
            {
                result = Err(e);
            }
        }
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let out = load
            .join()
            .unwrap_or((0, vec!["load thread panicked".into()]));
        result.map(|_| out).unwrap_or_else(|e| (0, vec![e]))
    });
    ensure(failures.is_empty(), || {
        format!(
            "{} of {created} admissions failed during rotation: {:?}",
            failures.len(),
            failures.first()
        )
    })?;
    let reloads = env
        .hookguard
        .lock()
        .map(|hg| hg.metric("hookguard_tls_reloads_total{result=\"success\"}"))
        .unwrap_or(0.0);
    ensure(reloads >= 1.0, || {
        "hookguard never reloaded its certificate".into()
    })?;
    let cms = c
        .get_json(&["-n", ns, "configmaps", "-l", "hookguard.io/hook=true"])
        .ok_or("list")?;
    let labelled = cms["items"].as_array().map(Vec::len).unwrap_or(0) as u32;
    ensure(labelled == created, || {
        format!("{labelled} of {created} hook ConfigMaps were mutated")
    })?;
    Ok(())
}
