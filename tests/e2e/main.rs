//! The truth suite: hookguard against a real kube-apiserver, etcd, kube-controller-manager,
//! kube-scheduler, kwok (a simulated node), and real Helm 3 and 4.
//!
//! Run with `make e2e` (or `cargo test --test e2e -- [name-filter]` with HOOKGUARD_TOOLS_BIN set).
//! One control plane is started for the whole run; scenarios run one after another and each uses
//! its own namespace. Everything is torn down at the end, also when a scenario fails, and the
//! component logs are printed for failures. The last line is "e2e: N passed, M failed".

mod cert_scenarios;
mod chart;
mod cluster;
mod dashboard_scenarios;
mod delete_scenarios;
mod helm_scenarios;
mod hookguard;
mod inventory_scenarios;
mod latency;
mod pki;
mod plugin_scenarios;
mod postrender_corpus;
mod proc;
mod ratchet_scenarios;
mod real_node;
mod real_node_scenarios;
mod rollout_scenarios;
mod scenarios;
mod scrape;
mod tools;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, NodeKind};
use crate::hookguard::Hookguard;
use crate::proc::{Result, wait_for};
use crate::tools::{repo, tools_bin};

/// What every scenario gets.
pub struct Env {
    pub cluster: Cluster,
    pub hookguard: std::sync::Mutex<Hookguard>,
}

/// The policy hookguard runs with in the suite: the built-in defaults, plus exempt namespaces
/// (`e2e-unguarded-*`) that show what happens without hookguard.
pub const DEFAULT_POLICY: &str = "exemptions:\n  namespaces: [kube-system, \"e2e-unguarded-*\"]\n";

impl Env {
    /// Renders the chart's webhook configurations for hookguard's URL and CA and applies them.
    pub fn register_webhooks(&self) -> Result<()> {
        let (url, ca_bundle) = {
            let hg = self.hookguard.lock().map_err(|e| e.to_string())?;
            (hg.url(), hg.ca_bundle.clone())
        };
        self.register_webhooks_for(&url, &ca_bundle)
    }

    /// The same for a hookguard at `url` whose certificate `ca_bundle` (base64 PEM) verifies: the
    /// configurations keep their names, so this replaces the suite's until `register_webhooks`.
    pub fn register_webhooks_for(&self, url: &str, ca_bundle: &str) -> Result<()> {
        self.apply_webhooks("hookguard", url, Some(ca_bundle), &[])
    }

    /// Renders the chart's two webhook configurations, named `name`, for a hookguard at `url`
    /// and applies them: with `ca_bundle` (base64 PEM), or without one (hookguard must publish
    /// it); for the objects of `namespaces` only, unless empty.
    pub fn apply_webhooks(
        &self,
        name: &str,
        url: &str,
        ca_bundle: Option<&str>,
        namespaces: &[&str],
    ) -> Result<()> {
        let chart = repo().join("charts/hookguard").display().to_string();
        let (full, url) = (
            format!("fullnameOverride={name}"),
            format!("webhook.url={url}"),
        );
        let mut args = vec![
            "template",
            name,
            &chart,
            "--namespace",
            "hookguard",
            "--show-only",
            "templates/webhooks.yaml",
            "--set",
            &full,
            "--set",
            &url,
        ];
        let ca = ca_bundle.map(|b| format!("webhook.caBundle={b}"));
        if let Some(ca) = &ca {
            args.extend(["--set", ca]);
        }
        let out = self.cluster.run_ok("helm", &args, None)?;
        let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
        if ca_bundle.is_none() && yaml.contains("caBundle") {
            return Err(format!(
                "the out-of-cluster render without webhook.caBundle must carry no caBundle:\n{yaml}"
            ));
        }
        if namespaces.is_empty() {
            self.cluster.apply(&yaml)?;
            return Ok(());
        }
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&yaml).map_err(|e| format!("webhooks.yaml: {e}"))?;
        for mut doc in docs.into_iter().filter(|d| d.is_object()) {
            for webhook in doc["webhooks"].as_array_mut().into_iter().flatten() {
                webhook["namespaceSelector"] = serde_json::json!({"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
                ]});
            }
            self.cluster.apply(&doc.to_string())?;
        }
        Ok(())
    }

    /// Writes a new policy and waits until hookguard reports it reloaded.
    pub fn set_policy(&self, yaml: &str) -> Result<()> {
        let hg = self.hookguard.lock().map_err(|e| e.to_string())?;
        let series = "hookguard_config_reloads_total{result=\"success\"}";
        let before = hg.metric(series);
        std::fs::write(&hg.config, yaml).map_err(|e| e.to_string())?;
        wait_for("policy reload", Duration::from_secs(20), || {
            (hg.metric(series) > before).then_some(())
        })
    }
}

type Scenario = (&'static str, fn(&Env) -> Result<()>);

fn main() -> ExitCode {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut all: Vec<Scenario> = scenarios::ALL.to_vec();
    all.extend_from_slice(helm_scenarios::ALL);
    all.extend_from_slice(chart::ALL);
    all.extend_from_slice(cert_scenarios::ALL);
    all.extend_from_slice(inventory_scenarios::ALL);
    all.extend_from_slice(dashboard_scenarios::ALL);
    all.extend_from_slice(delete_scenarios::ALL);
    all.extend_from_slice(ratchet_scenarios::ALL);
    all.extend_from_slice(rollout_scenarios::ALL);
    all.extend_from_slice(plugin_scenarios::ALL);
    all.extend_from_slice(postrender_corpus::ALL);
    // The real-node suite (`make e2e-real-node`) is its own run: a real kubelet, not kwok.
    let real_node = std::env::args().any(|a| a == "--real-node");
    if real_node {
        all = real_node_scenarios::ALL.to_vec();
    }
    let selected: Vec<Scenario> = all
        .into_iter()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();

    if std::env::args().any(|a| a == "--measure-admission-latency") {
        return match setup(NodeKind::Simulated).and_then(|env| latency::measure(&env, 2000)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("e2e: latency measurement failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let started = Instant::now();
    let node = if real_node {
        NodeKind::Real
    } else {
        NodeKind::Simulated
    };
    let env = match setup(node) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("e2e: setup failed: {e}");
            println!("e2e: 0 passed, {} failed", selected.len());
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "e2e: control plane and hookguard up in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in &selected {
        let t = Instant::now();
        eprintln!("e2e: --- {name}");
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| scenario(&env)));
        let secs = t.elapsed().as_secs_f64();
        match outcome {
            Ok(Ok(())) => {
                passed += 1;
                eprintln!("e2e: ok      {name} ({secs:.1}s)");
            }
            Ok(Err(e)) => {
                failed += 1;
                eprintln!("e2e: FAILED  {name} ({secs:.1}s): {e}");
                dump(&env);
            }
            Err(_) => {
                failed += 1;
                eprintln!("e2e: FAILED  {name} ({secs:.1}s): panicked");
                dump(&env);
            }
        }
    }
    eprintln!("e2e: suite took {:.1}s", started.elapsed().as_secs_f64());
    let work = env.cluster.work.parent().map(std::path::Path::to_path_buf);
    drop(env);
    if let Some(work) = work {
        if failed == 0 {
            let _ = std::fs::remove_dir_all(&work);
        } else {
            eprintln!("e2e: logs and state kept in {}", work.display());
        }
    }
    println!("e2e: {passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn dump(env: &Env) {
    eprintln!("{}", env.cluster.logs(40));
    if let Ok(hg) = env.hookguard.lock() {
        eprintln!("===== hookguard =====\n{}", hg.log_tail(40));
    }
}

fn setup(node: NodeKind) -> Result<Env> {
    let bin = tools_bin()?;
    let work = std::env::temp_dir().join(format!("hookguard-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let cluster = Cluster::start(bin, work.join("cluster"), node)?;
    let hookguard = Hookguard::start(work.join("hookguard"), DEFAULT_POLICY)?;
    let env = Env {
        cluster,
        hookguard: std::sync::Mutex::new(hookguard),
    };
    // On the real node the chart registers its own hookguard's webhooks.
    if node == NodeKind::Simulated {
        env.register_webhooks()?;
    }
    Ok(env)
}
