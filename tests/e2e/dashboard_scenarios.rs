//! The Grafana dashboard against real data: a real Prometheus (Debian's `prometheus` package)
//! scrapes the suite's hookguard and a replica running self-managed certificates and the
//! inventory after a Helm install, upgrade and failed install; then every query of the dashboard
//! is evaluated by that Prometheus, the way Grafana would send it, and must return data. Two panels
//! are also checked value for value against hookguard's own /metrics.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::hookguard::Served;
use crate::proc::{Proc, Result, ensure, free_port, http_get, wait_for};
use crate::scrape::metric_sum_of;
use crate::tools::{prometheus_tool, repo};
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[("14-dashboard-queries-return-data", dashboard)];

const NS: &str = "e2e-dash";
const FAIL_NS: &str = "e2e-dash-fail";

/// Every `expr` of the dashboard's panels (nested rows included), with the panel title.
pub fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            walk(&panel["panels"], out);
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let title = panel["title"].as_str().unwrap_or_default().to_owned();
                    out.push((title, expr.to_owned()));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// What Grafana substitutes with every variable set to "All" and a 1 s scrape interval.
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", ".*")
        .replace("$namespace", ".*")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query; the result vector.
fn query(prometheus: &str, expr: &str) -> Result<Vec<Value>> {
    let (status, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    )
    .ok_or_else(|| format!("no answer from Prometheus for {expr}"))?;
    let json: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    ensure(status == 200 && json["status"] == "success", || {
        format!("{expr}: {status} {body}")
    })?;
    Ok(json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn value_of(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn start_prometheus(dir: &Path, targets: &[String]) -> Result<(Proc, String)> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let config = dir.join("prometheus.yml");
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: hookguard\n    static_configs:\n      - targets: [{list}]\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let addr = format!("127.0.0.1:{}", free_port());
    let exe = prometheus_tool("prometheus")?;
    let proc = Proc::spawn(
        "prometheus",
        dir,
        &exe,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
        ],
        &[],
    )?;
    wait_for("Prometheus ready", Duration::from_secs(30), || {
        http_get(&addr, "/-/ready").filter(|(s, _)| *s == 200)
    })?;
    Ok((proc, addr))
}

fn dashboard(env: &Env) -> Result<()> {
    let text = std::fs::read_to_string(repo().join("charts/hookguard/dashboards/hookguard.json"))
        .map_err(|e| e.to_string())?;
    let board: Value = serde_json::from_str(&text).map_err(|e| format!("dashboard JSON: {e}"))?;
    let queries = dashboard_queries(&board);
    ensure(queries.len() >= 10, || {
        format!("only {} queries in the dashboard", queries.len())
    })?;

    env.cluster.namespace(NS)?;
    env.cluster.namespace(FAIL_NS)?;
    let dir = env.cluster.work.join("dashboard");
    // A second webhook replica with self-managed certificates (the certificate panels), and a
    // controller (the inventory panels): the two processes the chart deploys.
    let webhook = Served::start(
        "hookguard-dashboard-webhook",
        &dir,
        &[
            format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
            format!("--namespace={NS}"),
            "--cert-secret=e2e-dash-tls".to_owned(),
        ],
        &[],
    )?;
    let replica = Served::controller(
        "hookguard-dashboard",
        &dir,
        &[
            format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
            format!("--namespace={NS}"),
            "--leader-election=false".to_owned(),
            "--janitor".to_owned(),
            format!("--janitor-namespaces={NS}"),
            "--janitor-dry-run".to_owned(),
            "--janitor-min-age=1s".to_owned(),
            "--janitor-interval=1s".to_owned(),
            // The rollout panels: the default policy judged again (the shop chart's notify hook
            // lacks before-hook-creation: a warning that would deny once enforced).
            "--policy-recheck".to_owned(),
            "--recheck-interval=2s".to_owned(),
        ],
        &[],
    )?;
    let main_admin = {
        let hg = env.hookguard.lock().map_err(|e| e.to_string())?;
        format!("127.0.0.1:{}", hg.admin_port)
    };
    let result = (|| -> Result<()> {
        wait_for(
            "replica ready with a synced inventory",
            Duration::from_secs(30),
            || {
                (webhook.ready()
                    && replica.ready()
                    && replica.metric_sum("hookguard_inventory_up", &[]) == 1.0)
                    .then_some(())
            },
        )?;
        let chart = repo().join("tests/e2e/charts/shop").display().to_string();
        env.cluster.run_ok(
            "helm",
            &["install", "shop", &chart, "-n", NS, "--timeout", "90s"],
            None,
        )?;
        let (prom, prometheus) = start_prometheus(
            &dir.join("prometheus"),
            &[main_admin.clone(), webhook.admin(), replica.admin()],
        )?;
        let _prom = prom;
        env.cluster.run_ok(
            "helm",
            &["upgrade", "shop", &chart, "-n", NS, "--timeout", "90s"],
            None,
        )?;
        env.cluster.run_fails(
            "helm",
            &[
                "install",
                "shop",
                &chart,
                "-n",
                FAIL_NS,
                "--set",
                "migrate.fail=true",
                "--timeout",
                "60s",
            ],
        )?;
        // The replica has seen it all; then a few more scrapes so rates have two samples.
        wait_for(
            "the failed hook in the inventory",
            Duration::from_secs(30),
            || {
                (replica.metric_sum("hookguard_hook_objects", &["state=\"failed\""]) == 1.0)
                    .then_some(())
            },
        )?;
        std::thread::sleep(Duration::from_secs(5));

        let mut empty = Vec::new();
        for (title, expr) in &queries {
            let sent = as_grafana_sends(expr);
            if query(&prometheus, &sent)?.is_empty() {
                empty.push(format!("{title}: {sent}"));
            }
        }
        ensure(empty.is_empty(), || {
            format!("dashboard queries without data:\n{}", empty.join("\n"))
        })?;

        // Value for value: the panels agree with what the replica itself exports.
        let scrape = replica.metrics();
        for (title, state) in [
            ("Finished hooks", "succeeded|failed"),
            ("Failed hooks", "failed"),
        ] {
            let (_, expr) = queries
                .iter()
                .find(|(t, _)| t == title)
                .ok_or_else(|| format!("no panel {title:?}"))?;
            let got: f64 = query(&prometheus, &as_grafana_sends(expr))?
                .iter()
                .map(value_of)
                .sum();
            let want: f64 = state
                .split('|')
                .map(|s| {
                    metric_sum_of(
                        &scrape,
                        "hookguard_hook_objects",
                        &[&format!("state=\"{s}\"")],
                    )
                })
                .sum();
            ensure(got == want && want > 0.0, || {
                format!("{title}: dashboard {got}, /metrics {want}")
            })?;
        }
        eprintln!(
            "e2e:   {} dashboard queries returned data from Prometheus",
            queries.len()
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("===== hookguard-dashboard =====\n{}", replica.log_tail(30));
        eprintln!(
            "===== hookguard-dashboard-webhook =====\n{}",
            webhook.log_tail(30)
        );
    }
    replica.stop();
    webhook.stop();
    for ns in [NS, FAIL_NS] {
        let _ = env
            .cluster
            .kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
    result
}
