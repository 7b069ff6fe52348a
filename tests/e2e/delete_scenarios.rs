//! No fail-closed webhook on DELETE: with hookguard stopped and the chart's webhook configurations
//! registered (validating failurePolicy Fail), hook objects can still be deleted, one by one, by
//! the garbage collector after a foreground delete (what the TTL-after-finished controller asks
//! for), and with their namespace; only hook creates are refused. Once hookguard is back, each
//! deletion is counted once, through the DELETE-only, fail-open webhook `count-deletes.hookguard.io`.
//!
//! Real: the API server's webhook calls and matchConditions, the garbage collector, the Job and
//! namespace controllers. SIMULATED: the node (kwok) that runs the Pods and removes deleted ones.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::proc::{Result, ensure, wait_for};
use crate::scenarios::{hook_job, hook_pod};
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[(
    "15-hook-deletes-while-hookguard-is-down",
    hook_deletes_while_down,
)];

/// How long a deletion may take on this small cluster before the scenario gives up (they take a
/// few seconds; namespace deletion the longest).
const DELETE_BOUND: Duration = Duration::from_secs(120);

/// A hook Pod the simulated node keeps Running for an hour (deleting it is the kubelet's two-step
/// graceful deletion).
fn running_hook_pod(ns: &str, name: &str) -> String {
    hook_pod(ns, name, "").replace(
        "    helm.sh/hook: test\n",
        "    helm.sh/hook: test\n    hookguard.test/run-duration: 1h\n",
    )
}

/// A hook Job whose Pod the simulated node keeps Running for an hour.
fn running_hook_job(ns: &str, name: &str) -> String {
    hook_job(ns, name, "", "", "").replace(
        "  template:\n    spec:\n",
        "  template:\n    metadata:\n      annotations:\n        hookguard.test/run-duration: 1h\n    spec:\n",
    )
}

/// Waits until the Pods `kubectl get -n <ns> <what>` names (`pod/<name>`, or `pods -l ...`)
/// exist and are all Running on the simulated node.
fn wait_running(c: &Cluster, ns: &str, what: &[&str]) -> Result<()> {
    let mut args = vec!["-n", ns];
    args.extend_from_slice(what);
    wait_for(
        &format!("{what:?} in {ns} Running"),
        Duration::from_secs(60),
        || {
            let got = c.get_json(&args)?;
            let pods = match got["items"].as_array() {
                Some(items) => items.clone(),
                None => vec![got],
            };
            (!pods.is_empty() && pods.iter().all(|p| p["status"]["phase"] == "Running"))
                .then_some(())
        },
    )
}

/// `kubectl delete <args>`, which waits (bounded) until the object is gone.
fn delete(c: &Cluster, args: &[&str]) -> Result<()> {
    let mut all = vec!["delete"];
    all.extend_from_slice(args);
    all.push("--timeout=120s");
    c.run_ok("kubectl", &all, None).map(|_| ())
}

fn hook_deletes_while_down(env: &Env) -> Result<()> {
    let c = &env.cluster;
    let ns = "e2e-down-delete";
    let doomed = "e2e-down-delete-ns";
    c.namespace(ns)?;
    c.namespace(doomed)?;
    // Admitted (and mutated) while hookguard runs.
    c.apply(&hook_job(ns, "background", "", "", ""))?;
    c.apply(&running_hook_job(ns, "foreground"))?;
    c.apply(&running_hook_pod(ns, "running"))?;
    c.apply(&hook_job(doomed, "finished-job", "", "", ""))?;
    c.apply(&running_hook_job(doomed, "running-job"))?;
    c.apply(&hook_pod(doomed, "finished-pod", ""))?;
    c.apply(&running_hook_pod(doomed, "running-pod"))?;
    c.apply(&format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hook-config\n  namespace: {doomed}\n  annotations:\n    helm.sh/hook: pre-install\n"))?;
    wait_running(c, ns, &["pod/running"])?;
    wait_running(c, ns, &["pods", "-l", "job-name=foreground"])?;
    wait_running(c, doomed, &["pod/running-pod"])?;

    env.hookguard.lock().map_err(|e| e.to_string())?.stop();
    let result: Result<()> = (|| {
        // Fail closed still holds for what hookguard judges: a hook create is refused (a valid
        // Job: without hookguard's mutation the API server itself would refuse the template).
        let err = c
            .apply(&hook_job(
                ns,
                "refused",
                "",
                "",
                "      restartPolicy: Never\n",
            ))
            .err()
            .ok_or("a hook Job was created while hookguard is down")?;
        ensure(
            err.contains("failed calling webhook \"validate.hookguard.io\""),
            || err.clone(),
        )?;
        // kubectl delete of a hook Job (background propagation, kubectl's default).
        delete(c, &["-n", ns, "job", "background"])?;
        c.wait_gone(&["-n", ns, "job", "background"], DELETE_BOUND)?;
        // Foreground propagation, as the TTL-after-finished controller deletes: the garbage
        // collector deletes the Pod, then removes its finalizer from the terminating hook Job
        // with an UPDATE, which matchConditions keep away from hookguard.
        delete(c, &["-n", ns, "job", "foreground", "--cascade=foreground"])?;
        c.wait_gone(&["-n", ns, "job", "foreground"], DELETE_BOUND)?;
        // A running hook Pod: graceful deletion, then the (simulated) kubelet's final DELETE.
        delete(c, &["-n", ns, "pod", "running"])?;
        c.wait_gone(&["-n", ns, "pod", "running"], DELETE_BOUND)?;
        // The namespace controller deletes every hook in the namespace, and the namespace goes.
        c.run_ok(
            "kubectl",
            &["delete", "namespace", doomed, "--wait=false"],
            None,
        )?;
        c.wait_gone(&["namespace", doomed], DELETE_BOUND)
    })();
    // Back to a running hookguard and the chart's configuration, whatever happened above.
    env.hookguard.lock().map_err(|e| e.to_string())?.restart()?;
    env.register_webhooks()?;
    result?;
    deletes_are_counted_once(env, ns)
}

/// After the restart: a hook Job's DELETE and a running hook Pod's two-step deletion are each
/// counted exactly once in hookguard_hook_admissions_total{operation="DELETE"}.
fn deletes_are_counted_once(env: &Env, ns: &str) -> Result<()> {
    let c = &env.cluster;
    let deletes = |kind: &str| {
        env.hookguard
            .lock()
            .map(|hg| {
                hg.metric_sum(
                    "hookguard_hook_admissions_total",
                    &[
                        "operation=\"DELETE\"",
                        &format!("kind=\"{kind}\""),
                        &format!("namespace=\"{ns}\""),
                    ],
                )
            })
            .unwrap_or(-1.0)
    };
    c.apply(&hook_job(ns, "counted", "", "", ""))?;
    c.apply(&running_hook_pod(ns, "counted"))?;
    wait_running(c, ns, &["pod/counted"])?;
    let (jobs, pods) = (deletes("Job"), deletes("Pod"));
    delete(c, &["-n", ns, "job", "counted"])?;
    delete(c, &["-n", ns, "pod", "counted"])?;
    c.wait_gone(&["-n", ns, "pod", "counted"], DELETE_BOUND)?;
    let (jobs_after, pods_after) = (deletes("Job"), deletes("Pod"));
    ensure(jobs_after == jobs + 1.0 && pods_after == pods + 1.0, || {
        format!(
            "DELETEs counted: Job {jobs} -> {jobs_after}, Pod {pods} -> {pods_after} (want +1 each)"
        )
    })
}
