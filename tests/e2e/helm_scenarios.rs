//! Scenarios driven with real Helm 3 (`helm`) and Helm 4 (`helm4`) against the real API server.
//! Pods run on the simulated (kwok) node: hook Job pods finish as their annotations say, and a
//! `restartPolicy: Always` pod never finishes, as with a real kubelet.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::proc::{Result, ensure, out_text, wait_for};
use crate::tools::repo;
use crate::{DEFAULT_POLICY, Env, Scenario};

pub const ALL: &[Scenario] = &[
    ("06-helm3-lifecycle", |env| lifecycle(env, "helm")),
    ("06-helm4-lifecycle", |env| lifecycle(env, "helm4")),
    ("06-helm3-test-hangs-without-hookguard", |env| {
        test_hangs_without_hookguard(env, "helm")
    }),
    ("06-helm4-test-hangs-without-hookguard", |env| {
        test_hangs_without_hookguard(env, "helm4")
    }),
    ("07-helm3-failing-hook-and-rollback", |env| {
        failing_hook(env, "helm")
    }),
    ("07-helm4-failing-hook-and-rollback", |env| {
        failing_hook(env, "helm4")
    }),
    (
        "08-ttl-controller-removes-finished-hooks",
        ttl_removes_finished_hooks,
    ),
];

fn chart() -> String {
    repo().join("tests/e2e/charts/shop").display().to_string()
}

/// Runs helm (`helm` or `helm4`); Ok(output) on success, Err(all output) on failure.
fn helm(env: &Env, bin: &str, args: &[&str]) -> Result<Output> {
    env.cluster.run_ok(bin, args, None)
}

fn helm_fails(env: &Env, bin: &str, args: &[&str]) -> Result<Output> {
    env.cluster.run_fails(bin, args)
}

fn status(env: &Env, bin: &str, ns: &str) -> Result<Value> {
    let out = helm(env, bin, &["status", "shop", "-n", ns, "-o", "json"])?;
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn hook_jobs(env: &Env, ns: &str) -> Vec<Value> {
    env.cluster
        .get_json(&["-n", ns, "jobs"])
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|j| !j["metadata"]["annotations"]["helm.sh/hook"].is_null())
        .collect()
}

/// Creates the namespace and installs the test chart as release `shop`; returns the chart path.
fn install_fresh(env: &Env, bin: &str, ns: &str) -> Result<String> {
    env.cluster.namespace(ns)?;
    let chart = chart();
    helm(
        env,
        bin,
        &["install", "shop", &chart, "-n", ns, "--timeout", "90s"],
    )?;
    Ok(chart)
}

fn lifecycle(env: &Env, bin: &str) -> Result<()> {
    let ns = format!("e2e-life-{bin}");
    let ns = ns.as_str();
    let chart = install_fresh(env, bin, ns)?;
    let migrate = env
        .cluster
        .get_json(&["-n", ns, "job/shop-migrate"])
        .ok_or("migrate hook Job missing")?;
    ensure(
        migrate["metadata"]["labels"]["hookguard.io/hook"] == "true",
        || "hook not labelled".into(),
    )?;
    ensure(migrate["spec"]["ttlSecondsAfterFinished"] == 600, || {
        "no TTL injected".into()
    })?;
    ensure(
        migrate["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
        }),
        || "migrate Job is not Complete".into(),
    )?;
    ensure(
        env.cluster
            .get_json(&["-n", ns, "job/shop-notify"])
            .is_none(),
        || "hook-succeeded Job was not deleted by Helm".into(),
    )?;

    for _ in 0..2 {
        helm(
            env,
            bin,
            &["upgrade", "shop", &chart, "-n", ns, "--timeout", "90s"],
        )?;
    }
    let st = status(env, bin, ns)?;
    ensure(
        st["version"] == 3 && st["info"]["status"] == "deployed",
        || format!("after two upgrades: {st}"),
    )?;

    let out = helm(
        env,
        bin,
        &["test", "shop", "-n", ns, "--logs", "--timeout", "90s"],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(
        stdout.contains("Phase:          Succeeded") || stdout.contains("Succeeded"),
        || stdout.to_string(),
    )?;
    ensure(stdout.contains("simulated by kwok"), || {
        format!("no logs in: {stdout}")
    })?;
    let pod = env
        .cluster
        .get_json(&["-n", ns, "pod/shop-test-connection"])
        .ok_or("test pod missing")?;
    ensure(pod["spec"]["restartPolicy"] == "Never", || {
        "test pod not fixed".into()
    })?;

    helm(
        env,
        bin,
        &["rollback", "shop", "1", "-n", ns, "--timeout", "90s"],
    )?;
    let st = status(env, bin, ns)?;
    ensure(
        st["version"] == 4 && st["info"]["status"] == "deployed",
        || format!("after rollback: {st}"),
    )?;

    helm(
        env,
        bin,
        &["uninstall", "shop", "-n", ns, "--timeout", "90s"],
    )?;
    // Helm never deletes hooks on uninstall; the injected TTL is what will clean them up.
    let left = hook_jobs(env, ns);
    ensure(!left.is_empty(), || {
        "expected Helm to leave hook Jobs behind on uninstall".into()
    })?;
    ensure(
        left.iter()
            .all(|j| j["spec"]["ttlSecondsAfterFinished"].as_i64().is_some()),
        || "a leftover hook Job has no TTL".into(),
    )?;
    Ok(())
}

fn test_hangs_without_hookguard(env: &Env, bin: &str) -> Result<()> {
    // The policy exempts e2e-unguarded-*: hookguard sees these objects but changes nothing.
    let ns = format!("e2e-unguarded-{bin}");
    let ns = ns.as_str();
    install_fresh(env, bin, ns)?;
    let started = Instant::now();
    let out = helm_fails(env, bin, &["test", "shop", "-n", ns, "--timeout", "15s"])?;
    let waited = started.elapsed();
    ensure(waited >= Duration::from_secs(15), || {
        format!("helm test failed after only {waited:?}: {}", out_text(&out))
    })?;
    let pod = env
        .cluster
        .get_json(&["-n", ns, "pod/shop-test-connection"])
        .ok_or("test pod missing")?;
    ensure(pod["spec"]["restartPolicy"] == "Always", || {
        "test pod was changed in an exempt namespace".into()
    })?;
    ensure(pod["status"]["phase"] == "Running", || {
        format!("test pod phase {}", pod["status"]["phase"])
    })?;
    eprintln!(
        "e2e:   {bin} test without hookguard: failed after {:.1}s (timeout 15s), test pod still Running",
        waited.as_secs_f64()
    );
    Ok(())
}

fn failing_hook(env: &Env, bin: &str) -> Result<()> {
    let ns = format!("e2e-fail-{bin}");
    let ns = ns.as_str();
    let chart = install_fresh(env, bin, ns)?;

    // An upgrade whose pre-upgrade hook fails, with extra flags.
    let failing_upgrade = |extra: &[&str]| {
        let mut args = vec![
            "upgrade",
            "shop",
            &chart,
            "-n",
            ns,
            "--set",
            "migrate.fail=true",
            "--timeout",
            "90s",
        ];
        args.extend_from_slice(extra);
        helm_fails(env, bin, &args)
    };
    // A failing pre-upgrade hook fails the release.
    let out = failing_upgrade(&[])?;
    let text = out_text(&out);
    ensure(
        text.contains("pre-upgrade hooks failed") || text.contains("failed"),
        || text.clone(),
    )?;
    let st = status(env, bin, ns)?;
    ensure(st["info"]["status"] == "failed", || {
        format!("status after failed hook: {}", st["info"]["status"])
    })?;
    let job = env
        .cluster
        .get_json(&["-n", ns, "job/shop-migrate"])
        .ok_or("failed hook Job missing")?;
    ensure(
        job["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Failed" && c["status"] == "True")
        }),
        || "hook Job not Failed".into(),
    )?;

    // With --atomic (Helm 3) / --rollback-on-failure (Helm 4) it rolls back.
    let rollback_flag = if bin == "helm" {
        "--atomic"
    } else {
        "--rollback-on-failure"
    };
    failing_upgrade(&[rollback_flag])?;
    let st = status(env, bin, ns)?;
    ensure(st["info"]["status"] == "deployed", || {
        format!("status after {rollback_flag}: {}", st["info"]["status"])
    })?;
    ensure(
        st["info"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Rollback")),
        || format!("not a rollback: {}", st["info"]["description"]),
    )?;

    // The fixed chart upgrades cleanly: no "already exists".
    helm(
        env,
        bin,
        &["upgrade", "shop", &chart, "-n", ns, "--timeout", "90s"],
    )?;
    let st = status(env, bin, ns)?;
    ensure(st["info"]["status"] == "deployed", || {
        format!("fixed upgrade: {st}")
    })?;
    Ok(())
}

fn ttl_removes_finished_hooks(env: &Env) -> Result<()> {
    let upgrades = 4;
    let guarded = "e2e-churn";
    let unguarded = "e2e-unguarded-churn";
    env.cluster.namespace(guarded)?;
    env.cluster.namespace(unguarded)?;
    let short_ttl = format!("{DEFAULT_POLICY}jobTtl:\n  defaultSeconds: 5\n  floorSeconds: 1\n");
    env.set_policy(&short_ttl)?;
    let result = (|| {
        let chart = chart();
        for ns in [guarded, unguarded] {
            helm(
                env,
                "helm",
                &["install", "shop", &chart, "-n", ns, "--timeout", "90s"],
            )?;
            for _ in 0..upgrades {
                helm(
                    env,
                    "helm",
                    &["upgrade", "shop", &chart, "-n", ns, "--timeout", "90s"],
                )?;
            }
        }
        // Without hookguard: one report Job per upgrade plus the migrate Job stay forever.
        let piled = hook_jobs(env, unguarded).len();
        ensure(piled == upgrades + 1, || {
            format!(
                "unguarded namespace has {piled} hook Jobs, expected {}",
                upgrades + 1
            )
        })?;
        // With hookguard: the real TTL-after-finished controller removes every finished hook Job.
        let guarded_ttl = hook_jobs(env, guarded)
            .iter()
            .map(|j| j["spec"]["ttlSecondsAfterFinished"].as_i64())
            .collect::<Vec<_>>();
        ensure(guarded_ttl.iter().all(|t| *t == Some(5)), || {
            format!("TTLs {guarded_ttl:?}")
        })?;
        wait_for(
            "TTL controller to remove finished hook Jobs",
            Duration::from_secs(90),
            || hook_jobs(env, guarded).is_empty().then_some(()),
        )?;
        let still = hook_jobs(env, unguarded).len();
        ensure(still == upgrades + 1, || {
            format!("unguarded hook Jobs changed to {still}")
        })?;
        eprintln!(
            "e2e:   after {upgrades} upgrades: {still} hook Jobs pile up without hookguard, 0 with it"
        );
        Ok(())
    })();
    env.set_policy(DEFAULT_POLICY)?;
    result
}
