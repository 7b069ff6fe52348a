//! The real-node suite (`make e2e-real-node`): containers really run, on a kubelet with
//! containerd and runc (`crate::real_node`), from images built on this machine
//! (`scripts/image-offline.sh`). hookguard itself is installed with its chart, default values,
//! and runs in pods; the API server calls it through its Service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::plugin_scenarios::{history, run_of};
use crate::proc::{Result, ensure, out_text, wait_for};
use crate::real_node::BUSYBOX_IMAGE;
use crate::tools::repo;
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[
    // Before hookguard is installed: what a chart's test Pod without restartPolicy does.
    (
        "real-01-test-pod-restarts-forever-without-hookguard",
        without_hookguard,
    ),
    ("real-02-chart-installed-for-real", chart_installed),
    ("real-03-lab-chart-helm3", |env| lab_chart(env, "helm")),
    ("real-03-lab-chart-helm4", |env| lab_chart(env, "helm4")),
    (
        "real-04-rolling-restart-loses-no-admission",
        rolling_restart,
    ),
];

const HG_NS: &str = "hookguard";

fn lab_chart_path() -> String {
    repo().join("tests/e2e/charts/lab").display().to_string()
}

fn pod_json(env: &Env, ns: &str, name: &str) -> Option<Value> {
    env.cluster.get_json(&["-n", ns, &format!("pod/{name}")])
}

fn without_hookguard(env: &Env) -> Result<()> {
    let ns = "real-unguarded";
    env.cluster.namespace(ns)?;
    let chart = lab_chart_path();
    env.cluster.run_ok(
        "helm",
        &[
            "install",
            "lab",
            &chart,
            "-n",
            ns,
            "--wait",
            "--timeout",
            "120s",
        ],
        None,
    )?;
    let t = Instant::now();
    let out = env
        .cluster
        .run("helm", &["test", "lab", "-n", ns, "--timeout", "40s"], None);
    ensure(!out.status.success(), || {
        format!("helm test passed without hookguard: {}", out_text(&out))
    })?;
    let pod = pod_json(env, ns, "lab-test-app").ok_or("the test Pod is gone")?;
    let restarts = pod["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(0);
    ensure(
        pod["spec"]["restartPolicy"] == "Always" && restarts >= 1,
        || {
            format!(
                "the test Pod should really restart (restartPolicy Always): {}",
                pod["status"]
            )
        },
    )?;
    eprintln!(
        "e2e:   helm test without hookguard: failed after {:.0}s, test Pod restarted {restarts} times",
        t.elapsed().as_secs_f64()
    );
    env.cluster
        .run_ok("helm", &["uninstall", "lab", "-n", ns, "--wait"], None)?;
    Ok(())
}

/// `helm install hookguard ./charts/hookguard` with default values, once (later scenarios, run
/// alone with a filter, install it themselves).
fn install_hookguard(env: &Env) -> Result<()> {
    if env
        .cluster
        .run("helm", &["status", "hookguard", "-n", HG_NS], None)
        .status
        .success()
    {
        return Ok(());
    }
    let chart = repo().join("charts/hookguard").display().to_string();
    env.cluster
        .run_ok(
            "helm",
            &[
                "install",
                "hookguard",
                &chart,
                "-n",
                HG_NS,
                "--create-namespace",
                "--wait",
                "--timeout",
                "180s",
            ],
            None,
        )
        .map_err(|e| format!("{e}\n{}", pods_report(env, HG_NS)))?;
    Ok(())
}

fn chart_installed(env: &Env) -> Result<()> {
    install_hookguard(env)?;
    let pods = env
        .cluster
        .get_json(&["-n", HG_NS, "pods"])
        .ok_or("cannot list hookguard's pods")?;
    let pods = pods["items"].as_array().cloned().unwrap_or_default();
    ensure(pods.len() >= 3, || {
        format!("hookguard pods: {}", pods_report(env, HG_NS))
    })?;
    for pod in &pods {
        let sc = &pod["spec"]["containers"][0]["securityContext"];
        let ready = pod["status"]["containerStatuses"][0]["ready"] == true;
        ensure(
            ready
                && sc["readOnlyRootFilesystem"] == true
                && sc["allowPrivilegeEscalation"] == false
                && sc["capabilities"]["drop"][0] == "ALL",
            || {
                format!(
                    "pod {} not ready under the chart's securityContext: {pod}",
                    pod["metadata"]["name"]
                )
            },
        )?;
    }
    // The API server calls the pods through the Service: a hook Job is mutated and runs.
    let ns = "real-hooks";
    env.cluster.namespace(ns)?;
    env.cluster.apply(&format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: hello-hook\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: pre-install\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      containers:\n      - name: hello\n        image: {BUSYBOX_IMAGE}\n        command: [sh, -c, 'echo hello from a real container as $(id -u)']\n"
    ))?;
    let job = env
        .cluster
        .get_json(&["-n", ns, "job/hello-hook"])
        .ok_or("hello-hook missing")?;
    ensure(
        job["metadata"]["labels"]["hookguard.io/hook"] == "true"
            && job["spec"]["template"]["spec"]["restartPolicy"] == "Never",
        || format!("the in-cluster hookguard did not mutate the hook Job: {job}"),
    )?;
    wait_for("hello-hook Complete", Duration::from_secs(90), || {
        env.cluster
            .kubectl(&[
                "-n",
                ns,
                "wait",
                "--for=condition=Complete",
                "job/hello-hook",
                "--timeout=2s",
            ])
            .status
            .success()
            .then_some(())
    })?;
    let logs = out_text(&env.cluster.kubectl(&["-n", ns, "logs", "job/hello-hook"]));
    ensure(logs.contains("hello from a real container as 0"), || {
        format!("real container output expected: {logs}")
    })?;
    // A denial from the pods: an unknown hook event.
    let typo = env.cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: typo-hook\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: post-instal\nspec:\n  containers:\n  - name: c\n    image: {BUSYBOX_IMAGE}\n"
    ));
    match typo {
        Ok(out) => Err(format!(
            "a typo'd hook event was admitted: {}",
            out_text(&out)
        )),
        Err(e) if e.contains("did you mean \"post-install\"") => Ok(()),
        Err(e) => Err(format!("unexpected refusal: {e}")),
    }
}

fn pods_report(env: &Env, ns: &str) -> String {
    out_text(
        &env.cluster
            .kubectl(&["-n", ns, "get", "pods", "-o", "wide"]),
    ) + &out_text(&env.cluster.kubectl(&["-n", ns, "describe", "pods"]))
}

fn lab_chart(env: &Env, helm: &str) -> Result<()> {
    install_hookguard(env)?;
    let ns = format!("real-lab-{helm}");
    let ns = ns.as_str();
    env.cluster.namespace(ns)?;
    let chart = lab_chart_path();
    let wait: &[&str] = if helm == "helm4" {
        &["--wait=watcher"]
    } else {
        &["--wait"]
    };
    for verb in ["install", "upgrade"] {
        let mut args = vec![verb, "lab", chart.as_str(), "-n", ns, "--timeout", "120s"];
        args.extend_from_slice(wait);
        env.cluster.run_ok(helm, &args, None)?;
    }
    let pre = out_text(
        &env.cluster
            .kubectl(&["-n", ns, "logs", "job/lab-pre-install"]),
    );
    ensure(
        pre.contains("pre-install: preparing lab") && pre.contains("pre-install: done"),
        || format!("pre-install hook output: {pre}"),
    )?;
    let notify = out_text(&env.cluster.kubectl(&["-n", ns, "logs", "job/lab-notify"]));
    ensure(notify.contains("notify: lab is at revision 2"), || {
        format!("post-upgrade notify hook output: {notify}")
    })?;
    let out = env.cluster.run_ok(
        helm,
        &["test", "lab", "-n", ns, "--logs", "--timeout", "90s"],
        None,
    )?;
    let said = out_text(&out);
    ensure(said.contains("lab app revision 2"), || {
        format!("helm test --logs should show the app fetched over its Service: {said}")
    })?;
    let pod = pod_json(env, ns, "lab-test-app").ok_or("test Pod missing")?;
    ensure(
        pod["spec"]["restartPolicy"] == "Never" && pod["status"]["phase"] == "Succeeded",
        || {
            format!(
                "the test Pod should be fixed by hookguard and Succeeded: {}",
                pod["status"]
            )
        },
    )?;
    // The chart's controller, in its pod as its ServiceAccount, recorded the runs with the
    // containers' real output.
    let recorded = wait_for(
        "the lab hook runs in the history",
        Duration::from_secs(30),
        || {
            history(env, HG_NS, "lab", ns, &["--logs"])
                .ok()
                .filter(|h| {
                    ["lab-pre-install", "lab-notify", "lab-test-app"]
                        .iter()
                        .all(|n| run_of(h, n).is_some_and(|r| r["outcome"] == "succeeded"))
                })
        },
    )?;
    let pre = run_of(&recorded, "lab-pre-install").ok_or("no pre-install run")?;
    let text = pre["logs"][0]["log"].as_str().unwrap_or_default();
    ensure(
        text.contains("pre-install: preparing lab") && pre["revision"] == 1,
        || format!("the pre-install run lacks its real output: {pre}"),
    )?;
    let notify_runs = recorded["runs"].as_array().map_or(0, |r| {
        r.iter().filter(|r| r["name"] == "lab-notify").count()
    });
    ensure(notify_runs == 2, || {
        format!("two notify runs (install, upgrade) expected: {recorded}")
    })?;
    Ok(())
}

fn rolling_restart(env: &Env) -> Result<()> {
    install_hookguard(env)?;
    let ns = "real-rollout";
    env.cluster.namespace(ns)?;
    let stop = Arc::new(AtomicBool::new(false));
    let creator = {
        let stop = stop.clone();
        let kubeconfig = env.cluster.kubeconfig.clone();
        let kubectl = env.cluster.bin.join("kubectl");
        std::thread::spawn(move || {
            let mut results = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let manifest = format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hook-{i}\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: pre-install\n"
                );
                let out = std::process::Command::new(&kubectl)
                    .env("KUBECONFIG", &kubeconfig)
                    .args(["create", "-f", "-", "-o", "json"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut c| {
                        use std::io::Write as _;
                        if let Some(mut s) = c.stdin.take() {
                            let _ = s.write_all(manifest.as_bytes());
                        }
                        c.wait_with_output()
                    });
                results.push((i, out));
                i += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            results
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    env.cluster.run_ok(
        "kubectl",
        &["-n", HG_NS, "rollout", "restart", "deployment/hookguard"],
        None,
    )?;
    env.cluster.run_ok(
        "kubectl",
        &[
            "-n",
            HG_NS,
            "rollout",
            "status",
            "deployment/hookguard",
            "--timeout=180s",
        ],
        None,
    )?;
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let results = creator.join().map_err(|_| "the creating thread panicked")?;
    let mut lost = Vec::new();
    for (i, out) in &results {
        match out {
            Ok(o) if o.status.success() => {
                let obj: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                if obj["metadata"]["labels"]["hookguard.io/hook"] != "true" {
                    lost.push(format!("hook-{i}: admitted without hookguard's mutation"));
                }
            }
            Ok(o) => lost.push(format!("hook-{i}: {}", out_text(o))),
            Err(e) => lost.push(format!("hook-{i}: {e}")),
        }
    }
    ensure(lost.is_empty() && results.len() >= 10, || {
        format!(
            "{} creates during the rolling restart, lost: {lost:?}",
            results.len()
        )
    })?;
    eprintln!(
        "e2e:   {} hook creates during a rolling restart of hookguard: none lost",
        results.len()
    );
    Ok(())
}
